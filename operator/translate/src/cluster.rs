//! Clusters: outbound per service port and subset, inbound per target port,
//! and Istio's catch-all clusters.
use std::collections::HashMap;
use std::time::Duration as StdDuration;

use envoy_types::pb::envoy::config::cluster::v3::{
    CircuitBreakers, Cluster, OutlierDetection as EnvoyOutlier, UpstreamConnectionOptions,
    circuit_breakers::Thresholds,
    cluster::{
        ClusterDiscoveryType, CommonLbConfig, DiscoveryType, DnsLookupFamily, EdsClusterConfig,
        LbConfig, LbPolicy, LeastRequestLbConfig, MaglevLbConfig, RingHashLbConfig,
        RoundRobinLbConfig, SlowStartConfig, TransportSocketMatch,
        common_lb_config::{LocalityConfigSpecifier, LocalityWeightedLbConfig},
    },
};
use envoy_types::pb::envoy::config::core::v3::{
    Http2ProtocolOptions, HttpProtocolOptions, ProxyProtocolConfig, TcpKeepalive, TransportSocket,
    proxy_protocol_config::Version as ProxyProtocolVersion, transport_socket::ConfigType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::upstreams::http::v3::{
    HttpProtocolOptions as UpstreamHttpOptions,
    http_protocol_options::{
        ExplicitHttpConfig, UpstreamProtocolOptions, UseDownstreamHttpConfig,
        explicit_http_config::ProtocolConfig,
    },
};
use envoy_types::pb::google::protobuf::{
    Duration, Struct, UInt32Value, UInt64Value, Value, value::Kind,
};
use envoy_types::util::pack_any;

use trellis_model::{MeshService, Protocol, Resolution, ServicePort};

use crate::endpoints;
use crate::locality::LocalityLb;
use crate::names;
use crate::policy::{
    ClientTls, ClusterPolicy, ConnectionPool, HashAlgorithm, Keepalive, LoadBalancer,
    OutlierDetection, ProxyProtocol,
};
use crate::security::sds::SdsSource;
use crate::security::tls::{upstream_mtls, upstream_transport_socket};

/// Istio's default connect timeout.
pub const DEFAULT_CONNECT_TIMEOUT: StdDuration = StdDuration::from_secs(10);
/// Endpoint metadata namespace Envoy matches `transport_socket_matches` against.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";
/// The metadata key and value marking an endpoint that has a sidecar.
pub const TLS_MODE_KEY: &str = "tlsMode";
pub const TLS_MODE_ISTIO: &str = "istio";

const HTTP_PROTOCOL_OPTIONS: &str = "envoy.extensions.upstreams.http.v3.HttpProtocolOptions";
const RAW_BUFFER: &str = "envoy.transport_sockets.raw_buffer";
/// Envoy's transport socket that sends the PROXY header first.
const UPSTREAM_PROXY_PROTOCOL: &str = "envoy.transport_sockets.upstream_proxy_protocol";

pub fn duration(d: StdDuration) -> Duration {
    Duration {
        seconds: d.as_secs() as i64,
        nanos: d.subsec_nanos() as i32,
    }
}

/// Everything the cluster builder needs to know about one outbound cluster.
pub struct OutboundCluster<'a> {
    pub service: &'a MeshService,
    pub port: &'a ServicePort,
    pub subset: Option<&'a str>,
    pub policy: &'a ClusterPolicy,
    /// SPIFFE ids behind the service (what the client accepts from the server).
    pub identities: &'a [String],
    /// Endpoints for STATIC / DNS services (EDS services get theirs over EDS).
    pub inline_endpoints: Vec<trellis_model::Endpoint>,
    /// Locality load balancing for the client the cluster is built for.
    pub locality: Option<LocalityLb<'a>>,
}

