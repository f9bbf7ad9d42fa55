//! Issued certificates judged by openssl: `openssl verify` accepts them in
//! self-signed and plugged-in modes with ECDSA and RSA roots, and `openssl x509
//! -text` shows exactly the one URI SAN and the SVID extensions.

mod common;

use common::*;
use std::path::Path;
use trellis_ca::{CaFiles, CertificateAuthority, KeyAlgorithm, SpiffeId};

/// Writes the identity files and runs `openssl verify -CAfile root -untrusted chain leaf`.
fn assert_openssl_verifies(dir: &Path, chain_pem: &str, root_pem: &str) {
    let (leaf, rest) = split_leaf(chain_pem);
    write(dir, "leaf.pem", &leaf);
    write(dir, "root.pem", root_pem);
    let mut args = vec!["verify", "-CAfile", "root.pem"];
    if !rest.is_empty() {
        write(dir, "untrusted.pem", &rest);
        args.extend(["-untrusted", "untrusted.pem"]);
    }
    args.extend(["-purpose", "sslclient", "leaf.pem"]);
    let out = openssl_ok(dir, &args);
    assert!(out.contains("leaf.pem: OK"), "{out}");
}

fn issue_and_verify(ca: &CertificateAuthority, dir: &Path) {
    let issued = ca
        .issue_for_service_account("shop", "checkout", DAY, now())
        .unwrap();
    assert_openssl_verifies(dir, &issued.cert_chain_pem, &issued.root_cert_pem);
    // The key file is one openssl can read and it belongs to the leaf.
    write(dir, "key.pem", issued.key_pem.expose());
    let from_key = openssl_ok(dir, &["pkey", "-in", "key.pem", "-pubout"]);
    let from_cert = openssl_ok(dir, &["x509", "-in", "leaf.pem", "-noout", "-pubkey"]);
    assert_eq!(from_key, from_cert);
}

#[test]
fn self_signed_ecdsa_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    issue_and_verify(&ca, dir.path());
    let root = write(dir.path(), "ca.pem", &ca.to_material().ca_cert_pem);
    let text = openssl_ok(
        dir.path(),
        &["x509", "-in", root.to_str().unwrap(), "-noout", "-text"],
    );
    assert!(text.contains("CA:TRUE, pathlen:1"), "{text}");
    assert!(text.contains("Certificate Sign, CRL Sign"), "{text}");
    assert!(text.contains("Subject Key Identifier"), "{text}");
}

#[test]
fn self_signed_rsa_root() {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed("cluster.local", KeyAlgorithm::RSA_2048, now());
    assert_eq!(ca.key_algorithm(), KeyAlgorithm::RSA_2048);
    issue_and_verify(&ca, dir.path());
}

#[test]
fn plugged_in_intermediate_issued_by_the_ca_itself() {
    let dir = tempfile::tempdir().unwrap();
    let root = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let material = root
        .issue_intermediate(
            KeyAlgorithm::EcdsaP256,
            "cluster-a intermediate",
            30 * DAY,
            now(),
        )
        .unwrap();
    let files = CaFiles {
        ca_cert: &material.ca_cert_pem,
        ca_key: material.ca_key_pem.expose(),
        cert_chain: &material.cert_chain_pem,
        root_cert: &material.root_cert_pem,
    };
    let ca = CertificateAuthority::from_cacerts(td("cluster.local"), files, now(), rng()).unwrap();
    assert!(!ca.is_self_signed());
    let issued = ca
        .issue_for_service_account("shop", "cart", DAY, now())
        .unwrap();
    // The chain carries the intermediate, not the root.
    assert_eq!(
        issued.cert_chain_pem.matches("BEGIN CERTIFICATE").count(),
        2
    );
    assert_openssl_verifies(dir.path(), &issued.cert_chain_pem, &issued.root_cert_pem);
    // The leaf never outlives the intermediate.
    let long = ca
        .issue_for_service_account("shop", "cart", 365 * DAY, now())
        .unwrap();
    assert!(long.not_after <= ca.signing_certificate().not_after);
}

fn load_openssl_cacerts(dir: &Path) -> CertificateAuthority {
    let (cert, key, chain, root) = (
        read(dir, "ca-cert.pem"),
        read(dir, "ca-key.pem"),
        read(dir, "cert-chain.pem"),
        read(dir, "root-cert.pem"),
    );
    let files = CaFiles {
        ca_cert: &cert,
        ca_key: &key,
        cert_chain: &chain,
        root_cert: &root,
    };
    CertificateAuthority::from_cacerts(td("cluster.local"), files, now(), rng()).unwrap()
}

