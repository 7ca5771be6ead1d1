//! Operating lessor through its control server: `/ready` while a large journal replays,
//! `dhcp-disable` / `dhcp-enable` against perfdhcp, and the JSON shapes of Kea's own control
//! agent (Debian's kea-ctrl-agent 2.2 with kea-dhcp4) side by side with lessor's.

use std::fmt::Write as _;
use std::fs;
use std::io::{Read, Write};
use std::path::Path;
use std::process::{Child, Command};
use std::thread;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::common::{
    LESSOR, Lessor, Ns, heavy_turn, perfdhcp_report, run_logged, spawn_logged, tempdir, tool,
    unique, wait_until,
};
use crate::control::CONFIG;
use crate::kea_client::{command, http, result, state_dir};

/// The control server's address inside each test's own namespace.
const CONTROL: &str = "http://127.0.0.1:8067";

/// `GET path` on `url`: the status and body, or `None` while nothing answers there yet (not
/// listening, or a connection the server dropped while starting).
fn try_get(url: &str, path: &str) -> Option<(u16, String)> {
    let addr = url.strip_prefix("http://")?;
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(30))).ok()?;
    let req = format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let status = out.split_whitespace().nth(1)?.parse().ok()?;
    Some((status, out.split_once("\r\n\r\n")?.1.to_owned()))
}

/// A Kea memfile (`leases4.csv`) of `n` leases in 10.64.0.0/10, bound for a day.
fn kea_lease_file(path: &Path, n: u32) {
    let expire = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 86_400;
    let mut text = String::with_capacity(n as usize * 80);
    text.push_str(
        "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,\
         state,user_context\n",
    );
    for i in 0..n {
        let [_, b, c, d] = i.to_be_bytes();
        let addr = std::net::Ipv4Addr::from(u32::from(std::net::Ipv4Addr::new(10, 64, 0, 1)) + i);
        let _ = writeln!(
            text,
            "{addr},02:00:00:{b:02x}:{c:02x}:{d:02x},,86400,{expire},1,0,0,,0,"
        );
    }
    fs::write(path, text).expect("writing the lease file");
}

#[test]
fn ready_is_503_while_a_large_journal_replays_and_200_after() {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("lrdy-{}", unique()));
    let (dir, state) = state_dir();
    let config = format!(
        r#"port: 6767
state_dir: {}
workers: 2
control: {{ listen: "127.0.0.1:8067" }}
v4:
  subnets:
    - subnet: 10.64.0.0/10
      pools: [ "10.64.0.1-10.127.255.254" ]
      relays: [ 127.0.0.1 ]
"#,
        state.display()
    );
    let cfg = dir.path().join("lessor.yaml");
    fs::write(&cfg, &config).unwrap();
    // 200,000 leases: a replay long enough to be seen, seconds to write.
    let leases = 200_000;
    let csv = dir.path().join("leases4.csv");
    kea_lease_file(&csv, leases);
    let out = Command::new(tool("timeout"))
        .args(["-k", "5", "120", LESSOR, "--config"])
        .arg(&cfg)
        .args(["journal", "import-kea"])
        .arg(&csv)
        .arg("--state-dir")
        .arg(&state)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "journal import-kea: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // Poll /ready from inside the namespace while lessor starts: a 503 (replaying) must come
    // before the first 200.
    let path = format!("/var/run/netns/{}", ns.name());
    let poller = thread::spawn(move || {
        let file = fs::File::open(&path).unwrap();
        nix::sched::setns(&file, nix::sched::CloneFlags::CLONE_NEWNET).unwrap();
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut seen = Vec::new();
        while Instant::now() < deadline {
            // None: nothing answers yet, lessor is being started.
            if let Some((status, body)) = try_get(CONTROL, "/ready") {
                if seen.last().map(|(s, _)| *s) != Some(status) {
                    seen.push((status, body));
                }
                if status == 200 {
                    break;
                }
            }
            thread::sleep(Duration::from_millis(5));
        }
        seen
    });
    let lessor = Lessor::start(Some(&ns), &config, &[]);
    let seen = poller.join().unwrap();
    let statuses: Vec<u16> = seen.iter().map(|(s, _)| *s).collect();
    assert_eq!(
        statuses,
        [503, 200],
        "/ready answered, in turn: {seen:?}\n{}",
        lessor.stdout()
    );
    assert!(seen[0].1.contains("starting"), "{seen:?}");
    let line = lessor.stdout_line("leases live");
    assert!(line.contains(&format!("{leases} leases live")), "{line}");
    lessor.stop().assert_success();
}

