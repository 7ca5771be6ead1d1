//! Reload without restart: a new configuration built and checked off the hot path, then
//! swapped in at the workers' batch boundary. See docs/RELOAD.md.
//!
//! `Swap` is the one cell the workers read: a generation number they load once per batch,
//! and the `Running` set (config, each family's context and engine) behind a mutex that
//! only a worker that saw the generation move takes. [`Reloader`] makes a new `Running`: it
//! parses and validates the document, refuses keys that cannot change live
//! ([`FIXED_KEYS`]), builds the contexts and, only when the pools' layout changed beyond
//! what they exclude, new engines. Without new engines the swap is a publish: no worker
//! waits; addresses a new reservation takes out of a pool leave the running engines first
//! (`Engine::reserve`), those it gives back return after (`Engine::unreserve`). With them the
//! workers stop at a batch boundary (`Gate`), every lease of the old engine is restored
//! into the new one, and they go on with it. A lease whose address lies in no pool any more
//! and is reserved by nobody stays where it is until it expires ([`Orphans`]): the engine
//! keeps it at a fixed place, so it is never offered and a renewal is refused. The reloader
//! keeps the orphans' addresses ([`Orphan`]) and looks each up at a scrape, so
//! `lessor_leases{state="orphaned"}` counts those still bound.
//!
//! Reservations added at run time ([`reservations`]) are merged into every configuration a
//! reload makes, and a change to them is one more reload.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use lessor_engine::Exclusions;
use lessor_engine::engine_core::Config as EngineConfig;
use lessor_engine::v4::{Engine, Lease};
use lessor_engine::v6::{Engine as Engine6, Lease as Lease6, Resource};

use crate::config::{Config, ControlConfig};
use crate::control::Live;
use crate::lease_record::LeaseRecord;
use crate::v4::{self, InterfaceInfo};
use crate::v6;

mod impact;
pub mod reservations;
mod swap;

use impact::subnet_label;
pub use impact::{Impact, Orphans, impact};
use reservations::{MergeError, Store};
use swap::{PAUSE_WAIT, lock};
pub(crate) use swap::{Running, Swap};

/// Whether two configs agree on one key that only a restart changes.
type Same = fn(&Config, &Config) -> bool;

/// The keys that only a restart changes (sockets, threads, the journal, the control server),
/// each with its comparison.
pub const FIXED_KEYS: &[(&str, Same)] = &[
    ("interfaces", |a, b| a.interfaces == b.interfaces),
    ("port", |a, b| a.port == b.port),
    ("state_dir", |a, b| a.state_dir == b.state_dir),
    ("workers", |a, b| a.workers == b.workers),
    ("log_level", |a, b| a.log_level == b.log_level),
    ("journal.sync", |a, b| a.journal.sync == b.journal.sync),
    ("journal.max_backlog", |a, b| {
        a.journal.max_backlog == b.journal.max_backlog
    }),
    ("journal.preallocate", |a, b| {
        a.journal.preallocate == b.journal.preallocate
    }),
    ("journal.realtime_sync", |a, b| {
        a.journal.realtime_sync == b.journal.realtime_sync
    }),
    ("control (on or off)", |a, b| {
        a.control.is_some() == b.control.is_some()
    }),
    ("control.listen", |a, b| {
        a.control.as_ref().map(|c| c.listen) == b.control.as_ref().map(|c| c.listen)
    }),
    ("control.user / control.password", |a, b| {
        a.control == b.control
    }),
    ("ha", |a, b| a.ha == b.ha),
    ("v6.port", |a, b| a.v6.port == b.v6.port),
    ("v6.server_duid", |a, b| {
        a.v6.server_duid == b.v6.server_duid
    }),
    ("v6 (turning DHCPv6 on or off)", |a, b| {
        a.v6.enabled() == b.v6.enabled()
    }),
];

/// The first key of [`FIXED_KEYS`] that differs between `running` and `new`.
pub fn fixed_key_changed(running: &Config, new: &Config) -> Option<&'static str> {
    FIXED_KEYS
        .iter()
        .find(|(_, same)| !same(running, new))
        .map(|&(key, _)| key)
}

