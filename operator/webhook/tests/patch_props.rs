//! Property: for any pod the webhook injects, its JSONPatch applied to the
//! object exactly as received gives the pod `trellis-inject` produces, keeps
//! the fields our types do not know, and a second review is a no-op (with the
//! proxy as an app container or as a native sidecar), for sidecar and gateway
//! templates (`inject.istio.io/templates`), with or without an `istio-proxy`
//! container.

use k8s_openapi::api::core::v1::Pod;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use trellis_inject::{InjectionContext, inject_pod};
use trellis_webhook::{AdmissionRequest, Injector, Verdict, review_pod};

fn injector() -> Injector {
    Injector::new(ctx())
}

fn ctx() -> InjectionContext {
    InjectionContext::from_mesh_config(&Default::default(), "trellis:test")
}

fn request(object: &Value) -> AdmissionRequest {
    AdmissionRequest {
        uid: "u".into(),
        kind: "Pod".into(),
        group: String::new(),
        operation: "CREATE".into(),
        namespace: "shop".into(),
        name: String::new(),
        object: Some(serde_json::value::to_raw_value(object).unwrap()),
    }
}

/// Keys as they occur in annotations and labels, including the characters
/// JSON Pointer must escape.
fn key() -> impl Strategy<Value = String> {
    prop_oneof![
        "[a-z]{1,6}",
        "[a-z]{1,4}\\.io/[a-z~]{1,5}",
        Just("sidecar.istio.io/statusx".to_string()),
        Just("a~b/c".to_string()),
    ]
}

/// A map member as received: absent, null, empty or with members.
fn string_map() -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        prop::collection::btree_map(key(), "[ -~]{0,8}", 0..4).prop_map(|m| Some(json!(m))),
    ]
}

fn list(prefix: &'static str, item: fn(String) -> Value) -> impl Strategy<Value = Option<Value>> {
    prop_oneof![
        Just(None),
        Just(Some(Value::Null)),
        (0usize..3).prop_map(move |n| Some(Value::Array(
            (0..n).map(|i| item(format!("{prefix}{i}"))).collect()
        ))),
    ]
}