/// perfdhcp: `n` new clients relayed from 127.0.0.1; returns (DISCOVERs sent, OFFERs got,
/// its output).
fn perfdhcp(ns: &Ns, dir: &Path, n: u32, log: &str) -> (u64, u64, String) {
    let mut cmd = ns.timed("perfdhcp");
    let args =
        format!("-4 -g single -l 127.0.0.1 -N 6767 -L 6768 -r 50 -R {n} -n {n} -p 4 127.0.0.1");
    cmd.args(args.split(' '));
    let (status, out) = run_logged(&mut cmd, &dir.join(log));
    assert!(matches!(status.code(), Some(0 | 3)), "perfdhcp: {out}");
    let report = perfdhcp_report(&out);
    let exchange = report
        .get("DISCOVER-OFFER")
        .unwrap_or_else(|| panic!("no DISCOVER-OFFER in perfdhcp's report:\n{out}"));
    (exchange["sent packets"], exchange["received packets"], out)
}

/// Runs perfdhcp for 5 new clients: (DISCOVERs sent, OFFERs it got, OFFERs lessor counts as
/// sent meanwhile, its output). perfdhcp now and then misses a reply lessor sent, so what
/// lessor sent is judged by lessor's own counter.
fn served(ns: &Ns, dir: &Path, log: &str) -> (u64, u64, u64, String) {
    let offers = r#"lessor_packets_sent_total{family="v4",type="offer"}"#;
    let before = ns.run_in(move || metric(CONTROL, offers));
    let (sent, got, out) = perfdhcp(ns, dir, 5, log);
    let after = ns.run_in(move || metric(CONTROL, offers));
    (sent, got, after - before, out)
}

/// The value of the exposition line that starts with `series` (0 when there is none).
fn metric(url: &str, series: &str) -> u64 {
    let (status, text) = http(url, "GET", "/metrics", false, b"");
    assert_eq!(status, 200, "{text}");
    text.lines()
        .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or(0)
}

