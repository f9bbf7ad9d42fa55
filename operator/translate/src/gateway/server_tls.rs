//! The TLS a gateway server terminates: which certificate it presents, which
//! client certificates it asks for, and the `DownstreamTlsContext` of its
//! filter chain (with the server's protocol versions, cipher suites and
//! client names).
//!
//! As in Istio: SIMPLE presents a credential (`credentialName` over SDS, or
//! `serverCertificate`/`privateKey` files); MUTUAL also requires a client
//! certificate signed by the client CA (`<credentialName>-cacert`, or
//! `caCertificates`); OPTIONAL_MUTUAL checks one against that CA when the
//! client presents it; ISTIO_MUTUAL presents the gateway's own workload
//! identity and requires a client certificate from the mesh's trust bundle.
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, DownstreamTlsContext, SubjectAltNameMatcher, TlsParameters,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    tls_parameters::TlsProtocol,
};
use trellis_api::networking::{self as api, ServerTLSMode};

use crate::security::origination::{
    GatewayTlsMode, ServerCredential, ads_secret, gateway_server_tls,
};
use crate::security::sds::SdsSource;
use crate::security::tls::{MESH_ALPN, downstream_mtls};
use crate::types::SecretRef;

/// Where a terminating server's certificate comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Credential {
    /// `credentialName`: SDS secrets `kubernetes://<ns>/<name>` (and `-cacert`).
    Sds(String),
    /// `serverCertificate` / `privateKey` (/ `caCertificates`): files on the proxy.
    Files {
        cert: String,
        key: String,
        ca: Option<String>,
    },
    /// ISTIO_MUTUAL: the gateway's own workload certificate, and the mesh's
    /// trust bundle for client certificates (the secrets a sidecar's inbound
    /// mTLS uses).
    Workload,
}

/// How a server terminates TLS: what the client must present, and what the
/// gateway presents.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Termination {
    pub mode: GatewayTlsMode,
    pub credential: Credential,
}

/// A problem with a server's `tls`: the field below `spec.servers[i]` and the message.
pub(super) type TlsProblem = (String, String);

/// The Istio spelling of a server TLS mode.
fn mode_name(mode: ServerTLSMode) -> &'static str {
    match mode {
        ServerTLSMode::Passthrough => "PASSTHROUGH",
        ServerTLSMode::Simple => "SIMPLE",
        ServerTLSMode::Mutual => "MUTUAL",
        ServerTLSMode::AutoPassthrough => "AUTO_PASSTHROUGH",
        ServerTLSMode::IstioMutual => "ISTIO_MUTUAL",
        ServerTLSMode::OptionalMutual => "OPTIONAL_MUTUAL",
    }
}

/// How a server with TLS settings `tls` terminates TLS (its mode is not
/// PASSTHROUGH); a problem names the field under the server.
pub(super) fn termination(tls: &api::ServerTLSSettings) -> Result<Termination, TlsProblem> {
    let mode = match tls.mode {
        Some(ServerTLSMode::Simple) | None => GatewayTlsMode::Simple,
        Some(ServerTLSMode::Mutual) => GatewayTlsMode::Mutual,
        Some(ServerTLSMode::OptionalMutual) => GatewayTlsMode::OptionalMutual,
        // The mesh provides the certificates; Istio's validation refuses
        // credentials next to ISTIO_MUTUAL, so there are none to use.
        Some(ServerTLSMode::IstioMutual) => {
            return Ok(Termination {
                mode: GatewayTlsMode::Mutual,
                credential: Credential::Workload,
            });
        }
        Some(other) => {
            return Err((
                "tls.mode".into(),
                format!(
                    "TLS mode {} is not supported on gateways yet",
                    mode_name(other)
                ),
            ));
        }
    };
    let name = mode_name(tls.mode.unwrap_or(ServerTLSMode::Simple));
    let credential = match (
        tls.credential_name.as_ref().filter(|c| !c.is_empty()),
        &tls.server_certificate,
        &tls.private_key,
    ) {
        (Some(name), _, _) => Credential::Sds(name.clone()),
        (None, Some(cert), Some(key)) => {
            if mode.validates_client() && tls.ca_certificates.is_none() {
                return Err((
                    "tls.caCertificates".into(),
                    format!("{name} with certificate files needs caCertificates"),
                ));
            }
            Credential::Files {
                cert: cert.clone(),
                key: key.clone(),
                ca: tls.ca_certificates.clone(),
            }
        }
        _ => {
            return Err((
                "tls.credentialName".into(),
                format!(
                    "a {name} server needs credentialName (or serverCertificate and privateKey)"
                ),
            ));
        }
    };
    Ok(Termination { mode, credential })
}

