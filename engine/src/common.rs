//! What the v4 and v6 engines share: holding their shards, the small types their shards
//! use alike, and replay's claim of an address across shards.
//!
//! The two engines keep different records (an IPv4 address and a client's DHCP details; a
//! v6 resource and an IA) in differently built pools, but hold and version their shards by
//! the same rules (see the crate docs). What is the same to the letter lives here once,
//! generic over [`Sharded`] where it touches a shard: monomorphised, so the engines' hot
//! paths pay nothing for it.

use std::sync::{Mutex, MutexGuard, PoisonError};

use crate::lease::{LeaseState, Time};

/// What both engines' record slabs share: the "none" index, the slot kinds in the low two
/// bits of a slot's flags (each engine's own flags take the bits above them), the arena's
/// unit and when it is compacted, and how a slot keeps a time.
pub(crate) mod slot {
    use crate::lease::Time;

    /// "No index" in a slab's free list (and v6's lists), and "no blob" in a slot's `extra`.
    pub(crate) const NONE: u32 = u32::MAX;

    pub(crate) const KIND_MASK: u8 = 0b11;
    pub(crate) const KIND_DYNAMIC: u8 = 0;
    pub(crate) const KIND_FIXED_IN_POOL: u8 = 1;
    pub(crate) const KIND_FIXED: u8 = 2;
    pub(crate) const KIND_VACANT: u8 = 3;

    /// Arena blobs start at multiples of this many bytes: a slot's `extra` counts units, so a
    /// shard's arena can hold 16 GiB.
    pub(crate) const UNIT: usize = 4;
    /// The arena is compacted once at least this much of it is garbage, and more than half.
    pub(crate) const COMPACT_MIN: usize = 1 << 16;

    /// A time as the slots keep it: seconds since the epoch, saturating at `u32::MAX`.
    pub(crate) fn clamp(t: Time) -> u32 {
        u32::try_from(t).unwrap_or(u32::MAX)
    }
}

/// Whether a record in `state` keeps its address (resource) from being free.
pub(crate) fn is_held(state: LeaseState) -> bool {
    matches!(
        state,
        LeaseState::Offered | LeaseState::Bound | LeaseState::Declined
    )
}

/// Records of dynamic addresses (resources) in one pool and shard, by state, for stats.
/// Released and Expired ones are free (remembered for their client) but still counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) offered: u64,
    pub(crate) bound: u64,
    pub(crate) declined: u64,
    pub(crate) released: u64,
    pub(crate) expired: u64,
}

impl Counts {
    pub(crate) fn held(&self) -> u64 {
        self.offered + self.bound + self.declined
    }

    /// Counts a record in `state` in (`up`) or out.
    pub(crate) fn tally(&mut self, state: LeaseState, up: bool) {
        let n = match state {
            LeaseState::Offered => &mut self.offered,
            LeaseState::Bound => &mut self.bound,
            LeaseState::Declined => &mut self.declined,
            LeaseState::Released => &mut self.released,
            LeaseState::Expired => &mut self.expired,
        };
        if up {
            *n += 1;
        } else {
            *n -= 1;
        }
    }
}

/// What an address (a v6 resource) is to a client (an IA), in one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Avail {
    /// The client's own offer (advertise) or lease.
    Own,
    /// Free here (or a fixed address nobody holds here).
    Free,
    /// A dynamic address this shard does not own: a sibling may have it free.
    Elsewhere,
    /// Another client's live offer or lease.
    HeldByOther,
    /// Quarantined after a DECLINE.
    Quarantined,
}

/// What a shard's `take_free` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Give {
    /// The free address (resource) left this shard.
    Given,
    /// Quarantined here.
    Quarantined,
    /// Another client's offer or binding here.
    Held,
    /// This shard does not own it.
    NotHere,
}

/// What a shard's `restore_claim` found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Claim {
    /// Nothing of that address here (any older record of it is gone).
    Absent,
    /// A record of the address here is at least as new as the restored one.
    Newer,
    /// The free address was taken out of this shard, whose clock was then `clock`.
    Claimed { clock: u64 },
}

/// Which of a client's records is its current (indexed) one on replay: a binding first (a
/// binding in a folded journal is always live, while a Released or Expired record of the
/// client with a higher version can be the end of an old quarantine), then the highest
/// version (the address breaks ties, which a consistent journal never has).
pub(crate) fn current_rank<R: Ord>(state: LeaseState, version: u64, res: R) -> (bool, u64, R) {
    (state == LeaseState::Bound, version, res)
}

/// Of pool ranges `(first, last, pool)` sorted by `first`, the first two that overlap,
/// lower pool first.
pub(crate) fn overlap<A: Ord + Copy, P: Ord + Copy>(sorted: &[(A, A, P)]) -> Option<(P, P)> {
    sorted.windows(2).find_map(|pair| {
        let ((_, a_last, a), (b_first, _, b)) = (pair[0], pair[1]);
        (a_last >= b_first).then(|| (a.min(b), a.max(b)))
    })
}

/// A v4 or v6 shard, as the code both engines share sees it.
pub(crate) trait Sharded {
    /// A record of the shard, as the engine hands it out.
    type Lease;
    /// What a record is of: an address (as its `u32`) or a resource.
    type Res: Copy + PartialEq;
    /// Where a record sits in the pools.
    type Place: Copy;

    /// The shard's Lamport clock: the last version it gave a change.
    fn clock(&mut self) -> &mut u64;

    /// Ends up to `budget` held records whose time has passed, earliest first.
    fn reclaim_due(&mut self, now: Time, budget: usize) -> usize;
    /// Ends the record of `res` if it is held and its time has passed.
    fn expire_due(&mut self, res: Self::Res, now: Time);
    /// The state of the record of `res` here, if there is one.
    fn state_of(&self, res: Self::Res) -> Option<LeaseState>;

