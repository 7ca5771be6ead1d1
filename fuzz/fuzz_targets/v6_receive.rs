//! The whole DHCPv6 receive path: validation (relay layers included), every accessor the server
//! uses, handling against a live engine whose state carries over between inputs, and a check
//! that any reply unwraps into one RELAY-REPL per relay hop around a client message that
//! dhcproto's owned decoder reads.
#![no_main]

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::{Arc, Mutex, OnceLock};

use dhcproto::{Decodable, Decoder};
use lessor_engine::v6::{Engine, LeaseEvent};
use lessor_server::config::{Assignments, Config};
use lessor_server::v6::{self, Arrival, InterfaceInfo, Outcome};
use libfuzzer_sys::fuzz_target;

const CONFIG: &str = r#"
v6:
  preferred_lifetime: 1000
  valid_lifetime: 2000
  preference: 7
  server_unicast: "2001:db8:1::2"
  subnets:
    - subnet: "2001:db8:1::/64"
      interface: eth9
      pools: ["2001:db8:1::100-2001:db8:1::10f"]
      pd_pools:
        - { prefix: "2001:db8:100::/52", delegated_len: 56, excluded_prefix: "2001:db8:100:ff::/64" }
      options: { dns_servers: ["2001:db8:1::53"], domain_search: [example.test], ntp_servers: [ntp.example.test] }
      reservations:
        - { duid: "00:03:00:01:02:00:00:00:00:50", address: "2001:db8:1::50" }
        - { remote_id: "3561:CUST1", prefix: "2001:db8:f000:100::/56" }
        - { interface_id: "port9", address: "2001:db8:1::59" }
    - subnet: "2001:db8:2::/64"
      relays: ["2001:db8:99::1"]
      interface_ids: ["olt/7"]
      rapid_commit: true
      pools: ["2001:db8:2::/112"]
      pd_pools: [ { prefix: "2001:db8:200::/48", delegated_len: 64 } ]
  shared_networks:
    - name: building2
      relays: ["2001:db8:9::2"]
      interface_ids: ["olt1/port4"]
      subnets:
        - subnet: "2001:db8:233::/64"
          pools: ["2001:db8:233::1000-2001:db8:233::1003"]
        - subnet: "2001:db8:234::/64"
          pools: ["2001:db8:234::1000-2001:db8:234::10ff"]
  reservations:
    - { duid: "00:03:00:01:02:23:10:00:00:70", address: "2001:db8:234::70" }
"#;

const SERVER_DUID: &[u8] = &[0, 2, 0, 0, 0, 9, 0x6c, 0x65, 0x73, 0x73];

struct State {
    ctx: v6::Context,
    engine: Engine,
    out: Vec<u8>,
    events: Vec<LeaseEvent>,
}

fn state() -> &'static Mutex<State> {
    static S: OnceLock<Mutex<State>> = OnceLock::new();
    S.get_or_init(|| {
        let config = Config::from_yaml_str(CONFIG).expect("fuzz config");
        let table = Assignments::parse(
            "id,address,prefix\nremote-id-str:3561:CUST2,,2001:db8:f000:200::/56\n",
            &config.v6,
        )
        .expect("fuzz assignments");
        let ifaces = [InterfaceInfo {
            index: 9,
            name: "eth9".into(),
            addrs: vec!["fe80::9".parse().unwrap()],
        }];
        let ctx = v6::Context::new(&config, SERVER_DUID, &ifaces, Arc::new(table));
        let engine = Engine::new(ctx.engine_config(2)).expect("engine");
        Mutex::new(State {
            ctx,
            engine,
            out: Vec::new(),
            events: Vec::new(),
        })
    })
}

