//! How a shard's record begins and ends, written once for both families over [`Ends`].
//!
//! The v4 and v6 shards keep their free space, counts and expiry heap differently, but give,
//! expire, release, decline and put back a record by the same rules (see the module docs of
//! `shard.rs` and `v6/shard.rs`). Those rules live here, generic over [`Ends`]: the shards
//! call them with their own type, so each is monomorphised and the hot paths pay nothing.

use crate::common::{Avail, Claim, Sharded, current_rank, is_held};
use crate::engine_core::Family;
use crate::lease::{EventKind, LeaseState, Time};
use crate::pools::table;
use crate::slots::{New, Records, Slot};

/// A shard's record, as the engine hands it out.
pub(crate) type Lease<S> = <<S as Ends>::Fam as Family>::Lease;
/// A shard's record as a lookup shows it.
pub(crate) type View<S> = <<S as Ends>::Fam as Family>::View;
/// A change a shard makes, for the journal.
pub(crate) type Event<S> = <<S as Ends>::Fam as Family>::Event;
/// A pool's id in a shard's family.
pub(crate) type FamPool<S> = <<S as Ends>::Fam as Family>::Pool;

/// The resource a shard's records are of.
pub(crate) type Res<S> = <<S as Ends>::Slot as Slot>::Res;
/// Where a shard's records sit in the pools.
pub(crate) type Place<S> = <<S as Ends>::Slot as Slot>::Place;

/// A shard as the shared record rules see it: its records and the family's own steps.
pub(crate) trait Ends {
    /// The family the shard is of.
    type Fam: Family<Lease: Clone>;
    type Slot: Slot<Place = table::Place<FamPool<Self>, Self::Off>>;
    /// An offset in a pool.
    type Off: Copy;
    /// The state and times a record is given (v6 adds a preferred lifetime).
    type Term: Copy;
    /// The expiry heap's type.
    type Heap: Expiry;
    /// A pool's free space in the shard.
    type Free: Free<Self::Off>;

