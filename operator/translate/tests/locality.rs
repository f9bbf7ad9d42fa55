//! Locality load balancing (DestinationRule `loadBalancer.localityLbSetting`,
//! MeshConfig `localityLbSetting`): endpoints grouped by locality, with
//! priorities and weights relative to each client proxy's own locality.
mod fixture;

use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::cluster::v3::cluster::common_lb_config::LocalityConfigSpecifier;
use envoy_types::pb::envoy::config::core::v3::address;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
use fixture::{dr, explicit_options, service};
use trellis_model::{MeshModel, MeshSettings, Resource, Workload};
use trellis_translate::{Proxy, ProxyResources, Translator};

const CLUSTER: &str = "outbound|8080||cart.shop.svc.cluster.local";

fn located(
    name: &str,
    addr: &str,
    app: &str,
    locality: Option<&str>,
    extra: &[(&str, &str)],
) -> Resource {
    let mut w = Workload::new("shop", name, addr);
    w.labels = BTreeMap::from([("app".to_string(), app.to_string())]);
    w.labels
        .extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    w.service_account = app.into();
    w.locality = locality.map(str::to_string);
    Resource::Workload(Box::new(w))
}

/// cart in four localities, two clients (web-a in us-east/a, web-b in
/// us-west/b), plus `extra`.
fn model(extra: Vec<Resource>, settings: MeshSettings) -> MeshModel {
    let mut m = MeshModel::new(settings);
    let base = vec![
        service("shop", "cart", "cart", &[("http", 8080, 8080)]),
        located(
            "cart-a",
            "127.0.0.11",
            "cart",
            Some("us-east/a/1"),
            &[("tier", "gold")],
        ),
        located("cart-a2", "127.0.0.12", "cart", Some("us-east/a/2"), &[]),
        located("cart-b", "127.0.0.13", "cart", Some("us-east/b"), &[]),
        located("cart-w", "127.0.0.14", "cart", Some("us-west/b"), &[]),
        located(
            "cart-eu",
            "127.0.0.15",
            "cart",
            Some("eu/c"),
            &[("tier", "gold")],
        ),
        located(
            "web-a",
            "127.0.0.20",
            "web",
            Some("us-east/a/1"),
            &[("tier", "gold")],
        ),
        located("web-w", "127.0.0.21", "web", Some("us-west/b"), &[]),
    ];
    for r in base.into_iter().chain(extra) {
        m.apply(r).unwrap();
    }
    m
}

fn sidecar(model: &MeshModel, name: &str) -> ProxyResources {
    Translator::new(model, explicit_options()).translate(&Proxy::sidecar("shop", name))
}

fn assignment(out: &ProxyResources) -> &ClusterLoadAssignment {
    out.endpoints
        .iter()
        .find(|e| e.cluster_name == CLUSTER)
        .unwrap_or_else(|| panic!("no endpoints for {CLUSTER}"))
}

/// (locality, priority, weight) -> endpoint addresses, per locality group.
fn shape(cla: &ClusterLoadAssignment) -> Vec<(String, u32, u32, Vec<String>)> {
    cla.endpoints
        .iter()
        .map(|g| {
            let l = g.locality.clone().unwrap_or_default();
            let name = [l.region, l.zone, l.sub_zone]
                .into_iter()
                .filter(|s| !s.is_empty())
                .collect::<Vec<_>>()
                .join("/");
            let addrs = g
                .lb_endpoints
                .iter()
                .map(|e| match &e.host_identifier {
                    Some(HostIdentifier::Endpoint(ep)) => {
                        match ep.address.as_ref().and_then(|a| a.address.as_ref()) {
                            Some(address::Address::SocketAddress(s)) => s.address.clone(),
                            _ => String::new(),
                        }
                    }
                    _ => String::new(),
                })
                .collect();
            (
                name,
                g.priority,
                g.load_balancing_weight
                    .as_ref()
                    .map(|w| w.value)
                    .unwrap_or(0),
                addrs,
            )
        })
        .collect()
}

/// Expected priorities, by locality (or by address).
fn table(rows: &[(&str, u32)]) -> BTreeMap<String, u32> {
    rows.iter().map(|(l, p)| (l.to_string(), *p)).collect()
}

fn priorities(cla: &ClusterLoadAssignment) -> BTreeMap<String, u32> {
    shape(cla).into_iter().map(|(l, p, _, _)| (l, p)).collect()
}

fn weighted(out: &ProxyResources) -> bool {
    let c = out.clusters.iter().find(|c| c.name == CLUSTER).unwrap();
    matches!(
        c.common_lb_config
            .as_ref()
            .and_then(|c| c.locality_config_specifier.as_ref()),
        Some(LocalityConfigSpecifier::LocalityWeightedLbConfig(_))
    )
}

const OUTLIER: &str =
    "outlierDetection: {consecutive5xxErrors: 1, interval: 1s, baseEjectionTime: 60s}";

fn cart_rule(tp: &str) -> Resource {
    dr(&format!(
        "metadata: {{name: cart, namespace: shop}}\nspec: {{host: cart, trafficPolicy: {tp}}}\n"
    ))
}

