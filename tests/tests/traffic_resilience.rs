//! Resilience through the whole translator (model -> sidecar -> real Envoy): Istio's
//! default retry policy on a host without a VirtualService (2 retries on
//! connect-failure, refused-stream, unavailable, cancelled, retriable-status-codes),
//! DestinationRule connectionPool -> circuit breakers overflowed (maxConnections,
//! http1MaxPendingRequests, maxRetries, http2MaxRequests), and outlierDetection
//! ejecting a failing endpoint.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, cluster, destination_rule, golden_addrs, golden_client_bootstrap,
    plain_workload, service, start_client,
};
use trellis_e2e::{Behavior, HttpRequest, Upstream, UpstreamEvent};
use trellis_model::Resource;

type Addrs = BTreeMap<String, SocketAddr>;

/// An address nothing listens on (bound a moment ago, then released): connections are refused.
fn dead_address(ip: Ipv4Addr) -> SocketAddr {
    let l = TcpListener::bind((ip, 0)).expect("bind");
    l.local_addr().expect("addr")
}

fn get(host: &str, path: &str) -> HttpRequest {
    HttpRequest::get(path).host(host)
}

// ---------------------------------------------------------------- default retries

const RETRY_UPSTREAMS: [&str; 4] = ["flaky", "broken", "alive", "dead"];

/// No VirtualService anywhere: every route carries Istio's default retry policy.
fn retry_scenario(addr: &Addrs) -> Vec<Resource> {
    vec![
        service("flaky", "flaky"),
        service("broken", "broken"),
        service("halfdead", "halfdead"),
        plain_workload("flaky-1", "flaky", addr["flaky"], &[]),
        plain_workload("broken-1", "broken", addr["broken"], &[]),
        plain_workload("alive", "halfdead", addr["alive"], &[]),
        plain_workload("dead", "halfdead", addr["dead"], &[]),
    ]
}

#[test]
fn golden_traffic_default_retries() {
    let yaml = golden_client_bootstrap(retry_scenario(&golden_addrs(&RETRY_UPSTREAMS, 91)));
    check_golden_bootstrap("traffic-default-retries", &yaml, &["web"]);
}

#[test]
fn default_retries_without_a_virtual_service() {
    let ip = Ipv4Addr::new(127, 0, 0, 91);
    let flaky = Upstream::start("flaky", ip, Behavior::FailFirst(2));
    let broken = Upstream::start("broken", ip, Behavior::FailFirst(3));
    let alive = Upstream::echo("alive", ip);
    let addrs = Addrs::from([
        ("flaky".into(), flaky.addr()),
        ("broken".into(), broken.addr()),
        ("alive".into(), alive.addr()),
        ("dead".into(), dead_address(ip)),
    ]);
    let client = start_client(
        &test_ca(),
        retry_scenario(&addrs),
        Ipv4Addr::new(127, 0, 0, 90),
    );
    let send = |host: &str| get(host, "/").send(client.listen).expect("request");

    // two 503s, then the second retry succeeds
    assert_eq!(send("flaky").status, 200);
    assert_eq!(flaky.hits(), 3);
    assert_eq!(
        client.envoy.stat(&format!(
            "cluster.{}.upstream_rq_retry",
            cluster("flaky", None)
        )),
        2
    );
    // three 503s: the first try and exactly 2 retries, then the client sees the 503
    assert_eq!(send("broken").status, 503);
    assert_eq!(broken.hits(), 3, "1 try + 2 retries");
    assert_eq!(send("broken").status, 200, "the 4th request succeeds");

    // connect-failure: half the endpoints refuse connections, every request still succeeds
    // (the retry goes to another host: previous_hosts predicate)
    for i in 0..20 {
        let r = send("halfdead");
        assert_eq!(r.status, 200, "request {i}: {}", r.body_text());
        assert_eq!(r.json()["server"], "alive");
    }
    let halfdead = cluster("halfdead", None);
    assert!(
        client
            .envoy
            .stat(&format!("cluster.{halfdead}.upstream_cx_connect_fail"))
            >= 1
    );
    assert!(
        client
            .envoy
            .stat(&format!("cluster.{halfdead}.upstream_rq_retry_success"))
            >= 1
    );
    assert_eq!(alive.hits(), 20);
}