#[test]
fn dhcp_disable_drops_every_request_until_enabled_or_max_period() {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("ldis-{}", unique()));
    let config = CONFIG.replace("127.0.0.1:0", "127.0.0.1:8067");
    let lessor = Lessor::start(Some(&ns), &config, &[]);
    let dir = lessor.dir().to_owned();
    let disabled = r#"lessor_packets_dropped_total{family="v4",reason="disabled"}"#;

    let off = ns.run_in(|| {
        let off = command(
            CONTROL,
            json!({"command": "dhcp-disable", "service": ["dhcp4"]}),
        );
        assert_eq!(result(&off), 0, "{off}");
        assert_eq!(off["text"], "DHCPv4 service disabled", "{off}");
        let (status, body) = http(CONTROL, "GET", "/ready", false, b"");
        assert_eq!(status, 503, "{body}");
        assert!(body.contains("disabled"), "{body}");
        command(CONTROL, json!({"command": "status-get"}))
    });
    assert_eq!(
        off["arguments"]["dhcp-state"]["disabled-by-user"], true,
        "{off}"
    );
    let (sent, got, offered, out) = served(&ns, &dir, "disabled.log");
    assert!(
        sent >= 5 && got == 0 && offered == 0,
        "sent {sent}, got {got}, lessor offered {offered} while disabled:\n{out}"
    );
    let dropped = ns.run_in(move || metric(CONTROL, disabled));
    assert!(
        dropped >= sent,
        "{dropped} dropped as disabled of {sent} sent"
    );

    ns.run_in(|| {
        let on = command(CONTROL, json!({"command": "dhcp-enable"}));
        assert_eq!(result(&on), 0, "{on}");
        assert_eq!(http(CONTROL, "GET", "/ready", false, b"").0, 200);
    });
    let (sent, got, offered, out) = served(&ns, &dir, "enabled.log");
    assert!(
        got > 0 && offered == sent,
        "sent {sent}, got {got}, lessor offered {offered} once enabled:\n{out}"
    );
    let after = ns.run_in(move || metric(CONTROL, disabled));
    assert_eq!(
        after, dropped,
        "nothing is dropped as disabled once enabled"
    );

    // max-period: disabled now, serving again by itself a second later.
    let timed = ns.run_in(|| {
        let off = command(
            CONTROL,
            json!({"command": "dhcp-disable", "arguments": {"max-period": 1, "origin": "user"}}),
        );
        assert_eq!(off["text"], "DHCP service disabled for 1 seconds", "{off}");
        let status = command(CONTROL, json!({"command": "status-get"}));
        assert_eq!(
            status["arguments"]["dhcp-state"]["globally-disabled"], true,
            "{status}"
        );
        let bad = command(
            CONTROL,
            json!({"command": "dhcp-disable", "arguments": {"max-period": "1"}}),
        );
        assert_eq!(result(&bad), 1, "{bad}");
        assert!(
            bad["text"].as_str().unwrap().contains("'max-period'"),
            "{bad}"
        );
        wait_until(Duration::from_secs(30), "/ready after max-period", || {
            (http(CONTROL, "GET", "/ready", false, b"").0 == 200).then_some(())
        });
        command(CONTROL, json!({"command": "status-get"}))
    });
    assert_eq!(
        timed["arguments"]["dhcp-state"]["disabled-by-user"], false,
        "{timed}"
    );
    let (sent, got, offered, out) = served(&ns, &dir, "re-enabled.log");
    assert!(
        got > 0 && offered == sent,
        "sent {sent}, got {got}, lessor offered {offered} after max-period:\n{out}"
    );
    lessor.stop().assert_success();
}

/// A Kea daemon of this test, killed (by its PID) when dropped.
struct Daemon(Child);

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What differs between Kea's `kea` and lessor's `ours` at `path`: a key Kea has that lessor
/// lacks (or, with `exact`, one lessor adds), or a value of another JSON type. Lists are
/// compared by their first items.
fn shape(path: &str, kea: &Value, ours: &Value, exact: bool, out: &mut Vec<String>) {
    fn kind(v: &Value) -> &'static str {
        match v {
            Value::Null => "null",
            Value::Bool(_) => "bool",
            Value::Number(_) => "number",
            Value::String(_) => "string",
            Value::Array(_) => "list",
            Value::Object(_) => "map",
        }
    }
    match (kea, ours) {
        (Value::Object(k), Value::Object(o)) => {
            for (key, v) in k {
                match o.get(key) {
                    Some(w) => shape(&format!("{path}.{key}"), v, w, exact, out),
                    None => out.push(format!("{path}: no {key:?}")),
                }
            }
            if exact {
                for key in o.keys().filter(|key| !k.contains_key(*key)) {
                    out.push(format!("{path}: {key:?}, which Kea has not"));
                }
            }
        }
        (Value::Array(k), Value::Array(o)) => {
            if let (Some(v), Some(w)) = (k.first(), o.first()) {
                shape(&format!("{path}[0]"), v, w, exact, out);
            }
        }
        _ if kind(kea) != kind(ours) => {
            out.push(format!("{path}: {} in Kea, {} here", kind(kea), kind(ours)));
        }
        _ => {}
    }
}

