//! Identity associations (IA_NA, IA_TA, IA_PD): their fixed fields and the addresses or
//! prefixes inside them.

use std::net::Ipv6Addr;

use super::{Malformed, Options, opt, scan};

/// The kind of an identity association.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum IaType {
    /// IA_NA (3): non-temporary addresses.
    Na,
    /// IA_TA (4): temporary addresses (refused by this server).
    Ta,
    /// IA_PD (25): delegated prefixes.
    Pd,
}

/// An address or prefix listed inside an IA (IAADDR or IAPREFIX).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct IaEntry {
    /// The address, or the prefix's first address.
    pub addr: Ipv6Addr,
    /// 128 for an address, the prefix length for a prefix.
    pub len: u8,
    /// Preferred lifetime the client gave.
    pub preferred: u32,
    /// Valid lifetime the client gave.
    pub valid: u32,
}

/// One validated IA option.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Ia<'a> {
    /// IA_NA, IA_TA or IA_PD.
    pub kind: IaType,
    /// The client's identifier for this IA.
    pub iaid: u32,
    /// The T1 the client suggested (0 for IA_TA).
    pub t1: u32,
    /// The T2 the client suggested (0 for IA_TA).
    pub t2: u32,
    /// The IA's own options (validated).
    pub(super) opts: &'a [u8],
}

impl<'a> Ia<'a> {
    /// The addresses (IA_NA, IA_TA) or prefixes (IA_PD) the client listed, in order.
    pub fn entries(&self) -> impl Iterator<Item = IaEntry> + 'a {
        let want = if self.kind == IaType::Pd {
            opt::IAPREFIX
        } else {
            opt::IAADDR
        };
        Options(self.opts)
            .filter_map(move |(code, d)| (code == want).then(|| entry(code, d)).flatten())
    }

    /// The first address or prefix the client listed, if any.
    pub fn first(&self) -> Option<IaEntry> {
        self.entries().next()
    }
}

fn entry(code: u16, d: &[u8]) -> Option<IaEntry> {
    let u32_at = |i: usize| Some(u32::from_be_bytes(d.get(i..i + 4)?.try_into().ok()?));
    let addr = |i: usize| {
        Some(Ipv6Addr::from(
            <[u8; 16]>::try_from(d.get(i..i + 16)?).ok()?,
        ))
    };
    if code == opt::IAADDR {
        Some(IaEntry {
            addr: addr(0)?,
            len: 128,
            preferred: u32_at(16)?,
            valid: u32_at(20)?,
        })
    } else {
        Some(IaEntry {
            preferred: u32_at(0)?,
            valid: u32_at(4)?,
            len: *d.get(8)?,
            addr: addr(9)?,
        })
    }
}

/// Reads IA option `code` (IA_NA, IA_TA or IA_PD) from its data; `None` for other codes or
/// data too short for the fixed fields.
pub(super) fn ia(code: u16, d: &[u8]) -> Option<Ia<'_>> {
    let word = |i: usize| Some(u32::from_be_bytes(d.get(i..i + 4)?.try_into().ok()?));
    match code {
        opt::IA_NA | opt::IA_PD => Some(Ia {
            kind: if code == opt::IA_NA {
                IaType::Na
            } else {
                IaType::Pd
            },
            iaid: word(0)?,
            t1: word(4)?,
            t2: word(8)?,
            opts: d.get(12..)?,
        }),
        opt::IA_TA => Some(Ia {
            kind: IaType::Ta,
            iaid: word(0)?,
            t1: 0,
            t2: 0,
            opts: d.get(4..)?,
        }),
        _ => None,
    }
}

/// Validates the options inside an IA (and those inside its IAADDR/IAPREFIX options).
pub(super) fn check_ia_options(kind: IaType, area: &[u8]) -> Result<(), Malformed> {
    scan(area, |code, d| {
        let inner = match code {
            opt::IAADDR if kind != IaType::Pd => {
                if d.len() < 24 {
                    return Err(Malformed::BadOptionLength(code));
                }
                &d[24..]
            }
            opt::IAPREFIX if kind == IaType::Pd => {
                // RFC 8415 §21.22: lifetimes, prefix length (at most 128), prefix.
                if d.len() < 25 || d[8] > 128 {
                    return Err(Malformed::BadOptionLength(code));
                }
                &d[25..]
            }
            opt::STATUS_CODE if d.len() < 2 => return Err(Malformed::BadOptionLength(code)),
            _ => return Ok(()),
        };
        scan(inner, |c, d| match c {
            opt::STATUS_CODE if d.len() < 2 => Err(Malformed::BadOptionLength(c)),
            _ => Ok(()),
        })
    })
}
