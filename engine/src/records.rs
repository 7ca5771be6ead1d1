//! The v4 lease records of one shard: the [`Slot`] layout, its blob, and what only v4
//! records hold (a hardware address and a host name).
//!
//! A record is a 48-byte [`Slot`] in the shared [`Records`](crate::slots::Records) (a
//! chunked [`Slab`] with a free list, and its two index tables). Neither the slab nor the
//! tables ever copy everything at once as they grow (see [`crate::grow`]).
//!
//! What does not fit a slot lives in the shard's [`Arena`], one blob per slot: the host name,
//! a client key longer than [`KEY_INLINE`] bytes, and the hardware address when it is not the
//! one the key already spells (a key built from htype + chaddr, or a client identifier that
//! is htype + MAC, which is what nearly every client sends). Times are `u32` seconds since
//! the epoch: anything later than `u32::MAX` (2106-02-07, and the "infinite" BOOTP lease) is
//! kept as `u32::MAX`.

use std::net::Ipv4Addr;

use crate::common::slot::{
    KIND_DYNAMIC, KIND_FIXED, KIND_FIXED_IN_POOL, KIND_MASK, KIND_VACANT, NONE, UNIT,
};
use crate::grow::Slab;
use crate::slots::{self, Arena, Head, InlineKey, get_part, partition, put_part, slot_impl};

use crate::ident::{ClientKey, HostName, HwAddr};
use crate::lease::{Lease, LeaseInfo, LeaseState, LeaseView, Time};
use crate::pools::{Place, PoolId};

/// Key bytes a slot holds inline (longer keys go to the arena).
pub(crate) const KEY_INLINE: usize = 17;

/// The hardware address is in the blob (it is not the one the key spells).
const HW_EXTRA: u8 = 1 << 2;
/// The key is in the blob (longer than [`KEY_INLINE`]).
const KEY_EXTRA: u8 = 1 << 3;
/// The host name is in the blob.
const NAME_EXTRA: u8 = 1 << 4;
/// The record is its client's current one (in `by_client`).
const INDEXED: u8 = 1 << 5;

/// The hardware address a key spells: htype + chaddr for a hardware key, and for a client
/// identifier its first byte as htype and the rest as the address (RFC 2132 §9.14).
fn spelled_hw(key: &[u8]) -> Option<HwAddr> {
    match key {
        [0 | 1, htype, rest @ ..] => HwAddr::new(*htype, rest),
        _ => None,
    }
}

/// One lease record (48 bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    /// The version, times, pool (of a dynamic or excluded address) and blob.
    pub(crate) head: Head,
    pub(crate) addr: u32,
    pub(crate) state: LeaseState,
    flags: u8,
    /// The key, unless `KEY_EXTRA`.
    key: InlineKey<{ KEY_INLINE + 1 }>,
}

impl Slot {
    fn has_extra(&self) -> bool {
        self.flags & (HW_EXTRA | KEY_EXTRA | NAME_EXTRA) != 0
    }
}

slot_impl! {
    Slot { addr: 0 };

    type Res = u32;
    type Place = Place;
    type Layout = Box<[u32]>;
    type Slab = Slab<Slot>;
    type More<'a> = LeaseInfo<'a>;
    const INDEXED: u8 = INDEXED;
    const BLOB_GUESS: usize = 16;

    fn build(mut slot: Slot, rec: &NewRecord<'_>, arena: &mut Arena) -> Slot {
        let LeaseInfo { hw, hostname } = rec.more;
        slot.addr = rec.res;
        let inline = InlineKey::new(rec.key);
        match inline {
            Some(key) => slot.key = key,
            None => slot.flags |= KEY_EXTRA,
        }
        let hw = (spelled_hw(rec.key) != Some(hw)).then_some(hw);
        if hw.is_some() {
            slot.flags |= HW_EXTRA;
        }
        if hostname.is_some() {
            slot.flags |= NAME_EXTRA;
        }
        if slot.has_extra() {
            slot.head.extra = push(
                arena,
                hw,
                inline.is_none().then_some(rec.key),
                hostname.map(str::as_bytes),
            );
        }
        slot
    }
    fn res(&self) -> u32 {
        self.addr
    }

    /// `layout` holds the first address of each pool, for the offsets of dynamic addresses.
    fn place(&self, firsts: &Box<[u32]>) -> Place {
        self.place_with(|| self.addr - firsts[self.head.pool as usize])
    }

    fn key<'a>(&'a self, arena: &'a Arena) -> &'a [u8] {
        if self.flags & KEY_EXTRA == 0 {
            self.key.get()
        } else {
            parts(arena, self.head.extra, self.flags).key.unwrap_or_default()
        }
    }

    fn blob_len(&self, arena: &Arena) -> Option<usize> {
        self.has_extra()
            .then(|| parts(arena, self.head.extra, self.flags).len)
    }
}

/// The parts of a blob.
#[derive(Default)]
struct Parts<'a> {
    hw: Option<HwAddr>,
    key: Option<&'a [u8]>,
    name: Option<&'a [u8]>,
    /// Bytes the blob takes, padding included.
    len: usize,
}

