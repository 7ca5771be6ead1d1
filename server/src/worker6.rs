//! The DHCPv6 workers: one per core beside the DHCPv4 one, each with its own socket of one
//! `SO_REUSEPORT` group, its own journal lane, and the same batching and group commit.
//!
//! Steering: a DHCPv6 client is known by its DUID, which sits at no fixed offset (often inside
//! relay layers). The group's classic BPF program walks the relay layers and options to it
//! (`lessor_net::attach_steering6`) and hands the datagram to the worker of the shard that
//! owns it ([`V6Engine::owner`]), so one relay's clients spread over the workers. A datagram
//! the program cannot place goes where the kernel's 4-tuple hash puts it; that worker handles
//! the client on its owner's shard anyway, under the shard's mutex (counted as
//! `v6_other_shard`): the cost is a lock another core touched last, not a wrong answer.
//! Multicast (clients on a served link) reaches every socket of the group; only the owner's
//! worker answers it, so each request gets one reply.
//!
//! The static assignments behind [`V6Context`] can be reloaded while workers run
//! ([`Assignments6`]): a worker picks the new table up between two batches, so every packet
//! is answered from one table or the other, whole, and nothing is dropped.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use lessor_engine::EventKind;
use lessor_engine::v6::{V6Engine, V6LeaseEvent};
use lessor_journal::{Doorbell, Lane, Ticket};
use lessor_net::{RecvBatch6, SendBatch6, SendMeta6, V6Socket};

use crate::lease_record::{LeaseRecord, LeaseRecordRef};
use crate::run::now;
use crate::stats::WorkerStats;
use crate::v6::{self, Arrival, NoReply, Outcome, ReplyKind, V6Context};
use crate::waiting::WaitQueue;

/// The DHCPv6 context the workers read, swappable while they run (SIGHUP reloads the
/// assignments file into a new one).
#[derive(Debug)]
pub(crate) struct Assignments6 {
    generation: AtomicU64,
    current: Mutex<Arc<V6Context>>,
}

