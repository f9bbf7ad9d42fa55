//! AuthorizationPolicy rule parts (`from`, `to`, `when`) as RBAC permissions and principals.
use std::net::IpAddr;

use envoy_types::pb::envoy::config::core::v3::CidrRange;
use envoy_types::pb::envoy::config::rbac::v3::{
    MetadataSource, Permission, Principal, SourcedMetadata, permission, permission::Set as PermSet,
    principal, principal::Authenticated, principal::Set as IdSet,
};
use envoy_types::pb::envoy::config::route::v3::{HeaderMatcher, header_matcher};
use envoy_types::pb::envoy::r#type::matcher::v3::{
    ListMatcher, MetadataMatcher, OrMatcher, PathMatcher, StringMatcher, ValueMatcher,
    list_matcher, metadata_matcher::PathSegment, metadata_matcher::path_segment::Segment,
    path_matcher, value_matcher,
};
use envoy_types::pb::google::protobuf::UInt32Value;

use super::authz::{AuthzContext, Condition, Operation, Rule, Source};
use super::matchers::{regex_escape, regex_matcher, string_matcher, string_matcher_with_prefix};
use super::{ObjectRef, SecurityError};

/// Filter namespace under which jwt_authn writes the verified payload.
pub const JWT_METADATA_FILTER: &str = "envoy.filters.http.jwt_authn";

type Res<T> = Result<T, SecurityError>;

fn perm(rule: permission::Rule) -> Permission {
    Permission { rule: Some(rule) }
}
fn id(identifier: principal::Identifier) -> Principal {
    Principal {
        identifier: Some(identifier),
    }
}
fn perm_and(mut parts: Vec<Permission>) -> Permission {
    match parts.len() {
        0 => perm(permission::Rule::Any(true)),
        1 => parts.remove(0),
        _ => perm(permission::Rule::AndRules(PermSet { rules: parts })),
    }
}
fn perm_or(mut parts: Vec<Permission>) -> Permission {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        perm(permission::Rule::OrRules(PermSet { rules: parts }))
    }
}
fn perm_not(p: Permission) -> Permission {
    perm(permission::Rule::NotRule(Box::new(p)))
}
fn id_and(mut parts: Vec<Principal>) -> Principal {
    match parts.len() {
        0 => id(principal::Identifier::Any(true)),
        1 => parts.remove(0),
        _ => id(principal::Identifier::AndIds(IdSet { ids: parts })),
    }
}
fn id_or(mut parts: Vec<Principal>) -> Principal {
    if parts.len() == 1 {
        parts.remove(0)
    } else {
        id(principal::Identifier::OrIds(IdSet { ids: parts }))
    }
}
fn id_not(p: Principal) -> Principal {
    id(principal::Identifier::NotId(Box::new(p)))
}

/// Adds `OR(values)` and `NOT(OR(not_values))` to `parts`, each value mapped by `f`.
fn push_perm(
    parts: &mut Vec<Permission>,
    values: &[String],
    not_values: &[String],
    f: impl Fn(&str) -> Res<Permission>,
) -> Res<()> {
    if !values.is_empty() {
        parts.push(perm_or(values.iter().map(|v| f(v)).collect::<Res<_>>()?));
    }
    if !not_values.is_empty() {
        parts.push(perm_not(perm_or(
            not_values.iter().map(|v| f(v)).collect::<Res<_>>()?,
        )));
    }
    Ok(())
}
fn push_id(
    parts: &mut Vec<Principal>,
    values: &[String],
    not_values: &[String],
    f: impl Fn(&str) -> Res<Principal>,
) -> Res<()> {
    if !values.is_empty() {
        parts.push(id_or(values.iter().map(|v| f(v)).collect::<Res<_>>()?));
    }
    if !not_values.is_empty() {
        parts.push(id_not(id_or(
            not_values.iter().map(|v| f(v)).collect::<Res<_>>()?,
        )));
    }
    Ok(())
}

