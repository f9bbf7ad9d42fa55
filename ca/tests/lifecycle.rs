//! Renewal decisions, root rotation transitions (including mTLS-relevant bundle
//! contents during overlap), plugged-in validation errors, persistence, and the
//! property tests of the issue: issued certs verify against their bundle, renewal
//! is monotonic in time.

mod common;

use common::*;
use proptest::prelude::*;
use std::time::Duration;
use trellis_ca::*;

fn leaf_chain(issued: &IssuedIdentity) -> Vec<CertificateInfo> {
    CertificateInfo::all_from_pem("cert-chain.pem", &issued.cert_chain_pem).unwrap()
}

#[test]
fn persisted_material_loads_back_and_keeps_issuing_under_the_same_root() {
    let t = fixed_now();
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
    let m = ca.to_material();
    assert!(
        !format!("{m:?}").contains(&m.ca_key_pem.expose()[40..80]),
        "Debug leaks the key"
    );
    let files = CaFiles {
        ca_cert: &m.ca_cert_pem,
        ca_key: m.ca_key_pem.expose(),
        cert_chain: &m.cert_chain_pem,
        root_cert: &m.root_cert_pem,
    };
    let again = CertificateAuthority::from_cacerts(td("cluster.local"), files, t, rng()).unwrap();
    assert!(again.is_self_signed());
    assert_eq!(
        again.root().sha256_fingerprint,
        ca.root().sha256_fingerprint
    );
    let issued = again.issue_for_service_account("a", "b", DAY, t).unwrap();
    ca.own_roots()
        .verify_chain(&leaf_chain(&issued), t)
        .unwrap();
    assert!(!format!("{again:?}").contains("PRIVATE"));
}

#[test]
fn workload_ttl_backdate_and_issuer_expiry() {
    let t = fixed_now();
    let mut opts = RootOptions::new(td("cluster.local"));
    opts.ttl = 2 * DAY;
    let ca = CertificateAuthority::new_self_signed(&opts, t, rng()).unwrap();
    let issued = ca.issue_for_service_account("a", "b", DAY, t).unwrap();
    let leaf = &leaf_chain(&issued)[0];
    assert_eq!(leaf.not_before, t - CLOCK_SKEW_BACKDATE);
    assert_eq!(leaf.not_after, t + DAY);
    let odd = ca
        .issue_for_service_account("a", "b", DAY, t + Duration::from_millis(1500))
        .unwrap();
    assert_eq!(
        odd.not_after,
        leaf_chain(&odd)[0].not_after,
        "reported notAfter is the certificate's"
    );
    // A TTL past the root's end is cut to it.
    let late = ca
        .issue_for_service_account("a", "b", DAY, t + 36 * 3600 * Duration::from_secs(1))
        .unwrap();
    assert_eq!(leaf_chain(&late)[0].not_after, ca.root().not_after);
    let err = ca
        .issue_for_service_account("a", "b", DAY, t + 3 * DAY)
        .unwrap_err();
    assert!(err.to_string().contains("expired"), "{err}");
    let err = ca
        .issue_for_service_account("a", "b", Duration::ZERO, t)
        .unwrap_err();
    assert!(err.to_string().contains("TTL"), "{err}");
    let foreign = SpiffeId::parse("spiffe://other.org/ns/a/sa/b").unwrap();
    let err = ca.issue_workload(&foreign, DAY, t).unwrap_err();
    assert!(
        err.to_string().contains("not this CA's trust domain"),
        "{err}"
    );
}

