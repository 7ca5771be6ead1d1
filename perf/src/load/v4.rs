//! `load`: lessor's own DHCPv4 load generator, a relay on loopback like perfdhcp but batched.
//!
//! Each worker thread owns one socket (its own local port), a share of the clients (client `n`
//! belongs to worker `n % workers`) and every piece of their state, so workers share nothing on
//! the packet path but the correctness map. A worker runs one loop: take whatever replies are
//! queued (`recvmmsg`), advance each client's exchange (an OFFER makes a REQUEST, an ACK ends
//! the DORA or starts a renewal or release), expire exchanges older than the timeout, start new
//! DORAs (on the clock in open loop, to keep N in flight in closed loop), and send everything
//! queued with one `sendmmsg`. When there is nothing to do it sleeps in `poll` until the next
//! due send, timeout or reply; only a send due on the clock less than poll's millisecond away
//! is spun, so in open loop above 1000/s per worker it keeps its core busy (give it a core of
//! its own). That loop, the start of the workers and the per-second progress are
//! [`crate::load`]'s, shared with `load6`; this module is the DHCPv4 exchange.
//!
//! Per-client state lives in the worker's [`Slots`](crate::load::Slots), indexed by the
//! client's number within its worker, and the xid carries that number (low 24 bits) and a
//! per-client sequence number (high 8 bits), so a reply finds its client without a lookup and a
//! late reply to an earlier exchange is told apart from the current one. Packets are templates patched in place; the
//! loop allocates nothing per packet.
//!
//! Correctness: every ACK's address is entered in a map address -> client shared by the
//! workers (one atomic slot per address of 10.0.0.0/8); an address ACKed to a second client
//! while the first still holds it (it neither released it nor was ACKed another address since)
//! is a violation, and the run fails.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};

use lessor_net::v4::{SendMeta, Socket};
use serde::Serialize;

use crate::load::{
    self, Answer, At, Correctness, Drops, Examples, Exchange, Load, MAX_CLIENTS, Names, Phase,
    ReportOf, RunArgs, SecondNames, Step, counters, drops,
};
use crate::wire::{self, RequestKind, Template};

load::mix! {
    /// DISCOVER, OFFER, REQUEST, ACK, and nothing else.
    Dora,
    /// Then a RENEWING REQUEST (ciaddr set, no server id) and its ACK.
    Renew,
    /// Then a RELEASE (no reply).
    Release,
}

/// `load` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct LoadArgs {
    /// The server's address.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    server: Ipv4Addr,
    /// The server's UDP port.
    #[arg(long, default_value_t = 6767)]
    port: u16,
    /// The local address: requests come from it and carry it as giaddr (the relay address).
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    local: Ipv4Addr,
    /// Local UDP port of worker 0; worker k uses LOCAL_PORT + k. The server must answer to
    /// the request's source port (lessor does on any port but 67: test mode).
    #[arg(long, default_value_t = 6768)]
    local_port: u16,
    /// What each client does after its DORA.
    #[arg(long, value_enum, default_value_t = Mix::Dora)]
    mix: Mix,
    /// Client `n` of the run has the MAC and client id of client `n + FIRST_CLIENT`: a run
    /// after one that filled the server (--stop-after) asks with new clients.
    #[arg(long, default_value_t = 0)]
    first_client: u32,
    /// HA load balancing: start only the clients of this scope (0 or 1), by RFC 3074's
    /// bucket of their client identifier, as lessor's `ha.mode: load-balancing` splits them.
    #[arg(long, value_parser = clap::value_parser!(u8).range(0..=1))]
    scope: Option<u8>,
    #[command(flatten)]
    run: RunArgs,
}

