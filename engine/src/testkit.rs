//! Test-only pieces the v4 and v6 property tests share: the model of what a server knows, the
//! journal's reorderings and fold, and the causality checks.
//!
//! The two engines differ in what a record is of (an IPv4 address, a v6 resource) and whom
//! it is for (a client, an IA), but not in the rules these pieces check, so one generic copy
//! keeps the two tests checking the same thing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fmt::{Debug, Display};
use std::hash::Hash;
use std::net::Ipv4Addr;

use proptest::prelude::*;

use crate::lease::{EventKind, Lease, LeaseEvent, LeaseState, Time};
use crate::v6::{self, Resource};

/// A lease record as the journal sees it: what it is of, and its version.
pub(crate) trait Journaled: Clone {
    /// An address (v4) or a resource (v6).
    type Res: Copy + Ord + Hash + Debug + Display;
    fn res(&self) -> Self::Res;
    fn version(&self) -> u64;
    fn state(&self) -> LeaseState;
    fn expires(&self) -> Time;
}

/// Implements [`Journaled`] for a family's lease, whose resource is in field `$res`.
macro_rules! journaled {
    ($lease:ty, $res:ty, $field:ident) => {
        impl Journaled for $lease {
            type Res = $res;
            fn res(&self) -> $res {
                self.$field
            }
            fn version(&self) -> u64 {
                self.version
            }
            fn state(&self) -> LeaseState {
                self.state
            }
            fn expires(&self) -> Time {
                self.expires
            }
        }
    };
}

journaled!(Lease, Ipv4Addr, address);
journaled!(v6::Lease, Resource, resource);

/// An event, for the record it carries.
pub(crate) trait Event {
    type Lease: Journaled;
    fn kind(&self) -> EventKind;
    fn lease(&self) -> &Self::Lease;
}

/// Implements [`Event`] for a family's event type.
macro_rules! event {
    ($event:ty, $lease:ty) => {
        impl Event for $event {
            type Lease = $lease;
            fn kind(&self) -> EventKind {
                self.kind
            }
            fn lease(&self) -> &$lease {
                &self.lease
            }
        }
    };
}

event!(LeaseEvent, Lease);
event!(v6::LeaseEvent, v6::Lease);

/// What the journal does before replay: per address (resource), the record with the highest
/// version, in the order the winners appear in `records`. Panics on two records of one
/// address with the same version, which the versioning rules make impossible.
pub(crate) fn fold<'a, L: Journaled + 'a>(records: impl IntoIterator<Item = &'a L>) -> Vec<L> {
    let mut best: HashMap<L::Res, (usize, &L)> = HashMap::new();
    let mut seen = HashSet::new();
    for (i, lease) in records.into_iter().enumerate() {
        assert!(
            seen.insert((lease.res(), lease.version())),
            "two records of {} with version {}",
            lease.res(),
            lease.version()
        );
        let entry = best.entry(lease.res()).or_insert((i, lease));
        if lease.version() > entry.1.version() {
            *entry = (i, lease);
        }
    }
    let mut winners: Vec<(usize, &L)> = best.into_values().collect();
    winners.sort_unstable_by_key(|&(i, _)| i);
    winners.into_iter().map(|(_, l)| l.clone()).collect()
}

/// Checks the rule replay rests on, from an engine's trace (`(address, version)` of every
/// event in the real order of the changes): for every address, the versions of its events
/// strictly increase. Returns how many events it saw.
pub(crate) fn check_causality<R: Copy + Eq + Hash + Display>(trace: &[(R, u64)]) -> usize {
    let mut last: HashMap<R, u64> = HashMap::new();
    for &(res, version) in trace {
        if let Some(prev) = last.insert(res, version) {
            assert!(
                version > prev,
                "{res}: an event with version {version} made after one with {prev}"
            );
        }
    }
    trace.len()
}

/// Every address's versions rise in the real order of its changes (`made`: what the
/// engine's `check_causality` saw; `traced`: its trace); each shard hands out its events
/// in version order; what was handed out is what was made; no version exceeds the
/// engine's `max_version`.
pub(crate) fn check_versions<E: Event>(
    events: &[(usize, E)],
    shards: usize,
    made: usize,
    mut traced: Vec<(<E::Lease as Journaled>::Res, u64)>,
    max_version: u64,
) {
    assert_eq!(made, events.len(), "every event made is handed out once");
    let mut handed: Vec<_> = events
        .iter()
        .map(|(_, e)| (e.lease().res(), e.lease().version()))
        .collect();
    traced.sort_unstable();
    handed.sort_unstable();
    assert_eq!(handed, traced);
    let mut last = vec![0; shards];
    for (shard, event) in events {
        let version = event.lease().version();
        assert!(
            version > last[*shard],
            "shard {shard} handed out version {version} after {}",
            last[*shard]
        );
        last[*shard] = version;
    }
    let max = events.iter().map(|(_, e)| e.lease().version()).max();
    assert!(max.unwrap_or(0) <= max_version);
}

/// What a server could know: live offers and bindings per client (or IA, numbered
/// `0..clients`), quarantines.
#[derive(Debug)]
pub(crate) struct Model<R> {
    pub(crate) now: Time,
    clients: u8,
    pub(crate) bound: BTreeMap<u8, (R, Time)>,
    pub(crate) offered: BTreeMap<u8, (R, Time)>,
    pub(crate) quarantine: BTreeMap<R, Time>,
}

/// A live record as the property tests compare them: `(state, client, until)`.
pub(crate) type Live = (LeaseState, u8, Time);

