//! Tests of the whole config layer: documents in, typed config or exact error out.

use std::net::Ipv4Addr;

use super::*;

/// The document from the design brief, verbatim.
const ISSUE_YAML: &str = r#"
interfaces: [eth1]            # omitted/empty: loopback only
port: 67                      # not 67: test mode (replies go to the request's source addr:port)
state_dir: /var/lib/lessor
workers: 2                    # optional, default = number of cores
journal: { sync: group }      # group | interval | none ; interval takes interval_ms (default 10)
v4:
  lease_time: 3600            # integer seconds or a humantime string "1h", "30m"; also min_lease_time / max_lease_time
  subnets:
    - subnet: 10.231.0.0/24
      pools: [ "10.231.0.100-10.231.0.199" ]
      relays: [ 10.231.0.1 ]  # optional: giaddrs that select this subnet
      options: { routers: [10.231.0.1], domain_name_servers: [10.231.0.1], domain_name: example.test }
      reservations:
        - { hw_address: "02:23:10:00:00:50", address: 10.231.0.50, hostname: printer }
"#;

const ISSUE_JSON: &str = r#"{
  "interfaces": ["eth1"],
  "port": 67,
  "state_dir": "/var/lib/lessor",
  "workers": 2,
  "journal": { "sync": "group" },
  "v4": {
    "lease_time": 3600,
    "subnets": [{
      "subnet": "10.231.0.0/24",
      "pools": ["10.231.0.100-10.231.0.199"],
      "relays": ["10.231.0.1"],
      "options": { "routers": ["10.231.0.1"], "domain_name_servers": ["10.231.0.1"],
                   "domain_name": "example.test" },
      "reservations": [
        { "hw_address": "02:23:10:00:00:50", "address": "10.231.0.50", "hostname": "printer" }
      ]
    }]
  }
}"#;

fn ip(s: &str) -> Ipv4Addr {
    s.parse().unwrap()
}

/// The config `text` describes; panics with the report if it is refused.
pub(super) fn yaml(text: &str) -> Config {
    Config::from_yaml_str(text).unwrap_or_else(|e| panic!("{}", e.report()))
}

/// The message `text` is refused with; panics if it is accepted.
pub(super) fn yaml_err(text: &str) -> String {
    match Config::from_yaml_str(text) {
        Ok(c) => panic!("accepted:\n{text}\n{c:#?}"),
        Err(e) => e.to_string(),
    }
}

/// Checks that `c` written as effective YAML reads back as `c`.
pub(super) fn roundtrip(c: &Config) {
    let text = c.effective_yaml();
    let again = Config::from_yaml_str(&text)
        .unwrap_or_else(|e| panic!("effective YAML does not parse: {}\n{text}", e.report()));
    assert_eq!(&again, c, "effective YAML differs:\n{text}");
    // The same document as JSON (config-get, config-set) reads back as `c` too.
    let json = c.effective_json().to_string();
    let again = Config::from_json_str(&json)
        .unwrap_or_else(|e| panic!("effective JSON does not parse: {}\n{json}", e.report()));
    assert_eq!(&again, c, "effective JSON differs:\n{json}");
}

/// Checks that `c` reads back from its effective YAML and that the text holds each of `wants`.
pub(super) fn assert_effective(c: &Config, wants: &[&str]) {
    roundtrip(c);
    let text = c.effective_yaml();
    for want in wants {
        assert!(text.contains(want), "{want} missing from\n{text}");
    }
}

/// Checks that each document is refused with a message containing its expected text.
fn assert_errors(cases: &[(String, &str)]) {
    for (doc, want) in cases {
        let got = yaml_err(doc);
        assert!(
            got.contains(want),
            "document:\n{doc}\n got: {got}\nwant: {want}"
        );
    }
}

/// One case of a `testdata/errors*.yaml` list: a document and (part of) its refusal.
#[derive(serde::Deserialize)]
struct ErrorCase {
    doc: String,
    error: String,
}

/// Checks that each case of the list `file` holds (`text`) is refused with its message.
///
/// The lists are YAML so that each document reads as it would in a config file;
/// a failure names the file and the case's index.
fn assert_error_cases(file: &str, text: &str) {
    let cases: Vec<ErrorCase> =
        serde_saphyr::from_str(text).unwrap_or_else(|e| panic!("{file}: {e}"));
    assert!(!cases.is_empty(), "{file}: no cases");
    for (i, case) in cases.iter().enumerate() {
        let got = yaml_err(&case.doc);
        assert!(
            got.contains(&case.error),
            "{file} case {i}, document:\n{}\n got: {got}\nwant: {}",
            case.doc,
            case.error
        );
    }
}

