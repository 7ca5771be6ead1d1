//! What the HA agent knows, shared with `status-get` and `/metrics`.

use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};

use serde_json::{Value, json};

use crate::config::HaConfig;

/// This server's place in the pair.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// It holds the leader key and answers DHCP.
    Leader,
    /// Its etcd lease is alive but another server holds the leader key: it does not answer.
    Standby,
    /// It cannot show that its etcd lease is alive: it does not answer.
    Fenced,
}

impl Role {
    /// Every role, in the order `/metrics` lists them.
    pub const ALL: [Role; 3] = [Role::Leader, Role::Standby, Role::Fenced];

    /// The role's name in `status-get` and in the `role` label.
    pub fn name(self) -> &'static str {
        match self {
            Role::Leader => "leader",
            Role::Standby => "standby",
            Role::Fenced => "fenced",
        }
    }
}

/// The journal stream's state on this server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StreamState {
    /// No `stream` address on both peers: the journal is not streamed.
    Off,
    /// Not leading: it applies the leader's stream to its replica.
    Receiving,
    /// Leading; no session with the partner yet in this term, or it dropped.
    Connecting,
    /// Leading; the partner is connected and catching up.
    CatchingUp,
    /// Leading; the partner has synced what this server synced when the session began.
    InSync,
    /// Leading; the partner has been unreachable or stuck for `lease_ttl`: replies do not
    /// wait for it until it is in sync again.
    Alone,
}

impl StreamState {
    /// Every state, in the order `/metrics` lists them.
    pub const ALL: [StreamState; 6] = [
        StreamState::Off,
        StreamState::Receiving,
        StreamState::Connecting,
        StreamState::CatchingUp,
        StreamState::InSync,
        StreamState::Alone,
    ];

    /// The state's name in `status-get` and in the `state` label.
    pub fn name(self) -> &'static str {
        match self {
            StreamState::Off => "off",
            StreamState::Receiving => "receiving",
            StreamState::Connecting => "connecting",
            StreamState::CatchingUp => "catching-up",
            StreamState::InSync => "in-sync",
            StreamState::Alone => "alone",
        }
    }
}

/// The journal stream's counters, shared with `status-get` and `/metrics`.
#[derive(Debug)]
pub struct StreamStatus {
    partner: Option<String>,
    sync: bool,
    /// `ha.max_lag` when not `sync`.
    max_lag: Option<u64>,
    /// The stream is authenticated (`ha.stream_key_file`).
    keyed: bool,
    state: AtomicU8,
    epoch: AtomicU64,
    position: AtomicU64,
    acked: AtomicU64,
    waiting: AtomicBool,
    alone: AtomicU64,
    replayed: AtomicU64,
    received_epoch: AtomicU64,
    received_seq: AtomicU64,
    received_frames: AtomicU64,
    received_snapshots: AtomicU64,
    last_error: Mutex<Option<String>>,
}

impl StreamStatus {
    fn new(c: &HaConfig) -> StreamStatus {
        StreamStatus {
            partner: c.partner().map(|p| p.name.clone()),
            sync: c.sync,
            max_lag: (!c.sync).then_some(c.max_lag),
            keyed: c.stream_key.is_some(),
            state: AtomicU8::new(0),
            epoch: AtomicU64::new(0),
            position: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            alone: AtomicU64::new(0),
            replayed: AtomicU64::new(0),
            received_epoch: AtomicU64::new(0),
            received_seq: AtomicU64::new(0),
            received_frames: AtomicU64::new(0),
            received_snapshots: AtomicU64::new(0),
            last_error: Mutex::new(None),
        }
    }

    /// The current state.
    pub fn state(&self) -> StreamState {
        let i = usize::from(self.state.load(Ordering::Relaxed));
        StreamState::ALL.get(i).copied().unwrap_or(StreamState::Off)
    }

    pub(crate) fn set_state(&self, s: StreamState) {
        let i = StreamState::ALL.iter().position(|x| *x == s).unwrap_or(0);
        self.state
            .store(u8::try_from(i).unwrap_or(0), Ordering::Relaxed);
    }

