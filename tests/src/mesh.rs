//! Building blocks for static bootstraps in end-to-end tests: workload identities
//! issued by `trellis-ca` written as file-based SDS, and the Envoy scaffolding
//! (listeners, connection managers, static clusters, bootstrap) around the
//! translator's output. Bootstraps are written as YAML through `trellis-envoy-json`.
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::bootstrap::v3::{
    Bootstrap, LayeredRuntime, RuntimeLayer, bootstrap::StaticResources,
};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, Node, SocketAddress, TransportSocket, address, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, Listener, ListenerFilter, filter,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, http_connection_manager, http_filter,
};
use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::{TcpProxy, tcp_proxy};
use envoy_types::pb::google::protobuf::Any;
use trellis_ca::{CertificateAuthority, RootOptions, SystemRandom, TrustDomain};
use trellis_translate::security::sds::{SdsSource, trust_bundle_secret, workload_cert_secret};

fn pack<M: prost::Message + prost::Name>(m: &M) -> Any {
    Any {
        type_url: M::type_url(),
        value: m.encode_to_vec(),
    }
}

/// A mesh CA for tests (trust domain `cluster.local`).
pub fn test_ca() -> CertificateAuthority {
    let options = RootOptions::new(TrustDomain::new("cluster.local").expect("trust domain"));
    CertificateAuthority::new_self_signed(
        &options,
        SystemTime::now(),
        Arc::new(SystemRandom::new()),
    )
    .expect("self-signed test CA")
}

/// A workload identity on disk: PEM files plus one file-SDS file per secret.
pub struct Identity {
    pub dir: PathBuf,
    pub spiffe_id: String,
}

impl Identity {
    /// Issues `spiffe://cluster.local/ns/<ns>/sa/<sa>` and writes it under `dir`.
    pub fn issue(ca: &CertificateAuthority, dir: &Path, namespace: &str, sa: &str) -> Identity {
        Self::issue_at(ca, dir, dir, namespace, sa)
    }

    /// Like [`Identity::issue`], writing under `base/<relative>` with the SDS files
    /// naming the PEM files by the relative path (for golden bootstraps validated in `base`).
    pub fn issue_with_relative_sds(
        ca: &CertificateAuthority,
        base: &Path,
        relative: &str,
        namespace: &str,
        sa: &str,
    ) -> Identity {
        Self::issue_at(ca, &base.join(relative), Path::new(relative), namespace, sa)
    }

    fn issue_at(
        ca: &CertificateAuthority,
        dir: &Path,
        named_as: &Path,
        namespace: &str,
        sa: &str,
    ) -> Identity {
        std::fs::create_dir_all(dir).expect("identity dir");
        let issued = ca
            .issue_for_service_account(namespace, sa, Duration::from_secs(3600), SystemTime::now())
            .expect("issue workload certificate");
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        std::fs::write(file("cert-chain.pem"), &issued.cert_chain_pem).expect("write cert");
        std::fs::write(file("key.pem"), issued.key_pem.expose()).expect("write key");
        std::fs::write(file("root-cert.pem"), &issued.root_cert_pem).expect("write root");
        let named = |name: &str| named_as.join(name).to_string_lossy().into_owned();
        let cert = workload_cert_secret(&named("cert-chain.pem"), &named("key.pem"), None);
        let root = trust_bundle_secret(&named("root-cert.pem"), None);
        write_sds_file(&file("sds-cert.yaml"), &cert);
        write_sds_file(&file("sds-root.yaml"), &root);
        Identity {
            dir: dir.to_path_buf(),
            spiffe_id: format!("spiffe://cluster.local/ns/{namespace}/sa/{sa}"),
        }
    }

    /// File-based SDS pointing at this identity's SDS files.
    pub fn sds(&self) -> SdsSource {
        SdsSource::Files {
            workload_cert_file: self
                .dir
                .join("sds-cert.yaml")
                .to_string_lossy()
                .into_owned(),
            trust_bundle_file: self
                .dir
                .join("sds-root.yaml")
                .to_string_lossy()
                .into_owned(),
            watched_directory: None,
        }
    }
}

/// File SDS naming `<dir>/sds-cert.yaml` and `<dir>/sds-root.yaml` by the relative
/// path `dir`, as [`Identity::issue_with_relative_sds`] writes them (golden bootstraps).
pub fn relative_file_sds(dir: &str) -> SdsSource {
    SdsSource::Files {
        workload_cert_file: format!("{dir}/sds-cert.yaml"),
        trust_bundle_file: format!("{dir}/sds-root.yaml"),
        watched_directory: None,
    }
}

/// Writes a file-SDS discovery file holding one Secret.
pub fn write_sds_file(
    path: &str,
    secret: &envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::Secret,
) {
    let mut json = trellis_envoy_json::to_json(secret).expect("secret as JSON");
    json.as_object_mut().expect("secret object").insert(
        "@type".into(),
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.Secret".into(),
    );
    let doc = serde_json::json!({ "resources": [json] });
    std::fs::write(path, trellis_envoy_json::json_to_yaml(&doc).expect("yaml"))
        .expect("write sds file");
}

pub fn socket_address(addr: SocketAddr) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: addr.ip().to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                addr.port(),
            ))),
            ..Default::default()
        })),
    }
}

