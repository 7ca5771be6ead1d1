//! Recovery: torn tails, bit flips, missing segments, damaged snapshots; verify and repair.

use lessor_journal::testing::FaultyFs;
use lessor_journal::{Error, Recovery, Ticket};

use crate::common::*;

/// Writes `n` records (one key each) durably, without shutting down.
fn journal_with(
    fs: &FaultyFs,
    n: u32,
    preallocate: bool,
) -> (
    lessor_journal::Journal<Rec>,
    lessor_journal::Lane<Rec>,
    Vec<Rec>,
) {
    let mut o = opts(1);
    o.segment_bytes = 1 << 20;
    o.preallocate = preallocate;
    let (j, _, _) = open(fs, o);
    let mut lane = j.lane(0);
    let recs = durable_records(&mut lane, 0..n);
    (j, lane, recs)
}

/// A crash tears the write of the last record after `k` bytes, for every `k`: reopen cuts the
/// tail off at the start of that record and keeps everything before it. In a plain segment the
/// torn bytes are the file's last; in a preallocated one they land on zeros, and what follows
/// them is zeros.
#[test]
fn torn_tail_at_every_byte_offset_of_the_last_record() {
    let last = rec(1000, 1);
    let len = frame_len(&last);
    for preallocate in [false, true] {
        for k in 0..len {
            let fs = FaultyFs::new();
            let (j, mut lane, recs) = journal_with(&fs, 20, preallocate);
            let seg_path = seg(j.stats().active_segment);
            // Where the records end: the header, then the frames.
            let before = (32 + recs.iter().map(frame_len).sum::<usize>()) as u64;
            let file = fs.read_file(&seg_path).unwrap().len() as u64;
            assert_eq!(file, if preallocate { 1 << 20 } else { before });
            fs.tear_next_write(k, Some(".log"));
            let t = lane.append(&last);
            assert!(eventually(|| fs.is_crashed()));
            let img = fs.disk_image();
            assert!(lane.durable() < t);
            drop(j);

            let torn = img.read_file(&seg_path).unwrap();
            assert_eq!(torn.len() as u64, file.max(before + k as u64));
            let landed = &torn[before as usize..before as usize + k];
            let (j, got, rep) = open(&img, opts(1));
            assert_eq!(got, model(&recs), "k = {k}, preallocate {preallocate}");
            // The bytes of the torn write: up to its last non-zero byte (zeros after it are
            // the file's end or its preallocated space, not torn bytes).
            let real = landed.iter().rposition(|&b| b != 0).map_or(0, |i| i + 1);
            if real == 0 {
                // Nothing but zeros landed: the records simply end at `before`.
                assert_eq!(rep.truncated, None, "k = {k}");
            } else {
                assert_eq!(
                    rep.truncated,
                    Some((seg_path.clone(), before, real as u64)),
                    "k = {k}, preallocate {preallocate}"
                );
            }
            assert!(rep.damaged.is_empty(), "k = {k}: {rep:?}");
            // The torn bytes are gone; only zeros (if any) follow the records.
            let after = img.read_file(&seg_path).unwrap();
            assert!(after.len() as u64 >= before);
            assert!(after[before as usize..].iter().all(|&b| b == 0), "k = {k}");
            j.shutdown().unwrap();
            let (j, got, rep) = open(&img, opts(1));
            assert_eq!(got, model(&recs));
            assert_eq!(rep.truncated, None);
            j.shutdown().unwrap();
            assert!(
                lessor_journal::verify_with(&img, &dir())
                    .unwrap()
                    .is_clean()
            );
        }
    }
}

/// Ten records (keys `0..10`) written by a journal on a real directory, then shut down.
struct OnDisk {
    tmp: tempfile::TempDir,
    o: lessor_journal::Options,
    recs: Vec<Rec>,
    /// Segment 1, which holds them.
    seg_path: std::path::PathBuf,
    /// The journal's counters just before its shutdown.
    stats: lessor_journal::Stats,
}

