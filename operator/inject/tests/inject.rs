//! Behaviour of `inject`: what is added, idempotence, the patch, errors.

use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::api::resource::Quantity;
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use proptest::prelude::*;
use std::collections::BTreeMap;
use trellis_api::mesh::{InjectionSettings, MeshConfigSpec, ProxySettings};
use trellis_inject::{
    InjectDecision, InjectError, InjectionContext, NATIVE_SIDECAR_ANNOTATION, ProxyPlacement,
    STATUS_ANNOTATION, inject,
};

fn ctx() -> InjectionContext {
    let mesh = MeshConfigSpec {
        proxy: Some(ProxySettings {
            image: Some("envoy:test".into()),
            ..Default::default()
        }),
        ..Default::default()
    };
    InjectionContext::from_mesh_config(&mesh, "trellis:test")
}

fn pod(yaml: &str) -> Pod {
    serde_json::from_value(serde_json::to_value(serde_yaml_value(yaml)).unwrap()).unwrap()
}

fn serde_yaml_value(yaml: &str) -> serde_json::Value {
    // JSON is YAML; the fixtures below are written as JSON to avoid a YAML dependency.
    serde_json::from_str(yaml).unwrap()
}

const APP: &str = r#"{"metadata":{"name":"web","namespace":"shop",
  "annotations":{"traffic.sidecar.istio.io/excludeOutboundPorts":"5432"}},
  "spec":{"serviceAccountName":"web-sa","containers":[{"name":"app","image":"app:1",
    "ports":[{"name":"http","containerPort":8080},{"name":"health","containerPort":8081}],
    "readinessProbe":{"httpGet":{"path":"/ready","port":"health"}},
    "livenessProbe":{"tcpSocket":{"port":8082}}}]}}"#;

#[test]
fn adds_init_sidecar_volumes_and_status() {
    let out = inject(&pod(APP), &ctx()).unwrap();
    assert!(!out.already_injected);
    let spec = out.pod.spec.as_ref().unwrap();
    let init = &spec.init_containers.as_ref().unwrap()[0];
    assert_eq!(init.image.as_deref(), Some("trellis:test"));
    let args = init.args.clone().unwrap();
    assert_eq!(args[0], "proxy-init");
    assert!(
        args.contains(&"--exclude-outbound-ports=5432".to_string()),
        "{args:?}"
    );
    // Probe ports (named 'health' -> 8081, and 8082) are excluded from inbound capture.
    assert!(
        args.contains(&"--exclude-inbound-ports=8081,8082,15021,15090".to_string()),
        "{args:?}"
    );
    let caps = init
        .security_context
        .as_ref()
        .unwrap()
        .capabilities
        .as_ref()
        .unwrap();
    assert_eq!(
        caps.add.as_deref(),
        Some(&["NET_ADMIN".to_string(), "NET_RAW".to_string()][..])
    );

    let proxy = spec
        .containers
        .iter()
        .find(|c| c.name == "trellis-proxy")
        .unwrap();
    assert_eq!(proxy.image.as_deref(), Some("envoy:test"));
    let sc = proxy.security_context.as_ref().unwrap();
    assert_eq!(sc.run_as_user, Some(1337));
    assert_eq!(sc.run_as_non_root, Some(true));
    assert_eq!(sc.read_only_root_filesystem, Some(true));
    assert_eq!(
        sc.capabilities.as_ref().unwrap().drop.as_deref(),
        Some(&["ALL".to_string()][..])
    );
    assert!(sc.capabilities.as_ref().unwrap().add.is_none());
    let ports: Vec<i32> = proxy
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, vec![15090, 15021]);
    assert!(proxy.readiness_probe.as_ref().unwrap().http_get.is_some());

    let vols = spec.volumes.as_ref().unwrap();
    let secret = vols.iter().find_map(|v| v.secret.as_ref()).unwrap();
    assert_eq!(
        secret.secret_name.as_deref(),
        Some("trellis-identity-web-sa")
    );
    let cms: Vec<&str> = vols
        .iter()
        .filter_map(|v| v.config_map.as_ref())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(
        cms,
        vec!["trellis-ca-root-cert", "trellis-sidecar-bootstrap"]
    );

    let ann = out.pod.metadata.annotations.as_ref().unwrap();
    let status: serde_json::Value = serde_json::from_str(&ann[STATUS_ANNOTATION]).unwrap();
    assert_eq!(status["containers"][0], "trellis-proxy");
    assert_eq!(ann["kubectl.kubernetes.io/default-container"], "app");
    assert_eq!(
        out.pod.metadata.labels.as_ref().unwrap()["security.istio.io/tlsMode"],
        "istio"
    );
}

