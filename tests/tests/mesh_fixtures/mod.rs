//! Model building blocks shared by the gateway / ServiceEntry / Sidecar / interception
//! end-to-end tests: mesh objects from YAML, workloads, an ingress gateway on real
//! Envoy, and curl for HTTPS clients.
#![allow(dead_code)]
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::process::Command;

use trellis_e2e::mesh::Identity;
use trellis_e2e::sidecar_mesh::options;
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::{Envoy, Upstream, free_ports_on, validate_bootstrap_in};
use trellis_model::{MeshModel, MeshSettings, Resource, Workload};
use trellis_translate::{Proxy, Translator};

/// YAML through JSON: the API's enums are externally tagged maps, as in Istio's JSON.
pub fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("test YAML parses");
    serde_json::from_value(value).expect("test YAML has the API's shape")
}

/// A mesh object of any kind the model takes, from its YAML.
pub fn object(yaml: &str) -> Resource {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("test YAML parses");
    let kind = value["kind"].as_str().expect("kind").to_string();
    match kind.as_str() {
        "VirtualService" => Resource::VirtualService(Box::new(from_yaml(yaml))),
        "DestinationRule" => Resource::DestinationRule(Box::new(from_yaml(yaml))),
        "Gateway" => Resource::Gateway(Box::new(from_yaml(yaml))),
        "ServiceEntry" => Resource::ServiceEntry(Box::new(from_yaml(yaml))),
        "Sidecar" => Resource::Sidecar(Box::new(from_yaml(yaml))),
        "Service" => Resource::Service(Box::new(from_yaml(yaml))),
        "AuthorizationPolicy" => Resource::AuthorizationPolicy(Box::new(from_yaml(yaml))),
        other => panic!("fixture does not know kind {other}"),
    }
}

/// A Kubernetes Service selecting `app=<app>` with `(name, port, targetPort)` ports.
pub fn service(ns: &str, name: &str, app: &str, ports: &[(&str, u16, u16)]) -> Resource {
    let ports: Vec<_> = ports
        .iter()
        .map(|(n, p, t)| serde_json::json!({"name": n, "port": p, "targetPort": t}))
        .collect();
    Resource::Service(Box::new(
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {"selector": {"app": app}, "ports": ports}
        }))
        .expect("service"),
    ))
}

/// A workload at `addr` with labels; service account = its `app` label.
pub fn workload(
    ns: &str,
    name: &str,
    addr: &str,
    labels: &[(&str, &str)],
    sidecar: bool,
) -> Resource {
    let mut w = Workload::new(ns, name, addr);
    w.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    w.service_account = labels
        .iter()
        .find(|(k, _)| *k == "app")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| "default".into());
    w.has_sidecar = sidecar;
    Resource::Workload(Box::new(w))
}

pub fn model_of(settings: MeshSettings, resources: Vec<Resource>) -> MeshModel {
    let mut m = MeshModel::new(settings);
    for r in resources {
        m.apply(r).expect("fixture object applies");
    }
    m
}

/// What curl saw: the HTTP status (0 when no response, e.g. a failed handshake) and body.
pub struct CurlResult {
    pub status: u16,
    pub body: String,
}

/// `curl https://<host>:<port><path>` with `host` resolved to `addr` (SNI = host),
/// trusting `ca`; `client` is a (cert, key) pair for mutual TLS.
pub fn curl_https(
    host: &str,
    addr: SocketAddr,
    path: &str,
    ca: &Path,
    client: Option<(&Path, &Path)>,
) -> CurlResult {
    let mut cmd = Command::new("curl");
    cmd.args(["-s", "--max-time", "10", "-w", "\n%{http_code}"])
        .arg("--resolve")
        .arg(format!("{host}:{}:{}", addr.port(), addr.ip()))
        .arg("--cacert")
        .arg(ca);
    if let Some((cert, key)) = client {
        cmd.arg("--cert").arg(cert).arg("--key").arg(key);
    }
    cmd.arg(format!("https://{host}:{}{path}", addr.port()));
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("curl is needed for HTTPS tests (run make setup): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap_or(("", text.as_str()));
    CurlResult {
        status: code.trim().parse().unwrap_or(0),
        body: body.to_string(),
    }
}

/// The gateway workload `shop/ingress-1` at `ip`, labelled `istio: ingressgateway`.
pub fn ingress_workload(ip: Ipv4Addr) -> Resource {
    workload(
        "shop",
        "ingress-1",
        &ip.to_string(),
        &[("istio", "ingressgateway")],
        true,
    )
}

/// Gateway `shop/shop-gw` for the ingress workload, with one server (flow YAML).
pub fn one_server_gateway(server: &str) -> Resource {
    object(&format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: shop-gw, namespace: shop}}\n\
         spec: {{selector: {{istio: ingressgateway}}, servers: [{server}]}}\n"
    ))
}

/// Translates gateway `shop/ingress-1` at `ip` with identity `gw_id` for
/// `resources` (which must give no errors), validates its bootstrap in `dir`
/// and starts it on real Envoy.
pub fn start_gateway(
    ip: Ipv4Addr,
    dir: &Path,
    gw_id: &Identity,
    resources: Vec<Resource>,
) -> Envoy {
    let model = model_of(MeshSettings::default(), resources);
    let out = Translator::new(&model, options(free_ports_on(ip, 1)[0], gw_id.sds()))
        .translate(&Proxy::gateway("shop", "ingress-1"));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let yaml = static_bootstrap("ingress", &out, &SecretFiles::new());
    validate_bootstrap_in(dir, &yaml).expect("gateway validates");
    Envoy::start(&yaml)
}

/// Service `shop/<name>` on `port` (its name and number) served by `app`
/// (workload `<name>-1`, no sidecar), and VirtualService `shop/<name>`
/// sending `hosts` (a flow YAML list) that reach Gateway `shop/shop-gw` to
/// it by one route of `kind` (`http` or `tcp`).
pub fn behind_gateway(
    name: &str,
    app: &Upstream,
    port: (&str, u16),
    hosts: &str,
    kind: &str,
) -> Vec<Resource> {
    vec![
        service("shop", name, name, &[(port.0, port.1, app.port())]),
        workload(
            "shop",
            &format!("{name}-1"),
            &app.ip(),
            &[("app", name)],
            false,
        ),
        object(&format!(
            "apiVersion: networking.istio.io/v1\nkind: VirtualService\n\
             metadata: {{name: {name}, namespace: shop}}\n\
             spec:\n  hosts: {hosts}\n  gateways: [shop-gw]\n  {kind}:\n  \
             - route: [{{destination: {{host: {name}}}}}]\n"
        )),
    ]
}