/// A STATIC cluster with one endpoint per address.
pub fn static_cluster(
    name: &str,
    endpoints: &[SocketAddr],
    tls: Option<TransportSocket>,
) -> Cluster {
    Cluster {
        name: name.to_string(),
        connect_timeout: Some(envoy_types::pb::google::protobuf::Duration {
            seconds: 2,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Static as i32,
        )),
        load_assignment: Some(ClusterLoadAssignment {
            cluster_name: name.to_string(),
            endpoints: vec![LocalityLbEndpoints {
                lb_endpoints: endpoints
                    .iter()
                    .map(|a| LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(socket_address(*a)),
                            ..Default::default()
                        })),
                        ..Default::default()
                    })
                    .collect(),
                ..Default::default()
            }],
            ..Default::default()
        }),
        transport_socket: tls,
        ..Default::default()
    }
}

/// A catch-all route to `cluster`.
pub fn route_to(cluster: &str) -> Route {
    Route {
        r#match: Some(RouteMatch {
            path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        action: Some(route::Action::Route(RouteAction {
            cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(cluster.into())),
            ..Default::default()
        })),
        ..Default::default()
    }
}

/// A virtual host answering `domains` with `routes`.
pub fn vhost(name: &str, domains: &[&str], routes: Vec<Route>) -> VirtualHost {
    VirtualHost {
        name: name.to_string(),
        domains: domains.iter().map(|d| d.to_string()).collect(),
        routes,
        ..Default::default()
    }
}

/// An HTTP connection manager with an inline route table; `filters` run before the router.
/// With `xfcc`, the app gets `x-forwarded-client-cert` with the peer's URI (mesh inbound).
pub fn http_connection_manager(
    stat_prefix: &str,
    vhosts: Vec<VirtualHost>,
    filters: Vec<HttpFilter>,
    xfcc: bool,
) -> Filter {
    let mut http_filters = filters;
    http_filters.push(HttpFilter {
        name: "envoy.filters.http.router".into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(pack(
            &Router::default(),
        ))),
        ..Default::default()
    });
    let mut hcm = HttpConnectionManager {
        stat_prefix: stat_prefix.to_string(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::RouteConfig(
            RouteConfiguration {
                name: stat_prefix.to_string(),
                virtual_hosts: vhosts,
                ..Default::default()
            },
        )),
        http_filters,
        ..Default::default()
    };
    if xfcc {
        hcm.forward_client_cert_details =
            http_connection_manager::ForwardClientCertDetails::SanitizeSet as i32;
        hcm.set_current_client_cert_details =
            Some(http_connection_manager::SetCurrentClientCertDetails {
                uri: true,
                ..Default::default()
            });
    }
    Filter {
        name: "envoy.filters.network.http_connection_manager".into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&hcm))),
    }
}

/// A TCP proxy to `cluster` (for TCP services).
pub fn tcp_proxy(stat_prefix: &str, cluster: &str) -> Filter {
    let proxy = TcpProxy {
        stat_prefix: stat_prefix.to_string(),
        cluster_specifier: Some(tcp_proxy::ClusterSpecifier::Cluster(cluster.to_string())),
        ..Default::default()
    };
    Filter {
        name: "envoy.filters.network.tcp_proxy".into(),
        config_type: Some(filter::ConfigType::TypedConfig(pack(&proxy))),
    }
}

/// A listener on `addr`.
pub fn listener(
    name: &str,
    addr: SocketAddr,
    filter_chains: Vec<FilterChain>,
    listener_filters: Vec<ListenerFilter>,
) -> Listener {
    Listener {
        name: name.to_string(),
        address: Some(socket_address(addr)),
        filter_chains,
        listener_filters,
        ..Default::default()
    }
}

/// The runtime every Trellis bootstrap has (the RE2 program size limit raised,
/// the admin layer kept), so these tests run Envoy as it runs in the mesh.
fn runtime_layers() -> LayeredRuntime {
    use envoy_types::pb::envoy::config::bootstrap::v3::runtime_layer::{
        AdminLayer, LayerSpecifier,
    };
    use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
    use trellis_translate::security::matchers::{RE2_MAX_PROGRAM_SIZE, RE2_MAX_PROGRAM_SIZE_KEY};
    let limit = Value {
        kind: Some(Kind::NumberValue(f64::from(RE2_MAX_PROGRAM_SIZE))),
    };
    LayeredRuntime {
        layers: vec![
            RuntimeLayer {
                name: "trellis".into(),
                layer_specifier: Some(LayerSpecifier::StaticLayer(Struct {
                    fields: [(RE2_MAX_PROGRAM_SIZE_KEY.to_string(), limit)].into(),
                })),
            },
            RuntimeLayer {
                name: "admin".into(),
                layer_specifier: Some(LayerSpecifier::AdminLayer(AdminLayer {})),
            },
        ],
    }
}

/// A static bootstrap (no admin section: the harness adds it) as YAML.
pub fn bootstrap_yaml(node_id: &str, listeners: Vec<Listener>, clusters: Vec<Cluster>) -> String {
    let bootstrap = Bootstrap {
        node: Some(Node {
            id: node_id.to_string(),
            cluster: node_id.to_string(),
            ..Default::default()
        }),
        static_resources: Some(StaticResources {
            listeners,
            clusters,
            ..Default::default()
        }),
        layered_runtime: Some(runtime_layers()),
        ..Default::default()
    };
    trellis_envoy_json::to_yaml_string(&bootstrap).expect("bootstrap as YAML")
}