#[test]
fn issue_example_parses_to_expected_values() {
    let c = yaml(ISSUE_YAML);
    assert_eq!(c.interfaces, ["eth1"]);
    assert_eq!(c.port, 67);
    assert_eq!(c.state_dir, PathBuf::from("/var/lib/lessor"));
    assert_eq!(c.workers, Some(2));
    assert_eq!(c.log_level, None);
    assert_eq!(c.journal.sync, SyncMode::Group);
    let v = &c.v4;
    assert_eq!(
        (v.lease_time, v.min_lease_time, v.max_lease_time),
        (3600, 3600, 3600)
    );
    assert_eq!((v.renew_time, v.rebind_time), (None, None));
    assert_eq!((v.offer_hold, v.decline_probation), (30, 86400));
    assert!(v.authoritative);
    assert_eq!(v.server_id, None);
    assert!(v.options.is_empty());
    assert_eq!(
        v.links,
        [Link4 {
            name: None,
            subnets: vec![0]
        }]
    );
    let [s] = v.subnets.as_slice() else {
        panic!("{:?}", v.subnets)
    };
    assert_eq!(s.id, 1);
    assert_eq!(s.net, "10.231.0.0/24".parse().unwrap());
    assert_eq!(s.link, 0);
    assert_eq!(s.relays, [ip("10.231.0.1")]);
    assert_eq!(s.interface, None);
    assert!(s.excluded.is_empty());
    assert_eq!(
        (s.lease_time, s.min_lease_time, s.max_lease_time),
        (3600, 3600, 3600)
    );
    let opts: Vec<(u8, Vec<u8>)> = s.options.iter().map(|(c, v)| (c, v.to_vec())).collect();
    assert_eq!(
        opts,
        [
            (1, vec![255, 255, 255, 0]),
            (3, vec![10, 231, 0, 1]),
            (6, vec![10, 231, 0, 1]),
            (15, b"example.test".to_vec()),
            (28, vec![10, 231, 0, 255]),
        ]
    );
    let [p] = s.pools.as_slice() else { panic!() };
    assert_eq!((p.first, p.last), (ip("10.231.0.100"), ip("10.231.0.199")));
    assert_eq!(p.options, s.options);
    let [r] = s.reservations.as_slice() else {
        panic!()
    };
    assert_eq!(
        r.key,
        ReservationKey::HwAddress(vec![0x02, 0x23, 0x10, 0, 0, 0x50])
    );
    assert_eq!(r.address, ip("10.231.0.50"));
    assert_eq!(r.hostname.as_deref(), Some("printer"));
    assert!(r.bootp);
    let mut want = s.options.clone();
    want.insert(12, &b"printer"[..]);
    assert_eq!(r.options, want);
}

#[test]
fn json_parses_to_the_same_config() {
    assert_eq!(Config::from_json_str(ISSUE_JSON).unwrap(), yaml(ISSUE_YAML));
    // The full example, converted mechanically to JSON.
    let (_key, full) = examples::full_example();
    let value: serde_json::Value = serde_saphyr::from_str(&full).unwrap();
    let json = serde_json::to_string_pretty(&value).unwrap();
    assert_eq!(
        Config::from_json_str(&json).unwrap_or_else(|e| panic!("{e}\n{json}")),
        yaml(&full)
    );
}

