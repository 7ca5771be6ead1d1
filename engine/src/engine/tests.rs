//! Unit tests of the engine's rules, one scenario each.

use std::ops::ControlFlow;

use super::*;
use crate::lease::EventKind;
use crate::testkit::fold;
use crate::v4::{AllocError, BindError, EngineConfig, HwAddr, PoolSpec};

const HOLD: u32 = 30;
const PROBATION: u32 = 600;
const T0: Time = 1_000;

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn pool(first: u8, last: u8, excluded: &[u8]) -> PoolSpec {
    PoolSpec {
        first: ip(first),
        last: ip(last),
        excluded: excluded.iter().map(|&a| ip(a)).collect(),
    }
}

fn engine(shards: usize, pools: Vec<PoolSpec>) -> Engine {
    Engine::new(EngineConfig {
        shards,
        pools,
        offer_hold: HOLD,
        decline_probation: PROBATION,
    })
    .unwrap()
}

fn client(n: u8) -> ClientKey {
    ClientKey::hardware(1, &[2, 0, 0, 0, 0, n])
}

fn info(n: u8) -> LeaseInfo<'static> {
    LeaseInfo {
        hw: HwAddr::new(1, &[2, 0, 0, 0, 0, n]).unwrap(),
        hostname: None,
    }
}

const P0: &[PoolId] = &[PoolId(0)];

/// The state of client `c`'s current record in `shard`.
#[track_caller]
fn state(e: &Engine, shard: usize, c: u8) -> LeaseState {
    e.lookup(shard, &client(c)).unwrap().state
}

/// Checks that `a` holds the same records and counts as `b`.
#[track_caller]
fn assert_same(a: &Engine, b: &Engine) {
    assert_eq!(a.leases(), b.leases());
    assert_eq!(a.stats(), b.stats());
}

/// Test driver: one engine, a clock, the events so far.
struct T {
    e: Engine,
    events: Vec<LeaseEvent>,
    /// The candidate pools of every offer and bind.
    pools: &'static [PoolId],
}

impl T {
    fn new(shards: usize, pools: Vec<PoolSpec>) -> Self {
        Self {
            e: engine(shards, pools),
            events: Vec::new(),
            pools: P0,
        }
    }

    /// One shard, pool `first..=last`, client 1 bound to `addr` at `T0`, its events taken.
    fn bound(first: u8, last: u8, addr: Ipv4Addr) -> Self {
        let mut t = Self::new(1, vec![pool(first, last, &[])]);
        t.bind(0, 1, addr, T0).unwrap();
        t.take_events();
        t
    }

    fn offer_with(
        &self,
        shard: usize,
        c: u8,
        reserved: Option<Ipv4Addr>,
        requested: Option<Ipv4Addr>,
        now: Time,
    ) -> Result<Ipv4Addr, AllocError> {
        let key = client(c);
        let req = OfferRequest {
            client: &key,
            pools: self.pools,
            reserved,
            requested,
            info: info(c),
        };
        let r = self.e.offer(shard, &req, now);
        self.e.check_invariants();
        r
    }

    fn offer(&self, shard: usize, c: u8, now: Time) -> Result<Ipv4Addr, AllocError> {
        self.offer_with(shard, c, None, None, now)
    }

    fn bind_with(
        &mut self,
        shard: usize,
        c: u8,
        addr: Ipv4Addr,
        reserved: bool,
        now: Time,
    ) -> Result<LeaseView, BindError> {
        let key = client(c);
        let req = BindRequest {
            client: &key,
            address: addr,
            pools: self.pools,
            reserved,
            grant: Grant {
                lease_time: 100,
                info: info(c),
            },
        };
        let r = self.e.bind(shard, &req, now, &mut self.events);
        self.e.check_invariants();
        r
    }

    fn bind(
        &mut self,
        shard: usize,
        c: u8,
        addr: Ipv4Addr,
        now: Time,
    ) -> Result<LeaseView, BindError> {
        self.bind_with(shard, c, addr, false, now)
    }

    fn release(&mut self, shard: usize, c: u8, addr: Ipv4Addr, now: Time) -> bool {
        let r = self
            .e
            .release(shard, &client(c), addr, now, &mut self.events);
        self.e.check_invariants();
        r
    }

    fn decline(&mut self, shard: usize, c: u8, addr: Ipv4Addr, now: Time) -> bool {
        let r = self
            .e
            .decline(shard, &client(c), addr, now, &mut self.events);
        self.e.check_invariants();
        r
    }

    fn reclaim(&mut self, shard: usize, now: Time) -> usize {
        let r = self.e.reclaim(shard, now, usize::MAX, &mut self.events);
        self.e.check_invariants();
        r
    }

    /// Events since the last call, as (kind, address, state).
    fn take_events(&mut self) -> Vec<(EventKind, Ipv4Addr, LeaseState)> {
        self.events
            .drain(..)
            .map(|e| (e.kind, e.lease.address, e.lease.state))
            .collect()
    }

    /// Checks that the events since the last look are `want`.
    #[track_caller]
    fn expect_events(&mut self, want: &[(EventKind, Ipv4Addr, LeaseState)]) {
        assert_eq!(self.take_events(), want);
    }

    fn stats(&self) -> PoolStats {
        self.e.stats()[0]
    }
}

#[test]
fn engine_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Engine>();
}

#[test]
fn config_errors() {
    let cfg = |shards, pools| EngineConfig {
        shards,
        pools,
        offer_hold: HOLD,
        decline_probation: PROBATION,
    };
    assert!(matches!(
        Engine::new(cfg(0, vec![pool(10, 20, &[])])),
        Err(crate::v4::ConfigError::NoShards)
    ));
    assert!(matches!(
        Engine::new(cfg(1, vec![pool(20, 10, &[])])),
        Err(crate::v4::ConfigError::PoolRange { .. })
    ));
    let err = Engine::new(cfg(1, vec![pool(10, 20, &[]), pool(20, 30, &[])])).unwrap_err();
    assert_eq!(err.to_string(), "pools 0 and 1 overlap");
    // No pools at all is a valid (reservation-only) engine.
    let e = Engine::new(cfg(2, vec![])).unwrap();
    assert!(e.stats().is_empty());
}

#[test]
fn offer_holds_lowest_free_and_reoffers_the_same() {
    let t = T::new(1, vec![pool(10, 20, &[])]);
    assert_eq!(t.offer(0, 1, T0), Ok(ip(10)));
    assert_eq!(t.offer(0, 2, T0), Ok(ip(11)));
    // Re-offering does not take a second address.
    assert_eq!(t.offer(0, 1, T0 + 5), Ok(ip(10)));
    let view = t.e.lookup(0, &client(1)).unwrap();
    assert_eq!(view.state, LeaseState::Offered);
    assert_eq!(view.expires, T0 + 5 + u64::from(HOLD), "hold renewed");
    let s = t.stats();
    assert_eq!((s.total, s.free, s.offered, s.bound), (11, 9, 2, 0));
}

