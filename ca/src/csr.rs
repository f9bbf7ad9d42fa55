//! Signing PKCS#10 requests for an identity the caller has already authenticated
//! (e.g. from a Kubernetes token review). The CSR only contributes its public key:
//! the identity comes from the caller, and a CSR asking for anything else is refused.

use crate::authority::{CertificateAuthority, IssuedCertificate};
use crate::error::{CaError, Result};
use crate::issue::LeafKind;
use crate::key::KeyAlgorithm;
use crate::pem_io;
use crate::spiffe::SpiffeId;
use std::time::{Duration, SystemTime};

impl CertificateAuthority {
    /// Verifies the CSR's signature, checks it asks for nothing but `identity` (no other
    /// SAN, no CA:true), and issues an X509-SVID for its public key.
    pub fn sign_csr(
        &self,
        csr_pem: &str,
        identity: &SpiffeId,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedCertificate> {
        let refuse = |reason: String| CaError::Csr {
            identity: identity.to_string(),
            reason,
        };
        let blocks = pem_io::parse_blocks("CSR", csr_pem).map_err(|e| refuse(e.to_string()))?;
        let [block] = blocks.as_slice() else {
            return Err(refuse(format!(
                "expected one PEM block, found {}",
                blocks.len()
            )));
        };
        if block.tag != "CERTIFICATE REQUEST" && block.tag != "NEW CERTIFICATE REQUEST" {
            return Err(refuse(format!(
                "PEM block is {:?}, expected \"CERTIFICATE REQUEST\"",
                block.tag
            )));
        }
        let der = rustls_pki_types::CertificateSigningRequestDer::from(block.contents.as_slice());
        let csr = rcgen::CertificateSigningRequestParams::from_der(&der).map_err(|e| match e {
            rcgen::Error::InvalidCertificationRequestSignature => {
                refuse("signature does not verify".into())
            }
            rcgen::Error::UnsupportedExtension => {
                refuse("requests an extension the CA does not grant".into())
            }
            other => refuse(format!("cannot be parsed: {other}")),
        })?;
        if matches!(csr.params.is_ca, rcgen::IsCa::Ca(_)) {
            return Err(refuse(
                "requests CA:true; workload certificates are never CAs".into(),
            ));
        }
        let wanted = identity.to_string();
        for san in &csr.params.subject_alt_names {
            match san {
                rcgen::SanType::URI(uri) if uri.as_str() == wanted => {}
                other => {
                    return Err(refuse(format!(
                        "requests subject alternative name {other:?}, only {wanted} is allowed"
                    )));
                }
            }
        }
        let alg = csr.public_key.algorithm();
        let key = if alg == &rcgen::PKCS_ECDSA_P256_SHA256 {
            KeyAlgorithm::EcdsaP256
        } else if alg == &rcgen::PKCS_RSA_SHA256 {
            KeyAlgorithm::Rsa { bits: 0 }
        } else {
            return Err(refuse(format!(
                "key type {alg:?} not supported (ECDSA P-256 or RSA with SHA-256)"
            )));
        };
        let (params, not_after) = self.leaf_params(&LeafKind::Workload(identity), key, ttl, now)?;
        let cert = params
            .signed_by(&csr.public_key, &self.issuer)
            .map_err(|e| refuse(format!("signing failed: {e}")))?;
        let mut cert_chain_pem = pem_io::encode(pem_io::CERTIFICATE, cert.der());
        cert_chain_pem.push_str(&self.intermediates_pem);
        Ok(IssuedCertificate {
            cert_chain_pem,
            root_cert_pem: self.distributed_pem.clone(),
            not_after,
        })
    }
}
