//! The Sidecar resource's `ingress` listeners on real Envoy: they replace the
//! inbound ports a workload's services give its proxy, and send each port's
//! traffic to the application's `defaultEndpoint` (here a loopback port other
//! than the service's target port, where nothing else listens).
mod mesh_fixtures;

use std::net::{Ipv4Addr, SocketAddr};

use mesh_fixtures::object;
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, golden_sidecar_bootstrap, model, options, service, start_client,
    start_sidecar, workload,
};
use trellis_e2e::{HttpRequest, Upstream, free_ports_on};
use trellis_model::Resource;
use trellis_translate::{Proxy, SdsSource, Translator};

#[test]
fn ingress_listeners_send_each_port_to_its_default_endpoint() {
    let ca = test_ca();
    // The application listens on loopback only, on a port of its own.
    let app = Upstream::echo("pay-app", Ipv4Addr::LOCALHOST);
    let pay_ip = Ipv4Addr::new(127, 0, 0, 142);
    let client_ip = Ipv4Addr::new(127, 0, 0, 143);
    for with_ingress in [false, true] {
        let ports = free_ports_on(pay_ip, 2);
        let pay = workload(
            "pay-1",
            "pay",
            SocketAddr::from((pay_ip, ports[0])),
            &[],
            true,
        );
        let mut resources = vec![service("pay", "pay"), Resource::Workload(Box::new(pay))];
        if with_ingress {
            resources.push(object(&format!(
                "apiVersion: networking.istio.io/v1\nkind: Sidecar\n\
                 metadata: {{name: pay-ingress, namespace: shop}}\n\
                 spec:\n  workloadSelector: {{labels: {{app: pay}}}}\n  \
                 ingress:\n  - port: {{number: {}, protocol: HTTP, name: http}}\n    \
                 defaultEndpoint: 127.0.0.1:{}\n",
                ports[0],
                app.port()
            )));
        }
        let m = model(resources.clone(), client_ip);
        let options = options(ports[1], SdsSource::Ads);
        let out = Translator::new(&m, options).translate(&Proxy::sidecar("shop", "pay-1"));
        assert!(out.errors.is_empty(), "{:?}", out.errors);
        let (_pay, _id) = start_sidecar(&ca, &m, "pay-1", "pay", ports[1]);
        let client = start_client(&ca, resources, client_ip);
        let r = HttpRequest::get("/")
            .host("pay")
            .send(client.listen)
            .expect("request");
        if with_ingress {
            assert_eq!(r.status, 200, "{}", r.body_text());
            assert_eq!(r.json()["server"], "pay-app");
        } else {
            // The service's target port on loopback: nothing listens there.
            assert_eq!(r.status, 503, "{}", r.body_text());
        }
    }
}

/// The Sidecar's `inboundConnectionPool` limits the proxy's connections to its
/// application, and an ingress listener's own `connectionPool` replaces it
/// for its port: with the application slow enough that all requests are in
/// flight together, a port allowing 1 connection and 1 pending request serves
/// at most 2 of 8 simultaneous requests (the rest overflow into 503s the proxy
/// answers itself), while the port allowing 4 connections and 16 pending
/// requests serves all 8, over no more than 4 connections at a time.
#[test]
fn inbound_connection_pools_limit_connections_to_the_application() {
    use std::sync::{Arc, Barrier};
    use std::time::Duration;
    use trellis_e2e::Behavior;
    let ca = test_ca();
    let app = Upstream::start(
        "pay-app",
        Ipv4Addr::LOCALHOST,
        Behavior::Slow(Duration::from_secs(4)),
    );
    let pay_ip = Ipv4Addr::new(127, 0, 0, 205);
    let ports = free_ports_on(pay_ip, 3);
    let (narrow, wide) = (ports[0], ports[1]);
    let resources = pool_scenario(SocketAddr::from((pay_ip, narrow)), wide, app.port());
    let m = model(resources, Ipv4Addr::new(127, 0, 0, 206));
    let out = Translator::new(&m, options(ports[2], SdsSource::Ads))
        .translate(&Proxy::sidecar("shop", "pay-1"));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let (envoy, _id) = start_sidecar(&ca, &m, "pay-1", "pay", ports[2]);

    let n = 8;
    let barrier = Arc::new(Barrier::new(2 * n));
    let threads: Vec<_> = [narrow, wide]
        .into_iter()
        .flat_map(|port| std::iter::repeat_n(port, n))
        .map(|port| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                let r = HttpRequest::get("/")
                    .host("pay")
                    .timeout(Duration::from_secs(30))
                    .send(SocketAddr::from((pay_ip, port)))
                    .expect("request");
                (port, r)
            })
        })
        .collect();
    let responses: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let count = |port: u16, ok: bool| {
        (responses.iter())
            .filter(|(p, r)| {
                *p == port
                    && if ok {
                        r.status == 200
                    } else {
                        r.status == 503 && r.header("x-envoy-overloaded") == Some("true")
                    }
            })
            .count()
    };
    for port in [narrow, wide] {
        assert_eq!(
            count(port, true) + count(port, false),
            n,
            "only 200 or overloaded 503 on {port}: {responses:?}"
        );
        assert_eq!(
            envoy.stat(&format!(
                "cluster.inbound|{port}||.upstream_rq_pending_overflow"
            )),
            count(port, false) as u64
        );
    }
    let narrow_ok = count(narrow, true);
    assert!(
        (1..=2).contains(&narrow_ok),
        "inboundConnectionPool: 1 connection + 1 pending, {narrow_ok} served"
    );
    assert_eq!(
        count(wide, true),
        n,
        "the port's own pool: 4 connections + 16 pending: {responses:?}"
    );
    assert!(
        envoy.stat(&format!("cluster.inbound|{wide}||.upstream_cx_overflow")) >= 1,
        "the 8 requests wanted more than 4 connections"
    );
}

/// Workload pay-1 at `narrow` (its first ingress port; `wide` the second),
/// the application on loopback port `app`, a Sidecar with an inbound pool of
/// 1 connection and 1 pending request, and one of 4 and 16 for `wide`.
fn pool_scenario(narrow: SocketAddr, wide: u16, app: u16) -> Vec<Resource> {
    let pay = workload("pay-1", "pay", narrow, &[], true);
    let narrow = narrow.port();
    let sidecar = object(&format!(
        r#"
apiVersion: networking.istio.io/v1
kind: Sidecar
metadata: {{name: pay-ingress, namespace: shop}}
spec:
  workloadSelector: {{labels: {{app: pay}}}}
  inboundConnectionPool:
    tcp: {{maxConnections: 1}}
    http: {{http1MaxPendingRequests: 1}}
  ingress:
  - port: {{number: {narrow}, protocol: HTTP, name: http-narrow}}
    defaultEndpoint: 127.0.0.1:{app}
  - port: {{number: {wide}, protocol: HTTP, name: http-wide}}
    defaultEndpoint: 127.0.0.1:{app}
    connectionPool:
      tcp: {{maxConnections: 4}}
      http: {{http1MaxPendingRequests: 16}}
"#
    ));
    vec![
        service("pay", "pay"),
        Resource::Workload(Box::new(pay)),
        sidecar,
    ]
}

#[test]
fn golden_sidecar_inbound_connection_pool() {
    let resources = pool_scenario(SocketAddr::from(([127, 0, 0, 205], 9000)), 9001, 8080);
    let yaml = golden_sidecar_bootstrap(resources, "pay-1", "pay");
    check_golden_bootstrap("sidecar-inbound-connection-pool", &yaml, &["pay"]);
}
