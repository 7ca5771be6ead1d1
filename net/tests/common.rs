//! Helpers shared by the test modules, written once over [`Family`] for IPv4 and IPv6.

use std::fmt::Debug;
use std::io::ErrorKind;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::time::Duration;

use lessor_net::{Socket, open_group, v4, v6};

/// What the shared helpers add to a socket family: the loopback address its groups open on.
pub(crate) trait Family: lessor_net::Family<Config: Default + Debug> {
    /// The loopback address groups are opened on.
    const LOOPBACK: IpAddr;

    /// Sets the address and port of `cfg` to the loopback address and `port`.
    fn bind(cfg: &mut Self::Config, port: u16);
    /// The settings of `cfg` every family has: sockets in the group, and the device.
    fn workers_and_device(cfg: &mut Self::Config) -> (&mut usize, &mut Option<String>);
    /// The length and source address `meta` records.
    fn len_and_src(meta: &Self::RecvMeta) -> (usize, SocketAddr);
}

/// IPv4 on 127.0.0.1.
impl Family for v4::V4 {
    const LOOPBACK: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn bind(cfg: &mut v4::SocketConfig, port: u16) {
        (cfg.bind, cfg.port) = (Ipv4Addr::LOCALHOST, port);
    }
    fn workers_and_device(cfg: &mut v4::SocketConfig) -> (&mut usize, &mut Option<String>) {
        (&mut cfg.workers, &mut cfg.device)
    }
    fn len_and_src(meta: &v4::RecvMeta) -> (usize, SocketAddr) {
        (meta.len, meta.src.into())
    }
}

/// IPv6 on ::1.
impl Family for v6::V6 {
    const LOOPBACK: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

    fn bind(cfg: &mut v6::SocketConfig, port: u16) {
        (cfg.bind, cfg.port) = (Ipv6Addr::LOCALHOST, port);
    }
    fn workers_and_device(cfg: &mut v6::SocketConfig) -> (&mut usize, &mut Option<String>) {
        (&mut cfg.workers, &mut cfg.device)
    }
    fn len_and_src(meta: &v6::RecvMeta) -> (usize, SocketAddr) {
        (meta.len, meta.src.into())
    }
}

/// Open a group on the family's loopback at a port that was free a moment ago: bind a plain
/// socket to port 0, note the port, close it, open the group there; another process may take
/// the port in between, so retry on `AddrInUse`. `adjust` edits the configuration first (bind
/// and port are set after).
pub(crate) fn loopback<F: Family>(adjust: impl Fn(&mut F::Config)) -> Vec<Socket<F>> {
    for _ in 0..20 {
        let port = UdpSocket::bind((F::LOOPBACK, 0))
            .and_then(|s| s.local_addr())
            .unwrap_or_else(|e| panic!("bind a probe socket on {}: {e}", F::LOOPBACK))
            .port();
        let mut cfg = F::Config::default();
        adjust(&mut cfg);
        F::bind(&mut cfg, port);
        match open_group::<F>(&cfg) {
            Ok(group) => return group,
            Err(e) if e.io_error().map(|e| e.kind()) == Some(ErrorKind::AddrInUse) => continue,
            Err(e) => panic!("open group ({cfg:?}): {e}"),
        }
    }
    panic!("no free {} port after 20 tries", F::LOOPBACK);
}

/// [`loopback`] for IPv4 with `workers` sockets bound to `device`.
pub(crate) fn loopback_group(workers: usize, device: Option<&str>) -> Vec<v4::Socket> {
    loopback_group_with(|cfg| {
        cfg.workers = workers;
        cfg.device = device.map(str::to_owned);
    })
}

/// [`loopback`] for IPv4.
pub(crate) fn loopback_group_with(adjust: impl Fn(&mut v4::SocketConfig)) -> Vec<v4::Socket> {
    loopback::<v4::V4>(adjust)
}

/// [`loopback`] for IPv6 with `workers` sockets.
pub(crate) fn loopback_group6(
    workers: usize,
    adjust: impl Fn(&mut v6::SocketConfig),
) -> Vec<v6::Socket> {
    loopback::<v6::V6>(|cfg| {
        cfg.workers = workers;
        adjust(cfg);
    })
}

