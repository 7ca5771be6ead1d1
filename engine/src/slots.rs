//! The lease records of one shard, for either family: a slab of fixed-size slots with a free
//! list, an index by resource, an index by client and a byte arena.
//!
//! A record is a [`Slot`] of its family (v4's `records.rs`, v6's `v6/records.rs`), found by
//! resource through `by_res` and, if it is its client's current record, by client key
//! through `by_client`. Both indexes are hash tables of 4-byte slab indexes ([`IndexTable`]):
//! the resource and the key are stored once, in the slot. What does not fit a slot goes to
//! the shard's [`Arena`], one blob per slot, whose layout is the family's. Times are `u32`
//! seconds since the epoch (`common::slot::clamp`).
//!
//! The tables hash with foldhash (hashbrown's default hasher) under a per-table random seed:
//! client keys come from the network, and the seed keeps a client from choosing keys that
//! collide. It is not a keyed cryptographic hash; it is the defense std's and hashbrown's
//! maps use by default.

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::ops::{Index, IndexMut};

use hashbrown::DefaultHashBuilder;

use crate::common::slot::{COMPACT_MIN, KIND_MASK, KIND_VACANT, NONE, UNIT, clamp};

mod arena;

use crate::grow::{IndexTable, Slab};
use crate::lease::{LeaseState, Time};
pub(crate) use arena::{Arena, InlineKey, get_part, put_part};

/// A family's record slot, as the shared record code sees it.
pub(crate) trait Slot: Copy + Debug {
    /// What a record is of: an address (as its `u32`) or a v6 resource.
    type Res: Copy + PartialEq + Debug + Hash;
    /// Where a record sits in the pools.
    type Place: Copy;
    /// What [`Slot::place`] needs besides the slot: the pools' layout.
    type Layout: Debug;
    /// The slab the slots live in.
    type Slab: Slots<Self>;
    /// What a [`New`] record holds that only the family keeps.
    type More<'a>: Copy;
    /// The flag bit of a record that is its client's current one.
    const INDEXED: u8;
    /// Arena bytes [`Records::reserve`] sets aside per record, a guess at its blob.
    const BLOB_GUESS: usize;

    /// The slot of `rec`, whose [`Head`] and state are set already, its blob (if any)
    /// written to `arena`.
    fn build(slot: Self, rec: &New<'_, Self>, arena: &mut Arena) -> Self;

    /// A vacant slot, `next` in the free list.
    fn vacant(next: u32) -> Self;
    fn head(&self) -> &Head;
    fn head_mut(&mut self) -> &mut Head;
    fn flags(&self) -> u8;
    fn flags_mut(&mut self) -> &mut u8;
    fn state(&self) -> LeaseState;
    fn state_mut(&mut self) -> &mut LeaseState;
    /// Stores `place`: its kind in the flags, its pool in the head.
    fn set_place(&mut self, place: Self::Place);
    fn res(&self) -> Self::Res;

    /// The blob's offset in the arena in [`UNIT`]s; the next vacant slot for a vacant one.
    fn extra(&self) -> u32 {
        self.head().extra
    }
    /// When the record's current state began, as the slot keeps it.
    fn starts(&self) -> u32 {
        self.head().starts
    }
    /// When the record's current state ends, as the slot keeps it.
    fn expires(&self) -> u32 {
        self.head().expires
    }
    /// The tick of the shard's clock at the record's last change.
    fn version(&self) -> u64 {
        self.head().version
    }
    fn place(&self, layout: &Self::Layout) -> Self::Place;
    /// The client key's bytes.
    fn key<'a>(&'a self, arena: &'a Arena) -> &'a [u8];
    /// Bytes the slot's blob takes in `arena`, padding included, if it has one.
    fn blob_len(&self, arena: &Arena) -> Option<usize>;
    /// Whether the record may leave the slab now (v6: not while in a remembered list).
    fn removable(&self) -> bool {
        true
    }

    fn is_vacant(&self) -> bool {
        self.flags() & KIND_MASK == KIND_VACANT
    }

    fn is_indexed(&self) -> bool {
        self.flags() & Self::INDEXED != 0
    }
}

/// The slab a family keeps its slots in: a `Vec`, or a [`Slab`] that never copies as it
/// grows.
pub(crate) trait Slots<T>:
    Default + Debug + Index<usize, Output = T> + IndexMut<usize>
{
    fn len(&self) -> usize;
    fn push(&mut self, value: T);
    fn reserve(&mut self, n: usize);
    fn iter<'a>(&'a self) -> impl Iterator<Item = &'a T> + 'a
    where
        T: 'a;
    fn iter_mut<'a>(&'a mut self) -> impl Iterator<Item = &'a mut T> + 'a
    where
        T: 'a;
}