#[test]
fn bind_emits_bound_and_renew_emits_renewed() {
    let mut t = T::new(1, vec![pool(10, 20, &[])]);
    let a = t.offer(0, 1, T0).unwrap();
    assert!(t.take_events().is_empty(), "an offer is not an event");
    let v = t.bind(0, 1, a, T0 + 1).unwrap();
    assert_eq!(
        (v.state, v.starts, v.expires),
        (LeaseState::Bound, T0 + 1, T0 + 101)
    );
    t.expect_events(&[(EventKind::Bound, a, LeaseState::Bound)]);
    let v = t.bind(0, 1, a, T0 + 50).unwrap();
    assert_eq!(v.expires, T0 + 150);
    t.expect_events(&[(EventKind::Renewed, a, LeaseState::Bound)]);
    // A re-offer to a bound client leaves the binding alone.
    assert_eq!(t.offer(0, 1, T0 + 60), Ok(a));
    assert_eq!(state(&t.e, 0, 1), LeaseState::Bound);
    assert_eq!(t.stats().bound, 1);
}

#[test]
fn hostname_is_kept_when_not_sent_again() {
    let mut t = T::new(1, vec![pool(10, 20, &[])]);
    let key = client(1);
    let mut req = BindRequest {
        client: &key,
        address: ip(10),
        pools: P0,
        reserved: false,
        grant: Grant {
            lease_time: 100,
            info: LeaseInfo {
                hw: info(1).hw,
                hostname: Some("printer"),
            },
        },
    };
    t.e.bind(0, &req, T0, &mut t.events).unwrap();
    req.grant.info.hostname = None;
    t.e.bind(0, &req, T0 + 1, &mut t.events).unwrap();
    assert_eq!(t.e.leases()[0].hostname.as_deref(), Some("printer"));
}

#[test]
fn bind_refusals() {
    let mut t = T::new(1, vec![pool(10, 20, &[15])]);
    let a = t.offer(0, 1, T0).unwrap();
    assert_eq!(
        t.bind(0, 2, a, T0),
        Err(BindError::Taken),
        "another client's offer"
    );
    assert_eq!(t.bind(0, 2, ip(30), T0), Err(BindError::NotInPool));
    assert_eq!(t.bind(0, 2, ip(15), T0), Err(BindError::Taken), "excluded");
    let key = client(2);
    let req = BindRequest {
        client: &key,
        address: ip(12),
        pools: &[PoolId(7)],
        reserved: false,
        grant: Grant {
            lease_time: 100,
            info: info(2),
        },
    };
    assert_eq!(
        t.e.bind(0, &req, T0, &mut t.events),
        Err(BindError::NotInPool),
        "unknown pool"
    );
    assert!(t.take_events().is_empty());
}

#[test]
fn binding_a_new_address_releases_the_old_one() {
    let mut t = T::bound(10, 20, ip(12));
    t.bind(0, 1, ip(14), T0 + 1).unwrap();
    t.expect_events(&[
        (EventKind::Released, ip(12), LeaseState::Released),
        (EventKind::Bound, ip(14), LeaseState::Bound),
    ]);
    assert_eq!(t.e.leases().len(), 1);
    assert_eq!(t.stats().free, 10);
}

#[test]
fn affinity_after_release() {
    let mut t = T::bound(10, 20, ip(10));
    assert!(!t.release(0, 2, ip(10), T0), "not the owner");
    assert!(!t.release(0, 1, ip(11), T0), "not its address");
    assert!(t.release(0, 1, ip(10), T0 + 1));
    t.expect_events(&[(EventKind::Released, ip(10), LeaseState::Released)]);
    assert!(!t.release(0, 1, ip(10), T0 + 2), "already released");
    assert_eq!(t.stats().free, 11);
    // Others get addresses nobody is remembered for first.
    assert_eq!(t.offer(0, 2, T0 + 3), Ok(ip(11)));
    assert_eq!(t.offer(0, 1, T0 + 4), Ok(ip(10)));
}

#[test]
fn release_of_an_offer_does_nothing() {
    let mut t = T::new(1, vec![pool(10, 20, &[])]);
    let a = t.offer(0, 1, T0).unwrap();
    assert!(!t.release(0, 1, a, T0));
    assert_eq!(state(&t.e, 0, 1), LeaseState::Offered);
}

#[test]
fn affinity_after_expiry() {
    let mut t = T::bound(10, 20, ip(13));
    assert_eq!(t.reclaim(0, T0 + 99), 0);
    assert_eq!(t.reclaim(0, T0 + 100), 1);
    t.expect_events(&[(EventKind::Expired, ip(13), LeaseState::Expired)]);
    assert_eq!(state(&t.e, 0, 1), LeaseState::Expired);
    assert_eq!(t.stats().bound, 0);
    assert_eq!(t.offer(0, 1, T0 + 200), Ok(ip(13)));
    // Renewing after expiry is a new binding.
    t.bind(0, 1, ip(13), T0 + 201).unwrap();
    t.expect_events(&[(EventKind::Bound, ip(13), LeaseState::Bound)]);
}

#[test]
fn a_passed_lease_is_ended_on_touch_even_before_reclaim() {
    let mut t = T::bound(10, 10, ip(10));
    // Client 2 may take the address once client 1's lease has run out.
    t.bind(0, 2, ip(10), T0 + 100).unwrap();
    t.expect_events(&[
        (EventKind::Expired, ip(10), LeaseState::Expired),
        (EventKind::Bound, ip(10), LeaseState::Bound),
    ]);
    assert_eq!(
        t.e.lookup(0, &client(1)),
        None,
        "client 1's memory of it dropped"
    );
}

#[test]
fn requested_address_is_honoured_when_free() {
    let mut t = T::new(1, vec![pool(10, 20, &[15])]);
    assert_eq!(t.offer_with(0, 1, None, Some(ip(17)), T0), Ok(ip(17)));
    // Held by someone else: the next free one instead.
    assert_eq!(t.offer_with(0, 2, None, Some(ip(17)), T0), Ok(ip(10)));
    // Excluded, or outside the candidate pools: ignored.
    assert_eq!(t.offer_with(0, 3, None, Some(ip(15)), T0), Ok(ip(11)));
    assert_eq!(t.offer_with(0, 4, None, Some(ip(40)), T0), Ok(ip(12)));
    // A client's own record comes before what it requests.
    t.bind(0, 5, ip(19), T0).unwrap();
    assert_eq!(t.offer_with(0, 5, None, Some(ip(18)), T0), Ok(ip(19)));
}

#[test]
fn requested_address_is_fetched_from_a_sibling() {
    // Shard 0 owns .10-.14, shard 1 owns .15-.19.
    let mut t = T::new(2, vec![pool(10, 19, &[])]);
    assert_eq!(t.offer_with(0, 1, None, Some(ip(18)), T0), Ok(ip(18)));
    // And binding a sibling's free address directly works too.
    t.bind(0, 2, ip(16), T0).unwrap();
    // Unless a client there holds it.
    t.offer(1, 3, T0).unwrap();
    assert_eq!(t.offer(1, 3, T0), Ok(ip(15)));
    assert_eq!(t.bind(0, 2, ip(15), T0), Err(BindError::Taken));
    assert_eq!(t.offer_with(0, 4, None, Some(ip(15)), T0), Ok(ip(10)));
}

