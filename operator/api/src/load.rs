//! Reads mesh objects from multi-document YAML, rejecting unknown kinds,
//! versions and fields with the path of the offending field.

use crate::error::{Error, LoadError, LoadErrors, ObjectRef};
use crate::resource::{Resource, is_cluster_scoped_kind};
use crate::status::ResourceStatus;
use crate::{mesh, networking, security};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::Value;

/// Parses every document of `text`; fails with every error found.
/// `source_name` (usually the file path) labels the messages.
pub fn load(source_name: &str, text: &str) -> Result<Vec<Resource>, Error> {
    let (resources, errors) = load_all(source_name, text);
    if errors.is_empty() {
        Ok(resources)
    } else {
        Err(Error::Load(LoadErrors(errors)))
    }
}

/// Parses every document of `text`, returning the objects that loaded and
/// the errors of those that did not.
pub fn load_all(source_name: &str, text: &str) -> (Vec<Resource>, Vec<LoadError>) {
    let mut resources = Vec::new();
    let mut errors = Vec::new();
    for (index, document) in serde_yaml::Deserializer::from_str(text).enumerate() {
        let document_number = index + 1;
        let error = |object: Option<ObjectRef>, path: &str, message: String| LoadError {
            source_name: source_name.to_owned(),
            document: document_number,
            object,
            path: path.to_owned(),
            message,
        };
        let yaml = match serde_yaml::Value::deserialize(document) {
            Ok(yaml) => yaml,
            Err(e) => {
                errors.push(error(None, "", format!("invalid YAML: {e}")));
                // The YAML stream cannot be resynchronised after a syntax error.
                break;
            }
        };
        if yaml.is_null() {
            continue;
        }
        let json = match serde_json::to_value(&yaml) {
            Ok(json) => json,
            Err(e) => {
                errors.push(error(None, "", format!("unsupported YAML: {e}")));
                continue;
            }
        };
        match load_value(json) {
            Ok(resource) => resources.push(resource),
            Err((object, path, message)) => errors.push(error(object, &path, message)),
        }
    }
    (resources, errors)
}

type DocumentError = (Option<ObjectRef>, String, String);

/// Turns one JSON document into a [`Resource`].
pub fn load_value(json: Value) -> Result<Resource, (Option<ObjectRef>, String, String)> {
    let Value::Object(map) = &json else {
        return Err((
            None,
            String::new(),
            "a document must be a mapping (an object)".into(),
        ));
    };
    let api_version = match map.get("apiVersion") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err((None, "apiVersion".into(), "must be a string".into())),
        None => return Err((None, "apiVersion".into(), "missing field".into())),
    };
    let kind = match map.get("kind") {
        Some(Value::String(s)) => s.clone(),
        Some(_) => return Err((None, "kind".into(), "must be a string".into())),
        None => return Err((None, "kind".into(), "missing field".into())),
    };
    let object = object_ref_of(&kind, map.get("metadata"));
    let fail = |path: &str, message: String| -> DocumentError {
        (Some(object.clone()), path.to_owned(), message)
    };
    let (group, version) = match api_version.split_once('/') {
        Some((g, v)) => (g, v),
        None => ("", api_version.as_str()),
    };
    let versions: &[&str] = match group {
        networking::GROUP => &networking::VERSIONS,
        security::GROUP => &security::VERSIONS,
        mesh::GROUP => &[mesh::VERSION],
        "" => &["v1"],
        _ => {
            return Err(fail(
                "apiVersion",
                format!("unsupported API group {group:?} (apiVersion {api_version:?})"),
            ));
        }
    };
    if !versions.contains(&version) {
        return Err(fail(
            "apiVersion",
            format!(
                "unsupported version {version:?} of {}; supported: {}",
                if group.is_empty() {
                    "the core group"
                } else {
                    group
                },
                versions.join(", ")
            ),
        ));
    }
    macro_rules! mesh_kind {
        ($variant:ident, $ty:ty, $status:ty) => {{
            let envelope: Envelope<_, $status> = deserialize(json).map_err(|(p, m)| fail(&p, m))?;
            Resource::$variant(<$ty>::from_envelope(envelope))
        }};
    }
    let resource = match (group, kind.as_str()) {
        (networking::GROUP, "VirtualService") => {
            mesh_kind!(VirtualService, networking::VirtualService, ResourceStatus)
        }
        (networking::GROUP, "DestinationRule") => {
            mesh_kind!(DestinationRule, networking::DestinationRule, ResourceStatus)
        }
        (networking::GROUP, "Gateway") => mesh_kind!(Gateway, networking::Gateway, ResourceStatus),
        (networking::GROUP, "ServiceEntry") => {
            mesh_kind!(ServiceEntry, networking::ServiceEntry, ResourceStatus)
        }
        (networking::GROUP, "Sidecar") => mesh_kind!(Sidecar, networking::Sidecar, ResourceStatus),
        (networking::GROUP, "WorkloadEntry") => {
            mesh_kind!(WorkloadEntry, networking::WorkloadEntry, ResourceStatus)
        }
        (security::GROUP, "PeerAuthentication") => {
            mesh_kind!(
                PeerAuthentication,
                security::PeerAuthentication,
                ResourceStatus
            )
        }
        (security::GROUP, "RequestAuthentication") => {
            mesh_kind!(
                RequestAuthentication,
                security::RequestAuthentication,
                ResourceStatus
            )
        }
        (security::GROUP, "AuthorizationPolicy") => {
            mesh_kind!(
                AuthorizationPolicy,
                security::AuthorizationPolicy,
                ResourceStatus
            )
        }
        (mesh::GROUP, "MeshConfig") => mesh_kind!(MeshConfig, mesh::MeshConfig, ResourceStatus),
        (mesh::GROUP, "MeshStatus") => {
            mesh_kind!(MeshStatus, mesh::MeshStatus, mesh::MeshStatusStatus)
        }
        ("", "Service") => Resource::Service(deserialize(json).map_err(|(p, m)| fail(&p, m))?),
        ("", "ServiceAccount") => {
            Resource::ServiceAccount(deserialize(json).map_err(|(p, m)| fail(&p, m))?)
        }
        ("", "Namespace") => Resource::Namespace(deserialize(json).map_err(|(p, m)| fail(&p, m))?),
        _ => {
            return Err(fail(
                "kind",
                format!("unsupported kind {kind:?} in apiVersion {api_version:?}"),
            ));
        }
    };
    Ok(resource)
}

