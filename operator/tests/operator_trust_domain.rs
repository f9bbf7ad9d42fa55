//! The trust domain and workload certificate lifetime follow `MeshConfig/default`
//! (`spec.trustDomain`, `spec.workloadCertTtl`) over the flags: a change reissues every
//! identity for its new SPIFFE id (checked with openssl), MeshStatus reports the trust
//! domain in force, and a restart reissues nothing (the CA waits for MeshConfig), also
//! when MeshConfig was rejected for another field.

mod operator_support;

use operator_support::*;
use std::collections::BTreeMap;
use std::time::Duration;

const SAS: [&str; 3] = ["web", "api", "db"];

fn control_plane_trust_domain(cluster: &Cluster) -> Option<String> {
    cluster
        .kubectl
        .get_json(&["meshstatus", "mesh", "-n", OPERATOR_NS])
        .and_then(|v| v["status"]["trustDomain"].as_str().map(str::to_string))
}

/// The `MeshConfigRejected` event whose note names `field`, if any.
fn rejection_naming(cluster: &Cluster, field: &str) -> Option<serde_json::Value> {
    cluster
        .kubectl
        .list(&["events.events.k8s.io", "-A"])
        .into_iter()
        .find(|e| {
            e["reason"] == "MeshConfigRejected"
                && e["note"].as_str().unwrap_or_default().contains(field)
        })
}

/// The identity Secret of shop/`sa` once it is issued for the SPIFFE id `want`.
fn identity_for(cluster: &Cluster, sa: &str, want: &str) -> serde_json::Value {
    wait_for(
        &format!("shop/{sa} issued for {want}"),
        Duration::from_secs(60),
        || {
            cluster.identity("shop", sa).filter(|s| {
                s["metadata"]["annotations"]["trellis.dev/spiffe-id"].as_str() == Some(want)
            })
        },
    )
}

fn versions(cluster: &Cluster) -> BTreeMap<&'static str, String> {
    SAS.iter()
        .map(|sa| (*sa, rv(&cluster.wait_identity("shop", sa))))
        .collect()
}

/// Stops `op` gracefully, starts `name` in its place and checks that, once it
/// leads and has reconciled the identities, none was written.
fn restart_reissues_nothing(
    cluster: &Cluster,
    mut op: Operator,
    name: &str,
    args: &[String],
) -> Operator {
    let before = versions(cluster);
    assert!(op.terminate().success(), "graceful exit: {}", op.log_text());
    let mut op = Operator::start(cluster.server.kubeconfig_path(), name, args);
    op.wait_ready();
    wait_for(&format!("{name} to lead"), Duration::from_secs(30), || {
        (lease_holder(&cluster.kubectl).as_deref() == Some(name)).then_some(())
    });
    wait_for(
        &format!("{name} to reconcile the identities"),
        Duration::from_secs(30),
        || {
            op.metric("trellis_controller_reconciles_total{controller=\"identity\"}")
                .filter(|n| *n >= SAS.len() as f64)
        },
    );
    assert_eq!(
        versions(cluster),
        before,
        "no identity written after the restart: {}",
        op.log_text()
    );
    assert_eq!(
        op.metric("trellis_identity_renewed_total{reason=\"identity\"}")
            .unwrap_or(0.0),
        0.0,
        "{}",
        op.log_text()
    );
    op
}

