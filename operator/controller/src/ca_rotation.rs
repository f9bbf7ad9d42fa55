//! Root rotation state that survives the operator: while identities move to a new
//! root, the leader keeps Secret `trellis-ca-rotation` in the operator's namespace with
//! the roots still trusted (public certificates only — never a key), the root the
//! rotation moves to, when it started and, once every identity chains to the new root,
//! since when. A restarted operator or a new leader reads it back, so the old roots stay
//! in every trust bundle (byte for byte: nothing is rewritten), the remaining identities
//! are reissued at the rate limit, and the old roots leave only after all moved + grace.
//!
//! Everything here is pure (the Secret, the CAs and the time in; a decision out).

use crate::ca_state::CaSnapshot;
use crate::error::{Error, Result};
use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use kube::api::ObjectMeta;
use std::collections::{BTreeMap, HashSet};
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trellis_ca::{CertificateAuthority, CertificateInfo};

/// The Secret holding the rotation state.
pub const ROTATION_SECRET: &str = "trellis-ca-rotation";
/// The roots still trusted besides the CA's own, in bundle order (PEM certificates).
pub const PREVIOUS_ROOTS: &str = "previous-roots.pem";
/// The root the rotation moves identities to (PEM certificate).
pub const TARGET_ROOT: &str = "target-root.pem";
/// When the rotation started (Unix seconds).
pub const STARTED: &str = "started";
/// Since when every identity chains to the target root (Unix seconds); absent before.
pub const ALL_MOVED: &str = "all-moved";

/// A rotation in progress, as persisted.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationRecord {
    /// Roots still trusted besides the CA's own (bundle order).
    pub previous: Vec<CertificateInfo>,
    /// The root identities move to.
    pub target: CertificateInfo,
    /// When the rotation started (whole seconds).
    pub started: SystemTime,
    /// Since when no identity depends on a previous root (whole seconds).
    pub all_moved_at: Option<SystemTime>,
}

/// Which rotation a record describes: the target root and the start.
pub type RotationKey = ([u8; 32], u64);

/// `t` cut to whole seconds (what the Secret can hold), so memory and Secret compare equal.
pub fn whole_seconds(t: SystemTime) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(unix(t))
}

fn unix(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

impl RotationRecord {
    /// The record of a snapshot, `None` when no rotation is under way.
    pub fn of(snapshot: &CaSnapshot) -> Option<Self> {
        if !snapshot.rotating() {
            return None;
        }
        Some(Self {
            previous: snapshot.previous_roots.clone(),
            target: snapshot.ca.root().clone(),
            started: whole_seconds(snapshot.rotation_started.unwrap_or(UNIX_EPOCH)),
            all_moved_at: snapshot.all_moved_at.map(whole_seconds),
        })
    }

    /// Identifies the rotation (target root, start).
    pub fn key(&self) -> RotationKey {
        (self.target.sha256_fingerprint, unix(self.started))
    }

    /// The `data` of the Secret.
    pub fn data(&self) -> BTreeMap<String, ByteString> {
        let previous: String = self.previous.iter().map(CertificateInfo::to_pem).collect();
        let mut data = BTreeMap::from([
            (
                PREVIOUS_ROOTS.to_string(),
                ByteString(previous.into_bytes()),
            ),
            (
                TARGET_ROOT.to_string(),
                ByteString(self.target.to_pem().into_bytes()),
            ),
            (
                STARTED.to_string(),
                ByteString(unix(self.started).to_string().into_bytes()),
            ),
        ]);
        if let Some(t) = self.all_moved_at {
            data.insert(
                ALL_MOVED.to_string(),
                ByteString(unix(t).to_string().into_bytes()),
            );
        }
        data
    }

    /// The Secret to apply in `namespace`.
    pub fn to_secret(&self, namespace: &str) -> Secret {
        Secret {
            metadata: ObjectMeta {
                name: Some(ROTATION_SECRET.into()),
                namespace: Some(namespace.into()),
                labels: Some(BTreeMap::from([(
                    crate::MANAGED_BY_LABEL.to_string(),
                    crate::MANAGED_BY.to_string(),
                )])),
                ..Default::default()
            },
            type_: Some("Opaque".into()),
            data: Some(self.data()),
            ..Default::default()
        }
    }

    /// Reads a record back; a broken one is an error naming the Secret and the key.
    pub fn from_secret(secret: &Secret) -> Result<Self> {
        let object = format!(
            "Secret {}/{}",
            secret.metadata.namespace.as_deref().unwrap_or(""),
            secret.metadata.name.as_deref().unwrap_or("")
        );
        let invalid = |key: &str, reason: String| Error::Invalid {
            object: object.clone(),
            field: format!("data[{key}]"),
            reason,
        };
        let text = |key: &str| -> Result<&str> {
            let bytes = secret
                .data
                .as_ref()
                .and_then(|d| d.get(key))
                .ok_or_else(|| invalid(key, "missing".into()))?;
            std::str::from_utf8(&bytes.0).map_err(|_| invalid(key, "not UTF-8 text".into()))
        };
        let seconds = |key: &str| -> Result<SystemTime> {
            let s = text(key)?;
            s.trim()
                .parse::<u64>()
                .map(|n| UNIX_EPOCH + Duration::from_secs(n))
                .map_err(|_| invalid(key, format!("{s:?} is not a number of Unix seconds")))
        };
        let previous = CertificateInfo::all_from_pem(PREVIOUS_ROOTS, text(PREVIOUS_ROOTS)?)
            .map_err(|e| invalid(PREVIOUS_ROOTS, e.to_string()))?;
        let mut targets = CertificateInfo::all_from_pem(TARGET_ROOT, text(TARGET_ROOT)?)
            .map_err(|e| invalid(TARGET_ROOT, e.to_string()))?;
        if targets.len() != 1 {
            return Err(invalid(
                TARGET_ROOT,
                format!("{} certificates, want exactly one", targets.len()),
            ));
        }
        let all_moved_at = match secret.data.as_ref().and_then(|d| d.get(ALL_MOVED)) {
            Some(_) => Some(seconds(ALL_MOVED)?),
            None => None,
        };
        Ok(Self {
            previous,
            target: targets.remove(0),
            started: seconds(STARTED)?,
            all_moved_at,
        })
    }
}

/// What a newly loaded (or reloaded) CA must trust and remember besides its own roots.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resumed {
    /// Previous roots still trusted (bundle order, unexpired, none of the CA's own).
    pub previous: Vec<CertificateInfo>,
    /// When the rotation started (`None` when `previous` is empty).
    pub started: Option<SystemTime>,
    /// Since when every identity chains to the CA's root, if known.
    pub all_moved_at: Option<SystemTime>,
}

