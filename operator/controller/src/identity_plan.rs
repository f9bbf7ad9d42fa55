//! What to do with one service account's identity Secret: pure (the cached Secret,
//! the CA's roots, the time and the policy in; a decision out), so every case is unit
//! tested without a cluster.

use k8s_openapi::ByteString;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{ObjectMeta, OwnerReference};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trellis_ca::{
    CertificateInfo, KeyAlgorithm, RenewalPolicy, RenewalReason, SpiffeId, TrustBundle,
    WantedIdentity, renewal_due, renewal_time,
};

/// `cert-chain.pem`: the leaf and intermediates.
pub const CERT_CHAIN: &str = "cert-chain.pem";
/// `key.pem`: the leaf's private key.
pub const KEY: &str = "key.pem";
/// `root-cert.pem`: the trust bundle.
pub const ROOT_CERT: &str = "root-cert.pem";
/// Label selecting identity Secrets (the operator watches only these).
pub const IDENTITY_LABEL: &str = "trellis.dev/identity";
/// Annotation: the SPIFFE id in the certificate.
pub const SPIFFE_ANNOTATION: &str = "trellis.dev/spiffe-id";
/// Annotation: the leaf's `notAfter`, Unix seconds.
pub const NOT_AFTER_ANNOTATION: &str = "trellis.dev/not-after";
/// Annotation: SHA-256 fingerprint (hex) of the root the certificate chains to.
pub const ROOT_ANNOTATION: &str = "trellis.dev/root";
/// Annotation: SHA-256 of the three files as written, to detect hand edits.
pub const CHECKSUM_ANNOTATION: &str = "trellis.dev/checksum";

/// Data keys of a cached Secret after [`strip_data`] (a `:` cannot occur in the keys of
/// a Secret the API server returns, so a stripped copy is never mistaken for one):
/// the checksum of the three files as they were (empty when one was missing) and the
/// SHA-256 (hex) of `root-cert.pem`.
const STRIPPED_SUM: &str = "trellis:checksum";
const STRIPPED_ROOT: &str = "trellis:root-cert-sha256";

/// The Secret of a service account's identity (as the injector mounts it).
pub fn secret_name(service_account: &str) -> String {
    format!("trellis-identity-{service_account}")
}

/// Why a certificate is (re)issued; also the `reason` label of the identity metrics.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum IssueReason {
    /// No Secret yet (or it was deleted).
    New,
    /// The renewal time has passed.
    Lifetime,
    /// The chain does not lead to the CA's current root (root rotation, new CA).
    Root,
    /// The certificate carries another SPIFFE id (trust domain changed).
    Identity,
    /// The key type is not the wanted one.
    KeyType,
    /// The Secret's data was edited or is unreadable.
    Repair(String),
}

impl IssueReason {
    /// Metric label.
    pub fn label(&self) -> &'static str {
        match self {
            IssueReason::New => "new",
            IssueReason::Lifetime => "lifetime",
            IssueReason::Root => "root",
            IssueReason::Identity => "identity",
            IssueReason::KeyType => "key-type",
            IssueReason::Repair(_) => "repair",
        }
    }
}

/// The decision for one identity.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    /// All is well: look again at `renew_at`.
    Keep { renew_at: SystemTime },
    /// The certificate is fine but the Secret's metadata or trust bundle is not: write
    /// the same certificate and key again with the right metadata and bundle.
    Rewrite {
        renew_at: SystemTime,
        /// The kept certificate's `notAfter`.
        not_after: SystemTime,
        why: String,
        /// Fingerprint (hex) of the root the kept certificate chains to, when it is not
        /// [`Wanted::root_fingerprint`] (a root rotation: the bundle first, the
        /// certificate later).
        old_root: Option<String>,
    },
    /// Issue a new certificate.
    Issue(IssueReason),
}

/// What the identity must look like now.
pub struct Wanted<'a> {
    pub namespace: &'a str,
    pub service_account: &'a str,
    /// UID of the ServiceAccount (owner reference).
    pub owner_uid: &'a str,
    pub spiffe_id: &'a SpiffeId,
    /// The CA's own roots: a chain to anything else is reissued.
    pub own_roots: &'a TrustBundle,
    /// `root-cert.pem` to hand out (own roots plus any previous root during rotation).
    pub bundle_pem: &'a str,
    /// Fingerprint (hex) of the root new certificates chain to.
    pub root_fingerprint: &'a str,
    pub policy: &'a RenewalPolicy,
    pub now: SystemTime,
}

/// SHA-256 (hex) over the three files, each prefixed by its name.
pub fn checksum(cert_chain: &[u8], key: &[u8], root_cert: &[u8]) -> String {
    let mut h = Sha256::new();
    for (name, data) in [(CERT_CHAIN, cert_chain), (KEY, key), (ROOT_CERT, root_cert)] {
        h.update(name.as_bytes());
        h.update((data.len() as u64).to_be_bytes());
        h.update(data);
    }
    hex::encode(h.finalize())
}

fn field<'a>(secret: &'a Secret, key: &str) -> Option<&'a [u8]> {
    secret
        .data
        .as_ref()
        .and_then(|d| d.get(key))
        .map(|b| b.0.as_slice())
}

