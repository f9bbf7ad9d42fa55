//! AuthorizationPolicy `CUSTOM` with a MeshConfig extension provider, on real
//! Envoy: the translator turns the policy into a shadow RBAC filter and
//! `ext_authz` gated on its metadata, so only requests matching the CUSTOM
//! rules reach the external authorizer.
//!
//! Workload `cart-v1` (sidecar) serves an echo app; policy `cart-ext` sends
//! requests to `/admin/*` to provider `ext-authz`, an HTTP authorizer of ours
//! (Service `ext-authz`, a workload without sidecar) that allows a request
//! carrying `x-ext-authz: allow` and answers 403 otherwise.
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};

use trellis_api::mesh::{
    EnvoyExternalAuthorizationGrpcProvider, EnvoyExternalAuthorizationHttpProvider,
    ExtensionProviderConfig,
};
use trellis_e2e::mesh::test_ca;
use trellis_e2e::sidecar_mesh::{
    check_golden_bootstrap, golden_sidecar_bootstrap, model, plain_workload, service,
    start_sidecar, workload,
};
use trellis_e2e::upstream::Behavior;
use trellis_e2e::{HttpRequest, Upstream, free_ports_on};
use trellis_model::{MeshSettings, Resource};

const AUTHZ_HOST: &str = "ext-authz.shop.svc.cluster.local";

fn http_provider() -> ExtensionProviderConfig {
    ExtensionProviderConfig {
        name: "ext-authz".into(),
        envoy_ext_authz_http: Some(EnvoyExternalAuthorizationHttpProvider {
            service: AUTHZ_HOST.into(),
            port: 80,
            timeout: Some("5s".into()),
            path_prefix: Some("/check".into()),
            include_request_headers_in_check: vec!["x-ext-authz".into()],
            headers_to_upstream_on_allow: vec!["x-ext-authz-check-*".into()],
            headers_to_downstream_on_deny: vec!["x-ext-authz-check-result".into()],
            headers_to_downstream_on_allow: vec!["x-ext-authz-check-result".into()],
            ..Default::default()
        }),
        envoy_ext_authz_grpc: None,
    }
}

fn grpc_provider() -> ExtensionProviderConfig {
    ExtensionProviderConfig {
        name: "ext-authz".into(),
        envoy_ext_authz_http: None,
        envoy_ext_authz_grpc: Some(EnvoyExternalAuthorizationGrpcProvider {
            service: format!("shop/{AUTHZ_HOST}"),
            port: 9191,
            status_on_error: Some("503".into()),
            ..Default::default()
        }),
    }
}

fn policy(yaml: &str) -> Resource {
    let value: serde_json::Value = serde_yaml::from_str(yaml).expect("yaml");
    Resource::AuthorizationPolicy(Box::new(
        serde_json::from_value(value).expect("AuthorizationPolicy"),
    ))
}

struct Plan {
    cart: SocketAddr,
    app_port: u16,
    authorizer: SocketAddr,
}

fn scenario(p: &Plan, provider: ExtensionProviderConfig) -> Vec<Resource> {
    let mut cart = workload("cart-v1", "cart", p.cart, &[], true);
    cart.app_ports = BTreeMap::from([(p.cart.port(), p.app_port)]);
    vec![
        Resource::MeshSettings(MeshSettings {
            extension_providers: vec![provider],
            ..MeshSettings::default()
        }),
        service("cart", "cart"),
        Resource::Workload(Box::new(cart)),
        service("ext-authz", "ext-authz"),
        plain_workload("ext-authz-1", "ext-authz", p.authorizer, &[]),
        policy(
            "metadata: {name: cart-ext, namespace: shop}\nspec:\n  selector: {matchLabels: {app: cart}}\n  action: CUSTOM\n  provider: {name: ext-authz}\n  rules:\n  - to:\n    - operation: {paths: [/admin/*]}\n",
        ),
    ]
}

fn golden_plan() -> Plan {
    Plan {
        cart: SocketAddr::from(([127, 0, 0, 151], 9000)),
        app_port: 9100,
        authorizer: SocketAddr::from(([127, 0, 0, 152], 9001)),
    }
}

