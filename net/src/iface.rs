//! The host's network interfaces, as the server needs them to match subnets and route replies.

use std::net::{Ipv4Addr, Ipv6Addr};

use nix::ifaddrs::getifaddrs;
use nix::net::if_::{InterfaceFlags, if_nametoindex};

use crate::error::{Error, Result};

/// Longest interface name Linux accepts: `IFNAMSIZ` less the terminating NUL.
pub(crate) const IFNAME_MAX: usize = libc::IFNAMSIZ - 1;

/// One network interface with its IPv4 and IPv6 addresses.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Interface {
    /// Kernel name, e.g. "eth0"; addresses on labels such as "eth0:1" are listed under "eth0".
    pub name: String,
    /// Interface index, as in [`RecvMeta::ifindex`](crate::v4::RecvMeta::ifindex).
    pub index: u32,
    /// IPv4 addresses with their prefix lengths, in the kernel's order (the primary first).
    pub v4: Vec<(Ipv4Addr, u8)>,
    /// IPv6 addresses (link-local ones included) with their prefix lengths.
    pub v6: Vec<(Ipv6Addr, u8)>,
    /// The Ethernet hardware address; `None` for interfaces without one (loopback, tun, or an
    /// all-zero address).
    pub mac: Option<[u8; 6]>,
    /// `IFF_LOOPBACK`.
    pub is_loopback: bool,
    /// `IFF_UP`: administratively up (the carrier may still be down).
    pub is_up: bool,
    /// `IFF_BROADCAST`: the link can carry broadcasts, so a broadcast reply makes sense on it.
    pub is_broadcast: bool,
}

/// List the interfaces of this network namespace, ordered by index.
///
/// Built from `getifaddrs(3)`: one entry per interface however many addresses it has. An
/// interface that disappears while being listed is left out.
pub fn interfaces() -> Result<Vec<Interface>> {
    let addrs = getifaddrs().map_err(|e| Error::Interfaces { source: e.into() })?;
    let mut out: Vec<Interface> = Vec::new();
    for addr in addrs {
        // Linux interface names cannot contain ':'; what follows one is an address label.
        let name = addr
            .interface_name
            .split(':')
            .next()
            .unwrap_or(&addr.interface_name);
        let pos = match out.iter().position(|i| i.name == name) {
            Some(pos) => pos,
            None => {
                let Ok(index) = if_nametoindex(name) else {
                    continue;
                };
                out.push(Interface {
                    name: name.to_owned(),
                    index,
                    v4: Vec::new(),
                    v6: Vec::new(),
                    mac: None,
                    is_loopback: addr.flags.contains(InterfaceFlags::IFF_LOOPBACK),
                    is_up: addr.flags.contains(InterfaceFlags::IFF_UP),
                    is_broadcast: addr.flags.contains(InterfaceFlags::IFF_BROADCAST),
                });
                out.len() - 1
            }
        };
        let iface = &mut out[pos];
        let Some(address) = addr.address else {
            continue;
        };
        if let Some(sin) = address.as_sockaddr_in() {
            let prefix = addr
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in())
                .map_or(32, |m| u32::from(m.ip()).count_ones() as u8);
            iface.v4.push((sin.ip(), prefix));
        } else if let Some(sin6) = address.as_sockaddr_in6() {
            let prefix = addr
                .netmask
                .as_ref()
                .and_then(|m| m.as_sockaddr_in6())
                .map_or(128, |m| u128::from(m.ip()).count_ones() as u8);
            iface.v6.push((sin6.ip(), prefix));
        } else if let Some(link) = address.as_link_addr()
            && link.halen() == 6
        {
            iface.mac = link.addr().filter(|mac| *mac != [0; 6]);
        }
    }
    out.sort_by_key(|i| i.index);
    Ok(out)
}

/// The index of the interface called `name`, e.g. to fill [`SendMeta::ifindex`](crate::v4::SendMeta)
/// for an interface named in the configuration.
pub fn interface_index(name: &str) -> Result<u32> {
    check_ifname(name)?;
    if_nametoindex(name).map_err(|e| Error::InterfaceName {
        name: name.to_owned(),
        reason: std::io::Error::from(e).to_string(),
    })
}

/// Reject names the kernel cannot hold, with a message naming them.
pub(crate) fn check_ifname(name: &str) -> Result<()> {
    let reason = if name.is_empty() {
        "empty"
    } else if name.len() > IFNAME_MAX {
        "longer than 15 bytes"
    } else if name.contains('\0') {
        "contains NUL"
    } else {
        return Ok(());
    };
    Err(Error::InterfaceName {
        name: name.to_owned(),
        reason: reason.to_owned(),
    })
}
