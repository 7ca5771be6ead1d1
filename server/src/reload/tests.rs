use std::net::Ipv4Addr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use lessor_engine::LeaseState;
use lessor_engine::v4::{
    BindError, BindRequest, ClientKey, Engine, HwAddr, LeaseInfo, OfferRequest, PoolId,
};

use super::{Orphans, Running, Swap, fixed_key_changed, impact, move_leases4, relayout};
use crate::config::{Assignments, Config};
use crate::v4;

fn config(pools: &str, extra: &str) -> Config {
    Config::from_yaml_str(&format!(
        "port: 6767\nstate_dir: /tmp/x\nv4:\n  lease_time: 60\n  subnets:\n    - subnet: 10.0.0.0/24\n      pools: [{pools}]\n{extra}"
    ))
    .unwrap()
}

fn engine(c: &Config) -> (v4::Context, Engine) {
    let ctx = v4::Context::new(c, &[]);
    let e = Engine::new(ctx.engine_config(2)).unwrap();
    (ctx, e)
}

fn mac(n: u8) -> (ClientKey, HwAddr) {
    let m = [2, 0, 0, 0, 0, n];
    (ClientKey::hardware(1, &m), HwAddr::new(1, &m).unwrap())
}

fn bind(e: &Engine, n: u8, addr: [u8; 4], pools: &[PoolId], now: u64) -> Result<(), BindError> {
    let (client, hw) = mac(n);
    let req = BindRequest {
        client: &client,
        address: Ipv4Addr::from(addr),
        pools,
        reserved: false,
        grant: lessor_engine::v4::Grant {
            lease_time: 60,
            info: LeaseInfo { hw, hostname: None },
        },
    };
    e.bind(0, &req, now, &mut Vec::new()).map(|_| ())
}

#[test]
fn a_key_that_needs_a_restart_is_named() {
    let c = config("\"10.0.0.10-10.0.0.20\"", "");
    let mut d = c.clone();
    d.port = 6768;
    assert_eq!(fixed_key_changed(&c, &d), Some("port"));
    let mut d = c.clone();
    d.state_dir = "/tmp/y".into();
    assert_eq!(fixed_key_changed(&c, &d), Some("state_dir"));
    let mut d = c.clone();
    d.journal.max_backlog += 1;
    assert_eq!(fixed_key_changed(&c, &d), Some("journal.max_backlog"));
    let mut d = c.clone();
    d.control = None;
    assert_eq!(fixed_key_changed(&c, &d), Some("control (on or off)"));
    let d = config("\"10.0.0.10-10.0.0.30\"", "");
    assert_eq!(fixed_key_changed(&c, &d), None);
}

#[test]
fn a_shrunk_pool_orphans_the_leases_outside_it_and_keeps_them() {
    let now = 1_000;
    let old = config("\"10.0.0.10-10.0.0.20\"", "");
    let (_, e) = engine(&old);
    bind(&e, 1, [10, 0, 0, 12], &[PoolId(0)], now).unwrap();
    bind(&e, 2, [10, 0, 0, 18], &[PoolId(0)], now).unwrap();

    let new = config("\"10.0.0.10-10.0.0.15\"", "");
    let report = impact(
        Some(&old),
        &new,
        &Assignments::default(),
        (&e.leases(), &[]),
        0,
    );
    assert_eq!(report.orphans(), 1);
    assert_eq!(report.orphaned.get("10.0.0.0/24"), Some(&1));

    let (_, fresh) = engine(&new);
    let mut seen = 0;
    move_leases4(&e, &fresh, |_| seen += 1);
    assert_eq!(seen, 2);
    let leases = fresh.leases();
    assert_eq!(leases.len(), 2, "both leases carried over: {leases:?}");
    let orphan = leases
        .iter()
        .find(|l| l.address == Ipv4Addr::new(10, 0, 0, 18));
    let orphan = orphan.expect("the lease outside the pool is kept");
    assert!(Orphans::new(&new, &Assignments::default()).v4(orphan));
    assert_eq!(orphan.pool, None);
    assert!(fresh.max_version() >= e.max_version());

    // Never offered again: six clients take the six pool addresses, a seventh gets none.
    for n in 10..17u8 {
        let (client, hw) = mac(n);
        let got = fresh.offer(
            0,
            &OfferRequest {
                client: &client,
                pools: &[PoolId(0)],
                reserved: None,
                requested: Some(Ipv4Addr::new(10, 0, 0, 18)),
                info: LeaseInfo { hw, hostname: None },
            },
            now,
        );
        assert_ne!(got.ok(), Some(Ipv4Addr::new(10, 0, 0, 18)));
    }
    // Not extended: the renewal is refused.
    assert_eq!(
        bind(&fresh, 2, [10, 0, 0, 18], &[PoolId(0)], now + 1),
        Err(BindError::NotInPool)
    );
    // It ends at its expiry.
    fresh.reclaim(0, now + 120, 100, &mut Vec::new());
    fresh.reclaim(1, now + 120, 100, &mut Vec::new());
    let after = fresh.leases();
    assert!(
        after
            .iter()
            .all(|l| l.address != Ipv4Addr::new(10, 0, 0, 18) || l.state != LeaseState::Bound),
        "{after:?}"
    );
}