fn ten_on_disk(segment_bytes: u64, preallocate: bool) -> OnDisk {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = lessor_journal::Options::new(tmp.path(), 1);
    o.segment_bytes = segment_bytes;
    o.preallocate = preallocate;
    let recs: Vec<Rec> = (0..10).map(|i| rec(i, 1)).collect();
    let (j, _) = lessor_journal::Journal::<Rec>::open_dir(o.clone(), |_| {}).unwrap();
    let mut lane = j.lane(0);
    for r in &recs {
        lane.append(r);
    }
    let stats = j.stats();
    j.shutdown().unwrap();
    let seg_path = o.dir.join(format!("{:016}.log", 1));
    OnDisk {
        tmp,
        o,
        recs,
        seg_path,
        stats,
    }
}

/// The same on a real directory: cut the last segment at every offset inside its last record.
#[test]
fn torn_tail_on_disk() {
    // The file ends where the records do (preallocated segments: the next test).
    let OnDisk {
        tmp,
        o,
        recs,
        seg_path,
        ..
    } = ten_on_disk(1 << 20, false);
    let full = std::fs::read(&seg_path).unwrap();
    let last_len = frame_len(&recs[9]);
    let start = full.len() - last_len;
    for cut in start..full.len() {
        std::fs::write(&seg_path, &full[..cut]).unwrap();
        // Remove what later opens created, so the torn segment is the last one.
        for e in std::fs::read_dir(tmp.path()).unwrap() {
            let p = e.unwrap().path();
            if p != seg_path && p.extension().is_some_and(|x| x == "log") {
                std::fs::remove_file(p).unwrap();
            }
        }
        let (got, rep) = lessor_journal::read_live::<Rec>(tmp.path()).unwrap();
        assert_eq!(got.len(), 9, "cut at {cut}");
        // Up to the last non-zero byte of what is left of the record.
        let real = full[start..cut]
            .iter()
            .rposition(|&b| b != 0)
            .map_or(0, |i| i + 1);
        if cut > start {
            assert_eq!(
                rep.truncated,
                Some((seg_path.clone(), start as u64, real as u64))
            );
        }
        let mut strict = o.clone();
        strict.recovery = Recovery::Strict;
        if cut > start {
            let err = lessor_journal::Journal::<Rec>::open_dir(strict, |_| {}).unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { ref file, offset, .. } if *file == seg_path && offset == start as u64),
                "{err}"
            );
        }
        let (j, _) = lessor_journal::Journal::<Rec>::open_dir(o.clone(), |_| {}).unwrap();
        j.shutdown().unwrap();
        // Open cleared the torn bytes: zeros (if anything) after the records.
        let after = std::fs::read(&seg_path).unwrap();
        assert_eq!(after[..start], full[..start]);
        assert!(after[start..].iter().all(|&b| b == 0), "cut at {cut}");
    }
}

