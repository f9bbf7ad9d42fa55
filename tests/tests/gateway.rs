//! Ingress gateway on real Envoy, configured by the translator: HTTP with
//! httpsRedirect, plain HTTP with namespace-restricted wildcard hosts, HTTPS SIMPLE
//! and MUTUAL with credentials over (file) SDS, VirtualServices bound by short name
//! and by `ns/name`. Plus the golden bootstrap of the scenario.
mod mesh_fixtures;

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::{Duration, SystemTime};

use mesh_fixtures::*;
use trellis_e2e::golden::check_golden;
use trellis_e2e::mesh::{Identity, relative_file_sds, test_ca, write_sds_file};
use trellis_e2e::sidecar_mesh::options;
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::{Envoy, HttpRequest, Upstream, free_ports_on, validate_bootstrap_in};
use trellis_model::{MeshSettings, Resource};
use trellis_translate::security::sds::{SdsSource, trust_bundle_secret, workload_cert_secret};
use trellis_translate::{
    ErrorCode, ExplicitPorts, ListenerShape, Proxy, ProxyResources, TranslateOptions, Translator,
};

const GW_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 70);

struct Ports {
    redirect: u16,
    plain: u16,
    https: u16,
}

/// A VirtualService `name` of namespace team, bound to `shop/shop-gw`, sending
/// `<name>.example.com` to the cart service.
fn team_route_to_cart(name: &str) -> Resource {
    object(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: team}}
spec:
  hosts: [{name}.example.com]
  gateways: [shop/shop-gw]
  http:
  - route: [{{destination: {{host: cart.shop.svc.cluster.local}}}}]
"#
    ))
}

fn resources(ports: &Ports, cart: SocketAddr, web: SocketAddr) -> Vec<Resource> {
    let gateway = format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Gateway
metadata: {{name: shop-gw, namespace: shop}}
spec:
  selector: {{istio: ingressgateway}}
  servers:
  - port: {{number: {redirect}, name: http-redirect, protocol: HTTP}}
    hosts: [shop.example.com]
    tls: {{httpsRedirect: true}}
  - port: {{number: {plain}, name: http, protocol: HTTP}}
    hosts: ["shop/*.example.com", "*/api.example.com"]
    # without effect, as in Istio: the server is served as without it
    defaultEndpoint: 127.0.0.1:9999
  - port: {{number: {https}, name: https-shop, protocol: HTTPS}}
    hosts: [shop.example.com]
    tls: {{mode: SIMPLE, credentialName: shop-cert, cipherSuites: [{ciphers}]}}
  - port: {{number: {https}, name: https-admin, protocol: HTTPS}}
    hosts: [admin.example.com]
    tls: {{mode: MUTUAL, credentialName: admin-cert, subjectAltNames: [spiffe://cluster.local/ns/shop/sa/admin-client]}}
"#,
        redirect = ports.redirect,
        plain = ports.plain,
        https = ports.https,
        // Every suite validation admits: Envoy must take them all.
        ciphers = trellis_api::validate::CIPHER_SUITES.join(", ")
    );
    vec![
        service("shop", "cart", "cart", &[("http", 8080, cart.port())]),
        service("shop", "web", "web", &[("http", 80, web.port())]),
        workload(
            "shop",
            "cart-1",
            &cart.ip().to_string(),
            &[("app", "cart")],
            false,
        ),
        workload(
            "shop",
            "web-1",
            &web.ip().to_string(),
            &[("app", "web")],
            false,
        ),
        workload(
            "shop",
            "ingress-1",
            &GW_IP.to_string(),
            &[("istio", "ingressgateway")],
            true,
        ),
        object(&gateway),
        // bound by short name from the Gateway's own namespace
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: shop, namespace: shop}
spec:
  hosts: [shop.example.com, admin.example.com]
  gateways: [shop-gw]
  http:
  - match: [{uri: {prefix: /cart}}]
    route: [{destination: {host: cart}}]
  - match: [{uri: {prefix: /moved-keep-port}}]
    redirect: {authority: www.example.com, derivePort: FROM_REQUEST_PORT}
  - match: [{uri: {prefix: /moved-default-port}}]
    redirect: {authority: www.example.com, derivePort: FROM_PROTOCOL_DEFAULT}
  - route: [{destination: {host: web}}]
"#,
        ),
        // bound by ns/name from another namespace, host served by `*/api.example.com`
        team_route_to_cart("api"),
        // `shop/*.example.com` admits only VirtualServices of namespace shop
        team_route_to_cart("sneaky"),
        // guards the edge: every server of the gateway workload
        object(
            r#"
apiVersion: security.istio.io/v1
kind: AuthorizationPolicy
metadata: {name: ingress-no-secrets, namespace: shop}
spec:
  selector: {matchLabels: {istio: ingressgateway}}
  action: DENY
  rules: [{to: [{operation: {paths: ["/cart/secret*"]}}]}]
"#,
        ),
    ]
}

