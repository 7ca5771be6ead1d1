//! Who holds a v6 lease ([`IaKey`]: DUID + IAID + IA kind) and what is leased ([`Resource`]).

use std::fmt;
use std::net::Ipv6Addr;

use crate::inline::InlineBytes;

/// The kind of identity association a lease belongs to. IA_TA is refused by the server and
/// never reaches the engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum IaKind {
    /// IA_NA: non-temporary addresses (RFC 8415 §21.4).
    Na,
    /// IA_PD: delegated prefixes (RFC 8415 §21.21).
    Pd,
}

impl IaKind {
    fn tag(self) -> u8 {
        match self {
            IaKind::Na => 0,
            IaKind::Pd => 1,
        }
    }

    fn from_tag(tag: u8) -> Option<Self> {
        match tag {
            0 => Some(IaKind::Na),
            1 => Some(IaKind::Pd),
            _ => None,
        }
    }
}

/// Who holds a lease: the client's DUID, the IA's IAID and the IA's kind.
///
/// Its bytes ([`IaKey::as_bytes`], the journal form) are the kind's tag (0 for IA_NA, 1 for
/// IA_PD), the IAID in network order, then the DUID. Keys of up to [`IaKey::INLINE`] bytes
/// (DUIDs up to 33 bytes: DUID-LLT, DUID-LL, DUID-UUID and nearly every DUID-EN) are stored
/// inline, without allocating; longer ones (a DUID is at most 130 bytes, RFC 8415 §11.1) go to
/// the heap.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IaKey(InlineBytes<{ IaKey::INLINE }>);

/// Bytes before the DUID in a key: the kind's tag and the IAID.
const HEADER: usize = 5;

impl IaKey {
    /// The longest key stored without allocating, in bytes (the 5-byte header included).
    pub const INLINE: usize = 38;

    /// The key of IA `iaid` of kind `kind` of the client with this DUID.
    pub fn new(duid: &[u8], iaid: u32, kind: IaKind) -> IaKey {
        let id = iaid.to_be_bytes();
        let header = [kind.tag(), id[0], id[1], id[2], id[3]];
        IaKey(InlineBytes::concat(&[&header, duid]))
    }

    /// The client's DUID.
    pub fn duid(&self) -> &[u8] {
        &self.as_bytes()[HEADER..]
    }

    /// The IA's IAID.
    pub fn iaid(&self) -> u32 {
        let b = self.as_bytes();
        u32::from_be_bytes([b[1], b[2], b[3], b[4]])
    }

    /// The IA's kind.
    pub fn kind(&self) -> IaKind {
        // Every constructor writes a valid tag.
        IaKind::from_tag(self.as_bytes()[0]).unwrap_or(IaKind::Na)
    }

    /// The key's bytes: tag, IAID, DUID (see the type's docs). The journal form.
    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    /// Rebuilds a key from [`IaKey::as_bytes`]; `None` if `bytes` is shorter than the header
    /// or its kind tag is unknown.
    pub fn from_bytes(bytes: &[u8]) -> Option<IaKey> {
        if bytes.len() < HEADER {
            return None;
        }
        let kind = IaKind::from_tag(bytes[0])?;
        let iaid = u32::from_be_bytes([bytes[1], bytes[2], bytes[3], bytes[4]]);
        Some(IaKey::new(&bytes[HEADER..], iaid, kind))
    }

    /// Whether the key is stored inline (tests of the no-allocation claim).
    #[cfg(test)]
    pub(crate) fn is_inline(&self) -> bool {
        self.0.is_inline()
    }
}

impl fmt::Debug for IaKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "IaKey({:?} {} ", self.kind(), self.iaid())?;
        for (i, b) in self.duid().iter().enumerate() {
            if i > 0 {
                f.write_str(":")?;
            }
            write!(f, "{b:02x}")?;
        }
        f.write_str(")")
    }
}

/// What is leased: an address (`len` 128, IA_NA) or a prefix (`addr/len`, IA_PD).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Resource {
    /// The address, or the prefix's first address.
    pub addr: Ipv6Addr,
    /// 128 for an address, the prefix length for a prefix.
    pub len: u8,
}

impl Resource {
    /// The address `addr` (length 128).
    pub fn address(addr: Ipv6Addr) -> Resource {
        Resource { addr, len: 128 }
    }

    /// The prefix `addr/len`.
    pub fn prefix(addr: Ipv6Addr, len: u8) -> Resource {
        Resource { addr, len }
    }
}

impl fmt::Display for Resource {
    /// `addr` for an address, `addr/len` for a prefix.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.len == 128 {
            write!(f, "{}", self.addr)
        } else {
            write!(f, "{}/{}", self.addr, self.len)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_round_trip_and_usual_duids_are_inline() {
        assert_eq!(size_of::<IaKey>(), 40);
        // DUID-LLT for Ethernet: 14 bytes.
        let llt = [0, 1, 0, 1, 0x2a, 0x3b, 0x4c, 0x5d, 2, 0, 0, 0, 0, 1];
        let key = IaKey::new(&llt, 0xdead_beef, IaKind::Pd);
        assert!(key.is_inline());
        assert_eq!(key.duid(), &llt);
        assert_eq!(key.iaid(), 0xdead_beef);
        assert_eq!(key.kind(), IaKind::Pd);
        assert_eq!(&key.as_bytes()[..5], &[1, 0xde, 0xad, 0xbe, 0xef]);
        assert_eq!(IaKey::from_bytes(key.as_bytes()), Some(key.clone()));
        assert_ne!(key, IaKey::new(&llt, 0xdead_beef, IaKind::Na));
        assert_eq!(
            format!("{:?}", IaKey::new(&[0, 3, 0xab], 7, IaKind::Na)),
            "IaKey(Na 7 00:03:ab)"
        );

        let longest_inline = IaKey::new(&[9; IaKey::INLINE - 5], 1, IaKind::Na);
        assert!(longest_inline.is_inline());
        let long = IaKey::new(&[9; 130], 1, IaKind::Na);
        assert!(!long.is_inline());
        assert_eq!(long.duid().len(), 130);
        assert_eq!(IaKey::from_bytes(long.as_bytes()), Some(long.clone()));
        assert!(longest_inline < long);
        use std::hash::BuildHasher;
        let state = std::collections::hash_map::RandomState::new();
        assert_eq!(state.hash_one(&long), state.hash_one(long.as_bytes()));

        assert_eq!(IaKey::from_bytes(&[0, 0, 0, 0]), None);
        assert_eq!(IaKey::from_bytes(&[2, 0, 0, 0, 0, 1]), None);
        let empty = IaKey::from_bytes(&[0, 0, 0, 0, 5]).unwrap();
        assert_eq!((empty.duid(), empty.iaid()), (&[][..], 5));
    }

    #[test]
    fn resources_display_as_address_or_prefix() {
        let a: Ipv6Addr = "2001:db8::1".parse().unwrap();
        assert_eq!(Resource::address(a).to_string(), "2001:db8::1");
        assert_eq!(Resource::prefix(a, 56).to_string(), "2001:db8::1/56");
    }
}
