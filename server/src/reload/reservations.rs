//! Reservations added at run time (`reservation-add`): kept in `STATE_DIR/reservations.json`
//! and merged into the configuration's own before any context is built, at the start and at
//! every reload.
//!
//! The merge goes through the configuration's own build: the running document (the
//! config's effective JSON) gets each run-time reservation appended to its subnet's
//! `reservations` list (subnet id 0: the global list), and the whole document is built
//! again. A run-time reservation is thus checked exactly as one written in the file, and
//! one that conflicts with the file is refused naming both. The file is written through a
//! temporary file, synced, renamed over the old one, then the directory synced: a crash
//! leaves the old list or the new one, whole. See docs/RELOAD.md.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::config::{Config, ConfigError};

/// The store's file name in the state directory.
pub const FILE: &str = "reservations.json";

/// The version this build writes and reads.
const VERSION: u32 = 1;

/// A DHCPv4 reservation added at run time, with Kea's argument names, its values in
/// canonical text (so that two equal ones compare equal).
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Host4 {
    /// The subnet's `id` (0: a global reservation).
    pub subnet_id: u32,
    /// chaddr, hex bytes with colons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hw_address: Option<String>,
    /// Option 61, hex bytes with colons.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
    /// Option 82 sub-option 1, `0x` and hex digits.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_id: Option<String>,
    /// The reserved address.
    pub ip_address: String,
    /// The host name given to the client.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// A DHCPv6 reservation added at run time, with Kea's argument names.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub struct Host6 {
    /// The subnet's `id` (0: a global reservation).
    pub subnet_id: u32,
    /// The client's DUID, hex bytes with colons.
    pub duid: String,
    /// At most one address (lessor reserves one address and one prefix per client).
    #[serde(default)]
    pub ip_addresses: Vec<String>,
    /// At most one prefix, `ADDR/LEN`.
    #[serde(default)]
    pub prefixes: Vec<String>,
    /// Kept and shown as Kea shows it; DHCPv6 replies carry no host name from lessor.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hostname: Option<String>,
}

/// The run-time reservations of both families, as kept on disk.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Store {
    /// Format version, [`VERSION`].
    #[serde(default)]
    version: u32,
    /// DHCPv4, in the order they were added.
    #[serde(default)]
    pub v4: Vec<Host4>,
    /// DHCPv6, in the order they were added.
    #[serde(default)]
    pub v6: Vec<Host6>,
}

/// Which family a run-time reservation belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Family {
    /// `Store::v4`.
    V4,
    /// `Store::v6`.
    V6,
}

/// Why a set of run-time reservations cannot be merged into a configuration.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MergeError {
    /// The run-time reservation at fault (family, index in the store), when one is.
    pub host: Option<(Family, usize)>,
    /// Kea's name of the argument at fault (`ip-address`, `hw-address`, ...), when known.
    pub argument: Option<&'static str>,
    /// What is wrong, with Kea's argument names for the run-time reservation.
    pub reason: String,
    /// The reservation's identifier or address is reserved already.
    pub conflict: bool,
}

impl MergeError {
    fn other(reason: impl Into<String>) -> MergeError {
        MergeError {
            host: None,
            argument: None,
            reason: reason.into(),
            conflict: false,
        }
    }

    /// The error as a start-up or reload error names it: the store's file and the entry.
    pub fn in_file(&self, file: &Path, store: &Store) -> String {
        let entry = match self.host {
            Some((Family::V4, i)) => store.v4.get(i).map(|h| format!("v4[{i}] {}", h.label())),
            Some((Family::V6, i)) => store.v6.get(i).map(|h| format!("v6[{i}] {}", h.label())),
            None => None,
        };
        match (entry, self.argument) {
            (Some(e), Some(a)) => format!(
                "{}: run-time reservation {e}: '{a}': {}",
                file.display(),
                self.reason
            ),
            (Some(e), None) => format!(
                "{}: run-time reservation {e}: {}",
                file.display(),
                self.reason
            ),
            (None, _) => format!("{}: {}", file.display(), self.reason),
        }
    }
}

impl std::fmt::Display for MergeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.argument {
            Some(a) => write!(f, "'{a}': {}", self.reason),
            None => f.write_str(&self.reason),
        }
    }
}

impl Host4 {
    /// `subnet-id 7, hw-address 02:..`: how messages name it.
    pub fn label(&self) -> String {
        let (kind, id) = self.identifier();
        format!("(subnet-id {}, {kind} {id})", self.subnet_id)
    }

    /// The identifier's Kea name and value.
    pub fn identifier(&self) -> (&'static str, &str) {
        match (&self.hw_address, &self.client_id, &self.circuit_id) {
            (Some(h), _, _) => ("hw-address", h),
            (_, Some(c), _) => ("client-id", c),
            (_, _, Some(c)) => ("circuit-id", c),
            _ => ("hw-address", ""),
        }
    }

