//! The hot path does not allocate: a whole server (worker, journal writer with `sync: group`,
//! every other thread) runs in this process under dhat's global allocator, which counts every
//! allocation any thread makes, and real exchanges go through it over loopback: DHCPv4 DORA
//! as a relay (half the clients with a host name and a 23-byte client identifier, as real
//! clients send them, and relay agent information), and DHCPv6 relayed rapid-commit SOLICIT/REPLY with an IA_NA.
//!
//! Steady state is what is measured: the clients' first exchanges (which grow the lease table,
//! the journal's buffers and the socket batches) run before the count starts; the counted
//! rounds are the same clients again, as renewing clients and retries are in the field.
//!
//! A test binary of its own (not a module of `tests/main`): the count is process-wide, so no
//! other test may run beside it.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6, UdpSocket};
use std::path::Path;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use lessor_server::Server;
use lessor_server::config::Config;
use lessor_server::v4::{self, Arrival, NoReply, Outcome, Received, Scratch};

// Passes every call to the system allocator until a profiler starts; then it counts.
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CLIENTS: u32 = 2000;
const ROUNDS: u32 = 3;
/// Exchanges in flight. The queues whose length follows it (replies waiting for the journal,
/// frames in a lane) start with room for more (`WaitQueue`, the journal's lane buffers), so
/// no timing of the counted rounds can make them grow.
const WINDOW: u32 = 64;

/// A relayed DHCPv4 request from client `n`: message type `kind`, then client `n`'s own
/// options ([`client_options`]). Returns the packet and its length before the end option.
fn request(n: u32, kind: u8) -> (Vec<u8>, usize) {
    let mut b = vec![0u8; 236];
    b[..4].copy_from_slice(&[1, 1, 6, 1]);
    b[4..8].copy_from_slice(&n.to_be_bytes());
    b[24..28].copy_from_slice(&[127, 0, 0, 1]);
    b[28..30].copy_from_slice(&[2, 0]);
    b[30..34].copy_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    b.extend(client_options(n));
    let base = b.len();
    b.push(255);
    (b, base)
}

/// What client `n` says about itself, and what its relay adds. Even clients are like
/// perfdhcp's: a MAC and nothing else. Odd ones are like dhclient's or systemd-networkd's: a
/// host name (option 12), and a client identifier (option 61) of RFC 4361's form, 0xff, an
/// IAID and a DUID-UUID, 23 bytes; their relay adds agent information (option 82, RFC 3046:
/// circuit-id and remote-id), which the server echoes.
fn client_options(n: u32) -> Vec<u8> {
    if n.is_multiple_of(2) {
        return Vec::new();
    }
    let name = format!("host-{n:05}");
    let mut o = vec![12, name.len() as u8];
    o.extend_from_slice(name.as_bytes());
    o.extend_from_slice(&[61, 23, 0xff, 0, 0, 0, 1, 0, 4]);
    o.extend_from_slice(&[0x5c; 12]);
    o.extend_from_slice(&n.to_be_bytes());
    let circuit = format!("ge-0/0/{}:{}", n % 48, n % 4094);
    let remote = [0x00, 0x1b, 0x21, 0x3c, 0x4d, n as u8];
    o.extend_from_slice(&[82, (4 + circuit.len() + remote.len()) as u8]);
    o.extend_from_slice(&[1, circuit.len() as u8]);
    o.extend_from_slice(circuit.as_bytes());
    o.extend_from_slice(&[2, remote.len() as u8]);
    o.extend_from_slice(&remote);
    o
}

/// The value of option `code` in a reply, if it has one.
fn option(b: &[u8], code: u8) -> Option<&[u8]> {
    let mut i = 240;
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        let len = b[i + 1] as usize;
        if b[i] == code {
            return b.get(i + 2..i + 2 + len);
        }
        i += 2 + len;
    }
    None
}

/// The message type of a reply (option 53), or 0.
fn reply_kind(b: &[u8]) -> u8 {
    option(b, 53).and_then(|v| v.first().copied()).unwrap_or(0)
}

/// The test client's packets, built before the count is armed.
struct Packets {
    discovers: Vec<Vec<u8>>,
    /// Each REQUEST with its length before the end option.
    requests: Vec<(Vec<u8>, usize)>,
}

