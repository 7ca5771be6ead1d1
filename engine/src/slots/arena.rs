//! The byte arena of a shard's records: one blob per slot that needs one, written in
//! length-prefixed parts; and the inline key a slot keeps when it fits.

use crate::common::slot::{NONE, UNIT};

/// Variable-length parts of the records: one blob per slot that needs one, appended; a blob
/// that is replaced or dropped becomes garbage, and the arena is compacted once garbage is
/// most of it (amortised O(1) per byte written).
#[derive(Debug, Default)]
pub(crate) struct Arena {
    pub(crate) bytes: Vec<u8>,
    pub(crate) garbage: usize,
}

impl Arena {
    /// Appends the blob `write` writes, padded to a whole unit; returns its offset in units.
    pub(crate) fn push(&mut self, write: impl FnOnce(&mut Vec<u8>)) -> u32 {
        let start = self.bytes.len();
        write(&mut self.bytes);
        self.seal(start)
    }

    /// Bytes a blob at `off` whose parts end before byte `end` takes, padding included.
    pub(crate) fn blob_len(off: u32, end: usize) -> usize {
        (end - off as usize * UNIT).next_multiple_of(UNIT)
    }

    /// Pads the blob started at byte `start` to a whole unit; returns its offset in units.
    fn seal(&mut self, start: usize) -> u32 {
        debug_assert_eq!(start % UNIT, 0);
        self.bytes
            .resize(self.bytes.len().next_multiple_of(UNIT), 0);
        assert!(
            self.bytes.len() / UNIT < NONE as usize,
            "a shard holds more than 16 GiB of host names and long client keys"
        );
        (start / UNIT) as u32
    }
}

/// Appends `part` to a blob, its length in front (LEB128).
pub(crate) fn put_part(out: &mut Vec<u8>, part: &[u8]) {
    let mut n = part.len();
    while n >= 0x80 {
        out.push((n as u8) | 0x80);
        n >>= 7;
    }
    out.push(n as u8);
    out.extend_from_slice(part);
}

/// The part [`put_part`] wrote at byte `*at` of `bytes`; moves `*at` past it.
pub(crate) fn get_part<'a>(bytes: &'a [u8], at: &mut usize) -> &'a [u8] {
    let mut n = 0usize;
    let mut shift = 0;
    loop {
        let b = bytes[*at];
        *at += 1;
        n |= usize::from(b & 0x7f) << shift;
        if b < 0x80 {
            break;
        }
        shift += 7;
    }
    let part = &bytes[*at..*at + n];
    *at += n;
    part
}

/// A client key of up to `N - 1` bytes, kept in the slot: its length, then its bytes.
#[derive(Clone, Copy, Debug)]
pub(crate) struct InlineKey<const N: usize>([u8; N]);

impl<const N: usize> InlineKey<N> {
    pub(crate) const EMPTY: Self = InlineKey([0; N]);

    /// `key`, if it fits.
    pub(crate) fn new(key: &[u8]) -> Option<Self> {
        (key.len() < N).then(|| {
            let mut bytes = [0; N];
            bytes[0] = key.len() as u8;
            bytes[1..=key.len()].copy_from_slice(key);
            InlineKey(bytes)
        })
    }

    pub(crate) fn get(&self) -> &[u8] {
        &self.0[1..=usize::from(self.0[0])]
    }
}
