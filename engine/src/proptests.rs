//! Property test: random operation sequences against a small model, with every invariant
//! checked after every step (the roaring-rs `bitmap/proptests.rs` approach).
//!
//! The model knows only what a server could: which client holds which offer or binding
//! until when, and which addresses are quarantined. From that it predicts every outcome:
//! which bind succeeds and how, which release/decline does something, which address an offer
//! must return (reservation, own address, remembered address, requested address) or at
//! least may return, and when a pool is exhausted. After every operation the engine's live
//! records must match the model exactly, and `Engine::check_invariants` must pass. At the end
//! the engine's snapshot must restore exactly, and its events, reordered as the journal may
//! (each shard's in order but shards interleaved arbitrarily, or shuffled entirely), folded
//! to the newest version per address and restored in that order, must rebuild its bindings
//! and quarantines exactly. Causality is checked directly too: every address's versions
//! strictly increase in the real order of its changes (the engine's test-only trace, since a
//! delayed event is handed out after later changes), and each shard hands its events out in
//! version order.

use std::collections::hash_map::DefaultHasher;
use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use crate::pools::Place;
use crate::testkit::{Reorder, check_versions, fold, reorder};
use crate::{
    AllocError, BindError, BindRequest, ClientKey, Engine, EngineConfig, HwAddr, Lease, LeaseEvent,
    LeaseInfo, LeaseState, LeaseView, OfferRequest, PoolId, PoolSpec,
};

const HOLD: u32 = 30;
const PROBATION: u32 = 50;
const CLIENTS: u8 = 8;
const POOL_FIRST: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 1, 10)];
/// Client 1's reservation, outside every pool.
const OUTSIDE_RESERVED: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);
/// An address outside every pool that nobody has reserved.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);
const CANDIDATES: [&[PoolId]; 5] = [
    &[],
    &[PoolId(0)],
    &[PoolId(1)],
    &[PoolId(0), PoolId(1)],
    &[PoolId(1), PoolId(0)],
];

fn add(a: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) + n)
}

#[derive(Clone, Debug)]
struct Setup {
    shards: usize,
    sizes: [u32; 2],
    /// Offsets excluded from each pool (beyond its size are ignored by the engine).
    excluded: [Vec<u32>; 2],
    /// Offset in pool 0 of client 0's reservation (excluded too).
    reserved_off: u32,
}

impl Setup {
    fn client_reservation(&self, c: u8) -> Option<Ipv4Addr> {
        match c {
            0 => Some(add(POOL_FIRST[0], self.reserved_off)),
            1 => Some(OUTSIDE_RESERVED),
            _ => None,
        }
    }

    fn config(&self) -> EngineConfig {
        let pools = (0..2)
            .map(|p| {
                let mut excluded: Vec<Ipv4Addr> = self.excluded[p]
                    .iter()
                    .map(|&o| add(POOL_FIRST[p], o))
                    .collect();
                if p == 0 {
                    excluded.push(add(POOL_FIRST[0], self.reserved_off));
                }
                PoolSpec {
                    first: POOL_FIRST[p],
                    last: add(POOL_FIRST[p], self.sizes[p] - 1),
                    excluded,
                }
            })
            .collect();
        EngineConfig {
            shards: self.shards,
            pools,
            offer_hold: HOLD,
            decline_probation: PROBATION,
        }
    }

