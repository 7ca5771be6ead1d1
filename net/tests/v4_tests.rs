//! Worker socket groups on 127.0.0.1 in the host namespace.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::time::Duration;

use lessor_net::v4::SendMeta;
use lessor_net::{Error, interface_index};

use crate::common::{
    client, expect_replies, loopback_group, loopback_group_with, recv_any, request_into, v4,
};

/// One request into a two-socket group and one reply out, with the arrival metadata checked.
fn roundtrip(device: Option<&str>) {
    let group = loopback_group(2, device);
    let server = group[0].local_addr().expect("local_addr");
    assert_eq!(server.ip(), &Ipv4Addr::LOCALHOST);
    for s in &group[1..] {
        assert_eq!(
            s.local_addr().expect("local_addr"),
            server,
            "one port for the group"
        );
    }
    let lo = interface_index("lo").expect("index of lo");

    let (cli, k, meta) = request_into(&group, b"discover");
    assert_eq!(meta.ifindex, lo);
    assert_eq!(meta.local, Ipv4Addr::LOCALHOST);
    assert_eq!(meta.dst, Ipv4Addr::LOCALHOST);

    // The datagram went to exactly one socket of the group.
    let mut buf = [0u8; 1500];
    for (j, s) in group.iter().enumerate() {
        s.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("set read timeout");
        if j != k {
            assert_eq!(
                s.recv(&mut buf).expect("recv"),
                None,
                "socket {j} got a copy"
            );
        }
    }

    let reply = SendMeta {
        dst: meta.src,
        ifindex: lo,
        src: Some(Ipv4Addr::LOCALHOST),
    };
    group[k].send(b"offer", &reply).expect("send reply");
    expect_replies(&cli, &[b"offer"], server.into());
}

#[test]
fn loopback_group_roundtrip() {
    roundtrip(None);
}

#[test]
fn bind_to_device_lo_roundtrip() {
    roundtrip(Some("lo"));
}

/// The reply's source address is the one asked for in `SendMeta::src`, not the socket's bound
/// address: this only holds if the IP_PKTINFO control message reaches the kernel intact.
#[test]
fn reply_source_comes_from_send_meta() {
    let group = loopback_group(1, None);
    let server = group[0].local_addr().expect("local_addr");
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    let src = Ipv4Addr::new(127, 0, 0, 2);
    for ifindex in [0, interface_index("lo").expect("index of lo")] {
        let meta = SendMeta {
            dst: v4(cli.local_addr().expect("client addr")),
            ifindex,
            src: Some(src),
        };
        group[0].send(b"ack", &meta).expect("send");
        let mut got = [0u8; 16];
        let (n, from) = cli.recv_from(&mut got).expect("client receives");
        assert_eq!(&got[..n], b"ack");
        assert_eq!(
            v4(from),
            SocketAddrV4::new(src, server.port()),
            "ifindex {ifindex}"
        );
    }
    // No control message at all: the kernel's choice, the bound address.
    let plain = SendMeta {
        dst: v4(cli.local_addr().expect("client addr")),
        ifindex: 0,
        src: None,
    };
    group[0].send(b"nak", &plain).expect("send");
    let mut got = [0u8; 16];
    let (n, from) = cli.recv_from(&mut got).expect("client receives");
    assert_eq!(&got[..n], b"nak");
    assert_eq!(v4(from), server);
}

#[test]
fn recv_timeout_is_none() {
    let group = loopback_group(1, None);
    group[0]
        .set_read_timeout(Some(Duration::from_millis(10)))
        .expect("set read timeout");
    let mut buf = [0u8; 64];
    assert_eq!(group[0].recv(&mut buf).expect("recv"), None);
    assert!(matches!(
        group[0].set_read_timeout(Some(Duration::ZERO)),
        Err(Error::InvalidConfig(_))
    ));
}

#[test]
fn try_recv_never_waits_and_still_receives() {
    let group = loopback_group(1, None);
    // A read timeout far longer than any test: try_recv must ignore it.
    group[0].set_read_timeout(None).expect("blocking socket");
    let mut buf = [0u8; 64];
    assert_eq!(group[0].try_recv(&mut buf).expect("try_recv"), None);
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    cli.send_to(b"hi", group[0].local_addr().expect("addr"))
        .expect("send");
    // The datagram is queued by the time send_to returns on loopback, but allow the kernel a
    // moment: poll a bounded number of times rather than assert on timing.
    let meta = (0..1000)
        .find_map(|_| {
            let m = group[0].try_recv(&mut buf).expect("try_recv");
            if m.is_none() {
                std::thread::sleep(Duration::from_millis(1));
            }
            m
        })
        .expect("the datagram arrives");
    assert_eq!(&buf[..meta.len], b"hi");
}

#[test]
fn oversized_datagram_is_dropped_and_counted() {
    let group = loopback_group(1, None);
    let server = group[0].local_addr().expect("local_addr");
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    cli.send_to(&[7u8; 100], server).expect("send big");
    cli.send_to(b"small", server).expect("send small");
    let mut buf = [0u8; 10];
    // The big one is dropped (Ok(None)), then the small one arrives whole.
    let (_, meta) = recv_any(&group, &mut buf);
    assert_eq!(&buf[..meta.len], b"small");
    assert_eq!(group[0].truncated_drops(), 1);
}

#[test]
fn buffer_sizes_are_applied() {
    let group = loopback_group_with(|cfg| {
        cfg.recv_buffer = Some(1 << 20);
        cfg.send_buffer = Some(1 << 19);
    });
    let sock = socket2::SockRef::from(&group[0]);
    // Linux reports twice the size asked for; as root SO_RCVBUFFORCE lifts the sysctl cap.
    assert!(sock.recv_buffer_size().expect("SO_RCVBUF") >= 1 << 20);
    assert!(sock.send_buffer_size().expect("SO_SNDBUF") >= 1 << 19);
}
