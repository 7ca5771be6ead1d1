//! The DHCPv6 static assignments file: CSV in dhcpkit's shape (`id,address,prefix`), parsed
//! with line-numbered errors into look-up tables that a reload replaces whole.
//!
//! The table is immutable once built: a reload builds a new one (and keeps the old one when the
//! new file is bad), and the server swaps the `Arc` it reads through, so a packet sees either
//! the old table or the new one, never a mix.

use std::collections::HashMap;
use std::net::Ipv6Addr;
use std::path::Path;

use ipnet::Ipv6Net;

use super::build6::MAX_DUID_LEN;
use super::error::ConfigError;
use super::hex::parse_hex;
use super::{V6Config, V6Identifier};

/// What one client is assigned.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Assignment {
    /// The address for the client's first IA_NA.
    pub address: Option<Ipv6Addr>,
    /// The prefix for the client's first IA_PD.
    pub prefix: Option<Ipv6Net>,
    /// The line of the file it came from (1-based).
    pub line: u64,
}

/// Static assignments by identifier, as read from the assignments file.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Assignments {
    /// One table per identifier kind, keyed by the option payload bytes (see
    /// [`V6Identifier::wire_bytes`]): DUID, interface-id, remote-id, subscriber-id.
    tables: [HashMap<Box<[u8]>, Assignment>; 4],
}

const DUID: usize = 0;
const INTERFACE_ID: usize = 1;
const REMOTE_ID: usize = 2;
const SUBSCRIBER_ID: usize = 3;

/// Longest interface-id or subscriber-id accepted (relays send a few dozen bytes).
const MAX_ID_LEN: usize = 1024;

