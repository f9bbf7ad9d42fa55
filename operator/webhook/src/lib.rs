//! Trellis admission webhooks, served over HTTPS as AdmissionReview v1:
//!
//! - `POST /inject` (mutating): sidecar (or, for pods annotated
//!   `inject.istio.io/templates: gateway`, gateway) injection of pods on CREATE with
//!   trellis-inject — the same function `trellis inject` uses offline —
//!   answered as a JSONPatch; an injected pod is left unchanged.
//! - `POST /validate` (validating): every mesh kind on CREATE/UPDATE is loaded
//!   as its type and validated (trellis-api `validate`, plus the checks only
//!   the request allows); a denial lists every error as `path: message`.
//! - `GET /healthz`: readiness.
//!
//! The serving certificate is issued by the mesh CA for
//! `trellis-webhook.<namespace>.svc` ([`issue_serving_cert`]); the same CA's
//! root is the `caBundle` of both webhook configurations
//! ([`mutating_webhook_configuration`], [`validating_webhook_configuration`]),
//! so the API server trusts the webhook from the first call.
//!
//! # Failure policies
//!
//! Injection is `Fail`: a pod of a mesh namespace created while the webhook
//! is down would run without a sidecar, outside mTLS and policy, silently.
//! Its namespaceSelector limits that dependency to mesh namespaces, so the
//! rest of the cluster (and the control plane's own namespace) never waits
//! on us. Validation starts `Ignore`: at install time the CRDs, the
//! configuration and the Deployment arrive together, and a `Fail` policy
//! would refuse mesh objects (including our own default MeshConfig) until the
//! first replica serves — a deadlock for GitOps tools applying everything at
//! once. The operator switches it to `Fail` once the webhook serves, from
//! then on broken config is refused rather than admitted.
//!
//! The operator starts it with [`Webhook::new`] and
//! [`Webhook::serve_on_own_runtime`], and rotates the certificate with
//! [`Webhook::set_certificate`].
#![forbid(unsafe_code)]

mod configs;
mod mutate;
mod review;
mod server;
mod tls;
mod validate;

pub use configs::{
    INJECT_PATH, MUTATING_CONFIGURATION_NAME, VALIDATE_PATH, VALIDATING_CONFIGURATION_NAME,
    WebhookClient, mutating_webhook_configuration, validating_webhook_configuration,
};
pub use mutate::{Injection, Injector, review_pod};
pub use review::{AdmissionRequest, Verdict, parse as parse_review, response as review_response};
pub use server::{ServingRuntime, Webhook, WebhookConfig};
pub use tls::{
    SERVICE_NAME, SERVING_CERT_TTL, ServingCert, issue_serving_cert, server_config,
    service_dns_names,
};
pub use validate::{VALIDATED_GROUPS, review_object};

/// The one error type of this crate.
#[derive(Debug, thiserror::Error)]
pub enum WebhookError {
    #[error("webhook serving certificate: {0}")]
    Certificate(String),
    #[error("webhook runtime: {0}")]
    Runtime(std::io::Error),
}
