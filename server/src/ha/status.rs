//! What the HA agent knows, shared with `status-get` and `/metrics`.

use std::sync::atomic::{AtomicU64, Ordering};
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
}

#[derive(Debug)]
struct Snapshot {
    role: Role,
    /// The leader key's creation revision as last seen: the leading term's fencing token.
    epoch: u64,
    leader: Option<String>,
    endpoints: Vec<Endpoint>,
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
                leader: None,
                endpoints: c
                    .etcd
                    .iter()
                    .map(|url| Endpoint {
                        url: url.clone(),
                        health: None,
                    })
                    .collect(),
            }),
            transitions: AtomicU64::new(0),
            keepalive_failures: AtomicU64::new(0),
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

    /// Records `role`, and the leader and epoch when known; true when the role changed.
    pub(crate) fn set(&self, role: Role, seen: Option<(String, u64)>) -> bool {
        let mut s = self.lock();
        if let Some((leader, epoch)) = seen {
            s.leader = Some(leader);
            s.epoch = epoch;
        }
        let changed = s.role != role;
        if changed {
            s.role = role;
            self.transitions.fetch_add(1, Ordering::Relaxed);
        }
        changed
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
        json!({
            "mode": self.mode,
            "node": self.node,
            "cluster": self.cluster,
            "role": s.role.name(),
            "epoch": s.epoch,
            "leader": s.leader,
            "lease-ttl": self.lease_ttl,
            "transitions": self.transitions(),
            "keepalive-failures": self.keepalive_failures(),
            "etcd": etcd,
        })
    }
}
