//! A generated bootstrap, with its SDS files pointing at a certificate
//! directory in the secret-volume layout, is accepted by the real Envoy.
use std::path::Path;
use std::process::Command;
use trellis_e2e::{envoy_bin, self_signed, signed_by};
use trellis_local::bootstrap::{BootstrapSpec, ServerSan, write_bootstrap};
use trellis_local::state::{CertFile, StateDir, write_cert_dir};

/// A throwaway root and a workload certificate with a SPIFFE URI SAN.
fn make_certs(dir: &Path) {
    self_signed(dir, "root.key", "root.pem", "/O=test-root", &[]);
    signed_by(
        dir,
        ("root.key", "root.pem"),
        ("key.pem", "cert.pem"),
        "/O=test",
        "subjectAltName=URI:spiffe://cluster.local/ns/shop/sa/cart\n",
    );
}

#[test]
fn envoy_accepts_generated_bootstrap() {
    let envoy = envoy_bin();
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    std::fs::create_dir(&work).unwrap();
    make_certs(&work);
    let state = StateDir::open(tmp.path().join("state")).unwrap();
    let cert_dir = state.cert_dir("shop", "cart").unwrap();
    let read = |n: &str| std::fs::read(work.join(n)).unwrap();
    let (chain, key, root) = (read("cert.pem"), read("key.pem"), read("root.pem"));
    write_cert_dir(
        &cert_dir,
        &[
            CertFile {
                name: "cert-chain.pem",
                contents: &chain,
                private: false,
            },
            CertFile {
                name: "key.pem",
                contents: &key,
                private: true,
            },
            CertFile {
                name: "root-cert.pem",
                contents: &root,
                private: false,
            },
        ],
    )
    .unwrap();
    let spec = BootstrapSpec {
        node_id: "sidecar~127.0.0.13~cart-v1.shop~shop.svc.cluster.local".into(),
        node_cluster: "cart.shop".into(),
        node_metadata: [("SERVICE_ACCOUNT".to_string(), "cart".to_string())].into(),
        admin: "127.0.0.1:0".parse().unwrap(),
        xds: "127.0.0.1:15010".parse().unwrap(),
        xds_server_san: ServerSan::Uri(
            "spiffe://cluster.local/ns/trellis-system/sa/trellis".into(),
        ),
        cert_dir,
        out_dir: state.bootstrap_dir().join("shop").join("cart-v1"),
    };
    let (path, sds) = write_bootstrap(&spec).unwrap();
    assert!(sds.workload_cert.exists() && sds.root_ca.exists());
    let out = Command::new(&envoy)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "envoy rejected the bootstrap:\n{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );

    // The same bootstrap without its SDS file is refused, so the check above
    // really covers the file-based SDS wiring of the xDS cluster.
    std::fs::remove_file(&sds.workload_cert).unwrap();
    let out = Command::new(&envoy)
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&path)
        .arg("--disable-hot-restart")
        .output()
        .unwrap();
    assert!(
        !out.status.success(),
        "validation passed without the SDS file"
    );
}
