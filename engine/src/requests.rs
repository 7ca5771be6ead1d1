//! The requests both families answer alike, and how [`Core`] answers them: an offer (v4's
//! DISCOVER, v6's SOLICIT) through [`choose`], a bind (REQUEST) through one loop that judges
//! what the address is to the client and binds it.

use crate::choose::{self, LAZY_RECLAIM};
use crate::common::{Avail, Give, Sharded};
use crate::ends::{self, Ends};
use crate::engine_core::{Core, Family, Ops, Place, Res, Term};
use crate::lease::{EventKind, LeaseState, Time};
use crate::pools::table;

/// A request for an offer (v4: DISCOVER; v6: SOLICIT, or a REQUEST for an IA with no lease
/// yet): [`v4::OfferRequest`](crate::v4::OfferRequest), [`v6::SolicitRequest`](crate::v6::SolicitRequest).
#[derive(Clone, Copy, Debug)]
pub struct OfferRequest<'a, F: Family> {
    /// Who asks.
    pub client: &'a F::Key,
    /// Pools the client may get an address (resource) from, in order of preference. In v6,
    /// pools of another kind than the IA's are ignored.
    pub pools: &'a [F::Pool],
    /// The client's reservation (static assignment), if the server has one for it
    /// (authoritative).
    pub reserved: Option<F::Addr>,
    /// What the client asked for (v4: option 50; v6: the IA's hint), if anything.
    pub requested: Option<F::Addr>,
    /// What the server knows about the client.
    pub info: F::Info<'a>,
}

/// A request to bind or extend (v4: REQUEST; v6: REQUEST, RENEW, REBIND or a rapid commit):
/// [`v4::BindRequest`](crate::v4::BindRequest), [`v6::BindRequest`](crate::v6::BindRequest).
#[derive(Clone, Copy, Debug)]
pub struct BindRequest<'a, F: Family> {
    /// Who asks.
    pub client: &'a F::Key,
    /// The address (v6: resource) to bind.
    pub address: F::Addr,
    /// Pools `address` may come from (in v6, pools of another kind than the IA's are
    /// ignored).
    pub pools: &'a [F::Pool],
    /// `address` is this client's reservation (static assignment).
    pub reserved: bool,
    /// The lease's times, and what the server knows about the client.
    pub grant: F::Grant<'a>,
}

/// Why a bind is refused, before each family names it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Refused {
    /// In no candidate pool, and not the client's reservation.
    NotInPool,
    /// Quarantined after a DECLINE.
    Quarantined,
    /// Another client's, or somebody's reservation.
    Taken,
}

#[allow(private_bounds)]
impl<F: Ops> Core<F> {
    /// The offer of `req` in `shard` (see [`choose`]); `None` when every candidate pool is
    /// exhausted. v4's [`offer`](crate::v4::Engine::offer) and v6's
    /// [`solicit`](crate::v6::Engine::solicit).
    pub(crate) fn offer_one(
        &self,
        shard: usize,
        req: &OfferRequest<'_, F>,
        now: Time,
    ) -> Option<F::Offered> {
        let expires = now.saturating_add(u64::from(self.offer_hold));
        let offering = Offering {
            engine: self,
            req,
            term: F::Shard::term(LeaseState::Offered, now, expires),
        };
        self.choose(shard, &offering, now, |pool| {
            F::fits(&self.pools, pool, req.client) && !self.is_waiting(pool)
        })
    }

    /// REQUEST (v6 also RENEW, REBIND or a rapid commit): binds `req.address` to the client
    /// or extends its binding, and pushes a Bound or Renewed event (after any pending events
    /// of this shard) into `events`, which it never clears.
    ///
    /// It succeeds if the address is the client's own (any record of the client but a
    /// quarantine), free in a candidate pool here or in a sibling, or the client's
    /// reservation, unless another client's binding holds it in any shard (docs/RELOAD.md,
    /// "Reservations in use"). A client binding a new address gives up its previous record
    /// (a previous binding ends with a Released event). Refused as `NotInPool` when in no
    /// candidate pool (v6: of the IA's kind) and not reserved; as `Taken` when another
    /// client's, or somebody's reservation (even one the client holds), or free in a pool
    /// that waits ([`Core::set_waiting`]); as v6's `Quarantined` (v4's `Taken`) after a
    /// DECLINE.
    pub fn bind(
        &self,
        shard: usize,
        req: &BindRequest<'_, F>,
        now: Time,
        events: &mut Vec<F::Event>,
    ) -> Result<F::View, F::BindError> {
        let place = F::place(&self.pools, req.address);
        let in_pool = place.pool().is_some_and(|pool| {
            req.pools.contains(&pool) && F::fits(&self.pools, pool, req.client)
        });
        if !req.reserved && !in_pool {
            return Err(F::refused(Refused::NotInPool));
        }
        let fixed = place.dynamic().is_none();
        // A fixed address is somebody's reservation, and only theirs: even its holder's
        // renewal is refused once it is reserved for another client.
        if fixed && !req.reserved {
            return Err(F::refused(Refused::Taken));
        }
        let decide = |avail, fetched| {
            let refused = match avail {
                Avail::Own | Avail::Free => None,
                Avail::Elsewhere if fetched == Some(Give::Quarantined) => {
                    Some(Refused::Quarantined)
                }
                Avail::Quarantined => Some(Refused::Quarantined),
                Avail::Elsewhere | Avail::HeldByOther => Some(Refused::Taken),
            };
            refused.map_or(Ok(()), |why| Err(F::refused(why)))
        };
        let (client, address, grant) = (req.client, req.address, req.grant);
        let probe = fixed && req.reserved;
        self.bind_with(
            shard,
            client,
            address,
            (place, probe, true),
            grant,
            now,
            events,
            decide,
        )
    }

