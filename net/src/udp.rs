//! What the IPv4 and IPv6 socket groups share: checking a group's settings, opening one socket
//! of it, and the receive, send and timeout calls; each family adds its own options and
//! control message ([`crate::v4`], [`crate::v6`]).

use std::fmt;
use std::io::{self, IoSlice, IoSliceMut};
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use nix::errno::Errno;
use nix::sys::socket::{ControlMessageOwned, MsgFlags, SockaddrLike, recvmsg};
use socket2::{Domain, MsgHdr, Protocol, SockAddr, Socket, Type};

use crate::error::{Error, Result};
use crate::v4::{Buffer, DEFAULT_READ_TIMEOUT, set_buffer};

/// The settings every socket of a group takes, whatever its family.
#[derive(Clone, Copy, Debug)]
pub(crate) struct GroupOpts<'a> {
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

/// Opens one UDP socket of a group and binds it to `addr`: `SO_REUSEADDR`, `SO_REUSEPORT`,
/// then the family's own options (`family`), the device, the buffer sizes and
/// [`DEFAULT_READ_TIMEOUT`].
pub(crate) fn open(
    domain: Domain,
    addr: SocketAddr,
    opts: &GroupOpts<'_>,
    family: impl FnOnce(&Socket) -> Result<()>,
) -> Result<Socket> {
    let setup = |what| setup_err(what, addr);
    let sock =
        Socket::new(domain, Type::DGRAM, Some(Protocol::UDP)).map_err(setup("create socket"))?;
    sock.set_reuse_address(true)
        .map_err(setup("set SO_REUSEADDR"))?;
    sock.set_reuse_port(true)
        .map_err(setup("set SO_REUSEPORT"))?;
    family(&sock)?;
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
    Ok(sock)
}

/// One datagram as [`recv`] hands it over: its length, its sender and the packet-info control
/// message `pktinfo` picked out, if there was one.
pub(crate) type Received<S, I> = (usize, S, Option<I>);

/// Receives one datagram into `buf` with `cmsg` as control-message space; `Ok(None)` on the
/// receive timeout, a signal, a sender of another family, or a datagram longer than `buf`
/// (counted in `truncated`).
pub(crate) fn recv<A, S, I>(
    sock: &Socket,
    buf: &mut [u8],
    cmsg: &mut [u8],
    flags: MsgFlags,
    truncated: &AtomicU64,
    pktinfo: impl Fn(ControlMessageOwned) -> Option<I>,
) -> Result<Option<Received<S, I>>>
where
    A: SockaddrLike + Copy,
    S: From<A> + fmt::Display,
{
    let mut iov = [IoSliceMut::new(buf)];
    let msg = match recvmsg::<A>(sock.as_raw_fd(), &mut iov, Some(cmsg), flags) {
        Ok(msg) => msg,
        // EWOULDBLOCK is EAGAIN on Linux: the SO_RCVTIMEO timeout.
        Err(Errno::EAGAIN | Errno::EINTR) => return Ok(None),
        Err(e) => return Err(Error::Recv { source: e.into() }),
    };
    let Some(src) = msg.address else {
        // A datagram socket always reports a source of its own family; nothing to answer.
        return Ok(None);
    };
    let src = S::from(src);
    if msg.flags.contains(MsgFlags::MSG_TRUNC) {
        truncated.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(%src, buf = msg.bytes, "dropped datagram longer than the buffer");
        return Ok(None);
    }
    // `cmsgs` fails only on MSG_CTRUNC, which cannot happen with room for two pktinfos.
    let info = msg
        .cmsgs()
        .ok()
        .and_then(|mut cmsgs| cmsgs.find_map(&pktinfo));
    Ok(Some((msg.bytes, src, info)))
}

/// Sends `buf` to `addr` in one `sendmsg`, with the control message `cmsg` when there is one;
/// retried when a signal interrupts it. The number of bytes the kernel took.
pub(crate) fn send(
    sock: &Socket,
    buf: &[u8],
    addr: &SockAddr,
    cmsg: Option<&[u8]>,
) -> io::Result<usize> {
    let iov = [IoSlice::new(buf)];
    let mut msg = MsgHdr::new().with_addr(addr).with_buffers(&iov);
    if let Some(cmsg) = cmsg {
        msg = msg.with_control(cmsg);
    }
    loop {
        match sock.sendmsg(&msg, 0) {
            Ok(n) => return Ok(n),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// The address `sock` is bound to, when `pick` finds it of the expected family (`family`
/// names it for the error).
pub(crate) fn local_addr<T>(
    sock: &Socket,
    pick: impl FnOnce(&SockAddr) -> Option<T>,
    family: &'static str,
) -> Result<T> {
    let query = |source| Error::SocketQuery {
        what: "read local address",
        source,
    };
    let addr = sock.local_addr().map_err(query)?;
    pick(&addr).ok_or_else(|| query(io::Error::new(io::ErrorKind::InvalidData, family)))
}

/// Sets `SO_RCVTIMEO`, refusing a zero duration (the kernel would read it as "forever");
/// `local` names the socket in the error.
pub(crate) fn set_read_timeout(
    sock: &Socket,
    d: Option<Duration>,
    local: impl FnOnce() -> SocketAddr,
) -> Result<()> {
    if d == Some(Duration::ZERO) {
        return Err(Error::InvalidConfig(
            "read timeout must be positive, or None to block",
        ));
    }
    sock.set_read_timeout(d)
        .map_err(|source| setup_err("set SO_RCVTIMEO", local())(source))
}
