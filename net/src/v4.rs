//! IPv4 UDP sockets in `SO_REUSEPORT` groups, with `IP_PKTINFO` in both directions.
//!
//! A DHCPv4 server must know which interface a request came in on (the subnet is chosen by it,
//! not by the source address, which is usually 0.0.0.0) and must send the reply out of that same
//! interface, from that interface's own address, often to 255.255.255.255 where routing alone
//! cannot pick the interface. `IP_PKTINFO` gives both: on receive it reports the arrival
//! interface, the local address of that interface and the header destination; on send it pins
//! the outgoing interface and the source address, per datagram, on an unbound-to-device socket.
//!
//! Each worker owns one socket of the group; the kernel spreads datagrams across the group by a
//! hash of the 4-tuple, or by client with [`attach_steering`](crate::attach_steering). Sockets
//! block with a short receive timeout rather than being nonblocking, so a worker needs no poller
//! and still notices shutdown within [`DEFAULT_READ_TIMEOUT`]. Batched receive and send
//! (`recvmmsg`, `sendmmsg`) go through [`RecvBatch`](crate::RecvBatch) and
//! [`SendBatch`](crate::SendBatch).

use std::io;
use std::mem::{align_of, size_of};
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrIn, setsockopt, sockopt};
use socket2::{Domain, SockAddr, Socket};

use crate::cmsg::{CmsgBuf, cmsg_len, cmsg_space};
use crate::error::{Error, Result};
use crate::udp::{self, GroupOpts, setup_err};

/// Receive timeout every socket of a group starts with: how long a worker blocked in
/// [`V4Socket::recv`] may take to notice that it should stop.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(200);

/// Where a datagram came from and how it arrived (from `IP_PKTINFO`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RecvMeta {
    /// Bytes of the datagram, at the start of the buffer given to [`V4Socket::recv`].
    pub len: usize,
    /// The sender's address and port.
    pub src: SocketAddrV4,
    /// Index of the interface the datagram arrived on (`ipi_ifindex`).
    pub ifindex: u32,
    /// The local address the kernel would answer from (`ipi_spec_dst`): for a unicast datagram
    /// its destination, for a broadcast one the primary address of the arrival interface.
    pub local: Ipv4Addr,
    /// The destination in the IP header (`ipi_addr`); 255.255.255.255 for a limited broadcast.
    pub dst: Ipv4Addr,
}

impl RecvMeta {
    /// The metadata of a `len`-byte datagram from `src` that arrived as `info` says.
    pub(crate) fn new(len: usize, src: SocketAddrV4, info: &libc::in_pktinfo) -> Self {
        Self {
            len,
            src,
            ifindex: u32::try_from(info.ipi_ifindex).unwrap_or(0),
            local: Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)),
            dst: Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr)),
        }
    }
}

/// How to send one reply.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct SendMeta {
    /// Destination address and port; may be 255.255.255.255 (every socket has `SO_BROADCAST`).
    pub dst: SocketAddrV4,
    /// Interface to send out of (`ipi_ifindex`); 0 lets routing decide. Needed for a limited
    /// broadcast on a host with more than one interface.
    pub ifindex: u32,
    /// Source address to use (`ipi_spec_dst`); `None` lets the kernel choose.
    pub src: Option<Ipv4Addr>,
}

/// How to open a group of worker sockets with [`open_v4_group`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct V4SocketConfig {
    /// Address to bind: 0.0.0.0 to hear broadcasts, or a specific address such as 127.0.0.1.
    pub bind: Ipv4Addr,
    /// UDP port (67 for a DHCPv4 server). Must not be 0: a group needs one known port.
    pub port: u16,
    /// Interface to restrict the sockets to (`SO_BINDTODEVICE`), `None` for all.
    pub device: Option<String>,
    /// Sockets in the group, one per worker; at least 1.
    pub workers: usize,
    /// `SO_RCVBUF` in bytes, `None` for the system default. Forced past `net.core.rmem_max`
    /// when the process may (`CAP_NET_ADMIN`); a warning is logged if the kernel grants less.
    pub recv_buffer: Option<usize>,
    /// `SO_SNDBUF` in bytes, `None` for the system default; forced like `recv_buffer`.
    pub send_buffer: Option<usize>,
}

