//! An Istio ingress gateway in a cluster: `trellis operator` against the
//! Kubernetes API simulator; a gateway Pod as Istio's gateway charts write it
//! (container `istio-proxy`, `image: auto`, annotation
//! `inject.istio.io/templates: gateway`) run as the real Envoy `trellis inject`
//! makes of it.
//!
//! - Its Gateway terminates HTTPS with `credentialName`: the operator reads the
//!   Kubernetes TLS Secret and serves it to the gateway over SDS; a client that
//!   trusts only that certificate gets the backend's answer through the
//!   gateway, and a renewed Secret reaches the gateway without a restart.
//!   Without the Secret, the Gateway carries a Warning naming the field.
//! - The namespace is not labelled for injection: the gateway pod's own label
//!   `sidecar.istio.io/inject=true` brings its identity, ConfigMaps and
//!   MeshStatus, which go with the pod.
//! - It answers the kubelet's readiness probe on 15021 and listens for
//!   Prometheus on 15090, as a sidecar does.
//! - As an egress gateway it originates mutual TLS to a server outside the
//!   mesh with the client certificate of a Secret that a DestinationRule
//!   names by `credentialName`; without the Secret the rule carries a Warning.
//! - The private keys never reach the operator's log.

mod operator_support;

use operator_support::pod_proxy::{self, PodProxy, free_port};
use operator_support::*;
use std::net::Ipv4Addr;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

const NS: &str = "edge";
const GATEWAY_POD: &str = "ingress-1";
const GATEWAY_IP: &str = "127.0.0.82";
const HOST: &str = "shop.example.com";

/// A self-signed certificate for [`HOST`] and its key, in `dir/<name>.{crt,key}`.
fn self_signed(dir: &Path, name: &str) {
    openssl(
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:P-256",
            "-nodes",
            "-days",
            "1",
            "-subj",
            &format!("/CN={HOST}"),
            "-addext",
            &format!("subjectAltName=DNS:{HOST}"),
            "-keyout",
            &format!("{name}.key"),
            "-out",
            &format!("{name}.crt"),
        ],
        dir,
    );
}

