//! The `trellis up` backend without Envoy: directory objects in, per-proxy
//! snapshots out, in the explicit (universal mode) shape.
use envoy_types::pb::envoy::config::listener::v3::Listener;
use prost::Message;
use std::path::Path;
use trellis_local::backend::{BackendOptions, ModelBackend, OUTBOUND_PORTS_FILE};
use trellis_local::config_set::ResourceChange;
use trellis_local::mesh::MeshBackend;
use trellis_xds::{ProxyId, ProxyKind, ResourceType, Snapshot};

const OBJECTS: &str = r#"
apiVersion: v1
kind: ServiceAccount
metadata: {name: cart, namespace: shop}
---
apiVersion: v1
kind: ServiceAccount
metadata: {name: frontend, namespace: shop}
---
apiVersion: v1
kind: Service
metadata: {name: cart, namespace: shop}
spec:
  selector: {app: cart}
  ports:
  - {name: http, port: 80, targetPort: 8080}
---
apiVersion: v1
kind: Service
metadata: {name: db, namespace: shop}
spec:
  selector: {app: db}
  ports:
  - {name: tcp-postgres, port: 5432, targetPort: 5432}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: cart-v1
  namespace: shop
  annotations: {local.trellis.dev/app-port: "18011"}
spec:
  address: 127.0.0.11
  serviceAccount: cart
  labels: {app: cart}
---
apiVersion: networking.istio.io/v1
kind: WorkloadEntry
metadata:
  name: frontend
  namespace: shop
  annotations: {local.trellis.dev/app-port: "18010"}
spec:
  address: 127.0.0.10
  serviceAccount: frontend
  labels: {app: frontend}
"#;

fn backend(state: &Path) -> ModelBackend {
    ModelBackend::new(BackendOptions {
        state_dir: state.to_path_buf(),
        trust_domain: "cluster.local".into(),
        dns_domain: "cluster.local".into(),
        outbound_http_port: 15001,
        privileged_port_offset: 8000,
    })
    .unwrap()
}

fn changes(yaml: &str) -> Vec<ResourceChange> {
    let (resources, errors) = trellis_api::load_all("test.yaml", yaml);
    assert!(errors.is_empty(), "{errors:?}");
    resources
        .into_iter()
        .map(|r| ResourceChange::Apply(Box::new(r)))
        .collect()
}

fn snapshot(b: &ModelBackend, name: &str, sa: &str) -> Snapshot {
    b.snapshot_source()
        .snapshot(&ProxyId::new(ProxyKind::Sidecar, "shop", name, sa))
        .unwrap()
}

/// A packed resource as proto3 JSON text (nested `Any`s decoded too).
fn json(any: &envoy_types::pb::google::protobuf::Any) -> String {
    let message = any.type_url.rsplit('/').next().unwrap();
    trellis_envoy_json::bytes_to_json(message, &any.value)
        .unwrap()
        .to_string()
}

fn names(s: &Snapshot, ty: ResourceType) -> Vec<String> {
    s.get(ty).iter().map(|r| r.name.clone()).collect()
}

#[test]
fn sidecars_get_explicit_listeners_inbound_to_the_app_port_and_tcp_ports() {
    let tmp = tempfile::tempdir().unwrap();
    let b = backend(tmp.path());
    b.apply(&changes(OBJECTS));
    let ports = b.tcp_outbound_ports();
    let db_port = *ports
        .get(&("db.shop.svc.cluster.local".to_string(), 5432))
        .unwrap_or_else(|| panic!("{ports:?}"));
    assert_eq!(ports.len(), 1, "HTTP services get no TCP port: {ports:?}");

    let frontend = snapshot(&b, "frontend", "frontend");
    let listeners = names(&frontend, ResourceType::Listener);
    assert!(
        listeners.contains(&"127.0.0.10_15001".to_string()),
        "{listeners:?}"
    );
    assert!(
        listeners.contains(&format!("127.0.0.10_{db_port}")),
        "{listeners:?}"
    );
    let clusters = names(&frontend, ResourceType::Cluster);
    assert!(
        clusters.contains(&"outbound|80||cart.shop.svc.cluster.local".to_string()),
        "{clusters:?}"
    );
    assert!(names(&frontend, ResourceType::Route).contains(&"outbound_http_proxy".to_string()));
    // The workload certificate comes from the proxy's own file-SDS file.
    let cluster = frontend
        .get(ResourceType::Cluster)
        .get("outbound|80||cart.shop.svc.cluster.local")
        .unwrap();
    let text = json(&cluster.any);
    let sds = tmp
        .path()
        .join("bootstrap/shop/frontend/sds-workload-cert.json");
    assert!(text.contains(sds.to_str().unwrap()), "{text}");
    // cart's endpoint is its workload address at the target port.
    let cla = frontend
        .get(ResourceType::Endpoint)
        .get("outbound|80||cart.shop.svc.cluster.local")
        .unwrap();
    let text = json(&cla.any);
    assert!(
        text.contains("127.0.0.11") && text.contains("8080"),
        "{text}"
    );

    // cart-v1 serves 8080 on its own address and forwards to its app port.
    let cart = snapshot(&b, "cart-v1", "cart");
    let listener = cart
        .get(ResourceType::Listener)
        .get("127.0.0.11_8080")
        .unwrap_or_else(|| panic!("{:?}", names(&cart, ResourceType::Listener)));
    let listener = Listener::decode(listener.any.value.as_slice()).unwrap();
    assert!(format!("{:?}", listener.address).contains("127.0.0.11"));
    let inbound = cart
        .get(ResourceType::Cluster)
        .get("inbound|8080||")
        .unwrap();
    let text = json(&inbound.any);
    assert!(text.contains("18011"), "{text}");

    // The TCP port is kept for the next run on the same state directory.
    assert!(tmp.path().join(OUTBOUND_PORTS_FILE).exists());
    let again = backend(tmp.path());
    again.apply(&changes(OBJECTS));
    assert_eq!(again.tcp_outbound_ports(), ports);
}

