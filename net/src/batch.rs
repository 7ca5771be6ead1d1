//! Batched receive and send (`recvmmsg`, `sendmmsg`): one system call for many datagrams.
//!
//! A worker owns one [`RecvBatch`] and one [`SendBatch`], made once at startup; every buffer,
//! address, `iovec`, control-message area and `mmsghdr` they need is allocated then, so
//! [`V4Socket::recv_batch`] and [`V4Socket::send_batch`] allocate nothing. The `mmsghdr` array
//! points into the batch's own heap buffers; those pointers are rewritten just before each call
//! (so they never go stale when the batch is moved) and are read only by the kernel.
//!
//! nix's `sendmmsg` shares one set of control messages across the batch, but every reply needs
//! its own `IP_PKTINFO` (interface and source address), so both directions build the `mmsghdr`
//! array here and call libc directly.

use std::io;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;

use nix::errno::Errno;

use crate::error::{Error, Result};
use crate::v4::{CmsgBuf, PKTINFO_SPACE, RECV_CMSG_SPACE, RecvMeta, SendMeta, V4Socket};

/// Most datagrams one batch may hold: the kernel handles at most `UIO_MAXIOV` (1024) messages
/// per `recvmmsg`/`sendmmsg` call and silently ignores the rest.
pub const MAX_BATCH: usize = 1024;

/// Check a batch shape and return the bytes its buffers take.
fn batch_bytes(count: usize, buf_size: usize) -> Result<usize> {
    if count == 0 || count > MAX_BATCH {
        return Err(Error::InvalidConfig("a batch holds 1 to 1024 datagrams"));
    }
    if buf_size == 0 {
        return Err(Error::InvalidConfig("batch buffers must not be empty"));
    }
    count
        .checked_mul(buf_size)
        .ok_or(Error::InvalidConfig("batch too large for memory"))
}

fn empty_iovec() -> libc::iovec {
    libc::iovec {
        iov_base: std::ptr::null_mut(),
        iov_len: 0,
    }
}

fn empty_mmsghdr() -> libc::mmsghdr {
    // SAFETY: `mmsghdr` is plain data (pointers, lengths, flags; private padding on some
    // targets, hence no struct literal); all-zero is a valid value: null pointers, zero lengths.
    unsafe { std::mem::zeroed() }
}

fn sockaddr_in(addr: SocketAddrV4) -> libc::sockaddr_in {
    libc::sockaddr_in {
        sin_family: libc::AF_INET as libc::sa_family_t,
        sin_port: addr.port().to_be(),
        sin_addr: libc::in_addr {
            s_addr: u32::from(*addr.ip()).to_be(),
        },
        sin_zero: [0; 8],
    }
}

