//! DHCPv4 protocol decisions (RFC 2131 §4.3): request in, reply decision and lease events out.

use std::net::{Ipv4Addr, SocketAddrV4};

use lessor_engine::v4::{
    BindError, BindRequest, ClientKey, Engine, HwAddr, LeaseEvent, LeaseInfo, OfferRequest, PoolId,
};
use lessor_engine::{LeaseState, Time};

use super::context::{Context, Found};
use super::packet::{self, Kind, Malformed, Request};
use super::reply::{Encoder, ReplyKind};
use crate::config::{BootFields, OptionSet};

pub use lessor_net::wire::v4::{CLIENT_PORT, SERVER_PORT};

/// How a request reached the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Arrival {
    /// The datagram's source.
    pub src: SocketAddrV4,
    /// Interface index it arrived on.
    pub ifindex: u32,
    /// The server's local address on that interface (IP_PKTINFO `ipi_spec_dst`).
    pub local: Ipv4Addr,
}

/// A datagram as [`handle`] takes it.
pub type Received<'a> = crate::proto::Received<'a, Arrival>;

/// Where a reply goes (RFC 2131 §4.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Destination {
    /// A plain unicast datagram.
    Unicast(SocketAddrV4),
    /// The limited broadcast address on the arrival interface.
    Broadcast {
        /// Destination port.
        port: u16,
        /// Interface to send on.
        ifindex: u32,
    },
    /// Unicast to a client that has no address yet: the sender must install an ARP entry for
    /// `mac` first (or fall back to broadcast).
    UnicastToHardware {
        /// The address being given to the client.
        ip: Ipv4Addr,
        /// The client's hardware address.
        mac: [u8; 6],
        /// Interface to send on.
        ifindex: u32,
    },
}

/// A reply written into the caller's buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Reply {
    /// Message type sent.
    pub kind: ReplyKind,
    /// Where to send it.
    pub dst: Destination,
    /// The source address to send from.
    pub src: Ipv4Addr,
    /// The reply binds or extends a lease: it may leave only once the events pushed while
    /// handling this request are durable (durable ACK).
    pub needs_durable: bool,
    /// A NAK because the address asked for could not be bound: why (`address_taken`: another
    /// client holds it; `not_in_pool`), counted as an allocation failure.
    pub refused: Option<&'static str>,
}

crate::proto::no_reply_reasons! {
    /// No configured subnet matches the client's link.
    NoSubnet => "no_subnet",
    /// The request names another server (option 54), or is a RELEASE/DECLINE for another.
    NotForUs => "not_for_us",
    /// Every pool of the link is exhausted.
    PoolExhausted => "pool_exhausted",
    /// Not authoritative, and the requested address is wrong for the client's network.
    NotAuthoritative => "not_authoritative",
    /// A BOOTP client whose reservation does not allow BOOTP, or without a reservation while
    /// `bootp_dynamic` is off.
    BootpUnknown => "bootp_unknown",
    /// An INIT-REBOOT, RENEWING or REBINDING REQUEST from a client the server has no record
    /// of: it stays silent (RFC 2131 §4.3.2).
    UnknownClient => "unknown_client",
    /// A DHCPINFORM without the client's address in ciaddr: there is nowhere to reply
    /// (RFC 2131 §4.4.3).
    InformWithoutAddress => "inform_without_ciaddr",
    /// The request lacks a field its message type needs (e.g. REQUEST without an address).
    Incomplete => "incomplete",
    /// A RELEASE was applied (no reply is ever sent).
    Released => "released",
    /// A DECLINE was applied (no reply is ever sent).
    Declined => "declined",
    /// A RELEASE or DECLINE for an address the client does not hold.
    NoSuchLease => "no_such_lease",
    /// In load-balancing, a client of the partner's scope while this server does not serve
    /// it: the partner answers (see [`crate::scope`]).
    HaPartnerScope => "ha_partner_scope",
}

