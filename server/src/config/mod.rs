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
//! Files: `wire` (the serde mirror), `build` (top level) over `build4` and `build6` (each
//! family's section), `shared` (the rules both families follow), `options` (the option scheme)
//! with its catalogues `options4` and `options6`, and the text helpers `addr`, `times`, `path`.
//!
//! Every key, its default and its meaning, and the option names, are in `docs/CONFIG.md`; a
//! test in `examples.rs` keeps its key list in step with `examples/full.yaml`.

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
