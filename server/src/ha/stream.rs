//! The journal streamed between the pair (docs/HA.md, "Replication"): the leader sends, the
//! standby keeps a replica in its own journal, and a takeover replays it before serving.
//!
//! Everything here runs on the HA agent's runtime. The leader's sender follows its journal
//! under the leading term's epoch; a monitor task reads the sender's acks every
//! [`MONITOR_EVERY`], hands them to the journal's [`PeerGate`] and decides whether binding
//! replies wait for the partner (only while it is in sync: for its ack with `ha.sync`, else
//! while it is more than `ha.max_lag` records behind) or the leader goes on alone (the
//! partner unreachable for `ha.lease_ttl`, or its acks stalled that long).

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lessor_journal::stream::net::{self, ReceiverStatus, SenderOptions, SenderStatus};
use lessor_journal::stream::wire::StreamKey;
use lessor_journal::stream::{PeerGate, Replica, Source};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, sleep, timeout};

use super::status::{Status, StreamState};
use crate::lease_record::LeaseRecord;
use crate::reload::Reloader;

/// How often the monitor looks at the sender's acks.
const MONITOR_EVERY: Duration = Duration::from_millis(50);
/// The longest a takeover waits for the replica's last frames to become durable.
const QUIET_WITHIN: Duration = Duration::from_secs(5);

/// What the agent needs to stream the journal, keep a replica, and take over.
pub struct Replication {
    /// This server's journal stream.
    pub source: Source<LeaseRecord>,
    /// The replica of the partner's stream, on a lane of this server's journal.
    pub replica: Replica<LeaseRecord>,
    /// The gate of the lanes whose binding replies wait for the partner.
    pub gate: PeerGate,
    /// Where the running engines are (a takeover replays into them).
    pub reload: Arc<Reloader>,
    /// Where this server receives the partner's stream.
    pub listener: std::net::TcpListener,
    /// Where the partner receives this server's stream.
    pub partner: SocketAddr,
}

impl std::fmt::Debug for Replication {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Replication")
            .field("partner", &self.partner)
            .finish_non_exhaustive()
    }
}

/// The running stream: the receiver's switch, the sender while this server leads, and what
/// the monitor decides.
pub(super) struct Stream {
    node: String,
    /// This server's index in `ha.peers`: its changes carry it (docs/HA.md, "Terms").
    peer: usize,
    /// The partner counts as gone after this long unreachable or silent.
    partner_timeout: Duration,
    source: Source<LeaseRecord>,
    gate: PeerGate,
    reload: Arc<Reloader>,
    partner: SocketAddr,
    /// `ha.stream_key_file`'s key: both directions of the stream are authenticated with it.
    key: Option<StreamKey>,
    status: Arc<Status>,
    /// The receiver accepts sessions while this is true (never while this server leads).
    allow: watch::Sender<bool>,
    /// The receiver says it has stopped and its frames are durable.
    quiet: watch::Receiver<bool>,
    receiver: Arc<ReceiverStatus>,
    sending: Mutex<Option<Sending>>,
    /// When the partner was last in sync, if replies were waiting for it when this server
    /// last stopped leading: a new term goes on waiting (for at most `partner_timeout`) while
    /// the partner catches up, instead of answering unprotected.
    carried: Mutex<Option<Instant>>,
    /// The takeover under way or done for the current term, per scope (one slot in
    /// hot-standby).
    taking: Mutex<[Option<Taking>; 2]>,
    /// Load balancing: the receiver runs while this server leads, and a takeover folds
    /// only its scope's records and keeps the sender that runs for the other.
    balanced: bool,
    /// One takeover at a time: each stops the receiver while it reads the journal.
    folding: tokio::sync::Mutex<()>,
}

/// A takeover running on its own task, so that the agent keeps renewing its etcd lease
/// meanwhile.
struct Taking {
    epoch: u64,
    task: JoinHandle<()>,
    /// Set when it ends.
    outcome: Arc<Mutex<Option<Result<(), String>>>>,
}

/// The sender of one term and what the monitor knows of it.
struct Sending {
    task: JoinHandle<()>,
    status: Arc<SenderStatus>,
    /// Sessions seen, the position the current one must reach to be in sync, and the acks
    /// heard before it began.
    sessions: u64,
    target: u64,
    acks: u64,
    state: StreamState,
    /// When the partner was last connected and in sync (or the term began).
    last_good: Instant,
    /// The last ack and when it moved.
    acked: u64,
    acked_at: Instant,
    /// Binding replies wait for the partner: it was in sync and is not taken for gone.
    waiting: bool,
    /// The term it sends in.
    epoch: u64,
}