#[test]
fn plugged_in_openssl_ecdsa_cacerts_with_sec1_key() {
    let dir = tempfile::tempdir().unwrap();
    openssl_cacerts(dir.path(), "ec");
    assert!(read(dir.path(), "ca-key.pem").contains("BEGIN EC PRIVATE KEY"));
    let ca = load_openssl_cacerts(dir.path());
    issue_and_verify(&ca, dir.path());
}

#[test]
fn plugged_in_openssl_rsa_cacerts_with_pkcs1_key() {
    let dir = tempfile::tempdir().unwrap();
    openssl_cacerts(dir.path(), "rsa");
    assert!(read(dir.path(), "ca-key.pem").contains("BEGIN RSA PRIVATE KEY"));
    let ca = load_openssl_cacerts(dir.path());
    assert_eq!(ca.key_algorithm(), KeyAlgorithm::RSA_2048);
    issue_and_verify(&ca, dir.path());
}

#[test]
fn openssl_text_shows_exactly_one_uri_san_and_svid_extensions() {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed("example.org", KeyAlgorithm::EcdsaP256, now());
    let issued = ca
        .issue_for_service_account("default", "web", DAY, now())
        .unwrap();
    let (leaf, _) = split_leaf(&issued.cert_chain_pem);
    write(dir.path(), "leaf.pem", &leaf);
    let text = openssl_ok(dir.path(), &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert_eq!(text.matches("URI:").count(), 1, "{text}");
    assert!(
        text.contains("URI:spiffe://example.org/ns/default/sa/web"),
        "{text}"
    );
    assert!(!text.contains("DNS:"), "{text}");
    assert!(text.contains("CA:FALSE"), "{text}");
    assert!(text.contains("Digital Signature"), "{text}");
    assert!(
        text.contains("TLS Web Server Authentication, TLS Web Client Authentication"),
        "{text}"
    );
    assert!(text.contains("Subject Key Identifier"), "{text}");
    assert!(text.contains("Authority Key Identifier"), "{text}");
    // Empty subject, so the SAN must be critical.
    assert!(
        text.contains("X509v3 Subject Alternative Name: critical"),
        "{text}"
    );
    let serial = openssl_ok(
        dir.path(),
        &["x509", "-in", "leaf.pem", "-noout", "-serial"],
    );
    let hex = serial.trim().trim_start_matches("serial=");
    assert_eq!(hex.len(), 32, "16-octet serial expected: {serial}");
    assert!(
        u8::from_str_radix(&hex[..2], 16).unwrap() < 0x80,
        "positive serial: {serial}"
    );
}

#[test]
fn server_certificate_verifies_for_its_host_name() {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let names = vec!["trellis-webhook.trellis-system.svc".to_string()];
    let issued = ca.issue_server_cert(&names, 30 * DAY, now()).unwrap();
    write(dir.path(), "leaf.pem", &issued.cert_chain_pem);
    write(dir.path(), "root.pem", &issued.root_cert_pem);
    let out = openssl_ok(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-purpose",
            "sslserver",
            "-verify_hostname",
            &names[0],
            "leaf.pem",
        ],
    );
    assert!(out.contains("leaf.pem: OK"), "{out}");
    let (ok, _) = openssl(
        dir.path(),
        &[
            "verify",
            "-CAfile",
            "root.pem",
            "-verify_hostname",
            "other.svc",
            "leaf.pem",
        ],
    );
    assert!(!ok, "a serving cert must not verify for another host name");
    let bad = ca
        .issue_server_cert(&["Not A Name".to_string()], DAY, now())
        .unwrap_err();
    assert!(bad.to_string().contains("DNS name \"Not A Name\""), "{bad}");
}

