//! DHCPv6 protocol decisions (RFC 8415 §16, §18.3): request in, reply decision and lease events
//! out.

use std::collections::HashMap;
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;

use lessor_engine::LeaseState;
use lessor_engine::Time;
use lessor_engine::v6::{
    BindRequest6, IaKey, IaKind, Resource, SolicitRequest, V6BindError, V6Engine, V6EngineConfig,
    V6LeaseEvent, V6PoolId, V6PoolSpec,
};

use super::packet::{self, Ia, IaType, Kind, Malformed, Request, opt};
use super::reply::{Encoder, ReplyKind, Status};
use crate::config::{Assignment, Assignments, Config, OptionSet6, Subnet6, V6Config, V6Identifier};

/// The DHCPv6 server and relay port (RFC 8415 §7.2).
pub const SERVER_PORT: u16 = 547;
/// The DHCPv6 client port (RFC 8415 §7.2).
pub const CLIENT_PORT: u16 = 546;

/// How a datagram reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The datagram's source (a client, or the relay nearest the server).
    pub src: SocketAddrV6,
    /// Interface index it arrived on.
    pub ifindex: u32,
    /// Its destination address (IPV6_PKTINFO `ipi6_addr`): `ff02::1:2` / `ff05::1:3`, or one
    /// of the server's own addresses for unicast.
    pub dst: Ipv6Addr,
}

/// A reply written into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// The message sent to the client (inside any RELAY-REPL layers).
    pub kind: ReplyKind,
    /// Where to send it: the relay the request came from (port 547, or its source port in test
    /// mode), or the client's source address and port. A link-local destination carries the
    /// arrival interface as its scope id.
    pub dst: SocketAddrV6,
    /// The arrival interface, to send on.
    pub ifindex: u32,
    /// The address to send from: the request's destination when that was one of ours
    /// (unicast); `None` for multicast, where the kernel picks.
    pub src: Option<Ipv6Addr>,
    /// The reply binds or extends a lease: it may leave only once the events pushed while
    /// handling this request are durable (invariant 1).
    pub needs_durable: bool,
    /// No configured subnet matches the client's link: the reply only says so, per IA
    /// (counted as [`NoReply::NoSubnet`] too).
    pub no_subnet: bool,
}

/// Why no reply was sent.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoReply {
    /// The datagram failed validation.
    Malformed(Malformed),
    /// A message that needs a Client Identifier has none (RFC 8415 §16).
    NoClientId,
    /// A REQUEST, RENEW, RELEASE or DECLINE without a Server Identifier (RFC 8415 §16).
    NoServerId,
    /// The Server Identifier is another server's.
    NotForUs,
    /// A SOLICIT, CONFIRM or REBIND carrying our own Server Identifier, which they must not
    /// carry (RFC 8415 §16.2, §16.5, §16.7).
    ServerIdForbidden,
    /// An INFORMATION-REQUEST carrying IA options (RFC 8415 §16.12).
    IaInInformationRequest,
    /// A SOLICIT, CONFIRM, REBIND or INFORMATION-REQUEST sent to a unicast address (RFC 8415
    /// §16).
    Unicast,
    /// No configured subnet matches the client's link (a CONFIRM or REBIND, which the server
    /// cannot judge without one; SOLICIT, REQUEST and RENEW are answered per IA and counted
    /// under the same label).
    NoSubnet,
    /// A CONFIRM listing no addresses (RFC 8415 §18.3.3: no reply).
    NothingToConfirm,
    /// The reply would not fit DHCPv6's 16-bit lengths.
    TooLarge,
}

impl NoReply {
    /// A stable short name, used as a counter label.
    pub fn label(self) -> &'static str {
        match self {
            NoReply::Malformed(m) => m.label(),
            NoReply::NoClientId => "v6_no_client_id",
            NoReply::NoServerId => "v6_no_server_id",
            NoReply::NotForUs => "v6_not_for_us",
            NoReply::ServerIdForbidden => "v6_server_id_forbidden",
            NoReply::IaInInformationRequest => "v6_ia_in_information_request",
            NoReply::Unicast => "v6_unicast",
            NoReply::NoSubnet => "v6_no_subnet",
            NoReply::NothingToConfirm => "v6_nothing_to_confirm",
            NoReply::TooLarge => "v6_too_large",
        }
    }
}

/// The result of handling one datagram.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Send the reply now in the output buffer.
    Reply(Reply),
    /// Send nothing.
    NoReply(NoReply),
}

/// An interface the server listens on, learned at startup.
#[derive(Clone, Debug)]
pub struct InterfaceInfo {
    /// Kernel interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// Its IPv6 addresses.
    pub addrs: Vec<Ipv6Addr>,
}

/// Reservations of one identifier kind, by the option payload bytes: (subnet, reservation).
type ReservationIndex = HashMap<Box<[u8]>, Vec<(usize, usize)>>;

