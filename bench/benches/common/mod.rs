//! Bench shapes shared by the DHCPv4 (`engine`) and DHCPv6 (`v6_engine`) engine benches: the
//! measurement is the same for both families, each bench supplies its engine and its binding.

use std::hint::black_box;

use criterion::measurement::WallTime;
use criterion::{BatchSize, BenchmarkGroup};

/// The benches' clock: every lease starts at this time.
pub(crate) const NOW: u64 = 1_800_000_000;

/// Benchmarks `name`: `bind_new(n, events)` for ever new clients n = 1, 2, ... on one engine,
/// with `events` cleared before each.
pub(crate) fn new_clients<T, R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    name: &str,
    events: &mut Vec<T>,
    mut bind_new: impl FnMut(u32, &mut Vec<T>) -> R,
) {
    let mut n = 0u32;
    g.bench_function(name, |b| {
        b.iter(|| {
            n += 1;
            events.clear();
            black_box(bind_new(n, events))
        })
    });
}

/// Benchmarks `reclaim_10k_expired`: one reclaim pass over a fresh engine (from `fresh`) in
/// which `bind(engine, i, events)` bound clients 0..10 000 with one-hour leases, at
/// `NOW + 4000`, when all have expired. `reclaim(engine, now, max, events)` is the engine's;
/// it takes the engine, so dropping it stays in the measurement.
pub(crate) fn reclaim_10k_expired<E, T, R>(
    g: &mut BenchmarkGroup<'_, WallTime>,
    fresh: impl Fn() -> E,
    bind: impl Fn(&E, u32, &mut Vec<T>),
    reclaim: impl Fn(E, u64, usize, &mut Vec<T>) -> R,
) {
    g.bench_function("reclaim_10k_expired", |b| {
        b.iter_batched(
            || {
                let e = fresh();
                let mut ev = Vec::new();
                for i in 0..10_000 {
                    bind(&e, i, &mut ev);
                }
                e
            },
            |e| {
                let mut ev = Vec::with_capacity(10_000);
                black_box(reclaim(e, NOW + 4000, 10_000, &mut ev))
            },
            BatchSize::LargeInput,
        )
    });
}
