//! Wiring: sockets, one worker thread per core, the engine, reclamation and shutdown.

use std::fs::File;
use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use lessor_engine::v6::V6Engine;
use lessor_engine::{Engine, EventKind, LeaseEvent, Time};
use lessor_journal::{Doorbell, Health, Journal, Lane, ReplayReport, Ticket};
use lessor_net::{RecvBatch, SendBatch, SendMeta, V4Socket, V4SocketConfig, V6SocketConfig};
use nix::poll::{PollFd, PollFlags, poll};

use crate::config::{Config, SyncMode};
use crate::lease_record::{LeaseRecord, LeaseRecordRef};
use crate::stats::{self, WorkerStats};
use crate::v4::{self, Arrival, Destination, InterfaceInfo, Outcome, ReplyKind, V4Context};
use crate::v6::{self, V6Context};
use crate::waiting::WaitQueue;
use crate::worker6::{Assignments6, Worker6};

/// How often each worker reclaims expired leases of its shard, and how many at a time.
pub(crate) const RECLAIM_EVERY: Duration = Duration::from_secs(1);
pub(crate) const RECLAIM_BUDGET: usize = 4096;
/// Largest datagram accepted (a DHCPv4 message cannot exceed an Ethernet frame here).
pub(crate) const RECV_BUF: usize = 2048;
/// Largest reply: the encoder never exceeds an Ethernet MTU's UDP payload.
pub(crate) const MAX_REPLY: usize = 1500;
/// Datagrams received (recvmmsg) and replies sent (sendmmsg) per system call, at most.
pub(crate) const BATCH: usize = 64;
/// Replies waiting for the journal, per worker, before the oldest is dropped (invariant 6:
/// under overload the oldest work goes first; the client retries).
pub(crate) const MAX_PENDING: usize = 8192;
/// How long a worker blocks on its socket (or its socket and doorbell) before it checks the
/// stop flag and the reclaim timer.
pub(crate) const IDLE_POLL: Duration = Duration::from_millis(200);

/// What a worker needs from its socket, for both families: batched receives, batched and
/// single sends, a receive timeout, and its descriptor to poll.
pub(crate) trait WorkerSocket: AsFd {
    type Rx;
    type Batch;
    type Meta: std::fmt::Debug;
    fn set_read_timeout(&self, d: Option<Duration>) -> lessor_net::Result<()>;
    fn recv_batch(&self, rx: &mut Self::Rx, wait: bool) -> lessor_net::Result<usize>;
    fn push(batch: &mut Self::Batch, out: &[u8], meta: &Self::Meta) -> bool;
    fn is_empty(batch: &Self::Batch) -> bool;
    fn send_batch(&self, batch: &mut Self::Batch) -> lessor_net::Result<lessor_net::SendReport>;
    fn send(&self, out: &[u8], meta: &Self::Meta) -> lessor_net::Result<()>;
}

macro_rules! worker_socket {
    ($socket:ty, $rx:ty, $batch:ty, $meta:ty) => {
        impl WorkerSocket for $socket {
            type Rx = $rx;
            type Batch = $batch;
            type Meta = $meta;
            fn set_read_timeout(&self, d: Option<Duration>) -> lessor_net::Result<()> {
                <$socket>::set_read_timeout(self, d)
            }
            fn recv_batch(&self, rx: &mut $rx, wait: bool) -> lessor_net::Result<usize> {
                <$socket>::recv_batch(self, rx, wait)
            }
            fn push(batch: &mut $batch, out: &[u8], meta: &$meta) -> bool {
                batch.push(out, meta)
            }
            fn is_empty(batch: &$batch) -> bool {
                batch.is_empty()
            }
            fn send_batch(&self, batch: &mut $batch) -> lessor_net::Result<lessor_net::SendReport> {
                <$socket>::send_batch(self, batch)
            }
            fn send(&self, out: &[u8], meta: &$meta) -> lessor_net::Result<()> {
                <$socket>::send(self, out, meta)
            }
        }
    };
}

worker_socket!(V4Socket, RecvBatch, SendBatch, SendMeta);
worker_socket!(
    lessor_net::V6Socket,
    lessor_net::RecvBatch6,
    lessor_net::SendBatch6,
    lessor_net::SendMeta6
);

