//! `interfaces` and `interface_index` against the host's loopback interface.

use std::net::Ipv4Addr;

use lessor_net::{Error, interface_index, interfaces};

#[test]
fn lists_loopback() {
    let all = interfaces().expect("interfaces");
    let lo = all
        .iter()
        .find(|i| i.name == "lo")
        .unwrap_or_else(|| panic!("no \"lo\" in {all:?}"));
    assert!(lo.v4.contains(&(Ipv4Addr::LOCALHOST, 8)), "{lo:?}");
    assert!(lo.is_loopback && lo.is_up, "{lo:?}");
    assert!(!lo.is_broadcast, "{lo:?}");
    assert_eq!(lo.mac, None, "loopback has no Ethernet address: {lo:?}");
    assert_eq!(lo.index, interface_index("lo").expect("index of lo"));
    // One entry per interface, ordered by index.
    assert!(all.windows(2).all(|w| w[0].index < w[1].index), "{all:?}");
}

#[test]
fn unknown_interface_is_named_in_the_error() {
    let err = interface_index("lessor-nodev0").unwrap_err();
    assert!(matches!(err, Error::InterfaceName { .. }), "{err:?}");
    assert!(err.to_string().contains("lessor-nodev0"), "{err}");
}
