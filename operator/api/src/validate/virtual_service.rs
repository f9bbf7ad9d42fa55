//! VirtualService rules.

use super::fields::{
    cidr, duration, exact_host, export_to, header_name, host, labels, percent, port, regex,
    string_match,
};
use super::{Errors, FieldError};
use crate::duration::parse_duration;
use crate::networking::{
    CorsPolicy, Destination, HTTPDirectResponse, HTTPFaultInjection, HTTPMatchRequest,
    HTTPRedirect, HTTPRoute, Headers, RouteDestination, VirtualService,
};
use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

const RETRY_ON_POLICIES: &[&str] = &[
    "5xx",
    "gateway-error",
    "reset",
    "reset-before-request",
    "connect-failure",
    "envoy-ratelimited",
    "retriable-4xx",
    "refused-stream",
    "retriable-status-codes",
    "retriable-headers",
    "http3-post-connect-failure",
    "cancelled",
    "deadline-exceeded",
    "internal",
    "resource-exhausted",
    "unavailable",
];

/// Validates a VirtualService.
pub fn virtual_service(vs: &VirtualService) -> Vec<FieldError> {
    let mut errors = Errors::default();
    let spec = &vs.spec;
    // As in Istio, a VirtualService without hosts is a delegate: its http rules
    // are served only through the rules that delegate to it, so it binds to
    // nothing itself.
    let is_delegate = spec.hosts.is_empty();
    if is_delegate {
        for (set, field) in [
            (!spec.gateways.is_empty(), "gateways"),
            (!spec.tcp.is_empty(), "tcp"),
            (!spec.tls.is_empty(), "tls"),
        ] {
            if set {
                errors.add(
                    format!("spec.{field}"),
                    format!(
                        "a VirtualService without hosts is a delegate, served only through \
                         the http rules that delegate to it; it cannot have {field} (set hosts, \
                         or remove {field})"
                    ),
                );
            }
        }
    }
    for (i, h) in spec.hosts.iter().enumerate() {
        errors.check(format!("spec.hosts[{i}]"), host(h));
    }
    for (i, g) in spec.gateways.iter().enumerate() {
        errors.check(format!("spec.gateways[{i}]"), gateway_ref(g));
    }
    export_to(&spec.export_to, &mut errors);
    if spec.http.is_empty() && spec.tcp.is_empty() && spec.tls.is_empty() {
        errors.add(
            "spec",
            "at least one of http, tcp or tls routes is required",
        );
    }
    for (i, route) in spec.http.iter().enumerate() {
        http_route(&mut errors, &format!("spec.http[{i}]"), route, is_delegate);
    }
    for (i, route) in spec.tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        for (j, m) in route.match_.iter().enumerate() {
            let mpath = format!("{path}.match[{j}]");
            subnets(&mut errors, &mpath, &m.destination_subnets);
            if let Some(p) = m.port {
                errors.check(format!("{mpath}.port"), port(p));
            }
            labels(
                &mut errors,
                &format!("{mpath}.sourceLabels"),
                &m.source_labels,
            );
        }
        route_destinations(&mut errors, &path, &route.route);
    }
    for (i, route) in spec.tls.iter().enumerate() {
        let path = format!("spec.tls[{i}]");
        if route.match_.is_empty() {
            errors.add(
                format!("{path}.match"),
                "TLS routes need at least one match",
            );
        }
        for (j, m) in route.match_.iter().enumerate() {
            let mpath = format!("{path}.match[{j}]");
            if m.sni_hosts.is_empty() {
                errors.add(
                    format!("{mpath}.sniHosts"),
                    "at least one SNI host is required",
                );
            }
            for (k, sni) in m.sni_hosts.iter().enumerate() {
                errors.check(format!("{mpath}.sniHosts[{k}]"), host(sni));
            }
            subnets(&mut errors, &mpath, &m.destination_subnets);
            if let Some(p) = m.port {
                errors.check(format!("{mpath}.port"), port(p));
            }
            labels(
                &mut errors,
                &format!("{mpath}.sourceLabels"),
                &m.source_labels,
            );
        }
        route_destinations(&mut errors, &path, &route.route);
    }
    errors.0
}

