//! The load generators' driver, what `load` ([`v4`]) and `load6` ([`v6`]) share: the plan of
//! a run, the worker loop, the per-second progress and the report's common parts.
//!
//! A generator supplies its protocol as an [`Exchange`] (read a reply, move its client to the
//! next [`Phase`], send the opening request, a renewal or a release) over the clients'
//! [`Slots`], which keep what every family's client has (phase, sequence number, times) and
//! the deadlines; it sees one client at a time as an [`At`]. The driver routes each reply to
//! its client (counting garbage, other workers' replies, late and unexpected ones), times the
//! answers of each phase and counts its drops, and after a completed exchange rolls renew,
//! release or rest; [`drive`] runs it on the clock (open loop) or at a fixed number in flight
//! (closed loop) and sleeps in `poll` when there is nothing to do; [`launch`] starts the
//! workers together, and [`Running::seconds`] folds their reports into one line per second.
//! [`run`] does all of it for a family's [`Load`] and reports the run in one [`Report`]; the
//! JSON field names stay each generator's own ([`Names`]): only the figures behind them are
//! shared.

mod report;
pub(crate) mod v4;
pub(crate) mod v6;

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::os::fd::BorrowedFd;
use std::path::PathBuf;
use std::sync::{Arc, Barrier, OnceLock};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use crossbeam_channel::{Receiver, Sender};
use hdrhistogram::Histogram;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use serde::Serialize;

use crate::batch_socket::BatchSocket;
use report::us;
pub(crate) use report::{
    Achieved, Correctness, CpuMeter, CpuReport, Drops, Examples, Percentiles, Report, RunReport,
    Second, SecondNames, cpu_line, drops, emit, lag_tail, latency_line,
};

/// Clients are numbered in 24 bits (the v4 xid's low bits, chaddr bytes 3..6, the v4
/// correctness map's slot in 10.0.0.0/8).
pub(crate) const MAX_CLIENTS: u32 = 1 << 24;
/// Bytes of each receive buffer: a reply with every option lessor can add fits.
pub(crate) const RECV_BUF: usize = 1500;
/// Longest the loop sleeps in `poll` before it looks at the clock again.
const MAX_IDLE: Duration = Duration::from_millis(100);
/// Highest latency the histograms hold, in nanoseconds (larger values are clamped).
const HIST_MAX_NS: u64 = 60_000_000_000;
/// Nanoseconds per second, the progress lines' period.
const SECOND_NS: u64 = 1_000_000_000;

/// The counts the driver keeps for every family, whatever its exchange.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct DriverCounts {
    /// Datagrams received.
    pub(crate) received: u64,
    /// Datagrams the kernel refused to send.
    pub(crate) send_errors: u64,
    /// Clients passed over because they were still busy when their turn came again.
    pub(crate) busy_skips: u64,
    /// Datagrams that are not a well-formed reply for one of our clients.
    pub(crate) garbage: u64,
    /// Replies naming a client of another worker or beyond --clients.
    pub(crate) foreign: u64,
    /// Replies to an exchange that had already timed out or ended.
    pub(crate) late: u64,
    /// Replies the client's phase did not expect.
    pub(crate) unexpected: u64,
    /// Exchanges started (opening requests sent), requests taking an offer, renewals and
    /// releases sent.
    pub(crate) opened: u64,
    pub(crate) requests: u64,
    pub(crate) renewals: u64,
    pub(crate) releases: u64,
    /// Exchanges completed while new ones were still starting (the achieved rate's numerator).
    pub(crate) in_window: u64,
    /// Exchanges that timed out, by the [`Phase`] they were in.
    pub(crate) drops: [u64; 5],
}

/// Counts that add up over workers and subtract between seconds, and the latency histograms
/// that go with them.
pub(crate) trait Tally: Copy + Default + Send + Serialize + 'static {
    /// The family's latency histograms, kept beside its counts.
    type Hists: Merge;
    fn add(&mut self, o: &Self);
    fn minus(&self, o: &Self) -> Self;
    /// With the counts the driver keeps.
    fn with_driver(self, d: DriverCounts) -> Self;
    /// Datagrams received.
    fn received(&self) -> u64;
    /// Requests sent.
    fn sent(&self) -> u64;
    /// Exchanges completed within the sending window.
    fn in_window(&self) -> u64;
    /// Whether the family counts drops in `phase`, that is, awaits answers in it.
    fn awaits(phase: Phase) -> bool;
}

