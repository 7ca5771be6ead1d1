//! Kea's host commands against a running server: a reservation added at run time is what
//! its client gets (DHCPv4 through a relay, DHCPv6 by a relayed rapid-commit SOLICIT), it
//! shows in Kea's shape, survives a crash and a reload, and a deleted one frees its address.

mod v4 {
    use std::path::Path;

    use dhcproto::v4::MessageType;
    use serde_json::{Value, json};

    use crate::common::{Lessor, Ns, heavy_turn, unique};
    use crate::kea_client::v4::{Relay, ip};
    use crate::kea_client::{command, config4, listed, result, state_dir, string, text};

    /// This test's clients' MAC addresses: 02:45:00:00:00:`n`.
    const TAG: u8 = 0x45;

    fn mac(n: u8) -> String {
        crate::kea_client::v4::mac(TAG, n)
    }

    /// Subnet 7 behind relay 127.0.0.1; client 9 has a reservation in the file (outside the
    /// pool); `extra` goes into the subnet (more file reservations).
    fn config(state: &Path, extra: &str) -> String {
        let file = "      reservations:\n        - { hw_address: \"02:45:00:00:00:09\", address: 10.233.0.250 }\n";
        config4(state, &format!("{file}{extra}"))
    }

    fn add(url: &str, reservation: Value) -> Value {
        command(
            url,
            json!({"command": "reservation-add", "service": ["dhcp4"],
                   "arguments": {"reservation": reservation}}),
        )
    }

    fn host(n: u8, last: u8) -> Value {
        json!({"subnet-id": 7, "hw-address": mac(n), "ip-address": ip(last)})
    }

    fn get(url: &str, n: u8) -> Value {
        command(
            url,
            json!({"command": "reservation-get", "service": ["dhcp4"], "arguments": {
                "subnet-id": 7, "identifier-type": "hw-address", "identifier": mac(n)}}),
        )
    }

    fn all(url: &str) -> Vec<String> {
        let a = command(
            url,
            json!({"command": "reservation-get-all", "service": ["dhcp4"],
                   "arguments": {"subnet-id": 7}}),
        );
        assert!(a["arguments"]["hosts"].is_array(), "{a}");
        listed(&a, "hosts", |h| {
            format!("{} {}", string(h, "hw-address"), string(h, "ip-address"))
        })
    }

    /// The shard (of this test's two workers) client `n` is steered to.
    fn shard(n: u8) -> u32 {
        let mut chaddr = [0u8; 16];
        chaddr[..6].copy_from_slice(&[2, TAG, 0, 0, 0, n]);
        lessor_server::v4::steer_hash(&chaddr) % 2
    }

    #[test]
    fn a_reservation_on_an_address_in_use_waits_for_its_holder_in_either_shard() {
        let ns = Ns::new(format!("resv4h-{}", unique()));
        let (_dir, state) = state_dir();
        let lessor = Lessor::start(Some(&ns), &config(&state, ""), &[]);
        let url = lessor.control_url();
        ns.run_in(move || {
            let relay = Relay::new(TAG);
            let holder = 20;
            // One reserved client steered to the holder's shard, one to the other.
            let same = (21..60).find(|&n| shard(n) == shard(holder)).unwrap();
            let other = (21..60).find(|&n| shard(n) != shard(holder)).unwrap();
            for (round, reserved) in [other, same].into_iter().enumerate() {
                let held = relay.dora(holder, None);
                let last = held.octets()[3];
                let a = add(&url, host(reserved, last));
                assert_eq!(result(&a), 0, "{a}");
                // The holder keeps it: the reserved client gets another address meanwhile.
                let got = relay.dora(reserved, None);
                assert_ne!(got, held, "round {round}: {held} given twice");
                // The holder may not renew it: a NAK, and it moves on.
                let renew = relay.request(holder, held).map(|(k, _)| k);
                assert_eq!(renew, Some(MessageType::Nak), "round {round}");
                let moved = relay.dora(holder, None);
                assert_ne!(moved, held, "round {round}");
                // Its move ended its lease there: the address goes to the reserved client.
                assert_eq!(relay.dora(reserved, None), held, "round {round}");
                let a = command(
                    &url,
                    json!({"command": "reservation-del", "service": ["dhcp4"], "arguments": {
                        "subnet-id": 7, "identifier-type": "hw-address",
                        "identifier": mac(reserved)}}),
                );
                assert_eq!(result(&a), 0, "{a}");
            }
        });
        lessor.stop().assert_success();
    }

