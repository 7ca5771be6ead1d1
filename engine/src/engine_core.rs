//! The sharded engine, written once for both families: holding the shards, the offer loop
//! over `choose::step`, moving free addresses between shards, and the calls that are the
//! same to the letter for v4 and v6 (the requests and their answers are in `requests.rs`).
//!
//! [`Core`] is generic over a [`Family`] and monomorphised: [`crate::v4::Engine`] is
//! `Core<V4>` and [`crate::v6::Engine`] is `Core<V6>`. Each family's `engine.rs` implements
//! [`Family`] and `Ops` and adds what only it has (v4's `offer`, v6's `solicit` and
//! `owner`, each `new` and `bind`). The rules of sharding, lending and versions are in the
//! crate docs.

use std::fmt;
use std::ops::ControlFlow;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Mutex, MutexGuard};

use crate::choose::{self, EXHAUSTED_RECLAIM, LAZY_RECLAIM, MAX_BORROWS, Step, Tried};
use crate::common::{self, Avail, Counts, Give, Sharded};
use crate::ends::{self, Ends, Free as _};
use crate::lease::{LeaseState, Time};
use crate::pools::table;
pub use crate::replay::Restorer;
use crate::replay::{BulkShard, Replayer};
pub(crate) use crate::requests::Refused;
pub use crate::requests::{BindRequest, OfferRequest};

/// Most free addresses (resources) one borrow takes from a sibling.
const BORROW_CHUNK: u64 = 64;

/// Everything an engine's `new` needs, for its family's pool specs `S`: the v4
/// [`EngineConfig`](crate::v4::EngineConfig) and the v6 [`EngineConfig`](crate::v6::EngineConfig).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config<S> {
    /// Number of shards, normally one per worker core.
    pub shards: usize,
    /// The dynamic pools; a pool id is an index in this list. Pools must not overlap.
    pub pools: Vec<S>,
    /// Seconds an offer (v6: an advertise) holds its address or resource.
    pub offer_hold: u32,
    /// Seconds a declined address or resource stays quarantined.
    pub decline_probation: u32,
}

mod sealed {
    /// Only the crate's own families are a [`super::Family`].
    pub trait Sealed {}
}
pub(crate) use sealed::Sealed;

/// What makes [`Core`] a v4 or a v6 engine, as its callers see it: the types its public
/// methods take and give. Sealed: only v4 and v6 implement it.
pub trait Family: Sealed + Copy + fmt::Debug + 'static {
    /// The engine's name in `Debug`.
    const NAME: &'static str;
    /// Who asks: a client key or an IA key.
    type Key: ?Sized + fmt::Debug;
    /// An address (resource) as the caller names it.
    type Addr: Copy + Ord + fmt::Debug;
    /// A full lease record.
    type Lease;
    /// A change for the journal.
    type Event;
    /// A lease as a lookup shows it, without allocating.
    type View;
    /// Why a bind or a restore was refused.
    type BindError;
    /// A pool's number in the configuration.
    type Pool: Copy + PartialEq + fmt::Debug;
    /// A count of a pool's addresses: `u64` for v4, `u128` for v6 (a /64 has 2^64).
    type Count: Copy + Default + std::ops::AddAssign;
    /// What a bind gives a lease besides its client and address: v4's
    /// [`Grant`](crate::v4::Grant), v6's [`Grant`](crate::v6::Grant).
    type Grant<'a>: Copy + fmt::Debug;
    /// What an offer records of the client besides its key: v4's
    /// [`LeaseInfo`](crate::v4::LeaseInfo); nothing in v6.
    type Info<'a>: Copy + fmt::Debug;
}

/// Usage of one pool across all shards, for either family. `free + offered + bound +
/// declined == total` (Released and Expired addresses or resources are free).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolStats<P, N> {
    /// The pool.
    pub pool: P,
    /// Dynamic addresses (resources): the range minus excluded ones.
    pub total: N,
    /// Free in some shard (including Released/Expired ones remembered for a client).
    pub free: N,
    /// Held by an offer (v6: an advertise).
    pub offered: u64,
    /// Bound.
    pub bound: u64,
    /// Quarantined after a DECLINE.
    pub declined: u64,
    /// Released records remembered for their client (free, and counted in `free` too).
    pub released: u64,
    /// Expired records remembered for their client (free, and counted in `free` too).
    pub expired: u64,
}

