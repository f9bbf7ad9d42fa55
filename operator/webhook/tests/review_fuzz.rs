//! Property: whatever JSON arrives, the webhook answers: no panic, a review
//! that cannot be read is refused with a message, and every answer is an
//! AdmissionReview whose patch (if any) is a JSON Patch. Object keys are drawn
//! from the field names the readers look for, so the values reach them.

use base64::Engine as _;
use proptest::prelude::*;
use serde_json::{Map, Value, json};
use trellis_inject::InjectionContext;
use trellis_webhook::{
    AdmissionRequest, Injector, Verdict, parse_review, review_object, review_pod, review_response,
};

const KEYS: [&str; 18] = [
    "metadata",
    "spec",
    "containers",
    "initContainers",
    "volumes",
    "name",
    "namespace",
    "generateName",
    "annotations",
    "labels",
    "ports",
    "containerPort",
    "readinessProbe",
    "httpGet",
    "port",
    "serviceAccountName",
    "inject.istio.io/templates",
    "securityContext",
];

fn any_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::from),
        any::<i64>().prop_map(Value::from),
        (0u32..70_000).prop_map(Value::from),
        "[a-z/.~-]{0,12}".prop_map(Value::from),
        Just(json!("sidecar.istio.io/status")),
        Just(json!("traffic.sidecar.istio.io/excludeInboundPorts")),
        Just(json!("gateway")),
        Just(json!("istio-proxy")),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(&KEYS[..]), inner), 0..6).prop_map(
                |members| {
                    Value::Object(
                        members
                            .into_iter()
                            .map(|(k, v)| (k.to_string(), v))
                            .collect::<Map<_, _>>(),
                    )
                }
            ),
        ]
    })
}

fn injector() -> Injector {
    Injector::new(InjectionContext::from_mesh_config(
        &Default::default(),
        "trellis:test",
    ))
}

fn request(kind: &str, object: &Value) -> AdmissionRequest {
    AdmissionRequest {
        uid: "u".into(),
        kind: kind.into(),
        group: String::new(),
        operation: "CREATE".into(),
        namespace: "shop".into(),
        name: String::new(),
        object: Some(serde_json::value::to_raw_value(object).unwrap()),
    }
}

/// The answer as the API server reads it: an AdmissionReview, its patch decoded.
fn check_answer(verdict: &Verdict) {
    let body: Value = serde_json::from_slice(&review_response("u", verdict)).unwrap();
    assert_eq!(body["kind"], "AdmissionReview");
    let response = &body["response"];
    assert_eq!(response["uid"], "u");
    if let Some(patch) = response["patch"].as_str() {
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(patch)
            .unwrap();
        let _: json_patch::Patch = serde_json::from_slice(&bytes).unwrap();
    }
    if response["allowed"] == false {
        assert!(
            !response["status"]["message"]
                .as_str()
                .unwrap_or("")
                .is_empty()
        );
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn any_pod_object_gets_an_answer(object in any_json()) {
        let out = review_pod(&request("Pod", &object), &injector(), "trellis-system");
        check_answer(&out.verdict);
        if let Verdict::Deny { message, .. } = &out.verdict {
            prop_assert!(message.starts_with("Pod/"), "the denial names the pod: {message}");
        }
    }

    #[test]
    fn a_pod_with_one_field_replaced_gets_an_answer(
        field in prop::sample::select(&KEYS[..]),
        value in any_json(),
        gateway in any::<bool>(),
    ) {
        let mut pod = json!({"metadata": {"generateName": "web-", "annotations": {}, "labels": {}},
            "spec": {"serviceAccountName": "web", "containers": [{"name": "app",
                "ports": [{"name": "http", "containerPort": 8080}],
                "readinessProbe": {"httpGet": {"port": "http"}}}]}});
        // The gateway path reads the whole pod: its fields are replaced too.
        if gateway {
            pod["metadata"]["annotations"]["inject.istio.io/templates"] = json!("gateway");
            pod["spec"]["containers"][0]["name"] = json!("istio-proxy");
            pod["spec"]["securityContext"] = json!({"sysctls": []});
        }
        for at in ["", "/metadata", "/metadata/annotations", "/spec", "/spec/containers/0"] {
            if let Some(map) = pod
                .pointer_mut(at)
                .and_then(Value::as_object_mut)
                .filter(|m| m.contains_key(field))
            {
                map.insert(field.to_string(), value.clone());
                break;
            }
        }
        let out = review_pod(&request("Pod", &pod), &injector(), "trellis-system");
        check_answer(&out.verdict);
    }

    #[test]
    fn any_mesh_object_gets_an_answer(object in any_json()) {
        for kind in ["VirtualService", "DestinationRule", "AuthorizationPolicy"] {
            let mut r = request(kind, &object);
            r.group = "networking.istio.io".into();
            check_answer(&review_object(&r));
        }
    }

    #[test]
    fn any_body_is_read_or_refused(body in any_json(), raw in prop::collection::vec(any::<u8>(), 0..64)) {
        let review = json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body});
        for bytes in [serde_json::to_vec(&review).unwrap(), raw] {
            match parse_review(&bytes) {
                Ok(request) => prop_assert!(!request.uid.is_empty()),
                Err(message) => prop_assert!(!message.is_empty()),
            }
        }
    }
}
