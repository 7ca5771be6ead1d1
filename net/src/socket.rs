//! One UDP socket of a `SO_REUSEPORT` group, written once for both families.
//!
//! Each worker owns one socket of the group; the kernel spreads datagrams across the group by a
//! hash of the 4-tuple, or by client with [`v4::attach_steering`](crate::v4::attach_steering) and
//! [`v6::attach_steering`](crate::v6::attach_steering). Sockets block with a short receive timeout
//! rather than being nonblocking, so a worker needs no poller and still notices shutdown within
//! [`DEFAULT_READ_TIMEOUT`]. Every socket asks for the family's packet-info control message
//! (`IP_PKTINFO`, `IPV6_PKTINFO`): on receive it says where a datagram arrived, on send it pins
//! the outgoing interface and the source address. Why each family needs it, and what it adds
//! (IPv4 broadcast, IPv6 multicast), is in [`crate::v4`] and [`crate::v6`].
//!
//! [`Socket`] is generic over the [`Family`]; the single and batched receive and send are the
//! same code for both, monomorphised, and allocate nothing.

use std::io::{self, IoSlice, IoSliceMut};
use std::marker::PhantomData;
use std::net::SocketAddr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{MsgFlags, recvmsg, setsockopt, sockopt};
use socket2::{MsgHdr, Protocol, SockAddr, Type};

use crate::batch::{Drops, SendReport};
use crate::error::{Error, Result};
use crate::family::Family;

/// Receive timeout every socket of a group starts with: how long a worker blocked in
/// [`Socket::recv`] may take to notice that it should stop.
pub const DEFAULT_READ_TIMEOUT: Duration = Duration::from_millis(200);

/// The settings every socket of a group takes, whatever its family.
#[derive(Clone, Copy, Debug)]
pub struct GroupOpts<'a> {
    pub(crate) workers: usize,
    pub(crate) port: u16,
    pub(crate) device: Option<&'a String>,
    pub(crate) recv_buffer: Option<usize>,
    pub(crate) send_buffer: Option<usize>,
}

impl GroupOpts<'_> {
    /// Refuses settings no group can have: no workers, port 0, an empty device name.
    pub(crate) fn check(&self) -> Result<()> {
        if self.workers == 0 {
            return Err(Error::InvalidConfig("workers must be at least 1"));
        }
        if self.port == 0 {
            return Err(Error::InvalidConfig(
                "port must not be 0: every socket of a group binds the same known port",
            ));
        }
        if self.device.is_some_and(|d| d.is_empty()) {
            return Err(Error::InvalidConfig("device must not be empty"));
        }
        Ok(())
    }
}

/// The error for a failed setup step `what` of the socket for `addr`.
pub(crate) fn setup_err(what: &'static str, addr: SocketAddr) -> impl FnOnce(io::Error) -> Error {
    move |source| Error::SocketSetup { what, addr, source }
}

/// One `SO_REUSEPORT` UDP socket of a group, owned by one worker; [`v4::Socket`](crate::v4::Socket)
/// or [`v6::Socket`](crate::v6::Socket).
///
/// Options: `SO_REUSEADDR`, `SO_REUSEPORT`, the family's own (see [`crate::v4`],
/// [`crate::v6`]), close-on-exec, and blocking with a receive timeout
/// ([`DEFAULT_READ_TIMEOUT`]) so that [`recv`](Self::recv) returns `Ok(None)` now and then and
/// the worker can look at its shutdown flag.
///
/// `recv` and `send` take `&self` and keep their control-message space on the stack, so they
/// neither allocate nor need a lock; the batched variants ([`recv_batch`](Self::recv_batch),
/// [`send_batch`](Self::send_batch)) take a caller-owned, preallocated batch instead.
#[derive(Debug)]
pub struct Socket<F: Family> {
    sock: socket2::Socket,
    /// Datagrams dropped because they did not fit the caller's buffer.
    truncated: AtomicU64,
    /// Datagrams [`recv_batch`](Self::recv_batch) dropped for want of packet info.
    no_pktinfo: AtomicU64,
    family: PhantomData<F>,
}

/// Opens `cfg.workers` sockets bound to the same address and port (one `SO_REUSEPORT` group),
/// one per worker: [`v4::open_group`](crate::v4::open_group) or
/// [`v6::open_group`](crate::v6::open_group), for code written over the family.
pub fn open_group<F: Family>(cfg: &F::Config) -> Result<Vec<Socket<F>>> {
    let opts = F::group_opts(cfg);
    opts.check()?;
    F::check(cfg)?;
    let addr = F::bind_addr(cfg);
    let group = (0..opts.workers)
        .map(|_| Socket::open(cfg, &opts, addr.into()))
        .collect::<Result<Vec<_>>>()?;
    tracing::debug!(
        %addr,
        device = opts.device.map_or("*", String::as_str),
        workers = opts.workers,
        multicast_ifindexes = ?F::multicast_ifindexes(cfg),
        "opened SO_REUSEPORT group"
    );
    Ok(group)
}