/// Sets the receive timeout a worker's blocking receives use: [`IDLE_POLL`].
pub(crate) fn set_idle_timeout(socket: &impl WorkerSocket, worker: usize) {
    if let Err(e) = socket.set_read_timeout(Some(IDLE_POLL)) {
        tracing::warn!(worker, error = %e, "cannot set the socket's receive timeout");
    }
}

/// Why [`receive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// This many datagrams are in the batch.
    Datagrams(usize),
    /// The journal published this lane's watermark (or already had past the oldest waiting
    /// reply): replies may leave.
    Published,
    /// Nothing: a timeout, a signal, or every datagram received was dropped.
    Nothing,
}

/// Receives a worker's next batch of datagrams, or says why there is none; the caller then
/// sends what became durable and comes back.
///
/// With no reply waiting for the journal (`oldest` is `None`) the worker blocks on its
/// socket, for at most its receive timeout ([`IDLE_POLL`]). With replies waiting it takes
/// whatever is queued without blocking; only when nothing is does it sleep, for at most
/// `sleep` (workers pass [`IDLE_POLL`]), in `poll` on the socket and the lane's doorbell
/// together. So a request is handled the moment it arrives, a waiting reply leaves the
/// moment the writer publishes its lease, and a worker whose replies wait is woken once per
/// sync rather than on a timer.
pub(crate) fn receive<S: WorkerSocket>(
    socket: &S,
    rx: &mut S::Rx,
    doorbell: &Doorbell,
    oldest: Option<Ticket>,
    sleep: Duration,
    worker: usize,
) -> Received {
    let recv = |rx: &mut S::Rx, wait| match socket.recv_batch(rx, wait) {
        Ok(0) => Received::Nothing,
        Ok(n) => Received::Datagrams(n),
        Err(e) => {
            tracing::warn!(worker, error = %e, "receive failed");
            Received::Nothing
        }
    };
    let Some(oldest) = oldest else {
        return recv(rx, true);
    };
    if let got @ Received::Datagrams(_) = recv(rx, false) {
        return got;
    }
    if !doorbell.arm(oldest) {
        return Received::Published;
    }
    let mut fds = [
        PollFd::new(socket.as_fd(), PollFlags::POLLIN),
        PollFd::new(doorbell.as_fd(), PollFlags::POLLIN),
    ];
    let ready = poll(
        &mut fds,
        u16::try_from(sleep.as_millis()).unwrap_or(u16::MAX),
    );
    let datagram = fds[0].any().unwrap_or(false);
    let rang = fds[1].any().unwrap_or(false);
    doorbell.disarm();
    match ready {
        Ok(_) if datagram => recv(rx, false),
        Ok(_) if rang => Received::Published,
        Ok(_) | Err(nix::errno::Errno::EINTR) => Received::Nothing,
        Err(e) => {
            tracing::warn!(worker, error = %e, "poll failed");
            Received::Nothing
        }
    }
}

/// Adds a reply to the send batch, sending the batch first when it is full (and the reply on
/// its own if even an empty batch refuses it).
pub(crate) fn queue<S: WorkerSocket>(
    socket: &S,
    worker: usize,
    tx: &mut S::Batch,
    out: &[u8],
    meta: &S::Meta,
    stats: &WorkerStats,
) {
    if S::push(tx, out, meta) {
        return;
    }
    send_all(socket, worker, tx, stats);
    if !S::push(tx, out, meta)
        && let Err(e) = socket.send(out, meta)
    {
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(worker, error = %e, ?meta, "send failed");
    }
}

/// Sends the batch (one sendmmsg), counting what the kernel refused.
pub(crate) fn send_all<S: WorkerSocket>(
    socket: &S,
    worker: usize,
    tx: &mut S::Batch,
    stats: &WorkerStats,
) {
    if S::is_empty(tx) {
        return;
    }
    match socket.send_batch(tx) {
        Ok(r) if r.failed > 0 => {
            stats
                .send_errors
                .fetch_add(r.failed as u64, Ordering::Relaxed);
            tracing::debug!(worker, failed = r.failed, error = ?r.first_error, "some replies were not sent");
        }
        Ok(_) => {}
        Err(e) => {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(worker, error = %e, "send failed");
        }
    }
}

