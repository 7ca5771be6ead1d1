//! Kea's host commands: `reservation-add`, `-get`, `-get-all` and `-del`, over the
//! configuration's reservations and those added at run time (`crate::reload::reservations`).
//!
//! Reads look at the configuration served (file and run-time reservations alike); writes
//! change the run-time store and answer once it is on disk and live (a reload that swaps
//! the new tables in). A reservation written in the file is not deleted here: the file is.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use serde_json::{Map, Value, json};

use super::Parts;
use super::commands::Service;
use super::kea::{Answer, Args, Code, Request};
use super::leases::{hex, parse_hex};
use crate::config::{Config, Reservation4, Reservation6, ReservationKey, V6Identifier};
use crate::reload::Outcome;
use crate::reload::reservations::{Host4, Host6, MergeError, Store};

/// Which family a command is about.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn name(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }
}

/// The family `service` names; with none named, the one the arguments imply (a DUID, a
/// list of addresses or prefixes, an IPv6 address), else DHCPv4.
fn family(service: Service, args: &Args<'_>) -> Family {
    match service {
        Service::Dhcp4 => Family::V4,
        Service::Dhcp6 => Family::V6,
        Service::Both => {
            let v6_addr = args
                .get("ip-address")
                .and_then(Value::as_str)
                .is_some_and(|a| a.parse::<Ipv6Addr>().is_ok());
            let duid = args.get("identifier-type").and_then(Value::as_str) == Some("duid");
            let v6 = v6_addr
                || duid
                || ["duid", "ip-addresses", "prefixes"]
                    .iter()
                    .any(|k| args.get(k).is_some());
            if v6 { Family::V6 } else { Family::V4 }
        }
    }
}

/// The arguments inside a map argument, read with the same errors as the command's own.
fn nested(value: &Value) -> Request {
    Request {
        command: String::new(),
        service: Vec::new(),
        arguments: Some(value.clone()),
    }
}

/// The `subnet-id` argument, required (0: the global reservations).
fn subnet_id(args: &Args<'_>) -> Result<u32, Answer> {
    args.uint("subnet-id", u64::from(u32::MAX))?
        .map(|v| v as u32)
        .ok_or_else(|| Answer::error("missing 'subnet-id' argument: the subnet's id (0: global)"))
}

/// An identifier as hex bytes (`01:02:0a` or `01020a`); a circuit id may also be text in
/// single quotes, as Kea takes it.
fn identifier_bytes(key: &str, kind: &str, text: &str) -> Result<Vec<u8>, Answer> {
    if kind == "circuit-id"
        && let Some(inner) = text.strip_prefix('\'').and_then(|t| t.strip_suffix('\''))
        && !inner.is_empty()
    {
        return Ok(inner.as_bytes().to_vec());
    }
    parse_hex(text).ok_or_else(|| {
        Answer::error(format!(
            "'{key}' must be hex bytes such as 01:02:0a, not {text:?}"
        ))
    })
}

/// Circuit ids are kept as `0x` and hex digits, which the config reads back as bytes.
fn circuit_text(bytes: &[u8]) -> String {
    let digits: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!("0x{digits}")
}

/// Bytes as Kea's `encodeHex` prints a client or circuit id: upper-case, no separators.
fn flat_hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02X}")).collect()
}

/// Keys `reservation-add` takes besides the identifiers and addresses: Kea's empty lists
/// (as `reservation-get` answers them) are accepted, anything else in them is not.
const EMPTY_LISTS: [&str; 2] = ["client-classes", "option-data"];

