//! Validation: walks the wire tree keeping the key path and builds the typed [`Config`].
//!
//! Every rejection names the key it is about. Cross-entry rules (overlaps, a relay or an
//! interface selecting two links, duplicate ids) run after each subnet is built on its own, and
//! name both entries.
//!
//! The checks whose logic is the same for both address families (subnet ids, relay lists, address
//! ranges, `excluded`, pool overlaps, a reservation's one identifier) are written here once, over
//! [`Addr`], and `build6.rs` calls them.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::Duration;

use ipnet::Ipv4Net;

use super::addr::{self, Addr};
use super::error::{ConfigError, invalid};
use super::options::{Level, OptionSet, parse_hex, parse_options, string};
use super::path::{at, join};
use super::wire::{self, Value};
use super::{
    BootFields, Config, JournalConfig, Link4, Pool4, Reservation4, ReservationKey, Subnet4,
    SyncMode, V4Config,
};

pub(super) const DEFAULT_PORT: u16 = 67;
pub(super) const DEFAULT_STATE_DIR: &str = "/var/lib/lessor";
pub(super) const DEFAULT_INTERVAL_MS: u64 = 10;
pub(super) const DEFAULT_LEASE_TIME: u32 = 3600;
pub(super) const DEFAULT_OFFER_HOLD: u32 = 30;
pub(super) const DEFAULT_DECLINE_PROBATION: u32 = 86_400;
/// Upper bound on a subnet's expanded `excluded` list; bigger holes belong in the pool bounds.
pub(super) const MAX_EXCLUDED: usize = 65_536;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn build(w: wire::Config) -> Result<Config> {
    let mut interfaces: Vec<String> = Vec::new();
    for (i, name) in w.interfaces.unwrap_or_default().into_iter().enumerate() {
        let p = at("interfaces", i);
        check_ifname(&p, &name)?;
        if interfaces.contains(&name) {
            return Err(invalid(p, format!("{name} is listed twice")));
        }
        interfaces.push(name);
    }
    let port = w.port.unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(invalid("port", "must be 1..=65535, not 0"));
    }
    let state_dir = w.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.to_owned());
    if state_dir.trim().is_empty() {
        return Err(invalid("state_dir", "must not be empty"));
    }
    if w.workers == Some(0) {
        return Err(invalid(
            "workers",
            "must be at least 1 (omit it for one worker per core)",
        ));
    }
    if w.log_level.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return Err(invalid(
            "log_level",
            "must not be empty (omit it for the default)",
        ));
    }
    Ok(Config {
        interfaces,
        port,
        state_dir: PathBuf::from(state_dir),
        workers: w.workers,
        log_level: w.log_level,
        journal: journal(w.journal.unwrap_or_default())?,
        v4: v4(w.v4.unwrap_or_default())?,
        v6: super::build6::v6(w.v6.unwrap_or_default())?,
    })
}

fn journal(j: wire::Journal) -> Result<JournalConfig> {
    let sync = match j.sync.as_deref().unwrap_or("group") {
        "group" => SyncMode::Group,
        "interval" => {
            let interval_ms = j.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
            if interval_ms == 0 {
                return Err(invalid("journal.interval_ms", "must be at least 1"));
            }
            SyncMode::Interval { interval_ms }
        }
        "none" => SyncMode::None,
        other => {
            return Err(invalid(
                "journal.sync",
                format!("unknown mode {other:?}, expected group, interval or none"),
            ));
        }
    };
    if j.interval_ms.is_some() && !matches!(sync, SyncMode::Interval { .. }) {
        return Err(invalid(
            "journal.interval_ms",
            "only applies with sync: interval",
        ));
    }
    let max_backlog = j.max_backlog.unwrap_or(super::DEFAULT_MAX_BACKLOG);
    if max_backlog == 0 {
        return Err(invalid("journal.max_backlog", "must be at least 1"));
    }
    Ok(JournalConfig {
        sync,
        max_backlog,
        preallocate: j.preallocate.unwrap_or(true),
        realtime_sync: j.realtime_sync.unwrap_or(true),
    })
}

/// A lease-time triple as resolved at one level.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Leases {
    lease: u32,
    min: u32,
    max: u32,
}

/// What a subnet inherits from the level above it.
struct Scope {
    link: usize,
    /// The shared network's relays, each with its key path.
    relays: Vec<(Ipv4Addr, String)>,
    /// The shared network's interface and its key path.
    interface: Option<(String, String)>,
    /// Global options merged with the shared network's.
    options: OptionSet,
    /// The global BOOTP header fields.
    boot: BootFields,
}

/// Key paths of a built subnet's parts, for messages about two entries.
struct Meta {
    path: String,
    pools: Vec<String>,
    /// Parallel to `Subnet4::relays`.
    relays: Vec<String>,
    interface: Option<String>,
}

