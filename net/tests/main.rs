//! Integration tests for lessor-net, one binary: loopback sockets in the host namespace, and
//! everything that needs interfaces of its own (veth pairs, ARP) inside network namespaces the
//! tests create and delete. The namespace tests need root and iproute2 and fail, saying so,
//! without them.

#![deny(clippy::undocumented_unsafe_blocks)]

mod affinity_tests;
mod alloc_tests;
mod batch_tests;
mod common;
mod iface_tests;
mod netns;
mod netns_tests;
mod socket_tests;
mod steer_tests;
mod v4_tests;
mod v6_netns_tests;
mod v6_tests;