/// Declares a family's marker type and its [`Family`] impl, over the names its module
/// defines alike (`Lease`, `LeaseEvent`, `LeaseView`, `BindError`, `PoolId`).
macro_rules! family {
    (
        $(#[$doc:meta])*
        $fam:ident {
            key: $key:ty, addr: $addr:ty, count: $count:ty,
            grant<$l:lifetime>: $grant:ty, info: $info:ty
        }
    ) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug)]
        pub enum $fam {}

        impl $crate::engine_core::Sealed for $fam {}

        impl $crate::engine_core::Family for $fam {
            const NAME: &'static str = "Engine";
            type Key = $key;
            type Addr = $addr;
            type Lease = Lease;
            type Event = LeaseEvent;
            type View = LeaseView;
            type BindError = BindError;
            type Pool = PoolId;
            type Count = $count;
            type Grant<$l> = $grant;
            type Info<$l> = $info;
        }
    };
}
pub(crate) use family;

/// Where an address sits in a family's pools.
pub(crate) type Place<F> = table::Place<<F as Family>::Pool, <F as Ops>::Off>;
/// A family's shard's name for an address (resource).
pub(crate) type Res<F> = <<F as Ops>::Shard as Sharded>::Res;
/// The state and times a family's record is given.
pub(crate) type Term<F> = <<F as Ops>::Shard as Ends>::Term;

/// The rest of a [`Family`], inside the crate: its shards and pools, and the shard-side
/// steps the shared code takes on them.
pub(crate) trait Ops: Family<Pool: table::Id> + Sized {
    type Shard: Ends<Fam = Self, Off = Self::Off> + BulkShard<Pools = Self::Pools>;
    type Pools;
    /// An offset in a pool.
    type Off: Copy;
    /// Free addresses a shard lends a sibling in one go.
    type Lent;
    /// What an offer returns: v4 the address, v6 the record's view.
    type Offered;

    fn pools_len(pools: &Self::Pools) -> usize;

    /// What a shard does after every call that may have changed it (v6 trims remembered
    /// records).
    fn settle(_: &mut Self::Shard) {}
    /// Events made but not yet handed out.
    fn pending(g: &mut Self::Shard) -> &mut Vec<Self::Event> {
        g.pending()
    }

    /// Gives `off` of `pool` up for a sibling if it is free here; else says what holds it.
    fn take_free(
        pools: &Self::Pools,
        g: &mut Self::Shard,
        pool: Self::Pool,
        off: Self::Off,
        now: Time,
    ) -> Give;
    /// Free addresses the shard has in `pool`.
    fn free_len(g: &Self::Shard, pool: Self::Pool) -> u128;
    /// Gives up a chunk of `pool`'s free addresses, at most `max`, to a sibling; `None` if
    /// it has none.
    fn lend(
        pools: &Self::Pools,
        g: &mut Self::Shard,
        pool: Self::Pool,
        max: u64,
    ) -> Option<Self::Lent>;
    /// Takes in what [`Ops::lend`] gave.
    fn receive(g: &mut Self::Shard, pool: Self::Pool, lent: Self::Lent);

    /// What [`Core::leases`] sorts by: the record's address.
    fn sort_key(lease: &Self::Lease) -> Self::Addr;
    /// The family's name for why a bind is refused.
    fn refused(why: Refused) -> Self::BindError;