/// `outbound|<port>|<subset>|<host>`.
pub fn outbound_cluster(spec: &OutboundCluster<'_>, sds: &SdsSource) -> Cluster {
    let name = names::outbound_cluster(spec.port.port, spec.subset, &spec.service.hostname);
    let mut cluster = base_cluster(&name, spec.policy, spec.port.protocol);
    match spec.service.resolution {
        Resolution::Endpoints => {
            cluster.cluster_discovery_type =
                Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32));
            cluster.eds_cluster_config = Some(EdsClusterConfig {
                eds_config: Some(crate::listener::ads_config_source()),
                service_name: name.clone(),
            });
        }
        Resolution::Dns | Resolution::DnsRoundRobin | Resolution::Static => {
            let kind = match spec.service.resolution {
                // Envoy takes exactly one endpoint in a logical DNS cluster;
                // a subset that selects none stays an empty strict one.
                Resolution::DnsRoundRobin if spec.inline_endpoints.len() == 1 => {
                    DiscoveryType::LogicalDns
                }
                Resolution::Dns | Resolution::DnsRoundRobin => DiscoveryType::StrictDns,
                _ => DiscoveryType::Static,
            };
            cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(kind as i32));
            cluster.dns_lookup_family = DnsLookupFamily::V4Only as i32;
            cluster.load_assignment = Some(endpoints::locality_load_assignment(
                &name,
                &spec.inline_endpoints,
                spec.locality.as_ref(),
                false,
            ));
        }
        Resolution::Passthrough => {
            cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(
                DiscoveryType::OriginalDst as i32,
            ));
            cluster.lb_policy = LbPolicy::ClusterProvided as i32;
        }
    }
    if spec.locality.is_some_and(|l| l.weighted_config()) {
        cluster
            .common_lb_config
            .get_or_insert_with(Default::default)
            .locality_config_specifier = Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(
            LocalityWeightedLbConfig {},
        ));
    }
    let sni = format!(
        "outbound_.{}_.{}_.{}",
        spec.port.port,
        spec.subset.unwrap_or(""),
        spec.service.hostname
    );
    match &spec.policy.tls {
        None => {
            // Auto mTLS: endpoints with a sidecar carry `tlsMode: istio` metadata.
            let sidecars = spec.service.resolution == Resolution::Endpoints
                || spec.inline_endpoints.iter().any(|e| e.has_sidecar);
            if sidecars && !spec.identities.is_empty() {
                cluster.transport_socket_matches = vec![
                    TransportSocketMatch {
                        name: "tlsMode-istio".into(),
                        r#match: Some(tls_mode_struct()),
                        transport_socket: Some(mesh_mtls_socket(sds, &sni, spec.identities)),
                    },
                    TransportSocketMatch {
                        name: "tlsMode-disabled".into(),
                        r#match: Some(Struct::default()),
                        transport_socket: Some(raw_buffer_socket()),
                    },
                ];
            }
        }
        Some(ClientTls::Disable) => {}
        Some(ClientTls::IstioMutual {
            sni: custom,
            subject_alt_names,
        }) => {
            let sni = custom.clone().unwrap_or(sni);
            let expected = match subject_alt_names.as_slice() {
                [] => spec.identities,
                named => named,
            };
            cluster.transport_socket = Some(mesh_mtls_socket(sds, &sni, expected));
        }
        Some(ClientTls::Origination(tls)) => {
            // The SNI (and the SAN checked) default to the host, wildcards trimmed.
            let host = spec.service.hostname.trim_start_matches("*.");
            cluster.transport_socket =
                crate::security::origination::client_tls_context(tls, host, sds, spec.identities)
                    .map(|ctx| upstream_transport_socket(&ctx));
        }
    }
    if let Some(version) = spec.policy.proxy_protocol {
        wrap_in_proxy_protocol(&mut cluster, version);
    }
    cluster
}