    /// Appends every record of the shard to `out`.
    fn leases_into(&self, out: &mut Vec<Self::Lease>);
    /// Appends up to `max` records to `out`, walking the slab from index `from`; returns
    /// where the next chunk starts, or `None` once the walk has reached the end.
    fn leases_chunk(&self, from: usize, max: usize, out: &mut Vec<Self::Lease>) -> Option<usize>;

    /// Replay, in every shard in turn: drops a record of `res` here older than `version`
    /// (refusing if one is not older), and, unless this is the `target` shard, takes the
    /// free dynamic address out of this shard.
    fn restore_claim(
        &mut self,
        res: Self::Res,
        place: Self::Place,
        version: u64,
        target: bool,
    ) -> Claim;

    /// Replay, in the target shard: takes in the dynamic address at `place`, which
    /// [`Sharded::restore_claim`] took out of a sibling.
    fn receive_claimed(&mut self, place: Self::Place);

    /// The control API: drops the record of `res` (not an offer's hold) and hands out a
    /// tombstone of it; returns the record it dropped.
    fn forget(&mut self, res: Self::Res) -> Option<Self::Lease>;
    /// The record of `res` here, if there is one.
    fn lease_of(&self, res: Self::Res) -> Option<Self::Lease>;
    /// The resources of the records `which` picks by resource and state (never offers).
    fn select(&self, which: &mut dyn FnMut(Self::Res, LeaseState) -> bool) -> Vec<Self::Res>;
}

/// Locks one shard.
#[inline]
pub(crate) fn lock<S>(shards: &[Mutex<S>], shard: usize) -> MutexGuard<'_, S> {
    // A panic while a shard was locked cannot leave it half-updated in a way that
    // matters more than stopping every worker would; keep serving.
    shards[shard].lock().unwrap_or_else(PoisonError::into_inner)
}

/// Every shard of `count` but `shard`.
#[inline]
pub(crate) fn siblings(count: usize, shard: usize) -> impl Iterator<Item = usize> {
    (0..count).filter(move |&s| s != shard)
}

/// Raises every shard's clock to at least `floor`.
pub(crate) fn advance_versions<S: Sharded>(shards: &[Mutex<S>], floor: u64) {
    for shard in 0..shards.len() {
        let mut g = lock(shards, shard);
        let clock = g.clock();
        *clock = (*clock).max(floor);
    }
}

/// The highest clock of any shard.
pub(crate) fn max_version<S: Sharded>(shards: &[Mutex<S>]) -> u64 {
    (0..shards.len())
        .map(|shard| *lock(shards, shard).clock())
        .max()
        .unwrap_or(0)
}

/// Every record of every shard, sorted by `key`.
pub(crate) fn leases<S: Sharded, K: Ord>(
    shards: &[Mutex<S>],
    key: impl FnMut(&S::Lease) -> K,
) -> Vec<S::Lease> {
    let mut all = Vec::new();
    for shard in 0..shards.len() {
        lock(shards, shard).leases_into(&mut all);
    }
    all.sort_unstable_by_key(key);
    all
}

/// One shard at a time, whichever way the shards are held.
pub(crate) trait Access<S> {
    /// How many shards there are.
    fn count(&self) -> usize;
    fn with<R>(&mut self, shard: usize, f: impl FnOnce(&mut S) -> R) -> R;
}

impl<S> Access<S> for &[Mutex<S>] {
    fn count(&self) -> usize {
        self.len()
    }
    fn with<R>(&mut self, shard: usize, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut lock(self, shard))
    }
}

impl<S> Access<S> for [MutexGuard<'_, S>] {
    fn count(&self) -> usize {
        self.len()
    }
    fn with<R>(&mut self, shard: usize, f: impl FnOnce(&mut S) -> R) -> R {
        f(&mut self[shard])
    }
}

/// One record's replay: claims `res` (at `place`, with `version`) from whichever shard has
/// it, then has `put` put the record back in `shard`. Returns `false`,
/// having put nothing back, if a record of `res` at least as new is there already.
pub(crate) fn restore_one<S: Sharded>(
    shards: &mut (impl Access<S> + ?Sized),
    shard: usize,
    (res, place, version): (S::Res, S::Place, u64),
    put: impl FnOnce(&mut S),
) -> bool {
    let count = shards.count();
    assert!(shard < count, "shard {shard} out of range");
    let mut lender_clock = 0;
    let mut claimed = false;
    for s in 0..count {
        match shards.with(s, |g| g.restore_claim(res, place, version, s == shard)) {
            Claim::Absent => {}
            Claim::Newer => {
                shards.with(shard, |g| {
                    let clock = g.clock();
                    *clock = (*clock).max(version);
                });
                return false;
            }
            Claim::Claimed { clock } => {
                claimed = true;
                lender_clock = lender_clock.max(clock);
            }
        }
    }
    shards.with(shard, |g| {
        let clock = g.clock();
        *clock = (*clock).max(lender_clock);
        if claimed {
            g.receive_claimed(place);
        }
        put(g);
    });
    true
}

/// The log every shard of an engine shares in tests: every event as it is made, the real
/// order of the changes, which hand-out order is not.
#[cfg(test)]
pub(crate) type Trace<R> = std::sync::Arc<Mutex<Vec<(R, u64)>>>;

/// Gives every shard the same [`Trace`].
#[cfg(test)]
pub(crate) fn share_trace<S, R>(shards: &[Mutex<S>], trace: fn(&mut S) -> &mut Trace<R>) {
    let shared = Trace::<R>::default();
    for shard in 0..shards.len() {
        *trace(&mut lock(shards, shard)) = std::sync::Arc::clone(&shared);
    }
}