counters! { Counters {
    /// Datagrams received.
    received,
    /// DORAs started (DISCOVERs sent).
    discovers,
    /// OFFERs that answered the current DISCOVER.
    offers,
    /// DISCOVERs without an OFFER in time.
    do_drops,
    /// SELECTING REQUESTs sent.
    requests,
    /// ACKs that answered the current REQUEST (completed DORAs).
    acks,
    /// ... of them while new DORAs were still starting (the rate's numerator).
    acks_in_window,
    /// NAKs to a SELECTING REQUEST.
    naks,
    /// REQUESTs without an ACK or NAK in time.
    ra_drops,
    /// ACKs for another address than the one requested.
    ack_other_address,
    /// RENEWING REQUESTs sent.
    renews,
    /// Their ACKs.
    renew_acks,
    /// Their NAKs.
    renew_naks,
    /// Renewals without an answer in time.
    renew_drops,
    /// RELEASEs sent.
    releases,
    /// Replies to an exchange that had already timed out or ended.
    late,
    /// Replies of a type the exchange did not expect (an ACK to a DISCOVER, ...).
    unexpected,
    /// Datagrams that are not a well-formed DHCP reply for one of our clients.
    garbage,
    /// Replies naming a client of another worker or beyond --clients.
    foreign,
    /// Datagrams the kernel refused to send.
    send_errors,
    /// Clients passed over because they were still busy when their turn came again.
    busy_skips,
    /// ACKs entered in the correctness map.
    acks_checked,
    /// ACKs for an address outside 10.0.0.0/8, which the map does not cover.
    acks_unchecked,
    /// ACKs of an address held by another client.
    violations,
} driver {
    opened: discovers,
    renewals: renews,
    releases: releases,
    in_window: acks_in_window,
    drops: { Opening: do_drops, Requesting: ra_drops, Renewing: renew_drops, },
} }

load::hists! { 15;
    discover_offer "DISCOVER-OFFER" for Opening,
    request_ack "REQUEST-ACK" for Requesting,
    dora "DORA",
    renew "RENEW" for Renewing,
}

/// How `load` names itself and its figures.
const NAMES: Names = Names {
    command: "load",
    violation: "ACKs gave an address already held by another client",
    achieved: "achieved_dora_per_s",
    unit: "DORA",
    second: SecondNames {
        keys: "discovers requests doras do_drops ra_drops naks dora_p50_us dora_p99_us",
        labels: ["dora", "DO", "RA", "naks", "dora "],
    },
};

/// An address ACKed to a second client.
#[derive(Clone, Debug, Serialize)]
struct Violation {
    address: Ipv4Addr,
    first_client: u32,
    second_client: u32,
}

/// The correctness map: which client each address of 10.0.0.0/8 was ACKed to (client + 1; 0
/// for none), shared by the workers.
#[derive(Debug)]
struct Owners {
    slots: Box<[AtomicU32]>,
    examples: Examples<Violation>,
}

const CHECKED_NET: u32 = 0x0a00_0000;

impl Owners {
    fn new() -> Self {
        Owners {
            slots: (0..1u32 << 24).map(|_| AtomicU32::new(0)).collect(),
            examples: Examples::new(),
        }
    }

    fn slot(&self, addr: u32) -> Option<&AtomicU32> {
        (addr & 0xff00_0000 == CHECKED_NET).then(|| &self.slots[(addr & 0x00ff_ffff) as usize])
    }

    /// `addr` was ACKed to `client`: counts it as checked, unchecked or a violation.
    fn ack(&self, addr: u32, client: u32, c: &mut Counters) {
        let Some(slot) = self.slot(addr) else {
            c.acks_unchecked += 1;
            return;
        };
        c.acks_checked += 1;
        // Relaxed is enough: a legitimate hand-over of an address to another client is ordered
        // by the RELEASE datagram itself (the slot is cleared before the RELEASE is sent, and
        // the server reassigns only after receiving it; the system calls in between order the
        // memory accesses).
        match slot.compare_exchange(0, client + 1, Ordering::Relaxed, Ordering::Relaxed) {
            Ok(_) => {}
            Err(v) if v == client + 1 => {}
            Err(v) => {
                c.violations += 1;
                self.examples.note(|| Violation {
                    address: Ipv4Addr::from(addr),
                    first_client: v - 1,
                    second_client: client,
                });
            }
        }
    }

