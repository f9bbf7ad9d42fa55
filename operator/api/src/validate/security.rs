//! PeerAuthentication, RequestAuthentication and AuthorizationPolicy rules.

use super::fields::{cidr, dns_label, header_name, labels, port, principal, wildcard_placement};
use super::{Errors, FieldError};
use crate::security::{
    AuthorizationAction, AuthorizationPolicy, PeerAuthentication, RequestAuthentication,
    WorkloadSelector,
};

fn selector(errors: &mut Errors, selector: &Option<WorkloadSelector>) {
    if let Some(s) = selector {
        labels(errors, "spec.selector.matchLabels", &s.match_labels);
    }
}

/// Validates a PeerAuthentication.
pub fn peer_authentication(pa: &PeerAuthentication) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &pa.spec;
    selector(&mut errors, &spec.selector);
    let has_selector = spec
        .selector
        .as_ref()
        .is_some_and(|s| !s.match_labels.is_empty());
    if !spec.port_level_mtls.is_empty() && !has_selector {
        errors.add(
            "spec.portLevelMtls",
            "portLevelMtls requires a workload selector (spec.selector.matchLabels)",
        );
    }
    for (number, mtls) in &spec.port_level_mtls {
        let path = format!("spec.portLevelMtls[{number}]");
        errors.check(path.clone(), port(*number));
        if mtls.mode.is_none() {
            errors.add(format!("{path}.mode"), "required");
        }
    }
    errors.0
}

/// Validates a RequestAuthentication.
pub fn request_authentication(ra: &RequestAuthentication) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &ra.spec;
    selector(&mut errors, &spec.selector);
    for (i, rule) in spec.jwt_rules.iter().enumerate() {
        let path = format!("spec.jwtRules[{i}]");
        if rule.issuer.is_empty() {
            errors.add(format!("{path}.issuer"), "required");
        }
        if rule.jwks_uri.is_some() && rule.jwks_uri_snake_case.is_some() {
            errors.add(
                format!("{path}.jwks_uri"),
                "jwksUri and jwks_uri are two spellings of one field: set only one",
            );
        }
        if rule.jwks.is_some() && rule.jwks_url().is_some() {
            let field = if rule.jwks_uri.is_some() {
                "jwksUri"
            } else {
                "jwks_uri"
            };
            errors.add(path.clone(), format!("set only one of jwks and {field}"));
        }
        for (field, uri) in [
            ("jwksUri", &rule.jwks_uri),
            ("jwks_uri", &rule.jwks_uri_snake_case),
        ] {
            let Some(uri) = uri else { continue };
            let ok = ["http://", "https://"]
                .iter()
                .any(|s| uri.strip_prefix(s).is_some_and(|rest| !rest.is_empty()));
            if !ok {
                errors.add(
                    format!("{path}.{field}"),
                    format!("{uri:?} must be an http:// or https:// URL"),
                );
            }
        }
        if let Some(jwks) = &rule.jwks
            && serde_json::from_str::<serde_json::Value>(jwks)
                .ok()
                .and_then(|v| v.get("keys").map(serde_json::Value::is_array))
                != Some(true)
        {
            errors.add(
                format!("{path}.jwks"),
                "must be a JSON Web Key Set (a JSON object with a \"keys\" array)",
            );
        }
        for (j, a) in rule.audiences.iter().enumerate() {
            if a.is_empty() {
                errors.add(format!("{path}.audiences[{j}]"), "must not be empty");
            }
        }
        for (j, h) in rule.from_headers.iter().enumerate() {
            errors.check(
                format!("{path}.fromHeaders[{j}].name"),
                header_name(&h.name),
            );
        }
        for (j, p) in rule.from_params.iter().enumerate() {
            if p.is_empty() {
                errors.add(format!("{path}.fromParams[{j}]"), "must not be empty");
            }
        }
        if let Some(h) = &rule.output_payload_to_header {
            errors.check(format!("{path}.outputPayloadToHeader"), header_name(h));
        }
        let mut headers = std::collections::BTreeSet::new();
        for (j, c) in rule.output_claim_to_headers.iter().enumerate() {
            let cpath = format!("{path}.outputClaimToHeaders[{j}]");
            errors.check(format!("{cpath}.header"), header_name(&c.header));
            if !headers.insert(c.header.to_ascii_lowercase()) {
                errors.add(
                    format!("{cpath}.header"),
                    format!("header {:?} is already set by another claim", c.header),
                );
            }
            if c.claim.is_empty() {
                errors.add(format!("{cpath}.claim"), "must not be empty");
            }
        }
    }
    errors.0
}

/// Attribute keys a `when` condition may use; `[..]` ones take a name.
const CONDITION_KEYS: &[&str] = &[
    "source.ip",
    "remote.ip",
    "source.namespace",
    "source.principal",
    "request.auth.principal",
    "request.auth.audiences",
    "request.auth.presenter",
    "destination.ip",
    "destination.port",
    "connection.sni",
];
const CONDITION_KEY_PREFIXES: &[&str] = &["request.headers[", "request.auth.claims["];

