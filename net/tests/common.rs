//! Helpers shared by the test modules.

use std::io::ErrorKind;
use std::net::{Ipv4Addr, UdpSocket};
use std::time::Duration;

use lessor_net::{RecvMeta, V4Socket, V4SocketConfig, open_v4_group};

/// Open a group on 127.0.0.1 at a port that was free a moment ago: bind a plain socket to port
/// 0, note the port, close it, open the group there; another process may take the port in
/// between, so retry on `AddrInUse`.
pub(crate) fn loopback_group(workers: usize, device: Option<&str>) -> Vec<V4Socket> {
    loopback_group_with(|cfg| {
        cfg.workers = workers;
        cfg.device = device.map(str::to_owned);
    })
}

/// [`loopback_group`] with the configuration adjusted by `adjust` (bind and port are set after).
pub(crate) fn loopback_group_with(adjust: impl Fn(&mut V4SocketConfig)) -> Vec<V4Socket> {
    for _ in 0..20 {
        let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
            .and_then(|s| s.local_addr())
            .expect("bind a probe socket on 127.0.0.1")
            .port();
        let mut cfg = V4SocketConfig::default();
        adjust(&mut cfg);
        cfg.bind = Ipv4Addr::LOCALHOST;
        cfg.port = port;
        match open_v4_group(&cfg) {
            Ok(group) => return group,
            Err(e) if e.io_error().map(|e| e.kind()) == Some(ErrorKind::AddrInUse) => continue,
            Err(e) => panic!("open_v4_group({cfg:?}): {e}"),
        }
    }
    panic!("no free loopback port after 20 tries");
}

/// Wait for one datagram on any socket of `group`; which socket gets it is the kernel's choice.
/// Returns the socket's position in the group and what it received. The overall wait is a
/// liveness bound (about 10 s), not an assertion about timing.
pub(crate) fn recv_any(group: &[V4Socket], buf: &mut [u8]) -> (usize, RecvMeta) {
    for s in group {
        s.set_read_timeout(Some(Duration::from_millis(20)))
            .expect("set read timeout");
    }
    for _ in 0..500 {
        for (k, s) in group.iter().enumerate() {
            if let Some(meta) = s.recv(buf).expect("recv") {
                return (k, meta);
            }
        }
    }
    panic!("no datagram reached the group");
}

/// A plain client socket with a generous receive timeout, so a lost reply fails the test
/// instead of hanging it.
pub(crate) fn client(bind: (Ipv4Addr, u16)) -> UdpSocket {
    let s = UdpSocket::bind(bind).expect("bind client socket");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("client read timeout");
    s
}
