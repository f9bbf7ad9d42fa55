//! VirtualService features through the whole translator (model -> sidecar -> real Envoy)
//! that `routing.rs` (route builder only) does not cover: withoutHeaders, Istio's `{}`
//! (a header or query parameter present, any path), authority and
//! regex queryParams and scheme matches, header set/add/remove on request and response, CORS
//! preflight, mirror with a percentage, several mirrors, direct responses (text
//! and base64 bytes), uriRegexRewrite, fault delay and abort with a percentage, an
//! abort with a gRPC status, CORS unmatchedPreflights IGNORE, a match's statPrefix, and
//! matches that name their clients (sourceLabels, sourceNamespace, gateways); `tcp`
//! routes, and `tls` routes that take connections to a TLS port by SNI.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, destination_rule, golden_addrs, golden_client_bootstrap,
    plain_workload, routes_with_subsets, service, start_client, start_client_with_tcp, tcp_service,
    tls_service, virtual_service,
};
use trellis_e2e::{HttpRequest, HttpResponse, Upstream};
use trellis_model::Resource;

const UPSTREAMS: [&str; 3] = ["a", "b", "m"];

/// Service `routes` (a = v1, b = v2, subsets from a DestinationRule) with one
/// VirtualService exercising every feature; service `mirror` (m) receives copies.
fn scenario(addr: &BTreeMap<String, SocketAddr>) -> Vec<Resource> {
    let mut resources = routes_with_subsets(addr["a"], addr["b"]);
    resources.extend([
        service("mirror", "mirror"),
        plain_workload("m", "mirror", addr["m"], &[]),
        virtual_service(
            r#"
metadata: {name: routes, namespace: shop}
spec:
  hosts: [routes]
  http:
  - name: without-headers
    match: [{uri: {prefix: /guarded}, withoutHeaders: {x-debug: {exact: "1"}}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: header-present
    match: [{uri: {prefix: /present}, headers: {x-canary: {}}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: header-absent
    match: [{uri: {prefix: /absent}, withoutHeaders: {x-canary: {}}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: query-present
    match: [{uri: {}, queryParams: {debug: {}}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: authority
    match: [{uri: {prefix: /authority}, authority: {prefix: routes.shop}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: query-regex
    match: [{uri: {prefix: /query}, queryParams: {id: {regex: "[0-9]+"}}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: headers
    match: [{uri: {prefix: /headers}}]
    headers:
      request: {set: {x-set: by-route}, add: {x-add: by-route}, remove: [x-drop]}
      response: {set: {x-upstream: rewritten}, add: {x-resp-add: by-route}, remove: [content-type]}
    route:
    - destination: {host: routes, subset: v1}
      headers:
        request: {set: {x-destination: v1}}
        response: {add: {x-destination: v1}}
  - name: cors
    match: [{uri: {prefix: /cors}}]
    corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}, {}]
      allowMethods: [GET, POST]
      allowHeaders: [x-token]
      exposeHeaders: [x-upstream]
      maxAge: 60s
      allowCredentials: true
    route: [{destination: {host: routes, subset: v1}}]
  - name: cors-ignore
    match: [{uri: {prefix: /preflight-ignored}}]
    corsPolicy:
      allowOrigins: [{exact: "https://shop.example"}]
      allowMethods: [GET]
      unmatchedPreflights: IGNORE
    route: [{destination: {host: routes, subset: v1}}]
  - name: grpc-abort
    match: [{uri: {prefix: /grpc-abort}}]
    fault: {abort: {grpcStatus: UNAVAILABLE}}
    route: [{destination: {host: routes, subset: v1}}]
  - name: stats
    match: [{uri: {prefix: /stats-route}, statPrefix: shop_stats}]
    route: [{destination: {host: routes, subset: v1}}]
  - name: mirror-half
    match: [{uri: {prefix: /mirror-half}}]
    mirror: {host: mirror}
    mirrorPercentage: {value: 50}
    route: [{destination: {host: routes, subset: v1}}]
  - name: mirrors
    match: [{uri: {prefix: /mirror-two}}]
    mirrors:
    - destination: {host: mirror}
    - {destination: {host: routes, subset: v2}, percentage: {value: 100}}
    route: [{destination: {host: routes, subset: v1}}]
  - name: maintenance
    match: [{uri: {prefix: /maintenance}}]
    directResponse: {status: 503, body: {string: "down for maintenance"}}
  - name: teapot
    match: [{uri: {prefix: /teapot}}]
    directResponse: {status: 418, body: {bytes: "aGVsbG8="}}
  - name: empty
    match: [{uri: {prefix: /empty}}]
    directResponse: {status: 204}
  - name: regex-rewrite
    match: [{uri: {prefix: /v1/}}]
    rewrite: {uriRegexRewrite: {match: "^/v1/([^/]+)/(.*)$", rewrite: "/\\2/\\1"}}
    route: [{destination: {host: routes, subset: v2}}]
  - name: old-style
    match: [{uri: {prefix: /old-style}}]
    mirror: {host: mirror}
    mirrorPercent: 100
    corsPolicy: {allowOrigin: ["https://old.example"], allowMethods: [GET]}
    fault: {delay: {fixedDelay: 1ms, percent: 100}}
    route: [{destination: {host: routes, subset: v1}}]
  - name: snake-case-none
    match: [{uri: {prefix: /snake-case-none}}]
    mirror: {host: mirror}
    mirror_percent: 0
    route: [{destination: {host: routes, subset: v1}}]
  - name: mirror-all
    match: [{uri: {prefix: /mirror-all}}]
    mirror: {host: mirror}
    route: [{destination: {host: routes, subset: v1}}]
  - name: abort-half
    match: [{uri: {prefix: /abort-half}}]
    fault: {abort: {httpStatus: 418, percentage: {value: 50}}}
    route: [{destination: {host: routes, subset: v1}}]
  - name: delay-half
    match: [{uri: {prefix: /delay-half}}]
    fault: {delay: {fixedDelay: 5ms, percentage: {value: 50}}}
    route: [{destination: {host: routes, subset: v1}}]
  - name: scheme-https
    match: [{uri: {prefix: /scheme}, scheme: {exact: https}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: scheme-http
    match: [{uri: {prefix: /plain}, scheme: {exact: http}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: for-cart-clients
    match: [{uri: {prefix: /source}, sourceLabels: {app: cart}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: for-web-clients
    match: [{uri: {prefix: /mine}, sourceLabels: {app: web}}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: for-namespace-other
    match: [{uri: {prefix: /source}, sourceNamespace: other}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: for-a-gateway
    match: [{uri: {prefix: /source}, gateways: [shop-gw]}]
    route: [{destination: {host: routes, subset: v2}}]
  - name: default
    route: [{destination: {host: routes, subset: v1}}]
"#,
        ),
    ]);
    resources
}

#[test]
fn golden_traffic_routing() {
    let yaml = golden_client_bootstrap(scenario(&golden_addrs(&UPSTREAMS, 71)));
    check_golden_bootstrap("traffic-routing", &yaml, &["web"]);
}

/// Waits (bounded) until `count()` has not changed for 500 ms, and returns it.
fn settled(count: impl Fn() -> u64) -> u64 {
    let start = Instant::now();
    let mut last = count();
    let mut since = Instant::now();
    while start.elapsed() < Duration::from_secs(30) {
        std::thread::sleep(Duration::from_millis(100));
        let now = count();
        if now != last {
            last = now;
            since = Instant::now();
        } else if since.elapsed() >= Duration::from_millis(500) {
            break;
        }
    }
    last
}

#[test]
fn routing_features_through_the_translator_on_real_envoy() {
    let ip = Ipv4Addr::new(127, 0, 0, 71);
    let ups: BTreeMap<String, Upstream> = UPSTREAMS
        .iter()
        .map(|n| (n.to_string(), Upstream::echo(n, ip)))
        .collect();
    let addrs = ups.iter().map(|(n, u)| (n.clone(), u.addr())).collect();
    let client = start_client(&test_ca(), scenario(&addrs), Ipv4Addr::new(127, 0, 0, 70));
    let send = |req: HttpRequest| -> HttpResponse {
        let req = if req.headers.iter().any(|(k, _)| k == "host") {
            req
        } else {
            req.host("routes")
        };
        req.send(client.listen).expect("request")
    };
    let server = |req: HttpRequest| {
        let r = send(req);
        assert_eq!(r.status, 200, "{}", r.body_text());
        r.json()["server"].as_str().unwrap().to_string()
    };
    let get = HttpRequest::get;

    // withoutHeaders: any x-debug but "1" (or none) goes to v2
    assert_eq!(server(get("/guarded")), "b");
    assert_eq!(server(get("/guarded").header("x-debug", "2")), "b");
    assert_eq!(server(get("/guarded").header("x-debug", "1")), "a");
    // `{}`: present (whatever the value, empty too), or absent in withoutHeaders
    assert_eq!(server(get("/present").header("x-canary", "")), "b");
    assert_eq!(server(get("/present").header("x-canary", "yes")), "b");
    assert_eq!(server(get("/present")), "a");
    assert_eq!(server(get("/absent")), "b");
    assert_eq!(server(get("/absent").header("x-canary", "yes")), "a");
    // a query parameter present, on any path (`uri: {}` matches every path)
    assert_eq!(server(get("/anywhere?debug")), "b");
    assert_eq!(server(get("/anywhere?x=1&debug=0")), "b");
    assert_eq!(server(get("/anywhere?debugx=1")), "a");
    // authority prefix
    assert_eq!(server(get("/authority").host("routes.shop")), "b");
    assert_eq!(server(get("/authority").host("routes")), "a");
    // queryParams regex (the whole value must match)
    assert_eq!(server(get("/query?id=42")), "b");
    assert_eq!(server(get("/query?id=4x2")), "a");
    assert_eq!(server(get("/query")), "a");
    // scheme: the app's plain request arrives as http
    assert_eq!(server(get("/plain")), "b");
    assert_eq!(server(get("/scheme")), "a");
    // client matches: the client (app: web in shop, a sidecar) gets only its own
    assert_eq!(server(get("/mine")), "b", "sourceLabels app: web");
    assert_eq!(
        server(get("/source")),
        "a",
        "sourceLabels app: cart, sourceNamespace other and gateway shop-gw do not apply"
    );

    // header operations on the request and the response (rule and destination level)
    let r = send(
        get("/headers")
            .header("x-set", "client")
            .header("x-add", "client")
            .header("x-drop", "1"),
    );
    assert_eq!(r.status, 200);
    let seen = &r.json()["headers"];
    assert_eq!(seen["x-set"], "by-route", "set overwrites: {seen}");
    assert_eq!(seen["x-add"], "client,by-route", "add appends: {seen}");
    assert!(seen["x-drop"].is_null(), "remove: {seen}");
    assert_eq!(seen["x-destination"], "v1", "destination set: {seen}");
    assert_eq!(r.header("x-upstream"), Some("rewritten"), "{:?}", r.headers);
    assert_eq!(r.header("x-resp-add"), Some("by-route"), "{:?}", r.headers);
    assert_eq!(r.header("x-destination"), Some("v1"), "{:?}", r.headers);
    assert_eq!(r.header("content-type"), None, "{:?}", r.headers);

    // CORS: an allowed origin's preflight is answered by Envoy, never reaching the app
    let hits = |n: &str| ups[n].hits();
    let before = hits("a");
    let r = send(
        HttpRequest::new("OPTIONS", "/cors")
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "POST")
            .header("access-control-request-headers", "x-token"),
    );
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(r.header("access-control-allow-methods"), Some("GET,POST"));
    assert_eq!(r.header("access-control-allow-headers"), Some("x-token"));
    assert_eq!(r.header("access-control-max-age"), Some("60"));
    assert_eq!(r.header("access-control-allow-credentials"), Some("true"));
    assert_eq!(hits("a"), before, "the preflight reached the upstream");
    // the actual request gets the CORS response headers
    let r = send(get("/cors").header("origin", "https://shop.example"));
    assert_eq!(r.status, 200);
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(
        r.header("access-control-expose-headers"),
        Some("x-upstream")
    );
    // another origin (`{}` allows none, as in Istio): no CORS answer; the
    // preflight is forwarded to the app
    let before = hits("a");
    let r = send(
        HttpRequest::new("OPTIONS", "/cors")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "POST"),
    );
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(
        hits("a"),
        before + 1,
        "the unmatched preflight was forwarded"
    );

    // unmatchedPreflights IGNORE: Envoy answers an unmatched preflight itself,
    // without CORS headers, and the app never sees it
    let before = hits("a");
    let r = send(
        HttpRequest::new("OPTIONS", "/preflight-ignored")
            .header("origin", "https://evil.example")
            .header("access-control-request-method", "GET"),
    );
    assert_eq!(r.status, 200, "{:?}", r.headers);
    assert_eq!(r.header("access-control-allow-origin"), None);
    assert_eq!(
        hits("a"),
        before,
        "an ignored preflight reached the upstream"
    );
    // ...and an allowed origin's preflight is answered with CORS headers
    let r = send(
        HttpRequest::new("OPTIONS", "/preflight-ignored")
            .header("origin", "https://shop.example")
            .header("access-control-request-method", "GET"),
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://shop.example")
    );
    assert_eq!(hits("a"), before);

    // fault abort with a gRPC status: a gRPC error (grpc-status 14, UNAVAILABLE)
    // from Envoy, the app never reached
    let r = send(
        HttpRequest::new("POST", "/grpc-abort")
            .header("content-type", "application/grpc")
            .header("te", "trailers"),
    );
    assert_eq!(r.header("grpc-status"), Some("14"), "{:?}", r.headers);
    assert_eq!(
        hits("a"),
        before,
        "an aborted gRPC call reached the upstream"
    );

    // statPrefix: the route's own stats under that prefix
    for _ in 0..3 {
        assert_eq!(server(get("/stats-route")), "a");
    }
    let stats = client.envoy.stats();
    let completed: Vec<_> = (stats.iter())
        .filter(|(k, _)| k.ends_with(".route.shop_stats.upstream_rq_completed"))
        .collect();
    assert!(
        completed.iter().any(|(_, v)| **v >= 3),
        "no route stats under shop_stats: {completed:?}"
    );

    // directResponse: answered by Envoy with the status and body, never routed
    let (a0, b0) = (hits("a"), hits("b"));
    let r = send(get("/maintenance"));
    assert_eq!(
        (r.status, r.body_text()),
        (503, "down for maintenance".to_string())
    );
    let r = send(get("/teapot"));
    assert_eq!(
        (r.status, r.body_text()),
        (418, "hello".to_string()),
        "bytes are base64"
    );
    assert_eq!(send(get("/empty")).status, 204);
    assert_eq!(
        (hits("a"), hits("b")),
        (a0, b0),
        "a direct response reached an app"
    );
    // uriRegexRewrite: groups swapped in the path the app sees
    let r = send(get("/v1/cart/items/7"));
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["path"], "/items/7/cart");
    // mirrors: each request copied to both mirrors, answered by the route
    let (m0, b0) = (hits("m"), hits("b"));
    for _ in 0..5 {
        assert_eq!(server(get("/mirror-two")), "a");
    }
    assert_eq!(settled(|| hits("m")) - m0, 5, "copies to mirror");
    assert_eq!(settled(|| hits("b")) - b0, 5, "copies to subset v2");

    // Istio's deprecated spellings still work: mirrorPercent, corsPolicy.allowOrigin
    // and fault.delay.percent
    let m0 = hits("m");
    let delays = || {
        client
            .envoy
            .stat("http.outbound_http_proxy.fault.delays_injected")
    };
    let delayed0 = delays();
    for _ in 0..5 {
        assert_eq!(server(get("/old-style")), "a");
    }
    assert_eq!(settled(|| hits("m")) - m0, 5, "mirrorPercent: 100");
    let r = send(
        HttpRequest::new("OPTIONS", "/old-style")
            .header("origin", "https://old.example")
            .header("access-control-request-method", "GET"),
    );
    assert_eq!(
        r.header("access-control-allow-origin"),
        Some("https://old.example"),
        "{:?}",
        r.headers
    );
    assert_eq!(delays() - delayed0, 5, "fault.delay.percent: 100");

    // mirror at 100 %: every request is copied to `mirror`; before them, none
    // of those to the route whose `mirror_percent` (Istio's other spelling of
    // mirrorPercent) is 0 (without it, a mirror copies them all)
    let m0 = hits("m");
    for _ in 0..5 {
        assert_eq!(server(get("/snake-case-none")), "a");
    }
    for _ in 0..20 {
        assert_eq!(server(get("/mirror-all")), "a");
    }
    assert_eq!(
        settled(|| hits("m")) - m0,
        20,
        "100 % mirror, and mirror_percent: 0 copies nothing"
    );
    // mirror at 50 % of 400 requests: expected 200 copies, sd 10; accept 140..=260 (6 sd)
    let m0 = hits("m");
    for _ in 0..400 {
        assert_eq!(server(get("/mirror-half")), "a");
    }
    let copies = settled(|| hits("m")) - m0;
    assert!((140..=260).contains(&copies), "mirrored {copies} of 400");

    // fault abort at 50 % of 400: expected 200 aborts, sd 10; accept 140..=260
    let statuses: Vec<u16> = (0..400).map(|_| send(get("/abort-half")).status).collect();
    let aborted = statuses.iter().filter(|s| **s == 418).count();
    let passed = statuses.iter().filter(|s| **s == 200).count();
    assert_eq!(aborted + passed, 400, "only 418 and 200 expected");
    assert!((140..=260).contains(&aborted), "aborted {aborted} of 400");
    // fault delay at 50 % of 400: Envoy counts the delays it injected
    let delayed0 = client
        .envoy
        .stat("http.outbound_http_proxy.fault.delays_injected");
    for _ in 0..400 {
        assert_eq!(server(get("/delay-half")), "a");
    }
    let delayed = client
        .envoy
        .stat("http.outbound_http_proxy.fault.delays_injected")
        - delayed0;
    assert!((140..=260).contains(&delayed), "delayed {delayed} of 400");
}

/// VirtualService `tcp` routes on real Envoy: tunnels to TCP services (`CONNECT`,
/// as a gRPC client behind `HTTPS_PROXY` opens them) take the first route that
/// applies to the client, split by weight.
#[test]
fn tcp_routes_through_the_translator_on_real_envoy() {
    let ip = Ipv4Addr::new(127, 0, 0, 76);
    let ups: BTreeMap<&str, Upstream> = ["a", "b"]
        .into_iter()
        .map(|n| (n, Upstream::echo(n, ip)))
        .collect();
    let subsets = |host: &str| {
        destination_rule(&format!(
            "metadata: {{name: {host}, namespace: shop}}\n\
             spec: {{host: {host}, subsets: [{{name: v1, labels: {{version: v1}}}}, \
             {{name: v2, labels: {{version: v2}}}}]}}"
        ))
    };
    let resources = vec![
        tcp_service("ledger", "ledger", 7000),
        tcp_service("vault", "ledger", 7100),
        plain_workload("a", "ledger", ups["a"].addr(), &[("version", "v1")]),
        plain_workload("b", "ledger", ups["b"].addr(), &[("version", "v2")]),
        subsets("ledger"),
        subsets("vault"),
        virtual_service(
            r#"
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [ledger]
  tcp:
  - match: [{sourceLabels: {app: cart}}]
    route: [{destination: {host: ledger, subset: v1}}]
  - match: [{port: 7001}]
    route: [{destination: {host: ledger, subset: v1}}]
  - route: [{destination: {host: ledger, subset: v2}}]
"#,
        ),
        virtual_service(
            r#"
metadata: {name: vault, namespace: shop}
spec:
  hosts: [vault]
  tcp:
  - route:
    - {destination: {host: vault, subset: v1}, weight: 50}
    - {destination: {host: vault, subset: v2}, weight: 50}
"#,
        ),
    ];
    let client = start_client(&test_ca(), resources, Ipv4Addr::new(127, 0, 0, 77));
    let upstream_of = |target: &str| -> String {
        let (status, response) = trellis_e2e::connect_and_get(client.listen, target);
        assert_eq!(status, 200, "CONNECT {target}: {}", client.envoy.log());
        let response = response.unwrap_or_default();
        let line = response
            .lines()
            .find_map(|l| l.strip_prefix("x-upstream: "))
            .unwrap_or_else(|| panic!("no x-upstream in {response}"));
        line.to_string()
    };
    // The routes for cart's clients and for port 7001 do not apply: all to v2.
    for _ in 0..10 {
        assert_eq!(upstream_of("ledger:7000"), "b");
    }
    // 50/50 over 200 tunnels: expected 100 to each, sd 7; accept 58..=142 (6 sd).
    let to_a = (0..200)
        .filter(|_| upstream_of("vault:7100") == "a")
        .count();
    assert!((58..=142).contains(&to_a), "{to_a} of 200 tunnels to v1");
}

/// `tls` routes on real Envoy: connections to vault's TLS port through the
/// client's local port go by SNI, each to the backend its route names, and
/// the client checks that backend's own certificate (each trusts only its
/// own). Without the routes, connections would spread over the two.
#[test]
fn tls_routes_take_connections_by_sni_on_real_envoy() {
    let ca = test_ca();
    let one = trellis_e2e::HttpsFileServer::start(Ipv4Addr::new(127, 0, 0, 146), &[("who", "one")]);
    let two = trellis_e2e::HttpsFileServer::start(Ipv4Addr::new(127, 0, 0, 147), &[("who", "two")]);
    let resources = vec![
        tls_service("vault", "vault", 443),
        plain_workload("vault-1", "vault", one.addr(), &[("version", "v1")]),
        plain_workload("vault-2", "vault", two.addr(), &[("version", "v2")]),
        destination_rule(
            "metadata: {name: vault, namespace: shop}\nspec: {host: vault, subsets: [{name: v1, labels: {version: v1}}, {name: v2, labels: {version: v2}}]}\n",
        ),
        virtual_service(
            r#"
metadata: {name: vault, namespace: shop}
spec:
  hosts: [vault]
  tls:
  - match: [{sniHosts: [one.vault.example.com]}]
    route: [{destination: {host: vault, subset: v1}}]
  - match: [{sniHosts: [two.vault.example.com]}]
    route: [{destination: {host: vault, subset: v2}}]
"#,
        ),
    ];
    let client = start_client_with_tcp(
        &ca,
        resources,
        Ipv4Addr::new(127, 0, 0, 148),
        &[("vault", 443)],
    );
    let local = client.tcp[0];
    for _ in 0..3 {
        for (server, sni, expected) in [
            (&one, "one.vault.example.com", "one"),
            (&two, "two.vault.example.com", "two"),
        ] {
            let answer = server
                .fetch_trusting_via_sni(local, Some(sni), "who")
                .unwrap_or_else(|e| panic!("{sni}: {e}\n{}", client.envoy.log()));
            assert!(answer.contains(expected), "{sni}: {answer}");
        }
    }
}
