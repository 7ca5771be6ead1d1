//! The lease journal end to end: invariants 1 (no acknowledged lease is lost), 2 (one address,
//! one client) and 7 (a restart replays exactly what was acknowledged), checked from the outside
//! with real tools.
//!
//! * A crash under perfdhcp load: every DHCPACK tshark saw leave lessor is in the journal after
//!   `kill -9` and a restart.
//! * A real dhclient keeps its address across a restart and a crash, with a fresh lease file (so
//!   it asks with a DISCOVER and only lessor's journal can remember it).
//! * `journal import-kea` on a lease file that a real kea-dhcp4 wrote.
//! * A full disk: OFFERs go on, ACKs wait for the journal, and come back once there is space.
//! * A damaged journal: startup refuses naming the file and offset, `journal verify` fails,
//!   `journal repair` drops the damaged record and lessor replays the rest.
//!
//! Like the other end-to-end tests these run as root in network namespaces of their own (ports
//! 6767/6768 on the namespace's loopback, or port 67 on veths), and remove every namespace,
//! mount and process they made, also when they fail. Nothing asserts on timing.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output};
use std::sync::OnceLock;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::common::{
    ClientLink, LESSOR, Lessor, Netns, Ns, heavy_turn, perfdhcp_report, read_records, run_logged,
    spawn_logged, tempdir, tool, unique, wait_until, write_script,
};

/// How long a helper process (tshark, perfdhcp, kea-dhcp4) may take to start or to stop.
const HELPER_DEADLINE: Duration = Duration::from_secs(30);

// ---------------------------------------------------------------------------------------------
// Fixtures
// ---------------------------------------------------------------------------------------------

/// A lessor config for perfdhcp on loopback (port 6767, relay 127.0.0.1) whose state is in
/// `state` (an absolute path, so that restarts share it).
fn loopback_config(state: &Path, subnet: &str, pool: &str) -> String {
    format!(
        r#"port: 6767
state_dir: {}
workers: 2
journal: {{ sync: group }}
v4:
  lease_time: 3600
  subnets:
    - subnet: {subnet}
      pools: [ "{pool}" ]
      relays: [ 127.0.0.1 ]
      options: {{ routers: [10.0.0.1] }}
"#,
        state.display()
    )
}

/// Writes `config` to `dir/lessor.yaml` for the offline `journal` tools.
fn config_file(dir: &Path, config: &str) -> PathBuf {
    let p = dir.join("lessor.yaml");
    fs::write(&p, config).expect("writing the config");
    p
}

/// A process of ours running in the background, stopped by a signal (by PID) when the test is
/// done with it, and killed on drop if it still runs (a failing test).
pub(crate) struct Bg {
    what: String,
    child: Option<Child>,
    log: PathBuf,
}

impl Bg {
    /// Starts `cmd` with its output going to `log`.
    pub(crate) fn spawn(what: &str, cmd: &mut Command, log: &Path) -> Bg {
        Bg {
            what: what.to_owned(),
            child: Some(spawn_logged(cmd, log)),
            log: log.to_owned(),
        }
    }

    fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Fails the test (with the log) if the process has exited.
    pub(crate) fn assert_running(&mut self) {
        let child = self.child.as_mut().expect("running");
        if let Ok(Some(status)) = child.try_wait() {
            self.child = None;
            panic!("{} exited early ({status}):\n{}", self.what, self.log());
        }
    }

    /// Waits until the process's log contains `needle`; fails the test if it exits first or
    /// the deadline passes.
    fn wait_for_log(&mut self, needle: &str) {
        let deadline = Instant::now() + HELPER_DEADLINE;
        while !self.log().contains(needle) {
            self.assert_running();
            assert!(
                Instant::now() < deadline,
                "{} did not log {needle:?} within {HELPER_DEADLINE:?}:\n{}",
                self.what,
                self.log()
            );
            thread::sleep(Duration::from_millis(50));
        }
    }

    /// Sends SIG`signal` and waits for the exit; returns the status and the log.
    pub(crate) fn stop(mut self, signal: &str) -> (ExitStatus, String) {
        let mut child = self.child.take().expect("running");
        let _ = Command::new("kill")
            .args([&format!("-{signal}"), &child.id().to_string()])
            .status();
        let deadline = Instant::now() + HELPER_DEADLINE;
        loop {
            match child.try_wait() {
                Ok(Some(s)) => return (s, self.log()),
                Ok(None) if Instant::now() < deadline => thread::sleep(Duration::from_millis(50)),
                _ => {
                    let _ = child.kill();
                    let _ = child.wait();
                    panic!(
                        "{} did not exit within {HELPER_DEADLINE:?} of SIG{signal}:\n{}",
                        self.what,
                        self.log()
                    );
                }
            }
        }
    }
}

impl Drop for Bg {
    fn drop(&mut self) {
        if let Some(mut c) = self.child.take() {
            let _ = c.kill();
            let _ = c.wait();
            if thread::panicking() {
                eprintln!("--- {} log:\n{}", self.what, self.log());
            }
        }
    }
}

/// perfdhcp against lessor (or Kea) on the namespace's loopback, as BENCHMARKING.md runs it.
/// `timed`: under `timeout` (a run with `-n`/`-p` that ends by itself), else plain (a run that
/// is stopped with SIGINT).
fn perfdhcp(ns: &Ns, timed: bool, args: &[&str]) -> Command {
    perfdhcp_to(ns, timed, 6767, args)
}

/// [`perfdhcp`] to the server on `port`.
pub(crate) fn perfdhcp_to(ns: &Ns, timed: bool, port: u16, args: &[&str]) -> Command {
    let port = port.to_string();
    let mut c = if timed {
        ns.timed("perfdhcp")
    } else {
        ns.cmd(tool("perfdhcp"))
    };
    c.args([
        "-4",
        "-l",
        "127.0.0.1",
        "-N",
        &port,
        "-L",
        "6768",
        "-g",
        "single",
    ])
    .args(args)
    .arg("127.0.0.1");
    c
}

/// `(sent, received)` of one perfdhcp exchange, failing the test when it is missing.
fn sent_received(out: &str, exchange: &str) -> (u64, u64) {
    let r = perfdhcp_report(out);
    let s = r
        .get(exchange)
        .unwrap_or_else(|| panic!("perfdhcp printed no statistics for {exchange}:\n{out}"));
    let get = |k: &str| {
        *s.get(k)
            .unwrap_or_else(|| panic!("perfdhcp: no `{k}` for {exchange}:\n{out}"))
    };
    (get("sent packets"), get("received packets"))
}

