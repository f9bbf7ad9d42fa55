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
    let (template, admitted) = offline_and_admitted(&cluster, dir.path(), deployment, "web-1");
    assert_eq!(
        container_names(&admitted, "containers"),
        ["app", "trellis-proxy"]
    );
    assert_same_pod(&admitted, &template);
}

/// The pod template `trellis inject` writes for `deployment`, and the pod
/// `pod_name` the API server admits from the Deployment's own template.
fn offline_and_admitted(
    cluster: &Cluster,
    dir: &std::path::Path,
    deployment: &str,
    pod_name: &str,
) -> (Value, Value) {
    let file = dir.join("deployment.yaml");
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
    let template = offline["spec"]["template"].clone();

    // The pod the Deployment controller would create from the same template.
    let doc: Value = serde_yaml::from_str(deployment).unwrap();
    let namespace = doc["metadata"]["namespace"].as_str().unwrap();
    let mut pod = doc["spec"]["template"].clone();
    pod["apiVersion"] = "v1".into();
    pod["kind"] = "Pod".into();
    pod["metadata"]["name"] = pod_name.into();
    cluster
        .kubectl
        .run_stdin(&["create", "-n", namespace, "-f", "-"], &pod.to_string());
    (template, cluster.pod(namespace, pod_name))
}

fn assert_same_pod(admitted: &Value, template: &Value) {
    assert_eq!(admitted["spec"], template["spec"]);
    for key in ["labels", "annotations"] {
        assert_eq!(
            admitted["metadata"][key], template["metadata"][key],
            "{key}"
        );
    }
}

/// A gateway as Istio's gateway chart deploys it, in a namespace not labelled
/// for injection (the pod label selects it): the webhook's patch (the generic
/// path) gives the pod `trellis inject` writes.
#[test]
fn webhook_and_offline_injection_give_the_same_gateway_pod_spec() {
    let cluster = Cluster::start();
    cluster.namespace("edge", &[]);
    let dir = tempfile::tempdir().unwrap();
    let deployment = r#"apiVersion: apps/v1
kind: Deployment
metadata:
  name: ingressgateway
  namespace: edge
spec:
  selector:
    matchLabels: {istio: ingressgateway}
  template:
    metadata:
      labels: {istio: ingressgateway, sidecar.istio.io/inject: "true"}
      annotations:
        inject.istio.io/templates: gateway
    spec:
      serviceAccountName: ingressgateway
      securityContext:
        runAsNonRoot: true
      containers:
      - name: istio-proxy
        image: auto
        env: [{name: ISTIO_META_UNPRIVILEGED_POD, value: "true"}]
        ports:
        - {name: http-envoy-prom, containerPort: 15090, protocol: TCP}
        - {name: http, containerPort: 8080}
        resources:
          limits: {cpu: "2", memory: 1Gi}
"#;
    let (template, admitted) = offline_and_admitted(&cluster, dir.path(), deployment, "ingress-1");
    assert_eq!(container_names(&admitted, "containers"), ["istio-proxy"]);
    assert!(container_names(&admitted, "initContainers").is_empty());
    let proxy = &admitted["spec"]["containers"][0];
    assert_eq!(proxy["image"], trellis_inject::DEFAULT_PROXY_IMAGE);
    assert!(
        proxy
            .get("env")
            .unwrap()
            .to_string()
            .contains("INSTANCE_IP")
    );
    assert!(
        !proxy["env"]
            .to_string()
            .contains("ISTIO_META_UNPRIVILEGED_POD")
    );
    assert_eq!(
        admitted["spec"]["securityContext"]["sysctls"][0]["name"],
        trellis_inject::UNPRIVILEGED_PORT_SYSCTL
    );
    assert_same_pod(&admitted, &template);
}
