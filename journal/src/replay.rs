//! Recovery: which files make up the journal, and replaying them: the segments after the
//! snapshot folded into the newest record per key, the snapshot streamed past that fold.

use std::collections::hash_map::Entry;
use std::collections::{BTreeMap, HashMap};
use std::hash::{BuildHasherDefault, Hasher};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::chunked::{self, Next};
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
    /// A torn tail of the last segment (a write cut short by a crash: nothing valid after
    /// it): the file, the offset its records end at, and how many bytes of the torn write
    /// were there (up to the last non-zero byte: a preallocated segment's zeros do not
    /// count). Also a last segment whose header never became complete (offset 0): it holds
    /// no record. With [`Recovery::TolerateTornTail`] only; an open clears both.
    pub truncated: Option<(PathBuf, u64, u64)>,
    /// Damaged ranges of the last segment that valid records follow (a bit flip, or a
    /// damaged segment header, not a torn write): file, offset, bytes. The record in each is
    /// dropped; the ones after are kept ([`ReplayReport::salvaged`]). An open rewrites the
    /// segment without them and keeps a copy of its bytes from the first damaged one on in
    /// `<segment>.tail-<offset>.bad`. With [`Recovery::TolerateTornTail`] only.
    pub damaged: Vec<(PathBuf, u64, u64)>,
    /// Valid records of the last segment after a damaged range, kept.
    pub salvaged: u64,
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

/// A snapshot whose header, footer, body checksum, framing and record count all verify.
#[derive(Debug)]
pub(crate) struct VerifiedSnapshot {
    pub(crate) cut: u64,
    pub(crate) path: PathBuf,
    /// The file's length.
    pub(crate) len: u64,
    /// The records it holds.
    pub(crate) count: u64,
    /// crc32c of its header, and of everything before the footer (as the footer says).
    header_crc: u32,
    body_crc: u32,
}

/// Verifies a snapshot file without decoding it and without holding it in memory: reads the
/// header and the footer, then streams the file once in [`CHUNK`](chunked::CHUNK)-byte
/// reads, keeping one running crc32c of everything before the footer and walking the frames
/// (lengths only: their payload checksums are checked when they are decoded) to count them.
///
/// This is the completeness proof, and it runs before any record of the snapshot is handed
/// on: a snapshot that does not verify is passed over (or is an error) having contributed
/// nothing. It costs one read of the file at memory speed (the checksum is hardware crc32c).
pub(crate) fn verify_snapshot(
    fs: &dyn Fs,
    path: &Path,
    named_cut: u64,
) -> Result<VerifiedSnapshot> {
    let len = fs.file_len(path).map_err(|e| Error::io("stat", path, e))?;
    let head = fs
        .read_range(path, 0, SNAPSHOT_HEADER_LEN)
        .map_err(|e| Error::io("read", path, e))?;
    let cut = format::decode_snapshot_header(&head).map_err(|r| Error::corrupt(path, 0, r))?;
    if len < (SNAPSHOT_HEADER_LEN + FOOTER_LEN) as u64 {
        return Err(Error::corrupt(
            path,
            len,
            "snapshot ends before its footer (incomplete)",
        ));
    }
    let end = len - FOOTER_LEN as u64;
    let foot = fs
        .read_range(path, end, FOOTER_LEN)
        .map_err(|e| Error::io("read", path, e))?;
    let footer = format::decode_footer(&foot).map_err(|r| Error::corrupt(path, end, r))?;
    if cut != named_cut {
        return Err(Error::corrupt(
            path,
            12,
            format!("header says cut {cut}, file name says {named_cut}"),
        ));
    }
    let header_crc = crc32c::crc32c(&head);
    let mut frames =
        chunked::Frames::new(fs, path, SNAPSHOT_HEADER_LEN as u64, end, Some(header_crc));
    let mut n = 0u64;
    let bad = loop {
        match frames.next()? {
            Next::Frame { .. } => n += 1,
            Next::End => break None,
            Next::Bad { offset, reason } => break Some((offset, reason)),
        }
    };
    let crc = match bad {
        None => frames.crc().unwrap_or_default(),
        Some(_) => frames.crc_to_end()?,
    };
    // Damage shows as a checksum mismatch first (as it always has); bad framing under a
    // matching checksum is a snapshot written wrong.
    if crc != footer.body_crc {
        let (offset, reason) = match bad {
            Some((offset, reason)) => (
                offset,
                format!("{reason} (snapshot body checksum mismatch)"),
            ),
            None => match first_bad_payload(fs, path, end)? {
                Some(offset) => (
                    offset,
                    "record checksum mismatch (snapshot body checksum mismatch)".into(),
                ),
                None => (
                    SNAPSHOT_HEADER_LEN as u64,
                    "snapshot body checksum mismatch".into(),
                ),
            },
        };
        return Err(Error::corrupt(path, offset, reason));
    }
    if let Some((offset, reason)) = bad {
        return Err(Error::corrupt(path, offset, reason));
    }
    if n != footer.count {
        return Err(Error::corrupt(
            path,
            end,
            format!(
                "footer promises {} records, the snapshot holds {n}",
                footer.count
            ),
        ));
    }
    Ok(VerifiedSnapshot {
        cut,
        path: path.to_owned(),
        len,
        count: n,
        header_crc,
        body_crc: footer.body_crc,
    })
}

/// The offset of the first frame of a snapshot whose payload does not match its checksum:
/// where a bit flip that failed the body checksum is, so that the error names the record.
fn first_bad_payload(fs: &dyn Fs, path: &Path, end: u64) -> Result<Option<u64>> {
    let mut frames = chunked::Frames::new(fs, path, SNAPSHOT_HEADER_LEN as u64, end, None);
    loop {
        match frames.next()? {
            Next::Frame {
                offset,
                payload,
                crc,
            } if crc32c::crc32c(payload) != crc => return Ok(Some(offset)),
            Next::Frame { .. } => {}
            Next::End | Next::Bad { .. } => return Ok(None),
        }
    }
}