/// A rule's own action: exactly one of a route, a redirect or a direct response.
fn route_action(errors: &mut Errors, path: &str, route: &HTTPRoute) {
    match (
        route.route.is_empty(),
        &route.redirect,
        &route.direct_response,
    ) {
        (true, None, None) => errors.add(
            path.to_owned(),
            "a route, a redirect or a directResponse is required",
        ),
        (false, Some(_), _) => errors.add(
            format!("{path}.redirect"),
            "a rule cannot have both a route and a redirect",
        ),
        (_, Some(_), Some(_)) => errors.add(
            format!("{path}.directResponse"),
            "a rule cannot have both a redirect and a directResponse",
        ),
        (false, None, Some(_)) => errors.add(
            format!("{path}.directResponse"),
            "a rule cannot have both a route and a directResponse",
        ),
        _ => {}
    }
}

/// A rule that delegates: no action of its own, a delegate that can be named,
/// and one level only (as in Istio).
fn delegate(
    errors: &mut Errors,
    path: &str,
    route: &HTTPRoute,
    delegate: &crate::networking::Delegate,
    in_delegate: bool,
) {
    let dpath = format!("{path}.delegate");
    if in_delegate {
        errors.add(
            dpath.clone(),
            "a delegate VirtualService (one without hosts) cannot delegate again: \
             delegation is one level deep",
        );
    }
    for (set, field) in [
        (!route.route.is_empty(), "route"),
        (route.redirect.is_some(), "redirect"),
        (route.direct_response.is_some(), "directResponse"),
    ] {
        if set {
            errors.add(
                format!("{path}.{field}"),
                format!("a rule cannot have both a delegate and a {field}"),
            );
        }
    }
    errors.check(
        format!("{dpath}.name"),
        super::fields::dns_subdomain(&delegate.name),
    );
    if let Some(ns) = &delegate.namespace {
        errors.check(format!("{dpath}.namespace"), super::fields::dns_label(ns));
    }
}

fn gateway_ref(value: &str) -> Result<(), String> {
    if value == "mesh" {
        return Ok(());
    }
    let name = value.rsplit_once('/').map_or(value, |(_, n)| n);
    super::fields::dns_subdomain(name).map_err(|e| format!("gateway {value:?}: {e}"))?;
    if let Some((ns, _)) = value.rsplit_once('/') {
        super::fields::dns_label(ns).map_err(|e| format!("gateway {value:?}: {e}"))?;
    }
    Ok(())
}

fn subnets(errors: &mut Errors, path: &str, values: &[String]) {
    for (k, s) in values.iter().enumerate() {
        errors.check(format!("{path}.destinationSubnets[{k}]"), cidr(s));
    }
}