    #[test]
    fn a_reservation_added_at_run_time_is_served_kept_and_deleted() {
        let ns = Ns::new(format!("resv4-{}", unique()));
        let (_dir, state) = state_dir();
        let cfg = config(&state, "");
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();

        let before = ns.run_in(move || {
            // Inside the pool: the engines are rebuilt with .150 excluded, and client 1 gets it.
            let a = add(
                &url,
                json!({"subnet-id": 7, "hw-address": mac(1), "ip-address": ip(150),
                                      "hostname": "printer"}),
            );
            assert_eq!((result(&a), text(&a)), (0, "Host added."), "{a}");
            let relay = Relay::new(TAG);
            assert_ne!(relay.offered(2, Some(&ip(150))).to_string(), ip(150));
            assert_eq!(relay.dora(1, None).to_string(), ip(150));

            // Kea's shape, by identifier and by address.
            let got = get(&url, 1);
            assert_eq!((result(&got), text(&got)), (0, "Host found."), "{got}");
            assert_eq!(
                got["arguments"],
                json!({
                "hw-address": mac(1), "ip-address": ip(150), "hostname": "printer",
                "next-server": "0.0.0.0", "server-hostname": "", "boot-file-name": "",
                "client-classes": [], "option-data": [], "subnet-id": 7})
            );
            let by_addr = command(
                &url,
                json!({"command": "reservation-get", "arguments": {
                "subnet-id": 7, "ip-address": ip(150)}}),
            );
            assert_eq!(by_addr["arguments"], got["arguments"], "{by_addr}");
            let missing = get(&url, 4);
            assert_eq!((result(&missing), text(&missing)), (3, "Host not found."));

            // The file's and the run-time ones.
            let listed = command(
                &url,
                json!({"command": "reservation-get-all", "arguments": {"subnet-id": 7}}),
            );
            assert_eq!(text(&listed), "2 IPv4 host(s) found.", "{listed}");
            assert_eq!(
                all(&url),
                vec![
                    format!("{} {}", mac(1), ip(150)),
                    format!("{} {}", mac(9), ip(250))
                ]
            );

            // Conflicts: the same client again, the file's address, the file's client.
            let twice = add(&url, host(1, 151));
            assert_eq!(result(&twice), 1, "{twice}");
            assert!(
                text(&twice).starts_with("Host already exists: 'hw-address'"),
                "{twice}"
            );
            let files_addr = add(&url, host(2, 250));
            assert_eq!(result(&files_addr), 1, "{files_addr}");
            assert!(
                text(&files_addr).starts_with("Host already exists: 'ip-address'"),
                "{files_addr}"
            );
            assert!(
                text(&files_addr).contains("in the configuration file"),
                "{files_addr}"
            );
            let files_client = add(&url, host(9, 152));
            assert!(
                text(&files_client).contains("v4.subnets[0].reservations[0]"),
                "{files_client}"
            );

            // Bad arguments are named.
            for (reservation, named) in [
                (
                    json!({"subnet-id": 7, "hw-address": mac(3), "ip-address": "10.9.9.9"}),
                    "'ip-address'",
                ),
                (
                    json!({"subnet-id": 8, "hw-address": mac(3), "ip-address": ip(153)}),
                    "'subnet-id'",
                ),
                (
                    json!({"subnet-id": 7, "hw-address": "zz", "ip-address": ip(153)}),
                    "'hw-address'",
                ),
                (
                    json!({"subnet-id": 7, "hw-address": mac(3), "ip-address": 5}),
                    "'ip-address'",
                ),
                (
                    json!({"hw-address": mac(3), "ip-address": ip(153)}),
                    "'subnet-id'",
                ),
                (
                    json!({"subnet-id": 7, "hw-address": mac(3), "ip-address": ip(153),
                        "option-data": [{"code": 3}]}),
                    "'option-data'",
                ),
                (
                    json!({"subnet-id": 7, "hw-address": mac(3), "ip-address": ip(153),
                        "hostname": "two words"}),
                    "'hostname'",
                ),
                (
                    json!({"subnet-id": 7, "hw-address": mac(3), "client-id": "01:02:03",
                        "ip-address": ip(153)}),
                    "'client-id'",
                ),
            ] {
                let a = add(&url, reservation.clone());
                assert_eq!(result(&a), 1, "{reservation}: {a}");
                assert!(text(&a).contains(named), "{reservation}: {a}");
            }
            let bare = command(&url, json!({"command": "reservation-add", "arguments": {}}));
            assert!(text(&bare).contains("'reservation'"), "{bare}");

            // The file's own reservation is not deleted here.
            let del = command(
                &url,
                json!({"command": "reservation-del", "arguments": {
                "subnet-id": 7, "ip-address": ip(250)}}),
            );
            assert_eq!(result(&del), 1, "{del}");
            assert!(text(&del).contains("configuration file"), "{del}");

            // One more, for a client that has not asked yet: it gets it after the crash.
            assert_eq!(result(&add(&url, host(3, 160))), 0);
            all(&url)
        });
        assert_eq!(before.len(), 3);

        // SIGKILL: the store was synced before each answer.
        lessor.crash();
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();
        let file = lessor.dir().join("lessor.yaml");
        ns.run_in(move || {
            assert_eq!(all(&url), before, "after the crash");
            let relay = Relay::new(TAG);
            assert_eq!(relay.dora(3, None).to_string(), ip(160));

            // A reload keeps them; a reload that writes a conflicting one in the file fails
            // naming both, and the server keeps serving what it served.
            assert_eq!(result(&add(&url, host(4, 170))), 0);
            let r = command(&url, json!({"command": "config-reload"}));
            assert_eq!(result(&r), 0, "{r}");
            assert_eq!(all(&url).len(), 4);
            assert_eq!(relay.dora(4, None).to_string(), ip(170));
            let conflicting = config(&state, "        - { hw_address: \"02:45:00:00:00:05\", address: 10.233.0.160 }\n");
            std::fs::write(&file, conflicting).unwrap();
            let r = command(&url, json!({"command": "config-reload"}));
            assert_eq!(result(&r), 1, "{r}");
            assert!(text(&r).contains("reservations.json: run-time reservation v4[1]"), "{r}");
            assert!(text(&r).contains("v4.subnets[0].reservations[1] in the configuration file"), "{r}");
            assert_eq!(all(&url).len(), 4);
            // config-get shows the configuration as given, without them; config-set of it
            // keeps them.
            let doc = command(&url, json!({"command": "config-get"}))["arguments"].clone();
            let listed = &doc["lessor"]["v4"]["subnets"][0]["reservations"];
            assert_eq!(listed.as_array().map(Vec::len), Some(1), "{doc}");
            let set = command(&url, json!({"command": "config-set", "arguments": doc}));
            assert_eq!(result(&set), 0, "{set}");
            assert_eq!(all(&url).len(), 4);
            // Outside every pool: published without a pause, served at once.
            assert_eq!(result(&add(&url, host(10, 230))), 0);
            assert_eq!(relay.dora(10, None).to_string(), ip(230));

            // Deleted: the next client to ask for the address may have it, and the client
            // whose it was gets a dynamic one.
            assert_eq!(result(&add(&url, host(6, 190))), 0);
            let del = command(&url, json!({"command": "reservation-del", "service": ["dhcp4"],
                "arguments": {"subnet-id": 7, "identifier-type": "hw-address", "identifier": mac(6)}}));
            assert_eq!((result(&del), text(&del)), (0, "Host deleted."), "{del}");
            let again = command(&url, json!({"command": "reservation-del", "service": ["dhcp4"],
                "arguments": {"subnet-id": 7, "identifier-type": "hw-address", "identifier": mac(6)}}));
            assert_eq!((result(&again), text(&again)), (3, "Host not deleted (not found)."));
            assert_ne!(relay.offered(6, None).to_string(), ip(190));
            assert_eq!(relay.offered(7, Some(&ip(190))).to_string(), ip(190));
            assert_eq!(result(&get(&url, 6)), 3);
        });
        lessor.stop().assert_success();
    }

