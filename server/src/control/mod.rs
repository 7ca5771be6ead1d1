//! The control server: Kea's command channel, health and readiness, on a tokio runtime of
//! its own thread, never on a worker.
//!
//! It starts before the journal is replayed, so that `/ready` can say 503 while the server
//! starts; [`Live::serve`] hands it the engines and counters once every socket is bound.
//! Commands run on tokio's blocking pool: a listing walks the shards, and the workers only
//! ever meet it as one more taker of a shard's lock, briefly. See docs/CONTROL.md.

mod commands;
mod config;
mod dhcp;
mod http;
mod kea;
mod leases;
mod metrics;
mod reservations;
mod rest;
mod usage;
mod writes;

pub(crate) use dhcp::{Hold, drop_reason, ha_held};

use std::net::{SocketAddr, TcpListener};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::thread;
use std::time::Instant;

use lessor_engine::{v4, v6};
use lessor_journal::{Health, Lane, Monitor};

use crate::config::{Config, ControlConfig};
use crate::error::{Error, Result};
use crate::lease_record::LeaseRecord;
use crate::stats::WorkerStats;

/// What the control server sees of the running server, filled in as it starts.
#[derive(Debug)]
pub struct Live {
    started: Instant,
    /// Replaced whole at each reload, so that a command sees one generation throughout.
    parts: RwLock<Option<Arc<Parts>>>,
    /// Held (shared) by every command but the `config-*` ones, and exclusively by a reload
    /// while it swaps the engines: a lease write never lands in an engine being replaced.
    commands: RwLock<()>,
    stopping: AtomicBool,
    dhcp: dhcp::Switch,
}

/// The running server's engines and counters.
#[derive(Clone)]
pub struct Parts {
    /// When the server started.
    pub started: Instant,
    /// The running configuration.
    pub config: Arc<Config>,
    /// The DHCPv4 engine.
    pub engine: Arc<v4::Engine>,
    /// The DHCPv6 engine, when DHCPv6 is on.
    pub engine6: Option<Arc<v6::Engine>>,
    /// The DHCPv4 workers' counters.
    pub stats: Arc<[WorkerStats]>,
    /// The DHCPv6 workers' counters (empty when DHCPv6 is off).
    pub stats6: Arc<[WorkerStats]>,
    /// Reads the journal's health and counters.
    pub journal: Monitor,
    /// The journal lane of the control server's lease writes; no worker touches it.
    pub lane: Arc<Mutex<Lane<LeaseRecord>>>,
    /// Makes reloads, and says how the last one went.
    pub reload: Arc<crate::reload::Reloader>,
    /// The HA agent's state, when `ha` is set.
    pub ha: Option<Arc<crate::ha::Status>>,
}

impl std::fmt::Debug for Parts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Parts")
            .field("workers", &self.stats.len())
            .field("dhcp6", &self.engine6.is_some())
            .finish_non_exhaustive()
    }
}

impl Parts {
    fn journal_health(&self) -> Health {
        self.journal.health()
    }
}

impl Live {
    /// A server that is starting.
    pub fn new() -> Arc<Live> {
        Arc::new(Live {
            started: Instant::now(),
            parts: RwLock::new(None),
            commands: RwLock::new(()),
            stopping: AtomicBool::new(false),
            dhcp: dhcp::Switch::default(),
        })
    }

    /// The server is serving: every socket is bound and the journal replayed.
    pub fn serve(&self, parts: Parts) {
        *self.parts.write().unwrap_or_else(PoisonError::into_inner) = Some(Arc::new(parts));
    }

    /// A reload installed `running`: commands from now on read its config and engines.
    pub(crate) fn follow(&self, running: &crate::reload::Running) {
        let mut slot = self.parts.write().unwrap_or_else(PoisonError::into_inner);
        if let Some(old) = slot.as_ref() {
            let mut parts = Parts::clone(old);
            parts.config = Arc::clone(&running.config);
            parts.engine = Arc::clone(&running.engine);
            parts.engine6 = running.v6.as_ref().map(|(_, e)| Arc::clone(e));
            *slot = Some(Arc::new(parts));
        }
    }

