//! The durable stream over TCP (tokio): a sender that pushes a journal's frames to a peer
//! and a receiver that applies them to a [`Replica`] and acknowledges what it has synced.
//!
//! One connection per stream, opened by the sender. The sender greets (`Hello`: node,
//! epoch, journal run), the receiver answers with the [`Position`] it holds durable, and the
//! sender goes on from there: from `seq + 1` if that is its own run (under this epoch or an
//! older one: a new term of the same leader resumes) and still in its files, else with a
//! snapshot first. Reading the journal runs on tokio's blocking pool, never on a journal
//! thread. A broken connection is retried by the sender, which resumes from the receiver's
//! position: what was sent and not acknowledged is sent again, and the replica skips what it
//! had already applied.
//!
//! With a [`StreamKey`] on both ends every message after the greeting is tagged
//! ([`wire`]'s module docs); a key on one end only, or a tag that does not verify, ends the
//! session with a [`Refused`](Msg::Refused) and an [`AuthError`](wire::AuthError) on both.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::replica::POSITION_EVERY;
use super::wire::{self, End, Msg, Nonce, StreamKey, Tagger};
use super::{Position, Replica, Source, StreamError};
use crate::Record;

/// How long a peer may take to greet or answer a greeting.
const HANDSHAKE: Duration = Duration::from_secs(10);
/// A sender that has sent nothing for this long sends a `Ping`.
const PING_EVERY: Duration = Duration::from_secs(1);
/// A peer silent for this long (no frames, pings or acks) is taken for dead and the session
/// ends: a sender that lost power leaves no FIN, and the receiver must be free for the next.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(5);

/// Aborts a task when dropped: a session's helper task ends with the session, also when the
/// session's own task is aborted.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Reads one message, checked by `tagger` on an authenticated connection; `Ok(None)` at a
/// clean end of the connection (between messages).
pub async fn read_msg<S: AsyncRead + Unpin>(
    s: &mut S,
    tagger: Option<&mut Tagger>,
) -> Result<Option<Msg>, StreamError> {
    let Some((h, rest)) = read_raw(s).await? else {
        return Ok(None);
    };
    Ok(Some(wire::decode(&h, &rest, tagger)?))
}

/// Reads one message's header and the rest (body and trailer) undecoded; `Ok(None)` at a
/// clean end of the connection.
pub async fn read_raw<S: AsyncRead + Unpin>(
    s: &mut S,
) -> Result<Option<([u8; wire::HEADER_LEN], Vec<u8>)>, StreamError> {
    let mut h = [0u8; wire::HEADER_LEN];
    match s.read_exact(&mut h[..1]).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    s.read_exact(&mut h[1..]).await?;
    let mut rest = vec![0u8; wire::decode_header(&h)?.rest()];
    s.read_exact(&mut rest).await?;
    Ok(Some((h, rest)))
}

/// Writes one message, tagged by `tagger` on an authenticated connection; a peer that takes
/// none of it for [`IDLE_TIMEOUT`] ends the session.
pub async fn write_msg<S: AsyncWrite + Unpin>(
    s: &mut S,
    m: &Msg,
    tagger: Option<&mut Tagger>,
) -> Result<(), StreamError> {
    let mut out = Vec::new();
    wire::encode(m, &mut out, tagger);
    match tokio::time::timeout(IDLE_TIMEOUT, s.write_all(&out)).await {
        Ok(r) => Ok(r?),
        Err(_) => Err(StreamError::Protocol(format!(
            "the peer read nothing for {} s",
            IDLE_TIMEOUT.as_secs()
        ))),
    }
}

/// Who streams and how.
#[derive(Clone, Debug)]
pub struct SenderOptions {
    /// This node's name (1 to 255 bytes).
    pub node: String,
    /// Its fencing epoch.
    pub epoch: u64,
    /// Frame bytes per message, at most [`wire::MAX_BATCH`].
    pub max_batch: usize,
    /// The pause before reconnecting after a failure.
    pub retry: Duration,
    /// A gate the peer's acks are handed to as they arrive (a synchronous partner).
    pub gate: Option<super::PeerGate>,
    /// The pre-shared stream key; the receiver must have the same, or none if this is none.
    pub key: Option<StreamKey>,
}