#[test]
fn full_example_parses_and_uses_every_feature() {
    let (_key, full) = examples::full_example();
    let c = yaml(&full);
    assert_eq!(c.interfaces, ["eth1", "eth2"]);
    assert_eq!(c.log_level.as_deref(), Some("info"));
    assert_eq!(c.journal.sync, SyncMode::Interval { interval_ms: 10 });
    let v = &c.v4;
    assert_eq!(
        (v.lease_time, v.min_lease_time, v.max_lease_time),
        (3600, 600, 14400)
    );
    assert_eq!((v.renew_time, v.rebind_time), (Some(1800), Some(3150)));
    assert_eq!(v.decline_probation, 86400);
    assert_eq!(v.server_id, Some(ip("10.231.0.1")));
    assert_eq!(v.options.get(150), Some(&[10, 231, 0, 5][..]));
    assert_eq!(v.subnets.len(), 5);
    assert_eq!(
        v.subnets.iter().map(|s| s.id).collect::<Vec<_>>(),
        [1, 2, 3, 4, 5]
    );
    assert_eq!(v.links.len(), 4);
    assert_eq!(v.links[2].name.as_deref(), Some("building-b"));
    assert_eq!(v.links[2].subnets, [2, 3]);
    assert_eq!(v.links[3].subnets, [4]);

    let s0 = &v.subnets[0];
    assert_eq!(s0.interface.as_deref(), Some("eth1"));
    assert_eq!(s0.excluded.len(), 11);
    assert_eq!(
        s0.pools[1].options.get(15),
        Some(&b"guests.example.test"[..])
    );
    assert_eq!(s0.options.get(15), Some(&b"example.test"[..]));
    assert_eq!(s0.options.get(66), Some(&b"boot.example.test"[..]));
    let keys: Vec<_> = v
        .subnets
        .iter()
        .flat_map(|s| &s.reservations)
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(
        keys,
        [
            ReservationKey::HwAddress(vec![2, 0x23, 0x10, 0, 0, 0x50]),
            ReservationKey::HwAddress(vec![2, 0x23, 0x10, 0, 0, 0x52]),
            ReservationKey::ClientId(vec![1, 2, 0x23, 0x10, 0, 0, 0x51]),
            ReservationKey::CircuitId(b"eth0/1/1:100".to_vec()),
            ReservationKey::RemoteId(vec![0, 0x11, 0x22, 0x33, 0x44]),
            ReservationKey::RemoteId(vec![0xaa, 0xbb, 0xcc]),
        ]
    );
    assert!(!s0.reservations[1].bootp);
    // In a pool with its own options: the pool's options reach the reservation.
    assert_eq!(s0.reservations[1].options, s0.pools[0].options);

    // Boot fields: global, per subnet, per pool, per reservation; global reservations.
    assert!(v.bootp_dynamic);
    assert_eq!(v.boot.next_server, Some(ip("10.231.0.5")));
    assert_eq!(
        s0.pools[1].boot.boot_file_name.as_deref(),
        Some("guests.efi")
    );
    assert_eq!(
        s0.pools[0].boot.boot_file_name.as_deref(),
        Some("pxelinux.0")
    );
    assert_eq!(s0.reservations[2].boot.next_server, Some(ip("10.231.0.6")));
    assert_eq!(v.subnets[1].boot.next_server, Some(ip("10.232.0.5")));
    assert_eq!(v.reservations.len(), 1);
    assert_eq!(v.reservations[0].hostname.as_deref(), Some("roamer"));

    let s1 = &v.subnets[1];
    // 8h widens the inherited max (4h); min stays.
    assert_eq!(
        (s1.lease_time, s1.min_lease_time, s1.max_lease_time),
        (28800, 600, 28800)
    );
    // CIDR pool covering the network address: it is excluded.
    assert_eq!(
        (s1.pools[0].first, s1.pools[0].last),
        (ip("10.232.0.0"), ip("10.232.0.127"))
    );
    assert_eq!(s1.excluded, [ip("10.232.0.0")]);

    // Shared network: relays and options reach both subnets.
    for s in &v.subnets[2..4] {
        assert_eq!(s.relays, [ip("10.240.0.1")]);
        assert_eq!(s.options.get(42), Some(&[10, 240, 0, 1][..]));
        assert_eq!(s.link, 2);
    }
    assert_eq!(v.subnets[4].interface.as_deref(), Some("eth2"));
}

#[test]
fn default_loopback_is_the_embedded_yaml() {
    let c = Config::default_loopback();
    assert!(c.interfaces.is_empty());
    assert_eq!(c.port, 6767);
    assert_eq!(c.state_dir, PathBuf::from("./lessor-state"));
    assert_eq!(c.journal.sync, SyncMode::Group);
    let [s] = c.v4.subnets.as_slice() else {
        panic!()
    };
    assert_eq!(s.net, "10.0.0.0/8".parse().unwrap());
    assert_eq!(s.relays, [ip("127.0.0.1")]);
    assert_eq!(
        (s.pools[0].first, s.pools[0].last),
        (ip("10.0.0.1"), ip("10.255.255.254"))
    );
    assert!(s.excluded.is_empty());
    assert_eq!(c.v4.lease_time, 3600);
}

#[test]
fn empty_document_is_all_defaults() {
    let c = yaml("# nothing here\n");
    assert_eq!(c.port, 67);
    assert!(c.v4.subnets.is_empty());
    assert_eq!(yaml(""), c);
    assert_eq!(yaml("v4: { subnets: [] }"), c);
}

#[test]
fn durations_in_seconds_or_humantime() {
    for (text, secs) in [
        ("3600", 3600),
        ("1h", 3600),
        ("\"1h\"", 3600),
        ("90s", 90),
        ("30m", 1800),
        ("1h 30m", 5400),
        ("1day", 86400),
        ("\"120\"", 120),
    ] {
        let c = yaml(&format!(
            "v4: {{ lease_time: {text}, max_lease_time: 2days }}"
        ));
        assert_eq!(c.v4.lease_time, secs, "{text}");
        assert_eq!(c.v4.max_lease_time, 172_800);
    }
    let c = yaml("v4: { offer_hold: 5, decline_probation: 0 }");
    assert_eq!((c.v4.offer_hold, c.v4.decline_probation), (5, 0));
    for (text, want) in [
        (
            "1 fortnight",
            "v4.lease_time: \"1 fortnight\" is not a duration",
        ),
        (
            "1500ms",
            "v4.lease_time: \"1500ms\" is not a whole number of seconds",
        ),
        ("-5", "v4.lease_time: must not be negative"),
        (
            "1.5",
            "v4.lease_time: expected seconds or a duration such as \"1h\", got the number 1.5",
        ),
        ("5000000000", "v4.lease_time: is too long"),
        ("[1]", "v4.lease_time: expected seconds or a duration"),
    ] {
        let e = yaml_err(&format!("v4: {{ lease_time: {text} }}"));
        assert!(e.contains(want), "{text}: {e}");
    }
}