#[test]
fn borrows_from_a_sibling_when_its_own_block_is_empty() {
    // Shard 0 owns .10-.11, shard 1 owns .12-.13.
    let t = T::new(2, vec![pool(10, 13, &[])]);
    assert_eq!(t.offer(0, 1, T0), Ok(ip(10)));
    assert_eq!(t.offer(0, 2, T0), Ok(ip(11)));
    let borrowed = t.offer(0, 3, T0).unwrap();
    assert!([ip(12), ip(13)].contains(&borrowed));
    assert_eq!(t.e.lookup(0, &client(3)).unwrap().address, borrowed);
    let last = t.offer(0, 4, T0).unwrap();
    assert_ne!(last, borrowed);
    assert_eq!(t.offer(0, 5, T0), Err(AllocError::Exhausted));
    assert_eq!(t.offer(1, 6, T0), Err(AllocError::Exhausted));
    assert_eq!(t.stats().free, 0);
}

#[test]
fn a_pool_that_waits_gives_out_no_free_address_but_keeps_its_clients() {
    let (a, b) = (PoolId(0), PoolId(1));
    let mut t = T::new(1, vec![pool(10, 19, &[]), pool(20, 29, &[])]);
    t.pools = &[PoolId(0), PoolId(1)];
    // Before A waits: client 1 is bound in it, client 2 offered, client 3 bound then gone.
    t.bind(0, 1, ip(10), T0).unwrap();
    assert_eq!(t.offer(0, 2, T0), Ok(ip(11)));
    t.bind(0, 3, ip(12), T0).unwrap();
    assert!(t.release(0, 3, ip(12), T0));
    t.e.set_waiting(a, true);
    assert!(t.e.is_waiting(a) && !t.e.is_waiting(b));
    // New clients get B, even asking for a free address of A, and cannot bind one.
    assert_eq!(t.offer(0, 4, T0), Ok(ip(20)));
    assert_eq!(t.offer_with(0, 5, None, Some(ip(13)), T0), Ok(ip(21)));
    assert_eq!(t.bind(0, 6, ip(13), T0), Err(BindError::Taken));
    // An offer or binding in A is the client's own still; a released record is not.
    assert_eq!(t.offer(0, 1, T0 + 1), Ok(ip(10)));
    assert_eq!(t.bind(0, 1, ip(10), T0 + 1).unwrap().address, ip(10));
    assert_eq!(t.bind(0, 2, ip(11), T0 + 1).unwrap().address, ip(11));
    assert_eq!(t.offer(0, 3, T0 + 1), Ok(ip(22)));
    assert_eq!(t.bind(0, 3, ip(12), T0 + 1), Err(BindError::Taken));
    // A pool out of range is ignored.
    t.e.set_waiting(PoolId(7), true);
    assert!(!t.e.is_waiting(PoolId(7)));
    t.e.set_waiting(a, false);
    assert_eq!(t.offer(0, 7, T0 + 2), Ok(ip(12)));
    assert_eq!(t.bind(0, 6, ip(14), T0 + 2).unwrap().address, ip(14));
}

#[test]
fn a_pool_that_waits_is_neither_borrowed_nor_fetched() {
    // With two shards, A's free addresses (.12, .13) and B's (.22, .23) are all shard 1's.
    let mut t = T::new(2, vec![pool(10, 13, &[10, 11]), pool(20, 23, &[20, 21])]);
    t.pools = &[PoolId(0), PoolId(1)];
    t.e.set_waiting(PoolId(0), true);
    let got = t.offer_with(0, 1, None, Some(ip(13)), T0).unwrap();
    assert!([ip(22), ip(23)].contains(&got), "{got} is not B's");
    assert_eq!(t.bind(0, 2, ip(13), T0), Err(BindError::Taken));
    assert_eq!(t.e.lock(1).free_len(PoolId(0)), 2, "A was lent");
    t.e.set_waiting(PoolId(0), false);
    let got = t.offer(0, 3, T0).unwrap();
    assert!([ip(12), ip(13)].contains(&got), "{got} is not A's");
}

#[test]
fn exhausted_only_when_every_shard_is_empty() {
    let t = T::new(3, vec![pool(10, 39, &[])]);
    let mut seen = std::collections::HashSet::new();
    for c in 0..30 {
        let a = t
            .offer(0, c, T0)
            .unwrap_or_else(|e| panic!("client {c}: {e}"));
        assert!(seen.insert(a), "{a} offered twice");
    }
    assert_eq!(t.offer(0, 30, T0), Err(AllocError::Exhausted));
    // Once holds run out the shard reclaims before declaring exhaustion.
    assert!(t.offer(0, 30, T0 + u64::from(HOLD)).is_ok());
}

#[test]
fn exhaustion_counts_the_siblings_expired_records() {
    let mut t = T::new(2, vec![pool(10, 11, &[])]);
    t.bind(1, 1, ip(11), T0).unwrap();
    t.bind(0, 2, ip(10), T0 + 50).unwrap();
    t.take_events();
    assert_eq!(t.offer(0, 3, T0 + 51), Err(AllocError::Exhausted));
    // Shard 1's lease ran out; nobody called reclaim on shard 1, but shard 0 may borrow it.
    assert_eq!(t.offer(0, 3, T0 + 100), Ok(ip(11)));
    // Shard 1's Expired event waits for shard 1's next call.
    t.reclaim(0, T0 + 100);
    assert!(
        t.take_events().iter().all(|(_, a, _)| *a == ip(10)),
        "only shard 0's events"
    );
    t.reclaim(1, T0 + 100);
    t.expect_events(&[(EventKind::Expired, ip(11), LeaseState::Expired)]);
}

#[test]
fn decline_quarantines_until_probation_ends() {
    let mut t = T::bound(10, 11, ip(10));
    assert!(!t.decline(0, 2, ip(10), T0), "not the owner");
    assert!(t.decline(0, 1, ip(10), T0 + 1));
    t.expect_events(&[(EventKind::Declined, ip(10), LeaseState::Declined)]);
    let v = t.e.lookup(0, &client(1)).unwrap();
    assert_eq!(
        (v.state, v.expires),
        (LeaseState::Declined, T0 + 1 + u64::from(PROBATION))
    );
    assert_eq!(t.stats().declined, 1);
    // Nobody gets it: not the decliner, not another client asking for it.
    assert_eq!(t.offer(0, 1, T0 + 2), Ok(ip(11)));
    assert_eq!(
        t.offer_with(0, 2, None, Some(ip(10)), T0 + 2),
        Err(AllocError::Exhausted)
    );
    assert_eq!(t.bind(0, 2, ip(10), T0 + 2), Err(BindError::Taken));
    assert_eq!(t.bind(0, 1, ip(10), T0 + 2), Err(BindError::Taken));
    // The decliner moved on, but the quarantine stays.
    assert_eq!(t.stats().declined, 1);
    let end = T0 + 1 + u64::from(PROBATION);
    t.reclaim(0, end - 1);
    assert_eq!(t.stats().declined, 1);
    t.reclaim(0, end);
    let events = t.take_events();
    assert!(
        events.contains(&(EventKind::Expired, ip(10), LeaseState::Expired)),
        "{events:?}"
    );
    assert_eq!(t.stats().declined, 0);
    assert_eq!(t.offer_with(0, 2, None, Some(ip(10)), end), Ok(ip(10)));
}

#[test]
fn decline_of_an_offer_quarantines_it_too() {
    let mut t = T::new(1, vec![pool(10, 20, &[])]);
    let a = t.offer(0, 1, T0).unwrap();
    assert!(t.decline(0, 1, a, T0));
    t.expect_events(&[(EventKind::Declined, a, LeaseState::Declined)]);
    assert_ne!(t.offer(0, 1, T0), Ok(a));
}

