//! The durable stream: every frame the journal has synced in this run, numbered from 1 in
//! the order it was synced, for consumers such as a replica on a peer server.
//!
//! The writer records, after each sync, which byte range of which segment the batch took and
//! how many frames it held (one short lock, no IO); a [`Follower`] reads those ranges back
//! from the segment files on its own thread, so a slow or stopped consumer never holds up
//! the writer or a lane: it only falls behind. A follower whose position was compacted away
//! gets [`Error::Compacted`] and starts again from a [`StreamSnapshot`]. [`Replica`] applies
//! a stream to another journal; with the `stream` feature, `net` carries it over TCP. The
//! wire format and the rules are in docs/JOURNAL.md, "Streaming to a peer".

use std::collections::VecDeque;
use std::marker::PhantomData;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::format::{self, FRAME_HEADER_LEN, MAX_RECORD_LEN};
use crate::fs::Fs;
use crate::writer::Shared;
use crate::{Journal, Record};

mod gate;
#[cfg(feature = "stream")]
pub mod net;
mod replica;
pub mod wire;

pub(crate) use gate::GateState;
pub use gate::PeerGate;
pub use replica::{POSITION_FILE, Position, Replica, ReplicaStats, StreamError};

/// Spans kept in memory: one per segment written in this run; the oldest are forgotten first
/// (their frames are then only reachable through a snapshot). Allocated once, at open: the
/// writer's publish never allocates.
const MAX_SPANS: usize = 1024;

/// The frames of one segment synced in this run: bytes `start..end`, stream sequences
/// `first..next`.
#[derive(Clone, Copy, Debug)]
struct Span {
    segment: u64,
    start: u64,
    end: u64,
    first: u64,
    next: u64,
}

#[derive(Debug)]
struct Spans {
    spans: VecDeque<Span>,
    /// The sequence the next synced frame gets.
    next: u64,
}

/// Where the frames synced in this run are: written by the writer after each sync, read by
/// followers.
#[derive(Debug)]
pub(crate) struct StreamLog {
    inner: Mutex<Spans>,
    cv: Condvar,
    /// Followers inside a wait: without any, a publish makes no futex call.
    waiters: AtomicUsize,
    /// The last sequence synced, readable without the lock.
    synced: AtomicU64,
    /// This run's id, random and never 0 ([`Source::run`]).
    run: u64,
}

impl Default for StreamLog {
    fn default() -> Self {
        StreamLog {
            inner: Mutex::new(Spans {
                spans: VecDeque::with_capacity(MAX_SPANS),
                next: 1,
            }),
            cv: Condvar::new(),
            waiters: AtomicUsize::new(0),
            synced: AtomicU64::new(0),
            run: rand::random::<u64>().max(1),
        }
    }
}

impl StreamLog {
    fn lock(&self) -> MutexGuard<'_, Spans> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The writer synced `records` frames at bytes `from..to` of `segment`.
    pub(crate) fn publish(&self, segment: u64, from: u64, to: u64, records: u64) {
        if records == 0 {
            return;
        }
        {
            let mut s = self.lock();
            let first = s.next;
            s.next += records;
            let next = s.next;
            self.synced.store(next - 1, Ordering::Release);
            match s.spans.back_mut() {
                Some(last) if last.segment == segment && last.end == from => {
                    last.end = to;
                    last.next = next;
                }
                _ => {
                    if s.spans.len() == MAX_SPANS {
                        s.spans.pop_front();
                    }
                    s.spans.push_back(Span {
                        segment,
                        start: from,
                        end: to,
                        first,
                        next,
                    });
                }
            }
        }
        if self.waiters.load(Ordering::SeqCst) > 0 {
            self.cv.notify_all();
        }
    }

    /// The last sequence synced (an atomic: no lock).
    pub(crate) fn synced(&self) -> u64 {
        self.synced.load(Ordering::Acquire)
    }

    /// The first sequence still reachable and the next one to be synced.
    fn bounds(&self) -> (u64, u64) {
        let s = self.lock();
        (s.spans.front().map_or(s.next, |f| f.first), s.next)
    }

    /// Forgets the spans of segments up to `segment` (deleted by a compaction).
    pub(crate) fn forget_through(&self, segment: u64) {
        let mut s = self.lock();
        while s.spans.front().is_some_and(|f| f.segment <= segment) {
            s.spans.pop_front();
        }
    }
}

impl<R> crate::Lane<R> {
    /// The journal's stream position (the last sequence synced), read without a lock. With
    /// [`SyncPolicy::Group`](crate::SyncPolicy::Group), once a ticket of this lane is
    /// durable its record has a sequence at most this: a reply that must wait for a peer's
    /// ack waits for this position.
    pub fn stream_position(&self) -> u64 {
        self.shared().stream.synced()
    }
}

