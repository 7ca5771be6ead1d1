//! Property test of both engine families: random operation sequences against a small model,
//! with every invariant checked after every step (the roaring-rs `bitmap/proptests.rs`
//! approach). One generic body, [`run`], instantiated by `proptests.rs` (v4) and
//! `v6/proptests.rs` (v6) through [`Family`], so the two families are checked by the same
//! rules and cannot drift apart unseen.
//!
//! Each case: two tiny pools over 1 to 4 shards, with exclusions and a static assignment in
//! a pool and one outside every pool, so that exhaustion and lending between shards happen
//! all the time. Clients are numbered `0..CLIENTS` (v4 clients, v6 IAs).
//!
//! The model knows only what a server could: which client holds which offer or binding
//! until when, and which resources are quarantined. From that it predicts every outcome:
//! which bind succeeds and how (or why not), which release/decline does something, which
//! resource an offer must return (reservation, own resource, remembered resource, requested
//! one) or at least may return, and when the candidate pools are exhausted. After every
//! operation the engine's live records must match the model exactly, and the engine's
//! `check_invariants` must pass. At the end the engine's snapshot must restore exactly (one
//! by one and through the restorer), and its events, reordered as the journal may (each
//! shard's in order but shards interleaved arbitrarily, or shuffled entirely), folded to the
//! newest version per resource and restored in that order, must rebuild its bindings and
//! quarantines exactly. Causality is checked directly too: every resource's versions
//! strictly increase in the real order of its changes (the engine's test-only trace, since a
//! delayed event is handed out after later changes), and each shard hands its events out in
//! version order.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use proptest::prelude::*;

use crate::engine_core::{BindRequest, Core, OfferRequest, Ops};
use crate::lease::{LeaseState, Time};
use crate::replay::RestoreReport;
use crate::testkit::{Event, Journaled, Reorder, check_versions, fold};

/// How long an offer holds, in the tests of both families.
pub(crate) const HOLD: u32 = 30;
/// How long a declined resource stays quarantined.
pub(crate) const PROBATION: u32 = 50;

/// Where a resource lies, as the engine's pools see it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Spot<P> {
    /// Its pool (also for one excluded from a pool), if any.
    pub(crate) pool: Option<P>,
    /// Handed out dynamically (else fixed: excluded or outside every pool).
    pub(crate) dynamic: bool,
}

/// Why the model expects a bind to be refused, most decisive first.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refusal {
    NotInPool,
    /// Somebody's static assignment.
    Fixed,
    Quarantined,
    HeldByOther,
}

/// What a lease view shows, for either family.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Seen<R, P> {
    pub(crate) res: R,
    pub(crate) pool: Option<P>,
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) expires: Time,
    /// The preferred lifetime, where the family has one.
    pub(crate) preferred: Option<u32>,
}

/// Usage of one pool of family `F`.
pub(crate) type Stats<F> = crate::engine_core::PoolStats<
    <F as crate::engine_core::Family>::Pool,
    <F as crate::engine_core::Family>::Count,
>;

/// What an offer of family `F` records of the client.
pub(crate) type Info<'a, F> = <F as crate::engine_core::Family>::Info<'a>;
/// What a bind of family `F` gives.
pub(crate) type Grant<'a, F> = <F as crate::engine_core::Family>::Grant<'a>;

/// A pool's counts, widened to one type for both families.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Counts<P> {
    pub(crate) pool: P,
    pub(crate) total: u128,
    pub(crate) free: u128,
    pub(crate) offered: u128,
    pub(crate) bound: u128,
    pub(crate) declined: u128,
}

