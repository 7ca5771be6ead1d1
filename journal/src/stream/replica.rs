//! The receiving side: a journal that applies another journal's stream, in order.

use std::collections::VecDeque;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::fs::Fs;
use crate::{Journal, Lane, Record, Ticket, format};

/// The file, in the replica's journal directory, that keeps its position across restarts.
pub const POSITION_FILE: &str = "stream-position";
const POSITION_MAGIC: [u8; 8] = *b"LSRJPOS\0";
/// Version 2 adds the run; a version-1 file reads as run 0, unknown (docs/JOURNAL.md).
const POSITION_VERSION: u32 = 2;
/// The shortest time between two writes of the position file.
pub(crate) const POSITION_EVERY: Duration = Duration::from_millis(50);

/// Where a replica keeps its position, and what it last wrote there.
struct PositionStore {
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    written: Position,
    at: Option<Instant>,
}

impl PositionStore {
    fn path(&self) -> PathBuf {
        self.dir.join(POSITION_FILE)
    }

    /// Writes `p` (durable already) as a whole new file: temporary, synced, renamed, the
    /// directory synced. A failure is logged: the position on disk only stays older, which
    /// costs frames sent again, never frames lost.
    fn write(&mut self, p: &Position) {
        let tmp = self.dir.join(format!("{POSITION_FILE}.tmp"));
        let bytes = encode_position(p);
        let res = (|| {
            let mut f = self.fs.create(&tmp)?;
            f.write_all(&bytes)?;
            f.sync_data()?;
            drop(f);
            self.fs.rename(&tmp, &self.path())?;
            self.fs.sync_dir(&self.dir)
        })();
        self.at = Some(Instant::now());
        match res {
            Ok(()) => self.written = p.clone(),
            Err(e) => {
                tracing::warn!(file = %self.path().display(), error = %e, "journal stream: cannot write the replica position");
            }
        }
    }
}

fn encode_position(p: &Position) -> Vec<u8> {
    let mut b = POSITION_MAGIC.to_vec();
    b.extend_from_slice(&POSITION_VERSION.to_le_bytes());
    b.extend_from_slice(&p.epoch.to_le_bytes());
    b.extend_from_slice(&p.run.to_le_bytes());
    b.extend_from_slice(&p.seq.to_le_bytes());
    let node = p.node.as_deref().unwrap_or("").as_bytes();
    let node = &node[..node.len().min(super::wire::MAX_NODE)];
    b.push(node.len() as u8);
    b.extend_from_slice(node);
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

/// Parses a position file, of version 1 (no run: 0) or 2; the error says why it is not one.
fn decode_position(b: &[u8]) -> Result<Position, String> {
    if b.len() < 8 + 4 + 8 + 8 + 1 + 4 {
        return Err(format!("{} bytes, too short", b.len()));
    }
    let (body, crc) = b.split_at(b.len() - 4);
    if crc32c::crc32c(body).to_le_bytes() != crc {
        return Err("checksum mismatch".into());
    }
    if body[..8] != POSITION_MAGIC {
        return Err("bad magic".into());
    }
    let u = |at: usize, n: usize| {
        body.get(at..at + n)
            .ok_or_else(|| format!("{} bytes, too short", b.len()))
            .map(|s| {
                s.iter()
                    .rev()
                    .fold(0u64, |acc, &x| (acc << 8) | u64::from(x))
            })
    };
    let (epoch, run, seq, at) = match u(8, 4)? {
        1 => (u(12, 8)?, 0, u(20, 8)?, 28),
        2 => (u(12, 8)?, u(20, 8)?, u(28, 8)?, 36),
        v => return Err(format!("version {v}, this build reads 1 and 2")),
    };
    let len = u(at, 1)? as usize;
    let node = body
        .get(at + 1..)
        .filter(|n| n.len() == len)
        .ok_or("node length mismatch")?;
    let node = std::str::from_utf8(node).map_err(|_| "node is not UTF-8")?;
    Ok(Position {
        node: (!node.is_empty()).then(|| node.to_owned()),
        epoch,
        run,
        seq,
    })
}

/// Reads the position file in `dir`: `None` if there is none, or (logged) if it is damaged:
/// the replica then starts with a snapshot.
fn read_position(fs: &dyn Fs, dir: &Path) -> Option<Position> {
    let path = dir.join(POSITION_FILE);
    let bytes = match fs.read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return None,
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "journal stream: cannot read the replica position; a snapshot will be taken");
            return None;
        }
    };
    match decode_position(&bytes) {
        Ok(p) => Some(p),
        Err(e) => {
            tracing::warn!(file = %path.display(), error = %e, "journal stream: the replica position is damaged; a snapshot will be taken");
            None
        }
    }
}

