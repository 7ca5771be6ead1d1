//! The server's DUID (RFC 8415 §11): generated once, kept in the state directory, reused on
//! every start so clients keep recognising this server.
//!
//! The first start makes a DUID-LLT (§11.2: Ethernet hardware type, the time, a MAC) from the
//! first Ethernet interface with a real address, preferring devices over virtual interfaces
//! (names sorted, so the choice is stable). A host with none gets a DUID-UUID (RFC 6355) from 16
//! random bytes instead of a DUID-EN: a DUID-EN needs the vendor's own IANA enterprise number,
//! which lessor does not have, and DUIDs are opaque to clients (§11), so the type does not
//! matter to them. The file holds the DUID as colon-separated hex on one line, written to a
//! temporary file, fsynced and renamed into place so a crash never leaves half a DUID.

use std::io::{self, Write as _};
use std::path::{Path, PathBuf};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::config::Config;

/// The file in the state directory that holds the DUID.
pub const DUID_FILE: &str = "server-duid";

/// Seconds from the Unix epoch to 2000-01-01T00:00:00Z, the DUID-LLT epoch (RFC 8415 §11.2).
const DUID_EPOCH: u64 = 946_684_800;

/// The server DUID to use: `v6.server_duid` when configured, else [`load_or_create_duid`] in
/// `state_dir`.
pub fn server_duid(config: &Config) -> io::Result<Vec<u8>> {
    match &config.v6.server_duid {
        Some(d) => Ok(d.clone()),
        None => load_or_create_duid(&config.state_dir),
    }
}

/// Reads the DUID kept in `state_dir`, or makes one (see the module docs) and keeps it there.
/// A file that exists but does not hold a DUID is an error, not a reason to make a new one: a
/// new DUID would make every client's server identifier stale.
pub fn load_or_create_duid(state_dir: &Path) -> io::Result<Vec<u8>> {
    let path = state_dir.join(DUID_FILE);
    match std::fs::read_to_string(&path) {
        Ok(text) => parse_duid(&text).ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "{} does not hold a DUID (hex bytes like 00:01:00:01:...); fix or remove it \
                     (a new DUID makes clients' server identifiers stale)",
                    path.display()
                ),
            )
        }),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            let now = SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs());
            let duid = match first_mac() {
                Some(mac) => duid_llt(mac, now),
                None => duid_uuid(random16()?),
            };
            std::fs::create_dir_all(state_dir)?;
            write_atomically(&path, format!("{}\n", format_duid(&duid)).as_bytes())?;
            Ok(duid)
        }
        Err(e) => Err(io::Error::new(
            e.kind(),
            format!("cannot read {}: {e}", path.display()),
        )),
    }
}

/// DUID-LLT (RFC 8415 §11.2): type 1, hardware type 1 (Ethernet), seconds since 2000 modulo
/// 2^32, the MAC.
pub fn duid_llt(mac: [u8; 6], unix_now: u64) -> Vec<u8> {
    let t = (unix_now.saturating_sub(DUID_EPOCH) & 0xffff_ffff) as u32;
    let mut d = vec![0, 1, 0, 1];
    d.extend_from_slice(&t.to_be_bytes());
    d.extend_from_slice(&mac);
    d
}

/// DUID-UUID (RFC 6355): type 4, then a version-4 (random) UUID made from `random`.
pub fn duid_uuid(mut random: [u8; 16]) -> Vec<u8> {
    // RFC 4122 §4.4: version 4, variant 10.
    random[6] = (random[6] & 0x0f) | 0x40;
    random[8] = (random[8] & 0x3f) | 0x80;
    let mut d = vec![0, 4];
    d.extend_from_slice(&random);
    d
}