/// Preallocated segments on a real directory: the segment is zero-filled to its full size
/// before the first record; replay ends at the zeros, and a torn record written over them is
/// cut off at its start. Segments sealed with zeros left read as whole, and `verify` agrees.
#[test]
fn preallocated_segments_on_disk() {
    let OnDisk {
        tmp,
        o,
        recs,
        seg_path,
        stats,
    } = ten_on_disk(1 << 16, true);
    assert_eq!(stats.preallocated, 1, "the first segment is preallocated");
    let full = std::fs::read(&seg_path).unwrap();
    assert_eq!(full.len(), 1 << 16);
    let end = 32 + recs.iter().map(frame_len).sum::<usize>();
    assert!(full[end..].iter().all(|&b| b == 0));
    assert!(
        full[end - 1] != 0 || full[end - 2] != 0,
        "records before the zeros"
    );
    // No spare is left behind by a clean shutdown.
    let names: Vec<String> = std::fs::read_dir(tmp.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert!(!names.iter().any(|n| n.ends_with(".tmp")), "{names:?}");

    let (got, rep) = lessor_journal::read_live::<Rec>(tmp.path()).unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(rep.truncated, None);
    assert!(lessor_journal::verify(tmp.path()).unwrap().is_clean());

    // Half a record written over the zeros, as a crash mid-write leaves it.
    let mut extra = Vec::new();
    let r = rec(50, 1);
    {
        // The frame's bytes, from a scratch journal's segment.
        let t2 = tempfile::tempdir().unwrap();
        let mut o2 = lessor_journal::Options::new(t2.path(), 1);
        o2.preallocate = false;
        let (j2, _) = lessor_journal::Journal::<Rec>::open_dir(o2, |_| {}).unwrap();
        j2.lane(0).append(&r);
        j2.shutdown().unwrap();
        let b = std::fs::read(t2.path().join(format!("{:016}.log", 1))).unwrap();
        extra.extend_from_slice(&b[32..32 + frame_len(&r) / 2]);
    }
    let mut torn = full.clone();
    torn[end..end + extra.len()].copy_from_slice(&extra);
    std::fs::write(&seg_path, &torn).unwrap();
    let (got, rep) = lessor_journal::read_live::<Rec>(tmp.path()).unwrap();
    assert_eq!(got.len(), 10);
    assert_eq!(
        rep.truncated.map(|(p, at, _)| (p, at)),
        Some((seg_path.clone(), end as u64))
    );

    // Open clears the torn record (zeros over it: the segment stays preallocated) and
    // resumes segment 1 there. More records, another restart: everything is there, in
    // segment 1, still 64 KiB.
    let (j, _) = lessor_journal::Journal::<Rec>::open_dir(o.clone(), |_| {}).unwrap();
    let cleared = std::fs::read(&seg_path).unwrap();
    assert_eq!(cleared.len(), 1 << 16);
    assert!(cleared[end..].iter().all(|&b| b == 0));
    let mut lane = j.lane(0);
    durable_records(&mut lane, 10..20);
    assert_eq!(j.stats().active_segment, 1);
    assert_eq!(j.stats().segments, 1);
    j.shutdown().unwrap();
    assert_eq!(std::fs::metadata(&seg_path).unwrap().len(), 1 << 16);
    let (got, rep) = lessor_journal::read_live::<Rec>(tmp.path()).unwrap();
    assert_eq!(got.len(), 20);
    assert_eq!(rep.truncated, None);
    assert_eq!(rep.abandoned_bytes, 0);
    assert!(lessor_journal::verify(tmp.path()).unwrap().is_clean());
}

/// A crash while a new segment's header is being written: the half-made segment is dropped.
#[test]
fn torn_segment_header() {
    for k in [0usize, 1, 12, 31] {
        let fs = FaultyFs::new();
        let mut o = opts(1);
        o.segment_bytes = 200;
        let (j, _, _) = open(&fs, o.clone());
        let mut lane = j.lane(0);
        let mut recs = Vec::new();
        // Fill segment 1 just past its size, so the next batch rotates; tear the header of 2.
        fs.tear_next_write(k, Some(&format!("{:016}.log", 2)));
        let mut t = Ticket(0);
        while !fs.is_crashed() && recs.len() < 100 {
            let r = rec(recs.len() as u32, 1);
            t = lane.append(&r);
            recs.push(r);
            let _ = lane.wait_durable(t, std::time::Duration::from_millis(200));
        }
        assert!(fs.is_crashed());
        let durable = lane.durable();
        let img = fs.disk_image();
        drop(j);
        let (j, got, rep) = open(&img, o.clone());
        // Every durable record is there (all of segment 1 was synced before the rotation).
        for r in &recs[..durable.0 as usize] {
            assert_eq!(got.get(&r.key), Some(r));
        }
        assert!(durable <= t);
        let (file, off, _) = rep.truncated.clone().expect("torn header reported");
        assert_eq!((file, off), (seg(2), 0));
        j.shutdown().unwrap();
        let (j, got2, _) = open(&img, o);
        assert_eq!(got2, got);
        j.shutdown().unwrap();
    }
}

/// Many segments; returns the records (one key each) and the segment count.
fn several_segments(fs: &FaultyFs) -> (Vec<Rec>, u64) {
    let (j, _, _) = open(fs, opts(1));
    let mut lane = j.lane(0);
    let recs: Vec<Rec> = (0..200).map(|i| rec(i, 1)).collect();
    for r in &recs {
        let last = lane.append(r);
        // One batch per record, so segments hold whole, predictable runs.
        assert!(lane.wait_durable(last, LONG));
    }
    let segs = j.stats().active_segment;
    j.shutdown().unwrap();
    assert!(segs >= 5);
    (recs, segs)
}

/// Offset of the `i`-th record frame in a segment's bytes.
fn frame_offset(bytes: &[u8], i: usize) -> usize {
    let mut at = 32;
    for _ in 0..i {
        let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as usize;
        at += 8 + len;
    }
    at
}

#[test]
fn bit_flip_in_a_middle_segment_is_corruption_and_repair_salvages_the_rest() {
    let fs = FaultyFs::new();
    let (recs, _) = several_segments(&fs);
    let victim = seg(2);
    let bytes = fs.read_file(&victim).unwrap();
    let at = frame_offset(&bytes, 2);
    let len = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap()) as u64 + 8;
    // The payload's key field: which record is lost.
    let lost_key = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
    fs.flip_bit(&victim, at as u64 + 9, 3);

    let err = open_with(&fs, opts(1)).map(|_| ()).unwrap_err();
    match &err {
        Error::Corrupt { file, offset, .. } => {
            assert_eq!((file, *offset), (&victim, at as u64), "{err}");
        }
        e => panic!("expected Corrupt, got {e}"),
    }
    assert!(lessor_journal::read_live_with::<Rec>(&fs, &dir()).is_err());

    let v = lessor_journal::verify_with(&fs, &dir()).unwrap();
    assert_eq!(v.problems.len(), 1, "{v:#?}");
    assert_eq!(
        (&v.problems[0].file, v.problems[0].offset),
        (&victim, at as u64)
    );

    let r = lessor_journal::repair_with(&fs, &dir()).unwrap();
    assert!(r.changed);
    assert_eq!(r.dropped, vec![(victim.clone(), at as u64, len)]);
    assert_eq!(r.salvaged, 199);
    let backup = r.backup.clone().unwrap();
    assert!(
        fs.file_names(&backup)
            .contains(&"0000000000000002.log".to_string())
    );
    assert!(lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean());

    let (j, got, _) = open(&fs, opts(1));
    let mut want = model(&recs);
    want.remove(&lost_key);
    assert_eq!(got, want);
    j.shutdown().unwrap();
    // Nothing to repair any more.
    assert!(!lessor_journal::repair_with(&fs, &dir()).unwrap().changed);
}

