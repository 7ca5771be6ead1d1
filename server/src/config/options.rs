//! DHCPv4 options (the name catalogue and its rules), and the scheme both DHCP versions share:
//! value kinds, checking and encoding to wire bytes at load time, and rendering back.
//!
//! An `options:` map takes known names (`routers: [10.0.0.1]`) or numeric codes with a typed
//! value (`"150": { ip: [10.0.0.5] }`). Either way the value is encoded here, once, into the
//! option's payload bytes; the packet path only copies them. Payloads longer than 255 bytes are
//! kept whole: splitting them into several instances of the option is the encoder's job
//! (RFC 3396). What differs between DHCPv4 and DHCPv6 (code width, catalogue, extra rules) is a
//! [`Scheme`]; `options6.rs` holds the DHCPv6 one.

use std::fmt::{self, Write as _};
use std::net::Ipv4Addr;

use ipnet::Ipv4Net;

use super::addr::{self, Addr};
use super::error::{ConfigError, invalid};
use super::options6::{decode_ntp, encode_ntp};
use super::path::{at, join};
use super::wire::Value;

/// Encoded options, sorted by code, at most one entry per code: [`OptionSet`] for DHCPv4 (8-bit
/// codes), [`OptionSet6`](super::OptionSet6) for DHCPv6 (16-bit codes).
///
/// Each entry is an option's payload (no code or length), ready to be copied into a reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedOptions<C> {
    entries: Vec<(C, Box<[u8]>)>,
}

/// Encoded DHCPv4 options, sorted by code, at most one entry per code.
pub type OptionSet = EncodedOptions<u8>;

impl<C: Copy + Ord> EncodedOptions<C> {
    /// An empty set.
    pub fn new() -> Self {
        Self {
            entries: Vec::new(),
        }
    }

    /// The payload of option `code`, if set.
    pub fn get(&self, code: C) -> Option<&[u8]> {
        self.entries
            .binary_search_by_key(&code, |(c, _)| *c)
            .ok()
            .map(|i| &*self.entries[i].1)
    }

    /// Whether option `code` is set.
    pub fn contains(&self, code: C) -> bool {
        self.get(code).is_some()
    }

    /// All options, by increasing code.
    pub fn iter(&self) -> impl Iterator<Item = (C, &[u8])> + '_ {
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
    pub fn insert(&mut self, code: C, payload: impl Into<Box<[u8]>>) -> Option<Box<[u8]>> {
        let payload = payload.into();
        match self.entries.binary_search_by_key(&code, |(c, _)| *c) {
            Ok(i) => Some(std::mem::replace(&mut self.entries[i].1, payload)),
            Err(i) => {
                self.entries.insert(i, (code, payload));
                None
            }
        }
    }

    /// Removes option `code`, returning its payload.
    pub fn remove(&mut self, code: C) -> Option<Box<[u8]>> {
        let i = self.entries.binary_search_by_key(&code, |(c, _)| *c).ok()?;
        Some(self.entries.remove(i).1)
    }

    /// This set with every option of `child` replacing or adding to it (the inheritance step:
    /// global, shared network, subnet, pool, reservation).
    pub fn merged(&self, child: &Self) -> Self {
        let mut out = self.clone();
        for (code, v) in child.iter() {
            out.insert(code, v);
        }
        out
    }

    /// The options of `self` that `base` lacks or has with another payload: what a child level
    /// must say so that `base.merged(&diff) == self`.
    pub(super) fn diff_from(&self, base: &Self) -> Self {
        let mut out = Self::new();
        for (code, v) in self.iter() {
            if base.get(code) != Some(v) {
                out.insert(code, v);
            }
        }
        out
    }
}

/// How a value is written in the config and encoded on the wire. A scheme's catalogue uses the
/// kinds that exist in its protocol; by-code values take the ones in [`TYPED`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Kind {
    /// One address of the scheme's family.
    Ip,
    /// One or more addresses of the scheme's family, concatenated.
    Ips,
    U8,
    U16,
    U32,
    I32,
    /// One byte, 0 or 1.
    Bool,
    /// Text, as its UTF-8 bytes, without a terminating NUL.
    Str,
    /// Raw bytes written as hex.
    Hex,
    /// Domain names in RFC 1035 label form, no compression (RFC 3397, RFC 8415 §10).
    Domains,
    /// Exactly one domain name (e.g. the DS-Lite AFTR name, RFC 6334).
    Domain,
    /// RFC 2132 §5.8 static routes: `DEST via ROUTER` pairs.
    Routes,
    /// RFC 3442 classless static routes: `DEST/LEN via ROUTER`.
    ClasslessRoutes,
    /// RFC 5908 NTP server sub-options: an address, a multicast address or a name each.
    Ntp,
}

