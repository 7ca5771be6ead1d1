//! One shard's share of one pool's offsets: which it owns, and which of those are free.
//!
//! Two representations, chosen per pool by its size:
//!
//! - **Dense** (pools of up to [`DENSE_MAX`] offsets): a roaring bitmap of the clean free
//!   offsets, exactly as v4 keeps them. Allocation takes the lowest one: O(1)-ish however
//!   full the pool is, and the bitmap stays a few runs.
//! - **Sparse** (larger pools: a /64 of addresses has 2^64, a /32 split into /56s 2^24): a
//!   bitmap over the range is out of the question, and so is a set of free offsets. The shard
//!   keeps the *intervals it owns* (its initial block, minus exclusions, plus whatever it
//!   borrowed, minus whatever it lent: normally one or a few intervals), and an offset in them
//!   is free unless the shard has a record of it, which its resource index answers in O(1).
//!   Free count = owned − records, exact. Allocation hashes the IA key (with the shard's
//!   random seed) to a target offset in the shard's initial block and takes the first owned
//!   offset from there without a record (linear probing). In a pool much larger than its
//!   leases that is the target itself, so:
//!     - memory is the records and nothing else, whatever the pool's size;
//!     - addresses are spread over the range, not handed out in a guessable sequence
//!       (RFC 7707 §4.1.2 on address scanning);
//!     - an IA gets the same resource again for as long as the process lives and it is
//!       free, even without a record remembering it, which is what lets the shard forget
//!       Released/Expired records beyond a cap (see `Shard::trim`) in a pool where they would
//!       otherwise pile up forever.
//!
//!   Probing stops at the first offset without a record, so a probe costs at most one
//!   lookup per record of that pool in the shard, plus one; with a random seed a client
//!   cannot choose keys that cluster. A sparse pool more than about half full (millions of
//!   leases per shard) gets slower to allocate from, which pools that large never are.
//!
//! Released/Expired ("remembered") records are free but kept for their IA; they are not in
//! the representation above but in a per-pool list in the shard (oldest first), reused only
//! when no clean offset is left.

use std::collections::BTreeMap;

use roaring::RoaringBitmap;

use crate::ends::Free;

/// Pools of at most this many offsets are dense.
pub(crate) const DENSE_MAX: u128 = 1 << 20;

/// Disjoint, non-adjacent inclusive intervals of offsets, and how many offsets they hold.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Intervals {
    /// `lo -> hi`.
    map: BTreeMap<u128, u128>,
    len: u128,
}

impl Intervals {
    pub(crate) fn len(&self) -> u128 {
        self.len
    }

    /// Number of intervals.
    #[cfg(test)]
    pub(crate) fn count(&self) -> usize {
        self.map.len()
    }

    /// The interval holding `x`.
    fn around(&self, x: u128) -> Option<(u128, u128)> {
        self.map
            .range(..=x)
            .next_back()
            .filter(|&(_, &hi)| hi >= x)
            .map(|(&lo, &hi)| (lo, hi))
    }

    pub(crate) fn contains(&self, x: u128) -> bool {
        self.around(x).is_some()
    }

    /// The lowest offset held that is at least `x`.
    pub(crate) fn successor(&self, x: u128) -> Option<u128> {
        if self.contains(x) {
            return Some(x);
        }
        self.map.range(x..).next().map(|(&lo, _)| lo)
    }

    /// The offset after `x` (held), wrapping to the lowest.
    fn next_wrapping(&self, x: u128) -> Option<u128> {
        x.checked_add(1)
            .and_then(|n| self.successor(n))
            .or_else(|| self.first())
    }

    pub(crate) fn first(&self) -> Option<u128> {
        self.map.first_key_value().map(|(&lo, _)| lo)
    }