/// What the command line changed in the file's config; a reload of the file changes it the
/// same way, so that the file's own values do not count as a change.
#[derive(Clone, Debug, Default)]
pub struct Overrides {
    /// `--port`.
    pub port: Option<u16>,
    /// `--workers`.
    pub workers: Option<usize>,
    /// `--control`, as it resolved at startup.
    pub control: Option<Option<ControlConfig>>,
}

impl Overrides {
    /// Applies the command line to a config read from the file.
    pub fn apply(&self, config: &mut Config) {
        if let Some(p) = self.port {
            config.port = p;
        }
        if let Some(w) = self.workers {
            config.workers = Some(w);
        }
        if let Some(c) = &self.control {
            config.control.clone_from(c);
        }
    }
}

/// How the last reload went, for `status-get`.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// When the last reload (successful or not) finished.
    pub at: Option<Instant>,
    /// Its error, `None` when it succeeded.
    pub error: Option<String>,
    /// How long the workers paused for it, when it rebuilt the engines.
    pub pause: Option<Duration>,
    /// Leases it left orphaned.
    pub orphaned: u64,
    /// The same, per subnet (its CIDR, or "none").
    pub orphaned_by_subnet: BTreeMap<String, u64>,
}

/// A lease a reload left outside every pool, tracked until it ends.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Orphan {
    /// Its address, or its prefix's first address.
    pub addr: IpAddr,
    /// The prefix length of a DHCPv6 prefix; 128 for a DHCPv6 address, 32 for DHCPv4.
    pub len: u8,
    /// The subnet (CIDR) it was in, or "none"; the subnet may be gone.
    pub subnet: String,
}

/// What a successful reload did.
#[derive(Clone, Debug)]
pub struct Outcome {
    /// What it changes in the leases.
    pub impact: Impact,
    /// How long the workers paused (`None`: no pause, the config was published).
    pub pause: Option<Duration>,
    /// DHCPv6 assignments now loaded (`None` when DHCPv6 is off).
    pub assignments: Option<usize>,
}

/// What the reloader needs of the server that does not come from the config.
#[derive(Debug)]
pub(crate) struct Host {
    pub(crate) infos: Vec<InterfaceInfo>,
    pub(crate) infos6: Vec<v6::InterfaceInfo>,
    /// Worker threads in all (both families): how many the gate waits for.
    pub(crate) threads: usize,
    /// Shards per engine.
    pub(crate) shards: usize,
}

/// Makes and applies reloads, one at a time (SIGHUP, `config-reload`, `config-set`).
#[derive(Debug)]
pub struct Reloader {
    /// Held for the whole of a reload: reloads never overlap.
    busy: Mutex<()>,
    swap: Arc<Swap>,
    host: Host,
    live: Weak<Live>,
    source: Mutex<Option<(PathBuf, Overrides)>>,
    /// The configuration as given (file, `config-set`), without the run-time reservations.
    given: Mutex<Arc<Config>>,
    /// The run-time reservations, as on disk.
    store: Mutex<Store>,
    status: Mutex<Status>,
    /// The leases reloads orphaned that may still be bound: few, pruned at each look.
    orphans: Mutex<Vec<Orphan>>,
    successes: AtomicU64,
    failures: AtomicU64,
    /// Seconds since the epoch of the last successful reload (of the start until then).
    last_success: AtomicU64,
}

/// The new running set a reload would install, built off the hot path.
struct Plan {
    running: Running,
    /// New engines to fill from the old ones (v4, v6).
    fresh: (Option<Engine>, Option<Engine6>),
    /// What the engines kept change at run time: addresses their pools now exclude (a
    /// reservation added inside a pool), or no longer do.
    exclusions: (Exclusions<Ipv4Addr>, Exclusions<Resource>),
    impact: Impact,
    assignments: Option<usize>,
}

/// No exclusion changes.
fn unchanged<A>() -> Exclusions<A> {
    Exclusions {
        reserve: Vec::new(),
        unreserve: Vec::new(),
    }
}

