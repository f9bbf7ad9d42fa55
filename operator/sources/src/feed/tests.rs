use super::*;
use crate::input::input_from_json;
use serde_json::json;

fn vs(name: &str, weights: (i32, i32), generation: i64) -> Input {
    input_from_json(
        SourceKind::VirtualService,
        json!({
            "apiVersion": "networking.istio.io/v1",
            "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "shop", "generation": generation},
            "spec": {"hosts": ["cart"], "http": [{"route": [
                {"destination": {"host": "cart", "subset": "v1"}, "weight": weights.0},
                {"destination": {"host": "cart", "subset": "v2"}, "weight": weights.1}
            ]}]}
        }),
    )
}

fn pod(name: &str, ip: Option<&str>) -> Input {
    let mut status = json!({"phase": "Running"});
    if let Some(ip) = ip {
        status["podIP"] = json!(ip);
    }
    Input::Pod(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": {"app": "cart"}},
            "spec": {"serviceAccountName": "cart", "containers": [
                {"name": "app", "image": "cart"}, {"name": "trellis-proxy", "image": "envoy"}
            ]},
            "status": status
        }))
        .unwrap(),
    ))
}

fn slice(name: &str, endpoints: serde_json::Value) -> Input {
    Input::EndpointSlice(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop"},
            "addressType": "IPv4",
            "endpoints": endpoints
        }))
        .unwrap(),
    ))
}

fn key(kind: &str, name: &str) -> ObjectRef {
    ObjectRef {
        kind: kind.into(),
        namespace: Some("shop".into()),
        name: name.into(),
    }
}

#[test]
fn a_valid_virtual_service_is_programmed_and_an_invalid_one_withdrawn() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    let scope = feed.apply(Change::Apply(vs("r", (90, 10), 1)));
    assert_eq!(scope, ChangeScope::All);
    assert_eq!(feed.model().virtual_services().count(), 1);

    // The same object edited into an invalid one: kept for status, out of the model.
    let scope = feed.apply(Change::Apply(vs("r", (60, 30), 2)));
    assert_eq!(scope, ChangeScope::All);
    assert_eq!(feed.model().virtual_services().count(), 0);
    let view = feed.view(true);
    let object = &view.config[&key("VirtualService", "r")];
    assert_eq!(object.generation, Some(2));
    assert!(matches!(object.content, ConfigContent::Loaded(_)));
}

#[test]
fn a_status_write_changes_the_view_but_pushes_nothing() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    feed.apply(Change::Apply(vs("r", (90, 10), 1)));
    let before = feed.revision();
    let Input::Resource(r) = vs("r", (90, 10), 1) else {
        panic!()
    };
    let mut json = r.to_json();
    json["metadata"]["resourceVersion"] = json!("99");
    json["status"] =
        json!({"conditions": [{"type": "Accepted", "status": "True"}], "observedGeneration": 1});
    let scope = feed.apply(Change::Apply(input_from_json(
        SourceKind::VirtualService,
        json,
    )));
    assert_eq!(scope, ChangeScope::None);
    assert!(
        feed.revision() > before,
        "the new status is visible to status readers"
    );
    let view = feed.view(true);
    let status = view.config[&key("VirtualService", "r")]
        .status
        .clone()
        .unwrap();
    assert_eq!(status.observed_generation, Some(1));
}

