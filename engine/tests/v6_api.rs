//! The v6 engine through its public API only, as the server uses it: one thread per shard,
//! IAs steered to their owner shard, small pools exhausted concurrently (so shards lend to
//! each other under contention), then the events replayed like a journal.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use lessor_engine::v6::*;
use lessor_engine::{EventKind, LeaseState};

const NOW: u64 = 1_700_000_000;

fn config(shards: usize) -> EngineConfig {
    EngineConfig {
        shards,
        pools: vec![
            PoolSpec::Na {
                first: "2001:db8::1:0".parse().unwrap(),
                last: "2001:db8::1:ff".parse().unwrap(),
                excluded: vec!["2001:db8::1:7".parse().unwrap()],
            },
            PoolSpec::Pd {
                prefix: "2001:db8:100::".parse().unwrap(),
                prefix_len: 40,
                delegated_len: 48,
                excluded: vec![("2001:db8:1ff::".parse().unwrap(), 48)],
            },
        ],
        offer_hold: 30,
        decline_probation: 600,
    }
}

fn duid(n: u32) -> Vec<u8> {
    let b = n.to_be_bytes();
    vec![0, 3, 0, 1, 2, 0, b[0], b[1], b[2], b[3]]
}

#[test]
fn the_engine_is_send_and_sync() {
    fn shared<T: Send + Sync>() {}
    shared::<Engine>();
    shared::<LeaseEvent>();
}

#[test]
fn concurrent_workers_exhaust_pools_exactly_and_replay_restores_them() {
    let shards = 4;
    let engine = Arc::new(Engine::new(config(shards)).unwrap());
    // 400 clients for 255 addresses and 255 prefixes.
    let clients: Vec<u32> = (0..400).collect();
    let workers: Vec<_> = (0..shards)
        .map(|k| {
            let engine = Arc::clone(&engine);
            let mine: Vec<u32> = clients
                .iter()
                .copied()
                .filter(|&n| engine.owner(&duid(n)) == k)
                .collect();
            std::thread::spawn(move || {
                let mut events = Vec::new();
                let mut refused = 0;
                for (round, n) in mine.iter().enumerate() {
                    for (kind, pool) in [(IaKind::Na, PoolId(0)), (IaKind::Pd, PoolId(1))] {
                        let key = IaKey::new(&duid(*n), 1, kind);
                        let pools = [pool];
                        let req = SolicitRequest {
                            client: &key,
                            pools: &pools,
                            reserved: None,
                            requested: None,
                            info: (),
                        };
                        let Some(view) = engine.solicit(k, &req, NOW) else {
                            refused += 1;
                            continue;
                        };
                        let bind = BindRequest {
                            client: &key,
                            address: view.resource,
                            pools: &pools,
                            reserved: false,
                            grant: lessor_engine::v6::Grant {
                                preferred: 300,
                                valid: 600,
                            },
                        };
                        engine.bind(k, &bind, NOW, &mut events).unwrap();
                        // Every third IA releases and comes back. Its resource is free in
                        // between, and a worker whose block ran dry may borrow it first (the
                        // pools are nearly exhausted), so the IA may get another resource or
                        // none: then it is one more refusal, and the one that took it is one
                        // fewer. (Getting the same resource back is tested single-threaded.)
                        if round % 3 == 0 {
                            assert!(engine.release(k, &key, view.resource, NOW + 1, &mut events));
                            let Some(again) = engine.solicit(k, &req, NOW + 2) else {
                                refused += 1;
                                continue;
                            };
                            let bind = BindRequest {
                                address: again.resource,
                                ..bind
                            };
                            engine.bind(k, &bind, NOW + 2, &mut events).unwrap();
                        }
                    }
                }
                (k, events, refused)
            })
        })
        .collect();
    let mut journal = Vec::new();
    let mut refused = 0;
    for w in workers {
        let (k, events, r) = w.join().unwrap();
        refused += r;
        journal.extend(events.into_iter().map(|e| (k, e)));
    }

    // Exactly the pools' sizes were bound, each resource once; the rest were refused.
    let leases = engine.leases();
    let bound: Vec<&Lease> = leases
        .iter()
        .filter(|l| l.state == LeaseState::Bound)
        .collect();
    assert_eq!(bound.len(), 255 + 255);
    assert_eq!(refused, 800 - 510);
    let unique: HashSet<Resource> = bound.iter().map(|l| l.resource).collect();
    assert_eq!(unique.len(), bound.len());
    for stat in engine.stats() {
        assert_eq!((stat.total, stat.free, stat.bound), (255, 0, 255));
    }
    assert!(!unique.contains(&Resource::address("2001:db8::1:7".parse().unwrap())));
    assert!(!unique.contains(&Resource::prefix("2001:db8:1ff::".parse().unwrap(), 48)));

    // The journal: per resource the newest version; replayed in bulk into a fresh engine.
    assert!(
        journal
            .iter()
            .all(|(_, e)| matches!(e.kind, EventKind::Bound | EventKind::Released))
    );
    let mut newest: HashMap<Resource, &Lease> = HashMap::new();
    for (_, e) in &journal {
        let slot = newest.entry(e.lease.resource).or_insert(&e.lease);
        if e.lease.version > slot.version {
            *slot = &e.lease;
        }
    }
    let fresh = Engine::new(config(shards)).unwrap();
    let mut restorer = fresh.restorer(newest.len());
    for lease in newest.values() {
        let shard = fresh.owner(lease.client.duid());
        restorer.add_ref(shard, LeaseRef::from(*lease)).unwrap();
    }
    let report = restorer.finish();
    assert!(report.bulk);
    assert_eq!(report.refused, 0);
    fresh.advance_versions(engine.max_version());
    assert_eq!(fresh.leases(), leases);
    assert_eq!(fresh.stats(), engine.stats());
    assert_eq!(fresh.max_version(), engine.max_version());
}
