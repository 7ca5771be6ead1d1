//! Property test against a model: random appends over lanes, compactions (explicit and
//! background), power losses and clean restarts. After a power loss every record that was
//! durable has its effect; after a clean restart the fold is exactly the model.

use std::collections::{BTreeMap, HashMap};

use lessor_journal::testing::FaultyFs;
use lessor_journal::{Journal, Lane, Options, Ticket};
use proptest::prelude::*;
use proptest::test_runner::Config;

use crate::common::*;

#[derive(Clone, Debug)]
enum Op {
    Append { lane: usize, key: u32, live: bool },
    Wait { lane: usize },
    Compact,
    PowerLoss,
    Restart,
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..3usize, 0..16u32, prop::bool::weighted(0.8)).prop_map(|(lane, key, live)| Op::Append { lane, key, live }),
        3 => (0..3usize).prop_map(|lane| Op::Wait { lane }),
        1 => Just(Op::Compact),
        1 => Just(Op::PowerLoss),
        1 => Just(Op::Restart),
    ]
}

fn options() -> Options {
    let mut o = opts(3);
    o.segment_bytes = 256;
    o.compact_bytes = 1024;
    o
}

struct World {
    fs: FaultyFs,
    journal: Option<Journal<Rec>>,
    lanes: Vec<Lane<Rec>>,
    /// Records appended in this incarnation, per lane, by ticket - 1.
    appended: Vec<Vec<Rec>>,
    /// Every record ever appended, by (key, version).
    all: HashMap<(u32, u64), Rec>,
    /// Highest version per key known durable (a power loss must not take it away).
    durable: HashMap<u32, u64>,
    /// The state recovered at the last reopen.
    baseline: BTreeMap<u32, Rec>,
    version: HashMap<u32, u64>,
}

impl World {
    fn start(&mut self) -> BTreeMap<u32, Rec> {
        let (j, got, _) = open(&self.fs, options());
        self.lanes = (0..3).map(|k| j.lane(k)).collect();
        self.appended = vec![Vec::new(); 3];
        self.journal = Some(j);
        got
    }

    fn expected(&self) -> BTreeMap<u32, Rec> {
        model(self.baseline.values().chain(self.appended.iter().flatten()))
    }

    fn record_durable(&mut self) {
        for (lane, recs) in self.lanes.iter().zip(&self.appended) {
            let d = lane.durable().0 as usize;
            for r in &recs[..d] {
                let v = self.durable.entry(r.key).or_default();
                *v = (*v).max(r.version);
            }
        }
    }

    fn check_after_power_loss(&self, got: &BTreeMap<u32, Rec>) -> Result<(), TestCaseError> {
        for (k, r) in got {
            prop_assert_eq!(
                Some(r),
                self.all.get(&(*k, r.version)),
                "replayed a record never appended"
            );
            prop_assert!(r.live);
            let d = self.durable.get(k).copied().unwrap_or(0);
            prop_assert!(
                r.version >= d,
                "key {} replayed at version {} but {} was durable",
                k,
                r.version,
                d
            );
        }
        for (k, d) in &self.durable {
            if !got.contains_key(k) {
                prop_assert!(
                    self.all
                        .values()
                        .any(|r| r.key == *k && !r.live && r.version >= *d),
                    "key {} lost: version {} was durable",
                    k,
                    d
                );
            }
        }
        Ok(())
    }
}

proptest! {
    #![proptest_config(Config { cases: 48, failure_persistence: None, ..Config::default() })]

    #[test]
    fn fold_matches_the_model_through_compactions_and_crashes(ops in prop::collection::vec(op(), 1..90)) {
        let mut w = World {
            fs: FaultyFs::new(),
            journal: None,
            lanes: Vec::new(),
            appended: Vec::new(),
            all: HashMap::new(),
            durable: HashMap::new(),
            baseline: BTreeMap::new(),
            version: HashMap::new(),
        };
        w.start();
        for op in ops {
            match op {
                Op::Append { lane, key, live } => {
                    let v = w.version.entry(key).or_default();
                    *v += 1;
                    let r = if live { rec(key, *v) } else { tomb(key, *v) };
                    let t = w.lanes[lane].append(&r);
                    w.appended[lane].push(r.clone());
                    prop_assert_eq!(t, Ticket(w.appended[lane].len() as u64));
                    w.all.insert((key, r.version), r);
                }
                Op::Wait { lane } => {
                    let t = Ticket(w.appended[lane].len() as u64);
                    prop_assert!(w.lanes[lane].wait_durable(t, LONG));
                }
                Op::Compact => {
                    w.journal.as_ref().unwrap().compact_blocking().unwrap();
                }
                Op::PowerLoss => {
                    w.record_durable();
                    let img = w.fs.crash_image();
                    w.lanes.clear();
                    drop(w.journal.take());
                    w.fs = img;
                    let got = w.start();
                    w.check_after_power_loss(&got)?;
                    w.baseline = got;
                }
                Op::Restart => {
                    w.lanes.clear();
                    w.journal.take().unwrap().shutdown().unwrap();
                    let want = w.expected();
                    let got = w.start();
                    prop_assert_eq!(&got, &want);
                    for r in got.values() {
                        let v = w.durable.entry(r.key).or_default();
                        *v = (*v).max(r.version);
                    }
                    w.baseline = got;
                }
            }
        }
        w.lanes.clear();
        w.journal.take().unwrap().shutdown().unwrap();
        let want = w.expected();
        let got = w.start();
        prop_assert_eq!(&got, &want);
        w.journal.take().unwrap().shutdown().unwrap();
    }
}
