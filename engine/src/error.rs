//! The engine's error types: configuration errors and the two per-request outcomes.

use std::net::Ipv4Addr;

use crate::pools::PoolId;

/// `Result` with the v4 engine's [`ConfigError`] as the default error.
pub(crate) type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// Declares a family's `ConfigError`: the refusals both families share (no shards, a pool
/// whose first address is after its last, overlapping pools, too many pools), with its pool id
/// and address types, then the variants only that family has.
macro_rules! config_error {
    ($(#[$doc:meta])* pool: $pool:ty, addr: $addr:ty, { $($extra:tt)* }) => {
        $(#[$doc])*
        #[derive(Debug, thiserror::Error)]
        #[non_exhaustive]
        pub enum ConfigError {
            /// `shards` was zero: the engine needs at least one shard.
            #[error("the engine needs at least one shard")]
            NoShards,
            /// A pool's first address is after its last address.
            #[error("pool {pool}: first address {first} is after last address {last}")]
            PoolRange {
                /// The pool at fault.
                pool: $pool,
                /// Its first address.
                first: $addr,
                /// Its last address.
                last: $addr,
            },
            /// Two pools share at least one address.
            #[error("pools {first} and {second} overlap")]
            PoolsOverlap {
                /// The lower-numbered pool.
                first: $pool,
                /// The higher-numbered pool.
                second: $pool,
            },
            /// More pools than a pool id can number.
            #[error("{0} pools is more than a pool id can number")]
            TooManyPools(usize),
            $($extra)*
        }
    };
}
pub(crate) use config_error;

config_error! {
    /// Why an [`EngineConfig`](crate::v4::EngineConfig) was refused by
    /// [`Engine::new`](crate::v4::Engine::new).
    pool: PoolId, addr: Ipv4Addr, {}
}

/// Why [`Engine::offer`](crate::v4::Engine::offer) found no address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum AllocError {
    /// Every candidate pool is exhausted in every shard.
    #[error("every candidate pool is exhausted")]
    Exhausted,
}

/// Why [`Engine::bind`](crate::v4::Engine::bind) (or [`Engine::restore`](crate::v4::Engine::restore))
/// refused an address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    /// Another client's offer or lease holds the address, it is quarantined after a DECLINE, or
    /// it is not free anywhere (for example another client's reservation).
    #[error("address is taken")]
    Taken,
    /// The address is in none of the candidate pools and is not the client's reservation.
    #[error("address is not in any candidate pool")]
    NotInPool,
}