/// Runs a perfdhcp that ends by itself; it must exit 0 (all answered) or 3 (some drops).
fn run_perfdhcp(ns: &Ns, log: &Path, args: &[&str]) -> String {
    let (status, out) = run_logged(&mut perfdhcp(ns, true, args), log);
    assert!(
        matches!(status.code(), Some(0 | 3)),
        "perfdhcp {args:?} failed ({status}):\n{out}"
    );
    out
}

/// Runs `lessor --config CONFIG ARGS` (the offline journal tools) to completion under a deadline.
fn lessor_tool(config: &Path, args: &[&str]) -> Output {
    Command::new(tool("timeout"))
        .args(["-k", "5", "60", LESSOR, "--config"])
        .arg(config)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("running lessor {args:?}: {e}"))
}

fn text(b: &[u8]) -> String {
    String::from_utf8_lossy(b).into_owned()
}

/// `lessor journal verify`: must exit 0.
fn verify_clean(config: &Path, state: &Path) {
    let out = lessor_tool(config, &["journal", "verify", "--state-dir", &pstr(state)]);
    assert!(
        out.status.success(),
        "journal verify failed ({}):\n{}\n{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
}

fn pstr(p: &Path) -> String {
    p.display().to_string()
}

/// One lease of `lessor journal dump`.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Dumped {
    state: String,
    hw: String,
    line: String,
}

/// `lessor journal dump` (jsonl), by address.
fn dump(config: &Path, state: &Path) -> BTreeMap<Ipv4Addr, Dumped> {
    let out = lessor_tool(config, &["journal", "dump", "--state-dir", &pstr(state)]);
    let stdout = text(&out.stdout);
    assert!(
        out.status.success(),
        "journal dump failed ({}):\n{}",
        out.status,
        text(&out.stderr)
    );
    let mut leases = BTreeMap::new();
    for line in stdout.lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
            panic!("journal dump printed a line that is not JSON ({e}): {line}")
        });
        let field = |k: &str| {
            v[k].as_str()
                .unwrap_or_else(|| panic!("journal dump: no string {k:?} in {line}"))
                .to_owned()
        };
        let addr: Ipv4Addr = field("address")
            .parse()
            .unwrap_or_else(|e| panic!("journal dump: bad address ({e}) in {line}"));
        let d = Dumped {
            state: field("state"),
            hw: field("hw_address").to_ascii_lowercase(),
            line: line.to_owned(),
        };
        assert!(
            leases.insert(addr, d).is_none(),
            "journal dump lists {addr} twice"
        );
    }
    leases
}

/// Asserts that every `address -> MAC` in `expected` is bound to that MAC in `dump`.
fn assert_bound(
    dump: &BTreeMap<Ipv4Addr, Dumped>,
    expected: &BTreeMap<Ipv4Addr, String>,
    why: &str,
) {
    let mut bad = Vec::new();
    for (addr, mac) in expected {
        match dump.get(addr) {
            Some(d) if d.state == "bound" && &d.hw == mac => {}
            Some(d) => bad.push(format!("{addr} ({why} to {mac}): journal has {}", d.line)),
            None => bad.push(format!("{addr} ({why} to {mac}): not in the journal")),
        }
    }
    assert!(
        bad.is_empty(),
        "{} of {} leases {why} are not bound to their client in `journal dump` (first 20):\n{}",
        bad.len(),
        expected.len(),
        bad.iter().take(20).cloned().collect::<Vec<_>>().join("\n")
    );
}

/// The numbers of lessor's startup line `... replayed R records, L leases live, S skipped ...`.
#[derive(Debug)]
struct Replay {
    records: u64,
    live: u64,
    skipped: u64,
    line: String,
}

fn replay_line(lessor: &Lessor) -> Replay {
    let line = lessor.stdout_line("replayed ");
    let rest = &line[line.find("replayed ").expect("found") + "replayed ".len()..];
    let words: Vec<&str> = rest.split_whitespace().collect();
    // "R records, L leases live, S skipped, in Xs"
    let num = |i: usize, what: &str| -> u64 {
        assert!(
            words.get(i + 1).is_some_and(|w| w.starts_with(what)),
            "unexpected replay line (no {what:?} after word {i}): {line}"
        );
        words[i]
            .parse()
            .unwrap_or_else(|_| panic!("unexpected replay line: {line}"))
    };
    Replay {
        records: num(0, "records"),
        live: num(2, "leases"),
        skipped: num(5, "skipped"),
        line: line.clone(),
    }
}

/// A small xorshift generator: the crash moments must be reproducible from a printed seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }
}

/// The seed from `LESSOR_TEST_SEED`, else from the clock and PID.
fn seed() -> u64 {
    if let Some(s) = std::env::var("LESSOR_TEST_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
    {
        return s;
    }
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    (nanos ^ (u64::from(std::process::id()) << 32)) | 1
}

// ---------------------------------------------------------------------------------------------
// tshark: what left the server
// ---------------------------------------------------------------------------------------------

/// The name tshark gives the DHCP dissector and its fields: `dhcp` (Wireshark >= 3.0) or `bootp`.
fn dhcp_proto() -> &'static str {
    static PROTO: OnceLock<&'static str> = OnceLock::new();
    PROTO.get_or_init(|| {
        let out = Command::new(tool("tshark"))
            .args(["-G", "protocols"])
            .output()
            .expect("running tshark -G protocols");
        let list = text(&out.stdout);
        let has = |name: &str| list.lines().any(|l| l.split('\t').nth(2) == Some(name));
        if has("dhcp") {
            "dhcp"
        } else if has("bootp") {
            "bootp"
        } else {
            panic!("tshark knows neither a `dhcp` nor a `bootp` dissector:\n{list}")
        }
    })
}

/// tshark capturing on the namespace's loopback every datagram sent to perfdhcp's port 6768
/// (the server's replies), into a pcapng file.
pub(crate) struct Capture {
    bg: Bg,
    file: PathBuf,
}

impl Capture {
    /// Starts tshark and waits until it captures.
    pub(crate) fn start(ns: &Ns, dir: &Path, name: &str) -> Capture {
        let file = dir.join(format!("{name}.pcapng"));
        let mut cmd = ns.cmd(tool("tshark"));
        // A 64 MiB capture buffer (dumpcap's default is 2): with other tests loading both cores,
        // the default ring dropped ACKs that perfdhcp received, and the check that every ACK
        // was seen then failed for the capture's sake.
        cmd.args(["-i", "lo", "-B", "64", "-f", "udp dst port 6768", "-w"])
            .arg(&file);
        let mut bg = Bg::spawn("tshark", &mut cmd, &dir.join(format!("{name}.tshark.log")));
        // dumpcap prints this once the capture is open and filtered.
        bg.wait_for_log("Capturing on");
        Capture { bg, file }
    }