/// A flipped bit in the last segment's third-last record (issue: intact acknowledged records
/// after it were dropped). Damage followed by valid records is not a torn write: open drops
/// only the damaged record, keeps the two after it, reports the range, keeps a copy of the
/// damaged bytes and rewrites the segment so that the next open (and `verify`) find it
/// clean. Strict refuses, naming the file and offset. In a plain and in a preallocated
/// segment.
#[test]
fn bit_flip_in_the_last_segment_keeps_the_records_after_it() {
    for preallocate in [false, true] {
        let fs = FaultyFs::new();
        let (j, _lane, recs) = journal_with(&fs, 30, preallocate);
        let victim_n = j.stats().active_segment;
        drop(j);
        let victim = seg(victim_n);
        let bytes = fs.read_file(&victim).unwrap();
        let frames = (32..bytes.len())
            .scan(32usize, |at, _| {
                let here = *at;
                if here + 8 > bytes.len() {
                    return None;
                }
                let len = u32::from_le_bytes(bytes[here..here + 4].try_into().unwrap()) as usize;
                (len > 0).then(|| {
                    *at += 8 + len;
                    here
                })
            })
            .collect::<Vec<_>>();
        let at = frames[frames.len() - 3];
        let lost_key = u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap());
        fs.flip_bit(&victim, at as u64 + 10, 0);

        let mut strict = opts(1);
        strict.recovery = Recovery::Strict;
        let err = open_with(&fs, strict).map(|_| ()).unwrap_err();
        assert!(
            matches!(err, Error::Corrupt { ref file, offset, .. } if *file == victim && offset == at as u64),
            "{err}"
        );
        let v = lessor_journal::verify_with(&fs, &dir()).unwrap();
        assert_eq!(
            v.problems
                .iter()
                .map(|p| (&p.file, p.offset))
                .collect::<Vec<_>>(),
            vec![(&victim, at as u64)],
            "{v:#?}"
        );

        let mut want = model(&recs);
        want.remove(&lost_key);
        let (j, got, rep) = open(&fs, opts(1));
        assert_eq!(got, want, "preallocate {preallocate}");
        let frame = frames[frames.len() - 2] - at;
        assert_eq!(rep.damaged, vec![(victim.clone(), at as u64, frame as u64)]);
        assert_eq!(rep.salvaged, 2);
        assert_eq!(rep.truncated, None);
        let name = format!("{:016}.log.tail-{at}.bad", victim_n);
        assert!(
            fs.file_names(&dir()).contains(&name),
            "{:?}",
            fs.file_names(&dir())
        );
        // The copy holds the real bytes from the damage on, not a preallocated segment's zeros.
        let end = *frames.last().unwrap()
            + 8
            + u32::from_le_bytes(bytes[*frames.last().unwrap()..][..4].try_into().unwrap())
                as usize;
        assert_eq!(
            fs.read_file(&dir().join(&name)).unwrap().len(),
            end - at,
            "preallocate {preallocate}"
        );
        // New records go after the kept ones, in the rewritten segment.
        let mut lane = j.lane(0);
        let t = lane.append(&rec(900, 1));
        assert!(lane.wait_durable(t, LONG));
        j.shutdown().unwrap();
        want.insert(900, rec(900, 1));
        assert!(lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean());
        for img in [fs.disk_image(), fs.crash_image()] {
            let (j, got, rep) = open(&img, opts(1));
            assert_eq!(got, want);
            assert_eq!((rep.damaged.len(), rep.truncated), (0, None));
            j.shutdown().unwrap();
        }
    }
}