    /// The leases bound now: `(ip-address, hw-address)`.
    fn bound(url: &str) -> Vec<(String, String)> {
        let a = command(url, json!({"command": "lease4-get-all"}));
        let mut out: Vec<(String, String)> = (a["arguments"]["leases"].as_array().into_iter())
            .flatten()
            .filter(|l| l["state"] == 0)
            .map(|l| (string(l, "ip-address"), string(l, "hw-address")))
            .collect();
        out.sort();
        out
    }

    #[test]
    fn a_reservation_inside_the_pool_is_added_and_deleted_under_load_without_a_pause() {
        let _turn = heavy_turn();
        let ns = Ns::new(format!("resin4-{}", unique()));
        let (dir, state) = state_dir();
        let lessor = Lessor::start(Some(&ns), &config(&state, ""), &[]);
        let url = lessor.control_url();

        // A configuration that only adds a reservation inside the pool (.199, client 5) is
        // published: no pause.
        let set_url = url.clone();
        ns.run_in(move || {
            let url = set_url;
            let mut doc = command(&url, json!({"command": "config-get"}))["arguments"].clone();
            let listed = &mut doc["lessor"]["v4"]["subnets"][0]["reservations"];
            listed
                .as_array_mut()
                .expect("the file's reservations")
                .push(json!({"hw_address": mac(5), "address": ip(199)}));
            let a = command(&url, json!({"command": "config-set", "arguments": doc}));
            assert_eq!(result(&a), 0, "{a}");
            assert_eq!(a["arguments"]["pause"], false, "{a}");
            assert_eq!(a["arguments"]["pause-seconds"], Value::Null, "{a}");
            let status = command(&url, json!({"command": "status-get"}));
            let last = &status["arguments"]["last-reload"];
            assert_eq!(last["pause-seconds"], Value::Null, "{status}");
            assert_eq!(last["result"], "success", "{status}");
        });

        // perfdhcp's 400 clients, relayed from 127.0.0.1 too, ask for far more than the
        // pool's 191 addresses: every dynamic one is taken.
        let perf_log = dir.path().join("perfdhcp.log");
        let mut perf = ns.timed("perfdhcp");
        perf.args(
            "-4 -g single -l 127.0.0.1 -N 6767 -L 6769 -r 300 -R 400 -n 800 -p 8 127.0.0.1"
                .split(' '),
        );
        let perf = crate::common::spawn_logged(&mut perf, &perf_log);
        let load_url = url.clone();
        ns.run_in(move || {
            let url = load_url;
            std::thread::sleep(std::time::Duration::from_millis(300));
            // The last address of the pool, reserved while the load runs: no pause.
            let a = add(&url, host(1, 200));
            assert_eq!((result(&a), text(&a)), (0, "Host added."), "{a}");
            assert_eq!(a["arguments"]["pause-seconds"], Value::Null, "{a}");
            let relay = Relay::new(TAG);
            assert_eq!(relay.dora(1, None).to_string(), ip(200));
        });
        crate::common::finish_perfdhcp(perf, &perf_log);

        ns.run_in(move || {
            let leases = bound(&url);
            // The reserved clients hold theirs; the load took every other address.
            assert!(leases.contains(&(ip(200), mac(1))), "{leases:?}");
            let relay = Relay::new(TAG);
            assert_eq!(relay.dora(5, None).to_string(), ip(199));
            let leases = bound(&url);
            let dynamic = leases
                .iter()
                .filter(|(_, hw)| *hw != mac(1) && *hw != mac(5));
            assert!(dynamic.count() >= 150, "the load bound few: {leases:?}");
            assert_eq!(leases.iter().filter(|(a, _)| *a == ip(200)).count(), 1);
            assert_eq!(leases.iter().filter(|(a, _)| *a == ip(199)).count(), 1);

            // Deleted, with no pause: once its lease goes, the address is anyone's.
            let del = command(
                &url,
                json!({"command": "reservation-del", "service": ["dhcp4"],
                "arguments": {"subnet-id": 7, "ip-address": ip(200)}}),
            );
            assert_eq!((result(&del), text(&del)), (0, "Host deleted."), "{del}");
            assert_eq!(del["arguments"]["pause-seconds"], Value::Null, "{del}");
            let gone = command(
                &url,
                json!({"command": "lease4-del",
                "arguments": {"ip-address": ip(200)}}),
            );
            assert_eq!(result(&gone), 0, "{gone}");
            assert_eq!(relay.offered(3, Some(&ip(200))).to_string(), ip(200));
        });
        lessor.stop().assert_success();
    }
}

