//! `load6`: lessor's DHCPv6 load generator, one relay agent on loopback (like `perfdhcp -6 -A 1`,
//! batched), built as `load` is (see [`crate::load::v4`]).
//!
//! Every client message leaves in a RELAY-FORW (hop-count 0, the configured link-address, the
//! client's link-local address as peer-address, optional Interface-ID, Remote-ID and
//! Subscriber-ID, and the Relay Source Port option naming the worker's port); the server answers
//! with a RELAY-REPL to the source address and port. An exchange is SOLICIT, ADVERTISE,
//! REQUEST, REPLY (or SOLICIT with Rapid Commit, REPLY), optionally followed by a RENEW or a
//! RELEASE and its REPLY. Each worker owns one socket (its own port), the clients `n` with
//! `n % workers == k` and all their state, in its [`Slots`](crate::load::Slots) indexed by
//! `n / workers`. A reply finds its client by the peer-address the server echoes (it encodes
//! `n`), and the 24-bit transaction id carries a per-client sequence number in its high byte,
//! so a late reply to an earlier exchange is told from the current one. The server's DUID
//! (needed in REQUEST, RENEW and RELEASE) is kept once per worker in a small table, each client
//! holding an index into it. Requests are written into one reused buffer; the loop allocates
//! nothing per packet. The worker loop, the start of the workers and the per-second progress are
//! [`crate::load`]'s; this module is the DHCPv6 exchange.
//!
//! Correctness: every address and every delegated prefix a REPLY grants (late replies
//! included) is entered in a map resource -> client shared by the workers: a hash map per kind,
//! sharded under mutexes, holding only the resources currently held (24-byte entries, so a
//! million leases take tens of megabytes). A resource granted to a second client while the
//! first holds it (it has neither released it, nor been granted another one in that IA, nor
//! been told NoBinding since) is a violation, and the run fails.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::{Arc, Mutex};

use anyhow::Context;
use clap::ValueEnum;
use lessor_net::v6::{SendMeta, Socket};
use serde::Serialize;

use crate::load::{
    self, Answer, At, Correctness, Drops, Ex, Examples, Exchange, Load, Names, Phase, ReportOf,
    RunArgs, SecondNames, Step, counters, drops,
};
use crate::wire6::{self, Builder, IdPattern, Kind, MAX_DUID, Relay, Request};

/// Distinct server DUIDs a worker remembers (one per server answering; more is an error).
const MAX_SERVERS: usize = 16;

load::mix! {
    /// SOLICIT, ADVERTISE, REQUEST, REPLY, and nothing else.
    SolicitRequest,
    /// Then a RENEW (the server's DUID and the leases held) and its REPLY.
    Renew,
    /// Then a RELEASE and its REPLY.
    Release,
}

/// Which IAs every client asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum IaMode {
    /// One IA_NA (IAID 1): an address.
    Na,
    /// One IA_PD (IAID 1): a delegated prefix.
    Pd,
    /// Both.
    Both,
}

impl IaMode {
    fn na(self) -> bool {
        self != IaMode::Pd
    }
    fn pd(self) -> bool {
        self != IaMode::Na
    }
}