fn header(name: &str, matcher: StringMatcher) -> HeaderMatcher {
    HeaderMatcher {
        name: name.to_string(),
        header_match_specifier: Some(header_matcher::HeaderMatchSpecifier::StringMatch(matcher)),
        ..Default::default()
    }
}

/// Where a `when` key is evaluated.
enum ConditionSide {
    Permission,
    Principal,
}

fn condition_side(key: &str) -> Option<ConditionSide> {
    match key {
        "destination.ip" | "destination.port" | "connection.sni" => Some(ConditionSide::Permission),
        "source.ip"
        | "remote.ip"
        | "source.namespace"
        | "source.principal"
        | "request.auth.principal"
        | "request.auth.audiences"
        | "request.auth.presenter" => Some(ConditionSide::Principal),
        k if header_name(k).is_some() || claim_path(k).is_some() => Some(ConditionSide::Principal),
        _ => None,
    }
}

fn header_name(key: &str) -> Option<&str> {
    key.strip_prefix("request.headers[")?
        .strip_suffix(']')
        .filter(|n| !n.is_empty() && !n.contains(['[', ']']))
}

/// `request.auth.claims[a][b]` -> `[a, b]`.
fn claim_path(key: &str) -> Option<Vec<&str>> {
    let rest = key.strip_prefix("request.auth.claims")?;
    let inner = rest.strip_prefix('[')?.strip_suffix(']')?;
    let parts: Vec<&str> = inner.split("][").collect();
    parts
        .iter()
        .all(|p| !p.is_empty() && !p.contains(['[', ']']))
        .then_some(parts)
}

/// An operation host, compared case-insensitively with `:authority`, which may carry a port.
fn host_matcher(value: &str) -> StringMatcher {
    use super::matchers::{IstioValue, classify};
    let host = match classify(value) {
        IstioValue::Any => return string_matcher("*", false),
        IstioValue::Prefix(p) => format!("{}.*", regex_escape(p)),
        IstioValue::Suffix(s) => format!(".*{}", regex_escape(s)),
        IstioValue::Exact(e) => regex_escape(e),
    };
    regex_matcher(&format!("(?i)^{host}(:[0-9]+)?$"))
}

/// `to` and permission-side `when` conditions of one rule.
pub(crate) fn rule_permissions(rule: &Rule, object: &ObjectRef, field: &str) -> Res<Permission> {
    let mut parts = Vec::new();
    if !rule.to.is_empty() {
        let ops = rule
            .to
            .iter()
            .enumerate()
            .map(|(i, op)| operation(op, object, &format!("{field}.to[{i}].operation")))
            .collect::<Res<Vec<_>>>()?;
        parts.push(perm_or(ops));
    }
    for (i, cond) in rule.when.iter().enumerate() {
        let cfield = format!("{field}.when[{i}]");
        match condition_side(&cond.key) {
            Some(ConditionSide::Permission) => {
                parts.push(permission_condition(cond, object, &cfield)?)
            }
            Some(ConditionSide::Principal) => {}
            None => {
                return Err(SecurityError::Unsupported {
                    object: object.clone(),
                    field: format!("{cfield}.key"),
                    reason: format!("condition key {:?} is not supported", cond.key),
                });
            }
        }
    }
    Ok(perm_and(parts))
}

/// `from` and principal-side `when` conditions of one rule.
pub(crate) fn rule_principals(
    rule: &Rule,
    object: &ObjectRef,
    field: &str,
    ctx: AuthzContext<'_>,
) -> Res<Principal> {
    let mut parts = Vec::new();
    if !rule.from.is_empty() {
        let sources = rule
            .from
            .iter()
            .enumerate()
            .map(|(i, s)| source(s, object, &format!("{field}.from[{i}].source"), ctx))
            .collect::<Res<Vec<_>>>()?;
        parts.push(id_or(sources));
    }
    for (i, cond) in rule.when.iter().enumerate() {
        if let Some(ConditionSide::Principal) = condition_side(&cond.key) {
            parts.push(principal_condition(
                cond,
                object,
                &format!("{field}.when[{i}]"),
                ctx,
            )?);
        }
    }
    Ok(id_and(parts))
}

