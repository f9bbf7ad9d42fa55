//! DestinationRule `trafficPolicy.tunnel` through the whole translator (model
//! -> sidecar -> real Envoy): connections to a TCP service whose endpoints are
//! a tunnelling proxy are carried in an HTTP/1.1 tunnel to the rule's
//! `targetHost:targetPort` by CONNECT; a subset tunnels by its own setting
//! only, as in Istio; a service without the setting gets the connection's
//! bytes as they are. (POST tunnels are refused: Envoy 1.40 crashes when the
//! tunnelling proxy ends one; see the README.)
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpStream};
use std::time::Duration;

use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, destination_rule, golden_addrs, golden_client_bootstrap,
    plain_workload, start_client_with_tcp, tcp_service, virtual_service,
};
use trellis_e2e::tunnel_proxy::{TunnelProxy, TunnelRequest};
use trellis_model::Resource;

const PROXIES: [&str; 3] = ["ledger", "vault", "plain"];

fn scenario(addr: &BTreeMap<String, SocketAddr>) -> Vec<Resource> {
    vec![
        tcp_service("ledger", "ledger", 7000),
        tcp_service("vault", "vault", 7100),
        tcp_service("plain", "plain", 7200),
        plain_workload("ledger", "ledger", addr["ledger"], &[]),
        plain_workload("vault", "vault", addr["vault"], &[("version", "v1")]),
        plain_workload("plain", "plain", addr["plain"], &[]),
        destination_rule(
            "metadata: {name: ledger, namespace: shop}\n\
             spec: {host: ledger, trafficPolicy: {tunnel: {targetHost: ledger.internal.example, targetPort: 7443}}}\n",
        ),
        // the rule's tunnel is not the subset's: v1 tunnels to its own target
        destination_rule(
            r#"
metadata: {name: vault, namespace: shop}
spec:
  host: vault
  trafficPolicy: {tunnel: {targetHost: vault.internal.example, targetPort: 1}}
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {tunnel: {protocol: CONNECT, targetHost: 10.1.2.3, targetPort: 8443}}
"#,
        ),
        virtual_service(
            r#"
metadata: {name: vault, namespace: shop}
spec:
  hosts: [vault]
  tcp:
  - route: [{destination: {host: vault, subset: v1}}]
"#,
        ),
    ]
}

#[test]
fn golden_traffic_tunnel() {
    let yaml = golden_client_bootstrap(scenario(&golden_addrs(&PROXIES, 220)));
    check_golden_bootstrap("traffic-tunnel", &yaml, &["web"]);
}

#[test]
fn tcp_connections_are_carried_in_http_tunnels_on_real_envoy() {
    let ip = Ipv4Addr::new(127, 0, 0, 220);
    let proxies: BTreeMap<&str, TunnelProxy> = PROXIES
        .into_iter()
        .map(|n| (n, TunnelProxy::start(n, ip)))
        .collect();
    let addr = (proxies.iter())
        .map(|(n, p)| (n.to_string(), p.addr()))
        .collect();
    let client = start_client_with_tcp(
        &test_ca(),
        scenario(&addr),
        Ipv4Addr::new(127, 0, 0, 221),
        &[("ledger", 7000), ("vault", 7100), ("plain", 7200)],
    );
    let (ledger, vault, plain) = (client.tcp[0], client.tcp[1], client.tcp[2]);

    // CONNECT by default, to the rule's target; the tunnel then carries the request
    let (_, answer) = trellis_e2e::json_exchange(ledger);
    assert_eq!(
        (answer["server"].as_str(), answer["method"].as_str()),
        (Some("ledger"), Some("CONNECT")),
        "{answer}; envoy log:\n{}",
        client.envoy.log()
    );
    assert_eq!(answer["target"], "ledger.internal.example:7443", "{answer}");
    // the subset's own tunnel, to its target
    let (_, answer) = trellis_e2e::json_exchange(vault);
    assert_eq!(answer["server"], "vault", "{answer}");
    assert_eq!(answer["method"], "CONNECT", "{answer}");
    assert_eq!(answer["target"], "10.1.2.3:8443", "{answer}");
    // a CONNECT to the service through the sidecar's HTTP proxy port (as a
    // client behind HTTPS_PROXY opens it) goes on to the proxy for the target
    let (status, response) = trellis_e2e::connect_and_get(client.listen, "ledger:7000");
    assert_eq!(status, 200, "CONNECT ledger:7000: {}", client.envoy.log());
    let response = response.unwrap_or_default();
    assert!(
        response.contains(r#""target":"ledger.internal.example:7443""#),
        "{response}"
    );
    assert_eq!(
        proxies["ledger"].seen().last().map(|t| t.target.as_str()),
        Some("ledger.internal.example:7443")
    );
    // no tunnel: the proxy gets the client's own request
    assert_eq!(
        exchange_status(plain),
        405,
        "the bytes as they are: a GET, not a tunnel"
    );
    assert_eq!(
        proxies["plain"].seen(),
        [TunnelRequest {
            method: "GET".into(),
            target: "backend".into()
        }]
    );
}

/// The status of the answer to one GET over a new connection to `to`.
fn exchange_status(to: SocketAddr) -> u16 {
    let mut stream = TcpStream::connect(to).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("{response:?} from {to}"))
}
