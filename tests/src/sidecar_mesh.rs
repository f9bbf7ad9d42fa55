//! A small mesh in namespace `shop`, translated by the real translator (explicit
//! universal shape) and loaded into real Envoy as a static bootstrap.
//!
//! Every service has one HTTP port 80 named `http` whose target port is the named
//! port `http`, so each workload (one upstream server of ours) serves it on its own
//! address and port. The client is the sidecar of workload `shop/web-1`, which sits
//! behind no service and sends everything through its outbound HTTP proxy port.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use trellis_api::networking::{DestinationRule, VirtualService};
use trellis_model::{MeshModel, MeshSettings, MtlsMode, Resource, Workload};
use trellis_translate::{
    ExplicitPorts, ListenerShape, Proxy, ProxyResources, SdsSource, TranslateOptions, Translator,
};

use crate::envoy::{Envoy, validate_bootstrap_in};
use crate::golden::check_golden;
use crate::mesh::{Identity, relative_file_sds, test_ca};
use crate::proxy_bootstrap::static_bootstrap;

pub const NAMESPACE: &str = "shop";

/// `name.shop.svc.cluster.local`.
pub fn fqdn(name: &str) -> String {
    format!("{name}.{NAMESPACE}.svc.cluster.local")
}

/// The Envoy cluster of a service's port 80 (optionally a subset).
pub fn cluster(service: &str, subset: Option<&str>) -> String {
    format!("outbound|80|{}|{}", subset.unwrap_or(""), fqdn(service))
}

/// A Service `shop/<name>` selecting `app: <app>`, port 80 `http` -> target port `http`,
/// with a cluster IP derived from the name (distinct for distinct names here).
pub fn service(name: &str, app: &str) -> Resource {
    service_with_port(name, app, "http", 80)
}

/// [`service`] with one TCP port `port` (named `tcp`) instead.
pub fn tcp_service(name: &str, app: &str, port: u16) -> Resource {
    service_with_port(name, app, "tcp", port)
}

/// [`service`] with one TLS port `port` (named `tls`) instead.
pub fn tls_service(name: &str, app: &str, port: u16) -> Resource {
    service_with_port(name, app, "tls", port)
}

fn service_with_port(name: &str, app: &str, port_name: &str, port: u16) -> Resource {
    let n = name
        .bytes()
        .fold(7u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)));
    let cluster_ip = format!(
        "10.{}.{}.{}",
        (n >> 16) & 0xff,
        (n >> 8) & 0xff,
        (n & 0xff).max(1)
    );
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": NAMESPACE},
        "spec": {
            "selector": {"app": app},
            "ports": [{"name": port_name, "port": port, "targetPort": "http"}],
            "clusterIP": cluster_ip
        }
    }))
    .expect("service");
    Resource::Service(Box::new(svc))
}