impl Stream {
    /// Starts the receiver (accepting nothing until [`Stream::follow`]) and the monitor on
    /// the current runtime.
    pub(super) fn start(
        mut r: Replication,
        config: &crate::config::HaConfig,
        status: Arc<Status>,
    ) -> std::io::Result<Arc<Stream>> {
        r.listener.set_nonblocking(true)?;
        if !config.sync {
            // Asynchronous: a reply waits only while the partner is that far behind it.
            r.gate.set_slack(config.max_lag);
        }
        let peer = config.my_index();
        if config.scopes().is_some() {
            // Both stream all their journal: what comes back of this server's own is not
            // appended again (docs/HA.md, "Load balancing").
            r.replica
                .skip_records(move |rec| super::takeover::writer(rec.version) == Some(peer));
        }
        let listener = tokio::net::TcpListener::from_std(r.listener)?;
        let (allow, allow_rx) = watch::channel(false);
        let (quiet_tx, quiet) = watch::channel(true);
        let receiver = Arc::new(ReceiverStatus::default());
        tokio::spawn(receive(
            listener,
            r.replica,
            Arc::clone(&receiver),
            allow_rx,
            quiet_tx,
            config.stream_key.clone(),
        ));
        let stream = Arc::new(Stream {
            node: config.node.clone(),
            peer,
            partner_timeout: Duration::from_secs(config.lease_ttl.into()),
            source: r.source,
            gate: r.gate,
            reload: r.reload,
            partner: r.partner,
            key: config.stream_key.clone(),
            status,
            allow,
            quiet,
            receiver,
            sending: Mutex::new(None),
            carried: Mutex::new(None),
            taking: Mutex::new([None, None]),
            balanced: config.scopes().is_some(),
            folding: tokio::sync::Mutex::new(()),
        });
        tokio::spawn(monitor(Arc::clone(&stream)));
        Ok(stream)
    }

    fn sending(&self) -> std::sync::MutexGuard<'_, Option<Sending>> {
        self.sending.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Not leading: stop sending, hold every later binding reply until the partner acks it
    /// (so a server that lost the lead sends no reply its successor may not know), and
    /// follow the leader's stream.
    pub(super) fn follow(&self) {
        for t in lock(&self.taking).iter_mut().filter_map(Option::take) {
            t.task.abort();
        }
        if let Some(s) = self.sending().take() {
            s.task.abort();
            *self.carried.lock().unwrap_or_else(PoisonError::into_inner) =
                s.waiting.then_some(s.last_good);
        }
        self.gate.wait_for_peer(true);
        self.status.stream.set_state(StreamState::Receiving);
        self.allow.send_if_modified(|a| !std::mem::replace(a, true));
    }

    /// Whether this server is ready to lead in the term of `epoch`, the cluster's `term`th
    /// (of `scope`'s key in load-balancing): `None` while the takeover runs (it starts it if
    /// needed), then its outcome. A failed one is started again at the next call.
    pub(super) fn taken_over(
        self: &Arc<Self>,
        epoch: u64,
        term: u64,
        scope: Option<usize>,
    ) -> Option<Result<(), String>> {
        let mut slots = lock(&self.taking);
        let taking = &mut slots[scope.unwrap_or(0)];
        if let Some(t) = taking.as_ref()
            && t.epoch == epoch
        {
            let outcome = lock(&t.outcome).clone();
            if let Some(Err(_)) = outcome {
                *taking = None;
            }
            return outcome;
        }
        let outcome = Arc::new(Mutex::new(None));
        let (me, out) = (Arc::clone(self), Arc::clone(&outcome));
        let task = tokio::spawn(async move {
            let r = me.take_over(epoch, term, scope).await;
            *lock(&out) = Some(r);
        });
        if let Some(old) = taking.replace(Taking {
            epoch,
            task,
            outcome,
        }) {
            old.task.abort();
        }
        None
    }

