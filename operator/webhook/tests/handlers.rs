//! The handlers without a server: AdmissionReview parsing, injection and
//! validation verdicts, the webhook configurations.

use base64::Engine as _;
use k8s_openapi::api::admissionregistration::v1::{
    MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
};
use serde_json::{Value, json};
use trellis_inject::InjectionContext;
use trellis_webhook::{
    AdmissionRequest, Injector, Verdict, WebhookClient, mutating_webhook_configuration,
    parse_review, review_object, review_pod, review_response, validating_webhook_configuration,
};

fn injector() -> Injector {
    Injector::new(ctx())
}

fn ctx() -> InjectionContext {
    InjectionContext::from_mesh_config(&Default::default(), "trellis:test")
}

fn request(kind: &str, group: &str, operation: &str, object: Value) -> AdmissionRequest {
    AdmissionRequest {
        uid: "u1".into(),
        kind: kind.into(),
        group: group.into(),
        operation: operation.into(),
        namespace: "shop".into(),
        name: String::new(),
        object: Some(serde_json::value::to_raw_value(&object).unwrap()),
    }
}

fn pod(extra_meta: Value) -> Value {
    let mut meta = json!({"generateName": "web-"});
    for (k, v) in extra_meta.as_object().unwrap() {
        meta[k] = v.clone();
    }
    json!({"apiVersion": "v1", "kind": "Pod", "metadata": meta,
        "spec": {"containers": [{"name": "app", "image": "app:1", "futureField": {"x": 1}}]}})
}

#[test]
fn reviews_are_parsed_with_field_errors() {
    let ok = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
        "request": {"uid": "abc", "kind": {"group": "", "version": "v1", "kind": "Pod"},
        "operation": "CREATE", "namespace": "shop", "object": {"a": 1}}});
    let r = parse_review(ok.to_string().as_bytes()).unwrap();
    assert_eq!((r.uid.as_str(), r.kind.as_str()), ("abc", "Pod"));
    let mut v1beta1 = ok.clone();
    v1beta1["apiVersion"] = "admission.k8s.io/v1beta1".into();
    assert!(
        parse_review(v1beta1.to_string().as_bytes())
            .unwrap_err()
            .starts_with("apiVersion:")
    );
    let mut no_uid = ok.clone();
    no_uid["request"]["uid"] = "".into();
    assert_eq!(
        parse_review(no_uid.to_string().as_bytes()).unwrap_err(),
        "request.uid: missing field"
    );
    assert!(parse_review(b"{").is_err());
}

fn patch_of(verdict: &Verdict) -> Value {
    match verdict {
        Verdict::Allow { patch: Some(p) } => serde_json::from_slice(p).unwrap(),
        other => panic!("expected a patch, got {other:?}"),
    }
}

