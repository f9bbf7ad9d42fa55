use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, SocketAddress, TransportSocket, socket_address, transport_socket,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, SdsSecretConfig, UpstreamTlsContext,
};
use envoy_types::pb::google::protobuf::Duration;
use proptest::prelude::*;

use super::*;

fn cluster_with_tls() -> Cluster {
    let tls = UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificate_sds_secret_configs: vec![SdsSecretConfig {
                name: "default".into(),
                sds_config: None,
            }],
            ..Default::default()
        }),
        sni: "outbound_.80_._.cart.shop.svc.cluster.local".into(),
        ..Default::default()
    };
    Cluster {
        name: "outbound|80||cart.shop.svc.cluster.local".into(),
        connect_timeout: Some(Duration {
            seconds: 1,
            nanos: 500_000_000,
        }),
        cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(
            cluster::DiscoveryType::Eds as i32,
        )),
        transport_socket: Some(TransportSocket {
            name: "envoy.transport_sockets.tls".into(),
            config_type: Some(transport_socket::ConfigType::TypedConfig(
                envoy_types::pb::google::protobuf::Any {
                    type_url: "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext".into(),
                    value: tls.encode_to_vec(),
                },
            )),
        }),
        ..Default::default()
    }
}

#[test]
fn cluster_with_any_transcodes_with_type_and_snake_case() {
    let json = to_json(&cluster_with_tls()).unwrap();
    assert_eq!(json["name"], "outbound|80||cart.shop.svc.cluster.local");
    assert_eq!(json["connect_timeout"], "1.500s");
    assert_eq!(json["type"], "EDS");
    let typed = &json["transport_socket"]["typed_config"];
    assert_eq!(
        typed["@type"],
        "type.googleapis.com/envoy.extensions.transport_sockets.tls.v3.UpstreamTlsContext"
    );
    assert_eq!(
        typed["common_tls_context"]["tls_certificate_sds_secret_configs"][0]["name"],
        "default"
    );
    // default-valued fields are left out
    assert!(json.get("per_connection_buffer_limit_bytes").is_none());
}

#[test]
fn yaml_output_round_trips_to_same_json() {
    let cluster = cluster_with_tls();
    let yaml = to_yaml_string(&cluster).unwrap();
    let back: serde_json::Value = serde_yaml::from_str(&yaml).unwrap();
    assert_eq!(back, to_json(&cluster).unwrap());
}

#[test]
fn socket_address_port_is_a_number() {
    let addr = Address {
        address: Some(
            envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                SocketAddress {
                    address: "127.0.0.1".into(),
                    port_specifier: Some(socket_address::PortSpecifier::PortValue(8080)),
                    ..Default::default()
                },
            ),
        ),
    };
    let json = to_json(&addr).unwrap();
    assert_eq!(json["socket_address"]["port_value"], 8080);
}

#[test]
fn unknown_type_and_bad_bytes_are_errors() {
    assert!(matches!(
        bytes_to_json("no.such.Type", &[]),
        Err(EnvoyJsonError::UnknownType(_))
    ));
    assert!(matches!(
        bytes_to_json(
            "type.googleapis.com/envoy.config.cluster.v3.Cluster",
            &[0xff, 0xff, 0xff]
        ),
        Err(EnvoyJsonError::Decode { .. })
    ));
}

#[test]
fn every_resource_type_the_translator_emits_is_known() {
    let pool = descriptor_pool().unwrap();
    for name in [
        "envoy.config.bootstrap.v3.Bootstrap",
        "envoy.config.listener.v3.Listener",
        "envoy.config.route.v3.RouteConfiguration",
        "envoy.config.endpoint.v3.ClusterLoadAssignment",
        "envoy.extensions.transport_sockets.tls.v3.Secret",
        "envoy.extensions.transport_sockets.tls.v3.DownstreamTlsContext",
        "envoy.extensions.filters.http.rbac.v3.RBAC",
        "envoy.extensions.filters.http.ext_authz.v3.ExtAuthz",
        "envoy.extensions.filters.network.ext_authz.v3.ExtAuthz",
        "envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication",
        "envoy.extensions.filters.http.fault.v3.HTTPFault",
        "envoy.extensions.filters.http.cors.v3.Cors",
        "envoy.extensions.filters.http.router.v3.Router",
        "envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager",
        "envoy.extensions.filters.network.tcp_proxy.v3.TcpProxy",
        "envoy.extensions.filters.listener.tls_inspector.v3.TlsInspector",
        "envoy.extensions.filters.listener.original_dst.v3.OriginalDst",
        "envoy.service.discovery.v3.DiscoveryResponse",
    ] {
        assert!(pool.get_message_by_name(name).is_some(), "{name} missing");
    }
}

proptest! {
    // Arbitrary bytes never panic: they decode to JSON or give an error.
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
        let _ = bytes_to_json("envoy.config.cluster.v3.Cluster", &bytes);
        let _ = bytes_to_json("envoy.config.listener.v3.Listener", &bytes);
    }
}
