//! DHCPv6 options: the name catalogue, value checking, and encoding to wire bytes at load time.
//!
//! The same scheme as DHCPv4's (`options.rs`): known names (`dns_servers: [2001:db8::1]`) or
//! numeric codes with a typed value (`"65000": { ip: [2001:db8::5] }`), encoded once here into
//! the option's payload; the packet path only copies bytes. DHCPv6 option codes are 16 bits and
//! payloads up to 65535 bytes (RFC 8415 §21.1), so nothing is ever split.

use std::net::Ipv6Addr;

use super::error::{ConfigError, invalid};
use super::options::{
    decode_domains, encode_domain, expected, format_hex, one_or_many, parse_hex, string,
};
use super::path::join;
use super::wire::Value;

/// Encoded DHCPv6 options, sorted by code, at most one entry per code.
///
/// Each entry is an option's payload (no code or length), ready to be copied into a reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct OptionSet6 {
    entries: Vec<(u16, Box<[u8]>)>,
}

impl OptionSet6 {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// The payload of option `code`, if set.
    pub fn get(&self, code: u16) -> Option<&[u8]> {
        self.entries
            .binary_search_by_key(&code, |(c, _)| *c)
            .ok()
            .map(|i| &*self.entries[i].1)
    }

    /// All options, by increasing code.
    pub fn iter(&self) -> impl Iterator<Item = (u16, &[u8])> + '_ {
        self.entries.iter().map(|(c, v)| (*c, &**v))
    }

    /// How many options are set.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether no option is set.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Sets option `code` to `payload`, returning the payload it replaces.
    pub fn insert(&mut self, code: u16, payload: impl Into<Box<[u8]>>) -> Option<Box<[u8]>> {
        let payload = payload.into();
        match self.entries.binary_search_by_key(&code, |(c, _)| *c) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, payload)),
            Err(i) => {
                self.entries.insert(i, (code, payload));
                None
            }
        }
    }

    /// This set with every option of `child` replacing or adding to it (global, subnet,
    /// reservation).
    pub fn merged(&self, child: &OptionSet6) -> OptionSet6 {
        let mut out = self.clone();
        for (code, v) in child.iter() {
            out.insert(code, v);
        }
        out
    }

    /// The options of `self` that `base` lacks or has with another payload.
    pub(super) fn diff_from(&self, base: &OptionSet6) -> OptionSet6 {
        let mut out = OptionSet6::new();
        for (code, v) in self.iter() {
            if base.get(code) != Some(v) {
                out.insert(code, v);
            }
        }
        out
    }
}

/// How a value is written in the config and encoded on the wire.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    /// One or more IPv6 addresses, concatenated.
    Ips,
    U8,
    U16,
    U32,
    I32,
    /// One byte, 0 or 1.
    Bool,
    /// Text, as its UTF-8 bytes.
    Str,
    /// Raw bytes written as hex.
    Hex,
    /// Domain names in RFC 1035 label form, no compression (RFC 8415 §10).
    Domains,
    /// Exactly one domain name (e.g. the DS-Lite AFTR name, RFC 6334).
    Domain,
    /// RFC 5908 NTP server sub-options: an address, a multicast address or a name each.
    Ntp,
}

struct Named {
    name: &'static str,
    code: u16,
    kind: Kind,
}

const fn named(name: &'static str, code: u16, kind: Kind) -> Named {
    Named { name, code, kind }
}

/// Options known by name. Any other code is reachable by number with a typed value.
const NAMED: &[Named] = &[
    named("sip_server_domains", 21, Kind::Domains),
    named("sip_servers", 22, Kind::Ips),
    named("dns_servers", 23, Kind::Ips),
    named("domain_search", 24, Kind::Domains),
    named("nis_servers", 27, Kind::Ips),
    named("nisp_servers", 28, Kind::Ips),
    named("nis_domain", 29, Kind::Domains),
    named("nisp_domain", 30, Kind::Domains),
    named("sntp_servers", 31, Kind::Ips),
    named("information_refresh_time", 32, Kind::U32),
    named("posix_timezone", 41, Kind::Str),
    named("tz_database", 42, Kind::Str),
    named("ntp_servers", 56, Kind::Ntp),
    named("bootfile_url", 59, Kind::Str),
    named("aftr_name", 64, Kind::Domain),
    named("captive_portal", 103, Kind::Str),
];