/// The newest segment's header damaged (a bad magic, a flipped bit in its checksum) on a
/// segment that holds records: never dropped. Open keeps every record after the header and
/// rewrites the segment under a good one; Strict refuses; `verify` names it.
#[test]
fn a_damaged_header_on_the_last_segment_keeps_its_records() {
    for (what, offset, bit) in [
        ("magic", 0u64, 1u8),
        ("checksum", 29, 4),
        ("prev_len", 21, 0),
    ] {
        for preallocate in [false, true] {
            let fs = FaultyFs::new();
            let (j, _lane, recs) = journal_with(&fs, 25, preallocate);
            let victim = seg(j.stats().active_segment);
            drop(j);
            fs.flip_bit(&victim, offset, bit);
            let case = format!("{what}, preallocate {preallocate}");

            let mut strict = opts(1);
            strict.recovery = Recovery::Strict;
            let err = open_with(&fs, strict).map(|_| ()).unwrap_err();
            assert!(
                matches!(err, Error::Corrupt { ref file, offset: 0, .. } if *file == victim),
                "{case}: {err}"
            );
            let v = lessor_journal::verify_with(&fs, &dir()).unwrap();
            assert!(
                v.problems.iter().any(|p| p.file == victim && p.offset == 0),
                "{case}: {v:#?}"
            );

            let (j, got, rep) = open(&fs, opts(1));
            assert_eq!(got, model(&recs), "{case}");
            assert_eq!(rep.damaged, vec![(victim.clone(), 0, 32)], "{case}");
            assert_eq!(rep.salvaged, 25, "{case}");
            assert!(
                fs.file_names(&dir())
                    .iter()
                    .any(|n| n.ends_with(".tail-0.bad")),
                "{case}"
            );
            j.shutdown().unwrap();
            assert!(
                lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean(),
                "{case}"
            );
            let (j, got, rep) = open(&fs, opts(1));
            assert_eq!(got, model(&recs), "{case}");
            assert!(rep.damaged.is_empty(), "{case}");
            j.shutdown().unwrap();
        }
    }
}

/// Recovery from tail damage reads what the records take, not a preallocated segment's
/// zeros: the report counts the bytes of the torn record, and resyncing stops at the zeros.
#[test]
fn a_torn_tail_in_a_preallocated_segment_reports_its_own_bytes() {
    let OnDisk {
        tmp,
        recs,
        seg_path,
        ..
    } = ten_on_disk(64 << 20, true);
    let mut bytes = std::fs::read(&seg_path).unwrap();
    assert_eq!(bytes.len(), 64 << 20);
    let end = 32 + recs.iter().map(frame_len).sum::<usize>();
    // The last record's checksum damaged: nothing valid after it.
    let last = end - frame_len(&recs[9]);
    bytes[last + 5] ^= 0x10;
    std::fs::write(&seg_path, &bytes).unwrap();
    let (got, rep) = lessor_journal::read_live::<Rec>(tmp.path()).unwrap();
    assert_eq!(got.len(), 9);
    assert_eq!(
        rep.truncated,
        Some((seg_path.clone(), last as u64, frame_len(&recs[9]) as u64))
    );
    assert!(rep.damaged.is_empty());
}

