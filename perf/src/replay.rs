//! `replay`: the server's startup replay, timed and weighed; `replay-breakdown`: the same work
//! split into its phases.

use std::collections::HashMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use lessor_engine::v4::Engine;
use lessor_journal::Record;
use lessor_server::config::Config;
use lessor_server::lease_record::{LeaseKey, LeaseRecord};
use lessor_server::now;
use lessor_server::replay::restore_into;
use lessor_server::state_dir::{journal_dir, lock_state_dir};
use serde::Serialize;

use crate::mem::{self, Rss};

/// Where the server's configuration and journal are.
#[derive(Debug, clap::Args)]
pub(crate) struct Target {
    /// The server's configuration file (its subnets must cover the journal's addresses).
    #[arg(long)]
    config: PathBuf,
    /// Overrides the config's state_dir.
    #[arg(long)]
    state_dir: Option<PathBuf>,
    /// Engine shards (worker threads); default: the config's, else one per core, as the server.
    #[arg(long)]
    workers: Option<usize>,
}

impl Target {
    fn load(&self) -> anyhow::Result<(Config, usize)> {
        let mut config = Config::from_file(&self.config).map_err(|e| anyhow!(e.report()))?;
        if let Some(d) = &self.state_dir {
            config.state_dir = d.clone();
        }
        let workers = self
            .workers
            .or(config.workers)
            .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
        anyhow::ensure!(workers >= 1, "--workers must be at least 1");
        Ok((config, workers))
    }
}

/// The engine the server builds for `config`: no interfaces (they only pick subnets for
/// directly connected clients, which replay does not need).
fn engine_for(config: &Config, workers: usize) -> anyhow::Result<Engine> {
    let ctx = lessor_server::v4::Context::new(config, &[]);
    Engine::new(ctx.engine_config(workers)).context("building the lease engine")
}

/// How long the allocator gets to hand freed memory back before RSS is read again.
const SETTLE: Duration = Duration::from_secs(1);

fn per_lease(bytes: i128, live: u64) -> f64 {
    if live == 0 {
        0.0
    } else {
        bytes as f64 / live as f64
    }
}

#[derive(Debug, Serialize)]
struct ReplayOut {
    journal: PathBuf,
    workers: usize,
    records_read: u64,
    live: u64,
    skipped: u64,
    segments: usize,
    snapshot: bool,
    max_version: u64,
    /// `Engine::new` from the config (before the journal is opened).
    engine_new_seconds: f64,
    /// `ReplayReport::elapsed`: what the server prints as "replayed ... in Xs".
    replay_report_seconds: f64,
    /// Wall clock of `Journal::open_dir` + `advance_versions`.
    replay_wall_seconds: f64,
    /// The journal's own replay time: reading, checking and folding the files, and handing
    /// every survivor to the engine's bulk restorer (which only appends it).
    fold_seconds: f64,
    /// The rest until the journal is open: the restorer building the engine's tables
    /// (`finish`) and raising versions.
    restore_seconds: f64,
    /// RSS after `Engine::new`, before the journal is opened.
    rss_before: u64,
    /// RSS right after replay.
    rss_after: u64,
    /// RSS after another second (the allocator returns freed pages lazily).
    rss_after_settled: u64,
    /// Peak RSS of the process (the fold's map and the engine at once).
    rss_peak: u64,
    /// `(rss_after_settled - rss_before) / live`.
    bytes_per_live_lease: f64,
    /// `(rss_peak - rss_before) / live`.
    peak_bytes_per_live_lease: f64,
    shutdown_seconds: f64,
}

