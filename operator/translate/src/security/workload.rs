//! The security filters of one workload's inbound side: for HTTP ports
//! jwt_authn from the RequestAuthentications that apply to it, then RBAC from
//! its AuthorizationPolicies; for TCP ports network RBAC from the same
//! policies (the model decides which apply; this maps the Istio objects into
//! the builders' inputs). CUSTOM policies come first: a shadow RBAC filter and
//! the external authorizer (see [`super::ext_authz`]).
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use trellis_api::security::{self as api, AuthorizationAction};
use trellis_model::{MeshModel, Workload};

use super::authz::{
    AuthzAction, AuthzContext, AuthzPolicy, Condition, Operation, Rule, Source,
    network_rbac_filters, rbac_filters,
};
use super::ext_authz::{custom_filters, resolve_provider};
use super::jwt::{FromHeader, JwtRule, PAYLOAD_METADATA_KEY, RequestAuthnPolicy, jwt_authn_filter};
use crate::names;
use crate::types::TranslateError;

/// The inbound security of a workload's ports.
#[derive(Debug, Clone, Default)]
pub struct InboundSecurity {
    /// jwt_authn first, then CUSTOM (shadow RBAC, ext_authz), then the RBAC
    /// filters (DENY, ALLOW, AUDIT).
    pub http_filters: Vec<HttpFilter>,
    /// CUSTOM with a gRPC provider (shadow RBAC, ext_authz), then the network
    /// RBAC filters (DENY, ALLOW, AUDIT), before a TCP port's proxy.
    pub tcp_filters: Vec<Filter>,
    /// Clusters that fetch `jwksUri` key sets.
    pub clusters: Vec<Cluster>,
    pub errors: Vec<TranslateError>,
}

fn jwt_rule(rule: &api::JWTRule) -> JwtRule {
    JwtRule {
        issuer: rule.issuer.clone(),
        audiences: rule.audiences.clone(),
        jwks: rule.jwks.clone(),
        jwks_uri: rule.jwks_url().map(str::to_owned),
        jwks_uri_snake_case: rule.jwks_uri.is_none() && rule.jwks_uri_snake_case.is_some(),
        from_headers: rule
            .from_headers
            .iter()
            .map(|h| FromHeader {
                name: h.name.clone(),
                prefix: h.prefix.clone().unwrap_or_default(),
            })
            .collect(),
        from_params: rule.from_params.clone(),
        output_payload_to_header: rule.output_payload_to_header.clone(),
        output_claim_to_headers: (rule.output_claim_to_headers.iter())
            .map(|c| (c.header.clone(), c.claim.clone()))
            .collect(),
        forward_original_token: rule.forward_original_token.unwrap_or(false),
    }
}

fn source(s: &api::Source) -> Source {
    Source {
        principals: s.principals.clone(),
        not_principals: s.not_principals.clone(),
        request_principals: s.request_principals.clone(),
        not_request_principals: s.not_request_principals.clone(),
        namespaces: s.namespaces.clone(),
        not_namespaces: s.not_namespaces.clone(),
        ip_blocks: s.ip_blocks.clone(),
        not_ip_blocks: s.not_ip_blocks.clone(),
        remote_ip_blocks: s.remote_ip_blocks.clone(),
        not_remote_ip_blocks: s.not_remote_ip_blocks.clone(),
    }
}

fn operation(o: &api::Operation) -> Operation {
    Operation {
        hosts: o.hosts.clone(),
        not_hosts: o.not_hosts.clone(),
        ports: o.ports.clone(),
        not_ports: o.not_ports.clone(),
        methods: o.methods.clone(),
        not_methods: o.not_methods.clone(),
        paths: o.paths.clone(),
        not_paths: o.not_paths.clone(),
    }
}

fn rule(r: &api::Rule) -> Rule {
    Rule {
        // An empty `from: [{}]` entry matches any source, like an absent `source`.
        from: r
            .from
            .iter()
            .map(|f| f.source.as_ref().map(source).unwrap_or_default())
            .collect(),
        to: r
            .to
            .iter()
            .map(|t| t.operation.as_ref().map(operation).unwrap_or_default())
            .collect(),
        when: r
            .when
            .iter()
            .map(|c| Condition {
                key: c.key.clone(),
                values: c.values.clone(),
                not_values: c.not_values.clone(),
            })
            .collect(),
    }
}

