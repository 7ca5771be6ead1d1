//! The effective config written back as YAML: every default spelled out, parsing back to the
//! same [`Config`].
//!
//! Inherited values are flattened where the typed config no longer knows their origin: a shared
//! network's relays, interface and options appear on each of its subnets, and options appear at
//! the most general level that has them (global, then what each subnet, pool or reservation
//! changes).

use std::net::{Ipv4Addr, Ipv6Addr};
use std::time::Duration;

use super::addr::fold_ranges;
use super::hex::format_hex;
use super::options4::{OptionSet, render_options};
use super::options6::{OptionSet6, render_options6};
use super::shared::agent_id;
use super::wire::{self, Value};
use super::{
    BootFields, Config, Link, Reservation4, Reservation6, ReservationKey, Subnet4, Subnet6,
    SyncMode, V4Config, V6Config, V6Identifier,
};

pub(super) fn effective_yaml(c: &Config) -> String {
    let body = serde_saphyr::to_string(&to_wire(c))
        .unwrap_or_else(|e| format!("# cannot render the effective configuration: {e}\n"));
    format!(
        "# lessor effective configuration: every default filled in; a shared network's relays,\n\
         # interface and options are shown on each of its subnets.\n{body}"
    )
}

pub(super) fn effective_json(c: &Config) -> serde_json::Value {
    serde_json::to_value(to_wire(c)).unwrap_or_else(
        |e| serde_json::json!({"error": format!("cannot render the effective configuration: {e}")}),
    )
}

fn to_wire(c: &Config) -> wire::Config {
    let sync = c.journal.sync.name();
    let interval_ms = match c.journal.sync {
        SyncMode::Interval { interval_ms } => Some(interval_ms),
        SyncMode::Group | SyncMode::None => None,
    };
    wire::Config {
        interfaces: Some(c.interfaces.clone()),
        port: Some(c.port),
        state_dir: Some(c.state_dir.to_string_lossy().into_owned()),
        workers: c.workers,
        log_level: c.log_level.clone(),
        journal: Some(wire::Journal {
            sync: Some(sync.to_owned()),
            interval_ms,
            max_backlog: Some(c.journal.max_backlog),
            preallocate: Some(c.journal.preallocate),
            realtime_sync: Some(c.journal.realtime_sync),
        }),
        control: Some(super::control::to_wire(c.control.as_ref())),
        ha: c.ha.as_ref().map(super::ha::to_wire),
        v4: Some(v4(&c.v4)),
        // A config without DHCPv6 shows no v6 section, as it was written.
        v6: (c.v6 != V6Config::default()).then(|| v6(&c.v6)),
    }
}

/// A family's subnets as written: those of lone links in the `subnets` list, the others in
/// their shared network (`shared(name, subnets)` makes one), links in order.
fn by_link<W, N>(
    links: &[Link],
    subnet: impl Fn(usize) -> W,
    shared: impl Fn(String, Vec<W>) -> N,
) -> (Vec<W>, Vec<N>) {
    let mut subnets = Vec::new();
    let mut networks = Vec::new();
    for link in links {
        let members = link.subnets.iter().map(|&i| subnet(i));
        match &link.name {
            None => subnets.extend(members),
            Some(name) => networks.push(shared(name.clone(), members.collect())),
        }
    }
    (subnets, networks)
}

fn v4(v: &V4Config) -> wire::V4 {
    let (subnets, shared) = by_link(
        &v.links,
        |i| subnet(&v.subnets[i], v),
        |name, subnets| wire::SharedNetwork {
            name,
            subnets,
            ..Default::default()
        },
    );
    wire::V4 {
        lease_time: Some(duration(v.lease_time)),
        min_lease_time: Some(duration(v.min_lease_time)),
        max_lease_time: Some(duration(v.max_lease_time)),
        renew_time: v.renew_time.map(duration),
        rebind_time: v.rebind_time.map(duration),
        offer_hold: Some(duration(v.offer_hold)),
        decline_probation: Some(duration(v.decline_probation)),
        authoritative: Some(v.authoritative),
        server_id: v.server_id.map(|a| a.to_string()),
        bootp_dynamic: Some(v.bootp_dynamic),
        next_server: v.boot.next_server.map(|a| a.to_string()),
        server_hostname: v.boot.server_hostname.clone(),
        boot_file_name: v.boot.boot_file_name.clone(),
        options: options(&v.options),
        reservations: (!v.reservations.is_empty()).then(|| {
            v.reservations
                .iter()
                .map(|r| reservation(r, &OptionSet::new(), &BootFields::default()))
                .collect()
        }),
        subnets: Some(subnets),
        shared_networks: (!shared.is_empty()).then_some(shared),
    }
}

