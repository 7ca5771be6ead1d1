//! The worker loop, written once for both families: one thread per core and family, each with
//! its own socket of a `SO_REUSEPORT` group and its own journal lane.
//!
//! A worker receives a batch, handles each datagram on the engine, journals the lease events,
//! and sends the replies in one batch. A reply that binds a lease (ACK, REPLY) leaves only when
//! its journal ticket is durable (the "durable ACK" invariant in docs/ARCHITECTURE.md): it
//! waits in a [`WaitQueue`] and the worker sleeps on the lane's doorbell as well as its
//! socket. OFFERs, ADVERTISEs and NAKs never wait. Every [`RECLAIM_EVERY`] the worker sweeps
//! its shard for expired leases and journals them like any other event.
//!
//! What differs between DHCPv4 and DHCPv6 (socket and batch types, steering, handler, reply
//! routing, counters) is a [`Family`], implemented in [`v4`] and [`v6`]; the loop is
//! monomorphic in it.

mod io;
pub(crate) mod v4;
pub(crate) mod v6;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lessor_engine::{EventKind, Time};
use lessor_journal::{Doorbell, Lane, Ticket};

pub(crate) use self::io::WorkerSocket;
use self::io::{
    IDLE_POLL, MAX_REPLY, RECV_BUF, Received, queue, receive, send_all, set_idle_timeout,
};
use crate::error::{Error, Result};
use crate::lease_record::{LeaseRecord, LeaseRecordRef};
use crate::reload::{Running, Swap};
use crate::scope;
use crate::stats::WorkerStats;
use crate::waiting::WaitQueue;

/// How often each worker reclaims expired leases of its shard, and how many at a time.
pub(crate) const RECLAIM_EVERY: Duration = Duration::from_secs(1);
pub(crate) const RECLAIM_BUDGET: usize = 4096;
/// Replies waiting for the journal, per worker, before the oldest is dropped ("oldest dropped first":
/// under overload the oldest work goes first; the client retries).
pub(crate) const MAX_PENDING: usize = 8192;

/// The counter of requests dropped because the journal's backlog was full.
pub(crate) const JOURNAL_BACKLOG: &str = "journal_backlog";
/// The counter of replies dropped because the server stopped leading while they waited.
pub(crate) const LOST_LEAD: &str = "ha_lost_lead";
/// Allocation failure reasons: every pool of the client's link was exhausted, or no subnet
/// matched its link.
pub(crate) const ALLOC_POOL_EXHAUSTED: &str = "pool_exhausted";
pub(crate) const ALLOC_NO_SUBNET: &str = "no_subnet";

/// The current time as the engine counts it.
pub fn now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a datagram's steering says to do with it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Steered {
    /// Another worker's socket got a copy too (broadcast, multicast): skip it.
    Elsewhere,
    /// This worker answers, on its own shard.
    Mine,
    /// This worker answers, on the shard of another worker (counted as `other_shard`).
    OtherShard,
}

/// What the handler decided for one request.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Handled<W> {
    /// The reply is in the output buffer; `to` says where it goes and what it is.
    Reply {
        /// Where and what, kept with the bytes while the reply waits for the journal.
        to: W,
        /// The reply binds a lease: it leaves only once the lease is durable.
        needs_durable: bool,
    },
    /// No reply, for the reason labelled.
    NoReply(&'static str),
}

/// A lease event as the worker journals it.
pub(crate) trait LeaseChange {
    /// The journal record of the event.
    fn record(&self) -> LeaseRecordRef<'_>;
    /// Whether the event ends a lease by expiry.
    fn is_expiry(&self) -> bool;
    /// The load-balancing scope of the lease's client.
    fn scope(&self) -> usize;
}

macro_rules! lease_change {
    ($($event:ty => $record:ident, $scope:ident),* $(,)?) => {$(
        impl LeaseChange for $event {
            fn record(&self) -> LeaseRecordRef<'_> {
                LeaseRecordRef::$record(self)
            }
            fn is_expiry(&self) -> bool {
                self.kind == EventKind::Expired
            }
            fn scope(&self) -> usize {
                scope::$scope(&self.lease.client)
            }
        }
    )*};
}

lease_change!(
    lessor_engine::v4::LeaseEvent => from_event, of_client,
    lessor_engine::v6::LeaseEvent => from_v6_event, of_ia,
);

