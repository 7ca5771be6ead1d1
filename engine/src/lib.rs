//! lessor-engine: the in-memory DHCPv4 and DHCPv6 lease state of lessor, sharded across
//! worker cores.
//!
//! Each family has its module, with the same names for the same things: [`v4`]
//! ([`v4::Engine`], keyed by client key, holding IPv4 addresses) and [`v6`] ([`v6::Engine`],
//! keyed by IA, holding IA_NA addresses and IA_PD prefixes). The rest of these docs speak of
//! v4; they hold for v6 as they are, and [`v6`] lists where it differs. The crate root holds
//! only what both families share: [`Time`], [`LeaseState`], [`EventKind`].
//!
//! It holds each pool's free addresses as roaring bitmaps of offsets, the lease records, a
//! client index and an expiry heap, split into shards: worker `k` calls every method with
//! `shard = k`, so its shard's mutex is normally uncontended and no global lock sits on the hot
//! path. A shard whose part of a pool runs dry borrows free addresses from its siblings, so a
//! pool is exhausted only when every shard's part of it is. Every address is owned by exactly
//! one shard at any time (in its free set or one of its lease records), which is what keeps one
//! address from being bound to two clients.
//!
//! Changes that must survive a restart come out as [`v4::LeaseEvent`]s for the journal; OFFERs
//! never do. [`v4::Engine::restorer`] (in bulk, for startup), [`v4::Engine::restore`] (one record at a
//! time) and [`v4::Engine::leases`] are the replay and snapshot side.
//!
//! # Memory
//!
//! A record is a 48-byte slot in its shard's slab: address, times (`u32` seconds, see
//! [`Time`]), version, state, pool, and the client key inline up to 17 bytes. The host name,
//! a longer key and a hardware address other than the one the key spells (htype + MAC, what
//! nearly every client sends) go to a per-shard byte arena. The address index and the client
//! index are hash tables of 4-byte slab indexes (hashbrown's `HashTable`, foldhash with a
//! random seed per shard against keys chosen to collide), and the expiry heap holds 8-byte
//! `(expires, address)` entries: about 85 bytes per live lease at 10 million, measured by
//! `examples/restore_rss.rs`.
//!
//! # Versions and replay
//!
//! Each worker hands its events to the journal writer through its own channel, so events
//! of different shards reach the journal in no guaranteed order, and a shard hands out
//! some events later than it makes them (see [`v4::Engine::offer`]). Times cannot order them
//! either: they have one-second resolution. So every record carries a causal version,
//! [`v4::Lease::version`], from a Lamport clock per shard:
//!
//! - Every change to a record, under the shard's lock, does `clock += 1` and stamps the
//!   record, and the event that records the change, with `clock`. An event waiting in its
//!   shard keeps the stamp of its change.
//! - Whenever a shard takes addresses from a sibling (a chunk of free ones, or one specific
//!   free one), it reads the sibling's clock under the sibling's lock, after the sibling's
//!   last change to them, and then sets its own `clock = max(clock, sibling) + 1` before it
//!   changes any of them.
//!
//! Why that orders every address's history: a dynamic address changes only in the shard
//! that owns it, and changes shard only by being lent. Within one shard the clock only
//! rises, so the shard's changes to the address get strictly rising versions. When shard
//! `S` lends it to `T`, every change `S` made to it has a version at most `S`'s clock at
//! the lending, and `T` moves its clock above that before its first change to it; by
//! induction along the chain of owners, every change to one address has a higher version
//! than every change before it, in whichever shard. (Replay moves addresses too, but
//! [`v4::Engine::restore`] raises the target shard's clock to the restored version, and the
//! server then calls [`v4::Engine::advance_versions`] with the journal's highest version.) A
//! fixed address (a reservation outside the dynamic ranges) is never lent: the argument
//! holds for it as long as one shard keeps its records, which steering by client does
//! while the reservation stays with one client.
//!
//! So two records of one address never share a version, and the one with the highest
//! version is the latest. The journal folds its records to that one per address, and
//! [`v4::Engine::restore`] puts the fold back in any order. Snapshot records
//! ([`v4::Engine::leases`]) carry the versions of their records' last changes, which are
//! older than every later change to the same address, so a snapshot folds with the
//! segments after it the same way.
//!
//! # A pool that waits
//!
//! A server that takes over its load-balancing partner's scope without the partner's last
//! leases (docs/HA.md, "Load balancing") must not give out that scope's free addresses for
//! an MCLT, as dhcpd waits. [`v4::Engine::set_waiting`] marks a pool so: while it waits,
//! no free address (resource) of it is offered, taken as requested, borrowed or bound by a
//! client's request (a bind of one is refused as taken), while a client's own offer or
//! binding there is offered and renewed as before (its Released or Expired record is free,
//! so it waits too). Fixed addresses, expiry, release, decline, replay and the operator's
//! writes are as they are. The flag is one atomic per pool, read without a lock.
//!
//! It is not a server: it does no IO, reads no clock (time is a [`Time`] parameter), knows no
//! wire format and decides no policy (which pools a client may use, its reservation, lease
//! times): the server passes those in.
//!
//! ```
//! use lessor_engine::v4::*;
//! use lessor_engine::{EventKind, LeaseState};
//! use std::net::Ipv4Addr;
//!
//! let engine = Engine::new(EngineConfig {
//!     shards: 2,
//!     pools: vec![PoolSpec {
//!         first: Ipv4Addr::new(10, 0, 0, 10),
//!         last: Ipv4Addr::new(10, 0, 0, 200),
//!         excluded: vec![],
//!     }],
//!     offer_hold: 30,
//!     decline_probation: 3600,
//! })?;
//! let client = ClientKey::hardware(1, &[2, 0, 0, 0, 0, 1]);
//! let info = LeaseInfo { hw: HwAddr::new(1, &[2, 0, 0, 0, 0, 1]).unwrap(), hostname: None };
//! let pools = [PoolId(0)];
//! let now = 1_700_000_000;
//! let offered = engine
//!     .offer(0, &OfferRequest { client: &client, pools: &pools, reserved: None, requested: None, info }, now)
//!     .unwrap();
//! let mut events = Vec::new();
//! let req = BindRequest { client: &client, address: offered, pools: &pools, reserved: false, grant: Grant { lease_time: 3600, info } };
//! let lease = engine.bind(0, &req, now, &mut events).unwrap();
//! assert_eq!(lease.state, LeaseState::Bound);
//! assert_eq!(events[0].kind, EventKind::Bound);
//! # Ok::<(), lessor_engine::v4::ConfigError>(())
//! ```

mod admin;
mod choose;
mod common;
mod ends;
mod engine;
pub mod engine_core;
mod error;
mod grow;
mod ident;
mod inline;
mod lease;
mod pools;
mod records;
mod replay;
mod requests;
mod restore;
mod shard;
mod slots;
pub mod v4;
pub mod v6;

#[cfg(test)]
mod model;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod testkit;

pub use admin::{Exclusions, MAX_CHANGES, PutError, ReserveError};
pub use lease::{EventKind, LeaseState, Time};
