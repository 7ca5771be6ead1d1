//! A worker's socket IO, the same for both families: batched receive (waking for the journal's
//! doorbell too) and batched send.

use std::net::SocketAddr;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering;
use std::time::Duration;

use lessor_journal::{Doorbell, Ticket};
use lessor_net::{v4, v6};
use nix::poll::{PollFd, PollFlags, poll};

use crate::stats::WorkerStats;

/// Largest datagram accepted (a DHCP message cannot exceed an Ethernet frame here).
pub(crate) const RECV_BUF: usize = 2048;
/// Largest reply: the encoder never exceeds an Ethernet MTU's UDP payload.
pub(crate) const MAX_REPLY: usize = 1500;
/// Datagrams received (recvmmsg) and replies sent (sendmmsg) per system call, at most.
pub(crate) const BATCH: usize = 64;
/// How long a worker blocks on its socket (or its socket and doorbell) before it checks the
/// stop flag and the reclaim timer.
pub(crate) const IDLE_POLL: Duration = Duration::from_millis(200);

/// What a worker needs from its socket, for both families: batched receives, batched and
/// single sends, a receive timeout, and its descriptor to poll.
pub(crate) trait WorkerSocket: AsFd {
    type Rx;
    type Batch;
    type RecvMeta: Copy;
    type Meta: std::fmt::Debug;
    /// A receive batch and a send batch of [`BATCH`] datagrams each.
    fn batches() -> lessor_net::Result<(Self::Rx, Self::Batch)>;
    /// How many datagrams the last receive left in `rx`.
    fn received(rx: &Self::Rx) -> usize;
    /// The `i`th datagram of `rx` and where it came from.
    fn datagram(rx: &Self::Rx, i: usize) -> (&[u8], Self::RecvMeta);
    /// The interface a datagram arrived on.
    fn ifindex(meta: &Self::RecvMeta) -> u32;
    /// Its sender, for logs.
    fn source(meta: &Self::RecvMeta) -> SocketAddr;
    fn set_read_timeout(&self, d: Option<Duration>) -> lessor_net::Result<()>;
    fn recv_batch(&self, rx: &mut Self::Rx, wait: bool) -> lessor_net::Result<usize>;
    fn push(batch: &mut Self::Batch, out: &[u8], meta: &Self::Meta) -> bool;
    fn is_empty(batch: &Self::Batch) -> bool;
    fn send_batch(&self, batch: &mut Self::Batch) -> lessor_net::Result<lessor_net::SendReport>;
    fn send(&self, out: &[u8], meta: &Self::Meta) -> lessor_net::Result<()>;
}

macro_rules! worker_socket {
    ($socket:ty, $rx:ty, $batch:ty, $recv_meta:ty, $meta:ty) => {
        impl WorkerSocket for $socket {
            type Rx = $rx;
            type Batch = $batch;
            type RecvMeta = $recv_meta;
            type Meta = $meta;
            fn batches() -> lessor_net::Result<($rx, $batch)> {
                Ok((
                    <$rx>::new(BATCH, RECV_BUF)?,
                    <$batch>::new(BATCH, MAX_REPLY)?,
                ))
            }
            fn received(rx: &$rx) -> usize {
                rx.len()
            }
            fn datagram(rx: &$rx, i: usize) -> (&[u8], $recv_meta) {
                rx.get(i)
            }
            fn ifindex(meta: &$recv_meta) -> u32 {
                meta.ifindex
            }
            fn source(meta: &$recv_meta) -> SocketAddr {
                meta.src.into()
            }
            fn set_read_timeout(&self, d: Option<Duration>) -> lessor_net::Result<()> {
                <$socket>::set_read_timeout(self, d)
            }
            fn recv_batch(&self, rx: &mut $rx, wait: bool) -> lessor_net::Result<usize> {
                <$socket>::recv_batch(self, rx, wait)
            }
            fn push(batch: &mut $batch, out: &[u8], meta: &$meta) -> bool {
                batch.push(out, meta)
            }
            fn is_empty(batch: &$batch) -> bool {
                batch.is_empty()
            }
            fn send_batch(&self, batch: &mut $batch) -> lessor_net::Result<lessor_net::SendReport> {
                <$socket>::send_batch(self, batch)
            }
            fn send(&self, out: &[u8], meta: &$meta) -> lessor_net::Result<()> {
                <$socket>::send(self, out, meta)
            }
        }
    };
}

