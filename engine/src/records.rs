//! The lease records of one shard, stored compactly.
//!
//! A record is a 48-byte [`Slot`] in a slab (a chunked [`Slab`] with a free list), found by
//! address through `by_addr` and, if it is its client's current record, by client key through
//! `by_client`. Both indexes are hash tables of slab indexes ([`IndexTable`], hashbrown's
//! `HashTable<u32>` resized a little at a time): the address and the key are stored once, in
//! the slot, and the tables hold 4 bytes per entry. Neither the slab nor the tables ever
//! copy everything at once as they grow (see [`crate::grow`]).
//!
//! What does not fit a slot lives in the shard's [`Arena`], one blob per slot: the host name,
//! a client key longer than [`KEY_INLINE`] bytes, and the hardware address when it is not the
//! one the key already spells (a key built from htype + chaddr, or a client identifier that
//! is htype + MAC, which is what nearly every client sends). Times are `u32` seconds since
//! the epoch: anything later than `u32::MAX` (2106-02-07, and the "infinite" BOOTP lease) is
//! kept as `u32::MAX`.
//!
//! The tables hash with foldhash (hashbrown's default hasher) under a per-table random seed:
//! client keys come from the network, and the seed keeps a client from choosing keys that
//! collide. It is not a keyed cryptographic hash; it is the defense std's and hashbrown's
//! maps use by default.

use std::hash::BuildHasher;
use std::net::Ipv4Addr;

use hashbrown::DefaultHashBuilder;

use crate::common::slot::{
    COMPACT_MIN, KIND_DYNAMIC, KIND_FIXED, KIND_FIXED_IN_POOL, KIND_MASK, KIND_VACANT, NONE, UNIT,
    clamp,
};
use crate::grow::{IndexTable, Slab};

use crate::ident::{ClientKey, HostName, HwAddr};
use crate::lease::{Lease, LeaseState, LeaseView, Time};
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
    /// The tick of the shard's clock at the record's last change.
    pub(crate) version: u64,
    pub(crate) addr: u32,
    pub(crate) starts: u32,
    pub(crate) expires: u32,
    /// The pool of a dynamic or excluded address.
    pool: u32,
    /// The blob's offset in the arena in [`UNIT`]s, or [`NONE`]; the next vacant slot for a
    /// vacant one.
    extra: u32,
    pub(crate) state: LeaseState,
    flags: u8,
    /// `key[0]` is the key's length and `key[1..]` its bytes, unless `KEY_EXTRA`.
    key: [u8; KEY_INLINE + 1],
}

impl Slot {
    fn vacant(next: u32) -> Slot {
        Slot {
            version: 0,
            addr: 0,
            starts: 0,
            expires: 0,
            pool: 0,
            extra: next,
            state: LeaseState::Expired,
            flags: KIND_VACANT,
            key: [0; KEY_INLINE + 1],
        }
    }

    pub(crate) fn is_vacant(&self) -> bool {
        self.flags & KIND_MASK == KIND_VACANT
    }

    pub(crate) fn is_indexed(&self) -> bool {
        self.flags & INDEXED != 0
    }

    fn has_extra(&self) -> bool {
        self.flags & (HW_EXTRA | KEY_EXTRA | NAME_EXTRA) != 0
    }

    fn set_place(&mut self, place: Place) {
        let (kind, pool) = match place {
            Place::Dynamic { pool, .. } => (KIND_DYNAMIC, pool.0),
            Place::Fixed { pool: Some(pool) } => (KIND_FIXED_IN_POOL, pool.0),
            Place::Fixed { pool: None } => (KIND_FIXED, 0),
        };
        self.flags = (self.flags & !KIND_MASK) | kind;
        self.pool = pool;
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

fn put_len(out: &mut Vec<u8>, mut n: usize) {
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
}

fn get_len(bytes: &[u8], at: &mut usize) -> usize {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            return n;
        }
        shift += 7;
    }
}

/// Variable-length parts of the records: one blob per slot that needs one, appended; a blob
/// that is replaced or dropped becomes garbage, and the arena is compacted once garbage is
/// most of it (amortised O(1) per byte written).
#[derive(Debug, Default)]
pub(crate) struct Arena {
    bytes: Vec<u8>,
    garbage: usize,
}

