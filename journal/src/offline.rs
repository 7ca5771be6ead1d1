//! Offline tools over a journal directory no server has open: verify, repair, compact, read,
//! count, append.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use crate::compact::{self, CompactReport};
use crate::error::{Error, Result};
use crate::format::{
    self, FOOTER_LEN, SEGMENT_HEADER_LEN, SNAPSHOT_HEADER_LEN, SegmentHeader, WalkEnd,
};
use crate::fs::{DirLock, Fs, RealFs};
use crate::journal::{Journal, Options};
use crate::replay::{self, ReplayReport, Tail};
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
        match replay::read_snapshot(fs, path, cut) {
            Ok(s) => {
                newest_valid = newest_valid.max(cut);
                let end = s.bytes.len() - FOOTER_LEN;
                let _ = format::walk_frames(&s.bytes, SNAPSHOT_HEADER_LEN, end, |_, _| {
                    check.records += 1;
                    Ok(())
                });
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
            Err(reason) => {
                let reason = if is_last {
                    format!("{reason} (a segment being started at a crash; open drops it)")
                } else {
                    reason.clone()
                };
                r.problems.push(Problem {
                    file: path.clone(),
                    offset: 0,
                    reason,
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
                if h.prev_len < len {
                    check.note = Some(format!(
                        "{} bytes after the valid end {} (abandoned after an IO error; ignored)",
                        len - h.prev_len,
                        h.prev_len
                    ));
                }
                h.prev_len
            }
            None => len,
        };
        let walked = format::walk_frames(&bytes, SEGMENT_HEADER_LEN, end as usize, |_, _| {
            check.records += 1;
            Ok(())
        });
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
            while at < end {
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
            if end < bytes.len() {
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
        let end = if format::check_snapshot(&bytes).is_ok() {
            bytes.len() - FOOTER_LEN
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
    let folded = replay::fold::<R>(fs, dir, Tail::Report(Recovery::TolerateTornTail), None)?;
    let base_cut = folded.base.cut();
    let cut = folded.base.chain.last().map_or(base_cut, |(n, _)| *n);
    if cut == base_cut {
        return Ok(CompactReport {
            cut,
            elapsed: started.elapsed(),
            ..Default::default()
        });
    }
    let mut bytes_before = folded.segment_bytes;
    if let Some(s) = &folded.base.snapshot {
        bytes_before += s.bytes.len() as u64;
    }
    let records_read = folded.report.records_read;
    let leftovers: Vec<PathBuf> = folded.base.ignored.clone();
    // Nothing is appended concurrently, so no stale record can follow a tombstone: all go.
    let (path, records_written, bytes_after) =
        compact::write_snapshot(fs, dir, cut, folded.survivors(replay::unix_now(), None))?;
    let (mut files_removed, segments_removed) = compact::remove_covered(fs, dir, cut);
    for p in leftovers {
        if fs.remove_file(&p).is_ok() {
            files_removed += 1;
        }
    }
    let _ = fs.sync_dir(dir);
    Ok(CompactReport {
        snapshot: Some(path),
        cut,
        records_read,
        records_written,
        tombstones_kept: 0,
        files_removed,
        segments_removed,
        bytes_before,
        bytes_after,
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
    let started = Instant::now();
    let folded = replay::fold::<R>(fs, dir, Tail::Report(Recovery::TolerateTornTail), None)?;
    let mut report = folded.report.clone();
    let recs: Vec<R> = folded.survivors(replay::unix_now(), None).collect();
    report.live = recs.len() as u64;
    report.elapsed = started.elapsed();
    Ok((recs, report))
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
        let (records, valid) = match replay::read_snapshot(fs, p, cut) {
            Ok(v) => {
                let mut n = 0;
                let end = v.bytes.len() - FOOTER_LEN;
                let _ = format::walk_frames(&v.bytes, SNAPSHOT_HEADER_LEN, end, |_, _| {
                    n += 1;
                    Ok(())
                });
                (n, true)
            }
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

/// Appends records to the journal in `dir` with no server running (for importing leases):
/// opens it (replaying it), appends every record, syncs and closes. Returns how many were
/// appended.
pub fn append_offline<R: Record>(dir: &Path, recs: impl IntoIterator<Item = R>) -> Result<u64> {
    append_offline_with(Arc::new(RealFs), dir, recs)
}

/// [`append_offline`] through a given filesystem.
pub fn append_offline_with<R: Record>(
    fs: Arc<dyn Fs>,
    dir: &Path,
    recs: impl IntoIterator<Item = R>,
) -> Result<u64> {
    // Refuse a record that cannot be stored before appending any: the writer would only
    // log it, and a half-done import is worse than none.
    let recs: Vec<R> = recs.into_iter().collect();
    let mut scratch = Vec::new();
    for r in &recs {
        scratch.clear();
        format::encode_frame(&mut scratch, r).map_err(Error::Encode)?;
    }
    let (journal, _) = Journal::<R>::open(Options::new(dir, 1), fs, |_| {})?;
    let mut lane = journal.lane(0);
    let n = recs.len() as u64;
    for r in recs {
        lane.append(r);
    }
    journal.shutdown()?;
    Ok(n)
}