#[test]
fn reservations_are_never_handed_out_dynamically() {
    let mut t = T::new(2, vec![pool(10, 13, &[11])]);
    let mut got = Vec::new();
    for c in 1..=3 {
        got.push(t.offer(0, c, T0).unwrap());
    }
    got.sort();
    assert_eq!(got, [ip(10), ip(12), ip(13)]);
    assert_eq!(t.offer(0, 4, T0), Err(AllocError::Exhausted));
    assert_eq!(
        t.offer_with(1, 5, None, Some(ip(11)), T0),
        Err(AllocError::Exhausted)
    );
    // The reserved client gets it, inside or outside the pools.
    assert_eq!(t.offer_with(1, 9, Some(ip(11)), None, T0), Ok(ip(11)));
    let v = t.bind_with(1, 9, ip(11), true, T0).unwrap();
    assert_eq!(v.pool, Some(PoolId(0)));
    assert_eq!(t.bind(1, 8, ip(11), T0), Err(BindError::Taken));
    assert_eq!(t.offer_with(1, 8, Some(ip(99)), None, T0), Ok(ip(99)));
    let v = t.bind_with(1, 8, ip(99), true, T0).unwrap();
    assert_eq!(v.pool, None);
    let s = t.stats();
    assert_eq!(
        (s.total, s.offered, s.bound, s.free),
        (3, 3, 0, 0),
        "reservations are not pool usage"
    );
}

#[test]
fn a_reserved_address_in_use_waits_for_its_holder_in_any_shard() {
    for holder_shard in [0, 1] {
        let mut t = T::new(2, vec![pool(10, 20, &[])]);
        // Client 1 has the fixed address .99 (the reservation moved to client 2 since).
        t.bind_with(holder_shard, 1, ip(99), true, T0).unwrap();
        t.take_events();
        // Client 2, on shard 1, gets another address while client 1 holds it, whichever
        // shard that is in; its REQUEST for .99 is refused.
        let other = t.offer_with(1, 2, Some(ip(99)), None, T0).unwrap();
        assert_ne!(other, ip(99), "holder on shard {holder_shard}");
        assert_eq!(
            t.bind_with(1, 2, ip(99), true, T0),
            Err(BindError::Taken),
            "holder on shard {holder_shard}"
        );
        // Client 1 may not renew an address reserved for another client (outside the pool).
        assert_eq!(
            t.bind(holder_shard, 1, ip(99), T0 + 1),
            Err(BindError::NotInPool)
        );
        // Once its lease ends, client 2 gets it.
        assert!(t.release(holder_shard, 1, ip(99), T0 + 2));
        assert_eq!(t.offer_with(1, 2, Some(ip(99)), None, T0 + 3), Ok(ip(99)));
        let v = t.bind_with(1, 2, ip(99), true, T0 + 3).unwrap();
        assert_eq!(v.address, ip(99));
        let held: Vec<_> =
            t.e.leases()
                .into_iter()
                .filter(|l| l.address == ip(99) && l.state == LeaseState::Bound)
                .map(|l| l.client)
                .collect();
        assert_eq!(held, [client(2)], "holder on shard {holder_shard}");
    }
}

#[test]
fn an_offer_of_a_reserved_address_ends_for_its_reserved_client_in_any_shard() {
    for holder_shard in [0, 1] {
        let mut t = T::new(2, vec![pool(10, 20, &[])]);
        // Client 1 was offered .99 (reserved for it then); the reservation is client 2's now.
        assert_eq!(
            t.offer_with(holder_shard, 1, Some(ip(99)), None, T0),
            Ok(ip(99))
        );
        assert_eq!(t.offer_with(1, 2, Some(ip(99)), None, T0), Ok(ip(99)));
        t.bind_with(1, 2, ip(99), true, T0).unwrap();
        assert_eq!(
            t.bind(holder_shard, 1, ip(99), T0),
            Err(BindError::NotInPool),
            "holder on shard {holder_shard}"
        );
    }
}

#[test]
fn a_quarantined_reservation_is_respected() {
    let mut t = T::new(1, vec![pool(10, 20, &[])]);
    assert_eq!(t.offer_with(0, 2, Some(ip(99)), None, T0), Ok(ip(99)));
    t.bind_with(0, 2, ip(99), true, T0).unwrap();
    // Declined by its owner: a dynamic address meanwhile.
    assert!(t.decline(0, 2, ip(99), T0));
    assert_eq!(t.offer_with(0, 2, Some(ip(99)), None, T0 + 1), Ok(ip(10)));
    let end = T0 + u64::from(PROBATION);
    assert_eq!(t.offer_with(0, 2, Some(ip(99)), None, end), Ok(ip(99)));
}

#[test]
fn offer_hold_runs_out_silently() {
    let mut t = T::new(1, vec![pool(10, 11, &[])]);
    assert_eq!(t.offer(0, 1, T0), Ok(ip(10)));
    assert_eq!(t.offer(0, 2, T0 + 10), Ok(ip(11)));
    assert_eq!(t.offer(0, 3, T0 + 10), Err(AllocError::Exhausted));
    // Client 1's hold has run out at T0 + HOLD.
    let end = T0 + u64::from(HOLD);
    assert_eq!(t.offer(0, 3, end), Ok(ip(10)));
    assert_eq!(t.e.lookup(0, &client(1)), None);
    assert_eq!(t.bind(0, 1, ip(10), end), Err(BindError::Taken), "too late");
    assert_eq!(t.reclaim(0, end + 10), 1, "client 2's hold");
    assert!(t.take_events().is_empty(), "offers are never events");
}

#[test]
fn a_passed_offer_is_not_the_clients_own_even_before_reclaim() {
    let t = T::new(1, vec![pool(10, 20, &[])]);
    // Client 1's offer of .10 runs out with client 2's, which reclaim reaches first.
    assert_eq!(t.offer_with(0, 2, None, Some(ip(11)), T0), Ok(ip(11)));
    assert_eq!(t.offer_with(0, 1, None, Some(ip(20)), T0), Ok(ip(20)));
    for c in 3..=6 {
        t.offer(0, c, T0).unwrap();
    }
    // Now it asks for another address: it gets that one, not its old offer again.
    let end = T0 + u64::from(HOLD);
    assert_eq!(t.offer_with(0, 1, None, Some(ip(19)), end), Ok(ip(19)));
}

