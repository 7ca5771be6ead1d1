//! `FaultyFs`: an in-memory filesystem that tears writes, fails syncs, runs out of space,
//! flips bits, blocks writes, and crashes, for tests of the journal and of its users.
//!
//! It keeps two states of every file: what a reader sees (the page cache) and what would
//! survive a power loss (the bytes up to the last successful `sync_data`, and the directory
//! entries as of the last `sync_dir`). [`FaultyFs::crash_image`] is the filesystem after a
//! power loss at this instant; [`FaultyFs::disk_image`] is the filesystem after a process
//! crash (everything written reached the disk).
//!
//! A failed `sync_data` behaves like Linux's: the dirty pages are dropped and marked clean, so
//! the data written since the last good sync is zeros in a crash image even if a later sync of
//! the same file succeeds. A writer that retries fsync on the same file would be caught.
//!
//! [`Rec`] is a record type for tests that need one.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::io;
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

use crate::fs::{DirLock, Fs, FsFile};

mod rec;

pub use rec::Rec;

/// How many syncs to fail.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncFault {
    /// The next `n` matching syncs fail.
    Times(u64),
    /// Every matching sync fails until [`FaultyFs::clear_faults`].
    UntilCleared,
}

/// An in-memory filesystem with fault injection (see the module docs). Clones share state.
#[derive(Clone, Default)]
pub struct FaultyFs {
    inner: Arc<Inner>,
}

#[derive(Default)]
struct Inner {
    state: Mutex<State>,
    cv: Condvar,
}

#[derive(Debug, Default, Clone)]
struct Inode {
    data: Vec<u8>,
    /// Bytes before this survive a power loss (except `lost` ranges).
    synced: usize,
    /// The length a power loss leaves: the length at the last successful sync. Bytes from
    /// `synced` up to it read as zeros after a power loss: only a preallocated (zero-filled)
    /// file is ever overwritten, so what an unsynced overwrite covered was zeros.
    durable_len: usize,
    /// Ranges whose pages a failed sync dropped: zeros after a power loss.
    lost: Vec<Range<usize>>,
}

#[derive(Debug, Default)]
struct Faults {
    sync: Option<(SyncFault, Option<String>)>,
    tear: Option<(usize, Option<String>)>,
    short: Option<(usize, Option<String>)>,
    space: Option<u64>,
    block: Option<String>,
}

#[derive(Debug, Default)]
struct State {
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    names: BTreeMap<PathBuf, u64>,
    durable: BTreeMap<PathBuf, u64>,
    dirs: BTreeSet<PathBuf>,
    locks: BTreeSet<PathBuf>,
    crashed: bool,
    faults: Faults,
    syncs: u64,
    failed_syncs: u64,
    blocked: u64,
}

fn matches(filter: &Option<String>, path: &Path) -> bool {
    filter
        .as_deref()
        .is_none_or(|f| path.to_string_lossy().contains(f))
}

fn eio(what: &str) -> io::Error {
    io::Error::other(format!("injected IO error: {what}"))
}

impl State {
    fn alive(&self) -> io::Result<()> {
        if self.crashed {
            Err(eio("the filesystem has crashed"))
        } else {
            Ok(())
        }
    }

    fn inode(&self, path: &Path) -> io::Result<&Inode> {
        let ino = self
            .names
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(&self.inodes[ino])
    }

    fn used(&self) -> u64 {
        self.names
            .values()
            .collect::<BTreeSet<_>>()
            .iter()
            .map(|i| self.inodes[i].data.len() as u64)
            .sum()
    }

    fn image(&self, power_loss: bool) -> State {
        let names = if power_loss {
            &self.durable
        } else {
            &self.names
        };
        let mut s = State {
            next_ino: self.next_ino,
            dirs: self.dirs.clone(),
            ..Default::default()
        };
        for (p, ino) in names {
            let i = &self.inodes[ino];
            let mut data = if power_loss {
                let mut d = i.data[..i.synced.min(i.data.len())].to_vec();
                if d.len() < i.durable_len {
                    d.resize(i.durable_len, 0);
                }
                d
            } else {
                i.data.clone()
            };
            if power_loss {
                for r in &i.lost {
                    let end = r.end.min(data.len());
                    if r.start < end {
                        data[r.start..end].fill(0);
                    }
                }
            }
            let synced = data.len();
            s.inodes.entry(*ino).or_insert(Inode {
                data,
                synced,
                durable_len: synced,
                lost: Vec::new(),
            });
            s.names.insert(p.clone(), *ino);
            s.durable.insert(p.clone(), *ino);
        }
        s
    }
}

