//! Configuration: one YAML (or JSON) document, validated at load time into typed, precomputed form.
//!
//! Two layers: `wire` mirrors the document exactly (serde, unknown keys rejected); `build` walks
//! it keeping the key path, so every error names the key and the reason
//! (`v4.subnets[1].pools[0]: start 10.0.0.9 is after end 10.0.0.5`). The result is a [`Config`]
//! whose option sets are already merged and encoded to wire bytes: the packet path does no
//! merging and no encoding.
//!
//! A file is read as JSON when its name ends in `.json`, as YAML otherwise; both follow the same
//! schema. See [`EXAMPLE_FULL_YAML`] for every key in use and [`DEFAULT_LOOPBACK_YAML`] for the
//! built-in default.
//!
//! Files: `wire` (the serde mirror), `build` (top level) over `build4` and `build6` (each
//! family's section, making the validated `types4` and `types6`), `shared` (the rules both
//! families follow), `options` (the option scheme) with its catalogues `options4` and
//! `options6`, and the text helpers `addr`, `times`, `path`.
//!
//! Every key, its default and its meaning, and the option names, are in `docs/CONFIG.md`; a
//! test in `examples.rs` keeps its key list in step with `examples/full.yaml`.

use std::path::{Path, PathBuf};

mod addr;
mod assignments;
mod build;
mod build4;
mod build6;
mod control;
mod effective;
mod error;
mod examples;
mod ha;
mod hex;
mod locate;
mod options;
mod options4;
mod options6;
mod path;
mod shared;
mod times;
mod types4;
mod types6;
mod wire;

#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests6;

pub use assignments::{Assignment, Assignments};
pub use control::{ControlConfig, DEFAULT_CONTROL};
pub use error::ConfigError;
pub use examples::{DEFAULT_LOOPBACK_YAML, EXAMPLE_FULL_YAML, EXAMPLE_V6_YAML};
pub use ha::{EtcdTls, HaConfig, HaMode, HaPeer, PeerRole, PemFile};
pub use options::EncodedOptions;
pub use options4::{OptionSet, option_name};
pub use options6::{OptionSet6, option6_name};
pub use types4::{BootFields, Pool4, Reservation4, ReservationKey, Subnet4, V4Config};
pub use types6::{PdPool6, Pool6, Reservation6, Subnet6, V6Config, V6Identifier};

/// A validated configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Config {
    /// Interfaces to serve; empty means loopback only.
    pub interfaces: Vec<String>,
    /// UDP port to listen on; anything but 67 is test mode.
    pub port: u16,
    /// Where the journal and snapshots live.
    pub state_dir: PathBuf,
    /// Worker threads; `None` means one per core.
    pub workers: Option<usize>,
    /// A tracing filter, if the config sets one.
    pub log_level: Option<String>,
    /// Journal durability.
    pub journal: JournalConfig,
    /// The control server; `None` when `control: off`.
    pub control: Option<ControlConfig>,
    /// High availability; `None` when the server runs alone.
    pub ha: Option<HaConfig>,
    /// DHCPv4.
    pub v4: V4Config,
    /// DHCPv6.
    pub v6: V6Config,
}

/// `journal:`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct JournalConfig {
    /// When journal writes are made durable.
    pub sync: SyncMode,
    /// Records a worker may have waiting for the journal before it drops requests that write.
    pub max_backlog: u64,
    /// Zero-fill each segment before writing into it, so a sync writes no inode.
    pub preallocate: bool,
    /// The journal writer holds a real-time scheduling class while it waits in `fdatasync`.
    pub realtime_sync: bool,
}

/// Default of `journal.max_backlog`.
pub const DEFAULT_MAX_BACKLOG: u64 = 1 << 16;

/// When journal writes are made durable, and whether ACKs wait for it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SyncMode {
    /// Group commit: an ACK is sent only after its event is fdatasync'ed (no acknowledged lease
    /// is ever lost).
    Group,
    /// fdatasync every `interval_ms`; ACKs do not wait, so a crash can lose that much.
    Interval {
        /// Milliseconds between syncs.
        interval_ms: u64,
    },
    /// Never fdatasync; the OS writes back when it likes.
    None,
}

impl SyncMode {
    /// The name the config file uses for this mode.
    pub fn name(self) -> &'static str {
        match self {
            SyncMode::Group => "group",
            SyncMode::Interval { .. } => "interval",
            SyncMode::None => "none",
        }
    }
}

/// A link: the subnets reachable on one wire (one subnet, or a shared network), in either family.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The shared network's name; `None` for a lone subnet.
    pub name: Option<String>,
    /// Indexes into the family's subnets ([`V4Config::subnets`] or [`V6Config::subnets`]); a
    /// DHCPv6 link's are tried in this order.
    pub subnets: Vec<usize>,
}

/// A DHCPv4 link.
pub type Link4 = Link;
/// A DHCPv6 link.
pub type Link6 = Link;

