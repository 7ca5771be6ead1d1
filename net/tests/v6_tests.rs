//! IPv6 worker socket groups on ::1 in the host namespace (test mode: no multicast, replies to
//! the request's source address and port): single and batched receive and send, with the
//! `IPV6_PKTINFO` metadata checked, and DHCPv6 steering on a group.

use std::collections::BTreeSet;
use std::io::ErrorKind;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV6, UdpSocket};
use std::time::Duration;

use lessor_net::v6::{
    RecvBatch, SendBatch, SendMeta, Socket, SocketConfig, attach_steering, open_group, steer_index,
};
use lessor_net::{Error, interface_index};

use crate::alloc_tests::{allocations, four_replies_sent_without_allocating};
use crate::common::{
    assert_unknown_interface, client6, expect_replies, loopback_group6, recv_any6, request_into, v6,
};

fn one_socket() -> (Socket, SocketAddrV6) {
    let sock = loopback_group6(1, |_| {}).pop().expect("one socket");
    let addr = sock.local_addr().expect("local_addr");
    (sock, addr)
}

fn lo() -> u32 {
    interface_index("lo").expect("index of lo")
}

/// One request into a two-socket group and one reply out, with the arrival metadata checked.
fn roundtrip(device: Option<&str>) {
    let group = loopback_group6(2, |cfg| cfg.device = device.map(str::to_owned));
    let server = group[0].local_addr().expect("local_addr");
    assert_eq!(server.ip(), &Ipv6Addr::LOCALHOST);
    assert_eq!(group[1].local_addr().expect("local_addr"), server);

    let (cli, k, meta) = request_into(&group, b"solicit");
    assert_eq!(meta.dst, Ipv6Addr::LOCALHOST);
    assert!(!meta.dst.is_multicast());
    assert_eq!(meta.ifindex, lo());

    // Test mode: the reply goes to the request's source address and port.
    group[k]
        .send(
            b"advertise",
            &SendMeta {
                dst: meta.src,
                src: Some(meta.dst),
                ifindex: Some(meta.ifindex),
            },
        )
        .expect("send reply");
    expect_replies(&cli, &[b"advertise"], server.into());
}

/// [`roundtrip`] on a group bound to no device, then on one bound to `lo`.
#[test]
fn roundtrip_without_and_with_device_lo() {
    roundtrip(None);
    roundtrip(Some("lo"));
}

/// `SO_REUSEPORT` spreads unicast datagrams over the group: every one of them reaches exactly
/// one socket, none is copied and none is lost.
#[test]
fn each_unicast_datagram_reaches_exactly_one_socket() {
    let group = loopback_group6(2, |_| {});
    let server = group[0].local_addr().expect("local_addr");
    // Different source ports: different 4-tuple hashes, so both sockets are likely to be used.
    let clients: Vec<UdpSocket> = (0..16).map(|_| client6()).collect();
    for (i, c) in clients.iter().enumerate() {
        c.send_to(format!("request {i:02}").as_bytes(), server)
            .expect("send");
    }
    let mut seen = BTreeSet::new();
    let mut per_socket = [0usize; 2];
    let mut buf = [0u8; 64];
    for _ in 0..16 {
        let (k, meta) = recv_any6(&group, &mut buf);
        let text = String::from_utf8(buf[..meta.len].to_vec()).expect("utf8");
        assert!(seen.insert(text.clone()), "{text} arrived twice");
        per_socket[k] += 1;
    }
    assert_eq!(seen.len(), 16);
    // Nothing left anywhere: no copies.
    for s in &group {
        assert_eq!(s.try_recv(&mut buf).expect("try_recv"), None);
    }
    assert_eq!(per_socket[0] + per_socket[1], 16, "{per_socket:?}");
}