impl Assignments {
    /// Reads `path` and checks it against `v6` (see [`Assignments::parse`]). Errors name the
    /// file and line.
    pub fn load(path: &Path, v6: &V6Config) -> Result<Assignments, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            file: path.to_owned(),
            source,
        })?;
        Assignments::parse(&text, v6).map_err(|e| e.with_file(path))
    }

    /// Parses CSV text. Every address must lie in one of `v6`'s subnets, and no address or
    /// prefix may be assigned twice (in the file, or in the file and a YAML reservation), nor
    /// two prefixes overlap.
    pub fn parse(text: &str, v6: &V6Config) -> Result<Assignments, ConfigError> {
        let text = text.strip_prefix('\u{feff}').unwrap_or(text);
        let mut lines = text
            .lines()
            .enumerate()
            .map(|(i, l)| (i as u64 + 1, l.trim_end_matches('\r')))
            .filter(|(_, l)| !l.trim().is_empty() && !l.trim_start().starts_with('#'));
        let Some((hline, header)) = lines.next() else {
            return Ok(Assignments::default());
        };
        let sep = [',', ';', '\t']
            .into_iter()
            .find(|&c| header.contains(c))
            .ok_or_else(|| {
                error(
                    hline,
                    "the first line must name the columns id, address and prefix",
                )
            })?;
        let names = split(header, sep).map_err(|e| error(hline, e))?;
        let column = |want: &str| -> Result<usize, ConfigError> {
            let mut hits = names
                .iter()
                .enumerate()
                .filter(|(_, n)| n.trim().eq_ignore_ascii_case(want));
            match (hits.next(), hits.next()) {
                (Some((i, _)), None) => Ok(i),
                (None, _) => Err(error(
                    hline,
                    format!("the header has no `{want}` column (it needs id, address and prefix)"),
                )),
                (Some(_), Some(_)) => Err(error(hline, format!("the header names `{want}` twice"))),
            }
        };
        let (ci, ca, cp) = (column("id")?, column("address")?, column("prefix")?);

        let mut reserved: HashMap<Ipv6Addr, String> = HashMap::new();
        let mut reserved_prefixes: HashMap<Ipv6Net, String> = HashMap::new();
        for (si, s) in v6.subnets.iter().enumerate() {
            for (ri, r) in s.reservations.iter().enumerate() {
                let at = format!("{}.reservations[{ri}]", v6.subnet_path(si));
                if let Some(a) = r.address {
                    reserved.insert(a, at.clone());
                }
                if let Some(p) = r.prefix {
                    reserved_prefixes.insert(p, at);
                }
            }
        }
        for (ri, r) in v6.reservations.iter().enumerate() {
            let at = format!("v6.reservations[{ri}]");
            if let Some(a) = r.address {
                reserved.insert(a, at.clone());
            }
            if let Some(p) = r.prefix {
                reserved_prefixes.insert(p, at);
            }
        }

        let mut out = Assignments::default();
        let mut addrs: HashMap<Ipv6Addr, u64> = HashMap::new();
        let mut prefixes: Vec<(Ipv6Net, u64)> = Vec::new();
        for (line, text) in lines {
            let fields = split(text, sep).map_err(|e| error(line, e))?;
            if fields.len() != names.len() {
                return Err(error(
                    line,
                    format!(
                        "has {} fields, the header has {}",
                        fields.len(),
                        names.len()
                    ),
                ));
            }
            let id_text = fields[ci].trim();
            let (kind, key) = identifier(id_text).map_err(|e| error(line, e))?;
            let address = match fields[ca].trim() {
                "" => None,
                a => Some(address(a, v6).map_err(|e| error(line, e))?),
            };
            let prefix = match fields[cp].trim() {
                "" => None,
                p => {
                    let p = prefix(p).map_err(|e| error(line, e))?;
                    outside_pd_pools(p, v6).map_err(|e| error(line, e))?;
                    Some(p)
                }
            };
            if address.is_none() && prefix.is_none() {
                return Err(error(
                    line,
                    format!("{id_text} is assigned nothing: give an address, a prefix or both"),
                ));
            }
            if let Some(a) = address {
                if let Some(other) = addrs.insert(a, line) {
                    return Err(error(
                        line,
                        format!("{a} is already assigned on line {other}"),
                    ));
                }
                if let Some(at) = reserved.get(&a) {
                    return Err(error(line, format!("{a} is already reserved by {at}")));
                }
            }
            if let Some(p) = prefix {
                if let Some(at) = reserved_prefixes.get(&p) {
                    return Err(error(line, format!("{p} is already reserved by {at}")));
                }
                prefixes.push((p, line));
            }
            let table = &mut out.tables[kind];
            if let Some(prev) = table.get(key.as_slice()) {
                return Err(error(
                    line,
                    format!("{id_text} is already assigned on line {}", prev.line),
                ));
            }
            table.insert(
                key.into(),
                Assignment {
                    address,
                    prefix,
                    line,
                },
            );
        }

        // Sorted by start then length, a prefix overlapping any earlier one overlaps the
        // earlier one that reaches furthest.
        prefixes.sort_by_key(|(p, _)| (p.network(), p.prefix_len()));
        let mut reach: Option<(Ipv6Net, u64)> = None;
        for &(p, line) in &prefixes {
            if let Some((r, rline)) = reach
                && r.contains(&p.network())
            {
                let (later, earlier, other) = if line > rline {
                    (line, p, r)
                } else {
                    (rline, r, p)
                };
                return Err(error(
                    later,
                    format!(
                        "{earlier} overlaps {other}, assigned on line {}",
                        line.min(rline)
                    ),
                ));
            }
            if reach.is_none_or(|(r, _)| p.broadcast() > r.broadcast()) {
                reach = Some((p, line));
            }
        }
        Ok(out)
    }

    /// The assignment of a client DUID (option 1, whole).
    pub fn by_duid(&self, duid: &[u8]) -> Option<&Assignment> {
        self.tables[DUID].get(duid)
    }

    /// The assignment of an Interface-ID option (18) payload.
    pub fn by_interface_id(&self, id: &[u8]) -> Option<&Assignment> {
        self.tables[INTERFACE_ID].get(id)
    }

    /// The assignment of a Remote-ID option (37) payload: enterprise number, then the id.
    pub fn by_remote_id(&self, payload: &[u8]) -> Option<&Assignment> {
        self.tables[REMOTE_ID].get(payload)
    }

    /// The assignment of a Subscriber-ID option (38) payload.
    pub fn by_subscriber_id(&self, id: &[u8]) -> Option<&Assignment> {
        self.tables[SUBSCRIBER_ID].get(id)
    }

    /// The assignment of `id`.
    pub fn get(&self, id: &V6Identifier) -> Option<&Assignment> {
        let kind = match id {
            V6Identifier::Duid(_) => DUID,
            V6Identifier::InterfaceId(_) => INTERFACE_ID,
            V6Identifier::RemoteId { .. } => REMOTE_ID,
            V6Identifier::SubscriberId(_) => SUBSCRIBER_ID,
        };
        self.tables[kind].get(id.wire_bytes().as_slice())
    }

    /// How many assignments there are.
    pub fn len(&self) -> usize {
        self.tables.iter().map(HashMap::len).sum()
    }

    /// Whether there are none.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every assignment, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &Assignment> + '_ {
        self.tables.iter().flat_map(HashMap::values)
    }
}

