//! Load-balancing (`crate::scope`): pools split by scope, and clients answered only in the
//! scopes served, each from its own half.

use std::net::Ipv4Addr;

use lessor_engine::v4::{EngineConfig, PoolId};

use super::{Fixture, NOW, Pkt, msg_type};
use crate::config::Config;
use crate::proto::{assert_no_reply, reply};
use crate::scope::{self, BALANCED_HA};
use crate::v4::{Context, NoReply};
use dhcproto::v4::MessageType;

/// A pool of 10, one of 11 and one of 1; exclusions and reservations in each half.
const SPLIT: &str = r#"
v4:
  subnets:
    - subnet: 10.0.0.0/24
      pools: [ "10.0.0.10-10.0.0.19", "10.0.0.30-10.0.0.40", "10.0.0.50-10.0.0.50" ]
      excluded: [ 10.0.0.12, 10.0.0.17 ]
      reservations:
        - { hw_address: "02:00:00:00:01:01", address: 10.0.0.13 }
        - { hw_address: "02:00:00:00:01:02", address: 10.0.0.36 }
"#;

/// 512 addresses behind a relay at 10.1.0.1: 10.1.0.10-10.1.1.9 is scope 0's half,
/// 10.1.1.10-10.1.2.9 scope 1's.
const WIDE: &str = r#"
v4:
  subnets:
    - subnet: 10.1.0.0/16
      relays: [ 10.1.0.1 ]
      pools: [ "10.1.0.10-10.1.2.9" ]
"#;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

fn context(yaml: &str) -> (Context, EngineConfig) {
    let ctx = Context::new(&Config::from_yaml_str(yaml).unwrap(), &[]);
    let e = ctx.engine_config(1);
    (ctx, e)
}

/// The engine pools as `(first, last, excluded)`.
fn pools(e: &EngineConfig) -> Vec<(Ipv4Addr, Ipv4Addr, Vec<Ipv4Addr>)> {
    (e.pools.iter())
        .map(|p| {
            let mut x = p.excluded.clone();
            x.sort();
            (p.first, p.last, x)
        })
        .collect()
}

#[test]
fn each_pool_splits_in_place_with_its_exclusions_and_reservations() {
    let (ctx, e) = context(&format!("{SPLIT}{BALANCED_HA}"));
    assert!(ctx.balanced());
    let want = [
        (
            "10.0.0.10",
            "10.0.0.14",
            vec![ip("10.0.0.12"), ip("10.0.0.13")],
        ),
        ("10.0.0.15", "10.0.0.19", vec![ip("10.0.0.17")]),
        // 11 addresses: the lower half takes the odd one.
        ("10.0.0.30", "10.0.0.35", vec![]),
        ("10.0.0.36", "10.0.0.40", vec![ip("10.0.0.36")]),
        // A pool of one is scope 0's alone.
        ("10.0.0.50", "10.0.0.50", vec![]),
    ]
    .map(|(f, l, x)| (ip(f), ip(l), x));
    assert_eq!(pools(&e), want);
    let p = |ids: &[u32]| vec![ids.iter().map(|&i| PoolId(i)).collect::<Vec<_>>()];
    assert_eq!(ctx.link_pools[..2], [p(&[0, 2, 4]), p(&[1, 3])]);
    // A scope whose pools wait goes on with the other's.
    assert_eq!(
        ctx.link_pools[2..],
        [p(&[0, 2, 4, 1, 3]), p(&[1, 3, 0, 2, 4])]
    );

    let edges = [
        ("10.0.0.9", None),
        ("10.0.0.10", Some(0)),
        ("10.0.0.14", Some(0)),
        ("10.0.0.15", Some(1)),
        ("10.0.0.19", Some(1)),
        ("10.0.0.20", None),
        ("10.0.0.35", Some(0)),
        ("10.0.0.36", Some(1)),
        ("10.0.0.40", Some(1)),
        ("10.0.0.50", Some(0)),
    ];
    for (a, want) in edges {
        assert_eq!(ctx.scope_of(ip(a)), want, "{a}");
    }
}

