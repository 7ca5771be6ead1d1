//! High availability on etcd: membership, the leader key, self-fencing, and the journal
//! streamed to the partner (docs/HA.md).
//!
//! The agent runs on a tokio runtime of its own thread, never on a worker. It holds an etcd
//! lease (TTL `ha.lease_ttl`) kept alive every sixth of the TTL, registers
//! `/lessor/<cluster>/members/<node>` under it, and competes for `/lessor/<cluster>/leader` with
//! a create-if-absent transaction under the same lease. The leader key's creation revision is
//! the epoch (the fencing token). Only the leader answers DHCP; a server whose last successful
//! keepalive is older than two thirds of the TTL fences itself (stops answering) before etcd can
//! expire its lease and hand the key to its partner. With `stream` addresses the leader
//! streams its journal to the standby, and a new leader replays it before it answers
//! ([`stream`]).

mod balance;
mod status;
mod stream;
mod takeover;

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
use std::thread;
use std::time::Duration;

use etcd_client::{
    Certificate, Client, Compare, CompareOp, ConnectOptions, Identity, LeaseKeepAliveStream,
    LeaseKeeper, PutOptions, TlsOptions, Txn, TxnOp, TxnOpResponse,
};
use tokio::sync::watch;
use tokio::time::{Instant, sleep, sleep_until, timeout};

use balance::{ScopeKeys, Scopes};
pub use status::{Role, ScopeView, Status, StreamState};
pub use stream::Replication;
use stream::Stream;

use crate::config::{EtcdTls, HaConfig};
use crate::control::{Hold, Live};
use crate::error::{Error, Result};

/// The name of the server that wrote a change of `version`, if one of the peers of
/// `config`'s `ha` did in an HA term (docs/HA.md, "Terms").
pub fn written_by(config: &crate::config::Config, version: u64) -> Option<&str> {
    let peer = config.ha.as_ref()?.peers.get(takeover::writer(version)?)?;
    Some(peer.name.as_str())
}

