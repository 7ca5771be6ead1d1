//! The admin operations against both engines: what a client then gets, conflicts, and that
//! replaying their events (folded as the journal folds, tombstones dropped) gives the same
//! bound records.

use std::net::{Ipv4Addr, Ipv6Addr};

use super::PutError;
use crate::testkit::{Journaled, fold};
use crate::v4::{
    BindRequest, ClientKey, Engine, EngineConfig, HwAddr, Lease, LeaseEvent, LeaseInfo,
    OfferRequest, PoolId, PoolSpec,
};
use crate::v6::{self, IaKey, IaKind, Resource};
use crate::{EventKind, LeaseState, Time};

const NOW: Time = 1_700_000_000;

fn engine() -> Engine {
    Engine::new(EngineConfig {
        shards: 2,
        pools: vec![PoolSpec {
            first: Ipv4Addr::new(10, 0, 0, 10),
            last: Ipv4Addr::new(10, 0, 0, 200),
            excluded: vec![],
        }],
        offer_hold: 30,
        decline_probation: 3600,
    })
    .unwrap()
}

fn mac(n: u8) -> [u8; 6] {
    [2, 0, 0, 0, 0, n]
}

fn key(n: u8) -> ClientKey {
    ClientKey::hardware(1, &mac(n))
}

fn grant(n: u8, lease_time: u32, hostname: Option<&str>) -> crate::v4::Grant<'_> {
    crate::v4::Grant {
        lease_time,
        info: LeaseInfo {
            hw: HwAddr::new(1, &mac(n)).unwrap(),
            hostname,
        },
    }
}

fn ip(last: u8) -> Ipv4Addr {
    Ipv4Addr::new(10, 0, 0, last)
}

fn offer(e: &Engine, shard: usize, n: u8, requested: Option<Ipv4Addr>) -> Ipv4Addr {
    let client = key(n);
    let req = OfferRequest {
        client: &client,
        pools: &[PoolId(0)],
        reserved: None,
        requested,
        info: grant(n, 0, None).info,
    };
    e.offer(shard, &req, NOW).unwrap()
}

/// The journal's fold of `events`, without the records its `keep` drops (tombstones: a
/// Released or Expired record that ended at the epoch).
fn replayed<L: Journaled>(events: &[L]) -> Vec<L> {
    fold(events)
        .into_iter()
        .filter(|l| {
            !(matches!(l.state(), LeaseState::Released | LeaseState::Expired) && l.expires() == 0)
        })
        .collect()
}

fn bound(leases: Vec<Lease>) -> Vec<(Ipv4Addr, Vec<u8>, u64, Option<String>)> {
    leases
        .into_iter()
        .filter(|l| l.state == LeaseState::Bound)
        .map(|l| {
            let host = l.hostname.as_deref().map(str::to_owned);
            (l.address, l.client.as_bytes().to_vec(), l.expires, host)
        })
        .collect()
}

#[test]
fn a_put_lease_is_what_its_client_is_offered_even_from_a_siblings_block() {
    let e = engine();
    let mut events = Vec::new();
    // Shard 0 owns the pool's first half, shard 1 the second: 10.0.0.190 is shard 1's.
    let view = e
        .put(
            0,
            &key(1),
            ip(190),
            grant(1, 600, Some("printer")),
            NOW,
            &mut events,
        )
        .unwrap();
    assert_eq!((view.address, view.state), (ip(190), LeaseState::Bound));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Bound);
    assert_eq!(events[0].lease.expires, NOW + 600);
    assert_eq!(events[0].lease.hostname.as_deref(), Some("printer"));
    assert_eq!(offer(&e, 0, 1, None), ip(190));
    e.check_invariants();
    // A second put of the same client and address renews it.
    events.clear();
    e.put(0, &key(1), ip(190), grant(1, 900, None), NOW, &mut events)
        .unwrap();
    assert_eq!(events[0].kind, EventKind::Renewed);
    assert_eq!(events[0].lease.expires, NOW + 900);
}

