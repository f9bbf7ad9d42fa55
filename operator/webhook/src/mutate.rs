//! The mutating webhook: sidecar injection of pods on CREATE.

use crate::review::{AdmissionRequest, Verdict};
use k8s_openapi::api::core::v1::Pod;
use serde_json::Value;
use std::collections::BTreeMap;
use trellis_inject::{InjectDecision, InjectionContext, inject, should_inject};

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
    let outcome = match inject(&pod, ctx) {
        Ok(outcome) => outcome,
        Err(e) => return deny(e.to_string()),
    };
    if outcome.already_injected {
        return allow("already injected");
    }
    // The patch is computed against the object as received, touching only
    // what injection adds (injection only appends list items and map keys),
    // so fields our types do not know are kept.
    let injected = match serde_json::to_value(&outcome.pod) {
        Ok(v) => v,
        Err(e) => {
            return deny(format!(
                "Pod/{namespace}: cannot serialize the injected pod: {e}"
            ));
        }
    };
    let mut desired = raw.clone();
    for (section, key) in [
        ("metadata", "annotations"),
        ("metadata", "labels"),
        ("spec", "initContainers"),
        ("spec", "containers"),
        ("spec", "volumes"),
    ] {
        let Some(added) = injected.get(section).and_then(|s| s.get(key)) else {
            continue;
        };
        let Some(target) = desired.get_mut(section).and_then(Value::as_object_mut) else {
            continue;
        };
        let merged = merge_additions(target.get(key), added);
        target.insert(key.to_string(), merged);
    }
    let patch = json_patch::diff(raw, &desired);
    Injection {
        verdict: Verdict::Allow {
            patch: Some(serde_json::to_value(&patch).unwrap_or(Value::Array(Vec::new()))),
        },
        reason: rule.to_string(),
    }
}

/// `original` with what `injected` appended: list items after the original
/// ones, map keys the original lacks or changed; original items stay as received.
fn merge_additions(original: Option<&Value>, injected: &Value) -> Value {
    match (original, injected) {
        (Some(Value::Array(old)), Value::Array(new)) if new.len() >= old.len() => {
            let mut out = old.clone();
            out.extend(new[old.len()..].iter().cloned());
            Value::Array(out)
        }
        (Some(Value::Object(old)), Value::Object(new)) => {
            let mut out = old.clone();
            for (k, v) in new {
                if old.get(k) != Some(v) {
                    out.insert(k.clone(), v.clone());
                }
            }
            Value::Object(out)
        }
        _ => injected.clone(),
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