fn v4(w: wire::V4) -> Result<V4Config> {
    let leases = lease_times(
        "v4",
        w.lease_time.as_ref(),
        w.min_lease_time.as_ref(),
        w.max_lease_time.as_ref(),
        None,
    )?;
    let renew_time = opt_seconds("v4.renew_time", w.renew_time.as_ref())?;
    let rebind_time = opt_seconds("v4.rebind_time", w.rebind_time.as_ref())?;
    for (key, t) in [
        ("v4.renew_time", renew_time),
        ("v4.rebind_time", rebind_time),
    ] {
        if t == Some(0) {
            return Err(invalid(key, "must be at least 1 second"));
        }
    }
    if let (Some(t1), Some(t2)) = (renew_time, rebind_time)
        && t1 >= t2
    {
        return Err(invalid(
            "v4.renew_time",
            format!("renew_time {t1} must be less than rebind_time {t2}"),
        ));
    }
    for (key, name, t) in [
        ("v4.rebind_time", "rebind_time", rebind_time),
        ("v4.renew_time", "renew_time", renew_time),
    ] {
        if let Some(t) = t.filter(|&t| t >= leases.lease) {
            return Err(invalid(
                key,
                format!("{name} {t} must be less than lease_time {}", leases.lease),
            ));
        }
    }
    let (offer_hold, decline_probation) =
        hold_times("v4", w.offer_hold.as_ref(), w.decline_probation.as_ref())?;
    let server_id = w
        .server_id
        .as_deref()
        .map(|s| unicast("v4.server_id", s))
        .transpose()?;
    let global = parse_options("v4.options", w.options.as_ref(), Level::Wide)?;
    let boot = boot_fields(
        "v4",
        w.next_server.as_deref(),
        w.server_hostname.as_deref(),
        w.boot_file_name.as_deref(),
    )?;

    let mut subnets = Vec::new();
    let mut metas = Vec::new();
    let mut links = Vec::new();
    for (i, ws) in w.subnets.unwrap_or_default().into_iter().enumerate() {
        let scope = Scope {
            link: links.len(),
            relays: Vec::new(),
            interface: None,
            options: global.clone(),
            boot: boot.clone(),
        };
        let (s, meta) = subnet(ws, &at("v4.subnets", i), subnets.len() + 1, &scope, leases)?;
        links.push(Link4 {
            name: None,
            subnets: vec![subnets.len()],
        });
        subnets.push(s);
        metas.push(meta);
    }
    let mut names: HashMap<String, String> = HashMap::new();
    for (i, sn) in w
        .shared_networks
        .unwrap_or_default()
        .into_iter()
        .enumerate()
    {
        let path = at("v4.shared_networks", i);
        check_shared_network(&path, &sn.name, sn.subnets.is_empty(), &mut names)?;
        let relays = relay_list(&join(&path, "relays"), sn.relays.as_deref(), &[], unicast)?;
        let interface = match sn.interface {
            Some(name) => {
                let p = join(&path, "interface");
                check_ifname(&p, &name)?;
                Some((name, p))
            }
            None => None,
        };
        let own = parse_options(&join(&path, "options"), sn.options.as_ref(), Level::Wide)?;
        let scope = Scope {
            link: links.len(),
            relays,
            interface,
            options: global.merged(&own),
            boot: boot.clone(),
        };
        let mut members = Vec::new();
        for (j, ws) in sn.subnets.into_iter().enumerate() {
            let spath = at(&join(&path, "subnets"), j);
            let (s, meta) = subnet(ws, &spath, subnets.len() + 1, &scope, leases)?;
            members.push(subnets.len());
            subnets.push(s);
            metas.push(meta);
        }
        links.push(Link4 {
            name: Some(sn.name),
            subnets: members,
        });
    }

    check_subnets(&subnets, &metas)?;
    for (s, meta) in subnets.iter().zip(&metas) {
        for (name, t) in [("rebind_time", rebind_time), ("renew_time", renew_time)] {
            if let Some(t) = t.filter(|&t| t >= s.lease_time) {
                return Err(invalid(
                    join(&meta.path, "lease_time"),
                    format!(
                        "lease_time {} must be greater than v4.{name} {t}",
                        s.lease_time
                    ),
                ));
            }
        }
    }

    let reservations = global_reservations(w.reservations.unwrap_or_default(), &subnets)?;

    Ok(V4Config {
        lease_time: leases.lease,
        min_lease_time: leases.min,
        max_lease_time: leases.max,
        renew_time,
        rebind_time,
        offer_hold,
        decline_probation,
        authoritative: w.authoritative.unwrap_or(true),
        server_id,
        bootp_dynamic: w.bootp_dynamic.unwrap_or(false),
        boot,
        reservations,
        options: global,
        subnets,
        links,
    })
}