/// Wait for one datagram on any socket of `group`; which socket gets it is the kernel's choice.
/// Returns the socket's position in the group and what it received. The overall wait is a
/// liveness bound (about 10 s), not an assertion about timing.
pub(crate) fn recv_any_of<F: Family>(group: &[Socket<F>], buf: &mut [u8]) -> (usize, F::RecvMeta) {
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

/// [`recv_any_of`] for IPv4.
pub(crate) fn recv_any(group: &[v4::Socket], buf: &mut [u8]) -> (usize, v4::RecvMeta) {
    recv_any_of::<v4::V4>(group, buf)
}

/// [`recv_any_of`] for IPv6.
pub(crate) fn recv_any6(group: &[v6::Socket], buf: &mut [u8]) -> (usize, v6::RecvMeta) {
    recv_any_of::<v6::V6>(group, buf)
}

/// A new client on the family's loopback sends `payload` to `group`; returns the client, the
/// index of the socket that got the datagram and its metadata, checked for the payload, its
/// length and the client's address.
pub(crate) fn request_into<F: Family>(
    group: &[Socket<F>],
    payload: &[u8],
) -> (UdpSocket, usize, F::RecvMeta) {
    let server: SocketAddr = group[0].local_addr().expect("local_addr").into();
    let cli = client((F::LOOPBACK, 0));
    let cli_addr = cli.local_addr().expect("client addr");
    cli.send_to(payload, server).expect("client send");

    let mut buf = [0u8; 1500];
    let (k, meta) = recv_any_of(group, &mut buf);
    let (len, src) = F::len_and_src(&meta);
    assert_eq!(&buf[..len], payload);
    assert_eq!(len, payload.len());
    assert_eq!(src, cli_addr);
    (cli, k, meta)
}

/// A plain client socket with a generous receive timeout, so a lost reply fails the test
/// instead of hanging it.
pub(crate) fn client(bind: impl Into<SocketAddr>) -> UdpSocket {
    let s = UdpSocket::bind(bind.into()).expect("bind client socket");
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("client read timeout");
    s
}

/// [`client`] on ::1.
pub(crate) fn client6() -> UdpSocket {
    client((Ipv6Addr::LOCALHOST, 0))
}

/// The IPv4 address in `addr`.
pub(crate) fn v4(addr: SocketAddr) -> SocketAddrV4 {
    match addr {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(a) => panic!("expected IPv4, got {a}"),
    }
}

/// The IPv6 address in `addr`.
pub(crate) fn v6(addr: SocketAddr) -> SocketAddrV6 {
    match addr {
        SocketAddr::V6(a) => a,
        SocketAddr::V4(a) => panic!("expected IPv6, got {a}"),
    }
}

/// The client `cli` receives `wants`, in order, each from `server`.
pub(crate) fn expect_replies(cli: &UdpSocket, wants: &[&[u8]], server: SocketAddr) {
    for want in wants {
        assert_eq!(expect_datagram(cli, want), server);
    }
}

/// `sock`'s next datagram, which must be `want`; where it came from.
pub(crate) fn expect_datagram(sock: &UdpSocket, want: &[u8]) -> SocketAddr {
    let mut buf = [0u8; 1500];
    let (n, from) = sock
        .recv_from(&mut buf)
        .unwrap_or_else(|e| panic!("no datagram b\"{}\": {e}", want.escape_ascii()));
    assert_eq!(&buf[..n], want);
    from
}

/// `err` is the failure to bind to the device `lessor-nodev0`, which does not exist: a
/// [`Error::BindDevice`](lessor_net::Error::BindDevice) naming it, from `ENODEV`.
pub(crate) fn assert_names_missing_device(err: &lessor_net::Error) {
    assert!(
        matches!(err, lessor_net::Error::BindDevice { .. }),
        "{err:?}"
    );
    assert!(err.to_string().contains("\"lessor-nodev0\""), "{err}");
    assert_eq!(
        err.io_error().and_then(|e| e.raw_os_error()),
        Some(libc::ENODEV)
    );
}

/// `first`, the first error of a batch send, is the kernel's `ENODEV` for the reply to `dst`
/// through interface 999999, an index no interface has.
pub(crate) fn assert_unknown_interface(first: Option<&lessor_net::Error>, dst: SocketAddr) {
    use lessor_net::Error;
    let (to, ifindex, source) = match first {
        Some(Error::Send {
            dst,
            ifindex,
            source,
        }) => (SocketAddr::from(*dst), *ifindex, source),
        Some(Error::Send6 {
            dst,
            ifindex,
            source,
        }) => (SocketAddr::from(*dst), *ifindex, source),
        other => panic!("first error should be the unknown interface: {other:?}"),
    };
    assert_eq!((to, ifindex), (dst, 999_999), "first error: {source}");
    assert_eq!(source.raw_os_error(), Some(libc::ENODEV), "{source}");
}
