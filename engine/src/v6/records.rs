//! The v6 lease records of one shard: the [`Slot`] layout, and the remembered lists only v6
//! keeps.
//!
//! A record is an 80-byte [`Slot`] in the shared [`Records`](crate::slots::Records) (a `Vec`
//! slab with a free list, and its two index tables). An IA key of up to [`KEY_INLINE`] bytes
//! (a DUID of up to 19: DUID-LLT, DUID-LL, DUID-UUID and most DUID-EN) lives in the slot; a
//! longer one in the shard's arena. Released/Expired records of dynamic resources are also
//! linked, through the slots, into their pool's list of remembered records, oldest first
//! ([`List`]).

use std::net::Ipv6Addr;

use crate::common::slot::{
    KIND_DYNAMIC, KIND_FIXED, KIND_FIXED_IN_POOL, KIND_MASK, KIND_VACANT, NONE, UNIT,
};
use crate::lease::{LeaseState, Time};
use crate::slots::{self, Arena, Head, InlineKey, get_part, put_part, slot_impl};

use super::key::{IaKey, Resource};
use super::lease::{Lease, LeaseView};
use super::pools::{Place, PoolId};

/// Key bytes a slot holds inline (longer keys go to the arena).
pub(crate) const KEY_INLINE: usize = 24;

/// The key is in the arena.
const KEY_EXTRA: u8 = 1 << 2;
/// The record is its IA's current one (in `by_client`).
const INDEXED: u8 = 1 << 3;
/// The record is in its pool's remembered list.
const LISTED: u8 = 1 << 4;

/// One lease record (80 bytes).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Slot {
    /// The version, times, pool (of a dynamic or in-pool fixed resource) and the key's blob.
    pub(crate) head: Head,
    /// The resource's address, as two halves (a `u128` would align the slot to 16).
    addr: [u64; 2],
    pub(crate) preferred: u32,
    /// Neighbours in the remembered list.
    prev: u32,
    next: u32,
    pub(crate) state: LeaseState,
    flags: u8,
    /// The resource's length.
    len: u8,
    /// The key, unless `KEY_EXTRA`.
    key: InlineKey<{ KEY_INLINE + 1 }>,
}

impl Slot {
    pub(crate) fn is_listed(&self) -> bool {
        self.flags & LISTED != 0
    }

    pub(crate) fn resource(&self) -> Resource {
        let addr = (u128::from(self.addr[0]) << 64) | u128::from(self.addr[1]);
        Resource {
            addr: Ipv6Addr::from(addr),
            len: self.len,
        }
    }
}

/// A pool's remembered records in one shard, oldest first, linked through the slots.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct List {
    head: u32,
    tail: u32,
    pub(crate) len: u64,
}

impl Default for List {
    fn default() -> Self {
        List {
            head: NONE,
            tail: NONE,
            len: 0,
        }
    }
}

impl List {
    /// The oldest record.
    pub(crate) fn front(&self) -> Option<u32> {
        (self.head != NONE).then_some(self.head)
    }
}

slot_impl! {
    Slot { addr: [0; 2], preferred: 0, prev: NONE, next: NONE, len: 0 };

    type Res = Resource;
    type Place = Place;
    type Layout = Box<[(u128, u32)]>;
    type Slab = Vec<Slot>;
    type More<'a> = u32;
    const INDEXED: u8 = INDEXED;
    const BLOB_GUESS: usize = 0;

    /// `rec.more` is the preferred lifetime.
    fn build(mut slot: Slot, rec: &NewRecord<'_>, arena: &mut Arena) -> Slot {
        let addr = u128::from(rec.res.addr);
        slot.addr = [(addr >> 64) as u64, addr as u64];
        slot.len = rec.res.len;
        slot.preferred = rec.more;
        match InlineKey::new(rec.key) {
            Some(key) => slot.key = key,
            None => {
                slot.flags |= KEY_EXTRA;
                slot.head.extra = arena.push(|out| put_part(out, rec.key));
            }
        }
        slot
    }
    fn res(&self) -> Resource {
        self.resource()
    }

    /// `layout` holds `(first, shift)` of each pool, for the offsets of dynamic resources.
    fn place(&self, layout: &Box<[(u128, u32)]>) -> Place {
        self.place_with(|| {
            let (first, shift) = layout[self.head.pool as usize];
            (u128::from(self.resource().addr) - first) >> shift
        })
    }

    fn key<'a>(&'a self, arena: &'a Arena) -> &'a [u8] {
        if self.flags & KEY_EXTRA == 0 {
            self.key.get()
        } else {
            long_key(arena, self.head.extra).0
        }
    }

    fn blob_len(&self, arena: &Arena) -> Option<usize> {
        (self.flags & KEY_EXTRA != 0)
            .then(|| Arena::blob_len(self.head.extra, long_key(arena, self.head.extra).1))
    }

    fn removable(&self) -> bool {
        !self.is_listed()
    }
}

/// The long key whose blob is at `off`, and the byte after it.
fn long_key(arena: &Arena, off: u32) -> (&[u8], usize) {
    let mut at = off as usize * UNIT;
    (get_part(&arena.bytes, &mut at), at)
}

/// What [`Records::insert`](slots::Records::insert) stores: `more` is the preferred
/// lifetime.
pub(crate) type NewRecord<'a> = slots::New<'a, Slot>;

/// One shard's v6 lease records and their two indexes.
pub(crate) type Records = slots::Records<Slot>;

