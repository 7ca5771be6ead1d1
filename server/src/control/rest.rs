//! Plain REST reads for people and scripts: `GET /v1/leases` with filters, and
//! `GET /v1/leases/ADDRESS`. The lease objects are Kea's, with `state` as a word
//! (`bound`, `declined`, ...), the `family`, and `expires` in seconds since the epoch.

use std::net::IpAddr;

use serde::Deserialize;
use serde_json::{Value, json};

use super::Parts;
use lessor_engine::v6::Lease as Lease6;

use super::leases::{lease4, lease6, parse_hex, select4, select6, state_name, subnet_id};

/// The most leases one request returns; ask again with `from` for more.
const MAX_LIMIT: usize = 100_000;

/// The query of `GET /v1/leases`; every field is a filter and all must hold.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct Query {
    family: Option<String>,
    subnet: Option<u32>,
    hw_address: Option<String>,
    client_id: Option<String>,
    duid: Option<String>,
    hostname: Option<String>,
    state: Option<String>,
    /// Only leases of addresses after this one (paging).
    from: Option<IpAddr>,
    limit: Option<usize>,
}

/// A bad query: the parameter and why.
pub(crate) type Bad = String;

/// The leases `query` selects, by address, v4 first.
pub(crate) fn list(parts: &Parts, query: &Query) -> Result<Value, Bad> {
    let (v4, v6) = match query.family.as_deref() {
        None => (true, true),
        Some("v4" | "4") => (true, false),
        Some("v6" | "6") => (false, true),
        Some(other) => return Err(format!("family: must be v4 or v6, not {other:?}")),
    };
    let hex = |name: &str, v: &Option<String>| -> Result<Option<Vec<u8>>, Bad> {
        v.as_deref()
            .map(|s| parse_hex(s).ok_or_else(|| format!("{name}: not hex bytes: {s:?}")))
            .transpose()
    };
    let hw = hex("hw_address", &query.hw_address)?;
    let client_id = hex("client_id", &query.client_id)?;
    let duid = hex("duid", &query.duid)?;
    if let Some(s) = &query.state
        && !["offered", "bound", "released", "expired", "declined"].contains(&s.as_str())
    {
        return Err(format!(
            "state: must be offered, bound, released, expired or declined, not {s:?}"
        ));
    }
    let limit = query.limit.unwrap_or(MAX_LIMIT);
    if limit == 0 || limit > MAX_LIMIT {
        return Err(format!("limit: must be from 1 to {MAX_LIMIT}, not {limit}"));
    }
    let config = &parts.config;
    let common = |addr: IpAddr, state, hostname: Option<&str>| {
        query.subnet.is_none_or(|id| subnet_id(config, addr) == id)
            && query
                .state
                .as_deref()
                .is_none_or(|s| s == state_name(state))
            && query
                .hostname
                .as_deref()
                .is_none_or(|h| hostname.is_some_and(|n| n.eq_ignore_ascii_case(h)))
            && query.from.is_none_or(|f| addr > f)
    };
    let mut out = Vec::new();
    if v4 && duid.is_none() {
        let keep = |l: &lessor_engine::v4::Lease| {
            common(IpAddr::V4(l.address), l.state, l.hostname.as_deref())
                && hw.as_deref().is_none_or(|h| l.hw.bytes() == h)
                && client_id
                    .as_deref()
                    .is_none_or(|id| l.client.as_bytes().split_first() == Some((&1, id)))
        };
        for l in select4(parts, limit, keep) {
            out.push(native(lease4(config, &l), "v4", l.state, l.expires));
        }
    }
    if v6 && hw.is_none() && client_id.is_none() && out.len() < limit {
        let keep = |l: &Lease6| {
            common(IpAddr::V6(l.resource.addr), l.state, None)
                && duid.as_deref().is_none_or(|d| l.client.duid() == d)
        };
        for l in select6(parts, limit - out.len(), keep) {
            out.push(native(lease6(config, &l), "v6", l.state, l.expires));
        }
    }
    Ok(json!({ "leases": out }))
}

/// The record of `addr` (a DHCPv6 address, not a prefix), or `None`.
pub(crate) fn get(parts: &Parts, addr: IpAddr) -> Option<Value> {
    let config = &parts.config;
    match addr {
        IpAddr::V4(a) => parts
            .engine
            .get(a)
            .map(|l| native(lease4(config, &l), "v4", l.state, l.expires)),
        IpAddr::V6(a) => select6(parts, 1, |l| l.resource.addr == a)
            .pop()
            .map(|l| native(lease6(config, &l), "v6", l.state, l.expires)),
    }
}

/// A Kea lease object turned into the REST one.
fn native(mut kea: Value, family: &str, state: lessor_engine::LeaseState, expires: u64) -> Value {
    kea["state"] = Value::from(state_name(state));
    kea["family"] = Value::from(family);
    kea["expires"] = Value::from(expires);
    kea
}
