//! Mesh-wide settings the model and translator read (from MeshConfig).

/// Mesh-wide default for mTLS between sidecars.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum MtlsMode {
    /// Accept both mTLS and plaintext.
    #[default]
    Permissive,
    Strict,
    Disable,
}

/// What a sidecar does with traffic to a host outside the registry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum OutboundPolicy {
    #[default]
    AllowAny,
    RegistryOnly,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct MeshSettings {
    pub trust_domain: String,
    /// The cluster DNS domain (`cluster.local`).
    pub cluster_domain: String,
    /// Policies here apply mesh-wide (Istio's `istio-system`).
    pub root_namespace: String,
    pub default_mtls: MtlsMode,
    pub outbound_policy: OutboundPolicy,
    /// MeshConfig `extensionProviders`: the external authorizers CUSTOM
    /// AuthorizationPolicies name.
    pub extension_providers: Vec<trellis_api::mesh::ExtensionProviderConfig>,
    /// MeshConfig `accessLogFile` and its encoding and format; `None`: no access log.
    pub access_log: Option<AccessLog>,
    /// MeshConfig `localityLbSetting`: the mesh-wide locality load balancing
    /// that DestinationRules without their own setting follow (unset: on,
    /// failover by region, zone and subzone when outlier detection is set).
    pub locality_lb: Option<trellis_api::networking::LocalityLoadBalancerSetting>,
}

/// Where and how every proxy writes an access log line per request and per
/// TCP connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AccessLog {
    pub path: String,
    pub encoding: trellis_api::mesh::AccessLogEncoding,
    /// The line's format operators; `None`: the translator's default for the encoding.
    pub format: Option<String>,
}

impl AccessLog {
    /// The access log a MeshConfig asks for, if any.
    pub fn from_spec(spec: &trellis_api::mesh::MeshConfigSpec) -> Option<AccessLog> {
        Some(AccessLog {
            path: spec.access_log_file.clone()?,
            encoding: spec.access_log_encoding.unwrap_or_default(),
            format: spec.access_log_format.clone(),
        })
    }
}

impl Default for MeshSettings {
    fn default() -> Self {
        MeshSettings {
            trust_domain: "cluster.local".into(),
            cluster_domain: "cluster.local".into(),
            root_namespace: "istio-system".into(),
            default_mtls: MtlsMode::Permissive,
            outbound_policy: OutboundPolicy::AllowAny,
            extension_providers: Vec::new(),
            access_log: None,
            locality_lb: None,
        }
    }
}

impl MeshSettings {
    /// `name.namespace.svc.<cluster domain>`.
    pub fn service_fqdn(&self, name: &str, namespace: &str) -> String {
        format!("{name}.{namespace}.svc.{}", self.cluster_domain)
    }

    /// `spiffe://<trust domain>/ns/<ns>/sa/<sa>`.
    pub fn spiffe_id(&self, namespace: &str, service_account: &str) -> String {
        format!(
            "spiffe://{}/ns/{namespace}/sa/{service_account}",
            self.trust_domain
        )
    }
}
