//! `trellis ca` end to end: the real binary creates a root, issues identities that
//! openssl accepts, inspects certificates, and answers malformed input with one
//! error line and exit code 1.

use std::path::Path;
use std::process::{Command, Output};
use trellis_e2e::openssl;

fn trellis(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run trellis")
}

fn ok(dir: &Path, args: &[&str]) -> String {
    let out = trellis(dir, args);
    assert!(
        out.status.success(),
        "trellis {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

/// Asserts exit code 1 and exactly one non-empty stderr line; returns it.
fn fails_with_one_line(dir: &Path, args: &[&str]) -> String {
    let out = trellis(dir, args);
    assert_eq!(out.status.code(), Some(1), "trellis {args:?}: {out:?}");
    let err = String::from_utf8(out.stderr).unwrap();
    assert_eq!(
        err.trim_end().lines().count(),
        1,
        "one line expected: {err}"
    );
    assert!(!err.contains("panicked"), "{err}");
    err.trim_end().to_string()
}

#[test]
fn init_issue_inspect_round_trip() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    let out = ok(
        d,
        &["ca", "init", "--out", "ca", "--trust-domain", "example.org"],
    );
    assert!(out.contains("trust domain example.org"), "{out}");
    for f in [
        "ca-cert.pem",
        "ca-key.pem",
        "cert-chain.pem",
        "root-cert.pem",
    ] {
        assert!(d.join("ca").join(f).is_file(), "{f} missing");
    }
    // A second init never overwrites the CA.
    let err = fails_with_one_line(d, &["ca", "init", "--out", "ca"]);
    assert!(err.contains("refusing to overwrite"), "{err}");

    let out = ok(
        d,
        &[
            "ca",
            "issue",
            "--ca-dir",
            "ca",
            "--namespace",
            "shop",
            "--service-account",
            "web",
            "--ttl",
            "2h",
            "--out",
            "web",
        ],
    );
    assert!(out.contains("spiffe://example.org/ns/shop/sa/web"), "{out}");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(d.join("web/key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
        let mode = std::fs::metadata(d.join("ca/ca-key.pem"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
    let verified = openssl(
        &[
            "verify",
            "-CAfile",
            "web/root-cert.pem",
            "web/cert-chain.pem",
        ],
        d,
    );
    assert!(verified.contains("OK"), "{verified}");
    let text = openssl(&["x509", "-in", "web/cert-chain.pem", "-noout", "-text"], d);
    assert!(
        text.contains("URI:spiffe://example.org/ns/shop/sa/web"),
        "{text}"
    );

    let shown = ok(
        d,
        &[
            "ca",
            "inspect",
            "web/cert-chain.pem",
            "--bundle",
            "web/root-cert.pem",
        ],
    );
    for want in [
        "spiffe id:   spiffe://example.org/ns/shop/sa/web",
        "issuer:      O=example.org, CN=Trellis root CA",
        "serial:",
        "not before:",
        "not after:",
        "renewal in:  1h",
        "sha256:",
        "verified:    yes",
    ] {
        assert!(shown.contains(want), "missing {want:?} in:\n{shown}");
    }
    // The fingerprint is the one openssl computes.
    let fp = openssl(
        &[
            "x509",
            "-in",
            "web/cert-chain.pem",
            "-noout",
            "-fingerprint",
            "-sha256",
        ],
        d,
    );
    let fp = fp.trim().rsplit('=').next().unwrap().to_string();
    assert!(shown.contains(&fp), "{fp} not in\n{shown}");

    // Against another CA's bundle: says NO and exits 1.
    ok(d, &["ca", "init", "--out", "other"]);
    let out = trellis(
        d,
        &[
            "ca",
            "inspect",
            "web/cert-chain.pem",
            "--bundle",
            "other/root-cert.pem",
        ],
    );
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stdout).contains("verified:    NO"));
}

#[test]
fn rsa_root_issues_identities_openssl_accepts() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--out", "ca", "--key", "rsa-2048"]);
    let root = openssl(&["x509", "-in", "ca/root-cert.pem", "-noout", "-text"], d);
    assert!(root.contains("Public-Key: (2048 bit)"), "{root}");
    ok(
        d,
        &[
            "ca",
            "issue",
            "--ca-dir",
            "ca",
            "--namespace",
            "ns",
            "--service-account",
            "sa",
            "--out",
            "id",
        ],
    );
    let verified = openssl(
        &["verify", "-CAfile", "id/root-cert.pem", "id/cert-chain.pem"],
        d,
    );
    assert!(verified.contains("OK"), "{verified}");
}

#[test]
fn malformed_input_gives_one_line_and_exit_1() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path();
    ok(d, &["ca", "init", "--out", "ca"]);
    let root = std::fs::read_to_string(d.join("ca/root-cert.pem")).unwrap();
    std::fs::write(d.join("truncated.pem"), &root[..root.len() / 2]).unwrap();
    std::fs::write(
        d.join("wrong-block.pem"),
        root.replace("CERTIFICATE", "X509 CRL"),
    )
    .unwrap();
    std::fs::write(
        d.join("garbage.der"),
        [0x30u8, 0x82, 0x01, 0x00, 0xde, 0xad, 0xbe, 0xef],
    )
    .unwrap();
    std::fs::write(
        d.join("garbage.pem"),
        "-----BEGIN CERTIFICATE-----\nAAECAwQF\n-----END CERTIFICATE-----\n",
    )
    .unwrap();

    let e = fails_with_one_line(d, &["ca", "inspect", "truncated.pem"]);
    assert!(
        e.contains("truncated.pem: truncated or malformed PEM"),
        "{e}"
    );
    let e = fails_with_one_line(d, &["ca", "inspect", "wrong-block.pem"]);
    assert!(
        e.contains("wrong-block.pem: block 1 is \"X509 CRL\", expected \"CERTIFICATE\""),
        "{e}"
    );
    let e = fails_with_one_line(d, &["ca", "inspect", "ca/ca-key.pem"]);
    assert!(
        e.contains("a private key where a certificate was expected"),
        "{e}"
    );
    let e = fails_with_one_line(d, &["ca", "inspect", "garbage.der"]);
    assert!(
        e.contains("garbage.der: certificate (unparsed): not a valid X.509 certificate"),
        "{e}"
    );
    let e = fails_with_one_line(d, &["ca", "inspect", "garbage.pem"]);
    assert!(e.contains("garbage.pem: certificate (unparsed)"), "{e}");
    let e = fails_with_one_line(d, &["ca", "inspect", "missing.pem"]);
    assert!(e.contains("missing.pem: cannot read"), "{e}");

    // A CA directory whose key file holds a certificate.
    std::fs::create_dir(d.join("broken")).unwrap();
    for f in ["ca-cert.pem", "cert-chain.pem", "root-cert.pem"] {
        std::fs::copy(d.join("ca").join(f), d.join("broken").join(f)).unwrap();
    }
    std::fs::write(d.join("broken/ca-key.pem"), &root).unwrap();
    let e = fails_with_one_line(
        d,
        &[
            "ca",
            "issue",
            "--ca-dir",
            "broken",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--out",
            "x",
        ],
    );
    assert!(
        e.contains("ca-key.pem: private key: found a CERTIFICATE block"),
        "{e}"
    );
    let e = fails_with_one_line(
        d,
        &[
            "ca",
            "issue",
            "--ca-dir",
            "ca",
            "--namespace",
            "a",
            "--service-account",
            "b",
            "--ttl",
            "forever",
            "--out",
            "x",
        ],
    );
    assert!(e.contains("--ttl"), "{e}");
    let e = fails_with_one_line(
        d,
        &[
            "ca",
            "issue",
            "--ca-dir",
            "ca",
            "--namespace",
            "A_B",
            "--service-account",
            "b/c",
            "--out",
            "x",
        ],
    );
    assert!(e.contains("invalid SPIFFE id"), "{e}");
    let e = fails_with_one_line(d, &["ca", "init", "--out", "k", "--key", "dsa-1024"]);
    assert!(e.contains("unsupported key type \"dsa-1024\""), "{e}");
}
