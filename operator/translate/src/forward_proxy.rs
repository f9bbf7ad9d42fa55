//! ALLOW_ANY in the explicit (HTTP proxy) shape: a request for a host outside
//! the registry goes where its authority says, a name resolved by Envoy's DNS
//! cache or an address, as a forward proxy would send it. (The interception
//! shape has the intercepted socket's original destination instead.) A
//! `CONNECT host:port` (how clients send HTTPS through `HTTPS_PROXY`) opens a
//! TCP tunnel to that host the same way.
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, CustomClusterType, DnsLookupFamily, LbPolicy,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteMatch, WeightedCluster, route, route_action, route_match,
    weighted_cluster,
};
use envoy_types::pb::envoy::extensions::clusters::dynamic_forward_proxy::v3::{
    ClusterConfig, cluster_config::ClusterImplementationSpecifier,
};
use envoy_types::pb::envoy::extensions::common::dynamic_forward_proxy::v3::DnsCacheConfig;
use envoy_types::pb::envoy::extensions::filters::http::dynamic_forward_proxy::v3::{
    FilterConfig, filter_config::ImplementationSpecifier,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter::ConfigType,
};
use envoy_types::pb::google::protobuf::UInt32Value;
use envoy_types::util::pack_any;

use crate::cluster::{DEFAULT_CONNECT_TIMEOUT, duration};
use crate::names;
use crate::policy::{HashKey, TcpProxyPolicy};

const CLUSTER_TYPE: &str = "envoy.clusters.dynamic_forward_proxy";
const FILTER: &str = "envoy.filters.http.dynamic_forward_proxy";

/// The filter and the cluster must name the same cache with the same settings.
fn dns_cache() -> DnsCacheConfig {
    DnsCacheConfig {
        name: "passthrough".into(),
        // IPv4 only, like the DNS clusters of ServiceEntries (`localhost` is 127.0.0.1).
        dns_lookup_family: DnsLookupFamily::V4Only as i32,
        ..Default::default()
    }
}

/// `PassthroughCluster`: connects to the host the filter resolved for the request.
pub fn passthrough_cluster() -> Cluster {
    let config = ClusterConfig {
        cluster_implementation_specifier: Some(ClusterImplementationSpecifier::DnsCacheConfig(
            dns_cache(),
        )),
        ..Default::default()
    };
    Cluster {
        name: names::PASSTHROUGH_CLUSTER.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::ClusterType(CustomClusterType {
            name: CLUSTER_TYPE.into(),
            typed_config: Some(pack_any(config)),
        })),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        ..Default::default()
    }
}

/// The HTTP filter that resolves the authority of requests routed to
/// [`passthrough_cluster`]; it leaves requests to other clusters alone.
pub fn http_filter() -> HttpFilter {
    let config = FilterConfig {
        implementation_specifier: Some(ImplementationSpecifier::DnsCacheConfig(dns_cache())),
        ..Default::default()
    };
    HttpFilter {
        name: FILTER.into(),
        config_type: Some(ConfigType::TypedConfig(pack_any(config))),
        ..Default::default()
    }
}

const CONNECT: &str = "CONNECT";

/// The explicit proxy's connection manager accepts `CONNECT`; only routes
/// that terminate it ([`connect_route`]) let it through.
pub fn accept_connect(hcm: &mut HttpConnectionManager) {
    hcm.upgrade_configs
        .push(http_connection_manager::UpgradeConfig {
            upgrade_type: CONNECT.into(),
            ..Default::default()
        });
}

/// `CONNECT host:port` to `cluster`: Envoy answers 200 and relays the bytes
/// that follow (the client's own TLS) as raw TCP.
pub fn connect_route(name: &str, cluster: &str) -> Route {
    weighted_connect_route(
        name,
        &[(cluster.to_string(), 100)],
        &TcpProxyPolicy::default(),
    )
}

/// [`connect_route`] to `destinations` (cluster, weight): each tunnel goes to
/// one of them, picked by weight. `policy` is applied as a TCP proxy would;
/// with a DestinationRule `tunnel`, the CONNECT is not terminated but sent on
/// to the cluster (the tunnelling proxy) for the tunnel's target instead.
pub fn weighted_connect_route(
    name: &str,
    destinations: &[(String, u32)],
    policy: &TcpProxyPolicy,
) -> Route {
    let cluster_specifier = match destinations {
        [(only, _)] => route_action::ClusterSpecifier::Cluster(only.clone()),
        many => route_action::ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|(name, weight)| weighted_cluster::ClusterWeight {
                    name: name.clone(),
                    weight: Some(UInt32Value { value: *weight }),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    Route {
        name: name.into(),
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::ConnectMatcher(
                route_match::ConnectMatcher {},
            )),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(cluster_specifier),
            upgrade_configs: vec![route_action::UpgradeConfig {
                upgrade_type: CONNECT.into(),
                connect_config: policy
                    .tunnel
                    .is_none()
                    .then(route_action::upgrade_config::ConnectConfig::default),
                ..Default::default()
            }],
            host_rewrite_specifier: policy.tunnel.as_ref().map(|t| {
                route_action::HostRewriteSpecifier::HostRewriteLiteral(t.authority.clone())
            }),
            // A tunnel lasts as long as its client keeps it, unless idle
            // for the destination's `tcp.idleTimeout`.
            timeout: Some(crate::cluster::duration(std::time::Duration::ZERO)),
            idle_timeout: policy.idle_timeout.map(crate::cluster::duration),
            max_stream_duration: policy.max_connection_duration.map(|d| {
                route_action::MaxStreamDuration {
                    max_stream_duration: Some(crate::cluster::duration(d)),
                    ..Default::default()
                }
            }),
            hash_policy: if policy.hash_source_ip {
                vec![crate::route::hash_policy(&HashKey::SourceIp)]
            } else {
                Vec::new()
            },
            ..Default::default()
        })),
        ..Default::default()
    }
}
