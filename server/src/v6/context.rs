//! The DHCPv6 handler's per-config state: look-up tables, subnet selection, and where a
//! client's static assignment comes from.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::sync::Arc;

use lessor_engine::v6::{EngineConfig, IaKind, PoolId, PoolSpec, Resource};

use super::handler::{Arrival, SERVER_PORT};
use super::packet::Request;
use crate::config::{Assignment, Assignments, Config, OptionSet6, V6Config, V6Identifier};
use crate::proto::SubnetIndex;
use crate::scope::{self, Layout, Part};

/// An interface the server listens on, learned at startup, with its IPv6 addresses.
pub type InterfaceInfo = crate::proto::InterfaceInfo<Ipv6Addr>;

/// Reservations of one identifier kind, by the option payload bytes: (subnet, reservation).
type ReservationIndex = HashMap<Box<[u8]>, Vec<(usize, usize)>>;

/// What a pool is, by [`PoolId`].
#[derive(Debug)]
pub(super) struct PoolInfo {
    /// The OPTION_PD_EXCLUDE payload (RFC 6603 §4.2) for every prefix of this pool.
    pub(super) pd_exclude: Option<Box<[u8]>>,
}

/// The look-up tables built from the config; shared by every worker.
#[derive(Debug)]
pub(super) struct Tables {
    pub(super) cfg: V6Config,
    pub(super) duid: Box<[u8]>,
    pub(super) test_mode: bool,
    pub(super) by_network: SubnetIndex,
    /// The engine pools: each subnet's address pools, then its delegation pools, each split
    /// in place (lower half, then upper) in load-balancing.
    pub(super) layout: Layout<IaKind>,
    /// By scope, then by link: the address / delegation pools of every subnet on it serving
    /// the scope, in config order (a shared network tries each subnet in turn). The same
    /// lists for both scopes outside load-balancing; then the lists of a scope whose pools
    /// wait ([`scope::widen`]).
    pub(super) na_pools: [Vec<Vec<PoolId>>; 4],
    pub(super) pd_pools: [Vec<Vec<PoolId>>; 4],
    /// By scope, then by subnet: its own address / delegation pools serving the scope.
    pub(super) subnet_na_pools: [Vec<Vec<PoolId>>; 4],
    pub(super) subnet_pd_pools: [Vec<Vec<PoolId>>; 4],
    /// By engine pool id.
    pub(super) pools: Vec<PoolInfo>,
    pub(super) relay_subnet: HashMap<Ipv6Addr, usize>,
    pub(super) iid_subnet: HashMap<Box<[u8]>, usize>,
    pub(super) iface_subnet: HashMap<u32, usize>,
    /// By DUID, interface-id, remote-id, subscriber-id.
    pub(super) reservations: [ReservationIndex; 4],
    /// `v6.reservations` by the same four identifiers: index into `cfg.reservations`.
    pub(super) global_reservations: [HashMap<Box<[u8]>, usize>; 4],
}

/// Everything the DHCPv6 handler needs that does not change per packet: the validated config,
/// the server DUID, the look-up tables built from them, and the static assignments file.
///
/// Cheap to clone (two `Arc`s). A reload of the assignments file makes a new context with
/// [`Context::with_assignments`]; workers swap the one they read through, so a packet sees
/// one table or the other, whole.
#[derive(Clone, Debug)]
pub struct Context {
    pub(super) t: Arc<Tables>,
    assignments: Arc<Assignments>,
}

/// A client's static assignment, wherever it came from.
#[derive(Clone, Copy, Debug)]
pub(super) struct Static<'c> {
    pub(super) address: Option<Ipv6Addr>,
    pub(super) prefix: Option<Resource>,
    /// A subnet reservation's options (already merged with its subnet's).
    pub(super) options: Option<&'c OptionSet6>,
    /// A global reservation's own options, laid over those of the client's subnet.
    pub(super) own_options: Option<&'c OptionSet6>,
}

