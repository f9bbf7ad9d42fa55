//! Every API request the real operator makes, recorded by a proxy in front of the
//! simulator (which does not enforce RBAC), must be allowed by the rules written in
//! `operator/controller/rbac.yaml`, which the manifests use.

mod operator_support;

use operator_support::proxy::RecordingProxy;
use operator_support::*;
use std::collections::BTreeSet;
use std::time::Duration;
use trellis_controller::rbac::{Rules, classify};

#[test]
fn every_api_call_of_the_operator_is_allowed_by_rbac_yaml() {
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
    let proxy = RecordingProxy::start(upstream);
    cluster.namespace("shop", &[], &["web", "api"]);
    let mut op = Operator::start(proxy.kubeconfig(), "op-1", &default_args());
    op.wait_ready();
    // Exercise every controller: issue, repair, delete, leave the mesh, CA problems, events.
    cluster
        .kubectl
        .run(&["label", "namespace", "shop", "istio-injection=enabled"]);
    cluster.wait_identity("shop", "web");
    cluster.wait_identity("shop", "api");
    cluster
        .kubectl
        .run(&["delete", "secret", "-n", "shop", "trellis-identity-web"]);
    wait_for("shop/web repaired", Duration::from_secs(30), || {
        cluster.identity("shop", "web")
    });
    cluster.kubectl.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  namespace: {OPERATOR_NS}\nstringData:\n  ca-cert.pem: not a certificate\n  ca-key.pem: not a key\n  root-cert.pem: not a root\n"
    ));
    wait_for("a CARejected event", Duration::from_secs(30), || {
        cluster
            .kubectl
            .list(&["events.events.k8s.io", "-n", OPERATOR_NS])
            .into_iter()
            .find(|e| e["reason"] == "CARejected")
    });
    cluster
        .kubectl
        .run(&["label", "namespace", "shop", "istio-injection-"]);
    wait_for("shop cleaned up", Duration::from_secs(30), || {
        cluster.identity("shop", "api").is_none().then_some(())
    });
    assert!(op.terminate().success(), "{}", op.log_text());

    let rules = Rules::operator(OPERATOR_NS).expect("rbac.yaml parses");
    let mut seen = BTreeSet::new();
    let mut denied = BTreeSet::new();
    for r in proxy.recorded() {
        let Some(req) = classify(&r.method, &r.path, &r.query) else {
            continue; // discovery and other non-resource paths
        };
        seen.insert((req.verb.clone(), req.group.clone(), req.resource.clone()));
        if !rules.allows(&req) {
            denied.insert(format!("{req} ({} {}?{})", r.method, r.path, r.query));
        }
    }
    assert!(
        denied.is_empty(),
        "requests not allowed by operator/controller/rbac.yaml (add a rule there):\n{}",
        denied.into_iter().collect::<Vec<_>>().join("\n")
    );
    // The recording saw the operator's real work, so the check above means something.
    for (verb, group, resource) in [
        ("watch", "", "secrets"),
        ("patch", "", "secrets"),
        ("create", "", "secrets"),
        ("delete", "", "secrets"),
        ("patch", "", "configmaps"),
        ("delete", "", "configmaps"),
        ("watch", "", "serviceaccounts"),
        ("watch", "", "namespaces"),
        ("watch", "", "nodes"),
        ("create", "events.k8s.io", "events"),
        ("update", "coordination.k8s.io", "leases"),
    ] {
        assert!(
            seen.contains(&(verb.to_string(), group.to_string(), resource.to_string())),
            "no {verb} {group}/{resource} recorded; saw {seen:?}"
        );
    }
}
