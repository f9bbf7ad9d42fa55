//! The lifetime of the self-signed root the operator creates follows
//! `MeshConfig/default` `spec.rootCertTtl` over `--root-cert-ttl` (checked with openssl).

mod operator_support;

use operator_support::*;

#[test]
fn mesh_config_root_cert_ttl_sets_the_lifetime_of_a_new_root() {
    let cluster = Cluster::start();
    // 1000 h from MeshConfig; the flag says 10 years.
    cluster.apply_mesh_config("  rootCertTtl: 1000h\n");
    let mut args = default_args();
    args.extend(["--root-cert-ttl", "87600h"].map(String::from));
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();
    let own = cluster.wait_own_ca();
    let root = secret_field(&own, "root-cert.pem");
    assert!(valid_for(&root, 990 * 3600), "the root lives about 1000 h");
    assert!(
        !valid_for(&root, 1010 * 3600),
        "the root lives 1000 h (MeshConfig), not 10 years (--root-cert-ttl)"
    );
}
