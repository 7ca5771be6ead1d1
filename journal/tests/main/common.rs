//! Shared fixtures: a record type, a model fold, and helpers.

use std::collections::BTreeMap;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lessor_journal::testing::FaultyFs;
use lessor_journal::{Journal, Lane, Options, ReplayReport, Ticket};

pub(crate) use lessor_journal::testing::Rec;

/// A live record padded with `key % 7` bytes, so records differ in size.
pub(crate) fn rec(key: u32, version: u64) -> Rec {
    Rec::new(key, version).padded((key % 7) as usize, key as u8)
}

pub(crate) fn tomb(key: u32, version: u64) -> Rec {
    Rec::tomb(key, version)
}

/// The size of a record's frame on disk.
pub(crate) fn frame_len(r: &Rec) -> usize {
    let cfg = bincode::config::standard().with_fixed_int_encoding();
    8 + bincode::encode_to_vec(r, cfg).unwrap().len()
}

pub(crate) const DIR: &str = "/j";
pub(crate) const LONG: Duration = Duration::from_secs(60);

pub(crate) fn dir() -> PathBuf {
    PathBuf::from(DIR)
}

pub(crate) fn seg(n: u64) -> PathBuf {
    dir().join(format!("{n:016}.log"))
}

/// Small segments so tests rotate often; compaction only when asked.
pub(crate) fn opts(lanes: usize) -> Options {
    let mut o = Options::new(DIR, lanes);
    o.segment_bytes = 512;
    o.compact_bytes = u64::MAX;
    o.compact_segments = u64::MAX;
    o
}

/// The fold replay must produce: the highest version per key, tombstones dropped.
pub(crate) fn model<'a>(recs: impl IntoIterator<Item = &'a Rec>) -> BTreeMap<u32, Rec> {
    let mut m: BTreeMap<u32, Rec> = BTreeMap::new();
    for r in recs {
        if m.get(&r.key).is_none_or(|o| o.version < r.version) {
            m.insert(r.key, r.clone());
        }
    }
    m.retain(|_, r| r.live);
    m
}

pub(crate) fn open_with(
    fs: &FaultyFs,
    o: Options,
) -> lessor_journal::Result<(Journal<Rec>, BTreeMap<u32, Rec>, ReplayReport)> {
    let mut got = BTreeMap::new();
    let (j, rep) = Journal::open(o, Arc::new(fs.clone()), |r: Rec| {
        assert!(
            got.insert(r.key, r).is_none(),
            "replay called f twice for a key"
        );
    })?;
    Ok((j, got, rep))
}

pub(crate) fn open(fs: &FaultyFs, o: Options) -> (Journal<Rec>, BTreeMap<u32, Rec>, ReplayReport) {
    open_with(fs, o).expect("open")
}

/// Appends each of `recs` on `lane`, pushing it onto `all`; the last ticket of the lane.
pub(crate) fn append_all(
    lane: &mut Lane<Rec>,
    all: &mut Vec<Rec>,
    recs: impl IntoIterator<Item = Rec>,
) -> Ticket {
    for r in recs {
        lane.append(&r);
        all.push(r);
    }
    lane.last_ticket()
}

/// One record per key of `keys` (version 1), appended on `lane` and waited for.
pub(crate) fn durable_records(lane: &mut Lane<Rec>, keys: Range<u32>) -> Vec<Rec> {
    let mut recs = Vec::new();
    let t = append_all(lane, &mut recs, keys.clone().map(|i| rec(i, 1)));
    assert!(lane.wait_durable(t, LONG), "records {keys:?} not durable");
    recs
}

/// Opens the journal in `fs` and asserts it replays the model of `all`; shuts it down.
pub(crate) fn reopen_matches(fs: &FaultyFs, o: Options, all: &[Rec]) -> ReplayReport {
    let (j, got, rep) = open(fs, o);
    assert_eq!(got, model(all));
    j.shutdown().unwrap();
    rep
}

/// The live records of a filesystem image, read without opening for writing.
pub(crate) fn live(fs: &FaultyFs) -> BTreeMap<u32, Rec> {
    let (recs, _) = lessor_journal::read_live_with::<Rec>(fs, Path::new(DIR)).expect("read_live");
    recs.into_iter().map(|r| (r.key, r)).collect()
}

/// Polls `f` until it holds (up to a minute: a bound for a hung test, not a timing assertion).
pub(crate) fn eventually(mut f: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + LONG;
    while Instant::now() < deadline {
        if f() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    f()
}
