//! Veth pairs inside test-made network namespaces: ARP entries, and a DHCP-shaped exchange
//! (broadcast request in, broadcast and unicast replies out) between a server namespace and a
//! client namespace. Needs root and iproute2; fails saying so without them.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};

use lessor_net::v4::{SendMeta, Socket, SocketConfig, open_group};
use lessor_net::{Error, Interface, interfaces, set_arp_entry};

use crate::common::{expect_replies, recv_any};
use crate::netns::{Netns, VethLink, veth_link};

const SERVER_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 1);
const CLIENT_IP: Ipv4Addr = Ipv4Addr::new(10, 99, 1, 2);

/// One entry of `/proc/net/arp` as seen from the calling thread's namespace (`thread-self`:
/// plain `/proc/net` would follow the main thread into the host namespace).
#[derive(Debug, PartialEq, Eq)]
struct ArpRow {
    ip: String,
    flags: String,
    mac: String,
    device: String,
}

fn arp_table() -> Vec<ArpRow> {
    let text = std::fs::read_to_string("/proc/thread-self/net/arp").expect("read arp table");
    text.lines()
        .skip(1)
        .map(|line| {
            let f: Vec<&str> = line.split_whitespace().collect();
            assert_eq!(f.len(), 6, "unexpected /proc/net/arp row {line:?}");
            ArpRow {
                ip: f[0].to_owned(),
                flags: f[2].to_owned(),
                mac: f[3].to_owned(),
                device: f[5].to_owned(),
            }
        })
        .collect()
}

fn find_iface<'a>(all: &'a [Interface], name: &str) -> &'a Interface {
    all.iter()
        .find(|i| i.name == name)
        .unwrap_or_else(|| panic!("no {name} in {all:?}"))
}

#[test]
fn arp_entry_on_veth_reads_back() {
    let ns = Netns::new("arp");
    ns.ip(&["link", "add", "v0", "type", "veth", "peer", "name", "v1"]);
    ns.ip(&["addr", "add", "10.99.0.1/24", "dev", "v0"]);
    ns.ip(&["link", "set", "v0", "up"]);
    ns.ip(&["link", "set", "v1", "up"]);
    let ip = Ipv4Addr::new(10, 99, 0, 7);

    ns.run(|| {
        set_arp_entry("v0", ip, [0x02, 0x00, 0x5e, 0x10, 0x20, 0x30]).expect("set_arp_entry");
        let row = arp_table().into_iter().find(|r| r.ip == "10.99.0.7");
        assert_eq!(
            row,
            Some(ArpRow {
                ip: "10.99.0.7".to_owned(),
                flags: "0x2".to_owned(), // ATF_COM: complete, not permanent
                mac: "02:00:5e:10:20:30".to_owned(),
                device: "v0".to_owned(),
            })
        );

        // Replacing through a worker socket (the hot-path variant) overwrites the entry.
        let group = open_group(&SocketConfig {
            port: 6767,
            ..SocketConfig::default()
        })
        .expect("open group");
        group[0]
            .set_arp_entry("v0", ip, [0x02, 0, 0, 0, 0, 0x42])
            .expect("set_arp_entry via socket");
        let rows: Vec<ArpRow> = arp_table()
            .into_iter()
            .filter(|r| r.ip == "10.99.0.7")
            .collect();
        assert_eq!(rows.len(), 1, "{rows:?}");
        assert_eq!(rows[0].mac, "02:00:00:00:00:42");

        // Errors, not panics: an unknown interface, and one without Ethernet ARP.
        let err = set_arp_entry("lessor-nodev0", ip, [2; 6]).unwrap_err();
        assert!(matches!(err, Error::Arp { .. }), "{err:?}");
        assert!(err.to_string().contains("lessor-nodev0"), "{err}");
        let err = set_arp_entry("lo", ip, [2; 6]).unwrap_err();
        assert!(matches!(err, Error::Arp { .. }), "{err:?}");
    });
}

