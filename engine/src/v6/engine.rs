//! The DHCPv6 engine: [`Core`] over [`V6`], with SOLICIT's advertise, REQUEST's bind and
//! the owner shard of a DUID.

use std::sync::Mutex;

use crate::choose;
use crate::engine_core::{Core, Ops, family};
use crate::lease::{EventKind, LeaseState, Time};

use super::error::{BindError, ConfigError};
use super::key::{IaKey, Resource};
use super::lease::{Lease, LeaseEvent, LeaseRef, LeaseView};
use super::pools::{EngineConfig, Place, PoolId, Pools};
use super::shard::{Avail, Give, Part, Shard, Term};
use super::space::{DENSE_MAX, Space};

/// Remembered (Released/Expired) records a pool keeps per shard beyond its held ones.
const REMEMBER_MIN: u64 = 4096;

/// A SOLICIT (or a REQUEST for an IA with no lease yet) to answer with an ADVERTISE.
#[derive(Clone, Copy, Debug)]
pub struct SolicitRequest<'a> {
    /// The IA that asks.
    pub client: &'a IaKey,
    /// Pools the IA may get a resource from, in order of preference. Pools of another kind
    /// than the IA's are ignored.
    pub pools: &'a [PoolId],
    /// The IA's static assignment, if the server has one for it (authoritative).
    pub reserved: Option<Resource>,
    /// What the client asked for in its IA, if anything.
    pub hint: Option<Resource>,
}

/// A REQUEST, RENEW or REBIND (or a SOLICIT with rapid commit) to bind or extend.
#[derive(Clone, Copy, Debug)]
pub struct BindRequest<'a> {
    /// The IA that asks.
    pub client: &'a IaKey,
    /// The resource to bind.
    pub resource: Resource,
    /// Pools `resource` may come from (pools of another kind than the IA's are ignored).
    pub pools: &'a [PoolId],
    /// `resource` is this IA's static assignment.
    pub reserved: bool,
    /// Preferred lifetime in seconds (at most `valid` is kept).
    pub preferred: u32,
    /// Valid lifetime in seconds.
    pub valid: u32,
}

/// What [`Core::put`] gives a DHCPv6 lease besides its IA and resource.
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
    V6 { key: IaKey, addr: Resource, count: u128, grant<'a>: Grant }
}

impl Ops for V6 {
    type Shard = Shard;
    type Pools = Pools;
    type Off = u128;
    type Lent = super::space::Lent;

