//! What both families' bulk restorers share: holding every shard, choosing between the bulk
//! path and one record at a time, and the report.
//!
//! The argument for why replay puts back exactly the state that was journaled is in the
//! crate docs ("Versions and replay"); each family's `restore.rs` has its own bulk `finish`
//! (how it folds duplicates and moves addresses between shards).

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::common::{self, Access};
use crate::ends::{Ends, Lease, Place, Res};
use crate::engine_core::Ops;

/// What a restorer's `finish` reports ([`v4::Restorer`](crate::v4::Restorer),
/// [`v6::Restorer`](crate::v6::Restorer)).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RestoreReport {
    /// Records taken: those `add` accepted, less those `finish` refused.
    pub added: u64,
    /// Records refused because their address (resource) had a record at least as new (by
    /// `add` on an engine that was not fresh, by `finish` in bulk).
    pub refused: u64,
    /// Records the engine holds afterwards: the records taken, less those superseded by
    /// their client's current record (and, in bulk, by a newer record of their address).
    pub records: u64,
    /// Whether the records went in in bulk (the engine was fresh), rather than one by one
    /// as the engine's `restore` puts them.
    pub bulk: bool,
}

/// What the shared replay code needs of a family's shard.
pub(crate) trait BulkShard: Ends + Sized {
    /// The engine's pools.
    type Pools;
    /// Whether the engine is as `new` left it (no records, every address still in the shard
    /// it started in), so that replay can go in bulk.
    fn fresh(guards: &[MutexGuard<'_, Self>], pools: &Self::Pools) -> bool;
    /// The family's bulk `finish`: puts every record appended in bulk in place and returns
    /// how many it dropped as duplicates. It sets `moved[t * shards + s]` when shard `t`
    /// took a resource from shard `s`'s initial block.
    fn finish_bulk(
        guards: &mut [MutexGuard<'_, Self>],
        pools: &Self::Pools,
        moved: &mut [bool],
    ) -> u64;
    /// `lease`'s resource, where it sits in `pools`, and its version.
    fn locate(pools: &Self::Pools, lease: &Lease<Self>) -> (Res<Self>, Place<Self>, u64);
}

/// One record's replay into `shard`: claims its resource from whichever shard has it, then
/// puts the record back (see [`Core::restore`](crate::engine_core::Core::restore)). Returns
/// `false`, having put nothing back, if a record of it at least as new is there already.
pub(crate) fn restore_one<S: BulkShard>(
    shards: &mut (impl Access<S> + ?Sized),
    pools: &S::Pools,
    shard: usize,
    lease: &Lease<S>,
) -> bool {
    let (res, place, version) = S::locate(pools, lease);
    common::restore_one(shards, shard, (res, place, version), |g| {
        g.restore_local((res, place), lease);
    })
}

/// Replays lease records into an engine in bulk: see [`Core::restorer`](crate::engine_core::Core::restorer). It holds every
/// shard's lock until [`Restorer::finish`] (or until it is dropped, which finishes too), so
/// other calls on the engine wait for it. Each family adds `add` and `add_ref`.
#[derive(Debug)]
#[allow(private_bounds)]
pub struct Restorer<'a, F: Ops>(pub(crate) Replayer<'a, F::Shard>);

#[allow(private_bounds)]
impl<F: Ops> Restorer<'_, F> {
    /// Puts every record in place and releases the shards.
    pub fn finish(mut self) -> RestoreReport {
        self.0.complete()
    }
}

/// A restorer of either family: every shard locked, from its start until it is finished or
/// dropped.
pub(crate) struct Replayer<'a, S: BulkShard> {
    pools: &'a S::Pools,
    guards: Vec<MutexGuard<'a, S>>,
    /// In bulk (the engine was fresh): the highest version given to each shard.
    bulk: Option<Vec<u64>>,
    report: RestoreReport,
    finished: bool,
}