    /// About to lead in term `epoch` (the `term`th): stops the receiver, waits until what it
    /// appended is durable, replays the journal into the engines (the same fold as at
    /// startup) and raises their versions into the term, and starts sending. DHCP stays held
    /// back throughout; an error leaves it held.
    ///
    /// In load-balancing (`scope` given) it folds only that scope's records, lets the
    /// receiver go on afterwards, and keeps the sender already running for the other scope.
    async fn take_over(&self, epoch: u64, term: u64, scope: Option<usize>) -> Result<(), String> {
        // The sender running, and the epoch it sends in.
        let sending = || {
            self.sending()
                .as_ref()
                .filter(|s| !s.task.is_finished())
                .map(|s| s.epoch)
        };
        if scope.is_none() && sending() == Some(epoch) {
            return Ok(());
        }
        let _one = self.folding.lock().await;
        self.allow.send_replace(false);
        let mut quiet = self.quiet.clone();
        let stopped = matches!(
            timeout(QUIET_WITHIN, quiet.wait_for(|q| *q)).await,
            Ok(Ok(_))
        );
        let replayed = if stopped {
            let (source, peer) = (self.source.clone(), self.peer);
            let reload = Arc::clone(&self.reload);
            tokio::task::spawn_blocking(move || {
                super::takeover::replay(&source, &reload, term, peer, scope)
            })
            .await
            .map_err(|e| format!("the replay task failed: {e}"))
            .and_then(|r| r)
        } else {
            Err("the replica did not stop in time".into())
        };
        if self.balanced {
            self.allow.send_replace(true);
        }
        let replayed = replayed?;
        tracing::info!(
            epoch,
            term,
            scope,
            records = replayed.records,
            restored = replayed.restored,
            "HA: journal replayed into the engines before serving"
        );
        self.status.stream.set_replayed(replayed.records);
        if self.balanced && sending().is_some() {
            return Ok(());
        }
        let status = Arc::new(SenderStatus::default());
        let task = tokio::spawn(net::run_sender(
            self.source.clone(),
            self.partner,
            SenderOptions {
                gate: Some(self.gate.clone()),
                key: self.key.clone(),
                ..SenderOptions::new(self.node.clone(), epoch)
            },
            Arc::clone(&status),
        ));
        let now = Instant::now();
        let carried = self
            .carried
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .take()
            .filter(|t| now - *t < self.partner_timeout);
        let old = self.sending().replace(Sending {
            task,
            status,
            sessions: 0,
            target: 0,
            acks: 0,
            state: StreamState::Connecting,
            last_good: carried.unwrap_or(now),
            acked: 0,
            acked_at: now,
            waiting: carried.is_some(),
            epoch,
        });
        if let Some(old) = old {
            old.task.abort();
        }
        self.status.stream.set_epoch(epoch);
        self.status.stream.set_state(StreamState::Connecting);
        Ok(())
    }

    /// Whether the partner is in sync: a leader may begin to hand it the lead.
    pub(super) fn partner_in_sync(&self) -> bool {
        self.sending()
            .as_ref()
            .is_some_and(|s| s.state == StreamState::InSync)
    }

    /// Whether the partner is in sync and has acknowledged all that this server synced, so
    /// that no reply waits for it: a leader that stopped answering may hand it the lead.
    pub(super) fn partner_has_all(&self) -> bool {
        let position = self.source.position();
        self.partner_in_sync()
            && self.gate.acked() >= position
            && self.gate.oldest_waiting().is_none()
    }

    /// Load balancing: makes the pools of `scope` give no free address, or give them again
    /// ([`Reloader::set_waiting`]).
    pub(super) fn set_waiting(&self, scope: usize, waiting: bool) {
        self.reload.set_waiting(scope, waiting);
    }

    /// Load balancing, handing a scope back once the workers stopped answering it: waits
    /// until they finished every batch begun before, then until the partner, in sync, has
    /// acknowledged all that this server synced by then. False if that takes over `within`:
    /// the scope is kept.
    pub(super) async fn partner_has_scope(&self, within: Duration) -> bool {
        let deadline = Instant::now() + within;
        let reload = Arc::clone(&self.reload);
        let past = tokio::task::spawn_blocking(move || reload.workers_past_batch()).await;
        if !matches!(past, Ok(true)) {
            return false;
        }
        // The last batches' records reach the journal's next group commit.
        sleep(MONITOR_EVERY).await;
        let target = self.source.position();
        while !(self.partner_in_sync() && self.gate.acked() >= target) {
            if Instant::now() >= deadline {
                return false;
            }
            sleep(Duration::from_millis(20)).await;
        }
        true
    }