/// The gRPC variant: the authorizer serves gRPC (port `grpc`, so its outbound
/// cluster speaks HTTP/2) and cart also serves a TCP port, which gets the
/// network shadow RBAC and `ext_authz` filters.
fn grpc_scenario(p: &Plan) -> Vec<Resource> {
    let svc = |name: &str, app: &str, port_name: &str, port: u16, ip: &str| -> Resource {
        Resource::Service(Box::new(
            serde_json::from_value(serde_json::json!({
                "metadata": {"name": name, "namespace": "shop"},
                "spec": {"selector": {"app": app}, "clusterIP": ip,
                         "ports": [{"name": port_name, "port": port, "targetPort": port_name}]}
            }))
            .expect("service"),
        ))
    };
    let mut resources: Vec<Resource> = scenario(p, grpc_provider())
        .into_iter()
        .filter(|r| !matches!(r, Resource::Service(s) if s.metadata.name.as_deref() == Some("ext-authz")))
        .collect();
    for r in &mut resources {
        if let Resource::Workload(w) = r {
            match w.name.as_str() {
                "cart-v1" => w.ports.insert("tcp-db".into(), 9002),
                "ext-authz-1" => w.ports.insert("grpc".into(), 9003),
                _ => None,
            };
        }
    }
    resources.push(svc("cart-db", "cart", "tcp-db", 5432, "10.7.7.7"));
    resources.push(svc("ext-authz", "ext-authz", "grpc", 9191, "10.7.7.8"));
    resources
}

/// The cart sidecar's config for both provider kinds, loaded by `envoy --mode
/// validate`.
#[test]
fn golden_authz_custom() {
    let http =
        golden_sidecar_bootstrap(scenario(&golden_plan(), http_provider()), "cart-v1", "cart");
    assert!(http.contains("envoy.filters.http.ext_authz"), "{http}");
    check_golden_bootstrap("authz-custom-http-cart", &http, &["cart"]);
    let grpc = golden_sidecar_bootstrap(grpc_scenario(&golden_plan()), "cart-v1", "cart");
    assert!(grpc.contains("envoy.filters.http.ext_authz"), "{grpc}");
    assert!(grpc.contains("envoy.filters.network.ext_authz"), "{grpc}");
    check_golden_bootstrap("authz-custom-grpc-cart", &grpc, &["cart"]);
}

#[test]
fn custom_policy_sends_only_matching_requests_to_the_external_authorizer() {
    let ca = test_ca();
    let app = Upstream::echo("cart-app", Ipv4Addr::LOCALHOST);
    let authorizer = Upstream::start(
        "ext-authz",
        Ipv4Addr::new(127, 0, 0, 153),
        Behavior::Authorizer {
            header: "x-ext-authz".into(),
            value: "allow".into(),
        },
    );
    let cart_ip = Ipv4Addr::new(127, 0, 0, 154);
    let ports = free_ports_on(cart_ip, 2);
    let plan = Plan {
        cart: SocketAddr::from((cart_ip, ports[0])),
        app_port: app.port(),
        authorizer: authorizer.addr(),
    };
    let m = model(
        scenario(&plan, http_provider()),
        Ipv4Addr::new(127, 0, 0, 155),
    );
    let (sidecar, _identity) = start_sidecar(&ca, &m, "cart-v1", "cart", ports[1]);
    let send = |path: &str, allow: bool| {
        let mut request = HttpRequest::get(path).host("cart");
        if allow {
            request = request.header("x-ext-authz", "allow");
        }
        request
            .send(plan.cart)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; envoy log:\n{}", sidecar.log()))
    };

    // (a) matching, without the header: the authorizer denies, the app never sees it
    let r = send("/admin/users", false);
    assert_eq!(r.status, 403, "{}; log:\n{}", r.body_text(), sidecar.log());
    assert_eq!(authorizer.hits(), 1, "the authorizer was asked");
    assert_eq!(app.hits(), 0, "a denied request does not reach the app");
    assert_eq!(
        r.header("x-ext-authz-check-result"),
        Some("denied"),
        "headersToDownstreamOnDeny passes the authorizer's header to the client"
    );

    // (b) matching, with the header: allowed, reaches the app, which gets the
    // authorizer's header (headersToUpstreamOnAllow)
    let r = send("/admin/users", true);
    assert_eq!(r.status, 200, "{}; log:\n{}", r.body_text(), sidecar.log());
    assert_eq!(authorizer.hits(), 2);
    assert_eq!(
        r.header("x-ext-authz-check-result"),
        Some("allowed"),
        "headersToDownstreamOnAllow adds the authorizer's header to the client's response"
    );
    let echo = r.json();
    assert_eq!(echo["server"], "cart-app");
    assert_eq!(echo["path"], "/admin/users");
    assert_eq!(
        echo["headers"]["x-ext-authz-check-result"], "allowed",
        "headersToUpstreamOnAllow: {echo}"
    );
    // the check request went to pathPrefix + path, with the header included
    let checked: Vec<String> = authorizer
        .events()
        .into_iter()
        .filter_map(|e| match e {
            trellis_e2e::upstream::UpstreamEvent::Arrived(path) => Some(path),
            _ => None,
        })
        .collect();
    assert_eq!(checked, ["/check/admin/users", "/check/admin/users"]);

    // (c) not matching the CUSTOM rules: served without asking the authorizer
    for path in ["/", "/public", "/administrator"] {
        let r = send(path, false);
        assert_eq!(r.status, 200, "{path}: {}", r.body_text());
        assert_eq!(r.json()["server"], "cart-app");
    }
    assert_eq!(
        authorizer.hits(),
        2,
        "requests outside the CUSTOM rules never reach the authorizer"
    );
    assert_eq!(app.hits(), 4);

    // The authorizer gone: a matching request fails closed (403, failOpen unset).
    drop(authorizer);
    let r = send("/admin/users", true);
    assert_eq!(r.status, 403, "fail closed: {}", r.body_text());
    assert_eq!(app.hits(), 4);
    assert_eq!(send("/public", false).status, 200);
}

