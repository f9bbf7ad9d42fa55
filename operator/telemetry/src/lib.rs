//! Telemetry of the operator: Prometheus metrics (`prometheus-client`), liveness and
//! readiness, served over plain HTTP on one address:
//!
//! - `GET /metrics`: OpenMetrics text of every registered family;
//! - `GET /healthz`: 200 while the process serves;
//! - `GET /readyz`: 200 when every readiness gate ([`Readiness::gate`]) is open, else 503
//!   naming the gates still closed.
//!
//! Families of the operator's own controllers live in [`OperatorMetrics`]; other
//! subsystems (xDS, webhooks) register theirs with [`Telemetry::register`].
#![forbid(unsafe_code)]

mod health;
mod metrics;
mod server;

pub use health::{Readiness, ReadyGate};
pub use metrics::{ControllerLabels, OperatorMetrics, ReasonLabels, ReconcileTimer};
pub use server::serve;

use prometheus_client::registry::{Metric, Registry};
use std::sync::{Arc, Mutex};

/// Errors of the telemetry endpoint.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: std::net::SocketAddr,
        source: std::io::Error,
    },
    #[error("encoding metrics: {0}")]
    Encode(String),
}

/// The registry, the operator's metric families and the readiness gates, shared by
/// the controllers and the HTTP endpoint.
#[derive(Clone)]
pub struct Telemetry {
    registry: Arc<Mutex<Registry>>,
    /// The families of the controllers (reconciles, identities, expiries).
    pub metrics: Arc<OperatorMetrics>,
    /// Readiness gates reported by `/readyz`.
    pub readiness: Readiness,
}

impl Default for Telemetry {
    fn default() -> Self {
        Self::new()
    }
}

impl Telemetry {
    /// A registry with the `trellis_` prefix and the operator's families registered.
    pub fn new() -> Self {
        let mut registry = Registry::with_prefix("trellis");
        let metrics = OperatorMetrics::register(&mut registry);
        Self {
            registry: Arc::new(Mutex::new(registry)),
            metrics: Arc::new(metrics),
            readiness: Readiness::default(),
        }
    }

    /// Registers another family (name without the `trellis_` prefix).
    pub fn register(&self, name: &str, help: &str, metric: impl Metric) {
        let mut registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        registry.register(name, help, metric);
    }

    /// The OpenMetrics text of every family.
    pub fn encode(&self) -> Result<String, TelemetryError> {
        let registry = self.registry.lock().unwrap_or_else(|p| p.into_inner());
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &registry)
            .map_err(|e| TelemetryError::Encode(e.to_string()))?;
        Ok(out)
    }
}