impl Arena {
    fn parts(&self, off: u32, flags: u8) -> Parts<'_> {
        let start = off as usize * UNIT;
        let b = &self.bytes;
        let mut at = start;
        let mut parts = Parts::default();
        if flags & HW_EXTRA != 0 {
            let (htype, len) = (b[at], usize::from(b[at + 1]));
            parts.hw = HwAddr::new(htype, &b[at + 2..at + 2 + len]);
            at += 2 + len;
        }
        if flags & KEY_EXTRA != 0 {
            let len = get_len(b, &mut at);
            parts.key = Some(&b[at..at + len]);
            at += len;
        }
        if flags & NAME_EXTRA != 0 {
            let len = get_len(b, &mut at);
            parts.name = Some(&b[at..at + len]);
            at += len;
        }
        parts.len = (at - start).next_multiple_of(UNIT);
        parts
    }

    /// Appends a blob of the given parts; returns its offset in units.
    fn push(&mut self, hw: Option<HwAddr>, key: Option<&[u8]>, name: Option<&[u8]>) -> u32 {
        let start = self.bytes.len();
        debug_assert_eq!(start % UNIT, 0);
        if let Some(hw) = hw {
            self.bytes
                .extend_from_slice(&[hw.htype(), hw.bytes().len() as u8]);
            self.bytes.extend_from_slice(hw.bytes());
        }
        if let Some(key) = key {
            put_len(&mut self.bytes, key.len());
            self.bytes.extend_from_slice(key);
        }
        if let Some(name) = name {
            put_len(&mut self.bytes, name.len());
            self.bytes.extend_from_slice(name);
        }
        self.bytes
            .resize(self.bytes.len().next_multiple_of(UNIT), 0);
        let off = start / UNIT;
        assert!(
            self.bytes.len() / UNIT < NONE as usize,
            "a shard holds more than 16 GiB of host names and long client keys"
        );
        off as u32
    }

    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.bytes.len()
    }
}

/// What [`Records::insert`] stores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewRecord<'a> {
    pub(crate) addr: u32,
    pub(crate) place: Place,
    pub(crate) key: &'a [u8],
    pub(crate) hw: HwAddr,
    pub(crate) hostname: Option<&'a str>,
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) expires: Time,
    pub(crate) version: u64,
}

/// One shard's lease records and their two indexes.
#[derive(Debug)]
pub(crate) struct Records {
    slots: Slab<Slot>,
    /// Head of the free list of vacant slots, linked through `extra`.
    vacant: u32,
    live: usize,
    by_addr: IndexTable,
    by_client: IndexTable,
    hasher: DefaultHashBuilder,
    arena: Arena,
    /// First address of each pool, for the offsets of dynamic addresses.
    firsts: Box<[u32]>,
}

fn key_bytes<'a>(slot: &'a Slot, arena: &'a Arena) -> &'a [u8] {
    if slot.flags & KEY_EXTRA == 0 {
        &slot.key[1..1 + usize::from(slot.key[0])]
    } else {
        arena.parts(slot.extra, slot.flags).key.unwrap_or_default()
    }
}

