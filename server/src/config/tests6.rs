//! Tests of the `v6:` section: documents in, typed config or exact error out.

use std::net::Ipv6Addr;

use super::tests::{assert_effective, roundtrip, yaml};
use super::*;

/// The document from issue 5, verbatim.
const ISSUE_V6_YAML: &str = r#"
v6:
  subnets:
    - subnet: fd00:231::/64
      pools: [ "fd00:231::1000-fd00:231::1fff" ]
      pd_pools: [ { prefix: "fd00:2310::/48", delegated_len: 56 } ]
      options: { dns_servers: [ "fd00:231::1" ] }
      reservations:
        - { duid: "00:03:00:01:02:23:10:00:00:60", address: "fd00:231::60" }
        - { remote_id: "3561:CUST1", prefix: "fd00:2311:100::/56" }
  assignments_file: assignments.csv
"#;

fn a6(s: &str) -> Ipv6Addr {
    s.parse().unwrap()
}

#[test]
fn issue_example_loads_as_is() {
    let c = yaml(ISSUE_V6_YAML);
    assert!(c.v4.subnets.is_empty());
    let v = &c.v6;
    assert!(v.enabled());
    assert_eq!(v.port, 547);
    assert_eq!((v.preferred_lifetime, v.valid_lifetime), (3600, 7200));
    assert_eq!((v.renew_time, v.rebind_time), (None, None));
    assert!(!v.rapid_commit);
    assert_eq!(v.preference, None);
    assert_eq!((v.offer_hold, v.decline_probation), (30, 86400));
    assert_eq!(v.assignments_file, Some(PathBuf::from("assignments.csv")));
    let [s] = v.subnets.as_slice() else {
        panic!("{:?}", v.subnets)
    };
    assert_eq!(s.id, 1);
    assert_eq!(s.net, "fd00:231::/64".parse().unwrap());
    assert_eq!(
        s.pools,
        [Pool6 {
            first: a6("fd00:231::1000"),
            last: a6("fd00:231::1fff")
        }]
    );
    assert_eq!(
        s.pd_pools,
        [PdPool6 {
            prefix: "fd00:2310::/48".parse().unwrap(),
            delegated_len: 56,
            excluded_prefix: None,
            excluded: vec![],
        }]
    );
    // T1/T2 default to 50% / 80% of the preferred lifetime (RFC 8415 §21.4).
    assert_eq!((s.renew_time, s.rebind_time), (1800, 2880));
    assert_eq!(s.options.get(23), Some(&a6("fd00:231::1").octets()[..]));
    assert_eq!(
        s.reservations[0].key,
        V6Identifier::Duid(vec![0, 3, 0, 1, 2, 0x23, 0x10, 0, 0, 0x60])
    );
    assert_eq!(s.reservations[0].address, Some(a6("fd00:231::60")));
    assert_eq!(s.reservations[0].prefix, None);
    assert_eq!(
        s.reservations[1].key,
        V6Identifier::RemoteId {
            enterprise: 3561,
            id: b"CUST1".to_vec()
        }
    );
    assert_eq!(
        s.reservations[1].key.wire_bytes(),
        [0, 0, 0x0d, 0xe9, b'C', b'U', b'S', b'T', b'1']
    );
    assert_eq!(
        s.reservations[1].prefix,
        Some("fd00:2311:100::/56".parse().unwrap())
    );
    roundtrip(&c);
}

#[test]
fn v4_only_configs_have_v6_off_and_unchanged_output() {
    let c = yaml("v4: { subnets: [ { subnet: 10.0.0.0/24 } ] }");
    assert!(!c.v6.enabled());
    assert_eq!(c.v6, V6Config::default());
    assert!(!c.effective_yaml().contains("v6"));
    assert_eq!(yaml("v6: {}").v6, V6Config::default());
    assert_eq!(yaml("v6: { subnets: [] }"), yaml(""));
}