/// Resolves `lease_time`, `min_lease_time`, `max_lease_time` under `path`.
///
/// At the `v4` level min and max default to the lease time. A subnet that sets none of the three
/// inherits all of them; otherwise what it does not set is inherited, with an inherited min or
/// max widened to include the subnet's own lease time.
fn lease_times(
    path: &str,
    lease: Option<&Value>,
    min: Option<&Value>,
    max: Option<&Value>,
    parent: Option<Leases>,
) -> Result<Leases> {
    let lpath = join(path, "lease_time");
    let minpath = join(path, "min_lease_time");
    let maxpath = join(path, "max_lease_time");
    let given = (
        opt_seconds(&lpath, lease)?,
        opt_seconds(&minpath, min)?,
        opt_seconds(&maxpath, max)?,
    );
    let out = match parent {
        None => {
            let lease = given.0.unwrap_or(DEFAULT_LEASE_TIME);
            Leases {
                lease,
                min: given.1.unwrap_or(lease),
                max: given.2.unwrap_or(lease),
            }
        }
        Some(p) if given == (None, None, None) => return Ok(p),
        Some(p) => {
            let lease = given.0.unwrap_or(p.lease);
            Leases {
                lease,
                min: given.1.unwrap_or(p.min.min(lease)),
                max: given.2.unwrap_or(p.max.max(lease)),
            }
        }
    };
    for (p, t) in [
        (&lpath, out.lease),
        (&minpath, out.min),
        (&maxpath, out.max),
    ] {
        if t == 0 {
            return Err(invalid(p.as_str(), "must be at least 1 second"));
        }
    }
    if out.min > out.max {
        return Err(if given.2.is_some() {
            invalid(
                maxpath,
                format!(
                    "max_lease_time {} is less than min_lease_time {}",
                    out.max, out.min
                ),
            )
        } else {
            invalid(
                minpath,
                format!(
                    "min_lease_time {} is greater than max_lease_time {}",
                    out.min, out.max
                ),
            )
        });
    }
    if out.lease < out.min {
        let p = if given.0.is_some() { lpath } else { minpath };
        return Err(invalid(
            p,
            format!(
                "lease_time {} is below min_lease_time {}",
                out.lease, out.min
            ),
        ));
    }
    if out.lease > out.max {
        let p = if given.0.is_some() { lpath } else { maxpath };
        return Err(invalid(
            p,
            format!(
                "lease_time {} is above max_lease_time {}",
                out.lease, out.max
            ),
        ));
    }
    Ok(out)
}

fn subnet(
    w: wire::Subnet,
    path: &str,
    position: usize,
    scope: &Scope,
    parent: Leases,
) -> Result<(Subnet4, Meta)> {
    let npath = join(path, "subnet");
    let net: Ipv4Net = w.subnet.trim().parse().map_err(|_| {
        invalid(
            &npath,
            format!("{:?} is not a CIDR subnet like 10.0.0.0/24", w.subnet),
        )
    })?;
    let net = no_host_bits(&npath, net, net.trunc())?;
    let id = subnet_id(path, w.id, position)?;
    let leases = lease_times(
        path,
        w.lease_time.as_ref(),
        w.min_lease_time.as_ref(),
        w.max_lease_time.as_ref(),
        Some(parent),
    )?;

    let relays = relay_list(
        &join(path, "relays"),
        w.relays.as_deref(),
        &scope.relays,
        unicast,
    )?;
    let (relays, relay_paths): (Vec<_>, Vec<_>) = relays.into_iter().unzip();

    let ipath = join(path, "interface");
    let (interface, interface_path) = match (&scope.interface, w.interface) {
        (Some((shared, spath)), Some(own)) if *shared != own => {
            return Err(invalid(
                ipath,
                format!(
                    "{own} conflicts with {spath} ({shared}); the subnets of a shared network \
                     are all on its interface"
                ),
            ));
        }
        (Some((shared, spath)), _) => (Some(shared.clone()), Some(spath.clone())),
        (None, Some(own)) => {
            check_ifname(&ipath, &own)?;
            (Some(own), Some(ipath))
        }
        (None, None) => (None, None),
    };

    // Network and broadcast addresses exist only up to /30 (RFC 3021 makes /31 all hosts).
    let edges = (net.prefix_len() <= 30).then(|| (net.network(), net.broadcast()));
    let mut derived = OptionSet::new();
    derived.insert(1, net.netmask().octets());
    if let Some((_, broadcast)) = edges {
        derived.insert(28, broadcast.octets());
    }
    let own = parse_options(&join(path, "options"), w.options.as_ref(), Level::Narrow)?;
    let options = scope.options.merged(&derived).merged(&own);
    let boot = scope.boot.merged(&boot_fields(
        path,
        w.next_server.as_deref(),
        w.server_hostname.as_deref(),
        w.boot_file_name.as_deref(),
    )?);

    let mut pools = Vec::new();
    let mut pool_paths = Vec::new();
    for (i, v) in w.pools.unwrap_or_default().iter().enumerate() {
        let p = at(&join(path, "pools"), i);
        let (spec, spec_path, opts, own_boot) = pool_entry(&p, v)?;
        let (first, last) = range(&spec_path, spec)?;
        if !net.contains(&first) || !net.contains(&last) {
            return Err(invalid(
                spec_path,
                format!("{first}-{last} is not inside subnet {net}"),
            ));
        }
        let own = parse_options(&join(&p, "options"), opts, Level::Narrow)?;
        pools.push(Pool4 {
            first,
            last,
            options: options.merged(&own),
            boot: boot.merged(&own_boot),
        });
        pool_paths.push(p);
    }

    let mut excluded = excluded_set(path, w.excluded, &net, |a| net.contains(&a), range)?;
    if let Some((network, broadcast)) = edges {
        for a in [network, broadcast] {
            if pools.iter().any(|p| (p.first..=p.last).contains(&a)) {
                excluded.insert(a);
            }
        }
    }
    let excluded: Vec<Ipv4Addr> = excluded.into_iter().collect();

    let wres = w.reservations.unwrap_or_default();
    let mut reservations: Vec<Reservation4> = Vec::with_capacity(wres.len());
    let mut by_key: HashMap<ReservationKey, usize> = HashMap::with_capacity(wres.len());
    let mut by_addr: HashMap<Ipv4Addr, usize> = HashMap::with_capacity(wres.len());
    for (i, r) in wres.into_iter().enumerate() {
        let p = at(&join(path, "reservations"), i);
        let address: Ipv4Addr = addr::parse(&join(&p, "address"), &r.address)?;
        let (scope_options, scope_boot) = pools
            .iter()
            .find(|p| (p.first..=p.last).contains(&address))
            .map_or((&options, &boot), |p| (&p.options, &p.boot));
        let (res, name, text) = reservation(&p, r, scope_options, scope_boot)?;
        if !net.contains(&address) {
            return Err(invalid(
                join(&p, "address"),
                format!("{address} is not inside subnet {net}"),
            ));
        }
        not_an_edge(&join(&p, "address"), address, net, edges)?;
        let rpath = |j: usize| at(&join(path, "reservations"), j);
        if let Some(&j) = by_key.get(&res.key) {
            return Err(invalid(
                join(&p, name),
                format!("{name} {text} is already reserved by {}", rpath(j)),
            ));
        }
        if let Some(&j) = by_addr.get(&res.address) {
            return Err(invalid(
                join(&p, "address"),
                format!("{} is already reserved by {}", res.address, rpath(j)),
            ));
        }
        by_key.insert(res.key.clone(), i);
        by_addr.insert(res.address, i);
        reservations.push(res);
    }

    let subnet = Subnet4 {
        id,
        net,
        link: scope.link,
        relays,
        interface,
        pools,
        excluded,
        reservations,
        lease_time: leases.lease,
        min_lease_time: leases.min,
        max_lease_time: leases.max,
        options,
        boot,
    };
    let meta = Meta {
        path: path.to_owned(),
        pools: pool_paths,
        relays: relay_paths,
        interface: interface_path,
    };
    Ok((subnet, meta))
}