    /// Where `addr` sits in the pools.
    fn place(pools: &Self::Pools, addr: Self::Addr) -> Place<Self>;
    /// The shard's name for `addr`, and back.
    fn res(addr: Self::Addr) -> Res<Self>;
    fn addr(res: Res<Self>) -> Self::Addr;
    /// The address at `off` of `pool`.
    fn res_at(pools: &Self::Pools, pool: Self::Pool, off: Self::Off) -> Res<Self>;
    /// The key's bytes, as the records keep them.
    fn key(key: &Self::Key) -> &[u8];
    /// Whether `pool` is one of the configuration's and may serve `key` (v6: of its kind).
    fn fits(pools: &Self::Pools, pool: Self::Pool, key: &Self::Key) -> bool;
    /// A free offset of `pool` for `key` in this shard, if it has one.
    fn next_free(
        pools: &Self::Pools,
        g: &Self::Shard,
        pool: Self::Pool,
        key: &Self::Key,
    ) -> Option<Self::Off>;
    /// Gives `res` at `place` to `key` with `term` (Offered or Bound), keeping `info`; see
    /// [`ends::hold`]. Returns the state of the client's record of `res` before, and the
    /// record's slab index.
    fn hold(
        g: &mut Self::Shard,
        at: (Res<Self>, Place<Self>),
        key: &Self::Key,
        info: Self::Info<'_>,
        term: Term<Self>,
    ) -> (Option<LeaseState>, u32);
    /// What an offer of the record at `idx` returns.
    fn offered(g: &Self::Shard, idx: u32) -> Self::Offered;
    /// The term and client details of a binding from `now` as `grant` says.
    fn bound<'a>(grant: Self::Grant<'a>, now: Time) -> (Term<Self>, Self::Info<'a>);

    /// Every pool and its number of dynamic addresses, in configuration order.
    fn totals(pools: &Self::Pools) -> impl Iterator<Item = (Self::Pool, Self::Count)>;
    /// The shard's free addresses in the pool at `index`, and its records' counts there.
    fn usage(g: &Self::Shard, index: usize) -> (Self::Count, Counts);
}

/// The in-memory lease state of one family, sharded across worker cores.
///
/// Worker `k` passes `shard = k` to every call; a call locks its own shard's mutex, and only
/// briefly a sibling's (never two at once) when it must borrow an address. It is
/// `Send + Sync`: share it in an `Arc`. Every method that takes a `shard` panics if
/// `shard >= self.shards()`.
#[allow(private_bounds)] // `Ops` is the crate's own: callers see only `Family`.
pub struct Core<F: Ops> {
    pub(crate) pools: F::Pools,
    pub(crate) offer_hold: u32,
    pub(crate) decline_probation: u32,
    pub(crate) shards: Box<[Mutex<F::Shard>]>,
    /// Taken by a request that gives a client a fixed address no record of its shard holds,
    /// from asking the siblings until the record is made: two shards never both give one.
    claims: Mutex<()>,
    /// Per pool, whether it waits ([`Core::set_waiting`]); read without a lock.
    waiting: Box<[AtomicBool]>,
}

#[allow(private_bounds)]
impl<F: Ops> fmt::Debug for Core<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct(F::NAME)
            .field("shards", &self.shards.len())
            .field("pools", &F::pools_len(&self.pools))
            .field("offer_hold", &self.offer_hold)
            .field("decline_probation", &self.decline_probation)
            .finish_non_exhaustive()
    }
}

#[allow(private_bounds)]
impl<F: Ops> Core<F> {
    /// Number of shards.
    pub fn shards(&self) -> usize {
        self.shards.len()
    }

