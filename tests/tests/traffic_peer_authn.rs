//! PeerAuthentication objects in the model, resolved by the sidecar translator per
//! inbound port (port > workload > namespace > mesh), on real Envoy.
//!
//! Mesh default PERMISSIVE; namespace `shop` STRICT; workload `pay` PERMISSIVE;
//! workload `cart` inherits STRICT on its `http` port and has DISABLE on its `admin`
//! port. The test talks plaintext straight to the server sidecars, and mTLS through
//! the client sidecar (auto mTLS).
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use k8s_openapi::api::core::v1::Service;
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, destination_rule, golden_sidecar_bootstrap, model, service,
    start_client, start_sidecar, workload,
};
use trellis_e2e::{HttpRequest, Upstream, connect_and_get, free_ports_on};
use trellis_model::Resource;

/// Ports of the server workloads: cart (http, admin) and pay (http); apps behind them.
struct Plan {
    cart_ip: Ipv4Addr,
    cart_http: u16,
    cart_admin: u16,
    pay_ip: Ipv4Addr,
    pay_http: u16,
    app_port: u16,
}

fn peer_authentication(yaml: &str) -> Resource {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
    Resource::PeerAuthentication(Box::new(
        serde_json::from_value(value).expect("PeerAuthentication"),
    ))
}

fn scenario(p: &Plan) -> Vec<Resource> {
    let admin: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "cart-admin", "namespace": "shop"},
        "spec": {
            "selector": {"app": "cart"},
            "ports": [{"name": "http-admin", "port": 81, "targetPort": "admin"}],
            "clusterIP": "10.9.9.9"
        }
    }))
    .expect("service");
    let mut cart = workload(
        "cart-v1",
        "cart",
        SocketAddr::from((p.cart_ip, p.cart_http)),
        &[],
        true,
    );
    cart.ports.insert("admin".into(), p.cart_admin);
    cart.app_ports = BTreeMap::from([(p.cart_http, p.app_port), (p.cart_admin, p.app_port)]);
    let mut pay = workload(
        "pay-1",
        "pay",
        SocketAddr::from((p.pay_ip, p.pay_http)),
        &[],
        true,
    );
    pay.app_ports = BTreeMap::from([(p.pay_http, p.app_port)]);
    vec![
        service("cart", "cart"),
        Resource::Service(Box::new(admin)),
        service("pay", "pay"),
        Resource::Workload(Box::new(cart)),
        Resource::Workload(Box::new(pay)),
        peer_authentication(
            "metadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n",
        ),
        peer_authentication(&format!(
            "metadata: {{name: cart-ports, namespace: shop}}\nspec: {{selector: {{matchLabels: {{app: cart}}}}, mtls: {{mode: UNSET}}, portLevelMtls: {{{}: {{mode: DISABLE}}}}}}\n",
            p.cart_admin
        )),
        peer_authentication(
            "metadata: {name: pay, namespace: shop}\nspec: {selector: {matchLabels: {app: pay}}, mtls: {mode: PERMISSIVE}}\n",
        ),
    ]
}

fn golden_plan() -> Plan {
    Plan {
        cart_ip: Ipv4Addr::new(127, 0, 0, 131),
        cart_http: 9000,
        cart_admin: 9001,
        pay_ip: Ipv4Addr::new(127, 0, 0, 132),
        pay_http: 9000,
        app_port: 9100,
    }
}

#[test]
fn golden_traffic_peer_authentication() {
    let cart = golden_sidecar_bootstrap(scenario(&golden_plan()), "cart-v1", "cart");
    check_golden_bootstrap("traffic-peer-authn-cart", &cart, &["cart"]);
    let pay = golden_sidecar_bootstrap(scenario(&golden_plan()), "pay-1", "pay");
    check_golden_bootstrap("traffic-peer-authn-pay", &pay, &["pay"]);
}

