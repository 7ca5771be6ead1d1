//! Reserving a pool's address (resource) at run time, and giving it back, without a new
//! engine: written once for both families over [`Exclude`].
//!
//! A reserved address is excluded from its pool as one in the pool's `excluded` list is
//! (the pools' [`Overlay`] says so to every `place` look-up), and its record, if any, sits
//! at a fixed place: when it ends, the address goes back to no free set. Each shard is
//! locked on its own, one at a time.

use std::collections::BTreeSet;

use super::overlay::Overlay;
use crate::common::slot::KIND_MASK;
use crate::engine_core::{Config, Core, Ops};
use crate::slots::Slot;

#[cfg(test)]
mod tests;

/// Passes over the shards [`Core::reserve`] makes looking for an offset on its way between
/// two of them before it gives up.
const CHASE: usize = 10_000;

/// Most addresses (resources) `EngineConfig::exclusion_changes` gives; a larger change
/// rebuilds the engine.
pub const MAX_CHANGES: usize = 256;

/// Why [`Core::reserve`] or [`Core::unreserve`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ReserveError {
    /// The engine has taken as many run-time changes as it can: build a new one.
    #[error("too many run-time changes to the pools' exclusions since the engine was built")]
    Full,
}

/// What [`Core::reserve`] and [`Core::unreserve`] need of a family besides [`Ops`].
pub(crate) trait Exclude: Ops {
    fn overlay(pools: &Self::Pools) -> &Overlay;
    /// The pool and offset of `addr` if it is one of a pool's resources, excluded or not.
    fn slot_of(pools: &Self::Pools, addr: Self::Addr) -> Option<(Self::Pool, Self::Off)>;
    /// The overlay's key of offset `off` of `pool`.
    fn overlay_key(pool: Self::Pool, off: Self::Off) -> (u32, u128);
    /// In one shard, offset `off` of `pool` (`addr`), which was dynamic, stops being: free,
    /// it leaves the shard; an offer of it ends; any other record stays, at a fixed place.
    /// Returns whether the shard had it.
    fn exclude(g: &mut Self::Shard, addr: Self::Addr, pool: Self::Pool, off: Self::Off) -> bool;
    /// In one shard, the fixed `addr` becomes offset `off` of `pool`: its record here moves
    /// into the pool, or without one the offset is free here.
    fn include(g: &mut Self::Shard, addr: Self::Addr, pool: Self::Pool, off: Self::Off);
    /// Whether the record of `addr` here is held, and its version.
    fn rank(g: &Self::Shard, addr: Self::Addr) -> Option<(bool, u64)>;
    /// Drops the record of the fixed `addr` here, with no event.
    fn drop_fixed(g: &mut Self::Shard, addr: Self::Addr);
}

/// Sets the place kind (`common::slot::KIND_*`) of a record's slot.
pub(crate) fn set_kind<S: Slot>(slot: &mut S, kind: u8) {
    let flags = slot.flags_mut();
    *flags = (*flags & !KIND_MASK) | kind;
}

#[allow(private_bounds)]
impl<F: Exclude> Core<F> {
    /// Takes `addr`, a dynamic address (v6: resource) of a pool, out of the pool from now
    /// on, as if it were in the pool's `excluded` list, so that it is only ever given as a
    /// reservation. Returns `Ok(false)` if it was not a dynamic one.
    ///
    /// Free, it leaves the free set of the shard that has it; another client's offer of it
    /// ends (its request is refused); another client's binding (or quarantine, or memory)
    /// stays with it and, once it ends, the address is free for nobody.
    pub fn reserve(&self, addr: F::Addr) -> Result<bool, ReserveError> {
        let Some((pool, off)) = F::place(&self.pools, addr).dynamic() else {
            return Ok(false);
        };
        let (p, o) = F::overlay_key(pool, off);
        F::overlay(&self.pools).set(p, o, true)?;
        // Every dynamic offset is one shard's, free or under a record, but for the instant
        // a lend or a fetch carries it from one to another: look until it is found.
        for _ in 0..CHASE {
            for shard in 0..self.shards() {
                let mut g = self.lock(shard);
                if F::exclude(&mut g, addr, pool, off) {
                    F::settle(&mut g);
                    return Ok(true);
                }
            }
            std::thread::yield_now();
        }
        Ok(true)
    }