/// One DISCOVER/OFFER, REQUEST/ACK exchange per client, `window` clients in flight. Returns
/// how many ACKs came back.
fn exchanges(sock: &UdpSocket, server: SocketAddrV4, p: &mut Packets, window: u32) -> u32 {
    let mut buf = [0u8; 1500];
    let mut acks = 0;
    for first in (0..CLIENTS).step_by(window as usize) {
        let chunk = first..(first + window).min(CLIENTS);
        for n in chunk.clone() {
            sock.send_to(&p.discovers[n as usize], server).unwrap();
        }
        // OFFERs and ACKs interleave: a REQUEST goes out per OFFER as it comes.
        let mut done = 0usize;
        while done < chunk.len() {
            let (len, _) = sock.recv_from(&mut buf).expect("a reply within 10 s");
            match reply_kind(&buf[..len]) {
                2 => {
                    let n = u32::from_be_bytes(buf[4..8].try_into().unwrap());
                    // REQUEST (selecting) for the offered address: options 50 and 54.
                    let (r, base) = &mut p.requests[n as usize];
                    r.truncate(*base);
                    r.extend_from_slice(&[50, 4]);
                    r.extend_from_slice(&buf[16..20]);
                    r.extend_from_slice(&[54, 4, 127, 0, 0, 1, 255]);
                    sock.send_to(r, server).unwrap();
                }
                5 => {
                    // The relay's agent information comes back (RFC 3046): the option was
                    // read, not skipped.
                    let n = u32::from_be_bytes(buf[4..8].try_into().unwrap());
                    assert_eq!(option(&buf[..len], 82).is_some(), n % 2 == 1, "client {n}");
                    done += 1;
                    acks += 1;
                }
                k => panic!("an OFFER or an ACK, not message type {k}"),
            }
        }
    }
    acks
}

/// A RELAY-FORW from `::1` (hop 0, link-address `::1`) around a rapid-commit SOLICIT from
/// client `n` (DUID-LL) for one address (IA_NA, IAID 1).
fn relayed_solicit(n: u32) -> Vec<u8> {
    fn put(out: &mut Vec<u8>, code: u16, payload: &[u8]) {
        out.extend_from_slice(&code.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        out.extend_from_slice(payload);
    }
    let mut inner = vec![1u8]; // SOLICIT
    inner.extend_from_slice(&n.to_be_bytes()[1..]);
    let mut duid = vec![0, 3, 0, 1, 0x02, 0x33];
    duid.extend_from_slice(&n.to_be_bytes());
    put(&mut inner, 1, &duid);
    put(&mut inner, 14, &[]); // rapid commit
    put(&mut inner, 8, &[0, 0]); // elapsed time
    put(&mut inner, 3, &[0, 0, 0, 1, 0, 0, 0, 0, 0, 0, 0, 0]); // IA_NA, IAID 1
    let mut msg = vec![12u8, 0]; // RELAY-FORW, hop count
    msg.extend_from_slice(&Ipv6Addr::LOCALHOST.octets()); // link-address
    msg.extend_from_slice(&Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1).octets()); // peer
    put(&mut msg, 9, &inner);
    msg
}

/// The client number of a RELAY-REPL around a REPLY whose IA_NA holds an address (the
/// transaction id is the client's number), or `None`.
fn bound_client6(b: &[u8]) -> Option<u32> {
    // RELAY-REPL: type, hops, link-address, peer-address, then options; the relay message
    // (9) is its only option here.
    let opt = b.get(34..)?;
    if b[0] != 13 || u16::from_be_bytes([opt[0], opt[1]]) != 9 {
        return None;
    }
    let reply = opt.get(4..)?;
    if reply[0] != 7 {
        return None;
    }
    let n = u32::from_be_bytes([0, reply[1], reply[2], reply[3]]);
    let mut o = &reply[4..];
    while o.len() >= 4 {
        let (code, len) = (
            u16::from_be_bytes([o[0], o[1]]),
            usize::from(u16::from_be_bytes([o[2], o[3]])),
        );
        // IA_NA whose first sub-option (after IAID, T1, T2) is an IAADDR.
        if code == 3 && len >= 16 && u16::from_be_bytes([o[16], o[17]]) == 5 {
            return Some(n);
        }
        o = o.get(4 + len..)?;
    }
    None
}

/// One relayed SOLICIT/REPLY (rapid commit: the address is bound and journaled) per client,
/// `window` in flight. Returns how many REPLYs bound an address.
fn exchanges6(sock: &UdpSocket, server: SocketAddrV6, solicits: &[Vec<u8>], window: u32) -> u32 {
    let mut buf = [0u8; 1500];
    let mut bound = 0;
    for chunk in solicits.chunks(window as usize) {
        for s in chunk {
            sock.send_to(s, server).unwrap();
        }
        for _ in chunk {
            let len = sock.recv(&mut buf).expect("a REPLY within 10 s");
            assert!(
                bound_client6(&buf[..len]).is_some(),
                "a REPLY with an address"
            );
            bound += 1;
        }
    }
    bound
}

