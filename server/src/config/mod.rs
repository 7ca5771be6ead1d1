//! Configuration: one YAML (or JSON) document, validated at load time into typed, precomputed form.
//!
//! Two layers: `wire` mirrors the document exactly (serde, unknown keys rejected); `build` walks
//! it keeping the key path, so every error names the key and the reason
//! (`v4.subnets[1].pools[0]: start 10.0.0.9 is after end 10.0.0.5`). The result is a [`Config`]
//! whose option sets are already merged and encoded to wire bytes: the packet path does no
//! merging and no encoding.
//!
//! A file is read as JSON when its name ends in `.json`, as YAML otherwise; both follow the same
//! schema. See [`EXAMPLE_FULL_YAML`] for every key in use and [`DEFAULT_LOOPBACK_YAML`] for the
//! built-in default.
//!
//! # Keys
//!
//! Top level:
//! - `interfaces`: interface names to serve; omitted or empty means loopback only.
//! - `port` (default 67): any other port is *test mode*: replies go to the request's source
//!   address and port.
//! - `state_dir` (default `/var/lib/lessor`), `workers` (default one per core, at least 1),
//!   `log_level` (a tracing filter; default the binary's).
//! - `journal.sync`: `group` (default; an ACK is sent only after its event is fdatasync'ed),
//!   `interval` (fdatasync every `interval_ms`, default 10; ACKs do not wait, so a crash can lose
//!   the last interval's leases) or `none` (the OS decides; a crash can lose any recent lease).
//! - `journal.max_backlog` (default 65536): records a worker may have waiting for the journal
//!   (appended, not yet durable). Past it, while the disk is slow or full, the worker drops
//!   requests that would write (DHCPREQUEST, DECLINE, RELEASE, BOOTP; DHCPv6 REQUEST, RENEW,
//!   REBIND, RELEASE, DECLINE, rapid-commit SOLICIT) and counts them as `journal_backlog`,
//!   so memory stays bounded; OFFERs, ADVERTISEs and INFORMs go on, and clients retry.
//! - `journal.preallocate` (default true): each 64 MiB segment is filled with zeros (in the
//!   background, ahead of need) before records go into it, so that a sync flushes data only
//!   and the filesystem writes no inode (with `realtime_sync`, a busy machine's sync went from
//!   p90 3.4 ms to 0.3 ms here). Turn it off on copy-on-write filesystems (btrfs, ZFS), where it
//!   only costs the zeros.
//! - `journal.realtime_sync` (default true): the journal writer enters the real-time class
//!   (`SCHED_FIFO` 1) for the duration of each `fdatasync` and the publish right after it
//!   (an atomic store and a ring of each waiting worker's doorbell), so that when the disk
//!   answers the ACKs are released at once instead of after a busy core's next slot. Nothing
//!   else runs in that class. Needs
//!   `CAP_SYS_NICE` (root has it); without it lessor warns once and syncs in the normal class.
//!
//! `v4`:
//! - Durations are whole seconds: an integer (`3600`) or humantime text (`"1h"`, `"90s"`,
//!   `"1h 30m"`, `"1day"`).
//! - `lease_time` (default 1h), `min_lease_time` / `max_lease_time` (default: `lease_time`; a
//!   client's requested lease is clamped to them). A subnet may set the three itself: what it
//!   leaves out is inherited from `v4`, an inherited min or max widened to include the subnet's
//!   `lease_time`.
//! - `renew_time` / `rebind_time` (T1/T2; default 50% / 87.5% of the granted lease). They must be
//!   below every `lease_time`; for a shorter granted lease the server falls back to the defaults.
//! - `offer_hold` (default 30s), `decline_probation` (default 1 day), `authoritative` (default
//!   true), `server_id` (default: the address the request arrived on).
//! - `bootp_dynamic` (default false): BOOTP clients (no message type option) without a
//!   reservation get a pool address with an infinite lease (RFC 1534), journaled like any other.
//! - `next_server` (an address), `server_hostname` (at most 63 bytes) and `boot_file_name` (at
//!   most 127 bytes): the fixed `siaddr`, `sname` and `file` header fields of OFFERs, ACKs and
//!   BOOTP replies (RFC 2131 §2; PXE needs `siaddr`). Also per subnet, pool and reservation; the
//!   most specific level that sets a field wins.
//! - `reservations`: global reservations, shaped like a subnet's. One holds in whichever subnet
//!   the client arrives in (as Kea's global reservations do): its address, which must lie in
//!   some subnet, is used only when that subnet is on the client's link; its host name, options
//!   and boot fields apply everywhere, over the subnet's or pool's. A subnet's reservation for
//!   the same client wins over a global one.
//! - `options`: global options. `subnets`: a list of subnets. `shared_networks`: `{ name,
//!   relays?, interface?, options?, subnets }`, several subnets on one link; the shared network's
//!   relays, interface and options apply to each of its subnets.
//!
//! A subnet: `subnet` (CIDR), `id` (default its position among all subnets, from 1: `v4.subnets`
//! first, then each shared network's), `pools`, `relays` (giaddrs that select it), `interface`
//! (direct clients on that interface select it), `options`, `excluded` (addresses or `"A-B"`
//! ranges never handed out dynamically; reservations may still use them), `reservations`, and
//! its own lease times. A pool is `"A-B"`, a CIDR `"10.0.0.0/25"`, a single address, or `{ pool:
//! "A-B", options: {...} }` (such a map may also set the pool's `next_server`, `server_hostname`
//! and `boot_file_name`). The subnet's network and broadcast addresses (up to /30) are never
//! handed out: when a pool covers them they are added to [`Subnet4::excluded`].
//!
//! A reservation: exactly one identifier, then `address` (inside the subnet, in a pool or not),
//! optional `hostname` (sent as option 12 unless the reservation's options set 12), `options`,
//! the boot fields, and `bootp` (default true: BOOTP clients get their reservation, RFC 1497).
//! Identifiers:
//! - `hw_address`: hex bytes separated by `:` or `-` (`"02:23:10:00:00:50"`), 1 to 16 bytes.
//! - `client_id`: option 61 as hex bytes (`"01:02:23:10:00:00:50"`, or `"0x01..."`).
//! - `circuit_id` / `remote_id`: relay agent sub-options 1 and 2 (RFC 3046). `"0x"` followed by
//!   hex digits, or two-digit hex bytes joined by `:` (`"aa:bb"`), are bytes; any other string
//!   is taken as its own (ASCII/UTF-8) bytes, e.g. `"eth0/1/1:100"`. To match text that looks
//!   like hex bytes, write its `0x` form.
//!
//! `v6` (DHCPv6, RFC 8415; absent, or with neither subnets nor options: DHCPv6 is off; options
//! alone: a stateless service, RFC 8415 §18.3.6):
//! - `port` (default 547): any other port is *test mode*: replies, relayed or not, go to the
//!   request's source address and port, and unicast requests are accepted.
//! - `preferred_lifetime` (default 1h) and `valid_lifetime` (default 2h) of every address and
//!   prefix handed out; `renew_time` / `rebind_time` (T1/T2 of every IA; default 50% / 80% of
//!   the preferred lifetime, RFC 8415 §21.4). T1 must be below T2 and T2 below the valid
//!   lifetime. Durations as in `v4`.
//! - `rapid_commit` (default false): answer a SOLICIT carrying Rapid Commit (option 14) with a
//!   REPLY that binds at once (RFC 8415 §18.3.1). `preference` (0-255; default: no Preference
//!   option, which clients read as 0; 255 makes a client take the first ADVERTISE at once).
//! - `offer_hold` (default 30s): how long an ADVERTISE keeps its address or prefix;
//!   `decline_probation` (default 1 day).
//! - `server_duid`: the server's DUID as hex bytes (default: a DUID-LLT generated once and kept
//!   in `state_dir`, see `v6::load_or_create_duid`). `server_unicast`: an address of the server
//!   sent as the Server Unicast option (12); only then are direct clients allowed to send
//!   REQUEST, RENEW, RELEASE and DECLINE by unicast (otherwise they get UseMulticast).
//! - `options`: global DHCPv6 options; `subnets`; `assignments_file`: a CSV file of static
//!   assignments in dhcpkit's shape (below), read at startup and again on reload. A relative
//!   path is relative to the config file's directory.
//! - `shared_networks`: `{ name, relays?, interface_ids?, interface?, options?, subnets }`,
//!   several subnets on one link, as in `v4`: the shared network's selectors and options apply
//!   to each of its subnets; allocation tries each subnet's pools in order, and a resource gets
//!   the lifetimes of the subnet holding it.
//! - `reservations`: global reservations (the shape of a subnet's, the address anywhere), held
//!   in whichever subnet the client arrives in, as Kea's: the address only when it is on the
//!   client's link, the prefix only inside its link's delegation pools, the options always
//!   (over the subnet's). A subnet's reservation for the same client wins.
//!
//! A v6 subnet: `subnet` (a prefix, e.g. `2001:db8:1::/64`), `id` (default its position from
//! 1), `interface` (direct clients arriving there select it), `relays` (relay link-address
//! values that select it besides the ones inside the subnet), `interface_ids` (Interface-ID
//! option values, option 18, that select it; written like v4's `circuit_id`), `pools` (address
//! ranges `"A-B"`, CIDRs or single addresses, inside the subnet, of any size), `pd_pools`,
//! `excluded` (addresses or `"A-B"` ranges never handed out dynamically), `options`,
//! `reservations`, and its own `preferred_lifetime`, `valid_lifetime`, `renew_time`,
//! `rebind_time`, `rapid_commit` and `preference` (what it leaves out is inherited from `v6`).
//!
//! A relayed client's subnet is chosen by the Interface-ID of the relay closest to it when an
//! `interface_ids` entry names it, else by the link-address of the closest relay that set one
//! (a lightweight relay, RFC 6221, leaves it unspecified): a `relays` entry, else the subnet
//! containing it. A direct client's subnet is the arrival interface's (named by `interface`, or
//! holding an address inside the subnet).
//!
//! A prefix delegation pool: `{ prefix: "2001:db8:100::/40", delegated_len: 56,
//! excluded_prefix: "2001:db8:100:0:ff00::/72", excluded: ["2001:db8:1ff::/48"] }`. Every
//! `/delegated_len` inside `prefix` is delegated, minus those overlapping an `excluded` prefix.
//! `excluded_prefix` (optional, RFC 6603) is longer than `delegated_len`; its bits after
//! `delegated_len` name a sub-prefix of each delegated prefix that the requesting router must not
//! use (its uplink), sent as option 67 to clients that ask for it. Delegated prefixes need not be
//! inside the subnet.
//!
//! A v6 reservation: exactly one identifier, then `address` (inside the subnet) and/or `prefix`
//! (anywhere), and `options`. Identifiers:
//! - `duid`: the client's DUID as hex bytes (`"00:03:00:01:02:23:10:00:00:60"`).
//! - `interface_id`, `subscriber_id`: options 18 and 38 (RFC 4580) of the relay closest to the
//!   client, written like v4's `circuit_id` (`0x` hex, `aa:bb` hex bytes, or text).
//! - `remote_id`: option 37 (RFC 4649), `"ENTERPRISE:ID"`: the enterprise number in decimal,
//!   then the id written like `interface_id` (`"3561:CUST1"`, `"9:0x0123"`).
//!
//! The first IA_NA of a reserved client gets the reserved address and its first IA_PD the
//! reserved prefix (further IAs are served from the pools). A reservation is looked up by DUID,
//! interface-id, remote-id, then subscriber-id, in the subnet's `reservations` first, then in the
//! assignments file.
//!
//! The assignments file is CSV with a header naming the columns `id`, `address` and `prefix` (in
//! any order; other columns are ignored; `,`, `;` or tab separated, `"quoted"` fields allowed;
//! blank lines and lines starting with `#` are skipped). `address` and `prefix` may each be
//! empty but not both. Ids: `duid:HEX`, `interface-id:HEX`, `interface-id-str:TEXT`,
//! `remote-id:ENTERPRISE:HEX`, `remote-id-str:ENTERPRISE:TEXT`, `subscriber-id:HEX`,
//! `subscriber-id-str:TEXT` (HEX may separate bytes with `:` or `-`). An address must lie in a
//! configured v6 subnet; no address or prefix may be assigned twice, nor one already reserved in
//! the YAML. Errors name the line.
//!
//! # Options
//!
//! An `options:` map may appear globally, on a shared network, a subnet, a pool or a
//! reservation; each level overrides its parent per option code (global, shared network, subnet,
//! pool, reservation). The effective set of each subnet, pool and reservation is computed at
//! load time. Subnet mask (1) and broadcast address (28) are derived from each subnet (28 only
//! up to /30) and may be overridden by a subnet, pool or reservation, not globally.
//!
//! By name: `subnet_mask` (1, address), `time_offset` (2, i32), `routers` (3), `time_servers`
//! (4), `name_servers` (5), `domain_name_servers` (6), `log_servers` (7), `lpr_servers` (9),
//! `host_name` (12, text), `domain_name` (15, text), `root_path` (17, text), `ip_forwarding`
//! (19, bool), `default_ip_ttl` (23, u8), `interface_mtu` (26, u16, at least 68),
//! `broadcast_address` (28, address), `static_routes` (33, `"DEST via ROUTER"` list),
//! `arp_cache_timeout` (35, u32), `nis_domain` (40, text), `nis_servers` (41), `ntp_servers`
//! (42), `vendor_encapsulated_options` (43, hex), `netbios_name_servers` (44),
//! `netbios_dd_servers` (45), `netbios_node_type` (46, 1/2/4/8), `netbios_scope` (47, text),
//! `tftp_server_name` (66, text), `bootfile_name` (67, text), `smtp_servers` (69), `tz_posix`
//! (100, text), `tz_database` (101, text), `captive_portal` (114, text URI), `domain_search`
//! (119, domain names, RFC 1035 labels without compression), `classless_static_routes` (121,
//! `"DEST/LEN via ROUTER"` or `"default via ROUTER"` list, RFC 3442). Unmarked ones are lists of
//! addresses (a single address is a list of one).
//!
//! By code, any other: the key is the number and the value a one-entry typed map: `{ ip: [...] }`
//! / `{ ips: [...] }`, `{ u8: 1 }`, `{ u16: .. }`, `{ u32: .. }`, `{ i32: .. }`, `{ bool: true }`
//! (integers and booleans may also be lists), `{ string: "x" }`, `{ hex: "01:02:0a" }`,
//! `{ domains: [...] }`. Codes 0, 50-55, 57-59, 61, 82, 118 and 255 are managed by the server and
//! rejected.
//!
//! Values are stored whole even past 255 bytes; the packet encoder splits long ones into several
//! instances of the option (RFC 3396).
//!
//! DHCPv6 options (`v6.options`, a v6 subnet's or reservation's `options`; each level overrides
//! its parent per code) are sent only when the client's Option Request option (6) asks for them.
//! By name: `sip_server_domains` (21, domain names), `sip_servers` (22), `dns_servers` (23),
//! `domain_search` (24, domain names), `nis_servers` (27), `nisp_servers` (28), `nis_domain` (29,
//! domain names), `nisp_domain` (30, domain names), `sntp_servers` (31), `information_refresh_time`
//! (32, u32 seconds, at least 600), `posix_timezone` (41, text), `tz_database` (42, text),
//! `ntp_servers` (56, RFC 5908: each entry an address, a multicast address or a host name),
//! `bootfile_url` (59, text), `aftr_name` (64, one domain name), `captive_portal` (103, text
//! URI). Unmarked ones are lists of IPv6 addresses. By code (1 to 65535) with the typed values
//! of v4 (`ip`/`ips` hold IPv6 addresses). Codes the protocol manages (0-9, 11-14, 18-20, 25, 26,
//! 37, 38, 67, 79) are rejected.