    fn records(&self) -> &Records<Self::Slot>;
    fn records_mut(&mut self) -> &mut Records<Self::Slot>;
    /// The record at `idx`, as a lease.
    fn lease(&self, idx: u32) -> Lease<Self>;
    /// The record at `idx`, as a view.
    fn view(&self, idx: u32) -> View<Self>;
    /// The shard's Lamport clock: the last version it gave a change.
    fn clock_mut(&mut self) -> &mut u64;
    /// Events made but not yet handed out.
    fn pending(&mut self) -> &mut Vec<Event<Self>>;
    /// The shard's free space in `pool`.
    fn free(&mut self, pool: FamPool<Self>) -> &mut Self::Free;
    /// Adds a record whose resource has none here, keeping free space, counts and heap in
    /// step; returns its slab index.
    fn insert(&mut self, rec: &crate::slots::New<'_, Self::Slot>) -> u32;
    /// Drops the record at `idx`; returns its state, and the record as a lease if it was
    /// Bound or Declined.
    fn remove_at(&mut self, idx: u32) -> (LeaseState, Option<Lease<Self>>);
    /// Moves the record at `idx` to `term` under a new version.
    fn set_term(&mut self, idx: u32, term: Self::Term);
    /// The term of a record that ends: `state` from `starts` to `expires`.
    fn term(state: LeaseState, starts: Time, expires: Time) -> Self::Term;
    /// The state, start and end of `term`.
    fn times(term: Self::Term) -> (LeaseState, Time, Time);
    /// Marks `lease`, a record just dropped, as ended in `state` (at `at`, if given) under
    /// `version`.
    fn close(lease: &mut Lease<Self>, state: LeaseState, at: Option<Time>, version: u64);
    /// The expiry heap.
    fn expiry(&mut self) -> &mut Self::Heap;
    /// The slab index of the live record an expiry entry's `at` names, if there is one.
    fn entry_record(&self, at: u32) -> Option<u32>;
    /// Queues the event of a change just made (`lease.version` is that change's tick).
    fn emit(&mut self, kind: EventKind, lease: Lease<Self>);
    /// Replay, in the target shard (which owns `res` if it is dynamic, and has no record of
    /// it): puts `lease` back (see [`restore_local`]).
    fn restore_local(&mut self, at: (Res<Self>, Place<Self>), lease: &Lease<Self>);
    /// The log of every event as it is made, which every shard of an engine shares.
    #[cfg(test)]
    fn trace(&mut self) -> &mut crate::common::Trace<Res<Self>>;
}

/// A pool's free offsets in one shard, as the shared code sees them: v4's bitmap of clean
/// ones, v6's `Space`.
pub(crate) trait Free<O> {
    /// Whether `off`, which no record in this shard has, is free in it.
    fn has(&self, off: O) -> bool;
    /// Gives up `off` (free, no record here) to a sibling; returns whether it was here.
    fn give(&mut self, off: O) -> bool;
    /// Takes in `off`, which a sibling gave up.
    fn take_back(&mut self, off: O);
}

impl Free<u32> for roaring::RoaringBitmap {
    fn has(&self, off: u32) -> bool {
        self.contains(off)
    }
    fn give(&mut self, off: u32) -> bool {
        self.remove(off)
    }
    fn take_back(&mut self, off: u32) {
        self.insert(off);
    }
}

/// Writes the [`Ends`] items both shards implement alike, given a shard with the fields
/// `records`, `clock`, `expiry`, `pending` and (in tests) `trace`, inside its `impl Ends`;
/// `$res` is the lease's field the trace logs, `$off`, `$heap` and `$free` the types of
/// offsets, expiry heap and free space, and `$space` finds a pool's free space in `$g`.
macro_rules! ends_fields {
    ($fam:ty, $res:ident; $off:ty, $heap:ty, $free:ty; |$g:ident, $pool:ident| $space:expr) => {
        type Fam = $fam;
        type Slot = Slot;
        type Off = $off;
        type Heap = $heap;
        type Free = $free;
        type Term = Term;

        #[cfg(test)]
        fn trace(&mut self) -> &mut crate::common::Trace<crate::ends::Res<Self>> {
            &mut self.trace
        }
        fn emit(&mut self, kind: EventKind, lease: Lease) {
            #[cfg(test)]
            self.trace
                .lock()
                .unwrap()
                .push((lease.$res.into(), lease.version));
            self.pending.push(LeaseEvent { kind, lease });
        }
        fn records(&self) -> &Records {
            &self.records
        }
        fn records_mut(&mut self) -> &mut Records {
            &mut self.records
        }
        fn lease(&self, idx: u32) -> Lease {
            self.records.lease(idx)
        }
        fn view(&self, idx: u32) -> LeaseView {
            self.records.view(idx)
        }
        fn pending(&mut self) -> &mut Vec<LeaseEvent> {
            &mut self.pending
        }
        fn free(&mut self, $pool: PoolId) -> &mut $free {
            let $g = self;
            $space
        }
        fn clock_mut(&mut self) -> &mut u64 {
            &mut self.clock
        }
        fn expiry(&mut self) -> &mut Self::Heap {
            &mut self.expiry
        }
    };
}
pub(crate) use ends_fields;

/// What the engines' shared code sees of a shard is the same for both families.
impl<S: Ends> Sharded for S {
    type Lease = Lease<S>;
    type Res = Res<S>;
    type Place = Place<S>;

