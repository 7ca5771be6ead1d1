//! Kernel steering: a classic BPF program on the `SO_REUSEPORT` group hands each datagram to the
//! socket of the worker that owns its client (the programs and their reasoning are documented on
//! [`v4::attach_steering`](crate::v4::attach_steering) for DHCPv4 and
//! [`v6::attach_steering`](crate::v6::attach_steering) for DHCPv6, where the public docs show
//! them).

use std::os::fd::AsFd;

use nix::sys::socket::{setsockopt, sockopt};

use crate::error::{Error, Result};

/// The size of a group to steer, as the programs take it.
fn group_size(len: usize) -> Result<u32> {
    if len == 0 {
        return Err(Error::InvalidConfig("cannot steer an empty socket group"));
    }
    u32::try_from(len).map_err(|_| Error::InvalidConfig("socket group too large to steer"))
}

/// Attaches `program` to the reuseport group of `first`, a group of `workers` sockets.
fn attach(first: &impl AsFd, workers: usize, program: &mut [libc::sock_filter]) -> Result<()> {
    let fprog = libc::sock_fprog {
        len: libc::c_ushort::try_from(program.len())
            .map_err(|_| Error::InvalidConfig("steering program too long"))?,
        filter: program.as_mut_ptr(),
    };
    // The program is attached to the group, not to this one socket; the kernel copies it, so
    // `program` only has to outlive the call.
    setsockopt(first, sockopt::AttachReusePortCbpf, &fprog).map_err(|e| Error::Steering {
        workers,
        source: e.into(),
    })?;
    tracing::debug!(
        workers,
        instructions = program.len(),
        "attached cBPF steering to the group"
    );
    Ok(())
}

/// DHCPv4 steering, by `chaddr`; re-exported by [`crate::v4`].
pub(crate) mod v4 {
    use super::{Result, attach, group_size};
    use crate::wire::v4::field as v4f;

    /// Offset, from the start of the UDP payload, of the word the program loads: `chaddr[2..6]`.
    pub const STEER_OFFSET: usize = v4f::CHADDR.start + 2;