    pub(crate) fn lock(&self, shard: usize) -> MutexGuard<'_, F::Shard> {
        common::lock(&self.shards, shard)
    }

    /// Makes `pool` wait (`true`), or stop waiting: while it waits, no free address
    /// (resource) of it goes to a client, while its clients' own offers and bindings go on
    /// (see the [crate docs](crate#a-pool-that-waits)). A pool out of range is ignored.
    pub fn set_waiting(&self, pool: F::Pool, waiting: bool) {
        if let Some(flag) = self.waiting.get(table::Id::index(pool)) {
            flag.store(waiting, Ordering::Relaxed);
        }
    }

    /// Whether `pool` waits ([`Core::set_waiting`]); `false` for a pool out of range.
    #[inline]
    pub fn is_waiting(&self, pool: F::Pool) -> bool {
        self.waiting
            .get(table::Id::index(pool))
            .is_some_and(|flag| flag.load(Ordering::Relaxed))
    }

    /// What `avail`, of an address (resource) at `place`, is to a client given its pool's
    /// wait: one free here or in a sibling is not to be had while the pool waits.
    #[inline]
    pub(crate) fn gate(&self, place: Place<F>, avail: Avail) -> Avail {
        match (avail, place.dynamic()) {
            (Avail::Free | Avail::Elsewhere, Some((pool, _))) if self.is_waiting(pool) => {
                Avail::HeldByOther
            }
            _ => avail,
        }
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
        events: &mut Vec<F::Event>,
        f: impl FnOnce(&mut F::Shard) -> R,
    ) -> R {
        let mut g = self.lock(shard);
        g.reclaim_due(now, LAZY_RECLAIM);
        let r = f(&mut g);
        F::settle(&mut g);
        events.append(g.pending());
        r
    }

    /// Makes the choice of [`choose`] for `o` in `shard`, fetching and borrowing from
    /// siblings as it asks; `None` when every candidate pool is exhausted. `usable` says
    /// which of `o`'s pools the client may borrow in.
    pub(crate) fn choose<O>(
        &self,
        shard: usize,
        o: &O,
        now: Time,
        usable: impl Fn(F::Pool) -> bool,
    ) -> Option<O::Done>
    where
        O: choose::Offer<Shard = F::Shard, Pool = F::Pool, Off = F::Off>,
    {
        let mut tried = Tried::default();
        let mut _claim = None;
        loop {
            let step = {
                let mut g = self.lock(shard);
                let step = choose::step(o, &mut g, now, &tried);
                F::settle(&mut g);
                step
            };
            match step {
                Step::Done(done) => return Some(done),
                Step::Probe(res) => {
                    _claim = Some(self.claim_fixed());
                    tried.reserved = true;
                    tried.reserved_held = self.fixed_elsewhere(shard, res, o.key(), now);
                }
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
                    if tried.borrows == MAX_BORROWS || !self.borrow(shard, o.pools(), &usable, now)
                    {
                        return None;
                    }
                    tried.borrows += 1;
                }
            }
        }
    }

    /// The claim a request holds while it gives a fixed address out (see `claims`). Taken
    /// with no shard locked.
    pub(crate) fn claim_fixed(&self) -> MutexGuard<'_, ()> {
        self.claims.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a sibling of `shard` holds fixed `res` ([`ends::holds_fixed`]), asked one at
    /// a time; if none does, `shard` observes their clocks, so that the record it makes
    /// next is newer than any a sibling kept of `res`.
    pub(crate) fn fixed_elsewhere(&self, shard: usize, res: Res<F>, key: &[u8], now: Time) -> bool {
        let mut clock = 0;
        for sibling in self.siblings(shard) {
            let mut g = self.lock(sibling);
            let held = ends::holds_fixed(&mut *g, res, key, now);
            F::settle(&mut g);
            if held {
                return true;
            }
            clock = clock.max(*g.clock());
        }
        observe(&mut *self.lock(shard), clock);
        false
    }

    /// Moves `off` of `pool` from whichever sibling has it free into `shard`; else says what
    /// holds it in the sibling that owns it.
    pub(crate) fn fetch(&self, shard: usize, pool: F::Pool, off: F::Off, now: Time) -> Give {
        for sibling in self.siblings(shard) {
            let mut g = self.lock(sibling);
            match F::take_free(&self.pools, &mut g, pool, off, now) {
                Give::Given => {
                    // Read under the lender's lock, after its last change to the address.
                    let clock = *g.clock();
                    drop(g);
                    let mut g = self.lock(shard);
                    observe(&mut *g, clock);
                    g.free(pool).take_back(off);
                    return Give::Given;
                }
                Give::NotHere => {}
                held => return held,
            }
        }
        Give::NotHere
    }

    /// Borrows a chunk of free addresses of the first `usable` pool of `pools` a sibling has
    /// any of, from the sibling with the most.
    fn borrow(
        &self,
        shard: usize,
        pools: &[F::Pool],
        usable: impl Fn(F::Pool) -> bool,
        now: Time,
    ) -> bool {
        for &pool in pools.iter().filter(|&&pool| usable(pool)) {
            let mut donors: Vec<(u128, usize)> = self
                .siblings(shard)
                .map(|s| {
                    let mut g = self.lock(s);
                    // The sibling's own expired records count as free; their events wait in
                    // its pending list for its worker.
                    g.reclaim_due(now, EXHAUSTED_RECLAIM);
                    F::settle(&mut g);
                    (F::free_len(&g, pool), s)
                })
                .filter(|&(free, _)| free > 0)
                .collect();
            donors.sort_unstable_by(|a, b| b.cmp(a));
            for (_, donor) in donors {
                let mut g = self.lock(donor);
                let lent = F::lend(&self.pools, &mut g, pool, BORROW_CHUNK);
                // Read under the lender's lock, after its last change to the addresses.
                let clock = *g.clock();
                drop(g);
                if let Some(lent) = lent {
                    let mut g = self.lock(shard);
                    observe(&mut *g, clock);
                    F::receive(&mut g, pool, lent);
                    return true;
                }
            }
        }
        false
    }

    /// Validates `cfg`'s shard count and puts the engine together from its validated
    /// `pools` and `new_shard`'s shard `s`.
    pub(crate) fn assemble<S>(
        cfg: &Config<S>,
        pools: F::Pools,
        new_shard: impl FnMut(usize) -> F::Shard,
    ) -> Self {
        let engine = Core {
            waiting: (0..F::pools_len(&pools))
                .map(|_| AtomicBool::new(false))
                .collect(),
            pools,
            offer_hold: cfg.offer_hold,
            decline_probation: cfg.decline_probation,
            shards: (0..cfg.shards).map(new_shard).map(Mutex::new).collect(),
            claims: Mutex::new(()),
        };
        #[cfg(test)]
        engine.share_trace();
        engine
    }

    /// RELEASE: only if `address` is bound to `client`. The record stays, Released, so the
    /// client gets the address back if it is still free. Returns whether it did anything.
    pub fn release(
        &self,
        shard: usize,
        client: &F::Key,
        address: F::Addr,
        now: Time,
        events: &mut Vec<F::Event>,
    ) -> bool {
        self.on_shard(shard, now, events, |g| {
            ends::release(g, F::res(address), F::key(client), now)
        })
    }

    /// DECLINE: only if `address` is offered (advertised) or bound to `client`. The address
    /// is quarantined until `now + decline_probation`; the client's next offer gets another.
    pub fn decline(
        &self,
        shard: usize,
        client: &F::Key,
        address: F::Addr,
        now: Time,
        events: &mut Vec<F::Event>,
    ) -> bool {
        let until = now.saturating_add(u64::from(self.decline_probation));
        self.on_shard(shard, now, events, |g| {
            ends::decline(g, F::res(address), F::key(client), now, until)
        })
    }

    /// The client's current record in this shard (any state, as last updated; a record whose
    /// time has passed shows until something reclaims it), without allocating.
    pub fn lookup(&self, shard: usize, client: &F::Key) -> Option<F::View> {
        let g = self.lock(shard);
        let idx = g.records().client_bytes(F::key(client))?;
        Some(g.view(idx))
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
        events: &mut Vec<F::Event>,
    ) -> usize {
        let mut g = self.lock(shard);
        let done = g.reclaim_due(now, budget);
        F::settle(&mut g);
        events.append(g.pending());
        done
    }

    /// Replay support: puts a lease record back, taking its address out of whichever shard
    /// holds it, and raises `shard`'s clock to at least the record's version. `shard` is the
    /// one the client is steered to; the record's pool is recomputed from the current
    /// configuration.
    ///
    /// Give it the journal's fold (per address, the record with the highest version) or a
    /// snapshot ([`Core::leases`]), one record per address, in any order: the result does not
    /// depend on the order. A record of an address that already has one at least as new is
    /// refused with `Err(Taken)` (and an older one is replaced), so duplicates do no harm.
    ///
    /// A client keeps one current record per shard: its binding if it has one, else its
    /// record with the highest version. A quarantine that is not current stays (it outlives
    /// the client moving on); any other record that is not current is dropped, its address
    /// free. So the restored Bound and Declined records are exactly those of the engine that
    /// emitted the journal; offers are not journaled, and Released and Expired memories may
    /// differ where the journal no longer says which came last.
    ///
    /// Restore before serving, then call [`Core::advance_versions`] with the highest version
    /// in the journal. It is safe alongside other calls but does not order itself against
    /// them. At startup, the engine's `restorer` does the same for a whole journal faster.
    pub fn restore(&self, shard: usize, lease: F::Lease) -> Result<(), F::BindError> {
        match crate::replay::restore_one(&mut &self.shards[..], &self.pools, shard, &lease) {
            true => Ok(()),
            false => Err(F::refused(Refused::Taken)),
        }
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
    pub fn leases(&self) -> Vec<F::Lease> {
        common::leases(&self.shards, F::sort_key)
    }

    /// Replay in bulk: a [`Restorer`] that takes the journal's records one by one with its
    /// `add` (v4's [`add`](crate::v4::Restorer::add), v6's by IA and resource) and puts them
    /// all in place at [`Restorer::finish`]. `expected` is how many records are coming (a
    /// hint: room is reserved for them).
    ///
    /// The result is the one [`Core::restore`] gives for the same records in any order:
    /// give it the journal's fold or a snapshot, one record per address. Of several records of
    /// one address, the one with the highest version stays and the others are refused (or
    /// replaced): the journal's own fold. A client keeps one current record per shard, its
    /// binding if it has one, else its record with the highest version; quarantines that are
    /// not current stay, other records that are not current are dropped and their addresses
    /// are free. Each shard's clock ends at least at the highest version given to it, and at
    /// least at the clock of every shard it took an address from.
    ///
    /// On a fresh engine (no records, every address still in the shard `new` gave it) it
    /// does not look anything up per record: `add` appends the record to its shard, and
    /// `finish` folds, moves addresses to the shards their records went to and indexes each
    /// shard in one pass (v4 ordered by hash bucket, taking the claimed addresses out of the
    /// free sets as one difference per shard and pool, on scoped threads in parallel). On an
    /// engine that is not fresh, `add` does what [`Core::restore`] does.
    ///
    /// It locks every shard until `finish`, so every other call on the engine waits for it
    /// (and one made by the thread that holds the restorer deadlocks): finish, then call
    /// [`Core::advance_versions`] and serve. `finish` uses up to one thread per shard for a
    /// moment (below 65536 records, none).
    ///
    /// ```
    /// # use lessor_engine::v4::*;
    /// # use std::net::Ipv4Addr;
    /// # let cfg = || EngineConfig {
    /// #     shards: 2,
    /// #     pools: vec![PoolSpec {
    /// #         first: Ipv4Addr::new(10, 0, 0, 10),
    /// #         last: Ipv4Addr::new(10, 0, 0, 200),
    /// #         excluded: vec![],
    /// #     }],
    /// #     offer_hold: 30,
    /// #     decline_probation: 3600,
    /// # };
    /// # let running = Engine::new(cfg())?;
    /// # let client = ClientKey::hardware(1, &[2, 0, 0, 0, 0, 1]);
    /// # let info = LeaseInfo { hw: HwAddr::new(1, &[2, 0, 0, 0, 0, 1]).unwrap(), hostname: Some("pc") };
    /// # let req = BindRequest { client: &client, address: Ipv4Addr::new(10, 0, 0, 10), pools: &[PoolId(0)], reserved: false, grant: Grant { lease_time: 3600, info } };
    /// # running.bind(0, &req, 1_700_000_000, &mut Vec::new()).unwrap();
    /// // What the journal's replay hands over: per address the newest record, and the shard
    /// // each record's client is steered to.
    /// let journal: Vec<(usize, Lease)> = running.leases().into_iter().map(|l| (0, l)).collect();
    /// let engine = Engine::new(cfg())?;
    /// let mut restorer = engine.restorer(journal.len());
    /// for (shard, lease) in journal {
    ///     restorer.add(shard, lease).unwrap();
    /// }
    /// let report = restorer.finish();
    /// assert_eq!((report.records, report.refused), (1, 0));
    /// engine.advance_versions(running.max_version());
    /// assert_eq!(engine.leases(), running.leases());
    /// # Ok::<(), lessor_engine::v4::ConfigError>(())
    /// ```
    pub fn restorer(&self, expected: usize) -> Restorer<'_, F> {
        Restorer(Replayer::new(&self.pools, &self.shards, expected))
    }

    /// Calls `visit` with every lease record of every shard, shard by shard, taking each
    /// shard's lock for at most `chunk` records at a time (and never while `visit` runs).
    ///
    /// Not a snapshot: a record that changes during the walk may be seen as it was or as
    /// it is, and one that moves within its shard's slab may be seen twice or not at all.
    /// Records come in no particular order. `visit` stops the walk by returning `Break`.
    pub fn visit_leases(&self, chunk: usize, mut visit: impl FnMut(F::Lease) -> ControlFlow<()>) {
        let chunk = chunk.max(1);
        let mut buf = Vec::with_capacity(chunk);
        for shard in 0..self.shards.len() {
            let mut from = Some(0);
            while let Some(start) = from {
                from = self.lock(shard).leases_chunk(start, chunk, &mut buf);
                for lease in buf.drain(..) {
                    if visit(lease).is_break() {
                        return;
                    }
                }
            }
        }
    }

    /// Usage of every pool, in configuration order.
    pub fn stats(&self) -> Vec<PoolStats<F::Pool, F::Count>> {
        let mut stats: Vec<_> = F::totals(&self.pools)
            .map(|(pool, total)| PoolStats {
                pool,
                total,
                free: F::Count::default(),
                offered: 0,
                bound: 0,
                declined: 0,
                released: 0,
                expired: 0,
            })
            .collect();
        for shard in 0..self.shards.len() {
            let g = self.lock(shard);
            for (i, stat) in stats.iter_mut().enumerate() {
                let (free, counts) = F::usage(&g, i);
                stat.free += free;
                stat.offered += counts.offered;
                stat.bound += counts.bound;
                stat.declined += counts.declined;
                stat.released += counts.released;
                stat.expired += counts.expired;
            }
        }
        stats
    }
}