impl SenderOptions {
    /// Defaults for `node` in `epoch`: 256 KiB batches, 200 ms between attempts.
    pub fn new(node: impl Into<String>, epoch: u64) -> Self {
        SenderOptions {
            node: node.into(),
            epoch,
            max_batch: 256 << 10,
            retry: Duration::from_millis(200),
            gate: None,
            key: None,
        }
    }
}

/// What a sender has done, readable while it runs.
#[derive(Debug, Default)]
pub struct SenderStatus {
    /// The last sequence the peer acknowledged as synced.
    pub acked: AtomicU64,
    /// The last sequence sent.
    pub sent: AtomicU64,
    /// Whether a session is up.
    pub connected: AtomicBool,
    /// Sessions started.
    pub sessions: AtomicU64,
    /// Snapshots sent.
    pub snapshots: AtomicU64,
    /// Acks received, of every session (a session that has had one has seen the receiver
    /// take in its snapshot, if it sent one).
    pub acks: Arc<AtomicU64>,
    /// Why the last session ended.
    pub last_error: Mutex<Option<String>>,
}

impl SenderStatus {
    fn set_error(&self, e: &StreamError) {
        *self.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
    }

    /// Why the last session ended, if one did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Streams `source` to the receiver at `addr` until the task is dropped or aborted,
/// reconnecting after each failure (the reason is in [`SenderStatus::last_error`]).
pub async fn run_sender<R: Record>(
    source: Source<R>,
    addr: SocketAddr,
    opts: SenderOptions,
    status: Arc<SenderStatus>,
) {
    loop {
        let res = send_session(&source, addr, &opts, &status).await;
        status.connected.store(false, Ordering::SeqCst);
        if let Err(e) = res {
            tracing::warn!(peer = %addr, error = %e, "journal stream session ended");
            status.set_error(&e);
        }
        tokio::time::sleep(opts.retry).await;
    }
}

/// One connection: greeting, snapshot if needed, then the tail until something fails.
pub async fn send_session<R: Record>(
    source: &Source<R>,
    addr: SocketAddr,
    opts: &SenderOptions,
    status: &SenderStatus,
) -> Result<(), StreamError> {
    let s = TcpStream::connect(addr).await?;
    s.set_nodelay(true)?;
    let (mut rd, mut wr) = s.into_split();
    let run = source.run();
    let (pos, mut send, mut recv) = greet(&mut rd, &mut wr, opts, run).await?;
    status.sessions.fetch_add(1, Ordering::Relaxed);
    status.connected.store(true, Ordering::SeqCst);
    // Sequences count per run, so any epoch of this run up to ours goes on from `seq + 1`.
    let ours = pos.node.as_deref() == Some(opts.node.as_str())
        && pos.run == run
        && pos.epoch <= opts.epoch;
    let start = if ours { pos.seq } else { 0 };
    status.acked.store(start, Ordering::SeqCst);
    let resume = ours.then(|| source.follow(pos.seq + 1).ok()).flatten();
    let mut follower = match resume {
        Some(f) => f,
        None => {
            let position = source.position();
            send_snapshot(&mut wr, send.as_mut(), source, opts, position).await?;
            status.snapshots.fetch_add(1, Ordering::Relaxed);
            source.follow(position + 1)?
        }
    };

    let max = opts.max_batch.clamp(1, wire::MAX_BATCH);
    let epoch = opts.epoch;
    // When the receiver was last heard from, in milliseconds since `base`.
    let base = Instant::now();
    let heard = Arc::new(AtomicU64::new(0));
    let mut last_sent = Instant::now();
    let acks = {
        let status_acked = Arc::new(AtomicU64::new(start));
        let a = status_acked.clone();
        let heard = heard.clone();
        let gate = opts.gate.clone();
        let acks = status.acks.clone();
        let task = tokio::spawn(async move {
            loop {
                match read_msg(&mut rd, recv.as_mut()).await? {
                    Some(Msg::Ack { epoch: e, seq }) if e == epoch => {
                        a.fetch_max(seq, Ordering::SeqCst);
                        acks.fetch_add(1, Ordering::SeqCst);
                        if let Some(g) = &gate {
                            g.ack(seq);
                        }
                        heard.store(millis(base), Ordering::SeqCst);
                    }
                    Some(Msg::Refused { reason }) => return Err(StreamError::Refused(reason)),
                    Some(m) => {
                        return Err(StreamError::Protocol(format!(
                            "expected an ack, got {}",
                            m.name()
                        )));
                    }
                    None => return Err(StreamError::Protocol("peer closed the stream".into())),
                }
            }
        });
        (task, status_acked)
    };
    let (task, acked) = acks;
    let mut task = AbortOnDrop(task);
    let res = loop {
        status
            .acked
            .store(acked.load(Ordering::SeqCst), Ordering::SeqCst);
        if task.0.is_finished() {
            break match (&mut task.0).await {
                Ok(Err(e)) => Err(e),
                Ok(Ok(())) => Ok(()),
                Err(e) => Err(StreamError::Protocol(format!("ack task: {e}"))),
            };
        }
        let (f, next) = tokio::task::spawn_blocking(move || {
            let r = follower.next_batch(max, Duration::from_millis(100));
            (follower, r)
        })
        .await
        .map_err(|e| StreamError::Protocol(format!("stream reader task: {e}")))?;
        follower = f;
        let silent = millis(base).saturating_sub(heard.load(Ordering::SeqCst));
        if silent > millis_of(IDLE_TIMEOUT) {
            break Err(StreamError::Protocol(format!(
                "receiver silent for {silent} ms"
            )));
        }
        let batch = match next {
            Ok(Some(b)) => b,
            Ok(None) => {
                if last_sent.elapsed() >= PING_EVERY {
                    let ping = Msg::Ping {
                        epoch,
                        position: source.position(),
                    };
                    if let Err(e) = write_msg(&mut wr, &ping, send.as_mut()).await {
                        break Err(e);
                    }
                    last_sent = Instant::now();
                }
                continue;
            }
            Err(e) => break Err(e.into()),
        };
        let last = batch.first + batch.count - 1;
        let m = Msg::Frames {
            epoch,
            first: batch.first,
            count: u32::try_from(batch.count).unwrap_or(u32::MAX),
            frames: batch.frames,
        };
        if let Err(e) = write_msg(&mut wr, &m, send.as_mut()).await {
            break Err(e);
        }
        last_sent = Instant::now();
        status.sent.store(last, Ordering::SeqCst);
    };
    drop(task);
    match res {
        // The receiver sent something that does not decode or verify: tell it.
        Err(e @ (StreamError::Auth(_) | StreamError::Malformed(_))) => refuse(&mut wr, e).await,
        res => res,
    }
}

/// Greets the receiver as journal run `run` ([`Source::run`]) and reads its answer: the
/// position it holds and, if both ends have a key, the connection's taggers (what this end
/// sends, what it receives). A refusal of this end's own (the keys disagree) is sent to the
/// receiver before it is returned.
pub async fn greet<R, W>(
    rd: &mut R,
    wr: &mut W,
    opts: &SenderOptions,
    run: u64,
) -> Result<(Position, Option<Tagger>, Option<Tagger>), StreamError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let nonce = nonce();
    let hello = Msg::Hello {
        node: opts.node.clone(),
        epoch: opts.epoch,
        run,
        nonce,
        authenticated: opts.key.is_some(),
    };
    write_msg(wr, &hello, None).await?;
    let (h, rest) = match tokio::time::timeout(HANDSHAKE, read_raw(rd)).await {
        Err(_) => return Err(StreamError::Protocol("no answer to the greeting".into())),
        Ok(Ok(Some(raw))) => raw,
        Ok(Ok(None)) => return Err(StreamError::Protocol("closed during the greeting".into())),
        Ok(Err(e)) => return Err(e),
    };
    let greeting = (opts.node.as_str(), opts.epoch, run, &nonce);
    match wire::decode_answer(&h, &rest, opts.key.as_ref(), greeting) {
        Ok((
            Msg::Position {
                node,
                epoch,
                run,
                seq,
                ..
            },
            taggers,
        )) => {
            let (send, recv) = taggers.unzip();
            let p = Position {
                node,
                epoch,
                run,
                seq,
            };
            Ok((p, send, recv))
        }
        Ok((Msg::Refused { reason }, _)) => Err(StreamError::Refused(reason)),
        Ok((m, _)) => Err(StreamError::Protocol(format!(
            "expected a position, got {}",
            m.name()
        ))),
        Err(e) => refuse(wr, e.into()).await,
    }
}

