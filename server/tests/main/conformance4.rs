//! DHCPv4 protocol rules through the whole server: this test is the relay (giaddr 127.0.0.1) on
//! a namespace's loopback, lessor runs in test mode on port 6767 and answers to the source.
//!
//! * An INIT-REBOOT REQUEST from a client lessor has no record of gets no answer (RFC 2131
//!   §4.3.2), nor does a DHCPINFORM without ciaddr (§4.4.3); both are counted.
//! * `next_server`, `server_hostname` and `boot_file_name` reach the BOOTP header of an OFFER.
//! * `bootp_dynamic`: a BOOTP client gets a pool address for good, and still holds it after a
//!   restart (the binding was journaled).

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::path::Path;
use std::time::Duration;

use dhcproto::v4::{DhcpOption, Message, MessageType, OptionCode};
use dhcproto::{Decodable, Decoder};

use crate::common::{Lessor, Ns, tempdir, unique};

const SERVER: SocketAddrV4 = SocketAddrV4::new(Ipv4Addr::LOCALHOST, 6767);

/// One subnet reached through relay 127.0.0.1 with a two-address pool, boot fields and
/// dynamic BOOTP, its state in `state`.
fn config(state: &Path) -> String {
    format!(
        r#"port: 6767
state_dir: {}
workers: 2
v4:
  lease_time: 3600
  bootp_dynamic: true
  next_server: 10.231.0.9
  server_hostname: boot.example.test
  boot_file_name: pxelinux.0
  subnets:
    - subnet: 10.231.0.0/24
      relays: [ 127.0.0.1 ]
      pools: [ "10.231.0.100-10.231.0.101" ]
      options: {{ routers: [10.231.0.1] }}
"#,
        state.display()
    )
}

/// A relayed BOOTREQUEST from client `mac_last`: message type `kind` (None: plain BOOTP),
/// `ciaddr`, and `opts`.
fn request(mac_last: u8, kind: Option<u8>, ciaddr: Ipv4Addr, opts: &[(u8, &[u8])]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[0] = 1; // BOOTREQUEST
    b[1] = 1; // Ethernet
    b[2] = 6;
    b[3] = 1; // one relay hop
    b[4..8].copy_from_slice(&[0x4c, 0x53, 0, mac_last]);
    b[12..16].copy_from_slice(&ciaddr.octets());
    b[24..28].copy_from_slice(&Ipv4Addr::LOCALHOST.octets());
    b[28..34].copy_from_slice(&[2, 0x44, 0, 0, 0, mac_last]);
    b.extend_from_slice(&[99, 130, 83, 99]);
    if let Some(t) = kind {
        b.extend_from_slice(&[53, 1, t]);
    }
    for (code, v) in opts {
        b.push(*code);
        b.push(u8::try_from(v.len()).expect("short option"));
        b.extend_from_slice(v);
    }
    b.push(255);
    b
}

/// Sends `pkt` and returns the decoded answer with its raw bytes, or None if none comes
/// within a second.
fn ask(sock: &UdpSocket, pkt: &[u8]) -> Option<(Message, Vec<u8>)> {
    sock.send_to(pkt, SERVER).expect("sending to lessor");
    let mut buf = [0u8; 1500];
    match sock.recv(&mut buf) {
        Ok(n) => {
            let raw = buf[..n].to_vec();
            let msg = Message::decode(&mut Decoder::new(&raw)).expect("lessor's reply decodes");
            Some((msg, raw))
        }
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
            ) =>
        {
            None
        }
        Err(e) => panic!("receiving from lessor: {e}"),
    }
}

fn relay_socket() -> UdpSocket {
    let sock = UdpSocket::bind("127.0.0.1:0").expect("binding the relay's socket");
    sock.set_read_timeout(Some(Duration::from_secs(1)))
        .expect("timeout");
    sock
}

fn kind(m: &Message) -> Option<MessageType> {
    match m.opts().get(OptionCode::MessageType) {
        Some(DhcpOption::MessageType(t)) => Some(*t),
        _ => None,
    }
}

/// The NUL-terminated text of header field `range` of a raw reply.
fn header_text(raw: &[u8], range: std::ops::Range<usize>) -> String {
    let field = &raw[range];
    let end = field.iter().position(|&b| b == 0).unwrap_or(field.len());
    String::from_utf8_lossy(&field[..end]).into_owned()
}

/// DISCOVER then SELECTING REQUEST for client `mac_last`; returns the OFFER's raw bytes and the
/// bound address.
fn dora(sock: &UdpSocket, mac_last: u8) -> (Vec<u8>, Ipv4Addr) {
    let (offer, raw) = ask(
        sock,
        &request(mac_last, Some(1), Ipv4Addr::UNSPECIFIED, &[]),
    )
    .expect("an OFFER");
    assert_eq!(kind(&offer), Some(MessageType::Offer));
    let ip = offer.yiaddr();
    let server_id = match offer.opts().get(OptionCode::ServerIdentifier) {
        Some(DhcpOption::ServerIdentifier(a)) => *a,
        other => panic!("no server identifier in the OFFER: {other:?}"),
    };
    let req = request(
        mac_last,
        Some(3),
        Ipv4Addr::UNSPECIFIED,
        &[(50, &ip.octets()), (54, &server_id.octets())],
    );
    let (ack, _) = ask(sock, &req).expect("an ACK");
    assert_eq!(kind(&ack), Some(MessageType::Ack));
    assert_eq!(ack.yiaddr(), ip);
    (raw, ip)
}

