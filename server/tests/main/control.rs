//! The control server against real clients: its own HTTP, Debian's kea-shell and promtool, with
//! leases made by perfdhcp.

use serde_json::{Value, json};

use crate::common::{Lessor, Ns, heavy_turn, run_logged, tool, unique};
use crate::kea_client::{command, http, promtool_check, result};

pub(crate) const USER: &str = "ops";
pub(crate) const PASSWORD: &str = "s3cret";

/// perfdhcp relays from 127.0.0.1; the control server asks for credentials.
pub(crate) const CONFIG: &str = r#"port: 6767
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
        let granted = format!("lessor_allocations_total{{family=\"v4\",kind=\"address\",type=\"new\"}} {acks}");
        assert!(metrics.contains(&granted), "no {granted:?} in\n{metrics}");
        // Every ACK waited for its record's fdatasync (sync: group).
        let value = |name: &str| -> u64 {
            metrics
                .lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
                .unwrap_or_else(|| panic!("no {name} in\n{metrics}"))
        };
        assert!(value("lessor_journal_records_total") >= acks, "{metrics}");
        // Utilisation: one bound record per ACK, in the subnet's CIDR, of a 65534-address pool.
        let subnet = r#"family="v4",subnet="10.233.0.0/16",subnet_id="7",kind="address""#;
        assert_eq!(value(&format!("lessor_leases{{{subnet},state=\"bound\"}}")), acks, "{metrics}");
        assert_eq!(value(&format!("lessor_leases{{{subnet},state=\"expired\"}}")), 0, "{metrics}");
        assert_eq!(value(&format!("lessor_pool_size{{{subnet}}}")), 65534, "{metrics}");
        // Every request handled was timed; none failed to get an address.
        let received = value(r#"lessor_packets_received_total{family="v4"}"#);
        assert_eq!(value(r#"lessor_request_duration_seconds_count{family="v4"}"#), received, "{metrics}");
        let exhausted = r#"lessor_allocation_failures_total{family="v4",reason="pool_exhausted"}"#;
        assert_eq!(value(exhausted), 0, "{metrics}");
        // kea-exporter's utilisation: the same numbers under Kea's statistic names.
        let stats = command(&url2, json!({"command": "statistic-get-all"}));
        assert_eq!(stats["arguments"]["subnet[7].assigned-addresses"][0][0], acks, "{stats}");
        assert_eq!(stats["arguments"]["subnet[7].total-addresses"][0][0], 65534, "{stats}");
        assert!(value("lessor_journal_sync_duration_seconds_count") > 0, "{metrics}");
        (acks, metrics)
    });

    // promtool (Debian's prometheus) finds nothing to complain about.
    promtool_check(&metrics);

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

/// Kea's `lease4-*` writes against a running lessor: a crafted relayed client (giaddr
/// 127.0.0.1) gets what was added, a deleted address goes to another client, conflicts are
/// refused, and adds, updates and deletes survive a crash (each answer came only once its
/// change was durable).
mod writes4 {
    use std::time::Duration;

    use serde_json::{Value, json};

    use crate::common::{Lessor, Ns, unique};
    use crate::kea_client::v4::{Relay, ip};
    use crate::kea_client::{command, config4, listed, result, state_dir, string};

    /// This test's clients' MAC addresses: 02:44:00:00:00:`n`.
    const TAG: u8 = 0x44;

    fn mac(n: u8) -> String {
        crate::kea_client::v4::mac(TAG, n)
    }

    fn add(url: &str, n: u8, last: u8, extra: Value) -> Value {
        let mut args = json!({"ip-address": ip(last), "hw-address": mac(n), "subnet-id": 7});
        args.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        command(url, json!({"command": "lease4-add", "arguments": args}))
    }

    fn get(url: &str, last: u8) -> Value {
        command(
            url,
            json!({"command": "lease4-get", "arguments": {"ip-address": ip(last)}}),
        )
    }

    /// Every lease as `(ip-address, hw-address, valid-lft, hostname)`.
    fn all(url: &str) -> Vec<(String, String, u64, String)> {
        let answer = command(url, json!({"command": "lease4-get-all"}));
        listed(&answer, "leases", |l| {
            let s = |k: &str| string(l, k);
            let lft = l["valid-lft"].as_u64().unwrap();
            (s("ip-address"), s("hw-address"), lft, s("hostname"))
        })
    }

    #[test]
    fn kea_lease4_writes_reach_a_client_and_survive_a_crash() {
        let ns = Ns::new(format!("lwr4-{}", unique()));
        let (_dir, state) = state_dir();
        let cfg = config4(&state, "");
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();

        let before = ns.run_in(move || {
            // Added for client 1, which then gets exactly that address and keeps the name.
            let added = add(&url, 1, 150, json!({"valid-lft": 1800, "hostname": "printer"}));
            assert_eq!(result(&added), 0, "{added}");
            assert_eq!(added["text"], "Lease for address 10.233.0.150, subnet-id 7 added.");
            let got = get(&url, 150);
            assert_eq!((got["arguments"]["valid-lft"].as_u64(), &got["arguments"]["hostname"]), (Some(1800), &json!("printer")), "{got}");
            let relay = Relay::new(TAG);
            assert_eq!(relay.dora(1, None).to_string(), ip(150));
            assert_eq!(get(&url, 150)["arguments"]["hostname"], "printer");

            // The address is client 1's: another add, and another client asking, are refused.
            let twice = add(&url, 2, 150, json!({}));
            assert_eq!((result(&twice), twice["text"].as_str()), (4, Some("IPv4 lease already exists.")), "{twice}");
            assert_ne!(relay.offered(2, Some(&ip(150))).to_string(), ip(150));
            // Arguments of the wrong type or value are named.
            let typed = add(&url, 2, 151, json!({"valid-lft": "long"}));
            assert_eq!(result(&typed), 1, "{typed}");
            assert!(typed["text"].as_str().unwrap().contains("'valid-lft'"), "{typed}");
            let outside = add(&url, 2, 5, json!({}));
            assert_eq!(result(&outside), 1, "{outside}");
            let wrong_subnet = add(&url, 2, 151, json!({"subnet-id": 8}));
            assert!(wrong_subnet["text"].as_str().unwrap().contains("'subnet-id'"), "{wrong_subnet}");

            // Deleted: the address goes to the next client that asks for it.
            let del = command(&url, json!({"command": "lease4-del", "arguments": {"ip-address": ip(150)}}));
            assert_eq!((result(&del), del["text"].as_str()), (0, Some("IPv4 lease deleted.")), "{del}");
            assert_eq!(result(&get(&url, 150)), 3);
            let again = command(&url, json!({"command": "lease4-del", "arguments": {"ip-address": ip(150)}}));
            assert_eq!(result(&again), 3, "{again}");
            // (Client 2 would get its own offer back first: client 8 asks.)
            assert_eq!(relay.offered(8, Some(&ip(150))).to_string(), ip(150));
            // Offered to client 8 now: an add is refused as Kea refuses a busy address.
            let busy = add(&url, 3, 150, json!({}));
            assert_eq!(result(&busy), 4, "{busy}");
            assert!(busy["text"].as_str().unwrap().starts_with("ResourceBusy"), "{busy}");
            assert_eq!(relay.dora(8, Some(&ip(150))).to_string(), ip(150));

            // Update: valid-lft and hostname change; a missing lease is not found unless
            // force-create.
            assert_eq!(result(&add(&url, 3, 160, json!({"valid-lft": 600}))), 0);
            let upd = command(&url, json!({"command": "lease4-update", "arguments": {
                "ip-address": ip(160), "hw-address": mac(3), "valid-lft": 7200, "hostname": "renamed"}}));
            assert_eq!((result(&upd), upd["text"].as_str()), (0, Some("IPv4 lease updated.")), "{upd}");
            let got = get(&url, 160)["arguments"].clone();
            assert_eq!((got["valid-lft"].as_u64(), got["hostname"].as_str()), (Some(7200), Some("renamed")), "{got}");
            let missing = json!({"ip-address": ip(170), "hw-address": mac(4)});
            let upd = command(&url, json!({"command": "lease4-update", "arguments": missing}));
            assert_eq!(result(&upd), 3, "{upd}");
            let mut forced = missing.clone();
            forced["force-create"] = json!(true);
            let upd = command(&url, json!({"command": "lease4-update", "arguments": forced}));
            assert_eq!((result(&upd), upd["text"].as_str()), (0, Some("IPv4 lease added.")), "{upd}");
            let bad = command(&url, json!({"command": "lease4-update", "arguments": {
                "ip-address": ip(170), "hw-address": mac(4), "force-create": "yes"}}));
            assert!(bad["text"].as_str().unwrap().contains("'force-create'"), "{bad}");

            // Added then deleted: gone after the crash too.
            assert_eq!(result(&add(&url, 5, 180, json!({}))), 0);
            let del = command(&url, json!({"command": "lease4-del", "arguments": {
                "identifier-type": "hw-address", "identifier": mac(5), "subnet-id": 7}}));
            assert_eq!(result(&del), 0, "{del}");
            all(&url)
        });
        let want = vec![
            (ip(150), mac(8), 3600, String::new()),
            (ip(160), mac(3), 7200, "renamed".to_owned()),
            (ip(170), mac(4), 3600, String::new()),
        ];
        assert_eq!(before, want);

        // SIGKILL: no shutdown sync. Every answer above waited for its fdatasync.
        lessor.crash();
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();
        ns.run_in(move || {
            assert_eq!(all(&url), want, "after the crash");
            // Client 1 lost its lease to the delete: it does not get .150 back.
            let relay = Relay::new(TAG);
            assert_ne!(relay.offered(1, Some(&ip(150))).to_string(), ip(150));

            // Reclaim: a lease whose time has passed ends (state 2), and with `remove` goes.
            assert_eq!(result(&add(&url, 6, 190, json!({"valid-lft": 1}))), 0);
            std::thread::sleep(Duration::from_millis(2100));
            let rec = command(
                &url,
                json!({"command": "leases-reclaim", "arguments": {"remove": false}}),
            );
            assert_eq!(
                (result(&rec), rec["text"].as_str()),
                (0, Some("Reclamation of expired leases is complete.")),
                "{rec}"
            );
            assert_eq!(get(&url, 190)["arguments"]["state"], 2);
            let rec = command(
                &url,
                json!({"command": "leases-reclaim", "arguments": {"remove": true}}),
            );
            assert_eq!(result(&rec), 0, "{rec}");
            assert_eq!(result(&get(&url, 190)), 3);
            let rec = command(&url, json!({"command": "leases-reclaim", "arguments": {}}));
            assert!(rec["text"].as_str().unwrap().contains("'remove'"), "{rec}");

            // Wipe: one subnet, then nothing left; an unknown subnet is an error.
            let bad = command(
                &url,
                json!({"command": "lease4-wipe", "arguments": {"subnet-id": 99}}),
            );
            assert_eq!(result(&bad), 1, "{bad}");
            let wipe = command(
                &url,
                json!({"command": "lease4-wipe", "arguments": {"subnet-id": 7}}),
            );
            assert_eq!(
                (result(&wipe), wipe["text"].as_str()),
                (0, Some("Deleted 3 IPv4 lease(s) from subnet(s) 7")),
                "{wipe}"
            );
            assert!(all(&url).is_empty());
            let wipe = command(&url, json!({"command": "lease4-wipe"}));
            assert_eq!(result(&wipe), 3, "{wipe}");
        });
        lessor.stop().assert_success();
    }
}

/// Kea's `lease6-*` writes: a relayed rapid-commit SOLICIT (this test is the relay, link
/// address ::1) gets the address added for its IA, a deleted address goes to the next IA
/// hinting at it, and adds, updates and deletes survive a crash.
mod writes6 {
    use std::net::Ipv6Addr;

    use serde_json::json;

    use crate::common::{Lessor, Ns, unique};
    use crate::kea_client::v6::Relay;
    use crate::kea_client::{command, command6 as cmd, config6, listed, result, state_dir, string};

    /// This test's clients' DUIDs: 00:03:00:01:02:34:00:00:00:`n`.
    const TAG: u8 = 0x34;

    fn duid_text(n: u8) -> String {
        crate::kea_client::v6::duid_text(TAG, n)
    }

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    /// Every lease as `(ip-address, type, duid, valid-lft)`.
    fn all(url: &str) -> Vec<(String, String, String, u64)> {
        let answer = command(url, json!({"command": "lease6-get-all"}));
        listed(&answer, "leases", |l| {
            let s = |k: &str| string(l, k);
            (
                s("ip-address"),
                s("type"),
                s("duid"),
                l["valid-lft"].as_u64().unwrap(),
            )
        })
    }

    #[test]
    fn kea_lease6_writes_reach_a_relayed_client_and_survive_a_crash() {
        let ns = Ns::new(format!("lwr6-{}", unique()));
        let (_dir, state) = state_dir();
        let cfg = config6(&state, 0x234);
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();

        let before = ns.run_in(move || {
            let relay = Relay::new(TAG);
            let na = |n: u8| json!({"ip-address": "fd00:234::1050", "duid": duid_text(n), "iaid": 1, "subnet-id": 9});
            let added = cmd(&url, "lease6-add", na(1));
            assert_eq!((result(&added), added["text"].as_str()), (0, Some("Lease for address fd00:234::1050, subnet-id 9 added.")), "{added}");
            assert_eq!(relay.address(1, None), a("fd00:234::1050"));
            let twice = cmd(&url, "lease6-add", na(2));
            assert_eq!((result(&twice), twice["text"].as_str()), (4, Some("IPv6 lease already exists.")), "{twice}");
            assert_ne!(relay.address(2, Some(a("fd00:234::1050"))), a("fd00:234::1050"));
            let typed = cmd(&url, "lease6-add", json!({"ip-address": "fd00:234::1051", "duid": duid_text(3), "iaid": "one"}));
            assert!(typed["text"].as_str().unwrap().contains("'iaid'"), "{typed}");

            // A delegated prefix, in subnet 9 by its pd_pools.
            let pd = json!({"ip-address": "fd00:2340:0:100::", "type": "IA_PD", "prefix-len": 56,
                "duid": duid_text(4), "iaid": 2});
            let added = cmd(&url, "lease6-add", pd);
            assert_eq!((result(&added), added["text"].as_str()), (0, Some("Lease for prefix fd00:2340:0:100::/56, subnet-id 9 added.")), "{added}");
            let got = cmd(&url, "lease6-get", json!({"ip-address": "fd00:2340:0:100::", "type": "IA_PD"}));
            assert_eq!((got["arguments"]["prefix-len"].as_u64(), got["arguments"]["subnet-id"].as_u64()), (Some(56), Some(9)), "{got}");
            let mut upd = na(1);
            upd["valid-lft"] = json!(9000);
            let upd = cmd(&url, "lease6-update", upd);
            assert_eq!((result(&upd), upd["text"].as_str()), (0, Some("IPv6 lease updated.")), "{upd}");
            let got = cmd(&url, "lease6-get", json!({"ip-address": "fd00:234::1050"}));
            assert_eq!(got["arguments"]["valid-lft"].as_u64(), Some(9000), "{got}");

            // Deleted: client 5, hinting at it, gets it.
            let del = cmd(&url, "lease6-del", json!({"ip-address": "fd00:234::1050"}));
            assert_eq!((result(&del), del["text"].as_str()), (0, Some("IPv6 lease deleted.")), "{del}");
            assert_eq!(relay.address(5, Some(a("fd00:234::1050"))), a("fd00:234::1050"));
            // Added and deleted by DUID: gone after the crash too.
            let other = json!({"ip-address": "fd00:234::1060", "duid": duid_text(6), "iaid": 1});
            assert_eq!(result(&cmd(&url, "lease6-add", other)), 0);
            let del = cmd(&url, "lease6-del", json!({"identifier-type": "duid", "identifier": duid_text(6), "iaid": 1, "subnet-id": 9}));
            assert_eq!(result(&del), 0, "{del}");
            let leases = all(&url);
            // Client 2's own binding from above is there too.
            leases.into_iter().filter(|l| l.2 != duid_text(2)).collect::<Vec<_>>()
        });
        // Sorted as text.
        let want = vec![
            (
                "fd00:2340:0:100::".to_owned(),
                "IA_PD".to_owned(),
                duid_text(4),
                3600,
            ),
            (
                "fd00:234::1050".to_owned(),
                "IA_NA".to_owned(),
                duid_text(5),
                3600,
            ),
        ];
        assert_eq!(before, want);

        lessor.crash();
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();
        ns.run_in(move || {
            let after: Vec<_> = all(&url)
                .into_iter()
                .filter(|l| l.2 != duid_text(2))
                .collect();
            assert_eq!(after, want, "after the crash");
            let wipe = cmd(&url, "lease6-wipe", json!({"subnet-id": 9}));
            assert_eq!(
                (result(&wipe), wipe["text"].as_str()),
                (0, Some("Deleted 3 IPv6 lease(s) from subnet(s) 9")),
                "{wipe}"
            );
            assert!(all(&url).is_empty());
        });
        lessor.stop().assert_success();
    }
}
