//! Load-balancing scopes: which clients each server of an HA pair answers, and from which
//! half of every pool.
//!
//! In `ha.mode: load-balancing` both servers answer, each the clients of its own scope. A
//! client's identifier hashes into one of 256 buckets (RFC 3074, [`bucket`]): buckets 0..=127
//! are scope 0, served by the first of `ha.peers`, and 128..=255 scope 1, the second's. Every
//! configured pool is split into two engine pools, its lower half scope 0's and its upper half
//! scope 1's (`halves`), and a client is given addresses only from its own scope's halves:
//! the two servers never hand out the same free address, and a survivor that serves both
//! scopes keeps each client in its half, so no client changes address when its scope goes
//! back. Which scopes a server answers now is a mask (bit `s` for scope `s`) that the HA agent
//! sets and the workers read; without load-balancing it is ignored. See docs/HA.md, "Load
//! balancing".

use lessor_engine::v4::ClientKey;
use lessor_engine::v6::IaKey;

use crate::config::{Config, Link};

/// The mask of both scopes: what a server answers outside load-balancing, or while its
/// partner is away.
pub const ALL: u8 = 0b11;

/// Bit `WAITING + s` of the mask: scope `s`'s own pools give no free address (the
/// partner's last leases may be unknown here: `ha.mclt` after a takeover with `ha.sync:
/// false`), so its clients' candidate lists go on with the other scope's pools.
const WAITING: u8 = 2;

/// `mask` with scope `scope`'s pools waiting (or not).
pub fn with_waiting(mask: u8, scope: usize, waiting: bool) -> u8 {
    let bit = 1 << (WAITING as usize + scope);
    if waiting { mask | bit } else { mask & !bit }
}

/// Whether scope `scope`'s own pools wait in `mask` (see [`with_waiting`]).
pub fn waits(mask: u8, scope: usize) -> bool {
    mask & (1 << (WAITING as usize + scope)) != 0
}

/// The four candidate lists of a context from the two of [`Layout::by_link`] or
/// [`Layout::by_subnet`], indexed as [`admit`] answers: scope 0's, scope 1's, then each
/// scope's followed by the other's, for a scope whose pools wait.
pub(crate) fn widen<P: Copy>([a, b]: [Vec<Vec<P>>; 2]) -> [Vec<Vec<P>>; 4] {
    let join = |x: &[Vec<P>], y: &[Vec<P>]| -> Vec<Vec<P>> {
        x.iter()
            .zip(y)
            .map(|(x, y)| x.iter().chain(y).copied().collect())
            .collect()
    };
    let (ab, ba) = (join(&a, &b), join(&b, &a));
    [a, b, ab, ba]
}

/// RFC 3074 §6: the mixing table, a permutation of 0..=255 in pseudo-random order.
const MIX: [u8; 256] = [
    251, 175, 119, 215, 81, 14, 79, 191, 103, 49, 181, 143, 186, 157, 0, 232, //
    31, 32, 55, 60, 152, 58, 17, 237, 174, 70, 160, 144, 220, 90, 57, 223, //
    59, 3, 18, 140, 111, 166, 203, 196, 134, 243, 124, 95, 222, 179, 197, 65, //
    180, 48, 36, 15, 107, 46, 233, 130, 165, 30, 123, 161, 209, 23, 97, 16, //
    40, 91, 219, 61, 100, 10, 210, 109, 250, 127, 22, 138, 29, 108, 244, 67, //
    207, 9, 178, 204, 74, 98, 126, 249, 167, 116, 34, 77, 193, 200, 121, 5, //
    20, 113, 71, 35, 128, 13, 182, 94, 25, 226, 227, 199, 75, 27, 41, 245, //
    230, 224, 43, 225, 177, 26, 155, 150, 212, 142, 218, 115, 241, 73, 88, 105, //
    39, 114, 62, 255, 192, 201, 145, 214, 168, 158, 221, 148, 154, 122, 12, 84, //
    82, 163, 44, 139, 228, 236, 205, 242, 217, 11, 187, 146, 159, 64, 86, 239, //
    195, 42, 106, 198, 118, 112, 184, 172, 87, 2, 173, 117, 176, 229, 247, 253, //
    137, 185, 99, 164, 102, 147, 45, 66, 231, 52, 141, 211, 194, 206, 246, 238, //
    56, 110, 78, 248, 63, 240, 189, 93, 92, 51, 53, 183, 19, 171, 72, 50, //
    33, 104, 101, 69, 8, 252, 83, 120, 76, 135, 85, 54, 202, 125, 188, 213, //
    96, 235, 136, 208, 162, 129, 190, 132, 156, 38, 47, 1, 7, 254, 24, 4, //
    216, 131, 89, 21, 28, 133, 37, 153, 149, 80, 170, 68, 6, 169, 234, 151, //
];