    /// The steering program for a group of `n` sockets (`n >= 1`).
    pub(super) fn steering_program(n: u32) -> [libc::sock_filter; 3] {
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
    /// as [`v4::open_group`](crate::v4::open_group) returned it; a group of one socket gets the
    /// program too, harmlessly. Fails with [`Error::Steering`](crate::Error::Steering) if the kernel refuses.
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
    ///   vector [`v4::open_group`](crate::v4::open_group) returns. Closing one socket moves the last
    ///   one into its place, so the group must be closed as a whole, never one socket at a time
    ///   while the others serve.
    pub fn attach_steering(group: &[crate::v4::Socket]) -> Result<()> {
        let n = group_size(group.len())?;
        attach(&group[0], group.len(), &mut steering_program(n))
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
}

/// DHCPv6 steering, by the client's DUID through relay layers; re-exported by [`crate::v6`].
pub(crate) mod v6 {
    use super::{Result, attach, group_size};
    use crate::wire::v6::field as v6f;

    /// Option headers the DHCPv6 steering program reads at most, across all relay layers, before
    /// it gives up and leaves the datagram to the kernel's 4-tuple hash.
    pub const STEER_STEPS: usize = 32;

    /// DHCPv6 message type RELAY-FORW (RFC 8415 §7.3).
    const RELAY_FORW: u32 = 12;
    /// RELAY-FORW header: msg-type, hop-count, link-address, peer-address.
    const RELAY_HEADER: u32 = v6f::RELAY_OPTIONS.start as u32;
    /// Client message header: msg-type, transaction-id.
    const CLIENT_HEADER: u32 = v6f::OPTIONS.start as u32;
    /// Option header: code, length.
    const OPTION_HEADER: u32 = v6f::OPTION_DATA.start as u32;
    /// Where an option's length sits, from its start.
    const OPTION_LEN: u32 = v6f::OPTION_LEN.start as u32;
    /// OPTION_CLIENTID and OPTION_RELAY_MSG (RFC 8415 §21.2, §21.10).
    const OPTION_CLIENTID: u32 = 1;
    const OPTION_RELAY_MSG: u32 = 9;
    /// DUID lengths the program steers by: it reads the last four bytes, and RFC 8415 §11.1 caps
    /// a DUID at 128 bytes after its 2-byte type.
    const DUID_MIN: u32 = 4;
    const DUID_MAX: u32 = 130;
    /// The smallest datagram the program walks: a client message header, an option header and a
    /// 4-byte DUID. It also keeps `len - 4` from wrapping below.
    const MIN_WALK: u32 = CLIENT_HEADER + OPTION_HEADER + DUID_MIN;
    /// What the program returns when it finds no DUID: no socket has this index, so the kernel
    /// falls back to its 4-tuple hash.
    pub(super) const NO_INDEX: u32 = u32::MAX;

    /// A jump target in [`Asm`]: a label, bound to an instruction once it is placed.
    #[derive(Clone, Copy)]
    struct Label(usize);

    /// A little classic BPF assembler: instructions with jumps to labels, resolved at the end.
    /// Classic BPF only jumps forward, and a conditional jump at most 255 instructions; `finish`
    /// panics on anything else, which the unit tests would catch for every group size.
    #[derive(Default)]
    struct Asm {
        /// Instructions with their conditional targets (`None`: the next instruction).
        insns: Vec<(u16, u32, Option<Label>, Option<Label>)>,
        /// Each label's instruction, once bound.
        labels: Vec<Option<usize>>,
        /// `ja` instructions, whose target goes in `k`.
        long: Vec<(usize, Label)>,
    }

    impl Asm {
        fn label(&mut self) -> Label {
            self.labels.push(None);
            Label(self.labels.len() - 1)
        }

        fn bind(&mut self, l: Label) {
            self.labels[l.0] = Some(self.insns.len());
        }

        fn op(&mut self, code: u32, k: u32) {
            // The BPF_* opcode constants are `u32` in libc; every combination fits the 16-bit field.
            self.insns.push((code as u16, k, None, None));
        }

        /// `code #k`, jumping to `jt` when true and `jf` when false (`None`: fall through).
        fn jump(&mut self, code: u32, k: u32, jt: Option<Label>, jf: Option<Label>) {
            self.insns.push((code as u16, k, jt, jf));
        }

        fn ja(&mut self, l: Label) {
            self.long.push((self.insns.len(), l));
            self.op(libc::BPF_JMP | libc::BPF_JA, 0);
        }

        /// `X += k`, through A (`txa; add #k; tax`): classic BPF has no arithmetic on X.
        fn add_x(&mut self, k: u32) {
            self.op(libc::BPF_MISC | libc::BPF_TXA, 0);
            self.op(libc::BPF_ALU | libc::BPF_ADD | libc::BPF_K, k);
            self.op(libc::BPF_MISC | libc::BPF_TAX, 0);
        }

        fn finish(self) -> Vec<libc::sock_filter> {
            let at = |l: Label| self.labels[l.0].expect("every label is bound");
            let mut out: Vec<libc::sock_filter> = self
                .insns
                .iter()
                .enumerate()
                .map(|(i, &(code, k, jt, jf))| {
                    let off = |t: Option<Label>| {
                        t.map_or(0, |l| {
                            let d = at(l).checked_sub(i + 1).expect("classic BPF jumps forward");
                            u8::try_from(d).expect("a conditional jump reaches 255 instructions")
                        })
                    };
                    libc::sock_filter {
                        code,
                        jt: off(jt),
                        jf: off(jf),
                        k,
                    }
                })
                .collect();
            for &(i, l) in &self.long {
                let d = at(l).checked_sub(i + 1).expect("classic BPF jumps forward");
                out[i].k = u32::try_from(d).expect("a program under 4096 instructions");
            }
            out
        }
    }

    /// The DHCPv6 steering program for a group of `n` sockets (`n >= 1`): see [`attach_steering`].
    pub(super) fn steering_program(n: u32) -> Vec<libc::sock_filter> {
        use libc::{
            BPF_A, BPF_ADD, BPF_ALU, BPF_B, BPF_H, BPF_IMM, BPF_IND, BPF_JEQ, BPF_JGE, BPF_JGT,
            BPF_JMP, BPF_K, BPF_LD, BPF_LDX, BPF_LEN, BPF_MISC, BPF_MOD, BPF_RET, BPF_SUB, BPF_TAX,
            BPF_W, BPF_X,
        };
        let mut a = Asm::default();
        let fail = a.label();
        let found = a.label();
        // msg[i]: X is at the start of a message; opt[i]: X is at an option header. Step i reads
        // one option header; msg[STEPS] and opt[STEPS] are "out of steps".
        let msg: Vec<Label> = (0..=STEER_STEPS).map(|_| a.label()).collect();
        let opt: Vec<Label> = (0..=STEER_STEPS).map(|_| a.label()).collect();

        let short = a.label();
        a.op(BPF_LD | BPF_W | BPF_LEN, 0);
        a.jump(BPF_JMP | BPF_JGE | BPF_K, MIN_WALK, None, Some(short));
        a.op(BPF_LDX | BPF_W | BPF_IMM, 0);
        a.ja(msg[0]);
        a.bind(short);
        a.ja(fail);

        for i in 0..STEER_STEPS {
            // A message: skip its header, 34 bytes for RELAY-FORW and 4 for a client's.
            a.bind(msg[i]);
            let (no_type, relay) = (a.label(), a.label());
            a.op(BPF_LD | BPF_W | BPF_LEN, 0);
            a.op(BPF_ALU | BPF_SUB | BPF_K, 1);
            a.jump(BPF_JMP | BPF_JGE | BPF_X, 0, None, Some(no_type)); // X + 1 <= len
            a.op(BPF_LD | BPF_B | BPF_IND, 0);
            a.jump(BPF_JMP | BPF_JEQ | BPF_K, RELAY_FORW, Some(relay), None);
            a.add_x(CLIENT_HEADER);
            a.ja(opt[i]);
            a.bind(no_type);
            a.ja(fail);
            a.bind(relay);
            a.add_x(RELAY_HEADER);

            // An option: the client's DUID, a relayed message to descend into, or one to skip.
            a.bind(opt[i]);
            let (no_header, duid, descend) = (a.label(), a.label(), a.label());
            a.op(BPF_LD | BPF_W | BPF_LEN, 0);
            a.op(BPF_ALU | BPF_SUB | BPF_K, OPTION_HEADER);
            a.jump(BPF_JMP | BPF_JGE | BPF_X, 0, None, Some(no_header)); // X + 4 <= len
            a.op(BPF_LD | BPF_H | BPF_IND, 0);
            a.jump(BPF_JMP | BPF_JEQ | BPF_K, OPTION_CLIENTID, Some(duid), None);
            a.jump(
                BPF_JMP | BPF_JEQ | BPF_K,
                OPTION_RELAY_MSG,
                Some(descend),
                None,
            );
            a.op(BPF_LD | BPF_H | BPF_IND, OPTION_LEN);
            a.op(BPF_ALU | BPF_ADD | BPF_K, OPTION_HEADER);
            a.op(BPF_ALU | BPF_ADD | BPF_X, 0);
            a.op(BPF_MISC | BPF_TAX, 0);
            a.ja(opt[i + 1]);
            a.bind(no_header);
            a.ja(fail);
            a.bind(duid);
            a.ja(found);
            a.bind(descend);
            a.add_x(OPTION_HEADER);
        }
        a.bind(msg[STEER_STEPS]);
        a.bind(opt[STEER_STEPS]);
        a.ja(fail);

        // X is at the CLIENTID option: its last four bytes are at X + 4 + L - 4 = X + L.
        a.bind(found);
        a.op(BPF_LD | BPF_H | BPF_IND, OPTION_LEN);
        a.jump(BPF_JMP | BPF_JGE | BPF_K, DUID_MIN, None, Some(fail));
        a.jump(BPF_JMP | BPF_JGT | BPF_K, DUID_MAX, Some(fail), None);
        a.op(BPF_ALU | BPF_ADD | BPF_X, 0);
        a.op(BPF_MISC | BPF_TAX, 0);
        a.op(BPF_LD | BPF_W | BPF_LEN, 0);
        a.op(BPF_ALU | BPF_SUB | BPF_K, 4);
        a.jump(BPF_JMP | BPF_JGE | BPF_X, 0, None, Some(fail)); // X + 4 <= len
        a.op(BPF_LD | BPF_W | BPF_IND, 0);
        a.op(BPF_ALU | BPF_MOD | BPF_K, n);
        a.op(BPF_RET | BPF_A, 0);
        a.bind(fail);
        a.op(BPF_RET | BPF_K, NO_INDEX);
        a.finish()
    }

    /// Attach the DHCPv6 steering program to the `SO_REUSEPORT` group whose sockets are `group`,
    /// in the order they were bound: afterwards the kernel hands each unicast datagram with UDP
    /// payload `p` to `group[k]` when [`steer_index`]`(p, group.len())` is `Some(k)`, and to the
    /// socket of its 4-tuple hash when it is `None`.
    ///
    /// The same rules as [`attach_steering`] apply: once, after every socket is bound, to one
    /// whole group from [`v6::open_group`](crate::v6::open_group); multicast skips it.
    ///
    /// The server shards DHCPv6 clients by DUID: shard `k = u32::from_be_bytes(last 4 bytes of
    /// the DUID) % n`. For DUID-LLT and DUID-LL those are the last four bytes of the link-layer
    /// address, the bytes DHCPv4 steers by; for DUID-EN and DUID-UUID, the end of the identifier.
    /// A relay agent sends every client's messages from one 4-tuple, so without this program the
    /// kernel would put all of a relay's traffic on one worker.
    ///
    /// # The walk
    ///
    /// A DUID sits at no fixed offset: it is option 1 of the client's message, which a relay wraps
    /// in a RELAY-FORW (34-byte header, then options) as option 9, possibly several times. Classic
    /// BPF has no backward jumps, so the program unrolls the walk over [`STEER_STEPS`] option
    /// headers:
    ///
    /// ```text
    /// message at X:  type 12 (RELAY-FORW): X += 34, else X += 4      ; to its first option
    /// option at X:   code 1 (CLIENTID):    steer by the DUID below
    ///                code 9 (RELAY_MSG):   X += 4, a message         ; descend one relay layer
    ///                anything else:        X += 4 + length           ; the next option
    /// CLIENTID at X: L = length; 4 <= L <= 130, and X + 4 + L within the datagram,
    ///                else give up; return u32 at X + L (the DUID's last four bytes) % n
    /// ```
    ///
    /// Every load is checked against the datagram's length first; a datagram whose DUID the walk
    /// does not reach (no CLIENTID, more than [`STEER_STEPS`] option headers on the way, a length
    /// that runs past the end) makes the program return an index no socket has, and the kernel
    /// then uses its 4-tuple hash. The worker that gets such a datagram still finds the owner from
    /// the DUID (the server's rule, not the kernel's choice, decides whose shard it is).
    pub fn attach_steering(group: &[crate::v6::Socket]) -> Result<()> {
        let n = group_size(group.len())?;
        attach(&group[0], group.len(), &mut steering_program(n))
    }

    /// The socket index the DHCPv6 steering program picks for a datagram with UDP payload
    /// `payload` in a group of `n`, following the walk documented on [`attach_steering`]; `None`
    /// when it finds no DUID to steer by (the kernel's 4-tuple hash picks) or `n` is 0.
    ///
    /// For a relayed or direct client message whose first options are well-formed, this equals
    /// the server's owner shard of the client's DUID.
    pub fn steer_index(payload: &[u8], n: usize) -> Option<usize> {
        let n = u32::try_from(n).ok().filter(|&n| n > 0)?;
        let len = payload.len();
        let be16 = |at: usize| usize::from(u16::from_be_bytes([payload[at], payload[at + 1]]));
        if len < MIN_WALK as usize {
            return None;
        }
        let enter = |x: usize| -> Option<usize> {
            let header = if u32::from(*payload.get(x + v6f::MSG_TYPE)?) == RELAY_FORW {
                RELAY_HEADER
            } else {
                CLIENT_HEADER
            };
            Some(x + header as usize)
        };
        let mut x = enter(0)?;
        for step in 0..STEER_STEPS {
            let hdr = OPTION_HEADER as usize;
            if x + hdr > len {
                return None;
            }
            match be16(x + v6f::OPTION_CODE.start) as u32 {
                OPTION_CLIENTID => {
                    let l = be16(x + OPTION_LEN as usize);
                    if !(DUID_MIN as usize..=DUID_MAX as usize).contains(&l) || x + l + 4 > len {
                        return None;
                    }
                    let w = &payload[x + l..x + l + 4];
                    let word = u32::from_be_bytes([w[0], w[1], w[2], w[3]]);
                    return usize::try_from(word % n).ok();
                }
                OPTION_RELAY_MSG if step + 1 < STEER_STEPS => x = enter(x + hdr)?,
                OPTION_RELAY_MSG => return None,
                _ => x += hdr + be16(x + OPTION_LEN as usize),
            }
        }
        None
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    #[test]
    fn program_bytes() {
        let p = v4::steering_program(4);
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
        assert_eq!(v4::steer_index(&payload, 4), 0x0107 % 4);
        assert_eq!(v4::steer_index(&payload, 5), 0x0107 % 5);
        assert_eq!(v4::steer_index(&payload, 1), 0);
        assert_eq!(v4::steer_index(&payload, 0), 0);
        payload[30] = 0x80;
        assert_eq!(v4::steer_index(&payload, 3), (0x8000_0107_u32 % 3) as usize);
        // 34 bytes are enough, 33 are not.
        assert_eq!(
            v4::steer_index(&payload[..34], 3),
            (0x8000_0107_u32 % 3) as usize
        );
        assert_eq!(v4::steer_index(&payload[..33], 3), 0);
        assert_eq!(v4::steer_index(&[], 3), 0);
    }

    /// A classic BPF interpreter for the instructions the steering programs use, with the
    /// kernel's rules: a load outside the datagram ends the program with 0, and `len` is the
    /// UDP payload's length. It returns `None` for an instruction it does not know, or a jump
    /// or fall-through out of the program (which the kernel's checker would have refused).
    fn run(program: &[libc::sock_filter], p: &[u8]) -> Option<u32> {
        use libc::*;
        let (mut a, mut x, mut pc) = (0u32, 0u32, 0usize);
        let load = |at: u32, size: usize| -> Option<u32> {
            let at = usize::try_from(at).ok()?;
            let b = p.get(at..at.checked_add(size)?)?;
            Some(b.iter().fold(0, |v, &b| (v << 8) | u32::from(b)))
        };
        loop {
            let i = program.get(pc)?;
            let code = u32::from(i.code);
            pc += 1;
            let size = match code & 0x18 {
                BPF_W => 4,
                BPF_H => 2,
                _ => 1,
            };
            let jump = |taken: bool| usize::from(if taken { i.jt } else { i.jf });
            match code {
                c if c == BPF_LD | BPF_W | BPF_LEN => a = p.len() as u32,
                c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_ABS => match load(i.k, size) {
                    Some(v) => a = v,
                    None => return Some(0),
                },
                c if c & 0x07 == BPF_LD && c & 0xe0 == BPF_IND => {
                    match load(x.checked_add(i.k)?, size) {
                        Some(v) => a = v,
                        None => return Some(0),
                    }
                }
                c if c == BPF_LDX | BPF_W | BPF_IMM => x = i.k,
                c if c == BPF_ALU | BPF_ADD | BPF_K => a = a.wrapping_add(i.k),
                c if c == BPF_ALU | BPF_ADD | BPF_X => a = a.wrapping_add(x),
                c if c == BPF_ALU | BPF_SUB | BPF_K => a = a.wrapping_sub(i.k),
                c if c == BPF_ALU | BPF_MOD | BPF_K => a %= i.k,
                c if c == BPF_MISC | BPF_TAX => x = a,
                c if c == BPF_MISC | BPF_TXA => a = x,
                c if c == BPF_JMP | BPF_JA => pc += usize::try_from(i.k).ok()?,
                c if c == BPF_JMP | BPF_JEQ | BPF_K => pc += jump(a == i.k),
                c if c == BPF_JMP | BPF_JGE | BPF_K => pc += jump(a >= i.k),
                c if c == BPF_JMP | BPF_JGT | BPF_K => pc += jump(a > i.k),
                c if c == BPF_JMP | BPF_JGE | BPF_X => pc += jump(a >= x),
                c if c == BPF_RET | BPF_A => return Some(a),
                c if c == BPF_RET | BPF_K => return Some(i.k),
                _ => return None,
            }
        }
    }

    #[test]
    fn the_interpreter_runs_the_v4_program_as_steer_index_says() {
        let mut p = [0u8; 40];
        p[30..34].copy_from_slice(&0x8000_0107_u32.to_be_bytes());
        for n in 1..6 {
            let want = v4::steer_index(&p, n as usize) as u32;
            assert_eq!(run(&v4::steering_program(n), &p), Some(want));
            assert_eq!(run(&v4::steering_program(n), &p[..33]), Some(0));
        }
    }

    /// One DHCPv6 option: code, length, value.
    fn option(code: u16, value: &[u8]) -> Vec<u8> {
        let mut b = code.to_be_bytes().to_vec();
        b.extend((value.len() as u16).to_be_bytes());
        b.extend_from_slice(value);
        b
    }

    /// A SOLICIT with `before` options ahead of CLIENTID(`duid`), wrapped in `hops` relay
    /// layers that each put an interface-id ahead of their RELAY_MSG.
    fn relayed(duid: &[u8], before: usize, hops: usize) -> Vec<u8> {
        let mut m = vec![1, 0xaa, 0xbb, 0xcc];
        for _ in 0..before {
            m.extend(option(8, &[0, 0]));
        }
        m.extend(option(1, duid));
        m.extend(option(3, &[0; 12]));
        for h in 0..hops {
            let mut r = vec![12, h as u8];
            r.extend([0x20; 32]);
            r.extend(option(18, b"eth0"));
            r.extend(option(9, &m));
            m = r;
        }
        m
    }

    #[test]
    fn v6_steering_reads_the_last_four_bytes_of_the_duid_through_relays() {
        let duid = [
            0, 1, 0, 1, 0x2a, 0, 0, 0, 0xfe, 0x54, 0x00, 0x12, 0x34, 0x57,
        ];
        let word = 0x0012_3457_u32;
        for n in 1..9u32 {
            let program = v6::steering_program(n);
            for hops in 0..4 {
                let p = relayed(&duid, 1, hops);
                let want = (word % n) as usize;
                assert_eq!(v6::steer_index(&p, n as usize), Some(want), "{hops} hops");
                assert_eq!(run(&program, &p), Some(want as u32), "{hops} hops");
            }
        }
        // The walk ends: too many options ahead of the DUID, a DUID too short or too long, none
        // at all, a truncated datagram.
        let program = v6::steering_program(4);
        let lost = [
            relayed(&duid, v6::STEER_STEPS, 0),
            relayed(&duid, v6::STEER_STEPS - 2, 1),
            relayed(&duid[..3], 0, 1),
            relayed(&[7; 131], 0, 1),
            relayed(&duid, 0, 1)[..60].to_vec(),
            vec![12; 11],
            vec![1, 0, 0, 0, 0, 8, 0, 2, 0, 0, 0, 0],
        ];
        for p in &lost {
            assert_eq!(v6::steer_index(p, 4), None, "{p:?}");
            assert_eq!(run(&program, p), Some(v6::NO_INDEX), "{p:?}");
        }
        // The last step that still reaches it.
        let p = relayed(&duid, v6::STEER_STEPS - 1, 0);
        assert_eq!(run(&program, &p), Some(word % 4));
        assert_eq!(
            v6::steer_index(&relayed(&[7; 130], 0, 1), 4),
            Some(0x0707_0707 % 4)
        );
        assert_eq!(v6::steer_index(&p, 0), None);
    }

    #[test]
    fn v6_programs_assemble_for_every_group_size() {
        for n in [1, 2, 3, 64, 1024, u32::from(u16::MAX)] {
            let p = v6::steering_program(n);
            assert!(p.len() < 4096, "{} instructions", p.len());
            let last = p.last().expect("instructions");
            assert_eq!(u32::from(last.code), libc::BPF_RET | libc::BPF_K);
        }
    }

    /// A datagram made of DHCPv6-shaped pieces and noise: message headers of either kind,
    /// options with any code (often 1 and 9), lengths that lie, truncation anywhere.
    fn datagram() -> impl Strategy<Value = Vec<u8>> {
        let piece = prop_oneof![
            any::<u8>().prop_map(|t| vec![t, 0, 0, 0]),
            Just({
                let mut r = vec![12, 0];
                r.extend([0x20; 32]);
                r
            }),
            (
                prop_oneof![Just(1u16), Just(9u16), any::<u16>()],
                proptest::collection::vec(any::<u8>(), 0..140),
                any::<bool>(),
            )
                .prop_map(|(code, value, honest)| {
                    let mut o = option(code, &value);
                    if !honest {
                        o[2] ^= 0x01;
                    }
                    o
                }),
            (0u16..140).prop_map(|l| {
                let mut o = vec![0, 9];
                o.extend(l.to_be_bytes());
                o
            }),
        ];
        (
            proptest::collection::vec(piece, 0..12),
            any::<bool>(),
            any::<usize>(),
        )
            .prop_map(|(pieces, truncate, cut)| {
                let mut p: Vec<u8> = pieces.concat();
                if truncate {
                    p.truncate(cut % (p.len() + 1));
                }
                p
            })
    }

    /// A relayed (or direct) client message built right, then perhaps damaged: options of any
    /// code around the CLIENTID, a DUID of any length, up to three relay layers, and maybe one
    /// byte overwritten and the end cut off.
    fn message() -> impl Strategy<Value = Vec<u8>> {
        let options = || {
            proptest::collection::vec(
                (
                    prop_oneof![Just(8u16), Just(18), Just(37), any::<u16>()],
                    proptest::collection::vec(any::<u8>(), 0..20),
                ),
                0..6,
            )
            .prop_map(|v| v.iter().map(|(c, d)| option(*c, d)).collect::<Vec<_>>())
        };
        (
            options(),
            proptest::collection::vec(any::<u8>(), 0..140),
            options(),
            proptest::collection::vec(options(), 0..4),
            proptest::option::of((any::<usize>(), any::<u8>())),
            proptest::option::of(any::<usize>()),
        )
            .prop_map(|(before, duid, after, relays, damage, cut)| {
                let mut m = vec![3, 1, 2, 3];
                m.extend(before.concat());
                m.extend(option(1, &duid));
                m.extend(after.concat());
                for (hop, opts) in relays.iter().enumerate() {
                    let mut r = vec![12, hop as u8];
                    r.extend([0x20; 32]);
                    r.extend(opts.concat());
                    r.extend(option(9, &m));
                    m = r;
                }
                if let Some((at, byte)) = damage {
                    let at = at % m.len();
                    m[at] = byte;
                }
                if let Some(cut) = cut {
                    m.truncate(cut % (m.len() + 1));
                }
                m
            })
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2048))]

        /// The program the kernel runs and the function the server's tests call agree on
        /// every input, and the program never loads outside the datagram (that would return
        /// 0, not the "no index" answer).
        #[test]
        fn v6_program_agrees_with_steer_index(
            p in prop_oneof![message(), datagram()],
            n in 1u32..9,
        ) {
            let want = v6::steer_index(&p, n as usize).map_or(v6::NO_INDEX, |k| k as u32);
            prop_assert_eq!(run(&v6::steering_program(n), &p), Some(want));
        }
    }
}