/// `m` locked, whether or not a holder panicked.
fn lock<T>(m: &std::sync::Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// How often each etcd endpoint's health is probed for `status-get`.
const PROBE_EVERY: Duration = Duration::from_secs(2);

/// A running HA agent; dropping it gives up the leader key (when held) and stops it.
#[derive(Debug)]
pub struct Agent {
    status: Arc<Status>,
    stop: Option<watch::Sender<bool>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Agent {
    /// Starts the agent for `config`, streaming the journal when `replication` is given;
    /// DHCP stays held back (fenced) until it leads.
    pub fn start(
        config: &HaConfig,
        live: Arc<Live>,
        replication: Option<Replication>,
    ) -> Result<Agent> {
        let status = Arc::new(Status::new(config));
        if replication.is_some() {
            status.stream.set_state(StreamState::Receiving);
        }
        live.hold_dhcp(Some(Hold::Fenced));
        if config.scopes().is_some() {
            // Load balancing: no scope is answered before it is taken over.
            live.set_dhcp_scopes(0);
        }
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .thread_name("lessor-ha")
            .build()
            .map_err(|source| Error::Control {
                what: "starting the HA agent's runtime".into(),
                source,
            })?;
        let (tx, rx) = watch::channel(false);
        let agent = Run {
            keys: Keys::new(config),
            scope_keys: ScopeKeys::new(config),
            served: AtomicU8::new(0),
            started: Instant::now(),
            waiting: std::sync::Mutex::new([None, None]),
            config: config.clone(),
            status: Arc::clone(&status),
            live,
            stream: None,
        };
        let thread = thread::Builder::new()
            .name("lessor-ha".into())
            .spawn(move || runtime.block_on(agent.run(rx, replication)))
            .map_err(|source| Error::Control {
                what: "starting the HA agent's thread".into(),
                source,
            })?;
        Ok(Agent {
            status,
            stop: Some(tx),
            thread: Some(thread),
        })
    }

    /// What the agent knows, for `status-get` and `/metrics`.
    pub fn status(&self) -> Arc<Status> {
        Arc::clone(&self.status)
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        if let Some(tx) = self.stop.take() {
            let _ = tx.send(true);
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The etcd keys of one server in one cluster.
#[derive(Debug)]
struct Keys {
    leader: String,
    member: String,
    /// Put by every new leader: its etcd version counts the terms (docs/HA.md, "Terms").
    term: String,
}

impl Keys {
    fn new(c: &HaConfig) -> Keys {
        Keys {
            leader: format!("/lessor/{}/leader", c.cluster),
            member: format!("/lessor/{}/members/{}", c.cluster, c.node),
            term: format!("/lessor/{}/term", c.cluster),
        }
    }
}

/// The agent's loop and what it changes.
struct Run {
    keys: Keys,
    /// The scopes' keys in load-balancing; `None` in hot-standby.
    scope_keys: Option<ScopeKeys>,
    /// Load balancing: the scopes served (bit `i`: scope `i`), as the workers were told.
    served: AtomicU8,
    /// When the agent started: it covers a partner's scope only a TTL later.
    started: Instant,
    /// Load balancing with `sync: false`: until when each scope's pools wait (`mclt`).
    waiting: std::sync::Mutex<[Option<Instant>; 2]>,
    config: HaConfig,
    status: Arc<Status>,
    live: Arc<Live>,
    /// The journal stream, when both peers have a `stream` address.
    stream: Option<Arc<Stream>>,
}

/// The timings derived from the lease TTL.
#[derive(Clone, Copy, Debug)]
struct Timing {
    /// Between keepalives and leader checks; also the bound of each etcd call.
    tick: Duration,
    /// A server fences itself when its last successful keepalive was sent this long ago: a
    /// third of the TTL before etcd could expire the lease.
    fence_after: Duration,
}

impl Timing {
    fn new(ttl_secs: u32) -> Timing {
        let ttl = Duration::from_secs(ttl_secs.into());
        Timing {
            tick: ttl / 6,
            fence_after: ttl * 2 / 3,
        }
    }
}

/// The leader key as one transaction saw it.
#[derive(Debug)]
struct Seen {
    leader: String,
    epoch: u64,
    /// How many terms the cluster has had, this one included.
    term: u64,
    /// It is held under this server's lease.
    mine: bool,
}

/// What one tick's transaction saw: the leader key, or both scopes' keys.
#[derive(Debug)]
enum Looked {
    Leader(Seen),
    Scopes(Scopes),
}

/// Why a session with etcd ended.
enum End {
    Stop,
    Fenced(String),
    /// This server gave the lead to the primary and revoked its lease.
    HandedOver,
}

/// One etcd client per endpoint, used one at a time: a member that fails or hangs is left for
/// the next at once, where a balanced channel would keep sending it a share of the calls.
struct Members {
    clients: Vec<Client>,
    current: usize,
}

impl Members {
    /// The client of the member in use (clones share its connection).
    fn client(&self) -> Client {
        self.clients[self.current].clone()
    }

    /// Moves on to the next member.
    fn next(&mut self) {
        self.current = (self.current + 1) % self.clients.len();
    }
}

impl Run {
    async fn run(mut self, mut stop: watch::Receiver<bool>, replication: Option<Replication>) {
        if let Some(r) = replication {
            match Stream::start(r, &self.config, Arc::clone(&self.status)) {
                Ok(s) => self.stream = Some(s),
                Err(e) => tracing::error!(error = %e, "HA: cannot start the journal stream"),
            }
        }
        let timing = Timing::new(self.config.lease_ttl);
        let mut options = ConnectOptions::new()
            .with_connect_timeout(timing.tick)
            .with_timeout(timing.tick)
            .with_require_leader(true);
        if let Some(tls) = &self.config.etcd_tls {
            options = options.with_tls(tls_options(tls));
        }
        tokio::spawn(probe(
            self.config.etcd.clone(),
            options.clone(),
            Arc::clone(&self.status),
        ));
        let mut clients = Vec::with_capacity(self.config.etcd.len());
        for url in &self.config.etcd {
            // The channel connects lazily: this fails only on a malformed URL, which the
            // config already refused.
            match Client::connect([url], Some(options.clone())).await {
                Ok(c) => clients.push(c),
                Err(e) => tracing::error!(error = %e, url, "HA: cannot set up an etcd client"),
            }
        }
        if clients.is_empty() {
            tracing::error!("HA: no usable etcd endpoint; DHCP stays off");
            let _ = stop.changed().await;
            return;
        }
        let mut members = Members {
            clients,
            current: 0,
        };
        let mut previous = None;
        loop {
            match self
                .session(&mut members, timing, &mut stop, &mut previous)
                .await
            {
                End::Stop => return,
                End::Fenced(why) => {
                    self.enter(Role::Fenced, None);
                    tracing::warn!(node = %self.config.node, "HA: fenced: {why}");
                }
                End::HandedOver => {
                    self.enter(Role::Standby, None);
                    self.live.drop_waiting_replies();
                    // Give the primary a few of its ticks to take the key before this
                    // server's next campaign.
                    tokio::select! {
                        _ = stop.changed() => return,
                        () = sleep(timing.tick * 3) => {}
                    }
                }
            }
            tokio::select! {
                _ = stop.changed() => return,
                () = sleep(timing.tick) => {}
            }
        }
    }

    /// One etcd lease: grant it, register, then keep it alive and compete for the leader key
    /// until it can no longer be shown alive or the agent stops.
    async fn session(
        &self,
        members: &mut Members,
        timing: Timing,
        stop: &mut watch::Receiver<bool>,
        previous: &mut Option<i64>,
    ) -> End {
        let ttl = i64::from(self.config.lease_ttl);
        let mut client = members.client();
        let granted_at = Instant::now();
        let lease = match timeout(timing.tick, client.lease_grant(ttl, None)).await {
            Ok(Ok(l)) => l.id(),
            failed => {
                members.next();
                return End::Fenced(format!("granting a lease: {}", why(failed)));
            }
        };
        // A lease this server gave up on may still hold the leader key: let it go now
        // rather than waiting out its TTL.
        if let Some(old) = previous.replace(lease) {
            let _ = timeout(timing.tick, client.lease_revoke(old)).await;
        }
        let url = self
            .config
            .peers
            .iter()
            .find(|p| p.name == self.config.node)
            .map_or("", |p| p.url.as_str());
        let member = serde_json::json!({"url": url}).to_string();
        let put = client.put(
            self.keys.member.as_str(),
            member,
            Some(PutOptions::new().with_lease(lease)),
        );
        if let failed @ (Ok(Err(_)) | Err(_)) = timeout(timing.tick, put).await {
            members.next();
            return End::Fenced(format!("registering membership: {}", why(failed)));
        }
        let mut last_ok = granted_at;
        let mut keeper: Option<(LeaseKeeper, LeaseKeepAliveStream)> = None;
        let mut retry = false;
        loop {
            let deadline = last_ok + timing.fence_after;
            let outcome = tokio::select! {
                biased;
                () = sleep_until(deadline) => {
                    return End::Fenced(format!(
                        "no keepalive succeeded for {:?}",
                        timing.fence_after
                    ));
                }
                _ = stop.changed() => {
                    self.resign(&mut members.client(), lease, timing).await;
                    return End::Stop;
                }
                outcome = self.step(members, lease, timing, &mut keeper, retry) => outcome,
            };
            let (alive, seen) = match outcome {
                Err(why) => return End::Fenced(why),
                Ok(o) => o,
            };
            // A failed call moved to the next member: try it at once.
            retry = alive.is_none() || seen.is_none();
            if let Some(sent) = alive {
                last_ok = sent;
            }
            // Lead only while the lease is certainly alive.
            if Instant::now() >= last_ok + timing.fence_after {
                continue;
            }
            let seen = match seen {
                Some(Looked::Scopes(scopes)) => {
                    self.balance(scopes, members, lease, timing).await;
                    continue;
                }
                Some(Looked::Leader(seen)) => Some(seen),
                None => None,
            };
            if let Some(seen) = seen {
                let role = if seen.mine {
                    Role::Leader
                } else {
                    Role::Standby
                };
                if role == Role::Leader
                    && self.status.role() != Role::Leader
                    && let Some(stream) = &self.stream
                {
                    // Not one answer before the partner's records are in the engines; the
                    // lease is renewed meanwhile.
                    match stream.taken_over(seen.epoch, seen.term, None) {
                        None => continue,
                        Some(Err(why)) => {
                            tracing::error!(node = %self.config.node, "HA: cannot take over yet: {why}");
                            continue;
                        }
                        Some(Ok(())) => {}
                    }
                }
                self.enter(role, Some((seen.leader, seen.epoch, seen.term)));
                if role == Role::Leader && self.hand_over(members, lease, timing).await {
                    return End::HandedOver;
                }
            }
        }
    }

    /// A leader whose partner is the primary, up and holding all this server synced, gives
    /// the lead back (docs/HA.md, "Roles"): it stops answering, waits up to a tick for the
    /// replies waiting to be acknowledged and sent, then revokes its lease so that the
    /// primary takes the key at its next tick. Returns whether it did; if the partner fell
    /// behind meanwhile it answers again and keeps the lead.
    async fn hand_over(&self, members: &mut Members, lease: i64, timing: Timing) -> bool {
        let Some(stream) = &self.stream else {
            return false;
        };
        let to_primary = self
            .config
            .primary()
            .is_some_and(|p| p.name != self.config.node);
        if !to_primary || !stream.partner_in_sync() {
            return false;
        }
        tracing::info!(node = %self.config.node, "HA: handing the lead back to the primary");
        self.live.hold_dhcp_for_handover();
        let deadline = Instant::now() + timing.tick;
        while !stream.partner_has_all() {
            if Instant::now() >= deadline {
                tracing::warn!(node = %self.config.node, "HA: the primary fell behind; keeping the lead");
                self.live.hold_dhcp(None);
                return false;
            }
            sleep(Duration::from_millis(20)).await;
        }
        let _ = timeout(timing.tick, members.client().lease_revoke(lease)).await;
        true
    }

    /// One tick: wait (unless `retry`), then renew the lease and look at the leader key
    /// (taking it when free), both at once on the member in use; a failure moves on to the
    /// next member. Returns when the successful keepalive was sent, and the leader key when
    /// the transaction answered; `Err` when etcd says the lease is gone.
    async fn step(
        &self,
        members: &mut Members,
        lease: i64,
        timing: Timing,
        keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
        retry: bool,
    ) -> std::result::Result<(Option<Instant>, Option<Looked>), String> {
        if !retry {
            sleep(timing.tick).await;
        }
        let (mut renew, mut look) = (members.client(), members.client());
        let sent = Instant::now();
        let ttl = Duration::from_secs(self.config.lease_ttl.into());
        let look = async {
            match &self.scope_keys {
                None => campaign(&mut look, &self.keys, &self.config, lease)
                    .await
                    .map(|s| s.map(Looked::Leader)),
                Some(keys) => {
                    let (term, node) = (self.keys.term.as_str(), self.config.node.as_str());
                    let may_cover = self.started.elapsed() >= ttl;
                    balance::campaign(&mut look, keys, term, node, lease, may_cover)
                        .await
                        .map(|s| s.map(Looked::Scopes))
                }
            }
        };
        let (renewed, looked) = tokio::join!(
            timeout(timing.tick, keep_alive(&mut renew, lease, keeper)),
            timeout(timing.tick, look),
        );
        let alive = match renewed {
            Ok(Ok(ttl)) if ttl > 0 => Some(sent),
            Ok(Ok(_)) => return Err("etcd says the lease has expired".into()),
            failed => {
                self.status.keepalive_failed();
                tracing::debug!("HA: keepalive failed: {}", why(failed));
                *keeper = None;
                None
            }
        };
        let seen = match looked {
            Ok(Ok(seen)) => seen,
            failed => {
                tracing::debug!("HA: leader transaction failed: {}", why(failed));
                None
            }
        };
        if alive.is_none() || seen.is_none() {
            *keeper = None;
            members.next();
        }
        Ok((alive, seen))
    }

    /// Records `role` and holds DHCP back unless it leads.
    fn enter(&self, role: Role, seen: Option<(String, u64, u64)>) {
        let hold = match role {
            Role::Leader => None,
            Role::Standby => Some(Hold::Standby),
            Role::Fenced => Some(Hold::Fenced),
        };
        // Hold first, release last: a server never answers in a role it has not entered.
        if hold.is_some() {
            self.live.hold_dhcp(hold);
        }
        if hold.is_some() && self.scope_keys.is_some() {
            self.served.store(0, Ordering::SeqCst);
            for s in 0..2 {
                self.stop_waiting(s);
            }
            self.live.set_dhcp_scopes(0);
            self.status.set_scopes(Default::default(), 0);
        }
        if hold.is_some()
            && let Some(stream) = &self.stream
        {
            stream.follow();
        }
        let (epoch, term) = (seen.as_ref().map(|s| s.1), seen.as_ref().map(|s| s.2));
        if self.status.set(role, seen) {
            tracing::info!(node = %self.config.node, role = role.name(), epoch, term, "HA: role changed");
        }
        if hold.is_none() {
            self.live.hold_dhcp(None);
        }
    }

    /// Gives the lease back at shutdown, so the partner takes the leader key at once.
    async fn resign(&self, client: &mut Client, lease: i64, timing: Timing) {
        self.live.hold_dhcp(Some(Hold::Fenced));
        let _ = timeout(timing.tick, client.lease_revoke(lease)).await;
    }
}

/// The TLS of every etcd client, session and probe alike: trust `ca` alone, and show the
/// client identity when there is one.
fn tls_options(tls: &EtcdTls) -> TlsOptions {
    let options = TlsOptions::new().ca_certificate(Certificate::from_pem(&tls.ca.pem));
    match &tls.identity {
        Some((cert, key)) => options.identity(Identity::from_pem(&cert.pem, &key.pem)),
        None => options,
    }
}

/// Why a bounded etcd call failed, for the log.
fn why<T>(
    failed: std::result::Result<
        std::result::Result<T, etcd_client::Error>,
        tokio::time::error::Elapsed,
    >,
) -> String {
    match failed {
        Ok(Ok(_)) => "no error".to_owned(),
        Ok(Err(e)) => e.to_string(),
        Err(_) => "timed out".to_owned(),
    }
}

/// Sends one keepalive on the open stream (opening it when needed) and returns the TTL etcd
/// answered.
async fn keep_alive(
    client: &mut Client,
    lease: i64,
    keeper: &mut Option<(LeaseKeeper, LeaseKeepAliveStream)>,
) -> std::result::Result<i64, etcd_client::Error> {
    if keeper.is_none() {
        *keeper = Some(client.lease_keep_alive(lease).await?);
    }
    let Some((k, stream)) = keeper.as_mut() else {
        return Err(etcd_client::Error::LeaseKeepAliveError("no stream".into()));
    };
    k.keep_alive().await?;
    match stream.message().await? {
        Some(r) => Ok(r.ttl()),
        None => Err(etcd_client::Error::LeaseKeepAliveError(
            "the keepalive stream ended".into(),
        )),
    }
}

/// Takes the leader key under `lease` if nobody holds it (counting a new term), else reads
/// who does; either way reads the term count.
async fn campaign(
    client: &mut Client,
    keys: &Keys,
    config: &HaConfig,
    lease: i64,
) -> std::result::Result<Option<Seen>, etcd_client::Error> {
    let (key, term) = (keys.leader.as_str(), keys.term.as_str());
    let node = config.node.as_str();
    let txn = Txn::new()
        .when([Compare::create_revision(key, CompareOp::Equal, 0)])
        .and_then([
            TxnOp::put(key, node, Some(PutOptions::new().with_lease(lease))),
            TxnOp::put(term, node, None),
            TxnOp::get(term, None),
        ])
        .or_else([TxnOp::get(key, None), TxnOp::get(term, None)]);
    let (response, mut gets) = run(client, txn).await?;
    if response.succeeded() {
        let epoch = response.header().map_or(0, |h| h.revision());
        return Ok(Some(Seen {
            leader: config.node.clone(),
            epoch: u64::try_from(epoch).unwrap_or(0),
            term: count(gets.next().flatten()),
            mine: true,
        }));
    }
    // The key expired between the compare and the read: look again next tick.
    let Some(Some(kv)) = gets.next() else {
        return Ok(None);
    };
    Ok(Some(Seen {
        leader: String::from_utf8_lossy(kv.value()).into_owned(),
        epoch: u64::try_from(kv.create_revision()).unwrap_or(0),
        term: count(gets.next().flatten()),
        mine: kv.lease() == lease,
    }))
}

/// Runs `txn`; its response, and what each of its `get`s read (the first key, if any), in
/// order.
async fn run(
    client: &mut Client,
    txn: Txn,
) -> std::result::Result<
    (
        etcd_client::TxnResponse,
        std::vec::IntoIter<Option<etcd_client::KeyValue>>,
    ),
    etcd_client::Error,
> {
    let response = client.txn(txn).await?;
    let gets: Vec<_> = (response.op_responses().into_iter())
        .filter_map(|op| match op {
            TxnOpResponse::Get(get) => Some(get.kvs().first().cloned()),
            _ => None,
        })
        .collect();
    Ok((response, gets.into_iter()))
}

/// How many times the key read was put (0 when absent): the term count.
fn count(kv: Option<etcd_client::KeyValue>) -> u64 {
    kv.map_or(0, |kv| u64::try_from(kv.version()).unwrap_or(0))
}

/// Probes each etcd endpoint on its own every [`PROBE_EVERY`], for `status-get`.
async fn probe(endpoints: Vec<String>, options: ConnectOptions, status: Arc<Status>) {
    let mut clients = Vec::with_capacity(endpoints.len());
    for url in &endpoints {
        clients.push(Client::connect([url], Some(options.clone())).await);
    }
    loop {
        for (i, client) in clients.iter_mut().enumerate() {
            let health = match client {
                Err(e) => Err(e.to_string()),
                Ok(c) => match timeout(PROBE_EVERY / 2, c.status()).await {
                    Ok(Ok(_)) => Ok(()),
                    Ok(Err(e)) => Err(e.to_string()),
                    Err(_) => Err("timed out".to_owned()),
                },
            };
            status.set_endpoint(i, health);
        }
        sleep(PROBE_EVERY).await;
    }
}

#[cfg(test)]
mod tests {
    use super::Timing;
    use std::time::Duration;

    #[test]
    fn a_server_fences_itself_a_third_of_the_ttl_before_its_lease_can_expire() {
        let t = Timing::new(3);
        assert_eq!(t.tick, Duration::from_millis(500));
        assert_eq!(t.fence_after, Duration::from_secs(2));
        // A keepalive sent just before the fence deadline still answers before the lease ends.
        assert!(t.fence_after + t.tick < Duration::from_secs(3));
    }
}
