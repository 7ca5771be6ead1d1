//! Kea's host commands against a running server: a reservation added at run time is what
//! its client gets (DHCPv4 through a relay, DHCPv6 by a relayed rapid-commit SOLICIT), it
//! shows in Kea's shape, survives a crash and a reload, and a deleted one frees its address.

use serde_json::Value;

use crate::control::{command, result};

fn text(answer: &Value) -> &str {
    answer["text"].as_str().unwrap_or("")
}

mod v4 {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::path::Path;
    use std::time::Duration;

    use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
    use dhcproto::{Decodable, Decoder};
    use serde_json::{Value, json};

    use super::{command, result, text};
    use crate::common::{Lessor, Ns, tempdir, unique};

    /// Subnet 7 behind relay 127.0.0.1; client 9 has a reservation in the file (outside the
    /// pool); `extra` goes into the subnet (more file reservations).
    fn config(state: &Path, extra: &str) -> String {
        format!(
            r#"port: 6767
state_dir: {}
workers: 2
control: {{ listen: "127.0.0.1:0", user: ops, password: s3cret }}
v4:
  lease_time: 3600
  subnets:
    - id: 7
      subnet: 10.233.0.0/16
      pools: [ "10.233.0.10-10.233.0.200" ]
      relays: [ 127.0.0.1 ]
      reservations:
        - {{ hw_address: "02:45:00:00:00:09", address: 10.233.0.250 }}
{extra}"#,
            state.display()
        )
    }

    fn mac(n: u8) -> String {
        format!("02:45:00:00:00:{n:02x}")
    }

    fn ip(last: u8) -> String {
        format!("10.233.0.{last}")
    }

    /// A relayed DISCOVER (1) or REQUEST (3) from client `n`.
    fn packet(n: u8, kind: u8, requested: Option<Ipv4Addr>) -> Vec<u8> {
        let mut b = vec![0u8; 236];
        b[..4].copy_from_slice(&[1, 1, 6, 1]); // BOOTREQUEST, Ethernet, hlen 6, one hop
        b[4..8].copy_from_slice(&[0x72, 0x65, n, kind]);
        b[24..28].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
        b[28..34].copy_from_slice(&[2, 0x45, 0, 0, 0, n]);
        b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
        if let Some(a) = requested {
            b.extend_from_slice(&[50, 4]);
            b.extend_from_slice(&a.octets());
        }
        if kind == 3 {
            b.extend_from_slice(&[54, 4, 127, 0, 0, 1]);
        }
        b.push(255);
        b
    }

    fn ask(sock: &UdpSocket, pkt: &[u8]) -> Message {
        sock.send_to(pkt, "127.0.0.1:6767").expect("sending");
        let mut buf = [0u8; 1500];
        let n = sock.recv(&mut buf).expect("a reply from lessor");
        Message::decode(&mut Decoder::new(&buf[..n])).expect("the reply decodes")
    }

    fn kind(m: &Message) -> Option<MessageType> {
        match m.opts().get(OptionCode::MessageType) {
            Some(DhcpOption::MessageType(t)) => Some(*t),
            _ => None,
        }
    }

    /// What client `n` is offered when it asks for `requested`.
    fn offered(sock: &UdpSocket, n: u8, requested: Option<&str>) -> String {
        let req = requested.map(|r| r.parse().expect("an address"));
        let offer = ask(sock, &packet(n, 1, req));
        assert_eq!(kind(&offer), Some(MessageType::Offer));
        offer.yiaddr().to_string()
    }

    /// DISCOVER then REQUEST for client `n`; the ACKed address.
    fn dora(sock: &UdpSocket, n: u8) -> String {
        let ip = offered(sock, n, None);
        let ack = ask(sock, &packet(n, 3, Some(ip.parse().unwrap())));
        assert_eq!(kind(&ack), Some(MessageType::Ack), "client {n}");
        assert_eq!(ack.yiaddr().to_string(), ip);
        ip
    }

