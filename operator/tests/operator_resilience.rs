//! The API server goes away (every connection cut, new ones refused) and comes back:
//! the operator keeps running, stops writing once it cannot renew its Lease, backs
//! off, and when the server returns catches up with what changed meanwhile — without
//! a restart.

mod operator_support;

use operator_support::proxy::RecordingProxy;
use operator_support::*;
use std::time::Duration;

#[test]
fn operator_survives_the_api_server_going_away_and_back() {
    let cluster = Cluster::start_with(Options {
        tls: false,
        ..Options::default()
    });
    let upstream = cluster
        .server
        .url()
        .trim_start_matches("http://")
        .parse()
        .expect("simulator address");
    // The operator reaches the simulator only through this proxy.
    let proxy = RecordingProxy::start(upstream);
    cluster.namespace("shop", &["istio-injection=enabled"], &["web"]);
    let mut op = Operator::start(proxy.kubeconfig(), "op-1", &default_args());
    op.wait_ready();
    let before = cluster.wait_identity("shop", "web");
    let ca = cluster
        .kubectl
        .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca"])
        .unwrap();
    let root = secret_field(&ca, "root-cert.pem");

    proxy.set_down(true);
    wait_for(
        "the operator to give up leadership",
        Duration::from_secs(30),
        || (op.metric("trellis_leader") == Some(0.0)).then_some(()),
    );
    // Changes while the operator cannot see them.
    cluster.namespace("shop", &["istio-injection=enabled"], &["late"]);
    cluster
        .kubectl
        .run(&["delete", "secret", "-n", "shop", "trellis-identity-web"]);
    cluster
        .kubectl
        .run(&["delete", "secret", "-n", OPERATOR_NS, "trellis-ca"]);
    assert!(
        op.try_status().is_none(),
        "the operator exited: {}",
        op.log_text()
    );

    proxy.set_down(false);
    wait_for("leadership back", Duration::from_secs(60), || {
        (op.metric("trellis_leader") == Some(1.0)).then_some(())
    });
    let late = cluster.wait_identity("shop", "late");
    let web = wait_for("shop/web repaired", Duration::from_secs(60), || {
        cluster.identity("shop", "web")
    });
    assert_ne!(web["metadata"]["uid"], before["metadata"]["uid"]);
    // trellis-ca deleted by hand is stored again with the root in use, not a new one.
    let again = wait_for("trellis-ca stored again", Duration::from_secs(30), || {
        cluster
            .kubectl
            .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca"])
    });
    assert_eq!(secret_field(&again, "root-cert.pem"), root);
    assert_eq!(
        verify_identity(&late, &root).uri,
        "spiffe://cluster.local/ns/shop/sa/late"
    );
    assert_eq!(
        verify_identity(&web, &root).uri,
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    assert!(
        op.try_status().is_none(),
        "the operator exited: {}",
        op.log_text()
    );
}