impl<T: Debug> Slots<T> for Vec<T> {
    fn len(&self) -> usize {
        Vec::len(self)
    }
    fn push(&mut self, value: T) {
        Vec::push(self, value);
    }
    fn reserve(&mut self, n: usize) {
        Vec::reserve(self, n);
    }
    fn iter<'a>(&'a self) -> impl Iterator<Item = &'a T> + 'a
    where
        T: 'a,
    {
        self.as_slice().iter()
    }
    fn iter_mut<'a>(&'a mut self) -> impl Iterator<Item = &'a mut T> + 'a
    where
        T: 'a,
    {
        self.as_mut_slice().iter_mut()
    }
}

impl<T: Debug> Slots<T> for Slab<T> {
    fn len(&self) -> usize {
        Slab::len(self)
    }
    fn push(&mut self, value: T) {
        Slab::push(self, value);
    }
    fn reserve(&mut self, n: usize) {
        Slab::reserve(self, n);
    }
    fn iter<'a>(&'a self) -> impl Iterator<Item = &'a T> + 'a
    where
        T: 'a,
    {
        Slab::iter(self)
    }
    fn iter_mut<'a>(&'a mut self) -> impl Iterator<Item = &'a mut T> + 'a
    where
        T: 'a,
    {
        Slab::iter_mut(self)
    }
}

/// What every slot holds first, in either family (24 bytes, no padding).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Head {
    /// The tick of the shard's clock at the record's last change.
    pub(crate) version: u64,
    pub(crate) starts: u32,
    pub(crate) expires: u32,
    /// The pool of a dynamic or in-pool fixed address (resource).
    pub(crate) pool: u32,
    /// The blob's offset in the arena in [`UNIT`]s, or [`NONE`]; the next vacant slot for a
    /// vacant one.
    pub(crate) extra: u32,
}

impl Head {
    pub(crate) const fn vacant(next: u32) -> Head {
        Head {
            version: 0,
            starts: 0,
            expires: 0,
            pool: 0,
            extra: next,
        }
    }

    /// Sets the times of the record's current state, and its version.
    pub(crate) fn stamp(&mut self, starts: Time, expires: Time, version: u64) {
        self.starts = clamp(starts);
        self.expires = clamp(expires);
        self.version = version;
    }
}

/// What [`Records::insert`] stores: a record of `res` at `place` for the client whose key
/// is `key`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct New<'a, S: Slot> {
    pub(crate) res: S::Res,
    pub(crate) place: S::Place,
    pub(crate) key: &'a [u8],
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) expires: Time,
    pub(crate) version: u64,
    /// What only the family keeps (v4: the client's hardware address and host name; v6: the
    /// preferred lifetime).
    pub(crate) more: S::More<'a>,
}

impl<S: Slot> New<'_, S> {
    /// Its slot: the head, state and place set, then the family's part.
    fn slot(&self, arena: &mut Arena) -> S {
        let mut slot = S::vacant(NONE);
        slot.head_mut()
            .stamp(self.starts, self.expires, self.version);
        *slot.state_mut() = self.state;
        slot.set_place(self.place);
        S::build(slot, self, arena)
    }
}

#[cfg(test)]
impl<'a, S: Slot> New<'a, S> {
    /// A binding from 10 to the end of time at version 7, for the records' tests.
    pub(crate) fn bound(res: S::Res, place: S::Place, key: &'a [u8], more: S::More<'a>) -> Self {
        New {
            res,
            place,
            key,
            state: LeaseState::Bound,
            starts: 10,
            expires: u64::MAX,
            version: 7,
            more,
        }
    }
}