/// A pool entry: `"A-B"`, `"CIDR"`, or `{ pool: ..., options: ..., next_server: ..., ... }`.
/// Returns the range text, its key path, the options node and the pool's own boot fields.
fn pool_entry<'v>(
    path: &str,
    v: &'v Value,
) -> Result<(&'v str, String, Option<&'v Value>, BootFields)> {
    match v {
        Value::Str(s) => Ok((s, path.to_owned(), None, BootFields::default())),
        Value::Map(entries) => {
            let mut spec = None;
            let mut opts = None;
            let mut boot: [Option<&str>; 3] = [None; 3];
            for (k, v) in entries {
                let slot = BOOT_KEYS.iter().position(|b| b == k);
                match (k.as_str(), slot) {
                    ("pool", _) => spec = Some(v),
                    ("options", _) => opts = Some(v),
                    (key, Some(i)) => boot[i] = Some(string(v, &join(path, key), "a string")?),
                    (other, None) => {
                        return Err(invalid(
                            join(path, other),
                            format!(
                                "unknown key `{other}`, expected pool, options, next_server, \
                                 server_hostname or boot_file_name"
                            ),
                        ));
                    }
                }
            }
            let boot = boot_fields(path, boot[0], boot[1], boot[2])?;
            let ppath = join(path, "pool");
            match spec {
                Some(Value::Str(s)) => Ok((s, ppath, opts, boot)),
                Some(other) => Err(invalid(
                    ppath,
                    format!(
                        "expected a range \"FIRST-LAST\" or a CIDR, got {}",
                        other.describe()
                    ),
                )),
                None => Err(invalid(path, "missing key `pool`")),
            }
        }
        other => Err(invalid(
            path,
            format!(
                "expected \"FIRST-LAST\", a CIDR like \"10.0.0.0/25\", or {{ pool: ..., options: \
                 ... }}, got {}",
                other.describe()
            ),
        )),
    }
}

/// A reservation's identifier, address, host name, options and boot fields, which go over
/// `scope_options` and `scope_boot` (its pool's, its subnet's, or nothing for a global one).
/// Where the address may lie is for the caller to check.
fn reservation(
    path: &str,
    r: wire::Reservation,
    scope_options: &OptionSet,
    scope_boot: &BootFields,
) -> Result<(Reservation4, &'static str, String)> {
    let (kname, ktext) = one_identifier(
        path,
        &[
            ("hw_address", &r.hw_address),
            ("client_id", &r.client_id),
            ("circuit_id", &r.circuit_id),
            ("remote_id", &r.remote_id),
        ],
    )?;
    let key = reservation_key(&join(path, kname), kname, ktext)?;
    let address: Ipv4Addr = addr::parse(&join(path, "address"), &r.address)?;
    if let Some(h) = &r.hostname {
        let bad =
            h.is_empty() || h.len() > 255 || h.chars().any(|c| c.is_whitespace() || c.is_control());
        if bad {
            return Err(invalid(
                join(path, "hostname"),
                format!("{h:?} is not a host name (1 to 255 characters, no spaces)"),
            ));
        }
    }
    let own = parse_options(&join(path, "options"), r.options.as_ref(), Level::Narrow)?;
    let boot = boot_fields(
        path,
        r.next_server.as_deref(),
        r.server_hostname.as_deref(),
        r.boot_file_name.as_deref(),
    )?;
    let mut options = scope_options.clone();
    if let Some(h) = &r.hostname {
        options.insert(12, h.as_bytes());
    }
    let ktext = ktext.to_owned();
    let res = Reservation4 {
        key,
        address,
        hostname: r.hostname,
        bootp: r.bootp.unwrap_or(true),
        options: options.merged(&own),
        boot: scope_boot.merged(&boot),
    };
    Ok((res, kname, ktext))
}