prop_compose! {
    fn raw_pod()(
        annotations in string_map(),
        labels in string_map(),
        init in list("init-", |name| json!({"name": name, "image": "busybox", "futureField": 1})),
        volumes in list("vol-", |name| json!({"name": name, "emptyDir": {}})),
        containers in 1usize..3,
        probe_port in prop::option::of(1u16..9000),
        probe_by_name in any::<bool>(),
        account in prop::option::of("[a-z]{1,8}"),
        native in prop::option::of(any::<bool>()),
        template in prop::option::of(prop::sample::select(vec!["sidecar", "gateway"])),
        istio_proxy in prop::option::of((0usize..3, any::<bool>(), any::<bool>())),
        sysctls in prop::option::of(prop::sample::select(vec![
            json!(null),
            json!({}),
            json!({"sysctls": [{"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]}),
            json!({"sysctls": [{"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"}]}),
        ])),
    ) -> Value {
        let mut meta = Map::new();
        meta.insert("generateName".into(), json!("web-"));
        if let Some(a) = annotations { meta.insert("annotations".into(), a); }
        if let Some(l) = labels { meta.insert("labels".into(), l); }
        let mut annotate = |key: &str, value: &str| {
            let annotations = meta.entry("annotations").or_insert_with(|| json!({}));
            if annotations.is_null() {
                *annotations = json!({});
            }
            annotations[key] = json!(value);
        };
        if let Some(native) = native {
            annotate("sidecar.istio.io/nativeSidecar", &native.to_string());
        }
        if let Some(template) = template {
            annotate("inject.istio.io/templates", template);
        }
        let mut containers: Vec<Value> = (0..containers)
            .map(|i| {
                let mut c = json!({"name": format!("app-{i}"), "image": "app:1", "unknownField": {"kept": i}});
                match probe_port {
                    // A probe that names its port: the port list is read too.
                    Some(port) if probe_by_name => {
                        c["ports"] = json!([{"name": "health", "containerPort": port}]);
                        c["readinessProbe"] = json!({"httpGet": {"path": "/ready", "port": "health"}});
                    }
                    Some(port) => {
                        c["readinessProbe"] = json!({"httpGet": {"path": "/ready", "port": port}});
                    }
                    None => {}
                }
                c
            })
            .collect();
        // Istio's gateway placeholder, with a field our types do not know.
        if let Some((at, ports, resources)) = istio_proxy {
            let mut c = json!({"name": "istio-proxy", "image": "auto", "unknownField": "dropped",
                "env": [{"name": "ISTIO_META_UNPRIVILEGED_POD", "value": "true"}]});
            if ports {
                c["ports"] = json!([{"name": "http", "containerPort": 8080},
                    {"name": "http-envoy-prom", "containerPort": 15090, "protocol": "TCP"}]);
            }
            if resources {
                c["resources"] = json!({"limits": {"cpu": "2"}});
            }
            containers.insert(at.min(containers.len()), c);
        }
        let mut spec = Map::new();
        spec.insert("containers".into(), Value::Array(containers));
        if let Some(sc) = sysctls { spec.insert("securityContext".into(), sc); }
        if let Some(i) = init { spec.insert("initContainers".into(), i); }
        if let Some(v) = volumes { spec.insert("volumes".into(), v); }
        if let Some(sa) = account { spec.insert("serviceAccountName".into(), json!(sa)); }
        json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta, "spec": spec, "status": {"phase": "Pending"}})
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn the_patch_applied_to_the_received_object_is_the_injected_pod(raw in raw_pod()) {
        let out = review_pod(&request(&raw), &injector(), "trellis-system");
        let Verdict::Allow { patch: Some(patch) } = out.verdict else {
            panic!("expected a patch for {raw}, got {:?} ({})", out.verdict, out.reason);
        };
        let patch: json_patch::Patch = serde_json::from_slice(&patch).unwrap();
        let mut doc = raw.clone();
        json_patch::patch(&mut doc, &patch).unwrap();

        // What offline injection makes of the same pod.
        let typed: Pod = serde_json::from_value(raw.clone()).unwrap();
        let mut named = typed.clone();
        named.metadata.name = Some("web-".into());
        named.metadata.namespace = Some("shop".into());
        let (mut expected, already) = inject_pod(&named, &ctx()).unwrap();
        prop_assert!(!already);
        expected.metadata.name = None;
        expected.metadata.namespace = None;
        let patched: Pod = serde_json::from_value(doc.clone()).unwrap();
        prop_assert_eq!(patched, expected);

        // Fields our types do not know survive, but in the container a
        // gateway proxy replaces whole.
        let named = |name: &str| {
            doc["spec"]["containers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|c| c["name"] == name)
                .cloned()
                .unwrap()
        };
        prop_assert_eq!(&named("app-0")["unknownField"], &json!({"kept": 0}));
        let gateway = raw["metadata"]["annotations"]["inject.istio.io/templates"] == "gateway";
        if raw["spec"]["containers"].as_array().unwrap().iter().any(|c| c["name"] == "istio-proxy") {
            let proxy = named("istio-proxy");
            prop_assert_eq!(proxy.get("unknownField").is_none(), gateway);
            prop_assert_eq!(proxy["image"] == "auto", !gateway);
        }
        if let Some(first) = raw["spec"]["initContainers"].get(0) {
            prop_assert_eq!(&doc["spec"]["initContainers"][0], first);
        }
        // Injected once: the patched pod is left alone.
        let again = review_pod(&request(&doc), &injector(), "trellis-system");
        prop_assert_eq!(again.verdict, Verdict::Allow { patch: None });
    }
}
