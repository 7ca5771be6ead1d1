//! End-to-end tests of the `lessor` binary: real DHCP clients (dhclient, udhcpc, dhcpcd) talking
//! to it over veth links between network namespaces, perfdhcp against it on loopback, and its
//! command line.
//!
//! They need root (namespaces, raw client sockets) and the client tools installed; without them
//! they fail with a message saying what is missing, never pass silently. `tests/run` installs the
//! tools on Debian. Every test that binds fixed ports runs in namespaces of its own, so cargo may
//! run them in parallel.

mod cli;
mod clients;
mod clients6;
mod common;
mod conformance4;
mod conformance6;
mod control;
mod control_ops;
mod ha;
mod journal;
mod kea_client;
mod perfdhcp;
mod relay6;
mod reload;
mod reservations;
