//! The validated pools of either family: each pool's layout by id, and an index of the
//! pools' ranges by first address for finding which pool holds an address.

/// Declares a family's pool id: an index in its configuration's pool list.
macro_rules! pool_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            pub(crate) fn index(self) -> usize {
                self.0 as usize
            }
        }

        impl $crate::pools::table::Id for $name {
            fn nth(i: usize) -> Option<Self> {
                u32::try_from(i).ok().map(Self)
            }
            fn index(self) -> usize {
                $name::index(self)
            }
        }

        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                self.0.fmt(f)
            }
        }
    };
}
pub(crate) use pool_id;

/// Where an address (or resource) sits in the configuration, for pool ids `I` and offsets `O`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Place<I, O> {
    /// A dynamic one: `off` is its offset in pool `pool`.
    Dynamic { pool: I, off: O },
    /// Never handed out dynamically: in pool `Some(_)` but excluded (or, in v6, not one of
    /// its resources), or outside every pool.
    Fixed { pool: Option<I> },
}

impl<I: Copy, O> Place<I, O> {
    /// The pool and offset of a dynamic place; `None` for a fixed one.
    pub(crate) fn dynamic(self) -> Option<(I, O)> {
        match self {
            Place::Dynamic { pool, off } => Some((pool, off)),
            Place::Fixed { .. } => None,
        }
    }

    pub(crate) fn pool(self) -> Option<I> {
        match self {
            Place::Dynamic { pool, .. } => Some(pool),
            Place::Fixed { pool } => pool,
        }
    }
}

/// A pool id, as [`Table`] sees it.
pub(crate) trait Id: Copy + Ord {
    /// The id of the `i`-th configured pool; `None` when `i` does not fit a `u32`.
    fn nth(i: usize) -> Option<Self>;
    /// Where the pool sits in its configuration's list.
    fn index(self) -> usize;
}

/// The validated pools: layouts `L` in configuration order, ranges of addresses `A`.
#[derive(Debug)]
pub(crate) struct Table<L, A, I> {
    layouts: Box<[L]>,
    /// `(first, last)` of each pool's range, in configuration order.
    ranges: Box<[(A, A)]>,
    /// `(first, last, id)` sorted by `first`; ranges do not overlap.
    sorted: Box<[(A, A, I)]>,
    /// Offsets excluded, or no longer excluded, since the layouts were built.
    pub(crate) overlay: crate::admin::Overlay,
}

impl<L, A: Ord + Copy, I: Id> Table<L, A, I> {
    /// Indexes `layouts` by their ranges `ranges` (`(first, last, id)`, any order).
    ///
    /// Refuses overlapping ranges with the ids of the first two found, lower id first.
    pub(crate) fn build(layouts: Vec<L>, mut ranges: Vec<(A, A, I)>) -> Result<Self, (I, I)> {
        let mut by_id: Vec<_> = ranges
            .iter()
            .map(|&(first, last, id)| (id, (first, last)))
            .collect();
        by_id.sort_unstable_by_key(|&(id, _)| id);
        ranges.sort_unstable();
        if let Some(pair) = crate::common::overlap(&ranges) {
            return Err(pair);
        }
        Ok(Self {
            layouts: layouts.into(),
            ranges: by_id.into_iter().map(|(_, range)| range).collect(),
            sorted: ranges.into(),
            overlay: Default::default(),
        })
    }

    pub(crate) fn len(&self) -> usize {
        self.layouts.len()
    }

    /// The pools with their ids, in configuration order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = (I, &L)> {
        // `build`'s callers made every index an id.
        (0..).map_while(I::nth).zip(self.layouts.iter())
    }

    pub(crate) fn get(&self, pool: I) -> Option<&L> {
        self.layouts.get(pool.index())
    }

    /// `(first, last)` of `pool`'s range; panics if `pool` is not one of the table's.
    pub(crate) fn range(&self, pool: I) -> (A, A) {
        self.ranges[pool.index()]
    }

    /// `pool`'s layout; panics if `pool` is not one of the table's.
    pub(crate) fn layout(&self, pool: I) -> &L {
        &self.layouts[pool.index()]
    }

    /// The pool whose range holds `addr`, with that range's first address.
    #[inline]
    pub(crate) fn find(&self, addr: A) -> Option<(I, A)> {
        let i = self.sorted.partition_point(|&(first, _, _)| first <= addr);
        let &(first, last, pool) = self.sorted.get(i.checked_sub(1)?)?;
        (addr <= last).then_some((pool, first))
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr};

    use crate::engine_core::Config;

    fn config<S>(pools: Vec<S>) -> Config<S> {
        Config {
            shards: 1,
            pools,
            offer_hold: 30,
            decline_probation: 60,
        }
    }

    #[test]
    fn both_families_refuse_a_range_that_ends_before_it_starts_naming_the_pool() {
        let v4 = |first, last| crate::v4::PoolSpec {
            first: Ipv4Addr::new(10, 0, 0, first),
            last: Ipv4Addr::new(10, 0, 0, last),
            excluded: vec![],
        };
        let err = crate::v4::Engine::new(config(vec![v4(1, 2), v4(9, 3)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pool 1: first address 10.0.0.9 is after last address 10.0.0.3"
        );
        let v6 = |first, last| crate::v6::PoolSpec::Na {
            first: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, first),
            last: Ipv6Addr::new(0x2001, 0xdb8, 0, 0, 0, 0, 0, last),
            excluded: vec![],
        };
        let err = crate::v6::Engine::new(config(vec![v6(9, 3)])).unwrap_err();
        assert_eq!(
            err.to_string(),
            "pool 0: first address 2001:db8::9 is after last address 2001:db8::3"
        );
    }
}