/// An option known by name.
pub(super) struct Named<C> {
    name: &'static str,
    code: C,
    kind: Kind,
}

pub(super) const fn named<C>(name: &'static str, code: C, kind: Kind) -> Named<C> {
    Named { name, code, kind }
}

/// Type names accepted in a by-code value, `"150": { ip: [10.0.0.5] }`.
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

/// What one DHCP version's options look like; parsing, encoding and rendering are shared.
pub(super) trait Scheme {
    /// An option code.
    type Code: Copy + Ord + fmt::Display + TryFrom<u32> + 'static;
    /// The address family of `ip` values.
    type Addr: Addr;
    /// Options known by name. Any other code is reachable by number with a typed value.
    const NAMED: &'static [Named<Self::Code>];
    /// Codes the server writes itself (or that only clients and relays send); a config may not
    /// set them. With the reason, or the key to use instead.
    const SERVER_MANAGED: &'static [(Self::Code, &'static str)];
    /// The highest code a config may set, for the out-of-range message.
    const MAX_CODE: &'static str;
    /// What an unknown name is not, in messages: "option" or "DHCPv6 option".
    const OPTION: &'static str;
    /// A code for the by-code example in messages.
    const EXAMPLE_CODE: &'static str;
    /// An address for the typed-value example in messages.
    const EXAMPLE_IP: &'static str;

    /// The rules of named option `code` beyond its kind, on its encoded `bytes`.
    fn check_named(code: Self::Code, bytes: &[u8], path: &str) -> Result<(), ConfigError>;

    /// The limit on an encoded payload's length, if the protocol has one.
    fn check_len(_len: usize, _path: &str) -> Result<(), ConfigError> {
        Ok(())
    }
}

/// DHCPv4 (RFC 2132).
pub(super) struct V4;

impl Scheme for V4 {
    type Code = u8;
    type Addr = Ipv4Addr;
    const NAMED: &'static [Named<u8>] = NAMED;
    const SERVER_MANAGED: &'static [(u8, &'static str)] = SERVER_MANAGED;
    const MAX_CODE: &'static str = "254";
    const OPTION: &'static str = "option";
    const EXAMPLE_CODE: &'static str = "150";
    const EXAMPLE_IP: &'static str = "10.0.0.5";

    fn check_named(code: u8, bytes: &[u8], path: &str) -> Result<(), ConfigError> {
        match code {
            // RFC 1191 / RFC 2132 §5.1: the minimum legal MTU is 68.
            26 if u16::from_be_bytes([bytes[0], bytes[1]]) < 68 => {
                Err(invalid(path, "interface_mtu must be at least 68"))
            }
            // RFC 2132 §8.7: B-node, P-node, M-node, H-node.
            46 if ![1, 2, 4, 8].contains(&bytes[0]) => Err(invalid(
                path,
                "netbios_node_type must be 1 (B), 2 (P), 4 (M) or 8 (H)",
            )),
            _ => Ok(()),
        }
    }
}

/// Options known by name. Any other code is reachable by number with a typed value.
const NAMED: &[Named<u8>] = &[
    named("subnet_mask", 1, Kind::Ip),
    named("time_offset", 2, Kind::I32),
    named("routers", 3, Kind::Ips),
    named("time_servers", 4, Kind::Ips),
    named("name_servers", 5, Kind::Ips),
    named("domain_name_servers", 6, Kind::Ips),
    named("log_servers", 7, Kind::Ips),
    named("lpr_servers", 9, Kind::Ips),
    named("host_name", 12, Kind::Str),
    named("domain_name", 15, Kind::Str),
    named("root_path", 17, Kind::Str),
    named("ip_forwarding", 19, Kind::Bool),
    named("default_ip_ttl", 23, Kind::U8),
    named("interface_mtu", 26, Kind::U16),
    named("broadcast_address", 28, Kind::Ip),
    named("static_routes", 33, Kind::Routes),
    named("arp_cache_timeout", 35, Kind::U32),
    named("nis_domain", 40, Kind::Str),
    named("nis_servers", 41, Kind::Ips),
    named("ntp_servers", 42, Kind::Ips),
    named("vendor_encapsulated_options", 43, Kind::Hex),
    named("netbios_name_servers", 44, Kind::Ips),
    named("netbios_dd_servers", 45, Kind::Ips),
    named("netbios_node_type", 46, Kind::U8),
    named("netbios_scope", 47, Kind::Str),
    named("tftp_server_name", 66, Kind::Str),
    named("bootfile_name", 67, Kind::Str),
    named("smtp_servers", 69, Kind::Ips),
    named("tz_posix", 100, Kind::Str),
    named("tz_database", 101, Kind::Str),
    named("captive_portal", 114, Kind::Str),
    named("domain_search", 119, Kind::Domains),
    named("classless_static_routes", 121, Kind::ClasslessRoutes),
];

