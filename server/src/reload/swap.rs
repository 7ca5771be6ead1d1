//! The cell the workers read the running configuration from, and the gate that pauses them
//! while the engines are rebuilt (docs/RELOAD.md).

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use lessor_engine::v4::Engine;
use lessor_engine::v6::Engine as Engine6;

use crate::config::Config;
use crate::{v4, v6};

/// How long a reload that rebuilds the engines waits for every worker to reach a batch
/// boundary before it gives up (an idle worker gets there within its receive timeout).
pub(super) const PAUSE_WAIT: Duration = Duration::from_secs(3);

/// What the workers run on: one generation of the configuration.
#[derive(Debug)]
pub(crate) struct Running {
    /// The configuration served: the one given, with the run-time reservations merged in.
    pub(crate) config: Arc<Config>,
    pub(crate) v4: Arc<v4::Context>,
    pub(crate) engine: Arc<Engine>,
    /// DHCPv6's context and engine, when it is on.
    pub(crate) v6: Option<(Arc<v6::Context>, Arc<Engine6>)>,
}

/// The cell workers read the running configuration from, and the gate that pauses them.
#[derive(Debug)]
pub(crate) struct Swap {
    generation: AtomicU64,
    current: Mutex<Arc<Running>>,
    gate: Gate,
    /// The generation each worker (by its journal lane) last took; written only when the
    /// generation moved.
    taken: Box<[AtomicU64]>,
}

/// Stops every worker at a batch boundary while the engines are rebuilt.
#[derive(Debug, Default)]
struct Gate {
    state: Mutex<GateState>,
    moved: Condvar,
}

#[derive(Debug, Default)]
struct GateState {
    /// A pause is asked for.
    closed: bool,
    /// Workers waiting at the gate.
    arrived: usize,
    /// Bumped at each opening, so a waiting worker knows it may go.
    openings: u64,
}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Swap {
    /// The cell for `workers` worker threads (lanes `0..workers`).
    pub(crate) fn new(running: Running, workers: usize) -> Arc<Swap> {
        Arc::new(Swap {
            generation: AtomicU64::new(0),
            current: Mutex::new(Arc::new(running)),
            gate: Gate::default(),
            taken: (0..workers).map(|_| AtomicU64::new(0)).collect(),
        })
    }

    /// Worker `lane` runs on generation `generation` now (it finished every batch it had
    /// begun on an earlier one).
    pub(crate) fn took(&self, lane: usize, generation: u64) {
        if let Some(t) = self.taken.get(lane) {
            t.store(generation, Ordering::Release);
        }
    }

    /// Waits until every worker has taken generation `generation` or a later one, so that
    /// none still answers with the tables it replaced; false after [`PAUSE_WAIT`] (an idle
    /// worker looks at least once per receive timeout).
    pub(super) fn settle(&self, generation: u64) -> bool {
        let deadline = Instant::now() + PAUSE_WAIT;
        while self
            .taken
            .iter()
            .any(|t| t.load(Ordering::Acquire) < generation)
        {
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(1));
        }
        true
    }

    /// Moves whenever the running set changes or a pause begins: a worker loads it once per
    /// batch and does anything else only when it moved.
    pub(crate) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Moves the generation with the running set unchanged, so that [`Swap::settle`] tells
    /// when every worker has finished the batches it began before; returns the generation.
    pub(super) fn nudge(&self) -> u64 {
        self.generation.fetch_add(1, Ordering::Release) + 1
    }

    /// The running set.
    pub(crate) fn current(&self) -> Arc<Running> {
        Arc::clone(&lock(&self.current))
    }

    /// Makes `running` the running set; returns its generation (see [`Swap::settle`]).
    pub(super) fn publish(&self, running: Running) -> u64 {
        *lock(&self.current) = Arc::new(running);
        self.generation.fetch_add(1, Ordering::Release) + 1
    }

    /// Called by a worker whose generation moved: if a pause is asked for, runs `before`
    /// (the worker hands out its shard's pending events) and waits until the gate opens.
    pub(crate) fn pass(&self, before: impl FnOnce()) {
        if !lock(&self.gate.state).closed {
            return;
        }
        before();
        let mut s = lock(&self.gate.state);
        if !s.closed {
            return;
        }
        let opening = s.openings;
        s.arrived += 1;
        self.gate.moved.notify_all();
        while s.openings == opening {
            s = self.gate.moved.wait(s).unwrap_or_else(|e| e.into_inner());
        }
    }

    /// Closes the gate and waits until `workers` workers wait at it; false after
    /// [`PAUSE_WAIT`] (the gate is then open again).
    pub(super) fn pause(&self, workers: usize) -> bool {
        let mut s = lock(&self.gate.state);
        s.closed = true;
        s.arrived = 0;
        self.generation.fetch_add(1, Ordering::Release);
        let deadline = Instant::now() + PAUSE_WAIT;
        while s.arrived < workers {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                drop(s);
                self.resume();
                return false;
            }
            s = self
                .gate
                .moved
                .wait_timeout(s, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    pub(super) fn resume(&self) {
        let mut s = lock(&self.gate.state);
        s.closed = false;
        s.arrived = 0;
        s.openings += 1;
        self.generation.fetch_add(1, Ordering::Release);
        self.gate.moved.notify_all();
    }
}