/// Writes what both families' [`Slot`] impls share, given slots with the fields `head`,
/// `flags`, `state` and `key` (and the family's own `$field`s, blank in a vacant slot as
/// `$blank`): the inverse of `set_place`, `place_with`, and the trait's field accessors;
/// `$items` are the family's own items of the trait.
macro_rules! slot_impl {
    ($slot:ident { $($field:ident: $blank:expr),* }; $($items:item)*) => {
        impl $slot {
            /// The place `set_place` stored; `off` gives a dynamic one's offset in its pool.
            fn place_with<O>(&self, off: impl FnOnce() -> O) -> $crate::pools::table::Place<PoolId, O> {
                use $crate::pools::table::Place;
                match self.flags & KIND_MASK {
                    KIND_DYNAMIC => Place::Dynamic {
                        pool: PoolId(self.head.pool),
                        off: off(),
                    },
                    KIND_FIXED_IN_POOL => Place::Fixed {
                        pool: Some(PoolId(self.head.pool)),
                    },
                    _ => Place::Fixed { pool: None },
                }
            }
        }

        impl $crate::slots::Slot for $slot {
            fn vacant(next: u32) -> $slot {
                $slot {
                    head: Head::vacant(next),
                    state: LeaseState::Expired,
                    flags: KIND_VACANT,
                    key: InlineKey::EMPTY,
                    $($field: $blank),*
                }
            }
            fn head(&self) -> &Head {
                &self.head
            }
            fn head_mut(&mut self) -> &mut Head {
                &mut self.head
            }
            fn flags(&self) -> u8 {
                self.flags
            }
            fn flags_mut(&mut self) -> &mut u8 {
                &mut self.flags
            }
            fn state(&self) -> LeaseState {
                self.state
            }
            fn state_mut(&mut self) -> &mut LeaseState {
                &mut self.state
            }
            fn set_place(&mut self, place: Place) {
                let (kind, pool) = match place {
                    Place::Dynamic { pool, .. } => (KIND_DYNAMIC, pool.0),
                    Place::Fixed { pool: Some(pool) } => (KIND_FIXED_IN_POOL, pool.0),
                    Place::Fixed { pool: None } => (KIND_FIXED, 0),
                };
                self.flags = (self.flags & !KIND_MASK) | kind;
                self.head.pool = pool;
            }

            $($items)*
        }
    };
}
pub(crate) use slot_impl;

/// One shard's lease records and their two indexes.
#[derive(Debug)]
pub(crate) struct Records<S: Slot> {
    pub(crate) slots: S::Slab,
    /// Head of the free list of vacant slots, linked through `extra`.
    vacant: u32,
    live: usize,
    by_res: IndexTable,
    by_client: IndexTable,
    hasher: DefaultHashBuilder,
    pub(crate) arena: Arena,
    layout: S::Layout,
}

impl<S: Slot> Records<S> {
    pub(crate) fn new(layout: S::Layout) -> Self {
        Self {
            slots: S::Slab::default(),
            vacant: NONE,
            live: 0,
            by_res: IndexTable::default(),
            by_client: IndexTable::default(),
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
    pub(crate) fn find(&self, res: S::Res) -> Option<u32> {
        let slots = &self.slots;
        self.by_res.find(table_hash(&self.hasher, res), |i| {
            slots[i as usize].res() == res
        })
    }

    pub(crate) fn get(&self, res: S::Res) -> Option<&S> {
        self.find(res).map(|i| &self.slots[i as usize])
    }

    /// Slots in the slab, vacant ones included (slab indexes are below this).
    pub(crate) fn slab_len(&self) -> usize {
        self.slots.len()
    }

    /// The slot at `idx`, unless it is vacant.
    pub(crate) fn live_slot(&self, idx: u32) -> Option<&S> {
        let slot = &self.slots[idx as usize];
        (!slot.is_vacant()).then_some(slot)
    }

    pub(crate) fn slot(&self, idx: u32) -> &S {
        &self.slots[idx as usize]
    }

    pub(crate) fn slot_mut(&mut self, idx: u32) -> &mut S {
        &mut self.slots[idx as usize]
    }

    /// The current record of the client whose key is `key`.
    pub(crate) fn client_bytes(&self, key: &[u8]) -> Option<u32> {
        let (slots, arena) = (&self.slots, &self.arena);
        self.by_client.find(table_hash(&self.hasher, key), |i| {
            slots[i as usize].key(arena) == key
        })
    }

    /// The client key of the record.
    pub(crate) fn key(&self, idx: u32) -> &[u8] {
        self.slots[idx as usize].key(&self.arena)
    }

    pub(crate) fn place(&self, idx: u32) -> S::Place {
        self.slots[idx as usize].place(&self.layout)
    }

    /// Every record's slab index.
    pub(crate) fn iter(&self) -> impl Iterator<Item = u32> + '_ {
        self.slots
            .iter()
            .enumerate()
            .filter(|(_, slot)| !slot.is_vacant())
            .map(|(i, _)| i as u32)
    }

    /// Puts `slot` (its blob already written) in a vacant slot or a new one, indexed
    /// nowhere yet.
    pub(crate) fn push_slot(&mut self, slot: S) -> u32 {
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
            self.vacant = self.slots[idx as usize].extra();
            self.slots[idx as usize] = slot;
            idx
        }
    }

    /// Adds a record for `rec`'s resource, which has none; not indexed by client.
    pub(crate) fn insert(&mut self, rec: &New<'_, S>) -> u32 {
        let idx = self.push_unindexed(rec);
        self.index_res(idx);
        idx
    }