/// Type names accepted in a by-code value, `"65000": { ip: [2001:db8::5] }`.
const TYPED: &[(&str, Kind)] = &[
    ("ip", Kind::Ips),
    ("ips", Kind::Ips),
    ("u8", Kind::U8),
    ("u16", Kind::U16),
    ("u32", Kind::U32),
    ("i32", Kind::I32),
    ("bool", Kind::Bool),
    ("string", Kind::Str),
    ("hex", Kind::Hex),
    ("domains", Kind::Domains),
];

/// Codes the server writes itself (or that only clients and relays send); a config may not set
/// them. With the reason, or the key to use instead.
const SERVER_MANAGED: &[(u16, &str)] = &[
    (0, "reserved"),
    (1, "client identifier"),
    (2, "server identifier; set v6.server_duid"),
    (3, "IA_NA"),
    (4, "IA_TA"),
    (5, "IA address"),
    (6, "option request"),
    (7, "preference; set preference"),
    (8, "elapsed time"),
    (9, "relay message"),
    (11, "authentication"),
    (12, "server unicast; set v6.server_unicast"),
    (13, "status code"),
    (14, "rapid commit; set rapid_commit"),
    (18, "interface-id"),
    (19, "reconfigure message"),
    (20, "reconfigure accept"),
    (25, "IA_PD"),
    (26, "IA prefix"),
    (37, "remote-id"),
    (38, "subscriber-id"),
    (67, "prefix exclude; set a pd_pool's excluded_prefix"),
    (79, "client link-layer address"),
];

/// NTP sub-option codes (RFC 5908 §4).
const NTP_SRV_ADDR: u16 = 1;
const NTP_MC_ADDR: u16 = 2;
const NTP_SRV_FQDN: u16 = 3;

/// The config name of DHCPv6 option `code`, if it has one (for logs and messages).
pub fn option6_name(code: u16) -> Option<&'static str> {
    NAMED.iter().find(|n| n.code == code).map(|n| n.name)
}

/// Parses and encodes the DHCPv6 `options:` map at `path` (absent or null: no options).
pub(super) fn parse_options6(path: &str, value: Option<&Value>) -> Result<OptionSet6, ConfigError> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(OptionSet6::new()),
        Some(Value::Map(entries)) => entries,
        Some(other) => {
            return Err(invalid(
                path,
                format!(
                    "expected a map of option names (or codes) to values, got {}",
                    other.describe()
                ),
            ));
        }
    };
    let mut set = OptionSet6::new();
    let mut keys: Vec<(u16, &str)> = Vec::new();
    for (key, v) in entries {
        let kpath = join(path, key);
        let (code, payload) = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            let code = check_code(&kpath, key)?;
            (code, encode_typed(&kpath, v)?)
        } else {
            let Some(n) = NAMED.iter().find(|n| n.name == key) else {
                return Err(invalid(
                    kpath,
                    format!(
                        "unknown DHCPv6 option name `{key}` (known names are listed in the \
                         config docs; any other option can be given by code with a typed value, \
                         e.g. \"65000\": {{ ip: [2001:db8::5] }})"
                    ),
                ));
            };
            (n.code, encode_named(n, v, &kpath)?)
        };
        if let Some((_, first)) = keys.iter().find(|(c, _)| *c == code) {
            return Err(invalid(
                kpath,
                format!("option {code} is already set by `{first}` in the same map"),
            ));
        }
        keys.push((code, key));
        set.insert(code, payload);
    }
    Ok(set)
}

