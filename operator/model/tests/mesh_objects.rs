//! ServiceEntries in the registry, Gateways and Sidecars in the model.
use serde_json::json;
use trellis_model::{
    ChangeScope, MeshModel, MeshSettings, Resolution, Resource, ResourceKey, ResourceKind,
    ServiceOrigin, Workload,
};

fn se(name: &str, spec: serde_json::Value) -> Resource {
    Resource::ServiceEntry(Box::new(
        serde_json::from_value(
            json!({"metadata": {"name": name, "namespace": "shop"}, "spec": spec}),
        )
        .unwrap(),
    ))
}

fn labelled(ns: &str, name: &str, labels: &[(&str, &str)]) -> Workload {
    let mut w = Workload::new(ns, name, "127.0.0.9");
    w.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    w
}

#[test]
fn service_entry_hosts_resolve_and_go_away_on_delete() {
    let mut m = MeshModel::new(MeshSettings::default());
    let scope = m
        .apply(se(
            "ext",
            json!({"hosts": ["API.example.com", "*.wild.example.com"], "resolution": "DNS",
                   "endpoints": [{"address": "localhost"}],
                   "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}),
        ))
        .unwrap();
    assert_eq!(scope, ChangeScope::All);
    let api = m
        .resolve_host("api.example.com", "other")
        .expect("exact host");
    assert_eq!(api.resolution, Resolution::Dns);
    assert!(matches!(
        api.origin,
        ServiceOrigin::ServiceEntry { external: true, .. }
    ));
    assert_eq!(
        m.resolve_host("x.wild.example.com:443", "shop")
            .unwrap()
            .hostname,
        "*.wild.example.com"
    );
    let eps = m.endpoints(api, &api.ports[0], None);
    assert_eq!((eps[0].address.as_str(), eps[0].port), ("localhost", 443));
    // the same object again changes nothing
    let again = se(
        "ext",
        json!({"hosts": ["API.example.com", "*.wild.example.com"], "resolution": "DNS",
               "endpoints": [{"address": "localhost"}],
               "ports": [{"number": 443, "name": "https", "protocol": "HTTPS"}]}),
    );
    assert_eq!(m.apply(again).unwrap(), ChangeScope::None);
    let key = ResourceKey::new(ResourceKind::ServiceEntry, "shop", "ext");
    assert_eq!(m.delete(&key), ChangeScope::All);
    assert!(m.resolve_host("api.example.com", "shop").is_none());
}

#[test]
fn dns_without_endpoints_resolves_the_host_and_bad_ports_are_refused() {
    let mut m = MeshModel::new(MeshSettings::default());
    m.apply(se(
        "local",
        json!({"hosts": ["localhost"], "resolution": "DNS",
               "ports": [{"number": 8080, "name": "http", "protocol": "HTTP", "targetPort": 9090}]}),
    ))
    .unwrap();
    let s = m.resolve_host("localhost", "shop").unwrap();
    let eps = m.endpoints(s, &s.ports[0], None);
    assert_eq!((eps[0].address.as_str(), eps[0].port), ("localhost", 9090));
    let err = m
        .apply(se(
            "bad",
            json!({"hosts": ["x.example.com"], "ports": [{"number": 70000, "name": "http"}]}),
        ))
        .unwrap_err();
    assert_eq!(
        err.to_string(),
        "ServiceEntry/shop/bad: spec.ports[0].number: 70000 is not a port number"
    );
}

#[test]
fn a_new_cluster_domain_keeps_service_entries() {
    let mut m = MeshModel::new(MeshSettings::default());
    m.apply(se(
        "ext",
        json!({"hosts": ["api.example.com"], "resolution": "STATIC",
               "endpoints": [{"address": "127.0.0.5"}],
               "ports": [{"number": 80, "name": "http"}]}),
    ))
    .unwrap();
    m.apply(Resource::MeshSettings(MeshSettings {
        cluster_domain: "corp.internal".into(),
        ..Default::default()
    }))
    .unwrap();
    assert!(m.resolve_host("api.example.com", "shop").is_some());
    // a relist of Kubernetes Services leaves ServiceEntries alone
    m.reset(ResourceKind::Service, Vec::new());
    assert!(m.resolve_host("api.example.com", "shop").is_some());
    m.reset(ResourceKind::ServiceEntry, Vec::new());
    assert!(m.resolve_host("api.example.com", "shop").is_none());
}

#[test]
fn gateways_bind_by_selector_and_sidecars_by_precedence() {
    let mut m = MeshModel::new(MeshSettings::default());
    let gw = |ns: &str, name: &str| {
        Resource::Gateway(Box::new(
            serde_json::from_value(json!({
                "metadata": {"name": name, "namespace": ns},
                "spec": {"selector": {"istio": "ingressgateway"}, "servers": []}
            }))
            .unwrap(),
        ))
    };
    m.apply(gw("shop", "a")).unwrap();
    m.apply(gw("other", "b")).unwrap();
    let vs = Resource::VirtualService(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": "v", "namespace": "shop"},
            "spec": {"hosts": ["x"], "gateways": ["a", "other/b", "mesh"]}
        }))
        .unwrap(),
    ));
    m.apply(vs).unwrap();
    let ingress = labelled("istio-system", "ingress", &[("istio", "ingressgateway")]);
    let names: Vec<&str> = m
        .gateways_for(&ingress)
        .iter()
        .map(|g| g.name.as_str())
        .collect();
    assert_eq!(names, ["b", "a"], "selector matches in any namespace");
    // Without a selector a Gateway applies to every gateway workload, as in Istio.
    m.apply(Resource::Gateway(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": "every", "namespace": "edge"},
            "spec": {"servers": []}
        }))
        .unwrap(),
    )))
    .unwrap();
    let egress = labelled("ops", "egress", &[("istio", "egressgateway")]);
    let names = |w: &Workload| -> Vec<String> {
        m.gateways_for(w).iter().map(|g| g.name.clone()).collect()
    };
    assert_eq!(names(&ingress), ["every", "b", "a"]);
    assert_eq!(names(&egress), ["every"]);
    assert_eq!(m.virtual_services_for_gateway("shop", "a").len(), 1);
    assert_eq!(m.virtual_services_for_gateway("other", "b").len(), 1);
    assert!(m.virtual_services_for_gateway("other", "a").is_empty());

    let sidecar = |ns: &str, name: &str, selector: Option<(&str, &str)>| {
        let mut spec = json!({"egress": [{"hosts": ["./*"]}]});
        if let Some((k, v)) = selector {
            spec["workloadSelector"] = json!({"labels": {k: v}});
        }
        Resource::Sidecar(Box::new(
            serde_json::from_value(
                json!({"metadata": {"name": name, "namespace": ns}, "spec": spec}),
            )
            .unwrap(),
        ))
    };
    let web = labelled("shop", "web-1", &[("app", "web")]);
    let cart = labelled("shop", "cart-1", &[("app", "cart")]);
    m.apply(sidecar("istio-system", "mesh-default", None))
        .unwrap();
    assert_eq!(m.sidecar_for(&web).unwrap().name, "mesh-default");
    let scope = m.apply(sidecar("shop", "ns-default", None)).unwrap();
    assert!(scope.affects("shop", "web-1") && !scope.affects("ops", "db-1"));
    m.apply(sidecar("shop", "web-only", Some(("app", "web"))))
        .unwrap();
    assert_eq!(m.sidecar_for(&web).unwrap().name, "web-only");
    assert_eq!(m.sidecar_for(&cart).unwrap().name, "ns-default");
    // a selector in the root namespace does not reach other namespaces
    m.apply(sidecar(
        "istio-system",
        "root-selected",
        Some(("app", "db")),
    ))
    .unwrap();
    let db = labelled("ops", "db-1", &[("app", "db")]);
    assert_eq!(m.sidecar_for(&db).unwrap().name, "mesh-default");
    let key = ResourceKey::new(ResourceKind::Sidecar, "shop", "web-only");
    assert_eq!(m.delete(&key), ChangeScope::namespace("shop"));
    assert_eq!(m.delete(&key), ChangeScope::None);
    assert_eq!(m.sidecar_for(&web).unwrap().name, "ns-default");
}

