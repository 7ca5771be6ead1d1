//! `journal-gen`: streams synthetic bound leases into a state directory's journal.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use clap::ValueEnum;
use lessor_journal::{Journal, Options, SyncPolicy, Ticket};
use lessor_server::lease_record::LeaseRecord;
use lessor_server::now;
use lessor_server::state_dir::{journal_dir, lock_state_dir};
use serde::Serialize;

use crate::synth::{Subnet, Synth};

/// Records the writer may lag behind the generator: bounds the memory in the lane's channel.
const WINDOW: u64 = 256 * 1024;
/// How often the generator checks the lag.
const CHECK_EVERY: u64 = 16 * 1024;

/// What the journal directory looks like afterwards.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "kebab-case")]
pub(crate) enum Layout {
    /// Everything folded into one snapshot (`lessor journal compact`): a long-running
    /// server's journal right after a compaction. Deterministic.
    Snapshot,
    /// Only 64 MiB segments, never compacted.
    Segments,
    /// The journal's own background compaction, as a running server would do it: a snapshot
    /// plus the segments written since (depends on timing).
    Natural,
}

/// `journal-gen` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct GenArgs {
    /// The state directory (the journal goes to STATE_DIR/journal, which must not exist yet).
    #[arg(long)]
    state_dir: PathBuf,
    /// How many bound leases (one per client and address).
    #[arg(long)]
    leases: u64,
    /// Spread the addresses over the whole subnet in a scrambled order, instead of handing
    /// them out from the first one up.
    #[arg(long)]
    clients_shuffled: bool,
    /// The subnet the addresses come from (its pool must cover it when replaying).
    #[arg(long, default_value = "10.0.0.0/8")]
    subnet: Subnet,
    /// Then this many renewals (a fraction of `--leases`) of distinct leases, each superseding
    /// a binding: replay reads more records than it keeps.
    #[arg(long, default_value_t = 0.0)]
    renewals: f64,
    /// Lease time, seconds.
    #[arg(long, default_value_t = 86_400)]
    lease_time: u64,
    /// Directory layout.
    #[arg(long, value_enum, default_value_t = Layout::Snapshot)]
    layout: Layout,
}

#[derive(Debug, Serialize)]
struct GenReport {
    journal: PathBuf,
    leases: u64,
    renewals: u64,
    records: u64,
    layout: Layout,
    clients_shuffled: bool,
    write_seconds: f64,
    compact_seconds: f64,
    records_per_second: f64,
    files: u64,
    bytes: u64,
    bytes_per_record: f64,
}

fn dir_size(dir: &Path) -> anyhow::Result<(u64, u64)> {
    let mut files = 0;
    let mut bytes = 0;
    for e in std::fs::read_dir(dir).with_context(|| format!("listing {}", dir.display()))? {
        let e = e?;
        let name = e.file_name();
        let name = name.to_string_lossy();
        if name.ends_with(".log") || name.ends_with(".snap") {
            files += 1;
            bytes += e.metadata()?.len();
        }
    }
    Ok((files, bytes))
}

/// Writes the journal and prints a JSON report on stdout.
pub(crate) fn run(a: &GenArgs) -> anyhow::Result<()> {
    ensure!(a.leases > 0, "--leases must be at least 1");
    ensure!(
        (0.0..=1.0).contains(&a.renewals),
        "--renewals is a fraction of --leases, 0 to 1"
    );
    let _lock = lock_state_dir(&a.state_dir)?;
    let dir = journal_dir(&a.state_dir);
    if dir.exists() && std::fs::read_dir(&dir)?.next().is_some() {
        bail!("{} already holds a journal; remove it first", dir.display());
    }
    let synth = Synth::new(a.subnet, a.leases, a.clients_shuffled, now(), a.lease_time)?;
    let renewals = (a.renewals * a.leases as f64).round() as u64;

    // The writer with the cheapest durability: the bytes on disk are the same whatever the
    // policy; only the syncs differ. (`append_offline` would hold every record in memory:
    // it collects its iterator first, and calling it per chunk would replay the journal each
    // time.)
    let mut opts = Options::new(&dir, 1);
    opts.sync = SyncPolicy::None;
    if a.layout != Layout::Natural {
        opts.compact_bytes = u64::MAX;
    }
    let started = Instant::now();
    let (journal, _) = Journal::<LeaseRecord>::open_dir(opts, |_| {})?;
    let mut lane = journal.lane(0);
    let records = (0..a.leases)
        .map(|i| synth.bound(i))
        .chain((0..renewals).map(|k| synth.renewal(k)));
    for rec in records {
        let t = lane.append(&rec);
        if t.0.is_multiple_of(CHECK_EVERY)
            && t.0 > WINDOW
            && !lane.wait_durable(Ticket(t.0 - WINDOW), Duration::from_secs(120))
        {
            bail!("the journal writer stopped: {:?}", journal.health());
        }
    }
    ensure!(
        lane.wait_durable(lane.last_ticket(), Duration::from_secs(600)),
        "the journal writer stopped: {:?}",
        journal.health()
    );
    drop(lane);
    journal.shutdown().context("closing the journal")?;
    let write_seconds = started.elapsed().as_secs_f64();

    let compacted = Instant::now();
    if a.layout == Layout::Snapshot {
        lessor_journal::compact_offline::<LeaseRecord>(&dir).context("compacting")?;
    }
    let compact_seconds = compacted.elapsed().as_secs_f64();
    let (files, bytes) = dir_size(&dir)?;
    let records = a.leases + renewals;
    let report = GenReport {
        journal: dir,
        leases: a.leases,
        renewals,
        records,
        layout: a.layout,
        clients_shuffled: a.clients_shuffled,
        write_seconds,
        compact_seconds,
        records_per_second: records as f64 / write_seconds,
        files,
        bytes,
        bytes_per_record: bytes as f64 / records as f64,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
