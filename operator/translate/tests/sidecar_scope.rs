//! The Sidecar resource (egress hosts, outboundTrafficPolicy) and ServiceEntries in
//! the translator's output.
mod fixture;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{ClusterDiscoveryType, DiscoveryType};
use envoy_types::pb::envoy::config::route::v3::route::Action;
use fixture::*;
use trellis_api::networking::{ServiceEntry, Sidecar};
use trellis_model::{MeshModel, Resource};
use trellis_translate::{Proxy, ProxyResources, Translator};

fn sidecar(yaml: &str) -> Resource {
    let s: Sidecar = from_yaml(yaml);
    Resource::Sidecar(Box::new(s))
}

fn service_entry(yaml: &str) -> Resource {
    let s: ServiceEntry = from_yaml(yaml);
    Resource::ServiceEntry(Box::new(s))
}

fn outbound_hosts(out: &ProxyResources) -> Vec<String> {
    let mut hosts: Vec<String> = out
        .clusters
        .iter()
        .filter_map(|c| c.name.strip_prefix("outbound|"))
        .map(|n| n.rsplit('|').next().unwrap().to_string())
        .collect();
    hosts.sort();
    hosts.dedup();
    hosts
}

fn catch_all(out: &ProxyResources) -> String {
    let rc = out
        .routes
        .iter()
        .find(|r| r.name() == "outbound_http_proxy")
        .unwrap()
        .decode();
    rc.virtual_hosts.last().unwrap().name.clone()
}

fn sidecar_of(model: &MeshModel, ns: &str, name: &str) -> ProxyResources {
    Translator::new(model, explicit_options()).translate(&Proxy::sidecar(ns, name))
}

const NAMESPACE_SCOPE: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - hosts: ["./cart.shop.svc.cluster.local", "istio-system/*"]
"#;

const WEB_SCOPE: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: web-only, namespace: shop}
spec:
  workloadSelector: {labels: {app: web}}
  egress:
  - hosts: ["*/*.example.com", "./db.shop.svc.cluster.local"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#;

const ROOT_SCOPE: &str = r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: istio-system}
spec:
  egress:
  - hosts: ["./*"]
"#;

const EXTERNAL: &str = r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: ops}
spec:
  hosts: [pay.example.com]
  resolution: DNS
  ports: [{number: 443, name: https, protocol: HTTPS}]
"#;

#[test]
fn without_a_sidecar_resource_every_visible_service_is_configured() {
    let mut r = base_resources();
    r.push(service_entry(EXTERNAL));
    let model = model_of(r);
    let out = web_sidecar(&model);
    assert_eq!(
        outbound_hosts(&out),
        [
            "cart.shop.svc.cluster.local",
            "db.shop.svc.cluster.local",
            "pay.example.com",
            "web.shop.svc.cluster.local"
        ]
    );
    assert_eq!(catch_all(&out), "allow_any");
}

#[test]
fn namespace_sidecar_limits_egress_hosts() {
    let mut r = base_resources();
    r.push(service_entry(EXTERNAL));
    r.push(sidecar(NAMESPACE_SCOPE));
    let model = model_of(r);
    let out = web_sidecar(&model);
    assert_eq!(outbound_hosts(&out), ["cart.shop.svc.cluster.local"]);
    // no route to the excluded services either
    let rc = out
        .routes
        .iter()
        .find(|r| r.name() == "outbound_http_proxy")
        .unwrap()
        .decode();
    assert!(
        rc.virtual_hosts
            .iter()
            .all(|v| !v.name.contains("web.shop") && !v.name.contains("db.shop")),
        "{:?}",
        rc.virtual_hosts.iter().map(|v| &v.name).collect::<Vec<_>>()
    );
    // the workload's own inbound side is not affected
    assert!(out.clusters.iter().any(|c| c.name == "inbound|8000||"));
}

#[test]
fn workload_selector_wins_and_brings_its_outbound_policy() {
    let mut r = base_resources();
    r.push(service_entry(EXTERNAL));
    r.push(sidecar(NAMESPACE_SCOPE));
    r.push(sidecar(WEB_SCOPE));
    let model = model_of(r);
    let out = web_sidecar(&model);
    assert_eq!(
        outbound_hosts(&out),
        ["db.shop.svc.cluster.local", "pay.example.com"]
    );
    assert_eq!(catch_all(&out), "block_all");
    let rc = out
        .routes
        .iter()
        .find(|r| r.name() == "outbound_http_proxy")
        .unwrap()
        .decode();
    let block = rc.virtual_hosts.last().unwrap();
    assert!(matches!(
        block.routes[0].action,
        Some(Action::DirectResponse(ref d)) if d.status == 502
    ));
    // cart-v1 is not selected by WEB_SCOPE: the namespace default applies
    let cart = sidecar_of(&model, "shop", "cart-v1");
    assert_eq!(outbound_hosts(&cart), ["cart.shop.svc.cluster.local"]);
    assert_eq!(catch_all(&cart), "allow_any");
}

