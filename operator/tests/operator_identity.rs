//! `trellis operator` against the Kubernetes API simulator: mesh namespaces get the
//! root ConfigMap and one verified SPIFFE identity per ServiceAccount; Secrets follow
//! their ServiceAccounts; edits are repaired; renewals and restarts write only what
//! must change.

mod operator_support;

use operator_support::*;
use std::collections::BTreeMap;
use std::time::Duration;

fn root_config_map(cluster: &Cluster, ns: &str) -> Option<String> {
    cluster
        .kubectl
        .get_json(&["configmap", "-n", ns, "trellis-ca-root-cert"])
        .and_then(|cm| cm["data"]["root-cert.pem"].as_str().map(str::to_string))
}

#[test]
fn labelled_namespace_gets_root_configmap_and_verified_identities() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &[], &["web", "api", "default"]);
    cluster.namespace("pay", &[], &["default"]);
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &default_args());
    op.wait_ready();

    // The CA is persisted before anything is labelled; nothing is issued outside the mesh.
    let ca = cluster.wait_own_ca();
    let ca_root = secret_field(&ca, "root-cert.pem");
    assert!(secret_field(&ca, "ca-key.pem").contains("PRIVATE KEY"));
    assert!(cluster.identity("shop", "web").is_none());
    assert!(root_config_map(&cluster, "shop").is_none());

    cluster
        .kubectl
        .run(&["label", "namespace", "shop", "istio-injection=enabled"]);
    let bundle = wait_for("root ConfigMap in shop", Duration::from_secs(60), || {
        root_config_map(&cluster, "shop")
    });
    assert_eq!(
        bundle, ca_root,
        "the ConfigMap holds the whole trust bundle"
    );
    for sa in ["web", "api", "default"] {
        let secret = cluster.wait_identity("shop", sa);
        let verified = verify_identity(&secret, &bundle);
        assert_eq!(
            verified.uri,
            format!("spiffe://cluster.local/ns/shop/sa/{sa}")
        );
        assert_eq!(secret_field(&secret, "root-cert.pem"), bundle);
        let owner = &secret["metadata"]["ownerReferences"][0];
        let account = cluster
            .kubectl
            .get_json(&["serviceaccount", "-n", "shop", sa])
            .unwrap();
        assert_eq!(owner["kind"], "ServiceAccount");
        assert_eq!(owner["uid"], account["metadata"]["uid"]);
    }
    // One API write per identity.
    let writes = wait_for("identity metrics", Duration::from_secs(10), || {
        op.metric("trellis_api_writes_total{controller=\"identity\"}")
    });
    assert_eq!(writes, 3.0, "one write per identity");
    assert_eq!(
        op.metric("trellis_identity_issued_total{reason=\"new\"}"),
        Some(3.0)
    );
    // Expiry gauges: a 24 h workload certificate, a ten-year root; reconcile histograms.
    let earliest = wait_for("the earliest-expiry gauge", Duration::from_secs(30), || {
        op.metric("trellis_identity_earliest_expiry_seconds")
            .filter(|s| *s > 0.0)
    });
    assert!(earliest <= 24.0 * 3600.0, "{earliest}");
    let root = op.metric("trellis_ca_root_expiry_seconds").unwrap_or(0.0);
    assert!(root > 9.0 * 365.0 * 86400.0, "{root}");
    let m = op.metrics();
    for controller in ["identity", "namespace", "ca"] {
        let count = format!(
            "trellis_controller_reconcile_duration_seconds_count{{controller=\"{controller}\"}}"
        );
        assert!(m.get(&count).copied().unwrap_or(0.0) >= 1.0, "no {count}");
    }

    // istio.io/rev also puts a namespace in the mesh.
    cluster
        .kubectl
        .run(&["label", "namespace", "pay", "istio.io/rev=default"]);
    let pay = cluster.wait_identity("pay", "default");
    assert_eq!(
        verify_identity(&pay, &bundle).uri,
        "spiffe://cluster.local/ns/pay/sa/default"
    );

    // Deleting a ServiceAccount deletes its Secret (owner reference, simulator GC).
    cluster
        .kubectl
        .run(&["delete", "serviceaccount", "-n", "shop", "api"]);
    wait_for("Secret of shop/api to go", Duration::from_secs(30), || {
        cluster.identity("shop", "api").is_none().then_some(())
    });

    // A Secret deleted by hand comes back; one edited by hand is repaired.
    let before = cluster.identity("shop", "web").unwrap();
    let serial_before = verify_identity(&before, &bundle).serial;
    cluster
        .kubectl
        .run(&["delete", "secret", "-n", "shop", "trellis-identity-web"]);
    let recreated = wait_for(
        "Secret of shop/web recreated",
        Duration::from_secs(30),
        || {
            cluster
                .identity("shop", "web")
                .filter(|s| s["metadata"]["uid"] != before["metadata"]["uid"])
        },
    );
    let serial_recreated = verify_identity(&recreated, &bundle).serial;
    assert_ne!(serial_recreated, serial_before);
    cluster.kubectl.run(&[
        "patch", "secret", "-n", "shop", "trellis-identity-web", "--type=merge", "-p",
        r#"{"data":{"key.pem":"LS0tLS1CRUdJTiBQUklWQVRFIEtFWS0tLS0tCkFBQUEKLS0tLS1FTkQgUFJJVkFURSBLRVktLS0tLQo="}}"#,
    ]);
    let repaired = wait_for(
        "Secret of shop/web repaired",
        Duration::from_secs(30),
        || {
            cluster.identity("shop", "web").filter(|s| {
                secret_field(s, "key.pem").len() > 100
                    && verify_identity(s, &bundle).serial != serial_recreated
            })
        },
    );
    assert_eq!(
        verify_identity(&repaired, &bundle).uri,
        "spiffe://cluster.local/ns/shop/sa/web"
    );

    // Events on the ServiceAccounts.
    let events = cluster
        .kubectl
        .list(&["events.events.k8s.io", "-n", "shop"]);
    assert!(
        events.iter().any(|e| e["reason"] == "IdentityIssued"
            && e["regarding"]["kind"] == "ServiceAccount"
            && e["regarding"]["name"] == "web"),
        "no IdentityIssued event for shop/web: {events:?}"
    );

    // Leaving the mesh removes what the operator created there.
    cluster
        .kubectl
        .run(&["label", "namespace", "shop", "istio-injection-"]);
    wait_for("shop cleaned up", Duration::from_secs(30), || {
        (root_config_map(&cluster, "shop").is_none()
            && cluster.identity("shop", "web").is_none()
            && cluster.identity("shop", "default").is_none())
        .then_some(())
    });
    // The other mesh namespace is untouched.
    assert_eq!(rv(&cluster.identity("pay", "default").unwrap()), rv(&pay));
    assert!(
        op.try_status().is_none(),
        "operator exited: {}",
        op.log_text()
    );
}

