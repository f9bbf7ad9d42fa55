//! AuthorizationPolicy -> `envoy.filters.http.rbac`, in Istio's evaluation order.
//!
//! Istio evaluates CUSTOM, then DENY, then ALLOW: a request matching any DENY
//! policy is denied; if no ALLOW policy applies it is allowed; otherwise it must
//! match one ALLOW policy. AUDIT only logs. The filters returned here run in
//! that order; CUSTOM policies are left to [`super::ext_authz`], which runs
//! before them and reads their rules through [`custom_shadow_rules`].
//!
//! Each rule becomes one Envoy policy: permissions = AND(OR(to), to-side
//! `when` conditions), principals = AND(OR(from), from-side `when` conditions).
use envoy_types::pb::envoy::config::listener::v3::{
    Filter as NetworkFilter, filter as network_filter,
};
use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac, rbac::Action as RbacAction};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter::ConfigType,
};
use envoy_types::pb::envoy::extensions::filters::network::rbac::v3::Rbac as NetworkRbacFilter;

use super::authz_match::{rule_permissions, rule_principals};
use super::{ObjectRef, SecurityError, pack_http_rbac, pack_network_rbac};

/// Name of the HTTP RBAC filter.
pub const HTTP_RBAC: &str = "envoy.filters.http.rbac";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum AuthzAction {
    #[default]
    Allow,
    Deny,
    Audit,
    Custom,
}

/// `rules[].from[].source`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Source {
    pub principals: Vec<String>,
    pub not_principals: Vec<String>,
    pub request_principals: Vec<String>,
    pub not_request_principals: Vec<String>,
    pub namespaces: Vec<String>,
    pub not_namespaces: Vec<String>,
    pub ip_blocks: Vec<String>,
    pub not_ip_blocks: Vec<String>,
    pub remote_ip_blocks: Vec<String>,
    pub not_remote_ip_blocks: Vec<String>,
}

/// `rules[].to[].operation`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Operation {
    pub hosts: Vec<String>,
    pub not_hosts: Vec<String>,
    pub ports: Vec<String>,
    pub not_ports: Vec<String>,
    pub methods: Vec<String>,
    pub not_methods: Vec<String>,
    pub paths: Vec<String>,
    pub not_paths: Vec<String>,
}

/// `rules[].when[]`.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Condition {
    pub key: String,
    pub values: Vec<String>,
    pub not_values: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Rule {
    pub from: Vec<Source>,
    pub to: Vec<Operation>,
    pub when: Vec<Condition>,
}

/// The fields of an AuthorizationPolicy that apply to one workload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AuthzPolicy {
    pub namespace: String,
    pub name: String,
    pub action: AuthzAction,
    /// `None` when `rules` is absent: an ALLOW policy without rules allows nothing.
    pub rules: Vec<Rule>,
    /// `spec.provider.name` (CUSTOM policies).
    pub provider: Option<String>,
}

impl AuthzPolicy {
    pub(crate) fn object(&self) -> ObjectRef {
        ObjectRef::new("AuthorizationPolicy", &self.namespace, &self.name)
    }
}

/// What the RBAC builder needs to know about the mesh.
#[derive(Debug, Clone, Copy)]
pub struct AuthzContext<'a> {
    /// Metadata key under `envoy.filters.http.jwt_authn` that holds the verified
    /// JWT payload (see `jwt::PAYLOAD_METADATA_KEY`).
    pub jwt_payload_key: &'a str,
}

