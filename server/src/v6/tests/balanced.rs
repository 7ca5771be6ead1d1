//! Load-balancing (`crate::scope`) for DHCPv6: address and delegation pools split by scope,
//! clients answered by the scope of their DUID, each from its own halves.

use std::net::Ipv6Addr;

use lessor_engine::v6::{EngineConfig, PoolId, PoolSpec};

use super::{Client, Fixture, NOW, a, addr_of, nas, pds, prefix_of};
use crate::config::Config;
use crate::proto::assert_no_reply;
use crate::scope::{self, BALANCED_HA};
use crate::v6::{Context, NoReply};

/// Address pools of 10, 11 and 1, delegation pools of 4 and 1 prefixes; exclusions and
/// reservations in each half.
const SPLIT: &str = r#"
v6:
  subnets:
    - subnet: "2001:db8:1::/64"
      pools: ["2001:db8:1::10-2001:db8:1::19", "2001:db8:1::30-2001:db8:1::3a", "2001:db8:1::50-2001:db8:1::50"]
      excluded: ["2001:db8:1::12", "2001:db8:1::17"]
      pd_pools:
        - { prefix: "2001:db8:100::/54", delegated_len: 56, excluded: ["2001:db8:100:100::/56"] }
        - { prefix: "2001:db8:200::/56", delegated_len: 56 }
      reservations:
        - { duid: "00:03:00:01:02:00:00:00:01:01", address: "2001:db8:1::13" }
        - { duid: "00:03:00:01:02:00:00:00:01:02", address: "2001:db8:1::36", prefix: "2001:db8:100:300::/56" }
"#;

/// A shared network (the relay's link-address is on its first subnet) of two subnets, each
/// with 128 addresses and 128 prefixes: 64 of each per scope and subnet.
const WIDE: &str = r#"
v6:
  shared_networks:
    - name: campus
      subnets:
        - subnet: "2001:db8:1::/64"
          pools: ["2001:db8:1::100-2001:db8:1::17f"]
          pd_pools: [ { prefix: "2001:db8:100::/49", delegated_len: 56 } ]
        - subnet: "2001:db8:2::/64"
          pools: ["2001:db8:2::100-2001:db8:2::17f"]
          pd_pools: [ { prefix: "2001:db8:200::/49", delegated_len: 56 } ]
"#;

fn context(yaml: &str) -> (Context, EngineConfig) {
    let config = Config::from_yaml_str(yaml).unwrap();
    let ctx = Context::new(&config, &[0, 1], &[], Default::default());
    let e = ctx.engine_config(1);
    (ctx, e)
}

/// An engine pool as text: `first-last [excluded]` or `prefix/len [excluded]`.
fn show(p: &PoolSpec) -> String {
    match p {
        PoolSpec::Na {
            first,
            last,
            excluded,
        } => format!("{first}-{last} {excluded:?}"),
        PoolSpec::Pd {
            prefix,
            prefix_len,
            delegated_len,
            excluded,
        } => format!("{prefix}/{prefix_len}:{delegated_len} {excluded:?}"),
    }
}

#[test]
fn address_and_delegation_pools_split_in_place() {
    let (ctx, e) = context(&format!("{SPLIT}{BALANCED_HA}"));
    assert!(ctx.balanced());
    let pools: Vec<String> = e.pools.iter().map(show).collect();
    assert_eq!(
        pools,
        [
            "2001:db8:1::10-2001:db8:1::14 [2001:db8:1::12, 2001:db8:1::13]",
            "2001:db8:1::15-2001:db8:1::19 [2001:db8:1::17]",
            "2001:db8:1::30-2001:db8:1::35 []",
            "2001:db8:1::36-2001:db8:1::3a [2001:db8:1::36]",
            "2001:db8:1::50-2001:db8:1::50 []",
            "2001:db8:100::/55:56 [(2001:db8:100:100::, 56)]",
            "2001:db8:100:200::/55:56 [(2001:db8:100:300::, 56)]",
            "2001:db8:200::/56:56 []",
        ]
    );
    let ids = |v: &[u32]| vec![v.iter().map(|&i| PoolId(i)).collect::<Vec<_>>()];
    assert_eq!(ctx.t.na_pools[..2], [ids(&[0, 2, 4]), ids(&[1, 3])]);
    assert_eq!(ctx.t.pd_pools[..2], [ids(&[5, 7]), ids(&[6])]);
    assert_eq!(ctx.t.subnet_pd_pools[..2], [ids(&[5, 7]), ids(&[6])]);
    assert_eq!(ctx.t.pd_pools[3], ids(&[6, 5, 7]), "scope 1 waiting");

    let edges: [(&str, u8, Option<usize>); 9] = [
        ("2001:db8:1::f", 128, None),
        ("2001:db8:1::14", 128, Some(0)),
        ("2001:db8:1::15", 128, Some(1)),
        ("2001:db8:1::3a", 128, Some(1)),
        ("2001:db8:1::50", 128, Some(0)),
        ("2001:db8:100:100::", 56, Some(0)),
        ("2001:db8:100:200::", 56, Some(1)),
        ("2001:db8:200::", 56, Some(0)),
        // A prefix's address is no address of an address pool.
        ("2001:db8:100:200::", 128, None),
    ];
    let got: Vec<_> = (edges.iter())
        .map(|&(x, len, _)| (x, len, ctx.scope_of(a(x), len)))
        .collect();
    assert_eq!(got, edges);
}