/// Counts every allocation of every thread while `f` runs. On drop the profiler writes where
/// each came from to `sites`, for a failure to point at.
fn allocations<T>(sites: &Path, f: impl FnOnce() -> T) -> (T, u64) {
    let profiler = dhat::Profiler::builder().file_name(sites).build();
    let out = f();
    let n = dhat::HeapStats::get().total_blocks;
    drop(profiler);
    (out, n)
}

/// A load-balancing config (docs/HA.md): the pool split in two scopes.
const BALANCED: &str = r#"
v4:
  subnets:
    - subnet: 10.0.0.0/8
      relays: [127.0.0.1]
      pools: ["10.0.0.1-10.255.255.254"]
ha: { mode: load-balancing, node: a, etcd: [ "http://127.0.0.1:2379" ], peers: [
  { name: a, url: "http://127.0.0.1:1", stream: "127.0.0.1:8068" },
  { name: b, url: "http://127.0.0.1:2", stream: "127.0.0.1:8069" } ] }
"#;

/// The DHCPv4 handler of [`BALANCED`] answering scope 0 only, and what it reuses.
struct Balanced {
    ctx: v4::Context,
    engine: lessor_engine::v4::Engine,
    scratch: Scratch,
    out: Vec<u8>,
    events: Vec<lessor_engine::v4::LeaseEvent>,
}

impl Balanced {
    fn new() -> Balanced {
        let ctx = v4::Context::new(&Config::from_yaml_str(BALANCED).unwrap(), &[]);
        let engine = lessor_engine::v4::Engine::new(ctx.engine_config(1)).unwrap();
        Balanced {
            ctx,
            engine,
            scratch: Scratch::default(),
            out: Vec::with_capacity(1500),
            events: Vec::with_capacity(16),
        }
    }

    /// One datagram through the handler, serving scope 0 only: the reply's message type,
    /// or `None` when it belongs to the partner's scope.
    fn handle(&mut self, data: &[u8]) -> Option<u8> {
        let arrival = Arrival {
            src: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 67),
            ifindex: 1,
            local: Ipv4Addr::LOCALHOST,
        };
        let got = Received::new(data, arrival, lessor_server::now()).serving(0b01);
        let (ctx, engine) = (&self.ctx, &self.engine);
        let outcome = v4::handle(
            ctx,
            engine,
            got,
            &mut self.scratch,
            &mut self.out,
            &mut self.events,
        );
        self.events.clear();
        match outcome {
            Outcome::Reply(_) => Some(reply_kind(&self.out)),
            Outcome::NoReply(NoReply::HaPartnerScope) => None,
            Outcome::NoReply(why) => panic!("no reply: {}", why.label()),
        }
    }

    /// Every client's DORA (those of scope 0 answered): (ACKs, clients of the partner).
    fn doras(&mut self, p: &mut Packets) -> (u32, u32) {
        let (mut acks, mut partner) = (0, 0);
        for n in 0..CLIENTS as usize {
            match self.handle(&p.discovers[n]) {
                None => {
                    partner += 1;
                    continue;
                }
                Some(2) => {}
                Some(k) => panic!("an OFFER, not message type {k}"),
            }
            let (r, base) = &mut p.requests[n];
            r.truncate(*base);
            r.extend_from_slice(&[50, 4]);
            r.extend_from_slice(&self.out[16..20]);
            r.extend_from_slice(&[54, 4, 127, 0, 0, 1, 255]);
            assert_eq!(self.handle(&p.requests[n].0), Some(5), "client {n}");
            acks += 1;
        }
        (acks, partner)
    }
}

