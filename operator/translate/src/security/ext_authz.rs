//! AuthorizationPolicy `CUSTOM` -> Envoy external authorization, as Istio builds it.
//!
//! The CUSTOM policies' rules go into an RBAC filter as `shadow_rules` (they
//! enforce nothing; the matching policy's name lands in dynamic metadata under
//! `istio_ext_authz_shadow_effective_policy_id`), followed by the `ext_authz`
//! filter with `filter_enabled_metadata` on that key: only requests matching a
//! CUSTOM rule are sent to the authorizer. Both run before the DENY/ALLOW RBAC
//! filters (Istio's order: CUSTOM, DENY, ALLOW).
//!
//! The authorizer is a MeshConfig `extensionProviders` entry, reached through
//! its service's outbound cluster. One provider per workload (Istio's limit).
//! When the provider cannot be used (unknown name, several providers, service
//! not in the registry or not visible to the proxy) the workload gets an RBAC
//! filter denying every request instead (Istio's behaviour), and an error.
//! On TCP ports only a gRPC provider applies (network `ext_authz`); an HTTP
//! provider is skipped there, as Istio does.
use std::time::Duration as StdDuration;

use envoy_types::pb::envoy::config::core::v3::{
    ApiVersion, GrpcService, HeaderValue, HttpUri, grpc_service, http_uri,
};
use envoy_types::pb::envoy::config::listener::v3::{
    Filter as NetworkFilter, filter as network_filter,
};
use envoy_types::pb::envoy::config::rbac::v3::{Rbac, rbac::Action as RbacAction};
use envoy_types::pb::envoy::extensions::filters::http::ext_authz::v3::{
    AuthorizationRequest, AuthorizationResponse, BufferSettings, ExtAuthz, HttpService,
    ext_authz::Services,
};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::network::ext_authz::v3::ExtAuthz as NetworkExtAuthz;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter::ConfigType,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbacFilter;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListStringMatcher, MetadataMatcher, StringMatcher, ValueMatcher, metadata_matcher::PathSegment,
    metadata_matcher::path_segment::Segment, string_matcher, value_matcher,
};
use envoy_types::pb::envoy::r#type::v3::HttpStatus;
use trellis_api::mesh::{
    EnvoyExternalAuthorizationGrpcProvider, EnvoyExternalAuthorizationHttpProvider,
    EnvoyExternalAuthorizationRequestBody, ExtensionProviderConfig,
};

use super::authz::{
    AuthzAction, AuthzContext, AuthzPolicy, EXT_AUTHZ_POLICY_PREFIX, HTTP_RBAC, NETWORK_RBAC,
    Protocol, custom_shadow_rules, deny_all,
};
use super::{SecurityError, pack, pack_http_rbac, pack_network_rbac};

/// Name of the HTTP external authorization filter.
pub const HTTP_EXT_AUTHZ: &str = "envoy.filters.http.ext_authz";
/// Name of the network (TCP) external authorization filter.
pub const NETWORK_EXT_AUTHZ: &str = "envoy.filters.network.ext_authz";
/// `shadow_rules_stat_prefix` of the CUSTOM shadow RBAC; Envoy prefixes the
/// metadata keys with it.
pub const SHADOW_RULES_STAT_PREFIX: &str = "istio_ext_authz_";
/// The dynamic metadata key (under the RBAC filter's name) ext_authz reads.
pub const SHADOW_EFFECTIVE_POLICY_ID: &str = "istio_ext_authz_shadow_effective_policy_id";
/// The policy name of the RBAC that denies everything when CUSTOM cannot be built.
pub const DENY_ALL_BAD_CUSTOM: &str = "default-deny-all-due-to-bad-CUSTOM-action";
/// Check timeout when the provider sets none (Istio's default).
pub const DEFAULT_TIMEOUT: StdDuration = StdDuration::from_secs(600);

/// A provider whose service was found: what the filters need.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedProvider {
    pub name: String,
    /// The service's host.
    pub host: String,
    /// `outbound|<port>||<host>`.
    pub cluster: String,
    pub kind: ProviderKind,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProviderKind {
    Http(EnvoyExternalAuthorizationHttpProvider),
    Grpc(EnvoyExternalAuthorizationGrpcProvider),
}

/// Where a provider's `service` leads, or why it leads nowhere.
pub type ServiceLookup<'a> = &'a dyn Fn(&str, u16) -> Result<(String, String), String>;