impl fmt::Debug for FaultyFs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = self.lock();
        f.debug_struct("FaultyFs")
            .field("files", &s.names.keys().collect::<Vec<_>>())
            .field("crashed", &s.crashed)
            .field("faults", &s.faults)
            .finish()
    }
}

impl FaultyFs {
    /// An empty filesystem with a root directory.
    pub fn new() -> Self {
        let fs = FaultyFs::default();
        fs.lock().dirs.insert(PathBuf::from("/"));
        fs
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn from_state(s: State) -> Self {
        let fs = FaultyFs::default();
        *fs.lock() = s;
        fs
    }

    /// The filesystem as a power loss right now would leave it: only synced bytes and
    /// directory entries survive. Independent of `self` from then on.
    pub fn crash_image(&self) -> FaultyFs {
        Self::from_state(self.lock().image(true))
    }

    /// The filesystem as a process crash right now would leave it: everything written is
    /// there (including a torn write). Independent of `self` from then on.
    pub fn disk_image(&self) -> FaultyFs {
        Self::from_state(self.lock().image(false))
    }

    /// Whether a torn write has "crashed" the filesystem (every operation then fails).
    pub fn is_crashed(&self) -> bool {
        self.lock().crashed
    }

    /// Fails syncs (`sync_data` and `sync_dir`) of paths containing `filter` (all if `None`).
    pub fn fail_syncs(&self, fault: SyncFault, filter: Option<&str>) {
        self.lock().faults.sync = Some((fault, filter.map(str::to_owned)));
    }

    /// The next write to a path containing `filter` lands only its first `keep` bytes, then the
    /// filesystem crashes: that write and every later operation fail.
    pub fn tear_next_write(&self, keep: usize, filter: Option<&str>) {
        self.lock().faults.tear = Some((keep, filter.map(str::to_owned)));
    }

    /// The next write to a path containing `filter` lands only its first `keep` bytes and
    /// fails; the filesystem keeps working.
    pub fn short_next_write(&self, keep: usize, filter: Option<&str>) {
        self.lock().faults.short = Some((keep, filter.map(str::to_owned)));
    }

    /// Limits the bytes all files may hold: a write past it lands what fits and fails with
    /// `StorageFull` (ENOSPC).
    pub fn set_space_limit(&self, bytes: Option<u64>) {
        self.lock().faults.space = bytes;
    }

    /// Writes to paths containing `filter` block until [`FaultyFs::unblock`].
    pub fn block_writes(&self, filter: &str) {
        self.lock().faults.block = Some(filter.to_owned());
    }

    /// Releases blocked writes.
    pub fn unblock(&self) {
        self.lock().faults.block = None;
        self.inner.cv.notify_all();
    }

    /// Waits until some write is blocked; returns whether one is.
    pub fn wait_blocked(&self, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.blocked > 0)
    }

    /// Removes every injected fault (and releases blocked writes).
    pub fn clear_faults(&self) {
        self.lock().faults = Faults::default();
        self.inner.cv.notify_all();
    }

    /// Successful `sync_data` calls so far.
    pub fn syncs(&self) -> u64 {
        self.lock().syncs
    }

    /// Failed (injected) syncs so far.
    pub fn failed_syncs(&self) -> u64 {
        self.lock().failed_syncs
    }

    /// Waits until at least `n` syncs have failed; returns whether they have.
    pub fn wait_failed_syncs(&self, n: u64, timeout: Duration) -> bool {
        self.wait_for(timeout, |s| s.failed_syncs >= n)
    }

