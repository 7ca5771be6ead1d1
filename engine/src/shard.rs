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

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::net::Ipv4Addr;

use roaring::RoaringBitmap;

use crate::ident::{ClientKey, HwAddr};
use crate::lease::{EventKind, Lease, LeaseEvent, LeaseInfo, LeaseState, LeaseView, Time};
use crate::pools::{Place, PoolId};

/// Whether a record in `state` keeps its address out of the free sets.
pub(crate) fn is_held(state: LeaseState) -> bool {
    matches!(
        state,
        LeaseState::Offered | LeaseState::Bound | LeaseState::Declined
    )
}

/// A lease record, keyed by its address in [`Shard::leases`].
#[derive(Debug)]
pub(crate) struct Slot {
    pub(crate) client: ClientKey,
    pub(crate) hw: HwAddr,
    pub(crate) hostname: Option<Box<str>>,
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) expires: Time,
    pub(crate) place: Place,
    /// The tick of the shard's clock at the record's last change.
    pub(crate) version: u64,
}

impl Slot {
    pub(crate) fn lease(&self, addr: u32) -> Lease {
        Lease {
            address: Ipv4Addr::from(addr),
            pool: self.place.pool(),
            client: self.client.clone(),
            hw: self.hw,
            hostname: self.hostname.clone(),
            state: self.state,
            starts: self.starts,
            expires: self.expires,
            version: self.version,
        }
    }

    pub(crate) fn view(&self, addr: u32) -> LeaseView {
        LeaseView {
            address: Ipv4Addr::from(addr),
            pool: self.place.pool(),
            state: self.state,
            starts: self.starts,
            expires: self.expires,
        }
    }
}

/// A shard's free offsets in one pool.
#[derive(Debug, Default)]
pub(crate) struct FreeSet {
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

/// Held records of dynamic addresses in one pool, for [`Engine::stats`](crate::Engine::stats).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) struct Counts {
    pub(crate) offered: u64,
    pub(crate) bound: u64,
    pub(crate) declined: u64,
}

fn tally(counts: &mut [Counts], place: Place, state: LeaseState, up: bool) {
    let Place::Dynamic { pool, .. } = place else {
        return;
    };
    let counts = &mut counts[pool.index()];
    let n = match state {
        LeaseState::Offered => &mut counts.offered,
        LeaseState::Bound => &mut counts.bound,
        LeaseState::Declined => &mut counts.declined,
        LeaseState::Released | LeaseState::Expired => return,
    };
    if up {
        *n += 1;
    } else {
        *n -= 1;
    }
}

/// What an address is to a client, in one shard.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Avail {
    /// The client's own offer or lease.
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

/// The state, start and end a record is given.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Term {
    pub(crate) state: LeaseState,
    pub(crate) starts: Time,
    pub(crate) expires: Time,
}

/// What [`Shard::restore_claim`] found.
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
fn current_rank(state: LeaseState, version: u64, addr: u32) -> (bool, u64, u32) {
    (state == LeaseState::Bound, version, addr)
}

/// One shard's state. See the module docs for the rules it keeps.
#[derive(Debug)]
pub(crate) struct Shard {
    /// Indexed by pool.
    pub(crate) free: Box<[FreeSet]>,
    pub(crate) leases: HashMap<u32, Slot>,
    pub(crate) clients: HashMap<ClientKey, u32>,
    pub(crate) expiry: BinaryHeap<Reverse<(Time, u32)>>,
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
    pub(crate) trace: std::sync::Arc<std::sync::Mutex<Vec<(Ipv4Addr, u64)>>>,
}

impl Shard {
    pub(crate) fn new(free: Vec<FreeSet>) -> Self {
        let counts = vec![Counts::default(); free.len()].into();
        Self {
            free: free.into(),
            leases: HashMap::new(),
            clients: HashMap::new(),
            expiry: BinaryHeap::new(),
            counts,
            held: 0,
            pending: Vec::new(),
            clock: 0,
            #[cfg(test)]
            trace: Default::default(),
        }
    }

    /// The next version: every change to a record takes one.
    fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Called after taking addresses from a sibling whose clock was `sibling`, before any
    /// change to them: every later change here is newer than every change the sibling made.
    pub(crate) fn observe(&mut self, sibling: u64) {
        self.clock = self.clock.max(sibling) + 1;
    }

    pub(crate) fn view(&self, addr: u32) -> Option<LeaseView> {
        self.leases.get(&addr).map(|slot| slot.view(addr))
    }

