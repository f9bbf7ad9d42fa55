//! TLS material for one simulator: a fresh CA, a serving certificate for 127.0.0.1 and
//! localhost, and an admin client certificate; and the rustls server configuration that
//! asks for client certificates signed by that CA.

use crate::error::ApiError;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose, PKCS_ECDSA_P256_SHA256,
};
use rustls::RootCertStore;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use rustls::server::WebPkiClientVerifier;
use std::fmt;
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;

/// PEM-encoded certificates and keys. Debug never shows the private keys.
#[derive(Clone)]
pub struct TlsMaterial {
    pub ca_pem: String,
    pub server_cert_pem: String,
    server_key_der: Vec<u8>,
    server_cert_der: Vec<u8>,
    ca_der: Vec<u8>,
    pub client_cert_pem: String,
    client_key_pem: String,
}

impl fmt::Debug for TlsMaterial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsMaterial")
            .field("ca_pem", &self.ca_pem)
            .field("keys", &"<redacted>")
            .finish()
    }
}

fn rcgen_err(what: &str) -> impl Fn(rcgen::Error) -> ApiError + '_ {
    move |e| ApiError::internal(format!("TLS setup: {what}: {e}"))
}

impl TlsMaterial {
    /// Generates everything with ECDSA P-256 (fast enough for one server per test).
    pub fn generate() -> Result<Self, ApiError> {
        let ca_key = KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("CA key"))?;
        let mut ca_params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("CA"))?;
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "kube-sim-ca");
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params.key_usages = vec![
            KeyUsagePurpose::KeyCertSign,
            KeyUsagePurpose::CrlSign,
            KeyUsagePurpose::DigitalSignature,
        ];
        let ca = CertifiedIssuer::self_signed(ca_params, ca_key).map_err(rcgen_err("CA cert"))?;

        let server_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("server key"))?;
        let mut server_params =
            CertificateParams::new(vec!["localhost".to_string(), "kubernetes".to_string()])
                .map_err(rcgen_err("server"))?;
        server_params
            .subject_alt_names
            .push(rcgen::SanType::IpAddress(IpAddr::V4(Ipv4Addr::LOCALHOST)));
        server_params
            .distinguished_name
            .push(DnType::CommonName, "kube-apiserver");
        server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let server_cert = server_params
            .signed_by(&server_key, &ca)
            .map_err(rcgen_err("server cert"))?;

        let client_key =
            KeyPair::generate_for(&PKCS_ECDSA_P256_SHA256).map_err(rcgen_err("client key"))?;
        let mut client_params =
            CertificateParams::new(Vec::<String>::new()).map_err(rcgen_err("client"))?;
        client_params
            .distinguished_name
            .push(DnType::CommonName, "kube-sim-admin");
        client_params
            .distinguished_name
            .push(DnType::OrganizationName, "system:masters");
        client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
        let client_cert = client_params
            .signed_by(&client_key, &ca)
            .map_err(rcgen_err("client cert"))?;

        Ok(TlsMaterial {
            ca_pem: ca.pem(),
            ca_der: ca.der().to_vec(),
            server_cert_pem: server_cert.pem(),
            server_cert_der: server_cert.der().to_vec(),
            server_key_der: server_key.serialize_der(),
            client_cert_pem: client_cert.pem(),
            client_key_pem: client_key.serialize_pem(),
        })
    }

    /// The admin client key, PEM, for a kubeconfig.
    pub fn client_key_pem(&self) -> &str {
        &self.client_key_pem
    }

    /// A rustls server config verifying client certificates against our CA. A client may
    /// connect without one; the server then answers 401, as an API server with anonymous auth
    /// disabled does. A certificate from another CA is refused at the handshake.
    pub fn server_config(&self) -> Result<Arc<rustls::ServerConfig>, ApiError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut roots = RootCertStore::empty();
        roots
            .add(CertificateDer::from(self.ca_der.clone()))
            .map_err(|e| ApiError::internal(format!("TLS setup: CA into root store: {e}")))?;
        let verifier =
            WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
                .allow_unauthenticated()
                .build()
                .map_err(|e| ApiError::internal(format!("TLS setup: client verifier: {e}")))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| ApiError::internal(format!("TLS setup: protocol versions: {e}")))?
            .with_client_cert_verifier(verifier)
            .with_single_cert(
                vec![CertificateDer::from(self.server_cert_der.clone())],
                PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(self.server_key_der.clone())),
            )
            .map_err(|e| ApiError::internal(format!("TLS setup: serving certificate: {e}")))?;
        config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
        Ok(Arc::new(config))
    }
}
