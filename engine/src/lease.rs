//! Lease records, their states, the copyable view and the events the journal persists.

use std::net::Ipv4Addr;

use crate::ident::{ClientKey, HostName, HwAddr};
use crate::pools::PoolId;

/// Seconds since the Unix epoch. The engine never reads a clock; callers pass `now`.
///
/// Records keep their times as `u32` seconds: a start or end later than `u32::MAX`
/// (2106-02-07), such as the end of an "infinite" BOOTP lease (lease time `u32::MAX`), is
/// kept, and comes back, as `u32::MAX`.
pub type Time = u64;

/// Where a lease record is in its life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LeaseState {
    /// Held for the client by an OFFER until `expires` (memory only, never journaled).
    Offered,
    /// Bound to the client until `expires`.
    Bound,
    /// The client released it; the address is free again but remembered for the client.
    Released,
    /// The lease ran out; the address is free again but remembered for the client.
    Expired,
    /// The client declined it (address in use on the wire): quarantined until `expires`.
    Declined,
}

/// A full lease record, as [`Engine::leases`](crate::v4::Engine::leases) and events carry it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Lease {
    /// The leased address.
    pub address: Ipv4Addr,
    /// The pool whose range holds `address`; `None` for a reserved address outside every pool.
    pub pool: Option<PoolId>,
    /// Who holds (or held) it.
    pub client: ClientKey,
    /// The client's hardware address as last seen.
    pub hw: HwAddr,
    /// The client's host name as last seen.
    pub hostname: Option<HostName>,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// When the current state began (for `Bound`: the latest bind or renewal).
    pub starts: Time,
    /// For `Bound`: end of the lease; `Offered`: end of the hold; `Declined`: end of
    /// probation; `Released`/`Expired`: when it ended.
    pub expires: Time,
    /// Causal version of the record's last change: a tick of the owning shard's Lamport
    /// clock. For one address, a later change always has a higher version, whichever shard
    /// made it, so of several records of one address the one with the highest version is
    /// current (see the crate docs, "Versions and replay").
    pub version: u64,
}

/// A [`Lease`] borrowed from wherever the caller keeps it, for
/// [`Restorer::add_ref`](crate::v4::Restorer::add_ref): replay without allocating.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseRef<'a> {
    /// The leased address.
    pub address: Ipv4Addr,
    /// The client key's bytes, as [`ClientKey::as_bytes`] gives them.
    pub client: &'a [u8],
    /// The client's hardware address as last seen.
    pub hw: HwAddr,
    /// The client's host name as last seen.
    pub hostname: Option<&'a str>,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// See [`Lease::starts`].
    pub starts: Time,
    /// See [`Lease::expires`].
    pub expires: Time,
    /// See [`Lease::version`].
    pub version: u64,
}

impl<'a> From<&'a Lease> for LeaseRef<'a> {
    fn from(lease: &'a Lease) -> Self {
        LeaseRef {
            address: lease.address,
            client: lease.client.as_bytes(),
            hw: lease.hw,
            hostname: lease.hostname.as_deref(),
            state: lease.state,
            starts: lease.starts,
            expires: lease.expires,
            version: lease.version,
        }
    }
}

impl LeaseRef<'_> {
    /// The owned lease (`pool` is left to the engine, which recomputes it on restore).
    pub fn to_lease(&self) -> Lease {
        Lease {
            address: self.address,
            pool: None,
            client: ClientKey::from_bytes(self.client),
            hw: self.hw,
            hostname: self.hostname.map(HostName::new),
            state: self.state,
            starts: self.starts,
            expires: self.expires,
            version: self.version,
        }
    }
}

/// What the server knows about the client at bind time.
#[derive(Clone, Copy, Debug)]
pub struct LeaseInfo<'a> {
    /// The client's hardware address.
    pub hw: HwAddr,
    /// Option 12, if the client sent one. `None` keeps a host name already on record.
    pub hostname: Option<&'a str>,
}

/// Copyable summary of a lease for the hot path (no allocation).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct LeaseView {
    /// The leased address.
    pub address: Ipv4Addr,
    /// The pool whose range holds `address`; `None` for a reserved address outside every pool.
    pub pool: Option<PoolId>,
    /// Where the lease is in its life.
    pub state: LeaseState,
    /// When the current state began.
    pub starts: Time,
    /// When the current state ends (see [`Lease::expires`]).
    pub expires: Time,
}

/// What kind of change a [`LeaseEvent`] records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EventKind {
    /// A new binding (including re-binding an address the client had before).
    Bound,
    /// An existing binding was extended.
    Renewed,
    /// The client released the lease, or abandoned it by moving to another address.
    Released,
    /// The client declined the address; it is quarantined.
    Declined,
    /// A binding ran out, or a quarantine ended (the lease then has state `Expired`).
    Expired,
}

/// Every change that must survive a restart (OFFERs are never events). The journal persists
/// these, keeps per address only the record with the highest
/// [`version`](Lease::version), and gives those back to
/// [`Engine::restore`](crate::v4::Engine::restore) on replay.
///
/// `lease.version` is stamped when the change is made, not when the event is handed out: an
/// event that waits in its shard (see [`Engine::offer`](crate::v4::Engine::offer)) keeps its place
/// in the address's history.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct LeaseEvent {
    /// What happened.
    pub kind: EventKind,
    /// The lease as it is after the change.
    pub lease: Lease,
}
