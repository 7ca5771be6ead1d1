//! lessor-net: the sockets under lessor's DHCP workers, and the few kernel calls that route a
//! reply.
//!
//! It opens one `SO_REUSEPORT` group of IPv4 UDP sockets, one socket per worker
//! ([`open_v4_group`]), receives datagrams together with where they arrived (`IP_PKTINFO`:
//! interface, local address, header destination; [`RecvMeta`]) and sends replies out of a chosen
//! interface from a chosen source address ([`SendMeta`]). It lists the host's interfaces
//! ([`interfaces`]) and installs ARP entries ([`set_arp_entry`]) so a reply can be unicast to a
//! client that has no address yet.
//!
//! It is not a DHCP implementation: it knows ports and addresses, never message types, options
//! or leases, and it makes no decision about where a reply should go; the server does that and
//! hands over a [`SendMeta`]. The receive and send paths do not allocate.
//!
//! Linux only. `unsafe` is confined to the kernel interfaces that nix and socket2 do not wrap
//! without allocating (the `IP_PKTINFO` control message on send, the `SIOCSARP` ioctl); every
//! block says why it is sound.

#![deny(clippy::undocumented_unsafe_blocks)]

mod arp;
mod error;
mod iface;
mod v4;

pub use arp::set_arp_entry;
pub use error::{Error, Result};
pub use iface::{Interface, interface_index, interfaces};
pub use v4::{DEFAULT_READ_TIMEOUT, RecvMeta, SendMeta, V4Socket, V4SocketConfig, open_v4_group};
