//! DHCPv6 in a hot-standby pair: the journal stream carries the v6 leases too, and a takeover
//! replays them into the new leader's v6 engine before it answers (docs/HA.md).

use std::collections::BTreeSet;
use std::net::UdpSocket;

use serde_json::json;

use super::balance::served;
use super::{
    Etcd, ha, in_sync, kept_configs, start_pair, stream_key, synced_configs, wait_ha, wait_in_sync,
    wait_role,
};
use crate::common::require_root;
use crate::common::{Lessor, tempdir};
use crate::kea_client::v6::{Relay, duid_text};
use crate::kea_client::{command, string};
use lessor_server::scope;

/// This test's clients' DUIDs: 00:03:00:01:02:36:00:00:00:`n`.
const TAG: u8 = 0x36;

/// Every bound v6 lease of the control server at `url`: (address or prefix/len, type, DUID).
fn bound6(url: &str) -> BTreeSet<(String, String, String)> {
    let all = command(url, json!({"command": "lease6-get-all"}));
    let leases = all["arguments"]["leases"].as_array().cloned();
    leases
        .unwrap_or_default()
        .iter()
        .filter(|l| l["state"] == 0)
        .map(|l| {
            let mut at = string(l, "ip-address");
            if string(l, "type") == "IA_PD" {
                at = format!("{at}/{}", l["prefix-len"]);
            }
            (at, string(l, "type"), string(l, "duid"))
        })
        .collect()
}

/// Two free UDP ports on `::1`.
fn free_ports6() -> [u16; 2] {
    [0, 1].map(|_| {
        UdpSocket::bind("[::1]:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port()
    })
}

/// `configs` with the DHCPv6 service of this test on `ports`.
fn with_v6(configs: &[String; 2], ports: [u16; 2]) -> [String; 2] {
    [0, 1].map(|i| {
        format!(
            r#"{}v6:
  port: {}
  rapid_commit: true
  subnets:
    - subnet: fd00:236::/64
      relays: [ "::1" ]
      pools: [ "fd00:236::1000-fd00:236::1fff" ]
      pd_pools: [ {{ prefix: "fd00:2360::/48", delegated_len: 56 }} ]
"#,
            configs[i], ports[i]
        )
    })
}

#[test]
fn a_synced_standby_takes_over_every_dhcpv6_lease_the_active_granted() {
    require_root();
    let etcd = Etcd::start();
    let key = stream_key('k');
    let (configs, _) = synced_configs(&etcd, key.path());
    let ports = free_ports6();
    let configs = with_v6(&configs, ports);
    let (a, b) = start_pair(&configs);
    wait_in_sync(&a);

    // With `sync: true` each REPLY leaves once the standby has its lease.
    let relay = Relay::to(TAG, ports[0]);
    let granted: Vec<(String, String)> = (1..=30).map(|n| relay.address_and_prefix(n)).collect();
    a.crash();
    wait_role(&b, "leader");
    let held = bound6(&b.control_url());
    for (n, (addr, prefix)) in (1..).zip(&granted) {
        let duid = duid_text(TAG, n);
        for (at, kind) in [(addr, "IA_NA"), (prefix, "IA_PD")] {
            let lease = (at.clone(), kind.to_owned(), duid.clone());
            assert!(held.contains(&lease), "{lease:?} not bound in {held:?}");
        }
    }

    // The clients come back to the new leader and keep what they had.
    let relay = Relay::to(TAG, ports[1]);
    for n in [1u8, 15, 30] {
        let again = relay.address_and_prefix(n);
        assert_eq!(again, granted[usize::from(n) - 1], "client {n}");
    }
    b.stop().assert_success();
}

/// Load balancing for DHCPv6: each client's DUID picks its scope; its server grants an
/// address and a prefix from that scope's half; the survivor of a crash binds all and gives
/// each client the same again.
#[test]
fn a_balanced_pair_splits_dhcpv6_clients_and_a_survivor_keeps_them_all() {
    require_root();
    let etcd = Etcd::start();
    let key = stream_key('k');
    let state = tempdir();
    let (configs, _) = kept_configs(&etcd, key.path(), state.path(), |c| {
        c.replace("mode: hot-standby", "mode: load-balancing")
    });
    let ports = free_ports6();
    let configs = with_v6(&configs, ports);
    let a = Lessor::start(None, &configs[0], &[]);
    let b = Lessor::start(None, &configs[1], &[]);
    for (l, want) in [(&a, [true, false]), (&b, [false, true])] {
        wait_ha("its own scope", || ha(l), |h| served(h) == want);
        wait_ha("the partner in sync", || ha(l), in_sync);
    }
    let scope_of = |n: u8| scope::of_duid(&[0, 3, 0, 1, 2, TAG, 0, 0, 0, n]);
    let relays = ports.map(|p| Relay::to(TAG, p));
    let granted: Vec<(String, String)> = (1..=40)
        .map(|n| relays[scope_of(n)].address_and_prefix(n))
        .collect();
    let scopes: BTreeSet<usize> = (1..=40).map(scope_of).collect();
    assert_eq!(scopes.len(), 2, "both scopes have clients");
    // Each from its scope's half: scope 0 has fd00:236::1000-17ff and the /56s of
    // fd00:2360::/49.
    for (n, (addr, prefix)) in (1..).zip(&granted) {
        let addr: std::net::Ipv6Addr = addr.parse().unwrap();
        let low =
            u128::from(addr) < u128::from("fd00:236::1800".parse::<std::net::Ipv6Addr>().unwrap());
        let start: std::net::Ipv6Addr = prefix.split('/').next().unwrap().parse().unwrap();
        let prefix_low = start < "fd00:2360:0:8000::".parse::<std::net::Ipv6Addr>().unwrap();
        let want_low = scope_of(n) == 0;
        assert_eq!(
            (low, prefix_low),
            (want_low, want_low),
            "client {n}: {addr} {prefix}"
        );
    }

    b.crash();
    wait_ha("a covering b", || ha(&a), |h| served(h) == [true, true]);
    let held = bound6(&a.control_url());
    for (n, (addr, prefix)) in (1..).zip(&granted) {
        let duid = duid_text(TAG, n);
        for (at, kind) in [(addr, "IA_NA"), (prefix, "IA_PD")] {
            let lease = (at.clone(), kind.to_owned(), duid.clone());
            assert!(held.contains(&lease), "{lease:?} not bound in {held:?}");
        }
    }
    for n in (1..=40).filter(|&n| scope_of(n) == 1).take(3) {
        let again = relays[0].address_and_prefix(n);
        assert_eq!(
            again,
            granted[usize::from(n) - 1],
            "client {n} of b's scope"
        );
    }
    a.stop().assert_success();
}