/// Declares the counters a worker keeps, as a [`Tally`] whose histograms are the `Hists` that
/// [`hists!`] declares beside it. They include [`DriverCounts`]' `received` to `unexpected`
/// and `requests` by name; the `driver` part names the fields that hold the others (the drops
/// by phase, for the phases the family's exchange has).
macro_rules! counters {
    (
        $ty:ident { $($(#[doc = $doc:literal])* $name:ident,)* }
        driver {
            opened: $opened:ident,
            renewals: $renewals:ident,
            releases: $releases:ident,
            in_window: $in_window:ident,
            drops: { $($phase:ident: $drops:ident,)* },
        }
    ) => {
        /// Event counts of one worker, or summed over workers.
        #[derive(Clone, Copy, Debug, Default, Serialize)]
        struct $ty {
            $($(#[doc = $doc])* $name: u64,)*
        }
        impl $crate::load::Tally for $ty {
            type Hists = Hists;
            fn add(&mut self, o: &$ty) {
                $(self.$name += o.$name;)*
            }
            fn minus(&self, o: &$ty) -> $ty {
                $ty { $($name: self.$name.saturating_sub(o.$name),)* }
            }
            fn with_driver(self, d: $crate::load::DriverCounts) -> $ty {
                $ty {
                    received: d.received,
                    send_errors: d.send_errors,
                    busy_skips: d.busy_skips,
                    garbage: d.garbage,
                    foreign: d.foreign,
                    late: d.late,
                    unexpected: d.unexpected,
                    requests: d.requests,
                    $opened: d.opened,
                    $renewals: d.renewals,
                    $releases: d.releases,
                    $in_window: d.in_window,
                    $($drops: d.drops[$crate::load::Phase::$phase as usize],)*
                    ..self
                }
            }
            fn received(&self) -> u64 {
                self.received
            }
            fn sent(&self) -> u64 {
                self.$opened + self.requests + self.$renewals + self.$releases
            }
            fn in_window(&self) -> u64 {
                self.$in_window
            }
            fn awaits(phase: $crate::load::Phase) -> bool {
                matches!(phase, $($crate::load::Phase::$phase)|*)
            }
        }
    };
}
pub(crate) use counters;

/// A worker's latency histograms, added up at the end.
pub(crate) trait Merge: Default + Send + 'static {
    /// Their percentiles, as reported.
    type Latencies: Serialize;
    fn merge(&mut self, o: &Self);
    fn latencies(&self) -> Self::Latencies;
    /// The histogram of the answers awaited in `phase`, if the family keeps one.
    fn phase(&mut self, phase: Phase) -> Option<&mut Histogram<u64>>;
}

/// Declares a generator's latency histograms (nanoseconds) as `Hists`, a [`Merge`], and
/// their percentiles for the report as `Latencies` (the same names), each with its label in
/// the summary (padded to `$width`); `for` names the [`Phase`] whose answers one times (the
/// driver records them, see [`Answer::Timed`]).
macro_rules! hists {
    (
        $width:literal;
        $($(#[doc = $doc:literal])* $name:ident $label:literal $(for $phase:ident)?,)*
    ) => {
        /// Latency histograms in nanoseconds.
        #[derive(Clone, Debug)]
        struct Hists {
            $($name: hdrhistogram::Histogram<u64>,)*
        }
        impl Default for Hists {
            fn default() -> Self {
                Hists { $($name: $crate::load::histogram(),)* }
            }
        }
        impl $crate::load::Merge for Hists {
            type Latencies = Latencies;
            fn merge(&mut self, o: &Hists) {
                // Same bounds everywhere: adding cannot fail.
                $(let _ = self.$name.add(&o.$name);)*
            }
            fn latencies(&self) -> Latencies {
                Latencies { $($name: $crate::load::Percentiles::of(&self.$name),)* }
            }
            fn phase(
                &mut self,
                phase: $crate::load::Phase,
            ) -> Option<&mut hdrhistogram::Histogram<u64>> {
                match phase {
                    $($($crate::load::Phase::$phase => Some(&mut self.$name),)?)*
                    _ => None,
                }
            }
        }
        /// Latency percentiles in microseconds.
        #[derive(Debug, Serialize)]
        struct Latencies {
            $($(#[doc = $doc])* $name: $crate::load::Percentiles,)*
        }
        impl Latencies {
            /// Appends the summary's latency lines.
            fn write(&self, s: &mut String) {
                s.push_str("  latency (us):\n");
                $($crate::load::latency_line(s, $label, $width, &self.$name);)*
            }
        }
    };
}
pub(crate) use hists;

pub(crate) fn histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, HIST_MAX_NS, 3).expect("valid histogram bounds")
}

/// Declares a generator's `--mix` values as `Mix`: the exchange alone (`$alone`, the family's
/// name for it), then a renewal, a release, or either by the percents (`mixed`); each family
/// documents the first three in its own terms. `Mix::fixed` gives [`RunArgs::plan`] the
/// percents the value fixes.
macro_rules! mix {
    (
        $(#[doc = $alone_doc:literal])* $alone:ident,
        $(#[doc = $renew_doc:literal])* Renew,
        $(#[doc = $release_doc:literal])* Release,
    ) => {
        /// What each client does after its exchange.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, Serialize)]
        #[serde(rename_all = "kebab-case")]
        pub(crate) enum Mix {
            $(#[doc = $alone_doc])*
            $alone,
            $(#[doc = $renew_doc])*
            Renew,
            $(#[doc = $release_doc])*
            Release,
            /// Renew with --renew-pct, release with --release-pct, else nothing.
            Mixed,
        }

        impl Mix {
            /// The percents of clients renewing and releasing this value fixes; `None` for
            /// `mixed` (the arguments give them).
            fn fixed(self) -> Option<(u8, u8)> {
                match self {
                    Mix::$alone => Some((0, 0)),
                    Mix::Renew => Some((100, 0)),
                    Mix::Release => Some((0, 100)),
                    Mix::Mixed => None,
                }
            }
        }
    };
}
pub(crate) use mix;

/// The arguments both generators take alike.
#[derive(Debug, clap::Args)]
pub(crate) struct RunArgs {
    /// New exchanges (DORAs for `load`) per second, sent on the clock whatever the replies
    /// (open loop). 0: closed loop, as fast as the server answers with --inflight exchanges
    /// outstanding.
    #[arg(long, default_value_t = 0)]
    pub(crate) rate: u64,
    /// Closed loop: clients in the middle of an exchange at any time, over all workers.
    #[arg(long, default_value_t = 256)]
    pub(crate) inflight: usize,
    /// Seconds during which new exchanges start; then the run waits for the outstanding ones
    /// (at most 3 timeouts).
    #[arg(long, default_value_t = 10.0)]
    pub(crate) duration: f64,
    /// Distinct clients (MACs and client ids for `load`, DUIDs and peer-addresses for
    /// `load6`), taken in turn and reused after the last one; at most 2^24.
    #[arg(long, default_value_t = 10_000_000)]
    pub(crate) clients: u32,
    /// Start no more than this many exchanges (over all workers), even before --duration
    /// ends: fills a server with a known number of leases (the report's rates still divide
    /// by --duration: fill with it, measure without it).
    #[arg(long)]
    pub(crate) stop_after: Option<u64>,
    /// With --mix mixed: percent of clients that renew after their exchange.
    #[arg(long, default_value_t = 30)]
    pub(crate) renew_pct: u8,
    /// With --mix mixed: percent of clients that release after their exchange.
    #[arg(long, default_value_t = 10)]
    pub(crate) release_pct: u8,
    /// A two-way exchange (DISCOVER-OFFER, SOLICIT-ADVERTISE, ...) not answered within this is
    /// a drop; nothing is retransmitted.
    #[arg(long, default_value_t = 1000)]
    pub(crate) timeout_ms: u64,
    /// Worker threads, each with its own socket and port, pinned to the cores the process may
    /// use (taskset) in turn.
    #[arg(long, default_value_t = 1)]
    pub(crate) workers: usize,
    /// Datagrams per recvmmsg/sendmmsg.
    #[arg(long, default_value_t = 64)]
    pub(crate) batch: usize,
    /// Leave the workers unpinned (when the server runs on the same cores with its own
    /// pinning, both would otherwise start on the first core).
    #[arg(long)]
    pub(crate) no_pin: bool,
    /// The server's process id: report its CPU time (utime + stime from /proc/PID/stat) per
    /// completed exchange.
    #[arg(long)]
    pub(crate) server_pid: Option<u32>,
    /// Also write the JSON report to this file.
    #[arg(long)]
    pub(crate) json: Option<PathBuf>,
    /// No per-second progress lines on stderr.
    #[arg(long)]
    pub(crate) quiet: bool,
}

impl RunArgs {
    /// The run's plan: `fixed` percents renewing and releasing, or (`None`, --mix mixed)
    /// --renew-pct and --release-pct.
    pub(crate) fn plan(&self, fixed: Option<(u8, u8)>) -> anyhow::Result<Plan> {
        Plan::new(
            self.workers,
            self.clients,
            self.rate,
            self.inflight,
            self.duration,
            self.timeout_ms,
        )?
        .with_mix(fixed.unwrap_or((self.renew_pct, self.release_pct)))
        .map(|plan| Plan {
            stop_after: self.stop_after,
            ..plan
        })
    }
}

/// The settings every worker of a run shares.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Plan {
    pub(crate) workers: u32,
    pub(crate) clients: u32,
    /// New exchanges per second over all workers; 0 for closed loop.
    pub(crate) rate: u64,
    /// Closed loop: exchanges outstanding at any time, over all workers.
    inflight: usize,
    /// When new exchanges stop starting, nanoseconds after the start.
    pub(crate) end_ns: u64,
    pub(crate) timeout_ns: u64,
    /// Percent of clients that renew, and that release, after their exchange.
    pub(crate) renew_pct: u8,
    pub(crate) release_pct: u8,
    /// --stop-after: most exchanges to start over all workers.
    pub(crate) stop_after: Option<u64>,
    /// Only the clients this keeps are started (DHCPv4 --scope).
    pub(crate) keep: Option<Keep>,
}

/// Which clients a run starts: those whose number (plus `first`) `test` keeps for `arg`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Keep {
    pub(crate) test: fn(u32, u8) -> bool,
    pub(crate) arg: u8,
    pub(crate) first: u32,
}

impl Plan {
    /// Checks the arguments both generators take alike (the mix comes with [`Plan::with_mix`]).
    pub(crate) fn new(
        workers: usize,
        clients: u32,
        rate: u64,
        inflight: usize,
        duration: f64,
        timeout_ms: u64,
    ) -> anyhow::Result<Self> {
        ensure!(
            (1..=MAX_CLIENTS).contains(&clients),
            "--clients must be 1 to 2^24 (16777216)"
        );
        ensure!(workers >= 1, "--workers must be at least 1");
        ensure!(
            workers as u64 <= u64::from(clients),
            "--workers must not exceed --clients"
        );
        ensure!(
            duration > 0.0 && duration.is_finite(),
            "--duration must be positive"
        );
        ensure!(timeout_ms >= 1, "--timeout-ms must be at least 1");
        ensure!(
            rate > 0 || inflight >= workers,
            "closed loop needs --inflight >= --workers"
        );
        Ok(Plan {
            workers: workers as u32,
            clients,
            rate,
            inflight,
            end_ns: (duration * 1e9) as u64,
            timeout_ns: timeout_ms * 1_000_000,
            renew_pct: 0,
            release_pct: 0,
            stop_after: None,
            keep: None,
        })
    }

    /// With `renew_pct` and `release_pct` percent of clients renewing and releasing.
    pub(crate) fn with_mix(self, (renew_pct, release_pct): (u8, u8)) -> anyhow::Result<Self> {
        ensure!(
            u16::from(renew_pct) + u16::from(release_pct) <= 100,
            "--renew-pct + --release-pct must not exceed 100"
        );
        Ok(Plan {
            renew_pct,
            release_pct,
            ..self
        })
    }

    /// "closed" or "open", as reported.
    pub(crate) fn mode(&self) -> &'static str {
        if self.rate == 0 { "closed" } else { "open" }
    }

    /// How many clients worker `id` owns (client `n` belongs to worker `n % workers`).
    pub(crate) fn local_clients(&self, id: u32) -> u32 {
        (self.clients - id).div_ceil(self.workers)
    }

    /// Worker `id`'s share of --stop-after; no limit without it.
    pub(crate) fn quota(&self, id: u32) -> u64 {
        self.stop_after.map_or(u64::MAX, |n| {
            let workers = u64::from(self.workers);
            n / workers + u64::from(u64::from(id) < n % workers)
        })
    }

    /// Worker `id`'s share of --inflight in closed loop; no limit in open loop.
    pub(crate) fn max_active(&self, id: u32) -> usize {
        if self.rate == 0 {
            let workers = self.workers as usize;
            self.inflight / workers + usize::from((id as usize) < self.inflight % workers)
        } else {
            usize::MAX
        }
    }

    /// Room for a worker's deadlines, so the queue never grows (and copies) during the run: one
    /// entry per request awaiting a reply (`three_phases`: a renewal or release after the
    /// exchange waits too), each kept for the timeout. Closed loop assumes at most 250k
    /// exchanges per second per worker.
    pub(crate) fn deadline_capacity(&self, three_phases: bool) -> usize {
        let per_worker = if self.rate == 0 {
            250_000.0
        } else {
            self.rate as f64 / f64::from(self.workers)
        };
        let phases = if three_phases { 3.0 } else { 2.0 };
        let secs = self.timeout_ns as f64 / 1e9;
        ((per_worker * phases * secs * 1.25) as usize + 4096).min(1 << 22)
    }

    /// The state of worker `id`'s generator for [`Plan::roll`].
    pub(crate) fn rng_seed(id: u32) -> u64 {
        0x9e37_79b9_7f4a_7c15 ^ (u64::from(id) + 1).wrapping_mul(0xbf58_476d_1ce4_e5b9)
    }

    /// What a client does after its exchange: renew if the roll is below `renew_pct`, release
    /// if below `renew_pct + release_pct`; 100 (rest) when the mix has neither.
    pub(crate) fn roll(&self, rng: &mut u64) -> u8 {
        if self.renew_pct == 0 && self.release_pct == 0 {
            return 100;
        }
        (crate::wire::xorshift64(rng) % 100) as u8
    }
}

/// One socket per worker, worker `w` on `local`:`base + w`, with its port. Opened before any
/// thread starts, so a port in use fails first.
pub(crate) fn open_workers<S: BatchSocket>(
    local: S::Ip,
    base: u16,
    workers: usize,
) -> anyhow::Result<Vec<(u16, S)>> {
    let mut socks = Vec::with_capacity(workers);
    for w in 0..workers {
        let port = u16::try_from(usize::from(base) + w)
            .ok()
            .context("local ports run past 65535")?;
        let mut group = S::open_group(local, port, 1)
            .with_context(|| format!("opening {}", SocketAddr::new(local.into(), port)))?;
        socks.push((port, group.pop().context("an empty socket group")?));
    }
    Ok(socks)
}

/// An exchange's deadline; stale once the client moved on (another sequence number or phase
/// start).
#[derive(Clone, Copy, Debug)]
struct Deadline {
    at: u64,
    local: u32,
    seq: u8,
}

/// What the driver waits for from a client. Both families' exchanges go through the same
/// steps: an opening request (DISCOVER, SOLICIT), the request taking the offer, then perhaps
/// a renewal or a release.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Between exchanges.
    #[default]
    Idle,
    /// An answer to the opening request (OFFER; ADVERTISE or a rapid REPLY).
    Opening,
    /// An answer to the request that takes the offer.
    Requesting,
    /// An answer to a renewal.
    Renewing,
    /// The answer to a release (DHCPv6's; a DHCPv4 RELEASE has none).
    Releasing,
}

/// What a family keeps of a client besides what [`Client`] holds.
pub(crate) trait State: Copy + std::fmt::Debug + Default + Send + 'static {}

impl<T: Copy + std::fmt::Debug + Default + Send + 'static> State for T {}

/// One client of a worker: what the driver keeps of every client, and the family's own state.
#[derive(Clone, Copy, Debug, Default)]
pub(crate) struct Client<S> {
    pub(crate) phase: Phase,
    /// Sequence number of the client's current request (part of its transaction id).
    pub(crate) seq: u8,
    /// When the exchange started, and when its current phase did.
    pub(crate) t_start: u64,
    pub(crate) t_phase: u64,
    pub(crate) st: S,
}

/// A worker's clients and the driver's bookkeeping of them: deadlines, exchanges in flight,
/// the latencies of the current second and the schedule lag.
///
/// Clients live in one `Vec` reserved up front and filled as they are first used (they are
/// taken in turn from 0), so a run touches only the pages of the clients it uses.
#[derive(Debug)]
pub(crate) struct Slots<S: State> {
    pub(crate) id: u32,
    pub(crate) plan: Plan,
    clients: Vec<Client<S>>,
    /// Clients this worker owns.
    count: u32,
    next_local: u32,
    deadlines: VecDeque<Deadline>,
    active: usize,
    max_active: usize,
    /// Generator state for [`Plan::roll`].
    pub(crate) rng: u64,
    /// Latency of the exchanges completed since the last progress tick.
    tick: Histogram<u64>,
    /// Open loop: how late each exchange started against its due time.
    lag: Histogram<u64>,
}

impl<S: State> Slots<S> {
    /// Worker `id`'s clients; `phases` requests of an exchange may await a reply at once (see
    /// [`Plan::deadline_capacity`]).
    pub(crate) fn new(id: u32, plan: Plan, three_phases: bool) -> Self {
        Slots {
            id,
            plan,
            clients: Vec::with_capacity(plan.local_clients(id) as usize),
            count: plan.local_clients(id),
            next_local: 0,
            deadlines: VecDeque::with_capacity(plan.deadline_capacity(three_phases)),
            active: 0,
            max_active: plan.max_active(id),
            rng: Plan::rng_seed(id),
            tick: histogram(),
            lag: histogram(),
        }
    }

    /// The client number of local client `l`.
    pub(crate) fn number(&self, l: usize) -> u32 {
        l as u32 * self.plan.workers + self.id
    }

    /// The local index of client number `client`, if this worker owns it.
    pub(crate) fn local(&self, client: u32) -> Option<usize> {
        (client < self.plan.clients && client % self.plan.workers == self.id)
            .then(|| (client / self.plan.workers) as usize)
    }

    /// Local client `l` (one this worker owns), created idle if never used yet.
    pub(crate) fn get(&mut self, l: usize) -> &mut Client<S> {
        while self.clients.len() <= l {
            self.clients.push(Client::default());
        }
        &mut self.clients[l]
    }

    /// Takes the next idle client in turn, counting the busy ones passed over; `None` if
    /// every client is busy. The exchange starts at `now`.
    pub(crate) fn start(&mut self, now: u64, busy_skips: &mut u64) -> Option<usize> {
        let n = self.count;
        for _ in 0..n {
            let l = self.next_local as usize;
            self.next_local = if self.next_local + 1 == n {
                0
            } else {
                self.next_local + 1
            };
            if let Some(k) = self.plan.keep
                && !(k.test)(self.number(l) + k.first, k.arg)
            {
                continue;
            }
            let c = self.get(l);
            if c.phase == Phase::Idle {
                c.t_start = now;
                self.active += 1;
                return Some(l);
            }
            *busy_skips += 1;
        }
        None
    }

    /// Advances the client's sequence number (a request that awaits no reply).
    pub(crate) fn next_seq(&mut self, l: usize) -> u8 {
        let c = &mut self.clients[l];
        c.seq = c.seq.wrapping_add(1);
        c.seq
    }

    /// The client sends its next request and waits for its reply in `phase` until the timeout.
    pub(crate) fn enter(&mut self, l: usize, phase: Phase, now: u64) {
        let seq = self.next_seq(l);
        let c = &mut self.clients[l];
        c.phase = phase;
        c.t_phase = now;
        self.deadlines.push_back(Deadline {
            at: now + self.plan.timeout_ns,
            local: l as u32,
            seq,
        });
    }

    /// The client's exchange ended: it is idle again.
    pub(crate) fn finish(&mut self, l: usize) {
        self.clients[l].phase = Phase::Idle;
        self.active -= 1;
    }

    /// Pops the deadlines that passed by `now` (all of them with `force`) and returns the
    /// first client, with its phase, whose current exchange one of them ends; `None` once no
    /// more are due. A client's exchange is current while its sequence number and phase start
    /// are the deadline's and it is not idle.
    pub(crate) fn next_expired(&mut self, now: u64, force: bool) -> Option<(usize, Phase)> {
        while let Some(&d) = self.deadlines.front() {
            if d.at > now && !force {
                break;
            }
            self.deadlines.pop_front();
            let l = d.local as usize;
            let c = &self.clients[l];
            if c.seq == d.seq && c.t_phase + self.plan.timeout_ns == d.at && c.phase != Phase::Idle
            {
                return Some((l, c.phase));
            }
        }
        None
    }
}

/// A worker's socket and its batches, and where its requests go.
pub(crate) struct Link<S: BatchSocket> {
    pub(crate) sock: S,
    pub(crate) to: S::To,
    rx: S::Rx,
    tx: S::Tx,
    /// Datagrams received.
    pub(crate) received: u64,
    /// Datagrams the kernel refused to send.
    pub(crate) send_errors: u64,
}

impl<S: BatchSocket> std::fmt::Debug for Link<S> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Link")
            .field("to", &self.to)
            .finish_non_exhaustive()
    }
}

impl<S: BatchSocket> Link<S> {
    /// `sock` sending to `to`, `batch` datagrams per system call.
    pub(crate) fn new(sock: S, to: S::To, batch: usize) -> anyhow::Result<Self> {
        let (rx, tx) = S::batches(batch, RECV_BUF).context("batches")?;
        Ok(Link {
            sock,
            to,
            rx,
            tx,
            received: 0,
            send_errors: 0,
        })
    }

    /// Take the replies queued now, without blocking; returns how many.
    fn receive(&mut self) -> anyhow::Result<usize> {
        let got = self
            .sock
            .recv(&mut self.rx, false)
            .context("receiving replies")?;
        self.received += got as u64;
        Ok(got)
    }

    /// Reply `i` of those just received.
    pub(crate) fn reply(&self, i: usize) -> &[u8] {
        S::datagram(&self.rx, i)
    }

    /// Queue one request; sends the batch first when it is full.
    pub(crate) fn queue(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        if !S::push(&mut self.tx, bytes, &self.to) {
            self.send()?;
            if !S::push(&mut self.tx, bytes, &self.to) {
                bail!("a {}-byte request does not fit the send batch", bytes.len());
            }
        }
        Ok(())
    }

    fn send(&mut self) -> anyhow::Result<()> {
        let report = self.sock.send(&mut self.tx).context("sending a batch")?;
        self.send_errors += report.failed as u64;
        Ok(())
    }

    /// Send what is queued; `true` if there was anything.
    fn flush(&mut self) -> anyhow::Result<bool> {
        let sent = !S::is_empty(&self.tx);
        self.send()?;
        Ok(sent)
    }
}

/// A family's exchange state machine over the clients' [`Slots`]: read a reply and move its
/// client to the next [`Phase`], build each request. [`drive`] runs it inside an [`Ex`], which
/// holds what every family's worker has, and hands it one client at a time as an [`At`].
pub(crate) trait Exchange: Sized + Send + 'static {
    type State: State;
    /// The counters, whose drops by phase name the phases the exchange awaits answers in.
    type Counters: Tally;
    type Reply: Reply;
    /// Reads a datagram: the number of the client it answers, and the reply; `None` for
    /// garbage (malformed, or not one of our clients' identities).
    fn parse(&self, datagram: &[u8]) -> Option<(u32, Self::Reply)>;
    /// The transaction id of client `number`'s request with sequence number `seq`.
    fn xid(number: u32, seq: u8) -> u32;
    /// Takes in what `r` says whatever the client awaits (a lease the server granted counts
    /// even in a late reply); `false` drops the reply there, the family having counted why.
    fn heard(at: &mut At<'_, Self>, r: &Self::Reply) -> bool;
    /// Advance the client with `r`, a reply to the request it awaits.
    fn on_reply(at: &mut At<'_, Self>, r: Self::Reply) -> anyhow::Result<Answer>;
    /// Send the request of `step`: the driver has just moved the client to the step's phase
    /// (or, for a release that awaits no answer, to its next sequence number).
    fn request(at: &mut At<'_, Self>, step: Step) -> anyhow::Result<()>;
}

/// What a reply to the request a client awaits was, as its family took it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Answer {
    /// The answer of the client's phase, timed in the phase's histogram (see [`hists!`]).
    Timed,
    /// An answer whose latency is not kept (a DHCPv4 NAK).
    Untimed,
    /// A reply the phase does not expect, counted as such.
    Unexpected,
}

/// A reply as a family reads it, and the socket it comes on.
pub(crate) trait Reply {
    type Sock: BatchSocket;
    /// The transaction id of the request it answers.
    fn xid(&self) -> u32;
}

/// An exchange's socket.
type SockOf<E> = <<E as Exchange>::Reply as Reply>::Sock;

/// Whether the server answers `E`'s releases (DHCPv6 does; a DHCPv4 RELEASE has no reply).
fn release_answered<E: Exchange>() -> bool {
    E::Counters::awaits(Phase::Releasing)
}

/// A request the driver decides to send; the family's exchange sends the others (a request
/// taking an offer) as replies come.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// The opening request of an exchange (DISCOVER, SOLICIT).
    Open,
    /// A renewal of what the exchange got.
    Renew,
    /// A release of it: the family gives its leases up first.
    Release,
}

/// A worker's exchange: its link, counters and histograms, and the family's part `f`.
pub(crate) struct Ex<E: Exchange> {
    pub(crate) link: Link<SockOf<E>>,
    pub(crate) c: E::Counters,
    pub(crate) h: HistsOf<E>,
    /// What the driver counts besides the link's figures.
    d: DriverCounts,
    pub(crate) f: E,
}

/// An exchange's latency histograms.
pub(crate) type HistsOf<E> = <<E as Exchange>::Counters as Tally>::Hists;

impl<E: Exchange> std::fmt::Debug for Ex<E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Ex")
            .field("link", &self.link)
            .finish_non_exhaustive()
    }
}

impl<E: Exchange> Ex<E> {
    /// The counters so far, the driver's included.
    fn counters(&self) -> E::Counters {
        self.c.with_driver(DriverCounts {
            received: self.link.received,
            send_errors: self.link.send_errors,
            ..self.d
        })
    }

    /// Take reply `i` of those just received: to its client's exchange, if it is a reply
    /// for a client of this worker.
    fn take(&mut self, s: &mut Slots<E::State>, i: usize, now: u64) -> anyhow::Result<()> {
        let Some((client, r)) = self.f.parse(self.link.reply(i)) else {
            self.d.garbage += 1;
            return Ok(());
        };
        let Some(l) = s.local(client) else {
            self.d.foreign += 1;
            return Ok(());
        };
        let mut at = At { x: self, s, l, now };
        if !E::heard(&mut at, &r) {
            return Ok(());
        }
        let phase = at.client().phase;
        if phase == Phase::Idle || r.xid() != at.xid() {
            at.x.d.late += 1;
            return Ok(());
        }
        let took = at.now.saturating_sub(at.client().t_phase);
        match E::on_reply(&mut at, r)? {
            Answer::Timed => {
                if let Some(h) = at.x.h.phase(phase) {
                    h.saturating_record(took);
                }
            }
            Answer::Untimed => {}
            Answer::Unexpected => at.x.d.unexpected += 1,
        }
        Ok(())
    }

    /// Start an exchange for the next idle client; `false` if every client is busy.
    fn start(&mut self, s: &mut Slots<E::State>, now: u64) -> anyhow::Result<bool> {
        let Some(l) = s.start(now, &mut self.d.busy_skips) else {
            return Ok(false);
        };
        self.d.opened += 1;
        At { x: self, s, l, now }.enter(Phase::Opening, Step::Open)?;
        Ok(true)
    }
}

/// One client of a worker at one moment, as the family's [`Exchange`] sees it: the worker's
/// exchange `x` and clients `s`, which client, and the time. What every family does to a
/// client (number its request, take an offer, finish, complete) is said here once.
pub(crate) struct At<'a, E: Exchange> {
    pub(crate) x: &'a mut Ex<E>,
    pub(crate) s: &'a mut Slots<E::State>,
    /// The client's index in `s`.
    l: usize,
    pub(crate) now: u64,
}

impl<E: Exchange> std::fmt::Debug for At<'_, E> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("At")
            .field("l", &self.l)
            .field("now", &self.now)
            .finish_non_exhaustive()
    }
}

impl<E: Exchange> At<'_, E> {
    /// The client's number in the run.
    pub(crate) fn number(&self) -> u32 {
        self.s.number(self.l)
    }

    /// The client, as the driver and the family keep it.
    pub(crate) fn client(&mut self) -> &mut Client<E::State> {
        self.s.get(self.l)
    }

    /// The family's state of the client.
    pub(crate) fn state(&mut self) -> &mut E::State {
        &mut self.s.get(self.l).st
    }

    /// The worker's exchange and the client, borrowed together.
    pub(crate) fn split(&mut self) -> (&mut Ex<E>, &mut Client<E::State>) {
        (&mut *self.x, self.s.get(self.l))
    }

    /// The transaction id of the client's current request.
    pub(crate) fn xid(&mut self) -> u32 {
        E::xid(self.number(), self.client().seq)
    }

    /// The phase the client is in.
    pub(crate) fn phase(&mut self) -> Phase {
        self.client().phase
    }

    /// The client takes the offer: it awaits the answer to the request the family sends next.
    pub(crate) fn take_offer(&mut self) {
        self.s.enter(self.l, Phase::Requesting, self.now);
        self.x.d.requests += 1;
    }

    /// The client's exchange, renewal or release ended: it is idle again.
    pub(crate) fn finish(&mut self) {
        self.s.finish(self.l);
    }

    /// The client's exchange completed: records its latency (and returns it), then renews,
    /// releases or rests as the plan's roll says.
    pub(crate) fn completed(&mut self) -> anyhow::Result<u64> {
        let plan = self.s.plan;
        let took = self.now.saturating_sub(self.client().t_start);
        self.s.tick.saturating_record(took);
        if self.now < plan.end_ns {
            self.x.d.in_window += 1;
        }
        let roll = plan.roll(&mut self.s.rng);
        if roll < plan.renew_pct {
            self.x.d.renewals += 1;
            self.enter(Phase::Renewing, Step::Renew)?;
        } else if roll < plan.renew_pct.saturating_add(plan.release_pct) {
            self.x.d.releases += 1;
            if release_answered::<E>() {
                self.enter(Phase::Releasing, Step::Release)?;
            } else {
                self.s.next_seq(self.l);
                E::request(self, Step::Release)?;
                self.finish();
            }
        } else {
            self.finish();
        }
        Ok(took)
    }

    /// The client sends the request of `step` and awaits its answer in `phase`.
    fn enter(&mut self, phase: Phase, step: Step) -> anyhow::Result<()> {
        self.s.enter(self.l, phase, self.now);
        E::request(self, step)
    }
}

