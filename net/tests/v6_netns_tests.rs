//! DHCPv6 over a veth pair between a server namespace and a client namespace: a client on the
//! link sends from its link-local address to ff02::1:2 port 547, every socket of the server's
//! group receives it with the multicast destination and the arrival interface, and a reply
//! sent to the client's link-local address (with its scope id) arrives from the source address
//! `SendMeta` asked for. Needs root and iproute2; fails saying so without them.

use std::net::{Ipv6Addr, SocketAddrV6, UdpSocket};
use std::process::Command;
use std::time::{Duration, Instant};

use lessor_net::v6::{
    ALL_DHCP_RELAY_AGENTS_AND_SERVERS, RecvBatch, SendBatch, SendMeta, Socket, SocketConfig,
    open_group,
};

use crate::common::{expect_datagram, expect_replies};
use crate::netns::{Netns, VethLink, veth_link};

/// A unique-local address on the server's interface, to prove that `SendMeta::src` is used (a
/// reply to a link-local address would otherwise come from the link-local address).
const SERVER_ULA: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x99, 0, 0, 0, 0, 0, 1);
const ALL_NODES: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 0, 1);

/// A server namespace with `v0` and a client namespace with its peer `v1`, both up with their
/// link-local addresses usable (not tentative).
struct Link6 {
    // Field order is drop order: the client namespace goes first, then the server's (and with
    // it the veth pair).
    client: Netns,
    server: Netns,
    /// `v0`'s index, in the server namespace.
    v0: u32,
    /// `v1`'s index, in the client namespace.
    v1: u32,
    server_ll: Ipv6Addr,
    client_ll: Ipv6Addr,
}

/// Turn off duplicate address detection on `dev` (before it goes up), so its link-local address
/// is usable at once instead of "tentative" for a second or two, during which the kernel will
/// not send from it. Written from a thread inside the namespace: `/proc/sys/net` is the
/// namespace of the thread that opens it.
fn no_dad(ns: &Netns, dev: &str) {
    let path = format!("/proc/sys/net/ipv6/conf/{dev}/accept_dad");
    ns.run(|| std::fs::write(&path, "0"))
        .unwrap_or_else(|e| panic!("write {path} in {}: {e}", ns.name()));
}

