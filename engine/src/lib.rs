//! lessor-engine: the in-memory DHCPv4 lease state of lessor, sharded across worker cores.
//!
//! It holds each pool's free addresses as roaring bitmaps of offsets, the lease records, a
//! client index and an expiry heap, split into shards: worker `k` calls every method with
//! `shard = k`, so its shard's mutex is normally uncontended and no global lock sits on the hot
//! path. A shard whose part of a pool runs dry borrows free addresses from its siblings, so a
//! pool is exhausted only when every shard's part of it is. Every address is owned by exactly
//! one shard at any time (in its free set or one of its lease records), which is what keeps one
//! address from being bound to two clients.
//!
//! Changes that must survive a restart come out as [`LeaseEvent`]s for the journal; OFFERs
//! never do. [`Engine::restore`] and [`Engine::leases`] are the replay and snapshot side.
//!
//! It is not a server: it does no IO, reads no clock (time is a [`Time`] parameter), knows no
//! wire format and decides no policy (which pools a client may use, its reservation, lease
//! times): the server passes those in.
//!
//! ```
//! use lessor_engine::*;
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
//! let req = BindRequest { client: &client, address: offered, pools: &pools, reserved: false, lease_time: 3600, info };
//! let lease = engine.bind(0, &req, now, &mut events).unwrap();
//! assert_eq!(lease.state, LeaseState::Bound);
//! assert_eq!(events[0].kind, EventKind::Bound);
//! # Ok::<(), lessor_engine::Error>(())
//! ```

mod engine;
mod error;
mod ident;
mod lease;
mod pools;
mod shard;

#[cfg(test)]
mod proptests;

pub use engine::{BindRequest, Engine, OfferRequest, PoolStats};
pub use error::{AllocError, BindError, Error, Result};
pub use ident::{ClientKey, HwAddr};
pub use lease::{EventKind, Lease, LeaseEvent, LeaseInfo, LeaseState, LeaseView, Time};
pub use pools::{EngineConfig, PoolId, PoolSpec};
