//! The lifetime of the self-signed root the operator creates follows
//! `MeshConfig/default` `spec.rootCertTtl` over `--root-cert-ttl` (checked with openssl).

mod operator_support;

use operator_support::*;
use std::process::Command;
use std::time::Duration;

/// `openssl x509 -checkend <secs>`: true when `pem` is still valid `secs` from now.
fn valid_for(pem: &str, secs: u64) -> bool {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("root.pem"), pem).unwrap();
    let out = Command::new(openssl_bin())
        .args(["x509", "-noout", "-in", "root.pem", "-checkend"])
        .arg(secs.to_string())
        .current_dir(dir.path())
        .output()
        .expect("running openssl");
    out.status.success()
}

#[test]
fn mesh_config_root_cert_ttl_sets_the_lifetime_of_a_new_root() {
    let cluster = Cluster::start();
    // 1000 h from MeshConfig; the flag says 10 years.
    cluster.kubectl.apply(
        "apiVersion: mesh.trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata:\n  name: default\nspec:\n  rootCertTtl: 1000h\n",
    );
    let mut args = default_args();
    args.extend(["--root-cert-ttl", "87600h"].map(String::from));
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();
    let own = wait_for("Secret trellis-ca", Duration::from_secs(30), || {
        cluster
            .kubectl
            .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca"])
    });
    let root = secret_field(&own, "root-cert.pem");
    assert!(valid_for(&root, 990 * 3600), "the root lives about 1000 h");
    assert!(
        !valid_for(&root, 1010 * 3600),
        "the root lives 1000 h (MeshConfig), not 10 years (--root-cert-ttl)"
    );
}
