//! TLS that is not mesh mTLS: DestinationRule `trafficPolicy.tls` towards a
//! destination (TLS origination), and Gateway server TLS with a credential
//! (SIMPLE / MUTUAL / OPTIONAL_MUTUAL).
use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CertificateValidationContext, CommonTlsContext, DownstreamTlsContext, SdsSecretConfig,
    TlsCertificate, UpstreamTlsContext,
    common_tls_context::{CombinedCertificateValidationContext, ValidationContextType},
    subject_alt_name_matcher::SanType,
};
use envoy_types::pb::google::protobuf::BoolValue;

use super::matchers::{san, san_any_type};
use super::sds::SdsSource;
use super::tls::upstream_mtls;
use crate::types::SecretRef;

/// `DestinationRule.trafficPolicy.tls` (files as paths on the proxy).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClientTls {
    Disable,
    /// Origination: verify the server with `ca_certificates` (or the proxy's system
    /// roots when absent) and its SAN against `subject_alt_names` (or the SNI host).
    Simple(OriginationSettings),
    /// Like `Simple`, presenting a client certificate.
    Mutual {
        settings: OriginationSettings,
        client_certificate: String,
        private_key: String,
    },
    /// SIMPLE or MUTUAL with `credentialName`, where it applies (gateways, and
    /// sidecars of a rule with a `workloadSelector`): the server is verified
    /// with the CA of Secret `credential` (`<name>-cacert`, else its own CA
    /// key), and MUTUAL presents the Secret's certificate; both over SDS.
    Credential {
        settings: OriginationSettings,
        credential: CredentialName,
        mutual: bool,
    },
    /// Mesh mTLS with the workload certificate.
    IstioMutual,
}

/// A Secret named by `credentialName`, in the namespace of the proxy using it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CredentialName {
    pub namespace: String,
    pub name: String,
}

impl CredentialName {
    /// The Secret's certificate and key.
    pub fn certificate(&self) -> SecretRef {
        SecretRef::Credential {
            namespace: self.namespace.clone(),
            name: self.name.clone(),
        }
    }

    /// The Secret's CA (Istio's `<name>-cacert`).
    pub fn ca(&self) -> SecretRef {
        SecretRef::Credential {
            namespace: self.namespace.clone(),
            name: format!("{}{}", self.name, crate::credential_uses::CA_SUFFIX),
        }
    }
}

