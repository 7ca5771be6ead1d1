//! The running server: start-up as a list of named steps, then the handle `main` holds.
//!
//! [`Server::start`] takes the state directory's lock, builds both engines, replays the
//! journal into them before any socket opens (the engines must hold exactly what was
//! acknowledged), then opens each family's socket group and starts its workers
//! (`server/src/worker.rs`).

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};
use std::thread;

use lessor_journal::{Health, Journal, ReplayReport};
use lessor_net::Interface;

use crate::config::Config;
use crate::control::{Control, Live, Parts};
use crate::error::{Error, Result};
use crate::lease_record::LeaseRecord;
use crate::reload::reservations::{self, Store};
use crate::reload::{Host, Reloader, Running, Swap};
use crate::replay::replay_journal;
use crate::state_dir::lock_state_dir;
use crate::stats::{self, WorkerStats};
use crate::v4::{self, InterfaceInfo};
use crate::v6;
use crate::worker::v4::V4;
use crate::worker::v6::V6;
use crate::worker::{self, Family, Shared};

/// Kernel socket buffers asked for, each way: room for a burst while a worker is busy.
const SOCKET_BUFFER: usize = 4 << 20;

/// A running server: its workers and the flag that stops them.
#[derive(Debug)]
pub struct Server {
    live: Arc<Live>,
    /// Dropped after the workers stop, so that /ready says "stopping" until then.
    control: Option<Control>,
    stop: Arc<AtomicBool>,
    workers: Vec<thread::JoinHandle<()>>,
    stats: Arc<[WorkerStats]>,
    stats6: Arc<[WorkerStats]>,
    /// DHCPv6 is on.
    dhcp6: bool,
    reload: Arc<Reloader>,
    listen: Vec<String>,
    listen6: Vec<String>,
    journal: Journal<LeaseRecord>,
    /// Stopped after the workers, so that the partner never takes over while they answer.
    ha: Option<crate::ha::Agent>,
    replay: ReplayReport,
    skipped: u64,
    _lock: File,
}

/// The DHCPv6 half before its sockets open.
struct V6Parts {
    ctx: Arc<v6::Context>,
    engine: Arc<lessor_engine::v6::Engine>,
    infos: Vec<v6::InterfaceInfo>,
}

/// Where one family's sockets bind, and the names the startup message gives them.
struct Bind {
    /// No interface named: bind the loopback address only.
    loopback: bool,
    device: Option<String>,
    /// The served interfaces (empty: loopback only, no interface named).
    names: Vec<String>,
}

impl Bind {
    /// Loopback only unless interfaces are named: never answer on a real LAN by default.
    fn new(config: &Config, infos: &[InterfaceInfo]) -> Bind {
        let device = match config.interfaces.as_slice() {
            [one] => Some(one.clone()),
            _ => None,
        };
        Bind {
            loopback: config.interfaces.is_empty(),
            device,
            names: infos.iter().map(|i| i.name.clone()).collect(),
        }
    }

    /// The family's `loopback` address when no interface is named, else `any`.
    fn addr<A>(&self, loopback: A, any: A) -> A {
        if self.loopback { loopback } else { any }
    }

    /// "ADDR:PORT" once, or once per served interface.
    fn listening(&self, addr: &str, port: u16) -> Vec<String> {
        if self.names.is_empty() {
            vec![format!("{addr}:{port}")]
        } else {
            self.names
                .iter()
                .map(|n| format!("{addr}:{port} on {n}"))
                .collect()
        }
    }
}

