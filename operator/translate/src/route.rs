//! HttpRule -> Envoy routes. One Envoy route per `match[]` entry, in order.
use std::collections::HashMap;
use std::time::Duration as StdDuration;

use envoy_types::pb::envoy::config::core::v3::DataSource;
use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::{
    HeaderValue, HeaderValueOption, RuntimeFractionalPercent,
    header_value_option::HeaderAppendAction,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, HeaderMatcher, QueryParameterMatcher, RedirectAction, RetryPolicy, Route,
    RouteAction, RouteMatch, WeightedCluster,
    header_matcher::HeaderMatchSpecifier,
    query_parameter_matcher::QueryParameterMatchSpecifier,
    redirect_action::{RedirectResponseCode, SchemeRewriteSpecifier},
    retry_policy::RetryHostPredicate,
    route::Action as EnvoyAction,
    route_action::{
        ClusterSpecifier, HashPolicy, HostRewriteSpecifier, RequestMirrorPolicy,
        hash_policy::{Header as HashHeader, PolicySpecifier},
    },
    route_match::PathSpecifier,
    weighted_cluster::ClusterWeight,
};
use envoy_types::pb::envoy::extensions::filters::common::fault::v3::{
    FaultDelay, fault_delay::FaultDelaySecifier,
};
use envoy_types::pb::envoy::extensions::filters::http::cors::v3::CorsPolicy;
use envoy_types::pb::envoy::extensions::filters::http::fault::v3::{
    FaultAbort, HttpFault, fault_abort::ErrorType,
};
use envoy_types::pb::envoy::extensions::retry::host::previous_hosts::v3::PreviousHostsPredicate;
use envoy_types::pb::envoy::r#type::matcher::v3::{
    RegexMatchAndSubstitute, StringMatcher, string_matcher::MatchPattern,
};
use envoy_types::pb::envoy::r#type::v3::{FractionalPercent, fractional_percent::DenominatorType};
use envoy_types::pb::google::protobuf::{Any, BoolValue, UInt32Value};
use envoy_types::util::pack_any;

use crate::cluster::duration;
use crate::http_rule::{
    AbortStatus, Action, Body, Cors, Destination, Fault, HeaderOps, HttpRule, Redirect,
    RedirectPort, RequestMatch, Retries, StringMatch,
};
use crate::policy::HashKey;
use crate::security::matchers::regex;

pub const FAULT_FILTER: &str = "envoy.filters.http.fault";
/// The CORS filter; a route's `corsPolicy` is its per-route config.
pub const CORS_FILTER: &str = "envoy.filters.http.cors";
/// Istio's default retry: 2 attempts on these conditions (and 503).
pub const DEFAULT_RETRY_ON: &str =
    "connect-failure,refused-stream,unavailable,cancelled,retriable-status-codes";
pub const DEFAULT_RETRY_ATTEMPTS: u32 = 2;

/// The Envoy routes of one rule; `port` drops `match[]` entries for another
/// port. `port` is the port the routes serve and `tls` whether requests reach
/// them over TLS (gateway HTTPS servers): redirects that derive their port
/// from the request's read them.
pub fn routes(rule: &HttpRule, port: Option<u16>, tls: bool) -> Vec<Route> {
    let matches: Vec<Option<&RequestMatch>> = if rule.matches.is_empty() {
        vec![None]
    } else {
        rule.matches
            .iter()
            .filter(|m| match (m.port, port) {
                (Some(want), Some(got)) => want == got,
                _ => true,
            })
            .map(Some)
            .collect()
    };
    matches
        .into_iter()
        .enumerate()
        .map(|(i, m)| route(rule, m, i, port, tls))
        .collect()
}