impl Records {
    pub(crate) fn new(firsts: Box<[u32]>) -> Self {
        Self {
            slots: Slab::default(),
            vacant: NONE,
            live: 0,
            by_addr: IndexTable::default(),
            by_client: IndexTable::default(),
            hasher: DefaultHashBuilder::default(),
            arena: Arena::default(),
            firsts,
        }
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    fn hash_addr(&self, addr: u32) -> u64 {
        addr_hash(&self.hasher, addr)
    }

    fn hash_key(&self, key: &[u8]) -> u64 {
        key_hash(&self.hasher, key)
    }

    /// The record of `addr`.
    pub(crate) fn find(&self, addr: u32) -> Option<u32> {
        let slots = &self.slots;
        self.by_addr
            .find(self.hash_addr(addr), |i| slots[i as usize].addr == addr)
    }

    pub(crate) fn get(&self, addr: u32) -> Option<&Slot> {
        self.find(addr).map(|i| &self.slots[i as usize])
    }

    /// Slots in the slab, vacant ones included (slab indexes are below this).
    pub(crate) fn slab_len(&self) -> usize {
        self.slots.len()
    }

    /// The slot at `idx`, unless it is vacant.
    pub(crate) fn live_slot(&self, idx: u32) -> Option<&Slot> {
        let slot = &self.slots[idx as usize];
        (!slot.is_vacant()).then_some(slot)
    }

    pub(crate) fn slot(&self, idx: u32) -> &Slot {
        &self.slots[idx as usize]
    }

    /// The client's current record.
    pub(crate) fn client(&self, key: &ClientKey) -> Option<u32> {
        self.client_bytes(key.as_bytes())
    }

    fn client_bytes(&self, key: &[u8]) -> Option<u32> {
        let (slots, arena) = (&self.slots, &self.arena);
        self.by_client.find(self.hash_key(key), |i| {
            key_bytes(&slots[i as usize], arena) == key
        })
    }

    /// The client key of the record.
    pub(crate) fn key(&self, idx: u32) -> &[u8] {
        key_bytes(&self.slots[idx as usize], &self.arena)
    }

    pub(crate) fn place(&self, idx: u32) -> Place {
        let slot = &self.slots[idx as usize];
        match slot.flags & KIND_MASK {
            KIND_DYNAMIC => Place::Dynamic {
                pool: PoolId(slot.pool),
                off: slot.addr - self.firsts[slot.pool as usize],
            },
            KIND_FIXED_IN_POOL => Place::Fixed {
                pool: Some(PoolId(slot.pool)),
            },
            _ => Place::Fixed { pool: None },
        }
    }

    pub(crate) fn hw(&self, idx: u32) -> HwAddr {
        let slot = &self.slots[idx as usize];
        if slot.flags & HW_EXTRA != 0 {
            self.arena
                .parts(slot.extra, slot.flags)
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
        let name = self.arena.parts(slot.extra, slot.flags).name?;
        // Only ever written from a `&str`.
        std::str::from_utf8(name).ok()
    }

    /// Sets the record's state, times and version.
    pub(crate) fn set_term(
        &mut self,
        idx: u32,
        state: LeaseState,
        starts: Time,
        expires: Time,
        version: u64,
    ) {
        let slot = &mut self.slots[idx as usize];
        slot.state = state;
        slot.starts = clamp(starts);
        slot.expires = clamp(expires);
        slot.version = version;
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
            starts: Time::from(slot.starts),
            expires: Time::from(slot.expires),
            version: slot.version,
        }
    }

    pub(crate) fn view(&self, idx: u32) -> LeaseView {
        let slot = &self.slots[idx as usize];
        LeaseView {
            address: Ipv4Addr::from(slot.addr),
            pool: self.place(idx).pool(),
            state: slot.state,
            starts: Time::from(slot.starts),
            expires: Time::from(slot.expires),
        }
    }

    /// Every record's slab index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.is_vacant())
            .map(|(i, _)| i as u32)
    }

    /// Builds the slot of `rec` (writing its blob) in a vacant slot or a new one, indexed
    /// nowhere yet.
    fn alloc(&mut self, rec: &NewRecord<'_>) -> u32 {
        let mut slot = Slot::vacant(NONE);
        slot.version = rec.version;
        slot.addr = rec.addr;
        slot.starts = clamp(rec.starts);
        slot.expires = clamp(rec.expires);
        slot.state = rec.state;
        slot.set_place(rec.place);
        let long_key = rec.key.len() > KEY_INLINE;
        if long_key {
            slot.flags |= KEY_EXTRA;
        } else {
            slot.key[0] = rec.key.len() as u8;
            slot.key[1..1 + rec.key.len()].copy_from_slice(rec.key);
        }
        let hw = (spelled_hw(rec.key) != Some(rec.hw)).then_some(rec.hw);
        if hw.is_some() {
            slot.flags |= HW_EXTRA;
        }
        if rec.hostname.is_some() {
            slot.flags |= NAME_EXTRA;
        }
        if slot.has_extra() {
            slot.extra = self.arena.push(
                hw,
                long_key.then_some(rec.key),
                rec.hostname.map(str::as_bytes),
            );
        }
        self.live += 1;
        if self.vacant == NONE {
            let idx = u32::try_from(self.slots.len())
                .ok()
                .filter(|&i| i != NONE)
                .expect("more than 2^32 - 1 records in a shard");
            self.slots.push(slot);
            idx
        } else {
            let idx = self.vacant;
            self.vacant = self.slots[idx as usize].extra;
            self.slots[idx as usize] = slot;
            idx
        }
    }

