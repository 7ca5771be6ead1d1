//! Offline tools over a journal directory no server has open: verify, repair, compact, read,
//! count, append.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::compact::{self, CompactReport};
use crate::error::{Error, Result};
use crate::format::{
    self, FOOTER_LEN, SEGMENT_HEADER_LEN, SNAPSHOT_HEADER_LEN, SegmentHeader, WalkEnd,
};
use crate::fs::{DirLock, Fs, RealFs};
use crate::journal::{Health, Journal, Lane, Options, SyncPolicy, Ticket};
use crate::replay::{self, ReplayReport};
use crate::{Record, Recovery};

/// What kind of file the journal directory holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    /// A segment, with its number.
    Segment(u64),
    /// A snapshot, with the last segment it covers.
    Snapshot(u64),
    /// A `*.tmp` left by an interrupted snapshot or repair (ignored and removed on open).
    Temporary,
}

/// One file [`verify`] checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    /// The file.
    pub path: PathBuf,
    /// What it is.
    pub kind: FileKind,
    /// Its size.
    pub bytes: u64,
    /// Valid records found in it (up to the first problem).
    pub records: u64,
    /// Anything worth knowing that is not a problem.
    pub note: Option<String>,
}

/// Damage [`verify`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Problem {
    /// The damaged (or, for a missing segment, the absent) file.
    pub file: PathBuf,
    /// Byte offset of the first bad byte.
    pub offset: u64,
    /// What is wrong.
    pub reason: String,
}

/// The result of [`verify`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct VerifyReport {
    /// The journal directory.
    pub dir: PathBuf,
    /// Every journal file, in order: snapshots, then segments.
    pub files: Vec<FileCheck>,
    /// Everything wrong. Empty for a clean journal.
    pub problems: Vec<Problem>,
}

impl VerifyReport {
    /// Whether no problem was found.
    pub fn is_clean(&self) -> bool {
        self.problems.is_empty()
    }
}

/// Checks every file of the journal in `dir` (framing and checksums; payloads are not decoded,
/// as the record type is unknown here) and lists every problem with its file and offset.
/// Changes nothing.
pub fn verify(dir: &Path) -> Result<VerifyReport> {
    verify_with(&RealFs, dir)
}

