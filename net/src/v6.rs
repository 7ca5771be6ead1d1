//! IPv6 UDP sockets in `SO_REUSEPORT` groups, joined to ff02::1:2, with `IPV6_PKTINFO` in both
//! directions.
//!
//! A DHCPv6 client that is on the server's link sends to the All_DHCP_Relay_Agents_and_Servers
//! group ff02::1:2, port 547, from its link-local address (RFC 8415 §7.1, §7.2); a relay sends
//! RELAY-FORW by unicast. The server needs to know which interface a datagram came in on and
//! whether it was multicast or unicast, and answers a direct client by unicast to the
//! link-local source, through that same interface (RFC 8415 §18.3.10). `IPV6_RECVPKTINFO`
//! reports the arrival interface and the header destination; the sender's `sockaddr_in6`
//! carries the scope id (the interface index) of a link-local source, so [`RecvMeta::src`] can
//! be used as a reply destination as it is; an `IPV6_PKTINFO` control message on send pins the
//! source address and the outgoing interface per datagram ([`SendMeta`]).
//!
//! # Multicast and the `SO_REUSEPORT` group
//!
//! Each worker owns one socket of the group, as for IPv4, and the kernel spreads *unicast*
//! datagrams over the group by a hash of the 4-tuple, or by the client's DUID once
//! [`attach_steering`] put its program on the group. A *multicast* datagram skips that
//! selection: like an IPv4 broadcast it is copied to every socket of the group that matches
//! it, so every worker sees every request sent to ff02::1:2. Every socket joins the group (on
//! each interface of [`SocketConfig::multicast_ifindexes`]), so that the group keeps working
//! whichever sockets exist. The server must answer such a request once: each worker recognises
//! it by [`RecvMeta::dst`] being multicast and keeps only the requests whose client it owns
//! (for example by the engine's shard for the client's DUID), dropping the other copies
//! silently.
//!
//! The kernel's per-socket multicast filter compares the group address, not the interface. So
//! every socket turns `IPV6_MULTICAST_ALL` off: without that, a socket bound to `[::]:547`
//! would also receive datagrams to any group anything on the host joined (ff02::1 all-nodes
//! included). What remains: a datagram to ff02::1:2 that arrives on an interface where
//! *something else* joined ff02::1:2 (a relay agent on the same host) also reaches the group.
//! The server checks [`RecvMeta::ifindex`] against the interfaces it serves, or sets
//! [`SocketConfig::device`].
//!
//! A DHCPv6 server never sends multicast (its replies go to a client's link-local address or a
//! relay's address, both unicast), so the multicast hop limit and loopback keep the kernel's
//! defaults (1 and on).
//!
//! # Test mode
//!
//! Bound to a unicast address such as ::1 on a port other than 547, with no multicast groups,
//! the group behaves as a plain unicast server: replies go to the source address and port of
//! the request, which is what [`RecvMeta::src`] holds.

use std::net::{Ipv6Addr, SocketAddr, SocketAddrV6};

use nix::sys::socket::{setsockopt, sockopt};

pub use crate::batch::v6::{RecvBatch, SendBatch};
use crate::cmsg::{CmsgBuf, cmsg_space};
use crate::error::{Error, Result};
use crate::family::Family;
use crate::family::{family, socket_config};
use crate::socket::setup_err;
pub use crate::steer::v6::{STEER_STEPS, attach_steering, steer_index};

/// All_DHCP_Relay_Agents_and_Servers, ff02::1:2 (RFC 8415 §7.1): where clients on the link send
/// every request.
pub const ALL_DHCP_RELAY_AGENTS_AND_SERVERS: Ipv6Addr = Ipv6Addr::new(0xff02, 0, 0, 0, 0, 0, 1, 2);

/// Where a datagram came from and how it arrived (from `IPV6_PKTINFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes of the datagram, at the start of the buffer given to [`Socket::recv`].
    pub len: usize,
    /// The sender's address and port. For a link-local sender the scope id is the arrival
    /// interface, so this is a usable reply destination as it is.
    pub src: SocketAddrV6,
    /// The destination in the IP header (`ipi6_addr`): ff02::1:2 for a request from a client on
    /// the link, which every socket of the group receives a copy of; a unicast address of this
    /// host for a relay's RELAY-FORW or a unicast request, which one socket receives.
    pub dst: Ipv6Addr,
    /// Index of the interface the datagram arrived on (`ipi6_ifindex`).
    pub ifindex: u32,
}

impl RecvMeta {
    /// The metadata of a `len`-byte datagram from `src` that arrived as `info` says.
    pub(crate) fn new(len: usize, src: SocketAddrV6, info: &libc::in6_pktinfo) -> Self {
        Self {
            len,
            src,
            dst: Ipv6Addr::from(info.ipi6_addr.s6_addr),
            ifindex: info.ipi6_ifindex,
        }
    }
}

