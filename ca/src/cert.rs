//! A parsed certificate, reduced to the facts the mesh acts on, owned (no borrows
//! into the DER) so it can be kept in indexes and bundles.

use crate::error::{CaError, Result};
use crate::key::KeyAlgorithm;
use crate::pem_io;
use crate::spiffe::SpiffeId;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use x509_parser::prelude::*;

/// The facts of one X.509 certificate.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CertificateInfo {
    /// The DER encoding.
    pub der: Vec<u8>,
    /// Subject in RFC 4514 form (empty for SPIFFE workload certificates).
    pub subject: String,
    /// Issuer in RFC 4514 form.
    pub issuer: String,
    /// Serial number, lowercase hex with `:` separators.
    pub serial: String,
    /// Start of validity.
    pub not_before: SystemTime,
    /// End of validity.
    pub not_after: SystemTime,
    /// All URI SANs.
    pub uri_sans: Vec<String>,
    /// All DNS SANs.
    pub dns_sans: Vec<String>,
    /// basicConstraints CA flag.
    pub is_ca: bool,
    /// The subject key type, when it is one the CA supports.
    pub key_algorithm: Option<KeyAlgorithm>,
    /// SHA-256 over the DER.
    pub sha256_fingerprint: [u8; 32],
    pub(crate) subject_raw: Vec<u8>,
    pub(crate) issuer_raw: Vec<u8>,
    pub(crate) public_key_raw: Vec<u8>,
    pub(crate) key_cert_sign: bool,
}

fn asn1_to_system_time(t: ASN1Time) -> SystemTime {
    let secs = t.timestamp();
    if secs >= 0 {
        UNIX_EPOCH + Duration::from_secs(secs as u64)
    } else {
        UNIX_EPOCH - Duration::from_secs(secs.unsigned_abs())
    }
}

impl CertificateInfo {
    /// Parses one DER certificate; `source_name` (a file name, a Secret key) goes in errors.
    pub fn from_der(source_name: &str, der: &[u8]) -> Result<Self> {
        let (rest, cert) = X509Certificate::from_der(der).map_err(|e| CaError::Certificate {
            source_name: source_name.to_string(),
            subject: "(unparsed)".into(),
            reason: format!("not a valid X.509 certificate: {e}"),
        })?;
        if !rest.is_empty() {
            return Err(CaError::Certificate {
                source_name: source_name.to_string(),
                subject: "(unparsed)".into(),
                reason: format!("{} trailing bytes after the certificate", rest.len()),
            });
        }
        let mut uri_sans = Vec::new();
        let mut dns_sans = Vec::new();
        if let Ok(Some(san)) = cert.subject_alternative_name() {
            for name in &san.value.general_names {
                match name {
                    GeneralName::URI(u) => uri_sans.push(u.to_string()),
                    GeneralName::DNSName(d) => dns_sans.push(d.to_string()),
                    _ => {}
                }
            }
        }
        let is_ca = matches!(cert.basic_constraints(), Ok(Some(bc)) if bc.value.ca);
        let key_cert_sign = match cert.key_usage() {
            Ok(Some(ku)) => ku.value.key_cert_sign(),
            // No keyUsage extension means no restriction (RFC 5280 4.2.1.3).
            _ => true,
        };
        let spki = &cert.tbs_certificate.subject_pki;
        let key_algorithm = match spki.parsed() {
            Ok(x509_parser::public_key::PublicKey::EC(p))
                if spki
                    .algorithm
                    .parameters
                    .as_ref()
                    .and_then(|p| p.as_oid().ok())
                    == Some(x509_parser::oid_registry::OID_EC_P256)
                    && p.key_size() == 256 =>
            {
                Some(KeyAlgorithm::EcdsaP256)
            }
            Ok(x509_parser::public_key::PublicKey::RSA(r)) => Some(KeyAlgorithm::Rsa {
                bits: r.key_size() as u32,
            }),
            _ => None,
        };
        let serial = cert
            .raw_serial()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        let fingerprint = ring::digest::digest(&ring::digest::SHA256, der);
        let mut sha256_fingerprint = [0u8; 32];
        sha256_fingerprint.copy_from_slice(fingerprint.as_ref());
        Ok(Self {
            der: der.to_vec(),
            subject: cert.subject().to_string(),
            issuer: cert.issuer().to_string(),
            serial,
            not_before: asn1_to_system_time(cert.validity().not_before),
            not_after: asn1_to_system_time(cert.validity().not_after),
            uri_sans,
            dns_sans,
            is_ca,
            key_algorithm,
            sha256_fingerprint,
            subject_raw: cert.subject().as_raw().to_vec(),
            issuer_raw: cert.issuer().as_raw().to_vec(),
            public_key_raw: spki.subject_public_key.data.to_vec(),
            key_cert_sign,
        })
    }

