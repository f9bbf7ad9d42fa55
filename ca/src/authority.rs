//! The certificate authority: a signing certificate + key, the chain above it, and
//! the trust bundle handed to workloads. Created self-signed or loaded from Istio's
//! plugged-in `cacerts` layout; persisted in that same layout.

use crate::bundle::TrustBundle;
use crate::cert::CertificateInfo;
use crate::error::{CaError, Result};
use crate::key::{CaSigner, KeyAlgorithm, PrivateKey, Rng, SecretPem};
use crate::spiffe::TrustDomain;
use std::time::{Duration, SystemTime};

/// Default lifetime of a self-signed root: ten years.
pub const DEFAULT_ROOT_TTL: Duration = Duration::from_secs(10 * 365 * 24 * 3600);

/// How far `notBefore` is set back from `now`, so peers with slow clocks accept
/// a certificate the moment it is issued.
pub const CLOCK_SKEW_BACKDATE: Duration = Duration::from_secs(5 * 60);

/// What a new self-signed root looks like.
#[derive(Clone, Debug)]
pub struct RootOptions {
    /// The trust domain every workload id of this CA belongs to.
    pub trust_domain: TrustDomain,
    /// Root key type (ECDSA P-256 by default).
    pub key: KeyAlgorithm,
    /// Root lifetime (ten years by default).
    pub ttl: Duration,
}

impl RootOptions {
    /// ECDSA P-256, ten years.
    pub fn new(trust_domain: TrustDomain) -> Self {
        Self {
            trust_domain,
            key: KeyAlgorithm::EcdsaP256,
            ttl: DEFAULT_ROOT_TTL,
        }
    }
}

/// A CA's own material in Istio's `cacerts` layout (the file names are the field names).
///
/// For a self-signed CA, `ca_cert_pem`, `cert_chain_pem` and `root_cert_pem` are the root.
#[derive(Clone, Debug)]
pub struct CaMaterial {
    /// `ca-cert.pem`: the certificate the CA signs with.
    pub ca_cert_pem: String,
    /// `ca-key.pem`: its private key (PKCS#8).
    pub ca_key_pem: SecretPem,
    /// `cert-chain.pem`: `ca-cert.pem` followed by every certificate up to the root.
    pub cert_chain_pem: String,
    /// `root-cert.pem`: the trusted root(s).
    pub root_cert_pem: String,
}

/// The PEM texts of a plugged-in CA, as read from the four `cacerts` files.
#[derive(Clone, Copy, Debug)]
pub struct CaFiles<'a> {
    /// Contents of `ca-cert.pem`.
    pub ca_cert: &'a str,
    /// Contents of `ca-key.pem`.
    pub ca_key: &'a str,
    /// Contents of `cert-chain.pem` (may be empty: then `ca-cert.pem` alone).
    pub cert_chain: &'a str,
    /// Contents of `root-cert.pem`.
    pub root_cert: &'a str,
}

/// A workload's or server's new identity: the three files Envoy needs.
#[derive(Clone, Debug)]
pub struct IssuedIdentity {
    /// `cert-chain.pem`: the leaf followed by every intermediate (no self-signed root).
    pub cert_chain_pem: String,
    /// `key.pem`: the leaf's private key (PKCS#8 ECDSA P-256).
    pub key_pem: SecretPem,
    /// `root-cert.pem`: the trust bundle to validate peers with.
    pub root_cert_pem: String,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
}

/// A certificate signed from a CSR (the requester keeps its key).
#[derive(Clone, Debug)]
pub struct IssuedCertificate {
    /// The leaf followed by every intermediate.
    pub cert_chain_pem: String,
    /// The trust bundle.
    pub root_cert_pem: String,
    /// The leaf's `notAfter`.
    pub not_after: SystemTime,
}