/// Decodes the records of a verified snapshot, streaming it in chunks, and calls `each` on
/// every one.
///
/// The file was proven whole by [`verify_snapshot`]; this pass keeps the same running
/// checksum and compares it with the footer at the end, so bytes that changed in between
/// (a disk returning other data once the pages were evicted) fail the replay. It does not
/// check each payload's own checksum on the way: that costs more than the running one (a
/// call per small payload), and either way such a change is only found after some records
/// were handed on, and fails the replay.
fn stream_snapshot<R: Record>(
    fs: &dyn Fs,
    s: &VerifiedSnapshot,
    mut each: impl FnMut(R) -> Result<()>,
) -> Result<()> {
    let end = s.len - FOOTER_LEN as u64;
    let mut frames = chunked::Frames::new(
        fs,
        &s.path,
        SNAPSHOT_HEADER_LEN as u64,
        end,
        Some(s.header_crc),
    );
    let mut n = 0u64;
    loop {
        match frames.next()? {
            Next::Frame {
                offset, payload, ..
            } => {
                let rec = format::decode_payload::<R>(payload)
                    .map_err(|r| Error::corrupt(&s.path, offset, r))?;
                n += 1;
                each(rec)?;
            }
            Next::End => break,
            Next::Bad { offset, reason } => return Err(Error::corrupt(&s.path, offset, reason)),
        }
    }
    if n != s.count || frames.crc() != Some(s.body_crc) {
        return Err(Error::corrupt(
            &s.path,
            SNAPSHOT_HEADER_LEN as u64,
            "snapshot changed while it was replayed (it verified before)",
        ));
    }
    Ok(())
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
        match verify_snapshot(fs, path, cut) {
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

/// A multiply-rotate hasher (the idea of `rustc-hash`) for the tail fold's map. The fold
/// hashes every key it reads and looks up every snapshot record while the tail is not
/// empty, so SipHash would cost more than the rest of the map work. Not DoS-resistant, which
/// does not matter here: the keys come from the journal's own files.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct KeyHasher(u64);

impl KeyHasher {
    const MUL: u64 = 0xf135_7aea_2e62_a9c5;
    const FINISH: u64 = 0x9e37_79b9_7f4a_7c15;

    fn add(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(Self::MUL);
    }
}

impl Hasher for KeyHasher {
    fn finish(&self) -> u64 {
        // A plain multiply leaves the low bits (which pick the bucket) depending only on the
        // low bits of the input; folding the high half of a wide multiply in mixes them all.
        let m = u128::from(self.0) * u128::from(Self::FINISH);
        (m as u64) ^ ((m >> 64) as u64)
    }

    fn write(&mut self, bytes: &[u8]) {
        for c in bytes.chunks(8) {
            let mut b = [0u8; 8];
            b[..c.len()].copy_from_slice(c);
            self.add(u64::from_le_bytes(b));
        }
    }

    fn write_u8(&mut self, n: u8) {
        self.add(u64::from(n));
    }

    fn write_u16(&mut self, n: u16) {
        self.add(u64::from(n));
    }

    fn write_u32(&mut self, n: u32) {
        self.add(u64::from(n));
    }

    fn write_u64(&mut self, n: u64) {
        self.add(n);
    }

    fn write_usize(&mut self, n: usize) {
        self.add(n as u64);
    }
}

/// Where the newest record of a key in the segments is: its version, and the segment and
/// offset of its frame.
#[derive(Clone, Copy, Debug)]
struct Loc {
    version: u64,
    src: u64,
    offset: u64,
}

/// The newest record per key of the segments after the snapshot, by location. The records
/// themselves are read again, once each, when they are emitted: the fold holds 24 bytes and
/// a key per record instead of the record, which matters when the segments hold a record of
/// every lease (compaction of a busy journal folds hundreds of megabytes of them).
struct TailFold<R: Record> {
    map: HashMap<R::Key, Loc, BuildHasherDefault<KeyHasher>>,
    /// The newest segment that held any record (0 if none).
    last_source: u64,
    records: u64,
    max_version: u64,
}

impl<R: Record> TailFold<R> {
    fn add(&mut self, key: R::Key, loc: Loc) {
        self.records += 1;
        self.last_source = self.last_source.max(loc.src);
        self.max_version = self.max_version.max(loc.version);
        match self.map.entry(key) {
            Entry::Occupied(mut o) => {
                if loc.version > o.get().version {
                    o.insert(loc);
                }
            }
            Entry::Vacant(e) => {
                e.insert(loc);
            }
        }
    }
}

/// Reads the fold's records back from the segments, one segment at a time and in file
/// order, and hands each to `emit` with its segment.
fn emit_tail<R: Record>(
    fs: &dyn Fs,
    segments: &[SegmentInfo],
    map: HashMap<R::Key, Loc, BuildHasherDefault<KeyHasher>>,
    mut emit: impl FnMut(R, u64) -> Result<()>,
) -> Result<()> {
    let mut locs: Vec<(u64, u64)> = map.into_values().map(|l| (l.src, l.offset)).collect();
    locs.sort_unstable();
    let mut rest = &locs[..];
    for seg in segments {
        let n = rest.iter().take_while(|(src, _)| *src == seg.seq).count();
        let (here, later) = rest.split_at(n);
        rest = later;
        if here.is_empty() {
            continue;
        }
        let bytes = fs
            .read_range(&seg.path, 0, seg.valid_end as usize)
            .map_err(|e| Error::io("read", &seg.path, e))?;
        let end = bytes.len();
        for &(_, offset) in here {
            let changed = |reason: String| {
                Error::corrupt(
                    &seg.path,
                    offset,
                    format!("changed since the replay read it: {reason}"),
                )
            };
            let (p, q) = format::frame_at(&bytes, offset as usize, end).map_err(changed)?;
            let rec = format::decode_payload::<R>(&bytes[p..q]).map_err(changed)?;
            emit(rec, seg.seq)?;
        }
    }
    debug_assert!(
        rest.is_empty(),
        "a folded record's segment was not replayed"
    );
    Ok(())
}

/// What replay keeps of the newest record of each key.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keep {
    /// Unix time for [`Record::keep`].
    pub(crate) now: u64,
    /// Also keep the newest record of every key that comes from the newest source holding
    /// records, whatever `keep` says: compaction, see the crate docs on tombstones.
    pub(crate) retain_tombstones: bool,
}

impl Keep {
    /// Replay's rule: what `keep(now)` says, now.
    pub(crate) fn now() -> Self {
        Keep {
            now: unix_now(),
            retain_tombstones: false,
        }
    }
}

/// Why zeros inside a sealed segment's valid length are an error: that space held records
/// that were reported durable.
pub(crate) const ZEROS_IN_SEALED: &str =
    "zero bytes where the next segment's header says records are (lost data)";

/// One segment a replay read (with a valid header).
#[derive(Clone, Debug)]
pub(crate) struct SegmentInfo {
    pub(crate) seq: u64,
    pub(crate) path: PathBuf,
    /// The `prev_len` of its header.
    pub(crate) prev_len: u64,
    /// Its length (for the last segment: once an open has repaired it), not counting the
    /// zeros of a preallocated segment after its records.
    pub(crate) len: u64,
    /// The file's length on disk, zeros included.
    pub(crate) file_len: u64,
    /// Where its valid records end.
    pub(crate) valid_end: u64,
}

/// What a replay found, and where the writer continues.
#[derive(Debug)]
pub(crate) struct Replayed {
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
    /// The segments replayed, in order.
    pub(crate) segments: Vec<SegmentInfo>,
    /// What an open must repair in the last of `segments`.
    pub(crate) fix: Option<Fix>,
    /// A last segment whose header never became complete (it holds no record): not in
    /// `segments`, and an open removes it.
    pub(crate) incomplete: Option<PathBuf>,
}

/// What an open must do to the last segment before the writer resumes it (replay itself
/// never changes a file: see [`repair_last`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) enum Fix {
    /// Zero `from..to`: a torn write, nothing valid after it.
    ZeroTail { from: u64, to: u64 },
    /// Rewrite the segment with its valid records only, under a header with `prev_len`;
    /// keep a copy of its bytes `first_damage..real_end`.
    Rewrite {
        prev_len: u64,
        first_damage: u64,
        real_end: u64,
    },
}