    /// Parses every certificate of a PEM text.
    pub fn all_from_pem(source_name: &str, text: &str) -> Result<Vec<Self>> {
        pem_io::certificate_ders(source_name, text)?
            .iter()
            .map(|der| Self::from_der(source_name, der))
            .collect()
    }

    /// The SPIFFE id, when the certificate carries exactly one URI SAN and it is valid.
    pub fn spiffe_id(&self) -> Option<SpiffeId> {
        match self.uri_sans.as_slice() {
            [one] => SpiffeId::parse(one).ok(),
            _ => None,
        }
    }

    /// Who this certificate is about, for messages: SPIFFE id, else DNS name, else subject.
    pub fn display_name(&self) -> String {
        if let Some(uri) = self.uri_sans.first() {
            uri.clone()
        } else if let Some(dns) = self.dns_sans.first() {
            dns.clone()
        } else if self.subject.is_empty() {
            format!("serial {}", self.serial)
        } else {
            self.subject.clone()
        }
    }

    /// The fingerprint as uppercase hex pairs separated by `:` (openssl's format).
    pub fn fingerprint_hex(&self) -> String {
        self.sha256_fingerprint
            .iter()
            .map(|b| format!("{b:02X}"))
            .collect::<Vec<_>>()
            .join(":")
    }

    /// Whether the certificate is self-issued (subject equals issuer).
    pub fn is_self_issued(&self) -> bool {
        self.subject_raw == self.issuer_raw
    }

    /// The certificate as one PEM block.
    pub fn to_pem(&self) -> String {
        pem_io::encode(pem_io::CERTIFICATE, &self.der)
    }

    /// Whether `issuer`'s key signed this certificate.
    pub(crate) fn is_signed_by(&self, issuer: &CertificateInfo) -> bool {
        if self.issuer_raw != issuer.subject_raw {
            return false;
        }
        let (Ok((_, me)), Ok((_, parent))) = (
            X509Certificate::from_der(&self.der),
            X509Certificate::from_der(&issuer.der),
        ) else {
            return false;
        };
        me.verify_signature(Some(parent.public_key())).is_ok()
    }

    /// An error about this certificate.
    pub(crate) fn error(&self, source_name: &str, reason: impl Into<String>) -> CaError {
        CaError::Certificate {
            source_name: source_name.to_string(),
            subject: self.display_name(),
            reason: reason.into(),
        }
    }

    /// Fails unless `now` is within the validity period.
    pub(crate) fn check_validity(&self, source_name: &str, now: SystemTime) -> Result<()> {
        if now < self.not_before {
            return Err(self.error(
                source_name,
                format!("not valid before {}", format_time(self.not_before)),
            ));
        }
        if now > self.not_after {
            return Err(self.error(
                source_name,
                format!("expired at {}", format_time(self.not_after)),
            ));
        }
        Ok(())
    }
}

/// RFC 3339 UTC rendering of a time, for messages and the CLI.
pub fn format_time(t: SystemTime) -> String {
    // Certificates carry whole seconds; so do messages.
    let odt = ::time::OffsetDateTime::from(t);
    let odt = odt.replace_nanosecond(0).unwrap_or(odt);
    odt.format(&::time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| format!("{odt}"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn garbage_der_is_an_error_naming_the_source() {
        let err = CertificateInfo::from_der("leaf.pem", &[0x30, 0x03, 0x02, 0x01]).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("leaf.pem: certificate (unparsed): not a valid X.509")
        );
    }

    proptest! {
        #[test]
        fn der_parser_never_panics(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = CertificateInfo::from_der("fuzz", &bytes);
        }

        #[test]
        fn der_parser_never_panics_on_sequences(body in proptest::collection::vec(any::<u8>(), 0..120)) {
            let mut der = vec![0x30, 0x81, body.len() as u8];
            der.extend_from_slice(&body);
            let _ = CertificateInfo::from_der("fuzz", &der);
        }
    }
}
