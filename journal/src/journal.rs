//! The running journal: options, the handle, lanes and their tickets.

use std::fmt;
use std::marker::PhantomData;
use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crossbeam_channel::Sender;
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::compact::{self, CompactReport, CompactorMsg};
use crate::error::{Error, Result};
use crate::fs::{DirLock, Fs, RealFs};
use crate::histogram::HistogramSnapshot;
use crate::replay::{self, Keep, ReplayReport};
use crate::spare::{self, Spares};
use crate::writer::{Ctl, Shared, Start, Writer};
use crate::{EncodesAs, Record, format};

/// When a record counts as durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Durable = `fdatasync`ed. Every batch is synced before its tickets are published, so a
    /// power loss loses nothing that was reported durable. The default, and the only policy
    /// that keeps the durable-ACK invariant (docs/ARCHITECTURE.md: no acknowledged lease is
    /// lost).
    Group,
    /// Durable = written to the kernel; synced when this much time has passed since the last
    /// sync. A power loss (not a process crash) can lose up to that much.
    Interval(Duration),
    /// Durable = written to the kernel; synced only when a segment is sealed and at shutdown.
    /// A power loss can lose up to a segment.
    None,
}

/// What replay does with a damaged tail of the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Recovery {
    /// Cut it off and report it in [`ReplayReport::truncated`]: a crash during a write leaves
    /// exactly this, and nothing in it was ever reported durable.
    #[default]
    TolerateTornTail,
    /// Refuse to open ([`Error::Corrupt`]).
    Strict,
}

/// How to open a journal.
#[derive(Clone, Debug)]
pub struct Options {
    /// The journal directory (created if missing).
    pub dir: PathBuf,
    /// When records count as durable.
    pub sync: SyncPolicy,
    /// How many lanes (one per worker thread).
    pub lanes: usize,
    /// The active segment is sealed and a new one started once it reaches this size.
    pub segment_bytes: u64,
    /// Sealed segments taking this many bytes on disk (preallocated zeros included) trigger
    /// a background compaction.
    pub compact_bytes: u64,
    /// So many sealed segments trigger a background compaction too, however few bytes they
    /// take: segments sealed early (by a compaction request, or after an IO error) each cost
    /// a file and a read at every start.
    pub compact_segments: u64,
    /// What replay does with a damaged tail of the last segment.
    pub recovery: Recovery,
    /// Run first thing on the background threads (compaction, preallocation), e.g. to lower
    /// their priority so that they take a shared core mostly while the workers wait (the
    /// server raises their nice value).
    pub on_background_start: Option<ThreadHook>,
    /// Fill each segment with zeros before writing records into it, so that a sync flushes
    /// data only and no filesystem metadata (see the crate docs on preallocated segments).
    /// Worth it on ext4 and XFS; on a copy-on-write filesystem (btrfs, ZFS) it only costs
    /// the zeros.
    pub preallocate: bool,
    /// Run by the writer thread just before each `fdatasync` of records and just after the
    /// watermarks it made durable are published (doorbells rung), e.g. to hold a real-time
    /// scheduling class while it waits on the disk and releases the replies (the server does).
    pub around_sync: Option<(ThreadHook, ThreadHook)>,
}

/// Code a journal thread runs at a given point (see [`Options::on_background_start`] and
/// [`Options::around_sync`]).
#[derive(Clone)]
pub struct ThreadHook(pub Arc<dyn Fn() + Send + Sync>);

impl fmt::Debug for ThreadHook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ThreadHook(..)")
    }
}

/// The smallest `segment_bytes` accepted (a header plus a little).
pub const MIN_SEGMENT_BYTES: u64 = 64;

impl Options {
    /// Defaults: group commit, 64 MiB segments, preallocated, compaction after 256 MiB or 8
    /// sealed segments, torn tails tolerated.
    pub fn new(dir: impl Into<PathBuf>, lanes: usize) -> Self {
        Options {
            dir: dir.into(),
            sync: SyncPolicy::Group,
            lanes,
            segment_bytes: 64 << 20,
            compact_bytes: 256 << 20,
            compact_segments: 8,
            recovery: Recovery::TolerateTornTail,
            on_background_start: None,
            preallocate: true,
            around_sync: None,
        }
    }

