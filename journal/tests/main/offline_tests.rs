//! The offline tools on a real directory: read_live, stats, verify, compact, append.

use lessor_journal::{FileKind, Journal, Options};

use crate::common::*;

#[test]
fn offline_tools_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let mut o = Options::new(d, 1);
    o.segment_bytes = 1024;
    let mut all: Vec<Rec> = (0..100).map(|i| rec(i % 30, u64::from(i) + 1)).collect();
    all.push(tomb(3, 1000));
    assert_eq!(
        lessor_journal::append_offline(d, all.clone()).unwrap(),
        all.len() as u64
    );

    let (recs, rep) = lessor_journal::read_live::<Rec>(d).unwrap();
    let got: std::collections::BTreeMap<u32, Rec> = recs.into_iter().map(|r| (r.key, r)).collect();
    assert_eq!(got, model(&all));
    assert_eq!(rep.max_version, 1000);
    assert_eq!(rep.live, 29);

    let st = lessor_journal::stats_offline(d).unwrap();
    assert_eq!(st.segment_records, all.len() as u64);
    assert!(st.snapshot.is_none());

    let v = lessor_journal::verify(d).unwrap();
    assert!(v.is_clean(), "{v:#?}");
    assert!(
        v.files
            .iter()
            .all(|f| matches!(f.kind, FileKind::Segment(_)))
    );

    let c = lessor_journal::compact_offline::<Rec>(d).unwrap();
    assert_eq!(c.records_written, 29);
    assert_eq!(c.tombstones_kept, 0);
    let st = lessor_journal::stats_offline(d).unwrap();
    assert_eq!(st.segments, 0);
    assert_eq!(
        st.snapshot.as_ref().map(|s| (s.records, s.valid)),
        Some((29, true))
    );
    assert!(lessor_journal::verify(d).unwrap().is_clean());

    // Appending after an offline compaction continues after the snapshot's cut.
    let more = vec![rec(500, 1), tomb(4, 1000)];
    lessor_journal::append_offline(d, more.clone()).unwrap();
    all.extend(more);
    let (recs, rep) = lessor_journal::read_live::<Rec>(d).unwrap();
    assert_eq!(recs.len(), model(&all).len());
    assert!(rep.snapshot.is_some());

    let (j, _) = Journal::<Rec>::open_dir(o, |_| {}).unwrap();
    // The offline writers refuse a directory a journal has open.
    assert!(lessor_journal::append_offline(d, vec![rec(1, 5000)]).is_err());
    assert!(lessor_journal::compact_offline::<Rec>(d).is_err());
    j.shutdown().unwrap();
    // An empty directory reads as empty.
    let empty = tempfile::tempdir().unwrap();
    let (recs, rep) = lessor_journal::read_live::<Rec>(empty.path()).unwrap();
    assert!(recs.is_empty() && rep.segments == 0);
}

#[test]
fn append_offline_refuses_an_oversized_record_before_writing_any() {
    let tmp = tempfile::tempdir().unwrap();
    let big = Rec::new(1, 1).padded(lessor_journal::MAX_RECORD_LEN, 0);
    let err = lessor_journal::append_offline(tmp.path(), vec![rec(0, 1), big]).unwrap_err();
    assert!(matches!(err, lessor_journal::Error::Encode(_)), "{err}");
    let (recs, _) = lessor_journal::read_live::<Rec>(tmp.path()).unwrap();
    assert!(recs.is_empty());
}

/// More records than the append window, from a generator: every one arrives.
#[test]
fn append_offline_streams_a_large_import() {
    let fs = lessor_journal::testing::FaultyFs::new();
    let n = 150_000u32;
    let appended = lessor_journal::append_offline_with(
        std::sync::Arc::new(fs.clone()),
        &dir(),
        (0..n).map(|i| rec(i, 1)),
    )
    .unwrap();
    assert_eq!(appended, u64::from(n));
    let got = live(&fs);
    assert_eq!(got.len(), n as usize);
    assert_eq!(got.get(&(n - 1)), Some(&rec(n - 1, 1)));
}

/// The disk fills up during an offline append: an error, and the journal holds what it
/// held before.
#[test]
fn a_failing_offline_append_is_taken_back() {
    let fs = lessor_journal::testing::FaultyFs::new();
    let arc = || -> std::sync::Arc<dyn lessor_journal::Fs> { std::sync::Arc::new(fs.clone()) };
    let first: Vec<Rec> = (0..10).map(|i| rec(i, 1)).collect();
    lessor_journal::append_offline_with(arc(), &dir(), first.clone()).unwrap();
    fs.set_space_limit(Some(fs.used_bytes() + 200));
    let err = lessor_journal::append_offline_with(arc(), &dir(), (100..1100).map(|i| rec(i, 1)))
        .unwrap_err();
    assert!(
        matches!(err, lessor_journal::Error::NotDurable { .. }),
        "{err}"
    );
    fs.set_space_limit(None);
    assert_eq!(live(&fs), model(&first));
    assert!(lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean());
    let (j, got, _) = open(&fs, opts(1));
    assert_eq!(got, model(&first));
    j.shutdown().unwrap();
}