/// A handle on a journal's durable stream: cheap to clone, `Send`, usable from any thread
/// for as long as the journal runs (after shutdown it sees no new frames).
pub struct Source<R> {
    shared: Arc<Shared>,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    record: PhantomData<fn() -> R>,
}

impl<R> Clone for Source<R> {
    fn clone(&self) -> Self {
        Source {
            shared: self.shared.clone(),
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            record: PhantomData,
        }
    }
}

impl<R> std::fmt::Debug for Source<R> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Source")
            .field("dir", &self.dir)
            .field("run", &self.run())
            .field("position", &self.position())
            .finish()
    }
}

impl<R: Record> Journal<R> {
    /// This journal's durable stream.
    pub fn stream(&self) -> Source<R> {
        Source {
            shared: self.shared().clone(),
            fs: self.fs.clone(),
            dir: self.dir().to_path_buf(),
            record: PhantomData,
        }
    }
}

/// The live records of a journal and the stream position they are current to: every frame
/// up to `position` is reflected in them (newer ones may be too; versions make applying
/// those again harmless). A follower goes on from `position + 1`.
#[derive(Clone, Debug)]
pub struct StreamSnapshot<R> {
    /// The newest live record of every key.
    pub records: Vec<R>,
    /// The last stream sequence the records include.
    pub position: u64,
}

/// Frames read from the stream: `count` whole journal frames (`len | crc | payload`, as in
/// a segment), back to back, with sequences `first..first + count`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Batch {
    /// The sequence of the first frame.
    pub first: u64,
    /// How many frames `frames` holds.
    pub count: u64,
    /// The frames' bytes.
    pub frames: Vec<u8>,
}

impl<R> Source<R> {
    /// This run of the journal: a random id chosen when it opened, never 0. Sequences count
    /// within a run, so a receiver that holds this run's frames up to some sequence can go
    /// on from there under any later epoch (docs/JOURNAL.md, "Positions").
    pub fn run(&self) -> u64 {
        self.shared.stream.run
    }

    /// The sequence of the last frame synced (0 if none yet in this run).
    pub fn position(&self) -> u64 {
        self.shared.stream.synced()
    }

    /// The first sequence a follower may start at; anything before it takes a snapshot.
    pub fn oldest(&self) -> u64 {
        self.shared.stream.bounds().0
    }

    /// A follower that reads from sequence `from` on. [`Error::Compacted`] if `from` is no
    /// longer reachable, [`Error::StreamPosition`] if it lies beyond the next frame.
    pub fn follow(&self, from: u64) -> Result<Follower> {
        let (oldest, next) = self.shared.stream.bounds();
        if from < oldest {
            return Err(Error::Compacted {
                requested: from,
                oldest,
            });
        }
        if from > next {
            return Err(Error::StreamPosition {
                requested: from,
                next,
            });
        }
        Ok(Follower {
            shared: self.shared.clone(),
            fs: self.fs.clone(),
            dir: self.dir.clone(),
            next: from,
            at: None,
        })
    }
}

