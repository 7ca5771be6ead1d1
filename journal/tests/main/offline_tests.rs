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
    let big = Rec {
        key: 1,
        version: 1,
        live: true,
        pad: vec![0; lessor_journal::MAX_RECORD_LEN],
    };
    let err = lessor_journal::append_offline(tmp.path(), vec![rec(0, 1), big]).unwrap_err();
    assert!(matches!(err, lessor_journal::Error::Encode(_)), "{err}");
    let (recs, _) = lessor_journal::read_live::<Rec>(tmp.path()).unwrap();
    assert!(recs.is_empty());
}
