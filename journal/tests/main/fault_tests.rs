//! Group commit and IO errors: nothing is reported durable that a power loss could take away.

use std::collections::BTreeSet;
use std::time::Duration;

use lessor_journal::testing::{FaultyFs, SyncFault};
use lessor_journal::{Health, SyncPolicy, Ticket};

use crate::common::*;

/// Each appender thread, every few appends, reads its watermark and then takes a power-loss
/// image: every record up to the watermark must be in it.
#[test]
fn durable_never_exceeds_what_was_synced() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(2));
    let checks: Vec<(u32, Ticket, FaultyFs)> = std::thread::scope(|s| {
        let hs: Vec<_> = (0..2u32)
            .map(|k| {
                let mut lane = j.lane(k as usize);
                let fs = fs.clone();
                s.spawn(move || {
                    let mut checks = Vec::new();
                    for i in 1..=600u32 {
                        // Key = lane * 100000 + ticket: one record per key.
                        let t = lane.append(&rec(k * 100_000 + i, 1));
                        assert_eq!(t, Ticket(i as u64));
                        if i % 40 == 0 {
                            let d = lane.durable();
                            checks.push((k, d, fs.crash_image()));
                        }
                        if i % 120 == 0 {
                            // Let the watermark move; the other lane keeps appending.
                            assert!(lane.wait_durable(t, LONG));
                        }
                    }
                    assert!(lane.wait_durable(Ticket(600), LONG));
                    checks.push((k, lane.durable(), fs.crash_image()));
                    checks
                })
            })
            .collect();
        hs.into_iter().flat_map(|h| h.join().unwrap()).collect()
    });
    let syncs_seen = fs.syncs();
    let stats = j.stats();
    j.shutdown().unwrap();
    assert!(stats.syncs <= syncs_seen);
    assert!(stats.batches < 1200, "no batching happened: {stats:?}");
    let mut nonzero = 0;
    for (k, d, img) in checks {
        let got = live(&img);
        for t in 1..=d.0 as u32 {
            assert!(
                got.contains_key(&(k * 100_000 + t)),
                "lane {k} ticket {t} durable ({d:?}) but lost"
            );
        }
        nonzero += usize::from(d.0 > 0);
    }
    assert!(nonzero > 2);
}

/// A failing sync holds the watermark; the retry goes to a new segment; once syncs work
/// again everything becomes durable and survives a power loss.
#[test]
fn failed_sync_holds_the_watermark_until_a_retry_succeeds() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let t0 = lane.append(&rec(1, 1));
    assert!(lane.wait_durable(t0, LONG));
    let seg_before = j.stats().active_segment;

    fs.fail_syncs(SyncFault::UntilCleared, Some(".log"));
    let t1 = lane.append(&rec(2, 1));
    assert!(fs.wait_failed_syncs(1, LONG));
    assert!(eventually(|| matches!(j.health(), Health::Failing { .. })));
    assert!(lane.durable() < t1);
    let t2 = lane.append(&rec(3, 1));
    // The retry (a new segment, whose header sync fails too) does not publish either.
    assert!(fs.wait_failed_syncs(2, LONG));
    assert!(lane.durable() < t1);
    assert!(!lane.wait_durable(t1, Duration::from_millis(50)));
    // A power loss now keeps t0 and replays cleanly (the unsynced tail is zeros on "disk").
    let img = fs.crash_image();
    assert!(live(&img).contains_key(&1));

    fs.clear_faults();
    assert!(lane.wait_durable(t2, LONG));
    assert!(eventually(|| j.health() == Health::Ok));
    let st = j.stats();
    assert!(st.write_failures >= 2, "{st:?}");
    assert!(
        st.active_segment > seg_before,
        "retry must use a new segment: {st:?}"
    );
    assert!(st.last_error.is_some());
    let got = live(&fs.crash_image());
    assert_eq!(
        got.keys().copied().collect::<BTreeSet<_>>(),
        BTreeSet::from([1, 2, 3])
    );
    j.shutdown().unwrap();
    let (j, got, _) = open(&fs, opts(1));
    assert_eq!(got.len(), 3);
    j.shutdown().unwrap();
}

/// One failed fsync, after which the kernel reports the same file clean: a writer that simply
/// synced the same file again would publish data that is zeros on disk.
#[test]
fn one_failed_fsync_does_not_lose_the_batch() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    fs.fail_syncs(SyncFault::Times(1), Some(".log"));
    let recs = durable_records(&mut lane, 0..5);
    assert_eq!(fs.failed_syncs(), 1);
    assert_eq!(live(&fs.crash_image()), model(&recs));
    j.shutdown().unwrap();
}

