//! The Sidecar resource on real Envoy: a service outside its egress hosts (or
//! named only on a port it does not have) gets no configuration, so the proxy
//! cannot route to it (REGISTRY_ONLY: 502), while the admitted service still works. Plus the golden bootstrap of the scoped proxy.
mod mesh_fixtures;

use std::net::{Ipv4Addr, SocketAddr};

use mesh_fixtures::*;
use trellis_e2e::golden::check_golden;
use trellis_e2e::mesh::{Identity, relative_file_sds, test_ca};
use trellis_e2e::sidecar_mesh::options;
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::{
    Envoy, HttpRequest, HttpResponse, Upstream, free_ports_on, validate_bootstrap,
    validate_bootstrap_in,
};
use trellis_model::{MeshSettings, Resource};
use trellis_translate::{Proxy, ProxyResources, SdsSource, Translator};

const APP_IP: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 85);
const CART: &str = "cart.shop.svc.cluster.local:8080";
const ORDERS: &str = "orders.shop.svc.cluster.local:8080";

fn scope(policy: Option<&str>) -> Resource {
    let policy = policy
        .map(|m| format!("  outboundTrafficPolicy: {{mode: {m}}}\n"))
        .unwrap_or_default();
    object(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: shop}}
spec:
  egress:
  - hosts: ["./cart.shop.svc.cluster.local"]
{policy}"#
    ))
}

fn translate(
    cart: SocketAddr,
    orders: SocketAddr,
    sidecar: Option<Resource>,
    proxy_port: u16,
    sds: SdsSource,
) -> ProxyResources {
    let mut r = vec![
        service("shop", "cart", "cart", &[("http", 8080, cart.port())]),
        service("shop", "orders", "orders", &[("http", 8080, orders.port())]),
        workload(
            "shop",
            "cart-1",
            &cart.ip().to_string(),
            &[("app", "cart")],
            false,
        ),
        workload(
            "shop",
            "orders-1",
            &orders.ip().to_string(),
            &[("app", "orders")],
            false,
        ),
        workload(
            "shop",
            "app-1",
            &APP_IP.to_string(),
            &[("app", "app")],
            true,
        ),
    ];
    r.extend(sidecar);
    let model = model_of(MeshSettings::default(), r);
    Translator::new(&model, options(proxy_port, sds)).translate(&Proxy::sidecar("shop", "app-1"))
}

fn get(proxy: SocketAddr, host: &str) -> HttpResponse {
    HttpRequest::get("/")
        .host(host)
        .send(proxy)
        .unwrap_or_else(|e| panic!("{host}: {e}"))
}

#[test]
fn excluded_host_is_not_routable() {
    let dir = tempfile::tempdir().unwrap();
    let identity = Identity::issue(&test_ca(), dir.path(), "shop", "app");
    let cart = Upstream::echo("cart", Ipv4Addr::new(127, 0, 0, 86));
    let orders = Upstream::echo("orders", Ipv4Addr::new(127, 0, 0, 87));
    let ports = free_ports_on(APP_IP, 4);
    // Egress listeners with ports: cart on its port 8080; orders only on a
    // port it does not have, so not at all.
    let by_port = object(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {name: default, namespace: shop}
spec:
  egress:
  - port: {number: 8080, protocol: HTTP, name: http}
    hosts: ["./cart.shop.svc.cluster.local"]
  - port: {number: 9999, protocol: HTTP, name: other}
    hosts: ["./orders.shop.svc.cluster.local"]
  outboundTrafficPolicy: {mode: REGISTRY_ONLY}
"#,
    );
    let cases = [
        ("no Sidecar resource", None, ports[0]),
        ("egress to cart only", Some(scope(None)), ports[1]),
        (
            "egress to cart only, REGISTRY_ONLY",
            Some(scope(Some("REGISTRY_ONLY"))),
            ports[2],
        ),
        ("egress by port, REGISTRY_ONLY", Some(by_port), ports[3]),
    ];
    let mut statuses = Vec::new();
    for (case, sidecar, port) in cases {
        let out = translate(cart.addr(), orders.addr(), sidecar, port, identity.sds());
        assert!(out.errors.is_empty(), "{case}: {:?}", out.errors);
        let yaml = static_bootstrap("app-1", &out, &SecretFiles::new());
        validate_bootstrap(&yaml).unwrap_or_else(|e| panic!("{case}: {e}"));
        let _envoy = Envoy::start(&yaml);
        let proxy = SocketAddr::from((APP_IP, port));
        let r = get(proxy, CART);
        assert_eq!(
            (r.status, r.header("x-upstream")),
            (200, Some("cart")),
            "{case}"
        );
        let before = orders.hits();
        let r = get(proxy, ORDERS);
        statuses.push(r.status);
        if r.status != 200 {
            assert_eq!(orders.hits(), before, "{case}: orders must not be reached");
        }
    }
    // reachable without the Sidecar resource; excluded with it (no cluster: the
    // authority is not an ip:port to pass through), 502 under REGISTRY_ONLY
    assert_eq!(statuses[0], 200);
    assert_ne!(statuses[1], 200);
    assert_eq!(statuses[2], 502);
    assert_eq!(statuses[3], 502);
}

#[test]
fn golden_sidecar_scope_bootstrap() {
    let sds = relative_file_sds("identities/app");
    let out = translate(
        SocketAddr::from(([127, 0, 0, 86], 9201)),
        SocketAddr::from(([127, 0, 0, 87], 9202)),
        Some(scope(Some("REGISTRY_ONLY"))),
        15001,
        sds,
    );
    let yaml = static_bootstrap("app-1", &out, &SecretFiles::new());
    check_golden("sidecar-scope", &yaml);
    let dir = tempfile::tempdir().unwrap();
    Identity::issue_with_relative_sds(&test_ca(), dir.path(), "identities/app", "shop", "app");
    validate_bootstrap_in(dir.path(), &yaml).expect("golden sidecar-scope bootstrap validates");
}