    /// Adds `lo..=hi`, which must not overlap what is held; merges with neighbours.
    pub(crate) fn insert(&mut self, lo: u128, hi: u128) {
        debug_assert!(lo <= hi);
        debug_assert!(
            self.map
                .range(..=hi)
                .next_back()
                .is_none_or(|(_, &h)| h < lo),
            "inserting {lo}..={hi} over held offsets"
        );
        self.len += hi - lo + 1;
        let (mut lo, mut hi) = (lo, hi);
        if let Some((&plo, &phi)) = self.map.range(..lo).next_back()
            && phi.checked_add(1) == Some(lo)
        {
            self.map.remove(&plo);
            lo = plo;
        }
        if let Some(next) = hi.checked_add(1)
            && let Some(nhi) = self.map.remove(&next)
        {
            hi = nhi;
        }
        self.map.insert(lo, hi);
    }

    /// Takes `lo..=hi` out; it must lie within one held interval. Returns whether it did.
    pub(crate) fn remove(&mut self, lo: u128, hi: u128) -> bool {
        let Some((alo, ahi)) = self.around(lo) else {
            return false;
        };
        if hi > ahi {
            return false;
        }
        self.map.remove(&alo);
        if alo < lo {
            self.map.insert(alo, lo - 1);
        }
        if hi < ahi {
            self.map.insert(hi + 1, ahi);
        }
        self.len -= hi - lo + 1;
        true
    }

    /// The intervals, ascending.
    pub(crate) fn iter(&self) -> impl DoubleEndedIterator<Item = (u128, u128)> + '_ {
        self.map.iter().map(|(&lo, &hi)| (lo, hi))
    }
}

/// Offsets moving from one shard to another (free, no record anywhere).
#[derive(Debug)]
pub(crate) enum Lent {
    Dense(RoaringBitmap),
    /// Inclusive intervals.
    Sparse(Vec<(u128, u128)>),
}

impl Lent {
    pub(crate) fn is_empty(&self) -> bool {
        match self {
            Lent::Dense(b) => b.is_empty(),
            Lent::Sparse(v) => v.is_empty(),
        }
    }

    pub(crate) fn add(&mut self, off: u128) {
        match self {
            Lent::Dense(b) => {
                b.insert(off as u32);
            }
            Lent::Sparse(v) => match v.last_mut() {
                Some(last) if last.0.checked_sub(1) == Some(off) => last.0 = off,
                _ => v.push((off, off)),
            },
        }
    }
}

/// One shard's share of one pool (see the module docs).
#[derive(Debug, PartialEq)]
pub(crate) enum Space {
    Dense {
        /// Free offsets nobody is remembered for (offsets are below 2^32 in a dense pool).
        clean: RoaringBitmap,
    },
    Sparse {
        /// Every offset this shard owns, with a record or not.
        owned: Intervals,
        /// The shard's initial block `lo..hi`, where its hashed targets fall.
        home: (u128, u128),
    },
}

impl Space {
    /// The share of a shard whose initial block is `lo..hi`, minus `excluded`.
    pub(crate) fn new(dense: bool, (lo, hi): (u128, u128), excluded: &[(u128, u128)]) -> Space {
        // The exclusions inside the block, as inclusive intervals.
        let holes = excluded
            .iter()
            .filter(|&&(elo, ehi)| lo < hi && elo < hi && ehi >= lo)
            .map(|&(elo, ehi)| (elo.max(lo), ehi.min(hi - 1)));
        if dense {
            let mut clean = RoaringBitmap::new();
            if lo < hi {
                clean.insert_range(lo as u32..=(hi - 1) as u32);
                for (elo, ehi) in holes {
                    clean.remove_range(elo as u32..=ehi as u32);
                }
                clean.optimize();
            }
            Space::Dense { clean }
        } else {
            let mut owned = Intervals::default();
            let mut at = lo;
            for (elo, ehi) in holes {
                if at < elo {
                    owned.insert(at, elo - 1);
                }
                at = ehi + 1;
            }
            if at < hi {
                owned.insert(at, hi - 1);
            }
            Space::Sparse {
                owned,
                home: (lo, hi),
            }
        }
    }

