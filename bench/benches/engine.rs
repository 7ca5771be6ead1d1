//! Engine operations on a /8 pool: offer+bind of new clients, renew, release, reclaim.

mod common;
#[path = "common/v4_engine.rs"]
mod v4_engine;

use std::hint::black_box;
use std::net::Ipv4Addr;

use common::NOW;
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lessor_engine::v4::{BindRequest, ClientKey, Engine, HwAddr, LeaseInfo, OfferRequest, PoolId};
use v4_engine::slash8;

fn client(n: u32) -> (ClientKey, HwAddr) {
    let mac = [
        2,
        0,
        (n >> 24) as u8,
        (n >> 16) as u8,
        (n >> 8) as u8,
        n as u8,
    ];
    (ClientKey::hardware(1, &mac), HwAddr::new(1, &mac).unwrap())
}

const POOLS: &[PoolId] = &[PoolId(0)];

fn dora(e: &Engine, n: u32, events: &mut Vec<lessor_engine::v4::LeaseEvent>) -> Ipv4Addr {
    let (key, hw) = client(n);
    let info = LeaseInfo { hw, hostname: None };
    let req = OfferRequest {
        client: &key,
        pools: POOLS,
        reserved: None,
        requested: None,
        info,
    };
    let addr = e.offer(0, &req, NOW).unwrap();
    let bind = BindRequest {
        client: &key,
        address: addr,
        pools: POOLS,
        reserved: false,
        grant: lessor_engine::v4::Grant {
            lease_time: 3600,
            info,
        },
    };
    e.bind(0, &bind, NOW, events).unwrap();
    addr
}

fn benches(c: &mut Criterion) {
    let mut g = c.benchmark_group("engine");
    g.bench_function("new_8_pool_2_shards", |b| b.iter(|| black_box(slash8(2))));

    let e = slash8(1);
    let mut events = Vec::new();
    common::new_clients(&mut g, "offer_bind_new_client", &mut events, |n, ev| {
        dora(&e, n, ev)
    });

    let e = slash8(1);
    let clients: Vec<(ClientKey, HwAddr, Ipv4Addr)> = (0..100_000)
        .map(|i| {
            let a = dora(&e, i, &mut events);
            let (k, h) = client(i);
            (k, h, a)
        })
        .collect();
    let mut i = 0;
    g.bench_function("renew_100k_live", |b| {
        b.iter(|| {
            i = (i + 1) % clients.len();
            let (k, hw, a) = &clients[i];
            events.clear();
            let bind = BindRequest {
                client: k,
                address: *a,
                pools: POOLS,
                reserved: false,
                grant: lessor_engine::v4::Grant {
                    lease_time: 3600,
                    info: LeaseInfo {
                        hw: *hw,
                        hostname: None,
                    },
                },
            };
            black_box(e.bind(0, &bind, NOW + 10, &mut events).unwrap())
        })
    });

    g.bench_function("release_and_rebind", |b| {
        b.iter_batched(
            || {
                let e = slash8(1);
                let mut ev = Vec::new();
                let a = dora(&e, 1, &mut ev);
                (e, a)
            },
            |(e, a)| {
                let mut ev = Vec::new();
                let (k, _) = client(1);
                e.release(0, &k, a, NOW, &mut ev);
                black_box(dora(&e, 1, &mut ev))
            },
            BatchSize::SmallInput,
        )
    });

    common::reclaim_10k_expired(
        &mut g,
        || slash8(1),
        |e, i, ev| {
            dora(e, i, ev);
        },
        |e, now, max, ev| e.reclaim(0, now, max, ev),
    );
    g.finish();
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