#[test]
fn an_unreadable_object_is_kept_for_status_and_removed_from_the_model() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    feed.apply(Change::Apply(vs("r", (90, 10), 1)));
    let bad = input_from_json(
        SourceKind::VirtualService,
        json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
               "metadata": {"name": "r", "namespace": "shop", "generation": 2},
               "spec": {"hosts": ["cart"], "tcp": [{"bogus": 1}]}}),
    );
    assert_eq!(feed.apply(Change::Apply(bad)), ChangeScope::All);
    assert_eq!(feed.model().virtual_services().count(), 0);
    let view = feed.view(true);
    match &view.config[&key("VirtualService", "r")].content {
        ConfigContent::Unreadable { path, message } => {
            assert!(path.starts_with("spec.tcp[0]"), "{path}");
            assert!(message.contains("bogus"), "{message}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn pods_get_their_address_from_endpoint_slices_until_their_status_has_one() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    assert_eq!(
        feed.apply(Change::Apply(pod("cart-1", None))),
        ChangeScope::None
    );
    assert!(feed.model().workload("shop", "cart-1").is_none());

    let endpoints = json!([{"addresses": ["10.0.0.7"], "conditions": {"ready": true},
                            "targetRef": {"kind": "Pod", "name": "cart-1", "namespace": "shop"}}]);
    let scope = feed.apply(Change::Apply(slice("cart-abc", endpoints)));
    assert_eq!(scope, ChangeScope::All);
    let w = feed.model().workload("shop", "cart-1").expect("workload");
    assert_eq!(w.address, "10.0.0.7");
    assert_eq!(w.service_account, "cart");
    assert!(w.has_sidecar);

    // A not-ready endpoint gives no address.
    let not_ready = json!([{"addresses": ["10.0.0.7"], "conditions": {"ready": false},
                            "targetRef": {"kind": "Pod", "name": "cart-1"}}]);
    feed.apply(Change::Apply(slice("cart-abc", not_ready)));
    assert!(feed.model().workload("shop", "cart-1").is_none());

    // The pod's own IP wins once it has one, whatever the slices say.
    feed.apply(Change::Apply(pod("cart-1", Some("10.0.0.8"))));
    assert_eq!(
        feed.model().workload("shop", "cart-1").unwrap().address,
        "10.0.0.8"
    );
    feed.apply(Change::Delete(key("EndpointSlice", "cart-abc")));
    assert_eq!(
        feed.model().workload("shop", "cart-1").unwrap().address,
        "10.0.0.8"
    );

    assert_eq!(
        feed.apply(Change::Delete(key("Pod", "cart-1"))),
        ChangeScope::All
    );
    assert!(feed.model().workload("shop", "cart-1").is_none());
    assert!(feed.view(true).pods.is_empty());
}

#[test]
fn a_reset_drops_what_the_relist_no_longer_has() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    feed.apply(Change::Apply(vs("a", (90, 10), 1)));
    feed.apply(Change::Apply(vs("b", (90, 10), 1)));
    let scope = feed.apply(Change::Reset(
        SourceKind::VirtualService,
        vec![vs("b", (90, 10), 1)],
    ));
    assert_eq!(scope, ChangeScope::All);
    let names: Vec<String> = feed
        .model()
        .virtual_services()
        .map(|s| s.name.clone())
        .collect();
    assert_eq!(names, ["b"]);
    assert_eq!(feed.view(true).config.len(), 1);
}

#[test]
fn service_accounts_scope_their_namespace_and_push_scope_names_its_proxies() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    feed.apply(Change::Apply(pod("cart-1", Some("10.0.0.8"))));
    let sa: k8s_openapi::api::core::v1::ServiceAccount =
        serde_json::from_value(json!({"metadata": {"name": "cart", "namespace": "shop"}})).unwrap();
    let scope = feed.apply(Change::Apply(Input::Resource(Box::new(
        Resource::ServiceAccount(sa),
    ))));
    assert_eq!(scope, ChangeScope::namespace("shop"));
    let Some(PushScope::Proxies(proxies)) = push_scope(feed.model(), &scope) else {
        panic!("expected named proxies")
    };
    assert!(proxies.contains(&ProxyId::new(ProxyKind::Sidecar, "shop", "cart-1", "cart")));
    assert_eq!(push_scope(feed.model(), &ChangeScope::None), None);
    assert_eq!(feed.view(true).service_accounts.len(), 1);
}

