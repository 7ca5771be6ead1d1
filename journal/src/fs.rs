//! The filesystem seam: every byte the journal reads or writes goes through [`Fs`].

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

/// A file opened for writing by [`Fs::create`] or [`Fs::open_at`]. Writes are sequential
/// from where it was opened.
pub trait FsFile: Send + fmt::Debug {
    /// Writes all of `buf` at the file position and advances it. On error an unknown prefix
    /// of `buf` may have landed.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (`fdatasync`).
    fn sync_data(&mut self) -> io::Result<()>;
}

/// A held directory lock; dropping it releases the lock.
pub trait DirLock: Send + Sync + fmt::Debug {}

/// All file IO of the journal. [`RealFs`] is `std::fs`; tests substitute a filesystem that
/// tears writes, fails syncs or flips bits (`FaultyFs`, behind the `testing` feature).
///
/// Files are only ever created, written front to back through the returned [`FsFile`], read
/// whole or in part, truncated, renamed and removed. The existing files the journal opens for
/// writing are a preallocated segment, all zeros, which the writer then fills from its first
/// byte, and the last segment, which it resumes where its records end (zeros or the end of the
/// file after them): so it always knows exactly what the file it has open holds.
pub trait Fs: Send + Sync + fmt::Debug + 'static {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// The names of the regular files in `dir` (not subdirectories), in any order.
    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>>;
    /// The whole content of a file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Up to `len` bytes from `offset` (fewer at the end of the file).
    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>>;
    /// The length of a file.
    fn file_len(&self, path: &Path) -> io::Result<u64>;
    /// Creates `path` (truncating it if it exists) and opens it for appending.
    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>>;
    /// Opens an existing file for writing from byte `offset` without truncating it (a
    /// preallocated segment, or the last segment the writer resumes): writes overwrite, and
    /// extend the file past its end.
    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn FsFile>>;
    /// Cuts a file to `len` bytes and makes the new length durable.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Renames a file (atomically replacing `to`); durable after [`Fs::sync_dir`].
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file; durable after [`Fs::sync_dir`].
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creates, renames, removes) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Takes an exclusive lock on the directory (a `LOCK` file in it), failing with
    /// [`io::ErrorKind::WouldBlock`] if it is held elsewhere.
    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>>;
    /// Bytes still free for an unprivileged writer on the filesystem holding `dir`.
    fn available_space(&self, dir: &Path) -> io::Result<u64>;
}

/// The real filesystem (`std::fs`). Reads are plain buffered reads, not `mmap`: mapping a
/// file is `unsafe` (another process may truncate it under the mapping), and this crate
/// forbids `unsafe`. A replay reads segments whole and snapshots in chunks, front to back, so
/// a plain read costs little more.
#[derive(Clone, Copy, Debug, Default)]
pub struct RealFs;

#[derive(Debug)]
struct RealFile(File);

impl FsFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
}

#[derive(Debug)]
struct RealLock(#[allow(dead_code)] File);

impl DirLock for RealLock {}

impl Fs for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        fs::create_dir_all(dir)
    }

    fn list_dir(&self, dir: &Path) -> io::Result<Vec<String>> {
        let mut names = Vec::new();
        for entry in fs::read_dir(dir)? {
            let entry = entry?;
            if entry.file_type()?.is_file()
                && let Some(name) = entry.file_name().to_str()
            {
                names.push(name.to_owned());
            }
        }
        Ok(names)
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        fs::read(path)
    }

    fn read_range(&self, path: &Path, offset: u64, len: usize) -> io::Result<Vec<u8>> {
        let mut f = File::open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        let mut buf = Vec::with_capacity(len);
        f.take(len as u64).read_to_end(&mut buf)?;
        Ok(buf)
    }

    fn file_len(&self, path: &Path) -> io::Result<u64> {
        Ok(fs::metadata(path)?.len())
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn FsFile>> {
        let f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        Ok(Box::new(RealFile(f)))
    }

    fn open_at(&self, path: &Path, offset: u64) -> io::Result<Box<dyn FsFile>> {
        let mut f = OpenOptions::new().write(true).open(path)?;
        f.seek(SeekFrom::Start(offset))?;
        Ok(Box::new(RealFile(f)))
    }

    fn available_space(&self, dir: &Path) -> io::Result<u64> {
        let s = nix::sys::statvfs::statvfs(dir)?;
        #[allow(clippy::useless_conversion)] // fsblkcnt_t and c_ulong are not u64 everywhere
        Ok(u64::from(s.blocks_available()).saturating_mul(u64::from(s.fragment_size())))
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let f = OpenOptions::new().write(true).open(path)?;
        f.set_len(len)?;
        f.sync_all()
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        fs::rename(from, to)
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        fs::remove_file(path)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }

    fn lock_dir(&self, dir: &Path) -> io::Result<Box<dyn DirLock>> {
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .open(dir.join(crate::format::LOCK_NAME))?;
        match f.try_lock() {
            Ok(()) => Ok(Box::new(RealLock(f))),
            Err(fs::TryLockError::WouldBlock) => Err(io::ErrorKind::WouldBlock.into()),
            Err(fs::TryLockError::Error(e)) => Err(e),
        }
    }
}