/// ALPN a terminating server offers: HTTP versions on HTTPS servers; on TLS
/// servers (opaque TCP after termination) only the mesh's protocol for
/// ISTIO_MUTUAL, nothing otherwise, so a client does not agree on an HTTP
/// version the backend behind the TCP proxy may not speak.
fn alpn(credential: &Credential, http: bool) -> Vec<&'static str> {
    match (http, credential) {
        (true, _) => vec!["h2", "http/1.1"],
        (false, Credential::Workload) => vec![MESH_ALPN],
        (false, _) => Vec::new(),
    }
}

/// The TLS context of a server of a gateway proxy in namespace `namespace`
/// terminating as `t` (HTTP after it when `http`), with the server's other
/// TLS settings `settings`; `sds` is where the proxy's own identity comes
/// from. Also the secrets the context references.
pub(super) fn server_tls(
    t: &Termination,
    settings: &api::ServerTLSSettings,
    namespace: &str,
    sds: &SdsSource,
    http: bool,
) -> (DownstreamTlsContext, Vec<SecretRef>) {
    let alpn = alpn(&t.credential, http);
    let (tls, secrets) = match &t.credential {
        Credential::Sds(cred) => {
            let cred_ref = SecretRef::Credential {
                namespace: namespace.to_string(),
                name: cred.clone(),
            };
            let ca_ref = SecretRef::Credential {
                namespace: namespace.to_string(),
                name: format!("{cred}-cacert"),
            };
            let validates = t.mode.validates_client();
            let (certificate, client_ca) = (ads_secret(&cred_ref), ads_secret(&ca_ref));
            let tls = gateway_server_tls(
                t.mode,
                ServerCredential::Sds {
                    certificate: &certificate,
                    client_ca: validates.then_some(&client_ca),
                },
                &alpn,
            );
            let mut secrets = vec![cred_ref];
            if validates {
                secrets.push(ca_ref);
            }
            (tls, secrets)
        }
        Credential::Files { cert, key, ca } => {
            let files = ServerCredential::Files {
                cert,
                key,
                client_ca: ca.as_deref(),
            };
            (gateway_server_tls(t.mode, files, &alpn), Vec::new())
        }
        Credential::Workload => {
            let mut tls = downstream_mtls(sds);
            if let Some(common) = tls.common_tls_context.as_mut() {
                common.alpn_protocols = alpn.iter().map(|p| p.to_string()).collect();
            }
            (
                tls,
                vec![SecretRef::WorkloadCertificate, SecretRef::TrustBundle],
            )
        }
    };
    (with_server_settings(tls, settings), secrets)
}