fn translate(ports: &Ports, cart: SocketAddr, web: SocketAddr, sds: SdsSource) -> ProxyResources {
    let shape = ListenerShape::Explicit(ExplicitPorts {
        outbound_http_port: 15001,
        privileged_port_offset: 8000,
        ..Default::default()
    });
    translate_in(shape, ports, cart, web, sds)
}

fn translate_in(
    shape: ListenerShape,
    ports: &Ports,
    cart: SocketAddr,
    web: SocketAddr,
    sds: SdsSource,
) -> ProxyResources {
    let model = model_of(MeshSettings::default(), resources(ports, cart, web));
    let options = TranslateOptions { shape, sds };
    Translator::new(&model, options).translate(&Proxy::gateway("shop", "ingress-1"))
}

/// Gateway credentials as file SDS: `kubernetes://shop/<name>` (key pair) and
/// `kubernetes://shop/<name>-cacert` (client CA), files under `dir`, named as `named_as`.
fn write_credentials(
    ca: &trellis_ca::CertificateAuthority,
    dir: &Path,
    named_as: &Path,
) -> SecretFiles {
    let now = SystemTime::now();
    let mut files = SecretFiles::new();
    for (cred, host) in [
        ("shop-cert", "shop.example.com"),
        ("admin-cert", "admin.example.com"),
    ] {
        let issued = ca
            .issue_server_cert(&[host.to_string()], Duration::from_secs(3600), now)
            .expect("server cert");
        let file = |n: &str| dir.join(format!("{cred}-{n}"));
        let named = |n: &str| named_as.join(format!("{cred}-{n}"));
        std::fs::write(file("cert.pem"), &issued.cert_chain_pem).unwrap();
        std::fs::write(file("key.pem"), issued.key_pem.expose()).unwrap();
        std::fs::write(file("root.pem"), &issued.root_cert_pem).unwrap();
        let name = format!("kubernetes://shop/{cred}");
        let mut secret = workload_cert_secret(
            &named("cert.pem").to_string_lossy(),
            &named("key.pem").to_string_lossy(),
            None,
        );
        secret.name = name.clone();
        write_sds_file(&file("sds.yaml").to_string_lossy(), &secret);
        files.insert(name.clone(), named("sds.yaml"));
        let mut cacert = trust_bundle_secret(&named("root.pem").to_string_lossy(), None);
        cacert.name = format!("{name}-cacert");
        write_sds_file(&file("sds-cacert.yaml").to_string_lossy(), &cacert);
        files.insert(format!("{name}-cacert"), named("sds-cacert.yaml"));
    }
    files
}

