//! The writer thread: takes the frames the lanes have encoded, writes each batch with one
//! write, syncs once per batch (group commit), publishes per-lane durable watermarks, rotates
//! segments, and survives IO errors by starting a new segment and rewriting what was not yet
//! durable.

use std::io;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering, fence};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, OnceLock};
use std::thread::{self, Thread};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TryRecvError};
use crossbeam_utils::Backoff;
use nix::sys::eventfd::EventFd;

use crate::CompactReport;
use crate::compact::CompactorMsg;
use crate::error::{Error, Result};
use crate::format::{self, SEGMENT_HEADER_LEN, SegmentHeader};
use crate::fs::{Fs, FsFile};
use crate::histogram::Histogram;
use crate::journal::{Health, Options, Stats, SyncPolicy, ThreadHook};
use crate::spare::Spares;

/// Starting room of a lane's queue and of the writer's spare: about 750 records. The buffers
/// grow past it when a batch is bigger (a slow disk), and keep what they grew to, so a steady
/// server appends without allocating whatever its first batches were.
const LANE_BUFFER: usize = 64 << 10;
/// Starting room of the writer's batch buffer (all lanes' frames since the last sync).
const BATCH_BUFFER: usize = 1 << 20;

/// First wait before retrying after a write or sync error.
const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Longest wait between retries.
const RETRY_MAX: Duration = Duration::from_secs(5);

/// One lane's queue of encoded frames, its durable watermark, the condition variable
/// [`Lane::wait_durable`] sleeps on, and the lane's doorbell: an eventfd the writer makes
/// readable when the watermark moves while the lane's worker waits for it in `poll` (see
/// [`Doorbell::arm`]).
///
/// Aligned to two cache lines so that workers appending on neighbouring lanes do not write
/// to the same line.
///
/// [`Lane::wait_durable`]: crate::Lane::wait_durable
/// [`Doorbell::arm`]: crate::Doorbell::arm
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct LaneState {
    /// Frames encoded by the lane's worker and not yet taken by the writer.
    pub(crate) queue: Mutex<Queued>,
    /// The lane's last ticket, stored after its frame is queued: the writer's look for work
    /// without taking the lock.
    pub(crate) queued: AtomicU64,
    pub(crate) durable: AtomicU64,
    pub(crate) lock: Mutex<()>,
    pub(crate) cv: Condvar,
    /// Threads inside `wait_durable`: without any, a publish makes no futex call.
    pub(crate) waiters: AtomicUsize,
    pub(crate) bell: OnceLock<EventFd>,
    /// The worker sleeps on the doorbell: the next publish rings it (once).
    pub(crate) armed: AtomicBool,
}

/// What a lane has handed over since the writer last took its frames.
#[derive(Debug, Default)]
pub(crate) struct Queued {
    /// Frames (`len | crc | payload`), in ticket order.
    pub(crate) bytes: Vec<u8>,
    /// Frames in `bytes`.
    pub(crate) records: u64,
    /// The ticket of the last frame in `bytes`.
    pub(crate) last: u64,
    /// The lane's last ticket, whether its record was queued or refused.
    pub(crate) ticket: u64,
    /// The first record that could not be encoded: its ticket, and why.
    pub(crate) refused: Option<(u64, String)>,
    /// The writer has stopped: records go nowhere and their tickets never become durable.
    pub(crate) closed: bool,
}

impl LaneState {
    pub(crate) fn queue(&self) -> MutexGuard<'_, Queued> {
        self.queue.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub(crate) fn publish(&self, ticket: u64) {
        // SeqCst on both sides: a waiter announces itself (`waiters`, `armed`) and then reads
        // the watermark, the writer stores the watermark and then reads the announcements,
        // so at least one of the two sees the other and no waiter sleeps through a publish.
        self.durable.store(ticket, Ordering::SeqCst);
        if self.armed.swap(false, Ordering::SeqCst)
            && let Some(bell) = self.bell.get()
        {
            // Never fails short of a counter overflow (2^64 - 1 rings); a missed ring costs
            // the worker its poll timeout, nothing else.
            let _ = bell.write(1);
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            // Taking the lock orders this with a waiter between its check and its sleep.
            let _g = self.lock.lock().unwrap_or_else(|p| p.into_inner());
            self.cv.notify_all();
        }
    }
}