/// `IPV6_V6ONLY`: a group on `[::]` does not claim the IPv4 port of the same number. Here
/// that port is held by a plain IPv4 socket (no `SO_REUSEADDR`), so without the option the
/// group's bind fails with `AddrInUse`; and an IPv4 datagram to it still reaches the holder.
#[test]
fn v6_group_on_any_leaves_the_ipv4_port_alone() {
    for _ in 0..20 {
        let holder = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, 0)).expect("bind IPv4 holder");
        holder
            .set_read_timeout(Some(Duration::from_secs(10)))
            .expect("timeout");
        let port = holder.local_addr().expect("holder addr").port();
        let group = match open_group(&SocketConfig {
            port,
            workers: 2,
            ..SocketConfig::default()
        }) {
            Ok(group) => group,
            // Someone else's IPv6 socket may hold this port number: try another. Without
            // IPV6_V6ONLY every try ends here, and the test fails below.
            Err(Error::Bind { source, .. }) if source.kind() == ErrorKind::AddrInUse => continue,
            Err(e) => panic!("IPv6 group on [::]:{port} beside an IPv4 socket: {e}"),
        };
        assert_eq!(group.len(), 2);
        let cli = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("IPv4 client");
        cli.send_to(b"v4", (Ipv4Addr::LOCALHOST, port))
            .expect("send");
        let mut got = [0u8; 8];
        let (n, _) = holder.recv_from(&mut got).expect("the holder receives");
        assert_eq!(&got[..n], b"v4");
        return;
    }
    panic!("20 IPv6 groups on [::] could not share a port number with an IPv4 socket (V6ONLY?)");
}

/// The `IPV6_PKTINFO` control message reaches the kernel: a source address this host does not
/// have and an interface that does not exist are refused (a plain `sendto` would succeed), and
/// `::1` from `lo` goes through. An index beyond `c_int` never reaches the kernel.
#[test]
fn send_meta_reaches_the_kernel() {
    let (sock, server) = one_socket();
    let cli = client6();
    let dst = v6(cli.local_addr().expect("client addr"));
    let mut got = [0u8; 16];
    for (src, ifindex) in [
        (Some(Ipv6Addr::LOCALHOST), Some(lo())),
        (Some(Ipv6Addr::LOCALHOST), None),
        (None, Some(lo())),
        (None, Some(0)),
        (None, None),
    ] {
        let meta = SendMeta { dst, src, ifindex };
        sock.send(b"reply", &meta).expect("send");
        let (n, from) = cli.recv_from(&mut got).expect("client receives");
        assert_eq!(&got[..n], b"reply");
        assert_eq!(v6(from), server, "{meta:?}");
    }

    let not_ours = SendMeta {
        dst,
        src: Some("2001:db8::1".parse().expect("addr")),
        ifindex: None,
    };
    let err = sock.send(b"x", &not_ours).unwrap_err();
    assert!(
        matches!(err, Error::Send6 { dst: d, ifindex: 0, .. } if d == dst),
        "{err:?}"
    );
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(libc::EINVAL)
    );

    let no_such_interface = SendMeta {
        dst,
        src: None,
        ifindex: Some(999_999),
    };
    let err = sock.send(b"x", &no_such_interface).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Send6 {
                ifindex: 999_999,
                ..
            }
        ),
        "{err:?}"
    );
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(libc::ENODEV)
    );

    let huge = SendMeta {
        dst,
        src: None,
        ifindex: Some(u32::MAX),
    };
    let err = sock.send(b"x", &huge).unwrap_err();
    assert_eq!(
        err.io_error().map(|e| e.kind()),
        Some(ErrorKind::InvalidInput)
    );
    cli.set_read_timeout(Some(Duration::from_millis(100)))
        .expect("timeout");
    assert!(cli.recv_from(&mut got).is_err(), "a refused send arrived");
}

#[test]
fn recv_timeout_try_recv_and_oversized_datagrams() {
    let (sock, server) = one_socket();
    sock.set_read_timeout(Some(Duration::from_millis(10)))
        .expect("timeout");
    let mut buf = [0u8; 10];
    assert_eq!(sock.recv(&mut buf).expect("recv"), None);
    assert!(matches!(
        sock.set_read_timeout(Some(Duration::ZERO)),
        Err(Error::InvalidConfig(_))
    ));
    sock.set_read_timeout(None).expect("blocking socket");
    assert_eq!(sock.try_recv(&mut buf).expect("try_recv"), None);

    let cli = client6();
    cli.send_to(&[7u8; 100], server).expect("send big");
    cli.send_to(b"small", server).expect("send small");
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    // The big one is dropped (Ok(None)), then the small one arrives whole.
    let meta = (0..1000)
        .find_map(|_| sock.recv(&mut buf).expect("recv"))
        .expect("the small datagram arrives");
    assert_eq!(&buf[..meta.len], b"small");
    assert_eq!(sock.truncated_drops(), 1);
    assert_eq!(sock.missing_pktinfo_drops(), 0);
}

