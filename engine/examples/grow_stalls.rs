//! Binds `N` new clients in one shard and prints every offer + bind that took longer than
//! 1 ms, with the number of leases at that moment: the stalls a growing lease table causes
//! (a hash table or slab that doubles all at once holds the shard's lock while it copies).
//!
//! ```text
//! cargo run --release -p lessor-engine --example grow_stalls -- [N]
//! ```
//!
//! Uses mimalloc, the server's allocator. Prints the slow operations, then the total time
//! spent in them and the slowest one.

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lessor_engine::v4::{
    BindRequest, ClientKey, Engine, EngineConfig, HwAddr, LeaseInfo, OfferRequest, PoolId, PoolSpec,
};

#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() {
    let n: u64 = std::env::args()
        .nth(1)
        .map_or(2_000_000, |s| s.parse().expect("N must be a number"));
    let engine = Engine::new(EngineConfig {
        shards: 1,
        pools: vec![PoolSpec {
            first: Ipv4Addr::new(10, 0, 0, 1),
            last: Ipv4Addr::new(10, 255, 255, 254),
            excluded: vec![],
        }],
        offer_hold: 30,
        decline_probation: 3600,
    })
    .expect("engine");
    let pools = [PoolId(0)];
    let now = 1_800_000_000;
    let mut events = Vec::new();
    let (mut slow, mut slow_total, mut worst) = (0u64, Duration::ZERO, Duration::ZERO);
    let start = Instant::now();
    for i in 0..n {
        let [_, a, b, c, d, e] = (i | 0x0200_0000_0000).to_be_bytes()[2..8]
            .try_into()
            .map(|x: [u8; 6]| [0, x[1], x[2], x[3], x[4], x[5]])
            .unwrap_or([0; 6]);
        let mac = [0x02, a, b, c, d, e];
        let client = ClientKey::hardware(1, &mac);
        let info = LeaseInfo {
            hw: HwAddr::new(1, &mac).expect("mac"),
            hostname: None,
        };
        let t = Instant::now();
        let addr = engine
            .offer(
                0,
                &OfferRequest {
                    client: &client,
                    pools: &pools,
                    reserved: None,
                    requested: None,
                    info,
                },
                now,
            )
            .expect("offer");
        engine
            .bind(
                0,
                &BindRequest {
                    client: &client,
                    address: addr,
                    pools: &pools,
                    reserved: false,
                    grant: lessor_engine::v4::Grant {
                        lease_time: 3600,
                        info,
                    },
                },
                now,
                &mut events,
            )
            .expect("bind");
        let took = t.elapsed();
        events.clear();
        if took > Duration::from_millis(1) {
            slow += 1;
            slow_total += took;
            worst = worst.max(took);
            println!("lease {i}: {:.2} ms", took.as_secs_f64() * 1e3);
        }
    }
    println!(
        "{n} offer+bind in {:.2} s; {slow} took over 1 ms, {:.1} ms in all, slowest {:.2} ms",
        start.elapsed().as_secs_f64(),
        slow_total.as_secs_f64() * 1e3,
        worst.as_secs_f64() * 1e3
    );
}
