//! The admission webhooks behind the Kubernetes API simulator, driven with
//! the real kubectl: pods of mesh namespaces get the sidecar, invalid mesh
//! config is refused with the exact message kubectl prints.

mod common;

use common::{APP_POD, Cluster, OPERATOR_NS, container_names};
use serde_json::Value;

#[test]
fn pods_of_mesh_namespaces_get_the_sidecar_others_do_not() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"]);
    cluster.namespace("plain", &[]);
    cluster.namespace("canary", &["istio.io/rev=canary"]);
    for ns in ["shop", "plain", "canary", OPERATOR_NS] {
        if ns == OPERATOR_NS {
            cluster.namespace(ns, &["istio-injection=enabled"]);
        }
        cluster
            .kubectl
            .run_stdin(&["apply", "-n", ns, "-f", "-"], APP_POD);
    }
    let shop = cluster.pod("shop", "web");
    assert_eq!(
        container_names(&shop, "containers"),
        ["app", "trellis-proxy"]
    );
    assert_eq!(container_names(&shop, "initContainers"), ["trellis-init"]);
    let init_args = shop["spec"]["initContainers"][0]["args"].clone();
    assert!(
        init_args
            .as_array()
            .unwrap()
            .contains(&Value::from("--exclude-inbound-ports=8081,15021,15090")),
        "{init_args}"
    );
    assert!(
        shop["metadata"]["annotations"]["sidecar.istio.io/status"]
            .as_str()
            .is_some()
    );
    assert_eq!(
        shop["spec"]["volumes"][0]["secret"]["secretName"],
        "trellis-identity-web"
    );
    let canary = cluster.pod("canary", "web");
    assert_eq!(
        container_names(&canary, "containers"),
        ["app", "trellis-proxy"]
    );
    for ns in ["plain", OPERATOR_NS] {
        let pod = cluster.pod(ns, "web");
        assert_eq!(container_names(&pod, "containers"), ["app"], "{ns}");
        assert!(pod["spec"].get("initContainers").is_none(), "{ns}");
    }

    // Opt-out by label in a mesh namespace; opt-in by label elsewhere.
    let opted_out = APP_POD.replace("name: web\n", "name: legacy\n").replace(
        "labels: {app: web}",
        "labels: {app: legacy, sidecar.istio.io/inject: \"false\"}",
    );
    cluster
        .kubectl
        .run_stdin(&["apply", "-n", "shop", "-f", "-"], &opted_out);
    let pod = cluster.pod("shop", "legacy");
    assert_eq!(container_names(&pod, "containers"), ["app"]);
    let opted_in = APP_POD.replace("name: web\n", "name: chosen\n").replace(
        "labels: {app: web}",
        "labels: {app: chosen, sidecar.istio.io/inject: \"true\"}",
    );
    cluster
        .kubectl
        .run_stdin(&["apply", "-n", "plain", "-f", "-"], &opted_in);
    let pod = cluster.pod("plain", "chosen");
    assert_eq!(
        container_names(&pod, "containers"),
        ["app", "trellis-proxy"]
    );

    // Re-applying the injected pod leaves it as it is (idempotent; UPDATE is not sent).
    cluster
        .kubectl
        .run_stdin(&["apply", "-n", "shop", "-f", "-"], APP_POD);
    let again = cluster.pod("shop", "web");
    assert_eq!(again["spec"], shop["spec"]);
}

#[test]
fn an_injected_pod_is_created_unchanged() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &["istio-injection=enabled"]);
    cluster
        .kubectl
        .run_stdin(&["apply", "-n", "shop", "-f", "-"], APP_POD);
    let first = cluster.pod("shop", "web");
    // Create a copy of the injected pod under another name: nothing is added twice.
    let mut copy = first.clone();
    copy["metadata"] = serde_json::json!({
        "name": "copy",
        "labels": first["metadata"]["labels"],
        "annotations": first["metadata"]["annotations"],
    });
    cluster
        .kubectl
        .run_stdin(&["create", "-n", "shop", "-f", "-"], &copy.to_string());
    let second = cluster.pod("shop", "copy");
    assert_eq!(second["spec"], first["spec"]);
}

#[test]
fn invalid_virtual_service_is_refused_with_every_error() {
    let cluster = Cluster::start();
    cluster.namespace("shop", &[]);
    let invalid = r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata:
  name: reviews
  namespace: shop
spec:
  hosts: [reviews]
  http:
  - timeout: 5 seconds
    route:
    - destination: {host: reviews, subset: v1}
      weight: 150
"#;
    let out = cluster.kubectl.output(&["apply", "-f", "-"], Some(invalid));
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        stderr.trim_end(),
        "Error from server (BadRequest): error when creating \"STDIN\": admission webhook \"validation.trellis.dev\" denied the request: VirtualService/shop/reviews is invalid: spec.http[0].route[0].weight: must be between 0 and 100; spec.http[0].timeout: invalid duration \"5 seconds\": expected numbers with units (h, m, s, ms, us, ns), e.g. \"1.5s\" or \"1h30m\""
    );
    let out = cluster
        .kubectl
        .output(&["get", "virtualservice", "reviews", "-n", "shop"], None);
    assert!(!out.status.success(), "the invalid object was stored");

    // The valid one is admitted; an invalid update is refused.
    let valid = invalid
        .replace("timeout: 5 seconds", "timeout: 5s")
        .replace("weight: 150", "weight: 100");
    cluster.kubectl.apply(&valid);
    let out = cluster.kubectl.output(
        &[
            "patch",
            "virtualservice",
            "reviews",
            "-n",
            "shop",
            "--type=merge",
            "-p",
            r#"{"spec":{"hosts":[""]}}"#,
        ],
        None,
    );
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        stderr.contains("denied the request: VirtualService/shop/reviews is invalid: spec.hosts[0]: host must not be empty"),
        "{stderr}"
    );
}
