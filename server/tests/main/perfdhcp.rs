//! perfdhcp (Kea's load generator) against lessor on loopback, as BENCHMARKING.md runs it, but at a
//! modest rate: this checks that every exchange is answered correctly under load, not speed.
//!
//! Each test runs in a namespace of its own, so ports 6767/6768 never clash with a benchmark or
//! another test running at the same time.

use std::collections::BTreeMap;

use crate::common::{Lessor, Ns, Report, Stopped, heavy_turn, perfdhcp_report, run_logged, unique};

/// perfdhcp acts as a relay with giaddr 127.0.0.1, which selects this subnet; its pool is far
/// larger than the number of simulated clients.
const CONFIG: &str = r#"port: 6767
state_dir: STATE_DIR
workers: 2
v4:
  lease_time: 3600
  subnets:
    - subnet: 10.232.0.0/16
      pools: [ "10.232.0.1-10.232.255.254" ]
      relays: [ 127.0.0.1 ]
      options: { routers: [10.232.0.1], domain_name_servers: [10.232.0.1] }
"#;

/// The same for DHCPv6: perfdhcp -6 -A 1 relays from ::1 with link-address ::1, which
/// selects this subnet; its address pool and prefix pool are far larger than the clients.
const CONFIG6: &str = r#"port: 6767
state_dir: STATE_DIR
workers: 2
v6:
  port: 6767
  subnets:
    - subnet: fd00:232::/64
      relays: [ "::1" ]
      pools: [ "fd00:232::1:0-fd00:232::ffff:ffff" ]
      pd_pools: [ { prefix: "fd00:2320::/40", delegated_len: 56 } ]
      options: { dns_servers: [ "fd00:232::1" ] }
"#;

/// One exchange's numbers, failing the test with perfdhcp's output when the section is missing.
fn exchange<'a>(report: &'a Report, name: &str, out: &str) -> &'a BTreeMap<String, u64> {
    report
        .get(name)
        .unwrap_or_else(|| panic!("perfdhcp printed no statistics for {name}:\n{out}"))
}

fn get(stats: &BTreeMap<String, u64>, key: &str) -> u64 {
    stats
        .get(key)
        .copied()
        .unwrap_or_else(|| panic!("no `{key}` in {stats:?}"))
}

/// Checks one exchange: something was sent and answered, fewer than 1% dropped, every lease
/// perfdhcp saw was unique and acceptable to it.
fn assert_clean(report: &Report, name: &str, out: &str) -> (u64, u64) {
    let s = exchange(report, name, out);
    let (sent, received, drops) = (
        get(s, "sent packets"),
        get(s, "received packets"),
        get(s, "drops"),
    );
    assert!(sent > 0, "{name}: nothing sent\n{out}");
    assert!(received > 0, "{name}: nothing received\n{out}");
    assert_eq!(
        received + drops,
        sent,
        "{name}: received + drops != sent\n{out}"
    );
    assert!(
        drops * 100 < sent,
        "{name}: {drops} of {sent} dropped (1% allowed)\n{out}"
    );
    for key in ["non unique addresses", "rejected leases"] {
        assert_eq!(get(s, key), 0, "{name}: {key}\n{out}");
    }
    (sent, received)
}

/// Runs lessor and then `perfdhcp ARGS` in a fresh namespace; returns perfdhcp's report and
/// output, and lessor's stop summary.
fn run(args: &[&str]) -> (Report, String, Stopped) {
    run_family(false, args)
}

/// [`run`] for DHCPv4 (`v6` false) or DHCPv6 (relayed, `-A 1`).
fn run_family(v6: bool, args: &[&str]) -> (Report, String, Stopped) {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("lperf-{}", unique()));
    let (config, local, listening) = if v6 {
        (CONFIG6, "::1", "[::1]:6767")
    } else {
        (CONFIG, "127.0.0.1", "127.0.0.1:6767")
    };
    let lessor = Lessor::start(Some(&ns), config, &[]);
    assert!(lessor.stdout().contains(listening), "{}", lessor.stdout());
    let mut cmd = ns.timed("perfdhcp");
    cmd.args(if v6 {
        ["-6", "-A", "1"]
    } else {
        ["-4", "-g", "single"]
    })
    .args(["-l", local, "-N", "6767", "-L", "6768"])
    .args(args)
    .arg(local);
    let (status, out) = run_logged(&mut cmd, &lessor.dir().join("perfdhcp.log"));
    let report = perfdhcp_report(&out);
    // 0: every exchange completed; 3: some did not (then the drop checks decide); anything else
    // is an error of perfdhcp's own (bad arguments, no socket).
    assert!(
        matches!(status.code(), Some(0 | 3)),
        "perfdhcp failed ({status}):\n{out}"
    );
    if let Some(m) = report.get("Malformed Packets") {
        assert_eq!(
            get(m, "Malformed packets"),
            0,
            "perfdhcp saw malformed replies:\n{out}"
        );
    }
    let stopped = lessor.stop();
    stopped.assert_success();
    assert_eq!(stopped.counter("send_errors"), 0, "{}", stopped.stdout);
    assert_eq!(stopped.counter("pool_exhausted"), 0, "{}", stopped.stdout);
    (report, out, stopped)
}