/// Why a stream was refused or broke off.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StreamError {
    /// The stream's epoch is older than the one this replica follows: a fenced sender.
    #[error("stale epoch {got} from node {node:?}: this replica follows epoch {have}")]
    StaleEpoch {
        /// The sending node.
        node: String,
        /// The epoch followed.
        have: u64,
        /// The epoch received.
        got: u64,
    },
    /// Frames skip sequences this replica has not applied.
    #[error("gap in the stream: expected sequence {expected}, got {got}")]
    Gap {
        /// The next sequence this replica needs.
        expected: u64,
        /// The first sequence received.
        got: u64,
    },
    /// A received frame is damaged (length, checksum, or payload not a record).
    #[error("corrupt frame at sequence {seq} (byte {offset} of its batch): {reason}")]
    Corrupt {
        /// The sequence of the bad frame (for snapshot records: its index in the snapshot).
        seq: u64,
        /// Its offset in the received batch.
        offset: usize,
        /// What is wrong.
        reason: String,
    },
    /// Frames of a stream (node, epoch) this replica has no base for: it needs a snapshot.
    #[error("frames of node {node:?} epoch {epoch} without a snapshot of that stream first")]
    NeedsSnapshot {
        /// The sending node.
        node: String,
        /// Its epoch.
        epoch: u64,
    },
    /// The peer broke the protocol (a message out of place, counts that do not add up).
    #[error("stream protocol: {0}")]
    Protocol(String),
    /// A message did not decode.
    #[error(transparent)]
    Malformed(#[from] super::wire::Malformed),
    /// The stream key: on one end only, or a message whose tag does not verify.
    #[error(transparent)]
    Auth(#[from] super::wire::AuthError),
    /// The peer refused the stream.
    #[error("refused by the peer: {0}")]
    Refused(String),
    /// The connection failed.
    #[error("stream connection: {0}")]
    Io(#[from] std::io::Error),
    /// The local journal failed (reading the stream or a snapshot).
    #[error(transparent)]
    Journal(#[from] crate::Error),
}

impl From<super::wire::DecodeError> for StreamError {
    fn from(e: super::wire::DecodeError) -> Self {
        match e {
            super::wire::DecodeError::Malformed(m) => StreamError::Malformed(m),
            super::wire::DecodeError::Auth(a) => StreamError::Auth(a),
        }
    }
}

/// What a replica holds durable: every frame of `node`'s stream in `epoch` up to `seq`, all
/// of journal run `run`.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Position {
    /// The node followed (`None` before the first snapshot).
    pub node: Option<String>,
    /// The epoch followed.
    pub epoch: u64,
    /// The sender's journal run those frames are of (0: unknown).
    pub run: u64,
    /// The last sequence synced.
    pub seq: u64,
}

/// Counters of a replica.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReplicaStats {
    /// Stream frames appended.
    pub frames: u64,
    /// Stream frames received again (sequence already applied) and skipped.
    pub duplicates: u64,
    /// Records not appended because [`Replica::skip_records`] says this journal wrote them
    /// (frames and snapshot records).
    pub skipped: u64,
    /// Snapshots taken.
    pub snapshots: u64,
    /// Records appended from snapshots.
    pub snapshot_records: u64,
    /// Keys deleted after a snapshot because it did not hold them.
    pub snapshot_deletions: u64,
}

/// A snapshot being received.
#[derive(Debug)]
struct Receiving<K> {
    position: u64,
    records: u64,
    /// The snapshot's keys, when the replica can look at its own journal ([`Replica::open`]).
    keys: Option<std::collections::HashSet<K>>,
}

/// Applies a stream of frames to a journal through one of its lanes, in order, and reports
/// what it has made durable (its ack). Frames are checked (checksum, record type) before any
/// of a batch is appended; a gap or a stale epoch is refused with a [`StreamError`].
pub struct Replica<R: Record> {
    lane: Lane<R>,
    node: Option<String>,
    epoch: u64,
    run: u64,
    /// The last sequence appended (durable or not).
    applied: u64,
    /// The last sequence durable.
    acked: u64,
    /// Tickets still to become durable and the sequence each completes.
    pending: VecDeque<(Ticket, u64)>,
    receiving: Option<Receiving<R::Key>>,
    stats: ReplicaStats,
    store: Option<PositionStore>,
    /// Records not to append: this journal's own, sent back by a sender that streams it all.
    skip: Option<Skip<R>>,
}

/// A test of the records a replica does not append ([`Replica::skip_records`]).
type Skip<R> = Box<dyn Fn(&R) -> bool + Send>;

impl<R: Record> std::fmt::Debug for Replica<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replica")
            .field("node", &self.node)
            .field("epoch", &self.epoch)
            .field("run", &self.run)
            .field("applied", &self.applied)
            .field("acked", &self.acked)
            .finish_non_exhaustive()
    }
}

