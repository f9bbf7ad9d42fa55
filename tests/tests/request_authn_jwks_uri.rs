//! RequestAuthentication with `jwksUri` through the whole translator (model -> sidecar
//! -> real Envoy): the key set is not inline but fetched by Envoy (`remote_jwks`) through
//! the cluster the translator adds for the URI, from a small HTTP server of ours on
//! 127.0.0.x. The test signs its own tokens: a valid token -> 200, an invalid one -> 401,
//! no token passes authentication and an AuthorizationPolicy requiring
//! `requestPrincipals` then answers 403.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use trellis_e2e::jwt::{JwtSigner, unix_now};
use trellis_e2e::mesh::{Identity, test_ca};
use trellis_e2e::proxy_bootstrap::static_bootstrap;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, golden_sidecar_bootstrap, model, options, service, translate_sidecar,
    workload,
};
use trellis_e2e::{
    Behavior, Envoy, HttpRequest, HttpResponse, HttpsFileServer, Upstream, UpstreamEvent,
    free_ports_on, validate_bootstrap,
};
use trellis_model::Resource;

const ISSUER: &str = "https://issuer.test";
const JWKS_PATH: &str = "/.well-known/jwks.json";

/// Where things listen: the cart sidecar's inbound port, the app behind it, the JWKS server.
struct Plan {
    cart: SocketAddr,
    app_port: u16,
    jwks_uri: String,
    /// How the rule spells the field: `jwksUri`, or `jwks_uri` as Istio's CRD also does.
    key: &'static str,
}

fn yaml<T: serde::de::DeserializeOwned>(text: &str) -> T {
    let value: serde_json::Value = serde_yaml::from_str(text).expect("yaml");
    serde_json::from_value(value).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn scenario(p: &Plan) -> Vec<Resource> {
    let mut cart = workload("cart-v1", "cart", p.cart, &[], true);
    cart.app_ports = BTreeMap::from([(p.cart.port(), p.app_port)]);
    vec![
        service("cart", "cart"),
        Resource::Workload(Box::new(cart)),
        Resource::RequestAuthentication(Box::new(yaml(&format!(
            r#"
metadata: {{name: cart-jwt, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: cart}}}}
  jwtRules:
  - issuer: "{ISSUER}"
    {}: "{}"
"#,
            p.key, p.jwks_uri
        )))),
        Resource::AuthorizationPolicy(Box::new(yaml(&format!(
            r#"
metadata: {{name: require-jwt, namespace: shop}}
spec:
  selector: {{matchLabels: {{app: cart}}}}
  action: ALLOW
  rules:
  - from: [{{source: {{requestPrincipals: ["{ISSUER}/alice"]}}}}]
    to: [{{operation: {{paths: ["/secure*"]}}}}]
  - to: [{{operation: {{paths: ["/public*"]}}}}]
"#
        )))),
    ]
}

#[test]
fn golden_security_jwks_uri() {
    let plan = Plan {
        cart: SocketAddr::from(([127, 0, 0, 161], 9000)),
        app_port: 9100,
        jwks_uri: format!("http://127.0.0.162:9200{JWKS_PATH}"),
        key: "jwksUri",
    };
    let yaml = golden_sidecar_bootstrap(scenario(&plan), "cart-v1", "cart");
    check_golden_bootstrap("security-jwks-uri", &yaml, &["cart"]);
}

#[test]
fn jwks_uri_is_fetched_by_envoy_and_enforced() {
    // an address: the translator's JWKS cluster is STATIC
    jwks_uri_scenario(Ipv4Addr::new(127, 0, 0, 162), None, "jwksUri");
}

#[test]
fn jwks_uri_in_istios_snake_case_spelling_is_fetched_and_enforced() {
    // Istio's RequestAuthentication CRD has both `jwksUri` and `jwks_uri`
    jwks_uri_scenario(Ipv4Addr::new(127, 0, 0, 164), None, "jwks_uri");
}

#[test]
fn jwks_uri_with_a_host_name_is_resolved_by_dns() {
    // a name: the translator's JWKS cluster is LOGICAL_DNS (localhost -> 127.0.0.1)
    jwks_uri_scenario(Ipv4Addr::LOCALHOST, Some("localhost"), "jwksUri");
}

/// The cart sidecar of [`scenario`] in a real Envoy, with the app behind it.
struct Cart {
    envoy: Envoy,
    address: SocketAddr,
    _app: Upstream,
    _identity_dir: tempfile::TempDir,
}

impl Cart {
    fn start(jwks_uri: String, key: &'static str) -> Cart {
        let app = Upstream::echo("cart-app", Ipv4Addr::LOCALHOST);
        let cart_ip = Ipv4Addr::new(127, 0, 0, 161);
        let ports = free_ports_on(cart_ip, 2);
        let plan = Plan {
            cart: SocketAddr::from((cart_ip, ports[0])),
            app_port: app.port(),
            jwks_uri,
            key,
        };
        let m = model(scenario(&plan), Ipv4Addr::new(127, 0, 0, 160));
        let identity_dir = tempfile::tempdir().unwrap();
        let identity = Identity::issue(&test_ca(), identity_dir.path(), "shop", "cart");
        let out = translate_sidecar(&m, "cart-v1", options(ports[1], identity.sds()));
        let bootstrap = static_bootstrap("cart-v1", &out);
        validate_bootstrap(&bootstrap).expect("cart sidecar validates");
        Cart {
            envoy: Envoy::start(&bootstrap),
            address: plan.cart,
            _app: app,
            _identity_dir: identity_dir,
        }
    }