/// A host with one dot in a VirtualService or DestinationRule names a
/// ServiceEntry's host as written (`httpbin.org`), and still a Kubernetes
/// service as `name.namespace` (`cart.shop`).
#[test]
fn a_one_dot_host_names_itself_and_a_namespaced_service() {
    let mut m = MeshModel::new(MeshSettings::default());
    let object = |kind: &str, host: &str| {
        let value = json!({
            "metadata": {"name": host.replace('.', "-"), "namespace": "shop"},
            "spec": if kind == "vs" {
                json!({"hosts": [host], "http": [{"route": [{"destination": {"host": host}}]}]})
            } else {
                json!({"host": host})
            }
        });
        if kind == "vs" {
            Resource::VirtualService(Box::new(serde_json::from_value(value).unwrap()))
        } else {
            Resource::DestinationRule(Box::new(serde_json::from_value(value).unwrap()))
        }
    };
    for host in ["httpbin.org", "cart.shop"] {
        m.apply(object("vs", host)).unwrap();
        m.apply(object("dr", host)).unwrap();
    }
    for (host, name) in [
        ("httpbin.org", "httpbin-org"),
        ("cart.shop.svc.cluster.local", "cart-shop"),
    ] {
        let vss = m.virtual_services_for(host, "shop");
        assert_eq!(vss.len(), 1, "{host}");
        assert_eq!(vss[0].name, name);
        assert_eq!(
            m.destination_rule_for(host, "shop", &Default::default())
                .unwrap()
                .name,
            name
        );
        let index = m.traffic_index();
        assert_eq!(index.virtual_services_for(host, "shop").len(), 1, "{host}");
        assert_eq!(
            index
                .destination_rule_for(host, "shop", &Default::default())
                .unwrap()
                .name,
            name
        );
    }
}

