//! The v6 instance of the property test in `model.rs`, for IAs of both kinds.
//!
//! Two tiny pools (an IA_NA range of 5 to 40 addresses, an IA_PD prefix split into 4 to 32
//! /124s), both with exclusions and an in-pool static assignment, over 1 to 4 shards. Each
//! case runs the pools dense (bitmaps) or sparse (owned intervals probed from hashed
//! targets), and with a small or a large cap on remembered records. Eight IAs: four clients
//! with one IA_NA and one IA_PD each; a pool serves only IAs of its kind, and the universe
//! includes a prefix of the wrong length inside the PD pool.

use std::net::Ipv6Addr;

use proptest::prelude::*;

use crate::lease::{LeaseState, Time};
use crate::model::{self, HOLD, Info, PROBATION, Refusal, Seen, family};

use super::engine::Tuning;
use super::pools::Place;
use super::*;

const NA_FIRST: u128 = 0x2001_0db8_0000_0000_0000_0000_0000_0010;
const PD_FIRST: u128 = 0x2001_0db8_0001_0000_0000_0000_0000_0000;
const PD_LEN: u8 = 124;
/// IA 1's static address, outside every pool.
const NA_OUTSIDE_RESERVED: u128 = 0x2001_0db8_0009_0000_0000_0000_0000_0009;
/// IA 5's static prefix, outside every pool.
const PD_OUTSIDE_RESERVED: u128 = 0x2001_0db8_0099_0000_0000_0000_0000_0000;
/// An address outside every pool that nobody has reserved.
const OUTSIDE: u128 = 0x2001_0db8_0002_0000_0000_0000_0000_0001;

fn na_res(off: u32) -> Resource {
    Resource::address(Ipv6Addr::from(NA_FIRST + u128::from(off)))
}

fn pd_res(off: u32) -> Resource {
    Resource::prefix(Ipv6Addr::from(PD_FIRST + (u128::from(off) << 4)), PD_LEN)
}

#[derive(Clone, Debug)]
pub(crate) struct Setup {
    shards: usize,
    na_size: u32,
    /// The PD pool has `1 << pd_bits` prefixes.
    pd_bits: u32,
    na_excluded: Vec<u32>,
    /// Excluded prefixes as `(offset, covers two /124s)`.
    pd_excluded: Vec<(u32, bool)>,
    /// IA 0's static address (pool 0) and IA 4's static prefix (pool 1): excluded too.
    na_reserved: u32,
    pd_reserved: u32,
    sparse: bool,
    remember_min: u64,
}

impl Setup {
    fn pd_size(&self) -> u32 {
        1 << self.pd_bits
    }

    fn reservation(&self, ia: u8) -> Option<Resource> {
        match ia {
            0 => Some(na_res(self.na_reserved)),
            1 => Some(Resource::address(Ipv6Addr::from(NA_OUTSIDE_RESERVED))),
            4 => Some(pd_res(self.pd_reserved)),
            5 => Some(Resource::prefix(
                Ipv6Addr::from(PD_OUTSIDE_RESERVED),
                PD_LEN,
            )),
            _ => None,
        }
    }

    fn config(&self) -> EngineConfig {
        let mut na_excluded: Vec<Ipv6Addr> =
            self.na_excluded.iter().map(|&o| na_res(o).addr).collect();
        na_excluded.push(na_res(self.na_reserved).addr);
        let mut pd_excluded: Vec<(Ipv6Addr, u8)> = self
            .pd_excluded
            .iter()
            .map(|&(o, two)| (pd_res(o).addr, if two { PD_LEN - 1 } else { PD_LEN }))
            .collect();
        pd_excluded.push((pd_res(self.pd_reserved).addr, PD_LEN));
        EngineConfig {
            shards: self.shards,
            pools: vec![
                PoolSpec::Na {
                    first: Ipv6Addr::from(NA_FIRST),
                    last: Ipv6Addr::from(NA_FIRST + u128::from(self.na_size) - 1),
                    excluded: na_excluded,
                },
                PoolSpec::Pd {
                    prefix: Ipv6Addr::from(PD_FIRST),
                    prefix_len: PD_LEN - self.pd_bits as u8,
                    delegated_len: PD_LEN,
                    excluded: pd_excluded,
                },
            ],
            offer_hold: HOLD,
            decline_probation: PROBATION,
        }
    }

    fn tuning(&self) -> Tuning {
        Tuning {
            dense_max: if self.sparse { 0 } else { u128::MAX },
            remember_min: self.remember_min,
        }
    }

