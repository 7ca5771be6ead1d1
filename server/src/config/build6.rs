//! Validation of the `v6:` section: walks the wire tree keeping the key path and builds the
//! typed [`V6Config`].
//!
//! Like `build4.rs` for v4: each subnet is built on its own, then the rules that need every
//! subnet (overlaps, a relay, interface or interface-id selecting two subnets, a resource
//! reserved twice) name both entries.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::path::PathBuf;

use ipnet::{IpNet, Ipv6Net};

use super::addr::{cidr6, range6, unicast6};
use super::error::{ConfigError, invalid};
use super::hex::parse_hex;
use super::options6::{OptionSet6, parse_options6};
use super::path::{At, at, join};
use super::shared::{
    Bounds, Links, Reserved, agent_id, check_placement, check_shared_network, excluded_set,
    identifier, inside, layout, relay_list, shared_interface, subnet_id, subnet_interface,
};
use super::times::{Lifetimes, hold_times, lifetimes};
use super::wire::{self, Value};
use super::{PdPool6, Pool6, Reservation6, Subnet6, V6Config, V6Identifier};

pub(super) const DEFAULT_PORT6: u16 = lessor_net::wire::v6::SERVER_PORT;
/// RFC 8415 §11.1: a DUID is at most 128 octets plus its 2-octet type.
pub(super) const MAX_DUID_LEN: usize = 130;

type Result<T> = std::result::Result<T, ConfigError>;

fn preference(path: &str, v: Option<&Value>) -> Result<Option<u8>> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Int(i)) => u8::try_from(*i)
            .map(Some)
            .map_err(|_| invalid(path, format!("expected an integer in 0..=255, got {i}"))),
        Some(other) => Err(invalid(
            path,
            format!("expected an integer in 0..=255, got {}", other.describe()),
        )),
    }
}

/// What a subnet inherits from the level above it: its shared network's link selectors (each
/// with its key path) and options merged over the global ones.
struct Scope {
    link: usize,
    relays: Vec<At<Ipv6Addr>>,
    interface: Option<At<String>>,
    interface_ids: Vec<At<Vec<u8>>>,
    options: OptionSet6,
}

impl Scope {
    /// A lone subnet's scope: link `link`, the global options.
    fn alone(link: usize, global: &OptionSet6) -> Self {
        Scope {
            link,
            relays: Vec::new(),
            interface: None,
            interface_ids: Vec::new(),
            options: global.clone(),
        }
    }
}

/// A built subnet with what the checks across subnets name, as in `build4.rs`, and its
/// interface-ids among the link selectors.
struct Built {
    subnet: Subnet6,
    /// `v6.subnets[i]` or `v6.shared_networks[i].subnets[j]`; its pools, delegation pools and
    /// reservations are at `path.pools[k]`, `path.pd_pools[k]` and `path.reservations[k]`.
    path: String,
    relays: Vec<At<Ipv6Addr>>,
    interface_ids: Vec<At<Vec<u8>>>,
    interface: Option<At<String>>,
}

impl Default for V6Config {
    /// The configuration of an absent `v6:` section: DHCPv6 off, every default in place.
    fn default() -> Self {
        // An empty section always validates; failing here is a build defect, not input.
        v6(wire::V6::default()).unwrap_or_else(|e| panic!("the empty v6 section is invalid: {e}"))
    }
}

