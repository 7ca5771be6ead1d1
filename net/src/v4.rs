//! IPv4 UDP sockets in `SO_REUSEPORT` groups, with `IP_PKTINFO` in both directions.
//!
//! A DHCPv4 server must know which interface a request came in on (the subnet is chosen by it,
//! not by the source address, which is usually 0.0.0.0) and must send the reply out of that same
//! interface, from that interface's own address, often to 255.255.255.255 where routing alone
//! cannot pick the interface. `IP_PKTINFO` gives both: on receive it reports the arrival
//! interface, the local address of that interface and the header destination; on send it pins
//! the outgoing interface and the source address, per datagram, on an unbound-to-device socket.
//!
//! The group, the receive timeout and the batched receive and send are shared with IPv6 in
//! [`crate::Socket`]; this module is what IPv4 adds to it ([`V4`]): `SO_BROADCAST`,
//! `IP_PKTINFO` and its control message, the metadata types and ARP entries through a socket.

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};

pub use crate::batch::v4::{RecvBatch, SendBatch};
use crate::cmsg::{CmsgBuf, cmsg_space};
use crate::error::Result;
use crate::family::Family;
use crate::family::{family, socket_config};
use crate::socket::setup_err;
pub use crate::steer::v4::{STEER_OFFSET, attach_steering, steer_index};

/// Where a datagram came from and how it arrived (from `IP_PKTINFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes of the datagram, at the start of the buffer given to [`Socket::recv`].
    pub len: usize,
    /// The sender's address and port.
    pub src: SocketAddrV4,
    /// Index of the interface the datagram arrived on (`ipi_ifindex`).
    pub ifindex: u32,
    /// The local address the kernel would answer from (`ipi_spec_dst`): for a unicast datagram
    /// its destination, for a broadcast one the primary address of the arrival interface.
    pub local: Ipv4Addr,
    /// The destination in the IP header (`ipi_addr`); 255.255.255.255 for a limited broadcast.
    pub dst: Ipv4Addr,
}

impl RecvMeta {
    /// The metadata of a `len`-byte datagram from `src` that arrived as `info` says.
    pub(crate) fn new(len: usize, src: SocketAddrV4, info: &libc::in_pktinfo) -> Self {
        Self {
            len,
            src,
            ifindex: u32::try_from(info.ipi_ifindex).unwrap_or(0),
            local: Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)),
            dst: Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)),
        }
    }
}

/// How to send one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendMeta {
    /// Destination address and port; may be 255.255.255.255 (every socket has `SO_BROADCAST`).
    pub dst: SocketAddrV4,
    /// Interface to send out of (`ipi_ifindex`); 0 lets routing decide. Needed for a limited
    /// broadcast on a host with more than one interface.
    pub ifindex: u32,
    /// Source address to use (`ipi_spec_dst`); `None` lets the kernel choose.
    pub src: Option<Ipv4Addr>,
}

socket_config! {
    /// How to open a group of worker sockets with [`open_group`].
    SocketConfig {
        /// Address to bind: 0.0.0.0 to hear broadcasts, or a specific address such as 127.0.0.1.
        bind: Ipv4Addr = Ipv4Addr::UNSPECIFIED,
        /// UDP port (67 for a DHCPv4 server). Must not be 0: a group needs one known port.
        port: u16 = crate::wire::v4::SERVER_PORT,
    }
    /// The DHCPv4 server port on every interface, one worker, system buffer sizes.
    default;
}

family! {
    V4,
    /// Also `SO_BROADCAST`, so a reply may go to 255.255.255.255.
    socket,
    open,
}

fn bind_addr(cfg: &SocketConfig) -> SocketAddrV4 {
    SocketAddrV4::new(cfg.bind, cfg.port)
}

fn check(_: &SocketConfig) -> Result<()> {
    Ok(())
}

