//! cBPF steering on a `SO_REUSEPORT` group: where the kernel's program reads the packet, which
//! socket an index names, and that [`attach_steering`] puts every datagram on the socket
//! [`steer_index`] names.

use std::collections::HashMap;
use std::net::{Ipv4Addr, SocketAddrV4, UdpSocket};
use std::time::{Duration, Instant};

use lessor_net::v4::{
    RecvBatch, STEER_OFFSET, Socket, SocketConfig, attach_steering, open_group, steer_index,
};
use nix::sys::socket::{setsockopt, sockopt};

use crate::common::{client, loopback_group_with};
use crate::netns::Netns;

/// A group of `n` on 127.0.0.1 with room for a test's worth of queued datagrams.
fn group(n: usize) -> Vec<Socket> {
    loopback_group_with(|cfg| {
        cfg.workers = n;
        cfg.recv_buffer = Some(1 << 20);
    })
}

/// Attach an arbitrary classic BPF program to the group of `sock`, as `attach_steering` does
/// with its own.
fn attach_program(sock: &Socket, program: &mut [libc::sock_filter]) {
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    setsockopt(sock, sockopt::AttachReusePortCbpf, &fprog).expect("SO_ATTACH_REUSEPORT_CBPF");
}

fn insn(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// Everything the group receives until `want` datagrams have arrived (or about 10 s passed),
/// then whatever else arrives within a short grace period (to catch duplicates): the socket
/// index and the payload of each.
fn drain(group: &[Socket], want: usize) -> Vec<(usize, Vec<u8>)> {
    let mut batch = RecvBatch::new(64, 2048).expect("batch");
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut grace: Option<Instant> = None;
    loop {
        let mut any = false;
        for (k, s) in group.iter().enumerate() {
            let n = s.recv_batch(&mut batch, false).expect("recv_batch");
            any |= n > 0;
            got.extend(batch.iter().map(|(p, _)| (k, p.to_vec())));
        }
        let now = Instant::now();
        if got.len() >= want && grace.is_none() {
            grace = Some(now + Duration::from_millis(100));
        }
        if grace.is_some_and(|g| now >= g) || now >= deadline {
            return got;
        }
        if !any {
            std::thread::sleep(Duration::from_millis(1));
        }
    }
}

/// Evidence for the offset: with `ldb [0]; ret a` the kernel puts a datagram whose *payload*
/// starts with byte `k` on socket `k`. Were offset 0 the UDP header, byte 0 would be the high
/// byte of the client's ephemeral port (>= 0x80), an index the group does not have, and the
/// kernel would fall back to its 4-tuple hash. So a reuseport program on a UDP socket sees the
/// UDP payload from offset 0, and `chaddr[2..6]`, BOOTP bytes 30..34, is `ld [30]`.
#[test]
fn reuseport_program_sees_the_udp_payload_from_offset_0() {
    let group = group(4);
    let server = group[0].local_addr().expect("local_addr");
    attach_program(
        &group[0],
        &mut [
            insn(libc::BPF_LD | libc::BPF_B | libc::BPF_ABS, 0),
            insn(libc::BPF_RET | libc::BPF_A, 0),
        ],
    );
    let clients: Vec<UdpSocket> = (0..3).map(|_| client((Ipv4Addr::LOCALHOST, 0))).collect();
    for c in &clients {
        let port = c.local_addr().expect("client addr").port();
        assert!(
            port >> 8 >= 4,
            "ephemeral port {port} must not look like an index"
        );
    }
    let mut want = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        for k in 0..4u8 {
            let payload = [k, i as u8, 0xee, 0xee];
            c.send_to(&payload, server).expect("send");
            want.push((usize::from(k), payload.to_vec()));
        }
    }
    let mut got = drain(&group, want.len());
    got.sort();
    want.sort();
    assert_eq!(got, want);
}

/// Index `k` is the `k`th socket bound, i.e. `group[k]`: `ret #k` sends everything there.
#[test]
fn program_index_is_the_bind_order() {
    let group = group(4);
    let server = group[0].local_addr().expect("local_addr");
    let cli = client((Ipv4Addr::LOCALHOST, 0));
    for k in 0..4 {
        // Attached through a socket other than the first: the program belongs to the group.
        attach_program(
            &group[3 - k],
            &mut [insn(libc::BPF_RET | libc::BPF_K, k as u32)],
        );
        for _ in 0..5 {
            cli.send_to(&[k as u8; 40], server).expect("send");
        }
        let got = drain(&group, 5);
        assert_eq!(got, vec![(k, vec![k as u8; 40]); 5], "ret #{k}");
    }
}

