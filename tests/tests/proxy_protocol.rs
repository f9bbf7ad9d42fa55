//! DestinationRule `trafficPolicy.proxyProtocol` through the whole translator
//! (model -> sidecar -> real Envoy): the client sidecar opens each upstream
//! connection with the PROXY header (v1 text or v2 binary) naming the original
//! client and the address it connected to, which a backend of ours reads —
//! for TCP ports (the sidecar's local TCP listeners), and for HTTP, where the
//! subset's policy adds it; a service without the policy gets no header.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use trellis_e2e::mesh::test_ca;
use trellis_e2e::proxy_protocol::ProxyProtocolServer;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, destination_rule, golden_addrs, golden_client_bootstrap,
    plain_workload, service, start_client_with_tcp, tcp_service, virtual_service,
};
use trellis_model::Resource;

const BACKENDS: [&str; 4] = ["ledger", "vault", "books", "plain"];

fn scenario(addr: &BTreeMap<String, SocketAddr>) -> Vec<Resource> {
    vec![
        tcp_service("ledger", "ledger", 7000),
        tcp_service("vault", "vault", 7100),
        tcp_service("plain", "plain", 7200),
        service("books", "books"),
        plain_workload("ledger", "ledger", addr["ledger"], &[]),
        plain_workload("vault", "vault", addr["vault"], &[]),
        plain_workload("plain", "plain", addr["plain"], &[]),
        plain_workload("books", "books", addr["books"], &[("version", "v1")]),
        // the version defaults to V1, as in Istio
        destination_rule(
            "metadata: {name: ledger, namespace: shop}\n\
             spec: {host: ledger, trafficPolicy: {proxyProtocol: {}}}\n",
        ),
        destination_rule(
            "metadata: {name: vault, namespace: shop}\n\
             spec: {host: vault, trafficPolicy: {proxyProtocol: {version: V2}}}\n",
        ),
        // only the subset sends the header
        destination_rule(
            r#"
metadata: {name: books, namespace: shop}
spec:
  host: books
  subsets:
  - name: v1
    labels: {version: v1}
    trafficPolicy: {proxyProtocol: {version: V1}}
"#,
        ),
        virtual_service(
            r#"
metadata: {name: books, namespace: shop}
spec:
  hosts: [books]
  http:
  - route: [{destination: {host: books, subset: v1}}]
"#,
        ),
    ]
}

#[test]
fn golden_traffic_proxy_protocol() {
    let yaml = golden_client_bootstrap(scenario(&golden_addrs(&BACKENDS, 200)));
    check_golden_bootstrap("traffic-proxy-protocol", &yaml, &["web"]);
}

#[test]
fn upstream_connections_carry_the_proxy_header_on_real_envoy() {
    let ip = Ipv4Addr::new(127, 0, 0, 200);
    let backends: BTreeMap<&str, ProxyProtocolServer> = BACKENDS
        .into_iter()
        .map(|n| (n, ProxyProtocolServer::start(n, ip)))
        .collect();
    let addr = (backends.iter())
        .map(|(n, b)| (n.to_string(), b.addr()))
        .collect();
    let client = start_client_with_tcp(
        &test_ca(),
        scenario(&addr),
        Ipv4Addr::new(127, 0, 0, 201),
        &[("ledger", 7000), ("vault", 7100), ("plain", 7200)],
    );
    let (ledger, vault, plain) = (client.tcp[0], client.tcp[1], client.tcp[2]);

    // TCP, V1 by default: the original client and the address it dialed
    let (me, answer) = trellis_e2e::json_exchange(ledger);
    assert_eq!(answer["server"], "ledger", "{answer}");
    let proxy = &answer["proxy"];
    assert_eq!(
        proxy["version"],
        1,
        "{answer}; envoy log:\n{}",
        client.envoy.log()
    );
    assert_eq!(proxy["source"], me.to_string(), "{answer}");
    assert_eq!(proxy["destination"], ledger.to_string(), "{answer}");

    // TCP, V2 (binary)
    let (me, answer) = trellis_e2e::json_exchange(vault);
    assert_eq!(answer["server"], "vault", "{answer}");
    assert_eq!(answer["proxy"]["version"], 2, "{answer}");
    assert_eq!(answer["proxy"]["source"], me.to_string(), "{answer}");
    assert_eq!(
        answer["proxy"]["destination"],
        vault.to_string(),
        "{answer}"
    );

    // HTTP through the subset whose policy sends it: the downstream
    // connection's addresses (Envoy keeps an upstream connection per client)
    let r = client.get("books", "/");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let answer = r.json();
    assert_eq!(answer["server"], "books", "{answer}");
    assert_eq!(answer["proxy"]["version"], 1, "{answer}");
    assert_eq!(
        answer["proxy"]["destination"],
        client.listen.to_string(),
        "{answer}"
    );
    assert!(
        (answer["proxy"]["source"].as_str()).is_some_and(|s| s.parse::<SocketAddr>().is_ok()),
        "{answer}"
    );

    // no policy, no header
    let (_, answer) = trellis_e2e::json_exchange(plain);
    assert_eq!(answer["server"], "plain", "{answer}");
    assert!(answer["proxy"].is_null(), "{answer}");
    assert_eq!(backends["plain"].seen(), [None]);
}