/// Declares [`Counters`] from one list of names, each also a field of [`Stats`], and the
/// load of them all into a `Stats`.
macro_rules! counters {
    ($($name:ident),* $(,)?) => {
        /// Counters behind [`Stats`].
        #[derive(Debug, Default)]
        pub(crate) struct Counters {
            $(pub(crate) $name: AtomicU64,)*
        }

        impl Counters {
            /// Every counter, loaded one by one (relaxed: the values are not one instant's).
            pub(crate) fn load(&self, last_error: Option<String>, health: Health) -> Stats {
                Stats {
                    $($name: self.$name.load(Ordering::Relaxed),)*
                    last_error,
                    health,
                }
            }
        }
    };
}

counters!(
    appended,
    bytes,
    batches,
    syncs,
    last_batch,
    segments,
    active_segment,
    snapshot_seq,
    compactions,
    compaction_failures,
    write_failures,
    preallocated,
    spares,
);

/// Upper bounds of the sync duration histogram: 50 us to 1 s.
static SYNC_NANOS: [u64; 14] = [
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    50_000_000,
    100_000_000,
    250_000_000,
    500_000_000,
    1_000_000_000,
];

/// Upper bounds of the batch size histogram, in records.
static BATCH_RECORDS: [u64; 12] = [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 4096];

/// State shared by the journal handle, its lanes, the writer and the compactor.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) lanes: Vec<LaneState>,
    pub(crate) counters: Counters,
    /// How long each `fdatasync` of a batch took, in nanoseconds.
    pub(crate) sync_nanos: Histogram,
    /// Records per write batch.
    pub(crate) batch_records: Histogram,
    pub(crate) health: Mutex<Health>,
    pub(crate) last_error: Mutex<Option<String>>,
    /// The writer thread, for waking it (set by the writer before it first sleeps).
    writer: OnceLock<Thread>,
    /// The writer is about to sleep or sleeps: the next append wakes it.
    writer_idle: AtomicBool,
    /// Where the frames synced in this run are, for stream followers.
    pub(crate) stream: crate::stream::StreamLog,
    /// Holds the lanes' watermarks to what a synchronous partner acknowledged, once made.
    pub(crate) gate: OnceLock<crate::stream::GateState>,
}

impl Shared {
    pub(crate) fn new(lanes: usize) -> Self {
        Shared {
            lanes: (0..lanes)
                .map(|_| LaneState {
                    queue: Mutex::new(Queued {
                        bytes: Vec::with_capacity(LANE_BUFFER),
                        ..Queued::default()
                    }),
                    ..LaneState::default()
                })
                .collect(),
            counters: Counters::default(),
            sync_nanos: Histogram::new(&SYNC_NANOS),
            batch_records: Histogram::new(&BATCH_RECORDS),
            health: Mutex::new(Health::Ok),
            last_error: Mutex::new(None),
            writer: OnceLock::new(),
            writer_idle: AtomicBool::new(false),
            stream: crate::stream::StreamLog::default(),
            gate: OnceLock::new(),
        }
    }

    /// After a lane has queued a frame: wakes the writer if it sleeps (or is about to). The
    /// SeqCst fences here and in [`Writer::wait`] order the queueing with the writer's look
    /// for work, so that at least one of the two sees the other: either the writer finds the
    /// frame before it sleeps, or this sees it idle and unparks it. While the writer is busy
    /// this is one fence and one load, no syscall.
    pub(crate) fn wake_writer(&self) {
        fence(Ordering::SeqCst);
        if self.writer_idle.load(Ordering::Relaxed)
            && self.writer_idle.swap(false, Ordering::Acquire)
            && let Some(w) = self.writer.get()
        {
            w.unpark();
        }
    }

    /// After a control message: wakes the writer whatever it is doing (the fence pairs with
    /// the one in [`Writer::wait`] as in [`Shared::wake_writer`]).
    pub(crate) fn kick_writer(&self) {
        fence(Ordering::SeqCst);
        if let Some(w) = self.writer.get() {
            w.unpark();
        }
    }

    pub(crate) fn set_health(&self, h: Health) {
        *self.health.lock().unwrap_or_else(|p| p.into_inner()) = h;
    }

    pub(crate) fn set_last_error(&self, e: String) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e);
    }
}