fn operation(op: &Operation, object: &ObjectRef, field: &str) -> Res<Permission> {
    let mut parts = Vec::new();
    let host = |v: &str| {
        Ok(perm(permission::Rule::Header(header(
            ":authority",
            host_matcher(v),
        ))))
    };
    push_perm(&mut parts, &op.hosts, &op.not_hosts, host)?;
    let port = |v: &str| {
        v.parse::<u16>()
            .map(|p| perm(permission::Rule::DestinationPort(u32::from(p))))
            .map_err(|_| invalid(object, &format!("{field}.ports"), v, "not a port number"))
    };
    push_perm(&mut parts, &op.ports, &op.not_ports, port)?;
    let method = |v: &str| {
        Ok(perm(permission::Rule::Header(header(
            ":method",
            string_matcher(v, false),
        ))))
    };
    push_perm(&mut parts, &op.methods, &op.not_methods, method)?;
    let path = |v: &str| {
        Ok(perm(permission::Rule::UrlPath(PathMatcher {
            rule: Some(path_matcher::Rule::Path(string_matcher(v, false))),
        })))
    };
    push_perm(&mut parts, &op.paths, &op.not_paths, path)?;
    Ok(perm_and(parts))
}

fn source(src: &Source, object: &ObjectRef, field: &str, ctx: AuthzContext<'_>) -> Res<Principal> {
    let mut parts = Vec::new();
    push_id(&mut parts, &src.principals, &src.not_principals, |v| {
        Ok(peer_principal(v))
    })?;
    push_id(
        &mut parts,
        &src.request_principals,
        &src.not_request_principals,
        |v| request_principal(v, ctx, object, &format!("{field}.requestPrincipals")),
    )?;
    push_id(&mut parts, &src.namespaces, &src.not_namespaces, |v| {
        Ok(peer_namespace(v))
    })?;
    push_id(&mut parts, &src.ip_blocks, &src.not_ip_blocks, |v| {
        Ok(id(principal::Identifier::DirectRemoteIp(cidr(
            v,
            object,
            &format!("{field}.ipBlocks"),
        )?)))
    })?;
    push_id(
        &mut parts,
        &src.remote_ip_blocks,
        &src.not_remote_ip_blocks,
        |v| {
            Ok(id(principal::Identifier::RemoteIp(cidr(
                v,
                object,
                &format!("{field}.remoteIpBlocks"),
            )?)))
        },
    )?;
    Ok(id_and(parts))
}

/// A peer identity as Istio writes it (`<td>/ns/<ns>/sa/<sa>`), matched against the URI SAN.
fn peer_principal(value: &str) -> Principal {
    id(principal::Identifier::Authenticated(Authenticated {
        principal_name: Some(string_matcher_with_prefix("spiffe://", value, false)),
    }))
}

/// A source namespace, matched inside the peer's SPIFFE id; `*` wildcards stay within one segment.
fn peer_namespace(value: &str) -> Principal {
    let ns = if value == "*" {
        "[^/]+".to_string()
    } else {
        value
            .split('*')
            .map(regex_escape)
            .collect::<Vec<_>>()
            .join("[^/]*")
    };
    id(principal::Identifier::Authenticated(Authenticated {
        principal_name: Some(regex_matcher(&format!("^spiffe://[^/]+/ns/{ns}/sa/[^/]+$"))),
    }))
}

fn claim_matcher(path: &[&str], value: ValueMatcher, ctx: AuthzContext<'_>) -> Principal {
    let mut segments = vec![ctx.jwt_payload_key.to_string()];
    segments.extend(path.iter().map(|s| s.to_string()));
    id(principal::Identifier::SourcedMetadata(SourcedMetadata {
        metadata_matcher: Some(MetadataMatcher {
            filter: JWT_METADATA_FILTER.to_string(),
            path: segments
                .into_iter()
                .map(|k| PathSegment {
                    segment: Some(Segment::Key(k)),
                })
                .collect(),
            value: Some(value),
            invert: false,
        }),
        metadata_source: MetadataSource::Dynamic as i32,
    }))
}