    /// `client` is about to release `addr`: another client may get it from now on.
    fn release(&self, addr: u32, client: u32) {
        if let Some(slot) = self.slot(addr) {
            let _ = slot.compare_exchange(client + 1, 0, Ordering::Relaxed, Ordering::Relaxed);
        }
    }
}

fn template_index(kind: RequestKind) -> usize {
    match kind {
        RequestKind::Discover => 0,
        RequestKind::Select => 1,
        RequestKind::Renew => 2,
        RequestKind::Release => 3,
    }
}

/// A client's DHCPv4 state.
#[derive(Clone, Copy, Debug, Default)]
struct State4 {
    /// The address offered, then ACKed.
    addr: u32,
    /// The server id it requests from.
    server: u32,
    /// The address last ACKed to the client and not released (0: none).
    bound: u32,
}

/// DHCPv4 replies come on a DHCPv4 socket.
impl load::Reply for wire::Reply {
    type Sock = Socket;

    fn xid(&self) -> u32 {
        self.xid
    }
}

/// The DHCPv4 part of one worker's exchange.
struct Dora {
    /// A template per request kind.
    templates: [Template; 4],
    owners: Arc<Owners>,
    /// --first-client: added to a client's number to make its identity.
    first: u32,
}

impl At<'_, Dora> {
    /// Queue the client's request of `kind`.
    fn queue(
        &mut self,
        kind: RequestKind,
        ciaddr: u32,
        requested: u32,
        server_id: u32,
    ) -> anyhow::Result<()> {
        let client = self.number();
        let xid = self.xid();
        let f = &mut self.x.f;
        let bytes = f.templates[template_index(kind)].fill(
            xid,
            client + f.first,
            ciaddr,
            requested,
            server_id,
        );
        self.x.link.queue(bytes)
    }
}

impl Exchange for Dora {
    type State = State4;
    type Counters = Counters;
    type Reply = wire::Reply;

    /// The xid's low 24 bits name the client; a chaddr not that client's is garbage.
    fn parse(&self, datagram: &[u8]) -> Option<(u32, wire::Reply)> {
        let r = wire::parse_reply(datagram)?;
        let client = r.xid & (MAX_CLIENTS - 1);
        (r.mac == wire::mac(client + self.first)).then_some((client, r))
    }

    /// The sequence number, then the client's number.
    fn xid(number: u32, seq: u8) -> u32 {
        (u32::from(seq) << 24) | number
    }

    /// Every ACK counts for correctness, late ones included: the server did bind. A client
    /// moved to another address no longer holds its old one (a server may then give that to
    /// someone else).
    fn heard(at: &mut At<'_, Dora>, r: &wire::Reply) -> bool {
        if r.kind == wire::ACK && r.yiaddr != 0 {
            let client = at.number();
            let old = std::mem::replace(&mut at.state().bound, r.yiaddr);
            if old != 0 && old != r.yiaddr {
                at.x.f.owners.release(old, client);
            }
            at.x.f.owners.ack(r.yiaddr, client, &mut at.x.c);
        }
        true
    }

    /// An OFFER makes the REQUEST, an ACK ends the DORA.
    fn on_reply(at: &mut At<'_, Dora>, r: wire::Reply) -> anyhow::Result<Answer> {
        Ok(match (at.phase(), r.kind) {
            (Phase::Opening, wire::OFFER) => {
                at.x.c.offers += 1;
                let server_id = if r.server_id == 0 {
                    // No option 54: name the server we sent to, as a client would.
                    u32::from(*at.x.link.to.dst.ip())
                } else {
                    r.server_id
                };
                let st = at.state();
                st.addr = r.yiaddr;
                st.server = server_id;
                at.take_offer();
                at.queue(RequestKind::Select, 0, r.yiaddr, server_id)?;
                Answer::Timed
            }
            (Phase::Requesting, wire::ACK) => {
                at.x.c.acks += 1;
                if r.yiaddr != at.state().addr {
                    at.x.c.ack_other_address += 1;
                    at.state().addr = r.yiaddr;
                }
                let dora = at.completed()?;
                at.x.h.dora.saturating_record(dora);
                Answer::Timed
            }
            (Phase::Requesting, wire::NAK) => {
                at.x.c.naks += 1;
                at.finish();
                Answer::Untimed
            }
            (Phase::Renewing, wire::ACK) => {
                at.x.c.renew_acks += 1;
                at.finish();
                Answer::Timed
            }
            (Phase::Renewing, wire::NAK) => {
                at.x.c.renew_naks += 1;
                at.finish();
                Answer::Untimed
            }
            _ => Answer::Unexpected,
        })
    }

