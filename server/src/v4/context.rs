//! The DHCPv4 handler's per-config state: look-up tables, subnet selection, reservations,
//! lease timers and reply routing.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4};

use lessor_engine::v4::{EngineConfig, PoolId, PoolSpec};

use super::handler::{Arrival, CLIENT_PORT, Destination, SERVER_PORT};
use super::packet::Request;
use super::reply::ReplyKind;
use crate::config::{
    BootFields, Config, OptionSet, Reservation4, ReservationKey, Subnet4, V4Config,
};
use crate::proto::SubnetIndex;
use crate::scope::{self, Layout, Part};

/// An interface the server listens on, learned at startup, with its IPv4 addresses.
pub type InterfaceInfo = crate::proto::InterfaceInfo<Ipv4Addr>;

/// Reservations of one kind, by identifier bytes: the (subnet, reservation) pairs, with
/// [`GLOBAL`] for the subnet of a global reservation.
type ReservationIndex = HashMap<Box<[u8]>, Vec<(usize, usize)>>;

/// The engine pools of `config`'s DHCPv4 pools, numbered as [`Context::engine_config`] does.
pub(crate) fn layout(config: &Config) -> Layout<()> {
    let pools = (config.v4.subnets.iter().enumerate()).flat_map(|(subnet, s)| {
        s.pools.iter().enumerate().map(move |(pool, p)| {
            let (first, last) = (u32::from(p.first), u32::from(p.last));
            (Part::whole(subnet, pool, (), first.into(), last.into()), 0)
        })
    });
    Layout::new(scope::balanced(config), pools)
}

/// The address a [`Layout`] value stands for.
fn addr(x: u128) -> Ipv4Addr {
    Ipv4Addr::from(x as u32)
}

/// The subnet index a global reservation (`v4.reservations`) is filed under.
const GLOBAL: usize = usize::MAX;

/// Everything the DHCPv4 handler needs that does not change per packet: the validated config
/// and the lookup tables built from it.
#[derive(Debug)]
pub struct Context {
    pub(super) cfg: V4Config,
    test_mode: bool,
    by_network: SubnetIndex,
    /// The engine pools: the configured pools in file order, each split in place (lower
    /// half, then upper) in load-balancing.
    layout: Layout<()>,
    /// By scope, the candidate pools per link (all subnets of a shared network): the scope's
    /// halves in load-balancing, else the same list for both scopes; then the lists of a
    /// scope whose pools wait ([`scope::widen`]).
    pub(super) link_pools: [Vec<Vec<PoolId>>; 4],
    relay_subnet: HashMap<Ipv4Addr, usize>,
    iface_subnet: HashMap<u32, usize>,
    by_hw: ReservationIndex,
    by_client_id: ReservationIndex,
    by_circuit: ReservationIndex,
    by_remote: ReservationIndex,
}

/// The client's reservation, as it applies on the client's link.
#[derive(Clone, Copy, Debug)]
pub(super) struct Found<'c> {
    pub(super) res: &'c Reservation4,
    /// The reserved address, when it lies on the client's link: a global reservation's
    /// address elsewhere is not used (its host name, options and boot fields still are).
    pub(super) address: Option<Ipv4Addr>,
    /// A global reservation: its options and boot fields go over the subnet's or pool's.
    pub(super) global: bool,
}

impl Context {
    /// Builds the look-up tables. `interfaces` are the interfaces the server listens on.
    pub fn new(config: &Config, interfaces: &[InterfaceInfo]) -> Self {
        let cfg = config.v4.clone();
        let by_network = SubnetIndex::new(cfg.subnets.len(), |i| cfg.subnets[i].net);

        let layout = layout(config);
        let link_pools = scope::widen(layout.by_link(cfg.subnets.len(), &cfg.links, (), PoolId));

        let mut relay_subnet = HashMap::new();
        let mut iface_subnet = HashMap::new();
        let (mut by_hw, mut by_client_id, mut by_circuit, mut by_remote) = Default::default();
        for (si, s) in cfg.subnets.iter().enumerate() {
            for r in &s.relays {
                relay_subnet.entry(*r).or_insert(si);
            }
            for iface in interfaces {
                let named = s.interface.as_deref() == Some(iface.name.as_str());
                if named || iface.addrs.iter().any(|a| s.net.contains(a)) {
                    iface_subnet.entry(iface.index).or_insert(si);
                }
            }
        }
        let scoped = cfg
            .subnets
            .iter()
            .enumerate()
            .map(|(si, s)| (si, &s.reservations));
        for (si, list) in scoped.chain([(GLOBAL, &cfg.reservations)]) {
            for (ri, r) in list.iter().enumerate() {
                let (map, key): (&mut ReservationIndex, &[u8]) = match &r.key {
                    ReservationKey::HwAddress(k) => (&mut by_hw, k),
                    ReservationKey::ClientId(k) => (&mut by_client_id, k),
                    ReservationKey::CircuitId(k) => (&mut by_circuit, k),
                    ReservationKey::RemoteId(k) => (&mut by_remote, k),
                };
                map.entry(key.into()).or_default().push((si, ri));
            }
        }
        Context {
            test_mode: config.port != SERVER_PORT,
            cfg,
            by_network,
            layout,
            link_pools,
            relay_subnet,
            iface_subnet,
            by_hw,
            by_client_id,
            by_circuit,
            by_remote,
        }
    }

