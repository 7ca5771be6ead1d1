//! Hot-standby under perfdhcp (docs/HA.md): the active is killed -9 at a random moment of a
//! perfdhcp run; every DHCPACK tshark saw leave it is bound in the standby that takes over,
//! and perfdhcp aimed at the standby then gets its DORAs answered. In a network namespace of
//! its own, so that the capture holds this test's packets only.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::{Etcd, bound_at, ha_at, holds_all, in_sync, kept_configs, role, stream_key, wait_ha};
use crate::common::{Lessor, Ns, heavy_turn, require_root, tempdir, unique};
use crate::journal::{Bg, Capture, captured_acks, merge_acks, perfdhcp_to};

/// The servers' DHCP ports: perfdhcp sends to one of them.
const PORTS: [u16; 2] = [6767, 6777];

#[test]
fn a_standby_binds_every_ack_perfdhcp_got_from_a_killed_active() {
    require_root();
    let _turn = heavy_turn();
    let ns = Ns::new(format!("lhap-{}", unique()));
    let etcd = Etcd::start_in(&ns);
    let dir = tempdir();
    let key = stream_key('k');
    let (configs, ports) = kept_configs(&etcd, key.path(), dir.path(), str::to_owned);
    let configs = [0, 1].map(|i| {
        let port = |p: u16| format!("port: {p}\n");
        configs[i].replacen(&port(ports[i]), &port(PORTS[i]), 1)
    });
    let status = |l: &Lessor| {
        let url = l.control_url();
        ns.run_in(move || ha_at(&url))
    };
    let a = Lessor::start(Some(&ns), &configs[0], &[]);
    wait_ha("a to lead", || status(&a), role("leader"));
    let b = Lessor::start(Some(&ns), &configs[1], &[]);
    wait_ha("b to stand by", || status(&b), role("standby"));
    wait_ha("b in sync", || status(&a), in_sync);

    let cap = Capture::start(&ns, dir.path(), "ha");
    let perf = |port: u16, base: &str, name: &str| {
        let args = ["-R", "1000000", "-r", "1000", "-b", base];
        let log = dir.path().join(format!("{name}.perfdhcp.log"));
        Bg::spawn("perfdhcp", &mut perfdhcp_to(&ns, false, port, &args), &log)
    };
    let mut to_a = perf(PORTS[0], "mac=02:03:00:00:00:00", "a");
    let nanos = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .map_or(0, |d| d.subsec_nanos());
    let delay = Duration::from_millis(1000 + u64::from(nanos % 2000));
    std::thread::sleep(delay);
    to_a.assert_running();
    a.crash();
    let (_, out_a) = to_a.stop("INT");
    wait_ha("b to lead", || status(&b), role("leader"));

    // perfdhcp aimed at the new leader is answered.
    let mut to_b = perf(PORTS[1], "mac=02:04:00:00:00:00", "b");
    std::thread::sleep(Duration::from_secs(2));
    to_b.assert_running();
    let (_, out_b) = to_b.stop("INT");
    let (pcap, _) = cap.finish();
    let acks = captured_acks(&pcap);
    let count = |prefix: &str| acks.iter().filter(|(_, m)| m.starts_with(prefix)).count();
    let (from_a, from_b) = (count("02:03"), count("02:04"));
    eprintln!("killed after {delay:?}: {from_a} ACKs from a, then {from_b} from b");
    assert!(from_a > 0, "a ACKed nothing before it was killed:\n{out_a}");
    assert!(from_b > 0, "b answered perfdhcp with no ACK:\n{out_b}");
    let mut acked = BTreeMap::new();
    merge_acks(&mut acked, &acks, "the pair");
    let url = b.control_url();
    let held = ns.run_in(move || bound_at(&url));
    holds_all(&held, &acked, "b");
    b.stop().assert_success();
}
