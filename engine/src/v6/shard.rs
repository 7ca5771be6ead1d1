//! One v6 shard: its share of each pool, its lease records, IA index and expiry heap, and the
//! state transitions that keep them consistent (v4's `shard.rs`, by resource).
//!
//! Bookkeeping rules every method keeps (checked by `Engine::check_invariants` in tests):
//! - Every dynamic offset is owned by exactly one shard: free in its [`Space`], or the
//!   offset of one of its records. A record of a dynamic resource is in its shard's space
//!   (dense: not in the clean bitmap; sparse: inside the owned intervals).
//! - A dynamic resource's Released/Expired record is in its pool's remembered list; held
//!   ones (Offered, Bound, Declined) are not. Lending or handing a remembered resource to
//!   another IA drops the record, so a remembered resource never leaves its shard.
//! - Every record except a Declined one is its IA's indexed record: an IA has at most one,
//!   and quarantines outlive the IA moving on.
//! - Every held record has an entry `(expires, slab index)` in the expiry heap; entries that
//!   no longer match a record are skipped when popped.
//! - Every change to a record takes a fresh tick of the shard's Lamport clock as the record's
//!   version, and every event carries the tick of the change it records; no record's version
//!   exceeds the clock.

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::hash::BuildHasher;

use hashbrown::DefaultHashBuilder;

use crate::common::slot::clamp;
use crate::ends::{self, Ends as _, Free as _};
use crate::lease::{EventKind, LeaseState, Time};

use super::key::{IaKey, Resource};
use super::lease::{Lease, LeaseEvent, LeaseRef, LeaseView};
use super::pools::{Place, PoolId, Pools};
use super::records::{List, NewRecord, Records, Slot};
use super::space::{Lent, Space};
use crate::slots::Slot as _;

pub(crate) use crate::common::{Counts, Give, current_rank, is_held};

/// A shard's share of one pool.
#[derive(Debug)]
pub(crate) struct Part {
    pub(crate) space: Space,
    /// Released/Expired records of the pool, oldest first.
    pub(crate) remembered: List,
    pub(crate) counts: Counts,
    /// `remembered` grew since the last [`Shard::settle`].
    pub(crate) trim: bool,
}

impl Part {
    /// Records of the pool's dynamic resources in this shard.
    pub(crate) fn records(&self) -> u64 {
        self.counts.held() + self.remembered.len
    }

    /// Free resources: clean ones and remembered ones.
    pub(crate) fn free_len(&self) -> u128 {
        self.space.clean_len(self.records()) + u128::from(self.remembered.len)
    }
}

/// The state, start, preferred lifetime and end a record is given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Term {
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) preferred: u32,
    pub(crate) expires: Time,
}

/// One shard's state. See the module docs for the rules it keeps.
#[derive(Debug)]
pub(crate) struct Shard {
    /// Indexed by pool.
    pub(crate) parts: Box<[Part]>,
    pub(crate) records: Records,
    /// `(expires, slab index)` of held records, earliest first.
    pub(crate) expiry: BinaryHeap<Reverse<(u32, u32)>>,
    /// Number of held records (the live part of `expiry`).
    pub(crate) held: usize,
    /// Events from work done by calls that take no event vector (SOLICIT's bookkeeping, a
    /// sibling's borrowing), handed out by the next call that does.
    pub(crate) pending: Vec<LeaseEvent>,
    /// The shard's Lamport clock: the last version it gave a change.
    pub(crate) clock: u64,
    /// Seeds the IA keys' targets in sparse pools.
    hasher: DefaultHashBuilder,
    /// A pool's remembered records are trimmed, oldest first, beyond the larger of this and
    /// its held records (see [`Shard::settle`]).
    remember_min: u64,
    /// Test-only log of every event as it is made, shared by all shards of an engine.
    #[cfg(test)]
    pub(crate) trace: crate::common::Trace<Resource>,
}