/// Replays like `Server::start` and prints a JSON report on stdout.
pub(crate) fn replay(t: &Target) -> anyhow::Result<()> {
    let (config, workers) = t.load()?;
    let started = Instant::now();
    let engine = engine_for(&config, workers)?;
    let engine_new = started.elapsed();
    let before = mem::rss()?;

    let lock = lock_state_dir(&config.state_dir)?;
    let mut skipped = 0u64;
    let opened = Instant::now();
    // Exactly what Server::start does (bulk restore).
    let (journal, report, skipped_bulk) =
        lessor_server::replay::replay_journal(&config, &engine, None, workers)?;
    skipped += skipped_bulk;
    let open_end = Instant::now();
    let wall = opened.elapsed();
    let after = mem::rss()?;
    std::thread::sleep(SETTLE);
    let settled = mem::rss()?;

    // The journal's own time covers reading, checking and the restorer's cheap `add`s; what
    // follows it until open_end is the restorer's `finish` (the engine's tables) and versions.
    let first = (opened + report.elapsed).min(open_end);
    let shut = Instant::now();
    journal.shutdown().context("closing the journal")?;
    let shutdown = shut.elapsed();
    drop(lock);

    let out = ReplayOut {
        journal: journal_dir(&config.state_dir),
        workers,
        records_read: report.records_read,
        live: report.live,
        skipped,
        segments: report.segments,
        snapshot: report.snapshot.is_some(),
        max_version: report.max_version,
        engine_new_seconds: engine_new.as_secs_f64(),
        replay_report_seconds: report.elapsed.as_secs_f64(),
        replay_wall_seconds: wall.as_secs_f64(),
        fold_seconds: (first - opened).as_secs_f64(),
        restore_seconds: (open_end - first).as_secs_f64(),
        rss_before: before.now,
        rss_after: after.now,
        rss_after_settled: settled.now,
        rss_peak: settled.peak,
        bytes_per_live_lease: per_lease(
            i128::from(settled.now) - i128::from(before.now),
            report.live,
        ),
        peak_bytes_per_live_lease: per_lease(
            i128::from(settled.peak) - i128::from(before.now),
            report.live,
        ),
        shutdown_seconds: shutdown.as_secs_f64(),
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}

// ---- replay-breakdown -------------------------------------------------------------------

/// The journal's on-disk constants (see the `lessor-journal` crate docs).
const SEGMENT_HEADER_LEN: usize = 32;
const SNAPSHOT_HEADER_LEN: usize = 24;
const FOOTER_LEN: usize = 24;
const FRAME_HEADER_LEN: usize = 8;

/// The journal's payload encoding.
fn codec() -> impl bincode::config::Config {
    bincode::config::standard()
        .with_fixed_int_encoding()
        .with_little_endian()
}

/// The files replay reads, in order: the newest snapshot, then the segments after it.
fn replay_files(dir: &Path) -> anyhow::Result<Vec<(PathBuf, bool)>> {
    let mut snaps = Vec::new();
    let mut segs = Vec::new();
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let name = e?.file_name().to_string_lossy().into_owned();
        if let Some(n) = name
            .strip_prefix("snapshot-")
            .and_then(|n| n.strip_suffix(".snap"))
            .and_then(|n| n.parse::<u64>().ok())
        {
            snaps.push(n);
        } else if let Some(n) = name
            .strip_suffix(".log")
            .and_then(|n| n.parse::<u64>().ok())
        {
            segs.push(n);
        }
    }
    let cut = snaps.iter().copied().max();
    segs.sort_unstable();
    let mut files = Vec::new();
    if let Some(cut) = cut {
        files.push((dir.join(format!("snapshot-{cut:016}.snap")), true));
    }
    for n in segs.into_iter().filter(|&n| n > cut.unwrap_or(0)) {
        files.push((dir.join(format!("{n:016}.log")), false));
    }
    Ok(files)
}

/// Every checked payload of a file, as the journal walks them (up to the first bad frame).
fn frames(bytes: &[u8], snapshot: bool) -> impl Iterator<Item = &[u8]> {
    let (mut at, end) = if snapshot {
        (SNAPSHOT_HEADER_LEN, bytes.len().saturating_sub(FOOTER_LEN))
    } else {
        (SEGMENT_HEADER_LEN, bytes.len())
    };
    std::iter::from_fn(move || {
        if at + FRAME_HEADER_LEN > end {
            return None;
        }
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().ok()?) as usize;
        let crc = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?);
        let p = at + FRAME_HEADER_LEN;
        if len == 0 || p + len > end {
            return None;
        }
        let payload = &bytes[p..p + len];
        if crc32c::crc32c(payload) != crc {
            return None;
        }
        at = p + len;
        Some(payload)
    })
}

fn decode(payload: &[u8]) -> anyhow::Result<LeaseRecord> {
    let (r, used) = bincode::decode_from_slice::<LeaseRecord, _>(payload, codec())?;
    if used != payload.len() {
        bail!("payload has {} bytes over", payload.len() - used);
    }
    Ok(r)
}