    /// A DISCOVER; a RENEWING REQUEST for the address ACKed; a RELEASE of it.
    fn request(at: &mut At<'_, Dora>, step: Step) -> anyhow::Result<()> {
        let st = *at.state();
        match step {
            Step::Open => at.queue(RequestKind::Discover, 0, 0, 0),
            Step::Renew => at.queue(RequestKind::Renew, st.addr, 0, 0),
            Step::Release => {
                // Cleared before the RELEASE leaves: from then on the server may give it away.
                at.x.f.owners.release(st.addr, at.number());
                at.state().bound = 0;
                at.queue(RequestKind::Release, st.addr, 0, st.server)
            }
        }
    }
}

/// The settings of a `load` run, as reported.
#[derive(Debug, Serialize)]
struct Head {
    mix: Mix,
}

/// The DORA counts of a run, as reported.
#[derive(Debug, Serialize)]
struct Body {
    discovers: u64,
    offers: u64,
    discover_offer_drops: Drops,
    requests: u64,
    acks: u64,
    naks: u64,
    request_ack_drops: Drops,
    renews: u64,
    renew_acks: u64,
    renew_naks: u64,
    renew_drops: Drops,
    releases: u64,
}

/// ACKs the correctness map checked, and those it does not cover.
#[derive(Debug, Serialize)]
struct Checked {
    acks_checked: u64,
    acks_outside_10_0_0_0_8: u64,
}

/// A `load` run's generator: makes each worker's [`Dora`] and reports the run.
struct Generator<'a> {
    args: &'a LoadArgs,
    owners: Arc<Owners>,
}

