//! VirtualService delegation: a rule's `delegate` replaced by the delegate's
//! rules, merged as Istio merges them, at sidecars and gateways.
mod fixture;

use envoy_types::pb::envoy::config::route::v3::{
    Route, RouteConfiguration, route::Action, route_action::ClusterSpecifier,
    route_match::PathSpecifier,
};
use fixture::*;
use trellis_api::networking::Gateway;
use trellis_model::Resource;
use trellis_translate::{ErrorCode, Proxy, ProxyResources, TranslateError, Translator};

const CART: &str = "cart.shop.svc.cluster.local";
const ORDERS: &str = "orders.team.svc.cluster.local";

/// `orders` lives in namespace `team`, which owns the delegate.
fn team_resources() -> Vec<Resource> {
    let mut r = base_resources();
    r.push(service("team", "orders", "orders", &[("http", 8080, 8080)]));
    r.push(workload(
        "team",
        "orders-1",
        "127.0.0.31",
        &[("app", "orders")],
    ));
    r
}

/// The root in `shop` hands `/orders` for production to `team/orders`.
const ROOT: &str = r#"
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - name: orders
    match: [{uri: {prefix: /orders}, headers: {x-env: {exact: prod}}}]
    timeout: 4s
    headers: {request: {set: {x-root: "yes"}}}
    delegate: {name: orders, namespace: team}
  - name: rest
    route: [{destination: {host: cart}}]
"#;

/// Short names here are read in `team`: `orders` is `orders.team`.
const DELEGATE: &str = r#"
metadata: {name: orders, namespace: team}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /orders/v2}}]
    route: [{destination: {host: orders}}]
  - name: stray
    match: [{uri: {prefix: /elsewhere}}]
    route: [{destination: {host: orders}}]
  - name: all
    timeout: 1s
    route: [{destination: {host: cart.shop.svc.cluster.local}}]
"#;

fn routes_of(out: &ProxyResources, vhost: &str) -> Vec<Route> {
    out.routes
        .iter()
        .flat_map(|rc| rc.decode().virtual_hosts)
        .find(|v| v.name == vhost)
        .unwrap_or_else(|| panic!("no virtual host {vhost}"))
        .routes
        .into_iter()
        .filter(|r| {
            !matches!(
                r.r#match.as_ref().unwrap().path_specifier,
                Some(PathSpecifier::ConnectMatcher(_))
            )
        })
        .collect()
}

/// (route name, path prefix, header names, cluster, timeout seconds; 0 is
/// Istio's default, no timeout) of a route.
fn summary(r: &Route) -> (String, String, Vec<String>, String, i64) {
    let m = r.r#match.as_ref().unwrap();
    let prefix = match &m.path_specifier {
        Some(PathSpecifier::Prefix(p)) => p.clone(),
        other => format!("{other:?}"),
    };
    let headers = m.headers.iter().map(|h| h.name.clone()).collect();
    let Some(Action::Route(a)) = &r.action else {
        panic!("not a route: {r:?}")
    };
    let Some(ClusterSpecifier::Cluster(cluster)) = &a.cluster_specifier else {
        panic!("one cluster expected: {a:?}")
    };
    let timeout = a.timeout.expect("a route timeout").seconds;
    (r.name.clone(), prefix, headers, cluster.clone(), timeout)
}

fn errors_with(out: &ProxyResources, code: ErrorCode) -> Vec<&TranslateError> {
    out.errors.iter().filter(|e| e.code == code).collect()
}

#[test]
fn delegate_rules_are_served_within_the_delegating_rule() {
    let mut resources = team_resources();
    resources.push(vs(ROOT));
    resources.push(vs(DELEGATE));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let routes = routes_of(&out, &format!("{CART}:8080"));
    let got: Vec<_> = routes.iter().map(summary).collect();
    let env = vec!["x-env".to_string()];
    assert_eq!(
        got,
        vec![
            // the delegate's destination short name read in its namespace; the
            // root's match and timeout where the rule has none
            (
                "orders-v2".into(),
                "/orders/v2".into(),
                env.clone(),
                format!("outbound|8080||{ORDERS}"),
                4
            ),
            // no match of its own: the root's; its own timeout wins
            (
                "orders-all".into(),
                "/orders".into(),
                env,
                format!("outbound|8080||{CART}"),
                1
            ),
            (
                "rest".into(),
                "/".into(),
                vec![],
                format!("outbound|8080||{CART}"),
                0
            ),
        ]
    );
    // the root's header operations apply to the delegate's rules
    assert!(
        format!("{:?}", routes[0].request_headers_to_add).contains("x-root"),
        "{:?}",
        routes[0]
    );
    // `/elsewhere` is outside the root's `/orders`: not served, and reported on the delegate
    let conflicts = errors_with(&out, ErrorCode::DelegateConflict);
    assert_eq!(conflicts.len(), 1, "{:?}", out.errors);
    assert_eq!(
        (conflicts[0].namespace.as_str(), conflicts[0].name.as_str()),
        ("team", "orders")
    );
    assert_eq!(conflicts[0].path, "spec.http[1].match");
    assert!(conflicts[0].message.contains("shop/cart spec.http[0]"));
    assert_eq!(out.errors.len(), 1, "{:?}", out.errors);
}

