use super::*;
use std::sync::Arc;
use trellis_ca::{CertificateAuthority, RootOptions, SystemRandom, TrustDomain};

const UID: &str = "uid-web";

fn t(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_900_000_000 + secs)
}

fn ca(td: &str) -> CertificateAuthority {
    let td = TrustDomain::new(td).unwrap();
    CertificateAuthority::new_self_signed(
        &RootOptions::new(td),
        t(0),
        Arc::new(SystemRandom::new()),
    )
    .unwrap()
}

struct Fixture {
    ca: CertificateAuthority,
    id: SpiffeId,
    bundle: String,
    root: String,
    policy: RenewalPolicy,
}

impl Fixture {
    fn new() -> Self {
        let ca = ca("cluster.local");
        let id = SpiffeId::for_service_account(ca.trust_domain(), "shop", "web").unwrap();
        let bundle = ca.trust_bundle().to_pem();
        let root = ca.root().fingerprint_hex();
        Self {
            ca,
            id,
            bundle,
            root,
            policy: RenewalPolicy {
                ratio: 0.5,
                jitter_ratio: 0.0,
            },
        }
    }

    fn wanted(&self, now: SystemTime) -> Wanted<'_> {
        Wanted {
            namespace: "shop",
            service_account: "web",
            owner_uid: UID,
            spiffe_id: &self.id,
            own_roots: self.ca.own_roots(),
            bundle_pem: &self.bundle,
            root_fingerprint: &self.root,
            policy: &self.policy,
            now,
        }
    }

    /// A Secret as the operator writes it, issued at `at` for one hour.
    fn issued(&self, at: SystemTime) -> Secret {
        let issued = self
            .ca
            .issue_workload(&self.id, Duration::from_secs(3600), at)
            .unwrap();
        desired_secret(
            &self.wanted(at),
            issued.cert_chain_pem.as_bytes(),
            issued.key_pem.expose().as_bytes(),
            issued.not_after,
        )
    }
}

#[test]
fn missing_secret_is_issued() {
    let f = Fixture::new();
    assert_eq!(
        decide(None, &f.wanted(t(10))),
        Decision::Issue(IssueReason::New)
    );
}

#[test]
fn fresh_secret_is_kept_until_half_its_life() {
    let f = Fixture::new();
    let secret = f.issued(t(100));
    match decide(Some(&secret), &f.wanted(t(200))) {
        Decision::Keep { renew_at } => {
            // notBefore is backdated 5 minutes: (100 - 300) + 0.5 * (3600 + 300).
            assert_eq!(
                renew_at,
                t(100) - Duration::from_secs(300) + Duration::from_secs(1950)
            );
        }
        other => panic!("expected Keep, got {other:?}"),
    }
    assert_eq!(
        decide(Some(&secret), &f.wanted(t(100 + 1700))),
        Decision::Issue(IssueReason::Lifetime)
    );
    assert_eq!(recorded_not_after(&secret), Some(t(3700)));
}

#[test]
fn hand_edited_data_is_repaired() {
    let f = Fixture::new();
    let mut secret = f.issued(t(100));
    secret.data.as_mut().unwrap().insert(
        KEY.into(),
        ByteString(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec()),
    );
    assert!(matches!(
        decide(Some(&secret), &f.wanted(t(200))),
        Decision::Issue(IssueReason::Repair(_))
    ));
    secret.data.as_mut().unwrap().remove(KEY);
    assert!(matches!(
        decide(Some(&secret), &f.wanted(t(200))),
        Decision::Issue(IssueReason::Repair(_))
    ));
}

#[test]
fn edited_metadata_is_rewritten_without_reissue() {
    let f = Fixture::new();
    let mut secret = f.issued(t(100));
    secret.metadata.owner_references = None;
    match decide(Some(&secret), &f.wanted(t(200))) {
        Decision::Rewrite { not_after, .. } => assert_eq!(not_after, t(3700)),
        other => panic!("expected Rewrite, got {other:?}"),
    }
    let mut secret = f.issued(t(100));
    secret
        .metadata
        .labels
        .as_mut()
        .unwrap()
        .remove(IDENTITY_LABEL);
    assert!(matches!(
        decide(Some(&secret), &f.wanted(t(200))),
        Decision::Rewrite { .. }
    ));
}

#[test]
fn new_root_reissues_and_added_bundle_root_rewrites() {
    let f = Fixture::new();
    let secret = f.issued(t(100));
    let other = ca("cluster.local");
    // The CA now signs under another root: the old chain must be replaced.
    let mut wanted = f.wanted(t(200));
    wanted.own_roots = other.own_roots();
    assert_eq!(
        decide(Some(&secret), &wanted),
        Decision::Issue(IssueReason::Root)
    );
    // Same root, but the bundle handed out gained a root: rewrite only.
    let bigger = format!("{}{}", f.bundle, other.trust_bundle().to_pem());
    let mut wanted = f.wanted(t(200));
    wanted.bundle_pem = &bigger;
    assert!(matches!(
        decide(Some(&secret), &wanted),
        Decision::Rewrite { .. }
    ));
}