/// Codes the server writes itself (or that only clients and relays send); a config may not set
/// them. With the reason, or the key to use instead.
const SERVER_MANAGED: &[(u8, &str)] = &[
    (0, "pad"),
    (50, "requested address"),
    (51, "lease time; set lease_time"),
    (52, "option overload"),
    (53, "message type"),
    (54, "server identifier; set v4.server_id"),
    (55, "parameter request list"),
    (57, "maximum message size"),
    (58, "renewal time; set v4.renew_time"),
    (59, "rebinding time; set v4.rebind_time"),
    (61, "client identifier"),
    (82, "relay agent information"),
    (118, "subnet selection; echoed from the client, RFC 3011"),
    (255, "end"),
];

/// The config name of option `code`, if it has one (for logs and messages).
pub fn option_name(code: u8) -> Option<&'static str> {
    name_of::<V4>(code)
}

/// The config name of `code` in scheme `S`.
pub(super) fn name_of<S: Scheme>(code: S::Code) -> Option<&'static str> {
    S::NAMED.iter().find(|n| n.code == code).map(|n| n.name)
}

/// Where an `options:` map sits; decides which codes it may set.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Level {
    /// `v4.options` or a shared network's: shared by subnets of different sizes.
    Wide,
    /// A subnet, pool or reservation.
    Narrow,
}

/// Parses and encodes the `options:` map at `path` (absent or null: no options).
pub(super) fn parse_options(
    path: &str,
    value: Option<&Value>,
    level: Level,
) -> Result<OptionSet, ConfigError> {
    parse_map::<V4>(path, value, |kpath, code| {
        if level == Level::Wide && (code == 1 || code == 28) {
            return Err(invalid(
                kpath,
                format!(
                    "option {code} ({}) is derived from each subnet; set it in a subnet's options \
                     if the derived value is wrong",
                    option_name(code).unwrap_or_default()
                ),
            ));
        }
        Ok(())
    })
}

