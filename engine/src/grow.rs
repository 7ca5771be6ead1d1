//! Containers that grow without stopping the shard: a slab in fixed-size chunks and a hash
//! table that resizes a little at a time.
//!
//! A `Vec` or a hash table doubles all at once: at a million leases that is a 48 MB copy, or a
//! rehash that reads every record (a cache miss each), while the shard's lock is held and
//! every request behind it waits. Measured with `examples/grow_stalls.rs` before these: 66 ms
//! for the slab doubling at 2^20 records and 89 ms (2^20) and 182 ms (2^21) for the two
//! tables' resizes. Here a new chunk is one allocation of fixed size, and a table that is
//! full starts a bigger one beside it and moves a few entries on every insert, so no single
//! operation does more than a bounded amount of work. The expiry heap lives in a [`Slab`]
//! too ([`MinHeap`]).
//!
//! What is left: starting a resize allocates the new table, whose control bytes hashbrown
//! sets at once (one byte per bucket): about 5 ms at 2^21 entries and 9 ms at 2^22 on this
//! VM, once per doubling. Splitting each index into several tables would divide that, at the
//! price of the bucket-ordered bulk load (`Records::build`) that makes replay fast.

use std::ops::{Index, IndexMut};

use hashbrown::HashTable;

/// Slots per chunk of a [`Slab`]: 32768 slots of 48 bytes are 1.5 MiB.
const CHUNK_BITS: u32 = 15;
const CHUNK: usize = 1 << CHUNK_BITS;
const CHUNK_MASK: usize = CHUNK - 1;

/// A `Vec`-like sequence indexed by `u32`, stored in chunks of [`CHUNK`] elements: pushing
/// never moves what is there.
#[derive(Debug)]
pub(crate) struct Slab<T> {
    chunks: Vec<Vec<T>>,
    len: usize,
}

impl<T> Default for Slab<T> {
    fn default() -> Self {
        Slab {
            chunks: Vec::new(),
            len: 0,
        }
    }
}

impl<T> Slab<T> {
    pub(crate) fn len(&self) -> usize {
        self.len
    }

    pub(crate) fn push(&mut self, value: T) {
        let at = self.len >> CHUNK_BITS;
        if at == self.chunks.len() {
            // The last chunk is full (or there is none): a new one, allocated at its full size
            // once, so it never reallocates.
            self.chunks.push(Vec::with_capacity(CHUNK));
        }
        self.chunks[at].push(value);
        self.len += 1;
    }

    /// Removes and returns the last element. An emptied chunk stays allocated while it is
    /// the only spare one, so pushing and popping at a chunk boundary does not allocate.
    pub(crate) fn pop(&mut self) -> Option<T> {
        if self.len == 0 {
            return None;
        }
        self.len -= 1;
        let at = self.len >> CHUNK_BITS;
        let value = self.chunks[at].pop();
        if self.chunks.len() > at + 2 {
            self.chunks.truncate(at + 2);
        }
        value
    }

    /// Empties it, keeping as many chunks as `n` elements need, so that filling it again up
    /// to `n` allocates nothing.
    pub(crate) fn clear_keeping(&mut self, n: usize) {
        self.chunks.truncate(n.div_ceil(CHUNK));
        for chunk in &mut self.chunks {
            chunk.clear();
        }
        self.len = 0;
    }

    /// Makes room for `n` more elements up front (bulk loading).
    pub(crate) fn reserve(&mut self, n: usize) {
        let chunks = (self.len + n).div_ceil(CHUNK);
        self.chunks
            .reserve(chunks.saturating_sub(self.chunks.len()));
    }

    pub(crate) fn iter(&self) -> impl Iterator<Item = &T> + '_ {
        self.chunks.iter().flatten()
    }

    pub(crate) fn iter_mut(&mut self) -> impl Iterator<Item = &mut T> + '_ {
        self.chunks.iter_mut().flatten()
    }
}

impl<T> Index<usize> for Slab<T> {
    type Output = T;