mod v6 {
    use std::net::Ipv6Addr;

    use serde_json::{Value, json};

    use crate::common::{Lessor, Ns, heavy_turn, unique};
    use crate::kea_client::v6::Relay;
    use crate::kea_client::{command, command6 as cmd, config6, result, state_dir, string, text};

    /// This test's clients' DUIDs: 00:03:00:01:02:35:00:00:00:`n`.
    const TAG: u8 = 0x35;

    fn duid_text(n: u8) -> String {
        crate::kea_client::v6::duid_text(TAG, n)
    }

    #[test]
    fn a_reservation_on_an_address_in_use_waits_for_its_holder() {
        let ns = Ns::new(format!("resv6h-{}", unique()));
        let (_dir, state) = state_dir();
        let lessor = Lessor::start(Some(&ns), &config6(&state, 0x235), &[]);
        let url = lessor.control_url();
        ns.run_in(move || {
            let relay = Relay::new(TAG);
            let holder = 20;
            for reserved in [21, 22] {
                let held = relay.address(holder, None);
                let reservation = json!({"subnet-id": 9, "duid": duid_text(reserved),
                    "ip-addresses": [held.to_string()]});
                let a = cmd(&url, "reservation-add", json!({"reservation": reservation}));
                assert_eq!(result(&a), 0, "{a}");
                // The holder keeps it; the reserved client gets another address meanwhile.
                let got = relay.address(reserved, None);
                assert_ne!(got, held, "client {reserved}: {held} given twice");
                // The holder asks again: it moves to another address, which frees its own.
                let moved = relay.address(holder, Some(held));
                assert_ne!(moved, held, "client {reserved}");
                assert_eq!(relay.address(reserved, None), held, "client {reserved}");
                let del = json!({"subnet-id": 9, "identifier-type": "duid",
                    "identifier": duid_text(reserved)});
                let a = cmd(&url, "reservation-del", del);
                assert_eq!(result(&a), 0, "{a}");
            }
        });
        lessor.stop().assert_success();
    }

