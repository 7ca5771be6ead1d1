//! The validation rules both families follow, written once over [`Addr`]: relay lists and
//! interfaces, subnet placement (ids, overlapping prefixes and pools), `excluded`, shared
//! networks, a reservation's one identifier and what a list has already reserved, interface
//! names. `build4.rs` and `build6.rs` call them and keep only what differs.

use std::collections::{BTreeSet, HashMap};
use std::fmt::Display;
use std::hash::Hash;

use ipnet::IpNet;

use super::Link;
use super::addr::Addr;
use super::error::{ConfigError, invalid};
use super::hex::parse_hex;
use super::path::{At, at, join};

/// Upper bound on a subnet's expanded `excluded` list; bigger holes belong in the pool bounds.
pub(super) const MAX_EXCLUDED: usize = 65_536;

type Result<T> = std::result::Result<T, ConfigError>;

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

/// Parses `parent.relays` after the `inherited` ones, refusing an address listed twice.
pub(super) fn relay_list<A: Addr>(
    parent: &str,
    list: Option<&[String]>,
    inherited: &[At<A>],
    unicast: fn(&str, &str) -> Result<A>,
) -> Result<Vec<At<A>>> {
    let mut out = inherited.to_vec();
    for (i, s) in list.unwrap_or_default().iter().enumerate() {
        let p = at(&join(parent, "relays"), i);
        let r = unicast(&p, s)?;
        if let Some(other) = out.iter().find(|o| o.value == r) {
            return Err(invalid(
                p,
                format!("relay {r} is already listed at {}", other.path),
            ));
        }
        out.push(At { value: r, path: p });
    }
    Ok(out)
}

/// A shared network's `parent.interface`, checked.
pub(super) fn shared_interface(parent: &str, name: Option<String>) -> Result<Option<At<String>>> {
    match name {
        Some(name) => {
            let path = join(parent, "interface");
            check_ifname(&path, &name)?;
            Ok(Some(At { value: name, path }))
        }
        None => Ok(None),
    }
}

/// A subnet's interface: its own `parent.interface`, or the shared network's (`inherited`),
/// which it may repeat but not contradict.
pub(super) fn subnet_interface(
    parent: &str,
    inherited: Option<&At<String>>,
    own: Option<String>,
) -> Result<Option<At<String>>> {
    let path = join(parent, "interface");
    match (inherited, own) {
        (Some(shared), Some(own)) if shared.value != own => Err(invalid(
            path,
            format!(
                "{own} conflicts with {} ({}); the subnets of a shared network are all on its \
                 interface",
                shared.path, shared.value
            ),
        )),
        (Some(shared), _) => Ok(Some(shared.clone())),
        (None, Some(own)) => {
            check_ifname(&path, &own)?;
            Ok(Some(At { value: own, path }))
        }
        (None, None) => Ok(None),
    }
}

/// The relays and interfaces seen so far across subnets, each with the link it selects: a
/// selector may repeat only within one link (a shared network's, copied to its subnets).
pub(super) struct Links<'p, A> {
    relays: HashMap<A, (usize, &'p str)>,
    interfaces: HashMap<&'p str, (usize, &'p str)>,
}

impl<'p, A: Addr + Hash> Links<'p, A> {
    pub(super) fn new() -> Self {
        Links {
            relays: HashMap::new(),
            interfaces: HashMap::new(),
        }
    }

    /// Adds link `link`'s relays; `what` names a relay's value in the message ("a relay
    /// address").
    pub(super) fn relays(&mut self, link: usize, relays: &'p [At<A>], what: &str) -> Result<()> {
        for r in relays {
            if let Some(&(other_link, other)) = self.relays.get(&r.value)
                && other_link != link
            {
                return Err(invalid(
                    r.path.as_str(),
                    format!(
                        "relay {} is also listed at {other}; {what} selects one subnet or \
                         shared network",
                        r.value
                    ),
                ));
            }
            self.relays.entry(r.value).or_insert((link, &r.path));
        }
        Ok(())
    }