    #[inline]
    fn index(&self, i: usize) -> &T {
        &self.chunks[i >> CHUNK_BITS][i & CHUNK_MASK]
    }
}

impl<T> IndexMut<usize> for Slab<T> {
    #[inline]
    fn index_mut(&mut self, i: usize) -> &mut T {
        &mut self.chunks[i >> CHUNK_BITS][i & CHUNK_MASK]
    }
}

/// A binary min-heap of `u64`s in a [`Slab`]: growing never copies it.
#[derive(Debug, Default)]
pub(crate) struct MinHeap {
    items: Slab<u64>,
}

impl MinHeap {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }

    pub(crate) fn peek(&self) -> Option<u64> {
        (self.items.len() > 0).then(|| self.items[0])
    }

    pub(crate) fn push(&mut self, value: u64) {
        self.items.push(value);
        let items = &mut self.items;
        let mut at = items.len() - 1;
        while at > 0 {
            let parent = (at - 1) / 2;
            if items[parent] <= value {
                break;
            }
            items[at] = items[parent];
            at = parent;
        }
        items[at] = value;
    }

    /// Empties it, keeping room for `n` entries (see [`Slab::clear_keeping`]).
    pub(crate) fn clear_keeping(&mut self, n: usize) {
        self.items.clear_keeping(n);
    }

    /// The heap of these entries (bottom-up, O(n)).
    pub(crate) fn from_vec(values: Vec<u64>) -> Self {
        let mut items = Slab::default();
        items.reserve(values.len());
        for v in values {
            items.push(v);
        }
        let n = items.len();
        for at in (0..n / 2).rev() {
            let v = items[at];
            sift_down(&mut items, n, at, v);
        }
        MinHeap { items }
    }

    pub(crate) fn pop(&mut self) -> Option<u64> {
        let last = self.items.pop()?;
        let n = self.items.len();
        if n == 0 {
            return Some(last);
        }
        let top = self.items[0];
        sift_down(&mut self.items, n, 0, last);
        Some(top)
    }

    /// Every entry, in no particular order.
    #[cfg(test)]
    pub(crate) fn iter(&self) -> impl Iterator<Item = u64> + '_ {
        self.items.iter().copied()
    }
}

/// Puts `value` at `at` (whose old value is gone) and moves it down to where it belongs
/// among the first `n` items.
fn sift_down(items: &mut Slab<u64>, n: usize, mut at: usize, value: u64) {
    loop {
        let child = 2 * at + 1;
        if child >= n {
            break;
        }
        let child = if child + 1 < n && items[child + 1] < items[child] {
            child + 1
        } else {
            child
        };
        if value <= items[child] {
            break;
        }
        items[at] = items[child];
        at = child;
    }
    items[at] = value;
}

/// Buckets of the old table moved per insert while a resize is under way, at least: about
/// 7 entries, a few hundred nanoseconds.
const MIGRATE_MIN: usize = 8;

/// A hashbrown `HashTable<u32>` of slab indexes that resizes incrementally.
///
/// When the current table has no room left for an insert (it is full, or its room went to
/// tombstones), it becomes the old table and a new one of twice the live entries takes its
/// place; every later insert first moves the entries of a few of the old table's buckets
/// into the new one, in bucket order, so the old table is empty well before the new one
/// could fill. Lookups and removals look in both. Entries are hashed again from the slab
/// with the `hash` closure the caller passes, as hashbrown's own resize does.
#[derive(Debug, Default)]
pub(crate) struct IndexTable {
    cur: HashTable<u32>,
    old: HashTable<u32>,
    /// The next bucket of `old` to move.
    cursor: usize,
    /// Buckets of `old` to move per insert.
    step: usize,
}