pub(super) fn v6(w: wire::V6) -> Result<V6Config> {
    let port = w.port.unwrap_or(DEFAULT_PORT6);
    if port == 0 {
        return Err(invalid("v6.port", "must be 1..=65535, not 0"));
    }
    let times = [
        &w.preferred_lifetime,
        &w.valid_lifetime,
        &w.renew_time,
        &w.rebind_time,
    ];
    let life = lifetimes("v6", times, None)?;
    let rapid_commit = w.rapid_commit.unwrap_or(false);
    let pref = preference("v6.preference", w.preference.as_ref())?;
    let (offer_hold, decline_probation) =
        hold_times("v6", w.offer_hold.as_ref(), w.decline_probation.as_ref())?;
    let server_duid = match &w.server_duid {
        None => None,
        Some(s) => Some(
            parse_hex(s)
                .filter(|b| (3..=MAX_DUID_LEN).contains(&b.len()))
                .ok_or_else(|| {
                    invalid(
                        "v6.server_duid",
                        format!(
                            "{s:?} is not a DUID in hex like \"00:01:00:01:2d:3e:4f:50:02:00:00:00:00:01\" \
                             (3 to {MAX_DUID_LEN} bytes)"
                        ),
                    )
                })?,
        ),
    };
    let server_unicast = w
        .server_unicast
        .as_deref()
        .map(|s| unicast6("v6.server_unicast", s))
        .transpose()?;
    let global = parse_options6("v6.options", w.options.as_ref())?;
    let assignments_file = match w.assignments_file {
        Some(f) if f.trim().is_empty() => {
            return Err(invalid(
                "v6.assignments_file",
                "must not be empty (omit it for none)",
            ));
        }
        f => f.map(PathBuf::from),
    };

    let mut names: HashMap<String, String> = HashMap::new();
    let (subnets, links) = layout(
        "v6",
        w.subnets.unwrap_or_default(),
        w.shared_networks.unwrap_or_default(),
        |link| Scope::alone(link, &global),
        |path, sn, link| {
            let scope = shared_scope(path, &sn, link, &global, &mut names)?;
            Ok((sn.name, sn.subnets, scope))
        },
        |ws, path, position, scope| subnet(ws, path, position, scope, &life, rapid_commit, pref),
    )?;
    check_subnets(&subnets)?;
    let reservations = global_reservations(w.reservations.unwrap_or_default(), &subnets)?;
    let subnets: Vec<Subnet6> = subnets.into_iter().map(|b| b.subnet).collect();

    Ok(V6Config {
        port,
        preferred_lifetime: life.preferred.0,
        valid_lifetime: life.valid.0,
        renew_time: life.renew.map(|r| r.0),
        rebind_time: life.rebind.map(|r| r.0),
        rapid_commit,
        preference: pref,
        offer_hold,
        decline_probation,
        server_duid,
        server_unicast,
        options: global,
        subnets,
        links,
        reservations,
        assignments_file,
    })
}

/// A shared network's name, selectors and options (`v6.shared_networks[i]`), checked.
fn shared_scope(
    path: &str,
    sn: &wire::SharedNetwork6,
    link: usize,
    global: &OptionSet6,
    names: &mut HashMap<String, String>,
) -> Result<Scope> {
    check_shared_network(path, &sn.name, sn.subnets.is_empty(), names)?;
    let relays = relay_list(path, sn.relays.as_deref(), &[], unicast6)?;
    let interface = shared_interface(path, sn.interface.clone())?;
    let interface_ids = interface_id_list(path, sn.interface_ids.as_deref(), &[])?;
    let own = parse_options6(&join(path, "options"), sn.options.as_ref())?;
    Ok(Scope {
        link,
        relays,
        interface,
        interface_ids,
        options: global.merged(&own),
    })
}

/// `parent.interface_ids` after the `inherited` ones, each with its key path; an id listed
/// twice is refused.
fn interface_id_list(
    parent: &str,
    list: Option<&[String]>,
    inherited: &[At<Vec<u8>>],
) -> Result<Vec<At<Vec<u8>>>> {
    let mut out = inherited.to_vec();
    for (i, s) in list.unwrap_or_default().iter().enumerate() {
        let p = at(&join(parent, "interface_ids"), i);
        let b = agent_id(s).ok_or_else(|| {
            invalid(
                &p,
                format!(
                    "{s:?} is not an interface-id: write \"0x\" and hex digits, hex bytes \
                     \"aa:bb\", or text (1 to 255 bytes)"
                ),
            )
        })?;
        if let Some(other) = out.iter().find(|o| o.value == b) {
            return Err(invalid(
                p,
                format!("interface-id {s} is already listed at {}", other.path),
            ));
        }
        out.push(At { value: b, path: p });
    }
    Ok(out)
}

