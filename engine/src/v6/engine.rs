//! The sharded v6 engine: per-request entry points, borrowing between shards, replay and
//! stats (v4's `engine.rs`, by IA and resource).

use std::fmt;
use std::sync::{Mutex, MutexGuard};

use crate::choose::{self, EXHAUSTED_RECLAIM, LAZY_RECLAIM, MAX_BORROWS, Tried};
use crate::common;
use crate::lease::{EventKind, LeaseState, Time};

use super::error::{V6BindError, V6ConfigError};
use super::key::{IaKey, Resource};
use super::lease::{V6Lease, V6LeaseEvent, V6LeaseRef, V6LeaseView};
use super::pools::{Place, Pools, V6EngineConfig, V6PoolId};
use super::shard::{Avail, Give, Part, Shard, Term};
use super::space::{DENSE_MAX, Space};

/// Most free resources one borrow takes from a sibling.
const BORROW_CHUNK: u64 = 64;
/// Remembered (Released/Expired) records a pool keeps per shard beyond its held ones.
const REMEMBER_MIN: u64 = 4096;

/// A SOLICIT (or a REQUEST for an IA with no lease yet) to answer with an ADVERTISE.
#[derive(Clone, Copy, Debug)]
pub struct SolicitRequest<'a> {
    /// The IA that asks.
    pub client: &'a IaKey,
    /// Pools the IA may get a resource from, in order of preference. Pools of another kind
    /// than the IA's are ignored.
    pub pools: &'a [V6PoolId],
    /// The IA's static assignment, if the server has one for it (authoritative).
    pub reserved: Option<Resource>,
    /// What the client asked for in its IA, if anything.
    pub hint: Option<Resource>,
}

/// A REQUEST, RENEW or REBIND (or a SOLICIT with rapid commit) to bind or extend.
#[derive(Clone, Copy, Debug)]
pub struct BindRequest6<'a> {
    /// The IA that asks.
    pub client: &'a IaKey,
    /// The resource to bind.
    pub resource: Resource,
    /// Pools `resource` may come from (pools of another kind than the IA's are ignored).
    pub pools: &'a [V6PoolId],
    /// `resource` is this IA's static assignment.
    pub reserved: bool,
    /// Preferred lifetime in seconds (at most `valid` is kept).
    pub preferred: u32,
    /// Valid lifetime in seconds.
    pub valid: u32,
}

/// Usage of one pool across all shards. `free + offered + bound + declined == total`
/// (Released and Expired resources are free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct V6PoolStats {
    /// The pool.
    pub pool: V6PoolId,
    /// Dynamic resources: the range minus excluded ones (a /64 of addresses has 2^64).
    pub total: u128,
    /// Free in some shard (including Released/Expired ones remembered for an IA).
    pub free: u128,
    /// Held by an ADVERTISE.
    pub offered: u64,
    /// Bound.
    pub bound: u64,
    /// Quarantined after a DECLINE.
    pub declined: u64,
}

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

/// What one locked pass of a solicit decided.
type Step = choose::Step<V6LeaseView, V6PoolId, u128>;

/// In-memory DHCPv6 lease state (IA_NA addresses and IA_PD prefixes), sharded across worker
/// cores like v4's [`Engine`](crate::Engine).
///
/// Worker `k` passes `shard = k` to every call, for IAs whose DUID it owns
/// ([`V6Engine::owner`]); a call locks its own shard's mutex, and only briefly a sibling's
/// (never two at once) when it must borrow. `V6Engine` is `Send + Sync`: share it as
/// `Arc<V6Engine>`. Every method that takes a `shard` panics if `shard >= self.shards()`.
pub struct V6Engine {
    pub(crate) pools: Pools,
    offer_hold: u32,
    decline_probation: u32,
    pub(crate) shards: Box<[Mutex<Shard>]>,
}

impl fmt::Debug for V6Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("V6Engine")
            .field("shards", &self.shards.len())
            .field("pools", &self.pools.len())
            .field("offer_hold", &self.offer_hold)
            .field("decline_probation", &self.decline_probation)
            .finish_non_exhaustive()
    }
}

