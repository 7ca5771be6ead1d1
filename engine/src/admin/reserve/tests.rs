//! Reserving and unreserving addresses (resources) inside the pools of a running engine,
//! for both families: never handed out dynamically, a holder keeps its record, a journal
//! replayed afterwards gives the same leases.

use std::fmt::Display;
use std::net::{Ipv4Addr, Ipv6Addr};

use crate::admin::Exclude;
use crate::engine_core::Core;
use crate::testkit::fold;
use crate::v4::{
    BindError, BindRequest, ClientKey, Engine, EngineConfig, HwAddr, Lease, LeaseEvent, LeaseInfo,
    OfferRequest, PoolId, PoolSpec,
};
use crate::v6::{self, IaKey, IaKind, Resource};
use crate::{Exclusions, LeaseState, Time};

const NOW: Time = 1_700_000_000;

fn config4(excluded: &[Ipv4Addr]) -> EngineConfig {
    EngineConfig {
        shards: 2,
        pools: vec![PoolSpec {
            first: ip(10),
            last: ip(29),
            excluded: excluded.to_vec(),
        }],
        offer_hold: 30,
        decline_probation: 3600,
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn key(n: u8) -> ClientKey {
    ClientKey::hardware(1, &mac(n))
}

fn info(n: &[u8; 6]) -> LeaseInfo<'static> {
    LeaseInfo {
        hw: HwAddr::new(1, n).unwrap(),
        hostname: None,
    }
}

/// Client `n` binds `addr` in `shard` for `secs`, as its reservation or not.
fn bind(
    e: &Engine,
    shard: usize,
    n: u8,
    addr: Ipv4Addr,
    reserved: bool,
    secs: u32,
    events: &mut Vec<LeaseEvent>,
) -> Result<Ipv4Addr, BindError> {
    let client = key(n);
    let req = BindRequest {
        client: &client,
        address: addr,
        pools: &[PoolId(0)],
        reserved,
        grant: crate::v4::Grant {
            lease_time: secs,
            info: info(&mac(n)),
        },
    };
    e.bind(shard, &req, NOW, events).map(|v| v.address)
}

fn offer(
    e: &Engine,
    n: u8,
    reserved: Option<Ipv4Addr>,
    requested: Option<Ipv4Addr>,
) -> Option<Ipv4Addr> {
    let client = key(n);
    let req = OfferRequest {
        client: &client,
        pools: &[PoolId(0)],
        reserved,
        requested,
        info: info(&mac(n)),
    };
    e.offer(usize::from(n % 2), &req, NOW).ok()
}

/// Offers to new clients (200 on) until the pool is exhausted: every address still free.
fn offer_all(e: &Engine) -> Vec<Ipv4Addr> {
    let got: Vec<Ipv4Addr> = (200..=255).map_while(|n| offer(e, n, None, None)).collect();
    assert!(got.len() < 56, "the pool was never exhausted");
    got
}

#[test]
fn v4_a_reserved_free_address_is_only_its_reservations() {
    let e = Engine::new(config4(&[])).unwrap();
    assert_eq!(e.reserve(ip(15)), Ok(true));
    assert_eq!(e.reserve(ip(15)), Ok(false), "fixed already");
    assert_eq!(e.reserve(ip(99)), Ok(false), "in no pool");
    e.check_invariants();
    assert_eq!(e.stats()[0].total, 19);
    let mut events = Vec::new();
    for shard in 0..2 {
        let got = bind(&e, shard, 1, ip(15), false, 600, &mut events);
        assert_eq!(got, Err(BindError::Taken), "shard {shard}");
    }
    assert_ne!(offer(&e, 1, None, Some(ip(15))), Some(ip(15)));
    let free = offer_all(&e);
    assert_eq!(free.len(), 18, "{free:?}");
    assert!(!free.contains(&ip(15)));
    // The client it is reserved for gets it.
    assert_eq!(offer(&e, 3, Some(ip(15)), None), Some(ip(15)));
    assert_eq!(bind(&e, 1, 3, ip(15), true, 600, &mut events), Ok(ip(15)));
    e.check_invariants();
}

#[test]
fn v4_a_reserved_address_stays_with_its_holder_and_is_not_freed_when_that_ends() {
    let e = Engine::new(config4(&[])).unwrap();
    let mut events = Vec::new();
    // 12: bound; 13: bound for 10 s; 20: bound, released later; 22: released already; 24:
    // quarantined; 26: offered.
    for (n, addr, secs) in [
        (1, 12, 600),
        (2, 13, 10),
        (3, 20, 600),
        (4, 22, 600),
        (5, 24, 600),
    ] {
        bind(
            &e,
            usize::from(n % 2),
            n,
            ip(addr),
            false,
            secs,
            &mut events,
        )
        .unwrap();
    }
    assert!(e.release(0, &key(4), ip(22), NOW, &mut events));
    assert!(e.decline(1, &key(5), ip(24), NOW, &mut events));
    assert_eq!(offer(&e, 6, None, Some(ip(26))), Some(ip(26)));
    for addr in [12, 13, 20, 22, 24, 26] {
        assert_eq!(e.reserve(ip(addr)), Ok(true), "{addr}");
    }
    e.check_invariants();
    let state = |a| e.get(ip(a)).map(|l| (l.state, l.client));
    assert_eq!(state(12), Some((LeaseState::Bound, key(1))));
    assert_eq!(state(24), Some((LeaseState::Declined, key(5))));
    assert_eq!(state(26), None, "the offer ended");
    assert_eq!(
        bind(&e, 0, 6, ip(26), false, 600, &mut events),
        Err(BindError::Taken)
    );
    // The holder may not renew an address reserved for another client; its bindings end.
    assert_eq!(
        bind(&e, 1, 1, ip(12), false, 600, &mut events),
        Err(BindError::Taken)
    );
    assert!(e.release(1, &key(3), ip(20), NOW, &mut events));
    e.reclaim(0, NOW + 20, 100, &mut events);
    e.reclaim(1, NOW + 20, 100, &mut events);
    assert_eq!(state(13).map(|s| s.0), Some(LeaseState::Expired));
    e.check_invariants();
    let free = offer_all(&e);
    assert_eq!(free.len(), 14, "{free:?}");
    for addr in [12, 13, 20, 22, 24, 26] {
        assert!(!free.contains(&ip(addr)), "{addr} handed out");
    }
    e.check_invariants();
}

#[test]
fn v4_an_unreserved_address_is_handed_out_again() {
    // 11 is excluded by the configuration, 15 at run time; both come back.
    let e = Engine::new(config4(&[ip(11)])).unwrap();
    let mut events = Vec::new();
    assert_eq!(e.reserve(ip(15)), Ok(true));
    assert_eq!(e.reserve(ip(16)), Ok(true));
    // 16's client binds it as its reservation, then the reservation goes.
    assert_eq!(bind(&e, 0, 7, ip(16), true, 600, &mut events), Ok(ip(16)));
    for addr in [11, 15, 16] {
        assert_eq!(e.unreserve(ip(addr)), Ok(true), "{addr}");
    }
    assert_eq!(e.unreserve(ip(15)), Ok(false), "dynamic already");
    assert_eq!(e.unreserve(ip(99)), Ok(false), "in no pool");
    e.check_invariants();
    assert_eq!(e.stats()[0].total, 20);
    assert_eq!(e.stats()[0].bound, 1);
    // 16 stays its client's, now a dynamic lease it renews.
    assert_eq!(bind(&e, 0, 7, ip(16), false, 600, &mut events), Ok(ip(16)));
    let free = offer_all(&e);
    assert_eq!(free.len(), 19, "{free:?}");
    assert!(free.contains(&ip(11)) && free.contains(&ip(15)));
    assert!(!free.contains(&ip(16)));
    e.check_invariants();
    // Once released, it is free for anyone.
    assert!(e.release(0, &key(7), ip(16), NOW, &mut events));
    assert_eq!(offer(&e, 150, None, Some(ip(16))), Some(ip(16)));
    e.check_invariants();
}

#[test]
fn v4_a_journal_replayed_after_reservations_gives_the_same_leases() {
    let e = Engine::new(config4(&[ip(11)])).unwrap();
    let mut events = Vec::new();
    for n in 1..=6 {
        bind(
            &e,
            usize::from(n % 2),
            n,
            ip(10 + 2 * n),
            false,
            600,
            &mut events,
        )
        .unwrap();
    }
    assert_eq!(e.reserve(ip(14)), Ok(true));
    assert_eq!(e.reserve(ip(19)), Ok(true));
    assert_eq!(e.unreserve(ip(11)), Ok(true));
    assert!(e.release(0, &key(2), ip(14), NOW, &mut events));
    assert_eq!(bind(&e, 1, 9, ip(19), true, 600, &mut events), Ok(ip(19)));
    // In the shard that remembers 14 for client 2 (another shard's would not see that).
    assert_eq!(bind(&e, 0, 10, ip(14), true, 600, &mut events), Ok(ip(14)));
    assert_eq!(bind(&e, 0, 8, ip(11), false, 600, &mut events), Ok(ip(11)));
    e.check_invariants();
    e.check_causality();
    // A restart builds the engine from the configuration that now excludes 14 and 19.
    let fresh = Engine::new(config4(&[ip(14), ip(19)])).unwrap();
    let records: Vec<Lease> = events.into_iter().map(|ev| ev.lease).collect();
    for lease in fold(&records) {
        let shard = usize::from(lease.client.as_bytes()[7] % 2);
        fresh.restore(shard, lease).unwrap();
    }
    fresh.check_invariants();
    let bound = |e: &Engine| -> Vec<(Ipv4Addr, ClientKey)> {
        let leases = e.leases().into_iter();
        leases
            .filter(|l| l.state == LeaseState::Bound)
            .map(|l| (l.address, l.client))
            .collect()
    };
    assert_eq!(bound(&fresh), bound(&e));
    assert_eq!(fresh.stats(), e.stats());
}

#[test]
fn v4_exclusion_changes_are_the_excluded_addresses_that_differ() {
    let old = config4(&[ip(11), ip(12), ip(99)]);
    let new = config4(&[ip(13), ip(12), ip(11), ip(12)]);
    let want = Exclusions {
        reserve: vec![ip(13)],
        unreserve: vec![],
    };
    assert_eq!(old.exclusion_changes(&new), Some(want));
    let back = new.exclusion_changes(&old).unwrap();
    assert_eq!((back.reserve, back.unreserve), (vec![], vec![ip(13)]));
    assert!(old.exclusion_changes(&old).unwrap().is_empty());
    let mut grown = config4(&[]);
    grown.pools[0].last = ip(30);
    assert_eq!(old.exclusion_changes(&grown), None);
    let mut shards = config4(&[]);
    shards.shards = 3;
    assert_eq!(old.exclusion_changes(&shards), None);
    let many: Vec<Ipv4Addr> = (0..=300u32)
        .map(|i| Ipv4Addr::from(u32::from(ip(10)) + i))
        .collect();
    let mut big = config4(&many);
    big.pools[0].last = Ipv4Addr::new(10, 0, 1, 255);
    let mut base = config4(&[]);
    base.pools[0].last = big.pools[0].last;
    assert_eq!(base.exclusion_changes(&big), None, "too many at once");
}

const SPARSE_FIRST: &str = "2001:db8:1::";

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

fn config6(excluded_na: &[&str]) -> v6::EngineConfig {
    v6::EngineConfig {
        shards: 2,
        pools: vec![
            v6::PoolSpec::Na {
                first: a6("2001:db8::100"),
                last: a6("2001:db8::10f"),
                excluded: excluded_na.iter().map(|s| a6(s)).collect(),
            },
            // 2^24 addresses: a sparse pool.
            v6::PoolSpec::Na {
                first: a6(SPARSE_FIRST),
                last: a6("2001:db8:1::ff:ffff"),
                excluded: vec![],
            },
            v6::PoolSpec::Pd {
                prefix: a6("2001:db8:100::"),
                prefix_len: 52,
                delegated_len: 56,
                excluded: vec![],
            },
        ],
        offer_hold: 30,
        decline_probation: 3600,
    }
}

fn ia(n: u8, kind: IaKind) -> (IaKey, usize) {
    let duid = [0, 3, 0, 1, 2, 0, 0, 0, 0, n];
    let key = IaKey::new(&duid, 1, kind);
    (key, usize::from(n % 2))
}

fn na(s: &str) -> Resource {
    Resource::address(a6(s))
}

const POOLS: [v6::PoolId; 3] = [v6::PoolId(0), v6::PoolId(1), v6::PoolId(2)];

fn bind6(
    e: &v6::Engine,
    n: u8,
    res: Resource,
    reserved: bool,
    events: &mut Vec<v6::LeaseEvent>,
) -> Result<Resource, v6::BindError> {
    let kind = if res.len == 128 {
        IaKind::Na
    } else {
        IaKind::Pd
    };
    let (client, shard) = ia(n, kind);
    let req = v6::BindRequest {
        client: &client,
        address: res,
        pools: &POOLS,
        reserved,
        grant: v6::Grant {
            preferred: 300,
            valid: 600,
        },
    };
    e.bind(shard, &req, NOW, events).map(|v| v.resource)
}

fn solicit(
    e: &v6::Engine,
    n: u8,
    pools: &[v6::PoolId],
    reserved: Option<Resource>,
    hint: Option<Resource>,
) -> Option<Resource> {
    let kind = if pools == [v6::PoolId(2)] {
        IaKind::Pd
    } else {
        IaKind::Na
    };
    let (client, shard) = ia(n, kind);
    let req = v6::SolicitRequest {
        client: &client,
        pools,
        reserved,
        requested: hint,
        info: (),
    };
    e.solicit(shard, &req, NOW).map(|v| v.resource)
}

/// Solicits for new IAs (200 on) in `pool` until it is exhausted.
fn solicit_all(e: &v6::Engine, pool: v6::PoolId) -> Vec<Resource> {
    let got: Vec<Resource> = (200..=255)
        .map_while(|n| solicit(e, n, &[pool], None, None))
        .collect();
    assert!(got.len() < 56, "the pool was never exhausted");
    got
}

#[test]
fn v6_reserved_addresses_and_prefixes_are_only_their_reservations() {
    let e = v6::Engine::new(config6(&[])).unwrap();
    let dense = na("2001:db8::105");
    let sparse = na("2001:db8:1::77");
    let prefix = Resource::prefix(a6("2001:db8:100:300::"), 56);
    for res in [dense, sparse, prefix] {
        assert_eq!(e.reserve(res), Ok(true), "{res}");
    }
    let misaligned = Resource::prefix(a6("2001:db8:100:380::"), 57);
    assert_eq!(e.reserve(misaligned), Ok(false));
    e.check_invariants();
    let totals: Vec<u128> = e.stats().iter().map(|s| s.total).collect();
    assert_eq!(totals, [15, (1 << 24) - 1, 15]);
    let mut events = Vec::new();
    for (n, res) in [(2, dense), (12, sparse), (22, prefix)] {
        assert_eq!(
            bind6(&e, 1, res, false, &mut events),
            Err(v6::BindError::Taken),
            "{res}"
        );
        let pool = [v6::PoolId(u32::from(n / 10))];
        assert_ne!(solicit(&e, n, &pool, None, Some(res)), Some(res), "{res}");
    }
    let free = solicit_all(&e, v6::PoolId(0));
    assert_eq!(free.len(), 14, "{free:?}");
    assert!(!free.contains(&dense));
    let free = solicit_all(&e, v6::PoolId(2));
    assert_eq!(free.len(), 14, "{free:?}");
    assert!(!free.contains(&prefix));
    // The IAs they are reserved for get them.
    assert_eq!(
        solicit(&e, 4, &POOLS[..2], Some(sparse), None),
        Some(sparse)
    );
    for res in [dense, sparse, prefix] {
        assert_eq!(bind6(&e, 4, res, true, &mut events), Ok(res), "{res}");
    }
    e.check_invariants();
}

#[test]
fn v6_a_reserved_resource_stays_with_its_holder_then_is_freed_for_nobody() {
    let e = v6::Engine::new(config6(&[])).unwrap();
    let mut events = Vec::new();
    let dense = na("2001:db8::103");
    let sparse = na("2001:db8:1::1234");
    let prefix = Resource::prefix(a6("2001:db8:100:500::"), 56);
    for (n, res) in [(1, dense), (2, sparse), (3, prefix)] {
        bind6(&e, n, res, false, &mut events).unwrap();
    }
    for res in [dense, sparse, prefix] {
        assert_eq!(e.reserve(res), Ok(true), "{res}");
    }
    e.check_invariants();
    for (n, res) in [(1, dense), (2, sparse), (3, prefix)] {
        assert_eq!(
            e.get(res).map(|l| l.state),
            Some(LeaseState::Bound),
            "{res}"
        );
        let kind = if res.len == 128 {
            IaKind::Na
        } else {
            IaKind::Pd
        };
        let (client, shard) = ia(n, kind);
        assert!(e.release(shard, &client, res, NOW, &mut events), "{res}");
    }
    e.check_invariants();
    for res in [dense, sparse, prefix] {
        assert_eq!(
            bind6(&e, 9, res, false, &mut events),
            Err(v6::BindError::Taken),
            "{res}"
        );
    }
    assert_ne!(
        solicit(&e, 10, &POOLS[1..2], None, Some(sparse)),
        Some(sparse)
    );
    assert!(!solicit_all(&e, v6::PoolId(0)).contains(&dense));
    assert!(!solicit_all(&e, v6::PoolId(2)).contains(&prefix));
    e.check_invariants();
}

#[test]
fn v6_unreserved_resources_are_handed_out_again_and_replay_agrees() {
    let excluded = "2001:db8::101";
    let e = v6::Engine::new(config6(&[excluded])).unwrap();
    let mut events = Vec::new();
    let sparse = na("2001:db8:1::99");
    let prefix = Resource::prefix(a6("2001:db8:100:700::"), 56);
    for res in [sparse, prefix] {
        assert_eq!(e.reserve(res), Ok(true));
        assert_eq!(bind6(&e, 5, res, true, &mut events), Ok(res));
    }
    for res in [na(excluded), sparse, prefix] {
        assert_eq!(e.unreserve(res), Ok(true), "{res}");
        assert_eq!(e.unreserve(res), Ok(false), "{res}");
    }
    e.check_invariants();
    let totals: Vec<u128> = e.stats().iter().map(|s| s.total).collect();
    assert_eq!(totals, [16, 1 << 24, 16]);
    // The bindings stay their IA's, dynamic now; once released anyone may have them.
    assert_eq!(bind6(&e, 5, sparse, false, &mut events), Ok(sparse));
    assert_eq!(
        bind6(&e, 6, sparse, false, &mut events),
        Err(v6::BindError::Taken)
    );
    let (client, shard) = ia(5, IaKind::Pd);
    assert!(e.release(shard, &client, prefix, NOW, &mut events));
    assert_eq!(bind6(&e, 6, prefix, false, &mut events), Ok(prefix));
    assert_eq!(
        solicit(&e, 7, &POOLS[..1], None, Some(na(excluded))),
        Some(na(excluded))
    );
    e.check_invariants();
    // A restart builds the engine from the configuration, which excludes none of them now.
    let fresh = v6::Engine::new(config6(&[])).unwrap();
    let records: Vec<v6::Lease> = events.into_iter().map(|ev| ev.lease).collect();
    for lease in fold(&records) {
        let shard = usize::from(lease.client.duid()[9] % 2);
        fresh.restore(shard, lease).unwrap();
    }
    fresh.check_invariants();
    let bound = |e: &v6::Engine| -> Vec<(Resource, IaKey)> {
        let leases = e.leases().into_iter();
        leases
            .filter(|l| l.state == LeaseState::Bound)
            .map(|l| (l.resource, l.client))
            .collect()
    };
    assert_eq!(bound(&fresh), bound(&e));
    assert_eq!(bound(&e).len(), 2);
}

#[test]
fn v6_exclusion_changes_count_each_delegated_prefix() {
    let mut old = config6(&[]);
    let mut new = config6(&["2001:db8::102"]);
    if let v6::PoolSpec::Pd { excluded, .. } = &mut new.pools[2] {
        excluded.push((a6("2001:db8:100:300::"), 60));
        excluded.push((a6("2001:db8:100:800::"), 54));
        excluded.push((a6("2001:db8:200::"), 56));
    }
    let changes = old.exclusion_changes(&new).unwrap();
    let p = |s: &str| Resource::prefix(a6(s), 56);
    assert_eq!(
        changes.reserve,
        [
            na("2001:db8::102"),
            p("2001:db8:100:300::"),
            p("2001:db8:100:800::"),
            p("2001:db8:100:900::"),
            p("2001:db8:100:a00::"),
            p("2001:db8:100:b00::"),
        ]
    );
    assert!(changes.unreserve.is_empty());
    if let v6::PoolSpec::Pd { delegated_len, .. } = &mut old.pools[2] {
        *delegated_len = 60;
    }
    assert_eq!(old.exclusion_changes(&new), None);
}

/// The shards that have `a` (a record of it, or free) and whether one has it free, seen
/// with every shard locked at once (the engine's calls lock one at a time).
fn owners(e: &Engine, a: Ipv4Addr) -> (Vec<String>, bool) {
    let guards: Vec<_> = (0..e.shards()).map(|shard| e.lock(shard)).collect();
    let off = u32::from(a) - u32::from(ip(10));
    let (mut holders, mut free) = (Vec::new(), false);
    for (shard, g) in guards.iter().enumerate() {
        let record = g
            .records
            .find(u32::from(a))
            .map(|idx| g.records.slot(idx).state);
        let here = g.free[0].clean.contains(off) || g.free[0].remembered.contains(off);
        if record.is_some() || here {
            holders.push(format!("shard {shard}: {record:?}, free: {here}"));
        }
        free |= here;
    }
    (holders, free)
}

/// Four shards' threads each call `step(shard, round, now, requested, events)` (`requested`
/// one of `toggled`, `events` cleared after) while this one reserves `toggled` one by one and
/// unreserves them again, over and over: after each toggle, by `owners`, each has one owner
/// at most (none for an instant while a shard lends it) and a reserved one is free nowhere.
/// Ends with every one unreserved.
fn reserve_while_shards_step<F: Exclude, V>(
    e: &Core<F>,
    toggled: [F::Addr; 4],
    step: impl Fn(u8, u64, Time, F::Addr, &mut Vec<V>) + Sync,
    owners: impl Fn(F::Addr) -> (Vec<String>, bool),
) where
    Core<F>: Sync,
    F::Addr: Display + Send,
{
    use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
    let (stop, rounds) = (AtomicBool::new(false), AtomicU64::new(0));
    // One clock for every shard, as the server's: seconds go by as the toggles do.
    let clock = AtomicU64::new(NOW);
    std::thread::scope(|s| {
        for shard in 0..4u8 {
            let (stop, rounds, clock, step) = (&stop, &rounds, &clock, &step);
            s.spawn(move || {
                let mut events = Vec::new();
                let mut round = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    round += 1;
                    rounds.fetch_add(1, Ordering::Relaxed);
                    let now = clock.load(Ordering::Relaxed);
                    step(
                        shard,
                        round,
                        now,
                        toggled[(round % 4) as usize],
                        &mut events,
                    );
                    events.clear();
                }
            });
        }
        /// Stops the shards' threads however this one ends (an assertion failing too).
        struct Stop<'a>(&'a AtomicBool);
        impl Drop for Stop<'_> {
            fn drop(&mut self) {
                self.0.store(true, Ordering::Relaxed);
            }
        }
        let _stop = Stop(&stop);
        let mut i = 0usize;
        // Until the shards have done some work, and an even number of passes at least.
        while i < 2000 || rounds.load(Ordering::Relaxed) < 10_000 || !i.is_multiple_of(8) {
            let a = toggled[i % 4];
            if (i / 4).is_multiple_of(2) {
                assert_eq!(e.reserve(a), Ok(true), "{a}");
            } else {
                assert_eq!(e.unreserve(a), Ok(true), "{a}");
            }
            for (k, &b) in toggled.iter().enumerate() {
                let reserved = (i / 4).is_multiple_of(2) && k <= i % 4;
                let (holders, free) = owners(b);
                assert!(holders.len() <= 1, "{i}: {b} has two owners: {holders:?}");
                assert!(
                    !(reserved && free),
                    "{i}: {b} free while reserved: {holders:?}"
                );
            }
            i += 1;
            if i.is_multiple_of(8) {
                clock.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::yield_now();
        }
    });
}

