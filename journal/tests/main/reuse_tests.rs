//! Restarts resume the last segment; empty segments left by older versions are removed on
//! open, never at the cost of the chain.

use lessor_journal::testing::FaultyFs;

use crate::common::*;

fn segment_names(fs: &FaultyFs) -> Vec<String> {
    fs.file_names(&dir())
        .into_iter()
        .filter(|n| n.ends_with(".log"))
        .collect()
}

fn name(n: u64) -> String {
    format!("{n:016}.log")
}

/// A segment header, as the crate docs lay it out.
fn header(seq: u64, prev_len: u64) -> Vec<u8> {
    let mut b = b"LSRJLOG\0".to_vec();
    b.extend_from_slice(&1u32.to_le_bytes());
    b.extend_from_slice(&seq.to_le_bytes());
    b.extend_from_slice(&prev_len.to_le_bytes());
    let crc = crc32c::crc32c(&b);
    b.extend_from_slice(&crc.to_le_bytes());
    b
}

fn big_segments() -> lessor_journal::Options {
    let mut o = opts(1);
    o.segment_bytes = 1 << 20;
    o
}

/// Segment 1 holding `n` records, written by a journal (then shut down). Not preallocated,
/// so that the file's length is where its records end, for the tests that build segments
/// after it by hand.
fn one_segment_with_records(fs: &FaultyFs, n: u32) -> Vec<Rec> {
    let mut o = big_segments();
    o.preallocate = false;
    let (j, _, _) = open(fs, o);
    let mut lane = j.lane(0);
    let recs = durable_records(&mut lane, 0..n);
    j.shutdown().unwrap();
    recs
}

fn restart(fs: &FaultyFs, want: &[Rec]) {
    let (j, got, _) = open(fs, big_segments());
    assert_eq!(got, model(want));
    assert_eq!(
        j.stats().segments,
        segment_names(fs).len() as u64,
        "{:?}",
        segment_names(fs)
    );
    j.shutdown().unwrap();
}

#[test]
fn restarts_do_not_pile_up_empty_segments() {
    let fs = FaultyFs::new();
    for _ in 0..20 {
        restart(&fs, &[]);
    }
    assert_eq!(segment_names(&fs), vec![name(1)]);

    let all = one_segment_with_records(&fs, 10);
    restart(&fs, &all);
    let after_one = segment_names(&fs);
    // The segment holding records is resumed: no new file.
    assert_eq!(after_one, vec![name(1)]);
    for _ in 0..20 {
        restart(&fs, &all);
    }
    assert_eq!(segment_names(&fs), after_one);

    // After a compaction: the snapshot and one segment, however many restarts follow.
    let (j, _, _) = open(&fs, big_segments());
    j.compact_blocking().unwrap();
    j.shutdown().unwrap();
    for _ in 0..20 {
        restart(&fs, &all);
    }
    assert_eq!(segment_names(&fs).len(), 1, "{:?}", fs.file_names(&dir()));
    assert!(lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean());
}

/// What restarts used to leave behind: a run of empty segments after the last one holding
/// records. Open removes them all and resumes the one holding records.
#[test]
fn a_run_of_empty_segments_is_removed_and_the_last_with_records_resumed() {
    let fs = FaultyFs::new();
    let all = one_segment_with_records(&fs, 10);
    let mut prev = fs.read_file(&seg(1)).unwrap().len() as u64;
    for n in 2..=40 {
        fs.write_file(&seg(n), &header(n, prev));
        prev = 32;
    }
    assert!(lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean());
    let (j, got, rep) = open(&fs, big_segments());
    assert_eq!(got, model(&all));
    assert_eq!(rep.segments, 40);
    assert_eq!(j.stats().active_segment, 1);
    assert_eq!(j.stats().segments, 1);
    // Power loss right now: the removals were synced one by one, the chain has no gap.
    let img = fs.crash_image();
    let mut lane = j.lane(0);
    let t = lane.append(&rec(100, 1));
    assert!(lane.wait_durable(t, LONG));
    j.shutdown().unwrap();
    assert_eq!(segment_names(&fs), vec![name(1)]);
    let mut more = all.clone();
    more.push(rec(100, 1));
    restart(&fs, &more);
    assert!(lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean());
    restart(&img, &all);
}

/// An empty last segment whose predecessor has bytes past its valid end (abandoned after an
/// IO error) is kept: without its header, the predecessor would be read to its end.
#[test]
fn an_empty_segment_after_abandoned_bytes_is_kept() {
    let fs = FaultyFs::new();
    let all = one_segment_with_records(&fs, 10);
    let valid = fs.read_file(&seg(1)).unwrap();
    let mut with_garbage = valid.clone();
    // A whole valid frame past the valid end: read as the last segment, it would count.
    with_garbage.extend_from_slice(&fs.read_file(&seg(1)).unwrap()[32..32 + frame_len(&all[0])]);
    fs.write_file(&seg(1), &with_garbage);
    fs.write_file(&seg(2), &header(2, valid.len() as u64));
    let (j, got, rep) = open(&fs, big_segments());
    assert_eq!(got, model(&all));
    assert_eq!(rep.abandoned_bytes, frame_len(&all[0]) as u64);
    assert_eq!(j.stats().active_segment, 2);
    j.shutdown().unwrap();
    assert_eq!(segment_names(&fs), vec![name(1), name(2)]);
    // Segment 2 is resumed from now on.
    for _ in 0..5 {
        restart(&fs, &all);
    }
    assert_eq!(segment_names(&fs), vec![name(1), name(2)]);
}

/// A crash tears the first write into the resumed segment at every length (power loss or
/// process crash): replay ends where the records of the last run did, and the next run
/// resumes there again.
#[test]
fn a_torn_first_write_into_a_resumed_segment_loses_nothing() {
    let extra = rec(500, 1);
    for k in [0usize, 1, 4, 8, 12, frame_len(&extra) - 1] {
        let fs = FaultyFs::new();
        let all = one_segment_with_records(&fs, 10);
        let end = fs.read_file(&seg(1)).unwrap().len();
        let (j, _, _) = open(&fs, big_segments());
        assert_eq!(j.stats().active_segment, 1);
        fs.tear_next_write(k, Some(&name(1)));
        let mut lane = j.lane(0);
        let t = lane.append(&extra);
        assert!(eventually(|| fs.is_crashed()), "k = {k}");
        assert!(lane.durable() < t);
        // After a process crash the torn bytes are there; after a power loss they are not.
        let images = [(fs.disk_image(), true), (fs.crash_image(), false)];
        drop(j);
        for (img, torn) in images {
            let (j, got, rep) = open(&img, big_segments());
            assert_eq!(got, model(&all), "k = {k}");
            if k > 0 && torn {
                assert_eq!(
                    rep.truncated.as_ref().map(|(p, at, _)| (p.clone(), *at)),
                    Some((seg(1), end as u64)),
                    "k = {k}"
                );
            }
            let mut lane = j.lane(0);
            let t = lane.append(&rec(600, 1));
            assert!(lane.wait_durable(t, LONG));
            j.shutdown().unwrap();
            let mut more = all.clone();
            more.push(rec(600, 1));
            restart(&img, &more);
            assert_eq!(segment_names(&img), vec![name(1)]);
            assert!(
                lessor_journal::verify_with(&img, &dir())
                    .unwrap()
                    .is_clean()
            );
        }
    }
}
