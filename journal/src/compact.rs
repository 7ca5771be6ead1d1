//! Compaction: folding the newest snapshot and the sealed segments into a new snapshot, then
//! deleting what it covers. Runs on its own thread; the writer never waits for it.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, RecvTimeoutError, Sender};

use crate::error::{Error, Result};
use crate::format::{self, FileName};
use crate::fs::{Fs, FsFile};
use crate::replay::{self, Keep};
use crate::writer::Shared;
use crate::{Record, Recovery};

/// What a compaction did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CompactReport {
    /// The snapshot written, or `None` when there was nothing new to compact.
    pub snapshot: Option<PathBuf>,
    /// The last segment the snapshot covers.
    pub cut: u64,
    /// Records read (the previous snapshot and the segments).
    pub records_read: u64,
    /// Records written into the snapshot.
    pub records_written: u64,
    /// Of those, records kept although `keep` said no, because newer-looking stale records
    /// may still follow them (see the crate docs on tombstones).
    pub tombstones_kept: u64,
    /// Files deleted after the snapshot was durable (segments and older snapshots).
    pub files_removed: u64,
    /// Of those, segments.
    pub segments_removed: u64,
    /// Bytes in the files folded (previous snapshot plus segments).
    pub bytes_before: u64,
    /// Bytes in the new snapshot.
    pub bytes_after: u64,
    /// How long it took.
    pub elapsed: Duration,
}

/// Messages to the compactor thread.
pub(crate) enum CompactorMsg {
    /// Compact everything up to segment `cut` (sealed).
    Compact {
        cut: u64,
        reply: Option<Sender<Result<CompactReport>>>,
    },
    /// Stop after the compaction in progress.
    Stop,
}

/// First wait before retrying a failed compaction, and the longest.
const RETRY_FIRST: Duration = Duration::from_secs(5);
const RETRY_MAX: Duration = Duration::from_secs(300);

/// The compactor thread's body.
pub(crate) fn run<R: Record>(
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    shared: Arc<Shared>,
    rx: Receiver<CompactorMsg>,
) {
    let mut pending: Option<u64> = None;
    let mut replies: Vec<Sender<Result<CompactReport>>> = Vec::new();
    let mut backoff = RETRY_FIRST;
    loop {
        let msg = if pending.is_some() && replies.is_empty() {
            match rx.recv_timeout(backoff) {
                Ok(m) => Some(m),
                Err(RecvTimeoutError::Timeout) => None,
                Err(RecvTimeoutError::Disconnected) => return,
            }
        } else {
            match rx.recv() {
                Ok(m) => Some(m),
                Err(_) => return,
            }
        };
        let mut stop = false;
        let mut take = |m: CompactorMsg, pending: &mut Option<u64>, replies: &mut Vec<_>| match m {
            CompactorMsg::Compact { cut, reply } => {
                *pending = Some(pending.map_or(cut, |p: u64| p.max(cut)));
                replies.extend(reply);
            }
            CompactorMsg::Stop => stop = true,
        };
        if let Some(m) = msg {
            take(m, &mut pending, &mut replies);
        }
        while let Ok(m) = rx.try_recv() {
            take(m, &mut pending, &mut replies);
        }
        if stop {
            return;
        }
        let Some(cut) = pending else { continue };
        match compact::<R>(&*fs, &dir, cut, true) {
            Ok(report) => {
                pending = None;
                backoff = RETRY_FIRST;
                let c = &shared.counters;
                if report.snapshot.is_some() {
                    c.compactions.fetch_add(1, Ordering::Relaxed);
                    c.snapshot_seq.store(report.cut, Ordering::Relaxed);
                    c.segments.fetch_sub(
                        report
                            .segments_removed
                            .min(c.segments.load(Ordering::Relaxed)),
                        Ordering::Relaxed,
                    );
                    // Followers behind the cut now need a snapshot.
                    shared.stream.forget_through(report.cut);
                    tracing::info!(?report, "journal compacted");
                }
                for r in replies.drain(..) {
                    let _ = r.send(Ok(report.clone()));
                }
            }
            Err(e) => {
                shared
                    .counters
                    .compaction_failures
                    .fetch_add(1, Ordering::Relaxed);
                let msg = format!("compaction: {e}");
                shared.set_last_error(msg.clone());
                tracing::error!(error = %e, retry_in = ?backoff, "journal compaction failed; nothing was deleted, will retry");
                for r in replies.drain(..) {
                    let _ = r.send(Err(Error::Compaction(msg.clone())));
                }
                backoff = (backoff * 2).min(RETRY_MAX);
            }
        }
    }
}