#[test]
fn full_example_v6_section() {
    let (_key, full) = examples::full_example();
    let c = yaml(&full);
    let v = &c.v6;
    assert_eq!((v.preferred_lifetime, v.valid_lifetime), (3600, 7200));
    assert_eq!((v.renew_time, v.rebind_time), (Some(1800), Some(2880)));
    assert!(v.rapid_commit);
    assert_eq!(v.preference, Some(255));
    assert_eq!(v.server_unicast, Some(a6("2001:db8:231::2")));
    assert_eq!(
        v.server_duid.as_deref(),
        Some(&[0, 2, 0, 0, 0xde, 0xad, b'l', b'e', b's', b's', b'o', b'r'][..])
    );
    assert_eq!(v.options.get(32), Some(&86400u32.to_be_bytes()[..]));
    assert_eq!(v.options.get(65001), Some(&b"hello"[..]));
    let [s0, s1, s2, s3] = v.subnets.as_slice() else {
        panic!()
    };
    // The shared network: two subnets on one link, selected by its relay and interface-id.
    assert_eq!(v.links[2].name.as_deref(), Some("building2"));
    assert_eq!(v.links[2].subnets, [2, 3]);
    for s in [s2, s3] {
        assert_eq!(s.relays, [a6("2001:db8:9::2")]);
        assert_eq!(s.interface_ids, [b"olt1/port4".to_vec()]);
        assert_eq!(s.options.get(23), v.options.get(23));
    }
    assert_eq!(s3.pd_pools[0].delegated_len, 56);
    // Global reservations keep only their own options.
    assert_eq!(v.reservations.len(), 2);
    assert_eq!(v.reservations[0].address, Some(a6("2001:db8:233::70")));
    assert!(v.reservations[0].options.contains(31));
    assert!(!v.reservations[0].options.contains(23));
    assert_eq!(s0.interface.as_deref(), Some("eth1"));
    assert_eq!(s0.pools.len(), 2);
    assert_eq!(s0.pools[1].last, a6("2001:db8:231:0:1:ffff:ffff:ffff"));
    assert_eq!(s0.excluded.len(), 17);
    assert_eq!(s0.pd_pools[1].delegated_len, 48);
    assert_eq!(
        s0.pd_pools[1].excluded_prefix,
        Some("2001:db8:2400:ff00::/64".parse().unwrap())
    );
    // The subnet's domain_search overrides the global one; dns_servers is inherited.
    assert_eq!(s0.options.get(23), v.options.get(23));
    assert_ne!(s0.options.get(24), v.options.get(24));
    let keys: Vec<&str> = s0.reservations.iter().map(|r| r.key.key_name()).collect();
    assert_eq!(keys, ["duid", "remote_id", "interface_id", "subscriber_id"]);
    assert_eq!(
        s0.reservations[2].key,
        V6Identifier::InterfaceId(b"ge-0/0/1.100".to_vec())
    );
    assert_eq!(
        s0.reservations[2].options.get(23),
        Some(&a6("2001:db8:231::54").octets()[..])
    );
    assert_eq!(
        s0.reservations[3].key,
        V6Identifier::SubscriberId(vec![0, 0xc0, 0xff, 0xee])
    );
    assert_eq!(s1.relays, [a6("2001:db8:9::1")]);
    assert_eq!(s1.interface_ids, [b"olt1/port3".to_vec()]);
    // Own preferred/valid lifetimes; T1/T2 are inherited from v6.
    assert_eq!(
        (
            s1.preferred_lifetime,
            s1.valid_lifetime,
            s1.renew_time,
            s1.rebind_time
        ),
        (14400, 28800, 1800, 2880)
    );
    assert!(!s1.rapid_commit);
    assert_eq!(s1.preference, Some(255));
    roundtrip(&c);
}

#[test]
fn v6_example_loads_and_its_file_is_relative_to_the_config() {
    let c = yaml(EXAMPLE_V6_YAML);
    assert_eq!(c.v6.subnets.len(), 1);
    roundtrip(&c);
    let dir = tempfile::tempdir().unwrap();
    let f = dir.path().join("lessor.yaml");
    std::fs::write(&f, EXAMPLE_V6_YAML).unwrap();
    let c = Config::from_file(&f).unwrap();
    assert_eq!(
        c.v6.assignments_file,
        Some(dir.path().join("assignments.csv"))
    );
    // The file is read by load_assignments, not by the config load.
    assert!(matches!(
        c.load_assignments(),
        Err(ConfigError::Read { .. })
    ));
    std::fs::write(
        dir.path().join("assignments.csv"),
        "id,address,prefix\nremote-id-str:3561:CUST2,,2001:db8:f000:200::/56\n\
         duid:000300010200000001a0,2001:db8:100::1a0,\n",
    )
    .unwrap();
    assert_eq!(c.load_assignments().unwrap().len(), 2);
    assert!(yaml("").load_assignments().unwrap().is_empty());
}

