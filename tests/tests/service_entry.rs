//! ServiceEntries on real Envoy, configured by the translator (explicit shape: the
//! app talks to its sidecar's HTTP proxy port): DNS resolution (`localhost`),
//! DNS_ROUND_ROBIN (a logical DNS cluster on one endpoint named `localhost`),
//! STATIC endpoints, TLS origination by a DestinationRule SIMPLE (CA and SAN
//! verified), and MeshConfig
//! outboundTrafficPolicy ALLOW_ANY (an unknown `ip:port` or name passes through,
//! also as a `CONNECT` tunnel) vs REGISTRY_ONLY (502, no tunnel); under both, a
//! `CONNECT` to a registered TCP port tunnels to that entry's endpoints. Plus the
//! golden bootstrap of the scenario.
mod mesh_fixtures;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, SystemTime};

use envoy_types::pb::envoy::config::core::v3::{DataSource, data_source::Specifier};
use envoy_types::pb::envoy::config::listener::v3::FilterChain;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
    CommonTlsContext, DownstreamTlsContext, TlsCertificate,
};
use mesh_fixtures::*;
use trellis_e2e::golden::check_golden;
use trellis_e2e::mesh::{
    bootstrap_yaml, http_connection_manager, listener, route_to, static_cluster, test_ca, vhost,
};
use trellis_e2e::sidecar_mesh::options;
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::{
    Envoy, HttpRequest, HttpResponse, Upstream, connect_and_get, free_ports_on, validate_bootstrap,
};
use trellis_model::{MeshSettings, OutboundPolicy, Resource};
use trellis_translate::security::tls::downstream_transport_socket;
use trellis_translate::{Proxy, ProxyResources, SdsSource, Translator};

const APP_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 80);

struct Addrs {
    dns_port: u16,
    static_ep: SocketAddr,
    tls_ep: SocketAddr,
    /// The endpoint of `ledger.internal:7000`, a TCP port.
    tcp_ep: SocketAddr,
    ca_file: String,
}

/// A MESH_EXTERNAL ServiceEntry `name` in namespace shop: `host` on port 80 (HTTP),
/// resolved STATIC to the one endpoint `ep`.
fn static_entry(name: &str, host: &str, ep: SocketAddr) -> Resource {
    object(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: {name}, namespace: shop}}
spec:
  hosts: [{host}]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: "{ip}", ports: {{http: {port}}}}}]
"#,
        ip = ep.ip(),
        port = ep.port()
    ))
}

/// A DestinationRule `name` in namespace shop: TLS SIMPLE to `host`, the server
/// verified against the CA file `ca`.
fn simple_tls_rule(name: &str, host: &str, ca: &str) -> Resource {
    object(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: shop}}
spec:
  host: {host}
  trafficPolicy:
    tls: {{mode: SIMPLE, caCertificates: "{ca}"}}
"#
    ))
}

fn resources(a: &Addrs) -> Vec<Resource> {
    vec![
        workload(
            "shop",
            "app-1",
            &APP_IP.to_string(),
            &[("app", "app")],
            true,
        ),
        object(&format!(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: local-dns, namespace: shop}}
spec:
  hosts: [localhost]
  location: MESH_EXTERNAL
  resolution: DNS
  ports: [{{number: {port}, name: http, protocol: HTTP}}]
"#,
            port = a.dns_port
        )),
        object(&format!(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: round-robin, namespace: shop}}
spec:
  hosts: [rr.example.internal]
  location: MESH_EXTERNAL
  resolution: DNS_ROUND_ROBIN
  ports: [{{number: 80, name: http, protocol: HTTP}}]
  endpoints: [{{address: localhost, ports: {{http: {port}}}}}]
"#,
            port = a.dns_port
        )),
        static_entry("static-api", "static.example.com", a.static_ep),
        static_entry("secure-api", "secure.example.com", a.tls_ep),
        simple_tls_rule("secure-api", "secure.example.com", &a.ca_file),
        // the same TLS server under another name: its certificate does not match
        static_entry("impostor", "impostor.example.com", a.tls_ep),
        simple_tls_rule("impostor", "impostor.example.com", &a.ca_file),
        // A TCP port, not resolvable by DNS: reached through its endpoints only.
        object(&format!(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {{name: ledger, namespace: shop}}
spec:
  hosts: [ledger.internal]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{{number: 7000, name: tcp-ledger, protocol: TCP}}]
  endpoints: [{{address: "{ip}", ports: {{tcp-ledger: {port}}}}}]
"#,
            ip = a.tcp_ep.ip(),
            port = a.tcp_ep.port()
        )),
    ]
}