use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

mod addr;
mod assignments;
mod build;
mod build4;
mod build6;
mod effective;
mod error;
mod examples;
mod locate;
mod options;
mod options4;
mod options6;
mod path;
mod shared;
mod times;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;

pub use assignments::{Assignment, Assignments};
pub use error::ConfigError;
pub use examples::{DEFAULT_LOOPBACK_YAML, EXAMPLE_FULL_YAML, EXAMPLE_V6_YAML};
pub use options::EncodedOptions;
pub use options4::{OptionSet, option_name};
pub use options6::{OptionSet6, option6_name};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to serve; empty means loopback only.
    pub interfaces: Vec<String>,
    /// UDP port to listen on; anything but 67 is test mode.
    pub port: u16,
    /// Where the journal and snapshots live.
    pub state_dir: PathBuf,
    /// Worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// A tracing filter, if the config sets one.
    pub log_level: Option<String>,
    /// Journal durability.
    pub journal: JournalConfig,
    /// DHCPv4.
    pub v4: V4Config,
    /// DHCPv6.
    pub v6: V6Config,
}

/// `journal:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// When journal writes are made durable.
    pub sync: SyncMode,
    /// Records a worker may have waiting for the journal before it drops requests that write.
    pub max_backlog: u64,
    /// Zero-fill each segment before writing into it, so a sync writes no inode.
    pub preallocate: bool,
    /// The journal writer holds a real-time scheduling class while it waits in `fdatasync`.
    pub realtime_sync: bool,
}

