//! The receive and send paths must not allocate: counted with a global allocator that tallies
//! allocations made by the current thread while armed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};

use lessor_net::interface_index;
use lessor_net::v4::{RecvBatch, SendBatch, SendMeta};

use crate::common::{client, loopback_group, recv_any};

struct Counting;

thread_local! {
    static ARMED: Cell<bool> = const { Cell::new(false) };
    static COUNT: Cell<u64> = const { Cell::new(0) };
}

// SAFETY: every call is forwarded unchanged to the system allocator; the thread-local cells
// are const-initialised without destructors, so touching them never allocates or recurses.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System.alloc` above with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if ARMED.with(Cell::get) {
            COUNT.with(|c| c.set(c.get() + 1));
        }
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Allocations `f` makes on this thread (also used by `v6_tests`).
pub(crate) fn allocations<T>(f: impl FnOnce() -> T) -> (T, u64) {
    COUNT.with(|c| c.set(0));
    ARMED.with(|a| a.set(true));
    let out = f();
    ARMED.with(|a| a.set(false));
    (out, COUNT.with(Cell::get))
}

#[test]
fn recv_and_send_do_not_allocate() {
    let group = loopback_group(1, None);
    let server = group[0].local_addr().expect("local_addr");
    let lo = interface_index("lo").expect("index of lo");
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    let mut buf = [0u8; 1500];
    let mut got = [0u8; 64];
    for round in 0..3 {
        cli.send_to(b"request", server).expect("client send");
        // Wait outside the counted window; the datagram is then queued for the counted recv.
        let (_, first) = recv_any(&group, &mut buf);
        cli.send_to(b"request", server).expect("client send");
        group[0]
            .set_read_timeout(Some(std::time::Duration::from_secs(10)))
            .expect("timeout");
        let (meta, n) = allocations(|| group[0].recv(&mut buf));
        let meta = meta.expect("recv").expect("queued datagram");
        assert_eq!(meta.src, first.src);
        assert_eq!(n, 0, "recv allocated {n} times (round {round})");

        for reply in [
            SendMeta {
                dst: meta.src,
                ifindex: lo,
                src: Some(Ipv4Addr::LOCALHOST),
            },
            SendMeta {
                dst: meta.src,
                ifindex: 0,
                src: None,
            },
        ] {
            let (res, n) = allocations(|| group[0].send(b"reply", &reply));
            res.expect("send");
            assert_eq!(n, 0, "send allocated {n} times ({reply:?})");
            let (len, from) = cli.recv_from(&mut got).expect("client receives");
            assert_eq!(&got[..len], b"reply");
            assert_eq!(
                from,
                SocketAddrV4::new(Ipv4Addr::LOCALHOST, server.port()).into()
            );
        }
    }
}

#[test]
fn recv_batch_and_send_batch_do_not_allocate() {
    let group = loopback_group(1, None);
    let server = group[0].local_addr().expect("local_addr");
    let lo = interface_index("lo").expect("index of lo");
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    let cli_addr = match cli.local_addr().expect("client addr") {
        std::net::SocketAddr::V4(a) => a,
        other => panic!("expected IPv4, got {other}"),
    };
    // Made once, outside the counted window, as a worker makes them at startup.
    let mut rx = RecvBatch::new(16, 1500).expect("recv batch");
    let mut tx = SendBatch::new(16, 1500).expect("send batch");
    group[0]
        .set_read_timeout(Some(std::time::Duration::from_secs(10)))
        .expect("timeout");
    for round in 0..3 {
        for _ in 0..4 {
            cli.send_to(b"request", server).expect("client send");
        }
        // Waits for the first datagram; the rest may come in a later call.
        let mut received = 0;
        while received < 4 {
            let (res, n) = allocations(|| group[0].recv_batch(&mut rx, true));
            received += res.expect("recv_batch");
            assert_eq!(n, 0, "recv_batch allocated {n} times (round {round})");
        }
        let (res, n) = allocations(|| {
            for i in 0..4 {
                let meta = SendMeta {
                    dst: cli_addr,
                    ifindex: if i % 2 == 0 { lo } else { 0 },
                    src: (i < 2).then_some(Ipv4Addr::LOCALHOST),
                };
                assert!(tx.push(b"reply", &meta));
            }
            group[0].send_batch(&mut tx)
        });
        four_replies_sent_without_allocating(res, n, round, &cli);
    }
}

/// The checks after a round of four replies pushed and sent by `send_batch`, which `n`
/// allocations made and which returned `res`: all four sent, nothing allocated, and `cli`
/// receives the four of them.
pub(crate) fn four_replies_sent_without_allocating(
    res: lessor_net::Result<lessor_net::SendReport>,
    n: u64,
    round: usize,
    cli: &std::net::UdpSocket,
) {
    let report = res.expect("send_batch");
    assert_eq!((report.sent, report.failed), (4, 0));
    assert_eq!(n, 0, "push/send_batch allocated {n} times (round {round})");
    let mut got = [0u8; 64];
    for _ in 0..4 {
        let (len, _) = cli.recv_from(&mut got).expect("client receives");
        assert_eq!(&got[..len], b"reply");
    }
}