#[test]
fn a_missing_segment_is_an_error() {
    let fs = FaultyFs::new();
    several_segments(&fs);
    fs.delete_file(&seg(3));
    let err = open_with(&fs, opts(1)).map(|_| ()).unwrap_err();
    assert!(matches!(err, Error::MissingSegment { seq: 3, .. }), "{err}");
    let v = lessor_journal::verify_with(&fs, &dir()).unwrap();
    assert_eq!(v.problems.len(), 1);
    assert_eq!(v.problems[0].file, seg(3));
    let r = lessor_journal::repair_with(&fs, &dir()).unwrap();
    assert_eq!(r.missing, vec![3]);
    let (j, _, _) = open(&fs, opts(1));
    j.shutdown().unwrap();
}

/// A different record type does not decode: corruption, never a "torn tail" to cut off.
#[test]
fn wrong_record_type_is_corruption_not_a_torn_tail() {
    #[derive(Clone, Debug, bincode::Encode, bincode::Decode)]
    struct Other {
        x: u8,
    }
    impl lessor_journal::Record for Other {
        type Key = u8;
        fn key(&self) -> u8 {
            self.x
        }
        fn version(&self) -> u64 {
            0
        }
        fn keep(&self, _: u64) -> bool {
            true
        }
    }
    let fs = FaultyFs::new();
    let (j, _lane, _) = journal_with(&fs, 3, true);
    j.shutdown().unwrap();
    let before = fs.read_file(&seg(1)).unwrap();
    let err =
        lessor_journal::Journal::<Other>::open(opts(1), std::sync::Arc::new(fs.clone()), |_| {})
            .unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref file, offset: 32, .. } if *file == seg(1)),
        "{err}"
    );
    assert_eq!(fs.read_file(&seg(1)).unwrap(), before);
}

/// Damaged snapshots: the only one is an error; a newer incomplete one beside a complete
/// older one with all its segments is passed over and removed.
#[test]
fn damaged_snapshots() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let mut all = Vec::new();
    append_all(&mut lane, &mut all, (0..60).map(|i| rec(i, 1)));
    let rep = j.compact_blocking().unwrap();
    let snap = rep.snapshot.clone().unwrap();
    for i in 60..80 {
        let t = append_all(&mut lane, &mut all, [rec(i, 1)]);
        assert!(lane.wait_durable(t, LONG));
    }
    let active = j.stats().active_segment;
    j.shutdown().unwrap();

    // An incomplete newer snapshot (header only) is passed over and removed.
    let fake = dir().join(format!("snapshot-{:016}.snap", active));
    let real = fs.read_file(&snap).unwrap();
    fs.write_file(&fake, &real[..24]);
    let (j, got, rep) = open(&fs, opts(1));
    assert_eq!(got, model(&all));
    assert_eq!(rep.ignored_snapshots, vec![fake.clone()]);
    assert_eq!(rep.snapshot, Some(snap.clone()));
    assert!(fs.read_file(&fake).is_none());
    j.shutdown().unwrap();

    // The only snapshot damaged: corruption, naming it.
    fs.flip_bit(&snap, 40, 1);
    let err = open_with(&fs, opts(1)).map(|_| ()).unwrap_err();
    assert!(
        matches!(err, Error::Corrupt { ref file, .. } if *file == snap),
        "{err}"
    );
    let v = lessor_journal::verify_with(&fs, &dir()).unwrap();
    assert!(v.problems.iter().any(|p| p.file == snap));
    let snap_len = fs.read_file(&snap).unwrap().len() as u64;
    let r = lessor_journal::repair_with(&fs, &dir()).unwrap();
    assert!(r.changed);
    // One damaged record dropped; the snapshot's intact footer is not a dropped range.
    assert_eq!(r.dropped.len(), 1, "{:?}", r.dropped);
    assert!(
        r.dropped.iter().all(|(_, at, n)| at + n <= snap_len - 24),
        "{:?}",
        r.dropped
    );
    let (j, got, _) = open(&fs, opts(1));
    // The flipped byte is in one record of the snapshot; everything else survives.
    assert!(got.len() >= all.len() - 1, "{} of {}", got.len(), all.len());
    j.shutdown().unwrap();
}
