//! Replay: [`Engine::restore`] one record at a time, and [`Engine::restorer`] in bulk.

use std::collections::HashSet;
use std::sync::MutexGuard;

use roaring::RoaringBitmap;

use crate::error::BindError;
use crate::lease::{Lease, LeaseRef, LeaseState};
use crate::pools::{Place, PoolId, Pools};
use crate::records::NewRecord;
use crate::replay::BulkShard;
use crate::shard::{Counts, Shard, current_rank, is_held, tally};

/// The v4 engine's bulk replay, from [`Engine::restorer`](crate::engine_core::Core::restorer).
pub type Restorer<'a> = crate::replay::Restorer<'a, crate::engine::V4>;

impl Restorer<'_> {
    /// Takes one record for `shard` (the shard its client is steered to). Panics if `shard`
    /// is out of range.
    ///
    /// In bulk (a fresh engine) it only appends the record, and returns `Ok`: records of an
    /// address that already had one at least as new are found by [`Restorer::finish`], which
    /// drops them and counts them in [`RestoreReport::refused`](crate::v4::RestoreReport::refused). Otherwise it does what
    /// [`Engine::restore`](crate::v4::Engine::restore) does, `Err(Taken)` included.
    pub fn add(&mut self, shard: usize, lease: Lease) -> Result<(), BindError> {
        if self.0.is_bulk() {
            return self.add_ref(shard, LeaseRef::from(&lease));
        }
        self.0.one(shard, |guards, pools| {
            let done = crate::replay::restore_one(guards, pools, shard, &lease);
            done.then_some(()).ok_or(BindError::Taken)
        })
    }

    /// [`Restorer::add`] for a borrowed record: in bulk it allocates nothing per record (the
    /// record is copied into the shard's slab and arena).
    pub fn add_ref(&mut self, shard: usize, lease: LeaseRef<'_>) -> Result<(), BindError> {
        if !self.0.is_bulk() {
            return self.add(shard, lease.to_lease());
        }
        self.0.push(shard, lease.version, |g, pools| {
            let place = pools.place(u32::from(lease.address));
            g.records.push_unindexed(&NewRecord::of(lease, place));
        });
        Ok(())
    }
}

/// Records below which `finish` does not bother with threads.
const PARALLEL_MIN: usize = 1 << 16;