/// `in_delegate`: the rule belongs to a delegate VirtualService (one without hosts).
fn http_route(errors: &mut Errors, path: &str, route: &HTTPRoute, in_delegate: bool) {
    for (j, m) in route.match_.iter().enumerate() {
        http_match(errors, &format!("{path}.match[{j}]"), m);
    }
    match &route.delegate {
        Some(d) => delegate(errors, path, route, d, in_delegate),
        None => route_action(errors, path, route),
    }
    if let Some(direct) = &route.direct_response {
        direct_response(errors, &format!("{path}.directResponse"), direct);
        for (set, field) in [
            (route.rewrite.is_some(), "rewrite"),
            (route.fault.is_some(), "fault"),
        ] {
            if set {
                errors.add(
                    format!("{path}.{field}"),
                    format!("a rule cannot have both a directResponse and a {field}"),
                );
            }
        }
    }
    if let Some(redirect) = &route.redirect {
        http_redirect(errors, &format!("{path}.redirect"), redirect);
        if route.rewrite.is_some() {
            errors.add(
                format!("{path}.rewrite"),
                "a rule cannot have both a redirect and a rewrite",
            );
        }
    }
    if !route.route.is_empty() {
        let weights: Vec<Option<i32>> = route.route.iter().map(|d| d.weight).collect();
        for (k, d) in route.route.iter().enumerate() {
            let dpath = format!("{path}.route[{k}]");
            destination(errors, &format!("{dpath}.destination"), &d.destination);
            if let Some(h) = &d.headers {
                headers(errors, &format!("{dpath}.headers"), h);
            }
        }
        check_weights(errors, &format!("{path}.route"), &weights);
    }
    if let Some(rewrite) = &route.rewrite {
        if rewrite.authority.as_ref().is_some_and(|a| a.is_empty()) {
            errors.add(format!("{path}.rewrite.authority"), "must not be empty");
        }
        if let Some(r) = &rewrite.uri_regex_rewrite {
            let rpath = format!("{path}.rewrite.uriRegexRewrite");
            if rewrite.uri.is_some() {
                errors.add(rpath.clone(), "set only one of uri and uriRegexRewrite");
            }
            if r.match_.is_empty() || r.rewrite.is_empty() {
                errors.add(rpath.clone(), "both match and rewrite are required");
            } else {
                errors.check(format!("{rpath}.match"), regex(&r.match_));
            }
        }
    }
    let timeout = route.timeout.as_ref().and_then(|t| {
        // Istio documents "0s" as "no timeout".
        if t.0 == "0s" || t.0 == "0" {
            return None;
        }
        errors.check(format!("{path}.timeout"), duration(t));
        parse_duration(&t.0).ok()
    });
    if let Some(retries) = &route.retries {
        let rpath = format!("{path}.retries");
        if let Some(attempts) = retries.attempts
            && attempts < 0
        {
            errors.add(format!("{rpath}.attempts"), "must not be negative");
        }
        if let Some(per_try) = &retries.per_try_timeout {
            errors.check(format!("{rpath}.perTryTimeout"), duration(per_try));
            if let (Some(timeout), Ok(per_try)) = (timeout, parse_duration(&per_try.0))
                && per_try > timeout
            {
                errors.add(
                    format!("{rpath}.perTryTimeout"),
                    format!(
                        "perTryTimeout {} must not exceed the route timeout {}",
                        retries.per_try_timeout.as_ref().map_or("", |d| &d.0),
                        route.timeout.as_ref().map_or("", |d| &d.0)
                    ),
                );
            }
        }
        if let Some(retry_on) = &retries.retry_on {
            for policy in retry_on.split(',').map(str::trim) {
                let known = RETRY_ON_POLICIES.contains(&policy)
                    || policy
                        .parse::<u16>()
                        .is_ok_and(|c| (100..=599).contains(&c));
                if !known {
                    errors.add(
                        format!("{rpath}.retryOn"),
                        format!("unknown retry policy {policy:?}"),
                    );
                }
            }
        }
    }
    if let Some(fault) = &route.fault {
        fault_injection(errors, &format!("{path}.fault"), fault);
    }
    if let Some(mirror) = &route.mirror {
        destination(errors, &format!("{path}.mirror"), mirror);
    }
    if let Some(p) = &route.mirror_percentage {
        errors.check(format!("{path}.mirrorPercentage.value"), percent(p));
        if route.mirror.is_none() {
            errors.add(format!("{path}.mirrorPercentage"), "requires mirror");
        }
    }
    if route.mirror_percent.is_some() && route.mirror_percent_snake_case.is_some() {
        errors.add(
            format!("{path}.mirror_percent"),
            "mirrorPercent and mirror_percent are two spellings of one field: set only one",
        );
    }
    for (field, percent) in [
        ("mirrorPercent", route.mirror_percent),
        ("mirror_percent", route.mirror_percent_snake_case),
    ] {
        let Some(p) = percent else { continue };
        if p > 100 {
            errors.add(format!("{path}.{field}"), "must be between 0 and 100");
        }
        if route.mirror.is_none() {
            errors.add(format!("{path}.{field}"), "requires mirror");
        }
    }
    if route.mirror.is_some() && !route.mirrors.is_empty() {
        errors.add(
            format!("{path}.mirrors"),
            "a rule cannot have both mirror and mirrors",
        );
    }
    for (k, m) in route.mirrors.iter().enumerate() {
        let mpath = format!("{path}.mirrors[{k}]");
        destination(errors, &format!("{mpath}.destination"), &m.destination);
        if let Some(p) = &m.percentage {
            errors.check(format!("{mpath}.percentage.value"), percent(p));
        }
    }
    if let Some(cors) = &route.cors_policy {
        cors_policy(errors, &format!("{path}.corsPolicy"), cors);
    }
    if let Some(h) = &route.headers {
        headers(errors, &format!("{path}.headers"), h);
    }
}