    /// Adds a record for `rec.addr`, which has none; not indexed by client.
    pub(crate) fn insert(&mut self, rec: &NewRecord<'_>) -> u32 {
        debug_assert!(self.find(rec.addr).is_none(), "insert over a record");
        let idx = self.alloc(rec);
        let hash = self.hash_addr(rec.addr);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_addr
            .insert(hash, idx, |i| addr_hash(hasher, slots[i as usize].addr));
        idx
    }

    /// Makes the record its client's current one. The client must have none.
    pub(crate) fn index(&mut self, idx: u32) {
        debug_assert!(!self.slots[idx as usize].is_indexed());
        debug_assert!(self.client_bytes(self.key(idx)).is_none(), "indexed twice");
        let hash = self.hash_key(self.key(idx));
        let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
        self.by_client.insert(hash, idx, |i| {
            key_hash(hasher, key_bytes(&slots[i as usize], arena))
        });
        self.slots[idx as usize].flags |= INDEXED;
    }

    /// Takes the record out of the client index, if it is there.
    pub(crate) fn unindex(&mut self, idx: u32) {
        if !self.slots[idx as usize].is_indexed() {
            return;
        }
        let hash = self.hash_key(self.key(idx));
        self.by_client.remove(hash, |i| i == idx);
        self.slots[idx as usize].flags &= !INDEXED;
    }

    /// Drops the record, from both indexes.
    pub(crate) fn remove(&mut self, idx: u32) {
        self.unindex(idx);
        let hash = self.hash_addr(self.slots[idx as usize].addr);
        self.by_addr.remove(hash, |i| i == idx);
        self.release(idx);
    }

    /// Frees the slot and its blob; the indexes must not point at it.
    fn release(&mut self, idx: u32) {
        let slot = self.slots[idx as usize];
        if slot.has_extra() {
            self.arena.garbage += self.arena.parts(slot.extra, slot.flags).len;
        }
        self.slots[idx as usize] = Slot::vacant(self.vacant);
        self.vacant = idx;
        self.live -= 1;
        self.maybe_compact();
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
            self.arena.garbage += self.arena.parts(slot.extra, slot.flags).len;
        }
        let mut flags = slot.flags & !(HW_EXTRA | NAME_EXTRA);
        if hw_extra.is_some() {
            flags |= HW_EXTRA;
        }
        if name.is_some() {
            flags |= NAME_EXTRA;
        }
        let extra = if flags & (HW_EXTRA | KEY_EXTRA | NAME_EXTRA) != 0 {
            self.arena.push(
                hw_extra,
                long_key.then_some(key.as_bytes()),
                name.as_deref().map(str::as_bytes),
            )
        } else {
            NONE
        };
        let slot = &mut self.slots[idx as usize];
        slot.flags = flags;
        slot.extra = extra;
        self.maybe_compact();
    }

    fn maybe_compact(&mut self) {
        let arena = &self.arena;
        if arena.garbage < COMPACT_MIN || arena.garbage * 2 < arena.bytes.len() {
            return;
        }
        let mut bytes = Vec::with_capacity(arena.bytes.len() - arena.garbage);
        for slot in self.slots.iter_mut() {
            if slot.is_vacant() || !slot.has_extra() {
                continue;
            }
            let start = slot.extra as usize * UNIT;
            let len = arena.parts(slot.extra, slot.flags).len;
            slot.extra = (bytes.len() / UNIT) as u32;
            bytes.extend_from_slice(&arena.bytes[start..start + len]);
        }
        self.arena = Arena { bytes, garbage: 0 };
    }
}

