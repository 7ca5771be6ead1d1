//! Recovery: which files make up the journal, and folding them into the newest record per key.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};
use crate::format::{
    self, FOOTER_LEN, FileName, SEGMENT_HEADER_LEN, SNAPSHOT_HEADER_LEN, SegmentHeader, WalkEnd,
};
use crate::fs::Fs;
use crate::{Record, Recovery};

/// Unix time now, for [`Record::keep`].
pub(crate) fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// What a replay found. Returned by [`Journal::open`](crate::Journal::open) and
/// [`read_live`](crate::read_live).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// The snapshot the replay started from, if any.
    pub snapshot: Option<PathBuf>,
    /// How many segments were replayed after it.
    pub segments: usize,
    /// Records read (snapshot and segments, superseded ones included).
    pub records_read: u64,
    /// Records that survived the fold (newest per key, and kept).
    pub live: u64,
    /// The highest version seen in any record (0 if none).
    pub max_version: u64,
    /// A torn or corrupt tail cut off the last segment: the file, the offset the valid data
    /// ends at, and how many bytes were dropped. With [`Recovery::TolerateTornTail`] only.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// Snapshots that failed verification and were passed over for an older one whose
    /// segments are all present (and removed, when the journal was opened for writing).
    pub ignored_snapshots: Vec<PathBuf>,
    /// Bytes past the valid end of sealed segments: left by a write the writer abandoned
    /// after an IO error and rewrote into the next segment, so ignored.
    pub abandoned_bytes: u64,
    /// How long the replay took.
    pub elapsed: Duration,
}

/// The journal's files by kind.
#[derive(Debug, Default)]
pub(crate) struct Listing {
    pub(crate) segments: BTreeMap<u64, PathBuf>,
    pub(crate) snapshots: BTreeMap<u64, PathBuf>,
    pub(crate) temporaries: Vec<PathBuf>,
    pub(crate) others: Vec<PathBuf>,
}

pub(crate) fn list(fs: &dyn Fs, dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    let names = fs.list_dir(dir).map_err(|e| Error::io("list", dir, e))?;
    for name in names {
        let path = dir.join(&name);
        match format::classify(&name) {
            FileName::Segment(n) => {
                l.segments.insert(n, path);
            }
            FileName::Snapshot(n) => {
                l.snapshots.insert(n, path);
            }
            FileName::Temporary => l.temporaries.push(path),
            FileName::Lock => {}
            FileName::Other => l.others.push(path),
        }
    }
    l.temporaries.sort();
    l.others.sort();
    Ok(l)
}

/// A snapshot whose header, footer, body checksum and record count all verify.
#[derive(Debug)]
pub(crate) struct VerifiedSnapshot {
    pub(crate) cut: u64,
    pub(crate) path: PathBuf,
    pub(crate) bytes: Vec<u8>,
}

/// Reads and verifies a snapshot file (framing only, no decoding).
pub(crate) fn read_snapshot(fs: &dyn Fs, path: &Path, named_cut: u64) -> Result<VerifiedSnapshot> {
    let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
    let (cut, count) =
        format::check_snapshot(&bytes).map_err(|(o, r)| Error::corrupt(path, o, r))?;
    if cut != named_cut {
        return Err(Error::corrupt(
            path,
            12,
            format!("header says cut {cut}, file name says {named_cut}"),
        ));
    }
    let end = bytes.len() - FOOTER_LEN;
    let mut n = 0u64;
    match format::walk_frames(&bytes, SNAPSHOT_HEADER_LEN, end, |_, _| {
        n += 1;
        Ok(())
    }) {
        Ok(WalkEnd::Clean) => {}
        Ok(WalkEnd::Bad { offset, reason }) | Err((offset, reason)) => {
            return Err(Error::corrupt(path, offset, reason));
        }
    }
    if n != count {
        return Err(Error::corrupt(
            path,
            end as u64,
            format!("footer promises {count} records, the snapshot holds {n}"),
        ));
    }
    Ok(VerifiedSnapshot {
        cut,
        path: path.to_owned(),
        bytes,
    })
}

/// Where a replay starts and which files it reads.
#[derive(Debug, Default)]
pub(crate) struct Base {
    /// The newest snapshot that verifies and has all segments after it.
    pub(crate) snapshot: Option<VerifiedSnapshot>,
    /// Newer snapshots that do not verify, passed over.
    pub(crate) ignored: Vec<PathBuf>,
    /// Older snapshots and segments the snapshot covers: left by a compaction interrupted
    /// before it deleted them.
    pub(crate) stale: Vec<PathBuf>,
    /// The segments after the snapshot, in order, numbered without gaps.
    pub(crate) chain: Vec<(u64, PathBuf)>,
}

