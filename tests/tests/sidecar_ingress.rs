//! The Sidecar resource's `ingress` listeners on real Envoy: they replace the
//! inbound ports a workload's services give its proxy, and send each port's
//! traffic to the application's `defaultEndpoint` (here a loopback port other
//! than the service's target port, where nothing else listens).
mod mesh_fixtures;

use std::net::{Ipv4Addr, SocketAddr};

use mesh_fixtures::object;
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{model, options, service, start_client, start_sidecar, workload};
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
