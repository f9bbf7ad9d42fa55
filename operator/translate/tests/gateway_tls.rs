//! Gateway servers that terminate TLS beyond SIMPLE and MUTUAL: ISTIO_MUTUAL
//! (the gateway's own mesh identity), OPTIONAL_MUTUAL, and TLS servers that
//! terminate and then carry the bytes by their `tcp` routes; asserted on the
//! Envoy structs.
mod fixture;

use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::listener::v3::{FilterChain, Listener};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    DownstreamTlsContext, common_tls_context::ValidationContextType,
};
use fixture::*;
use prost::Message;
use trellis_api::networking::Gateway;
use trellis_model::Resource;
use trellis_translate::{Proxy, ProxyResources, SecretRef, Translator};

fn gateway(yaml: &str) -> Resource {
    let gw: Gateway = from_yaml(yaml);
    Resource::Gateway(Box::new(gw))
}

/// The shop mesh, its ingress workload, a Gateway `edge` with `servers`
/// (YAML list items) and `more` objects.
fn gateway_proxy(servers: &str, more: Vec<Resource>) -> ProxyResources {
    let mut r = base_resources();
    r.push(workload(
        "shop",
        "ingress-1",
        "127.0.0.20",
        &[("istio", "ingressgateway")],
    ));
    r.push(gateway(&format!(
        "metadata: {{name: edge, namespace: shop}}\nspec:\n  selector: {{istio: ingressgateway}}\n  servers:\n{servers}"
    )));
    r.extend(more);
    let model = model_of(r);
    Translator::new(&model, explicit_options()).translate(&Proxy::gateway("shop", "ingress-1"))
}

fn chain<'a>(l: &'a Listener, name: &str) -> &'a FilterChain {
    l.filter_chains
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no chain {name} in {:?}",
                l.filter_chains.iter().map(|c| &c.name).collect::<Vec<_>>()
            )
        })
}

fn tls_of(c: &FilterChain) -> DownstreamTlsContext {
    let Some(ConfigType::TypedConfig(any)) = &c.transport_socket.as_ref().unwrap().config_type
    else {
        panic!("typed config expected");
    };
    DownstreamTlsContext::decode(any.value.as_slice()).unwrap()
}

fn server_names(c: &FilterChain) -> Vec<String> {
    c.filter_chain_match
        .as_ref()
        .map(|m| m.server_names.clone())
        .unwrap_or_default()
}

fn filter_names(c: &FilterChain) -> Vec<&str> {
    c.filters.iter().map(|f| f.name.as_str()).collect()
}

const HTTP_VS: &str = r#"
metadata: {name: mesh-api, namespace: shop}
spec:
  hosts: [api.example.com]
  gateways: [edge]
  http:
  - route: [{destination: {host: web}}]
"#;