/// The RFC 3074 bucket of a client identifier: a Pearson hash over the mixing table, seeded with the
/// key's length (modulo 256) and taken over the key from its last byte to its first (§6).
pub fn bucket(key: &[u8]) -> u8 {
    key.iter()
        .rev()
        .fold(key.len() as u8, |hash, &b| MIX[usize::from(hash ^ b)])
}

/// The scope of bucket `b`: 0 for the lower 128 buckets, 1 for the upper.
pub fn of_bucket(b: u8) -> usize {
    usize::from(b >> 7)
}

/// Whether `mask` serves `scope`.
pub fn serves(mask: u8, scope: usize) -> bool {
    mask & (1 << scope) != 0
}

/// The scope of a DHCPv4 client: by its client identifier (option 61) when it sent one, else
/// by its hardware address (`chaddr`, `hlen` bytes): the key ISC dhcpd and Kea hash.
pub fn of_v4(client_id: Option<&[u8]>, chaddr: &[u8]) -> usize {
    of_bucket(bucket(client_id.unwrap_or(chaddr)))
}

/// The scope of the DHCPv4 client whose engine key is `key` (what [`of_v4`] gives from the
/// request the key was made of).
pub fn of_client(key: &ClientKey) -> usize {
    of_client_bytes(key.as_bytes())
}

/// [`of_client`] of a key's bytes, as [`ClientKey::as_bytes`] gives them (and the journal's
/// records keep them).
pub fn of_client_bytes(key: &[u8]) -> usize {
    // The key's layout: tag 1 and the client identifier, or tag 0, htype and chaddr.
    match key {
        [1, id @ ..] => of_v4(Some(id), &[]),
        [_, _, chaddr @ ..] => of_v4(None, chaddr),
        short => of_v4(None, short),
    }
}

/// The scope of a DHCPv6 client, by its DUID (the Client Identifier's payload); a message
/// without one hashes as the empty key, to scope 0.
pub fn of_duid(duid: &[u8]) -> usize {
    of_bucket(bucket(duid))
}

/// The scope of the DHCPv6 IA whose engine key is `key`: its client's.
pub fn of_ia(key: &IaKey) -> usize {
    of_duid(key.duid())
}

/// Which of a context's candidate lists ([`widen`]) a request takes its pools from: its
/// client's scope (`client()`, asked only in load-balancing), or that plus 2 while the
/// scope's pools wait; 0 outside load-balancing. `None` when `mask` does not serve the
/// client's scope, which the partner answers.
pub(crate) fn admit(balanced: bool, mask: u8, client: impl FnOnce() -> usize) -> Option<usize> {
    if !balanced {
        return Some(0);
    }
    let s = Some(client()).filter(|&s| serves(mask, s))?;
    Some(s + 2 * usize::from(waits(mask, s)))
}

/// Whether `config` runs load-balancing: scopes, split pools and the mask all apply.
pub fn balanced(config: &Config) -> bool {
    config.ha.as_ref().and_then(|h| h.scopes()).is_some()
}

/// The lower and upper half of the values `first..=last`, counted in units of
/// `2^unit_bits` values (one address, or one delegated prefix): the lower half takes the
/// first ceil(n/2) units. The upper half is `None` when there is one unit only. `first` and
/// `last + 1` are multiples of the unit.
pub(crate) fn halves(first: u128, last: u128, unit_bits: u32) -> [Option<(u128, u128)>; 2] {
    let units_less_one = (last - first).checked_shr(unit_bits).unwrap_or(0);
    if units_less_one == 0 {
        return [Some((first, last)), None];
    }
    // ceil(n/2) = (n-1)/2 + 1 units, without computing n (which may be 2^128).
    let lower = (units_less_one / 2 + 1) << unit_bits;
    let lower_last = first + (lower - 1);
    [Some((first, lower_last)), Some((lower_last + 1, last))]
}

/// One engine pool: a configured pool, or in load-balancing one half of it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Part<K> {
    /// The subnet's index in its family's config.
    pub(crate) subnet: usize,
    /// The configured pool's index among its subnet's pools of its kind.
    pub(crate) pool: usize,
    /// The family's kind of pool (DHCPv6: address or delegation pool).
    pub(crate) kind: K,
    /// 0 outside load-balancing; asked through the [`Layout`].
    scope: usize,
    /// Its first and last values: addresses as integers (a delegation pool's, the first and
    /// last address of its prefixes).
    pub(crate) span: (u128, u128),
}