/// `load6` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// The server's address.
    #[arg(long, default_value_t = Ipv6Addr::LOCALHOST)]
    server: Ipv6Addr,
    /// The server's UDP port (not 547: the server answers the source port only in test mode,
    /// or, like Kea, the port the Relay Source Port option names).
    #[arg(long, default_value_t = 6547)]
    port: u16,
    /// The relay's local address (requests come from it; replies return to it).
    #[arg(long, default_value_t = Ipv6Addr::LOCALHOST)]
    local: Ipv6Addr,
    /// Local UDP port of worker 0; worker k uses LOCAL_PORT + k.
    #[arg(long, default_value_t = 6548)]
    local_port: u16,
    /// The relay's link-address in every RELAY-FORW: the server selects the subnet by it.
    #[arg(long, default_value = "fd00:231::1")]
    link_address: Ipv6Addr,
    /// Interface-ID option (18) in every RELAY-FORW, which the server must echo; `{n}` is
    /// replaced by the client number (e.g. `port{n}`).
    #[arg(long)]
    interface_id: Option<String>,
    /// Remote-ID option (37): ENTERPRISE:ID, `{n}` in ID replaced by the client number (e.g.
    /// `3561:CUST{n}`, as dhcpkit-style static assignments name customer lines).
    #[arg(long)]
    remote_id: Option<String>,
    /// Subscriber-ID option (38); `{n}` replaced by the client number.
    #[arg(long)]
    subscriber_id: Option<String>,
    /// Leave out the Relay Source Port option (135, RFC 8357) that tells the server to answer
    /// on the worker's port rather than 547.
    #[arg(long)]
    no_source_port: bool,
    /// Which IAs each client asks for.
    #[arg(long, value_enum, default_value_t = IaMode::Na)]
    ia: IaMode,
    /// SOLICITs carry Rapid Commit (14): a server that allows it answers with a REPLY at once.
    #[arg(long)]
    rapid_commit: bool,
    /// What each client does after its exchange.
    #[arg(long, value_enum, default_value_t = Mix::SolicitRequest)]
    mix: Mix,
    #[command(flatten)]
    run: RunArgs,
}

counters! { Counters {
    /// Datagrams received.
    received,
    /// Exchanges started (SOLICITs sent).
    solicits,
    /// ADVERTISEs that answered the current SOLICIT.
    advertises,
    /// ... of them without every requested IA's lease (their status codes are counted below).
    advertise_refused,
    /// SOLICITs without an ADVERTISE (or rapid REPLY) in time.
    sa_drops,
    /// REQUESTs sent.
    requests,
    /// REPLYs that answered the current REQUEST with every requested lease.
    replies,
    /// REPLYs that answered a Rapid Commit SOLICIT with every requested lease.
    rapid_replies,
    /// Exchanges completed (the two above) while new ones were still starting.
    completed_in_window,
    /// REPLYs to a REQUEST or rapid SOLICIT without every requested lease.
    refused,
    /// REQUESTs without a REPLY in time.
    rr_drops,
    /// REPLYs granting another address or prefix than the one advertised.
    reply_other_resource,
    /// RENEWs sent.
    renews,
    /// Their REPLYs extending every lease.
    renew_replies,
    /// Their REPLYs refusing one (NoBinding, lifetimes 0, ...).
    renew_refused,
    /// RENEWs without a REPLY in time.
    renew_drops,
    /// RELEASEs sent.
    releases,
    /// Their REPLYs.
    release_replies,
    /// RELEASEs without a REPLY in time.
    release_drops,
    /// Status codes in refusals: NoAddrsAvail.
    no_addrs_avail,
    /// NoPrefixAvail.
    no_prefix_avail,
    /// NoBinding.
    no_binding,
    /// NotOnLink.
    not_on_link,
    /// Any other status, or a requested IA missing from the reply.
    other_status,
    /// Replies to an exchange that had already timed out or ended.
    late,
    /// Replies of a type the exchange did not expect.
    unexpected,
    /// Datagrams that are not a well-formed RELAY-REPL around a server message for one of our
    /// clients (lengths that lie included).
    garbage,
    /// Replies whose Client Identifier is not the DUID of the client the peer-address names.
    wrong_duid,
    /// Replies without the Interface-ID that was sent (RFC 8415 §21.18: it must be echoed).
    interface_id_missing,
    /// ADVERTISEs or rapid REPLYs without a Server Identifier, or from more servers than a
    /// worker remembers.
    bad_server_id,
    /// Replies naming a client of another worker or beyond --clients.
    foreign,
    /// Datagrams the kernel refused to send.
    send_errors,
    /// Clients passed over because they were still busy when their turn came again.
    busy_skips,
    /// Leases (addresses and prefixes) entered in the correctness map.
    leases_checked,
    /// Leases granted while another client held them.
    violations,
} driver {
    opened: solicits,
    renewals: renews,
    releases: releases,
    in_window: completed_in_window,
    drops: {
        Opening: sa_drops,
        Requesting: rr_drops,
        Renewing: renew_drops,
        Releasing: release_drops,
    },
} }