#[test]
fn renewal_reasons() {
    let t = fixed_now();
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
    let id = SpiffeId::parse("spiffe://cluster.local/ns/a/sa/b").unwrap();
    let chain = leaf_chain(&ca.issue_workload(&id, DAY, t).unwrap());
    let policy = RenewalPolicy::default();
    let bundle = ca.own_roots().clone();
    let wanted = WantedIdentity {
        spiffe_id: &id,
        key_algorithm: KeyAlgorithm::EcdsaP256,
        bundle: &bundle,
    };
    assert_eq!(renewal_due(&chain, t, &policy, &wanted), None);
    let at = renewal_time(&chain[0], &policy);
    let lifetime = chain[0]
        .not_after
        .duration_since(chain[0].not_before)
        .unwrap();
    assert!(at >= chain[0].not_before + lifetime / 2);
    assert!(at < chain[0].not_before + lifetime.mul_f64(0.6));
    assert_eq!(
        renewal_due(&chain, at - Duration::from_secs(1), &policy, &wanted),
        None
    );
    assert_eq!(
        renewal_due(&chain, at, &policy, &wanted),
        Some(RenewalReason::LifetimeElapsed { renewal_time: at })
    );
    let other = SpiffeId::parse("spiffe://cluster.local/ns/a/sa/c").unwrap();
    let moved = WantedIdentity {
        spiffe_id: &other,
        ..wanted
    };
    assert!(matches!(
        renewal_due(&chain, t, &policy, &moved),
        Some(RenewalReason::IdentityChanged { .. })
    ));
    let rsa = WantedIdentity {
        key_algorithm: KeyAlgorithm::RSA_2048,
        ..wanted
    };
    assert!(matches!(
        renewal_due(&chain, t, &policy, &rsa),
        Some(RenewalReason::KeyTypeChanged { .. })
    ));
    let new_root = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
    let rotated = new_root.own_roots().clone();
    let after_rotation = WantedIdentity {
        bundle: &rotated,
        ..wanted
    };
    assert!(matches!(
        renewal_due(&chain, t, &policy, &after_rotation),
        Some(RenewalReason::UntrustedRoot { .. })
    ));
}

#[test]
fn jitter_spreads_renewals_of_certificates_issued_together() {
    let t = fixed_now();
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
    let policy = RenewalPolicy::default();
    let mut times = std::collections::BTreeSet::new();
    for i in 0..200 {
        let issued = ca
            .issue_for_service_account("load", &format!("sa-{i}"), DAY, t)
            .unwrap();
        let leaf = &leaf_chain(&issued)[0];
        let at = renewal_time(leaf, &policy);
        // Deterministic: the same identity renews at the same offset.
        assert_eq!(at, renewal_time(leaf, &policy));
        times.insert(at.duration_since(std::time::UNIX_EPOCH).unwrap().as_secs());
    }
    assert!(
        times.len() > 190,
        "only {} distinct renewal seconds",
        times.len()
    );
}

#[test]
fn rotation_walks_every_state_and_old_and_new_certs_trust_each_other_during_overlap() {
    let t = fixed_now();
    let old_ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
    let mut new_ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
    let old_leaf = leaf_chain(
        &old_ca
            .issue_for_service_account("a", "old", DAY, t)
            .unwrap(),
    );

    let steady = RootRotation::new(old_ca.root().clone());
    assert_eq!(steady.phase(), "steady");
    assert_eq!(steady.trust_bundle().roots().len(), 1);
    assert!(steady.clone().finish(t, DAY).is_err());
    assert!(steady.clone().abort().is_err());
    assert!(
        steady.clone().begin(old_ca.root().clone(), t).is_err(),
        "same root"
    );

    let overlap = steady.begin(new_ca.root().clone(), t).unwrap();
    assert_eq!(overlap.phase(), "overlap");
    assert!(
        overlap.clone().begin(new_ca.root().clone(), t).is_err(),
        "nested rotation"
    );
    let bundle = overlap.trust_bundle();
    assert_eq!(bundle.roots().len(), 2);
    assert_eq!(overlap.signing_root(), new_ca.root());
    // Workloads get the overlap bundle from the new CA.
    new_ca.set_distributed_roots(&bundle);
    let new_issued = new_ca
        .issue_for_service_account("a", "new", DAY, t)
        .unwrap();
    let new_leaf = leaf_chain(&new_issued);
    let distributed = TrustBundle::from_pem("root-cert.pem", &new_issued.root_cert_pem).unwrap();
    // Both directions verify against what each side trusts during the overlap.
    distributed.verify_chain(&old_leaf, t).unwrap();
    distributed.verify_chain(&new_leaf, t).unwrap();
    assert_eq!(
        overlap.dependents_on_previous(&[old_leaf.clone(), new_leaf.clone()], t),
        1
    );

    let still = overlap
        .clone()
        .observe(&[old_leaf.clone(), new_leaf.clone()], t);
    assert_eq!(still.phase(), "overlap");
    assert!(
        still.clone().finish(t + 10 * DAY, DAY).is_err(),
        "old root still in use"
    );

    let draining = still.observe(std::slice::from_ref(&new_leaf), t + Duration::from_secs(60));
    assert_eq!(draining.phase(), "draining");
    assert_eq!(draining.trust_bundle().roots().len(), 2);
    // A certificate on the old root shows up again: back to overlap.
    let back = draining.clone().observe(
        std::slice::from_ref(&old_leaf),
        t + Duration::from_secs(120),
    );
    assert_eq!(back.phase(), "overlap");
    // Expired old certificates are not dependents.
    let drained_by_expiry = back
        .clone()
        .observe(std::slice::from_ref(&old_leaf), t + 2 * DAY);
    assert_eq!(drained_by_expiry.phase(), "draining");

    let err = draining
        .clone()
        .finish(t + Duration::from_secs(120), DAY)
        .unwrap_err();
    assert!(err.to_string().contains("grace period"), "{err}");
    let done = draining
        .clone()
        .finish(t + Duration::from_secs(60) + DAY, DAY)
        .unwrap();
    assert_eq!(done, RootRotation::new(new_ca.root().clone()));
    assert_eq!(done.trust_bundle().roots().len(), 1);
    // After the old root is dropped an old-root certificate no longer verifies.
    assert!(done.trust_bundle().verify_chain(&old_leaf, t).is_err());

    assert_eq!(
        draining.abort().unwrap(),
        RootRotation::new(old_ca.root().clone())
    );
    assert_eq!(overlap.abort().unwrap().signing_root(), old_ca.root());
}