impl<R: Copy + Ord + Debug> Model<R> {
    pub(crate) fn new(clients: u8) -> Self {
        Self {
            now: 0,
            clients,
            bound: BTreeMap::new(),
            offered: BTreeMap::new(),
            quarantine: BTreeMap::new(),
        }
    }

    fn live(&self, entry: Option<&(R, Time)>) -> Option<R> {
        entry
            .filter(|(_, until)| *until > self.now)
            .map(|(r, _)| *r)
    }

    pub(crate) fn bound_to(&self, c: u8) -> Option<R> {
        self.live(self.bound.get(&c))
    }

    pub(crate) fn offered_to(&self, c: u8) -> Option<R> {
        self.live(self.offered.get(&c))
    }

    pub(crate) fn quarantined(&self, r: R) -> bool {
        self.quarantine
            .get(&r)
            .is_some_and(|&until| until > self.now)
    }

    pub(crate) fn held_by_other(&self, r: R, c: u8) -> bool {
        (0..self.clients)
            .filter(|&o| o != c)
            .any(|o| self.bound_to(o) == Some(r) || self.offered_to(o) == Some(r))
    }

    pub(crate) fn available_to(&self, r: R, c: u8) -> bool {
        !self.quarantined(r) && !self.held_by_other(r, c)
    }

    /// Client `c` bound `r` until `expires`: checks the event the bind handed out last (from
    /// `shard`, Renewed if `renew`), whose record's client is `client_of` it, and records the
    /// binding.
    pub(crate) fn bound<E: Event>(
        &mut self,
        events: &[(usize, E)],
        shard: usize,
        (c, r): (u8, R),
        renew: bool,
        expires: Time,
        client_of: impl Fn(&E::Lease) -> u8,
    ) where
        E::Lease: Journaled<Res = R>,
    {
        let (from, event) = events.last().expect("bind emits an event");
        assert_eq!(*from, shard);
        let kind = if renew {
            EventKind::Renewed
        } else {
            EventKind::Bound
        };
        assert_eq!(event.kind(), kind);
        let lease = event.lease();
        assert_eq!((lease.res(), client_of(lease)), (r, c));
        assert_eq!(
            (lease.state(), lease.expires()),
            (LeaseState::Bound, expires)
        );
        self.offered.remove(&c);
        self.bound.insert(c, (r, expires));
    }

    /// The live records the engine must hold, given the ones it does (`live`, which only
    /// says who declined a quarantined one).
    pub(crate) fn expected(&self, live: &BTreeMap<R, Live>) -> BTreeMap<R, Live> {
        let now = self.now;
        let mut model = BTreeMap::new();
        for (&c, &(r, until)) in &self.bound {
            if until > now {
                model.insert(r, (LeaseState::Bound, c, until));
            }
        }
        for (&c, &(r, until)) in &self.offered {
            if until > now {
                assert!(model.insert(r, (LeaseState::Offered, c, until)).is_none());
            }
        }
        for (&r, &until) in &self.quarantine {
            if until > now {
                // Who declined is not the model's business; take the engine's word.
                let c = live.get(&r).map_or(u8::MAX, |&(_, c, _)| c);
                assert!(model.insert(r, (LeaseState::Declined, c, until)).is_none());
            }
        }
        model
    }
}

/// How the journal may reorder the events: proptest's choices.
#[derive(Clone, Debug)]
pub(crate) struct Reorder {
    /// Which shard's next event comes next (modulo the shards with events left).
    interleave: Vec<usize>,
    /// Fisher-Yates draws for a full shuffle.
    swaps: Vec<usize>,
}

pub(crate) fn reorder() -> impl Strategy<Value = Reorder> {
    (
        proptest::collection::vec(any::<usize>(), 1..64),
        proptest::collection::vec(any::<usize>(), 1..64),
    )
        .prop_map(|(interleave, swaps)| Reorder { interleave, swaps })
}

impl Reorder {
    /// Each shard's events in their order, the shards interleaved as `interleave` says.
    fn interleaved<E: Event>(&self, events: &[(usize, E)], shards: usize) -> Vec<E::Lease> {
        let mut queues: Vec<VecDeque<&E::Lease>> = vec![VecDeque::new(); shards];
        for (shard, event) in events {
            queues[*shard].push_back(event.lease());
        }
        let mut out = Vec::with_capacity(events.len());
        for k in 0.. {
            let left: Vec<usize> = (0..shards).filter(|&s| !queues[s].is_empty()).collect();
            if left.is_empty() {
                break;
            }
            let pick = left[self.interleave[k % self.interleave.len()] % left.len()];
            out.extend(queues[pick].pop_front().cloned());
        }
        out
    }

    /// Every event anywhere.
    fn shuffled<E: Event>(&self, events: &[(usize, E)]) -> Vec<E::Lease> {
        let mut out: Vec<E::Lease> = events.iter().map(|(_, e)| e.lease().clone()).collect();
        for i in (1..out.len()).rev() {
            let draw = self.swaps[i % self.swaps.len()].wrapping_add(i / self.swaps.len());
            out.swap(i, draw % (i + 1));
        }
        out
    }

    /// The journals to replay, named: the events in hand-out order, reversed, each shard's
    /// in order with the shards interleaved, and shuffled entirely.
    pub(crate) fn journals<E: Event>(
        &self,
        events: &[(usize, E)],
        shards: usize,
    ) -> [(&'static str, Vec<E::Lease>); 4] {
        let handed: Vec<E::Lease> = events.iter().map(|(_, e)| e.lease().clone()).collect();
        let mut reversed = handed.clone();
        reversed.reverse();
        [
            ("hand-out order", handed),
            ("reversed", reversed),
            ("shards interleaved", self.interleaved(events, shards)),
            ("shuffled", self.shuffled(events)),
        ]
    }
}
