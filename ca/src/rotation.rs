//! Root rotation as explicit states. The caller (runtime, operator) owns the CAs and
//! the live certificates; this machine decides which roots are trusted and when the
//! old one may go:
//!
//! ```text
//! Steady{current} --begin(new)--> Overlap{previous, current=new}
//! Overlap --observe(no live cert on previous)--> Draining{since}
//! Draining --observe(a live cert on previous again)--> Overlap
//! Draining --finish(now >= since + grace)--> Steady{current}
//! Overlap | Draining --abort--> Steady{previous}
//! ```
//! During Overlap and Draining the trust bundle holds both roots, so a workload
//! with an old-root certificate and one with a new-root certificate accept each other.

use crate::bundle::TrustBundle;
use crate::cert::{CertificateInfo, format_time};
use crate::error::{CaError, Result};
use std::time::{Duration, SystemTime};

/// Where a root rotation stands.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RootRotation {
    /// One root, trusted and signing.
    Steady { current: CertificateInfo },
    /// Both roots trusted; workloads are being reissued under `current`.
    Overlap {
        previous: CertificateInfo,
        current: CertificateInfo,
        since: SystemTime,
    },
    /// No live certificate depends on `previous` since `since`; waiting out the grace period.
    Draining {
        previous: CertificateInfo,
        current: CertificateInfo,
        since: SystemTime,
    },
}

impl RootRotation {
    /// A steady state with one root.
    pub fn new(root: CertificateInfo) -> Self {
        Self::Steady { current: root }
    }

    /// A short name of the phase, for status and errors.
    pub fn phase(&self) -> &'static str {
        match self {
            Self::Steady { .. } => "steady",
            Self::Overlap { .. } => "overlap",
            Self::Draining { .. } => "draining",
        }
    }

    /// The root new certificates are issued under.
    pub fn signing_root(&self) -> &CertificateInfo {
        match self {
            Self::Steady { current }
            | Self::Overlap { current, .. }
            | Self::Draining { current, .. } => current,
        }
    }

    /// The root being retired, if a rotation is under way.
    pub fn previous_root(&self) -> Option<&CertificateInfo> {
        match self {
            Self::Steady { .. } => None,
            Self::Overlap { previous, .. } | Self::Draining { previous, .. } => Some(previous),
        }
    }

    /// The roots workloads must trust now (signing root first).
    pub fn trust_bundle(&self) -> TrustBundle {
        TrustBundle::new(
            std::iter::once(self.signing_root().clone()).chain(self.previous_root().cloned()),
        )
    }

    /// Starts a rotation to `new_root` (a self-signed root or the root of a new plugged-in CA).
    pub fn begin(self, new_root: CertificateInfo, now: SystemTime) -> Result<Self> {
        let phase = self.phase();
        let refuse = |reason: String| CaError::Rotation {
            action: "begin",
            phase,
            reason,
        };
        match self {
            Self::Steady { current } => {
                if current.sha256_fingerprint == new_root.sha256_fingerprint {
                    return Err(refuse("the new root is the current root".into()));
                }
                if !new_root.is_ca {
                    return Err(refuse(format!(
                        "{} is not a CA certificate",
                        new_root.display_name()
                    )));
                }
                Ok(Self::Overlap {
                    previous: current,
                    current: new_root,
                    since: now,
                })
            }
            _ => Err(refuse(
                "a rotation is already under way; finish or abort it first".into(),
            )),
        }
    }

    /// How many of the live chains (`chain[0]` is the leaf) still lead to the previous
    /// root and have not expired at `now`.
    pub fn dependents_on_previous(
        &self,
        live_chains: &[Vec<CertificateInfo>],
        now: SystemTime,
    ) -> usize {
        let Some(previous) = self.previous_root() else {
            return 0;
        };
        let old = TrustBundle::new([previous.clone()]);
        live_chains
            .iter()
            .filter(|chain| chain.first().is_some_and(|leaf| leaf.not_after > now))
            .filter(|chain| old.verify_chain_ignoring_time(chain).is_ok())
            .count()
    }

    /// Feeds the current set of live certificates: Overlap becomes Draining when none
    /// depends on the previous root any more; Draining falls back to Overlap if one does.
    pub fn observe(self, live_chains: &[Vec<CertificateInfo>], now: SystemTime) -> Self {
        let dependents = self.dependents_on_previous(live_chains, now);
        match self {
            Self::Overlap {
                previous, current, ..
            } if dependents == 0 => Self::Draining {
                previous,
                current,
                since: now,
            },
            Self::Draining {
                previous, current, ..
            } if dependents > 0 => Self::Overlap {
                previous,
                current,
                since: now,
            },
            other => other,
        }
    }

    /// Drops the previous root once Draining has lasted `grace`.
    pub fn finish(self, now: SystemTime, grace: Duration) -> Result<Self> {
        let phase = self.phase();
        let refuse = |reason: String| CaError::Rotation {
            action: "finish",
            phase,
            reason,
        };
        match self {
            Self::Draining { current, since, .. } => {
                let end = since + grace;
                if now >= end {
                    Ok(Self::Steady { current })
                } else {
                    Err(refuse(format!(
                        "the grace period lasts until {}",
                        format_time(end)
                    )))
                }
            }
            Self::Overlap { .. } => Err(refuse(
                "live certificates still depend on the previous root".into(),
            )),
            Self::Steady { .. } => Err(refuse("no rotation is under way".into())),
        }
    }

    /// Abandons a rotation and goes back to the previous root alone.
    pub fn abort(self) -> Result<Self> {
        match self {
            Self::Overlap { previous, .. } | Self::Draining { previous, .. } => {
                Ok(Self::Steady { current: previous })
            }
            Self::Steady { .. } => Err(CaError::Rotation {
                action: "abort",
                phase: "steady",
                reason: "no rotation is under way".into(),
            }),
        }
    }
}
