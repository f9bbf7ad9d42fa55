//! Pods take the locality of their Node in a cluster: `trellis operator`
//! against the Kubernetes API simulator watches Nodes, and a real injected
//! Envoy (the client pod's proxy, on a node of zone a) is given the `cart`
//! endpoints grouped by locality, with failover priorities relative to its own
//! zone. Relabelling a node moves its pods' endpoints without a restart.
//! Traffic through the priorities is proven in universal mode
//! (`up_locality.rs`); here Envoy's own view of its hosts is read.

mod operator_support;

use operator_support::pod_proxy::{self, PodProxy, http_get};
use operator_support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const NS: &str = "shop";
const SA: &str = "web";
const POD: &str = "web-0";
const POD_IP: &str = "127.0.0.29";
const CART: &str = "outbound|80||cart.shop.svc.cluster.local";

fn node(name: &str, zone: &str) -> String {
    format!(
        "apiVersion: v1\nkind: Node\nmetadata:\n  name: {name}\n  labels:\n    \
         topology.kubernetes.io/region: us-east\n    topology.kubernetes.io/zone: {zone}\n"
    )
}

fn running_pod(cluster: &Cluster, yaml: &str, name: &str, ip: &str) {
    cluster.kubectl.apply(yaml);
    cluster.kubectl.run(&[
        "patch",
        "pod",
        "-n",
        NS,
        name,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!("{{\"status\":{{\"podIP\":\"{ip}\",\"phase\":\"Running\"}}}}"),
    ]);
}

/// Envoy's hosts of `cart`: address -> (zone, priority).
fn cart_hosts(admin: std::net::SocketAddr) -> BTreeMap<String, (String, u64)> {
    let Some(text) = http_get(admin, "/clusters?format=json") else {
        return BTreeMap::new();
    };
    let doc: Value = serde_json::from_str(&text).unwrap_or_default();
    let statuses = doc["cluster_statuses"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    statuses
        .iter()
        .filter(|c| c["name"] == CART)
        .flat_map(|c| c["host_statuses"].as_array().cloned().unwrap_or_default())
        .map(|h| {
            (
                h["address"]["socket_address"]["address"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
                (
                    h["locality"]["zone"]
                        .as_str()
                        .unwrap_or_default()
                        .to_string(),
                    h["priority"].as_u64().unwrap_or(0),
                ),
            )
        })
        .collect()
}

#[test]
fn pods_are_placed_by_their_nodes_zone_and_a_relabelled_node_moves_them() {
    let cluster = Cluster::start();
    cluster.namespace(NS, &[], &[SA, "cart"]);
    cluster.kubectl.apply(&node("node-a", "us-east-1a"));
    cluster.kubectl.apply(&node("node-b", "us-east-1b"));
    let pod_yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\n  namespace: {NS}\n  labels:\n    app: web\n\
         spec:\n  nodeName: node-a\n  serviceAccountName: {SA}\n  containers:\n  - name: app\n    image: example/web:1\n"
    );
    running_pod(&cluster, &pod_yaml, POD, POD_IP);
    for (name, node, ip) in [
        ("cart-a", "node-a", "127.0.0.31"),
        ("cart-b", "node-b", "127.0.0.32"),
    ] {
        running_pod(
            &cluster,
            &format!(
                "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {name}\n  namespace: {NS}\n  labels:\n    app: cart\n\
                 spec:\n  nodeName: {node}\n  serviceAccountName: cart\n  containers:\n  - name: app\n    image: example/cart:1\n    \
                 ports:\n    - {{name: http, containerPort: 8080}}\n"
            ),
            name,
            ip,
        );
    }
    cluster.kubectl.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: cart\n  namespace: {NS}\nspec:\n  clusterIP: 10.96.0.31\n  \
         selector:\n    app: cart\n  ports:\n  - name: http\n    port: 80\n    targetPort: http\n---\n\
         apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata:\n  name: cart\n  namespace: {NS}\n\
         spec:\n  host: cart\n  trafficPolicy:\n    outlierDetection: {{consecutive5xxErrors: 1}}\n"
    ));

    let mut op = Operator::start(
        cluster.server.kubeconfig_path(),
        "op-1",
        &pod_proxy::operator_args_with_xds(),
    );
    op.wait_ready();
    cluster
        .kubectl
        .run(&["label", "namespace", NS, "istio-injection=enabled"]);
    let bootstrap = pod_proxy::wait_bootstrap(&cluster, NS);
    let pod = cluster
        .kubectl
        .get_json(&["pod", "-n", NS, POD])
        .expect("the Pod");
    let proxy = pod_proxy::injected_container(&pod_yaml, "trellis-proxy");
    let envoy = PodProxy::start(
        &cluster,
        NS,
        SA,
        &bootstrap,
        &pod_proxy::proxy_args(&proxy, &pod),
    );

    // The client is on node-a (zone us-east-1a): cart-a there first, cart-b
    // (same region, other zone) next.
    let expected = BTreeMap::from([
        ("127.0.0.31".to_string(), ("us-east-1a".to_string(), 0)),
        ("127.0.0.32".to_string(), ("us-east-1b".to_string(), 1)),
    ]);
    wait_for("cart's hosts by zone", Duration::from_secs(60), || {
        (cart_hosts(envoy.admin) == expected).then_some(())
    });

    // node-b moves to zone a: cart-b is as near as cart-a now.
    cluster.kubectl.run(&[
        "label",
        "node",
        "node-b",
        "topology.kubernetes.io/zone=us-east-1a",
        "--overwrite",
    ]);
    let expected = BTreeMap::from([
        ("127.0.0.31".to_string(), ("us-east-1a".to_string(), 0)),
        ("127.0.0.32".to_string(), ("us-east-1a".to_string(), 0)),
    ]);
    wait_for("cart-b to move to zone a", Duration::from_secs(60), || {
        (cart_hosts(envoy.admin) == expected).then_some(())
    });
    drop(envoy);
    op.terminate();
}