#[test]
fn mesh_config_default_sets_the_model_settings_and_its_deletion_restores_the_base() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    let mc = input_from_json(
        SourceKind::MeshConfig,
        json!({"apiVersion": "mesh.trellis.dev/v1alpha1", "kind": "MeshConfig",
               "metadata": {"name": "default"},
               "spec": {"trustDomain": "corp.example", "defaultMtlsMode": "STRICT",
                        "outboundTrafficPolicy": {"mode": "REGISTRY_ONLY"},
                        "accessLogFile": "/dev/stdout", "accessLogEncoding": "JSON",
                        "extensionProviders": [{"name": "authz",
                            "envoyExtAuthzHttp": {"service": "authz.shop.svc.cluster.local", "port": 8000}}],
                        "localityLbSetting": {"failover": [{"from": "us-east", "to": "eu"}]}}}),
    );
    assert_eq!(feed.apply(Change::Apply(mc)), ChangeScope::All);
    let s = feed.model().settings();
    let locality = s
        .locality_lb
        .as_ref()
        .expect("the mesh-wide locality setting");
    assert_eq!(locality.failover[0].to, "eu");
    assert_eq!(s.extension_providers.len(), 1);
    assert_eq!(s.extension_providers[0].name, "authz");
    assert_eq!(s.trust_domain, "corp.example");
    assert_eq!(s.default_mtls, MtlsMode::Strict);
    assert_eq!(s.outbound_policy, OutboundPolicy::RegistryOnly);
    let log = s.access_log.as_ref().expect("the access log");
    assert_eq!(log.path, "/dev/stdout");
    assert_eq!(log.encoding, trellis_api::mesh::AccessLogEncoding::Json);
    assert_eq!(log.format, None);
    let key = ObjectRef {
        kind: "MeshConfig".into(),
        namespace: None,
        name: "default".into(),
    };
    feed.apply(Change::Delete(key));
    assert_eq!(feed.model().settings(), &MeshSettings::default());
}

fn pa(namespace: &str, selector: bool, mode: &str) -> Input {
    let mut spec = json!({"mtls": {"mode": mode}});
    if selector {
        spec["selector"] = json!({"matchLabels": {"app": "cart"}});
    }
    input_from_json(
        SourceKind::PeerAuthentication,
        json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
               "metadata": {"name": "default", "namespace": namespace}, "spec": spec}),
    )
}

#[test]
fn the_mesh_wide_peer_authentication_sets_the_default_mtls_mode() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    // A namespace policy or a workload selector is not mesh-wide: it goes to the
    // model as a PeerAuthentication (the translator resolves it per workload port).
    assert_ne!(
        feed.apply(Change::Apply(pa("shop", false, "STRICT"))),
        ChangeScope::None
    );
    assert_ne!(
        feed.apply(Change::Apply(pa("istio-system", true, "STRICT"))),
        ChangeScope::None
    );
    assert_eq!(feed.model().settings().default_mtls, MtlsMode::Permissive);
    assert_eq!(feed.model().peer_authentications().count(), 2);
    let view = feed.view(true);
    assert!(view.config[&key("PeerAuthentication", "default")].programmed);

    assert_eq!(
        feed.apply(Change::Apply(pa("istio-system", false, "STRICT"))),
        ChangeScope::All
    );
    assert_eq!(feed.model().settings().default_mtls, MtlsMode::Strict);
    let root = ObjectRef {
        kind: "PeerAuthentication".into(),
        namespace: Some("istio-system".into()),
        name: "default".into(),
    };
    assert!(feed.view(true).config[&root].programmed);
    feed.apply(Change::Delete(root));
    assert_eq!(feed.model().settings().default_mtls, MtlsMode::Permissive);
}

