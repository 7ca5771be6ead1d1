//! `GET /metrics`: the counters in Prometheus's text format (version 0.0.4).
//!
//! Each worker owns its counters; a scrape sums them, so the hot path never writes anything
//! another core reads under a lock. Written by hand rather than with prometheus-client: that
//! crate emits OpenMetrics only, whose `_total` naming Debian's `promtool check metrics`
//! (2.42) rejects, and this format is a few lines. Names: docs/CONTROL.md, "Metrics".

use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, Ordering};

use lessor_journal::{Health, HistogramSnapshot, Monitor};

use super::{Parts, usage};
use crate::stats::{Counter, WorkerStats, total};
use crate::worker::{ALLOC_NO_SUBNET, ALLOC_POOL_EXHAUSTED};

/// A metric's type, as the `# TYPE` line gives it.
#[derive(Clone, Copy, Debug)]
enum Kind {
    Counter,
    Gauge,
    Histogram,
}

/// A text exposition being written.
#[derive(Debug, Default)]
struct Exposition {
    out: String,
}

impl Exposition {
    /// Starts the family `name`, whose samples follow.
    fn family(&mut self, name: &str, kind: Kind, help: &str) {
        let kind = match kind {
            Kind::Counter => "counter",
            Kind::Gauge => "gauge",
            Kind::Histogram => "histogram",
        };
        let _ = writeln!(self.out, "# HELP {name} {help}");
        let _ = writeln!(self.out, "# TYPE {name} {kind}");
    }

    /// One sample of the family just started.
    fn sample(&mut self, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
        self.out.push_str(name);
        if !labels.is_empty() {
            self.out.push('{');
            for (i, (k, v)) in labels.iter().enumerate() {
                if i > 0 {
                    self.out.push(',');
                }
                let _ = write!(self.out, "{k}=\"");
                escape(&mut self.out, v);
                self.out.push('"');
            }
            self.out.push('}');
        }
        let _ = writeln!(self.out, " {value}");
    }
}

impl Exposition {
    /// A whole histogram family without labels; `scale` divides bounds and sum into the
    /// exported unit.
    fn histogram(&mut self, name: &str, help: &str, h: &HistogramSnapshot, scale: f64) {
        self.histograms(name, help, &[(&[], h)], scale);
    }

    /// A histogram family with one series per label set.
    fn histograms(
        &mut self,
        name: &str,
        help: &str,
        series: &[(&[(&str, &str)], &HistogramSnapshot)],
        scale: f64,
    ) {
        self.family(name, Kind::Histogram, help);
        let bucket = format!("{name}_bucket");
        for &(labels, h) in series {
            for &(bound, n) in &h.buckets {
                let le = (bound as f64 / scale).to_string();
                let with_le: Vec<(&str, &str)> = labels
                    .iter()
                    .copied()
                    .chain([("le", le.as_str())])
                    .collect();
                self.sample(&bucket, &with_le, n);
            }
            let with_le: Vec<(&str, &str)> =
                labels.iter().copied().chain([("le", "+Inf")]).collect();
            self.sample(&bucket, &with_le, h.count);
            self.sample(&format!("{name}_sum"), labels, h.sum as f64 / scale);
            self.sample(&format!("{name}_count"), labels, h.count);
        }
    }
}

/// A label value as the text format quotes it: backslash, double quote and newline escaped.
fn escape(out: &mut String, value: &str) {
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            c => out.push(c),
        }
    }
}

