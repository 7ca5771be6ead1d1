//! `Rec`: the record type of the journal's own tests, unit and integration alike.

use crate::Record;

/// A test record keyed by `key`; `live == false` is a tombstone, `pad` sets its size.
///
/// Fields are encoded in declaration order (key 4 bytes, version 8, live 1, then `pad`'s
/// length 8 and bytes), which tests that compute offsets into a frame rely on.
#[derive(Clone, Debug, PartialEq, Eq, bincode::Encode, bincode::Decode)]
pub struct Rec {
    /// The record's key.
    pub key: u32,
    /// Its version: the highest per key wins.
    pub version: u64,
    /// `false` makes it a tombstone.
    pub live: bool,
    /// Payload bytes, only to give the record a size.
    pub pad: Vec<u8>,
}

impl Rec {
    /// A live record without padding.
    pub fn new(key: u32, version: u64) -> Self {
        Rec {
            key,
            version,
            live: true,
            pad: Vec::new(),
        }
    }

    /// A tombstone without padding.
    pub fn tomb(key: u32, version: u64) -> Self {
        Rec {
            live: false,
            ..Rec::new(key, version)
        }
    }

    /// This record with `n` bytes of padding, each `byte`.
    pub fn padded(self, n: usize, byte: u8) -> Self {
        Rec {
            pad: vec![byte; n],
            ..self
        }
    }
}

impl Record for Rec {
    type Key = u32;
    fn key(&self) -> u32 {
        self.key
    }
    fn version(&self) -> u64 {
        self.version
    }
    fn keep(&self, _now: u64) -> bool {
        self.live
    }
    fn tombstone(key: &u32, version: u64) -> Option<Self> {
        Some(Rec::tomb(*key, version))
    }
}
