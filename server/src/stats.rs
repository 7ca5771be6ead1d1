//! Counters of what the workers received, answered and dropped, read by other threads.
//!
//! Every counter is a relaxed atomic that only its worker writes; readers (the summary, the
//! control server's scrape) sum them without taking anything a worker waits for.

use std::collections::BTreeMap;
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};

use lessor_journal::{Histogram, HistogramSnapshot};

use crate::v4::{NoReply, ReplyKind};

/// Counters for one worker. Only that worker writes them (relaxed atomics, so readers on
/// other threads see plain numbers without locks).
#[derive(Debug, Default)]
pub struct WorkerStats {
    /// Datagrams received.
    pub received: AtomicU64,
    /// Unicast datagrams received for a client whose shard another worker owns, which the
    /// worker handles under that shard's lock: those the kernel's steering program could not
    /// place (a DHCPv6 DUID it did not reach). DHCPv4 steering reads a fixed offset, so there
    /// this stays 0 unless the program is missing.
    pub other_shard: AtomicU64,
    /// OFFERs sent.
    pub offers: AtomicU64,
    /// ACKs sent.
    pub acks: AtomicU64,
    /// NAKs sent.
    pub naks: AtomicU64,
    /// BOOTP replies sent.
    pub bootp: AtomicU64,
    /// DHCPv6 ADVERTISEs sent.
    pub advertises: AtomicU64,
    /// DHCPv6 REPLYs sent.
    pub replies6: AtomicU64,
    /// Replies the kernel refused to send.
    pub send_errors: AtomicU64,
    /// Leases (and decline quarantines) that ended by expiry, each counted once, whether the
    /// periodic sweep or a request found it.
    pub expired: AtomicU64,
    /// Addresses bound (`[0]`) or extended (`[1]`), as [`ALLOCATION_TYPES`] labels them: a
    /// DHCPv4 ACK (or BOOTP reply) that binds, each IA_NA address of a DHCPv6 REPLY.
    pub allocated: [AtomicU64; 2],
    /// DHCPv6 prefixes bound or extended, each IA_PD prefix of a REPLY.
    pub allocated_prefixes: [AtomicU64; 2],
    /// Replies dropped because too many were waiting for the journal (overload).
    pub overload_drops: AtomicU64,
    /// Requests that got no reply, by reason.
    no_reply: Reasons,
    /// Requests no address or prefix could be given to, by reason.
    alloc_failures: Reasons,
    /// How long requests took, from their batch's receive to their reply queued.
    pub durations: Durations,
}

/// The `type` label of [`WorkerStats::allocated`]'s slots.
pub const ALLOCATION_TYPES: [&str; 2] = ["new", "renew"];

/// Upper bounds of [`WorkerStats::durations`], in nanoseconds: 10 µs to 1 s.
static DURATION_NANOS: [u64; 14] = [
    10_000,
    25_000,
    50_000,
    100_000,
    250_000,
    500_000,
    1_000_000,
    2_500_000,
    5_000_000,
    10_000_000,
    25_000_000,
    100_000_000,
    250_000_000,
    1_000_000_000,
];

/// A worker's request duration histogram, in nanoseconds.
#[derive(Debug)]
pub struct Durations(Histogram);

impl Default for Durations {
    fn default() -> Self {
        Durations(Histogram::new(&DURATION_NANOS))
    }
}

impl Durations {
    /// Counts `n` requests that each took `nanos`.
    pub fn record(&self, nanos: u64, n: u64) {
        self.0.record_n(nanos, n);
    }
}

/// The request duration histogram over all `workers` (buckets summed).
pub(crate) fn durations(workers: &[WorkerStats]) -> HistogramSnapshot {
    let mut all = HistogramSnapshot {
        buckets: DURATION_NANOS.iter().map(|&b| (b, 0)).collect(),
        count: 0,
        sum: 0,
    };
    for w in workers {
        let s = w.durations.0.snapshot();
        for (total, (_, n)) in all.buckets.iter_mut().zip(s.buckets) {
            total.1 += n;
        }
        all.count += s.count;
        all.sum += s.sum;
    }
    all
}

