//! v6 replay: [`V6Engine::restore`] one record at a time, and [`V6Engine::restorer`] in bulk.

use std::fmt;
use std::sync::MutexGuard;

use super::engine::V6Engine;
use super::error::V6BindError;
use super::lease::{V6Lease, V6LeaseRef};
use super::pools::{Place, Pools};
use super::shard::{Claim, Shard};
use super::space::Lent;

/// What [`V6Restorer::finish`] reports.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct V6RestoreReport {
    /// Records taken: those [`V6Restorer::add`] accepted, less those `finish` refused.
    pub added: u64,
    /// Records refused because their resource had a record at least as new.
    pub refused: u64,
    /// Records the engine holds afterwards.
    pub records: u64,
    /// Whether the records went in in bulk (the engine was fresh).
    pub bulk: bool,
}

/// Replays lease records into a [`V6Engine`]: [`V6Engine::restorer`].
///
/// It holds every shard's lock from [`V6Engine::restorer`] until [`V6Restorer::finish`] (or
/// until it is dropped, which finishes too), so other calls on the engine wait for it.
pub struct V6Restorer<'a> {
    pools: &'a Pools,
    guards: Vec<MutexGuard<'a, Shard>>,
    report: V6RestoreReport,
    finished: bool,
}

impl fmt::Debug for V6Restorer<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V6Restorer")
            .field("shards", &self.guards.len())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

/// One shard at a time, whichever way the shards are held.
pub(crate) trait Access {
    fn with<R>(&mut self, shard: usize, f: impl FnOnce(&mut Shard) -> R) -> R;
}

impl Access for &V6Engine {
    fn with<R>(&mut self, shard: usize, f: impl FnOnce(&mut Shard) -> R) -> R {
        f(&mut self.lock(shard))
    }
}

impl Access for [MutexGuard<'_, Shard>] {
    fn with<R>(&mut self, shard: usize, f: impl FnOnce(&mut Shard) -> R) -> R {
        f(&mut self[shard])
    }
}

/// [`V6Engine::restore`]'s work: claims the resource from whichever shard has it, then puts
/// the record back in `shard`.
pub(crate) fn restore_one(
    shards: &mut (impl Access + ?Sized),
    count: usize,
    pools: &Pools,
    shard: usize,
    lease: &V6LeaseRef<'_>,
) -> Result<(), V6BindError> {
    assert!(shard < count, "shard {shard} out of range");
    let res = lease.resource;
    let place = pools.place(res);
    let mut lender_clock = 0;
    let mut claimed = false;
    for s in 0..count {
        match shards.with(s, |g| {
            g.restore_claim(res, place, lease.version, s == shard)
        }) {
            Claim::Absent => {}
            Claim::Newer => {
                shards.with(shard, |g| g.clock = g.clock.max(lease.version));
                return Err(V6BindError::Taken);
            }
            Claim::Claimed { clock } => {
                claimed = true;
                lender_clock = lender_clock.max(clock);
            }
        }
    }
    shards.with(shard, |g| {
        g.clock = g.clock.max(lender_clock);
        if let (true, Place::Dynamic { pool, off }) = (claimed, place) {
            let dense = pools.layout(pool).dense;
            g.parts[pool.index()].space.receive(Lent::one(dense, off));
        }
        g.restore_local(res, place, lease);
    });
    Ok(())
}

impl V6Engine {
    /// Replay in bulk: a [`V6Restorer`] that takes the journal's records one by one with
    /// [`V6Restorer::add`] and puts them in place. `expected` is how many records are
    /// coming (a hint). The result is the one [`V6Engine::restore`] gives for the same
    /// records in any order. Finish, then call [`V6Engine::advance_versions`] and serve.
    pub fn restorer(&self, expected: usize) -> V6Restorer<'_> {
        let shards = self.shards.len();
        let mut guards: Vec<MutexGuard<'_, Shard>> = (0..shards).map(|s| self.lock(s)).collect();
        let fresh = guards.iter().all(|g| g.records.is_empty());
        if fresh {
            let share = expected.div_ceil(shards);
            for g in &mut guards {
                g.records.reserve(share + share / 8);
            }
        }
        V6Restorer {
            pools: &self.pools,
            guards,
            report: V6RestoreReport::default(),
            finished: false,
        }
    }
}

impl V6Restorer<'_> {
    /// Takes one record for `shard` (the shard its IA's DUID is steered to). Panics if
    /// `shard` is out of range. Does what [`V6Engine::restore`] does, `Err(Taken)` included.
    pub fn add(&mut self, shard: usize, lease: V6Lease) -> Result<(), V6BindError> {
        self.add_ref(shard, V6LeaseRef::from(&lease))
    }

    /// [`V6Restorer::add`] for a borrowed record.
    pub fn add_ref(&mut self, shard: usize, lease: V6LeaseRef<'_>) -> Result<(), V6BindError> {
        let count = self.guards.len();
        let result = restore_one(&mut self.guards[..], count, self.pools, shard, &lease);
        match result {
            Ok(()) => self.report.added += 1,
            Err(_) => self.report.refused += 1,
        }
        result
    }

    /// Puts every record in place and releases the shards.
    pub fn finish(mut self) -> V6RestoreReport {
        self.complete();
        self.report
    }

    fn complete(&mut self) {
        if self.finished {
            return;
        }
        self.finished = true;
        self.report.records = self.guards.iter().map(|g| g.records.len() as u64).sum();
    }
}

impl Drop for V6Restorer<'_> {
    fn drop(&mut self) {
        self.complete();
    }
}