/// A fresh random nonce for one connection.
fn nonce() -> Nonce {
    rand::random()
}

/// Sends a snapshot current to `position` (read before): records are read on the blocking
/// pool and handed over in batches of frames through a small channel, never all in memory.
async fn send_snapshot<R: Record, W: AsyncWrite + Unpin>(
    wr: &mut W,
    mut tagger: Option<&mut Tagger>,
    source: &Source<R>,
    opts: &SenderOptions,
    position: u64,
) -> Result<(), StreamError> {
    let begin = Msg::SnapshotBegin {
        epoch: opts.epoch,
        position,
    };
    write_msg(wr, &begin, tagger.as_deref_mut()).await?;
    let max = opts.max_batch.clamp(1, wire::MAX_BATCH);
    let (tx, mut rx) = tokio::sync::mpsc::channel::<(u32, Vec<u8>)>(4);
    let src = source.clone();
    let dir = source.dir.clone();
    let mut reader = AbortOnDrop(tokio::task::spawn_blocking(move || {
        let (mut frames, mut count) = (Vec::new(), 0u32);
        let closed = || {
            let e = std::io::Error::from(std::io::ErrorKind::BrokenPipe);
            crate::Error::io("send the snapshot of", &dir, e)
        };
        src.snapshot_each(|r| {
            crate::format::encode_frame(&mut frames, &r).map_err(crate::Error::Encode)?;
            count += 1;
            if frames.len() >= max {
                let batch = (std::mem::take(&mut count), std::mem::take(&mut frames));
                tx.blocking_send(batch).map_err(|_| closed())?;
            }
            Ok(())
        })?;
        if count > 0 {
            tx.blocking_send((count, frames)).map_err(|_| closed())?;
        }
        Ok::<(), crate::Error>(())
    }));
    let mut records = 0u64;
    while let Some((count, frames)) = rx.recv().await {
        records += u64::from(count);
        let m = Msg::SnapshotRecords { count, frames };
        write_msg(wr, &m, tagger.as_deref_mut()).await?;
    }
    (&mut reader.0)
        .await
        .map_err(|e| StreamError::Protocol(format!("snapshot task: {e}")))??;
    write_msg(wr, &Msg::SnapshotEnd { records }, tagger).await
}