/// Replays the journal in `dir`: the base snapshot and the chain of segments after it (only
/// up to `upto` when given; every such segment then counts as sealed and `upto + 1` must
/// exist), calling `emit` once per surviving record (the newest of its key, kept by `keep`),
/// in no particular order. An error from `emit` stops the replay and is returned.
///
/// A snapshot holds exactly one record per key (the newest at its cut), so only the segments
/// after it go through a map: they are read and folded first (usually a small tail), then
/// the snapshot is streamed straight through, each record skipped if the tail holds a newer
/// one of its key, and last the tail's survivors are emitted. Memory: the tail's map and one
/// chunk of the snapshot, never the snapshot's records.
///
/// Every check that can pass a snapshot over (for an older one) or fail the replay on damage
/// runs before the first `emit`: the snapshot is verified whole by [`verify_snapshot`] and
/// the segments are folded before it is streamed. What can still fail after records were
/// emitted is a payload that does not decode as `R`, bytes that changed between the two
/// reads of the snapshot or of a segment (the tail's survivors are read back by location),
/// an IO error, or `emit` itself; the caller then discards what it got (`Journal::open`
/// fails).
pub(crate) fn replay<R: Record>(
    fs: &dyn Fs,
    dir: &Path,
    recovery: Recovery,
    upto: Option<u64>,
    keep: Keep,
    emit: impl FnMut(R) -> Result<()>,
) -> Result<Replayed> {
    let started = Instant::now();
    let l = list(fs, dir)?;
    let base = choose_base(fs, dir, &l, upto)?;
    replay_base(fs, base, recovery, upto, keep, emit, started)
}

/// [`replay`] from a base already chosen (with the same `upto`).
pub(crate) fn replay_base<R: Record>(
    fs: &dyn Fs,
    base: Base,
    recovery: Recovery,
    upto: Option<u64>,
    keep: Keep,
    mut emit: impl FnMut(R) -> Result<()>,
    started: Instant,
) -> Result<Replayed> {
    let mut fold = TailFold::<R> {
        map: HashMap::default(),
        last_source: 0,
        records: 0,
        max_version: 0,
    };
    let mut out = Replayed {
        report: ReplayReport {
            ignored_snapshots: base.ignored.clone(),
            ..ReplayReport::default()
        },
        base: Base::default(),
        next_seq: base.cut() + 1,
        prev_len: 0,
        segment_bytes: 0,
        last_replayed: None,
        segments: Vec::new(),
        fix: None,
        incomplete: None,
    };
    fold_segments(fs, &base, recovery, upto, &mut fold, &mut out)?;

    // The newest source holding records: a segment if any holds one, else the snapshot.
    let newest_source = match &base.snapshot {
        Some(s) if fold.last_source == 0 && s.count > 0 => s.cut,
        _ => fold.last_source,
    };
    let retain_from = keep.retain_tombstones.then_some(newest_source);
    let wanted = |r: &R, src: u64| r.keep(keep.now) || retain_from == Some(src);
    let mut read = fold.records;
    let mut max_version = fold.max_version;
    let mut live = 0u64;
    if let Some(s) = &base.snapshot {
        out.report.snapshot = Some(s.path.clone());
        let map = &mut fold.map;
        stream_snapshot::<R>(fs, s, |rec| {
            read += 1;
            let v = rec.version();
            max_version = max_version.max(v);
            if !map.is_empty() {
                let k = rec.key();
                match map.get(&k) {
                    // The tail holds a newer record of this key: it replaces this one.
                    Some(newer) if newer.version > v => return Ok(()),
                    // A straggler older than the snapshot's record: this one stands.
                    Some(_) => {
                        map.remove(&k);
                    }
                    None => {}
                }
            }
            if wanted(&rec, s.cut) {
                live += 1;
                emit(rec)?;
            }
            Ok(())
        })?;
    }
    emit_tail::<R>(fs, &out.segments, fold.map, |rec, src| {
        if wanted(&rec, src) {
            live += 1;
            emit(rec)?;
        }
        Ok(())
    })?;
    out.report.records_read = read;
    out.report.max_version = max_version;
    out.report.live = live;
    out.base = base;
    out.report.elapsed = started.elapsed();
    Ok(out)
}