/// `00:01:...`.
pub fn format_duid(duid: &[u8]) -> String {
    duid.iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

/// Colon-separated (or plain) hex, 3 to 130 bytes (RFC 8415 §11.1).
fn parse_duid(text: &str) -> Option<Vec<u8>> {
    let digits: String = text.trim().chars().filter(|&c| c != ':').collect();
    if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    let b: Vec<u8> = (0..digits.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
        .collect::<Option<_>>()?;
    (3..=130).contains(&b.len()).then_some(b)
}

/// The MAC of the first Ethernet interface with a non-zero address: devices first (they have a
/// `device` link in sysfs), then virtual interfaces, each by name.
fn first_mac() -> Option<[u8; 6]> {
    let mut names: Vec<(bool, String)> = std::fs::read_dir("/sys/class/net")
        .ok()?
        .filter_map(|e| {
            let e = e.ok()?;
            let virt = !e.path().join("device").exists();
            Some((virt, e.file_name().to_string_lossy().into_owned()))
        })
        .collect();
    names.sort();
    names.into_iter().find_map(|(_, name)| {
        let dir = PathBuf::from("/sys/class/net").join(name);
        // ARPHRD_ETHER: its hardware type is IANA's Ethernet (1) too.
        let ty = std::fs::read_to_string(dir.join("type")).ok()?;
        if ty.trim() != "1" {
            return None;
        }
        let text = std::fs::read_to_string(dir.join("address")).ok()?;
        let mac: [u8; 6] = parse_duid(&format!("00:00:{}", text.trim()))?
            .get(2..)?
            .try_into()
            .ok()?;
        (mac != [0; 6]).then_some(mac)
    })
}

fn random16() -> io::Result<[u8; 16]> {
    use std::io::Read as _;
    let mut b = [0u8; 16];
    std::fs::File::open("/dev/urandom")?.read_exact(&mut b)?;
    Ok(b)
}

/// Writes `path` so that it is either absent, or whole: temporary file, fsync, rename, fsync of
/// the directory.
fn write_atomically(path: &Path, data: &[u8]) -> io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(data)?;
        f.sync_all()?;
    }
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(dir)?.sync_all()?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn llt_layout_rfc8415() {
        // 2000-01-01 + 0x12345678 seconds.
        let d = duid_llt([2, 0, 0, 0, 0, 9], DUID_EPOCH + 0x1234_5678);
        assert_eq!(d, [0, 1, 0, 1, 0x12, 0x34, 0x56, 0x78, 2, 0, 0, 0, 0, 9]);
        assert_eq!(format_duid(&d), "00:01:00:01:12:34:56:78:02:00:00:00:00:09");
        assert_eq!(parse_duid(&format_duid(&d)), Some(d));
    }

    #[test]
    fn uuid_layout_rfc6355() {
        let d = duid_uuid([0xff; 16]);
        assert_eq!(d.len(), 18);
        assert_eq!(&d[..2], &[0, 4]);
        assert_eq!(d[2 + 6] >> 4, 4, "version 4");
        assert_eq!(d[2 + 8] >> 6, 0b10, "RFC 4122 variant");
    }

    #[test]
    fn created_once_then_kept() {
        let dir = tempfile::tempdir().unwrap();
        let state = dir.path().join("state");
        let first = load_or_create_duid(&state).unwrap();
        assert!(matches!(first[..2], [0, 1] | [0, 4]), "{first:?}");
        let text = std::fs::read_to_string(state.join(DUID_FILE)).unwrap();
        assert_eq!(text, format!("{}\n", format_duid(&first)));
        assert!(!state.join("server-duid.tmp").exists());
        assert_eq!(load_or_create_duid(&state).unwrap(), first);

        // An operator's own DUID in the file is used as is.
        std::fs::write(state.join(DUID_FILE), "0002000000090102\n").unwrap();
        assert_eq!(
            load_or_create_duid(&state).unwrap(),
            [0, 2, 0, 0, 0, 9, 1, 2]
        );
        // A damaged file is an error naming it, not a silent new identity.
        std::fs::write(state.join(DUID_FILE), "not a duid\n").unwrap();
        let e = load_or_create_duid(&state).unwrap_err();
        assert!(
            e.to_string().contains("server-duid does not hold a DUID"),
            "{e}"
        );
    }

    #[test]
    fn configured_duid_wins() {
        let dir = tempfile::tempdir().unwrap();
        let mut c = Config::from_yaml_str("v6: { server_duid: \"00:02:00:00:00:09:01\" }").unwrap();
        c.state_dir = dir.path().to_owned();
        assert_eq!(server_duid(&c).unwrap(), [0, 2, 0, 0, 0, 9, 1]);
        assert!(!dir.path().join(DUID_FILE).exists());
        c.v6.server_duid = None;
        assert_eq!(
            server_duid(&c).unwrap(),
            load_or_create_duid(dir.path()).unwrap()
        );
    }
}