/// `v6.reservations`: reservations that hold in any subnet. An address is checked against no
/// subnet here (it is used only where it is on the client's link); an address or prefix is
/// reserved once, here or in a subnet.
fn global_reservations(
    list: Vec<wire::Reservation6>,
    subnets: &[Built],
) -> Result<Vec<Reservation6>> {
    let in_subnets = |pick: &dyn Fn(&Reservation6) -> bool| {
        subnets.iter().find_map(|b| {
            let k = b.subnet.reservations.iter().position(pick)?;
            Some(at(&join(&b.path, "reservations"), k))
        })
    };
    let mut out: Vec<Reservation6> = Vec::with_capacity(list.len());
    let mut by_key = Reserved::new("v6.reservations", list.len());
    for (i, r) in list.into_iter().enumerate() {
        let p = at("v6.reservations", i);
        // Its own options only: they go over those of whichever subnet the client is in.
        let (res, name, text) = reservation(&p, r, None, &OptionSet6::new())?;
        by_key.once(i, res.key.clone(), name, &format_args!("{name} {text}"))?;
        if let Some(a) = res.address
            && let Some(other) = in_subnets(&|r| r.address == Some(a))
        {
            return Err(invalid(
                join(&p, "address"),
                format!("{a} is already reserved by {other}"),
            ));
        }
        if let Some(x) = res.prefix
            && let Some(other) = in_subnets(&|r| r.prefix == Some(x))
        {
            return Err(invalid(
                join(&p, "prefix"),
                format!("{x} is already reserved by {other}"),
            ));
        }
        for (j, o) in out.iter().enumerate() {
            if let Some(a) = res.address.filter(|a| o.address == Some(*a)) {
                return Err(invalid(
                    join(&p, "address"),
                    format!("{a} is already reserved by v6.reservations[{j}]"),
                ));
            }
            if let Some(x) = res.prefix.filter(|x| o.prefix == Some(*x)) {
                return Err(invalid(
                    join(&p, "prefix"),
                    format!("{x} is already reserved by v6.reservations[{j}]"),
                ));
            }
        }
        out.push(res);
    }
    Ok(out)
}

fn subnet(
    w: wire::Subnet6,
    path: &str,
    position: usize,
    scope: &Scope,
    parent: &Lifetimes,
    rapid_commit: bool,
    pref: Option<u8>,
) -> Result<Built> {
    let npath = join(path, "subnet");
    let net = cidr6(&npath, &w.subnet)?;
    let id = subnet_id(path, w.id, position)?;
    let times = [
        &w.preferred_lifetime,
        &w.valid_lifetime,
        &w.renew_time,
        &w.rebind_time,
    ];
    let life = lifetimes(path, times, Some(parent))?;
    let (renew_time, rebind_time) = life.timers();
    let preference = match preference(&join(path, "preference"), w.preference.as_ref())? {
        Some(p) => Some(p),
        None => pref,
    };

    let interface = subnet_interface(path, scope.interface.as_ref(), w.interface)?;
    let relays = relay_list(path, w.relays.as_deref(), &scope.relays, unicast6)?;
    let iids = interface_id_list(path, w.interface_ids.as_deref(), &scope.interface_ids)?;

    let own = parse_options6(&join(path, "options"), w.options.as_ref())?;
    let options = scope.options.merged(&own);

    let mut pools = Vec::new();
    for (i, s) in w.pools.unwrap_or_default().iter().enumerate() {
        let p = at(&join(path, "pools"), i);
        let (first, last) = inside(&p, range6(&p, s)?, &net, |a| net.contains(&a))?;
        pools.push(Pool6 { first, last });
    }

    let mut pd_pools = Vec::new();
    for (i, pd) in w.pd_pools.unwrap_or_default().into_iter().enumerate() {
        let p = at(&join(path, "pd_pools"), i);
        pd_pools.push(pd_pool(&p, pd)?);
    }

    let excluded = excluded_set(path, w.excluded, &net, |a| net.contains(&a), range6)?;
    let excluded: Vec<Ipv6Addr> = excluded.into_iter().collect();

    let wres = w.reservations.unwrap_or_default();
    let list = join(path, "reservations");
    let mut reservations: Vec<Reservation6> = Vec::with_capacity(wres.len());
    let mut by_key = Reserved::new(&list, wres.len());
    for (i, r) in wres.into_iter().enumerate() {
        let p = at(&list, i);
        let (res, name, text) = reservation(&p, r, Some(net), &options)?;
        by_key.once(i, res.key.clone(), name, &format_args!("{name} {text}"))?;
        reservations.push(res);
    }

    let subnet = Subnet6 {
        id,
        link: scope.link,
        net,
        interface: interface.as_ref().map(|i| i.value.clone()),
        relays: relays.iter().map(|r| r.value).collect(),
        interface_ids: iids.iter().map(|i| i.value.clone()).collect(),
        pools,
        pd_pools,
        excluded,
        reservations,
        preferred_lifetime: life.preferred.0,
        valid_lifetime: life.valid.0,
        renew_time,
        rebind_time,
        rapid_commit: w.rapid_commit.unwrap_or(rapid_commit),
        preference,
        options,
    };
    Ok(Built {
        subnet,
        path: path.to_owned(),
        relays,
        interface_ids: iids,
        interface,
    })
}