impl Records {
    pub(crate) fn lease(&self, idx: u32) -> Lease {
        let slot = &self.slots[idx as usize];
        Lease {
            resource: slot.resource(),
            pool: self.place(idx).pool(),
            // Only ever written from an `IaKey`'s bytes.
            client: IaKey::from_bytes(self.key(idx)).expect("a record's key is valid"),
            state: slot.state,
            starts: Time::from(slot.head.starts),
            preferred: slot.preferred,
            expires: Time::from(slot.head.expires),
            version: slot.head.version,
        }
    }

    pub(crate) fn view(&self, idx: u32) -> LeaseView {
        let slot = &self.slots[idx as usize];
        LeaseView {
            resource: slot.resource(),
            pool: self.place(idx).pool(),
            state: slot.state,
            starts: Time::from(slot.head.starts),
            preferred: slot.preferred,
            expires: Time::from(slot.head.expires),
        }
    }

    /// Appends the record to the back of `list` (it must be in none).
    pub(crate) fn push_back(&mut self, list: &mut List, idx: u32) {
        debug_assert!(!self.slots[idx as usize].is_listed());
        let slot = &mut self.slots[idx as usize];
        slot.flags |= LISTED;
        slot.prev = list.tail;
        slot.next = NONE;
        if list.tail == NONE {
            list.head = idx;
        } else {
            self.slots[list.tail as usize].next = idx;
        }
        list.tail = idx;
        list.len += 1;
    }

    /// Takes the record out of `list` (the one it is in).
    pub(crate) fn unlink(&mut self, list: &mut List, idx: u32) {
        let slot = self.slots[idx as usize];
        debug_assert!(slot.is_listed());
        if slot.prev == NONE {
            list.head = slot.next;
        } else {
            self.slots[slot.prev as usize].next = slot.next;
        }
        if slot.next == NONE {
            list.tail = slot.prev;
        } else {
            self.slots[slot.next as usize].prev = slot.prev;
        }
        let slot = &mut self.slots[idx as usize];
        slot.flags &= !LISTED;
        slot.prev = NONE;
        slot.next = NONE;
        list.len -= 1;
    }

    /// The records of `list`, oldest first (checks).
    #[cfg(test)]
    pub(crate) fn list(&self, list: &List) -> Vec<u32> {
        let mut out = Vec::new();
        let mut at = list.head;
        let mut prev = NONE;
        while at != NONE {
            assert_eq!(self.slots[at as usize].prev, prev, "list back link");
            out.push(at);
            prev = at;
            at = self.slots[at as usize].next;
        }
        assert_eq!(list.tail, prev, "list tail");
        assert_eq!(list.len, out.len() as u64, "list length");
        out
    }

    /// Bytes the records take on the heap, as allocated (slab, tables, arena).
    #[cfg(test)]
    pub(crate) fn heap_bytes(&self) -> usize {
        self.slots.capacity() * size_of::<Slot>() + self.table_bytes() + self.arena.bytes.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::common::slot::COMPACT_MIN;
    use crate::v6::key::IaKind;

    #[test]
    fn a_slot_is_80_bytes() {
        assert_eq!(size_of::<Slot>(), 80);
    }

    fn rec(n: u32, key: &[u8]) -> NewRecord<'_> {
        let res = Resource::address(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n)));
        NewRecord::bound(res, Place::Fixed { pool: None }, key, 5)
    }

    #[test]
    fn indexes_lists_and_long_keys() {
        let mut r = Records::new(Box::new([]));
        let keys: Vec<IaKey> = (0..5000u32)
            .map(|i| {
                let duid = vec![(i % 251) as u8; 1 + (i as usize % 40)];
                IaKey::new(&duid, i, IaKind::Na)
            })
            .collect();
        let mut list = List::default();
        for (i, key) in keys.iter().enumerate() {
            let idx = r.insert(&rec(i as u32, key.as_bytes()));
            r.index(idx);
            if i % 2 == 0 {
                r.push_back(&mut list, idx);
            }
        }
        r.check();
        assert_eq!(r.list(&list).len(), 2500);
        for (i, key) in keys.iter().enumerate().step_by(3) {
            let idx = r.client_bytes(key.as_bytes()).unwrap();
            let lease = r.lease(idx);
            assert_eq!(&lease.client, key);
            assert_eq!(lease.expires, u64::from(u32::MAX));
            assert_eq!(lease.preferred, 5);
            assert_eq!(r.slot(idx).resource(), rec(i as u32, &[]).res);
            if r.slot(idx).is_listed() {
                r.unlink(&mut list, idx);
            }
            r.remove(idx);
        }
        r.check();
        let listed = r.list(&list);
        assert_eq!(listed.len(), 2500 - 834);
        assert!(
            listed
                .windows(2)
                .all(|w| r.lease(w[0]).client.iaid() < r.lease(w[1]).client.iaid())
        );
        // Churn long keys through the arena: it is compacted on the way.
        for round in 0..50_000u32 {
            let key = IaKey::new(&[round as u8; 60], round, IaKind::Pd);
            let idx = r.insert(&rec(1_000_000 + round, key.as_bytes()));
            assert_eq!(r.key(idx), key.as_bytes());
            r.remove(idx);
        }
        assert!(
            r.arena.bytes.len() < 3 * COMPACT_MIN,
            "{}",
            r.arena.bytes.len()
        );
        r.check();
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(r.client_bytes(key.as_bytes()).is_some(), i % 3 != 0);
        }
    }
}