impl Default for V4SocketConfig {
    /// The DHCPv4 server port on every interface, one worker, system buffer sizes.
    fn default() -> Self {
        Self {
            bind: Ipv4Addr::UNSPECIFIED,
            port: 67,
            device: None,
            workers: 1,
            recv_buffer: None,
            send_buffer: None,
        }
    }
}

/// One `SO_REUSEPORT` UDP socket of a group, owned by one worker.
///
/// Options: `SO_REUSEADDR`, `SO_REUSEPORT`, `SO_BROADCAST`, `IP_PKTINFO`, close-on-exec, and
/// blocking with a receive timeout ([`DEFAULT_READ_TIMEOUT`]) so that [`recv`](Self::recv)
/// returns `Ok(None)` now and then and the worker can look at its shutdown flag.
///
/// `recv` and `send` take `&self` and keep their control-message space on the stack, so they
/// neither allocate nor need a lock; the batched variants
/// ([`recv_batch`](Self::recv_batch), [`send_batch`](Self::send_batch)) take a caller-owned,
/// preallocated batch instead.
#[derive(Debug)]
pub struct V4Socket {
    pub(crate) sock: Socket,
    /// Datagrams dropped because they did not fit the caller's buffer.
    pub(crate) truncated: AtomicU64,
    /// Datagrams [`recv_batch`](Self::recv_batch) dropped for want of `IP_PKTINFO`.
    pub(crate) no_pktinfo: AtomicU64,
}

/// Open `cfg.workers` sockets bound to the same address and port (one `SO_REUSEPORT` group),
/// one per worker.
///
/// Fails as a whole: a socket that cannot be set up closes the ones opened before it. A port
/// held by a socket outside the group (another process, another user id, or a socket without
/// `SO_REUSEPORT`) gives [`Error::Bind`] with `AddrInUse`.
pub fn open_v4_group(cfg: &V4SocketConfig) -> Result<Vec<V4Socket>> {
    group_opts(cfg).check()?;
    let addr = SocketAddrV4::new(cfg.bind, cfg.port);
    let group = (0..cfg.workers)
        .map(|_| V4Socket::open(cfg, addr))
        .collect::<Result<Vec<_>>>()?;
    tracing::debug!(
        %addr,
        device = cfg.device.as_deref().unwrap_or("*"),
        workers = cfg.workers,
        "opened SO_REUSEPORT group"
    );
    Ok(group)
}

/// The settings of `cfg` that every family's group takes.
fn group_opts(cfg: &V4SocketConfig) -> GroupOpts<'_> {
    GroupOpts {
        workers: cfg.workers,
        port: cfg.port,
        device: cfg.device.as_ref(),
        recv_buffer: cfg.recv_buffer,
        send_buffer: cfg.send_buffer,
    }
}

impl V4Socket {
    fn open(cfg: &V4SocketConfig, addr: SocketAddrV4) -> Result<Self> {
        let setup = |what| setup_err(what, addr.into());
        let sock = udp::open(Domain::IPV4, addr.into(), &group_opts(cfg), |sock| {
            sock.set_broadcast(true)
                .map_err(setup("set SO_BROADCAST"))?;
            setsockopt(sock, sockopt::Ipv4PacketInfo, &true)
                .map_err(|e| setup("set IP_PKTINFO")(e.into()))?;
            Ok(())
        })?;
        Ok(Self {
            sock,
            truncated: AtomicU64::new(0),
            no_pktinfo: AtomicU64::new(0),
        })
    }

    /// Receive one datagram into `buf`.
    ///
    /// `Ok(None)` when the receive timeout expired or a signal interrupted the wait, and also
    /// when a datagram was dropped because it was longer than `buf` (counted in
    /// [`truncated_drops`](Self::truncated_drops)): a cut-off DHCP message must not be parsed.
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<RecvMeta>> {
        self.recv_with(buf, MsgFlags::empty())
    }

