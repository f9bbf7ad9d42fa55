//! DestinationRule load balancing and auto mTLS through the whole translator
//! (model -> sidecars -> real Envoy).
//!
//! Load balancing: ROUND_ROBIN (strictly cyclic), RANDOM (spread, not cyclic),
//! LEAST_REQUEST (a busy endpoint is avoided), consistentHash on a header (same
//! header value -> same endpoint), on a cookie Envoy sets (a client sticks from its
//! first response) and on a query parameter. On a TCP port, consistentHash on the
//! source IP (a client's tunnels stick to one endpoint) and `tcp.idleTimeout` (an idle
//! tunnel is closed).
//! Auto mTLS: the client uses mTLS to an endpoint with a sidecar (a STRICT server
//! sidecar, so plaintext would be refused) and plaintext to one without; a
//! DestinationRule with `tls.mode: DISABLE` or `ISTIO_MUTUAL` overrides that.
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, cluster, destination_rule, golden_addrs, golden_client_bootstrap,
    golden_sidecar_bootstrap, mesh_settings, model, plain_workload, service, start_client,
    start_sidecar, tcp_service, workload,
};
use trellis_e2e::{Behavior, HttpRequest, Upstream, connect_and_get, free_ports_on, open_tunnel};
use trellis_model::{MtlsMode, Resource};

type Addrs = BTreeMap<String, SocketAddr>;

fn get(host: &str) -> HttpRequest {
    HttpRequest::get("/").host(host)
}

// ---------------------------------------------------------------- load balancing

const LB_UPSTREAMS: [&str; 27] = [
    "rr-1", "rr-2", "rr-3", "random-1", "random-2", "random-3", "hash-1", "hash-2", "hash-3",
    "lr-slow", "lr-1", "lr-2", "lr-3", "cookie-1", "cookie-2", "cookie-3", "query-1", "query-2",
    "query-3", "maglev-1", "maglev-2", "maglev-3", "ring-1", "ring-2", "ring-3", "warm-1",
    "warm-2",
];

fn lb_dr(name: &str, lb: &str) -> Resource {
    destination_rule(&format!(
        "metadata: {{name: {name}, namespace: shop}}\nspec: {{host: {name}, trafficPolicy: {{loadBalancer: {lb}}}}}\n"
    ))
}

fn lb_scenario(addr: &Addrs) -> Vec<Resource> {
    let mut out = vec![
        service("rr", "rr"),
        service("random", "random"),
        service("hash", "hash"),
        service("lr", "lr"),
        service("cookie", "cookie"),
        service("query", "query"),
        lb_dr(
            "cookie",
            "{consistentHash: {httpCookie: {name: sticky, path: /, ttl: 60s}}}",
        ),
        lb_dr("query", "{consistentHash: {httpQueryParameterName: user}}"),
        lb_dr("rr", "{simple: ROUND_ROBIN}"),
        lb_dr("random", "{simple: RANDOM}"),
        lb_dr("hash", "{consistentHash: {httpHeaderName: x-user}}"),
        lb_dr("lr", "{simple: LEAST_REQUEST}"),
        service("maglev", "maglev"),
        service("ring", "ring"),
        lb_dr(
            "maglev",
            "{consistentHash: {httpHeaderName: x-user, maglev: {tableSize: 1031}}}",
        ),
        lb_dr(
            "ring",
            "{consistentHash: {httpHeaderName: x-user, ringHash: {minimumRingSize: 2048}}}",
        ),
        service("warm", "warm"),
        lb_dr("warm", "{simple: ROUND_ROBIN, warmupDurationSecs: 90s}"),
    ];
    for name in LB_UPSTREAMS {
        let app = name.split('-').next().unwrap();
        out.push(plain_workload(name, app, addr[name], &[]));
    }
    out
}

/// The cluster named `name` in an Envoy config dump.
fn cluster_in_dump(dump: &serde_json::Value, name: &str) -> serde_json::Value {
    fn find(v: &serde_json::Value, name: &str) -> Option<serde_json::Value> {
        match v {
            serde_json::Value::Object(map) => {
                if map.get("name").and_then(|n| n.as_str()) == Some(name)
                    && map.contains_key("connect_timeout")
                {
                    return Some(v.clone());
                }
                map.values().find_map(|v| find(v, name))
            }
            serde_json::Value::Array(items) => items.iter().find_map(|v| find(v, name)),
            _ => None,
        }
    }
    find(dump, name).unwrap_or_else(|| panic!("no cluster {name} in the config dump"))
}

