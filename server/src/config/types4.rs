//! The validated DHCPv4 settings: what `build4.rs` makes of the `v4:` section.

use std::net::Ipv4Addr;

use super::{Link4, OptionSet};

/// DHCPv4 settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4Config {
    /// Default lease time, seconds.
    pub lease_time: u32,
    /// Shortest lease a client may ask for, seconds.
    pub min_lease_time: u32,
    /// Longest lease a client may ask for, seconds.
    pub max_lease_time: u32,
    /// T1, seconds; `None`: half the granted lease.
    pub renew_time: Option<u32>,
    /// T2, seconds; `None`: 87.5% of the granted lease.
    pub rebind_time: Option<u32>,
    /// How long an OFFER holds its address, seconds.
    pub offer_hold: u32,
    /// How long a declined address stays out of use, seconds.
    pub decline_probation: u32,
    /// Whether to NAK requests for addresses that are wrong for the client's link.
    pub authoritative: bool,
    /// The server identifier to send; `None`: the address the request arrived on.
    pub server_id: Option<Ipv4Addr>,
    /// Whether BOOTP clients without a reservation get a pool address for good (RFC 1534).
    pub bootp_dynamic: bool,
    /// The global `next_server`, `server_hostname` and `boot_file_name`. Already merged into
    /// every subnet's; kept for display.
    pub boot: BootFields,
    /// Global reservations (`v4.reservations`): they hold in whichever subnet the client
    /// arrives in. `options` and `boot` hold only the reservation's own values.
    pub reservations: Vec<Reservation4>,
    /// The global `v4.options` as written. Already merged into every subnet's set; kept for
    /// display.
    pub options: OptionSet,
    /// All subnets: `v4.subnets` in order, then each shared network's.
    pub subnets: Vec<Subnet4>,
    /// The links: one per subnet outside a shared network, then one per shared network.
    pub links: Vec<Link4>,
}

/// One subnet, with everything it inherits already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet4 {
    /// Stable id (explicit, or the position among all subnets from 1).
    pub id: u32,
    /// The subnet.
    pub net: ipnet::Ipv4Net,
    /// Index into [`V4Config::links`].
    pub link: usize,
    /// Relay addresses (giaddr) that select this subnet's link, including the shared network's.
    pub relays: Vec<Ipv4Addr>,
    /// Interface whose direct clients select this subnet's link (own or the shared network's).
    pub interface: Option<String>,
    /// Dynamic pools, in config order.
    pub pools: Vec<Pool4>,
    /// Addresses never handed out dynamically, sorted, one entry per address. Includes the
    /// network and broadcast addresses when a pool covers them.
    pub excluded: Vec<Ipv4Addr>,
    /// Reservations, in config order.
    pub reservations: Vec<Reservation4>,
    /// Default lease time, seconds.
    pub lease_time: u32,
    /// Shortest lease a client may ask for, seconds.
    pub min_lease_time: u32,
    /// Longest lease a client may ask for, seconds.
    pub max_lease_time: u32,
    /// Effective options: global, shared network, derived subnet mask (1) and broadcast (28),
    /// then the subnet's own.
    pub options: OptionSet,
    /// Effective BOOTP header fields: the global ones, then the subnet's own.
    pub boot: BootFields,
}

/// The fixed BOOTP header fields of a reply (RFC 2131 §2): `siaddr`, `sname` and `file`.
///
/// Each level (global, subnet, pool, reservation) overrides its parent per field.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct BootFields {
    /// `siaddr`: the next server in the boot process (the TFTP server for PXE).
    pub next_server: Option<Ipv4Addr>,
    /// `sname`: at most 63 bytes, so that a NUL fits in the 64-byte field.
    pub server_hostname: Option<String>,
    /// `file`: at most 127 bytes, so that a NUL fits in the 128-byte field.
    pub boot_file_name: Option<String>,
}

impl BootFields {
    /// `child`'s fields where it sets them, else `self`'s.
    pub fn merged(&self, child: &BootFields) -> BootFields {
        BootFields {
            next_server: child.next_server.or(self.next_server),
            server_hostname: child
                .server_hostname
                .clone()
                .or_else(|| self.server_hostname.clone()),
            boot_file_name: child
                .boot_file_name
                .clone()
                .or_else(|| self.boot_file_name.clone()),
        }
    }
}

/// A dynamic address range.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool4 {
    /// First address, inclusive.
    pub first: Ipv4Addr,
    /// Last address, inclusive.
    pub last: Ipv4Addr,
    /// Effective options: the subnet's, then the pool's own.
    pub options: OptionSet,
    /// Effective BOOTP header fields: the subnet's, then the pool's own.
    pub boot: BootFields,
}

/// What identifies a reserved client.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum ReservationKey {
    /// chaddr (its first `hlen` bytes).
    HwAddress(Vec<u8>),
    /// Option 61, whole.
    ClientId(Vec<u8>),
    /// Relay agent option 82, sub-option 1.
    CircuitId(Vec<u8>),
    /// Relay agent option 82, sub-option 2.
    RemoteId(Vec<u8>),
}

/// A fixed address for one client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation4 {
    /// Who.
    pub key: ReservationKey,
    /// The address, inside the subnet.
    pub address: Ipv4Addr,
    /// Host name; also in `options` as option 12 unless the reservation sets 12 itself.
    pub hostname: Option<String>,
    /// Whether a BOOTP client may use this reservation.
    pub bootp: bool,
    /// Effective options: the subnet's (its pool's if the address is in a pool), the host name,
    /// then the reservation's own. For a global reservation: the host name and its own only.
    pub options: OptionSet,
    /// Effective BOOTP header fields: the subnet's (or its pool's), then the reservation's own.
    /// For a global reservation: its own only.
    pub boot: BootFields,
}