/// The layout `new` asks of `engine`, built from `old`: kept as it is (`None`), with the
/// exclusions it can change at run time, or `Some` fresh engine.
fn relayout<S, A, E>(
    old: &EngineConfig<S>,
    new: EngineConfig<S>,
    room: usize,
    changes: impl Fn(&EngineConfig<S>, &EngineConfig<S>) -> Option<Exclusions<A>>,
    build: impl FnOnce(EngineConfig<S>) -> Result<E, String>,
) -> Result<(Option<E>, Exclusions<A>), String>
where
    S: PartialEq,
{
    if *old == new {
        return Ok((None, unchanged()));
    }
    match changes(old, &new).filter(|c| c.len() <= room) {
        Some(c) => Ok((None, c)),
        None => build(new).map(|e| (Some(e), unchanged())),
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl Reloader {
    /// A reloader of `swap`, whose running config is `given` with `store` merged in.
    pub(crate) fn new(
        swap: Arc<Swap>,
        host: Host,
        live: &Arc<Live>,
        given: Config,
        store: Store,
    ) -> Reloader {
        Reloader {
            busy: Mutex::new(()),
            swap,
            host,
            live: Arc::downgrade(live),
            source: Mutex::new(None),
            given: Mutex::new(Arc::new(given)),
            store: Mutex::new(store),
            status: Mutex::new(Status::default()),
            orphans: Mutex::new(Vec::new()),
            successes: AtomicU64::new(0),
            failures: AtomicU64::new(0),
            last_success: AtomicU64::new(unix_now()),
        }
    }

    /// Where `config-reload` and SIGHUP read the config from, and what the command line
    /// changes in it.
    pub fn set_source(&self, path: PathBuf, overrides: Overrides) {
        *lock(&self.source) = Some((path, overrides));
    }

    /// The file reloads read, if any.
    pub fn source(&self) -> Option<PathBuf> {
        lock(&self.source).as_ref().map(|(p, _)| p.clone())
    }

    /// The running configuration as given (the file or `config-set`): what `config-get`
    /// shows and `config-write` writes, without the run-time reservations.
    pub fn running(&self) -> Arc<Config> {
        Arc::clone(&lock(&self.given))
    }

    /// The configuration served (run-time reservations merged in), and the run-time
    /// reservations.
    pub fn reservations(&self) -> (Arc<Config>, Store) {
        let _one = lock(&self.busy);
        (
            Arc::clone(&self.swap.current().config),
            lock(&self.store).clone(),
        )
    }

    /// Changes the run-time reservations with `edit` and makes the result live: checked by
    /// building the whole configuration with them, written durably to the state directory,
    /// then swapped in as a reload is. On any error nothing changes.
    pub fn edit_reservations(
        &self,
        edit: impl FnOnce(&mut Store) -> Result<(), MergeError>,
    ) -> Result<Outcome, MergeError> {
        let _one = lock(&self.busy);
        let old = lock(&self.store).clone();
        let mut new = old.clone();
        edit(&mut new)?;
        let given = Arc::clone(&lock(&self.given));
        let merged = reservations::merge(&given, &new)?;
        let fail = |e: String| MergeError {
            host: None,
            argument: None,
            reason: e,
            conflict: false,
        };
        let plan = self.plan(merged, false).map_err(fail)?;
        let dir = &given.state_dir;
        new.save(dir).map_err(|e| {
            fail(format!(
                "writing {}: {e}; nothing changed",
                Store::path(dir).display()
            ))
        })?;
        match self.commit(plan) {
            Ok(o) => {
                let (v4, v6) = (new.v4.len(), new.v6.len());
                *lock(&self.store) = new;
                tracing::info!(
                    v4,
                    v6,
                    pause_us = o.pause.map(|p| p.as_micros() as u64),
                    "run-time reservations changed"
                );
                Ok(o)
            }
            Err(e) => {
                if let Err(w) = old.save(dir) {
                    tracing::error!(error = %w, "cannot put the run-time reservations back");
                }
                Err(fail(e))
            }
        }
    }

    /// Waits until every worker has finished the batches it began before this call (an idle
    /// one within its receive timeout): what it read then, such as the load-balancing
    /// scopes, it no longer uses. False after a few seconds.
    pub(crate) fn workers_past_batch(&self) -> bool {
        let generation = self.swap.nudge();
        self.swap.settle(generation)
    }

    /// Load balancing: makes the running engines' pools of `scope` give no free address
    /// (`waiting`) or give them again (docs/HA.md, "Load balancing", `mclt`). Engines a
    /// reload builds start giving: the HA agent sets it again every tick while it lasts.
    pub(crate) fn set_waiting(&self, scope: usize, waiting: bool) {
        let r = self.swap.current();
        for pool in r.v4.pools_of_scope(scope) {
            r.engine.set_waiting(pool, waiting);
        }
        if let Some((ctx, engine)) = &r.v6 {
            for pool in ctx.pools_of_scope(scope) {
                engine.set_waiting(pool, waiting);
            }
        }
    }

    /// The engines in use.
    pub fn engines(&self) -> (Arc<Engine>, Option<Arc<Engine6>>) {
        let r = self.swap.current();
        (
            Arc::clone(&r.engine),
            r.v6.as_ref().map(|(_, e)| Arc::clone(e)),
        )
    }

    /// How the last reload went.
    pub fn status(&self) -> Status {
        lock(&self.status).clone()
    }

    /// The orphans still bound at `now` in the running engines and still outside every pool
    /// of the running config; forgets the others (ended, deleted, or in a pool again).
    pub fn orphans(&self, now: lessor_engine::Time) -> Vec<Orphan> {
        let mut tracked = lock(&self.orphans);
        if tracked.is_empty() {
            return Vec::new();
        }
        let r = self.swap.current();
        let empty = Arc::default();
        let assigned = r.v6.as_ref().map_or(&empty, |(c, _)| c.assignments());
        let rules = Orphans::new(&r.config, assigned);
        tracked.retain(|o| match o.addr {
            IpAddr::V4(a) => (r.engine.get(a)).is_some_and(|l| l.expires > now && rules.v4(&l)),
            IpAddr::V6(addr) => r.v6.as_ref().is_some_and(|(_, e)| {
                (e.get(Resource { addr, len: o.len }))
                    .is_some_and(|l| l.expires > now && rules.v6(&l))
            }),
        });
        tracked.clone()
    }

    /// Reloads that succeeded and failed so far, and when the last success was (seconds since
    /// the epoch; the start until one succeeds).
    pub fn counts(&self) -> (u64, u64, u64) {
        (
            self.successes.load(Ordering::Relaxed),
            self.failures.load(Ordering::Relaxed),
            self.last_success.load(Ordering::Relaxed),
        )
    }

    /// Re-reads the file given on the command line (SIGHUP, `config-reload`).
    pub fn reload_file(&self) -> Result<Outcome, String> {
        self.apply(|| {
            let Some((path, overrides)) = lock(&self.source).clone() else {
                return Err(
                    "no configuration file to reload: lessor runs on its built-in \
                            default (start it with --config FILE)"
                        .to_owned(),
                );
            };
            let mut c = Config::from_file(&path).map_err(|e| e.to_string())?;
            overrides.apply(&mut c);
            Ok(c)
        })
    }

    /// Makes the config `load` gives the running one (`config-set`); a failure to load
    /// counts as a failed reload.
    pub fn set(&self, load: impl FnOnce() -> Result<Config, String>) -> Result<Outcome, String> {
        self.apply(load)
    }

    /// Says what making `config` the running one would do, changing nothing (`config-test`).
    pub fn test(&self, config: &Config) -> Result<Impact, String> {
        let _one = lock(&self.busy);
        let merged = self.merged(config)?;
        self.plan(merged, true).map(|p| p.impact)
    }

    /// `given` with the run-time reservations merged in; an error names the store's file.
    fn merged(&self, given: &Config) -> Result<Config, String> {
        let store = lock(&self.store);
        reservations::merge(given, &store)
            .map_err(|e| e.in_file(&Store::path(&given.state_dir), &store))
    }

    /// Loads, plans and commits one reload; records how it went either way.
    fn apply(&self, load: impl FnOnce() -> Result<Config, String>) -> Result<Outcome, String> {
        let _one = lock(&self.busy);
        let result = load().and_then(|given| {
            let plan = self.plan(self.merged(&given)?, false)?;
            let outcome = self.commit(plan)?;
            *lock(&self.given) = Arc::new(given);
            Ok(outcome)
        });
        let mut status = lock(&self.status);
        status.at = Some(Instant::now());
        match &result {
            Ok(o) => {
                self.successes.fetch_add(1, Ordering::Relaxed);
                self.last_success.store(unix_now(), Ordering::Relaxed);
                status.error = None;
                status.pause = o.pause;
                status.orphaned = o.impact.orphans();
                status.orphaned_by_subnet.clone_from(&o.impact.orphaned);
                tracing::info!(
                    pause_us = o.pause.map(|p| p.as_micros() as u64),
                    orphaned = o.impact.orphans(),
                    added = ?o.impact.added,
                    removed = ?o.impact.removed,
                    "configuration reloaded"
                );
            }
            Err(e) => {
                self.failures.fetch_add(1, Ordering::Relaxed);
                status.error = Some(e.clone());
                tracing::error!(error = %e, "configuration not reloaded; the running one stays");
            }
        }
        result
    }

    /// Checks `config` against the running one and builds what would replace it. With
    /// `leases` the impact looks at every lease (`config-test`); a reload counts the orphans
    /// while it moves the leases instead, and reads none when the pools stay as they are.
    fn plan(&self, config: Config, leases: bool) -> Result<Plan, String> {
        let now = self.swap.current();
        if let Some(key) = fixed_key_changed(&now.config, &config) {
            return Err(format!(
                "{key}: cannot change while lessor runs; restart to change it"
            ));
        }
        let v4 = Arc::new(v4::Context::new(&config, &self.host.infos));
        let (fresh4, exclusions4) = relayout(
            &now.v4.engine_config(self.host.shards),
            v4.engine_config(self.host.shards),
            now.engine.exclusion_room(),
            lessor_engine::v4::EngineConfig::exclusion_changes,
            |layout| Engine::new(layout).map_err(|e| format!("v4: {e}")),
        )?;
        let (mut v6, mut fresh6, mut assignments) = (None, None, None);
        let mut exclusions6 = unchanged();
        let mut table = crate::config::Assignments::default();
        if let Some((ctx6, engine6)) = &now.v6 {
            table = config
                .load_assignments()
                .map_err(|e| format!("v6.assignments_file: {e}"))?;
            assignments = Some(table.len());
            let duid = v6::server_duid(&config).map_err(|e| format!("v6.server_duid: {e}"))?;
            let ctx = v6::Context::new(&config, &duid, &self.host.infos6, Arc::new(table.clone()));
            (fresh6, exclusions6) = relayout(
                &ctx6.engine_config(self.host.shards),
                ctx.engine_config(self.host.shards),
                engine6.exclusion_room(),
                lessor_engine::v6::EngineConfig::exclusion_changes,
                |layout| Engine6::new(layout).map_err(|e| format!("v6: {e}")),
            )?;
            v6 = Some((Arc::new(ctx), Arc::clone(engine6)));
        }
        let (leases, leases6) = match leases {
            true => (
                now.engine.leases(),
                now.v6.as_ref().map(|(_, e)| e.leases()).unwrap_or_default(),
            ),
            false => Default::default(),
        };
        let mut impact = impact(
            Some(&now.config),
            &config,
            &table,
            (&leases, &leases6),
            crate::worker::now(),
        );
        impact.rebuild = fresh4.is_some() || fresh6.is_some();
        Ok(Plan {
            running: Running {
                config: Arc::new(config),
                v4,
                engine: Arc::clone(&now.engine),
                v6,
            },
            fresh: (fresh4, fresh6),
            exclusions: (exclusions4, exclusions6),
            impact,
            assignments,
        })
    }

    /// Installs `plan`: a publish, or (new engines) a pause in which every lease moves over.
    fn commit(&self, plan: Plan) -> Result<Outcome, String> {
        let Plan {
            mut running,
            fresh,
            exclusions,
            mut impact,
            assignments,
        } = plan;
        // Addresses newly reserved inside a pool leave the engines kept before the new tables
        // are published (no client is offered one in between); freed ones come back after.
        let mut pause = None;
        let live = self.live.upgrade();
        let follow = |live: &Option<Arc<Live>>| {
            if let Some(live) = live {
                live.follow(&self.swap.current());
            }
        };
        if let (None, None) = fresh {
            exclude(&running, &exclusions)?;
            let generation = self.swap.publish(running);
            follow(&live);
            // A worker still in a batch begun on the old tables could give an address
            // given back as a reservation: wait until every worker has left them.
            let gives_back =
                !exclusions.0.unreserve.is_empty() || !exclusions.1.unreserve.is_empty();
            if gives_back && !self.swap.settle(generation) {
                tracing::warn!(
                    "a worker did not take the new tables within {PAUSE_WAIT:?}; \
                         addresses no longer reserved go back to the pools anyway"
                );
            }
        } else {
            // No control command runs while the engines change hands: a lease write lands
            // in the old engine before the move, or in the new one after.
            let _quiet = live.as_ref().map(|l| l.quiet());
            let started = Instant::now();
            if !self.swap.pause(self.host.threads) {
                return Err(format!(
                    "the workers did not reach a batch boundary within {PAUSE_WAIT:?}; \
                     nothing changed"
                ));
            }
            if let Err(e) = exclude(&running, &exclusions) {
                self.swap.resume();
                return Err(e);
            }
            let gathered = started.elapsed();
            let old = self.swap.current();
            let (fresh4, fresh6) = fresh;
            let config = Arc::clone(&running.config);
            let empty = Arc::default();
            let assigned = running.v6.as_ref().map_or(&empty, |(c, _)| c.assignments());
            let orphans = Orphans::new(&config, assigned);
            let now = crate::worker::now();
            let orphaned = &mut impact.orphaned;
            // Held until the new engines are in: a scrape never checks the set against the
            // wrong ones. A rebuilt family's orphans are all seen again as its leases move.
            let mut tracked = lock(&self.orphans);
            let mut found = Vec::new();
            let mut seen = |addr, len| {
                let subnet = subnet_label(Some(&old.config), &config, addr);
                *orphaned.entry(subnet.clone()).or_default() += 1;
                found.push(Orphan { addr, len, subnet });
            };
            if let Some(new) = fresh4 {
                move_leases4(&old.engine, &new, |l| {
                    if l.expires > now && orphans.v4(l) {
                        seen(IpAddr::V4(l.address), 32);
                    }
                });
                running.engine = Arc::new(new);
                tracked.retain(|o| o.addr.is_ipv6());
            }
            if let (Some(new), Some((_, engine))) = (fresh6, running.v6.as_mut()) {
                move_leases6(engine, &new, |l| {
                    if l.expires > now && orphans.v6(l) {
                        seen(IpAddr::V6(l.resource.addr), l.resource.len);
                    }
                });
                *engine = Arc::new(new);
                tracked.retain(|o| o.addr.is_ipv4());
            }
            tracked.append(&mut found);
            self.swap.publish(running);
            drop(tracked);
            self.swap.resume();
            let took = started.elapsed();
            tracing::info!(
                pause_us = took.as_micros() as u64,
                reaching_the_gate_us = gathered.as_micros() as u64,
                "the workers paused while the pools were rebuilt"
            );
            pause = Some(took);
            follow(&live);
        }
        include(&self.swap.current(), &exclusions);
        Ok(Outcome {
            impact,
            pause,
            assignments,
        })
    }
}

/// Takes the addresses `exclusions` newly reserves out of `running`'s engines; on an error
/// puts back those it took.
fn exclude(
    running: &Running,
    (v4, v6): &(Exclusions<Ipv4Addr>, Exclusions<Resource>),
) -> Result<(), String> {
    let engine6 = running.v6.as_ref().map(|(_, e)| e);
    let (mut done4, mut done6) = (Vec::new(), Vec::new());
    let mut take = || -> Result<(), lessor_engine::ReserveError> {
        for &a in &v4.reserve {
            if running.engine.reserve(a)? {
                done4.push(a);
            }
        }
        for (&r, e) in v6.reserve.iter().filter_map(|r| Some((r, engine6?))) {
            if e.reserve(r)? {
                done6.push(r);
            }
        }
        Ok(())
    };
    take().map_err(|e| {
        for a in done4 {
            let _ = running.engine.unreserve(a);
        }
        for (r, e) in done6.into_iter().filter_map(|r| Some((r, engine6?))) {
            let _ = e.unreserve(r);
        }
        format!("{e}; nothing changed")
    })
}

/// Puts the addresses `exclusions` no longer reserves back into the pools of `running`'s
/// engines (taken from the swap: a rebuild replaced only the other family's).
fn include(running: &Running, (v4, v6): &(Exclusions<Ipv4Addr>, Exclusions<Resource>)) {
    let failed = (v4.unreserve.iter())
        .filter(|&&a| running.engine.unreserve(a).is_err())
        .count()
        + (v6.unreserve.iter())
            .filter(|&&r| {
                running
                    .v6
                    .as_ref()
                    .is_some_and(|(_, e)| e.unreserve(r).is_err())
            })
            .count();
    if failed > 0 {
        tracing::warn!(
            failed,
            "addresses no longer reserved stay out of their pools until the next rebuild"
        );
    }
}

/// Copies every record of `old` into `new` (fresh), on the shard its client steers to,
/// showing each to `seen` first, and raises `new`'s versions to `old`'s.
fn move_leases4(old: &Engine, new: &Engine, mut seen: impl FnMut(&Lease)) {
    let leases = old.leases();
    let mut r = new.restorer(leases.len());
    let mut refused = 0u64;
    for l in leases {
        seen(&l);
        let rec = LeaseRecord::from_lease(&l, 0);
        let shard = v4::steer_hash(&rec.chaddr_field()) as usize % new.shards();
        refused += u64::from(r.add(shard, l).is_err());
    }
    refused += r.finish().refused;
    new.advance_versions(old.max_version());
    if refused > 0 {
        tracing::warn!(refused, "DHCPv4 records not carried over by the reload");
    }
}

/// [`move_leases4`] for DHCPv6.
fn move_leases6(old: &Engine6, new: &Engine6, mut seen: impl FnMut(&Lease6)) {
    let leases = old.leases();
    let mut r = new.restorer(leases.len());
    let mut refused = 0u64;
    for l in leases {
        seen(&l);
        let shard = new.owner(l.client.duid());
        refused += u64::from(r.add(shard, l).is_err());
    }
    refused += r.finish().refused;
    new.advance_versions(old.max_version());
    if refused > 0 {
        tracing::warn!(refused, "DHCPv6 records not carried over by the reload");
    }
}

/// `lessor check-config FILE --against STATE_DIR`: what making `new` the running config
/// would do to the leases in the journal of `state_dir`, read without writing; `old` is the
/// running config when known (for the subnets added and removed). Both get the run-time
/// reservations of `state_dir`, as the server would merge them.
pub fn check_against(
    state_dir: &std::path::Path,
    old: Option<&Config>,
    new: &Config,
) -> Result<Impact, String> {
    let dir = crate::state_dir::journal_dir(state_dir);
    if !dir.is_dir() {
        return Err(format!("--against: no journal in {}", dir.display()));
    }
    let store = Store::load(state_dir)?;
    let merge = |c: &Config| {
        reservations::merge(c, &store).map_err(|e| e.in_file(&Store::path(state_dir), &store))
    };
    let new = &merge(new)?;
    let old = old.map(merge).transpose()?;
    let old = old.as_ref();
    let (records, _) = lessor_journal::read_live::<LeaseRecord>(&dir)
        .map_err(|e| format!("reading the journal in {}: {e}", dir.display()))?;
    let leases: Vec<Lease> = records.iter().filter_map(LeaseRecord::to_lease).collect();
    let leases6: Vec<Lease6> = records
        .iter()
        .filter_map(LeaseRecord::to_v6_lease)
        .collect();
    let assigned = new
        .load_assignments()
        .map_err(|e| format!("v6.assignments_file: {e}"))?;
    Ok(impact(
        old,
        new,
        &assigned,
        (&leases, &leases6),
        crate::worker::now(),
    ))
}

#[cfg(test)]
mod tests;