#[test]
fn a_put_is_refused_for_another_clients_address_and_outside_the_pools() {
    let e = engine();
    let mut events = Vec::new();
    e.put(1, &key(1), ip(20), grant(1, 600, None), NOW, &mut events)
        .unwrap();
    // Held in shard 1, asked for in either shard by another client.
    for shard in 0..2 {
        let got = e.put(
            shard,
            &key(2),
            ip(20),
            grant(2, 600, None),
            NOW,
            &mut events,
        );
        assert_eq!(got, Err(PutError::Taken), "shard {shard}");
    }
    // An offer's hold is another client's too.
    let offered = offer(&e, 0, 3, None);
    let got = e.put(0, &key(2), offered, grant(2, 600, None), NOW, &mut events);
    assert_eq!(got, Err(PutError::Taken));
    let got = e.put(0, &key(2), ip(250), grant(2, 600, None), NOW, &mut events);
    assert_eq!(got, Err(PutError::NotInPool));
    // A declined address is quarantined (a sibling's v4 quarantine reads as taken).
    let mut ev = Vec::new();
    let req = BindRequest {
        client: &key(4),
        address: ip(30),
        pools: &[PoolId(0)],
        reserved: false,
        grant: crate::v4::Grant {
            lease_time: 600,
            info: grant(4, 600, None).info,
        },
    };
    e.bind(0, &req, NOW, &mut ev).unwrap();
    assert!(e.decline(0, &key(4), ip(30), NOW, &mut ev));
    let got = e.put(0, &key(2), ip(30), grant(2, 600, None), NOW, &mut events);
    assert_eq!(got, Err(PutError::Quarantined));
    let got = e.put(1, &key(2), ip(30), grant(2, 600, None), NOW, &mut events);
    assert_eq!(got, Err(PutError::Taken));
    e.check_invariants();
}

#[test]
fn a_removed_lease_is_gone_and_its_address_offered_again() {
    let e = engine();
    let mut events = Vec::new();
    e.put(0, &key(1), ip(15), grant(1, 600, None), NOW, &mut events)
        .unwrap();
    events.clear();
    assert_eq!(e.get(ip(15)).map(|l| l.state), Some(LeaseState::Bound));
    let gone = e.remove(ip(15), NOW, &mut events).expect("the lease");
    assert_eq!(e.get(ip(15)), None);
    assert_eq!((gone.address, gone.state), (ip(15), LeaseState::Bound));
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].kind, EventKind::Released);
    assert_eq!(events[0].lease.expires, 0, "a tombstone");
    assert!(events[0].lease.version > gone.version);
    assert!(e.leases().iter().all(|l| l.address != ip(15)));
    // Another client asking for it gets it.
    assert_eq!(offer(&e, 1, 2, Some(ip(15))), ip(15));
    // Nothing left to remove; an offer's hold is not a lease.
    assert_eq!(e.remove(ip(15), NOW, &mut events), None);
    assert_eq!(e.remove(ip(99), NOW, &mut events), None);
    e.check_invariants();
}

#[test]
fn replaying_admin_events_gives_the_same_bound_leases() {
    let e = engine();
    let mut events: Vec<LeaseEvent> = Vec::new();
    for n in 1..=6 {
        let shard = usize::from(n % 2);
        e.put(
            shard,
            &key(n),
            ip(10 * n),
            grant(n, 600, Some("h")),
            NOW,
            &mut events,
        )
        .unwrap();
    }
    e.remove(ip(20), NOW, &mut events).unwrap();
    e.put(
        0,
        &key(2),
        ip(20),
        grant(2, 700, None),
        NOW + 1,
        &mut events,
    )
    .unwrap();
    e.remove(ip(30), NOW, &mut events).unwrap();
    // Client 4 moves: its old binding ends with a Released event.
    e.put(0, &key(4), ip(45), grant(4, 600, None), NOW, &mut events)
        .unwrap();
    let wiped = e.wipe(|a, _| a >= ip(50) && a <= ip(60), &mut events);
    assert_eq!(wiped, 2);
    e.check_invariants();
    e.check_causality();

    let records: Vec<Lease> = events.iter().map(|ev| ev.lease.clone()).collect();
    let fresh = engine();
    for lease in replayed(&records) {
        let shard = usize::from(lease.client.as_bytes()[7] % 2);
        fresh.restore(shard, lease).unwrap();
    }
    let want = bound(e.leases());
    assert_eq!(bound(fresh.leases()), want);
    let addrs: Vec<Ipv4Addr> = want.iter().map(|b| b.0).collect();
    assert_eq!(addrs, [ip(10), ip(20), ip(45)]);
}

