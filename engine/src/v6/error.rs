//! The v6 engine's errors: configuration errors and why a bind was refused.

use std::net::Ipv6Addr;

use super::pools::PoolId;

crate::error::config_error! {
    /// Why an [`EngineConfig`](super::EngineConfig) was refused by
    /// [`Engine::new`](super::Engine::new). `PoolRange` is about an IA_NA pool.
    pool: PoolId, addr: Ipv6Addr, {
        /// An IA_PD pool's lengths are not `prefix_len <= delegated_len <= 128`, or its prefix
        /// has bits set beyond `prefix_len`.
        #[error("pool {pool}: {prefix}/{prefix_len} cannot be delegated in /{delegated_len}s")]
        PoolPrefix {
            /// The pool at fault.
            pool: PoolId,
            /// Its prefix.
            prefix: Ipv6Addr,
            /// Its prefix length.
            prefix_len: u8,
            /// Its delegated length.
            delegated_len: u8,
        },
        /// A pool of 2^128 resources (the whole address space as one range): offsets would not
        /// fit.
        #[error("pool {0} has 2^128 resources")]
        PoolTooLarge(PoolId),
    }
}

/// Why [`Engine::bind`](super::Engine::bind) (or a restore) refused a resource.
///
/// For RENEW/REBIND the server maps `NotInPool` to NotOnLink (or lifetimes 0) and the others
/// to NoBinding: the resource is not this IA's to extend.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum BindError {
    /// Another IA's advertise or lease holds the resource, or it is a static assignment
    /// (excluded from or outside every pool) that is not this IA's.
    #[error("resource is held by another IA")]
    Taken,
    /// The resource is quarantined after a DECLINE.
    #[error("resource is quarantined")]
    Quarantined,
    /// The resource is in none of the candidate pools and is not the IA's reservation.
    #[error("resource is not in any candidate pool")]
    NotInPool,
}
