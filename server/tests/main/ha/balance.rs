//! Load balancing (docs/HA.md, "Load balancing"): two servers each answer the clients of
//! their own scope (RFC 3074 buckets) from their own half of the pool, streaming their
//! journals to each other; a survivor takes its partner's scope, and hands it back once the
//! partner has come back and caught up.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::{Value, json};

use super::{
    Clients, Etcd, Load, ROLE_DEADLINE, bound, ha, holds_all, in_sync, kept_configs, owners,
    stream_key, wait_ha,
};
use crate::common::{Lessor, require_root, tempdir, wait_until};
use crate::kea_client::command;

/// The pool of [`super::config_with`], split in two: scope 0 ("a") has the lower half.
const FIRST: u32 = u32::from_be_bytes([10, 234, 0, 10]);
const LAST: u32 = u32::from_be_bytes([10, 234, 250, 200]);

/// The scope whose half of the pool holds `ip`.
fn half_of(ip: Ipv4Addr) -> usize {
    let size = LAST - FIRST + 1;
    usize::from(u32::from(ip) - FIRST >= size.div_ceil(2))
}

/// The scope of the client with hardware address `mac` (no client identifier): RFC 3074's
/// bucket of its chaddr.
fn scope_of(mac: &str) -> usize {
    let chaddr: Vec<u8> = mac
        .split(':')
        .map(|b| u8::from_str_radix(b, 16).expect("a hex byte"))
        .collect();
    lessor_server::scope::of_bucket(lessor_server::scope::bucket(&chaddr))
}

/// Which scopes a server's `ha` object says it serves.
pub(super) fn served(ha: &Value) -> [bool; 2] {
    [0, 1].map(|i| ha["scopes"][i]["served"] == true)
}

/// Waits until `lessor` serves exactly the scopes `want`.
fn wait_serving(lessor: &Lessor, want: [bool; 2], what: &str) -> Value {
    wait_ha(what, || ha(lessor), |h| served(h) == want)
}

/// The ACKs that went to clients of `scope`, as address -> client.
pub(super) fn of_scope(
    owners: &BTreeMap<Ipv4Addr, String>,
    scope: usize,
) -> BTreeMap<Ipv4Addr, String> {
    owners
        .iter()
        .filter(|(_, mac)| scope_of(mac) == scope)
        .map(|(ip, mac)| (*ip, mac.clone()))
        .collect()
}

/// Every lease of `lessor` as address -> `written-by`.
fn written_by(lessor: &Lessor) -> BTreeMap<Ipv4Addr, String> {
    let all = command(&lessor.control_url(), json!({"command": "lease4-get-all"}));
    let leases = all["arguments"]["leases"].as_array().cloned();
    leases
        .unwrap_or_default()
        .iter()
        .filter_map(|l| {
            let ip = l["ip-address"].as_str()?.parse().ok()?;
            Some((ip, l["written-by"].as_str()?.to_owned()))
        })
        .collect()
}

/// A load-balancing pair of a new cluster, its config edited by `edit`, each server's state
/// under `state`: started, and each serving its own scope. With the DHCP ports and the
/// configs (to start a server again).
fn start_balanced(
    etcd: &Etcd,
    key: &std::path::Path,
    state: &std::path::Path,
    edit: impl Fn(&str) -> String,
) -> (Lessor, Lessor, [u16; 2], [String; 2]) {
    let (configs, ports) = kept_configs(etcd, key, state, |c| {
        edit(&c.replace("mode: hot-standby", "mode: load-balancing"))
    });
    let a = Lessor::start(None, &configs[0], &[]);
    let b = Lessor::start(None, &configs[1], &[]);
    let first = wait_serving(&a, [true, false], "a serving its own scope");
    wait_serving(&b, [false, true], "b serving its own scope");
    assert_eq!(first["scopes"][1]["holder"], "b", "{first}");
    // Binding replies wait for the partner only once it is in sync (docs/HA.md).
    for l in [&a, &b] {
        wait_ha("the partner in sync", || ha(l), in_sync);
    }
    (a, b, ports, configs)
}

