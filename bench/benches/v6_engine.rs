//! v6 engine operations on a /64 IA_NA pool and a /32-into-/56 IA_PD pool: solicit+bind of
//! new IAs, renew, release and rebind, reclaim.

mod common;

use std::hint::black_box;

use common::NOW;
use criterion::{Criterion, criterion_group, criterion_main};
use lessor_engine::v6::{
    BindRequest, Engine, EngineConfig, IaKey, IaKind, LeaseEvent, PoolId, PoolSpec, Resource,
    SolicitRequest,
};

fn engine(shards: usize) -> Engine {
    Engine::new(EngineConfig {
        shards,
        pools: vec![
            PoolSpec::Na {
                first: "2001:db8::".parse().unwrap(),
                last: "2001:db8::ffff:ffff:ffff:ffff".parse().unwrap(),
                excluded: vec![],
            },
            PoolSpec::Pd {
                prefix: "2001:db9::".parse().unwrap(),
                prefix_len: 32,
                delegated_len: 56,
                excluded: vec![],
            },
        ],
        offer_hold: 30,
        decline_probation: 86400,
    })
    .unwrap()
}

/// IA `n`'s key: a DUID-LLT for Ethernet (14 bytes), as most clients send.
fn key(n: u32, kind: IaKind) -> IaKey {
    let b = n.to_be_bytes();
    let duid = [
        0, 1, 0, 1, 0x2a, 0x3b, 0x4c, 0x5d, 2, 0, b[0], b[1], b[2], b[3],
    ];
    IaKey::new(&duid, 1, kind)
}

const NA: &[PoolId] = &[PoolId(0)];
const PD: &[PoolId] = &[PoolId(1)];

fn solicit_bind(e: &Engine, k: &IaKey, pools: &[PoolId], events: &mut Vec<LeaseEvent>) -> Resource {
    let req = SolicitRequest {
        client: k,
        pools,
        reserved: None,
        requested: None,
        info: (),
    };
    let res = e.solicit(0, &req, NOW).unwrap().resource;
    let bind = BindRequest {
        client: k,
        address: res,
        pools,
        reserved: false,
        grant: lessor_engine::v6::Grant {
            preferred: 1800,
            valid: 3600,
        },
    };
    e.bind(0, &bind, NOW, events).unwrap();
    res
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("v6_engine");
    let mut events = Vec::new();

    for (name, kind, pools) in [("na", IaKind::Na, NA), ("pd", IaKind::Pd, PD)] {
        let e = engine(1);
        let id = format!("solicit_bind_new_{name}");
        common::new_clients(&mut g, &id, &mut events, |n, ev| {
            solicit_bind(&e, &key(n, kind), pools, ev)
        });
    }

    let e = engine(1);
    let ias: Vec<(IaKey, Resource)> = (0..100_000)
        .map(|i| {
            let k = key(i, IaKind::Na);
            let r = solicit_bind(&e, &k, NA, &mut events);
            (k, r)
        })
        .collect();
    let mut i = 0;
    g.bench_function("renew_100k_live", |b| {
        b.iter(|| {
            i = (i + 1) % ias.len();
            let (k, r) = &ias[i];
            events.clear();
            let bind = BindRequest {
                client: k,
                address: *r,
                pools: NA,
                reserved: false,
                grant: lessor_engine::v6::Grant {
                    preferred: 1800,
                    valid: 3600,
                },
            };
            black_box(e.bind(0, &bind, NOW + 10, &mut events).unwrap())
        })
    });

    let mut i = 0;
    g.bench_function("release_and_rebind_100k_live", |b| {
        b.iter(|| {
            i = (i + 1) % ias.len();
            let (k, r) = &ias[i];
            events.clear();
            e.release(0, k, *r, NOW + 20, &mut events);
            black_box(solicit_bind(&e, k, NA, &mut events))
        })
    });

    common::reclaim_10k_expired(
        &mut g,
        || engine(1),
        |e, i, ev| {
            solicit_bind(e, &key(i, IaKind::Na), NA, ev);
        },
        |e, now, max, ev| e.reclaim(0, now, max, ev),
    );
    g.finish();
}

criterion_group!(v6_engine_benches, benches);
criterion_main!(v6_engine_benches);
