//! Takeover: the journal (the partner's replicated records included) folded into the running
//! engines before a new leader serves, as start-up does into fresh ones.

use lessor_journal::stream::Source;

use crate::lease_record::LeaseRecord;
use crate::reload::Reloader;
use crate::replay::Restorers;
use crate::scope;

/// The scope of the client of `rec`, as the workers judge requests and their events
/// (docs/HA.md, "Load balancing").
fn scope_of(rec: &LeaseRecord) -> usize {
    match rec.v6_client() {
        Some(ia) => scope::of_ia(&ia),
        None => scope::of_client_bytes(&rec.client),
    }
}

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
/// Below the term, the bits that name the peer that writes in it (its index in
/// `ha.peers`): a term's changes count from `term << TERM_SHIFT | peer << PEER_SHIFT`.
const PEER_SHIFT: u32 = 40;

/// The peer bits of `v`, shifted down.
fn peer_of(v: u64) -> u64 {
    (v >> PEER_SHIFT) & ((1 << (TERM_SHIFT - PEER_SHIFT)) - 1)
}

/// The lowest version of the cluster's `term`th term (terms past 2^20 share the last) for
/// changes `peer` writes.
pub(super) fn term_floor(term: u64, peer: usize) -> u64 {
    let peer = peer_of((peer as u64) << PEER_SHIFT);
    term.min((1 << (64 - TERM_SHIFT)) - 1) << TERM_SHIFT | peer << PEER_SHIFT
}

/// The lowest version at least `v` whose peer bits name `peer`: this server's next change
/// says it wrote it even if a record it restored came from a later term than it knew.
fn at_peer(v: u64, peer: usize) -> u64 {
    if peer_of(v) == peer as u64 {
        return v;
    }
    let floor = term_floor(v >> TERM_SHIFT, peer);
    if floor >= v {
        floor
    } else {
        term_floor((v >> TERM_SHIFT) + 1, peer)
    }
}

/// The index in `ha.peers` of the server that wrote a change of `version`, if it was written
/// in an HA term (term 0 is a server without `ha`, or before it first led).
pub(super) fn writer(version: u64) -> Option<usize> {
    (version >> TERM_SHIFT > 0).then_some(peer_of(version) as usize)
}

/// Reads the journal's live records (newest per key) and restores each into the engine of
/// its family, on the shard its client steers to; then raises the engines' versions above
/// every record and into term `term` as `peer` (its index in `ha.peers`), so that this
/// server's next change outranks the partner's last, and any change of an earlier term that
/// it never saw, and says who wrote it.
///
/// With `scope` (load-balancing) only the records of that scope's clients are restored:
/// the engines go on serving the other scope meanwhile, so the records are read first and
/// put in place after, holding the shards' locks for the in-memory part only.
pub(super) fn replay(
    source: &Source<LeaseRecord>,
    reload: &Reloader,
    term: u64,
    peer: usize,
    scope: Option<usize>,
) -> Result<Replayed, String> {
    let (engine, engine6) = reload.engines();
    let mut out = Replayed::default();
    let mut max_version = 0;
    let mut read = |each: &mut dyn FnMut(LeaseRecord)| {
        source
            .snapshot_each(|rec| {
                max_version = max_version.max(rec.version);
                each(rec);
                Ok(())
            })
            .map_err(|e| format!("reading the journal to take over: {e}"))
    };
    match scope {
        None => {
            let mut restorers = Restorers::new(&engine, engine6.as_deref(), 0);
            read(&mut |rec| {
                out.records += 1;
                out.restored += u64::from(restorers.add(&rec));
            })?;
            out.restored = out.restored.saturating_sub(restorers.finish());
        }
        Some(scope) => {
            let mut mine = Vec::new();
            read(&mut |rec| {
                if scope_of(&rec) == scope {
                    mine.push(rec);
                }
            })?;
            out.records = mine.len() as u64;
            let mut restorers = Restorers::new(&engine, engine6.as_deref(), mine.len());
            for rec in &mine {
                out.restored += u64::from(restorers.add(rec));
            }
            out.restored = out.restored.saturating_sub(restorers.finish());
        }
    }
    let floor = at_peer(max_version.max(term_floor(term, peer)), peer);
    engine.advance_versions(floor);
    if let Some(e) = &engine6 {
        e.advance_versions(floor);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::{PEER_SHIFT, TERM_SHIFT, at_peer, term_floor, writer};

    #[test]
    fn a_later_term_starts_above_every_version_an_earlier_one_can_reach() {
        assert_eq!(
            term_floor(0, 0),
            0,
            "a server without HA keeps its versions"
        );
        for term in [1, 2, 1000, (1 << 20) - 2] {
            for peer in [0, 1, 15] {
                let last_of_term = term_floor(term, 15) + (1 << PEER_SHIFT) - 1;
                assert!(term_floor(term + 1, peer) > last_of_term, "term {term}");
            }
        }
        assert_eq!(
            term_floor(u64::MAX, 1),
            term_floor((1 << 20) - 1, 1),
            "no overflow"
        );
    }

    #[test]
    fn a_version_names_the_peer_that_wrote_it_in_its_term() {
        assert_eq!(writer(5), None, "term 0: no HA");
        for (term, peer) in [(1, 0), (1, 1), (7, 1), (1000, 15)] {
            let v = term_floor(term, peer) + 12345;
            assert_eq!(writer(v), Some(peer), "term {term}, peer {peer}");
            assert_eq!(v >> TERM_SHIFT, term);
        }
        // Raised past a partner's record of its own term, or of a later one.
        let theirs = term_floor(3, 1) + 99;
        for mine in [0, 2] {
            let raised = at_peer(theirs, mine);
            assert!(raised >= theirs, "{raised} < {theirs}");
            assert_eq!(writer(raised + 1), Some(mine));
        }
        assert_eq!(at_peer(theirs, 1), theirs, "already the peer's");
    }
}
