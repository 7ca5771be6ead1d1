//! The commands `POST /` runs: a table of Kea command names and their handlers.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, SystemTime};

use lessor_engine::v6::IaKind;
use lessor_engine::{LeaseState, v4, v6};

use lessor_journal::Health;
use serde_json::{Map, Value, json};

use super::config;
use super::kea::{Answer, Args, Code, Request};
use super::leases::{lease4, lease6, parse_hex, select4, select6, subnet_id};
use super::usage::{self, Kind};
use super::{Live, Parts, reservations, writes};
use crate::config::Config;
use crate::stats::total;

/// The family a command was sent for (`service`), or both when none was named.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Service {
    Dhcp4,
    Dhcp6,
    Both,
}

/// One command: its name and what runs it.
type Handler = fn(&Parts, Service, &Args<'_>) -> Answer;

/// Every command lessor answers, in the order `list-commands` gives them.
const COMMANDS: &[(&str, Handler)] = &[
    ("config-get", config::config_get),
    ("config-hash-get", config::config_hash_get),
    ("config-reload", config::config_reload),
    ("config-set", config::config_set),
    ("config-test", config::config_test),
    ("config-write", config::config_write),
    ("lease4-add", writes::lease4_add),
    ("lease4-del", writes::lease4_del),
    ("lease4-get", lease4_get),
    ("lease4-get-all", lease4_get_all),
    ("lease4-get-by-client-id", lease4_get_by_client_id),
    ("lease4-get-by-hostname", lease4_get_by_hostname),
    ("lease4-get-by-hw-address", lease4_get_by_hw_address),
    ("lease4-get-page", lease4_get_page),
    ("lease4-update", writes::lease4_update),
    ("lease4-wipe", writes::lease4_wipe),
    ("lease6-add", writes::lease6_add),
    ("lease6-del", writes::lease6_del),
    ("lease6-get", lease6_get),
    ("lease6-get-all", lease6_get_all),
    ("lease6-get-by-duid", lease6_get_by_duid),
    ("lease6-get-by-hostname", lease6_get_by_hostname),
    ("lease6-get-page", lease6_get_page),
    ("lease6-update", writes::lease6_update),
    ("lease6-wipe", writes::lease6_wipe),
    ("leases-reclaim", writes::leases_reclaim),
    ("list-commands", list_commands),
    ("reservation-add", reservations::reservation_add),
    ("reservation-del", reservations::reservation_del),
    ("reservation-get", reservations::reservation_get),
    ("reservation-get-all", reservations::reservation_get_all),
    ("statistic-get", statistic_get),
    ("statistic-get-all", statistic_get_all),
    ("version-get", version_get),
];

/// Commands that need more of the server than its [`Parts`]: the DHCP switch.
type LiveHandler = fn(&Live, &Parts, Service, &Args<'_>) -> Answer;

/// The commands that take [`Live`], listed with [`COMMANDS`].
const LIVE_COMMANDS: &[(&str, LiveHandler)] = &[
    ("dhcp-disable", dhcp_disable),
    ("dhcp-enable", dhcp_enable),
    ("status-get", status_get),
];

/// Runs `request` and returns Kea's answer list: one answer per named service, or one.
pub(crate) fn run(live: &Live, request: &Request) -> Vec<Answer> {
    let mut services = Vec::new();
    for name in &request.service {
        match name.as_str() {
            "dhcp4" => services.push(Service::Dhcp4),
            "dhcp6" => services.push(Service::Dhcp6),
            other => {
                return vec![Answer::error(format!(
                    "lessor serves 'dhcp4' and 'dhcp6', not service '{other}'"
                ))];
            }
        }
    }
    if services.is_empty() {
        services.push(Service::Both);
    }
    let plain = COMMANDS.iter().find(|(n, _)| *n == request.command);
    let live_cmd = LIVE_COMMANDS.iter().find(|(n, _)| *n == request.command);
    if plain.is_none() && live_cmd.is_none() {
        let text = format!("'{}' command not supported.", request.command);
        return services
            .iter()
            .map(|_| Answer::new(Code::Unsupported, text.clone()))
            .collect();
    }
    // A reload replaces the engines only while no other command runs, and this one then
    // reads the new ones: a lease write never lands in an engine being replaced. The
    // `config-*` and `reservation-*` commands reload, or read only the configuration.
    let reloads = ["config-", "reservation-"]
        .iter()
        .any(|p| request.command.starts_with(p));
    let _quiet = (!reloads).then(|| live.command());
    let Some(parts) = live.parts() else {
        let why = live.not_ready().unwrap_or("starting");
        return vec![Answer::error(format!("lessor is not serving yet: {why}"))];
    };
    let args = match Args::of(request) {
        Ok(a) => a,
        Err(e) => return vec![e],
    };
    services
        .iter()
        .map(|&s| match (plain, live_cmd) {
            (Some(&(_, handler)), _) => handler(&parts, s, &args),
            (None, Some(&(_, handler))) => handler(live, &parts, s, &args),
            (None, None) => unreachable!("checked above"),
        })
        .collect()
}

fn list_commands(_: &Parts, _: Service, _: &Args<'_>) -> Answer {
    let mut names: Vec<&str> = COMMANDS.iter().map(|(n, _)| *n).collect();
    names.extend(LIVE_COMMANDS.iter().map(|(n, _)| *n));
    names.sort_unstable();
    // Kea's answer carries no text.
    Answer::with(Code::Success, "", json!(names))
}

fn version_get(_: &Parts, _: Service, _: &Args<'_>) -> Answer {
    let version = env!("CARGO_PKG_VERSION");
    Answer::with(
        Code::Success,
        version,
        json!({"extended": format!("lessor {version}")}),
    )
}

/// Kea's `status-get` (`pid`, `uptime`, `reload`, `multi-threading-enabled`, `sockets`), with
/// what lessor adds: its workers, the journal's health and the DHCP switch.
fn status_get(live: &Live, parts: &Parts, _: Service, _: &Args<'_>) -> Answer {
    let journal = match parts.journal_health() {
        Health::Ok => json!({"health": "ok"}),
        Health::Failing { error } => json!({"health": "failing", "error": error}),
    };
    let uptime = parts.started.elapsed().as_secs();
    let disabled = live.dhcp.is_disabled();
    let held = live.dhcp.hold().is_some();
    let mut dhcp = json!({"disabled-by-user": disabled, "globally-disabled": disabled || held});
    if let Some(left) = live.dhcp.remaining() {
        dhcp["enable-in"] = Value::from(left);
    }
    let mut workers = json!({"dhcp4": parts.stats.len()});
    if parts.engine6.is_some() {
        workers["dhcp6"] = Value::from(parts.stats6.len());
    }
    let mut status = Answer::with(
        Code::Success,
        "",
        json!({
            "pid": std::process::id(),
            "uptime": uptime,
            "multi-threading-enabled": true,
            "thread-pool-size": parts.stats.len() + parts.stats6.len(),
            // Every socket is bound before the server serves (and answers this).
            "sockets": {"status": "ready"},
            "dhcp-state": dhcp,
            "workers": workers,
            "journal": journal,
        }),
    );
    if let (Some(Value::Object(s)), Some(ha)) = (status.arguments.as_mut(), &parts.ha) {
        s.insert("ha".into(), ha.json());
    }
    // `reload` (Kea's: seconds since the configuration was loaded) and `last-reload`.
    if let (Some(Value::Object(s)), Value::Object(r)) =
        (status.arguments.as_mut(), config::reload_status(parts))
    {
        s.extend(r);
    }
    status
}

/// `dhcp-disable`: the workers drop every request until `dhcp-enable`, or for `max-period`
/// seconds. Kea's `origin` is accepted and ignored. Both families stop together.
fn dhcp_disable(live: &Live, _: &Parts, service: Service, args: &Args<'_>) -> Answer {
    let period = match args.uint("max-period", u64::from(u32::MAX)) {
        Ok(p) => p,
        Err(e) => return e,
    };
    if period == Some(0) {
        return Answer::error("'max-period' must be at least 1");
    }
    if let Some(origin) = args.get("origin")
        && !(origin.is_string() || origin.is_u64())
    {
        return Answer::error(format!(
            "'origin' must be a string or an integer, not {origin}"
        ));
    }
    live.dhcp.disable(period.map(Duration::from_secs));
    let what = match service {
        Service::Dhcp4 => "DHCPv4 service",
        Service::Dhcp6 => "DHCPv6 service",
        Service::Both => "DHCP service",
    };
    let text = match period {
        Some(p) => format!("{what} disabled for {p} seconds"),
        None => format!("{what} disabled"),
    };
    tracing::warn!("{text} (dhcp-disable): every request is dropped");
    Answer::new(Code::Success, text)
}

/// `dhcp-enable`: serves again.
fn dhcp_enable(live: &Live, _: &Parts, _: Service, _: &Args<'_>) -> Answer {
    live.dhcp.enable();
    tracing::info!("DHCP service enabled (dhcp-enable)");
    Answer::new(Code::Success, "DHCP service successfully enabled")
}

/// Kea's statistics: `name: [[value, "YYYY-MM-DD HH:MM:SS.ffffff"]]`, global and per subnet
/// (`subnet[ID].…`, which kea-exporter reads).
fn statistics(parts: &Parts) -> Map<String, Value> {
    let now = kea_time(SystemTime::now());
    let mut out = Map::new();
    let mut put = |name: &str, value: u64| {
        out.insert(name.to_owned(), json!([[value, now]]));
    };
    let dropped = |workers| crate::stats::drops(workers).values().sum::<u64>();
    let failed = |workers| {
        crate::stats::allocation_failures(workers)
            .values()
            .sum::<u64>()
    };
    put("pkt4-received", total(&parts.stats, |w| &w.received));
    put("pkt4-offer-sent", total(&parts.stats, |w| &w.offers));
    put("pkt4-ack-sent", total(&parts.stats, |w| &w.acks));
    put("pkt4-nak-sent", total(&parts.stats, |w| &w.naks));
    put("pkt4-receive-drop", dropped(&parts.stats));
    put("v4-allocation-fail", failed(&parts.stats));
    put("reclaimed-leases", total(&parts.stats, |w| &w.expired));
    if parts.engine6.is_some() {
        put("pkt6-received", total(&parts.stats6, |w| &w.received));
        put(
            "pkt6-advertise-sent",
            total(&parts.stats6, |w| &w.advertises),
        );
        put("pkt6-reply-sent", total(&parts.stats6, |w| &w.replies6));
        put("pkt6-receive-drop", dropped(&parts.stats6));
        put("v6-allocation-fail", failed(&parts.stats6));
    }
    // Kea keeps these in int64: a /64 of addresses saturates.
    let big = |n: u128| u64::try_from(n).unwrap_or(u64::MAX).min(i64::MAX as u64);
    let mut declined = 0;
    for u in usage::usage(parts) {
        let Some(id) = u.id else { continue };
        declined += u.declined;
        match (u.family, u.kind) {
            ("v4", _) => {
                put(&format!("subnet[{id}].total-addresses"), big(u.total));
                put(&format!("subnet[{id}].assigned-addresses"), u.bound);
                put(&format!("subnet[{id}].declined-addresses"), u.declined);
            }
            (_, Kind::Address) => {
                put(&format!("subnet[{id}].total-nas"), big(u.total));
                put(&format!("subnet[{id}].assigned-nas"), u.bound);
                put(&format!("subnet[{id}].declined-addresses"), u.declined);
            }
            (_, Kind::Prefix) => {
                put(&format!("subnet[{id}].total-pds"), big(u.total));
                put(&format!("subnet[{id}].assigned-pds"), u.bound);
            }
        }
    }
    put("declined-addresses", declined);
    out
}

/// A time as Kea's statistics print it, in UTC.
fn kea_time(t: SystemTime) -> String {
    // humantime's RFC 3339 with microseconds: "2026-12-06T21:30:00.123456Z".
    let rfc = humantime::format_rfc3339_micros(t).to_string();
    rfc.trim_end_matches('Z').replacen('T', " ", 1)
}

fn statistic_get_all(parts: &Parts, _: Service, _: &Args<'_>) -> Answer {
    let all = statistics(parts);
    Answer::with(Code::Success, "", Value::Object(all))
}

fn statistic_get(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let name = match args.need_str("name") {
        Ok(n) => n,
        Err(e) => return e,
    };
    let mut all = statistics(parts);
    match all.remove(name) {
        Some(v) => Answer::with(Code::Success, "", json!({ name: v })),
        // Kea answers an unknown statistic with success and an empty map.
        None => Answer::with(Code::Success, "", json!({})),
    }
}

/// `n IPv4 lease(s) found.`, with result 3 (empty) when `n` is 0.
fn found(family: &str, leases: Vec<Value>) -> Answer {
    let n = leases.len();
    let code = if n == 0 { Code::Empty } else { Code::Success };
    Answer::with(
        code,
        format!("{n} {family} lease(s) found."),
        json!({ "leases": leases }),
    )
}

/// One lease, or result 3 when there is none.
fn one(family: &str, lease: Option<Value>) -> Answer {
    match lease {
        Some(l) => Answer::with(Code::Success, format!("{family} lease found."), l),
        None => Answer::new(Code::Empty, "Lease not found."),
    }
}

/// The first `limit` DHCPv4 leases Kea would list (every record but an offer's hold) that
/// `keep` selects, by address.
fn leases4(
    parts: &Parts,
    limit: usize,
    mut keep: impl FnMut(&v4::Lease) -> bool,
) -> Vec<v4::Lease> {
    select4(parts, limit, |l| l.state != LeaseState::Offered && keep(l))
}

/// The first `limit` DHCPv6 leases Kea would list that `keep` selects, by resource.
fn leases6(
    parts: &Parts,
    limit: usize,
    mut keep: impl FnMut(&v6::Lease) -> bool,
) -> Vec<v6::Lease> {
    select6(parts, limit, |l| l.state != LeaseState::Offered && keep(l))
}

/// A required identifier argument in Kea's hex (`01:02:ab`).
fn hex_arg(args: &Args<'_>, key: &str) -> Result<Vec<u8>, Answer> {
    let text = args.need_str(key)?;
    parse_hex(text).ok_or_else(|| {
        Answer::error(format!(
            "'{key}' must be hex bytes such as 01:02:0a, not {text:?}"
        ))
    })
}

/// The `subnets` argument: which subnet ids to list (all when absent).
fn subnet_filter(args: &Args<'_>) -> Result<Option<Vec<u64>>, Answer> {
    args.uints("subnets", u64::from(u32::MAX))
}

fn in_subnets(config: &Config, addr: IpAddr, subnets: Option<&[u64]>) -> bool {
    subnets.is_none_or(|ids| ids.contains(&u64::from(subnet_id(config, addr))))
}

fn lease4_get_all(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let subnets = match subnet_filter(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let listed = leases4(parts, usize::MAX, |l| {
        in_subnets(&parts.config, IpAddr::V4(l.address), subnets.as_deref())
    })
    .iter()
    .map(|l| lease4(&parts.config, l))
    .collect();
    found("IPv4", listed)
}

fn lease6_get_all(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let subnets = match subnet_filter(args) {
        Ok(s) => s,
        Err(e) => return e,
    };
    let listed = leases6(parts, usize::MAX, |l| {
        in_subnets(
            &parts.config,
            IpAddr::V6(l.resource.addr),
            subnets.as_deref(),
        )
    })
    .iter()
    .map(|l| lease6(&parts.config, l))
    .collect();
    found("IPv6", listed)
}

/// `lease4-get`: by `ip-address`, or by `identifier-type` (`hw-address`, `client-id`),
/// `identifier` and `subnet-id`.
fn lease4_get(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let config = &parts.config;
    if let Some(text) = args.get("ip-address") {
        let Some(addr) = text.as_str().and_then(|t| t.parse::<Ipv4Addr>().ok()) else {
            return Answer::error(format!("'ip-address' must be an IPv4 address, not {text}"));
        };
        let lease = parts
            .engine
            .get(addr)
            .filter(|l| l.state != LeaseState::Offered);
        return one("IPv4", lease.map(|l| lease4(config, &l)));
    }
    let (kind, id, subnet) = match identifier(args) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let lease = lease4_by_identifier(parts, kind, &id, subnet);
    one("IPv4", lease.map(|l| lease4(config, &l)))
}

/// The DHCPv4 lease Kea would list whose `identifier-type` `kind` (`hw-address`, else
/// `client-id`) is `id`, in subnet `subnet`; found by the chunked walk.
pub(crate) fn lease4_by_identifier(
    parts: &Parts,
    kind: &str,
    id: &[u8],
    subnet: u32,
) -> Option<v4::Lease> {
    leases4(parts, 1, |l| {
        subnet_id(&parts.config, IpAddr::V4(l.address)) == subnet
            && match kind {
                "hw-address" => l.hw.bytes() == id,
                _ => l.client.as_bytes().split_first() == Some((&1, id)),
            }
    })
    .pop()
}

/// `identifier-type`, `identifier` and `subnet-id`, for a get by identifier.
fn identifier<'a>(args: &Args<'a>) -> Result<(&'a str, Vec<u8>, u32), Answer> {
    let kind = args.need_str("identifier-type")?;
    if !matches!(kind, "hw-address" | "client-id" | "duid") {
        return Err(Answer::error(format!(
            "'identifier-type' must be hw-address, client-id or duid, not {kind:?}"
        )));
    }
    let id = hex_arg(args, "identifier")?;
    let subnet = args
        .uint("subnet-id", u64::from(u32::MAX))?
        .ok_or_else(|| Answer::error("missing 'subnet-id' argument"))?;
    Ok((kind, id, subnet as u32))
}

/// `lease6-get`: by `ip-address` (and `type`), or by `identifier-type` `duid`, `identifier`,
/// `iaid` and `subnet-id`.
fn lease6_get(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let config = &parts.config;
    let kind = match args.str("type") {
        Ok(None | Some("IA_NA")) => IaKind::Na,
        Ok(Some("IA_PD")) => IaKind::Pd,
        Ok(Some(other)) => {
            return Answer::error(format!("'type' must be IA_NA or IA_PD, not {other:?}"));
        }
        Err(e) => return e,
    };
    if let Some(text) = args.get("ip-address") {
        let Some(addr) = text.as_str().and_then(|t| t.parse::<Ipv6Addr>().ok()) else {
            return Answer::error(format!("'ip-address' must be an IPv6 address, not {text}"));
        };
        return one(
            "IPv6",
            lease6_at(parts, kind, addr).map(|l| lease6(config, &l)),
        );
    }
    let (_, duid, subnet) = match identifier(args) {
        Ok(x) => x,
        Err(e) => return e,
    };
    let iaid = match args.uint("iaid", u64::from(u32::MAX)) {
        Ok(Some(i)) => i as u32,
        Ok(None) => return Answer::error("missing 'iaid' argument"),
        Err(e) => return e,
    };
    let lease = lease6_by_identifier(parts, kind, &duid, iaid, subnet);
    one("IPv6", lease.map(|l| lease6(config, &l)))
}

/// The DHCPv6 lease Kea would list of `kind` at `addr`; found by the chunked walk.
pub(crate) fn lease6_at(parts: &Parts, kind: IaKind, addr: Ipv6Addr) -> Option<v6::Lease> {
    leases6(parts, 1, |l| {
        l.resource.addr == addr && l.client.kind() == kind
    })
    .pop()
}

/// The DHCPv6 lease Kea would list of `kind`, `duid` and `iaid` in subnet `subnet`.
pub(crate) fn lease6_by_identifier(
    parts: &Parts,
    kind: IaKind,
    duid: &[u8],
    iaid: u32,
    subnet: u32,
) -> Option<v6::Lease> {
    leases6(parts, 1, |l| {
        l.client.kind() == kind
            && l.client.iaid() == iaid
            && l.client.duid() == duid
            && subnet_id(&parts.config, IpAddr::V6(l.resource.addr)) == subnet
    })
    .pop()
}

fn lease4_get_by_hw_address(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let hw = match hex_arg(args, "hw-address") {
        Ok(h) => h,
        Err(e) => return e,
    };
    let listed = leases4(parts, usize::MAX, |l| l.hw.bytes() == hw.as_slice())
        .iter()
        .map(|l| lease4(&parts.config, l))
        .collect();
    found("IPv4", listed)
}

fn lease4_get_by_client_id(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let id = match hex_arg(args, "client-id") {
        Ok(h) => h,
        Err(e) => return e,
    };
    let listed = leases4(parts, usize::MAX, |l| {
        l.client.as_bytes().split_first() == Some((&1, id.as_slice()))
    })
    .iter()
    .map(|l| lease4(&parts.config, l))
    .collect();
    found("IPv4", listed)
}

fn lease4_get_by_hostname(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let name = match args.need_str("hostname") {
        Ok(n) => n,
        Err(e) => return e,
    };
    let listed = leases4(parts, usize::MAX, |l| {
        l.hostname
            .as_deref()
            .is_some_and(|h| h.eq_ignore_ascii_case(name))
    })
    .iter()
    .map(|l| lease4(&parts.config, l))
    .collect();
    found("IPv4", listed)
}

fn lease6_get_by_duid(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let duid = match hex_arg(args, "duid") {
        Ok(h) => h,
        Err(e) => return e,
    };
    let listed = leases6(parts, usize::MAX, |l| l.client.duid() == duid.as_slice())
        .iter()
        .map(|l| lease6(&parts.config, l))
        .collect();
    found("IPv6", listed)
}

fn lease6_get_by_hostname(_: &Parts, _: Service, args: &Args<'_>) -> Answer {
    // DHCPv6 leases carry no host name yet: a valid request finds none.
    if let Err(e) = args.need_str("hostname") {
        return e;
    }
    found("IPv6", Vec::new())
}

/// The most leases one page may ask for.
const MAX_PAGE: u64 = 100_000;

/// `from` (`"start"` or an address) and `limit` of a page.
fn page<T: std::str::FromStr>(args: &Args<'_>) -> Result<(Option<T>, usize), Answer> {
    let from = match args.need_str("from")? {
        "start" => None,
        text => Some(text.parse::<T>().map_err(|_| {
            Answer::error(format!(
                "'from' must be \"start\" or an address, not {text:?}"
            ))
        })?),
    };
    let limit = args
        .uint("limit", MAX_PAGE)?
        .ok_or_else(|| Answer::error("missing 'limit' argument"))?;
    if limit == 0 {
        return Err(Answer::error("'limit' must be at least 1"));
    }
    Ok((from, limit as usize))
}

/// A page: [`found`], with the `count` Kea adds to a page.
fn paged(family: &str, leases: Vec<Value>) -> Answer {
    let n = leases.len();
    let mut answer = found(family, leases);
    if let Some(args) = answer.arguments.as_mut() {
        args["count"] = Value::from(n);
    }
    answer
}

fn lease4_get_page(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let (from, limit) = match page::<Ipv4Addr>(args) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let listed = leases4(parts, limit, |l| from.is_none_or(|f| l.address > f))
        .iter()
        .map(|l| lease4(&parts.config, l))
        .collect();
    paged("IPv4", listed)
}

fn lease6_get_page(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let (from, limit) = match page::<Ipv6Addr>(args) {
        Ok(p) => p,
        Err(e) => return e,
    };
    let listed = leases6(parts, limit, |l| from.is_none_or(|f| l.resource.addr > f))
        .iter()
        .map(|l| lease6(&parts.config, l))
        .collect();
    paged("IPv6", listed)
}