fn error(line: u64, reason: impl Into<String>) -> ConfigError {
    ConfigError::Assignments {
        file: None,
        line,
        reason: reason.into(),
    }
}

/// Splits one CSV line on `sep`. A field may be wrapped in double quotes (then it may hold
/// `sep`, and `""` stands for one quote).
fn split(line: &str, sep: char) -> Result<Vec<String>, String> {
    let mut fields = Vec::new();
    let mut chars = line.chars().peekable();
    loop {
        let mut field = String::new();
        while chars.peek().is_some_and(|c| *c == ' ') {
            chars.next();
        }
        if chars.peek() == Some(&'"') {
            chars.next();
            loop {
                match chars.next() {
                    Some('"') if chars.peek() == Some(&'"') => {
                        chars.next();
                        field.push('"');
                    }
                    Some('"') => break,
                    Some(c) => field.push(c),
                    None => return Err("a quoted field is not closed".to_owned()),
                }
            }
            while chars.peek().is_some_and(|c| *c == ' ') {
                chars.next();
            }
            match chars.next() {
                None => {
                    fields.push(field);
                    return Ok(fields);
                }
                Some(c) if c == sep => fields.push(field),
                Some(c) => {
                    return Err(format!(
                        "unexpected {c:?} after a quoted field (expected {sep:?})"
                    ));
                }
            }
        } else {
            loop {
                match chars.next() {
                    None => {
                        fields.push(field);
                        return Ok(fields);
                    }
                    Some(c) if c == sep => break,
                    Some(c) => field.push(c),
                }
            }
            fields.push(field);
        }
    }
}

/// `duid:HEX`, `interface-id:HEX`, `interface-id-str:TEXT`, `remote-id:ENTERPRISE:HEX`,
/// `remote-id-str:ENTERPRISE:TEXT`, `subscriber-id:HEX`, `subscriber-id-str:TEXT`: the table
/// and the key bytes.
fn identifier(text: &str) -> Result<(usize, Vec<u8>), String> {
    let Some((kind, value)) = text.split_once(':') else {
        return Err(format!(
            "{text:?} is not an id: write duid:HEX, interface-id:HEX, interface-id-str:TEXT, \
             remote-id:ENTERPRISE:HEX, remote-id-str:ENTERPRISE:TEXT, subscriber-id:HEX or \
             subscriber-id-str:TEXT"
        ));
    };
    let hex = |what: &str, max: usize, min: usize| {
        parse_hex(value)
            .filter(|b| (min..=max).contains(&b.len()))
            .ok_or_else(|| format!("{text:?}: the {what} is not hex bytes ({min} to {max})"))
    };
    let str_bytes = |what: &str, v: &str| {
        if v.is_empty() || v.len() > MAX_ID_LEN {
            Err(format!(
                "{text:?}: the {what} must be 1 to {MAX_ID_LEN} bytes"
            ))
        } else {
            Ok(v.as_bytes().to_vec())
        }
    };
    let remote = |str_form: bool| -> Result<Vec<u8>, String> {
        let bad = || {
            format!(
                "{text:?} is not a remote-id: write remote-id:ENTERPRISE:HEX or \
                 remote-id-str:ENTERPRISE:TEXT (ENTERPRISE in decimal), e.g. remote-id:9:0123abcd"
            )
        };
        let (ent, id) = value.split_once(':').ok_or_else(bad)?;
        let enterprise: u32 = ent.trim().parse().map_err(|_| bad())?;
        let id = if str_form {
            str_bytes("remote-id", id)?
        } else {
            parse_hex(id)
                .filter(|b| b.len() <= MAX_ID_LEN)
                .ok_or_else(bad)?
        };
        let mut key = enterprise.to_be_bytes().to_vec();
        key.extend(id);
        Ok(key)
    };
    Ok(match kind.trim() {
        "duid" => (DUID, hex("DUID", MAX_DUID_LEN, 3)?),
        "interface-id" => (INTERFACE_ID, hex("interface-id", MAX_ID_LEN, 1)?),
        "interface-id-str" => (INTERFACE_ID, str_bytes("interface-id", value)?),
        "remote-id" => (REMOTE_ID, remote(false)?),
        "remote-id-str" => (REMOTE_ID, remote(true)?),
        "subscriber-id" => (SUBSCRIBER_ID, hex("subscriber-id", MAX_ID_LEN, 1)?),
        "subscriber-id-str" => (SUBSCRIBER_ID, str_bytes("subscriber-id", value)?),
        other => {
            return Err(format!(
                "unknown id type `{other}` in {text:?}: expected duid, interface-id, \
                 interface-id-str, remote-id, remote-id-str, subscriber-id or subscriber-id-str"
            ));
        }
    })
}

