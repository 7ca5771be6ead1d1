//! What differs between the IPv4 and IPv6 sockets, as one trait: the code over it is written
//! once ([`Socket`](crate::Socket), the batches) and instantiated per family, monomorphic.

use std::fmt;
use std::io;
use std::net::SocketAddr;

use nix::sys::socket::{AddressFamily, ControlMessageOwned, SockaddrLike};
use socket2::{Domain, SockAddr};

use crate::batch::{RecvRing, SendRing};
use crate::cmsg::{CmsgArea, CmsgData};
use crate::error::{Error, Result};
use crate::socket::GroupOpts;

mod sealed {
    /// Keeps [`Family`](super::Family) to the two families this crate implements.
    pub trait Sealed {}
    impl Sealed for crate::v4::V4 {}
    impl Sealed for crate::v6::V6 {}
}

/// An address family: [`V4`](crate::v4::V4) or [`V6`](crate::v6::V6). Sealed. Its documented
/// associated types name the family's addresses, configuration, metadata and batches for code
/// written over [`Socket`](crate::Socket); its hidden items are the crate's own.
///
/// Each item is one point where the families differ: the address and configuration types,
/// the socket options, the packet-info control message, the metadata the caller sees and the
/// errors that name a destination. Everything else is written once over it.
pub trait Family: sealed::Sealed + Sized + fmt::Debug + Send + Sync + 'static {
    /// How to open a group ([`v4::SocketConfig`](crate::v4::SocketConfig),
    /// [`v6::SocketConfig`](crate::v6::SocketConfig)).
    type Config: fmt::Debug;
    /// A peer as the caller sees it (`SocketAddrV4`, `SocketAddrV6`).
    type Src: Copy + fmt::Display + Into<SocketAddr> + Into<SockAddr> + From<Self::NixAddr>;
    /// How a datagram arrived ([`v4::RecvMeta`](crate::v4::RecvMeta), [`v6::RecvMeta`](crate::v6::RecvMeta)).
    type RecvMeta: Copy;
    /// How to send a datagram ([`v4::SendMeta`](crate::v4::SendMeta), [`v6::SendMeta`](crate::v6::SendMeta)).
    type SendMeta: Copy;
    /// The family's receive batch ([`v4::RecvBatch`](crate::v4::RecvBatch),
    /// [`v6::RecvBatch`](crate::v6::RecvBatch)).
    type RecvBatch;
    /// The family's send batch ([`v4::SendBatch`](crate::v4::SendBatch),
    /// [`v6::SendBatch`](crate::v6::SendBatch)).
    type SendBatch;

    #[doc(hidden)]
    /// nix's socket address (`SockaddrIn`, `SockaddrIn6`), for `recvmsg` and the batches,
    /// which hand it to the kernel as the `sockaddr_in` or `sockaddr_in6` it wraps
    /// (`repr(transparent)`).
    type NixAddr: SockaddrLike + Copy + From<Self::Src>;
    #[doc(hidden)]
    /// The packet-info payload (`in_pktinfo`, `in6_pktinfo`).
    type Info: CmsgData;
    #[doc(hidden)]
    /// Room for the control messages of one received datagram.
    type RecvCmsg: CmsgArea;
    #[doc(hidden)]
    /// One packet-info control message for one sent datagram.
    type SendCmsg: CmsgArea;

    #[doc(hidden)]
    /// `socket(2)`'s domain.
    const DOMAIN: Domain;
    #[doc(hidden)]
    /// The family a received source address must have.
    const AF: AddressFamily;
    #[doc(hidden)]
    /// `cmsg_level` and `cmsg_type` of the packet-info control message.
    const PKTINFO_CMSG: (libc::c_int, libc::c_int);
    #[doc(hidden)]
    /// The unspecified address, port 0: the name of a socket whose own is unknown.
    const ANY: Self::Src;
    #[doc(hidden)]
    /// The packet-info control message, for log lines.
    const PKTINFO: &'static str;
    #[doc(hidden)]
    /// Error text for a bound address of the other family.
    const NOT_FAMILY: &'static str;

    #[doc(hidden)]
    /// The settings of `cfg` every family takes.
    fn group_opts(cfg: &Self::Config) -> GroupOpts<'_>;
    #[doc(hidden)]
    /// The address every socket of the group binds.
    fn bind_addr(cfg: &Self::Config) -> Self::Src;
    #[doc(hidden)]
    /// Refuses what only this family cannot open.
    fn check(cfg: &Self::Config) -> Result<()>;
    #[doc(hidden)]
    /// Sets the family's options on `sock`, before it is bound to `addr`.
    fn set_options(sock: &socket2::Socket, addr: SocketAddr) -> Result<()>;
    #[doc(hidden)]
    /// What the family does to a bound socket (IPv6 joins its multicast group).
    fn after_bind(sock: &socket2::Socket, cfg: &Self::Config) -> Result<()>;
    #[doc(hidden)]
    /// The multicast interfaces of `cfg`, for the log line.
    fn multicast_ifindexes(cfg: &Self::Config) -> &[u32];
    #[doc(hidden)]
    /// The bound address, when it is of this family.
    fn local(addr: &SockAddr) -> Option<Self::Src>;

    #[doc(hidden)]
    /// The packet info in `c`, if that is what it is.
    fn pktinfo(c: ControlMessageOwned) -> Option<Self::Info>;
    #[doc(hidden)]
    /// The metadata of a `len`-byte datagram from `src` that arrived as `info` says.
    fn recv_meta(len: usize, src: Self::Src, info: &Self::Info) -> Self::RecvMeta;
    #[doc(hidden)]
    /// The datagram length recorded in `meta`.
    fn meta_len(meta: &Self::RecvMeta) -> usize;
    #[doc(hidden)]
    /// The error for a datagram that came without packet info.
    fn missing_pktinfo(src: Self::Src) -> Error;

    #[doc(hidden)]
    /// A placeholder for the send batch's unused slots.
    fn blank_send_meta() -> Self::SendMeta;
    #[doc(hidden)]
    /// Where `meta` sends to.
    fn dst(meta: &Self::SendMeta) -> Self::Src;
    #[doc(hidden)]
    /// Write `meta`'s destination into `addr` and, when it asks for an interface or a source,
    /// a packet-info message into `cmsg`. `Some(true)` when `cmsg` is to be sent, `Some(false)`
    /// when not, `None` when the kernel could not take `meta` (an interface index beyond
    /// `c_int`).
    fn encode(
        meta: &Self::SendMeta,
        addr: &mut Self::NixAddr,
        cmsg: &mut Self::SendCmsg,
    ) -> Option<bool>;
    #[doc(hidden)]
    /// The error for a datagram the kernel refused.
    fn send_error(meta: &Self::SendMeta, source: io::Error) -> Error;
    #[doc(hidden)]
    /// The error for a datagram the kernel took only in part.
    fn short_send(meta: &Self::SendMeta, sent: usize, len: usize) -> Error;

    #[doc(hidden)]
    fn recv_ring(batch: &mut Self::RecvBatch) -> &mut RecvRing<Self>;
    #[doc(hidden)]
    fn send_ring(batch: &mut Self::SendBatch) -> &mut SendRing<Self>;
}