#[test]
fn added_and_removed_subnets_are_reported_by_cidr() {
    let old = config("\"10.0.0.10-10.0.0.20\"", "");
    let new = Config::from_yaml_str(
        "port: 6767\nstate_dir: /tmp/x\nv4:\n  subnets:\n    - subnet: 10.1.0.0/24\n      pools: [\"10.1.0.10-10.1.0.20\"]\n",
    )
    .unwrap();
    let r = impact(Some(&old), &new, &Assignments::default(), (&[], &[]), 0);
    assert_eq!(r.added, ["10.1.0.0/24"]);
    assert_eq!(r.removed, ["10.0.0.0/24"]);
}

#[test]
fn a_reservation_on_another_clients_lease_is_reported() {
    let old = config("\"10.0.0.10-10.0.0.20\"", "");
    let (_, e) = engine(&old);
    bind(&e, 1, [10, 0, 0, 12], &[PoolId(0)], 1_000).unwrap();
    let new = config(
        "\"10.0.0.10-10.0.0.20\"",
        "      reservations:\n        - hw_address: 02:00:00:00:00:09\n          address: 10.0.0.12\n",
    );
    let r = impact(
        Some(&old),
        &new,
        &Assignments::default(),
        (&e.leases(), &[]),
        0,
    );
    assert_eq!(r.held.len(), 1, "{r:?}");
    assert!(r.held[0].starts_with("10.0.0.12"));
    // The holder's own reservation is not reported.
    let own = config(
        "\"10.0.0.10-10.0.0.20\"",
        "      reservations:\n        - hw_address: 02:00:00:00:00:01\n          address: 10.0.0.12\n",
    );
    let r = impact(
        Some(&old),
        &own,
        &Assignments::default(),
        (&e.leases(), &[]),
        0,
    );
    assert!(r.held.is_empty(), "{r:?}");
}

#[test]
fn a_publish_settles_once_every_worker_took_it() {
    let c = config("\"10.0.0.10-10.0.0.20\"", "");
    let (ctx, e) = engine(&c);
    let (ctx, e) = (Arc::new(ctx), Arc::new(e));
    let running = || Running {
        config: Arc::new(c.clone()),
        v4: Arc::clone(&ctx),
        engine: Arc::clone(&e),
        v6: None,
    };
    let swap = Swap::new(running(), 2);
    let g = swap.publish(running());
    swap.took(0, g);
    let late = {
        let swap = Arc::clone(&swap);
        thread::spawn(move || {
            thread::sleep(std::time::Duration::from_millis(50));
            swap.took(1, g);
        })
    };
    assert!(swap.settle(g), "both workers took generation {g}");
    late.join().unwrap();
    // A worker that never takes the next one: settle gives up.
    let next = swap.publish(running());
    swap.took(0, next);
    assert!(!swap.settle(next));
}

#[test]
fn the_gate_holds_every_worker_until_it_opens() {
    let c = config("\"10.0.0.10-10.0.0.20\"", "");
    let (ctx, e) = engine(&c);
    let swap = Swap::new(
        Running {
            config: Arc::new(c),
            v4: Arc::new(ctx),
            engine: Arc::new(e),
            v6: None,
        },
        0,
    );
    let stop = Arc::new(AtomicBool::new(false));
    let inside = Arc::new(AtomicBool::new(false));
    let workers: Vec<_> = (0..2)
        .map(|_| {
            let (swap, stop, inside) = (Arc::clone(&swap), Arc::clone(&stop), Arc::clone(&inside));
            thread::spawn(move || {
                let mut seen = u64::MAX;
                while !stop.load(Ordering::Relaxed) {
                    if swap.generation() != seen {
                        swap.pass(|| {});
                        seen = swap.generation();
                    }
                    // Work between batch boundaries: must never overlap the pause.
                    inside.store(true, Ordering::SeqCst);
                    thread::yield_now();
                    inside.store(false, Ordering::SeqCst);
                }
            })
        })
        .collect();
    assert!(swap.pause(2), "both workers reach the gate");
    for _ in 0..1000 {
        assert!(!inside.load(Ordering::SeqCst), "a worker ran while paused");
    }
    swap.resume();
    stop.store(true, Ordering::Relaxed);
    for w in workers {
        w.join().unwrap();
    }
    // With a worker missing, the pause gives up and opens the gate again.
    assert!(!swap.pause(1));
}