impl<R: Record> Replica<R> {
    /// A replica writing through `lane`, following nothing yet: the first stream it gets
    /// starts with a snapshot.
    pub fn new(lane: Lane<R>) -> Self {
        Replica {
            lane,
            node: None,
            epoch: 0,
            run: 0,
            applied: 0,
            acked: 0,
            pending: VecDeque::new(),
            receiving: None,
            stats: ReplicaStats::default(),
            store: None,
            skip: None,
        }
    }

    /// Skips the records `skip` picks instead of appending them, their sequences still
    /// acknowledged: two journals that stream to each other send every frame back, the
    /// other's replica included, and each must keep only what the other wrote.
    pub fn skip_records(&mut self, skip: impl Fn(&R) -> bool + Send + 'static) {
        self.skip = Some(Box::new(skip));
    }

    fn skips(&self, r: &R) -> bool {
        self.skip.as_ref().is_some_and(|skip| skip(r))
    }

    /// A replica writing through lane `lane` of `journal` that keeps its position in the
    /// journal's directory ([`POSITION_FILE`], written at most every 50 ms, only with what is
    /// durable): after a restart it resumes from there instead of taking a snapshot.
    pub fn open(journal: &Journal<R>, lane: usize) -> crate::Result<Self> {
        let mut r = Replica::new(journal.try_lane(lane)?);
        let fs = journal.fs.clone();
        let written = read_position(&*fs, journal.dir()).unwrap_or_default();
        r.node = written.node.clone();
        r.epoch = written.epoch;
        r.run = written.run;
        r.applied = written.seq;
        r.acked = written.seq;
        r.store = Some(PositionStore {
            fs,
            dir: journal.dir().to_path_buf(),
            written,
            at: None,
        });
        Ok(r)
    }

    /// Writes the position file now if it is behind (with [`Replica::open`]; a receiver
    /// calls it when a session ends).
    pub fn save_position(&mut self) {
        self.poll();
        self.persist(true);
    }

    /// Whether the position file is behind what is durable (a receiver keeps polling until
    /// it is written).
    pub fn save_due(&self) -> bool {
        self.receiving.is_none()
            && self.store.as_ref().is_some_and(|st| {
                st.written.seq != self.acked
                    || st.written.epoch != self.epoch
                    || st.written.run != self.run
                    || st.written.node != self.node
            })
    }

    /// What it holds durable, as last polled.
    fn current(&self) -> Position {
        Position {
            node: self.node.clone(),
            epoch: self.epoch,
            run: self.run,
            seq: self.acked,
        }
    }

    fn persist(&mut self, now: bool) {
        if self.receiving.is_some() {
            return;
        }
        let p = self.current();
        if let Some(st) = self.store.as_mut()
            && st.written != p
            && (now || st.at.is_none_or(|t| t.elapsed() >= POSITION_EVERY))
        {
            st.write(&p);
        }
    }

    /// Counters.
    pub fn stats(&self) -> ReplicaStats {
        self.stats
    }

    /// What this replica holds durable (its ack), after taking in the lane's watermark.
    pub fn position(&mut self) -> Position {
        self.poll();
        self.current()
    }

    /// Takes in the lane's watermark; returns the last sequence durable.
    pub fn poll(&mut self) -> u64 {
        let durable = self.lane.durable();
        while let Some(&(t, seq)) = self.pending.front()
            && t <= durable
        {
            self.acked = seq;
            self.pending.pop_front();
        }
        self.persist(false);
        self.acked
    }

    /// Whether a snapshot is being received (its records are not acknowledged before its
    /// end).
    pub fn has_receiving(&self) -> bool {
        self.receiving.is_some()
    }

    /// A handle that waits, on another thread, for what is pending to become durable.
    pub fn waiter(&self) -> crate::DurableWaiter {
        self.lane.waiter()
    }

    /// The ticket of the last frame still waiting for the disk.
    pub fn last_pending(&self) -> Option<Ticket> {
        self.pending.back().map(|&(t, _)| t)
    }

    /// Whether appended frames are still waiting for the disk.
    pub fn has_pending(&self) -> bool {
        !self.pending.is_empty()
    }

