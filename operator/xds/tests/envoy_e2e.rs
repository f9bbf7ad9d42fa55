//! Real Envoy 1.40 over ADS with mTLS: initial config serves traffic, an update changes
//! the response without a restart and is ACKed, an invalid listener is NACKed and Envoy
//! keeps serving its last good config.
#[path = "support/envoy.rs"]
mod envoy;
mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use envoy::{Envoy, Upstream, free_port, http_get};
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, AggregatedConfigSource, ApiVersion, ConfigSource, HeaderValue, HeaderValueOption,
    SocketAddress, address, config_source, socket_address,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::listener::v3::{Filter, FilterChain, Listener, filter};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route, route_action,
    route_match,
};
use envoy_types::pb::envoy::extensions::filters::http::router::v3::Router;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpConnectionManager, HttpFilter, Rds, http_connection_manager, http_filter,
};
use envoy_types::pb::google::protobuf::Duration as PbDuration;
use envoy_types::util::pack_any;
use support::*;
use trellis_xds::{
    ProxyId, ProxyKind, PushScope, ResourceCache, ResourceType, Snapshot, XdsConfig,
};

#[derive(Clone)]
struct Desired {
    listen_port: u16,
    listen_ip: String,
    upstream: std::net::SocketAddr,
    route_version: String,
}

fn ads() -> ConfigSource {
    ConfigSource {
        resource_api_version: ApiVersion::V3 as i32,
        config_source_specifier: Some(config_source::ConfigSourceSpecifier::Ads(
            AggregatedConfigSource {},
        )),
        ..Default::default()
    }
}

fn socket(ip: &str, port: u16) -> Address {
    Address {
        address: Some(address::Address::SocketAddress(SocketAddress {
            address: ip.to_string(),
            port_specifier: Some(socket_address::PortSpecifier::PortValue(port.into())),
            ..Default::default()
        })),
    }
}