/// Many datagrams in, many replies out: `recvmmsg` into a `RecvBatch`, each with its
/// metadata; `sendmmsg` from a `SendBatch`, each reply to its own client, with and without
/// packet info.
#[test]
fn batch_round_trip_of_many_datagrams() {
    const CLIENTS: usize = 64;
    const PER_CLIENT: usize = 4;
    let (sock, server) = one_socket();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let clients: Vec<UdpSocket> = (0..CLIENTS).map(|_| client6()).collect();
    let addrs: Vec<SocketAddrV6> = clients
        .iter()
        .map(|c| v6(c.local_addr().expect("client addr")))
        .collect();
    let mut rx = RecvBatch::new(32, 1500).expect("recv batch");
    let mut tx = SendBatch::new(32, 1500).expect("send batch");
    assert_eq!((rx.capacity(), rx.buf_size(), rx.len()), (32, 1500, 0));
    assert_eq!((tx.capacity(), tx.buf_size(), tx.len()), (32, 1500, 0));

    for round in 0..PER_CLIENT {
        for (i, c) in clients.iter().enumerate() {
            c.send_to(format!("request {i:02} {round}").as_bytes(), server)
                .expect("send");
        }
    }
    let mut received = 0;
    let mut sent = 0;
    let mut calls = 0;
    while received < CLIENTS * PER_CLIENT {
        let n = sock.recv_batch(&mut rx, true).expect("recv_batch");
        assert!(n > 0, "timed out after {received} datagrams");
        assert!(n <= 32);
        calls += 1;
        assert_eq!(rx.len(), n);
        for (payload, meta) in rx.iter() {
            let text = std::str::from_utf8(payload).expect("utf8");
            let i: usize = text[8..10].parse().expect("client number");
            assert_eq!(payload.len(), meta.len);
            assert_eq!(meta.src, addrs[i], "{text}");
            assert_eq!(meta.dst, Ipv6Addr::LOCALHOST);
            assert_eq!(meta.ifindex, lo());
            let reply = SendMeta {
                dst: meta.src,
                src: i.is_multiple_of(2).then_some(meta.dst),
                ifindex: i.is_multiple_of(3).then_some(meta.ifindex),
            };
            let answer = format!("reply {}", &text[8..]);
            if !tx.push(answer.as_bytes(), &reply) {
                assert!(tx.is_full());
                let report = sock.send_batch(&mut tx).expect("send_batch");
                assert_eq!((report.sent, report.failed), (32, 0), "{report:?}");
                sent += report.sent;
                assert!(tx.push(answer.as_bytes(), &reply));
            }
        }
        received += n;
    }
    assert!(
        calls < CLIENTS * PER_CLIENT,
        "recvmmsg took one datagram per call"
    );
    let report = sock.send_batch(&mut tx).expect("send_batch");
    assert_eq!(report.failed, 0, "{report:?}");
    sent += report.sent;
    assert_eq!(sent, CLIENTS * PER_CLIENT);
    assert!(tx.is_empty());

    // Every client gets its own replies, in order, from the server's address.
    let mut got = [0u8; 64];
    for (i, c) in clients.iter().enumerate() {
        for round in 0..PER_CLIENT {
            let (n, from) = c.recv_from(&mut got).expect("client receives its reply");
            assert_eq!(&got[..n], format!("reply {i:02} {round}").as_bytes());
            assert_eq!(v6(from), server);
        }
    }
    assert_eq!(sock.recv_batch(&mut rx, false).expect("recv_batch"), 0);
    assert!(rx.is_empty());
}