/// Short writes and a full disk: health fails, nothing is published, and after space is
/// freed the records are durable; the abandoned partial write is ignored on replay.
#[test]
fn short_write_and_enospc_recover_in_a_new_segment() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let mut all = vec![rec(1, 1)];
    let t = lane_append(&mut lane, &all[0]);
    assert!(lane.wait_durable(t, LONG));

    fs.short_next_write(5, Some(".log"));
    all.push(rec(2, 1));
    let t = lane_append(&mut lane, &all[1]);
    // The retry after a short write succeeds by itself.
    assert!(lane.wait_durable(t, LONG));

    fs.set_space_limit(Some(fs.used_bytes() + 10));
    all.push(rec(3, 1));
    let t = lane_append(&mut lane, &all[2]);
    assert!(eventually(|| matches!(j.health(), Health::Failing { .. })));
    assert!(lane.durable() < t);
    fs.set_space_limit(None);
    assert!(lane.wait_durable(t, LONG));
    assert!(eventually(|| j.health() == Health::Ok));
    j.shutdown().unwrap();

    let (j, got, rep) = open(&fs, opts(1));
    assert_eq!(got, model(&all));
    assert!(rep.abandoned_bytes >= 5, "{rep:?}");
    j.shutdown().unwrap();
    let v = lessor_journal::verify_with(&fs, &dir()).unwrap();
    assert!(v.is_clean(), "{v:#?}");
}

fn lane_append(lane: &mut lessor_journal::Lane<Rec>, r: &Rec) -> Ticket {
    lane.append(r)
}

/// Shutdown while the disk refuses: an error, never a silent loss.
#[test]
fn shutdown_reports_records_that_never_became_durable() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    fs.fail_syncs(SyncFault::UntilCleared, None);
    let t = lane.append(&rec(1, 1));
    assert!(fs.wait_failed_syncs(1, LONG));
    let err = j.shutdown().unwrap_err();
    assert!(
        matches!(err, lessor_journal::Error::NotDurable { records: 1, .. }),
        "{err}"
    );
    assert!(lane.durable() < t);
}

/// Interval and None publish after the write; the data are in the page cache (a process
/// crash keeps them) and shutdown syncs.
#[test]
fn interval_and_none_publish_after_write() {
    for policy in [
        SyncPolicy::Interval(Duration::from_secs(3600)),
        SyncPolicy::None,
    ] {
        let fs = FaultyFs::new();
        let mut o = opts(1);
        o.sync = policy;
        o.segment_bytes = 1 << 20;
        // The preallocation thread syncs its zeros: only the writer's syncs count here.
        o.preallocate = false;
        let (j, _, _) = open(&fs, o.clone());
        let mut lane = j.lane(0);
        let syncs = fs.syncs();
        let t = lane.append(&rec(1, 1));
        assert!(lane.wait_durable(t, LONG));
        assert_eq!(fs.syncs(), syncs, "{policy:?} synced a batch");
        assert!(live(&fs.disk_image()).contains_key(&1));
        j.shutdown().unwrap();
        assert!(
            live(&fs.crash_image()).contains_key(&1),
            "{policy:?}: shutdown must sync"
        );
    }
}

/// `Lane::backlog` counts what is appended and not durable: it grows while syncs fail and
/// falls to zero once they work again (the server stops taking writes past a bound on it).
#[test]
fn backlog_grows_while_syncs_fail_and_drains_after() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let t = lane.append(&rec(1, 1));
    assert!(lane.wait_durable(t, LONG));
    assert_eq!(lane.backlog(), 0);
    fs.fail_syncs(SyncFault::UntilCleared, None);
    let mut last = t;
    for i in 2..=50u32 {
        last = lane.append(&rec(i, 1));
    }
    assert!(!lane.wait_durable(last, Duration::from_millis(300)));
    assert_eq!(lane.backlog(), 49, "every record since the failure is held");
    fs.clear_faults();
    assert!(
        lane.wait_durable(last, LONG),
        "durable again once syncs work"
    );
    assert_eq!(lane.backlog(), 0);
    j.shutdown().unwrap();
}

/// Segments come preallocated: the first from the open, the later ones from the spare the
/// background thread keeps ready. A power loss keeps every durable record, and the journal
/// reads back whole.
#[test]
fn rotations_take_the_preallocated_spare() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    assert_eq!(j.stats().preallocated, 1);
    let mut lane = j.lane(0);
    let mut recs = Vec::new();
    for i in 0..200u32 {
        let t = append_all(&mut lane, &mut recs, [rec(i, 1)]);
        assert!(lane.wait_durable(t, LONG));
        // Give the spare thread its turn, as the time between rotations would: a spare is
        // ready once one more is made than started (the first segment's is not counted).
        assert!(eventually(|| {
            let st = j.stats();
            st.spares >= st.preallocated
        }));
    }
    let st = j.stats();
    assert!(st.active_segment > 5, "{st:?}");
    assert_eq!(
        st.preallocated, st.active_segment,
        "every segment preallocated: {st:?}"
    );
    assert_eq!(live(&fs.crash_image()), model(&recs));
    j.shutdown().unwrap();
    assert!(!fs.file_names(&dir()).iter().any(|n| n.ends_with(".tmp")));
    assert!(lessor_journal::verify_with(&fs, &dir()).unwrap().is_clean());
    let (_j, got, rep) = open(&fs, opts(1));
    assert_eq!(got, model(&recs));
    assert_eq!(rep.abandoned_bytes, 0);
    assert_eq!(rep.truncated, None);
}