/// What the generic test needs of a family: its setup, its engine's calls, and the checks
/// only it has (run inside its calls).
pub(crate) trait Family:
    Ops<
        Key: Sized,
        Addr: std::hash::Hash + std::fmt::Display,
        Pool: Eq + 'static,
        Lease: Journaled<Res = Self::Addr> + PartialEq + Debug,
        Event: Event<Lease = Self::Lease>,
        View: Copy + PartialEq + Debug,
        BindError: Copy + PartialEq + Debug,
        Count: Into<u128> + PartialEq + Debug,
    >
{
    type Setup: Clone + Debug;

    const CLIENTS: u8;
    /// The candidate pool lists an operation picks from.
    const CANDIDATES: [&'static [Self::Pool]; 5];

    fn setup() -> BoxedStrategy<Self::Setup>;
    fn shards(setup: &Self::Setup) -> usize;
    fn engine(setup: &Self::Setup) -> Core<Self>;
    /// Every resource the operations pick from.
    fn universe(setup: &Self::Setup) -> Vec<Self::Addr>;
    fn reservation(setup: &Self::Setup, c: u8) -> Option<Self::Addr>;
    /// The shard client `c` always reaches, as the server's steering guarantees.
    fn shard(setup: &Self::Setup, engine: &Core<Self>, c: u8) -> usize;
    fn client_of(lease: &Self::Lease) -> u8;
    fn spot(engine: &Core<Self>, r: Self::Addr) -> Spot<Self::Pool>;
    /// Whether `pool` may serve client `c` when `pools` are its candidates.
    fn serves(pool: Self::Pool, pools: &[Self::Pool], c: u8) -> bool;
    fn refusal(why: Refusal) -> Self::BindError;

    /// What a view shows.
    fn view(v: &Self::View) -> Seen<Self::Addr, Self::Pool>;
    fn lookup(engine: &Core<Self>, shard: usize, c: u8) -> Option<Self::View>;
    /// Client `c`'s key.
    fn client(c: u8) -> Self::Key;
    /// What an offer to client `c` records of it.
    fn info<'a>(c: u8) -> Info<'a, Self>;
    /// What a bind by client `c` gives: `times` is `(lease_time, preferred)`, the latter
    /// where the family has it.
    fn grant<'a>(c: u8, times: (u32, u32)) -> Grant<'a, Self>;
    /// The resource of what an offer returned, after the family's own checks of it (`bound`
    /// is what the model says the client holds).
    fn check_offer(
        engine: &Core<Self>,
        offered: Self::Offered,
        bound: Option<Self::Addr>,
        now: Time,
    ) -> Self::Addr;
    /// RELEASE (or DECLINE, if `decline`) of `r` by client `c`: whether it did something.
    fn end(
        e: &Core<Self>,
        shard: usize,
        held: (u8, Self::Addr),
        decline: bool,
        now: Time,
        ev: &mut Vec<Self::Event>,
    ) -> bool;
    fn reclaim(
        e: &Core<Self>,
        shard: usize,
        now: Time,
        budget: usize,
        ev: &mut Vec<Self::Event>,
    ) -> usize;

    fn check_invariants(engine: &Core<Self>);
    fn check_causality(engine: &Core<Self>) -> usize;
    fn trace(engine: &Core<Self>) -> Vec<(Self::Addr, u64)>;
    fn max_version(engine: &Core<Self>) -> u64;
    fn advance_versions(engine: &Core<Self>, floor: u64);
    fn leases(engine: &Core<Self>) -> Vec<Self::Lease>;
    fn stats(engine: &Core<Self>) -> Vec<Stats<Self>>;
    fn counts(stats: &Stats<Self>) -> Counts<Self::Pool>;
    /// Restores one record; panics if the engine refuses it.
    fn restore(engine: &Core<Self>, shard: usize, lease: Self::Lease);
    /// Restores `records` through the restorer, owned and borrowed alternately.
    fn restore_bulk<'a>(
        engine: &Core<Self>,
        records: impl IntoIterator<Item = (usize, &'a Self::Lease)>,
    ) -> (RestoreReport, u64)
    where
        Self::Lease: 'a;
}

#[derive(Clone, Copy, Debug)]
pub(crate) enum Pick {
    /// The client's current record's resource (else the first of the universe).
    Current,
    /// A resource of the universe (index modulo its length).
    Any(usize),
}

#[derive(Clone, Debug)]
pub(crate) enum Op {
    /// DISCOVER or SOLICIT.
    Offer {
        client: u8,
        pools: usize,
        requested: Option<Pick>,
    },
    Bind {
        client: u8,
        pick: Pick,
        pools: usize,
        lease_time: u32,
        /// The preferred lifetime, for v6.
        preferred: u32,
    },
    Release {
        client: u8,
        pick: Pick,
    },
    Decline {
        client: u8,
        pick: Pick,
    },
    Reclaim {
        shard: usize,
        budget: usize,
    },
    Tick(u64),
}

fn pick() -> impl Strategy<Value = Pick> {
    prop_oneof![Just(Pick::Current), any::<usize>().prop_map(Pick::Any)]
}

/// The operations, over `clients` clients.
pub(crate) fn op(clients: u8) -> impl Strategy<Value = Op> {
    let client = 0..clients;
    prop_oneof![
        4 => (client.clone(), 0..5usize, proptest::option::of(pick()))
            .prop_map(|(client, pools, requested)| Op::Offer { client, pools, requested }),
        4 => (client.clone(), pick(), 0..5usize, 0..120u32, 0..150u32)
            .prop_map(|(client, pick, pools, lease_time, preferred)| {
                Op::Bind { client, pick, pools, lease_time, preferred }
            }),
        1 => (client.clone(), pick()).prop_map(|(client, pick)| Op::Release { client, pick }),
        1 => (client, pick()).prop_map(|(client, pick)| Op::Decline { client, pick }),
        1 => (0..4usize, 0..4usize).prop_map(|(shard, budget)| Op::Reclaim { shard, budget }),
        2 => (0..40u64).prop_map(Op::Tick),
    ]
}

/// One case: runs `ops` from `setup`, checking after each, then the restart checks.
pub(crate) fn run<F: Family>(setup: F::Setup, ops: &[Op], reorder: &Reorder) {
    let mut h = Harness::<F>::new(setup);
    for op in ops {
        h.step(op);
    }
    h.check_restart(reorder);
}

/// What a server could know: live offers and bindings per client, quarantines.
type Model<R> = crate::testkit::Model<R>;

struct Harness<F: Family> {
    setup: F::Setup,
    universe: Vec<F::Addr>,
    engine: Core<F>,
    model: Model<F::Addr>,
    /// Every event in hand-out order, with the shard that handed it out.
    events: Vec<(usize, F::Event)>,
}

impl<F: Family> Harness<F> {
    fn new(setup: F::Setup) -> Self {
        Self {
            universe: F::universe(&setup),
            engine: F::engine(&setup),
            setup,
            model: Model::new(F::CLIENTS),
            events: Vec::new(),
        }
    }

    fn shards(&self) -> usize {
        F::shards(&self.setup)
    }

    fn shard(&self, c: u8) -> usize {
        F::shard(&self.setup, &self.engine, c)
    }

    fn lease_shard(&self, lease: &F::Lease) -> usize {
        self.shard(F::client_of(lease))
    }

    /// Runs `call` on `shard` and records the events it hands out.
    fn with_events<R>(
        &mut self,
        shard: usize,
        call: impl FnOnce(&Core<F>, &mut Vec<F::Event>) -> R,
    ) -> R {
        let mut out = Vec::new();
        let r = call(&self.engine, &mut out);
        self.events.extend(out.into_iter().map(|e| (shard, e)));
        r
    }

    fn resolve(&self, c: u8, pick: Pick) -> F::Addr {
        match pick {
            Pick::Current => F::lookup(&self.engine, self.shard(c), c)
                .map_or(self.universe[0], |v| F::view(&v).res),
            Pick::Any(i) => self.universe[i % self.universe.len()],
        }
    }

    fn dynamic_in(&self, r: F::Addr, pools: &[F::Pool], c: u8) -> bool {
        let spot = F::spot(&self.engine, r);
        spot.dynamic && spot.pool.is_some_and(|p| F::serves(p, pools, c))
    }

    fn step(&mut self, op: &Op) {
        let now = self.model.now;
        match *op {
            Op::Tick(d) => self.model.now += d,
            Op::Reclaim { shard, budget } => {
                let shard = shard % self.shards();
                let n = self.with_events(shard, |e, ev| F::reclaim(e, shard, now, budget, ev));
                assert!(n <= budget);
            }
            Op::Offer {
                client,
                pools,
                requested,
            } => self.offer(client, F::CANDIDATES[pools], requested),
            Op::Bind {
                client,
                pick,
                pools,
                lease_time,
                preferred,
            } => self.bind(client, pick, F::CANDIDATES[pools], (lease_time, preferred)),
            Op::Release { client, pick } => {
                let r = self.resolve(client, pick);
                let expected = self.model.bound_to(client) == Some(r);
                let shard = self.shard(client);
                let done =
                    self.with_events(shard, |e, ev| F::end(e, shard, (client, r), false, now, ev));
                assert_eq!(done, expected, "release {r} by {client}");
                if done {
                    self.model.bound.remove(&client);
                }
            }
            Op::Decline { client, pick } => {
                let r = self.resolve(client, pick);
                let m = &self.model;
                let expected = m.bound_to(client) == Some(r) || m.offered_to(client) == Some(r);
                let shard = self.shard(client);
                let done =
                    self.with_events(shard, |e, ev| F::end(e, shard, (client, r), true, now, ev));
                assert_eq!(done, expected, "decline {r} by {client}");
                if done {
                    self.model.bound.remove(&client);
                    self.model.offered.remove(&client);
                    self.model.quarantine.insert(r, now + u64::from(PROBATION));
                }
            }
        }
        self.check();
    }

    fn offer(&mut self, c: u8, pools: &[F::Pool], requested: Option<Pick>) {
        let m = &self.model;
        let now = m.now;
        let shard = self.shard(c);
        let requested = requested.map(|r| self.resolve(c, r));
        let reserved = F::reservation(&self.setup, c);
        let before = F::lookup(&self.engine, shard, c);
        let remembered = before
            .map(|v| F::view(&v))
            .filter(|seen| {
                matches!(seen.state, LeaseState::Released | LeaseState::Expired)
                    || (seen.state == LeaseState::Bound && seen.expires <= now)
            })
            .map(|seen| seen.res);
        let own = |r: Option<F::Addr>| r.filter(|&r| self.dynamic_in(r, pools, c));
        // What the engine must offer, if the model can tell; else the set it may offer from.
        let must: Option<F::Addr> = reserved
            .filter(|&r| !m.quarantined(r))
            .or_else(|| own(m.bound_to(c)))
            .or_else(|| own(m.offered_to(c)))
            .or_else(|| own(remembered))
            .or_else(|| {
                requested.filter(|&r| self.dynamic_in(r, pools, c) && m.available_to(r, c))
            });
        let may: BTreeSet<F::Addr> = self
            .universe
            .iter()
            .copied()
            .filter(|&r| self.dynamic_in(r, pools, c) && m.available_to(r, c))
            .collect();

        let bound = m.bound_to(c);
        let key = F::client(c);
        let req = OfferRequest {
            client: &key,
            pools,
            reserved,
            requested,
            info: F::info(c),
        };
        let got = self
            .engine
            .offer_one(shard, &req, now)
            .map(|o| F::check_offer(&self.engine, o, bound, now));
        match (got, must) {
            (Some(r), Some(expected)) => assert_eq!(r, expected, "offer to {c}"),
            (Some(r), None) => assert!(may.contains(&r), "offer of {r} to {c}: may {may:?}"),
            (None, None) => {
                assert!(may.is_empty(), "exhausted for {c} but {may:?} free");
                for stat in F::stats(&self.engine).iter().map(F::counts) {
                    if F::serves(stat.pool, pools, c) {
                        assert_eq!(stat.free, 0, "exhausted with free resources");
                    }
                }
            }
            (None, Some(expected)) => panic!("offer to {c}: nothing, expected {expected}"),
        }
        if let Some(r) = got.filter(|&r| bound != Some(r)) {
            // The client moved on from any binding it had: DISCOVER means it uses none.
            self.model.bound.remove(&c);
            self.model.offered.insert(c, (r, now + u64::from(HOLD)));
        }
    }

    fn bind(&mut self, c: u8, pick: Pick, pools: &[F::Pool], times: (u32, u32)) {
        let m = &self.model;
        let now = m.now;
        let r = self.resolve(c, pick);
        let reserved = F::reservation(&self.setup, c) == Some(r);
        let spot = F::spot(&self.engine, r);
        let renew = m.bound_to(c) == Some(r);
        let own = renew || m.offered_to(c) == Some(r);
        let refusal = if !reserved && !spot.pool.is_some_and(|p| F::serves(p, pools, c)) {
            Some(Refusal::NotInPool)
        } else if !spot.dynamic && !reserved {
            Some(Refusal::Fixed)
        } else if m.quarantined(r) {
            Some(Refusal::Quarantined)
        } else if !own && m.held_by_other(r, c) {
            Some(Refusal::HeldByOther)
        } else {
            None
        };
        let expected = refusal.map_or(Ok(()), |why| Err(F::refusal(why)));
        let shard = self.shard(c);
        let got = self.with_events(shard, |e, ev| {
            let key = F::client(c);
            let req = BindRequest {
                client: &key,
                address: r,
                pools,
                reserved,
                grant: F::grant(c, times),
            };
            e.bind(shard, &req, now, ev)
        });
        assert_eq!(
            got.map(|_| ()),
            expected,
            "bind {r} by {c} ({reserved}, {spot:?})"
        );
        if let Ok(view) = got {
            let (lease_time, preferred) = times;
            let expires = now + u64::from(lease_time);
            let seen = Seen {
                res: r,
                pool: spot.pool,
                state: LeaseState::Bound,
                starts: now,
                expires,
                preferred: F::view(&view).preferred.map(|_| preferred.min(lease_time)),
            };
            assert_eq!(F::view(&view), seen);
            self.model
                .bound(&self.events, shard, (c, r), renew, expires, F::client_of);
        }
    }

    /// The engine's live records are exactly the model's, and every invariant holds.
    fn check(&self) {
        F::check_invariants(&self.engine);
        let now = self.model.now;
        let mut live = BTreeMap::new();
        for lease in F::leases(&self.engine) {
            let c = F::client_of(&lease);
            if !F::spot(&self.engine, lease.res()).dynamic {
                assert_eq!(
                    F::reservation(&self.setup, c),
                    Some(lease.res()),
                    "fixed resource held by a client it is not reserved for"
                );
            }
            if crate::common::is_held(lease.state()) && lease.expires() > now {
                live.insert(lease.res(), (lease.state(), c, lease.expires()));
            }
        }
        let model = self.model.expected(&live);
        assert_eq!(live, model, "live records at {now}");
        for s in F::stats(&self.engine).iter().map(F::counts) {
            assert_eq!(s.free + s.offered + s.bound + s.declined, s.total, "{s:?}");
        }
    }

    /// Every resource's versions rise in the real order of its changes; each shard hands
    /// out its events in version order; what was handed out is what was made.
    fn check_versions(&self) {
        check_versions(
            &self.events,
            self.shards(),
            F::check_causality(&self.engine),
            F::trace(&self.engine),
            F::max_version(&self.engine),
        );
    }

    /// A fresh engine with `records` restored, each into its client's shard, one by one
    /// or through the restorer; its invariants hold.
    fn replay<'a>(&self, records: impl IntoIterator<Item = &'a F::Lease>, bulk: bool) -> Core<F>
    where
        F::Lease: 'a,
    {
        let engine = F::engine(&self.setup);
        if bulk {
            let records = records.into_iter().map(|l| (self.lease_shard(l), l));
            let (report, added) = F::restore_bulk(&engine, records);
            assert!(report.bulk);
            assert_eq!(report.added + report.refused, added);
        } else {
            for lease in records {
                F::restore(&engine, self.lease_shard(lease), lease.clone());
                F::check_invariants(&engine);
            }
        }
        F::check_invariants(&engine);
        engine
    }

    fn lookups(&self, engine: &Core<F>) -> Vec<Option<F::View>> {
        (0..F::CLIENTS)
            .map(|c| F::lookup(engine, self.shard(c), c))
            .collect()
    }

    /// A snapshot restores exactly; the events, reordered as the journal may and folded,
    /// rebuild bindings and quarantines exactly.
    fn check_restart(&mut self, reorder: &Reorder) {
        let now = self.model.now;
        for shard in 0..self.shards() {
            self.with_events(shard, |e, ev| F::reclaim(e, shard, now, 0, ev));
        }
        self.check_versions();

        let snapshot = F::leases(&self.engine);
        let restored = [false, true].map(|bulk| {
            let fresh = self.replay(snapshot.iter().rev(), bulk);
            assert_eq!(
                F::leases(&fresh),
                snapshot,
                "snapshot restore, bulk: {bulk}"
            );
            assert_eq!(F::stats(&fresh), F::stats(&self.engine));
            fresh
        });
        // (A quarantine the client moved on from is its current record again after a
        // restore if its newer record was an offer, which is not kept.)
        assert_eq!(self.lookups(&restored[0]), self.lookups(&restored[1]));

        let holds = |e: &Core<F>| {
            F::leases(e)
                .into_iter()
                .filter(|l| matches!(l.state(), LeaseState::Bound | LeaseState::Declined))
                .collect::<Vec<_>>()
        };
        let usage = |e: &Core<F>| {
            F::stats(e)
                .iter()
                .map(F::counts)
                .map(|s| (s.free + s.offered, s.bound, s.declined))
                .collect::<Vec<_>>()
        };
        let orders = reorder.journals(&self.events, self.shards());
        let top = F::max_version(&self.engine);
        for (name, journal) in orders {
            assert_eq!(journal.len(), self.events.len());
            // Panics on a version tie between two records of one resource.
            let folded = fold(&journal);
            let replayed = self.replay(&folded, false);
            assert_eq!(holds(&replayed), holds(&self.engine), "{name}");
            assert_eq!(usage(&replayed), usage(&self.engine), "{name}");
            // Through the restorer: the same state exactly, memories and client index too.
            let bulk = self.replay(&folded, true);
            assert_eq!(F::leases(&bulk), F::leases(&replayed), "{name}, bulk");
            assert_eq!(F::stats(&bulk), F::stats(&replayed), "{name}, bulk");
            let versions = [&bulk, &replayed].map(F::max_version);
            assert_eq!(versions[0], versions[1], "{name}, bulk");
            assert_eq!(self.lookups(&bulk), self.lookups(&replayed), "{name}, bulk");
            // Unfolded, the restorer folds by itself: the newest record of each resource.
            let unfolded = self.replay(&journal, true);
            assert_eq!(
                F::leases(&unfolded),
                F::leases(&replayed),
                "{name}, unfolded"
            );
            assert_eq!(F::stats(&unfolded), F::stats(&replayed), "{name}, unfolded");
            let journal_top = folded.iter().map(|l| l.version()).max().unwrap_or(0);
            assert_eq!(F::max_version(&replayed), journal_top, "{name}");
            F::advance_versions(&replayed, top);
            assert_eq!(F::max_version(&replayed), top);
        }
    }
}