    /// Stops tshark once its file holds at least `acks` DHCPACKs, or after 30 s. dumpcap reads
    /// the kernel's capture ring a block at a time, and a SIGINT can stop it before the last
    /// block of a loaded machine reaches the file: a test that needs every ACK waits for them.
    fn finish_with(self, acks: usize) -> (PathBuf, String) {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            // The file is being written: tshark may fail on its last, partial packet.
            let seen = text(&read_acks(&self.file).stdout)
                .lines()
                .filter(|l| !l.trim().is_empty())
                .count();
            if seen >= acks {
                break;
            }
            thread::sleep(Duration::from_millis(200));
        }
        self.finish()
    }

    /// Stops tshark (SIGINT: it finishes the file) and returns the file and tshark's log
    /// (which ends with the packets it captured and dropped).
    pub(crate) fn finish(self) -> (PathBuf, String) {
        let (_, log) = self.bg.stop("INT");
        assert!(
            self.file.is_file(),
            "tshark wrote no capture file {}:\n{log}",
            self.file.display()
        );
        (self.file, log)
    }
}

/// tshark's listing of the DHCPACKs in `pcap`, one "yiaddr TAB chaddr" line each.
fn read_acks(pcap: &Path) -> std::process::Output {
    let p = dhcp_proto();
    Command::new(tool("tshark"))
        .arg("-r")
        .arg(pcap)
        .args([
            "-d",
            &format!("udp.port==6768,{p}"),
            "-Y",
            &format!("{p}.option.dhcp == 5"),
            "-T",
            "fields",
            "-e",
            &format!("{p}.ip.your"),
            "-e",
            &format!("{p}.hw.mac_addr"),
        ])
        .output()
        .expect("running tshark -r")
}

/// Every DHCPACK in `pcap`: (your address, client MAC), in capture order.
pub(crate) fn captured_acks(pcap: &Path) -> Vec<(Ipv4Addr, String)> {
    let out = read_acks(pcap);
    assert!(
        out.status.success(),
        "tshark -r {} failed ({}): {}",
        pcap.display(),
        out.status,
        text(&out.stderr)
    );
    text(&out.stdout)
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| {
            let (ip, mac) = l
                .split_once('\t')
                .unwrap_or_else(|| panic!("unexpected tshark line {l:?}"));
            let ip = ip
                .parse()
                .unwrap_or_else(|e| panic!("tshark: bad yiaddr ({e}) in {l:?}"));
            // The client-id option's MAC is a second `mac_addr` field: take chaddr, the first.
            let mac = mac.split(',').next().unwrap_or("").to_ascii_lowercase();
            assert_eq!(mac.len(), 17, "tshark: bad chaddr in {l:?}");
            (ip, mac)
        })
        .collect()
}

