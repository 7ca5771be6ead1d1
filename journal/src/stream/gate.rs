//! The peer gate: while a synchronous partner follows the stream, a lane's durable watermark
//! is held at what the partner has acknowledged as well as synced.
//!
//! The writer hands each sync's per-lane tickets to the gate with the stream sequence that
//! sync ends at; the gate publishes them to the lanes once the partner's ack reaches that
//! sequence. A worker keeps reading one atomic (`Lane::durable`) and sleeping on its
//! doorbell: it never sees the gate. The batches waiting are a ring allocated when the gate
//! is made; when it is full the newest entry absorbs the next (its tickets then wait for the
//! later sequence), so a partner far behind costs latency, never memory.
//!
//! A gate with a slack of `n` (asynchronous replication with a bounded lag) releases a sync
//! once the partner's ack is at most `n` sequences behind its end instead of at it.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::writer::{LaneState, Shared};
use crate::{Journal, Record};

/// Syncs that can wait for the partner before they are merged.
const RING: usize = 256;

/// The gate's state, in the journal's shared state once [`Journal::peer_gate`] made it.
#[derive(Debug)]
pub(crate) struct GateState {
    /// Lanes `0..gated` wait for the partner; later ones (a replica's) never do.
    gated: usize,
    inner: Mutex<Inner>,
    /// The partner's last ack, readable without the lock.
    acked: AtomicU64,
}

#[derive(Debug)]
struct Inner {
    /// Tickets wait for the partner's ack; when false they are published as they sync.
    waiting: bool,
    acked: u64,
    /// How far behind a sync's end the partner's ack may be when the sync is released.
    slack: u64,
    /// `RING` entries of `1 + gated` numbers: the sequence a sync ends at, then each gated
    /// lane's ticket at its end.
    ring: Vec<u64>,
    head: usize,
    len: usize,
    /// Per gated lane: the ticket last published.
    out: Vec<u64>,
}

impl GateState {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many lanes wait for the partner.
    pub(crate) fn gated(&self) -> usize {
        self.gated
    }

    /// The writer has made `tickets` (of lanes `0..gated`) durable here, in frames that end
    /// at stream sequence `seq`.
    pub(crate) fn push(&self, seq: u64, tickets: &[u64], lanes: &[LaneState]) {
        let mut g = self.lock();
        if !g.waiting {
            publish(&mut g.out, tickets, lanes);
            return;
        }
        let width = 1 + self.gated;
        let slot = if g.len == RING {
            (g.head + RING - 1) % RING
        } else {
            g.len += 1;
            (g.head + g.len - 1) % RING
        };
        let at = slot * width;
        g.ring[at] = seq;
        g.ring[at + 1..at + width].copy_from_slice(tickets);
        let upto = g.acked.saturating_add(g.slack);
        release(&mut g, width, upto, lanes);
    }
}

/// Publishes each lane's ticket that is above what it last had.
fn publish(out: &mut [u64], tickets: &[u64], lanes: &[LaneState]) {
    for (k, (&t, o)) in tickets.iter().zip(out.iter_mut()).enumerate() {
        if t > *o {
            *o = t;
            lanes[k].publish(t);
        }
    }
}

/// Publishes every waiting sync that ends at or before `upto`, oldest first.
fn release(g: &mut Inner, width: usize, upto: u64, lanes: &[LaneState]) {
    while g.len > 0 {
        let at = g.head * width;
        if g.ring[at] > upto {
            break;
        }
        let Inner { ring, out, .. } = g;
        publish(out, &ring[at + 1..at + width], lanes);
        g.head = (g.head + 1) % RING;
        g.len -= 1;
    }
}

/// A handle on a journal's peer gate: the HA side sets whether replies wait for the partner
/// and hands it the partner's acks. Cheap to clone, usable from any thread.
#[derive(Clone)]
pub struct PeerGate {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for PeerGate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PeerGate")
            .field("waiting", &self.waiting())
            .field("acked", &self.acked())
            .finish()
    }
}

impl<R: Record> Journal<R> {
    /// This journal's peer gate over lanes `0..gated` (made on the first call; later calls
    /// return the same gate whatever `gated` says). It starts open: nothing waits for a
    /// partner until [`PeerGate::wait_for_peer`] says so.
    pub fn peer_gate(&self, gated: usize) -> PeerGate {
        let shared = self.shared().clone();
        shared.gate.get_or_init(|| {
            let gated = gated.min(shared.lanes.len());
            GateState {
                gated,
                inner: Mutex::new(Inner {
                    waiting: false,
                    acked: 0,
                    slack: 0,
                    ring: vec![0; RING * (1 + gated)],
                    head: 0,
                    len: 0,
                    out: shared.lanes[..gated]
                        .iter()
                        .map(|l| l.durable.load(Ordering::SeqCst))
                        .collect(),
                }),
                acked: AtomicU64::new(0),
            }
        });
        PeerGate { shared }
    }
}

impl PeerGate {
    fn state(&self) -> &GateState {
        self.shared.gate.get().expect("made by Journal::peer_gate")
    }

    /// Whether the gated lanes' tickets wait for the partner's ack from now on. Turning it
    /// off publishes at once every ticket that is synced and was waiting (the server goes on
    /// alone); turning it on holds back every later sync.
    pub fn wait_for_peer(&self, on: bool) {
        let st = self.state();
        let mut g = st.lock();
        g.waiting = on;
        if !on {
            release(&mut g, 1 + st.gated, u64::MAX, &self.shared.lanes);
        }
    }

    /// Lets a sync go once the partner's ack is at most `slack` sequences behind its end
    /// (0, the default: once the ack reaches it).
    pub fn set_slack(&self, slack: u64) {
        let st = self.state();
        let mut g = st.lock();
        g.slack = slack;
        let upto = g.acked.saturating_add(slack);
        release(&mut g, 1 + st.gated, upto, &self.shared.lanes);
    }

    /// Whether tickets wait for the partner.
    pub fn waiting(&self) -> bool {
        self.state().lock().waiting
    }

    /// The partner has synced every frame up to stream sequence `seq` (of this run): the
    /// tickets those frames hold become durable.
    pub fn ack(&self, seq: u64) {
        let st = self.state();
        let mut g = st.lock();
        if seq <= g.acked {
            return;
        }
        g.acked = seq;
        st.acked.store(seq, Ordering::Relaxed);
        let upto = seq.saturating_add(g.slack);
        release(&mut g, 1 + st.gated, upto, &self.shared.lanes);
    }

    /// The partner's last ack.
    pub fn acked(&self) -> u64 {
        self.state().acked.load(Ordering::Relaxed)
    }

    /// The stream sequence the oldest sync still waiting for the partner ends at.
    pub fn oldest_waiting(&self) -> Option<u64> {
        let st = self.state();
        let g = st.lock();
        (g.len > 0).then(|| g.ring[g.head * (1 + st.gated)])
    }
}