/// Refuses the network or broadcast address of `net` (`edges`) for a reservation.
fn not_an_edge(
    path: &str,
    address: Ipv4Addr,
    net: Ipv4Net,
    edges: Option<(Ipv4Addr, Ipv4Addr)>,
) -> Result<()> {
    if let Some((network, broadcast)) = edges {
        let which = if address == network {
            Some("network")
        } else if address == broadcast {
            Some("broadcast")
        } else {
            None
        };
        if let Some(which) = which {
            return Err(invalid(
                path,
                format!("{address} is the {which} address of {net}"),
            ));
        }
    }
    Ok(())
}

/// `v4.reservations`: like a subnet's, but the address may lie in any configured subnet (it is
/// used only where the client arrives on that subnet's link). One identifier or one address
/// may not be reserved twice among them, nor an address reserved by a subnet too.
fn global_reservations(
    list: Vec<wire::Reservation>,
    subnets: &[Subnet4],
) -> Result<Vec<Reservation4>> {
    let mut out: Vec<Reservation4> = Vec::with_capacity(list.len());
    let mut by_key: HashMap<ReservationKey, usize> = HashMap::new();
    let mut by_addr: HashMap<Ipv4Addr, usize> = HashMap::new();
    let subnet_addrs: HashMap<Ipv4Addr, usize> = subnets
        .iter()
        .enumerate()
        .flat_map(|(si, s)| s.reservations.iter().map(move |r| (r.address, si)))
        .collect();
    let none = OptionSet::new();
    for (i, r) in list.into_iter().enumerate() {
        let p = at("v4.reservations", i);
        let apath = join(&p, "address");
        let (res, name, text) = reservation(&p, r, &none, &BootFields::default())?;
        let address = res.address;
        let Some(s) = subnets.iter().find(|s| s.net.contains(&address)) else {
            return Err(invalid(
                apath,
                format!("{address} is not inside any v4 subnet"),
            ));
        };
        let edges = (s.net.prefix_len() <= 30).then(|| (s.net.network(), s.net.broadcast()));
        not_an_edge(&apath, address, s.net, edges)?;
        if let Some(&j) = by_key.get(&res.key) {
            return Err(invalid(
                join(&p, name),
                format!(
                    "{name} {text} is already reserved by {}",
                    at("v4.reservations", j)
                ),
            ));
        }
        if let Some(&j) = by_addr.get(&address) {
            return Err(invalid(
                apath,
                format!(
                    "{address} is already reserved by {}",
                    at("v4.reservations", j)
                ),
            ));
        }
        if let Some(&si) = subnet_addrs.get(&address) {
            return Err(invalid(
                apath,
                format!(
                    "{address} is already reserved in subnet {}",
                    subnets[si].net
                ),
            ));
        }
        by_key.insert(res.key.clone(), i);
        by_addr.insert(address, i);
        out.push(res);
    }
    Ok(out)
}

/// The keys of the fixed BOOTP header fields, in [`boot_fields`]' argument order.
const BOOT_KEYS: [&str; 3] = ["next_server", "server_hostname", "boot_file_name"];

/// A level's `next_server`, `server_hostname` and `boot_file_name` under `path`. The text
/// fields must fit their header field with the terminating NUL (RFC 2131 §2: `sname` is 64
/// bytes, `file` 128).
fn boot_fields(
    path: &str,
    next_server: Option<&str>,
    server_hostname: Option<&str>,
    boot_file_name: Option<&str>,
) -> Result<BootFields> {
    let next_server = next_server
        .map(|s| unicast(&join(path, BOOT_KEYS[0]), s))
        .transpose()?;
    let text = |key: &str, v: Option<&str>, field: usize| -> Result<Option<String>> {
        let Some(v) = v else { return Ok(None) };
        let p = join(path, key);
        if v.is_empty() {
            return Err(invalid(p, "must not be empty (omit it to send none)"));
        }
        if v.bytes().any(|b| b == 0) {
            return Err(invalid(p, "must not contain a NUL byte"));
        }
        if v.len() >= field {
            return Err(invalid(
                p,
                format!(
                    "is {} bytes long; the {field}-byte header field holds at most {} and a NUL",
                    v.len(),
                    field - 1
                ),
            ));
        }
        Ok(Some(v.to_owned()))
    };
    Ok(BootFields {
        next_server,
        server_hostname: text(BOOT_KEYS[1], server_hostname, 64)?,
        boot_file_name: text(BOOT_KEYS[2], boot_file_name, 128)?,
    })
}

