use std::net::Ipv4Addr;

use super::{FILE, Family, Host4, Host6, MergeError, Store, merge};
use crate::config::{Config, ReservationKey};

const CONFIG: &str = r#"
state_dir: /nonexistent
v4:
  subnets:
    - id: 7
      subnet: 10.0.0.0/24
      pools: [ "10.0.0.10-10.0.0.200" ]
      reservations:
        - { hw_address: "02:00:00:00:00:01", address: 10.0.0.5 }
v6:
  subnets:
    - id: 9
      subnet: fd00::/64
      pools: [ "fd00::1000-fd00::10ff" ]
      pd_pools: [ { prefix: "fd01::/48", delegated_len: 56 } ]
"#;

fn config() -> Config {
    Config::from_yaml_str(CONFIG).unwrap()
}

fn mac(n: u8) -> Host4 {
    Host4 {
        subnet_id: 7,
        hw_address: Some(format!("02:00:00:00:00:{n:02x}")),
        client_id: None,
        circuit_id: None,
        ip_address: format!("10.0.0.{}", 100 + n),
        hostname: Some(format!("host{n}")),
    }
}

/// The file's configuration merged with a store of only `v4` and `v6`.
fn merged(v4: Vec<Host4>, v6: Vec<Host6>) -> Result<Config, MergeError> {
    merge(
        &config(),
        &Store {
            v4,
            v6,
            ..Store::default()
        },
    )
}

fn duid(n: u8) -> Host6 {
    Host6 {
        subnet_id: 9,
        duid: format!("00:03:00:01:02:00:00:00:00:{n:02x}"),
        ip_addresses: vec![format!("fd00::{n:x}")],
        prefixes: vec![format!("fd01:0:0:{n:x}00::/56")],
        hostname: None,
    }
}

#[test]
fn the_store_round_trips_through_its_file() {
    let dir = tempfile::tempdir().unwrap();
    assert_eq!(Store::load(dir.path()).unwrap(), Store::default());
    let mut store = Store::default();
    store.v4.push(mac(2));
    store.v6.push(duid(3));
    store.save(dir.path()).unwrap();
    let back = Store::load(dir.path()).unwrap();
    assert_eq!((back.v4.clone(), back.v6.clone()), (store.v4, store.v6));
    // Only the file itself is left: the temporary file was renamed over it.
    let names: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names, vec![FILE.to_owned()]);
    // A rewrite replaces the whole list.
    Store::default().save(dir.path()).unwrap();
    assert!(Store::load(dir.path()).unwrap().is_empty());
}

#[test]
fn a_corrupt_store_is_an_error_naming_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join(FILE);
    std::fs::write(&path, "{\"version\": 1, \"v4\": [ {\"subnet-id\": 7,").unwrap();
    let e = Store::load(dir.path()).unwrap_err();
    assert!(e.starts_with(&path.display().to_string()), "{e}");
    std::fs::write(
        &path,
        r#"{"version": 1, "v4": [{"subnet-id": 7, "bogus": 1}]}"#,
    )
    .unwrap();
    let e = Store::load(dir.path()).unwrap_err();
    assert!(e.contains("bogus"), "{e}");
    std::fs::write(&path, r#"{"version": 99}"#).unwrap();
    assert!(Store::load(dir.path()).unwrap_err().contains("version 99"));
}

#[test]
fn merged_reservations_are_the_configs_own() {
    let c = merged(vec![mac(2)], vec![duid(3)]).unwrap();
    let r = &c.v4.subnets[0].reservations;
    assert_eq!(r.len(), 2);
    assert_eq!(r[1].key, ReservationKey::HwAddress(vec![2, 0, 0, 0, 0, 2]));
    assert_eq!(r[1].address, Ipv4Addr::new(10, 0, 0, 102));
    assert_eq!(r[1].hostname.as_deref(), Some("host2"));
    let r6 = &c.v6.subnets[0].reservations;
    assert_eq!(r6[0].address, Some("fd00::3".parse().unwrap()));
    assert_eq!(r6[0].prefix, Some("fd01:0:0:300::/56".parse().unwrap()));
    // Nothing to merge: the config as it is.
    assert_eq!(merge(&config(), &Store::default()).unwrap(), config());
}

#[test]
fn a_bad_run_time_reservation_names_its_argument() {
    let mut h = mac(2);
    h.ip_address = "10.9.9.9".into();
    let e = merged(vec![h], vec![]).unwrap_err();
    assert_eq!(
        (e.host, e.argument),
        (Some((Family::V4, 0)), Some("ip-address"))
    );
    assert!(e.reason.contains("not inside subnet 10.0.0.0/24"), "{e:?}");

    let mut h = mac(2);
    h.subnet_id = 8;
    let e = merged(vec![h], vec![]).unwrap_err();
    assert_eq!(
        e.to_string(),
        "'subnet-id': IPv4 subnet with ID of '8' is not configured"
    );

    let mut h = duid(3);
    h.ip_addresses.push("fd00::4".into());
    let e = merged(vec![], vec![h]).unwrap_err();
    assert_eq!(e.argument, Some("ip-addresses"));
}

#[test]
fn a_conflict_with_the_file_or_another_run_time_reservation_names_both() {
    // The file's MAC again.
    let mut h = mac(1);
    h.ip_address = "10.0.0.50".into();
    let e = merged(vec![h], vec![]).unwrap_err();
    assert!(e.conflict, "{e:?}");
    assert_eq!(e.argument, Some("hw-address"));
    assert!(
        e.reason
            .starts_with("hw-address 02:00:00:00:00:01 is already"),
        "{e:?}"
    );
    assert!(
        e.reason
            .contains("v4.subnets[0].reservations[0] in the configuration file"),
        "{e:?}"
    );
    // The file's address again.
    let mut h = mac(3);
    h.ip_address = "10.0.0.5".into();
    let e = merged(vec![h], vec![]).unwrap_err();
    assert!(e.conflict && e.argument == Some("ip-address"), "{e:?}");
    // Two run-time ones.
    let e = merged(vec![mac(2), mac(2)], vec![]).unwrap_err();
    assert!(e.conflict, "{e:?}");
    assert_eq!(e.host, Some((Family::V4, 1)));
    assert!(
        e.reason
            .ends_with("by the run-time reservation (subnet-id 7, hw-address 02:00:00:00:00:02)"),
        "{e:?}"
    );
    // As a reload or the start reports it: the store's file and the entry.
    let store = Store {
        v4: vec![mac(2), mac(2)],
        ..Store::default()
    };
    let text = e.in_file(std::path::Path::new("/s/reservations.json"), &store);
    assert!(
        text.starts_with("/s/reservations.json: run-time reservation v4[1] (subnet-id 7, hw-address 02:00:00:00:00:02)"),
        "{text}"
    );
}
