//! Run-time changes to which offsets of the pools are excluded, read by every worker without
//! a lock.
//!
//! A pool's `excluded` list is fixed when the engine is built; [`Core::reserve`] and
//! [`Core::unreserve`](crate::engine_core::Core::unreserve) change it afterwards by keying an
//! entry here, which the pools' `place` consults before the built list. The table is open
//! addressing over atomics with a fixed capacity: an entry, once keyed, keeps its key for the
//! engine's life (only its state changes), so a reader never sees a torn key and needs no
//! lock, and a reader of an engine nobody changed reads one counter. Writers take a mutex.
//! When the table is full the caller rebuilds the engine instead, which starts it empty.
//!
//! [`Core::reserve`]: crate::engine_core::Core::reserve

use std::sync::atomic::{AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock, PoisonError};

use super::ReserveError;

/// Entries in the table; at most half of them are ever keyed.
const CAPACITY: usize = 1024;

/// Never keyed: a probe stops here.
const EMPTY: u8 = 0;
/// Keyed, excluded as the engine was built.
const SAME: u8 = 1;
/// Keyed, excluded at run time.
const EXCLUDED: u8 = 2;
/// Keyed, excluded when the engine was built and dynamic since.
const INCLUDED: u8 = 3;

/// One entry: the state, then the key `(pool, offset)` it was first keyed with.
#[derive(Debug, Default)]
struct Entry {
    state: AtomicU8,
    pool: AtomicU32,
    hi: AtomicU64,
    lo: AtomicU64,
}

impl Entry {
    fn is(&self, pool: u32, off: u128) -> bool {
        self.pool.load(Ordering::Relaxed) == pool
            && self.hi.load(Ordering::Relaxed) == (off >> 64) as u64
            && self.lo.load(Ordering::Relaxed) == off as u64
    }
}

/// The run-time exclusions of one engine's pools, keyed by pool index and offset.
#[derive(Default)]
pub(crate) struct Overlay {
    /// Entries keyed so far: zero until the first change.
    keyed: AtomicUsize,
    entries: OnceLock<Box<[Entry]>>,
    write: Mutex<()>,
}

