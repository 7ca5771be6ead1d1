//! What a change of configuration does to the leases: orphans, reservations held by another
//! client, subnets added and removed (docs/RELOAD.md).

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use lessor_engine::v4::{ClientKey, HwAddr, Lease};
use lessor_engine::v6::Lease as Lease6;
use lessor_engine::{LeaseState, Time};

use crate::config::{Config, ReservationKey};

/// What a change of configuration does to the leases, as `config-test` and
/// `lessor check-config --against` report it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Impact {
    /// Subnets (by CIDR) the new config has and the running one has not.
    pub added: Vec<String>,
    /// Subnets (by CIDR) the running config has and the new one has not.
    pub removed: Vec<String>,
    /// Bound leases whose address is in no pool of the new config and reserved by nobody,
    /// per subnet (its CIDR, or "none" when no subnet holds it any more).
    pub orphaned: BTreeMap<String, u64>,
    /// Reservations of the new config whose address a bound lease of another client holds.
    pub held: Vec<String>,
    /// Whether the engines are rebuilt (the workers pause); else the new config is only
    /// published.
    pub rebuild: bool,
    /// Whether the running config was known, so that `added` and `removed` mean something.
    pub compared: bool,
}

impl Impact {
    /// Leases orphaned in all.
    pub fn orphans(&self) -> u64 {
        self.orphaned.values().sum()
    }

    /// The report as JSON, for `config-test`.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "subnets-added": self.added,
            "subnets-removed": self.removed,
            "leases-orphaned": self.orphaned,
            "reservations-held-by-another-client": self.held,
            "pause": self.rebuild,
        })
    }

    /// The report as lines of text, for `lessor check-config`.
    pub fn to_text(&self) -> String {
        let mut out = String::new();
        let list = |v: &[String]| {
            if v.is_empty() {
                "none".to_owned()
            } else {
                v.join(", ")
            }
        };
        if self.compared {
            out += &format!("subnets added: {}\n", list(&self.added));
            out += &format!("subnets removed: {}\n", list(&self.removed));
        } else {
            out += "subnets added and removed: unknown (give --config the running file)\n";
        }
        if self.orphaned.is_empty() {
            out += "leases orphaned: none\n";
        }
        for (subnet, n) in &self.orphaned {
            out += &format!("leases orphaned in {subnet}: {n}\n");
        }
        out += &format!(
            "reservations held by another client: {}\n",
            list(&self.held)
        );
        out
    }
}

/// Tells orphans from leases a config still serves: a bound lease whose address (prefix) is
/// in no pool of the config, and that no reservation or assignment names.
#[derive(Debug)]
pub struct Orphans<'c> {
    config: &'c Config,
    reserved: HashSet<Ipv4Addr>,
    reserved6: HashSet<(Ipv6Addr, u8)>,
}