/// A worker as [`drive`] runs it: a family's exchange over its clients. It owns its socket,
/// its clients and their state.
#[derive(Debug)]
pub(crate) struct Worker<E: Exchange> {
    pub(crate) slots: Slots<E::State>,
    pub(crate) ex: Ex<E>,
}

impl<E: Exchange> Worker<E> {
    /// Drop the exchanges whose deadline passed (all of them with `force`).
    fn expire(&mut self, now: u64, force: bool) {
        while let Some((l, phase)) = self.slots.next_expired(now, force) {
            self.ex.d.drops[phase as usize] += 1;
            self.slots.finish(l);
        }
    }

    /// The latencies of the exchanges completed since the last call.
    fn take_latency(&mut self) -> Histogram<u64> {
        let h = self.slots.tick.clone();
        self.slots.tick.reset();
        h
    }
}

/// One second's worth of a worker's progress.
#[derive(Debug)]
pub(crate) struct Tick<C> {
    worker: usize,
    /// The worker's last report (its final, partial second).
    last: bool,
    second: u64,
    counters: C,
    active: u64,
    /// Latency of the exchanges completed this second.
    latency: Histogram<u64>,
    /// Largest schedule lag, nanoseconds.
    lag: u64,
}

/// Sleep in `poll` until a reply arrives on `sock` or `wake` comes. poll counts in
/// milliseconds: a `precise` wake (a send due on the clock) under a millisecond is spun; any
/// other (a timeout, the next progress line) is rounded up, since being up to a millisecond
/// late to declare a drop changes nothing, while spinning on the deadline queue (one entry per
/// request, the oldest always about to fall due at a few thousand requests per second) would
/// keep the core busy in closed loop against a slow server.
fn idle_until(sock: BorrowedFd<'_>, now: u64, wake: u64, precise: bool) {
    let wait = Duration::from_nanos(wake.saturating_sub(now)).min(MAX_IDLE);
    let ms = if precise {
        wait.as_millis()
    } else {
        wait.as_nanos().div_ceil(1_000_000)
    };
    if ms == 0 {
        std::hint::spin_loop();
        return;
    }
    let mut fds = [PollFd::new(sock, PollFlags::POLLIN)];
    let _ = poll(
        &mut fds,
        PollTimeout::from(ms.min(u128::from(u16::MAX)) as u16),
    );
}