fn build(d: &Desired, cache: &ResourceCache) -> Snapshot {
    let hcm = HttpConnectionManager {
        stat_prefix: "ingress".into(),
        route_specifier: Some(http_connection_manager::RouteSpecifier::Rds(Rds {
            config_source: Some(ads()),
            route_config_name: "local_route".into(),
        })),
        http_filters: vec![HttpFilter {
            name: "envoy.filters.http.router".into(),
            config_type: Some(http_filter::ConfigType::TypedConfig(pack_any(
                Router::default(),
            ))),
            ..Default::default()
        }],
        ..Default::default()
    };
    let listener = Listener {
        name: "ingress".into(),
        address: Some(socket(&d.listen_ip, d.listen_port)),
        filter_chains: vec![FilterChain {
            filters: vec![Filter {
                name: "envoy.filters.network.http_connection_manager".into(),
                config_type: Some(filter::ConfigType::TypedConfig(pack_any(hcm))),
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let routes = RouteConfiguration {
        name: "local_route".into(),
        virtual_hosts: vec![VirtualHost {
            name: "all".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                r#match: Some(RouteMatch {
                    path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
                    ..Default::default()
                }),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        "backend".into(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            response_headers_to_add: vec![HeaderValueOption {
                header: Some(HeaderValue {
                    key: "x-route-version".into(),
                    value: d.route_version.clone(),
                    ..Default::default()
                }),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let cluster = Cluster {
        name: "backend".into(),
        connect_timeout: Some(PbDuration {
            seconds: 1,
            nanos: 0,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        eds_cluster_config: Some(cluster::EdsClusterConfig {
            eds_config: Some(ads()),
            service_name: String::new(),
        }),
        ..Default::default()
    };
    let endpoints = ClusterLoadAssignment {
        cluster_name: "backend".into(),
        endpoints: vec![LocalityLbEndpoints {
            lb_endpoints: vec![LbEndpoint {
                host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                    address: Some(socket(&d.upstream.ip().to_string(), d.upstream.port())),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let mut b = Snapshot::builder();
    b.add("ingress", pack_any(listener)).unwrap();
    b.add("local_route", pack_any(routes)).unwrap();
    b.add("backend", pack_any(cluster)).unwrap();
    b.add("backend", pack_any(endpoints)).unwrap();
    b.build(cache)
}

fn bootstrap(
    proxy: &ProxyId,
    xds_port: u16,
    dir: &std::path::Path,
    cert: &Pem,
    root: &str,
) -> String {
    let write = |name: &str, content: &str| {
        let path = dir.join(name);
        std::fs::write(&path, content).unwrap();
        path.display().to_string()
    };
    let (cert_file, key_file, ca_file) = (
        write("cert.pem", &cert.cert),
        write("key.pem", &cert.key),
        write("root.pem", root),
    );
    format!(
        r#"
node:
  id: "{node_id}"
  cluster: "{name}.{ns}"
  metadata: {{SERVICE_ACCOUNT: "{sa}"}}
dynamic_resources:
  ads_config:
    api_type: GRPC
    transport_api_version: V3
    grpc_services: [{{envoy_grpc: {{cluster_name: xds}}}}]
  cds_config: {{ads: {{}}, resource_api_version: V3}}
  lds_config: {{ads: {{}}, resource_api_version: V3}}
static_resources:
  clusters:
  - name: xds
    type: STATIC
    connect_timeout: 1s
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        explicit_http_config: {{http2_protocol_options: {{}}}}
    load_assignment:
      cluster_name: xds
      endpoints: [{{lb_endpoints: [{{endpoint: {{address: {{socket_address: {{address: 127.0.0.1, port_value: {xds_port}}}}}}}}}]}}]
    transport_socket:
      name: envoy.transport_sockets.tls
      typed_config:
        "@type": type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext
        sni: {SERVER_NAME}
        common_tls_context:
          alpn_protocols: [h2]
          tls_certificates: [{{certificate_chain: {{filename: "{cert_file}"}}, private_key: {{filename: "{key_file}"}}}}]
          validation_context:
            trusted_ca: {{filename: "{ca_file}"}}
            match_typed_subject_alt_names:
            - san_type: URI
              matcher: {{exact: "spiffe://{TRUST_DOMAIN}/ns/trellis-system/sa/trellis"}}
"#,
        node_id = proxy.node_id("127.0.0.1", "cluster.local"),
        name = proxy.name,
        ns = proxy.namespace,
        sa = proxy.service_account,
    )
}

fn header<'a>(headers: &'a [(String, String)], name: &str) -> Option<&'a str> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.as_str())
}

fn uptime(envoy: &Envoy) -> u64 {
    let info: serde_json::Value = serde_json::from_str(&envoy.admin_get("/server_info")).unwrap();
    // e.g. "12s"
    let text = info["uptime_all_epochs"]
        .as_str()
        .expect("uptime_all_epochs in /server_info");
    text.trim_end_matches('s').parse().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn envoy_follows_updates_without_restart_and_a_nack_keeps_the_last_good_config() {
    let ca = TestCa::new("mesh root");
    let a = Upstream::start([127, 0, 0, 2], "upstream-a");
    let b = Upstream::start([127, 0, 0, 3], "upstream-b");
    let listen_port = free_port();
    let desired = Arc::new(Mutex::new(Desired {
        listen_port,
        listen_ip: "127.0.0.1".into(),
        upstream: a.addr,
        route_version: "g1".into(),
    }));
    let cache = Arc::new(ResourceCache::new());
    let source = {
        let desired = desired.clone();
        move |_: &ProxyId| Ok(build(&desired.lock().unwrap(), &cache))
    };
    let running = start(&ca, XdsConfig::new(TRUST_DOMAIN), Arc::new(source)).await;
    let proxy = ProxyId::new(ProxyKind::Sidecar, "shop", "web-1", "web");
    let dir = tempfile::tempdir().unwrap();
    let cert = ca.workload("shop", "web");
    let config = bootstrap(&proxy, running.addr.port(), dir.path(), &cert, &ca.root_pem);
    let server = running.server.clone();

    tokio::task::spawn_blocking(move || {
        let listener: std::net::SocketAddr = ([127, 0, 0, 1], listen_port).into();
        let mut envoy = Envoy::start(&config, dir.path());
        let limit = Duration::from_secs(30);
        let get = || http_get(listener, "/", "shop.example").ok();

        // Initial config: traffic reaches upstream A, and every type is ACKed.
        envoy.wait_for("traffic to upstream A", limit, |_| {
            get().filter(|(s, _, body)| *s == 200 && body == "upstream-a")
        });
        envoy.wait_for("all types ACKed", limit, |_| {
            server.proxy_status(&proxy).filter(|s| {
                s.in_sync()
                    && ResourceType::ALL[..4]
                        .iter()
                        .all(|t| s.get(*t).last_sent.is_some())
            })
        });
        let uptime_before = uptime(&envoy);
        let cds_before = envoy.stat("cluster_manager.cds.update_success");

        // Update endpoints and routes: the response changes, Envoy is the same process.
        {
            let mut d = desired.lock().unwrap();
            d.upstream = b.addr;
            d.route_version = "g2".into();
        }
        server.push(PushScope::All);
        let (_, headers, _) = envoy.wait_for("traffic to upstream B with route g2", limit, |_| {
            get().filter(|(s, h, body)| {
                *s == 200 && body == "upstream-b" && header(h, "x-route-version") == Some("g2")
            })
        });
        assert_eq!(header(&headers, "x-route-version"), Some("g2"));
        let status = envoy.wait_for("update ACKed", limit, |_| {
            server.proxy_status(&proxy).filter(|s| s.in_sync())
        });
        let eds = status.get(ResourceType::Endpoint);
        assert_eq!(
            eds.acked_version,
            eds.last_sent.as_ref().map(|s| s.version.clone())
        );
        assert!(envoy.still_running());
        assert!(uptime(&envoy) >= uptime_before, "envoy restarted");
        assert_eq!(
            envoy.stat("cluster_manager.cds.update_success"),
            cds_before,
            "clusters unchanged, no CDS push"
        );
        assert!(
            envoy.stat("cluster.backend.update_success") >= 2,
            "EDS update applied"
        );
        assert_eq!(envoy.stat("control_plane.connected_state"), 1);
        let lds_acked = status
            .get(ResourceType::Listener)
            .acked_version
            .clone()
            .unwrap();
        let dump = envoy.admin_get("/config_dump?resource=dynamic_listeners");
        assert!(
            dump.contains(&lds_acked),
            "Envoy's listener version is the ACKed one ({lds_acked})"
        );

        // An invalid listener is NACKed; Envoy keeps serving the last good config.
        desired.lock().unwrap().listen_ip = "not-an-ip".into();
        server.push(PushScope::All);
        let status = envoy.wait_for("listener NACK recorded", limit, |_| {
            server
                .proxy_status(&proxy)
                .filter(|s| s.get(ResourceType::Listener).rejected())
        });
        let lds = status.get(ResourceType::Listener);
        let nack = lds.last_nack.as_ref().unwrap();
        assert_eq!(nack.resource_names, ["ingress"]);
        assert_eq!(nack.type_url, ResourceType::Listener.type_url());
        assert!(
            nack.message.contains("not-an-ip"),
            "NACK message: {}",
            nack.message
        );
        assert_eq!(
            lds.acked_version.as_deref(),
            Some(lds_acked.as_str()),
            "last good version kept"
        );
        assert!(!status.in_sync());
        assert_eq!(status.nacks().len(), 1);
        assert!(envoy.stat("listener_manager.lds.update_rejected") >= 1);
        let (code, _, body) = get().expect("listener still serving");
        assert_eq!((code, body.as_str()), (200, "upstream-b"));
        assert!(server.metrics().nacks_total >= 1);
        assert!(uptime(&envoy) >= uptime_before);
    })
    .await
    .unwrap();
}
