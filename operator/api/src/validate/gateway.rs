//! Gateway rules.

use super::fields::{labels, namespaced_host, port};
use super::{Errors, FieldError};
use crate::networking::{Gateway, ServerTLSMode, TLSProtocol};
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
        if let Some(bind) = &server.bind
            && bind.parse::<std::net::IpAddr>().is_err()
            && !bind.starts_with("unix://")
        {
            errors.add(
                format!("{path}.bind"),
                format!("{bind:?} is not an IP address or a unix:// path"),
            );
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
                // On a plaintext server every TLS setting but the redirect would be
                // accepted and not applied: the port is served without TLS.
                if !is_tls_protocol {
                    let set = tls.mode.is_some()
                        || tls.credential_name.is_some()
                        || tls.server_certificate.is_some()
                        || tls.private_key.is_some()
                        || tls.ca_certificates.is_some()
                        || !tls.subject_alt_names.is_empty()
                        || tls.min_protocol_version.is_some()
                        || tls.max_protocol_version.is_some()
                        || !tls.cipher_suites.is_empty();
                    if set {
                        errors.add(
                            tpath.clone(),
                            format!(
                                "{} servers are plaintext: only httpsRedirect applies (TLS settings need HTTPS or TLS)",
                                protocol.as_deref().unwrap_or("these")
                            ),
                        );
                    }
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
                    && max != TLSProtocol::TlsAuto
                    && (min as u8) > (max as u8)
                {
                    errors.add(
                        format!("{tpath}.minProtocolVersion"),
                        "must not be above maxProtocolVersion",
                    );
                }
                for (k, suite) in tls.cipher_suites.iter().enumerate() {
                    if !known_cipher_suite(suite) {
                        errors.add(
                            format!("{tpath}.cipherSuites[{k}]"),
                            format!(
                                "{suite:?} is not a cipher suite Envoy knows (e.g. \
                                 ECDHE-ECDSA-AES128-GCM-SHA256, or [A|B] for equal preference)"
                            ),
                        );
                    }
                }
            }
        }
    }
    errors.0
}

/// The TLS 1.2 cipher suites Envoy's BoringSSL takes by name (TLS 1.3 suites
/// are not configurable). Envoy refuses a listener naming any other, so the
/// name is checked here, where the user can still be told.
pub const CIPHER_SUITES: [&str; 20] = [
    "ECDHE-ECDSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-ECDSA-AES256-GCM-SHA384",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "ECDHE-ECDSA-CHACHA20-POLY1305",
    "ECDHE-RSA-CHACHA20-POLY1305",
    "ECDHE-PSK-CHACHA20-POLY1305",
    "ECDHE-ECDSA-AES128-SHA",
    "ECDHE-RSA-AES128-SHA",
    "ECDHE-PSK-AES128-CBC-SHA",
    "ECDHE-ECDSA-AES256-SHA",
    "ECDHE-RSA-AES256-SHA",
    "ECDHE-PSK-AES256-CBC-SHA",
    "AES128-GCM-SHA256",
    "AES256-GCM-SHA384",
    "AES128-SHA",
    "PSK-AES128-CBC-SHA",
    "AES256-SHA",
    "PSK-AES256-CBC-SHA",
    "DES-CBC3-SHA",
];

/// A suite name, or a `[A|B]` group of names of equal preference.
fn known_cipher_suite(suite: &str) -> bool {
    let names = match suite.strip_prefix('[').and_then(|s| s.strip_suffix(']')) {
        Some(group) => group.split('|').collect(),
        None => vec![suite],
    };
    names.iter().all(|n| CIPHER_SUITES.contains(n))
}
