//! MeshConfig and MeshStatus rules.

use super::fields::{dns_subdomain, duration};
use super::{Errors, FieldError};
use crate::duration::parse_duration;
use crate::mesh::{
    EnvoyExternalAuthorizationRequestBody, ExtensionProviderConfig, MESH_CONFIG_NAME, MeshConfig,
    MeshConfigSpec, MeshStatus,
};

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
    if let Some(l) = &spec.locality_lb_setting {
        super::locality::locality_lb_setting(&mut errors, "spec.localityLbSetting", l);
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
    access_log(&mut errors, spec);
    let mut names = std::collections::BTreeSet::new();
    for (i, provider) in spec.extension_providers.iter().enumerate() {
        let path = format!("spec.extensionProviders[{i}]");
        if provider.name.is_empty() {
            errors.add(format!("{path}.name"), "required");
        } else if !names.insert(provider.name.as_str()) {
            errors.add(
                format!("{path}.name"),
                format!("duplicate provider name {:?}", provider.name),
            );
        }
        extension_provider(&mut errors, &path, provider);
    }
    errors.0
}

/// The access log: an absolute file path, and a format its encoding can
/// read (a JSON format is an object). Encoding or format without a file would
/// do nothing, so they are refused.
fn access_log(errors: &mut Errors, spec: &MeshConfigSpec) {
    use crate::mesh::AccessLogEncoding;
    match &spec.access_log_file {
        Some(file) if !file.starts_with('/') || file.contains('\0') => errors.add(
            "spec.accessLogFile",
            format!("{file:?} is not an absolute path (for the proxy's log: /dev/stdout)"),
        ),
        Some(_) => {}
        None => {
            for (set, field) in [
                (spec.access_log_encoding.is_some(), "accessLogEncoding"),
                (spec.access_log_format.is_some(), "accessLogFormat"),
            ] {
                if set {
                    errors.add(
                        format!("spec.{field}"),
                        "has no effect without accessLogFile",
                    );
                }
            }
        }
    }
    let Some(format) = &spec.access_log_format else {
        return;
    };
    match spec.access_log_encoding.unwrap_or_default() {
        AccessLogEncoding::Text if format.trim().is_empty() => {
            errors.add("spec.accessLogFormat", "must not be empty")
        }
        AccessLogEncoding::Text => {}
        AccessLogEncoding::Json => match serde_json::from_str::<serde_json::Value>(format) {
            Ok(serde_json::Value::Object(fields)) if !fields.is_empty() => {}
            _ => errors.add(
                "spec.accessLogFormat",
                "with accessLogEncoding JSON, a JSON object of field name to format \
                     operator, e.g. {\"path\": \"%REQ(:PATH)%\"}",
            ),
        },
    }
}

/// Envoy's `envoy.type.v3.StatusCode` values: anything else is NACKed.
pub const ENVOY_STATUS_CODES: &[u16] = &[
    100, 200, 201, 202, 203, 204, 205, 206, 207, 208, 226, 300, 301, 302, 303, 304, 305, 307, 308,
    400, 401, 402, 403, 404, 405, 406, 407, 408, 409, 410, 411, 412, 413, 414, 415, 416, 417, 421,
    422, 423, 424, 426, 428, 429, 431, 500, 501, 502, 503, 504, 505, 506, 507, 508, 510, 511,
];