fn subnet(s: &Subnet4, v: &V4Config) -> wire::Subnet {
    let own_leases = (s.lease_time, s.min_lease_time, s.max_lease_time)
        != (v.lease_time, v.min_lease_time, v.max_lease_time);
    let lease = |t: u32| own_leases.then(|| duration(t));
    let mut base = v.options.clone();
    base.insert(1, s.net.netmask().octets());
    if s.net.prefix_len() <= 30 {
        base.insert(28, s.net.broadcast().octets());
    }
    let pools = s
        .pools
        .iter()
        .map(|p| {
            let range = Value::str(format!("{}-{}", p.first, p.last));
            let mut entries = vec![("pool".to_owned(), range.clone())];
            if let Some(o) = options(&p.options.diff_from(&s.options)) {
                entries.push(("options".to_owned(), o));
            }
            let [n, h, f] = boot_diff(&p.boot, &s.boot);
            for (k, v) in [
                ("next_server", n),
                ("server_hostname", h),
                ("boot_file_name", f),
            ] {
                if let Some(v) = v {
                    entries.push((k.to_owned(), Value::Str(v)));
                }
            }
            if entries.len() == 1 {
                range
            } else {
                Value::Map(entries)
            }
        })
        .collect();
    let reservations = s
        .reservations
        .iter()
        .map(|r| {
            let (opts, boot) = s
                .pools
                .iter()
                .find(|p| (p.first..=p.last).contains(&r.address))
                .map_or((&s.options, &s.boot), |p| (&p.options, &p.boot));
            reservation(r, opts, boot)
        })
        .collect();
    let [next_server, server_hostname, boot_file_name] = boot_diff(&s.boot, &v.boot);
    wire::Subnet {
        subnet: s.net.to_string(),
        id: Some(s.id),
        interface: s.interface.clone(),
        relays: (!s.relays.is_empty()).then(|| s.relays.iter().map(Ipv4Addr::to_string).collect()),
        lease_time: lease(s.lease_time),
        min_lease_time: lease(s.min_lease_time),
        max_lease_time: lease(s.max_lease_time),
        pools: Some(pools),
        excluded: (!s.excluded.is_empty()).then(|| fold_ranges(&s.excluded)),
        next_server,
        server_hostname,
        boot_file_name,
        options: options(&s.options.diff_from(&base)),
        reservations: (!s.reservations.is_empty()).then_some(reservations),
    }
}

/// A reservation as written, given the options and boot fields it inherits.
fn reservation(r: &Reservation4, inherited: &OptionSet, boot: &BootFields) -> wire::Reservation {
    let mut base = inherited.clone();
    if let Some(h) = &r.hostname {
        base.insert(12, h.as_bytes());
    }
    let [next_server, server_hostname, boot_file_name] = boot_diff(&r.boot, boot);
    let mut w = wire::Reservation {
        address: r.address.to_string(),
        hostname: r.hostname.clone(),
        bootp: Some(r.bootp),
        next_server,
        server_hostname,
        boot_file_name,
        options: options(&r.options.diff_from(&base)),
        ..Default::default()
    };
    match &r.key {
        ReservationKey::HwAddress(b) => w.hw_address = Some(format_hex(b)),
        ReservationKey::ClientId(b) => w.client_id = Some(format_hex(b)),
        ReservationKey::CircuitId(b) => w.circuit_id = Some(agent_text(b)),
        ReservationKey::RemoteId(b) => w.remote_id = Some(agent_text(b)),
    }
    w
}

/// The boot fields `own` sets differently from `parent`, as text: what a level writes.
fn boot_diff(own: &BootFields, parent: &BootFields) -> [Option<String>; 3] {
    let differ = |a: &Option<String>, b: &Option<String>| (a != b).then(|| a.clone()).flatten();
    [
        (own.next_server != parent.next_server)
            .then(|| own.next_server.map(|a| a.to_string()))
            .flatten(),
        differ(&own.server_hostname, &parent.server_hostname),
        differ(&own.boot_file_name, &parent.boot_file_name),
    ]
}

fn options(set: &OptionSet) -> Option<Value> {
    (!set.is_empty()).then(|| render_options(set))
}

/// A duration as humantime text when that reads back exactly, else as seconds.
fn duration(secs: u32) -> Value {
    let text = humantime::format_duration(Duration::from_secs(secs.into())).to_string();
    match humantime::parse_duration(&text) {
        Ok(d) if d.as_secs() == u64::from(secs) && !text.is_empty() => Value::Str(text),
        _ => Value::Int(secs.into()),
    }
}

/// Relay agent ids as text when they read back as the same bytes, else as `0x` hex.
fn agent_text(b: &[u8]) -> String {
    if let Ok(t) = std::str::from_utf8(b)
        && t.chars().all(|c| c.is_ascii_graphic() || c == ' ')
        && agent_id(t).as_deref() == Some(b)
    {
        return t.to_owned();
    }
    let mut s = "0x".to_owned();
    for byte in b {
        s.push_str(&format!("{byte:02x}"));
    }
    s
}

