//! The durable stream: followers, the replica, and the TCP transport on loopback.

use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use lessor_journal::stream::net::{self, ReceiverStatus, SenderOptions, SenderStatus};
use lessor_journal::stream::wire::{self, Msg, NONCE_LEN, StreamKey};
use lessor_journal::stream::{Replica, StreamError};
use lessor_journal::{Error, Journal, Lane, Options, read_live};

use crate::common::{LONG, rec, tomb};
use lessor_journal::testing::Rec;

fn open(dir: &Path, segment_bytes: u64) -> Journal<Rec> {
    let mut o = Options::new(dir, 2);
    o.segment_bytes = segment_bytes;
    o.compact_bytes = u64::MAX;
    o.compact_segments = u64::MAX;
    Journal::open_dir(o, |_| {}).unwrap().0
}

/// A journal as [`open`] makes it, in a new temporary directory.
fn temp_journal(segment_bytes: u64) -> (tempfile::TempDir, Journal<Rec>) {
    let d = tempfile::tempdir().unwrap();
    let j = open(d.path(), segment_bytes);
    (d, j)
}

fn codec() -> impl bincode::config::Config {
    bincode::config::standard().with_fixed_int_encoding()
}

/// The records in back-to-back frames.
fn decode_frames(frames: &[u8]) -> Vec<Rec> {
    let mut out = Vec::new();
    let mut at = 0;
    while at < frames.len() {
        let len = u32::from_le_bytes(frames[at..at + 4].try_into().unwrap()) as usize;
        let p = &frames[at + 8..at + 8 + len];
        out.push(bincode::decode_from_slice(p, codec()).unwrap().0);
        at += 8 + len;
    }
    out
}

fn frame(r: &Rec) -> Vec<u8> {
    let p = bincode::encode_to_vec(r, codec()).unwrap();
    let mut f = (p.len() as u32).to_le_bytes().to_vec();
    f.extend_from_slice(&crc32c::crc32c(&p).to_le_bytes());
    f.extend_from_slice(&p);
    f
}

/// Appends `n` records (keys `base..base + n`, a tombstone every 10th) over both lanes and
/// waits until all are durable.
fn fill(lanes: &mut [Lane<Rec>], base: u32, n: u32, v: u64) {
    let mut last = vec![None; lanes.len()];
    for k in base..base + n {
        let i = k as usize % lanes.len();
        let r = if k % 10 == 9 { tomb(k, v) } else { rec(k, v) };
        last[i] = Some(lanes[i].append(&r));
    }
    for (l, t) in lanes.iter().zip(last) {
        if let Some(t) = t {
            assert!(l.wait_durable(t, LONG), "lane {} not durable", l.index());
        }
    }
}

fn sorted(dir: &Path) -> Vec<Rec> {
    let mut v = read_live::<Rec>(dir).unwrap().0;
    v.sort_by_key(|r| r.key);
    v
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + LONG;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn a_follower_reads_every_synced_frame_once_in_order() {
    let (_d, j) = temp_journal(4096);
    let src = j.stream();
    let mut f = src.follow(1).unwrap();
    let mut lanes = vec![j.lane(0), j.lane(1)];
    let mut got = Vec::new();
    for round in 0..20u32 {
        fill(&mut lanes, round * 100, 100, 1);
        // Both lanes' records are durable, so the stream has them all.
        assert_eq!(lanes[0].stream_position(), u64::from(round + 1) * 100);
        while let Some(b) = f.next_batch(700, Duration::ZERO).unwrap() {
            assert_eq!(b.first, got.len() as u64 + 1, "batches follow each other");
            let recs = decode_frames(&b.frames);
            assert_eq!(recs.len() as u64, b.count);
            got.extend(recs);
        }
    }
    assert_eq!(src.position(), 2000);
    assert_eq!(got.len(), 2000, "every frame once");
    let mut keys: Vec<u32> = got.iter().map(|r| r.key).collect();
    keys.sort_unstable();
    assert_eq!(keys, (0..2000).collect::<Vec<_>>());
    // A follower may start anywhere reachable and sees the same frames from there.
    let mut g = src.follow(1234).unwrap();
    let b = g.next_batch(1 << 20, Duration::ZERO).unwrap().unwrap();
    assert_eq!(b.first, 1234);
    assert_eq!(decode_frames(&b.frames)[0], got[1233]);
    assert!(matches!(
        src.follow(2002),
        Err(Error::StreamPosition {
            requested: 2002,
            next: 2001
        })
    ));
    // Nothing more synced: a wait ends empty.
    assert!(
        f.next_batch(100, Duration::from_millis(20))
            .unwrap()
            .is_none()
    );
    drop(lanes);
    j.shutdown().unwrap();
}

#[test]
fn a_follower_that_stops_reading_never_holds_up_the_lanes() {
    let (_d, j) = temp_journal(64 << 10);
    let src = j.stream();
    let mut idle = src.follow(1).unwrap();
    let mut lanes = vec![j.lane(0), j.lane(1)];
    let started = Instant::now();
    for round in 0..50u32 {
        fill(&mut lanes, round * 200, 200, 1);
    }
    assert!(started.elapsed() < LONG);
    assert_eq!(src.position(), 10_000);
    // It is only behind: everything is still there for it.
    let mut n = 0;
    while let Some(b) = idle.next_batch(1 << 20, Duration::ZERO).unwrap() {
        n += b.count;
    }
    assert_eq!(n, 10_000);
    drop(lanes);
    j.shutdown().unwrap();
}

#[test]
fn compaction_sends_a_behind_follower_to_a_snapshot() {
    let (d, j) = temp_journal(1024);
    let src = j.stream();
    let mut f = src.follow(1).unwrap();
    let mut lanes = vec![j.lane(0), j.lane(1)];
    fill(&mut lanes, 0, 300, 1);
    j.compact_blocking().unwrap();
    let e = f.next_batch(1 << 20, Duration::ZERO).unwrap_err();
    assert!(
        matches!(e, Error::Compacted { requested: 1, oldest } if oldest > 1),
        "{e}"
    );
    let snap = src.snapshot().unwrap();
    assert_eq!(snap.position, 300);
    let mut recs = snap.records;
    recs.sort_by_key(|r| r.key);
    drop(lanes);
    j.shutdown().unwrap();
    assert_eq!(recs, sorted(d.path()));
    assert_eq!(recs.len(), 270, "tombstones and their keys are not in it");
}

#[test]
fn a_damaged_synced_frame_is_reported_with_file_and_offset() {
    let (d, j) = temp_journal(1 << 20);
    let src = j.stream();
    // One lane, so that the frames are in key order.
    let mut lanes = vec![j.lane(0)];
    fill(&mut lanes, 0, 10, 1);
    let seg = d.path().join(format!("{:016}.log", 1));
    let mut bytes = std::fs::read(&seg).unwrap();
    let off = 32 + frame(&rec(0, 1)).len() + frame(&rec(1, 1)).len() + 10;
    bytes[off] ^= 0xff;
    std::fs::write(&seg, &bytes).unwrap();
    let mut f = src.follow(1).unwrap();
    match f.next_batch(1 << 20, Duration::ZERO) {
        Err(Error::Corrupt { file, offset, .. }) => {
            assert_eq!(file, seg);
            assert_eq!(offset as usize, off - 10, "the damaged frame's start");
        }
        other => panic!("expected corruption, got {other:?}"),
    }
    drop(lanes);
    j.shutdown().unwrap();
}

#[test]
fn the_replica_refuses_gaps_stale_epochs_and_corrupt_frames() {
    let (_d, j) = temp_journal(1 << 20);
    let mut r = Replica::new(j.lane(0));
    let frames: Vec<u8> = (0..3).flat_map(|k| frame(&rec(k, 1))).collect();
    // Frames before any snapshot of that stream.
    assert!(matches!(
        r.apply("a", 5, 1, 3, &frames),
        Err(StreamError::NeedsSnapshot { epoch: 5, .. })
    ));
    r.snapshot_begin("a", 1, 5, 0).unwrap();
    r.snapshot_end(0).unwrap();
    r.apply("a", 5, 1, 3, &frames).unwrap();
    // A gap.
    let e = r.apply("a", 5, 5, 3, &frames).unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::Gap {
                expected: 4,
                got: 5
            }
        ),
        "{e}"
    );
    // A stale epoch.
    let e = r.apply("a", 4, 4, 3, &frames).unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::StaleEpoch {
                have: 5,
                got: 4,
                ..
            }
        ),
        "{e}"
    );
    assert!(r.check_sender("b", 4).is_err());
    // A damaged third frame: nothing of the batch is applied, the error names it.
    let mut bad = frames.clone();
    let third = frame(&rec(0, 1)).len() + frame(&rec(1, 1)).len();
    let last = bad.len() - 1;
    bad[last] ^= 1;
    let e = r.apply("a", 5, 4, 3, &bad).unwrap_err();
    assert!(
        matches!(&e, StreamError::Corrupt { seq: 6, offset, .. } if *offset == third),
        "{e}"
    );
    // A count that does not match.
    assert!(matches!(
        r.apply("a", 5, 4, 2, &frames),
        Err(StreamError::Protocol(_))
    ));
    // Resent frames are skipped.
    r.apply("a", 5, 2, 3, &frames).unwrap();
    let s = r.stats();
    assert_eq!((s.frames, s.duplicates), (4, 2));
    assert_eq!(r.wait_durable(LONG), 4);
    assert_eq!(r.position().seq, 4);
    drop(r);
    j.shutdown().unwrap();
}