/// The key and version of a payload without decoding it: with the fixed-int encoding,
/// `LeaseRecord` starts with `version: u64`, `event: u8`, `key: LeaseKey` (u32 variant, u32).
fn peek(payload: &[u8]) -> Option<(u32, u64)> {
    let version = u64::from_le_bytes(payload.get(0..8)?.try_into().ok()?);
    let addr = u32::from_le_bytes(payload.get(13..17)?.try_into().ok()?);
    Some((addr, version))
}

/// A multiply-shift hasher for integer keys (what `rustc-hash` does), to show what SipHash
/// costs the fold.
#[derive(Default, Clone, Copy, Debug)]
struct FastHash(u64);

impl std::hash::Hasher for FastHash {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.write_u64(u64::from(b));
        }
    }
    fn write_u32(&mut self, n: u32) {
        self.write_u64(u64::from(n));
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0.rotate_left(5) ^ n).wrapping_mul(0xf135_7aea_2e62_a9c5);
    }
}

type FastState = std::hash::BuildHasherDefault<FastHash>;

#[derive(Debug, Default, Serialize)]
struct Phase {
    name: &'static str,
    seconds: f64,
    /// RSS after the phase minus before it.
    rss_delta: i64,
    note: &'static str,
}

#[derive(Debug, Default, Serialize)]
struct BreakdownOut {
    journal: PathBuf,
    files: usize,
    bytes: u64,
    records: u64,
    live: u64,
    workers: usize,
    phases: Vec<Phase>,
    /// Engine RSS per live lease (the restore phase's RSS delta / live).
    engine_bytes_per_live_lease: f64,
    /// The fold map's RSS per record (the fold phase's RSS delta / records).
    fold_bytes_per_record: f64,
    rss_peak: u64,
}

struct Clock {
    phases: Vec<Phase>,
    at: Instant,
    rss: Rss,
}

impl Clock {
    fn new() -> anyhow::Result<Self> {
        Ok(Clock {
            phases: Vec::new(),
            at: Instant::now(),
            rss: mem::rss()?,
        })
    }

    fn start(&mut self) -> anyhow::Result<()> {
        self.rss = mem::rss()?;
        self.at = Instant::now();
        Ok(())
    }

    fn stop(&mut self, name: &'static str, note: &'static str) -> anyhow::Result<&Phase> {
        let seconds = self.at.elapsed().as_secs_f64();
        let now = mem::rss()?;
        self.phases.push(Phase {
            name,
            seconds,
            rss_delta: now.now as i64 - self.rss.now as i64,
            note,
        });
        eprintln!("{name}: {seconds:.3}s");
        Ok(self.phases.last().expect("just pushed"))
    }
}

