use super::*;
use envoy_types::pb::envoy::config::rbac::v3::{permission, principal};
use proptest::prelude::*;
use prost::Message;

const CTX: AuthzContext<'static> = AuthzContext {
    jwt_payload_key: "payload",
};

fn decode(filter: &HttpFilter) -> Rbac {
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("typed config expected");
    };
    RbacFilter::decode(any.value.as_slice())
        .unwrap()
        .rules
        .unwrap()
}

fn policy(name: &str, action: AuthzAction, rules: Vec<Rule>) -> AuthzPolicy {
    AuthzPolicy {
        namespace: "shop".into(),
        name: name.into(),
        action,
        rules,
        provider: None,
    }
}

#[test]
fn no_policy_no_filter() {
    let (filters, errors) = rbac_filters(&[], CTX);
    assert!(filters.is_empty() && errors.is_empty());
}

#[test]
fn deny_runs_before_allow_and_audit_logs() {
    let allow = policy("a", AuthzAction::Allow, vec![Rule::default()]);
    let deny = policy("d", AuthzAction::Deny, vec![Rule::default()]);
    let audit = policy("z", AuthzAction::Audit, vec![Rule::default()]);
    let (filters, errors) = rbac_filters(&[allow, audit, deny], CTX);
    assert!(errors.is_empty());
    let actions: Vec<i32> = filters.iter().map(|f| decode(f).action).collect();
    assert_eq!(
        actions,
        vec![
            RbacAction::Deny as i32,
            RbacAction::Allow as i32,
            RbacAction::Log as i32
        ]
    );
}

#[test]
fn allow_without_rules_allows_nothing() {
    let (filters, _) = rbac_filters(&[policy("nothing", AuthzAction::Allow, vec![])], CTX);
    let rbac = decode(&filters[0]);
    assert_eq!(rbac.action, RbacAction::Allow as i32);
    assert!(
        rbac.policies.is_empty(),
        "an ALLOW filter with no policies denies everything"
    );
}

#[test]
fn custom_policies_are_left_to_ext_authz() {
    let (filters, errors) = rbac_filters(
        &[policy("ext", AuthzAction::Custom, vec![Rule::default()])],
        CTX,
    );
    assert!(filters.is_empty(), "no enforcing RBAC filter for CUSTOM");
    assert!(errors.is_empty(), "{errors:?}");
}

#[test]
fn rule_maps_sources_operations_and_conditions() {
    let rule = Rule {
        from: vec![Source {
            principals: vec!["cluster.local/ns/shop/sa/web".into()],
            not_namespaces: vec!["test".into()],
            ..Default::default()
        }],
        to: vec![Operation {
            methods: vec!["GET".into()],
            paths: vec!["/api/*".into()],
            ports: vec!["8080".into()],
            ..Default::default()
        }],
        when: vec![
            Condition {
                key: "request.headers[x-tenant]".into(),
                values: vec!["acme".into()],
                ..Default::default()
            },
            Condition {
                key: "destination.port".into(),
                not_values: vec!["9090".into()],
                ..Default::default()
            },
        ],
    };
    let (filters, errors) = rbac_filters(&[policy("p", AuthzAction::Allow, vec![rule])], CTX);
    assert!(errors.is_empty(), "{errors:?}");
    let rbac = decode(&filters[0]);
    let p = &rbac.policies["ns[shop]-policy[p]-rule[0]"];
    // permissions: AND(operation, NOT(port 9090)); operation: AND(port, method, path)
    let Some(permission::Rule::AndRules(set)) = &p.permissions[0].rule else {
        panic!("and expected: {:?}", p.permissions[0]);
    };
    assert_eq!(set.rules.len(), 2);
    assert!(matches!(
        set.rules[1].rule,
        Some(permission::Rule::NotRule(_))
    ));
    let Some(permission::Rule::AndRules(op)) = &set.rules[0].rule else {
        panic!("operation and expected");
    };
    assert_eq!(op.rules.len(), 3);
    assert!(matches!(
        op.rules[0].rule,
        Some(permission::Rule::DestinationPort(8080))
    ));
    // principals: AND(source, header condition)
    let Some(principal::Identifier::AndIds(ids)) = &p.principals[0].identifier else {
        panic!("and ids expected");
    };
    assert_eq!(ids.ids.len(), 2);
    assert!(matches!(
        ids.ids[1].identifier,
        Some(principal::Identifier::Header(_))
    ));
}