impl<F: Family> Socket<F> {
    /// Opens one socket of a group and binds it to `addr`: `SO_REUSEADDR`, `SO_REUSEPORT`,
    /// the family's options, the device, the buffer sizes and [`DEFAULT_READ_TIMEOUT`]; then
    /// what the family does to a bound socket.
    fn open(cfg: &F::Config, opts: &GroupOpts<'_>, addr: SocketAddr) -> Result<Self> {
        let setup = |what| setup_err(what, addr);
        let sock = socket2::Socket::new(F::DOMAIN, Type::DGRAM, Some(Protocol::UDP))
            .map_err(setup("create socket"))?;
        sock.set_reuse_address(true)
            .map_err(setup("set SO_REUSEADDR"))?;
        sock.set_reuse_port(true)
            .map_err(setup("set SO_REUSEPORT"))?;
        F::set_options(&sock, addr)?;
        if let Some(device) = opts.device {
            sock.bind_device(Some(device.as_bytes()))
                .map_err(|source| Error::BindDevice {
                    device: device.clone(),
                    addr,
                    source,
                })?;
        }
        if let Some(size) = opts.recv_buffer {
            set_buffer(&sock, Buffer::Recv, size).map_err(setup("set SO_RCVBUF"))?;
        }
        if let Some(size) = opts.send_buffer {
            set_buffer(&sock, Buffer::Send, size).map_err(setup("set SO_SNDBUF"))?;
        }
        sock.set_read_timeout(Some(DEFAULT_READ_TIMEOUT))
            .map_err(setup("set SO_RCVTIMEO"))?;
        sock.bind(&SockAddr::from(addr))
            .map_err(|source| Error::Bind { addr, source })?;
        F::after_bind(&sock, cfg)?;
        Ok(Self {
            sock,
            truncated: AtomicU64::new(0),
            no_pktinfo: AtomicU64::new(0),
            family: PhantomData,
        })
    }

    /// Receive one datagram into `buf`.
    ///
    /// `Ok(None)` when the receive timeout expired or a signal interrupted the wait, and also
    /// when a datagram was dropped because it was longer than `buf` (counted in
    /// [`truncated_drops`](Self::truncated_drops)): a cut-off DHCP message must not be parsed.
    /// A datagram without packet info is an error ([`Error::MissingPacketInfo`],
    /// [`Error::MissingPacketInfo6`]).
    pub fn recv(&self, buf: &mut [u8]) -> Result<Option<F::RecvMeta>> {
        self.recv_with(buf, MsgFlags::empty())
    }

    /// Like [`recv`](Self::recv) but never waits: `Ok(None)` at once when nothing is queued.
    /// Workers use it while replies wait for the journal, so they keep draining the socket.
    pub fn try_recv(&self, buf: &mut [u8]) -> Result<Option<F::RecvMeta>> {
        self.recv_with(buf, MsgFlags::MSG_DONTWAIT)
    }

    fn recv_with(&self, buf: &mut [u8], flags: MsgFlags) -> Result<Option<F::RecvMeta>> {
        let mut cmsg = F::RecvCmsg::default();
        let mut iov = [IoSliceMut::new(buf)];
        let msg = match recvmsg::<F::NixAddr>(
            self.sock.as_raw_fd(),
            &mut iov,
            Some(cmsg.as_mut()),
            flags,
        ) {
            Ok(msg) => msg,
            // EWOULDBLOCK is EAGAIN on Linux: the SO_RCVTIMEO timeout.
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
            Err(e) => return Err(Error::Recv { source: e.into() }),
        };
        let Some(src) = msg.address else {
            // A datagram socket always reports a source of its own family; nothing to answer.
            return Ok(None);
        };
        let src = F::Src::from(src);
        if msg.flags.contains(MsgFlags::MSG_TRUNC) {
            self.truncated.fetch_add(1, Ordering::Relaxed);
            tracing::debug!(%src, buf = msg.bytes, "dropped datagram longer than the buffer");
            return Ok(None);
        }
        // `cmsgs` fails only on MSG_CTRUNC, which cannot happen with room for two pktinfos.
        let info = msg
            .cmsgs()
            .ok()
            .and_then(|mut cmsgs| cmsgs.find_map(F::pktinfo));
        let Some(info) = info else {
            return Err(F::missing_pktinfo(src));
        };
        Ok(Some(F::recv_meta(msg.bytes, src, &info)))
    }