    fn wait_for(&self, timeout: Duration, mut cond: impl FnMut(&State) -> bool) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.lock();
        loop {
            if cond(&s) {
                return true;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return false;
            }
            s = self
                .inner
                .cv
                .wait_timeout(s, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
    }

    /// Flips bit `bit` (0..8) of the byte at `offset` of a file, in the page cache and on
    /// "disk" alike (bit rot).
    pub fn flip_bit(&self, path: &Path, offset: u64, bit: u8) {
        let mut s = self.lock();
        let ino = s.names[path];
        s.inodes.get_mut(&ino).expect("inode").data[offset as usize] ^= 1 << bit;
    }

    /// A file's content, if it exists.
    pub fn read_file(&self, path: &Path) -> Option<Vec<u8>> {
        let s = self.lock();
        s.inode(path).ok().map(|i| i.data.clone())
    }

    /// Replaces a file's content, durably (creating it and its directory entry).
    pub fn write_file(&self, path: &Path, data: &[u8]) {
        let mut s = self.lock();
        let ino = match s.names.get(path) {
            Some(i) => *i,
            None => {
                s.next_ino += 1;
                let i = s.next_ino;
                s.names.insert(path.to_owned(), i);
                i
            }
        };
        s.durable.insert(path.to_owned(), ino);
        s.inodes.insert(
            ino,
            Inode {
                data: data.to_vec(),
                synced: data.len(),
                durable_len: data.len(),
                lost: Vec::new(),
            },
        );
    }

    /// Cuts a file to `len` bytes, durably.
    pub fn set_len(&self, path: &Path, len: u64) {
        let mut s = self.lock();
        let ino = s.names[path];
        let i = s.inodes.get_mut(&ino).expect("inode");
        i.data.truncate(len as usize);
        i.synced = i.data.len();
        i.durable_len = i.data.len();
    }

    /// Removes a file, durably.
    pub fn delete_file(&self, path: &Path) {
        let mut s = self.lock();
        s.names.remove(path);
        s.durable.remove(path);
    }

    /// The bytes all files hold (each file once, however many names it has): what
    /// [`FaultyFs::set_space_limit`] limits.
    pub fn used_bytes(&self) -> u64 {
        self.lock().used()
    }

    /// The names of the files in `dir`, sorted.
    pub fn file_names(&self, dir: &Path) -> Vec<String> {
        let s = self.lock();
        s.names
            .keys()
            .filter(|p| p.parent() == Some(dir))
            .filter_map(|p| p.file_name()?.to_str().map(str::to_owned))
            .collect()
    }
}

#[derive(Debug)]
struct FaultyFile {
    fs: FaultyFs,
    ino: u64,
    path: PathBuf,
    /// Where the next write lands.
    pos: usize,
}

impl FsFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.alive()?;
        while s
            .faults
            .block
            .as_ref()
            .is_some_and(|f| self.path.to_string_lossy().contains(f.as_str()))
        {
            s.blocked += 1;
            self.fs.inner.cv.notify_all();
            s = self.fs.inner.cv.wait(s).unwrap_or_else(|p| p.into_inner());
            s.blocked -= 1;
        }
        s.alive()?;
        let mut land = buf.len();
        let mut err = None;
        if let Some((k, f)) = &s.faults.tear
            && matches(f, &self.path)
        {
            land = land.min(*k);
            err = Some(eio("torn write, then crash"));
            s.faults.tear = None;
            s.crashed = true;
        }
        if err.is_none()
            && let Some((k, f)) = &s.faults.short
            && matches(f, &self.path)
        {
            land = land.min(*k);
            err = Some(eio("short write"));
            s.faults.short = None;
        }
        if let Some(limit) = s.faults.space {
            let free = limit.saturating_sub(s.used()) as usize;
            if free < land {
                land = free;
                err = Some(io::Error::from(io::ErrorKind::StorageFull));
            }
        }
        let i = s.inodes.get_mut(&self.ino).expect("inode");
        let (at, to) = (self.pos, self.pos + land);
        if i.data.len() < to {
            i.data.resize(to, 0);
        }
        i.data[at..to].copy_from_slice(&buf[..land]);
        i.synced = i.synced.min(at);
        self.pos = to;
        match err {
            Some(e) => Err(e),
            None => Ok(()),
        }
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let mut s = self.fs.lock();
        s.alive()?;
        if sync_fault(&mut s, &self.path) {
            // Linux drops the dirty pages and marks them clean: lost, and a later sync of the
            // same file "succeeds".
            let i = s.inodes.get_mut(&self.ino).expect("inode");
            let lost = i.synced..i.data.len();
            if !lost.is_empty() {
                i.lost.push(lost);
            }
            i.synced = i.data.len();
            i.durable_len = i.data.len();
            self.fs.inner.cv.notify_all();
            return Err(eio("sync failed"));
        }
        let i = s.inodes.get_mut(&self.ino).expect("inode");
        i.synced = i.data.len();
        i.durable_len = i.data.len();
        s.syncs += 1;
        Ok(())
    }
}