fn address(text: &str, v6: &V6Config) -> Result<Ipv6Addr, String> {
    let a: Ipv6Addr = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv6 address"))?;
    if a.is_unspecified() || a.is_multicast() {
        return Err(format!("{a} is not a unicast address"));
    }
    let Some((si, s)) = v6
        .subnets
        .iter()
        .enumerate()
        .find(|(_, s)| s.net.contains(&a))
    else {
        return Err(format!(
            "{a} is in no v6 subnet (an assigned address must be on the client's link)"
        ));
    };
    // The engine keeps static resources out of the dynamic pools only as configured at
    // startup; a file re-read later must not claim what a pool may have handed out.
    if let Some(pi) = s.pools.iter().position(|p| (p.first..=p.last).contains(&a))
        && s.excluded.binary_search(&a).is_err()
    {
        return Err(format!(
            "{a} is inside the dynamic pool {}.pools[{pi}]; an assigned address must lie \
             outside the pools or be in the subnet's excluded list",
            v6.subnet_path(si)
        ));
    }
    Ok(a)
}

/// Refuses a prefix overlapping a delegation pool, unless one of the pool's `excluded`
/// prefixes covers it (see [`address`]).
fn outside_pd_pools(p: Ipv6Net, v6: &V6Config) -> Result<(), String> {
    for (si, s) in v6.subnets.iter().enumerate() {
        for (pi, pool) in s.pd_pools.iter().enumerate() {
            let overlaps = pool.prefix.contains(&p.network()) || p.contains(&pool.prefix.network());
            let carved = pool.excluded.iter().any(|x| x.contains(&p));
            if overlaps && !carved {
                return Err(format!(
                    "{p} overlaps the delegation pool {}.pd_pools[{pi}] ({}); an assigned \
                     prefix must lie outside the pools or inside one of the pool's excluded \
                     prefixes",
                    v6.subnet_path(si),
                    pool.prefix
                ));
            }
        }
    }
    Ok(())
}

