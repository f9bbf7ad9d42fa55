//! The serving certificate: issued by the mesh CA for the webhook Service.

use crate::WebhookError;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use std::sync::Arc;
use std::time::{Duration, SystemTime};
use trellis_ca::CertificateAuthority;

/// The Service the API server calls (`trellis-webhook.<namespace>.svc`).
pub const SERVICE_NAME: &str = "trellis-webhook";
/// Lifetime of a serving certificate; the operator re-issues it well before.
pub const SERVING_CERT_TTL: Duration = Duration::from_secs(365 * 24 * 3600);

/// A serving certificate and key (PEM) and the CA bundle clients verify it with.
#[derive(Clone)]
pub struct ServingCert {
    pub cert_chain_pem: String,
    pub key_pem: trellis_ca::SecretPem,
    /// What goes (base64) into `caBundle` of both webhook configurations.
    pub ca_bundle_pem: String,
    pub not_after: SystemTime,
}

impl std::fmt::Debug for ServingCert {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServingCert")
            .field("not_after", &self.not_after)
            .field("key_pem", &"[redacted]")
            .finish()
    }
}

/// The DNS names the API server may use for the webhook Service.
pub fn service_dns_names(namespace: &str) -> Vec<String> {
    vec![
        format!("{SERVICE_NAME}.{namespace}.svc"),
        format!("{SERVICE_NAME}.{namespace}.svc.cluster.local"),
        format!("{SERVICE_NAME}.{namespace}"),
        SERVICE_NAME.to_string(),
    ]
}

/// Issues the webhook's serving certificate from the mesh CA (time passed in).
pub fn issue_serving_cert(
    ca: &CertificateAuthority,
    namespace: &str,
    now: SystemTime,
) -> Result<ServingCert, WebhookError> {
    let issued = ca
        .issue_server_cert(&service_dns_names(namespace), SERVING_CERT_TTL, now)
        .map_err(|e| WebhookError::Certificate(e.to_string()))?;
    Ok(ServingCert {
        cert_chain_pem: issued.cert_chain_pem,
        key_pem: issued.key_pem,
        ca_bundle_pem: issued.root_cert_pem,
        not_after: issued.not_after,
    })
}

/// A rustls server configuration (HTTP/1.1) for `cert`.
pub fn server_config(cert: &ServingCert) -> Result<Arc<rustls::ServerConfig>, WebhookError> {
    let chain: Vec<CertificateDer<'static>> =
        CertificateDer::pem_slice_iter(cert.cert_chain_pem.as_bytes())
            .collect::<Result<_, _>>()
            .map_err(|e| WebhookError::Certificate(format!("certificate chain: {e}")))?;
    if chain.is_empty() {
        return Err(WebhookError::Certificate(
            "certificate chain: no certificate".into(),
        ));
    }
    // The key text is never put into an error.
    let key = PrivateKeyDer::from_pem_slice(cert.key_pem.expose().as_bytes())
        .map_err(|_| WebhookError::Certificate("private key: not a PEM private key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| WebhookError::Certificate(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| WebhookError::Certificate(format!("certificate and key: {e}")))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}