/// Adds `acks` to `bound` (address -> MAC), failing if an address was ACKed to two MACs
/// (the one-owner invariant: nothing in these tests releases a lease or lets one expire).
pub(crate) fn merge_acks(
    bound: &mut BTreeMap<Ipv4Addr, String>,
    acks: &[(Ipv4Addr, String)],
    whence: &str,
) {
    for (addr, mac) in acks {
        if let Some(prev) = bound.insert(*addr, mac.clone()) {
            assert_eq!(
                &prev, mac,
                "{addr} was ACKed to {prev} and later to {mac} ({whence}): one address, two \
                 clients"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// 1. kill -9 under load
// ---------------------------------------------------------------------------------------------

#[test]
fn crash_under_load_loses_no_acknowledged_lease() {
    let _turn = heavy_turn();
    let seed = seed();
    eprintln!("crash test: seed {seed} (LESSOR_TEST_SEED={seed} repeats these kill moments)");
    let mut rng = Rng(seed);
    let ns = Ns::new(format!("ljcr-{}", unique()));
    let dir = tempdir();
    let state = dir.path().join("state");
    let config = loopback_config(&state, "10.0.0.0/8", "10.0.0.1-10.255.255.254");
    let cfg = config_file(dir.path(), &config);

    // Every ACK seen so far, over all rounds: address -> MAC; and MAC -> address.
    let mut acked: BTreeMap<Ipv4Addr, String> = BTreeMap::new();
    let mut by_mac: BTreeMap<String, Ipv4Addr> = BTreeMap::new();
    // Round 3's clients are round 1's again (same MAC base): they hold bound leases that only
    // the journal remembers, and must get the same addresses back. Round 2's are new: they must
    // not get any address bound before a crash.
    let bases = [
        "02:01:00:00:00:00",
        "02:02:00:00:00:00",
        "02:01:00:00:00:00",
    ];
    for (round, base) in bases.iter().enumerate() {
        let round = round + 1;
        let cap = Capture::start(&ns, dir.path(), &format!("round{round}"));
        let lessor = Lessor::start(Some(&ns), &config, &[]);
        let mut perf = Bg::spawn(
            "perfdhcp",
            &mut perfdhcp(
                &ns,
                false,
                &["-R", "1000000", "-r", "1500", "-b", &format!("mac={base}")],
            ),
            &dir.path().join(format!("round{round}.perfdhcp.log")),
        );
        let delay = Duration::from_millis(1000 + rng.next() % 2001);
        thread::sleep(delay);
        perf.assert_running();
        let crashed = lessor.crash();
        let (_, perf_out) = perf.stop("INT");
        let (pcap, _) = cap.finish();

        let acks = captured_acks(&pcap);
        assert!(
            !acks.is_empty(),
            "round {round}: tshark captured no DHCPACK in {delay:?} of load (the test cannot \
             fail like this);\nperfdhcp:\n{perf_out}\nlessor stdout:\n{}\nstderr:\n{}",
            crashed.stdout,
            crashed.stderr
        );
        merge_acks(&mut acked, &acks, &format!("round {round}"));
        for (addr, mac) in &acks {
            if let Some(prev) = by_mac.insert(mac.clone(), *addr) {
                assert_eq!(
                    prev, *addr,
                    "round {round}: {mac} holds a bound lease on {prev} but was ACKed {addr}"
                );
            }
        }

        // Restart on the same state: replay must bring back at least every ACKed lease.
        let lessor = Lessor::start(Some(&ns), &config, &[]);
        let replay = replay_line(&lessor);
        lessor
            .stop()
            .assert_success_because(" (restarted after the crash)");
        assert_eq!(replay.skipped, 0, "{}", replay.line);
        assert!(
            replay.live >= acked.len() as u64,
            "round {round}: {} addresses were ACKed, the restart replayed {} live leases: {}",
            acked.len(),
            replay.live,
            replay.line
        );
        verify_clean(&cfg, &state);
        let leases = dump(&cfg, &state);
        assert_bound(&leases, &acked, "ACKed before a kill -9");
        eprintln!(
            "round {round}: kill -9 after {delay:?}; {} ACKs captured ({} addresses so far), all \
             bound in the journal; restart: {}",
            acks.len(),
            acked.len(),
            replay.line
        );
    }
}

/// Twenty kill -9 restarts under load: every restart resumes the last segment, so the
/// journal keeps one segment (and at most one spare) however many restarts there were, and
/// every ACKed lease replays.
#[test]
fn kill_9_restarts_leave_the_journal_bounded() {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("ljkr-{}", unique()));
    let dir = tempdir();
    let state = dir.path().join("state");
    let config = loopback_config(&state, "10.0.0.0/8", "10.0.0.1-10.255.255.254");
    let journal = state.join("journal");
    let mut live = 0;
    for round in 0..20u32 {
        let lessor = Lessor::start(Some(&ns), &config, &[]);
        let replay = replay_line(&lessor);
        assert!(
            replay.live >= live,
            "round {round}: {} live after {live}: {}",
            replay.live,
            replay.line
        );
        let out = run_perfdhcp(
            &ns,
            &dir.path().join(format!("perfdhcp-{round}.log")),
            &[
                "-R",
                "1000000",
                "-r",
                "2000",
                "-n",
                "300",
                "-b",
                &format!("mac=02:05:{round:02x}:00:00:00"),
            ],
        );
        live = replay.live + sent_received(&out, "REQUEST-ACK").1;
        lessor.crash();
        let files: Vec<(String, u64)> = fs::read_dir(&journal)
            .expect("reading the journal directory")
            .map(|e| {
                let e = e.unwrap();
                let len = e.metadata().unwrap().len();
                (e.file_name().to_string_lossy().into_owned(), len)
            })
            .collect();
        let logs = files.iter().filter(|(n, _)| n.ends_with(".log")).count();
        let bytes: u64 = files.iter().map(|(_, n)| n).sum();
        assert_eq!(logs, 1, "round {round}: {files:?}");
        // One 64 MiB segment and at most one 64 MiB spare (plus a batch past the segment).
        assert!(
            bytes <= (2 << 26) + (1 << 20),
            "round {round}: {bytes} bytes: {files:?}"
        );
    }
    let lessor = Lessor::start(Some(&ns), &config, &[]);
    let replay = replay_line(&lessor);
    assert!(
        replay.live >= live,
        "{} < {live}: {}",
        replay.live,
        replay.line
    );
    lessor.stop().assert_success();
    eprintln!(
        "20 kill -9 restarts: {} leases live, one segment",
        replay.live
    );
}

/// The `expired` counters count every lease that ends by expiry exactly once, whether the
/// once-a-second sweep (at most `RECLAIM_BUDGET` a second per worker) or a returning client's
/// request finds it: they once counted only the sweep's. One worker, 20,000 clients of which
/// about 14,000 get 6 s leases, a restart that replays them, and the same clients coming back
/// as the last of them expire, while the sweep is still behind.
fn expiries_are_counted_once(v6: bool) {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("ljex-{}", unique()));
    let dir = tempdir();
    let state = dir.path().join("state");
    let config = if v6 {
        format!(
            "port: 6767\nstate_dir: {}\nworkers: 1\nv6:\n  port: 6767\n  preferred_lifetime: 5\n  \
             valid_lifetime: 6\n  subnets:\n    - subnet: fd00:235::/64\n      relays: [ \"::1\" ]\n      \
             pools: [ \"fd00:235::1:0-fd00:235::ffff:ffff\" ]\n",
            state.display()
        )
    } else {
        loopback_config(&state, "10.0.0.0/8", "10.0.0.1-10.255.255.254")
            .replace("lease_time: 3600", "lease_time: 6")
            .replace("workers: 2", "workers: 1")
    };
    let (family, local, base, counter) = if v6 {
        (
            ["-6", "-A", "1"].as_slice(),
            "::1",
            "duid=0001000100000000020600000000",
            "v6_expired",
        )
    } else {
        (
            ["-4", "-g", "single"].as_slice(),
            "127.0.0.1",
            "mac=02:06:00:00:00:00",
            "expired",
        )
    };
    let clients = |run: u32| {
        let mut c = ns.timed("perfdhcp");
        c.args(family)
            .args(["-l", local, "-N", "6767", "-L", "6768"])
            .args(["-R", "20000", "-r", "8000", "-n", "24000", "-b", base])
            .arg(local);
        let (status, out) = run_logged(&mut c, &dir.path().join(format!("perfdhcp-{run}.log")));
        assert!(
            matches!(status.code(), Some(0 | 3)),
            "perfdhcp: {status}\n{out}"
        );
    };
    let lessor = Lessor::start(Some(&ns), &config, &[]);
    replay_line(&lessor);
    clients(1);
    let granted = Instant::now();
    lessor.stop().assert_success();
    // The leases bound, exactly: what a restart replays (before any has expired). The restart
    // grants an hour, so no lease of the second run expires in the count however slow it is;
    // the replayed leases keep their 6 s.
    let long = if v6 {
        config.replace("valid_lifetime: 6", "valid_lifetime: 3600")
    } else {
        config.replace("lease_time: 6", "lease_time: 3600")
    };
    assert_ne!(long, config);
    let lessor = Lessor::start(Some(&ns), &long, &[]);
    let bound = replay_line(&lessor).live;
    assert!(bound > 5000, "only {bound} leases bound");
    // Back once the last leases have expired (expiry is in whole seconds, hence 7 s): the
    // sweep has not reached all of them.
    thread::sleep(
        (granted + Duration::from_millis(7100)).saturating_duration_since(Instant::now()),
    );
    clients(2);
    // Then the sweep (RECLAIM_BUDGET a second) finds whatever the clients did not.
    thread::sleep(Duration::from_secs(bound / 4096 + 3));
    let stopped = lessor.stop();
    stopped.assert_success();
    assert_eq!(
        stopped.counter(counter),
        bound,
        "{bound} leases expired:\n{}",
        stopped.stdout
    );
}

#[test]
fn every_v4_expiry_is_counted_once() {
    expiries_are_counted_once(false);
}

#[test]
fn every_v6_expiry_is_counted_once() {
    expiries_are_counted_once(true);
}

// ---------------------------------------------------------------------------------------------
// 2. dhclient across a restart
// ---------------------------------------------------------------------------------------------

/// ISC dhclient on one link, each run with lease and pid files named by a tag.
struct Dhclient<'a> {
    link: &'a ClientLink,
    dir: PathBuf,
}

impl<'a> Dhclient<'a> {
    fn new(link: &'a ClientLink, dir: &Path) -> Dhclient<'a> {
        let dir = dir.join(format!("dhclient-{}", link.ifname));
        fs::create_dir_all(&dir).expect("creating the client directory");
        let me = Dhclient { link, dir };
        write_script(
            &me.path("hook.sh"),
            &format!(
                "#!/bin/sh\nprintf '%s\\n' \"reason=$reason\" \"new_ip_address=$new_ip_address\" \
                 -- >> '{}'\nexit 0\n",
                me.path("env").display()
            ),
        );
        fs::write(
            me.path("dhclient.conf"),
            "timeout 30;\nretry 5;\nrequest subnet-mask, routers, dhcp-lease-time;\n",
        )
        .expect("writing dhclient.conf");
        me
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.join(name)
    }

    fn run(&self, tag: &str, mode: &str) -> String {
        let mut c = self.link.ns.timed("dhclient");
        c.args(["-4", "-v", mode, "-cf"])
            .arg(self.path("dhclient.conf"))
            .arg("-lf")
            .arg(self.path(&format!("leases-{tag}")))
            .arg("-pf")
            .arg(self.path(&format!("pid-{tag}")))
            .arg("-sf")
            .arg(self.path("hook.sh"))
            .arg(&self.link.ifname);
        let log = self.path(&format!("{tag}{mode}.log"));
        let (status, out) = run_logged(&mut c, &log);
        assert!(
            status.success(),
            "dhclient {mode} ({tag}) failed: {status}\n{out}"
        );
        out
    }

    /// Gets a lease with the lease file of `tag` (`dhclient -1`, which then daemonises) and
    /// stops the daemon without releasing (`-x`; dhclient 4.4 sends one more REQUEST for the
    /// lease in its file as it does, so each client leaves two records). Returns (hook reason,
    /// address, log).
    fn lease(&self, tag: &str) -> (String, String, String) {
        let before = read_records(&self.path("env")).len();
        let log = self.run(tag, "-1");
        let rec = read_records(&self.path("env"))[before..]
            .iter()
            .rev()
            .find(|r| matches!(r["reason"].as_str(), "BOUND" | "REBOOT"))
            .cloned()
            .unwrap_or_else(|| panic!("dhclient exited 0 but its hook saw no binding:\n{log}"));
        self.run(tag, "-x");
        (rec["reason"].clone(), rec["new_ip_address"].clone(), log)
    }
}

/// Three clients (their MACs differ) get leases one after the other; lessor is stopped with
/// `signal`; a new lessor on the same state dir must give each, asking with a DISCOVER from a
/// fresh lease file, in the reverse order, its address again. Addresses are handed out lowest
/// first within a worker's shard, so with two workers at least one client got an address that
/// a lessor without memory would not give it when it asks first: only the journal makes this
/// pass.
fn client_keeps_its_address(signal: &str) {
    let net = Netns::bridged(3);
    let dir = tempdir();
    let state = dir.path().join("state");
    let config = format!(
        r#"interfaces: [{}]
port: 67
state_dir: {}
workers: 2
v4:
  lease_time: 3600
  subnets:
    - subnet: 10.231.0.0/24
      pools: [ "10.231.0.100-10.231.0.199" ]
      options: {{ routers: [10.231.0.1] }}
"#,
        net.server_if,
        state.display()
    );
    let clients: Vec<Dhclient<'_>> = net
        .clients
        .iter()
        .map(|l| Dhclient::new(l, dir.path()))
        .collect();
    let macs: Vec<String> = net.clients.iter().map(ClientLink::mac).collect();

    let lessor = Lessor::start(Some(&net.server), &config, &[]);
    let first: Vec<String> = clients.iter().map(|c| c.lease("before").1).collect();
    let distinct: BTreeSet<&String> = first.iter().collect();
    assert_eq!(
        distinct.len(),
        3,
        "three clients, not three addresses: {first:?}"
    );
    if signal == "KILL" {
        lessor.crash();
    } else {
        let s = lessor.stop_with(signal);
        s.assert_success();
    }

    let lessor = Lessor::start(Some(&net.server), &config, &[]);
    let replay = replay_line(&lessor);
    assert!(replay.live >= 3, "{}", replay.line);
    for i in (0..3).rev() {
        let (reason, addr, log) = clients[i].lease("after");
        assert!(
            log.contains("DHCPDISCOVER") && reason == "BOUND",
            "client {} did not start from a DISCOVER with its fresh lease file ({reason}):\n{log}",
            macs[i]
        );
        assert_eq!(
            addr, first[i],
            "after SIG{signal} and a restart ({}), client {} got {addr}, not its {}",
            replay.line, macs[i], first[i]
        );
    }
    let stopped = lessor.stop();
    assert_eq!(stopped.counter("naks"), 0, "{}", stopped.stdout);
    eprintln!(
        "SIG{signal}: {macs:?} kept {first:?}; restart: {}",
        replay.line
    );
}

#[test]
fn real_client_keeps_its_address_across_a_restart() {
    client_keeps_its_address("TERM");
}

#[test]
fn real_client_keeps_its_address_across_a_crash() {
    client_keeps_its_address("KILL");
}

// ---------------------------------------------------------------------------------------------
// 3. Kea's lease file
// ---------------------------------------------------------------------------------------------

/// A live lease of a Kea memfile.
struct KeaLease {
    hw: String,
    expire: u64,
}

/// The live leases of a Kea memfile by address: the last row per address wins; live = state 0
/// (default), a non-zero lifetime and an expiry in the future.
fn kea_live(csv: &str, now: u64) -> BTreeMap<Ipv4Addr, KeaLease> {
    let mut lines = csv.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |n: &str| {
        header
            .iter()
            .position(|h| *h == n)
            .unwrap_or_else(|| panic!("Kea's lease file has no column {n}: {header:?}"))
    };
    let (a, hw, valid, exp, st) = (
        col("address"),
        col("hwaddr"),
        col("valid_lifetime"),
        col("expire"),
        col("state"),
    );
    let mut last: BTreeMap<Ipv4Addr, Vec<String>> = BTreeMap::new();
    for row in lines.filter(|l| !l.trim().is_empty()) {
        let f: Vec<String> = row.split(',').map(str::to_owned).collect();
        let addr = f[a]
            .parse()
            .unwrap_or_else(|e| panic!("Kea address ({e}) in {row}"));
        last.insert(addr, f);
    }
    last.into_iter()
        .filter_map(|(addr, f)| {
            let expire = f[exp].parse::<u64>().expect("Kea expire");
            (f[st] == "0" && f[valid] != "0" && expire > now).then(|| {
                let hw = f[hw].to_ascii_lowercase();
                (addr, KeaLease { hw, expire })
            })
        })
        .collect()
}

#[test]
fn import_kea_from_a_file_kea_wrote() {
    let ns = Ns::new(format!("ljkea-{}", unique()));
    let dir = tempdir();
    let kea_dir = dir.path().join("kea");
    fs::create_dir(&kea_dir).expect("creating the Kea directory");
    let csv = kea_dir.join("leases4.csv");
    let kea_json = kea_dir.join("kea.json");
    // BENCHMARKING.md's config, single-threaded, with a small pool and a lease file of ours;
    // no lease file cleanup (kea-lfc), log to stdout.
    fs::write(
        &kea_json,
        format!(
            r#"{{ "Dhcp4": {{
  "interfaces-config": {{ "interfaces": [ "lo" ], "dhcp-socket-type": "udp" }},
  "lease-database": {{ "type": "memfile", "persist": true, "lfc-interval": 0, "name": "{}" }},
  "valid-lifetime": 4000,
  "subnet4": [ {{ "id": 1, "subnet": "10.0.0.0/16",
                 "pools": [ {{ "pool": "10.0.0.10 - 10.0.2.250" }} ],
                 "relay": {{ "ip-addresses": [ "127.0.0.1" ] }} }} ],
  "loggers": [ {{ "name": "kea-dhcp4", "severity": "INFO",
                  "output_options": [ {{ "output": "stdout" }} ] }} ] }} }}"#,
            csv.display()
        ),
    )
    .expect("writing kea.json");
    for d in ["/run/kea", "/var/run/kea"] {
        fs::create_dir_all(d).unwrap_or_else(|e| panic!("creating {d}: {e}"));
    }
    let mut kea_cmd = ns.cmd(tool("kea-dhcp4"));
    kea_cmd
        .arg("-c")
        .arg(&kea_json)
        .args(["-p", "6767", "-P", "6768"])
        // Its pid and lock files in our directory: never clash with another Kea.
        .env("KEA_PIDFILE_DIR", &kea_dir)
        .env("KEA_LOCKFILE_DIR", &kea_dir);
    let mut kea = Bg::spawn("kea-dhcp4", &mut kea_cmd, &kea_dir.join("kea.log"));
    kea.wait_for_log("DHCP4_STARTED");
    let out = run_perfdhcp(
        &ns,
        &dir.path().join("perfdhcp-kea.log"),
        &["-R", "400", "-n", "300", "-r", "200"],
    );
    let (_, kea_acks) = sent_received(&out, "REQUEST-ACK");
    assert!(kea_acks > 0, "Kea ACKed nothing:\n{out}\n{}", kea.log());
    let (status, kea_log) = kea.stop("TERM");
    assert!(
        status.success(),
        "kea-dhcp4 exited with {status}:\n{kea_log}"
    );

    let rows = fs::read_to_string(&csv).expect("reading Kea's lease file");
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock")
        .as_secs();
    let live = kea_live(&rows, now);
    assert!(
        !live.is_empty(),
        "Kea's lease file holds no live lease after {kea_acks} ACKs:\n{rows}"
    );

    // The switch: import into a state dir lessor has never run on (so that lessor's very first
    // start knows every lease Kea handed out).
    let state = dir.path().join("state");
    let config = loopback_config(&state, "10.0.0.0/16", "10.0.0.10-10.0.2.250");
    let cfg = config_file(dir.path(), &config);
    let out = lessor_tool(
        &cfg,
        &[
            "journal",
            "import-kea",
            &pstr(&csv),
            "--state-dir",
            &pstr(&state),
        ],
    );
    assert!(
        out.status.success(),
        "journal import-kea into a fresh state dir failed ({}):\n{}{}",
        out.status,
        text(&out.stdout),
        text(&out.stderr)
    );
    verify_clean(&cfg, &state);
    let kea_hw: BTreeMap<Ipv4Addr, String> = live.iter().map(|(a, l)| (*a, l.hw.clone())).collect();
    let imported = dump(&cfg, &state);
    assert_bound(&imported, &kea_hw, "live in Kea's lease file");
    for (addr, l) in &live {
        let expires = humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(l.expire));
        assert!(
            imported[addr]
                .line
                .contains(&format!("\"expires_at\":\"{expires}\"")),
            "{addr} expires at {expires} in Kea's file; imported as {}",
            imported[addr].line
        );
    }

    // lessor starts on it with every lease, and the same perfdhcp clients (the same MACs, in
    // the same order) get their Kea addresses back instead of new ones.
    let lessor = Lessor::start(Some(&ns), &config, &[]);
    let replay = replay_line(&lessor);
    assert!(
        replay.live >= live.len() as u64 && replay.skipped == 0,
        "Kea had {} live leases; {}",
        live.len(),
        replay.line
    );
    let out = run_perfdhcp(
        &ns,
        &dir.path().join("perfdhcp-lessor.log"),
        &["-R", "400", "-n", "300", "-r", "200"],
    );
    let (_, acks) = sent_received(&out, "REQUEST-ACK");
    let stopped = lessor.stop();
    stopped.assert_success();
    assert!(acks > 0, "lessor ACKed nothing:\n{out}\n{}", stopped.stdout);
    assert_eq!(stopped.counter("naks"), 0, "{}", stopped.stdout);
    let leases = dump(&cfg, &state);
    assert_bound(&leases, &kea_hw, "live in Kea's lease file");
    // perfdhcp's clients are the same MACs in the same order as Kea's: a client Kea had a lease
    // for is bound to that address and no other (a client Kea never bound may get a new one).
    let kea_addr: BTreeMap<&str, Ipv4Addr> =
        live.iter().map(|(a, l)| (l.hw.as_str(), *a)).collect();
    let moved: Vec<String> = leases
        .iter()
        .filter(|(a, d)| d.state == "bound" && kea_addr.get(d.hw.as_str()).is_some_and(|k| k != *a))
        .map(|(a, d)| {
            format!(
                "{a} bound to {}, whose Kea lease is {}",
                d.hw,
                kea_addr[d.hw.as_str()]
            )
        })
        .collect();
    assert!(
        moved.is_empty(),
        "clients that had a lease from Kea got another address from lessor (first 10):\n{}",
        moved
            .iter()
            .take(10)
            .cloned()
            .collect::<Vec<_>>()
            .join("\n")
    );
    // And lessor did ACK them again (their leases changed since the import).
    let renewed = live
        .keys()
        .filter(|a| leases[*a].line != imported[*a].line)
        .count();
    assert!(
        renewed > 0,
        "none of Kea's clients was ACKed by lessor ({acks} ACKs):\n{out}"
    );
    eprintln!(
        "Kea: {kea_acks} ACKs, {} live leases in its file, all bound after import-kea; lessor: {}; \
         then {acks} ACKs, {renewed} of Kea's clients renewed on their Kea address, none moved",
        live.len(),
        replay.line
    );
}