/// Refuses an argument `reservation-add` does not know for `family`, naming it.
fn known_keys(map: &Map<String, Value>, family: Family) -> Result<(), Answer> {
    let keys: &[&str] = match family {
        Family::V4 => &[
            "subnet-id",
            "hw-address",
            "client-id",
            "circuit-id",
            "ip-address",
            "hostname",
        ],
        Family::V6 => &["subnet-id", "duid", "ip-addresses", "prefixes", "hostname"],
    };
    for (k, v) in map {
        let empty = v.as_array().is_some_and(Vec::is_empty) || v.as_str() == Some("");
        if keys.contains(&k.as_str()) || (EMPTY_LISTS.contains(&k.as_str()) && empty) {
            continue;
        }
        let what = match (k.as_str(), family) {
            ("duid", Family::V4) => "lessor's DHCPv4 reservations name the client by \
                                     'hw-address', 'client-id' or 'circuit-id'"
                .to_owned(),
            ("hw-address" | "client-id" | "circuit-id", Family::V6) => {
                "lessor's DHCPv6 reservations name the client by 'duid'".to_owned()
            }
            ("ip-address", Family::V6) => "DHCPv6 reservations take 'ip-addresses'".to_owned(),
            ("ip-addresses" | "prefixes", Family::V4) => {
                "DHCPv4 reservations take 'ip-address'".to_owned()
            }
            _ => format!(
                "not supported by lessor's reservation-add ({})",
                keys.join(", ")
            ),
        };
        return Err(Answer::error(format!("'{k}': {what}")));
    }
    Ok(())
}

/// A DHCPv4 reservation from `reservation-add`'s `reservation` map, in canonical text.
fn host4(args: &Args<'_>) -> Result<Host4, Answer> {
    let subnet_id = subnet_id(args)?;
    let mut ids = Vec::new();
    for key in ["hw-address", "client-id", "circuit-id"] {
        if let Some(text) = args.str(key)? {
            ids.push((key, identifier_bytes(key, key, text)?));
        }
    }
    let (kind, bytes) = match ids.as_slice() {
        [one] => one.clone(),
        [] => {
            return Err(Answer::error(
                "missing identifier: give one of 'hw-address', 'client-id', 'circuit-id'",
            ));
        }
        [a, b, ..] => {
            return Err(Answer::error(format!(
                "give one identifier, not both '{}' and '{}'",
                a.0, b.0
            )));
        }
    };
    let text = args.need_str("ip-address")?;
    let address: Ipv4Addr = text.parse().map_err(|_| {
        Answer::error(format!(
            "'ip-address' must be an IPv4 address, not {text:?}"
        ))
    })?;
    let mut h = Host4 {
        subnet_id,
        hw_address: None,
        client_id: None,
        circuit_id: None,
        ip_address: address.to_string(),
        hostname: args.str("hostname")?.map(str::to_owned),
    };
    match kind {
        "hw-address" => h.hw_address = Some(hex(&bytes)),
        "client-id" => h.client_id = Some(hex(&bytes)),
        _ => h.circuit_id = Some(circuit_text(&bytes)),
    }
    Ok(h)
}

/// A list of strings argument, each parsed by `parse` (an error names the argument).
fn list<T>(
    args: &Args<'_>,
    key: &str,
    what: &str,
    parse: impl Fn(&str) -> Option<T>,
) -> Result<Vec<T>, Answer> {
    let Some(v) = args.get(key) else {
        return Ok(Vec::new());
    };
    let Some(items) = v.as_array() else {
        return Err(Answer::error(format!("'{key}' must be a list of {what}")));
    };
    items
        .iter()
        .map(|i| {
            i.as_str()
                .and_then(&parse)
                .ok_or_else(|| Answer::error(format!("'{key}' must be a list of {what}, not {i}")))
        })
        .collect()
}

/// A DHCPv6 reservation from `reservation-add`'s `reservation` map, in canonical text.
fn host6(args: &Args<'_>) -> Result<Host6, Answer> {
    let subnet_id = subnet_id(args)?;
    let duid = args
        .str("duid")?
        .ok_or_else(|| Answer::error("missing identifier: give 'duid'"))?;
    let duid = identifier_bytes("duid", "duid", duid)?;
    let addresses = list(args, "ip-addresses", "IPv6 addresses", |s| {
        s.parse::<Ipv6Addr>().ok()
    })?;
    let prefixes = list(args, "prefixes", "prefixes such as 2001:db8:1::/56", |s| {
        s.parse::<ipnet::Ipv6Net>().ok()
    })?;
    Ok(Host6 {
        subnet_id,
        duid: hex(&duid),
        ip_addresses: addresses.iter().map(ToString::to_string).collect(),
        prefixes: prefixes.iter().map(ToString::to_string).collect(),
        hostname: args.str("hostname")?.map(str::to_owned),
    })
}

/// The answer to a refused change: Kea's "already exists" for a conflict, else the reason
/// naming the argument.
fn refused(e: &MergeError) -> Answer {
    if e.conflict {
        Answer::error(format!("Host already exists: {e}"))
    } else {
        Answer::error(e.to_string())
    }
}