/// A worker's loop: take whatever replies are queued, expire exchanges past their timeout,
/// start new ones (on the clock in open loop, up to the worker's share in flight in closed
/// loop), send, report each second; sleep when there is nothing to do. After the sending
/// window it waits for the exchanges outstanding, at most 3 timeouts.
fn drive<E: Exchange>(
    mut w: Worker<E>,
    ticks: &Sender<Tick<E::Counters>>,
    start: &StartLine,
) -> Finished<E> {
    start.ready.wait();
    start.go.wait();
    let epoch = *start.epoch.get().context("no start time")?;
    let plan = w.slots.plan;
    let id = w.slots.id;
    let mut end = plan.end_ns;
    let mut drain_end = end + 3 * plan.timeout_ns + 10_000_000;
    // Exchanges this worker may still start (--stop-after).
    let mut quota = plan.quota(id);
    // Open loop: this worker's k-th exchange is due at offset + k * interval.
    let (interval, offset) = if plan.rate > 0 {
        let iv = 1e9 * f64::from(plan.workers) / plan.rate as f64;
        (iv, f64::from(id) * 1e9 / plan.rate as f64)
    } else {
        (0.0, 0.0)
    };
    let due = |k: u64| (offset + k as f64 * interval) as u64;
    let mut due_k: u64 = 0;
    let per_round = <SockOf<E> as BatchSocket>::capacity(&w.ex.link.tx);
    let mut next_tick = SECOND_NS;
    let mut second = 1;
    // Largest schedule lag this second.
    let mut tick_lag = 0;
    let tick = |w: &mut Worker<E>, second: u64, last: bool, lag: u64| Tick {
        worker: id as usize,
        last,
        second,
        counters: w.ex.counters(),
        active: if last { 0 } else { w.slots.active as u64 },
        latency: w.take_latency(),
        lag,
    };
    loop {
        let got = w.ex.link.receive()?;
        let now = epoch.elapsed().as_nanos() as u64;
        for i in 0..got {
            w.ex.take(&mut w.slots, i, now)?;
        }
        w.expire(now, false);

        let mut started = 0;
        if now < end {
            if plan.rate == 0 {
                while w.slots.active < w.slots.max_active
                    && started < per_round
                    && (started as u64) < quota
                    && w.ex.start(&mut w.slots, now)?
                {
                    started += 1;
                }
            } else {
                loop {
                    let due = due(due_k);
                    if due > now || started >= per_round || started as u64 >= quota {
                        break;
                    }
                    w.slots.lag.saturating_record(now - due);
                    tick_lag = tick_lag.max(now - due);
                    due_k += 1;
                    // All clients busy (a tiny --clients): the slot is lost, not queued.
                    if w.ex.start(&mut w.slots, now)? {
                        started += 1;
                    }
                }
            }
        }
        quota -= started as u64;
        if quota == 0 && now < end {
            // --stop-after reached: the sending window ends now.
            end = now;
            drain_end = end + 3 * plan.timeout_ns + 10_000_000;
        }
        let sent = w.ex.link.flush()?;

        if now >= next_tick {
            let _ = ticks.send(tick(&mut w, second, false, tick_lag));
            tick_lag = 0;
            second += 1;
            next_tick += SECOND_NS;
        }
        if now >= end && (w.slots.active == 0 || now >= drain_end) {
            break;
        }
        if got == 0 && !sent {
            let mut wake = next_tick.min(drain_end);
            let mut precise = false;
            if let Some(d) = w.slots.deadlines.front() {
                let at = d.at;
                wake = wake.min(at);
            }
            if now < end {
                wake = wake.min(end);
                if plan.rate > 0 {
                    let due = due(due_k);
                    if due <= wake {
                        (wake, precise) = (due, true);
                    }
                } else if w.slots.active < w.slots.max_active {
                    (wake, precise) = (now, true);
                }
            }
            idle_until(w.ex.link.sock.fd(), now, wake, precise);
        }
    }
    w.expire(u64::MAX, true);
    // The last partial second, so the per-second series adds up to the totals.
    let _ = ticks.send(tick(&mut w, second, true, tick_lag));
    Ok((w.ex.counters(), w.ex.h, w.slots.lag))
}