/// The `port_redirect` of a redirect on routes serving `port`, as Istio sets
/// it: `derivePort: FROM_REQUEST_PORT` is the served port (Envoy cannot read
/// the request's), `FROM_PROTOCOL_DEFAULT` none; a derived port that is the
/// Location scheme's default (80 for http, 443 for https) is left out. An
/// explicit `port` is always written.
fn redirect_port(r: &Redirect, port: Option<u16>, tls: bool) -> u32 {
    let derived = match r.port {
        None | Some(RedirectPort::ProtocolDefault) => return 0,
        Some(RedirectPort::Number(p)) => return u32::from(p),
        Some(RedirectPort::RequestPort) => port.unwrap_or(0),
    };
    let scheme = (r.scheme.as_deref()).unwrap_or(if tls { "https" } else { "http" });
    match (derived, scheme) {
        (80, "http") | (443, "https") => 0,
        _ => u32::from(derived),
    }
}

fn route(
    rule: &HttpRule,
    m: Option<&RequestMatch>,
    index: usize,
    port: Option<u16>,
    tls: bool,
) -> Route {
    let mut typed_per_filter_config: HashMap<String, Any> = HashMap::new();
    if let Some(fault) = &rule.fault {
        typed_per_filter_config.insert(FAULT_FILTER.into(), pack_any(http_fault(fault)));
    }
    if let Some(cors) = &rule.cors {
        typed_per_filter_config.insert(CORS_FILTER.into(), pack_any(cors_policy(cors)));
    }
    let mut request_headers_to_add = header_options(&rule.headers.request);
    let mut response_headers_to_add = header_options(&rule.headers.response);
    let mut request_headers_to_remove = rule.headers.request.remove.clone();
    let mut response_headers_to_remove = rule.headers.response.remove.clone();
    let action = match &rule.action {
        Action::Route(destinations) => {
            if let [only] = destinations.as_slice() {
                // A single destination's header ops apply to the whole route.
                request_headers_to_add.extend(header_options(&only.headers.request));
                response_headers_to_add.extend(header_options(&only.headers.response));
                request_headers_to_remove.extend(only.headers.request.remove.iter().cloned());
                response_headers_to_remove.extend(only.headers.response.remove.iter().cloned());
            }
            EnvoyAction::Route(route_action(rule, destinations))
        }
        Action::Redirect(r) => EnvoyAction::Redirect(RedirectAction {
            host_redirect: r.authority.clone().unwrap_or_default(),
            port_redirect: redirect_port(r, port, tls),
            scheme_rewrite_specifier: r.scheme.clone().map(SchemeRewriteSpecifier::SchemeRedirect),
            path_rewrite_specifier: r.uri.clone().map(
                envoy_types::pb::envoy::config::route::v3::redirect_action::PathRewriteSpecifier::PathRedirect,
            ),
            response_code: redirect_code(r.code.unwrap_or(301)) as i32,
            ..Default::default()
        }),
        Action::DirectResponse { status, body } => EnvoyAction::DirectResponse(DirectResponseAction {
            status: *status,
            body: body.as_ref().map(|b| DataSource {
                specifier: Some(match b {
                    Body::Text(text) => Specifier::InlineString(text.clone()),
                    Body::Bytes(bytes) => Specifier::InlineBytes(bytes.clone()),
                }),
                ..Default::default()
            }),
            ..Default::default()
        }),
    };
    Route {
        // As Istio names it: the rule, then the match's own name if it has one.
        name: match (m.and_then(|m| m.name.as_deref()), index) {
            (Some(match_name), _) => format!("{}.{match_name}", rule.name),
            (None, 0) => rule.name.clone(),
            (None, _) => format!("{}.{index}", rule.name),
        },
        r#match: Some(route_match(m)),
        stat_prefix: (m.and_then(|m| m.stat_prefix.clone())).unwrap_or_default(),
        action: Some(action),
        typed_per_filter_config,
        request_headers_to_add,
        request_headers_to_remove,
        response_headers_to_add,
        response_headers_to_remove,
        ..Default::default()
    }
}

