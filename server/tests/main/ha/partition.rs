//! Partitions and a restart (docs/HA.md): etcd, the two servers and a relay each in a network
//! namespace of its own, joined by veth pairs that the test takes down and brings back.
//!
//! ```text
//!            etcd (3 members)
//!       10.236.1.1   10.236.2.1
//!          |  ae        |  be
//!   a 10.236.1.2     b 10.236.2.2
//!     10.236.3.1 ab-ba 10.236.3.2      (the journal stream)
//!     10.236.4.2     10.236.5.2
//!          |  ca        |  cb
//!       10.236.4.1   10.236.5.1
//!            relay (giaddr 10.236.9.1)
//! ```
//!
//! The relay sends every client's DISCOVER and REQUEST to both servers, as a relay with two
//! server addresses does, and keeps every ACK it hears.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use serde_json::Value;

use super::balance::{of_scope, served};
use super::{
    Etcd, Load, RELAY, bound_at, config_with, ha_at, holds_all, in_sync, owners, role, wait_ha,
};
use crate::common::{Lessor, Ns, ip, require_root, tempdir, unique};

/// Both servers' DHCP port: test mode, so replies go back to the relay's source port.
const PORT: u16 = 6767;

/// The namespaces, by index.
const E: usize = 0;
const A: usize = 1;
const B: usize = 2;
const C: usize = 3;

/// The veth pairs: the name of one end (the other end is named backwards), its namespace and
/// address, the other's namespace and address; each a /30.
const LINKS: [(&str, usize, &str, usize, &str); 5] = [
    ("ea", E, "10.236.1.1", A, "10.236.1.2"),
    ("eb", E, "10.236.2.1", B, "10.236.2.2"),
    ("ab", A, "10.236.3.1", B, "10.236.3.2"),
    ("ca", C, "10.236.4.1", A, "10.236.4.2"),
    ("cb", C, "10.236.5.1", B, "10.236.5.2"),
];

/// Where the relay sends: a's and b's addresses on their links to it.
const SERVERS: [SocketAddrV4; 2] = [
    SocketAddrV4::new(Ipv4Addr::new(10, 236, 4, 2), PORT),
    SocketAddrV4::new(Ipv4Addr::new(10, 236, 5, 2), PORT),
];

/// The four namespaces and their links, removed on drop.
struct Site {
    ns: [Ns; 4],
}

impl Site {
    fn new() -> Site {
        require_root();
        let id = unique();
        let ns = ["e", "a", "b", "c"].map(|r| Ns::new(format!("lha{r}-{id}")));
        for (name, x, x_addr, y, y_addr) in LINKS {
            let back: String = name.chars().rev().collect();
            let (xn, yn) = (ns[x].name(), ns[y].name());
            ip(&[
                "link", "add", name, "netns", xn, "type", "veth", "peer", "name", &back, "netns",
                yn,
            ]);
            for (n, dev, addr) in [(xn, name, x_addr), (yn, back.as_str(), y_addr)] {
                ip(&["-n", n, "addr", "add", &format!("{addr}/30"), "dev", dev]);
                ip(&["-n", n, "link", "set", dev, "up"]);
            }
        }
        Site { ns }
    }

    /// Takes namespace `at`'s end `dev` of a link down (`up` false) or brings it back.
    fn set(&self, at: usize, dev: &str, up: bool) {
        let state = if up { "up" } else { "down" };
        ip(&["-n", self.ns[at].name(), "link", "set", dev, state]);
    }

    /// The `ha` status of server `l`, which runs in namespace `at`.
    fn ha(&self, at: usize, l: &Lessor) -> Value {
        let url = l.control_url();
        self.ns[at].run_in(move || ha_at(&url))
    }

    /// Waits until the `ha` status of `l` (in namespace `at`) passes `done`.
    fn wait(&self, at: usize, l: &Lessor, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        wait_ha(what, || self.ha(at, l), done)
    }