impl<S: BulkShard> fmt::Debug for Replayer<'_, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer")
            .field("shards", &self.guards.len())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<'a, S: BulkShard> Replayer<'a, S> {
    /// A restorer holding every one of `shards` locked, in bulk if `fresh` says the engine
    /// is fresh (then each shard reserves room for its share of `expected` records).
    pub(crate) fn new(pools: &'a S::Pools, shards: &'a [Mutex<S>], expected: usize) -> Self {
        let mut guards: Vec<MutexGuard<'a, S>> =
            (0..shards.len()).map(|s| common::lock(shards, s)).collect();
        let fresh = S::fresh(&guards, pools);
        let shards = guards.len();
        let bulk = fresh.then(|| {
            let share = expected.div_ceil(shards);
            for g in &mut guards {
                g.records_mut().reserve(share + share / 8);
            }
            vec![0; shards]
        });
        Replayer {
            pools,
            guards,
            bulk,
            report: RestoreReport {
                bulk: fresh,
                ..RestoreReport::default()
            },
            finished: false,
        }
    }

    pub(crate) fn is_bulk(&self) -> bool {
        self.bulk.is_some()
    }

    /// In bulk: has `push` append a record of `version` to `shard`, unindexed. Panics if
    /// `shard` is out of range.
    pub(crate) fn push(
        &mut self,
        shard: usize,
        version: u64,
        push: impl FnOnce(&mut S, &S::Pools),
    ) {
        assert!(shard < self.guards.len(), "shard {shard} out of range");
        let versions = self.bulk.as_mut().expect("only in bulk");
        versions[shard] = versions[shard].max(version);
        push(&mut self.guards[shard], self.pools);
        self.report.added += 1;
    }

    /// Not in bulk: counts what `restore` (the engine's one-record replay into `shard`) did.
    /// Panics if `shard` is out of range.
    pub(crate) fn one<E>(
        &mut self,
        shard: usize,
        restore: impl FnOnce(&mut [MutexGuard<'a, S>], &S::Pools) -> Result<(), E>,
    ) -> Result<(), E> {
        assert!(shard < self.guards.len(), "shard {shard} out of range");
        let result = restore(&mut self.guards[..], self.pools);
        match result {
            Ok(()) => self.report.added += 1,
            Err(_) => self.report.refused += 1,
        }
        result
    }

    /// Puts every record in place (once).
    pub(crate) fn complete(&mut self) -> RestoreReport {
        if !self.finished {
            self.finished = true;
            if let Some(versions) = self.bulk.take() {
                let count = self.guards.len();
                let mut moved = vec![false; count * count];
                let refused = S::finish_bulk(&mut self.guards, self.pools, &mut moved);
                settle_clocks(&mut self.guards, &versions, &moved);
                self.report.added -= refused;
                self.report.refused += refused;
            }
            self.report.records = self
                .guards
                .iter_mut()
                .map(|g| g.records_mut().len() as u64)
                .sum();
        }
        self.report
    }
}

/// A restorer dropped unfinished finishes.
impl<S: BulkShard> Drop for Replayer<'_, S> {
    fn drop(&mut self) {
        self.complete();
    }
}

/// Sets each shard's clock after a bulk finish: at least the highest version given to it,
/// and at least the clock of every shard it took a resource from (`moved`, as
/// [`BulkShard::finish_bulk`] marks it), as lending makes it (see the crate docs, "Versions
/// and replay").
fn settle_clocks<S: BulkShard>(guards: &mut [MutexGuard<'_, S>], versions: &[u64], moved: &[bool]) {
    let count = guards.len();
    let mut clocks: Vec<u64> = guards
        .iter_mut()
        .zip(versions)
        .map(|(g, &v)| (*g.clock_mut()).max(v))
        .collect();
    loop {
        let mut changed = false;
        for t in 0..count {
            for s in 0..count {
                if moved[t * count + s] && clocks[t] < clocks[s] {
                    clocks[t] = clocks[s];
                    changed = true;
                }
            }
        }
        if !changed {
            break;
        }
    }
    for (g, clock) in guards.iter_mut().zip(clocks) {
        *g.clock_mut() = clock;
    }
}