#[test]
fn injection_patch_applies_to_the_raw_object_and_keeps_unknown_fields() {
    let raw = pod(json!({"annotations": {"keep": "me"}, "labels": {"app": "web"}}));
    let out = review_pod(
        &request("Pod", "", "CREATE", raw.clone()),
        &injector(),
        "trellis-system",
    );
    let patch: json_patch::Patch = serde_json::from_value(patch_of(&out.verdict)).unwrap();
    let mut doc = raw.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    assert_eq!(doc["spec"]["containers"][0]["futureField"]["x"], 1);
    assert_eq!(doc["spec"]["containers"][1]["name"], "trellis-proxy");
    assert_eq!(doc["spec"]["initContainers"][0]["name"], "trellis-init");
    assert_eq!(doc["metadata"]["annotations"]["keep"], "me");
    assert!(doc["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
    assert_eq!(doc["metadata"]["labels"]["app"], "web");
    assert_eq!(
        doc["metadata"]["labels"]["security.istio.io/tlsMode"],
        "istio"
    );
    assert_eq!(doc["spec"]["volumes"].as_array().unwrap().len(), 3);
    // No name yet: generateName is enough; the patch does not invent a name or namespace.
    assert!(doc["metadata"].get("name").is_none());
    assert!(doc["metadata"].get("namespace").is_none());

    // The injected pod comes back unchanged.
    let again = review_pod(
        &request("Pod", "", "CREATE", doc),
        &injector(),
        "trellis-system",
    );
    assert_eq!(again.verdict, Verdict::Allow { patch: None });
    assert_eq!(again.reason, "already injected");
}

#[test]
fn injection_skips_and_denials() {
    let skip = |r: AdmissionRequest| {
        let out = review_pod(&r, &injector(), "trellis-system");
        assert_eq!(
            out.verdict,
            Verdict::Allow { patch: None },
            "{}",
            out.reason
        );
    };
    skip(request(
        "Pod",
        "",
        "CREATE",
        pod(json!({"labels": {"sidecar.istio.io/inject": "false"}})),
    ));
    skip(request("Pod", "", "UPDATE", pod(json!({}))));
    skip(request("Deployment", "apps", "CREATE", pod(json!({}))));
    let mut system = request("Pod", "", "CREATE", pod(json!({})));
    system.namespace = "kube-system".into();
    skip(system);
    let mut own = request("Pod", "", "CREATE", pod(json!({})));
    own.namespace = "trellis-system".into();
    skip(own);

    let bad = request(
        "Pod",
        "",
        "CREATE",
        pod(json!({"annotations": {"traffic.sidecar.istio.io/excludeOutboundPorts": "http"}})),
    );
    match review_pod(&bad, &injector(), "trellis-system").verdict {
        Verdict::Deny { code, message, .. } => {
            assert_eq!(code, 400);
            assert!(
                message.starts_with("Pod/shop/web-: metadata.annotations[\"traffic.sidecar.istio.io/excludeOutboundPorts\"]: invalid value \"http\""),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn validation_lists_every_error_and_load_errors_by_path() {
    let vs = json!({"apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
        "metadata": {"name": "r", "namespace": "shop"},
        "spec": {"hosts": ["r", ""], "http": [{"route": [{"destination": {"host": "r"}, "weight": -1}]}]}});
    let Verdict::Deny {
        message, causes, ..
    } = review_object(&request(
        "VirtualService",
        "networking.istio.io",
        "CREATE",
        vs,
    ))
    else {
        panic!("allowed")
    };
    assert!(
        message.starts_with("VirtualService/shop/r is invalid: "),
        "{message}"
    );
    assert!(causes.len() >= 2, "{causes:?}");
    for (field, text) in &causes {
        assert!(message.contains(&format!("{field}: {text}")), "{message}");
    }

    let unknown = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "p", "namespace": "shop"}, "spec": {"mtls": {"mode": "STRICT", "bogus": 1}}});
    let Verdict::Deny { message, .. } = review_object(&request(
        "PeerAuthentication",
        "security.istio.io",
        "UPDATE",
        unknown,
    )) else {
        panic!("allowed")
    };
    assert!(
        message.starts_with("PeerAuthentication/shop/p is invalid: spec.mtls"),
        "{message}"
    );
    assert!(message.contains("bogus"), "{message}");

    // Another namespace than the request's.
    let elsewhere = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"name": "p", "namespace": "other"}, "spec": {}});
    let Verdict::Deny { message, .. } = review_object(&request(
        "PeerAuthentication",
        "security.istio.io",
        "CREATE",
        elsewhere,
    )) else {
        panic!("allowed")
    };
    assert!(
        message.contains("metadata.namespace: \"other\" does not match"),
        "{message}"
    );

    // Valid objects, DELETE and other groups are allowed.
    let valid = json!({"apiVersion": "security.istio.io/v1", "kind": "PeerAuthentication",
        "metadata": {"generateName": "p-", "namespace": "shop"}, "spec": {"mtls": {"mode": "STRICT"}}});
    let allowed = Verdict::Allow { patch: None };
    assert_eq!(
        review_object(&request(
            "PeerAuthentication",
            "security.istio.io",
            "CREATE",
            valid.clone()
        )),
        allowed
    );
    assert_eq!(
        review_object(&request(
            "PeerAuthentication",
            "security.istio.io",
            "DELETE",
            valid.clone()
        )),
        allowed
    );
    assert_eq!(review_object(&request("Pod", "", "CREATE", valid)), allowed);
}

#[test]
fn responses_carry_the_uid_patch_and_status() {
    let allow: Value = serde_json::from_slice(&review_response(
        "u1",
        &Verdict::Allow {
            patch: Some(
                json!([{"op": "add", "path": "/a", "value": 1}])
                    .to_string()
                    .into(),
            ),
        },
    ))
    .unwrap();
    assert_eq!(allow["response"]["uid"], "u1");
    assert_eq!(allow["response"]["allowed"], true);
    assert_eq!(allow["response"]["patchType"], "JSONPatch");
    let patch = base64::engine::general_purpose::STANDARD
        .decode(allow["response"]["patch"].as_str().unwrap())
        .unwrap();
    assert_eq!(
        serde_json::from_slice::<Value>(&patch).unwrap()[0]["path"],
        "/a"
    );
    let deny: Value = serde_json::from_slice(&review_response(
        "u2",
        &Verdict::Deny {
            code: 400,
            reason: "BadRequest",
            message: "m".into(),
            causes: vec![("spec.a".into(), "bad".into())],
        },
    ))
    .unwrap();
    assert_eq!(deny["response"]["allowed"], false);
    assert_eq!(
        deny["response"]["status"]["details"]["causes"][0]["field"],
        "spec.a"
    );
}