/// The parts of the blob at `off` of a slot with `flags`.
fn parts(arena: &Arena, off: u32, flags: u8) -> Parts<'_> {
    let start = off as usize * UNIT;
    let b = &arena.bytes;
    let mut at = start;
    let mut parts = Parts::default();
    if flags & HW_EXTRA != 0 {
        let (htype, len) = (b[at], usize::from(b[at + 1]));
        parts.hw = HwAddr::new(htype, &b[at + 2..at + 2 + len]);
        at += 2 + len;
    }
    if flags & KEY_EXTRA != 0 {
        parts.key = Some(get_part(b, &mut at));
    }
    if flags & NAME_EXTRA != 0 {
        parts.name = Some(get_part(b, &mut at));
    }
    parts.len = Arena::blob_len(off, at);
    parts
}

/// Appends a blob of the given parts; returns its offset in units.
fn push(arena: &mut Arena, hw: Option<HwAddr>, key: Option<&[u8]>, name: Option<&[u8]>) -> u32 {
    arena.push(|out| {
        if let Some(hw) = hw {
            out.extend_from_slice(&[hw.htype(), hw.bytes().len() as u8]);
            out.extend_from_slice(hw.bytes());
        }
        key.into_iter()
            .chain(name)
            .for_each(|part| put_part(out, part));
    })
}

/// What [`Records::insert`](slots::Records::insert) stores.
pub(crate) type NewRecord<'a> = slots::New<'a, Slot>;

/// One shard's v4 lease records and their two indexes.
pub(crate) type Records = slots::Records<Slot>;

impl Records {
    pub(crate) fn hw(&self, idx: u32) -> HwAddr {
        let slot = &self.slots[idx as usize];
        if slot.flags & HW_EXTRA != 0 {
            parts(&self.arena, slot.head.extra, slot.flags)
                .hw
                .unwrap_or_default()
        } else {
            spelled_hw(self.key(idx)).unwrap_or_default()
        }
    }

    pub(crate) fn hostname(&self, idx: u32) -> Option<&str> {
        let slot = &self.slots[idx as usize];
        if slot.flags & NAME_EXTRA == 0 {
            return None;
        }
        let name = parts(&self.arena, slot.head.extra, slot.flags).name?;
        // Only ever written from a `&str`.
        std::str::from_utf8(name).ok()
    }

    pub(crate) fn lease(&self, idx: u32) -> Lease {
        let slot = &self.slots[idx as usize];
        Lease {
            address: Ipv4Addr::from(slot.addr),
            pool: self.place(idx).pool(),
            client: ClientKey::from_bytes(self.key(idx)),
            hw: self.hw(idx),
            hostname: self.hostname(idx).map(HostName::new),
            state: slot.state,
            starts: Time::from(slot.head.starts),
            expires: Time::from(slot.head.expires),
            version: slot.head.version,
        }
    }

    pub(crate) fn view(&self, idx: u32) -> LeaseView {
        let slot = &self.slots[idx as usize];
        LeaseView {
            address: Ipv4Addr::from(slot.addr),
            pool: self.place(idx).pool(),
            state: slot.state,
            starts: Time::from(slot.head.starts),
            expires: Time::from(slot.head.expires),
        }
    }

    /// Records what the server knows about the client now: its hardware address, and its
    /// host name if it sent one (`None` keeps the one on record).
    pub(crate) fn set_info(&mut self, idx: u32, hw: HwAddr, hostname: Option<&str>) {
        let same_hw = self.hw(idx) == hw;
        let same_name = hostname.is_none_or(|name| self.hostname(idx) == Some(name));
        if same_hw && same_name {
            return;
        }
        let slot = self.slots[idx as usize];
        let key = ClientKey::from_bytes(self.key(idx));
        let name: Option<HostName> = hostname.or(self.hostname(idx)).map(HostName::new);
        let hw_extra = (spelled_hw(key.as_bytes()) != Some(hw)).then_some(hw);
        let long_key = slot.flags & KEY_EXTRA != 0;
        if slot.has_extra() {
            self.arena.garbage += parts(&self.arena, slot.head.extra, slot.flags).len;
        }
        let mut flags = slot.flags & !(HW_EXTRA | NAME_EXTRA);
        if hw_extra.is_some() {
            flags |= HW_EXTRA;
        }
        if name.is_some() {
            flags |= NAME_EXTRA;
        }
        let extra = if flags & (HW_EXTRA | KEY_EXTRA | NAME_EXTRA) != 0 {
            push(
                &mut self.arena,
                hw_extra,
                long_key.then_some(key.as_bytes()),
                name.as_deref().map(str::as_bytes),
            )
        } else {
            NONE
        };
        let slot = self.slot_mut(idx);
        slot.flags = flags;
        slot.head.extra = extra;
        self.maybe_compact();
    }
}