#[test]
fn v4_reserving_while_every_shard_allocates_and_lends_keeps_the_books() {
    let cfg = EngineConfig {
        shards: 4,
        ..config4(&[])
    };
    let e = Engine::new(cfg).unwrap();
    let toggled = [ip(11), ip(15), ip(22), ip(28)];
    let step = |shard: u8, round: u64, now, requested, events: &mut Vec<_>| {
        // 12 clients a shard for 20 addresses: shards borrow and fetch.
        let n = shard * 12 + (round % 12) as u8;
        let client = key(n);
        let req = OfferRequest {
            client: &client,
            pools: &[PoolId(0)],
            reserved: None,
            requested: Some(requested),
            info: info(&mac(n)),
        };
        let shard = usize::from(shard);
        let Ok(addr) = e.offer(shard, &req, now) else {
            e.reclaim(shard, now + 40, 64, events);
            return;
        };
        let bind = BindRequest {
            client: &client,
            address: addr,
            pools: &[PoolId(0)],
            reserved: false,
            grant: crate::v4::Grant {
                lease_time: 5,
                info: info(&mac(n)),
            },
        };
        if e.bind(shard, &bind, now, events).is_ok() && round.is_multiple_of(3) {
            e.release(shard, &client, addr, now, events);
        }
    };
    reserve_while_shards_step(&e, toggled, step, |a| owners(&e, a));
    e.check_invariants();
    // The last pass put every one back.
    assert_eq!(e.stats()[0].total, 20);
    for a in toggled {
        assert_eq!(e.reserve(a), Ok(true));
    }
    e.check_invariants();
    assert_eq!(e.stats()[0].total, 16);
}