    /// Starts server `node` in namespace `at` with its state under `state`: the synced pair's
    /// config of cluster `cluster` (edited by `edit`), reaching etcd at `etcd_at` and its
    /// relay through `{node}c`.
    fn start(
        &self,
        at: usize,
        node: &str,
        (etcd, etcd_at, cluster): (&Etcd, &str, &str),
        state: &std::path::Path,
        edit: impl Fn(String) -> String,
    ) -> Lessor {
        let dir = state.join(node);
        std::fs::create_dir_all(&dir).expect("creating a state directory");
        let endpoints: Vec<String> = (etcd.clients.iter())
            .map(|c| c.replace("127.0.0.1", etcd_at))
            .collect();
        let streams = ["10.236.3.1:8068", "10.236.3.2:8068"].map(str::to_owned);
        let config = config_with(node, PORT, cluster, &endpoints, Some((streams, true)));
        // The link from the relay: `ac` in a, `bc` in b.
        let config = format!("interfaces: [ {node}c ]\n{config}")
            .replace("STATE_DIR", &dir.display().to_string());
        Lessor::start(Some(&self.ns[at]), &edit(config), &[])
    }

    /// Every bound lease of `l` (in namespace `at`), address to client.
    fn bound(&self, at: usize, l: &Lessor) -> BTreeMap<Ipv4Addr, String> {
        let url = l.control_url();
        self.ns[at].run_in(move || bound_at(&url))
    }
}

#[test]
fn partitions_and_a_restart_give_no_address_twice_and_lose_no_acked_lease() {
    let site = Site::new();
    let etcd = Etcd::start_in(&site.ns[E]);
    let cluster = unique();
    let state = tempdir();
    let start = |at: usize, node: &str, etcd_at: &str| {
        site.start(at, node, (&etcd, etcd_at, &cluster), state.path(), |c| c)
    };
    let a = start(A, "a", "10.236.1.1");
    site.wait(A, &a, "a to lead", role("leader"));
    let b = start(B, "b", "10.236.2.1");
    site.wait(B, &b, "b to stand by", role("standby"));
    let synced = site.wait(A, &a, "b to be in sync", in_sync);
    assert_eq!(synced["stream"]["keyed"], false, "{synced}");
    let load = Load::start(Some(&site.ns[C]), RELAY, SERVERS);
    load.wait_more(50, "ACKs from a");

    // The servers lose each other but not etcd: a holds its ACKs for lease_ttl, then goes on
    // alone; b cannot lead while a's lease holds the key.
    load.step(1);
    site.set(A, "ab", false);
    let alone = site.wait(A, &a, "a to go on alone", |h| {
        h["stream"]["state"] == "alone"
    });
    load.wait_more(20, "ACKs from a alone");
    let standby = site.ha(B, &b);
    assert_eq!(
        (&alone["role"], &alone["transitions"]),
        (&synced["role"], &synced["transitions"]),
        "a kept leading: {alone}"
    );
    assert_eq!(standby["role"], "standby", "{standby}");
    site.set(A, "ab", true);
    site.wait(A, &a, "b to catch up", in_sync);

    // a loses etcd: it fences itself, then b takes the key in a later term.
    load.step(2);
    site.set(A, "ae", false);
    site.wait(A, &a, "a to fence itself", role("fenced"));
    let took = site.wait(B, &b, "b to lead", role("leader"));
    assert!(took["epoch"].as_u64() > synced["epoch"].as_u64(), "{took}");
    assert!(took["term"].as_u64() > synced["term"].as_u64(), "{took}");
    load.wait_more(50, "ACKs from b");
    site.set(A, "ae", true);
    site.wait(A, &a, "a to stand by", role("standby"));
    site.wait(B, &b, "a to catch up", in_sync);

    // b crashes under load and comes back on its own state: a leads, b resyncs.
    load.step(3);
    let crashed = b.crash();
    site.wait(A, &a, "a to lead again", role("leader"));
    load.wait_more(50, "ACKs from a after b's crash");
    let b = start(B, "b", "10.236.2.1");
    load.step(4);
    site.wait(B, &b, "the restarted b to stand by", role("standby"));
    load.wait_more(20, "ACKs from a with b back");
    let acks = load.finish();
    eprintln!("b before its crash:\n{}", crashed.stderr);
    let owners = owners(&acks);
    site.wait(A, &a, "the restarted b to catch up", |h| {
        in_sync(h) && h["stream"]["lag"] == 0
    });
    eprintln!("{} ACKs, {} addresses", acks.len(), owners.len());
    holds_all(&site.bound(A, &a), &owners, "a");

    // a stops: b leads with every lease either server ACKed, before and after its restart.
    a.stop().assert_success();
    site.wait(B, &b, "b to lead after a stopped", role("leader"));
    holds_all(&site.bound(B, &b), &owners, "b");
    b.stop().assert_success();
}