fn reservation_key(path: &str, kind: &str, text: &str) -> Result<ReservationKey> {
    match kind {
        "hw_address" => {
            let b = parse_hex(text).filter(|b| b.len() <= 16).ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "{text:?} is not a hardware address like \"02:23:10:00:00:50\" (1 to 16 \
                         bytes)"
                    ),
                )
            })?;
            Ok(ReservationKey::HwAddress(b))
        }
        "client_id" => {
            // RFC 2132 §9.14: at least two bytes (usually a type byte, then the identifier).
            let b = parse_hex(text).filter(|b| (2..=255).contains(&b.len())).ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "{text:?} is not a client id in hex like \"01:02:23:10:00:00:50\" (2 to \
                         255 bytes)"
                    ),
                )
            })?;
            Ok(ReservationKey::ClientId(b))
        }
        _ => {
            let b = agent_id(text).ok_or_else(|| {
                invalid(
                    path,
                    format!(
                        "{text:?} is not a {kind}: write \"0x\" and hex digits, hex bytes \
                         \"aa:bb\", or text (1 to 255 bytes)"
                    ),
                )
            })?;
            Ok(if kind == "circuit_id" {
                ReservationKey::CircuitId(b)
            } else {
                ReservationKey::RemoteId(b)
            })
        }
    }
}

/// A relay agent sub-option value (RFC 3046): `0x` + hex digits, or two-digit hex bytes joined
/// by `:` (at least two), are bytes; anything else is the text's own bytes.
pub(super) fn agent_id(text: &str) -> Option<Vec<u8>> {
    let hexish = text.starts_with("0x")
        || text.starts_with("0X")
        || (text.contains(':')
            && text
                .split(':')
                .all(|g| g.len() == 2 && g.bytes().all(|b| b.is_ascii_hexdigit())));
    let b = if hexish {
        parse_hex(text)?
    } else {
        text.as_bytes().to_vec()
    };
    (1..=255).contains(&b.len()).then_some(b)
}

/// Parses a relay list, refusing an address listed twice there or already in `inherited`.
pub(super) fn relay_list<A: Addr>(
    path: &str,
    list: Option<&[String]>,
    inherited: &[(A, String)],
    unicast: fn(&str, &str) -> Result<A>,
) -> Result<Vec<(A, String)>> {
    let mut out = inherited.to_vec();
    for (i, s) in list.unwrap_or_default().iter().enumerate() {
        let p = at(path, i);
        let r = unicast(&p, s)?;
        if let Some((_, other)) = out.iter().find(|(o, _)| *o == r) {
            return Err(invalid(
                p,
                format!("relay {r} is already listed at {other}"),
            ));
        }
        out.push((r, p));
    }
    Ok(out)
}