/// Parses and encodes the `options:` map at `path` in scheme `S` (absent or null: no options).
/// `allowed` refuses codes the map's level may not set; it sees each entry in turn, so the first
/// bad entry is the one reported.
pub(super) fn parse_map<S: Scheme>(
    path: &str,
    value: Option<&Value>,
    allowed: impl Fn(&str, S::Code) -> Result<(), ConfigError>,
) -> Result<EncodedOptions<S::Code>, ConfigError> {
    let entries = match value {
        None | Some(Value::Null) => return Ok(EncodedOptions::new()),
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
    let mut set = EncodedOptions::new();
    let mut keys: Vec<(S::Code, &str)> = Vec::new();
    for (key, v) in entries {
        let kpath = join(path, key);
        let (code, payload) = if !key.is_empty() && key.bytes().all(|b| b.is_ascii_digit()) {
            let code = check_code::<S>(&kpath, key)?;
            (code, encode_typed::<S>(&kpath, v)?)
        } else {
            let Some(n) = S::NAMED.iter().find(|n| n.name == key) else {
                return Err(invalid(
                    kpath,
                    format!(
                        "unknown {} name `{key}` (known names are listed in the config docs; any \
                         other option can be given by code with a typed value, e.g. \"{}\": {{ \
                         ip: [{}] }})",
                        S::OPTION,
                        S::EXAMPLE_CODE,
                        S::EXAMPLE_IP
                    ),
                ));
            };
            (n.code, encode_named::<S>(n, v, &kpath)?)
        };
        allowed(&kpath, code)?;
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

fn check_code<S: Scheme>(path: &str, key: &str) -> Result<S::Code, ConfigError> {
    let code = key.parse::<u32>().unwrap_or(u32::MAX);
    if let Ok(c) = S::Code::try_from(code)
        && let Some((_, why)) = S::SERVER_MANAGED.iter().find(|(m, _)| *m == c)
    {
        return Err(invalid(
            path,
            format!("option {c} ({why}) is managed by the server and cannot be configured"),
        ));
    }
    S::Code::try_from(code).map_err(|_| {
        invalid(
            path,
            format!("option code {key} is out of range 1..={}", S::MAX_CODE),
        )
    })
}

fn encode_named<S: Scheme>(
    n: &Named<S::Code>,
    v: &Value,
    path: &str,
) -> Result<Vec<u8>, ConfigError> {
    let bytes = encode::<S>(n.kind, v, path, false)?;
    S::check_named(n.code, &bytes, path)?;
    Ok(bytes)
}

fn encode_typed<S: Scheme>(path: &str, v: &Value) -> Result<Vec<u8>, ConfigError> {
    let types = || TYPED.iter().map(|(t, _)| *t).collect::<Vec<_>>().join(", ");
    let Value::Map(entries) = v else {
        return Err(invalid(
            path,
            format!(
                "an option given by code needs a typed value such as {{ ip: [{}] }}, got {}; \
                 types: {}",
                S::EXAMPLE_IP,
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
    encode::<S>(*kind, inner, &tpath, true)
}

/// Encodes `v` as `kind`. `many` lets integer and boolean kinds take a list too.
fn encode<S: Scheme>(
    kind: Kind,
    v: &Value,
    path: &str,
    many: bool,
) -> Result<Vec<u8>, ConfigError> {
    let mut out = Vec::new();
    match kind {
        Kind::Ip => address::<S::Addr>(v, path)?.put(&mut out),
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
        Kind::Ips | Kind::Domains | Kind::Routes | Kind::ClasslessRoutes | Kind::Ntp => {
            for (p, item) in one_or_many(v, path, &what::<S>(kind))? {
                match kind {
                    Kind::Ips => address::<S::Addr>(item, &p)?.put(&mut out),
                    Kind::Domains => {
                        let s = string(item, &p, "a domain name")?;
                        encode_domain(s, &mut out).map_err(|e| invalid(&p, e))?;
                    }
                    Kind::Routes => {
                        let s = string(item, &p, "a route \"DEST via ROUTER\"")?;
                        let (dest, router) = static_route(s).map_err(|e| invalid(&p, e))?;
                        out.extend(dest.octets());
                        out.extend(router.octets());
                    }
                    Kind::ClasslessRoutes => {
                        let s = string(item, &p, "a route \"DEST/LEN via ROUTER\"")?;
                        let (dest, router) = classless_route(s).map_err(|e| invalid(&p, e))?;
                        encode_classless(dest, router, &mut out);
                    }
                    _ => encode_ntp(item, &p, &mut out)?,
                }
            }
        }
        Kind::U8 | Kind::U16 | Kind::U32 | Kind::I32 | Kind::Bool => {
            let items = if many {
                one_or_many(v, path, &what::<S>(kind))?
            } else {
                vec![(path.to_owned(), v)]
            };
            for (p, item) in items {
                encode_number(kind, item, &p, &mut out)?;
            }
        }
    }
    S::check_len(out.len(), path)?;
    Ok(out)
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
    // In range, so the casts below are exact; DHCP is big-endian (network order).
    match kind {
        Kind::U8 => out.push(*i as u8),
        Kind::U16 => out.extend((*i as u16).to_be_bytes()),
        Kind::U32 => out.extend((*i as u32).to_be_bytes()),
        _ => out.extend((*i as i32).to_be_bytes()),
    }
    Ok(())
}

/// What a list of `kind` holds, for messages.
fn what<S: Scheme>(kind: Kind) -> String {
    match kind {
        Kind::Ips => format!("{} addresses", S::Addr::NAME),
        Kind::Domains => "domain names".to_owned(),
        Kind::Routes => "routes \"DEST via ROUTER\"".to_owned(),
        Kind::ClasslessRoutes => "routes \"DEST/LEN via ROUTER\"".to_owned(),
        Kind::Ntp => "NTP servers (addresses or host names)".to_owned(),
        Kind::Bool => "booleans".to_owned(),
        _ => "integers".to_owned(),
    }
}

/// A scalar as a one-element list, or the items of a non-empty list, each with its path.
pub(super) fn one_or_many<'v>(
    v: &'v Value,
    path: &str,
    what: &str,
) -> Result<Vec<(String, &'v Value)>, ConfigError> {
    match v {
        Value::Seq(items) if items.is_empty() => {
            Err(invalid(path, format!("expected at least one of {what}")))
        }
        Value::Seq(items) => Ok(items
            .iter()
            .enumerate()
            .map(|(i, x)| (at(path, i), x))
            .collect()),
        Value::Map(_) | Value::Null => Err(expected(path, &format!("a list of {what}"), v)),
        scalar => Ok(vec![(path.to_owned(), scalar)]),
    }
}

pub(super) fn expected(path: &str, what: &str, got: &Value) -> ConfigError {
    invalid(path, format!("expected {what}, got {}", got.describe()))
}

pub(super) fn string<'v>(v: &'v Value, path: &str, what: &str) -> Result<&'v str, ConfigError> {
    match v {
        Value::Str(s) => Ok(s),
        other => Err(expected(path, what, other)),
    }
}

/// One address of family `A`.
fn address<A: Addr>(v: &Value, path: &str) -> Result<A, ConfigError> {
    let Value::Str(s) = v else {
        return Err(expected(path, &format!("an {} address", A::NAME), v));
    };
    addr::parse(path, s)
}

/// Hex bytes: `01:02:0a`, `01-02-0a`, `0x01020a` or `01020a`. None if malformed or empty.
pub(super) fn parse_hex(s: &str) -> Option<Vec<u8>> {
    let s = s.trim();
    let sep = if s.contains(':') {
        Some(':')
    } else if s.contains('-') {
        Some('-')
    } else {
        None
    };
    let out: Option<Vec<u8>> = match sep {
        Some(sep) => s
            .split(sep)
            .map(|g| {
                let ok = (1..=2).contains(&g.len()) && g.bytes().all(|b| b.is_ascii_hexdigit());
                ok.then(|| u8::from_str_radix(g, 16).ok()).flatten()
            })
            .collect(),
        None => {
            let digits = s
                .strip_prefix("0x")
                .or_else(|| s.strip_prefix("0X"))
                .unwrap_or(s);
            if !digits.len().is_multiple_of(2) || !digits.bytes().all(|b| b.is_ascii_hexdigit()) {
                return None;
            }
            (0..digits.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&digits[i..i + 2], 16).ok())
                .collect()
        }
    };
    out.filter(|b| !b.is_empty())
}

/// `01:02:0a`.
pub(super) fn format_hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 3);
    for (i, b) in bytes.iter().enumerate() {
        if i > 0 {
            s.push(':');
        }
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Appends `name` in RFC 1035 §3.1 label form (length-prefixed labels, a zero byte at the end),
/// without compression; RFC 3397 allows but does not require it.
pub(super) fn encode_domain(name: &str, out: &mut Vec<u8>) -> Result<(), String> {
    let trimmed = name.strip_suffix('.').unwrap_or(name);
    if trimmed.is_empty() {
        return Err(format!("{name:?} is not a domain name"));
    }
    let start = out.len();
    for label in trimmed.split('.') {
        let ok_chars = label
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
        if label.is_empty() || label.len() > 63 || !ok_chars {
            return Err(format!(
                "{name:?} is not a domain name (labels are 1 to 63 letters, digits, '-' or '_')"
            ));
        }
        out.push(label.len() as u8);
        out.extend(label.as_bytes());
    }
    out.push(0);
    if out.len() - start > 255 {
        return Err(format!("{name:?} is longer than 255 bytes in wire form"));
    }
    Ok(())
}

pub(super) fn decode_domains(mut b: &[u8]) -> Option<Vec<String>> {
    let mut names = Vec::new();
    while !b.is_empty() {
        let mut labels = Vec::new();
        loop {
            let (&len, rest) = b.split_first()?;
            if len == 0 {
                b = rest;
                break;
            }
            let label = rest.get(..usize::from(len))?;
            labels.push(std::str::from_utf8(label).ok()?.to_owned());
            b = &rest[usize::from(len)..];
        }
        names.push(labels.join("."));
    }
    Some(names)
}

/// `DEST via ROUTER` (RFC 2132 §5.8: a host or classful network, never 0.0.0.0).
fn static_route(s: &str) -> Result<(Ipv4Addr, Ipv4Addr), String> {
    let bad = || format!("expected \"DEST via ROUTER\", got {s:?}");
    let [dest, "via", router] = s.split_whitespace().collect::<Vec<_>>()[..] else {
        return Err(bad());
    };
    let dest: Ipv4Addr = dest.parse().map_err(|_| bad())?;
    let router: Ipv4Addr = router.parse().map_err(|_| bad())?;
    if dest.is_unspecified() {
        return Err(
            "0.0.0.0 is not a valid static_routes destination (RFC 2132 §5.8); \
                    use routers for the default route"
                .to_owned(),
        );
    }
    Ok((dest, router))
}

/// `DEST/LEN via ROUTER`, or `default via ROUTER` for 0.0.0.0/0.
fn classless_route(s: &str) -> Result<(Ipv4Net, Ipv4Addr), String> {
    let bad = || format!("expected \"DEST/LEN via ROUTER\" or \"default via ROUTER\", got {s:?}");
    let [dest, "via", router] = s.split_whitespace().collect::<Vec<_>>()[..] else {
        return Err(bad());
    };
    let dest: Ipv4Net = if dest == "default" {
        Ipv4Net::default()
    } else {
        dest.parse().map_err(|_| bad())?
    };
    if dest.trunc() != dest {
        return Err(format!(
            "destination {dest} has host bits set (did you mean {}?)",
            dest.trunc()
        ));
    }
    let router: Ipv4Addr = router.parse().map_err(|_| bad())?;
    Ok((dest, router))
}

/// RFC 3442 §3: width, the significant octets of the destination, then the router.
fn encode_classless(dest: Ipv4Net, router: Ipv4Addr, out: &mut Vec<u8>) {
    let width = dest.prefix_len();
    out.push(width);
    out.extend(&dest.network().octets()[..usize::from(width).div_ceil(8)]);
    out.extend(router.octets());
}

fn decode_classless(mut b: &[u8]) -> Option<Vec<String>> {
    let mut routes = Vec::new();
    while let Some((&width, rest)) = b.split_first() {
        let n = usize::from(width).div_ceil(8);
        if width > 32 || rest.len() < n + 4 {
            return None;
        }
        let mut dest = [0u8; 4];
        dest[..n].copy_from_slice(&rest[..n]);
        let router = Ipv4Addr::new(rest[n], rest[n + 1], rest[n + 2], rest[n + 3]);
        let dest = Ipv4Net::new(Ipv4Addr::from(dest), width).ok()?;
        routes.push(if width == 0 {
            format!("default via {router}")
        } else {
            format!("{dest} via {router}")
        });
        b = &rest[n + 4..];
    }
    Some(routes)
}

/// Concatenated addresses of family `A`: at least one, none cut short.
fn addresses<A: Addr>(b: &[u8]) -> Option<Vec<A>> {
    (!b.is_empty() && b.len().is_multiple_of(A::LEN))
        .then(|| b.chunks_exact(A::LEN).map(A::from_slice).collect())
        .flatten()
}

fn strs(items: Vec<String>) -> Value {
    Value::Seq(items.into_iter().map(Value::Str).collect())
}

/// The config value that encodes to `b` as `kind` in scheme `S`, if there is one.
fn decode<S: Scheme>(kind: Kind, b: &[u8]) -> Option<Value> {
    Some(match kind {
        Kind::Ip => Value::str(S::Addr::from_slice(b)?.to_string()),
        Kind::Ips => strs(
            addresses::<S::Addr>(b)?
                .iter()
                .map(ToString::to_string)
                .collect(),
        ),
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
        Kind::Routes => strs(
            addresses::<Ipv4Addr>(b)?
                .chunks(2)
                .map(|p| match p {
                    [d, r] => Some(format!("{d} via {r}")),
                    _ => None,
                })
                .collect::<Option<_>>()?,
        ),
        Kind::ClasslessRoutes => strs(decode_classless(b)?),
        Kind::Ntp => strs(decode_ntp(b)?),
    })
}

/// The `options:` map that parses back to exactly `set`: by name where the payload decodes and
/// re-encodes to the same bytes, otherwise by code as hex.
pub(super) fn render_options(set: &OptionSet) -> Value {
    render::<V4>(set)
}

/// [`render_options`] for scheme `S`.
pub(super) fn render<S: Scheme>(set: &EncodedOptions<S::Code>) -> Value {
    let entries = set
        .iter()
        .map(|(code, bytes)| {
            let by_name = S::NAMED.iter().find(|n| n.code == code).and_then(|n| {
                let v = decode::<S>(n.kind, bytes)?;
                let same = encode_named::<S>(n, &v, "").ok()? == bytes;
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

    fn enc(yaml_value: &str) -> Result<OptionSet, String> {
        let v: Value = serde_saphyr::from_str(yaml_value).map_err(|e| e.to_string())?;
        parse_options("o", Some(&v), Level::Narrow).map_err(|e| e.to_string())
    }

    fn one(yaml_value: &str, code: u8) -> Vec<u8> {
        let set = enc(yaml_value).unwrap();
        assert_eq!(set.len(), 1, "{set:?}");
        set.get(code).unwrap().to_vec()
    }

    #[test]
    fn named_scalars_encode_big_endian() {
        assert_eq!(one("time_offset: -3600", 2), (-3600i32).to_be_bytes());
        assert_eq!(one("interface_mtu: 1500", 26), [0x05, 0xdc]);
        assert_eq!(one("arp_cache_timeout: 70000", 35), [0, 1, 0x11, 0x70]);
        assert_eq!(one("netbios_node_type: 8", 46), [8]);
        assert_eq!(one("ip_forwarding: false", 19), [0]);
        assert_eq!(one("domain_name: example.test", 15), b"example.test");
        assert_eq!(one("subnet_mask: 255.255.255.0", 1), [255, 255, 255, 0]);
        assert_eq!(
            one("routers: [10.0.0.1, 10.0.0.2]", 3),
            [10, 0, 0, 1, 10, 0, 0, 2]
        );
        // A single address is a list of one.
        assert_eq!(one("ntp_servers: 10.0.0.9", 42), [10, 0, 0, 9]);
        assert_eq!(
            one("vendor_encapsulated_options: \"01:04:c0:a8:00:01\"", 43),
            [1, 4, 0xc0, 0xa8, 0, 1]
        );
        assert_eq!(
            one("static_routes: [\"192.168.5.0 via 10.0.0.1\"]", 33),
            [192, 168, 5, 0, 10, 0, 0, 1]
        );
    }

    #[test]
    fn by_code_typed_values() {
        assert_eq!(one("\"150\": { ip: [10.0.0.5] }", 150), [10, 0, 0, 5]);
        assert_eq!(
            one("150: { ips: [1.2.3.4, 5.6.7.8] }", 150),
            [1, 2, 3, 4, 5, 6, 7, 8]
        );
        assert_eq!(one("\"200\": { u8: 1 }", 200), [1]);
        assert_eq!(one("\"200\": { u16: [1, 2] }", 200), [0, 1, 0, 2]);
        assert_eq!(one("\"200\": { u32: 1 }", 200), [0, 0, 0, 1]);
        assert_eq!(one("\"200\": { i32: -1 }", 200), [0xff; 4]);
        assert_eq!(one("\"200\": { bool: true }", 200), [1]);
        assert_eq!(one("\"200\": { string: \"x y\" }", 200), b"x y");
        assert_eq!(one("\"200\": { hex: \"0x01020a\" }", 200), [1, 2, 10]);
        assert_eq!(one("\"200\": { hex: \"01-02-0a\" }", 200), [1, 2, 10]);
        // A known code by number is fine too.
        assert_eq!(one("\"3\": { ip: 10.0.0.1 }", 3), [10, 0, 0, 1]);
    }

    /// RFC 3397 §2's example names, without the compression pointer that example uses.
    #[test]
    fn domain_search_rfc3397() {
        let got = one("domain_search: [eng.apple.com., marketing.apple.com]", 119);
        let mut want = vec![3];
        want.extend(b"eng");
        want.push(5);
        want.extend(b"apple");
        want.push(3);
        want.extend(b"com");
        want.push(0);
        want.push(9);
        want.extend(b"marketing");
        want.push(5);
        want.extend(b"apple");
        want.push(3);
        want.extend(b"com");
        want.push(0);
        assert_eq!(got, want);
        // The first name is byte for byte the RFC's.
        assert_eq!(
            &got[..15],
            [
                0x03, b'e', b'n', b'g', 0x05, b'a', b'p', b'p', b'l', b'e', 0x03, b'c', b'o', b'm',
                0
            ]
        );
    }

    /// RFC 3442 §3's destination descriptor table, each with router 10.0.0.1.
    #[test]
    fn classless_routes_rfc3442() {
        let cases: &[(&str, &[u8])] = &[
            ("default", &[0]),
            ("0.0.0.0/0", &[0]),
            ("10.0.0.0/8", &[8, 10]),
            ("10.0.0.0/24", &[24, 10, 0, 0]),
            ("10.17.0.0/16", &[16, 10, 17]),
            ("10.27.129.0/24", &[24, 10, 27, 129]),
            ("10.229.0.128/25", &[25, 10, 229, 0, 128]),
            ("10.198.122.47/32", &[32, 10, 198, 122, 47]),
        ];
        for (dest, descriptor) in cases {
            let got = one(
                &format!("classless_static_routes: [\"{dest} via 10.0.0.1\"]"),
                121,
            );
            let mut want = descriptor.to_vec();
            want.extend([10, 0, 0, 1]);
            assert_eq!(got, want, "{dest}");
        }
        let two = one(
            "classless_static_routes: [\"10.17.0.0/16 via 10.0.0.1\", \"default via 10.0.0.2\"]",
            121,
        );
        assert_eq!(two, [16, 10, 17, 10, 0, 0, 1, 0, 10, 0, 0, 2]);
    }

    #[test]
    fn bad_values_name_the_key_and_the_expectation() {
        let cases = [
            (
                "routers: [10.0.0.1, nope]",
                "o.routers[1]: \"nope\" is not an IPv4 address",
            ),
            (
                "routers: []",
                "o.routers: expected at least one of IPv4 addresses",
            ),
            (
                "routers: {a: 1}",
                "o.routers: expected a list of IPv4 addresses, got a map",
            ),
            (
                "interface_mtu: 70000",
                "o.interface_mtu: expected an integer in 0..=65535, got 70000",
            ),
            (
                "interface_mtu: 60",
                "o.interface_mtu: interface_mtu must be at least 68",
            ),
            (
                "interface_mtu: \"1500\"",
                "expected an integer in 0..=65535, got the string \"1500\"",
            ),
            (
                "domain_name: 5",
                "o.domain_name: expected a string (quote it), got the number 5",
            ),
            (
                "netbios_node_type: 3",
                "o.netbios_node_type: netbios_node_type must be 1",
            ),
            ("bogus: 1", "o.bogus: unknown option name `bogus`"),
            (
                "\"0\": { u8: 1 }",
                "o.0: option 0 (pad) is managed by the server",
            ),
            (
                "\"53\": { u8: 1 }",
                "o.53: option 53 (message type) is managed by the server",
            ),
            ("\"255\": { u8: 1 }", "o.255: option 255 (end) is managed"),
            (
                "\"256\": { u8: 1 }",
                "o.256: option code 256 is out of range 1..=254",
            ),
            (
                "\"150\": [10.0.0.1]",
                "o.150: an option given by code needs a typed value",
            ),
            (
                "\"150\": { ipv4: 1 }",
                "o.150.ipv4: unknown value type `ipv4`",
            ),
            (
                "\"150\": { ip: 1, u8: 2 }",
                "o.150: expected exactly one type key",
            ),
            (
                "\"150\": { u8: 256 }",
                "o.150.u8: expected an integer in 0..=255, got 256",
            ),
            (
                "\"150\": { hex: \"0x123\" }",
                "o.150.hex: \"0x123\" is not hex bytes",
            ),
            (
                "routers: 10.0.0.1\n\"3\": { ip: 10.0.0.2 }",
                "o.3: option 3 is already set by `routers`",
            ),
            (
                "domain_search: [\"a..b\"]",
                "o.domain_search[0]: \"a..b\" is not a domain name",
            ),
            (
                "classless_static_routes: [\"10.0.0.1/8 via 10.0.0.1\"]",
                "has host bits set",
            ),
            (
                "classless_static_routes: [\"10.0.0.0/8 10.0.0.1\"]",
                "expected \"DEST/LEN via ROUTER\"",
            ),
            (
                "static_routes: [\"0.0.0.0 via 10.0.0.1\"]",
                "not a valid static_routes destination",
            ),
            ("host_name: \"\"", "o.host_name: must not be empty"),
        ];
        for (yaml, want) in cases {
            let got = enc(yaml).unwrap_err();
            assert!(got.contains(want), "{yaml}\n got: {got}\nwant: {want}");
        }
    }

    #[test]
    fn wide_level_rejects_derived_codes() {
        let v: Value = serde_saphyr::from_str("subnet_mask: 255.0.0.0").unwrap();
        let e = parse_options("v4.options", Some(&v), Level::Wide).unwrap_err();
        assert!(
            e.to_string().contains("v4.options.subnet_mask: option 1"),
            "{e}"
        );
    }

    #[test]
    fn merge_child_wins_per_code() {
        let parent = enc("routers: 10.0.0.1\ndomain_name: a").unwrap();
        let child = enc("domain_name: b\nntp_servers: 10.0.0.2").unwrap();
        let m = parent.merged(&child);
        assert_eq!(m.get(3), Some(&[10, 0, 0, 1][..]));
        assert_eq!(m.get(15), Some(&b"b"[..]));
        assert_eq!(m.get(42), Some(&[10, 0, 0, 2][..]));
        assert_eq!(m.iter().map(|(c, _)| c).collect::<Vec<_>>(), [3, 15, 42]);
        assert_eq!(parent.merged(&m.diff_from(&parent)), m);
    }

    #[test]
    fn render_parses_back_to_the_same_bytes() {
        let set = enc(
            "routers: [10.0.0.1]\ntime_offset: -5\ndomain_search: [a.b, c.d]\n\
             classless_static_routes: [\"default via 10.0.0.1\", \"10.1.0.0/16 via 10.0.0.2\"]\n\
             static_routes: [\"10.9.0.0 via 10.0.0.1\"]\nip_forwarding: true\n\
             \"150\": { ip: 10.0.0.5 }\n\"26\": { hex: \"00:10\" }\n\"12\": { hex: \"ff\" }",
        )
        .unwrap();
        let Value::Map(rendered) = render_options(&set) else {
            panic!()
        };
        let keys: Vec<_> = rendered.iter().map(|(k, _)| k.as_str()).collect();
        // 26 with MTU 16 and 12 with invalid UTF-8 cannot be written by name.
        assert_eq!(
            keys,
            [
                "time_offset",
                "routers",
                "12",
                "ip_forwarding",
                "26",
                "static_routes",
                "domain_search",
                "classless_static_routes",
                "150"
            ]
        );
        let again = parse_options("o", Some(&Value::Map(rendered)), Level::Narrow).unwrap();
        assert_eq!(again, set);
    }

    #[test]
    fn hex_forms() {
        assert_eq!(parse_hex("aa:BB:0c"), Some(vec![0xaa, 0xbb, 0x0c]));
        assert_eq!(parse_hex("aa-bb-c"), Some(vec![0xaa, 0xbb, 0x0c]));
        assert_eq!(parse_hex("0xaabb"), Some(vec![0xaa, 0xbb]));
        assert_eq!(parse_hex("aabb"), Some(vec![0xaa, 0xbb]));
        assert_eq!(parse_hex("aab"), None);
        assert_eq!(parse_hex(""), None);
        assert_eq!(parse_hex("aa::bb"), None);
        assert_eq!(parse_hex("aa:bbb"), None);
        assert_eq!(format_hex(&[1, 0xab]), "01:ab");
    }
}
