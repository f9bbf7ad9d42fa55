//! A Kubernetes Service without a selector (a database or an API outside the
//! cluster, its EndpointSlices written by hand) on real Envoy: the translator
//! sends the client sidecar's requests for the Service to the addresses and
//! ports the slices list, in plaintext (they have no sidecar), and nowhere once
//! the list is empty.
use std::collections::BTreeMap;
use std::net::Ipv4Addr;

use k8s_openapi::api::core::v1::Service;
use trellis_e2e::Upstream;
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::start_client;
use trellis_model::{Resource, StaticEndpoint};

fn selectorless_service() -> Resource {
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": "billing", "namespace": "shop"},
        "spec": {"ports": [{"name": "http", "port": 80}], "clusterIP": "10.96.7.7"}
    }))
    .unwrap();
    Resource::Service(Box::new(svc))
}

fn listed(endpoints: &[&Upstream]) -> Resource {
    Resource::ServiceEndpoints {
        namespace: "shop".into(),
        service: "billing".into(),
        endpoints: endpoints
            .iter()
            .map(|u| StaticEndpoint {
                address: u.ip(),
                ports: BTreeMap::from([("http".to_string(), u.port())]),
                ..Default::default()
            })
            .collect(),
    }
}

#[test]
fn requests_reach_the_endpoints_the_slices_list() {
    let outside = [
        Upstream::echo("billing-a", Ipv4Addr::new(127, 0, 0, 191)),
        Upstream::echo("billing-b", Ipv4Addr::new(127, 0, 0, 192)),
    ];
    let client_ip = Ipv4Addr::new(127, 0, 0, 190);
    let client = start_client(
        &test_ca(),
        vec![selectorless_service(), listed(&[&outside[0], &outside[1]])],
        client_ip,
    );
    let mut servers = std::collections::BTreeSet::new();
    for _ in 0..20 {
        servers.insert(client.served_by("billing", "/invoice"));
    }
    assert_eq!(
        servers.into_iter().collect::<Vec<_>>(),
        ["billing-a", "billing-b"],
        "both listed endpoints serve"
    );
    assert!(outside.iter().all(|u| u.hits() > 0));
    drop(client);

    // Nothing listed: the Service has no endpoint.
    let client = start_client(
        &test_ca(),
        vec![selectorless_service(), listed(&[])],
        client_ip,
    );
    let r = client.get("billing", "/invoice");
    assert_eq!(r.status, 503, "no healthy upstream: {}", r.body_text());
}
