//! Packet parse + handle + encode per DHCPv4 message type, against a live engine.

use std::hint::black_box;
use std::net::{Ipv4Addr, SocketAddrV4};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use lessor_bench::request;
use lessor_engine::v4::{Engine, LeaseEvent};
use lessor_server::config::Config;
use lessor_server::v4::{Arrival, Context, Outcome, Received, Scratch, handle};

const CONFIG: &str = r#"
port: 67
v4:
  subnets:
    - subnet: 10.0.0.0/8
      pools: [ "10.0.0.1-10.255.255.254" ]
      relays: [ 127.0.0.1 ]
      options: { routers: [10.0.0.1], domain_name_servers: [10.0.0.1, 10.0.0.2], domain_name: example.test, ntp_servers: [10.0.0.1] }
"#;
const RELAY: [u8; 4] = [127, 0, 0, 1];
const NOW: u64 = 1_800_000_000;

/// The handler's per-worker state: its context, engine and buffers, as a worker holds them.
struct Worker {
    ctx: Context,
    engine: Engine,
    arrival: Arrival,
    scratch: Scratch,
    out: Vec<u8>,
    events: Vec<LeaseEvent>,
}

impl Worker {
    /// Handles `pkt` arriving at `now`; the reply, if any, is in `out`.
    fn handle(&mut self, pkt: &[u8], now: u64) -> Outcome {
        handle(
            &self.ctx,
            &self.engine,
            Received::new(pkt, self.arrival, now),
            &mut self.scratch,
            &mut self.out,
            &mut self.events,
        )
    }

    /// Handles `pkt` at `now` with the events cleared first; whether it was answered.
    fn answers(&mut self, pkt: &[u8], now: u64) -> bool {
        self.events.clear();
        matches!(self.handle(pkt, now), Outcome::Reply(_))
    }
}

fn benches(c: &mut Criterion) {
    let config = Config::from_yaml_str(CONFIG).unwrap();
    let ctx = Context::new(&config, &[]);
    let engine = Engine::new(ctx.engine_config(1)).unwrap();
    let mut w = Worker {
        ctx,
        engine,
        arrival: Arrival {
            src: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 67),
            ifindex: 1,
            local: Ipv4Addr::LOCALHOST,
        },
        scratch: Scratch::default(),
        out: Vec::with_capacity(2048),
        events: Vec::new(),
    };
    let mut g = c.benchmark_group("v4");
    g.throughput(Throughput::Elements(1));

    // DISCOVER from ever new clients: parse, allocate and hold, encode an OFFER.
    let mut n = 0u32;
    g.bench_function("discover_new_client", |b| {
        b.iter(|| {
            n += 1;
            let pkt = request(n, 1, RELAY, [0; 4], &[]);
            let o = w.handle(&pkt, NOW);
            black_box(matches!(o, Outcome::Reply(_)))
        })
    });

    // SELECTING REQUEST for an offered address: bind, event, encode an ACK. Prepared offers.
    let offers: Vec<(Vec<u8>, Ipv4Addr)> = (0..200_000u32)
        .map(|i| {
            let m = 10_000_000 + i;
            let pkt = request(m, 1, RELAY, [0; 4], &[]);
            w.handle(&pkt, NOW);
            let out = &w.out;
            let yiaddr = Ipv4Addr::new(out[16], out[17], out[18], out[19]);
            let req = request(
                m,
                3,
                RELAY,
                [0; 4],
                &[(50, &yiaddr.octets()), (54, &[127, 0, 0, 1])],
            );
            (req, yiaddr)
        })
        .collect();
    let mut i = 0usize;
    g.bench_function("request_selecting_ack", |b| {
        b.iter(|| {
            let (pkt, _) = &offers[i % offers.len()];
            i += 1;
            black_box(w.answers(pkt, NOW))
        })
    });

    // RENEWING REQUEST (ciaddr) for a bound lease.
    let renews: Vec<Vec<u8>> = offers
        .iter()
        .enumerate()
        .map(|(k, (_, ip))| request(10_000_000 + k as u32, 3, RELAY, ip.octets(), &[]))
        .collect();
    g.bench_function("request_renew_ack", |b| {
        b.iter(|| {
            let pkt = &renews[i % renews.len()];
            i += 1;
            black_box(w.answers(pkt, NOW + 100))
        })
    });

    let inform = request(7, 8, RELAY, [10, 0, 0, 9], &[]);
    g.bench_function("inform", |b| b.iter(|| black_box(w.handle(&inform, NOW))));

    let mut bad = request(7, 1, RELAY, [0; 4], &[]);
    bad.truncate(bad.len() - 4);
    bad.extend_from_slice(&[12, 200, b'x']);
    g.bench_function("malformed_drop", |b| {
        b.iter(|| black_box(w.handle(&bad, NOW)))
    });
    g.finish();
}

criterion_group!(v4_benches, benches);
criterion_main!(v4_benches);
