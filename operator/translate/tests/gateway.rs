//! Ingress gateway translation and the Gateway binding checks, asserted on the Envoy structs.
mod fixture;

use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, virtual_host::TlsRequirementType,
};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;
use fixture::*;
use prost::Message;
use trellis_api::networking::Gateway;
use trellis_model::Resource;
use trellis_translate::{ErrorCode, Proxy, ProxyResources, SecretRef, Translator};

pub fn gateway(yaml: &str) -> Resource {
    let gw: Gateway = from_yaml(yaml);
    Resource::Gateway(Box::new(gw))
}

pub const GATEWAY: &str = r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: shop-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 80, name: http, protocol: HTTP}
    hosts: [shop.example.com]
    tls: {httpsRedirect: true}
  - port: {number: 8081, name: http-plain, protocol: HTTP}
    hosts: ["shop/*.example.com"]
  - port: {number: 443, name: https-shop, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, credentialName: shop-cert}
  - port: {number: 443, name: https-admin, protocol: HTTPS}
    hosts: [admin.example.com]
    tls: {mode: MUTUAL, credentialName: admin-cert}
"#;

/// Bound by its short name from the Gateway's namespace.
pub const SHOP_VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: [shop.example.com, admin.example.com]
  gateways: [shop-gw]
  http:
  - match: [{uri: {prefix: /cart}}]
    route: [{destination: {host: cart}}]
  - route: [{destination: {host: web}}]
"#;

/// Bound by `ns/name` from another namespace; server 1 admits only `shop`'s VirtualServices.
const OTHER_VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: other, namespace: other}
spec:
  hosts: [other.example.com]
  gateways: [shop/shop-gw]
  http:
  - route: [{destination: {host: web.shop.svc.cluster.local}}]
"#;

const MISSING_VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: lost, namespace: shop}
spec:
  hosts: [lost.example.com]
  gateways: [mesh, nope]
  http:
  - route: [{destination: {host: web}}]
"#;

pub fn gateway_resources() -> Vec<Resource> {
    let mut r = base_resources();
    r.push(workload(
        "shop",
        "ingress-1",
        "127.0.0.20",
        &[("istio", "ingressgateway")],
    ));
    r.push(gateway(GATEWAY));
    r.push(vs(SHOP_VS));
    r
}

fn gateway_proxy(model: &trellis_model::MeshModel) -> ProxyResources {
    Translator::new(model, explicit_options()).translate(&Proxy::gateway("shop", "ingress-1"))
}

fn route_config(out: &ProxyResources, name: &str) -> RouteConfiguration {
    out.routes
        .iter()
        .find(|r| r.name() == name)
        .unwrap_or_else(|| {
            panic!(
                "no route configuration {name} in {:?}",
                out.routes.iter().map(|r| r.name()).collect::<Vec<_>>()
            )
        })
        .decode()
}

fn domains(rc: &RouteConfiguration) -> Vec<&str> {
    rc.virtual_hosts
        .iter()
        .flat_map(|v| v.domains.iter().map(String::as_str))
        .collect()
}