/// The filters CUSTOM policies add before the other authorization filters.
#[derive(Debug, Clone, Default)]
pub struct CustomFilters {
    pub http: Vec<HttpFilter>,
    pub tcp: Vec<NetworkFilter>,
    pub errors: Vec<SecurityError>,
}

/// Picks the one provider the CUSTOM `policies` name and resolves its service
/// with `lookup` (`(service, port) -> (host, cluster)`). Errors are attached to
/// every CUSTOM policy, at `spec.provider.name`.
pub fn resolve_provider(
    policies: &[&AuthzPolicy],
    providers: &[ExtensionProviderConfig],
    lookup: ServiceLookup<'_>,
) -> Result<ResolvedProvider, Vec<SecurityError>> {
    let fail = |reason: String| -> Vec<SecurityError> {
        policies
            .iter()
            .map(|p| SecurityError::Invalid {
                object: p.object(),
                field: "spec.provider.name".into(),
                reason: format!("{reason}; every request to this workload is denied"),
            })
            .collect()
    };
    let mut names: Vec<&str> = policies
        .iter()
        .map(|p| p.provider.as_deref().unwrap_or(""))
        .collect();
    names.sort_unstable();
    names.dedup();
    let name = match names.as_slice() {
        [one] if !one.is_empty() => *one,
        [_] => return Err(fail("a CUSTOM policy needs a provider".into())),
        _ => {
            return Err(fail(format!(
                "only one provider can be used per workload, the CUSTOM policies of this workload name {names:?}"
            )));
        }
    };
    let Some((index, config)) = providers.iter().enumerate().find(|(_, p)| p.name == name) else {
        let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
        return Err(fail(format!(
            "no extension provider {name:?} in the MeshConfig's spec.extensionProviders (known: {known:?})"
        )));
    };
    let (field, service, port, kind) = match (
        &config.envoy_ext_authz_http,
        &config.envoy_ext_authz_grpc,
    ) {
        (Some(h), None) => (
            "envoyExtAuthzHttp",
            &h.service,
            h.port,
            ProviderKind::Http(h.clone()),
        ),
        (None, Some(g)) => (
            "envoyExtAuthzGrpc",
            &g.service,
            g.port,
            ProviderKind::Grpc(g.clone()),
        ),
        _ => {
            return Err(fail(format!(
                "MeshConfig spec.extensionProviders[{index}] ({name:?}) must set exactly one of envoyExtAuthzHttp and envoyExtAuthzGrpc"
            )));
        }
    };
    let at = format!("MeshConfig spec.extensionProviders[{index}].{field}");
    let port = u16::try_from(port)
        .ok()
        .filter(|p| *p != 0)
        .ok_or_else(|| fail(format!("{at}.port: {port} is not a port number")))?;
    if let Err(reason) = check_provider(&kind) {
        return Err(fail(format!("{at}.{reason}")));
    }
    let (host, cluster) =
        lookup(service, port).map_err(|reason| fail(format!("{at}.service: {reason}")))?;
    Ok(ResolvedProvider {
        name: name.to_string(),
        host,
        cluster,
        kind,
    })
}

/// What validation checks, again: a MeshConfig that skipped the webhook must
/// not make Envoy reject the listener.
fn check_provider(kind: &ProviderKind) -> Result<(), String> {
    let (timeout, status) = match kind {
        ProviderKind::Http(h) => {
            if let Some(p) = &h.path_prefix
                && !p.starts_with('/')
            {
                return Err(format!("pathPrefix: {p:?} must start with '/'"));
            }
            (&h.timeout, &h.status_on_error)
        }
        ProviderKind::Grpc(g) => (&g.timeout, &g.status_on_error),
    };
    if let Some(t) = timeout {
        let d = t.parse().map_err(|e| format!("timeout: {e}"))?;
        if d.is_zero() {
            return Err("timeout: must be more than 0".into());
        }
    }
    if let Some(s) = status {
        status_code(s)
            .ok_or_else(|| format!("statusOnError: {s:?} is not a status Envoy supports"))?;
    }
    Ok(())
}

fn status_code(value: &str) -> Option<i32> {
    let code = value.parse::<u16>().ok()?;
    trellis_api::validate::ENVOY_STATUS_CODES
        .contains(&code)
        .then_some(i32::from(code))
}

