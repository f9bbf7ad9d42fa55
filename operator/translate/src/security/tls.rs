//! Mesh mTLS transport sockets between sidecars.
//!
//! Client side verifies the server's URI SAN against the SPIFFE ids behind the
//! destination service; server side requires a client certificate signed by the
//! trust bundle (who may call is RBAC's job, not the handshake's).
use envoy_types::pb::envoy::config::cluster::v3::cluster::TransportSocketMatch;
use envoy_types::pb::envoy::config::core::v3::{
    Metadata, TransportSocket, transport_socket::ConfigType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::raw_buffer::v3::RawBuffer;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, UpstreamTlsContext,
    common_tls_context::CombinedCertificateValidationContext,
    common_tls_context::ValidationContextType, subject_alt_name_matcher::SanType,
};
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::pb::google::protobuf::{Struct, Value, value};

use super::matchers::san;
use super::pack;
use super::sds::SdsSource;

/// Name of Envoy's TLS transport socket.
pub const TLS_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.tls";

/// ALPN the mesh client offers, as Istio does, so servers can tell mesh mTLS apart.
pub const MESH_ALPN: &str = "istio";

fn common_context(sds: &SdsSource, allowed_sans: &[String]) -> CommonTlsContext {
    let validation = CertificateValidationContext {
        match_typed_subject_alt_names: allowed_sans
            .iter()
            .map(|name| san(SanType::Uri, name))
            .collect(),
        ..Default::default()
    };
    CommonTlsContext {
        tls_certificate_sds_secret_configs: vec![sds.workload_cert()],
        validation_context_type: Some(ValidationContextType::CombinedValidationContext(
            CombinedCertificateValidationContext {
                default_validation_context: Some(validation),
                validation_context_sds_secret_config: Some(sds.trust_bundle()),
                ..Default::default()
            },
        )),
        ..Default::default()
    }
}

/// Client side of mesh mTLS towards a destination whose workloads run as
/// `destination_sans` (SPIFFE URIs). The SAN list must not be empty: an empty
/// list would accept any certificate from the trust bundle.
pub fn upstream_mtls(
    sds: &SdsSource,
    sni: &str,
    destination_sans: &[String],
) -> UpstreamTlsContext {
    let mut common = common_context(sds, destination_sans);
    common.alpn_protocols = vec![MESH_ALPN.to_string()];
    UpstreamTlsContext {
        common_tls_context: Some(common),
        sni: sni.to_string(),
        ..Default::default()
    }
}

/// Server side of mesh mTLS: a client certificate from the trust bundle is required.
pub fn downstream_mtls(sds: &SdsSource) -> DownstreamTlsContext {
    let mut common = common_context(sds, &[]);
    common.alpn_protocols = vec![
        MESH_ALPN.to_string(),
        "h2".to_string(),
        "http/1.1".to_string(),
    ];
    DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: Some(BoolValue { value: true }),
        ..Default::default()
    }
}

/// `UpstreamTlsContext` as a cluster transport socket.
pub fn upstream_transport_socket(ctx: &UpstreamTlsContext) -> TransportSocket {
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack(ctx))),
    }
}

/// `DownstreamTlsContext` as a filter chain transport socket.
pub fn downstream_transport_socket(ctx: &DownstreamTlsContext) -> TransportSocket {
    TransportSocket {
        name: TLS_TRANSPORT_SOCKET.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack(ctx))),
    }
}

/// Endpoint metadata key/value marking an endpoint that has a sidecar (Istio's `tlsMode`).
pub const TLS_MODE_KEY: &str = "tlsMode";
pub const TLS_MODE_ISTIO: &str = "istio";
/// Metadata namespace Envoy reads for `transport_socket_matches`.
pub const TRANSPORT_SOCKET_MATCH: &str = "envoy.transport_socket_match";

fn tls_mode_struct() -> Struct {
    Struct {
        fields: std::collections::HashMap::from([(
            TLS_MODE_KEY.to_string(),
            Value {
                kind: Some(value::Kind::StringValue(TLS_MODE_ISTIO.to_string())),
            },
        )]),
    }
}

/// Auto mTLS for a cluster: endpoints marked with [`sidecar_endpoint_metadata`] get
/// mesh mTLS, every other endpoint plaintext (a workload without a sidecar).
pub fn auto_mtls_socket_matches(ctx: &UpstreamTlsContext) -> Vec<TransportSocketMatch> {
    vec![
        TransportSocketMatch {
            name: "tlsMode-istio".to_string(),
            r#match: Some(tls_mode_struct()),
            transport_socket: Some(upstream_transport_socket(ctx)),
        },
        TransportSocketMatch {
            name: "tlsMode-disabled".to_string(),
            r#match: Some(Struct::default()),
            transport_socket: Some(TransportSocket {
                name: RAW_BUFFER_TRANSPORT_SOCKET.to_string(),
                config_type: Some(ConfigType::TypedConfig(pack(&RawBuffer {}))),
            }),
        },
    ]
}