fn config6(pool: &str) -> Config {
    Config::from_yaml_str(&format!(
        "port: 6767\nstate_dir: /tmp/x\nv6:\n  subnets:\n    - subnet: \"fd00:1::/64\"\n      pools: [\"{pool}\"]\n"
    ))
    .unwrap()
}

#[test]
fn a_shrunk_v6_pool_keeps_its_orphans_and_counts_them() {
    use lessor_engine::v6::{Engine as Engine6, IaKey, IaKind, Lease as Lease6, Resource};

    use super::move_leases6;
    use crate::v6;

    let build = |c: &Config| {
        let ctx = v6::Context::new(c, &[0, 3, 0, 1, 2, 0, 0, 0, 0, 1], &[], Arc::default());
        Engine6::new(ctx.engine_config(2)).unwrap()
    };
    let old = config6("fd00:1::10-fd00:1::20");
    let e = build(&old);
    let lease = |last: u16, n: u8| Lease6 {
        resource: Resource::address(std::net::Ipv6Addr::new(0xfd00, 1, 0, 0, 0, 0, 0, last)),
        pool: None,
        client: IaKey::new(&[0, 3, 0, 1, 2, 0, 0, 0, 0, n], 1, IaKind::Na),
        state: LeaseState::Bound,
        starts: 1_000,
        preferred: 30,
        expires: 2_000,
        version: u64::from(n),
    };
    for (last, n) in [(0x12, 1), (0x1a, 2)] {
        let l = lease(last, n);
        e.restore(e.owner(l.client.duid()), l).unwrap();
    }
    let new = config6("fd00:1::10-fd00:1::15");
    let fresh = build(&new);
    let orphans = Orphans::new(&new, &Assignments::default());
    let mut counted = 0;
    move_leases6(&e, &fresh, |l| counted += u32::from(orphans.v6(l)));
    assert_eq!(counted, 1);
    let moved = fresh.leases();
    assert_eq!(moved.len(), 2, "{moved:?}");
    let orphan = moved.iter().find(|l| l.resource.addr.segments()[7] == 0x1a);
    assert_eq!(
        orphan.map(|l| l.pool),
        Some(None),
        "kept outside every pool"
    );
    let r = impact(
        Some(&old),
        &new,
        &Assignments::default(),
        (&[], &e.leases()),
        1_500,
    );
    assert_eq!(r.orphaned.get("fd00:1::/64"), Some(&1), "{r:?}");
    // Past its expiry it is not a lease any more: nothing to report.
    let r = impact(
        Some(&old),
        &new,
        &Assignments::default(),
        (&[], &e.leases()),
        2_000,
    );
    assert!(r.orphaned.is_empty(), "{r:?}");
}

#[test]
fn a_reservation_inside_a_pool_is_an_exclusion_change_unless_the_engine_is_full() {
    let plain = config("\"10.0.0.10-10.0.0.50\"", "");
    let reserved = config(
        "\"10.0.0.10-10.0.0.50\"",
        "      reservations:\n        - { hw_address: \"02:00:00:00:00:09\", address: 10.0.0.20 }\n",
    );
    let (old, new) = (
        v4::Context::new(&plain, &[]).engine_config(2),
        v4::Context::new(&reserved, &[]).engine_config(2),
    );
    let build = |layout| Engine::new(layout).map_err(|e| e.to_string());
    let changes = lessor_engine::v4::EngineConfig::exclusion_changes;
    let (fresh, c) = relayout(&old, new.clone(), 512, changes, build).unwrap();
    assert!(fresh.is_none(), "no new engine");
    assert_eq!(c.reserve, [Ipv4Addr::new(10, 0, 0, 20)]);
    let (fresh, c) = relayout(&new, old.clone(), 512, changes, build).unwrap();
    assert!(fresh.is_none());
    assert_eq!(c.unreserve, [Ipv4Addr::new(10, 0, 0, 20)]);
    // No room left in the running engine, or a pool that changes: a new engine.
    let (fresh, c) = relayout(&old, new, 0, changes, build).unwrap();
    assert!(fresh.is_some() && c.is_empty());
    let grown = config("\"10.0.0.10-10.0.0.60\"", "");
    let grown = v4::Context::new(&grown, &[]).engine_config(2);
    assert!(
        relayout(&old, grown, 512, changes, build)
            .unwrap()
            .0
            .is_some()
    );
}