/// A tiny deterministic generator, so a failure can be replayed.
fn xorshift(state: &mut u32) -> u32 {
    *state ^= *state << 13;
    *state ^= *state >> 17;
    *state ^= *state << 5;
    *state
}

#[test]
fn steering_puts_each_datagram_on_its_owners_socket() {
    const N: usize = 4;
    let group = group(N);
    attach_steering(&group).expect("attach_steering");
    let server = group[0].local_addr().expect("local_addr");
    let clients: Vec<UdpSocket> = (0..5).map(|_| client((Ipv4Addr::LOCALHOST, 0))).collect();

    // 200 datagrams of 34 to 333 bytes: an id in bytes 0..4, the steering word in 30..34
    // (including the extremes and the sign bit, which BPF must treat as unsigned).
    let mut seed = 0x2545_f491;
    let mut sent = HashMap::new();
    for id in 0..200u32 {
        let word = match id {
            0 => 0,
            1 => u32::MAX,
            2 => 0x8000_0000,
            3 => 0x7fff_ffff,
            _ => xorshift(&mut seed),
        };
        let mut p = vec![0x5a; 34 + (id as usize * 7) % 300];
        p[..4].copy_from_slice(&id.to_be_bytes());
        p[STEER_OFFSET..STEER_OFFSET + 4].copy_from_slice(&word.to_be_bytes());
        clients[id as usize % clients.len()]
            .send_to(&p, server)
            .expect("send");
        sent.insert(id, p);
    }

    let got = drain(&group, sent.len());
    let mut per_socket = [0usize; N];
    let mut seen = HashMap::new();
    for (k, p) in got {
        let id = u32::from_be_bytes(p[..4].try_into().expect("id"));
        assert_eq!(sent.get(&id), Some(&p), "datagram {id} arrived intact");
        assert_eq!(k, steer_index(&p, N), "datagram {id} on socket {k}");
        assert!(seen.insert(id, k).is_none(), "datagram {id} arrived twice");
        per_socket[k] += 1;
    }
    assert_eq!(seen.len(), sent.len(), "every datagram arrived");
    // The words are spread, so every worker got some: steering is not "all on socket 0".
    assert!(per_socket.iter().all(|&c| c > 20), "{per_socket:?}");

    // Too short to hold the word: the load fails, the program returns 0, socket 0 gets them.
    for len in [0, 1, 29, 30, 33] {
        clients[0].send_to(&vec![0xff; len], server).expect("send");
    }
    let got = drain(&group, 5);
    let lens: Vec<(usize, usize)> = got.iter().map(|(k, p)| (*k, p.len())).collect();
    assert_eq!(lens, [(0, 0), (0, 1), (0, 29), (0, 30), (0, 33)]);
}

#[test]
fn attach_steering_needs_a_group() {
    assert!(matches!(
        attach_steering(&[]),
        Err(lessor_net::Error::InvalidConfig(_))
    ));
    // A group of one takes the program (every index is 0).
    let one = group(1);
    attach_steering(&one).expect("attach to a group of one");
}

/// Broadcasts bypass reuseport selection: every socket of a steered group gets a copy, so the
/// server must keep only those it owns. Unicasts still go to exactly one socket. Runs in a
/// namespace of its own so the group can bind 0.0.0.0 and hear 127.255.255.255.
#[test]
fn broadcast_reaches_every_socket_of_a_steered_group() {
    let ns = Netns::new("steer-bcast");
    ns.run(|| {
        let group = open_group(&SocketConfig {
            bind: Ipv4Addr::UNSPECIFIED,
            port: 67,
            workers: 4,
            ..SocketConfig::default()
        })
        .expect("open group");
        attach_steering(&group).expect("attach_steering");
        let cli = client((Ipv4Addr::LOCALHOST, 68));
        cli.set_broadcast(true).expect("SO_BROADCAST");

        let mut p = vec![0u8; 300];
        p[STEER_OFFSET..STEER_OFFSET + 4].copy_from_slice(&6u32.to_be_bytes());
        cli.send_to(&p, SocketAddrV4::new(Ipv4Addr::new(127, 255, 255, 255), 67))
            .expect("broadcast");
        let mut got: Vec<usize> = drain(&group, 4).into_iter().map(|(k, _)| k).collect();
        got.sort_unstable();
        assert_eq!(got, [0, 1, 2, 3], "one copy per socket");

        cli.send_to(&p, SocketAddrV4::new(Ipv4Addr::LOCALHOST, 67))
            .expect("unicast");
        let got: Vec<usize> = drain(&group, 1).into_iter().map(|(k, _)| k).collect();
        assert_eq!(got, [steer_index(&p, 4)], "one socket, the owner");
        assert_eq!(got, [2]);
    });
}
