//! What a load run reports: the JSON report's shared parts, the per-second figures, the CPU
//! meter and the summary's shared lines.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::Context;
use hdrhistogram::Histogram;
use serde::Serialize;

use super::{Plan, SecondFigures};

/// Violations a correctness check keeps for the report, at most [`MAX_EXAMPLES`].
#[derive(Debug)]
pub(crate) struct Examples<V>(std::sync::Mutex<Vec<V>>);

/// Violations reported as examples.
const MAX_EXAMPLES: usize = 20;

impl<V: Clone> Examples<V> {
    pub(crate) fn new() -> Self {
        Examples(std::sync::Mutex::new(Vec::new()))
    }

    /// Keeps the violation `make` gives, unless enough are kept.
    pub(crate) fn note(&self, make: impl FnOnce() -> V) {
        let mut ex = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if ex.len() < MAX_EXAMPLES {
            ex.push(make());
        }
    }

    /// The violations kept.
    pub(crate) fn all(&self) -> Vec<V> {
        self.0.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// The report of a check that counted `checked` and found `violations`.
    pub(crate) fn report<C>(&self, checked: C, violations: u64) -> Correctness<C, V> {
        Correctness {
            checked,
            violations,
            examples: self.all(),
        }
    }
}

/// How a generator names the figures of a [`Second`].
#[derive(Debug)]
pub(crate) struct SecondNames {
    /// JSON keys of [`Second`]'s six counts, then of the latency's p50 and p99, separated
    /// by spaces.
    pub(crate) keys: &'static str,
    /// The progress line's labels: completed, the two drops, refusals, the latency.
    pub(crate) labels: [&'static str; 5],
}

/// One second of the run over all workers, as reported and printed.
#[derive(Debug)]
pub(crate) struct Second {
    pub(super) second: u64,
    /// Exchanges started, second requests sent, exchanges completed, drops of the first and
    /// of the second request, refusals.
    pub(super) counts: [u64; 6],
    pub(super) f: SecondFigures,
    pub(super) names: &'static SecondNames,
}

impl Second {
    /// The progress line.
    pub(super) fn line(&self) -> String {
        let [started, requests, done, drops1, drops2, refused] = self.counts;
        let [l_done, l_drops1, l_drops2, l_refused, l_latency] = self.names.labels;
        format!(
            "[{:>4}s] offered {started:>7}/s  {l_done} {done:>7}/s  drops {l_drops1} {drops1} \
             ({:.2}%) {l_drops2} {drops2} ({:.2}%)  {l_refused} {refused}  {l_latency}p50 \
             {:.0}us p99 {:.0}us  in flight {}{}",
            self.second,
            pct(drops1, started),
            pct(drops2, requests),
            self.f.p50_us,
            self.f.p99_us,
            self.f.active,
            lag_suffix(self.f.lag_max_us)
        )
    }
}

impl Serialize for Second {
    fn serialize<Ser: serde::Serializer>(&self, ser: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeStruct;
        let mut keys = self.names.keys.split_whitespace();
        let mut key = || keys.next().unwrap_or("?");
        let mut st = ser.serialize_struct("Second", 11)?;
        st.serialize_field("second", &self.second)?;
        for n in &self.counts {
            st.serialize_field(key(), n)?;
        }
        st.serialize_field("active", &self.f.active)?;
        st.serialize_field(key(), &self.f.p50_us)?;
        st.serialize_field(key(), &self.f.p99_us)?;
        // Open loop: the generator's largest schedule lag in this second.
        st.serialize_field("lag_max_us", &self.f.lag_max_us)?;
        st.end()
    }
}

/// Clock ticks per second of the times in /proc/PID/stat (`USER_HZ`, fixed at 100 by the
/// kernel's ABI).
const USER_HZ: f64 = 100.0;

/// utime + stime of process `pid`, in clock ticks.
fn cpu_ticks(pid: u32) -> anyhow::Result<u64> {
    let path = format!("/proc/{pid}/stat");
    let stat = std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    // The command name (field 2) is in parentheses and may hold spaces: count from the last ')'.
    let rest = stat
        .rsplit_once(')')
        .map(|(_, r)| r)
        .with_context(|| format!("{path}: no command field"))?;
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // Fields 14 and 15 of the line, 12 and 13 after the command.
    let field = |i: usize| -> anyhow::Result<u64> {
        fields
            .get(i)
            .and_then(|f| f.parse().ok())
            .with_context(|| format!("{path}: field {} unreadable", i + 3))
    };
    Ok(field(11)? + field(12)?)
}

/// CPU time of the generator and, with its pid, the server, from the start of a run.
#[derive(Debug)]
pub(crate) struct CpuMeter {
    server: Option<(u32, u64)>,
    own_before: u64,
}

impl CpuMeter {
    pub(crate) fn start(server_pid: Option<u32>) -> anyhow::Result<Self> {
        let server = server_pid
            .map(|pid| cpu_ticks(pid).map(|t| (pid, t)))
            .transpose()?;
        Ok(CpuMeter {
            server,
            own_before: cpu_ticks(std::process::id())?,
        })
    }