#[test]
fn patch_turns_input_into_output_and_second_injection_is_a_no_op() {
    let input = pod(APP);
    let out = inject(&input, &ctx()).unwrap();
    let mut doc = serde_json::to_value(&input).unwrap();
    json_patch_apply(&mut doc, &out.patch);
    assert_eq!(doc, serde_json::to_value(&out.pod).unwrap());
    let again = inject(&out.pod, &ctx()).unwrap();
    assert!(again.already_injected);
    assert_eq!(again.pod, out.pod);
    assert!(again.patch.0.is_empty());
}

fn json_patch_apply(doc: &mut serde_json::Value, patch: &json_patch::Patch) {
    json_patch::patch(doc, patch).unwrap();
}

#[test]
fn default_service_account_and_include_ports() {
    let p = pod(r#"{"metadata":{"name":"a","namespace":"n","annotations":{
        "traffic.sidecar.istio.io/includeInboundPorts":"80,15021",
        "traffic.sidecar.istio.io/includeOutboundIPRanges":"10.0.0.0/8"}},
        "spec":{"containers":[{"name":"c"}]}}"#);
    let out = inject(&p, &ctx()).unwrap();
    let spec = out.pod.spec.unwrap();
    let args = spec.init_containers.unwrap()[0].args.clone().unwrap();
    assert!(
        args.contains(&"--include-inbound-ports=80".to_string()),
        "{args:?}"
    );
    assert!(
        args.contains(&"--include-outbound-ip-ranges=10.0.0.0/8".to_string()),
        "{args:?}"
    );
    let secret = spec
        .volumes
        .unwrap()
        .into_iter()
        .find_map(|v| v.secret)
        .unwrap();
    assert_eq!(
        secret.secret_name.as_deref(),
        Some("trellis-identity-default")
    );
}

#[test]
fn bad_annotation_names_pod_and_annotation() {
    let p = pod(r#"{"metadata":{"name":"a","namespace":"n","annotations":{
        "traffic.sidecar.istio.io/excludeOutboundIPRanges":"10.0.0.0/99"}},
        "spec":{"containers":[{"name":"c"}]}}"#);
    let err = inject(&p, &ctx()).unwrap_err();
    assert!(matches!(err, InjectError::InvalidAnnotation { .. }));
    let msg = err.to_string();
    assert!(
        msg.starts_with(
            "Pod/n/a: metadata.annotations[\"traffic.sidecar.istio.io/excludeOutboundIPRanges\"]"
        ),
        "{msg}"
    );
}

