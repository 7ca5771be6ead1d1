//! Real DHCPv6 clients (ISC dhclient -6, dhcpcd -6) get addresses and delegated prefixes from
//! lessor over veth links, as in `clients.rs` for DHCPv4: a hook script of ours records what
//! the client was given.

use std::collections::BTreeMap;
use std::net::Ipv6Addr;
use std::path::Path;

use crate::clients::Dhclient;
use crate::common::Count::AtLeast;
use crate::common::{
    ClientLink, HookedClient, Lessor, Netns, SERVER_ADDR6, record_line, same_named, tempdir,
    write_script,
};

/// The link's subnet with an address pool, a /48 split into /56s for delegation, DNS, and a
/// reservation by DUID. Both v4 and v6 listen on their standard ports on the link.
fn config(iface: &str, state_dir: &str) -> String {
    format!(
        r#"interfaces: [{iface}]
port: 67
state_dir: {state_dir}
workers: 2
v6:
  preferred_lifetime: 1800
  valid_lifetime: 3600
  subnets:
    - subnet: fd00:231::/64
      pools: [ "{POOL_FIRST}-{POOL_LAST}" ]
      pd_pools: [ {{ prefix: "fd00:2310::/48", delegated_len: 56 }} ]
      options: {{ dns_servers: [ "{SERVER_ADDR6}" ] }}
      reservations:
        - {{ duid: "{RESERVED_DUID}", address: "{RESERVED_ADDR}" }}
"#
    )
}

const POOL_FIRST: &str = "fd00:231::1000";
const POOL_LAST: &str = "fd00:231::1fff";
/// A DUID-LL (type 3, hardware type 1) that the reservation names.
const RESERVED_DUID: &str = "00:03:00:01:02:23:10:00:00:60";
const RESERVED_ADDR: &str = "fd00:231::60";

fn in_pool(addr: &str) -> bool {
    let Ok(a) = addr.parse::<Ipv6Addr>() else {
        return false;
    };
    let (first, last): (Ipv6Addr, Ipv6Addr) = (
        POOL_FIRST.parse().expect("pool start"),
        POOL_LAST.parse().expect("pool end"),
    );
    (first..=last).contains(&a)
}

/// Whether `prefix` ("addr/len" or addr with a separate length) is a /56 inside fd00:2310::/48.
fn delegated(prefix: &str, len: &str) -> bool {
    let Ok(a) = prefix.parse::<Ipv6Addr>() else {
        return false;
    };
    let seg = a.segments();
    len == "56" && seg[0] == 0xfd00 && seg[1] == 0x2310 && seg[2] == 0 && seg[3] & 0xff == 0
}

/// ISC dhclient in DHCPv6 mode (`-6`) with a hook that records the DHCPv6 variables.
fn dhclient6<'a>(link: &'a ClientLink, dir: &Path) -> Dhclient<'a> {
    let d = Dhclient::bare(link, dir, "dhclient6", "-6");
    let record = record_line(
        &same_named(&[
            "reason",
            "new_ip6_address",
            "new_ip6_prefixlen",
            "new_ip6_prefix",
            "new_dhcp6_name_servers",
            "new_max_life",
            "new_preferred_life",
            "old_ip6_address",
        ]),
        &d.path("env"),
    );
    write_script(
        &d.path("hook.sh"),
        &format!("#!/bin/sh\n{record}\nexit 0\n"),
    );
    std::fs::write(
        d.path("dhclient.conf"),
        "timeout 30;\nretry 5;\nrequest dhcp6.name-servers;\n",
    )
    .expect("writing dhclient.conf");
    d
}

/// Makes dhclient use `duid` (colon-separated hex) as its DUID: dhclient reads it from the
/// lease file it is given.
fn set_duid(d: &Dhclient<'_>, duid: &str) {
    let octal: String = duid
        .split(':')
        .map(|b| format!("\\{:03o}", u8::from_str_radix(b, 16).expect("hex DUID")))
        .collect();
    std::fs::write(d.path("leases"), format!("default-duid \"{octal}\";\n"))
        .expect("writing the lease file");
}

/// Gets a binding (`-1`: one attempt, then it daemonises) with the IA flags in `ias` (`-N`
/// address, `-P` prefix); returns every hook record of the binding (dhclient runs the hook
/// once per IA) and the log.
fn obtain6(d: &Dhclient<'_>, ias: &[&str]) -> (Vec<BTreeMap<String, String>>, String) {
    let before = d.records().len();
    let mut mode = vec!["-1"];
    mode.extend_from_slice(ias);
    let log = d.run(&mode, "obtaining a binding");
    let recs: Vec<_> = d.records()[before..]
        .iter()
        .filter(|r| matches!(r["reason"].as_str(), "BOUND6" | "REBOOT6" | "RENEW6"))
        .cloned()
        .collect();
    assert!(
        !recs.is_empty(),
        "dhclient -6 exited 0 but its hook saw no binding:\n{log}"
    );
    (recs, log)
}

/// The first non-empty value of `key` among `recs`.
fn field<'r>(recs: &'r [BTreeMap<String, String>], key: &str) -> &'r str {
    recs.iter()
        .filter_map(|r| r.get(key))
        .find(|v| !v.is_empty())
        .map_or("", String::as_str)
}

/// Starts lessor with `config` on a fresh pair of namespaces with IPv6 enabled; returns them,
/// lessor, its state directory and a directory for the clients' files.
fn serve6() -> (Netns, Lessor, tempfile::TempDir, tempfile::TempDir) {
    let net = Netns::new();
    net.enable_v6();
    let state = tempdir();
    let lessor = Lessor::start(
        Some(&net.server),
        &config(&net.server_if, &state.path().display().to_string()),
        &[],
    );
    (net, lessor, state, tempdir())
}