fn check_code(path: &str, key: &str) -> Result<u16, ConfigError> {
    let code = key.parse::<u32>().unwrap_or(u32::MAX);
    if let Ok(c) = u16::try_from(code)
        && let Some((_, why)) = SERVER_MANAGED.iter().find(|(m, _)| *m == c)
    {
        return Err(invalid(
            path,
            format!("option {c} ({why}) is managed by the server and cannot be configured"),
        ));
    }
    u16::try_from(code)
        .map_err(|_| invalid(path, format!("option code {key} is out of range 1..=65535")))
}

fn encode_named(n: &Named, v: &Value, path: &str) -> Result<Vec<u8>, ConfigError> {
    let bytes = encode(n.kind, v, path, false)?;
    match n.code {
        // RFC 8415 §21.23: IRT_MINIMUM is 600 seconds; clients raise anything lower to it.
        32 if u32::from_be_bytes([bytes[0], bytes[1], bytes[2], bytes[3]]) < 600 => Err(invalid(
            path,
            "information_refresh_time must be at least 600 seconds (RFC 8415 §21.23)",
        )),
        _ => Ok(bytes),
    }
}

fn encode_typed(path: &str, v: &Value) -> Result<Vec<u8>, ConfigError> {
    let types = || TYPED.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ");
    let Value::Map(entries) = v else {
        return Err(invalid(
            path,
            format!(
                "an option given by code needs a typed value such as {{ ip: [2001:db8::5] }}, \
                 got {}; types: {}",
                v.describe(),
                types()
            ),
        ));
    };
    let [(ty, inner)] = entries.as_slice() else {
        return Err(invalid(
            path,
            format!("expected exactly one type key, one of {}", types()),
        ));
    };
    let tpath = join(path, ty);
    let Some((_, kind)) = TYPED.iter().find(|(t, _)| t == ty) else {
        return Err(invalid(
            tpath,
            format!("unknown value type `{ty}`, expected one of {}", types()),
        ));
    };
    encode(*kind, inner, &tpath, true)
}

/// Encodes `v` as `kind`. `many` lets integer and boolean kinds take a list too.
fn encode(kind: Kind, v: &Value, path: &str, many: bool) -> Result<Vec<u8>, ConfigError> {
    let mut out = Vec::new();
    match kind {
        Kind::Str => match v {
            Value::Str(s) if !s.is_empty() => out.extend(s.as_bytes()),
            Value::Str(_) => return Err(invalid(path, "must not be empty")),
            other => return Err(expected(path, "a string (quote it)", other)),
        },
        Kind::Hex => match v {
            Value::Str(s) => {
                out = parse_hex(s).ok_or_else(|| {
                    invalid(
                        path,
                        format!("{s:?} is not hex bytes (write \"01:02:0a\" or \"0x01020a\")"),
                    )
                })?
            }
            other => return Err(expected(path, "hex bytes such as \"01:02:0a\"", other)),
        },
        Kind::Domain => {
            let s = string(v, path, "a domain name")?;
            encode_domain(s, &mut out).map_err(|e| invalid(path, e))?;
        }
        Kind::Ips | Kind::Domains | Kind::Ntp => {
            for (p, item) in one_or_many(v, path, what(kind))? {
                match kind {
                    Kind::Ips => out.extend(ip6(item, &p)?.octets()),
                    Kind::Domains => {
                        let s = string(item, &p, "a domain name")?;
                        encode_domain(s, &mut out).map_err(|e| invalid(&p, e))?;
                    }
                    _ => encode_ntp(item, &p, &mut out)?,
                }
            }
        }
        Kind::U8 | Kind::U16 | Kind::U32 | Kind::I32 | Kind::Bool => {
            let items = if many {
                one_or_many(v, path, what(kind))?
            } else {
                vec![(path.to_owned(), v)]
            };
            for (p, item) in items {
                encode_number(kind, item, &p, &mut out)?;
            }
        }
    }
    if out.len() > usize::from(u16::MAX) {
        return Err(invalid(
            path,
            format!(
                "encodes to {} bytes; a DHCPv6 option holds at most 65535",
                out.len()
            ),
        ));
    }
    Ok(out)
}