/// The journal directory inside the state directory.
pub fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// Takes the state directory's lock file, so two servers (or a server and an offline journal
/// tool) never write one journal. Held until the returned file is dropped.
pub fn lock_state_dir(state_dir: &Path) -> anyhow::Result<File> {
    std::fs::create_dir_all(state_dir)
        .with_context(|| format!("state_dir: cannot create {}", state_dir.display()))?;
    let path = state_dir.join("lessor.lock");
    let f = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("cannot open {}", path.display()))?;
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => bail!(
            "state_dir {} is in use by another lessor process (lock {})",
            state_dir.display(),
            path.display()
        ),
        Err(std::fs::TryLockError::Error(e)) => {
            Err(e).with_context(|| format!("cannot lock {}", path.display()))
        }
    }
}

/// Journal options from the config.
pub fn journal_options(config: &Config, lanes: usize) -> lessor_journal::Options {
    let mut o = lessor_journal::Options::new(journal_dir(&config.state_dir), lanes);
    o.sync = match config.journal.sync {
        SyncMode::Group => lessor_journal::SyncPolicy::Group,
        SyncMode::Interval { interval_ms } => {
            lessor_journal::SyncPolicy::Interval(Duration::from_millis(interval_ms))
        }
        SyncMode::None => lessor_journal::SyncPolicy::None,
    };
    // Compaction is background work: on a core it shares with a worker it should take the
    // core while the worker waits, not from it. Nice 10 weighs it at about a tenth of a
    // worker, so it still finishes under full load.
    o.on_background_start = Some(lessor_journal::ThreadHook(Arc::new(|| {
        if let Err(e) = lessor_net::set_current_thread_nice(BACKGROUND_NICE) {
            tracing::warn!(error = %e, "cannot lower a journal background thread's priority");
        }
    })));
    o.preallocate = config.journal.preallocate;
    if config.journal.realtime_sync {
        o.around_sync = Some(realtime_sync());
    }
    o
}

/// The nice value of the journal's compaction and preallocation threads.
const BACKGROUND_NICE: i32 = 10;

/// The writer's real-time priority while it waits in `fdatasync`: the lowest, since all it
/// must beat is the normal class.
const SYNC_RT_PRIORITY: i32 = 1;

/// Hooks that put the journal writer in the real-time class for the length of each
/// `fdatasync`. On a machine whose cores are busy (workers, the load itself), a normal thread
/// woken by the disk waits for the scheduler's next slot, up to a tick of several
/// milliseconds, and every ACK waits with it; a real-time one runs at once. Outside the sync
/// the writer drains channels whose senders it could otherwise preempt mid-send (they spin
/// and yield, which a real-time thread never lets a normal one do), so the class is left the
/// moment the sync returns. If the kernel refuses (no `CAP_SYS_NICE`), lessor warns once and
/// stops asking.
fn realtime_sync() -> (lessor_journal::ThreadHook, lessor_journal::ThreadHook) {
    // Both hooks run on the writer thread, one after the other: while the kernel has not
    // refused, `before` has entered the class and `after` leaves it.
    let refused = Arc::new(AtomicBool::new(false));
    let before = {
        let refused = refused.clone();
        lessor_journal::ThreadHook(Arc::new(move || {
            if !refused.load(Ordering::Relaxed)
                && let Err(e) = lessor_net::set_current_thread_realtime(Some(SYNC_RT_PRIORITY))
            {
                refused.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "journal.realtime_sync: the kernel refuses a real-time class; syncing in the normal class (ACKs may wait a scheduler tick more on a busy machine)");
            }
        }))
    };
    let after = lessor_journal::ThreadHook(Arc::new(move || {
        if !refused.load(Ordering::Relaxed)
            && let Err(e) = lessor_net::set_current_thread_realtime(None)
        {
            tracing::error!(error = %e, "cannot return the journal writer to the normal class");
        }
    }));
    (before, after)
}

