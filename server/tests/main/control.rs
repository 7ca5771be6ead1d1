//! The control server against real clients: its own HTTP, Debian's kea-shell and promtool, with
//! leases made by perfdhcp.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::{Lessor, Ns, heavy_turn, run_logged, tool, unique};

const USER: &str = "ops";
const PASSWORD: &str = "s3cret";

/// perfdhcp relays from 127.0.0.1; the control server asks for credentials.
const CONFIG: &str = r#"port: 6767
state_dir: STATE_DIR
workers: 2
control: { listen: "127.0.0.1:0", user: ops, password: s3cret }
v4:
  lease_time: 3600
  subnets:
    - id: 7
      subnet: 10.233.0.0/16
      pools: [ "10.233.0.1-10.233.255.254" ]
      relays: [ 127.0.0.1 ]
"#;

/// One HTTP/1.1 exchange: `(status, body)`.
fn http(url: &str, method: &str, path: &str, auth: bool, body: &[u8]) -> (u16, String) {
    let addr = url.strip_prefix("http://").expect("an http:// URL");
    let mut s = TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    let mut req = format!(
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n",
        body.len()
    );
    if auth {
        // RFC 7617: base64("ops:s3cret").
        req.push_str("Authorization: Basic b3BzOnMzY3JldA==\r\n");
    }
    req.push_str("\r\n");
    s.write_all(req.as_bytes()).unwrap();
    // A server may answer (413) before it has read a large body; a failed write is fine then.
    let _ = s.write_all(body);
    let mut out = String::new();
    s.read_to_string(&mut out).expect("reading the answer");
    let status = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {out:?}"));
    let body = out.split_once("\r\n\r\n").map_or("", |(_, b)| b).to_owned();
    (status, body)
}

/// Sends a Kea command and returns its one answer.
fn command(url: &str, cmd: Value) -> Value {
    let (status, body) = http(url, "POST", "/", true, cmd.to_string().as_bytes());
    assert_eq!(status, 200, "{cmd}: {body}");
    let answers: Value = serde_json::from_str(&body).unwrap_or_else(|e| panic!("{e}: {body}"));
    assert_eq!(answers.as_array().map(Vec::len), Some(1), "{body}");
    answers[0].clone()
}

fn result(answer: &Value) -> u64 {
    answer["result"]
        .as_u64()
        .unwrap_or_else(|| panic!("{answer}"))
}