fn v6(v: &V6Config) -> wire::V6 {
    let (subnets, shared) = by_link(
        &v.links,
        |i| subnet6(&v.subnets[i], v),
        |name, subnets| wire::SharedNetwork6 {
            name,
            subnets,
            ..Default::default()
        },
    );
    wire::V6 {
        port: Some(v.port),
        preferred_lifetime: Some(duration(v.preferred_lifetime)),
        valid_lifetime: Some(duration(v.valid_lifetime)),
        renew_time: v.renew_time.map(duration),
        rebind_time: v.rebind_time.map(duration),
        rapid_commit: Some(v.rapid_commit),
        preference: v.preference.map(|p| Value::Int(p.into())),
        offer_hold: Some(duration(v.offer_hold)),
        decline_probation: Some(duration(v.decline_probation)),
        server_duid: v.server_duid.as_deref().map(format_hex),
        server_unicast: v.server_unicast.map(|a| a.to_string()),
        options: options6(&v.options),
        subnets: Some(subnets),
        shared_networks: (!shared.is_empty()).then_some(shared),
        reservations: (!v.reservations.is_empty()).then(|| {
            v.reservations
                .iter()
                .map(|r| reservation6(r, &OptionSet6::new()))
                .collect()
        }),
        assignments_file: v
            .assignments_file
            .as_ref()
            .map(|f| f.to_string_lossy().into_owned()),
    }
}

fn subnet6(s: &Subnet6, v: &V6Config) -> wire::Subnet6 {
    // What the subnet would inherit; its own values are written only where they differ.
    let inherited = V6Config {
        subnets: Vec::new(),
        links: Vec::new(),
        reservations: Vec::new(),
        ..v.clone()
    };
    let p = u64::from(v.preferred_lifetime);
    let timers = (
        v.renew_time.unwrap_or((p / 2) as u32),
        v.rebind_time.unwrap_or((p * 4 / 5) as u32),
    );
    let own_times = (
        s.preferred_lifetime,
        s.valid_lifetime,
        s.renew_time,
        s.rebind_time,
    ) != (
        inherited.preferred_lifetime,
        inherited.valid_lifetime,
        timers.0,
        timers.1,
    );
    let time = |t: u32| own_times.then(|| duration(t));
    let reservations = s
        .reservations
        .iter()
        .map(|r| reservation6(r, &s.options))
        .collect();
    let pd_pools = s
        .pd_pools
        .iter()
        .map(|p| wire::PdPool {
            prefix: p.prefix.to_string(),
            delegated_len: Value::Int(p.delegated_len.into()),
            excluded_prefix: p.excluded_prefix.map(|x| x.to_string()),
            excluded: (!p.excluded.is_empty())
                .then(|| p.excluded.iter().map(ToString::to_string).collect()),
        })
        .collect();
    wire::Subnet6 {
        subnet: s.net.to_string(),
        id: Some(s.id),
        interface: s.interface.clone(),
        relays: (!s.relays.is_empty()).then(|| s.relays.iter().map(Ipv6Addr::to_string).collect()),
        interface_ids: (!s.interface_ids.is_empty())
            .then(|| s.interface_ids.iter().map(|b| agent_text(b)).collect()),
        preferred_lifetime: time(s.preferred_lifetime),
        valid_lifetime: time(s.valid_lifetime),
        renew_time: time(s.renew_time),
        rebind_time: time(s.rebind_time),
        rapid_commit: (s.rapid_commit != v.rapid_commit).then_some(s.rapid_commit),
        preference: (s.preference != v.preference)
            .then(|| s.preference.map(|p| Value::Int(p.into())))
            .flatten(),
        pools: Some(
            s.pools
                .iter()
                .map(|p| {
                    if p.first == p.last {
                        p.first.to_string()
                    } else {
                        format!("{}-{}", p.first, p.last)
                    }
                })
                .collect(),
        ),
        pd_pools: (!s.pd_pools.is_empty()).then_some(pd_pools),
        excluded: (!s.excluded.is_empty()).then(|| fold_ranges(&s.excluded)),
        options: options6(&s.options.diff_from(&v.options)),
        reservations: (!s.reservations.is_empty()).then_some(reservations),
    }
}

/// A reservation with the options it adds to `base` (its subnet's, or the global ones).
fn reservation6(r: &Reservation6, base: &OptionSet6) -> wire::Reservation6 {
    let mut w = wire::Reservation6 {
        address: r.address.map(|a| a.to_string()),
        prefix: r.prefix.map(|p| p.to_string()),
        options: options6(&r.options.diff_from(base)),
        ..Default::default()
    };
    match &r.key {
        V6Identifier::Duid(b) => w.duid = Some(format_hex(b)),
        V6Identifier::InterfaceId(b) => w.interface_id = Some(agent_text(b)),
        V6Identifier::SubscriberId(b) => w.subscriber_id = Some(agent_text(b)),
        V6Identifier::RemoteId { enterprise, id } => {
            w.remote_id = Some(format!("{enterprise}:{}", agent_text(id)));
        }
    }
    w
}

fn options6(set: &OptionSet6) -> Option<Value> {
    (!set.is_empty()).then(|| render_options6(set))
}