    fn clock(&mut self) -> &mut u64 {
        self.clock_mut()
    }
    fn reclaim_due(&mut self, now: Time, budget: usize) -> usize {
        reclaim(self, now, budget)
    }
    fn expire_due(&mut self, res: Res<S>, now: Time) {
        expire_if_due(self, res, now);
    }
    fn state_of(&self, res: Res<S>) -> Option<LeaseState> {
        self.records().get(res).map(Slot::state)
    }
    fn leases_into(&self, out: &mut Vec<Lease<S>>) {
        out.extend(self.records().iter().map(|idx| self.lease(idx)));
    }
    fn leases_chunk(&self, from: usize, max: usize, out: &mut Vec<Lease<S>>) -> Option<usize> {
        let records = self.records();
        let end = records.slab_len();
        let mut taken = 0;
        for idx in from..end {
            if taken == max {
                return Some(idx);
            }
            if records.live_slot(idx as u32).is_some() {
                out.push(self.lease(idx as u32));
                taken += 1;
            }
        }
        None
    }
    fn restore_claim(&mut self, res: Res<S>, place: Place<S>, version: u64, target: bool) -> Claim {
        if let Some(idx) = self.records().find(res) {
            if self.records().slot(idx).version() >= version {
                return Claim::Newer;
            }
            // An older record of the resource (the caller gave more than a journal's fold).
            self.remove_at(idx);
        }
        let given = !target
            && place
                .dynamic()
                .is_some_and(|(pool, off)| self.free(pool).give(off));
        if given {
            Claim::Claimed {
                clock: *self.clock_mut(),
            }
        } else {
            Claim::Absent
        }
    }
    fn receive_claimed(&mut self, place: Place<S>) {
        if let Some((pool, off)) = place.dynamic() {
            self.free(pool).take_back(off);
        }
    }
    fn forget(&mut self, res: Res<S>) -> Option<Lease<S>> {
        forget(self, res)
    }
    fn lease_of(&self, res: Res<S>) -> Option<Lease<S>> {
        self.records().find(res).map(|idx| self.lease(idx))
    }
    fn select(&self, which: &mut dyn FnMut(Res<S>, LeaseState) -> bool) -> Vec<Res<S>> {
        let records = self.records();
        records
            .iter()
            .map(|idx| records.slot(idx))
            .filter(|slot| slot.state() != LeaseState::Offered && which(slot.res(), slot.state()))
            .map(Slot::res)
            .collect()
    }
}

/// The time a tombstone ends at: the epoch, so that the journal's `keep` drops the key on
/// replay and compaction as it drops a record long over.
pub(crate) const TOMBSTONE_END: Time = 0;

/// Drops the record of `res` unless it is an offer's hold (never journaled, so nothing to
/// take back), and hands out a Released event of it that ended at [`TOMBSTONE_END`]: the
/// journal forgets the address, so replay restores no record of it. Returns the record.
pub(crate) fn forget<S: Ends>(g: &mut S, res: Res<S>) -> Option<Lease<S>> {
    let idx = g.records().find(res)?;
    if g.records().slot(idx).state() == LeaseState::Offered {
        return None;
    }
    let lease = g.lease(idx);
    g.remove_at(idx);
    emit_gone(
        g,
        lease.clone(),
        LeaseState::Released,
        Some(TOMBSTONE_END),
        EventKind::Released,
    );
    Some(lease)
}

/// Gives the record at `idx` a new state and times (under a new version), and hands out a
/// `kind` event of it.
pub(crate) fn end<S: Ends>(
    g: &mut S,
    idx: u32,
    state: LeaseState,
    (starts, expires): (Time, Time),
    kind: EventKind,
) {
    g.set_term(idx, S::term(state, starts, expires));
    let lease = g.lease(idx);
    g.emit(kind, lease);
}

/// Hands out a `kind` event of a removed record `lease`, now in `state` (and ending at `at`,
/// if given) under a new version.
fn emit_gone<S: Ends>(
    g: &mut S,
    mut lease: Lease<S>,
    state: LeaseState,
    at: Option<Time>,
    kind: EventKind,
) {
    let version = tick(g);
    S::close(&mut lease, state, at, version);
    g.emit(kind, lease);
}

/// The next version of the shard's clock: every change to a record takes one.
pub(crate) fn tick<S: Ends>(g: &mut S) -> u64 {
    let clock = g.clock_mut();
    *clock += 1;
    *clock
}

/// Ends the held record at `idx` whose time has come.
pub(crate) fn expire<S: Ends>(g: &mut S, idx: u32) {
    let slot = *g.records().slot(idx);
    match slot.state() {
        // An offer ends silently: it was never journaled.
        LeaseState::Offered => {
            g.remove_at(idx);
        }
        // The record stays so the client gets the same resource back if still free.
        LeaseState::Bound => {
            let times = (Time::from(slot.starts()), Time::from(slot.expires()));
            end(g, idx, LeaseState::Expired, times, EventKind::Expired);
        }
        // The quarantine ends; the journal hears of it so that replay lifts it too.
        LeaseState::Declined => {
            if let (_, Some(lease)) = g.remove_at(idx) {
                emit_gone(g, lease, LeaseState::Expired, None, EventKind::Expired);
            }
        }
        LeaseState::Released | LeaseState::Expired => {}
    }
}

/// Ends the record of `res` if it is held and its time has passed. Every check of a
/// specific resource goes through this, so a record whose time has passed never blocks
/// anyone, whether or not the shard's reclaim has reached it yet.
pub(crate) fn expire_if_due<S: Ends>(g: &mut S, res: Res<S>, now: Time) {
    if let Some(idx) = g.records().find(res) {
        let slot = g.records().slot(idx);
        if is_held(slot.state()) && Time::from(slot.expires()) <= now {
            expire(g, idx);
        }
    }
}

/// What `res` at `place` is to the client whose key is `key` here. With no record of it,
/// the shard may give a fixed one, or a dynamic one free here.
pub(crate) fn availability<S: Ends>(
    g: &mut S,
    (res, place): (Res<S>, Place<S>),
    key: &[u8],
    now: Time,
) -> Avail {
    expire_if_due(g, res, now);
    let Some(idx) = g.records().find(res) else {
        return match place.dynamic() {
            Some((pool, off)) if !g.free(pool).has(off) => Avail::Elsewhere,
            _ => Avail::Free,
        };
    };
    let records = g.records();
    match records.slot(idx).state() {
        LeaseState::Offered | LeaseState::Bound if records.key(idx) == key => Avail::Own,
        // Only a reserved client may take a fixed address: another client's offer of it
        // does not hold it against that client (docs/RELOAD.md, "Reservations in use").
        LeaseState::Offered if place.dynamic().is_none() => Avail::Free,
        LeaseState::Offered | LeaseState::Bound => Avail::HeldByOther,
        LeaseState::Declined => Avail::Quarantined,
        LeaseState::Released | LeaseState::Expired => Avail::Free,
    }
}

/// Whether this shard, a sibling of the one where the client whose key is `key` is to get
/// fixed `res` as its reservation, holds it: a binding or a quarantine does, whoever's it
/// is. Otherwise the record of it here goes (another client's offer, an ended record), so
/// that the address has one record, in the client's shard.
pub(crate) fn holds_fixed<S: Ends>(g: &mut S, res: Res<S>, key: &[u8], now: Time) -> bool {
    expire_if_due(g, res, now);
    let Some(idx) = g.records().find(res) else {
        return false;
    };
    let records = g.records();
    match records.slot(idx).state() {
        LeaseState::Offered if records.key(idx) == key => true,
        LeaseState::Bound | LeaseState::Declined => true,
        LeaseState::Offered | LeaseState::Released | LeaseState::Expired => {
            g.remove_at(idx);
            false
        }
    }
}

/// Gives `res` at `place` to the client whose key is `key` with `term` (Offered or Bound).
/// The caller has checked that the resource is the client's own, free here, or a fixed one
/// it may take. `own` refreshes the client's record it keeps; a new record keeps `more`.
/// Returns the state of the client's record of `res` before, if it had one, and the
/// record's slab index.
pub(crate) fn hold<'a, S: Ends>(
    g: &mut S,
    (res, place, key): (Res<S>, Place<S>, &'a [u8]),
    term: S::Term,
    more: <S::Slot as Slot>::More<'a>,
    own: impl FnOnce(&mut S, u32),
) -> (Option<LeaseState>, u32) {
    let (state, starts, expires) = S::times(term);
    // A client has one record per shard: moving to another resource ends the old one.
    if let Some(old) = g.records().client_bytes(key)
        && g.records().slot(old).res() != res
    {
        abandon(g, old, starts);
    }
    let prior = match g.records().find(res) {
        Some(idx)
            if g.records().key(idx) == key
                && g.records().slot(idx).state() != LeaseState::Declined =>
        {
            own(g, idx);
            Some((g.records().slot(idx).state(), idx))
        }
        Some(idx) => {
            // Someone else's remembered resource, or a fixed resource taken back for the
            // client it is reserved for.
            evict(g, idx, starts);
            None
        }
        None => None,
    };
    let (prior, idx) = match prior {
        Some((state, idx)) => {
            g.set_term(idx, term);
            (Some(state), idx)
        }
        None => {
            let version = tick(g);
            let rec = New {
                res,
                place,
                key,
                state,
                starts,
                expires,
                version,
                more,
            };
            (None, g.insert(&rec))
        }
    };
    // The client's old record, if any, is gone from the index by now.
    if !g.records().slot(idx).is_indexed() {
        g.records_mut().index(idx);
    }
    (prior, idx)
}

/// Ends a client's indexed record because the client moved to another resource. A
/// quarantine stays (only the index entry goes); a binding is released, with an event.
fn abandon<S: Ends>(g: &mut S, idx: u32, now: Time) {
    if g.records().slot(idx).state() == LeaseState::Declined {
        g.records_mut().unindex(idx);
    } else {
        evict(g, idx, now);
    }
}

/// Drops the record; a binding ends with a Released event.
fn evict<S: Ends>(g: &mut S, idx: u32, now: Time) {
    if let (LeaseState::Bound, Some(lease)) = g.remove_at(idx) {
        emit_gone(
            g,
            lease,
            LeaseState::Released,
            Some(now),
            EventKind::Released,
        );
    }
}

/// RELEASE: the binding of `res` by the client whose key is `key` becomes Released
/// (remembered for it). Returns whether there was one.
pub(crate) fn release<S: Ends>(g: &mut S, res: Res<S>, key: &[u8], now: Time) -> bool {
    expire_if_due(g, res, now);
    let Some(idx) = g.records().find(res) else {
        return false;
    };
    let slot = *g.records().slot(idx);
    if g.records().key(idx) != key || slot.state() != LeaseState::Bound {
        return false;
    }
    let times = (Time::from(slot.starts()), now);
    end(g, idx, LeaseState::Released, times, EventKind::Released);
    true
}

/// DECLINE: the offer or binding of `res` by the client whose key is `key` is quarantined
/// until `until`. Returns whether there was one.
pub(crate) fn decline<S: Ends>(g: &mut S, res: Res<S>, key: &[u8], now: Time, until: Time) -> bool {
    expire_if_due(g, res, now);
    let Some(idx) = g.records().find(res) else {
        return false;
    };
    if g.records().key(idx) != key
        || !matches!(
            g.records().slot(idx).state(),
            LeaseState::Offered | LeaseState::Bound
        )
    {
        return false;
    }
    end(
        g,
        idx,
        LeaseState::Declined,
        (now, until),
        EventKind::Declined,
    );
    true
}

/// Replay, in the target shard (which owns `res` if it is dynamic, and has no record of
/// it): puts back the record `rec` of `res`, by the client whose key is `key`, in `state`
/// at `version`. See [`Engine::restore`](crate::v4::Engine::restore) for the rules.
pub(crate) fn restore_local<S: Ends>(
    g: &mut S,
    (res, key): (Res<S>, &[u8]),
    (state, version): (LeaseState, u64),
    rec: &crate::slots::New<'_, S::Slot>,
) where
    Res<S>: Ord,
{
    debug_assert!(g.records().find(res).is_none(), "restore over a record");
    let clock = g.clock_mut();
    *clock = (*clock).max(version);
    let rank = current_rank(state, version, res);
    let current = g.records().client_bytes(key).map(|idx| {
        let slot = g.records().slot(idx);
        let cur_rank = current_rank(slot.state(), slot.version(), slot.res());
        (idx, slot.state(), cur_rank)
    });
    let indexed = match current {
        None => true,
        Some((_, _, cur_rank)) if cur_rank > rank => false,
        Some((idx, cur_state, _)) => {
            if cur_state == LeaseState::Declined {
                // A quarantine outlives the client moving on.
                g.records_mut().unindex(idx);
            } else {
                // Superseded: the resource is simply free.
                g.remove_at(idx);
            }
            true
        }
    };
    if !indexed && state != LeaseState::Declined {
        // Superseded by the client's current record: the resource is simply free (a
        // dynamic one is this shard's already).
        return;
    }
    let idx = g.insert(rec);
    if indexed {
        g.records_mut().index(idx);
    }
}

/// A shard's expiry heap, as [`reclaim`] sees it: `(expires, at)` of held records, earliest
/// first, where `at` finds the record again (an address, or a slab index).
pub(crate) trait Expiry {
    fn peek_entry(&self) -> Option<(u32, u32)>;
    fn pop_entry(&mut self);
}

/// The v4 heap: entries packed by [`expiry_entry`](crate::shard::expiry_entry).
impl Expiry for crate::grow::MinHeap {
    fn peek_entry(&self) -> Option<(u32, u32)> {
        self.peek().map(crate::shard::expiry_parts)
    }
    fn pop_entry(&mut self) {
        self.pop();
    }
}

/// The v6 heap, by slab index.
impl Expiry for std::collections::BinaryHeap<std::cmp::Reverse<(u32, u32)>> {
    fn peek_entry(&self) -> Option<(u32, u32)> {
        self.peek().map(|entry| entry.0)
    }
    fn pop_entry(&mut self) {
        self.pop();
    }
}

/// Ends up to `budget` held records whose time has passed, earliest first; returns how
/// many it ended.
pub(crate) fn reclaim<S: Ends>(g: &mut S, now: Time, budget: usize) -> usize {
    let mut done = 0;
    while done < budget {
        let Some((expires, at)) = g.expiry().peek_entry() else {
            break;
        };
        if Time::from(expires) > now {
            break;
        }
        g.expiry().pop_entry();
        // Skip entries left behind by records that changed since (a v6 slot reused by a
        // record with the same end is due all the same).
        let Some(idx) = g.entry_record(at) else {
            continue;
        };
        let slot = g.records().slot(idx);
        if is_held(slot.state()) && slot.expires() == expires {
            expire(g, idx);
            done += 1;
        }
    }
    done
}