/// `tls` with the server's protocol versions, cipher suites and, where
/// client certificates are checked, what they must match: names
/// (`subjectAltNames`), hashes (`verifyCertificateSpki`,
/// `verifyCertificateHash`) and, with a client CA file, the CRL (`caCrl`).
fn with_server_settings(
    mut tls: DownstreamTlsContext,
    settings: &api::ServerTLSSettings,
) -> DownstreamTlsContext {
    let version = |v: Option<api::TLSProtocol>| {
        (match v {
            None | Some(api::TLSProtocol::TlsAuto) => TlsProtocol::TlsAuto,
            Some(api::TLSProtocol::Tlsv1_0) => TlsProtocol::TlSv10,
            Some(api::TLSProtocol::Tlsv1_1) => TlsProtocol::TlSv11,
            Some(api::TLSProtocol::Tlsv1_2) => TlsProtocol::TlSv12,
            Some(api::TLSProtocol::Tlsv1_3) => TlsProtocol::TlSv13,
        }) as i32
    };
    let Some(common) = tls.common_tls_context.as_mut() else {
        return tls;
    };
    let params = TlsParameters {
        tls_minimum_protocol_version: version(settings.min_protocol_version),
        tls_maximum_protocol_version: version(settings.max_protocol_version),
        cipher_suites: settings.cipher_suites.clone(),
        ..Default::default()
    };
    if params != TlsParameters::default() {
        common.tls_params = Some(params);
    }
    let pinned = !settings.subject_alt_names.is_empty()
        || !settings.verify_certificate_spki.is_empty()
        || !settings.verify_certificate_hash.is_empty();
    let crl = settings
        .ca_crl
        .as_ref()
        .filter(|p| !p.is_empty())
        .map(|path| DataSource {
            specifier: Some(Specifier::Filename(path.clone())),
            ..Default::default()
        });
    if !pinned && crl.is_none() {
        return tls;
    }
    let matchers: Vec<SubjectAltNameMatcher> = (settings.subject_alt_names.iter())
        .flat_map(|name| crate::security::matchers::san_any_type(name))
        .collect();
    // What a client certificate must match besides its CA, as Istio puts it
    // in the context (the default part next to an SDS client CA).
    let pin = |v: &mut CertificateValidationContext| {
        if !matchers.is_empty() {
            v.match_typed_subject_alt_names = matchers.clone();
        }
        v.verify_certificate_spki = settings.verify_certificate_spki.clone();
        v.verify_certificate_hash = settings.verify_certificate_hash.clone();
    };
    common.validation_context_type = match common.validation_context_type.take() {
        // The client CA from a file: the CRL file next to it.
        Some(ValidationContextType::ValidationContext(mut v)) => {
            pin(&mut v);
            v.crl = crl;
            Some(ValidationContextType::ValidationContext(v))
        }
        // A credential's client CA: its Secret carries the CRL (validation
        // refuses caCrl there, as Istio).
        Some(ValidationContextType::ValidationContextSdsSecretConfig(ca)) => {
            let mut default = CertificateValidationContext::default();
            pin(&mut default);
            Some(ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(default),
                    validation_context_sds_secret_config: Some(ca),
                    ..Default::default()
                },
            ))
        }
        // ISTIO_MUTUAL: the mesh's trust bundle, plus the pins.
        Some(ValidationContextType::CombinedValidationContext(mut c)) => {
            pin(c
                .default_validation_context
                .get_or_insert_with(Default::default));
            Some(ValidationContextType::CombinedValidationContext(c))
        }
        // No client certificates are checked (SIMPLE): nothing to pin, as in
        // Istio.
        other => other,
    };
    tls
}

#[cfg(test)]
mod tests {
    use super::*;
    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;

    fn settings(yaml: &str) -> api::ServerTLSSettings {
        serde_yaml::from_str(yaml).unwrap()
    }

    fn file_sds() -> SdsSource {
        SdsSource::Files {
            workload_cert_file: "/etc/sds/cert.yaml".into(),
            trust_bundle_file: "/etc/sds/root.yaml".into(),
            watched_directory: None,
        }
    }

    fn combined(tls: &DownstreamTlsContext) -> &CombinedCertificateValidationContext {
        match tls
            .common_tls_context
            .as_ref()
            .unwrap()
            .validation_context_type
            .as_ref()
        {
            Some(ValidationContextType::CombinedValidationContext(c)) => c,
            other => panic!("combined validation context expected, got {other:?}"),
        }
    }

    /// ISTIO_MUTUAL: the gateway's workload certificate (`default`) and the
    /// mesh root (`ROOTCA`) from the proxy's own SDS source, a client
    /// certificate required, no credential needed; HTTP ALPN on HTTPS.
    #[test]
    fn istio_mutual_uses_the_workload_identity_and_requires_a_mesh_client() {
        let s = settings("{mode: ISTIO_MUTUAL}");
        let t = termination(&s).unwrap();
        assert_eq!(t.credential, Credential::Workload);
        let (tls, secrets) = server_tls(&t, &s, "shop", &file_sds(), true);
        assert_eq!(tls.require_client_certificate.map(|b| b.value), Some(true));
        let common = tls.common_tls_context.as_ref().unwrap();
        assert_eq!(common.alpn_protocols, ["h2", "http/1.1"]);
        let cert = &common.tls_certificate_sds_secret_configs;
        assert_eq!(cert.len(), 1);
        assert_eq!(cert[0], file_sds().workload_cert());
        let c = combined(&tls);
        assert_eq!(
            c.validation_context_sds_secret_config,
            Some(file_sds().trust_bundle())
        );
        assert_eq!(
            secrets,
            [SecretRef::WorkloadCertificate, SecretRef::TrustBundle]
        );
        // On a TLS server (TCP after termination) the mesh's ALPN.
        let (tls, _) = server_tls(&t, &s, "shop", &file_sds(), false);
        assert_eq!(tls.common_tls_context.unwrap().alpn_protocols, [MESH_ALPN]);
    }