    pub(crate) fn lookup(&self, client: &ClientKey) -> Option<LeaseView> {
        self.clients.get(client).and_then(|&addr| self.view(addr))
    }

    pub(crate) fn state(&self, addr: u32) -> Option<LeaseState> {
        self.leases.get(&addr).map(|slot| slot.state)
    }

    fn push_expiry(&mut self, expires: Time, addr: u32) {
        self.expiry.push(Reverse((expires, addr)));
        // Lazy deletion leaves dead entries behind; rebuilding once they outnumber the live
        // ones keeps the heap within a constant factor of the records, amortised O(1).
        if self.expiry.len() > 2 * self.held + 64 {
            self.expiry = self
                .leases
                .iter()
                .filter(|(_, slot)| is_held(slot.state))
                .map(|(&addr, slot)| Reverse((slot.expires, addr)))
                .collect();
        }
    }

    /// Puts `slot` at `addr`, which has no record here, taking the address out of the free
    /// sets if the record holds it, or marking it remembered if not.
    pub(crate) fn insert(&mut self, addr: u32, slot: Slot) {
        if let Place::Dynamic { pool, off } = slot.place {
            let free = &mut self.free[pool.index()];
            free.clean.remove(off);
            if is_held(slot.state) {
                free.remembered.remove(off);
            } else {
                free.remembered.insert(off);
            }
        }
        let (held, expires) = (is_held(slot.state), slot.expires);
        if held {
            self.held += 1;
            tally(&mut self.counts, slot.place, slot.state, true);
        }
        let previous = self.leases.insert(addr, slot);
        debug_assert!(previous.is_none(), "insert over a record");
        if held {
            self.push_expiry(expires, addr);
        }
    }

    /// Drops the record at `addr` (and its client's index entry if it is the indexed one);
    /// a dynamic address becomes clean free.
    pub(crate) fn remove(&mut self, addr: u32) -> Option<Slot> {
        let slot = self.leases.remove(&addr)?;
        if self.clients.get(&slot.client) == Some(&addr) {
            self.clients.remove(&slot.client);
        }
        if let Place::Dynamic { pool, off } = slot.place {
            let free = &mut self.free[pool.index()];
            free.remembered.remove(off);
            free.clean.insert(off);
        }
        if is_held(slot.state) {
            self.held -= 1;
            tally(&mut self.counts, slot.place, slot.state, false);
        }
        Some(slot)
    }