#[test]
fn golden_traffic_load_balancing() {
    let yaml = golden_client_bootstrap(lb_scenario(&golden_addrs(&LB_UPSTREAMS, 111)));
    check_golden_bootstrap("traffic-load-balancing", &yaml, &["web"]);
}

#[test]
fn load_balancer_policies_on_real_envoy() {
    let ip = Ipv4Addr::new(127, 0, 0, 111);
    let ups: BTreeMap<&str, Upstream> = LB_UPSTREAMS
        .iter()
        .map(|n| {
            let behavior = if *n == "lr-slow" {
                Behavior::Slow(Duration::from_secs(25))
            } else {
                Behavior::Echo
            };
            (*n, Upstream::start(n, ip, behavior))
        })
        .collect();
    let addrs = ups.iter().map(|(n, u)| (n.to_string(), u.addr())).collect();
    let client = start_client(
        &test_ca(),
        lb_scenario(&addrs),
        Ipv4Addr::new(127, 0, 0, 110),
    );
    let server = |req: HttpRequest| {
        let r = req.send(client.listen).expect("request");
        assert_eq!(r.status, 200, "{}", r.body_text());
        r.json()["server"].as_str().unwrap().to_string()
    };

    // ROUND_ROBIN: sequential requests cycle through the 3 endpoints in a fixed order
    let seq: Vec<String> = (0..30).map(|_| server(get("rr"))).collect();
    let first: BTreeSet<&String> = seq[..3].iter().collect();
    assert_eq!(first.len(), 3, "{seq:?}");
    assert!(
        (3..seq.len()).all(|i| seq[i] == seq[i - 3]),
        "not cyclic: {seq:?}"
    );

    // RANDOM: 300 requests; each endpoint expects 100 (sd 8.2), accept >= 50 (6 sd);
    // and the order is not round robin's cycle (a random order of 300 is cyclic with
    // probability 3 * 2 / 3^300)
    let seq: Vec<String> = (0..300).map(|_| server(get("random"))).collect();
    for n in ["random-1", "random-2", "random-3"] {
        let count = seq.iter().filter(|s| *s == n).count();
        assert!(count >= 50, "{n} answered {count} of 300");
    }
    assert!(
        (3..seq.len()).any(|i| seq[i] != seq[i - 3]),
        "cyclic: {seq:?}"
    );

    // consistentHash on x-user (the default ring, a sized ring, Maglev): the
    // same user always lands on the same endpoint; 20 users spread over more
    // than one endpoint (all on one: probability 3^-19)
    for host in ["hash", "ring", "maglev"] {
        let mut placed = BTreeSet::new();
        for user in 0..20 {
            let user = format!("user-{user}");
            let first = server(get(host).header("x-user", &user));
            for _ in 0..4 {
                assert_eq!(
                    server(get(host).header("x-user", &user)),
                    first,
                    "{host}: {user}"
                );
            }
            placed.insert(first);
        }
        assert!(placed.len() >= 2, "{host}: every user on {placed:?}");
    }
    // ...and Envoy runs the clusters with the algorithm and size each rule names
    let dump = client.envoy.config_dump();
    let ring = cluster_in_dump(&dump, "outbound|80||ring.shop.svc.cluster.local");
    assert_eq!(ring["lb_policy"], "RING_HASH", "{ring}");
    assert_eq!(
        ring["ring_hash_lb_config"]["minimum_ring_size"], "2048",
        "{ring}"
    );
    let maglev = cluster_in_dump(&dump, "outbound|80||maglev.shop.svc.cluster.local");
    assert_eq!(maglev["lb_policy"], "MAGLEV", "{maglev}");
    assert_eq!(maglev["maglev_lb_config"]["table_size"], "1031", "{maglev}");
    // warmupDurationSecs: round robin with Envoy's slow start over that window,
    // which still serves both endpoints
    let warm = cluster_in_dump(&dump, "outbound|80||warm.shop.svc.cluster.local");
    assert_eq!(
        warm["round_robin_lb_config"]["slow_start_config"]["slow_start_window"], "90s",
        "{warm}"
    );
    let served: BTreeSet<String> = (0..20).map(|_| server(get("warm"))).collect();
    assert_eq!(served.len(), 2, "{served:?}");

    // consistentHash on a cookie: a client without it gets one from Envoy on its
    // first response and keeps its endpoint while it sends it back
    let mut placed = BTreeSet::new();
    for _ in 0..10 {
        let r = get("cookie").send(client.listen).expect("request");
        assert_eq!(r.status, 200, "{}", r.body_text());
        let first = r.json()["server"].as_str().unwrap().to_string();
        let set = r
            .header("set-cookie")
            .expect("Envoy sets the cookie")
            .to_string();
        assert!(set.starts_with("sticky="), "{set}");
        let cookie = set.split(';').next().unwrap().to_string();
        for _ in 0..4 {
            assert_eq!(
                server(get("cookie").header("cookie", &cookie)),
                first,
                "{cookie}"
            );
        }
        placed.insert(first);
    }
    assert!(placed.len() >= 2, "every cookie on {placed:?}");

    // consistentHash on a query parameter
    let mut placed = BTreeSet::new();
    for user in 0..20 {
        let path = format!("/?user={user}");
        let first = server(HttpRequest::get(&path).host("query"));
        for _ in 0..4 {
            assert_eq!(
                server(HttpRequest::get(&path).host("query")),
                first,
                "{path}"
            );
        }
        placed.insert(first);
    }
    assert!(placed.len() >= 2, "every user on {placed:?}");

    // LEAST_REQUEST: requests are sent one after another while the slow endpoint keeps
    // every request it gets open (25 s). Envoy compares the active requests of 2
    // random endpoints, so the busy one is chosen only when both picks are it:
    // about 1/16 of 80 = 5 (sd 2.2). Round robin or random would give it 20.
    // Accept at most 14 (4 sd above 5).
    let slow = &ups["lr-slow"];
    let lr_hits = || -> u64 {
        ["lr-slow", "lr-1", "lr-2", "lr-3"]
            .iter()
            .map(|n| ups[n].hits())
            .sum()
    };
    let listen = client.listen;
    let mut threads = Vec::new();
    for i in 0..80u64 {
        threads.push(std::thread::spawn(move || {
            get("lr")
                .timeout(Duration::from_secs(60))
                .send(listen)
                .expect("request")
        }));
        // bounded wait until the request reached an endpoint, so the next one sees it
        let start = Instant::now();
        while lr_hits() < i + 1 {
            assert!(
                start.elapsed() < Duration::from_secs(20),
                "request {i} did not arrive"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    let to_slow = slow.hits();
    assert!(to_slow <= 14, "the busy endpoint got {to_slow} of 80");
    for t in threads {
        assert_eq!(t.join().unwrap().status, 200);
    }
}

// ---------------------------------------------------------------- auto mTLS

/// `cart-v1` has a sidecar (STRICT mesh), `cart-legacy` has none. Three services select
/// both: `cart` (auto mTLS), `cart-plain` (DR DISABLE), `cart-mtls` (DR ISTIO_MUTUAL).
fn mtls_scenario(cart_v1: SocketAddr, app_port: u16, legacy: SocketAddr) -> Vec<Resource> {
    let mut v1 = workload("cart-v1", "cart", cart_v1, &[], true);
    v1.app_ports = BTreeMap::from([(cart_v1.port(), app_port)]);
    vec![
        mesh_settings(MtlsMode::Strict),
        service("cart", "cart"),
        service("cart-plain", "cart"),
        service("cart-mtls", "cart"),
        Resource::Workload(Box::new(v1)),
        plain_workload("cart-legacy", "cart", legacy, &[]),
        destination_rule(
            "metadata: {name: cart-plain, namespace: shop}\nspec: {host: cart-plain, trafficPolicy: {tls: {mode: DISABLE}}}\n",
        ),
        destination_rule(
            "metadata: {name: cart-mtls, namespace: shop}\nspec: {host: cart-mtls, trafficPolicy: {tls: {mode: ISTIO_MUTUAL}, connectionPool: {tcp: {connectTimeout: 1s}}}}\n",
        ),
    ]
}

fn golden_mtls_scenario() -> Vec<Resource> {
    mtls_scenario(
        SocketAddr::from(([127, 0, 0, 121], 9000)),
        9100,
        SocketAddr::from(([127, 0, 0, 122], 9001)),
    )
}

#[test]
fn golden_traffic_auto_mtls() {
    let web = golden_client_bootstrap(golden_mtls_scenario());
    check_golden_bootstrap("traffic-auto-mtls-web", &web, &["web"]);
    let cart = golden_sidecar_bootstrap(golden_mtls_scenario(), "cart-v1", "cart");
    check_golden_bootstrap("traffic-auto-mtls-cart", &cart, &["cart"]);
}

#[test]
fn auto_mtls_to_sidecars_plaintext_to_the_rest_unless_a_destination_rule_says_otherwise() {
    let ca = test_ca();
    let cart_ip = Ipv4Addr::new(127, 0, 0, 121);
    let app = Upstream::echo("cart-app", Ipv4Addr::LOCALHOST);
    let legacy = Upstream::echo("legacy", Ipv4Addr::new(127, 0, 0, 122));
    let cart_ports = free_ports_on(cart_ip, 2);
    let cart_addr = SocketAddr::from((cart_ip, cart_ports[0]));
    let resources = || mtls_scenario(cart_addr, app.port(), legacy.addr());

    // the server sidecar of cart-v1, translated from the same model
    let model = model(resources(), Ipv4Addr::new(127, 0, 0, 120));
    let (cart, _cart_id) = start_sidecar(&ca, &model, "cart-v1", "cart", cart_ports[1]);
    let client = start_client(&ca, resources(), Ipv4Addr::new(127, 0, 0, 120));
    let answers = |host: &str, n: usize| -> BTreeMap<String, usize> {
        let mut seen = BTreeMap::new();
        for _ in 0..n {
            let r = get(host).send(client.listen).expect("request");
            assert_eq!(r.status, 200, "{host}: {}", r.body_text());
            *seen
                .entry(r.json()["server"].as_str().unwrap().to_string())
                .or_insert(0) += 1;
        }
        seen
    };

    // auto mTLS: both endpoints serve; the sidecar one only accepts mTLS (STRICT)
    let seen = answers("cart", 20);
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["cart-app", "legacy"],
        "{seen:?}"
    );
    let name = cluster("cart", None);
    assert!(client.envoy.stat(&format!("cluster.{name}.ssl.handshake")) >= 1);
    assert_eq!(
        client
            .envoy
            .stat(&format!("cluster.{name}.ssl.fail_verify_san")),
        0
    );
    // the server sidecar saw mTLS connections with a client certificate
    let inbound = format!(
        "listener.{}_{}.ssl.handshake",
        cart_addr.ip(),
        cart_addr.port()
    );
    assert!(
        cart.stat(&inbound) >= 1,
        "{:?}",
        cart.stats()
            .keys()
            .filter(|k| k.contains("ssl.handshake"))
            .collect::<Vec<_>>()
    );

    // DISABLE: plaintext to both. Legacy answers; the STRICT sidecar closes plaintext
    // connections (a reset after connecting, which Istio's default retries do not cover: 503)
    // (30 requests: least request, the default, picks at random among idle
    // endpoints, so all on one has odds of 2^-29)
    let mut seen = BTreeMap::new();
    for _ in 0..30 {
        let r = get("cart-plain").send(client.listen).expect("request");
        let who = match r.status {
            200 => r.json()["server"].as_str().unwrap().to_string(),
            503 => "reset".to_string(),
            other => panic!("cart-plain: {other} {}", r.body_text()),
        };
        *seen.entry(who).or_insert(0) += 1;
    }
    assert_eq!(
        seen.keys().collect::<Vec<_>>(),
        ["legacy", "reset"],
        "{seen:?}"
    );
    assert_eq!(
        client.envoy.stat(&format!(
            "cluster.{}.ssl.handshake",
            cluster("cart-plain", None)
        )),
        0
    );

    // ISTIO_MUTUAL: mTLS to both; the plaintext-only legacy endpoint cannot serve it
    let seen = answers("cart-mtls", 6);
    assert_eq!(seen.keys().collect::<Vec<_>>(), ["cart-app"], "{seen:?}");
}

/// A TCP service with two endpoints, reached by `CONNECT` through the client
/// sidecar: its DestinationRule's `useSourceIp` keeps a client on one endpoint
/// and its `tcp.idleTimeout` closes an idle tunnel. Without the rule, tunnels
/// spread over both endpoints (least request, the default, picks at random
/// among idle ones: 24 tunnels all on one has odds of 2^-23) and an idle one
/// stays open. Its `tcp.maxConnectionDuration`
/// closes a busy tunnel.
#[test]
fn tcp_source_ip_hash_and_idle_timeout_on_real_envoy() {
    use std::io::Read;
    let ca = test_ca();
    let a = Upstream::echo("a", Ipv4Addr::LOCALHOST);
    let b = Upstream::echo("b", Ipv4Addr::LOCALHOST);
    let client_ip = Ipv4Addr::new(127, 0, 0, 143);
    let rule = "metadata: {name: ledger, namespace: shop}\nspec:\n  host: ledger\n  trafficPolicy:\n    connectionPool: {tcp: {idleTimeout: 1s, maxConnectionDuration: 2s}}\n    loadBalancer: {consistentHash: {useSourceIp: true}}\n";
    for with_rule in [true, false] {
        let mut resources = vec![
            tcp_service("ledger", "ledger", 7000),
            plain_workload("ledger-a", "ledger", a.addr(), &[]),
            plain_workload("ledger-b", "ledger", b.addr(), &[]),
        ];
        if with_rule {
            resources.push(destination_rule(rule));
        }
        let client = start_client(&ca, resources, client_ip);
        let servers: BTreeSet<String> = (0..24)
            .map(|_| {
                let (status, response) = connect_and_get(client.listen, "ledger:7000");
                let response = response.unwrap_or_default();
                assert_eq!(status, 200, "{}", client.envoy.log());
                let body = response.split("\r\n\r\n").nth(1).unwrap_or_default();
                let v: serde_json::Value =
                    serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
                v["server"].as_str().unwrap().to_string()
            })
            .collect();
        assert_eq!(servers.len(), if with_rule { 1 } else { 2 }, "{servers:?}");

        let (status, mut tunnel) = open_tunnel(client.listen, "ledger:7000");
        assert_eq!(status, 200);
        std::thread::sleep(Duration::from_millis(1500));
        // With the rule, the close comes once Envoy's idle timer fires, which a
        // loaded 2-core machine may run late: wait for it up to 5 s. Without
        // it, the tunnel must still be open 2 s in.
        let wait = if with_rule { 5000 } else { 500 };
        tunnel
            .set_read_timeout(Some(Duration::from_millis(wait)))
            .unwrap();
        let read = tunnel.read(&mut [0u8; 16]);
        if with_rule {
            assert!(
                matches!(read, Ok(0)),
                "an idle tunnel outlived 1s: {read:?}"
            );
        } else {
            assert!(read.is_err(), "an idle tunnel was closed: {read:?}");
        }

        // A busy tunnel (a request header trickling in a byte every 300 ms, so
        // never idle for 1 s) is closed once it reaches maxConnectionDuration;
        // without the rule it stays open through the 6 s this waits.
        let (status, mut tunnel) = open_tunnel(client.listen, "ledger:7000");
        assert_eq!(status, 200);
        tunnel
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let started = Instant::now();
        let mut trickle = b"GET / HTTP/1.1\r\nx-trickle: ".to_vec();
        let closed = loop {
            if std::io::Write::write_all(&mut tunnel, &trickle).is_err() {
                break true;
            }
            trickle = b"a".to_vec();
            match tunnel.read(&mut [0u8; 1024]) {
                Ok(0) => break true,
                Err(e)
                    if e.kind() != std::io::ErrorKind::WouldBlock
                        && e.kind() != std::io::ErrorKind::TimedOut =>
                {
                    break true;
                }
                _ => {}
            }
            if started.elapsed() > Duration::from_secs(6) {
                break false;
            }
            std::thread::sleep(Duration::from_millis(300));
        };
        assert_eq!(closed, with_rule, "a busy tunnel was closed");
    }
}
