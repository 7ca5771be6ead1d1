//! The one error type of the config layer: where in the document, and why.

use std::fmt;
use std::path::{Path, PathBuf};

/// A configuration that cannot be used, with enough context to fix it.
///
/// Every variant names the key path (`v4.subnets[1].pools[0]`) when one is known; errors from a
/// file also carry the file name. `Display` is one line; [`ConfigError::report`] adds a source
/// excerpt for syntax errors.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The config file could not be read.
    #[error("{}: cannot read: {source}", file.display())]
    Read {
        /// The file that was being read.
        file: PathBuf,
        /// What the OS said.
        #[source]
        source: std::io::Error,
    },
    /// The text is not well-formed YAML/JSON, or does not fit the schema (unknown key, a map
    /// where a list belongs, a number out of its type's range, ...).
    #[error("{}", SyntaxDisplay { file: file.as_deref(), line: *line, column: *column, path: path.as_deref(), message })]
    Syntax {
        /// The file the text came from, if any.
        file: Option<PathBuf>,
        /// 1-based line of the offending token (0 when unknown).
        line: u64,
        /// 1-based column of the offending token (0 when unknown).
        column: u64,
        /// Key path of the node at that position, when it could be worked out.
        path: Option<String>,
        /// What is wrong, without the position.
        message: String,
        /// A multi-line rendering with a source excerpt, for terminals (YAML only).
        excerpt: Option<String>,
    },
    /// The document parsed, but a value is not acceptable.
    #[error("{}", InvalidDisplay { file: file.as_deref(), path, reason })]
    Invalid {
        /// The file the text came from, if any.
        file: Option<PathBuf>,
        /// Key path of the offending value, e.g. `v4.subnets[0].reservations[2].address`.
        path: String,
        /// Why it is rejected, e.g. `10.9.0.5 is not inside subnet 10.231.0.0/24`.
        reason: String,
    },
    /// A line of the v6 assignments file (CSV) is not acceptable.
    #[error("{}", LineDisplay { file: file.as_deref(), line: *line, reason })]
    Assignments {
        /// The CSV file, if the text came from one.
        file: Option<PathBuf>,
        /// 1-based line number.
        line: u64,
        /// Why it is rejected.
        reason: String,
    },
}

impl ConfigError {
    /// The key path the error is about, when known.
    pub fn path(&self) -> Option<&str> {
        match self {
            ConfigError::Read { .. } | ConfigError::Assignments { .. } => None,
            ConfigError::Syntax { path, .. } => path.as_deref(),
            ConfigError::Invalid { path, .. } => Some(path),
        }
    }

    /// The file the error is about, when the config came from a file.
    pub fn file(&self) -> Option<&Path> {
        match self {
            ConfigError::Read { file, .. } => Some(file),
            ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::Assignments { file, .. } => file.as_deref(),
        }
    }

    /// The one-line message, followed for syntax errors by a source excerpt when there is one.
    pub fn report(&self) -> String {
        match self {
            ConfigError::Syntax {
                excerpt: Some(x), ..
            } => format!("{self}\n{x}"),
            _ => self.to_string(),
        }
    }

    pub(super) fn with_file(mut self, name: &Path) -> Self {
        match &mut self {
            ConfigError::Read { .. } => {}
            ConfigError::Syntax { file, .. }
            | ConfigError::Invalid { file, .. }
            | ConfigError::Assignments { file, .. } => {
                *file = Some(name.to_owned());
            }
        }
        self
    }
}

/// Shorthand for the validation errors: the value at `path` is rejected because `reason`.
pub(super) fn invalid(path: impl Into<String>, reason: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        file: None,
        path: path.into(),
        reason: reason.into(),
    }
}

struct SyntaxDisplay<'a> {
    file: Option<&'a Path>,
    line: u64,
    column: u64,
    path: Option<&'a str>,
    message: &'a str,
}

impl fmt::Display for SyntaxDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.file, self.line) {
            (Some(file), 0) => write!(f, "{}: ", file.display())?,
            (Some(file), l) => write!(f, "{}:{l}:{}: ", file.display(), self.column)?,
            (None, 0) => {}
            (None, l) => write!(f, "line {l}, column {}: ", self.column)?,
        }
        if let Some(p) = self.path.filter(|p| !p.is_empty()) {
            write!(f, "{p}: ")?;
        }
        f.write_str(self.message)
    }
}

struct InvalidDisplay<'a> {
    file: Option<&'a Path>,
    path: &'a str,
    reason: &'a str,
}

impl fmt::Display for InvalidDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(file) = self.file {
            write!(f, "{}: ", file.display())?;
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(self.reason)
    }
}

struct LineDisplay<'a> {
    file: Option<&'a Path>,
    line: u64,
    reason: &'a str,
}

impl fmt::Display for LineDisplay<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.file {
            Some(file) => write!(f, "{}:{}: {}", file.display(), self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}
