//! RequestAuthentication and AuthorizationPolicy reach a sidecar's inbound HTTP
//! connection managers: the model picks the policies that apply to the workload
//! (its namespace or the mesh root namespace, selector matching its labels),
//! and the translator puts jwt_authn before RBAC before the router.
mod fixture;

use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
use fixture::*;
use prost::Message;
use trellis_api::security::{AuthorizationPolicy, RequestAuthentication};
use trellis_model::{MeshModel, Resource, ResourceKey, ResourceKind};
use trellis_translate::{Proxy, ProxyResources, Translator};

const JWKS: &str = r#"{"keys":[{"kty":"EC","crv":"P-256","alg":"ES256","kid":"k","x":"f83OJ3D2xF1Bg8vub9tLe1gHMzV76e8Tus9uPHvRVEU","y":"x_FEzRu9m36HLN_tue659LNpXW6pCyStikYjKIWI5a0"}]}"#;

fn ra(yaml: &str) -> Resource {
    let ra: RequestAuthentication = from_yaml(yaml);
    Resource::RequestAuthentication(Box::new(ra))
}

fn ap(yaml: &str) -> Resource {
    let ap: AuthorizationPolicy = from_yaml(yaml);
    Resource::AuthorizationPolicy(Box::new(ap))
}

fn policies() -> Vec<Resource> {
    vec![
        ra(&format!(
            "metadata: {{name: web-jwt, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: web}}}}\n  jwtRules:\n  - issuer: https://issuer.example\n    jwks: '{JWKS}'\n"
        )),
        ap(
            "metadata: {name: web-require-jwt, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  rules:\n  - from:\n    - source: {requestPrincipals: ['*']}\n",
        ),
        ap(
            "metadata: {name: deny-admin, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [/admin]}\n",
        ),
        ap(
            "metadata: {name: elsewhere, namespace: other}\nspec:\n  action: DENY\n  rules:\n  - {}\n",
        ),
    ]
}

/// The HTTP filter names of the inbound listener on `address:port`.
fn inbound_filters(out: &ProxyResources, address: &str, port: u16) -> Vec<String> {
    let name = format!("{address}_{port}");
    let listener = out
        .listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| panic!("no listener {name}"));
    let filter = &listener.filter_chains[0].filters[0];
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("no typed config on {name}");
    };
    let hcm = HttpConnectionManager::decode(any.value.as_slice()).unwrap();
    hcm.http_filters.into_iter().map(|f| f.name).collect()
}

fn sidecar(model: &MeshModel, name: &str) -> ProxyResources {
    Translator::new(model, explicit_options()).translate(&Proxy::sidecar("shop", name))
}

#[test]
fn policies_apply_by_namespace_root_namespace_and_selector() {
    let mut resources = base_resources();
    resources.extend(policies());
    let model = model_of(resources);
    let web = model.workload("shop", "web-1").unwrap();
    let cart = model.workload("shop", "cart-v1").unwrap();
    let names = |v: Vec<&trellis_model::Stored<AuthorizationPolicy>>| {
        v.iter().map(|p| p.name.clone()).collect::<Vec<_>>()
    };
    assert_eq!(
        names(model.authorization_policies_for(web)),
        ["web-require-jwt", "deny-admin"]
    );
    assert_eq!(
        names(model.authorization_policies_for(cart)),
        ["deny-admin"]
    );
    assert_eq!(model.request_authentications_for(web).len(), 1);
    assert!(model.request_authentications_for(cart).is_empty());
}