fn translate(a: &Addrs, proxy_port: u16, policy: OutboundPolicy) -> ProxyResources {
    let settings = MeshSettings {
        outbound_policy: policy,
        ..Default::default()
    };
    let model = model_of(settings, resources(a));
    Translator::new(&model, options(proxy_port, SdsSource::Ads))
        .translate(&Proxy::sidecar("shop", "app-1"))
}

fn file(path: &std::path::Path) -> Option<DataSource> {
    Some(DataSource {
        specifier: Some(Specifier::Filename(path.to_string_lossy().into_owned())),
        ..Default::default()
    })
}

fn get(proxy: SocketAddr, host: &str) -> HttpResponse {
    HttpRequest::get("/orders")
        .host(host)
        .send(proxy)
        .unwrap_or_else(|e| panic!("{host}: {e}"))
}

#[test]
fn service_entries_dns_static_tls_origination_and_outbound_policy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let server = ca
        .issue_server_cert(
            &["secure.example.com".to_string()],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    std::fs::write(d.join("server.pem"), &server.cert_chain_pem).unwrap();
    std::fs::write(d.join("server-key.pem"), server.key_pem.expose()).unwrap();
    std::fs::write(d.join("root.pem"), &server.root_cert_pem).unwrap();

    // `localhost` resolves to 127.0.0.1 (the cluster asks for IPv4 only)
    let dns_app = Upstream::echo("dns-app", Ipv4Addr::LOCALHOST);
    let static_app = Upstream::echo("static-app", Ipv4Addr::new(127, 0, 0, 81));
    let tls_app = Upstream::echo("tls-app", Ipv4Addr::new(127, 0, 0, 82));
    let unknown_app = Upstream::echo("unknown-app", Ipv4Addr::new(127, 0, 0, 84));
    let ledger_app = Upstream::echo("ledger-app", Ipv4Addr::new(127, 0, 0, 85));
    // Outside the registry and named, not addressed: resolved by the sidecar.
    let unknown_named = Upstream::echo("unknown-named", Ipv4Addr::LOCALHOST);

    // the external TLS server: terminates TLS as secure.example.com in front of tls-app
    let tls_ip = Ipv4Addr::new(127, 0, 0, 83);
    let tls_ep = SocketAddr::from((tls_ip, free_ports_on(tls_ip, 1)[0]));
    let terminate = DownstreamTlsContext {
        common_tls_context: Some(CommonTlsContext {
            tls_certificates: vec![TlsCertificate {
                certificate_chain: file(&d.join("server.pem")),
                private_key: file(&d.join("server-key.pem")),
                ..Default::default()
            }],
            ..Default::default()
        }),
        ..Default::default()
    };
    let tls_server_yaml = bootstrap_yaml(
        "tls-server",
        vec![listener(
            "tls-server",
            tls_ep,
            vec![FilterChain {
                filters: vec![http_connection_manager(
                    "tls-server",
                    vec![vhost("all", &["*"], vec![route_to("tls-app")])],
                    vec![],
                    false,
                )],
                transport_socket: Some(downstream_transport_socket(&terminate)),
                ..Default::default()
            }],
            vec![],
        )],
        vec![static_cluster("tls-app", &[tls_app.addr()], None)],
    );
    validate_bootstrap(&tls_server_yaml).expect("tls server bootstrap validates");
    let tls_server = Envoy::start(&tls_server_yaml);

    let addrs = Addrs {
        dns_port: dns_app.port(),
        static_ep: static_app.addr(),
        tls_ep,
        tcp_ep: ledger_app.addr(),
        ca_file: d.join("root.pem").to_string_lossy().into_owned(),
    };
    let ports = free_ports_on(APP_IP, 2);
    let unknown_host = unknown_app.addr().to_string();

    // ALLOW_ANY (the default)
    let out = translate(&addrs, ports[0], OutboundPolicy::AllowAny);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let yaml = static_bootstrap("app-1", &out, &SecretFiles::new());
    validate_bootstrap(&yaml).expect("sidecar bootstrap validates");
    let sidecar = Envoy::start(&yaml);
    let proxy = SocketAddr::from((APP_IP, ports[0]));
    let r = get(proxy, &format!("localhost:{}", addrs.dns_port));
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("dns-app")),
        "{}",
        r.body_text()
    );
    let r = get(proxy, "rr.example.internal");
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("dns-app")),
        "DNS_ROUND_ROBIN: {}",
        r.body_text()
    );
    let r = get(proxy, "static.example.com");
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("static-app")),
        "{}",
        r.body_text()
    );
    let r = get(proxy, "secure.example.com");
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("tls-app")),
        "{}",
        r.body_text()
    );
    assert_eq!(r.json()["headers"]["host"], "secure.example.com");
    assert!(
        tls_server.stat(&format!("listener.{tls_ep}.ssl.handshake").replace(':', "_")) >= 1,
        "the sidecar originated TLS"
    );
    assert!(sidecar.stat("cluster.outbound|80||secure.example.com.ssl.handshake") >= 1);
    // the server's certificate is checked against the host (SNI) it was called by
    let before = tls_app.hits();
    assert_eq!(get(proxy, "impostor.example.com").status, 503);
    assert_eq!(tls_app.hits(), before);
    assert!(sidecar.stat("cluster.outbound|80||impostor.example.com.ssl.fail_verify_san") >= 1);
    let r = get(proxy, &unknown_host);
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("unknown-app")),
        "ALLOW_ANY passes through"
    );
    let r = get(proxy, &format!("localhost:{}", unknown_named.port()));
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("unknown-named")),
        "ALLOW_ANY resolves a name outside the registry: {}; envoy log:\n{}",
        r.body_text(),
        sidecar.log()
    );
    assert_tunnel(proxy, &unknown_host, "unknown-app", &sidecar);
    let named = format!("localhost:{}", unknown_named.port());
    assert_tunnel(proxy, &named, "unknown-named", &sidecar);
    // A registered TCP port: to the entry's endpoint, its name is not resolved by DNS.
    assert_tunnel(proxy, "ledger.internal:7000", "ledger-app", &sidecar);
    // A registered HTTP port, for clients that tunnel everything (gRPC does).
    assert_tunnel(proxy, "static.example.com:80", "static-app", &sidecar);
    drop(sidecar);

    // REGISTRY_ONLY: registered hosts still work, unknown ones get 502
    let out = translate(&addrs, ports[1], OutboundPolicy::RegistryOnly);
    let yaml = static_bootstrap("app-1", &out, &SecretFiles::new());
    validate_bootstrap(&yaml).expect("registry-only bootstrap validates");
    let sidecar = Envoy::start(&yaml);
    let proxy = SocketAddr::from((APP_IP, ports[1]));
    let before = unknown_app.hits();
    assert_eq!(get(proxy, &unknown_host).status, 502);
    let (status, _) = connect_and_get(proxy, &unknown_host);
    assert_eq!(status, 404, "no tunnel to a host outside the registry");
    assert_eq!(
        unknown_app.hits(),
        before,
        "nothing reached the unknown host"
    );
    let r = get(proxy, &format!("localhost:{}", addrs.dns_port));
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("dns-app")));
    assert_tunnel(proxy, "ledger.internal:7000", "ledger-app", &sidecar);
    assert_tunnel(proxy, "static.example.com:80", "static-app", &sidecar);
}