#[test]
fn journal_modes() {
    assert_eq!(
        yaml("journal: { sync: interval }").journal.sync,
        SyncMode::Interval { interval_ms: 10 }
    );
    assert_eq!(
        yaml("journal: { sync: interval, interval_ms: 250 }")
            .journal
            .sync,
        SyncMode::Interval { interval_ms: 250 }
    );
    assert_eq!(yaml("journal: { sync: none }").journal.sync, SyncMode::None);
    assert_eq!(yaml("journal: {}").journal.sync, SyncMode::Group);
    assert_eq!(
        yaml("journal: {}").journal.max_backlog,
        super::DEFAULT_MAX_BACKLOG
    );
    assert_eq!(yaml("journal: { max_backlog: 20 }").journal.max_backlog, 20);
    let j = yaml("journal: {}").journal;
    assert!(j.preallocate && j.realtime_sync, "both on by default");
    let j = yaml("journal: { preallocate: false, realtime_sync: false }").journal;
    assert!(!j.preallocate && !j.realtime_sync);
}

/// One document per rule, each family's from its own list; each message must carry the
/// exact key path.
#[test]
fn validation_errors_name_the_key() {
    for (file, text) in [
        ("errors4.yaml", include_str!("testdata/errors4.yaml")),
        ("errors6.yaml", include_str!("testdata/errors6.yaml")),
    ] {
        assert_error_cases(file, text);
    }
}

#[test]
fn accepted_edge_cases() {
    // The same relay on two subnets of one shared network selects that one link.
    let c = yaml(
        "v4: { shared_networks: [ { name: a, subnets: [ { subnet: 10.0.0.0/24, relays: [10.9.9.9] }, \
         { subnet: 10.0.1.0/24, relays: [10.9.9.9] } ] } ] }",
    );
    assert_eq!(c.v4.links[0].subnets, [0, 1]);
    // Reserved addresses may be inside a pool, outside it, or excluded from it.
    let c = yaml(
        "v4:\n  subnets:\n    - subnet: 10.0.0.0/24\n      pools: [10.0.0.10-10.0.0.20]\n      \
         excluded: [10.0.0.15]\n      reservations:\n        - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.11 }\n        \
         - { hw_address: \"02:00:00:00:00:02\", address: 10.0.0.15 }\n        \
         - { hw_address: \"02:00:00:00:00:03\", address: 10.0.0.99 }\n",
    );
    assert_eq!(c.v4.subnets[0].reservations.len(), 3);
    // /31 and /32 have no network or broadcast address (RFC 3021).
    let c = yaml(
        "v4: { subnets: [ { subnet: 10.0.0.0/31, pools: [10.0.0.0/31] }, { subnet: 10.0.1.1/32, pools: [10.0.1.1] } ] }",
    );
    assert!(c.v4.subnets.iter().all(|s| s.excluded.is_empty()));
    assert_eq!(c.v4.subnets[0].options.get(28), None);
    assert_eq!(c.v4.subnets[1].options.get(1), Some(&[255; 4][..]));
    // A CIDR pool covering the whole subnet excludes its network and broadcast addresses.
    let c = yaml(
        "v4: { subnets: [ { subnet: 10.0.0.0/24, pools: [10.0.0.0/24], excluded: [10.0.0.0] } ] }",
    );
    assert_eq!(c.v4.subnets[0].excluded, [ip("10.0.0.0"), ip("10.0.0.255")]);
    // Excluded ranges expand to single addresses, sorted, without duplicates.
    let c = yaml(
        "v4: { subnets: [ { subnet: 10.0.0.0/24, excluded: [\"10.0.0.7-10.0.0.9\", 10.0.0.3, 10.0.0.8] } ] }",
    );
    assert_eq!(
        c.v4.subnets[0].excluded,
        ["10.0.0.3", "10.0.0.7", "10.0.0.8", "10.0.0.9"].map(ip)
    );
    // The cap counts distinct addresses: a /16 excluded twice is still 65,536.
    let c = yaml(
        "v4: { subnets: [ { subnet: 10.0.0.0/8, excluded: [10.1.0.0/16, \"10.1.0.0-10.1.255.255\"] } ] }",
    );
    assert_eq!(c.v4.subnets[0].excluded.len(), 65_536);
}

