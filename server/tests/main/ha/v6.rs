//! DHCPv6 in a hot-standby pair: the journal stream carries the v6 leases too, and a takeover
//! replays them into the new leader's v6 engine before it answers (docs/HA.md).

use std::collections::BTreeSet;
use std::net::UdpSocket;

use serde_json::json;

use super::{Etcd, start_pair, stream_key, synced_configs, wait_in_sync, wait_role};
use crate::common::require_root;
use crate::kea_client::v6::{Relay, duid_text};
use crate::kea_client::{command, string};

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

#[test]
fn a_synced_standby_takes_over_every_dhcpv6_lease_the_active_granted() {
    require_root();
    let etcd = Etcd::start();
    let key = stream_key('k');
    let (configs, _) = synced_configs(&etcd, key.path());
    let ports = [0, 1].map(|_| {
        UdpSocket::bind("[::1]:0")
            .and_then(|s| s.local_addr())
            .expect("a free UDP port")
            .port()
    });
    let configs = [0, 1].map(|i| {
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
    });
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