#[test]
fn the_replica_continues_a_stream_under_a_new_epoch_only_for_its_node_and_run() {
    let (_d, j) = temp_journal(1 << 20);
    let mut r = Replica::new(j.lane(0));
    let (two, third): (Vec<u8>, Vec<u8>) = (
        (0..2).flat_map(|k| frame(&rec(k, 1))).collect(),
        frame(&rec(2, 1)),
    );
    r.snapshot_begin("a", 7, 5, 0).unwrap();
    r.snapshot_end(0).unwrap();
    r.apply("a", 5, 1, 2, &two).unwrap();
    // Another node, or another run of `a`'s journal: the frames need a snapshot.
    for (node, run) in [("b", 7), ("a", 8)] {
        r.accept_sender(node, run, 6).unwrap();
        assert!(matches!(
            r.apply(node, 6, 3, 1, &third),
            Err(StreamError::NeedsSnapshot { epoch: 6, .. })
        ));
        assert_eq!(r.position().epoch, 5);
    }
    // The same run in a higher epoch goes on where it was: gaps are still refused.
    r.accept_sender("a", 7, 6).unwrap();
    let p = r.position();
    assert_eq!((p.node.as_deref(), p.epoch, p.run), (Some("a"), 6, 7));
    assert!(matches!(
        r.apply("a", 6, 4, 1, &third),
        Err(StreamError::Gap {
            expected: 3,
            got: 4
        })
    ));
    r.apply("a", 6, 3, 1, &third).unwrap();
    // The epoch it left is stale.
    assert!(matches!(
        r.accept_sender("a", 7, 5),
        Err(StreamError::StaleEpoch {
            have: 6,
            got: 5,
            ..
        })
    ));
    assert_eq!(r.wait_durable(LONG), 3);
    assert_eq!(r.stats().snapshots, 1);
    drop(r);
    j.shutdown().unwrap();
}

#[test]
fn a_replica_skips_its_own_records_sent_back_and_still_acknowledges_them() {
    let (d, j) = temp_journal(1 << 20);
    let mut r = Replica::new(j.lane(0));
    // This journal's own records are the odd versions; the sender streams them back.
    r.skip_records(|rec: &Rec| rec.version % 2 == 1);
    r.snapshot_begin("a", 1, 5, 0).unwrap();
    let snap: Vec<u8> = [rec(100, 2), rec(101, 3)].iter().flat_map(frame).collect();
    r.snapshot_records(2, &snap).unwrap();
    r.snapshot_end(2).unwrap();
    // A batch that ends with a skipped frame, then one of skipped frames only.
    let mixed: Vec<u8> = [rec(0, 2), rec(1, 3), rec(2, 4), rec(3, 5)]
        .iter()
        .flat_map(frame)
        .collect();
    r.apply("a", 5, 1, 4, &mixed).unwrap();
    let own: Vec<u8> = [rec(4, 7), rec(5, 9)].iter().flat_map(frame).collect();
    r.apply("a", 5, 5, 2, &own).unwrap();
    let s = r.stats();
    assert_eq!((s.frames, s.skipped, s.snapshot_records), (2, 5, 2));
    assert_eq!(r.wait_durable(LONG), 6, "every sequence acknowledged");
    // Resent, they are duplicates, not skipped twice.
    r.apply("a", 5, 5, 2, &own).unwrap();
    assert_eq!(r.stats().duplicates, 2);
    drop(r);
    j.shutdown().unwrap();
    let keys: Vec<u32> = sorted(d.path()).iter().map(|r| r.key).collect();
    assert_eq!(keys, [0, 2, 100], "only the sender's records are appended");
}

/// A listener on a free loopback port, and its address.
fn listener(rt: &tokio::runtime::Runtime) -> (tokio::net::TcpListener, SocketAddr) {
    let l = rt
        .block_on(tokio::net::TcpListener::bind("127.0.0.1:0"))
        .unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// Sleeps `ms` milliseconds on the runtime, so that its tasks run meanwhile.
fn pause(rt: &tokio::runtime::Runtime, ms: u64) {
    rt.block_on(async { tokio::time::sleep(Duration::from_millis(ms)).await });
}

/// Waits until counter `c` reads `n`.
fn wait_count(what: &str, c: &AtomicU64, n: u64) {
    wait_for(what, || c.load(Ordering::SeqCst) == n);
}

fn sender(
    rt: &tokio::runtime::Runtime,
    j: &Journal<Rec>,
    addr: SocketAddr,
    epoch: u64,
) -> (Arc<SenderStatus>, tokio::task::JoinHandle<()>) {
    let status = Arc::new(SenderStatus::default());
    let task = rt.spawn(net::run_sender(
        j.stream(),
        addr,
        sender_options(epoch, None),
        status.clone(),
    ));
    (status, task)
}

/// Node `a` in `epoch`, with `key`: small batches, quick retries.
fn sender_options(epoch: u64, key: Option<&StreamKey>) -> SenderOptions {
    let mut o = SenderOptions::new("a", epoch);
    o.max_batch = 2048;
    o.retry = Duration::from_millis(20);
    o.key = key.cloned();
    o
}

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap()
}