/// The value a worker hashes to pick the shard that owns a client: bytes 2..6 of the chaddr
/// field (packet offset 30), which a classic BPF program on the reuseport group can read too.
pub fn steer_hash(chaddr_field: &[u8; 16]) -> u32 {
    u32::from_be_bytes([
        chaddr_field[2],
        chaddr_field[3],
        chaddr_field[4],
        chaddr_field[5],
    ])
}

/// The shard (and worker) that owns the client of the datagram `data`, from its chaddr field;
/// 0 for a datagram too short to have one (it will be dropped as malformed anyway).
pub fn owner_shard(data: &[u8], shards: usize) -> usize {
    data.get(28..44)
        .and_then(|f| <&[u8; 16]>::try_from(f).ok())
        .map_or(0, |f| steer_hash(f) as usize % shards.max(1))
}

/// The client's identity: option 61 when sent (RFC 2131 §4.2), else htype and chaddr.
pub fn client_key(req: &Request<'_>) -> ClientKey {
    match req.client_id {
        Some(id) => ClientKey::client_id(id),
        None => ClientKey::hardware(req.htype, req.chaddr),
    }
}

/// Per-worker state the handler reuses between packets.
#[derive(Debug, Default)]
pub struct Scratch {
    /// Joined split options (RFC 3396).
    pub joined: Vec<u8>,
}

/// Whether handling `data` may write to the journal (a DHCPREQUEST, DECLINE, RELEASE or BOOTP
/// request): what a worker stops taking while its journal backlog is full. A datagram that
/// does not parse writes nothing (it is dropped as malformed).
pub fn writes_lease(data: &[u8], scratch: &mut Scratch) -> bool {
    packet::parse(data, &mut scratch.joined).is_ok_and(|req| {
        matches!(
            req.kind,
            Kind::Request | Kind::Decline | Kind::Release | Kind::Bootp
        )
    })
}

/// Handles one datagram: validates it, applies it to the engine shard that owns the client,
/// writes any reply into `out` and pushes lease events into `events`.
pub fn handle(
    ctx: &Context,
    engine: &Engine,
    got: Received<'_>,
    scratch: &mut Scratch,
    out: &mut Vec<u8>,
    events: &mut Vec<LeaseEvent>,
) -> Outcome {
    let (data, arrival, now) = (got.data, got.arrival, got.now);
    let req = match packet::parse(data, &mut scratch.joined) {
        Ok(r) => r,
        Err(m) => return Outcome::NoReply(NoReply::Malformed(m)),
    };
    let client = || crate::scope::of_v4(req.client_id, req.chaddr);
    let Some(scope) = crate::scope::admit(ctx.balanced(), got.scopes, client) else {
        return Outcome::NoReply(NoReply::HaPartnerScope);
    };
    let mut h = Handling {
        ctx,
        engine,
        req: &req,
        arrival: &arrival,
        now,
        out,
        events,
        shard: owner_shard(data, engine.shards()),
        scope,
    };
    h.run().into()
}

struct Handling<'h, 'r> {
    ctx: &'h Context,
    engine: &'h Engine,
    req: &'h Request<'r>,
    arrival: &'h Arrival,
    now: Time,
    out: &'h mut Vec<u8>,
    events: &'h mut Vec<LeaseEvent>,
    shard: usize,
    /// Which candidate lists the client's are (its load-balancing scope, see
    /// [`crate::scope::admit`]).
    scope: usize,
}

/// What a positive reply carries.
struct Grant<'c> {
    kind: ReplyKind,
    subnet: usize,
    yiaddr: Ipv4Addr,
    lease_time: Option<u32>,
    res: Option<Found<'c>>,
    needs_durable: bool,
}