#[test]
fn ingress_gateway_http_https_redirect_and_bindings() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let identity = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    let files = write_credentials(&ca, d, d);
    let client = ca
        .issue_for_service_account(
            "shop",
            "admin-client",
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    std::fs::write(d.join("client.pem"), &client.cert_chain_pem).unwrap();
    std::fs::write(d.join("client-key.pem"), client.key_pem.expose()).unwrap();
    std::fs::write(d.join("root.pem"), &client.root_cert_pem).unwrap();
    // Signed by the same CA, but not a name the admin server admits.
    let intruder = ca
        .issue_for_service_account(
            "shop",
            "intruder",
            Duration::from_secs(3600),
            SystemTime::now(),
        )
        .unwrap();
    std::fs::write(d.join("intruder.pem"), &intruder.cert_chain_pem).unwrap();
    std::fs::write(d.join("intruder-key.pem"), intruder.key_pem.expose()).unwrap();

    let cart = Upstream::echo("cart", Ipv4Addr::new(127, 0, 0, 71));
    let web = Upstream::echo("web", Ipv4Addr::new(127, 0, 0, 72));
    let p = free_ports_on(GW_IP, 3);
    let ports = Ports {
        redirect: p[0],
        plain: p[1],
        https: p[2],
    };
    let out = translate(&ports, cart.addr(), web.addr(), identity.sds());
    // the problems in the model: the sneaky VirtualService's host is not
    // served, and the plain server's defaultEndpoint has no effect
    let codes: Vec<(ErrorCode, &str, &str)> = out
        .errors
        .iter()
        .map(|e| (e.code, e.name.as_str(), e.path.as_str()))
        .collect();
    assert_eq!(
        codes,
        [
            (
                ErrorCode::InvalidValue,
                "shop-gw",
                "spec.servers[1].defaultEndpoint"
            ),
            (ErrorCode::HostNotServedByGateway, "sneaky", "spec.hosts[0]")
        ]
    );
    let yaml = static_bootstrap("ingress", &out, &files);
    validate_bootstrap_in(d, &yaml).expect("gateway bootstrap validates");
    let envoy = Envoy::start(&yaml);

    let at = |port: u16| SocketAddr::from((GW_IP, port));
    let get = |port: u16, host: &str, path: &str| {
        HttpRequest::get(path)
            .host(host)
            .send(at(port))
            .unwrap_or_else(|e| panic!("{host}{path}: {e}"))
    };
    // httpsRedirect
    let r = get(ports.redirect, "shop.example.com", "/cart");
    assert_eq!(r.status, 301, "{}", r.body_text());
    let location = r.header("location").unwrap_or_default().to_string();
    assert!(
        location.starts_with("https://shop.example.com"),
        "{location}"
    );
    // plain HTTP: VirtualService rules, hosts through the wildcard server host
    let r = get(ports.plain, "shop.example.com", "/cart/items");
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("cart")));
    // the gateway workload's AuthorizationPolicy: denied at the edge
    let hits = cart.hits();
    let r = get(ports.plain, "shop.example.com", "/cart/secret/1");
    assert_eq!(r.status, 403, "{}", r.body_text());
    assert_eq!(cart.hits(), hits, "the denied request reached cart");
    let r = get(
        ports.plain,
        &format!("shop.example.com:{}", ports.plain),
        "/",
    );
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("web")),
        "port in Host is ignored"
    );
    // redirect.derivePort: FROM_REQUEST_PORT names the server's port (Envoy
    // cannot read the request's; the route serves only that port),
    // FROM_PROTOCOL_DEFAULT none
    let location = |r: &trellis_e2e::HttpResponse| {
        assert_eq!(r.status, 301, "{}", r.body_text());
        r.header("location").unwrap_or_default().to_string()
    };
    assert_eq!(
        location(&get(ports.plain, "shop.example.com", "/moved-keep-port")),
        format!("http://www.example.com:{}/moved-keep-port", ports.plain)
    );
    assert_eq!(
        location(&get(ports.plain, "shop.example.com", "/moved-default-port")),
        "http://www.example.com/moved-default-port"
    );
    // bound by ns/name from namespace team
    let r = get(ports.plain, "api.example.com", "/");
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("cart")));
    // not served: the server host admits only namespace shop
    assert_eq!(get(ports.plain, "sneaky.example.com", "/").status, 404);
    assert_eq!(get(ports.plain, "unknown.example.org", "/").status, 404);

    // HTTPS SIMPLE: the gateway presents shop.example.com's certificate
    let https = at(ports.https);
    let root = d.join("root.pem");
    let r = curl_https("shop.example.com", https, "/cart", &root, None);
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"cart\""), "{}", r.body);
    // derivePort on an HTTPS server: its port, with the request's scheme
    assert_eq!(
        curl_https_location("shop.example.com", https, "/moved-keep-port", &root),
        format!("https://www.example.com:{}/moved-keep-port", ports.https)
    );
    assert_eq!(
        curl_https_location("shop.example.com", https, "/moved-default-port", &root),
        "https://www.example.com/moved-default-port"
    );
    // HTTPS MUTUAL: no client certificate, no response; with one, routed
    let r = curl_https("admin.example.com", https, "/", &root, None);
    assert_eq!(
        r.status, 0,
        "handshake must fail without a client cert: {}",
        r.body
    );
    let (cert, key) = (d.join("client.pem"), d.join("client-key.pem"));
    let r = curl_https("admin.example.com", https, "/", &root, Some((&cert, &key)));
    assert_eq!(r.status, 200, "{}", r.body);
    assert!(r.body.contains("\"web\""), "{}", r.body);
    assert!(
        envoy.wait_stat(
            &format!("listener.{GW_IP}_{}.ssl.fail_verify_no_cert", ports.https),
            1
        ) >= 1
    );
    // subjectAltNames: a certificate from the same CA with another name is refused
    let (cert, key) = (d.join("intruder.pem"), d.join("intruder-key.pem"));
    let r = curl_https("admin.example.com", https, "/", &root, Some((&cert, &key)));
    assert_eq!(r.status, 0, "a client outside subjectAltNames: {}", r.body);
    assert!(
        envoy.wait_stat(
            &format!("listener.{GW_IP}_{}.ssl.fail_verify_san", ports.https),
            1
        ) >= 1
    );
}

