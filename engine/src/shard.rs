//! One shard: its part of each pool's free addresses, its lease records, client index and
//! expiry heap, and the state transitions that keep them consistent.
//!
//! Bookkeeping rules every method keeps (checked by `Engine::check_invariants` in tests):
//! - A dynamic address with a held record (Offered, Bound, Declined) is in no free set; one
//!   with a Released/Expired record is in this shard's `remembered` set; `clean` holds the
//!   free addresses nobody is remembered for. Lending or handing a remembered address to
//!   another client drops the record, so a remembered address never leaves its shard.
//! - Every record except a Declined one is the client's indexed record: a client has at most
//!   one, and quarantines outlive the client moving on.
//! - Every held record has an entry `(expires, address)` in the expiry heap; entries that no
//!   longer match a record are skipped when popped.
//! - Every change to a record takes a fresh tick of the shard's Lamport clock as the record's
//!   version, and every event carries the tick of the change it records; no record's version
//!   exceeds the clock.

#[cfg(test)]
use std::net::Ipv4Addr;

use roaring::RoaringBitmap;

use crate::common::slot::clamp;
use crate::ends;
use crate::grow::MinHeap;
use crate::lease::{
    EventKind, Lease, LeaseEvent, LeaseInfo, LeaseRef, LeaseState, LeaseView, Time,
};
use crate::pools::{Place, PoolId};
use crate::records::{NewRecord, Records, Slot};

pub(crate) use crate::common::{Counts, current_rank, is_held};

/// A shard's free offsets in one pool.
#[derive(Debug, Default)]
pub(crate) struct FreeSet {
    /// The pool's first address: offsets count from it.
    pub(crate) first: u32,
    /// Free, and no client is remembered for them: handed out first.
    pub(crate) clean: RoaringBitmap,
    /// Free, but a Released/Expired record in this shard remembers them for a client.
    pub(crate) remembered: RoaringBitmap,
}

impl FreeSet {
    pub(crate) fn len(&self) -> u64 {
        self.clean.len() + self.remembered.len()
    }

    /// The next offset to hand out: the lowest clean one, else the lowest remembered one.
    fn next(&self) -> Option<u32> {
        self.clean.min().or_else(|| self.remembered.min())
    }
}

/// Counts a record of `place` in `state` in (`up`) or out, if its address is dynamic.
pub(crate) fn tally(counts: &mut [Counts], place: Place, state: LeaseState, up: bool) {
    if let Place::Dynamic { pool, .. } = place {
        counts[pool.index()].tally(state, up);
    }
}

/// The state, start and end a record is given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Term {
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) expires: Time,
}

/// Slab slots a rebuild of the expiry heap scans per push.
const REBUILD_STEP: usize = 16;

/// A pruned expiry heap under construction: the held records of slab slots below `cursor`,
/// and every entry pushed since it began.
#[derive(Debug)]
pub(crate) struct Rebuild {
    heap: MinHeap,
    cursor: usize,
}

/// An expiry heap entry: the end time in the high half, so entries order by it.
pub(crate) fn expiry_entry(expires: u32, addr: u32) -> u64 {
    (u64::from(expires) << 32) | u64::from(addr)
}

/// `(expires, address)` of an expiry heap entry.
pub(crate) fn expiry_parts(entry: u64) -> (u32, u32) {
    ((entry >> 32) as u32, entry as u32)
}

/// One shard's state. See the module docs for the rules it keeps.
#[derive(Debug)]
pub(crate) struct Shard {
    /// Indexed by pool.
    pub(crate) free: Box<[FreeSet]>,
    /// The lease records, by address and (current ones) by client.
    pub(crate) records: Records,
    /// `(expires, address)` of held records, earliest first (times as the records keep
    /// them), packed by [`expiry_entry`].
    pub(crate) expiry: MinHeap,
    /// A pruned heap being built a few records at a time (see [`Shard::push_expiry`]).
    pub(crate) rebuild: Option<Rebuild>,
    /// An empty heap with room, for the next rebuild to fill (see [`Shard::push_expiry`]).
    pub(crate) spare_heap: MinHeap,
    /// Indexed by pool.
    pub(crate) counts: Box<[Counts]>,
    /// Number of held records (the live part of `expiry`).
    pub(crate) held: usize,
    /// Events from work done by calls that take no event vector (OFFER's bookkeeping, a
    /// sibling's borrowing), handed out by the next call that does.
    pub(crate) pending: Vec<LeaseEvent>,
    /// The shard's Lamport clock: the last version it gave a change.
    pub(crate) clock: u64,
    /// Test-only log of every event as it is made, shared by all shards of an engine: the
    /// real order of changes, which hand-out order is not.
    #[cfg(test)]
    pub(crate) trace: crate::common::Trace<u32>,
}

