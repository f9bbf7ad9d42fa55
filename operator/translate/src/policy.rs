//! The DestinationRule traffic policy in the form the cluster builder reads.
//! The model's DestinationRules are mapped into it (see `destination_rule`).
use std::time::Duration;

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LoadBalancer {
    RoundRobin,
    /// Istio's default when a rule names no algorithm.
    #[default]
    LeastRequest,
    Random,
    /// `consistentHash`: ring hash on the cluster, hash policy on routes.
    ConsistentHash {
        key: HashKey,
        algorithm: HashAlgorithm,
    },
}

/// The consistent-hash algorithm of a cluster.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// Envoy RING_HASH (with Envoy's default size when `None`).
    RingHash { minimum_ring_size: Option<u64> },
    /// Envoy MAGLEV (with Envoy's default table size when `None`).
    Maglev { table_size: Option<u64> },
}

/// What consistent-hash balancing hashes a request on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum HashKey {
    Header(String),
    /// A cookie; with a `ttl`, Envoy sets it on a response to a request
    /// without it, so the client sticks from its first request.
    Cookie {
        name: String,
        path: Option<String>,
        ttl: Option<Duration>,
    },
    SourceIp,
    QueryParameter(String),
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ConnectionPool {
    pub max_connections: Option<u32>,
    pub connect_timeout: Option<Duration>,
    pub http1_max_pending_requests: Option<u32>,
    pub http2_max_requests: Option<u32>,
    pub max_requests_per_connection: Option<u32>,
    pub max_retries: Option<u32>,
    /// TCP keepalive probes on upstream connections (`tcp.tcpKeepalive`).
    pub keepalive: Option<Keepalive>,
    /// A proxied TCP connection idle this long is closed (`tcp.idleTimeout`).
    pub tcp_idle_timeout: Option<Duration>,
    /// An upstream HTTP connection is closed after this long (`tcp.maxConnectionDuration`).
    pub max_connection_duration: Option<Duration>,
    /// An idle upstream HTTP connection is closed after this long (`http.idleTimeout`).
    pub idle_timeout: Option<Duration>,
    /// `http.h2UpgradePolicy: UPGRADE`: HTTP/2 to the upstream of an HTTP/1.1 port.
    pub h2_upgrade: bool,
    /// `http.useClientProtocol`: to the upstream in the protocol the client used.
    pub use_client_protocol: bool,
    /// `http.maxConcurrentStreams` per HTTP/2 upstream connection.
    pub max_concurrent_streams: Option<u32>,
}

/// What a DestinationRule sets on the TCP proxy that carries connections to
/// its service (Envoy sets these per listener filter, not per cluster).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TcpProxyPolicy {
    /// `connectionPool.tcp.idleTimeout`; unset, Envoy's default of one hour
    /// (Istio's too); zero turns it off.
    pub idle_timeout: Option<Duration>,
    /// `consistentHash.useSourceIp`: a client IP's connections go to one endpoint.
    pub hash_source_ip: bool,
    /// `tunnel`: connections are carried in an HTTP tunnel over the cluster.
    pub tunnel: Option<Tunnel>,
    /// `connectionPool.tcp.maxConnectionDuration`: a connection is closed
    /// after this long, busy or not.
    pub max_connection_duration: Option<Duration>,
}

