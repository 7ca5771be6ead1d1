//! Real DHCP clients (ISC dhclient, busybox udhcpc, dhcpcd) get leases from lessor over veth links.
//!
//! Each client runs with a hook script of ours that appends the variables it was given to a file
//! (a block of `key=value` lines per event, ended by `--`), which is how a test reads what the
//! client got. The dhclient hook also puts the address on the interface, so that the unicast
//! RENEW and RELEASE it sends later can leave the host.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use crate::common::Count::{AtLeast, Exactly};
use crate::common::{
    ClientLink, HookedClient, Lessor, Netns, SERVER_ADDR, in_range, read_records, record_line,
    run_logged, tempdir, tool, write_script,
};

/// The link's subnet, pool 10.231.0.100-199 (unless `pool` says otherwise), router, DNS, domain
/// and one reservation: 02:23:10:00:00:50 -> 10.231.0.50 named `printer`.
fn config(iface: &str, pool: &str, lease_time: u32) -> String {
    format!(
        r#"interfaces: [{iface}]
port: 67
state_dir: STATE_DIR
workers: 2
v4:
  lease_time: {lease_time}
  subnets:
    - subnet: 10.231.0.0/24
      pools: [ "{pool}" ]
      options: {{ routers: [{SERVER_ADDR}], domain_name_servers: [{SERVER_ADDR}], domain_name: example.test }}
      reservations:
        - {{ hw_address: "{RESERVED_MAC}", address: 10.231.0.50, hostname: printer }}
"#
    )
}

const POOL: &str = "10.231.0.100-10.231.0.199";
/// What a client's hook recorded for one event, by variable name.
type Record = BTreeMap<String, String>;
const RESERVED_MAC: &str = "02:23:10:00:00:50";

/// Asserts that a client's record shows a lease from the pool with lessor's router, DNS and
/// domain. `keys` names the client's variables for (address, routers, dns, domain).
fn assert_pool_lease(rec: &BTreeMap<String, String>, keys: [&str; 4], log: &str) {
    let get = |k: &str| rec.get(k).map_or("", String::as_str);
    let [ip, routers, dns, domain] = keys.map(get);
    assert!(
        in_range(ip, 100, 199),
        "address {ip:?} is not in the pool {POOL}; record {rec:?}\n{log}"
    );
    assert_eq!(routers, SERVER_ADDR, "routers; record {rec:?}");
    assert_eq!(dns, SERVER_ADDR, "DNS servers; record {rec:?}");
    assert_eq!(domain, "example.test", "domain name; record {rec:?}");
}

/// ISC dhclient on one client link, with its own lease file, pid file, config and hook script
/// (`-4`, or `-6` for `clients6.rs`).
pub(crate) struct Dhclient<'a> {
    link: &'a ClientLink,
    dir: PathBuf,
    runs: std::cell::Cell<u32>,
    family: &'static str,
}

