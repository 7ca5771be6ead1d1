//! lessor-server: config, protocol logic and wiring of the lessor DHCP server.