    /// ISTIO_MUTUAL `subjectAltNames` are checked next to the mesh root.
    #[test]
    fn istio_mutual_checks_client_names() {
        let s = settings(
            "{mode: ISTIO_MUTUAL, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/client], \
             minProtocolVersion: TLSV1_3}",
        );
        let (tls, _) = server_tls(&termination(&s).unwrap(), &s, "shop", &SdsSource::Ads, true);
        let c = combined(&tls);
        let names: Vec<_> = (c.default_validation_context.as_ref().unwrap())
            .match_typed_subject_alt_names
            .iter()
            .map(|m| m.matcher.as_ref().unwrap().match_pattern.clone())
            .collect();
        assert!(
            names.contains(&Some(MatchPattern::Exact(
                "spiffe://cluster.local/ns/shop/sa/client".into()
            ))),
            "{names:?}"
        );
        assert_eq!(
            c.validation_context_sds_secret_config
                .as_ref()
                .unwrap()
                .name,
            "ROOTCA"
        );
        let params = tls.common_tls_context.unwrap().tls_params.unwrap();
        assert_eq!(
            params.tls_minimum_protocol_version,
            TlsProtocol::TlSv13 as i32
        );
    }

    /// OPTIONAL_MUTUAL: the client CA checks a presented certificate, none is
    /// required; from files it needs caCertificates as MUTUAL does.
    #[test]
    fn optional_mutual_validates_without_requiring() {
        let s = settings("{mode: OPTIONAL_MUTUAL, credentialName: shop-cert}");
        let t = termination(&s).unwrap();
        assert_eq!(t.mode, GatewayTlsMode::OptionalMutual);
        let (tls, secrets) = server_tls(&t, &s, "shop", &SdsSource::Ads, true);
        assert_eq!(tls.require_client_certificate, None);
        let Some(ValidationContextType::ValidationContextSdsSecretConfig(ca)) =
            tls.common_tls_context.unwrap().validation_context_type
        else {
            panic!("the client CA");
        };
        assert_eq!(ca.name, "kubernetes://shop/shop-cert-cacert");
        assert_eq!(secrets.len(), 2);

        let s = settings(
            "{mode: OPTIONAL_MUTUAL, serverCertificate: /c/cert.pem, privateKey: /c/key.pem, \
             caCertificates: /c/ca.pem}",
        );
        let (tls, secrets) =
            server_tls(&termination(&s).unwrap(), &s, "shop", &SdsSource::Ads, true);
        assert!(secrets.is_empty());
        assert_eq!(tls.require_client_certificate, None);
        let Some(ValidationContextType::ValidationContext(v)) =
            tls.common_tls_context.unwrap().validation_context_type
        else {
            panic!("the client CA from its file");
        };
        assert_eq!(
            v.trusted_ca.unwrap().specifier,
            Some(Specifier::Filename("/c/ca.pem".into()))
        );
        let s = settings(
            "{mode: OPTIONAL_MUTUAL, serverCertificate: /c/cert.pem, privateKey: /c/key.pem}",
        );
        assert_eq!(termination(&s).unwrap_err().0, "tls.caCertificates");
    }

    /// A terminated TLS server offers no HTTP ALPN: the bytes go to a TCP
    /// backend whose protocol the gateway does not know.
    #[test]
    fn terminated_tcp_offers_no_http_alpn() {
        let s = settings("{mode: SIMPLE, credentialName: db-cert}");
        let (tls, secrets) = server_tls(
            &termination(&s).unwrap(),
            &s,
            "shop",
            &SdsSource::Ads,
            false,
        );
        assert!(tls.common_tls_context.unwrap().alpn_protocols.is_empty());
        assert_eq!(secrets.len(), 1, "no client CA for SIMPLE");
    }

    const HASH: &str = "DF:6F:F7:2F:E9:11:65:21:26:8F:65:90:DD:4A:B9:75:5E:1D:BB:2C:9C:3F:2B:D5:FA:9C:A2:F8:A8:2B:CC:CB";
    const SPKI: &str = "2Xy+aHR1gD0mRUmcvQbbvcUx0XUcsjsV6kLPK5I4Ogo=";