    /// Moves the record at `addr` to `term`, keeping free sets, counts and heap in step.
    fn set_term(&mut self, addr: u32, term: Term) {
        let Some(slot) = self.leases.get_mut(&addr) else {
            return;
        };
        let (old, place) = (slot.state, slot.place);
        slot.state = term.state;
        slot.starts = term.starts;
        slot.expires = term.expires;
        self.clock += 1;
        slot.version = self.clock;
        if is_held(old) {
            self.held -= 1;
            tally(&mut self.counts, place, old, false);
        }
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
            tally(&mut self.counts, place, term.state, true);
            self.push_expiry(term.expires, addr);
        }
    }

    /// Queues the event of a change just made (`lease.version` is that change's tick).
    pub(crate) fn emit(&mut self, kind: EventKind, lease: Lease) {
        #[cfg(test)]
        self.trace
            .lock()
            .unwrap()
            .push((lease.address, lease.version));
        self.pending.push(LeaseEvent { kind, lease });
    }

    fn emit_current(&mut self, kind: EventKind, addr: u32) {
        if let Some(slot) = self.leases.get(&addr) {
            let lease = slot.lease(addr);
            self.emit(kind, lease);
        }
    }

    /// Ends the held record at `addr` whose time has come.
    fn expire(&mut self, addr: u32) {
        let Some(slot) = self.leases.get(&addr) else {
            return;
        };
        match slot.state {
            // An offer ends silently: it was never journaled.
            LeaseState::Offered => {
                self.remove(addr);
            }
            // The record stays so the client gets the same address back if still free.
            LeaseState::Bound => {
                let term = Term {
                    state: LeaseState::Expired,
                    starts: slot.starts,
                    expires: slot.expires,
                };
                self.set_term(addr, term);
                self.emit_current(EventKind::Expired, addr);
            }
            // The quarantine ends; the journal hears of it so that replay lifts it too.
            LeaseState::Declined => {
                if let Some(slot) = self.remove(addr) {
                    let mut lease = slot.lease(addr);
                    lease.state = LeaseState::Expired;
                    lease.version = self.tick();
                    self.emit(EventKind::Expired, lease);
                }
            }
            LeaseState::Released | LeaseState::Expired => {}
        }
    }

    /// Ends the record at `addr` if it is held and its time has passed. Every check of a
    /// specific address goes through this, so a record whose time has passed never blocks
    /// anyone, whether or not `reclaim` has reached it yet.
    pub(crate) fn expire_if_due(&mut self, addr: u32, now: Time) {
        if self
            .leases
            .get(&addr)
            .is_some_and(|slot| is_held(slot.state) && slot.expires <= now)
        {
            self.expire(addr);
        }
    }

    /// Ends up to `budget` held records whose time has passed, earliest first.
    pub(crate) fn reclaim(&mut self, now: Time, budget: usize) -> usize {
        let mut done = 0;
        while done < budget {
            let Some(&Reverse((expires, addr))) = self.expiry.peek() else {
                break;
            };
            if expires > now {
                break;
            }
            self.expiry.pop();
            // Skip entries left behind by records that changed since.
            if self
                .leases
                .get(&addr)
                .is_some_and(|slot| is_held(slot.state) && slot.expires == expires)
            {
                self.expire(addr);
                done += 1;
            }
        }
        done
    }

    /// What `addr` (at `place`) is to `client` here.
    pub(crate) fn availability(
        &mut self,
        addr: u32,
        place: Place,
        client: &ClientKey,
        now: Time,
    ) -> Avail {
        self.expire_if_due(addr, now);
        match self.leases.get(&addr) {
            Some(slot) => match slot.state {
                LeaseState::Offered | LeaseState::Bound if slot.client == *client => Avail::Own,
                LeaseState::Offered | LeaseState::Bound => Avail::HeldByOther,
                LeaseState::Declined => Avail::Quarantined,
                LeaseState::Released | LeaseState::Expired => Avail::Free,
            },
            None => match place {
                Place::Dynamic { pool, off } if self.free[pool.index()].clean.contains(off) => {
                    Avail::Free
                }
                Place::Dynamic { .. } => Avail::Elsewhere,
                Place::Fixed { .. } => Avail::Free,
            },
        }
    }

    /// The next free offset in `pool`, if this shard has one.
    pub(crate) fn next_free(&self, pool: PoolId) -> Option<u32> {
        self.free.get(pool.index()).and_then(FreeSet::next)
    }

    /// Gives `addr` to `client` with `term` (Offered or Bound). The caller has checked that
    /// the address is the client's own, free here, or a fixed address it may take. Returns
    /// the state of the client's record at `addr` before, if it had one.
    pub(crate) fn hold(
        &mut self,
        addr: u32,
        place: Place,
        client: &ClientKey,
        info: LeaseInfo<'_>,
        term: Term,
    ) -> Option<LeaseState> {
        // A client has one record per shard: moving to another address ends the old one.
        if let Some(&old) = self.clients.get(client)
            && old != addr
        {
            self.abandon(old, term.starts);
        }
        let prior = match self.leases.get_mut(&addr) {
            Some(slot) if slot.client == *client && slot.state != LeaseState::Declined => {
                slot.hw = info.hw;
                if let Some(name) = info.hostname
                    && slot.hostname.as_deref() != Some(name)
                {
                    slot.hostname = Some(name.into());
                }
                Some(slot.state)
            }
            Some(_) => {
                // Someone else's remembered address, or a fixed address taken back for the
                // client it is reserved for.
                self.evict(addr, term.starts);
                None
            }
            None => None,
        };
        if prior.is_some() {
            self.set_term(addr, term);
        } else {
            let slot = Slot {
                client: client.clone(),
                hw: info.hw,
                hostname: info.hostname.map(Box::from),
                state: term.state,
                starts: term.starts,
                expires: term.expires,
                place,
                version: self.tick(),
            };
            self.insert(addr, slot);
        }
        if self.clients.get(client) != Some(&addr) {
            self.clients.insert(client.clone(), addr);
        }
        prior
    }

    /// Ends a client's indexed record at `addr` because the client moved to another address.
    /// A quarantine stays (only the index entry goes); a binding is released, with an event.
    fn abandon(&mut self, addr: u32, now: Time) {
        let Some(slot) = self.leases.get(&addr) else {
            return;
        };
        if slot.state == LeaseState::Declined {
            self.clients.remove(&slot.client);
        } else {
            self.evict(addr, now);
        }
    }

    /// Drops the record at `addr`; a binding ends with a Released event.
    fn evict(&mut self, addr: u32, now: Time) {
        if let Some(slot) = self.remove(addr)
            && slot.state == LeaseState::Bound
        {
            let mut lease = slot.lease(addr);
            lease.state = LeaseState::Released;
            lease.expires = now;
            lease.version = self.tick();
            self.emit(EventKind::Released, lease);
        }
    }

    /// RELEASE: the client's binding at `addr` becomes Released (remembered for it).
    pub(crate) fn release(&mut self, addr: u32, client: &ClientKey, now: Time) -> bool {
        self.expire_if_due(addr, now);
        let Some(slot) = self.leases.get(&addr) else {
            return false;
        };
        if slot.client != *client || slot.state != LeaseState::Bound {
            return false;
        }
        let term = Term {
            state: LeaseState::Released,
            starts: slot.starts,
            expires: now,
        };
        self.set_term(addr, term);
        self.emit_current(EventKind::Released, addr);
        true
    }

    /// DECLINE: the client's offer or binding at `addr` is quarantined until `until`.
    pub(crate) fn decline(
        &mut self,
        addr: u32,
        client: &ClientKey,
        now: Time,
        until: Time,
    ) -> bool {
        self.expire_if_due(addr, now);
        let Some(slot) = self.leases.get(&addr) else {
            return false;
        };
        if slot.client != *client || !matches!(slot.state, LeaseState::Offered | LeaseState::Bound)
        {
            return false;
        }
        let term = Term {
            state: LeaseState::Declined,
            starts: now,
            expires: until,
        };
        self.set_term(addr, term);
        self.emit_current(EventKind::Declined, addr);
        true
    }

    /// Takes offset `off` of `pool` (address `addr`) out of this shard's free set for a
    /// sibling; a remembered client loses its claim to it.
    pub(crate) fn take_free(&mut self, pool: PoolId, off: u32, addr: u32, now: Time) -> bool {
        self.expire_if_due(addr, now);
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

    /// Replay, in every shard in turn: drops a record of `addr` here older than `version`
    /// (refusing if one is not older), and, unless this is the `target` shard, takes the free
    /// dynamic address out of this shard.
    pub(crate) fn restore_claim(
        &mut self,
        addr: u32,
        place: Place,
        version: u64,
        target: bool,
    ) -> Claim {
        if let Some(slot) = self.leases.get(&addr) {
            if slot.version >= version {
                return Claim::Newer;
            }
            // An older record of the address (the caller gave more than a journal's fold).
            self.remove(addr);
        }
        match place {
            Place::Dynamic { pool, off }
                if !target && self.free[pool.index()].clean.remove(off) =>
            {
                Claim::Claimed { clock: self.clock }
            }
            _ => Claim::Absent,
        }
    }

    /// Replay, in the target shard (which owns `addr` if it is dynamic, and has no record of
    /// it): puts `lease` back. See [`Engine::restore`](crate::Engine::restore) for the rules.
    pub(crate) fn restore_local(&mut self, addr: u32, place: Place, lease: Lease) {
        debug_assert!(!self.leases.contains_key(&addr), "restore over a record");
        self.clock = self.clock.max(lease.version);
        let rank = current_rank(lease.state, lease.version, addr);
        let current = self.clients.get(&lease.client).copied().and_then(|cur| {
            let slot = self.leases.get(&cur)?;
            Some((cur, slot.state, current_rank(slot.state, slot.version, cur)))
        });
        let indexed = match current {
            None => true,
            Some((_, _, cur_rank)) if cur_rank > rank => false,
            Some((cur, state, _)) => {
                if state == LeaseState::Declined {
                    // A quarantine outlives the client moving on.
                    self.clients.remove(&lease.client);
                } else {
                    // Superseded: the address is simply free.
                    self.remove(cur);
                }
                true
            }
        };
        if !indexed && lease.state != LeaseState::Declined {
            // Superseded by the client's current record: the address is simply free (a
            // dynamic one is already in this shard's clean set).
            return;
        }
        let slot = Slot {
            client: lease.client,
            hw: lease.hw,
            hostname: lease.hostname,
            state: lease.state,
            starts: lease.starts,
            expires: lease.expires,
            place,
            version: lease.version,
        };
        let key = indexed.then(|| slot.client.clone());
        self.insert(addr, slot);
        if let Some(key) = key {
            self.clients.insert(key, addr);
        }
    }
}
