//! v6 pool configuration and its validated layout: which resources are dynamic, and where.
//!
//! A pool numbers its dynamic resources by offset: an IA_NA pool's offset is the address
//! minus its first address; an IA_PD pool's is the delegated prefix's index inside the pool's
//! prefix (`(addr - prefix) >> (128 - delegated_len)`). Offsets are `u128`: a pool may hold up
//! to 2^128 - 1 resources.

use std::net::Ipv6Addr;

use super::error::ConfigError;
use super::key::{IaKind, Resource};
use crate::pools::table::{self, Id, Table};

table::pool_id! {
    /// Index of a pool in an [`EngineConfig`]'s `pools`.
    PoolId
}

/// One dynamic pool.
///
/// Static assignments (reservations) inside a pool must be excluded from it here, so that the
/// engine never hands them out dynamically: an IA_NA reservation as an `excluded` address, an
/// IA_PD reservation as an `excluded` prefix (it removes every delegated prefix it overlaps,
/// so a reserved /60 inside a pool of /56s removes the /56 around it). A reserved resource
/// that is not a dynamic one (excluded, or of another length) can only be bound by the IA it
/// is reserved for ([`SolicitRequest::reserved`](crate::engine_core::OfferRequest::reserved),
/// [`BindRequest::reserved`](crate::engine_core::BindRequest::reserved)).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PoolSpec {
    /// IA_NA: the inclusive range `first..=last` (any size, up to a whole /64 or more), minus
    /// `excluded` (addresses outside the range are ignored).
    Na {
        /// First address of the range.
        first: Ipv6Addr,
        /// Last address of the range (inclusive).
        last: Ipv6Addr,
        /// Addresses never handed out dynamically.
        excluded: Vec<Ipv6Addr>,
    },
    /// IA_PD: every `/delegated_len` inside `prefix/prefix_len`, minus those overlapping an
    /// `excluded` prefix (`(addr, len)`; bits beyond `len` are ignored).
    Pd {
        /// The pool's prefix (no bits set beyond `prefix_len`).
        prefix: Ipv6Addr,
        /// Its length.
        prefix_len: u8,
        /// Length of the prefixes delegated from it (`prefix_len..=128`).
        delegated_len: u8,
        /// Prefixes never delegated dynamically.
        excluded: Vec<(Ipv6Addr, u8)>,
    },
}

/// Everything [`Engine::new`](super::Engine::new) needs.
pub type EngineConfig = crate::engine_core::Config<PoolSpec>;

/// Where a resource sits; one of another prefix length or misaligned is `Fixed`.
pub(crate) type Place = table::Place<PoolId, u128>;

/// The low `bits` bits set (all of them from 128 on).
pub(crate) fn low_mask(bits: u32) -> u128 {
    if bits >= 128 {
        u128::MAX
    } else {
        (1u128 << bits) - 1
    }
}

/// One validated pool.
#[derive(Debug)]
pub(crate) struct Layout {
    pub(crate) kind: IaKind,
    /// First address the pool's resources cover.
    pub(crate) first: u128,
    /// Offset `off` is the resource at `first + (off << shift)` (below 128: a pool of one /0
    /// has shift 0).
    pub(crate) shift: u32,
    /// The resources' length: 128 for IA_NA, the delegated length for IA_PD.
    pub(crate) res_len: u8,
    /// Offsets are `0..size`.
    pub(crate) size: u128,
    /// Excluded offsets: sorted, disjoint, non-adjacent inclusive intervals.
    pub(crate) excluded: Box<[(u128, u128)]>,
    /// Dynamic resources: `size` minus the excluded ones.
    pub(crate) total: u128,
    /// Whether shards keep this pool's free offsets in bitmaps (small pools) rather than as
    /// owned intervals probed against the records (large ones); see `space.rs`.
    pub(crate) dense: bool,
}

impl Layout {
    pub(crate) fn is_excluded(&self, off: u128) -> bool {
        let i = self.excluded.partition_point(|&(lo, _)| lo <= off);
        i > 0 && self.excluded[i - 1].1 >= off
    }

    /// The resource at offset `off`.
    pub(crate) fn resource(&self, off: u128) -> Resource {
        let addr = self.first + (off << self.shift);
        Resource {
            addr: Ipv6Addr::from(addr),
            len: self.res_len,
        }
    }