/// The proxy as a Kubernetes native sidecar: from MeshConfig
/// `holdApplicationUntilProxyStarts`, or a pod's `sidecar.istio.io/nativeSidecar`.
#[test]
fn native_sidecar_is_an_init_container_that_keeps_running() {
    let native_ctx = {
        let mesh = MeshConfigSpec {
            injection: Some(InjectionSettings {
                hold_application_until_proxy_starts: Some(true),
                ..Default::default()
            }),
            ..Default::default()
        };
        InjectionContext::from_mesh_config(&mesh, "trellis:test")
    };
    let with_annotation = |value: &str| {
        let mut p = pod(APP);
        p.metadata
            .annotations
            .get_or_insert_with(Default::default)
            .insert(NATIVE_SIDECAR_ANNOTATION.into(), value.into());
        p
    };
    for (pod, ctx) in [
        (pod(APP), native_ctx.clone()),
        (with_annotation("true"), ctx()),
    ] {
        let out = inject(&pod, &ctx).unwrap();
        let spec = out.pod.spec.as_ref().unwrap();
        let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["app"]);
        let init = spec.init_containers.as_ref().unwrap();
        let names: Vec<&str> = init.iter().map(|c| c.name.as_str()).collect();
        assert_eq!(names, ["trellis-init", "trellis-proxy"]);
        let proxy = &init[1];
        assert_eq!(proxy.restart_policy.as_deref(), Some("Always"));
        let startup = proxy
            .startup_probe
            .as_ref()
            .unwrap()
            .http_get
            .as_ref()
            .unwrap();
        assert_eq!(startup.path.as_deref(), Some("/healthz/ready"));
        let status: serde_json::Value = serde_json::from_str(
            &out.pod.metadata.annotations.as_ref().unwrap()[STATUS_ANNOTATION],
        )
        .unwrap();
        assert_eq!(
            status["initContainers"],
            serde_json::json!(["trellis-init", "trellis-proxy"])
        );
        assert_eq!(status["containers"], serde_json::json!([]));
        // Injected once: a native sidecar counts as injected too.
        let mut again = out.pod.clone();
        again
            .metadata
            .annotations
            .as_mut()
            .unwrap()
            .remove(STATUS_ANNOTATION);
        assert!(inject(&again, &ctx).unwrap().already_injected);
    }
    // The pod's annotation wins over MeshConfig.
    let out = inject(&with_annotation("false"), &native_ctx).unwrap();
    let spec = out.pod.spec.as_ref().unwrap();
    assert_eq!(spec.containers.last().unwrap().name, "trellis-proxy");
    assert!(spec.containers.last().unwrap().restart_policy.is_none());
    match inject(&with_annotation("yes"), &ctx()) {
        Err(e @ InjectError::InvalidAnnotation { .. }) => assert!(
            e.to_string().contains("sidecar.istio.io/nativeSidecar"),
            "{e}"
        ),
        other => panic!("expected an annotation error, got {other:?}"),
    }
}

#[test]
fn namespaces_excluded_by_mesh_config_are_never_injected() {
    let mesh = MeshConfigSpec {
        injection: Some(InjectionSettings {
            excluded_namespaces: vec!["legacy".into()],
            ..Default::default()
        }),
        ..Default::default()
    };
    let ctx = InjectionContext::from_mesh_config(&mesh, "trellis:test");
    let selected = BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]);
    let none = BTreeMap::new();
    let decide = |ns: &str| ctx.decide(&selected, &none, &none, ns, "trellis-system");
    assert_eq!(
        decide("legacy"),
        InjectDecision::Skip("namespace excluded by MeshConfig")
    );
    assert!(decide("shop").injects());
}

#[test]
fn pod_without_spec_is_an_error() {
    let err = inject(&Pod::default(), &ctx()).unwrap_err();
    assert!(err.to_string().contains("spec"), "{err}");
}

fn arb_pod() -> impl Strategy<Value = Pod> {
    let ann_key = prop::sample::select(vec![
        "traffic.sidecar.istio.io/excludeOutboundPorts",
        "traffic.sidecar.istio.io/excludeInboundPorts",
        "traffic.sidecar.istio.io/excludeOutboundIPRanges",
        "traffic.sidecar.istio.io/includeOutboundIPRanges",
        "traffic.sidecar.istio.io/includeInboundPorts",
        "inject.istio.io/templates",
        "other",
    ]);
    let ann_val = prop_oneof![
        Just("*".to_string()),
        Just("gateway".to_string()),
        Just("sidecar".to_string()),
        "[0-9,./ ]{0,20}",
        ".{0,10}"
    ];
    let port = prop_oneof![
        (0i32..70000).prop_map(|n| serde_json::json!(n)),
        "[a-z]{1,4}".prop_map(|s| serde_json::json!(s))
    ];
    let container = (
        prop_oneof!["[a-z]{1,6}", Just("istio-proxy".to_string())],
        prop::option::of(port.clone()),
        prop::option::of((0i32..70000, "[a-z]{1,4}")),
    );
    (
        prop::collection::btree_map(ann_key, ann_val, 0..4),
        prop::collection::vec(container, 0..4),
        prop::option::of("[a-z-]{0,8}"),
    )
        .prop_map(|(ann, containers, sa)| {
            let containers: Vec<_> = containers
                .into_iter()
                .map(|(name, probe, port)| {
                    let mut c = serde_json::json!({"name": name});
                    if let Some(p) = probe {
                        c["readinessProbe"] = serde_json::json!({"httpGet": {"port": p}});
                    }
                    if let Some((n, pn)) = port {
                        c["ports"] = serde_json::json!([{"containerPort": n, "name": pn}]);
                    }
                    c
                })
                .collect();
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": "p", "annotations": ann},
                "spec": {"containers": containers, "serviceAccountName": sa},
            }))
            .unwrap()
        })
}