    /// The reservation as the config file writes it.
    fn wire(&self) -> Value {
        let mut w = json!({ "address": self.ip_address });
        let (kind, id) = self.identifier();
        w[kind.replace('-', "_")] = json!(id);
        if let Some(h) = &self.hostname {
            w["hostname"] = json!(h);
        }
        w
    }
}

impl Host6 {
    /// `(subnet-id 9, duid 00:03:..)`: how messages name it.
    pub fn label(&self) -> String {
        format!("(subnet-id {}, duid {})", self.subnet_id, self.duid)
    }

    /// The reservation as the config file writes it; more than one address or prefix is
    /// refused naming the argument.
    fn wire(&self) -> Result<Value, (&'static str, String)> {
        let mut w = json!({ "duid": self.duid });
        for (key, list, wire) in [
            ("ip-addresses", &self.ip_addresses, "address"),
            ("prefixes", &self.prefixes, "prefix"),
        ] {
            match list.as_slice() {
                [] => {}
                [one] => w[wire] = json!(one),
                _ => {
                    return Err((
                        key,
                        format!(
                            "lessor reserves at most one entry per client, not {}",
                            list.len()
                        ),
                    ));
                }
            }
        }
        if self.ip_addresses.is_empty() && self.prefixes.is_empty() {
            return Err((
                "ip-addresses",
                "a reservation needs an address ('ip-addresses') or a prefix ('prefixes')".into(),
            ));
        }
        Ok(w)
    }
}

impl Store {
    /// The store of `state_dir`: empty when it has no file yet; an unreadable or malformed
    /// file is an error naming it.
    pub fn load(state_dir: &Path) -> Result<Store, String> {
        let path = state_dir.join(FILE);
        let text = match std::fs::read_to_string(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Store::default()),
            Err(e) => return Err(format!("{}: cannot read: {e}", path.display())),
        };
        let store: Store = serde_json::from_str(&text).map_err(|e| {
            format!(
                "{}: not a reservations file ({e}); fix or remove it (it holds the \
                 reservations added with reservation-add)",
                path.display()
            )
        })?;
        if store.version != VERSION {
            return Err(format!(
                "{}: version {} is not the version {VERSION} this lessor reads",
                path.display(),
                store.version
            ));
        }
        Ok(store)
    }

    /// Writes the store to `state_dir` durably: temporary file, sync, rename, directory sync.
    pub fn save(&self, state_dir: &Path) -> std::io::Result<()> {
        let mut tmp = tempfile::NamedTempFile::new_in(state_dir)?;
        let store = Store {
            version: VERSION,
            ..self.clone()
        };
        let text = serde_json::to_vec_pretty(&store).map_err(std::io::Error::other)?;
        tmp.write_all(&text)?;
        tmp.write_all(b"\n")?;
        tmp.as_file().sync_all()?;
        tmp.persist(state_dir.join(FILE)).map_err(|e| e.error)?;
        std::fs::File::open(state_dir)?.sync_all()
    }

    /// The store's file in `state_dir`.
    pub fn path(state_dir: &Path) -> PathBuf {
        state_dir.join(FILE)
    }

    /// Whether there is nothing to merge.
    pub fn is_empty(&self) -> bool {
        self.v4.is_empty() && self.v6.is_empty()
    }
}

/// `file` with the reservations of `store` added, built and checked as one document.
pub fn merge(file: &Config, store: &Store) -> Result<Config, MergeError> {
    if store.is_empty() {
        return Ok(file.clone());
    }
    let mut doc = file.effective_json();
    // Where each run-time reservation went: its key path in the document.
    let mut placed: Vec<Placed> = Vec::new();
    for (i, h) in store.v4.iter().enumerate() {
        let at = place(&mut doc, "v4", h.subnet_id, h.wire()).ok_or_else(|| MergeError {
            host: Some((Family::V4, i)),
            argument: Some("subnet-id"),
            reason: format!("IPv4 subnet with ID of '{}' is not configured", h.subnet_id),
            conflict: false,
        })?;
        placed.push((at, Family::V4, i, h.label()));
    }
    for (i, h) in store.v6.iter().enumerate() {
        let wire = h.wire().map_err(|(argument, reason)| MergeError {
            host: Some((Family::V6, i)),
            argument: Some(argument),
            reason,
            conflict: false,
        })?;
        let at = place(&mut doc, "v6", h.subnet_id, wire).ok_or_else(|| MergeError {
            host: Some((Family::V6, i)),
            argument: Some("subnet-id"),
            reason: format!("IPv6 subnet with ID of '{}' is not configured", h.subnet_id),
            conflict: false,
        })?;
        placed.push((at, Family::V6, i, h.label()));
    }
    Config::from_json_str(&doc.to_string()).map_err(|e| explain(&e, &placed))
}