/// Does replay's work phase by phase, in one process, and prints a JSON report.
pub(crate) fn breakdown(t: &Target) -> anyhow::Result<()> {
    let (config, workers) = t.load()?;
    let dir = journal_dir(&config.state_dir);
    let _lock = lock_state_dir(&config.state_dir)?;
    let files = replay_files(&dir)?;
    let mut c = Clock::new()?;

    c.start()?;
    let mut bufs = Vec::with_capacity(files.len());
    for (path, snap) in &files {
        let bytes = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
        bufs.push((bytes, *snap));
    }
    c.stop("read", "std::fs::read of every file (page cache warm)")?;
    let bytes: u64 = bufs.iter().map(|(b, _)| b.len() as u64).sum();

    c.start()?;
    let mut records = 0u64;
    let mut sum = 0usize;
    for (b, snap) in &bufs {
        for p in frames(b, *snap) {
            records += 1;
            sum += p.len();
        }
    }
    black_box(sum);
    c.stop("frames_crc", "walk frames, crc32c each payload, once")?;

    c.start()?;
    for (b, snap) in &bufs {
        for p in frames(b, *snap) {
            black_box(decode(p)?);
        }
    }
    c.stop(
        "frames_crc_decode",
        "+ bincode decode into LeaseRecord (3 allocations) and drop",
    )?;

    c.start()?;
    let mut lazy: HashMap<u32, (u64, u32, u32), FastState> =
        HashMap::with_capacity_and_hasher(records as usize, FastState::default());
    for (fi, (b, snap)) in bufs.iter().enumerate() {
        let base = b.as_ptr() as usize;
        for p in frames(b, *snap) {
            let (addr, v) = peek(p).context("short payload")?;
            let off = (p.as_ptr() as usize - base) as u32;
            let e = lazy.entry(addr).or_insert((0, 0, 0));
            if v >= e.0 {
                *e = (v, fi as u32, off);
            }
        }
    }
    let lazy_live = lazy.len();
    c.stop(
        "lazy_fold",
        "alternative: key+version peeked from the bytes into a pre-sized u32 map, no decode",
    )?;
    drop(lazy);

    c.start()?;
    let mut fast: HashMap<LeaseKey, (LeaseRecord, u64), FastState> =
        HashMap::with_capacity_and_hasher(records as usize, FastState::default());
    for (fi, (b, snap)) in bufs.iter().enumerate() {
        for p in frames(b, *snap) {
            let rec = decode(p)?;
            let v = rec.version();
            match fast.entry(rec.key()) {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if v > o.get().0.version() {
                        o.insert((rec, fi as u64));
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((rec, fi as u64));
                }
            }
        }
    }
    c.stop(
        "fold_presized_fasthash",
        "alternative: the same fold into a map sized for every record, with a multiply-shift hash",
    )?;
    drop(fast);

    c.start()?;
    let mut map: HashMap<LeaseKey, (LeaseRecord, u64)> = HashMap::new();
    for (fi, (b, snap)) in bufs.iter().enumerate() {
        for p in frames(b, *snap) {
            let rec = decode(p)?;
            let v = rec.version();
            match map.entry(rec.key()) {
                std::collections::hash_map::Entry::Occupied(mut o) => {
                    if v > o.get().0.version() {
                        o.insert((rec, fi as u64));
                    }
                }
                std::collections::hash_map::Entry::Vacant(e) => {
                    e.insert((rec, fi as u64));
                }
            }
        }
    }
    let fold = c.stop(
        "fold",
        "+ insert into HashMap<LeaseKey, (LeaseRecord, u64)> (SipHash, grown from empty), as the journal",
    )?;
    let fold_rss = fold.rss_delta;
    drop(bufs);

    c.start()?;
    let keep_now = now();
    let live: Vec<LeaseRecord> = map
        .into_values()
        .filter(|(r, _)| r.keep(keep_now))
        .map(|(r, _)| r)
        .collect();
    c.stop(
        "survivors",
        "map.into_values() filtered by keep(now), collected (file buffers freed before)",
    )?;
    let live_n = live.len() as u64;
    anyhow::ensure!(
        live.len() == lazy_live,
        "lazy fold found {lazy_live} keys, the fold {}",
        live.len()
    );

    c.start()?;
    for r in &live {
        black_box(r.to_lease());
    }
    c.stop(
        "to_lease",
        "LeaseRecord::to_lease (2 allocations) and drop, alone",
    )?;

    let engine = engine_for(&config, workers)?;
    c.start()?;
    let mut skipped = 0u64;
    for r in &live {
        if !restore_into(&engine, r) {
            skipped += 1;
        }
    }
    let restore = c.stop(
        "restore",
        "restore_into(engine, rec) for every survivor: to_lease + steer + Engine::restore",
    )?;
    let engine_rss = restore.rss_delta;
    if skipped > 0 {
        eprintln!("warning: {skipped} records not restored");
    }
    drop(engine);

    // The survivors come out of the fold's hash map in hash order, i.e. random address order.
    c.start()?;
    let mut live = live;
    live.sort_unstable_by_key(|r| r.key);
    c.stop(
        "sort_by_address",
        "alternative: sort the survivors by address",
    )?;
    let engine = engine_for(&config, workers)?;
    c.start()?;
    for r in &live {
        restore_into(&engine, r);
    }
    c.stop(
        "restore_sorted",
        "alternative: the same restore in address order (RSS delta understated: memory reused)",
    )?;
    drop(engine);
    drop(live);

    c.start()?;
    let (recs, rep) = lessor_journal::read_live::<LeaseRecord>(&dir)?;
    c.stop(
        "read_live",
        "lessor_journal::read_live: the journal's own fold, for comparison with read..survivors",
    )?;
    anyhow::ensure!(rep.live == live_n, "read_live disagrees on live records");
    drop(recs);

    let out = BreakdownOut {
        journal: dir,
        files: files.len(),
        bytes,
        records,
        live: live_n,
        workers,
        engine_bytes_per_live_lease: per_lease(i128::from(engine_rss), live_n),
        fold_bytes_per_record: per_lease(i128::from(fold_rss), records),
        phases: c.phases,
        rss_peak: mem::rss()?.peak,
    };
    println!("{}", serde_json::to_string_pretty(&out)?);
    Ok(())
}