    /// Shard `s`'s initial block of offsets, half-open: the offsets split into `shards`
    /// contiguous blocks whose sizes differ by at most one.
    pub(crate) fn block(&self, s: usize, shards: usize) -> (u128, u128) {
        let (n, s) = (shards as u128, s as u128);
        let (base, rem) = (self.size / n, self.size % n);
        let lo = s * base + s.min(rem);
        (lo, lo + base + u128::from(s < rem))
    }

    /// The shard whose initial block holds `off`.
    pub(crate) fn block_owner(&self, off: u128, shards: usize) -> usize {
        let n = shards as u128;
        let (base, rem) = (self.size / n, self.size % n);
        // The first `rem` blocks have `base + 1` offsets.
        let big = rem * (base + 1);
        let s = if off < big {
            off / (base + 1)
        } else {
            rem + (off - big) / base.max(1)
        };
        (s as usize).min(shards - 1)
    }
}

/// The validated pools, indexed by the range of addresses they cover.
pub(crate) type Pools = Table<Layout, u128, PoolId>;

/// Sorts and merges inclusive intervals (overlapping or adjacent ones become one).
fn merge(mut intervals: Vec<(u128, u128)>) -> Box<[(u128, u128)]> {
    intervals.sort_unstable();
    let mut out: Vec<(u128, u128)> = Vec::with_capacity(intervals.len());
    for (lo, hi) in intervals {
        match out.last_mut() {
            Some(last) if last.1.checked_add(1).is_none_or(|next| lo <= next) => {
                last.1 = last.1.max(hi);
            }
            _ => out.push((lo, hi)),
        }
    }
    out.into()
}

/// A pool's kind, first and last address, shift, resource length and size (as in [`Layout`]),
/// and the offsets each of its exclusions that meets it takes out (inclusive, unmerged).
pub(crate) type Shape = (IaKind, u128, u128, u32, u8, u128, Vec<(u128, u128)>);

impl PoolSpec {
    /// Validates this spec, the `pool`th, into its [`Shape`].
    pub(crate) fn shape(&self, pool: PoolId) -> Result<Shape, ConfigError> {
        match self {
            PoolSpec::Na {
                first,
                last,
                excluded,
            } => {
                let (lo, hi) = (u128::from(*first), u128::from(*last));
                if lo > hi {
                    return Err(ConfigError::PoolRange {
                        pool,
                        first: *first,
                        last: *last,
                    });
                }
                let size = (hi - lo)
                    .checked_add(1)
                    .ok_or(ConfigError::PoolTooLarge(pool))?;
                let excluded = excluded
                    .iter()
                    .map(|&a| u128::from(a))
                    .filter(|a| (lo..=hi).contains(a))
                    .map(|a| (a - lo, a - lo))
                    .collect();
                Ok((IaKind::Na, lo, hi, 0, 128, size, excluded))
            }
            PoolSpec::Pd {
                prefix,
                prefix_len,
                delegated_len,
                excluded,
            } => {
                let (p, d) = (u32::from(*prefix_len), u32::from(*delegated_len));
                let base = u128::from(*prefix);
                let host = low_mask(128u32.saturating_sub(p));
                if p > d || d > 128 || base & host != 0 {
                    return Err(ConfigError::PoolPrefix {
                        pool,
                        prefix: *prefix,
                        prefix_len: *prefix_len,
                        delegated_len: *delegated_len,
                    });
                }
                if d - p >= 128 {
                    return Err(ConfigError::PoolTooLarge(pool));
                }
                let (lo, hi, shift) = (base, base | host, 128 - d);
                // A /0 delegated whole has one offset: everything shifts to 0.
                let shr = |x: u128| x.checked_shr(shift).unwrap_or(0);
                let excluded = excluded
                    .iter()
                    .filter_map(|&(addr, len)| {
                        let mask = low_mask(128u32.saturating_sub(u32::from(len)));
                        let net = u128::from(addr) & !mask;
                        let (a, b) = (net.max(lo), (net | mask).min(hi));
                        (a <= b).then(|| (shr(a - lo), shr(b - lo)))
                    })
                    .collect();
                Ok((
                    IaKind::Pd,
                    lo,
                    hi,
                    shift % 128,
                    *delegated_len,
                    1u128 << (d - p),
                    excluded,
                ))
            }
        }
    }
}