/// [`verify`] through a given filesystem.
pub fn verify_with(fs: &dyn Fs, dir: &Path) -> Result<VerifyReport> {
    let l = replay::list(fs, dir)?;
    let mut r = VerifyReport {
        dir: dir.to_owned(),
        ..Default::default()
    };
    let mut newest_valid = 0u64;
    for (&cut, path) in &l.snapshots {
        let bytes = fs.file_len(path).map_err(|e| Error::io("stat", path, e))?;
        let mut check = FileCheck {
            path: path.clone(),
            kind: FileKind::Snapshot(cut),
            bytes,
            records: 0,
            note: None,
        };
        match replay::verify_snapshot(fs, path, cut) {
            Ok(s) => {
                newest_valid = newest_valid.max(cut);
                check.records = s.count;
            }
            Err(Error::Corrupt {
                file,
                offset,
                reason,
            }) => r.problems.push(Problem {
                file,
                offset,
                reason,
            }),
            Err(e) => return Err(e),
        }
        r.files.push(check);
    }
    for (&cut, check) in l.snapshots.keys().zip(r.files.iter_mut()) {
        if cut < newest_valid {
            check.note =
                Some("older snapshot (left by an interrupted compaction; removed on open)".into());
        }
    }
    // The chain after the newest valid snapshot must have no holes.
    let mut expect = newest_valid + 1;
    for &n in l.segments.range(newest_valid + 1..).map(|(n, _)| n) {
        if expect < n {
            let reason = if n - expect == 1 {
                "segment missing from the chain".to_string()
            } else {
                format!("segments {expect} to {} missing from the chain", n - 1)
            };
            r.problems.push(Problem {
                file: format::segment_path(dir, expect),
                offset: 0,
                reason,
            });
        }
        expect = n + 1;
    }
    let last = l.segments.keys().next_back().copied();
    for (&seq, path) in &l.segments {
        let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
        let len = bytes.len() as u64;
        let mut check = FileCheck {
            path: path.clone(),
            kind: FileKind::Segment(seq),
            bytes: len,
            records: 0,
            note: None,
        };
        if seq <= newest_valid {
            check.note = Some(format!(
                "covered by the snapshot of segment {newest_valid} (left by an interrupted compaction; removed on open)"
            ));
        }
        let is_last = Some(seq) == last;
        let header = SegmentHeader::decode(&bytes);
        match &header {
            Err(reason) if is_last && replay::incomplete(&bytes) => {
                r.problems.push(Problem {
                    file: path.clone(),
                    offset: 0,
                    reason: format!(
                        "{reason} (a segment being started at a crash: it holds no record; open removes it)"
                    ),
                });
                r.files.push(check);
                continue;
            }
            Err(reason) if is_last => {
                r.problems.push(Problem {
                    file: path.clone(),
                    offset: 0,
                    reason: format!(
                        "{reason} (open keeps the valid records after it and rewrites the segment)"
                    ),
                });
                salvage_check(&bytes, path, &mut check, &mut r.problems);
                r.files.push(check);
                continue;
            }
            Err(reason) => {
                r.problems.push(Problem {
                    file: path.clone(),
                    offset: 0,
                    reason: reason.clone(),
                });
                r.files.push(check);
                continue;
            }
            Ok(h) if h.seq != seq => r.problems.push(Problem {
                file: path.clone(),
                offset: 12,
                reason: format!("header says segment {}, the file name says {seq}", h.seq),
            }),
            Ok(_) => {}
        }
        let next_header = match l.segments.get(&(seq + 1)) {
            Some(next) => {
                let h = fs
                    .read_range(next, 0, SEGMENT_HEADER_LEN)
                    .map_err(|e| Error::io("read", next, e))?;
                SegmentHeader::decode(&h).ok()
            }
            None => None,
        };
        let end = match next_header {
            Some(h) if h.prev_len > len || h.prev_len < SEGMENT_HEADER_LEN as u64 => {
                r.problems.push(Problem {
                    file: path.clone(),
                    offset: len.min(h.prev_len),
                    reason: format!(
                        "segment is {len} bytes, its successor's header says {} are valid",
                        h.prev_len
                    ),
                });
                len
            }
            Some(h) => {
                if h.prev_len < len && !format::all_zero(&bytes, h.prev_len as usize, bytes.len()) {
                    check.note = Some(format!(
                        "{} bytes after the valid end {} (abandoned after an IO error; ignored)",
                        len - h.prev_len,
                        h.prev_len
                    ));
                }
                h.prev_len
            }
            None if is_last => {
                salvage_check(&bytes, path, &mut check, &mut r.problems);
                r.files.push(check);
                continue;
            }
            None => len,
        };
        let walked = format::walk_frames(&bytes, SEGMENT_HEADER_LEN, end as usize, |_, _| {
            check.records += 1;
            Ok(())
        });
        let walked = match walked {
            Ok(WalkEnd::Zeros { offset }) if next_header.is_some() => Ok(WalkEnd::Bad {
                offset,
                reason: replay::ZEROS_IN_SEALED.to_string(),
            }),
            w => w,
        };
        if let Ok(WalkEnd::Bad { offset, reason }) = walked {
            let reason = if next_header.is_none() && is_last {
                format!(
                    "{reason}: torn or corrupt tail of {} bytes (open cuts it off)",
                    end - offset
                )
            } else {
                reason
            };
            r.problems.push(Problem {
                file: path.clone(),
                offset,
                reason,
            });
        }
        r.files.push(check);
    }
    for p in &l.temporaries {
        let bytes = fs.file_len(p).map_err(|e| Error::io("stat", p, e))?;
        r.files.push(FileCheck {
            path: p.clone(),
            kind: FileKind::Temporary,
            bytes,
            records: 0,
            note: Some("left by an interrupted snapshot or repair; removed on open".into()),
        });
    }
    Ok(r)
}