    fn validate(&self) -> Result<()> {
        if self.lanes == 0 {
            return Err(Error::InvalidOptions("lanes must be at least 1".into()));
        }
        if self.segment_bytes < MIN_SEGMENT_BYTES {
            return Err(Error::InvalidOptions(format!(
                "segment_bytes must be at least {MIN_SEGMENT_BYTES}"
            )));
        }
        if self.compact_bytes == 0 {
            return Err(Error::InvalidOptions(
                "compact_bytes must be at least 1".into(),
            ));
        }
        if self.compact_segments == 0 {
            return Err(Error::InvalidOptions(
                "compact_segments must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

/// A lane's sequence number for one record. Per lane, tickets start at 1 and increase by one
/// per append; durability is published as "every ticket up to N".
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Ticket(pub u64);

/// Whether the writer is keeping up.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum Health {
    /// Writes and syncs succeed.
    #[default]
    Ok,
    /// The last write or sync failed (and is being retried), or a record was refused.
    /// Nothing more becomes durable until it recovers.
    Failing {
        /// The error, with the file it happened to.
        error: String,
    },
}

/// Counters of a running journal.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records the writer has taken from the lanes.
    pub appended: u64,
    /// Record bytes written (frames, rewrites after errors included; not headers).
    pub bytes: u64,
    /// Write batches (each one `write` of everything that had queued up).
    pub batches: u64,
    /// `fdatasync`s of batches.
    pub syncs: u64,
    /// Records in the last batch.
    pub last_batch: u64,
    /// Segment files in the directory.
    pub segments: u64,
    /// The segment being appended to.
    pub active_segment: u64,
    /// The last segment covered by the newest snapshot (0 = no snapshot).
    pub snapshot_seq: u64,
    /// Compactions completed.
    pub compactions: u64,
    /// Compactions that failed (and were retried).
    pub compaction_failures: u64,
    /// Writes or syncs that failed.
    pub write_failures: u64,
    /// Segments started in a preallocated (zero-filled) file.
    pub preallocated: u64,
    /// Spares the preallocation thread has finished (one more than `preallocated` while a
    /// spare waits for the next rotation; the first segment's is not counted).
    pub spares: u64,
    /// The last error of the writer or the compactor.
    pub last_error: Option<String>,
    /// The writer's health.
    pub health: Health,
}

/// Reads a journal's health and counters from any thread: see [`Journal::monitor`].
#[derive(Clone)]
pub struct Monitor {
    shared: Arc<Shared>,
}

impl fmt::Debug for Monitor {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Monitor")
            .field("health", &self.health())
            .finish()
    }
}

impl Monitor {
    /// How long the writer's `fdatasync`s took, in nanoseconds.
    pub fn sync_nanos(&self) -> HistogramSnapshot {
        self.shared.sync_nanos.snapshot()
    }

    /// Records per write batch.
    pub fn batch_records(&self) -> HistogramSnapshot {
        self.shared.batch_records.snapshot()
    }

    /// Per lane, the records it has handed over that are not durable yet.
    pub fn backlog(&self) -> Vec<u64> {
        self.shared
            .lanes
            .iter()
            .map(|l| {
                let queued = l.queued.load(Ordering::Relaxed);
                queued.saturating_sub(l.durable.load(Ordering::Relaxed))
            })
            .collect()
    }

    /// Whether writes and syncs currently succeed.
    pub fn health(&self) -> Health {
        self.shared
            .health
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        let last_error = self
            .shared
            .last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        self.shared.counters.load(last_error, self.health())
    }
}

/// An open journal: the writer thread, the compactor thread and the lanes that feed them.
///
/// Dropping it without [`Journal::shutdown`] still stops the threads after a last write and
/// sync, ignoring errors.
pub struct Journal<R: Record> {
    shared: Arc<Shared>,
    /// Which lanes have been handed out.
    taken: Mutex<Vec<bool>>,
    ctl: Sender<Ctl>,
    compactor_tx: Sender<CompactorMsg>,
    writer: Option<JoinHandle<Result<()>>>,
    compactor: Option<JoinHandle<()>>,
    dir: PathBuf,
    /// The filesystem, for stream followers reading segments.
    pub(crate) fs: Arc<dyn Fs>,
    /// Held until the journal is dropped (`None` only after `shutdown_keeping_lock`).
    lock: Option<Box<dyn DirLock>>,
    /// The segment the writer started in and the offset it started appending at.
    pub(crate) started_at: (u64, u64),
    record: PhantomData<fn(R)>,
}

impl<R: Record> fmt::Debug for Journal<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Journal")
            .field("dir", &self.dir)
            .field("health", &self.health())
            .finish_non_exhaustive()
    }
}

