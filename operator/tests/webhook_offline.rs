//! The webhook's pod equals what the real `trellis inject` writes for the
//! same template (the simulator and kubectl set-up of trellis-webhook's tests).

#[path = "../webhook/tests/common/mod.rs"]
mod common;

use common::{Cluster, INIT_IMAGE, container_names};
use serde_json::Value;
use std::process::Command;

#[test]
fn webhook_and_offline_injection_give_the_same_pod_spec() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"]);
    let dir = tempfile::tempdir().unwrap();
    let deployment = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: web
  namespace: shop
spec:
  selector:
    matchLabels: {app: web}
  template:
    metadata:
      labels: {app: web}
      annotations:
        traffic.sidecar.istio.io/excludeOutboundIPRanges: 10.96.0.0/12
    spec:
      serviceAccountName: web
      containers:
      - name: app
        image: registry.example/web:1
        livenessProbe: {tcpSocket: {port: 9000}}
"#;
    let file = dir.path().join("deployment.yaml");
    std::fs::write(&file, deployment).unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(["inject", "--init-image", INIT_IMAGE, "-f"])
        .arg(&file)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let offline: Value = serde_yaml::from_slice(&out.stdout).unwrap();
    let template = &offline["spec"]["template"];

    // The pod the Deployment controller would create from the same template.
    let doc: Value = serde_yaml::from_str(deployment).unwrap();
    let mut pod = doc["spec"]["template"].clone();
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    pod["metadata"]["name"] = "web-1".into();
    cluster
        .kubectl
        .run_stdin(&["create", "-n", "shop", "-f", "-"], &pod.to_string());
    let admitted = cluster.pod("shop", "web-1");
    assert_eq!(
        container_names(&admitted, "containers"),
        ["app", "trellis-proxy"]
    );
    assert_eq!(admitted["spec"], template["spec"]);
    for key in ["labels", "annotations"] {
        assert_eq!(
            admitted["metadata"][key], template["metadata"][key],
            "{key}"
        );
    }
}