proptest! {
    #[test]
    fn random_pods_never_panic_and_inject_is_idempotent(p in arb_pod()) {
        if let Ok(once) = inject(&p, &ctx()) {
            let twice = inject(&once.pod, &ctx()).unwrap();
            prop_assert_eq!(&twice.pod, &once.pod);
            prop_assert!(twice.patch.0.is_empty());
            let mut doc = serde_json::to_value(&p).unwrap();
            json_patch::patch(&mut doc, &once.patch).unwrap();
            prop_assert_eq!(doc, serde_json::to_value(&once.pod).unwrap());
        }
    }
}

/// Istio's gateway chart: the placeholder `istio-proxy` container (`image:
/// auto`) declaring the gateway's ports, its resources and the metrics port.
const GATEWAY: &str = r#"{"metadata":{"name":"ingress-1","namespace":"edge",
  "labels":{"istio":"ingressgateway","sidecar.istio.io/inject":"true"},
  "annotations":{"inject.istio.io/templates":"gateway",
    "traffic.sidecar.istio.io/excludeOutboundPorts":"not read for gateways"}},
  "spec":{"serviceAccountName":"ingress-sa","containers":[{"name":"istio-proxy","image":"auto",
    "env":[{"name":"ISTIO_META_UNPRIVILEGED_POD","value":"true"}],
    "ports":[{"name":"http","containerPort":80},{"name":"https","containerPort":443,"protocol":"TCP"},
      {"name":"http-envoy-prom","containerPort":15090,"protocol":"TCP"}],
    "resources":{"limits":{"cpu":"2"},"requests":{"cpu":"100m"}}}]}}"#;

fn container<'a>(pod: &'a Pod, name: &str) -> &'a k8s_openapi::api::core::v1::Container {
    let spec = pod.spec.as_ref().unwrap();
    spec.containers.iter().find(|c| c.name == name).unwrap()
}

fn sysctls(pod: &Pod) -> Vec<(String, String)> {
    let spec = pod.spec.as_ref().unwrap();
    spec.security_context
        .iter()
        .flat_map(|s| s.sysctls.iter().flatten())
        .map(|s| (s.name.clone(), s.value.clone()))
        .collect()
}

