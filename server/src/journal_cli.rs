//! `lessor journal ...`: offline tools over the state directory's journal.

use std::io::Write;
use std::path::Path;
use std::time::{Duration, UNIX_EPOCH};

use anyhow::Context;
use lessor_engine::ClientKey;
use lessor_engine::v6::IaKind;

use crate::config::Config;
use crate::kea;
use crate::lease_record::{LeaseRecord, state_name};
use crate::run::{journal_dir, lock_state_dir, now};

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
fn existing_journal(state_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = journal_dir(state_dir);
    anyhow::ensure!(
        dir.is_dir(),
        "no journal in {}: lessor has not run with this state_dir (give --state-dir or --config)",
        dir.display()
    );
    Ok(dir)
}

/// The journal directory of `state_dir`, created if missing (for the tools that write).
fn journal_for_writing(state_dir: &Path) -> anyhow::Result<std::path::PathBuf> {
    let dir = journal_dir(state_dir);
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
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
) -> anyhow::Result<usize> {
    let dir = existing_journal(state_dir)?;
    let (mut recs, _) = lessor_journal::read_live::<LeaseRecord>(&dir)
        .with_context(|| format!("reading the journal in {}", dir.display()))?;
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
            "address,hw_address,client_id,hostname,state,starts_at,expires_at,subnet,type,iaid"
        )?;
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
        let (state, starts, expires, subnet) = (
            state_name(r.state),
            rfc3339(r.starts),
            rfc3339(r.expires),
            subnet_of(r),
        );
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
                writeln!(out, "{v}")?;
            }
            DumpFormat::Csv => writeln!(
                out,
                "{addr},{hw},{cid},{},{state},{starts},{expires},{subnet},{kind},{iaid}",
                csv_field(&host)
            )?,
        }
    }
    Ok(recs.len())
}

/// `lessor journal stats`.
pub fn stats(state_dir: &Path) -> anyhow::Result<String> {
    let s = lessor_journal::stats_offline(&existing_journal(state_dir)?)?;
    Ok(format!("{s:#?}"))
}

/// `lessor journal verify`: every file checked, nothing changed. Errors if any problem.
pub fn verify(state_dir: &Path) -> anyhow::Result<String> {
    let r = lessor_journal::verify(&existing_journal(state_dir)?)?;
    anyhow::ensure!(r.is_clean(), "the journal has problems:\n{r:#?}");
    Ok(format!("{r:#?}"))
}

/// `lessor journal compact` (server stopped).
pub fn compact(state_dir: &Path) -> anyhow::Result<String> {
    let _lock = lock_state_dir(state_dir)?;
    let r = lessor_journal::compact_offline::<LeaseRecord>(&existing_journal(state_dir)?)?;
    Ok(format!("{r:#?}"))
}

/// `lessor journal repair` (server stopped).
pub fn repair(state_dir: &Path) -> anyhow::Result<String> {
    let _lock = lock_state_dir(state_dir)?;
    let r = lessor_journal::repair(&existing_journal(state_dir)?)?;
    Ok(format!("{r:#?}"))
}

/// `lessor journal import-kea FILE` (server stopped): appends every lease of a Kea memfile.
pub fn import_kea(state_dir: &Path, file: &Path) -> anyhow::Result<usize> {
    let text =
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))?;
    let recs = kea::parse_leases4(&text, now()).with_context(|| format!("{}", file.display()))?;
    let _lock = lock_state_dir(state_dir)?;
    let dir = journal_for_writing(state_dir)?;
    // Imported versions are row numbers; the journal may already hold records with higher
    // versions from an earlier run, so lift the imported ones above everything present.
    let (_, report) = lessor_journal::read_live::<LeaseRecord>(&dir)?;
    let base = report.max_version;
    let n = recs.len();
    lessor_journal::append_offline(
        &dir,
        recs.into_iter().map(|mut r| {
            r.version += base;
            r
        }),
    )?;
    Ok(n)
}