/// How a [`Pair`]'s receiver builds its replica.
#[derive(Clone, Copy)]
enum Receiver {
    /// `Replica::new` on a lane of `b`: it cannot read `b` back.
    Bare,
    /// `Replica::open` on `b`: it reads its saved position and deletes what a snapshot lacks.
    Opened,
}

/// Journal `a` streamed to journal `b` on loopback: the runtime, both journals in temporary
/// directories, `a`'s two lanes, and a receiver for `b`; [`Pair::finish`] tears it all down.
struct Pair {
    rt: tokio::runtime::Runtime,
    da: tempfile::TempDir,
    db: tempfile::TempDir,
    segment_bytes: u64,
    /// `None` only inside [`Pair::reopen_a`].
    a: Option<Journal<Rec>>,
    /// `None` only between [`Pair::stop_receiver`] and [`Pair::start_receiver`].
    b: Option<Journal<Rec>>,
    lanes: Vec<Lane<Rec>>,
    addr: SocketAddr,
    rx: Arc<ReceiverStatus>,
    /// The receiver's stream key, and that of [`Pair::sender`]'s senders.
    key: Option<StreamKey>,
    /// Every task spawned for the pair, aborted by [`Pair::finish`].
    tasks: Vec<tokio::task::AbortHandle>,
}

impl Pair {
    fn new(segment_bytes: u64, kind: Receiver) -> Pair {
        Pair::keyed(segment_bytes, kind, None)
    }

    /// [`Pair::new`] with a receiver that has `key`.
    fn keyed(segment_bytes: u64, kind: Receiver, key: Option<StreamKey>) -> Pair {
        let rt = runtime();
        let (da, db) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (a, b) = (
            open(da.path(), segment_bytes),
            open(db.path(), segment_bytes),
        );
        let (l, addr) = listener(&rt);
        let replica = match kind {
            Receiver::Bare => Replica::new(b.lane(0)),
            Receiver::Opened => Replica::open(&b, 0).unwrap(),
        };
        let rx = Arc::new(ReceiverStatus::default());
        let rtask = rt.spawn(net::run_receiver(l, replica, rx.clone(), key.clone()));
        let lanes = vec![a.lane(0), a.lane(1)];
        Pair {
            rt,
            da,
            db,
            segment_bytes,
            a: Some(a),
            b: Some(b),
            lanes,
            addr,
            rx,
            key,
            tasks: vec![rtask.abort_handle()],
        }
    }

    /// Starts a sender of `a` with `epoch` and the receiver's key; the handle stops it early.
    fn sender(&mut self, epoch: u64) -> (Arc<SenderStatus>, tokio::task::AbortHandle) {
        self.sender_keyed(epoch, self.key.clone())
    }

    /// [`Pair::sender`] with `key`.
    fn sender_keyed(
        &mut self,
        epoch: u64,
        key: Option<StreamKey>,
    ) -> (Arc<SenderStatus>, tokio::task::AbortHandle) {
        let status = Arc::new(SenderStatus::default());
        let o = sender_options(epoch, key.as_ref());
        let task = self.rt.spawn(net::run_sender(
            self.a().stream(),
            self.addr,
            o,
            status.clone(),
        ));
        self.tasks.push(task.abort_handle());
        (status, task.abort_handle())
    }

    fn a(&self) -> &Journal<Rec> {
        self.a.as_ref().unwrap()
    }

    /// Shuts `a` down and opens it again: a new run of its journal, its stream from 1.
    fn reopen_a(&mut self) {
        self.lanes.clear();
        self.a.take().unwrap().shutdown().unwrap();
        let a = open(self.da.path(), self.segment_bytes);
        self.lanes = vec![a.lane(0), a.lane(1)];
        self.a = Some(a);
    }

    /// Starts a sender of `a` in `epoch` and waits until it is refused as older than the
    /// `have` the receiver follows; stops it and returns its status.
    fn refused_as_stale(&mut self, epoch: u64, have: u64) -> Arc<SenderStatus> {
        let (old, task) = self.sender(epoch);
        wait_for("the refusal", || old.last_error().is_some());
        task.abort();
        let e = old.last_error().unwrap();
        let (got, followed) = (format!("stale epoch {epoch}"), format!("epoch {have}"));
        assert!(e.contains(&got) && e.contains(&followed), "{e}");
        old
    }

    /// Appends as [`fill`] does over `a`'s lanes.
    fn fill(&mut self, base: u32, n: u32, v: u64) {
        fill(&mut self.lanes, base, n, v);
    }

    /// Appends records `0..n`, streams them with a sender of `epoch` until all are acked, and
    /// stops that sender.
    fn stream_then_stop(&mut self, n: u32, epoch: u64) {
        self.fill(0, n, 1);
        let (tx, task) = self.sender(epoch);
        wait_count("the first ack", &tx.acked, u64::from(n));
        task.abort();
    }

    /// `a`'s stream position.
    fn position(&self) -> u64 {
        self.a().stream().position()
    }

    /// Stops the receiver and shuts `b` down, as a peer that goes away.
    fn stop_receiver(&mut self) {
        self.tasks[0].abort();
        pause(&self.rt, 100);
        self.b.take().unwrap().shutdown().unwrap();
    }

    /// Reopens `b` and serves it on the same address from its saved position.
    fn start_receiver(&mut self) -> Arc<ReceiverStatus> {
        let b = open(self.db.path(), self.segment_bytes);
        let l = self
            .rt
            .block_on(tokio::net::TcpListener::bind(self.addr))
            .unwrap();
        let replica = Replica::open(&b, 0).unwrap();
        let rx = Arc::new(ReceiverStatus::default());
        let key = self.key.clone();
        let task = self
            .rt
            .spawn(net::run_receiver(l, replica, rx.clone(), key));
        self.tasks.push(task.abort_handle());
        self.b = Some(b);
        rx
    }

    /// Stops every task and both journals, asserts that `b` replays as `a` does, and returns
    /// that replay.
    fn finish(self) -> Vec<Rec> {
        let (a, b) = self.stop();
        assert_eq!(b, a, "b replays as a does");
        a
    }

    /// Stops every task and both journals, and returns what each replays.
    fn stop(self) -> (Vec<Rec>, Vec<Rec>) {
        for t in &self.tasks {
            t.abort();
        }
        self.rt.shutdown_timeout(Duration::from_secs(5));
        drop(self.lanes);
        self.a.unwrap().shutdown().unwrap();
        self.b.unwrap().shutdown().unwrap();
        (sorted(self.da.path()), sorted(self.db.path()))
    }
}