impl<'a> Dhclient<'a> {
    /// A dhclient of `family` (`"-4"` or `"-6"`) with its files in `dir`/`name`-IFNAME; the
    /// caller writes `hook.sh` and `dhclient.conf` there.
    pub(crate) fn bare(
        link: &'a ClientLink,
        dir: &Path,
        name: &str,
        family: &'static str,
    ) -> Dhclient<'a> {
        let dir = dir.join(format!("{name}-{}", link.ifname));
        std::fs::create_dir_all(&dir).expect("creating the client directory");
        Dhclient {
            link,
            dir,
            runs: std::cell::Cell::new(0),
            family,
        }
    }

    pub(crate) fn new(link: &'a ClientLink, dir: &Path) -> Dhclient<'a> {
        let me = Dhclient::bare(link, dir, "dhclient", "-4");
        let ip = tool("ip");
        let record = record_line(
            &[
                ("reason", "$reason"),
                ("new_ip_address", "$new_ip_address"),
                ("new_subnet_mask", "$new_subnet_mask"),
                ("new_routers", "$new_routers"),
                ("new_domain_name_servers", "$new_domain_name_servers"),
                ("new_domain_name", "$new_domain_name"),
                ("new_host_name", "$new_host_name"),
                ("new_dhcp_lease_time", "$new_dhcp_lease_time"),
                ("old_ip_address", "$old_ip_address"),
            ],
            &me.path("env"),
        );
        let ip = ip.display();
        write_script(
            &me.path("hook.sh"),
            &format!(
                "#!/bin/sh\n{record}\n\
                 case \"$reason\" in\n\
                 BOUND|RENEW|REBIND|REBOOT) {ip} addr replace \"$new_ip_address/$new_subnet_mask\" dev \"$interface\" ;;\n\
                 RELEASE|EXPIRE|STOP) [ -n \"$old_ip_address\" ] && {ip} addr del \"$old_ip_address/$old_subnet_mask\" dev \"$interface\" ;;\n\
                 esac\nexit 0\n"
            ),
        );
        // Our own config, not /etc/dhcp/dhclient.conf: the test must not depend on the host's.
        std::fs::write(
            me.path("dhclient.conf"),
            "timeout 30;\nretry 5;\n\
             request subnet-mask, broadcast-address, routers, domain-name, domain-name-servers, host-name, dhcp-lease-time, dhcp-renewal-time, dhcp-rebinding-time;\n",
        )
        .expect("writing dhclient.conf");
        me
    }

    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn command(&self, mode: &[&str]) -> Command {
        let mut c = self.link.ns.timed("dhclient");
        c.arg(self.family)
            .arg("-v")
            .args(mode)
            .arg("-cf")
            .arg(self.path("dhclient.conf"))
            .arg("-lf")
            .arg(self.path("leases"))
            .arg("-pf")
            .arg(self.path("pid"))
            .arg("-sf")
            .arg(self.path("hook.sh"))
            .arg(&self.link.ifname);
        c
    }

    /// Runs dhclient with `mode` flags to completion; returns its log.
    pub(crate) fn run(&self, mode: &[&str], what: &str) -> String {
        let n = self.runs.get() + 1;
        self.runs.set(n);
        let log = self.path(&format!("run{n}.log"));
        let (status, text) = run_logged(&mut self.command(mode), &log);
        assert!(
            status.success(),
            "dhclient {} ({what}) failed: {status}\n{text}",
            self.family
        );
        text
    }

    /// Gets a lease (`dhclient -1`: one attempt, then it daemonises to keep the lease) and
    /// returns the hook record of the binding and dhclient's log.
    pub(crate) fn obtain(&self) -> (BTreeMap<String, String>, String) {
        let before = self.records().len();
        let log = self.run(&["-1"], "obtaining a lease");
        let rec = self.records()[before..]
            .iter()
            .rev()
            .find(|r| {
                matches!(
                    r["reason"].as_str(),
                    "BOUND" | "REBOOT" | "RENEW" | "REBIND"
                )
            })
            .cloned()
            .unwrap_or_else(|| panic!("dhclient exited 0 but its hook saw no binding:\n{log}"));
        (rec, log)
    }

    /// Stops the running dhclient without releasing (`dhclient -x`).
    pub(crate) fn stop(&self) -> String {
        self.run(&["-x"], "stopping")
    }

    /// Releases the lease and stops the running dhclient (`dhclient -r`).
    fn release(&self) -> String {
        self.run(&["-r"], "releasing")
    }

    pub(crate) fn records(&self) -> Vec<BTreeMap<String, String>> {
        read_records(&self.path("env"))
    }
}

/// Runs busybox udhcpc once (`-n -q -f`: foreground, quit when bound, fail when not) and returns
/// the hook record of the binding and udhcpc's log.
fn udhcpc(link: &ClientLink, dir: &Path) -> (Record, String) {
    let client = HookedClient::new(
        link,
        dir,
        "udhcpc",
        &[
            ("event", "$1"),
            ("ip", "$ip"),
            ("subnet", "$subnet"),
            ("router", "$router"),
            ("dns", "$dns"),
            ("domain", "$domain"),
            ("lease", "$lease"),
        ],
    );
    let args = ["-i", &link.ifname, "-n", "-q", "-f", "-t", "5", "-T", "3"];
    let (mut recs, log) = client.run(&args, "-s", &[], ("event", &["bound"]), None);
    (recs.pop().expect("at least one record"), log)
}

/// Runs dhcpcd once (`-1 -B`: one shot, foreground) with our config and hook script and
/// returns the hook record of the binding and dhcpcd's log.
fn dhcpcd(link: &ClientLink, dir: &Path) -> (Record, String) {
    let client = HookedClient::new(
        link,
        dir,
        "dhcpcd",
        &[
            ("reason", "$reason"),
            ("new_ip_address", "$new_ip_address"),
            ("new_routers", "$new_routers"),
            ("new_domain_name_servers", "$new_domain_name_servers"),
            ("new_domain_name", "$new_domain_name"),
        ],
    );
    let conf = client.file("conf");
    // Not /etc/dhcpcd.conf: the test must not depend on the host's. No ARP probe of the offered
    // address and no link-local fallback: neither is under test and both only add delay.
    std::fs::write(
        &conf,
        "noarp\nnoipv4ll\noption subnet_mask, routers, domain_name_servers, domain_name\n",
    )
    .expect("writing dhcpcd.conf");
    let conf = conf.display().to_string();
    // dhcpcd keeps a lease file per interface name in its database directory; ours are unique
    // to this test, so it is removed rather than left behind.
    let (mut recs, log) = client.run(
        &["-4", "-1", "-B", "-t", "30", "-f", &conf],
        "-c",
        &[&link.ifname],
        ("reason", &["BOUND", "REBOOT", "RENEW"]),
        Some(format!("/var/lib/dhcpcd/{}.lease", link.ifname)),
    );
    (recs.pop().expect("at least one record"), log)
}