impl ClientTls {
    /// The secrets the upstream TLS context references over SDS, beyond the
    /// proxy's own (a `credentialName`'s).
    pub fn credential_secrets(&self) -> Vec<SecretRef> {
        let ClientTls::Credential {
            settings,
            credential,
            mutual,
        } = self
        else {
            return Vec::new();
        };
        let mut refs = Vec::new();
        if *mutual {
            refs.push(credential.certificate());
        }
        if !settings.insecure_skip_verify {
            refs.push(credential.ca());
        }
        refs
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct OriginationSettings {
    pub ca_certificates: Option<String>,
    /// `caCrl`: revoked server certificates, a file next to the CA (a
    /// credential's Secret carries its own CRL).
    pub ca_crl: Option<String>,
    pub subject_alt_names: Vec<String>,
    pub sni: Option<String>,
    pub insecure_skip_verify: bool,
}

/// Where the proxy finds the operating system's root certificates.
pub const SYSTEM_ROOTS: &str = "/etc/ssl/certs/ca-certificates.crt";

/// A reference to `secret`, served over the aggregated xDS stream.
pub(crate) fn ads_secret(secret: &SecretRef) -> SdsSecretConfig {
    SdsSecretConfig {
        name: secret.sds_name(),
        sds_config: Some(crate::listener::ads_config_source()),
    }
}

fn file(path: &str) -> DataSource {
    DataSource {
        specifier: Some(Specifier::Filename(path.to_string())),
        ..Default::default()
    }
}

/// Where an originating proxy finds the CA that verifies the server.
enum Trust<'a> {
    /// `caCertificates`, else the system roots.
    Files,
    /// A `credentialName` Secret's CA, over SDS.
    Credential(&'a CredentialName),
}

fn origination(
    settings: &OriginationSettings,
    host: &str,
    trust: Trust<'_>,
) -> (CommonTlsContext, String) {
    let sni = settings.sni.clone().unwrap_or_else(|| host.to_string());
    let validation = (!settings.insecure_skip_verify).then(|| {
        let sans = if settings.subject_alt_names.is_empty() {
            vec![san(SanType::Dns, &sni)]
        } else {
            // The names a user lists match a SAN of any type, as in Istio.
            (settings.subject_alt_names.iter())
                .flat_map(|s| san_any_type(s))
                .collect()
        };
        match trust {
            Trust::Files => {
                ValidationContextType::ValidationContext(CertificateValidationContext {
                    trusted_ca: Some(file(
                        settings.ca_certificates.as_deref().unwrap_or(SYSTEM_ROOTS),
                    )),
                    crl: settings.ca_crl.as_deref().map(file),
                    match_typed_subject_alt_names: sans,
                    ..Default::default()
                })
            }
            Trust::Credential(credential) => ValidationContextType::CombinedValidationContext(
                CombinedCertificateValidationContext {
                    default_validation_context: Some(CertificateValidationContext {
                        match_typed_subject_alt_names: sans,
                        ..Default::default()
                    }),
                    validation_context_sds_secret_config: Some(ads_secret(&credential.ca())),
                    ..Default::default()
                },
            ),
        }
    });
    (
        CommonTlsContext {
            validation_context_type: validation,
            ..Default::default()
        },
        sni,
    )
}

/// TLS to a server outside the mesh that a URL names by `host` (a remote
/// JWKS): verified as a browser would, with the proxy's system roots and the
/// host name as SNI and SAN. An IP address is matched as an IP SAN and sent
/// no SNI (RFC 6066 forbids addresses there).
pub fn verified_tls_to(host: &str) -> UpstreamTlsContext {
    if host.parse::<std::net::IpAddr>().is_err() {
        let (common, sni) = origination(&OriginationSettings::default(), host, Trust::Files);
        return UpstreamTlsContext {
            common_tls_context: Some(common),
            sni,
            ..Default::default()
        };
    }
    let validation = CertificateValidationContext {
        trusted_ca: Some(file(SYSTEM_ROOTS)),
        match_typed_subject_alt_names: vec![san(SanType::IpAddress, host)],
        ..Default::default()
    };
    UpstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            validation_context_type: Some(ValidationContextType::ValidationContext(validation)),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// The upstream TLS context for a destination `host` under `tls`; `None` for DISABLE.
/// `mesh_sans` are the destination's SPIFFE ids, used by ISTIO_MUTUAL.
pub fn client_tls_context(
    tls: &ClientTls,
    host: &str,
    sds: &SdsSource,
    mesh_sans: &[String],
) -> Option<UpstreamTlsContext> {
    match tls {
        ClientTls::Disable => None,
        ClientTls::IstioMutual => Some(upstream_mtls(sds, host, mesh_sans)),
        ClientTls::Simple(settings) => {
            let (common, sni) = origination(settings, host, Trust::Files);
            Some(UpstreamTlsContext {
                common_tls_context: Some(common),
                sni,
                ..Default::default()
            })
        }
        ClientTls::Mutual {
            settings,
            client_certificate,
            private_key,
        } => {
            let (mut common, sni) = origination(settings, host, Trust::Files);
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: Some(file(client_certificate)),
                private_key: Some(file(private_key)),
                ..Default::default()
            }];
            Some(UpstreamTlsContext {
                common_tls_context: Some(common),
                sni,
                ..Default::default()
            })
        }
        ClientTls::Credential {
            settings,
            credential,
            mutual,
        } => {
            let (mut common, sni) = origination(settings, host, Trust::Credential(credential));
            if *mutual {
                common.tls_certificate_sds_secret_configs =
                    vec![ads_secret(&credential.certificate())];
            }
            Some(UpstreamTlsContext {
                common_tls_context: Some(common),
                sni,
                ..Default::default()
            })
        }
    }
}

/// Gateway server TLS mode (`Server.tls.mode`) as far as the client is
/// concerned; ISTIO_MUTUAL is `Mutual` with the mesh's certificates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GatewayTlsMode {
    /// No client certificate is asked for.
    Simple,
    /// A client certificate signed by the client CA is required.
    Mutual,
    /// A client certificate is optional; one that is presented must be signed
    /// by the client CA.
    OptionalMutual,
}