#[test]
fn gateway_pod_gets_a_router_proxy_in_place_of_istio_proxy() {
    let input = pod(GATEWAY);
    let out = inject(&input, &ctx()).unwrap();
    assert!(!out.already_injected);
    let spec = out.pod.spec.as_ref().unwrap();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["istio-proxy"]);
    assert!(spec.init_containers.is_none(), "{:?}", spec.init_containers);

    // The sidecar proxy's container but for its name, node id, ports and resources.
    let proxy = container(&out.pod, "istio-proxy");
    let args = proxy.args.clone().unwrap();
    let node = &args[args.iter().position(|a| a == "--service-node").unwrap() + 1];
    assert_eq!(
        node,
        "router~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local"
    );
    let sidecar = ctx().proxy_container(ProxyPlacement::AppContainer);
    let mut expected = sidecar.clone();
    expected.name = "istio-proxy".into();
    expected.args = Some(
        sidecar
            .args
            .clone()
            .unwrap()
            .into_iter()
            .map(|a| {
                if a.starts_with("sidecar~") {
                    a.replacen("sidecar~", "router~", 1)
                } else {
                    a
                }
            })
            .collect(),
    );
    expected.ports = proxy.ports.clone();
    expected.resources = proxy.resources.clone();
    assert_eq!(proxy, &expected);
    // The env the node id's variables come from: the downward API.
    let env: Vec<&str> = proxy
        .env
        .iter()
        .flatten()
        .map(|e| e.name.as_str())
        .collect();
    for var in [
        "INSTANCE_IP",
        "POD_NAME",
        "POD_NAMESPACE",
        "SERVICE_ACCOUNT",
    ] {
        assert!(env.contains(&var), "{env:?}");
    }
    assert_eq!(proxy.image.as_deref(), Some("envoy:test"));
    // The user's ports kept, ours added unless declared (15090 was).
    let ports: Vec<(Option<&str>, i32)> = proxy
        .ports
        .iter()
        .flatten()
        .map(|p| (p.name.as_deref(), p.container_port))
        .collect();
    assert_eq!(
        ports,
        [
            (Some("http"), 80),
            (Some("https"), 443),
            (Some("http-envoy-prom"), 15090),
            (Some("health"), 15021)
        ]
    );
    let limits = proxy.resources.as_ref().unwrap().limits.as_ref().unwrap();
    assert_eq!(limits["cpu"].0, "2");
    let ready = proxy
        .readiness_probe
        .as_ref()
        .unwrap()
        .http_get
        .as_ref()
        .unwrap();
    assert_eq!(ready.port, IntOrString::Int(15021));

    let vols = spec.volumes.as_ref().unwrap();
    let names: Vec<&str> = vols.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["trellis-identity", "trellis-ca-root", "trellis-bootstrap"]
    );
    assert_eq!(
        vols[0].secret.as_ref().unwrap().secret_name.as_deref(),
        Some("trellis-identity-ingress-sa")
    );
    assert_eq!(
        sysctls(&out.pod),
        [(
            "net.ipv4.ip_unprivileged_port_start".to_string(),
            "0".to_string()
        )]
    );

    let ann = out.pod.metadata.annotations.as_ref().unwrap();
    let status: serde_json::Value = serde_json::from_str(&ann[STATUS_ANNOTATION]).unwrap();
    assert_eq!(
        status,
        serde_json::json!({"initContainers": [], "containers": ["istio-proxy"],
            "volumes": ["trellis-identity", "trellis-ca-root", "trellis-bootstrap"],
            "imagePullSecrets": null, "revision": "default"})
    );
    // No other container: no default container is named.
    assert!(!ann.contains_key("kubectl.kubernetes.io/default-container"));
    // No capture, so no mTLS label: the labels are the pod's own.
    assert_eq!(out.pod.metadata.labels, input.metadata.labels);

    // The patch replaces the container whole and turns the input into the output.
    let replaced = out
        .patch
        .0
        .iter()
        .filter(|op| op.path().as_str().starts_with("/spec/containers/0"))
        .collect::<Vec<_>>();
    assert_eq!(replaced.len(), 1, "{replaced:?}");
    assert!(matches!(
        replaced[0],
        json_patch::PatchOperation::Replace(_)
    ));
    let mut doc = serde_json::to_value(&input).unwrap();
    json_patch_apply(&mut doc, &out.patch);
    assert_eq!(doc, serde_json::to_value(&out.pod).unwrap());

    // Injected once.
    let again = inject(&out.pod, &ctx()).unwrap();
    assert!(again.already_injected);
    assert_eq!(again.pod, out.pod);
    assert!(again.patch.0.is_empty());
}