#[test]
fn jwt_then_rbac_then_router_on_the_selected_workload_only() {
    let mut resources = base_resources();
    resources.extend(policies());
    let mut model = model_of(resources);
    let web = sidecar(&model, "web-1");
    assert!(web.errors.is_empty(), "{:?}", web.errors);
    let filters = inbound_filters(&web, "127.0.0.10", 8000);
    assert_eq!(filters[0], "envoy.filters.http.jwt_authn", "{filters:?}");
    assert_eq!(
        filters
            .iter()
            .filter(|f| *f == "envoy.filters.http.rbac")
            .count(),
        2,
        "a DENY and an ALLOW filter: {filters:?}"
    );
    assert_eq!(filters.last().unwrap(), "envoy.filters.http.router");

    let cart = sidecar(&model, "cart-v1");
    let filters = inbound_filters(&cart, "127.0.0.11", 8080);
    assert!(
        !filters.contains(&"envoy.filters.http.jwt_authn".to_string()),
        "{filters:?}"
    );
    assert_eq!(
        filters
            .iter()
            .filter(|f| *f == "envoy.filters.http.rbac")
            .count(),
        1,
        "only the mesh-wide DENY: {filters:?}"
    );
    // The outbound proxy listener carries no inbound policy.
    let outbound = inbound_filters(&web, "127.0.0.10", 15001);
    assert!(
        !outbound
            .iter()
            .any(|f| f.contains("rbac") || f.contains("jwt")),
        "{outbound:?}"
    );

    // Deleting the policies removes the filters.
    for (kind, ns, name) in [
        (ResourceKind::RequestAuthentication, "shop", "web-jwt"),
        (ResourceKind::AuthorizationPolicy, "shop", "web-require-jwt"),
        (
            ResourceKind::AuthorizationPolicy,
            "istio-system",
            "deny-admin",
        ),
    ] {
        model.delete(&ResourceKey::new(kind, ns, name));
    }
    let web = sidecar(&model, "web-1");
    let filters = inbound_filters(&web, "127.0.0.10", 8000);
    assert!(
        !filters
            .iter()
            .any(|f| f.contains("rbac") || f.contains("jwt")),
        "{filters:?}"
    );
}

#[test]
fn an_untranslatable_policy_is_reported_against_its_object() {
    let mut resources = base_resources();
    resources.push(ra(
        "metadata: {name: broken, namespace: shop}\nspec:\n  selector: {matchLabels: {app: web}}\n  jwtRules:\n  - issuer: https://issuer.example\n    jwksUri: ftp://keys.example/jwks\n",
    ));
    let model = model_of(resources);
    let web = sidecar(&model, "web-1");
    assert!(
        web.errors.iter().any(|e| e.kind == "RequestAuthentication"
            && e.name == "broken"
            && e.path == "spec.jwtRules[0].jwksUri"),
        "{:?}",
        web.errors
    );
}

/// A TCP port gets network RBAC from the same policies, before its proxy:
/// without it a DENY or ALLOW policy on a database was not enforced at all.
#[test]
fn a_tcp_port_gets_network_rbac_before_its_proxy() {
    let mut resources = base_resources();
    resources.extend(policies());
    resources.push(ap(
        "metadata: {name: db-from-cart, namespace: shop}\nspec:\n  selector: {matchLabels: {app: db}}\n  rules:\n  - from:\n    - source: {principals: [cluster.local/ns/shop/sa/cart]}\n",
    ));
    let model = model_of(resources);
    let db = sidecar(&model, "db-1");
    assert!(db.errors.is_empty(), "{:?}", db.errors);
    let listener = db
        .listeners
        .iter()
        .find(|l| l.name == "127.0.0.13_5432")
        .expect("db's inbound listener");
    for chain in &listener.filter_chains {
        let names: Vec<&str> = chain.filters.iter().map(|f| f.name.as_str()).collect();
        assert_eq!(
            names,
            [
                "envoy.filters.network.rbac",
                "envoy.filters.network.rbac",
                "envoy.filters.network.tcp_proxy"
            ],
            "the mesh-wide DENY, then db's ALLOW, then the proxy"
        );
    }
    // Without policies, the proxy alone.
    let model = model_of(base_resources());
    let db = sidecar(&model, "db-1");
    let listener = db
        .listeners
        .iter()
        .find(|l| l.name == "127.0.0.13_5432")
        .unwrap();
    let names: Vec<&str> = listener.filter_chains[0]
        .filters
        .iter()
        .map(|f| f.name.as_str())
        .collect();
    assert_eq!(names, ["envoy.filters.network.tcp_proxy"]);
}

fn with_providers(mut model: MeshModel, yaml: &str) -> MeshModel {
    let spec: trellis_api::mesh::MeshConfigSpec = from_yaml(yaml);
    let settings = trellis_model::MeshSettings {
        extension_providers: spec.extension_providers,
        ..model.settings().clone()
    };
    model
        .apply(Resource::MeshSettings(settings))
        .expect("settings apply");
    model
}