impl Shard {
    pub(crate) fn new(parts: Vec<Part>, pools: &Pools, remember_min: u64) -> Self {
        let layout = pools.iter().map(|(_, l)| (l.first, l.shift)).collect();
        Self {
            parts: parts.into(),
            records: Records::new(layout),
            expiry: BinaryHeap::new(),
            held: 0,
            pending: Vec::new(),
            clock: 0,
            hasher: DefaultHashBuilder::default(),
            remember_min: remember_min.max(1),
            #[cfg(test)]
            trace: Default::default(),
        }
    }

    fn push_expiry(&mut self, expires: u32, idx: u32) {
        self.expiry.push(Reverse((expires, idx)));
        // Lazy deletion leaves dead entries behind; rebuilding once they outnumber the live
        // ones keeps the heap within a constant factor of the records, amortised O(1).
        if self.expiry.len() > 2 * self.held + 64 {
            self.rebuild_expiry();
        }
    }

    /// The expiry heap from the held records, exactly.
    pub(crate) fn rebuild_expiry(&mut self) {
        let mut entries = std::mem::take(&mut self.expiry).into_vec();
        entries.clear();
        entries.extend(self.records.iter().filter_map(|idx| {
            let slot = self.records.slot(idx);
            is_held(slot.state).then_some(Reverse((slot.head.expires, idx)))
        }));
        self.expiry = BinaryHeap::from(entries);
    }

    /// Drops the record (and its IA's index entry if it is the indexed one); see
    /// [`Ends::remove_at`].
    pub(crate) fn remove(&mut self, idx: u32) -> (LeaseState, Option<Lease>) {
        self.remove_at(idx)
    }

    /// Forgets the oldest remembered records of every pool that has more of them than the
    /// larger of `remember_min` and its held records (silently: they are free resources,
    /// and the journal's record of them does no harm). Every entry point calls it last, once
    /// it has done its work, so that it never takes a record from under the operation (an
    /// IA's memory it is about to use, say).
    ///
    /// In a dense pool that is a bound on memory the pool's size bounds anyway; in a sparse
    /// pool nothing else would: its clean offsets never run out, so nothing would ever reuse
    /// them, and every IA that ever came and went would stay. The IA of a forgotten record
    /// still tends to get the same resource back in a sparse pool, from its hashed target.
    pub(crate) fn settle(&mut self) {
        for p in 0..self.parts.len() {
            if !std::mem::take(&mut self.parts[p].trim) {
                continue;
            }
            loop {
                let part = &self.parts[p];
                let cap = self.remember_min.max(part.counts.held());
                match part.remembered.front() {
                    Some(oldest) if part.remembered.len > cap => {
                        self.remove(oldest);
                    }
                    _ => break,
                }
            }
        }
    }

    /// The target hash of `client` (sparse pools).
    fn target(&self, client: &IaKey) -> u128 {
        let h = self.hasher.hash_one(client.as_bytes());
        let spread = h.wrapping_mul(0x9e37_79b9_7f4a_7c15) ^ (h >> 29);
        (u128::from(h) << 64) | u128::from(spread)
    }

    /// A free offset of `pool` for `client`, if this shard has one: a clean one if it can
    /// (see `space.rs`), else the oldest remembered one.
    pub(crate) fn next_free(&self, pools: &Pools, pool: PoolId, client: &IaKey) -> Option<u128> {
        let part = self.parts.get(pool.index())?;
        let layout = pools.layout(pool);
        let records = &self.records;
        let clean = part.space.pick(self.target(client), part.records(), |off| {
            records.find(layout.resource(off)).is_some()
        });
        clean.or_else(|| {
            part.remembered
                .front()
                .and_then(|idx| match records.place(idx) {
                    Place::Dynamic { off, .. } => Some(off),
                    Place::Fixed { .. } => None,
                })
        })
    }