/// What a worker hands back at the end: its counters, histograms and schedule lag.
type Finished<E> = anyhow::Result<(<E as Exchange>::Counters, HistsOf<E>, Histogram<u64>)>;

/// Where the workers wait until all are ready, so that the clock starts for all at once
/// (after sockets, arrays and pinning are done).
#[derive(Debug)]
struct StartLine {
    ready: Barrier,
    go: Barrier,
    epoch: OnceLock<Instant>,
}

/// A run whose workers have started.
#[derive(Debug)]
pub(crate) struct Running<E: Exchange> {
    handles: Vec<JoinHandle<Finished<E>>>,
    ticks: Receiver<Tick<E::Counters>>,
    epoch: Instant,
}

/// Starts one thread per worker (named `name-k`, pinned to the cores the process may use in
/// turn unless `no_pin`) and the clock once every one is ready.
pub(crate) fn launch<E: Exchange>(
    name: &str,
    workers: Vec<Worker<E>>,
    no_pin: bool,
) -> anyhow::Result<Running<E>> {
    let cores = if no_pin {
        Vec::new()
    } else {
        lessor_net::available_cores()
    };
    let (tick_tx, ticks) = crossbeam_channel::unbounded();
    let start = Arc::new(StartLine {
        ready: Barrier::new(workers.len() + 1),
        go: Barrier::new(workers.len() + 1),
        epoch: OnceLock::new(),
    });
    let mut handles = Vec::with_capacity(workers.len());
    for (w, worker) in workers.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[w % cores.len()]);
        let tick_tx = tick_tx.clone();
        let start = start.clone();
        let h = std::thread::Builder::new()
            .name(format!("{name}-{w}"))
            .spawn(move || {
                if let Some(core) = core
                    && let Err(e) = lessor_net::pin_current_thread(core)
                {
                    eprintln!("lessor-perf: worker {w} not pinned: {e}");
                }
                drive(worker, &tick_tx, &start)
            })
            .context("spawning a worker")?;
        handles.push(h);
    }
    start.ready.wait();
    let epoch = Instant::now();
    let _ = start.epoch.set(epoch);
    start.go.wait();
    Ok(Running {
        handles,
        ticks,
        epoch,
    })
}