fn pd_pool(path: &str, w: wire::PdPool) -> Result<PdPool6> {
    let prefix = cidr6(&join(path, "prefix"), &w.prefix)?;
    let dpath = join(path, "delegated_len");
    let delegated_len = match &w.delegated_len {
        Value::Int(i) => u8::try_from(*i).ok().filter(|&l| l <= 128),
        _ => None,
    }
    .ok_or_else(|| {
        invalid(
            &dpath,
            format!(
                "expected a prefix length in 1..=128, got {}",
                w.delegated_len.describe()
            ),
        )
    })?;
    if delegated_len < prefix.prefix_len() {
        return Err(invalid(
            dpath,
            format!(
                "delegated_len {delegated_len} is shorter than the pool's prefix {prefix}; it \
                 must be at least {}",
                prefix.prefix_len()
            ),
        ));
    }
    let excluded_prefix = match &w.excluded_prefix {
        None => None,
        Some(s) => {
            let p = join(path, "excluded_prefix");
            let x = cidr6(&p, s)?;
            if x.prefix_len() <= delegated_len {
                return Err(invalid(
                    p,
                    format!(
                        "{x} must be longer than delegated_len {delegated_len} (RFC 6603: it \
                         names a part of each delegated prefix)"
                    ),
                ));
            }
            if !prefix.contains(&x.network()) {
                return Err(invalid(
                    p,
                    format!("{x} is not inside the pool's prefix {prefix}"),
                ));
            }
            Some(x)
        }
    };
    let mut excluded = Vec::new();
    for (i, s) in w.excluded.unwrap_or_default().iter().enumerate() {
        let p = at(&join(path, "excluded"), i);
        let x = cidr6(&p, s)?;
        if !prefix.contains(&x.network()) {
            return Err(invalid(
                p,
                format!("{x} is not inside the pool's prefix {prefix}"),
            ));
        }
        excluded.push(x);
    }
    Ok(PdPool6 {
        prefix,
        delegated_len,
        excluded_prefix,
        excluded,
    })
}

/// A v6 reservation's identifier keys: the client's DUID, or what its relay adds (RFC 8415
/// interface-id, RFC 4649 remote-id, RFC 4580 subscriber-id).
const ID_KEYS: [&str; 4] = ["duid", "interface_id", "remote_id", "subscriber_id"];

/// Builds one reservation; returns it with its identifier's key and text (for messages).
fn reservation(
    path: &str,
    r: wire::Reservation6,
    net: Option<Ipv6Net>,
    subnet_options: &OptionSet6,
) -> Result<(Reservation6, &'static str, String)> {
    let ids = [&r.duid, &r.interface_id, &r.remote_id, &r.subscriber_id];
    let (key, kname, ktext) = identifier(path, ID_KEYS, ids, v6_identifier)?;
    let address = match &r.address {
        None => None,
        Some(s) => {
            let p = join(path, "address");
            let a = unicast6(&p, s)?;
            if let Some(net) = net.filter(|n| !n.contains(&a)) {
                return Err(invalid(p, format!("{a} is not inside subnet {net}")));
            }
            Some(a)
        }
    };
    let prefix = r
        .prefix
        .as_deref()
        .map(|s| cidr6(&join(path, "prefix"), s))
        .transpose()?;
    if address.is_none() && prefix.is_none() {
        return Err(invalid(
            path,
            "reserves nothing: give an address, a prefix or both",
        ));
    }
    let own = parse_options6(&join(path, "options"), r.options.as_ref())?;
    let res = Reservation6 {
        key,
        address,
        prefix,
        options: subnet_options.merged(&own),
    };
    Ok((res, kname, ktext.to_owned()))
}

