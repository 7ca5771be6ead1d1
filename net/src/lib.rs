//! lessor-net: the sockets under lessor's DHCP workers, and the few kernel calls that route a
//! reply.
//!
//! Each family has its module with the same names for the same things, [`v4`] and [`v6`]. It
//! opens one `SO_REUSEPORT` group of IPv4 UDP sockets, one socket per worker
//! ([`v4::open_group`]), and can have the kernel steer each datagram to the worker that owns its
//! client with a classic BPF program on the group ([`v4::attach_steering`], [`v4::steer_index`]). It
//! receives datagrams together with where they arrived (`IP_PKTINFO`: interface, local address,
//! header destination; [`v4::RecvMeta`]) and sends replies out of a chosen interface from a
//! chosen source address ([`v4::SendMeta`]), one at a time or many per system call
//! ([`v4::RecvBatch`], [`v4::SendBatch`]: `recvmmsg`, `sendmmsg`). [`v6`] does the same for
//! IPv6 with `IPV6_PKTINFO`, where every socket of a group also joins the DHCPv6 multicast
//! group ff02::1:2 on the interfaces it serves, and the steering program walks relay layers to
//! the client's DUID ([`v6::attach_steering`], [`v6::steer_index`]). It lists the host's interfaces
//! ([`interfaces`]), installs ARP entries ([`set_arp_entry`]) so a reply can be unicast to a
//! client that has no address yet, and pins worker threads to cores ([`pin_current_thread`]).
//!
//! Both families' sockets are one type, [`Socket`], generic over the sealed [`Family`]
//! ([`v4::V4`], [`v6::V6`]); [`v4::Socket`] and [`v6::Socket`] name its two instances, and what
//! only one family does is an inherent method of its instance (e.g.
//! [`v4::Socket::set_arp_entry`]).
//!
//! It is not a DHCP implementation: it knows ports and addresses, never leases, and of the
//! messages only what steering reads (four bytes at a fixed offset for DHCPv4; for DHCPv6 the
//! relay header, option headers and the DUID's last four bytes). It makes no decision about
//! where a reply should go; the server does that and hands over a [`v4::SendMeta`]
//! or [`v6::SendMeta`]. The receive and send paths, batched or not, do not allocate.
//!
//! Linux only. `unsafe` is confined to the kernel interfaces that nix and socket2 do not wrap
//! without allocating (the `IP_PKTINFO` and `IPV6_PKTINFO` control messages,
//! `recvmmsg`/`sendmmsg` with a control message per datagram, the `SIOCSARP` ioctl); every block
//! says why it is sound.
//!
//! The DHCP header offsets the steering programs and the server's parsers share are named once
//! in [`wire`].

#![deny(clippy::undocumented_unsafe_blocks)]

mod affinity;
mod arp;
mod batch;
mod cmsg;
mod error;
mod family;
mod iface;
mod socket;
mod steer;
pub mod v4;
pub mod v6;
pub mod wire;

pub use affinity::{
    available_cores, current_thread_is_realtime, current_thread_nice, pin_current_thread,
    set_current_thread_nice, set_current_thread_realtime,
};
pub use arp::set_arp_entry;
pub use batch::{MAX_BATCH, SendReport};
pub use error::{Error, Result};
pub use family::Family;
pub use iface::{Interface, interface_index, interfaces};
pub use socket::{DEFAULT_READ_TIMEOUT, Socket, open_group};
