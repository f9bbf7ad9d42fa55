//! `MeshConfig`: the mesh-wide settings (cluster-scoped singleton `default`).

use crate::duration::Duration;
use crate::networking::OutboundTrafficPolicy;
use crate::security::MutualTLSMode;
use crate::status::ResourceStatus;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// The only `MeshConfig` the operator reads.
pub const MESH_CONFIG_NAME: &str = "default";
/// Trust domain when none is configured.
pub const DEFAULT_TRUST_DOMAIN: &str = "cluster.local";
/// Workload certificate lifetime when none is configured.
pub const DEFAULT_WORKLOAD_CERT_TTL: &str = "24h";
/// Fraction of a workload certificate's lifetime after which it is renewed.
pub const DEFAULT_WORKLOAD_CERT_RENEWAL_RATIO: f64 = 0.5;
/// Root certificate lifetime when none is configured (10 years).
pub const DEFAULT_ROOT_CERT_TTL: &str = "87600h";
/// Namespace label that turns on sidecar injection.
pub const DEFAULT_INJECTION_NAMESPACE_LABEL: &str = "istio-injection";

/// Mesh-wide settings: identity, default policies, proxy and injection.
#[derive(CustomResource, Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[kube(
    group = "mesh.trellis.dev",
    version = "v1alpha1",
    kind = "MeshConfig",
    status = "ResourceStatus",
    shortname = "mc",
    category = "trellis",
    printcolumn = r#"{"name":"Trust Domain","type":"string","jsonPath":".spec.trustDomain"}"#,
    printcolumn = r#"{"name":"Age","type":"date","jsonPath":".metadata.creationTimestamp"}"#,
    derive = "PartialEq",
    derive = "Default"
)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct MeshConfigSpec {
    /// SPIFFE trust domain of workload identities.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub trust_domain: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_cert_ttl: Option<Duration>,
    /// Renew a workload certificate after this fraction (0–1, exclusive) of its lifetime.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub workload_cert_renewal_ratio: Option<f64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub root_cert_ttl: Option<Duration>,
    /// mTLS mode when no PeerAuthentication applies.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub default_mtls_mode: Option<MutualTLSMode>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub outbound_traffic_policy: Option<OutboundTrafficPolicy>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub proxy: Option<ProxySettings>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub injection: Option<InjectionSettings>,
}

impl MeshConfigSpec {
    /// The configured trust domain, or the default.
    pub fn trust_domain_or_default(&self) -> &str {
        self.trust_domain.as_deref().unwrap_or(DEFAULT_TRUST_DOMAIN)
    }
}

/// The sidecar and gateway proxy.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ProxySettings {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub resources: Option<ResourceRequirements>,
    /// Envoy log level (trace, debug, info, warning, error, critical, off).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub log_level: Option<String>,
}

/// Defaults of the sidecar injector.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InjectionSettings {
    /// Namespaces carrying this label with value `enabled` get sidecars. Only
    /// `istio-injection` (the default) is supported.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub namespace_label: Option<String>,
    /// Namespaces never injected, whatever their labels.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub excluded_namespaces: Vec<String>,
    /// Start the application containers only once the proxy is ready: the
    /// proxy is injected as a Kubernetes native sidecar (an init container with
    /// `restartPolicy: Always` and a startup probe; Kubernetes 1.29+), which also
    /// lets Jobs complete. A pod's `sidecar.istio.io/nativeSidecar` overrides it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hold_application_until_proxy_starts: Option<bool>,
}