#[test]
fn without_load_balancing_nothing_splits() {
    let (ctx, e) = context(SPLIT);
    assert!(!ctx.balanced());
    assert_eq!(e.pools.len(), 3);
    assert_eq!(
        (e.pools[0].first, e.pools[0].last),
        (ip("10.0.0.10"), ip("10.0.0.19"))
    );
    let all = vec![vec![PoolId(0), PoolId(1), PoolId(2)]];
    assert_eq!(ctx.link_pools[..2], [all.clone(), all]);
    assert_eq!(ctx.scope_of(ip("10.0.0.15")), None);
}

/// A relayed client whose hardware address is `mac`.
fn client(mac: [u8; 6]) -> Pkt {
    let mut p = Pkt::relayed(0);
    p.chaddr = mac;
    p.giaddr = ip("10.1.0.1");
    p
}

/// The first client, counting up from `from`, whose scope is `scope`.
fn client_of(scope: usize, from: u16) -> Pkt {
    let mac = (from..)
        .map(|n| {
            let [hi, lo] = n.to_be_bytes();
            [2, 0, 0, 1, hi, lo]
        })
        .find(|mac| scope::of_v4(None, mac) == scope)
        .unwrap();
    client(mac)
}

fn engine_is_untouched(f: &Fixture) {
    let stats = f.engine.stats();
    assert!(stats.iter().all(|s| s.offered + s.bound == 0), "{stats:?}");
    assert!(f.events.is_empty());
}

#[test]
fn a_client_of_the_partners_scope_gets_no_reply_and_touches_nothing() {
    let mut f = Fixture::new(&format!("{WIDE}{BALANCED_HA}"));
    f.scopes = 0b01;
    let theirs = client_of(1, 0);
    let (o, _) = f.send(&theirs.clone().kind(1), NOW);
    assert_no_reply(o, NoReply::HaPartnerScope);
    assert_eq!(NoReply::HaPartnerScope.label(), "ha_partner_scope");
    let req = theirs
        .kind(3)
        .opt(50, &[10, 1, 1, 10])
        .opt(54, &super::SERVER.octets());
    let (o, _) = f.send(&req, NOW);
    assert_no_reply(o, NoReply::HaPartnerScope);
    engine_is_untouched(&f);

    let ours = client_of(0, 0);
    let got = f.dora(ours);
    assert!((ip("10.1.0.10")..=ip("10.1.1.9")).contains(&got), "{got}");
    assert_eq!(f.ctx.scope_of(got), Some(0));

    // Serving only the partner's scope, the same server ignores its own.
    f.scopes = 0b10;
    let (o, _) = f.send(&client_of(0, 0).kind(1), NOW);
    assert_no_reply(o, NoReply::HaPartnerScope);
}

#[test]
fn serving_both_scopes_each_client_stays_in_its_own_half() {
    let mut f = Fixture::new(&format!("{WIDE}{BALANCED_HA}"));
    let mut seen = std::collections::BTreeSet::new();
    let mut per_scope = [0; 2];
    for n in 0..200u16 {
        let [hi, lo] = n.to_be_bytes();
        let mac = [2, 0, 0, 2, hi, lo];
        let scope = scope::of_v4(None, &mac);
        let got = f.dora(client(mac));
        assert_eq!(
            f.ctx.scope_of(got),
            Some(scope),
            "{got} for a client of scope {scope}"
        );
        assert!(seen.insert(got), "{got} handed out twice");
        per_scope[scope] += 1;
    }
    assert!(per_scope.iter().all(|&n| n > 50), "{per_scope:?}");
}

#[test]
fn a_client_cannot_ask_its_way_into_the_other_half() {
    let mut f = Fixture::new(&format!("{WIDE}{BALANCED_HA}"));
    let c = client_of(0, 0);
    let other = ip("10.1.1.20");
    assert_eq!(f.ctx.scope_of(other), Some(1));
    let (_, offer) = f.send(&c.clone().kind(1).opt(50, &other.octets()), NOW);
    let offered = offer.expect("an offer").yiaddr();
    assert_eq!(f.ctx.scope_of(offered), Some(0), "{offered}");
    let req = c
        .kind(3)
        .opt(50, &other.octets())
        .opt(54, &super::SERVER.octets());
    let (o, nak) = f.send(&req, NOW);
    assert_eq!(reply(o).refused, Some("not_in_pool"));
    assert_eq!(msg_type(&nak.unwrap()), MessageType::Nak);
}