// ---------------------------------------------------------------- circuit breakers

fn pool_scenario(addr: &Addrs) -> Vec<Resource> {
    vec![
        service("pool", "pool"),
        plain_workload("pool-1", "pool", addr["pool"], &[]),
        destination_rule(
            r#"
metadata: {name: pool, namespace: shop}
spec:
  host: pool
  trafficPolicy:
    connectionPool:
      tcp:
        maxConnections: 1
        connectTimeout: 2s
        tcpKeepalive: {probes: 3, time: 30s, interval: 5s}
        maxConnectionDuration: 1h
      http: {http1MaxPendingRequests: 1, maxRequestsPerConnection: 1, maxRetries: 1, idleTimeout: 1h}
"#,
        ),
    ]
}

#[test]
fn golden_traffic_circuit_breaker() {
    let yaml = golden_client_bootstrap(pool_scenario(&golden_addrs(&["pool"], 95)));
    check_golden_bootstrap("traffic-circuit-breaker", &yaml, &["web"]);
}

#[test]
fn connection_pool_limits_overflow_into_503_overloaded() {
    let ip = Ipv4Addr::new(127, 0, 0, 95);
    // slow enough that all requests are in flight together, even on a loaded machine
    let pool = Upstream::start("pool", ip, Behavior::Slow(Duration::from_secs(4)));
    let addrs = Addrs::from([("pool".into(), pool.addr())]);
    let client = start_client(
        &test_ca(),
        pool_scenario(&addrs),
        Ipv4Addr::new(127, 0, 0, 94),
    );
    let listen = client.listen;
    // 1 connection + 1 pending request: of 8 simultaneous requests at least 6 overflow
    let n = 8;
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|_| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                get("pool", "/")
                    .timeout(Duration::from_secs(30))
                    .send(listen)
                    .expect("request")
            })
        })
        .collect();
    let responses: Vec<_> = threads.into_iter().map(|t| t.join().unwrap()).collect();
    let overloaded = responses
        .iter()
        .filter(|r| r.status == 503 && r.header("x-envoy-overloaded") == Some("true"))
        .count();
    let ok = responses.iter().filter(|r| r.status == 200).count();
    assert_eq!(
        ok + overloaded,
        n,
        "only 200 or overloaded 503: {responses:?}"
    );
    assert!(ok >= 1, "the connection in use served its request");
    assert!(
        ok <= 2,
        "at most the active and the pending request are served, got {ok}"
    );
    let name = cluster("pool", None);
    assert_eq!(
        client
            .envoy
            .stat(&format!("cluster.{name}.upstream_rq_pending_overflow")),
        overloaded as u64
    );
    assert_eq!(
        client
            .envoy
            .stat(&format!("cluster.{name}.upstream_cx_total")),
        ok as u64,
        "never more than one connection at a time, one request per connection"
    );
}

// ---------------------------------------------------------------- outlier detection

const OUTLIER_UPSTREAMS: [&str; 3] = ["good-1", "good-2", "bad"];

fn outlier_scenario(addr: &Addrs) -> Vec<Resource> {
    let mut out = vec![
        service("outlier", "outlier"),
        destination_rule(
            r#"
metadata: {name: outlier, namespace: shop}
spec:
  host: outlier
  trafficPolicy:
    outlierDetection:
      consecutive5xxErrors: 3
      interval: 1s
      baseEjectionTime: 5m
      maxEjectionPercent: 100
"#,
        ),
    ];
    out.extend(
        OUTLIER_UPSTREAMS
            .iter()
            .map(|n| plain_workload(n, "outlier", addr[*n], &[])),
    );
    out
}

#[test]
fn golden_traffic_outlier_detection() {
    let yaml = golden_client_bootstrap(outlier_scenario(&golden_addrs(&OUTLIER_UPSTREAMS, 97)));
    check_golden_bootstrap("traffic-outlier-detection", &yaml, &["web"]);
}

