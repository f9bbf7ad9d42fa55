//! [`Resource`]: any object the mesh reads, as one enum.

use crate::error::ObjectRef;
use crate::mesh::{MeshConfig, MeshStatus};
use crate::networking::{
    DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService, WorkloadEntry,
};
use crate::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};
use k8s_openapi::api::core::v1::{Namespace, Service, ServiceAccount};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Serialize;

/// One object of a mesh configuration: a mesh kind, or one of the
/// Kubernetes kinds universal mode reads from files.
#[derive(Serialize, Clone, Debug, PartialEq)]
#[serde(untagged)]
#[allow(clippy::large_enum_variant)]
pub enum Resource {
    VirtualService(VirtualService),
    DestinationRule(DestinationRule),
    Gateway(Gateway),
    ServiceEntry(ServiceEntry),
    Sidecar(Sidecar),
    WorkloadEntry(WorkloadEntry),
    PeerAuthentication(PeerAuthentication),
    RequestAuthentication(RequestAuthentication),
    AuthorizationPolicy(AuthorizationPolicy),
    MeshConfig(MeshConfig),
    MeshStatus(MeshStatus),
    Service(Service),
    ServiceAccount(ServiceAccount),
    Namespace(Namespace),
}

impl Resource {
    /// The Kubernetes kind.
    pub fn kind(&self) -> &'static str {
        match self {
            Resource::VirtualService(_) => "VirtualService",
            Resource::DestinationRule(_) => "DestinationRule",
            Resource::Gateway(_) => "Gateway",
            Resource::ServiceEntry(_) => "ServiceEntry",
            Resource::Sidecar(_) => "Sidecar",
            Resource::WorkloadEntry(_) => "WorkloadEntry",
            Resource::PeerAuthentication(_) => "PeerAuthentication",
            Resource::RequestAuthentication(_) => "RequestAuthentication",
            Resource::AuthorizationPolicy(_) => "AuthorizationPolicy",
            Resource::MeshConfig(_) => "MeshConfig",
            Resource::MeshStatus(_) => "MeshStatus",
            Resource::Service(_) => "Service",
            Resource::ServiceAccount(_) => "ServiceAccount",
            Resource::Namespace(_) => "Namespace",
        }
    }

    /// The object's metadata.
    pub fn meta(&self) -> &ObjectMeta {
        match self {
            Resource::VirtualService(o) => &o.metadata,
            Resource::DestinationRule(o) => &o.metadata,
            Resource::Gateway(o) => &o.metadata,
            Resource::ServiceEntry(o) => &o.metadata,
            Resource::Sidecar(o) => &o.metadata,
            Resource::WorkloadEntry(o) => &o.metadata,
            Resource::PeerAuthentication(o) => &o.metadata,
            Resource::RequestAuthentication(o) => &o.metadata,
            Resource::AuthorizationPolicy(o) => &o.metadata,
            Resource::MeshConfig(o) => &o.metadata,
            Resource::MeshStatus(o) => &o.metadata,
            Resource::Service(o) => &o.metadata,
            Resource::ServiceAccount(o) => &o.metadata,
            Resource::Namespace(o) => &o.metadata,
        }
    }

    /// Whether the kind is cluster-scoped.
    pub fn is_cluster_scoped(&self) -> bool {
        is_cluster_scoped_kind(self.kind())
    }

    /// The object's name (empty when the document had none).
    pub fn name(&self) -> &str {
        self.meta().name.as_deref().unwrap_or("")
    }

    /// The namespace: the object's own, `"default"` when a namespaced object
    /// has none (as `kubectl apply` and universal mode do), `None` when
    /// cluster-scoped.
    pub fn namespace(&self) -> Option<&str> {
        if self.is_cluster_scoped() {
            None
        } else {
            Some(self.meta().namespace.as_deref().unwrap_or("default"))
        }
    }

    /// `kind/namespace/name` of the object, for messages.
    pub fn object_ref(&self) -> ObjectRef {
        ObjectRef {
            kind: self.kind().to_owned(),
            namespace: self.namespace().map(str::to_owned),
            name: self.name().to_owned(),
        }
    }

    /// The object as JSON, as it would be sent to the API server.
    pub fn to_json(&self) -> serde_json::Value {
        // Serializing these types only fails for non-string map keys, which
        // none of them have.
        serde_json::to_value(self).unwrap_or(serde_json::Value::Null)
    }
}

/// Whether a kind this crate knows is cluster-scoped.
pub fn is_cluster_scoped_kind(kind: &str) -> bool {
    matches!(kind, "MeshConfig" | "Namespace")
}
