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

#[test]
fn operator_writes_the_ca_bundles_and_serves_injection() {
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
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &default_args());
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

    // A pod of a mesh namespace gets the sidecar through the operator's webhook.
    cluster.namespace("shop", &["istio-injection=enabled"], &["web"]);
    cluster.kubectl.apply(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: web\n  namespace: shop\nspec:\n  serviceAccountName: web\n  containers:\n  - name: app\n    image: app:1\n",
    );
    let pod = cluster
        .kubectl
        .get_json(&["pod", "-n", "shop", "web"])
        .unwrap();
    let names: Vec<&str> = pod["spec"]["containers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|c| c["name"].as_str())
        .collect();
    assert_eq!(names, ["app", "trellis-proxy"]);
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