impl<K> Part<K> {
    /// Pool `pool` of `subnet`, whole (scope 0 until [`Layout::new`] splits it).
    pub(crate) fn whole(subnet: usize, pool: usize, kind: K, first: u128, last: u128) -> Self {
        Part {
            subnet,
            pool,
            kind,
            scope: 0,
            span: (first, last),
        }
    }
}

/// The engine pools of one family, in engine id order: the configured pools in the order
/// given, each split in place (lower half, then upper) in load-balancing.
#[derive(Clone, Debug)]
pub(crate) struct Layout<K> {
    balanced: bool,
    parts: Vec<Part<K>>,
}

impl<K: Copy + PartialEq> Layout<K> {
    /// The layout of the configured pools, each [`Part::whole`] with the bits of its unit
    /// (see [`halves`]); split when `balanced`.
    pub(crate) fn new(balanced: bool, pools: impl IntoIterator<Item = (Part<K>, u32)>) -> Self {
        let mut parts = Vec::new();
        for (whole, unit_bits) in pools {
            let (first, last) = whole.span;
            let split = if balanced {
                halves(first, last, unit_bits)
            } else {
                [Some(whole.span), None]
            };
            for (scope, half) in split.into_iter().enumerate() {
                if let Some(span) = half {
                    parts.push(Part {
                        scope,
                        span,
                        ..whole
                    });
                }
            }
        }
        Layout { balanced, parts }
    }

    /// The ids of the engine pools of `scope` (none outside load-balancing).
    pub(crate) fn pools_of(&self, scope: usize) -> impl Iterator<Item = u32> + '_ {
        (self.parts.iter().enumerate())
            .filter(move |(_, p)| self.balanced && p.scope == scope)
            .map(|(i, _)| i as u32)
    }

    /// Whether the pools are split.
    pub(crate) fn balanced(&self) -> bool {
        self.balanced
    }

    /// The engine pools, by id.
    pub(crate) fn parts(&self) -> &[Part<K>] {
        &self.parts
    }

    /// The scope of the engine pool of `kind` holding `x`: `None` outside load-balancing and
    /// outside every pool.
    pub(crate) fn scope_of(&self, kind: K, x: u128) -> Option<usize> {
        let part =
            (self.parts.iter()).find(|p| p.kind == kind && (p.span.0..=p.span.1).contains(&x));
        part.filter(|_| self.balanced).map(|p| p.scope)
    }

    /// Per scope, per subnet: the ids of its engine pools of `kind` that serve the scope (all
    /// of them, for both scopes, outside load-balancing).
    pub(crate) fn by_subnet<P>(
        &self,
        subnets: usize,
        kind: K,
        id: fn(u32) -> P,
    ) -> [Vec<Vec<P>>; 2] {
        [0, 1].map(|scope| {
            let mut out: Vec<Vec<P>> = (0..subnets).map(|_| Vec::new()).collect();
            for (i, p) in self.parts.iter().enumerate() {
                if p.kind == kind && (!self.balanced || p.scope == scope) {
                    out[p.subnet].push(id(i as u32));
                }
            }
            out
        })
    }

    /// Per scope, per link: the ids of its subnets' engine pools of `kind` serving the scope,
    /// subnet by subnet in the link's order.
    pub(crate) fn by_link<P: Copy>(
        &self,
        subnets: usize,
        links: &[Link],
        kind: K,
        id: fn(u32) -> P,
    ) -> [Vec<Vec<P>>; 2] {
        self.by_subnet(subnets, kind, id).map(|per_subnet| {
            (links.iter())
                .map(|l| {
                    l.subnets
                        .iter()
                        .flat_map(|&s| per_subnet[s].iter().copied())
                        .collect()
                })
                .collect()
        })
    }
}

/// An `ha` section in load-balancing, this server the first peer (scope 0), for tests to
/// append to a config.
#[cfg(test)]
pub(crate) const BALANCED_HA: &str = r#"
ha:
  mode: load-balancing
  node: a
  etcd: [ "http://127.0.0.1:2379" ]
  peers:
    - { name: a, url: "http://10.0.0.1:8067", stream: "10.0.0.1:8068" }
    - { name: b, url: "http://10.0.0.2:8067", stream: "10.0.0.2:8068" }