/// Default of `journal.max_backlog`.
pub const DEFAULT_MAX_BACKLOG: u64 = 1 << 16;

/// When journal writes are made durable, and whether ACKs wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Group commit: an ACK is sent only after its event is fdatasync'ed (no acknowledged lease
    /// is ever lost).
    Group,
    /// fdatasync every `interval_ms`; ACKs do not wait, so a crash can lose that much.
    Interval {
        /// Milliseconds between syncs.
        interval_ms: u64,
    },
    /// Never fdatasync; the OS writes back when it likes.
    None,
}

impl SyncMode {
    /// The name the config file uses for this mode.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Group => "group",
            SyncMode::Interval { .. } => "interval",
            SyncMode::None => "none",
        }
    }
}

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

/// A link: the subnets reachable on one wire (one subnet, or a shared network).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link4 {
    /// The shared network's name; `None` for a lone subnet.
    pub name: Option<String>,
    /// Indexes into [`V4Config::subnets`].
    pub subnets: Vec<usize>,
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

/// A DHCPv6 link: one subnet, or the subnets of a shared network (tried in order).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link6 {
    /// The shared network's name; `None` for a lone subnet.
    pub name: Option<String>,
    /// Indexes into [`V6Config::subnets`].
    pub subnets: Vec<usize>,
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

