//! The hot path does not allocate: a whole server (worker, journal writer with `sync: group`,
//! every other thread) runs in this process under dhat's global allocator, which counts every
//! allocation any thread makes, and real DHCPv4 exchanges go through it over loopback.
//!
//! Steady state is what is measured: the clients' first exchanges (which grow the lease table,
//! the journal's buffers and the socket batches) run before the count starts; the counted
//! rounds are the same clients again, as renewing clients and retries are in the field.
//!
//! A test binary of its own (not a module of `tests/main`): the count is process-wide, so no
//! other test may run beside it.

use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::sync::atomic::Ordering;
use std::time::Duration;

use lessor_server::config::Config;
use lessor_server::run::Server;

// Passes every call to the system allocator until a profiler starts; then it counts.
#[global_allocator]
static ALLOC: dhat::Alloc = dhat::Alloc;

const CLIENTS: u32 = 2000;
const ROUNDS: u32 = 3;
const WINDOW: u32 = 64;

/// A relayed DHCPv4 request from client `n`: message type `kind`, extra options.
fn request(n: u32, kind: u8, opts: &[(u8, [u8; 4])]) -> Vec<u8> {
    let mut b = vec![0u8; 236];
    b[..4].copy_from_slice(&[1, 1, 6, 1]);
    b[4..8].copy_from_slice(&n.to_be_bytes());
    b[24..28].copy_from_slice(&[127, 0, 0, 1]);
    b[28..30].copy_from_slice(&[2, 0]);
    b[30..34].copy_from_slice(&n.to_be_bytes());
    b.extend_from_slice(&[99, 130, 83, 99, 53, 1, kind]);
    for (code, v) in opts {
        b.extend_from_slice(&[*code, 4]);
        b.extend_from_slice(v);
    }
    b.push(255);
    b
}

/// The message type of a reply (option 53), or 0.
fn reply_kind(b: &[u8]) -> u8 {
    let mut i = 240;
    while i + 1 < b.len() && b[i] != 255 {
        if b[i] == 0 {
            i += 1;
            continue;
        }
        if b[i] == 53 {
            return b[i + 2];
        }
        i += 2 + b[i + 1] as usize;
    }
    0
}

/// The test client's packets, built before the count is armed.
struct Packets {
    discovers: Vec<Vec<u8>>,
    requests: Vec<Vec<u8>>,
}

/// One DISCOVER/OFFER, REQUEST/ACK exchange per client, `WINDOW` clients in flight. Returns
/// how many ACKs came back.
fn exchanges(sock: &UdpSocket, server: SocketAddrV4, p: &mut Packets) -> u32 {
    let mut buf = [0u8; 1500];
    let mut acks = 0;
    for first in (0..CLIENTS).step_by(WINDOW as usize) {
        let chunk = first..(first + WINDOW).min(CLIENTS);
        for n in chunk.clone() {
            sock.send_to(&p.discovers[n as usize], server).unwrap();
        }
        let mut offers = 0usize;
        while offers < chunk.len() {
            let (len, _) = sock.recv_from(&mut buf).expect("an OFFER within 10 s");
            assert_eq!(reply_kind(&buf[..len]), 2, "an OFFER");
            let n = u32::from_be_bytes(buf[4..8].try_into().unwrap());
            // REQUEST (selecting) for the offered address: options 50 and 54.
            let r = &mut p.requests[n as usize];
            r.truncate(243);
            r.extend_from_slice(&[50, 4]);
            r.extend_from_slice(&buf[16..20]);
            r.extend_from_slice(&[54, 4, 127, 0, 0, 1, 255]);
            sock.send_to(r, server).unwrap();
            offers += 1;
        }
        for _ in chunk {
            let (len, _) = sock.recv_from(&mut buf).expect("an ACK within 10 s");
            assert_eq!(reply_kind(&buf[..len]), 5, "an ACK");
            acks += 1;
        }
    }
    acks
}

#[test]
fn dora_through_a_whole_server_does_not_allocate_in_steady_state() {
    let state = tempfile::tempdir().unwrap();
    let probe = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let port = probe.local_addr().unwrap().port();
    drop(probe);
    let yaml = format!(
        "port: {port}\nstate_dir: {}\nworkers: 1\njournal: {{ sync: group }}\nv4:\n  lease_time: 4000\n  subnets:\n    - subnet: 10.0.0.0/8\n      relays: [127.0.0.1]\n      pools: [\"10.0.0.1-10.255.255.254\"]\n",
        state.path().display()
    );
    let config = Config::from_yaml_str(&yaml).unwrap();
    let server = Server::start(&config).unwrap();
    let sock = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let to = SocketAddrV4::new(Ipv4Addr::LOCALHOST, port);

    let mut packets = Packets {
        discovers: (0..CLIENTS).map(|n| request(n, 1, &[])).collect(),
        // Room for options 50 and 54, so filling them in never reallocates.
        requests: (0..CLIENTS)
            .map(|n| {
                let mut r = request(n, 3, &[]);
                r.reserve(16);
                r
            })
            .collect(),
    };
    // Warm-up: first leases, table growth, buffers at their working size.
    assert_eq!(exchanges(&sock, to, &mut packets), CLIENTS);
    assert_eq!(exchanges(&sock, to, &mut packets), CLIENTS);

    // On drop it writes where each allocation came from, for a failure to point at.
    let sites = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("hot-path-dhat.json");
    let profiler = dhat::Profiler::builder().file_name(&sites).build();
    let mut acks = 0;
    for _ in 0..ROUNDS {
        acks += exchanges(&sock, to, &mut packets);
    }
    let allocated = dhat::HeapStats::get().total_blocks;
    drop(profiler);
    assert_eq!(acks, ROUNDS * CLIENTS);
    eprintln!("{allocated} allocations in {acks} exchanges");
    server.stop_flag().store(true, Ordering::SeqCst);
    server.join().unwrap();
    assert_eq!(
        allocated,
        0,
        "the hot path allocated; the call sites are in {} (open it in dhat's viewer, or look for \"tb\" counts)",
        sites.display()
    );
}
