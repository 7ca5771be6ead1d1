//! v6 replay: [`Engine::restore`] one record at a time, and [`Engine::restorer`] in bulk.

use std::hash::BuildHasher;
use std::sync::MutexGuard;

use crate::ends::Free as _;
use crate::replay::BulkShard;

use super::error::BindError;
use super::key::Resource;
use super::lease::{Lease, LeaseRef};
use super::pools::{Place, Pools};
use super::records::NewRecord;
use super::shard::Shard;
use super::space::Space;

/// The v6 engine's bulk replay, by IA and resource, from
/// [`Engine::restorer`](crate::engine_core::Core::restorer).
pub type Restorer<'a> = crate::replay::Restorer<'a, super::engine::V6>;

impl Restorer<'_> {
    /// Takes one record for `shard` (the shard its IA's DUID is steered to,
    /// [`Engine::owner`](crate::v6::Engine::owner)), as v4's [`Restorer::add`](crate::v4::Restorer::add) does.
    pub fn add(&mut self, shard: usize, lease: Lease) -> Result<(), BindError> {
        self.add_ref(shard, LeaseRef::from(&lease))
    }

    /// [`Restorer::add`] for a borrowed record: in bulk it allocates nothing per record
    /// (the record is copied into the shard's slab).
    pub fn add_ref(&mut self, shard: usize, lease: LeaseRef<'_>) -> Result<(), BindError> {
        if !self.0.is_bulk() {
            let lease = lease.to_lease();
            return self.0.one(shard, |guards, pools| {
                let done = crate::replay::restore_one(guards, pools, shard, &lease);
                done.then_some(()).ok_or(BindError::Taken)
            });
        }
        self.0.push(shard, lease.version, |g, pools| {
            let place = pools.place(lease.resource);
            g.records.push_unindexed(&NewRecord::of(&lease, place));
        });
        Ok(())
    }
}

impl BulkShard for Shard {
    type Pools = Pools;
    /// No records, and every pool's space exactly the block [`Engine::new`](crate::v6::Engine::new) gave the shard.
    fn fresh(guards: &[MutexGuard<'_, Self>], pools: &Pools) -> bool {
        guards.iter().enumerate().all(|(s, g)| {
            g.records.is_empty()
                && pools.iter().all(|(pool, layout)| {
                    let block = layout.block(s, guards.len());
                    g.parts[pool.index()].space == Space::new(layout.dense, block, &layout.excluded)
                })
        })
    }

    /// The bulk `finish`: keeps only the newest record of each resource, moves every dynamic
    /// resource from the shard whose initial block has it to the shard its record went to, then
    /// indexes each shard and rebuilds its counts, heap and lists ([`BulkShard::finish_bulk`]).
    fn finish_bulk(guards: &mut [MutexGuard<'_, Self>], pools: &Pools, moved: &mut [bool]) -> u64 {
        let count = guards.len();
        // 1. The fold. Every record as a 16-byte `(hash of its resource, shard, slab index)`,
        // sorted by hash: records of one resource are neighbours, and a run of equal hashes
        // (nearly always one record) is sorted out against the slots themselves.
        let seed = hashbrown::DefaultHashBuilder::default();
        let mut all: Vec<(u64, u32, u32)> =
            Vec::with_capacity(guards.iter().map(|g| g.records.len()).sum());
        for (s, g) in guards.iter().enumerate() {
            all.extend(g.records.iter().map(|idx| {
                let res = g.records.slot(idx).resource();
                (
                    seed.hash_one((u128::from(res.addr), res.len)),
                    s as u32,
                    idx,
                )
            }));
        }
        all.sort_unstable();
        let mut refused = 0;
        let mut run: Vec<(Resource, std::cmp::Reverse<u64>, u32, u32)> = Vec::new();
        let mut at = 0;
        while at < all.len() {
            let end = at + all[at..].partition_point(|e| e.0 == all[at].0);
            run.clear();
            run.extend(all[at..end].iter().map(|&(_, s, idx)| {
                let slot = guards[s as usize].records.slot(idx);
                (
                    slot.resource(),
                    std::cmp::Reverse(slot.head.version),
                    s,
                    idx,
                )
            }));
            at = end;
            // By resource, newest first: the first of each resource stays.
            run.sort_unstable();
            let mut last = None;
            for &(res, _, s, idx) in &run {
                let s = s as usize;
                if last == Some(res) {
                    guards[s].records.drop_unindexed(idx);
                    refused += 1;
                    continue;
                }
                last = Some(res);
                // 2. The resource moves to its record's shard.
                if let Place::Dynamic { pool, off } = pools.place(res) {
                    let owner = pools.layout(pool).block_owner(off, count);
                    if owner != s {
                        let given = guards[owner].parts[pool.index()].space.give(off);
                        debug_assert!(given, "{res} not in its initial shard");
                        guards[s].parts[pool.index()].space.take_back(off);
                        moved[s * count + owner] = true;
                    }
                }
            }
        }
        drop(all);

        // 3. Each shard on its own.
        for g in guards.iter_mut() {
            g.finish_restore();
        }

        refused
    }

    fn locate(pools: &Pools, lease: &Lease) -> (Resource, Place, u64) {
        (lease.resource, pools.place(lease.resource), lease.version)
    }
}
