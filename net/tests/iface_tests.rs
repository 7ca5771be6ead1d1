//! `interfaces` and `interface_index` against the host's loopback interface.

use std::net::{Ipv4Addr, Ipv6Addr};

use lessor_net::{Error, interface_index, interfaces};

#[test]
fn lists_loopback() {
    let all = interfaces().expect("interfaces");
    let lo = all
        .iter()
        .find(|i| i.name == "lo")
        .unwrap_or_else(|| panic!("no \"lo\" in {all:?}"));
    assert!(lo.v4.contains(&(Ipv4Addr::LOCALHOST, 8)), "{lo:?}");
    // ::1/128 on lo whenever the kernel lists it (IPv6 may be disabled on a host).
    let inet6 = std::fs::read_to_string("/proc/net/if_inet6").unwrap_or_default();
    let has_v6_loopback = inet6
        .lines()
        .any(|l| l.starts_with("00000000000000000000000000000001") && l.ends_with(" lo"));
    assert_eq!(
        lo.v6.contains(&(Ipv6Addr::LOCALHOST, 128)),
        has_v6_loopback,
        "{lo:?} against /proc/net/if_inet6:\n{inet6}"
    );
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