    /// Send `buf` as one datagram as `meta` says. Without an interface or a source in `meta`
    /// this is a plain `sendto`; otherwise a packet-info control message carries them.
    ///
    /// nix's `sendmsg` would allocate its control buffer per call, so this goes through
    /// socket2's `sendmsg` with the control message built on the stack.
    pub fn send(&self, buf: &[u8], meta: &F::SendMeta) -> Result<()> {
        let mut addr = F::NixAddr::from(F::ANY);
        let mut cmsg = F::SendCmsg::default();
        let Some(pktinfo) = F::encode(meta, &mut addr, &mut cmsg) else {
            return Err(F::send_error(
                meta,
                io::Error::new(io::ErrorKind::InvalidInput, "interface index out of range"),
            ));
        };
        let iov = [IoSlice::new(buf)];
        let dst: SockAddr = F::dst(meta).into();
        let mut msg = MsgHdr::new().with_addr(&dst).with_buffers(&iov);
        if pktinfo {
            msg = msg.with_control(cmsg.as_ref());
        }
        let sent = loop {
            match self.sock.sendmsg(&msg, 0) {
                Ok(n) => break n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(F::send_error(meta, e)),
            }
        };
        if sent != buf.len() {
            return Err(F::short_send(meta, sent, buf.len()));
        }
        Ok(())
    }

    /// Receive up to `batch.capacity()` datagrams with one `recvmmsg(2)`; returns how many are
    /// usable, to read with the batch's `get` or `iter`.
    ///
    /// With `wait` it blocks for the first datagram, up to the socket's read timeout
    /// ([`set_read_timeout`](Self::set_read_timeout)), then takes whatever else is queued
    /// without waiting (`MSG_WAITFORONE`); without `wait` it never blocks (`MSG_DONTWAIT`).
    /// `Ok(0)` on timeout, on an interrupting signal, when nothing is queued, and when every
    /// datagram received was dropped. Like [`recv`](Self::recv) it drops datagrams longer than
    /// the batch's buffers ([`truncated_drops`](Self::truncated_drops)) and those with a source
    /// of another family; one without packet info is dropped and counted
    /// ([`missing_pktinfo_drops`](Self::missing_pktinfo_drops)) rather than failing the batch.
    pub fn recv_batch(&self, batch: &mut F::RecvBatch, wait: bool) -> Result<usize> {
        let drops = Drops {
            truncated: &self.truncated,
            no_pktinfo: &self.no_pktinfo,
        };
        F::recv_ring(batch).recv(self.sock.as_raw_fd(), &drops, wait)
    }

    /// Send every reply queued in `batch` with `sendmmsg(2)`, each with its own destination and
    /// packet info, and empty the batch.
    ///
    /// The kernel may take only the first part of a batch (it stops at the first message it
    /// refuses); the rest is sent again from there. A refused reply (`ENETUNREACH`, `ENODEV`,
    /// `EMSGSIZE`, a firewall's `EPERM`, ...) is counted in the report and skipped, not fatal.
    /// `Err` only when the socket itself is unusable (`EBADF`, `ENOTSOCK`, `EFAULT`); the batch
    /// is emptied then too.
    pub fn send_batch(&self, batch: &mut F::SendBatch) -> Result<SendReport> {
        F::send_ring(batch).send(self.sock.as_raw_fd())
    }

    /// The address and port this socket is bound to.
    pub fn local_addr(&self) -> Result<F::Src> {
        let query = |source| Error::SocketQuery {
            what: "read local address",
            source,
        };
        let addr = self.sock.local_addr().map_err(query)?;
        F::local(&addr)
            .ok_or_else(|| query(io::Error::new(io::ErrorKind::InvalidData, F::NOT_FAMILY)))
    }

    /// Set how long [`recv`](Self::recv) blocks before returning `Ok(None)`; `None` blocks until
    /// a datagram arrives. A zero duration is rejected (the kernel would read it as "forever").
    pub fn set_read_timeout(&self, d: Option<Duration>) -> Result<()> {
        if d == Some(Duration::ZERO) {
            return Err(Error::InvalidConfig(
                "read timeout must be positive, or None to block",
            ));
        }
        self.sock.set_read_timeout(d).map_err(|source| {
            let local = self.local_addr().unwrap_or(F::ANY);
            setup_err("set SO_RCVTIMEO", local.into())(source)
        })
    }

    /// Datagrams [`recv`](Self::recv), [`try_recv`](Self::try_recv) and
    /// [`recv_batch`](Self::recv_batch) dropped because they were longer than the buffer.
    pub fn truncated_drops(&self) -> u64 {
        self.truncated.load(Ordering::Relaxed)
    }

    /// Datagrams [`recv_batch`](Self::recv_batch) dropped because they came without packet info
    /// (where [`recv`](Self::recv) returns an error). Not expected to move: every socket of a
    /// group asks for it.
    pub fn missing_pktinfo_drops(&self) -> u64 {
        self.no_pktinfo.load(Ordering::Relaxed)
    }
}

impl<F: Family> AsFd for Socket<F> {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl<F: Family> AsRawFd for Socket<F> {
    fn as_raw_fd(&self) -> RawFd {
        self.sock.as_raw_fd()
    }
}

#[derive(Clone, Copy)]
enum Buffer {
    Recv,
    Send,
}

/// Set a socket buffer size, past the sysctl cap if allowed (`SO_*BUFFORCE` needs
/// `CAP_NET_ADMIN`), and warn if the kernel granted less than asked.
fn set_buffer(sock: &socket2::Socket, which: Buffer, size: usize) -> io::Result<()> {
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
