//! The in-operator xDS server's counters on `/metrics`, read at scrape time.
use std::fmt;

use prometheus_client::encoding::{EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use trellis_xds::{MetricsSnapshot, XdsServer};

/// One family whose value is read from the xDS server when `/metrics` is scraped.
pub struct XdsValue {
    xds: XdsServer,
    kind: MetricType,
    read: fn(&MetricsSnapshot) -> f64,
}

impl fmt::Debug for XdsValue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("XdsValue")
            .field("kind", &self.kind)
            .finish()
    }
}

impl EncodeMetric for XdsValue {
    fn encode(&self, mut encoder: MetricEncoder) -> Result<(), fmt::Error> {
        let value = (self.read)(&self.xds.metrics());
        match self.kind {
            MetricType::Counter => {
                encoder.encode_counter::<NoLabelSet, u64, u64>(&(value as u64), None)
            }
            _ => encoder.encode_gauge(&value),
        }
    }

    fn metric_type(&self) -> MetricType {
        self.kind
    }
}

/// The families, as (name without `trellis_`, help, type, reader).
pub fn families(xds: &XdsServer) -> Vec<(&'static str, &'static str, XdsValue)> {
    let value = |kind, read: fn(&MetricsSnapshot) -> f64| XdsValue {
        xds: xds.clone(),
        kind,
        read,
    };
    use MetricType::{Counter, Gauge};
    vec![
        (
            "xds_proxies_connected",
            "Proxies with an open ADS stream",
            value(Gauge, |m| m.connected_proxies as f64),
        ),
        (
            "xds_connections",
            "ADS streams accepted",
            value(Counter, |m| m.connections_total as f64),
        ),
        (
            "xds_refused",
            "ADS streams refused (no client certificate, bad node, identity mismatch)",
            value(Counter, |m| m.refused_total as f64),
        ),
        (
            "xds_pushes",
            "Snapshots delivered to proxies because their output changed",
            value(Counter, |m| m.pushes_total as f64),
        ),
        (
            "xds_pushes_skipped",
            "Proxies in a push whose output did not change",
            value(Counter, |m| m.pushes_skipped_total as f64),
        ),
        (
            "xds_push_rounds",
            "Debounced push rounds",
            value(Counter, |m| m.push_rounds_total as f64),
        ),
        (
            "xds_push_duration_seconds_sum",
            "Total time spent in push rounds (divide by trellis_xds_push_rounds_total for the mean)",
            value(Gauge, |m| m.push_duration_micros_total as f64 / 1e6),
        ),
        (
            "xds_last_push_duration_seconds",
            "Duration of the last push round",
            value(Gauge, |m| m.last_push_duration_micros as f64 / 1e6),
        ),
        (
            "xds_acks",
            "Responses proxies acknowledged",
            value(Counter, |m| m.acks_total as f64),
        ),
        (
            "xds_nacks",
            "Responses proxies rejected (NACK)",
            value(Counter, |m| m.nacks_total as f64),
        ),
        (
            "xds_snapshot_errors",
            "Proxies whose configuration could not be built",
            value(Counter, |m| m.snapshot_errors_total as f64),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use prometheus_client::registry::Registry;
    use std::sync::Arc;
    use trellis_xds::{ProxyId, Snapshot, XdsConfig, XdsError};

    #[tokio::test]
    async fn families_are_read_from_the_server_at_scrape_time() {
        let source = |_: &ProxyId| -> Result<Snapshot, XdsError> {
            Ok(Snapshot::builder().build(&trellis_xds::ResourceCache::new()))
        };
        let xds = XdsServer::new(XdsConfig::new("cluster.local"), Arc::new(source));
        let mut registry = Registry::with_prefix("trellis");
        for (name, help, metric) in families(&xds) {
            registry.register(name, help, metric);
        }
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        for line in [
            "# TYPE trellis_xds_proxies_connected gauge",
            "trellis_xds_proxies_connected 0.0",
            "# TYPE trellis_xds_nacks counter",
            "trellis_xds_nacks_total 0",
            "trellis_xds_push_rounds_total 0",
            "trellis_xds_last_push_duration_seconds 0.0",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line:?} missing in:\n{text}"
            );
        }
        // A push round is counted when it runs (values are live, not copied at registration).
        xds.push_now(&trellis_xds::PushScope::All);
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(
            text.lines().any(|l| l == "trellis_xds_push_rounds_total 1"),
            "{text}"
        );
    }
}
