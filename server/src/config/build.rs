//! Validation: walks the wire tree keeping the key path and builds the typed [`Config`].
//!
//! Every rejection names the key it is about. This file holds the top level and `journal`;
//! `build4.rs` and `build6.rs` build each family's section, over the rules in `shared.rs` that
//! both families follow.

use std::path::PathBuf;

use super::build4::v4;
use super::build6::v6;
use super::error::{ConfigError, invalid};
use super::path::at;
use super::shared::check_ifname;
use super::wire;
use super::{Config, JournalConfig, SyncMode};

pub(super) const DEFAULT_PORT: u16 = lessor_net::wire::v4::SERVER_PORT;

pub(super) const DEFAULT_STATE_DIR: &str = "/var/lib/lessor";

pub(super) const DEFAULT_INTERVAL_MS: u64 = 10;

type Result<T> = std::result::Result<T, ConfigError>;

pub(super) fn build(w: wire::Config) -> Result<Config> {
    let mut interfaces: Vec<String> = Vec::new();
    for (i, name) in w.interfaces.unwrap_or_default().into_iter().enumerate() {
        let p = at("interfaces", i);
        check_ifname(&p, &name)?;
        if interfaces.contains(&name) {
            return Err(invalid(p, format!("{name} is listed twice")));
        }
        interfaces.push(name);
    }
    let port = w.port.unwrap_or(DEFAULT_PORT);
    if port == 0 {
        return Err(invalid("port", "must be 1..=65535, not 0"));
    }
    let state_dir = w.state_dir.unwrap_or_else(|| DEFAULT_STATE_DIR.to_owned());
    if state_dir.trim().is_empty() {
        return Err(invalid("state_dir", "must not be empty"));
    }
    if w.workers == Some(0) {
        return Err(invalid(
            "workers",
            "must be at least 1 (omit it for one worker per core)",
        ));
    }
    if w.log_level.as_deref().is_some_and(|l| l.trim().is_empty()) {
        return Err(invalid(
            "log_level",
            "must not be empty (omit it for the default)",
        ));
    }
    Ok(Config {
        interfaces,
        port,
        state_dir: PathBuf::from(state_dir),
        workers: w.workers,
        log_level: w.log_level,
        journal: journal(w.journal.unwrap_or_default())?,
        control: super::control::control(w.control)?,
        ha: super::ha::ha(w.ha)?,
        v4: v4(w.v4.unwrap_or_default())?,
        v6: v6(w.v6.unwrap_or_default())?,
    })
}

fn journal(j: wire::Journal) -> Result<JournalConfig> {
    let sync = match j.sync.as_deref().unwrap_or("group") {
        "group" => SyncMode::Group,
        "interval" => {
            let interval_ms = j.interval_ms.unwrap_or(DEFAULT_INTERVAL_MS);
            if interval_ms == 0 {
                return Err(invalid("journal.interval_ms", "must be at least 1"));
            }
            SyncMode::Interval { interval_ms }
        }
        "none" => SyncMode::None,
        other => {
            return Err(invalid(
                "journal.sync",
                format!("unknown mode {other:?}, expected group, interval or none"),
            ));
        }
    };
    if j.interval_ms.is_some() && !matches!(sync, SyncMode::Interval { .. }) {
        return Err(invalid(
            "journal.interval_ms",
            "only applies with sync: interval",
        ));
    }
    let max_backlog = j.max_backlog.unwrap_or(super::DEFAULT_MAX_BACKLOG);
    if max_backlog == 0 {
        return Err(invalid("journal.max_backlog", "must be at least 1"));
    }
    Ok(JournalConfig {
        sync,
        max_backlog,
        preallocate: j.preallocate.unwrap_or(true),
        realtime_sync: j.realtime_sync.unwrap_or(true),
    })
}
