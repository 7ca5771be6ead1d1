//! The DHCPv6 engine: [`Core`] over [`V6`], with SOLICIT's advertise, REQUEST's bind and
//! the owner shard of a DUID.

use crate::common::Counts;
use crate::ends;
use crate::engine_core::{Core, Ops, Refused, family};
use crate::lease::{LeaseState, Time};

use super::error::{BindError, ConfigError};
use super::key::{IaKey, Resource};
use super::lease::{Lease, LeaseEvent, LeaseView};
use super::pools::{EngineConfig, Place, PoolId, Pools};
use super::shard::{Give, Part, Shard, Term};
use super::space::{DENSE_MAX, Space};

/// Remembered (Released/Expired) records a pool keeps per shard beyond its held ones.
const REMEMBER_MIN: u64 = 4096;

/// A SOLICIT (or a REQUEST for an IA with no lease yet) to answer with an ADVERTISE.
pub type SolicitRequest<'a> = crate::engine_core::OfferRequest<'a, V6>;

/// A REQUEST, RENEW or REBIND (or a SOLICIT with rapid commit) to bind or extend.
pub type BindRequest<'a> = crate::engine_core::BindRequest<'a, V6>;

/// What a DHCPv6 binding is given besides its IA and resource.
#[derive(Clone, Copy, Debug)]
pub struct Grant {
    /// Preferred lifetime in seconds (at most `valid` is kept).
    pub preferred: u32,
    /// Valid lifetime in seconds.
    pub valid: u32,
}

/// Usage of one IA_NA or IA_PD pool, counted in `u128` (a /64 has 2^64 addresses).
pub type PoolStats = crate::engine_core::PoolStats<PoolId, u128>;

/// Knobs the tests turn: which pools are dense, how many remembered records a pool keeps.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tuning {
    pub(crate) dense_max: u128,
    pub(crate) remember_min: u64,
}

impl Default for Tuning {
    fn default() -> Self {
        Tuning {
            dense_max: DENSE_MAX,
            remember_min: REMEMBER_MIN,
        }
    }
}

/// In-memory DHCPv6 lease state (IA_NA addresses and IA_PD prefixes), sharded like v4's:
/// see [`Core`]. Worker `k` serves the IAs whose DUID it owns ([`Engine::owner`]).
pub type Engine = Core<V6>;

family! {
    /// The DHCPv6 [`Family`](crate::engine_core::Family): IA_NA addresses and IA_PD prefixes, keyed by IA.
    V6 {
        key: IaKey, addr: Resource, count: u128,
        grant<'a>: Grant, info: ()
    }
}

impl Ops for V6 {
    type Shard = Shard;
    type Pools = Pools;
    type Off = u128;
    type Lent = super::space::Lent;
    type Offered = LeaseView;

    fn pools_len(pools: &Pools) -> usize {
        pools.len()
    }
    fn settle(g: &mut Shard) {
        g.settle();
    }
    fn take_free(pools: &Pools, g: &mut Shard, pool: PoolId, off: u128, now: Time) -> Give {
        g.take_free(pool, off, pools.layout(pool).resource(off), now)
    }
    fn free_len(g: &Shard, pool: PoolId) -> u128 {
        g.free_len(pool)
    }
    fn lend(pools: &Pools, g: &mut Shard, pool: PoolId, max: u64) -> Option<Self::Lent> {
        Some(g.lend(pools, pool, max)).filter(|lent| !lent.is_empty())
    }
    fn receive(g: &mut Shard, pool: PoolId, lent: Self::Lent) {
        g.parts[pool.index()].space.receive(lent);
    }
    fn sort_key(lease: &Lease) -> Resource {
        lease.resource
    }
    fn refused(why: Refused) -> BindError {
        match why {
            Refused::NotInPool => BindError::NotInPool,
            Refused::Quarantined => BindError::Quarantined,
            Refused::Taken => BindError::Taken,
        }
    }
    fn place(pools: &Pools, res: Resource) -> Place {
        pools.place(res)
    }
    fn res(res: Resource) -> Resource {
        res
    }
    fn addr(res: Resource) -> Resource {
        res
    }
    fn res_at(pools: &Pools, pool: PoolId, off: u128) -> Resource {
        pools.resource(pool, off)
    }
    fn key(key: &IaKey) -> &[u8] {
        key.as_bytes()
    }
    /// Pools serve IAs of their kind only.
    fn fits(pools: &Pools, pool: PoolId, key: &IaKey) -> bool {
        pools.get(pool).is_some_and(|l| l.kind == key.kind())
    }
    fn next_free(pools: &Pools, g: &Shard, pool: PoolId, key: &IaKey) -> Option<u128> {
        g.next_free(pools, pool, key)
    }
    fn hold(
        g: &mut Shard,
        (res, place): (Resource, Place),
        key: &IaKey,
        (): (),
        term: Term,
    ) -> (Option<LeaseState>, u32) {
        ends::hold(
            g,
            (res, place, key.as_bytes()),
            term,
            term.preferred,
            |_, _| {},
        )
    }
    fn offered(g: &Shard, idx: u32) -> LeaseView {
        g.records.view(idx)
    }
    fn bound<'a>(grant: Self::Grant<'a>, now: Time) -> (Term, Self::Info<'a>) {
        let term = Term {
            state: LeaseState::Bound,
            starts: now,
            preferred: grant.preferred.min(grant.valid),
            expires: now.saturating_add(u64::from(grant.valid)),
        };
        (term, ())
    }
    fn totals(pools: &Pools) -> impl Iterator<Item = (PoolId, u128)> {
        let delta = |pool: PoolId| i128::from(pools.overlay.delta(pool.0));
        pools
            .iter()
            .map(move |(pool, layout)| (pool, layout.total.saturating_add_signed(delta(pool))))
    }
    fn usage(g: &Shard, index: usize) -> (u128, Counts) {
        let part = &g.parts[index];
        (part.free_len(), part.counts)
    }
}

