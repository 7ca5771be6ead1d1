//! The whole DHCPv4 receive path: validate, decode every field the server reads, handle the
//! request against a live engine (state carries over between inputs), and check that any reply
//! decodes with dhcproto's owned decoder.
#![no_main]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::{Mutex, OnceLock};

use dhcproto::{Decodable, Decoder};
use lessor_engine::v4::Engine;
use lessor_server::config::Config;
use lessor_server::v4::{self, Arrival, InterfaceInfo, Outcome, Scratch};
use libfuzzer_sys::fuzz_target;

/// The handler tests' config plus BOOTP and a global reservation.
const CONFIG: &str = concat!(
    include_str!("../../server/tests/fixtures/v4.yaml"),
    "  bootp_dynamic: true
  next_server: 10.231.0.5
  server_hostname: boot.example.test
  boot_file_name: pxelinux.0
  reservations:
    - { hw_address: \"02:23:10:00:00:70\", address: 10.232.0.70, boot_file_name: roamer.efi }
"
);

/// The same config in HA load balancing: pools split by scope, clients answered by the mask.
const BALANCED: &str =
    "ha: { mode: load-balancing, node: a, etcd: [ \"http://127.0.0.1:2379\" ], peers: [
  { name: a, url: \"http://127.0.0.1:1\", stream: \"127.0.0.1:8068\" },
  { name: b, url: \"http://127.0.0.1:2\", stream: \"127.0.0.1:8069\" } ] }
";

struct State {
    ctx: v4::Context,
    engine: Engine,
    scratch: Scratch,
    out: Vec<u8>,
    events: Vec<lessor_engine::v4::LeaseEvent>,
}

/// The engine and context of `CONFIG`, or with `balanced` of `CONFIG` in load balancing.
fn state(balanced: bool) -> &'static Mutex<State> {
    static S: [OnceLock<Mutex<State>>; 2] = [OnceLock::new(), OnceLock::new()];
    S[usize::from(balanced)].get_or_init(|| {
        let yaml = if balanced {
            format!("{CONFIG}{BALANCED}")
        } else {
            CONFIG.to_owned()
        };
        let config = Config::from_yaml_str(&yaml).expect("fuzz config");
        let ifaces = [InterfaceInfo {
            index: 9,
            name: "eth9".into(),
            addrs: vec![Ipv4Addr::new(10, 232, 0, 1)],
        }];
        let ctx = v4::Context::new(&config, &ifaces);
        let engine = Engine::new(ctx.engine_config(2)).expect("engine");
        Mutex::new(State {
            ctx,
            engine,
            scratch: Scratch::default(),
            out: Vec::new(),
            events: Vec::new(),
        })
    })
}

fuzz_target!(|data: &[u8]| {
    // The first byte picks the arrival interface and moves the clock, so expiry runs too; its
    // bit 1 load balancing, and bits 2-5 the scope mask then.
    let (sel, pkt) = data.split_first().map_or((0, data), |(a, b)| (*a, b));
    let mut s = state(sel & 2 != 0)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    let State {
        ctx,
        engine,
        scratch,
        out,
        events,
    } = &mut *s;
    let arrival = Arrival {
        src: SocketAddrV4::new(Ipv4Addr::new(10, 231, 0, 1), 67),
        ifindex: if sel & 1 == 0 { 9 } else { 1 },
        local: Ipv4Addr::new(10, 231, 0, 2),
    };
    let now = 1_800_000_000 + u64::from(sel) * 97;
    engine.reclaim(0, now, 64, events);
    let got = v4::Received::new(pkt, arrival, now).serving((sel >> 2) & 0b1111);
    if let Outcome::Reply(_) = v4::handle(ctx, engine, got, scratch, out, events) {
        let msg = dhcproto::v4::Message::decode(&mut Decoder::new(out));
        assert!(msg.is_ok(), "reply does not decode: {msg:?}");
    }
    events.clear();
});