/// Checks the last segment as open reads it: every damaged range with valid records after
/// it, and a torn tail, is a problem; the valid records are counted.
fn salvage_check(bytes: &[u8], path: &Path, check: &mut FileCheck, problems: &mut Vec<Problem>) {
    let s = format::walk_salvaging(bytes, SEGMENT_HEADER_LEN, |_, _| {
        check.records += 1;
        Ok(())
    })
    .unwrap_or_default();
    for (offset, n, reason) in s.damaged {
        problems.push(Problem {
            file: path.to_owned(),
            offset,
            reason: format!(
                "{reason}: {n} damaged bytes with valid records after them (open drops this range, keeps the {} records after it and rewrites the segment)",
                s.salvaged
            ),
        });
    }
    if let Some((offset, n, reason)) = s.torn {
        problems.push(Problem {
            file: path.to_owned(),
            offset,
            reason: format!("{reason}: torn tail of {n} bytes (open clears it)"),
        });
    }
}

/// The result of [`repair`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Whether anything was changed (false: [`verify`] found nothing to repair).
    pub changed: bool,
    /// The subdirectory the old files were moved to.
    pub backup: Option<PathBuf>,
    /// Records copied into the new journal.
    pub salvaged: u64,
    /// Byte ranges that held no valid record: file, offset, length.
    pub dropped: Vec<(PathBuf, u64, u64)>,
    /// Segments missing from the chain (their records are gone).
    pub missing: Vec<u64>,
    /// The files of the repaired journal.
    pub written: Vec<PathBuf>,
}

/// Salvages every valid record of the journal in `dir` and rewrites it as a clean journal.
///
/// Starting from the snapshot replay would use (or, if none verifies, the newest one) and
/// every segment after it, each file is walked frame by frame; after damage the walk resyncs
/// by scanning forward, byte by byte, for the next frame whose length and checksum are valid.
/// Every valid frame is copied, in order, into one new segment `0000000000000001.log`; as
/// replay keeps the highest version per key, the copies fold to the same state. The old files
/// are moved into a `repair-<unix time>` subdirectory, never deleted. If `repair` is
/// interrupted, put the files from that subdirectory back and run it again.
///
/// Does nothing if [`verify`] finds no problem.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    repair_with(&RealFs, dir)
}

fn lock(fs: &dyn Fs, dir: &Path) -> Result<Box<dyn DirLock>> {
    fs.lock_dir(dir).map_err(|e| match e.kind() {
        std::io::ErrorKind::WouldBlock => Error::Locked {
            dir: dir.to_owned(),
        },
        _ => Error::io("lock", dir, e),
    })
}