    #[test]
    fn a_duid_reserved_at_run_time_gets_its_address_and_prefix() {
        let ns = Ns::new(format!("resv6-{}", unique()));
        let (_dir, state) = state_dir();
        let cfg = config6(&state, 0x235);
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();
        ns.run_in(move || {
            let reservation = json!({"subnet-id": 9, "duid": duid_text(1),
                "ip-addresses": ["fd00:235::1050"], "prefixes": ["fd00:2350:0:500::/56"],
                "hostname": "cpe1"});
            let a = cmd(&url, "reservation-add", json!({"reservation": reservation}));
            assert_eq!((result(&a), text(&a)), (0, "Host added."), "{a}");
            let relay = Relay::new(TAG);
            assert_eq!(
                relay.address_and_prefix(1),
                ("fd00:235::1050".to_owned(), "fd00:2350:0:500::/56".to_owned())
            );
            // Another client gets neither.
            let other = relay.address_and_prefix(2);
            assert_ne!(other.0, "fd00:235::1050");
            assert_ne!(other.1, "fd00:2350:0:500::/56");

            // Kea's shape; the family follows the DUID when no service is named.
            let got = command(&url, json!({"command": "reservation-get", "arguments": {
                "subnet-id": 9, "identifier-type": "duid", "identifier": duid_text(1)}}));
            assert_eq!(got["arguments"], json!({
                "duid": duid_text(1), "ip-addresses": ["fd00:235::1050"],
                "prefixes": ["fd00:2350:0:500::/56"], "hostname": "cpe1",
                "client-classes": [], "option-data": [], "subnet-id": 9}), "{got}");
            let listed = cmd(&url, "reservation-get-all", json!({"subnet-id": 9}));
            assert_eq!(text(&listed), "1 IPv6 host(s) found.", "{listed}");

            // Bad arguments are named.
            for (reservation, named) in [
                (json!({"subnet-id": 9, "duid": duid_text(3),
                        "ip-addresses": ["fd00:235::1051", "fd00:235::1052"]}), "'ip-addresses'"),
                (json!({"subnet-id": 9, "duid": duid_text(3), "ip-addresses": ["fd00:999::1"]}), "'ip-addresses'"),
                (json!({"subnet-id": 9, "hw-address": "02:00:00:00:00:01",
                        "ip-addresses": ["fd00:235::1051"]}), "'hw-address'"),
                (json!({"subnet-id": 9, "duid": duid_text(1), "ip-addresses": ["fd00:235::1051"]}), "Host already exists"),
            ] {
                let a = cmd(&url, "reservation-add", json!({"reservation": reservation}));
                assert_eq!(result(&a), 1, "{reservation}: {a}");
                assert!(text(&a).contains(named), "{reservation}: {a}");
            }

            let del = cmd(&url, "reservation-del", json!({"subnet-id": 9, "ip-address": "fd00:235::1050"}));
            assert_eq!((result(&del), text(&del)), (0, "Host deleted."), "{del}");
            let listed = cmd(&url, "reservation-get-all", json!({"subnet-id": 9}));
            assert_eq!((result(&listed), text(&listed)), (3, "0 IPv6 host(s) found."));
        });
        lessor.stop().assert_success();
    }