    /// Adds link `link`'s interface, if it has one.
    pub(super) fn interface(
        &mut self,
        link: usize,
        interface: Option<&'p At<String>>,
    ) -> Result<()> {
        let Some(i) = interface else { return Ok(()) };
        if let Some(&(other_link, other)) = self.interfaces.get(i.value.as_str())
            && other_link != link
        {
            return Err(invalid(
                i.path.as_str(),
                format!(
                    "interface {} is also given at {other}; subnets on one link belong in a \
                     shared network",
                    i.value
                ),
            ));
        }
        self.interfaces.entry(&i.value).or_insert((link, &i.path));
        Ok(())
    }
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

/// The one identifier a reservation at `path` gives among its `keys` (`values` as written, in
/// the same order), read by `parse(key path, key name, text)`; returned with its key name and
/// text for messages.
pub(super) fn identifier<'r, K, const N: usize>(
    path: &str,
    keys: [&'static str; N],
    values: [&'r Option<String>; N],
    parse: impl FnOnce(&str, &str, &str) -> Result<K>,
) -> Result<(K, &'static str, &'r str)> {
    let given: Vec<(&'static str, &str)> = keys
        .into_iter()
        .zip(values)
        .filter_map(|(k, v)| Some((k, v.as_deref()?)))
        .collect();
    match given.as_slice() {
        [] => Err(invalid(
            path,
            format!("needs an identifier: one of {}", keys.join(", ")),
        )),
        [(name, text)] => Ok((parse(&join(path, name), name, text)?, name, text)),
        [a, b, ..] => Err(invalid(
            path,
            format!("has both {} and {}; give exactly one identifier", a.0, b.0),
        )),
    }
}

/// What the reservations of one list (`list`, e.g. `v4.subnets[0].reservations`) have reserved
/// so far, each value with the index of the entry that holds it: a value reserved twice is
/// refused at the later entry.
pub(super) struct Reserved<'l, K> {
    list: &'l str,
    seen: HashMap<K, usize>,
}

impl<'l, K: Eq + Hash> Reserved<'l, K> {
    pub(super) fn new(list: &'l str, capacity: usize) -> Self {
        Reserved {
            list,
            seen: HashMap::with_capacity(capacity),
        }
    }

    /// Records that entry `i` reserves `value`, written at its key `key` and shown as `shown`.
    pub(super) fn once(
        &mut self,
        i: usize,
        value: K,
        key: &str,
        shown: &dyn Display,
    ) -> Result<()> {
        if let Some(&j) = self.seen.get(&value) {
            return Err(invalid(
                join(&at(self.list, i), key),
                format!("{shown} is already reserved by {}", at(self.list, j)),
            ));
        }
        self.seen.insert(value, i);
        Ok(())
    }
}

/// Refuses a range at `path` that does not lie inside subnet `net`; passes it on otherwise.
pub(super) fn inside<A: Addr>(
    path: &str,
    (first, last): (A, A),
    net: &dyn Display,
    contains: impl Fn(A) -> bool,
) -> Result<(A, A)> {
    if !contains(first) || !contains(last) {
        return Err(invalid(
            path,
            format!("{first}-{last} is not inside subnet {net}"),
        ));
    }
    Ok((first, last))
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

/// The rules across a family's subnets that do not depend on the family: unique ids, no two
/// prefixes overlapping (the subnets', then `more`), no two pools overlapping. `subnets` gives
/// each subnet's key path, id, prefix and pools, in config order.
pub(super) fn check_placement<'s, A: Addr, P: Bounds<A> + 's>(
    subnets: impl Iterator<Item = (&'s str, u32, IpNet, &'s [P])> + Clone,
    more: impl Iterator<Item = (IpNet, String)>,
) -> Result<()> {
    check_ids(subnets.clone().map(|(path, id, ..)| (id, path)))?;
    let prefixes: Vec<(IpNet, String)> = subnets
        .clone()
        .map(|(path, _, net, _)| (net, join(path, "subnet")))
        .chain(more)
        .collect();
    check_prefix_overlaps(&prefixes)?;
    check_pool_overlaps(subnets.map(|(path, .., pools)| (path, pools)))
}

/// Refuses two subnets with one id, naming the later one. `ids`: each subnet's id and key path.
fn check_ids<'p>(ids: impl Iterator<Item = (u32, &'p str)>) -> Result<()> {
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

/// An address pool's first and last address, for [`check_pool_overlaps`].
pub(super) trait Bounds<A> {
    fn bounds(&self) -> (A, A);
}

/// Refuses two overlapping pools, naming the later one in config order. `subnets` yields each
/// subnet's key path and pools; a pool's key path is `subnet.pools[k]`.
fn check_pool_overlaps<'s, A: Addr, P: Bounds<A> + 's>(
    subnets: impl Iterator<Item = (&'s str, &'s [P])>,
) -> Result<()> {
    // (first, last, subnet, pool), by first address; a pool overlapping any earlier one
    // overlaps the earlier one that reaches furthest.
    let mut paths: Vec<&str> = Vec::new();
    let mut pools: Vec<(A, A, usize, usize)> = Vec::new();
    for (s, (path, list)) in subnets.enumerate() {
        paths.push(path);
        pools.extend(list.iter().enumerate().map(|(p, pool)| {
            let (first, last) = pool.bounds();
            (first, last, s, p)
        }));
    }
    let path = |s: usize, p: usize| at(&join(paths[s], "pools"), p);
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

/// Refuses two overlapping prefixes (one containing the other), naming the later one. `list`
/// holds each prefix with its key path, in config order.
fn check_prefix_overlaps(list: &[(IpNet, String)]) -> Result<()> {
    let mut order: Vec<usize> = (0..list.len()).collect();
    order.sort_by_key(|&i| (list[i].0.network(), list[i].0.prefix_len()));
    // Sorted by start then length: a prefix overlapping any earlier one overlaps the
    // earlier one that reaches furthest.
    let mut reach: Option<usize> = None;
    for &i in &order {
        if let Some(r) = reach {
            let (nr, ni) = (list[r].0, list[i].0);
            if nr.contains(&ni.network()) {
                let (a, b) = (r.min(i), r.max(i));
                return Err(invalid(
                    list[b].1.as_str(),
                    format!("{} overlaps {} ({})", list[b].0, list[a].0, list[a].1),
                ));
            }
        }
        if reach.is_none_or(|r| list[i].0.broadcast() > list[r].0.broadcast()) {
            reach = Some(i);
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

/// Builds a family's subnets and lays them out in links: each of `section.subnets` on a link of
/// its own, then each of `section.shared_networks` on one link. `alone(link)` is a lone subnet's
/// scope; `network(path, network, link)` checks a shared network and gives its name, subnets
/// and their scope; `subnet(wire, path, position, scope)` builds one (`position` counts from 1
/// across the section, the default id).
pub(super) fn layout<W, N, S, C>(
    section: &str,
    lone: Vec<W>,
    shared: Vec<N>,
    alone: impl Fn(usize) -> C,
    mut network: impl FnMut(&str, N, usize) -> Result<(String, Vec<W>, C)>,
    mut subnet: impl FnMut(W, &str, usize, &C) -> Result<S>,
) -> Result<(Vec<S>, Vec<Link>)> {
    let mut subnets = Vec::new();
    let mut links = Vec::new();
    for (i, w) in lone.into_iter().enumerate() {
        let scope = alone(links.len());
        let path = at(&join(section, "subnets"), i);
        subnets.push(subnet(w, &path, subnets.len() + 1, &scope)?);
        links.push(Link {
            name: None,
            subnets: vec![subnets.len() - 1],
        });
    }
    for (i, n) in shared.into_iter().enumerate() {
        let path = at(&join(section, "shared_networks"), i);
        let (name, members, scope) = network(&path, n, links.len())?;
        let mut indexes = Vec::new();
        for (j, w) in members.into_iter().enumerate() {
            let spath = at(&join(&path, "subnets"), j);
            indexes.push(subnets.len());
            subnets.push(subnet(w, &spath, subnets.len() + 1, &scope)?);
        }
        links.push(Link {
            name: Some(name),
            subnets: indexes,
        });
    }
    Ok((subnets, links))
}