/// The CUSTOM filters for a workload: `provider` is what [`resolve_provider`]
/// returned (its errors are passed through, with deny-all filters).
pub fn custom_filters(
    policies: &[AuthzPolicy],
    provider: Result<ResolvedProvider, Vec<SecurityError>>,
    ctx: AuthzContext<'_>,
    tcp_stat_prefix: &str,
) -> CustomFilters {
    let custom: Vec<&AuthzPolicy> = policies
        .iter()
        .filter(|p| p.action == AuthzAction::Custom)
        .collect();
    if custom.is_empty() {
        return CustomFilters::default();
    }
    let provider = match provider {
        Ok(p) => p,
        Err(errors) => return deny_everything(errors, tcp_stat_prefix),
    };
    let (http_rules, mut errors) = custom_shadow_rules(&custom, ctx, Protocol::Http);
    let (tcp_rules, _same_errors) = custom_shadow_rules(&custom, ctx, Protocol::Tcp);
    let mut out = CustomFilters::default();
    out.http.push(HttpFilter {
        name: HTTP_RBAC.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_http_rbac(&RbacFilter {
            shadow_rules: Some(http_rules),
            shadow_rules_stat_prefix: SHADOW_RULES_STAT_PREFIX.to_string(),
            ..Default::default()
        }))),
        ..Default::default()
    });
    out.http.push(HttpFilter {
        name: HTTP_EXT_AUTHZ.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack(&http_ext_authz(&provider)))),
        ..Default::default()
    });
    if let ProviderKind::Grpc(g) = &provider.kind {
        out.tcp.push(NetworkFilter {
            name: NETWORK_RBAC.to_string(),
            config_type: Some(network_filter::ConfigType::TypedConfig(pack_network_rbac(
                &NetworkRbacFilter {
                    stat_prefix: tcp_stat_prefix.to_string(),
                    shadow_rules: Some(tcp_rules),
                    shadow_rules_stat_prefix: SHADOW_RULES_STAT_PREFIX.to_string(),
                    ..Default::default()
                },
            ))),
        });
        out.tcp.push(NetworkFilter {
            name: NETWORK_EXT_AUTHZ.to_string(),
            config_type: Some(network_filter::ConfigType::TypedConfig(pack(
                &NetworkExtAuthz {
                    stat_prefix: tcp_stat_prefix.to_string(),
                    grpc_service: Some(grpc_service(&provider.cluster, &g.timeout)),
                    failure_mode_allow: g.fail_open.unwrap_or(false),
                    transport_api_version: ApiVersion::V3 as i32,
                    filter_enabled_metadata: Some(enabled_by(NETWORK_RBAC)),
                    ..Default::default()
                },
            ))),
        });
    }
    out.errors.append(&mut errors);
    out
}

fn deny_everything(errors: Vec<SecurityError>, tcp_stat_prefix: &str) -> CustomFilters {
    let rules = Rbac {
        action: RbacAction::Deny as i32,
        policies: [(DENY_ALL_BAD_CUSTOM.to_string(), deny_all())].into(),
        ..Default::default()
    };
    CustomFilters {
        http: vec![HttpFilter {
            name: HTTP_RBAC.to_string(),
            config_type: Some(ConfigType::TypedConfig(pack_http_rbac(&RbacFilter {
                rules: Some(rules.clone()),
                ..Default::default()
            }))),
            ..Default::default()
        }],
        tcp: vec![NetworkFilter {
            name: NETWORK_RBAC.to_string(),
            config_type: Some(network_filter::ConfigType::TypedConfig(pack_network_rbac(
                &NetworkRbacFilter {
                    rules: Some(rules),
                    stat_prefix: tcp_stat_prefix.to_string(),
                    ..Default::default()
                },
            ))),
        }],
        errors,
    }
}

/// ext_authz runs when the CUSTOM shadow RBAC (filter `rbac_filter`) matched.
fn enabled_by(rbac_filter: &str) -> MetadataMatcher {
    MetadataMatcher {
        filter: rbac_filter.to_string(),
        path: vec![PathSegment {
            segment: Some(Segment::Key(SHADOW_EFFECTIVE_POLICY_ID.to_string())),
        }],
        value: Some(ValueMatcher {
            match_pattern: Some(value_matcher::MatchPattern::StringMatch(StringMatcher {
                match_pattern: Some(string_matcher::MatchPattern::Prefix(
                    EXT_AUTHZ_POLICY_PREFIX.to_string(),
                )),
                ignore_case: false,
            })),
        }),
        invert: false,
    }
}

fn timeout(
    t: &Option<trellis_api::duration::Duration>,
) -> envoy_types::pb::google::protobuf::Duration {
    let d = t
        .as_ref()
        .and_then(|t| t.parse().ok())
        .unwrap_or(DEFAULT_TIMEOUT);
    crate::cluster::duration(d)
}

