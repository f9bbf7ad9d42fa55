//! Counters the binary exports (e.g. as Prometheus `trellis_xds_*`).
use std::sync::atomic::{AtomicI64, AtomicU64, Ordering};

#[derive(Default, Debug)]
pub struct Metrics {
    pub connected_proxies: AtomicI64,
    pub connections_total: AtomicU64,
    /// Streams refused: no client certificate, bad node, identity mismatch.
    pub refused_total: AtomicU64,
    /// Snapshots delivered to a proxy stream because its output changed.
    pub pushes_total: AtomicU64,
    /// Proxies in a push scope whose output hash did not change.
    pub pushes_skipped_total: AtomicU64,
    /// Debounced push rounds and their total duration.
    pub push_rounds_total: AtomicU64,
    pub push_duration_micros_total: AtomicU64,
    pub last_push_duration_micros: AtomicU64,
    pub snapshot_errors_total: AtomicU64,
    pub responses_total: AtomicU64,
    pub acks_total: AtomicU64,
    pub nacks_total: AtomicU64,
}

/// A copy of the counters at one instant.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MetricsSnapshot {
    pub connected_proxies: i64,
    pub connections_total: u64,
    pub refused_total: u64,
    pub pushes_total: u64,
    pub pushes_skipped_total: u64,
    pub push_rounds_total: u64,
    pub push_duration_micros_total: u64,
    pub last_push_duration_micros: u64,
    pub snapshot_errors_total: u64,
    pub responses_total: u64,
    pub acks_total: u64,
    pub nacks_total: u64,
}

impl Metrics {
    pub fn snapshot(&self) -> MetricsSnapshot {
        let l = |a: &AtomicU64| a.load(Ordering::Relaxed);
        MetricsSnapshot {
            connected_proxies: self.connected_proxies.load(Ordering::Relaxed),
            connections_total: l(&self.connections_total),
            refused_total: l(&self.refused_total),
            pushes_total: l(&self.pushes_total),
            pushes_skipped_total: l(&self.pushes_skipped_total),
            push_rounds_total: l(&self.push_rounds_total),
            push_duration_micros_total: l(&self.push_duration_micros_total),
            last_push_duration_micros: l(&self.last_push_duration_micros),
            snapshot_errors_total: l(&self.snapshot_errors_total),
            responses_total: l(&self.responses_total),
            acks_total: l(&self.acks_total),
            nacks_total: l(&self.nacks_total),
        }
    }

    pub(crate) fn inc(counter: &AtomicU64) {
        counter.fetch_add(1, Ordering::Relaxed);
    }
}