impl Engine {
    /// Validates `cfg` and splits each pool's offsets into one contiguous block per shard.
    /// A pool costs memory in proportion to its leases and fragmentation, not its size.
    pub fn new(cfg: EngineConfig) -> Result<Engine, ConfigError> {
        Self::with_tuning(cfg, Tuning::default())
    }

    pub(crate) fn with_tuning(cfg: EngineConfig, tuning: Tuning) -> Result<Engine, ConfigError> {
        if cfg.shards == 0 {
            return Err(ConfigError::NoShards);
        }
        let pools = Pools::new(&cfg.pools, tuning.dense_max)?;
        let parts = |s| {
            pools
                .iter()
                .map(|(_, layout)| Part {
                    space: Space::new(layout.dense, layout.block(s, cfg.shards), &layout.excluded),
                    remembered: Default::default(),
                    counts: Default::default(),
                    trim: false,
                })
                .collect()
        };
        let shards: Vec<Shard> = (0..cfg.shards)
            .map(|s| Shard::new(parts(s), &pools, tuning.remember_min))
            .collect();
        let mut shards = shards.into_iter();
        Ok(Self::assemble(&cfg, pools, |_| {
            shards.next().expect("one shard each")
        }))
    }

    /// The shard that owns the leases of every IA of the client with this DUID: the server
    /// steers the client's messages to its worker. It is the DUID's last four bytes, read as a
    /// big-endian number (zero-padded in front when the DUID is shorter), modulo `shards()`.
    /// For DUID-LLT and DUID-LL those are the end of the link-layer address, the bytes DHCPv4
    /// steers by. A fixed function, simple enough for a classic BPF program on the socket
    /// group to compute (`lessor_net::v6::attach_steering`), so the kernel hands each
    /// datagram to the owner's worker, and the same DUID has the same owner across restarts.
    pub fn owner(&self, duid: &[u8]) -> usize {
        let tail = &duid[duid.len().saturating_sub(4)..];
        let word = tail.iter().fold(0u32, |w, &b| (w << 8) | u32::from(b));
        (u64::from(word) % self.shards.len() as u64) as usize
    }

    /// SOLICIT: chooses a resource and holds it for the IA (state Offered, expires
    /// `now + offer_hold`). Not an event. `None` when every candidate pool is exhausted.
    ///
    /// The choice is v4's ([`Engine::offer`](crate::v4::Engine::offer)) by IA and resource: the
    /// reservation, the IA's own record, the hint (`requested`), then a free resource of the
    /// candidate pools in order (see `space.rs` for which). Events it makes wait for the next
    /// `bind`/`release`/`decline`/`reclaim` on this shard.
    pub fn solicit(&self, shard: usize, req: &SolicitRequest<'_>, now: Time) -> Option<LeaseView> {
        self.offer_one(shard, req, now)
    }
}
