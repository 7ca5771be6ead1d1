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
