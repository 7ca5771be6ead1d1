//! Leases as Kea's lease commands show them: `ip-address`, `hw-address`, `client-id`, `duid`,
//! `iaid`, `type`, `prefix-len`, `subnet-id`, `valid-lft`, `cltt`, `hostname`, `state`; with
//! `ha`, `written-by`: the peer that wrote the lease's last change.

use std::net::IpAddr;
use std::ops::ControlFlow;

use lessor_engine::v6::IaKind;
use lessor_engine::{LeaseState, v4, v6};
use serde_json::{Value, json};

use super::kea::{Answer, Args};
use crate::config::Config;

/// Records a listing copies under one shard lock at a time.
pub(crate) const CHUNK: usize = 1024;

/// Of the records `walk` visits, the first `limit` by `key` that `keep` selects, in order.
///
/// `walk` is an engine's chunked visit, so no shard stays locked for long; memory stays
/// within about twice `limit` however many records there are.
pub(crate) fn first_by<L, K: Ord>(
    walk: impl FnOnce(&mut dyn FnMut(L) -> ControlFlow<()>),
    key: impl Fn(&L) -> K,
    mut keep: impl FnMut(&L) -> bool,
    limit: usize,
) -> Vec<L> {
    let mut out = Vec::new();
    let mut visit = |l: L| {
        if keep(&l) {
            out.push(l);
            if limit < usize::MAX / 2 && out.len() >= 2 * limit.max(CHUNK) {
                out.select_nth_unstable_by_key(limit, &key);
                out.truncate(limit);
            }
        }
        ControlFlow::Continue(())
    };
    walk(&mut visit);
    out.sort_unstable_by_key(&key);
    out.truncate(limit);
    out
}

/// The first `limit` DHCPv4 records by address that `keep` selects, walked in chunks.
pub(crate) fn select4(
    parts: &super::Parts,
    limit: usize,
    keep: impl FnMut(&v4::Lease) -> bool,
) -> Vec<v4::Lease> {
    first_by(
        |v| parts.engine.visit_leases(CHUNK, v),
        |l| l.address,
        keep,
        limit,
    )
}

/// The first `limit` DHCPv6 records by resource that `keep` selects, walked in chunks.
pub(crate) fn select6(
    parts: &super::Parts,
    limit: usize,
    keep: impl FnMut(&v6::Lease) -> bool,
) -> Vec<v6::Lease> {
    let Some(engine) = &parts.engine6 else {
        return Vec::new();
    };
    first_by(
        |v| engine.visit_leases(CHUNK, v),
        |l| l.resource,
        keep,
        limit,
    )
}

/// Kea's lease state code: 0 assigned, 1 declined, 2 expired-reclaimed (a released lease is
/// reclaimed at once in Kea, so it reads 2 as well).
pub(crate) fn kea_state(state: LeaseState) -> u8 {
    match state {
        LeaseState::Offered | LeaseState::Bound => 0,
        LeaseState::Declined => 1,
        LeaseState::Released | LeaseState::Expired => 2,
    }
}

/// The state as a word, for the REST reads and their `state=` filter.
pub(crate) fn state_name(state: LeaseState) -> &'static str {
    match state {
        LeaseState::Offered => "offered",
        LeaseState::Bound => "bound",
        LeaseState::Released => "released",
        LeaseState::Expired => "expired",
        LeaseState::Declined => "declined",
    }
}

/// Bytes as Kea writes identifiers: lower-case hex joined by colons.
pub(crate) fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        s.push_str(&format!("{b:02x}"));
    }
    s
}

/// Reads `01:02:ab` (or `0102ab`, or `01-02-ab`) back into bytes.
pub(crate) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let digits: String = s.chars().filter(|c| !matches!(c, ':' | '-')).collect();
    if digits.is_empty() || !digits.len().is_multiple_of(2) {
        return None;
    }
    (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect()
}

/// The id of the configured subnet that holds `addr`, or whose prefix delegation pools hold
/// it (0 when none does, as Kea says of a lease outside every subnet).
pub(crate) fn subnet_id(config: &Config, addr: IpAddr) -> u32 {
    match addr {
        IpAddr::V4(a) => config
            .v4
            .subnets
            .iter()
            .find(|s| s.net.contains(&a))
            .map_or(0, |s| s.id),
        IpAddr::V6(a) => config
            .v6
            .subnets
            .iter()
            .find(|s| s.net.contains(&a) || s.pd_pools.iter().any(|p| p.prefix.contains(&a)))
            .map_or(0, |s| s.id),
    }
}

