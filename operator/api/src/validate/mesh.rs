//! MeshConfig and MeshStatus rules.

use super::fields::{dns_subdomain, duration};
use super::{Errors, FieldError};
use crate::duration::parse_duration;
use crate::mesh::{MESH_CONFIG_NAME, MeshConfig, MeshStatus};

/// Validates the MeshConfig.
pub fn mesh_config(mc: &MeshConfig) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &mc.spec;
    if let Some(name) = mc.metadata.name.as_deref()
        && name != MESH_CONFIG_NAME
    {
        errors.add(
            "metadata.name",
            format!("the MeshConfig must be named {MESH_CONFIG_NAME:?} (got {name:?})"),
        );
    }
    if let Some(td) = &spec.trust_domain {
        errors.check("spec.trustDomain", dns_subdomain(td));
    }
    for (field, d) in [
        ("workloadCertTtl", &spec.workload_cert_ttl),
        ("rootCertTtl", &spec.root_cert_ttl),
    ] {
        if let Some(d) = d {
            errors.check(format!("spec.{field}"), duration(d));
        }
    }
    if let (Some(w), Some(r)) = (&spec.workload_cert_ttl, &spec.root_cert_ttl)
        && let (Ok(w), Ok(r)) = (parse_duration(&w.0), parse_duration(&r.0))
        && w > r
    {
        errors.add("spec.workloadCertTtl", "must not exceed rootCertTtl");
    }
    if let Some(ratio) = spec.workload_cert_renewal_ratio
        && !(ratio > 0.0 && ratio < 1.0)
    {
        errors.add(
            "spec.workloadCertRenewalRatio",
            format!("{ratio} must be between 0 and 1 (exclusive)"),
        );
    }
    if let Some(proxy) = &spec.proxy {
        if let Some(image) = &proxy.image
            && (image.is_empty() || image.contains(char::is_whitespace))
        {
            errors.add(
                "spec.proxy.image",
                format!("{image:?} is not an image reference"),
            );
        }
        if let Some(level) = &proxy.log_level
            && !matches!(
                level.as_str(),
                "trace" | "debug" | "info" | "warning" | "error" | "critical" | "off"
            )
        {
            errors.add(
                "spec.proxy.logLevel",
                format!("unknown log level {level:?}"),
            );
        }
    }
    if let Some(injection) = &spec.injection {
        if let Some(label) = &injection.namespace_label {
            errors.check(
                "spec.injection.namespaceLabel",
                super::fields::label_key(label),
            );
            // The webhook's namespaceSelector and the operator's mesh namespaces are
            // Istio's label; accepting another one would be a setting that does nothing.
            if label != "istio-injection" {
                errors.add(
                    "spec.injection.namespaceLabel",
                    format!("{label:?} is not supported: mesh namespaces are selected by istio-injection (or istio.io/rev)"),
                );
            }
        }
        for (i, ns) in injection.excluded_namespaces.iter().enumerate() {
            errors.check(
                format!("spec.injection.excludedNamespaces[{i}]"),
                super::fields::dns_label(ns),
            );
        }
    }
    errors.0
}

/// MeshStatus has no spec to check beyond its metadata.
pub fn mesh_status(_: &MeshStatus) -> Vec<FieldError> {
    Vec::new()
}