/// Bytes read past a sealed segment's valid end to tell preallocated zeros (nothing past
/// them is read: replay reads what the records take, not the files' preallocated size)
/// from bytes a write abandoned after an IO error (which start right at the valid end).
const TRAILER_PROBE: u64 = 4096;

/// Whether a segment whose header does not decode is one that was being started at a crash:
/// shorter than a header, or nothing but zeros after it. No record is written into a segment
/// before its header is durable, so such a segment never held one.
pub(crate) fn incomplete(bytes: &[u8]) -> bool {
    bytes.len() < SEGMENT_HEADER_LEN || format::all_zero(bytes, SEGMENT_HEADER_LEN, bytes.len())
}

/// Reads the segments of `base.chain` (up to `upto`) into `fold`: each sealed one up to the
/// valid end its successor's header states, the last one with [`format::walk_salvaging`].
/// See the crate docs ("Recovery") for what is dropped, kept, refused and reported.
fn fold_segments<R: Record>(
    fs: &dyn Fs,
    base: &Base,
    recovery: Recovery,
    upto: Option<u64>,
    fold: &mut TailFold<R>,
    f: &mut Replayed,
) -> Result<()> {
    let mut chain: Vec<&(u64, PathBuf)> = base.chain.iter().collect();
    // The last segment, read once here: if it was being started at a crash it is not part
    // of the chain at all, and its predecessor is the last one.
    let mut last_bytes = None;
    if upto.is_none()
        && let Some((_, path)) = chain.last().copied()
    {
        let bytes = fs.read(path).map_err(|e| Error::io("read", path, e))?;
        match SegmentHeader::decode(&bytes) {
            Err(reason) if incomplete(&bytes) => {
                if recovery == Recovery::Strict {
                    return Err(Error::corrupt(path, 0, reason));
                }
                tracing::warn!(file = %path.display(), %reason, "journal: the last segment was being started at a crash (no record in it); removing it");
                let real = format::real_end(&bytes) as u64;
                f.report.truncated = Some((path.clone(), 0, real));
                f.incomplete = Some(path.clone());
                chain.pop();
            }
            _ => last_bytes = Some(bytes),
        }
    }
    let segs = chain.iter().filter(|(n, _)| upto.is_none_or(|u| *n <= u));
    for (i, &&(seq, ref path)) in segs.enumerate() {
        let successor = chain.get(i + 1);
        let is_last = successor.is_none();
        // The valid end of a sealed segment is in its successor's header.
        let mut sealed_at = None;
        if let Some((_, next)) = successor {
            let h = fs
                .read_range(next, 0, SEGMENT_HEADER_LEN)
                .map_err(|e| Error::io("read", next, e))?;
            match SegmentHeader::decode(&h) {
                Ok(nh) => sealed_at = Some(nh.prev_len),
                // The successor is the last segment and its header is damaged (its records
                // are salvaged in the next round): this one ends where its records do.
                Err(_) if i + 2 == chain.len() && upto.is_none() => {}
                Err(reason) => return Err(Error::corrupt(next, 0, reason)),
            }
        }
        let file_len = match (&last_bytes, is_last) {
            (Some(b), true) => b.len() as u64,
            _ => fs.file_len(path).map_err(|e| Error::io("stat", path, e))?,
        };
        let bytes = match (is_last, sealed_at) {
            (true, _) => match last_bytes.take() {
                Some(b) => b,
                None => fs.read(path).map_err(|e| Error::io("read", path, e))?,
            },
            (false, Some(end)) => fs
                .read_range(
                    path,
                    0,
                    end.saturating_add(TRAILER_PROBE).min(file_len) as usize,
                )
                .map_err(|e| Error::io("read", path, e))?,
            (false, None) => fs.read(path).map_err(|e| Error::io("read", path, e))?,
        };
        let header = match SegmentHeader::decode(&bytes) {
            Ok(h) => Ok(h),
            // Damaged, with bytes after it (an incomplete one left the chain above).
            Err(reason) if is_last && upto.is_none() && recovery != Recovery::Strict => Err(reason),
            Err(reason) => return Err(Error::corrupt(path, 0, reason)),
        };
        if let Ok(h) = &header
            && h.seq != seq
        {
            return Err(Error::corrupt(
                path,
                12,
                format!("header says segment {}, the file name says {seq}", h.seq),
            ));
        }
        f.report.segments += 1;
        f.last_replayed = Some(seq);
        let add = |offset: u64, payload: &[u8]| -> std::result::Result<(), String> {
            let rec = format::decode_payload::<R>(payload)?;
            fold.add(
                rec.key(),
                Loc {
                    version: rec.version(),
                    src: seq,
                    offset,
                },
            );
            Ok(())
        };
        let corrupt = |(offset, reason): (u64, String)| Error::corrupt(path, offset, reason);
        let (valid, len) = match sealed_at {
            Some(end) => {
                if end < SEGMENT_HEADER_LEN as u64 || end > file_len {
                    return Err(Error::corrupt(
                        path,
                        file_len.min(end),
                        format!(
                            "segment is {file_len} bytes, its successor's header says {end} are valid"
                        ),
                    ));
                }
                let mut add = add;
                match format::walk_frames(&bytes, SEGMENT_HEADER_LEN, end as usize, &mut add) {
                    Ok(WalkEnd::Clean) => {}
                    Ok(WalkEnd::Zeros { offset }) => {
                        return Err(Error::corrupt(path, offset, ZEROS_IN_SEALED));
                    }
                    Ok(WalkEnd::Bad { offset, reason }) | Err((offset, reason)) => {
                        return Err(Error::corrupt(path, offset, reason));
                    }
                }
                if format::all_zero(&bytes, end as usize, bytes.len()) {
                    // Preallocated space the segment was sealed before filling.
                    (end, end)
                } else {
                    tracing::info!(file = %path.display(), bytes = file_len - end, "journal: ignoring bytes after a sealed segment's valid end (abandoned after an IO error)");
                    f.report.abandoned_bytes += file_len - end;
                    (end, file_len)
                }
            }
            None if !is_last => {
                // Read as the last one, before a last segment with a damaged header. Its
                // valid end was in that header, so a torn write after its records is
                // ignored (the successor is rewritten saying where they end), but damage
                // with records after it cannot be told from records of its own.
                let s = format::walk_salvaging(&bytes, SEGMENT_HEADER_LEN, add).map_err(corrupt)?;
                if let Some((offset, _, reason)) = s.damaged.first() {
                    return Err(Error::corrupt(
                        path,
                        *offset,
                        format!(
                            "{reason}; the next segment's header is damaged too, so where this one ends is unknown (run `lessor journal repair`)"
                        ),
                    ));
                }
                if let Some((offset, n, _)) = s.torn {
                    f.report.damaged.push((path.clone(), offset, n));
                }
                (s.end, s.end)
            }
            None => {
                let s = format::walk_salvaging(&bytes, SEGMENT_HEADER_LEN, add).map_err(corrupt)?;
                let mut damaged = s.damaged;
                // Behind a damaged header every record is one kept after damage.
                let salvaged = if header.is_err() {
                    s.frames
                } else {
                    s.salvaged
                };
                if let Err(reason) = &header {
                    damaged.insert(
                        0,
                        (
                            0,
                            SEGMENT_HEADER_LEN as u64,
                            format!("segment header: {reason}"),
                        ),
                    );
                }
                let first = damaged.first().or(s.torn.as_ref());
                if recovery == Recovery::Strict
                    && let Some((offset, _, reason)) = first
                {
                    return Err(Error::corrupt(path, *offset, reason.clone()));
                }
                for (offset, bytes, reason) in &damaged {
                    tracing::error!(
                        file = %path.display(), offset, bytes, %reason, kept_after = salvaged,
                        "journal: damaged record in the last segment (not a torn write: valid records follow it); dropping it, keeping the records after it"
                    );
                    f.report.damaged.push((path.clone(), *offset, *bytes));
                }
                f.report.salvaged += salvaged;
                if let Some((offset, bytes, reason)) = &s.torn {
                    tracing::warn!(file = %path.display(), offset, bytes, %reason, "journal: torn tail of the last segment");
                    f.report.truncated = Some((path.clone(), *offset, *bytes));
                }
                f.fix = match (damaged.first(), &s.torn) {
                    (Some((offset, _, _)), _) => Some(Fix::Rewrite {
                        prev_len: header.as_ref().map_or(f.prev_len, |h| h.prev_len),
                        first_damage: *offset,
                        real_end: s.real_end,
                    }),
                    (None, Some((offset, _, _))) => Some(Fix::ZeroTail {
                        from: *offset,
                        to: s.real_end,
                    }),
                    (None, None) => None,
                };
                (s.end, s.end)
            }
        };
        f.segments.push(SegmentInfo {
            seq,
            path: path.clone(),
            prev_len: header.as_ref().map_or(f.prev_len, |h| h.prev_len),
            len,
            file_len,
            valid_end: valid,
        });
        f.segment_bytes += valid;
        f.prev_len = valid;
        f.next_seq = seq + 1;
    }
    Ok(())
}