pub(crate) fn reservation_add(parts: &Parts, service: Service, args: &Args<'_>) -> Answer {
    let Some(value) = args.get("reservation") else {
        return Answer::error("missing 'reservation' argument: the host to reserve for");
    };
    let Some(map) = value.as_object() else {
        return Answer::error("'reservation' must be a map");
    };
    let request = nested(value);
    let inner = match Args::of(&request) {
        Ok(a) => a,
        Err(e) => return e,
    };
    let family = family(service, &inner);
    if let Err(e) = known_keys(map, family) {
        return e;
    }
    let added = match family {
        Family::V4 => host4(&inner).map(|h| {
            parts.reload.edit_reservations(|s| {
                s.v4.push(h);
                Ok(())
            })
        }),
        Family::V6 => host6(&inner).map(|h| {
            parts.reload.edit_reservations(|s| {
                s.v6.push(h);
                Ok(())
            })
        }),
    };
    match added {
        Err(e) => e,
        Ok(Err(e)) => refused(&e),
        Ok(Ok(o)) => changed("Host added.", &o),
    }
}

/// A write's success: `pause-seconds` says how long the workers paused for it (`null`:
/// they did not; only a change to a pool's layout beyond its exclusions would pause them).
fn changed(text: &str, o: &Outcome) -> Answer {
    let pause = o.pause.map(|p| p.as_secs_f64());
    Answer::with(Code::Success, text, json!({ "pause-seconds": pause }))
}

/// What `reservation-get` and `-del` select: an address or an identifier, in a subnet.
enum Selector {
    Address(IpAddr),
    Identifier(&'static str, Vec<u8>),
}

/// `subnet-id` with `ip-address`, or with `identifier-type` and `identifier`.
fn selector(args: &Args<'_>) -> Result<(u32, Selector), Answer> {
    let subnet = subnet_id(args)?;
    if let Some(text) = args.str("ip-address")? {
        let addr = text.parse::<IpAddr>().map_err(|_| {
            Answer::error(format!("'ip-address' must be an IP address, not {text:?}"))
        })?;
        return Ok((subnet, Selector::Address(addr)));
    }
    let Some(kind) = args.str("identifier-type")? else {
        return Err(Answer::error(
            "No 'ip-address' provided and 'identifier-type' is either missing or not a string.",
        ));
    };
    let kind = match kind {
        "hw-address" => "hw-address",
        "client-id" => "client-id",
        "circuit-id" => "circuit-id",
        "duid" => "duid",
        other => {
            return Err(Answer::error(format!(
                "'identifier-type' must be hw-address, client-id, circuit-id or duid, not {other:?}"
            )));
        }
    };
    let text = args.need_str("identifier")?;
    Ok((
        subnet,
        Selector::Identifier(kind, identifier_bytes("identifier", kind, text)?),
    ))
}

/// The reservations of subnet `id` (0: the global ones), or Kea's error when no subnet has
/// that id.
fn subnet4(config: &Config, id: u32) -> Result<&[Reservation4], Answer> {
    let subnets = config.v4.subnets.iter();
    let of = subnets.map(|s| (s.id, s.reservations.as_slice()));
    in_subnet(Family::V4, id, &config.v4.reservations, of)
}

/// [`subnet4`] for DHCPv6.
fn subnet6(config: &Config, id: u32) -> Result<&[Reservation6], Answer> {
    let subnets = config.v6.subnets.iter();
    let of = subnets.map(|s| (s.id, s.reservations.as_slice()));
    in_subnet(Family::V6, id, &config.v6.reservations, of)
}

/// `global` for `id` 0, else the reservations `subnets` (id, reservations) give for `id`.
fn in_subnet<'c, R>(
    family: Family,
    id: u32,
    global: &'c [R],
    mut subnets: impl Iterator<Item = (u32, &'c [R])>,
) -> Result<&'c [R], Answer> {
    if id == 0 {
        return Ok(global);
    }
    subnets
        .find(|&(s, _)| s == id)
        .map(|(_, r)| r)
        .ok_or_else(|| not_configured(family, id))
}