/// Name of Envoy's plaintext transport socket.
pub const RAW_BUFFER_TRANSPORT_SOCKET: &str = "envoy.transport_sockets.raw_buffer";

/// Metadata of an endpoint whose workload has a sidecar (selects the mTLS socket match).
pub fn sidecar_endpoint_metadata() -> Metadata {
    Metadata {
        filter_metadata: std::collections::HashMap::from([(
            TRANSPORT_SOCKET_MATCH.to_string(),
            tls_mode_struct(),
        )]),
        ..Default::default()
    }
}

/// The SPIFFE id of a service account: `spiffe://<trust-domain>/ns/<ns>/sa/<sa>`.
pub fn spiffe_id(trust_domain: &str, namespace: &str, service_account: &str) -> String {
    format!("spiffe://{trust_domain}/ns/{namespace}/sa/{service_account}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

    fn sds() -> SdsSource {
        SdsSource::Files {
            workload_cert_file: "/sds/cert.yaml".into(),
            trust_bundle_file: "/sds/root.yaml".into(),
            watched_directory: None,
        }
    }

    fn combined(common: &CommonTlsContext) -> &CombinedCertificateValidationContext {
        match common.validation_context_type.as_ref().unwrap() {
            ValidationContextType::CombinedValidationContext(c) => c,
            other => panic!("unexpected {other:?}"),
        }
    }

    #[test]
    fn upstream_checks_each_destination_san_as_uri() {
        let sans = vec![
            spiffe_id("cluster.local", "shop", "cart"),
            spiffe_id("cluster.local", "shop", "cart-v2"),
        ];
        let ctx = upstream_mtls(&sds(), "outbound_.80_._.cart.shop.svc.cluster.local", &sans);
        let common = ctx.common_tls_context.as_ref().unwrap();
        assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");
        let c = combined(common);
        assert_eq!(
            c.validation_context_sds_secret_config
                .as_ref()
                .unwrap()
                .name,
            "ROOTCA"
        );
        let matchers = &c
            .default_validation_context
            .as_ref()
            .unwrap()
            .match_typed_subject_alt_names;
        assert_eq!(matchers.len(), 2);
        assert_eq!(matchers[0].san_type, SanType::Uri as i32);
        assert_eq!(
            matchers[1].matcher.as_ref().unwrap().match_pattern,
            Some(MatchPattern::Exact(
                "spiffe://cluster.local/ns/shop/sa/cart-v2".into()
            ))
        );
        assert_eq!(ctx.sni, "outbound_.80_._.cart.shop.svc.cluster.local");
    }

    #[test]
    fn downstream_requires_client_certificate_from_bundle() {
        let ctx = downstream_mtls(&sds());
        assert_eq!(
            ctx.require_client_certificate,
            Some(BoolValue { value: true })
        );
        let common = ctx.common_tls_context.as_ref().unwrap();
        let c = combined(common);
        assert_eq!(
            c.validation_context_sds_secret_config
                .as_ref()
                .unwrap()
                .name,
            "ROOTCA"
        );
        assert!(
            c.default_validation_context
                .as_ref()
                .unwrap()
                .match_typed_subject_alt_names
                .is_empty()
        );
    }

    #[test]
    fn auto_mtls_matches_sidecar_endpoints_first_then_plaintext() {
        let ctx = upstream_mtls(&sds(), "x", &["spiffe://a".into()]);
        let matches = auto_mtls_socket_matches(&ctx);
        assert_eq!(matches.len(), 2);
        let wanted = matches[0].r#match.as_ref().unwrap();
        let meta = sidecar_endpoint_metadata();
        assert_eq!(
            meta.filter_metadata.get(TRANSPORT_SOCKET_MATCH),
            Some(wanted)
        );
        assert_eq!(
            matches[0].transport_socket.as_ref().unwrap().name,
            TLS_TRANSPORT_SOCKET
        );
        assert!(matches[1].r#match.as_ref().unwrap().fields.is_empty());
        assert_eq!(
            matches[1].transport_socket.as_ref().unwrap().name,
            RAW_BUFFER_TRANSPORT_SOCKET
        );
    }

    #[test]
    fn transport_socket_packs_the_context() {
        let ts = upstream_transport_socket(&upstream_mtls(&sds(), "x", &["spiffe://a".into()]));
        assert_eq!(ts.name, TLS_TRANSPORT_SOCKET);
        let Some(ConfigType::TypedConfig(any)) = ts.config_type else {
            panic!("typed config expected");
        };
        assert!(any.type_url.ends_with("UpstreamTlsContext"));
    }
}