#[test]
fn service_entries_and_authorization_policies_reach_the_model() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    let se = input_from_json(
        SourceKind::ServiceEntry,
        json!({"apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
               "metadata": {"name": "ext", "namespace": "shop"},
               "spec": {"hosts": ["api.example.com"], "resolution": "DNS", "location": "MESH_EXTERNAL",
                        "ports": [{"number": 443, "name": "tls", "protocol": "TLS"}]}}),
    );
    assert_eq!(feed.apply(Change::Apply(se)), ChangeScope::All);
    assert!(
        feed.model()
            .resolve_host("api.example.com", "shop")
            .is_some()
    );
    assert!(feed.view(true).config[&key("ServiceEntry", "ext")].programmed);
    assert_eq!(
        feed.apply(Change::Delete(key("ServiceEntry", "ext"))),
        ChangeScope::All
    );
    assert!(
        feed.model()
            .resolve_host("api.example.com", "shop")
            .is_none()
    );
}

/// A WorkloadEntry with an IP is a workload the model serves (mTLS when
/// labelled so); with a host name it is accepted but no workload; deleted, it
/// goes.
#[test]
fn workload_entries_with_an_ip_are_workloads() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    let entry = |name: &str, address: &str| {
        input_from_json(
            SourceKind::WorkloadEntry,
            json!({"apiVersion": "networking.istio.io/v1", "kind": "WorkloadEntry",
                   "metadata": {"name": name, "namespace": "shop"},
                   "spec": {"address": address, "serviceAccount": "vm", "weight": 3,
                            "labels": {"app": "vm", "security.istio.io/tlsMode": "istio"}}}),
        )
    };
    feed.apply(Change::Apply(entry("vm-1", "10.1.2.3")));
    let w = feed
        .model()
        .workload("shop", "WorkloadEntry:vm-1")
        .expect("vm-1 is a workload");
    assert_eq!(
        (
            w.address.as_str(),
            w.service_account.as_str(),
            w.weight,
            w.has_sidecar
        ),
        ("10.1.2.3", "vm", 3, true)
    );
    assert!(feed.view(true).config[&key("WorkloadEntry", "vm-1")].programmed);
    // a pod of the same name is another workload: neither replaces the other
    feed.apply(Change::Apply(pod("vm-1", Some("10.0.0.7"))));
    let address = |name: &str| {
        feed.model()
            .workload("shop", name)
            .map(|w| w.address.clone())
    };
    assert_eq!(address("vm-1").as_deref(), Some("10.0.0.7"));
    assert_eq!(address("WorkloadEntry:vm-1").as_deref(), Some("10.1.2.3"));
    feed.apply(Change::Apply(entry("vm-2", "vm-2.example.com")));
    assert!(
        feed.model()
            .workload("shop", "WorkloadEntry:vm-2")
            .is_none()
    );
    assert!(
        feed.view(true)
            .config
            .contains_key(&key("WorkloadEntry", "vm-2"))
    );
    feed.apply(Change::Delete(key("WorkloadEntry", "vm-1")));
    assert!(
        feed.model()
            .workload("shop", "WorkloadEntry:vm-1")
            .is_none()
    );
    assert!(
        feed.model().workload("shop", "vm-1").is_some(),
        "the pod stays"
    );
}

fn tls_secret(namespace: &str, name: &str, cert: &str) -> Input {
    use k8s_openapi::ByteString;
    crate::input::secret_input(&k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace.into()),
            ..Default::default()
        },
        type_: Some("kubernetes.io/tls".into()),
        data: Some(
            [("tls.crt", cert), ("tls.key", "KEY")]
                .into_iter()
                .map(|(k, v)| (k.to_string(), ByteString(v.as_bytes().to_vec())))
                .collect(),
        ),
        ..Default::default()
    })
}