fn annotation<'a>(secret: &'a Secret, key: &str) -> Option<&'a str> {
    secret
        .metadata
        .annotations
        .as_ref()
        .and_then(|a| a.get(key))
        .map(String::as_str)
}

/// Whether the Secret's metadata is what [`desired_secret`] writes (labels, owner).
fn metadata_ok(secret: &Secret, wanted: &Wanted<'_>) -> bool {
    let labelled = secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(IDENTITY_LABEL))
        .is_some_and(|v| v == "true");
    let owned = secret
        .metadata
        .owner_references
        .as_ref()
        .is_some_and(|refs| {
            refs.iter().any(|r| {
                r.kind == "ServiceAccount"
                    && r.uid == wanted.owner_uid
                    && r.controller == Some(true)
            })
        });
    labelled
        && owned
        && annotation(secret, SPIFFE_ANNOTATION) == Some(&wanted.spiffe_id.to_string())
}

/// What [`decide`] needs of a Secret's data.
struct Files<'a> {
    /// `cert-chain.pem`.
    chain: &'a [u8],
    /// [`checksum`] of the three files as they are.
    sum_now: String,
    /// Whether `root-cert.pem` is the wanted trust bundle.
    bundle_current: bool,
}

/// The files of a full Secret or of a copy stripped by [`strip_data`]; `None` when one
/// of the three is missing.
fn files<'a>(secret: &'a Secret, bundle_pem: &str) -> Option<Files<'a>> {
    let chain = field(secret, CERT_CHAIN);
    if let (Some(chain), Some(key), Some(root)) =
        (chain, field(secret, KEY), field(secret, ROOT_CERT))
    {
        return Some(Files {
            chain,
            sum_now: checksum(chain, key, root),
            bundle_current: root == bundle_pem.as_bytes(),
        });
    }
    let sum = field(secret, STRIPPED_SUM).filter(|s| !s.is_empty())?;
    let root_sha = field(secret, STRIPPED_ROOT)?;
    Some(Files {
        chain: chain?,
        sum_now: String::from_utf8_lossy(sum).into_owned(),
        bundle_current: root_sha == sha256_hex(bundle_pem.as_bytes()).as_bytes(),
    })
}

fn sha256_hex(data: &[u8]) -> String {
    hex::encode(Sha256::digest(data))
}

/// Shrinks a Secret for the identity controller's cache: `key.pem` and `root-cert.pem`
/// are replaced by what [`decide`] needs of them (the checksum of the three files and
/// the SHA-256 of the bundle); `cert-chain.pem` stays. [`decide`] gives the same answer
/// for the stripped copy as for the Secret. The private key is not kept in memory, and
/// the cache of 10,000 identities is a fraction of the size; a rewrite that keeps the
/// key reads the Secret again.
pub fn strip_data(secret: &mut Secret) {
    let Some(mut data) = secret.data.take() else {
        return;
    };
    let complete = match (data.get(CERT_CHAIN), data.get(KEY), data.get(ROOT_CERT)) {
        (Some(chain), Some(key), Some(root)) => {
            Some((checksum(&chain.0, &key.0, &root.0), sha256_hex(&root.0)))
        }
        _ => None,
    };
    let mut kept = BTreeMap::new();
    if let Some(chain) = data.remove(CERT_CHAIN) {
        kept.insert(CERT_CHAIN.to_string(), chain);
    }
    let (sum, root_sha) = complete.unwrap_or_default();
    kept.insert(STRIPPED_SUM.to_string(), ByteString(sum.into_bytes()));
    kept.insert(STRIPPED_ROOT.to_string(), ByteString(root_sha.into_bytes()));
    secret.data = Some(kept);
    secret.string_data = None;
}

