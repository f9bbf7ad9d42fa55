//! One Translator for many proxies shares clusters and endpoints between namespaces and
//! gives exactly what a fresh translation of each proxy gives.
mod fixture;

use std::sync::Arc;

use fixture::*;
use trellis_translate::{Proxy, Translator, translate};

fn mesh() -> trellis_model::MeshModel {
    let mut resources = base_resources();
    resources.extend([
        service("other", "api", "api", &[("http", 8080, 8080)]),
        workload("other", "api-1", "127.0.0.21", &[("app", "api")]),
        workload("other", "api-2", "127.0.0.22", &[("app", "api")]),
        dr(r#"
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  trafficPolicy: {loadBalancer: {consistentHash: {httpHeaderName: x-user}}}
  subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]
"#),
        // a namespace-local rule for the same host: `other` sees a different cluster
        dr(r#"
metadata: {name: cart-from-other, namespace: other}
spec: {host: cart.shop.svc.cluster.local, trafficPolicy: {loadBalancer: {simple: RANDOM}}}
"#),
        vs(r#"
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - route:
    - {destination: {host: cart, subset: v1}, weight: 90}
    - {destination: {host: cart, subset: v2}, weight: 10}
"#),
    ]);
    model_of(resources)
}

#[test]
fn shared_translator_matches_fresh_translations() {
    let model = mesh();
    let proxies = [
        Proxy::sidecar("shop", "web-1"),
        Proxy::sidecar("other", "api-1"),
        Proxy::sidecar("shop", "cart-v1"),
        Proxy::sidecar("other", "api-2"),
    ];
    let mut shared = Translator::new(&model, explicit_options());
    for p in &proxies {
        let fresh = translate(&model, p, &explicit_options());
        assert_eq!(shared.translate(p), fresh, "{p:?}");
    }
}

#[test]
fn namespaces_share_clusters_under_the_same_destination_rule() {
    let model = mesh();
    let mut t = Translator::new(&model, explicit_options());
    let shop = t.translate(&Proxy::sidecar("shop", "web-1"));
    let other = t.translate(&Proxy::sidecar("other", "api-1"));
    let find = |out: &trellis_translate::ProxyResources, name: &str| {
        out.clusters
            .iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("no cluster {name}"))
            .clone()
    };
    // db has no DestinationRule anywhere: one shared cluster and one shared endpoint list
    let db = "outbound|5432||db.shop.svc.cluster.local";
    assert!(Arc::ptr_eq(&find(&shop, db), &find(&other, db)));
    let eps = |out: &trellis_translate::ProxyResources| {
        out.endpoints
            .iter()
            .find(|e| e.cluster_name == db)
            .unwrap()
            .clone()
    };
    assert!(Arc::ptr_eq(&eps(&shop), &eps(&other)));
    // cart: `other` has its own DestinationRule, so its cluster differs (RANDOM vs ring hash)
    let cart = "outbound|8080||cart.shop.svc.cluster.local";
    assert_ne!(find(&shop, cart).lb_policy, find(&other, cart).lb_policy);
}

#[test]
fn traffic_index_answers_like_the_model() {
    let model = mesh();
    let index = model.traffic_index();
    let hosts: Vec<String> = model
        .registry()
        .services()
        .map(|s| s.hostname.clone())
        .chain(["unknown.shop.svc.cluster.local".to_string()])
        .collect();
    for host in &hosts {
        for ns in ["shop", "other", "istio-system", "elsewhere"] {
            let a = index
                .destination_rule_for(host, ns, &Default::default())
                .map(|d| (&d.namespace, &d.name));
            let b = model
                .destination_rule_for(host, ns, &Default::default())
                .map(|d| (&d.namespace, &d.name));
            assert_eq!(a, b, "DestinationRule for {host} from {ns}");
            let a: Vec<_> = index
                .virtual_services_for(host, ns)
                .iter()
                .map(|v| (&v.namespace, &v.name))
                .collect();
            let b: Vec<_> = model
                .virtual_services_for(host, ns)
                .iter()
                .map(|v| (&v.namespace, &v.name))
                .collect();
            assert_eq!(a, b, "VirtualServices for {host} from {ns}");
        }
    }
}

#[test]
fn sidecars_of_a_namespace_share_its_cluster_and_endpoint_lists() {
    let model = mesh();
    let mut t = Translator::new(&model, explicit_options());
    let web = t.translate(&Proxy::sidecar("shop", "web-1"));
    let cart = t.translate(&Proxy::sidecar("shop", "cart-v1"));
    // One list for the namespace, not a copy per sidecar.
    assert!(!web.clusters.shared_part().is_empty());
    assert!(Arc::ptr_eq(
        web.clusters.shared_part(),
        cart.clusters.shared_part()
    ));
    assert!(Arc::ptr_eq(
        web.endpoints.shared_part(),
        cart.endpoints.shared_part()
    ));
    // Each sidecar's inbound clusters are its own, listed in name order with the shared.
    let inbound = |out: &trellis_translate::ProxyResources| -> Vec<String> {
        (out.clusters.iter())
            .map(|c| c.name.clone())
            .filter(|n| n.starts_with("inbound|"))
            .collect()
    };
    assert_eq!(inbound(&web), ["inbound|8000||"]);
    assert_eq!(inbound(&cart), ["inbound|8080||"]);
    for out in [&web, &cart] {
        assert!(
            out.clusters
                .shared_part()
                .iter()
                .all(|c| !c.name.starts_with("inbound|"))
        );
        let names: Vec<&str> = out.clusters.iter().map(|c| c.name.as_str()).collect();
        assert!(names.is_sorted(), "{names:?}");
    }
}

/// In the interception shape, namespaces that see a service alike share its
/// outbound listener (one `Arc`, built once); one that sees it differently
/// gets its own.
#[test]
fn namespaces_share_the_outbound_listeners_they_see_alike() {
    let mut resources = base_resources();
    resources.extend([
        service("other", "api", "api", &[("http", 8080, 8080)]),
        workload("other", "api-1", "127.0.0.21", &[("app", "api")]),
        service("third", "batch", "batch", &[("http", 9000, 9000)]),
        workload("third", "batch-1", "127.0.0.31", &[("app", "batch")]),
        // Seen from `third` only: its connections to db go to cart.
        vs(r#"
metadata: {name: db-from-third, namespace: third}
spec:
  hosts: [db.shop.svc.cluster.local]
  exportTo: ["."]
  tcp:
  - route: [{destination: {host: cart.shop.svc.cluster.local, port: {number: 8080}}}]
"#),
    ]);
    let model = model_of(resources);
    let options = trellis_translate::TranslateOptions {
        sds: trellis_translate::SdsSource::Ads,
        ..Default::default()
    };
    let mut t = Translator::new(&model, options);
    let db = |out: &trellis_translate::ProxyResources| {
        (out.listeners.iter())
            .find(|l| l.name == "10.0.0.1_5432")
            .expect("db's listener")
            .clone()
    };
    let shop = db(&t.translate(&Proxy::sidecar("shop", "web-1")));
    let other = db(&t.translate(&Proxy::sidecar("other", "api-1")));
    let third = db(&t.translate(&Proxy::sidecar("third", "batch-1")));
    assert!(Arc::ptr_eq(&shop, &other), "seen alike: one listener");
    assert_ne!(shop, third, "third's VirtualService changes the listener");
    let to = |l: &envoy_types::pb::envoy::config::listener::v3::Listener| {
        proxied_to(chain_tcp_proxy(l.filter_chains.last().unwrap()))
    };
    assert_eq!(
        to(&shop),
        [("outbound|5432||db.shop.svc.cluster.local".to_string(), 100)]
    );
    assert_eq!(
        to(&third),
        [(
            "outbound|8080||cart.shop.svc.cluster.local".to_string(),
            100
        )]
    );
}