#[test]
fn syntax_errors_have_position_and_path() {
    let doc = "v4:\n  subnets:\n    - subnet: 10.0.0.0/24\n      poolz: []\n";
    let e = Config::from_yaml_str(doc).unwrap_err();
    let ConfigError::Syntax {
        line, column, path, ..
    } = &e
    else {
        panic!("{e:?}")
    };
    assert_eq!((*line, *column), (4, 7));
    assert_eq!(path.as_deref(), Some("v4.subnets[0].poolz"));
    assert_eq!(e.path(), Some("v4.subnets[0].poolz"));
    let text = e.to_string();
    assert!(
        text.starts_with("line 4, column 7: v4.subnets[0].poolz: unknown field `poolz`"),
        "{text}"
    );
    assert!(e.report().contains("poolz: []"), "{}", e.report());

    let e = yaml_err("port: 70000\n");
    assert!(e.starts_with("line 1, column 7: port: "), "{e}");
    let e = yaml_err(
        "v4: { subnets: [ { subnet: 10.0.0.0/24, reservations: [ { hw_address: \"02:00:00:00:00:01\" } ] } ] }",
    );
    assert!(e.contains("missing field `address`"), "{e}");
    let e = yaml_err("v4: [\n");
    assert!(e.starts_with("line "), "{e}");

    let e =
        Config::from_json_str(r#"{"v4": {"subnets": [{"subnet": "10.0.0.0/24", "poolz": []}]}}"#)
            .unwrap_err();
    assert_eq!(e.path(), Some("v4.subnets[0].poolz"));
    assert!(e.to_string().contains("unknown field `poolz`"), "{e}");
}

#[test]
fn files_choose_the_format_by_extension_and_errors_name_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let y = dir.path().join("lessor.yaml");
    let j = dir.path().join("lessor.JSON");
    std::fs::write(&y, ISSUE_YAML).unwrap();
    std::fs::write(&j, ISSUE_JSON).unwrap();
    assert_eq!(
        Config::from_file(&y).unwrap(),
        Config::from_file(&j).unwrap()
    );

    std::fs::write(&y, "port: 0\n").unwrap();
    let e = Config::from_file(&y).unwrap_err();
    assert_eq!(e.file(), Some(y.as_path()));
    assert_eq!(
        e.to_string(),
        format!("{}: port: must be 1..=65535, not 0", y.display())
    );

    std::fs::write(&y, "prot: 67\n").unwrap();
    let e = Config::from_file(&y).unwrap_err();
    assert!(
        e.to_string()
            .starts_with(&format!("{}:1:1: prot: unknown field", y.display())),
        "{e}"
    );

    let e = Config::from_file(&dir.path().join("missing.yaml")).unwrap_err();
    assert!(matches!(e, ConfigError::Read { .. }), "{e:?}");
    assert!(e.to_string().contains("missing.yaml: cannot read"), "{e}");
}

#[test]
fn options_inherit_global_shared_subnet_pool_reservation() {
    let c = yaml(
        r#"
v4:
  options: { domain_name: global, ntp_servers: [1.1.1.1], routers: [9.9.9.9], time_offset: 1 }
  shared_networks:
    - name: net
      options: { domain_name: shared, time_offset: 2 }
      subnets:
        - subnet: 10.0.0.0/24
          options: { routers: [10.0.0.1], subnet_mask: 255.255.0.0 }
          pools:
            - 10.0.0.10-10.0.0.19
            - pool: 10.0.0.20-10.0.0.29
              options: { domain_name: pool }
          reservations:
            - { hw_address: "02:00:00:00:00:01", address: 10.0.0.25, options: { ntp_servers: [2.2.2.2] } }
            - { hw_address: "02:00:00:00:00:02", address: 10.0.0.99, hostname: box }
            - { hw_address: "02:00:00:00:00:03", address: 10.0.0.98, hostname: box3, options: { host_name: other } }
        - subnet: 10.0.1.0/24
"#,
    );
    let [a, b] = c.v4.subnets.as_slice() else {
        panic!()
    };
    let get = |set: &OptionSet, code| set.get(code).map(<[u8]>::to_vec);
    // Subnet: shared beats global, subnet beats shared and the derived mask.
    assert_eq!(get(&a.options, 15), Some(b"shared".to_vec()));
    assert_eq!(get(&a.options, 2), Some(2i32.to_be_bytes().to_vec()));
    assert_eq!(get(&a.options, 3), Some(vec![10, 0, 0, 1]));
    assert_eq!(get(&a.options, 42), Some(vec![1, 1, 1, 1]));
    assert_eq!(get(&a.options, 1), Some(vec![255, 255, 0, 0]));
    assert_eq!(get(&a.options, 28), Some(vec![10, 0, 0, 255]));
    // The sibling subnet sees global and shared, with its own derived values.
    assert_eq!(get(&b.options, 15), Some(b"shared".to_vec()));
    assert_eq!(get(&b.options, 3), Some(vec![9, 9, 9, 9]));
    assert_eq!(get(&b.options, 1), Some(vec![255, 255, 255, 0]));
    assert_eq!(get(&b.options, 28), Some(vec![10, 0, 1, 255]));
    // Pools.
    assert_eq!(a.pools[0].options, a.options);
    assert_eq!(get(&a.pools[1].options, 15), Some(b"pool".to_vec()));
    assert_eq!(get(&a.pools[1].options, 3), Some(vec![10, 0, 0, 1]));
    // Reservation in the second pool: pool's options plus its own.
    let r = &a.reservations;
    assert_eq!(get(&r[0].options, 15), Some(b"pool".to_vec()));
    assert_eq!(get(&r[0].options, 42), Some(vec![2, 2, 2, 2]));
    assert_eq!(get(&r[0].options, 12), None);
    // Outside any pool: the subnet's, plus the host name as option 12.
    assert_eq!(get(&r[1].options, 15), Some(b"shared".to_vec()));
    assert_eq!(get(&r[1].options, 12), Some(b"box".to_vec()));
    // The reservation's own host_name option wins over `hostname`.
    assert_eq!(get(&r[2].options, 12), Some(b"other".to_vec()));
    assert_eq!(get(&c.v4.options, 15), Some(b"global".to_vec()));
    roundtrip(&c);
}