    #[test]
    fn an_address_reserved_inside_the_pool_under_load_is_added_and_deleted_without_a_pause() {
        let _turn = heavy_turn();
        let ns = Ns::new(format!("resin6-{}", unique()));
        let (dir, state) = state_dir();
        let lessor = Lessor::start(Some(&ns), &config6(&state, 0x236), &[]);
        let url = lessor.control_url();
        let reserved: Ipv6Addr = "fd00:236::10ff".parse().unwrap();
        // perfdhcp's 600 clients, relayed from ::1, ask for more than the pool's 256.
        let perf_log = dir.path().join("perfdhcp.log");
        let mut perf = ns.timed("perfdhcp");
        perf.args("-6 -A 1 -l ::1 -N 6767 -L 6769 -r 300 -R 600 -n 900 -p 8 ::1".split(' '));
        let perf = crate::common::spawn_logged(&mut perf, &perf_log);
        let load_url = url.clone();
        ns.run_in(move || {
            let url = load_url;
            std::thread::sleep(std::time::Duration::from_millis(300));
            let reservation = json!({"subnet-id": 9, "duid": duid_text(1),
                "ip-addresses": [reserved.to_string()]});
            let a = cmd(&url, "reservation-add", json!({"reservation": reservation}));
            assert_eq!((result(&a), text(&a)), (0, "Host added."), "{a}");
            assert_eq!(a["arguments"]["pause-seconds"], Value::Null, "{a}");
            assert_eq!(Relay::new(TAG).address(1, None), reserved);
        });
        crate::common::finish_perfdhcp(perf, &perf_log);
        ns.run_in(move || {
            let all = cmd(&url, "lease6-get-all", json!({}));
            let leases: Vec<(String, String)> = (all["arguments"]["leases"].as_array())
                .into_iter()
                .flatten()
                .filter(|l| l["state"] == 0)
                .map(|l| (string(l, "ip-address"), string(l, "duid")))
                .collect();
            let at = |a: &Ipv6Addr| leases.iter().filter(|l| l.0 == a.to_string()).count();
            assert_eq!(at(&reserved), 1, "{leases:?}");
            assert!(
                leases.contains(&(reserved.to_string(), duid_text(1))),
                "{leases:?}"
            );
            assert!(leases.len() >= 200, "the load bound few: {}", leases.len());

            let del = cmd(
                &url,
                "reservation-del",
                json!({"subnet-id": 9, "ip-address": reserved.to_string()}),
            );
            assert_eq!((result(&del), text(&del)), (0, "Host deleted."), "{del}");
            assert_eq!(del["arguments"]["pause-seconds"], Value::Null, "{del}");
            let gone = cmd(
                &url,
                "lease6-del",
                json!({"ip-address": reserved.to_string()}),
            );
            assert_eq!(result(&gone), 0, "{gone}");
            assert_eq!(Relay::new(TAG).address(3, Some(reserved)), reserved);
        });
        lessor.stop().assert_success();
    }
}