/// `f(shard, index)` for every shard, on scoped threads if `parallel`.
fn each_shard<R: Send>(
    guards: &mut [MutexGuard<'_, Shard>],
    parallel: bool,
    f: impl Fn(&mut Shard, usize) -> R + Sync,
) -> Vec<R> {
    if !parallel {
        return guards
            .iter_mut()
            .enumerate()
            .map(|(s, g)| f(g, s))
            .collect();
    }
    let f = &f;
    std::thread::scope(|scope| {
        let workers: Vec<_> = guards
            .iter_mut()
            .enumerate()
            .map(|(s, g)| {
                let shard: &mut Shard = g;
                scope.spawn(move || f(shard, s))
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().unwrap_or_else(|e| std::panic::resume_unwind(e)))
            .collect()
    })
}

/// Where ascending addresses fall: which pool, and which shard's initial block.
struct Cursor {
    /// `(first, last, pool)` sorted by `first`.
    ranges: Vec<(u32, u32, PoolId)>,
    next: usize,
    shards: u64,
    /// The current pool: `(first, last, pool, size)`, and its current block `(owner, end)`.
    current: Option<(u32, u32, PoolId, u64)>,
    block: (usize, u64),
}

impl Cursor {
    fn new(pools: &Pools, shards: usize) -> Self {
        let mut ranges: Vec<(u32, u32, PoolId)> = pools
            .iter()
            .map(|(pool, _)| {
                let (first, last) = pools.range(pool);
                (first, last, pool)
            })
            .collect();
        ranges.sort_unstable();
        Self {
            ranges,
            next: 0,
            shards: shards as u64,
            current: None,
            block: (0, 0),
        }
    }

    /// The pool, offset and initial owner of `addr`, which is not below the last one asked.
    /// Excluded addresses come out too (they are in no free set, so claiming them is moot).
    fn locate(&mut self, addr: u32) -> Option<(PoolId, u32, usize)> {
        if self.current.is_none_or(|(_, last, _, _)| addr > last) {
            self.current = None;
            while let Some(&(first, last, pool)) = self.ranges.get(self.next) {
                if addr > last {
                    self.next += 1;
                    continue;
                }
                if addr >= first {
                    let size = u64::from(last - first) + 1;
                    self.current = Some((first, last, pool, size));
                    self.block = (0, size / self.shards);
                }
                break;
            }
        }
        let (first, _, pool, size) = self.current?;
        if addr < first {
            return None;
        }
        let off = addr - first;
        while u64::from(off) >= self.block.1 {
            let owner = self.block.0 + 1;
            self.block = (owner, size * (owner as u64 + 1) / self.shards);
        }
        Some((pool, off, self.block.0))
    }
}

impl BulkShard for Shard {
    type Pools = Pools;
    /// No records, and every pool's free set exactly the block [`Engine::new`](crate::v4::Engine::new) gave it.
    fn fresh(guards: &[MutexGuard<'_, Self>], pools: &Pools) -> bool {
        guards.iter().all(|g| g.records.is_empty())
            && pools.iter().all(|(pool, _)| {
                let blocks = pools.blocks(pool, guards.len());
                guards.iter().zip(blocks).all(|(g, block)| {
                    let free = &g.free[pool.index()];
                    free.remembered.is_empty() && free.clean == block
                })
            })
    }

    /// The bulk `finish`: drops all but the newest record of each address, takes every address
    /// out of the free set of the block it started in, then indexes each shard
    /// ([`BulkShard::finish_bulk`]).
    fn finish_bulk(guards: &mut [MutexGuard<'_, Self>], pools: &Pools, moved: &mut [bool]) -> u64 {
        let count = guards.len();
        let total: usize = guards.iter().map(|g| g.records.len()).sum();
        let parallel = count > 1 && total >= PARALLEL_MIN;

        // 1. Each shard's addresses in order, merged: the addresses with more than one record,
        // and each pool's claimed offsets block by block, ascending.
        let sorted = each_shard(guards, parallel, |shard, _| shard.records.addresses());
        let mut claimed = vec![vec![RoaringBitmap::new(); pools.len()]; count];
        let mut twice = HashSet::new();
        let mut pos = vec![0usize; count];
        let mut cursor = Cursor::new(pools, count);
        // Offsets claimed from one (owner, pool), ascending, not yet in `claimed`.
        let mut run: (usize, usize, Vec<u32>) = (0, 0, Vec::new());
        let flush = |run: &mut (usize, usize, Vec<u32>), claimed: &mut [Vec<RoaringBitmap>]| {
            if !run.2.is_empty() {
                let offsets = RoaringBitmap::from_sorted_iter(run.2.drain(..)).expect("ascending");
                claimed[run.0][run.1] |= offsets;
            }
        };
        while let Some(addr) = (0..count)
            .filter_map(|t| sorted[t].get(pos[t]).copied())
            .min()
        {
            let located = cursor.locate(addr);
            let mut records = 0;
            for (t, p) in pos.iter_mut().enumerate() {
                while sorted[t].get(*p) == Some(&addr) {
                    *p += 1;
                    records += 1;
                    if let Some((_, _, owner)) = located {
                        moved[t * count + owner] |= owner != t;
                    }
                }
            }
            if records > 1 {
                twice.insert(addr);
            }
            if let Some((pool, off, owner)) = located {
                if (owner, pool.index()) != (run.0, run.1) || run.2.len() >= 1 << 16 {
                    flush(&mut run, &mut claimed);
                    (run.0, run.1) = (owner, pool.index());
                }
                run.2.push(off);
            }
        }
        flush(&mut run, &mut claimed);
        drop(sorted);

        // Rare: addresses with more than one record. The newest stays, as in the journal's fold.
        let mut refused = 0;
        if !twice.is_empty() {
            let mut dups: Vec<(u32, u64, usize, u32)> = Vec::new();
            for (t, g) in guards.iter().enumerate() {
                for (addr, idx) in g.records.find_unindexed(&twice) {
                    dups.push((addr, g.records.slot(idx).head.version, t, idx));
                }
            }
            // By address, the newest last.
            dups.sort_unstable();
            for (i, &(addr, _, t, idx)) in dups.iter().enumerate() {
                if dups.get(i + 1).is_some_and(|next| next.0 == addr) {
                    guards[t].records.drop_unindexed(idx);
                    refused += 1;
                }
            }
        }

        // 2. Each shard on its own.
        let claimed: Vec<std::sync::Mutex<Vec<RoaringBitmap>>> =
            claimed.into_iter().map(std::sync::Mutex::new).collect();
        each_shard(guards, parallel, |shard, s| {
            let claimed =
                std::mem::take(&mut *claimed[s].lock().unwrap_or_else(|e| e.into_inner()));
            finish_shard(shard, &claimed, pools);
        });

        refused
    }

    fn locate(pools: &Pools, lease: &Lease) -> (u32, Place, u64) {
        let addr = u32::from(lease.address);
        (addr, pools.place(addr), lease.version)
    }
}

/// Indexes a shard's records, chooses each client's current one, and brings the shard's
/// counts, expiry heap and free sets in line: `claimed` (by pool) leaves its free sets,
/// dropped records' addresses come back as free in it, and Released/Expired records'
/// addresses as remembered.
fn finish_shard(shard: &mut Shard, claimed: &[RoaringBitmap], pools: &Pools) {
    let dropped = shard.records.build(
        |slot| current_rank(slot.state, slot.head.version, slot.addr),
        |slot| slot.state == LeaseState::Declined,
    );
    let mut freed: Vec<Vec<u32>> = vec![Vec::new(); pools.len()];
    for place in dropped {
        if let Place::Dynamic { pool, off } = place {
            freed[pool.index()].push(off);
        }
    }
    let mut remembered: Vec<Vec<u32>> = vec![Vec::new(); pools.len()];
    let mut counts = vec![Counts::default(); pools.len()];
    let mut heap = Vec::with_capacity(shard.records.len());
    let mut held = 0;
    let records = &shard.records;
    for idx in records.iter() {
        let slot = records.slot(idx);
        let place = records.place(idx);
        tally(&mut counts, place, slot.state, true);
        if is_held(slot.state) {
            held += 1;
            heap.push(crate::shard::expiry_entry(slot.head.expires, slot.addr));
        } else if let Place::Dynamic { pool, off } = place {
            remembered[pool.index()].push(off);
        }
    }
    shard.held = held;
    shard.counts = counts.into();
    // The shard had no records: whatever the heap held was dead.
    shard.expiry = crate::grow::MinHeap::from_vec(heap);
    shard.rebuild = None;

    for (pool, claimed) in claimed.iter().enumerate() {
        let free = &mut shard.free[pool];
        if !claimed.is_empty() {
            // A run container loses values one memmove at a time; a bitmap all at once.
            free.clean.remove_run_compression();
            free.clean -= claimed;
        }
        let mut back = std::mem::take(&mut freed[pool]);
        if !back.is_empty() {
            back.sort_unstable();
            free.clean |= RoaringBitmap::from_sorted_iter(back).expect("sorted");
        }
        let mut kept = std::mem::take(&mut remembered[pool]);
        if !kept.is_empty() {
            kept.sort_unstable();
            free.remembered |= RoaringBitmap::from_sorted_iter(kept).expect("sorted");
        }
        free.clean.optimize();
        free.remembered.optimize();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursor_finds_pool_offset_and_block() {
        let spec = |first: u32, last: u32| crate::v4::PoolSpec {
            first: first.into(),
            last: last.into(),
            excluded: vec![],
        };
        let specs = [spec(100, 139), spec(10, 12), spec(50, 50), spec(60, 99)];
        let pools = Pools::new(&specs).unwrap();
        for shards in 1..9usize {
            let mut cursor = Cursor::new(&pools, shards);
            for addr in (0..200).step_by(1 + shards % 3) {
                let expected = specs.iter().enumerate().find_map(|(i, p)| {
                    let (first, last) = (u32::from(p.first), u32::from(p.last));
                    (first..=last).contains(&addr).then(|| {
                        let (off, size) = (addr - first, u64::from(last - first) + 1);
                        let owner = (0..shards)
                            .find(|&s| {
                                let lo = size * s as u64 / shards as u64;
                                let hi = size * (s as u64 + 1) / shards as u64;
                                (lo..hi).contains(&u64::from(off))
                            })
                            .unwrap();
                        (PoolId(i as u32), off, owner)
                    })
                });
                assert_eq!(cursor.locate(addr), expected, "{addr} in {shards} shards");
            }
        }
        let pools = Pools::new(&[spec(0, u32::MAX)]).unwrap();
        let mut cursor = Cursor::new(&pools, 3);
        assert_eq!(cursor.locate(5), Some((PoolId(0), 5, 0)));
        assert_eq!(cursor.locate(u32::MAX), Some((PoolId(0), u32::MAX, 2)));
    }
}