/// The Location of the 301 redirect `https://host{path}` (at `addr`) answers.
fn curl_https_location(host: &str, addr: SocketAddr, path: &str, ca: &Path) -> String {
    let out = std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "--max-time", "10"])
        .args(["-w", "%{http_code} %{redirect_url}"])
        .arg("--resolve")
        .arg(format!("{host}:{}:{}", addr.port(), addr.ip()))
        .arg("--cacert")
        .arg(ca)
        .arg(format!("https://{host}:{}{path}", addr.port()))
        .output()
        .unwrap_or_else(|e| panic!("curl is needed for HTTPS tests (run make setup): {e}"));
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (status, location) = text.split_once(' ').unwrap_or((&text, ""));
    assert_eq!(status, "301", "https://{host}{path}: {text}");
    location.to_string()
}

/// `out`'s bootstrap, with the gateway credentials under `credentials/`, matches the
/// golden file `golden`, and validates with Envoy once the gateway's identity is
/// written under `sds_dir` (as `relative_file_sds(sds_dir)` names it).
fn check_golden_gateway(golden: &str, out: &ProxyResources, sds_dir: &str) {
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    std::fs::create_dir_all(dir.path().join("credentials")).unwrap();
    let files = write_credentials(
        &ca,
        &dir.path().join("credentials"),
        Path::new("credentials"),
    );
    let yaml = static_bootstrap("ingress", out, &files);
    check_golden(golden, &yaml);
    Identity::issue_with_relative_sds(&ca, dir.path(), sds_dir, "shop", "ingress");
    validate_bootstrap_in(dir.path(), &yaml).expect("golden gateway bootstrap validates");
}

#[test]
fn golden_gateway_bootstrap() {
    let ports = Ports {
        redirect: 18080,
        plain: 18081,
        https: 18443,
    };
    let cart = SocketAddr::from(([127, 0, 0, 71], 9001));
    let web = SocketAddr::from(([127, 0, 0, 72], 9002));
    let out = translate(&ports, cart, web, relative_file_sds("identities/ingress"));
    check_golden_gateway("gateway-ingress", &out, "identities/ingress");
}

/// In Kubernetes the gateway listens on the declared ports on every address.
#[test]
fn golden_gateway_interception_bootstrap() {
    let ports = Ports {
        redirect: 80,
        plain: 8080,
        https: 443,
    };
    let cart = SocketAddr::from(([10, 244, 0, 11], 8080));
    let web = SocketAddr::from(([10, 244, 0, 10], 8000));
    let sds = relative_file_sds("etc/certs");
    let out = translate_in(ListenerShape::Interception, &ports, cart, web, sds);
    let names: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
    // besides the servers' ports, readiness (15021) and metrics (15090) for the kubelet
    assert_eq!(
        names,
        [
            "0.0.0.0_15021",
            "0.0.0.0_15090",
            "0.0.0.0_443",
            "0.0.0.0_80",
            "0.0.0.0_8080"
        ]
    );
    check_golden_gateway("gateway-ingress-interception", &out, "etc/certs");
}

/// Starts gateway `shop/ingress-1` for `resources` ([`start_gateway`]) with an
/// identity that lives as long as the returned guard.
fn start_ingress(resources: Vec<Resource>) -> (Envoy, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let gw_id = Identity::issue(&test_ca(), &dir.path().join("ingress"), "shop", "ingress");
    (start_gateway(GW_IP, dir.path(), &gw_id, resources), dir)
}