impl Server {
    /// Opens the sockets and starts the workers, serving `given` with the run-time
    /// reservations of its state directory merged in.
    pub fn start(given: &Config) -> Result<Server> {
        let lock = lock_state_dir(&given.state_dir)?;
        let store = Store::load(&given.state_dir).map_err(Error::Reservations)?;
        let merged = reservations::merge(given, &store)
            .map_err(|e| Error::Reservations(e.in_file(&Store::path(&given.state_dir), &store)))?;
        let config = &merged;
        let workers = config
            .workers
            .unwrap_or_else(|| thread::available_parallelism().map_or(1, |n| n.get()));
        let chosen = chosen_interfaces(config)?;
        let infos: Vec<InterfaceInfo> = chosen
            .iter()
            .map(|i| InterfaceInfo {
                index: i.index,
                name: i.name.clone(),
                addrs: i.v4.iter().map(|(a, _)| *a).collect(),
            })
            .collect();
        let ctx = Arc::new(v4::Context::new(config, &infos));
        let engine = Arc::new(
            lessor_engine::v4::Engine::new(ctx.engine_config(workers)).map_err(|e| {
                Error::Engine {
                    family: "",
                    source: e.into(),
                }
            })?,
        );

        // Replay before any socket opens: the engines must hold exactly what was acknowledged.
        // Up before replay, so that /ready can say the server is starting.
        let live = Live::new();
        // Held back from the first datagram: only the leader answers.
        if config.ha.is_some() {
            live.hold_dhcp(Some(crate::control::Hold::Fenced));
        }
        let control = start_control(config, &live)?;
        let v6 = if config.v6.enabled() {
            Some(build_v6(config, &chosen, workers)?)
        } else {
            None
        };
        // A lane per worker thread: the DHCPv4 workers', then the DHCPv6 workers'; the last
        // one is the control server's lease writes'.
        let lanes = if v6.is_some() { 2 * workers } else { workers } + 1;
        // With the HA journal stream, one more after those: the partner's stream's replica.
        let streaming = config.ha.as_ref().and_then(crate::config::HaConfig::stream);
        let engine6 = v6.as_ref().map(|p| Arc::clone(&p.engine));
        let (journal, replay, skipped) = replay_journal(
            config,
            &engine,
            engine6.as_deref(),
            lanes + usize::from(streaming.is_some()),
        )?;

        let swap = Swap::new(
            Running {
                config: Arc::new(config.clone()),
                v4: Arc::clone(&ctx),
                engine: Arc::clone(&engine),
                v6: v6
                    .as_ref()
                    .map(|p| (Arc::clone(&p.ctx), Arc::clone(&p.engine))),
            },
            lanes - 1,
        );
        let shared = Shared {
            workers,
            cores: lessor_net::available_cores(),
            stop: Arc::new(AtomicBool::new(false)),
            allowed: (config.interfaces.len() > 1).then(|| infos.iter().map(|i| i.index).collect()),
            max_backlog: config.journal.max_backlog,
            disabled: live.dhcp_disabled(),
            holds: live.dhcp_holds(),
            scopes: live.dhcp_scopes(),
            swap: Arc::clone(&swap),
        };
        let reload = Arc::new(Reloader::new(
            swap,
            Host {
                infos: infos.clone(),
                infos6: v6.as_ref().map(|p| p.infos.clone()).unwrap_or_default(),
                threads: lanes - 1,
                shards: workers,
            },
            &live,
            given.clone(),
            store,
        ));
        let bind = Bind::new(config, &infos);
        let names: Arc<Vec<(u32, String)>> =
            Arc::new(infos.iter().map(|i| (i.index, i.name.clone())).collect());
        let mut handles = Vec::with_capacity(2 * workers);
        let (stats, listen) = start_v4(
            config,
            &bind,
            &shared,
            &journal,
            &ctx,
            &engine,
            names,
            &mut handles,
        )?;
        let (stats6, listen6) = match &v6 {
            Some(v6) => start_v6(config, &bind, &chosen, &shared, &journal, v6, &mut handles)?,
            None => (Arc::new([]) as Arc<[WorkerStats]>, Vec::new()),
        };
        // Only now, able to answer, does this server compete for the leader key.
        let replication = streaming
            .map(|addrs| replication(&journal, lanes, &reload, addrs))
            .transpose()?;
        let ha = config
            .ha
            .as_ref()
            .map(|c| crate::ha::Agent::start(c, Arc::clone(&live), replication))
            .transpose()?;
        live.serve(Parts {
            started: live.started(),
            config: Arc::new(config.clone()),
            engine: Arc::clone(&engine),
            engine6: engine6.clone(),
            stats: Arc::clone(&stats),
            stats6: Arc::clone(&stats6),
            journal: journal.monitor(),
            lane: Arc::new(Mutex::new(journal.lane(lanes - 1))),
            reload: Arc::clone(&reload),
            ha: ha.as_ref().map(crate::ha::Agent::status),
        });
        Ok(Server {
            live,
            control,
            stop: shared.stop,
            workers: handles,
            stats,
            stats6,
            dhcp6: engine6.is_some(),
            reload,
            listen,
            listen6,
            journal,
            ha,
            replay,
            skipped,
            _lock: lock,
        })
    }

    /// Where the server listens, for the startup message.
    pub fn listening(&self) -> &[String] {
        &self.listen
    }

    /// Where the control server listens, when it is on.
    pub fn control_addr(&self) -> Option<std::net::SocketAddr> {
        self.control.as_ref().map(Control::local_addr)
    }

    /// Where the DHCPv6 workers listen (empty when DHCPv6 is off).
    pub fn listening6(&self) -> &[String] {
        &self.listen6
    }

    /// The lease engine in use (a reload that changes the pools replaces it).
    pub fn engine(&self) -> Arc<lessor_engine::v4::Engine> {
        self.reload.engines().0
    }

