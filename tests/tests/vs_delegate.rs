//! VirtualService delegation on real Envoy: a root VirtualService hands the
//! requests one rule matches to a delegate VirtualService of another namespace
//! (no hosts), whose rules are served inside the root's match with the root's
//! settings where they have none. (Rules outside the root's match, and
//! delegates that cannot serve, are translator tests: `operator/translate/tests/delegate.rs`.)
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    plain_workload, routes_with_subsets, service, start_client, virtual_service,
};
use trellis_e2e::{HttpRequest, Upstream};
use trellis_model::Resource;

const UPSTREAMS: [&str; 3] = ["a", "b", "c"];

/// Service `routes` (a = v1, b = v2) and `other` (c) in `shop`; the root
/// `shop/routes` delegates `/team` for `x-env: prod` to `team/team-routes`.
fn scenario(addr: &BTreeMap<String, SocketAddr>) -> Vec<Resource> {
    let mut resources = routes_with_subsets(addr["a"], addr["b"]);
    resources.extend([
        service("other", "other"),
        plain_workload("c", "other", addr["c"], &[]),
        virtual_service(
            r#"
metadata: {name: routes, namespace: shop}
spec:
  hosts: [routes]
  http:
  - name: team
    match: [{uri: {prefix: /team}, headers: {x-env: {exact: prod}}}]
    headers: {request: {set: {x-root: "yes"}}}
    delegate: {name: team-routes, namespace: team}
  - name: default
    route: [{destination: {host: routes, subset: v1}}]
"#,
        ),
        virtual_service(
            r#"
metadata: {name: team-routes, namespace: team}
spec:
  http:
  - name: v2
    match: [{uri: {prefix: /team/v2}}]
    route: [{destination: {host: routes.shop.svc.cluster.local, subset: v2}}]
  - name: own-headers
    match: [{uri: {prefix: /team/own}}]
    headers: {request: {set: {x-leaf: "yes"}}}
    route: [{destination: {host: routes.shop.svc.cluster.local, subset: v2}}]
  - name: rest
    route: [{destination: {host: other.shop.svc.cluster.local}}]
"#,
        ),
    ]);
    resources
}

#[test]
fn delegated_rules_route_real_requests_within_the_root_rule() {
    let ip = Ipv4Addr::new(127, 0, 0, 225);
    let ups: BTreeMap<String, Upstream> = UPSTREAMS
        .iter()
        .map(|n| (n.to_string(), Upstream::echo(n, ip)))
        .collect();
    let addrs = ups.iter().map(|(n, u)| (n.clone(), u.addr())).collect();
    let client = start_client(&test_ca(), scenario(&addrs), Ipv4Addr::new(127, 0, 0, 224));
    let send = |path: &str, env: Option<&str>| {
        let mut req = HttpRequest::get(path).host("routes");
        if let Some(env) = env {
            req = req.header("x-env", env);
        }
        let r = req.send(client.listen).expect("request");
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        r.json()
    };
    let server =
        |path: &str, env: Option<&str>| send(path, env)["server"].as_str().unwrap().to_string();

    // Within the root's match, the delegate's rules decide.
    assert_eq!(server("/team/v2/item", Some("prod")), "b");
    assert_eq!(server("/team/anything", Some("prod")), "c");
    // Outside it (no x-env: prod, or another path), the root's next rule.
    assert_eq!(server("/team/v2/item", None), "a");
    assert_eq!(server("/team/v2/item", Some("dev")), "a");
    assert_eq!(server("/shop", Some("prod")), "a");
    // The root's header operations apply to delegate rules without their own.
    let seen = &send("/team/v2", Some("prod"))["headers"];
    assert_eq!(seen["x-root"], "yes", "{seen}");
    let seen = &send("/team/own", Some("prod"))["headers"];
    assert_eq!(seen["x-leaf"], "yes", "{seen}");
    assert!(
        seen["x-root"].is_null(),
        "the rule's own headers win: {seen}"
    );
}
