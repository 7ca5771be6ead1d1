//! The v6 lease records of one shard, stored compactly (the v4 `records.rs` layout).
//!
//! A record is an 80-byte [`Slot`] in a slab (`Vec<Slot>` with a free list), found by
//! resource through `by_res` and, if it is its IA's current record, by IA key through
//! `by_client`. Both indexes are `hashbrown::HashTable<u32>`s of slab indexes hashed with
//! foldhash under a per-table random seed (keys come from the network). An IA key of up to
//! [`KEY_INLINE`] bytes (a DUID of up to 19: DUID-LLT, DUID-LL, DUID-UUID and most DUID-EN)
//! lives in the slot; a longer one in the shard's arena. Released/Expired records of dynamic
//! resources are also linked, through the slots, into their pool's list of remembered
//! records, oldest first ([`List`]).

use std::hash::BuildHasher;
use std::net::Ipv6Addr;

use hashbrown::{DefaultHashBuilder, HashTable};

use crate::common::slot::{
    COMPACT_MIN, KIND_DYNAMIC, KIND_FIXED, KIND_FIXED_IN_POOL, KIND_MASK, KIND_VACANT, NONE, UNIT,
    clamp,
};
use crate::lease::{LeaseState, Time};

use super::key::{IaKey, Resource};
use super::lease::{V6Lease, V6LeaseView};
use super::pools::{Place, V6PoolId};

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
    /// The tick of the shard's clock at the record's last change.
    pub(crate) version: u64,
    /// The resource's address, as two halves (a `u128` would align the slot to 16).
    addr: [u64; 2],
    pub(crate) starts: u32,
    pub(crate) expires: u32,
    pub(crate) preferred: u32,
    /// The pool of a dynamic or in-pool fixed resource.
    pool: u32,
    /// The key's blob in the arena in [`UNIT`]s; the next vacant slot for a vacant one.
    extra: u32,
    /// Neighbours in the remembered list.
    prev: u32,
    next: u32,
    pub(crate) state: LeaseState,
    flags: u8,
    /// The resource's length.
    len: u8,
    /// `key[0]` is the key's length and `key[1..]` its bytes, unless `KEY_EXTRA`.
    key: [u8; KEY_INLINE + 1],
}

impl Slot {
    fn vacant(next: u32) -> Slot {
        Slot {
            version: 0,
            addr: [0; 2],
            starts: 0,
            expires: 0,
            preferred: 0,
            pool: 0,
            extra: next,
            prev: NONE,
            next: NONE,
            state: LeaseState::Expired,
            flags: KIND_VACANT,
            len: 0,
            key: [0; KEY_INLINE + 1],
        }
    }

    pub(crate) fn is_vacant(&self) -> bool {
        self.flags & KIND_MASK == KIND_VACANT
    }

    pub(crate) fn is_indexed(&self) -> bool {
        self.flags & INDEXED != 0
    }

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

/// Long keys: one blob per slot that needs one, appended; a dropped blob becomes garbage and
/// the arena is compacted once garbage is most of it (amortised O(1) per byte written).
#[derive(Debug, Default)]
struct Arena {
    bytes: Vec<u8>,
    garbage: usize,
}

impl Arena {
    fn get(&self, off: u32) -> &[u8] {
        let at = off as usize * UNIT;
        let len = u32::from_le_bytes([
            self.bytes[at],
            self.bytes[at + 1],
            self.bytes[at + 2],
            self.bytes[at + 3],
        ]) as usize;
        &self.bytes[at + 4..at + 4 + len]
    }

    /// Bytes the blob at `off` takes, padding included.
    fn size(&self, off: u32) -> usize {
        (4 + self.get(off).len()).next_multiple_of(UNIT)
    }

    fn push(&mut self, key: &[u8]) -> u32 {
        let start = self.bytes.len();
        let len = u32::try_from(key.len()).expect("an IA key longer than 4 GiB");
        self.bytes.extend_from_slice(&len.to_le_bytes());
        self.bytes.extend_from_slice(key);
        self.bytes
            .resize(self.bytes.len().next_multiple_of(UNIT), 0);
        assert!(
            self.bytes.len() / UNIT < NONE as usize,
            "a shard holds more than 16 GiB of long IA keys"
        );
        (start / UNIT) as u32
    }
}

/// What [`Records::insert`] stores.
#[derive(Clone, Copy, Debug)]
pub(crate) struct NewRecord<'a> {
    pub(crate) res: Resource,
    pub(crate) place: Place,
    pub(crate) key: &'a [u8],
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) preferred: u32,
    pub(crate) expires: Time,
    pub(crate) version: u64,
}

