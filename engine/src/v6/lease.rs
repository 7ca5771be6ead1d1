//! v6 lease records, the copyable view and the events the journal persists.

use crate::lease::{EventKind, LeaseState, Time};

use super::key::{IaKey, Resource};
use super::pools::PoolId;

/// A full v6 lease record, as [`Engine::leases`](super::Engine::leases) and events carry
/// it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased address or prefix.
    pub resource: Resource,
    /// The pool whose range holds `resource`; `None` for a static assignment outside every
    /// pool.
    pub pool: Option<PoolId>,
    /// Who holds (or held) it.
    pub client: IaKey,
    /// Where the lease is in its life (`Offered`: held by an ADVERTISE).
    pub state: LeaseState,
    /// When the current state began (for `Bound`: the latest bind or renewal).
    pub starts: Time,
    /// Preferred lifetime in seconds while `Bound`; 0 in every other state.
    pub preferred: u32,
    /// For `Bound`: end of the valid lifetime; `Offered`: end of the hold; `Declined`: end of
    /// probation; `Released`/`Expired`: when it ended.
    pub expires: Time,
    /// Causal version of the record's last change, as in v4 (see the crate docs, "Versions
    /// and replay"): of several records of one resource the highest version is current.
    pub version: u64,
}

/// A [`Lease`] borrowed from wherever the caller keeps it, for
/// [`Restorer::add_ref`](super::Restorer::add_ref). The pool is recomputed on restore.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRef<'a> {
    /// The leased address or prefix.
    pub resource: Resource,
    /// Who holds (or held) it.
    pub client: &'a IaKey,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// See [`Lease::starts`].
    pub starts: Time,
    /// See [`Lease::preferred`].
    pub preferred: u32,
    /// See [`Lease::expires`].
    pub expires: Time,
    /// See [`Lease::version`].
    pub version: u64,
}

impl<'a> From<&'a Lease> for LeaseRef<'a> {
    fn from(lease: &'a Lease) -> Self {
        LeaseRef {
            resource: lease.resource,
            client: &lease.client,
            state: lease.state,
            starts: lease.starts,
            preferred: lease.preferred,
            expires: lease.expires,
            version: lease.version,
        }
    }
}

impl LeaseRef<'_> {
    /// The owned lease (`pool` is left `None`: the engine recomputes it on restore).
    pub fn to_lease(&self) -> Lease {
        Lease {
            resource: self.resource,
            pool: None,
            client: self.client.clone(),
            state: self.state,
            starts: self.starts,
            preferred: self.preferred,
            expires: self.expires,
            version: self.version,
        }
    }
}

/// Copyable summary of a lease for the hot path (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// The leased address or prefix.
    pub resource: Resource,
    /// See [`Lease::pool`].
    pub pool: Option<PoolId>,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// When the current state began.
    pub starts: Time,
    /// See [`Lease::preferred`].
    pub preferred: u32,
    /// When the current state ends (see [`Lease::expires`]).
    pub expires: Time,
}

/// Every change that must survive a restart (ADVERTISE holds never are). The journal keeps per
/// resource only the record with the highest [`version`](Lease::version).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseEvent {
    /// What happened (the same kinds as v4).
    pub kind: EventKind,
    /// The lease as it is after the change.
    pub lease: Lease,
}
