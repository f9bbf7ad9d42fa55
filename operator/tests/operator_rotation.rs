//! Root rotation survives the operator: the rotation state is kept in Secret
//! `trellis-ca-rotation` (public certificates only), so when the leader is killed
//! mid-rotation (SIGKILL by PID) the next one keeps the old root in every bundle,
//! reissues only the identities still on the old root (at the rate limit) and drops the
//! old root only after all moved plus the grace. Checked with kubectl and openssl.

mod operator_support;

use base64::Engine;
use operator_support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;
use trellis_e2e::self_signed_ca;

const SAS: [&str; 5] = ["a", "b", "c", "d", "e"];

/// A root-only plugged-in CA (`ca-cert.pem` = `root-cert.pem`) made with openssl.
fn openssl_root(dir: &Path) -> String {
    self_signed_ca(
        dir,
        "ca-key.pem",
        "ca-cert.pem",
        "/O=Plugged/CN=Rotation Root B",
    );
    std::fs::read_to_string(dir.join("ca-cert.pem")).unwrap()
}

fn cacerts_yaml(dir: &Path) -> String {
    let b64 = |f: &str| {
        base64::engine::general_purpose::STANDARD.encode(std::fs::read(dir.join(f)).unwrap())
    };
    format!(
        "apiVersion: v1\nkind: Secret\nmetadata:\n  name: cacerts\n  namespace: {OPERATOR_NS}\ntype: Opaque\ndata:\n  ca-cert.pem: {}\n  ca-key.pem: {}\n  root-cert.pem: {}\n",
        b64("ca-cert.pem"),
        b64("ca-key.pem"),
        b64("ca-cert.pem"),
    )
}

/// Whether openssl verifies the identity's chain to `root_pem` (no assertion).
fn chains_to(secret: &Value, root_pem: &str) -> bool {
    let dir = tempfile::tempdir().unwrap();
    openssl_verify(secret, root_pem, dir.path()).0
}

fn identities(cluster: &Cluster) -> BTreeMap<String, Value> {
    cluster
        .kubectl
        .list(&["secret", "-n", "shop", "-l", "trellis.dev/identity=true"])
        .into_iter()
        .map(|s| (s["metadata"]["name"].as_str().unwrap().to_string(), s))
        .collect()
}

fn sa_of(secret_name: &str) -> &str {
    secret_name.strip_prefix("trellis-identity-").unwrap()
}

fn root_config_map(cluster: &Cluster) -> Value {
    cluster
        .kubectl
        .get_json(&["configmap", "-n", "shop", "trellis-ca-root-cert"])
        .expect("ConfigMap trellis-ca-root-cert")
}

fn bundle_has(bundle: &str, root: &str) -> bool {
    bundle.contains(root.trim())
}

#[test]
fn a_killed_leader_mid_rotation_hands_over_the_rotation_to_the_next_one() {
    handover(false);
}

/// The same with the next leader already running as a follower when the rotation
/// starts (its own memory of the rotation, the stored one, and its first writes).
#[test]
fn a_standby_replica_takes_over_a_rotation_when_the_leader_is_killed() {
    handover(true);
}

