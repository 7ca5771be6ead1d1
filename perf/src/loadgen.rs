//! `load`: lessor's own DHCPv4 load generator, a relay on loopback like perfdhcp but batched.
//!
//! Each worker thread owns one socket (its own local port), a share of the clients (client `n`
//! belongs to worker `n % workers`) and every piece of their state, so workers share nothing on
//! the packet path but the correctness map. A worker runs one loop: take whatever replies are
//! queued (`recvmmsg`), advance each client's exchange (an OFFER makes a REQUEST, an ACK ends
//! the DORA or starts a renewal or release), expire exchanges older than the timeout, start new
//! DORAs (on the clock in open loop, to keep N in flight in closed loop), and send everything
//! queued with one `sendmmsg`. When there is nothing to do it sleeps in `poll` until the next
//! due send, timeout or reply; a wait shorter than poll's millisecond is spun, so in open loop
//! above 1000/s per worker it keeps its core busy (give it a core of its own).
//!
//! Per-client state lives in flat arrays indexed by the client's number within its worker, and
//! the xid carries that number (low 24 bits) and a per-client sequence number (high 8 bits), so
//! a reply finds its client without a lookup and a late reply to an earlier exchange is told
//! apart from the current one. The arrays are zero-allocated, so a run touches only the pages
//! of the clients it uses. Packets are templates patched in place; the loop allocates nothing
//! per packet.
//!
//! Correctness: every ACK's address is entered in a map address -> client shared by the
//! workers (one atomic slot per address of 10.0.0.0/8); an address ACKed to a second client
//! while the first still holds it (it neither released it nor was ACKed another address since)
//! is a violation, and the run fails.

use std::collections::{BTreeMap, VecDeque};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Barrier, Mutex, OnceLock};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::ValueEnum;
use hdrhistogram::Histogram;
use lessor_net::{RecvBatch, SendBatch, SendMeta, V4Socket, V4SocketConfig};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;

use crate::wire::{self, RequestKind, Template};

/// Clients are numbered in 24 bits: the xid's low 24 bits, chaddr bytes 3..6, and the
/// correctness map's slot in 10.0.0.0/8 all hold one.
pub(crate) const MAX_CLIENTS: u32 = 1 << 24;
/// Bytes of each receive buffer: a reply with every option lessor can add fits.
pub(crate) const RECV_BUF: usize = 1500;
/// Socket buffers asked for (forced past rmem_max/wmem_max when running as root): a burst of
/// replies must not overflow the generator's own receive queue.
pub(crate) const SOCKET_BUFFER: usize = 8 << 20;
/// Longest the loop sleeps in `poll` before it looks at the clock again.
pub(crate) const MAX_IDLE: Duration = Duration::from_millis(100);
/// Highest latency the histograms hold, in nanoseconds (larger values are clamped).
const HIST_MAX_NS: u64 = 60_000_000_000;

/// What each new client does after its DORA.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Mix {
    /// DISCOVER, OFFER, REQUEST, ACK, and nothing else.
    Dora,
    /// Then a RENEWING REQUEST (ciaddr set, no server id) and its ACK.
    Renew,
    /// Then a RELEASE (no reply).
    Release,
    /// Renew with --renew-pct, release with --release-pct, else nothing.
    Mixed,
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
    /// New DORAs per second, sent on the clock whatever the replies (open loop). 0: closed
    /// loop, as fast as the server answers with --inflight exchanges outstanding.
    #[arg(long, default_value_t = 0)]
    rate: u64,
    /// Closed loop: clients in the middle of an exchange at any time, over all workers.
    #[arg(long, default_value_t = 256)]
    inflight: usize,
    /// Seconds during which new DORAs start; then the run waits for the outstanding ones
    /// (at most 3 timeouts).
    #[arg(long, default_value_t = 10.0)]
    duration: f64,
    /// Distinct clients (MACs and client ids), taken in turn and reused after the last one;
    /// at most 2^24.
    #[arg(long, default_value_t = 10_000_000)]
    clients: u32,
    /// What each client does after its DORA.
    #[arg(long, value_enum, default_value_t = Mix::Dora)]
    mix: Mix,
    /// With --mix mixed: percent of clients that renew after their DORA.
    #[arg(long, default_value_t = 30)]
    renew_pct: u8,
    /// With --mix mixed: percent of clients that release after their DORA.
    #[arg(long, default_value_t = 10)]
    release_pct: u8,
    /// A two-way exchange (DISCOVER-OFFER, REQUEST-ACK) not answered within this is a drop;
    /// nothing is retransmitted.
    #[arg(long, default_value_t = 1000)]
    timeout_ms: u64,
    /// Worker threads, each with its own socket and port, pinned to the cores the process may
    /// use (taskset) in turn.
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Datagrams per recvmmsg/sendmmsg.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Leave the workers unpinned (when the server runs on the same cores with its own
    /// pinning, both would otherwise start on the first core).
    #[arg(long)]
    no_pin: bool,
    /// The server's process id: report its CPU time (utime + stime from /proc/PID/stat) per
    /// completed DORA.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Also write the JSON report to this file.
    #[arg(long)]
    json: Option<PathBuf>,
    /// No per-second progress lines on stderr.
    #[arg(long)]
    quiet: bool,
}

