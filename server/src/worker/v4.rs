//! The DHCPv4 [`Family`]: steering by `chaddr`, the v4 handler, and RFC 2131 §4.1 routing.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use lessor_engine::v4::{Engine, LeaseEvent};
use lessor_engine::{EventKind, Time};
use lessor_net::v4::{RecvMeta, SendMeta, Socket};

use super::{
    ALLOC_NO_SUBNET, ALLOC_POOL_EXHAUSTED, Datagram, Family, Handled, Output, RECLAIM_BUDGET,
    Steered,
};
use crate::reload::Running;
use crate::stats::WorkerStats;
use crate::v4::{self, Arrival, Destination, Outcome, ReplyKind};

/// A DHCPv4 worker's view of the server.
#[derive(Debug)]
pub(crate) struct V4 {
    pub(crate) ctx: Arc<v4::Context>,
    pub(crate) engine: Arc<Engine>,
    /// Index and name of each served interface, for ARP entries.
    pub(crate) names: Arc<Vec<(u32, String)>>,
    pub(crate) scratch: v4::Scratch,
}

impl Family for V4 {
    const NAME: &'static str = "DHCPv4";
    const TAG: &'static str = "v4";
    type Socket = Socket;
    type Event = LeaseEvent;
    type To = (Destination, Ipv4Addr, ReplyKind);

    fn refresh(&mut self, running: &Running) {
        self.ctx = Arc::clone(&running.v4);
        self.engine = Arc::clone(&running.engine);
    }

    fn balanced(&self) -> bool {
        self.ctx.balanced()
    }

    fn reclaim(&self, shard: usize, now: Time, events: &mut Vec<LeaseEvent>) {
        self.engine.reclaim(shard, now, RECLAIM_BUDGET, events);
    }

    fn steer(&self, data: &[u8], meta: &RecvMeta, k: usize, workers: usize) -> Steered {
        if workers <= 1 || v4::owner_shard(data, workers) == k {
            return Steered::Mine;
        }
        // Linux hands a broadcast datagram to every socket of the reuseport group (the
        // steering program only sees unicast): only the owner's worker answers it.
        if meta.dst != meta.local {
            Steered::Elsewhere
        } else {
            Steered::OtherShard
        }
    }

    fn writes_lease(&mut self, data: &[u8]) -> bool {
        v4::writes_lease(data, &mut self.scratch)
    }

    fn handle(&mut self, got: Datagram<'_, Self>, out: Output<'_, Self>) -> Handled<Self::To> {
        let arrival = Arrival {
            src: got.meta.src,
            ifindex: got.meta.ifindex,
            local: got.meta.local,
        };
        let got = v4::Received::new(got.data, arrival, got.now).serving(got.scopes);
        match v4::handle(
            &self.ctx,
            &self.engine,
            got,
            &mut self.scratch,
            out.reply,
            out.events,
        ) {
            Outcome::Reply(reply) => {
                if let Some(why) = reply.refused {
                    out.stats.allocation_failed(why);
                }
                if reply.needs_durable {
                    // One request binds one lease: its event says whether it was extended.
                    let renewed = out.events.iter().any(|e| e.kind == EventKind::Renewed);
                    out.stats.allocated[usize::from(renewed)].fetch_add(1, Ordering::Relaxed);
                }
                Handled::Reply {
                    to: (reply.dst, reply.src, reply.kind),
                    needs_durable: reply.needs_durable,
                }
            }
            Outcome::NoReply(why) => {
                match why {
                    v4::NoReply::PoolExhausted => out.stats.allocation_failed(ALLOC_POOL_EXHAUSTED),
                    v4::NoReply::NoSubnet => out.stats.allocation_failed(ALLOC_NO_SUBNET),
                    _ => {}
                }
                Handled::NoReply(why.label())
            }
        }
    }

    /// A unicast to a client that has no address yet needs an ARP entry first; without one
    /// (no privilege, unknown interface) the reply is broadcast.
    fn route(&self, socket: &Socket, &(dst, src, _): &Self::To) -> SendMeta {
        let src = (!src.is_unspecified() && !src.is_broadcast()).then_some(src);
        match dst {
            Destination::Unicast(to) => SendMeta {
                dst: to,
                ifindex: 0,
                src,
            },
            Destination::Broadcast { port, ifindex } => SendMeta {
                dst: SocketAddrV4::new(Ipv4Addr::BROADCAST, port),
                ifindex,
                src,
            },
            Destination::UnicastToHardware { ip, mac, ifindex } => {
                let name = self
                    .names
                    .iter()
                    .find(|(i, _)| *i == ifindex)
                    .map(|(_, n)| n);
                let to = match name.map(|n| socket.set_arp_entry(n, ip, mac)) {
                    Some(Ok(())) => ip,
                    _ => Ipv4Addr::BROADCAST,
                };
                SendMeta {
                    dst: SocketAddrV4::new(to, v4::CLIENT_PORT),
                    ifindex,
                    src,
                }
            }
        }
    }

    fn replied(stats: &WorkerStats, &(_, _, kind): &Self::To) {
        stats.replied(kind);
    }
}