    /// Gives offset `off` of `pool` (resource `res`) up for a sibling if it is free here (a
    /// remembered IA loses its claim to it); else says what holds it here.
    pub(crate) fn take_free(&mut self, pool: PoolId, off: u128, res: Resource, now: Time) -> Give {
        if pool.index() >= self.parts.len() {
            return Give::NotHere;
        }
        ends::expire_if_due(self, res, now);
        let given = match self.records.find(res) {
            None => self.parts[pool.index()].space.give(off),
            Some(idx) => match self.records.slot(idx).state {
                LeaseState::Declined => return Give::Quarantined,
                LeaseState::Offered | LeaseState::Bound => return Give::Held,
                LeaseState::Released | LeaseState::Expired => {
                    self.remove(idx);
                    self.parts[pool.index()].space.give(off)
                }
            },
        };
        if given { Give::Given } else { Give::NotHere }
    }

    /// Free resources this shard has in `pool`.
    pub(crate) fn free_len(&self, pool: PoolId) -> u128 {
        self.parts.get(pool.index()).map_or(0, Part::free_len)
    }

    /// Gives up a chunk of `pool`'s free offsets to a sibling: half of them, at most `max`,
    /// at least one. Clean ones go first; remembered ones only if needed, oldest first,
    /// dropping their records.
    pub(crate) fn lend(&mut self, pools: &Pools, pool: PoolId, max: u64) -> Lent {
        let layout = pools.layout(pool);
        let part = &self.parts[pool.index()];
        let records_n = part.records();
        let want = part.free_len().div_ceil(2).min(u128::from(max)) as u64;
        let clean = part.space.clean_len(records_n);
        let from_clean = u128::from(want).min(clean) as u64;
        let records = &self.records;
        let mut lent = self.parts[pool.index()]
            .space
            .lend_clean(from_clean, records_n, |off| {
                records.find(layout.resource(off)).is_some()
            });
        for _ in from_clean..want {
            let Some(idx) = self.parts[pool.index()].remembered.front() else {
                break;
            };
            let Place::Dynamic { off, .. } = self.records.place(idx) else {
                break;
            };
            self.remove(idx);
            self.parts[pool.index()].space.give(off);
            lent.add(off);
        }
        lent
    }
}

/// Bulk replay, for the restorer.
impl Shard {
    /// Indexes the records appended unindexed (their dynamic resources are this shard's),
    /// chooses each IA's current one, drops the others but quarantines, and brings spaces,
    /// counts, expiry heap and remembered lists in line.
    pub(crate) fn finish_restore(&mut self) {
        // The resources of records it drops stay this shard's, free: nothing marked them
        // taken yet.
        self.records.build(
            |slot| current_rank(slot.state, slot.head.version, slot.resource()),
            |slot| slot.state == LeaseState::Declined,
        );
        let mut remembered: Vec<(u64, u32, PoolId)> = Vec::new();
        let mut heap = Vec::new();
        let mut held = 0;
        for idx in self.records.iter() {
            let slot = *self.records.slot(idx);
            let place = self.records.place(idx);
            if is_held(slot.state) {
                held += 1;
                heap.push(Reverse((slot.head.expires, idx)));
            }
            if let Place::Dynamic { pool, off } = place {
                let part = &mut self.parts[pool.index()];
                part.space.taken(off);
                part.counts.tally(slot.state, true);
                if !is_held(slot.state) {
                    remembered.push((slot.head.version, idx, pool));
                }
            }
        }
        // Oldest first, as they would have been remembered.
        remembered.sort_unstable();
        for (_, idx, pool) in remembered {
            self.records
                .push_back(&mut self.parts[pool.index()].remembered, idx);
        }
        self.held = held;
        self.expiry = heap.into();
    }
}

impl<'a> NewRecord<'a> {
    /// The record of `lease` at `place`.
    pub(crate) fn of(lease: &LeaseRef<'a>, place: Place) -> Self {
        NewRecord {
            res: lease.resource,
            place,
            key: lease.client.as_bytes(),
            state: lease.state,
            starts: lease.starts,
            expires: lease.expires,
            version: lease.version,
            more: if lease.state == LeaseState::Bound {
                lease.preferred
            } else {
                0
            },
        }
    }
}