#[test]
fn servers_become_listeners_on_offset_ports_with_routes_per_port() {
    let model = model_of(gateway_resources());
    let out = gateway_proxy(&model);
    let names: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
    // 80 and 443 are privileged: moved by the explicit shape's offset (8000).
    assert_eq!(
        names,
        ["127.0.0.20_8080", "127.0.0.20_8081", "127.0.0.20_8443"]
    );
    // httpsRedirect: the host is served and redirected to https.
    let http = route_config(&out, "http.80");
    assert_eq!(domains(&http), ["shop.example.com"]);
    assert_eq!(
        http.virtual_hosts[0].require_tls,
        TlsRequirementType::All as i32
    );
    // The wildcard server serves both VirtualService hosts under their own names.
    let plain = route_config(&out, "http.8081");
    assert_eq!(domains(&plain), ["admin.example.com", "shop.example.com"]);
    let shop = &plain.virtual_hosts[1];
    assert_eq!(
        shop.routes.len(),
        2,
        "both http rules of the VirtualService"
    );
    assert_eq!(shop.require_tls, TlsRequirementType::None as i32);
    // One TLS filter chain per HTTPS server, picked by SNI, each with its own routes.
    let https = listener(&out, "127.0.0.20_8443");
    assert_eq!(https.filter_chains.len(), 2);
    let snis: Vec<Vec<String>> = https
        .filter_chains
        .iter()
        .map(|c| c.filter_chain_match.clone().unwrap().server_names)
        .collect();
    assert_eq!(
        snis,
        [
            vec!["shop.example.com".to_string()],
            vec!["admin.example.com".to_string()]
        ]
    );
    assert_eq!(https.listener_filters.len(), 1, "TLS inspector for SNI");
    assert_eq!(
        domains(&route_config(&out, "https.443.https-shop.shop-gw.shop")),
        ["shop.example.com"]
    );
    assert_eq!(
        domains(&route_config(&out, "https.443.https-admin.shop-gw.shop")),
        ["admin.example.com"]
    );
    // Credentials by SDS name; MUTUAL also needs the client CA.
    let creds: Vec<String> = out
        .secrets
        .iter()
        .filter(|s| matches!(s, SecretRef::Credential { .. }))
        .map(SecretRef::sds_name)
        .collect();
    assert_eq!(
        creds,
        [
            "kubernetes://shop/admin-cert",
            "kubernetes://shop/admin-cert-cacert",
            "kubernetes://shop/shop-cert"
        ]
    );
    // The gateway reaches the services through the usual outbound clusters.
    assert!(
        out.clusters
            .iter()
            .any(|c| c.name == "outbound|8080||cart.shop.svc.cluster.local")
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

#[test]
fn namespace_restricted_server_host_rejects_other_namespaces() {
    let mut r = gateway_resources();
    r.push(vs(OTHER_VS));
    let model = model_of(r);
    let out = gateway_proxy(&model);
    let e = out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::HostNotServedByGateway)
        .expect("host not served");
    assert_eq!(
        (e.kind.as_str(), e.namespace.as_str(), e.name.as_str()),
        ("VirtualService", "other", "other")
    );
    assert_eq!(e.path, "spec.hosts[0]");
    assert!(
        !domains(&route_config(&out, "http.8081")).contains(&"other.example.com"),
        "the unserved host gets no virtual host"
    );
    // The rest of the gateway is untouched.
    assert_eq!(out.listeners.len(), 3);
}

#[test]
fn missing_gateway_is_reported_to_every_proxy_and_mesh_binding_still_applies() {
    let mut r = gateway_resources();
    r.push(vs(MISSING_VS));
    let model = model_of(r);
    for out in [gateway_proxy(&model), web_sidecar(&model)] {
        let e = out
            .errors
            .iter()
            .find(|e| e.code == ErrorCode::MissingGateway)
            .expect("missing gateway");
        assert_eq!(
            (e.name.as_str(), e.path.as_str()),
            ("lost", "spec.gateways[1]")
        );
        assert!(e.message.contains("shop/nope"), "{}", e.message);
    }
}

#[test]
fn two_virtual_services_on_one_gateway_host_conflict() {
    let mut r = gateway_resources();
    r.push(vs(&SHOP_VS.replace(
        "name: shop, namespace",
        "name: shop-copy, namespace",
    )));
    let model = model_of(r);
    let out = gateway_proxy(&model);
    let e = out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::ConflictingHost)
        .expect("conflict");
    assert_eq!(e.name, "shop-copy");
    assert_eq!(
        domains(&route_config(&out, "http.80")),
        ["shop.example.com"]
    );
}

#[test]
fn unsupported_server_is_left_out_with_an_error() {
    let mut r = gateway_resources();
    r.push(gateway(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: tls, protocol: TLS}
    hosts: [x.example.com]
    tls: {mode: AUTO_PASSTHROUGH}
  - port: {number: 9444, name: https-nocred, protocol: HTTPS}
    hosts: [y.example.com]
    tls: {mode: SIMPLE}
"#,
    ));
    let model = model_of(r);
    let out = gateway_proxy(&model);
    let paths: Vec<(&str, &str)> = out
        .errors
        .iter()
        .map(|e| (e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("tls-gw", "spec.servers[0].tls.mode"),
            ("tls-gw", "spec.servers[1].tls.credentialName")
        ]
    );
    assert!(
        out.errors[0].message.contains("AUTO_PASSTHROUGH"),
        "{}",
        out.errors[0].message
    );
    assert_eq!(out.listeners.len(), 3, "shop-gw still applies");
}