impl Default for V6Config {
    /// The configuration of an absent `v6:` section: DHCPv6 off, every default in place.
    fn default() -> Self {
        // An empty section always validates; failing here is a build defect, not input.
        build6::v6(wire::V6::default())
            .unwrap_or_else(|e| panic!("the empty v6 section is invalid: {e}"))
    }
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

impl Config {
    /// Reads and validates a config file: JSON if the name ends in `.json`, YAML otherwise.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let wire = if json {
            parse_json(&text)
        } else {
            parse_yaml(&text, Some(&path.display().to_string()))
        };
        let mut config = wire.and_then(build::build).map_err(|e| e.with_file(path))?;
        if let Some(f) = &mut config.v6.assignments_file
            && f.is_relative()
            && let Some(dir) = path.parent()
        {
            *f = dir.join(&*f);
        }
        Ok(config)
    }

    /// Reads and checks `v6.assignments_file` (an empty table when none is configured), against
    /// this config's v6 subnets and reservations. Called at startup and on every reload; a
    /// failed reload keeps the table in use.
    pub fn load_assignments(&self) -> Result<Assignments, ConfigError> {
        match &self.v6.assignments_file {
            None => Ok(Assignments::default()),
            Some(path) => Assignments::load(path, &self.v6),
        }
    }

    /// Parses and validates a YAML document.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        build::build(parse_yaml(text, None)?)
    }

    /// Parses and validates a JSON document (same schema as the YAML).
    pub fn from_json_str(text: &str) -> Result<Config, ConfigError> {
        build::build(parse_json(text)?)
    }

    /// The built-in configuration ([`DEFAULT_LOOPBACK_YAML`]): loopback, port 6767 (test mode),
    /// state in `./lessor-state`, one subnet 10.0.0.0/8 reached through relay 127.0.0.1.
    pub fn default_loopback() -> Config {
        // The embedded text is covered by tests; failing here is a build defect, not input.
        Config::from_yaml_str(DEFAULT_LOOPBACK_YAML)
            .unwrap_or_else(|e| panic!("built-in DEFAULT_LOOPBACK_YAML is invalid: {e}"))
    }

    /// The effective configuration as YAML, every default filled in, for `lessor check-config`.
    /// It parses back to an equal `Config`.
    pub fn effective_yaml(&self) -> String {
        effective::effective_yaml(self)
    }
}

