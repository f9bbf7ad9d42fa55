//! Gateway servers that terminate TLS beyond SIMPLE and MUTUAL, on real
//! Envoy configured by the translator: an ISTIO_MUTUAL HTTPS server (the
//! gateway presents its own mesh identity and admits only clients with a
//! certificate from the mesh root), and a TLS server that terminates SIMPLE
//! TLS and carries the decrypted bytes by its `tcp` route to a plaintext
//! backend. Clients are `openssl s_client`; everything on 127.0.0.0/8.
mod mesh_fixtures;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use mesh_fixtures::*;
use trellis_e2e::mesh::{Identity, test_ca};
use trellis_e2e::sidecar_mesh::options;
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::{
    Envoy, TlsClient, Upstream, free_ports_on, self_signed, tls_exchange, validate_bootstrap_in,
};
use trellis_model::{MeshSettings, Resource};
use trellis_translate::{Proxy, Translator};

const GW_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 170);

/// The gateway workload `shop/ingress-1` at [`GW_IP`].
fn ingress_workload() -> Resource {
    workload(
        "shop",
        "ingress-1",
        &GW_IP.to_string(),
        &[("istio", "ingressgateway")],
        true,
    )
}

/// Gateway `shop/shop-gw` for the ingress workload, with one server (flow YAML).
fn one_server_gateway(server: &str) -> Resource {
    object(&format!(
        "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: shop-gw, namespace: shop}}\n\
         spec: {{selector: {{istio: ingressgateway}}, servers: [{server}]}}\n"
    ))
}

/// Translates gateway `shop/ingress-1` with identity `gw_id` for `resources`
/// (which must give no errors), validates its bootstrap in `dir` and starts
/// it on real Envoy.
fn start_ingress(dir: &Path, gw_id: &Identity, resources: Vec<Resource>) -> Envoy {
    let model = model_of(MeshSettings::default(), resources);
    let out = Translator::new(&model, options(free_ports_on(GW_IP, 1)[0], gw_id.sds()))
        .translate(&Proxy::gateway("shop", "ingress-1"));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let yaml = static_bootstrap("ingress", &out, &SecretFiles::new());
    validate_bootstrap_in(dir, &yaml).expect("gateway validates");
    Envoy::start(&yaml)
}

/// A client of `api.example.com` trusting the mesh root `ca` (the gateway's
/// mesh certificate names no host), presenting `client`.
fn as_client<'a>(ca: &'a Path, client: Option<(&'a Path, &'a Path)>) -> TlsClient<'a> {
    TlsClient {
        sni: "api.example.com",
        ca,
        verify_hostname: false,
        client,
    }
}

/// `GET /` for `host`, closing after the answer.
fn get(host: &str) -> Vec<u8> {
    format!("GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n").into_bytes()
}