fn handover(standby: bool) {
    let dir = tempfile::tempdir().unwrap();
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"], &SAS);
    let mut args = default_args();
    // Slow enough to kill the leader mid-rotation; a grace long enough to look at the
    // state after the last identity moved.
    args.extend(["--rotation-rate", "0.15", "--rotation-grace", "15s"].map(String::from));
    let mut op1 = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op1.wait_ready();
    let mut standby_op =
        standby.then(|| Operator::start(cluster.server.kubeconfig_path(), "op-2", &args));
    if let Some(op) = standby_op.as_mut() {
        op.wait_ready();
        assert_eq!(lease_holder(&cluster.kubectl).as_deref(), Some("op-1"));
    }
    let own = cluster.wait_own_ca();
    let root_a = secret_field(&own, "root-cert.pem");
    for sa in SAS {
        let s = cluster.wait_identity("shop", sa);
        verify_identity(&s, &root_a);
    }

    // Rotation to a plugged-in root B.
    let root_b = openssl_root(dir.path());
    cluster.kubectl.apply(&cacerts_yaml(dir.path()));
    let first_moved = wait_for(
        "a first identity on root B",
        Duration::from_secs(60),
        || {
            let all = identities(&cluster);
            all.values().any(|s| chains_to(s, &root_b)).then_some(all)
        },
    );
    let record = cluster
        .kubectl
        .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca-rotation"])
        .expect("the rotation state is stored before identities move");
    op1.kill();

    // What op-1 left: some identities moved, the others still on root A.
    for (key, _) in record["data"].as_object().unwrap() {
        let text = secret_field(&record, key);
        assert!(
            !text.contains("PRIVATE KEY"),
            "no key in the rotation state ({key})"
        );
    }
    assert_eq!(
        secret_field(&record, "previous-roots.pem").trim(),
        root_a.trim()
    );
    assert_eq!(
        secret_field(&record, "target-root.pem").trim(),
        root_b.trim()
    );
    let at_kill = identities(&cluster);
    assert_eq!(at_kill.len(), SAS.len());
    let moved: BTreeMap<String, Value> = at_kill
        .iter()
        .filter(|(_, s)| chains_to(s, &root_b))
        .map(|(n, s)| (n.clone(), s.clone()))
        .collect();
    let remaining: Vec<String> = at_kill
        .keys()
        .filter(|n| !moved.contains_key(*n))
        .cloned()
        .collect();
    assert!(
        !moved.is_empty() && remaining.len() >= 2,
        "the leader must be killed mid-rotation (moved {:?} of {}; first seen {:?})",
        moved.keys(),
        SAS.len(),
        first_moved.keys()
    );
    let cm_before = root_config_map(&cluster);
    let cm_bundle = cm_before["data"]["root-cert.pem"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(bundle_has(&cm_bundle, &root_a) && bundle_has(&cm_bundle, &root_b));
    let serial_of = |s: &Value| verify_identity(s, &cm_bundle).serial;
    let moved_serials: BTreeMap<String, String> = moved
        .iter()
        .map(|(n, s)| (n.clone(), serial_of(s)))
        .collect();

    // A new leader resumes.
    let mut op2 = match standby_op {
        Some(op) => op,
        None => Operator::start(cluster.server.kubeconfig_path(), "op-2", &args),
    };
    op2.wait_ready();
    wait_for("op-2 to lead", Duration::from_secs(30), || {
        (lease_holder(&cluster.kubectl).as_deref() == Some("op-2")).then_some(())
    });
    // A restarted operator knows the rotation only from the stored state.
    if !standby {
        assert!(
            op2.log_lines().iter().any(|l| {
                l["fields"]["message"] == "CA loaded" && l["fields"]["resumed"] == true
            }),
            "op-2 resumed the rotation: {}",
            op2.log_text()
        );
    }

    // Until every identity is on root B, every bundle carries both roots: a workload
    // still on root A and one already on root B accept each other (openssl, both ways).
    let mut checked_cross_trust = false;
    let all_moved = wait_for("every identity on root B", Duration::from_secs(120), || {
        let cm = root_config_map(&cluster);
        let all = identities(&cluster);
        let on_b: Vec<&String> = all
            .iter()
            .filter(|(_, s)| chains_to(s, &root_b))
            .map(|(n, _)| n)
            .collect();
        let done = on_b.len() == SAS.len();
        if !done {
            let bundle = cm["data"]["root-cert.pem"].as_str().unwrap();
            assert!(
                bundle_has(bundle, &root_a) && bundle_has(bundle, &root_b),
                "the old root left the ConfigMap before every identity moved"
            );
            assert_eq!(rv(&cm), rv(&cm_before), "the ConfigMap was not rewritten");
            for (name, s) in &all {
                let b = secret_field(s, "root-cert.pem");
                assert!(
                    bundle_has(&b, &root_a) && bundle_has(&b, &root_b),
                    "{name}: bundle without both roots while identities move"
                );
            }
            if !checked_cross_trust {
                let old = all.values().find(|s| chains_to(s, &root_a)).unwrap();
                let new = all.get(on_b[0]).unwrap();
                verify_identity(old, &secret_field(new, "root-cert.pem"));
                verify_identity(new, &secret_field(old, "root-cert.pem"));
                checked_cross_trust = true;
            }
        }
        // Identities moved before the kill are never written again meanwhile.
        for (name, before) in &moved {
            let now = all.get(name).unwrap();
            if secret_field(now, "root-cert.pem").contains(root_a.trim()) {
                assert_eq!(rv(now), rv(before), "{name} was written again");
            }
        }
        done.then_some(all)
    });
    assert!(
        checked_cross_trust,
        "observed the overlap after the restart"
    );
    // op-2 reissued exactly the identities left on root A, each once.
    assert_eq!(
        op2.metric("trellis_identity_renewed_total{reason=\"root\"}"),
        Some(remaining.len() as f64),
        "{}",
        op2.log_text()
    );
    for name in &remaining {
        assert_ne!(
            serial_of(&all_moved[name]),
            serial_of(&at_kill[name]),
            "{name} reissued"
        );
    }

    // After the grace, only root B is left: the ConfigMap and every Secret are
    // rewritten (same certificates), the old root no longer verifies them, and the
    // rotation state is gone.
    wait_for(
        "the old root to leave the bundles",
        Duration::from_secs(90),
        || {
            let cm = root_config_map(&cluster);
            let only_b = |b: &str| b.trim() == root_b.trim();
            let all = identities(&cluster);
            (only_b(cm["data"]["root-cert.pem"].as_str().unwrap())
                && all
                    .values()
                    .all(|s| only_b(&secret_field(s, "root-cert.pem"))))
            .then_some(())
        },
    );
    let last = identities(&cluster);
    for (name, s) in &last {
        let v = verify_identity(s, &root_b);
        assert_eq!(
            v.uri,
            format!("spiffe://cluster.local/ns/shop/sa/{}", sa_of(name))
        );
        assert!(!chains_to(s, &root_a), "{name} still chains to root A");
        if let Some(serial) = moved_serials.get(name) {
            assert_eq!(
                &v.serial, serial,
                "{name} moved before the kill: not reissued"
            );
        } else {
            assert_eq!(v.serial, serial_of(&all_moved[name]));
        }
    }
    wait_for(
        "the rotation state to be removed",
        Duration::from_secs(30),
        || {
            cluster
                .kubectl
                .get_json(&["secret", "-n", OPERATOR_NS, "trellis-ca-rotation"])
                .is_none()
                .then_some(())
        },
    );
    assert_eq!(op2.metric("trellis_ca_rotation_remaining"), Some(0.0));
    assert_eq!(
        op2.metric("trellis_identity_renewed_total{reason=\"root\"}"),
        Some(remaining.len() as f64)
    );
}
