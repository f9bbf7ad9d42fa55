//! `MeshConfig`: the mesh-wide settings (cluster-scoped singleton `default`).

use crate::duration::Duration;
use crate::networking::{LocalityLoadBalancerSetting, OutboundTrafficPolicy};
use crate::security::MutualTLSMode;
use crate::status::ResourceStatus;
use k8s_openapi::api::core::v1::ResourceRequirements;
use kube::CustomResource;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    /// External authorizers that `AuthorizationPolicy` objects with the
    /// `CUSTOM` action name in `spec.provider.name` (Istio's MeshConfig field).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub extension_providers: Vec<ExtensionProviderConfig>,
    /// Where every sidecar and gateway writes an access log line per request
    /// and per TCP connection (`/dev/stdout`: the proxy container's log).
    /// Unset: no access log (Istio's MeshConfig field).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_file: Option<String>,
    /// `TEXT` (default) or `JSON` lines.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_encoding: Option<AccessLogEncoding>,
    /// The line, in Envoy's format operators (`%REQ(:PATH)%`, `%RESPONSE_CODE%`...):
    /// a string for `TEXT`, a JSON object of field -> operator for `JSON`.
    /// Unset: Trellis's default (see the README).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub access_log_format: Option<String>,
    /// Mesh-wide locality load balancing (Istio's MeshConfig field); a
    /// DestinationRule's `loadBalancer.localityLbSetting` replaces it. Unset,
    /// it is on with no `distribute` or `failover`, as in Istio.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub locality_lb_setting: Option<LocalityLoadBalancerSetting>,
}

/// How access log lines are written.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum AccessLogEncoding {
    #[default]
    Text,
    Json,
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

/// One entry of `extensionProviders`: a name and exactly one provider kind.
/// Only Envoy's external authorization (HTTP or gRPC) is supported.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExtensionProviderConfig {
    /// The name `AuthorizationPolicy.spec.provider.name` refers to; unique.
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_http: Option<EnvoyExternalAuthorizationHttpProvider>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub envoy_ext_authz_grpc: Option<EnvoyExternalAuthorizationGrpcProvider>,
}

/// An external authorizer spoken to over HTTP (Envoy's `ext_authz` filter with
/// an `http_service`): a request is allowed when the authorizer answers 2xx.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyExternalAuthorizationHttpProvider {
    /// The authorizer's mesh host: `ext-authz.foo.svc.cluster.local`, a
    /// ServiceEntry host, or `<namespace>/<host>` when the host is defined in
    /// several namespaces.
    pub service: String,
    /// The service port the authorizer listens on.
    pub port: u32,
    /// How long to wait for the authorizer (default 600s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Prepended to the request path in the check request (starts with `/`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path_prefix: Option<String>,
    /// Allow the request when the authorizer cannot be reached or errs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    /// Re-pick the route after the authorizer changed request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_route_cache: Option<bool>,
    /// HTTP status returned when the authorizer cannot be reached (default 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    /// Client request headers sent to the authorizer besides `Host`, `Method`,
    /// `Path`, `Content-Length` and `Authorization`; `x-foo-*` is a prefix,
    /// `*-foo` a suffix, matched case-insensitively.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include_request_headers_in_check: Vec<String>,
    /// Headers (name: value) added to every check request.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub include_additional_headers_in_check: BTreeMap<String, String>,
    /// Send (part of) the request body to the authorizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<EnvoyExternalAuthorizationRequestBody>,
    /// Authorizer response headers copied to the request sent upstream when allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_upstream_on_allow: Vec<String>,
    /// Authorizer response headers returned to the client when denied.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_deny: Vec<String>,
    /// Authorizer response headers added to the response to the client when allowed.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub headers_to_downstream_on_allow: Vec<String>,
}

/// An external authorizer spoken to over gRPC (`envoy.service.auth.v3.Authorization/Check`).
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyExternalAuthorizationGrpcProvider {
    /// The authorizer's mesh host, as for the HTTP provider.
    pub service: String,
    /// The service port the authorizer listens on (an HTTP/2 or gRPC port).
    pub port: u32,
    /// How long to wait for the authorizer (default 600s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<Duration>,
    /// Allow the request when the authorizer cannot be reached or errs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_open: Option<bool>,
    /// Re-pick the route after the authorizer changed request headers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub clear_route_cache: Option<bool>,
    /// HTTP status returned when the authorizer cannot be reached (default 403).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status_on_error: Option<String>,
    /// Send (part of) the request body to the authorizer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub include_request_body_in_check: Option<EnvoyExternalAuthorizationRequestBody>,
}

/// How much of the request body a check request carries.
#[derive(Serialize, Deserialize, JsonSchema, Clone, Debug, Default, PartialEq, Eq, Hash)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct EnvoyExternalAuthorizationRequestBody {
    /// Buffer at most this many bytes (more than 0).
    pub max_request_bytes: u32,
    /// Send the first `maxRequestBytes` of a longer body instead of answering 413.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allow_partial_message: Option<bool>,
    /// Send the body as raw bytes (gRPC) instead of a UTF-8 string.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pack_as_bytes: Option<bool>,
}

impl ExtensionProviderConfig {
    /// The `service`/`port` of whichever provider kind is set.
    pub fn service_port(&self) -> Option<(&str, u32)> {
        match (&self.envoy_ext_authz_http, &self.envoy_ext_authz_grpc) {
            (Some(h), _) => Some((h.service.as_str(), h.port)),
            (None, Some(g)) => Some((g.service.as_str(), g.port)),
            (None, None) => None,
        }
    }
}