#[test]
fn kea_ctrl_agent_and_lessor_answer_in_the_same_shape() {
    let ns = Ns::new(format!("lkea-{}", unique()));
    let dir = tempdir();
    let d = dir.path().display();
    let hooks = "/usr/lib/x86_64-linux-gnu/kea/hooks/libdhcp_lease_cmds.so";
    assert!(
        Path::new(hooks).exists(),
        "{hooks} is missing (Debian's kea-dhcp4-server ships it)"
    );
    fs::write(
        dir.path().join("dhcp4.json"),
        format!(
            r#"{{"Dhcp4": {{
  "interfaces-config": {{"interfaces": []}},
  "control-socket": {{"socket-type": "unix", "socket-name": "{d}/dhcp4.sock"}},
  "lease-database": {{"type": "memfile", "persist": true, "name": "{d}/leases4.csv"}},
  "hooks-libraries": [{{"library": "{hooks}"}}],
  "subnet4": [{{"id": 7, "subnet": "10.233.0.0/16", "pools": [{{"pool": "10.233.0.1-10.233.255.254"}}]}}],
  "loggers": [{{"name": "kea-dhcp4", "output_options": [{{"output": "{d}/dhcp4.log"}}], "severity": "INFO"}}]
}}}}"#
        ),
    )
    .unwrap();
    fs::write(
        dir.path().join("agent.json"),
        format!(
            r#"{{"Control-agent": {{
  "http-host": "127.0.0.1", "http-port": 8000,
  "control-sockets": {{"dhcp4": {{"socket-type": "unix", "socket-name": "{d}/dhcp4.sock"}}}},
  "loggers": [{{"name": "kea-ctrl-agent", "output_options": [{{"output": "{d}/agent.log"}}], "severity": "INFO"}}]
}}}}"#
        ),
    )
    .unwrap();
    let kea = |program: &str, conf: &str, extra: &[&str]| {
        let mut cmd = ns.cmd(tool(program));
        cmd.arg("-c").arg(dir.path().join(conf)).args(extra);
        cmd.env("KEA_PIDFILE_DIR", dir.path())
            .env("KEA_LOCKFILE_DIR", dir.path());
        Daemon(spawn_logged(
            &mut cmd,
            &dir.path().join(format!("{program}.out")),
        ))
    };
    let _dhcp4 = kea("kea-dhcp4", "dhcp4.json", &["-p", "16767", "-P", "16768"]);
    let _agent = kea("kea-ctrl-agent", "agent.json", &[]);
    let kea_url = "http://127.0.0.1:8000";

    let lessor_config = CONFIG.replace("127.0.0.1:0", "127.0.0.1:8067");
    let lessor = Lessor::start(Some(&ns), &lessor_config, &[]);
    let mut cmd = ns.timed("perfdhcp");
    let args = "-4 -g single -l 127.0.0.1 -N 6767 -L 6768 -r 50 -R 3 -n 3 -p 4 127.0.0.1";
    cmd.args(args.split(' '));
    let (status, out) = run_logged(&mut cmd, &dir.path().join("perfdhcp.log"));
    assert!(matches!(status.code(), Some(0 | 3)), "perfdhcp: {out}");

    let dir_path = dir.path().to_owned();
    let diffs = ns.run_in(move || {
        // Kea's agent is up once it answers; then give it one lease like perfdhcp's.
        let kea_cmd = |cmd: Value| {
            let (status, body) = http(kea_url, "POST", "/", false, cmd.to_string().as_bytes());
            assert_eq!(status, 200, "Kea: {cmd}: {body}");
            let v: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
            v
        };
        wait_until(
            Duration::from_secs(30),
            "kea-ctrl-agent and kea-dhcp4",
            || {
                try_get(kea_url, "/")?;
                let (_, body) = http(
                    kea_url,
                    "POST",
                    "/",
                    false,
                    br#"{"command":"version-get","service":["dhcp4"]}"#,
                );
                body.contains("\"result\": 0").then_some(())
            },
        );
        let added = kea_cmd(
            json!({"command": "lease4-add", "service": ["dhcp4"], "arguments": {
            "ip-address": "10.233.0.5", "hw-address": "1a:1b:1c:1d:1e:1f",
            "client-id": "01:1a:1b:1c:1d:1e:1f"}}),
        );
        assert_eq!(
            added[0]["result"],
            0,
            "{added}\n{}",
            fs::read_to_string(dir_path.join("dhcp4.log")).unwrap_or_default()
        );

        let mut diffs = Vec::new();
        for (name, exact) in [
            ("version-get", true),
            ("status-get", false),
            ("statistic-get-all", false),
            ("lease4-get-all", true),
            ("list-commands", false),
        ] {
            let cmd = json!({"command": name, "service": ["dhcp4"]});
            let theirs = kea_cmd(cmd.clone());
            let ours = {
                let (status, body) = http(CONTROL, "POST", "/", true, cmd.to_string().as_bytes());
                assert_eq!(status, 200, "{body}");
                serde_json::from_str::<Value>(&body).unwrap()
            };
            assert_eq!(
                (theirs[0]["result"].clone(), ours[0]["result"].clone()),
                (json!(0), json!(0)),
                "{name}: Kea {theirs}, lessor {ours}"
            );
            // The answer itself: the same keys exactly (Kea leaves out "text" where it has
            // none, and so does lessor).
            let keys = |v: &Value| {
                v[0].as_object()
                    .unwrap()
                    .keys()
                    .cloned()
                    .collect::<Vec<_>>()
            };
            if keys(&theirs) != keys(&ours) {
                diffs.push(format!(
                    "{name}: answer keys {:?} in Kea, {:?} here",
                    keys(&theirs),
                    keys(&ours)
                ));
            }
            let (k, o) = (&theirs[0]["arguments"], &ours[0]["arguments"]);
            match name {
                // Kea keeps statistics lessor has no counterpart of; every one lessor gives is
                // Kea's, in Kea's shape.
                "statistic-get-all" => {
                    for (stat, v) in o.as_object().unwrap() {
                        match k.get(stat) {
                            Some(kv) => shape(&format!("{name}.{stat}"), kv, v, true, &mut diffs),
                            None => diffs.push(format!("{name}: {stat:?} is not one of Kea's")),
                        }
                    }
                    for stat in [
                        "subnet[7].total-addresses",
                        "subnet[7].assigned-addresses",
                        "pkt4-received",
                    ] {
                        if o.get(stat).is_none() {
                            diffs.push(format!("{name}: no {stat:?}"));
                        }
                    }
                }
                // Every command lessor lists is one of Kea's (config-hash-get: of Kea 2.4 on,
                // newer than Debian's 2.2; reservation-*: the host_cmds hook's, which Debian
                // does not ship).
                "list-commands" => {
                    let theirs: Vec<&Value> = k.as_array().unwrap().iter().collect();
                    for c in o.as_array().unwrap() {
                        let hook = c.as_str().is_some_and(|c| c.starts_with("reservation-"));
                        if !theirs.contains(&c) && c != "config-hash-get" && !hook {
                            diffs.push(format!("{name}: {c} is not a Kea command"));
                        }
                    }
                }
                _ => shape(name, k, o, exact, &mut diffs),
            }
        }
        diffs
    });
    assert!(
        diffs.is_empty(),
        "lessor's answers differ from Kea's:\n{}",
        diffs.join("\n")
    );
    lessor.stop().assert_success();
}

#[test]
fn shape_names_missing_keys_added_keys_and_other_types() {
    let kea = json!({"a": 1, "b": {"c": "x"}, "l": [{"d": true}]});
    let mut out = Vec::new();
    shape(
        "t",
        &kea,
        &json!({"a": 2, "b": {"c": "y"}, "l": [{"d": false}]}),
        true,
        &mut out,
    );
    assert!(out.is_empty(), "{out:?}");
    shape(
        "t",
        &kea,
        &json!({"a": "2", "b": {}, "l": [{"d": true, "e": 1}]}),
        true,
        &mut out,
    );
    assert_eq!(
        out,
        [
            "t.a: number in Kea, string here",
            "t.b: no \"c\"",
            "t.l[0]: \"e\", which Kea has not"
        ]
    );
}
