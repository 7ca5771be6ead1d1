//! Pool configuration and its validated layout: which addresses are dynamic, and where.

use std::fmt;
use std::net::Ipv4Addr;

use roaring::RoaringBitmap;

use crate::error::{Error, Result};

/// Index of a pool in [`EngineConfig::pools`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PoolId(pub u32);

impl PoolId {
    pub(crate) fn index(self) -> usize {
        self.0 as usize
    }
}

impl fmt::Display for PoolId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
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

/// Everything [`Engine::new`](crate::Engine::new) needs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EngineConfig {
    /// Number of shards, normally one per worker core.
    pub shards: usize,
    /// The dynamic pools; a [`PoolId`] is an index in this list. Pools must not overlap.
    pub pools: Vec<PoolSpec>,
    /// Seconds an OFFER holds its address.
    pub offer_hold: u32,
    /// Seconds a declined address stays quarantined.
    pub decline_probation: u32,
}

/// Where an address sits in the configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place {
    /// Handed out from bitmaps: `off` is its offset from its pool's first address.
    Dynamic { pool: PoolId, off: u32 },
    /// Never in a bitmap: excluded from pool `Some(_)`, or outside every pool.
    Fixed { pool: Option<PoolId> },
}

impl Place {
    pub(crate) fn pool(self) -> Option<PoolId> {
        match self {
            Place::Dynamic { pool, .. } => Some(pool),
            Place::Fixed { pool } => pool,
        }
    }
}

/// One validated pool.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) first: u32,
    pub(crate) last: u32,
    /// Excluded offsets inside the range.
    pub(crate) excluded: RoaringBitmap,
    /// Dynamic addresses: range size minus excluded.
    pub(crate) total: u64,
}

impl Layout {
    fn size(&self) -> u64 {
        u64::from(self.last - self.first) + 1
    }
}

/// The validated pools, with an index by first address for finding an address's pool.
#[derive(Debug)]
pub(crate) struct Pools {
    layouts: Box<[Layout]>,
    /// `(first, last, id)` sorted by `first`; ranges do not overlap.
    sorted: Box<[(u32, u32, PoolId)]>,
}

impl Pools {
    pub(crate) fn new(specs: &[PoolSpec]) -> Result<Self> {
        let id = |i: usize| {
            u32::try_from(i)
                .map(PoolId)
                .map_err(|_| Error::TooManyPools(specs.len()))
        };
        let mut layouts = Vec::with_capacity(specs.len());
        let mut sorted = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let (first, last) = (u32::from(spec.first), u32::from(spec.last));
            if first > last {
                return Err(Error::PoolRange {
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
            layouts.push(Layout {
                first,
                last,
                excluded,
                total,
            });
            sorted.push((first, last, id(i)?));
        }
        sorted.sort_unstable();
        if let Some((first, second)) = crate::common::overlap(&sorted) {
            return Err(Error::PoolsOverlap { first, second });
        }
        Ok(Self {
            layouts: layouts.into(),
            sorted: sorted.into(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.layouts.len()
    }

    /// The pools with their ids, in configuration order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (PoolId, &Layout)> {
        // `new` checked that every index fits a u32.
        (0u32..).map(PoolId).zip(self.layouts.iter())
    }

    pub(crate) fn get(&self, pool: PoolId) -> Option<&Layout> {
        self.layouts.get(pool.index())
    }

    /// Where `addr` sits: in which pool, and whether it is dynamic.
    pub(crate) fn place(&self, addr: u32) -> Place {
        let i = self.sorted.partition_point(|&(first, _, _)| first <= addr);
        let Some(&(first, last, pool)) = i.checked_sub(1).map(|i| &self.sorted[i]) else {
            return Place::Fixed { pool: None };
        };
        if addr > last {
            return Place::Fixed { pool: None };
        }
        let off = addr - first;
        if self.layouts[pool.index()].excluded.contains(off) {
            Place::Fixed { pool: Some(pool) }
        } else {
            Place::Dynamic { pool, off }
        }
    }

    /// The address at offset `off` of `pool`.
    pub(crate) fn addr(&self, pool: PoolId, off: u32) -> u32 {
        self.layouts[pool.index()].first + off
    }

    /// `pool`'s dynamic offsets split into `shards` contiguous blocks.
    pub(crate) fn blocks(&self, pool: PoolId, shards: usize) -> Vec<RoaringBitmap> {
        let layout = &self.layouts[pool.index()];
        let size = layout.size();
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
    fn first_after_last_is_refused() {
        let err = Pools::new(&[spec([10, 0, 0, 9], [10, 0, 0, 1], &[])]).unwrap_err();
        assert!(
            matches!(
                err,
                Error::PoolRange {
                    pool: PoolId(0),
                    ..
                }
            ),
            "{err}"
        );
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
