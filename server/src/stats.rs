//! Counters of what the workers received, answered and dropped, shared lock-free.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

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
    /// Replies dropped because too many were waiting for the journal (overload).
    pub overload_drops: AtomicU64,
    /// Requests that got no reply, by reason (rarely written: a mutex is fine).
    no_reply: Mutex<BTreeMap<&'static str, u64>>,
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
        let mut m = self.no_reply.lock().unwrap_or_else(|e| e.into_inner());
        *m.entry(label).or_default() += 1;
    }

    /// How many requests got no reply for `label`.
    pub fn no_reply_count(&self, label: &str) -> u64 {
        let m = self.no_reply.lock().unwrap_or_else(|e| e.into_inner());
        m.get(label).copied().unwrap_or(0)
    }
}

/// Requests that got no reply, by reason, over all `workers`.
fn drops(workers: &[WorkerStats]) -> BTreeMap<&'static str, u64> {
    let mut dropped: BTreeMap<&'static str, u64> = BTreeMap::new();
    for w in workers {
        let m = w.no_reply.lock().unwrap_or_else(|e| e.into_inner());
        for (k, v) in m.iter() {
            *dropped.entry(k).or_default() += v;
        }
    }
    dropped
}

/// A summary over all workers, for logs and the shutdown report.
pub fn summary(workers: &[WorkerStats]) -> String {
    let sum = |f: fn(&WorkerStats) -> &AtomicU64| -> u64 {
        workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
    };
    let mut s = format!(
        "received={} other_shard={} offers={} acks={} naks={} bootp={} expired={} send_errors={} overload_drops={}",
        sum(|w| &w.received),
        sum(|w| &w.other_shard),
        sum(|w| &w.offers),
        sum(|w| &w.acks),
        sum(|w| &w.naks),
        sum(|w| &w.bootp),
        sum(|w| &w.expired),
        sum(|w| &w.send_errors),
        sum(|w| &w.overload_drops),
    );
    for (k, v) in drops(workers) {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}

/// The DHCPv6 workers' counters, appended to [`summary`]'s line (their drop reasons are
/// named `v6_...` already).
pub fn summary6(workers: &[WorkerStats]) -> String {
    let sum = |f: fn(&WorkerStats) -> &AtomicU64| -> u64 {
        workers.iter().map(|w| f(w).load(Ordering::Relaxed)).sum()
    };
    let mut s = format!(
        "v6_received={} v6_other_shard={} advertises={} replies6={} v6_expired={} v6_send_errors={} v6_overload_drops={}",
        sum(|w| &w.received),
        sum(|w| &w.other_shard),
        sum(|w| &w.advertises),
        sum(|w| &w.replies6),
        sum(|w| &w.expired),
        sum(|w| &w.send_errors),
        sum(|w| &w.overload_drops),
    );
    for (k, v) in drops(workers) {
        s.push_str(&format!(" {k}={v}"));
    }
    s
}
