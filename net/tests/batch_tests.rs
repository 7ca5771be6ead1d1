//! Batched receive and send on 127.0.0.1: `recvmmsg` into a `RecvBatch`, `sendmmsg` from a
//! `SendBatch` with a source address per reply.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::Duration;

use lessor_net::interface_index;
use lessor_net::v4::{RecvBatch, SendBatch, SendMeta, Socket};

use crate::common::{assert_unknown_interface, client, expect_replies, loopback_group, v4};

/// Loopback hands a datagram to the receiving socket within the sender's `send_to` (the
/// softirq runs as the send path re-enables bottom halves); this pause only covers a softirq
/// deferred to ksoftirqd on a busy machine.
fn settle() {
    std::thread::sleep(Duration::from_millis(50));
}

fn one_socket() -> (Socket, SocketAddrV4) {
    let mut group = loopback_group(1, None);
    let sock = group.pop().expect("one socket");
    let addr = sock.local_addr().expect("local_addr");
    (sock, addr)
}

#[test]
fn recv_batch_takes_32_datagrams_in_one_call() {
    let (sock, server) = one_socket();
    let lo = interface_index("lo").expect("index of lo");
    let clients: Vec<UdpSocket> = (0..32).map(|_| client((Ipv4Addr::LOCALHOST, 0))).collect();
    for (i, c) in clients.iter().enumerate() {
        c.send_to(format!("request {i:02}").as_bytes(), server)
            .expect("send");
    }
    settle();
    let mut batch = RecvBatch::new(32, 1500).expect("batch");
    assert_eq!(sock.recv_batch(&mut batch, false).expect("recv_batch"), 32);
    assert_eq!(batch.len(), 32);
    // One socket, one sender thread: arrival order is send order.
    for (i, (payload, meta)) in batch.iter().enumerate() {
        assert_eq!(payload, format!("request {i:02}").as_bytes());
        assert_eq!(meta.len, payload.len());
        assert_eq!(meta.src, v4(clients[i].local_addr().expect("client addr")));
        assert_eq!(meta.ifindex, lo);
        assert_eq!(meta.local, Ipv4Addr::LOCALHOST);
        assert_eq!(meta.dst, Ipv4Addr::LOCALHOST);
    }
    let (payload, meta) = batch.get(31);
    assert_eq!((payload, meta.len), (&b"request 31"[..], 10));

    // More queued than the batch holds: it takes its capacity, the rest stays queued.
    for i in 0..40 {
        clients[i % 32]
            .send_to(format!("again {i:02}").as_bytes(), server)
            .expect("send");
    }
    settle();
    assert_eq!(sock.recv_batch(&mut batch, true).expect("recv_batch"), 32);
    assert_eq!(batch.get(0).0, b"again 00");
    assert_eq!(sock.recv_batch(&mut batch, true).expect("recv_batch"), 8);
    assert_eq!(batch.get(7).0, b"again 39");
    assert_eq!(sock.recv_batch(&mut batch, false).expect("recv_batch"), 0);
    assert!(batch.is_empty());
}

#[test]
fn recv_batch_waits_only_when_asked_and_only_until_the_timeout() {
    let (sock, server) = one_socket();
    let mut batch = RecvBatch::new(8, 1500).expect("batch");
    sock.set_read_timeout(None).expect("blocking socket");
    // No wait: returns at once even on a socket without a timeout.
    assert_eq!(sock.recv_batch(&mut batch, false).expect("recv_batch"), 0);
    // Wait: blocks until the read timeout, then Ok(0).
    sock.set_read_timeout(Some(Duration::from_millis(20)))
        .expect("timeout");
    assert_eq!(sock.recv_batch(&mut batch, true).expect("recv_batch"), 0);
    // Wait with something to read: returns with it, without waiting for a full batch.
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("timeout");
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    cli.send_to(b"one", server).expect("send");
    assert_eq!(sock.recv_batch(&mut batch, true).expect("recv_batch"), 1);
    assert_eq!(batch.get(0).0, b"one");
}

#[test]
fn recv_batch_drops_and_counts_oversized_datagrams() {
    let (sock, server) = one_socket();
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    cli.send_to(b"small", server).expect("send");
    cli.send_to(&[7u8; 100], server).expect("send");
    cli.send_to(b"second", server).expect("send");
    cli.send_to(&[7u8; 16], server).expect("send"); // exactly the buffer: fits
    settle();
    let mut batch = RecvBatch::new(8, 16).expect("batch");
    assert_eq!(sock.recv_batch(&mut batch, false).expect("recv_batch"), 3);
    let got: Vec<&[u8]> = batch.iter().map(|(p, _)| p).collect();
    assert_eq!(got, [&b"small"[..], b"second", &[7u8; 16]]);
    assert_eq!(sock.truncated_drops(), 1);
    assert_eq!(sock.missing_pktinfo_drops(), 0);
}

