//! The crate's error type.

use std::io;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

/// Result of a lessor-net operation.
pub type Result<T> = std::result::Result<T, Error>;

/// Everything that can go wrong in lessor-net. Each variant names what was being done and, where
/// there is one, the address or interface it was done to; the kernel's reason is the `source`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A [`v4::SocketConfig`](crate::v4::SocketConfig) or [`v6::SocketConfig`](crate::v6::SocketConfig)
    /// that cannot be opened as given, or a batch shape or timeout out of range.
    #[error("invalid socket configuration: {0}")]
    InvalidConfig(&'static str),

    /// Creating a socket or setting one of its options failed; `what` names the step.
    #[error("cannot {what} for UDP socket {addr}: {source}")]
    SocketSetup {
        /// The step that failed, e.g. "set SO_REUSEPORT".
        what: &'static str,
        /// The address the socket was being opened for.
        addr: SocketAddr,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `bind(2)` failed: the address is not local, or the port is taken by a socket outside the
    /// group (`AddrInUse`; a `SO_REUSEPORT` group only shares a port within one user id).
    #[error("cannot bind UDP socket to {addr}: {source}")]
    Bind {
        /// The address being bound.
        addr: SocketAddr,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `SO_BINDTODEVICE` failed, typically because no interface has that name (`ENODEV`).
    #[error("cannot bind UDP socket {addr} to device {device:?}: {source}")]
    BindDevice {
        /// The interface name from the configuration.
        device: String,
        /// The address the socket was being opened for.
        addr: SocketAddr,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `recvmsg(2)` failed with something other than a timeout or an interruption.
    #[error("cannot receive on UDP socket: {source}")]
    Recv {
        /// The kernel's reason.
        source: io::Error,
    },

    /// A datagram arrived without its `IP_PKTINFO` control message, so there is no telling which
    /// interface it came in on. Not expected: every socket of a group has `IP_PKTINFO` on.
    #[error("received datagram from {src} without IP_PKTINFO")]
    MissingPacketInfo {
        /// Who sent the datagram.
        src: SocketAddrV4,
    },

    /// `sendmsg(2)` failed (e.g. `ENETUNREACH`, `EPERM` from a firewall, `ENOBUFS`).
    #[error("cannot send to {dst} (ifindex {ifindex}): {source}")]
    Send {
        /// The destination of the reply.
        dst: SocketAddrV4,
        /// The interface index asked for, 0 if routing chose.
        ifindex: u32,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `sendmsg(2)` took fewer bytes than the datagram holds.
    #[error("short send to {dst}: {sent} of {len} bytes")]
    ShortSend {
        /// The destination of the reply.
        dst: SocketAddrV4,
        /// Bytes the kernel took.
        sent: usize,
        /// Bytes in the datagram.
        len: usize,
    },

    /// An IPv6 datagram arrived without its `IPV6_PKTINFO` control message, so there is no
    /// telling which interface it came in on or whether it was multicast. Not expected: every
    /// socket of a group has `IPV6_RECVPKTINFO` on.
    #[error("received datagram from {src} without IPV6_PKTINFO")]
    MissingPacketInfo6 {
        /// Who sent the datagram.
        src: SocketAddrV6,
    },

    /// `sendmsg(2)` on an IPv6 socket failed (e.g. `ENETUNREACH`; `EINVAL` for a source address
    /// that is not local, or an interface that contradicts the destination's scope id).
    #[error("cannot send to {dst} (ifindex {ifindex}): {source}")]
    Send6 {
        /// The destination of the reply.
        dst: SocketAddrV6,
        /// The interface index asked for, 0 if routing (or the scope id) chose.
        ifindex: u32,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `sendmsg(2)` on an IPv6 socket took fewer bytes than the datagram holds.
    #[error("short send to {dst}: {sent} of {len} bytes")]
    ShortSend6 {
        /// The destination of the reply.
        dst: SocketAddrV6,
        /// Bytes the kernel took.
        sent: usize,
        /// Bytes in the datagram.
        len: usize,
    },

    /// Joining a multicast group (`IPV6_ADD_MEMBERSHIP`) failed: `ENODEV` for an unknown
    /// interface index, `EADDRINUSE` when this socket has joined it there already, `ENOMEM` when
    /// socket option memory (`net.core.optmem_max`) runs out after many interfaces.
    #[error("cannot join multicast group {group} on interface {ifindex}: {source}")]
    JoinMulticast {
        /// The group, e.g. ff02::1:2.
        group: Ipv6Addr,
        /// The interface index it was joined on.
        ifindex: u32,
        /// The kernel's reason.
        source: io::Error,
    },

    /// Reading a socket's own state (local address, options) failed.
    #[error("cannot {what}: {source}")]
    SocketQuery {
        /// What was being read, e.g. "read local address".
        what: &'static str,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `getifaddrs(3)` failed.
    #[error("cannot list network interfaces: {source}")]
    Interfaces {
        /// The kernel's reason.
        source: io::Error,
    },

    /// No interface has this name, or its name cannot be one (empty, longer than 15 bytes,
    /// contains NUL).
    #[error("no usable interface {name:?}: {reason}")]
    InterfaceName {
        /// The name as given.
        name: String,
        /// Why it was rejected.
        reason: String,
    },

    /// `SO_ATTACH_REUSEPORT_CBPF` failed: the kernel rejected the steering program or the
    /// socket is not in a `SO_REUSEPORT` group (`EINVAL`), or socket option memory ran out
    /// (`ENOMEM`, `net.core.optmem_max`).
    #[error("cannot attach the steering program to a group of {workers} sockets: {source}")]
    Steering {
        /// Sockets in the group.
        workers: usize,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `sched_setaffinity(2)` refused to pin the thread to this core (`EINVAL`: not allowed,
    /// offline, or out of range).
    #[error("cannot pin thread to core {core}: {source}")]
    Affinity {
        /// The core asked for.
        core: usize,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `setpriority(2)` refused to change the thread's nice value (`EACCES`: lowering it
    /// needs `CAP_SYS_NICE`).
    #[error("cannot set the thread's nice value to {nice}: {source}")]
    Priority {
        /// The nice value asked for.
        nice: i32,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `sched_setscheduler(2)` refused to change the thread's scheduling policy (`EPERM`:
    /// a real-time policy needs `CAP_SYS_NICE` or an `RLIMIT_RTPRIO` that allows it).
    #[error("cannot set the thread's scheduling policy to {policy}: {source}")]
    Scheduler {
        /// The policy asked for.
        policy: &'static str,
        /// The kernel's reason.
        source: io::Error,
    },

    /// `SIOCSARP` failed: `EPERM` without `CAP_NET_ADMIN`, `ENODEV` for an unknown interface,
    /// `EINVAL` for an interface without Ethernet ARP (loopback, tun). The caller should fall
    /// back to a broadcast reply.
    #[error("cannot set ARP entry {ip} -> {} on {ifname:?}: {source}", MacDisplay(.mac))]
    Arp {
        /// The interface name.
        ifname: String,
        /// The IPv4 address of the entry.
        ip: Ipv4Addr,
        /// The hardware address of the entry.
        mac: [u8; 6],
        /// The kernel's reason.
        source: io::Error,
    },
}

impl Error {
    /// The operating-system error under this one, if there is one: lets a caller tell
    /// `AddrInUse` or `PermissionDenied` apart without matching every variant.
    pub fn io_error(&self) -> Option<&io::Error> {
        match self {
            Self::SocketSetup { source, .. }
            | Self::Bind { source, .. }
            | Self::BindDevice { source, .. }
            | Self::Recv { source }
            | Self::Send { source, .. }
            | Self::Send6 { source, .. }
            | Self::JoinMulticast { source, .. }
            | Self::SocketQuery { source, .. }
            | Self::Interfaces { source }
            | Self::Arp { source, .. }
            | Self::Steering { source, .. }
            | Self::Affinity { source, .. }
            | Self::Priority { source, .. }
            | Self::Scheduler { source, .. } => Some(source),
            Self::InvalidConfig(_)
            | Self::MissingPacketInfo { .. }
            | Self::MissingPacketInfo6 { .. }
            | Self::ShortSend { .. }
            | Self::ShortSend6 { .. }
            | Self::InterfaceName { .. } => None,
        }
    }
}

/// `aa:bb:cc:dd:ee:ff`.
struct MacDisplay<'a>(&'a [u8; 6]);

impl std::fmt::Display for MacDisplay<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}
