//! A Kubernetes API simulator with the Trellis webhooks registered (served
//! in-process as the operator serves them) and the real kubectl. Shared by
//! trellis-webhook's tests and the trellis binary's offline-injection test.
#![allow(dead_code)]

use kube_sim::{Kubectl, TestServer};
use serde_json::Value;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::SystemTime;
use trellis_webhook::{
    ServingCert, ServingRuntime, Webhook, WebhookClient, WebhookConfig, issue_serving_cert,
    mutating_webhook_configuration, validating_webhook_configuration,
};

pub const OPERATOR_NS: &str = "trellis-system";
pub const INIT_IMAGE: &str = "registry.example/trellis:test";

/// The workspace root (this file is compiled into tests of two crates).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .ancestors()
        .find(|d| d.join("Cargo.lock").is_file() && d.join("crds").is_dir())
        .expect("the workspace root above CARGO_MANIFEST_DIR")
        .to_path_buf()
}

/// The simulator, the webhook (served as the operator serves it) and kubectl.
pub struct Cluster {
    pub kubectl: Kubectl,
    _server: TestServer,
    // Dropping it stops the webhook.
    _webhook: ServingRuntime,
}

/// The webhook with a serving certificate from a new mesh CA, served as the
/// operator serves it on a port of loopback; and the certificate.
pub fn start_webhook() -> (ServingRuntime, SocketAddr, ServingCert) {
    let td = trellis_ca::TrustDomain::new("cluster.local").unwrap();
    let rng = std::sync::Arc::new(trellis_ca::SystemRandom::new());
    let ca = trellis_ca::CertificateAuthority::new_self_signed(
        &trellis_ca::RootOptions::new(td),
        SystemTime::now(),
        rng,
    )
    .unwrap();
    let cert = issue_serving_cert(&ca, OPERATOR_NS, SystemTime::now()).unwrap();
    let mesh = trellis_api::mesh::MeshConfigSpec::default();
    let config = WebhookConfig {
        cert: cert.clone(),
        injection: trellis_inject::InjectionContext::from_mesh_config(&mesh, INIT_IMAGE),
        operator_namespace: OPERATOR_NS.into(),
    };
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr: SocketAddr = listener.local_addr().unwrap();
    let serving = Webhook::new(&config)
        .unwrap()
        .serve_on_own_runtime(listener)
        .unwrap();
    (serving, addr, cert)
}

impl Cluster {
    pub fn start() -> Cluster {
        let server = TestServer::start().expect("kube-sim");
        let (serving, addr, cert) = start_webhook();
        // The API server reaches Service trellis-webhook.trellis-system:443 at our port,
        // verifying the certificate for trellis-webhook.trellis-system.svc.
        server.register_service(OPERATOR_NS, "trellis-webhook", 443, addr);
        let kubectl = Kubectl::new(server.kubeconfig_path());
        let client = WebhookClient::Service {
            namespace: OPERATOR_NS.into(),
            port: 443,
        };
        for config in [
            mutating_webhook_configuration(OPERATOR_NS, &client, &cert.ca_bundle_pem),
            validating_webhook_configuration(&client, &cert.ca_bundle_pem, "Fail"),
        ] {
            kubectl.apply(&config.to_string());
        }
        let crds = workspace_root().join("crds");
        kubectl.run(&["apply", "-k", crds.to_str().unwrap()]);
        Cluster {
            kubectl,
            _server: server,
            _webhook: serving,
        }
    }

    /// The pod `namespace/name` as stored (after admission).
    pub fn pod(&self, namespace: &str, name: &str) -> Value {
        self.kubectl
            .get_json(&["pod", name, "-n", namespace])
            .unwrap_or_else(|| panic!("pod {namespace}/{name} not found"))
    }

    pub fn namespace(&self, name: &str, labels: &[&str]) {
        self.kubectl.run(&["create", "namespace", name]);
        if !labels.is_empty() {
            let mut args = vec!["label", "namespace", name];
            args.extend_from_slice(labels);
            self.kubectl.run(&args);
        }
    }
}

pub fn container_names(pod: &Value, key: &str) -> Vec<String> {
    pod["spec"][key]
        .as_array()
        .map(|a| {
            a.iter()
                .map(|c| c["name"].as_str().unwrap_or_default().to_string())
                .collect()
        })
        .unwrap_or_default()
}

pub const APP_POD: &str = r#"
apiVersion: v1
kind: Pod
metadata:
  name: web
  labels: {app: web}
spec:
  serviceAccountName: web
  containers:
  - name: app
    image: registry.example/web:1
    ports: [{name: http, containerPort: 8080}]
    readinessProbe: {httpGet: {path: /ready, port: 8081}}
"#;
