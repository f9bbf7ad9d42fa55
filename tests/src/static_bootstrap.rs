//! A translator result ([`ProxyResources`]) as a static bootstrap Envoy can load
//! without an xDS server: RDS routes inlined into their connection managers, EDS
//! clusters turned STATIC with their ClusterLoadAssignment, and ADS secret
//! references pointed at file-based SDS files given by secret name.
use std::collections::BTreeMap;
use std::path::PathBuf;

use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, ConfigSource, PathConfigSource, TransportSocket,
    config_source::ConfigSourceSpecifier, transport_socket,
};
use envoy_types::pb::envoy::config::listener::v3::{Listener, filter};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, http_connection_manager::RouteSpecifier,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, SdsSecretConfig, UpstreamTlsContext,
    common_tls_context::ValidationContextType,
};
use envoy_types::pb::google::protobuf::Any;
use prost::Message;
use trellis_translate::ProxyResources;

use crate::mesh::bootstrap_yaml;

const HCM: &str = "envoy.filters.network.http_connection_manager";

fn pack<M: prost::Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// Where each ADS-delivered secret lives as a file-SDS file (by SDS name).
pub type SecretFiles = BTreeMap<String, PathBuf>;

fn fix_sds(r: &mut SdsSecretConfig, files: &SecretFiles) {
    let ads = matches!(
        r.sds_config
            .as_ref()
            .and_then(|c| c.config_source_specifier.as_ref()),
        Some(ConfigSourceSpecifier::Ads(_)) | None
    );
    if !ads {
        return;
    }
    let path = files.get(&r.name).unwrap_or_else(|| {
        panic!(
            "secret {} is delivered over ADS; the test must give its SDS file",
            r.name
        )
    });
    r.sds_config = Some(ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(ConfigSourceSpecifier::PathConfigSource(PathConfigSource {
            path: path.to_string_lossy().into_owned(),
            ..Default::default()
        })),
        ..Default::default()
    });
}

fn fix_common(c: &mut CommonTlsContext, files: &SecretFiles) {
    for r in &mut c.tls_certificate_sds_secret_configs {
        fix_sds(r, files);
    }
    match &mut c.validation_context_type {
        Some(ValidationContextType::ValidationContextSdsSecretConfig(r)) => fix_sds(r, files),
        Some(ValidationContextType::CombinedValidationContext(cv)) => {
            if let Some(r) = cv.validation_context_sds_secret_config.as_mut() {
                fix_sds(r, files);
            }
        }
        _ => {}
    }
}

fn fix_socket(ts: &mut TransportSocket, files: &SecretFiles, downstream: bool) {
    let Some(transport_socket::ConfigType::TypedConfig(any)) = &mut ts.config_type else {
        return;
    };
    if downstream && any.type_url.ends_with("DownstreamTlsContext") {
        let mut ctx = DownstreamTlsContext::decode(any.value.as_slice()).expect("tls context");
        if let Some(c) = ctx.common_tls_context.as_mut() {
            fix_common(c, files);
        }
        *any = pack(&ctx);
    } else if !downstream && any.type_url.ends_with("UpstreamTlsContext") {
        let mut ctx = UpstreamTlsContext::decode(any.value.as_slice()).expect("tls context");
        if let Some(c) = ctx.common_tls_context.as_mut() {
            fix_common(c, files);
        }
        *any = pack(&ctx);
    }
}

/// The listeners with RDS inlined and ADS secrets pointed at files.
pub fn static_listeners(res: &ProxyResources, files: &SecretFiles) -> Vec<Listener> {
    let mut listeners: Vec<Listener> = res.listeners.iter().map(|l| (**l).clone()).collect();
    for l in &mut listeners {
        for chain in &mut l.filter_chains {
            if let Some(ts) = chain.transport_socket.as_mut() {
                fix_socket(ts, files, true);
            }
            for f in &mut chain.filters {
                if f.name != HCM {
                    continue;
                }
                let Some(filter::ConfigType::TypedConfig(any)) = &mut f.config_type else {
                    continue;
                };
                let mut hcm = HttpConnectionManager::decode(any.value.as_slice()).expect("hcm");
                if let Some(RouteSpecifier::Rds(rds)) = &hcm.route_specifier {
                    let rc = res
                        .routes
                        .iter()
                        .find(|r| r.name() == rds.route_config_name)
                        .unwrap_or_else(|| {
                            panic!(
                                "listener {} names route configuration {} that the translator did not produce",
                                l.name, rds.route_config_name
                            )
                        });
                    hcm.route_specifier = Some(RouteSpecifier::RouteConfig(rc.decode()));
                }
                *any = pack(&hcm);
            }
        }
    }
    listeners
}

/// The clusters with EDS replaced by inline endpoints and ADS secrets pointed at files.
pub fn static_clusters(res: &ProxyResources, files: &SecretFiles) -> Vec<Cluster> {
    let mut clusters: Vec<Cluster> = res.clusters.iter().map(|c| (**c).clone()).collect();
    for c in &mut clusters {
        let eds = c.cluster_discovery_type
            == Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Eds as i32,
            ));
        if eds {
            let service = c
                .eds_cluster_config
                .as_ref()
                .map(|e| e.service_name.clone())
                .filter(|n| !n.is_empty())
                .unwrap_or_else(|| c.name.clone());
            let cla = res
                .endpoints
                .iter()
                .find(|e| e.cluster_name == service)
                .map(|e| (**e).clone())
                .unwrap_or_default();
            c.cluster_discovery_type = Some(cluster::ClusterDiscoveryType::Type(
                cluster::DiscoveryType::Static as i32,
            ));
            c.eds_cluster_config = None;
            c.load_assignment = Some(
                envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment {
                    cluster_name: c.name.clone(),
                    ..cla
                },
            );
        }
        if let Some(ts) = c.transport_socket.as_mut() {
            fix_socket(ts, files, false);
        }
        for m in &mut c.transport_socket_matches {
            if let Some(ts) = m.transport_socket.as_mut() {
                fix_socket(ts, files, false);
            }
        }
    }
    clusters
}

/// The whole static bootstrap as YAML (no admin: the harness adds it).
pub fn static_bootstrap(node_id: &str, res: &ProxyResources, files: &SecretFiles) -> String {
    bootstrap_yaml(
        node_id,
        static_listeners(res, files),
        static_clusters(res, files),
    )
}
