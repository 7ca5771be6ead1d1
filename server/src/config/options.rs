//! The option scheme both DHCP versions share: value kinds, checking and encoding to wire bytes
//! at load time, and rendering back.
//!
//! An `options:` map takes known names (`routers: [10.0.0.1]`) or numeric codes with a typed
//! value (`"150": { ip: [10.0.0.5] }`). Either way the value is encoded here, once, into the
//! option's payload bytes; the packet path only copies them. Payloads longer than 255 bytes are
//! kept whole: splitting them into several instances of the option is the encoder's job
//! (RFC 3396). What differs between DHCPv4 and DHCPv6 (code width, catalogue, extra rules) is a
//! [`Scheme`]; `options4.rs` and `options6.rs` hold the two catalogues.

use super::hex::{format_hex, parse_hex};
use std::fmt;
use std::net::{Ipv4Addr, Ipv6Addr};

use ipnet::Ipv4Net;

use super::addr::{self, Addr};
use super::error::{ConfigError, invalid};
use super::path::{at, join};
use super::wire::Value;

/// Encoded options, sorted by code, at most one entry per code: [`OptionSet`](super::OptionSet)
/// for DHCPv4 (8-bit codes), [`OptionSet6`](super::OptionSet6) for DHCPv6 (16-bit codes).
///
/// Each entry is an option's payload (no code or length), ready to be copied into a reply.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EncodedOptions<C> {
    entries: Vec<(C, Box<[u8]>)>,
}

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

/// The config name of `code` in scheme `S`.
pub(super) fn name_of<S: Scheme>(code: S::Code) -> Option<&'static str> {
    S::NAMED.iter().find(|n| n.code == code).map(|n| n.name)
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

/// NTP sub-option codes (RFC 5908 §4).
const NTP_SRV_ADDR: u16 = 1;
const NTP_MC_ADDR: u16 = 2;
const NTP_SRV_FQDN: u16 = 3;

/// One RFC 5908 sub-option: a unicast address (1), a multicast address (2) or a name (3).
pub(super) fn encode_ntp(v: &Value, path: &str, out: &mut Vec<u8>) -> Result<(), ConfigError> {
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

pub(super) fn decode_ntp(mut b: &[u8]) -> Option<Vec<String>> {
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

/// The `options:` map that parses back to exactly `set` in scheme `S`: by name where the payload
/// decodes and re-encodes to the same bytes, otherwise by code as hex.
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

/// Test helpers shared by both families' catalogue tests, called as `V4::one(..)`.
#[cfg(test)]
pub(super) mod testing {
    use super::*;

    /// Encoding checks for any [`Scheme`].
    pub(in crate::config) trait Encode: Scheme + Sized
    where
        Self::Code: fmt::Debug,
    {
        /// The options map `yaml_value` encoded at path `o`, or the error's text.
        fn enc(yaml_value: &str) -> Result<EncodedOptions<Self::Code>, String> {
            let v: Value = serde_saphyr::from_str(yaml_value).map_err(|e| e.to_string())?;
            parse_map::<Self>("o", Some(&v), |_, _| Ok(())).map_err(|e| e.to_string())
        }

        /// The payload of `code`, which must be the only option `yaml_value` sets.
        fn one(yaml_value: &str, code: Self::Code) -> Vec<u8> {
            let set = Self::enc(yaml_value).unwrap();
            assert_eq!(set.len(), 1, "{set:?}");
            set.get(code).unwrap().to_vec()
        }

        /// Checks that `yaml_value` renders ([`render`]) to a map with `keys` in that order (the
        /// codes it cannot write by name as numbers), which encodes back to the same bytes.
        fn assert_renders_back(yaml_value: &str, keys: &[&str]) {
            let set = Self::enc(yaml_value).unwrap();
            let Value::Map(rendered) = render::<Self>(&set) else {
                panic!("not a map")
            };
            let got: Vec<_> = rendered.iter().map(|(k, _)| k.as_str()).collect();
            assert_eq!(got, keys);
            let again = parse_map::<Self>("o", Some(&Value::Map(rendered)), |_, _| Ok(()));
            assert_eq!(again.unwrap(), set);
        }

        /// Checks that each map is refused with a message containing its expected text.
        fn assert_refused(cases: &[(&str, &str)]) {
            for (yaml, want) in cases {
                let got = Self::enc(yaml).unwrap_err();
                assert!(got.contains(want), "{yaml}\n got: {got}\nwant: {want}");
            }
        }
    }

    impl<S: Scheme> Encode for S where S::Code: fmt::Debug {}
}