/// Secret `web-tls` (kubernetes.io/tls) from `dir/<name>.{crt,key}`, created or replaced.
fn apply_tls_secret(cluster: &Cluster, dir: &Path, name: &str) {
    let yaml = cluster.kubectl.run(&[
        "create",
        "secret",
        "tls",
        "web-tls",
        "-n",
        NS,
        "--cert",
        &dir.join(format!("{name}.crt")).display().to_string(),
        "--key",
        &dir.join(format!("{name}.key")).display().to_string(),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    cluster.kubectl.apply(&yaml);
}

/// An HTTPS GET through the gateway trusting only `dir/<name>.crt`: the
/// status and the answering upstream, or curl's complaint.
fn get_through_gateway(dir: &Path, name: &str, port: u16) -> Result<(u16, String), String> {
    let out = Command::new("curl")
        .args(["-sS", "-m", "5", "-o", "/dev/null", "-D", "-"])
        .arg("--cacert")
        .arg(dir.join(format!("{name}.crt")))
        .args(["--resolve", &format!("{HOST}:{port}:{GATEWAY_IP}")])
        .arg(format!("https://{HOST}:{port}/"))
        .output()
        .expect("curl (run `make setup`)");
    if !out.status.success() {
        return Err(String::from_utf8_lossy(&out.stderr).into_owned());
    }
    let head = String::from_utf8_lossy(&out.stdout).to_lowercase();
    let status = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let upstream = head
        .lines()
        .find_map(|l| l.strip_prefix("x-upstream:"))
        .map(|v| v.trim().to_string())
        .unwrap_or_default();
    Ok((status, upstream))
}

const API_HOST: &str = "api.example.com";
const EXTERNAL_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 84);

/// A server outside the mesh that requires a client certificate: a real
/// Envoy on [`EXTERNAL_IP`] serving [`API_HOST`] with a certificate from
/// `ca`, accepting only clients `ca` signed, in front of echo upstream
/// `external-app`. Also writes Secret material for a client of it:
/// `dir/client.{crt,key}` and `dir/ca.crt`.
fn external_mtls_server(dir: &Path, app: &trellis_e2e::Upstream) -> (trellis_e2e::Envoy, u16) {
    use trellis_e2e::mesh::{
        bootstrap_yaml, http_connection_manager, listener, route_to, static_cluster, test_ca, vhost,
    };
    use trellis_translate::security::origination::{
        GatewayTlsMode, ServerCredential, gateway_server_tls,
    };
    use trellis_translate::security::tls::downstream_transport_socket;
    let ca = test_ca();
    let now = std::time::SystemTime::now();
    let hour = Duration::from_secs(3600);
    let server = ca
        .issue_server_cert(&[API_HOST.to_string()], hour, now)
        .unwrap();
    let client = ca
        .issue_for_service_account(NS, "egress", hour, now)
        .unwrap();
    let write = |name: &str, text: &str| std::fs::write(dir.join(name), text).unwrap();
    write("server.crt", &server.cert_chain_pem);
    write("server.key", server.key_pem.expose());
    write("ca.crt", &server.root_cert_pem);
    write("client.crt", &client.cert_chain_pem);
    write("client.key", client.key_pem.expose());
    let path = |name: &str| dir.join(name).display().to_string();
    let (cert, key, client_ca) = (path("server.crt"), path("server.key"), path("ca.crt"));
    let files = ServerCredential::Files {
        cert: &cert,
        key: &key,
        client_ca: Some(&client_ca),
    };
    let tls = gateway_server_tls(GatewayTlsMode::Mutual, files, &["http/1.1"]);
    let port = trellis_e2e::free_ports_on(EXTERNAL_IP, 1)[0];
    let chain = envoy_types::pb::envoy::config::listener::v3::FilterChain {
        filters: vec![http_connection_manager(
            "external",
            vec![vhost("api", &["*"], vec![route_to("external-app")])],
            vec![],
            false,
        )],
        transport_socket: Some(downstream_transport_socket(&tls)),
        ..Default::default()
    };
    let bootstrap = bootstrap_yaml(
        "external",
        vec![listener(
            "external",
            std::net::SocketAddr::from((EXTERNAL_IP, port)),
            vec![chain],
            vec![],
        )],
        vec![static_cluster("external-app", &[app.addr()], None)],
    );
    (trellis_e2e::Envoy::start(&bootstrap), port)
}

/// A plain HTTP GET of [`API_HOST`] through the gateway's `port`: the status
/// and the answering upstream.
fn get_api_through_gateway(port: u16) -> Option<(u16, String)> {
    let addr = format!("{GATEWAY_IP}:{port}").parse().unwrap();
    let r = trellis_e2e::HttpRequest::get("/")
        .host(API_HOST)
        .send(addr)
        .ok()?;
    let upstream = r.header("x-upstream").unwrap_or_default().to_string();
    Some((r.status, upstream))
}

/// Waits for the `MissingCredential` Warning condition on object `kind/name` of [`NS`].
fn missing_credential_warning(cluster: &Cluster, kind: &str, name: &str) -> serde_json::Value {
    wait_for(
        &format!("a Warning on {kind} {NS}/{name} for its missing credential"),
        Duration::from_secs(60),
        || {
            let object = cluster.kubectl.get_json(&[kind, "-n", NS, name])?;
            let conditions = object["status"]["conditions"].as_array()?.clone();
            conditions
                .into_iter()
                .find(|c| c["type"] == "Warning" && c["reason"] == "MissingCredential")
        },
    )
}

#[test]
fn an_injected_gateway_serves_https_with_a_kubernetes_tls_secret() {
    let web = trellis_e2e::Upstream::echo("web-app", Ipv4Addr::new(127, 0, 0, 81));
    let cluster = Cluster::start();
    // Not labelled for injection: the gateway pod's own label selects it, as
    // Istio's gateway charts do, and brings the namespace's identities and
    // ConfigMaps with it.
    cluster.namespace(NS, &[], &["ingress", "web"]);
    let set_pod_ip = |pod: &str, ip: &str| {
        cluster.kubectl.run(&[
            "patch",
            "pod",
            "-n",
            NS,
            pod,
            "--subresource=status",
            "--type=merge",
            "-p",
            &format!("{{\"status\":{{\"podIP\":\"{ip}\",\"phase\":\"Running\"}}}}"),
        ]);
    };
    cluster.kubectl.apply(&format!(
        "apiVersion: v1\nkind: Pod\nmetadata: {{name: web-1, namespace: {NS}, labels: {{app: web}}}}\n\
         spec: {{serviceAccountName: web, containers: [{{name: app, image: example/web:1}}]}}\n\
         ---\napiVersion: v1\nkind: Service\nmetadata: {{name: web, namespace: {NS}}}\n\
         spec: {{clusterIP: 10.96.0.41, selector: {{app: web}}, ports: [{{name: http, port: 80, targetPort: {}}}]}}\n",
        web.port()
    ));
    set_pod_ip("web-1", &web.ip());
    let gateway_pod = format!(
        "apiVersion: v1\nkind: Pod\nmetadata:\n  name: {GATEWAY_POD}\n  namespace: {NS}\n  \
         labels: {{istio: ingressgateway, sidecar.istio.io/inject: \"true\"}}\n  \
         annotations: {{inject.istio.io/templates: gateway}}\n\
         spec:\n  serviceAccountName: ingress\n  containers:\n  - {{name: istio-proxy, image: auto}}\n"
    );
    cluster.kubectl.apply(&gateway_pod);
    set_pod_ip(GATEWAY_POD, GATEWAY_IP);

    let dir = tempfile::tempdir().unwrap();
    self_signed(dir.path(), "first");
    apply_tls_secret(&cluster, dir.path(), "first");
    let port = free_port();
    cluster.kubectl.apply(&format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: ingress-gw, namespace: {NS}}}\n\
         spec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {port}, name: https, protocol: HTTPS}}\n    \
         hosts: [\"{HOST}\"]\n    tls: {{mode: SIMPLE, credentialName: web-tls}}\n\
         ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: web, namespace: {NS}}}\n\
         spec:\n  hosts: [\"{HOST}\"]\n  gateways: [ingress-gw]\n  http:\n  - route: [{{destination: {{host: web}}}}]\n"
    ));

    let args = pod_proxy::operator_args_with_xds();
    let mut op = Operator::start(cluster.server.kubeconfig_path(), "op-1", &args);
    op.wait_ready();
    let bootstrap = pod_proxy::wait_bootstrap(&cluster, NS);

    // The gateway as `trellis inject` makes it of Istio's gateway pod.
    let pod = cluster
        .kubectl
        .get_json(&["pod", "-n", NS, GATEWAY_POD])
        .expect("the gateway Pod");
    let container = pod_proxy::injected_container(&gateway_pod, "istio-proxy");
    let envoy_args = pod_proxy::proxy_args(&container, &pod);
    let node = format!("router~{GATEWAY_IP}~{GATEWAY_POD}.{NS}~{NS}.svc.cluster.local");
    assert!(envoy_args.contains(&node), "{envoy_args:?}");
    let gateway = PodProxy::start(&cluster, NS, "ingress", &bootstrap, &envoy_args);

    let answer = |name: &str| get_through_gateway(dir.path(), name, port);
    let mut last = Err(String::new());
    let served = wait_for(
        "the gateway to serve HTTPS with the Secret's certificate",
        Duration::from_secs(60),
        || {
            last = answer("first");
            last.clone().ok().filter(|(status, _)| *status == 200)
        },
    );
    assert_eq!(served, (200, "web-app".to_string()), "{last:?}");
    assert!(web.hits() >= 1);
    // Ready for the kubelet's probe, and listening for Prometheus on 15090
    // (whose answers come from the admin port, moved off 15000 here).
    let ready = std::net::SocketAddr::from(([127, 0, 0, 1], 15021));
    assert!(pod_proxy::http_get(ready, "/healthz/ready").is_some());
    let listeners = gateway.admin_get("/listeners").unwrap_or_default();
    assert!(listeners.contains("0.0.0.0:15090"), "{listeners}");
    // The certificate served is the Secret's: a client trusting another one is refused.
    self_signed(dir.path(), "second");
    assert!(
        answer("second").is_err(),
        "verified against the wrong certificate"
    );

    // A renewed Secret (cert-manager's way) reaches the running gateway over SDS.
    apply_tls_secret(&cluster, dir.path(), "second");
    wait_for(
        "the gateway to serve the renewed certificate",
        Duration::from_secs(60),
        || answer("second").ok().filter(|(status, _)| *status == 200),
    );
    assert!(
        answer("first").is_err(),
        "the old certificate is still served"
    );

    // Egress: the same gateway originates mutual TLS to a server outside the
    // mesh with the client certificate of Secret `api-client`, which a
    // DestinationRule names by credentialName (Istio's egress TLS origination).
    let external_app = trellis_e2e::Upstream::echo("external-app", Ipv4Addr::new(127, 0, 0, 85));
    let (external, external_port) = external_mtls_server(dir.path(), &external_app);
    let egress_port = free_port();
    let from =
        |key: &str, file: &str| format!("--from-file={key}={}", dir.path().join(file).display());
    let secret = cluster.kubectl.run(&[
        "create",
        "secret",
        "generic",
        "api-client",
        "-n",
        NS,
        &from("tls.crt", "client.crt"),
        &from("tls.key", "client.key"),
        &from("ca.crt", "ca.crt"),
        "--dry-run=client",
        "-o",
        "yaml",
    ]);
    cluster.kubectl.apply(&secret);
    cluster.kubectl.apply(&format!(
        "apiVersion: networking.istio.io/v1\nkind: ServiceEntry\nmetadata: {{name: api, namespace: {NS}}}\n\
         spec:\n  hosts: [\"{API_HOST}\"]\n  resolution: STATIC\n  \
         ports: [{{number: 443, name: https, protocol: HTTPS}}]\n  \
         endpoints: [{{address: {EXTERNAL_IP}, ports: {{https: {external_port}}}}}]\n\
         ---\napiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: egress-gw, namespace: {NS}}}\n\
         spec:\n  selector: {{istio: ingressgateway}}\n  servers:\n  - port: {{number: {egress_port}, name: http-egress, protocol: HTTP}}\n    \
         hosts: [\"{API_HOST}\"]\n\
         ---\napiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {{name: api, namespace: {NS}}}\n\
         spec:\n  hosts: [\"{API_HOST}\"]\n  gateways: [egress-gw]\n  http:\n  - route: [{{destination: {{host: \"{API_HOST}\", port: {{number: 443}}}}}}]\n\
         ---\napiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {{name: api, namespace: {NS}}}\n\
         spec:\n  host: \"{API_HOST}\"\n  trafficPolicy:\n    portLevelSettings:\n    - port: {{number: 443}}\n      \
         tls: {{mode: MUTUAL, credentialName: api-client, sni: \"{API_HOST}\"}}\n"
    ));
    let mut last = None;
    let through = wait_for(
        "the gateway to originate mutual TLS with Secret api-client",
        Duration::from_secs(60),
        || {
            last = get_api_through_gateway(egress_port);
            last.clone().filter(|(status, _)| *status == 200)
        },
    );
    assert_eq!(through, (200, "external-app".to_string()), "{last:?}");
    // The server saw the Secret's client certificate: it refuses connections without one.
    assert!(
        external.stat(&format!(
            "listener.{EXTERNAL_IP}_{external_port}.ssl.handshake"
        )) >= 1
    );

    assert_eq!(
        op.metric("trellis_xds_nacks_total").unwrap_or(0.0),
        0.0,
        "{}",
        gateway.log()
    );
    let log = op.log_text();
    for key in ["second.key", "client.key"] {
        let key = std::fs::read_to_string(dir.path().join(key)).unwrap();
        let key_body = key.lines().nth(1).expect("a PEM body line");
        assert!(
            !log.contains("PRIVATE KEY") && !log.contains(key_body),
            "a private key reached the operator's log"
        );
    }
    // Without its Secret the server cannot be served: the Gateway says so.
    cluster
        .kubectl
        .run(&["delete", "secret", "-n", NS, "web-tls"]);
    let warning = missing_credential_warning(&cluster, "gateway", "ingress-gw");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.servers[0].tls.credentialName") && message.contains("edge/web-tls"),
        "{warning}"
    );
    // So does the DestinationRule whose client certificate is gone.
    cluster
        .kubectl
        .run(&["delete", "secret", "-n", NS, "api-client"]);
    let warning = missing_credential_warning(&cluster, "destinationrule", "api");
    let message = warning["message"].as_str().unwrap_or_default();
    assert!(
        message.contains("spec.trafficPolicy.portLevelSettings[0].tls.credentialName")
            && message.contains("edge/api-client"),
        "{warning}"
    );

    // The namespace is in the mesh for status too: it gets its MeshStatus.
    wait_for("MeshStatus edge/mesh", Duration::from_secs(60), || {
        cluster.kubectl.get_json(&["meshstatus", "mesh", "-n", NS])
    });
    drop(gateway);

    // The last selected pod gone, the namespace leaves the mesh.
    cluster
        .kubectl
        .run(&["delete", "pod", "-n", NS, GATEWAY_POD]);
    wait_for(
        "ConfigMap edge/trellis-sidecar-bootstrap to go with the gateway pod",
        Duration::from_secs(60),
        || {
            pod_proxy::bootstrap_config_map(&cluster, NS)
                .is_none()
                .then_some(())
        },
    );
    wait_for(
        "the identity of edge/ingress to go with the gateway pod",
        Duration::from_secs(60),
        || cluster.identity(NS, "ingress").is_none().then_some(()),
    );
    wait_for(
        "MeshStatus edge/mesh to go with the gateway pod",
        Duration::from_secs(60),
        || {
            (cluster.kubectl)
                .get_json(&["meshstatus", "mesh", "-n", NS])
                .is_none()
                .then_some(())
        },
    );
    op.terminate();
}
