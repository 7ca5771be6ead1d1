//! A family's UDP socket with its batches, as the load generators and the null responders use
//! it: the one place that names `lessor_net`'s v4 and v6 socket and batch types.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::os::fd::{AsFd, BorrowedFd};

use lessor_net::{SendReport, v4, v6};

/// Socket buffers asked for (forced past rmem_max/wmem_max when running as root): a burst of
/// datagrams must not overflow a receive queue.
pub(crate) const SOCKET_BUFFER: usize = 8 << 20;

/// A socket of either family with its receive and send batches.
pub(crate) trait BatchSocket: Send + Sized + 'static {
    /// The family's address.
    type Ip: Copy + Into<IpAddr>;
    type Rx: Send;
    type Tx: Send;
    /// Where a datagram goes.
    type To: Send + std::fmt::Debug;
    /// Bytes of each buffer a null responder receives into and answers from: any request it
    /// answers fits.
    const NULL_BUF: usize;
    /// A group of `workers` sockets bound to `bind`:`port`, with [`SOCKET_BUFFER`] buffers.
    fn open_group(bind: Self::Ip, port: u16, workers: usize) -> lessor_net::Result<Vec<Self>>;
    fn batches(n: usize, buf: usize) -> lessor_net::Result<(Self::Rx, Self::Tx)>;
    fn fd(&self) -> BorrowedFd<'_>;
    /// Takes what is queued; with `wait`, blocks for the first datagram up to the socket's read
    /// timeout.
    fn recv(&self, rx: &mut Self::Rx, wait: bool) -> lessor_net::Result<usize>;
    /// Datagram `i` of those received.
    fn datagram(rx: &Self::Rx, i: usize) -> &[u8];
    /// The datagrams received, each with its sender as the reply's destination.
    fn received(rx: &Self::Rx) -> impl Iterator<Item = (&[u8], Self::To)>;
    fn push(tx: &mut Self::Tx, datagram: &[u8], to: &Self::To) -> bool;
    /// The address a datagram sent with `to` goes to.
    fn dst(to: &Self::To) -> SocketAddr;
    fn capacity(tx: &Self::Tx) -> usize;
    fn is_empty(tx: &Self::Tx) -> bool;
    fn send(&self, tx: &mut Self::Tx) -> lessor_net::Result<SendReport>;
}

/// Implements [`BatchSocket`] for one family's types: `$open` opens a group from `$config`
/// (its defaults but the address, port, workers and buffers), `$reply` makes the destination
/// of a reply to a datagram from `src`.
macro_rules! batch_socket {
    (
        $fam:ident, $ip:ty, $buf:expr,
        reply: |$src:ident| $reply:expr
    ) => {
        impl BatchSocket for $fam::Socket {
            type Ip = $ip;
            type Rx = $fam::RecvBatch;
            type Tx = $fam::SendBatch;
            type To = $fam::SendMeta;
            const NULL_BUF: usize = $buf;

            fn open_group(bind: $ip, port: u16, workers: usize) -> lessor_net::Result<Vec<Self>> {
                $fam::open_group(&$fam::SocketConfig {
                    bind,
                    port,
                    workers,
                    recv_buffer: Some(SOCKET_BUFFER),
                    send_buffer: Some(SOCKET_BUFFER),
                    ..$fam::SocketConfig::default()
                })
            }

            fn batches(n: usize, buf: usize) -> lessor_net::Result<(Self::Rx, Self::Tx)> {
                Ok(($fam::RecvBatch::new(n, buf)?, $fam::SendBatch::new(n, buf)?))
            }

            fn fd(&self) -> BorrowedFd<'_> {
                self.as_fd()
            }

            fn recv(&self, rx: &mut Self::Rx, wait: bool) -> lessor_net::Result<usize> {
                self.recv_batch(rx, wait)
            }

            fn datagram(rx: &Self::Rx, i: usize) -> &[u8] {
                rx.get(i).0
            }

            fn received(rx: &Self::Rx) -> impl Iterator<Item = (&[u8], Self::To)> {
                rx.iter().map(|(data, meta)| {
                    let $src = meta.src;
                    (data, $reply)
                })
            }

            fn push(tx: &mut Self::Tx, datagram: &[u8], to: &Self::To) -> bool {
                tx.push(datagram, to)
            }

            fn dst(to: &Self::To) -> SocketAddr {
                to.dst.into()
            }

            fn capacity(tx: &Self::Tx) -> usize {
                tx.capacity()
            }

            fn is_empty(tx: &Self::Tx) -> bool {
                tx.is_empty()
            }

            fn send(&self, tx: &mut Self::Tx) -> lessor_net::Result<SendReport> {
                self.send_batch(tx)
            }
        }
    };
}

// Any DHCPv4 request on Ethernet fits.
batch_socket!(
    v4, Ipv4Addr, 1500,
    reply: |src| v4::SendMeta { dst: src, ifindex: 0, src: None }
);

// A relayed request with several levels fits.
batch_socket!(
    v6, Ipv6Addr, 2048,
    reply: |src| v6::SendMeta { dst: src, src: None, ifindex: None }
);