impl V6Engine {
    /// Validates `cfg` and splits each pool's offsets into one contiguous block per shard.
    /// A pool costs memory in proportion to its leases and fragmentation, not its size.
    pub fn new(cfg: V6EngineConfig) -> Result<V6Engine, V6ConfigError> {
        Self::with_tuning(cfg, Tuning::default())
    }

    pub(crate) fn with_tuning(
        cfg: V6EngineConfig,
        tuning: Tuning,
    ) -> Result<V6Engine, V6ConfigError> {
        if cfg.shards == 0 {
            return Err(V6ConfigError::NoShards);
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
        let engine = V6Engine {
            pools,
            offer_hold: cfg.offer_hold,
            decline_probation: cfg.decline_probation,
            shards,
        };
        #[cfg(test)]
        common::share_trace(&engine.shards, |g| &mut g.trace);
        Ok(engine)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    /// The shard that owns the leases of every IA of the client with this DUID: the server
    /// steers the client's messages to its worker. It is the DUID's last four bytes, read as a
    /// big-endian number (zero-padded in front when the DUID is shorter), modulo `shards()`.
    /// For DUID-LLT and DUID-LL those are the end of the link-layer address, the bytes DHCPv4
    /// steers by. A fixed function, simple enough for a classic BPF program on the socket
    /// group to compute (`lessor_net::attach_steering6`), so the kernel hands each datagram to
    /// the owner's worker, and the same DUID has the same owner across restarts.
    pub fn owner(&self, duid: &[u8]) -> usize {
        let tail = &duid[duid.len().saturating_sub(4)..];
        let word = tail.iter().fold(0u32, |w, &b| (w << 8) | u32::from(b));
        (u64::from(word) % self.shards.len() as u64) as usize
    }

    pub(crate) fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        common::lock(&self.shards, shard)
    }

    fn siblings(&self, shard: usize) -> impl Iterator<Item = usize> {
        common::siblings(self.shards.len(), shard)
    }

    /// Runs `f` on `shard` after its lazy reclaim, then settles the shard and hands out its
    /// pending events into `events`.
    #[inline]
    fn on_shard<R>(
        &self,
        shard: usize,
        now: Time,
        events: &mut Vec<V6LeaseEvent>,
        f: impl FnOnce(&mut Shard) -> R,
    ) -> R {
        let mut g = self.lock(shard);
        g.reclaim(now, LAZY_RECLAIM);
        let r = f(&mut g);
        g.settle();
        events.append(&mut g.pending);
        r
    }

    /// Whether `pool` is a pool of `client`'s kind.
    fn fits(&self, pool: V6PoolId, client: &IaKey) -> bool {
        self.pools
            .get(pool)
            .is_some_and(|l| l.kind == client.kind())
    }

    /// SOLICIT: chooses a resource and holds it for the IA (state Offered, expires
    /// `now + offer_hold`). Not an event. `None` when every candidate pool is exhausted.
    ///
    /// The choice, first that works: (1) the reservation, unless it is quarantined (a fixed
    /// reserved resource is taken back from anyone else holding it in this shard); (2) the
    /// IA's own record in a candidate pool, in any state but Declined; (3) the hint if it is
    /// in a candidate pool and free (here or in a sibling); (4) a free resource of the
    /// candidate pools in order (see `space.rs` for which), preferring resources nobody is
    /// remembered for over those a Released/Expired record remembers. Only then are this
    /// shard's expired records reclaimed and free resources borrowed from the sibling with
    /// most.
    ///
    /// An IA that already holds an Offered or Bound resource it may use gets the same one
    /// again (an advertise's hold is renewed; a binding is left as it is). Moving the IA to
    /// a new resource ends its previous record; the events that produces (Released for an
    /// abandoned binding, Expired for records found expired) are handed out by the next
    /// `bind`/`release`/`decline`/`reclaim` on this shard, with the versions of the changes
    /// they record.
    pub fn solicit(
        &self,
        shard: usize,
        req: &SolicitRequest<'_>,
        now: Time,
    ) -> Option<V6LeaseView> {
        let mut tried = Tried::default();
        loop {
            let step = {
                let mut g = self.lock(shard);
                let step = self.solicit_step(&mut g, req, now, &tried);
                g.settle();
                step
            };
            match step {
                Step::Done(view) => return Some(view),
                Step::Fetch {
                    pool,
                    off,
                    reserved,
                } => {
                    if reserved {
                        tried.reserved = true;
                    } else {
                        tried.requested = true;
                    }
                    self.fetch(shard, pool, off, now);
                }
                Step::Borrow => {
                    if tried.borrows == MAX_BORROWS || !self.borrow(shard, req, now) {
                        return None;
                    }
                    tried.borrows += 1;
                }
            }
        }
    }

    fn solicit_step(
        &self,
        g: &mut Shard,
        req: &SolicitRequest<'_>,
        now: Time,
        tried: &Tried,
    ) -> Step {
        let term = Term {
            state: LeaseState::Offered,
            starts: now,
            preferred: 0,
            expires: now.saturating_add(u64::from(self.offer_hold)),
        };
        choose::step(
            &Soliciting {
                engine: self,
                req,
                term,
            },
            g,
            now,
            tried,
        )
    }

    /// Moves `off` of `pool` from whichever sibling has it free into `shard`'s space; else
    /// says what holds it in the sibling that owns it.
    fn fetch(&self, shard: usize, pool: V6PoolId, off: u128, now: Time) -> Give {
        let layout = self.pools.layout(pool);
        let res = layout.resource(off);
        for sibling in self.siblings(shard) {
            let mut g = self.lock(sibling);
            match g.take_free(pool, off, res, now) {
                Give::Given => {
                    // Read under the lender's lock, after its last change to the resource.
                    let clock = g.clock;
                    drop(g);
                    let mut g = self.lock(shard);
                    g.observe(clock);
                    g.parts[pool.index()].space.receive_one(off);
                    return Give::Given;
                }
                Give::NotHere => {}
                held => return held,
            }
        }
        Give::NotHere
    }

    /// Borrows a chunk of free resources of the first candidate pool a sibling has any of,
    /// from the sibling with the most.
    fn borrow(&self, shard: usize, req: &SolicitRequest<'_>, now: Time) -> bool {
        for &pool in req.pools {
            if !self.fits(pool, req.client) {
                continue;
            }
            let mut donors: Vec<(u128, usize)> = self
                .siblings(shard)
                .map(|s| {
                    let mut g = self.lock(s);
                    // The sibling's own expired records count as free; their events wait in
                    // its pending list for its worker.
                    g.reclaim(now, EXHAUSTED_RECLAIM);
                    g.settle();
                    (g.free_len(pool), s)
                })
                .filter(|&(free, _)| free > 0)
                .collect();
            donors.sort_unstable_by(|a, b| b.cmp(a));
            for (_, donor) in donors {
                let mut g = self.lock(donor);
                let lent = g.lend(&self.pools, pool, BORROW_CHUNK);
                // Read under the lender's lock, after its last change to the resources.
                let clock = g.clock;
                drop(g);
                if !lent.is_empty() {
                    let mut g = self.lock(shard);
                    g.observe(clock);
                    g.parts[pool.index()].space.receive(lent);
                    return true;
                }
            }
        }
        false
    }

    /// REQUEST, RENEW, REBIND (or rapid commit): binds `req.resource` to the IA or extends
    /// its binding, and pushes a Bound or Renewed event (after any pending events of this
    /// shard) into `events`, which it never clears.
    ///
    /// It succeeds if the resource is the IA's own (any record of the IA but a quarantine),
    /// free in a candidate pool here or in a sibling, or the IA's reservation. An IA binding
    /// a new resource gives up its previous record (a previous binding ends with a Released
    /// event). Errors: [`V6BindError::NotInPool`] (in no candidate pool and not reserved),
    /// [`V6BindError::Quarantined`], [`V6BindError::Taken`] (another IA's, or somebody's
    /// static assignment).
    pub fn bind(
        &self,
        shard: usize,
        req: &BindRequest6<'_>,
        now: Time,
        events: &mut Vec<V6LeaseEvent>,
    ) -> Result<V6LeaseView, V6BindError> {
        let res = req.resource;
        let place = self.pools.place(res);
        if !req.reserved
            && !place
                .pool()
                .is_some_and(|pool| req.pools.contains(&pool) && self.fits(pool, req.client))
        {
            return Err(V6BindError::NotInPool);
        }
        let fixed = matches!(place, Place::Fixed { .. });
        if fixed && !req.reserved {
            // A fixed resource is somebody's static assignment, and only theirs.
            return Err(V6BindError::Taken);
        }
        // What the sibling that owns the resource said, once asked.
        let mut fetched = None;
        loop {
            let mut g = self.lock(shard);
            g.reclaim(now, LAZY_RECLAIM);
            let result = match g.availability(res, place, req.client, now) {
                Avail::Own | Avail::Free => Ok(()),
                Avail::HeldByOther if fixed && req.reserved => Ok(()),
                Avail::Elsewhere if fetched.is_none() => {
                    drop(g);
                    fetched = Some(match place {
                        Place::Dynamic { pool, off } => self.fetch(shard, pool, off, now),
                        Place::Fixed { .. } => Give::NotHere,
                    });
                    continue;
                }
                Avail::Elsewhere if fetched == Some(Give::Quarantined) => {
                    Err(V6BindError::Quarantined)
                }
                Avail::Quarantined => Err(V6BindError::Quarantined),
                Avail::Elsewhere | Avail::HeldByOther => Err(V6BindError::Taken),
            };
            let result = result.map(|()| {
                let term = Term {
                    state: LeaseState::Bound,
                    starts: now,
                    preferred: req.preferred.min(req.valid),
                    expires: now.saturating_add(u64::from(req.valid)),
                };
                let (prior, idx) = g.hold(res, place, req.client, term);
                let kind = match prior {
                    Some(LeaseState::Bound) => EventKind::Renewed,
                    _ => EventKind::Bound,
                };
                let view = g.records.view(idx);
                g.emit_current(kind, idx);
                view
            });
            g.settle();
            events.append(&mut g.pending);
            return result;
        }
    }

    /// RELEASE: only if `resource` is bound to `client`. The record stays, Released, so the
    /// IA gets the resource back if it is still free. Returns whether it did anything.
    pub fn release(
        &self,
        shard: usize,
        client: &IaKey,
        resource: Resource,
        now: Time,
        events: &mut Vec<V6LeaseEvent>,
    ) -> bool {
        self.on_shard(shard, now, events, |g| g.release(resource, client, now))
    }

    /// DECLINE: only if `resource` is advertised or bound to `client`. The resource is
    /// quarantined until `now + decline_probation`; the IA's next SOLICIT gets another one.
    pub fn decline(
        &self,
        shard: usize,
        client: &IaKey,
        resource: Resource,
        now: Time,
        events: &mut Vec<V6LeaseEvent>,
    ) -> bool {
        let until = now.saturating_add(u64::from(self.decline_probation));
        self.on_shard(shard, now, events, |g| {
            g.decline(resource, client, now, until)
        })
    }

    /// The IA's current record in this shard (any state, as last updated; a record whose
    /// time has passed shows until something reclaims it), without allocating.
    pub fn lookup(&self, shard: usize, client: &IaKey) -> Option<V6LeaseView> {
        self.lock(shard).lookup(client)
    }

    /// Ends up to `budget` records whose time has passed, earliest first: bindings become
    /// Expired (the record stays for the IA) with an Expired event; advertises end silently;
    /// quarantines end with an Expired event. Also hands out events pending from earlier
    /// calls. Returns how many records it ended.
    pub fn reclaim(
        &self,
        shard: usize,
        now: Time,
        budget: usize,
        events: &mut Vec<V6LeaseEvent>,
    ) -> usize {
        let mut g = self.lock(shard);
        let done = g.reclaim(now, budget);
        g.settle();
        events.append(&mut g.pending);
        done
    }

    /// Replay support, one record at a time: puts a lease record back, taking its resource
    /// out of whichever shard holds it, and raises `shard`'s clock to at least
    /// `lease.version`. `shard` is the one the IA's DUID is steered to
    /// ([`V6Engine::owner`]); `lease.pool` is recomputed from the current configuration.
    ///
    /// The rules are v4's ([`Engine::restore`](crate::Engine::restore)): give it the
    /// journal's fold (per resource, the record with the highest version) or a snapshot, in
    /// any order; a record of a resource that already has one at least as new is refused
    /// with `Err(Taken)`. An IA keeps one current record per shard: its binding if it has
    /// one, else its record with the highest version; a quarantine that is not current
    /// stays, other records that are not current are dropped. At startup,
    /// [`V6Engine::restorer`] does the same for a whole journal faster.
    pub fn restore(&self, shard: usize, lease: V6Lease) -> Result<(), V6BindError> {
        super::restore::restore_one(
            &mut &self.shards[..],
            &self.pools,
            shard,
            &V6LeaseRef::from(&lease),
        )
    }

    /// Raises every shard's clock to at least `floor`, so that every later change gets a
    /// version above `floor`. After replay the server calls it with the highest version in
    /// the journal.
    pub fn advance_versions(&self, floor: u64) {
        common::advance_versions(&self.shards, floor);
    }

    /// The highest version any shard has given a change (or been raised to).
    pub fn max_version(&self) -> u64 {
        common::max_version(&self.shards)
    }

    /// Every lease record of every shard, sorted by resource, for dumps and snapshots.
    pub fn leases(&self) -> Vec<V6Lease> {
        common::leases(&self.shards, |lease| lease.resource)
    }

    /// Usage of every pool, in configuration order.
    pub fn stats(&self) -> Vec<V6PoolStats> {
        let mut stats: Vec<V6PoolStats> = self
            .pools
            .iter()
            .map(|(pool, layout)| V6PoolStats {
                pool,
                total: layout.total,
                free: 0,
                offered: 0,
                bound: 0,
                declined: 0,
            })
            .collect();
        for shard in 0..self.shards.len() {
            let g = self.lock(shard);
            for (stat, part) in stats.iter_mut().zip(g.parts.iter()) {
                stat.free += part.free_len();
                stat.offered += part.counts.offered;
                stat.bound += part.counts.bound;
                stat.declined += part.counts.declined;
            }
        }
        stats
    }
}

/// A solicit, as [`choose::step`] sees it.
struct Soliciting<'e, 'r> {
    engine: &'e V6Engine,
    req: &'r SolicitRequest<'r>,
    term: Term,
}

impl choose::Offer for Soliciting<'_, '_> {
    type Shard = Shard;
    type Res = Resource;
    type Place = Place;
    type Pool = V6PoolId;
    type Off = u128;
    type Done = V6LeaseView;