impl Base {
    pub(crate) fn cut(&self) -> u64 {
        self.snapshot.as_ref().map_or(0, |s| s.cut)
    }
}

/// Checks that the segments after `cut` (up to `upto + 1` when given) are numbered without
/// gaps from `cut + 1`; returns them.
fn chain_after(
    dir: &Path,
    l: &Listing,
    cut: u64,
    upto: Option<u64>,
) -> Result<Vec<(u64, PathBuf)>> {
    let mut chain = Vec::new();
    let mut expect = cut + 1;
    for (&n, p) in l.segments.range(cut + 1..) {
        if upto.is_some_and(|u| n > u + 1) {
            break;
        }
        if n != expect {
            return Err(Error::MissingSegment {
                dir: dir.to_owned(),
                seq: expect,
                after: after_what(cut, expect),
            });
        }
        chain.push((n, p.clone()));
        expect += 1;
    }
    if let Some(u) = upto
        && expect <= u + 1
    {
        return Err(Error::MissingSegment {
            dir: dir.to_owned(),
            seq: expect,
            after: after_what(cut, expect),
        });
    }
    Ok(chain)
}

fn after_what(cut: u64, seq: u64) -> String {
    if seq == cut + 1 {
        if cut == 0 {
            "the start of the journal".into()
        } else {
            format!("the snapshot of segment {cut}")
        }
    } else {
        format!("segment {}", seq - 1)
    }
}

/// Picks the snapshot to start from and the segments to replay after it. `upto`: only
/// segments up to that number matter (compaction), and `upto + 1` must exist.
pub(crate) fn choose_base(fs: &dyn Fs, dir: &Path, l: &Listing, upto: Option<u64>) -> Result<Base> {
    let mut ignored: Vec<(PathBuf, Error)> = Vec::new();
    let mut chosen = None;
    for (&cut, path) in l.snapshots.iter().rev() {
        if upto.is_some_and(|u| cut > u) {
            continue;
        }
        match read_snapshot(fs, path, cut) {
            Ok(s) => {
                chosen = Some(s);
                break;
            }
            Err(e @ Error::Corrupt { .. }) => {
                tracing::warn!(error = %e, "journal snapshot does not verify");
                ignored.push((path.clone(), e));
            }
            Err(e) => return Err(e),
        }
    }
    let cut = chosen.as_ref().map_or(0, |s| s.cut);
    let chain = match chain_after(dir, l, cut, upto) {
        Ok(c) => c,
        // A newer snapshot that does not verify is the real problem: report it.
        Err(e) => return Err(ignored.into_iter().next().map_or(e, |(_, e)| e)),
    };
    if chosen.is_none() && chain.is_empty() {
        if let Some((_, e)) = ignored.into_iter().next() {
            // The only copy of the data is a snapshot that does not verify.
            return Err(e);
        }
        return Ok(Base::default());
    }
    for (_, e) in &ignored {
        tracing::warn!(error = %e, "journal snapshot passed over: an older one and all segments after it are present");
    }
    let mut stale = Vec::new();
    for (&n, p) in &l.snapshots {
        if n < cut {
            stale.push(p.clone());
        }
    }
    if cut > 0 {
        stale.extend(l.segments.range(1..=cut).map(|(_, p)| p.clone()));
    }
    Ok(Base {
        snapshot: chosen,
        ignored: ignored.into_iter().map(|(p, _)| p).collect(),
        stale,
        chain,
    })
}

/// The newest record per key, with where it came from: the segment number, or for the
/// snapshot its cut.
#[derive(Debug)]
pub(crate) struct Folded<R: Record> {
    pub(crate) map: HashMap<R::Key, (R, u64)>,
    /// The newest source (as in `map`) that held any record.
    pub(crate) last_source: u64,
    pub(crate) report: ReplayReport,
    pub(crate) base: Base,
    /// Where the writer continues: the next segment number and the valid length of the one
    /// before it.
    pub(crate) next_seq: u64,
    pub(crate) prev_len: u64,
    /// Bytes in the replayed segments (each up to its valid end).
    pub(crate) segment_bytes: u64,
    /// The newest segment replayed (with a valid header).
    pub(crate) last_replayed: Option<u64>,
}