worker_socket!(
    v4::Socket,
    v4::RecvBatch,
    v4::SendBatch,
    v4::RecvMeta,
    v4::SendMeta
);
worker_socket!(
    v6::Socket,
    v6::RecvBatch,
    v6::SendBatch,
    v6::RecvMeta,
    v6::SendMeta
);

/// Sets the receive timeout a worker's blocking receives use: [`IDLE_POLL`].
pub(crate) fn set_idle_timeout(socket: &impl WorkerSocket, worker: usize) {
    if let Err(e) = socket.set_read_timeout(Some(IDLE_POLL)) {
        tracing::warn!(worker, error = %e, "cannot set the socket's receive timeout");
    }
}

/// Why [`receive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Received {
    /// This many datagrams are in the batch.
    Datagrams(usize),
    /// The journal published this lane's watermark (or already had past the oldest waiting
    /// reply): replies may leave.
    Published,
    /// Nothing: a timeout, a signal, or every datagram received was dropped.
    Nothing,
}

/// Receives a worker's next batch of datagrams, or says why there is none; the caller then
/// sends what became durable and comes back.
///
/// With no reply waiting for the journal (`oldest` is `None`) the worker blocks on its
/// socket, for at most its receive timeout ([`IDLE_POLL`]). With replies waiting it takes
/// whatever is queued without blocking; only when nothing is does it sleep, for at most
/// `sleep` (workers pass [`IDLE_POLL`]), in `poll` on the socket and the lane's doorbell
/// together. So a request is handled the moment it arrives, a waiting reply leaves the
/// moment the writer publishes its lease, and a worker whose replies wait is woken once per
/// sync rather than on a timer.
pub(crate) fn receive<S: WorkerSocket>(
    socket: &S,
    rx: &mut S::Rx,
    doorbell: &Doorbell,
    oldest: Option<Ticket>,
    sleep: Duration,
    worker: usize,
) -> Received {
    let recv = |rx: &mut S::Rx, wait| match socket.recv_batch(rx, wait) {
        Ok(0) => Received::Nothing,
        Ok(n) => Received::Datagrams(n),
        Err(e) => {
            tracing::warn!(worker, error = %e, "receive failed");
            Received::Nothing
        }
    };
    let Some(oldest) = oldest else {
        return recv(rx, true);
    };
    if let got @ Received::Datagrams(_) = recv(rx, false) {
        return got;
    }
    if !doorbell.arm(oldest) {
        return Received::Published;
    }
    let mut fds = [
        PollFd::new(socket.as_fd(), PollFlags::POLLIN),
        PollFd::new(doorbell.as_fd(), PollFlags::POLLIN),
    ];
    let ready = poll(
        &mut fds,
        u16::try_from(sleep.as_millis()).unwrap_or(u16::MAX),
    );
    let datagram = fds[0].any().unwrap_or(false);
    let rang = fds[1].any().unwrap_or(false);
    doorbell.disarm();
    match ready {
        Ok(_) if datagram => recv(rx, false),
        Ok(_) if rang => Received::Published,
        Ok(_) | Err(nix::errno::Errno::EINTR) => Received::Nothing,
        Err(e) => {
            tracing::warn!(worker, error = %e, "poll failed");
            Received::Nothing
        }
    }
}

/// Adds a reply to the send batch, sending the batch first when it is full (and the reply on
/// its own if even an empty batch refuses it).
pub(crate) fn queue<S: WorkerSocket>(
    socket: &S,
    worker: usize,
    tx: &mut S::Batch,
    out: &[u8],
    meta: &S::Meta,
    stats: &WorkerStats,
) {
    if S::push(tx, out, meta) {
        return;
    }
    send_all(socket, worker, tx, stats);
    if !S::push(tx, out, meta)
        && let Err(e) = socket.send(out, meta)
    {
        stats.send_errors.fetch_add(1, Ordering::Relaxed);
        tracing::debug!(worker, error = %e, ?meta, "send failed");
    }
}

