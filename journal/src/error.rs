//! The crate's error type.

use std::io;
use std::path::PathBuf;

/// Everything that can go wrong in the journal.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// A filesystem operation failed.
    ///
    /// The operating system's error is part of the message (most logs print only the message),
    /// so it is deliberately not also the `source()`: chained printers would show it twice.
    #[error("journal IO error: {op} {}: {error}", path.display())]
    Io {
        /// What was being done (`"create"`, `"sync"`, `"rename"`, ...).
        op: &'static str,
        /// The file or directory it was done to.
        path: PathBuf,
        /// The operating system's error.
        error: io::Error,
    },

    /// A file holds bytes that are not what the journal wrote: a bad header, a record whose
    /// length or checksum is wrong, a payload that does not decode as the record type, a
    /// snapshot whose footer does not verify. `offset` is the byte offset in `file` where the
    /// bad data starts.
    #[error("journal corrupt: {} at byte {offset}: {reason}", file.display())]
    Corrupt {
        /// The damaged file.
        file: PathBuf,
        /// Byte offset of the first bad byte (the start of the bad header or record).
        offset: u64,
        /// What is wrong.
        reason: String,
    },

    /// A segment that must exist (the chain from the snapshot to the newest segment has no
    /// holes) does not.
    #[error("journal segment {seq} is missing from {} (expected after {after})", dir.display())]
    MissingSegment {
        /// The journal directory.
        dir: PathBuf,
        /// The missing segment's number.
        seq: u64,
        /// What it should follow: `"the snapshot ..."` or `"segment N"`.
        after: String,
    },

    /// Another process (or another `Journal` in this one) holds the directory's lock.
    #[error("journal directory {} is in use by another writer", dir.display())]
    Locked {
        /// The journal directory.
        dir: PathBuf,
    },

    /// The options cannot work (no lanes, a segment size below the minimum, ...).
    #[error("invalid journal options: {0}")]
    InvalidOptions(String),

    /// `Journal::try_lane` was asked for a lane that was already taken or does not exist.
    #[error("journal lane {lane} is not available: {reason}")]
    Lane {
        /// The lane asked for.
        lane: usize,
        /// Why it cannot be handed out.
        reason: &'static str,
    },

    /// A record could not be encoded (or encodes to more than
    /// [`MAX_RECORD_LEN`](crate::MAX_RECORD_LEN) bytes).
    #[error("journal record cannot be stored: {0}")]
    Encode(String),

    /// Shutdown could not make every queued record durable: the last write or sync failed.
    /// The records were never reported durable, so nothing acknowledged is lost.
    #[error("journal closed with {records} record(s) not durable: {error}")]
    NotDurable {
        /// How many records were handed to the writer but never made durable.
        records: u64,
        /// The last IO error.
        error: String,
    },

    /// A compaction asked for with `Journal::compact_blocking` failed (it is retried in the
    /// background; nothing was deleted).
    #[error("journal compaction failed: {0}")]
    Compaction(String),

    /// A stream follower asked for frames a compaction has removed (or synced before this
    /// run): it must start again from a snapshot (`Source::snapshot`).
    #[error(
        "journal stream position {requested} is gone (oldest reachable {oldest}): take a snapshot"
    )]
    Compacted {
        /// The sequence asked for.
        requested: u64,
        /// The first sequence still reachable.
        oldest: u64,
    },

    /// A stream follower asked for a sequence past the next one to be synced.
    #[error("journal stream position {requested} is ahead of the stream (next {next})")]
    StreamPosition {
        /// The sequence asked for.
        requested: u64,
        /// The sequence the next synced frame gets.
        next: u64,
    },

    /// A background thread of the journal panicked (a bug).
    #[error("journal {0} thread panicked")]
    ThreadPanicked(&'static str),
}

/// The journal's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Error::Io {
            op,
            path: path.into(),
            error: source,
        }
    }

    pub(crate) fn corrupt(
        file: impl Into<PathBuf>,
        offset: u64,
        reason: impl Into<String>,
    ) -> Self {
        Error::Corrupt {
            file: file.into(),
            offset,
            reason: reason.into(),
        }
    }
}