/// The mesh certificate authority. Pure: time and randomness come from the caller.
///
/// ```no_run
/// use std::{sync::Arc, time::{Duration, SystemTime}};
/// use trellis_ca::{CertificateAuthority, RootOptions, SpiffeId, SystemRandom, TrustDomain};
/// let td = TrustDomain::new("cluster.local")?;
/// let rng = Arc::new(SystemRandom::new());
/// let ca = CertificateAuthority::new_self_signed(&RootOptions::new(td.clone()), SystemTime::now(), rng)?;
/// let id = SpiffeId::for_service_account(&td, "default", "web")?;
/// let issued = ca.issue_workload(&id, Duration::from_secs(24 * 3600), SystemTime::now())?;
/// // write issued.cert_chain_pem, issued.key_pem.expose(), issued.root_cert_pem
/// # Ok::<(), trellis_ca::CaError>(())
/// ```
pub struct CertificateAuthority {
    pub(crate) trust_domain: TrustDomain,
    pub(crate) issuer: rcgen::Issuer<'static, CaSigner>,
    pub(crate) signing_cert: CertificateInfo,
    /// `cert-chain.pem` as given: signing certificate first.
    pub(crate) chain: Vec<CertificateInfo>,
    /// Intermediates appended to every leaf: the chain minus trusted roots.
    pub(crate) intermediates_pem: String,
    /// The earliest `notAfter` among the signing certificate and intermediates.
    pub(crate) issuer_not_after: SystemTime,
    pub(crate) issuer_not_before: SystemTime,
    /// The root the signing certificate chains to.
    pub(crate) root: CertificateInfo,
    pub(crate) own_roots: TrustBundle,
    /// What workloads are told to trust: own roots plus any added during rotation.
    pub(crate) distributed: TrustBundle,
    pub(crate) distributed_pem: String,
}

impl std::fmt::Debug for CertificateAuthority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAuthority")
            .field("trust_domain", &self.trust_domain)
            .field("signing_cert", &self.signing_cert.display_name())
            .field("key", &"[redacted]")
            .finish()
    }
}