const DHCLIENT_KEYS: [&str; 4] = [
    "new_ip_address",
    "new_routers",
    "new_domain_name_servers",
    "new_domain_name",
];

/// Starts lessor on `net`'s server link with `config(pool, lease_time)`; returns it and a
/// directory for the clients' files.
fn serve(net: &Netns, pool: &str, lease_time: u32) -> (Lessor, tempfile::TempDir) {
    let config = config(&net.server_if, pool, lease_time);
    (Lessor::start(Some(&net.server), &config, &[]), tempdir())
}

/// Lets `get` obtain a lease on a fresh link from lessor with the pool and a one-hour lease,
/// asserts that it is a pool lease (the client names its variables `keys`, as for
/// `assert_pool_lease`) and that lessor ACKed it and exits 0; returns the record, the client's
/// log and what lessor left.
fn pool_lease_from(
    keys: [&str; 4],
    get: impl FnOnce(&ClientLink, &Path) -> (Record, String),
) -> (Record, String, crate::common::Stopped) {
    let net = Netns::new();
    let (lessor, dir) = serve(&net, POOL, 3600);
    let (rec, log) = get(net.client(), dir.path());
    assert_pool_lease(&rec, keys, &log);
    let stopped = lessor.stop();
    stopped.assert_success();
    stopped.assert_counters(&[("acks", AtLeast(1))]);
    (rec, log, stopped)
}

#[test]
fn dhclient_gets_a_lease_with_router_and_dns() {
    let (rec, log, stopped) = pool_lease_from(DHCLIENT_KEYS, |link, dir| {
        let client = Dhclient::new(link, dir);
        let got = client.obtain();
        client.stop();
        got
    });
    assert_eq!(
        rec["new_dhcp_lease_time"], "3600",
        "lease time; record {rec:?}"
    );
    assert!(log.contains(&format!("from {SERVER_ADDR}")), "{log}");
    stopped.assert_counters(&[("offers", AtLeast(1)), ("naks", Exactly(0))]);
}

#[test]
fn udhcpc_gets_a_lease_with_router_and_dns() {
    let (rec, _, _) = pool_lease_from(["ip", "router", "dns", "domain"], udhcpc);
    assert_eq!(
        rec["subnet"], "255.255.255.0",
        "subnet mask; record {rec:?}"
    );
    assert_eq!(rec["lease"], "3600", "lease time; record {rec:?}");
}

#[test]
fn dhcpcd_gets_a_lease_with_router_and_dns() {
    pool_lease_from(DHCLIENT_KEYS, dhcpcd);
}

#[test]
fn a_reservation_is_honoured() {
    let net = Netns::new();
    net.client().set_mac(RESERVED_MAC);
    let (lessor, dir) = serve(&net, POOL, 3600);
    let client = Dhclient::new(net.client(), dir.path());
    let (rec, log) = client.obtain();
    assert_eq!(
        rec["new_ip_address"], "10.231.0.50",
        "reserved address; record {rec:?}\n{log}"
    );
    assert_eq!(
        rec["new_host_name"], "printer",
        "reserved host name; record {rec:?}"
    );
    assert_eq!(rec["new_routers"], SERVER_ADDR, "routers; record {rec:?}");
    client.stop();
    drop(lessor);
}

#[test]
fn a_restarted_dhclient_keeps_its_address() {
    let net = Netns::new();
    let (lessor, dir) = serve(&net, POOL, 3600);
    let client = Dhclient::new(net.client(), dir.path());
    let (first, _) = client.obtain();
    client.stop();
    // Same lease file: dhclient starts in INIT-REBOOT and REQUESTs the address it had.
    let (second, log) = client.obtain();
    assert_eq!(
        second["new_ip_address"], first["new_ip_address"],
        "the second run got another address\n{log}"
    );
    assert_eq!(
        second["reason"], "REBOOT",
        "expected an INIT-REBOOT ACK\n{log}"
    );
    assert!(
        !log.contains("DHCPDISCOVER"),
        "the REQUEST was not ACKed at once:\n{log}"
    );
    client.stop();

    let stopped = lessor.stop();
    stopped.assert_success();
    // One DISCOVER-OFFER, then an ACK for each run.
    stopped.assert_counters(&[
        ("offers", AtLeast(1)),
        ("acks", AtLeast(2)),
        ("naks", Exactly(0)),
    ]);
}

