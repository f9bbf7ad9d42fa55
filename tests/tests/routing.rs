//! VirtualService routing and resilience through real Envoy, from the translator's
//! route builder (`trellis_translate::route::routes`) into a static bootstrap:
//! match kinds, a 90/10 weighted split, rewrite, redirect, header operations,
//! timeout, retries (explicit and Istio's default) and fault abort.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use envoy_types::pb::envoy::config::listener::v3::FilterChain;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::HttpFault;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter,
};
use trellis_e2e::golden::check_golden;
use trellis_e2e::mesh::{bootstrap_yaml, http_connection_manager, listener, static_cluster, vhost};
use trellis_e2e::{Behavior, Envoy, HttpRequest, Upstream, free_ports_on, validate_bootstrap};
use trellis_translate::http_rule::{
    AbortStatus, Action, Destination, Fault, HeaderOps, Headers, HttpRule, Redirect, RequestMatch,
    Retries, Rewrite, StringMatch,
};
use trellis_translate::route::{FAULT_FILTER, routes};

fn to(cluster: &str, weight: u32) -> Destination {
    Destination {
        cluster: cluster.into(),
        weight,
        headers: Headers::default(),
        hash_key: None,
    }
}

fn rule(name: &str, m: Vec<RequestMatch>, clusters: &[(&str, u32)]) -> HttpRule {
    let mut r = HttpRule::default_to(String::new(), None);
    r.name = name.into();
    r.matches = m;
    r.action = Action::Route(clusters.iter().map(|(c, w)| to(c, *w)).collect());
    r
}

fn uri(m: StringMatch) -> RequestMatch {
    RequestMatch {
        uri: Some(m),
        ..Default::default()
    }
}

fn prefix(p: &str) -> StringMatch {
    StringMatch::Prefix(p.into())
}

/// The VirtualService `http[]` rules of the scenario, in order.
fn rules() -> Vec<HttpRule> {
    let mut out = vec![
        rule(
            "exact",
            vec![uri(StringMatch::Exact("/exact".into()))],
            &[("b", 100)],
        ),
        rule(
            "header",
            vec![RequestMatch {
                uri: Some(prefix("/v2/")),
                headers: BTreeMap::from([("x-version".into(), StringMatch::Exact("2".into()))]),
                ..Default::default()
            }],
            &[("b", 100)],
        ),
        rule(
            "regex",
            vec![uri(StringMatch::Regex("/re/[0-9]+".into()))],
            &[("b", 100)],
        ),
        rule(
            "method",
            vec![RequestMatch {
                uri: Some(prefix("/method")),
                method: Some(StringMatch::Exact("POST".into())),
                ..Default::default()
            }],
            &[("b", 100)],
        ),
        rule(
            "query",
            vec![RequestMatch {
                uri: Some(prefix("/query")),
                query_params: BTreeMap::from([("q".into(), StringMatch::Exact("1".into()))]),
                ..Default::default()
            }],
            &[("b", 100)],
        ),
        rule(
            "case",
            vec![RequestMatch {
                uri: Some(StringMatch::Exact("/case".into())),
                ignore_uri_case: true,
                ..Default::default()
            }],
            &[("b", 100)],
        ),
        rule(
            "split",
            vec![uri(prefix("/split"))],
            &[("a", 90), ("b", 10)],
        ),
    ];
    let mut rewrite = rule("rewrite", vec![uri(prefix("/old"))], &[("a", 100)]);
    rewrite.rewrite = Some(Rewrite {
        uri: Some("/new".into()),
        authority: None,
        uri_regex: None,
    });
    let mut redirect = rule("redirect", vec![uri(prefix("/redirect"))], &[]);
    redirect.action = Action::Redirect(Redirect {
        uri: Some("/moved".into()),
        authority: None,
        scheme: None,
        port: None,
        code: Some(301),
    });
    let mut headers = rule("headers", vec![uri(prefix("/headers"))], &[("a", 100)]);
    headers.headers = Headers {
        request: HeaderOps {
            set: BTreeMap::from([("x-added".into(), "yes".into())]),
            remove: vec!["x-drop".into()],
            ..Default::default()
        },
        response: HeaderOps {
            add: BTreeMap::from([("x-resp".into(), "r".into())]),
            ..Default::default()
        },
    };
    let mut timeout = rule("timeout", vec![uri(prefix("/slow"))], &[("slow", 100)]);
    timeout.timeout = Some(Duration::from_millis(200));
    let mut retries = rule("retries", vec![uri(prefix("/flaky"))], &[("flaky", 100)]);
    retries.retries = Some(Retries {
        attempts: 3,
        per_try_timeout: None,
        retry_on: Some("5xx".into()),
    });
    let mut no_retries = rule(
        "no-retries",
        vec![uri(prefix("/fragile"))],
        &[("fragile", 100)],
    );
    no_retries.retries = Some(Retries {
        attempts: 0,
        per_try_timeout: None,
        retry_on: None,
    });
    // no `retries`: Istio's default (2 attempts, 503 among the conditions)
    let default_retries = rule(
        "default-retries",
        vec![uri(prefix("/default"))],
        &[("once", 100)],
    );
    let mut fault = rule("fault", vec![uri(prefix("/fault"))], &[("a", 100)]);
    fault.fault = Some(Fault {
        delay: None,
        abort: Some((AbortStatus::Http(418), 100.0)),
    });
    out.extend([
        rewrite,
        redirect,
        headers,
        timeout,
        retries,
        no_retries,
        default_retries,
        fault,
        rule("catch-all", vec![], &[("a", 100)]),
    ]);
    out
}

