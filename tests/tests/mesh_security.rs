//! Mesh security through real Envoy: sidecar-to-sidecar mTLS with SAN checks,
//! PeerAuthentication STRICT / PERMISSIVE / DISABLE (resolved mesh -> workload -> port),
//! AuthorizationPolicy -> RBAC in Istio's order, RequestAuthentication -> jwt_authn.
//! Two Envoys: `cart` (server sidecar) and `web` (client sidecar), identities from trellis-ca.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::{FilterChainMatch, Listener};
use trellis_e2e::golden::check_golden;
use trellis_e2e::jwt::{JwtSigner, unix_now};
use trellis_e2e::mesh::{
    Identity, bootstrap_yaml, http_connection_manager, listener, relative_file_sds, route_to,
    static_cluster, tcp_proxy, test_ca, vhost,
};
use trellis_e2e::{
    Envoy, HttpRequest, Upstream, free_port_on, free_ports_on, validate_bootstrap,
    validate_bootstrap_in,
};
use trellis_translate::security::authz::{
    AuthzAction, AuthzContext, AuthzPolicy, Condition, Operation, Rule, Source,
    network_rbac_filters, rbac_filters,
};
use trellis_translate::security::jwt::{
    JwtRule, PAYLOAD_METADATA_KEY, RequestAuthnPolicy, jwt_authn_filter,
};
use trellis_translate::security::peer_authn::{
    MtlsMode, PeerAuthnPolicy, WorkloadRef, effective_mode, inbound_filter_chains, tls_inspector,
};
use trellis_translate::security::sds::SdsSource;
use trellis_translate::security::tls::{
    auto_mtls_socket_matches, downstream_mtls, sidecar_endpoint_metadata, upstream_mtls,
    upstream_transport_socket,
};

const CART: &str = "spiffe://cluster.local/ns/shop/sa/cart";
const ISSUER: &str = "https://issuer.test";

/// Where the cart sidecar listens: one port per scenario.
struct CartPlan {
    ip: Ipv4Addr,
    strict: u16,
    permissive: u16,
    disable: u16,
    rbac: u16,
    jwt: u16,
    /// TCP (tcp_proxy) ports with network RBAC: one allowing web, one allowing nobody.
    tcp_allowed: u16,
    tcp_denied: u16,
    app: SocketAddr,
    /// A workload without a sidecar (plaintext only), for auto mTLS.
    legacy: SocketAddr,
    sds: SdsSource,
    jwks: String,
}

fn peer_authentications(plan: &CartPlan) -> Vec<PeerAuthnPolicy> {
    let mesh = PeerAuthnPolicy {
        namespace: "istio-system".into(),
        name: "default".into(),
        creation_order: 1,
        selector: None,
        mode: MtlsMode::Strict,
        port_level: BTreeMap::new(),
    };
    let workload = PeerAuthnPolicy {
        namespace: "shop".into(),
        name: "cart-ports".into(),
        creation_order: 2,
        selector: Some(BTreeMap::from([("app".into(), "cart".into())])),
        mode: MtlsMode::Unset, // inherits STRICT from the mesh
        port_level: BTreeMap::from([
            (u32::from(plan.permissive), MtlsMode::Permissive),
            (u32::from(plan.disable), MtlsMode::Disable),
            (u32::from(plan.jwt), MtlsMode::Disable),
        ]),
    };
    vec![mesh, workload]
}