impl GatewayTlsMode {
    /// Whether client certificates are checked against a client CA.
    pub fn validates_client(self) -> bool {
        self != GatewayTlsMode::Simple
    }

    /// Envoy's `require_client_certificate` for the mode (unset when false, as
    /// Envoy's default is false).
    pub fn require_client_certificate(self) -> Option<BoolValue> {
        (self == GatewayTlsMode::Mutual).then_some(BoolValue { value: true })
    }
}

/// Where a gateway server's certificate (and, for MUTUAL and OPTIONAL_MUTUAL,
/// the client CA) comes from.
#[derive(Debug, Clone)]
pub enum ServerCredential<'a> {
    /// SDS secret references (file-based, or over ADS from the xDS server).
    Sds {
        certificate: &'a SdsSecretConfig,
        client_ca: Option<&'a SdsSecretConfig>,
    },
    /// Files on the proxy (`serverCertificate`, `privateKey`, `caCertificates`).
    Files {
        cert: &'a str,
        key: &'a str,
        client_ca: Option<&'a str>,
    },
}

/// Server TLS of a gateway listener with `credential`, offering `alpn`.
pub fn gateway_server_tls(
    mode: GatewayTlsMode,
    credential: ServerCredential<'_>,
    alpn: &[&str],
) -> DownstreamTlsContext {
    let validates = mode.validates_client();
    let mut common = CommonTlsContext {
        alpn_protocols: alpn.iter().map(|p| p.to_string()).collect(),
        ..Default::default()
    };
    match credential {
        ServerCredential::Sds {
            certificate,
            client_ca,
        } => {
            common.tls_certificate_sds_secret_configs = vec![certificate.clone()];
            common.validation_context_type = client_ca
                .filter(|_| validates)
                .map(|ca| ValidationContextType::ValidationContextSdsSecretConfig(ca.clone()));
        }
        ServerCredential::Files {
            cert,
            key,
            client_ca,
        } => {
            common.tls_certificates = vec![TlsCertificate {
                certificate_chain: Some(file(cert)),
                private_key: Some(file(key)),
                ..Default::default()
            }];
            common.validation_context_type = client_ca.filter(|_| validates).map(|ca| {
                ValidationContextType::ValidationContext(CertificateValidationContext {
                    trusted_ca: Some(file(ca)),
                    ..Default::default()
                })
            });
        }
    }
    DownstreamTlsContext {
        common_tls_context: Some(common),
        require_client_certificate: mode.require_client_certificate(),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simple_verifies_sni_host_with_system_roots_by_default() {
        let ctx = client_tls_context(
            &ClientTls::Simple(OriginationSettings::default()),
            "api.example.com",
            &SdsSource::Ads,
            &[],
        )
        .unwrap();
        assert_eq!(ctx.sni, "api.example.com");
        let Some(ValidationContextType::ValidationContext(v)) =
            ctx.common_tls_context.unwrap().validation_context_type
        else {
            panic!("validation context expected");
        };
        assert_eq!(v.trusted_ca, Some(file(SYSTEM_ROOTS)));
        assert_eq!(
            v.match_typed_subject_alt_names,
            vec![san(SanType::Dns, "api.example.com")]
        );
    }

    /// `caCrl` is a file next to the CA that verifies the server.
    #[test]
    fn simple_with_a_crl_file_checks_it() {
        let tls = ClientTls::Simple(OriginationSettings {
            ca_certificates: Some("/c/ca.pem".into()),
            ca_crl: Some("/c/ca.crl".into()),
            ..Default::default()
        });
        let ctx = client_tls_context(&tls, "api.example.com", &SdsSource::Ads, &[]).unwrap();
        let Some(ValidationContextType::ValidationContext(v)) =
            ctx.common_tls_context.unwrap().validation_context_type
        else {
            panic!("validation context expected");
        };
        assert_eq!(v.trusted_ca, Some(file("/c/ca.pem")));
        assert_eq!(v.crl, Some(file("/c/ca.crl")));
    }

    #[test]
    fn mutual_presents_a_client_cert_and_skip_verify_drops_validation() {
        let tls = ClientTls::Mutual {
            settings: OriginationSettings {
                insecure_skip_verify: true,
                sni: Some("internal".into()),
                ..Default::default()
            },
            client_certificate: "/c/cert.pem".into(),
            private_key: "/c/key.pem".into(),
        };
        let ctx = client_tls_context(&tls, "h", &SdsSource::Ads, &[]).unwrap();
        assert_eq!(ctx.sni, "internal");
        let common = ctx.common_tls_context.unwrap();
        assert!(common.validation_context_type.is_none());
        assert_eq!(common.tls_certificates.len(), 1);
        assert!(client_tls_context(&ClientTls::Disable, "h", &SdsSource::Ads, &[]).is_none());
    }

    #[test]
    fn istio_mutual_is_mesh_mtls() {
        let sans = vec!["spiffe://cluster.local/ns/a/sa/b".to_string()];
        let ctx = client_tls_context(&ClientTls::IstioMutual, "b.a.svc", &SdsSource::Ads, &sans);
        assert_eq!(ctx, Some(upstream_mtls(&SdsSource::Ads, "b.a.svc", &sans)));
    }

    #[test]
    fn gateway_mutual_requires_client_certs_and_simple_does_not() {
        let (cred, ca) = (
            "kubernetes://shop/shop-cert",
            "kubernetes://shop/shop-cert-cacert",
        );
        let sds = |name: &str| SdsSecretConfig {
            name: name.into(),
            sds_config: None,
        };
        let alpn = ["h2", "http/1.1"];
        let (cred, ca) = (sds(cred), sds(ca));
        let credential = || ServerCredential::Sds {
            certificate: &cred,
            client_ca: Some(&ca),
        };
        let mutual = gateway_server_tls(GatewayTlsMode::Mutual, credential(), &alpn);
        assert_eq!(
            mutual.require_client_certificate,
            Some(BoolValue { value: true })
        );
        assert!(
            mutual
                .common_tls_context
                .unwrap()
                .validation_context_type
                .is_some()
        );
        let simple = gateway_server_tls(GatewayTlsMode::Simple, credential(), &alpn);
        assert_eq!(simple.require_client_certificate, None);
        assert!(
            simple
                .common_tls_context
                .unwrap()
                .validation_context_type
                .is_none()
        );
    }

    /// OPTIONAL_MUTUAL checks a client certificate against the client CA when
    /// one is presented, and does not require one.
    #[test]
    fn gateway_optional_mutual_validates_without_requiring() {
        let sds = |name: &str| SdsSecretConfig {
            name: name.into(),
            sds_config: None,
        };
        let tls = gateway_server_tls(
            GatewayTlsMode::OptionalMutual,
            ServerCredential::Sds {
                certificate: &sds("kubernetes://shop/c"),
                client_ca: Some(&sds("kubernetes://shop/c-cacert")),
            },
            &[],
        );
        assert_eq!(tls.require_client_certificate, None);
        let common = tls.common_tls_context.unwrap();
        assert!(common.alpn_protocols.is_empty());
        let Some(ValidationContextType::ValidationContextSdsSecretConfig(ca)) =
            common.validation_context_type
        else {
            panic!("the client CA validates presented certificates");
        };
        assert_eq!(ca.name, "kubernetes://shop/c-cacert");
    }
}