#[test]
fn restart_reissues_nothing_still_valid() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"], &["web", "api"]);
    cluster.namespace("pay", &["istio.io/rev=canary"], &["default"]);
    let versions = |cluster: &Cluster| -> BTreeMap<String, String> {
        let mut v = BTreeMap::new();
        for (ns, sa) in [("shop", "web"), ("shop", "api"), ("pay", "default")] {
            v.insert(format!("{ns}/{sa}"), rv(&cluster.wait_identity(ns, sa)));
        }
        for ns in ["shop", "pay"] {
            let cm = wait_for("root ConfigMap", Duration::from_secs(30), || {
                cluster
                    .kubectl
                    .get_json(&["configmap", "-n", ns, "trellis-ca-root-cert"])
            });
            v.insert(format!("{ns}/configmap"), rv(&cm));
            // The sidecar bootstrap is written by the same controller; the first
            // operator must have finished it too, or the second one rightly writes it.
            let bootstrap = wait_for("bootstrap ConfigMap", Duration::from_secs(30), || {
                cluster
                    .kubectl
                    .get_json(&["configmap", "-n", ns, "trellis-sidecar-bootstrap"])
            });
            v.insert(format!("{ns}/bootstrap"), rv(&bootstrap));
        }
        let ca = cluster
            .kubectl
            .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca"])
            .unwrap();
        v.insert("trellis-ca".into(), rv(&ca));
        v
    };
    let first = {
        let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-a", &default_args());
        op.wait_ready();
        let v = versions(&cluster);
        assert!(op.terminate().success(), "graceful exit: {}", op.log_text());
        v
    };
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-b", &default_args());
    op.wait_ready();
    // Wait until the new operator leads and has looked at every identity.
    wait_for("op-b to lead", Duration::from_secs(30), || {
        (lease_holder(&cluster.kubectl).as_deref() == Some("op-b")).then_some(())
    });
    wait_for(
        "op-b to reconcile the identities",
        Duration::from_secs(30),
        || {
            op.metric("trellis_controller_reconciles_total{controller=\"identity\"}")
                .filter(|n| *n >= 3.0)
        },
    );
    wait_for(
        "op-b to reconcile the namespaces",
        Duration::from_secs(30),
        || {
            op.metric("trellis_controller_reconciles_total{controller=\"namespace\"}")
                .filter(|n| *n >= 2.0)
        },
    );
    let second = versions(&cluster);
    assert_eq!(
        first, second,
        "a restart must not rewrite anything still valid"
    );
    for controller in ["identity", "namespace", "ca"] {
        let writes = op
            .metric(&format!(
                "trellis_api_writes_total{{controller=\"{controller}\"}}"
            ))
            .unwrap_or(0.0);
        assert_eq!(writes, 0.0, "{controller} wrote after a restart");
    }
}

