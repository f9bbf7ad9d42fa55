//! Issuing leaf certificates: SPIFFE workload identities, serving certificates for
//! DNS names, and intermediates for plugged-in CAs of other clusters.

use crate::authority::{CLOCK_SKEW_BACKDATE, CaMaterial, CertificateAuthority, IssuedIdentity};
use crate::cert::{CertificateInfo, format_time};
use crate::error::{CaError, Result};
use crate::key::{KeyAlgorithm, LeafKey, PrivateKey};
use crate::pem_io;
use crate::spiffe::SpiffeId;
use ring::rand::SecureRandom;
use std::time::{Duration, SystemTime};

/// Default workload certificate lifetime (as Istio).
pub const DEFAULT_WORKLOAD_TTL: Duration = Duration::from_secs(24 * 3600);

const SERIAL_LEN: usize = 16;

/// A random positive serial of exactly 16 octets (RFC 5280 allows up to 20).
pub(crate) fn random_serial(rng: &dyn SecureRandom) -> Result<rcgen::SerialNumber> {
    let mut bytes = [0u8; SERIAL_LEN];
    rng.fill(&mut bytes)
        .map_err(|_| CaError::Crypto("drawing a serial number".into()))?;
    // Clear the sign bit (positive) and keep the first octet non-zero (no leading
    // zero byte to strip), so every serial has the same length.
    bytes[0] = (bytes[0] & 0x7f) | 0x01;
    Ok(rcgen::SerialNumber::from_slice(&bytes))
}

