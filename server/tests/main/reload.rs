//! Reload without restart (docs/RELOAD.md): options change live, a bad or forbidden change
//! leaves the server as it was, the config-* commands, SIGHUP, a pool shrunk under perfdhcp
//! load with nothing lost, and `lessor check-config --against`.
//!
//! Each test runs lessor in a namespace of its own, on its loopback, and acts as the relay
//! (giaddr 127.0.0.1) itself or through perfdhcp.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use dhcproto::v4::{DhcpOption, OptionCode};
use serde_json::{Value, json};

use crate::clients::Dhclient;
use crate::common::{
    LESSOR, Lessor, Ns, SERVER_ADDR, heavy_turn, perfdhcp_report, unique, wait_until,
};
use crate::kea_client::v4::Relay;
use crate::kea_client::{command, http, result};

/// Subnet 10.241.0.0/24 through relay 127.0.0.1 with `pool` and router `router`; subnet
/// 10.242.0.0/16 through relay 127.0.0.2; the control server asks for credentials.
fn config(state: &str, router: &str, pool: &str) -> String {
    let v4 = format!(
        r#"v4:
  lease_time: 3600
  subnets:
    - id: 5
      subnet: 10.241.0.0/24
      relays: [ 127.0.0.1 ]
      pools: [ "{pool}" ]
      options: {{ routers: [{router}] }}
    - id: 6
      subnet: 10.242.0.0/16
      relays: [ 127.0.0.2 ]
      pools: [ "10.242.0.1-10.242.255.254" ]
"#
    );
    crate::kea_client::config(Path::new(state), &v4)
}

const POOL: &str = "10.241.0.10-10.241.0.200";

/// This test's clients' MAC addresses: 02:52:00:00:00:`n`.
const TAG: u8 = 0x52;

/// The clients of the loaded subnet whose ACKs the pool-shrink test checks: 02:53:...:`n`.
const WATCHED: u8 = 0x53;
const WATCHED_CLIENTS: u8 = 200;

/// The routers option of the OFFER client `n` gets.
fn offered_router(n: u8) -> Option<Ipv4Addr> {
    let offer = Relay::new(TAG).offer(n)?;
    match offer.opts().get(OptionCode::Router) {
        Some(DhcpOption::Router(r)) => r.first().copied(),
        _ => None,
    }
}

fn hash(url: &str) -> String {
    let a = command(url, json!({"command": "config-hash-get"}));
    assert_eq!(result(&a), 0, "{a}");
    a["arguments"]["hash"].as_str().expect("a hash").to_owned()
}

fn last_reload(url: &str) -> Value {
    let a = command(url, json!({"command": "status-get"}));
    assert_eq!(result(&a), 0, "{a}");
    a["arguments"]["last-reload"].clone()
}