/// Decides the rotation state for `candidate`, from the CA in use (`current`) and the
/// persisted `record`:
/// - a CA change keeps the roots of the CA in use (and those it still trusted);
/// - the record's roots are trusted too: after a restart this is the only memory of
///   them; if the CA changed again since it was written, its target root joins them;
/// - expired roots and the candidate's own roots are dropped; order is kept so an
///   unchanged rotation gives a byte-identical bundle.
pub fn resume(
    candidate: &CertificateAuthority,
    current: Option<&CaSnapshot>,
    record: Option<&RotationRecord>,
    now: SystemTime,
) -> Resumed {
    let own = candidate.own_roots();
    let same_ca = |c: &CaSnapshot| {
        c.ca.signing_certificate().sha256_fingerprint
            == candidate.signing_certificate().sha256_fingerprint
    };
    let mut roots: Vec<CertificateInfo> = Vec::new();
    let mut started = None;
    let mut all_moved_at = None;
    if let Some(cur) = current {
        if same_ca(cur) {
            if cur.rotating() {
                started = cur.rotation_started;
                all_moved_at = cur.all_moved_at;
            }
        } else {
            roots.extend(cur.ca.own_roots().roots().iter().cloned());
        }
        roots.extend(cur.previous_roots.iter().cloned());
    }
    if let Some(rec) = record {
        let on_target = own.contains(&rec.target);
        if !on_target {
            roots.push(rec.target.clone());
        }
        roots.extend(rec.previous.iter().cloned());
        if on_target && started.is_none() {
            started = Some(rec.started);
            all_moved_at = rec.all_moved_at;
        }
    }
    let mut seen = HashSet::new();
    roots.retain(|r| r.not_after > now && !own.contains(r) && seen.insert(r.sha256_fingerprint));
    if roots.is_empty() {
        return Resumed {
            previous: roots,
            started: None,
            all_moved_at: None,
        };
    }
    Resumed {
        previous: roots,
        started: Some(whole_seconds(started.unwrap_or(now))),
        all_moved_at: all_moved_at.map(whole_seconds),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ca_state::CaMode;
    use std::sync::Arc;
    use trellis_ca::{RootOptions, SystemRandom, TrustDomain};

    fn at(s: u64) -> SystemTime {
        UNIX_EPOCH + Duration::from_secs(s)
    }

    fn ca() -> Arc<CertificateAuthority> {
        let td = TrustDomain::new("cluster.local").unwrap();
        Arc::new(
            CertificateAuthority::new_self_signed(
                &RootOptions::new(td),
                at(1_900_000_000),
                Arc::new(SystemRandom::new()),
            )
            .unwrap(),
        )
    }

    fn snapshot(ca: &Arc<CertificateAuthority>, previous: Vec<CertificateInfo>) -> CaSnapshot {
        let mut s = CaSnapshot::new(
            ca.clone(),
            CaMode::SelfSigned,
            "ns/trellis-ca".into(),
            1,
            previous,
        );
        if s.rotating() {
            s.rotation_started = Some(at(1_900_000_100));
        }
        s
    }

    #[test]
    fn a_record_round_trips_through_its_secret_without_keys() {
        let (old, new) = (ca(), ca());
        let mut s = snapshot(&new, old.own_roots().roots().to_vec());
        s.all_moved_at = Some(at(1_900_000_200));
        let record = RotationRecord::of(&s).unwrap();
        let secret = record.to_secret("trellis-system");
        for v in secret.data.as_ref().unwrap().values() {
            assert!(!String::from_utf8_lossy(&v.0).contains("PRIVATE KEY"));
        }
        assert_eq!(RotationRecord::from_secret(&secret).unwrap(), record);
        assert!(RotationRecord::of(&snapshot(&new, Vec::new())).is_none());
    }

    #[test]
    fn a_broken_record_names_the_key() {
        let (old, new) = (ca(), ca());
        let record = RotationRecord::of(&snapshot(&new, old.own_roots().roots().to_vec())).unwrap();
        let mut secret = record.to_secret("trellis-system");
        secret
            .data
            .as_mut()
            .unwrap()
            .insert(STARTED.into(), ByteString(b"yesterday".to_vec()));
        let err = RotationRecord::from_secret(&secret)
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("trellis-ca-rotation") && err.contains("data[started]"),
            "{err}"
        );
        secret.data.as_mut().unwrap().remove(TARGET_ROOT);
        let err = RotationRecord::from_secret(&secret)
            .unwrap_err()
            .to_string();
        assert!(err.contains("data[target-root.pem]"), "{err}");
    }

    #[test]
    fn a_restart_resumes_the_recorded_rotation_in_the_same_order() {
        let (a, b, c) = (ca(), ca(), ca());
        let previous: Vec<_> = [&a, &b]
            .iter()
            .flat_map(|x| x.own_roots().roots().to_vec())
            .collect();
        let mut s = snapshot(&c, previous.clone());
        s.all_moved_at = Some(at(1_900_000_300));
        let record = RotationRecord::of(&s).unwrap();
        let now = at(1_900_000_400);
        let resumed = resume(&c, None, Some(&record), now);
        assert_eq!(resumed.previous, previous);
        assert_eq!(resumed.started, Some(at(1_900_000_100)));
        assert_eq!(resumed.all_moved_at, Some(at(1_900_000_300)));
        let again = snapshot(&c, resumed.previous);
        assert_eq!(
            again.trust_bundle_pem, s.trust_bundle_pem,
            "byte-identical bundle"
        );
    }

    #[test]
    fn without_a_record_or_change_nothing_is_trusted_besides_the_ca() {
        let a = ca();
        let now = at(1_900_000_400);
        assert_eq!(resume(&a, None, None, now).previous, Vec::new());
        let s = snapshot(&a, Vec::new());
        let r = resume(&a, Some(&s), None, now);
        assert!(r.previous.is_empty() && r.started.is_none());
    }

    #[test]
    fn a_ca_change_keeps_the_roots_in_use_and_a_stale_target_joins_them() {
        let (a, b, c) = (ca(), ca(), ca());
        let now = at(1_900_000_400);
        // In memory: a in use; c arrives.
        let r = resume(&c, Some(&snapshot(&a, Vec::new())), None, now);
        assert_eq!(r.previous, a.own_roots().roots().to_vec());
        assert_eq!(r.started, Some(now));
        assert_eq!(r.all_moved_at, None);
        // Persisted: a -> b under way; after a restart the CA is c.
        let record = RotationRecord::of(&snapshot(&b, a.own_roots().roots().to_vec())).unwrap();
        let r = resume(&c, None, Some(&record), now);
        let fps: Vec<_> = r.previous.iter().map(|x| x.sha256_fingerprint).collect();
        assert_eq!(
            fps,
            vec![b.root().sha256_fingerprint, a.root().sha256_fingerprint]
        );
        assert_eq!(r.started, Some(now), "a new rotation");
    }

    #[test]
    fn expired_roots_and_own_roots_are_dropped() {
        let (a, b) = (ca(), ca());
        let record = RotationRecord::of(&snapshot(&b, a.own_roots().roots().to_vec())).unwrap();
        let after_expiry = a.root().not_after + Duration::from_secs(1);
        assert!(
            resume(&b, None, Some(&record), after_expiry)
                .previous
                .is_empty()
        );
        // The record's previous root became the CA again: nothing to keep.
        assert!(
            resume(&a, None, Some(&record), at(1_900_000_400))
                .previous
                .iter()
                .all(|r| r.sha256_fingerprint != a.root().sha256_fingerprint)
        );
    }
}