    /// A record now holds or remembers `off` (which this shard owns).
    pub(crate) fn taken(&mut self, off: u128) {
        match self {
            Space::Dense { clean } => {
                clean.remove(off as u32);
            }
            Space::Sparse { owned, .. } => debug_assert!(owned.contains(off)),
        }
    }

    /// The record of `off` is gone: it is clean free.
    pub(crate) fn returned(&mut self, off: u128) {
        match self {
            Space::Dense { clean } => {
                clean.insert(off as u32);
            }
            Space::Sparse { .. } => {}
        }
    }

    /// Takes offsets a sibling gave up.
    pub(crate) fn receive(&mut self, lent: Lent) {
        match (self, lent) {
            (Space::Dense { clean }, Lent::Dense(more)) => *clean |= more,
            (Space::Sparse { owned, .. }, Lent::Sparse(more)) => {
                for (lo, hi) in more {
                    owned.insert(lo, hi);
                }
            }
            _ => unreachable!("a pool is dense in every shard or in none"),
        }
    }

    /// Clean free offsets, given how many records of the pool the shard has.
    pub(crate) fn clean_len(&self, records: u64) -> u128 {
        match self {
            Space::Dense { clean } => u128::from(clean.len()),
            Space::Sparse { owned, .. } => owned.len() - u128::from(records),
        }
    }

    /// A clean free offset: the lowest (dense), or the first without a record from the
    /// target `hash` picks in the home block (sparse). `taken` says whether an owned offset
    /// has a record; `records` is how many it has (see [`Space::clean_len`]).
    pub(crate) fn pick(
        &self,
        hash: u128,
        records: u64,
        taken: impl Fn(u128) -> bool,
    ) -> Option<u128> {
        match self {
            Space::Dense { clean } => clean.min().map(u128::from),
            Space::Sparse { owned, home } => {
                if owned.len() <= u128::from(records) {
                    return None;
                }
                let target = match home.1 - home.0 {
                    0 => 0,
                    span => home.0 + hash % span,
                };
                let mut at = owned.successor(target).or_else(|| owned.first())?;
                // Ends: an owned offset without a record exists, and every step past one
                // with a record moves to the next owned offset.
                while taken(at) {
                    at = owned.next_wrapping(at)?;
                }
                Some(at)
            }
        }
    }

    /// Gives up to `want` clean free offsets to a sibling, highest first, so that this
    /// shard's next allocations are untouched.
    pub(crate) fn lend_clean(
        &mut self,
        want: u64,
        records: u64,
        taken: impl Fn(u128) -> bool,
    ) -> Lent {
        match self {
            Space::Dense { clean } => {
                let n = want.min(clean.len());
                let lent: RoaringBitmap = clean.iter().rev().take(n as usize).collect();
                clean.remove_biggest(n);
                Lent::Dense(lent)
            }
            Space::Sparse { owned, .. } => {
                let mut lent = Lent::Sparse(Vec::new());
                let mut n = u128::from(want).min(owned.len() - u128::from(records));
                // Downwards from the top; every offset passed over has a record, so this
                // ends within `records + want` steps.
                let mut walk = owned.iter().rev().flat_map(|(lo, hi)| (lo..=hi).rev());
                while n > 0 {
                    let Some(off) = walk.next() else { break };
                    if !taken(off) {
                        lent.add(off);
                        n -= 1;
                    }
                }
                drop(walk);
                if let Lent::Sparse(runs) = &lent {
                    for &(lo, hi) in runs {
                        owned.remove(lo, hi);
                    }
                }
                lent
            }
        }
    }

    /// Whether the shard owns `off` (free or with a record), for checks.
    #[cfg(test)]
    pub(crate) fn owns(&self, off: u128, has_record: bool) -> bool {
        match self {
            Space::Dense { clean } => has_record || clean.contains(off as u32),
            Space::Sparse { owned, .. } => owned.contains(off),
        }
    }
}