    /// Adds the record at `idx`, just pushed, to the resource index (its resource has no
    /// other record); not indexed by client.
    pub(crate) fn index_res(&mut self, idx: u32) {
        let res = self.slots[idx as usize].res();
        debug_assert!(self.find(res).is_none(), "insert over a record");
        let (slots, hasher) = (&self.slots, &self.hasher);
        self.by_res.insert(table_hash(hasher, res), idx, |i| {
            table_hash(hasher, slots[i as usize].res())
        });
    }

    /// Gives the record a new state, the times of it and a new version.
    pub(crate) fn set_term(
        &mut self,
        idx: u32,
        state: LeaseState,
        (starts, expires): (Time, Time),
        version: u64,
    ) -> &mut S {
        let slot = self.slot_mut(idx);
        *slot.state_mut() = state;
        slot.head_mut().stamp(starts, expires, version);
        slot
    }

    /// Makes the record its client's current one. The client must have none.
    pub(crate) fn index(&mut self, idx: u32) {
        debug_assert!(!self.slots[idx as usize].is_indexed());
        debug_assert!(self.client_bytes(self.key(idx)).is_none(), "indexed twice");
        let hash = table_hash(&self.hasher, self.key(idx));
        let (slots, arena, hasher) = (&self.slots, &self.arena, &self.hasher);
        self.by_client.insert(hash, idx, |i| {
            table_hash(hasher, slots[i as usize].key(arena))
        });
        *self.slots[idx as usize].flags_mut() |= S::INDEXED;
    }

    /// Takes the record out of the client index, if it is there.
    pub(crate) fn unindex(&mut self, idx: u32) {
        if !self.slots[idx as usize].is_indexed() {
            return;
        }
        let hash = table_hash(&self.hasher, self.key(idx));
        self.by_client.remove(hash, |i| i == idx);
        *self.slots[idx as usize].flags_mut() &= !S::INDEXED;
    }

    /// Drops the record, from both indexes.
    pub(crate) fn remove(&mut self, idx: u32) {
        debug_assert!(self.slots[idx as usize].removable());
        self.unindex(idx);
        let hash = table_hash(&self.hasher, self.slots[idx as usize].res());
        self.by_res.remove(hash, |i| i == idx);
        self.release(idx);
    }

    /// Frees the slot and its blob; the indexes must not point at it.
    fn release(&mut self, idx: u32) {
        let slot = self.slots[idx as usize];
        self.arena.garbage += slot.blob_len(&self.arena).unwrap_or(0);
        self.slots[idx as usize] = S::vacant(self.vacant);
        self.vacant = idx;
        self.live -= 1;
        self.maybe_compact();
    }

    /// Compacts the arena if garbage is most of it.
    pub(crate) fn maybe_compact(&mut self) {
        let arena = &self.arena;
        if arena.garbage < COMPACT_MIN || arena.garbage * 2 < arena.bytes.len() {
            return;
        }
        let mut bytes = Vec::with_capacity(arena.bytes.len() - arena.garbage);
        for slot in self.slots.iter_mut() {
            if slot.is_vacant() {
                continue;
            }
            let Some(len) = slot.blob_len(arena) else {
                continue;
            };
            let start = slot.extra() as usize * UNIT;
            slot.head_mut().extra = (bytes.len() / UNIT) as u32;
            bytes.extend_from_slice(&arena.bytes[start..start + len]);
        }
        self.arena = Arena { bytes, garbage: 0 };
    }

    /// Checks the indexes against the slots; panics on the first inconsistency.
    #[cfg(test)]
    pub(crate) fn check(&self) {
        let mut indexed = 0;
        for idx in self.iter() {
            let slot = &self.slots[idx as usize];
            assert_eq!(
                self.find(slot.res()),
                Some(idx),
                "{:?} not found",
                slot.res()
            );
            if slot.is_indexed() {
                indexed += 1;
                assert_eq!(
                    self.client_bytes(self.key(idx)),
                    Some(idx),
                    "index of {idx}"
                );
            }
            if let Some(len) = slot.blob_len(&self.arena) {
                assert!((slot.extra() as usize * UNIT + len) <= self.arena.bytes.len());
            }
        }
        assert_eq!(self.by_res.len(), self.live, "resource index size");
        assert_eq!(self.by_client.len(), indexed, "client index size");
        let mut vacant = 0;
        let mut next = self.vacant;
        while next != NONE {
            assert!(self.slots[next as usize].is_vacant());
            vacant += 1;
            next = self.slots[next as usize].extra();
        }
        assert_eq!(vacant + self.live, self.slots.len(), "free list");
    }

