//! Object metadata: every object needs a valid name (and namespace).

use super::fields::{dns_label, dns_subdomain, labels};
use super::{Errors, FieldError};
use crate::Resource;

/// `metadata.name` (DNS-1123 subdomain), `metadata.namespace` (label) and labels.
pub fn metadata(resource: &Resource) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let meta = resource.meta();
    match meta.name.as_deref() {
        None | Some("") => errors.add("metadata.name", "required"),
        Some(name) => errors.check("metadata.name", dns_subdomain(name)),
    }
    if let Some(ns) = meta.namespace.as_deref() {
        if resource.is_cluster_scoped() {
            errors.add(
                "metadata.namespace",
                format!(
                    "{} is cluster-scoped and takes no namespace",
                    resource.kind()
                ),
            );
        } else {
            errors.check("metadata.namespace", dns_label(ns));
        }
    }
    if let Some(l) = &meta.labels {
        labels(&mut errors, "metadata.labels", l);
    }
    errors.0
}