/// Reads every field and accessor the handler relies on.
fn touch(r: &v6::Request<'_>) -> usize {
    let mut n =
        usize::from(r.rapid_commit) + usize::from(r.reconfigure_accept) + usize::from(r.has_ias);
    n += r.client_id.map_or(0, <[u8]>::len) + r.server_id.map_or(0, <[u8]>::len);
    n += usize::from(r.requests(23)) + r.oro.map_or(0, <[u8]>::len);
    for h in r.hops() {
        n += usize::from(h.hop_count) + h.interface_id.map_or(0, <[u8]>::len);
        n += h.remote_id.map_or(0, <[u8]>::len) + h.subscriber_id.map_or(0, <[u8]>::len);
        n += usize::from(h.link_address.is_unspecified())
            + usize::from(h.peer_address.is_multicast());
    }
    n += r.relay_option(|h| h.remote_id).map_or(0, <[u8]>::len);
    for ia in r.ias() {
        n += ia.iaid as usize + ia.t1 as usize % 7 + ia.t2 as usize % 7;
        for e in ia.entries() {
            n += usize::from(e.len) + (e.preferred % 3) as usize + (e.valid % 3) as usize;
            n += usize::from(e.addr.is_unspecified());
        }
        n += usize::from(ia.first().is_some());
    }
    n
}

/// Peels the RELAY-REPL layers of a reply; returns how many and the client message.
fn unwrap(mut buf: &[u8]) -> (usize, &[u8]) {
    let mut layers = 0;
    while buf.first() == Some(&13) {
        assert!(buf.len() >= 34, "short RELAY-REPL");
        let mut rest = &buf[34..];
        let mut inner = None;
        while !rest.is_empty() {
            assert!(rest.len() >= 4, "RELAY-REPL option header cut");
            let code = u16::from_be_bytes([rest[0], rest[1]]);
            let len = usize::from(u16::from_be_bytes([rest[2], rest[3]]));
            assert!(rest.len() >= 4 + len, "RELAY-REPL option overruns");
            if code == 9 {
                inner = Some(&rest[4..4 + len]);
            }
            rest = &rest[4 + len..];
        }
        buf = inner.expect("a RELAY-REPL carries a relay message");
        layers += 1;
    }
    (layers, buf)
}

fuzz_target!(|data: &[u8]| {
    let mut s = state().lock().unwrap_or_else(|e| e.into_inner());
    let State {
        ctx,
        engine,
        out,
        events,
    } = &mut *s;
    // The first byte picks how the datagram arrived and moves the clock, so expiry runs too.
    let (sel, pkt) = data.split_first().map_or((0, data), |(a, b)| (*a, b));
    let (src, dst): (Ipv6Addr, Ipv6Addr) = match sel % 3 {
        0 => (
            "2001:db8:1::1".parse().unwrap(),
            "2001:db8:1::2".parse().unwrap(),
        ),
        1 => ("fe80::c1".parse().unwrap(), "ff02::1:2".parse().unwrap()),
        _ => (
            "fe80::c1".parse().unwrap(),
            "2001:db8:1::2".parse().unwrap(),
        ),
    };
    let arrival = Arrival {
        src: SocketAddrV6::new(src, 546, 0, 9),
        ifindex: 9,
        dst,
    };
    let now = 1_800_000_000 + u64::from(sel) * 97;
    let shard = v6::owner_shard(pkt, engine).unwrap_or(0);
    engine.reclaim(shard, now, 64, events);

    let parsed = v6::parse(pkt);
    if let Ok(r) = &parsed {
        std::hint::black_box(touch(r));
        // The cheap steering look-up agrees with the full parse.
        assert_eq!(
            v6::client_duid(pkt),
            r.client_id,
            "client_duid disagrees with parse"
        );
    }
    let got = v6::Received::new(pkt, arrival, now);
    if let Outcome::Reply(reply) = v6::handle(ctx, engine, got, out, events) {
        let r = parsed.expect("a reply to a datagram that failed validation");
        let (layers, inner) = unwrap(out);
        assert_eq!(layers, r.hops().len(), "one RELAY-REPL per relay hop");
        let msg = dhcproto::v6::Message::decode(&mut Decoder::new(inner));
        assert!(msg.is_ok(), "reply does not decode: {msg:?}");
        assert!(
            !reply.needs_durable || !events.is_empty(),
            "a durable reply without events"
        );
    }
    events.clear();
});
