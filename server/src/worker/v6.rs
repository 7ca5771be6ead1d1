//! The DHCPv6 [`Family`]: steering by DUID, the v6 handler, and reloadable assignments.
//!
//! Steering: a DHCPv6 client is known by its DUID, which sits at no fixed offset (often inside
//! relay layers). The group's classic BPF program walks the relay layers and options to it
//! (`lessor_net::v6::attach_steering`) and hands the datagram to the worker of the shard that
//! owns it ([`Engine::owner`]), so one relay's clients spread over the workers. A datagram
//! the program cannot place goes where the kernel's 4-tuple hash puts it; that worker handles
//! the client on its owner's shard anyway, under the shard's mutex (counted as
//! `v6_other_shard`): the cost is a lock another core touched last, not a wrong answer.
//! Multicast (clients on a served link) reaches every socket of the group; only the owner's
//! worker answers it, so each request gets one reply.
//!
//! The context (with the static assignments file) and the engine are swapped by a reload
//! between two batches (`crate::reload`), so every packet is answered from one configuration
//! or the other, whole.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use lessor_engine::Time;
use lessor_engine::v6::{Engine, LeaseEvent};
use lessor_net::v6::{RecvMeta, SendMeta, Socket};

use super::{
    ALLOC_NO_SUBNET, ALLOC_POOL_EXHAUSTED, Datagram, Family, Handled, Output, RECLAIM_BUDGET,
    Steered,
};
use crate::reload::Running;
use crate::stats::WorkerStats;
use crate::v6::{self, Arrival, NoReply, Outcome, ReplyKind};

/// A DHCPv6 worker's view of the server.
#[derive(Debug)]
pub(crate) struct V6 {
    pub(crate) engine: Arc<Engine>,
    pub(crate) ctx: Arc<v6::Context>,
}

impl Family for V6 {
    const NAME: &'static str = "DHCPv6";
    const TAG: &'static str = "v6";
    type Socket = Socket;
    type Event = LeaseEvent;
    type To = (SendMeta, ReplyKind);

    fn refresh(&mut self, running: &Running) {
        if let Some((ctx, engine)) = &running.v6 {
            self.ctx = Arc::clone(ctx);
            self.engine = Arc::clone(engine);
        }
    }

    fn balanced(&self) -> bool {
        self.ctx.balanced()
    }

    fn reclaim(&self, shard: usize, now: Time, events: &mut Vec<LeaseEvent>) {
        self.engine.reclaim(shard, now, RECLAIM_BUDGET, events);
    }

    fn steer(&self, data: &[u8], meta: &RecvMeta, k: usize, workers: usize) -> Steered {
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
        let got = v6::Received::new(got.data, arrival, got.now).serving(got.scopes);
        match v6::handle(ctx, engine, got, out.reply, out.events) {
            Outcome::Reply(reply) => {
                if reply.no_subnet {
                    out.stats.no_reply_label(NoReply::NoSubnet.label());
                    out.stats.allocation_failed(ALLOC_NO_SUBNET);
                }
                for _ in 0..reply.exhausted {
                    out.stats.allocation_failed(ALLOC_POOL_EXHAUSTED);
                }
                let kinds = [&out.stats.allocated, &out.stats.allocated_prefixes];
                for (counters, granted) in kinds.into_iter().zip(reply.granted) {
                    for (n, g) in counters.iter().zip(granted) {
                        n.fetch_add(u64::from(g), Ordering::Relaxed);
                    }
                }
                let send = SendMeta {
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

    fn route(&self, _socket: &Socket, &(meta, _): &Self::To) -> SendMeta {
        meta
    }

    fn replied(stats: &WorkerStats, &(_, kind): &Self::To) {
        stats.replied6(kind);
    }
}
