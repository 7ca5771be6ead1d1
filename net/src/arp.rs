//! Static ARP entries, so a reply can be unicast to a client that has no address yet.
//!
//! RFC 2131 §4.1: when the client did not set the broadcast bit and `ciaddr` is zero, the server
//! unicasts the reply to `yiaddr` at link address `chaddr`. The client cannot answer ARP for an
//! address it does not hold yet, so the server tells its own kernel the mapping first
//! (`SIOCSARP`). Without `CAP_NET_ADMIN` this fails and the reply is broadcast instead, which
//! RFC 2131 allows.

use std::io;
use std::net::Ipv4Addr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd};

use socket2::{Domain, Socket, Type};

use crate::error::{Error, Result};
use crate::iface::check_ifname;

/// `ATF_COM` from `<net/if_arp.h>` (not in libc): the entry carries a hardware address.
const ATF_COM: libc::c_int = 0x02;

// `SIOCSARP` takes a pointer to a `struct arpreq` and reads it.
nix::ioctl_write_ptr_bad!(
    /// `ioctl(fd, SIOCSARP, &arpreq)`.
    siocsarp,
    libc::SIOCSARP,
    libc::arpreq
);

// `arpreq_for` writes an IPv4 `sockaddr_in` into a generic `sockaddr` byte by byte: family, then
// port and address inside `sa_data`, which works because the two layouts line up like this.
const _: () =
    assert!(std::mem::size_of::<libc::sockaddr_in>() == std::mem::size_of::<libc::sockaddr>());
const _: () = assert!(
    std::mem::offset_of!(libc::sockaddr_in, sin_addr)
        == std::mem::offset_of!(libc::sockaddr, sa_data) + 2
);

/// Add or replace the ARP entry `ip -> mac` on interface `ifname`, in the calling thread's
/// network namespace.
///
/// The entry is complete (`ATF_COM`) but not permanent: the kernel enters it as *stale*, uses it
/// at once for the reply, and lets it age out like any learned entry, so entries for clients
/// that went away do not pile up. Needs `CAP_NET_ADMIN`; any failure is an [`Error::Arp`] (or
/// [`Error::InterfaceName`] for a name the kernel cannot hold) and the caller should broadcast
/// instead. Opens a socket per call; a worker should prefer
/// [`v4::Socket::set_arp_entry`](crate::v4::Socket::set_arp_entry).
pub fn set_arp_entry(ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) -> Result<()> {
    check_ifname(ifname)?;
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, None).map_err(|source| Error::Arp {
        ifname: ifname.to_owned(),
        ip,
        mac,
        source,
    })?;
    set_arp_entry_with(sock.as_fd(), ifname, ip, mac)
}

/// [`set_arp_entry`] through an existing `AF_INET` socket.
pub(crate) fn set_arp_entry_with(
    fd: BorrowedFd<'_>,
    ifname: &str,
    ip: Ipv4Addr,
    mac: [u8; 6],
) -> Result<()> {
    check_ifname(ifname)?;
    let req = arpreq_for(ifname, ip, mac);
    // SAFETY: `req` is a fully initialised `arpreq` that lives across the call; SIOCSARP only
    // reads `sizeof(struct arpreq)` bytes from it, and `fd` is an open socket borrowed for the
    // duration of the call.
    let res = unsafe { siocsarp(fd.as_raw_fd(), &req) };
    res.map(drop).map_err(|e| Error::Arp {
        ifname: ifname.to_owned(),
        ip,
        mac,
        source: io::Error::from(e),
    })
}

/// The request: protocol address `ip` (AF_INET), hardware address `mac` (ARPHRD_ETHER),
/// complete, on device `ifname` (already checked to fit with its NUL).
fn arpreq_for(ifname: &str, ip: Ipv4Addr, mac: [u8; 6]) -> libc::arpreq {
    let zero = libc::sockaddr {
        sa_family: 0,
        sa_data: [0; 14],
    };
    let mut pa = zero;
    pa.sa_family = libc::AF_INET as libc::sa_family_t;
    // sa_data[0..2] is sin_port (0), sa_data[2..6] is sin_addr in network order.
    for (d, s) in pa.sa_data[2..6].iter_mut().zip(ip.octets()) {
        *d = s as libc::c_char;
    }
    let mut ha = zero;
    ha.sa_family = libc::ARPHRD_ETHER;
    for (d, s) in ha.sa_data.iter_mut().zip(mac) {
        *d = s as libc::c_char;
    }
    let mut dev = [0 as libc::c_char; libc::IFNAMSIZ];
    for (d, s) in dev.iter_mut().zip(ifname.bytes()) {
        *d = s as libc::c_char;
    }
    libc::arpreq {
        arp_pa: pa,
        arp_ha: ha,
        arp_flags: ATF_COM,
        arp_netmask: zero,
        arp_dev: dev,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arpreq_layout() {
        let req = arpreq_for("veth0", Ipv4Addr::new(10, 1, 2, 3), [2, 0, 0, 0, 0, 0x2a]);
        assert_eq!(req.arp_pa.sa_family, libc::AF_INET as libc::sa_family_t);
        assert_eq!(&req.arp_pa.sa_data[..6], &[0, 0, 10, 1, 2, 3]);
        assert_eq!(req.arp_ha.sa_family, libc::ARPHRD_ETHER);
        assert_eq!(&req.arp_ha.sa_data[..6], &[2, 0, 0, 0, 0, 0x2a]);
        assert_eq!(req.arp_flags, ATF_COM);
        assert_eq!(&req.arp_dev[..6], &[118, 101, 116, 104, 48, 0]);
        // The sockaddr_in view of arp_pa is what the kernel reads.
        let sin_addr = u32::from_ne_bytes([
            req.arp_pa.sa_data[2] as u8,
            req.arp_pa.sa_data[3] as u8,
            req.arp_pa.sa_data[4] as u8,
            req.arp_pa.sa_data[5] as u8,
        ]);
        assert_eq!(
            Ipv4Addr::from(u32::from_be(sin_addr)),
            Ipv4Addr::new(10, 1, 2, 3)
        );
    }

    #[test]
    fn bad_names_are_rejected_before_the_kernel() {
        let ip = Ipv4Addr::new(10, 0, 0, 1);
        for name in ["", "a-name-longer-than-15", "nul\0"] {
            let err = set_arp_entry(name, ip, [2; 6]).unwrap_err();
            assert!(
                matches!(err, Error::InterfaceName { .. }),
                "{name:?}: {err}"
            );
        }
    }
}
