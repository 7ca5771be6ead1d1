//! The little the config layer needs to know about an address family, so that parsing addresses,
//! encoding them into options and walking address ranges is written once for IPv4 and IPv6.

use std::fmt::Display;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use super::error::{ConfigError, invalid};

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