    fn call(&self, path: &str, token: Option<&str>) -> HttpResponse {
        let mut req = HttpRequest::get(path).host("cart");
        if let Some(t) = token {
            req = req.header("authorization", &format!("Bearer {t}"));
        }
        req.send(self.address)
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    fn jwt_stat(&self, name: &str) -> u64 {
        self.envoy.stat(&format!(
            "http.inbound|{}||.jwt_authn.{name}",
            self.address.port()
        ))
    }
}

fn claims(sub: &str, exp_offset: i64) -> serde_json::Value {
    serde_json::json!({"iss": ISSUER, "sub": sub,
        "exp": unix_now() as i64 + exp_offset, "iat": unix_now()})
}

/// The JWKS server on `jwks_ip`, named in the jwksUri by `host` (or by its
/// address), the rule spelling the field `key`.
fn jwks_uri_scenario(jwks_ip: Ipv4Addr, host: Option<&str>, key: &'static str) {
    let signer = JwtSigner::generate("remote-key");
    let jwks = Upstream::start(
        "jwks",
        jwks_ip,
        Behavior::Document {
            content_type: "application/json".into(),
            body: signer.jwks(),
        },
    );
    let cart = Cart::start(
        format!(
            "http://{}:{}{JWKS_PATH}",
            host.unwrap_or(&jwks.ip()),
            jwks.port()
        ),
        key,
    );
    let alice = signer.sign(&claims("alice", 600));
    let bob = signer.sign(&claims("bob", 600));
    let expired = signer.sign(&claims("alice", -600));
    // same kid, another key: only the fetched key set can tell it apart
    let forged = JwtSigner::generate("remote-key").sign(&claims("alice", 600));

    // no token: authentication lets it through; the policy decides
    assert_eq!(
        cart.call("/public", None).status,
        200,
        "no token on an open path"
    );
    assert_eq!(
        jwks.hits(),
        0,
        "no token to verify, no reason to fetch the key set yet"
    );
    let r = cart.call("/secure", None);
    assert_eq!(
        r.status,
        403,
        "no token: authn passes, requestPrincipals denies: {}",
        r.body_text()
    );
    // a valid token: Envoy fetched our key set and verified the signature
    let r = cart.call("/secure", Some(&alice));
    assert_eq!(
        r.status,
        200,
        "valid token: {}; envoy log:\n{}",
        r.body_text(),
        cart.envoy.log()
    );
    assert_eq!(r.json()["server"], "cart-app");
    assert!(
        jwks.hits() >= 1,
        "Envoy fetched the JWKS from {}",
        jwks.addr()
    );
    assert!(
        jwks.events()
            .iter()
            .all(|e| matches!(e, UpstreamEvent::Arrived(p) | UpstreamEvent::Answering(p) if p == JWKS_PATH)),
        "Envoy asked for the URI's path: {:?}",
        jwks.events()
    );
    // invalid tokens: 401 whatever the path
    let r = cart.call("/secure", Some(&forged));
    assert_eq!(r.status, 401, "bad signature: {}", r.body_text());
    assert_eq!(cart.call("/public", Some(&expired)).status, 401, "expired");
    assert_eq!(
        cart.call("/public", Some("not-a-jwt")).status,
        401,
        "malformed"
    );
    // a valid token of another principal is authenticated, then denied by the policy
    assert_eq!(
        cart.call("/secure", Some(&bob)).status,
        403,
        "wrong principal"
    );
    assert_eq!(cart.call("/public", Some(&bob)).status, 200);
    assert_eq!(
        jwks.hits(),
        1,
        "the key set is fetched once and then cached"
    );
    assert_eq!(cart.jwt_stat("jwks_fetch_success"), 1);
    assert_eq!(cart.jwt_stat("jwks_fetch_failed"), 0);
    assert_eq!(cart.jwt_stat("denied"), 3, "forged, expired, malformed");
}

/// An https jwksUri is fetched only from a server the proxy can verify: keys
/// from an unverified server would let anyone on the path mint accepted
/// tokens. The server here serves the right key set over TLS (a client that
/// trusts its self-signed certificate gets it), but no system trusts it, so
/// Envoy's fetch fails and even a correctly signed token is refused.
#[test]
fn an_https_jwks_server_the_proxy_cannot_verify_is_not_trusted() {
    let signer = JwtSigner::generate("remote-key");
    let jwks = HttpsFileServer::start(
        Ipv4Addr::new(127, 0, 0, 163),
        &[("jwks.json", &signer.jwks())],
    );
    let served = jwks.fetch_trusting("jwks.json");
    assert!(
        served.contains("\"keys\"") && served.contains("remote-key"),
        "the server serves the key set to a client that trusts it: {served}"
    );
    let cart = Cart::start(format!("https://{}/jwks.json", jwks.addr()), "jwksUri");

    let alice = signer.sign(&claims("alice", 600));
    let r = cart.call("/secure", Some(&alice));
    assert_eq!(
        r.status,
        401,
        "a token signed with the key the unverified server serves: {}; envoy log:\n{}",
        r.body_text(),
        cart.envoy.log()
    );
    assert!(cart.jwt_stat("jwks_fetch_failed") >= 1, "the fetch failed");
    assert_eq!(cart.jwt_stat("jwks_fetch_success"), 0);
    // Without a token the policy still decides, as with a reachable key set.
    assert_eq!(cart.call("/public", None).status, 200);
}
