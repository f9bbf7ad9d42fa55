//! When a certificate must be renewed. Pure: the answer depends only on the
//! certificate, `now`, the policy and what the caller wants the identity to be.

use crate::bundle::TrustBundle;
use crate::cert::CertificateInfo;
use crate::key::KeyAlgorithm;
use crate::spiffe::SpiffeId;
use std::time::{Duration, SystemTime};

/// When to renew, as fractions of a certificate's lifetime.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RenewalPolicy {
    /// Renew once this fraction of the lifetime has elapsed (Istio's default: 0.5).
    pub ratio: f64,
    /// Up to this fraction of the lifetime is added per identity, deterministically,
    /// so certificates issued together do not all renew in the same second.
    pub jitter_ratio: f64,
}

impl Default for RenewalPolicy {
    fn default() -> Self {
        Self {
            ratio: 0.5,
            jitter_ratio: 0.1,
        }
    }
}

impl RenewalPolicy {
    /// Whether a certificate asked for `ttl` comes due for renewal after its
    /// issuance under this policy: certificates are backdated by
    /// [`CLOCK_SKEW_BACKDATE`](crate::CLOCK_SKEW_BACKDATE), which counts in
    /// their lifetime, so a short one would be due at once and renew in a loop.
    pub fn renews_after_issuance(&self, ttl: Duration) -> bool {
        let backdate = crate::CLOCK_SKEW_BACKDATE.as_secs_f64();
        (ttl.as_secs_f64() + backdate) * self.ratio - backdate >= 1.0
    }
}

/// What the caller wants the identity to look like now.
#[derive(Clone, Copy, Debug)]
pub struct WantedIdentity<'a> {
    /// The SPIFFE id the certificate must carry.
    pub spiffe_id: &'a SpiffeId,
    /// The key type the certificate must have.
    pub key_algorithm: KeyAlgorithm,
    /// The current trust bundle; a chain to a root outside it must be replaced.
    pub bundle: &'a TrustBundle,
}

/// Why a certificate must be renewed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RenewalReason {
    /// The renewal time (lifetime ratio plus jitter) has passed.
    LifetimeElapsed { renewal_time: SystemTime },
    /// The chain no longer leads to a root in the bundle.
    UntrustedRoot { detail: String },
    /// The certificate carries another SPIFFE id (or none).
    IdentityChanged { have: Option<String>, want: String },
    /// The certificate's key type is not the wanted one.
    KeyTypeChanged {
        have: Option<KeyAlgorithm>,
        want: KeyAlgorithm,
    },
}

/// A number in `[0, 1)` derived from the identity, stable across processes.
fn identity_fraction(name: &str) -> f64 {
    let digest = ring::digest::digest(&ring::digest::SHA256, name.as_bytes());
    let mut first = [0u8; 8];
    first.copy_from_slice(&digest.as_ref()[..8]);
    (u64::from_be_bytes(first) >> 11) as f64 / (1u64 << 53) as f64
}

/// The moment `leaf` should be renewed: `notBefore + lifetime × (ratio + jitter)`,
/// where jitter is in `[0, jitter_ratio)` and fixed per identity; never after `notAfter`.
pub fn renewal_time(leaf: &CertificateInfo, policy: &RenewalPolicy) -> SystemTime {
    let lifetime = leaf
        .not_after
        .duration_since(leaf.not_before)
        .unwrap_or(Duration::ZERO);
    let ratio = policy.ratio.clamp(0.0, 1.0);
    let jitter = policy.jitter_ratio.clamp(0.0, 1.0) * identity_fraction(&leaf.display_name());
    let fraction = (ratio + jitter).min(1.0);
    leaf.not_before + lifetime.mul_f64(fraction)
}

/// Whether the chain (`chain[0]` is the leaf) must be renewed at `now`, and why.
/// Monotonic in time: once due, due at every later `now`.
pub fn renewal_due(
    chain: &[CertificateInfo],
    now: SystemTime,
    policy: &RenewalPolicy,
    wanted: &WantedIdentity<'_>,
) -> Option<RenewalReason> {
    let Some(leaf) = chain.first() else {
        return Some(RenewalReason::UntrustedRoot {
            detail: "empty certificate chain".into(),
        });
    };
    let want = wanted.spiffe_id.to_string();
    let have = leaf.spiffe_id().map(|id| id.to_string());
    if have.as_deref() != Some(want.as_str()) {
        return Some(RenewalReason::IdentityChanged { have, want });
    }
    if leaf.key_algorithm != Some(wanted.key_algorithm) {
        return Some(RenewalReason::KeyTypeChanged {
            have: leaf.key_algorithm,
            want: wanted.key_algorithm,
        });
    }
    // Checked without a clock so that the answer only changes with `now` through the
    // renewal time (monotonicity); expiry is covered because renewal_time <= notAfter.
    if let Err(e) = wanted.bundle.verify_chain_ignoring_time(chain) {
        return Some(RenewalReason::UntrustedRoot {
            detail: e.to_string(),
        });
    }
    let at = renewal_time(leaf, policy);
    (now >= at).then_some(RenewalReason::LifetimeElapsed { renewal_time: at })
}
