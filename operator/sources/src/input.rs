//! What the sources produce: one input type for both modes. Mesh kinds,
//! MeshConfig, Services, ServiceAccounts and Namespaces arrive as
//! [`trellis_api::Resource`] — the same type universal mode loads from files —
//! plus the two kinds only a cluster has: Pods and EndpointSlices.
//!
//! Everything here is pure: JSON or typed objects in, [`Input`]s out.
use std::sync::Arc;

use crate::credentials::Credential;
use k8s_openapi::api::core::v1::{Node, Pod, Secret};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde_json::Value;
use trellis_api::status::ResourceStatus;
use trellis_api::{ObjectRef, Resource};

/// The kinds the sources watch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum SourceKind {
    Namespace,
    Service,
    ServiceAccount,
    Pod,
    EndpointSlice,
    /// Only for the locality of the pods on them.
    Node,
    MeshConfig,
    VirtualService,
    DestinationRule,
    Gateway,
    ServiceEntry,
    Sidecar,
    WorkloadEntry,
    PeerAuthentication,
    RequestAuthentication,
    AuthorizationPolicy,
    /// Only for credentials ([`crate::credentials`]).
    Secret,
}

impl SourceKind {
    pub const ALL: [SourceKind; 17] = [
        SourceKind::Namespace,
        SourceKind::Service,
        SourceKind::ServiceAccount,
        SourceKind::Pod,
        SourceKind::EndpointSlice,
        SourceKind::Node,
        SourceKind::MeshConfig,
        SourceKind::VirtualService,
        SourceKind::DestinationRule,
        SourceKind::Gateway,
        SourceKind::ServiceEntry,
        SourceKind::Sidecar,
        SourceKind::WorkloadEntry,
        SourceKind::PeerAuthentication,
        SourceKind::RequestAuthentication,
        SourceKind::AuthorizationPolicy,
        SourceKind::Secret,
    ];

    /// The mesh kinds that carry a status written by the operator.
    pub const CONFIG: [SourceKind; 9] = [
        SourceKind::VirtualService,
        SourceKind::DestinationRule,
        SourceKind::Gateway,
        SourceKind::ServiceEntry,
        SourceKind::Sidecar,
        SourceKind::WorkloadEntry,
        SourceKind::PeerAuthentication,
        SourceKind::RequestAuthentication,
        SourceKind::AuthorizationPolicy,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            SourceKind::Namespace => "Namespace",
            SourceKind::Service => "Service",
            SourceKind::ServiceAccount => "ServiceAccount",
            SourceKind::Pod => "Pod",
            SourceKind::EndpointSlice => "EndpointSlice",
            SourceKind::Node => "Node",
            SourceKind::MeshConfig => "MeshConfig",
            SourceKind::VirtualService => "VirtualService",
            SourceKind::DestinationRule => "DestinationRule",
            SourceKind::Gateway => "Gateway",
            SourceKind::ServiceEntry => "ServiceEntry",
            SourceKind::Sidecar => "Sidecar",
            SourceKind::WorkloadEntry => "WorkloadEntry",
            SourceKind::PeerAuthentication => "PeerAuthentication",
            SourceKind::RequestAuthentication => "RequestAuthentication",
            SourceKind::AuthorizationPolicy => "AuthorizationPolicy",
            SourceKind::Secret => "Secret",
        }
    }

    pub fn from_kind(kind: &str) -> Option<SourceKind> {
        Self::ALL.into_iter().find(|k| k.as_str() == kind)
    }

    /// API group and version the operator reads and writes the kind at.
    pub fn group_version(self) -> (&'static str, &'static str) {
        match self {
            SourceKind::Namespace
            | SourceKind::Service
            | SourceKind::ServiceAccount
            | SourceKind::Pod
            | SourceKind::Node
            | SourceKind::Secret => ("", "v1"),
            SourceKind::EndpointSlice => ("discovery.k8s.io", "v1"),
            SourceKind::MeshConfig => (trellis_api::mesh::GROUP, trellis_api::mesh::VERSION),
            SourceKind::VirtualService
            | SourceKind::DestinationRule
            | SourceKind::Gateway
            | SourceKind::ServiceEntry
            | SourceKind::Sidecar
            | SourceKind::WorkloadEntry => (trellis_api::networking::GROUP, "v1"),
            SourceKind::PeerAuthentication
            | SourceKind::RequestAuthentication
            | SourceKind::AuthorizationPolicy => (trellis_api::security::GROUP, "v1"),
        }
    }

    /// `apiVersion` as written in objects.
    pub fn api_version(self) -> String {
        match self.group_version() {
            ("", v) => v.to_string(),
            (g, v) => format!("{g}/{v}"),
        }
    }

    /// The lower-case plural of the REST path.
    pub fn plural(self) -> &'static str {
        match self {
            SourceKind::Namespace => "namespaces",
            SourceKind::Service => "services",
            SourceKind::ServiceAccount => "serviceaccounts",
            SourceKind::Pod => "pods",
            SourceKind::EndpointSlice => "endpointslices",
            SourceKind::Node => "nodes",
            SourceKind::MeshConfig => "meshconfigs",
            SourceKind::VirtualService => "virtualservices",
            SourceKind::DestinationRule => "destinationrules",
            SourceKind::Gateway => "gateways",
            SourceKind::ServiceEntry => "serviceentries",
            SourceKind::Sidecar => "sidecars",
            SourceKind::WorkloadEntry => "workloadentries",
            SourceKind::PeerAuthentication => "peerauthentications",
            SourceKind::RequestAuthentication => "requestauthentications",
            SourceKind::AuthorizationPolicy => "authorizationpolicies",
            SourceKind::Secret => "secrets",
        }
    }

    pub fn is_cluster_scoped(self) -> bool {
        matches!(
            self,
            SourceKind::Namespace | SourceKind::MeshConfig | SourceKind::Node
        )
    }
}

