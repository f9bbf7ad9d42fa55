use super::*;
use crate::security::authz::{Operation, Rule};
use envoy_types::pb::envoy::config::rbac::v3::permission;
use proptest::prelude::*;
use prost::{Message, Name};

const CTX: AuthzContext<'static> = AuthzContext {
    jwt_payload_key: "payload",
};
const CLUSTER: &str = "outbound|8000||ext-authz.foo.svc.cluster.local";

fn custom(name: &str, provider: &str, paths: &[&str]) -> AuthzPolicy {
    AuthzPolicy {
        namespace: "shop".into(),
        name: name.into(),
        action: AuthzAction::Custom,
        rules: vec![Rule {
            to: vec![Operation {
                paths: paths.iter().map(|p| p.to_string()).collect(),
                ..Default::default()
            }],
            ..Default::default()
        }],
        provider: Some(provider.into()),
    }
}

fn http_provider(name: &str) -> ExtensionProviderConfig {
    ExtensionProviderConfig {
        name: name.into(),
        envoy_ext_authz_http: Some(EnvoyExternalAuthorizationHttpProvider {
            service: "ext-authz.foo.svc.cluster.local".into(),
            port: 8000,
            include_request_headers_in_check: vec!["x-ext-authz".into(), "x-user-*".into()],
            headers_to_upstream_on_allow: vec!["*-result".into()],
            status_on_error: Some("503".into()),
            timeout: Some("250ms".into()),
            path_prefix: Some("/check".into()),
            include_additional_headers_in_check: [("x-from".into(), "mesh".into())].into(),
            ..Default::default()
        }),
        envoy_ext_authz_grpc: None,
    }
}

fn grpc_provider(name: &str) -> ExtensionProviderConfig {
    ExtensionProviderConfig {
        name: name.into(),
        envoy_ext_authz_http: None,
        envoy_ext_authz_grpc: Some(EnvoyExternalAuthorizationGrpcProvider {
            service: "ext-authz.foo.svc.cluster.local".into(),
            port: 9000,
            fail_open: Some(true),
            ..Default::default()
        }),
    }
}

fn found(service: &str, port: u16) -> Result<(String, String), String> {
    let host = service.rsplit('/').next().unwrap().to_string();
    Ok((host.clone(), format!("outbound|{port}||{host}")))
}

fn missing(service: &str, _: u16) -> Result<(String, String), String> {
    Err(format!("no service {service:?} in the mesh"))
}

fn rbac_of(filter: &HttpFilter) -> RbacFilter {
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("typed config expected");
    };
    RbacFilter::decode(any.value.as_slice()).unwrap()
}

fn ext_authz_of(filter: &HttpFilter) -> ExtAuthz {
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("typed config expected");
    };
    assert_eq!(any.type_url, ExtAuthz::type_url());
    ExtAuthz::decode(any.value.as_slice()).unwrap()
}

fn build(
    policies: &[AuthzPolicy],
    providers: &[ExtensionProviderConfig],
    lookup: ServiceLookup<'_>,
) -> CustomFilters {
    let custom: Vec<&AuthzPolicy> = policies
        .iter()
        .filter(|p| p.action == AuthzAction::Custom)
        .collect();
    let provider = resolve_provider(&custom, providers, lookup);
    custom_filters(policies, provider, CTX, "inbound_tcp.")
}