#[test]
fn gateway_output_is_deterministic() {
    let model = model_of(gateway_resources());
    assert_eq!(gateway_proxy(&model), gateway_proxy(&model));
}

#[test]
fn server_certificates_from_files_and_duplicate_port_names() {
    let mut r = gateway_resources();
    r.push(gateway(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: files-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 9443, name: https, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: SIMPLE, serverCertificate: /etc/gw/cert.pem, privateKey: /etc/gw/key.pem}
  - port: {number: 9443, name: https, protocol: HTTPS}
    hosts: [admin.example.com]
    tls: {mode: MUTUAL, serverCertificate: /etc/gw/cert.pem, privateKey: /etc/gw/key.pem, caCertificates: /etc/gw/ca.pem}
  - port: {number: 9444, name: https-2, protocol: HTTPS}
    hosts: [shop.example.com]
    tls: {mode: MUTUAL, serverCertificate: /etc/gw/cert.pem, privateKey: /etc/gw/key.pem}
"#,
    ));
    r.push(vs(&SHOP_VS
        .replace("gateways: [shop-gw]", "gateways: [files-gw]")
        .replace(
            "name: shop, namespace",
            "name: shop-files, namespace",
        )));
    let model = model_of(r);
    let out = gateway_proxy(&model);
    let l = listener(&out, "127.0.0.20_9443");
    assert_eq!(l.filter_chains.len(), 2);
    let contexts: Vec<DownstreamTlsContext> = l
        .filter_chains
        .iter()
        .map(|c| {
            let Some(ConfigType::TypedConfig(any)) =
                &c.transport_socket.as_ref().unwrap().config_type
            else {
                panic!("typed config expected");
            };
            DownstreamTlsContext::decode(any.value.as_slice()).unwrap()
        })
        .collect();
    let text = format!("{contexts:?}");
    assert!(
        text.contains("/etc/gw/cert.pem") && text.contains("/etc/gw/ca.pem"),
        "{text}"
    );
    assert_eq!(contexts[0].require_client_certificate, None);
    assert_eq!(
        contexts[1].require_client_certificate.map(|b| b.value),
        Some(true)
    );
    // both servers are named `https`: the second route configuration gets its index
    let names: Vec<&str> = out.routes.iter().map(|r| r.name()).collect();
    assert!(
        names.contains(&"https.9443.https.files-gw.shop"),
        "{names:?}"
    );
    assert!(
        names.contains(&"https.9443.https.files-gw.shop.1"),
        "{names:?}"
    );
    // MUTUAL from files without a CA is left out with its field
    assert!(
        out.errors
            .iter()
            .any(|e| e.name == "files-gw" && e.path == "spec.servers[2].tls.caCertificates"),
        "{:?}",
        out.errors
    );
    assert!(out.listeners.iter().all(|l| l.name != "127.0.0.20_9444"));
}

