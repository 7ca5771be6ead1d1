//! What the `engine` and `journal` benches share: their clock and their DHCPv4 engine, one pool
//! spanning 10/8.

use std::net::Ipv4Addr;

use lessor_engine::v4::{Engine, EngineConfig, PoolSpec};

/// The benches' clock: every lease starts at this time.
pub(crate) const NOW: u64 = 1_800_000_000;

/// An engine of `shards` shards over the one pool 10.0.0.1-10.255.255.254.
pub(crate) fn slash8(shards: usize) -> Engine {
    Engine::new(EngineConfig {
        shards,
        pools: vec![PoolSpec {
            first: Ipv4Addr::new(10, 0, 0, 1),
            last: Ipv4Addr::new(10, 255, 255, 254),
            excluded: vec![],
        }],
        offer_hold: 30,
        decline_probation: 86400,
    })
    .expect("the bench engine's config is valid")
}