#[test]
fn dhcp_through_a_whole_server_does_not_allocate_in_steady_state() {
    let state = tempfile::tempdir().unwrap();
    let port = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let port6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0))
        .and_then(|s| s.local_addr())
        .unwrap()
        .port();
    let yaml = format!(
        r#"port: {port}
state_dir: {}
workers: 1
journal: {{ sync: group }}
# The control server runs beside the workers; it must not make them allocate.
control: {{ listen: "127.0.0.1:0" }}
v4:
  lease_time: 4000
  # Boot fields and a global reservation are in the config too: a config that uses them
  # must not allocate on the hot path either.
  next_server: 10.0.0.2
  server_hostname: boot.example.test
  boot_file_name: pxelinux.0
  reservations:
    - {{ hw_address: "02:ff:00:00:00:01", address: 10.0.0.3, boot_file_name: other.efi }}
  subnets:
    - subnet: 10.0.0.0/8
      relays: [127.0.0.1]
      pools: ["10.0.0.1-10.255.255.254"]
v6:
  port: {port6}
  rapid_commit: true
  subnets:
    - subnet: fd00:233::/64
      relays: [ "::1" ]
      pools: [ "fd00:233::1000-fd00:233::ffff" ]
"#,
        state.path().display()
    );
    let config = Config::from_yaml_str(&yaml).unwrap();
    let server = Server::start(&config).unwrap();
    let tmp = Path::new(env!("CARGO_TARGET_TMPDIR"));
    // The preallocation thread zero-fills the first spare segment after startup; that is not
    // the hot path, and it allocates when it reports back. Counting starts after it.
    let deadline = Instant::now() + Duration::from_secs(60);
    while server.journal_stats().spares == 0 {
        assert!(Instant::now() < deadline, "no spare segment after 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }

    // DHCPv4: DORA.
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);
    let mut packets = Packets {
        discovers: (0..CLIENTS).map(|n| request(n, 1).0).collect(),
        // Room for options 50 and 54, so filling them in never reallocates.
        requests: (0..CLIENTS)
            .map(|n| {
                let mut r = request(n, 3);
                r.0.reserve(16);
                r
            })
            .collect(),
    };
    // Warm-up: first leases, table growth, buffers at their working size.
    assert_eq!(exchanges(&sock, to, &mut packets, WINDOW), CLIENTS);
    assert_eq!(exchanges(&sock, to, &mut packets, WINDOW), CLIENTS);
    let sites = tmp.join("hot-path-v4-dhat.json");
    let (acks, allocated) = allocations(&sites, || {
        (0..ROUNDS)
            .map(|_| exchanges(&sock, to, &mut packets, WINDOW))
            .sum::<u32>()
    });
    assert_eq!(acks, ROUNDS * CLIENTS);
    eprintln!("DHCPv4: {allocated} allocations in {acks} DORA exchanges");
    assert_eq!(
        allocated,
        0,
        "the DHCPv4 hot path allocated; the call sites are in {} (dhat's viewer, or the \"tb\" counts)",
        sites.display()
    );

    // DHCPv6: relayed rapid-commit SOLICIT/REPLY.
    let sock6 = UdpSocket::bind((Ipv6Addr::LOCALHOST, 0)).unwrap();
    sock6
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let to6 = SocketAddrV6::new(Ipv6Addr::LOCALHOST, port6, 0, 0);
    let solicits: Vec<Vec<u8>> = (0..CLIENTS).map(relayed_solicit).collect();
    assert_eq!(exchanges6(&sock6, to6, &solicits, WINDOW), CLIENTS);
    assert_eq!(exchanges6(&sock6, to6, &solicits, WINDOW), CLIENTS);
    let sites = tmp.join("hot-path-v6-dhat.json");
    let (bound, allocated) = allocations(&sites, || {
        (0..ROUNDS)
            .map(|_| exchanges6(&sock6, to6, &solicits, WINDOW))
            .sum::<u32>()
    });
    assert_eq!(bound, ROUNDS * CLIENTS);
    eprintln!("DHCPv6: {allocated} allocations in {bound} SOLICIT/REPLY exchanges");
    server.stop_flag().store(true, Ordering::SeqCst);
    server.join().unwrap();
    assert_eq!(
        allocated,
        0,
        "the DHCPv6 hot path allocated; the call sites are in {} (dhat's viewer, or the \"tb\" counts)",
        sites.display()
    );

    // Load balancing: the scope of each client and its scope's pools, through the handler
    // (a whole server in load-balancing runs the HA agent, whose etcd client allocates by
    // nature, beside the workers).
    let mut balanced = Balanced::new();
    // Warm-up as above: the expiry heap's first pruning rebuild happens in it.
    balanced.doras(&mut packets);
    let (acks, partner) = balanced.doras(&mut packets);
    assert!(
        acks > CLIENTS / 3 && partner > CLIENTS / 3,
        "{acks} ACKs, {partner} not ours"
    );
    let sites = tmp.join("hot-path-balanced-dhat.json");
    let (counted, allocated) = allocations(&sites, || {
        (0..ROUNDS)
            .map(|_| balanced.doras(&mut packets))
            .fold((0, 0), |(a, p), (x, y)| (a + x, p + y))
    });
    assert_eq!(counted, (ROUNDS * acks, ROUNDS * partner));
    eprintln!(
        "load balancing: {allocated} allocations in {} DORAs",
        ROUNDS * CLIENTS
    );
    assert_eq!(
        allocated,
        0,
        "the load-balancing path allocated; the call sites are in {}",
        sites.display()
    );
}