/// The whole exposition.
pub(crate) fn render(parts: &Parts) -> String {
    let mut e = Exposition::default();
    let mut families: Vec<(&str, &[WorkerStats])> = vec![("v4", &parts.stats)];
    if parts.engine6.is_some() {
        families.push(("v6", &parts.stats6));
    }

    e.family(
        "lessor_build_info",
        Kind::Gauge,
        "The running build: always 1, with its version as a label.",
    );
    e.sample(
        "lessor_build_info",
        &[("version", env!("CARGO_PKG_VERSION"))],
        1,
    );

    let per_family: [(&str, &str, Counter); 4] = [
        (
            "lessor_packets_received_total",
            "Datagrams received.",
            |w| &w.received,
        ),
        (
            "lessor_steering_misses_total",
            "Datagrams that reached a worker other than their client's owner.",
            |w| &w.other_shard,
        ),
        (
            "lessor_send_errors_total",
            "Replies the kernel refused to send.",
            |w| &w.send_errors,
        ),
        (
            "lessor_leases_expired_total",
            "Leases and decline quarantines that ended by expiry.",
            |w| &w.expired,
        ),
    ];
    for (name, help, f) in per_family {
        e.family(name, Kind::Counter, help);
        for &(family, workers) in &families {
            e.sample(name, &[("family", family)], total(workers, f));
        }
    }

    let sent: [(&str, &str, Counter); 6] = [
        ("v4", "offer", |w| &w.offers),
        ("v4", "ack", |w| &w.acks),
        ("v4", "nak", |w| &w.naks),
        ("v4", "bootp", |w| &w.bootp),
        ("v6", "advertise", |w| &w.advertises),
        ("v6", "reply", |w| &w.replies6),
    ];
    let name = "lessor_packets_sent_total";
    e.family(name, Kind::Counter, "Replies sent, by message type.");
    for (family, kind, f) in sent {
        if let Some(&(_, workers)) = families.iter().find(|(n, _)| *n == family) {
            e.sample(
                name,
                &[("family", family), ("type", kind)],
                total(workers, f),
            );
        }
    }

    let name = "lessor_packets_dropped_total";
    e.family(
        name,
        Kind::Counter,
        "Requests that got no reply, by reason.",
    );
    for &(family, workers) in &families {
        e.sample(
            name,
            &[("family", family), ("reason", "overload")],
            total(workers, |w| &w.overload_drops),
        );
        for (label, n) in crate::stats::drops(workers) {
            // DHCPv6's reasons carry a `v6_` prefix in the summary line; here the label says it.
            let reason = label.strip_prefix("v6_").unwrap_or(label);
            e.sample(name, &[("family", family), ("reason", reason)], n);
        }
    }

    let name = "lessor_allocation_failures_total";
    e.family(
        name,
        Kind::Counter,
        "Requests (v6: IAs) that got no address or prefix, by reason.",
    );
    for &(family, workers) in &families {
        let mut failed = crate::stats::allocation_failures(workers);
        for reason in [ALLOC_POOL_EXHAUSTED, ALLOC_NO_SUBNET] {
            failed.entry(reason).or_default();
        }
        for (reason, n) in failed {
            e.sample(name, &[("family", family), ("reason", reason)], n);
        }
    }

    let name = "lessor_allocations_total";
    e.family(
        name,
        Kind::Counter,
        "Addresses (v6: also prefixes) bound (new) or extended (renew) by a reply.",
    );
    type Slots = fn(&WorkerStats) -> &[AtomicU64; 2];
    for &(family, workers) in &families {
        let kinds: &[(&str, Slots)] = match family {
            "v4" => &[("address", |w| &w.allocated)],
            _ => &[
                ("address", |w| &w.allocated),
                ("prefix", |w| &w.allocated_prefixes),
            ],
        };
        for &(kind, slots) in kinds {
            for (i, ty) in crate::stats::ALLOCATION_TYPES.into_iter().enumerate() {
                let n: u64 = (workers.iter())
                    .map(|w| slots(w)[i].load(Ordering::Relaxed))
                    .sum();
                e.sample(name, &[("family", family), ("kind", kind), ("type", ty)], n);
            }
        }
    }

    let durations: Vec<(&str, HistogramSnapshot)> = families
        .iter()
        .map(|&(family, workers)| (family, crate::stats::durations(workers)))
        .collect();
    let labels: Vec<[(&str, &str); 1]> = durations.iter().map(|(f, _)| [("family", *f)]).collect();
    let series: Vec<(&[(&str, &str)], &HistogramSnapshot)> = labels
        .iter()
        .zip(&durations)
        .map(|(l, (_, h))| (&l[..], h))
        .collect();
    e.histograms(
        "lessor_request_duration_seconds",
        "Time from a request's batch being received to its reply being queued.",
        &series,
        1e9,
    );

    leases(&mut e, parts);
    reloads(&mut e, parts);
    journal(&mut e, &parts.journal);
    if let Some(ha) = &parts.ha {
        self::ha(&mut e, ha);
    }

    let name = "lessor_journal_healthy";
    e.family(
        name,
        Kind::Gauge,
        "1 while the journal's writes and syncs succeed, 0 while they fail.",
    );
    e.sample(name, &[], u8::from(parts.journal_health() == Health::Ok));
    e.out
}

