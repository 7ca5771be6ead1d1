//! What both families' bulk restorers share: holding every shard, choosing between the bulk
//! path and one record at a time, and the report.
//!
//! The argument for why replay puts back exactly the state that was journaled is in the
//! crate docs ("Versions and replay"); each family's `restore.rs` has its own bulk `finish`
//! (how it folds duplicates and moves addresses between shards).

use std::fmt;
use std::sync::MutexGuard;

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

/// A family's bulk `finish`: puts every record appended in bulk in place, given the highest
/// version given to each shard; returns how many records it dropped as duplicates.
pub(crate) type FinishBulk<S, P> = fn(&[u64], &mut [MutexGuard<'_, S>], &P) -> u64;

/// A restorer of either family: every shard locked, from its start until it is finished or
/// dropped.
pub(crate) struct Replayer<'a, S, P> {
    pub(crate) pools: &'a P,
    pub(crate) guards: Vec<MutexGuard<'a, S>>,
    /// In bulk (the engine was fresh): the highest version given to each shard.
    bulk: Option<Vec<u64>>,
    report: RestoreReport,
    finished: bool,
    finish_bulk: FinishBulk<S, P>,
}

impl<S, P> fmt::Debug for Replayer<'_, S, P> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Restorer")
            .field("shards", &self.guards.len())
            .field("report", &self.report)
            .finish_non_exhaustive()
    }
}

impl<'a, S, P> Replayer<'a, S, P> {
    /// A restorer over `guards`, in bulk if the engine is `fresh` (then each shard
    /// `reserve`s room for its share of `expected` records).
    pub(crate) fn new(
        pools: &'a P,
        mut guards: Vec<MutexGuard<'a, S>>,
        fresh: bool,
        expected: usize,
        reserve: impl Fn(&mut S, usize),
        finish_bulk: FinishBulk<S, P>,
    ) -> Self {
        let shards = guards.len();
        let bulk = fresh.then(|| {
            let share = expected.div_ceil(shards);
            for g in &mut guards {
                reserve(g, share + share / 8);
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
            finish_bulk,
        }
    }

    pub(crate) fn is_bulk(&self) -> bool {
        self.bulk.is_some()
    }

    /// In bulk: has `push` append a record of `version` to `shard`, unindexed. Panics if
    /// `shard` is out of range.
    pub(crate) fn push(&mut self, shard: usize, version: u64, push: impl FnOnce(&mut S, &P)) {
        assert!(shard < self.guards.len(), "shard {shard} out of range");
        let versions = self.bulk.as_mut().expect("only in bulk");
        versions[shard] = versions[shard].max(version);
        push(&mut self.guards[shard], self.pools);
        self.report.added += 1;
    }

    /// Not in bulk: counts what `restore` (the engine's one-record replay) did.
    pub(crate) fn one<E>(
        &mut self,
        restore: impl FnOnce(&mut [MutexGuard<'a, S>], &P) -> Result<(), E>,
    ) -> Result<(), E> {
        let result = restore(&mut self.guards[..], self.pools);
        match result {
            Ok(()) => self.report.added += 1,
            Err(_) => self.report.refused += 1,
        }
        result
    }

    /// Puts every record in place (once); `len` counts a shard's records.
    pub(crate) fn complete(&mut self, len: impl Fn(&S) -> usize) -> RestoreReport {
        if !self.finished {
            self.finished = true;
            if let Some(versions) = self.bulk.take() {
                let refused = (self.finish_bulk)(&versions, &mut self.guards, self.pools);
                self.report.added -= refused;
                self.report.refused += refused;
            }
            self.report.records = self.guards.iter().map(|g| len(g) as u64).sum();
        }
        self.report
    }
}