impl<R: Record> Journal<R> {
    /// Opens the journal in `opts.dir` (creating the directory), recovers and replays it:
    /// folds the newest valid snapshot and every segment after it (the highest version per
    /// key wins; keys whose newest record does not `keep(now)` are dropped) and calls `f` once
    /// per surviving record, in no particular order. Then starts the writer (resuming the
    /// last segment where its records end, or starting a new one if it is full) and the
    /// compactor.
    ///
    /// `f` is called while the snapshot streams by, not after the whole fold: if `open` then
    /// fails, `f` may have seen some records, and the caller must discard them. Every check
    /// that decides which files are replayed, and every damage found by checksums or framing,
    /// comes before the first call (see the crate docs on recovery); what can fail later is
    /// a payload that does not decode as `R` or an IO error.
    ///
    /// Recovery changes the directory: a torn tail of the last segment is cleared, a last
    /// segment with damaged records is rewritten without them (a copy kept aside) and one
    /// being started at a crash is removed (with [`Recovery::TolerateTornTail`]), snapshots
    /// and segments left by an interrupted compaction are removed, and empty segments left by
    /// earlier restarts after the last segment holding records are removed. The writer then
    /// resumes the last segment (see the crate docs on recovery).
    pub fn open(
        opts: Options,
        fs: Arc<dyn Fs>,
        mut f: impl FnMut(R),
    ) -> Result<(Journal<R>, ReplayReport)> {
        let started = Instant::now();
        opts.validate()?;
        let dir = opts.dir.clone();
        fs.create_dir_all(&dir)
            .map_err(|e| Error::io("create directory", &dir, e))?;
        let lock = fs.lock_dir(&dir).map_err(|e| match e.kind() {
            std::io::ErrorKind::WouldBlock => Error::Locked { dir: dir.clone() },
            _ => Error::io("lock", &dir, e),
        })?;
        let mut folded = replay::replay::<R>(&*fs, &dir, opts.recovery, None, Keep::now(), |r| {
            f(r);
            Ok(())
        })?;

        // A preallocated spare left by the last run is used, not made again.
        let spare_path = dir.join(spare::SPARE_NAME);
        let spare_ready = opts.preallocate
            && fs
                .file_len(&spare_path)
                .is_ok_and(|n| n == opts.segment_bytes);
        // Leftovers of an interrupted compaction, snapshot write, rewrite or preallocation.
        let listing = replay::list(&*fs, &dir)?;
        let mut removed = false;
        for p in folded.base.ignored.iter().chain(&folded.base.stale) {
            tracing::info!(file = %p.display(), "journal: removing a file left by an interrupted compaction");
            fs.remove_file(p).map_err(|e| Error::io("remove", p, e))?;
            removed = true;
        }
        for p in &listing.temporaries {
            if spare_ready && *p == spare_path {
                continue;
            }
            tracing::info!(file = %p.display(), "journal: removing an unfinished temporary file");
            fs.remove_file(p).map_err(|e| Error::io("remove", p, e))?;
            removed = true;
        }
        if removed {
            fs.sync_dir(&dir).map_err(|e| Error::io("sync", &dir, e))?;
        }

        let pad = opts.preallocate.then_some(opts.segment_bytes);
        replay::repair_last(&*fs, &dir, &mut folded, pad)?;
        replay::reclaim_empty_tail(&*fs, &dir, &mut folded)?;

        let shared = Arc::new(Shared::new(opts.lanes));
        let c = &shared.counters;
        // The writer counts a segment it starts itself.
        c.segments
            .store(folded.segments.len() as u64, Ordering::Relaxed);
        c.snapshot_seq.store(folded.base.cut(), Ordering::Relaxed);
        // The writer resumes the last segment where its records end, unless it is full:
        // restarts add no segment (see the crate docs, "Resuming the last segment").
        let resume = folded
            .segments
            .last()
            .filter(|s| s.valid_end < opts.segment_bytes)
            .map(|s| (s.seq, s.valid_end));
        let sealed = &folded.segments[..folded.segments.len() - usize::from(resume.is_some())];
        let start = Start {
            next_seq: folded.next_seq,
            prev_len: folded.prev_len,
            last_sealed: sealed.last().map_or(0, |s| s.seq),
            sealed_bytes: sealed.iter().map(|s| s.file_len.max(s.valid_end)).sum(),
            sealed_segments: sealed.len() as u64,
            resume,
        };
        let started_at = resume.unwrap_or((folded.next_seq, format::SEGMENT_HEADER_LEN as u64));
        let mut report = folded.report;

        let (ctl_tx, ctl_rx) = crossbeam_channel::unbounded();
        let (comp_tx, comp_rx) = crossbeam_channel::unbounded();
        let spares = if opts.preallocate {
            let s = Spares::spawn(
                fs.clone(),
                &dir,
                opts.segment_bytes,
                spare_ready,
                opts.on_background_start.clone(),
                shared.clone(),
            )
            .map_err(|e| Error::io("spawn preallocation thread", &opts.dir, e))?;
            Some(s)
        } else {
            None
        };
        let mut writer = Writer::new(
            fs.clone(),
            dir.clone(),
            &opts,
            shared.clone(),
            ctl_rx,
            comp_tx.clone(),
            start,
            spares,
        );
        writer.start()?;
        let compactor = {
            let (fs, dir, shared) = (fs.clone(), dir.clone(), shared.clone());
            let hook = opts.on_background_start.clone();
            std::thread::Builder::new()
                .name("journal-compact".into())
                .spawn(move || {
                    if let Some(hook) = hook {
                        (hook.0)();
                    }
                    compact::run::<R>(fs, dir, shared, comp_rx)
                })
                .map_err(|e| Error::io("spawn compactor thread", &opts.dir, e))?
        };
        let writer = std::thread::Builder::new()
            .name("journal-writer".into())
            .spawn(move || writer.run())
            .map_err(|e| Error::io("spawn writer thread", &opts.dir, e))?;
        report.elapsed = started.elapsed();
        tracing::info!(?report, "journal replayed");
        Ok((
            Journal {
                shared,
                taken: Mutex::new(vec![false; opts.lanes]),
                ctl: ctl_tx,
                compactor_tx: comp_tx,
                writer: Some(writer),
                compactor: Some(compactor),
                dir,
                fs,
                lock: Some(lock),
                started_at,
                record: PhantomData,
            },
            report,
        ))
    }