impl<R: Record> Folded<R> {
    fn add(&mut self, rec: R, src: u64) {
        self.report.records_read += 1;
        self.last_source = self.last_source.max(src);
        let v = rec.version();
        self.report.max_version = self.report.max_version.max(v);
        match self.map.entry(rec.key()) {
            Entry::Occupied(mut o) => {
                if v > o.get().0.version() {
                    o.insert((rec, src));
                }
            }
            Entry::Vacant(e) => {
                e.insert((rec, src));
            }
        }
    }

    /// The records that survive: the newest per key whose `keep(now)` holds, plus, when
    /// `retain_from` is given, the newest of every key that came from that source whatever
    /// `keep` says (see the crate docs on tombstones).
    pub(crate) fn survivors(self, now: u64, retain_from: Option<u64>) -> impl Iterator<Item = R> {
        self.map
            .into_values()
            .filter(move |(r, src)| r.keep(now) || retain_from.is_some_and(|s| s == *src))
            .map(|(r, _)| r)
    }
}

fn decode_into<R: Record>(
    f: &mut Folded<R>,
    src: u64,
) -> impl FnMut(u64, &[u8]) -> Result<(), String> + '_ {
    move |_, payload| {
        let rec = format::decode_payload::<R>(payload)?;
        f.add(rec, src);
        Ok(())
    }
}

/// How to treat a damaged tail of the last segment.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Tail {
    /// Open for writing: cut it off the file (and keep a copy if it holds intact records).
    Truncate(Recovery),
    /// Read only: leave the file alone, report what would be cut.
    Report(Recovery),
}

/// Folds the journal in `dir`: the base snapshot and the chain of segments after it (only up
/// to `upto` when given; every such segment then counts as sealed and `upto + 1` must exist).
pub(crate) fn fold<R: Record>(
    fs: &dyn Fs,
    dir: &Path,
    tail: Tail,
    upto: Option<u64>,
) -> Result<Folded<R>> {
    let started = Instant::now();
    let l = list(fs, dir)?;
    let base = choose_base(fs, dir, &l, upto)?;
    let cut = base.cut();
    let mut f = Folded {
        map: HashMap::new(),
        last_source: 0,
        report: ReplayReport::default(),
        base: Base::default(),
        next_seq: cut + 1,
        prev_len: 0,
        segment_bytes: 0,
        last_replayed: None,
    };
    f.report.ignored_snapshots = base.ignored.clone();
    if let Some(s) = &base.snapshot {
        f.report.snapshot = Some(s.path.clone());
        let end = s.bytes.len() - FOOTER_LEN;
        let walked = format::walk_frames(
            &s.bytes,
            SNAPSHOT_HEADER_LEN,
            end,
            decode_into(&mut f, s.cut),
        );
        match walked {
            Ok(WalkEnd::Clean) => {}
            Ok(WalkEnd::Bad { offset, reason }) | Err((offset, reason)) => {
                return Err(Error::corrupt(&s.path, offset, reason));
            }
        }
    }
    let recovery = match tail {
        Tail::Truncate(r) | Tail::Report(r) => r,
    };
    let segs: Vec<(u64, PathBuf)> = match upto {
        Some(u) => base
            .chain
            .iter()
            .filter(|(n, _)| *n <= u)
            .cloned()
            .collect(),
        None => base.chain.clone(),
    };
    for (i, (seq, path)) in segs.iter().enumerate() {
        let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
        let len = bytes.len() as u64;
        let successor = base.chain.get(i + 1);
        let is_last = successor.is_none();
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => h,
            Err(reason) if is_last && upto.is_none() => {
                // A crash while a new segment was being started: its header never became
                // durable, so nothing in it was ever reported durable.
                if recovery == Recovery::Strict {
                    return Err(Error::corrupt(path, 0, reason));
                }
                tracing::warn!(file = %path.display(), %reason, "journal: last segment has no valid header; dropping it");
                f.report.truncated = Some((path.clone(), 0, len));
                f.next_seq = *seq;
                break;
            }
            Err(reason) => return Err(Error::corrupt(path, 0, reason)),
        };
        if header.seq != *seq {
            return Err(Error::corrupt(
                path,
                12,
                format!(
                    "header says segment {}, the file name says {seq}",
                    header.seq
                ),
            ));
        }
        f.report.segments += 1;
        f.last_replayed = Some(*seq);
        // The valid end of a sealed segment is in its successor's header.
        let mut valid_end = None;
        if let Some((_, next)) = successor {
            let h = fs
                .read_range(next, 0, SEGMENT_HEADER_LEN)
                .map_err(|e| Error::io("read", next, e))?;
            match SegmentHeader::decode(&h) {
                Ok(nh) => valid_end = Some(nh.prev_len),
                // The successor is the last segment and has a torn header: this one is the
                // last one with data (the successor is handled in the next round).
                Err(_) if i + 2 == base.chain.len() && upto.is_none() => {}
                Err(reason) => return Err(Error::corrupt(next, 0, reason)),
            }
        }
        match valid_end {
            Some(end) => {
                if end < SEGMENT_HEADER_LEN as u64 || end > len {
                    return Err(Error::corrupt(
                        path,
                        len.min(end),
                        format!(
                            "segment is {len} bytes, its successor's header says {end} are valid"
                        ),
                    ));
                }
                let end = end as usize;
                match format::walk_frames(
                    &bytes,
                    SEGMENT_HEADER_LEN,
                    end,
                    decode_into(&mut f, *seq),
                ) {
                    Ok(WalkEnd::Clean) => {}
                    Ok(WalkEnd::Bad { offset, reason }) | Err((offset, reason)) => {
                        return Err(Error::corrupt(path, offset, reason));
                    }
                }
                if len > end as u64 {
                    tracing::info!(file = %path.display(), bytes = len - end as u64, "journal: ignoring bytes after a sealed segment's valid end (abandoned after an IO error)");
                    f.report.abandoned_bytes += len - end as u64;
                }
                f.segment_bytes += end as u64;
                f.prev_len = end as u64;
            }
            None => {
                let walked = format::walk_frames(
                    &bytes,
                    SEGMENT_HEADER_LEN,
                    bytes.len(),
                    decode_into(&mut f, *seq),
                );
                let valid = match walked {
                    Ok(WalkEnd::Clean) => len,
                    Err((offset, reason)) => return Err(Error::corrupt(path, offset, reason)),
                    Ok(WalkEnd::Bad { offset, reason }) => {
                        if recovery == Recovery::Strict {
                            return Err(Error::corrupt(path, offset, reason));
                        }
                        torn_tail(fs, path, &bytes, offset, &reason, tail)?;
                        f.report.truncated = Some((path.clone(), offset, len - offset));
                        offset
                    }
                };
                f.segment_bytes += valid;
                f.prev_len = valid;
            }
        }
        f.next_seq = seq + 1;
    }
    f.base = base;
    f.report.elapsed = started.elapsed();
    Ok(f)
}