/// [`repair`] through a given filesystem.
pub fn repair_with(fs: &dyn Fs, dir: &Path) -> Result<RepairReport> {
    let _lock = lock(fs, dir)?;
    if verify_with(fs, dir)?.is_clean() {
        return Ok(RepairReport::default());
    }
    let l = replay::list(fs, dir)?;
    let (snapshot, cut) = match replay::choose_base(fs, dir, &l, None) {
        Ok(b) => {
            let cut = b.cut();
            (b.snapshot.map(|s| s.path), cut)
        }
        Err(_) => match l.snapshots.iter().next_back() {
            Some((&cut, p)) => (Some(p.clone()), cut),
            None => (None, 0),
        },
    };
    let mut report = RepairReport {
        changed: true,
        ..Default::default()
    };
    let mut out = Vec::new();
    out.extend_from_slice(
        &SegmentHeader {
            seq: 1,
            prev_len: 0,
        }
        .encode(),
    );
    let mut salvage =
        |path: &Path, bytes: &[u8], start: usize, end: usize, report: &mut RepairReport| {
            let mut at = start;
            // A preallocated segment's unused zeros are not damage.
            while at < end && !format::all_zero(bytes, at, end) {
                match format::frame_at(bytes, at, end) {
                    Ok((p, q)) => {
                        format::encode_raw_frame(&mut out, &bytes[p..q]);
                        report.salvaged += 1;
                        at = q;
                    }
                    Err(_) => {
                        let next = format::resync(bytes, at + 1, end).unwrap_or(end);
                        report
                            .dropped
                            .push((path.to_owned(), at as u64, (next - at) as u64));
                        at = next;
                    }
                }
            }
            if end < bytes.len() && !format::all_zero(bytes, end, bytes.len()) {
                report
                    .dropped
                    .push((path.to_owned(), end as u64, (bytes.len() - end) as u64));
            }
        };
    if let Some(p) = &snapshot {
        let bytes = fs.read(p).map_err(|e| Error::io("read", p, e))?;
        let start = if format::decode_snapshot_header(&bytes).is_ok() {
            SNAPSHOT_HEADER_LEN
        } else {
            0
        };
        // The footer is not a record: leave it out whenever it is intact, even if the body
        // does not verify.
        let footer_at = bytes.len().saturating_sub(FOOTER_LEN);
        let end = if bytes.len() >= start + FOOTER_LEN
            && format::decode_footer(&bytes[footer_at..]).is_ok()
        {
            footer_at
        } else {
            bytes.len()
        };
        // The footer of a good snapshot is not a record; do not report it as dropped.
        salvage(p, &bytes[..end], start, end, &mut report);
    }
    let mut expect = cut + 1;
    for (&seq, p) in l.segments.range(cut + 1..) {
        while expect < seq {
            report.missing.push(expect);
            expect += 1;
        }
        expect = seq + 1;
        let bytes = fs.read(p).map_err(|e| Error::io("read", p, e))?;
        let start = match SegmentHeader::decode(&bytes) {
            Ok(_) => SEGMENT_HEADER_LEN,
            Err(_) => 0,
        };
        salvage(p, &bytes, start, bytes.len(), &mut report);
    }

    // New journal first (as a temporary), then the old files out of the way, then the new
    // one in place.
    let tmp = dir.join(format!("{}.tmp", format::segment_name(1)));
    let mut w = fs.create(&tmp).map_err(|e| Error::io("create", &tmp, e))?;
    w.write_all(&out).map_err(|e| Error::io("write", &tmp, e))?;
    w.sync_data().map_err(|e| Error::io("sync", &tmp, e))?;
    drop(w);
    let secs = replay::unix_now();
    let mut backup = dir.join(format!("repair-{secs}"));
    let mut i = 1;
    while fs.list_dir(&backup).is_ok() {
        backup = dir.join(format!("repair-{secs}-{i}"));
        i += 1;
    }
    fs.create_dir_all(&backup)
        .map_err(|e| Error::io("create directory", &backup, e))?;
    let old = l
        .segments
        .values()
        .chain(l.snapshots.values())
        .chain(&l.temporaries);
    for p in old {
        let name = p.file_name().expect("listed files have names");
        let to = backup.join(name);
        fs.rename(p, &to).map_err(|e| Error::io("rename", p, e))?;
    }
    fs.sync_dir(&backup)
        .map_err(|e| Error::io("sync", &backup, e))?;
    let seg = format::segment_path(dir, 1);
    fs.rename(&tmp, &seg)
        .map_err(|e| Error::io("rename", &tmp, e))?;
    fs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))?;
    for (f, o, n) in &report.dropped {
        tracing::warn!(file = %f.display(), offset = o, bytes = n, "journal repair dropped a damaged range");
    }
    report.backup = Some(backup);
    report.written = vec![seg];
    Ok(report)
}

/// Compacts the journal in `dir` (no server running): folds everything into one snapshot and
/// deletes the segments it covers. A torn tail of the last segment is tolerated (what
/// replay keeps is what the snapshot holds).
pub fn compact_offline<R: Record>(dir: &Path) -> Result<CompactReport> {
    compact_offline_with::<R>(&RealFs, dir)
}

