//! The validated DHCPv6 settings: what `build6.rs` makes of the `v6:` section.

use std::net::Ipv6Addr;
use std::path::PathBuf;

use super::{Link6, OptionSet6};

/// DHCPv6 settings (`v6:`). With neither subnets nor options DHCPv6 is off.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V6Config {
    /// UDP port to listen on; anything but 547 is test mode.
    pub port: u16,
    /// Default preferred lifetime, seconds.
    pub preferred_lifetime: u32,
    /// Default valid lifetime, seconds.
    pub valid_lifetime: u32,
    /// T1 as written at `v6` level; `None`: half the preferred lifetime.
    pub renew_time: Option<u32>,
    /// T2 as written at `v6` level; `None`: 80% of the preferred lifetime.
    pub rebind_time: Option<u32>,
    /// Default for answering Rapid Commit SOLICITs with a binding REPLY.
    pub rapid_commit: bool,
    /// Default Preference option value; `None`: not sent.
    pub preference: Option<u8>,
    /// How long an ADVERTISE holds its address or prefix, seconds.
    pub offer_hold: u32,
    /// How long a declined address stays out of use, seconds.
    pub decline_probation: u32,
    /// The server DUID to use instead of the generated one.
    pub server_duid: Option<Vec<u8>>,
    /// The Server Unicast address (option 12) to offer, if any.
    pub server_unicast: Option<Ipv6Addr>,
    /// The global `v6.options` as written. Already merged into every subnet's set.
    pub options: OptionSet6,
    /// The subnets: those of `v6.subnets` in config order, then each shared network's.
    pub subnets: Vec<Subnet6>,
    /// The links: one per subnet outside a shared network, then one per shared network.
    pub links: Vec<Link6>,
    /// `v6.reservations`: global reservations, held in whichever subnet the client arrives in
    /// (an address or prefix only when it lies in that subnet / its link's delegation pools).
    pub reservations: Vec<Reservation6>,
    /// The CSV file of static assignments, if any.
    pub assignments_file: Option<PathBuf>,
}

/// One DHCPv6 subnet, with everything it inherits already applied.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subnet6 {
    /// Stable id (explicit, or the position among v6 subnets from 1).
    pub id: u32,
    /// Index into [`V6Config::links`].
    pub link: usize,
    /// The on-link prefix.
    pub net: ipnet::Ipv6Net,
    /// Interface whose direct clients select this subnet.
    pub interface: Option<String>,
    /// Relay link-addresses that select this subnet (besides those inside `net`).
    pub relays: Vec<Ipv6Addr>,
    /// Interface-ID option values (18) that select this subnet.
    pub interface_ids: Vec<Vec<u8>>,
    /// Dynamic address ranges, in config order.
    pub pools: Vec<Pool6>,
    /// Prefix delegation pools, in config order.
    pub pd_pools: Vec<PdPool6>,
    /// Addresses never handed out dynamically, sorted.
    pub excluded: Vec<Ipv6Addr>,
    /// Reservations, in config order.
    pub reservations: Vec<Reservation6>,
    /// Preferred lifetime, seconds.
    pub preferred_lifetime: u32,
    /// Valid lifetime, seconds.
    pub valid_lifetime: u32,
    /// T1 sent in every IA, seconds.
    pub renew_time: u32,
    /// T2 sent in every IA, seconds.
    pub rebind_time: u32,
    /// Whether a Rapid Commit SOLICIT is answered with a binding REPLY.
    pub rapid_commit: bool,
    /// Preference option value, if sent.
    pub preference: Option<u8>,
    /// Effective options: global, then the subnet's own.
    pub options: OptionSet6,
}

/// A dynamic address range, inclusive.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Pool6 {
    /// First address.
    pub first: Ipv6Addr,
    /// Last address.
    pub last: Ipv6Addr,
}

/// A prefix delegation pool: every `/delegated_len` inside `prefix`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PdPool6 {
    /// The prefix delegated prefixes are taken from.
    pub prefix: ipnet::Ipv6Net,
    /// Length of each delegated prefix.
    pub delegated_len: u8,
    /// RFC 6603 excluded prefix: its bits after `delegated_len` name the sub-prefix of each
    /// delegated prefix that is sent as option 67.
    pub excluded_prefix: Option<ipnet::Ipv6Net>,
    /// Prefixes never delegated (a delegated prefix overlapping one is skipped).
    pub excluded: Vec<ipnet::Ipv6Net>,
}

/// What identifies a DHCPv6 client for a reservation or an assignment.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum V6Identifier {
    /// The client's DUID (option 1).
    Duid(Vec<u8>),
    /// The Interface-ID (option 18) of the relay closest to the client that sent one.
    InterfaceId(Vec<u8>),
    /// The Remote-ID (option 37, RFC 4649) of the relay closest to the client that sent one.
    RemoteId {
        /// IANA enterprise number of the relay's vendor.
        enterprise: u32,
        /// The remote-id bytes after the enterprise number.
        id: Vec<u8>,
    },
    /// The Subscriber-ID (option 38, RFC 4580) of the relay closest to the client that sent one.
    SubscriberId(Vec<u8>),
}

impl V6Identifier {
    /// The bytes as they appear in the option payload (for a remote-id: the enterprise number,
    /// big-endian, then the id): what look-ups compare.
    pub fn wire_bytes(&self) -> Vec<u8> {
        match self {
            V6Identifier::Duid(b)
            | V6Identifier::InterfaceId(b)
            | V6Identifier::SubscriberId(b) => b.clone(),
            V6Identifier::RemoteId { enterprise, id } => {
                let mut v = enterprise.to_be_bytes().to_vec();
                v.extend_from_slice(id);
                v
            }
        }
    }

    /// The config key naming this kind of identifier.
    pub fn key_name(&self) -> &'static str {
        match self {
            V6Identifier::Duid(_) => "duid",
            V6Identifier::InterfaceId(_) => "interface_id",
            V6Identifier::RemoteId { .. } => "remote_id",
            V6Identifier::SubscriberId(_) => "subscriber_id",
        }
    }
}

/// A fixed address and/or delegated prefix for one DHCPv6 client.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Reservation6 {
    /// Who.
    pub key: V6Identifier,
    /// The address for the client's first IA_NA, inside the subnet.
    pub address: Option<Ipv6Addr>,
    /// The prefix for the client's first IA_PD.
    pub prefix: Option<ipnet::Ipv6Net>,
    /// Effective options: the subnet's, then the reservation's own.
    pub options: OptionSet6,
}

impl V6Config {
    /// The key path of subnet `s` as written: `v6.subnets[i]`, or
    /// `v6.shared_networks[i].subnets[j]`.
    pub fn subnet_path(&self, s: usize) -> String {
        let mut shared = 0;
        for link in &self.links {
            match (&link.name, link.subnets.iter().position(|&m| m == s)) {
                (None, Some(_)) => return format!("v6.subnets[{s}]"),
                (Some(_), Some(j)) => return format!("v6.shared_networks[{shared}].subnets[{j}]"),
                (Some(_), None) => shared += 1,
                (None, None) => {}
            }
        }
        format!("v6.subnets[{s}]")
    }

    /// Whether DHCPv6 is to be served: at least one subnet, or only `v6.options` (stateless
    /// service, RFC 8415 §18.3.6: Information-requests get the options, IAs get NoAddrsAvail).
    pub fn enabled(&self) -> bool {
        !self.subnets.is_empty() || !self.options.is_empty()
    }
}
