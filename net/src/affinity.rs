//! Pinning worker threads to cores, so worker `k` stays on one core with its socket's traffic.

use nix::sched::{CpuSet, sched_getaffinity, sched_setaffinity};
use nix::unistd::Pid;

use crate::error::{Error, Result};

/// Pin the calling thread to core `core` (`sched_setaffinity(0, {core})`).
///
/// Fails with [`Error::Affinity`] when `core` is not a core this thread may run on (outside the
/// cpuset of its cgroup, offline, or beyond the 1024 a `cpu_set_t` holds): `EINVAL`.
pub fn pin_current_thread(core: usize) -> Result<()> {
    let err = |e: nix::errno::Errno| Error::Affinity {
        core,
        source: e.into(),
    };
    let mut set = CpuSet::new();
    set.set(core).map_err(err)?;
    sched_setaffinity(Pid::from_raw(0), &set).map_err(err)
}

/// Sets the calling thread's nice value (`setpriority(PRIO_PROCESS, gettid(), nice)`; on
/// Linux a nice value belongs to the thread). Background threads that must not take a core
/// from a worker when they share it (journal compaction) run at a higher nice value: the
/// scheduler then gives them the core mostly while the worker waits.
///
/// Fails with [`Error::Priority`]; raising the value (lower priority) needs no privilege.
pub fn set_current_thread_nice(nice: i32) -> Result<()> {
    // SAFETY: gettid has no preconditions and cannot fail.
    let tid = unsafe { libc::gettid() };
    // SAFETY: setpriority takes plain integers and only reads them; `tid` is this thread's
    // id, so it cannot name another process.
    let rc = unsafe { libc::setpriority(libc::PRIO_PROCESS, tid as libc::id_t, nice) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Priority {
            nice,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// The nice value of the calling thread (`getpriority`), for tests and logs.
pub fn current_thread_nice() -> Result<i32> {
    // SAFETY: as in `set_current_thread_nice`.
    let tid = unsafe { libc::gettid() };
    // getpriority returns -1 both as a value and on error: errno tells them apart.
    nix::errno::Errno::clear();
    // SAFETY: plain integer arguments; the call only reads them.
    let value = unsafe { libc::getpriority(libc::PRIO_PROCESS, tid as libc::id_t) };
    if value == -1 && nix::errno::Errno::last_raw() != 0 {
        return Err(Error::Priority {
            nice: value,
            source: std::io::Error::last_os_error(),
        });
    }
    Ok(value)
}

/// Puts the calling thread in the real-time class (`SCHED_FIFO` at `priority`, 1 to 99) or,
/// with `None`, back in the normal one (`SCHED_OTHER`, its nice value unchanged).
///
/// The journal writer holds the real-time class only while it is blocked in `fdatasync`: on a
/// machine whose cores are busy, a normal thread woken by the disk waits for the scheduler's
/// next slot (up to a tick, several milliseconds), and every acknowledgement waits with it. A
/// thread that is real-time only while it sleeps on the device cannot take a core from anyone.
///
/// Fails with [`Error::Scheduler`]: entering the real-time class needs `CAP_SYS_NICE` or an
/// `RLIMIT_RTPRIO` of at least `priority`.
pub fn set_current_thread_realtime(priority: Option<i32>) -> Result<()> {
    let (policy, name, prio) = match priority {
        Some(p) => (libc::SCHED_FIFO, "SCHED_FIFO", p),
        None => (libc::SCHED_OTHER, "SCHED_OTHER", 0),
    };
    let param = libc::sched_param {
        sched_priority: prio,
    };
    // SAFETY: pid 0 names the calling thread; `param` is a valid, initialised sched_param that
    // outlives the call, which only reads it.
    let rc = unsafe { libc::sched_setscheduler(0, policy, &param) };
    if rc == 0 {
        Ok(())
    } else {
        Err(Error::Scheduler {
            policy: name,
            source: std::io::Error::last_os_error(),
        })
    }
}

/// Whether the calling thread is in a real-time class (`SCHED_FIFO` or `SCHED_RR`), for tests
/// and logs.
pub fn current_thread_is_realtime() -> bool {
    // SAFETY: pid 0 names the calling thread; the call takes no pointer.
    let policy = unsafe { libc::sched_getscheduler(0) };
    policy == libc::SCHED_FIFO || policy == libc::SCHED_RR
}

/// The cores the process may run on, ascending: the affinity mask of its main thread (the
/// thread whose id is the process id), as `taskset` or a cgroup cpuset left it. Worker `k` pins
/// to `cores[k % cores.len()]`.
///
/// Read it before the main thread pins itself, if it ever does. Empty only if the kernel will
/// not report the mask, in which case nothing should be pinned.
pub fn available_cores() -> Vec<usize> {
    match sched_getaffinity(Pid::this()) {
        Ok(set) => (0..CpuSet::count())
            .filter(|&c| set.is_set(c).unwrap_or(false))
            .collect(),
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the process's CPU affinity");
            Vec::new()
        }
    }
}