#[test]
fn a_journal_streamed_over_tcp_replays_the_same() {
    let mut p = Pair::new(8192, Receiver::Bare);
    let (tx, _) = p.sender(1);
    // The first contact is a snapshot (of nothing yet): every record then goes as a frame.
    wait_count("the first snapshot", &p.rx.snapshots, 1);
    for v in 1..=3 {
        p.fill(0, 1500, v);
    }
    let pos = p.position();
    assert_eq!(pos, 4500);
    wait_count("the receiver's ack", &tx.acked, pos);
    assert_eq!(p.rx.acked.load(Ordering::SeqCst), pos);
    assert_eq!(
        p.rx.frames.load(Ordering::SeqCst),
        pos,
        "each frame applied once"
    );
    assert_eq!(
        p.rx.snapshots.load(Ordering::SeqCst),
        1,
        "the first contact"
    );
    assert_eq!(p.finish().len(), 1350);
}

#[test]
fn a_killed_sender_resumes_from_the_last_ack_without_loss_or_duplicates() {
    let mut p = Pair::new(8192, Receiver::Bare);
    let (tx, first) = p.sender(7);
    wait_count("the first snapshot", &p.rx.snapshots, 1);
    // Kill it mid-stream, while records keep coming.
    for chunk in 0..10 {
        p.fill(chunk * 100, 100, 1);
        if chunk == 4 {
            wait_for("part of the stream", || {
                tx.acked.load(Ordering::SeqCst) >= 100
            });
            first.abort();
        }
    }
    let killed_at = tx.acked.load(Ordering::SeqCst);
    assert!(killed_at < 1000, "killed before the end");
    p.fill(1000, 1000, 1);
    let (tx2, _) = p.sender(7);
    let pos = p.position();
    wait_count("the resumed stream's ack", &tx2.acked, pos);
    assert!(tx2.acked.load(Ordering::SeqCst) > killed_at);
    assert_eq!(
        tx2.snapshots.load(Ordering::SeqCst),
        0,
        "resumed, not resynced"
    );
    assert_eq!(p.rx.snapshots.load(Ordering::SeqCst), 1);
    assert_eq!(
        p.rx.frames.load(Ordering::SeqCst),
        pos,
        "nothing applied twice or lost"
    );
    assert!(p.rx.sessions.load(Ordering::SeqCst) >= 2);
    p.finish();
}

#[test]
fn a_receiver_behind_a_compaction_gets_a_snapshot_then_the_tail() {
    // A replica that can read its own journal, so that it deletes what the snapshot lacks.
    let mut p = Pair::new(2048, Receiver::Opened);
    p.stream_then_stop(200, 3);
    // While it is away: updates, deletions, and a compaction of everything sealed.
    p.fill(0, 400, 2);
    // Keys the receiver holds live, deleted while it is away; the compaction then drops the
    // deletions, so the snapshot simply lacks the keys.
    for k in 0..50 {
        p.lanes[0].append(&tomb(k, 5));
    }
    assert!(p.lanes[0].wait_durable(p.lanes[0].last_ticket(), LONG));
    p.a().compact_blocking().unwrap();
    assert!(
        p.a().stream().oldest() > 201,
        "the receiver's next frame is gone"
    );
    p.fill(400, 50, 3);
    let (tx2, _) = p.sender(3);
    let pos = p.position();
    wait_count("the ack after the snapshot", &tx2.acked, pos);
    assert_eq!(tx2.snapshots.load(Ordering::SeqCst), 1);
    assert_eq!(p.rx.snapshots.load(Ordering::SeqCst), 2);
    // Keys 0..50 it held live, but for the five it had as tombstones already.
    assert_eq!(p.rx.deletions.load(Ordering::SeqCst), 45);
    p.finish();
}

#[test]
fn a_sender_with_a_stale_epoch_is_refused() {
    let mut p = Pair::new(8192, Receiver::Bare);
    p.stream_then_stop(20, 9);
    let old = p.refused_as_stale(8, 9);
    assert_eq!(old.sessions.load(Ordering::SeqCst), 0, "never streamed");
    assert!(p.rx.last_error().unwrap().contains("stale epoch 8"));
    assert_eq!(p.rx.epoch.load(Ordering::SeqCst), 9);
    p.finish();
}

#[test]
fn a_peer_that_stops_reading_never_holds_up_the_lanes() {
    let rt = runtime();
    let da = tempfile::tempdir().unwrap();
    let a = open(da.path(), 1 << 20);
    // Accepts, answers the greeting, then reads nothing more.
    let (l, addr) = listener(&rt);
    let stuck = rt.spawn(async move {
        let (mut s, _) = l.accept().await.unwrap();
        let _hello = net::read_msg(&mut s, None).await.unwrap();
        let p = Msg::Position {
            node: None,
            epoch: 0,
            run: 0,
            seq: 0,
            nonce: [0; NONCE_LEN],
            authenticated: false,
        };
        net::write_msg(&mut s, &p, None).await.unwrap();
        tokio::time::sleep(LONG).await;
        drop(s);
    });
    let (tx, stask) = sender(&rt, &a, addr, 1);
    let mut lanes = vec![a.lane(0), a.lane(1)];
    let big = |k: u32| rec(k, 1).padded(1000, 7);
    for round in 0..40u32 {
        let mut last = [None, None];
        for k in round * 500..(round + 1) * 500 {
            last[k as usize % 2] = Some(lanes[k as usize % 2].append(&big(k)));
        }
        for (l, t) in lanes.iter().zip(last) {
            assert!(l.wait_durable(t.unwrap(), Duration::from_secs(10)));
        }
    }
    let pos = a.stream().position();
    assert_eq!(pos, 20_000);
    assert!(
        tx.sent.load(Ordering::SeqCst) < pos,
        "the peer's socket filled up and only the sender waits"
    );
    assert_eq!(tx.acked.load(Ordering::SeqCst), 0);
    // And the sender gives the stuck peer up rather than wait on it for ever.
    wait_for("the sender to give up", || tx.last_error().is_some());
    let e = tx.last_error().unwrap();
    assert!(
        e.contains("read nothing") || e.contains("receiver silent"),
        "{e}"
    );
    stask.abort();
    stuck.abort();
    rt.shutdown_timeout(Duration::from_secs(5));
    drop(lanes);
    a.shutdown().unwrap();
}

#[test]
fn a_restarted_receiver_resumes_from_its_saved_position() {
    let mut p = Pair::new(8192, Receiver::Opened);
    let (tx, _) = p.sender(4);
    wait_count("the first snapshot", &p.rx.snapshots, 1);
    p.fill(0, 500, 1);
    wait_count("the ack", &tx.acked, 500);
    // Time for the position file to catch up (written at most every 50 ms).
    pause(&p.rt, 200);
    // The receiver goes away, journal and all, while the sender keeps going.
    p.stop_receiver();
    p.fill(500, 500, 1);
    let rx2 = p.start_receiver();
    let pos = p.position();
    wait_count("the ack after the restart", &rx2.acked, pos);
    assert_eq!(
        rx2.snapshots.load(Ordering::SeqCst),
        0,
        "resumed, not resynced"
    );
    assert_eq!(tx.snapshots.load(Ordering::SeqCst), 1);
    assert_eq!(
        rx2.frames.load(Ordering::SeqCst),
        500,
        "only the tail was sent"
    );
    p.finish();
}