/// What a pool is, by [`V6PoolId`].
#[derive(Debug)]
struct PoolInfo {
    /// The OPTION_PD_EXCLUDE payload (RFC 6603 §4.2) for every prefix of this pool.
    pd_exclude: Option<Box<[u8]>>,
}

/// The look-up tables built from the config; shared by every worker.
#[derive(Debug)]
struct Tables {
    cfg: V6Config,
    duid: Box<[u8]>,
    test_mode: bool,
    /// Subnet indexes sorted by network, for containment look-ups (subnets never overlap).
    by_network: Vec<usize>,
    /// By link: the address / delegation pools of every subnet on it, in config order (a
    /// shared network tries each subnet in turn).
    na_pools: Vec<Vec<V6PoolId>>,
    pd_pools: Vec<Vec<V6PoolId>>,
    /// By subnet: its own address / delegation pools.
    subnet_na_pools: Vec<Vec<V6PoolId>>,
    subnet_pd_pools: Vec<Vec<V6PoolId>>,
    pools: Vec<PoolInfo>,
    relay_subnet: HashMap<Ipv6Addr, usize>,
    iid_subnet: HashMap<Box<[u8]>, usize>,
    iface_subnet: HashMap<u32, usize>,
    /// By DUID, interface-id, remote-id, subscriber-id.
    reservations: [ReservationIndex; 4],
    /// `v6.reservations` by the same four identifiers: index into `cfg.reservations`.
    global_reservations: [HashMap<Box<[u8]>, usize>; 4],
}

/// Everything the DHCPv6 handler needs that does not change per packet: the validated config,
/// the server DUID, the look-up tables built from them, and the static assignments file.
///
/// Cheap to clone (two `Arc`s). A reload of the assignments file makes a new context with
/// [`V6Context::with_assignments`]; workers swap the one they read through, so a packet sees
/// one table or the other, whole.
#[derive(Clone, Debug)]
pub struct V6Context {
    t: Arc<Tables>,
    assignments: Arc<Assignments>,
}

/// A client's static assignment, wherever it came from.
#[derive(Clone, Copy, Debug)]
struct Static<'c> {
    address: Option<Ipv6Addr>,
    prefix: Option<Resource>,
    /// A subnet reservation's options (already merged with its subnet's).
    options: Option<&'c OptionSet6>,
    /// A global reservation's own options, laid over those of the client's subnet.
    own_options: Option<&'c OptionSet6>,
}

impl V6Context {
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
        let mut by_network: Vec<usize> = (0..cfg.subnets.len()).collect();
        by_network.sort_by_key(|&i| cfg.subnets[i].net.network());