#[test]
fn options_reload_live_and_a_bad_or_forbidden_change_keeps_the_running_config() {
    let ns = Ns::new(format!("lrl-{}", unique()));
    let lessor = Lessor::start(Some(&ns), &config("STATE_DIR", "10.241.0.1", POOL), &[]);
    let url = lessor.control_url();
    let file = lessor.dir().join("lessor.yaml");
    let state = lessor.dir().join("state").display().to_string();
    let pid = nix::unistd::Pid::from_raw(lessor.pid() as i32);
    ns.run_in(move || {
        assert_eq!(offered_router(1), Some(Ipv4Addr::new(10, 241, 0, 1)));
        let first = hash(&url);

        // config-get shows the running document, the password redacted.
        let got = command(&url, json!({"command": "config-get"}));
        assert_eq!(result(&got), 0, "{got}");
        let doc = &got["arguments"]["lessor"];
        assert_eq!(doc["control"]["password"], "*****", "{got}");
        assert_eq!(doc["control"]["user"], "ops", "{got}");
        assert!(!got.to_string().contains("s3cret"), "{got}");
        assert_eq!(doc["v4"]["subnets"][0]["subnet"], "10.241.0.0/24", "{got}");

        // A new router: published with no pause, the next OFFER carries it.
        let good = config(&state, "10.241.0.254", POOL);
        fs::write(&file, &good).unwrap();
        let a = command(&url, json!({"command": "config-reload"}));
        assert_eq!(result(&a), 0, "{a}");
        assert_eq!(a["arguments"]["pause"], false, "{a}");
        assert_eq!(offered_router(2), Some(Ipv4Addr::new(10, 241, 0, 254)));
        assert_ne!(hash(&url), first, "the hash follows the config");

        // An unknown key: refused by its path, counted, shown; the server keeps serving.
        fs::write(
            &file,
            good.replace("    - id: 5\n", "    - id: 5\n      bogus: 1\n"),
        )
        .unwrap();
        let a = command(&url, json!({"command": "config-reload"}));
        assert_eq!(result(&a), 1, "{a}");
        assert!(a["text"].as_str().unwrap().contains("bogus"), "{a}");
        let status = last_reload(&url);
        assert_eq!(status["result"], "failure", "{status}");
        assert!(
            status["error"].as_str().unwrap().contains("v4.subnets[0]"),
            "{status}"
        );
        assert_eq!(offered_router(3), Some(Ipv4Addr::new(10, 241, 0, 254)));

        // A key that needs a restart: refused by name.
        let mut changed = command(&url, json!({"command": "config-get"}))["arguments"].clone();
        changed["lessor"]["port"] = json!(6768);
        let a = command(&url, json!({"command": "config-set", "arguments": changed}));
        assert_eq!(result(&a), 1, "{a}");
        let text = a["text"].as_str().unwrap();
        assert!(text.starts_with("port:") && text.contains("restart"), "{a}");

        // config-test says what a change would do and changes nothing.
        let before = hash(&url);
        let mut shrunk = command(&url, json!({"command": "config-get"}))["arguments"].clone();
        shrunk["lessor"]["v4"]["subnets"][0]["pools"] = json!(["10.241.0.100-10.241.0.200"]);
        let a = command(&url, json!({"command": "config-test", "arguments": shrunk}));
        assert_eq!(result(&a), 0, "{a}");
        assert_eq!(a["arguments"]["pause"], true, "{a}");
        assert_eq!(hash(&url), before, "config-test changed the config");

        // config-write puts the running document in the file; SIGHUP reads it back unchanged.
        let a = command(&url, json!({"command": "config-write"}));
        assert_eq!(result(&a), 0, "{a}");
        let written = fs::read_to_string(&file).unwrap();
        assert!(
            !written.contains("bogus") && written.contains("10.241.0.254"),
            "{written}"
        );
        nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP).expect("SIGHUP");
        wait_until(Duration::from_secs(10), "the SIGHUP reload", || {
            (last_reload(&url)["result"] == "success").then_some(())
        });
        assert_eq!(hash(&url), before, "the written config reads back the same");

        let (status, metrics) = http(&url, "GET", "/metrics", false, b"");
        assert_eq!(status, 200);
        assert!(
            metrics.contains("lessor_config_reloads_total{result=\"success\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("lessor_config_reloads_total{result=\"failure\"} 2"),
            "{metrics}"
        );
        assert!(
            metrics.contains("lessor_config_last_reload_success_timestamp_seconds "),
            "{metrics}"
        );
    });
    let stopped = lessor.stop();
    stopped.assert_success();
    assert!(
        stopped
            .stdout
            .contains("lessor: reloaded the configuration (no pause"),
        "{}",
        stopped.stdout
    );
}

/// Bound addresses in a `lease4-get-all` answer.
fn bound(url: &str) -> BTreeSet<Ipv4Addr> {
    holders(url).into_keys().collect()
}