impl ends::Ends for Shard {
    ends::ends_fields!(super::engine::V6, resource; u128, BinaryHeap<Reverse<(u32, u32)>>, Space; |g, pool| &mut g.parts[pool.index()].space);

    fn entry_record(&self, at: u32) -> Option<u32> {
        (!self.records.slot(at).is_vacant()).then_some(at)
    }

    /// Adds `rec` at its resource, which has no record here: a dynamic resource must be this
    /// shard's. Never trims the remembered lists (replay puts records back in any order).
    fn insert(&mut self, rec: &NewRecord<'_>) -> u32 {
        let idx = self.records.insert(rec);
        let held = is_held(rec.state);
        if let Place::Dynamic { pool, off } = rec.place {
            let part = &mut self.parts[pool.index()];
            part.space.taken(off);
            part.counts.tally(rec.state, true);
            if !held {
                self.records.push_back(&mut part.remembered, idx);
            }
        }
        if held {
            self.held += 1;
            self.push_expiry(clamp(rec.expires), idx);
        }
        idx
    }

    /// Drops the record (and its IA's index entry if it is the indexed one); a dynamic
    /// resource becomes clean free. Returns the record's state, and the record as a lease if
    /// it was Bound or Declined (the callers that emit an event need it then).
    fn remove_at(&mut self, idx: u32) -> (LeaseState, Option<Lease>) {
        let slot = *self.records.slot(idx);
        let place = self.records.place(idx);
        let lease = matches!(slot.state, LeaseState::Bound | LeaseState::Declined)
            .then(|| self.records.lease(idx));
        if let Place::Dynamic { pool, off } = place {
            let part = &mut self.parts[pool.index()];
            if slot.is_listed() {
                self.records.unlink(&mut part.remembered, idx);
            }
            part.counts.tally(slot.state, false);
            self.records.remove(idx);
            part.space.returned(off);
        } else {
            self.records.remove(idx);
        }
        if is_held(slot.state) {
            self.held -= 1;
        }
        (slot.state, lease)
    }

    /// Moves the record at slab index `idx` to `term`, keeping spaces, lists, counts and heap
    /// in step.
    fn set_term(&mut self, idx: u32, term: Term) {
        let slot = *self.records.slot(idx);
        let place = self.records.place(idx);
        let version = ends::tick(self);
        let times = (term.starts, term.expires);
        self.records
            .set_term(idx, term.state, times, version)
            .preferred = term.preferred;
        let (was, now) = (is_held(slot.state), is_held(term.state));
        if was {
            self.held -= 1;
        }
        if now {
            self.held += 1;
            self.push_expiry(clamp(term.expires), idx);
        }
        if let Place::Dynamic { pool, .. } = place {
            let part = &mut self.parts[pool.index()];
            part.counts.tally(slot.state, false);
            part.counts.tally(term.state, true);
            if now && slot.is_listed() {
                self.records.unlink(&mut part.remembered, idx);
            } else if !now && !slot.is_listed() {
                self.records.push_back(&mut part.remembered, idx);
                part.trim = true;
            }
        }
    }

    /// An ended record has no preferred lifetime left.
    fn term(state: LeaseState, starts: Time, expires: Time) -> Term {
        Term {
            state,
            starts,
            preferred: 0,
            expires,
        }
    }

    fn times(term: Term) -> (LeaseState, Time, Time) {
        (term.state, term.starts, term.expires)
    }

    /// The lease's preferred lifetime ends too (a quarantine's is zero already).
    fn close(lease: &mut Lease, state: LeaseState, at: Option<Time>, version: u64) {
        lease.preferred = 0;
        lease.state = state;
        lease.expires = at.unwrap_or(lease.expires);
        lease.version = version;
    }

    fn restore_local(&mut self, (res, place): (Resource, Place), lease: &Lease) {
        let lease = LeaseRef::from(lease);
        let rec = NewRecord::of(&lease, place);
        ends::restore_local(
            self,
            (res, lease.client.as_bytes()),
            (lease.state, lease.version),
            &rec,
        );
    }
}