fn not_configured(family: Family, id: u32) -> Answer {
    Answer::error(format!(
        "{} subnet with ID of '{id}' is not configured",
        family.name()
    ))
}

/// The reservation of subnet `subnet` (0: the global ones) that `sel` names.
fn find4<'c>(
    config: &'c Config,
    subnet: u32,
    sel: &Selector,
) -> Result<Option<&'c Reservation4>, Answer> {
    Ok(subnet4(config, subnet)?.iter().find(|r| matches4(r, sel)))
}

/// [`find4`] for DHCPv6.
fn find6<'c>(
    config: &'c Config,
    subnet: u32,
    sel: &Selector,
) -> Result<Option<&'c Reservation6>, Answer> {
    Ok(subnet6(config, subnet)?.iter().find(|r| matches6(r, sel)))
}

fn matches4(r: &Reservation4, sel: &Selector) -> bool {
    match (sel, &r.key) {
        (Selector::Address(a), _) => *a == IpAddr::V4(r.address),
        (Selector::Identifier("hw-address", b), ReservationKey::HwAddress(k))
        | (Selector::Identifier("client-id", b), ReservationKey::ClientId(k))
        | (Selector::Identifier("circuit-id", b), ReservationKey::CircuitId(k)) => b == k,
        _ => false,
    }
}

fn matches6(r: &Reservation6, sel: &Selector) -> bool {
    match (sel, &r.key) {
        (Selector::Address(a), _) => {
            r.address.map(IpAddr::V6) == Some(*a)
                || r.prefix.map(|p| IpAddr::V6(p.network())) == Some(*a)
        }
        (Selector::Identifier("duid", b), V6Identifier::Duid(k)) => b == k,
        _ => false,
    }
}

/// A DHCPv4 reservation as Kea's `toElement4` shows a host, with its `subnet-id`.
fn show4(r: &Reservation4, subnet: u32) -> Value {
    let mut m = Map::new();
    let (key, id) = match &r.key {
        ReservationKey::HwAddress(b) => ("hw-address", hex(b)),
        ReservationKey::ClientId(b) => ("client-id", flat_hex(b)),
        ReservationKey::CircuitId(b) => ("circuit-id", flat_hex(b)),
        ReservationKey::RemoteId(b) => ("remote-id", flat_hex(b)),
    };
    m.insert(key.into(), json!(id));
    m.insert("ip-address".into(), json!(r.address.to_string()));
    m.insert(
        "hostname".into(),
        json!(r.hostname.clone().unwrap_or_default()),
    );
    let next = r.boot.next_server.unwrap_or(Ipv4Addr::UNSPECIFIED);
    m.insert("next-server".into(), json!(next.to_string()));
    m.insert(
        "server-hostname".into(),
        json!(r.boot.server_hostname.clone().unwrap_or_default()),
    );
    m.insert(
        "boot-file-name".into(),
        json!(r.boot.boot_file_name.clone().unwrap_or_default()),
    );
    m.insert("client-classes".into(), json!([]));
    m.insert("option-data".into(), json!([]));
    m.insert("subnet-id".into(), json!(subnet));
    Value::Object(m)
}

/// A DHCPv6 reservation as Kea's `toElement6` shows a host, with its `subnet-id`; the host
/// name is the run-time reservation's (the config's DHCPv6 reservations keep none).
fn show6(r: &Reservation6, subnet: u32, store: &Store) -> Value {
    let mut m = Map::new();
    let (key, id) = match &r.key {
        V6Identifier::Duid(b) => ("duid", hex(b)),
        V6Identifier::InterfaceId(b) => ("interface-id", flat_hex(b)),
        V6Identifier::SubscriberId(b) => ("subscriber-id", flat_hex(b)),
        V6Identifier::RemoteId { .. } => ("remote-id", flat_hex(&r.key.wire_bytes())),
    };
    let hostname = match &r.key {
        V6Identifier::Duid(_) => stored6(store, subnet, &id).and_then(|h| h.hostname.clone()),
        _ => None,
    };
    m.insert(key.into(), json!(id));
    let addresses: Vec<String> = r.address.iter().map(ToString::to_string).collect();
    let prefixes: Vec<String> = r.prefix.iter().map(ToString::to_string).collect();
    m.insert("ip-addresses".into(), json!(addresses));
    m.insert("prefixes".into(), json!(prefixes));
    m.insert("hostname".into(), json!(hostname.unwrap_or_default()));
    m.insert("client-classes".into(), json!([]));
    m.insert("option-data".into(), json!([]));
    m.insert("subnet-id".into(), json!(subnet));
    Value::Object(m)
}