/// One second over all workers, beside the counters' difference.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SecondFigures {
    /// Exchanges in flight at the end of the second.
    pub(crate) active: u64,
    /// Latency of the exchanges completed in the second, microseconds.
    pub(crate) p50_us: f64,
    pub(crate) p99_us: f64,
    /// Open loop: the generator's largest schedule lag in the second, microseconds.
    pub(crate) lag_max_us: f64,
}

/// The reports of one second received so far.
#[derive(Debug)]
struct Pending<C> {
    got: Vec<Option<C>>,
    active: u64,
    latency: Histogram<u64>,
    lag: u64,
}

/// What the workers did over the whole run.
#[derive(Debug)]
pub(crate) struct Totals<C, H> {
    pub(crate) counters: C,
    pub(crate) hists: H,
    /// Open loop: how late each exchange started against its due time.
    pub(crate) lag: Histogram<u64>,
    /// From the start to the last worker's end.
    pub(crate) seconds: f64,
}

impl<E: Exchange> Running<E> {
    /// Collects the workers' reports until all have finished: one second once every worker
    /// has reported it (or has finished), made by `make` from the counters' difference and
    /// printed on stderr as `line` unless `quiet`.
    pub(crate) fn seconds<S>(
        &self,
        quiet: bool,
        mut make: impl FnMut(u64, &E::Counters, &SecondFigures) -> S,
        line: impl Fn(&S) -> String,
    ) -> Vec<S> {
        let workers = self.handles.len();
        let mut pending: std::collections::BTreeMap<u64, Pending<E::Counters>> =
            std::collections::BTreeMap::new();
        let mut finals: Vec<Option<(u64, E::Counters)>> = vec![None; workers];
        let mut prev = E::Counters::default();
        let mut out = Vec::new();
        for t in self.ticks.iter() {
            let e = pending.entry(t.second).or_insert_with(|| Pending {
                got: vec![None; workers],
                active: 0,
                latency: histogram(),
                lag: 0,
            });
            e.got[t.worker] = Some(t.counters);
            e.active += t.active;
            e.lag = e.lag.max(t.lag);
            let _ = e.latency.add(&t.latency);
            if t.last {
                finals[t.worker] = Some((t.second, t.counters));
            }
            while let Some(entry) = pending.first_entry() {
                let sec = *entry.key();
                let p = entry.get();
                let mut sum = E::Counters::default();
                let mut complete = true;
                for (got, fin) in p.got.iter().zip(&finals) {
                    match (got, fin) {
                        (Some(c), _) => sum.add(c),
                        (None, Some((f, c))) if *f <= sec => sum.add(c),
                        _ => complete = false,
                    }
                }
                if !complete {
                    break;
                }
                let p = entry.remove();
                let d = sum.minus(&prev);
                prev = sum;
                let s = make(
                    sec,
                    &d,
                    &SecondFigures {
                        active: p.active,
                        p50_us: us(p.latency.value_at_quantile(0.5)),
                        p99_us: us(p.latency.value_at_quantile(0.99)),
                        lag_max_us: us(p.lag),
                    },
                );
                if !quiet {
                    eprintln!("{}", line(&s));
                }
                out.push(s);
            }
        }
        out
    }

