//! Shared fixtures: a record type, a model fold, and helpers.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use lessor_journal::testing::FaultyFs;
use lessor_journal::{Journal, Options, ReplayReport};

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