    fn engine(&self) -> Engine {
        Engine::with_tuning(self.config(), self.tuning()).unwrap()
    }

    /// Every resource the operations pick from: both pools, the static ones outside them,
    /// an unreserved address outside, and a prefix inside the PD pool of the wrong length.
    fn universe(&self) -> Vec<Resource> {
        let mut all: Vec<Resource> = (0..self.na_size).map(na_res).collect();
        all.extend((0..self.pd_size()).map(pd_res));
        all.extend([
            self.reservation(1).unwrap(),
            self.reservation(5).unwrap(),
            Resource::address(Ipv6Addr::from(OUTSIDE)),
            Resource::prefix(Ipv6Addr::from(PD_FIRST), PD_LEN + 2),
        ]);
        all
    }
}

fn setup() -> impl Strategy<Value = Setup> {
    (
        1..=4usize,
        5..=40u32,
        2..=5u32,
        any::<bool>(),
        prop_oneof![Just(1u64), Just(2), Just(1000)],
    )
        .prop_flat_map(|(shards, na_size, pd_bits, sparse, remember_min)| {
            let pd_size = 1u32 << pd_bits;
            (
                Just((shards, na_size, pd_bits, sparse, remember_min)),
                proptest::collection::vec(0..na_size, 0..4),
                proptest::collection::vec((0..pd_size, any::<bool>()), 0..3),
                0..na_size,
                0..pd_size,
            )
        })
        .prop_map(
            |(
                (shards, na_size, pd_bits, sparse, remember_min),
                na_excluded,
                pd_excluded,
                na_reserved,
                pd_reserved,
            )| {
                Setup {
                    shards,
                    na_size,
                    pd_bits,
                    na_excluded,
                    pd_excluded,
                    na_reserved,
                    pd_reserved,
                    sparse,
                    remember_min,
                }
            },
        )
}

fn duid(client: u8) -> [u8; 10] {
    [0, 3, 0, 1, 2, 0, 0, 0, 0, client]
}

/// IA `ia`: client `ia % 4`, IA_NA below 4 and IA_PD from 4 on.
fn key(ia: u8) -> IaKey {
    let kind = if ia < 4 { IaKind::Na } else { IaKind::Pd };
    IaKey::new(&duid(ia % 4), 1, kind)
}

fn client_of(key: &IaKey) -> u8 {
    key.duid()[9] + if key.kind() == IaKind::Pd { 4 } else { 0 }
}

family! {
    super::engine::V6, test v6_engine_matches_model, cases 384;

    /// The IA's client's shard, as the engine steers by DUID.
    fn shard(_: &Setup, engine: &Engine, ia: u8) -> usize {
        engine.owner(&duid(ia % 4))
    }
    /// A candidate of the IA's kind: pool 0 is IA_NA, pool 1 IA_PD.
    fn serves(pool: PoolId, pools: &[PoolId], ia: u8) -> bool {
        let kind = if pool.0 == 0 { IaKind::Na } else { IaKind::Pd };
        pools.contains(&pool) && kind == key(ia).kind()
    }
    fn refusal(why: Refusal) -> BindError {
        match why {
            Refusal::NotInPool => BindError::NotInPool,
            Refusal::Quarantined => BindError::Quarantined,
            Refusal::Fixed | Refusal::HeldByOther => BindError::Taken,
        }
    }

    fn view(v: &LeaseView) -> Seen<Resource, PoolId> {
        Seen {
            res: v.resource,
            pool: v.pool,
            state: v.state,
            starts: v.starts,
            expires: v.expires,
            preferred: Some(v.preferred),
        }
    }
    fn info<'a>(_: u8) -> Info<'a, super::engine::V6> {}
    fn grant<'a>(_: u8, (valid, preferred): (u32, u32)) -> model::Grant<'a, super::engine::V6> {
        Grant { preferred, valid }
    }
    /// Checks the advertise's view: its pool, and Bound if the IA holds it, else an
    /// advertise with no preferred lifetime for the offer hold.
    fn check_offer(engine: &Engine, v: LeaseView, bound: Option<Resource>, now: Time) -> Resource {
        assert_eq!(v.pool, engine.pools().place(v.resource).pool());
        if bound == Some(v.resource) {
            assert_eq!(v.state, LeaseState::Bound);
        } else {
            assert_eq!(
                (v.state, v.preferred, v.expires),
                (LeaseState::Offered, 0, now + u64::from(HOLD))
            );
        }
        v.resource
    }
}