/// Ingress to a service with a sidecar: the gateway originates mesh mTLS (auto mTLS,
/// the server's SPIFFE id checked) and the service's sidecar terminates it, telling
/// the app its caller in `x-forwarded-client-cert`.
#[test]
fn gateway_reaches_a_sidecar_service_over_mesh_mtls() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let gw_id = Identity::issue(&ca, &d.join("ingress"), "shop", "ingress");
    let web_id = Identity::issue(&ca, &d.join("web"), "shop", "web");
    let app = Upstream::echo("web-app", Ipv4Addr::LOCALHOST);
    let web_ip = Ipv4Addr::new(127, 0, 0, 74);
    let target = free_ports_on(web_ip, 1)[0];
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let mut web = trellis_model::Workload::new("shop", "web-1", web_ip.to_string());
    web.labels.insert("app".into(), "web".into());
    web.service_account = "web".into();
    web.app_ports.insert(target, app.port());
    let resources = vec![
        service("shop", "web", "web", &[("http", 80, target)]),
        Resource::Workload(Box::new(web)),
        ingress_workload(GW_IP),
        one_server_gateway(&format!(
            "{{port: {{number: {gw_port}, name: http, protocol: HTTP}}, hosts: [\"*\"]}}"
        )),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [shop-gw]
  http:
  - route: [{destination: {host: web}}]
"#,
        ),
    ];
    let model = model_of(MeshSettings::default(), resources);
    let explicit = |sds| options(free_ports_on(web_ip, 1)[0], sds);
    let gw_out = Translator::new(&model, explicit(gw_id.sds()))
        .translate(&Proxy::gateway("shop", "ingress-1"));
    let web_out =
        Translator::new(&model, explicit(web_id.sds())).translate(&Proxy::sidecar("shop", "web-1"));
    assert!(gw_out.errors.is_empty() && web_out.errors.is_empty());
    let gw_yaml = static_bootstrap("ingress", &gw_out, &SecretFiles::new());
    let web_yaml = static_bootstrap("web-1", &web_out, &SecretFiles::new());
    validate_bootstrap_in(d, &gw_yaml).expect("gateway validates");
    validate_bootstrap_in(d, &web_yaml).expect("web sidecar validates");
    let web_thread = std::thread::spawn(move || Envoy::start(&web_yaml));
    let gateway = Envoy::start(&gw_yaml);
    let sidecar = web_thread.join().expect("web sidecar starts");

    // A client's own x-forwarded-client-cert stops at the gateway (the edge);
    // the app learns its caller, the gateway, from its sidecar, as in Istio.
    let r = HttpRequest::get("/")
        .host("shop.example.com")
        .header(
            "x-forwarded-client-cert",
            "By=spiffe://forged;URI=spiffe://forged",
        )
        .send(SocketAddr::from((GW_IP, gw_port)))
        .unwrap();
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("web-app")),
        "{}",
        r.body_text()
    );
    let xfcc = r.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(
        xfcc.contains("URI=spiffe://cluster.local/ns/shop/sa/ingress") && !xfcc.contains("forged"),
        "{xfcc}"
    );
    assert!(gateway.stat("cluster.outbound|80||web.shop.svc.cluster.local.ssl.handshake") >= 1);
    assert!(sidecar.stat(&format!("listener.{web_ip}_{target}.ssl.handshake")) >= 1);
}

/// A PASSTHROUGH server on real Envoy: the gateway routes TLS it does not
/// terminate by SNI, so the client checks the backend's own certificate; a
/// name no `tls` route takes gets no connection to anything.
#[test]
fn passthrough_server_routes_tls_by_sni_on_real_envoy() {
    let vault_ip = Ipv4Addr::new(127, 0, 0, 76);
    let vault = trellis_e2e::HttpsFileServer::start(vault_ip, &[("ping", "pong")]);
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let resources = vec![
        service(
            "shop",
            "vault",
            "vault",
            &[("https", 443, vault.addr().port())],
        ),
        workload(
            "shop",
            "vault-1",
            &vault_ip.to_string(),
            &[("app", "vault")],
            false,
        ),
        ingress_workload(GW_IP),
        one_server_gateway(&format!(
            "{{port: {{number: {gw_port}, name: tls, protocol: TLS}}, hosts: [\"*.example.com\"], tls: {{mode: PASSTHROUGH}}}}"
        )),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: vault, namespace: shop}
spec:
  hosts: [vault.example.com]
  gateways: [shop-gw]
  tls:
  - match: [{sniHosts: [vault.example.com]}]
    route: [{destination: {host: vault}}]
"#,
        ),
    ];
    let (gateway, _identity) = start_ingress(resources);
    let via = SocketAddr::from((GW_IP, gw_port));

    let answer = vault
        .fetch_trusting_via_sni(via, Some("vault.example.com"), "ping")
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    assert!(answer.contains("pong"), "{answer}");
    let refused = vault.fetch_trusting_via_sni(via, Some("other.example.com"), "ping");
    assert!(
        refused.is_err(),
        "a name no route takes reached vault: {refused:?}"
    );
}