/// The run-time DHCPv6 reservation of `duid` (canonical hex) in subnet `subnet`.
fn stored6<'s>(store: &'s Store, subnet: u32, duid: &str) -> Option<&'s Host6> {
    store
        .v6
        .iter()
        .find(|h| h.subnet_id == subnet && h.duid == duid)
}

pub(crate) fn reservation_get(parts: &Parts, service: Service, args: &Args<'_>) -> Answer {
    let (subnet, sel) = match selector(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let (config, store) = parts.reload.reservations();
    let found = match family(service, args) {
        Family::V4 => find4(&config, subnet, &sel).map(|r| r.map(|r| show4(r, subnet))),
        Family::V6 => find6(&config, subnet, &sel).map(|r| r.map(|r| show6(r, subnet, &store))),
    };
    match found {
        Err(e) => e,
        Ok(Some(host)) => Answer::with(Code::Success, "Host found.", host),
        Ok(None) => Answer::new(Code::Empty, "Host not found."),
    }
}

pub(crate) fn reservation_get_all(parts: &Parts, service: Service, args: &Args<'_>) -> Answer {
    let subnet = match subnet_id(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let (config, store) = parts.reload.reservations();
    let mut family = family(service, args);
    // With no service named, a subnet id only DHCPv6 has is DHCPv6's.
    if service == Service::Both
        && subnet4(&config, subnet).is_err()
        && subnet6(&config, subnet).is_ok()
    {
        family = Family::V6;
    }
    let hosts: Result<Vec<Value>, Answer> = match family {
        Family::V4 => {
            subnet4(&config, subnet).map(|list| list.iter().map(|r| show4(r, subnet)).collect())
        }
        Family::V6 => subnet6(&config, subnet)
            .map(|list| list.iter().map(|r| show6(r, subnet, &store)).collect()),
    };
    match hosts {
        Err(e) => e,
        Ok(hosts) => {
            let code = if hosts.is_empty() {
                Code::Empty
            } else {
                Code::Success
            };
            Answer::with(
                code,
                format!("{} {} host(s) found.", hosts.len(), family.name()),
                json!({ "hosts": hosts }),
            )
        }
    }
}

pub(crate) fn reservation_del(parts: &Parts, service: Service, args: &Args<'_>) -> Answer {
    let (subnet, sel) = match selector(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let (config, store) = parts.reload.reservations();
    // The reservation served, then whether it is a run-time one: by address (v4) or DUID
    // (v6), each unique in its subnet.
    let found = match family(service, args) {
        Family::V4 => find4(&config, subnet, &sel).map(|found| {
            found.map(|r| {
                let a = r.address.to_string();
                let stored = store
                    .v4
                    .iter()
                    .any(|h| h.subnet_id == subnet && h.ip_address == a);
                (Family::V4, a, stored)
            })
        }),
        Family::V6 => find6(&config, subnet, &sel).map(|found| {
            found.map(|r| {
                let duid = match &r.key {
                    V6Identifier::Duid(b) => hex(b),
                    _ => String::new(),
                };
                let stored = stored6(&store, subnet, &duid).is_some();
                (Family::V6, duid, stored)
            })
        }),
    };
    let (family, key) = match found {
        Err(e) => return e,
        Ok(None) => return Answer::new(Code::Empty, "Host not deleted (not found)."),
        Ok(Some((_, _, false))) => {
            return Answer::error(
                "Host not deleted: this reservation is written in the configuration file; \
                 edit the file and reload it (config-reload)",
            );
        }
        Ok(Some((family, key, true))) => (family, key),
    };
    let deleted = parts.reload.edit_reservations(|s| {
        match family {
            Family::V4 => {
                s.v4.retain(|h| !(h.subnet_id == subnet && h.ip_address == key))
            }
            Family::V6 => s.v6.retain(|h| !(h.subnet_id == subnet && h.duid == key)),
        }
        Ok(())
    });
    match deleted {
        Ok(o) => changed("Host deleted.", &o),
        Err(e) => refused(&e),
    }
}