#[test]
fn both_serve_their_scope_a_survivor_takes_the_other_and_gives_it_back() {
    require_root();
    let etcd = Etcd::start();
    let state = tempdir();
    let key = stream_key('k');
    let (a, b, ports, configs) = start_balanced(&etcd, key.path(), state.path(), str::to_owned);
    let servers = ports.map(|p| SocketAddrV4::new(Ipv4Addr::LOCALHOST, p));

    // Relays send every client's DORA to both servers: each client gets its one answer
    // from the server of its scope, from that scope's half of the pool.
    let load = Load::start(None, Ipv4Addr::LOCALHOST, servers);
    load.wait_more(200, "ACKs from both servers");
    let acked = |lessor: &Lessor| {
        let stats = command(
            &lessor.control_url(),
            json!({"command": "statistic-get", "arguments": {"name": "pkt4-ack-sent"}}),
        );
        stats["arguments"]["pkt4-ack-sent"][0][0]
            .as_u64()
            .unwrap_or(0)
    };
    let (by_a, by_b) = (acked(&a), acked(&b));
    assert!(
        by_a > 20 && by_b > 20,
        "both serve: a {by_a}, b {by_b} ACKs"
    );

    // b crashes: a takes its scope (once b's etcd lease is gone) and answers its clients.
    load.step(1);
    b.crash();
    let covering = wait_serving(&a, [true, true], "a covering b's scope");
    assert_eq!(covering["scopes"][1]["holder"], "a", "{covering}");
    let before_crash = owners(&load.acks.lock().unwrap().clone());
    holds_all(&bound(&a), &before_crash, "a, covering b");
    load.wait_more(100, "ACKs from a alone");

    // b restarts on its state: it catches up from a and is handed its scope back.
    load.step(2);
    let b = Lessor::start(None, &configs[1], &[]);
    let back = wait_serving(&b, [false, true], "b serving its scope again");
    assert!(
        back["scopes"][1]["epoch"].as_u64() > covering["scopes"][1]["epoch"].as_u64(),
        "{back} after {covering}"
    );
    wait_serving(&a, [true, false], "a back to its own scope");
    load.step(3);
    load.wait_more(100, "ACKs from both again");
    let acks = load.finish();
    let owners = owners(&acks);
    eprintln!("{} ACKs, {} addresses", acks.len(), owners.len());

    // Every client got an address of its own scope's half, whoever answered it.
    let astray: Vec<_> = owners
        .iter()
        .filter(|(ip, mac)| half_of(**ip) != scope_of(mac))
        .collect();
    assert!(astray.is_empty(), "outside their scope's half: {astray:?}");
    for scope in [0, 1] {
        assert!(
            !of_scope(&owners, scope).is_empty(),
            "scope {scope} had clients"
        );
    }
    holds_all(&bound(&a), &of_scope(&owners, 0), "a, its scope");
    holds_all(&bound(&b), &of_scope(&owners, 1), "b, its scope");

    // a stops: b takes a's scope and binds every address either server ACKed.
    wait_until(ROLE_DEADLINE, "a in sync with b", || {
        let h = ha(&a);
        (h["stream"]["state"] == "in-sync" && h["stream"]["lag"] == 0).then_some(())
    });
    a.stop().assert_success();
    wait_serving(&b, [true, true], "b covering a's scope");
    holds_all(&bound(&b), &owners, "b, covering a");

    // Each lease names the server that wrote it: its scope's server, or a while it covered.
    let by = written_by(&b);
    let mut checked = 0;
    for (ip, mac, server, step) in &acks {
        let want = match (step, scope_of(mac)) {
            _ if server.is_unspecified() => continue,
            (2, 1) => continue,
            (1, _) | (_, 0) => "a",
            _ => "b",
        };
        assert_eq!(
            by.get(ip).map(String::as_str),
            Some(want),
            "{ip} of {mac}, step {step}"
        );
        checked += 1;
    }
    assert!(checked > 300, "{checked} leases' writers checked");
    b.stop().assert_success();
}

/// With `sync: false`, a survivor covering its dead partner's scope gives none of the scope's
/// free addresses for `mclt`: it renews the leases it knows there and gives the scope's new
/// clients addresses of its own half; after `mclt`, the scope's own again.
#[test]
fn an_async_survivor_waits_out_the_mclt_before_giving_the_partners_free_addresses() {
    require_root();
    let etcd = Etcd::start();
    let state = tempdir();
    let key = stream_key('k');
    let (a, b, ports, _) = start_balanced(&etcd, key.path(), state.path(), |c| {
        c.replace("  sync: true", "  sync: false\n  mclt: 8s")
    });

    // Each client asks the server of its scope.
    let clients = Clients::new(0x51);
    let scope = |n: u16| scope_of(&clients.mac(n));
    let mut acked = BTreeMap::new();
    for n in 1..=60 {
        let ip = clients.dora(ports[scope(n)], n).expect("an ACK");
        assert_eq!(half_of(ip), scope(n), "client {n}: {ip}");
        acked.insert(n, ip);
    }
    wait_until(ROLE_DEADLINE, "b's stream acknowledged", || {
        (ha(&b)["stream"]["lag"] == 0).then_some(())
    });

    // b dies: a covers its scope, whose pools wait.
    b.crash();
    let covering = wait_serving(&a, [true, true], "a covering b's scope");
    assert_eq!(covering["scopes"][1]["waiting"], true, "{covering}");
    assert_eq!(covering["scopes"][0]["waiting"], false, "{covering}");
    let known: Vec<u16> = (1..=60).filter(|&n| scope(n) == 1).collect();
    assert!(known.len() > 10, "{} clients of b's scope", known.len());
    for &n in &known {
        let again = clients.dora(ports[0], n);
        assert_eq!(again, Some(acked[&n]), "client {n} of b's keeps its lease");
    }
    let fresh: Vec<u16> = (61..=200).filter(|&n| scope(n) == 1).take(20).collect();
    for &n in &fresh {
        let ip = clients.dora(ports[0], n).expect("an ACK");
        assert_eq!(
            half_of(ip),
            0,
            "new client {n} of b's scope while waiting: {ip}"
        );
        acked.insert(n, ip);
    }

    // The mclt runs out: the scope's own half again.
    let after = wait_ha(
        "the wait to end",
        || ha(&a),
        |h| h["scopes"][1]["waiting"] == false,
    );
    assert_eq!(served(&after), [true, true], "{after}");
    for n in (201..=400).filter(|&n| scope(n) == 1).take(20) {
        let ip = clients.dora(ports[0], n).expect("an ACK");
        assert_eq!(
            half_of(ip),
            1,
            "new client {n} of b's scope after the mclt: {ip}"
        );
        acked.insert(n, ip);
    }
    let distinct: std::collections::BTreeSet<_> = acked.values().collect();
    assert_eq!(
        distinct.len(),
        acked.len(),
        "an address ACKed to two clients"
    );
    a.stop().assert_success();
}
