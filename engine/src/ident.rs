//! Client identities: the opaque [`ClientKey`] and the inline hardware address [`HwAddr`].

use std::cmp::Ordering;
use std::fmt;
use std::hash::{Hash, Hasher};

const TAG_HARDWARE: u8 = 0;
const TAG_CLIENT_ID: u8 = 1;

/// Opaque client identity built by the server: option 61 bytes if the client sent them, else
/// htype + chaddr.
///
/// The two kinds are tagged so that a client id can never collide with a hardware address.
/// Keys of up to [`ClientKey::INLINE`] bytes (tag included: every hardware address and nearly
/// every client identifier) are stored inline, without allocating.
#[derive(Clone)]
pub struct ClientKey(Repr);

#[derive(Clone)]
enum Repr {
    Inline {
        len: u8,
        bytes: [u8; ClientKey::INLINE],
    },
    Heap(Box<[u8]>),
}

impl ClientKey {
    /// The longest key stored without allocating, in bytes (tag included).
    pub const INLINE: usize = 22;

    fn build(parts: &[&[u8]]) -> Self {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= Self::INLINE {
            let mut bytes = [0; Self::INLINE];
            let mut at = 0;
            for part in parts {
                bytes[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Self(Repr::Inline {
                len: len as u8,
                bytes,
            })
        } else {
            Self(Repr::Heap(parts.concat().into_boxed_slice()))
        }
    }

    /// A key from the client identifier option (61): tag 1, then the option's bytes.
    pub fn client_id(id: &[u8]) -> Self {
        Self::build(&[&[TAG_CLIENT_ID], id])
    }

    /// A key from the hardware address: tag 0, `htype`, then `chaddr`.
    pub fn hardware(htype: u8, chaddr: &[u8]) -> Self {
        Self::build(&[&[TAG_HARDWARE, htype], chaddr])
    }

    /// Rebuilds a key from [`ClientKey::as_bytes`] (for the journal and snapshots).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self::build(&[bytes])
    }

    /// The tagged bytes of the key.
    pub fn as_bytes(&self) -> &[u8] {
        match &self.0 {
            Repr::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Repr::Heap(bytes) => bytes,
        }
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientKey").field(&self.as_bytes()).finish()
    }
}

impl PartialEq for ClientKey {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl Eq for ClientKey {}

impl Hash for ClientKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl PartialOrd for ClientKey {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for ClientKey {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

/// Hardware address as the client sent it (htype + up to 16 bytes), stored inline.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub struct HwAddr {
    htype: u8,
    len: u8,
    bytes: [u8; 16],
}

impl HwAddr {
    /// The address `bytes` of hardware type `htype`; `None` if longer than 16 bytes.
    pub fn new(htype: u8, bytes: &[u8]) -> Option<Self> {
        let len = u8::try_from(bytes.len()).ok().filter(|&len| len <= 16)?;
        let mut inline = [0; 16];
        inline[..bytes.len()].copy_from_slice(bytes);
        Some(Self {
            htype,
            len,
            bytes: inline,
        })
    }

    /// The hardware type (1 for Ethernet).
    pub fn htype(&self) -> u8 {
        self.htype
    }

    /// The address bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl fmt::Display for HwAddr {
    /// Lower-case hex bytes joined by colons: `02:23:10:00:00:50`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, byte) in self.bytes().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{byte:02x}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_keys_are_tagged_so_kinds_never_collide() {
        let by_id = ClientKey::client_id(&[1, 2, 3]);
        let by_hw = ClientKey::hardware(1, &[2, 3]);
        assert_eq!(by_id.as_bytes(), &[1, 1, 2, 3]);
        assert_eq!(by_hw.as_bytes(), &[0, 1, 2, 3]);
        assert_ne!(by_id, by_hw);
        assert_eq!(ClientKey::from_bytes(by_id.as_bytes()), by_id);
    }

    #[test]
    fn short_keys_are_inline_and_long_ones_compare_the_same() {
        assert_eq!(size_of::<ClientKey>(), 24);
        let short = ClientKey::client_id(&[7; ClientKey::INLINE - 1]);
        assert!(matches!(short.0, Repr::Inline { .. }));
        let long = ClientKey::client_id(&[7; ClientKey::INLINE]);
        assert!(matches!(long.0, Repr::Heap(_)));
        assert_eq!(long.as_bytes().len(), ClientKey::INLINE + 1);
        assert!(short < long);
        assert_eq!(ClientKey::from_bytes(long.as_bytes()), long);
        assert_eq!(
            format!("{:?}", ClientKey::hardware(1, &[2])),
            "ClientKey([0, 1, 2])"
        );
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        assert_eq!(state.hash_one(&long), state.hash_one(long.as_bytes()));
    }

    #[test]
    fn hw_addr_keeps_up_to_16_bytes_and_displays_as_hex() {
        let hw = HwAddr::new(1, &[0x02, 0x23, 0x10, 0, 0, 0x50]).unwrap();
        assert_eq!(hw.htype(), 1);
        assert_eq!(hw.bytes(), &[0x02, 0x23, 0x10, 0, 0, 0x50]);
        assert_eq!(hw.to_string(), "02:23:10:00:00:50");
        assert_eq!(HwAddr::new(1, &[0xab; 16]).unwrap().bytes().len(), 16);
        assert!(HwAddr::new(1, &[0; 17]).is_none());
        assert_eq!(HwAddr::default().to_string(), "");
    }
}