impl std::fmt::Debug for Overlay {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Overlay")
            .field("keyed", &self.keyed.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

fn slot(pool: u32, off: u128) -> usize {
    let x = (off as u64) ^ ((off >> 64) as u64).rotate_left(29) ^ (u64::from(pool) << 43);
    (x.wrapping_mul(0x9e37_79b9_7f4a_7c15) >> 54) as usize % CAPACITY
}

impl Overlay {
    /// Whether offset `off` of pool `pool` is excluded now, if a run-time change keyed it;
    /// `None`: as the engine was built.
    #[inline]
    pub(crate) fn get(&self, pool: u32, off: u128) -> Option<bool> {
        if self.keyed.load(Ordering::Acquire) == 0 {
            return None;
        }
        let entries = self.entries.get()?;
        let mut i = slot(pool, off);
        loop {
            let e = &entries[i];
            match e.state.load(Ordering::Acquire) {
                EMPTY => return None,
                state if e.is(pool, off) => {
                    return match state {
                        EXCLUDED => Some(true),
                        INCLUDED => Some(false),
                        _ => None,
                    };
                }
                _ => i = (i + 1) % CAPACITY,
            }
        }
    }

    /// Keys offset `off` of pool `pool`, as it is now, so that a [`Overlay::set`] of it
    /// cannot fail.
    pub(crate) fn prepare(&self, pool: u32, off: u128) -> Result<(), ReserveError> {
        self.change(pool, off, None)
    }

    /// Excludes (`exclude`) or includes a dynamic offset that is the other now.
    pub(crate) fn set(&self, pool: u32, off: u128, exclude: bool) -> Result<(), ReserveError> {
        self.change(pool, off, Some(exclude))
    }

    /// [`Overlay::set`], or with `None` only keys the entry.
    fn change(&self, pool: u32, off: u128, exclude: Option<bool>) -> Result<(), ReserveError> {
        let _one = self.write.lock().unwrap_or_else(PoisonError::into_inner);
        let entries = self
            .entries
            .get_or_init(|| (0..CAPACITY).map(|_| Entry::default()).collect());
        let mut i = slot(pool, off);
        loop {
            let e = &entries[i];
            match e.state.load(Ordering::Relaxed) {
                EMPTY => {
                    if self.keyed.load(Ordering::Relaxed) >= CAPACITY / 2 {
                        return Err(ReserveError::Full);
                    }
                    e.pool.store(pool, Ordering::Relaxed);
                    e.hi.store((off >> 64) as u64, Ordering::Relaxed);
                    e.lo.store(off as u64, Ordering::Relaxed);
                    // The key is visible to whoever sees the state.
                    let state = match exclude {
                        None => SAME,
                        Some(true) => EXCLUDED,
                        Some(false) => INCLUDED,
                    };
                    e.state.store(state, Ordering::Release);
                    self.keyed.fetch_add(1, Ordering::Release);
                    return Ok(());
                }
                state if e.is(pool, off) => {
                    let next = match (state, exclude) {
                        (_, None) => state,
                        (INCLUDED, Some(true)) | (EXCLUDED, Some(false)) => SAME,
                        (_, Some(true)) => EXCLUDED,
                        (_, Some(false)) => INCLUDED,
                    };
                    e.state.store(next, Ordering::Release);
                    return Ok(());
                }
                _ => i = (i + 1) % CAPACITY,
            }
        }
    }

    /// How many more offsets can be changed for sure before the table is full.
    pub(crate) fn room(&self) -> usize {
        CAPACITY / 2 - self.keyed.load(Ordering::Relaxed)
    }

    /// Dynamic offsets `pool` gained at run time, less those it lost.
    pub(crate) fn delta(&self, pool: u32) -> i64 {
        if self.keyed.load(Ordering::Acquire) == 0 {
            return 0;
        }
        let Some(entries) = self.entries.get() else {
            return 0;
        };
        entries
            .iter()
            .filter(|e| e.pool.load(Ordering::Relaxed) == pool)
            .map(|e| match e.state.load(Ordering::Acquire) {
                EXCLUDED => -1,
                INCLUDED => 1,
                _ => 0,
            })
            .sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_read_back_and_undone() {
        let o = Overlay::default();
        assert_eq!(o.get(0, 5), None);
        o.set(0, 5, true).unwrap();
        o.set(1, 5, false).unwrap();
        o.set(0, u128::MAX, true).unwrap();
        assert_eq!(o.get(0, 5), Some(true));
        assert_eq!(o.get(1, 5), Some(false));
        assert_eq!(o.get(0, u128::MAX), Some(true));
        assert_eq!(o.get(0, 6), None);
        assert_eq!((o.delta(0), o.delta(1), o.delta(2)), (-2, 1, 0));
        o.set(0, 5, false).unwrap();
        assert_eq!(o.get(0, 5), None, "back as built");
        assert_eq!(o.delta(0), -1);
        assert_eq!(o.room(), CAPACITY / 2 - 3);
    }

    #[test]
    fn a_full_table_refuses_new_keys_but_not_known_ones() {
        let o = Overlay::default();
        for off in 0..(CAPACITY / 2) as u128 {
            o.set(0, off * 7919, true).unwrap();
        }
        assert_eq!(o.room(), 0);
        assert_eq!(o.set(0, 3, true), Err(ReserveError::Full));
        o.set(0, 7919, false).unwrap();
        for off in 0..(CAPACITY / 2) as u128 {
            let want = if off == 1 { None } else { Some(true) };
            assert_eq!(o.get(0, off * 7919), want, "{off}");
        }
        assert_eq!(o.get(0, 3), None);
        // Keyed already: preparing it is no change.
        o.prepare(0, 7919).unwrap();
        assert_eq!(o.get(0, 7919), None);
        assert_eq!(o.prepare(0, 4), Err(ReserveError::Full));
    }
}