/// `CONNECT target` opens a tunnel, and a request inside it reaches `upstream`.
fn assert_tunnel(proxy: SocketAddr, target: &str, upstream: &str, sidecar: &Envoy) {
    let (status, tunnelled) = connect_and_get(proxy, target);
    let response = tunnelled.unwrap_or_default();
    assert_eq!(
        status,
        200,
        "CONNECT {target}: envoy log:\n{}",
        sidecar.log()
    );
    assert!(
        response.starts_with("HTTP/1.1 200")
            && response.contains(&format!("x-upstream: {upstream}\r\n")),
        "a request through the tunnel to {target} reached {upstream}: {response}"
    );
}

#[test]
fn golden_service_entry_bootstraps() {
    let addrs = Addrs {
        dns_port: 9100,
        static_ep: SocketAddr::from(([127, 0, 0, 81], 9101)),
        tls_ep: SocketAddr::from(([127, 0, 0, 83], 9102)),
        tcp_ep: SocketAddr::from(([127, 0, 0, 85], 9103)),
        ca_file: "certs/root.pem".into(),
    };
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("certs")).unwrap();
    let root = test_ca()
        .issue_server_cert(
            &["x".to_string()],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap()
        .root_cert_pem;
    std::fs::write(dir.path().join("certs/root.pem"), root).unwrap();
    for (name, policy) in [
        ("service-entry-allow-any", OutboundPolicy::AllowAny),
        ("service-entry-registry-only", OutboundPolicy::RegistryOnly),
    ] {
        let out = translate(&addrs, 15001, policy);
        let yaml = static_bootstrap("app-1", &out, &SecretFiles::new());
        check_golden(name, &yaml);
        trellis_e2e::validate_bootstrap_in(dir.path(), &yaml)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