load::hists! { 17;
    /// SOLICIT to ADVERTISE (or to the REPLY of a rapid commit).
    solicit_advertise "SOLICIT-ADVERTISE" for Opening,
    request_reply "REQUEST-REPLY" for Requesting,
    /// SOLICIT sent to the REPLY that completes the exchange.
    exchange "exchange",
    renew "RENEW" for Renewing,
    release "RELEASE" for Releasing,
}

/// How `load6` names itself and its figures.
const NAMES: Names = Names {
    command: "load6",
    violation: "leases granted while another client held them",
    achieved: "achieved_per_s",
    unit: "exchange",
    second: SecondNames {
        keys: "solicits requests completed sa_drops rr_drops refused exchange_p50_us \
               exchange_p99_us",
        labels: ["done", "SA", "RR", "refused", ""],
    },
};

/// A lease granted to a second client.
#[derive(Clone, Debug, Serialize)]
struct Violation {
    /// "address" or "prefix".
    kind: &'static str,
    resource: Ipv6Addr,
    len: u8,
    first_client: u32,
    second_client: u32,
}

/// A resource as a map key: two `u64`s rather than a `u128`, whose 16-byte alignment would
/// make each entry 32 bytes instead of 24.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Key(u64, u64);

impl Key {
    fn of(r: u128) -> Self {
        Key((r >> 64) as u64, r as u64)
    }
}

impl std::hash::Hash for Key {
    fn hash<H: Hasher>(&self, h: &mut H) {
        h.write_u64(self.0.rotate_left(29) ^ self.1);
    }
}

/// A cheap, well-mixed hash of a [`Key`] (folded to one `u64`, then murmur3's finaliser).
#[derive(Clone, Copy, Debug, Default)]
struct Mix64(u64);

fn fmix64(mut h: u64) -> u64 {
    h ^= h >> 33;
    h = h.wrapping_mul(0xff51_afd7_ed55_8ccd);
    h ^= h >> 33;
    h = h.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
    h ^ (h >> 33)
}

impl Hasher for Mix64 {
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3);
        }
    }
    fn write_u64(&mut self, v: u64) {
        self.0 ^= v;
    }
    fn finish(&self) -> u64 {
        fmix64(self.0)
    }
}

type ResourceMap = HashMap<Key, u32, BuildHasherDefault<Mix64>>;

/// Shards per kind: a few times the workers there can be, so two rarely wait on one lock.
const OWNER_SHARDS: usize = 64;

/// Which client holds each resource of one kind (client + 1), for the resources held now.
#[derive(Debug)]
struct Holders {
    shards: Box<[Mutex<ResourceMap>]>,
}

impl Holders {
    /// Pre-sized for `expected` resources (at most 256k: beyond that each shard grows by
    /// doubling, a copy of 1/64th of the map under its lock, rather than every page of a huge
    /// table being touched by a sparse fill).
    fn new(expected: usize) -> Self {
        let per = expected.min(1 << 18).div_ceil(OWNER_SHARDS);
        Holders {
            shards: (0..OWNER_SHARDS)
                .map(|_| {
                    Mutex::new(ResourceMap::with_capacity_and_hasher(
                        per,
                        Default::default(),
                    ))
                })
                .collect(),
        }
    }

    fn shard(&self, k: Key) -> std::sync::MutexGuard<'_, ResourceMap> {
        // Another mix than the map's own hash, so each shard still sees well-spread hashes.
        let i = fmix64(k.1 ^ k.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)) as usize % OWNER_SHARDS;
        self.shards[i].lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// The correctness map, shared by the workers: addresses and prefixes apart.
#[derive(Debug)]
struct Owners {
    na: Holders,
    pd: Holders,
    examples: Examples<Violation>,
}

impl Owners {
    fn holders(&self, pd: bool) -> &Holders {
        if pd { &self.pd } else { &self.na }
    }

    /// `r` (length `len`) was granted to `client`.
    fn grant(&self, pd: bool, r: u128, len: u8, client: u32, c: &mut Counters) {
        c.leases_checked += 1;
        let k = Key::of(r);
        let prev = *self.holders(pd).shard(k).entry(k).or_insert(client + 1);
        if prev != client + 1 {
            c.violations += 1;
            self.examples.note(|| Violation {
                kind: if pd { "prefix" } else { "address" },
                resource: Ipv6Addr::from(r),
                len,
                first_client: prev - 1,
                second_client: client,
            });
        }
    }

