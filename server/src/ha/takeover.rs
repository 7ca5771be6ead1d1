//! Takeover: the journal (the partner's replicated records included) folded into the running
//! engines before a new leader serves, as start-up does into fresh ones.

use lessor_journal::stream::Source;

use crate::lease_record::LeaseRecord;
use crate::reload::Reloader;
use crate::replay::Restorers;

/// What a takeover replay did.
#[derive(Clone, Copy, Debug, Default)]
pub(super) struct Replayed {
    /// Live records read from the journal.
    pub(super) records: u64,
    /// Records put in place (the others were held already, or as new).
    pub(super) restored: u64,
}

/// Reads the journal's live records (newest per key) and restores each into the engine of
/// its family, on the shard its client steers to; then raises the engines' versions above
/// every record, so that this server's next change outranks the partner's last.
pub(super) fn replay(source: &Source<LeaseRecord>, reload: &Reloader) -> Result<Replayed, String> {
    let (engine, engine6) = reload.engines();
    let mut out = Replayed::default();
    let mut max_version = 0;
    {
        let mut restorers = Restorers::new(&engine, engine6.as_deref(), 0);
        source
            .snapshot_each(|rec| {
                out.records += 1;
                max_version = max_version.max(rec.version);
                out.restored += u64::from(restorers.add(&rec));
                Ok(())
            })
            .map_err(|e| format!("reading the journal to take over: {e}"))?;
        out.restored = out.restored.saturating_sub(restorers.finish());
    }
    engine.advance_versions(max_version);
    if let Some(e) = &engine6 {
        e.advance_versions(max_version);
    }
    Ok(out)
}
