//! Restores `N` synthetic leases into a fresh engine and prints how long it took and the
//! resident memory the engine gained per live lease (from `/proc/self/status`).
//!
//! ```text
//! cargo run --release -p lessor-engine --example restore_rss -- N [bulk|single] [SHARDS]
//! ```
//!
//! The leases look like the ones `lessor-perf synth` writes: distinct MACs spread over a /8,
//! 30% of the clients with a client identifier (htype + MAC), 70% with a host name, all
//! Bound. `bulk` (the default) goes through [`Engine::restorer`], `single` through
//! [`Engine::restore`]. This one uses the system allocator (glibc); `restore_rss_mimalloc`
//! is the same with mimalloc, the server's allocator.
//!
//! glibc keeps freed memory resident once its mmap threshold has grown (a freed buffer of up
//! to 32 MiB raises it): the restorer's temporary buffers then stay in RSS although the
//! engine no longer uses them. `MALLOC_MMAP_THRESHOLD_=131072` pins the threshold and shows
//! what the engine keeps.

use std::hint::black_box;
use std::net::Ipv4Addr;
use std::time::Instant;

use lessor_engine::LeaseState;
use lessor_engine::v4::{ClientKey, Engine, EngineConfig, HostName, HwAddr, Lease, PoolSpec};

const FIRST: u32 = 0x0a00_0001;
const HOSTS: u64 = (1 << 24) - 2;
const NOW: u64 = 1_800_000_000;
const LEASE_TIME: u64 = 86_400;

/// splitmix64, as `lessor-perf synth` uses it.
fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

fn mac(i: u64) -> [u8; 6] {
    let low = (i.wrapping_mul(0x9e37_79b1) & 0xff_ffff) as u32;
    let [_, a, b, c] = low.to_be_bytes();
    let vendor = (i >> 24) as u8;
    [0xf0, 0x18, vendor, a, b, c]
}

fn hostname(h: u64) -> Option<HostName> {
    let r = h >> 8;
    let name = match h % 10 {
        0 | 1 => format!("DESKTOP-{:07X}", r & 0xfff_ffff),
        2 => format!("LAPTOP-{:08X}", r & 0xffff_ffff),
        3 => format!("android-{:016x}", mix(r)),
        4 => format!("Client{}s-iPhone", r % 12),
        5 => format!("Galaxy-S{}", 20 + r % 5),
        6 => format!("host-{}", r % 1_000_000),
        _ => return None,
    };
    Some(HostName::new(&name))
}

/// Lease `i` of `n`: addresses in a scrambled order over the whole /8.
fn lease(i: u64) -> Lease {
    let h = mix(i);
    let mac = mac(i);
    let client = if (h >> 40) % 10 < 3 {
        ClientKey::client_id(&[1, mac[0], mac[1], mac[2], mac[3], mac[4], mac[5]])
    } else {
        ClientKey::hardware(1, &mac)
    };
    // 10_368_889 is coprime with HOSTS: i -> i * m % HOSTS is a permutation.
    let off = (u128::from(i) * 10_368_889 % u128::from(HOSTS)) as u32;
    let starts = NOW - mix(i ^ 0x5555) % (LEASE_TIME / 2);
    Lease {
        address: Ipv4Addr::from(FIRST + off),
        pool: None,
        client,
        hw: HwAddr::new(1, &mac).unwrap(),
        hostname: hostname(h),
        state: LeaseState::Bound,
        starts,
        expires: starts + LEASE_TIME,
        version: i + 1,
    }
}

fn shard_of(i: u64, shards: usize) -> usize {
    (mix(u64::from_be_bytes({
        let m = mac(i);
        [0, 0, m[0], m[1], m[2], m[3], m[4], m[5]]
    })) % shards as u64) as usize
}

/// `VmRSS` and `VmHWM` in bytes.
fn rss() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status");
    let field = |name: &str| -> u64 {
        let line = status.lines().find(|l| l.starts_with(name)).expect(name);
        let kb: u64 = line[name.len()..]
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .expect("kB");
        kb * 1024
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// Runs the measurement (the `main` of both examples).
pub(crate) fn main() {
    let mut args = std::env::args().skip(1);
    let n: u64 = args
        .next()
        .map_or(1_000_000, |a| a.replace('_', "").parse().expect("N"));
    let mode = args.next().unwrap_or_else(|| "bulk".into());
    let shards: usize = args.next().map_or(2, |a| a.parse().expect("SHARDS"));
    assert!(n <= HOSTS, "at most {HOSTS} leases");

    let t = Instant::now();
    for i in 0..n {
        black_box(lease(i));
    }
    let generate = t.elapsed().as_secs_f64();

    let engine = Engine::new(EngineConfig {
        shards,
        pools: vec![PoolSpec {
            first: Ipv4Addr::from(FIRST),
            last: Ipv4Addr::from(FIRST + HOSTS as u32 - 1),
            excluded: vec![],
        }],
        offer_hold: 30,
        decline_probation: 3600,
    })
    .unwrap();
    let (before, _) = rss();
    let t = Instant::now();
    let mut refused = 0u64;
    match mode.as_str() {
        "single" => {
            for i in 0..n {
                refused += u64::from(engine.restore(shard_of(i, shards), lease(i)).is_err());
            }
        }
        "bulk" => {
            let mut restorer = engine.restorer(n as usize);
            for i in 0..n {
                refused += u64::from(restorer.add(shard_of(i, shards), lease(i)).is_err());
            }
            let adding = t.elapsed().as_secs_f64();
            let report = restorer.finish();
            assert!(report.bulk);
            eprintln!(
                "add: {adding:.2} s, finish: {:.2} s",
                t.elapsed().as_secs_f64() - adding
            );
        }
        other => panic!("mode {other}: bulk or single"),
    }
    let elapsed = t.elapsed().as_secs_f64();
    let (after, peak) = rss();
    // Allocators hand freed memory back lazily (mimalloc after a delay, on later calls).
    std::thread::sleep(std::time::Duration::from_secs(1));
    for i in 0..1000 {
        black_box(lease(i));
    }
    let (settled, _) = rss();
    let stats = engine.stats();
    assert_eq!(stats[0].bound + refused, n);
    println!(
        "{n} leases, {shards} shards, {mode}: {elapsed:.2} s ({:.0} ns/lease; making the \
         leases alone: {generate:.2} s), RSS +{:.1} B/lease (right after: +{:.1}, peak +{:.1})",
        elapsed * 1e9 / n as f64,
        settled.saturating_sub(before) as f64 / n as f64,
        after.saturating_sub(before) as f64 / n as f64,
        peak.saturating_sub(before) as f64 / n as f64,
    );
}