fn http_match(errors: &mut Errors, path: &str, m: &HTTPMatchRequest) {
    for (field, value) in [
        ("uri", &m.uri),
        ("scheme", &m.scheme),
        ("method", &m.method),
        ("authority", &m.authority),
    ] {
        if let Some(v) = value {
            string_match(errors, &format!("{path}.{field}"), v);
        }
    }
    for (field, map) in [
        ("headers", &m.headers),
        ("queryParams", &m.query_params),
        ("withoutHeaders", &m.without_headers),
    ] {
        for (name, v) in map {
            let fpath = format!("{path}.{field}[{name}]");
            if field != "queryParams" {
                errors.check(fpath.clone(), header_name(name));
            }
            string_match(errors, &fpath, v);
        }
    }
    if let Some(p) = m.port {
        errors.check(format!("{path}.port"), port(p));
    }
    labels(errors, &format!("{path}.sourceLabels"), &m.source_labels);
    for (i, g) in m.gateways.iter().enumerate() {
        errors.check(format!("{path}.gateways[{i}]"), gateway_ref(g));
    }
}

/// Istio's limits: a status Envoy can send, a body of text or base64 bytes
/// (not both), under 1 MB.
fn direct_response(errors: &mut Errors, path: &str, d: &HTTPDirectResponse) {
    if !(200..=599).contains(&d.status) {
        errors.add(format!("{path}.status"), "must be between 200 and 599");
    }
    let Some(body) = &d.body else { return };
    let len = match (&body.string, &body.bytes) {
        (Some(_), Some(_)) => {
            errors.add(format!("{path}.body"), "set only one of string and bytes");
            return;
        }
        (Some(s), None) => s.len(),
        (None, Some(b)) => match BASE64.decode(b) {
            Ok(bytes) => bytes.len(),
            Err(e) => {
                errors.add(format!("{path}.body.bytes"), format!("not base64: {e}"));
                return;
            }
        },
        (None, None) => 0,
    };
    if len > 1 << 20 {
        errors.add(format!("{path}.body"), "must be smaller than 1 MB");
    }
}

fn http_redirect(errors: &mut Errors, path: &str, r: &HTTPRedirect) {
    if let Some(code) = r.redirect_code
        && !matches!(code, 301 | 302 | 303 | 307 | 308)
    {
        errors.add(
            format!("{path}.redirectCode"),
            format!("redirect code {code} must be one of 301, 302, 303, 307, 308"),
        );
    }
    if let Some(p) = r.port {
        errors.check(format!("{path}.port"), port(p));
        if r.derive_port.is_some() {
            errors.add(
                format!("{path}.derivePort"),
                "port and derivePort are exclusive: set only one",
            );
        }
    }
    if let Some(scheme) = &r.scheme
        && scheme != "http"
        && scheme != "https"
    {
        errors.add(
            format!("{path}.scheme"),
            format!("scheme {scheme:?} must be http or https"),
        );
    }
    if r.uri.is_none()
        && r.authority.is_none()
        && r.port.is_none()
        && r.derive_port.is_none()
        && r.scheme.is_none()
    {
        errors.add(
            path.to_owned(),
            "a redirect must set uri, authority, port, derivePort or scheme",
        );
    }
}

fn fault_injection(errors: &mut Errors, path: &str, fault: &HTTPFaultInjection) {
    if fault.delay.is_none() && fault.abort.is_none() {
        errors.add(path.to_owned(), "a fault needs a delay or an abort");
    }
    if let Some(delay) = &fault.delay {
        match &delay.fixed_delay {
            Some(d) => errors.check(format!("{path}.delay.fixedDelay"), duration(d)),
            None => errors.add(format!("{path}.delay.fixedDelay"), "required"),
        }
        if let Some(p) = &delay.percentage {
            errors.check(format!("{path}.delay.percentage.value"), percent(p));
        }
        if let Some(p) = delay.percent
            && !(0..=100).contains(&p)
        {
            errors.add(format!("{path}.delay.percent"), "must be between 0 and 100");
        }
    }
    if let Some(abort) = &fault.abort {
        match (abort.http_status, &abort.grpc_status) {
            (Some(_), Some(_)) => errors.add(
                format!("{path}.abort"),
                "only one of httpStatus and grpcStatus may be set",
            ),
            (Some(s), None) if !(200..=599).contains(&s) => errors.add(
                format!("{path}.abort.httpStatus"),
                format!("HTTP status {s} must be between 200 and 599"),
            ),
            (None, Some(name)) if crate::grpc::status_code(name).is_none() => errors.add(
                format!("{path}.abort.grpcStatus"),
                format!(
                    "gRPC status {name:?} is not supported; one of {}",
                    crate::grpc::STATUS_NAMES.join(", ")
                ),
            ),
            (None, None) => errors.add(
                format!("{path}.abort"),
                "httpStatus or grpcStatus is required",
            ),
            _ => {}
        }
        if let Some(p) = &abort.percentage {
            errors.check(format!("{path}.abort.percentage.value"), percent(p));
        }
    }
}