fn authorization_policies() -> Vec<AuthzPolicy> {
    let ops = |methods: &[&str], paths: &[&str]| Operation {
        methods: methods.iter().map(|s| s.to_string()).collect(),
        paths: paths.iter().map(|s| s.to_string()).collect(),
        ..Default::default()
    };
    let policy = |name: &str, action, rules| AuthzPolicy {
        namespace: "shop".into(),
        name: name.into(),
        action,
        rules,
        provider: None,
    };
    vec![
        policy(
            "deny-secret",
            AuthzAction::Deny,
            vec![Rule {
                to: vec![ops(&[], &["/api/secret"])],
                ..Default::default()
            }],
        ),
        policy(
            "allow-web-get",
            AuthzAction::Allow,
            vec![Rule {
                from: vec![Source {
                    principals: vec!["cluster.local/ns/shop/sa/web".into()],
                    ..Default::default()
                }],
                to: vec![ops(&["GET"], &["/api/*"])],
                ..Default::default()
            }],
        ),
        policy(
            "allow-tenant-post",
            AuthzAction::Allow,
            vec![Rule {
                from: vec![Source {
                    namespaces: vec!["shop".into()],
                    ..Default::default()
                }],
                to: vec![ops(&["POST"], &[])],
                when: vec![Condition {
                    key: "request.headers[x-tenant]".into(),
                    values: vec!["acme".into()],
                    ..Default::default()
                }],
            }],
        ),
        policy(
            "allow-nobody",
            AuthzAction::Allow,
            vec![Rule {
                from: vec![Source {
                    principals: vec!["cluster.local/ns/shop/sa/nobody".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        ),
        policy(
            "allow-by-host",
            AuthzAction::Allow,
            vec![Rule {
                to: vec![Operation {
                    hosts: vec!["RBAC".into()],
                    paths: vec!["/by-host".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        ),
        policy(
            "audit-everything",
            AuthzAction::Audit,
            vec![Rule::default()],
        ),
    ]
}

fn jwt_policies(jwks: &str) -> (Vec<RequestAuthnPolicy>, Vec<AuthzPolicy>) {
    let authn = RequestAuthnPolicy {
        namespace: "shop".into(),
        name: "issuer-test".into(),
        jwt_rules: vec![JwtRule {
            issuer: ISSUER.into(),
            jwks: Some(jwks.to_string()),
            output_claim_to_headers: vec![("x-jwt-sub".into(), "sub".into())],
            ..Default::default()
        }],
    };
    let to = |p: &str| {
        vec![Operation {
            paths: vec![p.into()],
            ..Default::default()
        }]
    };
    let authz = AuthzPolicy {
        namespace: "shop".into(),
        name: "require-jwt".into(),
        action: AuthzAction::Allow,
        provider: None,
        rules: vec![
            Rule {
                from: vec![Source {
                    request_principals: vec![format!("{ISSUER}/alice")],
                    ..Default::default()
                }],
                to: to("/secure*"),
                ..Default::default()
            },
            Rule {
                to: to("/public*"),
                ..Default::default()
            },
            Rule {
                to: to("/admin*"),
                when: vec![Condition {
                    key: "request.auth.claims[groups]".into(),
                    values: vec!["admins".into()],
                    ..Default::default()
                }],
                ..Default::default()
            },
        ],
    };
    (vec![authn], vec![authz])
}

fn cart_bootstrap(plan: &CartPlan) -> String {
    let peer = peer_authentications(plan);
    let labels = BTreeMap::from([("app".to_string(), "cart".to_string())]);
    let workload = WorkloadRef {
        namespace: "shop",
        labels: &labels,
    };
    let ctx = AuthzContext {
        jwt_payload_key: PAYLOAD_METADATA_KEY,
    };
    let tls = downstream_mtls(&plan.sds);
    let app = vec![vhost("app", &["*"], vec![route_to("inbound|app")])];
    let (rbac, errors) = rbac_filters(&authorization_policies(), ctx);
    assert!(errors.is_empty(), "{errors:?}");
    let (authn, authz) = jwt_policies(&plan.jwks);
    let (jwt_filter, jwks_clusters, errors) = jwt_authn_filter(&authn);
    assert!(errors.is_empty() && jwks_clusters.is_empty(), "{errors:?}");
    let (mut jwt_chain_filters, errors) = rbac_filters(&authz, ctx);
    assert!(errors.is_empty(), "{errors:?}");
    jwt_chain_filters.insert(0, jwt_filter.expect("jwt filter"));

    let inbound = |name: &str, port: u16, filters| -> Listener {
        let mode = effective_mode(&peer, "istio-system", workload, u32::from(port));
        let hcm = http_connection_manager(name, app.clone(), filters, true);
        let passed = vec![tcp_proxy(name, "inbound|app")];
        let (chains, inspect) = inbound_filter_chains(
            name,
            mode,
            FilterChainMatch::default(),
            &tls,
            vec![hcm],
            passed,
        );
        let filters = if inspect {
            vec![tls_inspector()]
        } else {
            vec![]
        };
        listener(name, SocketAddr::from((plan.ip, port)), chains, filters)
    };
    let tcp_inbound = |name: &str, port: u16, allowed_sa: &str| -> Listener {
        let mode = effective_mode(&peer, "istio-system", workload, u32::from(port));
        let policy = AuthzPolicy {
            namespace: "shop".into(),
            name: name.into(),
            action: AuthzAction::Allow,
            provider: None,
            rules: vec![Rule {
                from: vec![Source {
                    principals: vec![format!("cluster.local/ns/shop/sa/{allowed_sa}")],
                    ..Default::default()
                }],
                ..Default::default()
            }],
        };
        // uses an HTTP-only field, so on TCP it never matches (does not open the port)
        let http_only = AuthzPolicy {
            name: format!("{name}-http-only"),
            rules: vec![Rule {
                to: vec![Operation {
                    methods: vec!["GET".into()],
                    ..Default::default()
                }],
                ..Default::default()
            }],
            ..policy.clone()
        };
        let (mut filters, errors) = network_rbac_filters(&[policy, http_only], ctx, name);
        assert!(errors.is_empty(), "{errors:?}");
        filters.push(tcp_proxy(name, "inbound|app"));
        let (chains, _) = inbound_filter_chains(
            name,
            mode,
            FilterChainMatch::default(),
            &tls,
            filters.clone(),
            filters,
        );
        listener(name, SocketAddr::from((plan.ip, port)), chains, vec![])
    };
    let listeners = vec![
        inbound("strict", plan.strict, vec![]),
        inbound("permissive", plan.permissive, vec![]),
        inbound("disable", plan.disable, vec![]),
        inbound("rbac", plan.rbac, rbac),
        inbound("jwt", plan.jwt, jwt_chain_filters),
        tcp_inbound("tcp-allowed", plan.tcp_allowed, "web"),
        tcp_inbound("tcp-denied", plan.tcp_denied, "nobody"),
    ];
    let clusters = vec![static_cluster("inbound|app", &[plan.app], None)];
    bootstrap_yaml("cart", listeners, clusters)
}

/// The web sidecar: one plaintext listener routing by Host to one cluster per case.
fn web_bootstrap(listen: SocketAddr, cart: &CartPlan, sds: &SdsSource) -> String {
    let at = |port: u16| SocketAddr::from((cart.ip, port));
    let mtls = |san: &str| {
        Some(upstream_transport_socket(&upstream_mtls(
            sds,
            "cart.shop.svc.cluster.local",
            &[san.to_string()],
        )))
    };
    let cases: Vec<(&str, Cluster)> = vec![
        (
            "strict-mtls",
            static_cluster("strict-mtls", &[at(cart.strict)], mtls(CART)),
        ),
        (
            "strict-wrong-san",
            static_cluster(
                "strict-wrong-san",
                &[at(cart.strict)],
                mtls("spiffe://cluster.local/ns/shop/sa/impostor"),
            ),
        ),
        (
            "strict-plain",
            static_cluster("strict-plain", &[at(cart.strict)], None),
        ),
        (
            "perm-mtls",
            static_cluster("perm-mtls", &[at(cart.permissive)], mtls(CART)),
        ),
        (
            "perm-plain",
            static_cluster("perm-plain", &[at(cart.permissive)], None),
        ),
        (
            "disable-plain",
            static_cluster("disable-plain", &[at(cart.disable)], None),
        ),
        (
            "disable-mtls",
            static_cluster("disable-mtls", &[at(cart.disable)], mtls(CART)),
        ),
        ("rbac", static_cluster("rbac", &[at(cart.rbac)], mtls(CART))),
        ("auto", auto_mtls_cluster(sds, at(cart.strict), cart.legacy)),
        (
            "tcp-allowed",
            static_cluster("tcp-allowed", &[at(cart.tcp_allowed)], mtls(CART)),
        ),
        (
            "tcp-denied",
            static_cluster("tcp-denied", &[at(cart.tcp_denied)], mtls(CART)),
        ),
    ];
    let vhosts = cases
        .iter()
        .map(|(host, c)| vhost(host, &[host], vec![route_to(&c.name)]))
        .collect();
    let hcm = http_connection_manager("outbound", vhosts, vec![], false);
    let chain = envoy_types::pb::envoy::config::listener::v3::FilterChain {
        filters: vec![hcm],
        ..Default::default()
    };
    let listeners = vec![listener("outbound", listen, vec![chain], vec![])];
    bootstrap_yaml(
        "web",
        listeners,
        cases.into_iter().map(|(_, c)| c).collect(),
    )
}

/// One cluster over a sidecar endpoint (STRICT port) and a sidecar-less one: auto mTLS
/// picks mTLS for the first and plaintext for the second.
fn auto_mtls_cluster(sds: &SdsSource, sidecar: SocketAddr, plain: SocketAddr) -> Cluster {
    let mut cluster = static_cluster("auto", &[sidecar, plain], None);
    let ctx = upstream_mtls(sds, "cart.shop.svc.cluster.local", &[CART.to_string()]);
    cluster.transport_socket_matches = auto_mtls_socket_matches(&ctx);
    let endpoints = &mut cluster
        .load_assignment
        .as_mut()
        .expect("endpoints")
        .endpoints[0];
    endpoints.lb_endpoints[0].metadata = Some(sidecar_endpoint_metadata());
    cluster
}

fn golden_plans() -> (CartPlan, SocketAddr, SdsSource) {
    let sds = |who: &str| relative_file_sds(&format!("identities/{who}"));
    let plan = CartPlan {
        ip: Ipv4Addr::new(127, 0, 0, 41),
        strict: 15001,
        permissive: 15002,
        disable: 15003,
        rbac: 15004,
        jwt: 15005,
        tcp_allowed: 15006,
        tcp_denied: 15007,
        app: SocketAddr::from(([127, 0, 0, 42], 8080)),
        legacy: SocketAddr::from(([127, 0, 0, 44], 8080)),
        sds: sds("cart"),
        // a fixed, valid public key (the P-256 base point) keeps the golden file stable
        jwks: r#"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"golden","x":"axfR8uEsQkf4vOblY6RA8ncDfYEt6zOg9KE5RdiYwpY","y":"T-NC4v4af5uO5-tKfA-eFivOM1drMV7Oy7ZAaDe_UfU"}]}"#.into(),
    };
    (plan, SocketAddr::from(([127, 0, 0, 43], 15000)), sds("web"))
}

#[test]
fn golden_security_bootstraps() {
    let (plan, web_listen, web_sds) = golden_plans();
    let cart = cart_bootstrap(&plan);
    let web = web_bootstrap(web_listen, &plan, &web_sds);
    check_golden("security-cart-sidecar", &cart);
    check_golden("security-web-sidecar", &web);
    // the golden files themselves load in Envoy, with their relative SDS paths in place
    let dir = tempfile::tempdir().unwrap();
    let ca = test_ca();
    for who in ["cart", "web"] {
        Identity::issue_with_relative_sds(
            &ca,
            dir.path(),
            &format!("identities/{who}"),
            "shop",
            who,
        );
    }
    validate_bootstrap_in(dir.path(), &cart).expect("golden cart bootstrap validates");
    validate_bootstrap_in(dir.path(), &web).expect("golden web bootstrap validates");
}

fn get(addr: SocketAddr, host: &str, path: &str) -> trellis_e2e::HttpResponse {
    HttpRequest::get(path)
        .host(host)
        .send(addr)
        .unwrap_or_else(|e| panic!("GET {host}{path}: {e}"))
}

#[test]
fn mtls_peer_authentication_rbac_and_jwt_on_real_envoy() {
    let tmp = tempfile::tempdir().unwrap();
    let ca = test_ca();
    let cart_id = Identity::issue(&ca, &tmp.path().join("cart"), "shop", "cart");
    let web_id = Identity::issue(&ca, &tmp.path().join("web"), "shop", "web");
    assert_eq!(cart_id.spiffe_id, CART);
    let app = Upstream::echo("cart-app", Ipv4Addr::new(127, 0, 0, 42));
    let legacy = Upstream::echo("legacy-app", Ipv4Addr::new(127, 0, 0, 44));
    let signer = JwtSigner::generate("k1");
    let ip = Ipv4Addr::new(127, 0, 0, 41);
    let ports = free_ports_on(ip, 7);
    let plan = CartPlan {
        ip,
        strict: ports[0],
        permissive: ports[1],
        disable: ports[2],
        rbac: ports[3],
        jwt: ports[4],
        tcp_allowed: ports[5],
        tcp_denied: ports[6],
        app: app.addr(),
        legacy: legacy.addr(),
        sds: cart_id.sds(),
        jwks: signer.jwks(),
    };
    let web_ip = Ipv4Addr::new(127, 0, 0, 43);
    let web_listen = SocketAddr::from((web_ip, free_port_on(web_ip)));
    let cart_yaml = cart_bootstrap(&plan);
    let web_yaml = web_bootstrap(web_listen, &plan, &web_id.sds());
    validate_bootstrap(&cart_yaml).expect("cart bootstrap validates");
    validate_bootstrap(&web_yaml).expect("web bootstrap validates");
    let web_thread = std::thread::spawn(move || Envoy::start(&web_yaml));
    let cart = Envoy::start(&cart_yaml);
    let web = web_thread.join().expect("web envoy started");

    // STRICT: mTLS with the right SAN passes and the app sees the caller's identity
    let r = get(web_listen, "strict-mtls", "/hello");
    assert_eq!(r.status, 200, "{}", r.body_text());
    let xfcc = r.json()["headers"]["x-forwarded-client-cert"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert!(xfcc.contains(&web_id.spiffe_id), "xfcc {xfcc:?}");
    // wrong SAN: the client refuses the server
    assert_eq!(get(web_listen, "strict-wrong-san", "/").status, 503);
    assert!(web.stat("cluster.strict-wrong-san.ssl.fail_verify_san") >= 1);
    // plaintext to STRICT is refused
    assert_eq!(get(web_listen, "strict-plain", "/").status, 503);
    let direct = HttpRequest::get("/").send(SocketAddr::from((ip, plan.strict)));
    assert!(
        direct.map(|r| r.status != 200).unwrap_or(true),
        "plaintext reached a STRICT port"
    );

    // PERMISSIVE: both, told apart by the TLS inspector
    let r = get(web_listen, "perm-mtls", "/");
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"]["x-forwarded-client-cert"].is_string());
    let r = get(web_listen, "perm-plain", "/");
    assert_eq!(r.status, 200);
    assert!(r.json()["headers"]["x-forwarded-client-cert"].is_null());

    // DISABLE: plaintext only
    assert_eq!(get(web_listen, "disable-plain", "/").status, 200);
    assert_eq!(get(web_listen, "disable-mtls", "/").status, 503);

    // auto mTLS: the sidecar endpoint gets mTLS (its app sees our identity), the
    // sidecar-less endpoint plaintext; both answer
    let mut seen = BTreeMap::new();
    for _ in 0..6 {
        let r = get(web_listen, "auto", "/");
        assert_eq!(r.status, 200, "{}", r.body_text());
        let json = r.json();
        let server = json["server"].as_str().unwrap().to_string();
        let has_xfcc = json["headers"]["x-forwarded-client-cert"].is_string();
        assert_eq!(
            has_xfcc,
            server == "cart-app",
            "mTLS only towards the sidecar"
        );
        *seen.entry(server).or_insert(0) += 1;
    }
    assert_eq!(seen.len(), 2, "both endpoints answered: {seen:?}");

    // RBAC in Istio's order: DENY beats ALLOW; an ALLOW must match; AUDIT changes nothing
    assert_eq!(get(web_listen, "rbac", "/api/items").status, 200);
    assert_eq!(
        get(web_listen, "rbac", "/api/secret").status,
        403,
        "DENY before ALLOW"
    );
    assert_eq!(
        get(web_listen, "rbac", "/other").status,
        403,
        "no ALLOW matched"
    );
    assert_eq!(
        get(web_listen, "rbac", "/by-host").status,
        200,
        "hosts match ignoring case"
    );
    let post = |tenant: Option<&str>| {
        let mut req = HttpRequest::new("POST", "/api/items")
            .host("rbac")
            .body("x");
        if let Some(t) = tenant {
            req = req.header("x-tenant", t);
        }
        req.send(web_listen).unwrap().status
    };
    assert_eq!(post(Some("acme")), 200, "when request.headers[x-tenant]");
    assert_eq!(post(Some("other")), 403);
    assert_eq!(post(None), 403);
    assert!(
        cart.stat("http.rbac.rbac.denied") >= 4,
        "{}",
        cart.admin_get("/stats?filter=rbac")
    );

    // TCP: network RBAC checks the mTLS peer; the HTTP-only rule never matches on TCP
    assert_eq!(get(web_listen, "tcp-allowed", "/").status, 200);
    assert_eq!(get(web_listen, "tcp-denied", "/").status, 503);
    assert!(
        cart.stat("tcp-denied.rbac.denied") >= 1,
        "{}",
        cart.admin_get("/stats?filter=rbac")
    );

    // JWT: missing token passes authn (then RBAC decides), invalid -> 401
    let jwt_addr = SocketAddr::from((ip, plan.jwt));
    let call = |path: &str, token: Option<&str>| {
        let mut req = HttpRequest::get(path).host("cart");
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        req.send(jwt_addr).unwrap().status
    };
    let claims = |sub: &str, groups: &[&str], exp_offset: i64| {
        serde_json::json!({"iss": ISSUER, "sub": sub, "groups": groups,
            "exp": (unix_now() as i64 + exp_offset), "iat": unix_now()})
    };
    let alice = signer.sign(&claims("alice", &["users"], 600));
    let bob = signer.sign(&claims("bob", &["admins"], 600));
    let expired = signer.sign(&claims("alice", &[], -600));
    let forged = JwtSigner::generate("k1").sign(&claims("alice", &[], 600));
    assert_eq!(call("/public", None), 200);
    assert_eq!(
        call("/secure", None),
        403,
        "no token: authn passes, requestPrincipals denies"
    );
    assert_eq!(call("/secure", Some(&alice)), 200);
    assert_eq!(call("/secure", Some(&bob)), 403, "wrong request principal");
    assert_eq!(call("/secure", Some(&forged)), 401, "bad signature");
    assert_eq!(call("/secure", Some(&expired)), 401, "expired");
    assert_eq!(call("/public", Some("not-a-jwt")), 401, "malformed token");
    assert_eq!(
        call("/admin", Some(&bob)),
        200,
        "claims[groups] contains admins"
    );
    assert_eq!(call("/admin", Some(&alice)), 403);
    // outputClaimToHeaders: the app sees the verified token's claim, in place
    // of whatever the client wrote in that header.
    let r = HttpRequest::get("/public")
        .host("cart")
        .header("authorization", &format!("Bearer {alice}"))
        .header("x-jwt-sub", "mallory")
        .send(jwt_addr)
        .unwrap();
    assert_eq!(r.status, 200);
    assert_eq!(
        r.json()["headers"]["x-jwt-sub"],
        "alice",
        "{}",
        r.body_text()
    );
    // Without a token the header is not the client's to set either.
    let r = HttpRequest::get("/public")
        .host("cart")
        .header("x-jwt-sub", "mallory")
        .send(jwt_addr)
        .unwrap();
    assert_eq!(r.status, 200);
    assert!(
        r.json()["headers"]["x-jwt-sub"].is_null(),
        "{}",
        r.body_text()
    );
    drop(cart);
    drop(web);
}
