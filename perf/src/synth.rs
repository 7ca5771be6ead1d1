//! Synthetic leases: distinct addresses, MACs and client keys, some with host names.

use std::net::Ipv4Addr;
use std::str::FromStr;

use anyhow::{Context, bail, ensure};
use lessor_engine::v4::ClientKey;
use lessor_server::lease_record::{LeaseKey, LeaseRecord};

/// An IPv4 subnet `a.b.c.d/len`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Subnet {
    net: u32,
    len: u8,
}

impl FromStr for Subnet {
    type Err = anyhow::Error;

    fn from_str(s: &str) -> anyhow::Result<Self> {
        let (addr, len) = s.split_once('/').context("expected a.b.c.d/len")?;
        let addr: Ipv4Addr = addr.parse().context("bad address")?;
        let len: u8 = len.parse().context("bad prefix length")?;
        ensure!(len <= 30, "a /{len} has no room for leases");
        let mask = u32::MAX << (32 - u32::from(len));
        Ok(Subnet {
            net: u32::from(addr) & mask,
            len,
        })
    }
}

impl Subnet {
    /// The first host address and how many hosts there are (network and broadcast excluded,
    /// as a pool `first+1 - last-1` covering the subnet has them).
    fn hosts(self) -> (u32, u64) {
        (self.net + 1, (1u64 << (32 - u32::from(self.len))) - 2)
    }
}

/// Vendor prefixes (Apple, Samsung, Intel, Dell, Raspberry Pi, HP, Cisco, Espressif): every
/// client gets one, the low three bytes tell clients of one vendor apart.
const OUIS: [[u8; 3]; 8] = [
    [0xf0, 0x18, 0x98],
    [0x5c, 0x0a, 0x5b],
    [0x3c, 0xa9, 0xf4],
    [0xf8, 0xbc, 0x12],
    [0xb8, 0x27, 0xeb],
    [0x3c, 0xd9, 0x2b],
    [0x00, 0x1b, 0x54],
    [0x24, 0x0a, 0xc4],
];

const NAMES: [&str; 12] = [
    "Anna", "Ben", "Chloe", "David", "Emma", "Felix", "Grace", "Hugo", "Iris", "Jonas", "Kate",
    "Liam",
];

/// splitmix64: a cheap, well-mixed hash of the lease number for every "random" choice, so a
/// journal is the same every time it is generated.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn gcd(mut a: u64, mut b: u64) -> u64 {
    while b != 0 {
        (a, b) = (b, a % b);
    }
    a
}

/// A multiplier coprime with `n` near `n * 0.618`, for the permutation `i -> (i * m + c) % n`
/// of `0..n`: consecutive numbers land far apart, and nothing has to be remembered.
fn coprime_multiplier(n: u64) -> u64 {
    if n <= 2 {
        return 1;
    }
    let mut m = (n as f64 * 0.618_033_988_7) as u64 | 1;
    while gcd(m, n) != 1 {
        m += 2;
    }
    m
}

/// Host name templates in the proportions a campus network shows them; about 30% of clients
/// (printers, IoT, many Linux hosts) send none.
fn hostname(h: u64) -> Option<String> {
    const B36: &[u8; 36] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ";
    let b36 = |mut x: u64, n: usize| -> String {
        (0..n)
            .map(|_| {
                let c = B36[(x % 36) as usize] as char;
                x /= 36;
                c
            })
            .collect()
    };
    let r = h >> 8;
    match h % 10 {
        0 | 1 => Some(format!("DESKTOP-{}", b36(r, 7))),
        2 => Some(format!("LAPTOP-{}", b36(r, 8))),
        3 => Some(format!("android-{:016x}", mix(r))),
        4 => Some(format!("{}s-iPhone", NAMES[(r % 12) as usize])),
        5 => Some(format!("Galaxy-S{}", 20 + r % 5)),
        6 => Some(format!("host-{}", r % 1_000_000)),
        _ => None,
    }
}

/// Lease number `i` -> a bound lease of its own client, deterministically.
#[derive(Clone, Debug)]
pub(crate) struct Synth {
    first: u32,
    hosts: u64,
    leases: u64,
    /// Address permutation `i -> (i * mul + add) % hosts`; `mul = 1, add = 0`: in order.
    mul: u64,
    add: u64,
    /// Which leases get renewed: `k -> (k * renew_mul) % leases`.
    renew_mul: u64,
    now: u64,
    lease_time: u64,
}