fn cors_policy(errors: &mut Errors, path: &str, cors: &CorsPolicy) {
    for (i, origin) in cors.allow_origins.iter().enumerate() {
        string_match(errors, &format!("{path}.allowOrigins[{i}]"), origin);
    }
    for (field, values) in [
        ("allowHeaders", &cors.allow_headers),
        ("exposeHeaders", &cors.expose_headers),
    ] {
        for (i, h) in values.iter().enumerate() {
            errors.check(format!("{path}.{field}[{i}]"), header_name(h));
        }
    }
    for (i, m) in cors.allow_methods.iter().enumerate() {
        if m.is_empty() || !m.bytes().all(|b| b.is_ascii_uppercase()) {
            errors.add(
                format!("{path}.allowMethods[{i}]"),
                format!("{m:?} is not an HTTP method (uppercase letters)"),
            );
        }
    }
    if let Some(age) = &cors.max_age {
        errors.check(format!("{path}.maxAge"), duration(age));
    }
}

/// Header operations: valid names.
pub(crate) fn headers(errors: &mut Errors, path: &str, h: &Headers) {
    for (side, ops) in [("request", &h.request), ("response", &h.response)] {
        let Some(ops) = ops else { continue };
        for (field, names) in [
            ("set", ops.set.keys().collect::<Vec<_>>()),
            ("add", ops.add.keys().collect()),
            ("remove", ops.remove.iter().collect()),
        ] {
            for name in names {
                errors.check(format!("{path}.{side}.{field}[{name}]"), header_name(name));
            }
        }
    }
}

/// A destination: exact host, optional subset, valid port.
pub(crate) fn destination(errors: &mut Errors, path: &str, d: &Destination) {
    errors.check(format!("{path}.host"), exact_host(&d.host));
    if let Some(subset) = &d.subset {
        errors.check(format!("{path}.subset"), super::fields::dns_label(subset));
    }
    if let Some(p) = &d.port {
        match p.number {
            Some(n) => errors.check(format!("{path}.port.number"), port(n)),
            None => errors.add(format!("{path}.port.number"), "required"),
        }
    }
}

fn route_destinations(errors: &mut Errors, path: &str, routes: &[RouteDestination]) {
    if routes.is_empty() {
        errors.add(
            format!("{path}.route"),
            "at least one destination is required",
        );
    }
    for (k, d) in routes.iter().enumerate() {
        destination(
            errors,
            &format!("{path}.route[{k}].destination"),
            &d.destination,
        );
    }
    let weights: Vec<Option<i32>> = routes.iter().map(|d| d.weight).collect();
    check_weights(errors, &format!("{path}.route"), &weights);
}

/// Each weight in 0–100; with several destinations they sum to 100.
fn check_weights(errors: &mut Errors, path: &str, weights: &[Option<i32>]) {
    for (k, w) in weights.iter().enumerate() {
        if let Some(w) = w
            && !(0..=100).contains(w)
        {
            errors.add(format!("{path}[{k}].weight"), "must be between 0 and 100");
        }
    }
    if weights.len() > 1 {
        let sum: i64 = weights.iter().map(|w| i64::from(w.unwrap_or(0))).sum();
        if sum != 100 {
            errors.add(
                path.to_owned(),
                format!("weights of the destinations must sum to 100 (they sum to {sum})"),
            );
        }
    }
}