/// Bound addresses in a `lease4-get-all` answer, each with its client's hw-address.
fn holders(url: &str) -> BTreeMap<Ipv4Addr, String> {
    let a = command(url, json!({"command": "lease4-get-all"}));
    a["arguments"]["leases"]
        .as_array()
        .map(|l| {
            l.iter()
                .filter(|l| l["state"] == 0)
                .map(|l| {
                    let addr = l["ip-address"].as_str().unwrap().parse().unwrap();
                    (addr, l["hw-address"].as_str().unwrap().to_owned())
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn a_pool_shrunk_under_load_loses_no_acked_lease_and_counts_the_orphans() {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("lrs-{}", unique()));
    let lessor = Lessor::start(Some(&ns), &config("STATE_DIR", "10.241.0.1", POOL), &[]);
    let url = lessor.control_url();
    let perf_log = lessor.dir().join("perfdhcp.log");
    let added = ns
        .cmd("ip")
        .args(["addr", "add", "127.0.0.2/8", "dev", "lo"])
        .status()
        .expect("running ip");
    assert!(
        added.success(),
        "adding 127.0.0.2 to the namespace's loopback"
    );
    // Load on the other subnet (relay 127.0.0.2) while the first one's pool shrinks.
    let mut perf = ns.timed("perfdhcp");
    perf.args(
        "-4 -g single -l 127.0.0.2 -N 6767 -L 6769 -r 400 -R 3000 -n 2400 -p 8 127.0.0.1"
            .split(' '),
    );
    let perf = crate::common::spawn_logged(&mut perf, &perf_log);
    let (orphans, pause, before, watched) = ns.run_in(move || {
        // Leases of the first subnet across its pool: ten clients.
        let mut before = BTreeSet::new();
        let relay = Relay::new(TAG);
        for n in 1..=10 {
            before.insert(relay.dora(n, None));
        }
        // A bound client that asks again extends its lease: counted as a renewal (the load
        // only makes new ones).
        assert!(before.contains(&relay.dora(1, None)));
        let (_, metrics) = http(&url, "GET", "/metrics", false, b"");
        let renewed = "lessor_allocations_total{family=\"v4\",kind=\"address\",type=\"renew\"} 1";
        assert!(metrics.contains(renewed), "no {renewed:?} in\n{metrics}");
        std::thread::sleep(Duration::from_secs(2));
        let mut doc = command(&url, json!({"command": "config-get"}))["arguments"].clone();
        // Only the first address given out stays in the pool.
        let keep = *before.iter().next().unwrap();
        doc["lessor"]["v4"]["subnets"][0]["pools"] = json!([format!("{keep}-{keep}")]);
        // Clients of the loaded subnet whose ACKs are seen, before, during and after the
        // pause: perfdhcp counts its ACKs but does not say which client got which address.
        let done = Arc::new(AtomicUsize::new(0));
        let seen = Arc::clone(&done);
        let watched = std::thread::spawn(move || {
            let relay = Relay::at(Ipv4Addr::new(127, 0, 0, 2), WATCHED);
            (1..=WATCHED_CLIENTS)
                .map(|n| {
                    let got = (n, relay.dora(n, None));
                    seen.fetch_add(1, Ordering::Relaxed);
                    got
                })
                .collect::<Vec<_>>()
        });
        wait_until(
            Duration::from_secs(30),
            "the watched clients' first leases",
            || (done.load(Ordering::Relaxed) >= usize::from(WATCHED_CLIENTS) / 4).then_some(()),
        );
        let a = command(&url, json!({"command": "config-set", "arguments": doc}));
        assert_eq!(result(&a), 0, "{a}");
        assert_eq!(a["arguments"]["pause"], true, "{a}");
        let orphans = a["arguments"]["leases-orphaned"]["10.241.0.0/24"].clone();
        let pause = a["arguments"]["pause-seconds"].as_f64().expect("a pause");
        let after = bound(&url);
        assert!(before.is_subset(&after), "{before:?} not all in {after:?}");
        // An orphan is never offered again: a new client of the first subnet gets nothing.
        let offer = relay.offer(99);
        assert!(
            offer.is_none(),
            "offered {offer:?} from a one-address pool in use"
        );
        let status = last_reload(&url);
        assert_eq!(status["leases-orphaned"], 9, "{status}");
        assert_eq!(orphaned_gauge(&url, "5"), Some(9));
        let watched = watched.join().expect("the watched clients");
        (orphans, pause, before, watched)
    });
    assert_eq!(orphans, 9, "nine of ten leases lie outside the new pool");
    eprintln!(
        "pool shrink under load: workers paused {:.3} ms",
        pause * 1e3
    );
    let out = crate::common::finish_perfdhcp(perf, &perf_log);
    let report = perfdhcp_report(&out);
    let acked = report
        .get("REQUEST-ACK")
        .and_then(|s| s.get("received packets"))
        .copied()
        .unwrap_or(0);
    assert!(acked > 0, "perfdhcp got no ACK:\n{out}");

    // Every lease the journal acknowledged is in the engine that runs now. The journal is
    // read first: a worker binds in its engine before it journals, so a lease the dump shows
    // is in the engine listed after (unless the reload lost it), even if the workers were
    // still answering requests.
    let journal = journal_bound(&lessor.dir().join("state"));
    let url = lessor.control_url();
    let held = ns.run_in(move || holders(&url));
    let engine: BTreeSet<Ipv4Addr> = held.keys().copied().collect();
    assert!(before.is_subset(&engine));
    // A watched client's lease lost by the reload would be free in the new engine and go to
    // another client, which the journal's fold (one record per address) cannot show.
    for (n, addr) in &watched {
        let mac = crate::kea_client::v4::mac(WATCHED, *n);
        assert_eq!(
            held.get(addr),
            Some(&mac),
            "client {mac} was ACKed {addr} (watched clients: {watched:?})"
        );
    }
    let lost: Vec<_> = journal.difference(&engine).collect();
    if !lost.is_empty() {
        // What the engine holds at those addresses, and what lessor logged, for the report.
        let url = lessor.control_url();
        let asked: Vec<String> = lost.iter().map(|a| a.to_string()).collect();
        let held: Vec<Value> = ns.run_in(move || {
            asked
                .iter()
                .map(|a| {
                    command(
                        &url,
                        json!({"command": "lease4-get", "arguments": {"ip-address": a}}),
                    )
                })
                .collect()
        });
        let log = lessor.stop().stderr;
        panic!(
            "ACKed leases missing from the engine: {lost:?}\nthe engine at them: {held:?}\n\
             lessor's log:\n{log}"
        );
    }
    assert!(journal.len() > before.len(), "the load bound nothing");
    // The gauge is live: deleting orphans lowers it, a reload that puts the pool back takes
    // it to 0, and removing the subnet orphans its leases under its CIDR, without an id.
    let url = lessor.control_url();
    ns.run_in(move || {
        for (i, addr) in before.iter().skip(1).take(4).enumerate() {
            let del =
                json!({"command": "lease4-del", "arguments": {"ip-address": addr.to_string()}});
            let a = command(&url, del);
            assert_eq!(result(&a), 0, "{addr}: {a}");
            assert_eq!(
                orphaned_gauge(&url, "5"),
                Some(8 - i as u64),
                "after deleting {addr}"
            );
        }
        let mut doc = command(&url, json!({"command": "config-get"}))["arguments"].clone();
        doc["lessor"]["v4"]["subnets"][0]["pools"] = json!([POOL]);
        let a = command(
            &url,
            json!({"command": "config-set", "arguments": doc.clone()}),
        );
        assert_eq!(result(&a), 0, "{a}");
        assert_eq!(
            orphaned_gauge(&url, "5"),
            Some(0),
            "the pool covers them again"
        );
        doc["lessor"]["v4"]["subnets"]
            .as_array_mut()
            .unwrap()
            .remove(0);
        let a = command(&url, json!({"command": "config-set", "arguments": doc}));
        assert_eq!(result(&a), 0, "{a}");
        assert_eq!(
            orphaned_gauge(&url, ""),
            Some(6),
            "the removed subnet's six leases"
        );
    });
    let stopped = lessor.stop();
    stopped.assert_success();
    let log = stopped
        .stderr
        .lines()
        .find(|l| l.contains("pools were rebuilt"));
    eprintln!("{}", log.expect("the pause is logged"));
}

/// The first subnet's `lessor_leases{state="orphaned"}` (its `subnet_id` as given), if
/// scraped.
fn orphaned_gauge(url: &str, id: &str) -> Option<u64> {
    let (_, metrics) = http(url, "GET", "/metrics", false, b"");
    let series = format!(
        "lessor_leases{{family=\"v4\",subnet=\"10.241.0.0/24\",subnet_id=\"{id}\",\
         kind=\"address\",state=\"orphaned\"}} "
    );
    let n = metrics
        .lines()
        .find_map(|l| l.strip_prefix(series.as_str())?.parse().ok());
    if n.is_none() {
        eprintln!("no {series:?} in\n{metrics}");
    }
    n
}

/// Bound addresses in `lessor journal dump` of `state` (read while lessor runs).
fn journal_bound(state: &Path) -> BTreeSet<Ipv4Addr> {
    let out = Command::new(LESSOR)
        .args(["journal", "--state-dir"])
        .arg(state)
        .arg("dump")
        .output()
        .expect("running lessor journal dump");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["state"] == "bound")
        .map(|v| v["address"].as_str().unwrap().parse().unwrap())
        .collect()
}

#[test]
fn check_config_against_a_state_dir_says_what_a_change_would_orphan() {
    let ns = Ns::new(format!("lrc-{}", unique()));
    let lessor = Lessor::start(Some(&ns), &config("STATE_DIR", "10.241.0.1", POOL), &[]);
    let dir = lessor.dir().to_owned();
    let got: Vec<Ipv4Addr> = ns.run_in(|| {
        let relay = Relay::new(TAG);
        (1..=3).map(|n| relay.dora(n, None)).collect()
    });
    assert_eq!(got.len(), 3);
    let state = dir.join("state");
    let keep = got.iter().min().unwrap();
    let new = dir.join("new.yaml");
    let text = config(
        &state.display().to_string(),
        "10.241.0.1",
        &format!("{keep}-{keep}"),
    )
    .replace("10.242.0.0/16", "10.243.0.0/16")
    .replace("10.242.0.1-10.242.255.254", "10.243.0.1-10.243.255.254");
    fs::write(&new, text).unwrap();
    let out = Command::new(LESSOR)
        .arg("--config")
        .arg(dir.join("lessor.yaml"))
        .arg("check-config")
        .arg(&new)
        .arg("--against")
        .arg(&state)
        .output()
        .expect("running lessor check-config");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("leases orphaned in 10.241.0.0/24: 2\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subnets added: 10.243.0.0/16\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("subnets removed: 10.242.0.0/16\n"),
        "{stdout}"
    );
    assert!(
        stdout.contains("reservations held by another client: none\n"),
        "{stdout}"
    );
    lessor.stop().assert_success();
}

#[test]
fn dhclient_sees_the_router_a_reload_sets() {
    let net = crate::common::Netns::new();
    let server_if = net.server_if.clone();
    let text = |router: &str| {
        format!(
            r#"interfaces: [{server_if}]
port: 67
state_dir: STATE_DIR
workers: 2
control: {{ listen: "127.0.0.1:0", user: ops, password: s3cret }}
v4:
  lease_time: 3600
  subnets:
    - subnet: 10.231.0.0/24
      pools: [ "10.231.0.100-10.231.0.199" ]
      options: {{ routers: [{router}] }}
"#
        )
    };
    let lessor = Lessor::start(Some(&net.server), &text(SERVER_ADDR), &[]);
    let dir = crate::common::tempdir();
    let client = Dhclient::new(net.client(), dir.path());
    let (rec, log) = client.obtain();
    assert_eq!(rec["new_routers"], SERVER_ADDR, "{rec:?}\n{log}");
    let address = rec["new_ip_address"].clone();
    client.stop();

    let state = lessor.dir().join("state").display().to_string();
    let file = lessor.dir().join("lessor.yaml");
    fs::write(&file, text("10.231.0.254").replace("STATE_DIR", &state)).unwrap();
    let url = lessor.control_url();
    let a = net
        .server
        .run_in(move || command(&url, json!({"command": "config-reload"})));
    assert_eq!(result(&a), 0, "{a}");

    // dhclient starts again from its lease file: INIT-REBOOT, answered with the new router.
    let (rec, log) = client.obtain();
    assert_eq!(rec["new_routers"], "10.231.0.254", "{rec:?}\n{log}");
    assert_eq!(
        rec["new_ip_address"], address,
        "the lease survives the reload"
    );
    client.stop();
    lessor.stop().assert_success();
}