/// The RBAC filters for the policies that apply to a workload, in evaluation
/// order (DENY, ALLOW, AUDIT). Policies that cannot be translated are left out
/// and returned as errors; an untranslatable ALLOW policy still counts as an
/// ALLOW policy that matches nothing (fail closed), and an untranslatable DENY
/// policy makes the DENY filter deny everything (fail closed).
pub fn rbac_filters(
    policies: &[AuthzPolicy],
    ctx: AuthzContext<'_>,
) -> (Vec<HttpFilter>, Vec<SecurityError>) {
    let (configs, errors) = rbac_configs(policies, ctx, Protocol::Http);
    let filters = configs
        .into_iter()
        .map(|rules| HttpFilter {
            name: HTTP_RBAC.to_string(),
            config_type: Some(ConfigType::TypedConfig(pack_http_rbac(&RbacFilter {
                rules: Some(rules),
                ..Default::default()
            }))),
            ..Default::default()
        })
        .collect();
    (filters, errors)
}

/// Name of the network (TCP) RBAC filter.
pub const NETWORK_RBAC: &str = "envoy.filters.network.rbac";

/// The network RBAC filters for a TCP port, in evaluation order, as Istio builds
/// them: HTTP-only fields (hosts, methods, paths, request principals, request
/// headers and JWT claims) cannot be checked on TCP, so an ALLOW/AUDIT rule using
/// them never matches, and a DENY rule is checked without them (denying more).
pub fn network_rbac_filters(
    policies: &[AuthzPolicy],
    ctx: AuthzContext<'_>,
    stat_prefix: &str,
) -> (Vec<NetworkFilter>, Vec<SecurityError>) {
    let (configs, errors) = rbac_configs(policies, ctx, Protocol::Tcp);
    let filters = configs
        .into_iter()
        .map(|rules| NetworkFilter {
            name: NETWORK_RBAC.to_string(),
            config_type: Some(network_filter::ConfigType::TypedConfig(pack_network_rbac(
                &NetworkRbacFilter {
                    rules: Some(rules),
                    stat_prefix: stat_prefix.to_string(),
                    ..Default::default()
                },
            ))),
        })
        .collect();
    (filters, errors)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Protocol {
    Http,
    Tcp,
}

fn rbac_configs(
    policies: &[AuthzPolicy],
    ctx: AuthzContext<'_>,
    protocol: Protocol,
) -> (Vec<Rbac>, Vec<SecurityError>) {
    let mut errors = Vec::new();
    let mut sorted: Vec<&AuthzPolicy> = policies.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let empty = |action: RbacAction| Rbac {
        action: action as i32,
        ..Default::default()
    };
    // slots in evaluation order: DENY, ALLOW, AUDIT (LOG)
    let mut slots = [
        (false, empty(RbacAction::Deny)),
        (false, empty(RbacAction::Allow)),
        (false, empty(RbacAction::Log)),
    ];
    for policy in sorted {
        let slot = match policy.action {
            // Built by ext_authz (a shadow RBAC filter and the authorizer).
            AuthzAction::Custom => continue,
            AuthzAction::Deny => &mut slots[0],
            AuthzAction::Allow => &mut slots[1],
            AuthzAction::Audit => &mut slots[2],
        };
        slot.0 = true;
        match policy_rules(policy, ctx, protocol) {
            Ok(rules) => slot.1.policies.extend(rules),
            Err(err) => {
                if policy.action == AuthzAction::Deny {
                    slot.1.policies.insert(
                        format!("ns[{}]-policy[{}]-invalid", policy.namespace, policy.name),
                        deny_all(),
                    );
                }
                errors.push(err);
            }
        }
    }
    let configs = slots
        .into_iter()
        .filter(|(used, _)| *used)
        .map(|(_, rbac)| rbac)
        .collect();
    (configs, errors)
}

/// The rule as it can be checked on a TCP connection; `None` when it can never match.
fn tcp_view(rule: &Rule, action: AuthzAction) -> Option<Rule> {
    let http_condition = |c: &Condition| c.key.starts_with("request.");
    let has_http = rule.to.iter().any(|o| {
        !(o.hosts.is_empty()
            && o.not_hosts.is_empty()
            && o.methods.is_empty()
            && o.not_methods.is_empty()
            && o.paths.is_empty()
            && o.not_paths.is_empty())
    }) || rule
        .from
        .iter()
        .any(|s| !(s.request_principals.is_empty() && s.not_request_principals.is_empty()))
        || rule.when.iter().any(http_condition);
    if !has_http {
        return Some(rule.clone());
    }
    if action != AuthzAction::Deny {
        return None;
    }
    Some(Rule {
        from: rule
            .from
            .iter()
            .map(|s| Source {
                request_principals: vec![],
                not_request_principals: vec![],
                ..s.clone()
            })
            .collect(),
        to: rule
            .to
            .iter()
            .map(|o| Operation {
                ports: o.ports.clone(),
                not_ports: o.not_ports.clone(),
                ..Default::default()
            })
            .collect(),
        when: rule
            .when
            .iter()
            .filter(|c| !http_condition(c))
            .cloned()
            .collect(),
    })
}

/// Prefix of the shadow policies of CUSTOM rules; ext_authz runs when the
/// effective shadow policy's name starts with it (Istio's names).
pub const EXT_AUTHZ_POLICY_PREFIX: &str = "istio-ext-authz";

/// The rules of the CUSTOM `policies` as one RBAC whose matching policy names
/// the request for the external authorizer: meant as `shadow_rules`, so it
/// enforces nothing and only records the match in dynamic metadata. Built with
/// the DENY action, as Istio does, so on TCP a rule with HTTP-only fields is
/// checked without them (more connections go to the authorizer, never fewer).
/// A rule that cannot be translated sends every request to the authorizer.
pub(crate) fn custom_shadow_rules(
    policies: &[&AuthzPolicy],
    ctx: AuthzContext<'_>,
    protocol: Protocol,
) -> (Rbac, Vec<SecurityError>) {
    let mut errors = Vec::new();
    let mut rbac = Rbac {
        action: RbacAction::Deny as i32,
        ..Default::default()
    };
    let mut sorted = policies.to_vec();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    for policy in sorted {
        let as_deny = AuthzPolicy {
            action: AuthzAction::Deny,
            ..policy.clone()
        };
        match policy_rules(&as_deny, ctx, protocol) {
            Ok(rules) => rbac.policies.extend(
                rules
                    .into_iter()
                    .map(|(name, p)| (format!("{EXT_AUTHZ_POLICY_PREFIX}-{name}"), p)),
            ),
            Err(err) => {
                rbac.policies.insert(
                    format!(
                        "{EXT_AUTHZ_POLICY_PREFIX}-ns[{}]-policy[{}]-invalid",
                        policy.namespace, policy.name
                    ),
                    deny_all(),
                );
                errors.push(err);
            }
        }
    }
    (rbac, errors)
}

/// A policy matching every request.
pub(crate) fn deny_all() -> Policy {
    use envoy_types::pb::envoy::config::rbac::v3::{Permission, Principal, permission, principal};
    Policy {
        permissions: vec![Permission {
            rule: Some(permission::Rule::Any(true)),
        }],
        principals: vec![Principal {
            identifier: Some(principal::Identifier::Any(true)),
        }],
        ..Default::default()
    }
}

fn policy_rules(
    policy: &AuthzPolicy,
    ctx: AuthzContext<'_>,
    protocol: Protocol,
) -> Result<Vec<(String, Policy)>, SecurityError> {
    policy
        .rules
        .iter()
        .enumerate()
        .filter_map(|(i, rule)| match protocol {
            Protocol::Http => Some((i, rule.clone())),
            Protocol::Tcp => tcp_view(rule, policy.action).map(|r| (i, r)),
        })
        .map(|(i, rule)| {
            let rule = &rule;
            let field = format!("spec.rules[{i}]");
            let object = policy.object();
            Ok((
                format!("ns[{}]-policy[{}]-rule[{i}]", policy.namespace, policy.name),
                Policy {
                    permissions: vec![rule_permissions(rule, &object, &field)?],
                    principals: vec![rule_principals(rule, &object, &field, ctx)?],
                    ..Default::default()
                },
            ))
        })
        .collect()
}

#[cfg(test)]
mod tests;