#[test]
fn translation_errors_are_reported_and_forgotten_with_their_proxy() {
    let tmp = tempfile::tempdir().unwrap();
    let b = backend(tmp.path());
    let vs = "apiVersion: networking.istio.io/v1\nkind: VirtualService\nmetadata: {name: cart, namespace: shop}\nspec:\n  hosts: [cart]\n  http:\n  - route:\n    - destination: {host: cart, subset: v9}\n";
    b.apply(&changes(&format!("{OBJECTS}\n---\n{vs}")));
    let _ = snapshot(&b, "frontend", "frontend");
    let errors = b.config_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.kind.as_deref() == Some("VirtualService")
                && e.name.as_deref() == Some("cart")
                && e.message.contains("v9")),
        "{errors:?}"
    );
    // The frontend workload leaves: its errors go with it.
    let (resources, _) = trellis_api::load_all("test.yaml", OBJECTS);
    let frontend = resources
        .iter()
        .find(|r| r.kind() == "WorkloadEntry" && r.name() == "frontend")
        .unwrap();
    b.apply(&[ResourceChange::Delete(frontend.object_ref())]);
    assert!(
        !b.config_errors()
            .iter()
            .any(|e| e.kind.as_deref() == Some("VirtualService")),
        "{:?}",
        b.config_errors()
    );
}

/// Universal mode reads no Kubernetes Secrets: a DestinationRule credential
/// that applies to a sidecar (through its selector) is reported on the rule's
/// field instead of leaving the cluster waiting in silence.
#[test]
fn a_credential_name_is_reported_in_universal_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let b = backend(tmp.path());
    let dr = "apiVersion: networking.istio.io/v1\nkind: DestinationRule\nmetadata: {name: cart, namespace: shop}\n\
              spec:\n  host: cart\n  workloadSelector: {matchLabels: {app: frontend}}\n  \
              trafficPolicy: {tls: {mode: MUTUAL, credentialName: cart-client}}\n";
    b.apply(&changes(&format!("{OBJECTS}\n---\n{dr}")));
    let _ = snapshot(&b, "frontend", "frontend");
    let errors = b.config_errors();
    let on_rule: Vec<_> = (errors.iter())
        .filter(|e| e.kind.as_deref() == Some("DestinationRule"))
        .collect();
    // once, for both the client certificate and the CA
    assert_eq!(on_rule.len(), 1, "{errors:?}");
    for e in on_rule {
        assert_eq!(
            e.field.as_deref(),
            Some("spec.trafficPolicy.tls.credentialName")
        );
        assert!(
            e.message.contains("sidecar shop/frontend")
                && e.message.contains("no Kubernetes Secrets"),
            "{e:?}"
        );
    }
}

#[test]
fn a_meshconfig_trust_domain_other_than_the_running_one_is_reported() {
    let tmp = tempfile::tempdir().unwrap();
    let b = backend(tmp.path());
    b.apply(&changes(
        "apiVersion: mesh.trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: default}\nspec: {trustDomain: example.org}\n",
    ));
    let errors = b.config_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.kind.as_deref() == Some("MeshConfig")
                && e.field.as_deref() == Some("spec.trustDomain")
                && e.message.contains("--trust-domain example.org")),
        "{errors:?}"
    );
}