#[test]
fn recv_batch6_drops_and_counts_oversized_datagrams() {
    let (sock, server) = one_socket();
    let cli = client6();
    cli.send_to(b"small", server).expect("send");
    cli.send_to(&[7u8; 100], server).expect("send");
    cli.send_to(&[7u8; 16], server).expect("send"); // exactly the buffer: fits
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let mut batch = RecvBatch::new(8, 16).expect("batch");
    let mut got = Vec::new();
    while got.len() < 2 {
        assert!(sock.recv_batch(&mut batch, true).expect("recv_batch") > 0);
        got.extend(batch.iter().map(|(p, _)| p.to_vec()));
    }
    assert_eq!(got, [b"small".to_vec(), vec![7u8; 16]]);
    assert_eq!(sock.truncated_drops(), 1);
}

/// A reply the kernel refuses is counted and skipped; the rest of the batch still goes out.
#[test]
fn send_batch6_skips_refused_replies_and_sends_the_rest() {
    let (sock, server) = one_socket();
    let cli = client6();
    let dst = v6(cli.local_addr().expect("client addr"));
    let plain = SendMeta {
        dst,
        src: None,
        ifindex: None,
    };
    let no_such_interface = SendMeta {
        ifindex: Some(999_999),
        ..plain
    };
    let not_ours = SendMeta {
        src: Some("2001:db8::1".parse().expect("addr")),
        ..plain
    };
    let mut batch = SendBatch::new(8, 64).expect("batch");
    assert!(batch.push(b"first", &plain));
    assert!(batch.push(b"no route", &no_such_interface));
    assert!(batch.push(b"second", &plain));
    assert!(batch.push(b"not our address", &not_ours));
    assert!(batch.push(b"third", &plain));
    assert!(!batch.push(&[0u8; 65], &plain), "longer than a slot");
    let huge = SendMeta {
        ifindex: Some(u32::MAX),
        ..plain
    };
    assert!(!batch.push(b"x", &huge), "ifindex beyond c_int");
    assert_eq!(batch.len(), 5);

    let report = sock.send_batch(&mut batch).expect("send_batch");
    assert_eq!((report.sent, report.failed), (3, 2), "{report:?}");
    assert_unknown_interface(report.first_error.as_ref(), dst.into());
    assert!(batch.is_empty());
    expect_replies(&cli, &[b"first", b"second", b"third"], server.into());
}

/// The IPv6 receive and send paths, single and batched, do not allocate (counted by the
/// allocator of `alloc_tests`).
#[test]
fn v6_paths_do_not_allocate() {
    let (sock, server) = one_socket();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let lo = lo();
    let cli = client6();
    let cli_addr = v6(cli.local_addr().expect("client addr"));
    let mut rx = RecvBatch::new(16, 1500).expect("recv batch");
    let mut tx = SendBatch::new(16, 1500).expect("send batch");
    let mut buf = [0u8; 1500];
    let mut got = [0u8; 64];
    let metas = [
        SendMeta {
            dst: cli_addr,
            src: Some(Ipv6Addr::LOCALHOST),
            ifindex: Some(lo),
        },
        SendMeta {
            dst: cli_addr,
            src: None,
            ifindex: None,
        },
    ];
    for round in 0..3 {
        cli.send_to(b"request", server).expect("client send");
        let (meta, n) = allocations(|| sock.recv(&mut buf));
        let meta = meta.expect("recv").expect("a datagram");
        assert_eq!(meta.src, cli_addr);
        assert_eq!(n, 0, "recv allocated {n} times (round {round})");
        for reply in &metas {
            let (res, n) = allocations(|| sock.send(b"reply", reply));
            res.expect("send");
            assert_eq!(n, 0, "send allocated {n} times ({reply:?})");
            let (len, _) = cli.recv_from(&mut got).expect("client receives");
            assert_eq!(&got[..len], b"reply");
        }

        for _ in 0..4 {
            cli.send_to(b"request", server).expect("client send");
        }
        let mut received = 0;
        while received < 4 {
            let (res, n) = allocations(|| sock.recv_batch(&mut rx, true));
            received += res.expect("recv_batch");
            assert_eq!(n, 0, "recv_batch allocated {n} times (round {round})");
        }
        let (res, n) = allocations(|| {
            for i in 0..4 {
                assert!(tx.push(b"reply", &metas[i % 2]));
            }
            sock.send_batch(&mut tx)
        });
        four_replies_sent_without_allocating(res, n, round, &cli);
    }
}