/// A gRPC external authorizer of ours (`envoy.service.auth.v3.Authorization`):
/// an HTTP check is allowed when the request carries `x-ext-authz: allow` (and
/// then adds `x-ext-authz-check-result: allowed` to the request), a TCP check
/// (no HTTP attributes) is always denied. Records what it checked (the path,
/// or `tcp`). Stops when dropped.
mod grpc_authorizer {
    use std::net::SocketAddr;
    use std::sync::{Arc, Mutex};

    use envoy_types::pb::envoy::config::core::v3::{HeaderValue, HeaderValueOption};
    use envoy_types::pb::envoy::service::auth::v3::authorization_server::{
        Authorization, AuthorizationServer,
    };
    use envoy_types::pb::envoy::service::auth::v3::{
        CheckRequest, CheckResponse, DeniedHttpResponse, OkHttpResponse, check_response,
    };
    use envoy_types::pb::envoy::r#type::v3::HttpStatus;
    use envoy_types::pb::google::rpc::Status;

    #[derive(Clone, Default)]
    struct Checks(Arc<Mutex<Vec<String>>>);

    #[tonic::async_trait]
    impl Authorization for Checks {
        async fn check(
            &self,
            request: tonic::Request<CheckRequest>,
        ) -> Result<tonic::Response<CheckResponse>, tonic::Status> {
            let http = (request.into_inner().attributes)
                .and_then(|a| a.request)
                .and_then(|r| r.http);
            let (what, allowed) = match &http {
                Some(h) => (
                    h.path.clone(),
                    h.headers.get("x-ext-authz").map(String::as_str) == Some("allow"),
                ),
                None => ("tcp".to_string(), false),
            };
            self.0.lock().expect("checks").push(what);
            let header = HeaderValueOption {
                header: Some(HeaderValue {
                    key: "x-ext-authz-check-result".into(),
                    value: if allowed { "allowed" } else { "denied" }.into(),
                    ..Default::default()
                }),
                ..Default::default()
            };
            let http_response = if allowed {
                check_response::HttpResponse::OkResponse(OkHttpResponse {
                    headers: vec![header],
                    ..Default::default()
                })
            } else {
                check_response::HttpResponse::DeniedResponse(DeniedHttpResponse {
                    status: Some(HttpStatus { code: 403 }),
                    headers: vec![header],
                    ..Default::default()
                })
            };
            Ok(tonic::Response::new(CheckResponse {
                // OK or PERMISSION_DENIED
                status: Some(Status {
                    code: if allowed { 0 } else { 7 },
                    ..Default::default()
                }),
                http_response: Some(http_response),
                ..Default::default()
            }))
        }
    }

    pub struct GrpcAuthorizer {
        pub addr: SocketAddr,
        checks: Checks,
        stop: Option<tokio::sync::oneshot::Sender<()>>,
        thread: Option<std::thread::JoinHandle<()>>,
    }