    fn pools_len(pools: &Pools) -> usize {
        pools.len()
    }
    fn settle(g: &mut Shard) {
        g.settle();
    }
    fn pending(g: &mut Shard) -> &mut Vec<LeaseEvent> {
        &mut g.pending
    }
    fn take_free(pools: &Pools, g: &mut Shard, pool: PoolId, off: u128, now: Time) -> Give {
        g.take_free(pool, off, pools.layout(pool).resource(off), now)
    }
    fn receive_one(g: &mut Shard, pool: PoolId, off: u128) {
        g.parts[pool.index()].space.receive_one(off);
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
    fn release(g: &mut Shard, res: Resource, key: &IaKey, now: Time) -> bool {
        g.release(res, key, now)
    }
    fn decline(g: &mut Shard, res: Resource, key: &IaKey, now: Time, until: Time) -> bool {
        g.decline(res, key, now, until)
    }
    fn lookup(g: &Shard, key: &IaKey) -> Option<LeaseView> {
        g.lookup(key)
    }
    fn restore(core: &Engine, shard: usize, lease: Lease) -> Result<(), BindError> {
        let lease = LeaseRef::from(&lease);
        super::restore::restore_one(&mut &core.shards[..], &core.pools, shard, &lease)
    }
    fn sort_key(lease: &Lease) -> Resource {
        lease.resource
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
    fn avail(g: &mut Shard, res: Resource, place: Place, key: &IaKey, now: Time) -> Avail {
        g.availability(res, place, key, now)
    }
    fn grant(
        g: &mut Shard,
        res: Resource,
        place: Place,
        key: &IaKey,
        grant: Grant,
        now: Time,
    ) -> LeaseView {
        let term = Term {
            state: LeaseState::Bound,
            starts: now,
            preferred: grant.preferred.min(grant.valid),
            expires: now.saturating_add(u64::from(grant.valid)),
        };
        let (prior, idx) = g.hold(res, place, key, term);
        let kind = match prior {
            Some(LeaseState::Bound) => EventKind::Renewed,
            _ => EventKind::Bound,
        };
        let view = g.records.view(idx);
        g.emit_current(kind, idx);
        view
    }
    fn totals(pools: &Pools) -> impl Iterator<Item = (PoolId, u128)> {
        pools.iter().map(|(pool, layout)| (pool, layout.total))
    }
    #[cfg(test)]
    fn trace(g: &mut Shard) -> &mut crate::common::Trace<Resource> {
        &mut g.trace
    }
    fn add_stats(g: &Shard, stats: &mut [PoolStats]) {
        for (stat, part) in stats.iter_mut().zip(g.parts.iter()) {
            stat.free += part.free_len();
            stat.offered += part.counts.offered;
            stat.bound += part.counts.bound;
            stat.declined += part.counts.declined;
            stat.released += part.counts.released;
            stat.expired += part.counts.expired;
        }
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
        let shards: Box<[Mutex<Shard>]> = (0..cfg.shards)
            .map(|s| {
                let parts = pools
                    .iter()
                    .map(|(_, layout)| Part {
                        space: Space::new(
                            layout.dense,
                            layout.block(s, cfg.shards),
                            &layout.excluded,
                        ),
                        remembered: Default::default(),
                        counts: Default::default(),
                        trim: false,
                    })
                    .collect();
                Mutex::new(Shard::new(parts, &pools, tuning.remember_min))
            })
            .collect();
        let engine = Engine {
            pools,
            offer_hold: cfg.offer_hold,
            decline_probation: cfg.decline_probation,
            shards,
        };
        #[cfg(test)]
        engine.share_trace();
        Ok(engine)
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

    /// Whether `pool` is a pool of `client`'s kind.
    fn fits(&self, pool: PoolId, client: &IaKey) -> bool {
        self.pools
            .get(pool)
            .is_some_and(|l| l.kind == client.kind())
    }

    /// SOLICIT: chooses a resource and holds it for the IA (state Offered, expires
    /// `now + offer_hold`). Not an event. `None` when every candidate pool is exhausted.
    ///
    /// The choice is v4's ([`Engine::offer`](crate::v4::Engine::offer)) by IA and resource: the
    /// reservation, the IA's own record, the hint, then a free resource of the candidate
    /// pools in order (see `space.rs` for which). Events it makes wait for the next
    /// `bind`/`release`/`decline`/`reclaim` on this shard.
    pub fn solicit(&self, shard: usize, req: &SolicitRequest<'_>, now: Time) -> Option<LeaseView> {
        let term = Term {
            state: LeaseState::Offered,
            starts: now,
            preferred: 0,
            expires: now.saturating_add(u64::from(self.offer_hold)),
        };
        let soliciting = Soliciting {
            engine: self,
            req,
            term,
        };
        self.choose(shard, &soliciting, now, |pool| self.fits(pool, req.client))
    }

    /// REQUEST, RENEW, REBIND (or rapid commit): binds `req.resource` to the IA or extends
    /// its binding, and pushes a Bound or Renewed event (after any pending events of this
    /// shard) into `events`, which it never clears.
    ///
    /// It succeeds if the resource is the IA's own (any record of the IA but a quarantine),
    /// free in a candidate pool here or in a sibling, or the IA's reservation. An IA binding
    /// a new resource gives up its previous record (a previous binding ends with a Released
    /// event). Errors: [`BindError::NotInPool`] (in no candidate pool and not reserved),
    /// [`BindError::Quarantined`], [`BindError::Taken`] (another IA's, or somebody's
    /// static assignment).
    pub fn bind(
        &self,
        shard: usize,
        req: &BindRequest<'_>,
        now: Time,
        events: &mut Vec<LeaseEvent>,
    ) -> Result<LeaseView, BindError> {
        let res = req.resource;
        let place = self.pools.place(res);
        if !req.reserved
            && !place
                .pool()
                .is_some_and(|pool| req.pools.contains(&pool) && self.fits(pool, req.client))
        {
            return Err(BindError::NotInPool);
        }
        let fixed = matches!(place, Place::Fixed { .. });
        if fixed && !req.reserved {
            // A fixed resource is somebody's static assignment, and only theirs.
            return Err(BindError::Taken);
        }
        let decide = |avail, fetched| match avail {
            Avail::Own | Avail::Free => Ok(()),
            Avail::HeldByOther if fixed && req.reserved => Ok(()),
            Avail::Elsewhere if fetched == Some(Give::Quarantined) => Err(BindError::Quarantined),
            Avail::Quarantined => Err(BindError::Quarantined),
            Avail::Elsewhere | Avail::HeldByOther => Err(BindError::Taken),
        };
        let grant = Grant {
            preferred: req.preferred,
            valid: req.valid,
        };
        self.bind_with(shard, req.client, res, place, grant, now, events, decide)
    }
}

/// A solicit, as [`choose::step`] sees it.
struct Soliciting<'e, 'r> {
    engine: &'e Engine,
    req: &'r SolicitRequest<'r>,
    term: Term,
}

impl choose::Offer for Soliciting<'_, '_> {
    type Shard = Shard;
    type Pool = PoolId;
    type Off = u128;
    type Done = LeaseView;

    fn reserved(&self) -> Option<Resource> {
        self.req.reserved
    }
    fn requested(&self) -> Option<Resource> {
        self.req.hint
    }
    fn pools(&self) -> &[PoolId] {
        self.req.pools
    }
    fn place(&self, res: Resource) -> Place {
        self.engine.pools.place(res)
    }
    fn in_candidates(&self, place: Place) -> bool {
        matches!(place, Place::Dynamic { pool, .. }
            if self.req.pools.contains(&pool) && self.engine.fits(pool, self.req.client))
    }
    fn client_res(&self, g: &Shard) -> Option<Resource> {
        g.client_res(self.req.client)
    }
    fn availability(&self, g: &mut Shard, res: Resource, place: Place, now: Time) -> Avail {
        g.availability(res, place, self.req.client, now)
    }
    fn hold(&self, g: &mut Shard, res: Resource, place: Place) -> LeaseView {
        let (_, idx) = g.hold(res, place, self.req.client, self.term);
        g.records.view(idx)
    }
    fn own(&self, g: &Shard, res: Resource) -> LeaseView {
        let idx = g.records.find(res).expect("the client's own record");
        g.records.view(idx)
    }
    fn hold_next_free(&self, g: &mut Shard, pool: PoolId) -> Option<LeaseView> {
        if !self.engine.fits(pool, self.req.client) {
            return None;
        }
        let off = g.next_free(&self.engine.pools, pool, self.req.client)?;
        let res = self.engine.pools.resource(pool, off);
        Some(self.hold(g, res, Place::Dynamic { pool, off }))
    }
}
