//! A fixed-bucket histogram that one thread records into and any thread reads, without a lock.

use std::sync::atomic::{AtomicU64, Ordering};

/// Counts of observations by upper bound, with their sum: what a Prometheus histogram exports.
///
/// Recording is two relaxed atomic adds and a short scan of the bounds: no allocation, no
/// lock. Bounds are fixed when it is made, in the unit of the values (nanoseconds, records).
#[derive(Debug)]
pub struct Histogram {
    bounds: &'static [u64],
    /// One count per bound, then one for values above the last bound.
    counts: Box<[AtomicU64]>,
    sum: AtomicU64,
}

/// A histogram's counts at one moment (relaxed: not one instant's), cumulative as Prometheus
/// exports them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HistogramSnapshot {
    /// `(upper bound, observations at or below it)`, bounds rising.
    pub buckets: Vec<(u64, u64)>,
    /// Every observation (the `+Inf` bucket).
    pub count: u64,
    /// The sum of the observed values.
    pub sum: u64,
}

impl Histogram {
    /// A histogram with these upper bounds, rising.
    pub fn new(bounds: &'static [u64]) -> Histogram {
        debug_assert!(bounds.windows(2).all(|w| w[0] < w[1]), "bounds must rise");
        Histogram {
            bounds,
            counts: (0..=bounds.len()).map(|_| AtomicU64::new(0)).collect(),
            sum: AtomicU64::new(0),
        }
    }

    /// Counts one observation of `value`.
    pub fn record(&self, value: u64) {
        self.record_n(value, 1);
    }

    /// Counts `n` observations of `value` at once (a batch of requests that took as long).
    pub fn record_n(&self, value: u64, n: u64) {
        let i = self.bounds.partition_point(|&b| b < value);
        self.counts[i].fetch_add(n, Ordering::Relaxed);
        self.sum
            .fetch_add(value.saturating_mul(n), Ordering::Relaxed);
    }

    /// The counts so far.
    pub fn snapshot(&self) -> HistogramSnapshot {
        let mut running = 0;
        let buckets = self
            .bounds
            .iter()
            .zip(self.counts.iter())
            .map(|(&b, c)| {
                running += c.load(Ordering::Relaxed);
                (b, running)
            })
            .collect();
        let count = running + self.counts[self.bounds.len()].load(Ordering::Relaxed);
        HistogramSnapshot {
            buckets,
            count,
            sum: self.sum.load(Ordering::Relaxed),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Histogram;

    #[test]
    fn values_land_in_the_first_bucket_that_holds_them() {
        static BOUNDS: [u64; 3] = [10, 100, 1000];
        let h = Histogram::new(&BOUNDS);
        for v in [0, 10, 11, 100, 5000] {
            h.record(v);
        }
        let s = h.snapshot();
        assert_eq!(s.buckets, vec![(10, 2), (100, 4), (1000, 4)]);
        assert_eq!((s.count, s.sum), (5, 5121));
    }
}
