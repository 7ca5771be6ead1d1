//! Unit tests of the v6 engine's rules, one scenario each.

use std::net::Ipv6Addr;

use crate::lease::{EventKind, LeaseState, Time};

use super::engine::Tuning;
use super::space::Space;
use super::*;

const HOLD: u32 = 30;
const PROBATION: u32 = 600;
const T0: Time = 1_000;

fn ip(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn na_pool(first: &str, last: &str, excluded: &[&str]) -> PoolSpec {
    PoolSpec::Na {
        first: ip(first),
        last: ip(last),
        excluded: excluded.iter().map(|e| ip(e)).collect(),
    }
}

fn pd_pool(prefix: &str, prefix_len: u8, delegated_len: u8, excluded: &[(&str, u8)]) -> PoolSpec {
    PoolSpec::Pd {
        prefix: ip(prefix),
        prefix_len,
        delegated_len,
        excluded: excluded.iter().map(|&(e, l)| (ip(e), l)).collect(),
    }
}

fn config(shards: usize, pools: Vec<PoolSpec>) -> EngineConfig {
    EngineConfig {
        shards,
        pools,
        offer_hold: HOLD,
        decline_probation: PROBATION,
    }
}

fn duid(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    vec![0, 3, 0, 1, 2, 0, b[0], b[1], b[2], b[3]]
}

fn na(n: u32) -> IaKey {
    IaKey::new(&duid(n), 1, IaKind::Na)
}

fn pd(n: u32) -> IaKey {
    IaKey::new(&duid(n), 1, IaKind::Pd)
}

fn addr(s: &str) -> Resource {
    Resource::address(ip(s))
}

const P0: &[PoolId] = &[PoolId(0)];
const P1: &[PoolId] = &[PoolId(1)];

/// Test driver: one engine and the events so far.
struct T {
    e: Engine,
    events: Vec<LeaseEvent>,
    /// Check every invariant after every call.
    check: bool,
}

impl T {
    fn new(shards: usize, pools: Vec<PoolSpec>) -> Self {
        Self::tuned(shards, pools, Tuning::default())
    }

    fn tuned(shards: usize, pools: Vec<PoolSpec>, tuning: Tuning) -> Self {
        Self {
            e: Engine::with_tuning(config(shards, pools), tuning).unwrap(),
            events: Vec::new(),
            check: true,
        }
    }

    fn shard(&self, key: &IaKey) -> usize {
        self.e.owner(key.duid())
    }

    fn solicit_with(
        &self,
        key: &IaKey,
        pools: &[PoolId],
        reserved: Option<Resource>,
        hint: Option<Resource>,
        now: Time,
    ) -> Option<LeaseView> {
        let req = SolicitRequest {
            client: key,
            pools,
            reserved,
            requested: hint,
            info: (),
        };
        let r = self.e.solicit(self.shard(key), &req, now);
        self.check();
        r
    }

    fn solicit(&self, key: &IaKey, pools: &[PoolId], now: Time) -> Option<Resource> {
        self.solicit_with(key, pools, None, None, now)
            .map(|v| v.resource)
    }

    fn bind_with(
        &mut self,
        key: &IaKey,
        res: Resource,
        pools: &[PoolId],
        reserved: bool,
        now: Time,
    ) -> Result<LeaseView, BindError> {
        let req = BindRequest {
            client: key,
            address: res,
            pools,
            reserved,
            grant: Grant {
                preferred: 50,
                valid: 100,
            },
        };
        let shard = self.shard(key);
        let r = self.e.bind(shard, &req, now, &mut self.events);
        self.check();
        r
    }

    fn bind(
        &mut self,
        key: &IaKey,
        res: Resource,
        pools: &[PoolId],
        now: Time,
    ) -> Result<LeaseView, BindError> {
        self.bind_with(key, res, pools, false, now)
    }

    fn release(&mut self, key: &IaKey, res: Resource, now: Time) -> bool {
        let shard = self.shard(key);
        let r = self.e.release(shard, key, res, now, &mut self.events);
        self.check();
        r
    }

    fn decline(&mut self, key: &IaKey, res: Resource, now: Time) -> bool {
        let shard = self.shard(key);
        let r = self.e.decline(shard, key, res, now, &mut self.events);
        self.check();
        r
    }

    fn check(&self) {
        if self.check {
            self.e.check_invariants();
        }
    }

    fn reclaim_all(&mut self, now: Time) -> usize {
        let mut n = 0;
        for shard in 0..self.e.shards() {
            n += self.e.reclaim(shard, now, usize::MAX, &mut self.events);
        }
        self.e.check_invariants();
        n
    }

    fn last_event(&self) -> (EventKind, LeaseState, Resource) {
        let e = self.events.last().expect("an event");
        (e.kind, e.lease.state, e.lease.resource)
    }

    /// A fresh engine with this one's snapshot restored, one by one.
    fn restored(&self, shards: usize, pools: Vec<PoolSpec>) -> Engine {
        let fresh = Engine::new(config(shards, pools)).unwrap();
        let mut restorer = fresh.restorer(0);
        for lease in self.e.leases() {
            let shard = fresh.owner(lease.client.duid());
            restorer.add(shard, lease).unwrap();
        }
        restorer.finish();
        fresh.check_invariants();
        fresh
    }
}

fn small() -> Vec<PoolSpec> {
    vec![
        na_pool("2001:db8::10", "2001:db8::19", &["2001:db8::15"]),
        pd_pool("2001:db8:100::", 48, 56, &[("2001:db8:100:300::", 60)]),
    ]
}

#[test]
fn solicit_bind_renew_release_and_affinity() {
    let mut t = T::new(1, small());
    let c = na(1);
    let a = t.solicit(&c, P0, T0).unwrap();
    assert_eq!(a, addr("2001:db8::10"));
    assert!(t.events.is_empty(), "an advertise is not an event");
    // The same resource again while the advertise holds.
    assert_eq!(t.solicit(&c, P0, T0 + 1), Some(a));
    let view = t.bind(&c, a, P0, T0 + 2).unwrap();
    assert_eq!(
        (view.state, view.starts, view.preferred, view.expires),
        (LeaseState::Bound, T0 + 2, 50, T0 + 102)
    );
    assert_eq!(t.last_event(), (EventKind::Bound, LeaseState::Bound, a));
    t.bind(&c, a, P0, T0 + 50).unwrap();
    assert_eq!(t.last_event().0, EventKind::Renewed);
    // A solicit for a bound IA leaves the binding as it is.
    let again = t.solicit_with(&c, P0, None, None, T0 + 51).unwrap();
    assert_eq!((again.resource, again.state), (a, LeaseState::Bound));
    assert!(t.release(&c, a, T0 + 60));
    assert_eq!(
        t.last_event(),
        (EventKind::Released, LeaseState::Released, a)
    );
    assert!(!t.release(&c, a, T0 + 61), "released twice");
    // Another IA takes the clean addresses first; the released IA gets its address back.
    assert_eq!(t.solicit(&na(2), P0, T0 + 62), Some(addr("2001:db8::11")));
    assert_eq!(t.solicit(&c, P0, T0 + 63), Some(a));
    let stats = t.e.stats();
    assert_eq!((stats[0].total, stats[0].free, stats[0].offered), (9, 7, 2));
    let versions: Vec<u64> = t.events.iter().map(|e| e.lease.version).collect();
    assert!(versions.windows(2).all(|w| w[0] < w[1]));
    assert!(t.e.max_version() >= *versions.last().unwrap());
}

#[test]
fn ia_keys_of_one_duid_are_independent() {
    let mut t = T::new(2, small());
    let d = duid(8); // owned by shard 0, whose block starts the prefix pool
    assert_eq!(t.e.owner(&d), 0);
    let (one, two) = (IaKey::new(&d, 1, IaKind::Na), IaKey::new(&d, 2, IaKind::Na));
    let prefix = IaKey::new(&d, 1, IaKind::Pd);
    let a1 = t.solicit(&one, P0, T0).unwrap();
    let a2 = t.solicit(&two, P0, T0).unwrap();
    assert_ne!(a1, a2);
    // Kinds do not mix: an IA_NA asking a PD pool gets nothing, and the other way round.
    assert_eq!(t.solicit(&one, P1, T0), None);
    assert_eq!(t.solicit(&prefix, P0, T0), None);
    let p = t.solicit(&prefix, P1, T0).unwrap();
    assert_eq!(p, Resource::prefix(ip("2001:db8:100::"), 56));
    assert_eq!(t.bind(&prefix, a1, P0, T0), Err(BindError::NotInPool));
    t.bind(&prefix, p, P1, T0).unwrap();
    assert_eq!(t.e.lookup(t.shard(&prefix), &prefix).unwrap().resource, p);
}

#[test]
fn exhaustion_only_when_every_shard_is_dry() {
    for shards in 1..=4 {
        let mut t = T::new(shards, small());
        let mut got = std::collections::BTreeSet::new();
        for n in 0..9 {
            let c = na(n);
            let a = t
                .solicit(&c, P0, T0)
                .unwrap_or_else(|| panic!("{n} of 9 in {shards}"));
            assert!(got.insert(a), "{a} twice");
            t.bind(&c, a, P0, T0).unwrap();
        }
        assert!(
            !got.contains(&addr("2001:db8::15")),
            "excluded address handed out"
        );
        assert_eq!(t.solicit(&na(100), P0, T0), None);
        assert_eq!(t.e.stats()[0].free, 0);
        // Once a lease expires, its address is free again, whichever shard has it.
        t.reclaim_all(T0 + 100);
        assert!(t.solicit(&na(100), P0, T0 + 100).is_some());
    }
}

#[test]
fn pd_pools_delegate_aligned_prefixes_minus_exclusions() {
    let mut t = T::new(3, small());
    let mut got = Vec::new();
    for n in 0..256 {
        let c = pd(n);
        let Some(p) = t.solicit(&c, P1, T0) else {
            break;
        };
        assert_eq!(p.len, 56);
        assert_eq!(u128::from(p.addr) & ((1 << 72) - 1), 0, "{p} misaligned");
        assert_ne!(
            p.addr,
            ip("2001:db8:100:300::"),
            "excluded prefix delegated"
        );
        t.bind(&c, p, P1, T0).unwrap();
        got.push(p);
    }
    assert_eq!(got.len(), 255);
    assert_eq!(t.e.stats()[1].bound, 255);
}

#[test]
fn decline_quarantines_until_probation_ends() {
    let mut t = T::new(1, vec![na_pool("2001:db8::1", "2001:db8::2", &[])]);
    let c = na(1);
    let a = t.solicit(&c, P0, T0).unwrap();
    t.bind(&c, a, P0, T0).unwrap();
    assert!(!t.decline(&na(2), a, T0), "not the IA's");
    assert!(t.decline(&c, a, T0 + 1));
    assert_eq!(
        t.last_event(),
        (EventKind::Declined, LeaseState::Declined, a)
    );
    assert_eq!(t.bind(&na(3), a, P0, T0 + 2), Err(BindError::Quarantined));
    assert_eq!(t.bind(&c, a, P0, T0 + 2), Err(BindError::Quarantined));
    // The decliner moves on to the other address; the quarantine stays.
    let b = t.solicit(&c, P0, T0 + 3).unwrap();
    assert_ne!(a, b);
    assert_eq!(t.solicit(&na(3), P0, T0 + 3), None);
    t.reclaim_all(T0 + 1 + u64::from(PROBATION));
    assert_eq!(t.last_event(), (EventKind::Expired, LeaseState::Expired, a));
    assert_eq!(t.solicit(&na(3), P0, T0 + 700), Some(a));
}

#[test]
fn static_assignments_inside_and_outside_pools() {
    let mut t = T::new(2, small());
    let (owner, other) = (na(1), na(2));
    // Reserved inside the pool (and excluded from it), and outside every pool.
    let inside = addr("2001:db8::15");
    let outside = addr("2001:db8:ffff::1");
    let v = t.solicit_with(&owner, P0, Some(inside), None, T0).unwrap();
    assert_eq!((v.resource, v.pool), (inside, Some(PoolId(0))));
    t.bind_with(&owner, inside, P0, true, T0).unwrap();
    assert_eq!(t.bind(&other, inside, P0, T0), Err(BindError::Taken));
    // Nobody else gets it dynamically either, even when the pool runs dry.
    for n in 10..30 {
        if let Some(a) = t.solicit(&na(n), P0, T0) {
            assert_ne!(a, inside);
        }
    }
    let v = t
        .solicit_with(&other, &[], Some(outside), None, T0)
        .unwrap();
    assert_eq!((v.resource, v.pool), (outside, None));
    t.bind_with(&other, outside, &[], true, T0).unwrap();
    assert_eq!(t.bind(&owner, outside, P0, T0), Err(BindError::NotInPool));
    // A static prefix that is not one of the pool's /56s.
    let p60 = Resource::prefix(ip("2001:db8:100:300::"), 60);
    let v = t.solicit_with(&pd(1), P1, Some(p60), None, T0).unwrap();
    assert_eq!((v.resource, v.pool), (p60, Some(PoolId(1))));
    assert_eq!(t.bind(&pd(2), p60, P1, T0), Err(BindError::Taken));
}

#[test]
fn hints_are_honoured_even_from_a_sibling() {
    let mut t = T::new(4, small());
    for n in 0..4 {
        let c = na(n);
        let hint = addr(&format!("2001:db8::{:x}", 0x19 - n));
        let got = t.solicit_with(&c, P0, None, Some(hint), T0).unwrap();
        assert_eq!(got.resource, hint);
    }
    // A hint held by another IA, or outside the candidate pools, is ignored.
    let got = t
        .solicit_with(&na(9), P0, None, Some(addr("2001:db8::19")), T0)
        .unwrap();
    assert_ne!(got.resource, addr("2001:db8::19"));
    let got = t
        .solicit_with(&na(10), P0, None, Some(addr("2001:db8:1::1")), T0)
        .unwrap();
    assert!(got.pool == Some(PoolId(0)));
    // Binding an address another shard owns moves it.
    let c = na(20);
    let last = t.solicit(&c, P0, T0).unwrap();
    t.bind(&c, last, P0, T0).unwrap();
}

/// Both IA_NA pools of the waiting tests, A then B.
const AB: &[PoolId] = &[PoolId(0), PoolId(1)];

#[test]
fn a_waiting_pool_renews_its_ias_and_gives_out_nothing_free() {
    let a = na_pool("2001:db8::10", "2001:db8::1f", &[]);
    let mut t = T::new(1, vec![a, na_pool("2001:db8::20", "2001:db8::2f", &[])]);
    let (kept, advertised) = (na(1), na(2));
    let own = t.solicit(&kept, AB, T0).unwrap();
    t.bind(&kept, own, AB, T0).unwrap();
    let held = t.solicit(&advertised, AB, T0).unwrap();
    t.e.set_waiting(PoolId(0), true);
    assert!(t.e.is_waiting(PoolId(0)) && !t.e.is_waiting(PoolId(9)));
    // Neither a solicit, its hint nor a bind takes a free address of A.
    let hint = Some(addr("2001:db8::12"));
    let v = t.solicit_with(&na(3), AB, None, hint, T0).unwrap();
    assert_eq!(
        (v.resource, v.pool),
        (addr("2001:db8::20"), Some(PoolId(1)))
    );
    let refused = t.bind(&na(4), addr("2001:db8::12"), AB, T0);
    assert_eq!(refused, Err(BindError::Taken));
    // The IAs with an advertise or a binding in A keep them.
    assert_eq!(t.solicit(&kept, AB, T0 + 1), Some(own));
    t.bind(&kept, own, AB, T0 + 1).unwrap();
    assert_eq!(t.last_event(), (EventKind::Renewed, LeaseState::Bound, own));
    t.bind(&advertised, held, AB, T0 + 1).unwrap();
    assert_eq!(t.last_event(), (EventKind::Bound, LeaseState::Bound, held));
    t.e.set_waiting(PoolId(0), false);
    assert_eq!(t.solicit(&na(5), AB, T0 + 2), Some(addr("2001:db8::12")));
}

#[test]
fn no_sibling_lends_or_hands_over_a_waiting_pools_resource() {
    // Of two shards, the second owns all that is free: A's ::1e-::1f, B's ::2e-::2f.
    let a = na_pool(
        "2001:db8::1c",
        "2001:db8::1f",
        &["2001:db8::1c", "2001:db8::1d"],
    );
    let b = na_pool(
        "2001:db8::2c",
        "2001:db8::2f",
        &["2001:db8::2c", "2001:db8::2d"],
    );
    let mut t = T::new(2, vec![a, b]);
    let ia = na(0);
    assert_eq!(t.shard(&ia), 0);
    t.e.set_waiting(PoolId(0), true);
    let v = t.solicit_with(&ia, AB, None, Some(addr("2001:db8::1f")), T0);
    assert_eq!(v.and_then(|v| v.pool), Some(PoolId(1)));
    let refused = t.bind(&na(2), addr("2001:db8::1e"), AB, T0);
    assert_eq!(refused, Err(BindError::Taken));
    assert_eq!(t.e.lock(1).free_len(PoolId(0)), 2, "A's resources moved");
    t.e.set_waiting(PoolId(0), false);
    let v = t.solicit_with(&na(4), AB, None, None, T0);
    assert_eq!(v.and_then(|v| v.pool), Some(PoolId(0)));
}

#[test]
fn advertises_end_silently_and_bindings_expire_with_events() {
    let mut t = T::new(1, small());
    let c = na(1);
    let a = t.solicit(&c, P0, T0).unwrap();
    assert_eq!(t.reclaim_all(T0 + u64::from(HOLD)), 1);
    assert!(t.events.is_empty());
    assert!(t.e.lookup(0, &c).is_none());
    t.bind(&c, a, P0, T0 + 40).unwrap();
    assert_eq!(t.reclaim_all(T0 + 140), 1);
    assert_eq!(t.last_event(), (EventKind::Expired, LeaseState::Expired, a));
    let v = t.e.lookup(0, &c).unwrap();
    assert_eq!((v.state, v.preferred), (LeaseState::Expired, 0));
    // An expired IA renewing gets its address back if it is still free.
    t.bind(&c, a, P0, T0 + 200).unwrap();
    assert_eq!(t.last_event().0, EventKind::Bound);
}

/// A /64 of addresses (one excluded) and a /32 split into /56s.
fn huge_pools() -> Vec<PoolSpec> {
    vec![
        na_pool(
            "2001:db8::",
            "2001:db8::ffff:ffff:ffff:ffff",
            &["2001:db8::1"],
        ),
        pd_pool("2001:db9::", 32, 56, &[]),
    ]
}

#[test]
fn a_64_pool_and_a_32_into_56_pool_cost_only_their_leases() {
    let mut t = T::new(2, huge_pools());
    t.check = false;
    let stats = t.e.stats();
    assert_eq!(stats[0].total, (1 << 64) - 1);
    assert_eq!(stats[1].total, 1 << 24);
    let mut seen = std::collections::HashSet::new();
    for n in 0..2000 {
        let (a, p) = (na(n), pd(n));
        let ra = t.solicit(&a, P0, T0).unwrap();
        let rp = t.solicit(&p, P1, T0).unwrap();
        assert!(seen.insert(ra) && seen.insert(rp));
        assert_eq!(rp.len, 56);
        t.bind(&a, ra, P0, T0).unwrap();
        t.bind(&p, rp, P1, T0).unwrap();
    }
    // Structure, not timing: each shard owns one or two intervals of each pool (its block,
    // split by the exclusion), no bitmap, and one record per lease.
    for s in 0..2 {
        let g = t.e.lock(s);
        for part in g.parts.iter() {
            let Space::Sparse { owned, .. } = &part.space else {
                panic!("a large pool is sparse");
            };
            assert!(owned.count() <= 2, "{} intervals", owned.count());
        }
    }
    t.e.check_invariants();
    let records: usize = (0..2).map(|s| t.e.lock(s).records.len()).sum();
    assert_eq!(records, 4000);
    // About 100 bytes a lease, whatever the pools' sizes (slab and table growth included):
    // the slab's 80-byte slots, two tables of 4-byte entries, an 8-byte heap entry.
    let bytes: usize = (0..2)
        .map(|s| {
            let g = t.e.lock(s);
            g.records.heap_bytes() + g.expiry.capacity() * 8
        })
        .sum();
    assert!(bytes < 4000 * 256, "{bytes} bytes for 4000 leases");
    let stats = t.e.stats();
    assert_eq!(stats[0].free, (1 << 64) - 1 - 2000);
    assert_eq!(stats[1].bound, 2000);
    // The addresses are spread over the /64, not handed out from its start.
    let high = seen
        .iter()
        .filter(|r| r.len == 128 && u128::from(r.addr) & ((1 << 64) - 1) > 1 << 62)
        .count();
    assert!(high > 1000, "{high}");
    let restored = t.restored(2, huge_pools());
    assert_eq!(restored.leases(), t.e.leases());
    assert_eq!(restored.stats(), t.e.stats());
}

#[test]
fn a_sparse_pool_forgets_its_oldest_memories_beyond_the_cap() {
    let tuning = Tuning {
        dense_max: 0,
        remember_min: 3,
    };
    let mut t = T::tuned(
        1,
        vec![na_pool("2001:db8::", "2001:db8::ffff", &[])],
        tuning,
    );
    let mut first = None;
    for n in 0..10 {
        let c = na(n);
        let a = t.solicit(&c, P0, T0).unwrap();
        first.get_or_insert(a);
        t.bind(&c, a, P0, T0).unwrap();
        assert!(t.release(&c, a, T0 + 1));
    }
    assert_eq!(t.e.leases().len(), 3);
    // The forgotten IA still gets the same address: its hashed target.
    assert_eq!(t.solicit(&na(0), P0, T0 + 2), first);
}

#[test]
fn owner_is_a_fixed_function_of_the_duid() {
    let e = Engine::new(config(3, small())).unwrap();
    let f = Engine::new(config(3, vec![])).unwrap();
    let mut counts = [0; 3];
    for n in 0..3000 {
        let s = e.owner(&duid(n));
        assert_eq!(s, f.owner(&duid(n)));
        counts[s] += 1;
    }
    assert!(counts.iter().all(|&c| c > 800), "{counts:?}");
    // The last four bytes, big-endian, modulo the shards: what the steering program reads.
    let g = Engine::new(config(5, vec![])).unwrap();
    assert_eq!(
        g.owner(&[0, 1, 0, 1, 9, 9, 9, 9, 0, 0x42, 0, 0, 1, 7]),
        0x0107 % 5
    );
    assert_eq!(
        g.owner(&[0xff, 0xff, 0xff, 0xfe]),
        (0xffff_fffe_u32 % 5) as usize
    );
    // Shorter DUIDs are zero-padded in front.
    assert_eq!(g.owner(&[1, 3]), 0x0103 % 5);
    assert_eq!(g.owner(&[]), 0);
    assert_eq!(Engine::new(config(1, vec![])).unwrap().owner(&[]), 0);
    assert!(matches!(
        Engine::new(config(0, vec![])),
        Err(ConfigError::NoShards)
    ));
}

#[test]
fn snapshot_restores_exactly() {
    let mut t = T::new(3, small());
    for n in 0..12 {
        let c = if n % 2 == 0 { na(n) } else { pd(n) };
        let pools = if n % 2 == 0 { P0 } else { P1 };
        let r = t.solicit(&c, pools, T0).unwrap();
        t.bind(&c, r, pools, T0).unwrap();
        match n % 4 {
            0 => assert!(t.release(&c, r, T0 + 1)),
            1 => assert!(t.decline(&c, r, T0 + 1)),
            _ => {}
        }
    }
    for shard in 0..3 {
        t.e.reclaim(shard, T0 + 1, 0, &mut t.events);
    }
    assert_eq!(t.e.check_causality(), t.events.len());
    assert_eq!(t.e.trace().len(), t.events.len());
    assert_eq!(t.e.pools().len(), 2);
    let restored = t.restored(3, small());
    assert_eq!(restored.leases(), t.e.leases());
    assert_eq!(restored.stats(), t.e.stats());
    for n in 0..12 {
        let c = if n % 2 == 0 { na(n) } else { pd(n) };
        let shard = t.shard(&c);
        assert_eq!(restored.lookup(shard, &c), t.e.lookup(shard, &c));
    }
    restored.advance_versions(t.e.max_version());
    assert_eq!(restored.max_version(), t.e.max_version());
}

#[test]
fn a_32_into_64_pd_pool_delegates_from_2_to_the_32_prefixes() {
    let mut t = T::new(
        3,
        vec![pd_pool("2001:db8::", 32, 64, &[("2001:db8::", 48)])],
    );
    t.check = false;
    assert_eq!(t.e.stats()[0].total, (1 << 32) - (1 << 16));
    for n in 0..300 {
        let c = pd(n);
        let p = t.solicit(&c, P0, T0).unwrap();
        assert_eq!(p.len, 64);
        let bits = u128::from(p.addr);
        assert_eq!(bits >> 96, 0x2001_0db8);
        assert_eq!(bits & u128::from(u64::MAX), 0);
        assert_ne!((bits >> 80) & 0xffff, 0, "{p} is in the excluded /48");
        t.bind(&c, p, P0, T0).unwrap();
    }
    t.e.check_invariants();
    assert_eq!(t.e.stats()[0].bound, 300);
}