fn extension_provider(errors: &mut Errors, path: &str, provider: &ExtensionProviderConfig) {
    let (service, port, timeout, status, body) = match (
        &provider.envoy_ext_authz_http,
        &provider.envoy_ext_authz_grpc,
    ) {
        (Some(_), Some(_)) => {
            errors.add(
                path,
                "set only one of envoyExtAuthzHttp and envoyExtAuthzGrpc",
            );
            return;
        }
        (None, None) => {
            errors.add(
                    path,
                    "one provider kind is required: envoyExtAuthzHttp or envoyExtAuthzGrpc (the only kinds supported)",
                );
            return;
        }
        (Some(h), None) => {
            let kind = format!("{path}.envoyExtAuthzHttp");
            if let Some(prefix) = &h.path_prefix
                && !prefix.starts_with('/')
            {
                errors.add(
                    format!("{kind}.pathPrefix"),
                    format!("{prefix:?} must start with '/'"),
                );
            }
            if let Some(prefix) = &h.path_prefix
                && prefix.contains(|c: char| c.is_whitespace() || c == '?' || c == '#')
            {
                errors.add(
                    format!("{kind}.pathPrefix"),
                    format!("{prefix:?} must be a URL path (no spaces, '?' or '#')"),
                );
            }
            for (field, values) in [
                (
                    "includeRequestHeadersInCheck",
                    &h.include_request_headers_in_check,
                ),
                ("headersToUpstreamOnAllow", &h.headers_to_upstream_on_allow),
                (
                    "headersToDownstreamOnDeny",
                    &h.headers_to_downstream_on_deny,
                ),
                (
                    "headersToDownstreamOnAllow",
                    &h.headers_to_downstream_on_allow,
                ),
            ] {
                for (j, v) in values.iter().enumerate() {
                    errors.check(format!("{kind}.{field}[{j}]"), header_pattern(v));
                }
            }
            for (name, value) in &h.include_additional_headers_in_check {
                let at = format!("{kind}.includeAdditionalHeadersInCheck[{name}]");
                errors.check(at.clone(), super::fields::header_name(name));
                if value.contains(['\r', '\n', '\0']) {
                    errors.add(at, "the value must not contain CR, LF or NUL");
                }
            }
            (
                (kind.clone(), h.service.as_str()),
                h.port,
                &h.timeout,
                &h.status_on_error,
                &h.include_request_body_in_check,
            )
        }
        (None, Some(g)) => (
            (format!("{path}.envoyExtAuthzGrpc"), g.service.as_str()),
            g.port,
            &g.timeout,
            &g.status_on_error,
            &g.include_request_body_in_check,
        ),
    };
    let (kind, service) = service;
    errors.check(format!("{kind}.service"), provider_service(service));
    errors.check(format!("{kind}.port"), super::fields::port(port));
    if let Some(t) = timeout {
        errors.check(format!("{kind}.timeout"), duration(t));
    }
    if let Some(status) = status {
        errors.check(format!("{kind}.statusOnError"), status_code(status));
    }
    if let Some(EnvoyExternalAuthorizationRequestBody {
        max_request_bytes: 0,
        ..
    }) = body
    {
        errors.add(
            format!("{kind}.includeRequestBodyInCheck.maxRequestBytes"),
            "must be more than 0",
        );
    }
}

/// `host` or `namespace/host`, without wildcard.
fn provider_service(value: &str) -> Result<(), String> {
    if value.is_empty() {
        return Err("required".into());
    }
    let host = match value.split_once('/') {
        Some((ns, host)) => {
            super::fields::dns_label(ns).map_err(|e| format!("namespace of {value:?}: {e}"))?;
            host
        }
        None => value,
    };
    super::fields::exact_host(host)
}

/// An HTTP status code Envoy's `StatusCode` enum defines.
fn status_code(value: &str) -> Result<(), String> {
    match value.parse::<u16>() {
        Ok(code) if ENVOY_STATUS_CODES.contains(&code) => Ok(()),
        Ok(_) => Err(format!(
            "{value:?} is not an HTTP status code Envoy supports"
        )),
        Err(_) => Err(format!("{value:?} is not an HTTP status code")),
    }
}

/// A header name, or a prefix (`x-foo-*`) or suffix (`*-foo`) pattern; `*` alone
/// is refused as Istio does (it would match every header).
fn header_pattern(value: &str) -> Result<(), String> {
    if value == "*" {
        return Err(
            "a single '*' is not supported: use a prefix (\"x-*\") or suffix (\"*-id\")".into(),
        );
    }
    let name = value
        .strip_prefix('*')
        .or_else(|| value.strip_suffix('*'))
        .unwrap_or(value);
    if name.contains('*') {
        return Err(format!(
            "{value:?}: '*' is only allowed as a prefix or a suffix"
        ));
    }
    super::fields::header_name(name)
        .map_err(|_| format!("{value:?} is not a header name or pattern"))
}

/// MeshStatus has no spec to check beyond its metadata.
pub fn mesh_status(_: &MeshStatus) -> Vec<FieldError> {
    Vec::new()
}
