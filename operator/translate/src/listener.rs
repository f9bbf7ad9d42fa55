//! Listener building blocks: HTTP connection manager, TCP proxy, listeners.
use envoy_types::pb::envoy::config::core::v3::{
    AggregatedConfigSource, ApiVersion, ConfigSource, config_source::ConfigSourceSpecifier,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, ListenerFilter, filter::ConfigType,
};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::Cors;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds,
    http_connection_manager::{
        ForwardClientCertDetails, RouteSpecifier, SetCurrentClientCertDetails,
    },
    http_filter::ConfigType as HttpFilterConfig,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{
    TcpProxy,
    tcp_proxy::{
        ClusterSpecifier, TunnelingConfig, WeightedCluster, weighted_cluster::ClusterWeight,
    },
};
use envoy_types::pb::envoy::r#type::v3::{
    HashPolicy,
    hash_policy::{PolicySpecifier, SourceIp},
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;

use crate::endpoints::socket_address;
use crate::policy::TcpProxyPolicy;
use crate::route::{CORS_FILTER, FAULT_FILTER};

pub const HCM: &str = "envoy.filters.network.http_connection_manager";
pub const TCP_PROXY: &str = "envoy.filters.network.tcp_proxy";
pub const ROUTER: &str = "envoy.filters.http.router";

/// Where an HTTP connection manager gets its routes.
pub enum Routes {
    /// By name over ADS (the RouteConfiguration is in the proxy's `routes`).
    Rds(String),
    Inline(Box<RouteConfiguration>),
}

/// `filters` run before CORS, fault injection and the router (RBAC, JWT from the
/// security module). CORS and fault do nothing unless a route configures them.
pub fn http_connection_manager(
    stat_prefix: &str,
    routes: Routes,
    filters: Vec<HttpFilter>,
) -> Filter {
    hcm_filter(connection_manager(stat_prefix, routes, filters))
}

/// The network filter running `hcm`.
pub fn hcm_filter(hcm: HttpConnectionManager) -> Filter {
    Filter {
        name: HCM.into(),
        config_type: Some(ConfigType::TypedConfig(pack_any(hcm))),
    }
}

/// [`http_connection_manager`] before it is packed into a filter.
pub fn connection_manager(
    stat_prefix: &str,
    routes: Routes,
    filters: Vec<HttpFilter>,
) -> HttpConnectionManager {
    let mut http_filters = filters;
    http_filters.push(HttpFilter {
        name: CORS_FILTER.into(),
        config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Cors::default()))),
        ..Default::default()
    });
    http_filters.push(HttpFilter {
        name: FAULT_FILTER.into(),
        config_type: Some(HttpFilterConfig::TypedConfig(
            pack_any(HttpFault::default()),
        )),
        ..Default::default()
    });
    http_filters.push(HttpFilter {
        name: ROUTER.into(),
        config_type: Some(HttpFilterConfig::TypedConfig(pack_any(Router::default()))),
        ..Default::default()
    });
    let route_specifier = match routes {
        Routes::Rds(name) => RouteSpecifier::Rds(Rds {
            route_config_name: name,
            config_source: Some(ads_config_source()),
        }),
        Routes::Inline(rc) => RouteSpecifier::RouteConfig(*rc),
    };
    HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(route_specifier),
        http_filters,
        ..Default::default()
    }
}

/// Resources fetched over the proxy's one aggregated xDS stream (routes,
/// endpoints, gateway credentials).
pub fn ads_config_source() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::Ads(AggregatedConfigSource {})),
        ..Default::default()
    }
}

/// Who a request's `x-forwarded-client-cert` tells the upstream about, as
/// Istio sets it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientCertHeader {
    /// A sidecar's inbound side: the mTLS peer (subject, URI, DNS SANs) is
    /// appended to what came, so the app learns its caller's SPIFFE id.
    AppendPeer,
    /// A gateway, the edge: what came is replaced (no client forges it) by the
    /// TLS client's certificate, when there is one.
    SetFromClient,
}

/// `hcm` with the client certificate forwarded as `how` says.
pub fn forward_client_cert(
    mut hcm: HttpConnectionManager,
    how: ClientCertHeader,
) -> HttpConnectionManager {
    let (mode, cert) = match how {
        ClientCertHeader::AppendPeer => (ForwardClientCertDetails::AppendForward, false),
        ClientCertHeader::SetFromClient => (ForwardClientCertDetails::SanitizeSet, true),
    };
    hcm.forward_client_cert_details = mode as i32;
    hcm.set_current_client_cert_details = Some(SetCurrentClientCertDetails {
        subject: Some(BoolValue { value: true }),
        cert,
        uri: true,
        dns: true,
        ..Default::default()
    });
    hcm
}

pub fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Filter {
    weighted_tcp_proxy(
        stat_prefix,
        &[(cluster.to_string(), 100)],
        &TcpProxyPolicy::default(),
    )
}

/// A TCP proxy to `destinations` (cluster, weight): each connection goes to
/// one of them, picked by weight.
pub fn weighted_tcp_proxy(
    stat_prefix: &str,
    destinations: &[(String, u32)],
    policy: &TcpProxyPolicy,
) -> Filter {
    let cluster_specifier = match destinations {
        [(only, _)] => ClusterSpecifier::Cluster(only.clone()),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|(name, weight)| ClusterWeight {
                    name: name.clone(),
                    weight: *weight,
                    ..Default::default()
                })
                .collect(),
        }),
    };
    let hash_policy = if policy.hash_source_ip {
        vec![HashPolicy {
            policy_specifier: Some(PolicySpecifier::SourceIp(SourceIp {})),
        }]
    } else {
        Vec::new()
    };
    let tcp = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(cluster_specifier),
        idle_timeout: policy.idle_timeout.map(crate::cluster::duration),
        max_downstream_connection_duration: (policy.max_connection_duration)
            .map(crate::cluster::duration),
        hash_policy,
        tunneling_config: policy.tunnel.as_ref().map(|t| TunnelingConfig {
            hostname: t.authority.clone(),
            use_post: t.use_post,
            ..Default::default()
        }),
        ..Default::default()
    };
    Filter {
        name: TCP_PROXY.into(),
        config_type: Some(ConfigType::TypedConfig(pack_any(tcp))),
    }
}

pub fn listener(
    name: String,
    address: &str,
    port: u16,
    filter_chains: Vec<FilterChain>,
    listener_filters: Vec<ListenerFilter>,
) -> Listener {
    Listener {
        name,
        address: Some(socket_address(address, port)),
        filter_chains,
        listener_filters,
        ..Default::default()
    }
}

/// The TLS inspector, when a chain matches by SNI.
pub(crate) fn sni_inspector(chains: &[FilterChain]) -> Vec<ListenerFilter> {
    let by_sni = |c: &FilterChain| {
        c.filter_chain_match
            .as_ref()
            .is_some_and(|m| !m.server_names.is_empty())
    };
    if chains.iter().any(by_sni) {
        vec![crate::security::peer_authn::tls_inspector()]
    } else {
        Vec::new()
    }
}