    fn relay_socket() -> UdpSocket {
        let sock = UdpSocket::bind("127.0.0.1:0").expect("binding the relay's socket");
        sock.set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        sock
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
        let mut hosts: Vec<String> = a["arguments"]["hosts"]
            .as_array()
            .unwrap_or_else(|| panic!("{a}"))
            .iter()
            .map(|h| {
                format!(
                    "{} {}",
                    h["hw-address"].as_str().unwrap(),
                    h["ip-address"].as_str().unwrap()
                )
            })
            .collect();
        hosts.sort();
        hosts
    }

    #[test]
    fn a_reservation_added_at_run_time_is_served_kept_and_deleted() {
        let ns = Ns::new(format!("resv4-{}", unique()));
        let dir = tempdir();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("creating the state directory");
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
            let sock = relay_socket();
            assert_ne!(offered(&sock, 2, Some(&ip(150))), ip(150));
            assert_eq!(dora(&sock, 1), ip(150));

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
            let sock = relay_socket();
            assert_eq!(dora(&sock, 3), ip(160));

            // A reload keeps them; a reload that writes a conflicting one in the file fails
            // naming both, and the server keeps serving what it served.
            assert_eq!(result(&add(&url, host(4, 170))), 0);
            let r = command(&url, json!({"command": "config-reload"}));
            assert_eq!(result(&r), 0, "{r}");
            assert_eq!(all(&url).len(), 4);
            assert_eq!(dora(&sock, 4), ip(170));
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
            assert_eq!(dora(&sock, 10), ip(230));

            // Deleted: the next client to ask for the address may have it, and the client
            // whose it was gets a dynamic one.
            assert_eq!(result(&add(&url, host(6, 190))), 0);
            let del = command(&url, json!({"command": "reservation-del", "service": ["dhcp4"],
                "arguments": {"subnet-id": 7, "identifier-type": "hw-address", "identifier": mac(6)}}));
            assert_eq!((result(&del), text(&del)), (0, "Host deleted."), "{del}");
            let again = command(&url, json!({"command": "reservation-del", "service": ["dhcp4"],
                "arguments": {"subnet-id": 7, "identifier-type": "hw-address", "identifier": mac(6)}}));
            assert_eq!((result(&again), text(&again)), (3, "Host not deleted (not found)."));
            assert_ne!(offered(&sock, 6, None), ip(190));
            assert_eq!(offered(&sock, 7, Some(&ip(190))), ip(190));
            assert_eq!(result(&get(&url, 6)), 3);
        });
        lessor.stop().assert_success();
    }
}

mod v6 {
    use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
    use std::path::Path;
    use std::time::Duration;

    use serde_json::{Value, json};

    use super::{command, result, text};
    use crate::common::{Lessor, Ns, tempdir, unique};

    fn config(state: &Path) -> String {
        format!(
            r#"port: 6767
state_dir: {}
workers: 2
control: {{ listen: "127.0.0.1:0", user: ops, password: s3cret }}
v6:
  port: 6767
  rapid_commit: true
  subnets:
    - id: 9
      subnet: fd00:235::/64
      relays: [ "::1" ]
      pools: [ "fd00:235::1000-fd00:235::10ff" ]
      pd_pools: [ {{ prefix: "fd00:2350::/48", delegated_len: 56 }} ]
"#,
            state.display()
        )
    }

    fn duid(n: u8) -> Vec<u8> {
        vec![0, 3, 0, 1, 2, 0x35, 0, 0, 0, n]
    }

    fn duid_text(n: u8) -> String {
        format!("00:03:00:01:02:35:00:00:00:{n:02x}")
    }