    /// [`Journal::open`] on the real filesystem.
    pub fn open_dir(opts: Options, f: impl FnMut(R)) -> Result<(Journal<R>, ReplayReport)> {
        Self::open(opts, Arc::new(RealFs), f)
    }

    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    /// The journal directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The lane for worker `k` (`0..lanes`).
    ///
    /// # Panics
    /// If `k` is out of range or lane `k` was already taken: both are wiring bugs, and two
    /// owners of one lane would break its ticket order. [`Journal::try_lane`] returns an
    /// error instead.
    pub fn lane(&self, k: usize) -> Lane<R> {
        match self.try_lane(k) {
            Ok(l) => l,
            Err(e) => panic!("{e}"),
        }
    }

    /// The lane for worker `k`, or an error if it is out of range or already taken.
    pub fn try_lane(&self, k: usize) -> Result<Lane<R>> {
        let mut taken = self.taken.lock().unwrap_or_else(|p| p.into_inner());
        let slot = taken.get_mut(k).ok_or(Error::Lane {
            lane: k,
            reason: "out of range",
        })?;
        if std::mem::replace(slot, true) {
            return Err(Error::Lane {
                lane: k,
                reason: "already taken",
            });
        }
        Ok(Lane {
            k,
            next: 0,
            shared: self.shared.clone(),
            record: PhantomData,
        })
    }

    /// Whether writes and syncs currently succeed.
    pub fn health(&self) -> Health {
        self.monitor().health()
    }

    /// Counters.
    pub fn stats(&self) -> Stats {
        self.monitor().stats()
    }

    /// A handle that reads [`Journal::health`] and [`Journal::stats`] from another thread,
    /// for as long as it likes (it outlives the journal, reading its last values).
    pub fn monitor(&self) -> Monitor {
        Monitor {
            shared: Arc::clone(&self.shared),
        }
    }

    /// Asks for a compaction now, in the background: the writer seals the active segment if
    /// it holds records, and the compactor folds everything sealed into a new snapshot.
    pub fn compact_now(&self) {
        let _ = self.ctl.send(Ctl::Compact(None));
        self.shared.kick_writer();
    }

    /// Like [`Journal::compact_now`], but waits for that compaction and returns its report
    /// (for the control API and tests). The writer is not blocked meanwhile.
    pub fn compact_blocking(&self) -> Result<CompactReport> {
        let (tx, rx) = crossbeam_channel::bounded(1);
        self.ctl
            .send(Ctl::Compact(Some(tx)))
            .map_err(|_| Error::Compaction("the journal is shutting down".into()))?;
        self.shared.kick_writer();
        rx.recv().map_err(|_| {
            Error::Compaction("the journal stopped before the compaction ran".into())
        })?
    }

