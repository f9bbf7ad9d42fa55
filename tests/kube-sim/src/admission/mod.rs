//! Dynamic admission: calls the matching webhooks of MutatingWebhookConfigurations, then of
//! ValidatingWebhookConfigurations, with AdmissionReview v1 over HTTPS.
//!
//! ```text
//! pub async fn admit(mutating: &[Value], validating: &[Value], request: &AdmissionRequest,
//!                    resolver: &ServiceResolver) -> Result<Option<Value>, ApiError>
//! pub type ServiceResolver = Arc<dyn Fn(&str /*namespace*/, &str /*name*/, u16 /*port*/)
//!                                -> Option<SocketAddr> + Send + Sync>
//! ```
//! `mutating`/`validating` are the configuration objects as stored. The result is the admitted
//! object (JSONPatch mutations applied in order; `None` for DELETE). A denial is the webhook's
//! status worded `admission webhook "<name>" denied the request: <message>` (code at least 400);
//! a webhook that cannot be called fails the request with 500 under `failurePolicy: Fail` (the
//! default) and is skipped under `Ignore`. Webhooks are called in configuration-name order, then
//! in their order within a configuration. `timeoutSeconds` defaults to 10.

// ApiError is the crate's one error type and is returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

pub mod client;
pub mod matching;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use serde_json::{Value, json};

use crate::error::ApiError;
use crate::patch::json_patch::apply_json_patch;

/// Maps a `clientConfig.service` to an address on loopback (there is no cluster DNS).
pub type ServiceResolver = Arc<dyn Fn(&str, &str, u16) -> Option<SocketAddr> + Send + Sync>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Operation {
    Create,
    Update,
    Delete,
    Connect,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Create => "CREATE",
            Operation::Update => "UPDATE",
            Operation::Delete => "DELETE",
            Operation::Connect => "CONNECT",
        }
    }
}

/// The authenticated user, sent as `request.userInfo`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

/// One write as the admission chain sees it.
#[derive(Debug, Clone)]
pub struct AdmissionRequest {
    pub operation: Operation,
    pub group: String,
    pub version: String,
    pub resource: String,
    pub subresource: String,
    pub kind: String,
    pub name: String,
    /// Empty for cluster-scoped objects.
    pub namespace: String,
    pub namespace_labels: BTreeMap<String, String>,
    pub object: Option<Value>,
    pub old_object: Option<Value>,
    pub user: UserInfo,
    pub dry_run: bool,
}

/// Runs the admission chain; see the module documentation.
pub async fn admit(
    mutating: &[Value],
    validating: &[Value],
    request: &AdmissionRequest,
    resolver: &ServiceResolver,
) -> Result<Option<Value>, ApiError> {
    let mut request = request.clone();
    for (webhook, _) in ordered_webhooks(mutating, &request) {
        if let Some(mutated) = call_webhook(&webhook, &request, resolver, true).await? {
            request.object = Some(mutated);
        }
    }
    for (webhook, _) in ordered_webhooks(validating, &request) {
        call_webhook(&webhook, &request, resolver, false).await?;
    }
    Ok(request.object)
}

/// The matching webhooks, configurations sorted by name as the API server does.
fn ordered_webhooks(configurations: &[Value], request: &AdmissionRequest) -> Vec<(Value, String)> {
    let mut configs: Vec<&Value> = configurations.iter().collect();
    configs.sort_by_key(|c| {
        c.pointer("/metadata/name")
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    });
    configs
        .into_iter()
        .flat_map(|config| {
            let config_name = config
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default()
                .to_string();
            config
                .get("webhooks")
                .and_then(Value::as_array)
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .filter(|w| matching::webhook_matches(w, request))
                .map(move |w| (w, config_name.clone()))
        })
        .collect()
}

fn new_uid() -> String {
    let b: [u8; 16] = rand::random();
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[0..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..32]
    )
}

fn review_for(request: &AdmissionRequest, uid: &str) -> Value {
    let options = match request.operation {
        Operation::Create => json!({"kind": "CreateOptions", "apiVersion": "meta.k8s.io/v1"}),
        Operation::Update => json!({"kind": "UpdateOptions", "apiVersion": "meta.k8s.io/v1"}),
        Operation::Delete => json!({"kind": "DeleteOptions", "apiVersion": "meta.k8s.io/v1"}),
        Operation::Connect => Value::Null,
    };
    let kind = json!({"group": request.group, "version": request.version, "kind": request.kind});
    let resource =
        json!({"group": request.group, "version": request.version, "resource": request.resource});
    let mut body = json!({
        "uid": uid,
        "kind": kind,
        "resource": resource,
        "requestKind": kind,
        "requestResource": resource,
        "name": request.name,
        "operation": request.operation.as_str(),
        "userInfo": {"username": request.user.username, "uid": request.user.uid, "groups": request.user.groups},
        "object": request.object,
        "oldObject": request.old_object,
        "dryRun": request.dry_run,
        "options": options,
    });
    if !request.namespace.is_empty() {
        body["namespace"] = json!(request.namespace);
    }
    if !request.subresource.is_empty() {
        body["subResource"] = json!(request.subresource);
        body["requestSubResource"] = json!(request.subresource);
    }
    json!({"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": body})
}