    /// MUTUAL with a credential: the hashes a client certificate must match
    /// sit in the default part of a combined context next to the SDS client
    /// CA, as in Istio; no CRL there (the Secret carries it).
    #[test]
    fn mutual_credential_pins_client_hashes_in_the_default_context() {
        let s = settings(&format!(
            "{{mode: MUTUAL, credentialName: shop-cert, verifyCertificateHash: [\"{HASH}\"], \
             verifyCertificateSpki: [\"{SPKI}\"]}}"
        ));
        let (tls, _) = server_tls(&termination(&s).unwrap(), &s, "shop", &SdsSource::Ads, true);
        let c = combined(&tls);
        let default = c.default_validation_context.as_ref().unwrap();
        assert_eq!(default.verify_certificate_hash, [HASH]);
        assert_eq!(default.verify_certificate_spki, [SPKI]);
        assert!(default.match_typed_subject_alt_names.is_empty());
        assert_eq!(default.crl, None);
        assert_eq!(
            c.validation_context_sds_secret_config
                .as_ref()
                .unwrap()
                .name,
            "kubernetes://shop/shop-cert-cacert"
        );
    }

    /// OPTIONAL_MUTUAL with files: hashes and the CRL file in the context of
    /// the client CA file.
    #[test]
    fn mutual_files_take_hashes_and_the_crl_file() {
        let s = settings(&format!(
            "{{mode: OPTIONAL_MUTUAL, serverCertificate: /c/cert.pem, privateKey: /c/key.pem, \
             caCertificates: /c/ca.pem, caCrl: /c/ca.crl, verifyCertificateHash: [\"{HASH}\"]}}"
        ));
        let (tls, _) = server_tls(&termination(&s).unwrap(), &s, "shop", &SdsSource::Ads, true);
        let Some(ValidationContextType::ValidationContext(v)) =
            tls.common_tls_context.unwrap().validation_context_type
        else {
            panic!("the client CA from its file");
        };
        assert_eq!(
            v.trusted_ca.unwrap().specifier,
            Some(Specifier::Filename("/c/ca.pem".into()))
        );
        assert_eq!(
            v.crl.unwrap().specifier,
            Some(Specifier::Filename("/c/ca.crl".into()))
        );
        assert_eq!(v.verify_certificate_hash, [HASH]);
        assert!(v.verify_certificate_spki.is_empty());
    }

    /// An empty caCrl is unset, as a proto3 string in Istio: no CRL file.
    #[test]
    fn an_empty_ca_crl_is_unset() {
        let s = settings(
            "{mode: MUTUAL, serverCertificate: /c/cert.pem, privateKey: /c/key.pem, \
             caCertificates: /c/ca.pem, caCrl: ''}",
        );
        let (tls, _) = server_tls(&termination(&s).unwrap(), &s, "shop", &SdsSource::Ads, true);
        let Some(ValidationContextType::ValidationContext(v)) =
            tls.common_tls_context.unwrap().validation_context_type
        else {
            panic!("the client CA from its file");
        };
        assert_eq!(v.crl, None);
    }

    /// SIMPLE checks no client certificate: hashes are not applied (as Istio).
    #[test]
    fn simple_ignores_client_hashes() {
        let s = settings(&format!(
            "{{mode: SIMPLE, credentialName: c, verifyCertificateSpki: [\"{SPKI}\"]}}"
        ));
        let (tls, _) = server_tls(&termination(&s).unwrap(), &s, "shop", &SdsSource::Ads, true);
        assert!(
            tls.common_tls_context
                .unwrap()
                .validation_context_type
                .is_none()
        );
    }

    #[test]
    fn unsupported_modes_and_missing_credentials_name_their_field() {
        let (path, message) = termination(&settings("{mode: AUTO_PASSTHROUGH}")).unwrap_err();
        assert_eq!(path, "tls.mode");
        assert!(message.contains("AUTO_PASSTHROUGH"), "{message}");
        let (path, message) = termination(&settings("{mode: MUTUAL}")).unwrap_err();
        assert_eq!(path, "tls.credentialName");
        assert!(message.contains("MUTUAL"), "{message}");
    }
}