#[test]
fn reclaim_all_ends_every_expired_binding_of_every_shard() {
    let e = engine();
    let mut events = Vec::new();
    for n in 1..=5 {
        e.put(
            usize::from(n % 2),
            &key(n),
            ip(10 + n),
            grant(n, 10, None),
            NOW,
            &mut events,
        )
        .unwrap();
    }
    e.put(0, &key(9), ip(100), grant(9, 1000, None), NOW, &mut events)
        .unwrap();
    events.clear();
    assert_eq!(e.reclaim_all(NOW + 20, &mut events), 5);
    assert_eq!(events.len(), 5);
    assert!(events.iter().all(|ev| ev.kind == EventKind::Expired));
    // With Kea's `remove`, the expired records then go.
    let removed = e.wipe(|_, state| state == LeaseState::Expired, &mut events);
    assert_eq!(removed, 5);
    let left: Vec<Ipv4Addr> = e.leases().iter().map(|l| l.address).collect();
    assert_eq!(left, [ip(100)]);
    e.check_invariants();
}

fn engine6() -> v6::Engine {
    v6::Engine::new(v6::EngineConfig {
        shards: 2,
        pools: vec![
            v6::PoolSpec::Na {
                first: "2001:db8::100".parse().unwrap(),
                last: "2001:db8::1ff".parse().unwrap(),
                excluded: vec![],
            },
            v6::PoolSpec::Pd {
                prefix: "2001:db8:100::".parse().unwrap(),
                prefix_len: 48,
                delegated_len: 56,
                excluded: vec![],
            },
        ],
        offer_hold: 30,
        decline_probation: 3600,
    })
    .unwrap()
}

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn v6_puts_addresses_and_prefixes_and_removes_them() {
    let e = engine6();
    let duid = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
    let shard = e.owner(&duid);
    let na = IaKey::new(&duid, 7, IaKind::Na);
    let pd = IaKey::new(&duid, 7, IaKind::Pd);
    let addr = Resource::address(a6("2001:db8::1f0"));
    let prefix = Resource::prefix(a6("2001:db8:100:ff00::"), 56);
    let g = v6::Grant {
        preferred: 300,
        valid: 600,
    };
    let mut events = Vec::new();
    e.put(shard, &na, addr, g, NOW, &mut events).unwrap();
    e.put(shard, &pd, prefix, g, NOW, &mut events).unwrap();
    assert_eq!(events.len(), 2);
    assert_eq!(events[1].lease.resource, prefix);
    // The IA is advertised what it holds.
    let solicit = v6::SolicitRequest {
        client: &na,
        pools: &[v6::PoolId(0)],
        reserved: None,
        requested: None,
        info: (),
    };
    assert_eq!(e.solicit(shard, &solicit, NOW).unwrap().resource, addr);
    // Another IA is refused it; outside the pools is refused.
    let other = IaKey::new(&[9, 9, 9, 9], 1, IaKind::Na);
    let got = e.put(e.owner(&[9, 9, 9, 9]), &other, addr, g, NOW, &mut events);
    assert_eq!(got, Err(PutError::Taken));
    let outside = Resource::address(a6("2001:db8::5"));
    assert_eq!(
        e.put(shard, &na, outside, g, NOW, &mut events),
        Err(PutError::NotInPool)
    );
    events.clear();
    assert_eq!(e.remove(addr, NOW, &mut events).unwrap().resource, addr);
    assert_eq!(
        (events[0].kind, events[0].lease.expires),
        (EventKind::Released, 0)
    );
    // Now the other IA may have it; the wipe takes the prefix.
    e.put(e.owner(&[9, 9, 9, 9]), &other, addr, g, NOW, &mut events)
        .unwrap();
    assert_eq!(e.wipe(|r, _| r.len < 128, &mut events), 1);
    let left: Vec<Resource> = e.leases().iter().map(|l| l.resource).collect();
    assert_eq!(left, [addr]);
    e.check_invariants();
}
