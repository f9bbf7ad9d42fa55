//! Semantic validation: one function per kind, each returning every
//! problem found as a [`FieldError`] with the path of the field.

mod destination_rule;
mod fields;
mod gateway;
mod locality;
mod mesh;
mod metadata;
mod security;
mod service_entry;
mod virtual_service;
mod workloads;

pub use destination_rule::destination_rule;
pub use gateway::{CIPHER_SUITES, gateway};
pub use mesh::{ENVOY_STATUS_CODES, mesh_config, mesh_status};
pub use metadata::metadata;
pub use security::{authorization_policy, peer_authentication, request_authentication};
pub use service_entry::service_entry;
pub use virtual_service::virtual_service;
pub use workloads::{sidecar, workload_entry};

use crate::Resource;
use std::fmt;

/// One problem with one field, e.g. `spec.http[0].route[1].weight: must be between 0 and 100`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct FieldError {
    /// Field path from the object root, e.g. `spec.http[0].route[1].weight`.
    pub path: String,
    pub message: String,
}

impl fmt::Display for FieldError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.path, self.message)
    }
}

/// Validates any resource: its metadata, then its kind's rules.
pub fn validate(resource: &Resource) -> Vec<FieldError> {
    let mut errors = metadata(resource);
    errors.extend(match resource {
        Resource::VirtualService(o) => virtual_service(o),
        Resource::DestinationRule(o) => destination_rule(o),
        Resource::Gateway(o) => gateway(o),
        Resource::ServiceEntry(o) => service_entry(o),
        Resource::Sidecar(o) => sidecar(o),
        Resource::WorkloadEntry(o) => workload_entry(o),
        Resource::PeerAuthentication(o) => peer_authentication(o),
        Resource::RequestAuthentication(o) => request_authentication(o),
        Resource::AuthorizationPolicy(o) => authorization_policy(o),
        Resource::MeshConfig(o) => mesh_config(o),
        Resource::MeshStatus(o) => mesh_status(o),
        Resource::Service(_) | Resource::ServiceAccount(_) | Resource::Namespace(_) => Vec::new(),
    });
    errors
}

/// Collects errors while walking an object.
#[derive(Default)]
pub(crate) struct Errors(pub(crate) Vec<FieldError>);

impl Errors {
    pub(crate) fn add(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(FieldError {
            path: path.into(),
            message: message.into(),
        });
    }

    /// Records `result`'s error, if any, at `path`.
    pub(crate) fn check(&mut self, path: impl Into<String>, result: Result<(), String>) {
        if let Err(message) = result {
            self.add(path, message);
        }
    }
}

/// Loads and validates one YAML source; returns the objects that loaded and
/// every problem as a `kind/namespace/name: path: message` line (load
/// errors first, then validation errors in document order).
pub fn check_source(source_name: &str, text: &str) -> (Vec<Resource>, Vec<String>) {
    let (resources, load_errors) = crate::load_all(source_name, text);
    let mut lines: Vec<String> = load_errors.iter().map(ToString::to_string).collect();
    for resource in &resources {
        let object = resource.object_ref();
        lines.extend(validate(resource).iter().map(|e| format!("{object}: {e}")));
    }
    (resources, lines)
}
