//! The little the config layer needs to know about an address family, so that parsing addresses,
//! encoding them into options and walking address ranges is written once for IPv4 and IPv6; and
//! the address, range and prefix texts the config accepts.

use std::fmt::Display;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use ipnet::{Ipv4Net, Ipv6Net};

use super::error::{ConfigError, invalid};

type Result<T, E = ConfigError> = std::result::Result<T, E>;

/// An IPv4 or IPv6 address.
pub(super) trait Addr: Copy + Ord + Display + FromStr {
    /// `"IPv4"` or `"IPv6"`, for messages.
    const NAME: &'static str;
    /// Bytes on the wire.
    const LEN: usize;

    /// The address as a number (an IPv4 address in the low 32 bits), for range arithmetic.
    fn to_u128(self) -> u128;

    /// The address whose number is `n`; `n` comes from [`Addr::to_u128`] of the same family.
    fn from_u128(n: u128) -> Self;

    /// Appends the address in network order.
    fn put(self, out: &mut Vec<u8>);

    /// The address held in exactly `b`.
    fn from_slice(b: &[u8]) -> Option<Self>;
}

impl Addr for Ipv4Addr {
    const NAME: &'static str = "IPv4";
    const LEN: usize = 4;

    fn to_u128(self) -> u128 {
        u32::from(self).into()
    }

    fn from_u128(n: u128) -> Self {
        // Only numbers made by `to_u128` come here, so they fit.
        Ipv4Addr::from(n as u32)
    }

    fn put(self, out: &mut Vec<u8>) {
        out.extend(self.octets());
    }

    fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 4]>::try_from(b).ok().map(Ipv4Addr::from)
    }
}

impl Addr for Ipv6Addr {
    const NAME: &'static str = "IPv6";
    const LEN: usize = 16;

    fn to_u128(self) -> u128 {
        u128::from(self)
    }

    fn from_u128(n: u128) -> Self {
        Ipv6Addr::from(n)
    }

    fn put(self, out: &mut Vec<u8>) {
        out.extend(self.octets());
    }

    fn from_slice(b: &[u8]) -> Option<Self> {
        <[u8; 16]>::try_from(b).ok().map(Ipv6Addr::from)
    }
}

/// The address written in `s` (surrounding blanks allowed).
pub(super) fn parse<A: Addr>(path: &str, s: &str) -> Result<A, ConfigError> {
    s.trim()
        .parse()
        .map_err(|_| invalid(path, format!("{s:?} is not an {} address", A::NAME)))
}

/// Sorted single addresses folded into `"A"` / `"A-B"` runs.
pub(super) fn fold_ranges<A: Addr>(addrs: &[A]) -> Vec<String> {
    let mut out = Vec::new();
    let mut iter = addrs.iter().map(|a| a.to_u128()).peekable();
    while let Some(first) = iter.next() {
        let mut last = first;
        while let Some(next) = last.checked_add(1)
            && iter.peek() == Some(&next)
        {
            last = iter.next().unwrap_or(last);
        }
        out.push(if first == last {
            A::from_u128(first).to_string()
        } else {
            format!("{}-{}", A::from_u128(first), A::from_u128(last))
        });
    }
    out
}

/// `"A-B"`, a prefix (`cidr` turns its trimmed text into the first and last address), or one
/// address; `forms` names the three in the message for text that is none of them.
pub(super) fn address_range<A: Addr>(
    path: &str,
    s: &str,
    cidr: impl FnOnce(&str) -> Result<(A, A)>,
    forms: &str,
) -> Result<(A, A)> {
    let t = s.trim();
    let parse = |a: &str| a.trim().parse::<A>().ok();
    let (first, last) = if let Some((a, b)) = t.split_once('-') {
        parse(a).zip(parse(b)).ok_or_else(|| {
            invalid(
                path,
                format!(
                    "{s:?} is not a range \"FIRST-LAST\" of {} addresses",
                    A::NAME
                ),
            )
        })?
    } else if t.contains('/') {
        cidr(t)?
    } else {
        let a = parse(t).ok_or_else(|| invalid(path, format!("{s:?} is not {forms}")))?;
        (a, a)
    };
    if first > last {
        return Err(invalid(path, format!("start {first} is after end {last}")));
    }
    Ok((first, last))
}

/// `net`, refused when it has host bits set (`trunc` is `net` without them).
pub(super) fn no_host_bits<N: PartialEq + Display>(path: &str, net: N, trunc: N) -> Result<N> {
    if trunc != net {
        return Err(invalid(
            path,
            format!("{net} has host bits set (did you mean {trunc}?)"),
        ));
    }
    Ok(net)
}

/// `"A-B"`, a CIDR (all of its addresses), or one address.
pub(super) fn range(path: &str, s: &str) -> Result<(Ipv4Addr, Ipv4Addr)> {
    let cidr = |t: &str| {
        let net: Ipv4Net = t
            .parse()
            .map_err(|_| invalid(path, format!("{s:?} is not a CIDR like 10.0.0.0/25")))?;
        let net = no_host_bits(path, net, net.trunc())?;
        Ok((net.network(), net.broadcast()))
    };
    address_range(
        path,
        s,
        cidr,
        "an address, a range \"FIRST-LAST\" or a CIDR",
    )
}

pub(super) fn unicast(path: &str, s: &str) -> Result<Ipv4Addr> {
    let a: Ipv4Addr = parse(path, s)?;
    if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
        return Err(invalid(path, format!("{a} is not a unicast address")));
    }
    Ok(a)
}

/// A prefix without host bits.
pub(super) fn cidr6(path: &str, s: &str) -> Result<Ipv6Net> {
    let net: Ipv6Net = s.trim().parse().map_err(|_| {
        invalid(
            path,
            format!("{s:?} is not an IPv6 prefix like 2001:db8::/48"),
        )
    })?;
    no_host_bits(path, net, net.trunc())
}

/// `"A-B"`, a CIDR (all of its addresses), or one address.
pub(super) fn range6(path: &str, s: &str) -> Result<(Ipv6Addr, Ipv6Addr)> {
    let cidr = |t: &str| cidr6(path, t).map(|net| (net.network(), net.broadcast()));
    address_range(
        path,
        s,
        cidr,
        "an IPv6 address, a range \"FIRST-LAST\" or a prefix",
    )
}

/// A unicast IPv6 address: not unspecified, loopback is allowed (tests), not multicast.
pub(super) fn unicast6(path: &str, s: &str) -> Result<Ipv6Addr> {
    let a: Ipv6Addr = parse(path, s)?;
    if a.is_unspecified() || a.is_multicast() {
        return Err(invalid(path, format!("{a} is not a unicast address")));
    }
    Ok(a)
}
