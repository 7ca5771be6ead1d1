//! Validation of the `v4:` section: walks the wire tree keeping the key path and builds the
//! typed [`V4Config`].
//!
//! Each subnet is built on its own, then the rules that need every subnet (overlaps, a relay or
//! an interface selecting two links, duplicate ids) run and name both entries.

use std::collections::HashMap;
use std::net::Ipv4Addr;

use ipnet::{IpNet, Ipv4Net};

use super::addr::{self, no_host_bits, range, unicast};
use super::error::{ConfigError, invalid};
use super::hex::parse_hex;
use super::options::string;
use super::options4::{Level, OptionSet, parse_options};
use super::path::{At, at, join};
use super::shared::{
    Bounds, Links, Reserved, agent_id, check_placement, check_shared_network, excluded_set,
    identifier, inside, layout, relay_list, shared_interface, subnet_id, subnet_interface,
};
use super::times::{Leases, hold_times, lease_times, opt_seconds};
use super::wire::{self, Value};
use super::{BootFields, Pool4, Reservation4, ReservationKey, Subnet4, V4Config};

type Result<T> = std::result::Result<T, ConfigError>;

/// What a subnet inherits from the level above it.
struct Scope {
    link: usize,
    /// The shared network's relays.
    relays: Vec<At<Ipv4Addr>>,
    /// The shared network's interface.
    interface: Option<At<String>>,
    /// Global options merged with the shared network's.
    options: OptionSet,
    /// The global BOOTP header fields.
    boot: BootFields,
}

/// A built subnet with its key path, and its relays and interface (own or inherited) with
/// theirs, for the checks across subnets to name both entries; dropped once they pass.
struct Built {
    subnet: Subnet4,
    /// `v4.subnets[i]` or `v4.shared_networks[i].subnets[j]`; its pools are at `path.pools[k]`.
    path: String,
    relays: Vec<At<Ipv4Addr>>,
    interface: Option<At<String>>,
}

