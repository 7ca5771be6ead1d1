//! The DHCPv4 engine: [`Core`] over [`V4`], with DISCOVER's offer and REQUEST's bind.

use std::net::Ipv4Addr;

use crate::common::{Counts, Give};
use crate::ends::{self, Ends as _};
use crate::engine_core::{Core, Ops, Refused, family};
use crate::error::{AllocError, BindError, Result};
use crate::ident::ClientKey;
use crate::lease::{Lease, LeaseEvent, LeaseInfo, LeaseState, LeaseView, Time};
use crate::pools::{EngineConfig, Place, PoolId, Pools};
use crate::shard::{FreeSet, Shard, Term};

#[cfg(test)]
mod tests;

/// A DISCOVER to answer with an OFFER.
pub type OfferRequest<'a> = crate::engine_core::OfferRequest<'a, V4>;

/// A REQUEST (selecting, init-reboot, renewing or rebinding) to bind or extend.
pub type BindRequest<'a> = crate::engine_core::BindRequest<'a, V4>;

/// What a DHCPv4 binding is given besides its client and address.
#[derive(Clone, Copy, Debug)]
pub struct Grant<'a> {
    /// Lease time in seconds.
    pub lease_time: u32,
    /// What the server knows about the client.
    pub info: LeaseInfo<'a>,
}

/// Usage of one IPv4 pool, counted in `u64`: a [`PoolStats`](crate::engine_core::PoolStats).
pub type PoolStats = crate::engine_core::PoolStats<PoolId, u64>;

/// In-memory DHCPv4 lease state, sharded across worker cores: see [`Core`].
pub type Engine = Core<V4>;

family! {
    /// The DHCPv4 [`Family`](crate::engine_core::Family): IPv4 addresses, keyed by client key.
    V4 {
        key: ClientKey, addr: Ipv4Addr, count: u64,
        grant<'a>: Grant<'a>, info: LeaseInfo<'a>
    }
}

impl Ops for V4 {
    type Shard = Shard;
    type Pools = Pools;
    type Off = u32;
    type Lent = roaring::RoaringBitmap;
    type Offered = Ipv4Addr;

    fn pools_len(pools: &Pools) -> usize {
        pools.len()
    }
    fn take_free(pools: &Pools, g: &mut Shard, pool: PoolId, off: u32, now: Time) -> Give {
        if g.take_free(pool, off, pools.addr(pool, off), now) {
            Give::Given
        } else {
            Give::NotHere
        }
    }
    fn free_len(g: &Shard, pool: PoolId) -> u128 {
        u128::from(g.free_len(pool))
    }
    fn lend(
        pools: &Pools,
        g: &mut Shard,
        pool: PoolId,
        max: u64,
    ) -> Option<roaring::RoaringBitmap> {
        let first = pools.get(pool).map(|_| pools.range(pool).0)?;
        Some(g.lend(pool, first, max)).filter(|lent| !lent.is_empty())
    }
    fn receive(g: &mut Shard, pool: PoolId, lent: roaring::RoaringBitmap) {
        g.free[pool.index()].clean |= lent;
    }
    fn sort_key(lease: &Lease) -> Ipv4Addr {
        lease.address
    }
    /// A quarantined address is refused as taken.
    fn refused(why: Refused) -> BindError {
        match why {
            Refused::NotInPool => BindError::NotInPool,
            Refused::Quarantined | Refused::Taken => BindError::Taken,
        }
    }
    fn place(pools: &Pools, addr: Ipv4Addr) -> Place {
        pools.place(u32::from(addr))
    }
    fn res(addr: Ipv4Addr) -> u32 {
        u32::from(addr)
    }
    fn addr(res: u32) -> Ipv4Addr {
        Ipv4Addr::from(res)
    }
    fn res_at(pools: &Pools, pool: PoolId, off: u32) -> u32 {
        pools.addr(pool, off)
    }
    fn key(key: &ClientKey) -> &[u8] {
        key.as_bytes()
    }
    fn fits(pools: &Pools, pool: PoolId, _: &ClientKey) -> bool {
        pools.get(pool).is_some()
    }
    fn next_free(_: &Pools, g: &Shard, pool: PoolId, _: &ClientKey) -> Option<u32> {
        g.next_free(pool)
    }
    fn hold(
        g: &mut Shard,
        (addr, place): (u32, Place),
        key: &ClientKey,
        info: LeaseInfo<'_>,
        term: Term,
    ) -> (Option<LeaseState>, u32) {
        let own = |g: &mut Shard, idx| g.records.set_info(idx, info.hw, info.hostname);
        ends::hold(g, (addr, place, key.as_bytes()), term, info, own)
    }
    fn offered(g: &Shard, idx: u32) -> Ipv4Addr {
        Ipv4Addr::from(g.records.slot(idx).addr)
    }
    fn bound<'a>(grant: Self::Grant<'a>, now: Time) -> (Term, Self::Info<'a>) {
        let expires = now.saturating_add(u64::from(grant.lease_time));
        (Shard::term(LeaseState::Bound, now, expires), grant.info)
    }
    fn totals(pools: &Pools) -> impl Iterator<Item = (PoolId, u64)> {
        let total =
            |pool: PoolId, total: u64| total.saturating_add_signed(pools.overlay.delta(pool.0));
        pools
            .iter()
            .map(move |(pool, layout)| (pool, total(pool, layout.total)))
    }
    fn usage(g: &Shard, index: usize) -> (u64, Counts) {
        (g.free[index].len(), g.counts[index])
    }
}