/// The object reference of a document, as far as its metadata can be read.
fn object_ref_of(kind: &str, metadata: Option<&Value>) -> ObjectRef {
    let field = |name: &str| {
        metadata
            .and_then(|m| m.get(name))
            .and_then(Value::as_str)
            .map(str::to_owned)
    };
    ObjectRef {
        kind: kind.to_owned(),
        namespace: if is_cluster_scoped_kind(kind) {
            None
        } else {
            Some(field("namespace").unwrap_or_else(|| "default".to_owned()))
        },
        name: field("name").unwrap_or_default(),
    }
}

/// Deserializes with the path of the failing field.
fn deserialize<T: DeserializeOwned>(json: Value) -> Result<T, (String, String)> {
    serde_path_to_error::deserialize(json).map_err(|e| {
        let path = e.path().to_string();
        let path = if path == "." { String::new() } else { path };
        (path, e.into_inner().to_string())
    })
}

/// The top level of a mesh object; unknown top-level fields are errors.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
struct Envelope<S, St> {
    #[allow(dead_code)]
    api_version: String,
    #[allow(dead_code)]
    kind: String,
    #[serde(default)]
    metadata: ObjectMeta,
    #[serde(default)]
    spec: S,
    #[serde(default = "Option::default")]
    status: Option<St>,
}

/// Builds a kind's object from its parsed envelope.
trait FromEnvelope: Sized {
    type Spec;
    type Status;
    fn from_envelope(envelope: Envelope<Self::Spec, Self::Status>) -> Self;
}

macro_rules! from_envelope {
    ($($ty:ty => $spec:ty, $status:ty;)*) => {$(
        impl FromEnvelope for $ty {
            type Spec = $spec;
            type Status = $status;
            fn from_envelope(e: Envelope<$spec, $status>) -> Self {
                let mut object = <$ty>::new("", e.spec);
                object.metadata = e.metadata;
                object.status = e.status;
                object
            }
        }
    )*};
}

from_envelope! {
    networking::VirtualService => networking::VirtualServiceSpec, ResourceStatus;
    networking::DestinationRule => networking::DestinationRuleSpec, ResourceStatus;
    networking::Gateway => networking::GatewaySpec, ResourceStatus;
    networking::ServiceEntry => networking::ServiceEntrySpec, ResourceStatus;
    networking::Sidecar => networking::SidecarSpec, ResourceStatus;
    networking::WorkloadEntry => networking::WorkloadEntrySpec, ResourceStatus;
    security::PeerAuthentication => security::PeerAuthenticationSpec, ResourceStatus;
    security::RequestAuthentication => security::RequestAuthenticationSpec, ResourceStatus;
    security::AuthorizationPolicy => security::AuthorizationPolicySpec, ResourceStatus;
    mesh::MeshConfig => mesh::MeshConfigSpec, ResourceStatus;
    mesh::MeshStatus => mesh::MeshStatusSpec, mesh::MeshStatusStatus;
}