pub(super) fn v4(w: wire::V4) -> Result<V4Config> {
    let leases = lease_times(
        "v4",
        [&w.lease_time, &w.min_lease_time, &w.max_lease_time],
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

    let mut names: HashMap<String, String> = HashMap::new();
    let (subnets, links) = layout(
        "v4",
        w.subnets.unwrap_or_default(),
        w.shared_networks.unwrap_or_default(),
        |link| Scope {
            link,
            relays: Vec::new(),
            interface: None,
            options: global.clone(),
            boot: boot.clone(),
        },
        |path, sn, link| {
            check_shared_network(path, &sn.name, sn.subnets.is_empty(), &mut names)?;
            let relays = relay_list(path, sn.relays.as_deref(), &[], unicast)?;
            let interface = shared_interface(path, sn.interface)?;
            let own = parse_options(&join(path, "options"), sn.options.as_ref(), Level::Wide)?;
            let scope = Scope {
                link,
                relays,
                interface,
                options: global.merged(&own),
                boot: boot.clone(),
            };
            Ok((sn.name, sn.subnets, scope))
        },
        |ws, path, position, scope| subnet(ws, path, position, scope, leases),
    )?;

    check_subnets(&subnets)?;
    for Built {
        subnet: s, path, ..
    } in &subnets
    {
        for (name, t) in [("rebind_time", rebind_time), ("renew_time", renew_time)] {
            if let Some(t) = t.filter(|&t| t >= s.lease_time) {
                return Err(invalid(
                    join(path, "lease_time"),
                    format!(
                        "lease_time {} must be greater than v4.{name} {t}",
                        s.lease_time
                    ),
                ));
            }
        }
    }

    let subnets: Vec<Subnet4> = subnets.into_iter().map(|b| b.subnet).collect();
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

fn subnet(
    w: wire::Subnet,
    path: &str,
    position: usize,
    scope: &Scope,
    parent: Leases,
) -> Result<Built> {
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
        [&w.lease_time, &w.min_lease_time, &w.max_lease_time],
        Some(parent),
    )?;

    let relays = relay_list(path, w.relays.as_deref(), &scope.relays, unicast)?;
    let interface = subnet_interface(path, scope.interface.as_ref(), w.interface)?;

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
    for (i, v) in w.pools.unwrap_or_default().iter().enumerate() {
        let p = at(&join(path, "pools"), i);
        let (spec, spec_path, opts, own_boot) = pool_entry(&p, v)?;
        let (first, last) = inside(&spec_path, range(&spec_path, spec)?, &net, |a| {
            net.contains(&a)
        })?;
        let own = parse_options(&join(&p, "options"), opts, Level::Narrow)?;
        pools.push(Pool4 {
            first,
            last,
            options: options.merged(&own),
            boot: boot.merged(&own_boot),
        });
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
    let list = join(path, "reservations");
    let mut reservations: Vec<Reservation4> = Vec::with_capacity(wres.len());
    let mut by_key = Reserved::new(&list, wres.len());
    let mut by_addr = Reserved::new(&list, wres.len());
    for (i, r) in wres.into_iter().enumerate() {
        let p = at(&list, i);
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
        by_key.once(i, res.key.clone(), name, &format_args!("{name} {text}"))?;
        by_addr.once(i, res.address, "address", &res.address)?;
        reservations.push(res);
    }

    let subnet = Subnet4 {
        id,
        net,
        link: scope.link,
        relays: relays.iter().map(|r| r.value).collect(),
        interface: interface.as_ref().map(|i| i.value.clone()),
        pools,
        excluded,
        reservations,
        lease_time: leases.lease,
        min_lease_time: leases.min,
        max_lease_time: leases.max,
        options,
        boot,
    };
    Ok(Built {
        subnet,
        path: path.to_owned(),
        relays,
        interface,
    })
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

/// A v4 reservation's identifier keys: the chaddr, option 61, or a relay agent sub-option.
const ID_KEYS: [&str; 4] = ["hw_address", "client_id", "circuit_id", "remote_id"];

/// A reservation's identifier, address, host name, options and boot fields, which go over
/// `scope_options` and `scope_boot` (its pool's, its subnet's, or nothing for a global one).
/// Where the address may lie is for the caller to check.
fn reservation(
    path: &str,
    r: wire::Reservation,
    scope_options: &OptionSet,
    scope_boot: &BootFields,
) -> Result<(Reservation4, &'static str, String)> {
    let ids = [&r.hw_address, &r.client_id, &r.circuit_id, &r.remote_id];
    let (key, kname, ktext) = identifier(path, ID_KEYS, ids, reservation_key)?;
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
    let mut by_key = Reserved::new("v4.reservations", 0);
    let mut by_addr = Reserved::new("v4.reservations", 0);
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
        by_key.once(i, res.key.clone(), name, &format_args!("{name} {text}"))?;
        by_addr.once(i, address, "address", &address)?;
        if let Some(&si) = subnet_addrs.get(&address) {
            return Err(invalid(
                apath,
                format!(
                    "{address} is already reserved in subnet {}",
                    subnets[si].net
                ),
            ));
        }
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

impl Bounds<Ipv4Addr> for Pool4 {
    fn bounds(&self) -> (Ipv4Addr, Ipv4Addr) {
        (self.first, self.last)
    }
}

/// Rules that need every subnet: ids, overlaps, and one link per relay and per interface.
fn check_subnets(subnets: &[Built]) -> Result<()> {
    let placed = subnets.iter().map(|b| {
        let s = &b.subnet;
        (b.path.as_str(), s.id, IpNet::from(s.net), &s.pools[..])
    });
    check_placement(placed, std::iter::empty())?;

    let mut links = Links::new();
    for b in subnets {
        links.relays(b.subnet.link, &b.relays, "a relay address")?;
        links.interface(b.subnet.link, b.interface.as_ref())?;
    }
    Ok(())
}