/// Decides what to do with `existing` (the cached Secret, if any).
pub fn decide(existing: Option<&Secret>, wanted: &Wanted<'_>) -> Decision {
    let Some(secret) = existing else {
        return Decision::Issue(IssueReason::New);
    };
    let Some(Files {
        chain,
        sum_now,
        bundle_current,
    }) = files(secret, wanted.bundle_pem)
    else {
        return Decision::Issue(IssueReason::Repair(format!(
            "missing one of {CERT_CHAIN}, {KEY}, {ROOT_CERT}"
        )));
    };
    let recorded = annotation(secret, CHECKSUM_ANNOTATION);
    let parsed = std::str::from_utf8(chain)
        .ok()
        .and_then(|text| CertificateInfo::all_from_pem(CERT_CHAIN, text).ok())
        .filter(|c| !c.is_empty());
    let Some(chain_info) = parsed else {
        return Decision::Issue(IssueReason::Repair(format!(
            "{CERT_CHAIN} is not a certificate chain"
        )));
    };
    if recorded != Some(sum_now.as_str()) {
        return Decision::Issue(IssueReason::Repair(
            "data differs from what the operator wrote".into(),
        ));
    }
    let want = WantedIdentity {
        spiffe_id: wanted.spiffe_id,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        bundle: wanted.own_roots,
    };
    if let Some(reason) = renewal_due(&chain_info, wanted.now, wanted.policy, &want) {
        if let RenewalReason::UntrustedRoot { .. } = reason {
            // Root rotation: a workload still on a previous root must trust peers that
            // already moved, so its bundle is rewritten at once (certificate kept); the
            // certificate itself is reissued later, at the rotation rate.
            if let Some(old_root) = bundle_update_first(&chain_info, bundle_current, wanted) {
                return Decision::Rewrite {
                    renew_at: wanted.now,
                    not_after: chain_info[0].not_after,
                    why: "trust bundle changed (root rotation)".into(),
                    old_root: Some(old_root),
                };
            }
        }
        return Decision::Issue(match reason {
            RenewalReason::LifetimeElapsed { .. } => IssueReason::Lifetime,
            RenewalReason::UntrustedRoot { .. } => IssueReason::Root,
            RenewalReason::IdentityChanged { .. } => IssueReason::Identity,
            RenewalReason::KeyTypeChanged { .. } => IssueReason::KeyType,
        });
    }
    let renew_at = renewal_time(&chain_info[0], wanted.policy);
    let not_after = chain_info[0].not_after;
    if !bundle_current {
        return Decision::Rewrite {
            renew_at,
            not_after,
            why: "trust bundle changed".into(),
            old_root: None,
        };
    }
    if !metadata_ok(secret, wanted) {
        return Decision::Rewrite {
            renew_at,
            not_after,
            why: "labels, annotations or owner reference changed".into(),
            old_root: None,
        };
    }
    Decision::Keep { renew_at }
}

/// During a root rotation: the root (fingerprint, hex) `chain` leads to, when the
/// Secret's bundle is not the wanted one yet, the certificate is still valid and the
/// wanted bundle still trusts its root (so handing out the new bundle first is safe).
fn bundle_update_first(
    chain: &[CertificateInfo],
    bundle_current: bool,
    wanted: &Wanted<'_>,
) -> Option<String> {
    if bundle_current || chain[0].not_after <= wanted.now {
        return None;
    }
    let bundle = TrustBundle::from_pem(ROOT_CERT, wanted.bundle_pem).ok()?;
    let root = bundle.verify_chain_ignoring_time(chain).ok()?;
    Some(root.fingerprint_hex())
}

fn unix_seconds(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .unwrap_or(Duration::ZERO)
        .as_secs()
}

/// The Secret to apply: the three files, the identity label, annotations (SPIFFE id,
/// `notAfter`, checksum) and the ServiceAccount as controlling owner, so Kubernetes
/// deletes the Secret with the account.
pub fn desired_secret(
    wanted: &Wanted<'_>,
    cert_chain_pem: &[u8],
    key_pem: &[u8],
    not_after: SystemTime,
) -> Secret {
    let root = wanted.bundle_pem.as_bytes();
    Secret {
        metadata: ObjectMeta {
            name: Some(secret_name(wanted.service_account)),
            namespace: Some(wanted.namespace.to_string()),
            labels: Some(BTreeMap::from([
                (
                    crate::MANAGED_BY_LABEL.to_string(),
                    crate::MANAGED_BY.to_string(),
                ),
                (IDENTITY_LABEL.to_string(), "true".to_string()),
            ])),
            annotations: Some(BTreeMap::from([
                (SPIFFE_ANNOTATION.to_string(), wanted.spiffe_id.to_string()),
                (
                    ROOT_ANNOTATION.to_string(),
                    wanted.root_fingerprint.to_string(),
                ),
                (
                    NOT_AFTER_ANNOTATION.to_string(),
                    unix_seconds(not_after).to_string(),
                ),
                (
                    CHECKSUM_ANNOTATION.to_string(),
                    checksum(cert_chain_pem, key_pem, root),
                ),
            ])),
            owner_references: Some(vec![OwnerReference {
                api_version: "v1".into(),
                kind: "ServiceAccount".into(),
                name: wanted.service_account.to_string(),
                uid: wanted.owner_uid.to_string(),
                controller: Some(true),
                block_owner_deletion: None,
            }]),
            ..Default::default()
        },
        type_: Some("Opaque".into()),
        data: Some(BTreeMap::from([
            (CERT_CHAIN.to_string(), ByteString(cert_chain_pem.to_vec())),
            (KEY.to_string(), ByteString(key_pem.to_vec())),
            (ROOT_CERT.to_string(), ByteString(root.to_vec())),
        ])),
        ..Default::default()
    }
}

/// The recorded root fingerprint of an identity Secret (from its annotation).
pub fn recorded_root(secret: &Secret) -> Option<&str> {
    annotation(secret, ROOT_ANNOTATION)
}

/// The recorded `notAfter` of an identity Secret (from its annotation).
pub fn recorded_not_after(secret: &Secret) -> Option<SystemTime> {
    annotation(secret, NOT_AFTER_ANNOTATION)
        .and_then(|s| s.parse::<u64>().ok())
        .map(|s| UNIX_EPOCH + Duration::from_secs(s))
}

#[cfg(test)]
mod tests;