impl Assignments6 {
    pub(crate) fn new(ctx: V6Context) -> Self {
        Assignments6 {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(ctx)),
        }
    }

    /// The context in use.
    pub(crate) fn current(&self) -> Arc<V6Context> {
        Arc::clone(&self.current.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Makes `ctx` the context every worker uses from its next batch on.
    pub(crate) fn replace(&self, ctx: V6Context) {
        *self.current.lock().unwrap_or_else(|e| e.into_inner()) = Arc::new(ctx);
        self.generation.fetch_add(1, Ordering::Release);
    }

    /// How many times the context was replaced.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }
}

/// Where a waiting reply goes, and what it is.
type Dst6 = (SendMeta6, ReplyKind);

pub(crate) struct Worker6 {
    pub(crate) k: usize,
    pub(crate) workers: usize,
    pub(crate) core: Option<usize>,
    pub(crate) socket: V6Socket,
    pub(crate) lane: Lane<LeaseRecord>,
    pub(crate) doorbell: Doorbell,
    pub(crate) ctx: Arc<Assignments6>,
    pub(crate) engine: Arc<V6Engine>,
    pub(crate) stop: Arc<AtomicBool>,
    pub(crate) stats: Arc<[WorkerStats]>,
    /// Interfaces served (when several are named): datagrams from others are ignored.
    pub(crate) allowed: Option<Vec<u32>>,
    /// `journal.max_backlog`.
    pub(crate) max_backlog: u64,
}

impl Worker6 {
    pub(crate) fn run(mut self) {
        let stats = Arc::clone(&self.stats);
        let stats = &stats[self.k];
        if let Some(core) = self.core
            && let Err(e) = lessor_net::pin_current_thread(core)
        {
            tracing::warn!(worker = self.k, core, error = %e, "could not pin the DHCPv6 worker to its core");
        }
        let (mut rx, mut tx) = match (
            RecvBatch6::new(super::run::BATCH, super::run::RECV_BUF),
            SendBatch6::new(super::run::BATCH, super::run::MAX_REPLY),
        ) {
            (Ok(rx), Ok(tx)) => (rx, tx),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(worker = self.k, error = %e, "cannot allocate packet batches");
                return;
            }
        };
        let mut out = Vec::with_capacity(super::run::RECV_BUF);
        let mut events: Vec<V6LeaseEvent> = Vec::with_capacity(16);
        let mut pending: WaitQueue<Dst6> =
            WaitQueue::new(super::run::MAX_PENDING, super::run::MAX_REPLY);
        let mut last_reclaim = Instant::now();
        let mut ctx = self.ctx.current();
        let mut generation = self.ctx.generation();
        super::run::set_idle_timeout(&self.socket, self.k);
        while !self.stop.load(Ordering::Relaxed) {
            if self.ctx.generation() != generation {
                generation = self.ctx.generation();
                ctx = self.ctx.current();
            }
            if last_reclaim.elapsed() >= super::run::RECLAIM_EVERY {
                last_reclaim = Instant::now();
                self.engine
                    .reclaim(self.k, now(), super::run::RECLAIM_BUDGET, &mut events);
                self.persist(&mut events);
            }
            self.flush(&mut pending, &mut tx, stats);
            // As in the DHCPv4 worker: block on the socket, and on the doorbell while replies
            // wait.
            let super::run::Received::Datagrams(_) = super::run::receive(
                &self.socket,
                &mut rx,
                &self.doorbell,
                pending.oldest(),
                super::run::IDLE_POLL,
                self.k,
            ) else {
                continue;
            };
            let now = now();
            // As in the DHCPv4 worker: a full journal backlog stops requests that write.
            let backlogged = self.lane.backlog() > self.max_backlog;
            for (data, meta) in rx.iter() {
                if self.workers > 1 {
                    let owner = v6::owner_shard(data, &self.engine);
                    // Every socket of the group gets a multicast datagram: only the worker of
                    // the client's shard answers it (worker 0 when it has no DUID).
                    if meta.dst.is_multicast() && owner.unwrap_or(0) != self.k {
                        continue;
                    }
                    if owner.is_some_and(|o| o != self.k) {
                        stats.other_shard.fetch_add(1, Ordering::Relaxed);
                    }
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(allowed) = &self.allowed
                    && !allowed.contains(&meta.ifindex)
                {
                    continue;
                }
                if backlogged && v6::writes_lease(data) {
                    stats.no_reply_label(super::run::JOURNAL_BACKLOG);
                    continue;
                }
                let arrival = Arrival {
                    src: meta.src,
                    ifindex: meta.ifindex,
                    dst: meta.dst,
                };
                let outcome = v6::handle(
                    &ctx,
                    &self.engine,
                    data,
                    &arrival,
                    now,
                    &mut out,
                    &mut events,
                );
                let ticket = self.persist(&mut events);
                match outcome {
                    Outcome::Reply(reply) => {
                        if reply.no_subnet {
                            stats.no_reply_label(NoReply::NoSubnet.label());
                        }
                        let send = SendMeta6 {
                            dst: reply.dst,
                            src: reply.src,
                            ifindex: (reply.ifindex != 0).then_some(reply.ifindex),
                        };
                        match ticket {
                            // Invariant 1: a reply that binds waits until its lease is durable.
                            Some(t) if reply.needs_durable && t > self.lane.durable() => {
                                if pending.push(t, &out, (send, reply.kind)) {
                                    stats.overload_drops.fetch_add(1, Ordering::Relaxed);
                                }
                            }
                            _ => {
                                self.queue(&mut tx, &out, &send, stats);
                                stats.replied6(reply.kind);
                            }
                        }
                    }
                    Outcome::NoReply(why) => {
                        tracing::debug!(worker = self.k, reason = why.label(), src = %meta.src, "no DHCPv6 reply");
                        stats.no_reply_label(why.label());
                    }
                }
            }
            self.send_all(&mut tx, stats);
            if !pending.is_empty() {
                // See the DHCPv4 worker: let a journal writer sharing this core run.
                std::thread::yield_now();
            }
        }
        let deadline = Instant::now() + Duration::from_millis(500);
        while let Some(t) = pending.oldest() {
            if !self
                .lane
                .wait_durable(t, deadline.saturating_duration_since(Instant::now()))
            {
                break;
            }
            self.flush(&mut pending, &mut tx, stats);
        }
    }

    /// Sends every waiting reply whose lease is now durable, oldest first.
    fn flush(&self, pending: &mut WaitQueue<Dst6>, tx: &mut SendBatch6, stats: &WorkerStats) {
        if pending.is_empty() {
            return;
        }
        pending.release(self.lane.durable(), |buf, (meta, kind)| {
            self.queue(tx, buf, meta, stats);
            stats.replied6(*kind);
        });
        self.send_all(tx, stats);
    }

    /// Hands lease events to the journal; returns the ticket of the last one.
    /// Journals `events` (draining it), counting expiries as v4's `Worker::persist` does.
    fn persist(&mut self, events: &mut Vec<V6LeaseEvent>) -> Option<Ticket> {
        let mut last = None;
        let mut expired = 0;
        for e in events.drain(..) {
            expired += u64::from(e.kind == EventKind::Expired);
            last = Some(self.lane.append(&LeaseRecordRef::from_v6_event(&e)));
        }
        if expired > 0 {
            self.stats[self.k]
                .expired
                .fetch_add(expired, Ordering::Relaxed);
        }
        last
    }

    fn queue(&self, tx: &mut SendBatch6, out: &[u8], meta: &SendMeta6, stats: &WorkerStats) {
        super::run::queue(&self.socket, self.k, tx, out, meta, stats);
    }

    fn send_all(&self, tx: &mut SendBatch6, stats: &WorkerStats) {
        super::run::send_all(&self.socket, self.k, tx, stats);
    }
}
