//! The `config-*` commands: read, test, replace, reload and write the running configuration
//! (the reload machinery is `crate::reload`; docs/RELOAD.md).

use std::io::Write as _;
use std::path::PathBuf;

use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use super::Parts;
use super::commands::Service;
use super::kea::{Answer, Args, Code};
use crate::config::Config;
use crate::reload::{Outcome, Reloader};

/// What `config-get` shows instead of a secret; `config-set` and `config-test` given it
/// keep the running value.
pub(crate) const REDACTED: &str = "*****";

/// Whether a key's value is a secret: a password, a key or a secret of any kind.
fn is_secret(key: &str) -> bool {
    let k = key.to_ascii_lowercase();
    k == "password" || k == "key" || k.ends_with("secret") || k.ends_with("-key")
}

/// `value` with every secret replaced by [`REDACTED`].
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                if is_secret(k) && v.is_string() {
                    *v = Value::String(REDACTED.into());
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

/// The running document as `config-get` answers it: `{"lessor": DOCUMENT}`, redacted.
fn document(reload: &Reloader) -> Value {
    let mut doc = reload.running().effective_json();
    redact(&mut doc);
    json!({ "lessor": doc })
}

pub(crate) fn config_get(parts: &Parts, _: Service, _: &Args<'_>) -> Answer {
    Answer::with(Code::Success, "", document(&parts.reload))
}

pub(crate) fn config_hash_get(parts: &Parts, _: Service, _: &Args<'_>) -> Answer {
    let text = document(&parts.reload).to_string();
    let hash: String = Sha256::digest(text.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Answer::with(Code::Success, "", json!({ "hash": hash }))
}

/// The `lessor` document of `config-set` / `config-test`, validated into a [`Config`]; a
/// redacted secret takes the running value back.
fn given(parts: &Parts, args: &Args<'_>) -> Result<Config, String> {
    let Some(doc) = args.get("lessor") else {
        return Err("missing 'lessor' argument: the configuration document".into());
    };
    if !doc.is_object() {
        return Err("'lessor' must be a map: the configuration document".into());
    }
    let mut doc = doc.clone();
    unredact(&mut doc, &parts.reload.running().effective_json());
    Config::from_json_str(&doc.to_string()).map_err(|e| e.to_string())
}

/// Puts the running value back wherever `doc` holds [`REDACTED`] at the same place.
fn unredact(doc: &mut Value, running: &Value) {
    match (doc, running) {
        (Value::Object(map), Value::Object(run)) => {
            for (k, v) in map.iter_mut() {
                match run.get(k) {
                    Some(r) if v.as_str() == Some(REDACTED) && is_secret(k) => *v = r.clone(),
                    Some(r) => unredact(v, r),
                    None => {}
                }
            }
        }
        (Value::Array(items), Value::Array(run)) => {
            for (v, r) in items.iter_mut().zip(run) {
                unredact(v, r);
            }
        }
        _ => {}
    }
}

/// The answer to a reload: what it did, or why nothing changed.
fn reloaded(result: Result<Outcome, String>) -> Answer {
    match result {
        Ok(o) => {
            let pause = o.pause.map(|p| p.as_secs_f64());
            let text = match pause {
                None => "Configuration successfully set (no pause).".to_owned(),
                Some(p) => format!(
                    "Configuration successfully set; the workers paused {:.3} ms to rebuild the pools.",
                    p * 1e3
                ),
            };
            let mut args = o.impact.to_json();
            args["pause-seconds"] = json!(pause);
            Answer::with(Code::Success, text, args)
        }
        Err(e) => Answer::error(e),
    }
}

pub(crate) fn config_set(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    reloaded(parts.reload.set(|| given(parts, args)))
}

pub(crate) fn config_reload(parts: &Parts, _: Service, _: &Args<'_>) -> Answer {
    reloaded(parts.reload.reload_file())
}

pub(crate) fn config_test(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let tested = given(parts, args).and_then(|c| parts.reload.test(&c));
    match tested {
        Ok(impact) => Answer::with(Code::Success, "Configuration seems sane.", impact.to_json()),
        Err(e) => Answer::error(e),
    }
}

pub(crate) fn config_write(parts: &Parts, _: Service, args: &Args<'_>) -> Answer {
    let file = match args.str("filename") {
        Err(e) => return e,
        Ok(Some(f)) => PathBuf::from(f),
        Ok(None) => match parts.reload.source() {
            Some(f) => f,
            None => {
                return Answer::error(
                    "missing 'filename' argument: lessor runs on its built-in default",
                );
            }
        },
    };
    let text = parts.reload.running().effective_yaml();
    match write_atomically(&file, text.as_bytes()) {
        Ok(()) => Answer::with(
            Code::Success,
            format!("Configuration written to {}.", file.display()),
            json!({ "filename": file.display().to_string(), "size": text.len() }),
        ),
        Err(e) => Answer::error(format!("writing {}: {e}", file.display())),
    }
}

/// Writes `bytes` to `file` through a temporary file beside it, synced, then renamed over
/// it: a reader sees the old file or the new one, whole. Owner-only: it may hold a password.
fn write_atomically(file: &std::path::Path, bytes: &[u8]) -> std::io::Result<()> {
    let dir = match file.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    tmp.write_all(bytes)?;
    tmp.as_file().sync_all()?;
    tmp.persist(file).map_err(|e| e.error)?;
    Ok(())
}

/// `status-get`'s account of reloads: seconds since the last successful one (or the start),
/// and how the last one went.
pub(crate) fn reload_status(parts: &Parts) -> Value {
    let (_, _, last) = parts.reload.counts();
    let now = crate::worker::now();
    let s = parts.reload.status();
    let last_reload = match (&s.at, &s.error) {
        (None, _) => json!({"result": "none"}),
        (Some(at), None) => json!({
            "result": "success",
            "seconds-ago": at.elapsed().as_secs(),
            "pause-seconds": s.pause.map(|p| p.as_secs_f64()),
            "leases-orphaned": s.orphaned,
        }),
        (Some(at), Some(e)) => json!({
            "result": "failure",
            "seconds-ago": at.elapsed().as_secs(),
            "error": e,
        }),
    };
    json!({
        "reload": now.saturating_sub(last),
        "last-reload": last_reload,
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::{REDACTED, redact, unredact};

    #[test]
    fn secrets_are_redacted_and_put_back() {
        let running = json!({"control": {"listen": "127.0.0.1:8067", "user": "u", "password": "pw"},
                             "x": [{"tsig-key": "k"}]});
        let mut shown = running.clone();
        redact(&mut shown);
        assert_eq!(shown["control"]["password"], REDACTED);
        assert_eq!(shown["control"]["user"], "u");
        assert_eq!(shown["x"][0]["tsig-key"], REDACTED);
        unredact(&mut shown, &running);
        assert_eq!(shown, running);
    }
}