/// The `lessor_ha_*` families, when `ha` is set.
fn ha(e: &mut Exposition, status: &crate::ha::Status) {
    let name = "lessor_ha_role";
    e.family(
        name,
        Kind::Gauge,
        "1 for this server's HA role, 0 for the others.",
    );
    let role = status.role();
    for r in crate::ha::Role::ALL {
        e.sample(name, &[("role", r.name())], u8::from(r == role));
    }
    let name = "lessor_ha_epoch";
    e.family(
        name,
        Kind::Gauge,
        "The leader key's etcd creation revision: the leading term's fencing token.",
    );
    e.sample(name, &[], status.epoch());
    let name = "lessor_ha_term";
    e.family(
        name,
        Kind::Gauge,
        "The cluster's term count from etcd: the high bits of the term's lease versions.",
    );
    e.sample(name, &[], status.term());
    if let Some(scopes) = status.scopes() {
        let name = "lessor_ha_scope_served";
        e.family(
            name,
            Kind::Gauge,
            "Load balancing: 1 for each scope whose clients this server answers now.",
        );
        for v in &scopes {
            e.sample(name, &[("scope", v.name.as_str())], u8::from(v.served));
        }
    }
    let name = "lessor_ha_transitions_total";
    e.family(name, Kind::Counter, "HA role changes since start.");
    e.sample(name, &[], status.transitions());
    let name = "lessor_ha_etcd_keepalive_failures_total";
    e.family(
        name,
        Kind::Counter,
        "etcd lease keepalives that failed or timed out.",
    );
    e.sample(name, &[], status.keepalive_failures());
    let stream = &status.stream;
    let name = "lessor_ha_stream_state";
    e.family(
        name,
        Kind::Gauge,
        "1 for the journal stream's state on this server, 0 for the others.",
    );
    let state = stream.state();
    for s in crate::ha::StreamState::ALL {
        e.sample(name, &[("state", s.name())], u8::from(s == state));
    }
    let name = "lessor_ha_stream_waiting_for_partner";
    e.family(
        name,
        Kind::Gauge,
        "1 while binding replies wait for the partner's ack (ha.sync and the partner in sync).",
    );
    e.sample(name, &[], u8::from(stream.waiting()));
    let name = "lessor_ha_stream_acked_sequence";
    e.family(
        name,
        Kind::Gauge,
        "The last journal stream sequence the partner acknowledged as synced.",
    );
    e.sample(name, &[], stream.acked());
    let name = "lessor_ha_stream_lag_records";
    e.family(
        name,
        Kind::Gauge,
        "Records synced by this leader and not yet acknowledged by the partner.",
    );
    e.sample(name, &[], stream.lag());
    let name = "lessor_ha_stream_received_sequence";
    e.family(
        name,
        Kind::Gauge,
        "The last sequence of the partner's stream this server's replica has synced.",
    );
    e.sample(name, &[], stream.received());
    let name = "lessor_ha_stream_alone_total";
    e.family(
        name,
        Kind::Counter,
        "Times this leader went on without its partner (unreachable or stuck).",
    );
    e.sample(name, &[], stream.alone());
}

/// `lessor_leases` and `lessor_pool_size`, by subnet (its CIDR and id) and kind.
fn leases(e: &mut Exposition, parts: &Parts) {
    let usage = usage::usage(parts);
    // A subnet a reload removed keeps its orphans; without an id its label is empty (absent).
    let ids: Vec<String> = usage
        .iter()
        .map(|u| u.id.map(|i| i.to_string()))
        .map(Option::unwrap_or_default)
        .collect();
    let subnets: Vec<_> = usage
        .iter()
        .zip(&ids)
        .map(|(u, id)| subnet_labels(u, id))
        .collect();
    let name = "lessor_leases";
    e.family(
        name,
        Kind::Gauge,
        "Lease records of dynamic pools, by subnet, kind and state.",
    );
    for (u, &[family, subnet, subnet_id, kind]) in usage.iter().zip(&subnets) {
        for (state, n) in u.states() {
            let labels = [family, subnet, subnet_id, kind, ("state", state)];
            e.sample(name, &labels, n);
        }
    }
    let name = "lessor_pool_size";
    e.family(
        name,
        Kind::Gauge,
        "Dynamic addresses (prefixes) in a subnet's pools, by kind.",
    );
    // A /64 of addresses is 2^64: exact in f64 as the text format reads it.
    for (u, labels) in usage.iter().zip(&subnets).filter(|(u, _)| u.id.is_some()) {
        e.sample(name, labels, u.total as f64);
    }
}