    /// Waits up to `timeout` for everything appended to be durable; returns the last
    /// sequence durable.
    pub fn wait_durable(&mut self, timeout: Duration) -> u64 {
        if let Some(&(t, _)) = self.pending.back() {
            self.lane.wait_durable(t, timeout);
        }
        self.poll()
    }

    /// Checks a sender's greeting: refuses an epoch older than the one followed.
    pub fn check_sender(&self, node: &str, epoch: u64) -> Result<(), StreamError> {
        if epoch < self.epoch {
            return Err(StreamError::StaleEpoch {
                node: node.into(),
                have: self.epoch,
                got: epoch,
            });
        }
        Ok(())
    }

    /// Takes a sender's greeting: [`Replica::check_sender`], then, if it is the node
    /// followed, of the same journal `run` and under a higher epoch, follows that stream on
    /// under `epoch`, its sequence kept: the sender's new term resumes instead of sending a
    /// snapshot (its frames must still come from `applied + 1`).
    pub fn accept_sender(&mut self, node: &str, run: u64, epoch: u64) -> Result<(), StreamError> {
        self.check_sender(node, epoch)?;
        if self.receiving.is_none()
            && run != 0
            && self.run == run
            && self.node.as_deref() == Some(node)
            && epoch > self.epoch
        {
            self.epoch = epoch;
        }
        Ok(())
    }

    /// Applies frames `first..first + count` of `node`'s stream in `epoch`. Frames already
    /// applied are skipped (counted in [`ReplicaStats::duplicates`]).
    pub fn apply(
        &mut self,
        node: &str,
        epoch: u64,
        first: u64,
        count: u64,
        frames: &[u8],
    ) -> Result<(), StreamError> {
        self.check_sender(node, epoch)?;
        if self.receiving.is_some() {
            return Err(StreamError::Protocol(
                "frames inside a snapshot (before its end)".into(),
            ));
        }
        if self.node.as_deref() != Some(node) || self.epoch != epoch {
            return Err(StreamError::NeedsSnapshot {
                node: node.into(),
                epoch,
            });
        }
        if first == 0 || first > self.applied + 1 {
            return Err(StreamError::Gap {
                expected: self.applied + 1,
                got: first,
            });
        }
        let recs = decode_all::<R>(frames, count, first)?;
        let before = self.applied;
        let mut last = None;
        for (i, r) in recs.iter().enumerate() {
            let seq = first + i as u64;
            if seq <= self.applied {
                self.stats.duplicates += 1;
                continue;
            }
            self.applied = seq;
            if self.skips(r) {
                self.stats.skipped += 1;
                continue;
            }
            last = Some(self.lane.append(r));
            self.stats.frames += 1;
        }
        // A skipped frame is acknowledged with what was appended before it.
        if self.applied > before {
            match (last, self.pending.back_mut()) {
                (Some(t), _) => self.pending.push_back((t, self.applied)),
                (None, Some(back)) => back.1 = self.applied,
                (None, None) => self.acked = self.applied,
            }
        }
        Ok(())
    }

    /// Starts taking a snapshot of `node`'s stream in `epoch` from journal `run`, current to
    /// `position`: from now on this replica follows that stream.
    pub fn snapshot_begin(
        &mut self,
        node: &str,
        run: u64,
        epoch: u64,
        position: u64,
    ) -> Result<(), StreamError> {
        self.check_sender(node, epoch)?;
        self.node = Some(node.into());
        self.epoch = epoch;
        self.run = run;
        self.applied = 0;
        self.acked = 0;
        self.pending.clear();
        self.receiving = Some(Receiving {
            position,
            records: 0,
            keys: self
                .store
                .as_ref()
                .map(|_| std::collections::HashSet::new()),
        });
        Ok(())
    }

    /// Appends `count` snapshot records (one frame each).
    pub fn snapshot_records(&mut self, count: u64, frames: &[u8]) -> Result<(), StreamError> {
        let Some(rx) = self.receiving.as_mut() else {
            return Err(StreamError::Protocol(
                "snapshot records without a snapshot begun".into(),
            ));
        };
        let recs = decode_all::<R>(frames, count, rx.records)?;
        rx.records += count;
        for r in &recs {
            if let Some(keys) = rx.keys.as_mut() {
                keys.insert(r.key());
            }
            if self.skip.as_ref().is_some_and(|skip| skip(r)) {
                self.stats.skipped += 1;
                continue;
            }
            self.lane.append(r);
        }
        self.stats.snapshot_records += count;
        Ok(())
    }