// ---------------------------------------------------------------------------------------------
// 4. A full disk
// ---------------------------------------------------------------------------------------------

/// A tmpfs of ours mounted on a directory, unmounted on drop.
struct Tmpfs {
    dir: PathBuf,
}

impl Tmpfs {
    fn mount(dir: &Path, size: &str) -> Tmpfs {
        fs::create_dir_all(dir).expect("creating the mount point");
        let out = Command::new(tool("mount"))
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .output()
            .expect("running mount");
        assert!(
            out.status.success(),
            "mounting a tmpfs on {} failed: {}",
            dir.display(),
            text(&out.stderr)
        );
        Tmpfs {
            dir: dir.to_owned(),
        }
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let ok = Command::new(tool("umount"))
            .arg(&self.dir)
            .status()
            .is_ok_and(|s| s.success());
        if !ok {
            // Something still holds it (a process that survived a failed test): detach it.
            let _ = Command::new(tool("umount"))
                .arg("-l")
                .arg(&self.dir)
                .status();
        }
    }
}

/// Fills the filesystem holding `file` until writing fails with ENOSPC.
fn fill(file: &Path) {
    use std::io::Write;
    let mut f = fs::File::create(file).expect("creating the filler");
    let chunk = vec![0xa5u8; 4096];
    loop {
        match f.write(&chunk) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.raw_os_error() == Some(28) => break,
            Err(e) => panic!("filling {}: {e}", file.display()),
        }
    }
}