/// `proxyProtocol`, as Istio applies it: Envoy's upstream PROXY protocol
/// socket around the cluster's transport socket (plaintext when it has
/// none), or around each socket of its auto mTLS matches, so the header
/// precedes the TLS handshake.
fn wrap_in_proxy_protocol(cluster: &mut Cluster, version: ProxyProtocol) {
    let wrap = |inner: TransportSocket| TransportSocket {
        name: UPSTREAM_PROXY_PROTOCOL.into(),
        config_type: Some(ConfigType::TypedConfig(pack_any(
            ProxyProtocolUpstreamTransport {
                config: Some(ProxyProtocolConfig {
                    version: match version {
                        ProxyProtocol::V1 => ProxyProtocolVersion::V1,
                        ProxyProtocol::V2 => ProxyProtocolVersion::V2,
                    } as i32,
                    ..Default::default()
                }),
                transport_socket: Some(inner),
                ..Default::default()
            },
        ))),
    };
    if cluster.transport_socket_matches.is_empty() {
        let inner = cluster
            .transport_socket
            .take()
            .unwrap_or_else(raw_buffer_socket);
        cluster.transport_socket = Some(wrap(inner));
    } else {
        for m in &mut cluster.transport_socket_matches {
            if let Some(inner) = m.transport_socket.take() {
                m.transport_socket = Some(wrap(inner));
            }
        }
    }
}

/// `inbound|<port>||`: the local application behind one target port, with
/// the Sidecar's connection pool for it.
pub fn inbound_cluster(
    target_port: u16,
    app_address: &str,
    app_port: u16,
    protocol: Protocol,
    pool: Option<ConnectionPool>,
) -> Cluster {
    let name = names::inbound_cluster(target_port);
    let policy = ClusterPolicy {
        connection_pool: pool,
        ..ClusterPolicy::default()
    };
    let mut cluster = base_cluster(&name, &policy, protocol);
    // One endpoint, so no balancing to choose; Istio sets none on inbound clusters.
    cluster.lb_policy = LbPolicy::RoundRobin as i32;
    cluster.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
    let endpoint = trellis_model::Endpoint {
        address: app_address.to_string(),
        port: app_port,
        labels: Default::default(),
        has_sidecar: false,
        namespace: String::new(),
        service_account: None,
        weight: 1,
        locality: None,
    };
    cluster.load_assignment = Some(endpoints::load_assignment(&name, &[endpoint]));
    cluster
}