/// The model with cart's rule setting outlier detection and `setting` as its
/// `localityLbSetting`.
fn with_outlier_and_locality(setting: &str) -> MeshModel {
    model(
        vec![cart_rule(&format!(
            "{{{OUTLIER}, loadBalancer: {{localityLbSetting: {setting}}}}}"
        ))],
        MeshSettings::default(),
    )
}

#[test]
fn endpoints_are_grouped_by_locality_without_priorities_when_nothing_fails_over() {
    // No outlier detection: Istio's default setting (on) gives no failover.
    let m = model(vec![], MeshSettings::default());
    let out = sidecar(&m, "web-a");
    let s = shape(assignment(&out));
    assert_eq!(
        s.iter()
            .map(|(l, p, w, a)| (l.as_str(), *p, *w, a.len()))
            .collect::<Vec<_>>(),
        vec![
            ("eu/c", 0, 1, 1),
            ("us-east/a/1", 0, 1, 1),
            ("us-east/a/2", 0, 1, 1),
            ("us-east/b", 0, 1, 1),
            ("us-west/b", 0, 1, 1),
        ]
    );
    assert!(!weighted(&out));
}

#[test]
fn default_failover_orders_by_subzone_zone_region_relative_to_each_client() {
    let m = model(
        vec![cart_rule(&format!("{{{OUTLIER}}}"))],
        MeshSettings::default(),
    );
    let a = sidecar(&m, "web-a");
    assert_eq!(
        priorities(assignment(&a)),
        table(&[
            ("us-east/a/1", 0),
            ("us-east/a/2", 1),
            ("us-east/b", 2),
            ("us-west/b", 3),
            ("eu/c", 3),
        ])
    );
    // Another client, other priorities: the endpoints are not shared between them.
    let w = sidecar(&m, "web-w");
    assert_eq!(
        priorities(assignment(&w)),
        table(&[
            ("us-west/b", 0),
            ("us-east/a/1", 1),
            ("us-east/a/2", 1),
            ("us-east/b", 1),
            ("eu/c", 1),
        ])
    );
    // One translator for both proxies (the status analysis shares one): still
    // each its own.
    let mut t = Translator::new(&m, explicit_options());
    let a2 = t.translate(&Proxy::sidecar("shop", "web-a"));
    let w2 = t.translate(&Proxy::sidecar("shop", "web-w"));
    assert_eq!(priorities(assignment(&a2)), priorities(assignment(&a)));
    assert_eq!(priorities(assignment(&w2)), priorities(assignment(&w)));
    // Default failover sets no locality weights on the cluster (as Istio).
    assert!(!weighted(&a));
}

#[test]
fn failover_region_comes_before_other_regions() {
    let m = with_outlier_and_locality("{failover: [{from: us-east, to: eu}]}");
    let a = sidecar(&m, "web-a");
    assert_eq!(
        priorities(assignment(&a)),
        table(&[
            ("us-east/a/1", 0),
            ("us-east/a/2", 1),
            ("us-east/b", 2),
            ("eu/c", 3),
            ("us-west/b", 4),
        ])
    );
    assert!(weighted(&a));
}

#[test]
fn failover_needs_outlier_detection() {
    let m = model(
        vec![cart_rule(
            "{loadBalancer: {localityLbSetting: {failover: [{from: us-east, to: eu}]}}}",
        )],
        MeshSettings::default(),
    );
    let a = sidecar(&m, "web-a");
    assert!(priorities(assignment(&a)).values().all(|p| *p == 0));
    assert!(!weighted(&a));
    // Istio's warning, on the field.
    let warning = a
        .errors
        .iter()
        .find(|e| e.kind == "DestinationRule")
        .expect("a finding on the rule");
    assert_eq!(
        warning.path,
        "spec.trafficPolicy.loadBalancer.localityLbSetting"
    );
    assert!(warning.message.contains("outlier detection"), "{warning}");
}

#[test]
fn enabled_false_turns_failover_off() {
    let m = model(
        vec![cart_rule(&format!(
            "{{{OUTLIER}, loadBalancer: {{simple: ROUND_ROBIN, localityLbSetting: {{enabled: false}}}}}}"
        ))],
        MeshSettings::default(),
    );
    assert!(
        priorities(assignment(&sidecar(&m, "web-a")))
            .values()
            .all(|p| *p == 0)
    );
    // Mesh-wide off, and a rule without its own setting follows it.
    let settings = MeshSettings {
        locality_lb: Some(fixture::from_yaml("enabled: false")),
        ..MeshSettings::default()
    };
    let m = model(vec![cart_rule(&format!("{{{OUTLIER}}}"))], settings);
    assert!(
        priorities(assignment(&sidecar(&m, "web-a")))
            .values()
            .all(|p| *p == 0)
    );
}

