//! lessor-journal: an append-only journal of records with group commit, per-writer durable
//! watermarks, background compaction into snapshots, crash recovery and offline repair.
//!
//! It knows nothing of DHCP: it stores values of a [`Record`] type it is given, each with a
//! key and a version, and replays the newest record per key. It is not a database (no
//! queries, no indexes: the caller keeps its state in memory and uses the journal to get it
//! back after a restart) and not a consensus log: it can stream the frames it has synced to a
//! peer that applies them ([`stream`], docs/JOURNAL.md), and leaves who leads to the caller.
//!
//! # How it is used
//!
//! ```
//! use lessor_journal::{Journal, Options, Record, Ticket};
//! use std::time::Duration;
//!
//! #[derive(Clone, Debug, bincode::Encode, bincode::Decode)]
//! struct Lease { addr: u32, version: u64, expires: u64 }
//!
//! impl Record for Lease {
//!     type Key = u32;
//!     fn key(&self) -> u32 { self.addr }
//!     fn version(&self) -> u64 { self.version }
//!     fn keep(&self, now: u64) -> bool { self.expires > now }
//! }
//!
//! # fn main() -> lessor_journal::Result<()> {
//! let dir = tempfile::tempdir().unwrap();
//! let (journal, _report) = Journal::<Lease>::open_dir(Options::new(dir.path(), 2), |_lease| {})?;
//! let mut lane = journal.lane(0); // one per worker thread
//! let t: Ticket = lane.append(&Lease { addr: 1, version: 1, expires: u64::MAX });
//! // Acknowledge only once the record is durable (fdatasync'ed: group commit).
//! assert!(lane.wait_durable(t, Duration::from_secs(10)));
//! journal.shutdown()?;
//!
//! let (leases, _) = lessor_journal::read_live::<Lease>(dir.path())?;
//! assert_eq!(leases.len(), 1);
//! # Ok(()) }
//! ```
//!
//! # Group commit
//!
//! Every worker owns a [`Lane`]: [`Lane::append`] encodes the record into a frame at the end
//! of the lane's own queue (a buffer behind a lock that only the lane and the writer take)
//! and returns a [`Ticket`] (the lane's sequence number) without waiting. One writer thread
//! sleeps until something arrives, then takes every lane's queue (swapping in an empty
//! buffer), writes it all with one `write`, syncs once (`fdatasync`), and publishes each
//! lane's durable watermark ("every ticket up to N"). Records that arrive while a sync runs
//! queue up in the lanes and go out together with the next one: the slower the disk, the
//! bigger the batches. Encoding and checksumming happen on the workers, so the one writer
//! only copies bytes and syncs, and once the buffers have grown an append allocates nothing. [`Lane::durable`] reads the watermark (an atomic);
//! [`Lane::wait_durable`] sleeps on a per-lane condition variable that the writer signals after
//! each publish, and a [`Doorbell`] (an eventfd, from [`Lane::doorbell`]) lets a thread that
//! also waits for other file descriptors sleep in `poll` until the writer publishes; no lock
//! is ever held during IO. [`SyncPolicy::Interval`] and
//! [`SyncPolicy::None`] publish after the write instead, and sync on a timer or only when a
//! segment is sealed: they give up the durable-ACK invariant (docs/ARCHITECTURE.md: no
//! acknowledged lease lost on power loss) for throughput, explicitly.
//!
//! # IO errors
//!
//! A failed write or sync makes [`Journal::health`] [`Health::Failing`], is logged with
//! `tracing::error!`, and stops the watermarks: nothing more is reported durable. After a
//! failed `fsync` the state of that file's pages is unknown (Linux drops the dirty pages and
//! marks them clean, so a second `fsync` "succeeds" without writing them), so the writer does
//! not retry on that file. It keeps every byte written since the last successful sync in
//! memory and, after 1 s (backing off to 5 s), starts a new segment whose header records the
//! last synced length of the abandoned one, rewrites those bytes into it and syncs. When that
//! succeeds, health returns to `Ok` and the watermarks move on. The abandoned segment's bytes
//! past the recorded length are ignored by replay.
//!
//! # Compaction and tombstones
//!
//! When sealed segments add up to [`Options::compact_bytes`] (or on
//! [`Journal::compact_now`]), a compactor thread folds the newest snapshot and the sealed
//! segments (never the active one: the cut is the last sealed segment, a consistent cut by
//! construction) into a new snapshot, and deletes the files it covers only after the
//! snapshot is durable. The writer never waits for it. Keys whose newest record does not
//! [`Record::keep`] are dropped, except one case: records of one key may reach the writer
//! through two lanes (a lease handed from one worker to another), so an older version can land
//! in the batch after a newer one, possibly in the next segment. Only the very next batch:
//! the writer takes every lane's queue each round, and whatever was appended before the
//! tombstone is in its lane's queue by then. So tombstones from the newest folded source that holds records (the
//! last non-empty segment of the cut, or the previous snapshot if no segment since holds any)
//! are kept in the snapshot until a later compaction folds a batch after them, and such a
//! straggler cannot resurrect its key.
//!
//! # On-disk format
//!
//! All integers are little endian. crc32c is CRC-32C (Castagnoli). The directory holds:
//!
//! * `NNNNNNNNNNNNNNNN.log`: segments, numbered from 1 without gaps (16 decimal digits);
//! * `snapshot-NNNNNNNNNNNNNNNN.snap`: a snapshot of everything up to and including segment N;
//! * `*.tmp`: a snapshot being written (removed on open);
//! * `LOCK`: the lock file that keeps two writers out.
//!
//! ## Segment header (32 bytes)
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LSRJLOG\0` |
//! | 8 | 4 | format version, u32 = 1 |
//! | 12 | 8 | segment number, u64 (must match the file name) |
//! | 20 | 8 | `prev_len`, u64: how many bytes of the previous segment are valid (0 if none) |
//! | 28 | 4 | crc32c of bytes 0..28 |
//!
//! `prev_len` is what makes a segment sealed: a segment's valid end is stated by its
//! successor, written and synced (with a directory sync) before any record goes into the
//! successor. It is the full length of a segment sealed normally, or the last synced length of
//! one abandoned after an IO error.
//!
//! ## Record frame (8 + len bytes), after the header, back to back
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 4 | `len`, u32: payload length, 1..=[`MAX_RECORD_LEN`] (1 MiB); anything else is corruption |
//! | 4 | 4 | crc32c of the payload |
//! | 8 | len | payload: the record, bincode 2 with `config::standard().with_fixed_int_encoding()` (little endian) |
//!
//! A zero length is invalid, so a zero-filled tail (a crash after the file grew but before
//! its data landed) is never read as records. A frame whose checksum verifies but whose
//! payload does not decode as the record type (or leaves bytes over) is corruption, never a
//! torn tail: opening a journal with the wrong type fails instead of truncating it.
//!
//! ## Snapshot
//!
//! Header (24 bytes):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LSRJSNP\0` |
//! | 8 | 4 | format version, u32 = 1 |
//! | 12 | 8 | cut, u64: the last segment covered (must match the file name) |
//! | 20 | 4 | crc32c of bytes 0..20 |
//!
//! then record frames as in segments (one per live key, in no order), then the footer
//! (24 bytes, the last of the file):
//!
//! | offset | size | field |
//! |---|---|---|
//! | 0 | 8 | magic `LSRJEND\0` |
//! | 8 | 8 | record count, u64 |
//! | 16 | 4 | crc32c of every byte of the file before the footer |
//! | 20 | 4 | crc32c of footer bytes 0..20 |
//!
//! A snapshot is written as `snapshot-N.snap.tmp`, synced, renamed, and the directory synced;
//! then segments `<= N` and older snapshots are deleted and the directory synced again.
//! Compaction streams: the survivors go from the replay straight into the new snapshot.
//!
//! ## Preallocated segments
//!
//! With [`Options::preallocate`] (the default) a segment file is filled with zeros to
//! [`Options::segment_bytes`] and synced before its header is written, and the records are
//! written over the zeros. A sync then has only data to flush: the file's size and blocks are
//! already on disk, so the filesystem writes no inode per sync. The `journal-prealloc` thread keeps
//! one such file ready as `spare-segment.tmp` (removed by an open, like any `*.tmp`), which
//! the writer renames to the next segment's name when it rotates; the first segment of a run
//! is filled on the opening thread. Without a spare (a full disk) the writer starts a plain
//! segment. So a segment may end in zeros after its last frame:
//!
//! * in the last segment, zeros from a frame boundary to the end of the file are where the
//!   records end (not a torn tail: there was nothing there);
//! * in a sealed segment, zeros after the valid end are unused space (not abandoned bytes);
//!   zeros before it are lost data, [`Error::Corrupt`].
//!
//! ## Resuming the last segment
//!
//! An open resumes the last segment where its records end (over its preallocated zeros, or
//! at the end of the file), unless it is full: restarts, clean or not, add no segment and
//! write no spare (a whole `spare-segment.tmp` left by the last run is used, not made
//! again). Segments are only started by rotation, a compaction request, or an IO error.
//! Empty segments at the end of the chain (left by versions that started a segment at every
//! open) are removed, highest first with a directory sync after each, so that the writer
//! resumes the last one holding records; a segment goes only if its predecessor's whole
//! file is valid (its `prev_len` equals the predecessor's length, preallocated zeros after
//! the records not counted), so that the predecessor, read as the last segment, ends exactly
//! where the removed header said. A predecessor with bytes past its valid end (abandoned
//! after an IO error) keeps its successor, which is resumed instead: read as the last
//! segment, those bytes could come back. Empty segments between segments holding records
//! (abandoned after an IO error) cannot go without renumbering; compaction removes them.
//!
//! Compaction starts when the sealed segments take [`Options::compact_bytes`] on disk
//! (preallocated zeros included: a segment sealed early costs its whole size) or number
//! [`Options::compact_segments`], so the files a replay reads are bounded by the live data
//! plus those limits. Replay reads a sealed segment only up to its valid end, never its
//! preallocated zeros.
//!
//! # Recovery
//!
//! Replay takes the newest snapshot whose footer, checksums and record count verify; a newer
//! one that does not is passed over (and removed) if an older one and all segments after it
//! are present, else it is [`Error::Corrupt`] (naming the first record whose checksum fails,
//! or the footer). Then the segments after the snapshot, which must be numbered without gaps
//! ([`Error::MissingSegment`]). Each sealed segment is read up to the `prev_len` in its
//! successor's header; any bad frame there is [`Error::Corrupt`] naming the file and offset.
//!
//! The last segment is the only one a crash can leave half written, and what [`Journal::open`]
//! does with it (with [`Recovery::TolerateTornTail`], the default) is:
//!
//! | found | records | reported | the file |
//! |---|---|---|---|
//! | a header shorter than 32 bytes, or not valid with nothing but zeros after it (a crash while the segment was started) | none existed: a record is only written after its segment's header is durable | [`ReplayReport::truncated`] at offset 0 | removed; its predecessor is the last segment |
//! | a bad frame with no valid frame after it up to the last non-zero byte (a torn write) | those before it kept; the torn one was never reported durable | [`ReplayReport::truncated`]: offset, and the torn bytes up to the last non-zero one (not the zeros after) | the torn bytes overwritten with zeros, synced |
//! | a bad frame with valid frames after it (a bit flip: a torn write only damages the end) | the damaged record dropped; every valid one before and after it kept (resync on the next offset whose length and checksum verify, as [`repair`] does, stopping at the zeros) | [`ReplayReport::damaged`] (each range), [`ReplayReport::salvaged`], an error in the log | bytes from the first damage on copied to `<segment>.tail-<offset>.bad`; the segment rewritten with its valid records (as a `*.tmp`, synced, renamed over it) |
//! | a damaged header (bad magic, checksum, version) with bytes after it | every valid frame after the header kept | [`ReplayReport::damaged`] at offset 0, [`ReplayReport::salvaged`] | as above, under a new header (its `prev_len`: where the predecessor's records end) |
//!
//! A crash during any of these leaves either the old file, repaired again by the next open,
//! or the new one. If the last segment's header is damaged and its predecessor (then read up
//! to where its records end) has a damaged record with valid ones after it, where the
//! predecessor ends is unknown: [`Error::Corrupt`], and [`repair`] salvages everything.
//! [`Recovery::Strict`] refuses every case above with [`Error::Corrupt`] (file and offset).
//! [`read_live`] and [`verify`] report the same and change nothing. [`repair`] salvages every
//! valid record of a journal damaged anywhere else.
//!
//! ## How replay reads
//!
//! A snapshot holds exactly one record per key, the newest at its cut, so it never goes
//! through a map. Replay first reads and folds only the segments after the snapshot (the
//! newest record per key, in a map pre-sized from each segment's record count), then streams
//! the snapshot's records straight to the caller, skipping each key the segments hold a newer
//! record of (a newer tombstone drops the key), and last hands on the segments' survivors.
//! Every record read counts towards [`ReplayReport::max_version`], tombstones and superseded
//! records included. Memory is the segments' map and a chunk of the snapshot.
//!
//! The snapshot is read twice, in 4 MiB chunks ([`Fs::read_range`]), never whole:
//!
//! 1. verification: one running crc32c over everything before the footer, compared with the
//!    footer, and a walk over the frames' lengths counting them against the footer. This is
//!    the completeness proof, and it finishes before any record is handed on: a snapshot
//!    that does not verify is passed over (or is an error) having contributed nothing. It
//!    costs one more read of the file at memory speed (hardware crc32c): about 0.3 s for the
//!    900 MB of 10 million leases, warm page cache.
//! 2. decoding: the frames again, each payload decoded and handed on, under the same running
//!    checksum, compared with the footer at the end. Bytes that changed between the passes
//!    (a disk returning other data once the pages were evicted) fail the replay, after some
//!    records were handed on: [`Journal::open`] then fails and its caller drops what it got.
//!    Per-payload checksums are not recomputed (they cost more than the running checksum, one
//!    call per small payload, and would find the same change no earlier for the caller).
//!
//! Verifying while decoding instead (reading the footer first, failing at the end) would
//! save the first pass but hand on records of a snapshot that turns out damaged, and leave no
//! way to fall back to an older one.
//!
//! Reading uses plain reads ([`Fs::read`], [`Fs::read_range`]), not `mmap`: mapping is
//! `unsafe` and this crate forbids `unsafe`. Segments (at most `segment_bytes` each) are read
//! whole.

