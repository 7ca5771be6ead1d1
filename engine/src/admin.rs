//! What an operator does to leases by hand (the control API's add, update, delete, wipe and
//! reclaim), written once for both families over [`Ops`].
//!
//! Every change comes out as an event of the existing kinds, for the caller to journal like a
//! worker's: a put is a Bound or Renewed event; a deletion is a Released event of the record
//! that ended at the epoch, which the journal drops as a tombstone, so replay restores no
//! record of the address. Each call locks one shard at a time, never two.

use crate::common::{Avail, Give, Sharded};
use crate::engine_core::{Core, Ops};
use crate::lease::{LeaseState, Time};

mod overlay;
mod reserve;
mod v4;

#[cfg(test)]
mod tests;

pub(crate) use overlay::Overlay;
pub(crate) use reserve::{Exclude, Spec, exclusion_changes, set_kind};
pub use reserve::{Exclusions, MAX_CHANGES, ReserveError};

/// Records a wipe drops under one lock of a shard.
const WIPE_CHUNK: usize = 256;
/// Expired records a reclaim ends under one lock of a shard.
const RECLAIM_CHUNK: usize = 4096;

/// Why [`Core::put`] refused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum PutError {
    /// The address is in no dynamic pool.
    #[error("the address is in no pool")]
    NotInPool,
    /// Another client holds (is bound to, or was offered) the address.
    #[error("another client holds the address")]
    Taken,
    /// The address is quarantined after a DECLINE.
    #[error("the address is declined (quarantined)")]
    Quarantined,
}

#[allow(private_bounds)]
impl<F: Ops> Core<F> {
    /// Binds `addr` to `key` in `shard` (the shard the client is steered to) from `now`, as
    /// `grant` says, and pushes a Bound event (Renewed if it was the client's binding) into
    /// `events`, after any events pending in the shard.
    ///
    /// The address must be in a dynamic pool; a free one a sibling owns moves over. It is
    /// refused if another client holds it, in any shard, or it is quarantined. A client that
    /// holds another address in `shard` gives it up (a binding ends with a Released event),
    /// as when it asks for a new one itself.
    pub fn put(
        &self,
        shard: usize,
        key: &F::Key,
        addr: F::Addr,
        grant: F::Grant<'_>,
        now: Time,
        events: &mut Vec<F::Event>,
    ) -> Result<F::View, PutError> {
        let place = F::place(&self.pools, addr);
        if place.dynamic().is_none() {
            return Err(PutError::NotInPool);
        }
        let decide = |avail, fetched| match (avail, fetched) {
            (Avail::Own | Avail::Free, _) => Ok(()),
            (Avail::Quarantined, _) | (Avail::Elsewhere, Some(Give::Quarantined)) => {
                Err(PutError::Quarantined)
            }
            (Avail::Elsewhere | Avail::HeldByOther, _) => Err(PutError::Taken),
        };
        self.bind_with(
            shard,
            key,
            addr,
            (place, false, false),
            grant,
            now,
            events,
            decide,
        )
    }

    /// The record of `addr` in whichever shard has one (any state, as last updated), looked
    /// up one shard at a time.
    pub fn get(&self, addr: F::Addr) -> Option<F::Lease> {
        let res = F::res(addr);
        (0..self.shards()).find_map(|shard| self.lock(shard).lease_of(res))
    }

    /// Deletes the record of `addr` (bound, declined, released or expired; an offer's hold
    /// is not a lease) from whichever shard has it, with a tombstone event into `events`.
    /// Returns the record, or `None` if there was none.
    pub fn remove(&self, addr: F::Addr, now: Time, events: &mut Vec<F::Event>) -> Option<F::Lease> {
        let res = F::res(addr);
        let mut found = None;
        for shard in 0..self.shards() {
            let mut g = self.lock(shard);
            g.expire_due(res, now);
            if let Some(lease) = g.forget(res) {
                found = Some(lease);
            }
            F::settle(&mut g);
            events.append(F::pending(&mut g));
            if found.is_some() {
                break;
            }
        }
        found
    }

    /// Deletes every record (bound, declined, released or expired) whose address and state
    /// `which` picks, shard by shard and a chunk at a time, with a tombstone event each into
    /// `events`. Returns how many it deleted.
    pub fn wipe(
        &self,
        mut which: impl FnMut(F::Addr, LeaseState) -> bool,
        events: &mut Vec<F::Event>,
    ) -> usize {
        let mut done = 0;
        for shard in 0..self.shards() {
            let picked = self
                .lock(shard)
                .select(&mut |res, state| which(F::addr(res), state));
            for chunk in picked.chunks(WIPE_CHUNK) {
                let mut g = self.lock(shard);
                done += chunk.iter().filter(|&&res| g.forget(res).is_some()).count();
                F::settle(&mut g);
                events.append(F::pending(&mut g));
            }
        }
        done
    }

    /// Ends every record of every shard whose time has passed, as each worker's sweep does
    /// (a chunk at a time), with their events into `events`. Returns how many it ended.
    pub fn reclaim_all(&self, now: Time, events: &mut Vec<F::Event>) -> usize {
        let mut done = 0;
        for shard in 0..self.shards() {
            loop {
                let n = self.reclaim(shard, now, RECLAIM_CHUNK, events);
                done += n;
                if n < RECLAIM_CHUNK {
                    break;
                }
            }
        }
        done
    }
}
