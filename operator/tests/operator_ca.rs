//! CA persistence with the real operator: Istio's plugged-in `cacerts` (root +
//! intermediate made with openssl) takes precedence over `trellis-ca`; a broken
//! `cacerts` is reported and the last good CA stays; removing `cacerts` moves to the
//! operator's own root and reissues every identity under it.

mod operator_support;

use base64::Engine;
use operator_support::*;
use std::path::Path;
use std::time::Duration;
use trellis_e2e::{self_signed_ca, signed_by};

/// A root and an intermediate in Istio's `cacerts` layout, made with openssl.
fn plugged_in_ca(dir: &Path) {
    self_signed_ca(
        dir,
        "root-key.pem",
        "root-cert.pem",
        "/O=Plugged/CN=Plugged Root CA",
    );
    signed_by(
        dir,
        ("root-key.pem", "root-cert.pem"),
        ("ca-key.pem", "ca-cert.pem"),
        "/O=Plugged/CN=Plugged Intermediate CA",
        "basicConstraints=critical,CA:true,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign,digitalSignature\nsubjectKeyIdentifier=hash\nauthorityKeyIdentifier=keyid\n",
    );
    let chain = std::fs::read_to_string(dir.join("ca-cert.pem")).unwrap()
        + &std::fs::read_to_string(dir.join("root-cert.pem")).unwrap();
    std::fs::write(dir.join("cert-chain.pem"), chain).unwrap();
    // Another key, to break the Secret with.
    openssl(
        &[
            "genpkey",
            "-algorithm",
            "EC",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-out",
            "other-key.pem",
        ],
        dir,
    );
}

fn cacerts_yaml(dir: &Path, key_file: &str) -> String {
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(f)).unwrap())
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  namespace: {OPERATOR_NS}\ntype: Opaque\ndata:\n  ca-cert.pem: {}\n  ca-key.pem: {}\n  root-cert.pem: {}\n  cert-chain.pem: {}\n",
        b64("ca-cert.pem"),
        b64(key_file),
        b64("root-cert.pem"),
        b64("cert-chain.pem"),
    )
}

