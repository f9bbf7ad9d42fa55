//! The admission webhooks inside the real `trellis operator`: with the webhook
//! configurations installed without a CA bundle (as the manifests ship
//! them), the operator fills both bundles from its CA, switches validation
//! to `Fail`, and pods of mesh namespaces get the sidecar (image from
//! MeshConfig/default) through it.

mod operator_support;

use operator_support::*;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use trellis_webhook::{
    WebhookClient, mutating_webhook_configuration, validating_webhook_configuration,
};

fn bundles(cluster: &Cluster, resource: &str, name: &str) -> Vec<(String, String)> {
    cluster
        .kubectl
        .get_json(&[resource, name])
        .and_then(|c| c["webhooks"].as_array().cloned())
        .unwrap_or_default()
        .iter()
        .map(|w| {
            (
                w["clientConfig"]["caBundle"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                w["failurePolicy"].as_str().unwrap_or_default().to_string(),
            )
        })
        .collect()
}

/// A cluster with both webhook configurations installed as the manifests ship
/// them, and an operator started with `extra` flags whose webhook serves and
/// whose CA bundle both configurations carry. Returns the webhook's address.
fn serving_operator(extra: &[&str]) -> (Cluster, Operator, SocketAddr) {
    let cluster = Cluster::start();
    let client = WebhookClient::Service {
        namespace: OPERATOR_NS.into(),
        port: 443,
    };
    // As installed: no CA bundle yet, validation Ignore.
    for mut config in [
        mutating_webhook_configuration(OPERATOR_NS, &client, ""),
        validating_webhook_configuration(&client, "", "Ignore"),
    ] {
        for w in config["webhooks"].as_array_mut().unwrap() {
            w["clientConfig"]
                .as_object_mut()
                .unwrap()
                .remove("caBundle");
        }
        cluster.kubectl.apply(&config.to_string());
    }
    // The sidecar image comes from MeshConfig/default.
    cluster.apply_mesh_config("  proxy:\n    image: registry.example/envoy:from-meshconfig\n");
    let mut args = default_args();
    args.extend(extra.iter().map(|a| a.to_string()));
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();
    let address: SocketAddr = wait_for(
        "the operator's webhook to serve",
        Duration::from_secs(60),
        || {
            op.log_lines().into_iter().find_map(|line| {
                (line["fields"]["message"] == "admission webhook serving")
                    .then(|| line["fields"]["address"].as_str()?.parse().ok())
                    .flatten()
            })
        },
    );
    cluster
        .server
        .register_service(OPERATOR_NS, "trellis-webhook", 443, address);

    let ca = cluster.wait_own_ca();
    let root = secret_field(&ca, "root-cert.pem");
    let expected = {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(&root)
    };
    wait_for("both CA bundles written", Duration::from_secs(60), || {
        let m = bundles(
            &cluster,
            "mutatingwebhookconfiguration",
            "trellis-sidecar-injector",
        );
        let v = bundles(
            &cluster,
            "validatingwebhookconfiguration",
            "trellis-validator",
        );
        let done = m.len() == 3
            && m.iter().all(|(b, p)| b == &expected && p == "Fail")
            && v.len() == 1
            && v.iter().all(|(b, p)| b == &expected && p == "Fail");
        done.then_some(())
    });
    (cluster, op, address)
}

/// Creates pod `name` in mesh namespace `shop` and returns it as stored.
fn create_pod(cluster: &Cluster, name: &str) -> Value {
    cluster.kubectl.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: shop\nspec:\n  serviceAccountName: web\n  containers:\n  - name: app\n    image: app:1\n"
    ));
    cluster
        .kubectl
        .get_json(&["pod", "-n", "shop", name])
        .unwrap()
}

fn container_names(pod: &Value) -> Vec<&str> {
    pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect()
}

#[test]
fn operator_writes_the_ca_bundles_and_serves_injection() {
    let (cluster, mut op, _) = serving_operator(&[]);
    // A pod of a mesh namespace gets the sidecar through the operator's webhook.
    cluster.namespace("shop", &["istio-injection=enabled"], &["web"]);
    let pod = create_pod(&cluster, "web");
    assert_eq!(container_names(&pod), ["app", "trellis-proxy"]);
    assert_eq!(
        pod["spec"]["containers"][1]["image"],
        "registry.example/envoy:from-meshconfig"
    );
    assert_eq!(
        pod["spec"]["initContainers"][0]["args"][0],
        Value::from("proxy-init")
    );
    op.terminate();
}

/// After SIGTERM the operator serves on for `--shutdown-delay` (endpoints are
/// still being removed), with `/readyz` failing, then exits on its own.
#[test]
fn operator_serves_through_the_shutdown_delay() {
    let (cluster, mut op, address) = serving_operator(&["--shutdown-delay", "10s"]);
    cluster.namespace("shop", &["istio-injection=enabled"], &["web"]);
    op.send_sigterm();
    let (_, body) = wait_for("/readyz to fail", Duration::from_secs(10), || {
        op.http_get("/readyz").filter(|(code, _)| *code == 503)
    });
    assert!(body.contains("terminating"), "{body}");
    assert_eq!(op.http_get("/healthz").map(|(code, _)| code), Some(200));
    // New connections are accepted and reviews answered.
    std::net::TcpStream::connect_timeout(&address, Duration::from_secs(2))
        .expect("a new connection to the webhook during the shutdown delay");
    let pod = create_pod(&cluster, "during-delay");
    assert_eq!(container_names(&pod), ["app", "trellis-proxy"]);
    assert!(
        op.try_status().is_none(),
        "the operator exited before its shutdown delay was over"
    );
    let status = op.wait_exit();
    assert!(status.success(), "{status}");
    let log = op.log_text();
    assert!(log.contains("serving on for the shutdown delay"), "{log}");
    assert!(log.contains("released the lease"), "{log}");
}