impl Config {
    /// Reads and validates a config file: JSON if the name ends in `.json`, YAML otherwise.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        let json = path
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let wire = if json {
            parse_json(&text)
        } else {
            parse_yaml(&text, Some(&path.display().to_string()))
        };
        // The stream key and the etcd TLS files are read while the config is built: a
        // relative path is resolved first, as `v6.assignments_file` is after.
        let wire = wire.map(|mut w| {
            if let Some(ha) = w.ha.as_mut()
                && let Some(dir) = path.parent()
            {
                for f in ha.paths_mut().filter(|f| Path::new(f).is_relative()) {
                    *f = dir.join(&*f).to_string_lossy().into_owned();
                }
            }
            w
        });
        let mut config = wire.and_then(build::build).map_err(|e| e.with_file(path))?;
        if let Some(f) = &mut config.v6.assignments_file
            && f.is_relative()
            && let Some(dir) = path.parent()
        {
            *f = dir.join(&*f);
        }
        Ok(config)
    }

    /// Reads and checks `v6.assignments_file` (an empty table when none is configured), against
    /// this config's v6 subnets and reservations. Called at startup and on every reload; a
    /// failed reload keeps the table in use.
    pub fn load_assignments(&self) -> Result<Assignments, ConfigError> {
        match &self.v6.assignments_file {
            None => Ok(Assignments::default()),
            Some(path) => Assignments::load(path, &self.v6),
        }
    }

    /// Parses and validates a YAML document.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        build::build(parse_yaml(text, None)?)
    }

    /// Parses and validates a JSON document (same schema as the YAML).
    pub fn from_json_str(text: &str) -> Result<Config, ConfigError> {
        build::build(parse_json(text)?)
    }

    /// The built-in configuration ([`DEFAULT_LOOPBACK_YAML`]): loopback, port 6767 (test mode),
    /// state in `./lessor-state`, one subnet 10.0.0.0/8 reached through relay 127.0.0.1.
    pub fn default_loopback() -> Config {
        // The embedded text is covered by tests; failing here is a build defect, not input.
        Config::from_yaml_str(DEFAULT_LOOPBACK_YAML)
            .unwrap_or_else(|e| panic!("built-in DEFAULT_LOOPBACK_YAML is invalid: {e}"))
    }

    /// The effective configuration as YAML, every default filled in, for `lessor check-config`.
    /// It parses back to an equal `Config`.
    pub fn effective_yaml(&self) -> String {
        effective::effective_yaml(self)
    }

    /// The effective configuration as a JSON document of the same schema (what `config-get`
    /// answers, before redaction); [`Config::from_json_str`] reads it back to an equal
    /// `Config`.
    pub fn effective_json(&self) -> serde_json::Value {
        effective::effective_json(self)
    }
}

fn parse_yaml(text: &str, name: Option<&str>) -> Result<wire::Config, ConfigError> {
    // An empty document (or only comments) is the all-defaults config.
    serde_saphyr::from_str_with_options::<Option<wire::Config>>(text, yaml_options())
        .map(Option::unwrap_or_default)
        .map_err(|e| {
            use serde_saphyr::MessageFormatter as _;
            let (line, column) = e.location().map_or((0, 0), |l| (l.line(), l.column()));
            let message = serde_saphyr::DefaultMessageFormatter
                .format_message(e.without_snippet())
                .chars()
                .map(|c| if c.is_control() { ' ' } else { c })
                .collect();
            let mut opts = serde_saphyr::RenderOptions::default();
            opts.source_name = name;
            // The rendering repeats the message on its first line; keep the source excerpt.
            let excerpt = e
                .render_with_options(opts)
                .split_once('\n')
                .map(|(_, excerpt)| excerpt.trim_end().to_owned());
            syntax(text, line, column, message, excerpt)
        })
}

/// serde-saphyr's default budgets are made for untrusted input and stop at 250,000 nodes (about
/// 40,000 reservations). A config file is written by the operator, so the size limits are raised
/// far past any real config; nesting depth stays bounded.
fn yaml_options() -> serde_saphyr::Options {
    serde_saphyr::options! {
        budget: serde_saphyr::budget! {
            max_events: 200_000_000,
            max_nodes: 100_000_000,
            max_total_scalar_bytes: 4 << 30,
        },
    }
}

fn parse_json(text: &str) -> Result<wire::Config, ConfigError> {
    serde_json::from_str::<wire::Config>(text).map_err(|e| {
        let (line, column) = (e.line() as u64, e.column() as u64);
        let full = e.to_string();
        let suffix = format!(" at line {line} column {column}");
        let message = full.strip_suffix(&suffix).unwrap_or(&full).to_owned();
        syntax(text, line, column, message, None)
    })
}

/// A syntax error at `line`:`column` of `text` (1-based; line 0: no position), with the key
/// path found there.
fn syntax(
    text: &str,
    line: u64,
    column: u64,
    message: String,
    excerpt: Option<String>,
) -> ConfigError {
    ConfigError::Syntax {
        file: None,
        line,
        column,
        path: (line > 0)
            .then(|| locate::path_at(text, line, column))
            .flatten(),
        message,
        excerpt,
    }
}
