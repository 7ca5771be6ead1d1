//! DHCPv6 through a relay on loopback: static prefixes by remote-id (RFC 4649), from the YAML
//! and from the assignments file, and a SIGHUP reload of that file while requests keep coming.
//!
//! The relay is this test: it wraps a client's SOLICIT (rapid commit, one IA_PD) in a
//! RELAY-FORW carrying a remote-id, as a BNG would, and reads the prefix out of the REPLY
//! inside the RELAY-REPL.

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use crate::common::{Lessor, Ns, tempdir, unique};

const ENTERPRISE: u32 = 3561;

/// A subnet selected by the relay's link-address, no dynamic prefix pool (so a client without
/// a static assignment gets NoPrefixAvail), one reservation by remote-id in the YAML and the
/// assignments file `ASSIGNMENTS`.
fn config(assignments: &str) -> String {
    format!(
        r#"port: 6767
state_dir: STATE_DIR
workers: 2
v6:
  port: 6767
  rapid_commit: true
  assignments_file: {assignments}
  subnets:
    - subnet: fd00:233::/64
      relays: [ "::1" ]
      pools: [ "fd00:233::1000-fd00:233::1fff" ]
      reservations:
        - {{ remote_id: "{ENTERPRISE}:CUST1", prefix: "fd00:2311:100::/56" }}
"#
    )
}

fn put_option(out: &mut Vec<u8>, code: u16, payload: &[u8]) {
    out.extend_from_slice(&code.to_be_bytes());
    out.extend_from_slice(
        &u16::try_from(payload.len())
            .expect("short option")
            .to_be_bytes(),
    );
    out.extend_from_slice(payload);
}

/// A RELAY-FORW (hop 0, link-address ::1) with `remote_id` around a rapid-commit SOLICIT from
/// client `n` (DUID-LL) asking for one prefix (IA_PD, IAID 1).
fn relay_forward(n: u32, remote_id: &[u8], xid: u32) -> Vec<u8> {
    let mut inner = vec![1u8]; // SOLICIT
    inner.extend_from_slice(&xid.to_be_bytes()[1..]);
    let mut duid = vec![0, 3, 0, 1, 0x02, 0x33];
    duid.extend_from_slice(&n.to_be_bytes());
    put_option(&mut inner, 1, &duid);
    put_option(&mut inner, 14, &[]); // rapid commit
    put_option(&mut inner, 8, &[0, 0]); // elapsed time
    let mut ia_pd = 1u32.to_be_bytes().to_vec();
    ia_pd.extend_from_slice(&[0; 8]);
    put_option(&mut inner, 25, &ia_pd);

    let mut msg = vec![12u8, 0]; // RELAY-FORW, hop count
    msg.extend_from_slice(&Ipv6Addr::LOCALHOST.octets()); // link-address
    let peer: Ipv6Addr = format!("fe80::{:x}", n + 1).parse().expect("peer");
    msg.extend_from_slice(&peer.octets());
    let mut rid = ENTERPRISE.to_be_bytes().to_vec();
    rid.extend_from_slice(remote_id);
    put_option(&mut msg, 37, &rid);
    put_option(&mut msg, 9, &inner);
    msg
}

/// The options of `buf` as (code, payload), or `None` if a length lies.
fn options(mut buf: &[u8]) -> Option<Vec<(u16, &[u8])>> {
    let mut out = Vec::new();
    while !buf.is_empty() {
        let code = u16::from_be_bytes(buf.get(0..2)?.try_into().ok()?);
        let len = usize::from(u16::from_be_bytes(buf.get(2..4)?.try_into().ok()?));
        out.push((code, buf.get(4..4 + len)?));
        buf = &buf[4 + len..];
    }
    Some(out)
}

/// What the REPLY inside a RELAY-REPL gave the IA_PD: `Ok(prefix/len)` or `Err(status code)`.
fn delegated(reply: &[u8]) -> Result<String, u16> {
    assert_eq!(reply.first(), Some(&13), "not a RELAY-REPL: {reply:?}");
    let relay_opts = options(&reply[34..]).expect("RELAY-REPL options");
    let inner = relay_opts
        .iter()
        .find(|(c, _)| *c == 9)
        .map(|(_, p)| *p)
        .expect("a relay-message option");
    assert_eq!(inner[0], 7, "a REPLY (rapid commit): {inner:?}");
    let opts = options(&inner[4..]).expect("REPLY options");
    let ia_pd = opts
        .iter()
        .find(|(c, _)| *c == 25)
        .map(|(_, p)| *p)
        .expect("an IA_PD in the REPLY");
    for (code, p) in options(&ia_pd[12..]).expect("IA_PD options") {
        match code {
            26 => {
                let len = p[8];
                let addr = Ipv6Addr::from(<[u8; 16]>::try_from(&p[9..25]).expect("prefix"));
                return Ok(format!("{addr}/{len}"));
            }
            13 => return Err(u16::from_be_bytes([p[0], p[1]])),
            _ => {}
        }
    }
    panic!("IA_PD with neither a prefix nor a status: {ia_pd:?}");
}