/// The kind of leaf being issued; decides SANs, EKUs and subject.
pub(crate) enum LeafKind<'a> {
    Workload(&'a SpiffeId),
    Server(&'a [String]),
}

impl CertificateAuthority {
    /// `[notBefore, notAfter]` for a leaf issued at `now` for `ttl`: backdated for
    /// clock skew, never before the issuer starts nor after any issuer in the chain ends.
    pub(crate) fn leaf_validity(
        &self,
        subject: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(SystemTime, SystemTime)> {
        let refuse = |reason: String| CaError::Issue {
            subject: subject.to_string(),
            reason,
        };
        if ttl.is_zero() {
            return Err(refuse("TTL must be greater than zero".into()));
        }
        if now >= self.issuer_not_after {
            return Err(refuse(format!(
                "the issuing CA expired at {}",
                format_time(self.issuer_not_after)
            )));
        }
        if now < self.issuer_not_before {
            return Err(refuse(format!(
                "the issuing CA is not valid before {}",
                format_time(self.issuer_not_before)
            )));
        }
        let not_before = (now - CLOCK_SKEW_BACKDATE).max(self.issuer_not_before);
        let not_after = now
            .checked_add(ttl)
            .unwrap_or(self.issuer_not_after)
            .min(self.issuer_not_after);
        // X.509 times have whole seconds; report exactly what the certificate says.
        Ok((whole_seconds(not_before), whole_seconds(not_after)))
    }

    pub(crate) fn leaf_params(
        &self,
        kind: &LeafKind<'_>,
        key: KeyAlgorithm,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<(rcgen::CertificateParams, SystemTime)> {
        let subject = match kind {
            LeafKind::Workload(id) => id.to_string(),
            LeafKind::Server(names) => names.join(","),
        };
        let (not_before, not_after) = self.leaf_validity(&subject, ttl, now)?;
        let mut params = rcgen::CertificateParams::default();
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial(&*self.issuer.key().rng)?);
        params.is_ca = rcgen::IsCa::ExplicitNoCa;
        params.use_authority_key_identifier_extension = true;
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        if matches!(key, KeyAlgorithm::Rsa { .. }) {
            params
                .key_usages
                .push(rcgen::KeyUsagePurpose::KeyEncipherment);
        }
        params.distinguished_name = rcgen::DistinguishedName::new();
        let ia5 = |s: &str| {
            rcgen::string::Ia5String::try_from(s).map_err(|e| CaError::Issue {
                subject: subject.clone(),
                reason: format!("{s:?} is not an IA5 string: {e}"),
            })
        };
        match kind {
            LeafKind::Workload(id) => {
                if id.trust_domain() != &self.trust_domain {
                    return Err(CaError::Issue {
                        subject,
                        reason: format!(
                            "trust domain {} is not this CA's trust domain {}",
                            id.trust_domain(),
                            self.trust_domain
                        ),
                    });
                }
                // Empty subject, so rcgen marks the single URI SAN critical (RFC 5280 4.2.1.6).
                params.subject_alt_names = vec![rcgen::SanType::URI(ia5(&id.to_string())?)];
                params.extended_key_usages = vec![
                    rcgen::ExtendedKeyUsagePurpose::ServerAuth,
                    rcgen::ExtendedKeyUsagePurpose::ClientAuth,
                ];
            }
            LeafKind::Server(names) => {
                let first = names.first().ok_or_else(|| CaError::Issue {
                    subject: "server certificate".into(),
                    reason: "at least one DNS name is required".into(),
                })?;
                for name in names.iter() {
                    check_dns_name(name).map_err(|reason| CaError::Issue {
                        subject: subject.clone(),
                        reason: format!("DNS name {name:?}: {reason}"),
                    })?;
                }
                params
                    .distinguished_name
                    .push(rcgen::DnType::CommonName, first.as_str());
                params.subject_alt_names = names
                    .iter()
                    .map(|n| ia5(n).map(rcgen::SanType::DnsName))
                    .collect::<Result<_>>()?;
                params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
            }
        }
        Ok((params, not_after))
    }

    fn issue_leaf(
        &self,
        kind: LeafKind<'_>,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedIdentity> {
        let leaf_key = LeafKey::generate(&*self.issuer.key().rng)?;
        let (params, not_after) = self.leaf_params(&kind, KeyAlgorithm::EcdsaP256, ttl, now)?;
        let cert = params
            .signed_by(&leaf_key, &self.issuer)
            .map_err(|e| CaError::Issue {
                subject: match kind {
                    LeafKind::Workload(id) => id.to_string(),
                    LeafKind::Server(n) => n.join(","),
                },
                reason: e.to_string(),
            })?;
        let mut cert_chain_pem = pem_io::encode(pem_io::CERTIFICATE, cert.der());
        cert_chain_pem.push_str(&self.intermediates_pem);
        Ok(IssuedIdentity {
            cert_chain_pem,
            key_pem: leaf_key.pem,
            root_cert_pem: self.distributed_pem.clone(),
            not_after,
        })
    }

    /// Issues an X509-SVID for `id`: one URI SAN, CA:false, digitalSignature, EKU
    /// serverAuth+clientAuth, a fresh ECDSA P-256 key, valid from `now` (backdated a few
    /// minutes) for `ttl`, cut to the issuer's expiry. `id` must be in this CA's trust domain.
    pub fn issue_workload(
        &self,
        id: &SpiffeId,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedIdentity> {
        self.issue_leaf(LeafKind::Workload(id), ttl, now)
    }

    /// [`CertificateAuthority::issue_workload`] for `spiffe://<td>/ns/<namespace>/sa/<sa>`.
    pub fn issue_for_service_account(
        &self,
        namespace: &str,
        service_account: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedIdentity> {
        let id = SpiffeId::for_service_account(&self.trust_domain, namespace, service_account)?;
        self.issue_workload(&id, ttl, now)
    }

    /// Issues a serving certificate (EKU serverAuth) for DNS names, e.g.
    /// `trellis-webhook.<ns>.svc` for the admission webhook or the xDS server's name.
    pub fn issue_server_cert(
        &self,
        dns_names: &[String],
        ttl: Duration,
        now: SystemTime,
    ) -> Result<IssuedIdentity> {
        self.issue_leaf(LeafKind::Server(dns_names), ttl, now)
    }

    /// Issues an intermediate CA (pathlen 0) under this CA, returned in `cacerts` layout
    /// so another cluster or a test can run a plugged-in CA with it.
    pub fn issue_intermediate(
        &self,
        key: KeyAlgorithm,
        common_name: &str,
        ttl: Duration,
        now: SystemTime,
    ) -> Result<CaMaterial> {
        let (not_before, not_after) = self.leaf_validity(common_name, ttl, now)?;
        let rng = &*self.issuer.key().rng;
        let child_key = PrivateKey::generate(key, rng)?;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, self.trust_domain.as_str());
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, common_name);
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(0));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before.into();
        params.not_after = not_after.into();
        params.serial_number = Some(random_serial(rng)?);
        let public = rcgen::SubjectPublicKeyInfo::from_der(&spki_der(&child_key)).map_err(|e| {
            CaError::Issue {
                subject: common_name.to_string(),
                reason: e.to_string(),
            }
        })?;
        let cert = params
            .signed_by(&public, &self.issuer)
            .map_err(|e| CaError::Issue {
                subject: common_name.to_string(),
                reason: e.to_string(),
            })?;
        let ca_cert_pem = pem_io::encode(pem_io::CERTIFICATE, cert.der());
        let mut cert_chain_pem = ca_cert_pem.clone();
        cert_chain_pem.extend(self.chain.iter().map(CertificateInfo::to_pem));
        Ok(CaMaterial {
            ca_cert_pem,
            ca_key_pem: child_key.to_pem(),
            cert_chain_pem,
            root_cert_pem: self.own_roots.to_pem(),
        })
    }
}

fn whole_seconds(t: SystemTime) -> SystemTime {
    match t.duration_since(std::time::UNIX_EPOCH) {
        Ok(d) => std::time::UNIX_EPOCH + Duration::from_secs(d.as_secs()),
        Err(_) => t,
    }
}

/// SubjectPublicKeyInfo DER of a key, via rcgen's encoder.
fn spki_der(key: &PrivateKey) -> Vec<u8> {
    struct Public<'a>(&'a PrivateKey);
    impl rcgen::PublicKeyData for Public<'_> {
        fn der_bytes(&self) -> &[u8] {
            self.0.public_key_raw()
        }
        fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
            match self.0.algorithm() {
                KeyAlgorithm::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
                KeyAlgorithm::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
            }
        }
    }
    rcgen::PublicKeyData::subject_public_key_info(&Public(key))
}

/// RFC 1123 host name, optionally with one leading `*.` label.
pub(crate) fn check_dns_name(name: &str) -> std::result::Result<(), String> {
    let body = name.strip_prefix("*.").unwrap_or(name);
    if body.is_empty() || name.len() > 253 {
        return Err("must be 1..=253 characters".into());
    }
    for label in body.split('.') {
        if label.is_empty() || label.len() > 63 {
            return Err(format!("label {label:?} must be 1..=63 characters"));
        }
        if label.starts_with('-') || label.ends_with('-') {
            return Err(format!("label {label:?} must not start or end with '-'"));
        }
        if let Some(c) = label
            .chars()
            .find(|c| !(c.is_ascii_lowercase() || c.is_ascii_digit() || *c == '-'))
        {
            return Err(format!(
                "character {c:?} not allowed (lowercase letters, digits, '-')"
            ));
        }
    }
    Ok(())
}
