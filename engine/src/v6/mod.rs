//! The DHCPv6 lease engine: IA_NA addresses and IA_PD prefixes, sharded like v4's.
//!
//! Same design and rules as the v4 [`Engine`](crate::v4::Engine) (read the crate docs first:
//! sharding, borrowing, Lamport versions and replay), keyed by [`IaKey`] (DUID + IAID + IA
//! kind) instead of a client key, and by [`Resource`] (an address, or a prefix) instead of an
//! IPv4 address. An IA holds one resource at a time. What differs:
//!
//! - **Pools of any size.** A /64 of addresses has 2^64 of them, a /32 split into /64s 2^32
//!   prefixes: no bitmap over the range. Small pools keep v4's bitmaps; large ones keep,
//!   per shard, only the intervals of offsets the shard owns and find free ones by probing
//!   its records from a hashed target (see `space.rs` for the choice and its costs). Both
//!   keep the "One owner" invariant (docs/ARCHITECTURE.md) the v4 way: every offset is
//!   owned by exactly one shard, and shards lend each other free ones, one lock at a time.
//! - **Static assignments** are passed in per request (`reserved`), as in v4. One inside a
//!   pool must be excluded from the pool ([`PoolSpec`]'s `excluded`), which is what keeps
//!   the engine from handing it out dynamically.
//! - **Remembered records are capped** per pool and shard (the oldest Released/Expired ones
//!   beyond the larger of a few thousand and the pool's held records are forgotten): in a
//!   pool that never runs out nothing else would ever reclaim them.
//! - **Owner shard by DUID** ([`Engine::owner`]): every IA of a client lives in one shard,
//!   so a message with several IAs is handled by one worker.
//!
//! As in v4, a static resource outside every pool is never lent: it stays unique across
//! shards as long as the one IA it is reserved for keeps reaching one shard.
//!
//! # Memory
//!
//! A record is an 80-byte slot (resource, times, version, state, pool, list links and an IA
//! key of up to 24 bytes inline: a DUID of up to 19, which DUID-LLT, DUID-LL and DUID-UUID
//! are), found through two hash tables of 4-byte slab indexes; a held record also has an
//! 8-byte expiry heap entry. About 100 to 120 bytes per lease in steady state, and a pool
//! costs nothing per resource it has not handed out, whatever its size: a /64 of
//! addresses or a /32 split into /64s is a few intervals per shard (unit tests assert
//! both). The hot path allocates nothing for keys up to [`IaKey::INLINE`] bytes, beyond the
//! amortised growth of the slab, tables and event vectors.
//!
//! ```
//! use lessor_engine::v6::*;
//! use lessor_engine::{EventKind, LeaseState};
//!
//! let engine = Engine::new(EngineConfig {
//!     shards: 2,
//!     pools: vec![
//!         PoolSpec::Na {
//!             first: "2001:db8::".parse().unwrap(),
//!             last: "2001:db8::ffff:ffff:ffff:ffff".parse().unwrap(),
//!             excluded: vec![],
//!         },
//!         PoolSpec::Pd {
//!             prefix: "2001:db8:100::".parse().unwrap(),
//!             prefix_len: 40,
//!             delegated_len: 56,
//!             excluded: vec![],
//!         },
//!     ],
//!     offer_hold: 30,
//!     decline_probation: 3600,
//! })?;
//! let duid = [0, 3, 0, 1, 2, 0, 0, 0, 0, 1];
//! let shard = engine.owner(&duid);
//! let na = IaKey::new(&duid, 1, IaKind::Na);
//! let now = 1_700_000_000;
//! let advertised = engine
//!     .solicit(shard, &SolicitRequest { client: &na, pools: &[PoolId(0)], reserved: None, requested: None, info: () }, now)
//!     .expect("a /64 is not exhausted");
//! let mut events = Vec::new();
//! let req = BindRequest {
//!     client: &na,
//!     address: advertised.resource,
//!     pools: &[PoolId(0)],
//!     reserved: false,
//!     grant: Grant { preferred: 1800, valid: 3600 },
//! };
//! let lease = engine.bind(shard, &req, now, &mut events).unwrap();
//! assert_eq!(lease.state, LeaseState::Bound);
//! assert_eq!(events[0].kind, EventKind::Bound);
//!
//! let pd = IaKey::new(&duid, 1, IaKind::Pd);
//! let prefix = engine
//!     .solicit(shard, &SolicitRequest { client: &pd, pools: &[PoolId(1)], reserved: None, requested: None, info: () }, now)
//!     .unwrap();
//! assert_eq!(prefix.resource.len, 56);
//! # Ok::<(), ConfigError>(())
//! ```

mod engine;
mod error;
mod exclude;
mod key;
mod lease;
mod pools;
mod records;
mod restore;
mod shard;
mod space;

#[cfg(test)]
mod checks;
#[cfg(test)]
mod proptests;
#[cfg(test)]
mod tests;

pub use crate::admin::PutError;
pub use crate::replay::RestoreReport;
pub use engine::{BindRequest, Engine, Grant, PoolStats, SolicitRequest};
pub use error::{BindError, ConfigError};
pub use key::{IaKey, IaKind, Resource};
pub use lease::{Lease, LeaseEvent, LeaseRef, LeaseView};
pub use pools::{EngineConfig, PoolId, PoolSpec};
pub use restore::Restorer;
