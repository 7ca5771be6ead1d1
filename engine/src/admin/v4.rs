//! [`Exclude`] for DHCPv4: a shard's free offsets are bitmaps, its counts per pool.

use std::collections::BTreeSet;
use std::net::Ipv4Addr;

use super::overlay::Overlay;
use super::reserve::{Exclude, Exclusions, Spec, set_kind};
use crate::common::slot::{KIND_DYNAMIC, KIND_FIXED_IN_POOL};
use crate::ends::Ends as _;
use crate::engine::V4;
use crate::lease::LeaseState;
use crate::pools::{EngineConfig, Place, PoolId, PoolSpec, Pools};
use crate::shard::{Shard, is_held, tally};

impl Exclude for V4 {
    fn overlay(pools: &Pools) -> &Overlay {
        &pools.overlay
    }
    fn slot_of(pools: &Pools, addr: Ipv4Addr) -> Option<(PoolId, u32)> {
        let addr = u32::from(addr);
        pools.find(addr).map(|(pool, first)| (pool, addr - first))
    }
    fn overlay_key(pool: PoolId, off: u32) -> (u32, u128) {
        (pool.0, u128::from(off))
    }
    fn exclude(g: &mut Shard, addr: Ipv4Addr, pool: PoolId, off: u32) -> bool {
        let addr = u32::from(addr);
        let Some(idx) = g.records.find(addr) else {
            return g.free[pool.index()].clean.remove(off);
        };
        let place = g.records.place(idx);
        if place.dynamic().is_none() {
            return true;
        }
        let state = g.records.slot(idx).state;
        if state == LeaseState::Offered {
            // Not a lease (never journaled): it ends, and a request for it is refused.
            g.remove(addr);
            g.free[pool.index()].clean.remove(off);
            return true;
        }
        tally(&mut g.counts, place, state, false);
        g.free[pool.index()].remembered.remove(off);
        set_kind(g.records.slot_mut(idx), KIND_FIXED_IN_POOL);
        true
    }
    fn include(g: &mut Shard, addr: Ipv4Addr, pool: PoolId, off: u32) {
        let Some(idx) = g.records.find(u32::from(addr)) else {
            g.free[pool.index()].clean.insert(off);
            return;
        };
        if g.records.place(idx) != (Place::Fixed { pool: Some(pool) }) {
            return;
        }
        set_kind(g.records.slot_mut(idx), KIND_DYNAMIC);
        let state = g.records.slot(idx).state;
        tally(&mut g.counts, Place::Dynamic { pool, off }, state, true);
        let free = &mut g.free[pool.index()];
        free.clean.remove(off);
        if !is_held(state) {
            free.remembered.insert(off);
        }
    }
    fn rank(g: &Shard, addr: Ipv4Addr) -> Option<(bool, u64)> {
        let idx = g.records.find(u32::from(addr))?;
        let slot = g.records.slot(idx);
        Some((is_held(slot.state), slot.head.version))
    }
    fn drop_fixed(g: &mut Shard, addr: Ipv4Addr) {
        if let Some(idx) = g.records.find(u32::from(addr))
            && g.records.place(idx).dynamic().is_none()
        {
            g.remove_at(idx);
        }
    }
}

impl Spec for PoolSpec {
    type Addr = Ipv4Addr;

    fn same_pool(&self, other: &Self) -> bool {
        (self.first, self.last) == (other.first, other.last)
    }
    fn excluded_set(&self, _: usize) -> Option<BTreeSet<Ipv4Addr>> {
        let range = self.first..=self.last;
        Some(
            self.excluded
                .iter()
                .copied()
                .filter(|a| range.contains(a))
                .collect(),
        )
    }
}

impl EngineConfig {
    /// The addresses to [`reserve`](crate::v4::Engine::reserve) and
    /// [`unreserve`](crate::v4::Engine::unreserve) in an engine built from `self` to make it
    /// one built from `new`; `None` when the two differ in anything but what their pools
    /// exclude, or in more than [`MAX_CHANGES`](crate::MAX_CHANGES) addresses.
    pub fn exclusion_changes(&self, new: &Self) -> Option<Exclusions<Ipv4Addr>> {
        super::reserve::exclusion_changes(self, new)
    }
}