/// A dhclient -6 with its files in `dir` and DUID `duid` that gets an address (`-N`); returns
/// it (running, to be stopped), the hook records and the log.
fn dhclient6_with_duid<'a>(
    link: &'a ClientLink,
    dir: &Path,
    duid: &str,
) -> (Dhclient<'a>, Vec<BTreeMap<String, String>>, String) {
    let d = dhclient6(link, dir);
    set_duid(&d, duid);
    let (recs, log) = obtain6(&d, &["-N"]);
    (d, recs, log)
}

#[test]
fn dhclient6_gets_an_address_and_a_delegated_prefix() {
    let (net, lessor, _state, dir) = serve6();
    let client = dhclient6(net.client(), dir.path());
    let (recs, log) = obtain6(&client, &["-N", "-P"]);
    let addr = field(&recs, "new_ip6_address");
    assert!(
        in_pool(addr),
        "address {addr:?} not in the pool; {recs:?}\n{log}"
    );
    assert_eq!(
        field(&recs, "new_dhcp6_name_servers"),
        SERVER_ADDR6,
        "DNS; {recs:?}"
    );
    let prefix = field(&recs, "new_ip6_prefix");
    let (p, len) = prefix.split_once('/').unwrap_or((prefix, ""));
    assert!(
        delegated(p, len),
        "prefix {prefix:?} is not a /56 of fd00:2310::/48; {recs:?}\n{log}"
    );
    client.stop();
    let stopped = lessor.stop();
    stopped.assert_success();
    stopped.assert_counters(&[("replies6", AtLeast(1)), ("advertises", AtLeast(1))]);
}

#[test]
fn dhclient6_duid_reservation_and_restart_keep_the_address() {
    let (net, lessor, state, dir) = serve6();
    let config = config(&net.server_if, &state.path().display().to_string());
    let dynamic = "00:03:00:01:02:23:10:00:00:99";

    // The reservation by DUID.
    let (reserved, recs, log) =
        dhclient6_with_duid(net.client(), &dir.path().join("reserved"), RESERVED_DUID);
    assert_eq!(
        field(&recs, "new_ip6_address"),
        RESERVED_ADDR,
        "reserved address; {recs:?}\n{log}"
    );
    reserved.stop();

    // A dynamic client, then a restart of lessor on the same state: the same client (same
    // DUID, fresh lease file) gets the same address back from the replayed journal.
    let (client, recs, log) =
        dhclient6_with_duid(net.client(), &dir.path().join("dynamic"), dynamic);
    let first = field(&recs, "new_ip6_address").to_owned();
    assert!(in_pool(&first), "address {first:?}; {recs:?}\n{log}");
    client.stop();
    lessor.stop().assert_success();

    let lessor = Lessor::start(Some(&net.server), &config, &[]);
    let replay = lessor.stdout_line("leases live");
    assert!(
        replay.contains("2 leases live"),
        "both v6 leases replayed: {replay}"
    );
    let (again, recs, log) = dhclient6_with_duid(net.client(), &dir.path().join("again"), dynamic);
    assert_eq!(
        field(&recs, "new_ip6_address"),
        first,
        "same address after the restart; {recs:?}\n{log}"
    );
    again.stop();
    lessor.stop().assert_success();
}

#[test]
fn dhcpcd6_gets_an_address_and_a_delegated_prefix() {
    let (net, lessor, _state, dir) = serve6();
    let link = net.client();
    // dhcpcd names its variables after the IA: ia_na 1 -> new_dhcp6_ia_na1_ia_addr1.
    let client = HookedClient::new(
        link,
        dir.path(),
        "dhcpcd",
        &same_named(&[
            "reason",
            "new_dhcp6_ia_na1_ia_addr1",
            "new_dhcp6_ia_pd1_prefix1",
            "new_dhcp6_ia_pd1_prefix1_length",
            "new_dhcp6_name_servers",
        ]),
    );
    let conf = client.file("conf");
    // Our own config (not the host's): DHCPv6 only, no router solicitation (nothing sends
    // RAs here; explicit IAs make dhcpcd start DHCPv6 by itself), an address and a prefix
    // that is requested but assigned to no interface.
    std::fs::write(
        &conf,
        format!(
            "ipv6only\nnoipv6rs\nnohook resolv.conf\noption dhcp6_name_servers\n\
             interface {}\n  ia_na 1\n  ia_pd 2\n",
            link.ifname
        ),
    )
    .expect("writing dhcpcd.conf");
    let conf = conf.display().to_string();
    let (recs, text) = client.run(
        &["-6", "-1", "-B", "-d", "-t", "30", "-f", &conf],
        "-c",
        &[&link.ifname],
        ("reason", &["BOUND6"]),
        Some(format!("/var/lib/dhcpcd/{}.lease6", link.ifname)),
    );
    let addr = field(&recs, "new_dhcp6_ia_na1_ia_addr1");
    assert!(in_pool(addr), "address {addr:?}; {recs:?}\n{text}");
    let prefix = field(&recs, "new_dhcp6_ia_pd1_prefix1");
    let len = field(&recs, "new_dhcp6_ia_pd1_prefix1_length");
    assert!(
        delegated(prefix, len),
        "prefix {prefix:?}/{len:?}; {recs:?}\n{text}"
    );
    let stopped = lessor.stop();
    stopped.assert_success();
    stopped.assert_counters(&[("replies6", AtLeast(1))]);
}