impl<'h> Handling<'h, '_> {
    fn run(&mut self) -> Result<Reply, NoReply> {
        let subnet = self.ctx.select_subnet(self.req, self.arrival);
        match self.req.kind {
            Kind::Discover => self.discover(subnet.ok_or(NoReply::NoSubnet)?),
            Kind::Request => self.request(subnet),
            Kind::Inform => self.inform(subnet),
            Kind::Release => self.release(),
            Kind::Decline => self.decline(),
            Kind::Bootp => self.bootp(subnet.ok_or(NoReply::NoSubnet)?),
        }
    }

    fn link_of(&self, subnet: usize) -> usize {
        self.ctx.cfg.subnets[subnet].link
    }

    /// The pools the client may be given an address of on `link`: its scope's.
    fn pools(&self, link: usize) -> &'h [PoolId] {
        let ctx: &'h Context = self.ctx;
        &ctx.link_pools[self.scope][link]
    }

    fn discover(&mut self, subnet: usize) -> Result<Reply, NoReply> {
        let link = self.link_of(subnet);
        let res = self.ctx.reservation(subnet, self.req);
        let client = client_key(self.req);
        let offer = OfferRequest {
            client: &client,
            pools: self.pools(link),
            reserved: res.and_then(|f| f.address),
            requested: self.req.requested_ip,
            info: lease_info(self.req, res),
        };
        let addr = self
            .engine
            .offer(self.shard, &offer, self.now)
            .map_err(|_| NoReply::PoolExhausted)?;
        let subnet = self.ctx.on_link(link, addr).unwrap_or(subnet);
        let lease = self
            .ctx
            .lease_time(&self.ctx.cfg.subnets[subnet], self.req.lease_time);
        Ok(self.reply(Grant {
            kind: ReplyKind::Offer,
            subnet,
            yiaddr: addr,
            lease_time: Some(lease),
            res,
            needs_durable: false,
        }))
    }

    /// RFC 2131 §4.3.2: SELECTING (server id present), INIT-REBOOT (requested address, no
    /// ciaddr), RENEWING/REBINDING (ciaddr).
    fn request(&mut self, subnet: Option<usize>) -> Result<Reply, NoReply> {
        let req = self.req;
        let authoritative = self.ctx.cfg.authoritative;
        let ours = self.ctx.server_id(req, self.arrival);
        let selecting = req.server_id.is_some();
        if let Some(id) = req.server_id
            && id != ours
        {
            // The client chose another server; our offer lapses at the end of its hold.
            return Err(NoReply::NotForUs);
        }
        let addr = match (selecting, req.requested_ip, req.ciaddr.is_unspecified()) {
            (true, Some(ip), _) => ip,
            (true, None, _) => return Err(NoReply::Incomplete),
            (false, Some(ip), true) => ip,
            (false, _, false) => req.ciaddr,
            (false, None, true) => return Err(NoReply::Incomplete),
        };
        let Some(subnet) = subnet else {
            return if authoritative {
                self.nak(ours)
            } else {
                Err(NoReply::NoSubnet)
            };
        };
        let link = self.link_of(subnet);
        let Some(addr_subnet) = self.ctx.on_link(link, addr) else {
            // The client is on the wrong network (it moved): tell it to start over.
            return if authoritative {
                self.nak(ours)
            } else {
                Err(NoReply::NotAuthoritative)
            };
        };
        let client = client_key(req);
        let recorded = self.engine.lookup(self.shard, &client).map(|l| l.address);
        let res = self.ctx.reservation(subnet, req);
        let reserved = res.and_then(|f| f.address);
        if !selecting {
            // RFC 2131 §4.3.2: INIT-REBOOT, RENEWING and REBINDING confirm a lease the client
            // believes it holds. With no record of the client (the journal is durable, so its
            // lease came from elsewhere) the server MUST remain silent; a record or a
            // reservation for another address is a wrong "requested IP address": NAK.
            if recorded.is_none() && reserved.is_none() {
                return Err(NoReply::UnknownClient);
            }
            if recorded != Some(addr) && reserved != Some(addr) {
                return self.nak(ours);
            }
        }
        if let Some(r) = reserved.filter(|&r| r != addr)
            && !self.reservation_held_by_other(r, &client)
        {
            // A reserved client must use its reservation, unless another client still holds
            // it (docs/RELOAD.md, "Reservations in use"): then an address of the pools.
            return self.nak(ours);
        }
        let reserved = reserved.filter(|&r| r == addr);
        let s = &self.ctx.cfg.subnets[addr_subnet];
        let lease_time = self.ctx.lease_time(s, req.lease_time);
        let bind = BindRequest {
            client: &client,
            address: addr,
            pools: self.pools(link),
            reserved: reserved.is_some(),
            grant: lessor_engine::v4::Grant {
                lease_time,
                info: lease_info(req, res),
            },
        };
        match self.engine.bind(self.shard, &bind, self.now, self.events) {
            Ok(_) => Ok(self.reply(Grant {
                kind: ReplyKind::Ack,
                subnet: addr_subnet,
                yiaddr: addr,
                lease_time: Some(lease_time),
                res,
                needs_durable: true,
            })),
            Err(e) => {
                let why = match e {
                    BindError::Taken => "address_taken",
                    BindError::NotInPool => "not_in_pool",
                };
                self.nak(ours).map(|r| Reply {
                    refused: Some(why),
                    ..r
                })
            }
        }
    }

    /// RFC 2131 §4.3.5: configuration only, no lease.
    fn inform(&mut self, subnet: Option<usize>) -> Result<Reply, NoReply> {
        if self.req.ciaddr.is_unspecified() {
            // RFC 2131 §4.4.3: the client puts its address in ciaddr; without one there is
            // no address to answer (and nothing says the client has one at all).
            return Err(NoReply::InformWithoutAddress);
        }
        let subnet = subnet
            .or_else(|| self.ctx.subnet_containing(self.req.ciaddr))
            .ok_or(NoReply::NoSubnet)?;
        let res = self.ctx.reservation(subnet, self.req);
        Ok(self.reply(Grant {
            kind: ReplyKind::Ack,
            subnet,
            yiaddr: Ipv4Addr::UNSPECIFIED,
            lease_time: None,
            res,
            needs_durable: false,
        }))
    }

    /// RFC 2131 §4.3.4: the address the client gives back is in ciaddr.
    fn release(&mut self) -> Result<Reply, NoReply> {
        self.check_server_id()?;
        let client = client_key(self.req);
        if self
            .engine
            .release(self.shard, &client, self.req.ciaddr, self.now, self.events)
        {
            Err(NoReply::Released)
        } else {
            Err(NoReply::NoSuchLease)
        }
    }

    /// RFC 2131 §4.3.3: the address in use elsewhere is in option 50.
    fn decline(&mut self) -> Result<Reply, NoReply> {
        self.check_server_id()?;
        let addr = self.req.requested_ip.ok_or(NoReply::Incomplete)?;
        let client = client_key(self.req);
        if self
            .engine
            .decline(self.shard, &client, addr, self.now, self.events)
        {
            tracing::warn!(%addr, client = %HwAddr::new(self.req.htype, self.req.chaddr).unwrap_or_default(),
                "client declined the address: it is in use on the network; quarantined");
            Err(NoReply::Declined)
        } else {
            Err(NoReply::NoSuchLease)
        }
    }

    fn check_server_id(&self) -> Result<(), NoReply> {
        match self.req.server_id {
            Some(id) if id != self.ctx.server_id(self.req, self.arrival) => Err(NoReply::NotForUs),
            _ => Ok(()),
        }
    }

    /// BOOTP (RFC 951, RFC 1497): a reserved client gets its reservation, others a pool
    /// address when `bootp_dynamic` is on (RFC 1534 §2); either way for good.
    fn bootp(&mut self, subnet: usize) -> Result<Reply, NoReply> {
        let link = self.link_of(subnet);
        let req = self.req;
        let res = self.ctx.reservation(subnet, req);
        if res.is_some_and(|f| !f.res.bootp) {
            return Err(NoReply::BootpUnknown);
        }
        let client = client_key(req);
        let pools = self.pools(link);
        let (address, reserved) = match res.and_then(|f| f.address) {
            Some(a) => (a, true),
            None if self.ctx.cfg.bootp_dynamic => {
                // RFC 1534 §2: the server allocates from its pool and never reclaims it.
                let offer = OfferRequest {
                    client: &client,
                    pools,
                    reserved: None,
                    requested: None,
                    info: lease_info(req, res),
                };
                let a = self
                    .engine
                    .offer(self.shard, &offer, self.now)
                    .map_err(|_| NoReply::PoolExhausted)?;
                (a, false)
            }
            None => return Err(NoReply::BootpUnknown),
        };
        let bind = BindRequest {
            client: &client,
            address,
            pools,
            reserved,
            grant: lessor_engine::v4::Grant {
                lease_time: u32::MAX,
                info: lease_info(req, res),
            },
        };
        self.engine
            .bind(self.shard, &bind, self.now, self.events)
            .map_err(|_| {
                if reserved {
                    NoReply::BootpUnknown
                } else {
                    NoReply::PoolExhausted
                }
            })?;
        Ok(self.reply(Grant {
            kind: ReplyKind::Bootp,
            subnet: self.ctx.on_link(link, address).unwrap_or(subnet),
            yiaddr: address,
            lease_time: None,
            res,
            needs_durable: true,
        }))
    }

    /// Whether another client's binding or quarantine holds `reserved`, the reservation of
    /// the client whose key is `client`. Looks in every shard: only asked when a reserved
    /// client requests another address.
    fn reservation_held_by_other(&self, reserved: Ipv4Addr, client: &ClientKey) -> bool {
        self.engine.get(reserved).is_some_and(|l| {
            matches!(l.state, LeaseState::Bound | LeaseState::Declined)
                && l.expires > self.now
                && l.client != *client
        })
    }

    fn nak(&mut self, server_id: Ipv4Addr) -> Result<Reply, NoReply> {
        let req = self.req;
        let mut enc = Encoder::new(
            self.out,
            req,
            ReplyKind::Nak,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
            Ipv4Addr::UNSPECIFIED,
        );
        if !req.giaddr.is_unspecified() {
            // RFC 2131 §4.3.2: the relay must broadcast a NAK to the client, which may have no
            // correct address and may not answer ARP.
            enc.set_broadcast();
        }
        enc.put_ip(54, server_id);
        if let Some(id) = req.client_id {
            enc.put(61, id);
        }
        if let Some(ip) = req.subnet_selection {
            // RFC 3011 §3: an identical copy to any client that sends it.
            enc.put_ip(118, ip);
        }
        enc.finish(req);
        Ok(Reply {
            kind: ReplyKind::Nak,
            dst: self
                .ctx
                .route(req, self.arrival, ReplyKind::Nak, Ipv4Addr::UNSPECIFIED),
            src: self.arrival.local,
            needs_durable: false,
            refused: None,
        })
    }

    fn reply(&mut self, g: Grant<'_>) -> Reply {
        let req = self.req;
        let ctx = self.ctx;
        let server_id = ctx.server_id(req, self.arrival);
        // RFC 2131 Table 3: ciaddr is echoed in an ACK (for INFORM and renewals), 0 otherwise.
        let ciaddr = if g.kind == ReplyKind::Ack {
            req.ciaddr
        } else {
            Ipv4Addr::UNSPECIFIED
        };
        let (scope_options, scope_boot) = ctx.pool_options(g.subnet, g.yiaddr);
        // A subnet's reservation holds its effective options; a global one only its own,
        // which go over the scope's.
        let (top, options) = match g.res {
            Some(f) if f.global => (Some(&f.res.options), scope_options),
            Some(f) => (None, &f.res.options),
            None => (None, scope_options),
        };
        // RFC 2131 §2: siaddr, sname and file, most specific level first.
        let own = g.res.map(|f| &f.res.boot);
        let pick = |field: fn(&BootFields) -> Option<&str>| {
            own.and_then(field).or_else(|| field(scope_boot))
        };
        let siaddr = own
            .and_then(|b| b.next_server)
            .or(scope_boot.next_server)
            .unwrap_or(Ipv4Addr::UNSPECIFIED);
        let mut enc = Encoder::new(self.out, req, g.kind, ciaddr, g.yiaddr, siaddr);
        enc.set_boot_names(
            pick(|b| b.server_hostname.as_deref()),
            pick(|b| b.boot_file_name.as_deref()),
        );
        if g.kind != ReplyKind::Bootp {
            enc.put_ip(54, server_id);
        }
        if let Some(lease) = g.lease_time {
            let (t1, t2) = ctx.timers(lease);
            enc.put_u32(51, lease);
            enc.put_u32(58, t1);
            enc.put_u32(59, t2);
        }
        let hostname = g.res.and_then(|f| f.res.hostname.as_deref());
        put_requested(&mut enc, top, options, req.parameter_list, hostname);
        if let Some(id) = req.client_id {
            // RFC 6842: echo the client identifier.
            enc.put(61, id);
        }
        if let Some(ip) = req.subnet_selection {
            // RFC 3011 §3: an identical copy to any client that sends it, asked for or not;
            // a client that sent it discards a reply without it.
            enc.put_ip(118, ip);
        }
        if let Some(fqdn) = req.fqdn.filter(|_| g.kind != ReplyKind::Bootp) {
            put_fqdn(&mut enc, fqdn);
        }
        if enc.truncated > 0 {
            tracing::debug!(
                dropped = enc.truncated,
                "options left out: over the client's maximum message size"
            );
        }
        enc.finish(req);
        Reply {
            kind: g.kind,
            dst: ctx.route(req, self.arrival, g.kind, g.yiaddr),
            src: self.arrival.local,
            needs_durable: g.needs_durable,
            refused: None,
        }
    }
}