impl ClusterPolicy {
    pub fn tcp_proxy(&self) -> TcpProxyPolicy {
        let pool = self.connection_pool.as_ref();
        TcpProxyPolicy {
            idle_timeout: pool.and_then(|p| p.tcp_idle_timeout),
            max_connection_duration: pool.and_then(|p| p.max_connection_duration),
            hash_source_ip: matches!(
                self.load_balancer,
                Some(LoadBalancer::ConsistentHash {
                    key: HashKey::SourceIp,
                    ..
                })
            ),
            tunnel: self.tunnel.clone(),
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Keepalive {
    pub probes: Option<u32>,
    pub time: Option<Duration>,
    pub interval: Option<Duration>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OutlierDetection {
    pub consecutive_5xx_errors: Option<u32>,
    /// 502, 503 and 504 only.
    pub consecutive_gateway_errors: Option<u32>,
    /// Istio's deprecated `consecutiveErrors` (above 0): gateway errors,
    /// with 5xx ejection turned off.
    pub consecutive_errors: Option<u32>,
    /// Connect failures and timeouts counted apart from the server's answers
    /// (`splitExternalLocalOriginErrors`), ejecting after this many.
    pub consecutive_local_origin_failures: Option<u32>,
    pub split_external_local_origin_errors: bool,
    /// Below this share of healthy endpoints, ejection is ignored (panic mode).
    pub min_health_percent: Option<u32>,
    pub interval: Option<Duration>,
    pub base_ejection_time: Option<Duration>,
    pub max_ejection_percent: Option<u32>,
}

/// `trafficPolicy.tls`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTls {
    /// Plaintext, even to sidecars.
    Disable,
    /// TLS origination to a server outside the mesh (SIMPLE, or MUTUAL with a client
    /// certificate): files are paths on the proxy; the server is verified against
    /// `caCertificates` (the system roots when unset) and its SAN, unless
    /// `insecureSkipVerify`.
    Origination(crate::security::origination::ClientTls),
    /// Mesh mTLS with the workload certificate (whatever the endpoints are).
    /// The server must present one of `subject_alt_names` when any are given,
    /// else the identity of one of the service's endpoints.
    IstioMutual {
        sni: Option<String>,
        subject_alt_names: Vec<String>,
    },
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ClusterPolicy {
    pub load_balancer: Option<LoadBalancer>,
    /// `loadBalancer.warmupDurationSecs`: Envoy's slow start window.
    pub warmup: Option<Duration>,
    /// `loadBalancer.localityLbSetting` (replaced with the load balancer).
    pub locality_lb: Option<trellis_api::networking::LocalityLoadBalancerSetting>,
    pub connection_pool: Option<ConnectionPool>,
    pub outlier_detection: Option<OutlierDetection>,
    /// `None`: auto mTLS (mTLS to endpoints with a sidecar, plaintext otherwise).
    pub tls: Option<ClientTls>,
    /// `proxyProtocol`: the PROXY header on each upstream connection (rule
    /// and subset level; Istio has no port-level setting).
    pub proxy_protocol: Option<ProxyProtocol>,
    /// `tunnel`: TCP to the host carried in an HTTP tunnel (rule level for
    /// the host's clusters, a subset's own for its cluster, as Istio reads it).
    pub tunnel: Option<Tunnel>,
}

/// An HTTP tunnel a TCP proxy opens over its cluster for each connection.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Tunnel {
    /// `targetHost:targetPort`, what the tunnel asks the proxy to reach.
    pub authority: String,
    /// POST instead of CONNECT.
    pub use_post: bool,
}

/// The PROXY protocol version a cluster sends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyProtocol {
    V1,
    V2,
}

impl ClusterPolicy {
    /// A subset's (or port's) policy over the rule's: set fields win, the rest is inherited.
    pub fn overlay(&self, over: &ClusterPolicy) -> ClusterPolicy {
        ClusterPolicy {
            load_balancer: over
                .load_balancer
                .clone()
                .or_else(|| self.load_balancer.clone()),
            // Part of the load balancer settings: they are replaced as one.
            warmup: if over.load_balancer.is_some() {
                over.warmup
            } else {
                self.warmup
            },
            locality_lb: if over.load_balancer.is_some() {
                over.locality_lb.clone()
            } else {
                self.locality_lb.clone()
            },
            connection_pool: over
                .connection_pool
                .clone()
                .or_else(|| self.connection_pool.clone()),
            outlier_detection: over
                .outlier_detection
                .clone()
                .or_else(|| self.outlier_detection.clone()),
            tls: over.tls.clone().or_else(|| self.tls.clone()),
            proxy_protocol: over.proxy_protocol.or(self.proxy_protocol),
            tunnel: over.tunnel.clone().or_else(|| self.tunnel.clone()),
        }
    }
}
