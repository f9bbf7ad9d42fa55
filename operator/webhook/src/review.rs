//! AdmissionReview v1: the request fields the webhooks read, and responses.
//!
//! The reviewed object stays raw JSON text until a handler needs it, and a
//! response is written straight to bytes: an injection review costs one parse
//! of the pod and one serialization of the patch, no intermediate trees.

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

/// What the handlers need from `request` of an AdmissionReview.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    pub uid: String,
    pub kind: String,
    pub group: String,
    pub operation: String,
    pub namespace: String,
    pub name: String,
    /// The object as sent (JSON text); `None` when absent or `null`.
    pub object: Option<Box<RawValue>>,
}

/// The answer to one review.
#[derive(Debug, Clone, PartialEq)]
pub enum Verdict {
    /// Allowed, optionally with an RFC 6902 patch (its JSON text).
    Allow { patch: Option<Vec<u8>> },
    /// Denied with an HTTP code and a message; `causes` are `(field, message)` pairs.
    Deny {
        code: u16,
        reason: &'static str,
        message: String,
        causes: Vec<(String, String)>,
    },
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ReviewIn {
    api_version: Option<String>,
    kind: Option<String>,
    request: Option<RequestIn>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct RequestIn {
    uid: Option<String>,
    kind: Option<GroupKind>,
    operation: Option<String>,
    namespace: Option<String>,
    name: Option<String>,
    object: Option<Box<RawValue>>,
}

#[derive(Deserialize, Default)]
#[serde(default)]
struct GroupKind {
    group: Option<String>,
    kind: Option<String>,
}

/// Reads an AdmissionReview body. The error names the missing or wrong field.
pub fn parse(body: &[u8]) -> Result<AdmissionRequest, String> {
    let review: ReviewIn =
        serde_json::from_slice(body).map_err(|e| format!("cannot read the body: {e}"))?;
    if review.kind.as_deref() != Some("AdmissionReview") {
        return Err("kind: expected AdmissionReview".into());
    }
    match review.api_version.as_deref() {
        Some("admission.k8s.io/v1") => {}
        other => {
            return Err(format!(
                "apiVersion: expected admission.k8s.io/v1, got {other:?}"
            ));
        }
    }
    let request = review.request.ok_or("request: missing field")?;
    let uid = request.uid.unwrap_or_default();
    if uid.is_empty() {
        return Err("request.uid: missing field".into());
    }
    let kind = request.kind.unwrap_or_default();
    Ok(AdmissionRequest {
        uid,
        kind: kind.kind.unwrap_or_default(),
        group: kind.group.unwrap_or_default(),
        operation: request.operation.unwrap_or_default(),
        namespace: request.namespace.unwrap_or_default(),
        name: request.name.unwrap_or_default(),
        object: request.object.filter(|o| o.get() != "null"),
    })
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ReviewOut<'a> {
    api_version: &'static str,
    kind: &'static str,
    response: ResponseOut<'a>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct ResponseOut<'a> {
    uid: &'a str,
    allowed: bool,
    status: StatusOut<'a>,
}

#[derive(Serialize)]
struct StatusOut<'a> {
    status: &'static str,
    code: u16,
    reason: &'static str,
    message: &'a str,
    details: DetailsOut<'a>,
}

#[derive(Serialize)]
struct DetailsOut<'a> {
    causes: Vec<CauseOut<'a>>,
}

#[derive(Serialize)]
struct CauseOut<'a> {
    reason: &'static str,
    field: &'a str,
    message: &'a str,
}

/// The AdmissionReview v1 response for `uid`, as the JSON body to send.
pub fn response(uid: &str, verdict: &Verdict) -> Vec<u8> {
    match verdict {
        Verdict::Allow { patch } => allowed(uid, patch.as_deref()),
        Verdict::Deny {
            code,
            reason,
            message,
            causes,
        } => {
            let review = ReviewOut {
                api_version: "admission.k8s.io/v1",
                kind: "AdmissionReview",
                response: ResponseOut {
                    uid,
                    allowed: false,
                    status: StatusOut {
                        status: "Failure",
                        code: *code,
                        reason,
                        message,
                        details: DetailsOut {
                            causes: causes
                                .iter()
                                .map(|(field, message)| CauseOut {
                                    reason: "FieldValueInvalid",
                                    field,
                                    message,
                                })
                                .collect(),
                        },
                    },
                },
            };
            // Structs of strings, numbers and bools: serialization cannot fail.
            serde_json::to_vec(&review).unwrap_or_default()
        }
    }
}

/// An allowing response, written directly: the base64 patch is most of it
/// and needs no JSON escaping, so it is encoded in place (with SIMD: on a
/// sidecar patch, about a third of the time of a scalar encoder).
fn allowed(uid: &str, patch: Option<&[u8]>) -> Vec<u8> {
    let base64 = base64_simd::STANDARD;
    let encoded = patch.map_or(0, |p| base64.encoded_length(p.len()));
    let mut out = Vec::with_capacity(160 + uid.len() + encoded);
    out.extend_from_slice(
        br#"{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","response":{"uid":"#,
    );
    // A string into a Vec: cannot fail.
    let _ = serde_json::to_writer(&mut out, uid);
    out.extend_from_slice(br#","allowed":true"#);
    if let Some(patch) = patch {
        out.extend_from_slice(br#","patchType":"JSONPatch","patch":""#);
        base64.encode_append(patch, &mut out);
        out.push(b'"');
    }
    out.extend_from_slice(b"}}");
    out
}