/// Messages from the journal handle to the writer.
pub(crate) enum Ctl {
    /// Write and sync everything queued, then stop.
    Shutdown,
    /// Seal the active segment (if it holds records) and have everything sealed compacted.
    Compact(Option<Sender<Result<CompactReport>>>),
}

/// The segment being appended to.
#[derive(Debug)]
struct Active {
    file: Box<dyn FsFile>,
    seq: u64,
    path: PathBuf,
    /// The file's length when it was opened (a preallocated segment's full size).
    disk_len: u64,
}

/// The writer's state. Invariant: the active segment's length is `synced_len` plus the first
/// `written` bytes of `unsynced`; `unsynced` holds every byte received since the last
/// successful sync, so after any error it can be rewritten whole into a new segment.
pub(crate) struct Writer {
    pub(crate) fs: Arc<dyn Fs>,
    pub(crate) dir: PathBuf,
    pub(crate) policy: SyncPolicy,
    pub(crate) segment_bytes: u64,
    pub(crate) compact_bytes: u64,
    pub(crate) compact_segments: u64,
    pub(crate) shared: Arc<Shared>,
    pub(crate) ctl: Receiver<Ctl>,
    pub(crate) compactor: Sender<CompactorMsg>,
    /// Preallocated segments, when `Options::preallocate` is on.
    spares: Option<Spares>,
    around_sync: Option<(ThreadHook, ThreadHook)>,

    active: Option<Active>,
    /// The number the next segment gets.
    next_seq: u64,
    /// Valid length of segment `next_seq - 1`, for the next segment's header.
    prev_len: u64,
    synced_len: u64,
    unsynced: Vec<u8>,
    written: usize,
    /// Records in `unsynced`.
    unsynced_records: u64,
    /// The buffer swapped with a lane's queue when its frames are taken (kept for its
    /// capacity: taking frames allocates nothing once buffers have grown).
    spare: Vec<u8>,
    /// Per lane: the last ticket taken (queued or refused).
    taken: Vec<u64>,
    /// Per lane: the highest ticket copied into `unsynced` or synced before.
    received: Vec<u64>,
    /// Per lane: the highest ticket published durable.
    published: Vec<u64>,
    /// Per lane: the first ticket that could not be stored; the watermark stays below it.
    poisoned: Vec<Option<u64>>,
    /// The last write/sync error and when to retry.
    failing: Option<(String, Instant, Duration)>,
    /// A record that could not be encoded: health stays failing for good.
    poison_error: Option<String>,
    last_sync: Instant,
    /// The segment given up (sealed or abandoned) and the bytes it takes on disk; it counts
    /// as sealed once its successor's header is durable.
    pending_seal: Option<(u64, u64)>,
    last_sealed: u64,
    /// Disk bytes and number of the segments sealed since the last compaction was asked for.
    sealed_bytes: u64,
    sealed_segments: u64,
    /// The active segment is one an earlier run left, resumed. A compaction request seals it
    /// even while it holds no record, as the restart would have before segments were
    /// resumed: so a compaction asked for after a restart still covers everything up to it.
    active_reused: bool,
    /// Where [`Writer::start`] resumes the last segment: its number and where its records end.
    resume: Option<(u64, u64)>,
}

/// Where the writer starts, from the replay.
#[derive(Debug)]
pub(crate) struct Start {
    pub(crate) next_seq: u64,
    pub(crate) prev_len: u64,
    pub(crate) last_sealed: u64,
    /// Disk bytes and number of the sealed segments after the snapshot.
    pub(crate) sealed_bytes: u64,
    pub(crate) sealed_segments: u64,
    /// Resume this segment (the last one, `next_seq - 1`) where its records end, at this
    /// offset, instead of starting segment `next_seq`.
    pub(crate) resume: Option<(u64, u64)>,
}

impl std::fmt::Debug for Writer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Writer")
            .field("dir", &self.dir)
            .field("active", &self.active.as_ref().map(|a| a.seq))
            .field("synced_len", &self.synced_len)
            .field("unsynced", &self.unsynced.len())
            .field("failing", &self.failing)
            .finish_non_exhaustive()
    }
}

