//! The sharded engine: per-request entry points, borrowing between shards, replay and stats.

use std::fmt;
use std::net::Ipv4Addr;
use std::sync::{Mutex, MutexGuard};

use crate::choose::{self, EXHAUSTED_RECLAIM, LAZY_RECLAIM, MAX_BORROWS, Tried};
use crate::common;
use crate::error::{AllocError, BindError, Result};
use crate::ident::ClientKey;
use crate::lease::{EventKind, Lease, LeaseEvent, LeaseInfo, LeaseState, LeaseView, Time};
use crate::pools::{EngineConfig, Place, PoolId, Pools};
use crate::shard::{Avail, FreeSet, Shard, Term};

#[cfg(test)]
mod tests;

/// Most free addresses one borrow takes from a sibling.
const BORROW_CHUNK: u64 = 64;

/// A DISCOVER to answer with an OFFER.
#[derive(Clone, Copy, Debug)]
pub struct OfferRequest<'a> {
    /// Who asks.
    pub client: &'a ClientKey,
    /// Pools the client may get an address from, in order of preference.
    pub pools: &'a [PoolId],
    /// The client's reservation, if the server has one for it (authoritative).
    pub reserved: Option<Ipv4Addr>,
    /// The address the client asked for (option 50).
    pub requested: Option<Ipv4Addr>,
    /// What the server knows about the client.
    pub info: LeaseInfo<'a>,
}

/// A REQUEST (selecting, init-reboot, renewing or rebinding) to bind or extend.
#[derive(Clone, Copy, Debug)]
pub struct BindRequest<'a> {
    /// Who asks.
    pub client: &'a ClientKey,
    /// The address to bind.
    pub address: Ipv4Addr,
    /// Pools `address` may come from.
    pub pools: &'a [PoolId],
    /// `address` is this client's reservation.
    pub reserved: bool,
    /// Lease time in seconds.
    pub lease_time: u32,
    /// What the server knows about the client.
    pub info: LeaseInfo<'a>,
}

/// Usage of one pool across all shards. `free + offered + bound + declined == total`
/// (Released and Expired addresses are free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats {
    /// The pool.
    pub pool: PoolId,
    /// Dynamic addresses: the range minus excluded addresses.
    pub total: u64,
    /// Free in some shard (including Released/Expired ones remembered for a client).
    pub free: u64,
    /// Held by an OFFER.
    pub offered: u64,
    /// Bound.
    pub bound: u64,
    /// Quarantined after a DECLINE.
    pub declined: u64,
}

type Step = choose::Step<u32, PoolId, u32>;

/// In-memory DHCPv4 lease state, sharded across worker cores.
///
/// Worker `k` passes `shard = k` to every call; a call locks its own shard's mutex, and only
/// briefly a sibling's (never two at once) when it must borrow an address. `Engine` is
/// `Send + Sync`: share it as `Arc<Engine>`.
///
/// Every method that takes a `shard` panics if `shard >= self.shards()`.
pub struct Engine {
    pub(crate) pools: Pools,
    offer_hold: u32,
    decline_probation: u32,
    pub(crate) shards: Box<[Mutex<Shard>]>,
}

impl fmt::Debug for Engine {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Engine")
            .field("shards", &self.shards.len())
            .field("pools", &self.pools.len())
            .field("offer_hold", &self.offer_hold)
            .field("decline_probation", &self.decline_probation)
            .finish_non_exhaustive()
    }
}

