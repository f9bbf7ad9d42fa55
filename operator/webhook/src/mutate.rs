//! The mutating webhook: sidecar injection of pods on CREATE.

use crate::review::{AdmissionRequest, Verdict};
use k8s_openapi::api::core::v1::Pod;
use serde_json::{Value, json};
use std::collections::BTreeMap;
use trellis_inject::{InjectDecision, InjectionContext, inject_pod, should_inject};

/// What injection decided, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    pub verdict: Verdict,
    /// The selection rule that decided, or why nothing was done.
    pub reason: String,
}

fn allow(reason: impl Into<String>) -> Injection {
    Injection {
        verdict: Verdict::Allow { patch: None },
        reason: reason.into(),
    }
}

fn string_map(meta: Option<&Value>, key: &str) -> BTreeMap<String, String> {
    meta.and_then(|m| m.get(key))
        .and_then(Value::as_object)
        .map(|m| {
            m.iter()
                .filter_map(|(k, v)| v.as_str().map(|v| (k.clone(), v.to_string())))
                .collect()
        })
        .unwrap_or_default()
}

/// Injects the pod of `request`. Namespace selection is the job of the
/// webhook configuration's `namespaceSelector`/`objectSelector` (the API
/// server only sends pods they match), so the namespace counts as selected
/// here — as for offline `trellis inject`; the pod's opt-out, the system
/// namespaces and `operator_namespace` are checked again. Idempotent: an
/// injected pod is allowed unchanged. A pod that cannot be injected (a bad
/// traffic annotation) is denied with the annotation named.
pub fn review_pod(
    request: &AdmissionRequest,
    ctx: &InjectionContext,
    operator_namespace: &str,
) -> Injection {
    if request.kind != "Pod" || !request.group.is_empty() {
        return allow(format!("not a pod: {}", request.kind));
    }
    if request.operation != "CREATE" {
        return allow(format!("operation {}", request.operation));
    }
    let Some(raw) = request.object.as_ref() else {
        return allow("no object");
    };
    let meta = raw.get("metadata");
    let namespace = meta
        .and_then(|m| m.get("namespace"))
        .and_then(Value::as_str)
        .filter(|n| !n.is_empty())
        .unwrap_or(&request.namespace)
        .to_string();
    let selected = BTreeMap::from([("istio-injection".to_string(), "enabled".to_string())]);
    let decision = should_inject(
        &selected,
        &string_map(meta, "labels"),
        &string_map(meta, "annotations"),
        &namespace,
        operator_namespace,
    );
    let rule = match decision {
        InjectDecision::Skip(why) => return allow(why),
        InjectDecision::Inject(rule) => rule,
    };
    let mut pod: Pod = match serde_json::from_value(raw.clone()) {
        Ok(pod) => pod,
        Err(e) => {
            return deny(format!(
                "Pod/{namespace}/{}: not a pod: {e}",
                pod_name(raw, request)
            ));
        }
    };
    // Pods created by controllers have no name or namespace yet: name them for messages.
    pod.metadata.namespace = Some(namespace.clone());
    if pod.metadata.name.as_deref().unwrap_or("").is_empty() {
        pod.metadata.name = Some(pod_name(raw, request));
    }
    let injected = match inject_pod(&pod, ctx) {
        Ok((_, true)) => return allow("already injected"),
        Ok((injected, false)) => injected,
        Err(e) => return deny(e.to_string()),
    };
    // The patch is built against the object as received and only adds what
    // injection adds (list items appended, map keys set), so fields our types
    // do not know are kept.
    let spec = injected.spec.as_ref();
    let parts = [
        (
            "metadata",
            "annotations",
            serde_json::to_value(&injected.metadata.annotations),
        ),
        (
            "metadata",
            "labels",
            serde_json::to_value(&injected.metadata.labels),
        ),
        (
            "spec",
            "initContainers",
            serde_json::to_value(spec.map(|s| &s.init_containers)),
        ),
        (
            "spec",
            "containers",
            serde_json::to_value(spec.map(|s| &s.containers)),
        ),
        (
            "spec",
            "volumes",
            serde_json::to_value(spec.map(|s| &s.volumes)),
        ),
    ];
    let mut ops = Vec::new();
    for (section, key, value) in parts {
        let value = match value {
            Ok(v) => v,
            Err(e) => {
                return deny(format!(
                    "Pod/{namespace}: cannot serialize the injected {section}.{key}: {e}"
                ));
            }
        };
        if !value.is_null() {
            let original = raw.get(section).and_then(|s| s.get(key));
            additions(original, &value, &format!("/{section}/{key}"), &mut ops);
        }
    }
    Injection {
        verdict: Verdict::Allow {
            patch: Some(Value::Array(ops)),
        },
        reason: rule.to_string(),
    }
}

/// JSON Pointer escaping of one key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// RFC 6902 operations turning `original` (at `path`) into `injected`, which
/// extends it: appended list items, added or changed map members.
fn additions(original: Option<&Value>, injected: &Value, path: &str, ops: &mut Vec<Value>) {
    match (original, injected) {
        (None | Some(Value::Null), _) => {
            ops.push(json!({"op": "add", "path": path, "value": injected}));
        }
        (Some(Value::Array(old)), Value::Array(new)) if new.len() >= old.len() => {
            for item in &new[old.len()..] {
                ops.push(json!({"op": "add", "path": format!("{path}/-"), "value": item}));
            }
        }
        (Some(Value::Object(old)), Value::Object(new)) => {
            for (k, v) in new {
                if old.get(k) != Some(v) {
                    let at = format!("{path}/{}", escape(k));
                    ops.push(json!({"op": "add", "path": at, "value": v}));
                }
            }
        }
        (Some(old), new) if old != new => {
            ops.push(json!({"op": "replace", "path": path, "value": new}));
        }
        _ => {}
    }
}

fn pod_name(raw: &Value, request: &AdmissionRequest) -> String {
    let meta = raw.get("metadata");
    let get = |k: &str| {
        meta.and_then(|m| m.get(k))
            .and_then(Value::as_str)
            .filter(|s| !s.is_empty())
    };
    get("name")
        .or(get("generateName"))
        .map(str::to_string)
        .unwrap_or_else(|| request.name.clone())
}

fn deny(message: String) -> Injection {
    Injection {
        verdict: Verdict::Deny {
            code: 400,
            reason: "BadRequest",
            message: message.clone(),
            causes: Vec::new(),
        },
        reason: message,
    }
}