#[test]
fn credentials_are_kept_and_push_the_gateways_only_when_a_gateway_names_them() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    let edge = || ChangeScope::namespace("edge");
    // not named by any Gateway yet: kept, nothing pushed
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("edge", "web-tls", "C1"))),
        ChangeScope::None
    );
    let key = ("edge".to_string(), "web-tls".to_string());
    assert!(feed.view(true).credentials.contains_key(&key));
    feed.apply(Change::Apply(input_from_json(
        SourceKind::Gateway,
        json!({"apiVersion": "networking.istio.io/v1", "kind": "Gateway",
               "metadata": {"name": "gw", "namespace": "shop"},
               "spec": {"selector": {"istio": "ingress"}, "servers": [{
                   "port": {"number": 443, "name": "https", "protocol": "HTTPS"},
                   "hosts": ["*"], "tls": {"mode": "MUTUAL", "credentialName": "web-tls"}}]}}),
    )));
    // named: a new certificate, its CA Secret, its deletion push the gateways of its namespace
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("edge", "web-tls", "C2"))),
        edge()
    );
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("edge", "web-tls", "C2"))),
        ChangeScope::None,
        "unchanged"
    );
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("edge", "web-tls-cacert", "CA"))),
        edge()
    );
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("edge", "other", "C"))),
        ChangeScope::None
    );
    let secret = |name: &str| ObjectRef {
        kind: "Secret".into(),
        namespace: Some("edge".into()),
        name: name.into(),
    };
    assert_eq!(feed.apply(Change::Delete(secret("web-tls"))), edge());
    assert!(!feed.view(true).credentials.contains_key(&key));
    // a Secret that no longer holds a credential is forgotten like a deleted one
    let plain = crate::input::secret_input(&k8s_openapi::api::core::v1::Secret {
        metadata: k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta {
            name: Some("web-tls-cacert".into()),
            namespace: Some("edge".into()),
            ..Default::default()
        },
        ..Default::default()
    });
    assert_eq!(feed.apply(Change::Apply(plain)), edge());
    // a relist without it drops what is left
    assert_eq!(
        feed.apply(Change::Reset(SourceKind::Secret, vec![])),
        ChangeScope::None
    );
    assert!(feed.view(true).credentials.is_empty());
}

/// A Secret a DestinationRule names (`credentialName`, at any level) pushes
/// the proxies of the Secret's namespace; before the rule, nothing.
#[test]
fn credentials_named_by_a_destination_rule_push_their_namespace() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("egress", "api-client", "C1"))),
        ChangeScope::None
    );
    feed.apply(Change::Apply(input_from_json(
        SourceKind::DestinationRule,
        json!({"apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
               "metadata": {"name": "api", "namespace": "egress"},
               "spec": {"host": "api.example.com", "subsets": [{"name": "v1",
                   "trafficPolicy": {"portLevelSettings": [{"port": {"number": 443},
                       "tls": {"mode": "MUTUAL", "credentialName": "api-client"}}]}}]}}),
    )));
    let egress = ChangeScope::namespace("egress");
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("egress", "api-client", "C2"))),
        egress
    );
    assert_eq!(
        feed.apply(Change::Apply(tls_secret(
            "egress",
            "api-client-cacert",
            "CA"
        ))),
        egress
    );
    assert_eq!(
        feed.apply(Change::Apply(tls_secret("egress", "unrelated", "C"))),
        ChangeScope::None
    );
}

mod convergence {
    //! Any sequence of applies, deletes and relists leaves the feed where a fresh
    //! feed fed only the surviving objects ends up.
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    #[derive(Debug, Clone)]
    enum Obj {
        Pod { i: usize, ip: bool, sidecar: bool },
        Slice { i: usize, pods: Vec<(usize, bool)> },
        Vs { i: usize, valid: bool },
        Sa { i: usize },
    }

