//! DHCPv6 protocol decisions (RFC 8415 §16, §18.3): request in, reply decision and lease events
//! out.

use std::net::{Ipv6Addr, SocketAddrV6};

use lessor_engine::Time;
use lessor_engine::v6::{Engine, LeaseEvent};

use super::context::{Context, Static, Tables};
use super::packet::{self, Kind, Malformed, Request, opt};
use super::reply::{Encoder, ReplyKind, Status};

pub use lessor_net::wire::v6::{CLIENT_PORT, SERVER_PORT};

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

/// A datagram as [`handle`] takes it.
pub type Received<'a> = crate::proto::Received<'a, Arrival>;

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
    /// handling this request are durable (durable ACK).
    pub needs_durable: bool,
    /// No configured subnet matches the client's link: the reply only says so, per IA
    /// (counted as [`NoReply::NoSubnet`] too).
    pub no_subnet: bool,
    /// IAs answered NoAddrsAvail or NoPrefixAvail because no pool had a free one.
    pub exhausted: u16,
    /// Addresses and prefixes the reply binds or extends: `[IA_NA, IA_PD]`, each
    /// `[bound, extended]`.
    pub granted: [[u16; 2]; 2],
}

crate::proto::no_reply_reasons! {
    /// A message that needs a Client Identifier has none (RFC 8415 §16).
    NoClientId => "v6_no_client_id",
    /// A REQUEST, RENEW, RELEASE or DECLINE without a Server Identifier (RFC 8415 §16).
    NoServerId => "v6_no_server_id",
    /// The Server Identifier is another server's.
    NotForUs => "v6_not_for_us",
    /// A SOLICIT, CONFIRM or REBIND carrying our own Server Identifier, which they must not
    /// carry (RFC 8415 §16.2, §16.5, §16.7).
    ServerIdForbidden => "v6_server_id_forbidden",
    /// An INFORMATION-REQUEST carrying IA options (RFC 8415 §16.12).
    IaInInformationRequest => "v6_ia_in_information_request",
    /// A SOLICIT, CONFIRM, REBIND or INFORMATION-REQUEST sent to a unicast address (RFC 8415
    /// §16).
    Unicast => "v6_unicast",
    /// No configured subnet matches the client's link (a CONFIRM or REBIND, which the server
    /// cannot judge without one; SOLICIT, REQUEST and RENEW are answered per IA and counted
    /// under the same label).
    NoSubnet => "v6_no_subnet",
    /// A CONFIRM listing no addresses (RFC 8415 §18.3.3: no reply).
    NothingToConfirm => "v6_nothing_to_confirm",
    /// The reply would not fit DHCPv6's 16-bit lengths.
    TooLarge => "v6_too_large",
    /// As DHCPv4's [`crate::v4::NoReply::HaPartnerScope`], the client hashed by its DUID.
    HaPartnerScope => "ha_partner_scope",
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
pub fn owner_shard(data: &[u8], engine: &Engine) -> Option<usize> {
    packet::client_duid(data).map(|d| engine.owner(d))
}

/// Handles one datagram: validates it, applies it to the engine shard that owns the client
/// ([`owner_shard`]; the caller runs on that shard's worker), writes any reply into `out` and
/// pushes lease events into `events`.
pub fn handle(
    ctx: &Context,
    engine: &Engine,
    got: Received<'_>,
    out: &mut Vec<u8>,
    events: &mut Vec<LeaseEvent>,
) -> Outcome {
    let (data, arrival, now) = (got.data, got.arrival, got.now);
    let req = match packet::parse(data) {
        Ok(r) => r,
        Err(m) => return Outcome::NoReply(NoReply::Malformed(m)),
    };
    let duid = req.client_id.unwrap_or_default();
    let client = || crate::scope::of_duid(duid);
    let Some(scope) = crate::scope::admit(ctx.balanced(), got.scopes, client) else {
        return Outcome::NoReply(NoReply::HaPartnerScope);
    };
    let mut h = Handling {
        ctx,
        t: &ctx.t,
        engine,
        req: &req,
        duid,
        arrival: &arrival,
        now,
        out,
        events,
        shard: engine.owner(duid),
        scope,
        bound: false,
        no_subnet: false,
        exhausted: 0,
        granted: [[0; 2]; 2],
    };
    h.run().into()
}

pub(super) struct Handling<'h, 'r> {
    pub(super) ctx: &'h Context,
    pub(super) t: &'h Tables,
    pub(super) engine: &'h Engine,
    pub(super) req: &'h Request<'r>,
    pub(super) duid: &'r [u8],
    pub(super) arrival: &'h Arrival,
    pub(super) now: Time,
    pub(super) out: &'h mut Vec<u8>,
    pub(super) events: &'h mut Vec<LeaseEvent>,
    pub(super) shard: usize,
    /// Which candidate lists the client's are (its load-balancing scope, see
    /// [`crate::scope::admit`]).
    pub(super) scope: usize,
    /// A binding was made or extended: the reply waits for the journal.
    pub(super) bound: bool,
    /// The reply says only that no subnet matches the client's link.
    pub(super) no_subnet: bool,
    /// IAs that got no address or prefix because their pools were exhausted.
    pub(super) exhausted: u16,
    /// Addresses and prefixes bound or extended so far, as [`Reply::granted`].
    pub(super) granted: [[u16; 2]; 2],
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

    /// RFC 8415 §18.3.6: configuration only.
    fn information(&mut self, subnet: Option<usize>) -> Result<Reply, NoReply> {
        let st = self.client_static(subnet);
        let mut enc = self.open(ReplyKind::Reply);
        self.options(&mut enc, subnet, st);
        self.finish(enc, ReplyKind::Reply)
    }

    /// RFC 8415 §18.4: a unicast message we did not invite: UseMulticast, nothing else.
    fn use_multicast(&mut self) -> Result<Reply, NoReply> {
        let mut enc = self.open(ReplyKind::Reply);
        enc.status(Status::UseMulticast);
        self.finish(enc, ReplyKind::Reply)
    }

    /// Opens a reply of `kind` in the output buffer, with the Server and Client Identifiers.
    pub(super) fn open(&mut self, kind: ReplyKind) -> Encoder {
        let mut enc = Encoder::new(std::mem::take(self.out), self.req, kind);
        enc.put(opt::SERVERID, &self.t.duid);
        if let Some(id) = self.req.client_id {
            enc.put(opt::CLIENTID, id);
        }
        enc
    }

    /// The client's static assignment, on `subnet`'s link when there is one.
    pub(super) fn client_static(&self, subnet: Option<usize>) -> Option<Static<'h>> {
        let ctx: &'h Context = self.ctx;
        ctx.static_for(subnet, self.req)
    }

    /// The configured options the client's ORO asks for (RFC 8415 §18.3: only those), from the
    /// reservation, else the subnet, else `v6.options`; and the Server Unicast option for
    /// direct clients when configured.
    pub(super) fn options(&self, enc: &mut Encoder, subnet: Option<usize>, st: Option<Static<'_>>) {
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

    pub(super) fn finish(&mut self, enc: Encoder, kind: ReplyKind) -> Result<Reply, NoReply> {
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
            exhausted: self.exhausted,
            granted: self.granted,
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