    /// Stops accepting records, writes and syncs everything queued, and joins the writer and
    /// the compactor (waiting for a compaction in progress). Records appended after this
    /// begins are never made durable.
    pub fn shutdown(mut self) -> Result<()> {
        self.stop()
    }

    /// [`Journal::shutdown`], handing back the directory lock: for offline tools that still
    /// change the directory after the writer has stopped.
    pub(crate) fn shutdown_keeping_lock(mut self) -> (Result<()>, Option<Box<dyn DirLock>>) {
        let res = self.stop();
        (res, self.lock.take())
    }

    fn stop(&mut self) -> Result<()> {
        let Some(writer) = self.writer.take() else {
            return Ok(());
        };
        let _ = self.ctl.send(Ctl::Shutdown);
        self.shared.kick_writer();
        let res = writer
            .join()
            .unwrap_or(Err(Error::ThreadPanicked("writer")));
        let _ = self.compactor_tx.send(CompactorMsg::Stop);
        if let Some(c) = self.compactor.take()
            && c.join().is_err()
            && res.is_ok()
        {
            return Err(Error::ThreadPanicked("compactor"));
        }
        res
    }
}

impl<R: Record> Drop for Journal<R> {
    fn drop(&mut self) {
        if let Err(e) = self.stop() {
            tracing::error!(error = %e, "journal dropped without shutdown and its last write failed");
        }
    }
}

/// One worker's way into the journal: `Send`, owned by one worker thread ([`Lane::append`]
/// takes `&mut self`, so tickets are handed out in order).
pub struct Lane<R> {
    k: usize,
    next: u64,
    shared: Arc<Shared>,
    record: PhantomData<fn(&R)>,
}

impl<R> fmt::Debug for Lane<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lane")
            .field("lane", &self.k)
            .field("appended", &self.next)
            .field("durable", &self.durable_raw())
            .finish()
    }
}

impl<R> Lane<R> {
    pub(crate) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn durable_raw(&self) -> u64 {
        self.shared.lanes[self.k].durable.load(Ordering::Acquire)
    }

    /// This lane's number.
    pub fn index(&self) -> usize {
        self.k
    }

    /// The ticket of the last record appended (0 if none).
    pub fn last_ticket(&self) -> Ticket {
        Ticket(self.next)
    }
}

impl<R: Record> Lane<R> {
    /// Hands a record to the writer without waiting for the disk and returns its ticket.
    ///
    /// The record is encoded and framed (checksum included) here, on the caller's thread, into
    /// the lane's queue, which the writer swaps out for an empty buffer when it takes it: the
    /// only lock is the lane's own, shared with the writer for that swap, and once the
    /// buffers have grown nothing is allocated. `rec` is an `R` or a borrowed view that
    /// encodes as one ([`EncodesAs`]).
    ///
    /// A record that cannot be encoded (or encodes to more than [`MAX_RECORD_LEN`]) is not
    /// written, and from its ticket on nothing of this lane becomes durable (see
    /// [`Health::Failing`]). After the journal has shut down the record goes nowhere and its
    /// ticket never becomes durable.
    ///
    /// [`MAX_RECORD_LEN`]: crate::MAX_RECORD_LEN
    pub fn append<E: EncodesAs<R> + ?Sized>(&mut self, rec: &E) -> Ticket {
        self.next += 1;
        let lane = &self.shared.lanes[self.k];
        {
            let mut q = lane.queue();
            if q.closed {
                return Ticket(self.next);
            }
            match format::encode_frame(&mut q.bytes, rec) {
                Ok(()) => {
                    q.records += 1;
                    q.last = self.next;
                }
                Err(e) => {
                    if q.refused.is_none() {
                        q.refused = Some((self.next, e));
                    }
                }
            }
            q.ticket = self.next;
            // Under the lock, with `q.ticket`: a writer that sees the new count finds the frames
            // (or waits on the lock for them). Stored after the unlock, a writer that preempted
            // this thread in between would take the frames, count them taken, and still see
            // the old count as work: it would loop until this thread ran again.
            lane.queued.store(self.next, Ordering::Relaxed);
        }
        self.shared.wake_writer();
        Ticket(self.next)
    }

    /// Records appended on this lane and not yet durable: what the journal still holds for it
    /// in memory.
    pub fn backlog(&self) -> u64 {
        self.next.saturating_sub(self.durable_raw())
    }