impl Engine {
    /// Validates `cfg` and splits each pool's dynamic addresses into one contiguous block per
    /// shard. A pool costs memory in proportion to its fragmentation, not its size.
    pub fn new(cfg: EngineConfig) -> Result<Engine> {
        if cfg.shards == 0 {
            return Err(crate::Error::NoShards);
        }
        let pools = Pools::new(&cfg.pools)?;
        let mut free: Vec<Vec<FreeSet>> = (0..cfg.shards)
            .map(|_| Vec::with_capacity(pools.len()))
            .collect();
        for (pool, layout) in pools.iter() {
            for (shard, block) in pools.blocks(pool, cfg.shards).into_iter().enumerate() {
                free[shard].push(FreeSet {
                    first: layout.first,
                    clean: block,
                    remembered: Default::default(),
                });
            }
        }
        let engine = Engine {
            pools,
            offer_hold: cfg.offer_hold,
            decline_probation: cfg.decline_probation,
            shards: free
                .into_iter()
                .map(|free| Mutex::new(Shard::new(free)))
                .collect(),
        };
        #[cfg(test)]
        common::share_trace(&engine.shards, |g| &mut g.trace);
        Ok(engine)
    }

    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn lock(&self, shard: usize) -> MutexGuard<'_, Shard> {
        common::lock(&self.shards, shard)
    }

    fn siblings(&self, shard: usize) -> impl Iterator<Item = usize> {
        common::siblings(self.shards.len(), shard)
    }

    /// Runs `f` on `shard` after its lazy reclaim, then hands out the shard's pending
    /// events into `events`.
    #[inline]
    fn on_shard<R>(
        &self,
        shard: usize,
        now: Time,
        events: &mut Vec<LeaseEvent>,
        f: impl FnOnce(&mut Shard) -> R,
    ) -> R {
        let mut g = self.lock(shard);
        g.reclaim(now, LAZY_RECLAIM);
        let r = f(&mut g);
        events.append(&mut g.pending);
        r
    }

    /// DISCOVER: chooses an address and holds it for the client (state Offered, expires
    /// `now + offer_hold`). Not an event.
    ///
    /// The choice, first that works: (1) the reservation, unless it is quarantined (a fixed
    /// reserved address is taken back from anyone else holding it in this shard); (2) the
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
        let mut tried = Tried::default();
        loop {
            let step = self.offer_step(&mut self.lock(shard), req, now, &tried);
            match step {
                Step::Done(addr) => return Ok(Ipv4Addr::from(addr)),
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
                    if tried.borrows == MAX_BORROWS || !self.borrow(shard, req.pools, now) {
                        return Err(AllocError::Exhausted);
                    }
                    tried.borrows += 1;
                }
            }
        }
    }

    fn offer_step(&self, g: &mut Shard, req: &OfferRequest<'_>, now: Time, tried: &Tried) -> Step {
        let term = Term {
            state: LeaseState::Offered,
            starts: now,
            expires: now.saturating_add(u64::from(self.offer_hold)),
        };
        choose::step(
            &Offering {
                engine: self,
                req,
                term,
            },
            g,
            now,
            tried,
        )
    }

    /// Moves `off` of `pool` from whichever sibling has it free into `shard`'s free set.
    fn fetch(&self, shard: usize, pool: PoolId, off: u32, now: Time) -> bool {
        let addr = self.pools.addr(pool, off);
        for sibling in self.siblings(shard) {
            let mut g = self.lock(sibling);
            if g.take_free(pool, off, addr, now) {
                // Read under the lender's lock, after its last change to the address.
                let clock = g.clock;
                drop(g);
                let mut g = self.lock(shard);
                g.observe(clock);
                g.free[pool.index()].clean.insert(off);
                return true;
            }
        }
        false
    }

    /// Borrows a chunk of free addresses of the first candidate pool a sibling has any of,
    /// from the sibling with the most.
    fn borrow(&self, shard: usize, pools: &[PoolId], now: Time) -> bool {
        for &pool in pools {
            let Some(layout) = self.pools.get(pool) else {
                continue;
            };
            let mut donors: Vec<(u64, usize)> = self
                .siblings(shard)
                .map(|s| {
                    let mut g = self.lock(s);
                    // The sibling's own expired records count as free; their events wait in
                    // its pending list for its worker.
                    g.reclaim(now, EXHAUSTED_RECLAIM);
                    (g.free_len(pool), s)
                })
                .filter(|&(free, _)| free > 0)
                .collect();
            donors.sort_unstable_by(|a, b| b.cmp(a));
            for (_, donor) in donors {
                let mut g = self.lock(donor);
                let lent = g.lend(pool, layout.first, BORROW_CHUNK);
                // Read under the lender's lock, after its last change to the addresses.
                let clock = g.clock;
                drop(g);
                if !lent.is_empty() {
                    let mut g = self.lock(shard);
                    g.observe(clock);
                    g.free[pool.index()].clean |= lent;
                    return true;
                }
            }
        }
        false
    }

    /// REQUEST (or renewal): binds `req.address` to the client or extends its binding, and
    /// pushes a Bound or Renewed event (after any pending events of this shard) into `events`,
    /// which it never clears.
    ///
    /// It succeeds if the address is the client's own (any record of the client but a
    /// quarantine), free in a candidate pool here or in a sibling, or the client's
    /// reservation. A client binding a new address gives up its previous record (a previous
    /// binding ends with a Released event).
    pub fn bind(
        &self,
        shard: usize,
        req: &BindRequest<'_>,
        now: Time,
        events: &mut Vec<LeaseEvent>,
    ) -> Result<LeaseView, BindError> {
        let addr = u32::from(req.address);
        let place = self.pools.place(addr);
        if !req.reserved && !place.pool().is_some_and(|pool| req.pools.contains(&pool)) {
            return Err(BindError::NotInPool);
        }
        let mut fetched = false;
        loop {
            let mut g = self.lock(shard);
            g.reclaim(now, LAZY_RECLAIM);
            let fixed = matches!(place, Place::Fixed { .. });
            let result = match g.availability(addr, place, req.client, now) {
                Avail::Own => Ok(()),
                // A fixed address is somebody's reservation, and only theirs.
                Avail::Free if fixed && !req.reserved => Err(BindError::Taken),
                Avail::Free => Ok(()),
                Avail::HeldByOther if fixed && req.reserved => Ok(()),
                Avail::Elsewhere if !fetched => {
                    drop(g);
                    if let Place::Dynamic { pool, off } = place {
                        self.fetch(shard, pool, off, now);
                    }
                    fetched = true;
                    continue;
                }
                Avail::Elsewhere | Avail::HeldByOther | Avail::Quarantined => Err(BindError::Taken),
            };
            let result = result.map(|()| {
                let term = Term {
                    state: LeaseState::Bound,
                    starts: now,
                    expires: now.saturating_add(u64::from(req.lease_time)),
                };
                let (prior, idx) = g.hold(addr, place, req.client, req.info, term);
                let kind = match prior {
                    Some(LeaseState::Bound) => EventKind::Renewed,
                    _ => EventKind::Bound,
                };
                let lease = g.records.lease(idx);
                let view = g.records.view(idx);
                g.emit(kind, lease);
                view
            });
            events.append(&mut g.pending);
            return result;
        }
    }

    /// RELEASE: only if `address` is bound to `client`. The record stays, Released, so the
    /// client gets the address back if it is still free. Returns whether it did anything.
    pub fn release(
        &self,
        shard: usize,
        client: &ClientKey,
        address: Ipv4Addr,
        now: Time,
        events: &mut Vec<LeaseEvent>,
    ) -> bool {
        self.on_shard(shard, now, events, |g| {
            g.release(u32::from(address), client, now)
        })
    }

    /// DECLINE: only if `address` is offered or bound to `client`. The address is quarantined
    /// until `now + decline_probation`; the client's next DISCOVER gets another address.
    pub fn decline(
        &self,
        shard: usize,
        client: &ClientKey,
        address: Ipv4Addr,
        now: Time,
        events: &mut Vec<LeaseEvent>,
    ) -> bool {
        let until = now.saturating_add(u64::from(self.decline_probation));
        self.on_shard(shard, now, events, |g| {
            g.decline(u32::from(address), client, now, until)
        })
    }

    /// The client's current record in this shard (any state, as last updated; a record whose
    /// time has passed shows until something reclaims it), without allocating.
    pub fn lookup(&self, shard: usize, client: &ClientKey) -> Option<LeaseView> {
        self.lock(shard).lookup(client)
    }

    /// Ends up to `budget` records whose time has passed, earliest first: bindings become
    /// Expired (the record stays for the client) with an Expired event; offers end silently;
    /// quarantines end with an Expired event. Also hands out events pending from earlier
    /// calls. Returns how many records it ended.
    pub fn reclaim(
        &self,
        shard: usize,
        now: Time,
        budget: usize,
        events: &mut Vec<LeaseEvent>,
    ) -> usize {
        let mut g = self.lock(shard);
        let done = g.reclaim(now, budget);
        events.append(&mut g.pending);
        done
    }

    /// Replay support: puts a lease record back, taking its address out of whichever shard
    /// holds it, and raises `shard`'s clock to at least `lease.version`. `shard` is the one
    /// the client is steered to; `lease.pool` is recomputed from the current configuration.
    ///
    /// Give it the journal's fold (per address, the record with the highest
    /// [`version`](Lease::version)) or a snapshot ([`Engine::leases`]), one record per
    /// address, in any order: the result does not depend on the order. A record of an
    /// address that already has one at least as new is refused with `Err(Taken)` (and an
    /// older one is replaced), so duplicates do no harm either.
    ///
    /// A client keeps one current record per shard (its address remembered for it, or held):
    /// of a client's records the current one is its binding if it has one, else the one with
    /// the highest version. A quarantine that is not current stays (a quarantine outlives the
    /// client moving on); any other record that is not current is dropped, its address free.
    /// So the restored Bound and Declined records are exactly those of the engine that
    /// emitted the journal, with the client index, free sets, counts and expiry heap to
    /// match. Offers are not journaled, and Released and Expired memories may differ where
    /// the journal no longer says which came last (the end of a quarantine is restored as a
    /// memory of the address for its decliner).
    ///
    /// Restore before serving, then call [`Engine::advance_versions`] with the highest
    /// version in the journal. It is safe alongside other calls but does not order itself
    /// against them. At startup, [`Engine::restorer`] does the same for a whole journal much
    /// faster.
    pub fn restore(&self, shard: usize, lease: Lease) -> Result<(), BindError> {
        crate::restore::restore_one(&mut &self.shards[..], &self.pools, shard, &lease)
    }

    /// Raises every shard's clock to at least `floor`, so that every later change gets a
    /// version above `floor`. After replay the server calls it with the highest version in
    /// the journal, so that new events outrank every record still in old segments, even of
    /// addresses it did not restore.
    pub fn advance_versions(&self, floor: u64) {
        common::advance_versions(&self.shards, floor);
    }

    /// The highest version any shard has given a change (or been raised to), for tests and
    /// diagnostics.
    pub fn max_version(&self) -> u64 {
        common::max_version(&self.shards)
    }

    /// Every lease record of every shard, sorted by address, for dumps and snapshots.
    pub fn leases(&self) -> Vec<Lease> {
        common::leases(&self.shards, |lease| lease.address)
    }

    /// Usage of every pool, in configuration order.
    pub fn stats(&self) -> Vec<PoolStats> {
        let mut stats: Vec<PoolStats> = self
            .pools
            .iter()
            .map(|(pool, layout)| PoolStats {
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
            for (i, stat) in stats.iter_mut().enumerate() {
                let counts = g.counts[i];
                stat.free += g.free[i].len();
                stat.offered += counts.offered;
                stat.bound += counts.bound;
                stat.declined += counts.declined;
            }
        }
        stats
    }
}