    fn input(o: &Obj) -> Input {
        match o {
            Obj::Pod { i, ip, sidecar } => {
                let mut containers = vec![json!({"name": "app"})];
                if *sidecar {
                    containers.push(json!({"name": "trellis-proxy"}));
                }
                let mut status = json!({"phase": "Running"});
                if *ip {
                    status["podIP"] = json!(format!("10.0.1.{i}"));
                }
                Input::Pod(Box::new(
                    serde_json::from_value(json!({
                        "metadata": {"name": format!("p{i}"), "namespace": "shop"},
                        "spec": {"serviceAccountName": format!("a{}", i % 2), "containers": containers},
                        "status": status
                    }))
                    .unwrap(),
                ))
            }
            Obj::Slice { i, pods } => {
                let endpoints: Vec<serde_json::Value> = pods
                    .iter()
                    .map(|(p, ready)| {
                        json!({"addresses": [format!("10.0.2.{p}")], "conditions": {"ready": ready},
                               "targetRef": {"kind": "Pod", "name": format!("p{p}")}})
                    })
                    .collect();
                slice(&format!("s{i}"), json!(endpoints))
            }
            Obj::Vs { i, valid } => {
                let w = if *valid { (90, 10) } else { (60, 30) };
                vs(&format!("v{i}"), w, 1)
            }
            Obj::Sa { i } => Input::Resource(Box::new(Resource::ServiceAccount(
                serde_json::from_value(
                    json!({"metadata": {"name": format!("a{i}"), "namespace": "shop"}}),
                )
                .unwrap(),
            ))),
        }
    }

    fn kind_of(o: &Obj) -> SourceKind {
        match o {
            Obj::Pod { .. } => SourceKind::Pod,
            Obj::Slice { .. } => SourceKind::EndpointSlice,
            Obj::Vs { .. } => SourceKind::VirtualService,
            Obj::Sa { .. } => SourceKind::ServiceAccount,
        }
    }

    fn obj() -> impl Strategy<Value = Obj> {
        prop_oneof![
            (0..3usize, any::<bool>(), any::<bool>()).prop_map(|(i, ip, sidecar)| Obj::Pod {
                i,
                ip,
                sidecar
            }),
            (
                0..2usize,
                prop::collection::vec((0..3usize, any::<bool>()), 0..3)
            )
                .prop_map(|(i, mut pods)| {
                    pods.sort();
                    pods.dedup_by_key(|(p, _)| *p);
                    Obj::Slice { i, pods }
                }),
            (0..2usize, any::<bool>()).prop_map(|(i, valid)| Obj::Vs { i, valid }),
            (0..2usize).prop_map(|i| Obj::Sa { i }),
        ]
    }

    #[derive(Debug, Clone)]
    enum Op {
        Apply(Obj),
        Delete(Obj),
        Reset(Vec<Obj>),
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            4 => obj().prop_map(Op::Apply),
            2 => obj().prop_map(Op::Delete),
            1 => prop::collection::vec(obj(), 0..3).prop_map(Op::Reset),
        ]
    }

    type Summary = (
        Vec<(String, String, bool)>,
        Vec<String>,
        Vec<(String, String)>,
        Vec<ObjectRef>,
        Vec<NsName>,
    );

    fn summary(feed: &MeshFeed) -> Summary {
        let view = feed.view(true);
        (
            view.model
                .workloads()
                .map(|w| (w.name.clone(), w.address.clone(), w.has_sidecar))
                .collect(),
            view.model
                .virtual_services()
                .map(|v| v.name.clone())
                .collect(),
            view.service_accounts.iter().cloned().collect(),
            view.config.keys().cloned().collect(),
            view.pods.keys().cloned().collect(),
        )
    }

    proptest! {
        #[test]
        fn the_feed_converges_to_the_surviving_objects(ops in prop::collection::vec(op(), 1..25)) {
            let mut feed = MeshFeed::new(MeshSettings::default());
            let mut live: BTreeMap<ObjectRef, Input> = BTreeMap::new();
            for op in ops {
                match op {
                    Op::Apply(o) => {
                        let i = input(&o);
                        live.insert(i.key(), i.clone());
                        feed.apply(Change::Apply(i));
                    }
                    Op::Delete(o) => {
                        let key = input(&o).key();
                        live.remove(&key);
                        feed.apply(Change::Delete(key));
                    }
                    Op::Reset(objs) => {
                        // A relist of one kind: the first object's kind (objects of
                        // other kinds in the list are dropped, as a relist has one kind).
                        let Some(kind) = objs.first().map(kind_of) else { continue };
                        let mut listed: BTreeMap<ObjectRef, Input> = BTreeMap::new();
                        for o in objs.iter().filter(|o| kind_of(o) == kind) {
                            let i = input(o);
                            listed.insert(i.key(), i);
                        }
                        live.retain(|k, _| k.kind != kind.as_str());
                        live.extend(listed.clone());
                        feed.apply(Change::Reset(kind, listed.into_values().collect()));
                    }
                }
            }
            let mut fresh = MeshFeed::new(MeshSettings::default());
            for i in live.into_values() {
                fresh.apply(Change::Apply(i));
            }
            prop_assert_eq!(summary(&feed), summary(&fresh));
        }
    }
}