#[test]
fn distribute_weights_localities_for_clients_of_the_source_and_drops_the_rest() {
    let m = model(
        vec![cart_rule(
            "{loadBalancer: {localityLbSetting: {distribute: [{from: us-east/a/*, to: {us-east/a/*: 80, us-east/b: 20}}]}}}",
        )],
        MeshSettings::default(),
    );
    let a = sidecar(&m, "web-a");
    let s = shape(assignment(&a));
    assert_eq!(
        s.iter()
            .map(|(l, p, w, _)| (l.as_str(), *p, *w))
            .collect::<Vec<_>>(),
        // us-east/a/* has two localities of one endpoint each: 80 split in two.
        vec![
            ("us-east/a/1", 0, 40),
            ("us-east/a/2", 0, 40),
            ("us-east/b", 0, 20)
        ]
    );
    assert!(weighted(&a));
    // A client the rule does not name gets every locality at its own weight.
    let w = sidecar(&m, "web-w");
    assert_eq!(shape(assignment(&w)).len(), 5);
    assert!(
        shape(assignment(&w))
            .iter()
            .all(|(_, p, w, _)| *p == 0 && *w == 1)
    );
}

#[test]
fn mesh_wide_distribute_applies_without_a_rule_and_a_rule_replaces_it() {
    let settings = MeshSettings {
        locality_lb: Some(fixture::from_yaml(
            "distribute: [{from: '*', to: {us-west: 100}}]",
        )),
        ..MeshSettings::default()
    };
    let m = model(vec![], settings.clone());
    let a = sidecar(&m, "web-a");
    assert_eq!(
        shape(assignment(&a))
            .into_iter()
            .map(|(l, _, w, _)| (l, w))
            .collect::<Vec<_>>(),
        vec![("us-west/b".to_string(), 100)]
    );
    let m = model(
        vec![cart_rule(&format!(
            "{{{OUTLIER}, loadBalancer: {{localityLbSetting: {{}}}}}}"
        ))],
        settings,
    );
    assert_eq!(priorities(assignment(&sidecar(&m, "web-a"))).len(), 5);
}

#[test]
fn failover_priority_orders_by_labels_shared_with_the_client() {
    let m = with_outlier_and_locality("{failoverPriority: [tier, topology.kubernetes.io/region]}");
    // web-a: tier gold, region us-east. cart-a shares both (0); cart-eu shares
    // the tier only (1); the others differ at the first label (2).
    let a = sidecar(&m, "web-a");
    let by_addr: BTreeMap<String, u32> = shape(assignment(&a))
        .into_iter()
        .flat_map(|(_, p, _, addrs)| addrs.into_iter().map(move |a| (a, p)))
        .collect();
    assert_eq!(
        by_addr,
        table(&[
            ("127.0.0.11", 0),
            ("127.0.0.15", 1),
            ("127.0.0.12", 2),
            ("127.0.0.13", 2),
            ("127.0.0.14", 2),
        ])
    );
    assert!(weighted(&a));
    // A fixed value: `tier=gold` for every client.
    let m = with_outlier_and_locality("{failoverPriority: [tier=gold]}");
    let w = sidecar(&m, "web-w");
    let gold: Vec<u32> = shape(assignment(&w))
        .into_iter()
        .filter(|(_, _, _, addrs)| addrs.iter().any(|a| a == "127.0.0.11" || a == "127.0.0.15"))
        .map(|(_, p, _, _)| p)
        .collect();
    assert_eq!(gold, vec![0, 0]);
}

#[test]
fn subset_load_balancer_replaces_the_locality_setting() {
    let m = model(
        vec![dr(&format!(
            "metadata: {{name: cart, namespace: shop}}\nspec:\n  host: cart\n  trafficPolicy: {{{OUTLIER}, loadBalancer: {{localityLbSetting: {{enabled: false}}}}}}\n  subsets:\n  - name: all\n    labels: {{app: cart}}\n    trafficPolicy: {{loadBalancer: {{simple: RANDOM}}}}\n"
        ))],
        MeshSettings::default(),
    );
    let a = sidecar(&m, "web-a");
    assert!(priorities(assignment(&a)).values().all(|p| *p == 0));
    let subset = a
        .endpoints
        .iter()
        .find(|e| e.cluster_name == "outbound|8080|all|cart.shop.svc.cluster.local")
        .unwrap();
    // The subset's loadBalancer has no localityLbSetting: the mesh default (on) applies.
    assert_eq!(priorities(subset)["us-east/b"], 2);
}

#[test]
fn a_locality_with_an_empty_subzone_is_one_group_with_its_short_form() {
    // A node without a subzone gives `region/zone/`; a WorkloadEntry says `region/zone`.
    let m = model(
        vec![located(
            "cart-b2",
            "127.0.0.16",
            "cart",
            Some("us-east/b/"),
            &[],
        )],
        MeshSettings::default(),
    );
    let s = shape(assignment(&sidecar(&m, "web-a")));
    let b: Vec<_> = s.iter().filter(|(l, ..)| l == "us-east/b").collect();
    assert_eq!(b.len(), 1, "{s:?}");
    assert_eq!(b[0].3.len(), 2);
}