/// [`compact_offline`] through a given filesystem.
pub fn compact_offline_with<R: Record>(fs: &dyn Fs, dir: &Path) -> Result<CompactReport> {
    let started = Instant::now();
    let _lock = lock(fs, dir)?;
    let listing = replay::list(fs, dir)?;
    let base = replay::choose_base(fs, dir, &listing, None)?;
    let base_cut = base.cut();
    let cut = base.chain.last().map_or(base_cut, |(n, _)| *n);
    if cut == base_cut {
        return Ok(CompactReport {
            cut,
            elapsed: started.elapsed(),
            ..Default::default()
        });
    }
    // Nothing is appended concurrently, so no stale record can follow a tombstone: all go.
    let keep = replay::Keep::now();
    let w = compact::write_from_replay::<R>(
        fs,
        dir,
        cut,
        base,
        Recovery::TolerateTornTail,
        None,
        keep,
    )?;
    let (mut files_removed, segments_removed) = compact::remove_covered(fs, dir, cut);
    for p in &w.replayed.base.ignored {
        if fs.remove_file(p).is_ok() {
            files_removed += 1;
        }
    }
    let _ = fs.sync_dir(dir);
    Ok(CompactReport {
        snapshot: Some(w.path),
        cut,
        records_read: w.replayed.report.records_read,
        records_written: w.records,
        tombstones_kept: 0,
        files_removed,
        segments_removed,
        bytes_before: w.bytes_before,
        bytes_after: w.bytes,
        elapsed: started.elapsed(),
    })
}

/// The live records of the journal in `dir`, folded as [`Journal::open`] would, without
/// opening it for writing (nothing is changed: a torn tail is reported, not cut off). Fails
/// like `open` on corruption.
pub fn read_live<R: Record>(dir: &Path) -> Result<(Vec<R>, ReplayReport)> {
    read_live_with::<R>(&RealFs, dir)
}

/// [`read_live`] through a given filesystem.
pub fn read_live_with<R: Record>(fs: &dyn Fs, dir: &Path) -> Result<(Vec<R>, ReplayReport)> {
    let mut recs = Vec::new();
    let replayed = replay::replay::<R>(
        fs,
        dir,
        Recovery::TolerateTornTail,
        None,
        replay::Keep::now(),
        |r| {
            recs.push(r);
            Ok(())
        },
    )?;
    Ok((recs, replayed.report))
}

/// Facts about the newest snapshot.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SnapshotInfo {
    /// The file.
    pub path: PathBuf,
    /// The last segment it covers.
    pub cut: u64,
    /// Records in it (0 if it does not verify).
    pub records: u64,
    /// Its size.
    pub bytes: u64,
    /// Whether its footer and checksums verify.
    pub valid: bool,
}

/// The result of [`stats_offline`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OfflineStats {
    /// The journal directory.
    pub dir: PathBuf,
    /// Segment files.
    pub segments: u64,
    /// The lowest and highest segment numbers.
    pub segment_range: Option<(u64, u64)>,
    /// Snapshot files.
    pub snapshots: u64,
    /// Leftover temporary files.
    pub temporaries: u64,
    /// Bytes in all journal files.
    pub bytes: u64,
    /// Valid records in the segments (each read up to its first bad frame).
    pub segment_records: u64,
    /// The newest snapshot.
    pub snapshot: Option<SnapshotInfo>,
}

/// Counts files, bytes and records of the journal in `dir` (no decoding, no changes).
pub fn stats_offline(dir: &Path) -> Result<OfflineStats> {
    stats_offline_with(&RealFs, dir)
}

