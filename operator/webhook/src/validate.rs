//! The validating webhook: every mesh kind on CREATE and UPDATE.

use crate::review::{AdmissionRequest, Verdict};
use serde_json::Value;
use trellis_api::{FieldError, Resource};

/// The API groups whose kinds are validated.
pub const VALIDATED_GROUPS: [&str; 3] = [
    trellis_api::networking::GROUP,
    trellis_api::security::GROUP,
    trellis_api::mesh::GROUP,
];

/// Validates the object of `request`: it must load as its mesh kind (unknown
/// fields and unsupported values rejected), pass the kind's semantic
/// validation, and agree with the request (kind, namespace). A denial lists
/// every error as `path: message`, `; `-separated, after the object's
/// `kind/namespace/name`; the same errors are the status' causes.
pub fn review_object(request: &AdmissionRequest) -> Verdict {
    if !matches!(request.operation.as_str(), "CREATE" | "UPDATE")
        || !VALIDATED_GROUPS.contains(&request.group.as_str())
    {
        return Verdict::Allow { patch: None };
    }
    let Some(raw) = request.object.as_deref() else {
        return Verdict::Allow { patch: None };
    };
    let object: Value = match serde_json::from_str(raw.get()) {
        Ok(object) => object,
        Err(e) => {
            return Verdict::Deny {
                code: 400,
                reason: "BadRequest",
                message: format!(
                    "{}: the object cannot be read: {e}",
                    fallback_label(request)
                ),
                causes: Vec::new(),
            };
        }
    };
    let object = with_generated_name(object, request);
    let namespace = if request.namespace.is_empty() {
        None
    } else {
        Some(request.namespace.as_str())
    };
    let (label, errors) = match trellis_api::load::load_value(object) {
        Err((object_ref, path, message)) => {
            let label = object_ref.map_or_else(|| fallback_label(request), |o| o.to_string());
            (label, vec![FieldError { path, message }])
        }
        Ok(resource) => {
            let mut errors = trellis_api::validate(&resource);
            errors.extend(admission_checks(&resource, request, namespace));
            (resource.object_ref().to_string(), errors)
        }
    };
    if errors.is_empty() {
        return Verdict::Allow { patch: None };
    }
    let listed: Vec<String> = errors.iter().map(ToString::to_string).collect();
    Verdict::Deny {
        // 400 BadRequest as Istio's validation answers: kubectl prints
        // `Error from server (BadRequest): ... denied the request: <message>`.
        code: 400,
        reason: "BadRequest",
        message: format!("{label} is invalid: {}", listed.join("; ")),
        causes: errors.into_iter().map(|e| (e.path, e.message)).collect(),
    }
}

fn fallback_label(request: &AdmissionRequest) -> String {
    if request.namespace.is_empty() {
        format!("{}/{}", request.kind, request.name)
    } else {
        format!("{}/{}/{}", request.kind, request.namespace, request.name)
    }
}

/// On CREATE with `generateName`, the name is not known yet: validate a name
/// of the generated form so `metadata.name: required` is not reported.
fn with_generated_name(mut object: Value, request: &AdmissionRequest) -> Value {
    let meta = object.get_mut("metadata").and_then(Value::as_object_mut);
    if let Some(meta) = meta {
        let has_name = meta
            .get("name")
            .and_then(Value::as_str)
            .is_some_and(|n| !n.is_empty());
        if !has_name {
            let name = match meta.get("generateName").and_then(Value::as_str) {
                Some(prefix) if !prefix.is_empty() => format!("{prefix}x"),
                _ => request.name.clone(),
            };
            if !name.is_empty() {
                meta.insert("name".into(), Value::String(name));
            }
        }
    }
    object
}

/// What only the admission request can tell: the object must be the kind
/// the request is about, and a namespaced object must live in the request's
/// namespace.
fn admission_checks(
    resource: &Resource,
    request: &AdmissionRequest,
    namespace: Option<&str>,
) -> Vec<FieldError> {
    let mut errors = Vec::new();
    if !request.kind.is_empty() && resource.kind() != request.kind {
        errors.push(FieldError {
            path: "kind".into(),
            message: format!(
                "the object is a {} but the request is for {}",
                resource.kind(),
                request.kind
            ),
        });
    }
    if let (Some(own), Some(ns)) = (resource.meta().namespace.as_deref(), namespace)
        && !resource.is_cluster_scoped()
        && own != ns
    {
        errors.push(FieldError {
            path: "metadata.namespace".into(),
            message: format!("{own:?} does not match the namespace of the request {ns:?}"),
        });
    }
    errors
}
