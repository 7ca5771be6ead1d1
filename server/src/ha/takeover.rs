//! Takeover: the journal (the partner's replicated records included) folded into the running
//! engines before a new leader serves, as start-up does into fresh ones.

use lessor_journal::stream::Source;

use crate::lease_record::LeaseRecord;
use crate::reload::Reloader;

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
        let mut restorer = engine.restorer(0);
        let mut restorer6 = engine6.as_deref().map(|e| (e, e.restorer(0)));
        source
            .snapshot_each(|rec| {
                out.records += 1;
                max_version = max_version.max(rec.version);
                let ok = if rec.is_v6() {
                    match (&mut restorer6, rec.to_v6_lease()) {
                        (Some((e, r)), Some(lease)) => {
                            let shard = e.owner(lease.client.duid());
                            r.add(shard, lease).is_ok()
                        }
                        _ => false,
                    }
                } else {
                    let shard =
                        crate::v4::steer_hash(&rec.chaddr_field()) as usize % engine.shards();
                    rec.to_lease_ref()
                        .is_some_and(|l| restorer.add_ref(shard, l).is_ok())
                };
                out.restored += u64::from(ok);
                Ok(())
            })
            .map_err(|e| format!("reading the journal to take over: {e}"))?;
        let refused = restorer.finish().refused;
        out.restored = out.restored.saturating_sub(refused);
        if let Some((_, r)) = restorer6 {
            out.restored = out.restored.saturating_sub(r.finish().refused);
        }
    }
    engine.advance_versions(max_version);
    if let Some(e) = &engine6 {
        e.advance_versions(max_version);
    }
    Ok(out)
}
