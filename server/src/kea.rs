//! Reads ISC Kea's memfile lease file (`leases4.csv`) into journal records, so a Kea user can
//! switch to lessor without losing a lease.
//!
//! Kea appends one row per lease change and never rewrites rows in place: the last row for an
//! address is the lease (its lease file cleanup, kea-lfc, keeps only those). So the row number
//! becomes the record's version and the journal's fold keeps the newest row per address. Kea
//! does not quote fields; it writes a comma inside a value as `&#x2c`.

use std::net::Ipv4Addr;

use lessor_engine::v4::ClientKey;

use crate::lease_record::{EVENT_IMPORTED, LeaseKey, LeaseRecord};

/// Why a lease file could not be read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeaError {
    /// The first line is not a Kea v4 lease file header.
    #[error("line 1: not a Kea DHCPv4 lease file header (missing column {0:?})")]
    Header(&'static str),
    /// A row that cannot be read.
    #[error("line {line}: {reason}")]
    Row {
        /// 1-based line number.
        line: usize,
        /// What is wrong with it.
        reason: String,
    },
}

/// Kea's lease states (src/lib/dhcpsrv/lease.h).
const KEA_DEFAULT: u8 = 0;
const KEA_DECLINED: u8 = 1;
const KEA_EXPIRED_RECLAIMED: u8 = 2;
const KEA_RELEASED: u8 = 3;

/// lessor's state codes (see `LeaseRecord::state`).
const BOUND: u8 = 1;
const RELEASED: u8 = 2;
const EXPIRED: u8 = 3;
const DECLINED: u8 = 4;

fn hex_bytes(s: &str) -> Option<Vec<u8>> {
    if s.is_empty() {
        return Some(Vec::new());
    }
    s.split(':')
        .map(|b| u8::from_str_radix(b, 16).ok())
        .collect()
}

/// Parses the whole file. `now` decides whether a default-state lease is still bound.
pub fn parse_leases4(text: &str, now: u64) -> Result<Vec<LeaseRecord>, KeaError> {
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().unwrap_or("").split(',').collect();
    let col = |name: &'static str| {
        header
            .iter()
            .position(|h| h.trim() == name)
            .ok_or(KeaError::Header(name))
    };
    let (c_addr, c_hw, c_cid, c_valid, c_expire, c_host, c_state) = (
        col("address")?,
        col("hwaddr")?,
        col("client_id")?,
        col("valid_lifetime")?,
        col("expire")?,
        col("hostname")?,
        col("state")?,
    );
    let mut out = Vec::new();
    for (i, row) in lines.enumerate() {
        let line = i + 2;
        if row.trim().is_empty() {
            continue;
        }
        let f: Vec<&str> = row.split(',').collect();
        let bad = |reason: String| KeaError::Row { line, reason };
        let get = |c: usize| {
            f.get(c).copied().ok_or_else(|| {
                bad(format!(
                    "has {} columns, the header {}",
                    f.len(),
                    header.len()
                ))
            })
        };
        let addr: Ipv4Addr = get(c_addr)?
            .parse()
            .map_err(|_| bad(format!("address {:?} is not IPv4", f[c_addr])))?;
        let hw =
            hex_bytes(get(c_hw)?).ok_or_else(|| bad(format!("hwaddr {:?} is not hex", f[c_hw])))?;
        let cid = hex_bytes(get(c_cid)?)
            .ok_or_else(|| bad(format!("client_id {:?} is not hex", f[c_cid])))?;
        let num = |c: usize, what: &str| {
            get(c)?
                .parse::<u64>()
                .map_err(|_| bad(format!("{what} {:?} is not a number", f[c])))
        };
        let valid = num(c_valid, "valid_lifetime")?;
        let expire = num(c_expire, "expire")?;
        let kea_state = u8::try_from(num(c_state, "state")?)
            .map_err(|_| bad(format!("state {:?} is out of range", f[c_state])))?;
        let host = get(c_host)?.replace("&#x2c", ",");
        if hw.len() > 16 {
            return Err(bad(format!("hwaddr has {} bytes, at most 16", hw.len())));
        }
        // A row with valid lifetime 0 is how memfile records a deleted lease.
        let state = match kea_state {
            _ if valid == 0 => EXPIRED,
            KEA_DEFAULT if expire > now => BOUND,
            KEA_DEFAULT | KEA_EXPIRED_RECLAIMED => EXPIRED,
            KEA_DECLINED => DECLINED,
            KEA_RELEASED => RELEASED,
            other => return Err(bad(format!("unknown lease state {other}"))),
        };
        // Kea identifies a client by client id when it has one, else by hardware address:
        // the same rule lessor uses (RFC 2131 §4.2).
        let client = if cid.len() >= 2 {
            ClientKey::client_id(&cid)
        } else {
            ClientKey::hardware(1, &hw)
        };
        out.push(LeaseRecord {
            version: (i + 1) as u64,
            event: EVENT_IMPORTED,
            key: LeaseKey::V4(u32::from(addr)),
            client: client.as_bytes().to_vec(),
            htype: 1,
            hw,
            hostname: (!host.is_empty()).then_some(host),
            state,
            starts: expire.saturating_sub(valid),
            expires: expire,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const FILE: &str = "address,hwaddr,client_id,valid_lifetime,expire,subnet_id,fqdn_fwd,fqdn_rev,hostname,state,user_context,pool_id
10.0.0.1,00:0c:01:02:03:04,,4000,2000004000,1,0,0,,0,,0
10.0.0.2,00:0c:01:02:03:05,01:00:0c:01:02:03:05,4000,2000004000,1,0,0,pc&#x2cone,0,,0
10.0.0.3,00:0c:01:02:03:06,,4000,1000,1,0,0,,0,,0
10.0.0.1,00:0c:01:02:03:04,,0,2000000000,1,0,0,,0,,0
10.0.0.4,,,4000,2000004000,1,0,0,,1,,0
";

    #[test]
    fn reads_a_memfile() {
        let recs = parse_leases4(FILE, 2_000_000_000).unwrap();
        assert_eq!(recs.len(), 5);
        assert_eq!(recs[0].state, BOUND);
        assert_eq!(recs[0].starts, 2_000_000_000);
        assert_eq!(recs[1].hostname.as_deref(), Some("pc,one"));
        assert_eq!(
            recs[1].client,
            ClientKey::client_id(&[1, 0, 0xc, 1, 2, 3, 5]).as_bytes()
        );
        assert_eq!(recs[2].state, EXPIRED, "expired before now");
        // The later row for 10.0.0.1 deletes it, and has the higher version.
        assert_eq!(
            (recs[3].state, recs[3].version > recs[0].version),
            (EXPIRED, true)
        );
        assert_eq!(recs[4].state, DECLINED);
    }

    #[test]
    fn bad_rows_name_their_line() {
        let e = parse_leases4("address,hwaddr\n", 0).unwrap_err();
        assert!(e.to_string().contains("client_id"), "{e}");
        let text = FILE.replace("10.0.0.3,", "10.0.0.300,");
        let e = parse_leases4(&text, 0).unwrap_err();
        assert!(
            e.to_string().starts_with("line 4: address \"10.0.0.300\""),
            "{e}"
        );
        let text = FILE.replace("00:0c:01:02:03:06", "zz");
        assert!(
            parse_leases4(&text, 0)
                .unwrap_err()
                .to_string()
                .starts_with("line 4:")
        );
    }
}