fn parse_yaml(text: &str, name: Option<&str>) -> Result<wire::Config, ConfigError> {
    // An empty document (or only comments) is the all-defaults config.
    serde_saphyr::from_str_with_options::<Option<wire::Config>>(text, yaml_options())
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            use serde_saphyr::MessageFormatter as _;
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = serde_saphyr::DefaultMessageFormatter
                .format_message(e.without_snippet())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let mut opts = serde_saphyr::RenderOptions::default();
            opts.source_name = name;
            // The rendering repeats the message on its first line; keep the source excerpt.
            let excerpt = e
                .render_with_options(opts)
                .split_once('\n')
                .map(|(_, excerpt)| excerpt.trim_end().to_owned());
            ConfigError::Syntax {
                file: None,
                line,
                column,
                path: (line > 0)
                    .then(|| locate::path_at(text, line, column))
                    .flatten(),
                message,
                excerpt,
            }
        })
}

/// serde-saphyr's default budgets are made for untrusted input and stop at 250,000 nodes (about
/// 40,000 reservations). A config file is written by the operator, so the size limits are raised
/// far past any real config; nesting depth stays bounded.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 200_000_000,
            max_nodes: 100_000_000,
            max_total_scalar_bytes: 4 << 30,
        },
    }
}

fn parse_json(text: &str) -> Result<wire::Config, ConfigError> {
    serde_json::from_str::<wire::Config>(text).map_err(|e| {
        let (line, column) = (e.line() as u64, e.column() as u64);
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        ConfigError::Syntax {
            file: None,
            line,
            column,
            path: (line > 0)
                .then(|| locate::path_at(text, line, column))
                .flatten(),
            message,
            excerpt: None,
        }
    })
}