/// Sends the batch (one sendmmsg), counting what the kernel refused.
pub(crate) fn send_all<S: WorkerSocket>(
    socket: &S,
    worker: usize,
    tx: &mut S::Batch,
    stats: &WorkerStats,
) {
    if S::is_empty(tx) {
        return;
    }
    match socket.send_batch(tx) {
        Ok(r) if r.failed > 0 => {
            stats
                .send_errors
                .fetch_add(r.failed as u64, Ordering::Relaxed);
            tracing::debug!(worker, failed = r.failed, error = ?r.first_error, "some replies were not sent");
        }
        Ok(_) => {}
        Err(e) => {
            stats.send_errors.fetch_add(1, Ordering::Relaxed);
            tracing::warn!(worker, error = %e, "send failed");
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, UdpSocket};
    use std::sync::Arc;
    use std::time::Duration;

    use lessor_journal::testing::FaultyFs;
    use lessor_journal::{Journal, Options, Ticket};
    use lessor_net::v4;

    use super::{Received, receive};
    use crate::lease_record::{LeaseKey, LeaseRecord};

    fn record(n: u32) -> LeaseRecord {
        LeaseRecord {
            version: u64::from(n),
            event: 0,
            key: LeaseKey::V4(n),
            client: vec![1, 2, 3],
            htype: 1,
            hw: vec![2, 0, 0, 0, 0, 9],
            hostname: None,
            state: 1,
            starts: 100,
            expires: 200,
        }
    }

    /// What bounds a hung test's sleeps; a working doorbell ends them within milliseconds.
    const LONG: Duration = Duration::from_secs(60);

    /// A worker whose reply waits for the journal sleeps in `receive` until the writer rings
    /// its doorbell (not until the poll timeout), wakes for a datagram while it waits, and
    /// without a waiting reply just receives.
    #[test]
    fn receive_wakes_on_the_journal_publish_and_on_datagrams() {
        let fs = FaultyFs::new();
        let (journal, _) =
            Journal::<LeaseRecord>::open(Options::new("/j", 1), Arc::new(fs.clone()), |_| {})
                .unwrap();
        let mut lane = journal.lane(0);
        let doorbell = lane.doorbell().unwrap();
        let port = UdpSocket::bind("127.0.0.1:0")
            .and_then(|s| s.local_addr())
            .unwrap()
            .port();
        let socket = v4::open_group(&v4::SocketConfig {
            bind: Ipv4Addr::LOCALHOST,
            port,
            ..v4::SocketConfig::default()
        })
        .unwrap()
        .remove(0);
        super::set_idle_timeout(&socket, 0);
        let mut rx = v4::RecvBatch::new(4, super::RECV_BUF).unwrap();

        // The writer stalls on the segment: the ticket cannot become durable yet.
        fs.block_writes(".log");
        let t = lane.append(&record(1));
        assert!(fs.wait_blocked(Duration::from_secs(10)));
        let unblock = std::thread::spawn({
            let fs = fs.clone();
            move || {
                std::thread::sleep(Duration::from_millis(50));
                fs.unblock();
            }
        });
        // No datagram comes; only the publish can end this sleep (LONG bounds a hung test).
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, Some(t), LONG, 0),
            Received::Published
        );
        assert!(lane.durable() >= t);
        unblock.join().unwrap();

        // A datagram ends the wait too, while the journal is stalled again.
        fs.block_writes(".log");
        let t = lane.append(&record(2));
        assert!(fs.wait_blocked(Duration::from_secs(10)));
        let client = UdpSocket::bind("127.0.0.1:0").unwrap();
        let send = std::thread::spawn({
            let client = client.try_clone().unwrap();
            move || {
                std::thread::sleep(Duration::from_millis(50));
                client.send_to(b"hello", ("127.0.0.1", port)).unwrap();
            }
        });
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, Some(t), LONG, 0),
            Received::Datagrams(1)
        );
        send.join().unwrap();
        assert!(lane.durable() < t);
        fs.unblock();
        assert!(lane.wait_durable(t, Duration::from_secs(10)));
        // Durable already: no sleep at all.
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, Some(t), LONG, 0),
            Received::Published
        );
        // Nothing waits: a plain blocking receive.
        client.send_to(b"again", ("127.0.0.1", port)).unwrap();
        assert_eq!(
            receive(&socket, &mut rx, &doorbell, None::<Ticket>, LONG, 0),
            Received::Datagrams(1)
        );
        journal.shutdown().unwrap();
    }
}