fn node(name: &str, labels: serde_json::Value) -> Input {
    crate::input::node_input(
        &serde_json::from_value(json!({"metadata": {"name": name, "labels": labels}})).unwrap(),
    )
}

/// A running pod `name` on `node`, with `labels` besides `app: cart`.
fn pod_on(name: &str, node: &str, ip: &str, labels: serde_json::Value) -> Input {
    let mut all = json!({"app": "cart"});
    for (k, v) in labels.as_object().unwrap() {
        all[k] = v.clone();
    }
    Input::Pod(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": name, "namespace": "shop", "labels": all},
            "spec": {"nodeName": node, "serviceAccountName": "cart", "containers": [
                {"name": "app", "image": "cart"}, {"name": "trellis-proxy", "image": "envoy"}
            ]},
            "status": {"phase": "Running", "podIP": ip}
        }))
        .unwrap(),
    ))
}

#[test]
fn pods_take_the_locality_of_their_node_unless_their_label_sets_one() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    let locality = |feed: &MeshFeed, name: &str| {
        feed.model()
            .workload("shop", name)
            .and_then(|w| w.locality.clone())
    };
    // A pod before its node is known: no locality yet.
    feed.apply(Change::Apply(pod_on("cart-1", "n1", "10.0.0.1", json!({}))));
    assert_eq!(locality(&feed, "cart-1"), None);
    let scope = feed.apply(Change::Apply(node(
        "n1",
        json!({"topology.kubernetes.io/region": "us-east", "topology.kubernetes.io/zone": "us-east-1a",
               "topology.istio.io/subzone": "rack-7"}),
    )));
    assert_ne!(scope, ChangeScope::None, "the pod's endpoints moved");
    assert_eq!(
        locality(&feed, "cart-1").as_deref(),
        Some("us-east/us-east-1a/rack-7")
    );
    // The deprecated labels count when the GA ones are absent.
    feed.apply(Change::Apply(node(
        "n2",
        json!({"failure-domain.beta.kubernetes.io/region": "eu", "failure-domain.beta.kubernetes.io/zone": "eu-1"}),
    )));
    feed.apply(Change::Apply(pod_on("cart-2", "n2", "10.0.0.2", json!({}))));
    assert_eq!(locality(&feed, "cart-2").as_deref(), Some("eu/eu-1/"));
    // The pod label wins over the node, dots standing for slashes.
    feed.apply(Change::Apply(pod_on(
        "cart-3",
        "n1",
        "10.0.0.3",
        json!({"istio-locality": "ap.ap-2"}),
    )));
    assert_eq!(locality(&feed, "cart-3").as_deref(), Some("ap/ap-2"));
    feed.apply(Change::Apply(pod_on(
        "cart-4",
        "n1",
        "10.0.0.4",
        json!({"topology.istio.io/locality": "sa.sa-1.x", "istio-locality": "ignored"}),
    )));
    assert_eq!(locality(&feed, "cart-4").as_deref(), Some("sa/sa-1/x"));
    // A node relabelled moves its pods; an unrelated change to it pushes nothing.
    feed.apply(Change::Apply(node(
        "n1",
        json!({"topology.kubernetes.io/region": "us-west", "topology.kubernetes.io/zone": "b"}),
    )));
    assert_eq!(locality(&feed, "cart-1").as_deref(), Some("us-west/b/"));
    assert_eq!(locality(&feed, "cart-3").as_deref(), Some("ap/ap-2"));
    let again = node(
        "n1",
        json!({"topology.kubernetes.io/region": "us-west", "topology.kubernetes.io/zone": "b", "other": "x"}),
    );
    assert_eq!(feed.apply(Change::Apply(again)), ChangeScope::None);
    // The node gone (or relisted without it): its pods lose the locality.
    feed.apply(Change::Reset(SourceKind::Node, vec![node("n2", json!({}))]));
    assert_eq!(locality(&feed, "cart-1"), None);
    assert_eq!(
        locality(&feed, "cart-2"),
        None,
        "n2 has no topology labels now"
    );
}