/// Repairs the last segment as the replay found it, before the writer resumes it: removes a
/// segment that was being started at a crash, clears a torn tail (zeros, so that a
/// preallocated segment stays preallocated) and rewrites a segment with damaged ranges
/// without them (into a `*.tmp`, synced, renamed over it), after copying its bytes from the
/// first damage on aside into `<segment>.tail-<offset>.bad`. A crash at any point leaves
/// either the old segment, repaired again by the next open, or the new one.
///
/// `pad_to`: a rewritten segment is filled with zeros up to this size (preallocation).
pub(crate) fn repair_last(
    fs: &dyn Fs,
    dir: &Path,
    r: &mut Replayed,
    pad_to: Option<u64>,
) -> Result<()> {
    if let Some(p) = r.incomplete.take() {
        fs.remove_file(&p).map_err(|e| Error::io("remove", &p, e))?;
        fs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))?;
    }
    let Some(fix) = r.fix.take() else {
        return Ok(());
    };
    let Some(last) = r.segments.last_mut() else {
        return Ok(());
    };
    let path = last.path.clone();
    match fix {
        Fix::ZeroTail { from, to } => {
            let mut w = fs
                .open_at(&path, from)
                .map_err(|e| Error::io("open", &path, e))?;
            w.write_all(&vec![0; (to - from) as usize])
                .and_then(|()| w.sync_data())
                .map_err(|e| Error::io("clear the torn tail of", &path, e))?;
        }
        Fix::Rewrite {
            prev_len,
            first_damage,
            real_end,
        } => {
            let bytes = fs.read(&path).map_err(|e| Error::io("read", &path, e))?;
            let mut copy = path.as_os_str().to_owned();
            copy.push(format!(".tail-{first_damage}.bad"));
            let copy = PathBuf::from(copy);
            write_synced(fs, &copy, &bytes[first_damage as usize..real_end as usize])?;
            let mut out = SegmentHeader {
                seq: last.seq,
                prev_len,
            }
            .encode()
            .to_vec();
            format::walk_salvaging(&bytes, SEGMENT_HEADER_LEN, |_, payload| {
                format::encode_raw_frame(&mut out, payload);
                Ok(())
            })
            .map_err(|(offset, reason)| Error::corrupt(&path, offset, reason))?;
            let end = out.len() as u64;
            if let Some(n) = pad_to
                && end < n
            {
                out.resize(n as usize, 0);
            }
            let mut tmp = path.as_os_str().to_owned();
            tmp.push(".rewrite.tmp");
            let tmp = PathBuf::from(tmp);
            write_synced(fs, &tmp, &out)?;
            fs.rename(&tmp, &path)
                .map_err(|e| Error::io("rename", &tmp, e))?;
            fs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))?;
            tracing::warn!(file = %path.display(), copy = %copy.display(), "journal: rewrote the last segment without its damaged records; the damaged bytes are kept aside");
            r.segment_bytes = r.segment_bytes - last.valid_end + end;
            last.valid_end = end;
            last.len = end;
            last.file_len = out.len() as u64;
            last.prev_len = prev_len;
            r.prev_len = end;
        }
    }
    Ok(())
}

