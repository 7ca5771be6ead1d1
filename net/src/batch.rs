//! Batched receive and send (`recvmmsg`, `sendmmsg`): one system call for many datagrams.
//!
//! A worker owns one receive batch and one send batch ([`v4::RecvBatch`](crate::v4::RecvBatch) and
//! [`v4::SendBatch`](crate::v4::SendBatch), and their v6 namesakes), made once at startup; every buffer,
//! address, `iovec`, control-message area and `mmsghdr` they need is allocated then, so
//! `recv_batch` and `send_batch` allocate nothing. The `mmsghdr` array points into the batch's
//! own heap buffers; those pointers are rewritten just before each call (so they never go stale
//! when the batch is moved) and are read only by the kernel.
//!
//! nix's `sendmmsg` shares one set of control messages across the batch, but every reply needs
//! its own packet info (interface and source address), so both directions build the `mmsghdr`
//! array here and call libc directly.
//!
//! The machinery is written once, generic over the address family ([`Family`]: the `sockaddr`
//! type, the packet-info control message and the metadata types), and monomorphised per family,
//! so the IPv4 path does exactly the work it did before IPv6 existed. The public batch types are
//! thin, concrete wrappers, one pair per family.

use std::fmt;
use std::io;
use std::mem::size_of;
use std::os::fd::RawFd;
use std::sync::atomic::{AtomicU64, Ordering};

use nix::errno::Errno;
use nix::sys::socket::SockaddrLike;

use crate::cmsg::CmsgArea;
use crate::error::{Error, Result};
use crate::family::Family;

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

/// The sender in `addr`, of which the kernel filled `namelen` bytes; `None` if it is not of
/// family `F` (impossible on a socket of the family; the datagram is then unanswerable).
#[inline]
fn source<F: Family>(addr: &F::NixAddr, namelen: usize) -> Option<F::Src> {
    (namelen >= size_of::<F::NixAddr>() && addr.family() == Some(F::AF))
        .then(|| F::Src::from(*addr))
}

/// The drop counters of the socket a batch receives on.
pub(crate) struct Drops<'a> {
    /// Datagrams longer than the buffer.
    pub(crate) truncated: &'a AtomicU64,
    /// Datagrams without packet info.
    pub(crate) no_pktinfo: &'a AtomicU64,
}

/// The receive machinery behind each family's `RecvBatch`.
pub struct RecvRing<F: Family> {
    buf_size: usize,
    /// `capacity` buffers of `buf_size` bytes, back to back.
    bufs: Box<[u8]>,
    iovs: Box<[libc::iovec]>,
    addrs: Box<[F::NixAddr]>,
    cmsgs: Box<[F::RecvCmsg]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// The datagrams of the last receive that are usable: slot and metadata. Capacity
    /// `capacity`, so pushing never reallocates.
    ready: Vec<(usize, F::RecvMeta)>,
}

impl<F: Family> fmt::Debug for RecvRing<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecvRing")
            .field("capacity", &self.capacity())
            .field("buf_size", &self.buf_size)
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers in `iovs` and `hdrs` (what makes the type `!Send`) only ever point
// into this ring's own heap allocations; they are rewritten before every receive and
// dereferenced only by the kernel during `recv`, which holds `&mut self`. Moving the ring to
// another thread moves the allocations' owner with them and shares nothing. The other fields are
// plain data (`F::NixAddr`, `F::RecvCmsg`, `F::RecvMeta` are `Copy` values without pointers).
unsafe impl<F: Family> Send for RecvRing<F> {}

impl<F: Family> RecvRing<F> {
    fn new(capacity: usize, buf_size: usize) -> Result<Self> {
        let bytes = batch_bytes(capacity, buf_size)?;
        Ok(Self {
            buf_size,
            bufs: vec![0; bytes].into_boxed_slice(),
            iovs: vec![empty_iovec(); capacity].into_boxed_slice(),
            addrs: vec![F::NixAddr::from(F::ANY); capacity].into_boxed_slice(),
            cmsgs: vec![F::RecvCmsg::default(); capacity].into_boxed_slice(),
            hdrs: vec![empty_mmsghdr(); capacity].into_boxed_slice(),
            ready: Vec::with_capacity(capacity),
        })
    }

    fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    fn get(&self, i: usize) -> (&[u8], F::RecvMeta) {
        let (slot, meta) = self.ready[i];
        let start = slot * self.buf_size;
        let len = F::meta_len(&meta).min(self.buf_size);
        (&self.bufs[start..start + len], meta)
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
            h.msg_namelen = size_of::<F::NixAddr>() as libc::socklen_t;
            h.msg_iov = iovs.wrapping_add(i);
            h.msg_iovlen = 1;
            h.msg_control = cmsgs.wrapping_add(i).cast();
            h.msg_controllen = size_of::<F::RecvCmsg>() as _;
            h.msg_flags = 0;
            m.msg_len = 0;
        }
    }

    /// `recvmmsg` on `fd` into this ring; see [`Socket::recv_batch`](crate::Socket::recv_batch)
    /// for the contract.
    pub(crate) fn recv(&mut self, fd: RawFd, drops: &Drops<'_>, wait: bool) -> Result<usize> {
        self.ready.clear();
        self.prepare();
        let flags = if wait {
            libc::MSG_WAITFORONE
        } else {
            libc::MSG_DONTWAIT
        };
        let vlen = self.hdrs.len() as libc::c_uint;
        // SAFETY: `prepare` pointed each of the `vlen` headers at its own `F::NixAddr`
        // (`msg_namelen` its size), its own one-entry `iovec` over `buf_size` bytes of `bufs`,
        // and its own cmsghdr-aligned control area (`msg_controllen` its size). All are heap
        // allocations owned by `self`, which is borrowed mutably for the call, so they stay put
        // and nothing else touches them; the kernel writes no more than those lengths, plus
        // `msg_len` and the lengths and flags in each header. `vlen` <= MAX_BATCH fits. A null
        // timeout is allowed (the socket's SO_RCVTIMEO applies).
        let got = unsafe {
            libc::recvmmsg(
                fd,
                self.hdrs.as_mut_ptr(),
                vlen,
                flags,
                std::ptr::null_mut(),
            )
        };
        let got = match Errno::result(got) {
            Ok(n) => usize::try_from(n).unwrap_or(0).min(self.hdrs.len()),
            // EWOULDBLOCK is EAGAIN on Linux: the SO_RCVTIMEO timeout, or nothing queued.
            Err(Errno::EAGAIN | Errno::EINTR) => return Ok(0),
            Err(e) => return Err(Error::Recv { source: e.into() }),
        };
        for (i, m) in self.hdrs[..got].iter().enumerate() {
            let h = &m.msg_hdr;
            let Some(src) = source::<F>(&self.addrs[i], h.msg_namelen as usize) else {
                // A datagram socket always reports a source of its own family; nothing to
                // answer.
                continue;
            };
            if h.msg_flags & libc::MSG_TRUNC != 0 {
                drops.truncated.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, buf = self.buf_size, "dropped datagram longer than the buffer");
                continue;
            }
            // `msg_controllen` is a `size_t` on glibc but a `socklen_t` on musl.
            #[allow(clippy::unnecessary_cast)]
            let control_len = h.msg_controllen as usize;
            let (level, ty) = F::PKTINFO_CMSG;
            let Some(info) = self.cmsgs[i].find_data::<F::Info>(control_len, level, ty) else {
                drops.no_pktinfo.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(%src, "dropped datagram without {}", F::PKTINFO);
                continue;
            };
            self.ready
                .push((i, F::recv_meta(m.msg_len as usize, src, &info)));
        }
        Ok(self.ready.len())
    }
}

/// The send machinery behind each family's `SendBatch`.
pub struct SendRing<F: Family> {
    buf_size: usize,
    /// Queued datagrams.
    len: usize,
    /// `capacity` buffers of `buf_size` bytes, back to back.
    bufs: Box<[u8]>,
    lens: Box<[usize]>,
    metas: Box<[F::SendMeta]>,
    addrs: Box<[F::NixAddr]>,
    cmsgs: Box<[F::SendCmsg]>,
    /// Whether datagram `i` carries `cmsgs[i]` (packet info) or lets the kernel choose.
    with_pktinfo: Box<[bool]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
}