/// What the engine records about the client: its hardware address and a host name (the
/// reservation's, else the one the client sent).
fn lease_info<'x>(req: &Request<'x>, res: Option<Found<'x>>) -> LeaseInfo<'x> {
    LeaseInfo {
        hw: HwAddr::new(req.htype, req.chaddr).unwrap_or_default(),
        hostname: res
            .and_then(|f| f.res.hostname.as_deref())
            .or_else(|| req.hostname_str()),
    }
}

/// Answers a client FQDN option (RFC 4702 §4): lessor performs no DNS updates, so the reply
/// sets N (the server does none), sets O when the client had asked the server to update its A
/// record (S), keeps the client's encoding (E) and name, and sets both RCODEs to 255.
fn put_fqdn(enc: &mut Encoder<'_>, fqdn: &[u8]) {
    let (flags, name) = (fqdn[0], &fqdn[3..]);
    let out = (flags & 0x04) | 0x08 | if flags & 0x01 != 0 { 0x02 } else { 0 };
    let mut v = [0u8; 255];
    let n = name.len().min(252);
    v[..3].copy_from_slice(&[out, 255, 255]);
    v[3..3 + n].copy_from_slice(&name[..n]);
    enc.put(81, &v[..3 + n]);
}

/// Writes the configured options the client asked for in option 55, in its order (RFC 2131
/// §4.3.1), or all of them when it sent no list. `top` (a global reservation's own options)
/// goes over `options` per code.
fn put_requested(
    enc: &mut Encoder<'_>,
    top: Option<&OptionSet>,
    options: &OptionSet,
    prl: Option<&[u8]>,
    hostname: Option<&str>,
) {
    let get = |code: u8| top.and_then(|t| t.get(code)).or_else(|| options.get(code));
    match prl {
        Some(list) => {
            let mut sent = [false; 256];
            for &code in list {
                if std::mem::replace(&mut sent[usize::from(code)], true) {
                    continue;
                }
                if let Some(v) = get(code) {
                    enc.put(code, v);
                } else if code == 12
                    && let Some(h) = hostname
                {
                    enc.put(12, h.as_bytes());
                }
            }
        }
        None => {
            let shown = top.into_iter().flat_map(|t| t.iter());
            let under = options
                .iter()
                .filter(|&(code, _)| !top.is_some_and(|t| t.contains(code)));
            for (code, v) in shown.chain(under) {
                enc.put(code, v);
            }
            if let (Some(h), None) = (hostname, get(12)) {
                enc.put(12, h.as_bytes());
            }
        }
    }
}