/// A relayed SOLICIT as one relay agent sends it: `id` in the transaction id, DUID-LLT
/// `duid_tail` as the last four bytes of its link-layer address, an interface-id ahead of
/// the RELAY_MSG and an elapsed-time option ahead of the CLIENTID.
fn relayed_solicit(id: u32, duid_tail: u32, with_duid: bool) -> Vec<u8> {
    let option = |code: u16, value: &[u8]| {
        let mut o = code.to_be_bytes().to_vec();
        o.extend((value.len() as u16).to_be_bytes());
        o.extend_from_slice(value);
        o
    };
    let mut client = vec![1];
    client.extend(&id.to_be_bytes()[1..]);
    client.extend(option(8, &[0, 0]));
    if with_duid {
        let mut duid = vec![0, 1, 0, 1, 0x2a, 0x3b, 0x4c, 0x5d, 0x02, 0x42];
        duid.extend(duid_tail.to_be_bytes());
        client.extend(option(1, &duid));
    }
    client.extend(option(3, &[0; 12]));
    let mut relay = vec![12, 0];
    relay.extend(Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, 1).octets());
    relay.extend(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, id as u16).octets());
    relay.extend(option(18, b"ge-0/0/1"));
    relay.extend(option(9, &client));
    relay
}

/// The transaction id of a datagram made by [`relayed_solicit`].
fn solicit_id(p: &[u8]) -> u32 {
    // The client message sits after the relay header (34), the interface-id (4 + 8) and the
    // RELAY_MSG header (4).
    let m = &p[50..];
    u32::from_be_bytes([0, m[1], m[2], m[3]])
}

/// One relay, one 4-tuple: without a program the kernel puts every datagram on one socket.
/// With [`attach_steering`] each lands on the socket [`steer_index`] names for its DUID, and
/// the datagrams without one still arrive, once each, where the 4-tuple hash puts them.
#[test]
fn v6_steering_spreads_one_relay_by_duid() {
    const N: usize = 4;
    let group = loopback_group6(N, |cfg| cfg.recv_buffer = Some(1 << 20));
    attach_steering(&group).expect("attach_steering");
    let server = group[0].local_addr().expect("local_addr");
    let relay = client6();
    let mut seed = 0x2545_f491_u32;
    let mut sent = std::collections::HashMap::new();
    for id in 0..240u32 {
        seed ^= seed << 13;
        seed ^= seed >> 17;
        seed ^= seed << 5;
        let p = relayed_solicit(id, seed, id % 8 != 7);
        relay.send_to(&p, server).expect("send");
        sent.insert(id, p);
    }
    let mut per_socket = [0usize; N];
    let mut unsteered = BTreeSet::new();
    let mut buf = [0u8; 512];
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !sent.is_empty() && std::time::Instant::now() < deadline {
        for (k, s) in group.iter().enumerate() {
            while let Some(meta) = s.try_recv(&mut buf).expect("try_recv") {
                let p = &buf[..meta.len];
                let id = solicit_id(p);
                assert_eq!(
                    sent.remove(&id).as_deref(),
                    Some(p),
                    "datagram {id} arrived once, intact"
                );
                match steer_index(p, N) {
                    Some(want) => assert_eq!(k, want, "datagram {id}"),
                    None => {
                        assert_eq!(id % 8, 7, "datagram {id} has a DUID to steer by");
                        unsteered.insert(k);
                    }
                }
                per_socket[k] += 1;
            }
        }
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(sent.is_empty(), "lost: {:?}", sent.keys());
    for s in &group {
        assert_eq!(s.try_recv(&mut buf).expect("try_recv"), None, "no copies");
    }
    assert!(per_socket.iter().all(|&c| c > 20), "{per_socket:?}");
    assert_eq!(
        unsteered.len(),
        1,
        "one 4-tuple, one hashed socket: {unsteered:?}"
    );
}