/// An optional identifier argument in Kea's hex (`01:02:ab`).
pub(crate) fn hex_opt(args: &Args<'_>, key: &str) -> Result<Option<Vec<u8>>, Answer> {
    let Some(text) = args.str(key)? else {
        return Ok(None);
    };
    parse_hex(text).map(Some).ok_or_else(|| {
        Answer::error(format!(
            "'{key}' must be hex bytes such as 01:02:0a, not {text:?}"
        ))
    })
}

/// The client identifier the lease's key holds, if the key is one (not a hardware address).
fn client_id(lease: &v4::Lease) -> Option<&[u8]> {
    match lease.client.as_bytes() {
        [1, id @ ..] => Some(id),
        _ => None,
    }
}

/// Seconds from `from` to `to`, saturating at both ends of a `u32`.
fn span(from: u64, to: u64) -> u64 {
    to.saturating_sub(from).min(u64::from(u32::MAX))
}

/// A DHCPv4 lease as Kea's `lease4-get` shows it.
pub(crate) fn lease4(config: &Config, lease: &v4::Lease) -> Value {
    let mut v = json!({
        "ip-address": lease.address.to_string(),
        "hw-address": lease.hw.to_string(),
        "subnet-id": subnet_id(config, IpAddr::V4(lease.address)),
        "cltt": lease.starts,
        "valid-lft": span(lease.starts, lease.expires),
        "hostname": lease.hostname.as_deref().unwrap_or(""),
        "fqdn-fwd": false,
        "fqdn-rev": false,
        "state": kea_state(lease.state),
    });
    if let Some(id) = client_id(lease) {
        v["client-id"] = Value::String(hex(id));
    }
    written_by(config, lease.version, &mut v);
    v
}

/// Adds `written-by`: the HA peer that wrote the lease's last change, when one did.
fn written_by(config: &Config, version: u64, v: &mut Value) {
    if let Some(node) = crate::ha::written_by(config, version) {
        v["written-by"] = Value::String(node.to_owned());
    }
}

/// A DHCPv6 lease as Kea's `lease6-get` shows it.
pub(crate) fn lease6(config: &Config, lease: &v6::Lease) -> Value {
    let key = &lease.client;
    let mut v = json!({
        "ip-address": lease.resource.addr.to_string(),
        "type": match key.kind() { IaKind::Na => "IA_NA", IaKind::Pd => "IA_PD" },
        "duid": hex(key.duid()),
        "iaid": key.iaid(),
        "subnet-id": subnet_id(config, IpAddr::V6(lease.resource.addr)),
        "cltt": lease.starts,
        "valid-lft": span(lease.starts, lease.expires),
        "preferred-lft": lease.preferred,
        "hostname": "",
        "fqdn-fwd": false,
        "fqdn-rev": false,
        "state": kea_state(lease.state),
    });
    if key.kind() == IaKind::Pd {
        v["prefix-len"] = Value::from(lease.resource.len);
    }
    written_by(config, lease.version, &mut v);
    v
}

#[cfg(test)]
mod tests {
    use std::ops::ControlFlow;

    use super::{first_by, hex, parse_hex};

    #[test]
    fn first_by_keeps_the_lowest_keys_selected_whatever_the_walk_order() {
        let walk = |v: &mut dyn FnMut(u32) -> ControlFlow<()>| {
            // Every number below 10_000 once, in a scrambled order.
            for i in 0..10_000u32 {
                let _ = v(i.wrapping_mul(7919) % 10_000);
            }
        };
        let got = first_by(walk, |&n| n, |n| n % 2 == 1 && *n > 100, 5);
        assert_eq!(got, vec![101, 103, 105, 107, 109]);
        let all = first_by(walk, |&n| n, |_| true, usize::MAX);
        assert_eq!(all, (0..10_000).collect::<Vec<_>>());
    }

    #[test]
    fn identifiers_round_trip_through_kea_hex() {
        assert_eq!(hex(&[1, 0x0a, 0xff]), "01:0a:ff");
        assert_eq!(hex(&[]), "");
        assert_eq!(parse_hex("01:0a:FF"), Some(vec![1, 0x0a, 0xff]));
        assert_eq!(parse_hex("010aff"), Some(vec![1, 0x0a, 0xff]));
        assert_eq!(parse_hex("01-0a-ff"), Some(vec![1, 0x0a, 0xff]));
        assert_eq!(parse_hex("1:0a"), None);
        assert_eq!(parse_hex("zz"), None);
        assert_eq!(parse_hex(""), None);
    }
}