fn set_options(sock: &socket2::Socket, addr: SocketAddr) -> Result<()> {
    let setup = |what| setup_err(what, addr);
    sock.set_broadcast(true)
        .map_err(setup("set SO_BROADCAST"))?;
    setsockopt(sock, sockopt::Ipv4PacketInfo, &true).map_err(|e| setup("set IP_PKTINFO")(e.into()))
}

fn after_bind(_: &socket2::Socket, _: &SocketConfig) -> Result<()> {
    Ok(())
}

fn multicast_ifindexes(_: &SocketConfig) -> &[u32] {
    &[]
}

fn blank_send_meta() -> SendMeta {
    SendMeta {
        dst: V4::ANY,
        ifindex: 0,
        src: None,
    }
}

/// The interface index `meta` asks for, 0 for any (as the send errors name it).
fn send_ifindex(meta: &SendMeta) -> u32 {
    meta.ifindex
}

impl Socket {
    /// [`set_arp_entry`](crate::set_arp_entry) through this socket instead of a fresh one: the
    /// same ioctl without a socket per reply. The entry goes into this socket's network
    /// namespace.
    pub fn set_arp_entry(&self, ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        crate::arp::set_arp_entry_with(self.as_fd(), ifname, ip, mac)
    }
}

pub(crate) const PKTINFO_SPACE: usize = cmsg_space::<libc::in_pktinfo>();
/// Receive room: one `IP_PKTINFO` is all a group socket asks for; twice that for slack.
pub(crate) const RECV_CMSG_SPACE: usize = 2 * PKTINFO_SPACE;

/// One `IP_PKTINFO` control message for `sendmsg`: out of interface `ifindex` (0: any; it fits
/// an `int`, as `encode` checked) from source `spec_dst` (0.0.0.0: any). `ipi_addr` is ignored
/// on send and left zero.
pub(crate) fn send_pktinfo(ifindex: u32, spec_dst: Ipv4Addr) -> CmsgBuf<PKTINFO_SPACE> {
    let info = libc::in_pktinfo {
        ipi_ifindex: libc::c_int::try_from(ifindex).unwrap_or(0),
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(spec_dst).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    CmsgBuf::one(libc::IPPROTO_IP, libc::IP_PKTINFO, info)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::Error;

    /// The receive-side parser skips another control message before the pktinfo (the
    /// bounds of one message are checked for both families in `family`).
    #[test]
    fn find_pktinfo_skips_other_messages() {
        let one = send_pktinfo(7, Ipv4Addr::new(192, 0, 2, 1));
        // Two messages: something else first (here IP_TOS in a pktinfo-sized frame), then the
        // pktinfo.
        let mut two = CmsgBuf::<RECV_CMSG_SPACE>::new();
        two.bytes[..PKTINFO_SPACE].copy_from_slice(&one.bytes);
        let second = send_pktinfo(9, Ipv4Addr::new(198, 51, 100, 1));
        two.bytes[PKTINFO_SPACE..].copy_from_slice(&second.bytes);
        let ty = std::mem::offset_of!(libc::cmsghdr, cmsg_type);
        two.bytes[ty..ty + 4].copy_from_slice(&libc::IP_TOS.to_ne_bytes());
        let info = two
            .find_pktinfo::<V4>(RECV_CMSG_SPACE)
            .expect("second message");
        assert_eq!(info.ipi_ifindex, 9);
        assert!(
            two.find_pktinfo::<V4>(PKTINFO_SPACE).is_none(),
            "only the first message"
        );
    }

    #[test]
    fn config_errors() {
        let zero_workers = SocketConfig {
            workers: 0,
            ..SocketConfig::default()
        };
        assert!(matches!(
            open_group(&zero_workers),
            Err(Error::InvalidConfig(_))
        ));
        let zero_port = SocketConfig {
            port: 0,
            ..SocketConfig::default()
        };
        assert!(matches!(
            open_group(&zero_port),
            Err(Error::InvalidConfig(_))
        ));
    }
}