#[test]
fn short_ttl_renews_at_the_renewal_time_without_reissuing_others() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"], &["first"]);
    // Lifetime = 20 s TTL + 300 s backdate; renewal at notBefore + 0.975 x 320 s =
    // 12 s after issue, no jitter.
    let mut args = default_args();
    args.extend(
        [
            "--workload-cert-ttl",
            "20s",
            "--renewal-ratio",
            "0.975",
            "--renewal-jitter",
            "0",
        ]
        .map(String::from),
    );
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();
    let bundle = wait_for("root ConfigMap", Duration::from_secs(30), || {
        root_config_map(&cluster, "shop")
    });
    let first = verify_identity(&cluster.wait_identity("shop", "first"), &bundle).serial;
    // A second identity issued at least 6 s later renews at least 6 s after the first:
    // a wide margin for observing the first renewal on a loaded machine.
    std::thread::sleep(Duration::from_secs(6));
    cluster.namespace("shop", &["istio-injection=enabled"], &["second"]);
    let second_secret = cluster.wait_identity("shop", "second");
    let second = verify_identity(&second_secret, &bundle).serial;
    let renewed = wait_for("renewal of shop/first", Duration::from_secs(30), || {
        let s = cluster.identity("shop", "first")?;
        let v = verify_identity(&s, &bundle);
        (v.serial != first).then_some(v)
    });
    assert_eq!(renewed.uri, "spiffe://cluster.local/ns/shop/sa/first");
    // The renewal of `first` did not touch `second`, whose own time has not come.
    let now_second = cluster.identity("shop", "second").unwrap();
    assert_eq!(
        verify_identity(&now_second, &bundle).serial,
        second,
        "renewing shop/first reissued shop/second"
    );
    assert!(
        op.metric("trellis_identity_renewed_total{reason=\"lifetime\"}")
            .unwrap_or(0.0)
            >= 1.0
    );
    // Every write was an issuance or a renewal: one write per certificate.
    let m = op.metrics();
    let get = |k: &str| m.get(k).copied().unwrap_or(0.0);
    let writes = get("trellis_api_writes_total{controller=\"identity\"}");
    let issued = get("trellis_identity_issued_total{reason=\"new\"}")
        + get("trellis_identity_renewed_total{reason=\"lifetime\"}");
    assert_eq!(writes, issued, "writes per certificate");
}