/// Traffic to an unknown destination, forwarded to where it was going (ALLOW_ANY).
pub fn passthrough_cluster() -> Cluster {
    Cluster {
        name: names::PASSTHROUGH_CLUSTER.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

/// A cluster with no endpoints: requests to it fail (REGISTRY_ONLY).
pub fn blackhole_cluster() -> Cluster {
    Cluster {
        name: names::BLACKHOLE_CLUSTER.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

fn base_cluster(name: &str, policy: &ClusterPolicy, protocol: Protocol) -> Cluster {
    let pool = policy.connection_pool.clone().unwrap_or_default();
    let mut cluster = Cluster {
        name: name.to_string(),
        connect_timeout: Some(duration(
            pool.connect_timeout.unwrap_or(DEFAULT_CONNECT_TIMEOUT),
        )),
        circuit_breakers: circuit_breakers(&pool),
        upstream_connection_options: pool.keepalive.as_ref().map(upstream_keepalive),
        outlier_detection: policy.outlier_detection.as_ref().map(outlier_detection),
        common_lb_config: policy
            .outlier_detection
            .as_ref()
            .and_then(|o| o.min_health_percent)
            .map(|percent| CommonLbConfig {
                healthy_panic_threshold: Some(envoy_types::pb::envoy::r#type::v3::Percent {
                    value: f64::from(percent),
                }),
                ..Default::default()
            }),
        ..Default::default()
    };
    cluster.lb_policy = match policy.load_balancer.clone().unwrap_or_default() {
        LoadBalancer::RoundRobin => LbPolicy::RoundRobin,
        LoadBalancer::LeastRequest => LbPolicy::LeastRequest,
        LoadBalancer::Random => LbPolicy::Random,
        LoadBalancer::ConsistentHash {
            algorithm: HashAlgorithm::RingHash { .. },
            ..
        } => LbPolicy::RingHash,
        LoadBalancer::ConsistentHash {
            algorithm: HashAlgorithm::Maglev { .. },
            ..
        } => LbPolicy::Maglev,
    } as i32;
    // Istio's warmup is Envoy's slow start, for the two algorithms that have it.
    let slow_start = policy.warmup.map(|window| SlowStartConfig {
        slow_start_window: Some(duration(window)),
        ..Default::default()
    });
    cluster.lb_config = match (policy.load_balancer.clone().unwrap_or_default(), slow_start) {
        (LoadBalancer::RoundRobin, Some(s)) => {
            Some(LbConfig::RoundRobinLbConfig(RoundRobinLbConfig {
                slow_start_config: Some(s),
            }))
        }
        (LoadBalancer::LeastRequest, Some(s)) => {
            Some(LbConfig::LeastRequestLbConfig(LeastRequestLbConfig {
                slow_start_config: Some(s),
                ..Default::default()
            }))
        }
        _ => None,
    };
    if let Some(LoadBalancer::ConsistentHash { algorithm, .. }) = &policy.load_balancer {
        cluster.lb_config = match *algorithm {
            HashAlgorithm::RingHash {
                minimum_ring_size: Some(size),
            } => Some(LbConfig::RingHashLbConfig(RingHashLbConfig {
                minimum_ring_size: Some(UInt64Value { value: size }),
                ..Default::default()
            })),
            HashAlgorithm::Maglev {
                table_size: Some(size),
            } => Some(LbConfig::MaglevLbConfig(MaglevLbConfig {
                table_size: Some(UInt64Value { value: size }),
            })),
            _ => None,
        };
    }
    let http_options = http_protocol_options(protocol, &pool);
    if let Some(options) = http_options {
        cluster.typed_extension_protocol_options =
            HashMap::from([(HTTP_PROTOCOL_OPTIONS.to_string(), pack_any(options))]);
    }
    cluster
}

fn http_protocol_options(protocol: Protocol, pool: &ConnectionPool) -> Option<UpstreamHttpOptions> {
    // HTTP/2 for h2 and gRPC ports, and for HTTP/1.1 ports told to upgrade.
    let h2 = protocol.is_http2() || (pool.h2_upgrade && protocol.is_http());
    let common = HttpProtocolOptions {
        max_requests_per_connection: pool
            .max_requests_per_connection
            .map(|value| UInt32Value { value }),
        idle_timeout: pool.idle_timeout.map(duration),
        max_connection_duration: pool.max_connection_duration.map(duration),
        ..Default::default()
    };
    let use_client_protocol = pool.use_client_protocol && protocol.is_http();
    if !h2 && !use_client_protocol && common == HttpProtocolOptions::default() {
        return None;
    }
    let http2 = Http2ProtocolOptions {
        max_concurrent_streams: pool
            .max_concurrent_streams
            .map(|value| UInt32Value { value }),
        ..Default::default()
    };
    let upstream = if use_client_protocol {
        UpstreamProtocolOptions::UseDownstreamProtocolConfig(UseDownstreamHttpConfig {
            http2_protocol_options: Some(http2),
            ..Default::default()
        })
    } else {
        let protocol_config = if h2 {
            ProtocolConfig::Http2ProtocolOptions(http2)
        } else {
            ProtocolConfig::HttpProtocolOptions(Default::default())
        };
        UpstreamProtocolOptions::ExplicitHttpConfig(ExplicitHttpConfig {
            protocol_config: Some(protocol_config),
        })
    };
    Some(UpstreamHttpOptions {
        common_http_protocol_options: (common != HttpProtocolOptions::default()).then_some(common),
        upstream_protocol_options: Some(upstream),
        ..Default::default()
    })
}

/// `tcp.tcpKeepalive` -> the upstream socket's keepalive (whole seconds, as
/// Envoy takes them).
fn upstream_keepalive(keepalive: &Keepalive) -> UpstreamConnectionOptions {
    let seconds = |d: Option<StdDuration>| {
        d.map(|d| UInt32Value {
            value: d.as_secs().min(u64::from(u32::MAX)) as u32,
        })
    };
    UpstreamConnectionOptions {
        tcp_keepalive: Some(TcpKeepalive {
            keepalive_probes: keepalive.probes.map(|value| UInt32Value { value }),
            keepalive_time: seconds(keepalive.time),
            keepalive_interval: seconds(keepalive.interval),
        }),
        ..Default::default()
    }
}

/// connectionPool -> the default-priority thresholds. An unset limit is
/// effectively none (u32::MAX), as Istio sets it: Envoy's own defaults (1,024
/// connections, pending and active requests, and 3 concurrent retries) would
/// refuse traffic a mesh moved from Istio carries today.
fn circuit_breakers(pool: &ConnectionPool) -> Option<CircuitBreakers> {
    let limit = |v: Option<u32>| {
        Some(UInt32Value {
            value: v.unwrap_or(u32::MAX),
        })
    };
    Some(CircuitBreakers {
        thresholds: vec![Thresholds {
            max_connections: limit(pool.max_connections),
            max_pending_requests: limit(pool.http1_max_pending_requests),
            max_requests: limit(pool.http2_max_requests),
            max_retries: limit(pool.max_retries),
            ..Default::default()
        }],
        ..Default::default()
    })
}

fn outlier_detection(o: &OutlierDetection) -> EnvoyOutlier {
    let u = |v: Option<u32>| v.map(|value| UInt32Value { value });
    // As Istio maps them: a detector set to 0 is off, one set above 0 always
    // ejects; the gateway-error and success-rate detectors are off unless asked.
    let enforcing = |v: Option<u32>, default: u32| {
        Some(UInt32Value {
            value: v.map_or(default, |n| if n > 0 { 100 } else { 0 }),
        })
    };
    let local = o.split_external_local_origin_errors;
    // The deprecated consecutiveErrors, as Istio maps it: gateway errors
    // only (5xx ejection off), unless the newer fields say otherwise.
    let legacy = o.consecutive_errors.filter(|n| *n > 0);
    let gateway = o.consecutive_gateway_errors.or(legacy);
    EnvoyOutlier {
        consecutive_5xx: u(o.consecutive_5xx_errors),
        enforcing_consecutive_5xx: match o.consecutive_5xx_errors {
            Some(n) => enforcing(Some(n), 100),
            None => legacy.map(|_| UInt32Value { value: 0 }),
        },
        consecutive_gateway_failure: u(gateway),
        enforcing_consecutive_gateway_failure: enforcing(gateway, 0),
        split_external_local_origin_errors: local,
        consecutive_local_origin_failure: u(o.consecutive_local_origin_failures.filter(|_| local)),
        enforcing_consecutive_local_origin_failure: local
            .then(|| enforcing(o.consecutive_local_origin_failures, 100))
            .flatten(),
        interval: o.interval.map(duration),
        base_ejection_time: o.base_ejection_time.map(duration),
        max_ejection_percent: u(o.max_ejection_percent),
        enforcing_success_rate: Some(UInt32Value { value: 0 }),
        ..Default::default()
    }
}

/// `{tlsMode: istio}`: the match and the endpoint metadata of auto mTLS.
pub fn tls_mode_struct() -> Struct {
    Struct {
        fields: HashMap::from([(
            TLS_MODE_KEY.to_string(),
            Value {
                kind: Some(Kind::StringValue(TLS_MODE_ISTIO.to_string())),
            },
        )]),
    }
}

fn mesh_mtls_socket(sds: &SdsSource, sni: &str, identities: &[String]) -> TransportSocket {
    upstream_transport_socket(&upstream_mtls(sds, sni, identities))
}

fn raw_buffer_socket() -> TransportSocket {
    TransportSocket {
        name: RAW_BUFFER.into(),
        config_type: Some(ConfigType::TypedConfig(pack_any(RawBuffer::default()))),
    }
}
