//! The MutatingWebhookConfiguration and ValidatingWebhookConfiguration, with
//! the CA bundle the API server verifies the webhook with.

use base64::Engine as _;
use serde_json::{Value, json};
use trellis_inject::NEVER_INJECTED_NAMESPACES;

pub const MUTATING_CONFIGURATION_NAME: &str = "trellis-sidecar-injector";
pub const VALIDATING_CONFIGURATION_NAME: &str = "trellis-validator";
pub const INJECT_PATH: &str = "/inject";
pub const VALIDATE_PATH: &str = "/validate";

/// How the API server reaches the webhook.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WebhookClient {
    /// The `trellis-webhook` Service of `namespace` on `port` (443 in the manifests).
    Service { namespace: String, port: u16 },
    /// A base URL such as `https://127.0.0.1:15017` (tests, out-of-cluster runs).
    Url(String),
}

impl WebhookClient {
    fn client_config(&self, path: &str, ca_bundle_pem: &str) -> Value {
        let bundle = base64::engine::general_purpose::STANDARD.encode(ca_bundle_pem);
        match self {
            WebhookClient::Service { namespace, port } => json!({
                "service": {"namespace": namespace, "name": crate::SERVICE_NAME, "port": port, "path": path},
                "caBundle": bundle,
            }),
            WebhookClient::Url(base) => json!({
                "url": format!("{}{path}", base.trim_end_matches('/')),
                "caBundle": bundle,
            }),
        }
    }
}

fn label_requirement(key: &str, operator: &str, values: &[&str]) -> Value {
    if values.is_empty() {
        json!({"key": key, "operator": operator})
    } else {
        json!({"key": key, "operator": operator, "values": values})
    }
}

/// Injection, scoped as Istio selects pods: namespaces labelled
/// `istio-injection=enabled`; else namespaces with `istio.io/rev`; else pods
/// labelled `sidecar.istio.io/inject=true`. Pods labelled
/// `sidecar.istio.io/inject=false` and the system and operator namespaces are
/// never sent. `failurePolicy: Fail` (see the crate docs).
pub fn mutating_webhook_configuration(
    operator_namespace: &str,
    client: &WebhookClient,
    ca_bundle_pem: &str,
) -> Value {
    let mut excluded: Vec<&str> = NEVER_INJECTED_NAMESPACES.to_vec();
    excluded.push(operator_namespace);
    let not_excluded = label_requirement("kubernetes.io/metadata.name", "NotIn", &excluded);
    let not_opted_out = label_requirement("sidecar.istio.io/inject", "NotIn", &["false"]);
    let webhook = |name: &str, namespace: Vec<Value>, object: Vec<Value>| {
        json!({
            "name": name,
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": "Fail",
            "reinvocationPolicy": "Never",
            "timeoutSeconds": 10,
            "clientConfig": client.client_config(INJECT_PATH, ca_bundle_pem),
            "rules": [{"operations": ["CREATE"], "apiGroups": [""], "apiVersions": ["v1"], "resources": ["pods"], "scope": "Namespaced"}],
            "namespaceSelector": {"matchExpressions": namespace},
            "objectSelector": {"matchExpressions": object},
        })
    };
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "MutatingWebhookConfiguration",
        "metadata": {"name": MUTATING_CONFIGURATION_NAME, "labels": {"app.kubernetes.io/part-of": "trellis"}},
        "webhooks": [
            webhook(
                "namespace.sidecar-injector.trellis.dev",
                vec![label_requirement("istio-injection", "In", &["enabled"]), not_excluded.clone()],
                vec![not_opted_out.clone()],
            ),
            webhook(
                "rev.namespace.sidecar-injector.trellis.dev",
                vec![
                    label_requirement("istio-injection", "DoesNotExist", &[]),
                    label_requirement("istio.io/rev", "Exists", &[]),
                    not_excluded.clone(),
                ],
                vec![not_opted_out],
            ),
            webhook(
                "object.sidecar-injector.trellis.dev",
                vec![
                    label_requirement("istio-injection", "DoesNotExist", &[]),
                    label_requirement("istio.io/rev", "DoesNotExist", &[]),
                    not_excluded,
                ],
                vec![label_requirement("sidecar.istio.io/inject", "In", &["true"])],
            ),
        ],
    })
}

/// Validation of every mesh kind on CREATE and UPDATE, with `failure_policy`
/// (`Ignore` at install, `Fail` once the webhook serves; see the crate docs).
pub fn validating_webhook_configuration(
    client: &WebhookClient,
    ca_bundle_pem: &str,
    failure_policy: &str,
) -> Value {
    json!({
        "apiVersion": "admissionregistration.k8s.io/v1",
        "kind": "ValidatingWebhookConfiguration",
        "metadata": {"name": VALIDATING_CONFIGURATION_NAME, "labels": {"app.kubernetes.io/part-of": "trellis"}},
        "webhooks": [{
            "name": "validation.trellis.dev",
            "admissionReviewVersions": ["v1"],
            "sideEffects": "None",
            "failurePolicy": failure_policy,
            "timeoutSeconds": 10,
            "clientConfig": client.client_config(VALIDATE_PATH, ca_bundle_pem),
            "rules": [{
                "operations": ["CREATE", "UPDATE"],
                "apiGroups": crate::VALIDATED_GROUPS,
                "apiVersions": ["*"],
                "resources": ["*"],
                "scope": "*",
            }],
        }],
    })
}