impl Context {
    /// Builds the look-up tables. `server_duid` is what [`super::server_duid`] gives;
    /// `interfaces` are the interfaces the server listens on; `assignments` is the file's table
    /// ([`Config::load_assignments`]).
    pub fn new(
        config: &Config,
        server_duid: &[u8],
        interfaces: &[InterfaceInfo],
        assignments: Arc<Assignments>,
    ) -> Self {
        let cfg = config.v6.clone();
        let by_network = SubnetIndex::new(cfg.subnets.len(), |i| cfg.subnets[i].net);

        let layout = layout(config);
        let pools = (layout.parts().iter())
            .map(|part| {
                let pd = (part.kind == IaKind::Pd)
                    .then(|| &cfg.subnets[part.subnet].pd_pools[part.pool]);
                PoolInfo {
                    pd_exclude: pd.and_then(|p| {
                        let x = p.excluded_prefix?;
                        Some(pd_exclude(x.network(), x.prefix_len(), p.delegated_len))
                    }),
                }
            })
            .collect();
        let n = cfg.subnets.len();
        let subnet_na_pools = scope::widen(layout.by_subnet(n, IaKind::Na, PoolId));
        let subnet_pd_pools = scope::widen(layout.by_subnet(n, IaKind::Pd, PoolId));
        let na_pools = scope::widen(layout.by_link(n, &cfg.links, IaKind::Na, PoolId));
        let pd_pools = scope::widen(layout.by_link(n, &cfg.links, IaKind::Pd, PoolId));
        let mut global_reservations: [HashMap<Box<[u8]>, usize>; 4] = Default::default();
        for (i, r) in cfg.reservations.iter().enumerate() {
            global_reservations[kind_index(&r.key)]
                .entry(r.key.wire_bytes().into_boxed_slice())
                .or_insert(i);
        }

        let mut relay_subnet = HashMap::new();
        let mut iid_subnet = HashMap::new();
        let mut iface_subnet = HashMap::new();
        let mut reservations: [ReservationIndex; 4] = Default::default();
        for (si, s) in cfg.subnets.iter().enumerate() {
            for r in &s.relays {
                relay_subnet.entry(*r).or_insert(si);
            }
            for id in &s.interface_ids {
                iid_subnet
                    .entry(id.clone().into_boxed_slice())
                    .or_insert(si);
            }
            for iface in interfaces {
                let named = s.interface.as_deref() == Some(iface.name.as_str());
                if named || iface.addrs.iter().any(|a| s.net.contains(a)) {
                    iface_subnet.entry(iface.index).or_insert(si);
                }
            }
            for (ri, r) in s.reservations.iter().enumerate() {
                reservations[kind_index(&r.key)]
                    .entry(r.key.wire_bytes().into_boxed_slice())
                    .or_default()
                    .push((si, ri));
            }
        }
        Context {
            t: Arc::new(Tables {
                test_mode: cfg.port != SERVER_PORT,
                cfg,
                duid: server_duid.into(),
                by_network,
                layout,
                na_pools,
                pd_pools,
                subnet_na_pools,
                subnet_pd_pools,
                pools,
                relay_subnet,
                iid_subnet,
                iface_subnet,
                reservations,
                global_reservations,
            }),
            assignments,
        }
    }

    /// The same context with another assignments table (a reloaded file).
    pub fn with_assignments(&self, assignments: Arc<Assignments>) -> Self {
        Context {
            t: Arc::clone(&self.t),
            assignments,
        }
    }

    /// The engine layout for this config: one engine pool per configured pool (each subnet's
    /// address pools, then its delegation pools), split in place in load-balancing as
    /// [`crate::v4::Context::engine_config`] says. Excluded addresses and prefixes, and every
    /// reserved or assigned resource inside a pool, are kept out of the dynamic free sets.
    pub fn engine_config(&self, shards: usize) -> EngineConfig {
        let cfg = &self.t.cfg;
        let assigned: Vec<&Assignment> = self.assignments.iter().collect();
        let mut specs = Vec::new();
        for part in self.t.layout.parts() {
            let s = &cfg.subnets[part.subnet];
            let (first, last) = (Ipv6Addr::from(part.span.0), Ipv6Addr::from(part.span.1));
            if part.kind == IaKind::Na {
                let excluded = s
                    .excluded
                    .iter()
                    .copied()
                    .chain(s.reservations.iter().filter_map(|r| r.address))
                    .chain(cfg.reservations.iter().filter_map(|r| r.address))
                    .chain(assigned.iter().filter_map(|a| a.address))
                    .filter(|a| (first..=last).contains(a))
                    .collect();
                specs.push(PoolSpec::Na {
                    first,
                    last,
                    excluded,
                });
            } else {
                let p = &s.pd_pools[part.pool];
                // The half is a prefix: its length is the count of bits its span leaves.
                let prefix_len = (part.span.1 - part.span.0).leading_zeros() as u8;
                let overlaps = |x: &ipnet::Ipv6Net| {
                    (first..=last).contains(&x.network()) || x.contains(&first)
                };
                let excluded = p
                    .excluded
                    .iter()
                    .copied()
                    // A reserved prefix may be any subnet's: delegated prefixes are not on-link.
                    .chain(
                        cfg.subnets
                            .iter()
                            .flat_map(|o| o.reservations.iter())
                            .chain(&cfg.reservations)
                            .filter_map(|r| r.prefix),
                    )
                    .chain(assigned.iter().filter_map(|a| a.prefix))
                    .filter(overlaps)
                    .map(|x| (x.network(), x.prefix_len()))
                    .collect();
                specs.push(PoolSpec::Pd {
                    prefix: first,
                    prefix_len,
                    delegated_len: p.delegated_len,
                    excluded,
                });
            }
        }
        EngineConfig {
            shards,
            pools: specs,
            offer_hold: cfg.offer_hold,
            decline_probation: cfg.decline_probation,
        }
    }