    /// `client` gives `r` up (about to release it, or was granted another one).
    fn release(&self, pd: bool, r: u128, client: u32) {
        let k = Key::of(r);
        let mut m = self.holders(pd).shard(k);
        if m.get(&k) == Some(&(client + 1)) {
            m.remove(&k);
        }
    }
}

/// A client's DHCPv6 state.
#[derive(Clone, Copy, Debug, Default)]
struct State6 {
    /// Index into the worker's server table of the server that advertised.
    server: u8,
    /// The address and prefix advertised, then granted (0: none).
    na: u128,
    pd: u128,
    pd_len: u8,
    /// What the client holds for the correctness map (0: nothing).
    na_held: u128,
    pd_held: u128,
}

impl State6 {
    /// Takes the address and prefix `r` advertises or grants as the client's.
    fn take(&mut self, r: &wire6::Reply) {
        self.na = r.na.resource;
        self.pd = r.pd.resource;
        self.pd_len = r.pd.len;
    }
}

/// DHCPv6 replies come on a DHCPv6 socket.
impl load::Reply for wire6::Reply {
    type Sock = Socket;

    fn xid(&self) -> u32 {
        self.xid
    }
}

/// The DHCPv6 part of one worker's exchange.
struct Sarr {
    /// Which IAs every client asks for; whether SOLICITs carry Rapid Commit.
    ia: IaMode,
    rapid_commit: bool,
    /// Writes each request into one reused buffer.
    builder: Builder,
    /// Server DUIDs seen, `servers[i].0[..servers[i].1]`.
    servers: Vec<([u8; MAX_DUID], u8)>,
    owners: Arc<Owners>,
}

impl At<'_, Sarr> {
    /// Queue the client's request of `kind` (the IA contents from its state).
    fn send(&mut self, kind: Kind) -> anyhow::Result<()> {
        let xid = self.xid();
        let client = self.number();
        let now = self.now;
        let (x, c) = self.split();
        let f = &mut x.f;
        let ia = f.ia;
        let (na, pd) = match kind {
            Kind::Solicit => (0, (0, 0)),
            _ => (c.st.na, (c.st.pd, c.st.pd_len)),
        };
        let server = usize::from(c.st.server);
        let req = Request {
            kind,
            xid,
            client,
            elapsed_cs: ((now.saturating_sub(c.t_start)) / 10_000_000).min(0xffff) as u16,
            rapid_commit: f.rapid_commit,
            na: ia.na().then_some(na),
            pd: ia.pd().then_some(pd),
            server_id: (kind != Kind::Solicit).then(|| {
                let (id, len) = &f.servers[server];
                &id[..usize::from(*len)]
            }),
        };
        x.link.queue(f.builder.build(&req))
    }

    /// The exchange completed with `r`'s leases: record them, then renew, release or rest.
    fn granted(&mut self, r: &wire6::Reply) -> anyhow::Result<()> {
        let ia = self.x.f.ia;
        let st = self.state();
        let other = (ia.na() && r.na.resource != st.na)
            || (ia.pd() && (r.pd.resource, r.pd.len) != (st.pd, st.pd_len));
        st.take(r);
        if other {
            self.x.c.reply_other_resource += 1;
        }
        let took = self.completed()?;
        self.x.h.exchange.saturating_record(took);
        Ok(())
    }
}

impl Ex<Sarr> {
    fn count_status(&mut self, code: u16) {
        match code {
            wire6::STATUS_NO_ADDRS_AVAIL => self.c.no_addrs_avail += 1,
            wire6::STATUS_NO_PREFIX_AVAIL => self.c.no_prefix_avail += 1,
            wire6::STATUS_NO_BINDING => self.c.no_binding += 1,
            wire6::STATUS_NOT_ON_LINK => self.c.not_on_link += 1,
            _ => self.c.other_status += 1,
        }
    }

