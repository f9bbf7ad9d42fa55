//! The harness itself against real Envoy: validate, start, proxy to an echo upstream, stop.
use std::net::Ipv4Addr;

use trellis_e2e::{Behavior, Envoy, HttpRequest, Upstream, free_port, validate_bootstrap};

fn proxy_bootstrap(listen_port: u16, upstream: &Upstream) -> String {
    format!(
        r#"
node: {{id: harness, cluster: harness}}
static_resources:
  listeners:
  - name: in
    address: {{socket_address: {{address: 127.0.0.1, port_value: {listen_port}}}}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: in
          route_config:
            virtual_hosts:
            - name: all
              domains: ["*"]
              routes:
              - match: {{prefix: "/"}}
                route: {{cluster: up}}
          http_filters:
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
  clusters:
  - name: up
    type: STATIC
    connect_timeout: 1s
    load_assignment:
      cluster_name: up
      endpoints:
      - lb_endpoints:
        - endpoint: {{address: {{socket_address: {{address: {ip}, port_value: {port}}}}}}}
"#,
        ip = upstream.ip(),
        port = upstream.port()
    )
}

#[test]
fn validate_accepts_good_and_rejects_bad_bootstrap() {
    let up = Upstream::echo("a", Ipv4Addr::new(127, 0, 0, 21));
    validate_bootstrap(&proxy_bootstrap(free_port(), &up)).expect("valid bootstrap");
    let err = validate_bootstrap("static_resources: {clusters: [{name: x, bogus_field: 1}]}")
        .expect_err("unknown field must fail");
    assert!(err.contains("bogus_field"), "{err}");
}

#[test]
fn envoy_proxies_to_echo_and_dies_on_drop() {
    let echo = Upstream::echo("echo-1", Ipv4Addr::new(127, 0, 0, 22));
    let port = free_port();
    let envoy = Envoy::start(&proxy_bootstrap(port, &echo));
    let listener = std::net::SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let resp = HttpRequest::get("/hello?x=1")
        .host("svc.example")
        .header("x-test", "yes")
        .send(listener)
        .unwrap();
    assert_eq!(resp.status, 200);
    assert_eq!(resp.header("x-upstream"), Some("echo-1"));
    let json = resp.json();
    assert_eq!(json["server"], "echo-1");
    assert_eq!(json["path"], "/hello?x=1");
    assert_eq!(json["headers"]["x-test"], "yes");
    assert_eq!(json["headers"]["host"], "svc.example");
    assert_eq!(envoy.stat("cluster.up.upstream_rq_200"), 1);
    assert_eq!(envoy.server_info()["state"], "LIVE");
    assert!(envoy.config_dump()["configs"].is_array());

    let pid = envoy.pid();
    drop(envoy);
    // after kill + wait the PID is reaped: /proc/<pid> is gone (or reused by another process)
    let still_envoy = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
        .map(|c| c.contains("envoy"))
        .unwrap_or(false);
    assert!(!still_envoy, "envoy {pid} still running after drop");
}

#[test]
fn flaky_and_status_upstreams_answer_as_configured() {
    let nth = Upstream::start("nth", Ipv4Addr::new(127, 0, 0, 23), Behavior::FailNth(2));
    let first = Upstream::start(
        "first",
        Ipv4Addr::new(127, 0, 0, 23),
        Behavior::FailFirst(2),
    );
    let codes = |u: &Upstream| -> Vec<u16> {
        (0..3)
            .map(|_| HttpRequest::get("/").send(u.addr()).unwrap().status)
            .collect()
    };
    assert_eq!(codes(&nth), vec![200, 503, 200]);
    assert_eq!(codes(&first), vec![503, 503, 200]);
    let teapot = Upstream::start("t", Ipv4Addr::new(127, 0, 0, 23), Behavior::Status(418));
    assert_eq!(
        HttpRequest::get("/").send(teapot.addr()).unwrap().status,
        418
    );
    assert_eq!(teapot.hits(), 1);
}