/// Which source address a reply should come from, by slot, and what `SendMeta` asks for it.
fn reply_meta(i: usize, dst: SocketAddrV4, lo: u32) -> (SendMeta, Ipv4Addr) {
    match i % 3 {
        // IP_PKTINFO with interface and source.
        0 => (
            SendMeta {
                dst,
                ifindex: lo,
                src: Some(Ipv4Addr::new(127, 0, 0, 2)),
            },
            Ipv4Addr::new(127, 0, 0, 2),
        ),
        // IP_PKTINFO with the source only.
        1 => (
            SendMeta {
                dst,
                ifindex: 0,
                src: Some(Ipv4Addr::new(127, 0, 0, 3)),
            },
            Ipv4Addr::new(127, 0, 0, 3),
        ),
        // No control message: the socket's own address.
        _ => (
            SendMeta {
                dst,
                ifindex: 0,
                src: None,
            },
            Ipv4Addr::LOCALHOST,
        ),
    }
}

#[test]
fn send_batch_sends_32_replies_each_from_its_own_source() {
    let (sock, server) = one_socket();
    let lo = interface_index("lo").expect("index of lo");
    let clients: Vec<UdpSocket> = (0..32).map(|_| client((Ipv4Addr::LOCALHOST, 0))).collect();
    let mut batch = SendBatch::new(32, 1500).expect("batch");
    let mut want = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let (meta, from) = reply_meta(i, v4(c.local_addr().expect("client addr")), lo);
        assert!(batch.push(format!("reply {i:02}").as_bytes(), &meta));
        want.push(from);
    }
    assert!(batch.is_full());
    let (meta, _) = reply_meta(0, server, lo);
    assert!(!batch.push(b"one too many", &meta));

    let report = sock.send_batch(&mut batch).expect("send_batch");
    assert_eq!((report.sent, report.failed), (32, 0), "{report:?}");
    assert!(report.first_error.is_none());
    assert!(batch.is_empty(), "send_batch empties the batch");

    let mut buf = [0u8; 64];
    for (i, c) in clients.iter().enumerate() {
        let (n, from) = c.recv_from(&mut buf).expect("client receives its reply");
        assert_eq!(&buf[..n], format!("reply {i:02}").as_bytes());
        assert_eq!(
            v4(from),
            SocketAddrV4::new(want[i], server.port()),
            "reply {i}"
        );
    }

    // An empty batch sends nothing and reports nothing.
    let report = sock.send_batch(&mut batch).expect("empty send_batch");
    assert_eq!((report.sent, report.failed), (0, 0));
}

/// A reply the kernel refuses stops `sendmmsg` there; the rest of the batch is sent anyway and
/// the refusals are counted, the first one reported.
#[test]
fn send_batch_skips_refused_replies_and_sends_the_rest() {
    let (sock, server) = one_socket();
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    cli.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let dst = v4(cli.local_addr().expect("client addr"));
    let plain = SendMeta {
        dst,
        ifindex: 0,
        src: None,
    };
    let no_such_interface = SendMeta {
        ifindex: 999_999,
        ..plain
    };
    let mut batch = SendBatch::new(8, 65535).expect("batch");
    assert!(batch.push(b"first", &plain));
    assert!(batch.push(b"second", &plain));
    assert!(batch.push(b"no route", &no_such_interface));
    assert!(batch.push(b"third", &plain));
    // Fits the slot, but not an IPv4 UDP datagram (at most 65507 bytes of payload).
    assert!(batch.push(&[0u8; 65508], &plain));
    assert!(batch.push(b"fourth", &plain));
    // Longer than a slot: not queued at all.
    assert!(!batch.push(&[0u8; 65536], &plain));
    assert_eq!(batch.len(), 6);

    let report = sock.send_batch(&mut batch).expect("send_batch");
    assert_eq!((report.sent, report.failed), (4, 2), "{report:?}");
    assert_unknown_interface(report.first_error.as_ref(), dst.into());
    assert!(batch.is_empty());

    expect_replies(
        &cli,
        &[b"first", b"second", b"third", b"fourth"],
        server.into(),
    );
    let mut buf = [0u8; 64];
    // Nothing else arrives before the read timeout. (A receive with a timeout can also end in
    // EINTR without any signal handler, e.g. when the process is frozen and thawed: try again.)
    loop {
        match cli.recv_from(&mut buf) {
            Ok((n, from)) => panic!("unexpected datagram of {n} bytes from {from}"),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => {
                assert!(
                    matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut),
                    "{e}"
                );
                break;
            }
        }
    }
}
