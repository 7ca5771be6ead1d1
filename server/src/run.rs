//! Wiring: sockets, one worker thread per core, the engine, reclamation and shutdown.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use lessor_engine::{Engine, LeaseEvent, Time};
use lessor_net::{SendMeta, V4Socket, V4SocketConfig};

use crate::config::Config;
use crate::stats::{self, WorkerStats};
use crate::v4::{self, Arrival, Destination, InterfaceInfo, Outcome, V4Context};

/// How often each worker reclaims expired leases of its shard, and how many at a time.
const RECLAIM_EVERY: Duration = Duration::from_secs(1);
const RECLAIM_BUDGET: usize = 4096;
/// Largest datagram accepted (a DHCPv4 message cannot exceed an Ethernet frame here).
const RECV_BUF: usize = 2048;

/// The current time as the engine counts it.
pub fn now() -> Time {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// A running server: its workers and the flag that stops them.
#[derive(Debug)]
pub struct Server {
    stop: Arc<AtomicBool>,
    workers: Vec<thread::JoinHandle<()>>,
    stats: Arc<[WorkerStats]>,
    engine: Arc<Engine>,
    listen: Vec<String>,
}

impl Server {
    /// Opens the sockets and starts the workers.
    pub fn start(config: &Config) -> anyhow::Result<Server> {
        let workers = config
            .workers
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
        let all = lessor_net::interfaces().context("listing network interfaces")?;
        let chosen: Vec<&lessor_net::Interface> = if config.interfaces.is_empty() {
            all.iter().filter(|i| i.is_loopback).collect()
        } else {
            let mut v = Vec::new();
            for name in &config.interfaces {
                match all.iter().find(|i| &i.name == name) {
                    Some(i) => v.push(i),
                    None => bail!("interfaces: no network interface named {name:?} on this host"),
                }
            }
            v
        };
        let infos: Vec<InterfaceInfo> = chosen
            .iter()
            .map(|i| InterfaceInfo {
                index: i.index,
                name: i.name.clone(),
                addrs: i.v4.iter().map(|(a, _)| *a).collect(),
            })
            .collect();

        let ctx = Arc::new(V4Context::new(config, &infos));
        let engine =
            Arc::new(Engine::new(ctx.engine_config(workers)).context("building the lease engine")?);

        // Loopback only unless interfaces are named: never answer on a real LAN by default.
        let (bind, device) = match config.interfaces.as_slice() {
            [] => (Ipv4Addr::LOCALHOST, None),
            [one] => (Ipv4Addr::UNSPECIFIED, Some(one.clone())),
            _ => (Ipv4Addr::UNSPECIFIED, None),
        };
        let sockets = lessor_net::open_v4_group(&V4SocketConfig {
            bind,
            port: config.port,
            device: device.clone(),
            workers,
            recv_buffer: Some(4 << 20),
            send_buffer: Some(4 << 20),
        })
        .with_context(|| format!("opening UDP {bind}:{} for DHCPv4", config.port))?;
        let allowed: Option<Vec<u32>> =
            (config.interfaces.len() > 1).then(|| infos.iter().map(|i| i.index).collect());

        let listen: Vec<String> = if infos.is_empty() {
            vec![format!("{bind}:{}", config.port)]
        } else {
            infos
                .iter()
                .map(|i| format!("{bind}:{} on {}", config.port, i.name))
                .collect()
        };

        let stop = Arc::new(AtomicBool::new(false));
        let stats: Arc<[WorkerStats]> = (0..workers).map(|_| WorkerStats::default()).collect();
        let names: Arc<Vec<(u32, String)>> =
            Arc::new(infos.iter().map(|i| (i.index, i.name.clone())).collect());
        let mut handles = Vec::with_capacity(workers);
        for (k, socket) in sockets.into_iter().enumerate() {
            let w = Worker {
                k,
                socket,
                ctx: Arc::clone(&ctx),
                engine: Arc::clone(&engine),
                stop: Arc::clone(&stop),
                stats: Arc::clone(&stats),
                allowed: allowed.clone(),
                names: Arc::clone(&names),
            };
            handles.push(
                thread::Builder::new()
                    .name(format!("lessor-v4-{k}"))
                    .spawn(move || w.run())
                    .context("spawning a worker thread")?,
            );
        }
        Ok(Server {
            stop,
            workers: handles,
            stats,
            engine,
            listen,
        })
    }

    /// Where the server listens, for the startup message.
    pub fn listening(&self) -> &[String] {
        &self.listen
    }

    /// The lease engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Per-worker counters.
    pub fn stats(&self) -> &[WorkerStats] {
        &self.stats
    }

    /// The flag that stops the workers when set (signal handlers set it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// Waits for the workers to stop and returns the counter summary.
    pub fn join(self) -> String {
        for h in self.workers {
            let _ = h.join();
        }
        stats::summary(&self.stats)
    }
}

struct Worker {
    k: usize,
    socket: V4Socket,
    ctx: Arc<V4Context>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
    stats: Arc<[WorkerStats]>,
    allowed: Option<Vec<u32>>,
    names: Arc<Vec<(u32, String)>>,
}

impl Worker {
    fn run(self) {
        let stats = &self.stats[self.k];
        let mut buf = vec![0u8; RECV_BUF];
        let mut out = Vec::with_capacity(RECV_BUF);
        let mut events: Vec<LeaseEvent> = Vec::with_capacity(16);
        let mut scratch = v4::Scratch::default();
        let mut last_reclaim = std::time::Instant::now();
        while !self.stop.load(Ordering::Relaxed) {
            if last_reclaim.elapsed() >= RECLAIM_EVERY {
                last_reclaim = std::time::Instant::now();
                let n = self
                    .engine
                    .reclaim(self.k, now(), RECLAIM_BUDGET, &mut events);
                stats.expired.fetch_add(n as u64, Ordering::Relaxed);
                self.persist(&mut events);
            }
            let meta = match self.socket.recv(&mut buf) {
                Ok(Some(m)) => m,
                Ok(None) => continue,
                Err(e) => {
                    tracing::warn!(worker = self.k, error = %e, "receive failed");
                    continue;
                }
            };
            stats.received.fetch_add(1, Ordering::Relaxed);
            if let Some(allowed) = &self.allowed
                && !allowed.contains(&meta.ifindex)
            {
                continue;
            }
            let arrival = Arrival {
                src: meta.src,
                ifindex: meta.ifindex,
                local: meta.local,
            };
            let outcome = v4::handle(
                &self.ctx,
                &self.engine,
                &buf[..meta.len],
                &arrival,
                now(),
                &mut scratch,
                &mut out,
                &mut events,
            );
            self.persist(&mut events);
            match outcome {
                Outcome::Reply(reply) => {
                    self.send(&out, reply.dst, reply.src, stats);
                    stats.replied(reply.kind);
                }
                Outcome::NoReply(why) => {
                    tracing::debug!(worker = self.k, reason = why.label(), src = %meta.src, "no reply");
                    stats.no_reply(why);
                }
            }
        }
    }

    /// Hands lease events to the journal. Until the journal exists the server keeps its
    /// state in memory only, so this only logs them.
    fn persist(&self, events: &mut Vec<LeaseEvent>) {
        for e in events.drain(..) {
            tracing::debug!(kind = ?e.kind, address = %e.lease.address, hw = %e.lease.hw, "lease event");
        }
    }

    fn send(&self, out: &[u8], dst: Destination, src: Ipv4Addr, stats: &WorkerStats) {
        let src = (!src.is_unspecified() && !src.is_broadcast()).then_some(src);
        let meta = match dst {
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
                match name.map(|n| lessor_net::set_arp_entry(n, ip, mac)) {
                    Some(Ok(())) => SendMeta {
                        dst: SocketAddrV4::new(ip, v4::CLIENT_PORT),
                        ifindex,
                        src,
                    },
                    // No ARP entry possible (no privilege, unknown interface): broadcast.
                    _ => SendMeta {
                        dst: SocketAddrV4::new(Ipv4Addr::BROADCAST, v4::CLIENT_PORT),
                        ifindex,
                        src,
                    },
                }
            }
        };
        if let Err(e) = self.socket.send(out, &meta) {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(worker = self.k, error = %e, dst = %meta.dst, "send failed");
        }
    }
}
