//! Client identities: the opaque [`ClientKey`], the inline hardware address [`HwAddr`], and
//! the client's [`HostName`].

use std::fmt;
use std::ops::Deref;

use crate::inline::InlineBytes;

const TAG_HARDWARE: u8 = 0;
const TAG_CLIENT_ID: u8 = 1;

/// Opaque client identity built by the server: option 61 bytes if the client sent them, else
/// htype + chaddr.
///
/// The two kinds are tagged so that a client id can never collide with a hardware address.
/// Keys of up to [`ClientKey::INLINE`] bytes (tag included: every hardware address and nearly
/// every client identifier, RFC 4361's 0xff + IAID + DUID-UUID among them) are stored inline,
/// without allocating.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ClientKey(InlineBytes<{ ClientKey::INLINE }>);

impl ClientKey {
    /// The longest key stored without allocating, in bytes (tag included).
    pub const INLINE: usize = 38;

    /// A key from the client identifier option (61): tag 1, then the option's bytes.
    pub fn client_id(id: &[u8]) -> Self {
        Self(InlineBytes::concat(&[&[TAG_CLIENT_ID], id]))
    }

    /// A key from the hardware address: tag 0, `htype`, then `chaddr`.
    pub fn hardware(htype: u8, chaddr: &[u8]) -> Self {
        Self(InlineBytes::concat(&[&[TAG_HARDWARE, htype], chaddr]))
    }

    /// Rebuilds a key from [`ClientKey::as_bytes`] (for the journal and snapshots).
    pub fn from_bytes(bytes: &[u8]) -> Self {
        Self(InlineBytes::concat(&[bytes]))
    }

    /// The tagged bytes of the key.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }
}

impl fmt::Debug for ClientKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_tuple("ClientKey").field(&self.as_bytes()).finish()
    }
}

/// The host name a client gave (option 12) or its reservation names, as a lease carries it:
/// up to [`HostName::INLINE`] bytes (a DNS label is at most 63) stored inline, without
/// allocating. It reads as a `&str`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct HostName(InlineBytes<{ HostName::INLINE }>);

impl HostName {
    /// The longest name stored without allocating, in bytes.
    pub const INLINE: usize = 62;

    /// The name `name`.
    pub fn new(name: &str) -> Self {
        Self(InlineBytes::concat(&[name.as_bytes()]))
    }

    /// The name.
    pub fn as_str(&self) -> &str {
        // Only ever built from a `&str`.
        std::str::from_utf8(self.0.as_bytes()).unwrap_or_default()
    }
}

impl Deref for HostName {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl From<&str> for HostName {
    fn from(name: &str) -> Self {
        Self::new(name)
    }
}

impl fmt::Debug for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl fmt::Display for HostName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
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
        assert_eq!(size_of::<ClientKey>(), 40);
        let short = ClientKey::client_id(&[7; ClientKey::INLINE - 1]);
        assert!(short.0.is_inline());
        // RFC 4361: 0xff, IAID, DUID-UUID (type 4 + 16 bytes).
        let rfc4361 =
            ClientKey::client_id(&[[0xff, 0, 0, 0, 1, 0, 4].as_slice(), &[9; 16]].concat());
        assert!(rfc4361.0.is_inline());
        let long = ClientKey::client_id(&[7; ClientKey::INLINE]);
        assert!(!long.0.is_inline());
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
    fn host_names_read_as_str_and_usual_ones_are_inline() {
        assert_eq!(size_of::<Option<HostName>>(), 64);
        let label = HostName::new(&"a".repeat(HostName::INLINE));
        assert!(label.0.is_inline());
        assert_eq!(label.len(), HostName::INLINE);
        let longer = HostName::new(&"a".repeat(HostName::INLINE + 1));
        assert!(!longer.0.is_inline());
        assert!(label < longer);
        assert_eq!(HostName::from("pc-07").as_str(), "pc-07");
        assert_eq!(
            format!("{:?} {}", HostName::new("ü"), HostName::new("ü")),
            "\"ü\" ü"
        );
        assert_eq!(
            HostName::new("x".repeat(255).as_str()).as_str(),
            "x".repeat(255)
        );
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
