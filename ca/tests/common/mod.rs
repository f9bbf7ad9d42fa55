//! Shared helpers of the CA integration tests: a fixed clock, files in a temp dir,
//! and running `openssl` (a tool nobody here wrote) as the judge.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};
use trellis_ca::{CertificateAuthority, KeyAlgorithm, Rng, RootOptions, SystemRandom, TrustDomain};

pub const DAY: Duration = Duration::from_secs(24 * 3600);

pub fn rng() -> Rng {
    Arc::new(SystemRandom::new())
}

/// The real clock: openssl and rustls validate against it.
pub fn now() -> SystemTime {
    SystemTime::now()
}

/// A fixed instant for tests that never leave the library.
pub fn fixed_now() -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(1_800_000_000)
}

pub fn td(name: &str) -> TrustDomain {
    TrustDomain::new(name).unwrap()
}

pub fn self_signed(trust_domain: &str, key: KeyAlgorithm, now: SystemTime) -> CertificateAuthority {
    let mut opts = RootOptions::new(td(trust_domain));
    opts.key = key;
    CertificateAuthority::new_self_signed(&opts, now, rng()).unwrap()
}

pub fn openssl_bin() -> String {
    std::env::var("OPENSSL_BIN").unwrap_or_else(|_| "openssl".to_string())
}

/// Runs openssl in `dir`; returns (success, stdout+stderr).
pub fn openssl(dir: &Path, args: &[&str]) -> (bool, String) {
    let out = Command::new(openssl_bin())
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| {
            panic!("cannot run openssl ({e}); install it (make setup) or set OPENSSL_BIN")
        });
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

pub fn openssl_ok(dir: &Path, args: &[&str]) -> String {
    let (ok, text) = openssl(dir, args);
    assert!(ok, "openssl {args:?} failed:\n{text}");
    text
}

pub fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let p = dir.join(name);
    std::fs::write(&p, text).unwrap();
    p
}

pub fn read(dir: &Path, name: &str) -> String {
    std::fs::read_to_string(dir.join(name)).unwrap()
}

/// Splits a chain PEM into (leaf PEM, rest PEM).
pub fn split_leaf(chain_pem: &str) -> (String, String) {
    let marker = "-----END CERTIFICATE-----\n";
    let cut = chain_pem.find(marker).expect("chain has a certificate") + marker.len();
    (chain_pem[..cut].to_string(), chain_pem[cut..].to_string())
}

/// Builds an Istio `cacerts` directory with openssl alone: a root and an intermediate
/// of the given openssl key kind ("ec" gives SEC1 keys, "rsa" PKCS#1 keys).
pub fn openssl_cacerts(dir: &Path, kind: &str) {
    let newkey = |name: &str| match kind {
        "ec" => openssl_ok(
            dir,
            &[
                "ecparam",
                "-name",
                "prime256v1",
                "-genkey",
                "-noout",
                "-out",
                name,
            ],
        ),
        "rsa" => {
            openssl_ok(
                dir,
                &[
                    "genpkey",
                    "-algorithm",
                    "RSA",
                    "-pkeyopt",
                    "rsa_keygen_bits:2048",
                    "-out",
                    "tmp.pem",
                ],
            );
            openssl_ok(
                dir,
                &["pkey", "-in", "tmp.pem", "-traditional", "-out", name],
            )
        }
        other => panic!("unknown key kind {other}"),
    };
    write(
        dir,
        "ext.cnf",
        "[inter]\nbasicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );
    newkey("root-key.pem");
    openssl_ok(
        dir,
        &[
            "req",
            "-x509",
            "-new",
            "-key",
            "root-key.pem",
            "-out",
            "root-cert.pem",
            "-days",
            "30",
            "-subj",
            "/O=Plugged/CN=Plugged Root",
            "-config",
            "/dev/null",
            "-addext",
            "basicConstraints=critical,CA:true",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
    newkey("ca-key.pem");
    openssl_ok(
        dir,
        &[
            "req",
            "-new",
            "-key",
            "ca-key.pem",
            "-out",
            "ca.csr",
            "-subj",
            "/O=Plugged/CN=Plugged Intermediate",
            "-config",
            "/dev/null",
        ],
    );
    openssl_ok(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "ca.csr",
            "-CA",
            "root-cert.pem",
            "-CAkey",
            "root-key.pem",
            "-set_serial",
            "7",
            "-out",
            "ca-cert.pem",
            "-days",
            "20",
            "-extfile",
            "ext.cnf",
            "-extensions",
            "inter",
        ],
    );
    let chain = read(dir, "ca-cert.pem") + &read(dir, "root-cert.pem");
    write(dir, "cert-chain.pem", &chain);
}
