//! Sidecar translation (explicit universal shape), asserted on the Envoy structs.
mod fixture;

use envoy_types::pb::envoy::config::cluster::v3::cluster::{
    ClusterDiscoveryType, DiscoveryType, LbPolicy,
};
use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteAction, VirtualHost, route::Action, route_action::ClusterSpecifier,
};
use fixture::*;
use trellis_translate::{ErrorCode, Proxy, ProxyResources, Translator};

fn vhost(out: &ProxyResources, name: &str) -> VirtualHost {
    out.routes
        .iter()
        .flat_map(|rc| rc.decode().virtual_hosts)
        .find(|v| v.name == name)
        .unwrap_or_else(|| panic!("no virtual host {name}"))
}

/// The routes of `v` for requests; the first route of a service port's virtual
/// host takes `CONNECT` (a tunnel to the port's cluster).
fn http_routes(v: &VirtualHost) -> Vec<Route> {
    match v.routes.split_first() {
        Some((first, rest)) if is_connect(first) => rest.to_vec(),
        _ => v.routes.clone(),
    }
}

fn is_connect(route: &Route) -> bool {
    use envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier;
    matches!(
        route
            .r#match
            .as_ref()
            .and_then(|m| m.path_specifier.as_ref()),
        Some(PathSpecifier::ConnectMatcher(_))
    )
}

fn action(route: &Route) -> &RouteAction {
    match route.action.as_ref().unwrap() {
        Action::Route(a) => a,
        other => panic!("not a route action: {other:?}"),
    }
}

const CART: &str = "cart.shop.svc.cluster.local";

#[test]
fn outbound_clusters_and_endpoints_use_istio_names() {
    let model = model_of(base_resources());
    let out = web_sidecar(&model);
    let names: Vec<&str> = out.clusters.iter().map(|c| c.name.as_str()).collect();
    assert!(
        names.contains(&"outbound|8080||cart.shop.svc.cluster.local"),
        "{names:?}"
    );
    assert!(names.contains(&"inbound|8000||"), "{names:?}");
    let mut sorted = names.clone();
    sorted.sort();
    assert_eq!(names, sorted, "clusters are sorted by name");
    let cla = out
        .endpoints
        .iter()
        .find(|e| e.cluster_name == format!("outbound|8080||{CART}"))
        .unwrap();
    let addrs: Vec<String> = cla.endpoints[0]
        .lb_endpoints
        .iter()
        .map(|e| format!("{e:?}"))
        .collect();
    assert_eq!(addrs.len(), 2);
    assert!(addrs[0].contains("127.0.0.11") && addrs[1].contains("127.0.0.12"));
    // Endpoints with a sidecar are marked for auto mTLS.
    assert!(addrs[0].contains("tlsMode"));
    let cart = cluster(&out, &format!("outbound|8080||{CART}"));
    assert_eq!(
        cart.cluster_discovery_type,
        Some(ClusterDiscoveryType::Type(DiscoveryType::Eds as i32))
    );
    assert_eq!(
        cart.transport_socket_matches.len(),
        2,
        "auto mTLS socket matches"
    );
}

#[test]
fn http_proxy_routes_by_every_host_alias() {
    let model = model_of(base_resources());
    let out = web_sidecar(&model);
    let v = vhost(&out, &format!("{CART}:8080"));
    for d in [
        "cart",
        "cart.shop",
        "cart.shop.svc",
        CART,
        "cart:8080",
        "cart.shop:8080",
        "cart.shop.svc.cluster.local:8080",
    ] {
        assert!(
            v.domains.iter().any(|x| x == d),
            "{d} missing from {:?}",
            v.domains
        );
    }
    let listener = out
        .listeners
        .iter()
        .find(|l| l.name == "127.0.0.10_15001")
        .unwrap();
    let bytes = prost::Message::encode_to_vec(listener.as_ref());
    let needle = b"outbound_http_proxy";
    assert!(
        bytes.windows(needle.len()).any(|w| w == needle),
        "HCM uses the proxy routes"
    );
    assert!(
        out.listeners.iter().any(|l| l.name == "127.0.0.10_25432"),
        "TCP outbound port"
    );
    assert!(
        out.listeners.iter().any(|l| l.name == "127.0.0.10_8000"),
        "inbound at target port"
    );
}

#[test]
fn route_without_virtual_service_gets_istio_default_retries() {
    let model = model_of(base_resources());
    let out = web_sidecar(&model);
    let v = vhost(&out, &format!("{CART}:8080"));
    let retry = action(&http_routes(&v)[0]).retry_policy.clone().unwrap();
    assert_eq!(retry.num_retries.unwrap().value, 2);
    assert_eq!(
        retry.retry_on,
        "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes"
    );
    assert_eq!(retry.retriable_status_codes, vec![503]);
}

const CART_DR: &str = r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy:
    loadBalancer: {simple: LEAST_REQUEST}
    connectionPool:
      tcp: {maxConnections: 7, connectTimeout: 2s}
      http: {http1MaxPendingRequests: 3, maxRetries: 4}
    outlierDetection: {consecutive5xxErrors: 2, interval: 1s, baseEjectionTime: 30s, maxEjectionPercent: 100}
  subsets:
  - name: v1
    labels: {version: v1}
  - name: v2
    labels: {version: v2}
"#;

const CART_VS: &str = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - name: canary
    match:
    - headers: {x-user: {exact: tester}}
      uri: {prefix: /api}
    route:
    - destination: {host: cart, subset: v2}
  - name: split
    timeout: 3s
    retries: {attempts: 5, perTryTimeout: 1s, retryOn: "5xx,429"}
    route:
    - destination: {host: cart, subset: v1}
      weight: 90
    - destination: {host: cart, subset: v2}
      weight: 10
"#;

