//! Envoy admin `/stats` (plain text) parsed into counters, and the names the
//! demo reads: outbound clusters (`outbound|<port>|<subset>|<host>`), inbound
//! clusters (`inbound|<port>||`) and TLS listeners.
use std::collections::BTreeMap;

#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    values: BTreeMap<String, u64>,
}

/// An outbound cluster, split into its parts.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct OutboundCluster {
    pub name: String,
    pub port: u16,
    pub subset: String,
    pub host: String,
}

impl OutboundCluster {
    /// `outbound|8080|v1|email.shop.svc.cluster.local`.
    pub fn parse(name: &str) -> Option<OutboundCluster> {
        let mut parts = name.split('|');
        if parts.next()? != "outbound" {
            return None;
        }
        let port = parts.next()?.parse().ok()?;
        let subset = parts.next()?.to_string();
        let host = parts.next()?.to_string();
        if parts.next().is_some() || host.is_empty() {
            return None;
        }
        Some(OutboundCluster {
            name: name.to_string(),
            port,
            subset,
            host,
        })
    }

    /// The first label of the host: the service's short name.
    pub fn service(&self) -> &str {
        self.host.split('.').next().unwrap_or(&self.host)
    }
}

impl Stats {
    /// Parses `name: value` lines; histogram lines and anything non-numeric are skipped.
    pub fn parse(text: &str) -> Stats {
        let mut values = BTreeMap::new();
        for line in text.lines() {
            if let Some((name, value)) = line.rsplit_once(": ")
                && let Ok(v) = value.trim().parse::<u64>()
            {
                values.insert(name.trim().to_string(), v);
            }
        }
        Stats { values }
    }

    /// A counter or gauge; 0 when Envoy has not created it.
    pub fn get(&self, name: &str) -> u64 {
        self.values.get(name).copied().unwrap_or(0)
    }

    pub fn cluster(&self, cluster: &str, stat: &str) -> u64 {
        self.get(&format!("cluster.{cluster}.{stat}"))
    }

    /// Names of clusters that have the stat `stat` (e.g. `upstream_rq_total`).
    fn clusters_with(&self, stat: &str) -> Vec<String> {
        let suffix = format!(".{stat}");
        self.values
            .keys()
            .filter_map(|k| k.strip_prefix("cluster.")?.strip_suffix(suffix.as_str()))
            .map(str::to_string)
            .collect()
    }

    /// Outbound clusters known to this proxy.
    pub fn outbound_clusters(&self) -> Vec<OutboundCluster> {
        self.clusters_with("upstream_rq_total")
            .iter()
            .filter_map(|n| OutboundCluster::parse(n))
            .collect()
    }

    /// Inbound clusters (`inbound|<port>||`): the local app behind the sidecar.
    pub fn inbound_clusters(&self) -> Vec<String> {
        self.clusters_with("upstream_rq_total")
            .into_iter()
            .filter(|n| n.starts_with("inbound|"))
            .collect()
    }

    /// Listener stat prefixes (`listener.<address>_<port>`) that terminate TLS.
    pub fn tls_listeners(&self) -> Vec<String> {
        self.values
            .keys()
            .filter_map(|k| k.strip_suffix(".ssl.handshake"))
            .filter(|k| k.starts_with("listener.") && !k.starts_with("listener.admin"))
            .map(str::to_string)
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SAMPLE: &str = "\
cluster.outbound|8080|v1|email.shop.svc.cluster.local.upstream_rq_total: 41
cluster.outbound|8080|v1|email.shop.svc.cluster.local.ssl.handshake: 3
cluster.outbound|8080|v2|email.shop.svc.cluster.local.upstream_rq_total: 9
cluster.outbound|8080|v2|email.shop.svc.cluster.local.upstream_rq_retry: 4
cluster.outbound|8080|v2|email.shop.svc.cluster.local.outlier_detection.ejections_enforced_total: 1
cluster.inbound|8080||.upstream_rq_total: 50
cluster.xds-grpc.upstream_rq_total: 1
cluster.outbound|8080|v1|email.shop.svc.cluster.local.upstream_rq_time: P0(nan,1) P25(nan,1)
listener.127.0.0.14_8080.ssl.handshake: 5
listener.127.0.0.14_15001.downstream_cx_total: 2
listener.admin.downstream_cx_total: 7
";

    #[test]
    fn parses_counters_and_skips_histograms() {
        let s = Stats::parse(SAMPLE);
        assert_eq!(
            s.cluster(
                "outbound|8080|v2|email.shop.svc.cluster.local",
                "upstream_rq_retry"
            ),
            4
        );
        assert_eq!(s.get("missing"), 0);
        assert_eq!(
            s.get("cluster.outbound|8080|v1|email.shop.svc.cluster.local.upstream_rq_time"),
            0
        );
    }

    #[test]
    fn finds_outbound_inbound_and_tls_listeners() {
        let s = Stats::parse(SAMPLE);
        let out = s.outbound_clusters();
        assert_eq!(out.len(), 2);
        assert_eq!(
            (out[1].port, out[1].subset.as_str(), out[1].service()),
            (8080, "v2", "email")
        );
        assert_eq!(s.inbound_clusters(), vec!["inbound|8080||".to_string()]);
        assert_eq!(
            s.tls_listeners(),
            vec!["listener.127.0.0.14_8080".to_string()]
        );
    }

    #[test]
    fn cluster_names_parse_strictly() {
        assert!(OutboundCluster::parse("outbound|x|v1|h").is_none());
        assert!(OutboundCluster::parse("outbound|80|v1|").is_none());
        assert!(OutboundCluster::parse("inbound|80||").is_none());
        assert_eq!(
            OutboundCluster::parse("outbound|80||a.b").unwrap().subset,
            ""
        );
    }
}