#[test]
fn http_provider_gives_shadow_rbac_then_ext_authz_gated_on_its_metadata() {
    let out = build(
        &[custom("ext", "authz", &["/admin/*"])],
        &[http_provider("authz")],
        &found,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let names: Vec<&str> = out.http.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(names, [HTTP_RBAC, HTTP_EXT_AUTHZ]);
    assert!(
        out.tcp.is_empty(),
        "an HTTP provider is skipped on TCP ports"
    );

    let rbac = rbac_of(&out.http[0]);
    assert!(rbac.rules.is_none(), "the shadow RBAC enforces nothing");
    assert_eq!(rbac.shadow_rules_stat_prefix, SHADOW_RULES_STAT_PREFIX);
    let shadow = rbac.shadow_rules.unwrap();
    assert_eq!(shadow.action, RbacAction::Deny as i32);
    let names: Vec<&String> = shadow.policies.keys().collect();
    assert_eq!(names, ["istio-ext-authz-ns[shop]-policy[ext]-rule[0]"]);

    let ext = ext_authz_of(&out.http[1]);
    let gate = ext.filter_enabled_metadata.unwrap();
    assert_eq!(gate.filter, HTTP_RBAC);
    assert_eq!(
        gate.path[0].segment,
        Some(Segment::Key(format!(
            "{SHADOW_RULES_STAT_PREFIX}shadow_effective_policy_id"
        )))
    );
    assert!(!ext.failure_mode_allow);
    assert_eq!(ext.status_on_error.unwrap().code, 503);
    assert_eq!(ext.transport_api_version, ApiVersion::V3 as i32);
    let allowed = ext.allowed_headers.unwrap().patterns;
    assert_eq!(
        allowed[0].match_pattern,
        Some(string_matcher::MatchPattern::Exact("x-ext-authz".into()))
    );
    assert_eq!(
        allowed[1].match_pattern,
        Some(string_matcher::MatchPattern::Prefix("x-user-".into()))
    );
    assert!(allowed.iter().all(|p| p.ignore_case));
    let Some(Services::HttpService(http)) = ext.services else {
        panic!("http service expected");
    };
    let uri = http.server_uri.unwrap();
    assert_eq!(
        uri.http_upstream_type,
        Some(http_uri::HttpUpstreamType::Cluster(CLUSTER.into()))
    );
    assert_eq!(uri.uri, "http://ext-authz.foo.svc.cluster.local");
    assert_eq!(uri.timeout.unwrap().nanos, 250_000_000);
    assert_eq!(http.path_prefix, "/check");
    let request = http.authorization_request.unwrap();
    assert_eq!(request.headers_to_add[0].key, "x-from");
    let response = http.authorization_response.unwrap();
    assert_eq!(
        response.allowed_upstream_headers.unwrap().patterns[0].match_pattern,
        Some(string_matcher::MatchPattern::Suffix("-result".into()))
    );
    assert!(response.allowed_client_headers.is_none());
}

#[test]
fn grpc_provider_also_guards_tcp_ports_with_network_filters() {
    let out = build(
        &[custom("ext", "opa", &["/admin"])],
        &[grpc_provider("opa")],
        &found,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let tcp: Vec<&str> = out.tcp.iter().map(|f| f.name.as_str()).collect();
    assert_eq!(tcp, [NETWORK_RBAC, NETWORK_EXT_AUTHZ]);
    let Some(network_filter::ConfigType::TypedConfig(any)) = &out.tcp[1].config_type else {
        panic!("typed config expected");
    };
    let net = NetworkExtAuthz::decode(any.value.as_slice()).unwrap();
    assert!(net.failure_mode_allow);
    assert_eq!(net.filter_enabled_metadata.unwrap().filter, NETWORK_RBAC);
    let Some(grpc_service::TargetSpecifier::EnvoyGrpc(g)) =
        net.grpc_service.unwrap().target_specifier
    else {
        panic!("envoy_grpc expected");
    };
    assert_eq!(
        g.cluster_name,
        "outbound|9000||ext-authz.foo.svc.cluster.local"
    );
    assert!(!g.authority.contains('|'), "{}", g.authority);
    // On TCP the path (HTTP-only) is dropped, DENY-style: every connection is checked.
    let Some(network_filter::ConfigType::TypedConfig(any)) = &out.tcp[0].config_type else {
        panic!("typed config expected");
    };
    let rbac = NetworkRbacFilter::decode(any.value.as_slice()).unwrap();
    let shadow = rbac.shadow_rules.unwrap();
    let policy = shadow.policies.values().next().unwrap();
    assert!(matches!(
        policy.permissions[0].rule,
        Some(permission::Rule::Any(true))
    ));
    let ext = ext_authz_of(&out.http[1]);
    assert!(matches!(ext.services, Some(Services::GrpcService(_))));
}

fn assert_denies_everything(out: &CustomFilters, needle: &str) {
    assert_eq!(out.http.len(), 1);
    let rules = rbac_of(&out.http[0]).rules.expect("enforced rules");
    assert_eq!(rules.action, RbacAction::Deny as i32);
    assert!(rules.policies.contains_key(DENY_ALL_BAD_CUSTOM));
    assert_eq!(out.tcp.len(), 1, "TCP ports are denied too");
    assert!(!out.errors.is_empty());
    for e in &out.errors {
        let text = e.to_string();
        assert!(
            text.contains("AuthorizationPolicy/shop/") && text.contains("spec.provider.name"),
            "{text}"
        );
        assert!(text.contains(needle), "{text} lacks {needle}");
    }
}

#[test]
fn unknown_provider_denies_everything_and_names_the_field() {
    let out = build(
        &[custom("ext", "nope", &["/a"])],
        &[http_provider("authz")],
        &found,
    );
    assert_denies_everything(&out, "no extension provider \"nope\"");
}

#[test]
fn two_providers_on_one_workload_deny_everything() {
    let out = build(
        &[custom("a", "authz", &["/a"]), custom("b", "opa", &["/b"])],
        &[http_provider("authz"), grpc_provider("opa")],
        &found,
    );
    assert_denies_everything(&out, "only one provider");
    assert_eq!(out.errors.len(), 2, "each CUSTOM policy is told");
}

#[test]
fn two_policies_with_the_same_provider_share_one_filter() {
    let out = build(
        &[custom("a", "authz", &["/a"]), custom("b", "authz", &["/b"])],
        &[http_provider("authz")],
        &found,
    );
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let shadow = rbac_of(&out.http[0]).shadow_rules.unwrap();
    assert_eq!(shadow.policies.len(), 2);
}

#[test]
fn unresolvable_service_denies_everything_and_names_the_mesh_config_field() {
    let out = build(
        &[custom("ext", "authz", &["/a"])],
        &[http_provider("authz")],
        &missing,
    );
    assert_denies_everything(
        &out,
        "spec.extensionProviders[0].envoyExtAuthzHttp.service: no service",
    );
}

#[test]
fn invalid_provider_values_deny_everything() {
    let mut bad = http_provider("authz");
    bad.envoy_ext_authz_http.as_mut().unwrap().status_on_error = Some("299".into());
    let out = build(&[custom("ext", "authz", &["/a"])], &[bad], &found);
    assert_denies_everything(&out, "statusOnError");
    let mut bad = grpc_provider("authz");
    bad.envoy_ext_authz_grpc.as_mut().unwrap().port = 0;
    let out = build(&[custom("ext", "authz", &["/a"])], &[bad], &found);
    assert_denies_everything(&out, "port");
}

#[test]
fn no_custom_policy_no_filters() {
    let mut allow = custom("ext", "authz", &["/a"]);
    allow.action = AuthzAction::Allow;
    let out = custom_filters(&[allow], Err(vec![]), CTX, "inbound_tcp.");
    assert!(out.http.is_empty() && out.tcp.is_empty() && out.errors.is_empty());
}

#[test]
fn status_codes_match_envoys_enum() {
    use envoy_types::pb::envoy::r#type::v3::StatusCode;
    for code in 0..=999u16 {
        let defined = code != 0 && StatusCode::try_from(i32::from(code)).is_ok();
        assert_eq!(
            status_code(&code.to_string()).is_some(),
            defined,
            "status {code}"
        );
    }
}

proptest! {
    // Arbitrary provider and rule values never panic: the result is working
    // filters, or deny-all filters with an error on every CUSTOM policy.
    #[test]
    fn arbitrary_providers_never_panic(
        service in "[a-z./*]{0,20}", port in any::<u32>(), status in "[0-9a-z]{0,4}",
        timeout in "[0-9a-z.]{0,6}", prefix in "[/a-z?*]{0,8}", headers in proptest::collection::vec("[-a-z*]{0,6}", 0..3),
        paths in proptest::collection::vec("[/a-z*]{0,6}", 0..3), grpc in any::<bool>(),
        name in "[a-z]{0,3}", resolves in any::<bool>(),
    ) {
        let timeout = Some(trellis_api::duration::Duration(timeout));
        let provider = if grpc {
            ExtensionProviderConfig {
                name: "p".into(),
                envoy_ext_authz_grpc: Some(EnvoyExternalAuthorizationGrpcProvider {
                    service, port, status_on_error: Some(status), timeout, ..Default::default()
                }),
                ..Default::default()
            }
        } else {
            ExtensionProviderConfig {
                name: "p".into(),
                envoy_ext_authz_http: Some(EnvoyExternalAuthorizationHttpProvider {
                    service, port, status_on_error: Some(status), timeout,
                    path_prefix: Some(prefix),
                    include_request_headers_in_check: headers.clone(),
                    headers_to_upstream_on_allow: headers,
                    ..Default::default()
                }),
                ..Default::default()
            }
        };
        let paths: Vec<&str> = paths.iter().map(String::as_str).collect();
        let policy = custom("x", &name, &paths);
        let lookup: ServiceLookup<'_> = if resolves { &found } else { &missing };
        let out = build(&[policy], &[provider], lookup);
        prop_assert!(!out.http.is_empty());
        if out.http.len() == 1 {
            // deny-all: always explained
            prop_assert!(!out.errors.is_empty());
        } else {
            prop_assert_eq!(out.http[1].name.as_str(), HTTP_EXT_AUTHZ);
            let ext = ext_authz_of(&out.http[1]);
            prop_assert!(ext.filter_enabled_metadata.is_some());
        }
    }
}