    /// Microseconds of CPU per completed exchange so far: the generator's own (all threads),
    /// and the server's when its pid was given.
    pub(crate) fn per_exchange(&self, completed: u64) -> anyhow::Result<(f64, Option<f64>)> {
        let n = completed.max(1) as f64;
        let own = cpu_ticks(std::process::id())?.saturating_sub(self.own_before) as f64 / USER_HZ;
        let server = match self.server {
            Some((pid, before)) => {
                let used = cpu_ticks(pid)?.saturating_sub(before);
                Some(used as f64 * 1e6 / USER_HZ / n)
            }
            None => None,
        };
        Ok((own * 1e6 / n, server))
    }
}

/// Latency percentiles of one histogram, in microseconds.
#[derive(Debug, Serialize)]
pub(crate) struct Percentiles {
    pub(crate) count: u64,
    pub(crate) p50: f64,
    pub(crate) p90: f64,
    pub(crate) p99: f64,
    pub(crate) p99_9: f64,
    pub(crate) max: f64,
    pub(crate) mean: f64,
}

pub(super) fn us(ns: u64) -> f64 {
    ns as f64 / 1000.0
}

impl Percentiles {
    pub(crate) fn of(h: &Histogram<u64>) -> Self {
        Percentiles {
            count: h.len(),
            p50: us(h.value_at_quantile(0.50)),
            p90: us(h.value_at_quantile(0.90)),
            p99: us(h.value_at_quantile(0.99)),
            p99_9: us(h.value_at_quantile(0.999)),
            max: us(h.max()),
            mean: h.mean() / 1000.0,
        }
    }
}

#[derive(Debug, Serialize)]
pub(crate) struct Drops {
    pub(crate) count: u64,
    pub(crate) percent: f64,
}

pub(crate) fn drops(count: u64, of: u64) -> Drops {
    Drops {
        count,
        percent: pct(count, of),
    }
}

/// `n` in percent of `of` (0 when `of` is).
pub(crate) fn pct(n: u64, of: u64) -> f64 {
    if of == 0 {
        0.0
    } else {
        100.0 * n as f64 / of as f64
    }
}

/// The settings of a run, as both reports give them (flattened into each).
#[derive(Debug, Serialize)]
pub(crate) struct RunReport {
    pub(crate) renew_pct: u8,
    pub(crate) release_pct: u8,
    pub(crate) rate_requested: u64,
    pub(crate) inflight: Option<usize>,
    pub(crate) workers: usize,
    pub(crate) clients: u32,
    pub(crate) duration_s: f64,
    pub(crate) timeout_ms: u64,
}

impl RunReport {
    pub(crate) fn of(plan: &Plan, duration_s: f64, timeout_ms: u64) -> Self {
        RunReport {
            renew_pct: plan.renew_pct,
            release_pct: plan.release_pct,
            rate_requested: plan.rate,
            inflight: (plan.rate == 0).then_some(plan.inflight),
            workers: plan.workers as usize,
            clients: plan.clients,
            duration_s,
            timeout_ms,
        }
    }