#[test]
fn peer_authentication_levels_on_real_envoy() {
    let ca = test_ca();
    let app = Upstream::echo("app", Ipv4Addr::LOCALHOST);
    let cart_ip = Ipv4Addr::new(127, 0, 0, 131);
    let pay_ip = Ipv4Addr::new(127, 0, 0, 132);
    let cart_ports = free_ports_on(cart_ip, 3);
    let pay_ports = free_ports_on(pay_ip, 2);
    let plan = Plan {
        cart_ip,
        cart_http: cart_ports[0],
        cart_admin: cart_ports[1],
        pay_ip,
        pay_http: pay_ports[0],
        app_port: app.port(),
    };
    let client_ip = Ipv4Addr::new(127, 0, 0, 130);
    let m = model(scenario(&plan), client_ip);
    let _cart = start_sidecar(&ca, &m, "cart-v1", "cart", cart_ports[2]);
    let _pay = start_sidecar(&ca, &m, "pay-1", "pay", pay_ports[1]);
    let plain = |addr: SocketAddr| HttpRequest::get("/").send(addr);

    // namespace STRICT: plaintext to cart's http port is refused (no HTTP answer)
    let r = plain(SocketAddr::from((cart_ip, plan.cart_http)));
    assert!(
        r.as_ref().map_or(true, |r| r.status != 200),
        "STRICT port answered plaintext: {r:?}"
    );
    // port level DISABLE wins over the namespace: plaintext to cart's admin port works
    let r = plain(SocketAddr::from((cart_ip, plan.cart_admin))).expect("admin port");
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["server"], "app");
    // workload PERMISSIVE wins over the namespace: plaintext to pay works
    let r = plain(SocketAddr::from((pay_ip, plan.pay_http))).expect("pay");
    assert_eq!(r.status, 200);

    // mTLS through the client sidecar (auto mTLS to endpoints with a sidecar)
    let client = start_client(&ca, scenario(&plan), client_ip);
    for host in ["cart", "pay"] {
        let r = HttpRequest::get("/")
            .host(host)
            .send(client.listen)
            .expect("request");
        assert_eq!(r.status, 200, "{host} over mTLS: {}", r.body_text());
    }
    assert!(
        client
            .envoy
            .stat("cluster.outbound|80||pay.shop.svc.cluster.local.ssl.handshake")
            >= 1,
        "PERMISSIVE pay also accepts mTLS"
    );
    // CONNECT to an HTTP port (as gRPC clients send through HTTPS_PROXY): the
    // tunnel reaches STRICT cart over mTLS, and cart's sidecar serves what it carries.
    let cart = "cluster.outbound|80||cart.shop.svc.cluster.local.ssl.handshake";
    let before = client.envoy.stat(cart);
    let (status, tunnelled) = connect_and_get(client.listen, "cart:80");
    let response = tunnelled.unwrap_or_default();
    assert_eq!(status, 200, "CONNECT cart:80: {}", client.envoy.log());
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains(r#""server":"app""#),
        "a request through the tunnel reached cart's app: {response}"
    );
    assert!(client.envoy.stat(cart) > before, "the tunnel was mTLS");
}

/// PERMISSIVE, for a client outside the mesh that speaks TLS to the app
/// itself: the sidecar terminates only the mesh's mTLS (ALPN `istio`) and
/// passes other TLS through, so the client checks the app's own certificate.
#[test]
fn permissive_passes_an_apps_own_tls_through() {
    let ca = test_ca();
    let app = trellis_e2e::HttpsFileServer::start(Ipv4Addr::LOCALHOST, &[("ping", "pong")]);
    let vault_ip = Ipv4Addr::new(127, 0, 0, 136);
    let ports = free_ports_on(vault_ip, 2);
    let mut vault = workload(
        "vault-1",
        "vault",
        SocketAddr::from((vault_ip, ports[0])),
        &[],
        true,
    );
    vault.app_ports = BTreeMap::from([(ports[0], app.addr().port())]);
    let resources = vec![
        service("vault", "vault"),
        Resource::Workload(Box::new(vault)),
        peer_authentication(
            "metadata: {name: default, namespace: shop}\nspec: {mtls: {mode: PERMISSIVE}}\n",
        ),
    ];
    let m = model(resources, Ipv4Addr::new(127, 0, 0, 137));
    let (_sidecar, _id) = start_sidecar(&ca, &m, "vault-1", "vault", ports[1]);
    let answer = app.fetch_trusting_via(SocketAddr::from((vault_ip, ports[0])), "ping");
    assert!(answer.contains("pong"), "{answer}");
}