    /// The term this server last streamed in (0 before it led).
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::Relaxed)
    }

    pub(crate) fn set_epoch(&self, e: u64) {
        self.epoch.store(e, Ordering::Relaxed);
    }

    /// The last sequence this server's journal synced in this run.
    pub fn position(&self) -> u64 {
        self.position.load(Ordering::Relaxed)
    }

    pub(crate) fn set_position(&self, p: u64) {
        self.position.store(p, Ordering::Relaxed);
    }

    /// The last sequence the partner acknowledged as synced.
    pub fn acked(&self) -> u64 {
        self.acked.load(Ordering::Relaxed)
    }

    pub(crate) fn set_acked(&self, a: u64) {
        self.acked.store(a, Ordering::Relaxed);
    }

    /// Records synced here and not yet acknowledged by the partner (0 while not leading).
    pub fn lag(&self) -> u64 {
        if self.state() == StreamState::Receiving || self.state() == StreamState::Off {
            return 0;
        }
        self.position().saturating_sub(self.acked())
    }

    /// Whether binding replies wait for the partner's ack.
    pub fn waiting(&self) -> bool {
        self.waiting.load(Ordering::Relaxed)
    }

    pub(crate) fn set_waiting(&self, w: bool) {
        self.waiting.store(w, Ordering::Relaxed);
    }

    /// Times this server went on alone.
    pub fn alone(&self) -> u64 {
        self.alone.load(Ordering::Relaxed)
    }

    pub(crate) fn went_alone(&self) {
        self.alone.fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn set_replayed(&self, n: u64) {
        self.replayed.store(n, Ordering::Relaxed);
    }

    /// The last sequence of the partner's stream this server's replica has synced.
    pub fn received(&self) -> u64 {
        self.received_seq.load(Ordering::Relaxed)
    }

    pub(crate) fn set_received(&self, r: &lessor_journal::stream::net::ReceiverStatus) {
        let copy = |to: &AtomicU64, from: &AtomicU64| {
            to.store(from.load(Ordering::Relaxed), Ordering::Relaxed);
        };
        copy(&self.received_epoch, &r.epoch);
        copy(&self.received_seq, &r.acked);
        copy(&self.received_frames, &r.frames);
        copy(&self.received_snapshots, &r.snapshots);
        if let Some(e) = r.last_error() {
            self.set_error(format!("receiving: {e}"));
        }
    }

    pub(crate) fn set_error(&self, e: String) {
        *self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner) = Some(e);
    }

    /// The `stream` object of `status-get`'s `ha`.
    fn json(&self) -> Value {
        let error = self
            .last_error
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone();
        json!({
            "state": self.state().name(),
            "partner": self.partner,
            "sync": self.sync,
            "max-lag": self.max_lag,
            "keyed": self.keyed,
            "waiting-for-partner": self.waiting(),
            "epoch": self.epoch(),
            "position": self.position(),
            "acked": self.acked(),
            "lag": self.lag(),
            "alone": self.alone(),
            "replayed-at-takeover": self.replayed.load(Ordering::Relaxed),
            "received": {
                "epoch": self.received_epoch.load(Ordering::Relaxed),
                "seq": self.received(),
                "frames": self.received_frames.load(Ordering::Relaxed),
                "snapshots": self.received_snapshots.load(Ordering::Relaxed),
            },
            "last-error": error,
        })
    }
}

/// One etcd endpoint's health as last probed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) url: String,
    /// `None` until the first probe; `Some(Err)` carries why the last one failed.
    pub(crate) health: Option<Result<(), String>>,
}

/// The agent's state, read by the control server.
#[derive(Debug)]
pub struct Status {
    mode: &'static str,
    node: String,
    cluster: String,
    lease_ttl: u32,
    state: Mutex<Snapshot>,
    transitions: AtomicU64,
    keepalive_failures: AtomicU64,
    /// The journal stream between the pair.
    pub stream: StreamStatus,
}

#[derive(Debug)]
struct Snapshot {
    role: Role,
    /// The leader key's creation revision as last seen: the leading term's fencing token.
    epoch: u64,
    /// The cluster's term count as last seen (docs/HA.md, "Terms").
    term: u64,
    leader: Option<String>,
    endpoints: Vec<Endpoint>,
    /// In load-balancing, each scope as last seen (docs/HA.md, "Load balancing").
    scopes: Option<[ScopeView; 2]>,
}

/// One scope of `load-balancing`, as the agent last saw it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScopeView {
    /// The scope's name: the peer whose scope it is.
    pub name: String,
    /// The server whose etcd lease holds the scope's key, if one does.
    pub holder: Option<String>,
    /// The key's creation revision: the holder's fencing token for it.
    pub epoch: u64,
    /// This server answers the scope's clients now.
    pub served: bool,
    /// Its pools give no free address for now: taken over from a partner that is gone,
    /// with `ha.sync: false`, less than `ha.mclt` ago.
    pub waiting: bool,
}