/// Drops from `events` those of clients of a scope `scopes` does not serve, in load-balancing
/// (`balanced`). A request's lazy reclaim, or the sweep, may expire the partner's records in
/// this server's engines: they are stale (the partner answers those clients), and a
/// journaled expiry could outrank the partner's renewal at a later takeover, as in
/// docs/HA.md, "Standing by". By client rather than by pool: a reservation may lie in the
/// other scope's half, or outside every pool, and its binding is still this server's.
fn drop_unserved<E: LeaseChange>(events: &mut Vec<E>, balanced: bool, scopes: u8) {
    if balanced && scopes != scope::ALL {
        events.retain(|e| scope::serves(scopes, e.scope()));
    }
}

/// One received datagram, as [`Family::handle`] takes it.
pub(crate) struct Datagram<'a, F: Family + ?Sized> {
    pub(crate) data: &'a [u8],
    pub(crate) meta: &'a <F::Socket as WorkerSocket>::RecvMeta,
    pub(crate) now: Time,
    /// The load-balancing scopes served in this batch.
    pub(crate) scopes: u8,
}

/// Where [`Family::handle`] puts what it makes of a datagram.
pub(crate) struct Output<'a, F: Family + ?Sized> {
    /// The reply's bytes.
    pub(crate) reply: &'a mut Vec<u8>,
    /// Lease events, for the journal.
    pub(crate) events: &'a mut Vec<F::Event>,
    pub(crate) stats: &'a WorkerStats,
}

/// What the worker loop needs from one DHCP family.
pub(crate) trait Family {
    /// "DHCPv4" or "DHCPv6", for logs.
    const NAME: &'static str;
    /// "v4" or "v6", for thread names.
    const TAG: &'static str;
    /// The family's socket.
    type Socket: WorkerSocket;
    /// A lease event of the family's engine.
    type Event: LeaseChange;
    /// Where a reply goes and what it is, kept while it waits for the journal.
    type To: Copy;

    /// Called before each batch.
    fn between_batches(&mut self) {}
    /// Takes the context and engine of a new running configuration (a reload).
    fn refresh(&mut self, running: &Running);
    /// Whether the running configuration is in load-balancing.
    fn balanced(&self) -> bool;
    /// Sweeps expired leases of `shard` into `events`.
    fn reclaim(&self, shard: usize, now: Time, events: &mut Vec<Self::Event>);
    /// Whether worker `k` of `workers` answers this datagram (see [`Steered`]).
    fn steer(
        &self,
        data: &[u8],
        meta: &<Self::Socket as WorkerSocket>::RecvMeta,
        k: usize,
        workers: usize,
    ) -> Steered;
    /// Whether handling `data` may write a lease (dropped while the journal is backlogged).
    fn writes_lease(&mut self, data: &[u8]) -> bool;
    /// Handles one request: the reply (if any) and lease events into `out`.
    fn handle(&mut self, got: Datagram<'_, Self>, out: Output<'_, Self>) -> Handled<Self::To>;
    /// The send metadata of a reply.
    fn route(&self, socket: &Self::Socket, to: &Self::To) -> <Self::Socket as WorkerSocket>::Meta;
    /// Counts a reply sent.
    fn replied(stats: &WorkerStats, to: &Self::To);
}

/// What every worker of a server shares.
#[derive(Debug, Clone)]
pub(crate) struct Shared {
    /// Workers per family.
    pub(crate) workers: usize,
    /// The cores workers pin themselves to, in turn.
    pub(crate) cores: Vec<usize>,
    /// Set to stop the workers.
    pub(crate) stop: Arc<AtomicBool>,
    /// Interfaces served (when several are named): datagrams from others are ignored.
    pub(crate) allowed: Option<Vec<u32>>,
    /// `journal.max_backlog`.
    pub(crate) max_backlog: u64,
    /// Not 0 while DHCP is disabled (`dhcp-disable`, or held by HA): every request is dropped,
    /// counted under `control::drop_reason` of the value.
    pub(crate) disabled: Arc<AtomicU8>,
    /// How many times an HA hold began: a reply that waited across one never leaves.
    pub(crate) holds: Arc<AtomicU64>,
    /// The load-balancing scopes answered (`crate::scope`), read once per batch.
    pub(crate) scopes: Arc<AtomicU8>,
    /// The running configuration, which a reload replaces.
    pub(crate) swap: Arc<Swap>,
}