/// One shard's lease records and their two indexes.
#[derive(Debug)]
pub(crate) struct Records {
    slots: Vec<Slot>,
    /// Head of the free list of vacant slots, linked through `extra`.
    vacant: u32,
    live: usize,
    by_res: HashTable<u32>,
    by_client: HashTable<u32>,
    hasher: DefaultHashBuilder,
    arena: Arena,
    /// `(first, shift)` of each pool, for the offsets of dynamic resources.
    layout: Box<[(u128, u32)]>,
}

fn key_bytes<'a>(slot: &'a Slot, arena: &'a Arena) -> &'a [u8] {
    if slot.flags & KEY_EXTRA == 0 {
        &slot.key[1..1 + usize::from(slot.key[0])]
    } else {
        arena.get(slot.extra)
    }
}

fn res_hash(hasher: &DefaultHashBuilder, res: Resource) -> u64 {
    hasher.hash_one((u128::from(res.addr), res.len))
}

fn key_hash(hasher: &DefaultHashBuilder, key: &[u8]) -> u64 {
    hasher.hash_one(key)
}

impl Records {
    pub(crate) fn new(layout: Box<[(u128, u32)]>) -> Self {
        Self {
            slots: Vec::new(),
            vacant: NONE,
            live: 0,
            by_res: HashTable::new(),
            by_client: HashTable::new(),
            hasher: DefaultHashBuilder::default(),
            arena: Arena::default(),
            layout,
        }
    }

    /// Number of records.
    pub(crate) fn len(&self) -> usize {
        self.live
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.live == 0
    }

    /// The record of `res`.
    pub(crate) fn find(&self, res: Resource) -> Option<u32> {
        let slots = &self.slots;
        self.by_res
            .find(res_hash(&self.hasher, res), |&i| {
                slots[i as usize].resource() == res
            })
            .copied()
    }

    pub(crate) fn slot(&self, idx: u32) -> &Slot {
        &self.slots[idx as usize]
    }

    /// The IA's current record.
    pub(crate) fn client(&self, key: &IaKey) -> Option<u32> {
        self.client_bytes(key.as_bytes())
    }

    fn client_bytes(&self, key: &[u8]) -> Option<u32> {
        let (slots, arena) = (&self.slots, &self.arena);
        self.by_client
            .find(key_hash(&self.hasher, key), |&i| {
                key_bytes(&slots[i as usize], arena) == key
            })
            .copied()
    }

    /// The IA key bytes of the record.
    pub(crate) fn key(&self, idx: u32) -> &[u8] {
        key_bytes(&self.slots[idx as usize], &self.arena)
    }

    pub(crate) fn place(&self, idx: u32) -> Place {
        let slot = &self.slots[idx as usize];
        match slot.flags & KIND_MASK {
            KIND_DYNAMIC => {
                let (first, shift) = self.layout[slot.pool as usize];
                Place::Dynamic {
                    pool: V6PoolId(slot.pool),
                    off: (u128::from(slot.resource().addr) - first) >> shift,
                }
            }
            KIND_FIXED_IN_POOL => Place::Fixed {
                pool: Some(V6PoolId(slot.pool)),
            },
            _ => Place::Fixed { pool: None },
        }
    }

    /// Sets the record's state, times and version.
    pub(crate) fn set_term(
        &mut self,
        idx: u32,
        state: LeaseState,
        starts: Time,
        preferred: u32,
        expires: Time,
        version: u64,
    ) {
        let slot = &mut self.slots[idx as usize];
        slot.state = state;
        slot.starts = clamp(starts);
        slot.preferred = preferred;
        slot.expires = clamp(expires);
        slot.version = version;
    }

    pub(crate) fn lease(&self, idx: u32) -> V6Lease {
        let slot = &self.slots[idx as usize];
        V6Lease {
            resource: slot.resource(),
            pool: self.place(idx).pool(),
            // Only ever written from an `IaKey`'s bytes.
            client: IaKey::from_bytes(self.key(idx)).expect("a record's key is valid"),
            state: slot.state,
            starts: Time::from(slot.starts),
            preferred: slot.preferred,
            expires: Time::from(slot.expires),
            version: slot.version,
        }
    }