/// Puts one replayed lease back into the engine, on the shard its client steers to, one at a
/// time. False if the record could not be restored. Startup uses [`replay_journal`] (bulk);
/// this stays for tools that compare the two.
pub fn restore_into(engine: &Engine, rec: &LeaseRecord) -> bool {
    let Some(lease) = rec.to_lease() else {
        return false;
    };
    engine.restore(shard_of(engine, rec), lease).is_ok()
}

fn shard_of(engine: &Engine, rec: &LeaseRecord) -> usize {
    v4::steer_hash(&rec.chaddr_field()) as usize % engine.shards()
}

/// Opens the journal and replays it into the (fresh) engine in bulk, then raises the engine's
/// versions above everything the journal held. Returns the journal ready for appending, the
/// replay report and the number of records that could not be restored.
pub fn replay_journal(
    config: &Config,
    engine: &Engine,
    engine6: Option<&V6Engine>,
    lanes: usize,
) -> anyhow::Result<(Journal<LeaseRecord>, ReplayReport, u64)> {
    let dir = journal_dir(&config.state_dir);
    // An upper bound of the live records (snapshot footer plus segment records), so the
    // engine's tables are sized once; 0 for a new journal.
    let expected = lessor_journal::stats_offline(&dir).map_or(0, |s| {
        s.snapshot.map_or(0, |x| x.records) + s.segment_records
    });
    let expected = usize::try_from(expected).unwrap_or(0);
    let mut restorer = engine.restorer(expected);
    // DHCPv6 records go to the DHCPv6 engine; without one (v6 not configured) they are
    // kept in the journal but not served, and counted as skipped.
    let mut restorer6 = engine6.map(|e| (e, e.restorer(0)));
    let mut skipped = 0u64;
    let (journal, replay) = Journal::open_dir(journal_options(config, lanes), |rec: LeaseRecord| {
        let ok = if rec.is_v6() {
            match (&mut restorer6, rec.to_v6_lease()) {
                (Some((e, r)), Some(lease)) => {
                    let shard = e.owner(lease.client.duid());
                    r.add(shard, lease).is_ok()
                }
                _ => false,
            }
        } else {
            rec.to_lease_ref()
                .is_some_and(|l| restorer.add_ref(shard_of(engine, &rec), l).is_ok())
        };
        if !ok {
            skipped += 1;
        }
    })
    .with_context(|| {
        format!(
            "replaying the journal in {} (if it is damaged, `lessor journal repair --state-dir {}` salvages every valid record)",
            dir.display(),
            config.state_dir.display()
        )
    })?;
    skipped += restorer.finish().refused;
    engine.advance_versions(replay.max_version);
    if let Some((e, r)) = restorer6 {
        skipped += r.finish().refused;
        e.advance_versions(replay.max_version);
    }
    Ok((journal, replay, skipped))
}

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
    stats6: Arc<[WorkerStats]>,
    engine: Arc<Engine>,
    engine6: Option<Arc<V6Engine>>,
    ctx6: Option<Arc<Assignments6>>,
    listen: Vec<String>,
    listen6: Vec<String>,
    journal: Journal<LeaseRecord>,
    replay: ReplayReport,
    skipped: u64,
    _lock: File,
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

        // Replay before any socket opens: the engine must hold exactly what was acknowledged.
        let lock = lock_state_dir(&config.state_dir)?;
        let v6_on = config.v6.enabled();
        let (ctx6, engine6) = if v6_on {
            let duid = v6::server_duid(config).with_context(|| {
                format!(
                    "reading or creating the server DUID in {}",
                    config.state_dir.display()
                )
            })?;
            let infos6: Vec<v6::InterfaceInfo> = chosen
                .iter()
                .map(|i| v6::InterfaceInfo {
                    index: i.index,
                    name: i.name.clone(),
                    addrs: i.v6.iter().map(|(a, _)| *a).collect(),
                })
                .collect();
            let table = config
                .load_assignments()
                .context("loading v6.assignments_file")?;
            let ctx6 = V6Context::new(config, &duid, &infos6, Arc::new(table));
            let engine6 = V6Engine::new(ctx6.engine_config(workers))
                .context("building the DHCPv6 lease engine")?;
            (
                Some(Arc::new(Assignments6::new(ctx6))),
                Some(Arc::new(engine6)),
            )
        } else {
            (None, None)
        };
        // A lane per worker thread: the DHCPv4 workers', then the DHCPv6 workers'.
        let lanes = if v6_on { 2 * workers } else { workers };
        let (journal, replay, skipped) =
            replay_journal(config, &engine, engine6.as_deref(), lanes)?;

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
        if workers > 1 {
            // The kernel hands each datagram to the worker whose shard owns its client
            // (invariant 3), so a worker rarely touches another shard.
            lessor_net::attach_steering(&sockets).context("attaching the steering program")?;
        }
        let cores = lessor_net::available_cores();
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
            let lane = journal.lane(k);
            let w = Worker {
                k,
                workers,
                core: cores.get(k % cores.len().max(1)).copied(),
                socket,
                doorbell: lane
                    .doorbell()
                    .context("creating a worker's journal doorbell")?,
                lane,
                ctx: Arc::clone(&ctx),
                engine: Arc::clone(&engine),
                stop: Arc::clone(&stop),
                stats: Arc::clone(&stats),
                allowed: allowed.clone(),
                names: Arc::clone(&names),
                max_backlog: config.journal.max_backlog,
            };
            handles.push(
                thread::Builder::new()
                    .name(format!("lessor-v4-{k}"))
                    .spawn(move || w.run())
                    .context("spawning a worker thread")?,
            );
        }
        let mut listen6 = Vec::new();
        let stats6: Arc<[WorkerStats]> = if v6_on {
            (0..workers).map(|_| WorkerStats::default()).collect()
        } else {
            Arc::new([])
        };
        if let (Some(ctx6), Some(engine6)) = (&ctx6, &engine6) {
            let bind6 = if config.interfaces.is_empty() {
                Ipv6Addr::LOCALHOST
            } else {
                Ipv6Addr::UNSPECIFIED
            };
            // Clients on a served link send to ff02::1:2; loopback carries no multicast.
            let multicast: Vec<u32> = chosen
                .iter()
                .filter(|i| !i.is_loopback)
                .map(|i| i.index)
                .collect();
            let sockets6 = lessor_net::open_v6_group(&V6SocketConfig {
                bind: bind6,
                port: config.v6.port,
                device: device.clone(),
                workers,
                recv_buffer: Some(4 << 20),
                send_buffer: Some(4 << 20),
                multicast_ifindexes: multicast,
            })
            .with_context(|| format!("opening UDP [{bind6}]:{} for DHCPv6", config.v6.port))?;
            if workers > 1 {
                // By the client's DUID, through relay layers: one relay's clients spread over
                // the workers that own them instead of all landing on one by 4-tuple.
                lessor_net::attach_steering6(&sockets6)
                    .context("attaching the DHCPv6 steering program")?;
            }
            listen6 = if infos.is_empty() {
                vec![format!("[{bind6}]:{}", config.v6.port)]
            } else {
                infos
                    .iter()
                    .map(|i| format!("[{bind6}]:{} on {}", config.v6.port, i.name))
                    .collect()
            };
            for (k, socket) in sockets6.into_iter().enumerate() {
                let lane = journal.lane(workers + k);
                let w = Worker6 {
                    k,
                    workers,
                    core: cores.get(k % cores.len().max(1)).copied(),
                    socket,
                    doorbell: lane
                        .doorbell()
                        .context("creating a worker's journal doorbell")?,
                    lane,
                    ctx: Arc::clone(ctx6),
                    engine: Arc::clone(engine6),
                    stop: Arc::clone(&stop),
                    stats: Arc::clone(&stats6),
                    allowed: allowed.clone(),
                    max_backlog: config.journal.max_backlog,
                };
                handles.push(
                    thread::Builder::new()
                        .name(format!("lessor-v6-{k}"))
                        .spawn(move || w.run())
                        .context("spawning a DHCPv6 worker thread")?,
                );
            }
        }
        Ok(Server {
            stop,
            workers: handles,
            stats,
            stats6,
            engine,
            engine6,
            ctx6,
            listen,
            listen6,
            journal,
            replay,
            skipped,
            _lock: lock,
        })
    }

    /// Where the server listens, for the startup message.
    pub fn listening(&self) -> &[String] {
        &self.listen
    }

    /// Where the DHCPv6 workers listen (empty when DHCPv6 is off).
    pub fn listening6(&self) -> &[String] {
        &self.listen6
    }

    /// The lease engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The DHCPv6 lease engine, when DHCPv6 is on.
    pub fn engine6(&self) -> Option<&V6Engine> {
        self.engine6.as_deref()
    }

    /// Reloads `v6.assignments_file` into a new DHCPv6 context (the workers switch between
    /// two batches; no lease or packet is lost). On error the old table stays in use.
    /// Returns the number of assignments now loaded; `Ok(None)` when DHCPv6 is off.
    pub fn reload_assignments(&self, config: &Config) -> anyhow::Result<Option<usize>> {
        let Some(ctx6) = &self.ctx6 else {
            return Ok(None);
        };
        let table = config
            .load_assignments()
            .context("reloading v6.assignments_file")?;
        let n = table.len();
        ctx6.replace(ctx6.current().with_assignments(Arc::new(table)));
        Ok(Some(n))
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
    pub fn join(mut self) -> anyhow::Result<String> {
        for h in std::mem::take(&mut self.workers) {
            let _ = h.join();
        }
        let summary = self.summary();
        self.journal.shutdown().context("closing the journal")?;
        Ok(summary)
    }

    /// The counter summary so far (what [`Server::join`] returns at the end).
    pub fn summary(&self) -> String {
        let mut summary = stats::summary(&self.stats);
        if self.engine6.is_some() {
            summary.push(' ');
            summary.push_str(&stats::summary6(&self.stats6));
        }
        summary
    }
}