/// A workload `shop/<name>` serving its named port `http` on `addr`, with service
/// account `<app>` and labels `app: <app>` plus `labels`.
pub fn workload(
    name: &str,
    app: &str,
    addr: SocketAddr,
    labels: &[(&str, &str)],
    has_sidecar: bool,
) -> Workload {
    let mut w = Workload::new(NAMESPACE, name, addr.ip().to_string());
    w.labels = BTreeMap::from([("app".to_string(), app.to_string())]);
    w.labels
        .extend(labels.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    w.service_account = app.to_string();
    w.ports = BTreeMap::from([("http".to_string(), addr.port())]);
    w.has_sidecar = has_sidecar;
    w
}

/// A workload without a sidecar (plaintext endpoint), as most upstreams here are.
pub fn plain_workload(
    name: &str,
    app: &str,
    addr: SocketAddr,
    labels: &[(&str, &str)],
) -> Resource {
    Resource::Workload(Box::new(workload(name, app, addr, labels, false)))
}

/// A mesh object's YAML as JSON (the API's enums are tagged maps, as in Istio's JSON).
fn yaml_value(yaml: &str) -> serde_json::Value {
    serde_yaml::from_str(yaml).unwrap_or_else(|e| panic!("yaml: {e}\n{yaml}"))
}

pub fn virtual_service(yaml: &str) -> Resource {
    let vs: VirtualService = serde_json::from_value(yaml_value(yaml))
        .unwrap_or_else(|e| panic!("VirtualService: {e}\n{yaml}"));
    Resource::VirtualService(Box::new(vs))
}

pub fn destination_rule(yaml: &str) -> Resource {
    let dr: DestinationRule = serde_json::from_value(yaml_value(yaml))
        .unwrap_or_else(|e| panic!("DestinationRule: {e}\n{yaml}"));
    Resource::DestinationRule(Box::new(dr))
}

/// Service `shop/routes` served by `v1` at `v1_addr` and `v2` at `v2_addr`
/// (workloads `a` and `b`), with a DestinationRule defining subsets v1 and v2.
pub fn routes_with_subsets(v1_addr: SocketAddr, v2_addr: SocketAddr) -> Vec<Resource> {
    vec![
        service("routes", "routes"),
        plain_workload("a", "routes", v1_addr, &[("version", "v1")]),
        plain_workload("b", "routes", v2_addr, &[("version", "v2")]),
        destination_rule(
            r#"
metadata: {name: routes, namespace: shop}
spec:
  host: routes
  subsets:
  - {name: v1, labels: {version: v1}}
  - {name: v2, labels: {version: v2}}
"#,
        ),
    ]
}

/// Mesh settings with `default_mtls`.
pub fn mesh_settings(default_mtls: MtlsMode) -> Resource {
    Resource::MeshSettings(MeshSettings {
        default_mtls,
        ..MeshSettings::default()
    })
}

/// The model of `resources` plus the client workload `web-1` at `client_ip`.
pub fn model(resources: Vec<Resource>, client_ip: Ipv4Addr) -> MeshModel {
    let mut m = MeshModel::new(MeshSettings::default());
    let client = workload("web-1", "web", SocketAddr::from((client_ip, 1)), &[], true);
    for r in resources
        .into_iter()
        .chain([Resource::Workload(Box::new(client))])
    {
        m.apply(r).expect("apply to model");
    }
    m
}

/// Explicit-shape options with the outbound HTTP proxy on `outbound_port`.
pub fn options(outbound_port: u16, sds: SdsSource) -> TranslateOptions {
    TranslateOptions {
        shape: ListenerShape::Explicit(ExplicitPorts {
            outbound_http_port: outbound_port,
            ..Default::default()
        }),
        sds,
    }
}

/// Translates the sidecar of `shop/<workload>`; panics on translation errors (the
/// scenarios here are all valid).
pub fn translate_sidecar(
    model: &MeshModel,
    workload: &str,
    options: TranslateOptions,
) -> ProxyResources {
    let out = Translator::new(model, options).translate(&Proxy::sidecar(NAMESPACE, workload));
    assert!(
        out.errors.is_empty(),
        "translation errors: {:#?}",
        out.errors
    );
    out
}

/// A server sidecar: the Envoy of `shop/<workload>` (service account `sa`)
/// translated from `model` and started, and the directory of its identity,
/// issued by `ca`, which must outlive it.
pub fn start_sidecar(
    ca: &trellis_ca::CertificateAuthority,
    model: &MeshModel,
    workload: &str,
    sa: &str,
    outbound_port: u16,
) -> (Envoy, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("tempdir");
    let identity = Identity::issue(ca, dir.path(), NAMESPACE, sa);
    let out = translate_sidecar(model, workload, options(outbound_port, identity.sds()));
    let yaml = static_bootstrap(workload, &out);
    crate::validate_bootstrap(&yaml).expect("server sidecar bootstrap validates");
    (Envoy::start(&yaml), dir)
}

/// Checks `tests/golden/<scenario>.yaml` and validates it with `envoy --mode validate`,
/// with identities for `who` written where its relative SDS paths point.
pub fn check_golden_bootstrap(scenario: &str, bootstrap: &str, who: &[&str]) {
    check_golden(scenario, bootstrap);
    let dir = tempfile::tempdir().expect("tempdir");
    let ca = test_ca();
    for w in who {
        Identity::issue_with_relative_sds(
            &ca,
            dir.path(),
            &format!("identities/{w}"),
            NAMESPACE,
            w,
        );
    }
    validate_bootstrap_in(dir.path(), bootstrap)
        .unwrap_or_else(|e| panic!("golden {scenario} does not validate: {e}"));
}

/// A client sidecar running in real Envoy.
pub struct Client {
    pub envoy: Envoy,
    /// The outbound HTTP proxy listener (send requests here with a service's Host).
    pub listen: SocketAddr,
    /// The local listener of each TCP service port asked for, in the order asked.
    pub tcp: Vec<SocketAddr>,
    _identity: tempfile::TempDir,
}

impl Client {
    /// `GET path` with `Host: host` through the sidecar's outbound HTTP proxy.
    pub fn get(&self, host: &str, path: &str) -> crate::HttpResponse {
        crate::HttpRequest::get(path)
            .host(host)
            .send(self.listen)
            .unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
    }

    /// [`Client::get`] that must answer 200 from an echo upstream: the upstream's name.
    pub fn served_by(&self, host: &str, path: &str) -> String {
        let r = self.get(host, path);
        assert_eq!(
            r.status,
            200,
            "GET {host}{path}: {}; envoy log:\n{}",
            r.body_text(),
            self.envoy.log()
        );
        r.json()["server"].as_str().unwrap_or_default().to_string()
    }
}

/// Translates `web-1`'s sidecar for `resources` and starts Envoy on it. The identity
/// (`shop/web`) is issued by `ca`. Also validates the bootstrap offline first.
pub fn start_client(
    ca: &trellis_ca::CertificateAuthority,
    resources: Vec<Resource>,
    client_ip: Ipv4Addr,
) -> Client {
    start_client_with_tcp(ca, resources, client_ip, &[])
}

/// [`start_client`] with a local listener for each of `tcp_ports`, (service
/// name in namespace shop, port): universal mode's outbound TCP ports.
pub fn start_client_with_tcp(
    ca: &trellis_ca::CertificateAuthority,
    resources: Vec<Resource>,
    client_ip: Ipv4Addr,
    tcp_ports: &[(&str, u16)],
) -> Client {
    let identity_dir = tempfile::tempdir().expect("tempdir");
    let identity = Identity::issue(ca, identity_dir.path(), NAMESPACE, "web");
    let ports = crate::free_ports_on(client_ip, 1 + tcp_ports.len());
    let model = model(resources, client_ip);
    let mut options = options(ports[0], identity.sds());
    if let ListenerShape::Explicit(explicit) = &mut options.shape {
        for ((name, port), local) in tcp_ports.iter().zip(&ports[1..]) {
            let host = format!("{name}.{NAMESPACE}.svc.cluster.local");
            explicit.tcp_outbound_ports.insert((host, *port), *local);
        }
    }
    let out = translate_sidecar(&model, "web-1", options);
    let yaml = static_bootstrap("web-1", &out);
    crate::validate_bootstrap(&yaml).expect("client sidecar bootstrap validates");
    Client {
        envoy: Envoy::start(&yaml),
        listen: SocketAddr::from((client_ip, ports[0])),
        tcp: (ports[1..].iter())
            .map(|p| SocketAddr::from((client_ip, *p)))
            .collect(),
        _identity: identity_dir,
    }
}

/// The golden form of a scenario: client `web-1` at 127.0.0.50, outbound port 15001,
/// relative SDS paths.
pub fn golden_client_bootstrap(resources: Vec<Resource>) -> String {
    golden_sidecar_bootstrap(resources, "web-1", "web")
}

/// The golden form of the sidecar of `shop/<workload>` (service account `sa`) in a
/// scenario (client `web-1` at 127.0.0.50), outbound port 15001, relative SDS paths.
pub fn golden_sidecar_bootstrap(resources: Vec<Resource>, workload: &str, sa: &str) -> String {
    let model = model(resources, Ipv4Addr::new(127, 0, 0, 50));
    let out = translate_sidecar(
        &model,
        workload,
        options(15001, relative_file_sds(&format!("identities/{sa}"))),
    );
    static_bootstrap(workload, &out)
}

/// Fixed addresses for golden files: `127.0.0.<base+i>:<9000+i>` for the i-th name.
pub fn golden_addrs(names: &[&str], base: u8) -> BTreeMap<String, SocketAddr> {
    names
        .iter()
        .enumerate()
        .map(|(i, n)| {
            (
                n.to_string(),
                SocketAddr::from(([127, 0, 0, base + i as u8], 9000 + i as u16)),
            )
        })
        .collect()
}
