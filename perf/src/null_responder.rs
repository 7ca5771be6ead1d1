//! `null-responder`: a stateless DHCPv4 server that answers every DISCOVER with an OFFER and
//! every REQUEST with an ACK, to measure what a load generator can reach at all.
//!
//! It keeps no lease: yiaddr is derived from the chaddr field (see [`Responder`]), and each
//! reply goes to the request's source address and port. Workers are one `SO_REUSEPORT` group,
//! steered by client like lessor's, each pinned to a core and receiving and sending in batches
//! (`recvmmsg`, `sendmmsg`), so its cost per exchange is the kernel's and little else: the
//! ceiling a real server approaches.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use lessor_net::{RecvBatch, SendBatch, SendMeta, V4Socket, V4SocketConfig};
use serde::Serialize;

use crate::wire::Responder;

/// Receive and send buffer size: any DHCPv4 request on Ethernet fits.
const BUF: usize = 1500;
/// Socket buffers asked for (forced when running as root).
const SOCKET_BUFFER: usize = 8 << 20;

/// `null-responder` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct NullArgs {
    /// Address to listen on.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    bind: Ipv4Addr,
    /// UDP port to listen on.
    #[arg(long, default_value_t = 6767)]
    port: u16,
    /// Worker threads (one socket each, pinned to the cores the process may use in turn).
    #[arg(long, default_value_t = 1)]
    workers: usize,
    /// Datagrams per recvmmsg/sendmmsg.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Leave the workers unpinned.
    #[arg(long)]
    no_pin: bool,
    /// Stop after this many seconds and print the counts (0: run until killed).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
    /// Option 54 in every reply.
    #[arg(long, default_value_t = Ipv4Addr::LOCALHOST)]
    server_id: Ipv4Addr,
    /// Option 51 in every reply, seconds.
    #[arg(long, default_value_t = 3600)]
    lease_time: u32,
}

/// What one worker (or all of them) did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Counts {
    received: u64,
    answered: u64,
    /// Not a DISCOVER or REQUEST, or malformed.
    ignored: u64,
    send_errors: u64,
}

#[derive(Debug, Serialize)]
struct NullReport {
    listen: SocketAddrV4,
    workers: usize,
    seconds: f64,
    received: u64,
    answered: u64,
    ignored: u64,
    send_errors: u64,
    answered_per_s: f64,
}

fn serve(
    sock: &V4Socket,
    responder: Responder,
    batch: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Counts> {
    let mut rx = RecvBatch::new(batch, BUF)?;
    let mut tx = SendBatch::new(batch, BUF)?;
    let mut out = [0u8; BUF];
    let mut c = Counts::default();
    while !stop.load(Ordering::Relaxed) {
        // Blocks for the first datagram up to the socket's read timeout (200 ms), so the stop
        // flag is seen soon after it is set.
        let n = sock.recv_batch(&mut rx, true).context("receiving")?;
        c.received += n as u64;
        for (data, meta) in rx.iter() {
            let Some(len) = responder.answer(data, &mut out) else {
                c.ignored += 1;
                continue;
            };
            let to = SendMeta {
                dst: meta.src,
                ifindex: 0,
                src: None,
            };
            // The batch holds as many replies as the receive took datagrams: it cannot be full.
            if tx.push(&out[..len], &to) {
                c.answered += 1;
            } else {
                c.send_errors += 1;
            }
        }
        let report = sock.send_batch(&mut tx).context("sending")?;
        c.send_errors += report.failed as u64;
        c.answered -= report.failed as u64;
    }
    Ok(c)
}

/// Runs the responder; with `--duration`, prints a JSON report on stdout at the end.
pub(crate) fn run(a: &NullArgs) -> anyhow::Result<()> {
    ensure!(a.workers >= 1, "--workers must be at least 1");
    ensure!(
        a.duration >= 0.0 && a.duration.is_finite(),
        "--duration must be 0 or positive"
    );
    let cfg = V4SocketConfig {
        bind: a.bind,
        port: a.port,
        device: None,
        workers: a.workers,
        recv_buffer: Some(SOCKET_BUFFER),
        send_buffer: Some(SOCKET_BUFFER),
    };
    let socks = lessor_net::open_v4_group(&cfg)
        .with_context(|| format!("listening on {}:{}", a.bind, a.port))?;
    // Like lessor: the kernel hands client n's requests to worker n % workers.
    lessor_net::attach_steering(&socks).context("attaching the steering program")?;
    let responder = Responder {
        server_id: a.server_id,
        lease_time: a.lease_time,
    };
    let stop = Arc::new(AtomicBool::new(false));
    let cores = if a.no_pin {
        Vec::new()
    } else {
        lessor_net::available_cores()
    };
    let started = Instant::now();
    let mut handles = Vec::with_capacity(a.workers);
    for (w, sock) in socks.into_iter().enumerate() {
        let stop = stop.clone();
        let core = (!cores.is_empty()).then(|| cores[w % cores.len()]);
        let batch = a.batch;
        handles.push(
            std::thread::Builder::new()
                .name(format!("null-{w}"))
                .spawn(move || {
                    if let Some(core) = core
                        && let Err(e) = lessor_net::pin_current_thread(core)
                    {
                        eprintln!("lessor-perf: worker {w} not pinned: {e}");
                    }
                    serve(&sock, responder, batch, &stop)
                })
                .context("spawning a worker")?,
        );
    }
    eprintln!(
        "null-responder: listening on {}:{} with {} worker(s){}",
        a.bind,
        a.port,
        a.workers,
        if a.duration > 0.0 {
            format!(" for {}s", a.duration)
        } else {
            String::new()
        }
    );
    if a.duration > 0.0 {
        std::thread::sleep(Duration::from_secs_f64(a.duration));
        stop.store(true, Ordering::Relaxed);
    }
    let mut total = Counts::default();
    for h in handles {
        let c = h
            .join()
            .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
        total.received += c.received;
        total.answered += c.answered;
        total.ignored += c.ignored;
        total.send_errors += c.send_errors;
    }
    let seconds = started.elapsed().as_secs_f64();
    let report = NullReport {
        listen: SocketAddrV4::new(a.bind, a.port),
        workers: a.workers,
        seconds,
        received: total.received,
        answered: total.answered,
        ignored: total.ignored,
        send_errors: total.send_errors,
        answered_per_s: total.answered as f64 / seconds,
    };
    println!("{}", serde_json::to_string_pretty(&report)?);
    Ok(())
}