    /// The DHCPv6 lease engine in use, when DHCPv6 is on.
    pub fn engine6(&self) -> Option<Arc<lessor_engine::v6::Engine>> {
        self.reload.engines().1
    }

    /// Makes and applies reloads of the configuration (SIGHUP, the `config-*` commands).
    pub fn reloader(&self) -> &Arc<Reloader> {
        &self.reload
    }

    /// Per-worker counters.
    pub fn stats(&self) -> &[WorkerStats] {
        &self.stats
    }

    /// The flag that stops the workers when set (signal handlers set it).
    pub fn stop_flag(&self) -> Arc<AtomicBool> {
        Arc::clone(&self.stop)
    }

    /// What replay found at startup, and how many records could not be restored.
    pub fn replay(&self) -> (&ReplayReport, u64) {
        (&self.replay, self.skipped)
    }

    /// The journal's health: failing while writes or syncs fail (bindings then wait).
    pub fn journal_health(&self) -> Health {
        self.journal.health()
    }

    /// The journal's counters.
    pub fn journal_stats(&self) -> lessor_journal::Stats {
        self.journal.stats()
    }

    /// Waits for the workers to stop, closes the journal (everything queued is written and
    /// synced) and returns the counter summary.
    pub fn join(mut self) -> Result<String> {
        self.live.stop();
        for h in std::mem::take(&mut self.workers) {
            let _ = h.join();
        }
        drop(self.ha.take());
        let summary = self.summary();
        self.journal
            .shutdown()
            .map_err(Error::journal("closing the journal"))?;
        Ok(summary)
    }

    /// The counter summary so far (what [`Server::join`] returns at the end).
    pub fn summary(&self) -> String {
        let mut summary = stats::summary(&self.stats);
        if self.dhcp6 {
            summary.push(' ');
            summary.push_str(&stats::summary6(&self.stats6));
        }
        summary
    }
}

/// The HA journal stream's parts: the replica on lane `lanes` (after every worker's and the
/// control server's, which the peer gate holds in `ha.sync` mode) and the bound listener.
fn replication(
    journal: &Journal<LeaseRecord>,
    lanes: usize,
    reload: &Arc<Reloader>,
    (listen, partner): (std::net::SocketAddr, std::net::SocketAddr),
) -> Result<crate::ha::Replication> {
    let replica = lessor_journal::stream::Replica::open(journal, lanes)
        .map_err(Error::journal("opening the HA replica"))?;
    let listener = std::net::TcpListener::bind(listen).map_err(|source| Error::Control {
        what: format!("binding ha.peers[].stream of this node ({listen}): {source}"),
        source,
    })?;
    Ok(crate::ha::Replication {
        source: journal.stream(),
        replica,
        gate: journal.peer_gate(lanes),
        reload: Arc::clone(reload),
        listener,
        partner,
    })
}

/// Starts the control server unless `control: off`.
fn start_control(config: &Config, live: &Arc<Live>) -> Result<Option<Control>> {
    config
        .control
        .as_ref()
        .map(|c| Control::start(c, Arc::clone(live)))
        .transpose()
}

/// The interfaces served: those `interfaces` names, or the loopback ones when it names none.
fn chosen_interfaces(config: &Config) -> Result<Vec<Interface>> {
    let all = lessor_net::interfaces().map_err(Error::net("listing network interfaces"))?;
    if config.interfaces.is_empty() {
        return Ok(all.into_iter().filter(|i| i.is_loopback).collect());
    }
    config
        .interfaces
        .iter()
        .map(|name| {
            all.iter()
                .find(|i| &i.name == name)
                .cloned()
                .ok_or_else(|| Error::NoSuchInterface { name: name.clone() })
        })
        .collect()
}

/// Builds the DHCPv6 context (server DUID, interfaces, assignments) and engine.
fn build_v6(config: &Config, chosen: &[Interface], workers: usize) -> Result<V6Parts> {
    let duid = v6::server_duid(config).map_err(|source| Error::ServerDuid {
        state_dir: config.state_dir.clone(),
        source,
    })?;
    let infos6: Vec<v6::InterfaceInfo> = chosen
        .iter()
        .map(|i| v6::InterfaceInfo {
            index: i.index,
            name: i.name.clone(),
            addrs: i.v6.iter().map(|(a, _)| *a).collect(),
        })
        .collect();
    let table = config.load_assignments().map_err(|e| Error::Assignments {
        what: "loading",
        source: e.into(),
    })?;
    let ctx = v6::Context::new(config, &duid, &infos6, Arc::new(table));
    let engine =
        lessor_engine::v6::Engine::new(ctx.engine_config(workers)).map_err(|e| Error::Engine {
            family: "DHCPv6 ",
            source: e.into(),
        })?;
    Ok(V6Parts {
        ctx: Arc::new(ctx),
        engine: Arc::new(engine),
        infos: infos6,
    })
}