/// [`stats_offline`] through a given filesystem.
pub fn stats_offline_with(fs: &dyn Fs, dir: &Path) -> Result<OfflineStats> {
    let l = replay::list(fs, dir)?;
    let mut s = OfflineStats {
        dir: dir.to_owned(),
        segments: l.segments.len() as u64,
        segment_range: l
            .segments
            .keys()
            .next()
            .zip(l.segments.keys().next_back())
            .map(|(a, b)| (*a, *b)),
        snapshots: l.snapshots.len() as u64,
        temporaries: l.temporaries.len() as u64,
        ..Default::default()
    };
    for p in l.snapshots.values().chain(&l.temporaries) {
        s.bytes += fs.file_len(p).map_err(|e| Error::io("stat", p, e))?;
    }
    for p in l.segments.values() {
        let bytes = fs.read(p).map_err(|e| Error::io("read", p, e))?;
        s.bytes += bytes.len() as u64;
        if SegmentHeader::decode(&bytes).is_ok() {
            let _ = format::walk_frames(&bytes, SEGMENT_HEADER_LEN, bytes.len(), |_, _| {
                s.segment_records += 1;
                Ok(())
            });
        }
    }
    if let Some((&cut, p)) = l.snapshots.iter().next_back() {
        let bytes = fs.file_len(p).map_err(|e| Error::io("stat", p, e))?;
        let (records, valid) = match replay::verify_snapshot(fs, p, cut) {
            Ok(v) => (v.count, true),
            Err(_) => (0, false),
        };
        s.snapshot = Some(SnapshotInfo {
            path: p.clone(),
            cut,
            records,
            bytes,
            valid,
        });
    }
    Ok(s)
}

/// Records an offline append may hand the writer ahead of what it has written: bounds the
/// memory the lane's queue holds, whatever the number of records.
const APPEND_WINDOW: u64 = 64 * 1024;
/// How often (in records) an offline append checks how far behind the writer is.
const APPEND_CHECK_EVERY: u64 = 4 * 1024;

/// Appends records to the journal in `dir` with no server running (for importing leases):
/// opens it (replaying it), appends every record, syncs and closes. Returns how many were
/// appended.
///
/// The records stream: each is checked (that it can be stored) just before it is handed to
/// the writer, and at most a bounded window of them waits for the writer at any time, so
/// memory does not grow with their number. All or nothing: if a record cannot be stored, or
/// the writer fails, what this call wrote is taken back before the error is returned (the
/// segments it started are removed, top down, and the one it started in is cut back to its
/// header), so the journal holds what it held (and at most one empty segment more, which the
/// next open reuses). Only a crash in the middle leaves a prefix of the records appended. No
/// compaction runs meanwhile (one would fold the records in).
pub fn append_offline<R: Record>(dir: &Path, recs: impl IntoIterator<Item = R>) -> Result<u64> {
    append_offline_with(Arc::new(RealFs), dir, recs)
}

/// [`append_offline`] through a given filesystem.
pub fn append_offline_with<R: Record>(
    fs: Arc<dyn Fs>,
    dir: &Path,
    recs: impl IntoIterator<Item = R>,
) -> Result<u64> {
    append_with_options(fs, Options::new(dir, 1), recs)
}

/// [`append_offline`] with given options (their sync policy and compaction are overridden).
fn append_with_options<R: Record>(
    fs: Arc<dyn Fs>,
    mut opts: Options,
    recs: impl IntoIterator<Item = R>,
) -> Result<u64> {
    let dir = opts.dir.clone();
    // No background compaction: a failed append takes back its segments, and a snapshot
    // folded from them would outlive that.
    opts.compact_bytes = u64::MAX;
    opts.compact_segments = u64::MAX;
    // Durable means written until the end, where shutdown syncs everything: success is only
    // reported after that.
    opts.sync = SyncPolicy::None;
    // Nothing waits for a sync here, and a failed append cuts its first segment back to
    // where it started.
    opts.preallocate = false;
    let (journal, _) = Journal::<R>::open(opts, fs.clone(), |_| {})?;
    let first = journal.started_at;
    let mut lane = journal.lane(0);
    let mut scratch = Vec::new();
    let mut n = 0u64;
    let mut failed = None;
    for r in recs {
        // Refuse a record that cannot be stored here: the writer would only log it.
        scratch.clear();
        if let Err(e) = format::encode_frame(&mut scratch, &r) {
            failed = Some(Error::Encode(e));
            break;
        }
        let t = lane.append(&r);
        n += 1;
        if t.0.is_multiple_of(APPEND_CHECK_EVERY)
            && t.0 > APPEND_WINDOW
            && let Err(e) = wait_for_writer(&journal, &lane, Ticket(t.0 - APPEND_WINDOW))
        {
            failed = Some(e);
            break;
        }
    }
    drop(lane);
    let (closed, _lock) = journal.shutdown_keeping_lock();
    let Some(e) = failed.or(closed.err()) else {
        return Ok(n);
    };
    if let Err(te) = take_back(&*fs, &dir, first) {
        tracing::error!(error = %te, "journal: a failed offline append could not take back what it wrote");
    }
    Err(e)
}