/// A ServiceEntry endpoint's weight and service account reach its endpoint
/// and the identities its servers may present.
#[test]
fn service_entry_endpoint_weights_and_identities() {
    let mut m = MeshModel::new(MeshSettings::default());
    m.apply(se(
        "vault",
        json!({"hosts": ["vault.internal"], "location": "MESH_INTERNAL", "resolution": "STATIC",
        "ports": [{"number": 8200, "name": "tcp", "protocol": "TCP"}],
        "endpoints": [
            {"address": "127.0.0.41", "weight": 3, "serviceAccount": "vault"},
            {"address": "127.0.0.42"}
        ]}),
    ))
    .unwrap();
    let service = m.resolve_host("vault.internal", "shop").unwrap().clone();
    let port = service.ports[0].clone();
    let endpoints = m.endpoints(&service, &port, None);
    let weights: Vec<(String, u32, Option<String>)> = endpoints
        .iter()
        .map(|e| (e.address.clone(), e.weight, e.service_account.clone()))
        .collect();
    assert_eq!(
        weights,
        [
            ("127.0.0.41".to_string(), 3, Some("vault".to_string())),
            ("127.0.0.42".to_string(), 1, None)
        ]
    );
    assert_eq!(
        m.service_identities(&service),
        ["spiffe://cluster.local/ns/shop/sa/vault"]
    );
}

/// A DestinationRule's `workloadSelector` makes it the rule for the clients it
/// selects in its own namespace; the model and its index agree.
#[test]
fn destination_rules_with_a_workload_selector_apply_to_the_clients_they_select() {
    let mut m = MeshModel::new(MeshSettings::default());
    let dr = |ns: &str, name: &str, host: &str, selector: Option<serde_json::Value>| {
        let mut spec = json!({"host": host});
        if let Some(s) = selector {
            spec["workloadSelector"] = json!({"matchLabels": s});
        }
        let value = json!({"metadata": {"name": name, "namespace": ns}, "spec": spec});
        Resource::DestinationRule(Box::new(serde_json::from_value(value).unwrap()))
    };
    m.apply(dr("shop", "all", "cart", None)).unwrap();
    m.apply(dr("shop", "web-only", "cart", Some(json!({"app": "web"}))))
        .unwrap();
    m.apply(dr(
        "other",
        "from-other",
        "cart.shop",
        Some(json!({"app": "web"})),
    ))
    .unwrap();
    // a wildcard rule that selects the client loses to an exact one that does not
    m.apply(dr(
        "shop",
        "wild",
        "*.shop.svc.cluster.local",
        Some(json!({"app": "api"})),
    ))
    .unwrap();
    let host = "cart.shop.svc.cluster.local";
    let labels = |pairs: &[(&str, &str)]| -> std::collections::BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    };
    let index = m.traffic_index();
    for (ns, client, expected) in [
        ("shop", labels(&[("app", "web")]), "web-only"),
        ("shop", labels(&[("app", "api")]), "all"),
        ("shop", labels(&[]), "all"),
        ("other", labels(&[("app", "web")]), "from-other"),
        ("other", labels(&[("app", "api")]), "all"),
        ("elsewhere", labels(&[("app", "web")]), "all"),
    ] {
        let found = m.destination_rule_for(host, ns, &client).unwrap();
        assert_eq!(found.name, expected, "{ns} {client:?}");
        let indexed = index.destination_rule_for(host, ns, &client).unwrap();
        assert_eq!(indexed.name, expected, "index: {ns} {client:?}");
    }
    let db = "db.shop.svc.cluster.local";
    let api = labels(&[("app", "api")]);
    assert_eq!(
        m.destination_rule_for(db, "shop", &api).unwrap().name,
        "wild"
    );
    assert_eq!(
        index.destination_rule_for(db, "shop", &api).unwrap().name,
        "wild"
    );
    assert!(m.destination_rule_for(db, "shop", &labels(&[])).is_none());
}

