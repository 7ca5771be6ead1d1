//! Pool configuration and its validated layout: which addresses are dynamic, and where.

use std::net::Ipv4Addr;

use roaring::RoaringBitmap;

use crate::error::{ConfigError, Result};

pub(crate) mod table;

use table::{Id, Table};

table::pool_id! {
    /// Index of a pool in an [`EngineConfig`]'s `pools`.
    PoolId
}

/// One dynamic pool: the inclusive range `first..=last` minus `excluded`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PoolSpec {
    /// First address of the range.
    pub first: Ipv4Addr,
    /// Last address of the range (inclusive).
    pub last: Ipv4Addr,
    /// Addresses never handed out dynamically. Reserved addresses inside the range belong
    /// here too; addresses outside the range are ignored.
    pub excluded: Vec<Ipv4Addr>,
}

/// Everything [`Engine::new`](crate::v4::Engine::new) needs.
pub type EngineConfig = crate::engine_core::Config<PoolSpec>;

/// Where an address sits: a dynamic one's offset is from its pool's first address.
pub(crate) type Place = table::Place<PoolId, u32>;

/// One validated pool, beside its range in the table.
#[derive(Debug)]
pub(crate) struct Layout {
    /// Excluded offsets inside the range.
    pub(crate) excluded: RoaringBitmap,
    /// Dynamic addresses: range size minus excluded.
    pub(crate) total: u64,
}

/// The validated pools, indexed by address range.
pub(crate) type Pools = Table<Layout, u32, PoolId>;

impl Pools {
    pub(crate) fn new(specs: &[PoolSpec]) -> Result<Self> {
        let id = |i| PoolId::nth(i).ok_or(ConfigError::TooManyPools(specs.len()));
        let mut layouts = Vec::with_capacity(specs.len());
        let mut sorted = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let (first, last) = (u32::from(spec.first), u32::from(spec.last));
            if first > last {
                return Err(ConfigError::PoolRange {
                    pool: id(i)?,
                    first: spec.first,
                    last: spec.last,
                });
            }
            let excluded: RoaringBitmap = spec
                .excluded
                .iter()
                .map(|&a| u32::from(a))
                .filter(|a| (first..=last).contains(a))
                .map(|a| a - first)
                .collect();
            let total = u64::from(last - first) + 1 - excluded.len();
            layouts.push(Layout { excluded, total });
            sorted.push((first, last, id(i)?));
        }
        Self::build(layouts, sorted)
            .map_err(|(first, second)| ConfigError::PoolsOverlap { first, second })
    }

    /// Where `addr` sits: in which pool, and whether it is dynamic.
    pub(crate) fn place(&self, addr: u32) -> Place {
        let Some((pool, first)) = self.find(addr) else {
            return Place::Fixed { pool: None };
        };
        let off = addr - first;
        let excluded = (self.overlay.get(pool.0, u128::from(off)))
            .unwrap_or_else(|| self.layout(pool).excluded.contains(off));
        if excluded {
            Place::Fixed { pool: Some(pool) }
        } else {
            Place::Dynamic { pool, off }
        }
    }

    /// The address at offset `off` of `pool`.
    pub(crate) fn addr(&self, pool: PoolId, off: u32) -> u32 {
        self.range(pool).0 + off
    }

    /// `pool`'s dynamic offsets split into `shards` contiguous blocks.
    pub(crate) fn blocks(&self, pool: PoolId, shards: usize) -> Vec<RoaringBitmap> {
        let layout = self.layout(pool);
        let (first, last) = self.range(pool);
        let size = u64::from(last - first) + 1;
        let shards = shards as u64;
        (0..shards)
            .map(|s| {
                let (lo, hi) = (size * s / shards, size * (s + 1) / shards);
                let mut block = RoaringBitmap::new();
                if lo < hi {
                    // Offsets are below 2^32 because the range is a range of IPv4 addresses.
                    block.insert_range(lo as u32..=(hi - 1) as u32);
                    block -= &layout.excluded;
                    block.optimize();
                }
                block
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(first: [u8; 4], last: [u8; 4], excluded: &[[u8; 4]]) -> PoolSpec {
        PoolSpec {
            first: first.into(),
            last: last.into(),
            excluded: excluded.iter().map(|&a| a.into()).collect(),
        }
    }

    #[test]
    fn overlap_names_both_pools() {
        let err = Pools::new(&[
            spec([10, 0, 0, 1], [10, 0, 0, 9], &[]),
            spec([10, 0, 1, 1], [10, 0, 1, 9], &[]),
            spec([10, 0, 0, 9], [10, 0, 0, 20], &[]),
        ])
        .unwrap_err();
        assert_eq!(err.to_string(), "pools 0 and 2 overlap");
    }

    #[test]
    fn place_finds_pool_offset_and_exclusions() {
        let pools = Pools::new(&[
            spec([10, 0, 1, 0], [10, 0, 1, 9], &[]),
            spec(
                [10, 0, 0, 10],
                [10, 0, 0, 20],
                &[[10, 0, 0, 12], [10, 9, 9, 9]],
            ),
        ])
        .unwrap();
        let place = |a: [u8; 4]| pools.place(u32::from(Ipv4Addr::from(a)));
        assert_eq!(
            place([10, 0, 0, 10]),
            Place::Dynamic {
                pool: PoolId(1),
                off: 0
            }
        );
        assert_eq!(
            place([10, 0, 0, 12]),
            Place::Fixed {
                pool: Some(PoolId(1))
            }
        );
        assert_eq!(
            place([10, 0, 1, 9]),
            Place::Dynamic {
                pool: PoolId(0),
                off: 9
            }
        );
        assert_eq!(place([10, 0, 0, 21]), Place::Fixed { pool: None });
        assert_eq!(place([10, 0, 0, 9]), Place::Fixed { pool: None });
        assert_eq!(place([0, 0, 0, 0]), Place::Fixed { pool: None });
        // The exclusion outside the range is ignored.
        assert_eq!(pools.get(PoolId(1)).unwrap().total, 10);
    }

    #[test]
    fn blocks_partition_the_dynamic_offsets() {
        let pools = Pools::new(&[spec([10, 0, 0, 0], [10, 0, 0, 9], &[[10, 0, 0, 3]])]).unwrap();
        for shards in 1..=12 {
            let blocks = pools.blocks(PoolId(0), shards);
            assert_eq!(blocks.len(), shards);
            let mut all = RoaringBitmap::new();
            for block in &blocks {
                assert!(all.is_disjoint(block));
                all |= block;
            }
            assert_eq!(all, (0..10).filter(|&o| o != 3).collect());
        }
    }

    #[test]
    fn whole_address_space_is_one_valid_pool() {
        let pools = Pools::new(&[spec([0, 0, 0, 0], [255, 255, 255, 255], &[])]).unwrap();
        assert_eq!(pools.get(PoolId(0)).unwrap().total, 1 << 32);
        let place = pools.place(u32::MAX);
        assert_eq!(
            place,
            Place::Dynamic {
                pool: PoolId(0),
                off: u32::MAX
            }
        );
    }
}