    fn reserved(&self) -> Option<Resource> {
        self.req.reserved
    }
    fn requested(&self) -> Option<Resource> {
        self.req.hint
    }
    fn pools(&self) -> &[V6PoolId] {
        self.req.pools
    }
    fn place(&self, res: Resource) -> Place {
        self.engine.pools.place(res)
    }
    fn dynamic(place: Place) -> Option<(V6PoolId, u128)> {
        match place {
            Place::Dynamic { pool, off } => Some((pool, off)),
            Place::Fixed { .. } => None,
        }
    }
    fn in_candidates(&self, place: Place) -> bool {
        matches!(place, Place::Dynamic { pool, .. }
            if self.req.pools.contains(&pool) && self.engine.fits(pool, self.req.client))
    }
    fn reclaim(g: &mut Shard, now: Time, budget: usize) -> usize {
        g.reclaim(now, budget)
    }
    fn client_res(&self, g: &Shard) -> Option<Resource> {
        g.client_res(self.req.client)
    }
    fn expire_if_due(g: &mut Shard, res: Resource, now: Time) {
        g.expire_if_due(res, now);
    }
    fn state(g: &Shard, res: Resource) -> Option<LeaseState> {
        g.state(res)
    }
    fn availability(&self, g: &mut Shard, res: Resource, place: Place, now: Time) -> Avail {
        g.availability(res, place, self.req.client, now)
    }
    fn hold(&self, g: &mut Shard, res: Resource, place: Place) -> V6LeaseView {
        let (_, idx) = g.hold(res, place, self.req.client, self.term);
        g.records.view(idx)
    }
    fn own(&self, g: &Shard, res: Resource) -> V6LeaseView {
        let idx = g.records.find(res).expect("the client's own record");
        g.records.view(idx)
    }
    fn hold_next_free(&self, g: &mut Shard, pool: V6PoolId) -> Option<V6LeaseView> {
        if !self.engine.fits(pool, self.req.client) {
            return None;
        }
        let off = g.next_free(&self.engine.pools, pool, self.req.client)?;
        let res = self.engine.pools.resource(pool, off);
        Some(self.hold(g, res, Place::Dynamic { pool, off }))
    }
}