/// Rules that need every subnet: ids, overlaps, and one link per relay and per interface.
fn check_subnets(subnets: &[Subnet4], metas: &[Meta]) -> Result<()> {
    check_ids(
        subnets
            .iter()
            .zip(metas)
            .map(|(s, m)| (s.id, m.path.as_str())),
    )?;

    let mut order: Vec<usize> = (0..subnets.len()).collect();
    order.sort_by_key(|&i| (subnets[i].net.network(), subnets[i].net.prefix_len()));
    for pair in order.windows(2) {
        let (a, b) = (pair[0].min(pair[1]), pair[0].max(pair[1]));
        let (na, nb) = (subnets[a].net, subnets[b].net);
        if na.contains(&nb.network()) || nb.contains(&na.network()) {
            return Err(invalid(
                join(&metas[b].path, "subnet"),
                format!("{nb} overlaps {na} ({})", join(&metas[a].path, "subnet")),
            ));
        }
    }

    check_pool_overlaps(
        subnets
            .iter()
            .map(|s| s.pools.iter().map(|p| (p.first, p.last))),
        |s, p| &metas[s].pools[p],
    )?;

    let mut relays: HashMap<Ipv4Addr, (usize, &str)> = HashMap::new();
    let mut ifaces: HashMap<&str, (usize, &str)> = HashMap::new();
    for (s, meta) in subnets.iter().zip(metas) {
        for (r, p) in s.relays.iter().zip(&meta.relays) {
            match relays.get(r) {
                Some(&(link, other)) if link != s.link => {
                    return Err(invalid(
                        p.as_str(),
                        format!(
                            "relay {r} is also listed at {other}; a relay address selects one \
                             subnet or shared network"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    relays.insert(*r, (s.link, p));
                }
            }
        }
        if let (Some(name), Some(p)) = (&s.interface, &meta.interface) {
            match ifaces.get(name.as_str()) {
                Some(&(link, other)) if link != s.link => {
                    return Err(invalid(
                        p.as_str(),
                        format!(
                            "interface {name} is also given at {other}; subnets on one link \
                             belong in a shared network"
                        ),
                    ));
                }
                Some(_) => {}
                None => {
                    ifaces.insert(name, (s.link, p));
                }
            }
        }
    }
    Ok(())
}

/// `"A-B"`, a CIDR (all of its addresses), or one address.
fn range(path: &str, s: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let cidr = |t: &str| {
        let net: Ipv4Net = t
            .parse()
            .map_err(|_| invalid(path, format!("{s:?} is not a CIDR like 10.0.0.0/25")))?;
        let net = no_host_bits(path, net, net.trunc())?;
        Ok((net.network(), net.broadcast()))
    };
    address_range(
        path,
        s,
        cidr,
        "an address, a range \"FIRST-LAST\" or a CIDR",
    )
}

/// `"A-B"`, a prefix (`cidr` turns its trimmed text into the first and last address), or one
/// address; `forms` names the three in the message for text that is none of them.
pub(super) fn address_range<A: Addr>(
    path: &str,
    s: &str,
    cidr: impl FnOnce(&str) -> Result<(A, A)>,
    forms: &str,
) -> Result<(A, A)> {
    let t = s.trim();
    let parse = |a: &str| a.trim().parse::<A>().ok();
    let (first, last) = if let Some((a, b)) = t.split_once('-') {
        parse(a).zip(parse(b)).ok_or_else(|| {
            invalid(
                path,
                format!(
                    "{s:?} is not a range \"FIRST-LAST\" of {} addresses",
                    A::NAME
                ),
            )
        })?
    } else if t.contains('/') {
        cidr(t)?
    } else {
        let a = parse(t).ok_or_else(|| invalid(path, format!("{s:?} is not {forms}")))?;
        (a, a)
    };
    if first > last {
        return Err(invalid(path, format!("start {first} is after end {last}")));
    }
    Ok((first, last))
}

/// `net`, refused when it has host bits set (`trunc` is `net` without them).
pub(super) fn no_host_bits<N: PartialEq + Display>(path: &str, net: N, trunc: N) -> Result<N> {
    if trunc != net {
        return Err(invalid(
            path,
            format!("{net} has host bits set (did you mean {trunc}?)"),
        ));
    }
    Ok(net)
}

fn unicast(path: &str, s: &str) -> Result<Ipv4Addr> {
    let a: Ipv4Addr = addr::parse(path, s)?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(invalid(path, format!("{a} is not a unicast address")));
    }
    Ok(a)
}

/// A subnet's `id`: as written (at least 1), else its `position` counted from 1.
pub(super) fn subnet_id(path: &str, id: Option<u32>, position: usize) -> Result<u32> {
    match id {
        Some(0) => Err(invalid(join(path, "id"), "must be at least 1")),
        Some(id) => Ok(id),
        None => u32::try_from(position)
            .map_err(|_| invalid(join(path, "id"), "too many subnets for automatic ids")),
    }
}

/// `offer_hold` (at least 1 second) and `decline_probation` of a section, with their defaults.
pub(super) fn hold_times(
    section: &str,
    offer_hold: Option<&Value>,
    decline_probation: Option<&Value>,
) -> Result<(u32, u32)> {
    let opath = join(section, "offer_hold");
    let offer_hold = opt_seconds(&opath, offer_hold)?.unwrap_or(DEFAULT_OFFER_HOLD);
    if offer_hold == 0 {
        return Err(invalid(opath, "must be at least 1 second"));
    }
    let decline_probation = opt_seconds(&join(section, "decline_probation"), decline_probation)?
        .unwrap_or(DEFAULT_DECLINE_PROBATION);
    Ok((offer_hold, decline_probation))
}

/// The one identifier a reservation gives among `ids` (key and value as written), by key name
/// and text.
pub(super) fn one_identifier<'r>(
    path: &str,
    ids: &[(&'static str, &'r Option<String>)],
) -> Result<(&'static str, &'r str)> {
    let given: Vec<(&'static str, &str)> = ids
        .iter()
        .filter_map(|(k, v)| Some((*k, v.as_deref()?)))
        .collect();
    match given.as_slice() {
        [] => {
            let names: Vec<&str> = ids.iter().map(|(k, _)| *k).collect();
            Err(invalid(
                path,
                format!("needs an identifier: one of {}", names.join(", ")),
            ))
        }
        [one] => Ok(*one),
        [a, b, ..] => Err(invalid(
            path,
            format!("has both {} and {}; give exactly one identifier", a.0, b.0),
        )),
    }
}

/// A subnet's `excluded` list (ranges inside `net`, as `range` reads them) expanded to single
/// addresses; more than [`MAX_EXCLUDED`] is refused, since big holes belong in the pool bounds.
pub(super) fn excluded_set<A: Addr>(
    path: &str,
    list: Option<Vec<String>>,
    net: &dyn Display,
    contains: impl Fn(A) -> bool,
    range: fn(&str, &str) -> Result<(A, A)>,
) -> Result<BTreeSet<A>> {
    let mut excluded = BTreeSet::new();
    for (i, s) in list.unwrap_or_default().iter().enumerate() {
        let p = at(&join(path, "excluded"), i);
        let (first, last) = range(&p, s)?;
        if !contains(first) || !contains(last) {
            return Err(invalid(p, format!("{s} is not inside subnet {net}")));
        }
        let (first, last) = (first.to_u128(), last.to_u128());
        let n = last - first + 1;
        if n <= MAX_EXCLUDED as u128 {
            excluded.extend((first..=last).map(A::from_u128));
        }
        if n > MAX_EXCLUDED as u128 || excluded.len() > MAX_EXCLUDED {
            return Err(invalid(
                p,
                format!(
                    "excluded addresses in this subnet would exceed {MAX_EXCLUDED}; shrink the \
                     pools instead"
                ),
            ));
        }
    }
    Ok(excluded)
}

/// Refuses two subnets with one id, naming the later one. `ids`: each subnet's id and key path.
pub(super) fn check_ids<'p>(ids: impl Iterator<Item = (u32, &'p str)>) -> Result<()> {
    let mut seen: HashMap<u32, &str> = HashMap::new();
    for (id, path) in ids {
        if let Some(first) = seen.get(&id) {
            return Err(invalid(
                join(path, "id"),
                format!("id {id} is already used by {first}"),
            ));
        }
        seen.insert(id, path);
    }
    Ok(())
}