/// Starts worker `k` of family `F` on its own thread.
pub(crate) fn spawn<F: Family + Send + 'static>(
    k: usize,
    socket: F::Socket,
    lane: Lane<LeaseRecord>,
    family: F,
    stats: Arc<[WorkerStats]>,
    shared: &Shared,
) -> Result<thread::JoinHandle<()>>
where
    F::Socket: Send,
{
    let w = Worker {
        k,
        core: shared.cores.get(k % shared.cores.len().max(1)).copied(),
        socket,
        doorbell: lane.doorbell().map_err(Error::Doorbell)?,
        lane,
        family,
        stats,
        shared: shared.clone(),
    };
    thread::Builder::new()
        .name(format!("lessor-{}-{k}", F::TAG))
        .spawn(move || w.run())
        .map_err(|source| Error::Spawn {
            family: F::NAME,
            source,
        })
}

/// One worker thread's state.
struct Worker<F: Family> {
    k: usize,
    /// The core this worker pins itself to.
    core: Option<usize>,
    socket: F::Socket,
    lane: Lane<LeaseRecord>,
    /// Rung by the journal writer when this lane's watermark moves.
    doorbell: Doorbell,
    family: F,
    stats: Arc<[WorkerStats]>,
    shared: Shared,
}

impl<F: Family> Worker<F> {
    fn run(mut self) {
        let stats = Arc::clone(&self.stats);
        let stats = &stats[self.k];
        if let Some(core) = self.core
            && let Err(e) = lessor_net::pin_current_thread(core)
        {
            tracing::warn!(worker = self.k, family = F::NAME, core, error = %e, "could not pin the worker to its core");
        }
        let (mut rx, mut tx) = match F::Socket::batches() {
            Ok(b) => b,
            Err(e) => {
                tracing::error!(worker = self.k, error = %e, "cannot allocate packet batches");
                return;
            }
        };
        let mut out = Vec::with_capacity(RECV_BUF);
        let mut events: Vec<F::Event> = Vec::with_capacity(16);
        let mut pending: WaitQueue<F::To> = WaitQueue::new(MAX_PENDING, MAX_REPLY);
        let mut last_reclaim = Instant::now();
        set_idle_timeout(&self.socket, self.k);
        // No generation yet: the first batch looks at the gate, in case a pause began
        // before this worker started.
        let mut generation = u64::MAX;
        let mut holds = self.shared.holds.load(Ordering::SeqCst);
        while !self.shared.stop.load(Ordering::Relaxed) {
            self.family.between_batches();
            // A server that does not lead sweeps nothing: its engines are stale, and an
            // expiry of its own could outrank the leader's renewal of the same lease.
            if last_reclaim.elapsed() >= RECLAIM_EVERY
                && !crate::control::ha_held(self.shared.disabled.load(Ordering::Relaxed))
            {
                last_reclaim = Instant::now();
                self.family.reclaim(self.k, now(), &mut events);
                self.persist(&mut events, self.shared.scopes.load(Ordering::Relaxed));
            }
            self.flush(&mut pending, &mut tx, stats, &mut holds);
            let received = receive(
                &self.socket,
                &mut rx,
                &self.doorbell,
                pending.oldest(),
                IDLE_POLL,
                self.k,
            );
            // A reload, checked after the wait so that the batch just received already
            // sees it: one atomic load per batch; the rest only when it moved.
            // The generation is read once: a pause that begins after the gate was passed
            // moves it again, so the next batch stops at the gate instead of missing it.
            let seen = self.shared.swap.generation();
            if seen != generation {
                self.reload(&mut events);
                generation = seen;
                self.family.refresh(&self.shared.swap.current());
                self.shared.swap.took(self.lane.index(), seen);
            }
            let Received::Datagrams(_) = received else {
                continue;
            };
            let start = Instant::now();
            let now = now();
            let disabled = self.shared.disabled.load(Ordering::Relaxed);
            // The same mask admits a request and filters its events.
            let scopes = self.shared.scopes.load(Ordering::Relaxed);
            let mut handled_here = 0;
            // "Oldest dropped first" for the journal: while this lane holds more than
            // max_backlog records that are not durable (a slow or full disk), requests that
            // would add more are dropped and counted; the rest is still answered.
            let backlogged = self.lane.backlog() > self.shared.max_backlog;
            for i in 0..F::Socket::received(&rx) {
                let (data, meta) = F::Socket::datagram(&rx, i);
                match self.family.steer(data, &meta, self.k, self.shared.workers) {
                    Steered::Elsewhere => continue,
                    Steered::OtherShard => {
                        stats.other_shard.fetch_add(1, Ordering::Relaxed);
                    }
                    Steered::Mine => {}
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(allowed) = &self.shared.allowed
                    && !allowed.contains(&F::Socket::ifindex(&meta))
                {
                    continue;
                }
                if disabled != 0 {
                    stats.no_reply_label(crate::control::drop_reason(disabled));
                    continue;
                }
                if backlogged && self.family.writes_lease(data) {
                    stats.no_reply_label(JOURNAL_BACKLOG);
                    continue;
                }
                let got = Datagram {
                    data,
                    meta: &meta,
                    now,
                    scopes,
                };
                let made = Output {
                    reply: &mut out,
                    events: &mut events,
                    stats,
                };
                let handled = self.family.handle(got, made);
                handled_here += 1;
                let ticket = self.persist(&mut events, scopes);
                match handled {
                    Handled::Reply { to, needs_durable } => match ticket {
                        // Durable ACK: a reply that binds waits until its lease is durable.
                        Some(t) if needs_durable && t > self.lane.durable() => {
                            if pending.push(t, &out, to) {
                                // The lease is still recorded; only this reply is lost.
                                stats.overload_drops.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            self.queue(&mut tx, &out, &to, stats);
                            F::replied(stats, &to);
                        }
                    },
                    Handled::NoReply(reason) => {
                        tracing::debug!(worker = self.k, family = F::NAME, reason, src = %F::Socket::source(&meta), "no reply");
                        stats.no_reply_label(reason);
                    }
                }
            }
            if handled_here > 0 {
                let took = u64::try_from(start.elapsed().as_nanos()).unwrap_or(u64::MAX);
                stats.durations.record(took, handled_here);
            }
            send_all(&self.socket, self.k, &mut tx, stats);
            if !pending.is_empty() {
                // Replies wait for the journal writer. When it shares this core (a one-core
                // server, or more workers than cores) it runs only when this thread gives the
                // core up, and under steady load this loop never blocks: without the yield
                // the writer would wait for the scheduler to preempt us, milliseconds later.
                // When the writer has nothing to do, the yield returns at once.
                thread::yield_now();
            }
        }
        // Stopping: the journal's shutdown syncs what is queued; replies whose leases are
        // durable by then still go out.
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some(t) = pending.oldest() {
            if !self
                .lane
                .wait_durable(t, deadline.saturating_duration_since(Instant::now()))
            {
                break;
            }
            self.flush(&mut pending, &mut tx, stats, &mut holds);
        }
    }

    /// Waits at the reload's gate if it is closed, after journaling this shard's pending
    /// events, so that the engine copied while the workers wait holds them all.
    fn reload(&mut self, events: &mut Vec<F::Event>) {
        let swap = Arc::clone(&self.shared.swap);
        let held = crate::control::ha_held(self.shared.disabled.load(Ordering::Relaxed));
        let scopes = self.shared.scopes.load(Ordering::Relaxed);
        swap.pass(|| {
            if !held {
                self.family.reclaim(self.k, now(), events);
            }
            self.persist(events, scopes);
        });
    }

    /// Sends every waiting reply whose lease is now durable, oldest first; drops them all
    /// instead if an HA hold began since `holds` was read (docs/HA.md, "Losing the lead").
    fn flush(
        &self,
        pending: &mut WaitQueue<F::To>,
        tx: &mut <F::Socket as WorkerSocket>::Batch,
        stats: &WorkerStats,
        holds: &mut u64,
    ) {
        if pending.is_empty() {
            return;
        }
        let durable = self.lane.durable();
        // Read after the watermark: a release made once the hold began shows it here.
        let now_holds = self.shared.holds.load(Ordering::SeqCst);
        if now_holds != *holds {
            *holds = now_holds;
            let dropped = pending.clear();
            for _ in 0..dropped {
                stats.no_reply_label(LOST_LEAD);
            }
            return;
        }
        pending.release(durable, |buf, to| {
            self.queue(tx, buf, to, stats);
            F::replied(stats, to);
        });
        send_all(&self.socket, self.k, tx, stats);
    }

    /// Journals `events` (draining it), but for those of clients of a scope not in `scopes`
    /// ([`drop_unserved`]), and returns the last ticket. Every expiry passes here once,
    /// whether the sweep or a request found it, so this is where it is counted.
    fn persist(&mut self, events: &mut Vec<F::Event>, scopes: u8) -> Option<Ticket> {
        drop_unserved(events, self.family.balanced(), scopes);
        let mut last = None;
        let mut expired = 0;
        for e in events.drain(..) {
            expired += u64::from(e.is_expiry());
            last = Some(self.lane.append(&e.record()));
        }
        if expired > 0 {
            self.stats[self.k]
                .expired
                .fetch_add(expired, Ordering::Relaxed);
        }
        last
    }

    /// Adds a reply to the send batch, routed by the family; sends the batch first when it
    /// is full.
    fn queue(
        &self,
        tx: &mut <F::Socket as WorkerSocket>::Batch,
        out: &[u8],
        to: &F::To,
        stats: &WorkerStats,
    ) {
        let meta = self.family.route(&self.socket, to);
        queue(&self.socket, self.k, tx, out, &meta, stats);
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;

    use lessor_engine::v4::{ClientKey, HwAddr, Lease, LeaseEvent};
    use lessor_engine::v6::{self, IaKey, IaKind, Resource};
    use lessor_engine::{EventKind, LeaseState};

    use super::{LeaseChange, drop_unserved};
    use crate::scope;

    /// An expiry of the client with hardware address `mac`, in pool 0 whatever its scope (a
    /// reservation may lie in the other half).
    fn expiry(mac: [u8; 6]) -> LeaseEvent {
        LeaseEvent {
            kind: EventKind::Expired,
            lease: Lease {
                address: Ipv4Addr::new(10, 0, 0, mac[5]),
                pool: Some(lessor_engine::v4::PoolId(0)),
                client: ClientKey::hardware(1, &mac),
                hw: HwAddr::new(1, &mac).unwrap(),
                hostname: None,
                state: LeaseState::Expired,
                starts: 1,
                expires: 1,
                version: 1,
            },
        }
    }

    fn ia_expiry(duid: &[u8]) -> v6::LeaseEvent {
        v6::LeaseEvent {
            kind: EventKind::Expired,
            lease: v6::Lease {
                resource: Resource::address("2001:db8::1".parse().unwrap()),
                pool: Some(v6::PoolId(0)),
                client: IaKey::new(duid, 1, IaKind::Na),
                state: LeaseState::Expired,
                starts: 1,
                preferred: 0,
                expires: 1,
                version: 1,
            },
        }
    }

    /// Checks the filter over `events` (of both scopes) for every mask, in and outside
    /// load-balancing.
    fn filters<E: LeaseChange + Clone>(events: Vec<E>) {
        let scopes: Vec<usize> = events.iter().map(LeaseChange::scope).collect();
        assert!(scopes.contains(&0) && scopes.contains(&1), "{scopes:?}");
        for (balanced, mask) in [
            (true, 0b01),
            (true, 0b10),
            (true, scope::ALL),
            (false, 0b01),
        ] {
            let mut kept = events.clone();
            drop_unserved(&mut kept, balanced, mask);
            let want: Vec<usize> = (scopes.iter().copied())
                .filter(|&s| !balanced || scope::serves(mask, s))
                .collect();
            let got: Vec<usize> = kept.iter().map(LeaseChange::scope).collect();
            assert_eq!(got, want, "balanced {balanced}, mask {mask:#04b}");
        }
    }

    #[test]
    fn expiries_of_an_unserved_scope_are_not_journaled() {
        filters((0..16).map(|n| expiry([2, 0, 0, 0, 0, n])).collect());
        filters((0..16).map(|n| ia_expiry(&[0, 4, n])).collect());
        // The scope is the client's, as the request's was hashed.
        let mac = [2, 0, 0, 0, 0, 9];
        assert_eq!(expiry(mac).scope(), scope::of_v4(None, &mac));
        assert_eq!(ia_expiry(&mac).scope(), scope::of_duid(&mac));
    }
}
