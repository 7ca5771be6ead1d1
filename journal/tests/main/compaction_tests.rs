//! Compaction: folds, drops tombstones, deletes what it covers, never blocks the writer.

use std::collections::BTreeSet;

use lessor_journal::testing::FaultyFs;

use crate::common::*;

#[test]
fn compaction_folds_drops_tombstones_and_deletes_covered_files() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(2));
    let (mut a, mut b) = (j.lane(0), j.lane(1));
    let mut all = Vec::new();
    for v in 1..=5u64 {
        for k in 0..40u32 {
            // Keys 0..10 end as tombstones; the rest alive at version 5.
            let r = if v == 5 && k < 10 {
                tomb(k, v)
            } else {
                rec(k, v)
            };
            let lane = if k % 2 == 0 { &mut a } else { &mut b };
            lane.append(&r);
            all.push(r);
        }
        // Several batches, so several segments.
        let (ta, tb) = (a.last_ticket(), b.last_ticket());
        assert!(a.wait_durable(ta, LONG) && b.wait_durable(tb, LONG));
    }
    let t = append_all(&mut a, &mut all, [rec(1000, 1)]);
    assert!(a.wait_durable(t, LONG));
    let segs_before = j.stats().segments;
    let rep = j.compact_blocking().unwrap();
    let snap = rep.snapshot.clone().expect("a snapshot");
    assert_eq!(rep.records_read, all.len() as u64);
    // One more append after the compaction lands in the new active segment.
    let t = append_all(&mut b, &mut all, [rec(2000, 1)]);
    assert!(b.wait_durable(t, LONG));
    let st = j.stats();
    assert_eq!(st.compactions, 1);
    assert_eq!(st.snapshot_seq, rep.cut);
    assert!(st.segments < segs_before, "{st:?} vs {segs_before}");
    let names: BTreeSet<String> = fs.file_names(&dir()).into_iter().collect();
    for n in 1..=rep.cut {
        assert!(
            !names.contains(&format!("{n:016}.log")),
            "segment {n} not deleted: {names:?}"
        );
    }
    // A second compaction replaces the first snapshot.
    let rep2 = j.compact_blocking().unwrap();
    assert!(rep2.cut > rep.cut);
    assert!(fs.read_file(&snap).is_none());
    // Tombstones kept in the first snapshot (from its cut segment) are gone now, or still
    // dead: nothing resurrects.
    j.shutdown().unwrap();
    let r = reopen_matches(&fs, opts(2), &all);
    assert_eq!(r.snapshot, rep2.snapshot);
    // Nothing to do when nothing new was sealed.
    let (j, _, _) = open(&fs, opts(2));
    let again = j.compact_blocking().unwrap();
    assert!(again.snapshot.is_none() || again.records_written == model(&all).len() as u64);
    j.shutdown().unwrap();
}

/// The compactor's snapshot write is blocked; appends keep becoming durable meanwhile.
#[test]
fn compaction_never_blocks_the_writer() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let mut all = Vec::new();
    let mut t = append_all(&mut lane, &mut all, (0..100).map(|i| rec(i, 1)));
    assert!(lane.wait_durable(t, LONG));
    fs.block_writes("snapshot");
    j.compact_now();
    assert!(
        fs.wait_blocked(LONG),
        "the compactor never reached its snapshot write"
    );
    for i in 100..300 {
        all.push(rec(i, 1));
        t = lane.append(all.last().unwrap());
        if i % 20 == 0 {
            assert!(
                lane.wait_durable(t, LONG),
                "append {i} not durable while compaction is blocked"
            );
        }
    }
    assert!(lane.wait_durable(t, LONG));
    assert_eq!(
        j.stats().compactions,
        0,
        "the compaction cannot have finished"
    );
    fs.unblock();
    assert!(eventually(|| j.stats().compactions == 1));
    j.shutdown().unwrap();
    let rep = reopen_matches(&fs, opts(1), &all);
    assert!(rep.snapshot.is_some());
}

