//! Engine operations, one body for both families: building an engine, offer (v6: solicit) and
//! bind of new clients, renew, release and rebind, reclaim. Group `engine` is DHCPv4 on a /8
//! pool, group `v6_engine` DHCPv6 on a /64 IA_NA pool and a /32-into-/56 IA_PD pool.

mod common;

use std::hint::black_box;
use std::net::Ipv4Addr;

use common::{NOW, slash8};
use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use lessor_engine::{v4, v6};

/// One family's engine as these benches drive it, through its public API (the engine's own
/// family trait is crate-private). A value is a kind of client with the pools it binds from:
/// DHCPv6 has two, IA_NA and IA_PD. Every call is in shard 0.
trait Family: Sized {
    /// The criterion group.
    const GROUP: &'static str;
    /// The pools, as the name of the bench that builds an engine spells them.
    const POOLS: &'static str;
    type Engine;
    type Client;
    /// What a client is bound to: an address (v6: or a prefix).
    type Lease: Copy;
    type Event;

    /// The kinds of client, each with the name of its new-client bench; the other benches use
    /// the first.
    fn kinds() -> Vec<(&'static str, Self)>;
    /// An engine of `shards` shards over the bench's pools.
    fn engine(shards: usize) -> Self::Engine;
    /// Reclaim up to `max` records whose time has passed at `now`.
    fn reclaim(bed: &mut Bed<Self>, now: u64, max: usize) -> usize;
    /// Client `n` of this kind.
    fn client(&self, n: u32) -> Self::Client;
    /// The offer (v6: advertise) for `c` at `now`.
    fn offer(&self, bed: &Bed<Self>, c: &Self::Client, now: u64) -> Self::Lease;
    /// Bind (or renew) `lease` for `c` at `now`, for an hour.
    fn bind(&self, bed: &mut Bed<Self>, c: &Self::Client, lease: Self::Lease, now: u64);
    /// Release `lease` at `now`.
    fn release(bed: &mut Bed<Self>, c: &Self::Client, lease: Self::Lease, now: u64) -> bool;

    /// Offer and bind, as for a client new to the engine.
    fn offer_bind(&self, bed: &mut Bed<Self>, c: &Self::Client, now: u64) -> Self::Lease {
        let lease = self.offer(bed, c, now);
        self.bind(bed, c, lease, now);
        lease
    }
}

/// An engine and the events its calls push, which the benches clear when they choose.
struct Bed<F: Family> {
    engine: F::Engine,
    events: Vec<F::Event>,
}

impl<F: Family> Bed<F> {
    /// An engine of one shard, no events yet.
    fn new() -> Self {
        Self {
            engine: F::engine(1),
            events: Vec::new(),
        }
    }
}

/// DHCPv4: clients keyed by htype 1 and the MAC 02:00:xx:xx:xx:xx that spells `n`.
struct V4;

const POOLS_V4: &[v4::PoolId] = &[v4::PoolId(0)];

impl Family for V4 {
    const GROUP: &'static str = "engine";
    const POOLS: &'static str = "8_pool";
    type Engine = v4::Engine;
    type Client = (v4::ClientKey, v4::HwAddr);
    type Lease = Ipv4Addr;
    type Event = v4::LeaseEvent;

    fn kinds() -> Vec<(&'static str, Self)> {
        vec![("offer_bind_new_client", V4)]
    }

    fn engine(shards: usize) -> v4::Engine {
        slash8(shards)
    }

    fn reclaim(bed: &mut Bed<Self>, now: u64, max: usize) -> usize {
        bed.engine.reclaim(0, now, max, &mut bed.events)
    }

    fn client(&self, n: u32) -> Self::Client {
        let [a, b, c, d] = n.to_be_bytes();
        let mac = [2, 0, a, b, c, d];
        let hw = v4::HwAddr::new(1, &mac).expect("a MAC is a hardware address");
        (v4::ClientKey::hardware(1, &mac), hw)
    }

    fn offer(&self, bed: &Bed<Self>, (key, hw): &Self::Client, now: u64) -> Ipv4Addr {
        let info = v4::LeaseInfo {
            hw: *hw,
            hostname: None,
        };
        let req = v4::OfferRequest {
            client: key,
            pools: POOLS_V4,
            reserved: None,
            requested: None,
            info,
        };
        bed.engine.offer(0, &req, now).expect("the /8 has room")
    }

    fn bind(&self, bed: &mut Bed<Self>, (key, hw): &Self::Client, address: Ipv4Addr, now: u64) {
        let info = v4::LeaseInfo {
            hw: *hw,
            hostname: None,
        };
        let req = v4::BindRequest {
            client: key,
            address,
            pools: POOLS_V4,
            reserved: false,
            grant: v4::Grant {
                lease_time: 3600,
                info,
            },
        };
        let view = bed.engine.bind(0, &req, now, &mut bed.events);
        black_box(view.expect("binds"));
    }

    fn release(bed: &mut Bed<Self>, (key, _): &Self::Client, address: Ipv4Addr, now: u64) -> bool {
        bed.engine.release(0, key, address, now, &mut bed.events)
    }
}

/// DHCPv6: IAs of one kind, keyed by a DUID-LLT for Ethernet (14 bytes, as most clients send)
/// that spells `n`, and IAID 1.
struct V6 {
    kind: v6::IaKind,
    pools: &'static [v6::PoolId],
}

impl Family for V6 {
    const GROUP: &'static str = "v6_engine";
    const POOLS: &'static str = "64_na_32_pd";
    type Engine = v6::Engine;
    type Client = v6::IaKey;
    type Lease = v6::Resource;
    type Event = v6::LeaseEvent;