#[test]
fn disk_full_withholds_acks_then_resumes() {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("ljful-{}", unique()));
    let dir = tempdir();
    let tmpfs = Tmpfs::mount(&dir.path().join("disk"), "4m");
    let state = tmpfs.dir.join("state");
    // A small backlog bound, so that the full disk reaches it: past 20 records waiting per
    // worker, REQUESTs are dropped (counted) instead of piling up in memory.
    let config = loopback_config(&state, "10.0.0.0/8", "10.0.0.1-10.255.255.254").replace(
        "journal: { sync: group }",
        "journal: { sync: group, max_backlog: 20 }",
    );
    assert!(config.contains("max_backlog: 20"));
    let cfg = config_file(dir.path(), &config);
    let cap = Capture::start(&ns, dir.path(), "full");
    let lessor = Lessor::start(Some(&ns), &config, &[]);
    replay_line(&lessor);
    let filler = tmpfs.dir.join("filler");
    fill(&filler);

    // Disk full. A record is far more than 40 bytes, and the journal's open segment can only
    // grow into the rest of the page it already has (tmpfs allocates 4 KiB pages): at most
    // ~100 leases can still be made durable, and only those may be ACKed.
    let out = run_perfdhcp(
        &ns,
        &dir.path().join("perfdhcp-full.log"),
        &[
            "-R",
            "1000000",
            "-r",
            "200",
            "-p",
            "4",
            "-b",
            "mac=02:03:00:00:00:00",
        ],
    );
    let (offers_sent, offers) = sent_received(&out, "DISCOVER-OFFER");
    let (requests, full_acks) = sent_received(&out, "REQUEST-ACK");
    assert!(
        offers_sent > 0 && offers * 10 >= offers_sent * 9,
        "with the disk full, OFFERs must go on: {offers} of {offers_sent} answered\n{out}\n{}",
        lessor.stderr()
    );
    assert!(
        requests >= 200 && full_acks <= 4096 / 40,
        "with the disk full, {full_acks} of {requests} REQUESTs were ACKed: more than the \
         journal could have made durable\n{out}"
    );
    assert!(
        lessor.stderr().contains("No space left on device"),
        "lessor logged no write error:\n{}",
        lessor.stderr()
    );
    // The health file is on the full disk too: it must not keep saying `ok`.
    let health_path = state.join("health");
    let mut health = String::new();
    wait_until(
        Duration::from_secs(10),
        "the health file to stop saying ok",
        || {
            health = fs::read_to_string(&health_path).unwrap_or_default();
            (!health.starts_with("ok")).then_some(())
        },
    );
    assert!(
        health.is_empty() || health.starts_with("failing: "),
        "health file with the disk full: {health:?}"
    );

    // Space again: without a restart, ACKs come back (the journal retries within seconds).
    fs::remove_file(&filler).expect("removing the filler");
    let mut after = 0;
    let mut runs = 0;
    wait_until(
        Duration::from_secs(60),
        "ACKs after the disk has space again",
        || {
            runs += 1;
            let out = run_perfdhcp(
                &ns,
                &dir.path().join(format!("perfdhcp-space{runs}.log")),
                &[
                    "-R",
                    "1000000",
                    "-r",
                    "200",
                    "-p",
                    "2",
                    "-b",
                    &format!("mac=02:04:{runs:02x}:00:00:00"),
                ],
            );
            after = sent_received(&out, "REQUEST-ACK").1;
            (after > 0).then_some(())
        },
    );
    wait_until(
        Duration::from_secs(10),
        "the health file to say ok again",
        || (fs::read_to_string(&health_path).unwrap_or_default() == "ok\n").then_some(()),
    );
    let pid = lessor.pid();
    let stopped = lessor.stop();
    let (pcap, tshark_log) = cap.finish_with((full_acks + after) as usize);
    stopped.assert_success_because(" (journal not durable at shutdown?)");
    assert_eq!(stopped.counter("naks"), 0, "{}", stopped.stdout);
    assert_eq!(stopped.counter("send_errors"), 0, "{}", stopped.stdout);
    assert!(
        stopped.counter("journal_backlog") > 0,
        "with the disk full, the backlog bound never dropped a REQUEST:\n{}",
        stopped.stdout
    );

    // Every ACK that left lessor, in both phases, is bound in the journal.
    let acks = captured_acks(&pcap);
    // The capture is the independent witness, and it must have seen most ACKs for the check
    // below to mean something. Not every one: in full-suite runs on 2 cores (and on the
    // previous build too) dumpcap lost a fraction of a second of one perfdhcp run, 2-42 of
    // ~270 ACKs, with the packets after the gap captured, so waiting longer does not bring
    // them back. Every ACK it did see must be bound.
    assert!(
        acks.len() as u64 * 4 >= (full_acks + after) * 3,
        "tshark saw {} ACKs, perfdhcp received {}; tshark's log:\n{tshark_log}",
        acks.len(),
        full_acks + after
    );
    let mut acked = BTreeMap::new();
    merge_acks(&mut acked, &acks, "disk full test");
    verify_clean(&cfg, &state);
    assert_bound(&dump(&cfg, &state), &acked, "ACKed around a full disk");
    eprintln!(
        "disk full: {offers}/{offers_sent} OFFERs, {full_acks}/{requests} ACKs; space again: \
         {after} ACKs in run {runs} (same pid {pid}); {} ACKs captured, all bound; {}",
        acks.len(),
        stopped.stdout.lines().last().unwrap_or("")
    );
}