    /// Every address the operations pick from: both pools and two outside addresses.
    fn universe(&self) -> Vec<Ipv4Addr> {
        let mut all: Vec<Ipv4Addr> = (0..2)
            .flat_map(|p| (0..self.sizes[p]).map(move |o| add(POOL_FIRST[p], o)))
            .collect();
        all.extend([OUTSIDE_RESERVED, OUTSIDE]);
        all
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    (1..=4usize, 5..=40u32, 5..=40u32)
        .prop_flat_map(|(shards, s0, s1)| {
            (
                Just(shards),
                Just([s0, s1]),
                proptest::collection::vec(0..s0, 0..4),
                proptest::collection::vec(0..s1, 0..4),
                0..s0,
            )
        })
        .prop_map(|(shards, sizes, ex0, ex1, reserved_off)| Setup {
            shards,
            sizes,
            excluded: [ex0, ex1],
            reserved_off,
        })
}

#[derive(Clone, Copy, Debug)]
enum Addr {
    /// The client's current record's address (else the first of the universe).
    Current,
    /// An address of the universe (index modulo its length).
    Pick(usize),
}

#[derive(Clone, Debug)]
enum Op {
    Offer {
        client: u8,
        pools: usize,
        requested: Option<Addr>,
    },
    Bind {
        client: u8,
        addr: Addr,
        pools: usize,
        lease_time: u32,
    },
    Release {
        client: u8,
        addr: Addr,
    },
    Decline {
        client: u8,
        addr: Addr,
    },
    Reclaim {
        shard: usize,
        budget: usize,
    },
    Tick(u64),
}

fn addr() -> impl Strategy<Value = Addr> {
    prop_oneof![Just(Addr::Current), any::<usize>().prop_map(Addr::Pick)]
}

fn op() -> impl Strategy<Value = Op> {
    let client = 0..CLIENTS;
    prop_oneof![
        4 => (client.clone(), 0..5usize, proptest::option::of(addr()))
            .prop_map(|(client, pools, requested)| Op::Offer { client, pools, requested }),
        4 => (client.clone(), addr(), 0..5usize, 0..120u32)
            .prop_map(|(client, addr, pools, lease_time)| Op::Bind { client, addr, pools, lease_time }),
        1 => (client.clone(), addr()).prop_map(|(client, addr)| Op::Release { client, addr }),
        1 => (client, addr()).prop_map(|(client, addr)| Op::Decline { client, addr }),
        1 => (0..4usize, 0..4usize).prop_map(|(shard, budget)| Op::Reclaim { shard, budget }),
        2 => (0..40u64).prop_map(Op::Tick),
    ]
}

fn key(c: u8) -> ClientKey {
    ClientKey::hardware(1, &[2, 0, 0, 0, 0, c])
}

fn client_of(key: &ClientKey) -> u8 {
    *key.as_bytes().last().unwrap()
}

fn info(c: u8) -> LeaseInfo<'static> {
    LeaseInfo {
        hw: HwAddr::new(1, &[2, 0, 0, 0, 0, c]).unwrap(),
        hostname: None,
    }
}

