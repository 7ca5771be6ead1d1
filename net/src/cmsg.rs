//! Control-message space shared by the IPv4 and IPv6 sockets, and the one parser both use.
//!
//! nix decodes control messages too, but its send side allocates and its batch side shares one
//! set of messages across every datagram; lessor needs one packet-info message per datagram with
//! no allocation, so it keeps a fixed, `cmsghdr`-aligned area per datagram and walks it with the
//! `CMSG_*` macros itself. The builders for each family's packet-info message live beside their
//! socket (`v4.rs`, `v6.rs`).

use std::mem::{align_of, size_of};

/// Control-message space aligned for `cmsghdr`, as the `CMSG_*` macros (and nix's iterator,
/// which takes `&cmsghdr` into it) require.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct CmsgBuf<const N: usize> {
    _align: [libc::cmsghdr; 0],
    pub(crate) bytes: [u8; N],
}

/// The payload of a control message this crate reads back.
///
/// # Safety
/// Every bit pattern of `size_of::<Self>()` bytes must be a valid `Self` (plain integers and
/// byte arrays, no references, no enums), so that reading one out of kernel-written bytes is
/// sound; and `Self` must have no padding, so that writing one whole ([`CmsgBuf::one`])
/// initialises every byte it covers.
pub unsafe trait CmsgData: Copy {}

// SAFETY: `in_pktinfo` is three integers (`c_int`, two `in_addr` = `u32`), no padding (asserted).
unsafe impl CmsgData for libc::in_pktinfo {}
const _: () = assert!(size_of::<libc::in_pktinfo>() == size_of::<libc::c_int>() + 8);
// SAFETY: `in6_pktinfo` is an `in6_addr` (16 bytes) and a `c_uint`, no padding (asserted).
unsafe impl CmsgData for libc::in6_pktinfo {}
const _: () = assert!(size_of::<libc::in6_pktinfo>() == 16 + size_of::<libc::c_uint>());

/// `CMSG_LEN(size_of::<T>())`: a header plus `T`, unpadded.
pub(crate) const fn cmsg_len<T>() -> usize {
    // SAFETY: CMSG_LEN is arithmetic on its argument (libc marks it unsafe only because it is a
    // macro in C); it reads no memory.
    unsafe { libc::CMSG_LEN(size_of::<T>() as libc::c_uint) as usize }
}

/// `CMSG_SPACE(size_of::<T>())`: a header plus `T`, padded for the next message.
pub(crate) const fn cmsg_space<T>() -> usize {
    // SAFETY: as for `cmsg_len`, CMSG_SPACE only computes.
    unsafe { libc::CMSG_SPACE(size_of::<T>() as libc::c_uint) as usize }
}

// The tests read back through the same `find` the receive paths use.
#[cfg(test)]
impl<const N: usize> CmsgBuf<N> {
    /// The packet info of family `F` among the first `len` bytes of control messages the kernel
    /// wrote here (`msg_controllen` after a receive), if there is a complete one.
    pub(crate) fn find_pktinfo<F: crate::Family>(&self, len: usize) -> Option<F::Info> {
        let (level, ty) = F::PKTINFO_CMSG;
        self.find(len, level, ty)
    }
}

impl<const N: usize> std::fmt::Debug for CmsgBuf<N> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CmsgBuf")
            .field("len", &N)
            .finish_non_exhaustive()
    }
}

/// A control-message area of some size: what the generic socket code asks of a [`CmsgBuf`].
pub trait CmsgArea: Copy + Default + AsRef<[u8]> + AsMut<[u8]> {
    /// [`CmsgBuf::find`].
    fn find_data<T: CmsgData>(&self, len: usize, level: libc::c_int, ty: libc::c_int) -> Option<T>;
}

impl<const N: usize> CmsgArea for CmsgBuf<N> {
    #[inline]
    fn find_data<T: CmsgData>(&self, len: usize, level: libc::c_int, ty: libc::c_int) -> Option<T> {
        self.find(len, level, ty)
    }
}

impl<const N: usize> Default for CmsgBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> AsRef<[u8]> for CmsgBuf<N> {
    fn as_ref(&self) -> &[u8] {
        &self.bytes
    }
}

impl<const N: usize> AsMut<[u8]> for CmsgBuf<N> {
    fn as_mut(&mut self) -> &mut [u8] {
        &mut self.bytes
    }
}

// The batches point `msg_control` at a `CmsgBuf` itself: its bytes must start there.
const _: () = assert!(std::mem::offset_of!(CmsgBuf<64>, bytes) == 0);

impl<const N: usize> CmsgBuf<N> {
    pub(crate) const fn new() -> Self {
        Self {
            _align: [],
            bytes: [0; N],
        }
    }