/// Folds the newest snapshot and the segments up to `cut` into `snapshot-<cut>.snap`, then
/// deletes the segments up to `cut` and the older snapshots. With `retain_tombstones`, a
/// key whose newest record is in the newest source holding records is kept even when `keep`
/// says no (see the crate docs on tombstones).
///
/// The survivors stream from the replay into the new snapshot: memory is the fold of the
/// segments and a chunk of each snapshot, not the snapshot's records.
pub(crate) fn compact<R: Record>(
    fs: &dyn Fs,
    dir: &Path,
    cut: u64,
    retain_tombstones: bool,
) -> Result<CompactReport> {
    let started = Instant::now();
    let listing = replay::list(fs, dir)?;
    let base_cut = listing.snapshots.keys().next_back().copied().unwrap_or(0);
    if cut == 0 || cut <= base_cut {
        return Ok(CompactReport {
            cut: base_cut,
            elapsed: started.elapsed(),
            ..Default::default()
        });
    }
    let base = replay::choose_base(fs, dir, &listing, Some(cut))?;
    let keep = Keep {
        now: replay::unix_now(),
        // A straggler can only be in the batch right after its tombstone's, so only
        // tombstones of the newest source that holds records (usually segment `cut`; an
        // earlier one if the last segments are empty, e.g. abandoned after an IO error) can
        // still be followed by one.
        retain_tombstones,
    };
    let w = write_from_replay::<R>(fs, dir, cut, base, Recovery::Strict, Some(cut), keep)?;
    let (files_removed, segments_removed) = remove_covered(fs, dir, cut);
    Ok(CompactReport {
        snapshot: Some(w.path),
        cut,
        records_read: w.replayed.report.records_read,
        records_written: w.records,
        tombstones_kept: w.tombstones,
        files_removed,
        segments_removed,
        bytes_before: w.bytes_before,
        bytes_after: w.bytes,
        elapsed: started.elapsed(),
    })
}

/// A snapshot written from a replay.
#[derive(Debug)]
pub(crate) struct Written {
    pub(crate) replayed: replay::Replayed,
    pub(crate) path: PathBuf,
    /// Records in it, and how many of those are tombstones kept (`!keep(now)`).
    pub(crate) records: u64,
    pub(crate) tombstones: u64,
    /// Its size, and the size of what it folded (the previous snapshot and the segments).
    pub(crate) bytes: u64,
    pub(crate) bytes_before: u64,
}

/// Replays from `base` straight into a new snapshot covering segments up to `cut`. On
/// failure the unfinished snapshot is removed.
pub(crate) fn write_from_replay<R: Record>(
    fs: &dyn Fs,
    dir: &Path,
    cut: u64,
    base: replay::Base,
    recovery: Recovery,
    upto: Option<u64>,
    keep: Keep,
) -> Result<Written> {
    let started = Instant::now();
    let mut w = SnapshotWriter::create(fs, dir, cut)?;
    let mut tombstones = 0u64;
    let replayed = replay::replay_base::<R>(
        fs,
        base,
        recovery,
        upto,
        keep,
        |r| {
            if !r.keep(keep.now) {
                tombstones += 1;
            }
            w.push(&r)
        },
        started,
    );
    let done = replayed.and_then(|r| w.finish().map(|(path, n, size)| (r, path, n, size)));
    match done {
        Ok((replayed, path, records, bytes)) => {
            let bytes_before =
                replayed.segment_bytes + replayed.base.snapshot.as_ref().map_or(0, |s| s.len);
            Ok(Written {
                replayed,
                path,
                records,
                tombstones,
                bytes,
                bytes_before,
            })
        }
        Err(e) => {
            let tmp = dir.join(format::snapshot_tmp_name(cut));
            if let Err(re) = fs.remove_file(&tmp) {
                tracing::debug!(file = %tmp.display(), error = %re, "journal: cannot remove an unfinished snapshot (open removes it)");
            }
            Err(e)
        }
    }
}