    /// Does `r` grant every IA the run asks for? (A refusal's status code is counted: the
    /// IA's, else the message's, else "other" for an IA missing from the reply.)
    fn grant(&mut self, r: &wire6::Reply) -> bool {
        let ia = self.f.ia;
        for (wanted, got) in [(ia.na(), &r.na), (ia.pd(), &r.pd)] {
            if wanted && !got.granted() {
                let code = if !got.present {
                    u16::MAX
                } else if got.status != wire6::STATUS_SUCCESS {
                    got.status
                } else if r.status != wire6::STATUS_SUCCESS {
                    r.status
                } else {
                    u16::MAX
                };
                self.count_status(code);
                return false;
            }
        }
        true
    }

    /// Remember the server's DUID from an ADVERTISE or rapid REPLY; `false` if it has none or
    /// the table is full.
    fn note_server(&mut self, st: &mut State6, r: &wire6::Reply) -> bool {
        let id = r.server_id();
        if id.is_empty() {
            return false;
        }
        let known = self
            .f
            .servers
            .iter()
            .position(|(s, len)| &s[..usize::from(*len)] == id);
        let i = match known {
            Some(i) => i,
            None if self.f.servers.len() < MAX_SERVERS => {
                let mut s = [0u8; MAX_DUID];
                s[..id.len()].copy_from_slice(id);
                self.f.servers.push((s, r.server_id_len));
                self.f.servers.len() - 1
            }
            None => return false,
        };
        st.server = i as u8;
        true
    }

    /// Enter the leases of a REPLY in the correctness map (before anything else: the server
    /// did grant them, even to an exchange that timed out), and take out a lease the REPLY
    /// says the client no longer has.
    fn check_leases(&mut self, st: &mut State6, client: u32, r: &wire6::Reply) {
        for (pd, ia) in [(false, &r.na), (true, &r.pd)] {
            let held = if pd { &mut st.pd_held } else { &mut st.na_held };
            if ia.granted() {
                let old = std::mem::replace(held, ia.resource);
                if old != 0 && old != ia.resource {
                    self.f.owners.release(pd, old, client);
                }
                self.f
                    .owners
                    .grant(pd, ia.resource, ia.len, client, &mut self.c);
            } else if *held != 0
                && ia.present
                && (ia.status == wire6::STATUS_NO_BINDING
                    || (ia.resource == *held && ia.valid == 0))
            {
                // The server says the client no longer has it (RFC 8415 §18.3.4: NoBinding,
                // or the lease given back with lifetimes 0): it may go to another client.
                self.f.owners.release(pd, *held, client);
                *held = 0;
            }
        }
    }
}

impl Exchange for Sarr {
    type State = State6;
    type Counters = Counters;
    type Reply = wire6::Reply;

    /// The peer-address the server echoes names the client.
    fn parse(&self, datagram: &[u8]) -> Option<(u32, wire6::Reply)> {
        wire6::parse_reply(datagram, self.builder.relay()).map(|r| (r.client, r))
    }

    /// The sequence number, then the low 16 bits of the client's number.
    fn xid(number: u32, seq: u8) -> u32 {
        (u32::from(seq) << 16) | (number & 0xffff)
    }

    /// A reply for another DUID is dropped; the leases of every REPLY count for correctness,
    /// late ones included.
    fn heard(at: &mut At<'_, Sarr>, r: &wire6::Reply) -> bool {
        if !r.duid_ok {
            at.x.c.wrong_duid += 1;
            return false;
        }
        if !r.interface_id_ok {
            at.x.c.interface_id_missing += 1;
        }
        if r.kind == wire6::REPLY {
            let (x, c) = at.split();
            x.check_leases(&mut c.st, r.client, r);
        }
        true
    }