/// Validates an AuthorizationPolicy.
pub fn authorization_policy(ap: &AuthorizationPolicy) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &ap.spec;
    selector(&mut errors, &spec.selector);
    let action = spec.action.unwrap_or(AuthorizationAction::Allow);
    match (&spec.provider, action) {
        (None, AuthorizationAction::Custom) => {
            errors.add("spec.provider", "CUSTOM action requires a provider")
        }
        (Some(p), AuthorizationAction::Custom) if p.name.is_empty() => {
            errors.add("spec.provider.name", "required")
        }
        (Some(_), a) if a != AuthorizationAction::Custom => errors.add(
            "spec.provider",
            "a provider is only allowed with the CUSTOM action",
        ),
        _ => {}
    }
    for (i, rule) in spec.rules.iter().enumerate() {
        let path = format!("spec.rules[{i}]");
        for (j, from) in rule.from.iter().enumerate() {
            let fpath = format!("{path}.from[{j}].source");
            let Some(s) = &from.source else {
                errors.add(fpath, "required");
                continue;
            };
            let lists: [ListCheck<'_>; 10] = [
                ("principals", &s.principals, principal),
                ("notPrincipals", &s.not_principals, principal),
                (
                    "requestPrincipals",
                    &s.request_principals,
                    wildcard_placement,
                ),
                (
                    "notRequestPrincipals",
                    &s.not_request_principals,
                    wildcard_placement,
                ),
                ("namespaces", &s.namespaces, namespace_pattern),
                ("notNamespaces", &s.not_namespaces, namespace_pattern),
                ("ipBlocks", &s.ip_blocks, cidr),
                ("notIpBlocks", &s.not_ip_blocks, cidr),
                ("remoteIpBlocks", &s.remote_ip_blocks, cidr),
                ("notRemoteIpBlocks", &s.not_remote_ip_blocks, cidr),
            ];
            check_lists(&mut errors, &fpath, &lists);
        }
        for (j, to) in rule.to.iter().enumerate() {
            let tpath = format!("{path}.to[{j}].operation");
            let Some(o) = &to.operation else {
                errors.add(tpath, "required");
                continue;
            };
            let lists: [ListCheck<'_>; 8] = [
                ("hosts", &o.hosts, wildcard_placement),
                ("notHosts", &o.not_hosts, wildcard_placement),
                ("ports", &o.ports, port_string),
                ("notPorts", &o.not_ports, port_string),
                ("methods", &o.methods, wildcard_placement),
                ("notMethods", &o.not_methods, wildcard_placement),
                ("paths", &o.paths, path_pattern),
                ("notPaths", &o.not_paths, path_pattern),
            ];
            check_lists(&mut errors, &tpath, &lists);
        }
        for (j, cond) in rule.when.iter().enumerate() {
            let cpath = format!("{path}.when[{j}]");
            let known = CONDITION_KEYS.contains(&cond.key.as_str())
                || CONDITION_KEY_PREFIXES.iter().any(|p| {
                    cond.key
                        .strip_prefix(p)
                        .and_then(|rest| rest.strip_suffix(']'))
                        .is_some_and(|name| !name.is_empty())
                })
                || cond.key.starts_with("experimental.envoy.filters.");
            if !known {
                errors.add(
                    format!("{cpath}.key"),
                    format!("unknown attribute {:?}", cond.key),
                );
            }
            if cond.values.is_empty() && cond.not_values.is_empty() {
                errors.add(cpath.clone(), "values or notValues is required");
            }
            if matches!(
                cond.key.as_str(),
                "source.ip" | "remote.ip" | "destination.ip"
            ) {
                for (field, values) in [("values", &cond.values), ("notValues", &cond.not_values)] {
                    for (k, v) in values.iter().enumerate() {
                        errors.check(format!("{cpath}.{field}[{k}]"), cidr(v));
                    }
                }
            }
            if cond.key == "destination.port" {
                for (field, values) in [("values", &cond.values), ("notValues", &cond.not_values)] {
                    for (k, v) in values.iter().enumerate() {
                        errors.check(format!("{cpath}.{field}[{k}]"), port_string(v));
                    }
                }
            }
        }
    }
    errors.0
}

type ListCheck<'a> = (&'a str, &'a Vec<String>, fn(&str) -> Result<(), String>);

fn check_lists(errors: &mut Errors, path: &str, lists: &[ListCheck<'_>]) {
    let mut any = false;
    for (field, values, check) in lists {
        any |= !values.is_empty();
        for (k, v) in values.iter().enumerate() {
            errors.check(format!("{path}.{field}[{k}]"), check(v));
        }
    }
    if !any {
        errors.add(path.to_owned(), "must set at least one field");
    }
}

fn namespace_pattern(value: &str) -> Result<(), String> {
    wildcard_placement(value)?;
    if value.contains('*') {
        return Ok(());
    }
    dns_label(value)
}

fn port_string(value: &str) -> Result<(), String> {
    match value.parse::<u32>() {
        Ok(n) => port(n),
        Err(_) => Err(format!("{value:?} is not a port number")),
    }
}

fn path_pattern(value: &str) -> Result<(), String> {
    wildcard_placement(value)?;
    if value.starts_with('/') || value.starts_with('*') {
        Ok(())
    } else {
        Err(format!(
            "path {value:?} must start with '/' (or be a '*' pattern)"
        ))
    }
}
