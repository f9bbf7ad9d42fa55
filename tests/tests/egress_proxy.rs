//! Sidecar `outboundTrafficPolicy.egressProxy` through the whole translator
//! (model -> sidecar -> real Envoy): with `mode: ALLOW_ANY`, requests and
//! CONNECT tunnels to hosts outside the registry go to the egress proxy (a
//! service of the mesh; here an echo server that shows what it received)
//! instead of their original destination, while services of the registry are
//! still reached directly. Without `egressProxy`, the same request reaches
//! its destination.
mod mesh_fixtures;

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use mesh_fixtures::object;
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, golden_addrs, golden_client_bootstrap, plain_workload, service,
    start_client,
};
use trellis_e2e::{Upstream, connect_and_get};
use trellis_model::Resource;

fn scenario(addr: &BTreeMap<String, SocketAddr>, egress_proxy: bool) -> Vec<Resource> {
    let proxy = if egress_proxy {
        "\n    egressProxy: {host: egress, port: {number: 80}}"
    } else {
        ""
    };
    vec![
        service("egress", "egress"),
        service("books", "books"),
        plain_workload("egress-1", "egress", addr["egress"], &[]),
        plain_workload("books-1", "books", addr["books"], &[]),
        object(&format!(
            r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: default, namespace: shop}}
spec:
  outboundTrafficPolicy:
    mode: ALLOW_ANY{proxy}
"#
        )),
    ]
}

#[test]
fn golden_egress_proxy() {
    let yaml = golden_client_bootstrap(scenario(&golden_addrs(&["books", "egress"], 210), true));
    check_golden_bootstrap("egress-proxy", &yaml, &["web"]);
}

#[test]
fn traffic_outside_the_registry_goes_to_the_egress_proxy_on_real_envoy() {
    let ip = Ipv4Addr::new(127, 0, 0, 210);
    let egress = Upstream::echo("egress", ip);
    let books = Upstream::echo("books", ip);
    // outside the registry: no service names it
    let outside = Upstream::echo("outside", Ipv4Addr::new(127, 0, 0, 211));
    let addr = BTreeMap::from([
        ("egress".to_string(), egress.addr()),
        ("books".to_string(), books.addr()),
    ]);
    let target = outside.addr().to_string();

    let client = start_client(
        &test_ca(),
        scenario(&addr, true),
        Ipv4Addr::new(127, 0, 0, 212),
    );
    // a request for a host outside the registry: to the egress proxy, Host kept
    let r = client.get(&target, "/page");
    assert_eq!(
        r.status,
        200,
        "{}; envoy log:\n{}",
        r.body_text(),
        client.envoy.log()
    );
    let json = r.json();
    assert_eq!(json["server"], "egress", "{json}");
    assert_eq!(json["headers"]["host"], target, "{json}");
    assert_eq!(json["path"], "/page", "{json}");
    // a tunnel to it: the tunnelled bytes go to the egress proxy too
    let (status, response) = connect_and_get(client.listen, &target);
    assert_eq!(status, 200, "CONNECT {target}");
    let response = response.unwrap_or_default();
    assert!(
        response.contains("x-upstream: egress"),
        "the tunnel ends at the egress proxy: {response}"
    );
    // a service of the registry: directly
    let r = client.get("books", "/");
    assert_eq!(r.json()["server"], "books");
    assert_eq!(
        outside.hits(),
        0,
        "nothing reached the host outside directly"
    );
    drop(client);

    // without egressProxy, ALLOW_ANY passes the same request through
    let client = start_client(
        &test_ca(),
        scenario(&addr, false),
        Ipv4Addr::new(127, 0, 0, 212),
    );
    let r = client.get(&target, "/page");
    assert_eq!(r.status, 200, "{}", r.body_text());
    assert_eq!(r.json()["server"], "outside");
}