/// A DestinationRule with a `workloadSelector` reaches only the clients it
/// selects: one that turns mTLS off for `app: web` makes web's sidecar call
/// PERMISSIVE pay in plaintext; one selecting other clients leaves web on
/// auto mTLS.
#[test]
fn a_destination_rule_reaches_only_the_clients_its_workload_selector_selects() {
    let ca = test_ca();
    let app = Upstream::echo("app", Ipv4Addr::LOCALHOST);
    let pay_ip = Ipv4Addr::new(127, 0, 0, 138);
    let client_ip = Ipv4Addr::new(127, 0, 0, 139);
    let handshakes = "cluster.outbound|80||pay.shop.svc.cluster.local.ssl.handshake";
    for (selected, handshaked) in [("web", false), ("api", true)] {
        let ports = free_ports_on(pay_ip, 2);
        let mut pay = workload(
            "pay-1",
            "pay",
            SocketAddr::from((pay_ip, ports[0])),
            &[],
            true,
        );
        pay.app_ports = BTreeMap::from([(ports[0], app.port())]);
        let resources = vec![
            service("pay", "pay"),
            Resource::Workload(Box::new(pay)),
            peer_authentication(
                "metadata: {name: default, namespace: shop}\nspec: {mtls: {mode: PERMISSIVE}}\n",
            ),
            destination_rule(&format!(
                "metadata: {{name: pay-plain, namespace: shop}}\nspec: {{host: pay, workloadSelector: {{matchLabels: {{app: {selected}}}}}, trafficPolicy: {{tls: {{mode: DISABLE}}}}}}\n"
            )),
        ];
        let m = model(resources.clone(), client_ip);
        let (_pay, _id) = start_sidecar(&ca, &m, "pay-1", "pay", ports[1]);
        let client = start_client(&ca, resources, client_ip);
        let r = HttpRequest::get("/")
            .host("pay")
            .send(client.listen)
            .expect("request");
        assert_eq!(r.status, 200, "selector app: {selected}: {}", r.body_text());
        assert_eq!(
            client.envoy.stat(handshakes) >= 1,
            handshaked,
            "selector app: {selected}: web's sidecar used mTLS"
        );
    }
}

/// A MESH_INTERNAL ServiceEntry whose endpoint is labelled
/// `security.istio.io/tlsMode: istio` (a VM with a sidecar, here a STRICT
/// one): the client's sidecar reaches it over the mesh's mTLS, checking the
/// endpoint's identity, where plaintext would be refused.
#[test]
fn a_labelled_service_entry_endpoint_gets_auto_mtls() {
    let ca = test_ca();
    let app = Upstream::echo("vm-app", Ipv4Addr::LOCALHOST);
    let vm_ip = Ipv4Addr::new(127, 0, 0, 149);
    let ports = free_ports_on(vm_ip, 2);
    let mut vm = workload("vm-1", "vm", SocketAddr::from((vm_ip, ports[0])), &[], true);
    vm.app_ports = BTreeMap::from([(ports[0], app.port())]);
    let entry: trellis_api::networking::ServiceEntry = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "vm", "namespace": "shop"},
        "spec": {
            "hosts": ["vm.internal"],
            "location": "MESH_INTERNAL",
            "resolution": "STATIC",
            "ports": [{"number": 80, "name": "http", "protocol": "HTTP"}],
            "endpoints": [{"address": vm_ip.to_string(), "ports": {"http": ports[0]},
                           "serviceAccount": "vm", "labels": {"security.istio.io/tlsMode": "istio"}}]
        }
    }))
    .expect("ServiceEntry");
    let resources = vec![
        // The Service gives the VM's sidecar its inbound port, as a VM's would have.
        service("vm", "vm"),
        Resource::Workload(Box::new(vm)),
        Resource::ServiceEntry(Box::new(entry)),
        peer_authentication(
            "metadata: {name: default, namespace: shop}\nspec: {mtls: {mode: STRICT}}\n",
        ),
    ];
    let client_ip = Ipv4Addr::new(127, 0, 0, 150);
    let m = model(resources.clone(), client_ip);
    let (_vm_sidecar, _id) = start_sidecar(&ca, &m, "vm-1", "vm", ports[1]);
    let client = start_client(&ca, resources, client_ip);
    let r = HttpRequest::get("/")
        .host("vm.internal")
        .send(client.listen)
        .expect("request");
    assert_eq!(r.status, 200, "{}\n{}", r.body_text(), client.envoy.log());
    assert!(
        client
            .envoy
            .stat("cluster.outbound|80||vm.internal.ssl.handshake")
            >= 1
    );
}