fn string_value(m: StringMatcher) -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::StringMatch(m)),
    }
}

/// A claim may be a string or a list of strings (e.g. `groups`, `aud`): match either.
fn claim_value(value: &str) -> ValueMatcher {
    let m = string_matcher(value, false);
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::OrMatch(OrMatcher {
            value_matchers: vec![
                string_value(m.clone()),
                ValueMatcher {
                    match_pattern: Some(value_matcher::MatchPattern::ListMatch(Box::new(
                        ListMatcher {
                            match_pattern: Some(list_matcher::MatchPattern::OneOf(Box::new(
                                string_value(m),
                            ))),
                        },
                    ))),
                },
            ],
        })),
    }
}

fn present() -> ValueMatcher {
    ValueMatcher {
        match_pattern: Some(value_matcher::MatchPattern::PresentMatch(true)),
    }
}

/// `iss/sub` of a verified JWT. Supported: `*`, `iss/sub`, `iss/*`, `*/sub`.
fn request_principal(
    value: &str,
    ctx: AuthzContext<'_>,
    object: &ObjectRef,
    field: &str,
) -> Res<Principal> {
    let exact = |s: &str| string_value(super::matchers::exact(s));
    if value == "*" {
        return Ok(claim_matcher(&["iss"], present(), ctx));
    }
    let Some((iss, sub)) = value.rsplit_once('/') else {
        return Err(invalid(object, field, value, "expected <issuer>/<subject>"));
    };
    match (iss, sub) {
        ("*", sub) if !sub.contains('*') => Ok(claim_matcher(&["sub"], exact(sub), ctx)),
        (iss, "*") if !iss.contains('*') => Ok(id_and(vec![
            claim_matcher(&["iss"], exact(iss), ctx),
            claim_matcher(&["sub"], present(), ctx),
        ])),
        (iss, sub) if !iss.contains('*') && !sub.contains('*') => Ok(id_and(vec![
            claim_matcher(&["iss"], exact(iss), ctx),
            claim_matcher(&["sub"], exact(sub), ctx),
        ])),
        _ => Err(SecurityError::Unsupported {
            object: object.clone(),
            field: field.to_string(),
            reason: format!(
                "request principal {value:?}: wildcards are supported only as `*`, `<iss>/*` or `*/<sub>`"
            ),
        }),
    }
}

fn cidr(value: &str, object: &ObjectRef, field: &str) -> Res<CidrRange> {
    let (addr, len) = match value.split_once('/') {
        Some((a, l)) => (a, Some(l)),
        None => (value, None),
    };
    let ip: IpAddr = addr
        .parse()
        .map_err(|_| invalid(object, field, value, "not an IP address or CIDR block"))?;
    let max = if ip.is_ipv4() { 32 } else { 128 };
    let prefix_len = match len {
        Some(l) => l
            .parse::<u32>()
            .ok()
            .filter(|l| *l <= max)
            .ok_or_else(|| invalid(object, field, value, "bad prefix length"))?,
        None => max,
    };
    Ok(CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(UInt32Value { value: prefix_len }),
    })
}

fn invalid(object: &ObjectRef, field: &str, value: &str, reason: &str) -> SecurityError {
    SecurityError::Invalid {
        object: object.clone(),
        field: field.to_string(),
        reason: format!("invalid value {value:?}: {reason}"),
    }
}

fn permission_condition(cond: &Condition, object: &ObjectRef, field: &str) -> Res<Permission> {
    let vfield = format!("{field}.values");
    let mut parts = Vec::new();
    match cond.key.as_str() {
        "destination.ip" => push_perm(&mut parts, &cond.values, &cond.not_values, |v| {
            Ok(perm(permission::Rule::DestinationIp(cidr(
                v, object, &vfield,
            )?)))
        })?,
        "destination.port" => push_perm(&mut parts, &cond.values, &cond.not_values, |v| {
            v.parse::<u16>()
                .map(|p| perm(permission::Rule::DestinationPort(u32::from(p))))
                .map_err(|_| invalid(object, &vfield, v, "not a port number"))
        })?,
        _ => push_perm(&mut parts, &cond.values, &cond.not_values, |v| {
            Ok(perm(permission::Rule::RequestedServerName(string_matcher(
                v, false,
            ))))
        })?,
    }
    Ok(perm_and(parts))
}