/// Bulk loading, for [`Restorer`](crate::Restorer): records are appended unindexed, then
/// [`Records::build`] indexes them all at once.
impl Records {
    /// Reserves room for `n` more records (and a guess at their host names).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.arena.bytes.reserve(n.saturating_mul(16));
    }

    /// Appends a record that no index knows yet (until [`Records::build`]).
    pub(crate) fn push_unindexed(&mut self, rec: &NewRecord<'_>) -> u32 {
        self.alloc(rec)
    }

    /// Drops a record appended by [`Records::push_unindexed`], before [`Records::build`].
    pub(crate) fn drop_unindexed(&mut self, idx: u32) {
        self.release(idx);
    }

    /// Indexes every record (the indexes must be empty). Of the records of one client, the
    /// one `rank` ranks highest becomes its current record; each of the others is kept
    /// unindexed if `keep` says so and dropped otherwise. Returns the places of the
    /// records it dropped.
    ///
    /// Both tables are filled in the order of their buckets, so each is written front to
    /// back instead of at random: at millions of records that is the difference between a
    /// cache miss per record and a streaming pass.
    pub(crate) fn build(
        &mut self,
        rank: impl Fn(&Slot) -> (bool, u64, u32),
        keep: impl Fn(&Slot) -> bool,
    ) -> Vec<Place> {
        debug_assert!(self.by_addr.is_empty() && self.by_client.is_empty());
        self.by_client = IndexTable::with_capacity(self.live);
        let buckets = self.by_client.num_buckets();
        let mut order: Vec<u64> = self
            .iter()
            .map(|i| pack(self.hash_key(self.key(i)), i))
            .collect();
        bucket_order(&mut order, buckets);
        let mut losers = Vec::new();
        {
            let (slots, arena) = (&self.slots, &self.arena);
            for &entry in &order {
                let (hash, idx) = unpack(entry);
                // Only a candidate with the same 7-bit tag is compared, so the slot itself is
                // rarely read here.
                let same = |j: u32| {
                    key_bytes(&slots[j as usize], arena) == key_bytes(&slots[idx as usize], arena)
                };
                match self.by_client.find_mut(hash, same) {
                    Some(current) => {
                        if rank(&slots[idx as usize]) > rank(&slots[*current as usize]) {
                            losers.push(std::mem::replace(current, idx));
                        } else {
                            losers.push(idx);
                        }
                    }
                    None => {
                        // No resize: the table was made for every record.
                        self.by_client.insert_presized(hash, idx);
                    }
                }
            }
        }
        for slot in self.slots.iter_mut() {
            if !slot.is_vacant() {
                slot.flags |= INDEXED;
            }
        }
        let mut dropped = Vec::new();
        for idx in losers {
            self.slots[idx as usize].flags &= !INDEXED;
            if !keep(&self.slots[idx as usize]) {
                dropped.push(self.place(idx));
                self.release(idx);
            }
        }

        self.by_addr = IndexTable::with_capacity(self.live);
        let buckets = self.by_addr.num_buckets();
        order.clear();
        order.extend(
            self.iter()
                .map(|i| pack(self.hash_addr(self.slots[i as usize].addr), i)),
        );
        bucket_order(&mut order, buckets);
        for &entry in &order {
            let (hash, idx) = unpack(entry);
            self.by_addr.insert_presized(hash, idx);
        }
        dropped
    }

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

    /// Checks the indexes against the slots; panics on the first inconsistency.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut indexed = 0;
        for idx in self.iter() {
            let slot = &self.slots[idx as usize];
            assert_eq!(self.find(slot.addr), Some(idx), "{} not found", slot.addr);
            if slot.is_indexed() {
                indexed += 1;
                assert_eq!(
                    self.client_bytes(self.key(idx)),
                    Some(idx),
                    "index of {idx}"
                );
            }
            if slot.has_extra() {
                let parts = self.arena.parts(slot.extra, slot.flags);
                assert!((slot.extra as usize * UNIT + parts.len) <= self.arena.bytes.len());
            }
        }
        assert_eq!(self.by_addr.len(), self.live, "address index size");
        assert_eq!(self.by_client.len(), indexed, "client index size");
        let mut vacant = 0;
        let mut next = self.vacant;
        while next != NONE {
            assert!(self.slots[next as usize].is_vacant());
            vacant += 1;
            next = self.slots[next as usize].extra;
        }
        assert_eq!(vacant + self.live, self.slots.len(), "free list");
    }
}

/// The hash the tables use: 32 bits of foldhash's, repeated in the high half (hashbrown
/// takes the bucket from the low bits and a 7-bit tag from the top ones). 32 bits are what
/// `build` can carry beside a slab index in a `u64`.
fn table_hash(full: u64) -> u64 {
    let low = full & 0xffff_ffff;
    (low << 32) | low
}

/// The table hash of an address: every insert, lookup and resize of `by_addr` uses it.
fn addr_hash(hasher: &DefaultHashBuilder, addr: u32) -> u64 {
    table_hash(hasher.hash_one(addr))
}

/// The table hash of a client key: every insert, lookup and resize of `by_client` uses it.
fn key_hash(hasher: &DefaultHashBuilder, key: &[u8]) -> u64 {
    table_hash(hasher.hash_one(key))
}

