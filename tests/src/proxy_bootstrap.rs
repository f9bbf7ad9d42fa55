//! The translator's output for one proxy ([`ProxyResources`]) as a static bootstrap:
//! what an ADS server would serve, put into `static_resources` so real Envoy loads
//! it without a control plane. RDS references become inline route configurations
//! and EDS clusters become STATIC clusters carrying their ClusterLoadAssignment;
//! everything else is the translator's output unchanged.
use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::config::route::v3::RouteConfiguration;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::google::protobuf::Any;
use prost::{Message, Name};
use trellis_translate::ProxyResources;

use crate::mesh::bootstrap_yaml;

/// A static bootstrap (YAML, no admin section) holding `resources`. Panics when a
/// listener names a route configuration or a cluster names endpoints that are not
/// in `resources`: that is a translator bug the test should show.
pub fn static_bootstrap(node_id: &str, resources: &ProxyResources) -> String {
    let decoded: Vec<RouteConfiguration> = resources.routes.iter().map(|r| r.decode()).collect();
    let routes: BTreeMap<&str, &RouteConfiguration> =
        decoded.iter().map(|r| (r.name.as_str(), r)).collect();
    let endpoints: BTreeMap<&str, &ClusterLoadAssignment> = resources
        .endpoints
        .iter()
        .map(|e| (e.cluster_name.as_str(), e.as_ref()))
        .collect();
    let listeners = resources
        .listeners
        .iter()
        .map(|l| inline_routes(l, &routes))
        .collect();
    let clusters = resources
        .clusters
        .iter()
        .map(|c| inline_endpoints(c, &endpoints))
        .collect();
    bootstrap_yaml(node_id, listeners, clusters)
}

fn inline_routes(listener: &Listener, routes: &BTreeMap<&str, &RouteConfiguration>) -> Listener {
    let mut out = listener.clone();
    for chain in &mut out.filter_chains {
        for f in &mut chain.filters {
            let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                continue;
            };
            if any.type_url != HttpConnectionManager::type_url() {
                continue;
            }
            let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("decode HCM");
            if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                let rc = routes.get(rds.route_config_name.as_str()).unwrap_or_else(|| {
                    panic!(
                        "listener {} names route configuration {:?}, which the proxy does not get",
                        listener.name, rds.route_config_name
                    )
                });
                hcm.route_specifier = Some(RouteSpecifier::RouteConfig((*rc).clone()));
                *any = Any {
                    type_url: HttpConnectionManager::type_url(),
                    value: hcm.encode_to_vec(),
                };
            }
        }
    }
    out
}

fn inline_endpoints(
    cluster: &Cluster,
    endpoints: &BTreeMap<&str, &ClusterLoadAssignment>,
) -> Cluster {
    let mut out = cluster.clone();
    if out.cluster_discovery_type != Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32)) {
        return out;
    }
    let service = out
        .eds_cluster_config
        .take()
        .map(|c| c.service_name)
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| out.name.clone());
    let cla = endpoints.get(service.as_str()).unwrap_or_else(|| {
        panic!(
            "EDS cluster {} has no ClusterLoadAssignment {service:?} in the proxy's output",
            out.name
        )
    });
    out.cluster_discovery_type = Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32));
    let mut cla = (*cla).clone();
    cla.cluster_name = out.name.clone();
    out.load_assignment = Some(cla);
    out
}