#[test]
fn outlier_detection_ejects_the_failing_endpoint() {
    let ip = Ipv4Addr::new(127, 0, 0, 97);
    let good1 = Upstream::echo("good-1", ip);
    let good2 = Upstream::echo("good-2", ip);
    let bad = Upstream::start("bad", ip, Behavior::Status(503));
    let addrs = Addrs::from([
        ("good-1".into(), good1.addr()),
        ("good-2".into(), good2.addr()),
        ("bad".into(), bad.addr()),
    ]);
    let client = start_client(
        &test_ca(),
        outlier_scenario(&addrs),
        Ipv4Addr::new(127, 0, 0, 96),
    );
    let name = cluster("outlier", None);
    let ejected = || {
        client.envoy.stat(&format!(
            "cluster.{name}.outlier_detection.ejections_enforced_consecutive_5xx"
        ))
    };
    // send until Envoy ejects (bounded): 3 consecutive 503s from `bad` are enough
    let start = Instant::now();
    while ejected() == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30) && bad.hits() < 200,
            "no ejection after {} requests to bad",
            bad.hits()
        );
        get("outlier", "/").send(client.listen).expect("request");
    }
    assert!(bad.hits() >= 3);
    assert_eq!(
        client.envoy.stat(&format!(
            "cluster.{name}.outlier_detection.ejections_active"
        )),
        1
    );
    // the admin view marks exactly the bad endpoint
    let clusters = client.envoy.admin_get("/clusters");
    let flagged: Vec<&str> = clusters
        .lines()
        .filter(|l| {
            l.starts_with(&format!("{name}::")) && l.contains("health_flags::/failed_outlier_check")
        })
        .collect();
    assert_eq!(flagged.len(), 1, "{clusters}");
    assert!(flagged[0].contains(&bad.addr().to_string()), "{flagged:?}");
    // from now on every request goes to the healthy endpoints
    let bad_hits = bad.hits();
    let (g1, g2) = (good1.hits(), good2.hits());
    for _ in 0..40 {
        let r = get("outlier", "/").send(client.listen).expect("request");
        assert_eq!(r.status, 200);
        assert_ne!(r.json()["server"], "bad");
    }
    assert_eq!(bad.hits(), bad_hits, "the ejected endpoint got traffic");
    assert_eq!(good1.hits() + good2.hits() - g1 - g2, 40);
    assert!(
        good1.hits() > g1 && good2.hits() > g2,
        "both healthy endpoints serve"
    );
}

/// Only gateway errors (502, 503, 504) count, and the 5xx detector is off:
/// an endpoint answering 502 is ejected, one answering 500 is not.
#[test]
fn outlier_detection_on_gateway_errors_only() {
    gateway_errors_only(
        "consecutive5xxErrors: 0\n      consecutiveGatewayErrors: 2",
        Ipv4Addr::new(127, 0, 0, 98),
        Ipv4Addr::new(127, 0, 0, 95),
    );
}

/// The deprecated `consecutiveErrors`, as Istio maps it, behaves the same:
/// gateway errors only.
#[test]
fn deprecated_consecutive_errors_count_gateway_errors_only() {
    gateway_errors_only(
        "consecutiveErrors: 2",
        Ipv4Addr::new(127, 0, 0, 88),
        Ipv4Addr::new(127, 0, 0, 89),
    );
}

