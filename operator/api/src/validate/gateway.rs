//! Gateway rules.

use super::fields::{labels, namespaced_host, port};
use super::{Errors, FieldError};
use crate::networking::{Gateway, ServerTLSMode, ServerTLSSettings, TLSProtocol};
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
    let mut port_names = BTreeSet::new();
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
        match &server.port.name {
            None => errors.add(format!("{path}.port.name"), "required"),
            // As in Istio: the proxy's listener chains and routes are named by them.
            Some(name) if !port_names.insert(name.as_str()) => errors.add(
                format!("{path}.port.name"),
                format!("duplicate port name {name:?}: port names in servers must be unique"),
            ),
            Some(_) => {}
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
                        || !tls.verify_certificate_spki.is_empty()
                        || !tls.verify_certificate_hash.is_empty()
                        || tls.ca_crl.is_some()
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
                certificates(&mut errors, &tpath, tls);
                client_pins(&mut errors, &tpath, tls);
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

/// The certificate fields of server TLS settings `tls` (at `tpath`) for its
/// mode, as Istio checks them: ISTIO_MUTUAL takes none (the gateway presents
/// its mesh identity); SIMPLE, MUTUAL and OPTIONAL_MUTUAL take one source,
/// `credentialName` or `serverCertificate` with `privateKey`, and the two
/// client-checking modes a client CA (`caCertificates`, or the credential's).
fn certificates(errors: &mut Errors, tpath: &str, tls: &ServerTLSSettings) {
    let name = match tls.mode {
        Some(ServerTLSMode::IstioMutual) => {
            let set = [
                ("serverCertificate", tls.server_certificate.is_some()),
                ("privateKey", tls.private_key.is_some()),
                ("caCertificates", tls.ca_certificates.is_some()),
                ("credentialName", tls.credential_name.is_some()),
                ("caCrl", tls.ca_crl.is_some()),
            ];
            for (field, _) in set.iter().filter(|(_, set)| *set) {
                errors.add(
                    format!("{tpath}.{field}"),
                    "ISTIO_MUTUAL takes no certificates: the gateway presents its mesh \
                     identity and checks clients against the mesh root",
                );
            }
            return;
        }
        Some(ServerTLSMode::Simple) => "SIMPLE",
        Some(ServerTLSMode::Mutual) => "MUTUAL",
        Some(ServerTLSMode::OptionalMutual) => "OPTIONAL_MUTUAL",
        _ => return,
    };
    let credential = tls.credential_name.is_some();
    let files = tls.server_certificate.is_some() || tls.private_key.is_some();
    let key_pair = tls.server_certificate.is_some() && tls.private_key.is_some();
    if credential && files {
        errors.add(
            tpath.to_owned(),
            "only one of credentialName, or serverCertificate and privateKey, may be set",
        );
    } else if !credential && !key_pair {
        errors.add(
            tpath.to_owned(),
            format!("{name} requires credentialName, or serverCertificate and privateKey"),
        );
    }
    // As Istio: a credential's Secret carries its own CRL (`ca.crl`), and
    // SIMPLE checks no client certificate a CRL could revoke.
    if tls.ca_crl.is_some() {
        if credential {
            errors.add(
                format!("{tpath}.caCrl"),
                "CRL is not supported with credentialName: the credential's Secret carries it (ca.crl)",
            );
        }
        if name == "SIMPLE" {
            errors.add(
                format!("{tpath}.caCrl"),
                "CRL is not supported with SIMPLE TLS: no client certificate is checked",
            );
        }
    }
    if name != "SIMPLE" && !credential && tls.ca_certificates.is_none() {
        errors.add(
            format!("{tpath}.caCertificates"),
            format!("{name} requires caCertificates or credentialName"),
        );
    }
}

/// `verifyCertificateSpki` (base64 of a SHA-256 digest) and
/// `verifyCertificateHash` (hex of one, colons allowed): Envoy refuses a
/// listener with any other, so each is checked here, where the user is told.
fn client_pins(errors: &mut Errors, tpath: &str, tls: &ServerTLSSettings) {
    for (k, spki) in tls.verify_certificate_spki.iter().enumerate() {
        if !is_sha256_base64(spki) {
            errors.add(
                format!("{tpath}.verifyCertificateSpki[{k}]"),
                format!("{spki:?} is not a base64-encoded SHA-256 hash (44 characters)"),
            );
        }
    }
    for (k, hash) in tls.verify_certificate_hash.iter().enumerate() {
        if !is_sha256_hex(hash) {
            errors.add(
                format!("{tpath}.verifyCertificateHash[{k}]"),
                format!(
                    "{hash:?} is not a hex-encoded SHA-256 hash (64 hex digits, colons allowed)"
                ),
            );
        }
    }
}

/// Whether `s` is the standard base64 of 32 bytes.
pub(crate) fn is_sha256_base64(s: &str) -> bool {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD
        .decode(s)
        .is_ok_and(|bytes| bytes.len() == 32)
}

/// Whether `s` is 32 bytes in hex, with or without colons between them.
pub(crate) fn is_sha256_hex(s: &str) -> bool {
    let digits: Vec<char> = s.chars().filter(|c| *c != ':').collect();
    digits.len() == 64 && digits.iter().all(char::is_ascii_hexdigit)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The errors of a Gateway with one server on `protocol` with TLS settings `tls` (flow YAML).
    fn errors(protocol: &str, tls: &str) -> Vec<String> {
        let yaml = format!(
            "metadata: {{name: gw, namespace: shop}}\nspec:\n  selector: {{istio: ingressgateway}}\n  \
             servers:\n  - port: {{number: 443, name: p, protocol: {protocol}}}\n    hosts: [a.example.com]\n    tls: {tls}\n"
        );
        let gw: Gateway = serde_yaml::from_str(&yaml).unwrap();
        gateway(&gw).iter().map(ToString::to_string).collect()
    }

    #[test]
    fn istio_mutual_needs_no_certificates_and_refuses_them() {
        assert!(errors("HTTPS", "{mode: ISTIO_MUTUAL}").is_empty());
        assert!(
            errors(
                "TLS",
                "{mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/a/sa/b]}"
            )
            .is_empty()
        );
        let e = errors(
            "HTTPS",
            "{mode: ISTIO_MUTUAL, credentialName: c, caCertificates: /ca.pem}",
        );
        assert_eq!(e.len(), 2, "{e:?}");
        assert!(
            e[0].starts_with(
                "spec.servers[0].tls.caCertificates: ISTIO_MUTUAL takes no certificates"
            ),
            "{e:?}"
        );
        assert!(
            e[1].starts_with("spec.servers[0].tls.credentialName:"),
            "{e:?}"
        );
    }

    #[test]
    fn optional_mutual_needs_a_credential_and_a_client_ca() {
        assert!(errors("HTTPS", "{mode: OPTIONAL_MUTUAL, credentialName: c}").is_empty());
        assert!(errors(
            "TLS",
            "{mode: OPTIONAL_MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem, caCertificates: /ca.pem}"
        )
        .is_empty());
        assert_eq!(
            errors(
                "HTTPS",
                "{mode: OPTIONAL_MUTUAL, serverCertificate: /c.pem, privateKey: /k.pem}"
            ),
            [
                "spec.servers[0].tls.caCertificates: OPTIONAL_MUTUAL requires caCertificates or credentialName"
            ]
        );
        assert_eq!(
            errors("TLS", "{mode: OPTIONAL_MUTUAL}"),
            [
                "spec.servers[0].tls: OPTIONAL_MUTUAL requires credentialName, or serverCertificate and privateKey",
                "spec.servers[0].tls.caCertificates: OPTIONAL_MUTUAL requires caCertificates or credentialName"
            ]
        );
    }

    #[test]
    fn one_certificate_source_only() {
        assert_eq!(
            errors(
                "HTTPS",
                "{mode: SIMPLE, credentialName: c, serverCertificate: /c.pem, privateKey: /k.pem}"
            ),
            [
                "spec.servers[0].tls: only one of credentialName, or serverCertificate and privateKey, may be set"
            ]
        );
        assert!(
            errors(
                "TLS",
                "{mode: SIMPLE, serverCertificate: /c.pem, privateKey: /k.pem}"
            )
            .is_empty()
        );
        assert_eq!(
            errors("TLS", "{mode: SIMPLE, serverCertificate: /c.pem}"),
            [
                "spec.servers[0].tls: SIMPLE requires credentialName, or serverCertificate and privateKey"
            ]
        );
    }
}
