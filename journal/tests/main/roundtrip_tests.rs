//! Appends over several lanes, rotations, reopen: the fold equals the model.

use std::collections::BTreeMap;

use lessor_journal::testing::FaultyFs;
use lessor_journal::{Health, Journal, Options, SyncPolicy, Ticket};

use crate::common::*;

/// Four worker threads append to their own lanes (keys overlap within a lane, versions rise);
/// many rotations; shutdown; reopen folds to the model.
fn round_trip(policy: SyncPolicy) {
    let fs = FaultyFs::new();
    let mut o = opts(4);
    o.sync = policy;
    let (j, replayed, rep) = open(&fs, o.clone());
    assert!(replayed.is_empty());
    assert_eq!(rep.segments, 0);
    let all: Vec<Rec> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..4u32)
            .map(|k| {
                let mut lane = j.lane(k as usize);
                s.spawn(move || {
                    let mut mine = Vec::new();
                    let mut last = Ticket(0);
                    for i in 0..300u64 {
                        let key = k * 1000 + (i % 37) as u32;
                        let r = if i % 11 == 5 {
                            tomb(key, i + 1)
                        } else {
                            rec(key, i + 1)
                        };
                        last = lane.append(&r);
                        mine.push(r);
                        if i % 25 == 24 {
                            // Smaller batches, so the small segments rotate often.
                            assert!(lane.wait_durable(last, LONG));
                        }
                    }
                    assert!(lane.wait_durable(last, LONG));
                    assert_eq!(lane.durable(), last);
                    mine
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| h.join().unwrap())
            .collect()
    });
    let stats = j.stats();
    assert_eq!(stats.appended, 1200);
    assert!(stats.segments > 10, "expected many rotations: {stats:?}");
    assert_eq!(stats.health, Health::Ok);
    j.shutdown().unwrap();

    let (j, replayed, rep) = open(&fs, o);
    assert_eq!(replayed, model(&all));
    assert_eq!(rep.records_read, 1200);
    assert_eq!(rep.live, replayed.len() as u64);
    assert_eq!(rep.max_version, 300);
    assert!(rep.truncated.is_none());
    j.shutdown().unwrap();
}

#[test]
fn round_trip_group() {
    round_trip(SyncPolicy::Group);
}

#[test]
fn round_trip_interval() {
    round_trip(SyncPolicy::Interval(std::time::Duration::from_millis(5)));
}

#[test]
fn round_trip_none() {
    round_trip(SyncPolicy::None);
}

#[test]
fn round_trip_on_disk() {
    let tmp = tempfile::tempdir().unwrap();
    let mut o = Options::new(tmp.path(), 2);
    o.segment_bytes = 4096;
    let mut all = Vec::new();
    {
        let (j, _) =
            Journal::<Rec>::open_dir(o.clone(), |_| panic!("empty journal replays nothing"))
                .unwrap();
        let (mut a, mut b) = (j.lane(0), j.lane(1));
        let mut last = (Ticket(0), Ticket(0));
        for i in 0..500u64 {
            let r = rec((i % 100) as u32, i + 1);
            if i % 2 == 0 {
                last.0 = a.append(&r);
            } else {
                last.1 = b.append(&r);
            }
            all.push(r);
            if i % 50 == 49 {
                assert!(a.wait_durable(last.0, LONG) && b.wait_durable(last.1, LONG));
            }
        }
        j.shutdown().unwrap();
    }
    let mut got = BTreeMap::new();
    let (j, rep) = Journal::<Rec>::open_dir(o.clone(), |r| {
        got.insert(r.key, r);
    })
    .unwrap();
    assert_eq!(got, model(&all));
    assert!(rep.segments > 3);
    // A second writer on the same directory is refused.
    let err = Journal::<Rec>::open_dir(o, |_| {}).unwrap_err();
    assert!(matches!(err, lessor_journal::Error::Locked { .. }), "{err}");
    j.shutdown().unwrap();
}

#[test]
fn tickets_are_per_lane_and_monotonic() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(3));
    let mut a = j.lane(0);
    let mut b = j.lane(2);
    assert_eq!(a.durable(), Ticket(0));
    assert_eq!(a.append(&rec(1, 1)), Ticket(1));
    assert_eq!(a.append(&rec(1, 2)), Ticket(2));
    assert_eq!(b.append(&rec(2, 1)), Ticket(1));
    let mut seen = Ticket(0);
    let mut prev = Ticket(0);
    for v in 3..200 {
        let t = a.append(&rec(1, v));
        assert_eq!(t, Ticket(prev.0.max(2) + 1));
        prev = t;
        let d = a.durable();
        assert!(d >= seen, "durable went backwards: {d:?} < {seen:?}");
        assert!(d <= t);
        seen = d;
    }
    assert!(a.wait_durable(prev, LONG));
    assert!(b.wait_durable(Ticket(1), LONG));
    assert_eq!(b.durable(), Ticket(1));
    // A lane is handed out once.
    assert!(j.try_lane(0).is_err());
    assert!(j.try_lane(3).is_err());
    assert!(j.try_lane(1).is_ok());
    j.shutdown().unwrap();
}

#[test]
#[should_panic(expected = "already taken")]
fn taking_a_lane_twice_panics() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let _a = j.lane(0);
    let _b = j.lane(0);
}

#[test]
fn options_are_validated() {
    let fs = FaultyFs::new();
    assert!(open_with(&fs, opts(0)).is_err());
    let mut o = opts(1);
    o.segment_bytes = 10;
    assert!(open_with(&fs, o).is_err());
}

#[test]
fn reopen_without_shutdown_after_drop_keeps_everything() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let recs: Vec<Rec> = (0..50).map(|i| rec(i, 1)).collect();
    for r in &recs {
        lane.append(r);
    }
    // Dropping the journal still writes and syncs what was queued.
    drop(j);
    let (j, got, _) = open(&fs, opts(1));
    assert_eq!(got, model(&recs));
    // The lane of the dropped journal goes nowhere now.
    let t = lane.append(&rec(99, 1));
    assert!(t > lane.durable());
    j.shutdown().unwrap();
}

#[test]
fn handles_can_move_between_threads() {
    fn send_sync<T: Send + Sync>() {}
    fn send<T: Send>() {}
    send_sync::<lessor_journal::Journal<Rec>>();
    send::<lessor_journal::Lane<Rec>>();
    send_sync::<lessor_journal::Error>();
}