/// Opens the DHCPv4 socket group, steers it, and starts its workers on lanes `0..workers`.
#[allow(clippy::too_many_arguments)]
fn start_v4(
    config: &Config,
    bind: &Bind,
    shared: &Shared,
    journal: &Journal<LeaseRecord>,
    ctx: &Arc<v4::Context>,
    engine: &Arc<lessor_engine::v4::Engine>,
    names: Arc<Vec<(u32, String)>>,
    handles: &mut Vec<thread::JoinHandle<()>>,
) -> Result<(Arc<[WorkerStats]>, Vec<String>)> {
    let addr = bind.addr(Ipv4Addr::LOCALHOST, Ipv4Addr::UNSPECIFIED);
    let sockets = lessor_net::v4::open_group(&lessor_net::v4::SocketConfig {
        bind: addr,
        port: config.port,
        device: bind.device.clone(),
        workers: shared.workers,
        recv_buffer: Some(SOCKET_BUFFER),
        send_buffer: Some(SOCKET_BUFFER),
    })
    .map_err(Error::net(format!(
        "opening UDP {addr}:{} for DHCPv4",
        config.port
    )))?;
    if shared.workers > 1 {
        // The kernel hands each datagram to the worker whose shard owns its client ("owner
        // answers"), so a worker rarely touches another shard.
        lessor_net::v4::attach_steering(&sockets)
            .map_err(Error::net("attaching the steering program"))?;
    }
    let family = || V4 {
        ctx: Arc::clone(ctx),
        engine: Arc::clone(engine),
        names: Arc::clone(&names),
        scratch: Default::default(),
    };
    let stats = spawn_workers(sockets, 0, family, journal, shared, handles)?;
    Ok((stats, bind.listening(&addr.to_string(), config.port)))
}

/// Opens the DHCPv6 socket group, steers it, and starts its workers on lanes
/// `workers..2 * workers`.
fn start_v6(
    config: &Config,
    bind: &Bind,
    chosen: &[Interface],
    shared: &Shared,
    journal: &Journal<LeaseRecord>,
    v6: &V6Parts,
    handles: &mut Vec<thread::JoinHandle<()>>,
) -> Result<(Arc<[WorkerStats]>, Vec<String>)> {
    let addr = bind.addr(Ipv6Addr::LOCALHOST, Ipv6Addr::UNSPECIFIED);
    // Clients on a served link send to ff02::1:2; loopback carries no multicast.
    let multicast: Vec<u32> = chosen
        .iter()
        .filter(|i| !i.is_loopback)
        .map(|i| i.index)
        .collect();
    let sockets = lessor_net::v6::open_group(&lessor_net::v6::SocketConfig {
        bind: addr,
        port: config.v6.port,
        device: bind.device.clone(),
        workers: shared.workers,
        recv_buffer: Some(SOCKET_BUFFER),
        send_buffer: Some(SOCKET_BUFFER),
        multicast_ifindexes: multicast,
    })
    .map_err(Error::net(format!(
        "opening UDP [{addr}]:{} for DHCPv6",
        config.v6.port
    )))?;
    if shared.workers > 1 {
        // By the client's DUID, through relay layers: one relay's clients spread over the
        // workers that own them instead of all landing on one by 4-tuple.
        lessor_net::v6::attach_steering(&sockets)
            .map_err(Error::net("attaching the DHCPv6 steering program"))?;
    }
    let family = || V6 {
        engine: Arc::clone(&v6.engine),
        ctx: Arc::clone(&v6.ctx),
    };
    let stats = spawn_workers(sockets, shared.workers, family, journal, shared, handles)?;
    Ok((stats, bind.listening(&format!("[{addr}]"), config.v6.port)))
}

/// Starts one worker of family `F` per socket, worker `k` on lane `first_lane + k`, and
/// returns their counters.
fn spawn_workers<F: Family + Send + 'static>(
    sockets: Vec<F::Socket>,
    first_lane: usize,
    family: impl Fn() -> F,
    journal: &Journal<LeaseRecord>,
    shared: &Shared,
    handles: &mut Vec<thread::JoinHandle<()>>,
) -> Result<Arc<[WorkerStats]>>
where
    F::Socket: Send,
{
    let stats: Arc<[WorkerStats]> = (0..shared.workers)
        .map(|_| WorkerStats::default())
        .collect();
    for (k, socket) in sockets.into_iter().enumerate() {
        let lane = journal.lane(first_lane + k);
        handles.push(worker::spawn(
            k,
            socket,
            lane,
            family(),
            Arc::clone(&stats),
            shared,
        )?);
    }
    Ok(stats)
}