impl Synth {
    /// `leases` leases in `subnet`, at addresses in order from the first host or (`shuffled`)
    /// spread over the whole subnet in a scrambled order.
    pub(crate) fn new(
        subnet: Subnet,
        leases: u64,
        shuffled: bool,
        now: u64,
        lease_time: u64,
    ) -> anyhow::Result<Self> {
        let (first, hosts) = subnet.hosts();
        if leases > hosts {
            bail!("{leases} leases do not fit in {hosts} host addresses");
        }
        ensure!(
            leases <= (OUIS.len() as u64) << 24,
            "at most {} distinct MACs",
            (OUIS.len() as u64) << 24
        );
        let (mul, add) = if shuffled {
            (coprime_multiplier(hosts), hosts / 3)
        } else {
            (1, 0)
        };
        Ok(Synth {
            first,
            hosts,
            leases,
            mul,
            add,
            renew_mul: coprime_multiplier(leases),
            now,
            lease_time,
        })
    }

    fn address(&self, i: u64) -> u32 {
        let off =
            (u128::from(i) * u128::from(self.mul) + u128::from(self.add)) % u128::from(self.hosts);
        self.first + off as u32
    }

    /// Distinct for `i < 8 * 2^24`: the vendor is `i % 8`, the low 24 bits a bijection of
    /// `i / 8`.
    fn mac(i: u64) -> [u8; 6] {
        let oui = OUIS[(i % OUIS.len() as u64) as usize];
        let low = ((i / OUIS.len() as u64).wrapping_mul(0x9e37_79b1) & 0xff_ffff) as u32;
        let [_, a, b, c] = low.to_be_bytes();
        [oui[0], oui[1], oui[2], a, b, c]
    }

    fn record(&self, i: u64, version: u64, event: u8, starts: u64) -> LeaseRecord {
        let h = mix(i);
        let mac = Self::mac(i);
        // About 30% of clients (Windows, mostly) send option 61 = htype + MAC.
        let client = if (h >> 40) % 10 < 3 {
            ClientKey::client_id(&[1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
        } else {
            ClientKey::hardware(1, &mac)
        };
        LeaseRecord {
            version,
            event,
            key: LeaseKey::V4(self.address(i)),
            client: client.as_bytes().to_vec(),
            htype: 1,
            hw: mac.to_vec(),
            hostname: hostname(h),
            state: 1,
            starts,
            expires: starts + self.lease_time,
        }
    }

    /// The binding of lease `i` (version `i + 1`), in the middle of its term.
    pub(crate) fn bound(&self, i: u64) -> LeaseRecord {
        let age = mix(i ^ 0x5555) % (self.lease_time / 2).max(1);
        self.record(i, i + 1, 0, self.now - age)
    }

    /// The `k`-th renewal (`k < leases`): a later record of a distinct lease, superseding its
    /// binding.
    pub(crate) fn renewal(&self, k: u64) -> LeaseRecord {
        let i = (u128::from(k) * u128::from(self.renew_mul) % u128::from(self.leases)) as u64;
        let age = mix(i ^ 0x5555) % (self.lease_time / 2).max(1);
        let starts = self.now - age + self.lease_time / 2;
        self.record(i, self.leases + 1 + k, 1, starts)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;

    #[test]
    fn addresses_macs_and_renewals_are_distinct() {
        for shuffled in [false, true] {
            let s = Synth::new(
                "10.0.0.0/20".parse().unwrap(),
                4000,
                shuffled,
                2_000_000_000,
                3600,
            )
            .unwrap();
            let mut addrs = HashSet::new();
            let mut macs = HashSet::new();
            for i in 0..4000 {
                let r = s.bound(i);
                assert!(addrs.insert(r.key), "address repeats at {i}");
                assert!(macs.insert(r.hw.clone()), "MAC repeats at {i}");
                assert!(r.ipv4() > Ipv4Addr::new(10, 0, 0, 0));
                assert!(r.ipv4() < Ipv4Addr::new(10, 0, 15, 255));
                assert!(r.to_lease().is_some());
            }
            let renewed: HashSet<_> = (0..4000).map(|k| s.renewal(k).key).collect();
            assert_eq!(renewed, addrs);
        }
    }

    #[test]
    fn subnets_parse() {
        let s: Subnet = "10.1.2.3/8".parse().unwrap();
        assert_eq!(s.hosts(), (0x0a00_0001, (1 << 24) - 2));
        assert!("10.0.0.0/31".parse::<Subnet>().is_err());
        assert!("10.0.0.0".parse::<Subnet>().is_err());
    }
}
