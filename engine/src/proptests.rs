//! The v4 instance of the property test in `model.rs`: two pools of 5 to 40 addresses,
//! client 0's reservation excluded from pool 0 and client 1's outside every pool, eight
//! clients keyed by hardware address (with that address as their `LeaseInfo`), steered to
//! shards by a hash as the server does.

use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::net::Ipv4Addr;

use proptest::prelude::*;

use crate::lease::Time;
use crate::model::{Grant, HOLD, Info, PROBATION, Refusal, Seen, family};
use crate::pools::Place;
use crate::v4::{
    BindError, ClientKey, Engine, EngineConfig, HwAddr, LeaseInfo, LeaseView, PoolId, PoolSpec,
};

const POOL_FIRST: [Ipv4Addr; 2] = [Ipv4Addr::new(10, 0, 0, 10), Ipv4Addr::new(10, 0, 1, 10)];
/// Client 1's reservation, outside every pool.
const OUTSIDE_RESERVED: Ipv4Addr = Ipv4Addr::new(10, 9, 9, 9);
/// An address outside every pool that nobody has reserved.
const OUTSIDE: Ipv4Addr = Ipv4Addr::new(10, 0, 2, 1);

fn add(a: Ipv4Addr, n: u32) -> Ipv4Addr {
    Ipv4Addr::from(u32::from(a) + n)
}

#[derive(Clone, Debug)]
pub(crate) struct Setup {
    shards: usize,
    sizes: [u32; 2],
    /// Offsets excluded from each pool (beyond its size are ignored by the engine).
    excluded: [Vec<u32>; 2],
    /// Offset in pool 0 of client 0's reservation (excluded too).
    reserved_off: u32,
}

impl Setup {
    fn reservation(&self, c: u8) -> Option<Ipv4Addr> {
        match c {
            0 => Some(add(POOL_FIRST[0], self.reserved_off)),
            1 => Some(OUTSIDE_RESERVED),
            _ => None,
        }
    }

    fn engine(&self) -> Engine {
        Engine::new(self.config()).unwrap()
    }

    fn config(&self) -> EngineConfig {
        let pools = (0..2)
            .map(|p| {
                let mut excluded: Vec<Ipv4Addr> = self.excluded[p]
                    .iter()
                    .map(|&o| add(POOL_FIRST[p], o))
                    .collect();
                if p == 0 {
                    excluded.push(add(POOL_FIRST[0], self.reserved_off));
                }
                PoolSpec {
                    first: POOL_FIRST[p],
                    last: add(POOL_FIRST[p], self.sizes[p] - 1),
                    excluded,
                }
            })
            .collect();
        EngineConfig {
            shards: self.shards,
            pools,
            offer_hold: HOLD,
            decline_probation: PROBATION,
        }
    }

    /// Every address the operations pick from: both pools and two outside addresses.
    fn universe(&self) -> Vec<Ipv4Addr> {
        let mut all: Vec<Ipv4Addr> = (0..2)
            .flat_map(|p| (0..self.sizes[p]).map(move |o| add(POOL_FIRST[p], o)))
            .collect();
        all.extend([OUTSIDE_RESERVED, OUTSIDE]);
        all
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    (1..=4usize, 5..=40u32, 5..=40u32)
        .prop_flat_map(|(shards, s0, s1)| {
            (
                Just(shards),
                Just([s0, s1]),
                proptest::collection::vec(0..s0, 0..4),
                proptest::collection::vec(0..s1, 0..4),
                0..s0,
            )
        })
        .prop_map(|(shards, sizes, ex0, ex1, reserved_off)| Setup {
            shards,
            sizes,
            excluded: [ex0, ex1],
            reserved_off,
        })
}

fn key(c: u8) -> ClientKey {
    ClientKey::hardware(1, &[2, 0, 0, 0, 0, c])
}

fn client_of(key: &ClientKey) -> u8 {
    *key.as_bytes().last().unwrap()
}

fn info(c: u8) -> LeaseInfo<'static> {
    LeaseInfo {
        hw: HwAddr::new(1, &[2, 0, 0, 0, 0, c]).unwrap(),
        hostname: None,
    }
}

/// Client `c` always reaches the same shard, as the server's steering guarantees.
fn shard_of(c: u8, shards: usize) -> usize {
    let mut h = DefaultHasher::new();
    c.hash(&mut h);
    (h.finish() % shards as u64) as usize
}

family! {
    crate::engine::V4, test engine_matches_model, cases 512;

    fn shard(setup: &Setup, _: &Engine, c: u8) -> usize {
        shard_of(c, setup.shards)
    }
    fn serves(pool: PoolId, pools: &[PoolId], _: u8) -> bool {
        pools.contains(&pool)
    }
    /// v4 refuses a quarantined address as taken.
    fn refusal(why: Refusal) -> BindError {
        match why {
            Refusal::NotInPool => BindError::NotInPool,
            Refusal::Fixed | Refusal::Quarantined | Refusal::HeldByOther => BindError::Taken,
        }
    }

    fn view(v: &LeaseView) -> Seen<Ipv4Addr, PoolId> {
        Seen {
            res: v.address,
            pool: v.pool,
            state: v.state,
            starts: v.starts,
            expires: v.expires,
            preferred: None,
        }
    }
    fn info<'a>(c: u8) -> Info<'a, crate::engine::V4> {
        info(c)
    }
    fn grant<'a>(c: u8, (lease_time, _): (u32, u32)) -> Grant<'a, crate::engine::V4> {
        crate::v4::Grant {
            lease_time,
            info: info(c),
        }
    }
    fn check_offer(_: &Engine, address: Ipv4Addr, _: Option<Ipv4Addr>, _: Time) -> Ipv4Addr {
        address
    }
}