#[test]
fn errors_in_delegate_rules_name_the_delegate() {
    let mut resources = team_resources();
    resources.push(vs(ROOT));
    resources.push(vs(r#"
metadata: {name: orders, namespace: team}
spec:
  http:
  - route: [{destination: {host: orders, subset: missing}}]
"#));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let unknown = errors_with(&out, ErrorCode::UnknownSubset);
    assert_eq!(unknown.len(), 1, "{:?}", out.errors);
    assert_eq!(
        (
            unknown[0].namespace.as_str(),
            unknown[0].name.as_str(),
            unknown[0].path.as_str()
        ),
        ("team", "orders", "spec.http[0].route[0].destination")
    );
}

#[test]
fn a_delegate_that_cannot_serve_leaves_its_requests_to_the_next_rule() {
    let cases = [
        (
            "missing",
            DELEGATE.replace("name: orders,", "name: other,"),
            "does not exist",
        ),
        (
            "not exported",
            DELEGATE.replace("spec:\n", "spec:\n  exportTo: [.]\n"),
            "is not exported to namespace shop",
        ),
        (
            "has hosts",
            DELEGATE.replace("spec:\n", "spec:\n  hosts: [orders]\n"),
            "has hosts, so it is not a delegate",
        ),
    ];
    for (case, delegate, message) in cases {
        let mut resources = team_resources();
        resources.push(vs(ROOT));
        resources.push(vs(&delegate));
        let model = model_of(resources);
        let out = web_sidecar(&model);
        let routes = routes_of(&out, &format!("{CART}:8080"));
        let names: Vec<&str> = routes.iter().map(|r| r.name.as_str()).collect();
        assert_eq!(names, vec!["rest"], "{case}");
        let unknown = errors_with(&out, ErrorCode::UnknownDelegate);
        assert_eq!(unknown.len(), 1, "{case}: {:?}", out.errors);
        assert_eq!(unknown[0].name, "cart", "{case}");
        assert_eq!(unknown[0].path, "spec.http[0].delegate", "{case}");
        assert!(
            unknown[0].message.contains(message),
            "{case}: {}",
            unknown[0].message
        );
    }
}

#[test]
fn a_delegate_no_rule_names_is_reported_as_serving_nothing() {
    let mut resources = team_resources();
    resources.push(vs(DELEGATE));
    let model = model_of(resources);
    let out = web_sidecar(&model);
    let unused = errors_with(&out, ErrorCode::UnusedDelegate);
    assert_eq!(unused.len(), 1, "{:?}", out.errors);
    assert_eq!(
        (unused[0].namespace.as_str(), unused[0].name.as_str()),
        ("team", "orders")
    );
    // named by a root, it is in use
    let mut resources = team_resources();
    resources.push(vs(ROOT));
    resources.push(vs(DELEGATE));
    let out = web_sidecar(&model_of(resources));
    assert!(errors_with(&out, ErrorCode::UnusedDelegate).is_empty());
}

#[test]
fn gateways_serve_delegated_rules_and_read_gateway_names_where_written() {
    let mut resources = team_resources();
    resources.push(workload(
        "shop",
        "ingress-1",
        "127.0.0.20",
        &[("istio", "ingressgateway")],
    ));
    let gw: Gateway = from_yaml(
        r#"
metadata: {name: shop-gw, namespace: shop}
spec:
  selector: {istio: ingressgateway}
  servers:
  - port: {number: 8081, name: http, protocol: HTTP}
    hosts: [shop.example.com]
"#,
    );
    resources.push(Resource::Gateway(Box::new(gw)));
    resources.push(vs(r#"
metadata: {name: edge, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gw]
  http:
  - match: [{uri: {prefix: /orders}, gateways: [shop-gw]}]
    delegate: {name: orders, namespace: team}
"#));
    // `shop-gw` written in `team` would be team's gateway: only the rule
    // naming shop's gateway by namespace is within the root.
    resources.push(vs(r#"
metadata: {name: orders, namespace: team}
spec:
  http:
  - name: ours
    match: [{uri: {prefix: /orders/mine}, gateways: [shop/shop-gw]}]
    route: [{destination: {host: orders}}]
  - name: theirs
    match: [{uri: {prefix: /orders/theirs}, gateways: [shop-gw]}]
    route: [{destination: {host: orders}}]
"#));
    let model = model_of(resources);
    let out =
        Translator::new(&model, explicit_options()).translate(&Proxy::gateway("shop", "ingress-1"));
    let rc: RouteConfiguration = (out.routes.iter())
        .find(|r| r.name() == "http.8081")
        .unwrap()
        .decode();
    let got: Vec<_> = rc.virtual_hosts[0].routes.iter().map(summary).collect();
    assert_eq!(
        got,
        vec![(
            "ours".into(),
            "/orders/mine".into(),
            vec![],
            format!("outbound|8080||{ORDERS}"),
            0
        )]
    );
    let conflicts = errors_with(&out, ErrorCode::DelegateConflict);
    assert_eq!(conflicts.len(), 1, "{:?}", out.errors);
    assert_eq!(conflicts[0].path, "spec.http[1].match");
}