/// A leader fenced and elected again without a restart streams the same journal run under
/// a higher epoch: the receiver continues that stream, with no snapshot.
#[test]
fn a_new_term_of_the_same_run_resumes_without_a_snapshot() {
    let mut p = Pair::new(8192, Receiver::Bare);
    let (tx, first) = p.sender(3);
    wait_count("the first snapshot", &p.rx.snapshots, 1);
    p.fill(0, 500, 1);
    wait_count("the first term's ack", &tx.acked, 500);
    first.abort();
    // Fenced, then leading again; its journal went on meanwhile.
    p.fill(500, 500, 1);
    let (tx2, second) = p.sender(4);
    let pos = p.position();
    wait_count("the new term's ack", &tx2.acked, pos);
    assert_eq!(
        tx2.snapshots.load(Ordering::SeqCst),
        0,
        "resumed, not resynced"
    );
    assert_eq!(p.rx.snapshots.load(Ordering::SeqCst), 1);
    assert_eq!(p.rx.frames.load(Ordering::SeqCst), pos, "every frame once");
    assert_eq!(p.rx.duplicates.load(Ordering::SeqCst), 0);
    second.abort();
    // The term it left is stale now.
    p.refused_as_stale(3, 4);
    assert_eq!(p.rx.epoch.load(Ordering::SeqCst), 4);
    p.finish();
}

/// The position file keeps the run: a receiver restarted between two terms of the same run
/// still resumes.
#[test]
fn a_restarted_receiver_resumes_a_new_term_of_the_run_it_saved() {
    let mut p = Pair::new(8192, Receiver::Opened);
    p.stream_then_stop(300, 3);
    // Time for the position file to catch up (written at most every 50 ms).
    pause(&p.rt, 200);
    p.stop_receiver();
    p.fill(300, 300, 1);
    let rx2 = p.start_receiver();
    let (tx2, _) = p.sender(5);
    let pos = p.position();
    wait_count("the new term's ack", &tx2.acked, pos);
    assert_eq!(tx2.snapshots.load(Ordering::SeqCst), 0, "resumed");
    assert_eq!(rx2.snapshots.load(Ordering::SeqCst), 0);
    assert_eq!(rx2.frames.load(Ordering::SeqCst), 300, "only the tail");
    assert_eq!(rx2.epoch.load(Ordering::SeqCst), 5);
    p.finish();
}

/// A reopened journal numbers its stream from 1 again: a receiver of its last run takes a
/// snapshot, even where its `seq + 1` is a sequence of the new run.
#[test]
fn a_reopened_journal_under_a_higher_epoch_sends_a_snapshot() {
    let mut p = Pair::new(8192, Receiver::Bare);
    p.stream_then_stop(100, 3);
    let run = p.a().stream().run();
    p.reopen_a();
    assert_ne!(p.a().stream().run(), run, "a new run");
    p.fill(1000, 300, 2);
    assert_eq!(p.position(), 300, "past the receiver's 100");
    let (tx2, _) = p.sender(4);
    wait_count("the ack after the snapshot", &tx2.acked, 300);
    assert_eq!(tx2.snapshots.load(Ordering::SeqCst), 1);
    assert_eq!(p.rx.snapshots.load(Ordering::SeqCst), 2);
    assert_eq!(p.finish().len(), 360);
}

/// A position file of version 1 (no run) is still a position (its epoch is followed), but
/// the run is unknown: the next session takes a snapshot, even in the same epoch.
#[test]
fn a_position_file_of_version_1_leads_to_a_snapshot() {
    let mut p = Pair::new(8192, Receiver::Opened);
    p.stream_then_stop(100, 3);
    pause(&p.rt, 200);
    p.stop_receiver();
    // Written again as the last version did: magic, version, epoch, seq, node, crc32c.
    let path = p.db.path().join(lessor_journal::stream::POSITION_FILE);
    let v2 = std::fs::read(&path).unwrap();
    assert_eq!(v2[8..12], 2u32.to_le_bytes());
    let mut v1 = [
        &v2[..8],
        &1u32.to_le_bytes(),
        &v2[12..20],
        &v2[28..v2.len() - 4],
    ]
    .concat();
    v1.extend_from_slice(&crc32c::crc32c(&v1).to_le_bytes());
    std::fs::write(&path, &v1).unwrap();
    let rx2 = p.start_receiver();
    p.refused_as_stale(2, 3);
    let (tx2, _) = p.sender(3);
    wait_count("the ack after the snapshot", &tx2.acked, 100);
    assert_eq!(tx2.snapshots.load(Ordering::SeqCst), 1, "the run unknown");
    assert_eq!(rx2.snapshots.load(Ordering::SeqCst), 1);
    p.finish();
}

/// After failed syncs and short writes the writer rewrites the unsynced bytes into a new
/// segment: the stream must hold each record exactly once, in order, from wherever it landed.
#[test]
fn the_stream_survives_failed_syncs_and_short_writes() {
    use crate::common::{durable_records, opts};
    use lessor_journal::testing::{FaultyFs, SyncFault};

    let fs = FaultyFs::new();
    let (j, _, _) = crate::common::open(&fs, opts(1));
    let src = j.stream();
    let mut lane = j.lane(0);
    let mut all = durable_records(&mut lane, 0..20);
    fs.fail_syncs(SyncFault::Times(1), Some(".log"));
    all.extend(durable_records(&mut lane, 20..40));
    assert_eq!(fs.failed_syncs(), 1);
    fs.short_next_write(5, Some(".log"));
    all.extend(durable_records(&mut lane, 40..60));
    // A full disk: nothing is durable until space is freed, then all of it.
    fs.set_space_limit(Some(fs.used_bytes() + 10));
    let t = crate::common::append_all(&mut lane, &mut all, (60..80).map(|k| rec(k, 1)));
    assert!(!lane.wait_durable(t, Duration::from_millis(200)));
    assert!(src.position() < 80);
    fs.set_space_limit(None);
    assert!(lane.wait_durable(t, LONG));
    assert_eq!(src.position(), 80);
    let mut f = src.follow(1).unwrap();
    let mut got = Vec::new();
    while let Some(b) = f.next_batch(100, Duration::ZERO).unwrap() {
        assert_eq!(b.first, got.len() as u64 + 1);
        got.extend(decode_frames(&b.frames));
    }
    assert_eq!(got, all, "every record once, in the order synced");
    // A follower that starts in the middle finds its place in whichever segment it is.
    for from in [1, 19, 20, 21, 39, 40, 41, 61, 80] {
        let mut g = src.follow(from).unwrap();
        let b = g.next_batch(1, Duration::ZERO).unwrap().unwrap();
        assert_eq!(
            decode_frames(&b.frames)[0],
            all[from as usize - 1],
            "from {from}"
        );
    }
    drop(lane);
    j.shutdown().unwrap();
}