/// Bulk loading, for [`Restorer`](crate::v4::Restorer) (see [`Records::build`]).
impl Records {
    /// Every record's address, ascending (an address twice if it has two records).
    pub(crate) fn addresses(&self) -> Vec<u32> {
        let mut all: Vec<u32> = self.iter().map(|i| self.slots[i as usize].addr).collect();
        // By the top 16 bits in place, then each part on its own: small sorts, in cache.
        let bounds = partition(&mut all, 1 << 16, |&a| (a >> 16) as usize);
        for part in bounds.windows(2) {
            all[part[0]..part[1]].sort_unstable();
        }
        all
    }

    /// `(address, slab index)` of the records of these addresses.
    pub(crate) fn find_unindexed(&self, addrs: &std::collections::HashSet<u32>) -> Vec<(u32, u32)> {
        self.iter()
            .map(|i| (self.slots[i as usize].addr, i))
            .filter(|(a, _)| addrs.contains(a))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::slot::COMPACT_MIN;

    #[test]
    fn a_slot_is_48_bytes() {
        assert_eq!(size_of::<Slot>(), 48);
    }

    fn rec<'a>(addr: u32, key: &'a [u8], hw: HwAddr, hostname: Option<&'a str>) -> NewRecord<'a> {
        let info = LeaseInfo { hw, hostname };
        NewRecord::bound(addr, Place::Fixed { pool: None }, key, info)
    }

    #[test]
    fn indexes_survive_growth_and_removal() {
        let mut r = Records::new(Box::new([]));
        let hw = HwAddr::default();
        let keys: Vec<[u8; 5]> = (0..20_000u32)
            .map(|i| {
                let b = i.to_be_bytes();
                [1, b[0], b[1], b[2], b[3]]
            })
            .collect();
        for (i, key) in keys.iter().enumerate() {
            let idx = r.insert(&rec(i as u32 * 7, key, hw, None));
            r.index(idx);
        }
        r.check();
        for (i, key) in keys.iter().enumerate().step_by(3) {
            let idx = r.client_bytes(key).unwrap();
            assert_eq!(r.slot(idx).addr, i as u32 * 7);
            r.remove(idx);
        }
        r.check();
        for (i, key) in keys.iter().enumerate() {
            let found = r.find(i as u32 * 7);
            assert_eq!(found.is_some(), i % 3 != 0);
            assert_eq!(r.client_bytes(key), found);
        }
    }

    #[test]
    fn records_keep_every_part_exactly() {
        let mut r = Records::new(Box::new([]));
        let long = [9u8; 40];
        let cases: Vec<(Vec<u8>, HwAddr, Option<&str>)> = vec![
            (
                vec![0, 1, 2, 0, 0, 0, 0, 1],
                HwAddr::new(1, &[2, 0, 0, 0, 0, 1]).unwrap(),
                None,
            ),
            (
                vec![1, 1, 2, 0, 0, 0, 0, 2],
                HwAddr::new(1, &[2, 0, 0, 0, 0, 2]).unwrap(),
                Some("a"),
            ),
            (
                vec![1, 0xff, 1, 2, 3],
                HwAddr::new(1, &[2, 0, 0, 0, 0, 3]).unwrap(),
                Some(""),
            ),
            (
                long.to_vec(),
                HwAddr::new(6, &[1; 16]).unwrap(),
                Some("host-ü"),
            ),
            (vec![0; KEY_INLINE], HwAddr::default(), None),
            (vec![], HwAddr::default(), Some("x")),
        ];
        let mut idxs = Vec::new();
        for (n, (key, hw, name)) in cases.iter().enumerate() {
            let idx = r.insert(&rec(n as u32, key, *hw, *name));
            r.index(idx);
            idxs.push(idx);
        }
        r.check();
        for (n, (key, hw, name)) in cases.iter().enumerate() {
            let lease = r.lease(idxs[n]);
            assert_eq!(lease.client.as_bytes(), &key[..]);
            assert_eq!(lease.hw, *hw);
            assert_eq!(lease.hostname.as_deref(), *name);
            assert_eq!((lease.starts, lease.expires), (10, u64::from(u32::MAX)));
            assert_eq!(r.client_bytes(lease.client.as_bytes()), Some(idxs[n]));
        }
        // Changing the host name and hardware address, again and again: the arena is
        // compacted on the way and nothing is lost.
        for round in 0..20_000u32 {
            let n = (round as usize) % cases.len();
            let name = format!("name-{round}");
            let hw = HwAddr::new(1, &round.to_be_bytes()).unwrap();
            r.set_info(idxs[n], hw, Some(&name));
            assert_eq!(r.hostname(idxs[n]), Some(name.as_str()));
            assert_eq!(r.hw(idxs[n]), hw);
            r.set_info(idxs[n], hw, None);
            assert_eq!(r.hostname(idxs[n]), Some(name.as_str()));
        }
        assert!(
            r.arena.bytes.len() < 2 * COMPACT_MIN + 4096,
            "{}",
            r.arena.bytes.len()
        );
        r.check();
        for (n, (key, _, _)) in cases.iter().enumerate() {
            assert_eq!(r.key(idxs[n]), &key[..]);
        }
        for idx in idxs {
            r.remove(idx);
        }
        r.check();
        assert!(r.is_empty());
    }
}