#[test]
fn root_namespace_sidecar_is_the_mesh_default() {
    let mut r = base_resources();
    r.push(sidecar(ROOT_SCOPE));
    r.push(workload("ops", "ops-1", "127.0.0.30", &[("app", "ops")]));
    r.push(service("ops", "ops", "ops", &[("http", 80, 8080)]));
    let model = model_of(r);
    // `./*` is the Sidecar's own namespace (istio-system): nothing from shop or ops
    let out = sidecar_of(&model, "ops", "ops-1");
    assert!(
        outbound_hosts(&out).is_empty(),
        "{:?}",
        outbound_hosts(&out)
    );
    // a namespace Sidecar overrides the root one
    let mut r = base_resources();
    r.push(sidecar(ROOT_SCOPE));
    r.push(sidecar(NAMESPACE_SCOPE));
    let model = model_of(r);
    assert_eq!(
        outbound_hosts(&web_sidecar(&model)),
        ["cart.shop.svc.cluster.local"]
    );
}

#[test]
fn service_entry_resolutions_become_cluster_types() {
    let mut r = base_resources();
    r.push(service_entry(EXTERNAL));
    r.push(service_entry(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: fixed, namespace: shop}
spec:
  hosts: [fixed.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.90, ports: {http: 9090}}, {address: 127.0.0.91}]
"#,
    ));
    r.push(service_entry(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: any, namespace: shop}
spec:
  hosts: ["*.wild.example.com"]
  resolution: NONE
  ports: [{number: 80, name: http, protocol: HTTP}]
"#,
    ));
    let model = model_of(r);
    let out = web_sidecar(&model);
    let kind = |name: &str| {
        let c = cluster(&out, name);
        (
            c.cluster_discovery_type.clone(),
            format!("{:?}", c.load_assignment),
        )
    };
    let (t, la) = kind("outbound|443||pay.example.com");
    assert_eq!(
        t,
        Some(ClusterDiscoveryType::Type(DiscoveryType::StrictDns as i32))
    );
    assert!(la.contains("pay.example.com") && la.contains("443"), "{la}");
    let (t, la) = kind("outbound|80||fixed.example.com");
    assert_eq!(
        t,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32))
    );
    assert!(la.contains("127.0.0.90") && la.contains("9090"), "{la}");
    assert!(
        la.contains("127.0.0.91") && la.contains("PortValue(80)"),
        "{la}"
    );
    let (t, _) = kind("outbound|80||*.wild.example.com");
    assert_eq!(
        t,
        Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32
        ))
    );
    // a ServiceEntry host is routable by its name on the HTTP proxy
    let rc = out
        .routes
        .iter()
        .find(|r| r.name() == "outbound_http_proxy")
        .unwrap()
        .decode();
    assert!(
        rc.virtual_hosts
            .iter()
            .any(|v| v.domains.contains(&"fixed.example.com".to_string()))
    );
}

#[test]
fn invalid_service_entry_is_rejected_by_the_model_with_its_field() {
    let mut model = model_of(base_resources());
    let err = model
        .apply(service_entry(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: bad, namespace: shop}
spec:
  hosts: ["*.example.com"]
  resolution: DNS
  ports: [{number: 80, name: http}]
"#,
        ))
        .unwrap_err();
    let text = err.to_string();
    assert!(
        text.starts_with("ServiceEntry/shop/bad: spec.hosts[0]"),
        "{text}"
    );
}

#[test]
fn service_entry_subset_selecting_no_endpoint_is_reported() {
    let mut r = base_resources();
    r.push(service_entry(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: fixed, namespace: shop}
spec:
  hosts: [fixed.example.com]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: 127.0.0.90, labels: {version: v1}}]