    /// Waits for the workers and adds up what they did.
    pub(crate) fn join(self) -> anyhow::Result<Totals<E::Counters, HistsOf<E>>> {
        let mut counters = E::Counters::default();
        let mut hists = HistsOf::<E>::default();
        let mut lag = histogram();
        for h in self.handles {
            let (c, hs, l) = h
                .join()
                .map_err(|_| anyhow::anyhow!("a worker panicked"))??;
            counters.add(&c);
            hists.merge(&hs);
            let _ = lag.add(&l);
        }
        Ok(Totals {
            counters,
            hists,
            lag,
            seconds: self.epoch.elapsed().as_secs_f64(),
        })
    }
}

impl<C, H> Totals<C, H> {
    /// Open loop (`rate` > 0): how late each exchange started against its due time.
    pub(crate) fn schedule_lag(&self, rate: u64) -> Option<Percentiles> {
        (rate > 0).then(|| Percentiles::of(&self.lag))
    }

    /// Datagrams sent and received per second by the generator, over the whole run.
    pub(crate) fn packets_per_s(&self, sent: u64, received: u64) -> f64 {
        (sent + received) as f64 / self.seconds
    }
}

/// Whether a third request of `E`'s exchanges may await its reply (see
/// [`Plan::deadline_capacity`]): a renewal, or a release that is answered.
fn three_phases<E: Exchange>(plan: &Plan) -> bool {
    plan.renew_pct > 0 || (release_answered::<E>() && plan.release_pct > 0)
}

/// A family's counters.
type CountersOf<L> = <<L as Load>::Ex as Exchange>::Counters;

/// A family's report.
pub(crate) type ReportOf<L> = Report<
    <<L as Load>::Parts as Parts>::Head,
    <<L as Load>::Parts as Parts>::Body,
    Correctness<<<L as Load>::Parts as Parts>::Checked, <<L as Load>::Parts as Parts>::Violation>,
    CountersOf<L>,
    <HistsOf<<L as Load>::Ex> as Merge>::Latencies,
>;

/// The family's own parts of a [`Report`], as a tuple `(Head, Body, Checked, Violation)`: what
/// the report gives after the mode (the exchange's settings) and after the achieved rate (its
/// counts), what the correctness check counts, and a violation of it.
pub(crate) trait Parts {
    type Head: Serialize;
    type Body: Serialize;
    type Checked: Serialize;
    type Violation: Serialize + std::fmt::Debug;
}

impl<H, B, K, V> Parts for (H, B, K, V)
where
    H: Serialize,
    B: Serialize,
    K: Serialize,
    V: Serialize + std::fmt::Debug,
{
    type Head = H;
    type Body = B;
    type Checked = K;
    type Violation = V;
}

/// How a generator names itself and its figures.
#[derive(Debug)]
pub(crate) struct Names {
    /// The subcommand, naming the worker threads.
    pub(crate) command: &'static str,
    /// What a violation of the correctness check is, in the error that ends a run.
    pub(crate) violation: &'static str,
    /// The key of the achieved rate (exchanges completed within the sending window, per
    /// second of it).
    pub(crate) achieved: &'static str,
    /// What an exchange is called in the summary and the CPU figures' keys.
    pub(crate) unit: &'static str,
    /// The per-second figures' keys and labels.
    pub(crate) second: SecondNames,
}

/// A family's generator: its exchange and how it reports a run, which [`run`] drives.
pub(crate) trait Load {
    type Ex: Exchange;
    type Parts: Parts;
    /// The family's part of the exchange of the worker sending from `port`.
    fn exchange(&self, port: u16) -> Self::Ex;
    /// One second's counts in [`Second`]'s order, from the counters' difference.
    fn second(d: &CountersOf<Self>) -> [u64; 6];
    /// Exchanges completed, the CPU figures' denominator.
    fn completed(c: &CountersOf<Self>) -> u64;
    fn head(&self) -> <Self::Parts as Parts>::Head;
    fn body(&self, c: &CountersOf<Self>) -> <Self::Parts as Parts>::Body;
    fn correctness(
        &self,
        c: &CountersOf<Self>,
    ) -> Correctness<<Self::Parts as Parts>::Checked, <Self::Parts as Parts>::Violation>;
    /// The report in a few lines for people.
    fn summary(r: &ReportOf<Self>) -> String;
}