/// A sender that greets and then says nothing (as one that lost power leaves its connection)
/// does not keep the receiver from the next sender.
#[test]
fn a_silent_sender_is_dropped_and_the_next_one_served() {
    let mut p = Pair::new(8192, Receiver::Bare);
    let addr = p.addr;
    let silent = p.rt.block_on(async {
        let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
        let hello = Msg::Hello {
            node: "x".into(),
            epoch: 1,
            run: 1,
            nonce: [0; NONCE_LEN],
            authenticated: false,
        };
        net::write_msg(&mut s, &hello, None).await.unwrap();
        let p = net::read_msg(&mut s, None).await.unwrap();
        assert!(matches!(p, Some(Msg::Position { .. })));
        s
    });
    let started = Instant::now();
    p.fill(0, 100, 1);
    let (tx, _) = p.sender(2);
    wait_count("the live sender's ack", &tx.acked, 100);
    assert!(
        started.elapsed() >= net::IDLE_TIMEOUT,
        "served after the silent one"
    );
    assert!(
        p.rx.last_error().unwrap().contains("sender silent"),
        "{:?}",
        p.rx.last_error()
    );
    drop(silent);
    p.finish();
}

/// A stream key: 32 bytes of `b`.
fn key(b: u8) -> StreamKey {
    StreamKey::new(&[b; 32]).unwrap()
}

#[test]
fn a_stream_with_the_same_key_on_both_ends_streams_and_acks() {
    let mut p = Pair::keyed(8192, Receiver::Bare, Some(key(1)));
    let (tx, first) = p.sender(3);
    wait_count("the first snapshot", &p.rx.snapshots, 1);
    p.fill(0, 1000, 1);
    wait_for("part of the stream", || {
        tx.acked.load(Ordering::SeqCst) >= 100
    });
    // A new session (new nonces, new session key) resumes where the last one was acked.
    first.abort();
    p.fill(1000, 1000, 1);
    let (tx2, _) = p.sender(3);
    let pos = p.position();
    wait_count("the resumed stream's ack", &tx2.acked, pos);
    assert_eq!(tx2.snapshots.load(Ordering::SeqCst), 0, "resumed");
    assert_eq!(p.rx.frames.load(Ordering::SeqCst), pos, "each frame once");
    assert_eq!(tx2.last_error(), None);
    p.finish();
}

#[test]
fn a_key_on_one_end_only_or_different_keys_are_refused_on_both() {
    let cases = [
        (
            Some(key(1)),
            None,
            "the partner has no stream key",
            "this server has no stream key",
        ),
        (
            None,
            Some(key(1)),
            "this server has no stream key",
            "the partner has no stream key",
        ),
        (
            Some(key(1)),
            Some(key(2)),
            "stream key mismatch or tampered message",
            "refused by the peer: stream key mismatch or tampered message",
        ),
    ];
    for (sender_key, receiver_key, sender_says, receiver_says) in cases {
        let mut p = Pair::keyed(8192, Receiver::Bare, receiver_key);
        p.fill(0, 10, 1);
        let (tx, _) = p.sender_keyed(1, sender_key);
        wait_for("the refusal", || {
            tx.last_error().is_some() && p.rx.last_error().is_some()
        });
        let (ours, theirs) = (tx.last_error().unwrap(), p.rx.last_error().unwrap());
        assert!(ours.contains(sender_says), "sender: {ours}");
        assert!(theirs.contains(receiver_says), "receiver: {theirs}");
        assert_eq!(tx.sessions.load(Ordering::SeqCst), 0, "never streamed");
        let (a, b) = p.stop();
        assert_eq!((a.len(), b.len()), (9, 0), "nothing reached b");
    }
}

/// Connects to the receiver at `addr` as sender `a` in `epoch` with `key`, and greets it:
/// both halves of the connection and its taggers (what it sends, what it receives).
async fn connect_as_sender(
    addr: SocketAddr,
    epoch: u64,
    key: &StreamKey,
) -> (
    tokio::net::tcp::OwnedReadHalf,
    tokio::net::tcp::OwnedWriteHalf,
    wire::Tagger,
    wire::Tagger,
) {
    let s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let (mut rd, mut wr) = s.into_split();
    let o = sender_options(epoch, Some(key));
    let (_, send, recv) = net::greet(&mut rd, &mut wr, &o, 1).await.unwrap();
    (rd, wr, send.unwrap(), recv.unwrap())
}

/// `m`, tagged by `tagger`.
fn sealed(m: &Msg, tagger: &mut wire::Tagger) -> Vec<u8> {
    let mut out = Vec::new();
    wire::encode(m, &mut out, Some(tagger));
    out
}

/// Reads until the peer refuses (skipping its other messages), and returns why.
async fn refusal<R: tokio::io::AsyncRead + Unpin>(rd: &mut R, recv: &mut wire::Tagger) -> String {
    loop {
        match net::read_msg(rd, Some(&mut *recv)).await.unwrap() {
            Some(Msg::Refused { reason }) => return reason,
            Some(_) => {}
            None => panic!("closed without a refusal"),
        }
    }
}

/// An empty snapshot in `epoch`, as a sender begins.
fn empty_snapshot(epoch: u64) -> [Msg; 2] {
    [
        Msg::SnapshotBegin { epoch, position: 0 },
        Msg::SnapshotEnd { records: 0 },
    ]
}

#[test]
fn a_flipped_byte_in_a_frames_body_is_refused_and_nothing_applied() {
    use tokio::io::AsyncWriteExt;

    let p = Pair::keyed(8192, Receiver::Bare, Some(key(1)));
    let frames = |first: u32| Msg::Frames {
        epoch: 4,
        first: u64::from(first),
        count: 1,
        frames: frame(&rec(first, 1)),
    };
    for flip in [true, false] {
        let reason = p.rt.block_on(async {
            let (mut rd, mut wr, mut send, mut recv) = connect_as_sender(p.addr, 4, &key(1)).await;
            for m in empty_snapshot(4) {
                wr.write_all(&sealed(&m, &mut send)).await.unwrap();
            }
            let mut out = sealed(&frames(1), &mut send);
            if flip {
                // The frame's last payload byte, just before the tag.
                let at = out.len() - wire::TAG_LEN - 1;
                out[at] ^= 0x20;
            }
            wr.write_all(&out).await.unwrap();
            if !flip {
                return None;
            }
            Some(refusal(&mut rd, &mut recv).await)
        });
        if let Some(reason) = reason {
            assert!(
                reason.contains("frames") && reason.contains("tag does not verify"),
                "{reason}"
            );
            wait_for("the receiver's error", || p.rx.last_error().is_some());
            assert_eq!(p.rx.frames.load(Ordering::SeqCst), 0, "nothing applied");
        }
    }
    // Unchanged, the same frames are taken.
    wait_count("the frame unchanged", &p.rx.frames, 1);
    let (_, b) = p.stop();
    assert_eq!(b, vec![rec(1, 1)]);
}