fn millis(base: Instant) -> u64 {
    millis_of(base.elapsed())
}

fn millis_of(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

/// What a receiver has done, readable while it runs.
#[derive(Debug, Default)]
pub struct ReceiverStatus {
    /// The epoch followed.
    pub epoch: AtomicU64,
    /// The last sequence synced (acknowledged).
    pub acked: AtomicU64,
    /// Frames appended, duplicates skipped, snapshots taken (from [`Replica::stats`]).
    pub frames: AtomicU64,
    /// Duplicates skipped.
    pub duplicates: AtomicU64,
    /// Snapshots taken.
    pub snapshots: AtomicU64,
    /// Keys deleted after snapshots that lacked them.
    pub deletions: AtomicU64,
    /// Sessions accepted.
    pub sessions: AtomicU64,
    /// Why the last session ended.
    pub last_error: Mutex<Option<String>>,
}

impl ReceiverStatus {
    /// Why the last session ended, if one did.
    pub fn last_error(&self) -> Option<String> {
        self.last_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Takes in `r`'s position and counters (a receiver loop of the caller's calls it after
    /// each session).
    pub fn update<R: Record>(&self, r: &mut Replica<R>) {
        let p = r.position();
        let s = r.stats();
        self.epoch.store(p.epoch, Ordering::SeqCst);
        self.acked.store(p.seq, Ordering::SeqCst);
        self.frames.store(s.frames, Ordering::SeqCst);
        self.duplicates.store(s.duplicates, Ordering::SeqCst);
        self.snapshots.store(s.snapshots, Ordering::SeqCst);
        self.deletions.store(s.snapshot_deletions, Ordering::SeqCst);
    }
}

/// Accepts senders on `listener` one at a time and applies their streams to `replica`, until
/// the task is dropped or aborted; with `key`, only senders with the same key. A refused or
/// broken session is logged, recorded in [`ReceiverStatus::last_error`], and the next
/// connection is accepted.
pub async fn run_receiver<R: Record>(
    listener: TcpListener,
    mut replica: Replica<R>,
    status: Arc<ReceiverStatus>,
    key: Option<StreamKey>,
) {
    loop {
        let s = match listener.accept().await {
            Ok((s, _)) => s,
            Err(e) => {
                tracing::warn!(error = %e, "journal stream accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        status.sessions.fetch_add(1, Ordering::Relaxed);
        let res = receive_session(s, &mut replica, &status, key.as_ref()).await;
        replica.abort_snapshot();
        replica.save_position();
        status.update(&mut replica);
        if let Err(e) = res {
            tracing::warn!(error = %e, "journal stream session ended");
            *status.last_error.lock().unwrap_or_else(|p| p.into_inner()) = Some(e.to_string());
        }
    }
}

/// One sender's session: greeting, then messages applied in order, acks as the journal
/// syncs; with `key`, every message after the greeting checked. A refusal is sent to the
/// sender before the error is returned.
pub async fn receive_session<R: Record>(
    s: TcpStream,
    replica: &mut Replica<R>,
    status: &ReceiverStatus,
    key: Option<&StreamKey>,
) -> Result<(), StreamError> {
    s.set_nodelay(true)?;
    let (mut rd, mut wr) = s.into_split();
    let greeting = tokio::time::timeout(HANDSHAKE, read_msg(&mut rd, None)).await;
    let (node, epoch, run, theirs, authenticated) = match greeting {
        Err(_) => return Err(StreamError::Protocol("no greeting".into())),
        Ok(Ok(Some(Msg::Hello {
            node,
            epoch,
            run,
            nonce,
            authenticated,
        }))) => (node, epoch, run, nonce, authenticated),
        Ok(Ok(Some(m))) => {
            let e = StreamError::Protocol(format!("expected a greeting, got {}", m.name()));
            return refuse(&mut wr, e).await;
        }
        Ok(Ok(None)) => return Ok(()),
        Ok(Err(e)) => return refuse(&mut wr, e).await,
    };
    let nonce = nonce();
    let key = match wire::agree(key, authenticated) {
        Ok(k) => k,
        Err(e) => {
            // Say which end has a key, and nothing of the replica, so that the sender names
            // the problem too; then refuse.
            let empty = Msg::Position {
                node: None,
                epoch: 0,
                run: 0,
                seq: 0,
                nonce,
                authenticated: key.is_some(),
            };
            write_msg(&mut wr, &empty, None).await?;
            return refuse(&mut wr, e.into()).await;
        }
    };
    if let Err(e) = replica.accept_sender(&node, run, epoch) {
        return refuse(&mut wr, e).await;
    }
    let (mut send, mut recv) = key
        .map(|k| wire::session(k, (&node, epoch, run), [&theirs, &nonce], End::Receiver))
        .unzip();
    let p = replica.position();
    let position = Msg::Position {
        node: p.node,
        epoch: p.epoch,
        run: p.run,
        seq: p.seq,
        nonce,
        authenticated: key.is_some(),
    };
    write_msg(&mut wr, &position, send.as_mut()).await?;
    let mut last_ack = p.seq;

    // Reading is not cancel-safe: it runs in its own task and hands whole messages over.
    let (tx, mut rx) = tokio::sync::mpsc::channel(4);
    let reader = AbortOnDrop(tokio::spawn(async move {
        loop {
            let m = read_msg(&mut rd, recv.as_mut()).await;
            let end = !matches!(m, Ok(Some(_)));
            if tx.send(m).await.is_err() || end {
                return;
            }
        }
    }));
    // Waits for the disk on the blocking pool: one wait outstanding, for the last frame
    // pending when it started (it ends by itself within a second).
    let waiter = replica.waiter();
    let mut heard = Instant::now();
    let mut waiting: Option<tokio::task::JoinHandle<bool>> = None;
    let res = loop {
        let acked = replica.poll();
        status.update(replica);
        if acked > last_ack && !replica.has_receiving() {
            last_ack = acked;
            let ack = Msg::Ack { epoch, seq: acked };
            if let Err(e) = write_msg(&mut wr, &ack, send.as_mut()).await {
                break Err(e);
            }
        }
        if waiting.is_none()
            && let Some(t) = replica.last_pending()
        {
            let w = waiter.clone();
            waiting = Some(tokio::task::spawn_blocking(move || {
                w.wait_durable(t, Duration::from_secs(1))
            }));
        }
        let save = replica.save_due();
        // Sleep until a message comes, the wait for the disk ends, the position file is due,
        // or the sender has been silent too long.
        let (got, synced) = tokio::select! {
            m = rx.recv() => {
                heard = Instant::now();
                (Some(m), false)
            }
            () = tokio::time::sleep_until((heard + IDLE_TIMEOUT).into()) => {
                break Err(StreamError::Protocol(format!(
                    "sender silent for {} ms",
                    millis(heard)
                )));
            }
            _ = async {
                match waiting.as_mut() {
                    Some(h) => h.await.unwrap_or(false),
                    None => std::future::pending().await,
                }
            }, if waiting.is_some() => (None, true),
            () = tokio::time::sleep(POSITION_EVERY), if save => (None, false),
        };
        if synced {
            waiting = None;
        }
        let applied = match got {
            None => Ok(()),
            Some(None | Some(Ok(None))) => break Ok(()),
            Some(Some(Err(e))) => break Err(e),
            Some(Some(Ok(Some(Msg::Ping { .. })))) => {
                // Answer with what is held, even if no more than before: the sender's sign of
                // life from this side.
                let seq = if replica.has_receiving() {
                    0
                } else {
                    replica.poll()
                };
                write_msg(&mut wr, &Msg::Ack { epoch, seq }, send.as_mut()).await
            }
            Some(Some(Ok(Some(m)))) => {
                if matches!(m, Msg::SnapshotBegin { .. }) {
                    last_ack = 0;
                }
                apply(replica, (&node, epoch, run), m)
            }
        };
        if let Err(e) = applied {
            break Err(e);
        }
    };
    drop(reader);
    match res {
        Err(e @ (StreamError::Io(_) | StreamError::Refused(_))) => Err(e),
        Err(e) => refuse(&mut wr, e).await,
        Ok(()) => Ok(()),
    }
}

/// Applies message `m` of the session that `node`'s greeting in `epoch` from journal `run`
/// began.
fn apply<R: Record>(
    replica: &mut Replica<R>,
    (node, epoch, run): (&str, u64, u64),
    m: Msg,
) -> Result<(), StreamError> {
    match m {
        Msg::Frames {
            epoch: e,
            first,
            count,
            frames,
        } => replica.apply(node, e, first, u64::from(count), &frames),
        Msg::SnapshotBegin { epoch: e, position } => replica.snapshot_begin(node, run, e, position),
        Msg::SnapshotRecords { count, frames } => {
            replica.snapshot_records(u64::from(count), &frames)
        }
        Msg::SnapshotEnd { records } => replica.snapshot_end(records),
        Msg::Refused { reason } => Err(StreamError::Refused(reason)),
        m => Err(StreamError::Protocol(format!(
            "unexpected {} from the sender (epoch {epoch})",
            m.name()
        ))),
    }
}

/// Sends the peer a refusal naming `e` (a failure to send is of no account: the session ends
/// anyway), and returns `e`.
async fn refuse<W: AsyncWrite + Unpin, T>(wr: &mut W, e: StreamError) -> Result<T, StreamError> {
    let reason = e.to_string();
    let _ = write_msg(wr, &Msg::Refused { reason }, None).await;
    Err(e)
}