/// Sealed bytes past `compact_bytes` start a compaction by themselves.
#[test]
fn compaction_triggers_on_sealed_bytes() {
    let fs = FaultyFs::new();
    let mut o = opts(1);
    o.compact_bytes = 2048;
    let (j, _, _) = open(&fs, o.clone());
    let mut lane = j.lane(0);
    let mut all = Vec::new();
    for i in 0..400u32 {
        all.push(rec(i % 50, u64::from(i) + 1));
        let t = lane.append(all.last().unwrap());
        if i % 10 == 0 {
            assert!(lane.wait_durable(t, LONG));
        }
    }
    assert!(eventually(|| j.stats().compactions >= 1));
    j.shutdown().unwrap();
    reopen_matches(&fs, o, &all);
}

/// Segments count as well as bytes: `compact_segments` sealed segments start a compaction
/// however few bytes they hold, and a segment sealed early counts its preallocated size.
#[test]
fn compaction_triggers_on_sealed_segments_and_their_disk_size() {
    for (segments, preallocated) in [(3, false), (u64::MAX, true)] {
        let fs = FaultyFs::new();
        let mut o = opts(1);
        o.compact_segments = segments;
        o.preallocate = preallocated;
        // Preallocated: three sealed segments take 3 x 512 bytes on disk, whatever they hold.
        o.compact_bytes = if preallocated { 3 * 512 } else { u64::MAX };
        let (j, _, _) = open(&fs, o.clone());
        let mut lane = j.lane(0);
        let mut all = Vec::new();
        let mut i = 0u32;
        while j.stats().compactions == 0 && i < 2000 {
            all.push(rec(i % 50, u64::from(i) + 1));
            let t = lane.append(all.last().unwrap());
            assert!(lane.wait_durable(t, LONG));
            i += 1;
        }
        assert!(
            eventually(|| j.stats().compactions >= 1),
            "{segments} {preallocated}"
        );
        // Not before: three segments of 512 bytes hold about 60 records of 21 bytes.
        assert!(i > 40, "{i} records before the first compaction");
        j.shutdown().unwrap();
        reopen_matches(&fs, o, &all);
    }
}

/// Restarts (each a crash: nothing shut down) resume the last segment, so the journal's
/// files do not grow with the number of restarts: only with the records.
#[test]
fn twenty_crash_restarts_add_no_segment() {
    let mut fs = FaultyFs::new();
    let mut o = opts(1);
    o.segment_bytes = 1 << 16;
    let mut all = Vec::new();
    for round in 0..20u32 {
        let (j, got, _) = open(&fs, o.clone());
        assert_eq!(got, model(&all), "round {round}");
        let mut lane = j.lane(0);
        let t = append_all(&mut lane, &mut all, (0..5).map(|i| rec(round * 10 + i, 1)));
        assert!(lane.wait_durable(t, LONG));
        // A crash (kill -9): what was written is on disk, nothing more happens.
        let img = fs.disk_image();
        drop(j);
        fs = img;
        let names = fs.file_names(&dir());
        let logs = names.iter().filter(|n| n.ends_with(".log")).count();
        assert_eq!(logs, 1, "round {round}: {names:?}");
        // The segment and at most one spare, each preallocated to 64 KiB.
        let bytes: usize = names
            .iter()
            .filter(|n| *n != "LOCK")
            .map(|n| fs.read_file(&dir().join(n)).unwrap().len())
            .sum();
        assert!(
            bytes <= 2 << 16,
            "round {round}: {bytes} bytes in {names:?}"
        );
    }
}

/// A failed snapshot write deletes nothing; a later compaction succeeds.
#[test]
fn failed_compaction_loses_nothing() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let mut all = Vec::new();
    append_all(&mut lane, &mut all, (0..80).map(|i| rec(i, 1)));
    fs.short_next_write(3, Some("snapshot"));
    assert!(j.compact_blocking().is_err());
    assert_eq!(j.stats().compaction_failures, 1);
    // A power loss now: everything is still in the segments.
    assert_eq!(live(&fs.crash_image()), model(&all));
    let rep = j.compact_blocking().unwrap();
    assert!(rep.snapshot.is_some());
    j.shutdown().unwrap();
    reopen_matches(&fs, opts(1), &all);
}