    /// Ends a snapshot that held `records` records: once they are durable, this replica
    /// acknowledges its position.
    pub fn snapshot_end(&mut self, records: u64) -> Result<(), StreamError> {
        let Some(rx) = self.receiving.take() else {
            return Err(StreamError::Protocol(
                "snapshot end without a snapshot begun".into(),
            ));
        };
        if rx.records != records {
            // Not usable: the next greeting starts a snapshot again.
            self.node = None;
            return Err(StreamError::Protocol(format!(
                "snapshot ended after {} records, the sender says {records}",
                rx.records
            )));
        }
        if let Some(keys) = &rx.keys {
            self.delete_all_but(keys)?;
        }
        self.applied = rx.position;
        self.pending
            .push_back((self.lane.last_ticket(), rx.position));
        self.stats.snapshots += 1;
        Ok(())
    }

    /// After a snapshot: deletes every live key of this replica's journal that the snapshot
    /// does not hold (deleted on the sender while this replica was behind), with a tombstone
    /// one version above its record ([`Record::tombstone`]; a type without tombstones keeps
    /// them). Waits for what is appended so far to be durable, then reads the journal.
    fn delete_all_but(
        &mut self,
        keys: &std::collections::HashSet<R::Key>,
    ) -> Result<(), StreamError> {
        let Some(st) = self.store.as_ref() else {
            return Ok(());
        };
        let (fs, dir) = (st.fs.clone(), st.dir.clone());
        let last = self.lane.last_ticket();
        if !self.lane.wait_durable(last, Duration::from_secs(60)) {
            return Err(StreamError::Protocol(
                "the snapshot's records did not become durable in 60 s".into(),
            ));
        }
        let (live, _) = crate::offline::read_live_with::<R>(&*fs, &dir)?;
        for r in live {
            if !keys.contains(&r.key())
                && let Some(t) = R::tombstone(&r.key(), r.version().saturating_add(1))
            {
                self.lane.append(&t);
                self.stats.snapshot_deletions += 1;
            }
        }
        Ok(())
    }

    /// A broken connection during a snapshot leaves it unusable: forget it.
    pub fn abort_snapshot(&mut self) {
        if self.receiving.take().is_some() {
            self.node = None;
        }
    }
}

/// Decodes `count` frames; sequence numbers in errors start at `first`.
fn decode_all<R: Record>(frames: &[u8], count: u64, first: u64) -> Result<Vec<R>, StreamError> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < frames.len() {
        let seq = first + out.len() as u64;
        let corrupt = |reason: String| StreamError::Corrupt {
            seq,
            offset: at,
            reason,
        };
        let (p, q) = format::frame_at(frames, at, frames.len()).map_err(corrupt)?;
        out.push(format::decode_payload::<R>(&frames[p..q]).map_err(corrupt)?);
        at = q;
    }
    if out.len() as u64 != count {
        return Err(StreamError::Protocol(format!(
            "batch says {count} frames, holds {}",
            out.len()
        )));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_position_file_roundtrips_and_damage_is_refused() {
        let p = Position {
            node: Some("a".into()),
            epoch: 7,
            run: 0x1122_3344_5566_7788,
            seq: 42,
        };
        let b = encode_position(&p);
        assert_eq!(decode_position(&b).unwrap(), p);
        assert_eq!(
            decode_position(&encode_position(&Position::default())).unwrap(),
            Position::default()
        );
        for i in 0..b.len() * 8 {
            let mut d = b.clone();
            d[i / 8] ^= 1 << (i % 8);
            assert!(decode_position(&d).is_err(), "bit {i}");
        }
        for n in 0..b.len() {
            assert!(decode_position(&b[..n]).is_err(), "cut at {n}");
        }
    }

    #[test]
    fn a_version_1_position_file_reads_with_the_run_unknown() {
        let mut b = POSITION_MAGIC.to_vec();
        b.extend_from_slice(&1u32.to_le_bytes());
        b.extend_from_slice(&7u64.to_le_bytes());
        b.extend_from_slice(&42u64.to_le_bytes());
        b.extend_from_slice(b"\x01a");
        let crc = crc32c::crc32c(&b);
        b.extend_from_slice(&crc.to_le_bytes());
        let p = Position {
            node: Some("a".into()),
            epoch: 7,
            run: 0,
            seq: 42,
        };
        assert_eq!(decode_position(&b).unwrap(), p);
        let v3 = [&b[..8], &3u32.to_le_bytes(), &b[12..b.len() - 4]].concat();
        let crc = crc32c::crc32c(&v3);
        let e = decode_position(&[&v3[..], &crc.to_le_bytes()].concat()).unwrap_err();
        assert_eq!(e, "version 3, this build reads 1 and 2");
    }
}
