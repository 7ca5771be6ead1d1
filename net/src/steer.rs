//! Kernel steering: a classic BPF program on the `SO_REUSEPORT` group hands each datagram to the
//! socket of the worker that owns its client (the program and its reasoning are documented on
//! [`attach_steering`], where the public docs show them).

use nix::sys::socket::{setsockopt, sockopt};

use crate::error::{Error, Result};
use crate::v4::V4Socket;

/// Offset, from the start of the UDP payload, of the word the program loads: `chaddr[2..6]`.
pub const STEER_OFFSET: usize = 30;

/// The steering program for a group of `n` sockets (`n >= 1`).
fn steering_program(n: u32) -> [libc::sock_filter; 3] {
    let insn = |code: u32, k: u32| libc::sock_filter {
        // The BPF_* opcode constants are `u32` in libc; every combination fits the 16-bit field.
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    };
    [
        insn(
            libc::BPF_LD | libc::BPF_W | libc::BPF_ABS,
            STEER_OFFSET as u32,
        ),
        insn(libc::BPF_ALU | libc::BPF_MOD | libc::BPF_K, n),
        insn(libc::BPF_RET | libc::BPF_A, 0),
    ]
}

/// Attach the steering program to the `SO_REUSEPORT` group whose sockets are `group`, in the
/// order they were bound: afterwards the kernel hands each unicast datagram with UDP payload `p`
/// to `group[steer_index(p, group.len())]`.
///
/// Call it once, after every socket of the group is bound (the program is built for the group's
/// size). Attaching to a group that has a program replaces it. `group` must be one whole group
/// as [`open_v4_group`](crate::open_v4_group) returned it; a group of one socket gets the
/// program too, harmlessly. Fails with [`Error::Steering`] if the kernel refuses.
///
/// The server shards leases by client: shard `k = u32::from_be_bytes(chaddr[2..6]) % n`, where
/// `chaddr` is the 16-byte client hardware address field of the BOOTP header, and worker `k` owns
/// socket `k` of the group. Without help the kernel spreads datagrams by a hash of the 4-tuple,
/// which knows nothing of clients, so most requests would land on a worker that has to forward
/// them. With this program the kernel picks socket `k` itself.
///
/// # The program
///
/// ```text
/// ld  [30]        ; A = 32-bit big-endian word at offset 30   (BPF_LD  | BPF_W   | BPF_ABS, k = 30)
/// mod #n          ; A = A % n                                 (BPF_ALU | BPF_MOD | BPF_K,   k = n)
/// ret a           ; the index of the socket in the group      (BPF_RET | BPF_A)
/// ```
///
/// Why offset 30: for a UDP socket the kernel runs a reuseport program with the packet's data
/// pointer moved past the UDP header (`reuseport_select_sock(.., skb, sizeof(struct udphdr))`
/// pulls it for the run and pushes it back after), so offset 0 is the first byte of the UDP
/// payload, the BOOTP `op` field (the `steer_tests` integration tests check this on the running
/// kernel with a program that returns payload byte 0). `chaddr` starts at payload offset 28
/// (op, htype, hlen, hops: 4; xid: 4; secs, flags: 4; ciaddr, yiaddr, siaddr, giaddr: 16), so
/// `chaddr[2..6]` is payload bytes 30..34: the last four bytes of a MAC address, the ones that
/// vary between the clients of one vendor.
///
/// A datagram shorter than 34 bytes makes the load fail; a classic BPF program then returns 0,
/// so the datagram goes to socket 0, which drops it as malformed like any worker would. An index
/// the group does not have (only possible if sockets were closed) makes the kernel fall back to
/// its 4-tuple hash.
///
/// # What steering does not cover
///
/// - Broadcast (and multicast) datagrams skip reuseport selection: the kernel delivers a copy to
///   *every* socket of the group. Each worker must keep only the broadcasts it owns
///   ([`steer_index`] on the payload equals the worker's index) and ignore the rest.
/// - Socket index = order of joining the group = order of `bind`, which is the order of the
///   vector [`open_v4_group`](crate::open_v4_group) returns. Closing one socket moves the last
///   one into its place, so the group must be closed as a whole, never one socket at a time
///   while the others serve.
pub fn attach_steering(group: &[V4Socket]) -> Result<()> {
    let Some(first) = group.first() else {
        return Err(Error::InvalidConfig("cannot steer an empty socket group"));
    };
    let n = u32::try_from(group.len())
        .map_err(|_| Error::InvalidConfig("socket group too large to steer"))?;
    let mut program = steering_program(n);
    let fprog = libc::sock_fprog {
        len: program.len() as libc::c_ushort,
        filter: program.as_mut_ptr(),
    };
    // The program is attached to the group, not to this one socket; the kernel copies it, so
    // `program` only has to outlive the call.
    setsockopt(first, sockopt::AttachReusePortCbpf, &fprog).map_err(|e| Error::Steering {
        workers: group.len(),
        source: e.into(),
    })?;
    tracing::debug!(workers = group.len(), "attached cBPF steering to the group");
    Ok(())
}

/// The socket (worker) index the steering program picks for a datagram with UDP payload
/// `payload` in a group of `n`: `u32::from_be_bytes(payload[30..34]) % n`, or 0 when the payload
/// is shorter than 34 bytes or `n` is 0.
///
/// For a well-formed BOOTP message this equals the server's owner shard of the client.
pub fn steer_index(payload: &[u8], n: usize) -> usize {
    let (Some(word), Ok(n)) = (
        payload.get(STEER_OFFSET..STEER_OFFSET + 4),
        u32::try_from(n),
    ) else {
        return 0;
    };
    let word = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
    word.checked_rem(n).unwrap_or(0) as usize
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn program_bytes() {
        let p = steering_program(4);
        // The opcodes as `bpf_asm` and `tcpdump -d` print them.
        assert_eq!((p[0].code, p[0].k), (0x20, 30)); // ld [30]
        assert_eq!((p[1].code, p[1].k), (0x94, 4)); // mod #4
        assert_eq!((p[2].code, p[2].k), (0x16, 0)); // ret a
        assert!(p.iter().all(|i| i.jt == 0 && i.jf == 0));
    }

    #[test]
    fn steer_index_reads_chaddr_bytes_2_to_6() {
        let mut payload = [0u8; 300];
        payload[28..34].copy_from_slice(&[0xff, 0xff, 0, 0, 1, 7]); // chaddr 0..6
        assert_eq!(steer_index(&payload, 4), 0x0107 % 4);
        assert_eq!(steer_index(&payload, 5), 0x0107 % 5);
        assert_eq!(steer_index(&payload, 1), 0);
        assert_eq!(steer_index(&payload, 0), 0);
        payload[30] = 0x80;
        assert_eq!(steer_index(&payload, 3), (0x8000_0107_u32 % 3) as usize);
        // 34 bytes are enough, 33 are not.
        assert_eq!(
            steer_index(&payload[..34], 3),
            (0x8000_0107_u32 % 3) as usize
        );
        assert_eq!(steer_index(&payload[..33], 3), 0);
        assert_eq!(steer_index(&[], 3), 0);
    }
}