/// A server namespace with `v0` (10.99.1.1/24) and a client namespace with its peer `v1`
/// (10.99.1.2/24). Neither has a route beyond its /24, so a limited broadcast leaves the server
/// only through the interface `SendMeta::ifindex` names.
fn link(tag: &str, client_arp: bool) -> VethLink {
    veth_link(tag, |server, client| {
        server.ip(&["addr", "add", "10.99.1.1/24", "dev", "v0"]);
        client.ip(&["addr", "add", "10.99.1.2/24", "dev", "v1"]);
        if !client_arp {
            client.ip(&["link", "set", "v1", "arp", "off"]);
        }
    })
}

/// The server's worker group: every interface (no SO_BINDTODEVICE), the DHCP server port.
fn server_group(link: &VethLink) -> Vec<Socket> {
    link.server.run(|| {
        open_group(&SocketConfig {
            bind: Ipv4Addr::UNSPECIFIED,
            port: 67,
            device: None,
            workers: 2,
            recv_buffer: None,
            send_buffer: None,
        })
        .expect("open server group")
    })
}

/// A client socket on 0.0.0.0:68 that may send broadcasts, made inside the client namespace and
/// bound to `v1` as DHCP clients do (there is no route for 255.255.255.255 otherwise).
fn client_socket(link: &VethLink) -> UdpSocket {
    let addr = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 68);
    link.client.udp_socket(addr.into(), |s| {
        s.set_broadcast(true).expect("SO_BROADCAST");
        s.bind_device(Some(b"v1")).expect("SO_BINDTODEVICE v1");
    })
}

#[test]
fn broadcast_request_and_broadcast_reply_over_veth() {
    let link = link("bcast", true);
    let group = server_group(&link);
    let v0 = link.v0;
    let cli = client_socket(&link);

    let ifaces = link.server.run(interfaces).expect("interfaces");
    let iface = find_iface(&ifaces, "v0");
    assert_eq!(iface.index, v0);
    assert_eq!(iface.v4, vec![(SERVER_IP, 24)]);
    assert!(
        iface.is_up && iface.is_broadcast && !iface.is_loopback,
        "{iface:?}"
    );
    assert!(iface.mac.is_some(), "{iface:?}");

    cli.send_to(b"discover", (Ipv4Addr::BROADCAST, 67))
        .expect("client broadcast");
    let mut buf = [0u8; 1500];
    let (k, meta) = recv_any(&group, &mut buf);
    assert_eq!(&buf[..meta.len], b"discover");
    assert_eq!(meta.src, SocketAddrV4::new(CLIENT_IP, 68));
    assert_eq!(meta.ifindex, v0);
    assert_eq!(meta.dst, Ipv4Addr::BROADCAST, "header destination");
    assert_eq!(meta.local, SERVER_IP, "the arrival interface's address");

    // RFC 2131 §4.1: broadcast bit set -> reply to 255.255.255.255 out of the arrival interface.
    group[k]
        .send(
            b"offer",
            &SendMeta {
                dst: SocketAddrV4::new(Ipv4Addr::BROADCAST, 68),
                ifindex: meta.ifindex,
                src: Some(meta.local),
            },
        )
        .expect("broadcast reply");
    expect_replies(&cli, &[b"offer"], SocketAddrV4::new(SERVER_IP, 67).into());
}

/// RFC 2131 §4.1 unicast to yiaddr at chaddr: the client answers no ARP (`arp off`, like a
/// client without an address), so the reply gets through only via the entry `set_arp_entry`
/// installed.
#[test]
fn unicast_reply_through_arp_entry_over_veth() {
    let link = link("ucast", false);
    let group = server_group(&link);
    let v0 = link.v0;
    let client_mac = link
        .client
        .run(|| find_iface(&interfaces().expect("interfaces"), "v1").mac)
        .expect("v1 has a MAC");
    let cli = client_socket(&link);

    group[0]
        .set_arp_entry("v0", CLIENT_IP, client_mac)
        .expect("set_arp_entry");
    group[0]
        .send(
            b"ack",
            &SendMeta {
                dst: SocketAddrV4::new(CLIENT_IP, 68),
                ifindex: v0,
                src: Some(SERVER_IP),
            },
        )
        .expect("unicast reply");
    expect_replies(&cli, &[b"ack"], SocketAddrV4::new(SERVER_IP, 67).into());
}
