//! Start-up replay: the journal's live records back into the (fresh) engines.

use lessor_journal::{Journal, ReplayReport};

use crate::config::Config;
use crate::error::{Error, Result};
use crate::lease_record::LeaseRecord;
use crate::state_dir::{journal_dir, journal_options};
use crate::v4;

/// Both families' bulk restorers: each record goes to its family's engine, on the shard its
/// client steers to. DHCPv6 records without a DHCPv6 engine (v6 not configured) are kept in
/// the journal but not served.
pub(crate) struct Restorers<'e> {
    engine: &'e lessor_engine::v4::Engine,
    v4: lessor_engine::v4::Restorer<'e>,
    v6: Option<(
        &'e lessor_engine::v6::Engine,
        lessor_engine::v6::Restorer<'e>,
    )>,
}

impl<'e> Restorers<'e> {
    /// Restorers of `engine` and `engine6`, room reserved for `expected` DHCPv4 records.
    pub(crate) fn new(
        engine: &'e lessor_engine::v4::Engine,
        engine6: Option<&'e lessor_engine::v6::Engine>,
        expected: usize,
    ) -> Self {
        Restorers {
            engine,
            v4: engine.restorer(expected),
            v6: engine6.map(|e| (e, e.restorer(0))),
        }
    }

    /// Takes `rec`; false if it cannot be restored (malformed, or DHCPv6 with no engine).
    pub(crate) fn add(&mut self, rec: &LeaseRecord) -> bool {
        if rec.is_v6() {
            return match (&mut self.v6, rec.to_v6_lease()) {
                (Some((e, r)), Some(lease)) => {
                    let shard = e.owner(lease.client.duid());
                    r.add(shard, lease).is_ok()
                }
                _ => false,
            };
        }
        let shard = shard_of(self.engine, rec);
        rec.to_lease_ref()
            .is_some_and(|l| self.v4.add_ref(shard, l).is_ok())
    }

    /// Puts every record taken in place; returns how many were refused (an older record of
    /// an address another record also names).
    pub(crate) fn finish(self) -> u64 {
        self.v4.finish().refused + self.v6.map_or(0, |(_, r)| r.finish().refused)
    }
}

/// Puts one replayed lease back into the engine, on the shard its client steers to, one at a
/// time. False if the record could not be restored. Startup uses [`replay_journal`] (bulk);
/// this stays for tools that compare the two.
pub fn restore_into(engine: &lessor_engine::v4::Engine, rec: &LeaseRecord) -> bool {
    let Some(lease) = rec.to_lease() else {
        return false;
    };
    engine.restore(shard_of(engine, rec), lease).is_ok()
}

fn shard_of(engine: &lessor_engine::v4::Engine, rec: &LeaseRecord) -> usize {
    v4::steer_hash(&rec.chaddr_field()) as usize % engine.shards()
}

/// Opens the journal and replays it into the (fresh) engine in bulk, then raises the engine's
/// versions above everything the journal held. Returns the journal ready for appending, the
/// replay report and the number of records that could not be restored.
pub fn replay_journal(
    config: &Config,
    engine: &lessor_engine::v4::Engine,
    engine6: Option<&lessor_engine::v6::Engine>,
    lanes: usize,
) -> Result<(Journal<LeaseRecord>, ReplayReport, u64)> {
    let dir = journal_dir(&config.state_dir);
    // An upper bound of the live records (snapshot footer plus segment records), so the
    // engine's tables are sized once; 0 for a new journal.
    let expected = lessor_journal::stats_offline(&dir).map_or(0, |s| {
        s.snapshot.map_or(0, |x| x.records) + s.segment_records
    });
    let expected = usize::try_from(expected).unwrap_or(0);
    let mut restorers = Restorers::new(engine, engine6, expected);
    let mut skipped = 0u64;
    let (journal, replay) =
        Journal::open_dir(journal_options(config, lanes), |rec: LeaseRecord| {
            skipped += u64::from(!restorers.add(&rec));
        })
        .map_err(|source| Error::Replay {
            dir: dir.clone(),
            state_dir: config.state_dir.clone(),
            source,
        })?;
    skipped += restorers.finish();
    engine.advance_versions(replay.max_version);
    if let Some(e) = engine6 {
        e.advance_versions(replay.max_version);
    }
    Ok((journal, replay, skipped))
}