/// Calls one webhook. Returns the patched object of an allowing mutating webhook that patched.
async fn call_webhook(
    webhook: &Value,
    request: &AdmissionRequest,
    resolver: &ServiceResolver,
    mutating: bool,
) -> Result<Option<Value>, ApiError> {
    let name = webhook
        .get("name")
        .and_then(Value::as_str)
        .unwrap_or_default();
    let ignore = webhook.get("failurePolicy").and_then(Value::as_str) == Some("Ignore");
    match call_and_check(webhook, name, request, resolver, mutating).await {
        Ok(outcome) => outcome,
        Err(_) if ignore => Ok(None),
        Err(why) => Err(ApiError::internal(format!(
            "Internal error occurred: failed calling webhook \"{name}\": {why}"
        ))),
    }
}

/// The outer error is a call failure (subject to failurePolicy); the inner result is the
/// webhook's verdict.
async fn call_and_check(
    webhook: &Value,
    name: &str,
    request: &AdmissionRequest,
    resolver: &ServiceResolver,
    mutating: bool,
) -> Result<Result<Option<Value>, ApiError>, String> {
    let client_config = webhook.get("clientConfig").cloned().unwrap_or(Value::Null);
    let timeout = webhook
        .get("timeoutSeconds")
        .and_then(Value::as_u64)
        .unwrap_or(10)
        .clamp(1, 30);
    let mut endpoint = client::endpoint(&client_config, resolver)
        .map_err(|e| format!("failed to call webhook: {e}"))?;
    let separator = if endpoint.path.contains('?') {
        '&'
    } else {
        '?'
    };
    endpoint.path = format!("{}{separator}timeout={timeout}s", endpoint.path);
    endpoint.url = format!("{}{separator}timeout={timeout}s", endpoint.url);
    let uid = new_uid();
    let review = review_for(request, &uid);
    let ca_bundle = client_config.get("caBundle").and_then(Value::as_str);
    let reply = client::call(&endpoint, ca_bundle, &review, Duration::from_secs(timeout))
        .await
        .map_err(|e| format!("failed to call webhook: {e}"))?;
    let response = reply
        .get("response")
        .ok_or("received invalid webhook response: response is missing")?;
    let got_uid = response
        .get("uid")
        .and_then(Value::as_str)
        .unwrap_or_default();
    if got_uid != uid {
        return Err(format!(
            "received invalid webhook response: expected response.uid=\"{uid}\", got \"{got_uid}\""
        ));
    }
    if response.get("allowed").and_then(Value::as_bool) != Some(true) {
        return Ok(Err(denial(
            name,
            response.get("status").or(response.get("result")),
        )));
    }
    let Some(patch) = response.get("patch").and_then(Value::as_str) else {
        return Ok(Ok(None));
    };
    if !mutating {
        return Err("validating webhook may not return a patch".to_string());
    }
    match response.get("patchType").and_then(Value::as_str) {
        Some("JSONPatch") => {}
        other => return Err(format!("unsupported patch type {other:?}")),
    }
    let patch_bytes = base64::engine::general_purpose::STANDARD
        .decode(patch)
        .map_err(|e| format!("invalid patch: {e}"))?;
    let patch: Value =
        serde_json::from_slice(&patch_bytes).map_err(|e| format!("invalid patch: {e}"))?;
    let Some(object) = request.object.as_ref() else {
        return Ok(Ok(None));
    };
    apply_json_patch(object, &patch)
        .map(|patched| Ok(Some(patched)))
        .map_err(|e| format!("JSON patch failed: {}", e.message))
}

/// The error for a denial, worded as the API server's `webhookerrors.ToStatusErr`.
fn denial(name: &str, status: Option<&Value>) -> ApiError {
    let text = |k: &str| {
        status
            .and_then(|s| s.get(k))
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_string()
    };
    let code = status
        .and_then(|s| s.get("code"))
        .and_then(Value::as_u64)
        .and_then(|c| u16::try_from(c).ok())
        .filter(|c| *c >= 400)
        .unwrap_or(400);
    let denied_by = format!("admission webhook \"{name}\" denied the request");
    let (message, reason) = (text("message"), text("reason"));
    let message = if !message.is_empty() {
        format!("{denied_by}: {message}")
    } else if !reason.is_empty() {
        format!("{denied_by}: {reason}")
    } else {
        format!("{denied_by} without explanation")
    };
    ApiError::new(code, &reason, message)
}

#[cfg(test)]
mod tests;