fn action(a: Option<AuthorizationAction>) -> AuthzAction {
    match a {
        None | Some(AuthorizationAction::Allow) => AuthzAction::Allow,
        Some(AuthorizationAction::Deny) => AuthzAction::Deny,
        Some(AuthorizationAction::Audit) => AuthzAction::Audit,
        Some(AuthorizationAction::Custom) => AuthzAction::Custom,
    }
}

/// Resolves an extension provider's `service` (`host` or `namespace/host`) and
/// port to its host and outbound cluster, which must be among the proxy's
/// clusters (`has_cluster`).
fn provider_service(
    model: &MeshModel,
    has_cluster: &dyn Fn(&str) -> bool,
    service: &str,
    port: u16,
) -> Result<(String, String), String> {
    let registry = model.registry();
    let found = match service.split_once('/') {
        Some((ns, host)) => registry
            .in_namespace(host, ns)
            .ok_or_else(|| format!("no service {host:?} in namespace {ns:?}"))?,
        None => {
            let namespaces = registry.namespaces_of(service);
            if namespaces.len() > 1 {
                return Err(format!(
                    "{service:?} is defined in namespaces {namespaces:?}: write it as <namespace>/{service}"
                ));
            }
            registry
                .exact(service)
                .ok_or_else(|| format!("no service {service:?} in the mesh"))?
        }
    };
    if found.port(port).is_none() {
        return Err(format!("service {} has no port {port}", found.hostname));
    }
    let cluster = names::outbound_cluster(port, None, &found.hostname);
    if !has_cluster(&cluster) {
        return Err(format!(
            "cluster {cluster} is not visible to this proxy (exportTo, or a Sidecar's egress hosts)"
        ));
    }
    Ok((found.hostname.clone(), cluster))
}

/// jwt_authn, CUSTOM and RBAC for `workload`'s inbound HTTP connection
/// managers; `has_cluster` tells whether the proxy has an outbound cluster
/// (the external authorizer is reached through one).
pub fn inbound_security(
    model: &MeshModel,
    workload: &Workload,
    has_cluster: &dyn Fn(&str) -> bool,
) -> InboundSecurity {
    let authn: Vec<RequestAuthnPolicy> = model
        .request_authentications_for(workload)
        .into_iter()
        .map(|ra| RequestAuthnPolicy {
            namespace: ra.namespace.clone(),
            name: ra.name.clone(),
            jwt_rules: ra.object.spec.jwt_rules.iter().map(jwt_rule).collect(),
        })
        .collect();
    let authz: Vec<AuthzPolicy> = model
        .authorization_policies_for(workload)
        .into_iter()
        .map(|ap| AuthzPolicy {
            namespace: ap.namespace.clone(),
            name: ap.name.clone(),
            action: action(ap.object.spec.action),
            rules: ap.object.spec.rules.iter().map(rule).collect(),
            provider: ap.object.spec.provider.as_ref().map(|p| p.name.clone()),
        })
        .collect();
    let mut out = InboundSecurity::default();
    if !authn.is_empty() {
        let (filter, clusters, errors) = jwt_authn_filter(&authn);
        out.http_filters.extend(filter);
        out.clusters = clusters;
        out.errors
            .extend(errors.into_iter().map(TranslateError::from));
    }
    if !authz.is_empty() {
        let ctx = AuthzContext {
            jwt_payload_key: PAYLOAD_METADATA_KEY,
        };
        let custom: Vec<&AuthzPolicy> = (authz.iter())
            .filter(|p| p.action == AuthzAction::Custom)
            .collect();
        if !custom.is_empty() {
            let lookup =
                |service: &str, port: u16| provider_service(model, has_cluster, service, port);
            let provider =
                resolve_provider(&custom, &model.settings().extension_providers, &lookup);
            let filters = custom_filters(&authz, provider, ctx, "inbound_tcp.");
            out.http_filters.extend(filters.http);
            out.tcp_filters.extend(filters.tcp);
            out.errors
                .extend(filters.errors.into_iter().map(TranslateError::from));
        }
        let (filters, errors) = rbac_filters(&authz, ctx);
        out.http_filters.extend(filters);
        out.errors
            .extend(errors.into_iter().map(TranslateError::from));
        // The same policies read for TCP: a policy's errors are reported once.
        let (filters, _same_errors) = network_rbac_filters(&authz, ctx, "inbound_tcp.");
        out.tcp_filters.extend(filters);
    }
    out
}
