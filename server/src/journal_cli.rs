//! `lessor journal ...`: offline tools over the state directory's journal.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use lessor_engine::v4::ClientKey;
use lessor_engine::v6::IaKind;

use crate::config::Config;
use crate::error::{Error, Result};
use crate::kea;
use crate::lease_record::{LeaseRecord, state_name};
use crate::state_dir::{journal_dir, lock_state_dir};
use crate::worker::now;

/// Output format of `lessor journal dump`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DumpFormat {
    /// One JSON object per line.
    Jsonl,
    /// A header line, then one comma-separated row per lease.
    Csv,
}

/// The journal directory of `state_dir`, which must exist (for the read-only tools: a missing
/// one is most likely a mistyped --state-dir, which must not look like an empty journal).
fn existing_journal(state_dir: &Path) -> Result<std::path::PathBuf> {
    let dir = journal_dir(state_dir);
    if !dir.is_dir() {
        return Err(Error::NoJournal { dir });
    }
    Ok(dir)
}

/// The journal directory of `state_dir`, created if missing (for the tools that write).
fn journal_for_writing(state_dir: &Path) -> Result<std::path::PathBuf> {
    let dir = journal_dir(state_dir);
    match std::fs::create_dir_all(&dir) {
        Ok(()) => Ok(dir),
        Err(source) => Err(Error::Io {
            action: "create",
            path: dir,
            source,
        }),
    }
}

fn rfc3339(t: u64) -> String {
    humantime::format_rfc3339_seconds(UNIX_EPOCH + Duration::from_secs(t)).to_string()
}