#[test]
fn lifetimes_inherit_and_timers_follow_the_preferred_lifetime() {
    let c = yaml(
        "v6:\n  preferred_lifetime: 1000\n  valid_lifetime: 2000\n  subnets:\n    \
         - subnet: \"2001:db8:1::/64\"\n    \
         - subnet: \"2001:db8:2::/64\"\n      preferred_lifetime: 100\n    \
         - subnet: \"2001:db8:3::/64\"\n      renew_time: 10\n      rebind_time: 20\n      \
         rapid_commit: true\n      preference: 7\n",
    );
    let t: Vec<_> =
        c.v6.subnets
            .iter()
            .map(|s| {
                (
                    s.preferred_lifetime,
                    s.valid_lifetime,
                    s.renew_time,
                    s.rebind_time,
                    s.rapid_commit,
                    s.preference,
                )
            })
            .collect();
    assert_eq!(
        t,
        [
            (1000, 2000, 500, 800, false, None),
            (100, 2000, 50, 80, false, None),
            (1000, 2000, 10, 20, true, Some(7)),
        ]
    );
    roundtrip(&c);
}

#[test]
fn effective_yaml_round_trips_v6() {
    let c = yaml(
        "v6:\n  port: 5547\n  preference: 10\n  server_duid: \"0x000200000009ab\"\n  \
         options: { \"300\": { u16: [1, 2] }, ntp_servers: [ntp.example] }\n  subnets:\n    \
         - subnet: \"2001:db8:1::/64\"\n      pools: [\"2001:db8:1::1:5\", \"2001:db8:1::/120\"]\n      \
         excluded: [\"2001:db8:1::7\", \"2001:db8:1::8\", \"2001:db8:1::a\"]\n      \
         interface_ids: [\"ab:cd\", \"port 1\"]\n      rapid_commit: true\n      \
         reservations:\n        - { interface_id: \"0x41\", address: \"2001:db8:1::99\" }\n        \
         - { subscriber_id: \"x:y\", prefix: \"2001:db8:ff::/48\" }\n        \
         - { remote_id: \"9:0xcafe\", prefix: \"2001:db8:fe::/48\", options: { dns_servers: \"2001:db8::1\" } }\n",
    );
    assert_effective(
        &c,
        &[
            "port: 5547",
            "preferred_lifetime: 1h",
            "offer_hold: 30s",
            "preference: 10",
            "2001:db8:1::7-2001:db8:1::8",
            "remote_id: 9:0xcafe",
        ],
    );
}

#[test]
fn json_with_v6_parses_like_yaml() {
    let value: serde_json::Value = serde_saphyr::from_str(ISSUE_V6_YAML).unwrap();
    let json = serde_json::to_string_pretty(&value).unwrap();
    assert_eq!(Config::from_json_str(&json).unwrap(), yaml(ISSUE_V6_YAML));
}

#[test]
fn v6_options_without_subnets_is_a_stateless_service() {
    let c = yaml("v6: { options: { dns_servers: [\"2001:db8::53\"] } }");
    assert!(c.v6.subnets.is_empty());
    assert!(
        c.v6.enabled(),
        "RFC 8415 §18.3.6: Information-requests are answered"
    );
    assert!(c.effective_yaml().contains("dns_servers"));
    roundtrip(&c);
    // Nothing to serve at all: off.
    assert!(!yaml("v6: { rapid_commit: true }").v6.enabled());
}

