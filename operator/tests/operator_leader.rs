//! Leader election between two real `trellis operator` processes: only the leader
//! writes; killing it hands the Lease over; SIGTERM releases the Lease.

mod operator_support;

use operator_support::*;
use std::time::Duration;

/// The `MeshConfigRejected` event published by `instance`, if any.
fn rejection_by(cluster: &Cluster, instance: &str) -> Option<serde_json::Value> {
    cluster
        .kubectl
        .list(&["events.events.k8s.io", "-A"])
        .into_iter()
        .find(|e| e["reason"] == "MeshConfigRejected" && e["reportingInstance"] == instance)
}

fn writes(op: &Operator) -> f64 {
    op.metrics()
        .iter()
        .filter(|(k, _)| k.starts_with("trellis_api_writes_total"))
        .map(|(_, v)| v)
        .sum()
}

#[test]
fn killing_the_leader_hands_over_and_only_the_leader_writes() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"], &["web"]);
    let mut a = Operator::start(cluster.server.kubeconfig_path(), "op-a", &default_args());
    let mut b = Operator::start(cluster.server.kubeconfig_path(), "op-b", &default_args());
    a.wait_ready();
    b.wait_ready();
    let leader = wait_for("a leader", Duration::from_secs(30), || {
        lease_holder(&cluster.kubectl)
    });
    cluster.wait_identity("shop", "web");
    let (mut leader_op, mut follower) = if leader == "op-a" { (a, b) } else { (b, a) };
    assert_eq!(leader_op.metric("trellis_leader"), Some(1.0));
    assert_eq!(follower.metric("trellis_leader"), Some(0.0));
    assert_eq!(writes(&follower), 0.0, "a follower must not write");
    assert!(writes(&leader_op) >= 1.0);
    // A MeshConfig both replicas reject: only the leader reports it.
    cluster.apply_mesh_config("  workloadCertTtl: soon\n");
    wait_for(
        "the leader's MeshConfigRejected event",
        Duration::from_secs(30),
        || rejection_by(&cluster, &leader),
    );
    assert!(rejection_by(&cluster, &follower.identity).is_none());

    // SIGKILL: no release; the follower takes over once the Lease expires.
    leader_op.kill();
    let new_leader = wait_for(
        "the follower to take the Lease",
        Duration::from_secs(30),
        || lease_holder(&cluster.kubectl).filter(|h| *h != leader),
    );
    assert_eq!(new_leader, follower.identity);
    wait_for("the new leader's gauge", Duration::from_secs(10), || {
        (follower.metric("trellis_leader") == Some(1.0)).then_some(())
    });
    // The problem it saw as a follower, reported now that it leads.
    wait_for(
        "the new leader's MeshConfigRejected event",
        Duration::from_secs(30),
        || rejection_by(&cluster, &new_leader),
    );
    // The new leader does the work.
    cluster.namespace("pay", &["istio-injection=enabled"], &["default"]);
    let secret = cluster.wait_identity("pay", "default");
    let bundle = secret_field(&secret, "root-cert.pem");
    assert_eq!(
        verify_identity(&secret, &bundle).uri,
        "spiffe://cluster.local/ns/pay/sa/default"
    );
    // It kept the root and the identities of the old leader.
    let web = cluster.identity("shop", "web").unwrap();
    verify_identity(&web, &bundle);
    let lease = cluster
        .kubectl
        .get_json(&["lease", "-n", OPERATOR_NS, "trellis-operator-leader"])
        .unwrap();
    assert!(lease["spec"]["leaseTransitions"].as_i64().unwrap_or(0) >= 1);
    assert!(follower.try_status().is_none(), "{}", follower.log_text());
}

#[test]
fn sigterm_releases_the_lease_and_exits_cleanly() {
    let cluster = Cluster::start();
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &default_args());
    op.wait_ready();
    wait_for("op-1 to lead", Duration::from_secs(30), || {
        (lease_holder(&cluster.kubectl).as_deref() == Some("op-1")).then_some(())
    });
    let status = op.terminate();
    assert!(status.success(), "exit status {status}: {}", op.log_text());
    assert_eq!(
        lease_holder(&cluster.kubectl),
        None,
        "the Lease is released on SIGTERM"
    );
    let log = op.log_text();
    assert!(log.contains("released the lease"), "{log}");
    // A successor takes over at once: no need to wait out the lease duration.
    let mut next = Operator::start(cluster.server.kubeconfig_path(), "op-2", &default_args());
    next.wait_ready();
    wait_for("op-2 to lead", Duration::from_secs(10), || {
        (lease_holder(&cluster.kubectl).as_deref() == Some("op-2")).then_some(())
    });
}
