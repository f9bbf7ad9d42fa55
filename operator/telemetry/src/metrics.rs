//! The operator's metric families.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use std::sync::atomic::AtomicU64;
use std::time::Instant;

/// Labels of per-controller families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ControllerLabels {
    /// The controller's name (`identity`, `namespace`, `ca`, ...).
    pub controller: String,
}

/// Labels of identity families.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ReasonLabels {
    /// Why (`new`, `lifetime`, `root`, `identity`, `key-type`, `repair`) or what failed.
    pub reason: String,
}

fn histogram() -> Histogram {
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

/// Families of the controllers, all prefixed `trellis_`.
pub struct OperatorMetrics {
    /// `trellis_controller_reconciles_total{controller}`.
    pub reconciles: Family<ControllerLabels, Counter>,
    /// `trellis_controller_reconcile_errors_total{controller}`.
    pub reconcile_errors: Family<ControllerLabels, Counter>,
    /// `trellis_controller_reconcile_duration_seconds{controller}`.
    pub reconcile_duration: Family<ControllerLabels, Histogram, fn() -> Histogram>,
    /// `trellis_identity_issued_total{reason}`: a certificate issued where none was.
    pub identities_issued: Family<ReasonLabels, Counter>,
    /// `trellis_identity_renewed_total{reason}`: an existing certificate replaced.
    pub identities_renewed: Family<ReasonLabels, Counter>,
    /// `trellis_identity_failed_total{reason}`: issuing or writing failed.
    pub identities_failed: Family<ReasonLabels, Counter>,
    /// `trellis_identity_earliest_expiry_seconds`: seconds until the first workload certificate expires.
    pub earliest_workload_expiry: Gauge<f64, AtomicU64>,
    /// `trellis_ca_root_expiry_seconds`: seconds until the signing root expires.
    pub root_expiry: Gauge<f64, AtomicU64>,
    /// `trellis_api_writes_total{controller}`: create/patch/delete requests sent.
    pub api_writes: Family<ControllerLabels, Counter>,
    /// `trellis_leader`: 1 while this replica holds the Lease.
    pub leader: Gauge,
    /// `trellis_ca_rotation_remaining`: identity Secrets not yet chaining to the current root.
    pub rotation_remaining: Gauge,
}

impl OperatorMetrics {
    /// Creates the families and registers them in `registry`.
    pub fn register(registry: &mut Registry) -> Self {
        let m = Self {
            reconciles: Family::default(),
            reconcile_errors: Family::default(),
            reconcile_duration: Family::new_with_constructor(histogram),
            identities_issued: Family::default(),
            identities_renewed: Family::default(),
            identities_failed: Family::default(),
            earliest_workload_expiry: Gauge::default(),
            root_expiry: Gauge::default(),
            api_writes: Family::default(),
            leader: Gauge::default(),
            rotation_remaining: Gauge::default(),
        };
        registry.register(
            "controller_reconciles",
            "Reconciles run, per controller",
            m.reconciles.clone(),
        );
        registry.register(
            "controller_reconcile_errors",
            "Reconciles that failed, per controller",
            m.reconcile_errors.clone(),
        );
        registry.register(
            "controller_reconcile_duration_seconds",
            "Duration of reconciles, per controller",
            m.reconcile_duration.clone(),
        );
        registry.register(
            "identity_issued",
            "Workload certificates issued for identities that had none",
            m.identities_issued.clone(),
        );
        registry.register(
            "identity_renewed",
            "Workload certificates replaced, by reason",
            m.identities_renewed.clone(),
        );
        registry.register(
            "identity_failed",
            "Identities that could not be issued or written",
            m.identities_failed.clone(),
        );
        registry.register(
            "identity_earliest_expiry_seconds",
            "Seconds until the earliest workload certificate expires",
            m.earliest_workload_expiry.clone(),
        );
        registry.register(
            "ca_root_expiry_seconds",
            "Seconds until the root the CA signs under expires",
            m.root_expiry.clone(),
        );
        registry.register(
            "api_writes",
            "Write requests (create, patch, apply, delete) sent to the API server, per controller",
            m.api_writes.clone(),
        );
        registry.register(
            "ca_rotation_remaining",
            "Identity Secrets that do not chain to the current root yet",
            m.rotation_remaining.clone(),
        );
        registry.register(
            "leader",
            "1 while this replica holds the leader Lease",
            m.leader.clone(),
        );
        m
    }

    /// Labels for `controller`.
    pub fn controller(controller: &str) -> ControllerLabels {
        ControllerLabels {
            controller: controller.to_string(),
        }
    }

    /// Counts a reconcile and times it until the returned timer is dropped.
    pub fn reconcile_started(&self, controller: &str) -> ReconcileTimer<'_> {
        let labels = Self::controller(controller);
        self.reconciles.get_or_create(&labels).inc();
        ReconcileTimer {
            metrics: self,
            labels,
            start: Instant::now(),
        }
    }

    /// Counts a failed reconcile.
    pub fn reconcile_failed(&self, controller: &str) {
        self.reconcile_errors
            .get_or_create(&Self::controller(controller))
            .inc();
    }

    /// Counts a write request.
    pub fn api_write(&self, controller: &str) {
        self.api_writes
            .get_or_create(&Self::controller(controller))
            .inc();
    }

    /// Counts an identity event (`issued`, `renewed` or `failed`) with a reason.
    pub fn identity(&self, family: &Family<ReasonLabels, Counter>, reason: &str) {
        family
            .get_or_create(&ReasonLabels {
                reason: reason.to_string(),
            })
            .inc();
    }
}

/// Observes a reconcile's duration when dropped.
pub struct ReconcileTimer<'a> {
    metrics: &'a OperatorMetrics,
    labels: ControllerLabels,
    start: Instant,
}

impl Drop for ReconcileTimer<'_> {
    fn drop(&mut self) {
        self.metrics
            .reconcile_duration
            .get_or_create(&self.labels)
            .observe(self.start.elapsed().as_secs_f64());
    }
}

#[cfg(test)]
mod tests {

    #[test]
    fn families_appear_in_the_text_with_labels() {
        let telemetry = crate::Telemetry::new();
        let m = &telemetry.metrics;
        drop(m.reconcile_started("identity"));
        m.reconcile_failed("identity");
        m.identity(&m.identities_issued, "new");
        m.root_expiry.set(42.5);
        let text = telemetry.encode().unwrap();
        assert!(text.contains("trellis_controller_reconciles_total{controller=\"identity\"} 1"));
        assert!(
            text.contains("trellis_controller_reconcile_errors_total{controller=\"identity\"} 1")
        );
        assert!(text.contains(
            "trellis_controller_reconcile_duration_seconds_count{controller=\"identity\"} 1"
        ));
        assert!(text.contains("trellis_identity_issued_total{reason=\"new\"} 1"));
        assert!(text.contains("trellis_ca_root_expiry_seconds 42.5"));
    }
}