impl Writer {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        fs: Arc<dyn Fs>,
        dir: PathBuf,
        opts: &Options,
        shared: Arc<Shared>,
        ctl: Receiver<Ctl>,
        compactor: Sender<CompactorMsg>,
        start: Start,
        spares: Option<Spares>,
    ) -> Self {
        let n = shared.lanes.len();
        Writer {
            fs,
            dir,
            policy: opts.sync,
            segment_bytes: opts.segment_bytes,
            compact_bytes: opts.compact_bytes,
            compact_segments: opts.compact_segments,
            shared,
            ctl,
            compactor,
            spares,
            around_sync: opts.around_sync.clone(),
            active: None,
            next_seq: start.next_seq,
            prev_len: start.prev_len,
            synced_len: 0,
            unsynced: Vec::with_capacity(BATCH_BUFFER),
            written: 0,
            unsynced_records: 0,
            spare: Vec::with_capacity(LANE_BUFFER),
            taken: vec![0; n],
            received: vec![0; n],
            published: vec![0; n],
            poisoned: vec![None; n],
            failing: None,
            poison_error: None,
            last_sync: Instant::now(),
            pending_seal: None,
            last_sealed: start.last_sealed,
            sealed_bytes: start.sealed_bytes,
            sealed_segments: start.sealed_segments,
            active_reused: false,
            resume: start.resume,
        }
    }

    /// Opens the segment to append to (on the opening thread, so that an unwritable
    /// directory fails `open`): the last one, where its records end, or a new one.
    pub(crate) fn start(&mut self) -> Result<()> {
        if let Some((seq, end)) = self.resume.take() {
            let path = format::segment_path(&self.dir, seq);
            let disk_len = self
                .fs
                .file_len(&path)
                .map_err(|e| Error::io("stat", &path, e))?;
            let file = self
                .fs
                .open_at(&path, end)
                .map_err(|e| Error::io("resume segment", &path, e))?;
            self.activate(file, seq, path, disk_len, end);
            self.active_reused = true;
        } else {
            let path = format::segment_path(&self.dir, self.next_seq);
            if let Some(spares) = &mut self.spares {
                spares.fill_now();
            }
            self.open_segment()
                .map_err(|e| Error::io("start segment", path, e))?;
        }
        self.maybe_trigger_compaction();
        Ok(())
    }

    /// The thread's body. Returns when told to shut down, after a last write and sync.
    pub(crate) fn run(mut self) -> Result<()> {
        let _ = self.shared.writer.set(thread::current());
        let mut compact_requests = Vec::new();
        loop {
            self.wait();
            let mut shutdown = false;
            loop {
                match self.ctl.try_recv() {
                    Ok(Ctl::Shutdown) | Err(TryRecvError::Disconnected) => {
                        shutdown = true;
                        break;
                    }
                    Ok(Ctl::Compact(reply)) => compact_requests.push(reply),
                    Err(TryRecvError::Empty) => break,
                }
            }
            self.drain();
            if shutdown {
                return self.finish();
            }
            let retry_due = match &self.failing {
                Some((_, at, _)) => Instant::now() >= *at,
                None => true,
            };
            if retry_due {
                self.step(false);
            }
            if !compact_requests.is_empty() {
                if self.failing.is_none() && (self.active_has_records() || self.active_reused) {
                    self.rotate();
                }
                for reply in compact_requests.drain(..) {
                    let _ = self.compactor.send(CompactorMsg::Compact {
                        cut: self.last_sealed,
                        reply,
                    });
                }
                self.sealed_bytes = 0;
                self.sealed_segments = 0;
            }
        }
    }

    /// Blocks until a lane or the control channel has something, or a retry or interval
    /// sync is due.
    fn wait(&self) {
        let now = Instant::now();
        let timeout = match (&self.failing, self.policy) {
            (Some((_, at, _)), _) => Some(at.saturating_duration_since(now)),
            (None, SyncPolicy::Interval(d)) if !self.unsynced.is_empty() => {
                Some((self.last_sync + d).saturating_duration_since(now))
            }
            _ => None,
        };
        if timeout == Some(Duration::ZERO) {
            return;
        }
        let deadline = timeout.map(|d| now + d);
        self.shared.writer_idle.store(true, Ordering::SeqCst);
        // Pairs with the fences of `Shared::wake_writer` and `kick_writer`.
        fence(Ordering::SeqCst);
        // A short spin, then a few yields, before the futex sleep. When the writer shares a
        // core with a worker (one core, or more workers than cores) the yields are what lets
        // the worker run on and queue its next records before the writer sleeps; measured
        // without them, every sync that found nothing new cost a futex sleep and a wake-up
        // that preempted the worker one record later (a third more context switches per
        // lease). Appends during the spin unpark a thread that is not parked: an atomic swap,
        // no syscall.
        let backoff = Backoff::new();
        while !self.has_work() {
            if !backoff.is_completed() {
                backoff.snooze();
                continue;
            }
            // An unpark that came first makes this return at once; spurious returns only
            // cost a loop in `run`.
            match deadline {
                Some(at) => thread::park_timeout(at.saturating_duration_since(Instant::now())),
                None => thread::park(),
            }
            break;
        }
        self.shared.writer_idle.store(false, Ordering::Relaxed);
    }

    /// Whether a lane has queued frames not yet taken, or a control message waits.
    fn has_work(&self) -> bool {
        !self.ctl.is_empty()
            || self
                .shared
                .lanes
                .iter()
                .zip(&self.taken)
                .any(|(lane, &taken)| lane.queued.load(Ordering::Relaxed) != taken)
    }

    /// Takes every lane's queued frames into `unsynced`: a swap of buffers under the lane's
    /// lock and a copy, nothing encoded here (the lanes did that).
    fn drain(&mut self) {
        let mut n = 0u64;
        for k in 0..self.shared.lanes.len() {
            let lane = &self.shared.lanes[k];
            if lane.queued.load(Ordering::Relaxed) == self.taken[k] {
                continue;
            }
            let (records, last, refused) = {
                let mut q = lane.queue();
                std::mem::swap(&mut q.bytes, &mut self.spare);
                self.taken[k] = q.ticket;
                let taken = (q.records, q.last, q.refused.take());
                q.records = 0;
                taken
            };
            self.unsynced.extend_from_slice(&self.spare);
            self.spare.clear();
            if records > 0 {
                n += records;
                self.unsynced_records += records;
                self.received[k] = last;
            }
            if let Some((ticket, e)) = refused {
                self.poison(k, ticket, e);
            }
        }
        if n > 0 {
            self.shared
                .counters
                .appended
                .fetch_add(n, Ordering::Relaxed);
            self.shared.counters.last_batch.store(n, Ordering::Relaxed);
            self.shared.batch_records.record(n);
        }
    }

    /// A record that cannot be stored is a programming error (it encodes to nothing or to
    /// more than `MAX_RECORD_LEN`). It is not written, and its lane's watermark never passes
    /// it, so nothing from that lane is acknowledged from then on: failing closed is the only
    /// answer that keeps the durable-ACK invariant.
    fn poison(&mut self, lane: usize, ticket: u64, e: String) {
        tracing::error!(lane, ticket, error = %e, "journal record refused; this lane can no longer become durable");
        if self.poisoned[lane].is_none() {
            self.poisoned[lane] = Some(ticket);
        }
        let msg = format!("lane {lane} record {ticket} refused: {e}");
        self.shared.set_last_error(msg.clone());
        self.poison_error = Some(msg.clone());
        self.shared.set_health(Health::Failing { error: msg });
    }

    fn active_has_records(&self) -> bool {
        self.active.is_some()
            && (self.synced_len > SEGMENT_HEADER_LEN as u64 || !self.unsynced.is_empty())
    }

    /// Writes what is unwritten, syncs per policy, rotates if the segment is full. On error,
    /// enters (or stays in) the failing state.
    fn step(&mut self, force_sync: bool) {
        match self.try_step(force_sync) {
            Ok(()) => {
                if let Some((e, _, _)) = self.failing.take() {
                    tracing::info!(previous_error = %e, "journal writes succeed again");
                    if self.poison_error.is_none() {
                        self.shared.set_health(Health::Ok);
                    }
                }
            }
            Err(e) => self.fail(e),
        }
    }

    fn try_step(&mut self, force_sync: bool) -> io::Result<()> {
        if self.active.is_none() {
            self.open_segment()?;
        }
        if self.written < self.unsynced.len() {
            let a = self.active.as_mut().expect("active segment");
            a.file.write_all(&self.unsynced[self.written..])?;
            let n = (self.unsynced.len() - self.written) as u64;
            self.written = self.unsynced.len();
            self.shared.counters.bytes.fetch_add(n, Ordering::Relaxed);
            self.shared.counters.batches.fetch_add(1, Ordering::Relaxed);
            if self.policy != SyncPolicy::Group {
                // Interval and None: "durable" means handed to the kernel.
                self.publish();
            }
        }
        let len = self.synced_len + self.unsynced.len() as u64;
        let full = len >= self.segment_bytes;
        let sync = !self.unsynced.is_empty()
            && (force_sync
                || full
                || match self.policy {
                    SyncPolicy::Group => true,
                    SyncPolicy::Interval(d) => self.last_sync.elapsed() >= d,
                    SyncPolicy::None => false,
                });
        if sync {
            self.sync()?;
        }
        if full {
            self.rotate_now()?;
        }
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let a = self.active.as_mut().expect("active segment");
        let (segment, from, records) = (a.seq, self.synced_len, self.unsynced_records);
        if let Some((before, _)) = &self.around_sync {
            (before.0)();
        }
        let started = Instant::now();
        let synced = a.file.sync_data();
        if synced.is_ok() {
            let took = u64::try_from(started.elapsed().as_nanos()).unwrap_or(u64::MAX);
            self.shared.sync_nanos.record(took);
            self.synced_len += self.unsynced.len() as u64;
            self.unsynced.clear();
            self.written = 0;
            self.unsynced_records = 0;
            self.last_sync = Instant::now();
            self.shared.counters.syncs.fetch_add(1, Ordering::Relaxed);
            self.shared
                .stream
                .publish(segment, from, self.synced_len, records);
            // Still inside the hooks: a writer that has just left the real-time class can be
            // preempted by the worker it shares a core with, and the publish would then wait
            // for the scheduler's next slot (a tick, 3.3 ms at HZ 300) while the replies it
            // releases sit in the worker's queue.
            self.publish();
        }
        if let Some((_, after)) = &self.around_sync {
            (after.0)();
        }
        synced
    }

    /// Seals the active segment (synced by now) and starts the next one.
    fn rotate_now(&mut self) -> io::Result<()> {
        debug_assert!(self.unsynced.is_empty());
        if let Some(a) = self.active.take() {
            self.prev_len = self.synced_len;
            self.pending_seal = Some((a.seq, a.disk_len.max(self.synced_len)));
        }
        self.open_segment()
    }

    /// Syncs and rotates now (for a compaction request).
    fn rotate(&mut self) {
        let r = (|| {
            if !self.unsynced.is_empty() {
                if self.written < self.unsynced.len() {
                    let a = self.active.as_mut().expect("active segment");
                    a.file.write_all(&self.unsynced[self.written..])?;
                    self.written = self.unsynced.len();
                }
                self.sync()?;
            }
            self.rotate_now()
        })();
        if let Err(e) = r {
            self.fail(e);
        }
    }

    /// Creates segment `next_seq`: header, sync, directory sync. Only then does the number
    /// advance; a failed attempt is retried under the same name (`create` truncates).
    fn open_segment(&mut self) -> io::Result<()> {
        let seq = self.next_seq;
        let path = format::segment_path(&self.dir, seq);
        let (mut file, disk_len) = match self.spares.as_mut().and_then(Spares::take) {
            Some(spare) => {
                self.fs.rename(&spare, &path)?;
                self.shared
                    .counters
                    .preallocated
                    .fetch_add(1, Ordering::Relaxed);
                (self.fs.open_at(&path, 0)?, self.segment_bytes)
            }
            None => (self.fs.create(&path)?, 0),
        };
        let header = SegmentHeader {
            seq,
            prev_len: self.prev_len,
        };
        file.write_all(&header.encode())?;
        file.sync_data()?;
        self.fs.sync_dir(&self.dir)?;
        self.next_seq += 1;
        self.activate(file, seq, path, disk_len, SEGMENT_HEADER_LEN as u64);
        self.shared
            .counters
            .segments
            .fetch_add(1, Ordering::Relaxed);
        if let Some((sealed, disk)) = self.pending_seal.take() {
            self.last_sealed = sealed;
            self.sealed_bytes += disk;
            self.sealed_segments += 1;
            self.maybe_trigger_compaction();
        }
        Ok(())
    }

    /// Makes `a`, whose records end (synced) at `synced_len`, the segment appended to, and
    /// has a spare made for the next one.
    /// Makes `file` (segment `seq`, `disk_len` bytes on disk) the active segment, durable up
    /// to `synced_len`.
    fn activate(
        &mut self,
        file: Box<dyn FsFile>,
        seq: u64,
        path: PathBuf,
        disk_len: u64,
        synced_len: u64,
    ) {
        self.shared
            .counters
            .active_segment
            .store(seq, Ordering::Relaxed);
        self.active = Some(Active {
            file,
            seq,
            path,
            disk_len,
        });
        self.synced_len = synced_len;
        self.written = 0;
        self.active_reused = false;
        if let Some(spares) = &mut self.spares {
            spares.ask();
        }
    }

    fn maybe_trigger_compaction(&mut self) {
        let due = self.sealed_bytes >= self.compact_bytes
            || self.sealed_segments >= self.compact_segments;
        if due && self.last_sealed > 0 {
            let _ = self.compactor.send(CompactorMsg::Compact {
                cut: self.last_sealed,
                reply: None,
            });
            self.sealed_bytes = 0;
            self.sealed_segments = 0;
        }
    }

    /// After a write or sync error: the state of the file in the page cache is unknown (a
    /// failed fsync may have dropped dirty pages), so the segment is given up at its last
    /// synced length and everything since is rewritten into a new one on retry.
    fn fail(&mut self, e: io::Error) {
        let path = self.active.as_ref().map_or_else(
            || format::segment_path(&self.dir, self.next_seq),
            |a| a.path.clone(),
        );
        let msg = format!("{}: {e}", path.display());
        self.shared
            .counters
            .write_failures
            .fetch_add(1, Ordering::Relaxed);
        self.shared.set_last_error(msg.clone());
        if let Some(a) = self.active.take() {
            self.prev_len = self.synced_len;
            self.pending_seal = Some((a.seq, a.disk_len.max(self.synced_len)));
        }
        self.written = 0;
        let backoff = match &self.failing {
            Some((_, _, b)) => (*b * 2).min(RETRY_MAX),
            None => RETRY_FIRST,
        };
        tracing::error!(
            error = %msg, pending_records = self.unsynced_records, retry_in = ?backoff,
            "journal write or sync failed; nothing more is acknowledged until a retry succeeds in a new segment"
        );
        self.failing = Some((msg.clone(), Instant::now() + backoff, backoff));
        self.shared.set_health(Health::Failing { error: msg });
    }

    /// Publishes each lane's new durable watermark; the lanes of a peer gate go through it,
    /// tagged with the stream sequence their frames end at (the frames not synced yet get
    /// theirs in order when they are).
    fn publish(&mut self) {
        let gate = self.shared.gate.get();
        let gated = gate.map_or(0, crate::stream::GateState::gated);
        let mut moved = false;
        for k in 0..self.received.len() {
            let mut t = self.received[k];
            if let Some(p) = self.poisoned[k] {
                t = t.min(p - 1);
            }
            if t > self.published[k] {
                self.published[k] = t;
                if k < gated {
                    moved = true;
                } else {
                    self.shared.lanes[k].publish(t);
                }
            }
        }
        if moved && let Some(g) = gate {
            let seq = self.shared.stream.synced() + self.unsynced_records;
            g.push(seq, &self.published[..gated], &self.shared.lanes);
        }
    }

    /// Shutdown: one last write and sync of everything received. (Dropping the writer then
    /// closes the lanes.)
    fn finish(mut self) -> Result<()> {
        self.step(true);
        if let Some((e, _, _)) = self.failing.take() {
            // Hand the records back as not durable.
            return Err(Error::NotDurable {
                records: self.unsynced_records,
                error: e,
            });
        }
        Ok(())
    }
}

impl Drop for Writer {
    /// Whether the writer stopped or panicked: from now on the lanes' records go nowhere
    /// instead of piling up in memory, and what was queued and not taken is let go (its
    /// tickets never become durable).
    fn drop(&mut self) {
        for lane in &self.shared.lanes {
            let mut q = lane.queue();
            q.closed = true;
            q.bytes = Vec::new();
            q.records = 0;
        }
    }
}
