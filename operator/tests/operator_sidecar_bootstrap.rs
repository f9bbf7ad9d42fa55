//! An injected sidecar reaches the operator's xDS server: `trellis operator` against
//! the Kubernetes API simulator writes ConfigMap `trellis-sidecar-bootstrap` into a
//! mesh namespace; a real Envoy started with exactly the arguments `trellis inject`
//! gives the proxy container (downward-API variables filled in for a Pod of the
//! simulator), the bootstrap ConfigMap, the identity Secret and the root ConfigMap laid
//! out at the pod's mount paths (a private mount namespace over an overlay of /etc, so
//! the host's /etc is untouched) connects over mTLS, is accepted as that pod and
//! applies the configuration the operator serves. The ConfigMap goes when the
//! namespace leaves the mesh.

mod operator_support;

use operator_support::pod_proxy::{self, PodProxy, http_get};
use operator_support::*;
use serde_json::Value;
use std::collections::BTreeMap;
use std::time::Duration;

const NS: &str = "shop";
const POD: &str = "web-0";
const SA: &str = "web";
const POD_IP: &str = "127.0.0.29";

/// A regex over Envoy's default RE2 program size limit.
const USERS_REGEX: &str = "^/api/v[0-9]+/users/[a-z0-9-]{1,64}$";

fn bootstrap_config_map(cluster: &Cluster) -> Option<BTreeMap<String, String>> {
    pod_proxy::bootstrap_config_map(cluster, NS)
}