/// The load-balancing pair through the same partitions: cut off from each other both go on
/// with their own scope; cut off from etcd, a fences itself and b covers its scope until a
/// is back, caught up, and handed it.
#[test]
fn a_balanced_pair_keeps_its_scopes_apart_through_partitions() {
    let site = Site::new();
    let etcd = Etcd::start_in(&site.ns[E]);
    let cluster = unique();
    let state = tempdir();
    let start = |at: usize, node: &str, etcd_at: &str| {
        let balanced = |c: String| c.replace("mode: hot-standby", "mode: load-balancing");
        site.start(at, node, (&etcd, etcd_at, &cluster), state.path(), balanced)
    };
    let a = start(A, "a", "10.236.1.1");
    let b = start(B, "b", "10.236.2.1");
    let serving = |at: usize, l: &Lessor, want: [bool; 2], what: &str| {
        site.wait(at, l, what, |h| served(h) == want)
    };
    serving(A, &a, [true, false], "a to serve its scope");
    serving(B, &b, [false, true], "b to serve its scope");
    site.wait(A, &a, "b in sync with a", in_sync);
    site.wait(B, &b, "a in sync with b", in_sync);
    let load = Load::start(Some(&site.ns[C]), RELAY, SERVERS);
    load.wait_more(100, "ACKs from both");

    // Apart, each goes on alone with its own scope: neither covers the other's.
    load.step(1);
    site.set(A, "ab", false);
    for (at, l) in [(A, &a), (B, &b)] {
        site.wait(at, l, "going on alone", |h| h["stream"]["state"] == "alone");
    }
    load.wait_more(50, "ACKs while apart");
    assert_eq!(served(&site.ha(A, &a)), [true, false]);
    assert_eq!(served(&site.ha(B, &b)), [false, true]);
    site.set(A, "ab", true);
    site.wait(A, &a, "b to catch up", in_sync);
    site.wait(B, &b, "a to catch up", in_sync);

    // a loses etcd: it fences, b covers a's scope; back, a catches up and gets it back.
    load.step(2);
    site.set(A, "ae", false);
    serving(A, &a, [false, false], "a to fence itself");
    serving(B, &b, [true, true], "b to cover a's scope");
    load.wait_more(50, "ACKs from b alone");
    site.set(A, "ae", true);
    load.step(3);
    serving(A, &a, [true, false], "a to get its scope back");
    serving(B, &b, [false, true], "b to hand it back");
    load.wait_more(50, "ACKs from both again");
    let acks = load.finish();
    let owners = owners(&acks);
    eprintln!("{} ACKs, {} addresses", acks.len(), owners.len());
    holds_all(&site.bound(A, &a), &of_scope(&owners, 0), "a, its scope");
    holds_all(&site.bound(B, &b), &of_scope(&owners, 1), "b, its scope");

    // a stops: b covers it with every lease either server ACKed.
    site.wait(A, &a, "b to have all of a's", |h| {
        in_sync(h) && h["stream"]["lag"] == 0
    });
    a.stop().assert_success();
    serving(B, &b, [true, true], "b to cover a after it stopped");
    holds_all(&site.bound(B, &b), &owners, "b");
    b.stop().assert_success();
}