/// Envoy's hash policy for a DestinationRule's consistent-hash key.
pub(crate) fn hash_policy(key: &HashKey) -> HashPolicy {
    use envoy_types::pb::envoy::config::route::v3::route_action::hash_policy::{
        ConnectionProperties, Cookie, QueryParameter,
    };
    let policy_specifier = match key {
        HashKey::Header(header_name) => PolicySpecifier::Header(HashHeader {
            header_name: header_name.clone(),
            ..Default::default()
        }),
        HashKey::Cookie { name, path, ttl } => PolicySpecifier::Cookie(Cookie {
            name: name.clone(),
            path: path.clone().unwrap_or_default(),
            ttl: ttl.map(duration),
            ..Default::default()
        }),
        HashKey::SourceIp => {
            PolicySpecifier::ConnectionProperties(ConnectionProperties { source_ip: true })
        }
        HashKey::QueryParameter(name) => {
            PolicySpecifier::QueryParameter(QueryParameter { name: name.clone() })
        }
    };
    HashPolicy {
        policy_specifier: Some(policy_specifier),
        ..Default::default()
    }
}

fn route_action(rule: &HttpRule, destinations: &[Destination]) -> RouteAction {
    let cluster_specifier = match destinations {
        [only] => ClusterSpecifier::Cluster(only.cluster.clone()),
        many => ClusterSpecifier::WeightedClusters(WeightedCluster {
            clusters: many
                .iter()
                .map(|d| ClusterWeight {
                    name: d.cluster.clone(),
                    weight: Some(UInt32Value { value: d.weight }),
                    request_headers_to_add: header_options(&d.headers.request),
                    request_headers_to_remove: d.headers.request.remove.clone(),
                    response_headers_to_add: header_options(&d.headers.response),
                    response_headers_to_remove: d.headers.response.remove.clone(),
                    ..Default::default()
                })
                .collect(),
            ..Default::default()
        }),
    };
    let hash_policy = destinations
        .iter()
        .find_map(|d| d.hash_key.as_ref())
        .map(hash_policy)
        .into_iter()
        .collect();
    let mut action = RouteAction {
        cluster_specifier: Some(cluster_specifier),
        // Istio disables Envoy's 15 s default: no timeout unless the rule sets one.
        timeout: Some(duration(rule.timeout.unwrap_or(StdDuration::ZERO))),
        retry_policy: Some(retry_policy(rule.retries.as_ref())),
        hash_policy,
        request_mirror_policies: rule
            .mirrors
            .iter()
            .map(|m| RequestMirrorPolicy {
                cluster: m.cluster.clone(),
                runtime_fraction: m.percentage.map(|p| RuntimeFractionalPercent {
                    default_value: Some(fraction(p)),
                    ..Default::default()
                }),
                ..Default::default()
            })
            .collect(),
        ..Default::default()
    };
    if let Some(rewrite) = &rule.rewrite {
        if let Some(uri) = &rewrite.uri {
            action.prefix_rewrite = uri.clone();
        }
        if let Some((pattern, substitution)) = &rewrite.uri_regex {
            action.regex_rewrite = Some(RegexMatchAndSubstitute {
                pattern: Some(regex(pattern)),
                substitution: substitution.clone(),
            });
        }
        if let Some(authority) = &rewrite.authority {
            action.host_rewrite_specifier =
                Some(HostRewriteSpecifier::HostRewriteLiteral(authority.clone()));
        }
    }
    action
}

/// Istio's retry semantics: `attempts: 0` disables retries; bare status codes in
/// `retryOn` become retriable status codes.
pub fn retry_policy(retries: Option<&Retries>) -> RetryPolicy {
    let (attempts, per_try, retry_on) = match retries {
        None => (DEFAULT_RETRY_ATTEMPTS, None, DEFAULT_RETRY_ON.to_string()),
        Some(r) => (
            r.attempts,
            r.per_try_timeout,
            r.retry_on
                .clone()
                .unwrap_or_else(|| DEFAULT_RETRY_ON.to_string()),
        ),
    };
    let mut conditions: Vec<String> = Vec::new();
    let mut codes: Vec<u32> = Vec::new();
    for item in retry_on.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        match item.parse::<u32>() {
            Ok(code) => codes.push(code),
            Err(_) => conditions.push(item.to_string()),
        }
    }
    if !codes.is_empty() && !conditions.iter().any(|c| c == "retriable-status-codes") {
        conditions.push("retriable-status-codes".into());
    }
    if codes.is_empty() && conditions.iter().any(|c| c == "retriable-status-codes") {
        codes.push(503);
    }
    RetryPolicy {
        retry_on: conditions.join(","),
        num_retries: Some(UInt32Value { value: attempts }),
        per_try_timeout: per_try.map(duration),
        retriable_status_codes: codes,
        retry_host_predicate: vec![RetryHostPredicate {
            name: "envoy.retry_host_predicates.previous_hosts".into(),
            config_type: Some(
                envoy_types::pb::envoy::config::route::v3::retry_policy::retry_host_predicate::ConfigType::TypedConfig(
                    pack_any(PreviousHostsPredicate::default()),
                ),
            ),
        }],
        host_selection_retry_max_attempts: 5,
        ..Default::default()
    }
}