impl<R: Record> Source<R> {
    /// The live records and the position they are current to, read from the files while the
    /// journal runs (a compaction deleting a file under the read makes it start over, a few
    /// times at most).
    pub fn snapshot(&self) -> Result<StreamSnapshot<R>> {
        let mut tries = 0;
        loop {
            let position = self.position();
            match crate::offline::read_live_with::<R>(&*self.fs, &self.dir) {
                Ok((records, _)) => return Ok(StreamSnapshot { records, position }),
                Err(e @ (Error::MissingSegment { .. } | Error::Io { .. })) if tries < 5 => {
                    tracing::debug!(error = %e, "journal stream snapshot raced a compaction; reading again");
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// [`Source::snapshot`] without holding the records: each live record goes to `emit` as
    /// it is read. They reflect every frame up to any [`Source::position`] read before the
    /// call. A read that starts over after a compaction hands some records on again (versions
    /// make that harmless); `emit` failing ends the read with its error.
    pub fn snapshot_each(&self, mut emit: impl FnMut(R) -> Result<()>) -> Result<()> {
        let mut tries = 0;
        loop {
            let mut emit_failed = false;
            let res = crate::replay::replay::<R>(
                &*self.fs,
                &self.dir,
                crate::Recovery::TolerateTornTail,
                None,
                crate::replay::Keep::now(),
                |r| emit(r).inspect_err(|_| emit_failed = true),
            );
            match res {
                Ok(_) => return Ok(()),
                Err(e @ (Error::MissingSegment { .. } | Error::Io { .. }))
                    if !emit_failed && tries < 5 =>
                {
                    tracing::debug!(error = %e, "journal stream snapshot raced a compaction; reading again");
                    tries += 1;
                }
                Err(e) => return Err(e),
            }
        }
    }
}

/// A reader of the durable stream from some sequence on (see [`Source::follow`]).
pub struct Follower {
    shared: Arc<Shared>,
    fs: Arc<dyn Fs>,
    dir: PathBuf,
    next: u64,
    /// The segment and offset of frame `next`, once known.
    at: Option<(u64, u64)>,
}

impl std::fmt::Debug for Follower {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Follower")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

impl Follower {
    /// The sequence of the next frame this follower returns.
    pub fn next_seq(&self) -> u64 {
        self.next
    }

    /// The next frames, about `max_bytes` of them (at least one whole frame), waiting up to
    /// `wait` for the writer to sync one; `None` if none came. [`Error::Compacted`] if the
    /// frames were compacted away before they were read; [`Error::Corrupt`] if a synced
    /// frame no longer verifies (file and offset).
    pub fn next_batch(&mut self, max_bytes: usize, wait: Duration) -> Result<Option<Batch>> {
        let Some(span) = self.span(wait)? else {
            return Ok(None);
        };
        let path = format::segment_path(&self.dir, span.segment);
        let start = match self.at {
            Some((seg, off)) if seg == span.segment && (span.start..span.end).contains(&off) => off,
            _ if self.next == span.first => span.start,
            _ => self.locate(&span, &path)?,
        };
        let want = usize::try_from(span.end - start).unwrap_or(usize::MAX);
        let mut buf = self.read(
            &path,
            span.segment,
            start,
            want.min(max_bytes.max(FRAME_HEADER_LEN)),
        )?;
        // A first frame longer than `max_bytes`: read exactly it.
        if let Some(len) = format::frame_len_at(&buf, 0)
            && buf.len() < FRAME_HEADER_LEN + len
            && len <= MAX_RECORD_LEN
        {
            buf = self.read(
                &path,
                span.segment,
                start,
                (FRAME_HEADER_LEN + len).min(want),
            )?;
        }
        let whole = buf.len() == want;
        let (mut at, mut count) = (0usize, 0u64);
        while at < buf.len() && self.next + count < span.next {
            match format::frame_at(&buf, at, buf.len()) {
                Ok((_, q)) => {
                    at = q;
                    count += 1;
                }
                Err(_)
                    if !whole
                        && count > 0
                        && format::frame_bounds(&buf, at, buf.len()).is_err() =>
                {
                    break;
                }
                Err(reason) => {
                    return Err(Error::corrupt(&path, start + at as u64, reason));
                }
            }
        }
        if count == 0 {
            return Err(Error::corrupt(
                &path,
                start,
                "no whole frame where the stream says one is",
            ));
        }
        buf.truncate(at);
        let batch = Batch {
            first: self.next,
            count,
            frames: buf,
        };
        self.next += count;
        self.at = Some((span.segment, start + at as u64));
        Ok(Some(batch))
    }

    /// The span holding frame `next`, waiting up to `wait` for it to be synced.
    fn span(&self, wait: Duration) -> Result<Option<Span>> {
        let log = &self.shared.stream;
        let deadline = Instant::now() + wait;
        let mut s = log.lock();
        loop {
            let oldest = s.spans.front().map_or(s.next, |f| f.first);
            if self.next < oldest {
                return Err(Error::Compacted {
                    requested: self.next,
                    oldest,
                });
            }
            if self.next < s.next {
                let i = s.spans.partition_point(|sp| sp.next <= self.next);
                return Ok(s.spans.get(i).copied());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Ok(None);
            }
            log.waiters.fetch_add(1, Ordering::SeqCst);
            s = log
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
            log.waiters.fetch_sub(1, Ordering::SeqCst);
        }
    }

    /// The offset of frame `next` in `span`, found by walking its frames from the start.
    fn locate(&self, span: &Span, path: &std::path::Path) -> Result<u64> {
        let len = usize::try_from(span.end - span.start).unwrap_or(usize::MAX);
        let buf = self.read(path, span.segment, span.start, len)?;
        let mut at = 0usize;
        for _ in span.first..self.next {
            let (_, q) = format::frame_at(&buf, at, buf.len())
                .map_err(|reason| Error::corrupt(path, span.start + at as u64, reason))?;
            at = q;
        }
        Ok(span.start + at as u64)
    }

    fn read(&self, path: &std::path::Path, segment: u64, at: u64, len: usize) -> Result<Vec<u8>> {
        match self.fs.read_range(path, at, len) {
            Ok(b) => Ok(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                self.shared.stream.forget_through(segment);
                Err(Error::Compacted {
                    requested: self.next,
                    oldest: self.shared.stream.bounds().0,
                })
            }
            Err(e) => Err(Error::io("read", path, e)),
        }
    }
}