/// The labels naming `u`'s subnet (its id as text, `id`) and kind.
fn subnet_labels<'u>(u: &'u usage::Usage, id: &'u str) -> [(&'static str, &'u str); 4] {
    [
        ("family", u.family),
        ("subnet", u.cidr.as_str()),
        ("subnet_id", id),
        ("kind", u.kind.label()),
    ]
}

/// Configuration reloads by result, and when the last one succeeded.
fn reloads(e: &mut Exposition, parts: &Parts) {
    let (ok, failed, last) = parts.reload.counts();
    let name = "lessor_config_reloads_total";
    e.family(name, Kind::Counter, "Configuration reloads, by result.");
    e.sample(name, &[("result", "success")], ok);
    e.sample(name, &[("result", "failure")], failed);
    let name = "lessor_config_last_reload_success_timestamp_seconds";
    e.family(
        name,
        Kind::Gauge,
        "When the configuration was last loaded successfully (the start, until a reload).",
    );
    e.sample(name, &[], last);
}

/// The journal's counters, backlog and histograms.
fn journal(e: &mut Exposition, monitor: &Monitor) {
    let s = monitor.stats();
    let counters = [
        (
            "lessor_journal_records_total",
            "Records written.",
            s.appended,
        ),
        (
            "lessor_journal_bytes_total",
            "Record bytes written.",
            s.bytes,
        ),
        ("lessor_journal_batches_total", "Write batches.", s.batches),
        (
            "lessor_journal_syncs_total",
            "fdatasyncs of batches.",
            s.syncs,
        ),
        (
            "lessor_journal_sync_failures_total",
            "Writes or syncs that failed (and were retried).",
            s.write_failures,
        ),
        (
            "lessor_journal_compactions_total",
            "Compactions done.",
            s.compactions,
        ),
        (
            "lessor_journal_compaction_failures_total",
            "Compactions that failed (and were retried).",
            s.compaction_failures,
        ),
    ];
    for (name, help, value) in counters {
        e.family(name, Kind::Counter, help);
        e.sample(name, &[], value);
    }
    let name = "lessor_journal_segments";
    e.family(name, Kind::Gauge, "Segment files in the journal directory.");
    e.sample(name, &[], s.segments);
    let name = "lessor_journal_backlog_records";
    e.family(
        name,
        Kind::Gauge,
        "Records a lane (one per worker) handed over that are not durable yet.",
    );
    for (lane, n) in monitor.backlog().into_iter().enumerate() {
        e.sample(name, &[("lane", &lane.to_string())], n);
    }
    e.histogram(
        "lessor_journal_sync_duration_seconds",
        "How long each fdatasync of a batch took.",
        &monitor.sync_nanos(),
        1e9,
    );
    e.histogram(
        "lessor_journal_batch_records",
        "Records per write batch.",
        &monitor.batch_records(),
        1.0,
    );
}

#[cfg(test)]
mod tests {
    use lessor_journal::HistogramSnapshot;

    use super::{Exposition, Kind};

    #[test]
    fn histograms_are_cumulative_buckets_with_sum_and_count_in_base_units() {
        let mut e = Exposition::default();
        let h = HistogramSnapshot {
            buckets: vec![(500_000, 2), (1_000_000, 3)],
            count: 4,
            sum: 3_000_000,
        };
        e.histogram("x_seconds", "An x.", &h, 1e9);
        assert_eq!(
            e.out,
            "# HELP x_seconds An x.\n# TYPE x_seconds histogram\n\
             x_seconds_bucket{le=\"0.0005\"} 2\nx_seconds_bucket{le=\"0.001\"} 3\n\
             x_seconds_bucket{le=\"+Inf\"} 4\nx_seconds_sum 0.003\nx_seconds_count 4\n"
        );
    }

    #[test]
    fn samples_quote_and_escape_label_values() {
        let mut e = Exposition::default();
        e.family("x_total", Kind::Counter, "An x.");
        e.sample("x_total", &[("a", "q\"b\\n\nl")], 3);
        e.sample("x_total", &[], 4);
        assert_eq!(
            e.out,
            "# HELP x_total An x.\n# TYPE x_total counter\n\
             x_total{a=\"q\\\"b\\\\n\\nl\"} 3\nx_total 4\n"
        );
    }
}