#[test]
fn perfdhcp_dora_is_answered_without_drops() {
    // 5000 simulated clients, 500 new exchanges a second, 2500 of them; -W lets the last replies
    // arrive before perfdhcp counts what is missing.
    let (report, out, stopped) = run(&[
        "-R", "5000", "-r", "500", "-n", "2500", "-p", "30", "-W", "2000000",
    ]);
    let (_, offers) = assert_clean(&report, "DISCOVER-OFFER", &out);
    let (_, acks) = assert_clean(&report, "REQUEST-ACK", &out);
    // The server answered at least what perfdhcp received, and every reply was an OFFER or ACK.
    assert!(
        stopped.counter("offers") >= offers,
        "{}\n{out}",
        stopped.stdout
    );
    assert!(stopped.counter("acks") >= acks, "{}\n{out}", stopped.stdout);
    assert_eq!(stopped.counter("naks"), 0, "{}", stopped.stdout);
}

#[test]
fn perfdhcp_renews_and_releases_are_handled() {
    // 200 new exchanges a second, of which perfdhcp turns 100 into renewals (REQUEST from a
    // bound client) and 50 into RELEASEs of leases it holds.
    let (report, out, stopped) = run(&[
        "-R", "500", "-r", "200", "-f", "100", "-F", "50", "-p", "5", "-W", "2000000",
    ]);
    let (_, offers) = assert_clean(&report, "DISCOVER-OFFER", &out);
    let (_, acks) = assert_clean(&report, "REQUEST-ACK", &out);
    let (_, renewed) = assert_clean(&report, "REQUEST-ACK (renewal)", &out);
    // A RELEASE gets no answer, so perfdhcp counts every one as dropped: what matters is that
    // lessor saw and honoured them.
    let releases = get(exchange(&report, "RELEASE", &out), "sent packets");
    assert!(releases > 0, "perfdhcp sent no RELEASE\n{out}");
    // perfdhcp keeps one lease per exchange, so a simulated client that went through DORA twice
    // (getting the same address again) may release that address twice: the second RELEASE finds
    // no lease. Every RELEASE must be one or the other, and most must free a lease.
    let released = stopped.counter("released");
    let seen = released + stopped.counter("no_such_lease");
    assert!(
        seen <= releases && seen * 100 >= releases * 99 && released * 100 >= releases * 90,
        "perfdhcp sent {releases} RELEASEs; lessor counted {released} released and {} without a \
         lease\n{}\n{out}",
        seen - released,
        stopped.stdout
    );
    assert!(
        stopped.counter("offers") >= offers,
        "{}\n{out}",
        stopped.stdout
    );
    assert!(
        stopped.counter("acks") >= acks + renewed,
        "{}\n{out}",
        stopped.stdout
    );
    assert_eq!(stopped.counter("naks"), 0, "{}", stopped.stdout);
}

#[test]
fn perfdhcp6_solicit_request_with_address_and_prefix_is_answered_without_drops() {
    // Relayed SOLICIT/ADVERTISE/REQUEST/REPLY, each with an IA_NA and an IA_PD.
    let (report, out, stopped) = run_family(
        true,
        &[
            "-e",
            "address-and-prefix",
            "-R",
            "2000",
            "-r",
            "400",
            "-n",
            "2000",
            "-p",
            "30",
            "-W",
            "2000000",
        ],
    );
    let (_, advertises) = assert_clean(&report, "SOLICIT-ADVERTISE", &out);
    let (_, replies) = assert_clean(&report, "REQUEST-REPLY", &out);
    assert!(
        stopped.counter("advertises") >= advertises,
        "{}\n{out}",
        stopped.stdout
    );
    assert!(
        stopped.counter("replies6") >= replies,
        "{}\n{out}",
        stopped.stdout
    );
    assert_eq!(stopped.counter("v6_send_errors"), 0, "{}", stopped.stdout);
}

#[test]
fn perfdhcp6_renews_and_releases_are_answered() {
    let (report, out, stopped) = run_family(
        true,
        &[
            "-R", "500", "-r", "200", "-f", "100", "-F", "50", "-p", "5", "-W", "2000000",
        ],
    );
    assert_clean(&report, "SOLICIT-ADVERTISE", &out);
    assert_clean(&report, "REQUEST-REPLY", &out);
    // A DHCPv6 RENEW and RELEASE each get a REPLY.
    let (renews, _) = assert_clean(&report, "RENEW-REPLY", &out);
    let (releases, _) = assert_clean(&report, "RELEASE-REPLY", &out);
    assert!(renews > 0 && releases > 0, "{out}");
    assert_eq!(stopped.counter("v6_send_errors"), 0, "{}", stopped.stdout);
}
