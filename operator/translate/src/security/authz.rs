//! AuthorizationPolicy -> `envoy.filters.http.rbac`, in Istio's evaluation order.
//!
//! Istio evaluates CUSTOM, then DENY, then ALLOW: a request matching any DENY
//! policy is denied; if no ALLOW policy applies it is allowed; otherwise it must
//! match one ALLOW policy. AUDIT only logs. The filters returned here run in
//! that order (CUSTOM is refused: it needs an external authorizer).
//!
//! Each rule becomes one Envoy policy: permissions = AND(OR(to), to-side
//! `when` conditions), principals = AND(OR(from), from-side `when` conditions).
use envoy_types::pb::envoy::config::rbac::v3::{Policy, Rbac, rbac::Action as RbacAction};
use envoy_types::pb::envoy::extensions::filters::http::rbac::v3::Rbac as RbacFilter;
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter::ConfigType,
};

use super::authz_match::{rule_permissions, rule_principals};
use super::{ObjectRef, SecurityError, pack};

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
    let mut errors = Vec::new();
    let mut sorted: Vec<&AuthzPolicy> = policies.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));

    let mut deny = Rbac {
        action: RbacAction::Deny as i32,
        ..Default::default()
    };
    let mut allow = Rbac {
        action: RbacAction::Allow as i32,
        ..Default::default()
    };
    let mut audit = Rbac {
        action: RbacAction::Log as i32,
        ..Default::default()
    };
    let (mut any_deny, mut any_allow, mut any_audit) = (false, false, false);
    for policy in sorted {
        let target = match policy.action {
            AuthzAction::Custom => {
                errors.push(SecurityError::Unsupported {
                    object: policy.object(),
                    field: "spec.action".into(),
                    reason: "CUSTOM (external authorization) is not supported".into(),
                });
                continue;
            }
            AuthzAction::Deny => {
                any_deny = true;
                &mut deny
            }
            AuthzAction::Allow => {
                any_allow = true;
                &mut allow
            }
            AuthzAction::Audit => {
                any_audit = true;
                &mut audit
            }
        };
        match policy_rules(policy, ctx) {
            Ok(rules) => {
                for (name, rule) in rules {
                    target.policies.insert(name, rule);
                }
            }
            Err(err) => {
                if policy.action == AuthzAction::Deny {
                    target.policies.insert(
                        format!("ns[{}]-policy[{}]-invalid", policy.namespace, policy.name),
                        deny_all(),
                    );
                }
                errors.push(err);
            }
        }
    }
    let mut filters = Vec::new();
    if any_deny {
        filters.push(rbac_filter(deny, "deny"));
    }
    if any_allow {
        filters.push(rbac_filter(allow, "allow"));
    }
    if any_audit {
        filters.push(rbac_filter(audit, "audit"));
    }
    (filters, errors)
}

fn deny_all() -> Policy {
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
) -> Result<Vec<(String, Policy)>, SecurityError> {
    policy
        .rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
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

fn rbac_filter(rules: Rbac, stat_prefix: &str) -> HttpFilter {
    let filter = RbacFilter {
        rules: Some(rules),
        shadow_rules_stat_prefix: String::new(),
        ..Default::default()
    };
    let _ = stat_prefix;
    HttpFilter {
        name: HTTP_RBAC.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack(&filter))),
        ..Default::default()
    }
}

#[cfg(test)]
mod tests;
