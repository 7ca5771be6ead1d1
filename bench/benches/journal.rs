//! The lease journal on the real disk: append throughput per sync policy, group-commit latency
//! (append to durable) per batch size, and replay's fold and restore.
//!
//! Journals go to a directory under `/var/tmp` (or `$LESSOR_BENCH_DIR`), not `/tmp`, which
//! may be a tmpfs where `fdatasync` costs nothing.

mod common;

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::{NOW, slash8};
use criterion::{BatchSize, BenchmarkId, Criterion, Throughput, criterion_group, criterion_main};
use lessor_engine::LeaseState;
use lessor_engine::v4::{ClientKey, HwAddr, Lease};
use lessor_journal::{Journal, Options, SyncPolicy, Ticket};
use lessor_server::lease_record::{LeaseKey, LeaseRecord, LeaseRecordRef};
use lessor_server::replay::restore_into;

/// Whether this run measures (`cargo bench`) rather than runs every bench once to see that it
/// works (`cargo test --all-targets`, `cargo bench -- --test`): only then are fixtures big.
fn measuring() -> bool {
    let args: Vec<String> = std::env::args().collect();
    let has = |flag: &str| args.iter().any(|a| a == flag);
    has("--bench") && !has("--test") && !has("--list")
}

/// A fresh directory on the disk the server's state would be on.
fn disk_dir() -> tempfile::TempDir {
    let base = std::env::var_os("LESSOR_BENCH_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/var/tmp"));
    let base = if base.is_dir() {
        base
    } else {
        std::env::temp_dir()
    };
    tempfile::Builder::new()
        .prefix("lessor-bench-journal-")
        .tempdir_in(base)
        .expect("creating a journal directory")
}

/// The record a binding of client `n` makes: an 8-byte client key, a 6-byte MAC, and a host
/// name for three clients in four (about 85 bytes framed, as in a real journal).
fn record(n: u32) -> LeaseRecord {
    let [a, b, c, d] = n.to_be_bytes();
    let mac = vec![0x02, 0x00, a, b, c, d];
    let mut client = vec![0, 1];
    client.extend_from_slice(&mac);
    LeaseRecord {
        version: u64::from(n) + 1,
        event: 0,
        key: LeaseKey::V4(u32::from(Ipv4Addr::new(10, 0, 0, 1)) + n % 0x00ff_fffe),
        client,
        htype: 1,
        hw: mac,
        hostname: (!n.is_multiple_of(4)).then(|| format!("DESKTOP-{n:07X}")),
        state: 1,
        starts: NOW,
        expires: NOW + 3600,
    }
}

/// The engine's lease behind [`record`]`(n)`: what a worker journals, as a borrowed view.
fn lease(n: u32) -> Lease {
    let r = record(n);
    Lease {
        address: r.ipv4(),
        pool: None,
        client: ClientKey::from_bytes(&r.client),
        hw: HwAddr::new(r.htype, &r.hw).expect("a 6-byte MAC"),
        hostname: r.hostname.as_deref().map(Into::into),
        state: LeaseState::Bound,
        starts: r.starts,
        expires: r.expires,
        version: r.version,
    }
}

fn open(dir: &std::path::Path, sync: SyncPolicy) -> Journal<LeaseRecord> {
    let mut opts = Options::new(dir, 1);
    opts.sync = sync;
    // Compaction runs on its own thread and would compete for the cores: these benches are
    // about the writer.
    opts.compact_bytes = u64::MAX;
    Journal::open_dir(opts, |_| {})
        .expect("opening the journal")
        .0
}

/// Records per second through one lane, counted until the writer has written them (durable
/// for these policies: handed to the kernel). `none` and `interval_10ms` build each record
/// (owned, with its allocations); `none_view` appends a view of an engine lease, as a worker
/// does.
fn append(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_append");
    g.throughput(Throughput::Elements(1));
    for (name, sync) in [
        ("none", SyncPolicy::None),
        (
            "interval_10ms",
            SyncPolicy::Interval(Duration::from_millis(10)),
        ),
    ] {
        let dir = disk_dir();
        let journal = open(dir.path(), sync);
        let mut lane = journal.lane(0);
        let mut n = 0u32;
        g.bench_function(name, |b| {
            b.iter_custom(|iters| {
                let start = Instant::now();
                let mut last = Ticket(0);
                for _ in 0..iters {
                    n = n.wrapping_add(1);
                    last = lane.append(&record(n));
                }
                assert!(lane.wait_durable(last, Duration::from_secs(120)));
                start.elapsed()
            })
        });
        drop(lane);
        journal.shutdown().expect("closing the journal");
    }
    // What the workers do: append a view of the engine's lease (no record built, nothing
    // allocated); the writer only copies frames.
    let leases: Vec<Lease> = (0..4096).map(lease).collect();
    let dir = disk_dir();
    let journal = open(dir.path(), SyncPolicy::None);
    let mut lane = journal.lane(0);
    let mut n = 0usize;
    g.bench_function("none_view", |b| {
        b.iter_custom(|iters| {
            let start = Instant::now();
            let mut last = Ticket(0);
            for _ in 0..iters {
                n = n.wrapping_add(1);
                last = lane.append(&LeaseRecordRef::from_lease(&leases[n % leases.len()], 0));
            }
            assert!(lane.wait_durable(last, Duration::from_secs(120)));
            start.elapsed()
        })
    });
    drop(lane);
    journal.shutdown().expect("closing the journal");
    g.finish();
}