/// Preallocated room for receiving up to `capacity` datagrams of up to `buf_size` bytes each in
/// one [`V4Socket::recv_batch`]; what was received is read with [`get`](Self::get) or
/// [`iter`](Self::iter) until the next receive.
pub struct RecvBatch {
    buf_size: usize,
    /// `capacity` buffers of `buf_size` bytes, back to back.
    bufs: Box<[u8]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[libc::sockaddr_in]>,
    cmsgs: Box<[CmsgBuf<RECV_CMSG_SPACE>]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// The datagrams of the last receive that are usable: slot and metadata. Capacity
    /// `capacity`, so pushing never reallocates.
    ready: Vec<(usize, RecvMeta)>,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` (what makes the type `!Send`) only ever point
// into this batch's own heap allocations; they are rewritten before every receive and
// dereferenced only by the kernel during `recv_batch`, which holds `&mut self`. Moving the
// batch to another thread moves the allocations' owner with them and shares nothing.
unsafe impl Send for RecvBatch {}

impl RecvBatch {
    /// Room for `capacity` datagrams (1 to [`MAX_BATCH`]) of up to `buf_size` bytes each. A
    /// datagram longer than `buf_size` is dropped and counted, never cut: size it for the
    /// largest datagram the server accepts (e.g. 1500 for DHCPv4 on Ethernet, or 65507).
    pub fn new(capacity: usize, buf_size: usize) -> Result<Self> {
        let bytes = batch_bytes(capacity, buf_size)?;
        let addr = sockaddr_in(SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0));
        Ok(Self {
            buf_size,
            bufs: vec![0; bytes].into_boxed_slice(),
            iovs: vec![empty_iovec(); capacity].into_boxed_slice(),
            addrs: vec![addr; capacity].into_boxed_slice(),
            cmsgs: vec![CmsgBuf::new(); capacity].into_boxed_slice(),
            hdrs: vec![empty_mmsghdr(); capacity].into_boxed_slice(),
            ready: Vec::with_capacity(capacity),
        })
    }

    /// Most datagrams one receive takes.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Size of each datagram buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Usable datagrams from the last receive.
    pub fn len(&self) -> usize {
        self.ready.len()
    }

    /// No usable datagram from the last receive.
    pub fn is_empty(&self) -> bool {
        self.ready.is_empty()
    }

    /// Datagram `i` of the last receive (`i < len()`), with how it arrived.
    ///
    /// # Panics
    /// If `i >= self.len()`.
    pub fn get(&self, i: usize) -> (&[u8], RecvMeta) {
        let (slot, meta) = self.ready[i];
        let start = slot * self.buf_size;
        (&self.bufs[start..start + meta.len.min(self.buf_size)], meta)
    }

    /// The usable datagrams of the last receive, in arrival order.
    pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], RecvMeta)> + '_ {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Point every header at its own buffer, address and control area, with full lengths: the
    /// kernel overwrites the lengths and flags on each receive.
    fn prepare(&mut self) {
        let size = self.buf_size;
        let bufs = self.bufs.as_mut_ptr();
        for (i, iov) in self.iovs.iter_mut().enumerate() {
            iov.iov_base = bufs.wrapping_add(i * size).cast();
            iov.iov_len = size;
        }
        let iovs = self.iovs.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        let cmsgs = self.cmsgs.as_mut_ptr();
        for (i, m) in self.hdrs.iter_mut().enumerate() {
            let h = &mut m.msg_hdr;
            h.msg_name = addrs.wrapping_add(i).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iovs.wrapping_add(i);
            h.msg_iovlen = 1;
            h.msg_control = cmsgs.wrapping_add(i).cast();
            h.msg_controllen = RECV_CMSG_SPACE as _;
            h.msg_flags = 0;
            m.msg_len = 0;
        }
    }
}

impl std::fmt::Debug for RecvBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RecvBatch")
            .field("capacity", &self.capacity())
            .field("buf_size", &self.buf_size)
            .field("len", &self.len())
            .finish_non_exhaustive()
    }
}

/// Preallocated room for up to `capacity` replies of up to `buf_size` bytes each, each with its
/// own [`SendMeta`], sent together by [`V4Socket::send_batch`].
pub struct SendBatch {
    buf_size: usize,
    /// Queued datagrams.
    len: usize,
    /// `capacity` buffers of `buf_size` bytes, back to back.
    bufs: Box<[u8]>,
    lens: Box<[usize]>,
    metas: Box<[SendMeta]>,
    addrs: Box<[libc::sockaddr_in]>,
    cmsgs: Box<[CmsgBuf<PKTINFO_SPACE>]>,
    /// Whether datagram `i` carries `cmsgs[i]` (`IP_PKTINFO`) or lets the kernel choose.
    with_pktinfo: Box<[bool]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

// SAFETY: as for `RecvBatch`: the raw pointers in `iovs` and `hdrs` point only into this
// batch's own heap allocations, are rewritten before every send and are read only by the
// kernel during `send_batch`, which holds `&mut self`.
unsafe impl Send for SendBatch {}

impl SendBatch {
    /// Room for `capacity` replies (1 to [`MAX_BATCH`]) of up to `buf_size` bytes each.
    pub fn new(capacity: usize, buf_size: usize) -> Result<Self> {
        let bytes = batch_bytes(capacity, buf_size)?;
        let nowhere = SocketAddrV4::new(Ipv4Addr::UNSPECIFIED, 0);
        let meta = SendMeta {
            dst: nowhere,
            ifindex: 0,
            src: None,
        };
        Ok(Self {
            buf_size,
            len: 0,
            bufs: vec![0; bytes].into_boxed_slice(),
            lens: vec![0; capacity].into_boxed_slice(),
            metas: vec![meta; capacity].into_boxed_slice(),
            addrs: vec![sockaddr_in(nowhere); capacity].into_boxed_slice(),
            cmsgs: vec![CmsgBuf::new(); capacity].into_boxed_slice(),
            with_pktinfo: vec![false; capacity].into_boxed_slice(),
            iovs: vec![empty_iovec(); capacity].into_boxed_slice(),
            hdrs: vec![empty_mmsghdr(); capacity].into_boxed_slice(),
        })
    }

    /// Most replies the batch holds.
    pub fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    /// Size of each reply buffer.
    pub fn buf_size(&self) -> usize {
        self.buf_size
    }

    /// Replies queued.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Nothing queued.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// No room for another reply.
    pub fn is_full(&self) -> bool {
        self.len == self.capacity()
    }

    /// Drop every queued reply unsent.
    pub fn clear(&mut self) {
        self.len = 0;
    }

    /// Queue a copy of `payload`, to be sent as `meta` says (like [`V4Socket::send`]: an
    /// `IP_PKTINFO` control message when `meta.ifindex` or `meta.src` is set).
    ///
    /// `false`, queueing nothing, when the batch [is full](Self::is_full), when `payload` is
    /// longer than [`buf_size`](Self::buf_size), or when `meta.ifindex` is beyond what the kernel
    /// takes (`i32::MAX`). So a worker sends the batch and pushes again when it was full, and
    /// falls back to [`V4Socket::send`] (which reports the reason) when it still fails.
    pub fn push(&mut self, payload: &[u8], meta: &SendMeta) -> bool {
        let i = self.len;
        if i == self.capacity() || payload.len() > self.buf_size {
            return false;
        }
        let Ok(ifindex) = libc::c_int::try_from(meta.ifindex) else {
            return false;
        };
        let start = i * self.buf_size;
        self.bufs[start..start + payload.len()].copy_from_slice(payload);
        self.lens[i] = payload.len();
        self.metas[i] = *meta;
        self.addrs[i] = sockaddr_in(meta.dst);
        let pktinfo = ifindex != 0 || meta.src.is_some();
        if pktinfo {
            self.cmsgs[i] = CmsgBuf::pktinfo(ifindex, meta.src.unwrap_or(Ipv4Addr::UNSPECIFIED));
        }
        self.with_pktinfo[i] = pktinfo;
        self.len += 1;
        true
    }

    /// Point the headers of the queued replies at their buffers, addresses and control
    /// messages.
    fn prepare(&mut self) {
        let size = self.buf_size;
        let bufs = self.bufs.as_mut_ptr();
        for (i, iov) in self.iovs[..self.len].iter_mut().enumerate() {
            iov.iov_base = bufs.wrapping_add(i * size).cast();
            iov.iov_len = self.lens[i];
        }
        let iovs = self.iovs.as_mut_ptr();
        let addrs = self.addrs.as_mut_ptr();
        let cmsgs = self.cmsgs.as_mut_ptr();
        for (i, m) in self.hdrs[..self.len].iter_mut().enumerate() {
            let h = &mut m.msg_hdr;
            h.msg_name = addrs.wrapping_add(i).cast();
            h.msg_namelen = size_of::<libc::sockaddr_in>() as libc::socklen_t;
            h.msg_iov = iovs.wrapping_add(i);
            h.msg_iovlen = 1;
            if self.with_pktinfo[i] {
                h.msg_control = cmsgs.wrapping_add(i).cast();
                h.msg_controllen = PKTINFO_SPACE as _;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            h.msg_flags = 0;
            m.msg_len = 0;
        }
    }
}

impl std::fmt::Debug for SendBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SendBatch")
            .field("capacity", &self.capacity())
            .field("buf_size", &self.buf_size)
            .field("len", &self.len)
            .finish_non_exhaustive()
    }
}

/// What [`V4Socket::send_batch`] did with the queued replies: `sent + failed` of them.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SendReport {
    /// Replies the kernel took whole.
    pub sent: usize,
    /// Replies it refused ([`Error::Send`]) or took only in part ([`Error::ShortSend`]).
    pub failed: usize,
    /// Why the first failed one failed, naming its destination.
    pub first_error: Option<Error>,
}

impl SendReport {
    fn fail(&mut self, err: Error) {
        tracing::debug!(error = %err, "batched reply not sent");
        self.failed += 1;
        self.first_error.get_or_insert(err);
    }
}

impl V4Socket {
    /// Receive up to `batch.capacity()` datagrams with one `recvmmsg(2)`; returns how many are
    /// usable, to read with [`RecvBatch::get`] or [`RecvBatch::iter`].
    ///
    /// With `wait` it blocks for the first datagram, up to the socket's read timeout
    /// ([`set_read_timeout`](Self::set_read_timeout)), then takes whatever else is queued
    /// without waiting (`MSG_WAITFORONE`); without `wait` it never blocks (`MSG_DONTWAIT`).
    /// `Ok(0)` on timeout, on an interrupting signal, when nothing is queued, and when every
    /// datagram received was dropped. Like [`recv`](Self::recv) it drops datagrams longer than
    /// the batch's buffers ([`truncated_drops`](Self::truncated_drops)) and those without an
    /// AF_INET source; one without `IP_PKTINFO` is dropped and counted
    /// ([`missing_pktinfo_drops`](Self::missing_pktinfo_drops)) rather than failing the batch.
    pub fn recv_batch(&self, batch: &mut RecvBatch, wait: bool) -> Result<usize> {
        batch.ready.clear();
        batch.prepare();
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        let vlen = batch.hdrs.len() as libc::c_uint;
        // SAFETY: `prepare` pointed each of the `vlen` headers at its own `sockaddr_in`
        // (`msg_namelen` its size), its own one-entry `iovec` over `buf_size` bytes of `bufs`,
        // and its own cmsghdr-aligned control area (`msg_controllen` its size). All are heap
        // allocations owned by `batch`, which is borrowed mutably for the call, so they stay put
        // and nothing else touches them; the kernel writes no more than those lengths, plus
        // `msg_len` and the lengths and flags in each header. `vlen` <= MAX_BATCH fits. A null
        // timeout is allowed (the socket's SO_RCVTIMEO applies).
        let got = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                batch.hdrs.as_mut_ptr(),
                vlen,
                flags,
                std::ptr::null_mut(),
            )
        };
        let got = match Errno::result(got) {
            Ok(n) => usize::try_from(n).unwrap_or(0).min(batch.hdrs.len()),
            // EWOULDBLOCK is EAGAIN on Linux: the SO_RCVTIMEO timeout, or nothing queued.
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
            Err(e) => return Err(Error::Recv { source: e.into() }),
        };
        for (i, m) in batch.hdrs[..got].iter().enumerate() {
            let h = &m.msg_hdr;
            let addr = &batch.addrs[i];
            if (h.msg_namelen as usize) < size_of::<libc::sockaddr_in>()
                || addr.sin_family != libc::AF_INET as libc::sa_family_t
            {
                // An AF_INET datagram socket always reports an AF_INET source; nothing to answer.
                continue;
            }
            let src = SocketAddrV4::new(
                Ipv4Addr::from(u32::from_be(addr.sin_addr.s_addr)),
                u16::from_be(addr.sin_port),
            );
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                self.truncated.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, buf = batch.buf_size, "dropped datagram longer than the buffer");
                continue;
            }
            // `msg_controllen` is a `size_t` on glibc but a `socklen_t` on musl.
            #[allow(clippy::unnecessary_cast)]
            let control_len = h.msg_controllen as usize;
            let Some(info) = batch.cmsgs[i].find_pktinfo(control_len) else {
                self.no_pktinfo.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, "dropped datagram without IP_PKTINFO");
                continue;
            };
            batch
                .ready
                .push((i, RecvMeta::new(m.msg_len as usize, src, &info)));
        }
        Ok(batch.ready.len())
    }

    /// Send every reply queued in `batch` with `sendmmsg(2)`, each with its own destination and
    /// `IP_PKTINFO`, and empty the batch.
    ///
    /// The kernel may take only the first part of a batch (it stops at the first message it
    /// refuses); the rest is sent again from there. A refused reply (`ENETUNREACH`, `ENODEV`,
    /// `EMSGSIZE`, a firewall's `EPERM`, ...) is counted in the report and skipped, not fatal.
    /// `Err` only when the socket itself is unusable (`EBADF`, `ENOTSOCK`, `EFAULT`); the batch
    /// is emptied then too.
    pub fn send_batch(&self, batch: &mut SendBatch) -> Result<SendReport> {
        let mut report = SendReport::default();
        let n = batch.len;
        if n == 0 {
            return Ok(report);
        }
        batch.prepare();
        let mut start = 0;
        let result = loop {
            if start >= n {
                break Ok(report);
            }
            let rest = &mut batch.hdrs[start..n];
            // SAFETY: `prepare` pointed each of the queued headers (`rest` is a tail of them) at
            // its own `sockaddr_in` (`msg_namelen` its size), its own one-entry `iovec` over the
            // reply's `lens[i]` initialised bytes in `bufs`, and either its own complete,
            // cmsghdr-aligned `IP_PKTINFO` message (`msg_controllen` PKTINFO_SPACE) or no control
            // data (null, 0). All are heap allocations owned by `batch`, which is borrowed
            // mutably for the call, so they stay put and unchanged; the kernel only reads them and
            // writes each header's `msg_len`. `rest.len()` <= MAX_BATCH fits a c_uint.
            let r = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    rest.as_mut_ptr(),
                    rest.len() as libc::c_uint,
                    0,
                )
            };
            match Errno::result(r) {
                Ok(k) => {
                    // 0 is impossible for a non-empty batch; count it as a refusal of the first
                    // message so the loop always moves on.
                    let k = usize::try_from(k).unwrap_or(0).min(n - start);
                    if k == 0 {
                        report.fail(Error::Send {
                            dst: batch.metas[start].dst,
                            ifindex: batch.metas[start].ifindex,
                            source: io::ErrorKind::WriteZero.into(),
                        });
                        start += 1;
                        continue;
                    }
                    for i in start..start + k {
                        let (sent, len) = (batch.hdrs[i].msg_len as usize, batch.lens[i]);
                        if sent == len {
                            report.sent += 1;
                        } else {
                            report.fail(Error::ShortSend {
                                dst: batch.metas[i].dst,
                                sent,
                                len,
                            });
                        }
                    }
                    start += k;
                }
                Err(Errno::EINTR) => {}
                Err(e @ (Errno::EBADF | Errno::ENOTSOCK | Errno::EFAULT)) => {
                    break Err(Error::Send {
                        dst: batch.metas[start].dst,
                        ifindex: batch.metas[start].ifindex,
                        source: e.into(),
                    });
                }
                // The kernel refused the first message of `rest`: skip it and go on.
                Err(e) => {
                    report.fail(Error::Send {
                        dst: batch.metas[start].dst,
                        ifindex: batch.metas[start].ifindex,
                        source: e.into(),
                    });
                    start += 1;
                }
            }
        };
        batch.clear();
        result
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn batch_shapes() {
        for (count, size) in [(0, 1500), (MAX_BATCH + 1, 1500), (4, 0), (2, usize::MAX)] {
            assert!(
                matches!(RecvBatch::new(count, size), Err(Error::InvalidConfig(_))),
                "recv {count} x {size}"
            );
            assert!(
                matches!(SendBatch::new(count, size), Err(Error::InvalidConfig(_))),
                "send {count} x {size}"
            );
        }
        let b = RecvBatch::new(8, 1500).expect("recv batch");
        assert_eq!((b.capacity(), b.buf_size(), b.len()), (8, 1500, 0));
        assert!(b.is_empty() && b.iter().next().is_none());
    }

    #[test]
    fn push_rejects_what_it_cannot_queue() {
        let meta = SendMeta {
            dst: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 68),
            ifindex: 0,
            src: None,
        };
        let mut b = SendBatch::new(2, 8).expect("send batch");
        assert!(!b.push(&[0; 9], &meta), "longer than the buffer");
        let huge = SendMeta {
            ifindex: u32::MAX,
            ..meta
        };
        assert!(!b.push(b"x", &huge), "ifindex beyond c_int");
        assert!(b.is_empty());
        assert!(b.push(&[1; 8], &meta));
        assert!(b.push(b"", &meta), "an empty datagram is a datagram");
        assert!(b.is_full() && !b.push(b"x", &meta));
        b.clear();
        assert!(b.is_empty() && b.push(b"x", &meta));
    }
}