    /// Like [`V4Socket::recv`] but never waits: `Ok(None)` at once when nothing is queued.
    /// Workers use it while replies wait for the journal, so they keep draining the socket.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<RecvMeta>> {
        self.recv_with(buf, MsgFlags::MSG_DONTWAIT)
    }

    fn recv_with(&self, buf: &mut [u8], flags: MsgFlags) -> Result<Option<RecvMeta>> {
        let mut cmsg = CmsgBuf::<RECV_CMSG_SPACE>::new();
        let pktinfo = |c| match c {
            ControlMessageOwned::Ipv4PacketInfo(info) => Some(info),
            _ => None,
        };
        let received = udp::recv::<SockaddrIn, SocketAddrV4, _>(
            &self.sock,
            buf,
            &mut cmsg.bytes,
            flags,
            &self.truncated,
            pktinfo,
        )?;
        let Some((len, src, info)) = received else {
            return Ok(None);
        };
        let Some(info) = info else {
            return Err(Error::MissingPacketInfo { src });
        };
        Ok(Some(RecvMeta::new(len, src, &info)))
    }

    /// Send `buf` as one datagram as `meta` says. With `meta.ifindex == 0` and `meta.src ==
    /// None` this is a plain `sendto`; otherwise an `IP_PKTINFO` control message carries the
    /// interface and source address.
    ///
    /// nix's `sendmsg` would allocate its control buffer per call, so this goes through
    /// socket2's `sendmsg` with the control message built on the stack.
    pub fn send(&self, buf: &[u8], meta: &SendMeta) -> Result<()> {
        let send_err = |source: io::Error| Error::Send {
            dst: meta.dst,
            ifindex: meta.ifindex,
            source,
        };
        let ifindex = libc::c_int::try_from(meta.ifindex).map_err(|_| {
            send_err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "interface index out of range",
            ))
        })?;
        let cmsg = (ifindex != 0 || meta.src.is_some())
            .then(|| CmsgBuf::pktinfo(ifindex, meta.src.unwrap_or(Ipv4Addr::UNSPECIFIED)));
        let cmsg = cmsg.as_ref().map(|c| &c.bytes[..]);
        let sent = udp::send(&self.sock, buf, &SockAddr::from(meta.dst), cmsg).map_err(send_err)?;
        if sent != buf.len() {
            return Err(Error::ShortSend {
                dst: meta.dst,
                sent,
                len: buf.len(),
            });
        }
        Ok(())
    }

    /// The address and port this socket is bound to.
    pub fn local_addr(&self) -> Result<SocketAddrV4> {
        udp::local_addr(
            &self.sock,
            SockAddr::as_socket_ipv4,
            "local address is not IPv4",
        )
    }

    /// Set how long [`recv`](Self::recv) blocks before returning `Ok(None)`; `None` blocks until
    /// a datagram arrives. A zero duration is rejected (the kernel would read it as "forever").
    pub fn set_read_timeout(&self, d: Option<Duration>) -> Result<()> {
        udp::set_read_timeout(&self.sock, d, || {
            self.local_addr()
                .unwrap_or(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0))
                .into()
        })
    }

    /// Datagrams [`recv`](Self::recv), [`try_recv`](Self::try_recv) and
    /// [`recv_batch`](Self::recv_batch) dropped because they were longer than the buffer.
    pub fn truncated_drops(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }

    /// Datagrams [`recv_batch`](Self::recv_batch) dropped because they came without
    /// `IP_PKTINFO` (where [`recv`](Self::recv) returns [`Error::MissingPacketInfo`]). Not
    /// expected to move: every socket of a group asks for it.
    pub fn missing_pktinfo_drops(&self) -> u64 {
        self.no_pktinfo.load(Ordering::Relaxed)
    }

    /// [`set_arp_entry`](crate::set_arp_entry) through this socket instead of a fresh one: the
    /// same ioctl without a socket per reply. The entry goes into this socket's network
    /// namespace.
    pub fn set_arp_entry(&self, ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
        crate::arp::set_arp_entry_with(self.sock.as_fd(), ifname, ip, mac)
    }
}