fn prefix(text: &str) -> Result<Ipv6Net, String> {
    let p: Ipv6Net = text
        .parse()
        .map_err(|_| format!("{text:?} is not an IPv6 prefix like 2001:db8:100::/56"))?;
    if p.trunc() != p {
        return Err(format!(
            "{p} has host bits set (did you mean {}?)",
            p.trunc()
        ));
    }
    Ok(p)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn v6() -> V6Config {
        Config::from_yaml_str(
            "v6:\n  subnets:\n    - subnet: \"2001:db8:1::/64\"\n      pools: [\"2001:db8:1::1:0/112\"]\n      \
             excluded: [\"2001:db8:1::1:5\"]\n      \
             pd_pools: [ { prefix: \"2001:db8:e000::/40\", delegated_len: 56, excluded: [\"2001:db8:e0ff::/48\"] } ]\n      \
             reservations:\n        \
             - { duid: \"00:03:00:01:02:00:00:00:00:07\", address: \"2001:db8:1::7\", prefix: \"2001:db8:ff00::/56\" }\n",
        )
        .unwrap()
        .v6
    }

    fn err(text: &str) -> String {
        Assignments::parse(text, &v6()).unwrap_err().to_string()
    }

    #[test]
    fn parses_every_id_form() {
        let text = "\u{feff}id,address,prefix\r\n\
            # a comment, then a blank line\n\
            \n\
            duid:000300010200000000aa,2001:db8:1::aa,\n\
            interface-id:65:74:68:30,,2001:db8:100::/56\n\
            interface-id-str:port 7,2001:db8:1::7:7,\n\
            remote-id:9:0123456789abcdef,,2001:db8:200::/56\n\
            remote-id-str:3561:CUST1,2001:db8:1::c1,2001:db8:300::/56\n\
            subscriber-id:ab-cd,2001:db8:1::ab,\n\
            \"subscriber-id-str:a,b\",2001:db8:1::a1,\n";
        let a = Assignments::parse(text, &v6()).unwrap();
        assert_eq!(a.len(), 7);
        let duid = a.by_duid(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 0xaa]).unwrap();
        assert_eq!(duid.address, Some("2001:db8:1::aa".parse().unwrap()));
        assert_eq!(duid.prefix, None);
        assert_eq!(duid.line, 4);
        assert_eq!(
            a.by_interface_id(b"eth0").unwrap().prefix,
            Some("2001:db8:100::/56".parse().unwrap())
        );
        assert!(a.by_interface_id(b"port 7").is_some());
        let mut rid = 9u32.to_be_bytes().to_vec();
        rid.extend([0x01, 0x23, 0x45, 0x67, 0x89, 0xab, 0xcd, 0xef]);
        assert_eq!(a.by_remote_id(&rid).unwrap().line, 7);
        let cust = V6Identifier::RemoteId {
            enterprise: 3561,
            id: b"CUST1".to_vec(),
        };
        assert_eq!(
            a.get(&cust).unwrap().prefix,
            Some("2001:db8:300::/56".parse().unwrap())
        );
        assert!(a.by_subscriber_id(&[0xab, 0xcd]).is_some());
        assert!(a.by_subscriber_id(b"a,b").is_some());
    }

    #[test]
    fn pool_exclusions_make_room_for_assignments() {
        let a = Assignments::parse(
            "id,address,prefix\nduid:000300010201,2001:db8:1::1:5,2001:db8:e0ff:100::/56\n",
            &v6(),
        )
        .unwrap();
        assert_eq!(a.len(), 1);
    }

    #[test]
    fn header_may_reorder_and_add_columns_and_use_semicolons() {
        let a = Assignments::parse(
            "prefix;comment;id;address\n2001:db8:100::/56;cust 1;duid:00030001020000000001;\n",
            &v6(),
        )
        .unwrap();
        assert_eq!(a.len(), 1);
        assert!(a.by_duid(&[0, 3, 0, 1, 2, 0, 0, 0, 0, 1]).is_some());
        assert!(Assignments::parse("", &v6()).unwrap().is_empty());
        assert!(
            Assignments::parse("# nothing yet\n", &v6())
                .unwrap()
                .is_empty()
        );
    }

    #[test]
    fn errors_name_the_line() {
        let h = "id,address,prefix\n";
        let cases = [
            (
                "id address prefix\n".to_owned(),
                "line 1: the first line must name the columns",
            ),
            (
                "id,address\n".to_owned(),
                "line 1: the header has no `prefix` column",
            ),
            (
                "id,address,prefix,id\n".to_owned(),
                "line 1: the header names `id` twice",
            ),
            (
                format!("{h}duid:00030001,2001:db8:1::1\n"),
                "line 2: has 2 fields, the header has 3",
            ),
            (
                format!("{h}\n# c\nmac:02,2001:db8:1::1,\n"),
                "line 4: unknown id type `mac`",
            ),
            (
                format!("{h}nocolon,2001:db8:1::1,\n"),
                "line 2: \"nocolon\" is not an id",
            ),
            (
                format!("{h}duid:zz,2001:db8:1::1,\n"),
                "line 2: \"duid:zz\": the DUID is not hex bytes (3 to 130)",
            ),
            (
                format!("{h}duid:0001,2001:db8:1::1,\n"),
                "line 2: \"duid:0001\": the DUID is not hex bytes",
            ),
            (
                format!("{h}remote-id:x:01,2001:db8:1::1,\n"),
                "line 2: \"remote-id:x:01\" is not a remote-id",
            ),
            (
                format!("{h}remote-id:9,2001:db8:1::1,\n"),
                "line 2: \"remote-id:9\" is not a remote-id",
            ),
            (
                format!("{h}remote-id:9:CUST,2001:db8:1::1,\n"),
                "line 2: \"remote-id:9:CUST\" is not a remote-id",
            ),
            (
                format!("{h}interface-id-str:,2001:db8:1::1,\n"),
                "line 2: \"interface-id-str:\": the interface-id must be 1 to 1024 bytes",
            ),
            (
                format!("{h}duid:000300010200,nope,\n"),
                "line 2: \"nope\" is not an IPv6 address",
            ),
            (
                format!("{h}duid:000300010200,ff02::1,\n"),
                "line 2: ff02::1 is not a unicast address",
            ),
            (
                format!("{h}duid:000300010200,2001:db8:9::1,\n"),
                "line 2: 2001:db8:9::1 is in no v6 subnet",
            ),
            (
                format!("{h}duid:000300010200,,2001:db8::1/48\n"),
                "line 2: 2001:db8::1/48 has host bits set",
            ),
            (
                format!("{h}duid:000300010200,,\n"),
                "line 2: duid:000300010200 is assigned nothing",
            ),
            (
                format!(
                    "{h}duid:000300010200,2001:db8:1::1,\nduid:00-03-00-01-02-00,2001:db8:1::2,\n"
                ),
                "line 3: duid:00-03-00-01-02-00 is already assigned on line 2",
            ),
            (
                format!("{h}duid:000300010201,2001:db8:1::1,\nduid:000300010202,2001:db8:1::1,\n"),
                "line 3: 2001:db8:1::1 is already assigned on line 2",
            ),
            (
                format!("{h}duid:000300010201,2001:db8:1::7,\n"),
                "line 2: 2001:db8:1::7 is already reserved by v6.subnets[0].reservations[0]",
            ),
            (
                format!("{h}duid:000300010201,,2001:db8:ff00::/56\n"),
                "line 2: 2001:db8:ff00::/56 is already reserved by v6.subnets[0].reservations[0]",
            ),
            (
                format!(
                    "{h}duid:000300010201,,2001:db8:100::/56\nduid:000300010202,,2001:db8:100::/48\n"
                ),
                "line 3: 2001:db8:100::/48 overlaps 2001:db8:100::/56, assigned on line 2",
            ),
            (
                format!(
                    "{h}duid:000300010201,,2001:db8:100::/48\nduid:000300010202,,2001:db8:100:200::/56\n"
                ),
                "line 3: 2001:db8:100:200::/56 overlaps 2001:db8:100::/48, assigned on line 2",
            ),
            (
                format!("{h}\"duid:0003000102,2001:db8:1::1,\n"),
                "line 2: a quoted field is not closed",
            ),
            (
                format!("{h}\"duid:0003000102\"x,2001:db8:1::1,\n"),
                "line 2: unexpected 'x' after a quoted field",
            ),
        ];
        for (text, want) in cases {
            let got = err(&text);
            assert!(got.contains(want), "{text}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn load_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let f = dir.path().join("assignments.csv");
        std::fs::write(&f, "id,address,prefix\nbad,,\n").unwrap();
        let e = Assignments::load(&f, &v6()).unwrap_err();
        assert_eq!(e.file(), Some(f.as_path()));
        assert!(
            e.to_string().starts_with(&format!("{}:2: ", f.display())),
            "{e}"
        );
        let e = Assignments::load(&dir.path().join("missing.csv"), &v6()).unwrap_err();
        assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    }
}
