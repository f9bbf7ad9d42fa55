//! Gateway rules.

use super::fields::{labels, namespaced_host, port};
use super::{Errors, FieldError};
use crate::networking::{Gateway, ServerTLSMode};
use std::collections::BTreeSet;

/// Protocols a gateway server may declare (case-insensitive).
pub(crate) const PROTOCOLS: &[&str] = &["HTTP", "HTTPS", "GRPC", "HTTP2", "MONGO", "TCP", "TLS"];

/// Validates a Gateway.
pub fn gateway(gw: &Gateway) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &gw.spec;
    labels(&mut errors, "spec.selector", &spec.selector);
    if spec.servers.is_empty() {
        errors.add("spec.servers", "at least one server is required");
    }
    let mut names = BTreeSet::new();
    for (i, server) in spec.servers.iter().enumerate() {
        let path = format!("spec.servers[{i}]");
        errors.check(format!("{path}.port.number"), port(server.port.number));
        let protocol = server.port.protocol.as_deref().map(str::to_ascii_uppercase);
        match protocol.as_deref() {
            None => errors.add(format!("{path}.port.protocol"), "required"),
            Some(p) if !PROTOCOLS.contains(&p) => errors.add(
                format!("{path}.port.protocol"),
                format!(
                    "unsupported protocol {p:?}; one of {}",
                    PROTOCOLS.join(", ")
                ),
            ),
            Some(_) => {}
        }
        if server.port.name.is_none() {
            errors.add(format!("{path}.port.name"), "required");
        }
        if let Some(name) = &server.name
            && !names.insert(name.as_str())
        {
            errors.add(
                format!("{path}.name"),
                format!("duplicate server name {name:?}"),
            );
        }
        if server.hosts.is_empty() {
            errors.add(format!("{path}.hosts"), "at least one host is required");
        }
        for (j, h) in server.hosts.iter().enumerate() {
            errors.check(format!("{path}.hosts[{j}]"), namespaced_host(h, false));
        }
        let is_tls_protocol = matches!(protocol.as_deref(), Some("HTTPS" | "TLS"));
        match &server.tls {
            None if is_tls_protocol => {
                errors.add(format!("{path}.tls"), "required for HTTPS and TLS servers")
            }
            None => {}
            Some(tls) => {
                let tpath = format!("{path}.tls");
                if tls.https_redirect == Some(true) && protocol.as_deref() != Some("HTTP") {
                    errors.add(
                        format!("{tpath}.httpsRedirect"),
                        "only applies to HTTP servers",
                    );
                }
                if is_tls_protocol && tls.mode.is_none() {
                    errors.add(
                        format!("{tpath}.mode"),
                        "required for HTTPS and TLS servers",
                    );
                }
                if matches!(
                    tls.mode,
                    Some(ServerTLSMode::Simple | ServerTLSMode::Mutual)
                ) {
                    let files = tls.server_certificate.is_some() && tls.private_key.is_some();
                    if tls.credential_name.is_none() && !files {
                        errors.add(
                            tpath.clone(),
                            "SIMPLE and MUTUAL require credentialName, or serverCertificate and privateKey",
                        );
                    }
                }
                if tls.mode == Some(ServerTLSMode::Mutual)
                    && tls.credential_name.is_none()
                    && tls.ca_certificates.is_none()
                {
                    errors.add(
                        format!("{tpath}.caCertificates"),
                        "MUTUAL requires caCertificates or credentialName",
                    );
                }
                if let (Some(min), Some(max)) = (tls.min_protocol_version, tls.max_protocol_version)
                    && (min as u8) > (max as u8)
                {
                    errors.add(
                        format!("{tpath}.minProtocolVersion"),
                        "must not be above maxProtocolVersion",
                    );
                }
            }
        }
    }
    errors.0
}