/// Waits until the writer has `t` (or fails).
fn wait_for_writer<R: Record>(journal: &Journal<R>, lane: &Lane<R>, t: Ticket) -> Result<()> {
    loop {
        if lane.wait_durable(t, Duration::from_millis(100)) {
            return Ok(());
        }
        if let Health::Failing { error } = journal.health() {
            return Err(Error::NotDurable {
                records: lane.last_ticket().0 - lane.durable().0,
                error,
            });
        }
    }
}

/// Takes back what a failed [`append_offline`] wrote, starting in segment `first.0` at
/// offset `first.1` (the end of its records, or its header): the segments after it are
/// removed top down, the directory synced after each (a power loss never leaves a gap in the
/// chain), then `first` is cut back to that offset.
fn take_back(fs: &dyn Fs, dir: &Path, first: (u64, u64)) -> Result<()> {
    let (seq, at) = first;
    let l = replay::list(fs, dir)?;
    for (_, p) in l.segments.range(seq + 1..).rev() {
        fs.remove_file(p).map_err(|e| Error::io("remove", p, e))?;
        fs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))?;
    }
    if let Some(p) = l.segments.get(&seq) {
        fs.truncate(p, at)
            .map_err(|e| Error::io("truncate", p, e))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;
    use crate::MAX_RECORD_LEN;
    use crate::testing::{FaultyFs, Rec};

    fn t(key: u32, version: u64) -> Rec {
        Rec::new(key, version).padded(20, 1)
    }

    fn files(fs: &FaultyFs, dir: &Path) -> BTreeMap<String, Vec<u8>> {
        fs.file_names(dir)
            .into_iter()
            .filter(|n| n != "LOCK")
            .map(|n| {
                let data = fs.read_file(&dir.join(&n)).unwrap();
                (n, data)
            })
            .collect()
    }

    /// An import that spans many segments and then meets a record it cannot store leaves
    /// the directory byte for byte as it was.
    #[test]
    fn a_refused_record_takes_back_every_segment_the_append_wrote() {
        let fs = FaultyFs::new();
        let dir = PathBuf::from("/j");
        let mut opts = Options::new(&dir, 1);
        opts.segment_bytes = 256;
        let arc: Arc<dyn Fs> = Arc::new(fs.clone());
        append_with_options(arc.clone(), opts.clone(), (0..50).map(|i| t(i, 1))).unwrap();
        compact_offline_with::<Rec>(&fs, &dir).unwrap();
        append_with_options(arc.clone(), opts.clone(), (50..60).map(|i| t(i, 1))).unwrap();
        // Reopened once, so the last segment is an empty one the next append reuses.
        append_with_options(arc.clone(), opts.clone(), std::iter::empty::<Rec>()).unwrap();
        let before = files(&fs, &dir);
        let (live_before, _) = read_live_with::<Rec>(&fs, &dir).unwrap();

        let big = Rec::new(7, 9).padded(MAX_RECORD_LEN, 0);
        let recs = (100..400).map(|i| t(i, 1)).chain([big]);
        let err = append_with_options(arc.clone(), opts.clone(), recs).unwrap_err();
        assert!(matches!(err, Error::Encode(_)), "{err}");
        assert_eq!(files(&fs, &dir), before);
        let (live_after, _) = read_live_with::<Rec>(&fs, &dir).unwrap();
        assert_eq!(live_after.len(), live_before.len());
        assert!(verify_with(&fs, &dir).unwrap().is_clean());
    }
}