const SHARED_YAML: &str = "v6:\n  options: { dns_servers: [\"2001:db8::53\"] }\n  \
    subnets:\n    - { subnet: \"2001:db8:9::/64\", relays: [\"2001:db8:9::1\"] }\n  \
    shared_networks:\n    - name: floor1\n      relays: [\"2001:db8:ffff::1\"]\n      \
    interface_ids: [\"olt/1\"]\n      options: { domain_search: [floor1.example] }\n      \
    subnets:\n        - subnet: \"2001:db8:1::/64\"\n          pools: [\"2001:db8:1::10-2001:db8:1::11\"]\n        \
    - subnet: \"2001:db8:2::/64\"\n          pools: [\"2001:db8:2::10-2001:db8:2::1f\"]\n          \
    relays: [\"2001:db8:2::1\"]\n          preferred_lifetime: 30m\n  \
    reservations:\n    - { duid: \"00:03:00:01:02:00:00:00:00:07\", address: \"2001:db8:2::7\", \
    options: { sntp_servers: [\"2001:db8::123\"] } }\n    \
    - { remote_id: \"3561:CUST9\", prefix: \"2001:db8:f900::/56\" }\n";

#[test]
fn shared_networks_put_several_subnets_on_one_link() {
    let c = yaml(SHARED_YAML);
    let v = &c.v6;
    assert_eq!(v.subnets.len(), 3);
    assert_eq!(
        v.links,
        [
            Link6 {
                name: None,
                subnets: vec![0]
            },
            Link6 {
                name: Some("floor1".into()),
                subnets: vec![1, 2]
            },
        ]
    );
    let (a, b) = (&v.subnets[1], &v.subnets[2]);
    assert_eq!((a.link, b.link, a.id, b.id), (1, 1, 2, 3));
    // Each member inherits the shared network's selectors and options.
    assert_eq!(a.relays, [a6("2001:db8:ffff::1")]);
    assert_eq!(b.relays, [a6("2001:db8:ffff::1"), a6("2001:db8:2::1")]);
    assert_eq!(a.interface_ids, [b"olt/1".to_vec()]);
    assert_eq!(b.interface_ids, [b"olt/1".to_vec()]);
    assert!(a.options.contains(24) && a.options.contains(23));
    assert!(!v.subnets[0].options.contains(24));
    assert_eq!((a.preferred_lifetime, b.preferred_lifetime), (3600, 1800));
    assert_eq!(v.subnet_path(2), "v6.shared_networks[0].subnets[1]");
    assert_eq!(v.subnet_path(0), "v6.subnets[0]");
    roundtrip(&c);
    let text = c.effective_yaml();
    assert!(
        text.contains("shared_networks:") && text.contains("name: floor1"),
        "{text}"
    );
    // JSON says the same.
    let value: serde_json::Value = serde_saphyr::from_str(SHARED_YAML).unwrap();
    let json = serde_json::to_string(&value).unwrap();
    assert_eq!(Config::from_json_str(&json).unwrap(), c);
    let effective: serde_json::Value = serde_saphyr::from_str(&text).unwrap();
    let json = serde_json::to_string(&effective).unwrap();
    assert_eq!(Config::from_json_str(&json).unwrap(), c);
}

#[test]
fn global_reservations_keep_their_own_options_only() {
    let c = yaml(SHARED_YAML);
    let r = &c.v6.reservations;
    assert_eq!(r.len(), 2);
    assert_eq!(r[0].address, Some(a6("2001:db8:2::7")));
    assert!(r[0].options.contains(31) && !r[0].options.contains(23));
    assert_eq!(r[1].prefix, Some("2001:db8:f900::/56".parse().unwrap()));
    let text = c.effective_yaml();
    assert!(text.contains("remote_id: 3561:CUST9"), "{text}");
}

#[test]
fn a_shared_networks_interface_applies_to_each_subnet_and_round_trips() {
    let c = yaml(
        "v6:\n  shared_networks:\n    - name: lan\n      interface: eth3\n      \
         subnets: [ { subnet: \"2001:db8:1::/64\" }, { subnet: \"2001:db8:2::/64\", interface: eth3 } ]\n",
    );
    assert!(
        c.v6.subnets
            .iter()
            .all(|s| s.interface.as_deref() == Some("eth3"))
    );
    roundtrip(&c);
    // The same interface on two links is refused.
    let err = super::tests::yaml_err(
        "v6:\n  subnets: [ { subnet: \"2001:db8:9::/64\", interface: eth3 } ]\n  shared_networks:\n    \
         - name: lan\n      interface: eth3\n      subnets: [ { subnet: \"2001:db8:1::/64\" } ]\n",
    );
    assert!(
        err.contains("v6.shared_networks[0].interface: interface eth3 is also given at v6.subnets[0].interface"),
        "{err}"
    );
}