/// How many distinct no-reply reasons one worker can count; the handlers have about 40.
const REASONS: usize = 64;

/// Counters by reason label, each slot claimed by the first label counted in it. Only the
/// owning worker claims slots and counts, so a claim never races another; readers see a slot
/// once its label is set.
#[derive(Debug)]
struct Reasons {
    slots: [(OnceLock<&'static str>, AtomicU64); REASONS],
}

impl Default for Reasons {
    fn default() -> Self {
        Reasons {
            slots: std::array::from_fn(|_| (OnceLock::new(), AtomicU64::new(0))),
        }
    }
}

impl Reasons {
    fn count(&self, label: &'static str) {
        for (name, n) in &self.slots {
            match name.get() {
                Some(&l) if std::ptr::eq(l, label) || l == label => {}
                Some(_) => continue,
                None => {
                    let _ = name.set(label);
                }
            }
            n.fetch_add(1, Ordering::Relaxed);
            return;
        }
        // Every slot taken: more labels than the handlers have. Count it under the last.
        self.slots[REASONS - 1].1.fetch_add(1, Ordering::Relaxed);
    }

    fn get(&self, label: &str) -> u64 {
        self.iter().find(|(l, _)| *l == label).map_or(0, |(_, n)| n)
    }

    fn iter(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        self.slots
            .iter()
            .map_while(|(name, n)| Some((*name.get()?, n.load(Ordering::Relaxed))))
    }
}

impl WorkerStats {
    /// Counts a reply sent.
    pub fn replied(&self, kind: ReplyKind) {
        let c = match kind {
            ReplyKind::Offer => &self.offers,
            ReplyKind::Ack => &self.acks,
            ReplyKind::Nak => &self.naks,
            ReplyKind::Bootp => &self.bootp,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a DHCPv6 reply sent.
    pub fn replied6(&self, kind: crate::v6::ReplyKind) {
        let c = match kind {
            crate::v6::ReplyKind::Advertise => &self.advertises,
            crate::v6::ReplyKind::Reply => &self.replies6,
        };
        c.fetch_add(1, Ordering::Relaxed);
    }

    /// Counts a request that got no reply.
    pub fn no_reply(&self, why: NoReply) {
        self.no_reply_label(why.label());
    }

    /// Counts a request that got no reply, by the reason's label.
    pub fn no_reply_label(&self, label: &'static str) {
        self.no_reply.count(label);
    }

    /// Counts a request that no address or prefix could be given to, by reason.
    pub fn allocation_failed(&self, label: &'static str) {
        self.alloc_failures.count(label);
    }

    /// How many requests got no reply for `label`.
    pub fn no_reply_count(&self, label: &str) -> u64 {
        self.no_reply.get(label)
    }
}

/// Requests that got no reply, by reason, over all `workers`.
pub(crate) fn drops(workers: &[WorkerStats]) -> BTreeMap<&'static str, u64> {
    let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
    for w in workers {
        for (k, v) in w.no_reply.iter() {
            *dropped.entry(k).or_default() += v;
        }
    }
    dropped
}

/// Allocation failures by reason, over all `workers`.
pub(crate) fn allocation_failures(workers: &[WorkerStats]) -> BTreeMap<&'static str, u64> {
    let mut failed: BTreeMap<&'static str, u64> = BTreeMap::new();
    for w in workers {
        for (k, v) in w.alloc_failures.iter() {
            *failed.entry(k).or_default() += v;
        }
    }
    failed
}

/// Reads one counter of a worker.
pub(crate) type Counter = fn(&WorkerStats) -> &AtomicU64;

/// A counter and the name the summary line gives it.
type Named = (&'static str, Counter);

/// One counter summed over all `workers`.
pub(crate) fn total(workers: &[WorkerStats], f: Counter) -> u64 {
    workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
}

/// `name=total` for each counter over all `workers`, then each no-reply reason.
fn line(workers: &[WorkerStats], counters: &[Named]) -> String {
    let mut s = String::new();
    for (name, f) in counters {
        let total = total(workers, *f);
        if !s.is_empty() {
            s.push(' ');
        }
        s.push_str(&format!("{name}={total}"));
    }
    for (k, v) in drops(workers) {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

/// A summary over all workers, for logs and the shutdown report.
pub fn summary(workers: &[WorkerStats]) -> String {
    line(
        workers,
        &[
            ("received", |w| &w.received),
            ("other_shard", |w| &w.other_shard),
            ("offers", |w| &w.offers),
            ("acks", |w| &w.acks),
            ("naks", |w| &w.naks),
            ("bootp", |w| &w.bootp),
            ("expired", |w| &w.expired),
            ("send_errors", |w| &w.send_errors),
            ("overload_drops", |w| &w.overload_drops),
        ],
    )
}

/// The DHCPv6 workers' counters, appended to [`summary`]'s line (their drop reasons are
/// named `v6_...` already).
pub fn summary6(workers: &[WorkerStats]) -> String {
    line(
        workers,
        &[
            ("v6_received", |w| &w.received),
            ("v6_other_shard", |w| &w.other_shard),
            ("advertises", |w| &w.advertises),
            ("replies6", |w| &w.replies6),
            ("v6_expired", |w| &w.expired),
            ("v6_send_errors", |w| &w.send_errors),
            ("v6_overload_drops", |w| &w.overload_drops),
        ],
    )
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering;

    use super::{REASONS, WorkerStats, allocation_failures, durations, summary, summary6};

    #[test]
    fn reasons_are_counted_apart_and_overflow_into_the_last_slot() {
        let w = WorkerStats::default();
        w.no_reply_label("a");
        w.no_reply_label("b");
        w.no_reply_label("a");
        assert_eq!((w.no_reply_count("a"), w.no_reply_count("b")), (2, 1));
        assert_eq!(w.no_reply_count("c"), 0);
        let names: Vec<&'static str> = (0..REASONS)
            .map(|i| &*Box::leak(format!("r{i}").into_boxed_str()))
            .collect();
        for name in &names {
            w.no_reply_label(name);
        }
        // 2 slots were taken by a and b: the last 2 names share the last slot with its own.
        assert_eq!(w.no_reply_count(names[REASONS - 3]), 3);
        assert_eq!(w.no_reply_count(names[REASONS - 1]), 0);
    }

    #[test]
    fn durations_sum_over_workers_bucket_by_bucket() {
        let w = [WorkerStats::default(), WorkerStats::default()];
        w[0].durations.record(20_000, 3);
        w[1].durations.record(20_000, 1);
        w[1].durations.record(2_000_000_000, 2);
        let h = durations(&w);
        assert_eq!(h.count, 6);
        assert_eq!(h.sum, 4 * 20_000 + 2 * 2_000_000_000);
        // 20 µs is in the 25 µs bucket and every one above it; 2 s only in +Inf.
        assert_eq!(h.buckets[0], (10_000, 0));
        assert_eq!(h.buckets[1], (25_000, 4));
        assert_eq!(h.buckets.last(), Some(&(1_000_000_000, 4)));
        w[0].allocation_failed("pool_exhausted");
        w[1].allocation_failed("pool_exhausted");
        assert_eq!(allocation_failures(&w).get("pool_exhausted"), Some(&2));
    }

    /// The summary lines keep their field names and order: operators and tests parse them.
    #[test]
    fn summary_lines_name_every_counter_in_order() {
        let w = [WorkerStats::default(), WorkerStats::default()];
        w[0].received.store(3, Ordering::Relaxed);
        w[1].received.store(4, Ordering::Relaxed);
        w[1].expired.store(2, Ordering::Relaxed);
        w[0].no_reply_label("journal_backlog");
        assert_eq!(
            summary(&w),
            "received=7 other_shard=0 offers=0 acks=0 naks=0 bootp=0 expired=2 send_errors=0 \
             overload_drops=0 journal_backlog=1"
        );
        assert_eq!(
            summary6(&w),
            "v6_received=7 v6_other_shard=0 advertises=0 replies6=0 v6_expired=2 \
             v6_send_errors=0 v6_overload_drops=0 journal_backlog=1"
        );
    }
}