impl<'c> Orphans<'c> {
    /// The rules of `config`, with `assigned` (its assignments file).
    pub fn new(config: &'c Config, assigned: &crate::config::Assignments) -> Orphans<'c> {
        let reserved = reservations4(config).map(|r| r.address).collect();
        let named = |a: Option<Ipv6Addr>, p: Option<ipnet::Ipv6Net>| {
            a.map(|a| (a, 128))
                .into_iter()
                .chain(p.map(|p| (p.network(), p.prefix_len())))
        };
        let reserved6 = config
            .v6
            .subnets
            .iter()
            .flat_map(|s| s.reservations.iter())
            .chain(&config.v6.reservations)
            .flat_map(|r| named(r.address, r.prefix))
            .chain(assigned.iter().flat_map(|a| named(a.address, a.prefix)))
            .collect();
        Orphans {
            config,
            reserved,
            reserved6,
        }
    }

    /// Whether a DHCPv4 lease is an orphan.
    pub fn v4(&self, lease: &Lease) -> bool {
        let a = lease.address;
        lease.state == LeaseState::Bound
            && !self.reserved.contains(&a)
            && !self.config.v4.subnets.iter().any(|s| {
                s.net.contains(&a)
                    && !s.excluded.contains(&a)
                    && s.pools.iter().any(|p| (p.first..=p.last).contains(&a))
            })
    }

    /// Whether a DHCPv6 lease is an orphan.
    pub fn v6(&self, lease: &Lease6) -> bool {
        let r = lease.resource;
        lease.state == LeaseState::Bound
            && !self.reserved6.contains(&(r.addr, r.len))
            && !self.config.v6.subnets.iter().any(|s| {
                if r.len == 128 {
                    !s.excluded.contains(&r.addr)
                        && s.pools.iter().any(|p| (p.first..=p.last).contains(&r.addr))
                } else {
                    s.pd_pools.iter().any(|p| {
                        p.prefix.contains(&r.addr)
                            && r.len == p.delegated_len
                            && !p.excluded.iter().any(|x| x.contains(&r.addr))
                    })
                }
            })
    }
}

/// The DHCPv4 reservations of `c`, subnet and global.
fn reservations4(c: &Config) -> impl Iterator<Item = &crate::config::Reservation4> {
    c.v4.subnets
        .iter()
        .flat_map(|s| s.reservations.iter())
        .chain(&c.v4.reservations)
}

/// Whether DHCPv4 reservation key `key` names the holder of `lease`; `None` when the lease
/// does not say (circuit and remote ids are not kept with a lease).
fn reserved_for(key: &ReservationKey, lease: &Lease) -> Option<bool> {
    match key {
        ReservationKey::HwAddress(mac) => Some(
            HwAddr::new(lease.hw.htype(), mac).is_some_and(|h| h == lease.hw)
                || lease.client == ClientKey::hardware(lease.hw.htype(), mac),
        ),
        ReservationKey::ClientId(id) => Some(lease.client == ClientKey::client_id(id)),
        ReservationKey::CircuitId(_) | ReservationKey::RemoteId(_) => None,
    }
}

/// The subnet (CIDR) of `addr` in `new`, else in `old`, else "none".
pub(super) fn subnet_label(old: Option<&Config>, new: &Config, addr: IpAddr) -> String {
    let find = |c: &Config| match addr {
        IpAddr::V4(a) => {
            c.v4.subnets
                .iter()
                .find(|s| s.net.contains(&a))
                .map(|s| s.net.to_string())
        }
        IpAddr::V6(a) => {
            c.v6.subnets
                .iter()
                .find(|s| s.net.contains(&a))
                .map(|s| s.net.to_string())
        }
    };
    find(new)
        .or_else(|| old.and_then(find))
        .unwrap_or_else(|| "none".to_owned())
}

/// Orphans found so far, per subnet label.
type Tally = BTreeMap<String, u64>;

/// Counts `addr` as an orphan in `tally`.
fn tally(tally: &mut Tally, old: Option<&Config>, new: &Config, addr: IpAddr) {
    *tally.entry(subnet_label(old, new, addr)).or_default() += 1;
}

/// Subnets (by CIDR) in `new` and not in `old`, and in `old` and not in `new`.
fn subnets_changed(old: &Config, new: &Config) -> (Vec<String>, Vec<String>) {
    let nets = |c: &Config| -> BTreeSet<String> {
        c.v4.subnets
            .iter()
            .map(|s| s.net.to_string())
            .chain(c.v6.subnets.iter().map(|s| s.net.to_string()))
            .collect()
    };
    let (was, is) = (nets(old), nets(new));
    (
        is.difference(&was).cloned().collect(),
        was.difference(&is).cloned().collect(),
    )
}

/// What replacing `old` (`None`: unknown) by `new` does to those of `leases` and `leases6`
/// that are bound at `now`.
pub fn impact(
    old: Option<&Config>,
    new: &Config,
    assigned: &crate::config::Assignments,
    (leases, leases6): (&[Lease], &[Lease6]),
    now: Time,
) -> Impact {
    let mut out = Impact::default();
    if let Some(old) = old {
        (out.added, out.removed) = subnets_changed(old, new);
        out.compared = true;
    }
    let orphans = Orphans::new(new, assigned);
    let mut bound = HashMap::new();
    for l in leases.iter().filter(|l| l.expires > now) {
        if orphans.v4(l) {
            tally(&mut out.orphaned, old, new, IpAddr::V4(l.address));
        }
        if l.state == LeaseState::Bound {
            bound.insert(l.address, l);
        }
    }
    for l in leases6.iter().filter(|l| l.expires > now && orphans.v6(l)) {
        tally(&mut out.orphaned, old, new, IpAddr::V6(l.resource.addr));
    }
    for r in reservations4(new) {
        if let Some(l) = bound.get(&r.address) {
            match reserved_for(&r.key, l) {
                Some(true) => {}
                Some(false) => out.held.push(format!("{} ({:?})", r.address, r.key)),
                None => out.held.push(format!(
                    "{} ({:?}; bound, holder not comparable)",
                    r.address, r.key
                )),
            }
        }
    }
    out
}