/// CUSTOM authorization in universal mode: the directory's MeshConfig
/// `extensionProviders` name the authorizer, a CUSTOM policy puts `ext_authz`
/// on the selected workload's inbound listener; without the provider the
/// workload denies everything and the policy reports why.
#[test]
fn a_custom_policy_uses_the_directorys_mesh_config_provider() {
    let authz = r#"
apiVersion: v1
kind: Service
metadata: {name: authz, namespace: shop}
spec:
  selector: {app: authz}
  ports:
  - {name: http, port: 8000, targetPort: 8000}
---
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: cart-ext, namespace: shop}
spec:
  selector: {matchLabels: {app: cart}}
  action: CUSTOM
  provider: {name: ext-authz}
  rules:
  - to:
    - operation: {paths: [/admin/*]}
"#;
    let mesh_config = "apiVersion: mesh.trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: default}\nspec:\n  extensionProviders:\n  - name: ext-authz\n    envoyExtAuthzHttp: {service: authz.shop.svc.cluster.local, port: 8000}\n";
    let tmp = tempfile::tempdir().unwrap();
    let b = backend(tmp.path());
    b.apply(&changes(&format!(
        "{OBJECTS}\n---\n{authz}\n---\n{mesh_config}"
    )));
    let cart = snapshot(&b, "cart-v1", "cart");
    let listener = cart
        .get(ResourceType::Listener)
        .get("127.0.0.11_8080")
        .unwrap();
    let text = json(&listener.any);
    assert!(
        text.contains("envoy.filters.http.ext_authz")
            && text.contains("outbound|8000||authz.shop.svc.cluster.local")
            && text.contains("istio_ext_authz_shadow_effective_policy_id"),
        "{text}"
    );
    assert!(b.config_errors().is_empty(), "{:?}", b.config_errors());
    // frontend is not selected: no authorizer there
    let frontend = snapshot(&b, "frontend", "frontend");
    let all: String = (frontend.get(ResourceType::Listener).iter())
        .map(|r| json(&r.any))
        .collect();
    assert!(!all.contains("ext_authz"), "{all}");

    // The MeshConfig loses its provider: cart denies everything, with an error.
    let (resources, _) = trellis_api::load_all("test.yaml", mesh_config);
    b.apply(&[ResourceChange::Delete(resources[0].object_ref())]);
    let cart = snapshot(&b, "cart-v1", "cart");
    let text = json(
        &cart
            .get(ResourceType::Listener)
            .get("127.0.0.11_8080")
            .unwrap()
            .any,
    );
    assert!(
        !text.contains("envoy.filters.http.ext_authz")
            && text.contains("default-deny-all-due-to-bad-CUSTOM-action"),
        "{text}"
    );
    let errors = b.config_errors();
    assert!(
        errors
            .iter()
            .any(|e| e.kind.as_deref() == Some("AuthorizationPolicy")
                && e.name.as_deref() == Some("cart-ext")
                && e.message.contains("ext-authz")),
        "{errors:?}"
    );
}

/// Universal mode reads the directory's MeshConfig access log: the proxies'
/// listeners log to the file, in its encoding.
#[test]
fn the_mesh_configs_access_log_reaches_the_listeners() {
    let tmp = tempfile::tempdir().unwrap();
    let b = backend(tmp.path());
    let mesh_config = "apiVersion: mesh.trellis.dev/v1alpha1\nkind: MeshConfig\nmetadata: {name: default}\nspec:\n  accessLogFile: /var/log/trellis/access.log\n  accessLogEncoding: JSON\n";
    b.apply(&changes(&format!("{OBJECTS}---\n{mesh_config}")));
    let frontend = snapshot(&b, "frontend", "frontend");
    let outbound = frontend
        .get(ResourceType::Listener)
        .get("127.0.0.10_15001")
        .unwrap();
    let text = json(&outbound.any);
    assert!(text.contains("envoy.access_loggers.file"), "{text}");
    assert!(text.contains("/var/log/trellis/access.log"), "{text}");
    assert!(
        text.contains("\"upstream_cluster\""),
        "the JSON line: {text}"
    );
    // Without it, no access log.
    let tmp = tempfile::tempdir().unwrap();
    let b = backend(tmp.path());
    b.apply(&changes(OBJECTS));
    let frontend = snapshot(&b, "frontend", "frontend");
    let text = json(
        &frontend
            .get(ResourceType::Listener)
            .get("127.0.0.10_15001")
            .unwrap()
            .any,
    );
    assert!(!text.contains("access_log"), "{text}");
}