    /// One look at the sender: feeds its acks to the gate and decides whether binding
    /// replies wait for the partner.
    fn check(&self) {
        let position = self.source.position();
        self.status.stream.set_position(position);
        self.status.stream.set_received(&self.receiver);
        let mut guard = self.sending();
        let Some(s) = guard.as_mut() else {
            return;
        };
        let now = Instant::now();
        let acked = s.status.acked.load(Ordering::SeqCst);
        let connected = s.status.connected.load(Ordering::SeqCst);
        let sessions = s.status.sessions.load(Ordering::SeqCst);
        if acked != s.acked {
            s.acked = acked;
            s.acked_at = now;
        }
        self.gate.ack(acked);
        self.status.stream.set_acked(acked);
        let acks = s.status.acks.load(Ordering::SeqCst);
        if sessions != s.sessions && connected {
            // A new session catches up to where the journal was when it began, and has
            // heard an ack (after its snapshot, if it sent one).
            s.sessions = sessions;
            s.target = position;
            s.acks = acks;
        }
        let caught_up = connected && acks > s.acks && acked >= s.target;
        // Acks behind the gate's oldest waiting sync, and not moving: the partner is stuck.
        let stalled = self
            .gate
            .oldest_waiting()
            .is_some_and(|seq| seq > acked && now - s.acked_at > self.partner_timeout);
        let next = if caught_up && !stalled {
            s.last_good = now;
            StreamState::InSync
        } else if s.state == StreamState::Alone
            || stalled
            || now - s.last_good > self.partner_timeout
        {
            StreamState::Alone
        } else if connected {
            StreamState::CatchingUp
        } else {
            StreamState::Connecting
        };
        if next != s.state {
            match next {
                StreamState::Alone => {
                    let why = s
                        .status
                        .last_error()
                        .unwrap_or_else(|| "its acks stalled".into());
                    tracing::warn!(
                        partner = %self.partner,
                        error = %why,
                        "HA: the partner is gone; serving alone, replies no longer wait for it"
                    );
                    self.status.stream.went_alone();
                    // Back in sync only once it has acked, anew, all that it missed.
                    s.target = position;
                    s.acks = acks;
                }
                StreamState::InSync => {
                    tracing::info!(partner = %self.partner, acked, "HA: the partner is in sync");
                }
                _ => {}
            }
            s.state = next;
            self.status.stream.set_state(next);
        }
        if let Some(e) = s.status.last_error() {
            self.status.stream.set_error(e);
        }
        // Replies wait for the partner while it is in sync, and after it drops until it is
        // taken for gone; before it first catches up in a term, they do not.
        match next {
            StreamState::InSync => s.waiting = true,
            StreamState::Alone => s.waiting = false,
            _ => {}
        }
        let wait = s.waiting;
        if self.gate.waiting() != wait {
            self.gate.wait_for_peer(wait);
        }
        self.status.stream.set_waiting(wait);
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Looks at the sender every [`MONITOR_EVERY`].
async fn monitor(stream: Arc<Stream>) {
    loop {
        stream.check();
        sleep(MONITOR_EVERY).await;
    }
}

/// Applies the partner's stream to `replica` while `allow` says so; when it turns false,
/// ends the session, waits until what was appended is durable, and says so on `quiet`. With
/// `key`, only a partner with the same key is taken.
async fn receive(
    listener: tokio::net::TcpListener,
    mut replica: Replica<LeaseRecord>,
    status: Arc<ReceiverStatus>,
    mut allow: watch::Receiver<bool>,
    quiet: watch::Sender<bool>,
    key: Option<StreamKey>,
) {
    loop {
        if !*allow.borrow_and_update() {
            quiet.send_replace(true);
            // Refuse at once whoever calls while this server leads (a fenced old leader).
            tokio::select! {
                a = listener.accept() => drop(a),
                c = allow.changed() => if c.is_err() { return },
            }
            continue;
        }
        quiet.send_replace(false);
        let s = tokio::select! {
            a = listener.accept() => a,
            c = allow.changed() => {
                if c.is_err() {
                    return;
                }
                continue;
            }
        };
        let s = match s {
            Ok((s, peer)) => {
                tracing::info!(%peer, "HA: receiving the partner's journal stream");
                s
            }
            Err(e) => {
                tracing::warn!(error = %e, "HA: journal stream accept failed");
                sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        status.sessions.fetch_add(1, Ordering::Relaxed);
        let res = tokio::select! {
            r = net::receive_session(s, &mut replica, &status, key.as_ref()) => Some(r),
            _ = allow.wait_for(|a| !*a) => None,
        };
        replica.abort_snapshot();
        if let Some(t) = replica.last_pending() {
            let w = replica.waiter();
            let _ = tokio::task::spawn_blocking(move || w.wait_durable(t, QUIET_WITHIN)).await;
        }
        replica.save_position();
        status.update(&mut replica);
        if res.is_none() {
            tracing::info!("HA: stopped receiving the partner's journal stream");
        }
        if let Some(Ok(())) = res {
            tracing::info!("HA: the partner closed its journal stream");
        }
        if let Some(Err(e)) = res {
            tracing::warn!(error = %e, "HA: journal stream from the partner ended");
            *status
                .last_error
                .lock()
                .unwrap_or_else(PoisonError::into_inner) = Some(e.to_string());
        }
    }
}