/// Client `c` always reaches the same shard, as the server's steering guarantees.
fn shard_of(c: u8, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    c.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

/// What a server could know: live offers and bindings per client, quarantines.
type Model = crate::testkit::Model<Ipv4Addr>;

struct Harness {
    setup: Setup,
    universe: Vec<Ipv4Addr>,
    engine: Engine,
    model: Model,
    /// Every event in hand-out order, with the shard that handed it out.
    events: Vec<(usize, LeaseEvent)>,
}

impl Harness {
    fn new(setup: Setup) -> Self {
        let engine = Engine::new(setup.config()).unwrap();
        Self {
            universe: setup.universe(),
            setup,
            engine,
            model: Model::new(CLIENTS),
            events: Vec::new(),
        }
    }

    fn shard(&self, c: u8) -> usize {
        shard_of(c, self.setup.shards)
    }

    /// Runs `call` on `shard` and records the events it hands out.
    fn with_events<R>(
        &mut self,
        shard: usize,
        call: impl FnOnce(&Engine, &mut Vec<LeaseEvent>) -> R,
    ) -> R {
        let mut out = Vec::new();
        let r = call(&self.engine, &mut out);
        self.events.extend(out.into_iter().map(|e| (shard, e)));
        r
    }

    fn resolve(&self, c: u8, addr: Addr) -> Ipv4Addr {
        match addr {
            Addr::Current => self
                .engine
                .lookup(self.shard(c), &key(c))
                .map_or(self.universe[0], |v| v.address),
            Addr::Pick(i) => self.universe[i % self.universe.len()],
        }
    }

    fn place(&self, a: Ipv4Addr) -> Place {
        self.engine.pools().place(u32::from(a))
    }

    fn dynamic_in(&self, a: Ipv4Addr, pools: &[PoolId]) -> bool {
        matches!(self.place(a), Place::Dynamic { pool, .. } if pools.contains(&pool))
    }

    fn step(&mut self, op: &Op) {
        let now = self.model.now;
        match *op {
            Op::Tick(d) => self.model.now += d,
            Op::Reclaim { shard, budget } => {
                let shard = shard % self.setup.shards;
                let n = self.with_events(shard, |e, ev| e.reclaim(shard, now, budget, ev));
                assert!(n <= budget);
            }
            Op::Offer {
                client,
                pools,
                requested,
            } => self.offer(client, CANDIDATES[pools], requested),
            Op::Bind {
                client,
                addr,
                pools,
                lease_time,
            } => self.bind(client, addr, CANDIDATES[pools], lease_time),
            Op::Release { client, addr } => {
                let a = self.resolve(client, addr);
                let expected = self.model.bound_to(client) == Some(a);
                let shard = self.shard(client);
                let done =
                    self.with_events(shard, |e, ev| e.release(shard, &key(client), a, now, ev));
                assert_eq!(done, expected, "release {a} by {client}");
                if done {
                    self.model.bound.remove(&client);
                }
            }
            Op::Decline { client, addr } => {
                let a = self.resolve(client, addr);
                let m = &self.model;
                let expected = m.bound_to(client) == Some(a) || m.offered_to(client) == Some(a);
                let shard = self.shard(client);
                let done =
                    self.with_events(shard, |e, ev| e.decline(shard, &key(client), a, now, ev));
                assert_eq!(done, expected, "decline {a} by {client}");
                if done {
                    self.model.bound.remove(&client);
                    self.model.offered.remove(&client);
                    self.model.quarantine.insert(a, now + u64::from(PROBATION));
                }
            }
        }
        self.check();
    }

    fn offer(&mut self, c: u8, pools: &[PoolId], requested: Option<Addr>) {
        let m = &self.model;
        let now = m.now;
        let shard = self.shard(c);
        let requested = requested.map(|r| self.resolve(c, r));
        let reserved = self.setup.client_reservation(c);
        let before = self.engine.lookup(shard, &key(c));
        let remembered = before
            .filter(|v| {
                matches!(v.state, LeaseState::Released | LeaseState::Expired)
                    || (v.state == LeaseState::Bound && v.expires <= now)
            })
            .map(|v| v.address);
        let own_in_pools = |a: Option<Ipv4Addr>| a.filter(|&a| self.dynamic_in(a, pools));
        // What the engine must offer, if the model can tell; else the set it may offer from.
        let must: Option<Ipv4Addr> = reserved
            .filter(|&r| !m.quarantined(r))
            .or_else(|| own_in_pools(m.bound_to(c)))
            .or_else(|| own_in_pools(m.offered_to(c)))
            .or_else(|| own_in_pools(remembered))
            .or_else(|| requested.filter(|&r| self.dynamic_in(r, pools) && m.available_to(r, c)));
        let may: BTreeSet<Ipv4Addr> = self
            .universe
            .iter()
            .copied()
            .filter(|&a| self.dynamic_in(a, pools) && m.available_to(a, c))
            .collect();

        let req = OfferRequest {
            client: &key(c),
            pools,
            reserved,
            requested,
            info: info(c),
        };
        let got = self.engine.offer(shard, &req, now);
        match (got, must) {
            (Ok(a), Some(expected)) => assert_eq!(a, expected, "offer to {c}"),
            (Ok(a), None) => assert!(may.contains(&a), "offer of {a} to {c}: may {may:?}"),
            (Err(AllocError::Exhausted), None) => {
                assert!(may.is_empty(), "exhausted for {c} but {may:?} free");
                for stat in self.engine.stats() {
                    if pools.contains(&stat.pool) {
                        assert_eq!(stat.free, 0, "exhausted with free addresses");
                    }
                }
            }
            (Err(e), Some(expected)) => panic!("offer to {c}: {e}, expected {expected}"),
        }
        let a = got.unwrap_or(Ipv4Addr::UNSPECIFIED);
        if got.is_ok() && self.model.bound_to(c) != Some(a) {
            // The client moved on from any binding it had: DISCOVER means it uses none.
            self.model.bound.remove(&c);
            self.model.offered.insert(c, (a, now + u64::from(HOLD)));
        }
    }

    fn bind(&mut self, c: u8, addr: Addr, pools: &[PoolId], lease_time: u32) {
        let m = &self.model;
        let now = m.now;
        let a = self.resolve(c, addr);
        let reserved = self.setup.client_reservation(c) == Some(a);
        let place = self.place(a);
        let renew = m.bound_to(c) == Some(a);
        let own = renew || m.offered_to(c) == Some(a);
        let expected = if !reserved && !place.pool().is_some_and(|p| pools.contains(&p)) {
            Err(BindError::NotInPool)
        } else if m.quarantined(a)
            || (!own && m.held_by_other(a, c))
            || (matches!(place, Place::Fixed { .. }) && !reserved)
        {
            // Quarantined, someone else's, or somebody's reservation.
            Err(BindError::Taken)
        } else {
            Ok(())
        };
        let req = BindRequest {
            client: &key(c),
            address: a,
            pools,
            reserved,
            lease_time,
            info: info(c),
        };
        let shard = self.shard(c);
        let got = self.with_events(shard, |e, ev| e.bind(shard, &req, now, ev));
        assert_eq!(
            got.map(|_| ()),
            expected,
            "bind {a} by {c} ({op:?})",
            op = (reserved, place)
        );
        if let Ok(view) = got {
            let expires = now + u64::from(lease_time);
            assert_eq!(
                view,
                LeaseView {
                    address: a,
                    pool: place.pool(),
                    state: LeaseState::Bound,
                    starts: now,
                    expires
                }
            );
            let client = |l: &Lease| client_of(&l.client);
            self.model
                .bound(&self.events, shard, (c, a), renew, expires, client);
        }
    }

    /// The engine's live records are exactly the model's, and every invariant holds.
    fn check(&self) {
        self.engine.check_invariants();
        let now = self.model.now;
        let mut live = BTreeMap::new();
        for lease in self.engine.leases() {
            let c = client_of(&lease.client);
            if matches!(self.place(lease.address), Place::Fixed { .. }) {
                assert_eq!(
                    self.setup.client_reservation(c),
                    Some(lease.address),
                    "fixed address held by a client it is not reserved for"
                );
            }
            if crate::shard::is_held(lease.state) && lease.expires > now {
                live.insert(lease.address, (lease.state, c, lease.expires));
            }
        }
        let model = self.model.expected(&live);
        assert_eq!(live, model, "live records at {now}");
        for stat in self.engine.stats() {
            assert_eq!(
                stat.free + stat.offered + stat.bound + stat.declined,
                stat.total
            );
        }
    }

    /// Every address's versions rise in the real order of its changes; each shard hands
    /// out its events in version order; what was handed out is what was made.
    fn check_versions(&self) {
        check_versions(
            &self.events,
            self.setup.shards,
            self.engine.check_causality(),
            self.engine.trace(),
            self.engine.max_version(),
        );
    }

    /// A fresh engine with `records` restored, each into its shard, one by one or in bulk.
    fn replay<'a>(
        &self,
        records: impl IntoIterator<Item = (usize, &'a Lease)>,
        bulk: bool,
    ) -> Engine {
        let engine = Engine::new(self.setup.config()).unwrap();
        if bulk {
            let mut restorer = engine.restorer(0);
            let mut added = 0;
            for (shard, lease) in records {
                // Owned and borrowed records alike.
                if added % 2 == 0 {
                    restorer.add(shard, lease.clone()).unwrap();
                } else {
                    restorer.add_ref(shard, lease.into()).unwrap();
                }
                added += 1;
            }
            let report = restorer.finish();
            assert!(report.bulk);
            assert_eq!(report.added + report.refused, added);
        } else {
            for (shard, lease) in records {
                engine.restore(shard, lease.clone()).unwrap();
            }
        }
        engine
    }

    /// A snapshot restores exactly; the events, reordered as the journal may and folded,
    /// rebuild bindings and quarantines exactly.
    fn check_restart(&mut self, reorder: &Reorder) {
        let now = self.model.now;
        for shard in 0..self.setup.shards {
            self.with_events(shard, |e, ev| e.reclaim(shard, now, 0, ev));
        }
        self.check_versions();

        let snapshot = self.engine.leases();
        let restored = [false, true].map(|bulk| {
            let records = snapshot
                .iter()
                .rev()
                .map(|l| (self.shard(client_of(&l.client)), l));
            let fresh = self.replay(records, bulk);
            fresh.check_invariants();
            assert_eq!(fresh.leases(), snapshot, "snapshot restore, bulk: {bulk}");
            assert_eq!(fresh.stats(), self.engine.stats());
            fresh
        });
        for c in 0..CLIENTS {
            let shard = self.shard(c);
            assert_eq!(
                restored[0].lookup(shard, &key(c)),
                restored[1].lookup(shard, &key(c))
            );
        }

        let holds = |e: &Engine| {
            e.leases()
                .into_iter()
                .filter(|l| matches!(l.state, LeaseState::Bound | LeaseState::Declined))
                .collect::<Vec<_>>()
        };
        let usage = |e: &Engine| {
            e.stats()
                .into_iter()
                .map(|s| (s.free + s.offered, s.bound, s.declined))
                .collect::<Vec<_>>()
        };
        let orders = reorder.journals(&self.events, self.setup.shards);
        let top = self.engine.max_version();
        for (name, journal) in orders {
            assert_eq!(journal.len(), self.events.len());
            // Panics on a version tie between two records of one address.
            let folded = fold(&journal);
            let replayed = Engine::new(self.setup.config()).unwrap();
            for lease in &folded {
                let shard = self.shard(client_of(&lease.client));
                replayed
                    .restore(shard, lease.clone())
                    .unwrap_or_else(|e| panic!("{name}: restore {lease:?}: {e}"));
                replayed.check_invariants();
            }
            assert_eq!(holds(&replayed), holds(&self.engine), "{name}");
            assert_eq!(usage(&replayed), usage(&self.engine), "{name}");
            // In bulk: the same state exactly, memories and client index included.
            let bulk = self.replay(
                folded.iter().map(|l| (self.shard(client_of(&l.client)), l)),
                true,
            );
            bulk.check_invariants();
            assert_eq!(bulk.leases(), replayed.leases(), "{name}, bulk");
            assert_eq!(bulk.stats(), replayed.stats(), "{name}, bulk");
            assert_eq!(bulk.max_version(), replayed.max_version(), "{name}, bulk");
            for c in 0..CLIENTS {
                let shard = self.shard(c);
                assert_eq!(bulk.lookup(shard, &key(c)), replayed.lookup(shard, &key(c)));
            }
            // Unfolded, the bulk path folds by itself: the newest record of each address.
            let unfolded = self.replay(
                journal
                    .iter()
                    .map(|l| (self.shard(client_of(&l.client)), l)),
                true,
            );
            unfolded.check_invariants();
            assert_eq!(
                unfolded.leases(),
                replayed.leases(),
                "{name}, unfolded bulk"
            );
            assert_eq!(unfolded.stats(), replayed.stats(), "{name}, unfolded bulk");
            let journal_top = folded.iter().map(|l| l.version).max().unwrap_or(0);
            assert_eq!(replayed.max_version(), journal_top, "{name}");
            replayed.advance_versions(top);
            assert_eq!(replayed.max_version(), top);
        }
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn engine_matches_model(
        setup in setup(),
        ops in proptest::collection::vec(op(), 1..120),
        reorder in reorder(),
    ) {
        let mut h = Harness::new(setup);
        for op in &ops {
            h.step(op);
        }
        h.check_restart(&reorder);
    }
}