fn principal_condition(
    cond: &Condition,
    object: &ObjectRef,
    field: &str,
    ctx: AuthzContext<'_>,
) -> Res<Principal> {
    let vfield = format!("{field}.values");
    let mut parts = Vec::new();
    let key = cond.key.as_str();
    let (values, not_values) = (&cond.values, &cond.not_values);
    match key {
        "source.ip" => push_id(&mut parts, values, not_values, |v| {
            Ok(id(principal::Identifier::DirectRemoteIp(cidr(
                v, object, &vfield,
            )?)))
        })?,
        "remote.ip" => push_id(&mut parts, values, not_values, |v| {
            Ok(id(principal::Identifier::RemoteIp(cidr(
                v, object, &vfield,
            )?)))
        })?,
        "source.namespace" => push_id(&mut parts, values, not_values, |v| Ok(peer_namespace(v)))?,
        "source.principal" => push_id(&mut parts, values, not_values, |v| Ok(peer_principal(v)))?,
        "request.auth.principal" => push_id(&mut parts, values, not_values, |v| {
            request_principal(v, ctx, object, &vfield)
        })?,
        "request.auth.audiences" => push_id(&mut parts, values, not_values, |v| {
            Ok(claim_matcher(&["aud"], claim_value(v), ctx))
        })?,
        "request.auth.presenter" => push_id(&mut parts, values, not_values, |v| {
            Ok(claim_matcher(&["azp"], claim_value(v), ctx))
        })?,
        _ => {
            if let Some(name) = header_name(key) {
                push_id(&mut parts, values, not_values, |v| {
                    Ok(id(principal::Identifier::Header(header(
                        name,
                        string_matcher(v, false),
                    ))))
                })?;
            } else if let Some(path) = claim_path(key) {
                push_id(&mut parts, values, not_values, |v| {
                    Ok(claim_matcher(&path, claim_value(v), ctx))
                })?;
            }
        }
    }
    Ok(id_and(parts))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_condition_keys() {
        assert_eq!(header_name("request.headers[x-user]"), Some("x-user"));
        assert_eq!(header_name("request.headers[]"), None);
        assert_eq!(
            claim_path("request.auth.claims[groups]"),
            Some(vec!["groups"])
        );
        assert_eq!(
            claim_path("request.auth.claims[a][b]"),
            Some(vec!["a", "b"])
        );
        assert_eq!(claim_path("request.auth.claims"), None);
        assert!(condition_side("request.regex.headers").is_none());
    }

    #[test]
    fn host_matches_with_or_without_port_ignoring_case() {
        use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
        let re = |v: &str| match host_matcher(v).match_pattern {
            Some(MatchPattern::SafeRegex(r)) => r.regex,
            other => panic!("{other:?}"),
        };
        assert_eq!(re("cart.shop"), r"(?i)^cart\.shop(:[0-9]+)?$");
        assert_eq!(re("*.example.com"), r"(?i)^.*\.example\.com(:[0-9]+)?$");
        assert_eq!(re("api.*"), r"(?i)^api\..*(:[0-9]+)?$");
    }

    #[test]
    fn cidr_forms() {
        let o = ObjectRef::new("AuthorizationPolicy", "ns", "p");
        let c = cidr("10.1.0.0/16", &o, "f").unwrap();
        assert_eq!(
            (c.address_prefix.as_str(), c.prefix_len.unwrap().value),
            ("10.1.0.0", 16)
        );
        assert_eq!(cidr("::1", &o, "f").unwrap().prefix_len.unwrap().value, 128);
        assert!(cidr("10.0.0.0/33", &o, "f").is_err());
        assert!(cidr("nope", &o, "f").is_err());
    }
}