#[test]
fn mesh_config_trust_domain_reissues_every_identity_and_survives_a_restart() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"], &SAS);
    let mut args = default_args();
    args.extend(["--rotation-rate", "2"].map(String::from));
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();
    let own = cluster.wait_own_ca();
    let root = secret_field(&own, "root-cert.pem");

    // No MeshConfig: the flag's trust domain and lifetime (24 h).
    let mut before = BTreeMap::new();
    for sa in SAS {
        let s = cluster.wait_identity("shop", sa);
        let v = verify_identity(&s, &root);
        assert_eq!(v.uri, format!("spiffe://cluster.local/ns/shop/sa/{sa}"));
        assert!(valid_for(&leaf_pem(&s), 20 * 3600), "default lifetime");
        before.insert(sa, v.serial);
    }
    wait_for(
        "MeshStatus with trust domain cluster.local",
        Duration::from_secs(60),
        || (control_plane_trust_domain(&cluster).as_deref() == Some("cluster.local")).then_some(()),
    );

    // MeshConfig sets the trust domain and a 2 h lifetime.
    cluster.apply_mesh_config("  trustDomain: corp.example\n  workloadCertTtl: 2h\n");
    for sa in SAS {
        let want = format!("spiffe://corp.example/ns/shop/sa/{sa}");
        let s = identity_for(&cluster, sa, &want);
        let v = verify_identity(&s, &root);
        assert_eq!(v.uri, want, "openssl sees the new SPIFFE id");
        assert_ne!(v.serial, before[sa], "a new certificate");
        assert!(
            valid_for(&leaf_pem(&s), 3000) && !valid_for(&leaf_pem(&s), 3 * 3600),
            "the MeshConfig lifetime (2 h)"
        );
        assert_eq!(
            secret_field(&s, "root-cert.pem").trim(),
            root.trim(),
            "same root"
        );
    }
    assert_eq!(
        op.metric("trellis_identity_renewed_total{reason=\"identity\"}"),
        Some(SAS.len() as f64),
        "each identity reissued once for the new trust domain"
    );
    wait_for(
        "MeshStatus with trust domain corp.example",
        Duration::from_secs(60),
        || (control_plane_trust_domain(&cluster).as_deref() == Some("corp.example")).then_some(()),
    );
    let cm = cluster
        .kubectl
        .get_json(&["configmap", "-n", "shop", "trellis-ca-root-cert"])
        .unwrap();
    assert_eq!(
        cm["data"]["root-cert.pem"].as_str().unwrap().trim(),
        root.trim()
    );

    // A restart signs for the MeshConfig's trust domain from the start: nothing reissued.
    let mut op = restart_reissues_nothing(&cluster, op, "op-2", &args);

    // Without the field, the flag's trust domain is back.
    cluster.apply_mesh_config("  workloadCertTtl: 2h\n");
    for sa in SAS {
        let want = format!("spiffe://cluster.local/ns/shop/sa/{sa}");
        let s = identity_for(&cluster, sa, &want);
        assert_eq!(verify_identity(&s, &root).uri, want);
    }
    wait_for(
        "MeshStatus with trust domain cluster.local again",
        Duration::from_secs(60),
        || (control_plane_trust_domain(&cluster).as_deref() == Some("cluster.local")).then_some(()),
    );

    // A trust domain that is not one: reported (event, log), the one in force stays.
    let settled = versions(&cluster);
    cluster.apply_mesh_config("  trustDomain: not a domain\n");
    let event = wait_for(
        "a MeshConfigRejected event",
        Duration::from_secs(30),
        || rejection_naming(&cluster, "spec.trustDomain"),
    );
    let note = event["note"].as_str().unwrap_or_default();
    assert!(
        note.contains("spec.trustDomain") && note.contains("MeshConfig default"),
        "the event names the object and field: {note}"
    );
    assert_eq!(event["regarding"]["kind"], "MeshConfig", "{event}");
    assert!(op.log_text().contains("MeshConfig rejected"));
    assert!(op.try_status().is_none(), "no crash: {}", op.log_text());
    assert_eq!(versions(&cluster), settled, "nothing reissued");
    assert_eq!(
        control_plane_trust_domain(&cluster).as_deref(),
        Some("cluster.local")
    );

    // A mistake in another field at a restart: the operator starts with the MeshConfig's
    // trust domain, not the flag's, so nothing is reissued (the flag would move every
    // identity back to cluster.local).
    cluster.apply_mesh_config("  trustDomain: corp.example\n");
    for sa in SAS {
        let want = format!("spiffe://corp.example/ns/shop/sa/{sa}");
        identity_for(&cluster, sa, &want);
    }
    cluster.apply_mesh_config("  trustDomain: corp.example\n  workloadCertTtl: soon\n");
    wait_for(
        "a MeshConfigRejected event for the lifetime",
        Duration::from_secs(30),
        || rejection_naming(&cluster, "spec.workloadCertTtl"),
    );
    let _op = restart_reissues_nothing(&cluster, op, "op-3", &args);
    for sa in SAS {
        assert_eq!(
            cluster.identity("shop", sa).unwrap()["metadata"]["annotations"]["trellis.dev/spiffe-id"],
            format!("spiffe://corp.example/ns/shop/sa/{sa}")
        );
    }
    wait_for(
        "MeshStatus with trust domain corp.example after the restart",
        Duration::from_secs(60),
        || (control_plane_trust_domain(&cluster).as_deref() == Some("corp.example")).then_some(()),
    );
}