fn hex(b: &[u8]) -> String {
    b.iter()
        .map(|x| format!("{x:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// The client id (option 61) of a record, if the client sent one.
fn client_id(r: &LeaseRecord) -> String {
    let key = ClientKey::from_bytes(&r.client);
    // ClientKey::client_id() tags its bytes with 1; hardware keys with 0.
    match key.as_bytes().split_first() {
        Some((1, id)) => hex(id),
        _ => String::new(),
    }
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_owned()
    }
}

/// Prints one line per lease the journal holds.
pub fn dump(
    state_dir: &Path,
    config: &Config,
    format: DumpFormat,
    out: &mut dyn Write,
) -> Result<usize> {
    let dir = existing_journal(state_dir)?;
    let (mut recs, _) = lessor_journal::read_live::<LeaseRecord>(&dir).map_err(Error::journal(
        format!("reading the journal in {}", dir.display()),
    ))?;
    recs.sort_by_key(|r| r.key);
    let subnet_of = |r: &LeaseRecord| match r.v6_resource() {
        // A delegated prefix lies outside the link's subnet: its pool names the subnet.
        Some(res) => config
            .v6
            .subnets
            .iter()
            .find(|s| {
                s.net.contains(&res.addr) || s.pd_pools.iter().any(|p| p.prefix.contains(&res.addr))
            })
            .map(|s| s.net.to_string())
            .unwrap_or_default(),
        None => config
            .v4
            .subnets
            .iter()
            .find(|s| s.net.contains(&r.ipv4()))
            .map(|s| s.net.to_string())
            .unwrap_or_default(),
    };
    if format == DumpFormat::Csv {
        writeln!(
            out,
            "address,hw_address,client_id,hostname,state,starts_at,expires_at,subnet,type,iaid,\
             valid_lifetime,preferred_lifetime,written_by"
        )
        .map_err(Error::Output)?;
    }
    for r in &recs {
        // DHCPv6: the address or prefix, the DUID as the client id, the IA's type and IAID.
        let ia = r.v6_client();
        let (addr, hw, cid, host) = match &ia {
            Some(ia) => (
                r.resource_text(),
                String::new(),
                hex(ia.duid()),
                String::new(),
            ),
            None => (
                r.ipv4().to_string(),
                hex(&r.hw),
                client_id(r),
                r.hostname.clone().unwrap_or_default(),
            ),
        };
        let (kind, iaid) = match &ia {
            Some(ia) => (
                match ia.kind() {
                    IaKind::Na => "ia_na",
                    IaKind::Pd => "ia_pd",
                },
                ia.iaid().to_string(),
            ),
            None => ("v4", String::new()),
        };
        // DHCPv6 lifetimes in seconds, as last sent: the record carries the preferred
        // lifetime (0 unless bound); the valid one runs from the latest bind or renewal.
        let lifetimes = ia.as_ref().and_then(|_| r.to_v6_lease()).map(|l| {
            let valid = match l.state {
                lessor_engine::LeaseState::Bound => l.expires.saturating_sub(l.starts),
                _ => 0,
            };
            (valid, l.preferred)
        });
        let (state, starts, expires, subnet) = (
            state_name(r.state),
            rfc3339(r.starts),
            rfc3339(r.expires),
            subnet_of(r),
        );
        // The HA peer that wrote the record (docs/HA.md, "Terms"), when one did.
        let by = crate::ha::written_by(config, r.version);
        match format {
            DumpFormat::Jsonl => {
                let mut v = serde_json::json!({
                    "address": addr, "hw_address": hw, "client_id": cid, "hostname": host,
                    "state": state, "starts_at": starts, "expires_at": expires, "subnet": subnet,
                    "type": kind,
                });
                if let Some(ia) = &ia {
                    v["iaid"] = ia.iaid().into();
                }
                if let Some((valid, preferred)) = lifetimes {
                    v["valid_lifetime"] = valid.into();
                    v["preferred_lifetime"] = preferred.into();
                }
                if let Some(by) = by {
                    v["written_by"] = by.into();
                }
                writeln!(out, "{v}").map_err(Error::Output)?;
            }
            DumpFormat::Csv => {
                let (valid, preferred) = lifetimes
                    .map(|(v, p)| (v.to_string(), p.to_string()))
                    .unwrap_or_default();
                writeln!(
                    out,
                    "{addr},{hw},{cid},{},{state},{starts},{expires},{subnet},{kind},{iaid},\
                     {valid},{preferred},{}",
                    csv_field(&host),
                    by.unwrap_or_default()
                )
                .map_err(Error::Output)?;
            }
        }
    }
    Ok(recs.len())
}

/// `lessor journal stats`.
pub fn stats(state_dir: &Path) -> Result<String> {
    let dir = existing_journal(state_dir)?;
    let s = lessor_journal::stats_offline(&dir).map_err(Error::journal(format!(
        "reading the journal's statistics in {}",
        dir.display()
    )))?;
    Ok(format!("{s:#?}"))
}

/// `lessor journal verify`: every file checked, nothing changed. Errors if any problem.
pub fn verify(state_dir: &Path) -> Result<String> {
    let dir = existing_journal(state_dir)?;
    let r = lessor_journal::verify(&dir).map_err(Error::journal(format!(
        "verifying the journal in {}",
        dir.display()
    )))?;
    if !r.is_clean() {
        return Err(Error::JournalProblems {
            report: format!("{r:#?}"),
        });
    }
    Ok(format!("{r:#?}"))
}

/// `lessor journal compact` (server stopped).
pub fn compact(state_dir: &Path) -> Result<String> {
    let _lock = lock_state_dir(state_dir)?;
    let dir = existing_journal(state_dir)?;
    let r = lessor_journal::compact_offline::<LeaseRecord>(&dir).map_err(Error::journal(
        format!("compacting the journal in {}", dir.display()),
    ))?;
    Ok(format!("{r:#?}"))
}

/// `lessor journal repair` (server stopped).
pub fn repair(state_dir: &Path) -> Result<String> {
    let _lock = lock_state_dir(state_dir)?;
    let dir = existing_journal(state_dir)?;
    let r = lessor_journal::repair(&dir).map_err(Error::journal(format!(
        "repairing the journal in {}",
        dir.display()
    )))?;
    Ok(format!("{r:#?}"))
}

/// `lessor journal import-kea FILE` (server stopped): appends every lease of a Kea memfile.
pub fn import_kea(state_dir: &Path, file: &Path) -> Result<usize> {
    let text = std::fs::read_to_string(file).map_err(|source| Error::Io {
        action: "read",
        path: file.to_owned(),
        source,
    })?;
    let recs = kea::parse_leases4(&text, now()).map_err(|source| Error::Kea {
        path: file.to_owned(),
        source,
    })?;
    let _lock = lock_state_dir(state_dir)?;
    let dir = journal_for_writing(state_dir)?;
    // Imported versions are row numbers; the journal may already hold records with higher
    // versions from an earlier run, so lift the imported ones above everything present.
    let (_, report) = lessor_journal::read_live::<LeaseRecord>(&dir).map_err(Error::journal(
        format!("reading the journal in {}", dir.display()),
    ))?;
    let base = report.max_version;
    let n = recs.len();
    lessor_journal::append_offline(
        &dir,
        recs.into_iter().map(|mut r| {
            r.version += base;
            r
        }),
    )
    .map_err(Error::journal(format!(
        "appending to the journal in {}",
        dir.display()
    )))?;
    Ok(n)
}

#[cfg(test)]
mod tests {
    use std::net::Ipv6Addr;

    use lessor_engine::LeaseState;
    use lessor_engine::v6::{self, IaKey, Resource};

    use super::*;

    const YAML: &str = "v6:\n  subnets:\n    - subnet: \"2001:db8:1::/64\"\n      \
                        pools: [\"2001:db8:1::100-2001:db8:1::1ff\"]\n";

    fn lease(n: u8, state: LeaseState, preferred: u32) -> LeaseRecord {
        let addr: Ipv6Addr = format!("2001:db8:1::1{n:02x}").parse().unwrap();
        let duid = [0, 3, 0, 1, 2, 0, 0, 0, 0, n];
        let l = v6::Lease {
            resource: Resource::address(addr),
            pool: None,
            client: IaKey::new(&duid, 1, IaKind::Na),
            state,
            starts: 1_800_000_000,
            preferred,
            expires: 1_800_000_000 + 7200,
            version: u64::from(n),
        };
        LeaseRecord::from_v6_lease(&l, 0)
    }

    /// Writes `recs` into a fresh state directory's journal and dumps it.
    fn dumped(recs: Vec<LeaseRecord>, format: DumpFormat) -> String {
        dumped_with(recs, format, YAML)
    }

    /// [`dumped`] under the config `yaml`.
    fn dumped_with(recs: Vec<LeaseRecord>, format: DumpFormat, yaml: &str) -> String {
        let state = tempfile::tempdir().unwrap();
        let dir = journal_for_writing(state.path()).unwrap();
        lessor_journal::append_offline(&dir, recs).unwrap();
        let config = Config::from_yaml_str(yaml).unwrap();
        let mut out = Vec::new();
        dump(state.path(), &config, format, &mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn a_v6_lease_dump_shows_its_preferred_lifetime_beside_its_valid_lifetime() {
        let recs = vec![
            lease(1, LeaseState::Bound, 3600),
            lease(2, LeaseState::Released, 0),
        ];
        let text = dumped(recs.clone(), DumpFormat::Jsonl);
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).unwrap())
            .collect();
        assert_eq!(lines[0]["address"], "2001:db8:1::101");
        assert_eq!(lines[0]["valid_lifetime"], 7200);
        assert_eq!(lines[0]["preferred_lifetime"], 3600);
        assert_eq!(lines[0]["subnet"], "2001:db8:1::/64");
        // Not bound: no lifetime left.
        assert_eq!(lines[1]["valid_lifetime"], 0);
        assert_eq!(lines[1]["preferred_lifetime"], 0);

        let csv = dumped(recs, DumpFormat::Csv);
        let mut rows = csv.lines();
        let header: Vec<&str> = rows.next().unwrap().split(',').collect();
        let row: Vec<&str> = rows.next().unwrap().split(',').collect();
        let col = |name: &str| row[header.iter().position(|h| *h == name).unwrap()];
        assert_eq!(col("valid_lifetime"), "7200");
        assert_eq!(col("preferred_lifetime"), "3600");
        assert_eq!(col("type"), "ia_na");
    }

    #[test]
    fn a_dump_names_the_ha_peer_that_wrote_each_lease() {
        let ha = format!(
            "{YAML}ha:\n  mode: hot-standby\n  node: a\n  etcd: [\"http://127.0.0.1:2379\"]\n  \
             peers: [{{name: a, url: \"http://x:1\"}}, {{name: b, url: \"http://y:1\"}}]\n"
        );
        // Term 0 (before HA), then term 3 as peer 1 (b), then term 4 as peer 0 (a).
        let mut recs = vec![
            lease(1, LeaseState::Bound, 3600),
            lease(2, LeaseState::Bound, 3600),
            lease(3, LeaseState::Bound, 3600),
        ];
        recs[1].version = 3 << 44 | 1 << 40 | 7;
        recs[2].version = 4 << 44 | 2;
        let text = dumped_with(recs.clone(), DumpFormat::Jsonl, &ha);
        let by: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap()["written_by"].clone())
            .collect();
        assert_eq!(by, [serde_json::Value::Null, "b".into(), "a".into()]);
        let csv = dumped_with(recs.clone(), DumpFormat::Csv, &ha);
        let last: Vec<&str> = csv.lines().map(|l| l.rsplit(',').next().unwrap()).collect();
        assert_eq!(last, ["written_by", "", "b", "a"]);
        let plain = dumped(recs, DumpFormat::Jsonl);
        assert!(!plain.contains("written_by"), "no ha: {plain}");
    }
}