#[test]
fn per_subnet_lease_times() {
    let c = yaml(
        "v4:\n  lease_time: 1h\n  min_lease_time: 30m\n  max_lease_time: 2h\n  subnets:\n    \
         - { subnet: 10.0.0.0/24 }\n    - { subnet: 10.0.1.0/24, lease_time: 4h }\n    \
         - { subnet: 10.0.2.0/24, lease_time: 10m }\n    \
         - { subnet: 10.0.3.0/24, lease_time: 10m, min_lease_time: 5m, max_lease_time: 15m }\n",
    );
    let t: Vec<_> =
        c.v4.subnets
            .iter()
            .map(|s| (s.lease_time, s.min_lease_time, s.max_lease_time))
            .collect();
    assert_eq!(
        t,
        [
            (3600, 1800, 7200),
            (14400, 1800, 14400),
            (600, 600, 7200),
            (600, 300, 900)
        ]
    );
    roundtrip(&c);
}

#[test]
fn effective_yaml_round_trips() {
    let (_key, full) = examples::full_example();
    for doc in [ISSUE_YAML, &full, DEFAULT_LOOPBACK_YAML, ""] {
        roundtrip(&yaml(doc));
    }
    let c = yaml(
        "workers: 3\nlog_level: debug\njournal: { sync: none }\nv4:\n  renew_time: 100\n  \
         rebind_time: 200\n  server_id: 10.0.0.1\n  authoritative: false\n  subnets:\n    \
         - subnet: 10.0.0.0/24\n      pools: [10.0.0.0/24]\n      reservations:\n        \
         - { circuit_id: \"ab:cd\", address: 10.0.0.7 }\n        \
         - { circuit_id: \"0x41\", address: 10.0.0.8 }\n        \
         - { remote_id: \"port 7\", address: 10.0.0.9, bootp: false }\n      \
         options: { \"12\": { hex: \"ff:fe\" }, \"200\": { u16: [1, 2] } }\n",
    );
    // Defaults are spelled out.
    assert_effective(
        &c,
        &[
            "port: 67",
            "offer_hold: 30s",
            "decline_probation: 1day",
            "sync: none",
            "id: 1",
            "bootp: true",
        ],
    );
}

#[test]
fn agent_ids_are_hex_or_text() {
    let c = yaml(
        "v4:\n  subnets:\n    - subnet: 10.0.0.0/24\n      reservations:\n        \
         - { circuit_id: \"ab:cd\", address: 10.0.0.7 }\n        \
         - { circuit_id: \"0xABce\", address: 10.0.0.8 }\n        \
         - { circuit_id: \"eth0:1\", address: 10.0.0.9 }\n        \
         - { remote_id: \"abcd\", address: 10.0.0.10 }\n",
    );
    let keys: Vec<_> = c.v4.subnets[0]
        .reservations
        .iter()
        .map(|r| r.key.clone())
        .collect();
    assert_eq!(
        keys,
        [
            ReservationKey::CircuitId(vec![0xab, 0xcd]),
            ReservationKey::CircuitId(vec![0xab, 0xce]),
            ReservationKey::CircuitId(b"eth0:1".to_vec()),
            ReservationKey::RemoteId(b"abcd".to_vec()),
        ]
    );
}

/// Past serde-saphyr's default budget (250,000 nodes, which 50,000 reservations reach), and
/// checked in linear time. One parse: reaching the duplicate at the end proves all of it parsed.
#[test]
fn large_reservation_lists() {
    let mut doc = String::from("v4:\n  subnets:\n    - subnet: 10.0.0.0/16\n      reservations:\n");
    for i in 1..=50_000u32 {
        let [_, _, a, b] = (0x0a00_0000 + i).to_be_bytes();
        doc.push_str(&format!(
            "        - {{ hw_address: \"02:00:00:00:{a:02x}:{b:02x}\", address: 10.0.{a}.{b} }}\n"
        ));
    }
    doc.push_str("        - { hw_address: \"02:00:00:00:00:01\", address: 10.0.255.1 }\n");
    let e = yaml_err(&doc);
    assert!(
        e.contains(
            "v4.subnets[0].reservations[50000].hw_address: hw_address 02:00:00:00:00:01 is \
             already reserved by v4.subnets[0].reservations[0]"
        ),
        "{e}"
    );
}