/// A WorkloadEntry's `ports` are keyed by service port name and win over the
/// service's `targetPort`, as in Istio; without an entry for the port, the
/// target port serves. Its labels and address make it the service's endpoint.
#[test]
fn workload_entry_ports_are_keyed_by_service_port_name() {
    let mut m = MeshModel::new(MeshSettings::default());
    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "vm", "namespace": "shop"},
        "spec": {"selector": {"app": "vm"}, "clusterIP": "10.0.0.9", "ports": [
            {"name": "http", "port": 80, "targetPort": 8080},
            {"name": "admin", "port": 81, "targetPort": 8081}
        ]}
    }))
    .unwrap();
    m.apply(Resource::Service(Box::new(svc))).unwrap();
    let we: trellis_api::networking::WorkloadEntry = serde_json::from_value(json!({
        "metadata": {"name": "vm-1", "namespace": "shop"},
        "spec": {"address": "10.1.2.3", "labels": {"app": "vm"}, "ports": {"http": 9090}}
    }))
    .unwrap();
    let w = Workload::from_workload_entry(&we).unwrap();
    m.apply(Resource::Workload(Box::new(w))).unwrap();
    let service = m
        .resolve_host("vm.shop.svc.cluster.local", "shop")
        .unwrap()
        .clone();
    let port_of = |number: u16| {
        let port = service.port(number).unwrap();
        let endpoints = m.endpoints(&service, port, None);
        assert_eq!(endpoints.len(), 1);
        (endpoints[0].address.clone(), endpoints[0].port)
    };
    assert_eq!(port_of(80), ("10.1.2.3".to_string(), 9090));
    assert_eq!(port_of(81), ("10.1.2.3".to_string(), 8081));
}

/// Endpoints carry their locality: a ServiceEntry endpoint's, a WorkloadEntry's,
/// a pod's label (dots for slashes); none when unset or empty.
#[test]
fn endpoints_carry_the_locality_of_their_source() {
    let mut m = MeshModel::new(MeshSettings::default());
    m.apply(se(
        "vault",
        json!({"hosts": ["vault.internal"], "location": "MESH_INTERNAL", "resolution": "STATIC",
        "ports": [{"number": 8200, "name": "tcp", "protocol": "TCP"}],
        "endpoints": [
            {"address": "127.0.0.41", "locality": "us-east/a/1"},
            {"address": "127.0.0.42", "locality": ""},
            {"address": "127.0.0.43"}
        ]}),
    ))
    .unwrap();
    let service = m.resolve_host("vault.internal", "shop").unwrap().clone();
    let localities: Vec<Option<String>> = m
        .endpoints(&service, &service.ports[0], None)
        .into_iter()
        .map(|e| e.locality)
        .collect();
    assert_eq!(localities, [Some("us-east/a/1".to_string()), None, None]);

    let svc: k8s_openapi::api::core::v1::Service = serde_json::from_value(json!({
        "metadata": {"name": "vm", "namespace": "shop"},
        "spec": {"selector": {"app": "vm"}, "clusterIP": "10.0.0.9",
                 "ports": [{"name": "http", "port": 80, "targetPort": 8080}]}
    }))
    .unwrap();
    m.apply(Resource::Service(Box::new(svc))).unwrap();
    let we: trellis_api::networking::WorkloadEntry = serde_json::from_value(json!({
        "metadata": {"name": "vm-1", "namespace": "shop"},
        "spec": {"address": "10.1.2.3", "labels": {"app": "vm"}, "locality": "eu/west"}
    }))
    .unwrap();
    m.apply(Resource::Workload(Box::new(
        Workload::from_workload_entry(&we).unwrap(),
    )))
    .unwrap();
    let pod: k8s_openapi::api::core::v1::Pod = serde_json::from_value(json!({
        "metadata": {"name": "vm-pod", "namespace": "shop",
                     "labels": {"app": "vm", "istio-locality": "ap.ap-2.rack"}},
        "spec": {"containers": [{"name": "app", "image": "x"}]},
        "status": {"podIP": "10.1.2.4"}
    }))
    .unwrap();
    m.apply(Resource::Pod(Box::new(pod))).unwrap();
    let service = m
        .resolve_host("vm.shop.svc.cluster.local", "shop")
        .unwrap()
        .clone();
    let mut by_address: Vec<(String, Option<String>)> = m
        .endpoints(&service, &service.ports[0], None)
        .into_iter()
        .map(|e| (e.address, e.locality))
        .collect();
    by_address.sort();
    assert_eq!(
        by_address,
        [
            ("10.1.2.3".to_string(), Some("eu/west".to_string())),
            ("10.1.2.4".to_string(), Some("ap/ap-2/rack".to_string())),
        ]
    );
}