#[test]
fn plugged_in_cacerts_win_broken_ones_keep_the_last_good_ca() {
    let dir = tempfile::tempdir().unwrap();
    plugged_in_ca(dir.path());
    let plugged_root = std::fs::read_to_string(dir.path().join("root-cert.pem")).unwrap();
    let cluster = Cluster::start();
    cluster
        .kubectl
        .apply(&cacerts_yaml(dir.path(), "ca-key.pem"));
    cluster.namespace("shop", &["istio-injection=enabled"], &["web", "api"]);
    let mut args = default_args();
    // Slow enough that the overlap can be observed, and a short grace.
    args.extend(["--rotation-rate", "1", "--rotation-grace", "3s"].map(String::from));
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();

    // Identities chain through the intermediate to the plugged-in root.
    let web = cluster.wait_identity("shop", "web");
    let chain = secret_field(&web, "cert-chain.pem");
    assert_eq!(
        chain.matches("BEGIN CERTIFICATE").count(),
        2,
        "leaf + intermediate"
    );
    assert_eq!(
        verify_identity(&web, &plugged_root).uri,
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    let cm = wait_for("root ConfigMap", Duration::from_secs(30), || {
        cluster
            .kubectl
            .get_json(&["configmap", "-n", "shop", "trellis-ca-root-cert"])
    });
    assert_eq!(
        cm["data"]["root-cert.pem"].as_str().unwrap().trim(),
        plugged_root.trim()
    );
    assert!(
        cluster
            .kubectl
            .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca"])
            .is_none(),
        "no own root is made while cacerts is good"
    );

    // A cacerts whose key does not match its certificate: reported, last good CA kept.
    let web_rv = rv(&web);
    cluster
        .kubectl
        .apply(&cacerts_yaml(dir.path(), "other-key.pem"));
    let event = wait_for("a CARejected event", Duration::from_secs(30), || {
        cluster
            .kubectl
            .list(&["events.events.k8s.io", "-n", OPERATOR_NS])
            .into_iter()
            .find(|e| e["reason"] == "CARejected" && e["regarding"]["name"] == "cacerts")
    });
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("ca-key.pem"),
        "the event names the file: {note}"
    );
    assert!(!note.contains("PRIVATE KEY"), "no key material in events");
    assert!(op.log_text().contains("CA Secret rejected"));
    assert!(op.try_status().is_none(), "no crash: {}", op.log_text());
    assert_eq!(op.http_get("/readyz").map(|r| r.0), Some(200));
    assert_eq!(rv(&cluster.identity("shop", "web").unwrap()), web_rv);
    // New identities are still issued by the last good CA.
    cluster.namespace("shop", &["istio-injection=enabled"], &["late"]);
    let late = cluster.wait_identity("shop", "late");
    verify_identity(&late, &plugged_root);

    // Without cacerts the operator makes its own root and moves every identity to it;
    // the bundle keeps the old root until every identity has moved (plus the grace).
    cluster
        .kubectl
        .run(&["delete", "secret", "-n", OPERATOR_NS, "cacerts"]);
    let own = cluster.wait_own_ca();
    let own_root = secret_field(&own, "root-cert.pem");
    wait_for("the rotation to start", Duration::from_secs(30), || {
        op.metric("trellis_ca_rotation_remaining")
            .filter(|n| *n > 0.0)
    });
    let cm = cluster
        .kubectl
        .get_json(&["configmap", "-n", "shop", "trellis-ca-root-cert"])
        .unwrap();
    let overlap = cm["data"]["root-cert.pem"].as_str().unwrap();
    assert!(
        overlap.contains(own_root.trim()) && overlap.contains(plugged_root.trim()),
        "both roots are trusted while identities move"
    );
    for sa in ["web", "api", "late"] {
        let moved = wait_for(
            &format!("shop/{sa} under the new root"),
            Duration::from_secs(60),
            || {
                cluster.identity("shop", sa).filter(|s| {
                    secret_field(s, "cert-chain.pem")
                        .matches("BEGIN CERTIFICATE")
                        .count()
                        == 1
                })
            },
        );
        verify_identity(&moved, &own_root);
    }
    // Then the old root leaves every bundle (a rewrite, not a reissue).
    wait_for(
        "the old root to leave the ConfigMap",
        Duration::from_secs(60),
        || {
            let cm =
                cluster
                    .kubectl
                    .get_json(&["configmap", "-n", "shop", "trellis-ca-root-cert"])?;
            (cm["data"]["root-cert.pem"].as_str()?.trim() == own_root.trim()).then_some(())
        },
    );
    for sa in ["web", "api", "late"] {
        let s = wait_for(
            &format!("shop/{sa} bundle without the old root"),
            Duration::from_secs(60),
            || {
                cluster
                    .identity("shop", sa)
                    .filter(|s| secret_field(s, "root-cert.pem").trim() == own_root.trim())
            },
        );
        verify_identity(&s, &own_root);
    }
    let m = op.metrics();
    assert_eq!(
        m.get("trellis_identity_renewed_total{reason=\"root\"}"),
        Some(&3.0)
    );
    assert_eq!(m.get("trellis_ca_rotation_remaining"), Some(&0.0));
}

#[test]
fn broken_cacerts_at_first_start_is_reported_and_the_operator_runs_on_its_own_root() {
    let cluster = Cluster::start();
    cluster.kubectl.apply(&format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  namespace: {OPERATOR_NS}\nstringData:\n  ca-cert.pem: not a certificate\n  ca-key.pem: not a key\n  root-cert.pem: not a root\n"
    ));
    cluster.namespace("shop", &["istio-injection=enabled"], &["web"]);
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &default_args());
    op.wait_ready();
    let own = cluster.wait_own_ca();
    let root = secret_field(&own, "root-cert.pem");
    let web = cluster.wait_identity("shop", "web");
    assert_eq!(
        verify_identity(&web, &root).uri,
        "spiffe://cluster.local/ns/shop/sa/web"
    );
    let event = wait_for("a CARejected event", Duration::from_secs(30), || {
        cluster
            .kubectl
            .list(&["events.events.k8s.io", "-n", OPERATOR_NS])
            .into_iter()
            .find(|e| e["reason"] == "CARejected" && e["regarding"]["name"] == "cacerts")
    });
    assert!(
        event["note"]
            .as_str()
            .unwrap_or_default()
            .contains("ca-cert.pem"),
        "{event}"
    );
    assert!(
        op.try_status().is_none(),
        "no crash loop: {}",
        op.log_text()
    );
}