#[test]
fn virtual_service_routes_weights_subsets_retries_and_timeouts() {
    let mut resources = base_resources();
    resources.push(dr(CART_DR));
    resources.push(vs(CART_VS));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let v = vhost(&out, &format!("{CART}:8080"));
    assert!(is_connect(&v.routes[0]), "CONNECT first: {:?}", v.routes[0]);
    assert_eq!(
        action(&v.routes[0]).cluster_specifier,
        Some(ClusterSpecifier::Cluster(format!("outbound|8080||{CART}")))
    );
    let routes = http_routes(&v);
    assert_eq!(routes.len(), 2);
    let canary = &routes[0];
    let m = canary.r#match.as_ref().unwrap();
    assert_eq!(m.headers[0].name, "x-user");
    assert_eq!(
        action(canary).cluster_specifier,
        Some(ClusterSpecifier::Cluster(format!(
            "outbound|8080|v2|{CART}"
        )))
    );
    let split = action(&routes[1]);
    let Some(ClusterSpecifier::WeightedClusters(w)) = &split.cluster_specifier else {
        panic!("weighted clusters expected");
    };
    let weights: Vec<(String, u32)> = w
        .clusters
        .iter()
        .map(|c| (c.name.clone(), c.weight.unwrap().value))
        .collect();
    assert_eq!(
        weights,
        vec![
            (format!("outbound|8080|v1|{CART}"), 90),
            (format!("outbound|8080|v2|{CART}"), 10)
        ]
    );
    assert_eq!(split.timeout.unwrap().seconds, 3);
    let retry = split.retry_policy.as_ref().unwrap();
    assert_eq!(retry.num_retries.unwrap().value, 5);
    assert_eq!(retry.per_try_timeout.unwrap().seconds, 1);
    assert_eq!(retry.retry_on, "5xx,retriable-status-codes");
    assert_eq!(retry.retriable_status_codes, vec![429]);
    // Subset clusters exist and select only their endpoints.
    let v1 = out
        .endpoints
        .iter()
        .find(|e| e.cluster_name == format!("outbound|8080|v1|{CART}"))
        .unwrap();
    assert_eq!(v1.endpoints[0].lb_endpoints.len(), 1);
    assert!(format!("{v1:?}").contains("127.0.0.11"));
    // DestinationRule policy on every cart cluster.
    for c in out.clusters.iter().filter(|c| c.name.ends_with(CART)) {
        assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32, "{}", c.name);
        let t = &c.circuit_breakers.as_ref().unwrap().thresholds[0];
        assert_eq!(t.max_connections.unwrap().value, 7);
        assert_eq!(t.max_pending_requests.unwrap().value, 3);
        assert_eq!(t.max_retries.unwrap().value, 4);
        // unset, as in Istio: no limit rather than Envoy's 1,024
        assert_eq!(t.max_requests.unwrap().value, u32::MAX);
        assert_eq!(c.connect_timeout.unwrap().seconds, 2);
        let o = c.outlier_detection.as_ref().unwrap();
        assert_eq!(o.consecutive_5xx.unwrap().value, 2);
        assert_eq!(o.base_ejection_time.unwrap().seconds, 30);
    }
    // A cluster no DestinationRule limits has no limits.
    let web = cluster(&out, "outbound|80||web.shop.svc.cluster.local");
    let t = &web.circuit_breakers.as_ref().unwrap().thresholds[0];
    let limits = [
        t.max_connections,
        t.max_pending_requests,
        t.max_requests,
        t.max_retries,
    ];
    assert!(limits.iter().all(|l| l.unwrap().value == u32::MAX), "{t:?}");
}

#[test]
fn dangling_subset_and_unknown_host_are_reported_and_left_out() {
    let mut resources = base_resources();
    resources.push(vs(r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: broken, namespace: shop}
spec:
  hosts: [cart]
  http:
  - route:
    - destination: {host: cart, subset: nope}
"#));
    resources.push(dr(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: ghost, namespace: shop}
spec:
  host: ghost
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let subset = out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::UnknownSubset)
        .unwrap();
    assert_eq!(
        (subset.kind.as_str(), subset.name.as_str()),
        ("VirtualService", "broken")
    );
    assert_eq!(subset.path, "spec.http[0].route[0].destination");
    let host = out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::UnknownHost)
        .unwrap();
    assert_eq!(
        (host.name.as_str(), host.path.as_str()),
        ("ghost", "spec.host")
    );
    // The broken rule is left out, and with it the port's tunnel; web still
    // reaches its own service and db.
    assert!(vhost(&out, &format!("{CART}:8080")).routes.is_empty());
    assert!(
        out.clusters
            .iter()
            .any(|c| c.name == "outbound|5432||db.shop.svc.cluster.local")
    );
}

#[test]
fn second_virtual_service_for_a_host_is_a_conflict() {
    let mut resources = base_resources();
    resources.push(vs(CART_VS));
    resources.push(dr(CART_DR));
    resources.push(vs(
        &CART_VS.replace("name: cart, namespace", "name: cart-copy, namespace")
    ));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let conflict = out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::ConflictingHost)
        .unwrap();
    assert_eq!(conflict.name, "cart-copy");
}

#[test]
fn empty_subset_is_reported() {
    let mut resources = base_resources();
    resources.push(dr(
        &CART_DR.replace("labels: {version: v2}", "labels: {version: v9}")
    ));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let e = out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::EmptySubset)
        .unwrap();
    assert!(e.message.contains("v2"), "{}", e.message);
}