#[test]
fn a_message_replayed_from_another_session_is_refused() {
    use tokio::io::AsyncWriteExt;

    let p = Pair::keyed(8192, Receiver::Bare, Some(key(1)));
    let first = Msg::Frames {
        epoch: 4,
        first: 1,
        count: 1,
        frames: frame(&rec(1, 1)),
    };
    let recorded = p.rt.block_on(async {
        let (_rd, mut wr, mut send, _) = connect_as_sender(p.addr, 4, &key(1)).await;
        let mut sent = Vec::new();
        for m in empty_snapshot(4).iter().chain([&first]) {
            let out = sealed(m, &mut send);
            wr.write_all(&out).await.unwrap();
            sent.push(out);
        }
        sent
    });
    wait_count("the first session's frame", &p.rx.frames, 1);
    // The next session, its greeting genuine, then the first session's frames again.
    let reason = p.rt.block_on(async {
        let (mut rd, mut wr, _, mut recv) = connect_as_sender(p.addr, 4, &key(1)).await;
        wr.write_all(&recorded[2]).await.unwrap();
        refusal(&mut rd, &mut recv).await
    });
    assert_eq!(reason, "stream key mismatch or tampered message");
    let stats = (
        p.rx.frames.load(Ordering::SeqCst),
        p.rx.duplicates.load(Ordering::SeqCst),
        p.rx.snapshots.load(Ordering::SeqCst),
    );
    assert_eq!(stats, (1, 0, 1), "not even taken as a duplicate");
    p.stop();
}

#[test]
fn an_ack_forged_without_the_key_is_refused_by_the_sender() {
    use tokio::io::AsyncWriteExt;

    let (_da, a) = temp_journal(1 << 20);
    let gate = a.peer_gate(2);
    let rt = runtime();
    let (l, addr) = listener(&rt);
    let status = Arc::new(SenderStatus::default());
    let mut o = sender_options(6, Some(&key(1)));
    o.gate = Some(gate.clone());
    let stask = rt.spawn(net::run_sender(a.stream(), addr, o, status.clone()));
    let forged = Msg::Ack {
        epoch: 6,
        seq: 1000,
    };
    // A receiver with the key greets the sender genuinely; then come, in a session each, an
    // untagged ack, one tagged under another key, and a genuine one.
    for (i, want) in ["an ack without a tag", "replayed an ack", ""]
        .into_iter()
        .enumerate()
    {
        rt.block_on(async {
            let (s, _) = l.accept().await.unwrap();
            let (mut rd, mut wr) = s.into_split();
            let Some(Msg::Hello {
                node,
                epoch,
                run,
                nonce,
                ..
            }) = net::read_msg(&mut rd, None).await.unwrap()
            else {
                panic!("no greeting")
            };
            let theirs = [9; NONCE_LEN];
            let end = wire::End::Receiver;
            let greeting = (node.as_str(), epoch, run);
            let (mut send, mut recv) = wire::session(&key(1), greeting, [&nonce, &theirs], end);
            let position = Msg::Position {
                node: None,
                epoch: 0,
                run: 0,
                seq: 0,
                nonce: theirs,
                authenticated: true,
            };
            wr.write_all(&sealed(&position, &mut send)).await.unwrap();
            while !matches!(
                net::read_msg(&mut rd, Some(&mut recv)).await.unwrap(),
                Some(Msg::SnapshotEnd { .. })
            ) {}
            let out = match i {
                0 => {
                    let mut out = Vec::new();
                    wire::encode(&forged, &mut out, None);
                    out
                }
                1 => {
                    let mut other = wire::session(&key(2), greeting, [&nonce, &theirs], end).0;
                    sealed(&position, &mut other);
                    sealed(&forged, &mut other)
                }
                _ => sealed(&Msg::Ack { epoch: 6, seq: 0 }, &mut send),
            };
            wr.write_all(&out).await.unwrap();
            if want.is_empty() {
                return;
            }
            let reason = refusal(&mut rd, &mut recv).await;
            assert!(reason.contains(want), "{reason}");
        });
        if !want.is_empty() {
            wait_for("the sender's error", || {
                status.last_error().is_some_and(|e| e.contains(want))
            });
            assert_eq!(status.acks.load(Ordering::SeqCst), 0, "no ack taken");
            assert_eq!(gate.acked(), 0, "nothing released");
        }
    }
    wait_count("the genuine ack", &status.acks, 1);
    stask.abort();
    rt.shutdown_timeout(Duration::from_secs(5));
    a.shutdown().unwrap();
}

mod property {
    use std::collections::BTreeMap;

    use lessor_journal::testing::FaultyFs;
    use proptest::prelude::*;
    use proptest::test_runner::Config;

    use super::*;
    use crate::common::{model, opts};

    #[derive(Clone, Debug)]
    enum Op {
        /// Appends records of keys `key..key + n` and waits until they are durable.
        Append {
            key: u32,
            n: u32,
            live: bool,
        },
        Compact,
        /// The follower reads up to so many bytes.
        Read {
            max: usize,
        },
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (0..24u32, 1..6u32, prop::bool::weighted(0.8))
                .prop_map(|(key, n, live)| Op::Append { key, n, live }),
            1 => Just(Op::Compact),
            4 => (1..400usize).prop_map(|max| Op::Read { max }),
        ]
    }

    proptest! {
        #![proptest_config(Config { cases: 48, ..Config::default() })]

        /// Whatever the appends, compactions and read sizes, a follower that takes a snapshot
        /// whenever it is told to sees, in order, exactly the records synced after each
        /// snapshot's position, and what it gathers folds to what the journal replays (but for
        /// deletions a compaction hid from it).
        #[test]
        fn a_follower_with_snapshots_ends_where_the_journal_is(ops in prop::collection::vec(op(), 1..60)) {
            let fs = FaultyFs::new();
            let mut o = opts(1);
            o.segment_bytes = 256;
            let (j, _, _) = crate::common::open(&fs, o);
            let src = j.stream();
            let mut lane = j.lane(0);
            let mut synced: Vec<Rec> = Vec::new();
            let mut version = 0u64;
            let mut seen: Vec<Rec> = Vec::new();
            let mut f = src.follow(1).unwrap();
            let read = |f: &mut lessor_journal::stream::Follower, seen: &mut Vec<Rec>, synced: &[Rec], max: usize| {
                match f.next_batch(max, Duration::ZERO) {
                    Ok(Some(b)) => {
                        let recs = decode_frames(&b.frames);
                        let at = b.first as usize - 1;
                        prop_assert_eq!(&recs[..], &synced[at..at + recs.len()]);
                        seen.extend(recs);
                    }
                    Ok(None) => prop_assert_eq!(f.next_seq() as usize, synced.len() + 1),
                    Err(Error::Compacted { .. }) => {
                        let position = src.position();
                        src.snapshot_each(|r| {
                            seen.push(r);
                            Ok(())
                        })
                        .unwrap();
                        *f = src.follow(position + 1).unwrap();
                    }
                    Err(e) => prop_assert!(false, "{e}"),
                }
                Ok(())
            };
            for op in ops {
                match op {
                    Op::Append { key, n, live } => {
                        for k in key..key + n {
                            version += 1;
                            let r = if live { rec(k, version) } else { tomb(k, version) };
                            lane.append(&r);
                            synced.push(r);
                        }
                        prop_assert!(lane.wait_durable(lane.last_ticket(), LONG));
                    }
                    Op::Compact => {
                        j.compact_blocking().unwrap();
                    }
                    Op::Read { max } => read(&mut f, &mut seen, &synced, max)?,
                }
            }
            // Catch up, then compare folds.
            for _ in 0..10_000 {
                if f.next_seq() as usize == synced.len() + 1 {
                    break;
                }
                read(&mut f, &mut seen, &synced, 1 << 20)?;
            }
            prop_assert_eq!(f.next_seq() as usize, synced.len() + 1);
            let folded: BTreeMap<u32, Rec> = model(&seen);
            drop(lane);
            j.shutdown().unwrap();
            let live = crate::common::live(&fs);
            for (k, r) in &live {
                prop_assert_eq!(folded.get(k), Some(r), "key {}", k);
            }
            // A key deleted while the follower was behind and compacted away before it read
            // the deletion is not in the snapshot, so a bare follower keeps the older record
            // (a replica deletes such keys: docs/JOURNAL.md, "The replica"). Nothing else
            // may differ.
            let newest = |k: u32| synced.iter().rev().find(|r| r.key == k).unwrap();
            for (k, r) in &folded {
                if !live.contains_key(k) {
                    let gone = newest(*k);
                    prop_assert!(!gone.live && gone.version > r.version, "key {} {:?}", k, r);
                }
            }
        }
    }
}