    pub(crate) fn view(&self, idx: u32) -> V6LeaseView {
        let slot = &self.slots[idx as usize];
        V6LeaseView {
            resource: slot.resource(),
            pool: self.place(idx).pool(),
            state: slot.state,
            starts: Time::from(slot.starts),
            preferred: slot.preferred,
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

    /// Builds the slot of `rec` in a vacant slot or a new one, indexed nowhere yet.
    fn alloc(&mut self, rec: &NewRecord<'_>) -> u32 {
        let mut slot = Slot::vacant(NONE);
        let addr = u128::from(rec.res.addr);
        slot.version = rec.version;
        slot.addr = [(addr >> 64) as u64, addr as u64];
        slot.len = rec.res.len;
        slot.starts = clamp(rec.starts);
        slot.preferred = rec.preferred;
        slot.expires = clamp(rec.expires);
        slot.state = rec.state;
        slot.set_place(rec.place);
        if rec.key.len() > KEY_INLINE {
            slot.flags |= KEY_EXTRA;
            slot.extra = self.arena.push(rec.key);
        } else {
            slot.key[0] = rec.key.len() as u8;
            slot.key[1..1 + rec.key.len()].copy_from_slice(rec.key);
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

    /// Adds a record for `rec.res`, which has none; not indexed by IA.
    pub(crate) fn insert(&mut self, rec: &NewRecord<'_>) -> u32 {
        debug_assert!(self.find(rec.res).is_none(), "insert over a record");
        let idx = self.alloc(rec);
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_res
            .insert_unique(res_hash(hasher, rec.res), idx, |&i| {
                res_hash(hasher, slots[i as usize].resource())
            });
        idx
    }

    /// Makes the record its IA's current one. The IA must have none.
    pub(crate) fn index(&mut self, idx: u32) {
        debug_assert!(!self.slots[idx as usize].is_indexed());
        debug_assert!(self.client_bytes(self.key(idx)).is_none(), "indexed twice");
        let hash = key_hash(&self.hasher, self.key(idx));
        let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
        self.by_client.insert_unique(hash, idx, |&i| {
            key_hash(hasher, key_bytes(&slots[i as usize], arena))
        });
        self.slots[idx as usize].flags |= INDEXED;
    }

    /// Takes the record out of the IA index, if it is there.
    pub(crate) fn unindex(&mut self, idx: u32) {
        if !self.slots[idx as usize].is_indexed() {
            return;
        }
        let hash = key_hash(&self.hasher, self.key(idx));
        if let Ok(entry) = self.by_client.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.slots[idx as usize].flags &= !INDEXED;
    }

    /// Drops the record, from both indexes (it must not be in a list).
    pub(crate) fn remove(&mut self, idx: u32) {
        debug_assert!(!self.slots[idx as usize].is_listed());
        self.unindex(idx);
        let hash = res_hash(&self.hasher, self.slots[idx as usize].resource());
        if let Ok(entry) = self.by_res.find_entry(hash, |&i| i == idx) {
            entry.remove();
        }
        self.release(idx);
    }

    /// Frees the slot and its blob; the indexes must not point at it.
    fn release(&mut self, idx: u32) {
        let slot = self.slots[idx as usize];
        if slot.flags & KEY_EXTRA != 0 {
            self.arena.garbage += self.arena.size(slot.extra);
        }
        self.slots[idx as usize] = Slot::vacant(self.vacant);
        self.vacant = idx;
        self.live -= 1;
        self.maybe_compact();
    }

    fn maybe_compact(&mut self) {
        let arena = &self.arena;
        if arena.garbage < COMPACT_MIN || arena.garbage * 2 < arena.bytes.len() {
            return;
        }
        let mut bytes = Vec::with_capacity(arena.bytes.len() - arena.garbage);
        for slot in &mut self.slots {
            if slot.is_vacant() || slot.flags & KEY_EXTRA == 0 {
                continue;
            }
            let start = slot.extra as usize * UNIT;
            let size = arena.size(slot.extra);
            slot.extra = (bytes.len() / UNIT) as u32;
            bytes.extend_from_slice(&arena.bytes[start..start + size]);
        }
        self.arena = Arena { bytes, garbage: 0 };
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
        // A table's bucket is its 4-byte entry and a control byte.
        self.slots.capacity() * size_of::<Slot>()
            + (self.by_res.capacity() + self.by_client.capacity()) * 5
            + self.arena.bytes.capacity()
    }

    /// Checks the indexes against the slots; panics on the first inconsistency.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut indexed = 0;
        for idx in self.iter() {
            let slot = &self.slots[idx as usize];
            assert_eq!(
                self.find(slot.resource()),
                Some(idx),
                "{:?} not found",
                slot.resource()
            );
            if slot.is_indexed() {
                indexed += 1;
                assert_eq!(
                    self.client_bytes(self.key(idx)),
                    Some(idx),
                    "index of {idx}"
                );
            }
        }
        assert_eq!(self.by_res.len(), self.live, "resource index size");
        assert_eq!(self.by_client.len(), indexed, "IA index size");
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

/// Bulk loading, for [`V6Restorer`](super::V6Restorer): records are appended unindexed, then
/// indexed all at once.
impl Records {
    /// Reserves room for `n` more records.
    pub(crate) fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
    }

    /// Appends a record that no index knows yet (until [`Records::build`]).
    pub(crate) fn push_unindexed(&mut self, rec: &NewRecord<'_>) -> u32 {
        self.alloc(rec)
    }

    /// Drops a record appended by [`Records::push_unindexed`], before [`Records::build`].
    pub(crate) fn drop_unindexed(&mut self, idx: u32) {
        self.release(idx);
    }

    /// Indexes every record (the indexes must be empty). Of the records of one IA, the one
    /// `rank` ranks highest becomes its current record; each of the others is kept unindexed
    /// if `keep` says so and dropped otherwise. Returns how many it dropped.
    pub(crate) fn build(
        &mut self,
        rank: impl Fn(&Slot) -> (bool, u64, Resource),
        keep: impl Fn(&Slot) -> bool,
    ) -> usize {
        debug_assert!(self.by_res.is_empty() && self.by_client.is_empty());
        self.by_client = HashTable::with_capacity(self.live);
        self.by_res = HashTable::with_capacity(self.live);
        let all: Vec<u32> = self.iter().collect();
        let mut losers = Vec::new();
        {
            let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
            for &idx in &all {
                let key = key_bytes(&slots[idx as usize], arena);
                let hash = key_hash(hasher, key);
                let same = |&j: &u32| key_bytes(&slots[j as usize], arena) == key;
                match self.by_client.find_mut(hash, same) {
                    Some(current) => {
                        if rank(&slots[idx as usize]) > rank(&slots[*current as usize]) {
                            losers.push(std::mem::replace(current, idx));
                        } else {
                            losers.push(idx);
                        }
                    }
                    None => {
                        self.by_client.insert_unique(hash, idx, |&i| {
                            key_hash(hasher, key_bytes(&slots[i as usize], arena))
                        });
                    }
                }
            }
        }
        for &idx in &all {
            self.slots[idx as usize].flags |= INDEXED;
        }
        let mut dropped = 0;
        for idx in losers {
            self.slots[idx as usize].flags &= !INDEXED;
            if keep(&self.slots[idx as usize]) {
                continue;
            }
            dropped += 1;
            self.release(idx);
        }
        let (slots, hasher) = (&self.slots, &self.hasher);
        for (idx, slot) in slots.iter().enumerate() {
            if slot.is_vacant() {
                continue;
            }
            self.by_res
                .insert_unique(res_hash(hasher, slot.resource()), idx as u32, |&i| {
                    res_hash(hasher, slots[i as usize].resource())
                });
        }
        dropped
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::v6::key::IaKind;

    #[test]
    fn a_slot_is_80_bytes() {
        assert_eq!(size_of::<Slot>(), 80);
    }

    fn rec(n: u32, key: &[u8]) -> NewRecord<'_> {
        NewRecord {
            res: Resource::address(Ipv6Addr::from(0x2001_0db8_u128 << 96 | u128::from(n))),
            place: Place::Fixed { pool: None },
            key,
            state: LeaseState::Bound,
            starts: 10,
            preferred: 5,
            expires: u64::MAX,
            version: 7,
        }
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
            let idx = r.client(key).unwrap();
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
            assert_eq!(r.client(key).is_some(), i % 3 != 0);
        }
    }
}