#[test]
fn openssl_csr_is_signed_for_the_authenticated_identity_only() {
    let dir = tempfile::tempdir().unwrap();
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let id = SpiffeId::parse("spiffe://cluster.local/ns/shop/sa/cart").unwrap();
    openssl_ok(
        dir.path(),
        &[
            "ecparam",
            "-name",
            "prime256v1",
            "-genkey",
            "-noout",
            "-out",
            "k.pem",
        ],
    );
    openssl_ok(
        dir.path(),
        &[
            "req",
            "-new",
            "-key",
            "k.pem",
            "-subj",
            "/CN=cart",
            "-addext",
            &format!("subjectAltName=URI:{id}"),
            "-config",
            "/dev/null",
            "-out",
            "good.csr",
        ],
    );
    let issued = ca
        .sign_csr(&read(dir.path(), "good.csr"), &id, DAY, now())
        .unwrap();
    assert_openssl_verifies(dir.path(), &issued.cert_chain_pem, &issued.root_cert_pem);

    openssl_ok(
        dir.path(),
        &[
            "req",
            "-new",
            "-key",
            "k.pem",
            "-subj",
            "/CN=cart",
            "-addext",
            "subjectAltName=URI:spiffe://cluster.local/ns/shop/sa/admin",
            "-config",
            "/dev/null",
            "-out",
            "other.csr",
        ],
    );
    let err = ca
        .sign_csr(&read(dir.path(), "other.csr"), &id, DAY, now())
        .unwrap_err();
    assert!(
        err.to_string()
            .contains("only spiffe://cluster.local/ns/shop/sa/cart is allowed"),
        "{err}"
    );

    openssl_ok(
        dir.path(),
        &[
            "req",
            "-new",
            "-key",
            "k.pem",
            "-subj",
            "/CN=cart",
            "-addext",
            "subjectAltName=DNS:evil.example",
            "-config",
            "/dev/null",
            "-out",
            "dns.csr",
        ],
    );
    assert!(
        ca.sign_csr(&read(dir.path(), "dns.csr"), &id, DAY, now())
            .is_err()
    );

    openssl_ok(
        dir.path(),
        &[
            "req",
            "-new",
            "-key",
            "k.pem",
            "-subj",
            "/CN=cart",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-config",
            "/dev/null",
            "-out",
            "ca.csr",
        ],
    );
    let err = ca
        .sign_csr(&read(dir.path(), "ca.csr"), &id, DAY, now())
        .unwrap_err();
    assert!(err.to_string().contains("CA:true"), "{err}");

    // Flip a byte inside the signature: the CSR no longer verifies.
    let der = openssl_ok(
        dir.path(),
        &[
            "req", "-in", "good.csr", "-outform", "DER", "-out", "good.der",
        ],
    );
    let _ = der;
    let mut bytes = std::fs::read(dir.path().join("good.der")).unwrap();
    let last = bytes.len() - 3;
    bytes[last] ^= 0x55;
    let tampered = pem_block("CERTIFICATE REQUEST", &bytes);
    let err = ca.sign_csr(&tampered, &id, DAY, now()).unwrap_err();
    assert!(
        err.to_string().contains("signature does not verify"),
        "{err}"
    );
}

fn pem_block(tag: &str, der: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("x.der"), der).unwrap();
    let b64 = openssl_ok(dir.path(), &["base64", "-in", "x.der"]);
    format!("-----BEGIN {tag}-----\n{b64}-----END {tag}-----\n")
}

#[test]
fn rsa_csr_gets_key_encipherment() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = self_signed("cluster.local", KeyAlgorithm::EcdsaP256, now());
    let id = SpiffeId::parse("spiffe://cluster.local/ns/legacy/sa/app").unwrap();
    openssl_ok(
        d,
        &[
            "genpkey",
            "-algorithm",
            "RSA",
            "-pkeyopt",
            "rsa_keygen_bits:2048",
            "-out",
            "k.pem",
        ],
    );
    openssl_ok(
        d,
        &[
            "req",
            "-new",
            "-key",
            "k.pem",
            "-subj",
            "/CN=app",
            "-addext",
            &format!("subjectAltName=URI:{id}"),
            "-config",
            "/dev/null",
            "-out",
            "rsa.csr",
        ],
    );
    let issued = ca.sign_csr(&read(d, "rsa.csr"), &id, DAY, now()).unwrap();
    assert_openssl_verifies(d, &issued.cert_chain_pem, &issued.root_cert_pem);
    let text = openssl_ok(d, &["x509", "-in", "leaf.pem", "-noout", "-text"]);
    assert!(
        text.contains("Digital Signature, Key Encipherment"),
        "{text}"
    );
    assert!(text.contains("Public-Key: (2048 bit)"), "{text}");
}
