//! The embedded default config and the full example, as YAML text (parsed by the tests).

/// The configuration lessor runs with when no `--config` is given.
///
/// Loopback only, port 6767 (test mode: no root needed, replies go back to the request's source,
/// so `perfdhcp -N 6767 -L 6768 127.0.0.1` works), state in `./lessor-state` so an ordinary
/// user can run it. One subnet, 10.0.0.0/8, selected by relay address 127.0.0.1 (what perfdhcp
/// puts in giaddr); its pool leaves out the network and broadcast addresses.
pub const DEFAULT_LOOPBACK_YAML: &str = include_str!("../../../examples/default.yaml");

/// An example using every key the config accepts (see the module docs for what each means).
pub const EXAMPLE_FULL_YAML: &str = include_str!("../../../examples/full.yaml");

/// A DHCPv6-only example: an ISP's customer link with address and prefix delegation pools and
/// static prefixes by remote-id.
pub const EXAMPLE_V6_YAML: &str = include_str!("../../../examples/v6.yaml");