#[test]
fn injected_sidecar_connects_to_the_operator_with_the_namespace_bootstrap() {
    let cluster = Cluster::start();
    cluster.namespace(NS, &[], &[SA]);
    let pod_yaml = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {POD}\n  namespace: {NS}\n  labels:\n    app: web\n\
         spec:\n  serviceAccountName: {SA}\n  containers:\n  - name: app\n    image: example/web:1\n    ports:\n    - containerPort: 8080\n"
    );
    cluster.kubectl.apply(&pod_yaml);
    cluster.kubectl.run(&[
        "patch",
        "pod",
        "-n",
        NS,
        POD,
        "--subresource=status",
        "--type=merge",
        "-p",
        &format!("{{\"status\":{{\"podIP\":\"{POD_IP}\",\"phase\":\"Running\"}}}}"),
    ]);
    cluster.kubectl.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: web\n  namespace: {NS}\nspec:\n  clusterIP: 10.96.0.29\n  selector:\n    app: web\n  ports:\n  - name: http\n    port: 80\n    targetPort: 8080\n"
    ));
    // A route whose regex compiles past Envoy's default RE2 program size (268 > 100):
    // the bootstrap's runtime must let Envoy accept it.
    cluster.kubectl.apply(&format!(
        "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata:\n  name: web\n  namespace: {NS}\nspec:\n  hosts: [web]\n  http:\n  - match:\n    - uri: {{regex: \"{USERS_REGEX}\"}}\n    route:\n    - destination: {{host: web}}\n"
    ));

    let args = pod_proxy::operator_args_with_xds();
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();
    assert!(
        bootstrap_config_map(&cluster).is_none(),
        "no bootstrap outside the mesh"
    );

    cluster
        .kubectl
        .run(&["label", "namespace", NS, "istio-injection=enabled"]);
    let bootstrap = pod_proxy::wait_bootstrap(&cluster, NS);
    assert_eq!(
        bootstrap.keys().map(String::as_str).collect::<Vec<_>>(),
        ["envoy.json", "sds-root-ca.json", "sds-workload-cert.json"]
    );
    // What `trellis inject` gives the proxy container for this Pod.
    let pod = cluster
        .kubectl
        .get_json(&["pod", "-n", NS, POD])
        .expect("the Pod");
    assert_eq!(pod["status"]["podIP"], POD_IP, "simulator kept the pod IP");
    let proxy = pod_proxy::injected_container(&pod_yaml, "trellis-proxy");
    let envoy_args = pod_proxy::proxy_args(&proxy, &pod);
    assert!(
        envoy_args.contains(&format!(
            "sidecar~{POD_IP}~{POD}.{NS}~{NS}.svc.cluster.local"
        )),
        "{envoy_args:?}"
    );
    let envoy = PodProxy::start(&cluster, NS, SA, &bootstrap, &envoy_args);
    let admin = envoy.admin;

    // Connected and in sync: the operator counts the proxy, Envoy holds the operator's
    // clusters (the Service's outbound cluster among them) and listeners.
    let mut last = String::new();
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let dump = loop {
        if let Some(dump) =
            http_get(admin, "/config_dump").and_then(|t| serde_json::from_str::<Value>(&t).ok())
        {
            last = dump.to_string();
            if last.contains("outbound|80||web.shop.svc.cluster.local")
                && last.contains("virtualOutbound")
            {
                break dump;
            }
        }
        assert!(
            std::time::Instant::now() < deadline,
            "Envoy did not apply the operator's clusters and listeners\nlast config dump: {last}\nEnvoy log:\n{}\noperator log:\n{}",
            envoy.log(),
            op.log_text()
        );
        std::thread::sleep(Duration::from_millis(250));
    };
    let text = dump.to_string();
    assert!(text.contains("dynamic_active_clusters"), "{text}");
    wait_for(
        "Envoy to apply the route with the large regex",
        Duration::from_secs(30),
        || {
            http_get(admin, "/config_dump?resource=dynamic_route_configs")
                .filter(|d| d.contains(USERS_REGEX))
        },
    );
    // The node identity came from the injected flags, and the operator accepted it as the pod.
    let info: Value = serde_json::from_str(&http_get(admin, "/server_info").unwrap()).unwrap();
    assert_eq!(
        info["command_line_options"]["service_node"],
        format!("sidecar~{POD_IP}~{POD}.{NS}~{NS}.svc.cluster.local")
    );
    assert_eq!(
        info["command_line_options"]["service_cluster"],
        format!("{SA}.{NS}")
    );
    assert!(
        op.log_lines()
            .iter()
            .any(|l| l["fields"]["message"] == "proxy connected"
                && l["fields"]["proxy"] == format!("{NS}/{POD}")),
        "{}",
        op.log_text()
    );
    let connected = wait_for(
        "trellis_xds_proxies_connected 1",
        Duration::from_secs(30),
        || {
            op.metric("trellis_xds_proxies_connected")
                .filter(|v| *v == 1.0)
        },
    );
    assert_eq!(connected, 1.0);
    // Nothing was rejected: no NACK reached the operator and Envoy logged no rejection.
    assert_eq!(
        op.metric("trellis_xds_nacks_total").unwrap_or(0.0),
        0.0,
        "{}",
        envoy.log()
    );
    let stats = http_get(admin, "/stats?filter=update_rejected").unwrap_or_default();
    for line in stats.lines() {
        assert!(
            line.ends_with(": 0"),
            "Envoy rejected an update: {line}\n{}",
            envoy.log()
        );
    }

    // A WorkloadEntry (a VM) that a Service selects: the operator sends it to
    // Envoy as the Service's endpoint, accepts it in its status, and takes
    // the endpoint away when the entry is deleted.
    cluster.kubectl.apply(&format!(
        "apiVersion: v1\nkind: Service\nmetadata:\n  name: vm\n  namespace: {NS}\nspec:\n  clusterIP: 10.96.0.30\n  selector:\n    app: vm\n  ports:\n  - name: http\n    port: 80\n    targetPort: 9000\n"
    ));
    cluster.kubectl.apply(&format!(
        "apiVersion: networking.istio.io/v1\nkind: WorkloadEntry\nmetadata:\n  name: vm-1\n  namespace: {NS}\nspec:\n  address: 127.0.0.78\n  labels:\n    app: vm\n  serviceAccount: {SA}\n  ports:\n    http: 9001\n"
    ));
    let vm_cluster = "outbound|80||vm.shop.svc.cluster.local";
    // The entry's `ports` name the Service's port and win over its targetPort.
    let vm_endpoint = format!("{vm_cluster}::127.0.0.78:9001::");
    wait_for(
        "Envoy to get WorkloadEntry vm-1 as vm's endpoint",
        Duration::from_secs(30),
        || http_get(admin, "/clusters").filter(|c| c.contains(&vm_endpoint)),
    );
    wait_for(
        "WorkloadEntry vm-1 to be Accepted",
        Duration::from_secs(30),
        || {
            let accepted = cluster.kubectl.run(&[
                "get",
                "workloadentry",
                "-n",
                NS,
                "vm-1",
                "-o",
                "jsonpath={.status.conditions[?(@.type==\"Accepted\")].status}",
            ]);
            (accepted.trim() == "True").then_some(())
        },
    );
    cluster
        .kubectl
        .run(&["delete", "workloadentry", "-n", NS, "vm-1"]);
    wait_for(
        "vm's endpoint to go with its WorkloadEntry",
        Duration::from_secs(30),
        || {
            http_get(admin, "/clusters")
                .filter(|c| c.contains(vm_cluster) && !c.contains(&vm_endpoint))
        },
    );

    // Leaving the mesh deletes the ConfigMap.
    drop(envoy);
    cluster
        .kubectl
        .run(&["label", "namespace", NS, "istio-injection-"]);
    wait_for(
        "ConfigMap shop/trellis-sidecar-bootstrap to go",
        Duration::from_secs(60),
        || bootstrap_config_map(&cluster).is_none().then_some(()),
    );
    op.terminate();
}