    fn put_option(out: &mut Vec<u8>, code: u16, payload: &[u8]) {
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&u16::try_from(payload.len()).unwrap().to_be_bytes());
        out.extend_from_slice(payload);
    }

    /// A RELAY-FORW around a rapid-commit SOLICIT from client `n` for IA_NA 1 and IA_PD 2.
    fn solicit(n: u8) -> Vec<u8> {
        let mut inner = vec![1u8, 0, 0x62, n];
        put_option(&mut inner, 1, &duid(n));
        put_option(&mut inner, 14, &[]);
        put_option(&mut inner, 8, &[0, 0]);
        let mut ia = 1u32.to_be_bytes().to_vec();
        ia.extend_from_slice(&[0; 8]);
        put_option(&mut inner, 3, &ia);
        let mut pd = 2u32.to_be_bytes().to_vec();
        pd.extend_from_slice(&[0; 8]);
        put_option(&mut inner, 25, &pd);
        let mut msg = vec![12u8, 0];
        msg.extend_from_slice(&Ipv6Addr::LOCALHOST.octets());
        let peer: Ipv6Addr = format!("fe80::{n:x}").parse().unwrap();
        msg.extend_from_slice(&peer.octets());
        put_option(&mut msg, 9, &inner);
        msg
    }

    fn options(mut buf: &[u8]) -> Vec<(u16, &[u8])> {
        let mut out = Vec::new();
        while buf.len() >= 4 {
            let code = u16::from_be_bytes([buf[0], buf[1]]);
            let len = usize::from(u16::from_be_bytes([buf[2], buf[3]]));
            out.push((code, &buf[4..4 + len]));
            buf = &buf[4 + len..];
        }
        out
    }

    /// The address and prefix the REPLY to client `n`'s SOLICIT binds.
    fn bound(sock: &UdpSocket, n: u8) -> (String, String) {
        let server = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6767, 0, 0);
        sock.send_to(&solicit(n), server).expect("sending");
        let mut buf = [0u8; 1500];
        let len = sock.recv(&mut buf).expect("a RELAY-REPL");
        let relay = options(&buf[34..len]);
        let inner = relay
            .iter()
            .find(|(c, _)| *c == 9)
            .expect("relay-message")
            .1;
        assert_eq!(inner[0], 7, "a REPLY: {inner:?}");
        let opts = options(&inner[4..]);
        let ia = opts.iter().find(|(c, _)| *c == 3).expect("an IA_NA").1;
        let addr = options(&ia[12..]).into_iter().find(|(c, _)| *c == 5);
        let addr = addr
            .unwrap_or_else(|| panic!("no address in the IA_NA: {ia:?}"))
            .1;
        let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&addr[..16]).unwrap());
        let pd = opts.iter().find(|(c, _)| *c == 25).expect("an IA_PD").1;
        let prefix = options(&pd[12..]).into_iter().find(|(c, _)| *c == 26);
        let prefix = prefix
            .unwrap_or_else(|| panic!("no prefix in the IA_PD: {pd:?}"))
            .1;
        let net = Ipv6Addr::from(<[u8; 16]>::try_from(&prefix[9..25]).unwrap());
        (addr.to_string(), format!("{net}/{}", prefix[8]))
    }

    fn cmd(url: &str, name: &str, args: Value) -> Value {
        command(
            url,
            json!({"command": name, "service": ["dhcp6"], "arguments": args}),
        )
    }

    #[test]
    fn a_duid_reserved_at_run_time_gets_its_address_and_prefix() {
        let ns = Ns::new(format!("resv6-{}", unique()));
        let dir = tempdir();
        let state = dir.path().join("state");
        std::fs::create_dir(&state).expect("creating the state directory");
        let cfg = config(&state);
        let lessor = Lessor::start(Some(&ns), &cfg, &[]);
        let url = lessor.control_url();
        ns.run_in(move || {
            let reservation = json!({"subnet-id": 9, "duid": duid_text(1),
                "ip-addresses": ["fd00:235::1050"], "prefixes": ["fd00:2350:0:500::/56"],
                "hostname": "cpe1"});
            let a = cmd(&url, "reservation-add", json!({"reservation": reservation}));
            assert_eq!((result(&a), text(&a)), (0, "Host added."), "{a}");
            let sock = UdpSocket::bind("[::1]:0").expect("binding the relay's socket");
            sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            assert_eq!(
                bound(&sock, 1),
                ("fd00:235::1050".to_owned(), "fd00:2350:0:500::/56".to_owned())
            );
            // Another client gets neither.
            let other = bound(&sock, 2);
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
}