    /// One control message of `level`/`ty` carrying `data`, for `sendmsg`. `N` must be
    /// `cmsg_space::<T>()` (checked when compiled).
    pub(crate) fn one<T: CmsgData>(level: libc::c_int, ty: libc::c_int, data: T) -> Self {
        // Where the data starts, relative to the header (`CMSG_DATA - cmsg`): after a whole
        // header, aligned for `T`, and the message inside the space.
        let data_offset = const {
            let offset = cmsg_len::<T>() - size_of::<T>();
            assert!(N == cmsg_space::<T>() && cmsg_len::<T>() <= N);
            assert!(offset >= size_of::<libc::cmsghdr>());
            assert!(offset.is_multiple_of(align_of::<T>()));
            offset
        };
        let mut buf = Self::new();
        let base = buf.bytes.as_mut_ptr();
        let hdr = base.cast::<libc::cmsghdr>();
        // SAFETY: `bytes` is N = CMSG_SPACE(T) long and aligned for `cmsghdr` (the `_align`
        // field), so a `cmsghdr` fits at its start, and a `T` at `data_offset`, which is inside
        // the space and aligned for it (asserted above). The header is written field by field
        // through raw pointers, so its padding (if any) keeps the zeroes of `new`; `T` has no
        // padding (`CmsgData`), so writing it whole leaves every byte of the view handed to
        // sendmsg initialised.
        unsafe {
            (&raw mut (*hdr).cmsg_len).write(cmsg_len::<T>() as _);
            (&raw mut (*hdr).cmsg_level).write(level);
            (&raw mut (*hdr).cmsg_type).write(ty);
            base.add(data_offset).cast::<T>().write(data);
        }
        buf
    }

    /// The first complete control message of `level`/`ty` among the first `len` bytes of
    /// control messages the kernel wrote here (`msg_controllen` after a receive), read as `T`.
    /// `None` if there is none, or if the one there is too short to hold a `T`.
    pub(crate) fn find<T: CmsgData>(
        &self,
        len: usize,
        level: libc::c_int,
        ty: libc::c_int,
    ) -> Option<T> {
        let limit = len.min(N);
        let base = self.bytes.as_ptr();
        // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
        let mut mhdr: libc::msghdr = unsafe { std::mem::zeroed() };
        mhdr.msg_control = base.cast_mut().cast();
        mhdr.msg_controllen = limit as _;
        // SAFETY: `mhdr` describes the first `limit` bytes of `self.bytes`, which is borrowed for
        // the whole block and aligned for `cmsghdr` (`_align`). CMSG_FIRSTHDR returns the start
        // of the buffer only if a whole header fits in `limit`, and CMSG_NXTHDR only a header
        // that, with its `cmsg_len`, lies inside `limit` (null otherwise, also for a `cmsg_len`
        // too small to step over), so every header read is in bounds. The `T` is read only when
        // the header's own `cmsg_len` covers it and stays inside `limit`, with `read_unaligned`,
        // and any bytes are a valid `T` (`CmsgData`); nothing is written through the `cast_mut`
        // pointer.
        unsafe {
            let mut c = libc::CMSG_FIRSTHDR(&mhdr);
            while !c.is_null() {
                let offset = c as usize - base as usize;
                let clen = (*c).cmsg_len as usize;
                if (*c).cmsg_level == level
                    && (*c).cmsg_type == ty
                    && clen >= cmsg_len::<T>()
                    && clen <= limit - offset
                {
                    return Some(libc::CMSG_DATA(c).cast::<T>().read_unaligned());
                }
                c = libc::CMSG_NXTHDR(&mhdr, c);
            }
        }
        None
    }
}

/// Decodes `buf` with libc's `CMSG_*` macros, the way the kernel walks it, checking that it
/// holds exactly one control message, of `level`/`ty` and `CMSG_LEN(size_of::<T>())` bytes, and
/// returns its data: how the tests check a hand-built message.
#[cfg(test)]
pub(crate) fn decode_one<T: CmsgData, const N: usize>(
    buf: &CmsgBuf<N>,
    level: libc::c_int,
    ty: libc::c_int,
) -> T {
    assert!(cmsg_len::<T>() <= N, "no room for one message");
    // SAFETY: an all-zero msghdr is valid (null pointers, zero lengths).
    let mut mhdr: libc::msghdr = unsafe { std::mem::zeroed() };
    mhdr.msg_control = buf.bytes.as_ptr().cast_mut().cast();
    mhdr.msg_controllen = N as _;
    // SAFETY: mhdr points at `buf`, which is borrowed for the whole block and aligned for
    // `cmsghdr`; CMSG_FIRSTHDR returns its start only if a header fits in N bytes (null
    // otherwise), and CMSG_NXTHDR only a header inside them. The data is read only after the
    // first header's length was checked to be CMSG_LEN(T), which fits in N (asserted above),
    // unaligned, and any bytes are a valid `T` (`CmsgData`).
    unsafe {
        let c = libc::CMSG_FIRSTHDR(&mhdr);
        assert!(!c.is_null());
        assert_eq!(((*c).cmsg_level, (*c).cmsg_type), (level, ty));
        assert_eq!((*c).cmsg_len as usize, cmsg_len::<T>());
        assert!(libc::CMSG_NXTHDR(&mhdr, c).is_null());
        libc::CMSG_DATA(c).cast::<T>().read_unaligned()
    }
}