/// One RFC 5908 sub-option: a unicast address (1), a multicast address (2) or a name (3).
fn encode_ntp(v: &Value, path: &str, out: &mut Vec<u8>) -> Result<(), ConfigError> {
    let s = string(v, path, "an IPv6 address or a host name")?;
    let (code, body) = match s.trim().parse::<Ipv6Addr>() {
        Ok(a) if a.is_multicast() => (NTP_MC_ADDR, a.octets().to_vec()),
        Ok(a) => (NTP_SRV_ADDR, a.octets().to_vec()),
        Err(_) => {
            let mut name = Vec::new();
            encode_domain(s, &mut name).map_err(|e| {
                invalid(
                    path,
                    format!("neither an IPv6 address nor a host name: {e}"),
                )
            })?;
            (NTP_SRV_FQDN, name)
        }
    };
    out.extend(code.to_be_bytes());
    // A domain is at most 255 bytes, an address 16: the length always fits.
    out.extend((body.len() as u16).to_be_bytes());
    out.extend(body);
    Ok(())
}

fn decode_ntp(mut b: &[u8]) -> Option<Vec<String>> {
    let mut out = Vec::new();
    while !b.is_empty() {
        let code = u16::from_be_bytes([*b.first()?, *b.get(1)?]);
        let len = usize::from(u16::from_be_bytes([*b.get(2)?, *b.get(3)?]));
        let body = b.get(4..4 + len)?;
        out.push(match code {
            NTP_SRV_ADDR | NTP_MC_ADDR => {
                Ipv6Addr::from(<[u8; 16]>::try_from(body).ok()?).to_string()
            }
            NTP_SRV_FQDN => match decode_domains(body)?.as_slice() {
                [one] => one.clone(),
                _ => return None,
            },
            _ => return None,
        });
        b = &b[4 + len..];
    }
    Some(out)
}

fn encode_number(kind: Kind, v: &Value, path: &str, out: &mut Vec<u8>) -> Result<(), ConfigError> {
    if kind == Kind::Bool {
        let Value::Bool(b) = v else {
            return Err(expected(path, "true or false", v));
        };
        out.push(u8::from(*b));
        return Ok(());
    }
    let (lo, hi) = match kind {
        Kind::U8 => (0, i128::from(u8::MAX)),
        Kind::U16 => (0, i128::from(u16::MAX)),
        Kind::U32 => (0, i128::from(u32::MAX)),
        _ => (i128::from(i32::MIN), i128::from(i32::MAX)),
    };
    let range = format!("an integer in {lo}..={hi}");
    let Value::Int(i) = v else {
        return Err(expected(path, &range, v));
    };
    if !(lo..=hi).contains(i) {
        return Err(invalid(path, format!("expected {range}, got {i}")));
    }
    // In range, so the casts are exact; DHCPv6 is big-endian (network order).
    match kind {
        Kind::U8 => out.push(*i as u8),
        Kind::U16 => out.extend((*i as u16).to_be_bytes()),
        Kind::U32 => out.extend((*i as u32).to_be_bytes()),
        _ => out.extend((*i as i32).to_be_bytes()),
    }
    Ok(())
}

fn what(kind: Kind) -> &'static str {
    match kind {
        Kind::Ips => "IPv6 addresses",
        Kind::Domains => "domain names",
        Kind::Ntp => "NTP servers (addresses or host names)",
        Kind::Bool => "booleans",
        _ => "integers",
    }
}

fn ip6(v: &Value, path: &str) -> Result<Ipv6Addr, ConfigError> {
    let s = string(v, path, "an IPv6 address")?;
    s.trim()
        .parse()
        .map_err(|_| invalid(path, format!("{s:?} is not an IPv6 address")))
}