/// Sends one relayed SOLICIT and waits for its answer (retrying twice, as a relay's client
/// would).
fn ask(sock: &UdpSocket, server: SocketAddrV6, n: u32, remote_id: &[u8]) -> Result<String, u16> {
    let mut buf = [0u8; 1500];
    for attempt in 0..3u32 {
        sock.send_to(&relay_forward(n, remote_id, n * 4 + attempt), server)
            .expect("sending the RELAY-FORW");
        if let Ok(len) = sock.recv(&mut buf) {
            return delegated(&buf[..len]);
        }
    }
    panic!("no answer for client {n} in three tries");
}

#[test]
fn remote_id_assignments_from_yaml_and_csv_and_a_sighup_reload_under_traffic() {
    let ns = Ns::new(format!("lrel6-{}", unique()));
    let dir = tempdir();
    let csv = dir.path().join("assignments.csv");
    std::fs::write(
        &csv,
        "id,address,prefix\nremote-id-str:3561:CUST2,,fd00:2311:200::/56\n",
    )
    .expect("writing the assignments");
    let lessor = Lessor::start(Some(&ns), &config(&csv.display().to_string()), &[]);

    // The relay runs in the namespace too: a socket there, through a thread in it.
    let result = ns.run_in(move || {
        let sock = UdpSocket::bind("[::1]:0").expect("binding the relay's socket");
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let server = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6767, 0, 0);
        let yaml = ask(&sock, server, 1, b"CUST1");
        let file = ask(&sock, server, 2, b"CUST2");
        let before = ask(&sock, server, 3, b"CUST3");
        (yaml, file, before)
    });
    assert_eq!(
        result.0,
        Ok("fd00:2311:100::/56".to_owned()),
        "YAML reservation"
    );
    assert_eq!(
        result.1,
        Ok("fd00:2311:200::/56".to_owned()),
        "assignments file"
    );
    assert_eq!(
        result.2,
        Err(6),
        "CUST3 has no assignment yet: NoPrefixAvail"
    );

    // Add CUST3 and reload while 300 other relayed requests keep coming: every one is
    // answered, and CUST3 gets its prefix afterwards.
    std::fs::write(
        &csv,
        "id,address,prefix\nremote-id-str:3561:CUST2,,fd00:2311:200::/56\n\
         remote-id-str:3561:CUST3,,fd00:2311:300::/56\n",
    )
    .expect("rewriting the assignments");
    let pid = lessor.pid();
    let (during, after) = ns.run_in(move || {
        let sock = UdpSocket::bind("[::1]:0").expect("binding the relay's socket");
        sock.set_read_timeout(Some(Duration::from_secs(1)))
            .expect("timeout");
        let server = SocketAddrV6::new(Ipv6Addr::LOCALHOST, 6767, 0, 0);
        let mut answered = 0;
        for n in 0..300u32 {
            if n == 150 {
                let pid = nix::unistd::Pid::from_raw(i32::try_from(pid).expect("pid"));
                nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGHUP)
                    .unwrap_or_else(|e| panic!("SIGHUP to {pid}: {e}"));
            }
            // Clients with CUST2's remote-id: the same static prefix for each of them would be
            // a conflict, so ask as different clients of an unassigned remote-id.
            if ask(&sock, server, 1000 + n, b"OTHER") == Err(6) {
                answered += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(300));
        (answered, ask(&sock, server, 3, b"CUST3"))
    });
    assert_eq!(during, 300, "every request around the reload was answered");
    assert_eq!(
        after,
        Ok("fd00:2311:300::/56".to_owned()),
        "CUST3 after the reload"
    );

    let stopped = lessor.stop();
    stopped.assert_success();
    // One relay socket, one 4-tuple, 300-odd DUIDs: the steering program put each on the
    // worker that owns it (the kernel's hash alone would have put half on the wrong one).
    assert!(stopped.counter("v6_received") >= 304, "{}", stopped.stdout);
    assert_eq!(stopped.counter("v6_other_shard"), 0, "{}", stopped.stdout);
    assert!(
        stopped
            .stdout
            .contains("reloaded v6.assignments_file: 2 assignment(s)"),
        "{}",
        stopped.stdout
    );
}
