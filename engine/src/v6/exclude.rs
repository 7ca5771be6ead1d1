//! [`Exclude`] for DHCPv6: a shard's free offsets are a [`Space`](super::space::Space) per
//! pool, its remembered records a list.

use std::collections::BTreeSet;
use std::net::Ipv6Addr;

use crate::admin::{Exclude, Exclusions, Overlay, Spec, set_kind};
use crate::common::slot::{KIND_DYNAMIC, KIND_FIXED_IN_POOL};
use crate::ends::{Ends as _, Free as _};
use crate::lease::LeaseState;

use super::engine::V6;
use super::key::Resource;
use super::pools::{EngineConfig, Place, PoolId, PoolSpec, Pools, low_mask};
use super::shard::{Shard, is_held};

impl Exclude for V6 {
    fn overlay(pools: &Pools) -> &Overlay {
        &pools.overlay
    }
    fn slot_of(pools: &Pools, res: Resource) -> Option<(PoolId, u128)> {
        let addr = u128::from(res.addr);
        let (pool, first) = pools.find(addr)?;
        let layout = pools.layout(pool);
        let rel = addr - first;
        (res.len == layout.res_len && rel & low_mask(layout.shift) == 0)
            .then(|| (pool, rel >> layout.shift))
    }
    fn overlay_key(pool: PoolId, off: u128) -> (u32, u128) {
        (pool.0, off)
    }
    fn exclude(g: &mut Shard, res: Resource, pool: PoolId, off: u128) -> bool {
        let p = pool.index();
        let Some(idx) = g.records.find(res) else {
            return g.parts[p].space.give(off);
        };
        if g.records.place(idx).dynamic().is_none() {
            return true;
        }
        let slot = *g.records.slot(idx);
        if slot.state == LeaseState::Offered {
            // Not a lease (never journaled): it ends, and a request for it is refused.
            g.remove(idx);
            g.parts[p].space.give(off);
            return true;
        }
        let part = &mut g.parts[p];
        if slot.is_listed() {
            g.records.unlink(&mut part.remembered, idx);
        }
        part.counts.tally(slot.state, false);
        // Sparse: the shard no longer owns it (dense: it was in no bitmap).
        part.space.give(off);
        set_kind(g.records.slot_mut(idx), KIND_FIXED_IN_POOL);
        true
    }
    fn include(g: &mut Shard, res: Resource, pool: PoolId, off: u128) {
        let p = pool.index();
        let Some(idx) = g.records.find(res) else {
            g.parts[p].space.take_back(off);
            return;
        };
        if g.records.place(idx) != (Place::Fixed { pool: Some(pool) }) {
            return;
        }
        set_kind(g.records.slot_mut(idx), KIND_DYNAMIC);
        let state = g.records.slot(idx).state;
        let part = &mut g.parts[p];
        part.space.take_back(off);
        part.space.taken(off);
        part.counts.tally(state, true);
        if !is_held(state) {
            g.records.push_back(&mut part.remembered, idx);
            part.trim = true;
        }
    }
    fn rank(g: &Shard, res: Resource) -> Option<(bool, u64)> {
        let idx = g.records.find(res)?;
        let slot = g.records.slot(idx);
        Some((is_held(slot.state), slot.head.version))
    }
    fn drop_fixed(g: &mut Shard, res: Resource) {
        if let Some(idx) = g.records.find(res)
            && g.records.place(idx).dynamic().is_none()
        {
            g.remove_at(idx);
        }
    }
}

impl Spec for PoolSpec {
    type Addr = Resource;

    fn same_pool(&self, other: &Self) -> bool {
        match (self, other) {
            (
                PoolSpec::Na { first, last, .. },
                PoolSpec::Na {
                    first: f, last: l, ..
                },
            ) => (first, last) == (f, l),
            (
                PoolSpec::Pd {
                    prefix,
                    prefix_len,
                    delegated_len,
                    ..
                },
                PoolSpec::Pd {
                    prefix: p,
                    prefix_len: pl,
                    delegated_len: d,
                    ..
                },
            ) => (prefix, prefix_len, delegated_len) == (p, pl, d),
            _ => false,
        }
    }

    /// An IA_PD exclusion takes out every delegated prefix it overlaps, as
    /// [`Pools::new`](super::pools::Pools) does (from the same [`PoolSpec::shape`]); `None`
    /// for a spec that pool would refuse.
    fn excluded_set(&self, max_each: usize) -> Option<BTreeSet<Resource>> {
        let (_, first, _, shift, len, _, excluded) = self.shape(PoolId(0)).ok()?;
        let mut out = BTreeSet::new();
        for (a, b) in excluded {
            if b - a >= max_each as u128 {
                return None;
            }
            out.extend((a..=b).map(|off| Resource {
                addr: Ipv6Addr::from(first + (off << shift)),
                len,
            }));
        }
        Some(out)
    }
}

impl EngineConfig {
    /// [`v4::EngineConfig::exclusion_changes`](crate::v4::EngineConfig::exclusion_changes)
    /// by resource (an IA_PD exclusion counts each delegated prefix it takes out).
    pub fn exclusion_changes(&self, new: &Self) -> Option<Exclusions<Resource>> {
        crate::admin::exclusion_changes(self, new)
    }
}