/// An offer, as [`choose::step`] sees it.
struct Offering<'e, 'r> {
    engine: &'e Engine,
    req: &'r OfferRequest<'r>,
    term: Term,
}

impl choose::Offer for Offering<'_, '_> {
    type Shard = Shard;
    type Res = u32;
    type Place = Place;
    type Pool = PoolId;
    type Off = u32;
    type Done = u32;

    fn reserved(&self) -> Option<u32> {
        self.req.reserved.map(u32::from)
    }
    fn requested(&self) -> Option<u32> {
        self.req.requested.map(u32::from)
    }
    fn pools(&self) -> &[PoolId] {
        self.req.pools
    }
    fn place(&self, addr: u32) -> Place {
        self.engine.pools.place(addr)
    }
    fn dynamic(place: Place) -> Option<(PoolId, u32)> {
        match place {
            Place::Dynamic { pool, off } => Some((pool, off)),
            Place::Fixed { .. } => None,
        }
    }
    fn in_candidates(&self, place: Place) -> bool {
        matches!(place, Place::Dynamic { pool, .. } if self.req.pools.contains(&pool))
    }
    fn reclaim(g: &mut Shard, now: Time, budget: usize) -> usize {
        g.reclaim(now, budget)
    }
    fn client_res(&self, g: &Shard) -> Option<u32> {
        g.client_addr(self.req.client)
    }
    fn expire_if_due(g: &mut Shard, addr: u32, now: Time) {
        g.expire_if_due(addr, now);
    }
    fn state(g: &Shard, addr: u32) -> Option<LeaseState> {
        g.state(addr)
    }
    fn availability(&self, g: &mut Shard, addr: u32, place: Place, now: Time) -> Avail {
        g.availability(addr, place, self.req.client, now)
    }
    fn hold(&self, g: &mut Shard, addr: u32, place: Place) -> u32 {
        g.hold(addr, place, self.req.client, self.req.info, self.term);
        addr
    }
    fn own(&self, _: &Shard, addr: u32) -> u32 {
        addr
    }
    fn hold_next_free(&self, g: &mut Shard, pool: PoolId) -> Option<u32> {
        let off = g.next_free(pool)?;
        let addr = self.engine.pools.addr(pool, off);
        Some(self.hold(g, addr, Place::Dynamic { pool, off }))
    }
}

