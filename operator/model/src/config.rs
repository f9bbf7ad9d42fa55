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