impl<F: Family> fmt::Debug for SendRing<F> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SendRing")
            .field("capacity", &self.capacity())
            .field("buf_size", &self.buf_size)
            .finish_non_exhaustive()
    }
}

// SAFETY: as for `RecvRing`: the raw pointers in `iovs` and `hdrs` point only into this ring's
// own heap allocations, are rewritten before every send and are read only by the kernel during
// `send`, which holds `&mut self`; the rest is plain data.
unsafe impl<F: Family> Send for SendRing<F> {}

impl<F: Family> SendRing<F> {
    fn new(capacity: usize, buf_size: usize) -> Result<Self> {
        let bytes = batch_bytes(capacity, buf_size)?;
        Ok(Self {
            buf_size,
            len: 0,
            bufs: vec![0; bytes].into_boxed_slice(),
            lens: vec![0; capacity].into_boxed_slice(),
            metas: vec![F::blank_send_meta(); capacity].into_boxed_slice(),
            addrs: vec![F::NixAddr::from(F::ANY); capacity].into_boxed_slice(),
            cmsgs: vec![F::SendCmsg::default(); capacity].into_boxed_slice(),
            with_pktinfo: vec![false; capacity].into_boxed_slice(),
            iovs: vec![empty_iovec(); capacity].into_boxed_slice(),
            hdrs: vec![empty_mmsghdr(); capacity].into_boxed_slice(),
        })
    }

    fn capacity(&self) -> usize {
        self.hdrs.len()
    }

    fn push(&mut self, payload: &[u8], meta: &F::SendMeta) -> bool {
        let i = self.len;
        if i == self.capacity() || payload.len() > self.buf_size {
            return false;
        }
        let Some(pktinfo) = F::encode(meta, &mut self.addrs[i], &mut self.cmsgs[i]) else {
            return false;
        };
        let start = i * self.buf_size;
        self.bufs[start..start + payload.len()].copy_from_slice(payload);
        self.lens[i] = payload.len();
        self.metas[i] = *meta;
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
            h.msg_namelen = size_of::<F::NixAddr>() as libc::socklen_t;
            h.msg_iov = iovs.wrapping_add(i);
            h.msg_iovlen = 1;
            if self.with_pktinfo[i] {
                h.msg_control = cmsgs.wrapping_add(i).cast();
                h.msg_controllen = size_of::<F::SendCmsg>() as _;
            } else {
                h.msg_control = std::ptr::null_mut();
                h.msg_controllen = 0;
            }
            h.msg_flags = 0;
            m.msg_len = 0;
        }
    }

    /// `sendmmsg` on `fd` of everything queued; see
    /// [`Socket::send_batch`](crate::Socket::send_batch) for the contract.
    pub(crate) fn send(&mut self, fd: RawFd) -> Result<SendReport> {
        let mut report = SendReport::default();
        let n = self.len;
        if n == 0 {
            return Ok(report);
        }
        self.prepare();
        let mut start = 0;
        let result = loop {
            if start >= n {
                break Ok(report);
            }
            let rest = &mut self.hdrs[start..n];
            // SAFETY: `prepare` pointed each of the queued headers (`rest` is a tail of them) at
            // its own `F::NixAddr` (`msg_namelen` its size), its own one-entry `iovec` over the
            // reply's `lens[i]` initialised bytes in `bufs`, and either its own complete,
            // cmsghdr-aligned packet-info message (`msg_controllen` the size of its `CmsgBuf`,
            // all of it initialised) or no control data (null, 0). All are heap allocations owned
            // by `self`, which is borrowed mutably for the call, so they stay put and unchanged;
            // the kernel only reads them and writes each header's `msg_len`. `rest.len()` <=
            // MAX_BATCH fits a c_uint.
            let r = unsafe { libc::sendmmsg(fd, rest.as_mut_ptr(), rest.len() as libc::c_uint, 0) };
            match Errno::result(r) {
                Ok(k) => {
                    // 0 is impossible for a non-empty batch; count it as a refusal of the first
                    // message so the loop always moves on.
                    let k = usize::try_from(k).unwrap_or(0).min(n - start);
                    if k == 0 {
                        report.fail(F::send_error(
                            &self.metas[start],
                            io::ErrorKind::WriteZero.into(),
                        ));
                        start += 1;
                        continue;
                    }
                    for i in start..start + k {
                        let (sent, len) = (self.hdrs[i].msg_len as usize, self.lens[i]);
                        if sent == len {
                            report.sent += 1;
                        } else {
                            report.fail(F::short_send(&self.metas[i], sent, len));
                        }
                    }
                    start += k;
                }
                Err(Errno::EINTR) => {}
                Err(e @ (Errno::EBADF | Errno::ENOTSOCK | Errno::EFAULT)) => {
                    break Err(F::send_error(&self.metas[start], e.into()));
                }
                // The kernel refused the first message of `rest`: skip it and go on.
                Err(e) => {
                    report.fail(F::send_error(&self.metas[start], e.into()));
                    start += 1;
                }
            }
        };
        self.len = 0;
        result
    }
}