fn route_match(m: Option<&RequestMatch>) -> RouteMatch {
    let Some(m) = m else {
        return RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            ..Default::default()
        };
    };
    let path_specifier = match &m.uri {
        None | Some(StringMatch::Any) => PathSpecifier::Prefix("/".into()),
        Some(StringMatch::Exact(p)) => PathSpecifier::Path(p.clone()),
        Some(StringMatch::Prefix(p)) => PathSpecifier::Prefix(p.clone()),
        Some(StringMatch::Regex(r)) => PathSpecifier::SafeRegex(regex(r)),
    };
    let mut headers: Vec<HeaderMatcher> = Vec::new();
    if let Some(scheme) = &m.scheme {
        headers.push(header_matcher(":scheme", scheme, false));
    }
    if let Some(method) = &m.method {
        headers.push(header_matcher(":method", method, false));
    }
    if let Some(authority) = &m.authority {
        headers.push(header_matcher(":authority", authority, false));
    }
    headers.extend(m.headers.iter().map(|(k, v)| header_matcher(k, v, false)));
    headers.extend(
        m.without_headers
            .iter()
            .map(|(k, v)| header_matcher(k, v, true)),
    );
    RouteMatch {
        path_specifier: Some(path_specifier),
        case_sensitive: m
            .ignore_uri_case
            .then_some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        headers,
        query_parameters: m
            .query_params
            .iter()
            .map(|(k, v)| QueryParameterMatcher {
                name: k.clone(),
                query_parameter_match_specifier: Some(match v {
                    StringMatch::Any => QueryParameterMatchSpecifier::PresentMatch(true),
                    v => QueryParameterMatchSpecifier::StringMatch(string_matcher(v)),
                }),
            })
            .collect(),
        ..Default::default()
    }
}

fn header_matcher(name: &str, value: &StringMatch, invert: bool) -> HeaderMatcher {
    // `{}` matches a header that is present (inverted: absent), and so does
    // an empty exact value in `withoutHeaders`.
    let present_only = matches!(value, StringMatch::Any)
        || (invert && matches!(value, StringMatch::Exact(v) if v.is_empty()));
    HeaderMatcher {
        name: name.to_string(),
        invert_match: invert,
        // A request without the header is "without" it: Envoy would otherwise fail an
        // inverted match on a missing header.
        treat_missing_header_as_empty: invert && !present_only,
        header_match_specifier: Some(if present_only {
            HeaderMatchSpecifier::PresentMatch(true)
        } else {
            HeaderMatchSpecifier::StringMatch(string_matcher(value))
        }),
    }
}

pub fn string_matcher(value: &StringMatch) -> StringMatcher {
    StringMatcher {
        match_pattern: Some(match value {
            StringMatch::Exact(v) => MatchPattern::Exact(v.clone()),
            StringMatch::Prefix(v) => MatchPattern::Prefix(v.clone()),
            StringMatch::Regex(v) => MatchPattern::SafeRegex(regex(v)),
            StringMatch::Any => MatchPattern::SafeRegex(regex(".*")),
        }),
        ignore_case: false,
    }
}

