//! The DHCPv6 [`Family`]: steering by DUID, the v6 handler, and reloadable assignments.
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

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use lessor_engine::Time;
use lessor_engine::v6::{V6Engine, V6LeaseEvent};
use lessor_net::{RecvMeta6, SendMeta6, V6Socket};

use super::{
    ALLOC_NO_SUBNET, ALLOC_POOL_EXHAUSTED, Datagram, Family, Handled, Output, RECLAIM_BUDGET,
    Steered,
};
use crate::stats::WorkerStats;
use crate::v6::{self, Arrival, NoReply, Outcome, ReplyKind, V6Context};

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

/// A DHCPv6 worker's view of the server.
#[derive(Debug)]
pub(crate) struct V6 {
    pub(crate) engine: Arc<V6Engine>,
    assignments: Arc<Assignments6>,
    /// The context in use, and the [`Assignments6::generation`] it came from.
    ctx: Arc<V6Context>,
    generation: u64,
}

impl V6 {
    pub(crate) fn new(engine: Arc<V6Engine>, assignments: Arc<Assignments6>) -> V6 {
        V6 {
            engine,
            ctx: assignments.current(),
            generation: assignments.generation(),
            assignments,
        }
    }
}

impl Family for V6 {
    const NAME: &'static str = "DHCPv6";
    const TAG: &'static str = "v6";
    type Socket = V6Socket;
    type Event = V6LeaseEvent;
    type To = (SendMeta6, ReplyKind);

    fn between_batches(&mut self) {
        if self.assignments.generation() != self.generation {
            self.generation = self.assignments.generation();
            self.ctx = self.assignments.current();
        }
    }

    fn reclaim(&self, shard: usize, now: Time, events: &mut Vec<V6LeaseEvent>) {
        self.engine.reclaim(shard, now, RECLAIM_BUDGET, events);
    }

    fn steer(&self, data: &[u8], meta: &RecvMeta6, k: usize, workers: usize) -> Steered {
        if workers <= 1 {
            return Steered::Mine;
        }
        let owner = v6::owner_shard(data, &self.engine);
        // Every socket of the group gets a multicast datagram: only the worker of the
        // client's shard answers it (worker 0 when it has no DUID).
        if meta.dst.is_multicast() && owner.unwrap_or(0) != k {
            Steered::Elsewhere
        } else if owner.is_some_and(|o| o != k) {
            Steered::OtherShard
        } else {
            Steered::Mine
        }
    }

    fn writes_lease(&mut self, data: &[u8]) -> bool {
        v6::writes_lease(data)
    }

    fn handle(&mut self, got: Datagram<'_, Self>, out: Output<'_, Self>) -> Handled<Self::To> {
        let arrival = Arrival {
            src: got.meta.src,
            ifindex: got.meta.ifindex,
            dst: got.meta.dst,
        };
        let (ctx, engine) = (&self.ctx, &self.engine);
        match v6::handle(
            ctx, engine, got.data, &arrival, got.now, out.reply, out.events,
        ) {
            Outcome::Reply(reply) => {
                if reply.no_subnet {
                    out.stats.no_reply_label(NoReply::NoSubnet.label());
                    out.stats.allocation_failed(ALLOC_NO_SUBNET);
                }
                for _ in 0..reply.exhausted {
                    out.stats.allocation_failed(ALLOC_POOL_EXHAUSTED);
                }
                let send = SendMeta6 {
                    dst: reply.dst,
                    src: reply.src,
                    ifindex: (reply.ifindex != 0).then_some(reply.ifindex),
                };
                Handled::Reply {
                    to: (send, reply.kind),
                    needs_durable: reply.needs_durable,
                }
            }
            Outcome::NoReply(why) => Handled::NoReply(why.label()),
        }
    }

    fn route(&self, _socket: &V6Socket, &(meta, _): &Self::To) -> SendMeta6 {
        meta
    }

    fn replied(stats: &WorkerStats, &(_, kind): &Self::To) {
        stats.replied6(kind);
    }
}