/// A snapshot being written record by record: to `snapshot-<cut>.snap.tmp`, in 1 MiB writes,
/// with one running crc32c for the footer; [`SnapshotWriter::finish`] syncs it, renames it
/// into place and syncs the directory.
pub(crate) struct SnapshotWriter<'a> {
    fs: &'a dyn Fs,
    dir: &'a Path,
    cut: u64,
    tmp: PathBuf,
    file: Box<dyn FsFile>,
    buf: Vec<u8>,
    crc: u32,
    count: u64,
    size: u64,
}

impl std::fmt::Debug for SnapshotWriter<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SnapshotWriter")
            .field("tmp", &self.tmp)
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl<'a> SnapshotWriter<'a> {
    const CHUNK: usize = 1 << 20;

    pub(crate) fn create(fs: &'a dyn Fs, dir: &'a Path, cut: u64) -> Result<Self> {
        let tmp = dir.join(format::snapshot_tmp_name(cut));
        let file = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
        let mut buf = Vec::with_capacity(Self::CHUNK + 4096);
        buf.extend_from_slice(&format::encode_snapshot_header(cut));
        Ok(SnapshotWriter {
            fs,
            dir,
            cut,
            tmp,
            file,
            buf,
            crc: 0,
            count: 0,
            size: 0,
        })
    }

    pub(crate) fn push<R: Record>(&mut self, r: &R) -> Result<()> {
        format::encode_frame(&mut self.buf, r).map_err(Error::Encode)?;
        self.count += 1;
        if self.buf.len() >= Self::CHUNK {
            self.flush()?;
        }
        Ok(())
    }

    fn flush(&mut self) -> Result<()> {
        self.crc = crc32c::crc32c_append(self.crc, &self.buf);
        self.size += self.buf.len() as u64;
        self.file
            .write_all(&self.buf)
            .map_err(|e| Error::io("write", &self.tmp, e))?;
        self.buf.clear();
        Ok(())
    }

    /// Writes the footer, syncs, renames into place, syncs the directory. Returns the
    /// snapshot's path, record count and size.
    pub(crate) fn finish(mut self) -> Result<(PathBuf, u64, u64)> {
        self.flush()?;
        let footer = format::encode_footer(self.count, self.crc);
        self.size += footer.len() as u64;
        self.file
            .write_all(&footer)
            .map_err(|e| Error::io("write", &self.tmp, e))?;
        self.file
            .sync_data()
            .map_err(|e| Error::io("sync", &self.tmp, e))?;
        drop(self.file);
        let path = format::snapshot_path(self.dir, self.cut);
        self.fs
            .rename(&self.tmp, &path)
            .map_err(|e| Error::io("rename", &self.tmp, e))?;
        self.fs
            .sync_dir(self.dir)
            .map_err(|e| Error::io("sync", self.dir, e))?;
        Ok((path, self.count, self.size))
    }
}

/// Deletes segments up to `cut` and snapshots older than `cut` (the new one is durable by
/// now). Failures only leave stale files behind, which the next open or compaction removes.
/// Returns the files and, of those, the segments removed.
pub(crate) fn remove_covered(fs: &dyn Fs, dir: &Path, cut: u64) -> (u64, u64) {
    let names = match fs.list_dir(dir) {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(error = %e, "journal: cannot list the directory to remove compacted files");
            return (0, 0);
        }
    };
    let mut removed = 0u64;
    let mut segments = 0u64;
    for name in names {
        let covered = match format::classify(&name) {
            FileName::Segment(n) => n <= cut,
            FileName::Snapshot(n) => n < cut,
            _ => false,
        };
        if covered {
            let p = dir.join(&name);
            match fs.remove_file(&p) {
                Ok(()) => {
                    removed += 1;
                    if matches!(format::classify(&name), FileName::Segment(_)) {
                        segments += 1;
                    }
                }
                Err(e) => {
                    tracing::warn!(file = %p.display(), error = %e, "journal: cannot remove a compacted file")
                }
            }
        }
    }
    if let Err(e) = fs.sync_dir(dir) {
        tracing::warn!(error = %e, "journal: cannot sync the directory after removing compacted files");
    }
    (removed, segments)
}