    /// The v6 configuration this context was built from.
    pub fn config(&self) -> &V6Config {
        &self.t.cfg
    }

    /// The engine pools of load-balancing scope `scope` (none outside load-balancing).
    pub fn pools_of_scope(&self, scope: usize) -> impl Iterator<Item = PoolId> + '_ {
        self.t.layout.pools_of(scope).map(PoolId)
    }

    /// Whether the config runs load-balancing (see [`crate::v4::Context::balanced`]).
    pub fn balanced(&self) -> bool {
        self.t.layout.balanced()
    }

    /// The load-balancing scope of the pool half holding `addr`: an address of an address
    /// pool when `len` is 128, else a delegated prefix. `None` outside every pool, and outside
    /// load-balancing.
    pub fn scope_of(&self, addr: Ipv6Addr, len: u8) -> Option<usize> {
        let kind = if len == 128 { IaKind::Na } else { IaKind::Pd };
        self.t.layout.scope_of(kind, addr.into())
    }

    /// The subnet (index into [`V6Config::subnets`]) and kind of engine pool `pool`.
    pub fn pool_subnet(&self, pool: PoolId) -> Option<(usize, IaKind)> {
        let part = self.t.layout.parts().get(pool.0 as usize)?;
        Some((part.subnet, part.kind))
    }

    /// The server DUID sent as the Server Identifier.
    pub fn server_duid(&self) -> &[u8] {
        &self.t.duid
    }

    /// The assignments table in use.
    pub fn assignments(&self) -> &Arc<Assignments> {
        &self.assignments
    }

    /// The subnet containing `ip`, if any.
    pub fn subnet_containing(&self, ip: Ipv6Addr) -> Option<usize> {
        let t = &self.t;
        t.by_network.containing(ip, |i| t.cfg.subnets[i].net)
    }

    /// The client's subnet (its link). Relayed: the Interface-ID of the relay closest to the
    /// client when a subnet lists it, else the link-address of the closest relay that set one
    /// (RFC 8415 §13.1; RFC 6221 lightweight relays leave it unspecified), matched against
    /// `relays` and then by containment. Direct: the arrival interface, else the source address
    /// when it is a global one.
    pub(super) fn select_subnet(&self, req: &Request<'_>, arrival: &Arrival) -> Option<usize> {
        let t = &self.t;
        if req.relayed() {
            if let Some(id) = req.relay_option(|h| h.interface_id)
                && let Some(&s) = t.iid_subnet.get(id)
            {
                return Some(s);
            }
            let link = req
                .hops()
                .iter()
                .rev()
                .map(|h| h.link_address)
                .find(|a| !a.is_unspecified() && !a.is_unicast_link_local())?;
            return t
                .relay_subnet
                .get(&link)
                .copied()
                .or_else(|| self.subnet_containing(link));
        }
        t.iface_subnet.get(&arrival.ifindex).copied().or_else(|| {
            let ip = *arrival.src.ip();
            (!ip.is_unspecified() && !ip.is_unicast_link_local())
                .then(|| self.subnet_containing(ip))?
        })
    }

    /// The client's static assignment: a reservation of `subnet` (by DUID, interface-id,
    /// remote-id, subscriber-id), else the assignments file's (same order).
    pub(super) fn static_for(
        &self,
        subnet: Option<usize>,
        req: &Request<'_>,
    ) -> Option<Static<'_>> {
        let keys: [Option<&[u8]>; 4] = [
            req.client_id,
            req.relay_option(|h| h.interface_id),
            req.relay_option(|h| h.remote_id),
            req.relay_option(|h| h.subscriber_id),
        ];
        let t = &self.t;
        if let Some(s) = subnet {
            // A reservation of any subnet on the client's link (a shared network's).
            let link = t.cfg.subnets[s].link;
            let found = keys.iter().enumerate().find_map(|(k, key)| {
                let hits = t.reservations[k].get((*key)?)?;
                hits.iter().find(|&&(si, _)| t.cfg.subnets[si].link == link)
            });
            if let Some(&(si, ri)) = found {
                let r = &t.cfg.subnets[si].reservations[ri];
                return Some(Static {
                    address: r.address,
                    prefix: r
                        .prefix
                        .map(|p| Resource::prefix(p.network(), p.prefix_len())),
                    options: Some(&r.options),
                    own_options: None,
                });
            }
        }
        // As Kea's global reservations: the options always, an address only on the client's
        // link (checked with the IA), a prefix only inside its link's delegation pools.
        let global = keys
            .iter()
            .enumerate()
            .filter(|_| !t.cfg.reservations.is_empty())
            .find_map(|(k, key)| {
                let &i = t.global_reservations[k].get((*key)?)?;
                t.cfg.reservations.get(i)
            });
        if let Some(r) = global {
            let in_pools = |p: &ipnet::Ipv6Net| {
                subnet.is_some_and(|s| {
                    t.cfg.links[t.cfg.subnets[s].link]
                        .subnets
                        .iter()
                        .flat_map(|&m| &t.cfg.subnets[m].pd_pools)
                        .any(|pool| pool.prefix.contains(p))
                })
            };
            return Some(Static {
                address: r.address.filter(|_| subnet.is_some()),
                prefix: r
                    .prefix
                    .filter(in_pools)
                    .map(|p| Resource::prefix(p.network(), p.prefix_len())),
                options: None,
                own_options: Some(&r.options),
            });
        }
        let a = &self.assignments;
        let [duid, iid, rid, sid] = keys;
        duid.and_then(|k| a.by_duid(k))
            .or_else(|| iid.and_then(|k| a.by_interface_id(k)))
            .or_else(|| rid.and_then(|k| a.by_remote_id(k)))
            .or_else(|| sid.and_then(|k| a.by_subscriber_id(k)))
            .map(|x| Static {
                address: x.address,
                prefix: x
                    .prefix
                    .map(|p| Resource::prefix(p.network(), p.prefix_len())),
                options: None,
                own_options: None,
            })
    }
}