const PROVIDERS: &str = "extensionProviders:\n- name: authz-http\n  envoyExtAuthzHttp: {service: cart.shop.svc.cluster.local, port: 8080}\n- name: authz-grpc\n  envoyExtAuthzGrpc: {service: shop/cart.shop.svc.cluster.local, port: 8080}\n- name: nowhere\n  envoyExtAuthzHttp: {service: nope.shop.svc.cluster.local, port: 80}\n";

fn custom_on_web_and_db(provider: &str) -> Vec<Resource> {
    let mut resources = base_resources();
    for app in ["web", "db"] {
        resources.push(ap(&format!(
            "metadata: {{name: {app}-ext, namespace: shop}}\nspec:\n  selector: {{matchLabels: {{app: {app}}}}}\n  action: CUSTOM\n  provider: {{name: {provider}}}\n  rules:\n  - to:\n    - operation: {{paths: [/admin]}}\n"
        )));
    }
    resources.push(ap(
        "metadata: {name: deny-admin, namespace: istio-system}\nspec:\n  action: DENY\n  rules:\n  - to:\n    - operation: {paths: [/root]}\n",
    ));
    resources
}

fn tcp_filter_names(out: &ProxyResources, name: &str) -> Vec<String> {
    let listener = out.listeners.iter().find(|l| l.name == name).unwrap();
    (listener.filter_chains[0].filters.iter())
        .map(|f| f.name.clone())
        .collect()
}

#[test]
fn custom_http_provider_puts_ext_authz_before_deny_and_skips_tcp() {
    let model = with_providers(model_of(custom_on_web_and_db("authz-http")), PROVIDERS);
    let web = sidecar(&model, "web-1");
    assert!(web.errors.is_empty(), "{:?}", web.errors);
    let filters = inbound_filters(&web, "127.0.0.10", 8000);
    assert_eq!(
        filters[..3],
        [
            "envoy.filters.http.rbac",
            "envoy.filters.http.ext_authz",
            "envoy.filters.http.rbac",
        ],
        "CUSTOM (shadow RBAC, ext_authz), then DENY"
    );
    let db = sidecar(&model, "db-1");
    assert!(db.errors.is_empty(), "{:?}", db.errors);
    assert_eq!(
        tcp_filter_names(&db, "127.0.0.13_5432"),
        [
            "envoy.filters.network.rbac",
            "envoy.filters.network.tcp_proxy"
        ],
        "an HTTP provider does not guard TCP ports (Istio)"
    );
}

#[test]
fn custom_grpc_provider_guards_tcp_ports_too() {
    let model = with_providers(model_of(custom_on_web_and_db("authz-grpc")), PROVIDERS);
    let db = sidecar(&model, "db-1");
    assert!(db.errors.is_empty(), "{:?}", db.errors);
    assert_eq!(
        tcp_filter_names(&db, "127.0.0.13_5432"),
        [
            "envoy.filters.network.rbac",
            "envoy.filters.network.ext_authz",
            "envoy.filters.network.rbac",
            "envoy.filters.network.tcp_proxy"
        ]
    );
}

#[test]
fn custom_with_unusable_provider_denies_everything_with_an_error() {
    for (provider, needle) in [
        ("missing", "no extension provider \"missing\""),
        ("nowhere", "envoyExtAuthzHttp.service: no service"),
    ] {
        let model = with_providers(model_of(custom_on_web_and_db(provider)), PROVIDERS);
        let web = sidecar(&model, "web-1");
        let errors: Vec<String> = web.errors.iter().map(ToString::to_string).collect();
        assert!(
            errors.iter().any(|e| e
                .starts_with("AuthorizationPolicy/shop/web-ext: spec.provider.name")
                && e.contains(needle)),
            "{errors:?}"
        );
        let filters = inbound_filters(&web, "127.0.0.10", 8000);
        assert!(
            !filters.contains(&"envoy.filters.http.ext_authz".to_string()),
            "{filters:?}"
        );
        assert_eq!(
            filters[0], "envoy.filters.http.rbac",
            "a deny-all RBAC comes first"
        );
    }
}