/// ISTIO_MUTUAL on HTTPS: the gateway presents its own workload certificate
/// (`default`) and requires a client certificate from the mesh root
/// (`ROOTCA`), as a sidecar's inbound mTLS does; no credential is asked for.
#[test]
fn istio_mutual_https_presents_the_workload_identity_and_requires_a_mesh_client() {
    let out = gateway_proxy(
        "  - port: {number: 443, name: https-mesh, protocol: HTTPS}\n    hosts: [api.example.com]\n    tls: {mode: ISTIO_MUTUAL}\n",
        vec![vs(HTTP_VS)],
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let c = chain(
        listener(&out, "127.0.0.20_8443"),
        "https.443.https-mesh.edge.shop",
    );
    assert_eq!(server_names(c), ["api.example.com"]);
    assert_eq!(
        filter_names(c),
        ["envoy.filters.network.http_connection_manager"]
    );
    let tls = tls_of(c);
    assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
    let common = tls.common_tls_context.unwrap();
    let certs: Vec<&str> = (common.tls_certificate_sds_secret_configs.iter())
        .map(|s| s.name.as_str())
        .collect();
    assert_eq!(certs, ["default"]);
    let Some(ValidationContextType::CombinedValidationContext(v)) = common.validation_context_type
    else {
        panic!("the mesh root validates clients");
    };
    assert_eq!(
        v.validation_context_sds_secret_config.unwrap().name,
        "ROOTCA"
    );
    assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
    // The proxy is served its own identity and the mesh root, and no credential.
    assert!(out.secrets.contains(&SecretRef::WorkloadCertificate));
    assert!(out.secrets.contains(&SecretRef::TrustBundle));
    assert!(
        !(out.secrets.iter()).any(|s| matches!(s, SecretRef::Credential { .. })),
        "{:?}",
        out.secrets
    );
    let mut sorted = out.secrets.clone();
    sorted.dedup();
    assert_eq!(sorted, out.secrets, "secrets are listed once");
    assert!(
        out.routes
            .iter()
            .any(|r| r.name() == "https.443.https-mesh.edge.shop")
    );
}

/// OPTIONAL_MUTUAL: the client CA checks a certificate the client presents,
/// and none is required.
#[test]
fn optional_mutual_https_checks_but_does_not_require_client_certificates() {
    let out = gateway_proxy(
        "  - port: {number: 443, name: https-opt, protocol: HTTPS}\n    hosts: [api.example.com]\n    tls: {mode: OPTIONAL_MUTUAL, credentialName: api-cert}\n",
        vec![vs(HTTP_VS)],
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let tls = tls_of(chain(
        listener(&out, "127.0.0.20_8443"),
        "https.443.https-opt.edge.shop",
    ));
    assert_ne!(tls.require_client_certificate.map(|b| b.value), Some(true));
    let Some(ValidationContextType::ValidationContextSdsSecretConfig(ca)) =
        tls.common_tls_context.unwrap().validation_context_type
    else {
        panic!("the client CA validates presented certificates");
    };
    assert_eq!(ca.name, "kubernetes://shop/api-cert-cacert");
    let creds: Vec<String> = (out.secrets.iter())
        .filter(|s| matches!(s, SecretRef::Credential { .. }))
        .map(SecretRef::sds_name)
        .collect();
    assert_eq!(
        creds,
        [
            "kubernetes://shop/api-cert",
            "kubernetes://shop/api-cert-cacert"
        ]
    );
}

const TCP_VS: &str = r#"
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.example.com, cart.example.com, admin.example.com]
  gateways: [edge]
  tcp:
  - match: [{port: 9999}]
    route: [{destination: {host: web}}]
  - route: [{destination: {host: db}}]
"#;

/// TLS servers that terminate: one chain per server, selected by the
/// server's hosts as SNI, TLS terminated with the server's settings, then the
/// bytes carried by the first `tcp` route bound to the server (no HTTP, no
/// route configuration). A server without a `tcp` route gets no chain.
#[test]
fn tls_servers_terminate_and_carry_tcp_by_their_tcp_routes() {
    let servers = "  - port: {number: 443, name: tls-db, protocol: TLS}\n    hosts: [db.example.com]\n    tls: {mode: SIMPLE, credentialName: db-cert, minProtocolVersion: TLSV1_3}\n\
                   \x20 - port: {number: 443, name: tls-cart, protocol: TLS}\n    hosts: [cart.example.com]\n    tls: {mode: ISTIO_MUTUAL}\n\
                   \x20 - port: {number: 443, name: tls-admin, protocol: TLS}\n    hosts: [admin.example.com]\n    tls: {mode: MUTUAL, credentialName: admin-cert}\n\
                   \x20 - port: {number: 443, name: tls-none, protocol: TLS}\n    hosts: [none.example.com]\n    tls: {mode: SIMPLE, credentialName: none-cert}\n\
                   \x20 - port: {number: 443, name: https-api, protocol: HTTPS}\n    hosts: [api.example.com]\n    tls: {mode: SIMPLE, credentialName: api-cert}\n";
    let out = gateway_proxy(servers, vec![vs(TCP_VS), vs(HTTP_VS)]);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let l = listener(&out, "127.0.0.20_8443");
    let names: Vec<&str> = l.filter_chains.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "tls.443.tls-db.edge.shop",
            "tls.443.tls-cart.edge.shop",
            "tls.443.tls-admin.edge.shop",
            "https.443.https-api.edge.shop"
        ],
        "none.example.com has no tcp route: no chain"
    );
    assert!(
        !l.listener_filters.is_empty(),
        "the TLS inspector reads SNI"
    );
    let db = chain(l, "tls.443.tls-db.edge.shop");
    assert_eq!(server_names(db), ["db.example.com"]);
    assert_eq!(filter_names(db), ["envoy.filters.network.tcp_proxy"]);
    assert_eq!(
        proxied_to(chain_tcp_proxy(db)),
        [("outbound|5432||db.shop.svc.cluster.local".to_string(), 100)]
    );
    let tls = tls_of(db);
    assert_eq!(tls.require_client_certificate, None);
    let common = tls.common_tls_context.unwrap();
    assert_eq!(
        common.tls_certificate_sds_secret_configs[0].name,
        "kubernetes://shop/db-cert"
    );
    assert!(common.validation_context_type.is_none(), "SIMPLE");
    assert!(
        common.alpn_protocols.is_empty(),
        "no HTTP ALPN in front of a TCP backend"
    );
    assert_eq!(common.tls_params.unwrap().tls_minimum_protocol_version, 4);

    let cart = chain(l, "tls.443.tls-cart.edge.shop");
    assert_eq!(server_names(cart), ["cart.example.com"]);
    assert_eq!(
        proxied_to(chain_tcp_proxy(cart)),
        [("outbound|5432||db.shop.svc.cluster.local".to_string(), 100)]
    );
    let tls = tls_of(cart);
    assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
    let common = tls.common_tls_context.unwrap();
    assert_eq!(common.tls_certificate_sds_secret_configs[0].name, "default");

    let admin = tls_of(chain(l, "tls.443.tls-admin.edge.shop"));
    assert_eq!(
        admin.require_client_certificate.map(|b| b.value),
        Some(true)
    );
    let Some(ValidationContextType::ValidationContextSdsSecretConfig(ca)) =
        admin.common_tls_context.unwrap().validation_context_type
    else {
        panic!("MUTUAL checks clients against the credential's CA");
    };
    assert_eq!(ca.name, "kubernetes://shop/admin-cert-cacert");

    // Only the HTTPS server has a route configuration.
    let routes: Vec<&str> = out.routes.iter().map(|r| r.name()).collect();
    assert_eq!(routes, ["https.443.https-api.edge.shop"]);
    // none-cert is not referenced: its server has no chain.
    let creds: Vec<String> = (out.secrets.iter())
        .filter(|s| matches!(s, SecretRef::Credential { .. }))
        .map(SecretRef::sds_name)
        .collect();
    assert_eq!(
        creds,
        [
            "kubernetes://shop/admin-cert",
            "kubernetes://shop/admin-cert-cacert",
            "kubernetes://shop/api-cert",
            "kubernetes://shop/db-cert"
        ]
    );
}