    /// Bytes the two tables take on the heap, as allocated.
    #[cfg(test)]
    pub(crate) fn table_bytes(&self) -> usize {
        // A table's bucket is its 4-byte entry and a control byte.
        (self.by_res.capacity() + self.by_client.capacity()) * 5
    }
}

/// Bulk loading, for the restorers: records are appended unindexed, then
/// [`Records::build`] indexes them all at once.
impl<S: Slot> Records<S> {
    /// Reserves room for `n` more records (and a guess at their blobs).
    pub(crate) fn reserve(&mut self, n: usize) {
        self.slots.reserve(n);
        self.arena.bytes.reserve(n.saturating_mul(S::BLOB_GUESS));
    }

    /// Appends a record that no index knows yet (until [`Records::build`]).
    pub(crate) fn push_unindexed(&mut self, rec: &New<'_, S>) -> u32 {
        let slot = rec.slot(&mut self.arena);
        self.push_slot(slot)
    }

    /// Drops a record appended by `push_unindexed`, before [`Records::build`].
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
    pub(crate) fn build<R: Ord>(
        &mut self,
        rank: impl Fn(&S) -> R,
        keep: impl Fn(&S) -> bool,
    ) -> Vec<S::Place> {
        debug_assert!(self.by_res.is_empty() && self.by_client.is_empty());
        self.by_client = IndexTable::with_capacity(self.live);
        let buckets = self.by_client.num_buckets();
        let mut order: Vec<u64> = self
            .iter()
            .map(|i| pack(table_hash(&self.hasher, self.key(i)), i))
            .collect();
        bucket_order(&mut order, buckets);
        let mut losers = Vec::new();
        {
            let (slots, arena) = (&self.slots, &self.arena);
            for &entry in &order {
                let (hash, idx) = unpack(entry);
                // Only a candidate with the same 7-bit tag is compared, so the slot itself is
                // rarely read here.
                let same = |j: u32| slots[j as usize].key(arena) == slots[idx as usize].key(arena);
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
                *slot.flags_mut() |= S::INDEXED;
            }
        }
        let mut dropped = Vec::new();
        for idx in losers {
            *self.slots[idx as usize].flags_mut() &= !S::INDEXED;
            if !keep(&self.slots[idx as usize]) {
                dropped.push(self.place(idx));
                self.release(idx);
            }
        }

        self.by_res = IndexTable::with_capacity(self.live);
        let buckets = self.by_res.num_buckets();
        order.clear();
        order.extend(
            self.iter()
                .map(|i| pack(table_hash(&self.hasher, self.slots[i as usize].res()), i)),
        );
        bucket_order(&mut order, buckets);
        for &entry in &order {
            let (hash, idx) = unpack(entry);
            self.by_res.insert_presized(hash, idx);
        }
        dropped
    }
}

/// The hash the tables use: 32 bits of foldhash's, repeated in the high half (hashbrown
/// takes the bucket from the low bits and a 7-bit tag from the top ones). 32 bits are what
/// `build` can carry beside a slab index in a `u64`. Every insert, lookup and resize of
/// either table hashes with it.
fn table_hash(hasher: &DefaultHashBuilder, value: impl Hash) -> u64 {
    spread(hasher.hash_one(value))
}

fn spread(full: u64) -> u64 {
    let low = full & 0xffff_ffff;
    (low << 32) | low
}

/// A table entry to insert as one `u64`: its hash (a [`table_hash`]) and its slab index.
fn pack(hash: u64, idx: u32) -> u64 {
    (u64::from(idx) << 32) | (hash & 0xffff_ffff)
}

/// The hash and slab index of a packed entry.
fn unpack(entry: u64) -> (u64, u32) {
    (spread(entry), (entry >> 32) as u32)
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
pub(crate) fn partition<T>(
    items: &mut [T],
    radix: usize,
    digit: impl Fn(&T) -> usize,
) -> Vec<usize> {
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
        let hash = spread(0xfedc_ba98_7654_3210);
        assert_eq!(hash, 0x7654_3210_7654_3210);
        assert_eq!(unpack(pack(hash, 77)), (hash, 77));
        let mut entries: Vec<u64> = (0..3000u64)
            .map(|i| pack(spread(i.wrapping_mul(0x9e37_79b9_7f4a_7c15)), i as u32))
            .collect();
        bucket_order(&mut entries, 1 << 20);
        let window = |e: u64| (e & ((1 << 20) - 1)) >> 9;
        assert!(entries.windows(2).all(|w| window(w[0]) <= window(w[1])));
    }
}
