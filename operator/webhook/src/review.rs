//! AdmissionReview v1: the request fields the webhooks read, and responses.

use base64::Engine as _;
use serde_json::{Value, json};

/// What the handlers need from `request` of an AdmissionReview.
#[derive(Debug, Clone, PartialEq)]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: String,
    pub group: String,
    pub operation: String,
    pub namespace: String,
    pub name: String,
    pub object: Option<Value>,
}

/// The answer to one review.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed, optionally with an RFC 6902 patch.
    Allow { patch: Option<Value> },
    /// Denied with an HTTP code and a message; `causes` are `(field, message)` pairs.
    Deny {
        code: u16,
        reason: &'static str,
        message: String,
        causes: Vec<(String, String)>,
    },
}

/// Reads an AdmissionReview body. The error names the missing or wrong field.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest, String> {
    let review: Value =
        serde_json::from_slice(body).map_err(|e| format!("the body is not JSON: {e}"))?;
    if review.get("kind").and_then(Value::as_str) != Some("AdmissionReview") {
        return Err("kind: expected AdmissionReview".into());
    }
    match review.get("apiVersion").and_then(Value::as_str) {
        Some("admission.k8s.io/v1") => {}
        other => {
            return Err(format!(
                "apiVersion: expected admission.k8s.io/v1, got {other:?}"
            ));
        }
    }
    let request = review.get("request").ok_or("request: missing field")?;
    let text = |pointer: &str| {
        request
            .pointer(pointer)
            .and_then(Value::as_str)
            .unwrap_or("")
            .to_string()
    };
    let uid = text("/uid");
    if uid.is_empty() {
        return Err("request.uid: missing field".into());
    }
    Ok(AdmissionRequest {
        uid,
        kind: text("/kind/kind"),
        group: text("/kind/group"),
        operation: text("/operation"),
        namespace: text("/namespace"),
        name: text("/name"),
        object: request.get("object").filter(|o| !o.is_null()).cloned(),
    })
}

/// The AdmissionReview v1 response for `uid`.
pub fn response(uid: &str, verdict: &Verdict) -> Value {
    let mut response = json!({"uid": uid});
    match verdict {
        Verdict::Allow { patch } => {
            response["allowed"] = json!(true);
            if let Some(patch) = patch {
                let bytes = serde_json::to_vec(patch).unwrap_or_default();
                response["patchType"] = json!("JSONPatch");
                response["patch"] = json!(base64::engine::general_purpose::STANDARD.encode(bytes));
            }
        }
        Verdict::Deny {
            code,
            reason,
            message,
            causes,
        } => {
            response["allowed"] = json!(false);
            let causes: Vec<Value> = causes
                .iter()
                .map(|(field, message)| {
                    json!({"reason": "FieldValueInvalid", "field": field, "message": message})
                })
                .collect();
            response["status"] = json!({
                "status": "Failure",
                "code": code,
                "reason": reason,
                "message": message,
                "details": {"causes": causes},
            });
        }
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "response": response})
}