    /// An ADVERTISE makes the REQUEST, a REPLY ends the exchange (or the renewal or release
    /// after it).
    fn on_reply(at: &mut At<'_, Sarr>, r: wire6::Reply) -> anyhow::Result<Answer> {
        match (at.phase(), r.kind) {
            (Phase::Opening, wire6::ADVERTISE) => {
                at.x.c.advertises += 1;
                if !at.x.grant(&r) {
                    at.x.c.advertise_refused += 1;
                    at.finish();
                    return Ok(Answer::Timed);
                }
                let (x, c) = at.split();
                if !x.note_server(&mut c.st, &r) {
                    x.c.bad_server_id += 1;
                    at.finish();
                    return Ok(Answer::Timed);
                }
                c.st.take(&r);
                at.take_offer();
                at.send(Kind::Request)?;
            }
            (Phase::Opening, wire6::REPLY) if at.x.f.rapid_commit => {
                let (x, c) = at.split();
                match (x.grant(&r), x.note_server(&mut c.st, &r)) {
                    (true, true) => {
                        x.c.rapid_replies += 1;
                        // Nothing was advertised: the granted leases are what was asked for.
                        c.st.take(&r);
                        at.granted(&r)?;
                    }
                    (true, false) => {
                        x.c.bad_server_id += 1;
                        at.finish();
                    }
                    (false, _) => {
                        x.c.refused += 1;
                        at.finish();
                    }
                }
            }
            (Phase::Requesting, wire6::REPLY) => {
                if at.x.grant(&r) {
                    at.x.c.replies += 1;
                    at.granted(&r)?;
                } else {
                    at.x.c.refused += 1;
                    at.finish();
                }
            }
            (Phase::Renewing, wire6::REPLY) => {
                if at.x.grant(&r) {
                    at.x.c.renew_replies += 1;
                } else {
                    at.x.c.renew_refused += 1;
                }
                at.finish();
            }
            (Phase::Releasing, wire6::REPLY) => {
                at.x.c.release_replies += 1;
                at.finish();
            }
            _ => return Ok(Answer::Unexpected),
        }
        // Every answer is timed, refusals included.
        Ok(Answer::Timed)
    }

    /// A SOLICIT; a RENEW naming the leases granted; a RELEASE of them.
    fn request(at: &mut At<'_, Sarr>, step: Step) -> anyhow::Result<()> {
        let kind = match step {
            Step::Open => Kind::Solicit,
            Step::Renew => Kind::Renew,
            Step::Release => {
                // Cleared before the RELEASE leaves: from then on the server may give them away.
                let client = at.number();
                let (x, c) = at.split();
                for (pd, held) in [(false, &mut c.st.na_held), (true, &mut c.st.pd_held)] {
                    if *held != 0 {
                        x.f.owners.release(pd, *held, client);
                        *held = 0;
                    }
                }
                Kind::Release
            }
        };
        at.send(kind)
    }
}

/// The settings of a `load6` run, as reported.
#[derive(Debug, Serialize)]
struct Head {
    mix: Mix,
    ia: IaMode,
    rapid_commit: bool,
    relay: RelayReport,
}

/// The relay's settings, as reported.
#[derive(Debug, Serialize)]
struct RelayReport {
    link_address: Ipv6Addr,
    interface_id: Option<String>,
    remote_id: Option<String>,
    subscriber_id: Option<String>,
    source_port_option: bool,
}

/// SOLICIT-to-REPLY counts, as reported.
#[derive(Debug, Serialize)]
struct Body {
    solicits: u64,
    advertises: u64,
    solicit_advertise_drops: Drops,
    requests: u64,
    replies: u64,
    rapid_replies: u64,
    refused: u64,
    request_reply_drops: Drops,
    renews: u64,
    renew_replies: u64,
    renew_refused: u64,
    renew_drops: Drops,
    releases: u64,
    release_replies: u64,
    release_drops: Drops,
}

/// Leases (addresses and prefixes) entered in the correctness map.
#[derive(Debug, Serialize)]
struct Checked {
    leases_checked: u64,
}

/// A `load6` run's generator: parses the relay's ids once, makes each worker's [`Sarr`] and
/// reports the run.
struct Generator<'a> {
    args: &'a LoadArgs,
    interface_id: Option<IdPattern>,
    remote_id: Option<(u32, IdPattern)>,
    subscriber_id: Option<IdPattern>,
    owners: Arc<Owners>,
}