    fn kinds() -> Vec<(&'static str, Self)> {
        let na = V6 {
            kind: v6::IaKind::Na,
            pools: &[v6::PoolId(0)],
        };
        let pd = V6 {
            kind: v6::IaKind::Pd,
            pools: &[v6::PoolId(1)],
        };
        vec![("solicit_bind_new_na", na), ("solicit_bind_new_pd", pd)]
    }

    fn engine(shards: usize) -> v6::Engine {
        let na = v6::PoolSpec::Na {
            first: "2001:db8::".parse().unwrap(),
            last: "2001:db8::ffff:ffff:ffff:ffff".parse().unwrap(),
            excluded: vec![],
        };
        let pd = v6::PoolSpec::Pd {
            prefix: "2001:db9::".parse().unwrap(),
            prefix_len: 32,
            delegated_len: 56,
            excluded: vec![],
        };
        v6::Engine::new(v6::EngineConfig {
            shards,
            pools: vec![na, pd],
            offer_hold: 30,
            decline_probation: 86400,
        })
        .expect("the bench engine's config is valid")
    }

    fn reclaim(bed: &mut Bed<Self>, now: u64, max: usize) -> usize {
        bed.engine.reclaim(0, now, max, &mut bed.events)
    }

    fn client(&self, n: u32) -> v6::IaKey {
        let [a, b, c, d] = n.to_be_bytes();
        let duid = [0, 1, 0, 1, 0x2a, 0x3b, 0x4c, 0x5d, 2, 0, a, b, c, d];
        v6::IaKey::new(&duid, 1, self.kind)
    }

    fn offer(&self, bed: &Bed<Self>, key: &v6::IaKey, now: u64) -> v6::Resource {
        let req = v6::SolicitRequest {
            client: key,
            pools: self.pools,
            reserved: None,
            requested: None,
            info: (),
        };
        let offered = bed.engine.solicit(0, &req, now);
        offered.expect("the pool has room").resource
    }

    fn bind(&self, bed: &mut Bed<Self>, key: &v6::IaKey, address: v6::Resource, now: u64) {
        let req = v6::BindRequest {
            client: key,
            address,
            pools: self.pools,
            reserved: false,
            grant: v6::Grant {
                preferred: 1800,
                valid: 3600,
            },
        };
        let view = bed.engine.bind(0, &req, now, &mut bed.events);
        black_box(view.expect("binds"));
    }

    fn release(bed: &mut Bed<Self>, key: &v6::IaKey, address: v6::Resource, now: u64) -> bool {
        bed.engine.release(0, key, address, now, &mut bed.events)
    }
}

/// `F`'s benches, in its group.
fn family<F: Family>(c: &mut Criterion) {
    let mut g = c.benchmark_group(F::GROUP);
    let new_engine = format!("new_{}_2_shards", F::POOLS);
    g.bench_function(new_engine, |b| b.iter(|| black_box(F::engine(2))));

    // Clients n = 1, 2, ... each new to one engine.
    let kinds = F::kinds();
    for (name, kind) in &kinds {
        let mut bed = Bed::<F>::new();
        let mut n = 0u32;
        g.bench_function(*name, |b| {
            b.iter(|| {
                n += 1;
                bed.events.clear();
                black_box(kind.offer_bind(&mut bed, &kind.client(n), NOW))
            })
        });
    }

    // One engine with 100 000 clients bound, taken in turn.
    let kind = &kinds[0].1;
    let mut bed = Bed::<F>::new();
    let live: Vec<(F::Client, F::Lease)> = (0..100_000)
        .map(|n| {
            let client = kind.client(n);
            let lease = kind.offer_bind(&mut bed, &client, NOW);
            (client, lease)
        })
        .collect();
    let mut next = live.iter().cycle();
    g.bench_function("renew_100k_live", |b| {
        b.iter(|| {
            let (client, lease) = next.next().expect("cycles");
            bed.events.clear();
            kind.bind(&mut bed, client, *lease, NOW + 10);
        })
    });
    g.bench_function("release_and_rebind_100k_live", |b| {
        b.iter(|| {
            let (client, lease) = next.next().expect("cycles");
            bed.events.clear();
            F::release(&mut bed, client, *lease, NOW + 20);
            black_box(kind.offer_bind(&mut bed, client, NOW + 20))
        })
    });

    // A fresh engine with one client bound per iteration, dropped within the measurement.
    g.bench_function("release_and_rebind", |b| {
        b.iter_batched(
            || {
                let mut bed = Bed::<F>::new();
                let client = kind.client(1);
                let lease = kind.offer_bind(&mut bed, &client, NOW);
                // The routine's events go to a buffer it allocates.
                bed.events = Vec::new();
                (bed, client, lease)
            },
            |(mut bed, client, lease)| {
                F::release(&mut bed, &client, lease, NOW);
                black_box(kind.offer_bind(&mut bed, &client, NOW))
            },
            BatchSize::SmallInput,
        )
    });

    // A fresh engine per iteration, clients 0..10 000 bound for an hour, all expired at
    // `NOW + 4000`; dropped within the measurement.
    g.bench_function("reclaim_10k_expired", |b| {
        b.iter_batched(
            || {
                let mut bed = Bed::<F>::new();
                for n in 0..10_000 {
                    kind.offer_bind(&mut bed, &kind.client(n), NOW);
                }
                bed.events = Vec::new();
                bed
            },
            |mut bed| {
                // Room for every event, allocated within the measurement.
                bed.events.reserve(10_000);
                black_box(F::reclaim(&mut bed, NOW + 4000, 10_000))
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

fn benches(c: &mut Criterion) {
    family::<V4>(c);
    family::<V6>(c);
}

criterion_group!(engine_benches, benches);
criterion_main!(engine_benches);