impl Engine {
    /// Validates `cfg` and splits each pool's dynamic addresses into one contiguous block per
    /// shard. A pool costs memory in proportion to its fragmentation, not its size.
    pub fn new(cfg: EngineConfig) -> Result<Engine> {
        if cfg.shards == 0 {
            return Err(crate::v4::ConfigError::NoShards);
        }
        let pools = Pools::new(&cfg.pools)?;
        let mut free: Vec<Vec<FreeSet>> = (0..cfg.shards)
            .map(|_| Vec::with_capacity(pools.len()))
            .collect();
        for (pool, _) in pools.iter() {
            for (shard, block) in pools.blocks(pool, cfg.shards).into_iter().enumerate() {
                free[shard].push(FreeSet {
                    first: pools.range(pool).0,
                    clean: block,
                    remembered: Default::default(),
                });
            }
        }
        Ok(Self::assemble(&cfg, pools, |s| {
            Shard::new(std::mem::take(&mut free[s]))
        }))
    }

    /// DISCOVER: chooses an address and holds it for the client (state Offered, expires
    /// `now + offer_hold`). Not an event.
    ///
    /// The choice, first that works: (1) the reservation, unless another client's binding
    /// or a quarantine holds it, in any shard (docs/RELOAD.md, "Reservations in use"); (2) the
    /// client's own record in a candidate pool, in any state but Declined; (3) the requested
    /// address if in a candidate pool and free (here or in a sibling); (4) the next free
    /// address of the candidate pools in order, preferring addresses nobody is remembered for
    /// over those a Released/Expired record remembers. Only then are this shard's expired
    /// records reclaimed and free addresses borrowed from the sibling with most.
    ///
    /// A client that already holds an Offered or Bound address it may use gets the same one
    /// again (an offer's hold is renewed; a binding is left as it is). Moving the client to a
    /// new address ends its previous record; the events that produces (Released for an
    /// abandoned binding, Expired for records found expired) are handed out by the next
    /// `bind`/`release`/`decline`/`reclaim` on this shard, with the versions of the changes
    /// they record. An offer whose hold has passed is not the client's own any more, whether
    /// or not `reclaim` has ended it yet.
    pub fn offer(
        &self,
        shard: usize,
        req: &OfferRequest<'_>,
        now: Time,
    ) -> Result<Ipv4Addr, AllocError> {
        self.offer_one(shard, req, now).ok_or(AllocError::Exhausted)
    }
}

#[cfg(test)]
impl Engine {
    /// Checks every bookkeeping rule across all shards; panics on the first broken one.
    pub(crate) fn check_invariants(&self) {
        use crate::shard::{Counts, is_held};
        use crate::slots::Slot as _;
        use roaring::RoaringBitmap;
        use std::collections::HashSet;

        let mut owned: Vec<RoaringBitmap> = vec![RoaringBitmap::new(); self.pools.len()];
        let mut own = |pool: PoolId, off: u32, what: &str| {
            assert!(
                owned[pool.index()].insert(off),
                "pool {pool} offset {off} owned twice ({what})"
            );
        };
        let mut addresses = HashSet::new();
        for shard in 0..self.shards.len() {
            let g = self.lock(shard);
            let mut counts = vec![Counts::default(); self.pools.len()];
            let mut remembered = vec![RoaringBitmap::new(); self.pools.len()];
            let heap: HashSet<(u32, u32)> =
                g.expiry.iter().map(crate::shard::expiry_parts).collect();
            let mut held = 0;
            g.check_records();
            for idx in g.records.iter() {
                let slot = *g.records.slot(idx);
                let addr = g.addr_of(idx);
                let place = g.records.place(idx);
                assert!(
                    slot.head.version <= g.clock,
                    "{addr} has version {} above its shard's clock {}",
                    slot.head.version,
                    g.clock
                );
                assert!(addresses.insert(addr), "{addr} has two records");
                assert_eq!(place, self.pools.place(slot.addr), "place of {addr}");
                if slot.state != LeaseState::Declined {
                    assert!(slot.is_indexed(), "{addr} not indexed");
                }
                if slot.is_indexed() {
                    let key = ClientKey::from_bytes(g.records.key(idx));
                    assert_eq!(
                        g.records.client_bytes(key.as_bytes()),
                        Some(idx),
                        "index of {addr}"
                    );
                }
                if is_held(slot.state) {
                    held += 1;
                    assert!(
                        heap.contains(&(slot.head.expires, slot.addr)),
                        "{addr} not in heap"
                    );
                }
                let Place::Dynamic { pool, off } = place else {
                    continue;
                };
                let c = &mut counts[pool.index()];
                c.tally(slot.state, true);
                if !is_held(slot.state) {
                    remembered[pool.index()].insert(off);
                }
                if is_held(slot.state) {
                    own(pool, off, "held record");
                }
            }
            assert_eq!(g.held, held, "held count");
            assert!(g.expiry.len() <= g.expiry_bound(), "expiry heap not pruned");
            assert_eq!(&*g.counts, &counts[..], "counts of shard {shard}");
            for (pool, _) in self.pools.iter() {
                let free = &g.free[pool.index()];
                assert!(free.clean.is_disjoint(&free.remembered));
                assert_eq!(free.remembered, remembered[pool.index()], "remembered set");
                for off in free.clean.iter().chain(free.remembered.iter()) {
                    let (first, last) = self.pools.range(pool);
                    let place = self.pools.place(first + off);
                    assert!(place.dynamic().is_some(), "excluded offset {off} free");
                    assert!(u64::from(off) <= u64::from(last - first));
                    own(pool, off, "free");
                }
            }
        }
        for (pool, total) in V4::totals(&self.pools) {
            assert_eq!(
                owned[pool.index()].len(),
                total,
                "pool {pool} lost addresses"
            );
        }
    }
}
