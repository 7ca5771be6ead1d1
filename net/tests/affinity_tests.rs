//! Pinning a thread to a core, checked against what the kernel reports back.

use lessor_net::{Error, available_cores, pin_current_thread};
use nix::sched::{CpuSet, sched_getaffinity};
use nix::unistd::Pid;

/// `Cpus_allowed_list` of `/proc/self/status` (the main thread's mask, e.g. "0-3,8"), expanded.
fn proc_allowed_cores() -> Vec<usize> {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let list = status
        .lines()
        .find_map(|l| l.strip_prefix("Cpus_allowed_list:"))
        .expect("Cpus_allowed_list in /proc/self/status")
        .trim();
    let mut cores = Vec::new();
    for part in list.split(',') {
        let (lo, hi) = part.split_once('-').unwrap_or((part, part));
        let (lo, hi): (usize, usize) = (lo.parse().expect("core"), hi.parse().expect("core"));
        cores.extend(lo..=hi);
    }
    cores
}

#[test]
fn available_cores_is_the_process_mask() {
    let cores = available_cores();
    assert!(!cores.is_empty());
    assert_eq!(cores, proc_allowed_cores());
}

#[test]
fn pin_to_the_first_allowed_core_and_read_it_back() {
    let cores = available_cores();
    let first = cores[0];
    // On a thread of its own: the pin must not outlive the test on a harness thread.
    std::thread::spawn(move || {
        pin_current_thread(first).expect("pin");
        let set = sched_getaffinity(Pid::from_raw(0)).expect("sched_getaffinity");
        let pinned: Vec<usize> = (0..CpuSet::count())
            .filter(|&c| set.is_set(c).expect("in range"))
            .collect();
        assert_eq!(pinned, [first]);
        // Pinning a worker does not change what the process may use.
        assert_eq!(available_cores(), cores);
    })
    .join()
    .expect("pinned thread");
}

#[test]
fn pinning_to_a_core_outside_the_mask_fails() {
    let cores = available_cores();
    // The first core id the process may not use (absent or offline), and ids a cpu_set_t
    // cannot hold.
    let outside = (0..CpuSet::count())
        .find(|c| !cores.contains(c))
        .expect("a machine without 1024 usable cores");
    std::thread::spawn(move || {
        for core in [outside, CpuSet::count(), usize::MAX] {
            let err = pin_current_thread(core).expect_err("no such core");
            assert!(
                matches!(err, Error::Affinity { core: c, .. } if c == core),
                "{err:?}"
            );
            assert_eq!(
                err.io_error().and_then(|e| e.raw_os_error()),
                Some(libc::EINVAL)
            );
        }
    })
    .join()
    .expect("thread");
}

#[test]
fn nice_value_is_per_thread() {
    let before = lessor_net::current_thread_nice().unwrap();
    let inside = std::thread::spawn(move || {
        let target = (before + 7).min(19);
        lessor_net::set_current_thread_nice(target).unwrap();
        (target, lessor_net::current_thread_nice().unwrap())
    })
    .join()
    .unwrap();
    assert_eq!(inside.0, inside.1, "the thread's own nice value");
    assert_ne!(inside.1, before, "the value changed");
    assert_eq!(
        lessor_net::current_thread_nice().unwrap(),
        before,
        "another thread's change left this one alone"
    );
}

#[test]
fn realtime_class_is_per_thread_and_returns_to_normal_with_the_nice_value_kept() {
    let nice_before = lessor_net::current_thread_nice().unwrap();
    let inside = std::thread::spawn(move || {
        lessor_net::set_current_thread_nice((nice_before + 3).min(19)).unwrap();
        let nice = lessor_net::current_thread_nice().unwrap();
        match lessor_net::set_current_thread_realtime(Some(1)) {
            Ok(()) => {}
            Err(e) => {
                // Without CAP_SYS_NICE (not root) the kernel refuses, and says so.
                assert!(matches!(e, Error::Scheduler { .. }), "{e:?}");
                assert_eq!(
                    e.io_error().and_then(|e| e.raw_os_error()),
                    Some(libc::EPERM)
                );
                return None;
            }
        }
        let during = lessor_net::current_thread_is_realtime();
        lessor_net::set_current_thread_realtime(None).unwrap();
        Some((
            during,
            lessor_net::current_thread_is_realtime(),
            nice,
            lessor_net::current_thread_nice().unwrap(),
        ))
    })
    .join()
    .unwrap();
    if let Some((during, after, nice, nice_after)) = inside {
        assert!(during, "SCHED_FIFO while set");
        assert!(!after, "SCHED_OTHER again");
        assert_eq!(nice, nice_after, "the nice value survives the round trip");
    }
    assert!(
        !lessor_net::current_thread_is_realtime(),
        "another thread's class left this one alone"
    );
}
