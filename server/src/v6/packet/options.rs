//! The DHCPv6 option area (RFC 8415 §21.1): iterating and validating option headers.

use lessor_net::wire::{Field, v6::field};

use super::Malformed;

/// The option header's length: code and length.
const HEADER: usize = field::OPTION_DATA.start;

/// Splits the option at the start of `b` into code, data and what follows, or `None` when its
/// header or data runs past the end.
fn split(b: &[u8]) -> Option<(u16, &[u8], &[u8])> {
    let be16 = |f: Field| Some(u16::from_be_bytes(b.get(f)?.try_into().ok()?));
    let code = be16(field::OPTION_CODE)?;
    let end = HEADER + usize::from(be16(field::OPTION_LEN)?);
    Some((code, b.get(HEADER..end)?, &b[end..]))
}

/// Iterates `code, data` over an option area that has already been validated; stops at the
/// first inconsistency (which validation has ruled out).
#[derive(Clone, Copy, Debug)]
pub(in crate::v6) struct Options<'a>(pub(in crate::v6) &'a [u8]);

impl<'a> Iterator for Options<'a> {
    type Item = (u16, &'a [u8]);

    fn next(&mut self) -> Option<Self::Item> {
        let (code, data, rest) = split(self.0)?;
        self.0 = rest;
        Some((code, data))
    }
}

/// Walks an option area checking every header and length against its end.
pub(super) fn scan<'a>(
    area: &'a [u8],
    mut f: impl FnMut(u16, &'a [u8]) -> Result<(), Malformed>,
) -> Result<(), Malformed> {
    let mut rest = area;
    while !rest.is_empty() {
        let (code, data, next) = split(rest).ok_or(Malformed::OptionOverrun)?;
        f(code, data)?;
        rest = next;
    }
    Ok(())
}

/// RFC 8415 §11.1: a DUID is a 2-byte type and at most 128 bytes more; at least one.
pub(super) fn check_duid(code: u16, d: &[u8]) -> Result<(), Malformed> {
    if (3..=130).contains(&d.len()) {
        Ok(())
    } else {
        Err(Malformed::BadOptionLength(code))
    }
}

/// Stores `d` in `slot`, refusing a second instance of option `code`.
pub(super) fn set_once<'a>(
    slot: &mut Option<&'a [u8]>,
    code: u16,
    d: &'a [u8],
) -> Result<(), Malformed> {
    if slot.replace(d).is_some() {
        return Err(Malformed::DuplicateOption(code));
    }
    Ok(())
}

/// The first option `code` in `area`, stopping at the first malformed header.
pub(super) fn find(area: &[u8], code: u16) -> Option<&[u8]> {
    Options(area).find(|(c, _)| *c == code).map(|(_, d)| d)
}