#[test]
fn without_load_balancing_the_pools_stay_whole() {
    let (ctx, e) = context(SPLIT);
    let pd = "2001:db8:100::/54:56 [(2001:db8:100:100::, 56), (2001:db8:100:300::, 56)]";
    assert_eq!(
        (ctx.balanced(), e.pools.len(), show(&e.pools[3])),
        (false, 5, pd.into())
    );
    assert_eq!(ctx.t.pd_pools[0], ctx.t.pd_pools[1]);
    assert_eq!(ctx.scope_of(a("2001:db8:1::15"), 128), None);
}

fn wide(scopes: u8) -> Fixture {
    let mut f = Fixture::with_csv(&format!("{WIDE}{BALANCED_HA}"), "id,address,prefix\n");
    f.scopes = scopes;
    f
}

/// A client with one IA_NA and one IA_PD whose DUID ends in `n`.
fn client(n: u16) -> Client {
    let [hi, lo] = n.to_be_bytes();
    Client {
        duid: vec![0, 3, 0, 1, 2, 0, 0, 1, hi, lo],
        ..Client::new(0).pd(&[1])
    }
}

fn client_of(scope: usize) -> Client {
    (0..)
        .map(client)
        .find(|c| scope::of_duid(&c.duid) == scope)
        .unwrap()
}

/// The address and prefix a REPLY gives.
fn granted(rep: &dhcproto::v6::Message) -> (Ipv6Addr, (Ipv6Addr, u8)) {
    let na = addr_of(nas(rep)[0]).expect("an address").0;
    let (p, len, ..) = prefix_of(pds(rep)[0]).expect("a prefix");
    (na, (p, len))
}

#[test]
fn a_client_of_the_partners_scope_gets_no_reply_and_touches_nothing() {
    let mut f = wide(0b01);
    let theirs = client_of(1);
    let (o, _) = f.relayed(&theirs.solicit(), NOW);
    assert_no_reply(o, NoReply::HaPartnerScope);
    assert_eq!(NoReply::HaPartnerScope.label(), "ha_partner_scope");
    let stats = f.engine.stats();
    assert!(stats.iter().all(|s| s.offered + s.bound == 0), "{stats:?}");
    assert!(f.events.is_empty());

    let rep = f.lease(&client_of(0));
    let (na, (p, len)) = granted(&rep.msg);
    assert_eq!(f.ctx.scope_of(na, 128), Some(0), "{na}");
    assert_eq!(f.ctx.scope_of(p, len), Some(0), "{p}/{len}");
}

#[test]
fn serving_both_scopes_each_client_stays_in_its_own_halves() {
    let mut f = wide(scope::ALL);
    let mut seen = std::collections::BTreeSet::new();
    let mut per_subnet = [0; 2];
    for n in 0..200 {
        let c = client(n);
        let s = scope::of_duid(&c.duid);
        let (na, (p, len)) = granted(&f.lease(&c).msg);
        assert_eq!(
            f.ctx.scope_of(na, 128),
            Some(s),
            "{na} for a client of scope {s}"
        );
        assert_eq!(
            f.ctx.scope_of(p, len),
            Some(s),
            "{p}/{len} for a client of scope {s}"
        );
        assert!(
            seen.insert(na) && seen.insert(p),
            "{na} or {p} handed out twice"
        );
        per_subnet[usize::from(na.segments()[2] == 2)] += 1;
    }
    // ~100 clients per scope, 64 addresses per scope in each subnet: both subnets serve.
    assert!(per_subnet.iter().all(|&n| n > 0), "{per_subnet:?}");
}