#[test]
fn moving_to_another_pool_ends_the_old_binding() {
    let mut t = T::new(1, vec![pool(10, 11, &[]), pool(20, 21, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.take_events();
    let key = client(1);
    let req = OfferRequest {
        client: &key,
        pools: &[PoolId(1)],
        reserved: None,
        requested: None,
        info: info(1),
    };
    assert_eq!(t.e.offer(0, &req, T0 + 1), Ok(ip(20)));
    t.e.check_invariants();
    t.reclaim(0, T0 + 1);
    t.expect_events(&[(EventKind::Released, ip(10), LeaseState::Released)]);
    assert_eq!(t.e.stats()[0].free, 2);
}

#[test]
fn expiry_heap_stays_bounded() {
    let t = T::new(1, vec![pool(10, 20, &[])]);
    // Re-offers at one instant: every one leaves a dead heap entry nothing pops.
    for _ in 0..10_000 {
        t.offer(0, 1, T0).unwrap();
    }
    let g = t.e.lock(0);
    assert!(g.expiry.len() <= g.expiry_bound(), "{}", g.expiry.len());
    assert!(g.expiry.len() <= 2 * g.held + 64 + 16, "{}", g.expiry.len());
}

/// Two shards with a record in every state but Expired (clients 2, 3 and 5 in shard 1):
/// what the snapshot tests restore.
fn every_state() -> T {
    let mut t = T::new(2, vec![pool(10, 30, &[12])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.bind(1, 2, ip(20), T0).unwrap();
    t.bind(1, 3, ip(21), T0).unwrap();
    t.release(1, 3, ip(21), T0 + 1);
    t.bind(0, 4, ip(11), T0).unwrap();
    t.decline(0, 4, ip(11), T0 + 2);
    t.offer(0, 4, T0 + 3).unwrap();
    t.bind_with(1, 5, ip(12), true, T0).unwrap();
    t
}

#[test]
fn snapshot_restores_exactly() {
    let t = every_state();
    let snapshot = t.e.leases();
    for order in [false, true] {
        let fresh = engine(2, vec![pool(10, 30, &[12])]);
        let mut records = snapshot.clone();
        if order {
            records.reverse();
        }
        for lease in records {
            let shard = if lease.client == client(2)
                || lease.client == client(3)
                || lease.client == client(5)
            {
                1
            } else {
                0
            };
            fresh.restore(shard, lease).unwrap();
            fresh.check_invariants();
        }
        assert_eq!(fresh.leases(), snapshot);
        assert_eq!(fresh.stats(), t.e.stats());
        assert_eq!(state(&fresh, 1, 3), LeaseState::Released);
        assert_eq!(state(&fresh, 0, 4), LeaseState::Offered);
    }
}

/// The records a restart must rebuild exactly: bindings and quarantines.
fn holds(e: &Engine) -> Vec<Lease> {
    e.leases()
        .into_iter()
        .filter(|l| matches!(l.state, LeaseState::Bound | LeaseState::Declined))
        .collect()
}

/// Restores `records` into a fresh engine, each into the shard `shard_of` its client.
fn restore_into(
    shards: usize,
    pools: Vec<PoolSpec>,
    records: &[Lease],
    shard_of: impl Fn(&ClientKey) -> usize,
) -> Engine {
    let fresh = engine(shards, pools);
    for lease in records {
        fresh
            .restore(shard_of(&lease.client), lease.clone())
            .unwrap();
        fresh.check_invariants();
    }
    fresh
}

#[test]
fn replaying_events_out_of_order_keeps_the_newest_holder() {
    let mut t = T::new(2, vec![pool(10, 10, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.reclaim(0, T0 + 100);
    t.bind(1, 2, ip(10), T0 + 150).unwrap();
    let events = std::mem::take(&mut t.events);
    assert_eq!(events.len(), 3);
    let versions: Vec<u64> = events.iter().map(|e| e.lease.version).collect();
    assert!(versions.is_sorted_by(|a, b| a < b), "{versions:?}");
    // The journal got shard 1's Bound before shard 0's Expired, and nobody folded them.
    let fresh = engine(2, vec![pool(10, 10, &[])]);
    assert_eq!(fresh.restore(0, events[0].lease.clone()), Ok(()));
    assert_eq!(fresh.restore(1, events[2].lease.clone()), Ok(()));
    assert_eq!(
        fresh.restore(0, events[1].lease.clone()),
        Err(BindError::Taken)
    );
    // And a stale Bound loses to the newer one.
    assert_eq!(
        fresh.restore(0, events[0].lease.clone()),
        Err(BindError::Taken)
    );
    fresh.check_invariants();
    let leases = fresh.leases();
    assert_eq!(leases.len(), 1);
    assert_eq!(
        (leases[0].client.clone(), leases[0].state),
        (client(2), LeaseState::Bound)
    );
    assert_eq!(holds(&fresh), holds(&t.e));
}

/// The hazard versions exist for: shard 0 releases client 1's address, lends it to shard 1,
/// which binds it to client 2 in the same second; shard 1's event reaches the journal first.
#[test]
fn release_lend_and_rebind_in_one_second_replays_in_any_order() {
    for fetch in [false, true] {
        // Shard 0 owns .10, shard 1 owns .11.
        let pools = || vec![pool(10, 11, &[])];
        let mut t = T::new(2, pools());
        t.bind(1, 3, ip(11), T0).unwrap();
        // Shard 0's clock runs well ahead of shard 1's.
        for _ in 0..6 {
            t.bind(0, 1, ip(10), T0).unwrap();
        }
        assert!(t.release(0, 1, ip(10), T0));
        if fetch {
            // Shard 1 takes that one address from shard 0.
            t.bind(1, 2, ip(10), T0).unwrap();
        } else {
            // Shard 1 has nothing free: it borrows a chunk of shard 0's free addresses.
            assert_eq!(t.offer(1, 2, T0), Ok(ip(10)));
            t.bind(1, 2, ip(10), T0).unwrap();
        }
        let events = std::mem::take(&mut t.events);
        let released = events
            .iter()
            .find(|e| e.kind == EventKind::Released)
            .unwrap();
        let bound = events.last().unwrap();
        assert_eq!(
            (bound.kind, bound.lease.address, bound.lease.client.clone()),
            (EventKind::Bound, ip(10), client(2))
        );
        assert_eq!(released.lease.address, ip(10));
        assert_eq!(
            (released.lease.expires, bound.lease.starts),
            (T0, T0),
            "times cannot tell"
        );
        assert!(
            bound.lease.version > released.lease.version,
            "lending orders the versions: {} then {}",
            released.lease.version,
            bound.lease.version
        );
        let shard_of = |c: &ClientKey| usize::from(*c != client(1));
        // The journal's order: shard 1's events first.
        let mut journal: Vec<Lease> = events.iter().map(|e| e.lease.clone()).collect();
        journal.reverse();
        let fresh = restore_into(2, pools(), &fold(&journal), shard_of);
        assert_eq!(holds(&fresh), holds(&t.e), "fetch: {fetch}");
        assert_eq!(fresh.leases(), t.e.leases(), "fetch: {fetch}");
        assert_eq!(fresh.stats(), t.e.stats());
        // Unfolded, in that order, the stale Released is refused rather than winning.
        let fresh = engine(2, pools());
        let results: Vec<_> = journal
            .iter()
            .map(|l| fresh.restore(shard_of(&l.client), l.clone()))
            .collect();
        assert!(results.contains(&Err(BindError::Taken)));
        assert_eq!(holds(&fresh), holds(&t.e), "unfolded, fetch: {fetch}");
    }
}

/// An event that waits in its shard keeps the version of its change, not of its hand-out.
#[test]
fn a_delayed_event_keeps_the_version_of_its_change() {
    // Shard 0 owns .10 and .20, shard 1 owns .11 and .21.
    let pools = || vec![pool(10, 11, &[]), pool(20, 21, &[])];
    let mut t = T::new(2, pools());
    t.bind(1, 3, ip(11), T0).unwrap();
    t.bind(0, 1, ip(10), T0).unwrap();
    let offer_p1 = |t: &T, shard: usize, c: u8| {
        let key = client(c);
        let req = OfferRequest {
            client: &key,
            pools: &[PoolId(1)],
            reserved: None,
            requested: None,
            info: info(c),
        };
        t.e.offer(shard, &req, T0).unwrap()
    };
    // Client 1 moves to pool 1: its binding of .10 ends, the Released event waits in shard 0.
    assert_eq!(offer_p1(&t, 0, 1), ip(20));
    // Shard 1 borrows .10 and binds it to client 2; shard 0 keeps changing things.
    assert_eq!(t.offer(1, 2, T0), Ok(ip(10)));
    t.bind(1, 2, ip(10), T0).unwrap();
    for _ in 0..10 {
        offer_p1(&t, 0, 4);
    }
    t.reclaim(0, T0);
    let events = std::mem::take(&mut t.events);
    let kinds: Vec<_> = events.iter().map(|e| (e.kind, e.lease.address)).collect();
    assert_eq!(
        kinds[2..],
        [(EventKind::Bound, ip(10)), (EventKind::Released, ip(10))],
        "handed out late"
    );
    assert!(events[3].lease.version < events[2].lease.version);
    let shard_of = |c: &ClientKey| usize::from(*c == client(2) || *c == client(3));
    let journal: Vec<Lease> = events.iter().map(|e| e.lease.clone()).collect();
    let fresh = restore_into(2, pools(), &fold(&journal), shard_of);
    assert_eq!(holds(&fresh), holds(&t.e));
}

#[test]
fn a_client_with_two_records_keeps_the_newer_in_any_order() {
    // Released X, then bound Y.
    let mut t = T::new(1, vec![pool(10, 20, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    assert!(t.release(0, 1, ip(10), T0 + 1));
    t.bind(0, 1, ip(12), T0 + 2).unwrap();
    // Declined X, then bound Y: the quarantine stays.
    t.bind(0, 2, ip(14), T0).unwrap();
    assert!(t.decline(0, 2, ip(14), T0 + 1));
    t.bind(0, 2, ip(15), T0 + 2).unwrap();
    let journal: Vec<Lease> = t.events.iter().map(|e| e.lease.clone()).collect();
    let folded = fold(&journal);
    assert_eq!(folded.len(), 4);
    for reverse in [false, true] {
        let mut records = folded.clone();
        if reverse {
            records.reverse();
        }
        let fresh = restore_into(1, vec![pool(10, 20, &[])], &records, |_| 0);
        assert_eq!(fresh.leases(), t.e.leases(), "reverse: {reverse}");
        assert_eq!(fresh.stats(), t.e.stats());
        assert_eq!(fresh.lookup(0, &client(1)).unwrap().address, ip(12));
        assert_eq!(fresh.lookup(0, &client(2)).unwrap().address, ip(15));
    }
}

#[test]
fn replay_lifts_a_quarantine_and_keeps_the_new_binding() {
    let mut t = T::new(1, vec![pool(10, 11, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.decline(0, 1, ip(10), T0);
    // The quarantine ends while the client's new binding is live, so the end of the
    // quarantine has a higher version than the binding.
    let end = T0 + u64::from(PROBATION);
    t.bind(0, 1, ip(11), end - 10).unwrap();
    t.reclaim(0, end);
    assert_eq!(state(&t.e, 0, 1), LeaseState::Bound);
    let journal: Vec<Lease> = t.events.iter().map(|e| e.lease.clone()).collect();
    let folded = fold(&journal);
    for reverse in [false, true] {
        let mut records = folded.clone();
        if reverse {
            records.reverse();
        }
        let fresh = restore_into(1, vec![pool(10, 11, &[])], &records, |_| 0);
        assert_same(&fresh, &t.e);
    }
}

#[test]
fn replay_of_a_quarantine_end_leaves_no_hold() {
    let mut t = T::new(1, vec![pool(10, 11, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.decline(0, 1, ip(10), T0);
    t.reclaim(0, T0 + u64::from(PROBATION));
    assert!(t.e.leases().is_empty());
    let journal: Vec<Lease> = t.events.iter().map(|e| e.lease.clone()).collect();
    let fresh = restore_into(1, vec![pool(10, 11, &[])], &fold(&journal), |_| 0);
    // At most a memory of the address for its decliner, which is free.
    assert!(holds(&fresh).is_empty(), "{:?}", fresh.leases());
    let held = |e: &Engine| {
        e.stats()
            .iter()
            .map(|s| (s.free, s.offered, s.bound, s.declined))
            .collect::<Vec<_>>()
    };
    assert_eq!(held(&fresh), held(&t.e));
}

#[test]
fn advance_versions_puts_every_later_event_above_the_floor() {
    let mut t = T::new(3, vec![pool(10, 40, &[])]);
    for shard in 0..3 {
        t.bind(shard, shard as u8, ip(10 + 10 * shard as u8), T0)
            .unwrap();
    }
    let before = t.e.max_version();
    assert!(before >= 1);
    let floor = before + 1000;
    t.e.advance_versions(floor);
    assert_eq!(t.e.max_version(), floor);
    // It never lowers a clock.
    t.e.advance_versions(1);
    assert_eq!(t.e.max_version(), floor);
    t.take_events();
    for shard in 0..3 {
        t.bind(shard, 10 + shard as u8, ip(11 + 10 * shard as u8), T0 + 1)
            .unwrap();
        let events = std::mem::take(&mut t.events);
        assert_eq!(events.len(), 1);
        assert!(
            events[0].lease.version > floor,
            "shard {shard}: {} <= {floor}",
            events[0].lease.version
        );
    }
}

#[test]
fn restore_raises_its_shards_clock() {
    let mut t = T::new(2, vec![pool(10, 20, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    let mut lease = t.e.leases().remove(0);
    lease.version = 5000;
    let fresh = engine(2, vec![pool(10, 20, &[])]);
    fresh.restore(1, lease).unwrap();
    assert_eq!(fresh.max_version(), 5000);
    let mut events = Vec::new();
    let key = client(1);
    let req = BindRequest {
        client: &key,
        address: ip(10),
        pools: P0,
        reserved: false,
        grant: Grant {
            lease_time: 100,
            info: info(1),
        },
    };
    fresh.bind(1, &req, T0 + 1, &mut events).unwrap();
    assert_eq!(events[0].kind, EventKind::Renewed);
    assert!(events[0].lease.version > 5000);
    fresh.check_invariants();
}

#[test]
fn concurrent_workers_never_share_an_address() {
    // Four workers on a pool too small for them all: they borrow from each other constantly.
    let e = std::sync::Arc::new(engine(4, vec![pool(10, 49, &[20])]));
    let workers: Vec<_> = (0..4u8)
        .map(|w| {
            let e = e.clone();
            std::thread::spawn(move || {
                let mut events = Vec::new();
                let mut bound = 0;
                for round in 0..300u64 {
                    let c = w * 16 + (round % 16) as u8;
                    let key = client(c);
                    let now = T0 + round;
                    let req = OfferRequest {
                        client: &key,
                        pools: P0,
                        reserved: None,
                        requested: None,
                        info: info(c),
                    };
                    let Ok(address) = e.offer(usize::from(w), &req, now) else {
                        continue;
                    };
                    let req = BindRequest {
                        client: &key,
                        address,
                        pools: P0,
                        reserved: false,
                        grant: Grant {
                            lease_time: 20,
                            info: info(c),
                        },
                    };
                    if e.bind(usize::from(w), &req, now, &mut events).is_ok() {
                        bound += 1;
                    }
                    if round % 3 == 0 {
                        e.release(usize::from(w), &key, address, now, &mut events);
                    }
                    e.reclaim(usize::from(w), now, 8, &mut events);
                }
                bound
            })
        })
        .collect();
    let bound: u32 = workers.into_iter().map(|w| w.join().unwrap()).sum();
    assert!(bound > 0);
    e.check_invariants();
    // Lending under contention still orders every address's versions.
    assert!(e.check_causality() > 0);
    let s = e.stats()[0];
    assert_eq!(s.free + s.offered + s.bound + s.declined, 39);
}

#[test]
fn a_slash_8_pool_builds_small_and_hands_out_distinct_addresses() {
    let e = Engine::new(EngineConfig {
        shards: 2,
        pools: vec![PoolSpec {
            first: Ipv4Addr::new(10, 0, 0, 0),
            last: Ipv4Addr::new(10, 255, 255, 255),
            excluded: vec![Ipv4Addr::new(10, 0, 0, 0), Ipv4Addr::new(10, 255, 255, 255)],
        }],
        offer_hold: HOLD,
        decline_probation: PROBATION,
    })
    .unwrap();
    assert_eq!(e.stats()[0].total, (1 << 24) - 2);
    {
        // Run containers: a few bytes per 64Ki addresses, not a bit per address.
        let g = e.lock(0);
        assert!(
            g.free[0].clean.serialized_size() < 64 * 1024,
            "{}",
            g.free[0].clean.serialized_size()
        );
    }
    let mut seen = std::collections::HashSet::new();
    for n in 0..1000u32 {
        let key = ClientKey::client_id(&n.to_be_bytes());
        let req = OfferRequest {
            client: &key,
            pools: P0,
            reserved: None,
            requested: None,
            info: info(0),
        };
        let a = e.offer((n % 2) as usize, &req, T0).unwrap();
        assert!(seen.insert(a));
    }
    let s = e.stats()[0];
    assert_eq!((s.offered, s.free), (1000, s.total - 1000));
}

/// Restores `records` through a [`Restorer`], each into the shard `shard_of` its client.
fn bulk_into(
    shards: usize,
    pools: Vec<PoolSpec>,
    records: &[Lease],
    shard_of: impl Fn(&ClientKey) -> usize,
) -> (Engine, crate::v4::RestoreReport) {
    let fresh = engine(shards, pools);
    let mut restorer = fresh.restorer(records.len());
    for lease in records {
        restorer
            .add(shard_of(&lease.client), lease.clone())
            .unwrap();
    }
    let report = restorer.finish();
    fresh.check_invariants();
    (fresh, report)
}

#[test]
fn bulk_restore_of_a_snapshot_is_exact() {
    let t = every_state();
    let snapshot = t.e.leases();
    let shard_of = |c: &ClientKey| usize::from([client(2), client(3), client(5)].contains(c));
    for reverse in [false, true] {
        let mut records = snapshot.clone();
        if reverse {
            records.reverse();
        }
        let (fresh, report) = bulk_into(2, vec![pool(10, 30, &[12])], &records, shard_of);
        assert!(report.bulk);
        assert_eq!((report.added, report.refused), (snapshot.len() as u64, 0));
        assert_eq!(report.records, snapshot.len() as u64);
        assert_eq!(fresh.leases(), snapshot);
        assert_eq!(fresh.stats(), t.e.stats());
        assert_eq!(fresh.max_version(), t.e.max_version());
        assert_eq!(state(&fresh, 1, 3), LeaseState::Released);
        assert_eq!(state(&fresh, 0, 4), LeaseState::Offered);
    }
}

#[test]
fn bulk_restore_keeps_the_newest_record_of_an_address() {
    let mut t = T::new(2, vec![pool(10, 10, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.reclaim(0, T0 + 100);
    t.bind(1, 2, ip(10), T0 + 150).unwrap();
    let events = std::mem::take(&mut t.events);
    let journal: Vec<Lease> = events.iter().map(|e| e.lease.clone()).collect();
    let shard_of = |c: &ClientKey| usize::from(*c == client(2));
    for order in [[0, 1, 2], [2, 1, 0], [1, 2, 0]] {
        let records: Vec<Lease> = order.iter().map(|&i| journal[i].clone()).collect();
        let (fresh, report) = bulk_into(2, vec![pool(10, 10, &[])], &records, shard_of);
        assert_eq!((report.added, report.refused, report.records), (1, 2, 1));
        assert_eq!(holds(&fresh), holds(&t.e), "{order:?}");
        assert_eq!(fresh.leases(), t.e.leases(), "{order:?}");
        assert_eq!(fresh.stats(), t.e.stats());
        // Refused records still raise their shard's clock, as `restore` does.
        assert_eq!(fresh.max_version(), events[2].lease.version);
    }
}

#[test]
fn a_restorer_on_an_engine_in_use_goes_one_by_one() {
    let mut t = T::new(2, vec![pool(10, 30, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.bind(1, 2, ip(25), T0).unwrap();
    let snapshot = t.e.leases();
    let used = engine(2, vec![pool(10, 30, &[])]);
    used.restore(0, snapshot[0].clone()).unwrap();
    let mut restorer = used.restorer(1);
    assert_eq!(restorer.add(0, snapshot[0].clone()), Err(BindError::Taken));
    assert_eq!(restorer.add_ref(1, (&snapshot[1]).into()), Ok(()));
    let report = restorer.finish();
    assert!(!report.bulk);
    assert_eq!((report.added, report.refused, report.records), (1, 1, 2));
    used.check_invariants();
    assert_eq!(used.leases(), snapshot);
    assert_eq!(used.stats(), t.e.stats());
    // An engine whose free sets moved (an offer came and went) is not fresh either.
    let moved = engine(2, vec![pool(10, 11, &[])]);
    let key = client(9);
    let req = OfferRequest {
        client: &key,
        pools: P0,
        reserved: None,
        requested: Some(ip(11)),
        info: info(9),
    };
    assert_eq!(moved.offer(0, &req, T0), Ok(ip(11)));
    moved.reclaim(0, T0 + 1000, 10, &mut Vec::new());
    assert!(moved.leases().is_empty());
    assert!(!moved.restorer(0).finish().bulk);
}

#[test]
fn a_dropped_restorer_finishes() {
    let mut t = T::new(2, vec![pool(10, 30, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    t.bind(1, 2, ip(25), T0).unwrap();
    let fresh = engine(2, vec![pool(10, 30, &[])]);
    {
        let mut restorer = fresh.restorer(2);
        for lease in t.e.leases() {
            let shard = usize::from(lease.client == client(2));
            restorer.add(shard, lease).unwrap();
        }
    }
    fresh.check_invariants();
    assert_same(&fresh, &t.e);
}

#[test]
fn restore_clamps_times_to_u32() {
    let mut t = T::new(1, vec![pool(10, 20, &[])]);
    t.bind(0, 1, ip(10), T0).unwrap();
    let mut lease = t.e.leases().remove(0);
    lease.starts = u64::from(u32::MAX) + 5;
    lease.expires = u64::MAX;
    for bulk in [false, true] {
        let fresh = engine(1, vec![pool(10, 20, &[])]);
        if bulk {
            let mut restorer = fresh.restorer(1);
            restorer.add(0, lease.clone()).unwrap();
            restorer.finish();
        } else {
            fresh.restore(0, lease.clone()).unwrap();
        }
        let back = fresh.leases().remove(0);
        assert_eq!(
            (back.starts, back.expires),
            (u64::from(u32::MAX), u64::from(u32::MAX))
        );
        fresh.check_invariants();
    }
    // A BOOTP binding (lease time u32::MAX) runs until u32::MAX: "never".
    let mut events = Vec::new();
    let key = client(2);
    let req = BindRequest {
        client: &key,
        address: ip(11),
        pools: P0,
        reserved: false,
        grant: Grant {
            lease_time: u32::MAX,
            info: info(2),
        },
    };
    let view = t.e.bind(0, &req, T0, &mut events).unwrap();
    assert_eq!(view.expires, u64::from(u32::MAX));
    assert_eq!(t.e.reclaim(0, u64::from(u32::MAX) - 1, 10, &mut events), 1);
}

/// Enough records for the restorer's threads, in a scrambled order, with a few clients that
/// have two records, long client ids, host names and hardware addresses the key does not
/// spell; then the engine serves.
#[test]
fn a_large_bulk_restore_matches_one_by_one_and_then_serves() {
    let pools = || {
        vec![
            PoolSpec {
                first: Ipv4Addr::new(10, 1, 0, 0),
                last: Ipv4Addr::new(10, 2, 255, 255),
                excluded: vec![Ipv4Addr::new(10, 1, 0, 7)],
            },
            pool(10, 200, &[]),
        ]
    };
    // Past the restorer's threshold for threads; addresses distinct.
    let n = 66_000u32;
    let record = |i: u32| {
        let off = (u64::from(i) * 40_503 % 131_072) as u32;
        let address = Ipv4Addr::from(u32::from(Ipv4Addr::new(10, 1, 0, 0)) + off);
        let id = i % 60_000;
        let client = if id.is_multiple_of(7) {
            ClientKey::client_id(&[0xff; 30][..20 + (id % 11) as usize])
                .as_bytes()
                .iter()
                .chain(&id.to_be_bytes())
                .copied()
                .collect::<Vec<u8>>()
        } else {
            ClientKey::hardware(1, &[2, 0, 0, (id >> 16) as u8, (id >> 8) as u8, id as u8])
                .as_bytes()
                .to_vec()
        };
        let state = match i % 13 {
            0 => LeaseState::Released,
            1 => LeaseState::Declined,
            2 => LeaseState::Expired,
            _ => LeaseState::Bound,
        };
        Lease {
            address,
            pool: None,
            client: ClientKey::from_bytes(&client),
            hw: HwAddr::new(1, &[4, 0, 0, (id >> 16) as u8, (id >> 8) as u8, id as u8]).unwrap(),
            hostname: (!i.is_multiple_of(3)).then(|| format!("host-{i}").as_str().into()),
            state,
            starts: T0,
            expires: T0 + 100 + u64::from(i % 1000),
            version: u64::from(i) * 3 + 1,
        }
    };
    let records: Vec<Lease> = (0..n).map(record).collect();
    let shard_of = |c: &ClientKey| c.as_bytes().iter().map(|&b| usize::from(b)).sum::<usize>() % 3;
    let single = restore_into(3, pools(), &records[..0], shard_of);
    for lease in &records {
        // The excluded address is fixed: whoever restores it keeps it.
        single
            .restore(shard_of(&lease.client), lease.clone())
            .unwrap();
    }
    single.check_invariants();
    let (bulk, report) = bulk_into(3, pools(), &records, shard_of);
    assert!(report.bulk);
    assert_eq!(report.records as usize, single.leases().len());
    assert_same(&bulk, &single);
    assert_eq!(bulk.max_version(), single.max_version());
    for lease in &records {
        let shard = shard_of(&lease.client);
        assert_eq!(
            bulk.lookup(shard, &lease.client),
            single.lookup(shard, &lease.client)
        );
    }
    // Serving: a renewal of a restored binding, and new clients in every shard.
    let bound = bulk
        .leases()
        .into_iter()
        .find(|l| l.state == LeaseState::Bound && l.expires > T0 + 50)
        .unwrap();
    let shard = shard_of(&bound.client);
    let mut events = Vec::new();
    let req = BindRequest {
        client: &bound.client,
        address: bound.address,
        pools: &[PoolId(0)],
        reserved: false,
        grant: Grant {
            lease_time: 100,
            info: info(1),
        },
    };
    bulk.bind(shard, &req, T0 + 50, &mut events).unwrap();
    assert_eq!(events.last().unwrap().kind, EventKind::Renewed);
    assert!(events.last().unwrap().lease.version > bound.version);
    let before = bulk.leases();
    let mut offered = std::collections::HashSet::new();
    for c in 0..30u8 {
        let key = ClientKey::client_id(&[9, c]);
        let req = OfferRequest {
            client: &key,
            pools: &[PoolId(0)],
            reserved: None,
            requested: None,
            info: info(c),
        };
        let a = bulk.offer(usize::from(c % 3), &req, T0 + 50).unwrap();
        assert!(offered.insert(a));
        assert!(
            before
                .iter()
                .all(|l| l.address != a || !crate::shard::is_held(l.state))
        );
    }
    bulk.check_invariants();
    assert!(bulk.check_causality() > 0);
}

#[test]
fn stats_count_records_by_state_and_a_chunked_walk_sees_every_record_once() {
    let mut t = T::new(2, vec![pool(10, 60, &[])]);
    for c in 1..=40 {
        t.bind(usize::from(c % 2), c, ip(9 + c), T0).unwrap();
    }
    assert!(t.release(1, 1, ip(10), T0 + 1));
    assert!(t.release(0, 2, ip(11), T0 + 1));
    assert!(t.decline(1, 3, ip(12), T0 + 1));
    // Client 4's lease (100 s) expires; the others are renewed past it.
    for c in 5..=40 {
        t.bind(usize::from(c % 2), c, ip(9 + c), T0 + 50).unwrap();
    }
    t.reclaim(0, T0 + 120);
    t.reclaim(1, T0 + 120);
    t.e.offer(
        1,
        &OfferRequest {
            client: &client(41),
            pools: P0,
            reserved: None,
            requested: None,
            info: info(41),
        },
        T0 + 120,
    )
    .unwrap();
    let s = t.stats();
    assert_eq!(
        (s.bound, s.released, s.declined, s.expired, s.offered),
        (36, 2, 1, 1, 1)
    );
    assert_eq!(s.free + s.offered + s.bound + s.declined, s.total);

    // Every chunk size sees each record once, the same records as `leases`.
    for chunk in [1, 3, 7, 64] {
        let mut seen = Vec::new();
        t.e.visit_leases(chunk, |l| {
            seen.push(l);
            ControlFlow::Continue(())
        });
        seen.sort_by_key(|l| l.address);
        assert_eq!(seen, t.e.leases(), "chunk {chunk}");
    }
    // A visitor that breaks stops the walk.
    let mut n = 0;
    t.e.visit_leases(4, |_| {
        n += 1;
        if n == 5 {
            ControlFlow::Break(())
        } else {
            ControlFlow::Continue(())
        }
    });
    assert_eq!(n, 5);
}