impl Pools {
    /// Validates `specs`; pools of at most `dense_max` offsets are dense.
    pub(crate) fn new(specs: &[PoolSpec], dense_max: u128) -> Result<Self, ConfigError> {
        let id = |i| PoolId::nth(i).ok_or(ConfigError::TooManyPools(specs.len()));
        let mut layouts = Vec::with_capacity(specs.len());
        let mut sorted = Vec::with_capacity(specs.len());
        for (i, spec) in specs.iter().enumerate() {
            let pool = id(i)?;
            let (kind, first, last, shift, res_len, size, excluded) = spec.shape(pool)?;
            let excluded = merge(excluded);
            let gone: u128 = excluded.iter().map(|&(lo, hi)| hi - lo + 1).sum();
            layouts.push(Layout {
                kind,
                first,
                shift,
                res_len,
                size,
                total: size - gone,
                // Dense offsets are `u32`s in a roaring bitmap.
                dense: size <= dense_max.min(1 << 32),
                excluded,
            });
            sorted.push((first, last, pool));
        }
        Self::build(layouts, sorted)
            .map_err(|(first, second)| ConfigError::PoolsOverlap { first, second })
    }

    /// Where `res` sits: in which pool, and whether it is one of its dynamic resources.
    pub(crate) fn place(&self, res: Resource) -> Place {
        let addr = u128::from(res.addr);
        let Some((pool, first)) = self.find(addr) else {
            return Place::Fixed { pool: None };
        };
        let layout = self.layout(pool);
        let rel = addr - first;
        if res.len != layout.res_len || rel & low_mask(layout.shift) != 0 {
            return Place::Fixed { pool: Some(pool) };
        }
        let off = rel >> layout.shift;
        if (self.overlay.get(pool.0, off)).unwrap_or_else(|| layout.is_excluded(off)) {
            Place::Fixed { pool: Some(pool) }
        } else {
            Place::Dynamic { pool, off }
        }
    }