    /// The engine layout for this config: one engine pool per configured pool, in file
    /// order, or in load-balancing two, its lower half then its upper (`crate::scope`).
    /// Reserved and excluded addresses are kept out of the dynamic free sets of the half they
    /// fall in.
    pub fn engine_config(&self, shards: usize) -> EngineConfig {
        let pools = (self.layout.parts().iter())
            .map(|part| {
                let s = &self.cfg.subnets[part.subnet];
                let (first, last) = (addr(part.span.0), addr(part.span.1));
                let excluded = s
                    .excluded
                    .iter()
                    .copied()
                    .chain(s.reservations.iter().map(|r| r.address))
                    .chain(self.cfg.reservations.iter().map(|r| r.address))
                    .filter(|a| (first..=last).contains(a))
                    .collect();
                PoolSpec {
                    first,
                    last,
                    excluded,
                }
            })
            .collect();
        EngineConfig {
            shards,
            pools,
            offer_hold: self.cfg.offer_hold,
            decline_probation: self.cfg.decline_probation,
        }
    }

    /// The v4 configuration this context was built from.
    pub fn config(&self) -> &V4Config {
        &self.cfg
    }

    /// The engine pools of load-balancing scope `scope` (none outside load-balancing).
    pub fn pools_of_scope(&self, scope: usize) -> impl Iterator<Item = PoolId> + '_ {
        self.layout.pools_of(scope).map(PoolId)
    }

    /// Whether the config runs load-balancing: pools split and clients answered by scope.
    pub fn balanced(&self) -> bool {
        self.layout.balanced()
    }

    /// The load-balancing scope of the pool half holding `ip`; `None` outside every pool, and
    /// outside load-balancing.
    pub fn scope_of(&self, ip: Ipv4Addr) -> Option<usize> {
        self.layout.scope_of((), u32::from(ip).into())
    }

    /// The subnet (index into [`V4Config::subnets`]) of engine pool `pool`.
    pub fn pool_subnet(&self, pool: PoolId) -> Option<usize> {
        let part = self.layout.parts().get(pool.0 as usize)?;
        Some(part.subnet)
    }

    /// The subnet containing `ip`, if any.
    pub fn subnet_containing(&self, ip: Ipv4Addr) -> Option<usize> {
        self.by_network.containing(ip, |i| self.cfg.subnets[i].net)
    }

    /// Picks the client's subnet (RFC 3527 link selection, RFC 3011 subnet selection, the relay
    /// address, then the arrival interface or the client's own address).
    pub(super) fn select_subnet(&self, req: &Request<'_>, arrival: &Arrival) -> Option<usize> {
        if let Some(ip) = req.relay.and_then(|r| r.link_selection) {
            return self.subnet_containing(ip);
        }
        if let Some(ip) = req.subnet_selection {
            return self.subnet_containing(ip);
        }
        if !req.giaddr.is_unspecified() {
            return self
                .relay_subnet
                .get(&req.giaddr)
                .copied()
                .or_else(|| self.subnet_containing(req.giaddr));
        }
        self.iface_subnet
            .get(&arrival.ifindex)
            .copied()
            .or_else(|| {
                (!req.ciaddr.is_unspecified()).then(|| self.subnet_containing(req.ciaddr))?
            })
    }

    pub(super) fn on_link(&self, link: usize, ip: Ipv4Addr) -> Option<usize> {
        self.subnet_containing(ip)
            .filter(|&s| self.cfg.subnets[s].link == link)
    }

    /// The client's reservation on the link of `subnet` (the selected one): by hardware
    /// address, client id, then the relay's circuit id and remote id; a subnet's reservation
    /// first, then a global one (Kea's global reservations).
    pub(super) fn reservation(&self, subnet: usize, req: &Request<'_>) -> Option<Found<'_>> {
        let link = self.cfg.subnets[subnet].link;
        let relay = req.relay.unwrap_or_default();
        let tries: [(&ReservationIndex, Option<&[u8]>); 4] = [
            (&self.by_hw, Some(req.chaddr)),
            (&self.by_client_id, req.client_id),
            (&self.by_circuit, relay.circuit_id),
            (&self.by_remote, relay.remote_id),
        ];
        let scoped = tries.into_iter().find_map(|(map, key)| {
            let hits = map.get(key?)?;
            hits.iter()
                .find(|&&(s, _)| s != GLOBAL && self.cfg.subnets[s].link == link)
                .map(|&(s, r)| {
                    let res = &self.cfg.subnets[s].reservations[r];
                    Found {
                        res,
                        address: Some(res.address),
                        global: false,
                    }
                })
        });
        scoped.or_else(|| {
            tries.into_iter().find_map(|(map, key)| {
                let &(_, r) = map.get(key?)?.iter().find(|&&(s, _)| s == GLOBAL)?;
                let res = &self.cfg.reservations[r];
                let on_link = self.on_link(link, res.address).is_some();
                Some(Found {
                    res,
                    address: on_link.then_some(res.address),
                    global: true,
                })
            })
        })
    }

    /// The options and boot fields of the pool holding `ip`, else of `subnet`.
    pub(super) fn pool_options(&self, subnet: usize, ip: Ipv4Addr) -> (&OptionSet, &BootFields) {
        let s = &self.cfg.subnets[subnet];
        s.pools
            .iter()
            .find(|p| (p.first..=p.last).contains(&ip))
            .map_or((&s.options, &s.boot), |p| (&p.options, &p.boot))
    }

    pub(super) fn lease_time(&self, s: &Subnet4, requested: Option<u32>) -> u32 {
        requested
            .unwrap_or(s.lease_time)
            .clamp(s.min_lease_time, s.max_lease_time)
    }

    /// T1 and T2 for a granted lease (RFC 2131 §4.4.5 defaults: 0.5 and 0.875).
    pub(super) fn timers(&self, lease: u32) -> (u32, u32) {
        let t2 = self
            .cfg
            .rebind_time
            .filter(|&t| t < lease)
            .unwrap_or((u64::from(lease) * 7 / 8) as u32);
        let t1 = self
            .cfg
            .renew_time
            .filter(|&t| t < t2)
            .unwrap_or(lease / 2)
            .min(t2);
        (t1, t2)
    }

    pub(super) fn server_id(&self, req: &Request<'_>, arrival: &Arrival) -> Ipv4Addr {
        req.relay
            .and_then(|r| r.server_id_override)
            .or(self.cfg.server_id)
            .unwrap_or(arrival.local)
    }

    /// Reply routing, RFC 2131 §4.1 (and every reply to the source in test mode).
    pub(super) fn route(
        &self,
        req: &Request<'_>,
        arrival: &Arrival,
        kind: ReplyKind,
        yiaddr: Ipv4Addr,
    ) -> Destination {
        if self.test_mode {
            return Destination::Unicast(arrival.src);
        }
        if !req.giaddr.is_unspecified() {
            return Destination::Unicast(SocketAddrV4::new(req.giaddr, SERVER_PORT));
        }
        let broadcast = Destination::Broadcast {
            port: CLIENT_PORT,
            ifindex: arrival.ifindex,
        };
        if kind == ReplyKind::Nak {
            return broadcast;
        }
        if !req.ciaddr.is_unspecified() {
            return Destination::Unicast(SocketAddrV4::new(req.ciaddr, CLIENT_PORT));
        }
        match (req.broadcast(), req.htype, <[u8; 6]>::try_from(req.chaddr)) {
            (false, 1, Ok(mac)) if !yiaddr.is_unspecified() => Destination::UnicastToHardware {
                ip: yiaddr,
                mac,
                ifindex: arrival.ifindex,
            },
            _ => broadcast,
        }
    }
}