impl IndexTable {
    pub(crate) fn with_capacity(n: usize) -> Self {
        IndexTable {
            cur: HashTable::with_capacity(n),
            ..IndexTable::default()
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.cur.len() + self.old.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Buckets of the current table (for bulk loading in bucket order).
    pub(crate) fn num_buckets(&self) -> usize {
        self.cur.num_buckets()
    }

    /// Entries the two tables have room for, as allocated.
    #[cfg(test)]
    pub(crate) fn capacity(&self) -> usize {
        self.cur.capacity() + self.old.capacity()
    }

    /// Whether a resize is under way (an old table still has entries).
    #[cfg(test)]
    pub(crate) fn resizing(&self) -> bool {
        !self.old.is_empty()
    }

    pub(crate) fn find(&self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> Option<u32> {
        if let Some(&v) = self.cur.find(hash, |&v| eq(v)) {
            return Some(v);
        }
        if self.old.is_empty() {
            return None;
        }
        self.old.find(hash, |&v| eq(v)).copied()
    }

    pub(crate) fn find_mut(
        &mut self,
        hash: u64,
        mut eq: impl FnMut(u32) -> bool,
    ) -> Option<&mut u32> {
        // Two lookups rather than one borrow across both tables (the borrow checker cannot
        // see that the first found nothing).
        if self.cur.find(hash, |&v| eq(v)).is_some() {
            return self.cur.find_mut(hash, |&v| eq(v));
        }
        self.old.find_mut(hash, |&v| eq(v))
    }

    /// Removes the entry `eq` matches; returns whether there was one.
    pub(crate) fn remove(&mut self, hash: u64, mut eq: impl FnMut(u32) -> bool) -> bool {
        if let Ok(entry) = self.cur.find_entry(hash, |&v| eq(v)) {
            entry.remove();
            return true;
        }
        if let Ok(entry) = self.old.find_entry(hash, |&v| eq(v)) {
            entry.remove();
            return true;
        }
        false
    }

    /// Inserts `value`, which must not be in the table. `rehash` gives the hash of any entry.
    pub(crate) fn insert(&mut self, hash: u64, value: u32, rehash: impl Fn(u32) -> u64) {
        if self.cur.len() == self.cur.capacity() {
            self.start_resize(&rehash);
        }
        self.migrate(&rehash);
        self.cur.insert_unique(hash, value, |&v| rehash(v));
    }

    /// Inserts into a table sized for everything it will hold (bulk loading): never resizes.
    pub(crate) fn insert_presized(&mut self, hash: u64, value: u32) {
        debug_assert!(self.cur.len() < self.cur.capacity() && self.old.is_empty());
        self.cur
            .insert_unique(hash, value, |_| unreachable!("the table was sized for it"));
    }

    fn start_resize(&mut self, rehash: &impl Fn(u32) -> u64) {
        // By construction the previous resize is over (see `step`); finish it if not.
        while !self.old.is_empty() {
            self.migrate(rehash);
        }
        let live = self.cur.len();
        let old = std::mem::replace(&mut self.cur, HashTable::with_capacity((2 * live).max(16)));
        // The old table's buckets must all be visited before the new table's spare room,
        // at least `live` inserts, runs out: twice as fast as that, with a floor.
        self.step = (2 * old.num_buckets())
            .div_ceil(live.max(1))
            .max(MIGRATE_MIN);
        self.old = old;
        self.cursor = 0;
    }

    fn migrate(&mut self, rehash: &impl Fn(u32) -> u64) {
        if self.old.is_empty() {
            if self.old.capacity() > 0 {
                // Done: give the old table's memory back.
                self.old = HashTable::new();
            }
            return;
        }
        let end = (self.cursor + self.step).min(self.old.num_buckets());
        for bucket in self.cursor..end {
            if let Ok(entry) = self.old.get_bucket_entry(bucket) {
                let (value, _) = entry.remove();
                self.cur.insert_unique(rehash(value), value, |&v| rehash(v));
            }
        }
        self.cursor = end;
        if self.old.is_empty() {
            self.old = HashTable::new();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn h(v: u32) -> u64 {
        u64::from(v).wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }

    #[test]
    fn slab_indexes_across_chunks() {
        let mut s = Slab::default();
        let n = 3 * CHUNK + 5;
        s.reserve(n);
        for i in 0..n {
            s.push(i as u64 * 3);
        }
        assert_eq!(s.len(), n);
        assert_eq!(s[CHUNK - 1], (CHUNK as u64 - 1) * 3);
        assert_eq!(s[CHUNK], CHUNK as u64 * 3);
        s[2 * CHUNK + 1] = 1;
        assert_eq!(s[2 * CHUNK + 1], 1);
        assert_eq!(s.iter().count(), n);
        for v in s.iter_mut() {
            *v += 1;
        }
        assert_eq!(s[n - 1], (n as u64 - 1) * 3 + 1);
    }

    #[test]
    fn heap_pops_in_order_across_chunks() {
        let mut heap = MinHeap::default();
        let mut model = std::collections::BinaryHeap::new();
        let mut x: u64 = 1;
        for round in 0..(3 * CHUNK as u64) {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let v = x >> 40;
            heap.push(v);
            model.push(std::cmp::Reverse(v));
            if round % 3 == 0 {
                assert_eq!(heap.pop(), model.pop().map(|r| r.0));
            }
            assert_eq!(heap.peek(), model.peek().map(|r| r.0));
        }
        assert_eq!(heap.len(), model.len());
        assert_eq!(heap.iter().count(), model.len());
        while let Some(std::cmp::Reverse(v)) = model.pop() {
            assert_eq!(heap.pop(), Some(v));
        }
        assert_eq!(heap.pop(), None);
        assert!(
            heap.items.chunks.len() <= 2,
            "spare chunks kept: {}",
            heap.items.chunks.len()
        );
    }

    /// Every insert does a bounded amount of moving, and the old table is always empty by
    /// the time the new one is full: no insert ever falls back to hashbrown's own resize.
    #[test]
    fn table_resizes_incrementally_and_keeps_every_entry() {
        let mut t = IndexTable::default();
        let mut resizes = 0;
        let mut was_resizing = false;
        for v in 0..200_000u32 {
            let before = t.cur.num_buckets();
            let migrating = t.resizing();
            t.insert(h(v), v, h);
            if t.resizing() && !was_resizing {
                resizes += 1;
            }
            was_resizing = t.resizing();
            // hashbrown never grew the current table on its own during a migration.
            if migrating {
                assert_eq!(t.cur.num_buckets(), before, "resized all at once at {v}");
            }
            if v % 997 == 0 {
                // Lookups find entries in both tables mid-resize.
                for probe in [0, v / 2, v] {
                    assert_eq!(t.find(h(probe), |x| x == probe), Some(probe));
                }
            }
        }
        assert!(resizes >= 10, "{resizes} resizes");
        assert_eq!(t.len(), 200_000);
        for v in (0..200_000u32).step_by(2) {
            assert!(t.remove(h(v), |x| x == v));
            assert!(!t.remove(h(v), |x| x == v));
        }
        assert_eq!(t.len(), 100_000);
        for v in 0..200_000u32 {
            assert_eq!(t.find(h(v), |x| x == v).is_some(), v % 2 == 1, "{v}");
        }
        if let Some(x) = t.find_mut(h(7), |x| x == 7) {
            *x = 7;
        }
        assert_eq!(t.find(h(7), |x| x == 7), Some(7));
    }

    /// Churn (insert one, remove one) leaves tombstones; the table then resizes into a new
    /// one of the live size instead of rehashing everything in place.
    #[test]
    fn churn_is_absorbed_without_growing() {
        let mut t = IndexTable::default();
        for v in 0..10_000u32 {
            t.insert(h(v), v, h);
        }
        for v in 10_000..400_000u32 {
            t.insert(h(v), v, h);
            let gone = v - 10_000;
            assert!(t.remove(h(gone), |x| x == gone));
        }
        assert_eq!(t.len(), 10_000);
        assert!(
            t.cur.num_buckets() + t.old.num_buckets() <= 65_536,
            "{} + {} buckets for 10k entries",
            t.cur.num_buckets(),
            t.old.num_buckets()
        );
        for v in 390_000..400_000u32 {
            assert_eq!(t.find(h(v), |x| x == v), Some(v));
        }
    }
}