#[test]
fn boot_fields_inherit_global_subnet_pool_reservation() {
    let c = yaml(
        "v4:\n  next_server: 10.0.0.9\n  server_hostname: boot.example.test\n  \
         boot_file_name: global.efi\n  subnets:\n    - subnet: 10.0.0.0/24\n      \
         boot_file_name: subnet.efi\n      pools:\n        \
         - { pool: 10.0.0.10-10.0.0.19, next_server: 10.0.0.8 }\n        \
         - 10.0.0.20-10.0.0.29\n      reservations:\n        \
         - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.11, server_hostname: own }\n",
    );
    let s = &c.v4.subnets[0];
    let boot = |n: &str, h: &str, f: &str| BootFields {
        next_server: Some(ip(n)),
        server_hostname: Some(h.to_owned()),
        boot_file_name: Some(f.to_owned()),
    };
    assert_eq!(
        c.v4.boot,
        boot("10.0.0.9", "boot.example.test", "global.efi")
    );
    assert_eq!(s.boot, boot("10.0.0.9", "boot.example.test", "subnet.efi"));
    assert_eq!(
        s.pools[0].boot,
        boot("10.0.0.8", "boot.example.test", "subnet.efi")
    );
    assert_eq!(s.pools[1].boot, s.boot);
    // The reservation's address is in the first pool: it inherits that pool's.
    assert_eq!(
        s.reservations[0].boot,
        boot("10.0.0.8", "own", "subnet.efi")
    );
    roundtrip(&c);
    // Nothing set: all empty.
    let c = yaml("v4: { subnets: [ { subnet: 10.0.0.0/24 } ] }");
    assert_eq!(c.v4.subnets[0].boot, BootFields::default());
}

#[test]
fn bad_boot_fields_name_the_key() {
    let sub = |body: &str| format!("v4:\n  subnets:\n    - subnet: 10.0.0.0/24\n{body}");
    let long = |n: usize| "x".repeat(n);
    let cases: Vec<(String, &str)> = vec![
        (
            "v4: { next_server: 10.0.0.256 }".into(),
            "v4.next_server: \"10.0.0.256\" is not an IPv4 address",
        ),
        (
            "v4: { next_server: 0.0.0.0 }".into(),
            "v4.next_server: 0.0.0.0 is not a unicast address",
        ),
        (
            format!("v4: {{ server_hostname: {} }}", long(64)),
            "v4.server_hostname: is 64 bytes long; the 64-byte header field holds at most 63 and a NUL",
        ),
        (
            "v4: { server_hostname: \"\" }".into(),
            "v4.server_hostname: must not be empty",
        ),
        (
            format!("v4: {{ boot_file_name: {} }}", long(128)),
            "v4.boot_file_name: is 128 bytes long; the 128-byte header field holds at most 127 and a NUL",
        ),
        (
            "v4: { boot_file_name: \"a\\0b\" }".into(),
            "v4.boot_file_name: must not contain a NUL byte",
        ),
        (
            sub(&format!("      boot_file_name: {}", long(200))),
            "v4.subnets[0].boot_file_name: is 200 bytes long",
        ),
        (
            sub("      next_server: 224.0.0.1"),
            "v4.subnets[0].next_server: 224.0.0.1 is not a unicast address",
        ),
        (
            sub(&format!(
                "      pools: [ {{ pool: 10.0.0.10-10.0.0.20, server_hostname: {} }} ]",
                long(70)
            )),
            "v4.subnets[0].pools[0].server_hostname: is 70 bytes long",
        ),
        (
            sub("      pools: [ { pool: 10.0.0.10-10.0.0.20, next_server: [1] } ]"),
            "v4.subnets[0].pools[0].next_server: expected a string, got a list",
        ),
        (
            sub(&format!(
                "      reservations: [ {{ hw_address: \"02:00:00:00:00:01\", address: 10.0.0.5, boot_file_name: {} }} ]",
                long(128)
            )),
            "v4.subnets[0].reservations[0].boot_file_name: is 128 bytes long",
        ),
        (
            format!(
                "v4: {{ reservations: [ {{ hw_address: \"02:00:00:00:00:01\", address: 10.0.0.5, server_hostname: {} }} ], subnets: [ {{ subnet: 10.0.0.0/24 }} ] }}",
                long(64)
            ),
            "v4.reservations[0].server_hostname: is 64 bytes long",
        ),
        (
            "v4:\n  bootp_dynamic: yes please".into(),
            "v4.bootp_dynamic: invalid boolean",
        ),
    ];
    assert_errors(&cases);
    // The longest values that fit are accepted.
    let c = yaml(&format!(
        "v4: {{ server_hostname: {}, boot_file_name: {} }}",
        long(63),
        long(127)
    ));
    assert_eq!(c.v4.boot.boot_file_name.map(|f| f.len()), Some(127));
}