/// A match's `gateways` overrides the VirtualService's: a match for the mesh
/// or for another gateway is not served on this one.
#[test]
fn a_match_for_the_mesh_or_another_gateway_is_not_served_here() {
    let mut resources = gateway_resources();
    resources.retain(|r| !matches!(r, Resource::VirtualService(_)));
    resources.push(vs(r#"
metadata: {name: shop, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gw, mesh]
  http:
  - match: [{gateways: [mesh], uri: {prefix: /internal}}]
    route: [{destination: {host: cart}}]
  - match: [{gateways: [shop/shop-gw], uri: {prefix: /cart}}, {gateways: [other-gw], uri: {prefix: /nope}}]
    route: [{destination: {host: cart}}]
  - match: [{sourceLabels: {istio: egressgateway}}]
    route: [{destination: {host: cart}}]
  - route: [{destination: {host: web}}]
"#));
    let model = model_of(resources);
    let out = gateway_proxy(&model);
    let plain = route_config(&out, "http.8081");
    let prefixes: Vec<String> = plain.virtual_hosts[0]
        .routes
        .iter()
        .map(|r| format!("{:?}", r.r#match.as_ref().unwrap().path_specifier))
        .collect();
    assert_eq!(prefixes.len(), 2, "{prefixes:?}");
    assert!(prefixes[0].contains("\"/cart\""), "{prefixes:?}");
    assert!(prefixes[1].contains("\"/\""), "{prefixes:?}");
}

/// The gateway workload's RequestAuthentications and AuthorizationPolicies
/// guard every server: jwt_authn and RBAC before the router, and the cluster
/// that fetches the key set.
#[test]
fn the_gateway_workloads_policies_guard_its_servers() {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    let mut resources = gateway_resources();
    let ra: trellis_api::security::RequestAuthentication = from_yaml(
        "metadata: {name: edge-jwt, namespace: shop}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  jwtRules:\n  - {issuer: https://issuer.example, jwksUri: https://keys.example/jwks}\n",
    );
    resources.push(Resource::RequestAuthentication(Box::new(ra)));
    let ap: trellis_api::security::AuthorizationPolicy = from_yaml(
        "metadata: {name: edge, namespace: shop}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  rules: [{from: [{source: {requestPrincipals: ['*']}}]}]\n",
    );
    resources.push(Resource::AuthorizationPolicy(Box::new(ap)));
    let model = model_of(resources);
    let out = gateway_proxy(&model);
    assert!(
        out.clusters
            .iter()
            .any(|c| c.name == "outbound|443||keys.example"),
        "the key set's cluster"
    );
    let names: Vec<&str> = out.clusters.iter().map(|c| c.name.as_str()).collect();
    let mut sorted = names.clone();
    sorted.sort();
    sorted.dedup();
    assert_eq!(names, sorted, "clusters stay sorted and distinct");
    for l in &out.listeners {
        for chain in &l.filter_chains {
            let Some(ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
                panic!("no typed config in {}", l.name);
            };
            let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
            let filters: Vec<String> = hcm.http_filters.into_iter().map(|f| f.name).collect();
            assert_eq!(
                filters[..2],
                ["envoy.filters.http.jwt_authn", "envoy.filters.http.rbac"],
                "{}: {filters:?}",
                l.name
            );
            assert_eq!(filters.last().unwrap(), "envoy.filters.http.router");
        }
    }
}

/// A CUSTOM policy selecting the gateway workload sends the requests it
/// matches to the provider on every server (the common ingress use: an
/// oauth2 proxy in front of the mesh).
#[test]
fn a_custom_policy_on_the_gateway_workload_guards_its_servers() {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    let mut resources = gateway_resources();
    let ap: trellis_api::security::AuthorizationPolicy = from_yaml(
        "metadata: {name: edge-ext, namespace: shop}\nspec:\n  selector: {matchLabels: {istio: ingressgateway}}\n  action: CUSTOM\n  provider: {name: oauth2}\n  rules: [{to: [{operation: {notPaths: [/healthz]}}]}]\n",
    );
    resources.push(Resource::AuthorizationPolicy(Box::new(ap)));
    let mut model = model_of(resources);
    let spec: trellis_api::mesh::MeshConfigSpec = from_yaml(
        "extensionProviders:\n- name: oauth2\n  envoyExtAuthzHttp: {service: cart.shop.svc.cluster.local, port: 8080}\n",
    );
    let settings = trellis_model::MeshSettings {
        extension_providers: spec.extension_providers,
        ..model.settings().clone()
    };
    model.apply(Resource::MeshSettings(settings)).unwrap();
    let out = gateway_proxy(&model);
    assert!(
        !out.errors.iter().any(|e| e.kind == "AuthorizationPolicy"),
        "{:?}",
        out.errors
    );
    let mut checked = 0;
    for l in &out.listeners {
        for chain in &l.filter_chains {
            let Some(ConfigType::TypedConfig(any)) = &chain.filters[0].config_type else {
                continue;
            };
            let Ok(hcm) = HttpConnectionManager::decode(any.value.as_slice()) else {
                continue;
            };
            let filters: Vec<String> = hcm.http_filters.into_iter().map(|f| f.name).collect();
            assert_eq!(
                filters[..2],
                ["envoy.filters.http.rbac", "envoy.filters.http.ext_authz"],
                "{}: {filters:?}",
                l.name
            );
            checked += 1;
        }
    }
    assert!(checked > 0, "the gateway serves HTTP");
}

/// A server's protocol versions and cipher suites reach its TLS context, and
/// MUTUAL `subjectAltNames` are checked on the client certificate next to the
/// client CA from SDS.
#[test]
fn server_tls_versions_ciphers_and_client_names() {
    let mut resources = gateway_resources();
    resources.retain(|r| !matches!(r, Resource::Gateway(_)));
    resources.push(gateway(
        r#"
metadata: {name: shop-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: https-admin, protocol: HTTPS}
    hosts: [admin.example.com]
    tls:
      mode: MUTUAL
      credentialName: admin-cert
      subjectAltNames: [spiffe://cluster.local/ns/shop/sa/admin]
      minProtocolVersion: TLSV1_3
      cipherSuites: [ECDHE-ECDSA-AES256-GCM-SHA384]
"#,
    ));
    let model = model_of(resources);
    let out = gateway_proxy(&model);
    let l = listener(&out, "127.0.0.20_8443");
    let Some(ConfigType::TypedConfig(any)) = &l.filter_chains[0]
        .transport_socket
        .as_ref()
        .unwrap()
        .config_type
    else {
        panic!("typed config expected");
    };
    let tls = DownstreamTlsContext::decode(any.value.as_slice()).unwrap();
    let common = tls.common_tls_context.unwrap();
    let params = common.tls_params.unwrap();
    assert_eq!(params.tls_minimum_protocol_version, 4, "TLSv1_3");
    assert_eq!(params.tls_maximum_protocol_version, 0, "TLS_AUTO");
    assert_eq!(params.cipher_suites, ["ECDHE-ECDSA-AES256-GCM-SHA384"]);
    let text = format!("{:?}", common.validation_context_type);
    assert!(
        text.contains("CombinedValidationContext")
            && text.contains("spiffe://cluster.local/ns/shop/sa/admin")
            && text.contains("kubernetes://shop/admin-cert-cacert"),
        "{text}"
    );
}

/// A VirtualService bound to a gateway reaches it only when exported to the
/// gateway proxy's namespace, as it reaches sidecars.
#[test]
fn a_virtual_service_not_exported_to_the_gateway_is_not_served() {
    let team_vs = |export: &str| {
        vs(&format!(
            r#"
metadata: {{name: team, namespace: team}}
spec:
  hosts: [team.example.com]
  gateways: [shop/team-gw]
  exportTo: [{export}]
  http:
  - route: [{{destination: {{host: web.shop.svc.cluster.local}}}}]
"#
        ))
    };
    let served = |export: &str| {
        let mut r = gateway_resources();
        r.push(gateway(
            "metadata: {name: team-gw, namespace: shop}\nspec:\n  selector: {istio: ingressgateway}\n  servers:\n  - port: {number: 8082, name: http-team, protocol: HTTP}\n    hosts: [\"*/team.example.com\"]\n",
        ));
        r.push(team_vs(export));
        let model = model_of(r);
        let out = gateway_proxy(&model);
        domains(&route_config(&out, "http.8082")).contains(&"team.example.com")
    };
    assert!(served("\"*\""), "exported everywhere");
    assert!(served("shop"), "exported to the gateway's namespace");
    assert!(!served("\".\""), "exported to its own namespace only");
}

/// A PASSTHROUGH server routes TLS it does not terminate by SNI: one chain
/// per `tls` route match, named by what both the match and the server admit,
/// proxying to the route's destinations after the gateway's TCP policies. A
/// name an earlier chain took stays with it; a match for another gateway or
/// port is not served; a SIMPLE server shares the port.
#[test]
fn passthrough_servers_route_tls_by_sni() {
    let mut r = gateway_resources();
    r.extend([
        gateway(
            r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: tls-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 443, name: tls, protocol: TLS}
    hosts: ["*.internal.example.com"]
    tls: {mode: PASSTHROUGH}
"#,
        ),
        vs(r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault, namespace: shop}
spec:
  hosts: ["*.internal.example.com"]
  gateways: [tls-gw]
  tls:
  - match: [{sniHosts: [vault.internal.example.com]}]
    route: [{destination: {host: cart}}]
  - match: [{sniHosts: [vault.internal.example.com, db.internal.example.com]}]
    route:
    - {destination: {host: web}, weight: 80}
    - {destination: {host: cart}, weight: 20}
  - match: [{sniHosts: [other.internal.example.com], gateways: [shop-gw]}]
    route: [{destination: {host: web}}]
  - match: [{sniHosts: [port.internal.example.com], port: 8443}]
    route: [{destination: {host: web}}]
  - match: [{sniHosts: [shop.example.com]}]
    route: [{destination: {host: web}}]
"#),
    ]);
    let model = model_of(r);
    let out = gateway_proxy(&model);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let l = listener(&out, "127.0.0.20_8443");
    // (SNI names, (cluster, weight) destinations, filter count) per chain
    type Chain = (Vec<String>, Vec<(String, u32)>, usize);
    let passthrough: Vec<Chain> = l
        .filter_chains
        .iter()
        .filter(|c| c.name.starts_with("passthrough."))
        .map(|c| {
            let names = c.filter_chain_match.as_ref().unwrap().server_names.clone();
            assert!(
                c.transport_socket.is_none(),
                "passthrough terminates no TLS"
            );
            (names, proxied_to(chain_tcp_proxy(c)), c.filters.len())
        })
        .collect();
    let cart = "outbound|8080||cart.shop.svc.cluster.local".to_string();
    let web = "outbound|80||web.shop.svc.cluster.local".to_string();
    assert_eq!(
        passthrough,
        [
            (
                vec!["vault.internal.example.com".to_string()],
                vec![(cart.clone(), 100)],
                1
            ),
            (
                vec!["db.internal.example.com".to_string()],
                vec![(web, 80), (cart, 20)],
                1
            ),
        ]
    );
    // The SIMPLE server of shop-gw keeps its own chain on the port.
    assert!(
        l.filter_chains
            .iter()
            .any(|c| c.name.starts_with("https.443.https-shop"))
    );
    assert!(
        !l.listener_filters.is_empty(),
        "the TLS inspector reads the SNI"
    );
}

/// A TCP server carries connections by the first `tcp` route bound to it (no
/// host name to tell them apart), after the gateway's TCP policies; an HTTP
/// server on the same port is refused.
#[test]
fn tcp_servers_follow_their_tcp_routes() {
    let mut r = gateway_resources();
    r.extend([
        gateway(
            r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: db-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 5432, name: pg, protocol: TCP}
    hosts: [db.example.com]
  - port: {number: 5432, name: http, protocol: HTTP}
    hosts: [web.example.com]
"#,
        ),
        vs(r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: db, namespace: shop}
spec:
  hosts: [db.example.com]
  gateways: [db-gw]
  tcp:
  - match: [{port: 6000}]
    route: [{destination: {host: web}}]
  - route: [{destination: {host: db}}]
"#),
    ]);
    let out = gateway_proxy(&model_of(r));
    let paths: Vec<(&str, &str)> = (out.errors.iter())
        .map(|e| (e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(paths, [("db-gw", "spec.servers[1].port")]);
    let l = listener(&out, "127.0.0.20_5432");
    assert_eq!(l.filter_chains.len(), 1);
    assert_eq!(
        proxied_to(chain_tcp_proxy(&l.filter_chains[0])),
        [("outbound|5432||db.shop.svc.cluster.local".to_string(), 100)]
    );
}

/// A server with `bind` gets a listener of its own on that address (and a
/// route configuration of its own); a Unix socket is reported, not served.
#[test]
fn servers_bound_to_an_address_get_their_own_listener() {
    let mut r = gateway_resources();
    r.push(gateway(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: internal, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8081, name: internal, protocol: HTTP}
    bind: 127.0.0.99
    hosts: ["shop/*.example.com"]
  - port: {number: 8082, name: uds, protocol: HTTP}
    bind: unix:///var/run/gw.sock
    hosts: ["*"]
"#,
    ));
    let out = gateway_proxy(&model_of(r));
    let paths: Vec<(&str, &str)> = (out.errors.iter())
        .map(|e| (e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(paths, [("internal", "spec.servers[1].bind")]);
    // shop-gw's plain server on 8081 keeps the workload's address
    listener(&out, "127.0.0.20_8081");
    listener(&out, "127.0.0.99_8081");
    route_config(&out, "http.8081");
    route_config(&out, "http.8081.127.0.0.99");
    assert!(out.listeners.iter().all(|l| !l.name.ends_with("_8082")));
}

/// In a pod the gateway's own readiness (15021) and metrics (15090)
/// listeners are there: a server on either port is left out with an error
/// instead of colliding with them, and the rest is served.
#[test]
fn a_server_on_the_proxys_own_ports_is_refused_in_a_pod() {
    let mut r = gateway_resources();
    r.push(gateway(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {name: agent-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 15021, name: http-health, protocol: HTTP}
    hosts: ["*"]
  - port: {number: 15090, name: http-stats, protocol: HTTP}
    bind: 127.0.0.9
    hosts: ["*"]
"#,
    ));
    let model = model_of(r);
    let out = Translator::new(&model, trellis_translate::TranslateOptions::default())
        .translate(&Proxy::gateway("shop", "ingress-1"));
    let paths: Vec<(&str, &str)> = out
        .errors
        .iter()
        .map(|e| (e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(
        paths,
        [
            ("agent-gw", "spec.servers[0].port.number"),
            ("agent-gw", "spec.servers[1].port.number")
        ]
    );
    let names: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names.iter().filter(|n| n.ends_with("_15021")).count(),
        1,
        "{names:?}"
    );
    assert!(names.contains(&"0.0.0.0_15090") && !names.contains(&"127.0.0.9_15090"));
}

/// MeshConfig's access log reaches the gateway's server listeners too.
#[test]
fn the_access_log_reaches_gateway_servers() {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    let mut resources = gateway_resources();
    resources.push(Resource::MeshSettings(trellis_model::MeshSettings {
        access_log: Some(trellis_model::AccessLog {
            path: "/var/log/gw.log".into(),
            encoding: trellis_api::mesh::AccessLogEncoding::Text,
            format: None,
        }),
        ..Default::default()
    }));
    let out = gateway_proxy(&model_of(resources));
    let mut hcms = 0;
    for l in &out.listeners {
        for f in l.filter_chains.iter().flat_map(|c| &c.filters) {
            let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            if f.name == "envoy.filters.network.http_connection_manager" {
                let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
                assert_eq!(hcm.access_log.len(), 1, "{}", l.name);
                hcms += 1;
            }
        }
    }
    assert!(hcms >= 2, "the gateway's HTTP servers: {hcms}");
}

/// A server's `defaultEndpoint` is accepted and changes nothing, as in Istio
/// (which does not implement it); the field is reported as without effect.
#[test]
fn a_servers_default_endpoint_is_accepted_without_effect() {
    let plain = gateway_proxy(&model_of(gateway_resources()));
    let mut resources = gateway_resources();
    let with_endpoint = (resources.iter_mut())
        .find_map(|r| match r {
            Resource::Gateway(g) => Some(g),
            _ => None,
        })
        .expect("the gateway");
    with_endpoint.spec.servers[0].default_endpoint = Some("127.0.0.1:8080".into());
    let out = gateway_proxy(&model_of(resources));
    assert_eq!(
        (&out.listeners, &out.routes, &out.clusters),
        (&plain.listeners, &plain.routes, &plain.clusters),
        "the same configuration"
    );
    let added: Vec<_> = (out.errors.iter())
        .filter(|e| !plain.errors.contains(e))
        .collect();
    assert_eq!(added.len(), 1, "{added:?}");
    assert_eq!(
        (added[0].kind.as_str(), added[0].path.as_str()),
        ("Gateway", "spec.servers[0].defaultEndpoint")
    );
    assert!(
        added[0].message.contains("no effect"),
        "{}",
        added[0].message
    );
}
