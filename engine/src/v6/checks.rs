//! Test-only: every bookkeeping rule of the v6 engine, checked across all shards.

use std::collections::HashSet;

use roaring::RoaringBitmap;

use crate::lease::LeaseState;
use crate::slots::Slot as _;

use super::engine::{Engine, V6};
use super::key::IaKey;
use super::pools::Place;
use super::shard::{Counts, is_held};
use super::space::Space;
use crate::engine_core::Ops as _;

impl Engine {
    /// Checks every bookkeeping rule across all shards; panics on the first broken one.
    pub(crate) fn check_invariants(&self) {
        let pools = &self.pools;
        let n = pools.len();
        // Dense pools: owned offsets; sparse pools: owned intervals.
        let mut dense_owned: Vec<RoaringBitmap> = vec![RoaringBitmap::new(); n];
        let mut sparse_owned: Vec<Vec<(u128, u128)>> = vec![Vec::new(); n];
        let mut resources = HashSet::new();
        for shard in 0..self.shards.len() {
            let g = self.lock(shard);
            g.records.check();
            let mut counts = vec![Counts::default(); n];
            let mut remembered: Vec<HashSet<u32>> = vec![HashSet::new(); n];
            let heap: HashSet<(u32, u32)> = g.expiry.iter().map(|r| r.0).collect();
            let mut held = 0;
            let mut record_offs: Vec<HashSet<u128>> = vec![HashSet::new(); n];
            for idx in g.records.iter() {
                let slot = *g.records.slot(idx);
                let res = slot.resource();
                let place = g.records.place(idx);
                assert!(
                    slot.head.version <= g.clock,
                    "{res} has a version above its clock"
                );
                assert!(resources.insert(res), "{res} has two records");
                assert_eq!(place, pools.place(res), "place of {res}");
                assert!(IaKey::from_bytes(g.records.key(idx)).is_some());
                if slot.state != LeaseState::Declined {
                    assert!(slot.is_indexed(), "{res} not indexed");
                }
                if slot.state != LeaseState::Bound {
                    assert_eq!(slot.preferred, 0, "{res}: preferred when not bound");
                }
                if is_held(slot.state) {
                    held += 1;
                    assert!(
                        heap.contains(&(slot.head.expires, idx)),
                        "{res} not in heap"
                    );
                }
                let Place::Dynamic { pool, off } = place else {
                    assert!(!slot.is_listed(), "{res}: fixed record listed");
                    continue;
                };
                counts[pool.index()].tally(slot.state, true);
                assert_eq!(slot.is_listed(), !is_held(slot.state), "{res} listed");
                if !is_held(slot.state) {
                    remembered[pool.index()].insert(idx);
                }
                record_offs[pool.index()].insert(off);
                assert!(
                    g.parts[pool.index()].space.owns(off, true),
                    "{res} has a record but its shard does not own it"
                );
            }
            assert_eq!(g.held, held, "held count");
            assert!(g.expiry.len() <= 2 * held + 64, "expiry heap not pruned");
            for (pool, layout) in pools.iter() {
                let part = &g.parts[pool.index()];
                assert_eq!(part.counts, counts[pool.index()], "counts, shard {shard}");
                let listed: HashSet<u32> = g.records.list(&part.remembered).into_iter().collect();
                assert_eq!(listed, remembered[pool.index()], "remembered list");
                let offs = &record_offs[pool.index()];
                match &part.space {
                    Space::Dense { clean } => {
                        for off in clean.iter() {
                            let off = u128::from(off);
                            let place = pools.place(layout.resource(off));
                            assert!(place.dynamic().is_some(), "excluded {off} free");
                            assert!(off < layout.size);
                            assert!(!offs.contains(&off), "{off} free and with a record");
                        }
                        let mut mine = clean.clone();
                        for &off in offs {
                            mine.insert(off as u32);
                        }
                        assert!(
                            dense_owned[pool.index()].is_disjoint(&mine),
                            "pool {pool}: an offset owned by two shards"
                        );
                        dense_owned[pool.index()] |= mine;
                    }
                    Space::Sparse { owned, .. } => {
                        let mut len = 0;
                        for (lo, hi) in owned.iter() {
                            assert!(hi < layout.size);
                            len += hi - lo + 1;
                            let i = layout.excluded.partition_point(|&(_, ehi)| ehi < lo);
                            // Unless the exclusion was lifted at run time.
                            let lifted = |(elo, ehi): (u128, u128)| {
                                (elo.max(lo)..=ehi.min(hi))
                                    .all(|o| pools.overlay.get(pool.0, o) == Some(false))
                            };
                            assert!(
                                layout
                                    .excluded
                                    .get(i)
                                    .is_none_or(|&(elo, ehi)| elo > hi || lifted((elo, ehi))),
                                "owned {lo}..={hi} meets an exclusion"
                            );
                            sparse_owned[pool.index()].push((lo, hi));
                        }
                        assert_eq!(len, owned.len(), "interval length");
                        assert!(owned.len() >= u128::from(part.records()));
                    }
                }
            }
        }
        let totals: Vec<u128> = V6::totals(pools).map(|(_, total)| total).collect();
        for (pool, layout) in pools.iter() {
            if layout.dense {
                assert_eq!(
                    u128::from(dense_owned[pool.index()].len()),
                    totals[pool.index()],
                    "pool {pool} lost offsets"
                );
            } else {
                let all = &mut sparse_owned[pool.index()];
                all.sort_unstable();
                for w in all.windows(2) {
                    assert!(w[0].1 < w[1].0, "pool {pool}: {:?} owned by two shards", w);
                }
                let len: u128 = all.iter().map(|&(lo, hi)| hi - lo + 1).sum();
                assert_eq!(len, totals[pool.index()], "pool {pool} lost offsets");
            }
        }
        for stat in self.stats() {
            assert_eq!(
                stat.free + u128::from(stat.offered + stat.bound + stat.declined),
                stat.total,
                "stats of pool {}",
                stat.pool
            );
        }
    }
}