/// Declares a family's marker type, its socket type and group opener, and its [`Family`] impl,
/// in the family's module: `family! { V4, socket, open, }`, each name after the doc paragraphs
/// only that family adds to the shared ones written here.
///
/// What differs between the families and is not code (types, constants, error variants) is
/// the rows of `@facts` below, one per family. The impl takes the rest from the module's own
/// items: the types `SocketConfig`, `RecvMeta`, `RecvBatch`, `SendMeta` and `SendBatch`, the
/// control message sizes `RECV_CMSG_SPACE` and `PKTINFO_SPACE`, and the functions
/// `bind_addr`, `check`, `set_options`, `after_bind`, `multicast_ifindexes`,
/// `blank_send_meta`, `send_ifindex` and `send_pktinfo`.
macro_rules! family {
    (
        $(#[$doc:meta])*
        $fam:ident,
        $(#[$sdoc:meta])*
        socket,
        $(#[$odoc:meta])*
        open,
    ) => {
        $crate::family::family! { @facts $fam [$(#[$doc])*] [$(#[$sdoc])*] [$(#[$odoc])*] }
    };

    // One row per family: its name; its peer address type, the arguments that make the
    // unspecified one, and the C struct it is; nix's address type and family, socket2's domain
    // and the `SockAddr` accessor; the packet-info struct, its control message level and type
    // and nix's variant for it; the errors for a missing packet info, a refused and a short send.
    (@facts V4 $($docs:tt)*) => { $crate::family::family! { @declare $($docs)* V4: "IPv4" {
        src: SocketAddrV4 = (std::net::Ipv4Addr::UNSPECIFIED, 0), "sockaddr_in",
        addr: SockaddrIn, Inet, IPV4, as_socket_ipv4,
        pktinfo: in_pktinfo = (IPPROTO_IP, IP_PKTINFO, Ipv4PacketInfo),
        errors: MissingPacketInfo, Send, ShortSend,
    } } };
    (@facts V6 $($docs:tt)*) => { $crate::family::family! { @declare $($docs)* V6: "IPv6" {
        src: SocketAddrV6 = (std::net::Ipv6Addr::UNSPECIFIED, 0, 0, 0), "sockaddr_in6",
        addr: SockaddrIn6, Inet6, IPV6, as_socket_ipv6,
        pktinfo: in6_pktinfo = (IPPROTO_IPV6, IPV6_PKTINFO, Ipv6PacketInfo),
        errors: MissingPacketInfo6, Send6, ShortSend6,
    } } };

    (
        @declare [$(#[$doc:meta])*] [$(#[$sdoc:meta])*] [$(#[$odoc:meta])*]
        $fam:ident: $name:literal {
            src: $Src:ident = $any:tt, $sockaddr:literal,
            addr: $Nix:ident, $af:ident, $domain:ident, $local:ident,
            pktinfo: $Info:ident = ($level:ident, $ty:ident, $Variant:ident),
            errors: $Missing:ident, $SendErr:ident, $Short:ident,
        }
    ) => {
        #[doc = concat!(
            "The ", $name, " family: `", $sockaddr, "`, `", stringify!($ty), "`, [`RecvMeta`], ",
            "[`SendMeta`]."
        )]
        $(#[$doc])*
        #[derive(Debug)]
        pub enum $fam {}

        #[doc = concat!(
            "One ", $name, " [`Socket`](crate::Socket) of a group, owned by one worker.\n\n"
        )]
        $(#[$sdoc])*
        pub type Socket = $crate::socket::Socket<$fam>;

        #[doc = concat!(
            "Open `cfg.workers` ", $name, " sockets bound to the same address and port (one ",
            "`SO_REUSEPORT` group), one per worker.\n\n",
            "Fails as a whole: a socket that cannot be set up closes the ones opened before it. ",
            "A port held by a socket outside the group (another process, another user id, or a ",
            "socket without `SO_REUSEPORT`) gives [`Error::Bind`](crate::Error::Bind) with ",
            "`AddrInUse`.\n\n"
        )]
        $(#[$odoc])*
        pub fn open_group(cfg: &SocketConfig) -> $crate::error::Result<Vec<Socket>> {
            $crate::socket::open_group(cfg)
        }

        impl $crate::family::Family for $fam {
            type Config = SocketConfig;
            type Src = std::net::$Src;
            type RecvMeta = RecvMeta;
            type SendMeta = SendMeta;
            type RecvBatch = RecvBatch;
            type SendBatch = SendBatch;
            type NixAddr = nix::sys::socket::$Nix;
            type Info = libc::$Info;
            type RecvCmsg = $crate::cmsg::CmsgBuf<RECV_CMSG_SPACE>;
            type SendCmsg = $crate::cmsg::CmsgBuf<PKTINFO_SPACE>;
            const DOMAIN: socket2::Domain = socket2::Domain::$domain;
            const ANY: Self::Src = std::net::$Src::new $any;
            const AF: nix::sys::socket::AddressFamily = nix::sys::socket::AddressFamily::$af;
            const PKTINFO_CMSG: (libc::c_int, libc::c_int) = (libc::$level, libc::$ty);
            const PKTINFO: &'static str = stringify!($ty);
            const NOT_FAMILY: &'static str = concat!("local address is not ", $name);

            fn group_opts(cfg: &SocketConfig) -> $crate::socket::GroupOpts<'_> {
                $crate::socket::GroupOpts {
                    workers: cfg.workers,
                    port: cfg.port,
                    device: cfg.device.as_ref(),
                    recv_buffer: cfg.recv_buffer,
                    send_buffer: cfg.send_buffer,
                }
            }

            fn bind_addr(cfg: &SocketConfig) -> Self::Src {
                bind_addr(cfg)
            }

            fn check(cfg: &SocketConfig) -> $crate::error::Result<()> {
                check(cfg)
            }

            fn set_options(
                sock: &socket2::Socket,
                addr: std::net::SocketAddr,
            ) -> $crate::error::Result<()> {
                set_options(sock, addr)
            }

            fn after_bind(sock: &socket2::Socket, cfg: &SocketConfig) -> $crate::error::Result<()> {
                after_bind(sock, cfg)
            }

            fn multicast_ifindexes(cfg: &SocketConfig) -> &[u32] {
                multicast_ifindexes(cfg)
            }

            fn local(addr: &socket2::SockAddr) -> Option<Self::Src> {
                addr.$local()
            }

            fn pktinfo(c: nix::sys::socket::ControlMessageOwned) -> Option<Self::Info> {
                match c {
                    nix::sys::socket::ControlMessageOwned::$Variant(info) => Some(info),
                    _ => None,
                }
            }

            #[inline]
            fn recv_meta(len: usize, src: Self::Src, info: &Self::Info) -> RecvMeta {
                RecvMeta::new(len, src, info)
            }

            #[inline]
            fn meta_len(meta: &RecvMeta) -> usize {
                meta.len
            }

            fn missing_pktinfo(src: Self::Src) -> $crate::error::Error {
                $crate::error::Error::$Missing { src }
            }

            fn blank_send_meta() -> SendMeta {
                blank_send_meta()
            }

            #[inline]
            fn dst(meta: &SendMeta) -> Self::Src {
                meta.dst
            }

            #[inline]
            fn encode(
                meta: &SendMeta,
                addr: &mut Self::NixAddr,
                cmsg: &mut $crate::cmsg::CmsgBuf<PKTINFO_SPACE>,
            ) -> Option<bool> {
                let ifindex = send_ifindex(meta);
                // Both kernels' pktinfo structs hold the index in an `int`.
                libc::c_int::try_from(ifindex).ok()?;
                *addr = meta.dst.into();
                let pktinfo = ifindex != 0 || meta.src.is_some();
                if pktinfo {
                    *cmsg = send_pktinfo(ifindex, meta.src.unwrap_or(*Self::ANY.ip()));
                }
                Some(pktinfo)
            }

            fn send_error(meta: &SendMeta, source: std::io::Error) -> $crate::error::Error {
                $crate::error::Error::$SendErr {
                    dst: meta.dst,
                    ifindex: send_ifindex(meta),
                    source,
                }
            }

            fn short_send(meta: &SendMeta, sent: usize, len: usize) -> $crate::error::Error {
                $crate::error::Error::$Short {
                    dst: meta.dst,
                    sent,
                    len,
                }
            }

            fn recv_ring(batch: &mut RecvBatch) -> &mut $crate::batch::RecvRing<$fam> {
                &mut batch.ring
            }

            fn send_ring(batch: &mut SendBatch) -> &mut $crate::batch::SendRing<$fam> {
                &mut batch.ring
            }
        }
    };
}
pub(crate) use family;

/// Declares a family's group configuration: its own address and port first, then the settings
/// every family takes (documented here once), then any field only it has, and its `Default`.
macro_rules! socket_config {
    (
        $(#[$doc:meta])*
        $Config:ident {
            $($(#[$hdoc:meta])* $head:ident: $Head:ty = $hdef:expr,)*
        }
        $(then {
            $($(#[$tdoc:meta])* $tail:ident: $Tail:ty = $tdef:expr,)*
        })?
        $(#[$ddoc:meta])*
        default;
    ) => {
        $(#[$doc])*
        #[derive(Clone, Debug, PartialEq, Eq)]
        pub struct $Config {
            $($(#[$hdoc])* pub $head: $Head,)*
            /// Interface to restrict the sockets to (`SO_BINDTODEVICE`), `None` for all.
            pub device: Option<String>,
            /// Sockets in the group, one per worker; at least 1.
            pub workers: usize,
            /// `SO_RCVBUF` in bytes, `None` for the system default. Forced past
            /// `net.core.rmem_max` when the process may (`CAP_NET_ADMIN`); a warning is logged
            /// if the kernel grants less.
            pub recv_buffer: Option<usize>,
            /// `SO_SNDBUF` in bytes, `None` for the system default; forced like `recv_buffer`.
            pub send_buffer: Option<usize>,
            $($($(#[$tdoc])* pub $tail: $Tail,)*)?
        }

        impl Default for $Config {
            $(#[$ddoc])*
            fn default() -> Self {
                Self {
                    $($head: $hdef,)*
                    device: None,
                    workers: 1,
                    recv_buffer: None,
                    send_buffer: None,
                    $($($tail: $tdef,)*)?
                }
            }
        }
    };
}
pub(crate) use socket_config;

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddrV4, SocketAddrV6};

    use super::Family;
    use crate::cmsg::{CmsgBuf, cmsg_len, decode_one};
    use crate::v4::{self, V4};
    use crate::v6::{self, V6};

    /// `F::encode` of `meta`: whether it asked for a control message, and then the packet info
    /// as read back through libc's `CMSG_*` macros (the way the kernel walks it) and as the
    /// receive side's parser finds it (which refuses it cut short, or as the family `O`'s);
    /// `None` if it refused.
    fn encoded<F, O, const N: usize>(meta: &F::SendMeta) -> Option<(bool, Option<[F::Info; 2]>)>
    where
        F: Family<SendCmsg = CmsgBuf<N>>,
        O: Family,
    {
        let mut addr = F::NixAddr::from(F::ANY);
        let mut cmsg = CmsgBuf::<N>::new();
        let pktinfo = F::encode(meta, &mut addr, &mut cmsg)?;
        if !pktinfo {
            return Some((false, None));
        }
        let (level, ty) = F::PKTINFO_CMSG;
        let info: F::Info = decode_one(&cmsg, level, ty);
        let found = cmsg.find_pktinfo::<F>(N).expect("the parser finds it");
        let len = cmsg_len::<F::Info>();
        assert!(
            cmsg.find_pktinfo::<F>(len).is_some(),
            "the last message needs no padding"
        );
        assert!(cmsg.find_pktinfo::<F>(len - 1).is_none(), "cut short");
        assert!(cmsg.find_pktinfo::<F>(0).is_none());
        assert!(cmsg.find_pktinfo::<O>(N).is_none(), "the other family's");
        Some((true, Some([info, found])))
    }

    #[test]
    fn encode_writes_the_pktinfo_asked_for() {
        let src = Ipv4Addr::new(192, 0, 2, 1);
        let meta = v4::SendMeta {
            dst: SocketAddrV4::new(Ipv4Addr::new(192, 0, 2, 9), 68),
            ifindex: 7,
            src: Some(src),
        };
        let (on, info) = encoded::<V4, V6, _>(&meta).expect("encodes");
        assert!(on);
        for info in info.expect("a pktinfo") {
            assert_eq!(info.ipi_ifindex, 7);
            assert_eq!(Ipv4Addr::from(u32::from_be(info.ipi_spec_dst.s_addr)), src);
            assert_eq!(info.ipi_addr.s_addr, 0, "ignored on send, left zero");
        }
        let plain = v4::SendMeta {
            ifindex: 0,
            src: None,
            ..meta
        };
        assert!(!encoded::<V4, V6, _>(&plain).expect("encodes").0);
        let huge = v4::SendMeta {
            ifindex: u32::MAX,
            ..meta
        };
        assert!(encoded::<V4, V6, _>(&huge).is_none(), "no int holds it");

        let src = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
        let meta = v6::SendMeta {
            dst: SocketAddrV6::new(Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 2), 546, 0, 0),
            src: Some(src),
            ifindex: Some(7),
        };
        let (on, info) = encoded::<V6, V4, _>(&meta).expect("encodes");
        assert!(on);
        for info in info.expect("a pktinfo") {
            assert_eq!(info.ipi6_ifindex, 7);
            assert_eq!(Ipv6Addr::from(info.ipi6_addr.s6_addr), src);
        }
        let plain = v6::SendMeta {
            src: None,
            ifindex: None,
            ..meta
        };
        assert!(!encoded::<V6, V4, _>(&plain).expect("encodes").0);
    }
}