impl Load for Generator<'_> {
    type Ex = Sarr;
    type Parts = (Head, Body, Checked, Violation);

    fn exchange(&self, port: u16) -> Sarr {
        let a = self.args;
        let relay = Relay {
            link_address: a.link_address,
            interface_id: self.interface_id.clone(),
            remote_id: self.remote_id.clone(),
            subscriber_id: self.subscriber_id.clone(),
            source_port: (!a.no_source_port).then_some(port),
        };
        Sarr {
            ia: a.ia,
            rapid_commit: a.rapid_commit,
            builder: Builder::new(relay),
            servers: Vec::with_capacity(MAX_SERVERS),
            owners: self.owners.clone(),
        }
    }

    fn second(d: &Counters) -> [u64; 6] {
        let refused = d.refused + d.advertise_refused;
        let done = d.replies + d.rapid_replies;
        [
            d.solicits, d.requests, done, d.sa_drops, d.rr_drops, refused,
        ]
    }

    fn completed(c: &Counters) -> u64 {
        c.replies + c.rapid_replies
    }

    fn head(&self) -> Head {
        let a = self.args;
        Head {
            mix: a.mix,
            ia: a.ia,
            rapid_commit: a.rapid_commit,
            relay: RelayReport {
                link_address: a.link_address,
                interface_id: a.interface_id.clone(),
                remote_id: a.remote_id.clone(),
                subscriber_id: a.subscriber_id.clone(),
                source_port_option: !a.no_source_port,
            },
        }
    }

    fn body(&self, c: &Counters) -> Body {
        Body {
            solicits: c.solicits,
            advertises: c.advertises,
            solicit_advertise_drops: drops(c.sa_drops, c.solicits),
            requests: c.requests,
            replies: c.replies,
            rapid_replies: c.rapid_replies,
            refused: c.refused + c.advertise_refused,
            request_reply_drops: drops(c.rr_drops, c.requests),
            renews: c.renews,
            renew_replies: c.renew_replies,
            renew_refused: c.renew_refused,
            renew_drops: drops(c.renew_drops, c.renews),
            releases: c.releases,
            release_replies: c.release_replies,
            release_drops: drops(c.release_drops, c.releases),
        }
    }

    fn correctness(&self, c: &Counters) -> Correctness<Checked, Violation> {
        let checked = Checked {
            leases_checked: c.leases_checked,
        };
        self.owners.examples.report(checked, c.violations)
    }

    fn summary(r: &ReportOf<Self>) -> String {
        use std::fmt::Write;
        let (h, b, c) = (&r.head, &r.body, &r.counters);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "load6 -> {}: {}, mix {:?}, IA {:?}{}, {} worker(s), {:.1}s",
            r.server,
            r.run.mode(),
            h.mix,
            h.ia,
            if h.rapid_commit { ", rapid commit" } else { "" },
            r.run.workers,
            r.run.duration_s
        );
        let _ = writeln!(
            s,
            "  offered {:.0}/s, achieved {:.0} exchanges/s ({} rapid)",
            r.offered_per_s, r.achieved.per_s, b.rapid_replies
        );
        let _ = writeln!(
            s,
            "  SOLICIT-ADVERTISE drops {} ({:.3}%), REQUEST-REPLY drops {} ({:.3}%), refused {} \
             (NoAddrsAvail {}, NoPrefixAvail {}, other {})",
            b.solicit_advertise_drops.count,
            b.solicit_advertise_drops.percent,
            b.request_reply_drops.count,
            b.request_reply_drops.percent,
            b.refused,
            c.no_addrs_avail,
            c.no_prefix_avail,
            c.other_status + c.no_binding + c.not_on_link,
        );
        if b.renews > 0 || b.releases > 0 {
            let _ = writeln!(
                s,
                "  renewals {} (extended {}, refused {}, drops {} {:.3}%), releases {} (replies {}, \
                 drops {} {:.3}%)",
                b.renews,
                b.renew_replies,
                b.renew_refused,
                b.renew_drops.count,
                b.renew_drops.percent,
                b.releases,
                b.release_replies,
                b.release_drops.count,
                b.release_drops.percent
            );
        }
        r.latency_us.write(&mut s);
        let (lag_p99_9, lag_max) = load::lag_tail(r.schedule_lag_us.as_ref());
        let _ = writeln!(
            s,
            "  late {}, unexpected {}, garbage {}, wrong DUID {}, interface-id missing {}, foreign {}, \
             send errors {}, busy skips {}, schedule lag p99.9 {lag_p99_9:.0}us max {lag_max:.0}us",
            c.late,
            c.unexpected,
            c.garbage,
            c.wrong_duid,
            c.interface_id_missing,
            c.foreign,
            c.send_errors,
            c.busy_skips,
        );
        load::cpu_line(&mut s, r.packets_per_s, &r.cpu);
        let _ = writeln!(
            s,
            "  correctness: {} leases checked, {} violations",
            r.correctness.checked.leases_checked, r.correctness.violations
        );
        s
    }
}