impl Free<u128> for Space {
    /// Rather than owned by a sibling or excluded.
    fn has(&self, off: u128) -> bool {
        match self {
            Space::Dense { clean } => u32::try_from(off).is_ok_and(|o| clean.contains(o)),
            Space::Sparse { owned, .. } => owned.contains(off),
        }
    }
    fn give(&mut self, off: u128) -> bool {
        match self {
            Space::Dense { clean } => u32::try_from(off).is_ok_and(|o| clean.remove(o)),
            Space::Sparse { owned, .. } => owned.remove(off, off),
        }
    }
    fn take_back(&mut self, off: u128) {
        match self {
            Space::Dense { clean } => {
                clean.insert(off as u32);
            }
            Space::Sparse { owned, .. } => owned.insert(off, off),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn intervals_merge_split_and_find_successors() {
        let mut iv = Intervals::default();
        iv.insert(10, 19);
        iv.insert(30, 39);
        iv.insert(20, 29);
        assert_eq!(iv.iter().collect::<Vec<_>>(), [(10, 39)]);
        assert_eq!(iv.len(), 30);
        assert!(iv.remove(15, 15));
        assert!(!iv.remove(15, 16));
        assert!(!iv.remove(38, 40));
        assert!(iv.remove(39, 39));
        assert_eq!(iv.iter().collect::<Vec<_>>(), [(10, 14), (16, 38)]);
        assert_eq!(iv.len(), 28);
        assert_eq!(iv.successor(0), Some(10));
        assert_eq!(iv.successor(15), Some(16));
        assert_eq!(iv.successor(38), Some(38));
        assert_eq!(iv.successor(39), None);
        assert_eq!(iv.next_wrapping(38), Some(10));
        iv.insert(15, 15);
        assert_eq!(iv.count(), 1);
        let mut top = Intervals::default();
        top.insert(u128::MAX - 1, u128::MAX);
        top.insert(0, 0);
        assert_eq!(top.next_wrapping(u128::MAX), Some(0));
        assert!(top.remove(u128::MAX, u128::MAX));
        assert_eq!(top.len(), 2);
    }

    #[test]
    fn sparse_space_probes_past_records_and_lends_free_runs() {
        let mut s = Space::new(false, (0, 1 << 64), &[(5, 9)]);
        let Space::Sparse { owned, .. } = &s else {
            panic!()
        };
        assert_eq!(owned.len(), (1 << 64) - 5);
        let taken = |o: u128| (3..5).contains(&o) || o == 10 || o == (1 << 64) - 1;
        // Probing from 3 skips 3, 4, the excluded 5..=9 and 10.
        assert_eq!(s.pick(3, 4, taken), Some(11));
        let lent = s.lend_clean(3, 4, taken);
        let Lent::Sparse(runs) = &lent else { panic!() };
        assert_eq!(runs, &[((1 << 64) - 4, (1 << 64) - 2)]);
        assert!(!s.has((1 << 64) - 3));
        assert!(s.give(11));
        assert!(!s.give(11));
        let mut other = Space::new(false, (0, 0), &[]);
        assert_eq!(other.pick(0, 0, |_| false), None);
        other.receive(lent);
        other.take_back(11);
        assert_eq!(other.clean_len(0), 4);
        assert_eq!(other.pick(0, 0, |_| false), Some(11));

        let full = Space::new(false, (0, 3), &[]);
        assert_eq!(full.pick(1, 3, |_| true), None);
    }

    #[test]
    fn dense_space_is_a_bitmap() {
        let mut s = Space::new(true, (4, 12), &[(0, 5), (8, 8)]);
        assert_eq!(s.clean_len(0), 5);
        assert_eq!(s.pick(99, 0, |_| false), Some(6));
        s.taken(6);
        assert!(!s.has(6));
        let Lent::Dense(lent) = s.lend_clean(2, 0, |_| false) else {
            panic!()
        };
        assert_eq!(lent.iter().collect::<Vec<_>>(), [10, 11]);
        s.returned(6);
        assert!(s.give(6));
        assert_eq!(s.clean_len(0), 2);
    }
}