    /// The highest ticket of this lane that is durable (with [`SyncPolicy::Group`]: synced;
    /// with the other policies: written to the kernel). Every lower ticket is durable too.
    pub fn durable(&self) -> Ticket {
        Ticket(self.durable_raw())
    }

    /// Blocks until `t` is durable or `timeout` has passed; returns whether it is durable.
    pub fn wait_durable(&self, t: Ticket, timeout: Duration) -> bool {
        wait_lane(&self.shared, self.k, t, timeout)
    }

    /// A handle that waits for this lane's tickets from another thread.
    pub fn waiter(&self) -> DurableWaiter {
        DurableWaiter {
            shared: Arc::clone(&self.shared),
            k: self.k,
        }
    }

    /// This lane's [`Doorbell`] (an eventfd, created on first use).
    pub fn doorbell(&self) -> std::io::Result<Doorbell> {
        let lane = &self.shared.lanes[self.k];
        if lane.bell.get().is_none() {
            let bell = EventFd::from_flags(EfdFlags::EFD_NONBLOCK | EfdFlags::EFD_CLOEXEC)?;
            let _ = lane.bell.set(bell);
        }
        Ok(Doorbell {
            shared: Arc::clone(&self.shared),
            k: self.k,
        })
    }
}

/// Blocks until ticket `t` of lane `k` is durable or `timeout` has passed.
fn wait_lane(shared: &Shared, k: usize, t: Ticket, timeout: Duration) -> bool {
    if shared.lanes[k].durable.load(Ordering::Acquire) >= t.0 {
        return true;
    }
    let deadline = Instant::now() + timeout;
    let lane = &shared.lanes[k];
    let mut g = lane.lock.lock().unwrap_or_else(|p| p.into_inner());
    lane.waiters.fetch_add(1, Ordering::SeqCst);
    let durable = loop {
        if lane.durable.load(Ordering::SeqCst) >= t.0 {
            break true;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            break false;
        }
        g = lane
            .cv
            .wait_timeout(g, left)
            .unwrap_or_else(|p| p.into_inner())
            .0;
    };
    lane.waiters.fetch_sub(1, Ordering::SeqCst);
    durable
}

/// Waits for a lane's tickets to become durable from a thread other than the lane's owner
/// (from [`Lane::waiter`]): a stream replica acknowledges from its network task this way.
#[derive(Clone)]
pub struct DurableWaiter {
    shared: Arc<Shared>,
    k: usize,
}

impl fmt::Debug for DurableWaiter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DurableWaiter")
            .field("lane", &self.k)
            .finish()
    }
}

impl DurableWaiter {
    /// [`Lane::wait_durable`] for the lane this came from.
    pub fn wait_durable(&self, t: Ticket, timeout: Duration) -> bool {
        wait_lane(&self.shared, self.k, t, timeout)
    }
}

/// A lane's doorbell: a file descriptor that becomes readable when the writer moves the lane's
/// watermark after [`Doorbell::arm`]. A worker polls it together with its socket, so that it
/// sleeps until either a request comes or a waiting reply may leave: woken once per sync,
/// not on a timer.
pub struct Doorbell {
    shared: Arc<Shared>,
    k: usize,
}

impl fmt::Debug for Doorbell {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Doorbell").field("lane", &self.k).finish()
    }
}

impl Doorbell {
    fn bell(&self) -> &EventFd {
        self.shared.lanes[self.k]
            .bell
            .get()
            .expect("created by Lane::doorbell")
    }

    /// Asks the writer to ring at its next publish on this lane, unless `t` is durable
    /// already: returns false then, and the caller should not sleep. After its sleep the
    /// caller calls [`Doorbell::disarm`].
    pub fn arm(&self, t: Ticket) -> bool {
        let lane = &self.shared.lanes[self.k];
        lane.armed.store(true, Ordering::SeqCst);
        if lane.durable.load(Ordering::SeqCst) >= t.0 {
            lane.armed.store(false, Ordering::Relaxed);
            return false;
        }
        true
    }

    /// Ends a sleep: no ring is wanted any more, and one that came is consumed. (A ring racing
    /// with this call leaves the doorbell readable: the next sleep ends at once, one spurious
    /// wake-up.)
    pub fn disarm(&self) {
        self.shared.lanes[self.k]
            .armed
            .store(false, Ordering::SeqCst);
        // EAGAIN: it did not ring.
        let _ = self.bell().read();
    }
}

impl AsFd for Doorbell {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.bell().as_fd()
    }
}
