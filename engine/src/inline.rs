//! Byte strings kept inline up to `N` bytes and on the heap past that: the engine's client
//! keys and host names. Leases and events carry them by value, so a request whose client's
//! identity and host name fit makes no allocation.

use std::cmp::Ordering;
use std::hash::{Hash, Hasher};

/// Up to `N` bytes inline (`N` at most 255), more on the heap. Compares, orders and hashes as
/// its bytes, whichever way it is stored.
#[derive(Clone, Debug)]
pub(crate) enum InlineBytes<const N: usize> {
    Inline { len: u8, bytes: [u8; N] },
    Heap(Box<[u8]>),
}

impl<const N: usize> InlineBytes<N> {
    const FITS_U8: () = assert!(N <= u8::MAX as usize);

    /// The concatenation of `parts`.
    pub(crate) fn concat(parts: &[&[u8]]) -> Self {
        let () = Self::FITS_U8;
        let len: usize = parts.iter().map(|p| p.len()).sum();
        if len <= N {
            let mut bytes = [0; N];
            let mut at = 0;
            for part in parts {
                bytes[at..at + part.len()].copy_from_slice(part);
                at += part.len();
            }
            Self::Inline {
                len: len as u8,
                bytes,
            }
        } else {
            Self::Heap(parts.concat().into_boxed_slice())
        }
    }

    pub(crate) fn as_bytes(&self) -> &[u8] {
        match self {
            Self::Inline { len, bytes } => &bytes[..usize::from(*len)],
            Self::Heap(bytes) => bytes,
        }
    }

    /// Whether the bytes are stored inline (tests of the no-allocation claim).
    #[cfg(test)]
    pub(crate) fn is_inline(&self) -> bool {
        matches!(self, Self::Inline { .. })
    }
}

impl<const N: usize> PartialEq for InlineBytes<N> {
    fn eq(&self, other: &Self) -> bool {
        self.as_bytes() == other.as_bytes()
    }
}

impl<const N: usize> Eq for InlineBytes<N> {}

impl<const N: usize> Hash for InlineBytes<N> {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.as_bytes().hash(state);
    }
}

impl<const N: usize> PartialOrd for InlineBytes<N> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<const N: usize> Ord for InlineBytes<N> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.as_bytes().cmp(other.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use std::hash::BuildHasher;

    use super::*;

    #[test]
    fn inline_up_to_n_and_the_same_either_way() {
        let short = InlineBytes::<4>::concat(&[&[1, 2], &[3, 4]]);
        assert!(short.is_inline());
        assert_eq!(short.as_bytes(), &[1, 2, 3, 4]);
        let long = InlineBytes::<4>::concat(&[&[1, 2], &[3, 4, 5]]);
        assert!(!long.is_inline());
        assert_eq!(long.as_bytes(), &[1, 2, 3, 4, 5]);
        assert!(short < long);
        assert_eq!(InlineBytes::<4>::concat(&[]).as_bytes(), &[] as &[u8]);
        // A heap copy of inline-sized bytes equals the inline one, and hashes the same.
        let heap = InlineBytes::<4>::Heap(Box::new([1, 2, 3, 4]));
        assert_eq!(heap, short);
        let state = std::collections::hash_map::RandomState::new();
        assert_eq!(state.hash_one(&heap), state.hash_one(&short));
        assert_eq!(state.hash_one(&long), state.hash_one(long.as_bytes()));
    }
}