#[cfg(test)]
#[allow(private_bounds)]
impl<F: Ops> Core<F> {
    pub(crate) fn pools(&self) -> &F::Pools {
        &self.pools
    }

    /// Gives every shard the same trace; each family's `new` calls it last.
    pub(crate) fn share_trace(&self) {
        common::share_trace(&self.shards, F::Shard::trace);
    }

    /// Every event of every shard as it was made: `(address, version)` in the real order of
    /// the changes (each is logged under its shard's lock), which hand-out order is not.
    pub(crate) fn trace(&self) -> Vec<(F::Addr, u64)> {
        let trace = self.lock(0).trace().lock().unwrap().clone();
        trace
            .into_iter()
            .map(|(res, v)| (F::addr(res), v))
            .collect()
    }

    /// Checks the rule replay rests on: for every address, the versions of its events
    /// strictly increase in the real order of the changes. Returns how many events it saw.
    pub(crate) fn check_causality(&self) -> usize
    where
        F::Addr: std::hash::Hash + fmt::Display,
    {
        crate::testkit::check_causality(&self.trace())
    }
}

/// Called after taking addresses from a sibling whose clock was `sibling`, before any change
/// to them: every later change here is newer than every change the sibling made.
pub(crate) fn observe<S: Sharded>(g: &mut S, sibling: u64) {
    let clock = g.clock();
    *clock = (*clock).max(sibling) + 1;
}