fn grpc_service(cluster: &str, t: &Option<trellis_api::duration::Duration>) -> GrpcService {
    GrpcService {
        target_specifier: Some(grpc_service::TargetSpecifier::EnvoyGrpc(
            grpc_service::EnvoyGrpc {
                cluster_name: cluster.to_string(),
                // `|` is not allowed in an :authority; without this the
                // cluster name would be sent as the authority.
                authority: cluster.replace('|', "_."),
                ..Default::default()
            },
        )),
        timeout: Some(timeout(t)),
        ..Default::default()
    }
}

/// `x-foo-*` -> prefix, `*-foo` -> suffix, else exact; case-insensitive.
pub fn header_patterns(values: &[String]) -> Option<ListStringMatcher> {
    if values.is_empty() {
        return None;
    }
    let patterns = values
        .iter()
        .map(|v| {
            let pattern = if let Some(suffix) = v.strip_prefix('*') {
                string_matcher::MatchPattern::Suffix(suffix.to_string())
            } else if let Some(prefix) = v.strip_suffix('*') {
                string_matcher::MatchPattern::Prefix(prefix.to_string())
            } else {
                string_matcher::MatchPattern::Exact(v.clone())
            };
            StringMatcher {
                match_pattern: Some(pattern),
                ignore_case: true,
            }
        })
        .collect();
    Some(ListStringMatcher { patterns })
}

fn body(b: &Option<EnvoyExternalAuthorizationRequestBody>) -> Option<BufferSettings> {
    b.as_ref().map(|b| BufferSettings {
        max_request_bytes: b.max_request_bytes,
        allow_partial_message: b.allow_partial_message.unwrap_or(false),
        pack_as_bytes: b.pack_as_bytes.unwrap_or(false),
    })
}

/// The HTTP `ext_authz` filter's config for a resolved provider.
pub fn http_ext_authz(provider: &ResolvedProvider) -> ExtAuthz {
    let mut config = ExtAuthz {
        transport_api_version: ApiVersion::V3 as i32,
        filter_enabled_metadata: Some(enabled_by(HTTP_RBAC)),
        ..Default::default()
    };
    match &provider.kind {
        ProviderKind::Http(h) => {
            config.failure_mode_allow = h.fail_open.unwrap_or(false);
            config.clear_route_cache = h.clear_route_cache.unwrap_or(false);
            config.status_on_error = h
                .status_on_error
                .as_deref()
                .and_then(status_code)
                .map(|code| HttpStatus { code });
            config.with_request_body = body(&h.include_request_body_in_check);
            config.allowed_headers = header_patterns(&h.include_request_headers_in_check);
            let headers_to_add: Vec<HeaderValue> = h
                .include_additional_headers_in_check
                .iter()
                .map(|(key, value)| HeaderValue {
                    key: key.clone(),
                    value: value.clone(),
                    ..Default::default()
                })
                .collect();
            let response = AuthorizationResponse {
                allowed_upstream_headers: header_patterns(&h.headers_to_upstream_on_allow),
                allowed_client_headers: header_patterns(&h.headers_to_downstream_on_deny),
                allowed_client_headers_on_success: header_patterns(
                    &h.headers_to_downstream_on_allow,
                ),
                ..Default::default()
            };
            config.services = Some(Services::HttpService(HttpService {
                server_uri: Some(HttpUri {
                    // Required by Envoy, not used to connect: the cluster is.
                    uri: format!("http://{}", provider.host),
                    timeout: Some(timeout(&h.timeout)),
                    http_upstream_type: Some(http_uri::HttpUpstreamType::Cluster(
                        provider.cluster.clone(),
                    )),
                }),
                path_prefix: h.path_prefix.clone().unwrap_or_default(),
                authorization_request: (!headers_to_add.is_empty()).then(|| AuthorizationRequest {
                    headers_to_add,
                    ..Default::default()
                }),
                authorization_response: (response != AuthorizationResponse::default())
                    .then_some(response),
                ..Default::default()
            }));
        }
        ProviderKind::Grpc(g) => {
            config.failure_mode_allow = g.fail_open.unwrap_or(false);
            config.clear_route_cache = g.clear_route_cache.unwrap_or(false);
            config.status_on_error = g
                .status_on_error
                .as_deref()
                .and_then(status_code)
                .map(|code| HttpStatus { code });
            config.with_request_body = body(&g.include_request_body_in_check);
            config.services = Some(Services::GrpcService(grpc_service(
                &provider.cluster,
                &g.timeout,
            )));
        }
    }
    config
}

#[cfg(test)]
mod tests;