impl Load for Generator<'_> {
    type Ex = Dora;
    type Parts = (Head, Body, Checked, Violation);

    fn exchange(&self, _port: u16) -> Dora {
        let local = self.args.local;
        Dora {
            templates: [
                RequestKind::Discover,
                RequestKind::Select,
                RequestKind::Renew,
                RequestKind::Release,
            ]
            .map(|kind| Template::new(kind, local)),
            owners: self.owners.clone(),
            first: self.args.first_client,
        }
    }

    fn second(d: &Counters) -> [u64; 6] {
        [
            d.discovers,
            d.requests,
            d.acks,
            d.do_drops,
            d.ra_drops,
            d.naks,
        ]
    }

    fn completed(c: &Counters) -> u64 {
        c.acks
    }

    fn head(&self) -> Head {
        Head { mix: self.args.mix }
    }

    fn body(&self, c: &Counters) -> Body {
        Body {
            discovers: c.discovers,
            offers: c.offers,
            discover_offer_drops: drops(c.do_drops, c.discovers),
            requests: c.requests,
            acks: c.acks,
            naks: c.naks,
            request_ack_drops: drops(c.ra_drops, c.requests),
            renews: c.renews,
            renew_acks: c.renew_acks,
            renew_naks: c.renew_naks,
            renew_drops: drops(c.renew_drops, c.renews),
            releases: c.releases,
        }
    }

    fn correctness(&self, c: &Counters) -> Correctness<Checked, Violation> {
        let checked = Checked {
            acks_checked: c.acks_checked,
            acks_outside_10_0_0_0_8: c.acks_unchecked,
        };
        self.owners.examples.report(checked, c.violations)
    }

    fn summary(r: &ReportOf<Self>) -> String {
        use std::fmt::Write;
        let (b, c) = (&r.body, &r.counters);
        let mut s = String::new();
        let _ = writeln!(
            s,
            "load -> {}: {}, mix {:?}, {} worker(s), {:.1}s",
            r.server,
            r.run.mode(),
            r.head.mix,
            r.run.workers,
            r.run.duration_s
        );
        let _ = writeln!(
            s,
            "  offered {:.0} DORA/s, achieved {:.0} DORA/s",
            r.offered_per_s, r.achieved.per_s
        );
        let _ = writeln!(
            s,
            "  DISCOVER-OFFER drops {} ({:.3}%), REQUEST-ACK drops {} ({:.3}%), NAKs {}",
            b.discover_offer_drops.count,
            b.discover_offer_drops.percent,
            b.request_ack_drops.count,
            b.request_ack_drops.percent,
            b.naks
        );
        if b.renews > 0 || b.releases > 0 {
            let _ = writeln!(
                s,
                "  renewals {} (ACK {}, NAK {}, drops {} {:.3}%), releases {}",
                b.renews,
                b.renew_acks,
                b.renew_naks,
                b.renew_drops.count,
                b.renew_drops.percent,
                b.releases
            );
        }
        r.latency_us.write(&mut s);
        let (lag_p99_9, lag_max) = load::lag_tail(r.schedule_lag_us.as_ref());
        let _ = writeln!(
            s,
            "  late {}, unexpected {}, garbage {}, foreign {}, send errors {}, busy skips {}, \
             schedule lag p99.9 {lag_p99_9:.0}us max {lag_max:.0}us",
            c.late, c.unexpected, c.garbage, c.foreign, c.send_errors, c.busy_skips,
        );
        load::cpu_line(&mut s, r.packets_per_s, &r.cpu);
        let _ = writeln!(
            s,
            "  correctness: {} ACKs checked, {} outside 10.0.0.0/8, {} violations",
            r.correctness.checked.acks_checked,
            r.correctness.checked.acks_outside_10_0_0_0_8,
            r.correctness.violations
        );
        s
    }
}

/// Whether client `n` (its client identifier: type 1 and its MAC) is of load-balancing scope
/// `scope`.
fn in_scope(n: u32, scope: u8) -> bool {
    let mac = wire::mac(n);
    let mut id = [1u8; 7];
    id[1..].copy_from_slice(&mac);
    lessor_server::scope::of_v4(Some(&id), &mac) == usize::from(scope)
}

/// Runs the load and prints the JSON report on stdout (progress and the summary on stderr).
/// Fails, after reporting, if any address was ACKed to two clients.
pub(crate) fn run(a: &LoadArgs) -> anyhow::Result<()> {
    let keep = a.scope.map(|arg| load::Keep {
        test: in_scope,
        arg,
        first: a.first_client,
    });
    let plan = load::Plan {
        keep,
        ..a.run.plan(a.mix.fixed())?
    };
    anyhow::ensure!(
        u64::from(a.first_client) + u64::from(a.run.clients) <= u64::from(MAX_CLIENTS),
        "--first-client + --clients must not exceed 2^24 (16777216)"
    );
    let load = Generator {
        args: a,
        owners: Arc::new(Owners::new()),
    };
    let to = SendMeta {
        dst: SocketAddrV4::new(a.server, a.port),
        ifindex: 0,
        src: None,
    };
    load::run(&load, &NAMES, &a.run, plan, a.local, a.local_port, to)
}

#[cfg(test)]
mod scope_tests {
    use super::in_scope;

    #[test]
    fn each_client_is_in_one_scope_and_the_scopes_are_about_even() {
        let zero = (0..10_000).filter(|&n| in_scope(n, 0)).count();
        assert!((0..10_000).all(|n| in_scope(n, 0) != in_scope(n, 1)));
        assert!(
            (4_500..=5_500).contains(&zero),
            "{zero} of 10,000 in scope 0"
        );
    }
}