#[test]
fn trust_domain_change_reissues() {
    let f = Fixture::new();
    let secret = f.issued(t(100));
    let td = TrustDomain::new("example.org").unwrap();
    let id = SpiffeId::for_service_account(&td, "shop", "web").unwrap();
    let mut wanted = f.wanted(t(200));
    wanted.spiffe_id = &id;
    assert_eq!(
        decide(Some(&secret), &wanted),
        Decision::Issue(IssueReason::Identity)
    );
}

#[test]
fn desired_secret_is_owned_by_the_service_account() {
    let f = Fixture::new();
    let secret = f.issued(t(100));
    assert_eq!(
        secret.metadata.name.as_deref(),
        Some("trellis-identity-web")
    );
    let owner = &secret.metadata.owner_references.as_ref().unwrap()[0];
    assert_eq!(
        (owner.kind.as_str(), owner.uid.as_str(), owner.controller),
        ("ServiceAccount", UID, Some(true))
    );
    let data = secret.data.as_ref().unwrap();
    assert_eq!(
        data.keys().collect::<Vec<_>>(),
        vec![CERT_CHAIN, KEY, ROOT_CERT]
    );
}

#[test]
fn root_rotation_hands_out_the_bigger_bundle_before_reissuing() {
    let f = Fixture::new();
    let secret = f.issued(t(100));
    let other = ca("cluster.local");
    // The CA moved to `other`; the bundle trusts both roots.
    let both = format!("{}{}", other.trust_bundle().to_pem(), f.bundle);
    let new_root = other.root().fingerprint_hex();
    let mut wanted = f.wanted(t(200));
    wanted.own_roots = other.own_roots();
    wanted.bundle_pem = &both;
    wanted.root_fingerprint = &new_root;
    match decide(Some(&secret), &wanted) {
        Decision::Rewrite {
            old_root,
            not_after,
            ..
        } => {
            assert_eq!(old_root.as_deref(), Some(f.root.as_str()));
            assert_eq!(not_after, t(3700));
        }
        other => panic!("want a bundle rewrite first, got {other:?}"),
    }
    // Once the Secret holds that bundle, the certificate is reissued.
    let kept = Wanted {
        root_fingerprint: &f.root,
        ..f.wanted(t(200))
    };
    let chain = secret.data.as_ref().unwrap()[CERT_CHAIN].0.clone();
    let key = secret.data.as_ref().unwrap()[KEY].0.clone();
    let mut kept = kept;
    kept.bundle_pem = &both;
    let rewritten = desired_secret(&kept, &chain, &key, t(3700));
    assert_eq!(recorded_root(&rewritten), Some(f.root.as_str()));
    assert_eq!(
        decide(Some(&rewritten), &wanted),
        Decision::Issue(IssueReason::Root)
    );
    // A bundle that no longer trusts the old root: reissue at once, no rewrite.
    let only_new = other.trust_bundle().to_pem();
    wanted.bundle_pem = &only_new;
    assert_eq!(
        decide(Some(&secret), &wanted),
        Decision::Issue(IssueReason::Root)
    );
}

#[test]
fn a_stripped_cache_copy_holds_no_key_and_decides_like_the_secret() {
    let f = Fixture::new();
    let other = ca("cluster.local");
    let both = format!("{}{}", other.trust_bundle().to_pem(), f.bundle);
    let new_root = other.root().fingerprint_hex();
    let fresh = f.issued(t(100));
    let mut edited_key = f.issued(t(100));
    edited_key.data.as_mut().unwrap().insert(
        KEY.into(),
        ByteString(b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n".to_vec()),
    );
    let mut no_key = f.issued(t(100));
    no_key.data.as_mut().unwrap().remove(KEY);
    let mut no_owner = f.issued(t(100));
    no_owner.metadata.owner_references = None;
    let plain = |now| f.wanted(now);
    let rotated = |now| {
        let mut w = f.wanted(now);
        w.own_roots = other.own_roots();
        w.bundle_pem = &both;
        w.root_fingerprint = &new_root;
        w
    };
    let bigger_bundle = |now| {
        let mut w = f.wanted(now);
        w.bundle_pem = &both;
        w
    };
    let mut checked = 0;
    for secret in [&fresh, &edited_key, &no_key, &no_owner] {
        let mut stripped = secret.clone();
        strip_data(&mut stripped);
        assert!(is_stripped(&stripped) && !is_stripped(secret));
        let data = stripped.data.as_ref().unwrap();
        assert!(!data.contains_key(KEY) && !data.contains_key(ROOT_CERT));
        assert!(!format!("{stripped:?}").contains("PRIVATE KEY"));
        for wanted in [
            plain(t(200)),
            plain(t(1900)),
            rotated(t(200)),
            bigger_bundle(t(200)),
        ] {
            assert_eq!(
                decide(Some(&stripped), &wanted),
                decide(Some(secret), &wanted)
            );
            checked += 1;
        }
    }
    assert_eq!(checked, 16);
    // The stripped copy still says what matters: Keep, Rewrite, Repair as the Secret.
    let mut stripped = fresh.clone();
    strip_data(&mut stripped);
    assert!(matches!(
        decide(Some(&stripped), &plain(t(200))),
        Decision::Keep { .. }
    ));
    assert!(matches!(
        decide(Some(&stripped), &bigger_bundle(t(200))),
        Decision::Rewrite { .. }
    ));
}

/// Whether `secret` is a copy stripped by [`strip_data`].
fn is_stripped(secret: &Secret) -> bool {
    field(secret, STRIPPED_SUM).is_some()
}
