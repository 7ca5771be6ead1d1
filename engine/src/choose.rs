//! The choice of what to offer a client, for both families: v4's [`Engine::offer`] and v6's
//! [`v6::Engine::solicit`] make it the same way, in four steps.
//!
//! 1. The reservation, which is authoritative: the server decided it is this client's.
//! 2. The client's own record: the same address (resource) again (RFC 2131 §4.3.1).
//! 3. The address (resource) the client asked for.
//! 4. The next free one, pools in order of preference.
//!
//! A step whose candidate is a dynamic address a sibling shard owns asks for it to be
//! fetched ([`Step::Fetch`]) and is tried again once; when nothing here is free, the caller
//! borrows from a sibling ([`Step::Borrow`]) and tries again.
//!
//! A free address of a pool that waits (the [crate docs](crate#a-pool-that-waits)) is taken
//! by no step and never borrowed: its `availability` says `HeldByOther`.
//!
//! [`Engine::offer`]: crate::v4::Engine::offer
//! [`v6::Engine::solicit`]: crate::v6::Engine::solicit

use crate::common::{Avail, Sharded};
use crate::lease::{LeaseState, Time};
use crate::pools::table;

/// Expired records an operation reclaims on its way in: keeps expiry moving even if the
/// caller's `reclaim` timer lags, at a bounded cost.
pub(crate) const LAZY_RECLAIM: usize = 4;
/// Expired records a shard reclaims before it borrows from a sibling.
pub(crate) const EXHAUSTED_RECLAIM: usize = 1024;
/// Borrows one offer (solicit) may make before giving up (only reached if siblings race it).
pub(crate) const MAX_BORROWS: u32 = 8;

/// What one try of the choice, under the shard's lock, came to.
pub(crate) enum Step<D, P, O, R> {
    Done(D),
    /// The reservation is a fixed address free here: ask the siblings whether one of them
    /// holds it ([`Core::fixed_elsewhere`](crate::engine_core::Core)), then try again.
    Probe(R),
    /// Fetch this dynamic address from whichever sibling has it free, then try again.
    Fetch {
        pool: P,
        off: O,
        reserved: bool,
    },
    /// Nothing free here in any candidate pool: borrow from a sibling, then try again.
    Borrow,
}

/// Remote work a request has already tried, so that it is tried once.
#[derive(Default)]
pub(crate) struct Tried {
    pub(crate) reserved: bool,
    /// A sibling holds the fixed reserved address: the client waits for it.
    pub(crate) reserved_held: bool,
    pub(crate) requested: bool,
    pub(crate) borrows: u32,
}

/// An address (as its `u32`) or a v6 resource, of `O`'s shard.
type Res<O> = <<O as Offer>::Shard as Sharded>::Res;
/// Where an address sits in `O`'s pools.
type Place<O> = table::Place<<O as Offer>::Pool, <O as Offer>::Off>;

/// One request, with its family's shard and pools, as the choice sees it.
pub(crate) trait Offer {
    type Shard: Sharded<Place = table::Place<Self::Pool, Self::Off>>;
    type Pool: Copy;
    type Off: Copy;
    /// What the request returns.
    type Done;

    /// The client's reservation, if the server passed one.
    fn reserved(&self) -> Option<Res<Self>>;
    /// The address (resource) the client asked for.
    fn requested(&self) -> Option<Res<Self>>;
    /// The candidate pools, in order of preference.
    fn pools(&self) -> &[Self::Pool];
    fn place(&self, res: Res<Self>) -> Place<Self>;
    /// Whether `place` is in a pool the client may have an address of.
    fn in_candidates(&self, place: Place<Self>) -> bool;

    /// The client's key, as the records keep it.
    fn key(&self) -> &[u8];
    fn client_res(&self, g: &Self::Shard) -> Option<Res<Self>>;
    fn availability(
        &self,
        g: &mut Self::Shard,
        res: Res<Self>,
        place: Place<Self>,
        now: Time,
    ) -> Avail;
    /// Holds `res` for the client (an offer); what the request returns.
    fn hold(&self, g: &mut Self::Shard, res: Res<Self>, place: Place<Self>) -> Self::Done;
    /// What the request returns for `res`, the client's binding already.
    fn own(&self, g: &Self::Shard, res: Res<Self>) -> Self::Done;
    /// Holds the next free dynamic address of `pool` for the client, if it has one.
    fn hold_next_free(&self, g: &mut Self::Shard, pool: Self::Pool) -> Option<Self::Done>;
}

type StepOf<O> = Step<<O as Offer>::Done, <O as Offer>::Pool, <O as Offer>::Off, Res<O>>;

/// One try of the choice, under the lock of the request's shard `g`.
pub(crate) fn step<O: Offer>(o: &O, g: &mut O::Shard, now: Time, tried: &Tried) -> StepOf<O> {
    g.reclaim_due(now, LAZY_RECLAIM);
    // Offers `res` if the client may have it; an existing binding stays as it is.
    let take = |g: &mut O::Shard, res: Res<O>, place: Place<O>, avail: Avail| match avail {
        Avail::Own if g.state_of(res) == Some(LeaseState::Bound) => Some(Step::Done(o.own(g, res))),
        Avail::Own | Avail::Free => Some(Step::Done(o.hold(g, res, place))),
        _ => None,
    };

    // 1. The reservation. A fixed one that another client holds (bound, or quarantined) in
    // this shard or a sibling stays theirs until it ends; the client gets another address
    // meanwhile. A dynamic one (a reservation the server forgot to exclude) follows the
    // ownership rules like any other.
    if let Some(reserved) = o.reserved().filter(|_| !tried.reserved_held) {
        let place = o.place(reserved);
        let avail = match o.availability(g, reserved, place, now) {
            Avail::Free if place.dynamic().is_none() && !tried.reserved => {
                return Step::Probe(reserved);
            }
            Avail::Elsewhere if !tried.reserved => {
                if let Some((pool, off)) = place.dynamic() {
                    return Step::Fetch {
                        pool,
                        off,
                        reserved: true,
                    };
                }
                Avail::Elsewhere
            }
            avail => avail,
        };
        if let Some(step) = take(g, reserved, place, avail) {
            return step;
        }
    }

    // 2. The client's own record. An offer whose hold has passed is gone, whether or not
    // `reclaim` has reached it yet.
    if let Some(res) = o.client_res(g) {
        g.expire_due(res, now);
    }
    if let Some(res) = o.client_res(g) {
        let place = o.place(res);
        if o.in_candidates(place) {
            let avail = o.availability(g, res, place, now);
            if let Some(step) = take(g, res, place, avail) {
                return step;
            }
        }
    }

    // 3. The requested address.
    if let Some(requested) = o.requested() {
        let place = o.place(requested);
        if o.in_candidates(place) {
            let avail = o.availability(g, requested, place, now);
            if avail == Avail::Elsewhere
                && !tried.requested
                && let Some((pool, off)) = place.dynamic()
            {
                return Step::Fetch {
                    pool,
                    off,
                    reserved: false,
                };
            }
            if let Some(step) = take(g, requested, place, avail) {
                return step;
            }
        }
    }

    // 4. The next free address, pools in order of preference.
    for round in 0..2 {
        for &pool in o.pools() {
            if let Some(done) = o.hold_next_free(g, pool) {
                return Step::Done(done);
            }
        }
        if round == 0 && g.reclaim_due(now, EXHAUSTED_RECLAIM) == 0 {
            break;
        }
    }
    Step::Borrow
}