impl AsFd for V4Socket {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsRawFd for V4Socket {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[derive(Clone, Copy)]
pub(crate) enum Buffer {
    Recv,
    Send,
}

/// Set a socket buffer size, past the sysctl cap if allowed (`SO_*BUFFORCE` needs
/// `CAP_NET_ADMIN`), and warn if the kernel granted less than asked.
pub(crate) fn set_buffer(sock: &Socket, which: Buffer, size: usize) -> io::Result<()> {
    let forced = match which {
        Buffer::Recv => setsockopt(sock, sockopt::RcvBufForce, &size),
        Buffer::Send => setsockopt(sock, sockopt::SndBufForce, &size),
    };
    match forced {
        Ok(()) => {}
        Err(Errno::EPERM) => match which {
            Buffer::Recv => sock.set_recv_buffer_size(size)?,
            Buffer::Send => sock.set_send_buffer_size(size)?,
        },
        Err(e) => return Err(e.into()),
    }
    // Linux doubles the value for its bookkeeping and reports the doubled figure.
    let granted = match which {
        Buffer::Recv => sock.recv_buffer_size()?,
        Buffer::Send => sock.send_buffer_size()?,
    } / 2;
    if granted < size {
        let (name, sysctl) = match which {
            Buffer::Recv => ("SO_RCVBUF", "net.core.rmem_max"),
            Buffer::Send => ("SO_SNDBUF", "net.core.wmem_max"),
        };
        tracing::warn!(
            requested = size,
            granted,
            "{name} capped by {sysctl}; raise it or run with CAP_NET_ADMIN"
        );
    }
    Ok(())
}

pub(crate) const PKTINFO_SPACE: usize = cmsg_space::<libc::in_pktinfo>();
const PKTINFO_LEN: usize = cmsg_len::<libc::in_pktinfo>();
/// Where a control message's data starts, relative to its header (`CMSG_DATA - cmsg`).
const CMSG_DATA_OFFSET: usize = PKTINFO_LEN - size_of::<libc::in_pktinfo>();
/// Receive room: one `IP_PKTINFO` is all a group socket asks for; twice that for slack.
pub(crate) const RECV_CMSG_SPACE: usize = 2 * PKTINFO_SPACE;

// The layout `CmsgBuf::pktinfo` writes by hand: a header, then the data at a properly aligned
// offset, all inside the space CMSG_SPACE reserves.
const _: () = assert!(CMSG_DATA_OFFSET >= size_of::<libc::cmsghdr>());
const _: () = assert!(CMSG_DATA_OFFSET.is_multiple_of(align_of::<libc::in_pktinfo>()));
const _: () = assert!(PKTINFO_LEN <= PKTINFO_SPACE);

impl<const N: usize> CmsgBuf<N> {
    /// The `IP_PKTINFO` among the first `len` bytes of control messages the kernel wrote here
    /// (`msg_controllen` after a receive), if there is a complete one.
    pub(crate) fn find_pktinfo(&self, len: usize) -> Option<libc::in_pktinfo> {
        self.find(len, libc::IPPROTO_IP, libc::IP_PKTINFO)
    }
}

impl CmsgBuf<PKTINFO_SPACE> {
    /// One `IP_PKTINFO` control message for `sendmsg`: out of interface `ifindex` (0: any)
    /// from source `spec_dst` (0.0.0.0: any). `ipi_addr` is ignored on send and left zero.
    pub(crate) fn pktinfo(ifindex: libc::c_int, spec_dst: Ipv4Addr) -> Self {
        let mut buf = Self::new();
        let base = buf.bytes.as_mut_ptr();
        let hdr = base.cast::<libc::cmsghdr>();
        // SAFETY: `bytes` is PKTINFO_SPACE long and aligned for `cmsghdr` (the `_align` field),
        // so a `cmsghdr` fits at its start, and an `in_pktinfo` at CMSG_DATA_OFFSET, which is
        // inside the space and aligned for it (const asserts above). Each field is written on
        // its own through a raw pointer, so only that field's bytes change and the zeroed rest
        // (padding included) stays initialised for the byte view handed to sendmsg.
        unsafe {
            (&raw mut (*hdr).cmsg_len).write(PKTINFO_LEN as _);
            (&raw mut (*hdr).cmsg_level).write(libc::IPPROTO_IP);
            (&raw mut (*hdr).cmsg_type).write(libc::IP_PKTINFO);
            let info = base.add(CMSG_DATA_OFFSET).cast::<libc::in_pktinfo>();
            (&raw mut (*info).ipi_ifindex).write(ifindex);
            (&raw mut (*info).ipi_spec_dst.s_addr).write(u32::from(spec_dst).to_be());
        }
        buf
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The hand-built control message must read back, through nix's own decoder path (the
    /// `CMSG_*` macros), as the pktinfo that was written.
    #[test]
    fn pktinfo_cmsg_matches_cmsg_macros() {
        let buf = CmsgBuf::pktinfo(7, Ipv4Addr::new(192, 0, 2, 1));
        // Decode with libc's macros, the way the kernel walks it.
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut mhdr: libc::msghdr = unsafe { std::mem::zeroed() };
        mhdr.msg_control = buf.bytes.as_ptr().cast_mut().cast();
        mhdr.msg_controllen = buf.bytes.len() as _;
        // SAFETY: mhdr points at `buf`, which lives for the whole block and holds one complete,
        // aligned control message of PKTINFO_SPACE bytes.
        unsafe {
            let c = libc::CMSG_FIRSTHDR(&mhdr);
            assert!(!c.is_null());
            assert_eq!((*c).cmsg_level, libc::IPPROTO_IP);
            assert_eq!((*c).cmsg_type, libc::IP_PKTINFO);
            assert_eq!((*c).cmsg_len as usize, PKTINFO_LEN);
            let info = libc::CMSG_DATA(c)
                .cast::<libc::in_pktinfo>()
                .read_unaligned();
            assert_eq!(info.ipi_ifindex, 7);
            assert_eq!(
                Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)),
                Ipv4Addr::new(192, 0, 2, 1)
            );
            assert_eq!(info.ipi_addr.s_addr, 0);
            assert!(libc::CMSG_NXTHDR(&mhdr, c).is_null());
        }
    }