/// A run-time reservation in the merged document: its key path, family, index in the
/// store and label.
type Placed = (String, Family, usize, String);

/// Appends `wire` to the reservations of `family`'s subnet `id` in `doc` (0: the global
/// list); returns its key path, or `None` when no subnet has that id.
fn place(doc: &mut Value, family: &str, id: u32, wire: Value) -> Option<String> {
    let section = doc.get_mut(family)?;
    let (path, holder) = if id == 0 {
        (family.to_owned(), section)
    } else {
        find_subnet(section, family, id)?
    };
    let list = holder
        .as_object_mut()?
        .entry("reservations")
        .or_insert(json!([]));
    if !list.is_array() {
        *list = json!([]);
    }
    let items = list.as_array_mut()?;
    items.push(wire);
    Some(format!("{path}.reservations[{}]", items.len() - 1))
}

/// The subnet whose `id` is `id` in a family's section, and its key path.
fn find_subnet<'d>(
    section: &'d mut Value,
    family: &str,
    id: u32,
) -> Option<(String, &'d mut Value)> {
    let has = |s: &Value| s.get("id").and_then(Value::as_u64) == Some(u64::from(id));
    let lone = section
        .get("subnets")
        .and_then(Value::as_array)
        .and_then(|l| l.iter().position(has));
    if let Some(i) = lone {
        return Some((format!("{family}.subnets[{i}]"), &mut section["subnets"][i]));
    }
    let shared = section.get("shared_networks").and_then(Value::as_array)?;
    let (k, j) = shared.iter().enumerate().find_map(|(k, n)| {
        n.get("subnets")
            .and_then(Value::as_array)
            .and_then(|l| l.iter().position(has))
            .map(|j| (k, j))
    })?;
    Some((
        format!("{family}.shared_networks[{k}].subnets[{j}]"),
        &mut section["shared_networks"][k]["subnets"][j],
    ))
}

/// Kea's argument name for a key of a reservation in the file.
fn argument(wire_key: &str, family: Family) -> &'static str {
    match (wire_key, family) {
        ("hw_address", _) => "hw-address",
        ("client_id", _) => "client-id",
        ("circuit_id", _) => "circuit-id",
        ("duid", _) => "duid",
        ("hostname", _) => "hostname",
        ("address", Family::V4) => "ip-address",
        ("address", Family::V6) => "ip-addresses",
        ("prefix", _) => "prefixes",
        _ => "reservation",
    }
}

/// A build error of the merged document, told in terms of the run-time reservation at
/// fault when it is one (its key path means nothing to whoever added it).
fn explain(e: &ConfigError, placed: &[Placed]) -> MergeError {
    let ConfigError::Invalid { path, reason, .. } = e else {
        return MergeError::other(e.to_string());
    };
    let mut reason = reason.clone();
    // Another run-time reservation named in the reason is named by its identity.
    for (at, _, _, label) in placed.iter().rev() {
        reason = reason.replace(at.as_str(), &format!("the run-time reservation {label}"));
    }
    // The identifier keys as Kea names them; a word at a time, so no other word changes.
    reason = reason
        .split(' ')
        .map(|w| match w {
            "hw_address" | "client_id" | "circuit_id" => argument(w, Family::V4),
            _ => w,
        })
        .collect::<Vec<_>>()
        .join(" ");
    let conflict = reason.contains("is already reserved");
    if conflict {
        // Name where the other one is written.
        reason = file_note(&reason);
    }
    let own = placed.iter().find(|(at, ..)| {
        path == at
            || path
                .strip_prefix(at.as_str())
                .is_some_and(|r| r.starts_with('.'))
    });
    match own {
        Some((at, family, i, _)) => {
            let key = path
                .strip_prefix(at.as_str())
                .and_then(|r| r.strip_prefix('.'));
            MergeError {
                host: Some((*family, *i)),
                argument: key.map(|k| argument(k.split(['.', '[']).next().unwrap_or(k), *family)),
                reason,
                conflict,
            }
        }
        None => MergeError {
            host: None,
            argument: None,
            reason: format!("{path}: {reason}"),
            conflict,
        },
    }
}

/// Marks a key path of the configuration file in a conflict's reason as the file's.
fn file_note(reason: &str) -> String {
    match reason.split_once(" by ") {
        Some((head, tail)) if tail.starts_with("v4.") || tail.starts_with("v6.") => {
            format!("{head} by {tail} in the configuration file")
        }
        _ => reason.to_owned(),
    }
}

#[cfg(test)]
mod tests;