#[cfg(test)]
impl Engine {
    pub(crate) fn pools(&self) -> &Pools {
        &self.pools
    }

    /// Every event of every shard as it was made: `(address, version)` in the real order of
    /// the changes (each is logged under its shard's lock), which hand-out order is not.
    pub(crate) fn trace(&self) -> Vec<(Ipv4Addr, u64)> {
        self.lock(0).trace.lock().unwrap().clone()
    }

    /// Checks the rule replay rests on: for every address, the versions of its events
    /// strictly increase in the real order of the changes. Returns how many events it saw.
    pub(crate) fn check_causality(&self) -> usize {
        crate::testkit::check_causality(&self.trace())
    }

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
                    slot.version <= g.clock,
                    "{addr} has version {} above its shard's clock {}",
                    slot.version,
                    g.clock
                );
                assert!(addresses.insert(addr), "{addr} has two records");
                assert_eq!(place, self.pools.place(slot.addr), "place of {addr}");
                if slot.state != LeaseState::Declined {
                    assert!(slot.is_indexed(), "{addr} not indexed");
                }
                if slot.is_indexed() {
                    let key = ClientKey::from_bytes(g.records.key(idx));
                    assert_eq!(g.records.client(&key), Some(idx), "index of {addr}");
                }
                if is_held(slot.state) {
                    held += 1;
                    assert!(
                        heap.contains(&(slot.expires, slot.addr)),
                        "{addr} not in heap"
                    );
                }
                let Place::Dynamic { pool, off } = place else {
                    continue;
                };
                let c = &mut counts[pool.index()];
                match slot.state {
                    LeaseState::Offered => c.offered += 1,
                    LeaseState::Bound => c.bound += 1,
                    LeaseState::Declined => c.declined += 1,
                    LeaseState::Released | LeaseState::Expired => {
                        remembered[pool.index()].insert(off);
                    }
                }
                if is_held(slot.state) {
                    own(pool, off, "held record");
                }
            }
            assert_eq!(g.held, held, "held count");
            assert!(g.expiry.len() <= g.expiry_bound(), "expiry heap not pruned");
            assert_eq!(&*g.counts, &counts[..], "counts of shard {shard}");
            for (pool, layout) in self.pools.iter() {
                let free = &g.free[pool.index()];
                assert!(free.clean.is_disjoint(&free.remembered));
                assert_eq!(free.remembered, remembered[pool.index()], "remembered set");
                for off in free.clean.iter().chain(free.remembered.iter()) {
                    assert!(!layout.excluded.contains(off), "excluded offset {off} free");
                    assert!(u64::from(off) <= u64::from(layout.last - layout.first));
                    own(pool, off, "free");
                }
            }
        }
        for (pool, layout) in self.pools.iter() {
            assert_eq!(
                owned[pool.index()].len(),
                layout.total,
                "pool {pool} lost addresses"
            );
        }
    }
}