#[test]
fn dhclient_renews_its_lease_in_place() {
    let net = Netns::new();
    // A 20 s lease: T1 is 10 s, when the running dhclient unicasts its RENEW from the address.
    let (lessor, dir) = serve(&net, POOL, 20);
    let client = Dhclient::new(net.client(), dir.path());
    let (bound, _) = client.obtain();
    let renewed = crate::common::wait_until(Duration::from_secs(60), "dhclient to renew", || {
        client
            .records()
            .into_iter()
            .find(|r| r["reason"] == "RENEW")
    });
    assert_eq!(
        renewed["new_ip_address"], bound["new_ip_address"],
        "renewed to another address"
    );
    assert_eq!(
        renewed["new_dhcp_lease_time"], "20",
        "renewed lease time; {renewed:?}"
    );
    client.stop();

    let stopped = lessor.stop();
    stopped.assert_counters(&[("acks", AtLeast(2)), ("naks", Exactly(0))]);
}

#[test]
fn a_released_address_goes_to_the_next_client() {
    let net = Netns::new();
    // A pool of one address: the second client gets it only if the release freed it.
    let only = "10.231.0.100";
    let pool = format!("{only}-{only}");
    let (lessor, dir) = serve(&net, &pool, 3600);
    let client = Dhclient::new(net.client(), dir.path());
    let (rec, _) = client.obtain();
    assert_eq!(rec["new_ip_address"], only);
    let log = client.release();
    assert!(
        log.contains("DHCPRELEASE"),
        "dhclient sent no RELEASE:\n{log}"
    );

    // Another client: a new MAC on the same link.
    let first_mac = net.client().mac();
    net.client().set_mac("02:23:10:00:00:99");
    assert_ne!(first_mac, net.client().mac());
    let (rec, log) = udhcpc(net.client(), dir.path());
    assert_eq!(
        rec["ip"], only,
        "the released address did not go to the next client\n{log}"
    );

    let stopped = lessor.stop();
    stopped.assert_counters(&[("released", Exactly(1)), ("pool_exhausted", Exactly(0))]);
}

#[test]
fn two_clients_get_two_addresses() {
    let net = Netns::bridged(2);
    let (lessor, dir) = serve(&net, POOL, 3600);
    let (a, b) = (&net.clients[0], &net.clients[1]);
    assert_ne!(a.mac(), b.mac());
    // Both at once: dhclient on one link, udhcpc on the other.
    let dhclient = Dhclient::new(a, dir.path());
    let (rec_b, rec_a) = std::thread::scope(|s| {
        let other = s.spawn(|| udhcpc(b, dir.path()));
        let (rec_a, _) = dhclient.obtain();
        (other.join().expect("udhcpc thread"), rec_a)
    });
    let (rec_b, log_b) = rec_b;
    assert_pool_lease(&rec_a, DHCLIENT_KEYS, "");
    assert_pool_lease(&rec_b, ["ip", "router", "dns", "domain"], &log_b);
    assert_ne!(
        rec_a["new_ip_address"], rec_b["ip"],
        "two clients got the same address"
    );
    dhclient.stop();

    let stopped = lessor.stop();
    stopped.assert_counters(&[("acks", AtLeast(2))]);
}

#[test]
fn each_broadcast_request_is_answered_once() {
    let net = Netns::new();
    // Two workers (the config's): a broadcast must still be handled by exactly one of them.
    let (lessor, dir) = serve(&net, POOL, 3600);
    let (_, log) = udhcpc(net.client(), dir.path());
    // udhcpc logs every request it sends, retransmissions included.
    let sent = log
        .lines()
        .filter(|l| l.contains("broadcasting discover") || l.contains("broadcasting select"))
        .count();
    let sent = u64::try_from(sent).expect("a small count");
    assert!(
        sent >= 2,
        "udhcpc's log shows no DISCOVER and REQUEST:\n{log}"
    );

    let stopped = lessor.stop();
    let replies = stopped.counter("offers") + stopped.counter("acks") + stopped.counter("naks");
    assert_eq!(
        (stopped.counter("received"), replies),
        (sent, sent),
        "udhcpc broadcast {sent} requests; lessor's (received, replies) differ: is each broadcast \
         delivered to every worker's socket?\n{}\n{log}",
        stopped.stdout
    );
}

/// Every tool these tests use is installed, and the tests run as root: one clear failure
/// naming what is missing, besides the others' failures.
#[test]
fn client_tools_are_installed() {
    crate::common::require_root();
    for t in ["ip", "dhclient", "udhcpc", "dhcpcd", "timeout", "perfdhcp"] {
        let _ = tool(t);
    }
}
