//! The errors of starting, running and stopping the server and of its offline journal tools.

use std::path::PathBuf;

/// A boxed error from a crate whose error type is not part of this one's API.
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What can go wrong in lessor-server outside config parsing (which has
/// [`ConfigError`](crate::config::ConfigError)).
///
/// Each variant's message names the path, key or step that failed; its source (shown after
/// it by `{:#}` on an `anyhow` chain) says why.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The state directory could not be created.
    #[error("state_dir: cannot create {}", path.display())]
    CreateStateDir {
        /// The state directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// A file or directory could not be opened, created, read or locked.
    #[error("cannot {action} {}", path.display())]
    Io {
        /// What was being done: "open", "lock", "create", "read".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Another process holds the state directory's lock.
    #[error(
        "state_dir {} is in use by another lessor process (lock {})",
        state_dir.display(),
        lock.display()
    )]
    StateDirInUse {
        /// The state directory.
        state_dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// A read-only journal tool was pointed at a state directory without a journal.
    #[error(
        "no journal in {}: lessor has not run with this state_dir (give --state-dir or --config)",
        dir.display()
    )]
    NoJournal {
        /// The journal directory that does not exist.
        dir: PathBuf,
    },
    /// Replaying the journal at startup failed.
    #[error(
        "replaying the journal in {} (if it is damaged, `lessor journal repair --state-dir {}` salvages every valid record)",
        dir.display(),
        state_dir.display()
    )]
    Replay {
        /// The journal directory.
        dir: PathBuf,
        /// The state directory, for the repair command.
        state_dir: PathBuf,
        /// Why.
        source: lessor_journal::Error,
    },
    /// A journal operation failed; `what` says which.
    #[error("{what}")]
    Journal {
        /// The operation, naming the directory when it has one.
        what: String,
        /// Why.
        source: lessor_journal::Error,
    },
    /// `lessor journal verify` found problems (the report lists them).
    #[error("the journal has problems:\n{report}")]
    JournalProblems {
        /// The verify report, pretty-printed.
        report: String,
    },
    /// A Kea lease file could not be parsed.
    #[error("{}", path.display())]
    Kea {
        /// The file.
        path: PathBuf,
        /// Why.
        source: crate::kea::KeaError,
    },
    /// A socket, interface or steering call failed while `what` was being done.
    #[error("{what}")]
    Net {
        /// The step, naming the address when it has one.
        what: String,
        /// Why.
        source: lessor_net::Error,
    },
    /// `interfaces` names an interface this host does not have.
    #[error("interfaces: no network interface named {name:?} on this host")]
    NoSuchInterface {
        /// The name given.
        name: String,
    },
    /// A lease engine could not be built from the config.
    #[error("building the {family}lease engine")]
    Engine {
        /// "" for DHCPv4, "DHCPv6 " for DHCPv6.
        family: &'static str,
        /// Why.
        source: BoxError,
    },
    /// The DHCPv6 server DUID could not be read or created.
    #[error("reading or creating the server DUID in {}", state_dir.display())]
    ServerDuid {
        /// The state directory.
        state_dir: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// `v6.assignments_file` could not be loaded (`what` says at start-up or on reload).
    #[error("{what} v6.assignments_file")]
    Assignments {
        /// "loading" or "reloading".
        what: &'static str,
        /// Why.
        source: BoxError,
    },
    /// The run-time reservations (`STATE_DIR/reservations.json`) cannot be read or do not
    /// fit the configuration; the message names the file and the entry.
    #[error("{0}")]
    Reservations(String),
    /// A worker's journal doorbell could not be created.
    #[error("creating a worker's journal doorbell")]
    Doorbell(#[source] std::io::Error),
    /// A worker thread could not be spawned.
    #[error("spawning a {family} worker thread")]
    Spawn {
        /// "DHCPv4" or "DHCPv6".
        family: &'static str,
        /// Why.
        source: std::io::Error,
    },
    /// The control server could not start.
    #[error("{what}")]
    Control {
        /// The step that failed, with the address.
        what: String,
        /// Why.
        source: std::io::Error,
    },
    /// Writing a tool's output failed.
    #[error("writing the output")]
    Output(#[source] std::io::Error),
}

impl Error {
    /// Wraps a journal error with the operation that failed.
    pub(crate) fn journal(what: impl Into<String>) -> impl FnOnce(lessor_journal::Error) -> Error {
        let what = what.into();
        move |source| Error::Journal { what, source }
    }

    /// Wraps a network error with the step that failed.
    pub(crate) fn net(what: impl Into<String>) -> impl FnOnce(lessor_net::Error) -> Error {
        let what = what.into();
        move |source| Error::Net { what, source }
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
