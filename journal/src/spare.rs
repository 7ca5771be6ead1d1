//! Preallocated segments. A segment file is filled with zeros and synced before the writer
//! needs it; the writer renames it into place and writes its records over the zeros. Every
//! later `fdatasync` of that file then flushes data only: its size and its blocks are already
//! durable (written, not merely reserved as `fallocate` would leave them), so the filesystem
//! has no inode to write. On this project's VM, with both cores busy and the writer real-time
//! around its syncs, that took a sync from p90 3.4 ms to 0.3 ms (docs/PERFORMANCE.md, "Syncing
//! on a busy VM"). Replay reads the zeros after the last record as the end of the segment (a
//! zero length is never a valid frame).
//!
//! One spare is kept ready by the `journal-prealloc` thread, so that a rotation under load
//! does not wait for 64 MiB of zeros; the first segment of a journal is filled on the opening
//! thread. A spare left by the last run (a process that was killed keeps it) is used by the
//! next, so restarts do not write it again: it only ever holds zeros, and one of full length
//! is whole. If a spare cannot be made (a full disk, say) the writer creates a plain segment as
//! before, and asks again at the next rotation.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use crossbeam_channel::{Receiver, Sender, TryRecvError};

use crate::fs::Fs;
use crate::journal::ThreadHook;
use crate::writer::Shared;

/// The spare's file name: a `*.tmp`, so that an open removes one left by a crash.
pub(crate) const SPARE_NAME: &str = "spare-segment.tmp";

/// Zeros are written and synced in pieces of this size, so that the spare's writeback comes
/// in small pieces between the writer's syncs rather than as one burst.
const PIECE: usize = 4 << 20;

/// A spare is made only while the filesystem has room for this many spares besides: on a
/// nearly full disk the zeros would take the space the records need.
const HEADROOM: u64 = 4;

/// Writes `len` zero bytes to a new file at `path` and syncs them, if the filesystem has room
/// for it several times over. On failure the partial file is removed, so that a full disk is
/// not made fuller by it.
pub(crate) fn zero_fill(fs: &dyn Fs, path: &Path, len: u64) -> io::Result<()> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let free = fs.available_space(dir)?;
    if free < len.saturating_mul(HEADROOM + 1) {
        return Err(io::Error::new(
            io::ErrorKind::StorageFull,
            format!("only {free} bytes free; a spare of {len} needs {HEADROOM} more beside it"),
        ));
    }
    let r = (|| {
        let mut f = fs.create(path)?;
        let zeros = vec![0u8; PIECE];
        let mut left = len;
        while left > 0 {
            let n = left.min(PIECE as u64) as usize;
            f.write_all(&zeros[..n])?;
            f.sync_data()?;
            left -= n as u64;
        }
        Ok(())
    })();
    if r.is_err() {
        let _ = fs.remove_file(path);
    }
    r
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// No spare, none asked for.
    None,
    /// The thread is making one.
    Asked,
    /// One is ready at `path`.
    Ready,
}

/// The writer's side of the `journal-prealloc` thread.
#[derive(Debug)]
pub(crate) struct Spares {
    fs: Arc<dyn Fs>,
    path: PathBuf,
    len: u64,
    state: State,
    ask: Option<Sender<()>>,
    done: Receiver<io::Result<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Spares {
    /// Starts the thread that makes spares of `len` bytes in `dir`. `ready`: a whole spare
    /// left by the last run is there, to be used first.
    pub(crate) fn spawn(
        fs: Arc<dyn Fs>,
        dir: &Path,
        len: u64,
        ready: bool,
        hook: Option<ThreadHook>,
        shared: Arc<Shared>,
    ) -> io::Result<Self> {
        let path = dir.join(SPARE_NAME);
        let (ask, asked) = crossbeam_channel::unbounded::<()>();
        let (done_tx, done) = crossbeam_channel::unbounded();
        let thread = {
            let (fs, path) = (fs.clone(), path.clone());
            std::thread::Builder::new()
                .name("journal-prealloc".into())
                .spawn(move || {
                    if let Some(hook) = hook {
                        (hook.0)();
                    }
                    while asked.recv().is_ok() {
                        let made = zero_fill(&*fs, &path, len);
                        let ok = made.is_ok();
                        if done_tx.send(made).is_err() {
                            return;
                        }
                        // After the send: whoever sees the count can rely on the writer
                        // finding the spare at its next rotation.
                        if ok {
                            shared.counters.spares.fetch_add(1, Ordering::Relaxed);
                        }
                    }
                })?
        };
        Ok(Spares {
            fs,
            path,
            len,
            state: if ready { State::Ready } else { State::None },
            ask: Some(ask),
            done,
            thread: Some(thread),
        })
    }

    /// Makes a spare on the calling thread (the first segment of a run, at open).
    pub(crate) fn fill_now(&mut self) {
        if self.state != State::None {
            return;
        }
        match zero_fill(&*self.fs, &self.path, self.len) {
            Ok(()) => self.state = State::Ready,
            Err(e) => self.no_spare(&e),
        }
    }

    fn no_spare(&self, e: &io::Error) {
        tracing::warn!(file = %self.path.display(), error = %e, "journal: cannot preallocate a segment; starting a plain one");
    }

    /// Has the thread make a spare, unless one is ready or on its way.
    pub(crate) fn ask(&mut self) {
        if self.state == State::None
            && let Some(ask) = &self.ask
            && ask.send(()).is_ok()
        {
            self.state = State::Asked;
        }
    }

    /// The ready spare's path, now the caller's to rename; `None` if there is none yet.
    pub(crate) fn take(&mut self) -> Option<PathBuf> {
        if self.state == State::Asked {
            match self.done.try_recv() {
                Ok(Ok(())) => self.state = State::Ready,
                Ok(Err(e)) => {
                    self.no_spare(&e);
                    self.state = State::None;
                }
                Err(TryRecvError::Empty) => {}
                Err(TryRecvError::Disconnected) => self.state = State::None,
            }
        }
        (self.state == State::Ready).then(|| {
            self.state = State::None;
            self.path.clone()
        })
    }
}

impl Drop for Spares {
    /// Stops the thread (after the spare it is making, if any), so that nothing writes in the
    /// directory once the writer is gone, and removes an unused spare.
    fn drop(&mut self) {
        self.ask = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        if self.take().is_some() {
            let _ = self.fs.remove_file(&self.path);
        }
    }
}
