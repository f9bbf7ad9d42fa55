//! What a MeshConfig in the directory sets outside the model: the workload
//! certificates' lifetime and renewal ratio, and the Envoys' log level. Its
//! fields win over `trellis up`'s flags, as they win over the operator's.
use std::time::Duration;

use trellis_api::Resource;
use trellis_ca::RenewalPolicy;

use crate::status::ConfigError;

/// The certificate and log settings in force.
#[derive(Debug, Clone, PartialEq)]
pub struct ProxyDefaults {
    pub cert_ttl: Duration,
    pub renewal: RenewalPolicy,
    pub log_level: String,
}

/// `flags` with what the MeshConfigs of `objects` set (a later one over an
/// earlier one). A lifetime too short to renew after issuance is refused,
/// naming the field, and the flags' lifetime and ratio stay.
pub fn proxy_defaults(
    objects: &[Resource],
    flags: &ProxyDefaults,
) -> (ProxyDefaults, Vec<ConfigError>) {
    let mut out = flags.clone();
    let mut errors = Vec::new();
    for r in objects {
        let Resource::MeshConfig(mc) = r else {
            continue;
        };
        let spec = &mc.spec;
        let mut ttl = out.cert_ttl;
        let mut renewal = out.renewal;
        if let Some(d) = &spec.workload_cert_ttl {
            match d.parse() {
                Ok(d) => ttl = d,
                Err(e) => errors.push(error(r, "spec.workloadCertTtl", e.to_string())),
            }
        }
        if let Some(ratio) = spec.workload_cert_renewal_ratio {
            renewal.ratio = ratio;
        }
        if renewal.renews_after_issuance(ttl) {
            (out.cert_ttl, out.renewal) = (ttl, renewal);
        } else {
            errors.push(error(
                r,
                "spec.workloadCertTtl",
                format!(
                    "{ttl:?} with renewal ratio {} is too short: certificates would be due \
                     for renewal as soon as issued",
                    renewal.ratio
                ),
            ));
        }
        if let Some(level) = spec.proxy.as_ref().and_then(|p| p.log_level.clone()) {
            out.log_level = level;
        }
    }
    (out, errors)
}

fn error(r: &Resource, field: &str, message: String) -> ConfigError {
    let o = r.object_ref();
    ConfigError {
        file: String::new(),
        kind: Some("MeshConfig".into()),
        namespace: o.namespace,
        name: Some(o.name),
        field: Some(field.into()),
        message,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mesh_config(spec: serde_json::Value) -> Resource {
        trellis_api::load::load_value(serde_json::json!({
            "apiVersion": "mesh.trellis.dev/v1alpha1", "kind": "MeshConfig",
            "metadata": {"name": "default"}, "spec": spec
        }))
        .unwrap()
    }

    fn flags() -> ProxyDefaults {
        ProxyDefaults {
            cert_ttl: Duration::from_secs(86400),
            renewal: RenewalPolicy::default(),
            log_level: "warn".into(),
        }
    }

    #[test]
    fn mesh_config_fields_win_over_the_flags() {
        let objects = [mesh_config(serde_json::json!({
            "workloadCertTtl": "2h", "workloadCertRenewalRatio": 0.8, "proxy": {"logLevel": "debug"}
        }))];
        let (d, errors) = proxy_defaults(&objects, &flags());
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(d.cert_ttl, Duration::from_secs(7200));
        assert_eq!(d.renewal.ratio, 0.8);
        assert_eq!(d.log_level, "debug");
        assert_eq!(proxy_defaults(&[], &flags()).0, flags());
    }

    #[test]
    fn a_lifetime_too_short_is_refused_naming_the_field() {
        let objects = [mesh_config(serde_json::json!({
            "workloadCertTtl": "1s", "workloadCertRenewalRatio": 0.1
        }))];
        let (d, errors) = proxy_defaults(&objects, &flags());
        assert_eq!(d, flags());
        assert_eq!(errors.len(), 1);
        assert_eq!(errors[0].field.as_deref(), Some("spec.workloadCertTtl"));
        assert!(
            errors[0].message.contains("too short"),
            "{}",
            errors[0].message
        );
    }
}