fn bootstrap(listen: SocketAddr, upstreams: &BTreeMap<&str, SocketAddr>) -> String {
    let routes = rules()
        .iter()
        .flat_map(|r| routes(r, None, false))
        .collect();
    let fault_filter = HttpFilter {
        name: FAULT_FILTER.into(),
        config_type: Some(http_filter::ConfigType::TypedConfig(
            envoy_types::pb::google::protobuf::Any {
                type_url: "type.googleapis.com/envoy.extensions.filters.http.fault.v3.HTTPFault"
                    .into(),
                value: prost::Message::encode_to_vec(&HttpFault::default()),
            },
        )),
        ..Default::default()
    };
    let hcm = http_connection_manager(
        "shop",
        vec![vhost("shop", &["*"], routes)],
        vec![fault_filter],
        false,
    );
    let chain = FilterChain {
        filters: vec![hcm],
        ..Default::default()
    };
    let clusters = upstreams
        .iter()
        .map(|(name, addr)| static_cluster(name, &[*addr], None))
        .collect();
    bootstrap_yaml(
        "routing",
        vec![listener("shop", listen, vec![chain], vec![])],
        clusters,
    )
}

#[test]
fn golden_routing_bootstrap() {
    let names = ["a", "b", "slow", "flaky", "fragile", "once"];
    let upstreams = names
        .iter()
        .enumerate()
        .map(|(i, n)| (*n, SocketAddr::from(([127, 0, 0, 61], 9000 + i as u16))))
        .collect();
    let yaml = bootstrap(SocketAddr::from(([127, 0, 0, 60], 15001)), &upstreams);
    check_golden("routing", &yaml);
    validate_bootstrap(&yaml).expect("golden routing bootstrap validates");
}

#[test]
fn routing_and_resilience_on_real_envoy() {
    let ip = Ipv4Addr::new(127, 0, 0, 61);
    let ups = [
        Upstream::echo("a", ip),
        Upstream::echo("b", ip),
        Upstream::start("slow", ip, Behavior::Slow(Duration::from_secs(3))),
        Upstream::start("flaky", ip, Behavior::FailFirst(2)),
        Upstream::start("fragile", ip, Behavior::FailFirst(1)),
        Upstream::start("once", ip, Behavior::FailFirst(1)),
    ];
    let upstreams = ups.iter().map(|u| (u.name(), u.addr())).collect();
    let listen_ip = Ipv4Addr::new(127, 0, 0, 60);
    let listen = SocketAddr::from((listen_ip, free_ports_on(listen_ip, 1)[0]));
    let yaml = bootstrap(listen, &upstreams);
    validate_bootstrap(&yaml).expect("routing bootstrap validates");
    let envoy = Envoy::start(&yaml);
    let send = |req: HttpRequest| req.host("shop").send(listen).expect("request");
    let server = |req: HttpRequest| {
        let r = send(req);
        assert_eq!(r.status, 200, "{}", r.body_text());
        r.json()["server"].as_str().unwrap().to_string()
    };
    let get = |p: &str| HttpRequest::get(p);

    // match kinds: each sends to b; the same request without the condition falls through to a
    assert_eq!(server(get("/exact")), "b");
    assert_eq!(server(get("/exact/more")), "a");
    assert_eq!(server(get("/v2/x").header("x-version", "2")), "b");
    assert_eq!(server(get("/v2/x").header("x-version", "3")), "a");
    assert_eq!(server(get("/re/123")), "b");
    assert_eq!(server(get("/re/abc")), "a");
    assert_eq!(server(HttpRequest::new("POST", "/method").body("x")), "b");
    assert_eq!(server(get("/method")), "a");
    assert_eq!(server(get("/query?q=1")), "b");
    assert_eq!(server(get("/query?q=2")), "a");
    assert_eq!(server(get("/CaSe")), "b");

    // rewrite and redirect
    let r = send(get("/old/page"));
    assert_eq!(r.json()["path"], "/new/page");
    let r = send(get("/redirect"));
    assert_eq!(r.status, 301);
    assert!(
        r.header("location").unwrap_or_default().ends_with("/moved"),
        "{:?}",
        r.headers
    );

    // header operations on request and response
    let r = send(get("/headers").header("x-drop", "1"));
    let json = r.json();
    assert_eq!(json["headers"]["x-added"], "yes");
    assert!(json["headers"]["x-drop"].is_null());
    assert_eq!(r.header("x-resp"), Some("r"));

    // timeout: the slow upstream answers after 3 s, the route gives up first
    assert_eq!(send(get("/slow")).status, 504);

    // retries: two 503s then success within 3 attempts
    assert_eq!(send(get("/flaky")).status, 200);
    assert!(envoy.stat("cluster.flaky.upstream_rq_retry") >= 2);
    // attempts 0: the first 503 reaches the client
    assert_eq!(send(get("/fragile")).status, 503);
    // Istio's default retry policy retries a 503
    assert_eq!(send(get("/default")).status, 200);
    assert!(envoy.stat("cluster.once.upstream_rq_retry") >= 1);

    // fault abort at 100 %
    assert_eq!(send(get("/fault")).status, 418);

    // 90/10 split over 400 requests: b expected 40; accept 20..=70 (about ±5 sd)
    let b = (0..400).filter(|_| server(get("/split")) == "b").count();
    assert!(
        (20..=70).contains(&b),
        "b answered {b} of 400 (want 20..=70)"
    );
}