#[test]
fn webhook_configurations_are_valid_objects_with_the_ca_bundle() {
    let client = WebhookClient::Service {
        namespace: "trellis-system".into(),
        port: 443,
    };
    let pem = "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
    let m: MutatingWebhookConfiguration = serde_json::from_value(mutating_webhook_configuration(
        "trellis-system",
        &client,
        pem,
    ))
    .unwrap();
    assert_eq!(m.webhooks.as_ref().unwrap().len(), 3);
    for w in m.webhooks.as_ref().unwrap() {
        assert_eq!(w.failure_policy.as_deref(), Some("Fail"));
        let cc = &w.client_config;
        assert_eq!(cc.ca_bundle.as_ref().unwrap().0, pem.as_bytes());
        assert_eq!(
            cc.service.as_ref().unwrap().path.as_deref(),
            Some("/inject")
        );
        let excluded = w
            .namespace_selector
            .as_ref()
            .unwrap()
            .match_expressions
            .as_ref()
            .unwrap()
            .iter()
            .find(|e| e.key == "kubernetes.io/metadata.name")
            .unwrap();
        assert!(
            excluded
                .values
                .as_ref()
                .unwrap()
                .contains(&"trellis-system".to_string())
        );
    }
    let v: ValidatingWebhookConfiguration =
        serde_json::from_value(validating_webhook_configuration(
            &WebhookClient::Url("https://127.0.0.1:15017/".into()),
            pem,
            "Ignore",
        ))
        .unwrap();
    let w = &v.webhooks.as_ref().unwrap()[0];
    assert_eq!(w.failure_policy.as_deref(), Some("Ignore"));
    assert_eq!(
        w.client_config.url.as_deref(),
        Some("https://127.0.0.1:15017/validate")
    );
    assert_eq!(
        w.rules.as_ref().unwrap()[0].api_groups.as_ref().unwrap(),
        &[
            "networking.istio.io",
            "security.istio.io",
            "mesh.trellis.dev"
        ]
    );
}

/// A gateway pod as Istio's gateway chart makes it: the placeholder
/// `istio-proxy` container becomes the router proxy, by a patch that
/// replaces it whole and adds no init container nor capture.
#[test]
fn gateway_pods_get_their_istio_proxy_replaced() {
    let raw = json!({"apiVersion": "v1", "kind": "Pod",
        "metadata": {"generateName": "ingress-", "labels": {"istio": "ingressgateway", "sidecar.istio.io/inject": "true"},
            "annotations": {"inject.istio.io/templates": "gateway"}},
        "spec": {"serviceAccountName": "ingress", "futureSpecField": true,
            "containers": [{"name": "istio-proxy", "image": "auto", "futureField": {"x": 1},
                "ports": [{"name": "http", "containerPort": 80}]}]}});
    let out = review_pod(
        &request("Pod", "", "CREATE", raw.clone()),
        &injector(),
        "trellis-system",
    );
    let patch_json = patch_of(&out.verdict);
    let ops = patch_json.as_array().unwrap();
    let on_proxy: Vec<&Value> = ops
        .iter()
        .filter(|op| {
            op["path"]
                .as_str()
                .unwrap()
                .starts_with("/spec/containers/0")
        })
        .collect();
    assert_eq!(on_proxy.len(), 1, "{ops:?}");
    assert_eq!(on_proxy[0]["op"], "replace");
    assert_eq!(on_proxy[0]["path"], "/spec/containers/0");
    assert!(
        ops.iter().all(|op| !op["path"]
            .as_str()
            .unwrap()
            .starts_with("/spec/initContainers")),
        "{ops:?}"
    );

    let patch: json_patch::Patch = serde_json::from_value(patch_json).unwrap();
    let mut doc = raw.clone();
    json_patch::patch(&mut doc, &patch).unwrap();
    let proxy = &doc["spec"]["containers"][0];
    assert_eq!(proxy["name"], "istio-proxy");
    assert_eq!(proxy["image"], "docker.io/envoyproxy/envoy:v1.40.0");
    assert!(proxy.get("futureField").is_none());
    assert_eq!(
        proxy["args"][3],
        "router~$(INSTANCE_IP)~$(POD_NAME).$(POD_NAMESPACE)~$(POD_NAMESPACE).svc.cluster.local"
    );
    assert_eq!(
        proxy["ports"][0],
        json!({"name": "http", "containerPort": 80})
    );
    assert_eq!(doc["spec"]["futureSpecField"], true);
    assert!(doc["spec"].get("initContainers").is_none());
    assert_eq!(
        doc["spec"]["securityContext"]["sysctls"],
        json!([{"name": "net.ipv4.ip_unprivileged_port_start", "value": "0"}])
    );
    assert_eq!(doc["spec"]["volumes"].as_array().unwrap().len(), 3);
    assert_eq!(doc["metadata"]["labels"], raw["metadata"]["labels"]);
    assert!(doc["metadata"]["annotations"]["sidecar.istio.io/status"].is_string());
    assert!(doc["metadata"].get("name").is_none());

    let again = review_pod(
        &request("Pod", "", "CREATE", doc),
        &injector(),
        "trellis-system",
    );
    assert_eq!(again.verdict, Verdict::Allow { patch: None });
    assert_eq!(again.reason, "already injected");
}

#[test]
fn unknown_injection_templates_are_denied_by_name() {
    let bad = request(
        "Pod",
        "",
        "CREATE",
        pod(json!({"annotations": {"inject.istio.io/templates": "sidecar,custom"}})),
    );
    match review_pod(&bad, &injector(), "trellis-system").verdict {
        Verdict::Deny { code, message, .. } => {
            assert_eq!(code, 400);
            assert!(
                message.starts_with("Pod/shop/web-: metadata.annotations[\"inject.istio.io/templates\"]: invalid value \"sidecar,custom\""),
                "{message}"
            );
        }
        other => panic!("{other:?}"),
    }
}