    impl GrpcAuthorizer {
        pub fn start(ip: std::net::Ipv4Addr) -> GrpcAuthorizer {
            let addr = SocketAddr::from((ip, trellis_e2e::free_port_on(ip)));
            let checks = Checks::default();
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            let service = AuthorizationServer::new(checks.clone());
            let thread = std::thread::spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("tokio runtime");
                rt.block_on(async move {
                    let _ = tonic::transport::Server::builder()
                        .add_service(service)
                        .serve_with_shutdown(addr, async {
                            let _ = stopped.await;
                        })
                        .await;
                });
            });
            // bounded wait until it accepts connections
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while std::net::TcpStream::connect(addr).is_err() {
                assert!(
                    std::time::Instant::now() < deadline,
                    "gRPC authorizer did not start on {addr}"
                );
                std::thread::sleep(std::time::Duration::from_millis(20));
            }
            GrpcAuthorizer {
                addr,
                checks,
                stop: Some(stop),
                thread: Some(thread),
            }
        }

        /// What was checked so far, in order.
        pub fn checks(&self) -> Vec<String> {
            self.checks.0.lock().expect("checks").clone()
        }
    }

    impl Drop for GrpcAuthorizer {
        fn drop(&mut self) {
            if let Some(stop) = self.stop.take() {
                let _ = stop.send(());
            }
            if let Some(t) = self.thread.take() {
                let _ = t.join();
            }
        }
    }
}

/// The gRPC provider on real Envoy: the HTTP port is checked as with the HTTP
/// provider (the authorizer's headers reach the app), and on the TCP port the
/// network `ext_authz` filter asks the authorizer for every connection (the
/// CUSTOM rule's path cannot be seen on TCP, so it matches every connection,
/// as in Istio), which this authorizer refuses.
#[test]
fn custom_policy_with_a_grpc_provider_checks_http_requests_and_tcp_connections() {
    let ca = test_ca();
    let app = Upstream::echo("cart-app", Ipv4Addr::LOCALHOST);
    let db = Upstream::echo("cart-db", Ipv4Addr::LOCALHOST);
    let authorizer = grpc_authorizer::GrpcAuthorizer::start(Ipv4Addr::new(127, 0, 0, 156));
    let cart_ip = Ipv4Addr::new(127, 0, 0, 157);
    let ports = free_ports_on(cart_ip, 3);
    let plan = Plan {
        cart: SocketAddr::from((cart_ip, ports[0])),
        app_port: app.port(),
        authorizer: authorizer.addr,
    };
    let mut resources = grpc_scenario(&plan);
    for r in &mut resources {
        if let Resource::Workload(w) = r {
            match w.name.as_str() {
                "cart-v1" => {
                    w.ports.insert("tcp-db".into(), ports[1]);
                    w.app_ports.insert(ports[1], db.port());
                }
                "ext-authz-1" => {
                    w.ports.insert("grpc".into(), authorizer.addr.port());
                }
                _ => {}
            }
        }
    }
    let m = model(resources, Ipv4Addr::new(127, 0, 0, 158));
    let (sidecar, _identity) = start_sidecar(&ca, &m, "cart-v1", "cart", ports[2]);
    let send = |path: &str, allow: bool| {
        let mut request = HttpRequest::get(path).host("cart");
        if allow {
            request = request.header("x-ext-authz", "allow");
        }
        request
            .send(plan.cart)
            .unwrap_or_else(|e| panic!("GET {path}: {e}; envoy log:\n{}", sidecar.log()))
    };

    let r = send("/admin/users", false);
    assert_eq!(r.status, 403, "{}; log:\n{}", r.body_text(), sidecar.log());
    assert_eq!(r.header("x-ext-authz-check-result"), Some("denied"));
    let r = send("/admin/users", true);
    assert_eq!(r.status, 200, "{}; log:\n{}", r.body_text(), sidecar.log());
    assert_eq!(r.json()["headers"]["x-ext-authz-check-result"], "allowed");
    assert_eq!(send("/public", false).status, 200);
    assert_eq!(authorizer.checks(), ["/admin/users", "/admin/users"]);
    assert_eq!(app.hits(), 2);

    // TCP: the connection is checked and refused before anything reaches the app
    let r = HttpRequest::get("/")
        .timeout(std::time::Duration::from_secs(5))
        .send(SocketAddr::from((cart_ip, ports[1])));
    assert!(
        r.as_ref().map_or(true, |r| r.status != 200),
        "a refused TCP connection got an answer: {r:?}"
    );
    assert_eq!(
        authorizer.checks().last().map(String::as_str),
        Some("tcp"),
        "the network ext_authz filter asked the authorizer; log:\n{}",
        sidecar.log()
    );
    assert_eq!(db.hits(), 0, "the TCP app was never reached");

    // The authorizer gone: statusOnError (503) for a matching request.
    drop(authorizer);
    let r = send("/admin/users", true);
    assert_eq!(r.status, 503, "statusOnError: {}", r.body_text());
    assert_eq!(app.hits(), 2, "the failed check did not reach the app");
}