#[test]
fn kea_commands_rest_and_metrics_describe_what_perfdhcp_leased() {
    let _turn = heavy_turn();
    let ns = Ns::new(format!("lctl-{}", unique()));
    let lessor = Lessor::start(Some(&ns), CONFIG, &[]);
    let url = lessor.control_url();
    let mut cmd = ns.timed("perfdhcp");
    // 40 new clients at 50/s, relayed from 127.0.0.1 (which selects subnet 7).
    let relay = "-4 -g single -l 127.0.0.1 -N 6767 -L 6768 -r 50 -R 40 -n 40 -p 10 127.0.0.1";
    cmd.args(relay.split(' '));
    let (status, out) = run_logged(&mut cmd, &lessor.dir().join("perfdhcp.log"));
    assert!(matches!(status.code(), Some(0 | 3)), "perfdhcp: {out}");

    let url2 = url.clone();
    let (acks, metrics) = ns.run_in(move || {
        // Probes need no credentials; commands do.
        assert_eq!(http(&url2, "GET", "/health", false, b"").0, 200);
        let (status, body) = http(&url2, "GET", "/ready", false, b"");
        assert_eq!((status, body.contains("\"ready\"")), (200, true), "{body}");
        let (status, body) = http(&url2, "POST", "/", false, br#"{"command":"list-commands"}"#);
        assert_eq!(status, 401, "{body}");
        assert_eq!(http(&url2, "GET", "/v1/leases", false, b"").0, 401);

        let listed = command(&url2, json!({"command": "list-commands"}));
        assert_eq!(result(&listed), 0);
        assert!(listed["arguments"].as_array().unwrap().contains(&json!("lease4-get-page")));

        let all = command(&url2, json!({"command": "lease4-get-all", "service": ["dhcp4"]}));
        assert_eq!(result(&all), 0, "{all}");
        let leases = all["arguments"]["leases"].as_array().unwrap().clone();
        let stats = command(&url2, json!({"command": "statistic-get", "arguments": {"name": "pkt4-ack-sent"}}));
        let acks = stats["arguments"]["pkt4-ack-sent"][0][0].as_u64().unwrap();
        // perfdhcp gives every exchange a new MAC: one lease per ACK.
        assert_eq!(leases.len() as u64, acks, "{all}");
        assert!(acks > 0);
        assert_eq!(all["text"], format!("{acks} IPv4 lease(s) found."));
        for l in &leases {
            assert_eq!(l["subnet-id"], 7, "{l}");
            assert_eq!(l["state"], 0, "{l}");
            assert_eq!(l["valid-lft"], 3600, "{l}");
        }

        // One lease, by address and by its hardware address; a page walk sees every lease once.
        let first = &leases[0];
        let got = command(&url2, json!({"command": "lease4-get", "arguments": {"ip-address": first["ip-address"]}}));
        assert_eq!((result(&got), &got["arguments"]), (0, first), "{got}");
        let by_hw = command(&url2, json!({"command": "lease4-get-by-hw-address", "arguments": {"hw-address": first["hw-address"]}}));
        assert_eq!(by_hw["arguments"]["leases"], json!([first]), "{by_hw}");
        let by_id = command(&url2, json!({"command": "lease4-get", "arguments": {
            "identifier-type": "hw-address", "identifier": first["hw-address"], "subnet-id": 7}}));
        assert_eq!(&by_id["arguments"], first, "{by_id}");
        let mut from = json!("start");
        let mut paged = Vec::new();
        loop {
            let page = command(&url2, json!({"command": "lease4-get-page", "arguments": {"from": from, "limit": 7}}));
            if result(&page) == 3 {
                break;
            }
            let got = page["arguments"]["leases"].as_array().unwrap().clone();
            assert!(got.len() <= 7 && page["arguments"]["count"] == got.len());
            from = got.last().unwrap()["ip-address"].clone();
            paged.extend(got);
        }
        assert_eq!(paged, leases);

        // Errors: unknown command, wrong argument type, nothing found, malformed JSON, a body
        // over 1 MiB.
        let unknown = command(&url2, json!({"command": "lease4-frobnicate"}));
        assert_eq!(result(&unknown), 2, "{unknown}");
        let typed = command(&url2, json!({"command": "lease4-get", "arguments": {"ip-address": 7}}));
        assert_eq!(result(&typed), 1, "{typed}");
        assert!(typed["text"].as_str().unwrap().contains("'ip-address'"), "{typed}");
        let none = command(&url2, json!({"command": "lease4-get", "arguments": {"ip-address": "10.233.255.254"}}));
        assert_eq!(result(&none), 3, "{none}");
        let (status, body) = http(&url2, "POST", "/", true, b"{\"command\": ");
        assert_eq!(status, 400, "{body}");
        assert!(serde_json::from_str::<Value>(&body).is_ok(), "{body}");
        let big = vec![b' '; (1 << 20) + 1];
        assert_eq!(http(&url2, "POST", "/", true, &big).0, 413);

        // REST: the same leases, filtered.
        let (status, body) = http(&url2, "GET", "/v1/leases?family=v4&subnet=7&state=bound", true, b"");
        assert_eq!(status, 200, "{body}");
        let rest: Value = serde_json::from_str(&body).unwrap();
        assert_eq!(rest["leases"].as_array().unwrap().len(), leases.len());
        let (status, body) = http(&url2, "GET", "/v1/leases?colour=blue", true, b"");
        assert_eq!(status, 400, "{body}");
        let path = format!("/v1/leases/{}", first["ip-address"].as_str().unwrap());
        let (status, body) = http(&url2, "GET", &path, true, b"");
        assert_eq!(status, 200, "{body}");
        assert_eq!(serde_json::from_str::<Value>(&body).unwrap()["state"], "bound");

        let (status, metrics) = http(&url2, "GET", "/metrics", false, b"");
        assert_eq!(status, 200);
        let ack_line = format!("lessor_packets_sent_total{{family=\"v4\",type=\"ack\"}} {acks}");
        assert!(metrics.contains(&ack_line), "no {ack_line:?} in\n{metrics}");
        // Every ACK waited for its record's fdatasync (sync: group).
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        };
        assert!(value("lessor_journal_records_total") >= acks, "{metrics}");
        assert!(value("lessor_journal_sync_duration_seconds_count") > 0, "{metrics}");
        (acks, metrics)
    });

    // promtool (Debian's prometheus) finds nothing to complain about.
    let mut promtool = std::process::Command::new(tool("promtool"))
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("starting promtool");
    promtool
        .stdin
        .take()
        .unwrap()
        .write_all(metrics.as_bytes())
        .unwrap();
    let out = promtool.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "promtool check metrics: {}{}\n{metrics}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // kea-shell (Debian's python3-kea-connector) speaks to lessor as to Kea's control agent.
    let port = url.rsplit(':').next().unwrap();
    let mut shell = ns.cmd(tool("kea-shell"));
    shell
        .args(["--host", "127.0.0.1", "--port", port, "--auth-user", USER])
        .args([
            "--auth-password",
            PASSWORD,
            "--service",
            "dhcp4",
            "lease4-get-all",
        ]);
    let (status, out) = run_logged(&mut shell, &lessor.dir().join("kea-shell.log"));
    assert!(status.success(), "kea-shell: {out}");
    let answers: Value = serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(answers[0]["result"], 0, "{out}");
    assert_eq!(
        answers[0]["arguments"]["leases"].as_array().unwrap().len() as u64,
        acks
    );
    lessor.stop().assert_success();
}