/// How to send one datagram.
///
/// For a client on the link, the usual reply is `dst: meta.src` (link-local, with its scope
/// id), `ifindex: Some(meta.ifindex)` and `src` the server's link-local address on that
/// interface or `None` to let the kernel pick one. For a relay, `dst: meta.src` and `src:
/// Some(meta.dst)` (the address the relay sent to).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendMeta {
    /// Destination address and port. A link-local destination needs its scope id (the
    /// interface index) unless `ifindex` is given; when both are, they must agree (the kernel
    /// says `EINVAL` otherwise).
    pub dst: SocketAddrV6,
    /// Source address (`ipi6_addr`); `None` lets the kernel choose. Must be an address of this
    /// host, and for a link-local one, of the outgoing interface.
    pub src: Option<Ipv6Addr>,
    /// Interface to send out of (`ipi6_ifindex`); `None` (or `Some(0)`) lets the scope id or
    /// routing decide.
    pub ifindex: Option<u32>,
}

socket_config! {
    /// How to open a group of worker sockets with [`open_group`].
    SocketConfig {
        /// Address to bind: `::` to hear multicast and every unicast address, or a specific
        /// address such as ::1 (test mode; no multicast arrives then).
        bind: Ipv6Addr = Ipv6Addr::UNSPECIFIED,
        /// UDP port (547 for a DHCPv6 server). Must not be 0: a group needs one known port.
        port: u16 = crate::wire::v6::SERVER_PORT,
    }
    then {
        /// Indexes of the interfaces on which every socket joins
        /// [`ff02::1:2`](ALL_DHCP_RELAY_AGENTS_AND_SERVERS) (e.g. from
        /// [`interface_index`](crate::interface_index)). Empty: unicast only, as behind relays or
        /// in test mode. Needs `bind` = `::`; no index may be 0 or repeated.
        multicast_ifindexes: Vec<u32> = Vec::new(),
    }
    /// The DHCPv6 server port on every address, one worker, system buffer sizes, no multicast
    /// group joined (set [`multicast_ifindexes`](Self::multicast_ifindexes) to hear clients on
    /// the link).
    default;
}

family! {
    /// Its peer addresses carry the scope id of a link-local address.
    V6,
    /// Options besides the shared ones: `IPV6_V6ONLY`, `IPV6_RECVPKTINFO`, `IPV6_MULTICAST_ALL`
    /// off, and membership of ff02::1:2 on the configured interfaces. Multicast datagrams reach
    /// every socket of the group ([below](#multicast)); unicast ones reach one.
    ///
    /// # Multicast
    ///
    /// A datagram to ff02::1:2 is delivered to every socket of the group, not to one: each worker
    /// must tell by [`RecvMeta::dst`] that it is a shared copy and answer only the clients it owns.
    /// The sockets hear only the group they joined (`IPV6_MULTICAST_ALL` off), but the kernel does
    /// not filter by interface: check [`RecvMeta::ifindex`], or set [`SocketConfig::device`].
    socket,
    /// Each socket joins ff02::1:2 on every interface of `cfg.multicast_ifindexes`; an interface
    /// index that does not exist gives [`Error::JoinMulticast`] with `ENODEV`.
    open,
}

fn bind_addr(cfg: &SocketConfig) -> SocketAddrV6 {
    SocketAddrV6::new(cfg.bind, cfg.port, 0, 0)
}

fn check(cfg: &SocketConfig) -> Result<()> {
    if !cfg.multicast_ifindexes.is_empty() && !cfg.bind.is_unspecified() {
        return Err(Error::InvalidConfig(
            "joining ff02::1:2 needs bind = `::`: a socket bound to a unicast address never \
             receives multicast",
        ));
    }
    if cfg.multicast_ifindexes.contains(&0) {
        return Err(Error::InvalidConfig(
            "multicast interface index 0 would let routing pick the link; name each interface",
        ));
    }
    for (i, ifindex) in cfg.multicast_ifindexes.iter().enumerate() {
        if cfg.multicast_ifindexes[..i].contains(ifindex) {
            return Err(Error::InvalidConfig(
                "multicast interface indexes must not repeat",
            ));
        }
    }
    Ok(())
}

fn set_options(sock: &socket2::Socket, addr: SocketAddr) -> Result<()> {
    let setup = |what| setup_err(what, addr);
    // Without it a socket bound to `::` would also take IPv4 datagrams (as v4-mapped
    // addresses) on the same port, and collide with an IPv4 group there.
    sock.set_only_v6(true).map_err(setup("set IPV6_V6ONLY"))?;
    setsockopt(sock, sockopt::Ipv6RecvPacketInfo, &true)
        .map_err(|e| setup("set IPV6_RECVPKTINFO")(e.into()))?;
    sock.set_multicast_all_v6(false)
        .map_err(setup("clear IPV6_MULTICAST_ALL"))
}