    /// Taken by a command while it runs (see `commands`).
    fn command(&self) -> RwLockReadGuard<'_, ()> {
        self.commands.read().unwrap_or_else(PoisonError::into_inner)
    }

    /// Taken by a reload while it replaces the engines: no command runs meanwhile.
    pub(crate) fn quiet(&self) -> RwLockWriteGuard<'_, ()> {
        self.commands
            .write()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The server is shutting down: `/ready` says so.
    pub fn stop(&self) {
        self.stopping.store(true, Ordering::Relaxed);
    }

    /// The flag the workers read: not 0 while DHCP is disabled (`dhcp-disable`) or held.
    pub fn dhcp_disabled(&self) -> Arc<AtomicU8> {
        self.dhcp.flag()
    }

    /// The count the workers read of HA holds begun: each one drops the replies waiting.
    pub fn dhcp_holds(&self) -> Arc<AtomicU64> {
        self.dhcp.holds()
    }

    /// The mask the workers read of the load-balancing scopes they answer (bit `s` for scope
    /// `s`, see [`crate::scope`]): every scope until [`Live::set_dhcp_scopes`].
    pub fn dhcp_scopes(&self) -> Arc<AtomicU8> {
        self.dhcp.scopes()
    }

    /// Has the workers answer the load-balancing scopes in `mask` (the HA agent, at a takeover
    /// or hand-back); each worker sees it from its next batch on. Ignored outside
    /// load-balancing.
    pub(crate) fn set_dhcp_scopes(&self, mask: u8) {
        self.dhcp.set_scopes(mask);
    }

    /// Holds DHCP back while the leader hands the lead over, keeping the replies waiting.
    pub(crate) fn hold_dhcp_for_handover(&self) {
        self.dhcp.hold_for_handover();
    }

    /// Drops the replies still waiting once the lead is handed over: a lease bound after
    /// the partner's last ack may be unknown to it.
    pub(crate) fn drop_waiting_replies(&self) {
        self.dhcp.drop_waiting();
    }

    /// Holds DHCP back for the HA agent, or lets it go (`dhcp-enable` does not lift a hold).
    pub(crate) fn hold_dhcp(&self, hold: Option<Hold>) {
        self.dhcp.set_hold(hold);
    }

    fn parts(&self) -> Option<Arc<Parts>> {
        self.parts
            .read()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Why the server is not ready to serve, or `None` when it is.
    fn not_ready(&self) -> Option<&'static str> {
        if self.stopping.load(Ordering::Relaxed) {
            Some("stopping")
        } else if self.parts().is_none() {
            Some("starting: loading the journal and binding sockets")
        } else if let Some(hold) = self.dhcp.hold() {
            Some(match hold {
                Hold::Standby => "HA standby: another server holds the leader key",
                Hold::Fenced => "HA fenced: this server cannot show its etcd lease is alive",
            })
        } else if self.dhcp.is_disabled() {
            Some("DHCP is disabled (dhcp-disable)")
        } else {
            None
        }
    }

    /// When the server started.
    pub fn started(&self) -> Instant {
        self.started
    }
}

/// A running control server; dropping it stops it.
#[derive(Debug)]
pub struct Control {
    addr: SocketAddr,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Control {
    /// Binds `settings.listen` (an error names the address) and serves on a thread of its own.
    pub fn start(settings: &ControlConfig, live: Arc<Live>) -> Result<Control> {
        let listener = TcpListener::bind(settings.listen)
            .and_then(|l| l.set_nonblocking(true).map(|()| l))
            .map_err(|source| Error::Control {
                what: format!("binding the control server to {}", settings.listen),
                source,
            })?;
        let addr = listener.local_addr().map_err(|source| Error::Control {
            what: "reading the control server's address".into(),
            source,
        })?;
        let auth = settings
            .credentials
            .as_ref()
            .map(|(u, p)| http::basic_auth(u, p));
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .enable_time()
            .max_blocking_threads(4)
            .thread_name("lessor-control")
            .on_thread_start(lower_priority)
            .build()
            .map_err(|source| Error::Control {
                what: "starting the control server's runtime".into(),
                source,
            })?;
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let router = http::router(live, auth);
        let thread = thread::Builder::new()
            .name("lessor-control".into())
            .spawn(move || {
                lower_priority();
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            tracing::error!("control server: {e}");
                            return;
                        }
                    };
                    let serve = axum::serve(listener, router).with_graceful_shutdown(async {
                        let _ = rx.await;
                    });
                    if let Err(e) = serve.await {
                        tracing::error!("control server: {e}");
                    }
                });
            })
            .map_err(|source| Error::Control {
                what: "starting the control server's thread".into(),
                source,
            })?;
        Ok(Control {
            addr,
            shutdown: Some(tx),
            thread: Some(thread),
        })
    }

    /// The address it listens on (the port is the kernel's choice when `listen` said 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.addr
    }
}

/// The control threads' nice value: the lowest priority, so that a listing of every lease
/// takes a worker's core almost only while the worker waits (docs/PERFORMANCE.md, "The
/// control API's cost"). A scrape is small and still answers within milliseconds.
const CONTROL_NICE: i32 = 19;

/// Runs the calling control thread at [`CONTROL_NICE`].
fn lower_priority() {
    if let Err(e) = lessor_net::set_current_thread_nice(CONTROL_NICE) {
        tracing::warn!(error = %e, "cannot lower the control server's priority");
    }
}

impl Drop for Control {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
