//! Trust bundles: the set of roots a workload trusts (several during rotation),
//! and path validation of a presented chain against them.

use crate::cert::CertificateInfo;
use crate::error::{CaError, Result};
use std::time::SystemTime;

/// Longest chain accepted, leaf included; stops loops in hostile input.
const MAX_CHAIN_DEPTH: usize = 8;

/// One or more trusted root certificates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TrustBundle {
    roots: Vec<CertificateInfo>,
}

impl TrustBundle {
    /// A bundle of the given roots (duplicates by fingerprint are dropped).
    pub fn new(roots: impl IntoIterator<Item = CertificateInfo>) -> Self {
        let mut out: Vec<CertificateInfo> = Vec::new();
        for r in roots {
            if !out
                .iter()
                .any(|o| o.sha256_fingerprint == r.sha256_fingerprint)
            {
                out.push(r);
            }
        }
        Self { roots: out }
    }

    /// Parses a `root-cert.pem`-style bundle.
    pub fn from_pem(source_name: &str, text: &str) -> Result<Self> {
        Ok(Self::new(CertificateInfo::all_from_pem(source_name, text)?))
    }

    /// The roots.
    pub fn roots(&self) -> &[CertificateInfo] {
        &self.roots
    }

    /// All roots as concatenated PEM.
    pub fn to_pem(&self) -> String {
        self.roots.iter().map(CertificateInfo::to_pem).collect()
    }

    /// Whether a root with this fingerprint is in the bundle.
    pub fn contains(&self, root: &CertificateInfo) -> bool {
        self.roots
            .iter()
            .any(|r| r.sha256_fingerprint == root.sha256_fingerprint)
    }

    /// Validates `chain[0]` (the leaf) through the intermediates in `chain[1..]` up to a
    /// root of this bundle: names chain, signatures verify, every certificate is valid
    /// at `now`, and every issuer is a CA allowed to sign certificates. Returns the root.
    pub fn verify_chain(
        &self,
        chain: &[CertificateInfo],
        now: SystemTime,
    ) -> Result<&CertificateInfo> {
        self.verify(chain, Some(now))
    }

    /// Like [`TrustBundle::verify_chain`] without validity periods: does this chain
    /// lead to a root of the bundle at all?
    pub fn verify_chain_ignoring_time(
        &self,
        chain: &[CertificateInfo],
    ) -> Result<&CertificateInfo> {
        self.verify(chain, None)
    }

    fn verify(
        &self,
        chain: &[CertificateInfo],
        now: Option<SystemTime>,
    ) -> Result<&CertificateInfo> {
        let leaf = chain.first().ok_or_else(|| CaError::Untrusted {
            subject: "(none)".into(),
            reason: "empty certificate chain".into(),
        })?;
        let untrusted = |reason: String| CaError::Untrusted {
            subject: leaf.display_name(),
            reason,
        };
        let mut current = leaf;
        for _ in 0..MAX_CHAIN_DEPTH {
            if let Some(now) = now {
                current
                    .check_validity("chain", now)
                    .map_err(|e| untrusted(e.to_string()))?;
            }
            if let Some(root) = self
                .roots
                .iter()
                .find(|r| r.sha256_fingerprint == current.sha256_fingerprint)
            {
                return Ok(root);
            }
            if let Some(root) = self.roots.iter().find(|r| current.is_signed_by(r)) {
                if let Some(now) = now {
                    root.check_validity("root", now)
                        .map_err(|e| untrusted(e.to_string()))?;
                }
                if !root.is_ca || !root.key_cert_sign {
                    return Err(untrusted(format!(
                        "root {} is not a CA",
                        root.display_name()
                    )));
                }
                return Ok(root);
            }
            let next = chain[1..]
                .iter()
                .find(|c| c.sha256_fingerprint != current.sha256_fingerprint && current.is_signed_by(c))
                .ok_or_else(|| {
                    untrusted(format!(
                        "no root in the bundle and no intermediate in the chain signed {} (issuer {})",
                        current.display_name(),
                        current.issuer
                    ))
                })?;
            if !next.is_ca || !next.key_cert_sign {
                return Err(untrusted(format!(
                    "intermediate {} is not a CA allowed to sign certificates",
                    next.display_name()
                )));
            }
            current = next;
        }
        Err(untrusted(format!(
            "chain longer than {MAX_CHAIN_DEPTH} certificates"
        )))
    }

    /// Parses a chain PEM and verifies it (see [`TrustBundle::verify_chain`]).
    pub fn verify_chain_pem(
        &self,
        source_name: &str,
        chain_pem: &str,
        now: SystemTime,
    ) -> Result<&CertificateInfo> {
        let chain = CertificateInfo::all_from_pem(source_name, chain_pem)?;
        self.verify_chain(&chain, now)
    }
}