/// The public batch types of one family: concrete wrappers around the generic rings, so that
/// each family's API reads (and documents) in its own types.
macro_rules! batch_types {
    (
        family: $fam:ty,
        recv_meta: $Meta:ident,
        send_meta: $SMeta:ident,
        $(#[$rdoc:meta])*
        recv: $Recv:ident,
        $(#[$sdoc:meta])*
        send: $Send:ident,
    ) => {
        $(#[$rdoc])*
        pub struct $Recv {
            pub(crate) ring: $crate::batch::RecvRing<$fam>,
        }

        impl $Recv {
            /// Room for `capacity` datagrams (1 to [`MAX_BATCH`](crate::MAX_BATCH)) of up to `buf_size` bytes
            /// each. A datagram longer than `buf_size` is dropped and counted, never cut: size it
            /// for the largest datagram the server accepts (e.g. 1500 for DHCP on Ethernet, or
            /// 65507).
            pub fn new(capacity: usize, buf_size: usize) -> $crate::error::Result<Self> {
                Ok(Self {
                    ring: $crate::batch::RecvRing::new(capacity, buf_size)?,
                })
            }

            /// Most datagrams one receive takes.
            pub fn capacity(&self) -> usize {
                self.ring.capacity()
            }

            /// Size of each datagram buffer.
            pub fn buf_size(&self) -> usize {
                self.ring.buf_size
            }

            /// Usable datagrams from the last receive.
            pub fn len(&self) -> usize {
                self.ring.ready.len()
            }

            /// No usable datagram from the last receive.
            pub fn is_empty(&self) -> bool {
                self.ring.ready.is_empty()
            }

            /// Datagram `i` of the last receive (`i < len()`), with how it arrived.
            ///
            /// # Panics
            /// If `i >= self.len()`.
            pub fn get(&self, i: usize) -> (&[u8], $Meta) {
                self.ring.get(i)
            }

            /// The usable datagrams of the last receive, in arrival order.
            pub fn iter(&self) -> impl ExactSizeIterator<Item = (&[u8], $Meta)> + '_ {
                (0..self.len()).map(|i| self.get(i))
            }
        }

        impl std::fmt::Debug for $Recv {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($Recv))
                    .field("capacity", &self.capacity())
                    .field("buf_size", &self.buf_size())
                    .field("len", &self.len())
                    .finish_non_exhaustive()
            }
        }

        $(#[$sdoc])*
        pub struct $Send {
            pub(crate) ring: $crate::batch::SendRing<$fam>,
        }

        impl $Send {
            /// Room for `capacity` replies (1 to [`MAX_BATCH`](crate::MAX_BATCH)) of up to `buf_size` bytes each.
            pub fn new(capacity: usize, buf_size: usize) -> $crate::error::Result<Self> {
                Ok(Self {
                    ring: $crate::batch::SendRing::new(capacity, buf_size)?,
                })
            }

            /// Most replies the batch holds.
            pub fn capacity(&self) -> usize {
                self.ring.capacity()
            }

            /// Size of each reply buffer.
            pub fn buf_size(&self) -> usize {
                self.ring.buf_size
            }

            /// Replies queued.
            pub fn len(&self) -> usize {
                self.ring.len
            }

            /// Nothing queued.
            pub fn is_empty(&self) -> bool {
                self.ring.len == 0
            }

            /// No room for another reply.
            pub fn is_full(&self) -> bool {
                self.ring.len == self.capacity()
            }

            /// Drop every queued reply unsent.
            pub fn clear(&mut self) {
                self.ring.len = 0;
            }

            #[doc = concat!(
                "Queue a copy of `payload`, to be sent as `meta` says (like ",
                "[`Socket::send`](crate::Socket::send): a packet-info control message when ",
                "`meta` names an interface or a source).\n\n",
                "`false`, queueing nothing, when the batch [is full](Self::is_full), when ",
                "`payload` is longer than [`buf_size`](Self::buf_size), or when the interface ",
                "index is beyond what the kernel takes (`i32::MAX`). So a worker sends the batch ",
                "and pushes again when it was full, and falls back to ",
                "[`Socket::send`](crate::Socket::send) (which reports the reason) when it still ",
                "fails."
            )]
            pub fn push(&mut self, payload: &[u8], meta: &$SMeta) -> bool {
                self.ring.push(payload, meta)
            }
        }

        impl std::fmt::Debug for $Send {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.debug_struct(stringify!($Send))
                    .field("capacity", &self.capacity())
                    .field("buf_size", &self.buf_size())
                    .field("len", &self.len())
                    .finish_non_exhaustive()
            }
        }
    };
}