mod chunked;
mod compact;
mod error;
mod format;
mod fs;
mod histogram;
mod journal;
mod offline;
mod replay;
mod spare;
pub mod stream;
#[cfg(any(test, feature = "testing"))]
pub mod testing;
mod writer;

pub use compact::CompactReport;
pub use error::{Error, Result};
pub use format::MAX_RECORD_LEN;
pub use fs::{DirLock, Fs, FsFile, RealFs};
pub use histogram::{Histogram, HistogramSnapshot};
pub use journal::{
    Doorbell, DurableWaiter, Health, Journal, Lane, MIN_SEGMENT_BYTES, Monitor, Options, Recovery,
    Stats, SyncPolicy, ThreadHook, Ticket,
};
pub use offline::{
    FileCheck, FileKind, OfflineStats, Problem, RepairReport, SnapshotInfo, VerifyReport,
    append_offline, append_offline_with, compact_offline, compact_offline_with, read_live,
    read_live_with, repair, repair_with, stats_offline, stats_offline_with, verify, verify_with,
};
pub use replay::ReplayReport;

/// A value [`Lane::append`] can take for records of type `R`: one that encodes, byte for
/// byte, as some `R` would. `R` itself is one; a producer may add a borrowed view of its own
/// state (implementing `bincode::Encode` field by field as `R`'s derive does) so that it need
/// not build an owned record, with its allocations, for every change. The view's author
/// keeps the two encodings equal; a test that encodes both is the way to hold it to that.
pub trait EncodesAs<R>: bincode::Encode {}

impl<R: Record> EncodesAs<R> for R {}

/// A journal record. Records with the same key supersede each other: the one with the highest
/// version wins, whatever order they are in the files (versions are causal per key; the
/// producer guarantees they strictly increase per key).
pub trait Record: bincode::Encode + bincode::Decode<()> + Clone + Send + 'static {
    /// What records supersede each other by.
    type Key: Eq + std::hash::Hash + Clone + Send + 'static;
    /// This record's key.
    fn key(&self) -> Self::Key;
    /// This record's version: higher is newer, per key.
    fn version(&self) -> u64;
    /// Whether compaction and replay keep this record when it is the newest for its key, at
    /// unix time `now` (false = a tombstone, or no longer needed).
    fn keep(&self, now: u64) -> bool;
    /// A record that deletes `key` at `version` (one that [`Record::keep`] drops), if this
    /// type has one. A stream [`Replica`](stream::Replica) uses it to delete the keys a
    /// snapshot no longer holds; without it they stay until they expire.
    fn tombstone(key: &Self::Key, version: u64) -> Option<Self> {
        let _ = (key, version);
        None
    }
}