struct Worker {
    k: usize,
    workers: usize,
    /// The core this worker pins itself to.
    core: Option<usize>,
    socket: V4Socket,
    lane: Lane<LeaseRecord>,
    /// Rung by the journal writer when this lane's watermark moves.
    doorbell: Doorbell,
    ctx: Arc<V4Context>,
    engine: Arc<Engine>,
    stop: Arc<AtomicBool>,
    stats: Arc<[WorkerStats]>,
    allowed: Option<Vec<u32>>,
    names: Arc<Vec<(u32, String)>>,
    /// `journal.max_backlog`.
    max_backlog: u64,
}

/// The counter of requests dropped because the journal's backlog was full.
pub(crate) const JOURNAL_BACKLOG: &str = "journal_backlog";

impl Worker {
    fn run(mut self) {
        let stats = Arc::clone(&self.stats);
        let stats = &stats[self.k];
        if let Some(core) = self.core
            && let Err(e) = lessor_net::pin_current_thread(core)
        {
            tracing::warn!(worker = self.k, core, error = %e, "could not pin the worker to its core");
        }
        let (mut rx, mut tx) = match (
            RecvBatch::new(BATCH, RECV_BUF),
            SendBatch::new(BATCH, MAX_REPLY),
        ) {
            (Ok(rx), Ok(tx)) => (rx, tx),
            (Err(e), _) | (_, Err(e)) => {
                tracing::error!(worker = self.k, error = %e, "cannot allocate packet batches");
                return;
            }
        };
        let mut out = Vec::with_capacity(RECV_BUF);
        let mut events: Vec<LeaseEvent> = Vec::with_capacity(16);
        let mut scratch = v4::Scratch::default();
        let mut pending: WaitQueue<(Destination, Ipv4Addr, ReplyKind)> =
            WaitQueue::new(MAX_PENDING, MAX_REPLY);
        let mut last_reclaim = Instant::now();
        set_idle_timeout(&self.socket, self.k);
        while !self.stop.load(Ordering::Relaxed) {
            if last_reclaim.elapsed() >= RECLAIM_EVERY {
                last_reclaim = Instant::now();
                self.engine
                    .reclaim(self.k, now(), RECLAIM_BUDGET, &mut events);
                self.persist(&mut events);
            }
            self.flush(&mut pending, &mut tx, stats);
            let Received::Datagrams(_) = receive(
                &self.socket,
                &mut rx,
                &self.doorbell,
                pending.oldest(),
                IDLE_POLL,
                self.k,
            ) else {
                continue;
            };
            let now = now();
            // Invariant 6 for the journal: while this lane holds more than max_backlog
            // records that are not durable (a slow or full disk), requests that would add
            // more are dropped and counted; the rest (DISCOVER, INFORM) is still answered.
            let backlogged = self.lane.backlog() > self.max_backlog;
            for (data, meta) in rx.iter() {
                if self.workers > 1 && v4::owner_shard(data, self.workers) != self.k {
                    // Linux hands a broadcast datagram to every socket of the reuseport group
                    // (the steering program only sees unicast): only the owner's worker
                    // answers it.
                    if meta.dst != meta.local {
                        continue;
                    }
                    stats.other_shard.fetch_add(1, Ordering::Relaxed);
                }
                stats.received.fetch_add(1, Ordering::Relaxed);
                if let Some(allowed) = &self.allowed
                    && !allowed.contains(&meta.ifindex)
                {
                    continue;
                }
                if backlogged && v4::writes_lease(data, &mut scratch) {
                    stats.no_reply_label(JOURNAL_BACKLOG);
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
                    data,
                    &arrival,
                    now,
                    &mut scratch,
                    &mut out,
                    &mut events,
                );
                let ticket = self.persist(&mut events);
                match outcome {
                    Outcome::Reply(reply) => match ticket {
                        // Invariant 1: a reply that binds waits until its lease is durable.
                        Some(t) if reply.needs_durable && t > self.lane.durable() => {
                            if pending.push(t, &out, (reply.dst, reply.src, reply.kind)) {
                                // The lease is still recorded; only this reply is lost.
                                stats.overload_drops.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                        _ => {
                            self.queue(&mut tx, &out, reply.dst, reply.src, stats);
                            stats.replied(reply.kind);
                        }
                    },
                    Outcome::NoReply(why) => {
                        tracing::debug!(worker = self.k, reason = why.label(), src = %meta.src, "no reply");
                        stats.no_reply(why);
                    }
                }
            }
            self.send_all(&mut tx, stats);
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
            self.flush(&mut pending, &mut tx, stats);
        }
    }

    /// Sends every waiting reply whose lease is now durable, oldest first.
    fn flush(
        &self,
        pending: &mut WaitQueue<(Destination, Ipv4Addr, ReplyKind)>,
        tx: &mut SendBatch,
        stats: &WorkerStats,
    ) {
        if pending.is_empty() {
            return;
        }
        pending.release(self.lane.durable(), |buf, &(dst, src, kind)| {
            self.queue(tx, buf, dst, src, stats);
            stats.replied(kind);
        });
        self.send_all(tx, stats);
    }

    /// Hands lease events to the journal; returns the ticket of the last one.
    /// Journals `events` (draining it) and returns the last ticket. Every expiry passes
    /// here once, whether the sweep or a request found it, so this is where it is counted.
    fn persist(&mut self, events: &mut Vec<LeaseEvent>) -> Option<Ticket> {
        let mut last = None;
        let mut expired = 0;
        for e in events.drain(..) {
            expired += u64::from(e.kind == EventKind::Expired);
            last = Some(self.lane.append(&LeaseRecordRef::from_event(&e)));
        }
        if expired > 0 {
            self.stats[self.k]
                .expired
                .fetch_add(expired, Ordering::Relaxed);
        }
        last
    }

    /// Adds a reply to the send batch (routing it per RFC 2131 §4.1); sends the batch first
    /// when it is full.
    fn queue(
        &self,
        tx: &mut SendBatch,
        out: &[u8],
        dst: Destination,
        src: Ipv4Addr,
        stats: &WorkerStats,
    ) {
        let meta = self.route(dst, src);
        queue(&self.socket, self.k, tx, out, &meta, stats);
    }

    fn send_all(&self, tx: &mut SendBatch, stats: &WorkerStats) {
        send_all(&self.socket, self.k, tx, stats);
    }

    /// Where a reply goes on the wire. A unicast to a client that has no address yet needs
    /// an ARP entry first; without one (no privilege, unknown interface) it is broadcast.
    fn route(&self, dst: Destination, src: Ipv4Addr) -> SendMeta {
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
                let to = match name.map(|n| self.socket.set_arp_entry(n, ip, mac)) {
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
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::Arc;
    use std::time::Duration;

    use lessor_journal::testing::FaultyFs;
    use lessor_journal::{Journal, Options, Ticket};
    use lessor_net::{RecvBatch, V4SocketConfig};

    use super::{Received, receive};
    use crate::lease_record::{LeaseKey, LeaseRecord};

    fn record(n: u32) -> LeaseRecord {
        LeaseRecord {
            version: u64::from(n),
            event: 0,
            key: LeaseKey::V4(n),
            client: vec![1, 2, 3],
            htype: 1,
            hw: vec![2, 0, 0, 0, 0, 9],
            hostname: None,
            state: 1,
            starts: 100,
            expires: 200,
        }
    }

    /// What bounds a hung test's sleeps; a working doorbell ends them within milliseconds.
    const LONG: Duration = Duration::from_secs(60);

    /// A worker whose reply waits for the journal sleeps in `receive` until the writer rings
    /// its doorbell (not until the poll timeout), wakes for a datagram while it waits, and
    /// without a waiting reply just receives.
    #[test]
    fn receive_wakes_on_the_journal_publish_and_on_datagrams() {
        let fs = FaultyFs::new();
        let (journal, _) =
            Journal::<LeaseRecord>::open(Options::new("/j", 1), Arc::new(fs.clone()), |_| {})
                .unwrap();
        let mut lane = journal.lane(0);
        let doorbell = lane.doorbell().unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let socket = lessor_net::open_v4_group(&V4SocketConfig {
            bind: Ipv4Addr::LOCALHOST,
            port,
            ..V4SocketConfig::default()
        })
        .unwrap()
        .remove(0);
        super::set_idle_timeout(&socket, 0);
        let mut rx = RecvBatch::new(4, super::RECV_BUF).unwrap();

        // The writer stalls on the segment: the ticket cannot become durable yet.
        fs.block_writes(".log");
        let t = lane.append(&record(1));
        assert!(fs.wait_blocked(Duration::from_secs(10)));
        let unblock = std::thread::spawn({
            let fs = fs.clone();
            move || {
                std::thread::sleep(Duration::from_millis(50));
                fs.unblock();
            }
        });
        // No datagram comes; only the publish can end this sleep (LONG bounds a hung test).
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, Some(t), LONG, 0),
            Received::Published
        );
        assert!(lane.durable() >= t);
        unblock.join().unwrap();

        // A datagram ends the wait too, while the journal is stalled again.
        fs.block_writes(".log");
        let t = lane.append(&record(2));
        assert!(fs.wait_blocked(Duration::from_secs(10)));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let send = std::thread::spawn({
            let client = client.try_clone().unwrap();
            move || {
                std::thread::sleep(Duration::from_millis(50));
                client.send_to(b"hello", ("127.0.0.1", port)).unwrap();
            }
        });
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, Some(t), LONG, 0),
            Received::Datagrams(1)
        );
        send.join().unwrap();
        assert!(lane.durable() < t);
        fs.unblock();
        assert!(lane.wait_durable(t, Duration::from_secs(10)));
        // Durable already: no sleep at all.
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, Some(t), LONG, 0),
            Received::Published
        );
        // Nothing waits: a plain blocking receive.
        client.send_to(b"again", ("127.0.0.1", port)).unwrap();
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, None::<Ticket>, LONG, 0),
            Received::Datagrams(1)
        );
        journal.shutdown().unwrap();
    }

    /// The hooks put the calling thread in the real-time class and take it out again (or,
    /// without the privilege, leave it alone).
    #[test]
    fn realtime_sync_hooks_enter_and_leave_the_realtime_class() {
        std::thread::spawn(|| {
            let (before, after) = super::realtime_sync();
            assert!(!lessor_net::current_thread_is_realtime());
            let allowed = lessor_net::set_current_thread_realtime(Some(1)).is_ok();
            lessor_net::set_current_thread_realtime(None).unwrap();
            for _ in 0..3 {
                (before.0)();
                assert_eq!(lessor_net::current_thread_is_realtime(), allowed);
                (after.0)();
                assert!(!lessor_net::current_thread_is_realtime());
            }
        })
        .join()
        .unwrap();
    }
}