#[test]
fn a_reopened_replica_still_refuses_the_epochs_it_has_passed() {
    let (d, j) = temp_journal(8192);
    let mut r = Replica::open(&j, 0).unwrap();
    assert_eq!(r.position(), lessor_journal::stream::Position::default());
    r.snapshot_begin("a", 1, 9, 0).unwrap();
    r.snapshot_end(0).unwrap();
    let frames: Vec<u8> = (0..3).flat_map(|k| frame(&rec(k, 1))).collect();
    r.apply("a", 9, 1, 3, &frames).unwrap();
    assert_eq!(r.wait_durable(LONG), 3);
    r.save_position();
    drop(r);
    j.shutdown().unwrap();

    let j = open(d.path(), 8192);
    let mut r = Replica::open(&j, 0).unwrap();
    let p = r.position();
    assert_eq!((p.node.as_deref(), p.epoch, p.seq), (Some("a"), 9, 3));
    let e = r.check_sender("a", 8).unwrap_err();
    assert!(
        matches!(
            e,
            StreamError::StaleEpoch {
                have: 9,
                got: 8,
                ..
            }
        ),
        "{e}"
    );
    // It goes on where it stopped.
    let more = frame(&rec(3, 1));
    assert!(matches!(
        r.apply("a", 9, 5, 1, &more),
        Err(StreamError::Gap {
            expected: 4,
            got: 5
        })
    ));
    r.apply("a", 9, 4, 1, &more).unwrap();
    assert_eq!(r.wait_durable(LONG), 4);
    // A damaged position file is no position: the next sender starts with a snapshot.
    r.save_position();
    drop(r);
    j.shutdown().unwrap();
    let pos = d.path().join(lessor_journal::stream::POSITION_FILE);
    let mut b = std::fs::read(&pos).unwrap();
    b[10] ^= 1;
    std::fs::write(&pos, &b).unwrap();
    let j = open(d.path(), 8192);
    let mut r = Replica::open(&j, 0).unwrap();
    assert_eq!(r.position(), lessor_journal::stream::Position::default());
    drop(r);
    j.shutdown().unwrap();
    assert_eq!(sorted(d.path()).len(), 4);
}

#[test]
fn a_gated_lane_becomes_durable_only_once_the_partner_acks_its_frames() {
    let (_d, j) = temp_journal(1 << 20);
    // Lane 0 waits for the partner; lane 1 (a replica's) never does.
    let gate = j.peer_gate(1);
    let (mut a, mut b) = (j.lane(0), j.lane(1));
    let open = a.append(&rec(1, 1));
    assert!(a.wait_durable(open, LONG), "an open gate waits for nobody");

    gate.wait_for_peer(true);
    let first = a.append(&rec(2, 1));
    let theirs = b.append(&rec(3, 1));
    assert!(
        b.wait_durable(theirs, LONG),
        "an ungated lane does not wait"
    );
    let source = j.stream();
    wait_for("the frame of key 2 to sync", || source.position() >= 2);
    assert!(
        !a.wait_durable(first, Duration::from_millis(300)),
        "synced but not acknowledged: not durable"
    );
    let at = gate.oldest_waiting().expect("a sync waits for the partner");
    gate.ack(at - 1);
    assert!(
        !a.wait_durable(first, Duration::from_millis(100)),
        "an ack below it"
    );
    gate.ack(at);
    assert!(a.wait_durable(first, LONG), "acknowledged: durable");
    assert_eq!(gate.acked(), at);
    assert_eq!(gate.oldest_waiting(), None);

    // Far more syncs than the ring holds: the last ack releases them all.
    let mut last = first;
    for k in 0..600 {
        last = a.append(&rec(100 + k, 1));
        wait_for("a sync", || source.position() >= u64::from(k) + 4);
    }
    assert!(a.durable() < last, "nothing released without acks");
    gate.ack(source.position());
    assert!(a.wait_durable(last, LONG));

    // The partner is gone: going on alone releases what waits.
    let alone = a.append(&rec(9, 1));
    wait_for("its sync", || gate.oldest_waiting().is_some());
    gate.wait_for_peer(false);
    assert!(a.wait_durable(alone, Duration::ZERO));
    let after = a.append(&rec(10, 1));
    assert!(a.wait_durable(after, LONG), "alone, nothing waits");
}

#[test]
fn a_gate_with_slack_releases_a_sync_once_the_ack_is_that_close() {
    let (_d, j) = temp_journal(1 << 20);
    let gate = j.peer_gate(1);
    gate.set_slack(2);
    gate.wait_for_peer(true);
    let mut a = j.lane(0);
    let source = j.stream();
    // Unacknowledged, the first two syncs are within the slack; the third is not.
    let mut tickets = Vec::new();
    for k in 1..=3u32 {
        tickets.push(a.append(&rec(k, 1)));
        wait_for("its sync", || source.position() >= u64::from(k));
    }
    assert!(a.wait_durable(tickets[1], LONG), "2 behind: released");
    assert!(
        !a.wait_durable(tickets[2], Duration::from_millis(300)),
        "3 behind the partner: held"
    );
    gate.ack(1);
    assert!(a.wait_durable(tickets[2], LONG), "2 behind again: released");
    // A smaller slack holds what comes next until the ack is that close.
    gate.set_slack(0);
    let next = a.append(&rec(4, 1));
    wait_for("its sync", || source.position() >= 4);
    assert!(!a.wait_durable(next, Duration::from_millis(300)));
    gate.ack(4);
    assert!(a.wait_durable(next, LONG));
}