/// `ENTERPRISE:ID` of --remote-id.
fn parse_remote_id(s: &str) -> anyhow::Result<(u32, IdPattern)> {
    let (e, id) = s
        .split_once(':')
        .context("--remote-id must be ENTERPRISE:ID, e.g. 3561:CUST{n}")?;
    let e: u32 = e
        .parse()
        .context("--remote-id: the enterprise number must be a decimal u32")?;
    let id = IdPattern::parse(id).map_err(|m| anyhow::anyhow!("--remote-id: {m}"))?;
    Ok((e, id))
}

/// Runs the load and prints the JSON report on stdout (progress and the summary on stderr).
/// Fails, after reporting, if any lease was granted to two clients.
pub(crate) fn run(a: &LoadArgs) -> anyhow::Result<()> {
    let plan = a.run.plan(a.mix.fixed())?;
    let interface_id = a
        .interface_id
        .as_deref()
        .map(IdPattern::parse)
        .transpose()
        .map_err(|m| anyhow::anyhow!("--interface-id: {m}"))?;
    let remote_id = a.remote_id.as_deref().map(parse_remote_id).transpose()?;
    let subscriber_id = a
        .subscriber_id
        .as_deref()
        .map(IdPattern::parse)
        .transpose()
        .map_err(|m| anyhow::anyhow!("--subscriber-id: {m}"))?;
    // Sized for what a run of the expected length holds at most (every client used once), up
    // to a bound (see `Holders::new`).
    let expected = match a.run.rate {
        0 => 2_000_000,
        r => (r as f64 * a.run.duration) as usize,
    }
    .min(a.run.clients as usize);
    let owners = Arc::new(Owners {
        na: Holders::new(if a.ia.na() { expected } else { 0 }),
        pd: Holders::new(if a.ia.pd() { expected } else { 0 }),
        examples: Examples::new(),
    });
    let load = Generator {
        args: a,
        interface_id,
        remote_id,
        subscriber_id,
        owners,
    };
    let to = SendMeta {
        dst: SocketAddrV6::new(a.server, a.port, 0, 0),
        src: None,
        ifindex: None,
    };
    load::run(&load, &NAMES, &a.run, plan, a.local, a.local_port, to)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn owners_track_holders() {
        let o = Owners {
            na: Holders::new(16),
            pd: Holders::new(16),
            examples: Examples::new(),
        };
        let mut c = Counters::default();
        let a = 0xfd00_0231_u128 << 96 | 0x1000;
        o.grant(false, a, 128, 1, &mut c);
        o.grant(false, a, 128, 1, &mut c); // a renewal
        o.grant(true, a, 56, 2, &mut c); // another kind: no conflict
        assert_eq!(c.violations, 0);
        o.grant(false, a, 128, 3, &mut c);
        assert_eq!(c.violations, 1);
        o.release(false, a, 3); // not the holder: nothing changes
        o.grant(false, a, 128, 4, &mut c);
        assert_eq!(c.violations, 2);
        o.release(false, a, 1);
        o.grant(false, a, 128, 4, &mut c);
        assert_eq!((c.violations, c.leases_checked), (2, 6));
        let ex = o.examples.all();
        assert_eq!((ex[0].first_client, ex[0].second_client), (1, 3));
    }

    #[test]
    fn remote_id_argument() {
        let (e, p) = parse_remote_id("3561:CUST{n}").expect("parses");
        assert_eq!(e, 3561);
        assert_eq!(p, IdPattern::parse("CUST{n}").expect("pattern"));
        assert!(parse_remote_id("CUST1").is_err());
        assert!(parse_remote_id("x:CUST1").is_err());
        assert!(parse_remote_id("3561:").is_err());
    }
}
