//! The state directory: its lock, its journal directory and the journal's options.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use crate::config::{Config, SyncMode};
use crate::error::{Error, Result};

/// The journal directory inside the state directory.
pub fn journal_dir(state_dir: &Path) -> PathBuf {
    state_dir.join("journal")
}

/// Takes the state directory's lock file, so two servers (or a server and an offline journal
/// tool) never write one journal. Held until the returned file is dropped.
pub fn lock_state_dir(state_dir: &Path) -> Result<File> {
    std::fs::create_dir_all(state_dir).map_err(|source| Error::CreateStateDir {
        path: state_dir.to_owned(),
        source,
    })?;
    let path = state_dir.join("lessor.lock");
    let f = match File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
    {
        Ok(f) => f,
        Err(source) => {
            return Err(Error::Io {
                action: "open",
                path,
                source,
            });
        }
    };
    match f.try_lock() {
        Ok(()) => Ok(f),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::StateDirInUse {
            state_dir: state_dir.to_owned(),
            lock: path,
        }),
        Err(std::fs::TryLockError::Error(source)) => Err(Error::Io {
            action: "lock",
            path,
            source,
        }),
    }
}

/// Journal options from the config.
pub fn journal_options(config: &Config, lanes: usize) -> lessor_journal::Options {
    let mut o = lessor_journal::Options::new(journal_dir(&config.state_dir), lanes);
    o.sync = match config.journal.sync {
        SyncMode::Group => lessor_journal::SyncPolicy::Group,
        SyncMode::Interval { interval_ms } => {
            lessor_journal::SyncPolicy::Interval(Duration::from_millis(interval_ms))
        }
        SyncMode::None => lessor_journal::SyncPolicy::None,
    };
    // Compaction is background work: on a core it shares with a worker it should take the
    // core while the worker waits, not from it. Nice 10 weighs it at about a tenth of a
    // worker, so it still finishes under full load.
    o.on_background_start = Some(lessor_journal::ThreadHook(Arc::new(|| {
        if let Err(e) = lessor_net::set_current_thread_nice(BACKGROUND_NICE) {
            tracing::warn!(error = %e, "cannot lower a journal background thread's priority");
        }
    })));
    o.preallocate = config.journal.preallocate;
    if config.journal.realtime_sync {
        o.around_sync = Some(realtime_sync());
    }
    o
}

/// The nice value of the journal's compaction and preallocation threads and of the control
/// server's threads.
pub(crate) const BACKGROUND_NICE: i32 = 10;

/// The writer's real-time priority while it waits in `fdatasync`: the lowest, since all it
/// must beat is the normal class.
const SYNC_RT_PRIORITY: i32 = 1;

/// Hooks that put the journal writer in the real-time class for the length of each
/// `fdatasync`. On a machine whose cores are busy (workers, the load itself), a normal thread
/// woken by the disk waits for the scheduler's next slot, up to a tick of several
/// milliseconds, and every ACK waits with it; a real-time one runs at once. Outside the sync
/// the writer drains channels whose senders it could otherwise preempt mid-send (they spin
/// and yield, which a real-time thread never lets a normal one do), so the class is left the
/// moment the sync returns. If the kernel refuses (no `CAP_SYS_NICE`), lessor warns once and
/// stops asking.
fn realtime_sync() -> (lessor_journal::ThreadHook, lessor_journal::ThreadHook) {
    // Both hooks run on the writer thread, one after the other: while the kernel has not
    // refused, `before` has entered the class and `after` leaves it.
    let refused = Arc::new(AtomicBool::new(false));
    let before = {
        let refused = refused.clone();
        lessor_journal::ThreadHook(Arc::new(move || {
            if !refused.load(Ordering::Relaxed)
                && let Err(e) = lessor_net::set_current_thread_realtime(Some(SYNC_RT_PRIORITY))
            {
                refused.store(true, Ordering::Relaxed);
                tracing::warn!(error = %e, "journal.realtime_sync: the kernel refuses a real-time class; syncing in the normal class (ACKs may wait a scheduler tick more on a busy machine)");
            }
        }))
    };
    let after = lessor_journal::ThreadHook(Arc::new(move || {
        if !refused.load(Ordering::Relaxed)
            && let Err(e) = lessor_net::set_current_thread_realtime(None)
        {
            tracing::error!(error = %e, "cannot return the journal writer to the normal class");
        }
    }));
    (before, after)
}

#[cfg(test)]
mod tests {
    /// The hooks put the calling thread in the real-time class and take it out again (or,
    /// without the privilege, leave it alone).
    #[test]
    fn realtime_sync_hooks_enter_and_leave_the_realtime_class() {
        std::thread::spawn(|| {
            let (before, after) = super::realtime_sync();
            assert!(!lessor_net::current_thread_is_realtime());
            let allowed = lessor_net::set_current_thread_realtime(Some(1)).is_ok();
            lessor_net::set_current_thread_realtime(None).unwrap();
            for _ in 0..3 {
                (before.0)();
                assert_eq!(lessor_net::current_thread_is_realtime(), allowed);
                (after.0)();
                assert!(!lessor_net::current_thread_is_realtime());
            }
        })
        .join()
        .unwrap();
    }
}