impl Shard {
    pub(crate) fn new(free: Vec<FreeSet>) -> Self {
        let counts = vec![Counts::default(); free.len()].into();
        let firsts = free.iter().map(|f| f.first).collect();
        Self {
            free: free.into(),
            records: Records::new(firsts),
            expiry: MinHeap::default(),
            rebuild: None,
            spare_heap: MinHeap::default(),
            counts,
            held: 0,
            pending: Vec::new(),
            clock: 0,
            #[cfg(test)]
            trace: Default::default(),
        }
    }

    /// Lazy deletion leaves dead entries behind (a renewal pushes the new end and leaves the
    /// old one). Once they outnumber the live ones a pruned heap is built beside this one
    /// from the held records, [`REBUILD_STEP`] slab slots per push, and replaces it when
    /// done: the heap stays within a constant factor of the records and no push scans them
    /// all at once.
    fn push_expiry(&mut self, expires: u32, addr: u32) {
        let entry = expiry_entry(expires, addr);
        self.expiry.push(entry);
        match &mut self.rebuild {
            Some(rebuild) => {
                rebuild.heap.push(entry);
                let end = (rebuild.cursor + REBUILD_STEP).min(self.records.slab_len());
                for idx in rebuild.cursor..end {
                    if let Some(slot) = self.records.live_slot(idx as u32)
                        && is_held(slot.state)
                    {
                        rebuild
                            .heap
                            .push(expiry_entry(slot.head.expires, slot.addr));
                    }
                }
                rebuild.cursor = end;
                if end == self.records.slab_len()
                    && let Some(done) = self.rebuild.take()
                {
                    // The old heap's chunks become the next rebuild's: in steady state the
                    // heap is rebuilt every few thousand changes, and without this each
                    // rebuild allocated (and the old heap freed) a 256 KiB chunk or more.
                    // Kept: room for what the next rebuild starts with (the held records)
                    // and the pushes while it runs.
                    let mut old = std::mem::replace(&mut self.expiry, done.heap);
                    old.clear_keeping(self.held + self.held / 2 + 64);
                    self.spare_heap = old;
                }
            }
            None if self.expiry.len() > 2 * self.held + 64 => {
                self.rebuild = Some(Rebuild {
                    heap: std::mem::take(&mut self.spare_heap),
                    cursor: 0,
                });
            }
            None => {}
        }
    }

    /// The most entries the expiry heap may hold: twice the held records plus slack, and
    /// what a rebuild under way adds before it ends.
    #[cfg(test)]
    pub(crate) fn expiry_bound(&self) -> usize {
        2 * self.held + 64 + self.records.slab_len() / REBUILD_STEP + 1
    }

    /// Drops the record at `addr` (and its client's index entry if it is the indexed one);
    /// a dynamic address becomes clean free. Returns the record's state, and the record as a
    /// lease if it was Bound or Declined (the callers that emit an event need it then).
    pub(crate) fn remove(&mut self, addr: u32) -> Option<(LeaseState, Option<Lease>)> {
        let idx = self.records.find(addr)?;
        Some(ends::Ends::remove_at(self, idx))
    }

    /// The next free offset in `pool`, if this shard has one.
    pub(crate) fn next_free(&self, pool: PoolId) -> Option<u32> {
        self.free.get(pool.index()).and_then(FreeSet::next)
    }

    /// Takes offset `off` of `pool` (address `addr`) out of this shard's free set for a
    /// sibling; a remembered client loses its claim to it.
    pub(crate) fn take_free(&mut self, pool: PoolId, off: u32, addr: u32, now: Time) -> bool {
        ends::expire_if_due(self, addr, now);
        let Some(free) = self.free.get_mut(pool.index()) else {
            return false;
        };
        if free.clean.remove(off) {
            return true;
        }
        if free.remembered.contains(off) {
            self.remove(addr);
            self.free[pool.index()].clean.remove(off);
            return true;
        }
        false
    }

    /// Free addresses this shard has in `pool`.
    pub(crate) fn free_len(&self, pool: PoolId) -> u64 {
        self.free.get(pool.index()).map_or(0, FreeSet::len)
    }

    /// Gives up a chunk of `pool`'s free offsets to a sibling: half of them, at most `max`,
    /// at least one. Clean ones go first, highest first, so this shard's next allocations
    /// are untouched; remembered ones only if needed, dropping their records.
    pub(crate) fn lend(&mut self, pool: PoolId, first: u32, max: u64) -> RoaringBitmap {
        let Some(free) = self.free.get_mut(pool.index()) else {
            return RoaringBitmap::new();
        };
        let want = free.len().div_ceil(2).min(max);
        let from_clean = want.min(free.clean.len());
        let mut lent: RoaringBitmap = free.clean.iter().rev().take(from_clean as usize).collect();
        free.clean.remove_biggest(from_clean);
        let rest = want - from_clean;
        if rest > 0 {
            let offs: Vec<u32> = free.remembered.iter().rev().take(rest as usize).collect();
            for off in offs {
                self.remove(first + off);
                self.free[pool.index()].clean.remove(off);
                lent.insert(off);
            }
        }
        lent
    }
}