#[test]
fn unsupported_condition_and_bad_values_name_the_field() {
    let bad_key = Rule {
        when: vec![Condition {
            key: "request.regex.headers[x]".into(),
            values: vec!["a".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let bad_port = Rule {
        to: vec![Operation {
            ports: vec!["http".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let (filters, errors) = rbac_filters(
        &[
            policy("k", AuthzAction::Allow, vec![bad_key]),
            policy("p", AuthzAction::Deny, vec![bad_port]),
        ],
        CTX,
    );
    assert_eq!(errors.len(), 2);
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("spec.rules[0].when[0].key")),
        "{texts:?}"
    );
    assert!(
        texts
            .iter()
            .any(|t| t.contains("spec.rules[0].to[0].operation.ports")),
        "{texts:?}"
    );
    // the broken DENY policy fails closed
    let deny = decode(&filters[0]);
    assert_eq!(deny.action, RbacAction::Deny as i32);
    assert!(deny.policies.keys().any(|k| k.ends_with("-invalid")));
}

#[test]
fn request_principal_forms() {
    let rp = |v: &str| Rule {
        from: vec![Source {
            request_principals: vec![v.into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    for ok in [
        "*",
        "https://issuer.example/user-1",
        "https://issuer.example/*",
        "*/user-1",
    ] {
        let (_, errors) = rbac_filters(&[policy("rp", AuthzAction::Allow, vec![rp(ok)])], CTX);
        assert!(errors.is_empty(), "{ok}: {errors:?}");
    }
    let (_, errors) = rbac_filters(&[policy("rp", AuthzAction::Allow, vec![rp("iss*/x")])], CTX);
    assert!(errors[0].to_string().contains("requestPrincipals"));
}

fn arb_strings() -> impl Strategy<Value = Vec<String>> {
    proptest::collection::vec("[a-z0-9*/.:\\[\\]-]{0,12}", 0..3)
}

proptest! {
    // Arbitrary field values never panic: each policy translates or yields an error.
    #[test]
    fn arbitrary_policies_never_panic(
        principals in arb_strings(), ips in arb_strings(), ports in arb_strings(),
        paths in arb_strings(), key in "[a-z.\\[\\]]{0,30}", values in arb_strings(),
        rps in arb_strings(),
    ) {
        let rule = Rule {
            from: vec![Source { principals, ip_blocks: ips, request_principals: rps, ..Default::default() }],
            to: vec![Operation { ports, paths, ..Default::default() }],
            when: vec![Condition { key, values, not_values: vec![] }],
        };
        let (filters, errors) = rbac_filters(&[policy("x", AuthzAction::Allow, vec![rule])], CTX);
        prop_assert_eq!(filters.len(), 1);
        prop_assert!(errors.len() <= 1);
    }
}

#[test]
fn tcp_drops_http_only_allow_rules_and_strips_deny_rules() {
    let http_allow = Rule {
        to: vec![Operation {
            methods: vec!["GET".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let port_allow = Rule {
        to: vec![Operation {
            ports: vec!["5432".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let http_deny = Rule {
        to: vec![Operation {
            paths: vec!["/admin".into()],
            ports: vec!["5432".into()],
            ..Default::default()
        }],
        ..Default::default()
    };
    let policies = [
        policy("allow", AuthzAction::Allow, vec![http_allow, port_allow]),
        policy("deny", AuthzAction::Deny, vec![http_deny]),
    ];
    let (filters, errors) = network_rbac_filters(&policies, CTX, "tcp.db");
    assert!(errors.is_empty());
    let decode_net = |f: &envoy_types::pb::envoy::config::listener::v3::Filter| {
        let Some(envoy_types::pb::envoy::config::listener::v3::filter::ConfigType::TypedConfig(
            any,
        )) = &f.config_type
        else {
            panic!("typed config expected");
        };
        let cfg = NetworkRbacFilter::decode(any.value.as_slice()).unwrap();
        assert_eq!(cfg.stat_prefix, "tcp.db");
        cfg.rules.unwrap()
    };
    let deny = decode_net(&filters[0]);
    let allow = decode_net(&filters[1]);
    assert_eq!(deny.action, RbacAction::Deny as i32);
    // the deny rule keeps only its port
    let p = &deny.policies["ns[shop]-policy[deny]-rule[0]"];
    assert!(matches!(
        p.permissions[0].rule,
        Some(permission::Rule::DestinationPort(5432))
    ));
    // the HTTP-only allow rule is gone, the port rule stays
    assert_eq!(allow.policies.len(), 1);
    assert!(
        allow
            .policies
            .contains_key("ns[shop]-policy[allow]-rule[1]")
    );
}