        // Engine pool ids: each subnet's address pools, then its delegation pools, in order.
        let mut pools = Vec::new();
        let mut na_pools = Vec::new();
        let mut pd_pools = Vec::new();
        for s in &cfg.subnets {
            let mut na = Vec::new();
            for _ in &s.pools {
                na.push(V6PoolId(pools.len() as u32));
                pools.push(PoolInfo { pd_exclude: None });
            }
            let mut pd = Vec::new();
            for p in &s.pd_pools {
                pd.push(V6PoolId(pools.len() as u32));
                pools.push(PoolInfo {
                    pd_exclude: p
                        .excluded_prefix
                        .map(|x| pd_exclude(x.network(), x.prefix_len(), p.delegated_len)),
                });
            }
            na_pools.push(na);
            pd_pools.push(pd);
        }
        // By link: the pools of its subnets, in order.
        let by_link = |per_subnet: &[Vec<V6PoolId>]| -> Vec<Vec<V6PoolId>> {
            cfg.links
                .iter()
                .map(|l| {
                    l.subnets
                        .iter()
                        .flat_map(|&s| per_subnet[s].iter().copied())
                        .collect()
                })
                .collect()
        };
        let (subnet_na_pools, subnet_pd_pools) = (na_pools, pd_pools);
        let (na_pools, pd_pools) = (by_link(&subnet_na_pools), by_link(&subnet_pd_pools));
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
        V6Context {
            t: Arc::new(Tables {
                test_mode: cfg.port != SERVER_PORT,
                cfg,
                duid: server_duid.into(),
                by_network,
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
        V6Context {
            t: Arc::clone(&self.t),
            assignments,
        }
    }

    /// The engine layout for this config: one engine pool per configured pool (each subnet's
    /// address pools, then its delegation pools). Excluded addresses and prefixes, and every
    /// reserved or assigned resource inside a pool, are kept out of the dynamic free sets.
    pub fn engine_config(&self, shards: usize) -> V6EngineConfig {
        let cfg = &self.t.cfg;
        let assigned: Vec<&Assignment> = self.assignments.iter().collect();
        let mut specs = Vec::new();
        for s in &cfg.subnets {
            for p in &s.pools {
                let range = p.first..=p.last;
                let excluded = s
                    .excluded
                    .iter()
                    .copied()
                    .chain(s.reservations.iter().filter_map(|r| r.address))
                    .chain(cfg.reservations.iter().filter_map(|r| r.address))
                    .chain(assigned.iter().filter_map(|a| a.address))
                    .filter(|a| range.contains(a))
                    .collect();
                specs.push(V6PoolSpec::Na {
                    first: p.first,
                    last: p.last,
                    excluded,
                });
            }
            for p in &s.pd_pools {
                let overlaps = |x: &ipnet::Ipv6Net| {
                    p.prefix.contains(&x.network()) || x.contains(&p.prefix.network())
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
                specs.push(V6PoolSpec::Pd {
                    prefix: p.prefix.network(),
                    prefix_len: p.prefix.prefix_len(),
                    delegated_len: p.delegated_len,
                    excluded,
                });
            }
        }
        V6EngineConfig {
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
        let pos = t
            .by_network
            .partition_point(|&i| t.cfg.subnets[i].net.network() <= ip);
        let i = *t.by_network.get(pos.checked_sub(1)?)?;
        t.cfg.subnets[i].net.contains(&ip).then_some(i)
    }

    /// The client's subnet (its link). Relayed: the Interface-ID of the relay closest to the
    /// client when a subnet lists it, else the link-address of the closest relay that set one
    /// (RFC 8415 §13.1; RFC 6221 lightweight relays leave it unspecified), matched against
    /// `relays` and then by containment. Direct: the arrival interface, else the source address
    /// when it is a global one.
    fn select_subnet(&self, req: &Request<'_>, arrival: &Arrival) -> Option<usize> {
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
    fn static_for(&self, subnet: Option<usize>, req: &Request<'_>) -> Option<Static<'_>> {
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

/// Whether handling `data` may write to the journal (REQUEST, RENEW, REBIND, RELEASE,
/// DECLINE, or a SOLICIT with Rapid Commit): what a worker stops taking while its journal
/// backlog is full. A datagram that does not parse writes nothing.
pub fn writes_lease(data: &[u8]) -> bool {
    packet::parse(data).is_ok_and(|req| match req.kind {
        Kind::Request | Kind::Renew | Kind::Rebind | Kind::Release | Kind::Decline => true,
        Kind::Solicit => req.rapid_commit,
        Kind::Confirm | Kind::InformationRequest => false,
    })
}

/// The shard (and worker) that owns the client of the datagram `data`: the engine's owner of
/// its DUID, through any relay layers; `None` when it has none (a stateless
/// INFORMATION-REQUEST, or a datagram that will be dropped as malformed), which any worker
/// may answer.
pub fn owner_shard(data: &[u8], engine: &V6Engine) -> Option<usize> {
    packet::client_duid(data).map(|d| engine.owner(d))
}

/// Handles one datagram: validates it, applies it to the engine shard that owns the client
/// ([`owner_shard`]; the caller runs on that shard's worker), writes any reply into `out` and
/// pushes lease events into `events`.
pub fn handle(
    ctx: &V6Context,
    engine: &V6Engine,
    data: &[u8],
    arrival: &Arrival,
    now: Time,
    out: &mut Vec<u8>,
    events: &mut Vec<V6LeaseEvent>,
) -> Outcome {
    let req = match packet::parse(data) {
        Ok(r) => r,
        Err(m) => return Outcome::NoReply(NoReply::Malformed(m)),
    };
    let duid = req.client_id.unwrap_or_default();
    let mut h = Handling {
        ctx,
        t: &ctx.t,
        engine,
        req: &req,
        duid,
        arrival,
        now,
        out,
        events,
        shard: engine.owner(duid),
        bound: false,
        no_subnet: false,
    };
    match h.run() {
        Ok(reply) => Outcome::Reply(reply),
        Err(why) => Outcome::NoReply(why),
    }
}

struct Handling<'h, 'r> {
    ctx: &'h V6Context,
    t: &'h Tables,
    engine: &'h V6Engine,
    req: &'h Request<'r>,
    duid: &'r [u8],
    arrival: &'h Arrival,
    now: Time,
    out: &'h mut Vec<u8>,
    events: &'h mut Vec<V6LeaseEvent>,
    shard: usize,
    /// A binding was made or extended: the reply waits for the journal.
    bound: bool,
    /// The reply says only that no subnet matches the client's link.
    no_subnet: bool,
}

/// The resources of one IA kind in a subnet, and the client's static one.
struct Candidates<'c> {
    kind: IaKind,
    pools: &'c [V6PoolId],
    reserved: Option<Resource>,
}

impl<'h, 'r> Handling<'h, 'r> {
    fn run(&mut self) -> Result<Reply, NoReply> {
        let req = self.req;
        let ours = &*self.t.duid;
        // RFC 8415 §16: who a message must (not) name.
        match req.kind {
            Kind::Solicit | Kind::Confirm | Kind::Rebind => {
                req.client_id.ok_or(NoReply::NoClientId)?;
                // RFC 8415 §16.2, §16.5, §16.7: discarded when they carry a Server Identifier
                // at all (as Kea does); another server's is counted as not for us.
                match req.server_id {
                    Some(s) if s != ours => return Err(NoReply::NotForUs),
                    Some(_) => return Err(NoReply::ServerIdForbidden),
                    None => {}
                }
            }
            Kind::Request | Kind::Renew | Kind::Release | Kind::Decline => {
                req.client_id.ok_or(NoReply::NoClientId)?;
                match req.server_id {
                    None => return Err(NoReply::NoServerId),
                    Some(s) if s != ours => return Err(NoReply::NotForUs),
                    Some(_) => {}
                }
            }
            Kind::InformationRequest => {
                if req.server_id.is_some_and(|s| s != ours) {
                    return Err(NoReply::NotForUs);
                }
                if req.has_ias {
                    return Err(NoReply::IaInInformationRequest);
                }
            }
        }
        // RFC 8415 §16 and §18.4: straight from a client, only multicast unless we offered a
        // unicast address (test mode takes everything: tools send unicast).
        if !self.t.test_mode && !req.relayed() && !self.arrival.dst.is_multicast() {
            match req.kind {
                // RFC 8415 §16: discarded even when we offered Server Unicast.
                Kind::Solicit | Kind::Confirm | Kind::Rebind | Kind::InformationRequest => {
                    return Err(NoReply::Unicast);
                }
                _ if self.t.cfg.server_unicast.is_none() => return self.use_multicast(),
                _ => {}
            }
        }
        let subnet = self.ctx.select_subnet(req, self.arrival);
        match (req.kind, subnet) {
            (Kind::Solicit, Some(s)) => self.solicit(s),
            (Kind::Request, Some(s)) => self.request(s),
            (Kind::Renew, Some(s)) => self.extend(s, false),
            (Kind::Rebind, Some(s)) => self.extend(s, true),
            (Kind::Confirm, Some(s)) => self.confirm(s),
            (Kind::Solicit | Kind::Request | Kind::Renew, None) => self.no_subnet(),
            // RFC 8415 §18.3.3: no link, no way to tell; §18.3.5: a REBIND the server cannot
            // judge is discarded.
            (Kind::Confirm | Kind::Rebind, None) => Err(NoReply::NoSubnet),
            (Kind::Release, _) => self.release_or_decline(false),
            (Kind::Decline, _) => self.release_or_decline(true),
            (Kind::InformationRequest, _) => self.information(subnet),
        }
    }

    /// No subnet matches the client's link: as Kea, an ADVERTISE (SOLICIT) or REPLY whose every
    /// IA says NoAddrsAvail / NoPrefixAvail (RFC 8415 §18.3.9, §18.3.2), or NoBinding for a
    /// RENEW (§18.3.4), with the global options the ORO asks for.
    fn no_subnet(&mut self) -> Result<Reply, NoReply> {
        let req = self.req;
        let kind = match req.kind {
            Kind::Solicit => ReplyKind::Advertise,
            _ => ReplyKind::Reply,
        };
        let mut enc = Encoder::new(std::mem::take(self.out), req, kind);
        self.ids(&mut enc);
        for ia in req.ias() {
            let status = match (req.kind, ia.kind) {
                (Kind::Renew, _) => Status::NoBinding,
                (_, IaType::Pd) => Status::NoPrefixAvail,
                _ => Status::NoAddrsAvail,
            };
            write_ia(&mut enc, &ia, 0, 0, |e| e.status(status));
        }
        let ctx: &'h V6Context = self.ctx;
        self.options(&mut enc, None, ctx.static_for(None, req));
        self.no_subnet = true;
        self.finish(enc, kind)
    }

    fn subnet(&self, s: usize) -> &'h Subnet6 {
        let t: &'h Tables = self.t;
        &t.cfg.subnets[s]
    }

    /// The subnets on `s`'s link: `s` alone, or its shared network's, in order.
    fn link(&self, s: usize) -> &'h [usize] {
        let t: &'h Tables = self.t;
        &t.cfg.links[t.cfg.subnets[s].link].subnets
    }

    /// Whether `addr` is on `s`'s link (in any of its subnets).
    fn on_link(&self, s: usize, addr: Ipv6Addr) -> bool {
        self.link(s)
            .iter()
            .any(|&m| self.subnet(m).net.contains(&addr))
    }

    /// The subnet of `s`'s link that `r` belongs to (whose lifetimes it gets): the one holding
    /// the address, or the delegation pool holding the prefix; `s` when none does (a reserved
    /// prefix outside the pools).
    fn home(&self, s: usize, kind: IaKind, r: Resource) -> usize {
        self.home_in_link(s, kind, r).unwrap_or(s)
    }

    /// The subnet of `s`'s link that `r` belongs to, if any (see [`Self::home`]).
    fn home_in_link(&self, s: usize, kind: IaKind, r: Resource) -> Option<usize> {
        self.link(s).iter().copied().find(|&m| {
            let sub = self.subnet(m);
            match kind {
                IaKind::Na => sub.net.contains(&r.addr),
                IaKind::Pd => sub.pd_pools.iter().any(|p| p.prefix.contains(&r.addr)),
            }
        })
    }

    /// The pools and static resource for IAs of `kind`; the static one goes only to the first
    /// IA of its kind (`first`), and an address only when it is on the client's link.
    fn candidates(
        &self,
        s: usize,
        kind: IaKind,
        st: Option<Static<'_>>,
        first: bool,
    ) -> Candidates<'h> {
        let t: &'h Tables = self.t;
        let reserved = st.filter(|_| first).and_then(|st| match kind {
            IaKind::Na => st
                .address
                .filter(|a| self.on_link(s, *a))
                .map(Resource::address),
            IaKind::Pd => st.prefix,
        });
        let pools = match kind {
            IaKind::Na => &t.na_pools[self.subnet(s).link],
            IaKind::Pd => &t.pd_pools[self.subnet(s).link],
        };
        Candidates {
            kind,
            pools,
            reserved,
        }
    }

    fn key(&self, ia: &Ia<'_>) -> Option<IaKey> {
        let kind = match ia.kind {
            IaType::Na => IaKind::Na,
            IaType::Pd => IaKind::Pd,
            IaType::Ta => return None,
        };
        Some(IaKey::new(self.duid, ia.iaid, kind))
    }

    fn bind(
        &mut self,
        key: &IaKey,
        c: &Candidates<'_>,
        resource: Resource,
        s: usize,
    ) -> Result<Resource, V6BindError> {
        let sub = self.subnet(self.home(s, c.kind, resource));
        let req = BindRequest6 {
            client: key,
            resource,
            pools: c.pools,
            reserved: c.reserved == Some(resource),
            preferred: sub.preferred_lifetime,
            valid: sub.valid_lifetime,
        };
        let view = self.engine.bind(self.shard, &req, self.now, self.events)?;
        self.bound = true;
        Ok(view.resource)
    }

    /// A fresh resource for the IA (held, then bound when `bind`).
    fn allocate(
        &mut self,
        key: &IaKey,
        c: &Candidates<'_>,
        hint: Option<Resource>,
        s: usize,
        bind: bool,
    ) -> Option<Resource> {
        let link = self.link(s);
        let view = if link.len() == 1 {
            let sr = SolicitRequest {
                client: key,
                pools: c.pools,
                reserved: c.reserved,
                hint,
            };
            self.engine.solicit(self.shard, &sr, self.now)?
        } else {
            // A shared network: one subnet at a time, so the engine (which takes what its own
            // shard has free in any listed pool before borrowing) fills them in order. The
            // subnet of the IA's record, or of its hint, comes first: that is where the engine
            // gives the same resource back.
            let t: &'h Tables = self.t;
            let known = self
                .engine
                .lookup(self.shard, key)
                .map(|v| v.resource)
                .or(hint)
                .and_then(|r| self.home_in_link(s, c.kind, r));
            let order = known
                .into_iter()
                .chain(link.iter().copied().filter(|&m| Some(m) != known));
            let mut found = None;
            for m in order {
                let pools = match c.kind {
                    IaKind::Na => &t.subnet_na_pools[m],
                    IaKind::Pd => &t.subnet_pd_pools[m],
                };
                let sr = SolicitRequest {
                    client: key,
                    pools,
                    reserved: c.reserved,
                    hint,
                };
                found = self.engine.solicit(self.shard, &sr, self.now);
                if found.is_some() {
                    break;
                }
            }
            found?
        };
        if bind {
            self.bind(key, c, view.resource, s).ok()
        } else {
            Some(view.resource)
        }
    }

    /// RFC 8415 §18.3.1 / §18.3.9: an ADVERTISE, or with Rapid Commit (when the subnet allows
    /// it) a REPLY that binds.
    fn solicit(&mut self, s: usize) -> Result<Reply, NoReply> {
        let req = self.req;
        let rapid = req.rapid_commit && self.subnet(s).rapid_commit;
        let kind = if rapid {
            ReplyKind::Reply
        } else {
            ReplyKind::Advertise
        };
        let ctx: &'h V6Context = self.ctx;
        let st = ctx.static_for(Some(s), req);
        let mut enc = Encoder::new(std::mem::take(self.out), req, kind);
        self.ids(&mut enc);
        let (mut first_na, mut first_pd) = (true, true);
        for ia in req.ias() {
            let Some(key) = self.key(&ia) else {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NoAddrsAvail));
                continue;
            };
            let first = match key.kind() {
                IaKind::Na => std::mem::replace(&mut first_na, false),
                IaKind::Pd => std::mem::replace(&mut first_pd, false),
            };
            let c = self.candidates(s, key.kind(), st, first);
            let hint = listed(&ia);
            match self.allocate(&key, &c, hint, s, rapid) {
                Some(r) => self.write_granted(&mut enc, &ia, s, r),
                // RFC 8415 §18.3.9: an IA we cannot serve comes back with NoAddrsAvail
                // (NoPrefixAvail for IA_PD) inside it, even when no IA is served, and the
                // requested options still go with it.
                None => write_ia(&mut enc, &ia, 0, 0, |e| e.status(unavailable(c.kind))),
            }
        }
        if rapid {
            enc.put(opt::RAPID_COMMIT, &[]);
        }
        if let (false, Some(p)) = (rapid, self.subnet(s).preference) {
            enc.put(packet::opt::PREFERENCE, &[p]);
        }
        self.options(&mut enc, Some(s), st);
        self.finish(enc, kind)
    }

    /// RFC 8415 §18.3.2: binds what the client asks for in each IA (what we advertised), or
    /// something else when that is gone.
    fn request(&mut self, s: usize) -> Result<Reply, NoReply> {
        let req = self.req;
        let ctx: &'h V6Context = self.ctx;
        let st = ctx.static_for(Some(s), req);
        let mut enc = Encoder::new(std::mem::take(self.out), req, ReplyKind::Reply);
        self.ids(&mut enc);
        let (mut first_na, mut first_pd) = (true, true);
        for ia in req.ias() {
            let Some(key) = self.key(&ia) else {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NoAddrsAvail));
                continue;
            };
            let first = match key.kind() {
                IaKind::Na => std::mem::replace(&mut first_na, false),
                IaKind::Pd => std::mem::replace(&mut first_pd, false),
            };
            let c = self.candidates(s, key.kind(), st, first);
            let asked = listed(&ia);
            if c.kind == IaKind::Na
                && c.reserved.is_none()
                && let Some(a) = asked.filter(|a| !self.on_link(s, a.addr))
            {
                tracing::debug!(addr = %a.addr, "REQUEST for an address off the client's link");
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NotOnLink));
                continue;
            }
            // The static resource, else what the client asks for, else what we advertised.
            let target = c.reserved.or(asked).or_else(|| {
                self.engine
                    .lookup(self.shard, &key)
                    .filter(|v| matches!(v.state, LeaseState::Offered | LeaseState::Bound))
                    .map(|v| v.resource)
            });
            let got = match target {
                Some(r) => match self.bind(&key, &c, r, s) {
                    Ok(r) => Some(r),
                    // Gone, or not ours to give: give another one.
                    Err(_) => self.allocate(&key, &c, None, s, true),
                },
                None => self.allocate(&key, &c, None, s, true),
            };
            match got {
                Some(r) => self.write_granted(&mut enc, &ia, s, r),
                None => write_ia(&mut enc, &ia, 0, 0, |e| e.status(unavailable(c.kind))),
            }
        }
        self.options(&mut enc, Some(s), st);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.3.4 (RENEW) and §18.3.5 (REBIND): extends each IA's binding. What the
    /// client lists that is not (or no longer) its binding comes back with lifetimes 0.
    fn extend(&mut self, s: usize, rebind: bool) -> Result<Reply, NoReply> {
        let req = self.req;
        let ctx: &'h V6Context = self.ctx;
        let st = ctx.static_for(Some(s), req);
        let mut enc = Encoder::new(std::mem::take(self.out), req, ReplyKind::Reply);
        self.ids(&mut enc);
        let (mut first_na, mut first_pd) = (true, true);
        for ia in req.ias() {
            let Some(key) = self.key(&ia) else {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NoBinding));
                continue;
            };
            let first = match key.kind() {
                IaKind::Na => std::mem::replace(&mut first_na, false),
                IaKind::Pd => std::mem::replace(&mut first_pd, false),
            };
            let c = self.candidates(s, key.kind(), st, first);
            let current = self
                .engine
                .lookup(self.shard, &key)
                .filter(|v| v.state != LeaseState::Declined)
                .map(|v| v.resource);
            // A changed static assignment replaces the binding; without any binding a REBIND
            // may take back what the client lists when it is still free (§18.3.5).
            let target = match (current, c.reserved) {
                (Some(cur), Some(r)) if cur != r => Some(r),
                (Some(cur), _) => Some(cur),
                (None, _) if rebind => listed(&ia),
                (None, _) => None,
            };
            let Some(target) = target else {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NoBinding));
                continue;
            };
            let result = self.bind(&key, &c, target, s);
            if !rebind
                && current.is_some()
                && matches!(result, Err(V6BindError::Taken | V6BindError::Quarantined))
            {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NoBinding));
                continue;
            }
            let sub = self.subnet(self.home(s, c.kind, target));
            let (t1, t2) = match result {
                Ok(_) => (sub.renew_time, sub.rebind_time),
                Err(_) => (0, 0),
            };
            let (preferred, valid) = (sub.preferred_lifetime, sub.valid_lifetime);
            let pd_exclude = self.pd_exclude_for(&key, target);
            let kind = c.kind;
            write_ia(&mut enc, &ia, t1, t2, |e| {
                if result.is_ok() {
                    e.resource(
                        kind == IaKind::Pd,
                        target.addr,
                        target.len,
                        preferred,
                        valid,
                        pd_exclude,
                    );
                } else {
                    // Not (or no longer) appropriate, or another's: stop using it.
                    e.resource(kind == IaKind::Pd, target.addr, target.len, 0, 0, None);
                }
                for x in ia.entries() {
                    let r = Resource::prefix(x.addr, x.len);
                    if r != target {
                        e.resource(kind == IaKind::Pd, x.addr, x.len, 0, 0, None);
                    }
                }
            });
        }
        self.options(&mut enc, Some(s), st);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.3.3: are the client's addresses on its link?
    fn confirm(&mut self, s: usize) -> Result<Reply, NoReply> {
        let req = self.req;
        let mut any = false;
        let mut on_link = true;
        for ia in req.ias().filter(|ia| ia.kind != IaType::Pd) {
            for e in ia.entries() {
                any = true;
                on_link &= self.on_link(s, e.addr);
            }
        }
        if !any {
            return Err(NoReply::NothingToConfirm);
        }
        let mut enc = Encoder::new(std::mem::take(self.out), req, ReplyKind::Reply);
        self.ids(&mut enc);
        enc.status(if on_link {
            Status::Success
        } else {
            Status::NotOnLink
        });
        self.options(&mut enc, Some(s), None);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.3.7 (RELEASE) and §18.3.8 (DECLINE): each listed resource the IA holds is
    /// released (declined: quarantined); IAs with none get NoBinding. DECLINE is about
    /// addresses only: its IA_PDs are ignored.
    fn release_or_decline(&mut self, decline: bool) -> Result<Reply, NoReply> {
        let req = self.req;
        let mut enc = Encoder::new(std::mem::take(self.out), req, ReplyKind::Reply);
        self.ids(&mut enc);
        for ia in req.ias() {
            if decline && ia.kind == IaType::Pd {
                continue;
            }
            let mut done = false;
            if let Some(key) = self.key(&ia) {
                for e in ia.entries() {
                    let r = Resource::prefix(e.addr, e.len);
                    let hit = if decline {
                        self.engine
                            .decline(self.shard, &key, r, self.now, self.events)
                    } else {
                        self.engine
                            .release(self.shard, &key, r, self.now, self.events)
                    };
                    if hit && decline {
                        tracing::warn!(addr = %e.addr, duid = %super::format_duid(self.duid),
                            "client declined the address: it is in use on the network; quarantined");
                    }
                    done |= hit;
                }
            }
            if !done {
                write_ia(&mut enc, &ia, 0, 0, |e| e.status(Status::NoBinding));
            }
        }
        // §18.3.7 / §18.3.8: the identifiers and the statuses, no configuration.
        enc.status(Status::Success);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.3.6: configuration only.
    fn information(&mut self, subnet: Option<usize>) -> Result<Reply, NoReply> {
        let req = self.req;
        let ctx: &'h V6Context = self.ctx;
        let st = ctx.static_for(subnet, req);
        let mut enc = Encoder::new(std::mem::take(self.out), req, ReplyKind::Reply);
        self.ids(&mut enc);
        self.options(&mut enc, subnet, st);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.4: a unicast message we did not invite: UseMulticast, nothing else.
    fn use_multicast(&mut self) -> Result<Reply, NoReply> {
        let mut enc = Encoder::new(std::mem::take(self.out), self.req, ReplyKind::Reply);
        self.ids(&mut enc);
        enc.status(Status::UseMulticast);
        self.finish(enc, ReplyKind::Reply)
    }

    fn ids(&self, enc: &mut Encoder) {
        enc.put(opt::SERVERID, &self.t.duid);
        if let Some(id) = self.req.client_id {
            enc.put(opt::CLIENTID, id);
        }
    }

    /// The PD-Exclude payload for a prefix the IA gets, when its pool has an excluded prefix
    /// and the client asked for option 67 (RFC 6603 §4.1).
    fn pd_exclude_for(&self, key: &IaKey, r: Resource) -> Option<&[u8]> {
        if key.kind() != IaKind::Pd || !self.req.requests(opt::PD_EXCLUDE) {
            return None;
        }
        let view = self.engine.lookup(self.shard, key)?;
        if view.resource != r {
            return None;
        }
        self.t
            .pools
            .get(view.pool?.0 as usize)?
            .pd_exclude
            .as_deref()
    }

    /// An IA with the resource it gets and the subnet's timers and lifetimes.
    fn write_granted(&self, enc: &mut Encoder, ia: &Ia<'_>, s: usize, r: Resource) {
        let prefix = ia.kind == IaType::Pd;
        let kind = if prefix { IaKind::Pd } else { IaKind::Na };
        let sub = self.subnet(self.home(s, kind, r));
        let pd_exclude = self.key(ia).and_then(|k| self.pd_exclude_for(&k, r));
        let (preferred, valid) = (sub.preferred_lifetime, sub.valid_lifetime);
        write_ia(enc, ia, sub.renew_time, sub.rebind_time, |e| {
            e.resource(prefix, r.addr, r.len, preferred, valid, pd_exclude);
        });
    }

    /// The configured options the client's ORO asks for (RFC 8415 §18.3: only those), from the
    /// reservation, else the subnet, else `v6.options`; and the Server Unicast option for
    /// direct clients when configured.
    fn options(&self, enc: &mut Encoder, subnet: Option<usize>, st: Option<Static<'_>>) {
        let set = st
            .and_then(|s| s.options)
            .or_else(|| subnet.map(|s| &self.subnet(s).options))
            .unwrap_or(&self.t.cfg.options);
        let over = st.and_then(|s| s.own_options);
        if self.req.oro.is_some() {
            for (code, v) in over.into_iter().flat_map(|o| o.iter()) {
                if self.req.requests(code) {
                    enc.put(code, v);
                }
            }
            for (code, v) in set.iter() {
                if self.req.requests(code) && !over.is_some_and(|o| o.contains(code)) {
                    enc.put(code, v);
                }
            }
        }
        if let (Some(a), false) = (self.t.cfg.server_unicast, self.req.relayed()) {
            enc.put(packet::opt::UNICAST, &a.octets());
        }
    }

    fn finish(&mut self, enc: Encoder, kind: ReplyKind) -> Result<Reply, NoReply> {
        let (buf, ok) = enc.finish();
        *self.out = buf;
        ok.map_err(|_| NoReply::TooLarge)?;
        Ok(Reply {
            kind,
            dst: self.route(),
            ifindex: self.arrival.ifindex,
            src: Some(self.arrival.dst).filter(|a| !a.is_multicast() && !a.is_unspecified()),
            needs_durable: self.bound,
            no_subnet: self.no_subnet,
        })
    }

    /// RFC 8415 §18.3.10 and §19.3: to the relay the request came from (port 547), or to the
    /// client's source address and port; in test mode to the source as it is.
    fn route(&self) -> SocketAddrV6 {
        let src = self.arrival.src;
        let port = if self.req.relayed() && !self.t.test_mode {
            SERVER_PORT
        } else {
            src.port()
        };
        let scope = if src.scope_id() == 0 && src.ip().is_unicast_link_local() {
            self.arrival.ifindex
        } else {
            src.scope_id()
        };
        SocketAddrV6::new(*src.ip(), port, 0, scope)
    }
}

/// The first address or prefix the client lists in `ia`, unless it is the unspecified address
/// (which some clients send as a mere length hint).
fn listed(ia: &Ia<'_>) -> Option<Resource> {
    ia.first()
        .filter(|e| !e.addr.is_unspecified())
        .map(|e| Resource::prefix(e.addr, e.len))
}

fn unavailable(kind: IaKind) -> Status {
    match kind {
        IaKind::Na => Status::NoAddrsAvail,
        IaKind::Pd => Status::NoPrefixAvail,
    }
}

/// Writes an IA option echoing `ia`'s type and IAID, with timers `t1`/`t2` (IA_TA has none)
/// and a body.
fn write_ia(enc: &mut Encoder, ia: &Ia<'_>, t1: u32, t2: u32, body: impl FnOnce(&mut Encoder)) {
    let code = match ia.kind {
        IaType::Na => opt::IA_NA,
        IaType::Ta => opt::IA_TA,
        IaType::Pd => opt::IA_PD,
    };
    let m = enc.open(code);
    enc.extend(&ia.iaid.to_be_bytes());
    if ia.kind != IaType::Ta {
        enc.extend(&t1.to_be_bytes());
        enc.extend(&t2.to_be_bytes());
    }
    body(enc);
    enc.close(m);
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
