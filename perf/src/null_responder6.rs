//! `null-responder6`: a stateless DHCPv6 server that answers every SOLICIT with an ADVERTISE and
//! every REQUEST, RENEW, REBIND and RELEASE with a REPLY, to measure what a load generator (or
//! `perfdhcp -6`) can reach at all.
//!
//! It keeps no lease: addresses and delegated prefixes are derived from the client's DUID (see
//! [`Responder`]), relay levels are unwrapped and wrapped back with their Interface-IDs, and
//! each reply goes to the request's source address and port. Workers are one `SO_REUSEPORT`
//! group, each pinned to a core and receiving and sending in batches (`recvmmsg`, `sendmmsg`),
//! as in `null-responder`. lessor-net's steering program reads a DHCPv4 header, so the v6
//! group is not steered: the kernel spreads datagrams by their 4-tuple, which for one relay
//! means one worker per relay port (give `load6` as many workers).

use std::net::{Ipv6Addr, SocketAddrV6};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use lessor_net::{RecvBatch6, SendBatch6, SendMeta6, V6Socket, V6SocketConfig};
use serde::Serialize;

use crate::wire6::{NULL_SERVER_DUID, Responder};

/// Receive and send buffer size: a relayed request with several levels fits.
const BUF: usize = 2048;
/// Socket buffers asked for (forced when running as root).
const SOCKET_BUFFER: usize = 8 << 20;

/// `null-responder6` arguments.
#[derive(Debug, clap::Args)]
pub(crate) struct NullArgs6 {
    /// Address to listen on.
    #[arg(long, default_value_t = Ipv6Addr::LOCALHOST)]
    bind: Ipv6Addr,
    /// UDP port to listen on.
    #[arg(long, default_value_t = 6547)]
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
    /// IA_NA addresses: this /64, the lower 64 bits from the client's DUID.
    #[arg(long, default_value = "fd00:231::")]
    na_prefix: Ipv6Addr,
    /// IA_PD prefixes: inside this prefix (`ADDR/LEN`), the client's DUID filling the bits up
    /// to --pd-len.
    #[arg(long, default_value = "fd00:2300::/32")]
    pd_prefix: String,
    /// Delegated prefix length.
    #[arg(long, default_value_t = 56)]
    pd_len: u8,
    /// Preferred lifetime, seconds (T1 and T2 are 50% and 80% of it).
    #[arg(long, default_value_t = 3600)]
    preferred: u32,
    /// Valid lifetime, seconds.
    #[arg(long, default_value_t = 7200)]
    valid: u32,
    /// Answer a SOLICIT with Rapid Commit with an ADVERTISE anyway.
    #[arg(long)]
    no_rapid_commit: bool,
}

/// What one worker (or all of them) did.
#[derive(Clone, Copy, Debug, Default, Serialize)]
struct Counts {
    received: u64,
    answered: u64,
    /// Not a message it answers, or malformed.
    ignored: u64,
    send_errors: u64,
}

#[derive(Debug, Serialize)]
struct NullReport6 {
    listen: SocketAddrV6,
    workers: usize,
    seconds: f64,
    received: u64,
    answered: u64,
    ignored: u64,
    send_errors: u64,
    answered_per_s: f64,
}

fn serve(
    sock: &V6Socket,
    responder: Responder,
    batch: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Counts> {
    let mut rx = RecvBatch6::new(batch, BUF)?;
    let mut tx = SendBatch6::new(batch, BUF)?;
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
            let to = SendMeta6 {
                dst: meta.src,
                src: None,
                ifindex: None,
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

/// `ADDR/LEN` with the bits after LEN zero.
fn parse_prefix(s: &str) -> anyhow::Result<(u128, u8)> {
    let (a, l) = s
        .split_once('/')
        .with_context(|| format!("{s:?}: write ADDR/LEN"))?;
    let a: Ipv6Addr = a.parse().with_context(|| format!("{s:?}: bad address"))?;
    let l: u8 = l.parse().with_context(|| format!("{s:?}: bad length"))?;
    ensure!(l <= 128, "{s:?}: length above 128");
    let a = u128::from(a);
    let host = u128::MAX.checked_shr(u32::from(l)).unwrap_or(0);
    ensure!(a & host == 0, "{s:?}: bits set after the prefix length");
    Ok((a, l))
}

/// Runs the responder; with `--duration`, prints a JSON report on stdout at the end.
pub(crate) fn run(a: &NullArgs6) -> anyhow::Result<()> {
    ensure!(a.workers >= 1, "--workers must be at least 1");
    ensure!(
        a.duration >= 0.0 && a.duration.is_finite(),
        "--duration must be 0 or positive"
    );
    let (pd_base, pd_base_len) = parse_prefix(&a.pd_prefix).context("--pd-prefix")?;
    ensure!(
        pd_base_len < a.pd_len && a.pd_len <= 128,
        "--pd-len must be longer than --pd-prefix's length and at most 128"
    );
    ensure!(
        u128::from(a.na_prefix) as u64 == 0,
        "--na-prefix must be a /64 (lower 64 bits zero)"
    );
    let responder = Responder {
        server_duid: NULL_SERVER_DUID,
        na_prefix: (u128::from(a.na_prefix) >> 64) as u64,
        pd_base,
        pd_base_len,
        pd_len: a.pd_len,
        preferred: a.preferred,
        valid: a.valid,
        rapid_commit: !a.no_rapid_commit,
    };
    let cfg = V6SocketConfig {
        bind: a.bind,
        port: a.port,
        device: None,
        workers: a.workers,
        recv_buffer: Some(SOCKET_BUFFER),
        send_buffer: Some(SOCKET_BUFFER),
        multicast_ifindexes: Vec::new(),
    };
    let socks = lessor_net::open_v6_group(&cfg)
        .with_context(|| format!("listening on [{}]:{}", a.bind, a.port))?;
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
                .name(format!("null6-{w}"))
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
        "null-responder6: listening on [{}]:{} with {} worker(s){}",
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
    let report = NullReport6 {
        listen: SocketAddrV6::new(a.bind, a.port, 0, 0),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(
            parse_prefix("fd00:2300::/32").expect("parses"),
            (0xfd00_2300_u128 << 96, 32)
        );
        assert!(parse_prefix("fd00:2300::1/32").is_err());
        assert!(parse_prefix("fd00:2300::").is_err());
        assert!(parse_prefix("fd00::/129").is_err());
        assert_eq!(parse_prefix("::/0").expect("parses"), (0, 0));
    }
}