/// A mesh object the API server holds but Trellis cannot read (a field of a
/// newer Istio version, a wrong type): it gets `Accepted=False` naming the field.
#[derive(Debug, Clone, PartialEq)]
pub struct Unreadable {
    pub object: ObjectRef,
    pub generation: Option<i64>,
    pub status: Option<ResourceStatus>,
    /// Field path of the problem, e.g. `spec.http[0].foo`.
    pub path: String,
    pub message: String,
}

/// One object from a source.
#[derive(Debug, Clone, PartialEq)]
pub enum Input {
    /// A kind universal mode reads from files too.
    Resource(Box<Resource>),
    Unreadable(Box<Unreadable>),
    Pod(Box<Pod>),
    EndpointSlice(Box<EndpointSlice>),
    /// A Node: its name and the locality its labels give (the rest of it is
    /// not kept).
    Node(String, Option<String>),
    /// A Secret: the credential it holds, if any (the rest of it is not kept).
    Secret(ObjectRef, Option<Arc<Credential>>),
}

impl Input {
    pub fn key(&self) -> ObjectRef {
        match self {
            Input::Resource(r) => r.object_ref(),
            Input::Unreadable(u) => u.object.clone(),
            Input::Pod(p) => object_ref("Pod", &p.metadata),
            Input::EndpointSlice(s) => object_ref("EndpointSlice", &s.metadata),
            Input::Node(name, _) => ObjectRef {
                kind: "Node".into(),
                namespace: None,
                name: name.clone(),
            },
            Input::Secret(key, _) => key.clone(),
        }
    }
}

/// A Secret as the sources keep it: its name and the credential it holds.
pub fn secret_input(secret: &Secret) -> Input {
    Input::Secret(
        object_ref("Secret", &secret.metadata),
        Credential::from_secret(secret).map(Arc::new),
    )
}

/// A Node as the sources keep it: its name and its locality
/// (`topology.kubernetes.io/region`, `.../zone`, `topology.istio.io/subzone`).
pub fn node_input(node: &Node) -> Input {
    let labels = node.metadata.labels.clone().unwrap_or_default();
    Input::Node(
        node.metadata.name.clone().unwrap_or_default(),
        trellis_model::node_locality(&labels),
    )
}

/// A change from a source, as the model index wants it.
#[derive(Debug, Clone, PartialEq)]
pub enum Change {
    Apply(Input),
    Delete(ObjectRef),
    /// Every object of a kind after a (re)list: anything not in the list is gone.
    Reset(SourceKind, Vec<Input>),
}

pub(crate) fn object_ref(kind: &str, meta: &ObjectMeta) -> ObjectRef {
    ObjectRef {
        kind: kind.to_string(),
        namespace: if trellis_api::is_cluster_scoped_kind(kind) || kind == "Node" {
            None
        } else {
            Some(
                meta.namespace
                    .clone()
                    .unwrap_or_else(|| "default".to_string()),
            )
        },
        name: meta.name.clone().unwrap_or_default(),
    }
}