/// Declares the counters a worker keeps, with element-wise add and subtract.
macro_rules! counters {
    ($ty:ident { $($(#[doc = $doc:literal])* $name:ident,)* }) => {
        /// Event counts of one worker, or summed over workers.
        #[derive(Clone, Copy, Debug, Default, Serialize)]
        struct $ty {
            $($(#[doc = $doc])* $name: u64,)*
        }
        impl $ty {
            fn add(&mut self, o: &$ty) {
                $(self.$name += o.$name;)*
            }
            fn minus(&self, o: &$ty) -> $ty {
                $ty { $($name: self.$name.saturating_sub(o.$name),)* }
            }
        }
    };
}
pub(crate) use counters;

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
} }

/// Latency histograms in nanoseconds.
#[derive(Debug, Clone)]
struct Hists {
    discover_offer: Histogram<u64>,
    request_ack: Histogram<u64>,
    dora: Histogram<u64>,
    renew: Histogram<u64>,
    /// Open loop: how late each DISCOVER left against its due time (the generator's own lag).
    lag: Histogram<u64>,
}

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

impl Hists {
    fn new() -> Self {
        Hists {
            discover_offer: histogram(),
            request_ack: histogram(),
            dora: histogram(),
            renew: histogram(),
            lag: histogram(),
        }
    }

    fn add(&mut self, o: &Hists) {
        // Same bounds everywhere: adding cannot fail.
        let _ = self.discover_offer.add(&o.discover_offer);
        let _ = self.request_ack.add(&o.request_ack);
        let _ = self.dora.add(&o.dora);
        let _ = self.renew.add(&o.renew);
        let _ = self.lag.add(&o.lag);
    }
}

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
    examples: Mutex<Vec<Violation>>,
}

const CHECKED_NET: u32 = 0x0a00_0000;
const MAX_EXAMPLES: usize = 20;

impl Owners {
    fn new() -> Self {
        Owners {
            slots: (0..1u32 << 24).map(|_| AtomicU32::new(0)).collect(),
            examples: Mutex::new(Vec::new()),
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
                let mut ex = self.examples.lock().unwrap_or_else(|e| e.into_inner());
                if ex.len() < MAX_EXAMPLES {
                    ex.push(Violation {
                        address: Ipv4Addr::from(addr),
                        first_client: v - 1,
                        second_client: client,
                    });
                }
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

/// Per-client phase.
const IDLE: u8 = 0;
const DISCOVERING: u8 = 1;
const REQUESTING: u8 = 2;
const RENEWING: u8 = 3;

/// An exchange's deadline; stale once the client moved on (other seq or phase start).
#[derive(Clone, Copy, Debug)]
struct Deadline {
    at: u64,
    local: u32,
    seq: u8,
}

/// A worker's socket and its outgoing batch, with a template per request kind.
struct Link {
    sock: V4Socket,
    to: SendMeta,
    rx: RecvBatch,
    tx: SendBatch,
    templates: [Template; 4],
    send_errors: u64,
}

impl std::fmt::Debug for Link {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("to", &self.to)
            .finish_non_exhaustive()
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

fn flush_batch(sock: &V4Socket, tx: &mut SendBatch, errors: &mut u64) -> anyhow::Result<()> {
    let report = sock.send_batch(tx).context("sending a batch")?;
    *errors += report.failed as u64;
    Ok(())
}

impl Link {
    /// Queue one request; sends the batch first when it is full.
    fn queue(
        &mut self,
        kind: RequestKind,
        xid: u32,
        client: u32,
        ciaddr: u32,
        requested: u32,
        server_id: u32,
    ) -> anyhow::Result<()> {
        let bytes =
            self.templates[template_index(kind)].fill(xid, client, ciaddr, requested, server_id);
        if !self.tx.push(bytes, &self.to) {
            flush_batch(&self.sock, &mut self.tx, &mut self.send_errors)?;
            if !self.tx.push(bytes, &self.to) {
                bail!("a {}-byte request does not fit the send batch", bytes.len());
            }
        }
        Ok(())
    }

    fn flush(&mut self) -> anyhow::Result<()> {
        flush_batch(&self.sock, &mut self.tx, &mut self.send_errors)
    }
}

/// Room for a worker's deadlines, so the queue never grows (and copies) during the run: one
/// entry per request sent, each kept for the timeout. Closed loop assumes at most 250k DORAs
/// per second per worker.
fn deadline_capacity(plan: &Plan) -> usize {
    let per_worker = if plan.rate == 0 {
        250_000.0
    } else {
        plan.rate as f64 / f64::from(plan.workers)
    };
    let phases = if plan.renew_pct > 0 { 3.0 } else { 2.0 };
    let secs = plan.timeout_ns as f64 / 1e9;
    ((per_worker * phases * secs * 1.25) as usize + 4096).min(1 << 22)
}

/// The settings every worker shares.
#[derive(Clone, Copy, Debug)]
struct Plan {
    workers: u32,
    clients: u32,
    /// New DORAs per second over all workers; 0 for closed loop.
    rate: u64,
    end_ns: u64,
    timeout_ns: u64,
    renew_pct: u8,
    release_pct: u8,
}

/// One second's worth of a worker's progress.
#[derive(Debug)]
struct Tick {
    worker: usize,
    /// The worker's last report (its final, partial second).
    last: bool,
    second: u64,
    counters: Counters,
    active: u64,
    dora: Histogram<u64>,
    /// Largest schedule lag, nanoseconds.
    lag: u64,
}

/// Where the workers wait until all are ready, so that the clock starts for all at once
/// (after sockets, arrays and pinning are done).
#[derive(Debug)]
pub(crate) struct StartLine {
    pub(crate) ready: Barrier,
    pub(crate) go: Barrier,
    pub(crate) epoch: OnceLock<Instant>,
}

/// What a worker hands back at the end.
#[derive(Debug)]
struct Finished {
    counters: Counters,
    hists: Hists,
}

struct Worker {
    id: u32,
    plan: Plan,
    link: Link,
    /// Per client (index = client number / workers).
    state: Vec<u8>,
    seq: Vec<u8>,
    t_start: Vec<u64>,
    t_phase: Vec<u64>,
    addr: Vec<u32>,
    server: Vec<u32>,
    /// The address last ACKed to the client and not released (0: none).
    bound: Vec<u32>,
    n_local: u32,
    next_local: u32,
    deadlines: VecDeque<Deadline>,
    active: usize,
    max_active: usize,
    c: Counters,
    h: Hists,
    tick_dora: Histogram<u64>,
    /// Largest schedule lag this second.
    tick_lag: u64,
    owners: Arc<Owners>,
    rng: u64,
    epoch: Instant,
}

impl std::fmt::Debug for Worker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Worker")
            .field("id", &self.id)
            .field("active", &self.active)
            .finish_non_exhaustive()
    }
}

impl Worker {
    fn now(&self) -> u64 {
        self.epoch.elapsed().as_nanos() as u64
    }

    fn client(&self, local: u32) -> u32 {
        local * self.plan.workers + self.id
    }

    /// Advance the client's sequence number and return the xid of its next request.
    fn next_xid(&mut self, l: usize) -> u32 {
        self.seq[l] = self.seq[l].wrapping_add(1);
        (u32::from(self.seq[l]) << 24) | self.client(l as u32)
    }

    fn enter(&mut self, l: usize, phase: u8, now: u64) {
        self.state[l] = phase;
        self.t_phase[l] = now;
        self.deadlines.push_back(Deadline {
            at: now + self.plan.timeout_ns,
            local: l as u32,
            seq: self.seq[l],
        });
    }

    fn finish(&mut self, l: usize) {
        self.state[l] = IDLE;
        self.active -= 1;
    }

    /// Start a DORA for the next idle client; `false` if every client is busy.
    fn start(&mut self, now: u64) -> anyhow::Result<bool> {
        for _ in 0..self.n_local {
            let l = self.next_local as usize;
            self.next_local = if self.next_local + 1 == self.n_local {
                0
            } else {
                self.next_local + 1
            };
            if self.state[l] != IDLE {
                self.c.busy_skips += 1;
                continue;
            }
            let xid = self.next_xid(l);
            self.t_start[l] = now;
            self.enter(l, DISCOVERING, now);
            self.active += 1;
            self.c.discovers += 1;
            let client = self.client(l as u32);
            self.link
                .queue(RequestKind::Discover, xid, client, 0, 0, 0)?;
            return Ok(true);
        }
        Ok(false)
    }

    fn on_datagram(&mut self, r: Option<wire::Reply>, now: u64) -> anyhow::Result<()> {
        let Some(r) = r else {
            self.c.garbage += 1;
            return Ok(());
        };
        let client = r.xid & (MAX_CLIENTS - 1);
        let seq = (r.xid >> 24) as u8;
        if client >= self.plan.clients || client % self.plan.workers != self.id {
            self.c.foreign += 1;
            return Ok(());
        }
        if r.mac != wire::mac(client) {
            self.c.garbage += 1;
            return Ok(());
        }
        let l = (client / self.plan.workers) as usize;
        if r.kind == wire::ACK && r.yiaddr != 0 {
            // Every ACK counts for correctness, late ones included: the server did bind. A
            // client moved to another address no longer holds its old one (a server may then
            // give that to someone else).
            let old = std::mem::replace(&mut self.bound[l], r.yiaddr);
            if old != 0 && old != r.yiaddr {
                self.owners.release(old, client);
            }
            self.owners.ack(r.yiaddr, client, &mut self.c);
        }
        let phase = self.state[l];
        if phase == IDLE || self.seq[l] != seq {
            self.c.late += 1;
            return Ok(());
        }
        let took = now.saturating_sub(self.t_phase[l]);
        match (phase, r.kind) {
            (DISCOVERING, wire::OFFER) => {
                self.c.offers += 1;
                self.h.discover_offer.saturating_record(took);
                let server_id = if r.server_id == 0 {
                    // No option 54: name the server we sent to, as a client would.
                    u32::from(*self.link.to.dst.ip())
                } else {
                    r.server_id
                };
                self.addr[l] = r.yiaddr;
                self.server[l] = server_id;
                let xid = self.next_xid(l);
                self.enter(l, REQUESTING, now);
                self.c.requests += 1;
                self.link
                    .queue(RequestKind::Select, xid, client, 0, r.yiaddr, server_id)?;
            }
            (REQUESTING, wire::ACK) => {
                self.c.acks += 1;
                if now < self.plan.end_ns {
                    self.c.acks_in_window += 1;
                }
                if r.yiaddr != self.addr[l] {
                    self.c.ack_other_address += 1;
                    self.addr[l] = r.yiaddr;
                }
                self.h.request_ack.saturating_record(took);
                let dora = now.saturating_sub(self.t_start[l]);
                self.h.dora.saturating_record(dora);
                self.tick_dora.saturating_record(dora);
                self.after_dora(l, client, now)?;
            }
            (REQUESTING, wire::NAK) => {
                self.c.naks += 1;
                self.finish(l);
            }
            (RENEWING, wire::ACK) => {
                self.c.renew_acks += 1;
                self.h.renew.saturating_record(took);
                self.finish(l);
            }
            (RENEWING, wire::NAK) => {
                self.c.renew_naks += 1;
                self.finish(l);
            }
            _ => self.c.unexpected += 1,
        }
        Ok(())
    }

    /// The client is bound: renew, release or rest, as the mix says.
    fn after_dora(&mut self, l: usize, client: u32, now: u64) -> anyhow::Result<()> {
        let roll = if self.plan.renew_pct == 0 && self.plan.release_pct == 0 {
            100
        } else {
            // xorshift64: cheap and good enough to pick a branch.
            self.rng ^= self.rng << 13;
            self.rng ^= self.rng >> 7;
            self.rng ^= self.rng << 17;
            (self.rng % 100) as u8
        };
        let addr = self.addr[l];
        if roll < self.plan.renew_pct {
            let xid = self.next_xid(l);
            self.enter(l, RENEWING, now);
            self.c.renews += 1;
            self.link
                .queue(RequestKind::Renew, xid, client, addr, 0, 0)?;
        } else if roll < self.plan.renew_pct.saturating_add(self.plan.release_pct) {
            // Cleared before the RELEASE leaves: from then on the server may give it away.
            self.owners.release(addr, client);
            self.bound[l] = 0;
            let xid = self.next_xid(l);
            self.c.releases += 1;
            self.link
                .queue(RequestKind::Release, xid, client, addr, 0, self.server[l])?;
            self.finish(l);
        } else {
            self.finish(l);
        }
        Ok(())
    }

    /// Drop the exchanges whose deadline passed (all of them with `force`).
    fn expire(&mut self, now: u64, force: bool) {
        while let Some(&d) = self.deadlines.front() {
            if d.at > now && !force {
                break;
            }
            self.deadlines.pop_front();
            let l = d.local as usize;
            let current = self.seq[l] == d.seq && self.t_phase[l] + self.plan.timeout_ns == d.at;
            if !current {
                continue;
            }
            match self.state[l] {
                DISCOVERING => self.c.do_drops += 1,
                REQUESTING => self.c.ra_drops += 1,
                RENEWING => self.c.renew_drops += 1,
                _ => continue,
            }
            self.finish(l);
        }
    }

    /// Sleep in `poll` until a reply arrives or `wake` (nanoseconds since the epoch) comes;
    /// a wait under a millisecond is spun instead (poll counts in milliseconds).
    fn idle_until(&self, now: u64, wake: u64) {
        let wait = Duration::from_nanos(wake.saturating_sub(now)).min(MAX_IDLE);
        let ms = wait.as_millis();
        if ms == 0 {
            std::hint::spin_loop();
            return;
        }
        let mut fds = [PollFd::new(self.link.sock.as_fd(), PollFlags::POLLIN)];
        let _ = poll(
            &mut fds,
            PollTimeout::from(ms.min(u128::from(u16::MAX)) as u16),
        );
    }

    fn run(
        mut self,
        ticks: crossbeam_channel::Sender<Tick>,
        start: &StartLine,
    ) -> anyhow::Result<Finished> {
        start.ready.wait();
        start.go.wait();
        self.epoch = *start.epoch.get().context("no start time")?;
        let plan = self.plan;
        let end = plan.end_ns;
        let drain_end = end + 3 * plan.timeout_ns + 10_000_000;
        // Open loop: this worker's k-th DORA is due at offset + k * interval.
        let (interval, offset) = if plan.rate > 0 {
            let iv = 1e9 * f64::from(plan.workers) / plan.rate as f64;
            (iv, f64::from(self.id) * 1e9 / plan.rate as f64)
        } else {
            (0.0, 0.0)
        };
        let mut due_k: u64 = 0;
        let per_round = self.link.tx.capacity();
        let mut next_tick = 1_000_000_000u64;
        let mut second = 1;
        loop {
            let got = self
                .link
                .sock
                .recv_batch(&mut self.link.rx, false)
                .context("receiving replies")?;
            let now = self.now();
            self.c.received += got as u64;
            for i in 0..got {
                let reply = wire::parse_reply(self.link.rx.get(i).0);
                self.on_datagram(reply, now)?;
            }
            self.expire(now, false);

            let mut started = 0;
            if now < end {
                if plan.rate == 0 {
                    while self.active < self.max_active && started < per_round && self.start(now)? {
                        started += 1;
                    }
                } else {
                    loop {
                        let due = (offset + due_k as f64 * interval) as u64;
                        if due > now || started >= per_round {
                            break;
                        }
                        self.h.lag.saturating_record(now - due);
                        self.tick_lag = self.tick_lag.max(now - due);
                        due_k += 1;
                        // All clients busy (a tiny --clients): the slot is lost, not queued.
                        if self.start(now)? {
                            started += 1;
                        }
                    }
                }
            }
            let sent = !self.link.tx.is_empty();
            self.link.flush()?;
            self.c.send_errors = self.link.send_errors;

            if now >= next_tick {
                let tick = Tick {
                    worker: self.id as usize,
                    last: false,
                    second,
                    counters: self.c,
                    active: self.active as u64,
                    dora: self.tick_dora.clone(),
                    lag: self.tick_lag,
                };
                self.tick_dora.reset();
                self.tick_lag = 0;
                let _ = ticks.send(tick);
                second += 1;
                next_tick += 1_000_000_000;
            }
            if now >= end && (self.active == 0 || now >= drain_end) {
                break;
            }
            if got == 0 && !sent {
                let mut wake = next_tick.min(drain_end);
                if let Some(d) = self.deadlines.front() {
                    wake = wake.min(d.at);
                }
                if now < end {
                    wake = wake.min(end);
                    if plan.rate > 0 {
                        wake = wake.min((offset + due_k as f64 * interval) as u64);
                    } else if self.active < self.max_active {
                        wake = now;
                    }
                }
                self.idle_until(now, wake);
            }
        }
        self.expire(u64::MAX, true);
        // The last partial second, so the per-second series adds up to the totals.
        let _ = ticks.send(Tick {
            worker: self.id as usize,
            last: true,
            second,
            counters: self.c,
            active: 0,
            dora: self.tick_dora.clone(),
            lag: self.tick_lag,
        });
        Ok(Finished {
            counters: self.c,
            hists: self.h,
        })
    }
}

/// Latency percentiles of one histogram, in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p99_9: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

pub(crate) fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            count: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Drops {
    pub(crate) count: u64,
    pub(crate) percent: f64,
}

pub(crate) fn drops(count: u64, of: u64) -> Drops {
    Drops {
        count,
        percent: if of == 0 {
            0.0
        } else {
            100.0 * count as f64 / of as f64
        },
    }
}

#[derive(Debug, Serialize)]
struct Latencies {
    discover_offer: Percentiles,
    request_ack: Percentiles,
    dora: Percentiles,
    renew: Percentiles,
}

#[derive(Debug, Serialize)]
struct Correctness {
    acks_checked: u64,
    acks_outside_10_0_0_0_8: u64,
    violations: u64,
    examples: Vec<Violation>,
}

/// The reports of one second received so far.
#[derive(Debug)]
struct Pending {
    got: Vec<Option<Counters>>,
    active: u64,
    dora: Histogram<u64>,
    lag: u64,
}

/// One second of the run, over all workers.
#[derive(Debug, Serialize)]
struct Second {
    second: u64,
    discovers: u64,
    requests: u64,
    doras: u64,
    do_drops: u64,
    ra_drops: u64,
    naks: u64,
    active: u64,
    dora_p50_us: f64,
    dora_p99_us: f64,
    /// Open loop: the generator's largest schedule lag in this second.
    lag_max_us: f64,
}

#[derive(Debug, Serialize)]
struct LoadReport {
    server: SocketAddrV4,
    mode: &'static str,
    mix: Mix,
    renew_pct: u8,
    release_pct: u8,
    rate_requested: u64,
    inflight: Option<usize>,
    workers: usize,
    clients: u32,
    duration_s: f64,
    timeout_ms: u64,
    /// DORAs started per second of the sending window.
    offered_per_s: f64,
    /// DORAs completed (ACKed) within the sending window, per second of it.
    achieved_dora_per_s: f64,
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
    /// Latencies in microseconds: each two-way exchange, and the whole DORA from DISCOVER sent
    /// to ACK received.
    latency_us: Latencies,
    /// Open loop: how late the generator sent each DISCOVER against the clock (its own lag:
    /// large values mean it, not the server, fell behind), microseconds.
    schedule_lag_us: Option<Percentiles>,
    /// Datagrams sent and received per second by the generator, over the whole run.
    packets_per_s: f64,
    /// The generator's own CPU time (all threads) per completed DORA, microseconds.
    load_cpu_us_per_dora: f64,
    /// With --server-pid: the server's utime + stime over the run, per completed DORA (per
    /// 4-way exchange, renewals and releases included in the time), microseconds.
    server_cpu_us_per_dora: Option<f64>,
    correctness: Correctness,
    counters: Counters,
    per_second: Vec<Second>,
}

fn progress_line(s: &Second) -> String {
    let pct = |n: u64, of: u64| {
        if of == 0 {
            0.0
        } else {
            100.0 * n as f64 / of as f64
        }
    };
    format!(
        "[{:>4}s] offered {:>7}/s  dora {:>7}/s  drops DO {} ({:.2}%) RA {} ({:.2}%)  naks {}  \
         dora p50 {:.0}us p99 {:.0}us  in flight {}{}",
        s.second,
        s.discovers,
        s.doras,
        s.do_drops,
        pct(s.do_drops, s.discovers),
        s.ra_drops,
        pct(s.ra_drops, s.requests),
        s.naks,
        s.dora_p50_us,
        s.dora_p99_us,
        s.active,
        if s.lag_max_us > 0.0 {
            format!("  send lag max {:.0}us", s.lag_max_us)
        } else {
            String::new()
        }
    )
}

/// Runs the load and prints the JSON report on stdout (progress and the summary on stderr).
/// Fails, after reporting, if any address was ACKed to two clients.
pub(crate) fn run(a: &LoadArgs) -> anyhow::Result<()> {
    ensure!(
        (1..=MAX_CLIENTS).contains(&a.clients),
        "--clients must be 1 to 2^24 (16777216)"
    );
    ensure!(a.workers >= 1, "--workers must be at least 1");
    ensure!(
        a.workers as u64 <= u64::from(a.clients),
        "--workers must not exceed --clients"
    );
    ensure!(
        a.duration > 0.0 && a.duration.is_finite(),
        "--duration must be positive"
    );
    ensure!(a.timeout_ms >= 1, "--timeout-ms must be at least 1");
    ensure!(
        a.rate > 0 || a.inflight >= a.workers,
        "closed loop needs --inflight >= --workers"
    );
    let (renew_pct, release_pct) = match a.mix {
        Mix::Dora => (0, 0),
        Mix::Renew => (100, 0),
        Mix::Release => (0, 100),
        Mix::Mixed => {
            ensure!(
                u16::from(a.renew_pct) + u16::from(a.release_pct) <= 100,
                "--renew-pct + --release-pct must not exceed 100"
            );
            (a.renew_pct, a.release_pct)
        }
    };
    let workers = a.workers as u32;
    let plan = Plan {
        workers,
        clients: a.clients,
        rate: a.rate,
        end_ns: (a.duration * 1e9) as u64,
        timeout_ns: a.timeout_ms * 1_000_000,
        renew_pct,
        release_pct,
    };
    let server = SocketAddrV4::new(a.server, a.port);

    // Sockets first, so a port in use fails before any thread starts.
    let mut socks = Vec::with_capacity(a.workers);
    for w in 0..a.workers {
        let port = u16::try_from(usize::from(a.local_port) + w)
            .ok()
            .context("local ports run past 65535")?;
        let cfg = V4SocketConfig {
            bind: a.local,
            port,
            device: None,
            workers: 1,
            recv_buffer: Some(SOCKET_BUFFER),
            send_buffer: Some(SOCKET_BUFFER),
        };
        let mut group = lessor_net::open_v4_group(&cfg)
            .with_context(|| format!("opening {}:{port}", a.local))?;
        socks.push(group.pop().context("an empty socket group")?);
    }

    let owners = Arc::new(Owners::new());
    let cores = if a.no_pin {
        Vec::new()
    } else {
        lessor_net::available_cores()
    };
    let cpu_before = a.server_pid.map(cpu_ticks).transpose()?;
    let own_before = cpu_ticks(std::process::id())?;
    let (tick_tx, tick_rx) = crossbeam_channel::unbounded::<Tick>();
    let start = Arc::new(StartLine {
        ready: Barrier::new(a.workers + 1),
        go: Barrier::new(a.workers + 1),
        epoch: OnceLock::new(),
    });
    let mut handles = Vec::with_capacity(a.workers);
    for (w, sock) in socks.into_iter().enumerate() {
        let id = w as u32;
        let n_local = (a.clients - id).div_ceil(workers);
        let max_active = if a.rate == 0 {
            a.inflight / a.workers + usize::from(w < a.inflight % a.workers)
        } else {
            usize::MAX
        };
        let n = n_local as usize;
        let link = Link {
            sock,
            to: SendMeta {
                dst: server,
                ifindex: 0,
                src: None,
            },
            rx: RecvBatch::new(a.batch, RECV_BUF).context("receive batch")?,
            tx: SendBatch::new(a.batch, RECV_BUF).context("send batch")?,
            templates: [
                Template::new(RequestKind::Discover, a.local),
                Template::new(RequestKind::Select, a.local),
                Template::new(RequestKind::Renew, a.local),
                Template::new(RequestKind::Release, a.local),
            ],
            send_errors: 0,
        };
        let worker = Worker {
            id,
            plan,
            link,
            state: vec![0; n],
            seq: vec![0; n],
            t_start: vec![0; n],
            t_phase: vec![0; n],
            addr: vec![0; n],
            server: vec![0; n],
            bound: vec![0; n],
            n_local,
            next_local: 0,
            deadlines: VecDeque::with_capacity(deadline_capacity(&plan)),
            active: 0,
            max_active,
            c: Counters::default(),
            h: Hists::new(),
            tick_dora: histogram(),
            tick_lag: 0,
            owners: owners.clone(),
            rng: 0x9e37_79b9_7f4a_7c15 ^ (u64::from(id) + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9),
            // Replaced by the common start time once every worker is ready.
            epoch: Instant::now(),
        };
        let core = (!cores.is_empty()).then(|| cores[w % cores.len()]);
        let ticks = tick_tx.clone();
        let start = start.clone();
        let h = std::thread::Builder::new()
            .name(format!("load-{w}"))
            .spawn(move || {
                if let Some(core) = core
                    && let Err(e) = lessor_net::pin_current_thread(core)
                {
                    eprintln!("lessor-perf: worker {w} not pinned: {e}");
                }
                worker.run(ticks, &start)
            })
            .context("spawning a worker")?;
        handles.push(h);
    }
    drop(tick_tx);
    start.ready.wait();
    let epoch = Instant::now();
    let _ = start.epoch.set(epoch);
    start.go.wait();

    // Progress: one line per second once every worker has reported it (or has finished).
    let mut pending: BTreeMap<u64, Pending> = BTreeMap::new();
    let mut finals: Vec<Option<(u64, Counters)>> = vec![None; a.workers];
    let mut prev = Counters::default();
    let mut per_second = Vec::new();
    for t in tick_rx.iter() {
        let e = pending.entry(t.second).or_insert_with(|| Pending {
            got: vec![None; a.workers],
            active: 0,
            dora: histogram(),
            lag: 0,
        });
        e.got[t.worker] = Some(t.counters);
        e.active += t.active;
        e.lag = e.lag.max(t.lag);
        let _ = e.dora.add(&t.dora);
        if t.last {
            finals[t.worker] = Some((t.second, t.counters));
        }
        while let Some(entry) = pending.first_entry() {
            let sec = *entry.key();
            let p = entry.get();
            let mut sum = Counters::default();
            let mut complete = true;
            for (got, fin) in p.got.iter().zip(&finals) {
                match (got, fin) {
                    (Some(c), _) => sum.add(c),
                    (None, Some((f, c))) if *f <= sec => sum.add(c),
                    _ => complete = false,
                }
            }
            if !complete {
                break;
            }
            let p = entry.remove();
            let d = sum.minus(&prev);
            prev = sum;
            let s = Second {
                second: sec,
                discovers: d.discovers,
                requests: d.requests,
                doras: d.acks,
                do_drops: d.do_drops,
                ra_drops: d.ra_drops,
                naks: d.naks,
                active: p.active,
                dora_p50_us: us(p.dora.value_at_quantile(0.5)),
                dora_p99_us: us(p.dora.value_at_quantile(0.99)),
                lag_max_us: us(p.lag),
            };
            if !a.quiet {
                eprintln!("{}", progress_line(&s));
            }
            per_second.push(s);
        }
    }
    let mut total = Counters::default();
    let mut hists = Hists::new();
    for h in handles {
        let f = h
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        total.add(&f.counters);
        hists.add(&f.hists);
    }
    let run_seconds = epoch.elapsed().as_secs_f64();
    let own_cpu = cpu_ticks(std::process::id())?.saturating_sub(own_before) as f64 / USER_HZ;
    let sent = total.discovers + total.requests + total.renews + total.releases;
    let server_cpu_us_per_dora = match (a.server_pid, cpu_before) {
        (Some(pid), Some(before)) => {
            let used = cpu_ticks(pid)?.saturating_sub(before);
            Some(used as f64 * 1e6 / USER_HZ / total.acks.max(1) as f64)
        }
        _ => None,
    };

    let examples = owners
        .examples
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .clone();
    let report = LoadReport {
        server,
        mode: if a.rate == 0 { "closed" } else { "open" },
        mix: a.mix,
        renew_pct,
        release_pct,
        rate_requested: a.rate,
        inflight: (a.rate == 0).then_some(a.inflight),
        workers: a.workers,
        clients: a.clients,
        duration_s: a.duration,
        timeout_ms: a.timeout_ms,
        offered_per_s: total.discovers as f64 / a.duration,
        achieved_dora_per_s: total.acks_in_window as f64 / a.duration,
        discovers: total.discovers,
        offers: total.offers,
        discover_offer_drops: drops(total.do_drops, total.discovers),
        requests: total.requests,
        acks: total.acks,
        naks: total.naks,
        request_ack_drops: drops(total.ra_drops, total.requests),
        renews: total.renews,
        renew_acks: total.renew_acks,
        renew_naks: total.renew_naks,
        renew_drops: drops(total.renew_drops, total.renews),
        releases: total.releases,
        latency_us: Latencies {
            discover_offer: Percentiles::of(&hists.discover_offer),
            request_ack: Percentiles::of(&hists.request_ack),
            dora: Percentiles::of(&hists.dora),
            renew: Percentiles::of(&hists.renew),
        },
        schedule_lag_us: (a.rate > 0).then(|| Percentiles::of(&hists.lag)),
        packets_per_s: (sent + total.received) as f64 / run_seconds,
        load_cpu_us_per_dora: own_cpu * 1e6 / total.acks.max(1) as f64,
        server_cpu_us_per_dora,
        correctness: Correctness {
            acks_checked: total.acks_checked,
            acks_outside_10_0_0_0_8: total.acks_unchecked,
            violations: total.violations,
            examples,
        },
        counters: total,
        per_second,
    };
    eprint!("{}", summary(&report));
    let json = serde_json::to_string_pretty(&report)?;
    if let Some(path) = &a.json {
        std::fs::write(path, format!("{json}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{json}");
    if report.correctness.violations > 0 {
        bail!(
            "{} ACKs gave an address already held by another client (first: {:?})",
            report.correctness.violations,
            report.correctness.examples.first()
        );
    }
    Ok(())
}

/// Clock ticks per second of the times in /proc/PID/stat (`USER_HZ`, fixed at 100 by the
/// kernel's ABI).
pub(crate) const USER_HZ: f64 = 100.0;

/// utime + stime of process `pid`, in clock ticks.
pub(crate) fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no command field"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line, 12 and 13 after the command.
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {} unreadable", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

fn summary(r: &LoadReport) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let lat = |s: &mut String, name: &str, p: &Percentiles| {
        if p.count > 0 {
            let _ = writeln!(
                s,
                "  {name:<15} p50 {:>8.1}  p90 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1}  max {:>9.1}  (n={})",
                p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
            );
        }
    };
    let mode = match r.inflight {
        Some(n) => format!("closed loop, {n} in flight"),
        None => format!("open loop, {}/s requested", r.rate_requested),
    };
    let _ = writeln!(
        s,
        "load -> {}: {mode}, mix {:?}, {} worker(s), {:.1}s",
        r.server, r.mix, r.workers, r.duration_s
    );
    let _ = writeln!(
        s,
        "  offered {:.0} DORA/s, achieved {:.0} DORA/s",
        r.offered_per_s, r.achieved_dora_per_s
    );
    let _ = writeln!(
        s,
        "  DISCOVER-OFFER drops {} ({:.3}%), REQUEST-ACK drops {} ({:.3}%), NAKs {}",
        r.discover_offer_drops.count,
        r.discover_offer_drops.percent,
        r.request_ack_drops.count,
        r.request_ack_drops.percent,
        r.naks
    );
    if r.renews > 0 || r.releases > 0 {
        let _ = writeln!(
            s,
            "  renewals {} (ACK {}, NAK {}, drops {} {:.3}%), releases {}",
            r.renews,
            r.renew_acks,
            r.renew_naks,
            r.renew_drops.count,
            r.renew_drops.percent,
            r.releases
        );
    }
    let _ = writeln!(s, "  latency (us):");
    lat(&mut s, "DISCOVER-OFFER", &r.latency_us.discover_offer);
    lat(&mut s, "REQUEST-ACK", &r.latency_us.request_ack);
    lat(&mut s, "DORA", &r.latency_us.dora);
    lat(&mut s, "RENEW", &r.latency_us.renew);
    let c = &r.counters;
    let _ = writeln!(
        s,
        "  late {}, unexpected {}, garbage {}, foreign {}, send errors {}, busy skips {}, \
         schedule lag p99.9 {:.0}us max {:.0}us",
        c.late,
        c.unexpected,
        c.garbage,
        c.foreign,
        c.send_errors,
        c.busy_skips,
        r.schedule_lag_us.as_ref().map_or(0.0, |p| p.p99_9),
        r.schedule_lag_us.as_ref().map_or(0.0, |p| p.max),
    );
    let _ = write!(
        s,
        "  generator: {:.0} packets/s, {:.2}us CPU per DORA",
        r.packets_per_s, r.load_cpu_us_per_dora
    );
    match r.server_cpu_us_per_dora {
        Some(cpu) => {
            let _ = writeln!(s, "; server: {cpu:.2}us CPU per DORA");
        }
        None => s.push('\n'),
    }
    let _ = writeln!(
        s,
        "  correctness: {} ACKs checked, {} outside 10.0.0.0/8, {} violations",
        r.correctness.acks_checked, r.correctness.acks_outside_10_0_0_0_8, r.correctness.violations
    );
    s
}