/// A reservation identifier as written in the YAML (see the module docs of `config`).
fn v6_identifier(path: &str, kind: &str, text: &str) -> Result<V6Identifier> {
    let agent = |t: &str, what: &str| {
        agent_id(t).ok_or_else(|| {
            invalid(
                path,
                format!(
                    "{text:?} is not a {what}: write \"0x\" and hex digits, hex bytes \"aa:bb\", \
                     or text (1 to 255 bytes)"
                ),
            )
        })
    };
    match kind {
        "duid" => {
            let b = parse_hex(text)
                .filter(|b| (3..=MAX_DUID_LEN).contains(&b.len()))
                .ok_or_else(|| {
                    invalid(
                        path,
                        format!(
                            "{text:?} is not a DUID in hex like \"00:03:00:01:02:23:10:00:00:60\" \
                             (3 to {MAX_DUID_LEN} bytes)"
                        ),
                    )
                })?;
            Ok(V6Identifier::Duid(b))
        }
        "interface_id" => Ok(V6Identifier::InterfaceId(agent(text, "interface_id")?)),
        "subscriber_id" => Ok(V6Identifier::SubscriberId(agent(text, "subscriber_id")?)),
        _ => {
            let bad = || {
                invalid(
                    path,
                    format!(
                        "{text:?} is not a remote_id \"ENTERPRISE:ID\" (the enterprise number in \
                         decimal, then the id as \"0x\" hex, hex bytes or text), e.g. \
                         \"3561:CUST1\""
                    ),
                )
            };
            let (ent, id) = text.split_once(':').ok_or_else(bad)?;
            let enterprise: u32 = ent.trim().parse().map_err(|_| bad())?;
            let id = agent_id(id).ok_or_else(bad)?;
            Ok(V6Identifier::RemoteId { enterprise, id })
        }
    }
}

impl Bounds<Ipv6Addr> for Pool6 {
    fn bounds(&self) -> (Ipv6Addr, Ipv6Addr) {
        (self.first, self.last)
    }
}

/// Rules that need every subnet: ids, overlaps, and one subnet per relay, interface and
/// interface-id, and each address or prefix reserved once.
fn check_subnets(subnets: &[Built]) -> Result<()> {
    // Delegation pools may overlap neither a subnet nor each other (a delegated prefix holding
    // on-link addresses would route them away from the link).
    let delegated = subnets.iter().flat_map(|b| {
        b.subnet.pd_pools.iter().enumerate().map(|(k, p)| {
            let path = at(&join(&b.path, "pd_pools"), k);
            (IpNet::from(p.prefix), join(&path, "prefix"))
        })
    });
    let placed = subnets.iter().map(|b| {
        let s = &b.subnet;
        (b.path.as_str(), s.id, IpNet::from(s.net), &s.pools[..])
    });
    check_placement(placed, delegated)?;

    // A selector may repeat only within one link (a shared network's, copied to its subnets).
    let mut links = Links::new();
    let mut iids: HashMap<&[u8], (usize, &str)> = HashMap::new();
    let mut addrs: HashMap<Ipv6Addr, String> = HashMap::new();
    let mut prefixes: HashMap<Ipv6Net, String> = HashMap::new();
    for b in subnets {
        let (s, link) = (&b.subnet, b.subnet.link);
        links.relays(link, &b.relays, "a relay link-address")?;
        for id in &b.interface_ids {
            if let Some(&(other_link, other)) = iids.get(id.value.as_slice())
                && other_link != link
            {
                return Err(invalid(
                    id.path.as_str(),
                    format!("this interface-id is also listed at {other}"),
                ));
            }
            iids.entry(&id.value).or_insert((link, &id.path));
        }
        links.interface(link, b.interface.as_ref())?;
        for (k, r) in s.reservations.iter().enumerate() {
            let p = at(&join(&b.path, "reservations"), k);
            if let Some(a) = r.address {
                let ap = join(&p, "address");
                if let Some(other) = addrs.insert(a, p.clone()) {
                    return Err(invalid(ap, format!("{a} is already reserved by {other}")));
                }
            }
            if let Some(x) = r.prefix {
                let xp = join(&p, "prefix");
                if let Some(other) = prefixes.insert(x, p.clone()) {
                    return Err(invalid(xp, format!("{x} is already reserved by {other}")));
                }
            }
        }
    }
    Ok(())
}