fn strs(items: Vec<String>) -> Value {
    Value::Seq(items.into_iter().map(Value::Str).collect())
}

/// The config value that encodes to `b` as `kind`, if there is one.
fn decode(kind: Kind, b: &[u8]) -> Option<Value> {
    Some(match kind {
        Kind::Ips => {
            if b.is_empty() || !b.len().is_multiple_of(16) {
                return None;
            }
            strs(
                b.chunks_exact(16)
                    .map(|c| {
                        let a: [u8; 16] = c.try_into().unwrap_or_default();
                        Ipv6Addr::from(a).to_string()
                    })
                    .collect(),
            )
        }
        Kind::U8 => Value::Int(u8::from_be_bytes(b.try_into().ok()?).into()),
        Kind::U16 => Value::Int(u16::from_be_bytes(b.try_into().ok()?).into()),
        Kind::U32 => Value::Int(u32::from_be_bytes(b.try_into().ok()?).into()),
        Kind::I32 => Value::Int(i32::from_be_bytes(b.try_into().ok()?).into()),
        Kind::Bool => match b {
            [0] => Value::Bool(false),
            [1] => Value::Bool(true),
            _ => return None,
        },
        Kind::Str => Value::str(std::str::from_utf8(b).ok()?),
        Kind::Hex => Value::str(format_hex(b)),
        Kind::Domains => strs(decode_domains(b)?),
        Kind::Domain => match decode_domains(b)?.as_slice() {
            [one] => Value::str(one.clone()),
            _ => return None,
        },
        Kind::Ntp => strs(decode_ntp(b)?),
    })
}