#[test]
fn gateway_without_istio_proxy_gets_one_appended_with_mesh_resources() {
    let mesh = MeshConfigSpec {
        proxy: Some(ProxySettings {
            image: Some("envoy:test".into()),
            resources: Some(k8s_openapi::api::core::v1::ResourceRequirements {
                requests: Some([("memory".to_string(), Quantity("64Mi".into()))].into()),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    let ctx = InjectionContext::from_mesh_config(&mesh, "trellis:test");
    let p = pod(r#"{"metadata":{"name":"egress","namespace":"edge",
        "annotations":{"inject.istio.io/templates":"gateway"}},
        "spec":{"containers":[{"name":"helper","image":"busybox"}]}}"#);
    let out = inject(&p, &ctx).unwrap();
    let spec = out.pod.spec.as_ref().unwrap();
    let names: Vec<&str> = spec.containers.iter().map(|c| c.name.as_str()).collect();
    assert_eq!(names, ["helper", "istio-proxy"]);
    assert!(spec.init_containers.is_none());
    let proxy = container(&out.pod, "istio-proxy");
    assert!(
        proxy
            .args
            .as_ref()
            .unwrap()
            .iter()
            .any(|a| a.starts_with("router~")),
        "{:?}",
        proxy.args
    );
    let ports: Vec<i32> = proxy
        .ports
        .iter()
        .flatten()
        .map(|p| p.container_port)
        .collect();
    assert_eq!(ports, [15090, 15021]);
    assert_eq!(
        proxy.resources.as_ref().unwrap().requests.as_ref().unwrap()["memory"].0,
        "64Mi"
    );
    let vols = spec.volumes.as_ref().unwrap();
    assert_eq!(
        vols[0].secret.as_ref().unwrap().secret_name.as_deref(),
        Some("trellis-identity-default")
    );
    let ann = out.pod.metadata.annotations.as_ref().unwrap();
    assert_eq!(ann["kubectl.kubernetes.io/default-container"], "helper");
    let mut doc = serde_json::to_value(&p).unwrap();
    json_patch_apply(&mut doc, &out.patch);
    assert_eq!(doc, serde_json::to_value(&out.pod).unwrap());
    assert!(inject(&out.pod, &ctx).unwrap().already_injected);
}

#[test]
fn gateway_sysctl_is_added_only_when_the_pod_has_none_and_not_on_host_network() {
    let with_spec = |extra: serde_json::Value| {
        let mut v: serde_json::Value = serde_json::from_str(GATEWAY).unwrap();
        for (k, val) in extra.as_object().unwrap() {
            v["spec"][k] = val.clone();
        }
        serde_json::from_value::<Pod>(v).unwrap()
    };
    // The pod's own value wins; its other sysctls and settings are kept.
    let own = with_spec(
        serde_json::json!({"securityContext": {"runAsNonRoot": true, "sysctls": [
        {"name": "net.ipv4.ip_unprivileged_port_start", "value": "80"},
        {"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]}}),
    );
    let out = inject(&own, &ctx()).unwrap().pod;
    assert_eq!(
        sysctls(&out),
        [
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "80".to_string()
            ),
            ("net.ipv4.tcp_keepalive_time".to_string(), "60".to_string())
        ]
    );
    assert_eq!(
        out.spec.unwrap().security_context.unwrap().run_as_non_root,
        Some(true)
    );
    // Appended after the pod's other sysctls.
    let other = with_spec(serde_json::json!({"securityContext": {"sysctls": [
        {"name": "net.ipv4.tcp_keepalive_time", "value": "60"}]}}));
    assert_eq!(
        sysctls(&inject(&other, &ctx()).unwrap().pod),
        [
            ("net.ipv4.tcp_keepalive_time".to_string(), "60".to_string()),
            (
                "net.ipv4.ip_unprivileged_port_start".to_string(),
                "0".to_string()
            )
        ]
    );
    // Kubernetes refuses net.* sysctls with the host's network.
    let host = with_spec(serde_json::json!({"hostNetwork": true}));
    assert!(sysctls(&inject(&host, &ctx()).unwrap().pod).is_empty());
}

#[test]
fn templates_other_than_sidecar_or_gateway_are_an_error_naming_pod_and_annotation() {
    for value in ["custom", "sidecar,custom", "Gateway", ""] {
        let mut p = pod(APP);
        p.metadata
            .annotations
            .as_mut()
            .unwrap()
            .insert("inject.istio.io/templates".into(), value.into());
        let err = inject(&p, &ctx()).unwrap_err();
        assert!(
            matches!(err, InjectError::InvalidAnnotation { .. }),
            "{err:?}"
        );
        let msg = err.to_string();
        assert!(
            msg.starts_with(&format!(
                "Pod/shop/web: metadata.annotations[\"inject.istio.io/templates\"]: invalid value {value:?}"
            )),
            "{msg}"
        );
    }
    // `sidecar` is the default, said out loud.
    let mut p = pod(APP);
    p.metadata
        .annotations
        .as_mut()
        .unwrap()
        .insert("inject.istio.io/templates".into(), "sidecar".into());
    let sidecar = inject(&p, &ctx()).unwrap().pod;
    let names: Vec<&str> = sidecar
        .spec
        .as_ref()
        .unwrap()
        .containers
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["app", "trellis-proxy"]);
}