/// `db` (TCP 5432) has a v2 workload and subset; its VirtualService routes by
/// port, by client and by weight, and has a `tls` route.
fn tcp_routed_mesh() -> trellis_model::MeshModel {
    let mut resources = base_resources();
    resources.extend([
        workload(
            "shop",
            "db-2",
            "127.0.0.15",
            &[("app", "db"), ("version", "v2")],
        ),
        canary_client(),
        dr(r#"
metadata: {name: db, namespace: shop}
spec: {host: db, subsets: [{name: v2, labels: {version: v2}}]}
"#),
        vs(r#"
metadata: {name: db, namespace: shop}
spec:
  hosts: [db]
  tcp:
  - match: [{port: 5433}]
    route: [{destination: {host: db, subset: v2}}]
  - match: [{sourceLabels: {track: canary}}]
    route: [{destination: {host: db, subset: v2}}]
  - match: [{destinationSubnets: [192.168.0.0/16]}]
    route: [{destination: {host: db, subset: v2}}]
  - route:
    - {destination: {host: db}, weight: 75}
    - {destination: {host: db, subset: v2}, weight: 20}
    - {destination: {host: db, subset: v9}, weight: 5}
  tls:
  - match: [{sniHosts: [db]}]
    route: [{destination: {host: db}}]
"#),
    ]);
    model_of(resources)
}

/// A listener's first TCP proxy.
fn first_tcp_proxy(
    l: &envoy_types::pb::envoy::config::listener::v3::Listener,
) -> envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy {
    chain_tcp_proxy(&l.filter_chains[0])
}

/// The (cluster, weight) pairs of a listener's first TCP proxy.
fn tcp_destinations(
    l: &envoy_types::pb::envoy::config::listener::v3::Listener,
) -> Vec<(String, u32)> {
    proxied_to(first_tcp_proxy(l))
}

const DB: &str = "outbound|5432||db.shop.svc.cluster.local";
const DB_V2: &str = "outbound|5432|v2|db.shop.svc.cluster.local";

/// `tcp.idleTimeout`, `tcp.maxConnectionDuration` and `consistentHash.useSourceIp` of a TCP service's
/// DestinationRule reach the TCP proxy that carries its connections; without
/// them the proxy keeps Envoy's defaults.
#[test]
fn a_tcp_services_idle_timeout_and_source_ip_hash_reach_its_tcp_proxy() {
    use envoy_types::pb::envoy::r#type::v3::hash_policy::PolicySpecifier;
    let local = |out: &ProxyResources| {
        let l = out.listeners.iter().find(|l| l.name == "127.0.0.10_25432");
        first_tcp_proxy(l.unwrap())
    };
    let plain = local(&web_sidecar(&model_of(base_resources())));
    assert_eq!(plain.idle_timeout, None);
    assert_eq!(plain.max_downstream_connection_duration, None);
    assert!(plain.hash_policy.is_empty());
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: db, namespace: shop}
spec:
  host: db
  trafficPolicy:
    connectionPool: {tcp: {idleTimeout: 30s, maxConnectionDuration: 1h}}
    loadBalancer: {consistentHash: {useSourceIp: true}}
"#));
    let out = web_sidecar(&model_of(resources));
    let tcp = local(&out);
    assert_eq!(tcp.idle_timeout.unwrap().seconds, 30);
    assert_eq!(
        tcp.max_downstream_connection_duration.unwrap().seconds,
        3600
    );
    assert!(matches!(
        tcp.hash_policy[0].policy_specifier,
        Some(PolicySpecifier::SourceIp(_))
    ));
    // so does the `CONNECT` route that tunnels to it
    let connect = action(&vhost(&out, "db.shop.svc.cluster.local:5432").routes[0]).clone();
    assert_eq!(connect.idle_timeout.unwrap().seconds, 30);
    let max = connect.max_stream_duration.unwrap().max_stream_duration;
    assert_eq!(max.unwrap().seconds, 3600);
    assert_eq!(connect.hash_policy.len(), 1);
    let db = cluster(&out, DB);
    assert_eq!(
        db.lb_policy,
        envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy::RingHash as i32
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

/// `tls` routes take connections to a TLS port by SNI: one chain per name
/// (the first route naming it keeps it; a route for other clients is not
/// here), then the port's default for any other name. On the interception
/// listener of the service's IP and on universal mode's local port alike.
#[test]
fn tls_routes_take_connections_to_a_tls_port_by_sni() {
    let mut resources = base_resources();
    resources.extend([
        service("shop", "vault", "vault", &[("tls", 443, 8443)]),
        workload(
            "shop",
            "vault-1",
            "127.0.0.31",
            &[("app", "vault"), ("version", "v1")],
        ),
        workload(
            "shop",
            "vault-2",
            "127.0.0.32",
            &[("app", "vault"), ("version", "v2")],
        ),
        canary_client(),
        dr(r#"
metadata: {name: vault, namespace: shop}
spec: {host: vault, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}
"#),
        vs(r#"
metadata: {name: vault, namespace: shop}
spec:
  hosts: [vault]
  tls:
  - match: [{sniHosts: [canary.vault.example.com], sourceLabels: {track: canary}}]
    route: [{destination: {host: vault, subset: v1}}]
  - match: [{sniHosts: [v2.vault.example.com, canary.vault.example.com]}]
    route: [{destination: {host: vault, subset: v2}}]
  - match: [{sniHosts: [v2.vault.example.com, v1.vault.example.com]}]
    route: [{destination: {host: vault, subset: v1}}]
"#),
    ]);
    let model = model_of(resources);
    let host = "vault.shop.svc.cluster.local";
    let cluster = |subset: &str| format!("outbound|443|{subset}|{host}");
    let expected = vec![
        (
            vec![
                "v2.vault.example.com".to_string(),
                "canary.vault.example.com".to_string(),
            ],
            vec![(cluster("v2"), 100)],
        ),
        (
            vec!["v1.vault.example.com".to_string()],
            vec![(cluster("v1"), 100)],
        ),
        (vec![], vec![(cluster(""), 100)]),
    ];
    let chains_of = |l: &envoy_types::pb::envoy::config::listener::v3::Listener| {
        assert!(
            !l.listener_filters.is_empty(),
            "{}: the TLS inspector reads the SNI",
            l.name
        );
        l.filter_chains
            .iter()
            .map(|c| {
                let names = (c.filter_chain_match.as_ref())
                    .map(|m| m.server_names.clone())
                    .unwrap_or_default();
                (names, proxied_to(chain_tcp_proxy(c)))
            })
            .collect::<Vec<_>>()
    };
    let interception = trellis_translate::TranslateOptions {
        sds: trellis_translate::SdsSource::Ads,
        ..Default::default()
    };
    let out = Translator::new(&model, interception).translate(&Proxy::sidecar("shop", "web-1"));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let l = out
        .listeners
        .iter()
        .find(|l| l.name == "10.0.0.1_443")
        .unwrap();
    assert_eq!(chains_of(l), expected);

    let mut options = explicit_options();
    if let trellis_translate::ListenerShape::Explicit(ports) = &mut options.shape {
        ports
            .tcp_outbound_ports
            .insert((host.to_string(), 443), 20443);
    }
    let mut translator = Translator::new(&model, options);
    // The canary client gets its route, and the translator does not share
    // that scope with web-1, whose labels do not satisfy the match.
    let canary = translator.translate(&Proxy::sidecar("shop", "web-2"));
    let l = (canary.listeners.iter())
        .find(|l| l.name == "127.0.0.14_20443")
        .unwrap();
    assert_eq!(
        chains_of(l)[0],
        (
            vec!["canary.vault.example.com".to_string()],
            vec![(cluster("v1"), 100)]
        )
    );
    let out = translator.translate(&Proxy::sidecar("shop", "web-1"));
    let l = out
        .listeners
        .iter()
        .find(|l| l.name == "127.0.0.10_20443")
        .unwrap();
    assert_eq!(chains_of(l), expected);
}

/// The first `tcp` route that applies to the client and the port serves
/// it: on universal mode's local TCP port, through `CONNECT`, and on the
/// interception shape's listener of the service's IP.
#[test]
fn tcp_routes_send_connections_to_their_destinations_by_weight() {
    let model = tcp_routed_mesh();
    let weighted = vec![(DB.to_string(), 75), (DB_V2.to_string(), 20)];
    let out = web_sidecar(&model);
    let local = out
        .listeners
        .iter()
        .find(|l| l.name == "127.0.0.10_25432")
        .unwrap();
    assert_eq!(tcp_destinations(local), weighted);
    let connect = &vhost(&out, "db.shop.svc.cluster.local:5432").routes[0];
    assert!(is_connect(connect));
    let Some(ClusterSpecifier::WeightedClusters(w)) = &action(connect).cluster_specifier else {
        panic!("not weighted: {connect:?}");
    };
    let tunnel: Vec<(String, u32)> = (w.clusters.iter())
        .map(|c| (c.name.clone(), c.weight.as_ref().unwrap().value))
        .collect();
    assert_eq!(tunnel, weighted);
    // The destination that does not resolve is reported and left out.
    let unknown = out
        .errors
        .iter()
        .find(|e| e.path == "spec.tcp[3].route[2].destination")
        .expect("the unknown subset is reported");
    assert_eq!(unknown.code, ErrorCode::UnknownSubset);

    // The canary client gets its own route.
    let canary =
        Translator::new(&model, explicit_options()).translate(&Proxy::sidecar("shop", "web-2"));
    let local = canary
        .listeners
        .iter()
        .find(|l| l.name == "127.0.0.14_25432")
        .unwrap();
    assert_eq!(tcp_destinations(local), [(DB_V2.to_string(), 100)]);

    // Interception: the listener of db's IP.
    let options = trellis_translate::TranslateOptions {
        sds: trellis_translate::SdsSource::Ads,
        ..Default::default()
    };
    let intercepted = Translator::new(&model, options).translate(&Proxy::sidecar("shop", "web-1"));
    let vip = intercepted
        .listeners
        .iter()
        .find(|l| l.name == "10.0.0.1_5432")
        .unwrap();
    assert_eq!(tcp_destinations(vip), weighted);
}

/// The cluster a route sends to (one destination).
fn cluster_of(route: &Route) -> &str {
    match &action(route).cluster_specifier {
        Some(ClusterSpecifier::Cluster(c)) => c,
        other => panic!("not one cluster: {other:?}"),
    }
}

/// `web-2`: a client of the canary track.
fn canary_client() -> trellis_model::Resource {
    workload(
        "shop",
        "web-2",
        "127.0.0.14",
        &[("app", "web"), ("track", "canary")],
    )
}

/// `web-2` is a canary client; cart has subsets v1 and v2.
fn client_matched_mesh(rules: &str) -> trellis_model::MeshModel {
    let mut resources = base_resources();
    resources.extend([
        canary_client(),
        dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#),
        vs(rules),
    ]);
    model_of(resources)
}

const V1: &str = "outbound|8080|v1|cart.shop.svc.cluster.local";
const V2: &str = "outbound|8080|v2|cart.shop.svc.cluster.local";

/// `sourceLabels`, `sourceNamespace` and `gateways` name the client, which
/// Envoy cannot see in a request: they decide which sidecars get a match.
/// Programmed everywhere, the canary rule would send every client to v2.
#[test]
fn matches_that_name_their_clients_are_programmed_only_into_those_clients() {
    let model = client_matched_mesh(
        r#"
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - match:
    - {sourceLabels: {track: canary}, headers: {x-debug: {exact: "1"}}}
    - {sourceLabels: {track: canary}, uri: {prefix: /basket}}
    - {sourceLabels: {track: stable}}
    route: [{destination: {host: cart, subset: v2}}]
  - match: [{sourceNamespace: other}]
    route: [{destination: {host: cart, subset: v2}}]
  - match: [{gateways: [shop-gw]}, {gateways: [mesh], uri: {prefix: /v2}}]
    route: [{destination: {host: cart, subset: v2}}]
  - route: [{destination: {host: cart, subset: v1}}]
"#,
    );
    let mut translator = Translator::new(&model, explicit_options());
    let routes_of = |out: &ProxyResources| -> Vec<(Option<String>, String)> {
        http_routes(&vhost(out, &format!("{CART}:8080")))
            .iter()
            .map(|r| {
                let prefix = match r.r#match.as_ref().unwrap().path_specifier.as_ref() {
                    Some(
                        envoy_types::pb::envoy::config::route::v3::route_match::PathSpecifier::Prefix(
                            p,
                        ),
                    ) => Some(p.clone()),
                    _ => None,
                };
                (prefix, cluster_of(r).to_string())
            })
            .collect()
    };
    let stable = translator.translate(&Proxy::sidecar("shop", "web-1"));
    assert_eq!(
        routes_of(&stable),
        [
            (Some("/v2".into()), V2.into()),
            (Some("/".into()), V1.into())
        ],
        "web-1: only the mesh match of the third rule, then the default"
    );
    let canary = translator.translate(&Proxy::sidecar("shop", "web-2"));
    let canary_routes = routes_of(&canary);
    assert_eq!(canary_routes.len(), 4, "{canary_routes:?}");
    assert_eq!(canary_routes[0].1, V2, "the x-debug match");
    assert_eq!(canary_routes[1], (Some("/basket".into()), V2.into()));
    assert_eq!(canary_routes[2], (Some("/v2".into()), V2.into()));
    assert_eq!(canary_routes[3], (Some("/".into()), V1.into()));
    // One translator keyed by the selectors each proxy satisfies gives what
    // a fresh translation of each proxy gives.
    for name in ["web-1", "web-2"] {
        let proxy = Proxy::sidecar("shop", name);
        assert_eq!(
            Translator::new(&model, explicit_options()).translate(&proxy),
            translator.translate(&proxy),
            "{name}"
        );
    }
}

/// As in Istio: when none of a VirtualService's http routes applies to a
/// sidecar, the host keeps its default route there (it is not closed).
#[test]
fn a_virtual_service_with_no_route_for_a_client_leaves_it_the_default_route() {
    let model = client_matched_mesh(
        r#"
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - match: [{sourceLabels: {track: canary}}]
    route: [{destination: {host: cart, subset: v2}}]
"#,
    );
    let mut translator = Translator::new(&model, explicit_options());
    let stable = translator.translate(&Proxy::sidecar("shop", "web-1"));
    let routes = http_routes(&vhost(&stable, &format!("{CART}:8080")));
    assert_eq!(routes.len(), 1);
    assert_eq!(cluster_of(&routes[0]), format!("outbound|8080||{CART}"));
    let canary = translator.translate(&Proxy::sidecar("shop", "web-2"));
    let routes = http_routes(&vhost(&canary, &format!("{CART}:8080")));
    assert_eq!(routes.len(), 1);
    assert_eq!(cluster_of(&routes[0]), V2);
    assert!(stable.errors.is_empty() && canary.errors.is_empty());
}

/// A DestinationRule with a `workloadSelector` applies to the clients it
/// selects in its own namespace, ahead of the rule without one; every other
/// client keeps the rule without one.
#[test]
fn a_destination_rule_with_a_workload_selector_applies_to_the_clients_it_selects() {
    let mut resources = base_resources();
    resources.extend([
        canary_client(),
        workload("other", "api-1", "127.0.0.21", &[("track", "canary")]),
        dr(r#"
metadata: {name: cart, namespace: shop}
spec: {host: cart, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
"#),
        dr(r#"
metadata: {name: cart-for-canaries, namespace: shop}
spec:
  host: cart
  workloadSelector: {matchLabels: {track: canary}}
  trafficPolicy: {loadBalancer: {simple: LEAST_REQUEST}}
"#),
    ]);
    let model = model_of(resources);
    let mut translator = Translator::new(&model, explicit_options());
    let policy_of = |out: &ProxyResources| {
        let cart = cluster(out, &format!("outbound|8080||{CART}"));
        envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy::try_from(cart.lb_policy)
            .unwrap()
    };
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbPolicy;
    for (ns, name, expected) in [
        ("shop", "web-1", LbPolicy::Random),
        ("shop", "web-2", LbPolicy::LeastRequest),
        // the selector does not reach across namespaces
        ("other", "api-1", LbPolicy::Random),
    ] {
        let proxy = Proxy::sidecar(ns, name);
        let out = translator.translate(&proxy);
        assert_eq!(policy_of(&out), expected, "{name}");
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        // one translator keyed by the selectors each proxy satisfies gives
        // what a fresh translation gives
        assert_eq!(
            out,
            Translator::new(&model, explicit_options()).translate(&proxy),
            "{name}"
        );
    }
}

/// A port's own outlier detection replaces the DestinationRule's on that port.
#[test]
fn port_level_outlier_detection_applies_to_its_port() {
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy:
    outlierDetection: {consecutive5xxErrors: 2, baseEjectionTime: 30s}
    portLevelSettings:
    - port: {number: 8080}
      outlierDetection: {consecutive5xxErrors: 9, baseEjectionTime: 5s, minHealthPercent: 40}
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let cart = cluster(&out, &format!("outbound|8080||{CART}"));
    let o = cart.outlier_detection.as_ref().unwrap();
    assert_eq!(o.consecutive_5xx.unwrap().value, 9);
    assert_eq!(o.base_ejection_time.unwrap().seconds, 5);
    let panic_threshold = cart
        .common_lb_config
        .as_ref()
        .unwrap()
        .healthy_panic_threshold;
    assert_eq!(panic_threshold.unwrap().value, 40.0, "minHealthPercent");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

/// A cluster's upstream TLS context, as text to search.
fn upstream_tls_text(cluster: &envoy_types::pb::envoy::config::cluster::v3::Cluster) -> String {
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
    let socket = cluster.transport_socket.as_ref();
    let Some(ConfigType::TypedConfig(any)) = socket.and_then(|s| s.config_type.as_ref()) else {
        panic!("{}: no TLS context: {socket:?}", cluster.name);
    };
    let context = <UpstreamTlsContext as prost::Message>::decode(any.value.as_slice()).unwrap();
    format!("{context:?}")
}

/// ISTIO_MUTUAL with `subjectAltNames`: the server must present one of them,
/// instead of an endpoint's identity.
#[test]
fn istio_mutual_checks_the_named_identities() {
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy:
    tls: {mode: ISTIO_MUTUAL, subjectAltNames: ["spiffe://cluster.local/ns/payments/sa/cart"]}
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let cart = cluster(&out, &format!("outbound|8080||{CART}"));
    let decoded = upstream_tls_text(cart);
    assert!(
        decoded.contains("spiffe://cluster.local/ns/payments/sa/cart"),
        "{decoded}"
    );
    assert!(
        !decoded.contains("spiffe://cluster.local/ns/shop/sa/cart\""),
        "{decoded}"
    );
}

/// A ServiceEntry's `subjectAltNames` are the identities its servers must
/// present to the mesh's mTLS.
#[test]
fn a_service_entrys_subject_alt_names_are_checked_under_istio_mutual() {
    let mut resources = base_resources();
    let entry: trellis_api::networking::ServiceEntry = from_yaml(
        r#"
metadata: {name: vault, namespace: shop}
spec:
  hosts: [vault.internal]
  location: MESH_INTERNAL
  resolution: STATIC
  ports: [{number: 8200, name: tcp, protocol: TCP}]
  endpoints: [{address: 127.0.0.40}]
  subjectAltNames: ["spiffe://cluster.local/ns/vault/sa/vault"]
"#,
    );
    resources.push(trellis_model::Resource::ServiceEntry(Box::new(entry)));
    resources.push(dr(
        "metadata: {name: vault, namespace: shop}\nspec: {host: vault.internal, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}\n",
    ));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let vault = cluster(&out, "outbound|8200||vault.internal");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let text = upstream_tls_text(vault);
    assert!(
        text.contains("spiffe://cluster.local/ns/vault/sa/vault"),
        "{text}"
    );
}

/// consistentHash on the client's IP, with a ring size: the route hashes on
/// the connection's source address and the cluster sizes its ring.
#[test]
fn consistent_hash_on_the_source_ip_with_a_ring_size() {
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy:
    loadBalancer: {consistentHash: {useSourceIp: true, minimumRingSize: 2048}}
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let cart = cluster(&out, &format!("outbound|8080||{CART}"));
    assert_eq!(cart.lb_policy, LbPolicy::RingHash as i32);
    assert!(
        format!("{:?}", cart.lb_config)
            .contains("minimum_ring_size: Some(UInt64Value { value: 2048 })"),
        "{:?}",
        cart.lb_config
    );
    let route = &http_routes(&vhost(&out, &format!("{CART}:8080")))[0];
    let policy = format!("{:?}", action(route).hash_policy);
    assert!(
        policy.contains("ConnectionProperties(ConnectionProperties { source_ip: true })"),
        "{policy}"
    );
}

/// connectionPool keepalive, idle and lifetime limits, and the upstream
/// protocol choices reach the cluster.
#[test]
fn connection_pool_keepalive_timeouts_and_upstream_protocol() {
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    let cluster_of = |pool: &str| {
        let mut resources = base_resources();
        resources.push(dr(&format!(
            "metadata: {{name: cart, namespace: shop}}\nspec: {{host: cart, trafficPolicy: {{connectionPool: {pool}}}}}\n"
        )));
        let model = model_of(resources);
        let out = web_sidecar(&model);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let cart = cluster(&out, &format!("outbound|8080||{CART}")).clone();
        let options = cart
            .typed_extension_protocol_options
            .get("envoy.extensions.upstreams.http.v3.HttpProtocolOptions")
            .map(|any| {
                <HttpProtocolOptions as prost::Message>::decode(any.value.as_slice()).unwrap()
            });
        (cart, options)
    };
    let (cart, options) = cluster_of(
        "{tcp: {tcpKeepalive: {probes: 3, time: 30s, interval: 5s}, maxConnectionDuration: 1h}, http: {idleTimeout: 90s, h2UpgradePolicy: UPGRADE, maxConcurrentStreams: 64}}",
    );
    let keepalive = cart
        .upstream_connection_options
        .unwrap()
        .tcp_keepalive
        .unwrap();
    assert_eq!(
        (
            keepalive.keepalive_probes.unwrap().value,
            keepalive.keepalive_time.unwrap().value,
            keepalive.keepalive_interval.unwrap().value
        ),
        (3, 30, 5)
    );
    let options = format!("{:?}", options.expect("protocol options"));
    for wanted in [
        "idle_timeout: Some(Duration { seconds: 90",
        "max_connection_duration: Some(Duration { seconds: 3600",
        "Http2ProtocolOptions(Http2ProtocolOptions",
        "max_concurrent_streams: Some(UInt32Value { value: 64 })",
    ] {
        assert!(options.contains(wanted), "{wanted} in {options}");
    }
    let (_, options) = cluster_of("{http: {useClientProtocol: true}}");
    let options = format!("{:?}", options.expect("protocol options"));
    assert!(options.contains("UseDownstreamProtocolConfig"), "{options}");
    let (cart, options) = cluster_of("{tcp: {maxConnections: 5}}");
    assert!(options.is_none() && cart.upstream_connection_options.is_none());
}

/// Balancing as Istio chooses it: LEAST_REQUEST when no rule names an
/// algorithm, ROUND_ROBIN only when asked for; PASSTHROUGH is reported and
/// gets the default; the inbound cluster (one endpoint) gets no choice.
#[test]
fn load_balancing_defaults_to_least_request_as_in_istio() {
    let translate = |rule: Option<&str>| {
        let mut resources = base_resources();
        if let Some(policy) = rule {
            resources.push(dr(&format!(
                "metadata: {{name: cart, namespace: shop}}\nspec: {{host: cart, trafficPolicy: {{loadBalancer: {policy}}}}}\n"
            )));
        }
        let out = web_sidecar(&model_of(resources));
        let policy = |name: &str| LbPolicy::try_from(cluster(&out, name).lb_policy).unwrap();
        let errors: Vec<String> = out.errors.iter().map(|e| e.path.clone()).collect();
        (
            policy(&format!("outbound|8080||{CART}")),
            policy("inbound|8000||"),
            errors,
        )
    };
    assert_eq!(
        translate(None),
        (LbPolicy::LeastRequest, LbPolicy::RoundRobin, vec![])
    );
    assert_eq!(
        translate(Some("{simple: ROUND_ROBIN}")).0,
        LbPolicy::RoundRobin
    );
    assert_eq!(
        translate(Some("{simple: UNSPECIFIED}")).0,
        LbPolicy::LeastRequest
    );
    assert_eq!(translate(Some("{simple: RANDOM}")).0, LbPolicy::Random);
    assert_eq!(
        translate(Some("{simple: PASSTHROUGH}")),
        (
            LbPolicy::LeastRequest,
            LbPolicy::RoundRobin,
            vec!["spec.trafficPolicy.loadBalancer.simple".to_string()]
        )
    );
}

/// Routes are named as Istio names them: the rule's `name` (else the
/// VirtualService's name and the rule's index), then a match's own `name`.
#[test]
fn routes_carry_the_rule_and_match_names() {
    let mut resources = base_resources();
    resources.push(vs(r#"
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - name: by-header
    match:
    - {name: canary, headers: {x-track: {exact: canary}}}
    - headers: {x-track: {exact: beta}}
    route: [{destination: {host: cart}}]
  - route: [{destination: {host: cart}}]
"#));
    let out = web_sidecar(&model_of(resources));
    let names: Vec<String> = http_routes(&vhost(&out, &format!("{CART}:8080")))
        .into_iter()
        .map(|r| r.name)
        .collect();
    assert_eq!(names, ["by-header.canary", "by-header.1", "shop.cart.1"]);
}

/// A Sidecar resource's `ingress` listeners replace the inbound ports of the
/// workload's services; each sends its port to its `defaultEndpoint`. What
/// Trellis does not do on them is reported on the field, and a listener it
/// cannot serve (a Unix socket) is left out.
#[test]
fn sidecar_ingress_listeners_replace_the_service_ports() {
    let mut r = base_resources();
    r.push(trellis_model::Resource::Sidecar(Box::new(from_yaml(
        r#"
metadata: {name: web-in, namespace: shop}
spec:
  workloadSelector: {labels: {app: web}}
  ingress:
  - port: {number: 9000, protocol: HTTP, name: http}
    defaultEndpoint: 127.0.0.1:7000
  - port: {number: 9001, protocol: TCP, name: tcp}
    defaultEndpoint: 0.0.0.0:7001
    tls: {mode: SIMPLE, credentialName: web-cert}
  - port: {number: 9002, protocol: HTTP, name: http-sock}
    defaultEndpoint: unix:///run/web.sock
  egress:
  - hosts: ["./*"]
    captureMode: NONE
"#,
    ))));
    let model = model_of(r);
    let out = web_sidecar(&model);
    let found: Vec<(&str, &str)> = (out.errors.iter())
        .map(|e| (e.kind.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(
        found,
        [
            ("Sidecar", "spec.egress[0].captureMode"),
            ("Sidecar", "spec.ingress[1].tls"),
            ("Sidecar", "spec.ingress[2].defaultEndpoint"),
        ],
        "{:?}",
        out.errors
    );
    let names: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
    for (name, there) in [
        ("127.0.0.10_9000", true),
        ("127.0.0.10_9001", true),
        ("127.0.0.10_9002", false),
        // the web service's target port
        ("127.0.0.10_8000", false),
    ] {
        assert_eq!(names.contains(&name), there, "{name} in {names:?}");
    }
    let endpoint = |name: &str| {
        let c = cluster(&out, name);
        let lb = &c.load_assignment.as_ref().unwrap().endpoints[0].lb_endpoints[0];
        format!("{lb:?}")
    };
    let to_app = endpoint("inbound|9000||");
    assert!(
        to_app.contains("127.0.0.1") && to_app.contains("7000"),
        "{to_app}"
    );
    let to_own_address = endpoint("inbound|9001||");
    assert!(
        to_own_address.contains("127.0.0.10") && to_own_address.contains("7001"),
        "{to_own_address}"
    );
}

/// `match[].statPrefix` becomes the route's `stat_prefix` (per match);
/// `fault.abort.grpcStatus` an abort with that gRPC code (UNAVAILABLE = 14);
/// `corsPolicy.unmatchedPreflights` Envoy's `forward_not_matching_preflights`
/// (IGNORE false, FORWARD true, unset left to Envoy's default, forwarding).
#[test]
fn stat_prefix_grpc_abort_and_unmatched_preflights_reach_the_routes() {
    use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
    use envoy_types::pb::envoy::extensions::filters::http::fault::v3::fault_abort::ErrorType;
    use prost::Message;
    let mut resources = base_resources();
    resources.push(vs(r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - name: drill
    match:
    - {uri: {prefix: /a}, statPrefix: cart_a}
    - {uri: {prefix: /b}}
    fault: {abort: {grpcStatus: UNAVAILABLE, percentage: {value: 10}}}
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}], unmatchedPreflights: IGNORE}
    route: [{destination: {host: cart}}]
  - name: forward
    corsPolicy: {allowOrigins: [{exact: "https://a.example"}], unmatchedPreflights: FORWARD}
    route: [{destination: {host: cart}}]
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let routes = http_routes(&vhost(&out, &format!("{CART}:8080")));
    let prefixes: Vec<&str> = routes.iter().map(|r| r.stat_prefix.as_str()).collect();
    assert_eq!(prefixes, ["cart_a", "", ""]);
    let fault = HttpFault::decode(
        routes[0].typed_per_filter_config["envoy.filters.http.fault"]
            .value
            .as_slice(),
    )
    .unwrap();
    let abort = fault.abort.unwrap();
    assert_eq!(abort.error_type, Some(ErrorType::GrpcStatus(14)));
    assert_eq!(abort.percentage.unwrap().numerator, 100_000);
    let forward = |route: &Route| {
        CorsPolicy::decode(
            route.typed_per_filter_config["envoy.filters.http.cors"]
                .value
                .as_slice(),
        )
        .unwrap()
        .forward_not_matching_preflights
        .map(|b| b.value)
    };
    assert_eq!(forward(&routes[0]), Some(false));
    assert_eq!(forward(&routes[1]), Some(false));
    assert_eq!(forward(&routes[2]), Some(true));
}

/// consistentHash algorithms as Istio picks them: `maglev` (MAGLEV with its
/// table size), `ringHash` (RING_HASH with its ring size), or the deprecated
/// `minimumRingSize` (RING_HASH); a size left out leaves Envoy's default.
/// The deprecated `outlierDetection.consecutiveErrors` ejects on gateway
/// errors only (5xx ejection off), unless consecutiveGatewayErrors is set.
#[test]
fn maglev_ring_hash_and_deprecated_consecutive_errors() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbConfig;
    let cart_with = |policy: &str| {
        let mut resources = base_resources();
        resources.push(dr(&format!(
            "metadata: {{name: cart, namespace: shop}}\nspec: {{host: cart, trafficPolicy: {policy}}}\n"
        )));
        let model = model_of(resources);
        let out = web_sidecar(&model);
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        cluster(&out, &format!("outbound|8080||{CART}")).clone()
    };
    let c = cart_with(
        "{loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 1031}}}}",
    );
    assert_eq!(c.lb_policy, LbPolicy::Maglev as i32);
    let Some(LbConfig::MaglevLbConfig(m)) = &c.lb_config else {
        panic!("maglev config: {:?}", c.lb_config);
    };
    assert_eq!(m.table_size.unwrap().value, 1031);
    let c = cart_with("{loadBalancer: {consistentHash: {httpHeaderName: x-user, maglev: {}}}}");
    assert_eq!(c.lb_policy, LbPolicy::Maglev as i32);
    assert_eq!(c.lb_config, None);
    let c = cart_with(
        "{loadBalancer: {consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 4096}}}}",
    );
    assert_eq!(c.lb_policy, LbPolicy::RingHash as i32);
    let Some(LbConfig::RingHashLbConfig(r)) = &c.lb_config else {
        panic!("ring hash config: {:?}", c.lb_config);
    };
    assert_eq!(r.minimum_ring_size.unwrap().value, 4096);

    let c = cart_with("{outlierDetection: {consecutiveErrors: 3}}");
    let o = c.outlier_detection.unwrap();
    assert_eq!(o.consecutive_gateway_failure.unwrap().value, 3);
    assert_eq!(o.enforcing_consecutive_gateway_failure.unwrap().value, 100);
    assert_eq!(o.consecutive_5xx, None);
    assert_eq!(o.enforcing_consecutive_5xx.unwrap().value, 0);
    // The newer fields win.
    let c = cart_with(
        "{outlierDetection: {consecutiveErrors: 3, consecutiveGatewayErrors: 7, consecutive5xxErrors: 9}}",
    );
    let o = c.outlier_detection.unwrap();
    assert_eq!(o.consecutive_gateway_failure.unwrap().value, 7);
    assert_eq!(o.consecutive_5xx.unwrap().value, 9);
    assert_eq!(o.enforcing_consecutive_5xx.unwrap().value, 100);
    // 0 is off, as unset.
    let c = cart_with("{outlierDetection: {consecutiveErrors: 0}}");
    let o = c.outlier_detection.unwrap();
    assert_eq!(o.consecutive_gateway_failure, None);
    assert_eq!(o.enforcing_consecutive_gateway_failure.unwrap().value, 0);
    assert_eq!(o.enforcing_consecutive_5xx, None);
}

/// `warmupDurationSecs` is Envoy's slow start for LEAST_REQUEST (the default)
/// and ROUND_ROBIN; a subset's own `loadBalancer` replaces the rule's, warmup
/// included, and a subset without one inherits it.
#[test]
fn warmup_is_slow_start_replaced_with_the_load_balancer() {
    use envoy_types::pb::envoy::config::cluster::v3::cluster::LbConfig;
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy: {loadBalancer: {warmupDurationSecs: 30s}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {loadBalancer: {simple: ROUND_ROBIN}}}
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let window = |name: &str| {
        let c = cluster(&out, name);
        match &c.lb_config {
            Some(LbConfig::LeastRequestLbConfig(l)) => {
                assert_eq!(c.lb_policy, LbPolicy::LeastRequest as i32);
                l.slow_start_config
                    .as_ref()?
                    .slow_start_window
                    .as_ref()
                    .map(|d| d.seconds)
            }
            Some(LbConfig::RoundRobinLbConfig(r)) => r
                .slow_start_config
                .as_ref()?
                .slow_start_window
                .as_ref()
                .map(|d| d.seconds),
            _ => None,
        }
    };
    assert_eq!(window(&format!("outbound|8080||{CART}")), Some(30));
    assert_eq!(window(&format!("outbound|8080|v1|{CART}")), Some(30));
    assert_eq!(window(&format!("outbound|8080|v2|{CART}")), None);
    assert_eq!(
        cluster(&out, &format!("outbound|8080|v2|{CART}")).lb_policy,
        LbPolicy::RoundRobin as i32
    );
}

/// `proxyProtocol` wraps whatever transport socket the cluster has, as Istio
/// does: plaintext (`tls: DISABLE`), mesh mTLS (`ISTIO_MUTUAL`), or each
/// socket of the auto mTLS matches; a subset may set it alone.
#[test]
fn proxy_protocol_wraps_the_cluster_transport_socket() {
    use envoy_types::pb::envoy::config::core::v3::TransportSocket;
    use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
    use envoy_types::pb::envoy::extensions::transport_sockets::proxy_protocol::v3::ProxyProtocolUpstreamTransport;
    use prost::Message;
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy: {tls: {mode: DISABLE}, proxyProtocol: {version: V2}}
  subsets:
  - {name: v1, labels: {version: v1}, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {proxyProtocol: {}}}
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    // (version, the wrapped socket's name)
    let wrapped = |socket: &TransportSocket| {
        assert_eq!(
            socket.name,
            "envoy.transport_sockets.upstream_proxy_protocol"
        );
        let Some(ConfigType::TypedConfig(any)) = &socket.config_type else {
            panic!("{socket:?}")
        };
        let pp = ProxyProtocolUpstreamTransport::decode(any.value.as_slice()).unwrap();
        let inner = pp.transport_socket.expect("a wrapped socket");
        (pp.config.expect("config").version, inner.name)
    };
    let plain = cluster(&out, &format!("outbound|8080||{CART}"));
    assert_eq!(
        wrapped(plain.transport_socket.as_ref().expect("a socket")),
        (1, "envoy.transport_sockets.raw_buffer".to_string()),
        "V2 (Envoy's enum: V1 = 0, V2 = 1)"
    );
    let mutual = cluster(&out, &format!("outbound|8080|v1|{CART}"));
    assert_eq!(
        wrapped(mutual.transport_socket.as_ref().expect("a socket")),
        (1, "envoy.transport_sockets.tls".to_string())
    );
    // v2's own policy: V1, and the rule's DISABLE
    let v2 = cluster(&out, &format!("outbound|8080|v2|{CART}"));
    assert_eq!(
        wrapped(v2.transport_socket.as_ref().expect("a socket")).0,
        0,
        "V1"
    );
    // no DestinationRule: auto mTLS matches, no wrapping
    let other = (out.clusters.iter())
        .find(|c| c.name.starts_with("outbound|") && !c.name.ends_with(CART))
        .expect("another outbound cluster");
    assert!(
        other.transport_socket.is_none()
            && other.transport_socket_matches.iter().all(|m| {
                m.transport_socket
                    .as_ref()
                    .is_some_and(|s| s.name != "envoy.transport_sockets.upstream_proxy_protocol")
            }),
        "{other:?}"
    );
}

/// `tunnel` reaches the TCP proxy of the host's connections as Envoy's
/// tunneling config (`targetHost:targetPort`, IPv6 in brackets; POST when
/// asked, which validation refuses but the translator maps as Istio does),
/// and the `CONNECT` route is passed on to the tunnelling proxy for that
/// target; a subset's cluster tunnels by the subset's own setting only.
#[test]
fn a_tunnel_reaches_the_tcp_proxy_and_the_connect_route() {
    use envoy_types::pb::envoy::config::route::v3::route_action::HostRewriteSpecifier;
    let local = |out: &ProxyResources| {
        let l = out.listeners.iter().find(|l| l.name == "127.0.0.10_25432");
        first_tcp_proxy(l.unwrap())
    };
    let with = |rule: &str| {
        let mut resources = base_resources();
        resources.push(dr(rule));
        let out = web_sidecar(&model_of(resources));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out
    };
    let out = with(
        "metadata: {name: db, namespace: shop}\n\
         spec: {host: db, trafficPolicy: {tunnel: {targetHost: 'fd00::1', targetPort: 5432, protocol: POST}}}\n",
    );
    let tunnel = local(&out).tunneling_config.expect("a tunnel");
    assert_eq!(
        (tunnel.hostname.as_str(), tunnel.use_post),
        ("[fd00::1]:5432", true)
    );
    let connect = action(&vhost(&out, "db.shop.svc.cluster.local:5432").routes[0]).clone();
    assert!(
        connect.upgrade_configs[0].connect_config.is_none(),
        "not terminated"
    );
    assert_eq!(
        connect.host_rewrite_specifier,
        Some(HostRewriteSpecifier::HostRewriteLiteral(
            "[fd00::1]:5432".into()
        ))
    );
    // the rule's tunnel does not reach a subset without one of its own
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: db, namespace: shop}
spec:
  host: db
  trafficPolicy: {tunnel: {targetHost: db.internal, targetPort: 1}}
  subsets: [{name: v2, labels: {version: v2}}]
"#));
    resources.push(vs(r#"
metadata: {name: db, namespace: shop}
spec:
  hosts: [db]
  tcp: [{route: [{destination: {host: db, subset: v2}}]}]
"#));
    resources.push(workload(
        "shop",
        "db-2",
        "127.0.0.15",
        &[("app", "db"), ("version", "v2")],
    ));
    let out = web_sidecar(&model_of(resources));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let subset = local(&out);
    assert_eq!(proxied_to(subset.clone()), [(DB_V2.to_string(), 100)]);
    assert!(subset.tunneling_config.is_none(), "{subset:?}");
}

/// A `tunnel` on a host served only as HTTP is never used (a tunnel carries
/// TCP connections): each one is reported where it is set, naming the ports.
#[test]
fn a_tunnel_on_a_host_served_only_as_http_is_reported_unused() {
    let mut resources = base_resources();
    resources.push(dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy: {tunnel: {targetHost: proxy.internal, targetPort: 3128}}
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}, trafficPolicy: {tunnel: {targetHost: proxy.internal, targetPort: 3128}}}
"#));
    let out = web_sidecar(&model_of(resources));
    let unused: Vec<(&str, &str)> = (out.errors.iter())
        .filter(|e| e.code == ErrorCode::UnusedTunnel)
        .map(|e| (e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(
        unused,
        [
            ("cart", "spec.subsets[1].trafficPolicy.tunnel"),
            ("cart", "spec.trafficPolicy.tunnel")
        ]
    );
    let message = &out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::UnusedTunnel)
        .unwrap()
        .message;
    assert!(message.contains("8080 (Http)"), "{message}");
    // A host with a TCP port can use it: nothing to report (the test above
    // checks that db's tunnel is applied).
    let mut resources = base_resources();
    resources.push(dr("metadata: {name: db, namespace: shop}\n\
         spec: {host: db, trafficPolicy: {tunnel: {targetHost: db.internal, targetPort: 1}}}\n"));
    let out = web_sidecar(&model_of(resources));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
}

/// A Sidecar's `inboundConnectionPool` on a TCP port: the inbound cluster's
/// circuit breakers, and the inbound TCP proxy's idle timeout and connection
/// lifetime (as on outbound TCP proxies); on an HTTP port, HTTP/2 upgrade,
/// an outbound setting, is not applied.
#[test]
fn an_inbound_connection_pool_reaches_the_inbound_tcp_proxy_and_cluster() {
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::HttpProtocolOptions;
    use envoy_types::pb::envoy::extensions::upstreams::http::v3::http_protocol_options::{
        UpstreamProtocolOptions, explicit_http_config::ProtocolConfig,
    };
    use prost::Message;
    let mut resources = base_resources();
    // the namespace's Sidecar: for db-1 and web-1
    resources.push(trellis_model::Resource::Sidecar(Box::new(from_yaml(
        r#"
metadata: {name: default, namespace: shop}
spec:
  inboundConnectionPool:
    tcp: {maxConnections: 7, idleTimeout: 45s, maxConnectionDuration: 2h}
    http: {h2UpgradePolicy: UPGRADE}
"#,
    ))));
    let model = model_of(resources);
    let translate = |workload: &str| {
        let out = Translator::new(&model, explicit_options())
            .translate(&Proxy::sidecar("shop", workload));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        out
    };
    let out = translate("db-1");
    let inbound = cluster(&out, "inbound|5432||");
    let thresholds = &inbound.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(thresholds.max_connections.unwrap().value, 7);
    let listener = (out.listeners.iter())
        .find(|l| l.name == "127.0.0.13_5432")
        .expect("the inbound listener");
    let tcp = chain_tcp_proxy(listener.filter_chains.last().unwrap());
    assert_eq!(tcp.idle_timeout.unwrap().seconds, 45);
    assert_eq!(
        tcp.max_downstream_connection_duration.unwrap().seconds,
        7200
    );
    // web's HTTP port: the pool, but HTTP/1.1 to the application
    let out = translate("web-1");
    let inbound = cluster(&out, "inbound|8000||");
    let thresholds = &inbound.circuit_breakers.as_ref().unwrap().thresholds[0];
    assert_eq!(thresholds.max_connections.unwrap().value, 7);
    for any in inbound.typed_extension_protocol_options.values() {
        let options = HttpProtocolOptions::decode(any.value.as_slice()).unwrap();
        if let Some(UpstreamProtocolOptions::ExplicitHttpConfig(c)) =
            options.upstream_protocol_options
        {
            assert!(
                !matches!(
                    c.protocol_config,
                    Some(ProtocolConfig::Http2ProtocolOptions(_))
                ),
                "no HTTP/2 upgrade"
            );
        }
    }
}