#[test]
fn global_reservations_and_bootp_dynamic() {
    let doc = "v4:\n  bootp_dynamic: true\n  reservations:\n    \
               - { hw_address: \"02:00:00:00:00:01\", address: 10.0.1.5, hostname: roamer, next_server: 10.0.0.9, options: { domain_name: roam.test } }\n    \
               - { client_id: \"01:02:00:00:00:00:02\", address: 10.0.0.6, bootp: false }\n  \
               subnets:\n    - subnet: 10.0.0.0/24\n      pools: [10.0.0.2-10.0.0.9]\n      \
               options: { routers: [10.0.0.1] }\n    - subnet: 10.0.1.0/24\n";
    let c = yaml(doc);
    assert!(c.v4.bootp_dynamic);
    assert_eq!(c.v4.reservations.len(), 2);
    let r = &c.v4.reservations[0];
    assert_eq!(r.address, ip("10.0.1.5"));
    assert_eq!(r.boot.next_server, Some(ip("10.0.0.9")));
    // Only its own options and the host name: the subnet's are added where the client is.
    assert_eq!(r.options.get(12), Some(&b"roamer"[..]));
    assert_eq!(r.options.get(15), Some(&b"roam.test"[..]));
    assert_eq!(r.options.get(3), None);
    assert!(!c.v4.reservations[1].bootp);
    roundtrip(&c);
    let json = r#"{"v4": {"bootp_dynamic": true, "next_server": "10.0.0.9", "server_hostname": "boot",
        "boot_file_name": "pxelinux.0", "reservations": [{"hw_address": "02:00:00:00:00:01",
        "address": "10.0.0.5", "boot_file_name": "own.0"}], "subnets": [{"subnet": "10.0.0.0/24",
        "next_server": "10.0.0.8", "pools": [{"pool": "10.0.0.10-10.0.0.20", "boot_file_name": "p.0"}]}]}}"#;
    let yaml_doc = "v4:\n  bootp_dynamic: true\n  next_server: 10.0.0.9\n  server_hostname: boot\n  \
                    boot_file_name: pxelinux.0\n  reservations: [ { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.5, boot_file_name: own.0 } ]\n  \
                    subnets: [ { subnet: 10.0.0.0/24, next_server: 10.0.0.8, pools: [ { pool: 10.0.0.10-10.0.0.20, boot_file_name: p.0 } ] } ]\n";
    let from_json = Config::from_json_str(json).unwrap_or_else(|e| panic!("{}", e.report()));
    assert_eq!(from_json, yaml(yaml_doc), "YAML and JSON agree");
    assert_effective(
        &from_json,
        &[
            "bootp_dynamic: true",
            "next_server: \"10.0.0.8\"",
            "boot_file_name: p.0",
            "boot_file_name: own.0",
        ],
    );
    // The default is spelled out.
    assert!(yaml("").effective_yaml().contains("bootp_dynamic: false"));

    let g = |body: &str| {
        format!(
            "v4:\n  reservations:\n{body}\n  subnets:\n    - subnet: 10.0.0.0/24\n      \
                                  reservations: [ {{ hw_address: \"02:00:00:00:00:09\", address: 10.0.0.9 }} ]\n"
        )
    };
    let cases: Vec<(String, &str)> = vec![
        (
            g("    - { hw_address: \"02:00:00:00:00:01\", address: 10.9.0.5 }"),
            "v4.reservations[0].address: 10.9.0.5 is not inside any v4 subnet",
        ),
        (
            g("    - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.255 }"),
            "v4.reservations[0].address: 10.0.0.255 is the broadcast address of 10.0.0.0/24",
        ),
        (
            g("    - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.9 }"),
            "v4.reservations[0].address: 10.0.0.9 is already reserved in subnet 10.0.0.0/24",
        ),
        (
            g(
                "    - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.5 }\n    - { hw_address: \"02:00:00:00:00:02\", address: 10.0.0.5 }",
            ),
            "v4.reservations[1].address: 10.0.0.5 is already reserved by v4.reservations[0]",
        ),
        (
            g(
                "    - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.5 }\n    - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.6 }",
            ),
            "v4.reservations[1].hw_address: hw_address 02:00:00:00:00:01 is already reserved by v4.reservations[0]",
        ),
        (
            g("    - { address: 10.0.0.5 }"),
            "v4.reservations[0]: needs an identifier",
        ),
        (
            g("    - { hw_address: \"02:00:00:00:00:01\", address: x }"),
            "v4.reservations[0].address: \"x\" is not an IPv4 address",
        ),
        (
            g(
                "    - { hw_address: \"02:00:00:00:00:01\", address: 10.0.0.5, options: { bogus: 1 } }",
            ),
            "v4.reservations[0].options.bogus: unknown option name `bogus`",
        ),
    ];
    assert_errors(&cases);
    // The same client may have a subnet reservation and a global one.
    yaml(&g(
        "    - { hw_address: \"02:00:00:00:00:09\", address: 10.0.0.5 }",
    ));
}