fn write_synced(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut w = fs.create(path).map_err(|e| Error::io("create", path, e))?;
    w.write_all(bytes)
        .and_then(|()| w.sync_data())
        .map_err(|e| Error::io("write", path, e))
}

/// Removes the empty segments at the end of the chain (left by restarts of versions that
/// started a new segment at every open), so that the writer resumes the last segment holding
/// records. Every segment but the first after the snapshot may go, highest first with a
/// directory sync after each removal, and only if its predecessor's whole file is valid
/// (its `prev_len` equals the predecessor's length, preallocated zeros after the records
/// not counted): the predecessor, read as the last segment, then ends exactly where the
/// removed header said. A predecessor with bytes past its valid end (abandoned after an IO
/// error) keeps its successor, since read as the last segment those bytes could come back.
/// A power loss at any point leaves a chain without gaps.
pub(crate) fn reclaim_empty_tail(fs: &dyn Fs, dir: &Path, r: &mut Replayed) -> Result<()> {
    let empty = |s: &SegmentInfo| s.valid_end == SEGMENT_HEADER_LEN as u64 && s.len == s.valid_end;
    while r.segments.len() > 1 {
        let n = r.segments.len();
        let (last, before) = (&r.segments[n - 1], &r.segments[n - 2]);
        if r.next_seq != last.seq + 1 || !empty(last) || before.len != last.prev_len {
            break;
        }
        tracing::info!(file = %last.path.display(), "journal: removing an empty segment left by a restart");
        fs.remove_file(&last.path)
            .map_err(|e| Error::io("remove", &last.path, e))?;
        fs.sync_dir(dir).map_err(|e| Error::io("sync", dir, e))?;
        r.next_seq = last.seq;
        r.segment_bytes -= last.valid_end;
        r.prev_len = before.valid_end;
        r.segments.pop();
    }
    r.last_replayed = r.segments.last().map(|s| s.seq);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::io;
    use std::sync::Mutex;

    use super::*;
    use crate::fs::{DirLock, FsFile};
    use crate::testing::{FaultyFs, Rec as T};

    fn t(key: u32, version: u64) -> T {
        T::new(key, version)
    }

    fn tomb(key: u32, version: u64) -> T {
        T::tomb(key, version)
    }

    fn dir() -> PathBuf {
        PathBuf::from("/j")
    }

    fn snapshot_bytes(cut: u64, recs: &[T]) -> Vec<u8> {
        let mut b = format::encode_snapshot_header(cut).to_vec();
        for r in recs {
            format::encode_frame(&mut b, r).unwrap();
        }
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&format::encode_footer(recs.len() as u64, crc));
        b
    }

    fn segment_bytes(seq: u64, prev_len: u64, recs: &[T]) -> Vec<u8> {
        let mut b = SegmentHeader { seq, prev_len }.encode().to_vec();
        for r in recs {
            format::encode_frame(&mut b, r).unwrap();
        }
        b
    }

    fn put_snapshot(fs: &FaultyFs, cut: u64, recs: &[T]) -> PathBuf {
        let p = format::snapshot_path(&dir(), cut);
        fs.write_file(&p, &snapshot_bytes(cut, recs));
        p
    }

    /// Writes segments `first..` holding `recs`, each sealed by the next one's header.
    fn put_segments(fs: &FaultyFs, first: u64, segs: &[&[T]]) {
        let mut prev = 0;
        for (i, recs) in segs.iter().enumerate() {
            let seq = first + i as u64;
            let b = segment_bytes(seq, prev, recs);
            prev = b.len() as u64;
            fs.write_file(&format::segment_path(&dir(), seq), &b);
        }
    }

    fn fresh() -> FaultyFs {
        let fs = FaultyFs::new();
        fs.create_dir_all(&dir()).unwrap();
        fs
    }

    /// Replays read-only; returns what was emitted (in order) and the replay.
    fn run(fs: &dyn Fs, retain: bool) -> (Vec<T>, Result<Replayed>) {
        let mut got = Vec::new();
        let keep = Keep {
            now: 0,
            retain_tombstones: retain,
        };
        let r = replay::<T>(fs, &dir(), Recovery::TolerateTornTail, None, keep, |r| {
            got.push(r);
            Ok(())
        });
        (got, r)
    }

    fn by_key(recs: &[T]) -> BTreeMap<u32, T> {
        let m: BTreeMap<u32, T> = recs.iter().map(|r| (r.key, r.clone())).collect();
        assert_eq!(m.len(), recs.len(), "a key was emitted twice: {recs:?}");
        m
    }

    /// The snapshot of segment 2 and a tail (segments 3 and 4) that replaces, deletes,
    /// straggles behind and adds keys.
    fn snapshot_and_tail(fs: &FaultyFs) {
        put_snapshot(
            fs,
            2,
            &[
                t(1, 10),
                t(2, 10),
                t(3, 10),
                t(4, 10),
                t(5, 10),
                tomb(6, 40),
            ],
        );
        put_segments(
            fs,
            3,
            &[
                // Newer: replaces. A newer tombstone: deletes. Older (a straggler from
                // another lane): the snapshot's record stands.
                &[t(1, 11), tomb(2, 12), t(3, 5)],
                // A new key; a tombstone of a key nobody else has.
                &[t(7, 1), tomb(8, 30)],
            ],
        );
    }

    #[test]
    fn the_tail_overrides_the_snapshot_and_every_key_is_emitted_once() {
        let fs = fresh();
        snapshot_and_tail(&fs);
        let (got, r) = run(&fs, false);
        let r = r.unwrap();
        assert_eq!(
            by_key(&got),
            by_key(&[t(1, 11), t(3, 10), t(4, 10), t(5, 10), t(7, 1)])
        );
        assert_eq!(r.report.records_read, 11);
        assert_eq!(r.report.live, 5);
        // The snapshot's tombstone has the highest version: it counts though nothing of it
        // is emitted.
        assert_eq!(r.report.max_version, 40);
        assert_eq!(r.report.segments, 2);
        assert_eq!(r.report.snapshot, Some(format::snapshot_path(&dir(), 2)));
    }

    #[test]
    fn max_version_counts_superseded_records_and_tombstones_of_the_tail() {
        let fs = fresh();
        put_snapshot(&fs, 1, &[t(1, 3)]);
        put_segments(&fs, 2, &[&[t(1, 4), t(1, 90), tomb(1, 100), t(2, 1)]]);
        let (got, r) = run(&fs, false);
        let r = r.unwrap();
        assert_eq!(got, vec![t(2, 1)]);
        assert_eq!((r.report.records_read, r.report.max_version), (5, 100));
    }

    #[test]
    fn compaction_keeps_the_tombstones_of_the_newest_source_only() {
        let fs = fresh();
        snapshot_and_tail(&fs);
        // Segment 4 is the newest source: its tombstone stays, the snapshot's goes.
        let (got, r) = run(&fs, true);
        r.unwrap();
        let got = by_key(&got);
        assert_eq!(got.get(&8), Some(&tomb(8, 30)));
        assert!(!got.contains_key(&6) && !got.contains_key(&2), "{got:?}");

        // With no record after the snapshot, the snapshot is the newest source.
        let fs = fresh();
        put_snapshot(&fs, 2, &[t(1, 1), tomb(6, 40)]);
        put_segments(&fs, 3, &[&[], &[]]);
        let (got, r) = run(&fs, true);
        r.unwrap();
        assert_eq!(by_key(&got), by_key(&[t(1, 1), tomb(6, 40)]));
        let (got, _) = run(&fs, false);
        assert_eq!(got, vec![t(1, 1)]);
    }

    /// An older snapshot with the segments after it, and a newer one (covering them) that
    /// also holds key 99, which nothing else has.
    fn two_snapshots(fs: &FaultyFs) -> (PathBuf, PathBuf) {
        let old = put_snapshot(fs, 1, &[t(1, 1), t(2, 1)]);
        put_segments(fs, 2, &[&[t(3, 2)], &[t(4, 3)]]);
        let new = put_snapshot(fs, 3, &[t(1, 1), t(2, 1), t(3, 2), t(4, 3), t(99, 50)]);
        (old, new)
    }

    #[test]
    fn a_damaged_newer_snapshot_contributes_nothing() {
        let fs = fresh();
        let (old, new) = two_snapshots(&fs);
        let good = fs.read_file(&new).unwrap();
        let end = good.len() - FOOTER_LEN;
        // A flipped bit in the last record (the one with key 99), in the footer's count,
        // and a truncated file: all found before a record of it is handed on.
        let mut damages: Vec<Vec<u8>> = Vec::new();
        let mut b = good.clone();
        b[end - 2] ^= 1;
        damages.push(b);
        let mut b = good.clone();
        b[end + 8] ^= 1;
        damages.push(b);
        damages.push(good[..end + 10].to_vec());
        // A footer whose checksums match but whose count does not (a snapshot written
        // wrong).
        let mut b = good[..end].to_vec();
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&format::encode_footer(4, crc));
        damages.push(b);
        for (i, d) in damages.iter().enumerate() {
            fs.write_file(&new, d);
            let (got, r) = run(&fs, false);
            let r = r.unwrap_or_else(|e| panic!("damage {i}: {e}"));
            assert_eq!(
                by_key(&got),
                by_key(&[t(1, 1), t(2, 1), t(3, 2), t(4, 3)]),
                "damage {i}"
            );
            assert_eq!(r.report.snapshot, Some(old.clone()), "damage {i}");
            assert_eq!(r.report.ignored_snapshots, vec![new.clone()], "damage {i}");
            assert_eq!(r.report.max_version, 3, "damage {i}");
        }
    }

    #[test]
    fn the_only_snapshot_damaged_is_an_error_before_anything_is_emitted() {
        let fs = fresh();
        let p = put_snapshot(&fs, 1, &[t(1, 1), t(2, 1), t(3, 1)]);
        let len = fs.read_file(&p).unwrap().len() as u64;
        fs.flip_bit(&p, len - FOOTER_LEN as u64 - 1, 0);
        let (got, r) = run(&fs, false);
        match r {
            // Named at the damaged record (the third), not at the start of the body.
            Err(Error::Corrupt { file, offset, .. }) => {
                assert_eq!(file, p);
                assert_eq!(offset, (SNAPSHOT_HEADER_LEN + 2 * FRAME_LEN) as u64);
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
        assert!(
            got.is_empty(),
            "records of a damaged snapshot emitted: {got:?}"
        );
    }

    #[test]
    fn every_check_of_the_segments_runs_before_the_snapshot_streams() {
        let fs = fresh();
        put_snapshot(&fs, 1, &[t(1, 1), t(2, 1)]);
        put_segments(&fs, 2, &[&[t(3, 2)], &[t(4, 3)], &[t(5, 4)]]);
        // A bit flip in a sealed segment: corruption, found before any record is handed on.
        let seg3 = format::segment_path(&dir(), 3);
        fs.flip_bit(&seg3, SEGMENT_HEADER_LEN as u64 + 9, 2);
        let (got, r) = run(&fs, false);
        assert!(matches!(r, Err(Error::Corrupt { ref file, .. }) if *file == seg3));
        assert!(got.is_empty(), "{got:?}");
        // A missing segment likewise.
        fs.delete_file(&seg3);
        let (got, r) = run(&fs, false);
        assert!(matches!(r, Err(Error::MissingSegment { seq: 3, .. })));
        assert!(got.is_empty(), "{got:?}");
    }

    /// An `Fs` that flips a bit of one file when that file's frames are read from the start
    /// for the second time: bytes that change between the verifying and the decoding pass.
    #[derive(Debug)]
    struct ChangesBetweenPasses {
        fs: FaultyFs,
        path: PathBuf,
        flip_at: u64,
        starts: Mutex<u32>,
    }

    impl Fs for ChangesBetweenPasses {
        fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
            self.fs.create_dir_all(dir)
        }
        fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
            self.fs.list_dir(dir)
        }
        fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
            self.fs.read(path)
        }
        fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
            if path == self.path && offset == SNAPSHOT_HEADER_LEN as u64 {
                let mut n = self.starts.lock().unwrap();
                *n += 1;
                if *n == 2 {
                    self.fs.flip_bit(path, self.flip_at, 0);
                }
            }
            self.fs.read_range(path, offset, len)
        }
        fn file_len(&self, path: &Path) -> io::Result<u64> {
            self.fs.file_len(path)
        }
        fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
            self.fs.create(path)
        }
        fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn FsFile>> {
            self.fs.open_at(path, offset)
        }
        fn available_space(&self, dir: &Path) -> io::Result<u64> {
            self.fs.available_space(dir)
        }
        fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
            self.fs.truncate(path, len)
        }
        fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
            self.fs.rename(from, to)
        }
        fn remove_file(&self, path: &Path) -> io::Result<()> {
            self.fs.remove_file(path)
        }
        fn sync_dir(&self, dir: &Path) -> io::Result<()> {
            self.fs.sync_dir(dir)
        }
        fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
            self.fs.lock_dir(dir)
        }
    }

    #[test]
    fn bytes_that_change_between_the_two_passes_fail_the_replay() {
        let fs = fresh();
        let p = put_snapshot(&fs, 1, &[t(1, 1), t(2, 1), t(3, 1)]);
        // The version of the second record: it still decodes, only the checksum can tell.
        let flip_at = (SNAPSHOT_HEADER_LEN + FRAME_LEN + 8 + 4) as u64;
        let changing = ChangesBetweenPasses {
            fs: fs.clone(),
            path: p.clone(),
            flip_at,
            starts: Mutex::new(0),
        };
        let (_, r) = run(&changing, false);
        match r {
            Err(Error::Corrupt { file, reason, .. }) => {
                assert_eq!(file, p);
                assert!(reason.contains("changed"), "{reason}");
            }
            other => panic!("expected Corrupt, got {other:?}"),
        }
    }

    /// Frame length of an unpadded `T`: 8 + key 4 + version 8 + live 1 + pad length 8.
    const FRAME_LEN: usize = 8 + 4 + 8 + 1 + 8;

    /// The fold replay used to do: every record of the snapshot, then of each segment in
    /// order, into one map (a record replaces its key's only if its version is higher);
    /// survivors are those `keep` holds for, plus with `retain` those from the newest
    /// source holding records.
    fn model(snapshot: &[T], segments: &[Vec<T>], retain: bool) -> BTreeMap<u32, T> {
        let mut m: BTreeMap<u32, (T, u64)> = BTreeMap::new();
        let mut newest = 0;
        let sources = std::iter::once((2u64, snapshot)).chain(
            segments
                .iter()
                .enumerate()
                .map(|(i, s)| (3 + i as u64, s.as_slice())),
        );
        for (src, recs) in sources {
            for r in recs {
                newest = src;
                if m.get(&r.key).is_none_or(|(o, _)| r.version > o.version) {
                    m.insert(r.key, (r.clone(), src));
                }
            }
        }
        m.into_iter()
            .filter(|(_, (r, src))| r.live || (retain && *src == newest))
            .map(|(k, (r, _))| (k, r))
            .collect()
    }

    fn arb_t() -> impl proptest::strategy::Strategy<Value = T> {
        use proptest::prelude::*;
        (0..24u32, 0..12u64, prop::bool::weighted(0.7)).prop_map(|(key, version, live)| T {
            live,
            ..T::new(key, version)
        })
    }

    proptest::proptest! {
        #![proptest_config(proptest::test_runner::Config {
            cases: 256,
            failure_persistence: None,
            ..proptest::test_runner::Config::default()
        })]

        #[test]
        fn streaming_the_snapshot_past_the_tail_is_the_old_fold(
            snap in proptest::collection::vec(arb_t(), 0..30),
            segs in proptest::collection::vec(proptest::collection::vec(arb_t(), 0..12), 0..4),
            retain: bool,
        ) {
            // A snapshot holds one record per key.
            let mut seen = std::collections::BTreeSet::new();
            let snap: Vec<T> = snap.into_iter().filter(|r| seen.insert(r.key)).collect();
            let fs = fresh();
            put_snapshot(&fs, 2, &snap);
            let seg_refs: Vec<&[T]> = segs.iter().map(Vec::as_slice).collect();
            put_segments(&fs, 3, &seg_refs);
            let (got, r) = run(&fs, retain);
            let r = r.unwrap();
            let got_map: BTreeMap<u32, T> = got.iter().map(|r| (r.key, r.clone())).collect();
            proptest::prop_assert_eq!(got_map.len(), got.len(), "a key emitted twice");
            proptest::prop_assert_eq!(&got_map, &model(&snap, &segs, retain));
            let all: Vec<&T> = snap.iter().chain(segs.iter().flatten()).collect();
            proptest::prop_assert_eq!(r.report.records_read, all.len() as u64);
            proptest::prop_assert_eq!(
                r.report.max_version,
                all.iter().map(|r| r.version).max().unwrap_or(0)
            );
            proptest::prop_assert_eq!(r.report.live, got.len() as u64);
        }
    }

    #[test]
    fn the_key_hasher_spreads_keys_that_share_their_low_bits() {
        use std::hash::BuildHasher;
        let b = BuildHasherDefault::<KeyHasher>::default();
        // Keys 1024 apart: a table of 1024 buckets must not put them all in one.
        let buckets: std::collections::BTreeSet<u64> =
            (0..1000u32).map(|i| b.hash_one(i << 10) & 1023).collect();
        assert!(buckets.len() > 500, "{} buckets used", buckets.len());
    }
}