/// A TCP server on real Envoy: connections to the gateway's port follow the
/// `tcp` route bound to it to the service's endpoint, bytes as they came.
#[test]
fn tcp_server_carries_connections_by_its_tcp_route_on_real_envoy() {
    let ledger = Upstream::echo("ledger-app", Ipv4Addr::new(127, 0, 0, 77));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let mut resources = behind_gateway("ledger", &ledger, ("tcp", 7000), "[\"*\"]", "tcp");
    resources.extend([
        ingress_workload(GW_IP),
        one_server_gateway(&format!(
            "{{port: {{number: {gw_port}, name: tcp, protocol: TCP}}, hosts: [\"*\"]}}"
        )),
    ]);
    let (gateway, _identity) = start_ingress(resources);
    let r = HttpRequest::get("/")
        .host("anything")
        .send(SocketAddr::from((GW_IP, gw_port)))
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    assert_eq!(
        (r.status, r.header("x-upstream")),
        (200, Some("ledger-app"))
    );
    assert_eq!(ledger.hits(), 1);
}

/// A Gateway without a selector applies to every gateway workload, as in
/// Istio: the ingress workload serves it on real Envoy.
#[test]
fn a_gateway_without_a_selector_is_served_by_the_gateway_workload_on_real_envoy() {
    let web = Upstream::echo("web-app", Ipv4Addr::new(127, 0, 0, 78));
    let gw_port = free_ports_on(GW_IP, 1)[0];
    let resources = vec![
        service("shop", "web", "web", &[("http", 80, web.port())]),
        workload("shop", "web-1", &web.ip(), &[("app", "web")], false),
        ingress_workload(GW_IP),
        object(&format!(
            "apiVersion: networking.istio.io/v1\nkind: Gateway\nmetadata: {{name: any-gw, namespace: edge}}\n\
             spec: {{servers: [{{port: {{number: {gw_port}, name: http, protocol: HTTP}}, hosts: [\"*/*\"]}}]}}\n"
        )),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: web, namespace: shop}
spec:
  hosts: [shop.example.com]
  gateways: [edge/any-gw]
  http:
  - route: [{destination: {host: web}}]
"#,
        ),
    ];
    let (gateway, _identity) = start_ingress(resources);
    let r = HttpRequest::get("/")
        .host("shop.example.com")
        .send(SocketAddr::from((GW_IP, gw_port)))
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("web-app")));
    assert_eq!(web.hits(), 1);
}

/// A server with `bind` listens on that address only, on real Envoy.
#[test]
fn a_bound_server_listens_on_its_address_only_on_real_envoy() {
    let app = Upstream::echo("web-app", Ipv4Addr::new(127, 0, 0, 80));
    let bound_ip = Ipv4Addr::new(127, 0, 0, 81);
    let gw_port = free_ports_on(bound_ip, 1)[0];
    let mut resources = behind_gateway("web", &app, ("http", 80), "[\"*\"]", "http");
    resources.extend([
            ingress_workload(GW_IP),
            one_server_gateway(&format!(
                "{{port: {{number: {gw_port}, name: http, protocol: HTTP}}, bind: {bound_ip}, hosts: [\"*\"]}}"
            )),
    ]);
    let (gateway, _identity) = start_ingress(resources);
    let r = HttpRequest::get("/")
        .host("shop.example.com")
        .send(SocketAddr::from((bound_ip, gw_port)))
        .unwrap_or_else(|e| panic!("{e}\n{}", gateway.log()));
    assert_eq!((r.status, r.header("x-upstream")), (200, Some("web-app")));
    let elsewhere = HttpRequest::get("/")
        .host("shop.example.com")
        .send(SocketAddr::from((GW_IP, gw_port)));
    assert!(
        elsewhere.is_err(),
        "the workload's address answered: {elsewhere:?}"
    );
}