/// With the outlier detection `counting` (YAML fields), on upstreams at `ip`
/// and a client at `client_ip`: the 502 endpoint is ejected, the 500 one not.
fn gateway_errors_only(counting: &str, ip: Ipv4Addr, client_ip: Ipv4Addr) {
    let good = Upstream::echo("good", ip);
    let gateway_error = Upstream::start("gateway-error", ip, Behavior::Status(502));
    let server_error = Upstream::start("server-error", ip, Behavior::Status(500));
    let mut resources = vec![
        service("gw-errors", "gw-errors"),
        destination_rule(&format!(
            r#"
metadata: {{name: gw-errors, namespace: shop}}
spec:
  host: gw-errors
  trafficPolicy:
    # Round robin, so the 500 endpoint surely gets its share of the requests
    # (the default, least request, picks at random among idle endpoints).
    loadBalancer: {{simple: ROUND_ROBIN}}
    outlierDetection:
      {counting}
      interval: 1s
      baseEjectionTime: 5m
      maxEjectionPercent: 100
"#,
        )),
    ];
    for u in [&good, &gateway_error, &server_error] {
        resources.push(plain_workload(u.name(), "gw-errors", u.addr(), &[]));
    }
    let client = start_client(&test_ca(), resources, client_ip);
    let name = cluster("gw-errors", None);
    let stat = |s: &str| {
        client
            .envoy
            .stat(&format!("cluster.{name}.outlier_detection.{s}"))
    };
    let start = Instant::now();
    while stat("ejections_enforced_consecutive_gateway_failure") == 0 {
        assert!(
            start.elapsed() < Duration::from_secs(30) && gateway_error.hits() < 200,
            "no ejection after {} requests to the 502 endpoint",
            gateway_error.hits()
        );
        get("gw-errors", "/").send(client.listen).expect("request");
    }
    // Many 500s came in the meantime, and did not eject their endpoint.
    for _ in 0..30 {
        get("gw-errors", "/").send(client.listen).expect("request");
    }
    assert!(server_error.hits() >= 10, "{}", server_error.hits());
    assert_eq!(stat("ejections_enforced_consecutive_5xx"), 0);
    assert_eq!(stat("ejections_active"), 1, "only the 502 endpoint");
}

// ---------------------------------------------------------------- maxRetries, http2MaxRequests

const BUDGET_UPSTREAMS: [&str; 2] = ["budget", "maxreq"];

/// `budget`: at most 1 retry outstanding in the cluster (Istio's default retry policy
/// still applies: 2 attempts on 503). `maxreq`: at most 1 request outstanding
/// (`http2MaxRequests` is Envoy's `max_requests`, for HTTP/1.1 upstreams too).
fn budget_scenario(addr: &Addrs) -> Vec<Resource> {
    vec![
        service("budget", "budget"),
        plain_workload("budget-1", "budget", addr["budget"], &[]),
        destination_rule(
            r#"
metadata: {name: budget, namespace: shop}
spec:
  host: budget
  trafficPolicy:
    connectionPool:
      http: {maxRetries: 1}
"#,
        ),
        service("maxreq", "maxreq"),
        plain_workload("maxreq-1", "maxreq", addr["maxreq"], &[]),
        destination_rule(
            r#"
metadata: {name: maxreq, namespace: shop}
spec:
  host: maxreq
  trafficPolicy:
    connectionPool:
      http: {http2MaxRequests: 1}
"#,
        ),
    ]
}

#[test]
fn golden_traffic_retry_and_request_limits() {
    let yaml = golden_client_bootstrap(budget_scenario(&golden_addrs(&BUDGET_UPSTREAMS, 101)));
    check_golden_bootstrap("traffic-retry-and-request-limits", &yaml, &["web"]);
}