/// The IPv4 batch types, re-exported by [`crate::v4`].
pub(crate) mod v4 {
    use crate::v4::{RecvMeta, SendMeta, V4};

    batch_types! {
        family: V4,
        recv_meta: RecvMeta,
        send_meta: SendMeta,
        /// Preallocated room for receiving up to `capacity` IPv4 datagrams of up to `buf_size`
        /// bytes each in one [`Socket::recv_batch`](crate::Socket::recv_batch); what was
        /// received is read with [`get`](Self::get) or [`iter`](Self::iter) until the next receive.
        recv: RecvBatch,
        /// Preallocated room for up to `capacity` IPv4 replies of up to `buf_size` bytes each, each
        /// with its own [`SendMeta`], sent together by
        /// [`Socket::send_batch`](crate::Socket::send_batch).
        send: SendBatch,
    }
}

/// The IPv6 batch types, re-exported by [`crate::v6`].
pub(crate) mod v6 {
    use crate::v6::{RecvMeta, SendMeta, V6};

    batch_types! {
        family: V6,
        recv_meta: RecvMeta,
        send_meta: SendMeta,
        /// Preallocated room for receiving up to `capacity` IPv6 datagrams of up to `buf_size`
        /// bytes each in one [`Socket::recv_batch`](crate::Socket::recv_batch); what was
        /// received is read with [`get`](Self::get) or [`iter`](Self::iter) until the next receive.
        recv: RecvBatch,
        /// Preallocated room for up to `capacity` IPv6 replies of up to `buf_size` bytes each, each
        /// with its own [`SendMeta`], sent together by
        /// [`Socket::send_batch`](crate::Socket::send_batch).
        send: SendBatch,
    }
}

/// What [`send_batch`](crate::Socket::send_batch) did with the queued replies: `sent + failed`
/// of them.
#[derive(Debug, Default)]
#[non_exhaustive]
pub struct SendReport {
    /// Replies the kernel took whole.
    pub sent: usize,
    /// Replies it refused ([`Error::Send`], [`Error::Send6`]) or took only in part
    /// ([`Error::ShortSend`], [`Error::ShortSend6`]).
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

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddrV4};

    use super::*;
    use crate::v4::{RecvBatch, SendBatch, SendMeta};

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
