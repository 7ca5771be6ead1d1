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

/// Bits of a version below the term (docs/HA.md, "Terms"): a term's changes count from
/// `term << TERM_SHIFT`.
const TERM_SHIFT: u32 = 44;

/// The lowest version of the cluster's `term`th term (terms past 2^20 share the last).
pub(super) fn term_floor(term: u64) -> u64 {
    term.min((1 << (64 - TERM_SHIFT)) - 1) << TERM_SHIFT
}

/// Reads the journal's live records (newest per key) and restores each into the engine of
/// its family, on the shard its client steers to; then raises the engines' versions above
/// every record and into term `term`, so that this server's next change outranks the
/// partner's last, and any change of an earlier term that it never saw.
pub(super) fn replay(
    source: &Source<LeaseRecord>,
    reload: &Reloader,
    term: u64,
) -> Result<Replayed, String> {
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
    let floor = max_version.max(term_floor(term));
    engine.advance_versions(floor);
    if let Some(e) = &engine6 {
        e.advance_versions(floor);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{TERM_SHIFT, term_floor};

    #[test]
    fn a_later_term_starts_above_every_version_an_earlier_one_can_reach() {
        assert_eq!(term_floor(0), 0, "a server without HA keeps its versions");
        for term in [1, 2, 1000, (1 << 20) - 2] {
            let last_of_term = term_floor(term) + (1 << TERM_SHIFT) - 1;
            assert!(term_floor(term + 1) > last_of_term, "term {term}");
        }
        assert_eq!(
            term_floor(u64::MAX),
            term_floor((1 << 20) - 1),
            "no overflow"
        );
    }
}
