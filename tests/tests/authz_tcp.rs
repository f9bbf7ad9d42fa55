//! AuthorizationPolicy on a TCP port, on real Envoy: the destination sidecar
//! checks the client's SPIFFE identity (mTLS) with network RBAC before it
//! proxies the connection to the app.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{model, start_client, start_sidecar, tcp_service, workload};
use trellis_e2e::{Upstream, connect_and_get, free_ports_on};
use trellis_model::Resource;

fn policy(yaml: &str) -> Resource {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
    Resource::AuthorizationPolicy(Box::new(
        serde_json::from_value(value).expect("AuthorizationPolicy"),
    ))
}

/// `ledger` admits only `web`'s identity; `vault` denies it. Both are TCP
/// services whose workloads have sidecars in front of the same app.
fn scenario(ledger: SocketAddr, vault: SocketAddr, app_port: u16) -> Vec<Resource> {
    let with_sidecar = |name: &str, app: &str, addr: SocketAddr| {
        let mut w = workload(name, app, addr, &[], true);
        w.app_ports = BTreeMap::from([(addr.port(), app_port)]);
        Resource::Workload(Box::new(w))
    };
    vec![
        tcp_service("ledger", "ledger", 7000),
        tcp_service("vault", "vault", 7000),
        with_sidecar("ledger-1", "ledger", ledger),
        with_sidecar("vault-1", "vault", vault),
        policy(
            "metadata: {name: ledger-from-web, namespace: shop}\n\
             spec: {selector: {matchLabels: {app: ledger}},\n\
             rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]}\n",
        ),
        policy(
            "metadata: {name: vault-not-web, namespace: shop}\n\
             spec: {selector: {matchLabels: {app: vault}}, action: DENY,\n\
             rules: [{from: [{source: {principals: [cluster.local/ns/shop/sa/web]}}]}]}\n",
        ),
    ]
}

#[test]
fn authorization_policies_guard_tcp_ports_on_real_envoy() {
    let ca = test_ca();
    let app = Upstream::echo("app", Ipv4Addr::LOCALHOST);
    let ledger_ip = Ipv4Addr::new(127, 0, 0, 140);
    let vault_ip = Ipv4Addr::new(127, 0, 0, 141);
    let client_ip = Ipv4Addr::new(127, 0, 0, 142);
    let ledger_ports = free_ports_on(ledger_ip, 2);
    let vault_ports = free_ports_on(vault_ip, 2);
    let ledger = SocketAddr::from((ledger_ip, ledger_ports[0]));
    let vault = SocketAddr::from((vault_ip, vault_ports[0]));
    let resources = scenario(ledger, vault, app.port());
    let m = model(resources.clone(), client_ip);
    let (ledger_sidecar, _ledger_id) =
        start_sidecar(&ca, &m, "ledger-1", "ledger", ledger_ports[1]);
    let (vault_sidecar, _vault_id) = start_sidecar(&ca, &m, "vault-1", "vault", vault_ports[1]);
    let client = start_client(&ca, resources, client_ip);

    // ALLOW web: the tunnel reaches the app through ledger's sidecar.
    let (status, response) = connect_and_get(client.listen, "ledger:7000");
    let response = response.unwrap_or_default();
    assert_eq!(status, 200, "CONNECT ledger:7000: {}", client.envoy.log());
    assert!(
        response.starts_with("HTTP/1.1 200") && response.contains(r#""server":"app""#),
        "web reached ledger's app: {response}"
    );
    assert_eq!(ledger_sidecar.wait_stat("inbound_tcp.rbac.allowed", 1), 1);

    // DENY web: vault's sidecar closes the connection; nothing reaches the app.
    let hits = app.hits();
    let (_, response) = connect_and_get(client.listen, "vault:7000");
    let response = response.unwrap_or_default();
    assert!(
        !response.contains("HTTP/1.1 200"),
        "web got through to vault's app: {response}"
    );
    assert_eq!(vault_sidecar.wait_stat("inbound_tcp.rbac.denied", 1), 1);
    assert_eq!(app.hits(), hits, "the denied connection reached the app");
}