fn after_bind(sock: &socket2::Socket, cfg: &SocketConfig) -> Result<()> {
    for &ifindex in &cfg.multicast_ifindexes {
        sock.join_multicast_v6(&ALL_DHCP_RELAY_AGENTS_AND_SERVERS, ifindex)
            .map_err(|source| Error::JoinMulticast {
                group: ALL_DHCP_RELAY_AGENTS_AND_SERVERS,
                ifindex,
                source,
            })?;
    }
    Ok(())
}

fn multicast_ifindexes(cfg: &SocketConfig) -> &[u32] {
    &cfg.multicast_ifindexes
}

fn blank_send_meta() -> SendMeta {
    SendMeta {
        dst: V6::ANY,
        src: None,
        ifindex: None,
    }
}

/// The interface index `meta` asks for, 0 for any (as the send errors name it).
fn send_ifindex(meta: &SendMeta) -> u32 {
    meta.ifindex.unwrap_or(0)
}

pub(crate) const PKTINFO_SPACE: usize = cmsg_space::<libc::in6_pktinfo>();
/// Receive room: one `IPV6_PKTINFO` is all a group socket asks for; twice that for slack.
pub(crate) const RECV_CMSG_SPACE: usize = 2 * PKTINFO_SPACE;

/// One `IPV6_PKTINFO` control message for `sendmsg`: out of interface `ifindex` (0: any) from
/// source `src` (`::`: any).
pub(crate) fn send_pktinfo(ifindex: u32, src: Ipv6Addr) -> CmsgBuf<PKTINFO_SPACE> {
    let info = libc::in6_pktinfo {
        ipi6_addr: libc::in6_addr {
            s6_addr: src.octets(),
        },
        ipi6_ifindex: ifindex,
    };
    CmsgBuf::one(libc::IPPROTO_IPV6, libc::IPV6_PKTINFO, info)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receive-side parser passes over an IPv4 pktinfo before the IPv6 one (the bounds
    /// of one message are checked for both families in `family`).
    #[test]
    fn find_pktinfo_skips_an_ipv4_pktinfo() {
        let one = send_pktinfo(9, Ipv6Addr::LOCALHOST);
        // Two messages: an IPv4 pktinfo (same type number space, other level) first.
        let mut two = CmsgBuf::<RECV_CMSG_SPACE>::new();
        let v4 = crate::v4::send_pktinfo(3, std::net::Ipv4Addr::LOCALHOST);
        two.bytes[..v4.bytes.len()].copy_from_slice(&v4.bytes);
        two.bytes[v4.bytes.len()..v4.bytes.len() + PKTINFO_SPACE].copy_from_slice(&one.bytes);
        let info = two
            .find_pktinfo::<V6>(RECV_CMSG_SPACE)
            .expect("second message");
        assert_eq!(info.ipi6_ifindex, 9);
        assert!(two.find_pktinfo::<V6>(v4.bytes.len()).is_none());
    }

    #[test]
    fn meta_from_pktinfo() {
        let info = libc::in6_pktinfo {
            ipi6_addr: libc::in6_addr {
                s6_addr: ALL_DHCP_RELAY_AGENTS_AND_SERVERS.octets(),
            },
            ipi6_ifindex: 4,
        };
        let src = SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2), 546, 0, 4);
        let meta = RecvMeta::new(10, src, &info);
        assert_eq!(meta.dst, ALL_DHCP_RELAY_AGENTS_AND_SERVERS);
        assert_eq!((meta.len, meta.src, meta.ifindex), (10, src, 4));
        assert_eq!(ALL_DHCP_RELAY_AGENTS_AND_SERVERS.to_string(), "ff02::1:2");
    }

    #[test]
    fn config_errors() {
        let bad = [
            SocketConfig {
                workers: 0,
                ..SocketConfig::default()
            },
            SocketConfig {
                port: 0,
                ..SocketConfig::default()
            },
            SocketConfig {
                device: Some(String::new()),
                ..SocketConfig::default()
            },
            SocketConfig {
                bind: Ipv6Addr::LOCALHOST,
                multicast_ifindexes: vec![1],
                ..SocketConfig::default()
            },
            SocketConfig {
                multicast_ifindexes: vec![0],
                ..SocketConfig::default()
            },
            SocketConfig {
                multicast_ifindexes: vec![1, 2, 1],
                ..SocketConfig::default()
            },
        ];
        for cfg in bad {
            assert!(
                matches!(open_group(&cfg), Err(Error::InvalidConfig(_))),
                "{cfg:?}"
            );
        }
    }
}