fn cacerts_error(
    dir: &std::path::Path,
    ca_cert: &str,
    ca_key: &str,
    chain: &str,
    root: &str,
) -> String {
    let files = CaFiles {
        ca_cert: &read(dir, ca_cert),
        ca_key: &read(dir, ca_key),
        cert_chain: &read(dir, chain),
        root_cert: &read(dir, root),
    };
    CertificateAuthority::from_cacerts(td("cluster.local"), files, now(), rng())
        .unwrap_err()
        .to_string()
}

#[test]
fn plugged_in_validation_names_the_file_and_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl_cacerts(d, "ec");
    // Key of another certificate.
    openssl_ok(
        d,
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "other-key.pem",
        ],
    );
    let e = cacerts_error(
        d,
        "ca-cert.pem",
        "other-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    );
    assert!(
        e.starts_with("ca-key.pem: private key: does not match the certificate in ca-cert.pem"),
        "{e}"
    );
    // Encrypted key.
    openssl_ok(
        d,
        &[
            "pkey",
            "-in",
            "ca-key.pem",
            "-aes256",
            "-passout",
            "pass:secret",
            "-out",
            "enc-key.pem",
        ],
    );
    let e = cacerts_error(
        d,
        "ca-cert.pem",
        "enc-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    );
    assert!(e.starts_with("ca-key.pem: private key: encrypted"), "{e}");
    // Unsupported key type (P-384).
    openssl_ok(
        d,
        &[
            "ecparam",
            "-name",
            "secp384r1",
            "-genkey",
            "-noout",
            "-out",
            "p384.pem",
        ],
    );
    let e = cacerts_error(
        d,
        "ca-cert.pem",
        "p384.pem",
        "cert-chain.pem",
        "root-cert.pem",
    );
    assert!(
        e.starts_with("ca-key.pem: private key: unsupported or malformed key"),
        "{e}"
    );
    // Not a CA: a leaf certificate as ca-cert.pem.
    let ca = load(d);
    let leaf = ca.issue_for_service_account("a", "b", DAY, now()).unwrap();
    write(d, "leaf.pem", &split_leaf(&leaf.cert_chain_pem).0);
    write(d, "leaf-key.pem", leaf.key_pem.expose());
    let e = cacerts_error(d, "leaf.pem", "leaf-key.pem", "leaf.pem", "root-cert.pem");
    assert!(
        e.starts_with("ca-cert.pem: certificate spiffe://cluster.local/ns/a/sa/b: is not a CA"),
        "{e}"
    );
    // Chain not verifying to root-cert.pem.
    let stranger = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    write(
        d,
        "stranger-root.pem",
        &stranger.to_material().root_cert_pem,
    );
    let e = cacerts_error(
        d,
        "ca-cert.pem",
        "ca-key.pem",
        "ca-cert.pem",
        "stranger-root.pem",
    );
    assert!(
        e.starts_with("cert-chain.pem: ") && e.contains("does not verify to root-cert.pem"),
        "{e}"
    );
    // A key where a certificate was expected.
    let e = cacerts_error(
        d,
        "ca-key.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    );
    assert!(
        e.starts_with("ca-cert.pem: block 1 is \"EC PRIVATE KEY\""),
        "{e}"
    );
    // Expired issuer: loading "in the future".
    let files = CaFiles {
        ca_cert: &read(d, "ca-cert.pem"),
        ca_key: &read(d, "ca-key.pem"),
        cert_chain: &read(d, "cert-chain.pem"),
        root_cert: &read(d, "root-cert.pem"),
    };
    let e = CertificateAuthority::from_cacerts(td("cluster.local"), files, now() + 25 * DAY, rng())
        .unwrap_err()
        .to_string();
    assert!(
        e.starts_with("ca-cert.pem: ") && e.contains("expired at"),
        "{e}"
    );
    let e = CertificateAuthority::from_cacerts(td("cluster.local"), files, now() - 2 * DAY, rng())
        .unwrap_err()
        .to_string();
    assert!(e.contains("not valid before"), "{e}");
}

fn load(d: &std::path::Path) -> CertificateAuthority {
    let files = CaFiles {
        ca_cert: &read(d, "ca-cert.pem"),
        ca_key: &read(d, "ca-key.pem"),
        cert_chain: &read(d, "cert-chain.pem"),
        root_cert: &read(d, "root-cert.pem"),
    };
    CertificateAuthority::from_cacerts(td("cluster.local"), files, now(), rng()).unwrap()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn csr_signing_never_panics_on_garbage(body in proptest::collection::vec(any::<u8>(), 0..300)) {
        let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, fixed_now());
        let id = SpiffeId::parse("spiffe://cluster.local/ns/a/sa/b").unwrap();
        let b64 = pem::encode(&pem::Pem::new("CERTIFICATE REQUEST", body));
        prop_assert!(ca.sign_csr(&b64, &id, DAY, fixed_now()).is_err());
        prop_assert!(TrustBundle::from_pem("fuzz", &b64.replace("CERTIFICATE REQUEST", "CERTIFICATE")).is_err());
    }

    #[test]
    fn issued_certificates_verify_against_the_bundle_that_issued_them(
        ns in "[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?",
        sa in "[a-z0-9]([a-z0-9.-]{0,30}[a-z0-9])?",
        ttl_secs in 1u64..(400 * 24 * 3600),
        offset_secs in 0u64..(300 * 24 * 3600),
    ) {
        let t = fixed_now();
        let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
        let at = t + Duration::from_secs(offset_secs);
        let issued = ca.issue_for_service_account(&ns, &sa, Duration::from_secs(ttl_secs), at).unwrap();
        let chain = leaf_chain(&issued);
        let bundle = TrustBundle::from_pem("root-cert.pem", &issued.root_cert_pem).unwrap();
        prop_assert!(bundle.verify_chain(&chain, at).is_ok());
        let id = chain[0].spiffe_id().unwrap();
        prop_assert_eq!(id.kubernetes_identity(), Some((ns.as_str(), sa.as_str())));
    }

    #[test]
    fn renewal_is_monotonic_in_time(
        ttl_secs in 60u64..(90 * 24 * 3600),
        a in 0u64..(100 * 24 * 3600),
        b in 0u64..(100 * 24 * 3600),
        ratio in 0.0f64..1.0,
        jitter in 0.0f64..0.5,
    ) {
        let t = fixed_now();
        let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, t);
        let id = SpiffeId::parse("spiffe://cluster.local/ns/x/sa/y").unwrap();
        let chain = leaf_chain(&ca.issue_workload(&id, Duration::from_secs(ttl_secs), t).unwrap());
        let policy = RenewalPolicy { ratio, jitter_ratio: jitter };
        let bundle = ca.own_roots().clone();
        let wanted = WantedIdentity { spiffe_id: &id, key_algorithm: KeyAlgorithm::EcdsaP256, bundle: &bundle };
        let (early, late) = (t + Duration::from_secs(a.min(b)), t + Duration::from_secs(a.max(b)));
        if renewal_due(&chain, early, &policy, &wanted).is_some() {
            prop_assert!(renewal_due(&chain, late, &policy, &wanted).is_some());
        }
        prop_assert!(renewal_time(&chain[0], &policy) <= chain[0].not_after);
    }
}