/// Reads a mesh object (or MeshConfig, Service, ServiceAccount, Namespace) from the
/// JSON the API server sent. An object that does not load becomes [`Input::Unreadable`]
/// with the field path, never an error that stops the watch.
pub fn input_from_json(kind: SourceKind, mut json: Value) -> Input {
    if let Value::Object(map) = &mut json {
        // Watches of the storage version may still carry an older apiVersion in
        // objects created through it; the schema is the same.
        map.insert("apiVersion".into(), Value::String(kind.api_version()));
        map.insert("kind".into(), Value::String(kind.as_str().into()));
        if let Some(Value::Object(meta)) = map.get_mut("metadata") {
            meta.remove("managedFields");
        }
    }
    let generation = json.pointer("/metadata/generation").and_then(Value::as_i64);
    let status = json
        .get("status")
        .and_then(|s| serde_json::from_value::<ResourceStatus>(s.clone()).ok());
    match trellis_api::load::load_value(json.clone()) {
        Ok(resource) => Input::Resource(Box::new(resource)),
        Err((object, path, message)) => {
            let meta: ObjectMeta = json
                .get("metadata")
                .and_then(|m| serde_json::from_value(m.clone()).ok())
                .unwrap_or_default();
            Input::Unreadable(Box::new(Unreadable {
                object: object.unwrap_or_else(|| object_ref(kind.as_str(), &meta)),
                generation,
                status,
                path,
                message,
            }))
        }
    }
}

/// Removes what changes without the object's meaning changing (resourceVersion,
/// managedFields, status), so our own status writes never look like config changes.
pub fn normalize(resource: &mut Resource) -> Option<ResourceStatus> {
    macro_rules! strip {
        ($o:expr) => {{
            strip_meta(&mut $o.metadata);
            $o.status.take()
        }};
    }
    match resource {
        Resource::VirtualService(o) => strip!(o),
        Resource::DestinationRule(o) => strip!(o),
        Resource::Gateway(o) => strip!(o),
        Resource::ServiceEntry(o) => strip!(o),
        Resource::Sidecar(o) => strip!(o),
        Resource::WorkloadEntry(o) => strip!(o),
        Resource::PeerAuthentication(o) => strip!(o),
        Resource::RequestAuthentication(o) => strip!(o),
        Resource::AuthorizationPolicy(o) => strip!(o),
        Resource::MeshConfig(o) => strip!(o),
        Resource::MeshStatus(o) => {
            strip_meta(&mut o.metadata);
            o.status = None;
            None
        }
        Resource::Service(o) => {
            strip_meta(&mut o.metadata);
            o.status = None;
            None
        }
        Resource::ServiceAccount(o) => {
            strip_meta(&mut o.metadata);
            None
        }
        Resource::Namespace(o) => {
            strip_meta(&mut o.metadata);
            None
        }
    }
}

pub(crate) fn strip_meta(meta: &mut ObjectMeta) {
    meta.managed_fields = None;
    meta.resource_version = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn a_mesh_object_loads_and_keeps_generation_and_status_apart() {
        let input = input_from_json(
            SourceKind::VirtualService,
            json!({
                "apiVersion": "networking.istio.io/v1beta1",
                "kind": "VirtualService",
                "metadata": {"name": "r", "namespace": "shop", "generation": 3,
                             "resourceVersion": "17", "managedFields": [{"manager": "kubectl"}]},
                "spec": {"hosts": ["cart"], "http": [{"route": [{"destination": {"host": "cart"}}]}]},
                "status": {"conditions": [{"type": "Accepted", "status": "True"}], "observedGeneration": 3}
            }),
        );
        let Input::Resource(mut r) = input else {
            panic!("expected a resource: {input:?}")
        };
        assert_eq!(r.meta().generation, Some(3));
        assert!(r.meta().managed_fields.is_none());
        let status = normalize(&mut r).expect("status kept");
        assert_eq!(status.observed_generation, Some(3));
        assert_eq!(r.meta().resource_version, None);
        let Resource::VirtualService(vs) = *r else {
            panic!()
        };
        assert!(vs.status.is_none());
    }

    #[test]
    fn an_unknown_field_becomes_unreadable_with_its_path() {
        let input = input_from_json(
            SourceKind::VirtualService,
            json!({
                "apiVersion": "networking.istio.io/v1",
                "kind": "VirtualService",
                "metadata": {"name": "r", "namespace": "shop", "generation": 2},
                "spec": {"hosts": ["cart"], "http": [{"timeoutMs": 500}]}
            }),
        );
        let Input::Unreadable(u) = input else {
            panic!("expected unreadable: {input:?}")
        };
        assert_eq!(u.object.to_string(), "VirtualService/shop/r");
        assert_eq!(u.generation, Some(2));
        assert!(u.path.starts_with("spec.http[0]"), "{}", u.path);
        assert!(u.message.contains("timeoutMs"), "{}", u.message);
    }

    #[test]
    fn kinds_round_trip_and_config_kinds_are_namespaced() {
        for k in SourceKind::ALL {
            assert_eq!(SourceKind::from_kind(k.as_str()), Some(k));
        }
        for k in SourceKind::CONFIG {
            assert!(!k.is_cluster_scoped());
            assert!(k.api_version().ends_with("/v1"));
        }
    }
}