/// Handles a damaged tail of the last segment from `offset` on.
fn torn_tail(
    fs: &dyn Fs,
    path: &Path,
    bytes: &[u8],
    offset: u64,
    reason: &str,
    tail: Tail,
) -> Result<()> {
    let dropped = bytes.len() as u64 - offset;
    // A crash tears only what was written after the last sync; whole valid records after the
    // damage mean a bit flip more likely than a torn write. They were not necessarily
    // acknowledged, but keep a copy so `repair` can be run on them by hand.
    let mut intact = 0u64;
    let mut at = offset as usize + 1;
    while let Some(p) = format::resync(bytes, at, bytes.len()) {
        intact += 1;
        at = format::frame_at(bytes, p, bytes.len()).map_or(p + 1, |(_, q)| q);
    }
    if intact > 0 {
        tracing::error!(
            file = %path.display(), offset, dropped, intact, %reason,
            "journal: the damaged tail of the last segment holds intact records after the damage (a bit flip rather than a torn write?)"
        );
    } else {
        tracing::warn!(file = %path.display(), offset, dropped, %reason, "journal: torn tail of the last segment");
    }
    if let Tail::Truncate(_) = tail {
        if intact > 0 {
            let mut copy = path.as_os_str().to_owned();
            copy.push(format!(".tail-{offset}.bad"));
            let copy = PathBuf::from(copy);
            let mut w = fs
                .create(&copy)
                .map_err(|e| Error::io("create", &copy, e))?;
            w.write_all(&bytes[offset as usize..])
                .map_err(|e| Error::io("write", &copy, e))?;
            w.sync_data().map_err(|e| Error::io("sync", &copy, e))?;
        }
        fs.truncate(path, offset)
            .map_err(|e| Error::io("truncate", path, e))?;
    }
    Ok(())
}