/// Wait (up to 10 s) until `dev` has a link-local address that is neither tentative nor failed,
/// and return it.
fn link_local(ns: &Netns, dev: &str) -> Ipv6Addr {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let out = Command::new("ip")
            .args(["-n", ns.name(), "-6", "-o", "addr", "show", "dev", dev])
            .args(["scope", "link"])
            .output()
            .unwrap_or_else(|e| panic!("cannot run ip: {e}"));
        let text = String::from_utf8_lossy(&out.stdout);
        let usable = text.lines().find_map(|line| {
            let words: Vec<&str> = line.split_whitespace().collect();
            if words.contains(&"tentative") || words.contains(&"dadfailed") {
                return None;
            }
            let at = words.iter().position(|w| *w == "inet6")?;
            words
                .get(at + 1)?
                .split('/')
                .next()?
                .parse::<Ipv6Addr>()
                .ok()
        });
        if let Some(addr) = usable {
            return addr;
        }
        assert!(
            Instant::now() < deadline,
            "{dev} in {} has no usable link-local address: {text}",
            ns.name()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn link6(tag: &str) -> Link6 {
    let VethLink {
        client,
        server,
        v0,
        v1,
    } = veth_link(tag, |server, client| {
        no_dad(server, "v0");
        no_dad(client, "v1");
        server.ip(&["addr", "add", "fd00:99::1/64", "dev", "v0", "nodad"]);
    });
    let server_ll = link_local(&server, "v0");
    let client_ll = link_local(&client, "v1");
    Link6 {
        client,
        server,
        v0,
        v1,
        server_ll,
        client_ll,
    }
}

/// The server's group: `[::]:547`, two workers, ff02::1:2 joined on `v0`.
fn server_group(link: &Link6) -> Vec<Socket> {
    let group = link.server.run(|| {
        open_group(&SocketConfig {
            multicast_ifindexes: vec![link.v0],
            workers: 2,
            ..SocketConfig::default()
        })
        .expect("open server group")
    });
    for s in &group {
        s.set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
    }
    group
}

/// A DHCPv6 client's socket: its link-local address on `v1`, port 546.
fn client_socket(link: &Link6) -> UdpSocket {
    let addr = SocketAddrV6::new(link.client_ll, 546, 0, link.v1);
    link.client.udp_socket(addr.into(), |_| {})
}

/// The client's view of a multicast group on its link.
fn on_link(link: &Link6, group: Ipv6Addr) -> SocketAddrV6 {
    SocketAddrV6::new(group, 547, 0, link.v1)
}

#[test]
fn multicast_request_reaches_every_socket_and_link_local_reply_reaches_the_client() {
    let link = link6("mc6");
    let group = server_group(&link);
    let cli = client_socket(&link);
    let client_seen_by_server = SocketAddrV6::new(link.client_ll, 546, 0, link.v0);

    cli.send_to(
        b"solicit",
        on_link(&link, ALL_DHCP_RELAY_AGENTS_AND_SERVERS),
    )
    .expect("client sends to ff02::1:2");
    // A multicast datagram skips SO_REUSEPORT selection: every socket of the group has a copy.
    let mut buf = [0u8; 1500];
    let mut metas = Vec::new();
    for (k, s) in group.iter().enumerate() {
        let meta = s
            .recv(&mut buf)
            .expect("recv")
            .unwrap_or_else(|| panic!("socket {k} got no copy of the multicast request"));
        assert_eq!(&buf[..meta.len], b"solicit");
        assert_eq!(meta.dst, ALL_DHCP_RELAY_AGENTS_AND_SERVERS, "socket {k}");
        assert_eq!(meta.ifindex, link.v0, "socket {k}");
        assert_eq!(meta.src, client_seen_by_server, "socket {k}");
        metas.push(meta);
    }
    let meta = metas[0];

    // RFC 8415 §18.3.10: unicast to the client's link-local source, through the arrival
    // interface, here from the server's link-local address.
    let reply = SendMeta {
        dst: meta.src,
        src: Some(link.server_ll),
        ifindex: Some(meta.ifindex),
    };
    group[1].send(b"advertise", &reply).expect("reply");
    let server_ll = SocketAddrV6::new(link.server_ll, 547, 0, link.v1);
    expect_replies(&cli, &[b"advertise"], server_ll.into());

    // The source comes from SendMeta (the kernel alone would pick the link-local address for
    // a link-local destination); the scope id alone picks the interface.
    let from_ula = SendMeta {
        dst: meta.src,
        src: Some(SERVER_ULA),
        ifindex: None,
    };
    group[0]
        .send(b"reply", &from_ula)
        .expect("reply from the ULA");
    let server_ula = SocketAddrV6::new(SERVER_ULA, 547, 0, 0);
    expect_replies(&cli, &[b"reply"], server_ula.into());

    // The same through the batches: a multicast request in a RecvBatch, two replies in one
    // sendmmsg.
    cli.send_to(
        b"request",
        on_link(&link, ALL_DHCP_RELAY_AGENTS_AND_SERVERS),
    )
    .expect("client sends to ff02::1:2");
    let mut rx = RecvBatch::new(8, 1500).expect("recv batch");
    for (k, s) in group.iter().enumerate() {
        assert_eq!(
            s.recv_batch(&mut rx, true).expect("recv_batch"),
            1,
            "socket {k}"
        );
        let (payload, meta) = rx.get(0);
        assert_eq!(payload, b"request");
        assert_eq!(meta.dst, ALL_DHCP_RELAY_AGENTS_AND_SERVERS);
        assert_eq!(meta.ifindex, link.v0);
        assert_eq!(meta.src, client_seen_by_server);
    }
    let mut tx = SendBatch::new(8, 1500).expect("send batch");
    assert!(tx.push(b"reply 1", &reply));
    assert!(tx.push(b"reply 2", &from_ula));
    let report = group[0].send_batch(&mut tx).expect("send_batch");
    assert_eq!((report.sent, report.failed), (2, 0), "{report:?}");
    assert_eq!(expect_datagram(&cli, b"reply 1"), server_ll.into());
    assert_eq!(expect_datagram(&cli, b"reply 2"), server_ula.into());

    // A link-local destination whose scope id contradicts the interface asked for is refused,
    // not sent out of either.
    let contradiction = SendMeta {
        ifindex: Some(1), // lo
        ..reply
    };
    let err = group[0].send(b"x", &contradiction).unwrap_err();
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(libc::EINVAL),
        "{err}"
    );
}

/// `IPV6_MULTICAST_ALL` is off: the group hears ff02::1:2, which it joined, and not ff02::1
/// (all-nodes), which every interface is a member of. A plain socket on the same port (with
/// the default, on) receives the all-nodes datagram, so it did arrive.
#[test]
fn group_hears_only_the_dhcp_multicast_group() {
    let link = link6("mcall6");
    let group = server_group(&link);
    let any = SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 547, 0, 0);
    let witness = link.server.udp_socket(any.into(), |s| {
        s.set_only_v6(true).expect("V6ONLY");
        // SO_REUSEADDR on both sides lets it share [::]:547 with the group without joining
        // the SO_REUSEPORT group.
        s.set_reuse_address(true).expect("SO_REUSEADDR");
    });
    let cli = client_socket(&link);

    cli.send_to(b"to all nodes", on_link(&link, ALL_NODES))
        .expect("client sends to ff02::1");
    // The all-nodes datagram arrives at the witness.
    expect_datagram(&witness, b"to all nodes");

    cli.send_to(
        b"to servers",
        on_link(&link, ALL_DHCP_RELAY_AGENTS_AND_SERVERS),
    )
    .expect("client sends to ff02::1:2");
    // Each socket's first datagram is the ff02::1:2 one: the all-nodes one, sent before it,
    // never reached the group.
    let mut buf = [0u8; 64];
    for (k, s) in group.iter().enumerate() {
        let meta = s.recv(&mut buf).expect("recv").expect("a datagram");
        assert_eq!(&buf[..meta.len], b"to servers", "socket {k}");
        assert_eq!(meta.dst, ALL_DHCP_RELAY_AGENTS_AND_SERVERS, "socket {k}");
    }
}