    /// "closed loop, N in flight" or "open loop, R/s requested".
    pub(crate) fn mode(&self) -> String {
        match self.inflight {
            Some(n) => format!("closed loop, {n} in flight"),
            None => format!("open loop, {}/s requested", self.rate_requested),
        }
    }
}

/// A run's report: what every generator reports, around the family's `head`, `body` and
/// `correctness`.
#[derive(Debug, Serialize)]
pub(crate) struct Report<H, B, K, C, L> {
    pub(crate) server: SocketAddr,
    pub(crate) mode: &'static str,
    #[serde(flatten)]
    pub(crate) head: H,
    #[serde(flatten)]
    pub(crate) run: RunReport,
    /// Exchanges started per second of the sending window.
    pub(crate) offered_per_s: f64,
    #[serde(flatten)]
    pub(crate) achieved: Achieved,
    #[serde(flatten)]
    pub(crate) body: B,
    /// Latencies in microseconds: each two-way exchange, and the whole exchange from its first
    /// request sent to the reply that completes it.
    pub(crate) latency_us: L,
    /// Open loop: how late the generator started each exchange against the clock (its own
    /// lag: large values mean it, not the server, fell behind), microseconds.
    pub(crate) schedule_lag_us: Option<Percentiles>,
    /// Datagrams sent and received per second by the generator, over the whole run.
    pub(crate) packets_per_s: f64,
    #[serde(flatten)]
    pub(crate) cpu: CpuReport,
    pub(crate) correctness: K,
    pub(crate) counters: C,
    pub(crate) per_second: Vec<Second>,
}

/// The correctness check's part of a report: the family's counts, the violations and the
/// first few of them.
#[derive(Debug, Serialize)]
pub(crate) struct Correctness<C, V> {
    #[serde(flatten)]
    pub(crate) checked: C,
    pub(crate) violations: u64,
    pub(crate) examples: Vec<V>,
}

/// Exchanges completed within the sending window, per second of it; `key` names it.
#[derive(Debug)]
pub(crate) struct Achieved {
    pub(crate) per_s: f64,
    pub(crate) key: &'static str,
}

impl Serialize for Achieved {
    fn serialize<Ser: serde::Serializer>(&self, ser: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeStruct;
        let mut st = ser.serialize_struct("Achieved", 1)?;
        st.serialize_field(self.key, &self.per_s)?;
        st.end()
    }
}

/// CPU time per completed exchange, microseconds: the generator's own (all threads), and with
/// --server-pid the server's utime + stime over the run (renewals and releases included in
/// the time), keyed `load_cpu_us_per_UNIT` and `server_cpu_us_per_UNIT` (`unit` in lower
/// case).
#[derive(Debug)]
pub(crate) struct CpuReport {
    pub(crate) load: f64,
    pub(crate) server: Option<f64>,
    /// What an exchange is called (`DORA`, `exchange`).
    pub(crate) unit: &'static str,
}

impl Serialize for CpuReport {
    fn serialize<Ser: serde::Serializer>(&self, ser: Ser) -> Result<Ser::Ok, Ser::Error> {
        use serde::ser::SerializeMap;
        let unit = self.unit.to_lowercase();
        let mut m = ser.serialize_map(Some(2))?;
        m.serialize_entry(&format!("load_cpu_us_per_{unit}"), &self.load)?;
        m.serialize_entry(&format!("server_cpu_us_per_{unit}"), &self.server)?;
        m.end()
    }
}

/// A progress line's ending: the largest schedule lag of the second, if any.
pub(crate) fn lag_suffix(lag_max_us: f64) -> String {
    if lag_max_us > 0.0 {
        format!("  send lag max {lag_max_us:.0}us")
    } else {
        String::new()
    }
}

/// Appends a summary's latency line for `p` (nothing if it holds no value), the name padded
/// to `width`.
pub(crate) fn latency_line(s: &mut String, name: &str, width: usize, p: &Percentiles) {
    use std::fmt::Write;
    if p.count > 0 {
        let _ = writeln!(
            s,
            "  {name:<width$} p50 {:>8.1}  p90 {:>8.1}  p99 {:>8.1}  p99.9 {:>8.1}  max {:>9.1}  (n={})",
            p.p50, p.p90, p.p99, p.p99_9, p.max, p.count
        );
    }
}

/// The schedule lag's p99.9 and max for a summary (0 in closed loop).
pub(crate) fn lag_tail(lag: Option<&Percentiles>) -> (f64, f64) {
    lag.map_or((0.0, 0.0), |p| (p.p99_9, p.max))
}

/// Appends a summary's CPU line: packets and CPU per exchange of the generator, and of the
/// server when known.
pub(crate) fn cpu_line(s: &mut String, packets_per_s: f64, cpu: &CpuReport) {
    use std::fmt::Write;
    let (load, unit) = (cpu.load, cpu.unit);
    let _ = write!(
        s,
        "  generator: {packets_per_s:.0} packets/s, {load:.2}us CPU per {unit}"
    );
    match cpu.server {
        Some(server) => {
            let _ = writeln!(s, "; server: {server:.2}us CPU per {unit}");
        }
        None => s.push('\n'),
    }
}

/// Prints the summary on stderr and the report as JSON on stdout, and writes the JSON to
/// `json` too.
pub(crate) fn emit(
    report: &impl Serialize,
    summary: &str,
    json: Option<&Path>,
) -> anyhow::Result<()> {
    eprint!("{summary}");
    let text = serde_json::to_string_pretty(report)?;
    if let Some(path) = json {
        std::fs::write(path, format!("{text}\n"))
            .with_context(|| format!("writing {}", path.display()))?;
    }
    println!("{text}");
    Ok(())
}
