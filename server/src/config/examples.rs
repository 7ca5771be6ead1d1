//! The embedded default config and the full example, as YAML text (parsed by the tests).

/// The configuration lessor runs with when no `--config` is given.
///
/// Loopback only, port 6767 (test mode: no root needed, replies go back to the request's source,
/// so `perfdhcp -N 6767 -L 6768 127.0.0.1` works), state in `./lessor-state` so an ordinary
/// user can run it. One subnet, 10.0.0.0/8, selected by relay address 127.0.0.1 (what perfdhcp
/// puts in giaddr); its pool leaves out the network and broadcast addresses.
pub const DEFAULT_LOOPBACK_YAML: &str = r#"# lessor's built-in configuration, used when no --config is given.
# Loopback only; port 6767 is test mode (no root needed, replies go to the request's source),
# so `perfdhcp -N 6767 -L 6768 127.0.0.1` can talk to it. State goes to ./lessor-state.
port: 6767
state_dir: ./lessor-state
v4:
  lease_time: 3600
  subnets:
    - subnet: 10.0.0.0/8
      relays: [127.0.0.1]     # perfdhcp acts as a relay with giaddr 127.0.0.1
      pools: ["10.0.0.1-10.255.255.254"]
"#;

/// An example using every key the config accepts (see the module docs for what each means).
pub const EXAMPLE_FULL_YAML: &str = r#"# lessor: an example that uses every configuration key.
interfaces: [eth1, eth2]        # omitted or empty: loopback only
port: 67                        # any other port is test mode: replies go to the request's source
state_dir: /var/lib/lessor      # journal segments and snapshots
workers: 2                      # default: one per core
log_level: info                 # a tracing filter: error | warn | info | debug | trace | "lessor=debug"
journal:
  sync: interval                # group (default: an ACK waits for its fdatasync) | interval | none
  interval_ms: 10               # interval only: fdatasync this often; ACKs do not wait
v4:
  lease_time: 1h                # integer seconds (3600) or humantime text ("1h", "30m", "1h 30m")
  min_lease_time: 10m           # a client may ask for a lease between min and max
  max_lease_time: 4h
  renew_time: 30m               # T1; default 50% of the granted lease
  rebind_time: 52m 30s          # T2; default 87.5% of the granted lease
  offer_hold: 30s               # how long an OFFER keeps its address
  decline_probation: 1day       # how long a DECLINEd address stays out of use
  authoritative: true           # NAK requests for addresses that are wrong for the link
  server_id: 10.231.0.1         # default: the address the request arrived on
  options:                      # global: every subnet inherits these unless it overrides them
    domain_name_servers: [10.231.0.1, 10.231.0.2]
    domain_name: example.test
    domain_search: [example.test, corp.example.test]
    ntp_servers: [10.231.0.1]
    time_offset: 3600
    "150": { ip: [10.231.0.5] } # any other code by number, with a typed value
  subnets:
    - subnet: 10.231.0.0/24
      id: 1                     # default: position among all subnets, from 1
      interface: eth1           # clients on eth1 without a relay land here
      pools:
        - "10.231.0.100-10.231.0.199"
        - pool: 10.231.0.200-10.231.0.249
          options: { domain_name: guests.example.test }
      excluded: [10.231.0.150, "10.231.0.160-10.231.0.169"]
      options:
        routers: [10.231.0.1]
        interface_mtu: 1500
        classless_static_routes: ["10.99.0.0/16 via 10.231.0.254", "default via 10.231.0.1"]
        "66": { string: boot.example.test }
      reservations:
        - { hw_address: "02:23:10:00:00:50", address: 10.231.0.50, hostname: printer }
        - hw_address: "02-23-10-00-00-52"
          address: 10.231.0.120   # inside a pool: only this client gets it
          bootp: false            # default true: BOOTP clients may use their reservation
        - client_id: "01:02:23:10:00:00:51"
          address: 10.231.0.51
          options: { bootfile_name: pxelinux.0, tftp_server_name: 10.231.0.5 }
    - subnet: 10.232.0.0/24
      lease_time: 8h            # per subnet: lease_time, min_lease_time, max_lease_time
      relays: [10.232.0.1]      # relay agents (giaddr) whose clients land here
      pools: ["10.232.0.0/25"]  # a CIDR pool: the subnet's network address is never handed out
      options: { routers: [10.232.0.1] }
      reservations:
        - { circuit_id: "eth0/1/1:100", address: 10.232.0.200 }   # text: its own bytes
        - { remote_id: "0x0011223344", address: 10.232.0.201 }    # 0x...: hex bytes
  shared_networks:              # several subnets on one link
    - name: building-b
      relays: [10.240.0.1]      # the shared network's relays, interface and options apply to
      options:                  # each of its subnets
        ntp_servers: [10.240.0.1]
      subnets:
        - subnet: 10.240.0.0/24
          pools: ["10.240.0.10-10.240.0.250"]
          options: { routers: [10.240.0.1] }
        - subnet: 10.241.0.0/24
          pools: ["10.241.0.10-10.241.0.250"]
          options: { routers: [10.241.0.1] }
    - name: lab
      interface: eth2
      subnets:
        - subnet: 192.168.50.0/24
          pools: ["192.168.50.100-192.168.50.200"]
          options: { routers: [192.168.50.1] }
          reservations:
            - { remote_id: "aa:bb:cc", address: 192.168.50.10 }   # colon hex bytes
"#;