/// A crash between the snapshot's rename and the deletion of what it covers: the leftovers
/// are ignored and removed on open.
#[test]
fn leftovers_of_an_interrupted_compaction_are_removed() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let mut all = Vec::new();
    let recs = (0..80).map(|i| rec(i, 1)).chain([rec(500, 1)]);
    let t = append_all(&mut lane, &mut all, recs);
    // Keep copies of the segments the compaction will delete.
    assert!(lane.wait_durable(t, LONG));
    let saved: Vec<(String, Vec<u8>)> = fs
        .file_names(&dir())
        .into_iter()
        .map(|n| (n.clone(), fs.read_file(&dir().join(&n)).unwrap()))
        .collect();
    let rep = j.compact_blocking().unwrap();
    j.shutdown().unwrap();
    for (n, data) in &saved {
        if fs.read_file(&dir().join(n)).is_none() {
            fs.write_file(&dir().join(n), data);
        }
    }
    fs.write_file(
        &dir().join("snapshot-0000000000000099.snap.tmp"),
        b"partial",
    );
    let (j, got, r) = open(&fs, opts(1));
    assert_eq!(got, model(&all));
    assert_eq!(r.snapshot, rep.snapshot);
    let names = fs.file_names(&dir());
    // (The preallocated spare segment is a `.tmp` too, made anew after the open.)
    assert!(!names.iter().any(|n| n.ends_with(".snap.tmp")), "{names:?}");
    for n in 1..=rep.cut {
        assert!(!names.contains(&format!("{n:016}.log")));
    }
    j.shutdown().unwrap();
}

/// Two lanes can deliver one key's records out of version order (a lease handed from one
/// worker to another): here the tombstone v2 lands in the last segment a compaction covers,
/// the older live v1 after it. The snapshot must keep the tombstone, or v1 would come back.
#[test]
fn a_straggler_after_a_compacted_tombstone_does_not_resurrect_its_key() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(2));
    let (mut a, mut b) = (j.lane(0), j.lane(1));
    let t = a.append(&rec(7, 1));
    assert!(a.wait_durable(t, LONG));
    let t = b.append(&tomb(1, 2));
    assert!(b.wait_durable(t, LONG));
    // Hold the compaction after the writer has sealed the segment with the tombstone.
    fs.block_writes("snapshot");
    j.compact_now();
    assert!(fs.wait_blocked(LONG));
    let t = a.append(&rec(1, 1));
    assert!(a.wait_durable(t, LONG));
    fs.unblock();
    assert!(eventually(|| j.stats().compactions == 1));
    let rep = j.compact_blocking().unwrap();
    assert!(rep.snapshot.is_some());
    j.shutdown().unwrap();
    let (j, got, _) = open(&fs, opts(2));
    assert_eq!(
        got.keys().copied().collect::<Vec<_>>(),
        vec![7],
        "key 1 resurrected: {got:?}"
    );
    j.shutdown().unwrap();
}

/// The same when the compaction's last segments hold no record (here: an empty segment left
/// by a restart, standing in for one abandoned after an IO error): the tombstone kept by the
/// previous snapshot is still the newest record source, so it is kept again.
#[test]
fn a_tombstone_survives_compactions_of_empty_segments() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(2));
    let mut b = j.lane(1);
    let t = b.append(&tomb(1, 2));
    assert!(b.wait_durable(t, LONG));
    let first = j.compact_blocking().unwrap();
    assert_eq!(first.tombstones_kept, 1);
    j.shutdown().unwrap();
    let (j, _, _) = open(&fs, opts(2));
    let second = j.compact_blocking().unwrap();
    assert!(second.cut > first.cut, "{second:?}");
    assert_eq!(second.tombstones_kept, 1);
    let mut a = j.lane(0);
    let t = a.append(&rec(1, 1));
    assert!(a.wait_durable(t, LONG));
    j.shutdown().unwrap();
    let (j, got, _) = open(&fs, opts(2));
    assert!(got.is_empty(), "key 1 resurrected: {got:?}");
    // Once a later batch is folded, the tombstone can go.
    let third = j.compact_blocking().unwrap();
    assert_eq!(
        (third.records_written, third.tombstones_kept),
        (0, 0),
        "{third:?}"
    );
    j.shutdown().unwrap();
}