#[test]
fn listed_endpoints_take_the_locality_of_their_node() {
    let mut feed = MeshFeed::new(MeshSettings::default());
    feed.apply(Change::Apply(input_from_json(
        SourceKind::Service,
        json!({"apiVersion": "v1", "kind": "Service",
               "metadata": {"name": "db", "namespace": "shop"},
               "spec": {"ports": [{"name": "tcp", "port": 5432}]}}),
    )));
    // Listed by hand for the Service (it has no selector): one endpoint on node n1,
    // one outside the cluster, one on a node not known yet.
    let listing = Input::EndpointSlice(Box::new(
        serde_json::from_value(json!({
            "metadata": {"name": "db-1", "namespace": "shop",
                         "labels": {"kubernetes.io/service-name": "db"}},
            "addressType": "IPv4",
            "ports": [{"name": "tcp", "port": 5432}],
            "endpoints": [
                {"addresses": ["10.0.0.1"], "nodeName": "n1", "zone": "us-east-1a"},
                {"addresses": ["192.0.2.7"], "zone": "us-east-1a"},
                {"addresses": ["10.0.0.2"], "nodeName": "n2"}
            ]
        }))
        .unwrap(),
    ));
    feed.apply(Change::Apply(node(
        "n1",
        json!({"topology.kubernetes.io/region": "us-east", "topology.kubernetes.io/zone": "us-east-1a"}),
    )));
    feed.apply(Change::Apply(listing));
    let localities = |feed: &MeshFeed| -> Vec<(String, Option<String>)> {
        let model = feed.model();
        let db = (model.registry().services())
            .find(|s| s.hostname == "db.shop.svc.cluster.local")
            .expect("the Service is in the model")
            .clone();
        let mut endpoints: Vec<(String, Option<String>)> = model
            .endpoints(&db, &db.ports[0], None)
            .into_iter()
            .map(|e| (e.address, e.locality))
            .collect();
        endpoints.sort();
        endpoints
    };
    let east = Some("us-east/us-east-1a/".to_string());
    assert_eq!(
        localities(&feed),
        [
            ("10.0.0.1".to_string(), east.clone()),
            ("10.0.0.2".to_string(), None),
            ("192.0.2.7".to_string(), None)
        ]
    );
    // The other node becomes known, and the first is relabelled: their endpoints move.
    let scope = feed.apply(Change::Apply(node(
        "n2",
        json!({"topology.kubernetes.io/region": "eu", "topology.kubernetes.io/zone": "eu-1"}),
    )));
    assert_ne!(scope, ChangeScope::None, "an endpoint's locality changed");
    feed.apply(Change::Apply(node(
        "n1",
        json!({"topology.kubernetes.io/region": "us-west", "topology.kubernetes.io/zone": "b"}),
    )));
    assert_eq!(
        localities(&feed),
        [
            ("10.0.0.1".to_string(), Some("us-west/b/".to_string())),
            ("10.0.0.2".to_string(), Some("eu/eu-1/".to_string())),
            ("192.0.2.7".to_string(), None)
        ]
    );
    // A node no endpoint is on pushes nothing.
    let scope = feed.apply(Change::Apply(node(
        "n3",
        json!({"topology.kubernetes.io/region": "ap", "topology.kubernetes.io/zone": "ap-1"}),
    )));
    assert_eq!(scope, ChangeScope::None);
}