/// Runs the load: one worker per socket opened on `local`:`local_port` and up, sending to
/// `to`; prints the JSON report, named by `names`, on stdout (progress and the summary on
/// stderr). Fails, after reporting, if the correctness check found a violation.
pub(crate) fn run<L: Load>(
    load: &L,
    names: &'static Names,
    args: &RunArgs,
    plan: Plan,
    local: <SockOf<L::Ex> as BatchSocket>::Ip,
    local_port: u16,
    to: <SockOf<L::Ex> as BatchSocket>::To,
) -> anyhow::Result<()>
where
    <SockOf<L::Ex> as BatchSocket>::To: Copy,
{
    // Sockets first, so a port in use fails before any thread starts.
    let socks = open_workers::<SockOf<L::Ex>>(local, local_port, args.workers)?;
    let cpu = CpuMeter::start(args.server_pid)?;
    let mut workers = Vec::with_capacity(args.workers);
    for (w, (port, sock)) in socks.into_iter().enumerate() {
        workers.push(Worker {
            slots: Slots::new(w as u32, plan, three_phases::<L::Ex>(&plan)),
            ex: Ex {
                link: Link::new(sock, to, args.batch)?,
                c: Default::default(),
                h: Default::default(),
                d: DriverCounts::default(),
                f: load.exchange(port),
            },
        });
    }
    let running = launch(names.command, workers, args.no_pin)?;
    let per_second = running.seconds(
        args.quiet,
        |second, d, f| Second {
            second,
            counts: L::second(d),
            f: *f,
            names: &names.second,
        },
        Second::line,
    );
    let done = running.join()?;
    let total = done.counters;
    let (own, server) = cpu.per_exchange(L::completed(&total))?;
    let report = Report {
        server: <SockOf<L::Ex> as BatchSocket>::dst(&to),
        mode: plan.mode(),
        head: load.head(),
        run: RunReport::of(&plan, args.duration, args.timeout_ms),
        offered_per_s: L::second(&total)[0] as f64 / args.duration,
        achieved: Achieved {
            per_s: total.in_window() as f64 / args.duration,
            key: names.achieved,
        },
        body: load.body(&total),
        latency_us: done.hists.latencies(),
        schedule_lag_us: done.schedule_lag(args.rate),
        packets_per_s: done.packets_per_s(total.sent(), total.received()),
        cpu: CpuReport {
            load: own,
            server,
            unit: names.unit,
        },
        correctness: load.correctness(&total),
        counters: total,
        per_second,
    };
    emit(&report, &L::summary(&report), args.json.as_deref())?;
    let c = &report.correctness;
    ensure!(
        c.violations == 0,
        "{} {} (first: {:?})",
        c.violations,
        names.violation,
        c.examples.first()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::fd::AsFd;

    #[test]
    fn a_wait_under_a_millisecond_blocks() {
        // A deadline 0.2 ms away: poll waits a whole millisecond rather than returning at once.
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").expect("bind");
        let t = Instant::now();
        idle_until(sock.as_fd(), 1_000, 201_000, false);
        assert!(
            t.elapsed() >= Duration::from_micros(900),
            "{:?}",
            t.elapsed()
        );
    }

    #[test]
    fn inflight_is_shared_out() {
        let plan = Plan::new(3, 100, 0, 10, 1.0, 1000).expect("valid");
        let shares: Vec<usize> = (0..3).map(|w| plan.max_active(w)).collect();
        assert_eq!(shares, [4, 3, 3]);
        assert_eq!((0..3).map(|w| plan.local_clients(w)).sum::<u32>(), 100);
        assert!(plan.with_mix((60, 50)).is_err());
        assert!(Plan::new(3, 100, 0, 2, 1.0, 1000).is_err());
    }

    #[test]
    fn stop_after_is_shared_out() {
        let plan = Plan::new(3, 100, 0, 10, 1.0, 1000).expect("valid");
        assert_eq!(plan.quota(1), u64::MAX);
        let plan = Plan {
            stop_after: Some(10),
            ..plan
        };
        let shares: Vec<u64> = (0..3).map(|w| plan.quota(w)).collect();
        assert_eq!(shares, [4, 3, 3]);
    }

    #[test]
    fn idle_clients_in_turn() {
        let plan = Plan::new(1, 3, 0, 1, 1.0, 1000).expect("valid");
        let mut s: Slots<()> = Slots::new(0, plan, false);
        s.get(2);
        s.get(1).phase = Phase::Opening;
        s.next_local = 1;
        let mut skips = 0;
        assert_eq!(s.start(0, &mut skips), Some(2));
        assert_eq!(s.start(0, &mut skips), Some(0));
        assert_eq!(s.start(0, &mut skips), Some(2));
        assert_eq!(skips, 2);
        let plan = Plan::new(1, 2, 0, 1, 1.0, 1000).expect("valid");
        let mut s: Slots<()> = Slots::new(0, plan, false);
        s.get(0).phase = Phase::Opening;
        s.get(1).phase = Phase::Opening;
        assert_eq!(s.start(0, &mut skips), None);
    }

    #[test]
    fn only_the_clients_kept_are_started() {
        let odd = |n: u32, parity: u8| n % 2 == u32::from(parity);
        let plan = Plan {
            keep: Some(Keep {
                test: odd,
                arg: 1,
                first: 10,
            }),
            ..Plan::new(1, 6, 0, 1, 1.0, 1000).expect("valid")
        };
        let mut s: Slots<()> = Slots::new(0, plan, false);
        let mut skips = 0;
        // Numbers 0..6 are clients 10..16 of the run: 11, 13 and 15 are odd.
        let mut started = Vec::new();
        for _ in 0..4 {
            let l = s.start(0, &mut skips);
            if let Some(l) = l {
                s.get(l).phase = Phase::Opening;
            }
            started.push(l);
        }
        assert_eq!(started, [Some(1), Some(3), Some(5), None]);
        assert_eq!(
            skips, 3,
            "the busy ones passed over; the others are not counted"
        );
    }

    crate::load::hists! { 1; only "x" for Opening, }
    counters! { TestCounters {
        received, send_errors, busy_skips, garbage, foreign, late, unexpected, requests,
        opens, renews, releases, done_in_window, first_drops, release_drops,
        /// A count of the family's own.
        own,
    } driver {
        opened: opens,
        renewals: renews,
        releases: releases,
        in_window: done_in_window,
        drops: { Opening: first_drops, Releasing: release_drops, },
    } }

    #[test]
    fn driver_counts_land_in_the_fields_the_family_names() {
        let mut drops = [0; 5];
        drops[Phase::Opening as usize] = 6;
        drops[Phase::Requesting as usize] = 60;
        drops[Phase::Releasing as usize] = 7;
        let d = DriverCounts {
            received: 1,
            send_errors: 2,
            busy_skips: 3,
            garbage: 4,
            foreign: 5,
            opened: 8,
            renewals: 9,
            releases: 10,
            late: 12,
            unexpected: 13,
            requests: 14,
            in_window: 15,
            drops,
        };
        let c = TestCounters {
            own: 11,
            ..Default::default()
        }
        .with_driver(d);
        let got = [
            c.received,
            c.send_errors,
            c.busy_skips,
            c.garbage,
            c.foreign,
            c.first_drops,
            c.release_drops,
            c.opens,
            c.renews,
            c.releases,
            c.own,
            c.late,
            c.unexpected,
            c.requests,
            c.in_window(),
        ];
        assert_eq!(got, [1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15]);
        // Opening requests, requests taking an offer, renewals and releases.
        assert_eq!(c.sent(), 8 + 14 + 9 + 10);
        // The phases it counts drops in are those it awaits answers in.
        let awaited =
            [Phase::Opening, Phase::Requesting, Phase::Releasing].map(TestCounters::awaits);
        assert_eq!(awaited, [true, false, true]);
        // The histograms that go with them: an empty one prints no latency line; the phase
        // named times its answers.
        let mut text = String::new();
        Hists::default().latencies().write(&mut text);
        assert_eq!(text, "  latency (us):\n");
        let mut h = Hists::default();
        assert!(h.phase(Phase::Requesting).is_none());
        h.phase(Phase::Opening).expect("timed").saturating_record(5);
        assert_eq!(h.only.len(), 1);
    }

    #[test]
    fn a_deadline_ends_only_the_current_phase() {
        let plan = Plan::new(1, 2, 0, 1, 1.0, 1).expect("valid");
        let mut s: Slots<()> = Slots::new(0, plan, false);
        let l = s.start(0, &mut 0).expect("idle");
        s.enter(l, Phase::Opening, 0);
        s.enter(l, Phase::Opening, 10);
        assert_eq!(s.next_expired(1_000_000, false), None);
        assert_eq!(s.next_expired(1_000_010, false), Some((l, Phase::Opening)));
        s.finish(l);
        assert_eq!(s.active, 0);
    }
}