/// With too little space for a spare and its headroom, the journal does not make the disk
/// fuller: it starts plain segments and leaves no spare behind.
#[test]
fn no_spare_on_a_nearly_full_disk() {
    let fs = FaultyFs::new();
    let mut o = opts(1);
    o.segment_bytes = 4096;
    fs.set_space_limit(Some(4096 * 4));
    let (j, _, _) = open(&fs, o.clone());
    assert_eq!(j.stats().preallocated, 0);
    let mut lane = j.lane(0);
    let t = lane.append(&rec(1, 1));
    assert!(lane.wait_durable(t, LONG));
    j.shutdown().unwrap();
    assert!(!fs.file_names(&dir()).iter().any(|n| n.ends_with(".tmp")));
    fs.set_space_limit(None);
    let (j, got, _) = open(&fs, o);
    // The open resumes the plain segment; with room again, a spare is made for the next.
    assert!(
        eventually(|| j.stats().spares == 1),
        "with room again, it preallocates: {:?}",
        j.stats()
    );
    assert_eq!(got.len(), 1);
}

/// Whether `fd` is readable within `ms` milliseconds.
fn rings(bell: &lessor_journal::Doorbell, ms: u16) -> bool {
    use nix::poll::{PollFd, PollFlags, poll};
    use std::os::fd::AsFd;
    let mut fds = [PollFd::new(bell.as_fd(), PollFlags::POLLIN)];
    poll(&mut fds, ms).unwrap() == 1
}

/// The doorbell rings once the watermark passes an armed ticket, not while syncs fail, not
/// when nobody armed it, and a disarm consumes the ring.
#[test]
fn doorbell_rings_when_the_watermark_moves_and_only_then() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let t0 = lane.append(&rec(1, 1));
    assert!(lane.wait_durable(t0, LONG));
    let bell = lane.doorbell().unwrap();
    assert!(!bell.arm(t0), "already durable: no sleep");
    assert!(!rings(&bell, 0));

    // Not armed: a publish does not ring.
    let t1 = lane.append(&rec(2, 1));
    assert!(lane.wait_durable(t1, LONG));
    assert!(!rings(&bell, 20));

    // Armed while syncs fail: the watermark stays and the bell is silent.
    fs.fail_syncs(SyncFault::UntilCleared, Some(".log"));
    let t2 = lane.append(&rec(3, 1));
    assert!(bell.arm(t2));
    assert!(fs.wait_failed_syncs(1, LONG));
    assert!(!rings(&bell, 50));
    assert!(lane.durable() < t2);

    // The retry succeeds: one ring, and after the disarm the bell is quiet again.
    fs.clear_faults();
    assert!(rings(&bell, 10_000));
    assert!(lane.durable() >= t2);
    bell.disarm();
    assert!(!rings(&bell, 0));
    j.shutdown().unwrap();
}

/// A record that cannot be stored (here: larger than `MAX_RECORD_LEN`) is refused on its
/// lane: it is not written, that lane's watermark never passes it (fail closed: nothing
/// later from it is acknowledged either), health says which record, and the other lanes go
/// on.
#[test]
fn a_refused_record_stops_its_lane_short_of_it_and_only_its_lane() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(2));
    let (mut a, mut b) = (j.lane(0), j.lane(1));
    let big = Rec::new(2, 1).padded(lessor_journal::MAX_RECORD_LEN, 0);
    let t1 = a.append(&rec(1, 1));
    assert_eq!(a.append(&big), Ticket(2));
    let t3 = a.append(&rec(3, 1));
    let tb = b.append(&rec(4, 1));
    assert!(b.wait_durable(tb, LONG), "the other lane goes on");
    // Appended after `tb` was synced, so the batch that holds it also holds all of lane 0.
    let tb = b.append(&rec(5, 1));
    assert!(b.wait_durable(tb, LONG));
    assert!(
        a.wait_durable(t1, LONG),
        "what came before the refused record is durable"
    );
    assert!(!a.wait_durable(t3, Duration::from_millis(50)));
    assert_eq!(
        a.durable(),
        t1,
        "the watermark stops short of the refused record"
    );
    match j.health() {
        Health::Failing { error } => assert!(error.contains("lane 0 record 2"), "{error}"),
        h => panic!("health {h:?}"),
    }
    j.shutdown().unwrap();
    let got = live(&fs);
    assert!(
        !got.contains_key(&2),
        "the refused record is not in the journal"
    );
    assert!(got.contains_key(&1) && got.contains_key(&4));
}

/// After shutdown a lane takes records without error; they go nowhere and never become
/// durable, and replay finds only what came before.
#[test]
fn appends_after_shutdown_go_nowhere() {
    let fs = FaultyFs::new();
    let (j, _, _) = open(&fs, opts(1));
    let mut lane = j.lane(0);
    let t1 = lane.append(&rec(1, 1));
    j.shutdown().unwrap();
    assert!(lane.durable() >= t1, "shutdown syncs what was queued");
    let t2 = lane.append(&rec(2, 1));
    assert_eq!(t2, Ticket(2));
    assert!(!lane.wait_durable(t2, Duration::from_millis(20)));
    let got = live(&fs);
    assert_eq!(got.keys().copied().collect::<Vec<_>>(), vec![1]);
}
