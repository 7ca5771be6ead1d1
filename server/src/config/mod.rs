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
//! - `options`: global options. `subnets`: a list of subnets. `shared_networks`: `{ name,
//!   relays?, interface?, options?, subnets }`, several subnets on one link; the shared network's
//!   relays, interface and options apply to each of its subnets.
//!
//! A subnet: `subnet` (CIDR), `id` (default its position among all subnets, from 1: `v4.subnets`
//! first, then each shared network's), `pools`, `relays` (giaddrs that select it), `interface`
//! (direct clients on that interface select it), `options`, `excluded` (addresses or `"A-B"`
//! ranges never handed out dynamically; reservations may still use them), `reservations`, and
//! its own lease times. A pool is `"A-B"`, a CIDR `"10.0.0.0/25"`, a single address, or `{ pool:
//! "A-B", options: {...} }`. The subnet's network and broadcast addresses (up to /30) are never
//! handed out: when a pool covers them they are added to [`Subnet4::excluded`].
//!
//! A reservation: exactly one identifier, then `address` (inside the subnet, in a pool or not),
//! optional `hostname` (sent as option 12 unless the reservation's options set 12), `options`,
//! and `bootp` (default true: BOOTP clients get their reservation, RFC 1497). Identifiers:
//! - `hw_address`: hex bytes separated by `:` or `-` (`"02:23:10:00:00:50"`), 1 to 16 bytes.
//! - `client_id`: option 61 as hex bytes (`"01:02:23:10:00:00:50"`, or `"0x01..."`).
//! - `circuit_id` / `remote_id`: relay agent sub-options 1 and 2 (RFC 3046). `"0x"` followed by
//!   hex digits, or two-digit hex bytes joined by `:` (`"aa:bb"`), are bytes; any other string
//!   is taken as its own (ASCII/UTF-8) bytes, e.g. `"eth0/1/1:100"`. To match text that looks
//!   like hex bytes, write its `0x` form.
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
//! `{ domains: [...] }`. Codes 0, 50-55, 57-59, 61, 82 and 255 are managed by the server and
//! rejected.
//!
//! Values are stored whole even past 255 bytes; the packet encoder splits long ones into several
//! instances of the option (RFC 3396).

use std::net::Ipv4Addr;
use std::path::{Path, PathBuf};

mod build;
mod effective;
mod error;
mod examples;
mod locate;
mod options;
mod path;
mod wire;

#[cfg(test)]
mod tests;

pub use error::ConfigError;
pub use examples::{DEFAULT_LOOPBACK_YAML, EXAMPLE_FULL_YAML};
pub use options::{OptionSet, option_name};

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
}

/// `journal:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// When journal writes are made durable.
    pub sync: SyncMode,
}

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
    /// then the reservation's own.
    pub options: OptionSet,
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
        wire.and_then(build::build).map_err(|e| e.with_file(path))
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