    /// A bind's loop: after the lazy reclaim, `decide` judges what `addr` at `place` is to
    /// `key` (and, if a sibling owned it, what that sibling said), and the address is bound
    /// as `grant` says if `decide` allowed. An address a sibling owns is fetched once first;
    /// with `probe` (a fixed address, the client's reservation) one free here is
    /// `HeldByOther` if a sibling holds it ([`Core::fixed_elsewhere`]); with `gated` (a
    /// client's request, not the operator's) one free in a pool that waits is `HeldByOther`
    /// too, and not fetched. Hands out the shard's pending events into `events` either way.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn bind_with<E>(
        &self,
        shard: usize,
        key: &F::Key,
        addr: F::Addr,
        (place, probe, gated): (Place<F>, bool, bool),
        grant: F::Grant<'_>,
        now: Time,
        events: &mut Vec<F::Event>,
        decide: impl Fn(Avail, Option<Give>) -> Result<(), E>,
    ) -> Result<F::View, E> {
        let res = F::res(addr);
        // What the sibling that owns the address said, once asked.
        let mut fetched = None;
        // Whether a sibling holds the fixed address, once asked; the claim is held until
        // the bind is made, so that no other probe can answer in between.
        let (mut probed, mut _claim) = (None, None);
        loop {
            let mut g = self.lock(shard);
            g.reclaim_due(now, LAZY_RECLAIM);
            let mut avail = ends::availability(&mut *g, (res, place), F::key(key), now);
            if gated {
                avail = self.gate(place, avail);
            }
            if probe && avail == Avail::Free {
                match probed {
                    None => {
                        drop(g);
                        _claim = Some(self.claim_fixed());
                        probed = Some(self.fixed_elsewhere(shard, res, F::key(key), now));
                        continue;
                    }
                    Some(true) => avail = Avail::HeldByOther,
                    Some(false) => {}
                }
            }
            if avail == Avail::Elsewhere && fetched.is_none() {
                drop(g);
                fetched = Some(match place.dynamic() {
                    Some((pool, off)) => self.fetch(shard, pool, off, now),
                    None => Give::NotHere,
                });
                continue;
            }
            let result = decide(avail, fetched)
                .map(|()| grant_to::<F>(&mut g, (res, place), key, grant, now));
            F::settle(&mut g);
            events.append(g.pending());
            return result;
        }
    }
}

/// Binds `res` at `place` to `key` from `now` as `grant` says (the caller has checked that
/// it may) and queues its Bound or Renewed event.
fn grant_to<F: Ops>(
    g: &mut F::Shard,
    at: (Res<F>, Place<F>),
    key: &F::Key,
    grant: F::Grant<'_>,
    now: Time,
) -> F::View {
    let (term, info) = F::bound(grant, now);
    let (prior, idx) = F::hold(g, at, key, info, term);
    let kind = match prior {
        Some(LeaseState::Bound) => EventKind::Renewed,
        _ => EventKind::Bound,
    };
    let view = g.view(idx);
    let lease = g.lease(idx);
    g.emit(kind, lease);
    view
}

/// An offer, as [`choose::step`] sees it.
struct Offering<'e, 'r, 'q, F: Ops> {
    engine: &'e Core<F>,
    req: &'r OfferRequest<'q, F>,
    term: Term<F>,
}

impl<F: Ops> choose::Offer for Offering<'_, '_, '_, F> {
    type Shard = F::Shard;
    type Pool = F::Pool;
    type Off = F::Off;
    type Done = F::Offered;

    fn reserved(&self) -> Option<Res<F>> {
        self.req.reserved.map(F::res)
    }
    fn requested(&self) -> Option<Res<F>> {
        self.req.requested.map(F::res)
    }
    fn pools(&self) -> &[F::Pool] {
        self.req.pools
    }
    fn place(&self, res: Res<F>) -> Place<F> {
        F::place(&self.engine.pools, F::addr(res))
    }
    fn in_candidates(&self, place: Place<F>) -> bool {
        matches!(place, table::Place::Dynamic { pool, .. }
            if self.req.pools.contains(&pool) && F::fits(&self.engine.pools, pool, self.req.client))
    }
    fn key(&self) -> &[u8] {
        F::key(self.req.client)
    }
    fn client_res(&self, g: &F::Shard) -> Option<Res<F>> {
        let idx = g.records().client_bytes(F::key(self.req.client))?;
        Some(crate::slots::Slot::res(g.records().slot(idx)))
    }
    fn availability(&self, g: &mut F::Shard, res: Res<F>, place: Place<F>, now: Time) -> Avail {
        let avail = ends::availability(g, (res, place), F::key(self.req.client), now);
        self.engine.gate(place, avail)
    }
    fn hold(&self, g: &mut F::Shard, res: Res<F>, place: Place<F>) -> F::Offered {
        let (_, idx) = F::hold(g, (res, place), self.req.client, self.req.info, self.term);
        F::offered(g, idx)
    }
    fn own(&self, g: &F::Shard, res: Res<F>) -> F::Offered {
        let idx = g.records().find(res).expect("the client's own record");
        F::offered(g, idx)
    }
    fn hold_next_free(&self, g: &mut F::Shard, pool: F::Pool) -> Option<F::Offered> {
        let pools = &self.engine.pools;
        if !F::fits(pools, pool, self.req.client) || self.engine.is_waiting(pool) {
            return None;
        }
        let off = F::next_free(pools, g, pool, self.req.client)?;
        let res = F::res_at(pools, pool, off);
        Some(self.hold(g, res, table::Place::Dynamic { pool, off }))
    }
}