"#;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_waiting_scope_takes_its_widened_lists() {
        let mask = with_waiting(ALL, 1, true);
        assert!(waits(mask, 1) && !waits(mask, 0));
        assert_eq!(admit(true, mask, || 0), Some(0));
        assert_eq!(admit(true, mask, || 1), Some(3));
        assert_eq!(admit(true, with_waiting(mask, 1, false), || 1), Some(1));
        assert_eq!(admit(false, mask, || 1), Some(0), "outside load-balancing");
        assert_eq!(
            admit(true, with_waiting(0b01, 1, true), || 1),
            None,
            "not served"
        );
        let lists = widen([vec![vec![1], vec![]], vec![vec![2], vec![3]]]);
        assert_eq!(lists[2], [vec![1, 2], vec![3]]);
        assert_eq!(lists[3], [vec![2, 1], vec![3]]);
    }

    #[test]
    fn the_mixing_table_is_a_permutation() {
        let mut seen = [false; 256];
        for &v in &MIX {
            assert!(
                !std::mem::replace(&mut seen[usize::from(v)], true),
                "{v} twice"
            );
        }
    }

    /// Worked by hand from RFC 3074 §6 (`hash = len; for i = len..1: hash = T[hash ^ key[i-1]]`)
    /// and the table's row 0 (T[0]=251 T[1]=175 T[2]=119 T[3]=215), row 7 (T[118]=155) and
    /// row 13 (T[215]=120):
    /// - `[]`: no round, the seed 0.
    /// - `[00]`: seed 1, T[1^00] = T[1] = 175.
    /// - `[01]`: seed 1, T[1^01] = T[0] = 251.
    /// - `[00 01]`: seed 2, last byte first: T[2^01] = T[3] = 215, then T[215^00] = 120.
    /// - `[01 00]`: T[2^00] = T[2] = 119, then T[119^01] = T[118] = 155 (the order counts).
    #[test]
    fn bucket_matches_the_rfc_worked_by_hand() {
        assert_eq!(bucket(&[]), 0);
        assert_eq!(bucket(&[0x00]), 175);
        assert_eq!(bucket(&[0x01]), 251);
        assert_eq!(bucket(&[0x00, 0x01]), 120);
        assert_eq!(bucket(&[0x01, 0x00]), 155);
        assert_eq!([0, 127, 128, 255].map(of_bucket), [0, 0, 1, 1]);
    }

    #[test]
    fn random_macs_split_evenly_between_the_scopes() {
        // A xorshift sequence: reproducible, and unlike a counter it varies every byte.
        let mut x = 0x2545_f491_4f6c_dd1du64;
        let mut scope1 = 0;
        let n = 20_000;
        for _ in 0..n {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            let mac = &x.to_be_bytes()[..6];
            scope1 += of_v4(None, mac);
        }
        let share = scope1 as f64 / f64::from(n);
        assert!((0.45..=0.55).contains(&share), "scope 1 got {share}");
    }

    #[test]
    fn keys_hash_as_the_request_they_were_made_of() {
        let (id, mac) = ([1u8, 2, 3, 4, 5, 6, 7], [0x52u8, 0x54, 0, 1, 2, 3]);
        // Find one client id and one MAC of each scope, so a wrong slice cannot pass by luck.
        for key in [&id[..], &id[1..], &mac[..], &mac[1..]] {
            assert_eq!(
                of_client(&ClientKey::client_id(key)),
                of_v4(Some(key), &mac)
            );
            assert_eq!(of_client(&ClientKey::hardware(1, key)), of_v4(None, key));
            let ia = IaKey::new(key, 7, lessor_engine::v6::IaKind::Pd);
            assert_eq!(of_ia(&ia), of_duid(key));
        }
        let scopes: Vec<usize> = [&id[..], &id[1..], &mac[..], &mac[1..]]
            .iter()
            .map(|k| of_duid(k))
            .collect();
        assert!(scopes.contains(&0) && scopes.contains(&1), "{scopes:?}");
    }

    #[test]
    fn halves_give_the_lower_half_the_odd_unit() {
        assert_eq!(halves(10, 19, 0), [Some((10, 14)), Some((15, 19))]);
        assert_eq!(halves(10, 20, 0), [Some((10, 15)), Some((16, 20))]);
        assert_eq!(halves(7, 7, 0), [Some((7, 7)), None]);
        assert_eq!(
            halves(0, u128::MAX, 0),
            [
                Some((0, u128::MAX / 2)),
                Some((u128::MAX / 2 + 1, u128::MAX))
            ]
        );
        // A /40 of /56s: two /41s; a /56 of /56s: one prefix, not split.
        let p40 = (
            0x2001_0db8_0100u128 << 88,
            (0x2001_0db8_0100u128 << 88) | (u128::MAX >> 40),
        );
        let [lo, hi] = halves(p40.0, p40.1, 128 - 56);
        assert_eq!(lo, Some((p40.0, p40.0 | (u128::MAX >> 41))));
        assert_eq!(hi, Some((p40.0 | (1 << 87), p40.1)));
        let p56 = (p40.0, p40.0 | (u128::MAX >> 56));
        assert_eq!(halves(p56.0, p56.1, 128 - 56), [Some(p56), None]);
        assert_eq!(halves(0, u128::MAX, 128), [Some((0, u128::MAX)), None]);
    }
}