// ---------------------------------------------------------------------------------------------
// 5. A damaged journal
// ---------------------------------------------------------------------------------------------

/// Segment `n` of the journal in `state`.
fn segment(state: &Path, n: u64) -> PathBuf {
    state.join("journal").join(format!("{n:016}.log"))
}

/// Offsets of the record frames of a segment (after its 32-byte header: `len u32 LE | crc u32
/// | payload`, as the journal crate documents), up to the zeros that follow the last frame of a
/// preallocated segment.
fn frames(bytes: &[u8]) -> Vec<(usize, usize)> {
    frames_from(bytes, 32, bytes.len())
}

/// The frames of `bytes[start..end]`, up to a preallocated segment's zeros.
fn frames_from(bytes: &[u8], start: usize, end: usize) -> Vec<(usize, usize)> {
    let mut out = Vec::new();
    let mut at = start;
    while at + 8 <= end {
        if bytes[at..end].iter().all(|&b| b == 0) {
            return out;
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        assert!(len > 0 && at + 8 + len <= end, "unexpected frame at {at}");
        out.push((at, len));
        at += 8 + len;
    }
    assert_eq!(at, end, "the file does not end on a frame");
    out
}

#[test]
fn journal_tools_on_a_damaged_journal() {
    let ns = Ns::new(format!("ljdmg-{}", unique()));
    let dir = tempdir();
    let state = dir.path().join("state");
    let config = loopback_config(&state, "10.0.0.0/8", "10.0.0.1-10.255.255.254");
    let cfg = config_file(dir.path(), &config);
    // Two runs, different clients in each; between them an offline compaction folds the
    // first run's segment into a snapshot, so the second run writes segment 2.
    for (run, base) in ["02:05:00:00:00:00", "02:06:00:00:00:00"]
        .iter()
        .enumerate()
    {
        let lessor = Lessor::start(Some(&ns), &config, &[]);
        let out = run_perfdhcp(
            &ns,
            &dir.path().join(format!("perfdhcp{run}.log")),
            &[
                "-R",
                "100000",
                "-n",
                "200",
                "-r",
                "400",
                "-b",
                &format!("mac={base}"),
            ],
        );
        assert!(sent_received(&out, "REQUEST-ACK").1 > 0, "{out}");
        lessor.stop().assert_success();
        if run == 0 {
            let out = lessor_tool(&cfg, &["journal", "compact", "--state-dir", &pstr(&state)]);
            assert!(out.status.success(), "{}", text(&out.stderr));
        }
    }
    verify_clean(&cfg, &state);
    let before = dump(&cfg, &state);
    let snap = state
        .join("journal")
        .join(format!("snapshot-{:016}.snap", 1));
    assert!(snap.is_file(), "no snapshot of segment 1");
    assert!(
        segment(&state, 2).is_file(),
        "the second run wrote no segment 2"
    );
    assert!(!segment(&state, 3).is_file(), "more segments than runs");

    // Flip one byte in the middle of the payload of the middle record of the snapshot.
    let mut bytes = fs::read(&snap).expect("reading the snapshot");
    let snap_frames = frames_from(&bytes, 24, bytes.len() - 24);
    assert!(
        snap_frames.len() > 10,
        "the snapshot holds only {} records",
        snap_frames.len()
    );
    let total_records =
        snap_frames.len() + frames(&fs::read(segment(&state, 2)).expect("reading segment 2")).len();
    let (off, len) = snap_frames[snap_frames.len() / 2];
    bytes[off + 8 + len / 2] ^= 0x5a;
    fs::write(&snap, &bytes).expect("writing the snapshot");
    let name = snap
        .file_name()
        .expect("name")
        .to_string_lossy()
        .into_owned();
    let at_offset = format!("at byte {off}");

    // Startup refuses, naming the file and the offset (and pointing at repair).
    let out = ns
        .cmd(tool("timeout"))
        .args(["-k", "5", "60", LESSOR, "--config"])
        .arg(&cfg)
        .output()
        .expect("starting lessor");
    let err = text(&out.stderr);
    assert!(
        !out.status.success() && err.contains(&name) && err.contains(&at_offset),
        "lessor on a journal damaged in {name} at byte {off}: exit {}, stderr:\n{err}\nstdout:\n{}",
        out.status,
        text(&out.stdout)
    );

    // verify: non-zero, naming it.
    let out = lessor_tool(&cfg, &["journal", "verify", "--state-dir", &pstr(&state)]);
    let all = format!("{}{}", text(&out.stdout), text(&out.stderr));
    assert!(
        !out.status.success() && all.contains(&name) && all.contains(&format!("offset: {off},")),
        "journal verify on a journal damaged in {name} at byte {off}: {}\n{all}",
        out.status
    );

    // repair: succeeds and reports what it dropped.
    let out = lessor_tool(&cfg, &["journal", "repair", "--state-dir", &pstr(&state)]);
    let report = text(&out.stdout);
    assert!(
        out.status.success(),
        "journal repair failed ({}):\n{report}{}",
        out.status,
        text(&out.stderr)
    );
    let dropped = report
        .split("dropped:")
        .nth(1)
        .unwrap_or_else(|| panic!("repair reported no dropped range:\n{report}"));
    assert!(
        dropped.contains(&name) && dropped.lines().any(|l| l.trim() == format!("{off},")),
        "repair did not report dropping {name} at {off}:\n{report}"
    );
    assert!(
        report.contains(&format!("salvaged: {}", total_records - 1)),
        "{total_records} records, one damaged: repair should salvage the rest:\n{report}"
    );
    verify_clean(&cfg, &state);

    // lessor starts and replays the rest: every lease but (at most) the damaged record's.
    let lessor = Lessor::start(Some(&ns), &config, &[]);
    let replay = replay_line(&lessor);
    lessor.stop().assert_success();
    assert_eq!(replay.records, total_records as u64 - 1, "{}", replay.line);
    let after = dump(&cfg, &state);
    let lost: Vec<_> = before.keys().filter(|a| !after.contains_key(a)).collect();
    assert!(
        lost.len() <= 1 && after.iter().all(|(a, d)| before.get(a) == Some(d)),
        "repair should lose at most the damaged record's lease; lost {lost:?}"
    );
    assert!(
        replay.live + 1 >= before.len() as u64 && replay.live == after.len() as u64,
        "{} leases before the damage; {}",
        before.len(),
        replay.line
    );
    eprintln!(
        "damaged {name} at byte {off}: startup refused, verify failed, repair salvaged {} of \
         {total_records}; lost {lost:?}; restart: {}",
        total_records - 1,
        replay.line
    );
}