impl Status {
    /// A server that has not reached etcd yet: fenced.
    pub(crate) fn new(c: &HaConfig) -> Status {
        Status {
            mode: c.mode.name(),
            node: c.node.clone(),
            cluster: c.cluster.clone(),
            lease_ttl: c.lease_ttl,
            state: Mutex::new(Snapshot {
                role: Role::Fenced,
                epoch: 0,
                term: 0,
                leader: None,
                endpoints: c
                    .etcd
                    .iter()
                    .map(|url| Endpoint {
                        url: url.clone(),
                        health: None,
                    })
                    .collect(),
                scopes: c.scopes().map(|names| {
                    names.map(|n| ScopeView {
                        name: n.to_owned(),
                        ..ScopeView::default()
                    })
                }),
            }),
            transitions: AtomicU64::new(0),
            keepalive_failures: AtomicU64::new(0),
            stream: StreamStatus::new(c),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Snapshot> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// The current role.
    pub fn role(&self) -> Role {
        self.lock().role
    }

    /// The leading term's epoch as last seen (0 before any).
    pub fn epoch(&self) -> u64 {
        self.lock().epoch
    }

    /// The cluster's term count as last seen (0 before any).
    pub fn term(&self) -> u64 {
        self.lock().term
    }

    /// Role changes since start.
    pub fn transitions(&self) -> u64 {
        self.transitions.load(Ordering::Relaxed)
    }

    /// Lease keepalives that failed or timed out.
    pub fn keepalive_failures(&self) -> u64 {
        self.keepalive_failures.load(Ordering::Relaxed)
    }

    pub(crate) fn keepalive_failed(&self) {
        self.keepalive_failures.fetch_add(1, Ordering::Relaxed);
    }

    /// Records `role`, and the leader, epoch and term when known; true when the role changed.
    pub(crate) fn set(&self, role: Role, seen: Option<(String, u64, u64)>) -> bool {
        let mut s = self.lock();
        if let Some((leader, epoch, term)) = seen {
            s.leader = Some(leader);
            s.epoch = epoch;
            s.term = term;
        }
        let changed = s.role != role;
        if changed {
            s.role = role;
            self.transitions.fetch_add(1, Ordering::Relaxed);
        }
        changed
    }

    /// The scopes of `load-balancing` as last seen; `None` in hot-standby.
    pub fn scopes(&self) -> Option<[ScopeView; 2]> {
        self.lock().scopes.clone()
    }

    /// Records what the agent saw of the scopes, and which it serves and which wait, as the
    /// workers' `mask` says ([`crate::scope`]).
    pub(crate) fn set_scopes(&self, seen: [(Option<String>, u64); 2], mask: u8) {
        if let Some(scopes) = self.lock().scopes.as_mut() {
            for (i, (view, (holder, epoch))) in scopes.iter_mut().zip(seen).enumerate() {
                view.holder = holder;
                view.epoch = epoch;
                view.served = crate::scope::serves(mask, i);
                view.waiting = crate::scope::waits(mask, i);
            }
        }
    }

    pub(crate) fn set_endpoint(&self, i: usize, health: Result<(), String>) {
        if let Some(e) = self.lock().endpoints.get_mut(i) {
            e.health = Some(health);
        }
    }

    /// The `ha` object of `status-get`.
    pub fn json(&self) -> Value {
        let s = self.lock();
        let etcd: Vec<Value> = s
            .endpoints
            .iter()
            .map(|e| match &e.health {
                None => json!({"url": e.url, "healthy": false, "error": "not probed yet"}),
                Some(Ok(())) => json!({"url": e.url, "healthy": true}),
                Some(Err(why)) => json!({"url": e.url, "healthy": false, "error": why}),
            })
            .collect();
        let scopes = s.scopes.as_ref().map(|scopes| {
            scopes
                .iter()
                .map(|v| {
                    json!({"name": v.name, "holder": v.holder, "epoch": v.epoch, "served": v.served,
                        "waiting": v.waiting})
                })
                .collect::<Vec<_>>()
        });
        json!({
            "mode": self.mode,
            "node": self.node,
            "cluster": self.cluster,
            "role": s.role.name(),
            "epoch": s.epoch,
            "term": s.term,
            "leader": s.leader,
            "lease-ttl": self.lease_ttl,
            "transitions": self.transitions(),
            "keepalive-failures": self.keepalive_failures(),
            "etcd": etcd,
            "stream": self.stream.json(),
            "scopes": scopes,
        })
    }
}
