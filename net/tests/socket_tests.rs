//! What every socket group does whatever its family, checked for IPv4 and IPv6 by one generic
//! body each.

use std::io::ErrorKind;
use std::net::{SocketAddr, UdpSocket};

use lessor_net::{Error, open_group, v4, v6};

use crate::common::{Family, assert_names_missing_device};

/// A group bound to the device `lessor-nodev0`, which does not exist, fails naming the device
/// and the address.
fn missing_device<F: Family>() {
    let mut cfg = F::Config::default();
    F::bind(&mut cfg, 9);
    *F::workers_and_device(&mut cfg).1 = Some("lessor-nodev0".to_owned());
    let err = open_group::<F>(&cfg).unwrap_err();
    assert_names_missing_device(&err);
    let addr = SocketAddr::new(F::LOOPBACK, 9).to_string();
    assert!(err.to_string().contains(&addr), "{err}");
}

#[test]
fn missing_device_is_named_in_the_error() {
    missing_device::<v4::V4>();
    missing_device::<v6::V6>();
}

/// A port held by a plain socket outside the group: the group's bind fails with `AddrInUse`.
fn port_held_outside_the_group<F: Family>() {
    let holder = UdpSocket::bind((F::LOOPBACK, 0)).expect("bind holder");
    let mut cfg = F::Config::default();
    F::bind(&mut cfg, holder.local_addr().expect("holder addr").port());
    *F::workers_and_device(&mut cfg).0 = 2;
    let err = open_group::<F>(&cfg).unwrap_err();
    assert!(matches!(err, Error::Bind { .. }), "{err:?}");
    assert_eq!(err.io_error().map(|e| e.kind()), Some(ErrorKind::AddrInUse));
}

#[test]
fn port_held_outside_the_group_is_addr_in_use() {
    port_held_outside_the_group::<v4::V4>();
    port_held_outside_the_group::<v6::V6>();
}