"#,
    ));
    r.push(dr(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: fixed, namespace: shop}
spec:
  host: fixed.example.com
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#));
    let model = model_of(r);
    let out = web_sidecar(&model);
    let empty: Vec<(&str, &str)> = out
        .errors
        .iter()
        .filter(|e| e.code == trellis_translate::ErrorCode::EmptySubset)
        .map(|e| (e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(empty, [("fixed", "spec.subsets[v2]")]);
    // the subset clusters still exist (the empty one answers 503, as in Istio)
    assert!(
        out.clusters
            .iter()
            .any(|c| c.name == "outbound|80|v2|fixed.example.com")
    );
}

/// DNS_ROUND_ROBIN gives a logical DNS cluster on its one endpoint (Envoy
/// connects to the first address of each fresh resolution); a subset that
/// selects no endpoint is an empty strict DNS cluster, since a logical one
/// must have exactly one.
#[test]
fn dns_round_robin_is_a_logical_dns_cluster() {
    let mut r = base_resources();
    r.push(service_entry(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  resolution: DNS_ROUND_ROBIN
  ports: [{number: 443, name: tls, protocol: TLS}]
  endpoints: [{address: lb.example.com, labels: {version: v1}}]
"#,
    ));
    r.push(dr(r#"
metadata: {name: api, namespace: shop}
spec:
  host: api.example.com
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#));
    let out = web_sidecar(&model_of(r));
    let kind = |name: &str| {
        let c = cluster(&out, name);
        match c.cluster_discovery_type {
            Some(ClusterDiscoveryType::Type(t)) => DiscoveryType::try_from(t).unwrap(),
            ref other => panic!("{name}: {other:?}"),
        }
    };
    assert_eq!(
        kind("outbound|443||api.example.com"),
        DiscoveryType::LogicalDns
    );
    assert_eq!(
        kind("outbound|443|v1|api.example.com"),
        DiscoveryType::LogicalDns
    );
    assert_eq!(
        kind("outbound|443|v2|api.example.com"),
        DiscoveryType::StrictDns
    );
}

/// A ServiceEntry endpoint labelled `security.istio.io/tlsMode: istio` gets
/// the mesh's mTLS (auto mTLS) when the entry is MESH_INTERNAL, as in Istio;
/// outside the mesh, or without the label, it stays plaintext.
#[test]
fn labelled_endpoints_of_a_mesh_internal_entry_get_auto_mtls() {
    let entry = |location: &str| {
        service_entry(&format!(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: vm, namespace: shop}}
spec:
  hosts: [vm.internal]
  location: {location}
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints:
  - {{address: 127.0.0.90, serviceAccount: vm, labels: {{security.istio.io/tlsMode: istio}}}}
  - {{address: 127.0.0.91}}
"#
        ))
    };
    for (location, mtls) in [("MESH_INTERNAL", true), ("MESH_EXTERNAL", false)] {
        let mut r = base_resources();
        r.push(entry(location));
        let out = web_sidecar(&model_of(r));
        let c = cluster(&out, "outbound|80||vm.internal");
        assert_eq!(!c.transport_socket_matches.is_empty(), mtls, "{location}");
        let endpoints = &c.load_assignment.as_ref().unwrap().endpoints[0].lb_endpoints;
        let marked: Vec<bool> = endpoints.iter().map(|e| e.metadata.is_some()).collect();
        assert_eq!(marked, [mtls, false], "{location}");
        if mtls {
            // the server must present the identity of the endpoint's serviceAccount
            use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
            let socket = c.transport_socket_matches[0].transport_socket.as_ref();
            let Some(ConfigType::TypedConfig(any)) = &socket.unwrap().config_type else {
                panic!("no TLS context");
            };
            let text = String::from_utf8_lossy(&any.value);
            assert!(
                text.contains("spiffe://cluster.local/ns/shop/sa/vm"),
                "{text}"
            );
        }
    }
}

/// An egress listener with a port admits its hosts on that port only; one
/// without a port, on every port. A host named only by a listener whose
/// port it does not have is not seen at all.
#[test]
fn an_egress_listener_with_a_port_admits_its_hosts_on_that_port_only() {
    let mut r = base_resources();
    r.push(service(
        "shop",
        "multi",
        "multi",
        &[("http", 8080, 8080), ("grpc-admin", 9090, 9090)],
    ));
    r.push(sidecar(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 9090, protocol: GRPC, name: grpc}
    hosts: ["./multi.shop.svc.cluster.local", "./cart.shop.svc.cluster.local"]
  - hosts: ["./db.shop.svc.cluster.local"]
"#,
    ));
    let out = sidecar_of(&model_of(r), "shop", "web-1");
    let clusters: Vec<&str> = (out.clusters.iter())
        .map(|c| c.name.as_str())
        .filter(|n| n.starts_with("outbound|"))
        .collect();
    assert_eq!(
        clusters,
        [
            "outbound|5432||db.shop.svc.cluster.local",
            "outbound|9090||multi.shop.svc.cluster.local"
        ]
    );
}

/// A STATIC ServiceEntry endpoint at `unix://<path>` is a Unix socket endpoint
/// (Envoy would refuse it as a TCP address, and with it the whole update).
#[test]
fn a_unix_socket_endpoint_is_a_pipe() {
    use envoy_types::pb::envoy::config::core::v3::address::Address;
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    let mut r = base_resources();
    r.push(service_entry(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: local, namespace: shop}
spec:
  hosts: [socket.internal]
  resolution: STATIC
  ports: [{number: 80, name: http, protocol: HTTP}]
  endpoints: [{address: "unix:///var/run/app.sock"}]
"#,
    ));
    let out = web_sidecar(&model_of(r));
    let c = cluster(&out, "outbound|80||socket.internal");
    let e = &c.load_assignment.as_ref().unwrap().endpoints[0].lb_endpoints[0];
    let Some(HostIdentifier::Endpoint(e)) = &e.host_identifier else {
        panic!("no endpoint");
    };
    let Some(Address::Pipe(pipe)) = &e.address.as_ref().unwrap().address else {
        panic!("not a pipe: {e:?}");
    };
    assert_eq!(pipe.path, "/var/run/app.sock");
}