/// [`owners`] for the first pool of a v6 engine (dense).
fn owners6(e: &v6::Engine, res: Resource) -> (Vec<String>, bool) {
    let guards: Vec<_> = (0..e.shards()).map(|shard| e.lock(shard)).collect();
    let off = u128::from(res.addr) - u128::from(a6("2001:db8::100"));
    let (mut holders, mut free) = (Vec::new(), false);
    for (shard, g) in guards.iter().enumerate() {
        let record = g.records.find(res).map(|idx| g.records.slot(idx).state);
        let here = record.is_none() && crate::ends::Free::has(&g.parts[0].space, off)
            || record.is_some_and(|s| !crate::common::is_held(s))
                && g.records
                    .find(res)
                    .is_some_and(|idx| g.records.place(idx).dynamic().is_some());
        if record.is_some() || here {
            holders.push(format!("shard {shard}: {record:?}, free: {here}"));
        }
        free |= here;
    }
    (holders, free)
}

#[test]
fn v6_reserving_while_every_shard_allocates_and_lends_keeps_the_books() {
    let mut cfg = config6(&[]);
    cfg.shards = 4;
    if let v6::PoolSpec::Na { last, .. } = &mut cfg.pools[0] {
        *last = a6("2001:db8::113");
    }
    let e = v6::Engine::new(cfg).unwrap();
    let toggled = [
        "2001:db8::101",
        "2001:db8::105",
        "2001:db8::10c",
        "2001:db8::112",
    ]
    .map(na);
    let step = |shard: u8, round: u64, now, requested, events: &mut Vec<_>| {
        // 12 IAs a shard for 20 addresses: shards borrow and fetch.
        let duid = [0, 3, 0, 1, 2, 0, 0, 0, shard, (round % 12) as u8];
        let client = IaKey::new(&duid, 1, IaKind::Na);
        let req = v6::SolicitRequest {
            client: &client,
            pools: &POOLS[..1],
            reserved: None,
            requested: Some(requested),
            info: (),
        };
        let shard = usize::from(shard);
        let Some(got) = e.solicit(shard, &req, now) else {
            e.reclaim(shard, now + 40, 64, events);
            return;
        };
        let bind = v6::BindRequest {
            client: &client,
            address: got.resource,
            pools: &POOLS[..1],
            reserved: false,
            grant: v6::Grant {
                preferred: 3,
                valid: 5,
            },
        };
        if e.bind(shard, &bind, now, events).is_ok() && round.is_multiple_of(3) {
            e.release(shard, &client, got.resource, now, events);
        }
    };
    reserve_while_shards_step(&e, toggled, step, |a| owners6(&e, a));
    e.check_invariants();
    assert_eq!(e.stats()[0].total, 20);
}