/// An ISTIO_MUTUAL HTTPS server: the gateway presents its workload
/// certificate (verified against the mesh root), a client presenting a
/// mesh-issued certificate is routed, one without a certificate or with a
/// certificate from elsewhere is refused in the handshake and reaches nothing.
#[test]
fn istio_mutual_https_server_admits_only_mesh_clients_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    let client = ca
        .issue_for_service_account(
            "shop",
            "client",
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    std::fs::write(d.join("client.pem"), &client.cert_chain_pem).unwrap();
    std::fs::write(d.join("client-key.pem"), client.key_pem.expose()).unwrap();
    // A certificate no mesh root signed.
    self_signed(d, "rogue-key.pem", "rogue.pem", "/CN=rogue", &[]);

    let api = Upstream::echo("api-app", Ipv4Addr::new(127, 0, 0, 171));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let resources = vec![
        service("shop", "api", "api", &[("http", 80, api.port())]),
        workload("shop", "api-1", &api.ip(), &[("app", "api")], false),
        ingress_workload(),
        one_server_gateway(&format!(
            "{{port: {{number: {gw_port}, name: https-mesh, protocol: HTTPS}}, hosts: [api.example.com], tls: {{mode: ISTIO_MUTUAL}}}}"
        )),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  gateways: [shop-gw]
  http:
  - route: [{destination: {host: api}}]
"#,
        ),
    ];
    let envoy = start_ingress(d, &gw_id, resources);
    let at = SocketAddr::from((GW_IP, gw_port));
    let root = gw_id.dir.join("root-cert.pem");
    let (cert, key) = (d.join("client.pem"), d.join("client-key.pem"));
    let answer = tls_exchange(
        at,
        &as_client(&root, Some((&cert, &key))),
        &get("api.example.com"),
    )
    .unwrap_or_else(|e| panic!("mesh client refused: {e}\n{}", envoy.log()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-upstream: api-app"), "{answer}");
    assert_eq!(api.hits(), 1);

    let refused = |r: Result<String, String>| match r {
        Ok(text) | Err(text) => !text.contains("x-upstream"),
    };
    let stat = |name: &str| format!("listener.{GW_IP}_{gw_port}.ssl.{name}");
    let r = tls_exchange(at, &as_client(&root, None), &get("api.example.com"));
    assert!(refused(r.clone()), "no client certificate, answered: {r:?}");
    assert!(envoy.wait_stat(&stat("fail_verify_no_cert"), 1) >= 1);

    let (cert, key) = (d.join("rogue.pem"), d.join("rogue-key.pem"));
    let r = tls_exchange(
        at,
        &as_client(&root, Some((&cert, &key))),
        &get("api.example.com"),
    );
    assert!(
        refused(r.clone()),
        "a certificate from elsewhere, answered: {r:?}"
    );
    assert!(envoy.wait_stat(&stat("fail_verify_error"), 1) >= 1);
    assert_eq!(api.hits(), 1, "a refused client reached the backend");
}

/// A TLS server terminating SIMPLE TLS: the client checks the server's
/// certificate for the SNI name, and the plaintext backend behind the
/// gateway's `tcp` route gets the decrypted bytes (an HTTP request it parses
/// and answers). A name the server does not serve gets no connection.
#[test]
fn tls_server_terminates_simple_tls_and_carries_tcp_on_real_envoy() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    let issued = ca
        .issue_server_cert(
            &["ledger.example.com".to_string()],
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    std::fs::write(d.join("ledger.pem"), &issued.cert_chain_pem).unwrap();
    std::fs::write(d.join("ledger-key.pem"), issued.key_pem.expose()).unwrap();
    std::fs::write(d.join("root.pem"), &issued.root_cert_pem).unwrap();

    let ledger = Upstream::echo("ledger-app", Ipv4Addr::new(127, 0, 0, 172));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let resources = vec![
        service("shop", "ledger", "ledger", &[("tcp", 7000, ledger.port())]),
        workload(
            "shop",
            "ledger-1",
            &ledger.ip(),
            &[("app", "ledger")],
            false,
        ),
        ingress_workload(),
        one_server_gateway(&format!(
            "{{port: {{number: {gw_port}, name: tls-ledger, protocol: TLS}}, hosts: [ledger.example.com], \
             tls: {{mode: SIMPLE, serverCertificate: {}, privateKey: {}}}}}",
            d.join("ledger.pem").display(),
            d.join("ledger-key.pem").display()
        )),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [ledger.example.com]
  gateways: [shop-gw]
  tcp:
  - route: [{destination: {host: ledger}}]
"#,
        ),
    ];
    let envoy = start_ingress(d, &gw_id, resources);
    let at = SocketAddr::from((GW_IP, gw_port));
    let root = d.join("root.pem");
    let client = |sni| TlsClient {
        sni,
        ca: &root,
        verify_hostname: true,
        client: None,
    };
    let answer = tls_exchange(
        at,
        &client("ledger.example.com"),
        &get("ledger.example.com"),
    )
    .unwrap_or_else(|e| panic!("{e}\n{}", envoy.log()));
    assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
    assert!(answer.contains("x-upstream: ledger-app"), "{answer}");
    assert!(
        answer.contains("\"host\":\"ledger.example.com\""),
        "the backend read the request in the clear: {answer}"
    );
    assert_eq!(ledger.hits(), 1);
    assert!(envoy.stat(&format!("listener.{GW_IP}_{gw_port}.ssl.handshake")) >= 1);

    let other = tls_exchange(at, &client("other.example.com"), &get("other.example.com"));
    assert!(other.is_err(), "a name no server serves: {other:?}");
    assert_eq!(ledger.hits(), 1);
}
