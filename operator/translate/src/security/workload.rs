//! The security filters of one workload's inbound side: for HTTP ports
//! jwt_authn from the RequestAuthentications that apply to it, then RBAC from
//! its AuthorizationPolicies; for TCP ports network RBAC from the same
//! policies (the model decides which apply; this maps the Istio objects into
//! the builders' inputs).
use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::Filter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use trellis_api::security::{self as api, AuthorizationAction};
use trellis_model::{MeshModel, Workload};

use super::authz::{
    AuthzAction, AuthzContext, AuthzPolicy, Condition, Operation, Rule, Source,
    network_rbac_filters, rbac_filters,
};
use super::jwt::{FromHeader, JwtRule, PAYLOAD_METADATA_KEY, RequestAuthnPolicy, jwt_authn_filter};
use crate::types::TranslateError;

/// The inbound security of a workload's ports.
#[derive(Debug, Clone, Default)]
pub struct InboundSecurity {
    /// jwt_authn first, then the RBAC filters (DENY, ALLOW, AUDIT).
    pub http_filters: Vec<HttpFilter>,
    /// The network RBAC filters (DENY, ALLOW, AUDIT), before a TCP port's proxy.
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
        jwks_uri: rule.jwks_uri.clone(),
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

/// jwt_authn and RBAC for `workload`'s inbound HTTP connection managers.
pub fn inbound_security(model: &MeshModel, workload: &Workload) -> InboundSecurity {
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
        let (filters, errors) = rbac_filters(&authz, ctx);
        out.http_filters.extend(filters);
        out.errors
            .extend(errors.into_iter().map(TranslateError::from));
        // The same policies read for TCP: a policy's errors are reported once.
        let (filters, _same_errors) = network_rbac_filters(&authz, ctx, "inbound_tcp.");
        out.tcp_filters = filters;
    }
    out
}