impl CertificateAuthority {
    /// Creates a self-signed root: CA:true with pathlen 1 (room for one plugged-in
    /// intermediate), keyCertSign + cRLSign, SKI, random serial, `notBefore` backdated.
    pub fn new_self_signed(options: &RootOptions, now: SystemTime, rng: Rng) -> Result<Self> {
        let key = PrivateKey::generate(options.key, &*rng)?;
        let td = &options.trust_domain;
        let mut params = rcgen::CertificateParams::default();
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::OrganizationName, td.as_str());
        let serial = crate::issue::random_serial(&*rng)?;
        // A distinct name per root keeps two roots apart in a rotation bundle and in logs.
        let tag: String = serial.to_bytes()[..4]
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, format!("Trellis root CA {tag}"));
        params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Constrained(1));
        params.key_usages = vec![
            rcgen::KeyUsagePurpose::KeyCertSign,
            rcgen::KeyUsagePurpose::CrlSign,
            rcgen::KeyUsagePurpose::DigitalSignature,
        ];
        params.not_before = (now - CLOCK_SKEW_BACKDATE).into();
        params.not_after = (now + options.ttl).into();
        params.serial_number = Some(serial);
        let signer = CaSigner { key, rng };
        let cert = params.self_signed(&signer).map_err(|e| CaError::Issue {
            subject: format!("root CA of {td}"),
            reason: e.to_string(),
        })?;
        let info = CertificateInfo::from_der("generated root", cert.der())?;
        let issuer = rcgen::Issuer::new(params, signer);
        Ok(Self::assemble(
            td.clone(),
            issuer,
            info.clone(),
            vec![info.clone()],
            TrustBundle::new([info]),
        ))
    }

    /// Loads and validates a CA from Istio's `cacerts` files (also the format
    /// [`CertificateAuthority::to_material`] writes). Each problem is reported with the
    /// file it is in: unparsable PEM, key not matching `ca-cert.pem`, a certificate that
    /// is not a CA, a chain that does not verify to `root-cert.pem`, an issuer expired
    /// or not yet valid at `now`, an unsupported or encrypted key.
    pub fn from_cacerts(
        trust_domain: TrustDomain,
        files: CaFiles<'_>,
        now: SystemTime,
        rng: Rng,
    ) -> Result<Self> {
        let ca_cert = CertificateInfo::all_from_pem("ca-cert.pem", files.ca_cert)?
            .into_iter()
            .next()
            .ok_or_else(|| CaError::Pem {
                source_name: "ca-cert.pem".into(),
                reason: "no certificate".into(),
            })?;
        if !ca_cert.is_ca || !ca_cert.key_cert_sign {
            return Err(ca_cert.error(
                "ca-cert.pem",
                "is not a CA certificate (needs basicConstraints CA:true and keyUsage keyCertSign)",
            ));
        }
        ca_cert.check_validity("ca-cert.pem", now)?;
        if ca_cert.key_algorithm.is_none() {
            return Err(ca_cert.error(
                "ca-cert.pem",
                "unsupported key type (only ECDSA P-256 and RSA are supported)",
            ));
        }
        let key = PrivateKey::from_pem("ca-key.pem", files.ca_key, &*rng)?;
        if key.public_key_raw() != ca_cert.public_key_raw.as_slice() {
            return Err(CaError::Key {
                source_name: "ca-key.pem".into(),
                reason: format!(
                    "does not match the certificate in ca-cert.pem ({})",
                    ca_cert.display_name()
                ),
            });
        }
        let roots = TrustBundle::from_pem("root-cert.pem", files.root_cert)?;
        for root in roots.roots() {
            if !root.is_ca {
                return Err(root.error("root-cert.pem", "is not a CA certificate"));
            }
            root.check_validity("root-cert.pem", now)?;
        }
        let chain = if files.cert_chain.trim().is_empty() {
            vec![ca_cert.clone()]
        } else {
            CertificateInfo::all_from_pem("cert-chain.pem", files.cert_chain)?
        };
        if chain[0].sha256_fingerprint != ca_cert.sha256_fingerprint {
            return Err(chain[0].error(
                "cert-chain.pem",
                "the first certificate must be the one in ca-cert.pem",
            ));
        }
        roots.verify_chain(&chain, now).map_err(|e| {
            ca_cert.error(
                "cert-chain.pem",
                format!("does not verify to root-cert.pem: {e}"),
            )
        })?;
        let signer = CaSigner { key, rng };
        let issuer = rcgen::Issuer::from_ca_cert_der(
            &rustls_pki_types::CertificateDer::from(ca_cert.der.as_slice()),
            signer,
        )
        .map_err(|e| ca_cert.error("ca-cert.pem", format!("cannot be used as issuer: {e}")))?;
        Ok(Self::assemble(trust_domain, issuer, ca_cert, chain, roots))
    }

    fn assemble(
        trust_domain: TrustDomain,
        issuer: rcgen::Issuer<'static, CaSigner>,
        signing_cert: CertificateInfo,
        chain: Vec<CertificateInfo>,
        own_roots: TrustBundle,
    ) -> Self {
        let below_root: Vec<&CertificateInfo> =
            chain.iter().filter(|c| !own_roots.contains(c)).collect();
        let intermediates_pem = below_root.iter().map(|c| c.to_pem()).collect();
        // The root this chain leads to (validated by the caller); other roots bundled in
        // root-cert.pem do not limit how long leaves may live.
        let root = own_roots
            .verify_chain_ignoring_time(&chain)
            .cloned()
            .unwrap_or_else(|_| signing_cert.clone());
        let issuer_not_after = below_root
            .iter()
            .map(|c| c.not_after)
            .chain([root.not_after])
            .min()
            .unwrap_or(signing_cert.not_after);
        let issuer_not_before = signing_cert.not_before;
        let distributed_pem = own_roots.to_pem();
        Self {
            trust_domain,
            issuer,
            signing_cert,
            chain,
            intermediates_pem,
            issuer_not_after,
            issuer_not_before,
            root,
            distributed: own_roots.clone(),
            own_roots,
            distributed_pem,
        }
    }

    /// Adds roots to the bundle handed to workloads (root rotation overlap). The CA's
    /// own roots always stay in it.
    pub fn set_distributed_roots(&mut self, extra: &TrustBundle) {
        let all = self.own_roots.roots().iter().chain(extra.roots()).cloned();
        self.distributed = TrustBundle::new(all);
        self.distributed_pem = self.distributed.to_pem();
    }

    /// The CA's material in `cacerts` layout, for persisting; load it back with
    /// [`CertificateAuthority::from_cacerts`].
    pub fn to_material(&self) -> CaMaterial {
        CaMaterial {
            ca_cert_pem: self.signing_cert.to_pem(),
            ca_key_pem: self.issuer.key().key.to_pem(),
            cert_chain_pem: self.chain.iter().map(CertificateInfo::to_pem).collect(),
            root_cert_pem: self.own_roots.to_pem(),
        }
    }

    /// The trust domain.
    pub fn trust_domain(&self) -> &TrustDomain {
        &self.trust_domain
    }

    /// The certificate the CA signs with.
    pub fn signing_certificate(&self) -> &CertificateInfo {
        &self.signing_cert
    }

    /// The root the signing certificate chains to (itself when self-signed).
    pub fn root(&self) -> &CertificateInfo {
        &self.root
    }

    /// The CA's own roots (`root-cert.pem`).
    pub fn own_roots(&self) -> &TrustBundle {
        &self.own_roots
    }

    /// The bundle given to workloads (own roots plus rotation extras).
    pub fn trust_bundle(&self) -> &TrustBundle {
        &self.distributed
    }

    /// Whether the CA signs with a self-signed root (rather than a plugged-in intermediate).
    pub fn is_self_signed(&self) -> bool {
        self.signing_cert.is_self_issued() && self.own_roots.contains(&self.signing_cert)
    }

    /// The key type of the CA's signing key.
    pub fn key_algorithm(&self) -> KeyAlgorithm {
        self.issuer.key().key.algorithm()
    }
}