/// The engine pools of `config`'s DHCPv6 pools, numbered as [`Context::engine_config`] does.
pub(crate) fn layout(config: &Config) -> Layout<IaKind> {
    let pools = (config.v6.subnets.iter().enumerate()).flat_map(|(subnet, s)| {
        let na = (s.pools.iter().enumerate()).map(move |(pool, p)| {
            (
                Part::whole(subnet, pool, IaKind::Na, p.first.into(), p.last.into()),
                0,
            )
        });
        // A delegation pool counts in delegated prefixes: units of 2^(128 - delegated_len).
        let pd = s.pd_pools.iter().enumerate().map(move |(pool, p)| {
            let (first, last) = (p.prefix.network().into(), p.prefix.broadcast().into());
            let unit_bits = 128 - u32::from(p.delegated_len);
            (
                Part::whole(subnet, pool, IaKind::Pd, first, last),
                unit_bits,
            )
        });
        na.chain(pd)
    });
    Layout::new(scope::balanced(config), pools)
}

fn kind_index(id: &V6Identifier) -> usize {
    match id {
        V6Identifier::Duid(_) => 0,
        V6Identifier::InterfaceId(_) => 1,
        V6Identifier::RemoteId { .. } => 2,
        V6Identifier::SubscriberId(_) => 3,
    }
}

/// RFC 6603 §4.2: the excluded prefix's length, then its bits after the delegated prefix's
/// length (the "IPv6 subnet ID"), left-aligned and padded to whole bytes.
fn pd_exclude(excluded: Ipv6Addr, excluded_len: u8, delegated_len: u8) -> Box<[u8]> {
    // Config validation guarantees delegated_len < excluded_len <= 128.
    let bits = u32::from(excluded_len - delegated_len);
    let bytes = bits.div_ceil(8);
    // Drop the delegated prefix's bits, keep the next `bits`, pad with zeros to `bytes`.
    let id = (u128::from(excluded) << delegated_len) >> (128 - bits) << (bytes * 8 - bits);
    let mut out = vec![excluded_len];
    out.extend_from_slice(&id.to_be_bytes()[16 - bytes as usize..]);
    out.into_boxed_slice()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pd_exclude_rfc6603() {
        // A /56 delegated, its /64 number 0xff excluded: length 64, one byte of subnet ID.
        let x: Ipv6Addr = "2001:db8:100:ff::".parse().unwrap();
        assert_eq!(&*pd_exclude(x, 64, 56), &[64, 0xff]);
        // /48 delegated, /60 excluded: 12 bits, left-aligned in two bytes.
        let x: Ipv6Addr = "2001:db8:100:abc0::".parse().unwrap();
        assert_eq!(&*pd_exclude(x, 60, 48), &[60, 0xab, 0xc0]);
        // /56 delegated, /57 excluded (upper half): one bit.
        let x: Ipv6Addr = "2001:db8:100:80::".parse().unwrap();
        assert_eq!(&*pd_exclude(x, 57, 56), &[57, 0x80]);
    }
}