    /// The receive-side parser finds what the send-side builder wrote, skips other control
    /// messages, and refuses a message cut short.
    #[test]
    fn find_pktinfo_reads_back_and_checks_bounds() {
        let one = CmsgBuf::pktinfo(7, Ipv4Addr::new(192, 0, 2, 1));
        let info = one.find_pktinfo(PKTINFO_SPACE).expect("pktinfo");
        assert_eq!(info.ipi_ifindex, 7);
        assert_eq!(
            info.ipi_spec_dst.s_addr,
            u32::from(Ipv4Addr::new(192, 0, 2, 1)).to_be()
        );
        assert!(
            one.find_pktinfo(PKTINFO_LEN).is_some(),
            "the last message needs no padding"
        );
        assert!(one.find_pktinfo(PKTINFO_LEN - 1).is_none(), "cut short");
        assert!(one.find_pktinfo(0).is_none());

        // Two messages: something else first (here IP_TOS in a pktinfo-sized frame), then the
        // pktinfo.
        let mut two = CmsgBuf::<RECV_CMSG_SPACE>::new();
        two.bytes[..PKTINFO_SPACE].copy_from_slice(&one.bytes);
        let second = CmsgBuf::pktinfo(9, Ipv4Addr::new(198, 51, 100, 1));
        two.bytes[PKTINFO_SPACE..].copy_from_slice(&second.bytes);
        let ty = std::mem::offset_of!(libc::cmsghdr, cmsg_type);
        two.bytes[ty..ty + 4].copy_from_slice(&libc::IP_TOS.to_ne_bytes());
        let info = two.find_pktinfo(RECV_CMSG_SPACE).expect("second message");
        assert_eq!(info.ipi_ifindex, 9);
        assert!(
            two.find_pktinfo(PKTINFO_SPACE).is_none(),
            "only the first message"
        );
    }

    #[test]
    fn config_errors() {
        let zero_workers = V4SocketConfig {
            workers: 0,
            ..V4SocketConfig::default()
        };
        assert!(matches!(
            open_v4_group(&zero_workers),
            Err(Error::InvalidConfig(_))
        ));
        let zero_port = V4SocketConfig {
            port: 0,
            ..V4SocketConfig::default()
        };
        assert!(matches!(
            open_v4_group(&zero_port),
            Err(Error::InvalidConfig(_))
        ));
    }
}