/// Group commit: the time from appending a batch of K records to the last one being
/// fdatasync'ed (what a binding reply waits for), per batch.
fn group_commit(c: &mut Criterion) {
    let mut g = c.benchmark_group("journal_group_commit");
    let dir = disk_dir();
    let journal = open(dir.path(), SyncPolicy::Group);
    let mut lane = journal.lane(0);
    let mut n = 0u32;
    for k in [1u32, 16, 256] {
        g.throughput(Throughput::Elements(u64::from(k)));
        g.bench_with_input(BenchmarkId::new("append_to_durable", k), &k, |b, &k| {
            b.iter_custom(|iters| {
                let mut total = Duration::ZERO;
                for _ in 0..iters {
                    let start = Instant::now();
                    let mut last = Ticket(0);
                    for _ in 0..k {
                        n = n.wrapping_add(1);
                        last = lane.append(&record(n));
                    }
                    assert!(lane.wait_durable(last, Duration::from_secs(10)));
                    total += start.elapsed();
                }
                total
            })
        });
    }
    g.finish();
    drop(lane);
    journal.shutdown().expect("closing the journal");
}

/// Replay's two halves: the fold of the files into the newest record per address
/// (`read_live`, the same fold `Journal::open` does), and putting those into the engine.
fn replay(c: &mut Criterion) {
    let n: u32 = if measuring() { 100_000 } else { 1_000 };
    let dir = disk_dir();
    lessor_journal::append_offline(dir.path(), (0..n).map(record)).expect("writing the fixture");
    let mut g = c.benchmark_group("journal_replay");
    g.sample_size(10);
    g.throughput(Throughput::Elements(u64::from(n)));
    g.bench_function(BenchmarkId::new("read_live", n), |b| {
        b.iter(|| {
            let (recs, report) =
                lessor_journal::read_live::<LeaseRecord>(dir.path()).expect("replay");
            assert_eq!(report.live, u64::from(n));
            black_box(recs)
        })
    });
    let (recs, _) = lessor_journal::read_live::<LeaseRecord>(dir.path()).expect("replay");
    g.bench_function(BenchmarkId::new("restore_into_engine", n), |b| {
        b.iter_batched(
            || slash8(2),
            |e| {
                for r in &recs {
                    assert!(restore_into(&e, r));
                }
                e
            },
            BatchSize::LargeInput,
        )
    });
    g.finish();
}

/// Replay of a journal whose last segment (preallocated, 64 MiB) holds a few thousand
/// records and a flipped bit in its third-last record, against the same segment undamaged:
/// what a start after such damage costs (the damaged record is dropped, the two after it
/// kept). See docs/PERFORMANCE.md, "Replay after tail damage".
fn replay_after_damage(c: &mut Criterion) {
    let n: u32 = 3000;
    let clean = disk_dir();
    let mut o = Options::new(clean.path(), 1);
    o.segment_bytes = 64 << 20;
    let (journal, _) = Journal::<LeaseRecord>::open_dir(o, |_| {}).expect("opening");
    let mut lane = journal.lane(0);
    for i in 0..n {
        lane.append(&record(i));
    }
    drop(lane);
    journal.shutdown().expect("closing the journal");
    let seg = clean.path().join(format!("{:016}.log", 1));
    let bytes = std::fs::read(&seg).expect("reading the segment");
    // The frames' offsets, to damage the third-last.
    let mut at = 32;
    let mut frames = Vec::new();
    while at + 8 <= bytes.len() {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().expect("4 bytes")) as usize;
        if len == 0 {
            break;
        }
        frames.push(at);
        at += 8 + len;
    }
    assert_eq!(frames.len(), n as usize);
    let damaged = disk_dir();
    let mut bad = bytes.clone();
    bad[frames[frames.len() - 3] + 12] ^= 0x04;
    std::fs::write(damaged.path().join(format!("{:016}.log", 1)), &bad).expect("writing");

    let mut g = c.benchmark_group("journal_replay_64mib_segment");
    g.sample_size(10);
    for (name, dir, live) in [
        ("clean", &clean, n),
        ("third_last_record_damaged", &damaged, n - 1),
    ] {
        g.bench_function(name, |b| {
            b.iter(|| {
                let (recs, report) =
                    lessor_journal::read_live::<LeaseRecord>(dir.path()).expect("replay");
                assert_eq!(report.live, u64::from(live));
                black_box(recs)
            })
        });
    }
    g.finish();
}

criterion_group! {
    name = journal_benches;
    config = Criterion::default()
        .warm_up_time(Duration::from_secs(1))
        .measurement_time(Duration::from_secs(3));
    targets = append, group_commit, replay, replay_after_damage
}
criterion_main!(journal_benches);