/// Refuses two overlapping pools, naming the later one in config order. `subnets` yields each
/// subnet's pools as (first, last); `path(subnet, pool)` is a pool's key path.
pub(super) fn check_pool_overlaps<'m, A, P>(
    subnets: impl Iterator<Item = P>,
    path: impl Fn(usize, usize) -> &'m str,
) -> Result<()>
where
    A: Addr,
    P: Iterator<Item = (A, A)>,
{
    // (first, last, subnet, pool), by first address; a pool overlapping any earlier one
    // overlaps the earlier one that reaches furthest.
    let mut pools: Vec<(A, A, usize, usize)> = subnets
        .enumerate()
        .flat_map(|(s, pools)| {
            pools
                .enumerate()
                .map(move |(p, (first, last))| (first, last, s, p))
        })
        .collect();
    pools.sort_unstable();
    let mut reach: Option<(A, A, usize, usize)> = None;
    for cur in pools {
        if let Some(prev) = reach
            && cur.0 <= prev.1
        {
            let (early, late) = if (prev.2, prev.3) < (cur.2, cur.3) {
                (prev, cur)
            } else {
                (cur, prev)
            };
            return Err(invalid(
                path(late.2, late.3),
                format!(
                    "{}-{} overlaps {} ({}-{})",
                    late.0,
                    late.1,
                    path(early.2, early.3),
                    early.0,
                    early.1
                ),
            ));
        }
        if reach.is_none_or(|r| cur.1 > r.1) {
            reach = Some(cur);
        }
    }
    Ok(())
}

/// A shared network's `name` (not empty, unique: `names` maps each name to its path) and
/// that it has subnets: the rules both families' `shared_networks` follow.
pub(super) fn check_shared_network(
    path: &str,
    name: &str,
    no_subnets: bool,
    names: &mut HashMap<String, String>,
) -> Result<()> {
    let npath = join(path, "name");
    if name.trim().is_empty() {
        return Err(invalid(npath, "must not be empty"));
    }
    if let Some(other) = names.get(name) {
        return Err(invalid(
            npath,
            format!("{name:?} is already the name of {other}"),
        ));
    }
    names.insert(name.to_owned(), path.to_owned());
    if no_subnets {
        return Err(invalid(
            join(path, "subnets"),
            "a shared network needs at least one subnet",
        ));
    }
    Ok(())
}

/// Linux interface names: 1 to 15 bytes, no '/', no whitespace.
pub(super) fn check_ifname(path: &str, name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && !name.contains('/')
        && !name.chars().any(|c| c.is_whitespace() || c.is_control());
    if ok {
        Ok(())
    } else {
        Err(invalid(
            path,
            format!("{name:?} is not an interface name (1 to 15 characters, no '/' or spaces)"),
        ))
    }
}

pub(super) fn opt_seconds(path: &str, v: Option<&Value>) -> Result<Option<u32>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(v) => seconds(path, v).map(Some),
    }
}

/// Whole seconds: an integer, or a humantime string such as `"1h"`, `"30m"`, `"1h 30m"`.
fn seconds(path: &str, v: &Value) -> Result<u32> {
    let too_big = || invalid(path, format!("is too long (at most {} seconds)", u32::MAX));
    match v {
        Value::Int(i) if *i < 0 => Err(invalid(path, "must not be negative")),
        Value::Int(i) => u32::try_from(*i).map_err(|_| too_big()),
        Value::Str(s) => {
            let t = s.trim();
            if !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()) {
                return t.parse::<u32>().map_err(|_| too_big());
            }
            let d: Duration = humantime::parse_duration(t).map_err(|e| {
                invalid(
                    path,
                    format!(
                        "{s:?} is not a duration ({e}); write seconds or e.g. \"1h\", \"30m\", \
                         \"90s\""
                    ),
                )
            })?;
            if d.subsec_nanos() != 0 {
                return Err(invalid(
                    path,
                    format!("{s:?} is not a whole number of seconds"),
                ));
            }
            u32::try_from(d.as_secs()).map_err(|_| too_big())
        }
        other => Err(invalid(
            path,
            format!(
                "expected seconds or a duration such as \"1h\", got {}",
                other.describe()
            ),
        )),
    }
}