/// A table entry to insert as one `u64`: its hash (a [`table_hash`]) and its slab index.
fn pack(hash: u64, idx: u32) -> u64 {
    (u64::from(idx) << 32) | (hash & 0xffff_ffff)
}

/// The hash and slab index of a packed entry.
fn unpack(entry: u64) -> (u64, u32) {
    (table_hash(entry), (entry >> 32) as u32)
}

/// Orders packed entries roughly by bucket, in place: by the top 11 bits of the bucket index,
/// so that inserting them in this order walks the table front to back, a window of
/// `buckets / 2048` buckets at a time.
fn bucket_order(entries: &mut [u64], buckets: usize) {
    // Bucket indexes are the low bits of the hash, which are the low bits of the entry.
    let bits = buckets.trailing_zeros().min(32);
    let shift = bits.saturating_sub(11);
    let mask = (1u64 << (bits - shift)) - 1;
    partition(entries, 1 << 11, |&e| ((e >> shift) & mask) as usize);
}

/// Rearranges `items` in place so that their `digit`s (below `radix`) ascend: one pass of an
/// American flag sort. Returns where each digit's part starts, and the end (`radix + 1`
/// bounds).
fn partition<T>(items: &mut [T], radix: usize, digit: impl Fn(&T) -> usize) -> Vec<usize> {
    let mut bounds = vec![0usize; radix + 1];
    for item in items.iter() {
        bounds[digit(item) + 1] += 1;
    }
    for d in 0..radix {
        bounds[d + 1] += bounds[d];
    }
    let mut next = bounds[..radix].to_vec();
    for d in 0..radix {
        while next[d] < bounds[d + 1] {
            let to = digit(&items[next[d]]);
            if to == d {
                next[d] += 1;
            } else {
                items.swap(next[d], next[to]);
                next[to] += 1;
            }
        }
    }
    bounds
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_48_bytes() {
        assert_eq!(size_of::<Slot>(), 48);
    }

    #[test]
    fn partition_and_packing() {
        let mut items: Vec<u32> = (0..5000u32)
            .map(|i| i.wrapping_mul(2_654_435_761))
            .collect();
        let mut sorted = items.clone();
        let bounds = partition(&mut items, 2048, |&v| (v >> 21) as usize);
        assert_eq!(bounds.len(), 2049);
        assert_eq!(bounds[2048], items.len());
        assert!(items.windows(2).all(|w| w[0] >> 21 <= w[1] >> 21));
        for d in 0..2048 {
            assert!(
                items[bounds[d]..bounds[d + 1]]
                    .iter()
                    .all(|&v| (v >> 21) as usize == d)
            );
        }
        items.sort_unstable();
        sorted.sort_unstable();
        assert_eq!(items, sorted);
        let hash = table_hash(0xfedc_ba98_7654_3210);
        assert_eq!(hash, 0x7654_3210_7654_3210);
        assert_eq!(unpack(pack(hash, 77)), (hash, 77));
        let mut entries: Vec<u64> = (0..3000u64)
            .map(|i| pack(table_hash(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), i as u32))
            .collect();
        bucket_order(&mut entries, 1 << 20);
        let window = |e: u64| (e & ((1 << 20) - 1)) >> 9;
        assert!(entries.windows(2).all(|w| window(w[0]) <= window(w[1])));
    }

    fn rec<'a>(addr: u32, key: &'a [u8], hw: HwAddr, hostname: Option<&'a str>) -> NewRecord<'a> {
        NewRecord {
            addr,
            place: Place::Fixed { pool: None },
            key,
            hw,
            hostname,
            state: LeaseState::Bound,
            starts: 10,
            expires: u64::MAX,
            version: 7,
        }
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
            let idx = r.client(&ClientKey::from_bytes(key)).unwrap();
            assert_eq!(r.slot(idx).addr, i as u32 * 7);
            r.remove(idx);
        }
        r.check();
        for (i, key) in keys.iter().enumerate() {
            let found = r.find(i as u32 * 7);
            assert_eq!(found.is_some(), i % 3 != 0);
            assert_eq!(r.client(&ClientKey::from_bytes(key)), found);
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
            assert_eq!(r.client(&lease.client), Some(idxs[n]));
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
        assert!(r.arena.len() < 2 * COMPACT_MIN + 4096, "{}", r.arena.len());
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