#[test]
fn unknown_init_reboot_and_inform_without_ciaddr_get_no_answer_over_the_wire() {
    let ns = Ns::new(format!("lconf4-{}", unique()));
    let dir = tempdir();
    let lessor = Lessor::start(Some(&ns), &config(dir.path()), &[]);
    let (silent_reboot, silent_inform, known, boot) = ns.run_in(|| {
        let sock = relay_socket();
        // Client 1 never talked to lessor: INIT-REBOOT for an address of the right subnet.
        let reboot = request(
            1,
            Some(3),
            Ipv4Addr::UNSPECIFIED,
            &[(50, &[10, 231, 0, 100])],
        );
        let silent_reboot = ask(&sock, &reboot).is_none();
        // DHCPINFORM with ciaddr 0.0.0.0.
        let inform = request(2, Some(8), Ipv4Addr::UNSPECIFIED, &[]);
        let silent_inform = ask(&sock, &inform).is_none();
        // Client 3 gets a lease; its INIT-REBOOT for it is ACKed (the silence above is the
        // rule, not a deaf server).
        let (offer, ip) = dora(&sock, 3);
        let reboot = request(3, Some(3), Ipv4Addr::UNSPECIFIED, &[(50, &ip.octets())]);
        let known = ask(&sock, &reboot).map(|(m, _)| (kind(&m), m.yiaddr()));
        let boot = (
            Ipv4Addr::from(<[u8; 4]>::try_from(&offer[20..24]).expect("siaddr")),
            header_text(&offer, 44..108),
            header_text(&offer, 108..236),
        );
        (silent_reboot, silent_inform, known.map(|k| (k, ip)), boot)
    });
    assert!(
        silent_reboot,
        "an INIT-REBOOT from an unknown client was answered"
    );
    assert!(silent_inform, "an INFORM without ciaddr was answered");
    let ((reply, yiaddr), ip) = known.expect("the known client's INIT-REBOOT was answered");
    assert_eq!((reply, yiaddr), (Some(MessageType::Ack), ip));
    assert_eq!(
        boot,
        (
            Ipv4Addr::new(10, 231, 0, 9),
            "boot.example.test".to_owned(),
            "pxelinux.0".to_owned()
        ),
        "siaddr, sname and file of the OFFER"
    );
    let stopped = lessor.stop();
    stopped.assert_success();
    assert_eq!(stopped.counter("unknown_client"), 1, "{}", stopped.stdout);
    assert_eq!(
        stopped.counter("inform_without_ciaddr"),
        1,
        "{}",
        stopped.stdout
    );
}

#[test]
fn a_dynamic_bootp_lease_survives_a_restart() {
    let ns = Ns::new(format!("lconf4b-{}", unique()));
    let dir = tempdir();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).expect("creating the state directory");
    let cfg = config(&state);

    let lessor = Lessor::start(Some(&ns), &cfg, &[]);
    let first = ns.run_in(|| {
        let sock = relay_socket();
        let (reply, raw) =
            ask(&sock, &request(7, None, Ipv4Addr::UNSPECIFIED, &[])).expect("a BOOTP reply");
        assert_eq!(kind(&reply), None, "a BOOTP reply has no message type");
        assert_eq!(header_text(&raw, 108..236), "pxelinux.0");
        reply.yiaddr()
    });
    assert!(
        (Ipv4Addr::new(10, 231, 0, 100)..=Ipv4Addr::new(10, 231, 0, 101)).contains(&first),
        "{first} is not from the pool"
    );
    let stopped = lessor.stop();
    stopped.assert_success();

    // Same state directory: the journal brings the infinite lease back.
    let lessor = Lessor::start(Some(&ns), &cfg, &[]);
    let (other, third, again) = ns.run_in(|| {
        let sock = relay_socket();
        // Two addresses in the pool, one held for good: other clients get the other one and
        // then nothing, before the BOOTP client is back.
        let (_, other) = dora(&sock, 8);
        let third =
            ask(&sock, &request(9, Some(1), Ipv4Addr::UNSPECIFIED, &[])).map(|(m, _)| m.yiaddr());
        let again =
            ask(&sock, &request(7, None, Ipv4Addr::UNSPECIFIED, &[])).map(|(m, _)| m.yiaddr());
        (other, third, again)
    });
    assert_eq!(
        again,
        Some(first),
        "the BOOTP client's address after the restart"
    );
    assert_ne!(
        other, first,
        "the BOOTP address was handed to another client"
    );
    assert_eq!(third, None, "the pool should be exhausted, got {third:?}");
    let stopped = lessor.stop();
    stopped.assert_success();
}
