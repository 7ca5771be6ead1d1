//! What `null-responder` and `null-responder6` share: the arguments that shape the run, the
//! worker loop (receive a batch, answer each request to its source, send the batch) and the
//! run around it (threads pinned in turn, an optional duration, the JSON report).

use std::fmt::Display;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, ensure};
use serde::Serialize;

use crate::batch_socket::BatchSocket;

/// The arguments both null responders take.
#[derive(Debug, clap::Args)]
pub(crate) struct NullRunArgs {
    /// Worker threads (one socket each, pinned to the cores the process may use in turn).
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
    /// Datagrams per recvmmsg/sendmmsg.
    #[arg(long, default_value_t = 64)]
    batch: usize,
    /// Leave the workers unpinned.
    #[arg(long)]
    no_pin: bool,
    /// Stop after this many seconds and print the counts (0: run until killed).
    #[arg(long, default_value_t = 0.0)]
    duration: f64,
}

impl NullRunArgs {
    pub(crate) fn check(&self) -> anyhow::Result<()> {
        ensure!(self.workers >= 1, "--workers must be at least 1");
        ensure!(
            self.duration >= 0.0 && self.duration.is_finite(),
            "--duration must be 0 or positive"
        );
        Ok(())
    }
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
struct NullReport<A> {
    listen: A,
    workers: usize,
    seconds: f64,
    received: u64,
    answered: u64,
    ignored: u64,
    send_errors: u64,
    answered_per_s: f64,
}

fn serve<S: BatchSocket>(
    sock: &S,
    answer: impl Fn(&[u8], &mut [u8]) -> Option<usize>,
    batch: usize,
    stop: &AtomicBool,
) -> anyhow::Result<Counts> {
    let (mut rx, mut tx) = S::batches(batch, S::NULL_BUF)?;
    let mut out = vec![0u8; S::NULL_BUF];
    let mut c = Counts::default();
    while !stop.load(Ordering::Relaxed) {
        // Blocks for the first datagram up to the socket's read timeout (200 ms), so the stop
        // flag is seen soon after it is set.
        let n = sock.recv(&mut rx, true).context("receiving")?;
        c.received += n as u64;
        for (data, to) in S::received(&rx) {
            let Some(len) = answer(data, &mut out) else {
                c.ignored += 1;
                continue;
            };
            // The batch holds as many replies as the receive took datagrams: it cannot be full.
            if S::push(&mut tx, &out[..len], &to) {
                c.answered += 1;
            } else {
                c.send_errors += 1;
            }
        }
        let report = sock.send(&mut tx).context("sending")?;
        c.send_errors += report.failed as u64;
        c.answered -= report.failed as u64;
    }
    Ok(c)
}

/// Serves on `socks` (threads named `name-k`) with `answer`, announced as `title` listening on
/// `listen`; with `--duration`, prints a JSON report on stdout at the end.
pub(crate) fn run<S, A>(
    a: &NullRunArgs,
    title: &str,
    name: &str,
    socks: Vec<S>,
    answer: impl Fn(&[u8], &mut [u8]) -> Option<usize> + Copy + Send + 'static,
    listen: A,
) -> anyhow::Result<()>
where
    S: BatchSocket,
    A: Display + Serialize,
{
    let stop = Arc::new(AtomicBool::new(false));
    let cores = if a.no_pin {
        Vec::new()
    } else {
        lessor_net::available_cores()
    };
    let started = Instant::now();
    let mut handles = Vec::with_capacity(socks.len());
    for (w, sock) in socks.into_iter().enumerate() {
        let stop = stop.clone();
        let core = (!cores.is_empty()).then(|| cores[w % cores.len()]);
        let batch = a.batch;
        handles.push(
            std::thread::Builder::new()
                .name(format!("{name}-{w}"))
                .spawn(move || {
                    if let Some(core) = core
                        && let Err(e) = lessor_net::pin_current_thread(core)
                    {
                        eprintln!("lessor-perf: worker {w} not pinned: {e}");
                    }
                    serve(&sock, answer, batch, &stop)
                })
                .context("spawning a worker")?,
        );
    }
    eprintln!(
        "{title}: listening on {listen} with {} worker(s){}",
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
        listen,
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