fn header_options(ops: &HeaderOps) -> Vec<HeaderValueOption> {
    let option = |(k, v): (&String, &String), action: HeaderAppendAction| HeaderValueOption {
        header: Some(HeaderValue {
            key: k.clone(),
            value: v.clone(),
            ..Default::default()
        }),
        append_action: action as i32,
        ..Default::default()
    };
    ops.set
        .iter()
        .map(|kv| option(kv, HeaderAppendAction::OverwriteIfExistsOrAdd))
        .chain(
            ops.add
                .iter()
                .map(|kv| option(kv, HeaderAppendAction::AppendIfExistsOrAdd)),
        )
        .collect()
}

/// A percentage (0..=100, fractions allowed) as parts per million.
pub fn fraction(percent: f64) -> FractionalPercent {
    let clamped = if percent.is_finite() {
        percent.clamp(0.0, 100.0)
    } else {
        0.0
    };
    FractionalPercent {
        numerator: (clamped * 10_000.0).round() as u32,
        denominator: DenominatorType::Million as i32,
    }
}

fn http_fault(fault: &Fault) -> HttpFault {
    HttpFault {
        delay: fault.delay.map(|(d, pct)| FaultDelay {
            percentage: Some(fraction(pct)),
            fault_delay_secifier: Some(FaultDelaySecifier::FixedDelay(duration(d))),
        }),
        abort: fault.abort.map(|(status, pct)| FaultAbort {
            percentage: Some(fraction(pct)),
            error_type: Some(match status {
                AbortStatus::Http(code) => ErrorType::HttpStatus(code),
                AbortStatus::Grpc(code) => ErrorType::GrpcStatus(code),
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// `corsPolicy` -> the CORS filter's per-route policy (lists comma-joined, max age in seconds).
pub fn cors_policy(cors: &Cors) -> CorsPolicy {
    CorsPolicy {
        // As in Istio, an origin written `{}` allows nothing (never every origin).
        allow_origin_string_match: (cors.allow_origins.iter())
            .filter(|o| **o != StringMatch::Any)
            .map(string_matcher)
            .collect(),
        allow_methods: cors.allow_methods.join(","),
        allow_headers: cors.allow_headers.join(","),
        expose_headers: cors.expose_headers.join(","),
        max_age: cors
            .max_age
            .map(|d| d.as_secs().to_string())
            .unwrap_or_default(),
        allow_credentials: cors.allow_credentials.map(|value| BoolValue { value }),
        forward_not_matching_preflights: (cors.forward_not_matching_preflights)
            .map(|value| BoolValue { value }),
        ..Default::default()
    }
}

fn redirect_code(code: u32) -> RedirectResponseCode {
    match code {
        302 => RedirectResponseCode::Found,
        303 => RedirectResponseCode::SeeOther,
        307 => RedirectResponseCode::TemporaryRedirect,
        308 => RedirectResponseCode::PermanentRedirect,
        _ => RedirectResponseCode::MovedPermanently,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn redirect(port: Option<RedirectPort>, scheme: Option<&str>) -> Redirect {
        Redirect {
            uri: None,
            authority: Some("www.example.com".into()),
            scheme: scheme.map(str::to_owned),
            port,
            code: None,
        }
    }

    #[test]
    fn derived_redirect_ports_as_istio_writes_them() {
        use RedirectPort::*;
        let at = |p, scheme, port, tls| redirect_port(&redirect(p, scheme), port, tls);
        // the served port, unless it is the Location scheme's default
        assert_eq!(at(Some(RequestPort), None, Some(8080), false), 8080);
        assert_eq!(at(Some(RequestPort), None, Some(80), false), 0);
        assert_eq!(at(Some(RequestPort), None, Some(443), true), 0);
        assert_eq!(at(Some(RequestPort), None, Some(443), false), 443);
        assert_eq!(at(Some(RequestPort), Some("https"), Some(443), false), 0);
        assert_eq!(at(Some(RequestPort), Some("https"), Some(80), false), 80);
        assert_eq!(at(Some(RequestPort), None, None, false), 0);
        // the scheme's default: no port
        assert_eq!(at(Some(ProtocolDefault), None, Some(8080), false), 0);
        assert_eq!(at(None, None, Some(8080), false), 0);
        // an explicit port is written as given
        assert_eq!(at(Some(Number(80)), None, Some(8080), false), 80);
    }
}