/// A TLS server with the host `*` takes any SNI (a chain without names),
/// and a TLS server without settings is reported on its `tls` field.
#[test]
fn tls_server_for_any_host_and_without_settings() {
    let servers = "  - port: {number: 443, name: tls-any, protocol: TLS}\n    hosts: [\"*\"]\n    tls: {mode: SIMPLE, serverCertificate: /etc/gw/cert.pem, privateKey: /etc/gw/key.pem}\n\
                   \x20 - port: {number: 9443, name: tls-bare, protocol: TLS}\n    hosts: [db.example.com]\n";
    let out = gateway_proxy(servers, vec![vs(TCP_VS)]);
    let paths: Vec<(&str, &str)> = (out.errors.iter())
        .map(|e| (e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(paths, [("edge", "spec.servers[1].tls")]);
    let l = listener(&out, "127.0.0.20_8443");
    assert_eq!(l.filter_chains.len(), 1);
    let c = &l.filter_chains[0];
    assert!(c.filter_chain_match.is_none(), "any SNI");
    assert!(l.listener_filters.is_empty(), "no SNI to read");
    assert!(format!("{:?}", tls_of(c)).contains("/etc/gw/cert.pem"));
    assert_eq!(
        proxied_to(chain_tcp_proxy(c)),
        [("outbound|5432||db.shop.svc.cluster.local".to_string(), 100)]
    );
}