fn sync_fault(s: &mut State, path: &Path) -> bool {
    let hit = match &mut s.faults.sync {
        Some((fault, f)) if matches(f, path) => match fault {
            SyncFault::UntilCleared => true,
            SyncFault::Times(0) => false,
            SyncFault::Times(n) => {
                *n -= 1;
                true
            }
        },
        _ => false,
    };
    if hit {
        s.failed_syncs += 1;
    }
    hit
}

#[derive(Debug)]
struct FaultyLock {
    fs: FaultyFs,
    dir: PathBuf,
}

impl DirLock for FaultyLock {}

impl Drop for FaultyLock {
    fn drop(&mut self) {
        self.fs.lock().locks.remove(&self.dir);
    }
}

impl Fs for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        for a in dir.ancestors() {
            s.dirs.insert(a.to_owned());
        }
        Ok(())
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let s = self.lock();
        s.alive()?;
        if !s.dirs.contains(dir) {
            return Err(io::ErrorKind::NotFound.into());
        }
        drop(s);
        Ok(self.file_names(dir))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        let s = self.lock();
        s.alive()?;
        Ok(s.inode(path)?.data.clone())
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let s = self.lock();
        s.alive()?;
        let d = &s.inode(path)?.data;
        let a = (offset as usize).min(d.len());
        let b = a.saturating_add(len).min(d.len());
        Ok(d[a..b].to_vec())
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        let s = self.lock();
        s.alive()?;
        Ok(s.inode(path)?.data.len() as u64)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let mut s = self.lock();
        s.alive()?;
        if !path.parent().is_some_and(|p| s.dirs.contains(p)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let ino = match s.names.get(path) {
            Some(&i) => {
                // Truncating an existing file: pessimistically, the old content is gone on
                // disk too.
                s.inodes.insert(i, Inode::default());
                i
            }
            None => {
                s.next_ino += 1;
                let i = s.next_ino;
                s.inodes.insert(i, Inode::default());
                s.names.insert(path.to_owned(), i);
                i
            }
        };
        Ok(Box::new(FaultyFile {
            fs: self.clone(),
            ino,
            path: path.to_owned(),
            pos: 0,
        }))
    }

    fn available_space(&self, _dir: &Path) -> io::Result<u64> {
        let s = self.lock();
        s.alive()?;
        Ok(s.faults
            .space
            .map_or(u64::MAX, |limit| limit.saturating_sub(s.used())))
    }

    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn FsFile>> {
        let s = self.lock();
        s.alive()?;
        let ino = *s
            .names
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        Ok(Box::new(FaultyFile {
            fs: self.clone(),
            ino,
            path: path.to_owned(),
            pos: offset as usize,
        }))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        let ino = *s
            .names
            .get(path)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        if sync_fault(&mut s, path) {
            return Err(eio("sync after truncate failed"));
        }
        let i = s.inodes.get_mut(&ino).expect("inode");
        i.data.truncate(len as usize);
        i.synced = i.data.len();
        i.durable_len = i.data.len();
        Ok(())
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        if !to.parent().is_some_and(|p| s.dirs.contains(p)) {
            return Err(io::ErrorKind::NotFound.into());
        }
        let ino = s
            .names
            .remove(from)
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotFound))?;
        s.names.insert(to.to_owned(), ino);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        s.names
            .remove(path)
            .map(|_| ())
            .ok_or_else(|| io::ErrorKind::NotFound.into())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        let mut s = self.lock();
        s.alive()?;
        if sync_fault(&mut s, dir) {
            self.inner.cv.notify_all();
            return Err(eio("directory sync failed"));
        }
        let in_dir = |p: &PathBuf| p.parent() == Some(dir);
        s.durable.retain(|p, _| !in_dir(p));
        let now: Vec<(PathBuf, u64)> = s
            .names
            .iter()
            .filter(|(p, _)| in_dir(p))
            .map(|(p, i)| (p.clone(), *i))
            .collect();
        s.durable.extend(now);
        Ok(())
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let mut s = self.lock();
        s.alive()?;
        if !s.locks.insert(dir.to_owned()) {
            return Err(io::ErrorKind::WouldBlock.into());
        }
        Ok(Box::new(FaultyLock {
            fs: self.clone(),
            dir: dir.to_owned(),
        }))
    }
}