/// `n` requests at once (behind a barrier), each to its own path `/r<i>`.
fn concurrent(listen: SocketAddr, host: &'static str, n: usize) -> Vec<trellis_e2e::HttpResponse> {
    let barrier = Arc::new(Barrier::new(n));
    let threads: Vec<_> = (0..n)
        .map(|i| {
            let barrier = barrier.clone();
            std::thread::spawn(move || {
                barrier.wait();
                get(host, &format!("/r{i}"))
                    .timeout(Duration::from_secs(60))
                    .send(listen)
                    .expect("request")
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn max_retries_overflow_leaves_failures_unretried() {
    let ip = Ipv4Addr::new(127, 0, 0, 101);
    // every attempt fails slowly: retries stay outstanding long enough to overlap
    let budget = Upstream::start(
        "budget",
        ip,
        Behavior::SlowStatus(Duration::from_secs(3), 503),
    );
    let addrs = Addrs::from([
        ("budget".into(), budget.addr()),
        ("maxreq".into(), dead_address(ip)),
    ]);
    let client = start_client(
        &test_ca(),
        budget_scenario(&addrs),
        Ipv4Addr::new(127, 0, 0, 100),
    );
    let n = 6;
    let responses = concurrent(client.listen, "budget", n);
    for r in &responses {
        assert_eq!(r.status, 503, "{}", r.body_text());
        assert_eq!(
            r.header("x-upstream"),
            Some("budget"),
            "the upstream's own 503 reaches the client"
        );
    }
    // attempts per request, from the upstream's log; a retry is any attempt after the first
    let events = budget.events();
    let mut attempts: BTreeMap<String, u64> = BTreeMap::new();
    let (mut retries_now, mut retries_max) = (0u64, 0u64);
    let mut is_retry: BTreeMap<String, bool> = BTreeMap::new();
    for e in &events {
        match e {
            UpstreamEvent::Arrived(path) => {
                let count = attempts.entry(path.clone()).or_insert(0);
                *count += 1;
                let retry = *count > 1;
                is_retry.insert(path.clone(), retry);
                if retry {
                    retries_now += 1;
                    retries_max = retries_max.max(retries_now);
                }
            }
            UpstreamEvent::Answering(path) => {
                if is_retry.get(path) == Some(&true) {
                    retries_now -= 1;
                }
            }
        }
    }
    assert_eq!(attempts.len(), n, "every request reached the upstream");
    let name = cluster("budget", None);
    let stat = |s: &str| client.envoy.stat(&format!("cluster.{name}.{s}"));
    let (retried, overflowed, exhausted) = (
        stat("upstream_rq_retry"),
        stat("upstream_rq_retry_overflow"),
        stat("upstream_rq_retry_limit_exceeded"),
    );
    let report = format!(
        "attempts {attempts:?}; retry {retried}, retry_overflow {overflowed}, retry_limit_exceeded {exhausted}"
    );
    assert_eq!(
        budget.hits(),
        n as u64 + retried,
        "upstream attempts = requests + retries; {report}"
    );
    // with Envoy's default budget (3) the retries that overflowed here would have
    // run side by side; maxRetries: 1 keeps exactly one outstanding
    assert!(overflowed >= 1, "the retry budget overflowed; {report}");
    assert_eq!(retries_max, 1, "never two retries outstanding; {report}");
    // a request stops short of 1 + 2 attempts only because its retry overflowed
    let short = attempts.values().filter(|a| **a < 3).count() as u64;
    let full = attempts.values().filter(|a| **a == 3).count() as u64;
    assert_eq!(short, overflowed, "{report}");
    assert_eq!(full, exhausted, "{report}");
    assert!(
        attempts.values().any(|a| *a == 1),
        "some clients got the first attempt's failure, un-retried; {report}"
    );
}

#[test]
fn http2_max_requests_overflow_into_503_overloaded() {
    let ip = Ipv4Addr::new(127, 0, 0, 103);
    let maxreq = Upstream::start("maxreq", ip, Behavior::Slow(Duration::from_secs(3)));
    let addrs = Addrs::from([
        ("budget".into(), dead_address(ip)),
        ("maxreq".into(), maxreq.addr()),
    ]);
    let client = start_client(
        &test_ca(),
        budget_scenario(&addrs),
        Ipv4Addr::new(127, 0, 0, 102),
    );
    let n = 6;
    let responses = concurrent(client.listen, "maxreq", n);
    let ok = responses.iter().filter(|r| r.status == 200).count();
    let overloaded = responses
        .iter()
        .filter(|r| r.status == 503 && r.header("x-envoy-overloaded") == Some("true"))
        .count();
    assert_eq!(
        ok + overloaded,
        n,
        "only 200 or overloaded 503: {responses:?}"
    );
    assert!(
        ok >= 1 && overloaded >= 1,
        "{ok} served, {overloaded} overloaded"
    );
    assert_eq!(
        maxreq.hits(),
        ok as u64,
        "overflowed requests never reached the upstream"
    );
    assert_eq!(maxreq.max_in_flight(), 1, "never two requests outstanding");
    let name = cluster("maxreq", None);
    let stat = |s: &str| client.envoy.stat(&format!("cluster.{name}.{s}"));
    let stats = client.envoy.admin_get("/stats?filter=overflow");
    assert_eq!(
        stat("upstream_rq_active_overflow"),
        overloaded as u64,
        "the max_requests breaker tripped once per overloaded response: {stats}"
    );
    assert_eq!(
        stat("upstream_rq_pending_overflow"),
        0,
        "not the pending-request limit (unset): {stats}"
    );
}