    /// Puts `addr`, an address (v6: resource) of a pool that is excluded from it (by the
    /// configuration or by [`Core::reserve`]), back into the pool. Returns `Ok(false)` if it
    /// is not one of a pool's excluded addresses.
    ///
    /// Of the records it has (a fixed address may have one in several shards) the one that
    /// replay would keep stays, now in the pool (a held one first, then the newest); the
    /// others are dropped. With none, the address is free.
    pub fn unreserve(&self, addr: F::Addr) -> Result<bool, ReserveError> {
        let Some((pool, off)) = F::slot_of(&self.pools, addr) else {
            return Ok(false);
        };
        if F::place(&self.pools, addr).dynamic().is_some() {
            return Ok(false);
        }
        let (p, o) = F::overlay_key(pool, off);
        let overlay = F::overlay(&self.pools);
        overlay.prepare(p, o)?;
        // The records first, the look-ups after: a fixed address's memory (a Released or
        // Expired record) is free to no client, while a dynamic one's is free to any client
        // of its shard, which would own the address out of nothing.
        let keeper = (0..self.shards())
            .filter_map(|s| F::rank(&self.lock(s), addr).map(|rank| (rank, s)))
            .max()
            .map_or(0, |(_, s)| s);
        for shard in 0..self.shards() {
            let mut g = self.lock(shard);
            if shard == keeper {
                F::include(&mut g, addr, pool, off);
            } else {
                F::drop_fixed(&mut g, addr);
            }
            F::settle(&mut g);
        }
        overlay.set(p, o, false)?;
        Ok(true)
    }

    /// How many addresses (resources) [`Core::reserve`] and [`Core::unreserve`] can still
    /// change for sure.
    pub fn exclusion_room(&self) -> usize {
        F::overlay(&self.pools).room()
    }
}

/// What [`exclusion_changes`] needs of a family's pool spec.
pub(crate) trait Spec: PartialEq {
    /// An address (resource) as the engine's caller names it.
    type Addr: Ord + Copy;
    /// Whether `other` is the same pool, whatever each excludes.
    fn same_pool(&self, other: &Self) -> bool;
    /// The pool's resources that its `excluded` takes out; `None` if one entry of it takes
    /// out more than `max_each`.
    fn excluded_set(&self, max_each: usize) -> Option<BTreeSet<Self::Addr>>;
}

/// What turns an engine built from one configuration into one built from another, at run
/// time: see [`v4::EngineConfig::exclusion_changes`](crate::v4::EngineConfig::exclusion_changes).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Exclusions<A> {
    /// To take out of their pools with [`Core::reserve`].
    pub reserve: Vec<A>,
    /// To put back with [`Core::unreserve`].
    pub unreserve: Vec<A>,
}

impl<A> Exclusions<A> {
    /// How many addresses (resources) change.
    pub fn len(&self) -> usize {
        self.reserve.len() + self.unreserve.len()
    }

    /// Whether nothing changes.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The addresses (resources) to reserve and unreserve in an engine built from `old` to make
/// it one built from `new`: what each family's `EngineConfig::exclusion_changes` answers.
pub(crate) fn exclusion_changes<S: Spec>(
    old: &Config<S>,
    new: &Config<S>,
) -> Option<Exclusions<S::Addr>> {
    let same = old.shards == new.shards
        && old.offer_hold == new.offer_hold
        && old.decline_probation == new.decline_probation
        && old.pools.len() == new.pools.len()
        && old
            .pools
            .iter()
            .zip(&new.pools)
            .all(|(a, b)| a.same_pool(b));
    if !same {
        return None;
    }
    let mut out = Exclusions {
        reserve: Vec::new(),
        unreserve: Vec::new(),
    };
    for (a, b) in old.pools.iter().zip(&new.pools).filter(|(a, b)| a != b) {
        let (was, is) = (a.excluded_set(MAX_CHANGES)?, b.excluded_set(MAX_CHANGES)?);
        out.reserve.extend(is.difference(&was));
        out.unreserve.extend(was.difference(&is));
        if out.len() > MAX_CHANGES {
            return None;
        }
    }
    Some(out)
}