    /// The resource at offset `off` of `pool`.
    pub(crate) fn resource(&self, pool: PoolId, off: u128) -> Resource {
        self.layout(pool).resource(off)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn a(s: &str) -> Ipv6Addr {
        s.parse().unwrap()
    }

    fn na(first: &str, last: &str, excluded: &[&str]) -> PoolSpec {
        PoolSpec::Na {
            first: a(first),
            last: a(last),
            excluded: excluded.iter().map(|e| a(e)).collect(),
        }
    }

    fn pd(prefix: &str, prefix_len: u8, delegated_len: u8, excluded: &[(&str, u8)]) -> PoolSpec {
        PoolSpec::Pd {
            prefix: a(prefix),
            prefix_len,
            delegated_len,
            excluded: excluded.iter().map(|&(e, l)| (a(e), l)).collect(),
        }
    }

    #[test]
    fn bad_pools_are_refused_with_their_id() {
        for bad in [
            pd("2001:db8::", 48, 40, &[]),
            pd("2001:db8::", 48, 129, &[]),
            pd("2001:db8::1", 48, 56, &[]),
        ] {
            let err = Pools::new(&[na("::1", "::2", &[]), bad], 0).unwrap_err();
            assert!(
                matches!(
                    err,
                    ConfigError::PoolPrefix {
                        pool: PoolId(1),
                        ..
                    }
                ),
                "{err}"
            );
        }
        let err = Pools::new(
            &[na("::", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &[])],
            0,
        )
        .unwrap_err();
        assert!(matches!(err, ConfigError::PoolTooLarge(PoolId(0))));
        assert!(matches!(
            Pools::new(&[pd("::", 0, 128, &[])], 0).unwrap_err(),
            ConfigError::PoolTooLarge(_)
        ));
        let err = Pools::new(
            &[
                na("2001:db8::1", "2001:db8::ff", &[]),
                pd("2001:db9::", 32, 48, &[]),
                pd("2001:db8::", 64, 120, &[]),
            ],
            0,
        )
        .unwrap_err();
        assert_eq!(err.to_string(), "pools 0 and 2 overlap");
    }

    #[test]
    fn na_places_offsets_and_exclusions() {
        let pools = Pools::new(
            &[
                na(
                    "2001:db8::10",
                    "2001:db8::20",
                    &["2001:db8::12", "2001:db8::99"],
                ),
                na("2001:db8:1::", "2001:db8:1::ffff:ffff:ffff:ffff", &[]),
            ],
            1 << 20,
        )
        .unwrap();
        let place = |s: &str| pools.place(Resource::address(a(s)));
        assert_eq!(
            place("2001:db8::10"),
            Place::Dynamic {
                pool: PoolId(0),
                off: 0
            }
        );
        assert_eq!(
            place("2001:db8::12"),
            Place::Fixed {
                pool: Some(PoolId(0))
            }
        );
        assert_eq!(place("2001:db8::21"), Place::Fixed { pool: None });
        assert_eq!(place("::1"), Place::Fixed { pool: None });
        assert_eq!(
            place("2001:db8:1::ffff:ffff:ffff:ffff"),
            Place::Dynamic {
                pool: PoolId(1),
                off: u128::from(u64::MAX)
            }
        );
        // A prefix inside an address pool is not one of its resources.
        assert_eq!(
            pools.place(Resource::prefix(a("2001:db8::10"), 124)),
            Place::Fixed {
                pool: Some(PoolId(0))
            }
        );
        let (l0, l1) = (pools.layout(PoolId(0)), pools.layout(PoolId(1)));
        assert_eq!((l0.size, l0.total, l0.dense), (17, 16, true));
        assert_eq!((l1.size, l1.dense), (1 << 64, false));
        assert_eq!(l1.resource(5), Resource::address(a("2001:db8:1::5")));
    }

    #[test]
    fn pd_places_prefixes_and_exclusions() {
        let pools = Pools::new(
            &[pd(
                "2001:db8::",
                48,
                56,
                &[
                    ("2001:db8:0:300::", 60),
                    ("2001:db8:0:1000::", 52),
                    ("2001:db9::", 56),
                ],
            )],
            1 << 20,
        )
        .unwrap();
        let layout = pools.layout(PoolId(0));
        // /60 removes /56 number 3; the /52 removes 16 of them (0x10..=0x1f).
        assert_eq!(&*layout.excluded, &[(3, 3), (0x10, 0x1f)]);
        assert_eq!((layout.size, layout.total), (256, 256 - 17));
        let place = |s: &str, len| pools.place(Resource::prefix(a(s), len));
        assert_eq!(
            place("2001:db8:0:200::", 56),
            Place::Dynamic {
                pool: PoolId(0),
                off: 2
            }
        );
        assert_eq!(
            place("2001:db8:0:300::", 56),
            Place::Fixed {
                pool: Some(PoolId(0))
            }
        );
        assert_eq!(
            place("2001:db8:0:280::", 56),
            Place::Fixed {
                pool: Some(PoolId(0))
            }
        );
        assert_eq!(
            place("2001:db8:0:200::", 64),
            Place::Fixed {
                pool: Some(PoolId(0))
            }
        );
        assert_eq!(place("2001:db8:1::", 56), Place::Fixed { pool: None });
        assert_eq!(
            layout.resource(0xff),
            Resource::prefix(a("2001:db8:0:ff00::"), 56)
        );

        let huge = Pools::new(&[pd("2001:db8::", 32, 64, &[]), pd("::", 0, 0, &[])], 0);
        assert!(huge.is_err(), "::/0 overlaps everything");
        let huge = Pools::new(&[pd("2001::", 16, 128, &[("2001::", 17)])], 0).unwrap();
        let layout = huge.layout(PoolId(0));
        assert_eq!(layout.size, 1 << 112);
        assert_eq!(layout.total, 1 << 111);
        let whole = Pools::new(&[pd("::", 0, 0, &[])], 0).unwrap();
        assert_eq!(whole.layout(PoolId(0)).size, 1);
        assert_eq!(
            whole.place(Resource::prefix(Ipv6Addr::UNSPECIFIED, 0)),
            Place::Dynamic {
                pool: PoolId(0),
                off: 0
            }
        );
    }

    #[test]
    fn blocks_partition_the_offsets() {
        let pools = Pools::new(&[na("::1", "::a", &[])], 0).unwrap();
        let layout = pools.layout(PoolId(0));
        for shards in 1..=12 {
            let mut next = 0;
            for s in 0..shards {
                let (lo, hi) = layout.block(s, shards);
                assert_eq!(lo, next);
                for off in lo..hi {
                    assert_eq!(layout.block_owner(off, shards), s, "{off} of {shards}");
                }
                next = hi;
            }
            assert_eq!(next, 10);
        }
        let pools = Pools::new(&[pd("2001::", 16, 127, &[])], 0).unwrap();
        let layout = pools.layout(PoolId(0));
        let (lo, hi) = layout.block(2, 3);
        assert_eq!(hi, 1 << 111);
        assert_eq!(layout.block_owner(lo, 3), 2);
        assert_eq!(layout.block_owner(lo - 1, 3), 1);
    }
}