impl<'a> NewRecord<'a> {
    /// The record of `lease` at `place`.
    pub(crate) fn of(lease: impl Into<LeaseRef<'a>>, place: Place) -> Self {
        let lease = lease.into();
        NewRecord {
            res: u32::from(lease.address),
            place,
            key: lease.client,
            state: lease.state,
            starts: lease.starts,
            expires: lease.expires,
            version: lease.version,
            more: LeaseInfo {
                hw: lease.hw,
                hostname: lease.hostname,
            },
        }
    }
}

#[cfg(test)]
impl Shard {
    /// Checks the records' own indexes.
    pub(crate) fn check_records(&self) {
        self.records.check();
    }

    /// The address of a record, for messages.
    pub(crate) fn addr_of(&self, idx: u32) -> Ipv4Addr {
        Ipv4Addr::from(self.records.slot(idx).addr)
    }
}

impl ends::Ends for Shard {
    ends::ends_fields!(crate::engine::V4, address; u32, MinHeap, RoaringBitmap; |g, pool| &mut g.free[pool.index()].clean);

    fn entry_record(&self, at: u32) -> Option<u32> {
        self.records.find(at)
    }

    /// Takes the address out of the free sets if the record holds it, or marks it
    /// remembered if not.
    fn insert(&mut self, rec: &NewRecord<'_>) -> u32 {
        if let Place::Dynamic { pool, off } = rec.place {
            let free = &mut self.free[pool.index()];
            free.clean.remove(off);
            if is_held(rec.state) {
                free.remembered.remove(off);
            } else {
                free.remembered.insert(off);
            }
        }
        let held = is_held(rec.state);
        if held {
            self.held += 1;
        }
        tally(&mut self.counts, rec.place, rec.state, true);
        let idx = self.records.insert(rec);
        if held {
            self.push_expiry(clamp(rec.expires), rec.res);
        }
        idx
    }

    /// A dynamic address becomes clean free.
    fn remove_at(&mut self, idx: u32) -> (LeaseState, Option<Lease>) {
        let state = self.records.slot(idx).state;
        let place = self.records.place(idx);
        let lease = matches!(state, LeaseState::Bound | LeaseState::Declined)
            .then(|| self.records.lease(idx));
        self.records.remove(idx);
        if let Place::Dynamic { pool, off } = place {
            let free = &mut self.free[pool.index()];
            free.remembered.remove(off);
            free.clean.insert(off);
        }
        if is_held(state) {
            self.held -= 1;
        }
        tally(&mut self.counts, place, state, false);
        (state, lease)
    }

    /// Keeps free sets, counts and heap in step.
    fn set_term(&mut self, idx: u32, term: Term) {
        let slot = self.records.slot(idx);
        let (old, addr) = (slot.state, slot.addr);
        let place = self.records.place(idx);
        let version = ends::tick(self);
        let times = (term.starts, term.expires);
        self.records.set_term(idx, term.state, times, version);
        if is_held(old) {
            self.held -= 1;
        }
        tally(&mut self.counts, place, old, false);
        tally(&mut self.counts, place, term.state, true);
        if let Place::Dynamic { pool, off } = place {
            let free = &mut self.free[pool.index()];
            free.clean.remove(off);
            if is_held(term.state) {
                free.remembered.remove(off);
            } else {
                free.remembered.insert(off);
            }
        }
        if is_held(term.state) {
            self.held += 1;
            self.push_expiry(clamp(term.expires), addr);
        }
    }

    fn term(state: LeaseState, starts: Time, expires: Time) -> Term {
        Term {
            state,
            starts,
            expires,
        }
    }

    fn times(term: Term) -> (LeaseState, Time, Time) {
        (term.state, term.starts, term.expires)
    }

    fn close(lease: &mut Lease, state: LeaseState, at: Option<Time>, version: u64) {
        lease.state = state;
        lease.expires = at.unwrap_or(lease.expires);
        lease.version = version;
    }

    fn restore_local(&mut self, (addr, place): (u32, Place), lease: &Lease) {
        let rec = NewRecord::of(lease, place);
        let key = lease.client.as_bytes();
        ends::restore_local(self, (addr, key), (lease.state, lease.version), &rec);
    }
}