/// The `options:` map that parses back to exactly `set`: by name where the payload decodes and
/// re-encodes to the same bytes, otherwise by code as hex.
pub(super) fn render_options6(set: &OptionSet6) -> Value {
    let entries = set
        .iter()
        .map(|(code, bytes)| {
            let by_name = NAMED.iter().find(|n| n.code == code).and_then(|n| {
                let v = decode(n.kind, bytes)?;
                let same = encode_named(n, &v, "").ok()? == bytes;
                same.then(|| (n.name.to_owned(), v))
            });
            by_name.unwrap_or_else(|| {
                let hex = Value::Map(vec![("hex".to_owned(), Value::str(format_hex(bytes)))]);
                (code.to_string(), hex)
            })
        })
        .collect();
    Value::Map(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn enc(yaml_value: &str) -> Result<OptionSet6, String> {
        let v: Value = serde_saphyr::from_str(yaml_value).map_err(|e| e.to_string())?;
        parse_options6("o", Some(&v)).map_err(|e| e.to_string())
    }

    fn one(yaml_value: &str, code: u16) -> Vec<u8> {
        let set = enc(yaml_value).unwrap();
        assert_eq!(set.len(), 1, "{set:?}");
        set.get(code).unwrap().to_vec()
    }

    fn a(s: &str) -> [u8; 16] {
        s.parse::<Ipv6Addr>().unwrap().octets()
    }

    #[test]
    fn named_options_encode() {
        assert_eq!(one("dns_servers: \"2001:db8::1\"", 23), a("2001:db8::1"));
        let two = one("sntp_servers: [\"2001:db8::1\", \"2001:db8::2\"]", 31);
        assert_eq!(two, [a("2001:db8::1"), a("2001:db8::2")].concat());
        assert_eq!(
            one("domain_search: [example.test]", 24),
            b"\x07example\x04test\x00"
        );
        assert_eq!(
            one("information_refresh_time: 86400", 32),
            86400u32.to_be_bytes()
        );
        assert_eq!(
            one("aftr_name: aftr.example", 64),
            b"\x04aftr\x07example\x00"
        );
        assert_eq!(
            one("bootfile_url: \"tftp://[2001:db8::1]/x\"", 59),
            b"tftp://[2001:db8::1]/x"
        );
    }

    /// RFC 5908 §4: each server is a sub-option (code, length, value).
    #[test]
    fn ntp_servers_use_suboptions() {
        let got = one(
            "ntp_servers: [\"2001:db8::123\", \"ff05::101\", ntp.example]",
            56,
        );
        let mut want = vec![0, 1, 0, 16];
        want.extend(a("2001:db8::123"));
        want.extend([0, 2, 0, 16]);
        want.extend(a("ff05::101"));
        want.extend([0, 3, 0, 13]);
        want.extend(b"\x03ntp\x07example\x00");
        assert_eq!(got, want);
        assert_eq!(
            decode_ntp(&got).unwrap(),
            ["2001:db8::123", "ff05::101", "ntp.example"]
        );
    }

    #[test]
    fn by_code_typed_values() {
        assert_eq!(
            one("\"65000\": { ip: \"2001:db8::5\" }", 65000),
            a("2001:db8::5")
        );
        assert_eq!(one("\"300\": { u16: [1, 2] }", 300), [0, 1, 0, 2]);
        assert_eq!(one("\"300\": { i32: -1 }", 300), [0xff; 4]);
        assert_eq!(one("\"300\": { hex: \"0x0102\" }", 300), [1, 2]);
        assert_eq!(one("\"300\": { string: x }", 300), b"x");
    }

    #[test]
    fn bad_values_name_the_key() {
        let cases = [
            (
                "dns_servers: [\"2001:db8::1\", nope]",
                "o.dns_servers[1]: \"nope\" is not an IPv6 address",
            ),
            (
                "dns_servers: [10.0.0.1]",
                "o.dns_servers[0]: \"10.0.0.1\" is not an IPv6 address",
            ),
            (
                "dns_servers: []",
                "o.dns_servers: expected at least one of IPv6 addresses",
            ),
            (
                "routers: [\"2001:db8::1\"]",
                "o.routers: unknown DHCPv6 option name `routers`",
            ),
            (
                "\"23\": [x]",
                "o.23: an option given by code needs a typed value",
            ),
            (
                "\"2\": { hex: \"01\" }",
                "o.2: option 2 (server identifier; set v6.server_duid) is managed",
            ),
            (
                "\"25\": { hex: \"01\" }",
                "o.25: option 25 (IA_PD) is managed",
            ),
            (
                "\"70000\": { u8: 1 }",
                "o.70000: option code 70000 is out of range 1..=65535",
            ),
            (
                "ntp_servers: [\"a..b\"]",
                "o.ntp_servers[0]: neither an IPv6 address nor a host name",
            ),
            (
                "information_refresh_time: 60",
                "o.information_refresh_time: information_refresh_time must be at least 600",
            ),
            (
                "dns_servers: \"2001:db8::1\"\n\"23\": { ip: \"2001:db8::2\" }",
                "o.23: option 23 is already set by `dns_servers`",
            ),
        ];
        for (yaml, want) in cases {
            let got = enc(yaml).unwrap_err();
            assert!(got.contains(want), "{yaml}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn render_parses_back_to_the_same_bytes() {
        let set = enc(
            "dns_servers: [\"2001:db8::1\"]\ndomain_search: [a.b, c.d]\n\
             ntp_servers: [\"2001:db8::123\", ntp.example]\ninformation_refresh_time: 3600\n\
             \"65000\": { u8: 7 }\n\"64\": { hex: \"01:02\" }",
        )
        .unwrap();
        let Value::Map(rendered) = render_options6(&set) else {
            panic!()
        };
        let keys: Vec<_> = rendered.iter().map(|(k, _)| k.as_str()).collect();
        // 64 with bytes that are no domain name cannot be written by name.
        assert_eq!(
            keys,
            [
                "dns_servers",
                "domain_search",
                "information_refresh_time",
                "ntp_servers",
                "64",
                "65000"
            ]
        );
        let again = parse_options6("o", Some(&Value::Map(rendered))).unwrap();
        assert_eq!(again, set);
    }
}