/// Writes a family's [`Family`] impl and its property test: the associated types, the
/// candidate pool lists, and every call that reads the same in both families, so that
/// `proptests.rs` and `v6/proptests.rs` hold only what differs (setup, keys, what a view
/// and an offer show).
///
/// `$fam` is the engine's family; the invoking module provides `Setup` (with `shards`,
/// `engine()`, `universe()` and `reservation(c)`), `setup()`, `key(c)`, `client_of(&key)`,
/// `Engine`, `PoolId` and `Place`.
macro_rules! family {
    (
        $fam:ty, test $test:ident, cases $cases:expr;
        $($items:item)*
    ) => {
        impl $crate::model::Family for $fam {
            type Setup = Setup;

            const CLIENTS: u8 = 8;
            const CANDIDATES: [&'static [PoolId]; 5] = [
                &[],
                &[PoolId(0)],
                &[PoolId(1)],
                &[PoolId(0), PoolId(1)],
                &[PoolId(1), PoolId(0)],
            ];

            fn setup() -> BoxedStrategy<Setup> {
                setup().boxed()
            }
            fn shards(setup: &Setup) -> usize {
                setup.shards
            }
            fn engine(setup: &Setup) -> Engine {
                setup.engine()
            }
            fn universe(setup: &Setup) -> Vec<Self::Addr> {
                setup.universe()
            }
            fn reservation(setup: &Setup, c: u8) -> Option<Self::Addr> {
                setup.reservation(c)
            }
            fn client_of(lease: &Self::Lease) -> u8 {
                client_of(&lease.client)
            }
            fn spot(engine: &Engine, r: Self::Addr) -> $crate::model::Spot<PoolId> {
                let place = engine.pools().place(r.into());
                $crate::model::Spot {
                    pool: place.pool(),
                    dynamic: matches!(place, Place::Dynamic { .. }),
                }
            }
            fn client(c: u8) -> Self::Key {
                key(c)
            }
            fn lookup(engine: &Engine, shard: usize, c: u8) -> Option<Self::View> {
                engine.lookup(shard, &key(c))
            }
            fn end(
                e: &Engine,
                shard: usize,
                (c, r): (u8, Self::Addr),
                decline: bool,
                now: Time,
                ev: &mut Vec<Self::Event>,
            ) -> bool {
                match decline {
                    false => e.release(shard, &key(c), r, now, ev),
                    true => e.decline(shard, &key(c), r, now, ev),
                }
            }
            fn reclaim(
                e: &Engine,
                shard: usize,
                now: Time,
                budget: usize,
                ev: &mut Vec<Self::Event>,
            ) -> usize {
                e.reclaim(shard, now, budget, ev)
            }

            fn check_invariants(engine: &Engine) {
                engine.check_invariants();
            }
            fn check_causality(engine: &Engine) -> usize {
                engine.check_causality()
            }
            fn trace(engine: &Engine) -> Vec<(Self::Addr, u64)> {
                engine.trace()
            }
            fn max_version(engine: &Engine) -> u64 {
                engine.max_version()
            }
            fn advance_versions(engine: &Engine, floor: u64) {
                engine.advance_versions(floor);
            }
            fn leases(engine: &Engine) -> Vec<Self::Lease> {
                engine.leases()
            }
            fn stats(engine: &Engine) -> Vec<$crate::model::Stats<Self>> {
                engine.stats()
            }
            fn counts(s: &$crate::model::Stats<Self>) -> $crate::model::Counts<PoolId> {
                $crate::model::Counts {
                    pool: s.pool,
                    total: s.total.into(),
                    free: s.free.into(),
                    offered: s.offered.into(),
                    bound: s.bound.into(),
                    declined: s.declined.into(),
                }
            }
            fn restore(engine: &Engine, shard: usize, lease: Self::Lease) {
                engine
                    .restore(shard, lease.clone())
                    .unwrap_or_else(|e| panic!("restore {lease:?}: {e}"));
            }
            fn restore_bulk<'a>(
                engine: &Engine,
                records: impl IntoIterator<Item = (usize, &'a Self::Lease)>,
            ) -> ($crate::replay::RestoreReport, u64) {
                let mut restorer = engine.restorer(0);
                let mut added = 0;
                for (shard, lease) in records {
                    // Owned and borrowed records alike.
                    let done = match added % 2 {
                        0 => restorer.add(shard, lease.clone()),
                        _ => restorer.add_ref(shard, lease.into()),
                    };
                    done.unwrap();
                    added += 1;
                }
                (restorer.finish(), added)
            }

            $($items)*
        }

        proptest! {
            #![proptest_config(ProptestConfig { cases: $cases, ..ProptestConfig::default() })]

            #[test]
            fn $test(
                setup in <$fam as $crate::model::Family>::setup(),
                ops in proptest::collection::vec(
                    $crate::model::op(<$fam as $crate::model::Family>::CLIENTS),
                    1..120,
                ),
                reorder in $crate::testkit::reorder(),
            ) {
                $crate::model::run::<$fam>(setup, &ops, &reorder);
            }
        }
    };
}
pub(crate) use family;
