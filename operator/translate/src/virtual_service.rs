//! VirtualService `http[]` (API) -> [`HttpRule`], `tcp[]` -> [`TcpDestinations`] and
//! `tls[]` -> [`SniRoute`]s, destinations resolved to cluster names, matches narrowed
//! to the proxy they are programmed into ([`Client`]). `tls` routes take connections
//! by SNI: on sidecars, to ports of protocol TLS or HTTPS; on gateways, on
//! PASSTHROUGH servers.
use std::collections::BTreeMap;

use base64::Engine;
use base64::engine::general_purpose::STANDARD as BASE64;

use trellis_api::networking::{
    self as api, HTTPMatchRequest, HTTPRoute, L4MatchAttributes, RouteDestination,
    TLSMatchAttributes, UnmatchedPreflights,
};
use trellis_model::{Stored, gateway_ref, labels_match};

use crate::destination_rule::dur;
use crate::http_rule::{
    AbortStatus, Action, Body, Cors, Destination, Fault, HeaderOps, Headers, HttpRule, Mirror,
    Redirect, RedirectPort, RequestMatch, Retries, Rewrite, StringMatch,
};
use crate::policy::HashKey;
use crate::types::{ErrorCode, TranslateError};

/// The proxy a rule is programmed into, as the conditions of an HTTP match
/// that name the client rather than the request read it: `sourceLabels`,
/// `sourceNamespace` and `gateways`. Envoy cannot see them in a request, so
/// they decide which proxies get the match at all.
#[derive(Debug, Clone, Copy)]
pub struct Client<'a> {
    pub labels: &'a BTreeMap<String, String>,
    pub namespace: &'a str,
    /// `None` for a sidecar (`mesh`); for a gateway proxy, the Gateway
    /// (namespace, name) the rule is served on.
    pub gateway: Option<(&'a str, &'a str)>,
}

impl Client<'_> {
    /// Whether a match of a VirtualService of `vs_namespace` with these client
    /// conditions names this client.
    fn named_by(
        &self,
        source_labels: &BTreeMap<String, String>,
        source_namespace: Option<&str>,
        gateways: &[String],
        vs_namespace: &str,
    ) -> bool {
        let gateway = |g: &String| match (self.gateway, gateway_ref(g, vs_namespace)) {
            (None, _) => g == "mesh",
            (Some(served), Some((namespace, name))) => served == (&namespace, &name),
            (Some(_), None) => false,
        };
        labels_match(source_labels, self.labels)
            && source_namespace.is_none_or(|n| n == self.namespace)
            && (gateways.is_empty() || gateways.iter().any(gateway))
    }

    /// Whether HTTP match `m` of a VirtualService of `vs_namespace` applies to this client.
    fn admits(&self, m: &HTTPMatchRequest, vs_namespace: &str) -> bool {
        self.named_by(
            &m.source_labels,
            m.source_namespace.as_deref(),
            &m.gateways,
            vs_namespace,
        )
    }

    /// Whether a `tcp` or `tls` match `m` (its SNI aside) applies to this
    /// client's connections to `port` of a service at `address` (its IP, if
    /// it has one).
    fn admits_connection(
        &self,
        m: ConnectionMatch<'_>,
        vs_namespace: &str,
        port: u16,
        address: Option<&str>,
    ) -> bool {
        let subnet = |s: &String| address.is_some_and(|a| in_subnet(a, s));
        m.port.is_none_or(|p| p == u32::from(port))
            && (m.destination_subnets.is_empty() || m.destination_subnets.iter().any(subnet))
            && self.named_by(
                m.source_labels,
                m.source_namespace,
                m.gateways,
                vs_namespace,
            )
    }

    /// Whether `route` applies to this client: it has no match, or one it admits.
    pub fn admits_route(&self, route: &HTTPRoute, vs_namespace: &str) -> bool {
        route.match_.is_empty() || route.match_.iter().any(|m| self.admits(m, vs_namespace))
    }

    /// `rule`, converted from `route`, with only the matches this client
    /// admits; `None` when `route` has matches and none applies, so the rule
    /// is not programmed into this proxy (rather than matching everything).
    pub fn narrow(
        &self,
        route: &HTTPRoute,
        mut rule: HttpRule,
        vs_namespace: &str,
    ) -> Option<HttpRule> {
        if route.match_.is_empty() {
            return Some(rule);
        }
        // `rule.matches` are `route.match_`, converted one by one in order.
        let mut admitted = route.match_.iter().map(|m| self.admits(m, vs_namespace));
        rule.matches.retain(|_| admitted.next().unwrap_or(false));
        (!rule.matches.is_empty()).then_some(rule)
    }
}

/// What a `tcp` match and a `tls` match both ask of a connection and its client.
struct ConnectionMatch<'a> {
    port: Option<u32>,
    destination_subnets: &'a [String],
    source_labels: &'a BTreeMap<String, String>,
    source_namespace: Option<&'a str>,
    gateways: &'a [String],
}

impl<'a> From<&'a L4MatchAttributes> for ConnectionMatch<'a> {
    fn from(m: &'a L4MatchAttributes) -> Self {
        ConnectionMatch {
            port: m.port,
            destination_subnets: &m.destination_subnets,
            source_labels: &m.source_labels,
            source_namespace: m.source_namespace.as_deref(),
            gateways: &m.gateways,
        }
    }
}

impl<'a> From<&'a TLSMatchAttributes> for ConnectionMatch<'a> {
    fn from(m: &'a TLSMatchAttributes) -> Self {
        ConnectionMatch {
            port: m.port,
            destination_subnets: &m.destination_subnets,
            source_labels: &m.source_labels,
            source_namespace: m.source_namespace.as_deref(),
            gateways: &m.gateways,
        }
    }
}

/// Whether IP `address` is inside `subnet` (`ip/bits`, or one IP).
fn in_subnet(address: &str, subnet: &str) -> bool {
    use std::net::IpAddr;
    let (net, bits) = subnet.split_once('/').unwrap_or((subnet, ""));
    let (Ok(address), Ok(net)) = (address.parse::<IpAddr>(), net.parse::<IpAddr>()) else {
        return false;
    };
    let (address, net, width) = match (address, net) {
        (IpAddr::V4(a), IpAddr::V4(n)) => (u128::from(a.to_bits()), u128::from(n.to_bits()), 32),
        (IpAddr::V6(a), IpAddr::V6(n)) => (a.to_bits(), n.to_bits(), 128),
        _ => return false,
    };
    let bits: u32 = if bits.is_empty() {
        width
    } else {
        match bits.parse() {
            Ok(b) if b <= width => b,
            _ => return false,
        }
    };
    // The low `width - bits` bits are the host part.
    let host = width - bits;
    host >= 128 || (address >> host) == (net >> host)
}

/// Where a `tcp` route sends connections: (cluster, weight) pairs.
pub type TcpDestinations = Vec<(String, u32)>;

/// The destinations of the first `tcp` route of `vs` that applies to
/// `client`'s connections to `port` of `service` (at `address`) and has a
/// destination that resolves; `None` when there is none, so the port's
/// default cluster serves. Destinations that do not resolve are reported
/// for every route, whether it applies here or not.
pub fn tcp_route(
    vs: &Stored<api::VirtualService>,
    client: &Client<'_>,
    port: u16,
    address: Option<&str>,
    resolve: &Resolver<'_>,
    errors: &mut Vec<TranslateError>,
) -> Option<TcpDestinations> {
    let mut chosen = None;
    for (i, route) in vs.object.spec.tcp.iter().enumerate() {
        let path = format!("spec.tcp[{i}]");
        let destinations = l4_destinations(vs, &path, &route.route, resolve, errors);
        let applies = route.match_.is_empty()
            || route
                .match_
                .iter()
                .any(|m| client.admits_connection(m.into(), &vs.namespace, port, address));
        if chosen.is_none() && applies && !destinations.is_empty() {
            chosen = Some(destinations);
        }
    }
    chosen
}

/// One SNI-matched part of a `tls` route: the server names it takes and
/// where their connections go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SniRoute {
    pub sni_hosts: Vec<String>,
    pub destinations: TcpDestinations,
}

/// The `tls` routes of `vs` for `client`'s connections to `port` (of a
/// service at `address`), in order: one per match that applies, when the
/// route has a destination that resolves. Destinations that do not resolve
/// are reported for every route.
pub fn tls_routes(
    vs: &Stored<api::VirtualService>,
    client: &Client<'_>,
    port: u16,
    address: Option<&str>,
    resolve: &Resolver<'_>,
    errors: &mut Vec<TranslateError>,
) -> Vec<SniRoute> {
    let mut out = Vec::new();
    for (i, route) in vs.object.spec.tls.iter().enumerate() {
        let path = format!("spec.tls[{i}]");
        let destinations = l4_destinations(vs, &path, &route.route, resolve, errors);
        if destinations.is_empty() {
            continue;
        }
        for m in &route.match_ {
            if client.admits_connection(m.into(), &vs.namespace, port, address) {
                out.push(SniRoute {
                    sni_hosts: m.sni_hosts.iter().map(|h| h.to_ascii_lowercase()).collect(),
                    destinations: destinations.clone(),
                });
            }
        }
    }
    out
}

/// The (cluster, weight) pairs of a `tcp` or `tls` route (at `path`) whose
/// destinations resolve, the others reported.
fn l4_destinations(
    vs: &Stored<api::VirtualService>,
    path: &str,
    route: &[RouteDestination],
    resolve: &Resolver<'_>,
    errors: &mut Vec<TranslateError>,
) -> TcpDestinations {
    let mut destinations: TcpDestinations = Vec::new();
    for (j, d) in route.iter().enumerate() {
        match resolve(&d.destination) {
            Ok((cluster, _)) => {
                let weight = match (d.weight, route.len()) {
                    (_, 1) => 100,
                    (w, _) => w.and_then(|w| u32::try_from(w).ok()).unwrap_or(0),
                };
                // Envoy rejects weighted clusters whose weights are all zero.
                if weight > 0 {
                    destinations.push((cluster, weight));
                }
            }
            Err((code, message)) => errors.push(TranslateError {
                kind: "VirtualService".into(),
                namespace: vs.namespace.clone(),
                name: vs.name.clone(),
                path: format!("{path}.route[{j}].destination"),
                message,
                code,
            }),
        }
    }
    destinations
}

/// Resolves a destination to (cluster name, consistent-hash key), or says why not.
pub type Resolver<'a> =
    dyn Fn(&api::Destination) -> Result<(String, Option<HashKey>), (ErrorCode, String)> + 'a;

/// Converts rule `index`; `None` (with errors) when no destination could be resolved.
pub fn http_rule(
    route: &HTTPRoute,
    index: usize,
    object: (&str, &str),
    resolve: &Resolver<'_>,
    errors: &mut Vec<TranslateError>,
) -> Option<HttpRule> {
    let path = format!("spec.http[{index}]");
    let mut push = |code: ErrorCode, p: String, message: String| {
        errors.push(TranslateError {
            kind: "VirtualService".into(),
            namespace: object.0.to_string(),
            name: object.1.to_string(),
            path: p,
            message,
            code,
        })
    };
    let mut invalid = |p: String, m: String| push(ErrorCode::InvalidValue, p, m);
    let timeout = dur(
        route.timeout.as_ref(),
        &format!("{path}.timeout"),
        &mut invalid,
    );
    let retries = route.retries.as_ref().map(|r| Retries {
        attempts: r.attempts.and_then(|a| u32::try_from(a).ok()).unwrap_or(2),
        per_try_timeout: dur(
            r.per_try_timeout.as_ref(),
            &format!("{path}.retries.perTryTimeout"),
            &mut invalid,
        ),
        retry_on: r.retry_on.clone(),
    });
    let fault = route.fault.as_ref().map(|f| Fault {
        delay: f.delay.as_ref().and_then(|d| {
            let fixed = dur(
                d.fixed_delay.as_ref(),
                &format!("{path}.fault.delay.fixedDelay"),
                &mut invalid,
            )?;
            // The deprecated integer `percent` counts when `percentage` is unset.
            let share = (d.percentage.as_ref().map(|p| p.value))
                .or(d.percent.map(f64::from))
                .unwrap_or(100.0);
            Some((fixed, share))
        }),
        abort: f.abort.as_ref().and_then(|a| {
            let status = match (a.http_status, &a.grpc_status) {
                (Some(code), _) => AbortStatus::Http(u32::try_from(code).ok()?),
                (None, Some(name)) => AbortStatus::Grpc(trellis_api::grpc::status_code(name)?),
                (None, None) => return None,
            };
            Some((status, a.percentage.as_ref().map_or(100.0, |p| p.value)))
        }),
    });
    let cors = route.cors_policy.as_ref().map(|c| Cors {
        // The deprecated `allowOrigin` (exact origins) counts when `allowOrigins` is unset.
        allow_origins: if c.allow_origins.is_empty() {
            (c.allow_origin.iter())
                .map(|o| StringMatch::Exact(o.clone()))
                .collect()
        } else {
            c.allow_origins.iter().map(string_match).collect()
        },
        allow_methods: c.allow_methods.clone(),
        allow_headers: c.allow_headers.clone(),
        expose_headers: c.expose_headers.clone(),
        max_age: dur(
            c.max_age.as_ref(),
            &format!("{path}.corsPolicy.maxAge"),
            &mut invalid,
        ),
        allow_credentials: c.allow_credentials,
        // As Istio: IGNORE keeps unmatched preflights from the upstream.
        forward_not_matching_preflights: c.unmatched_preflights.and_then(|u| match u {
            UnmatchedPreflights::Unspecified => None,
            UnmatchedPreflights::Forward => Some(true),
            UnmatchedPreflights::Ignore => Some(false),
        }),
    });
    let action = if let Some(d) = &route.direct_response {
        let body = d.body.as_ref().and_then(|b| match (&b.string, &b.bytes) {
            (Some(text), _) => Some(Body::Text(text.clone())),
            (None, Some(bytes)) => match BASE64.decode(bytes) {
                Ok(bytes) => Some(Body::Bytes(bytes)),
                Err(e) => {
                    invalid(
                        format!("{path}.directResponse.body.bytes"),
                        format!("not base64: {e}"),
                    );
                    None
                }
            },
            (None, None) => None,
        });
        Action::DirectResponse {
            status: d.status,
            body,
        }
    } else if let Some(r) = &route.redirect {
        Action::Redirect(Redirect {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            scheme: r.scheme.clone(),
            port: match (r.port, r.derive_port) {
                (Some(p), _) => u16::try_from(p).ok().map(RedirectPort::Number),
                (None, Some(api::RedirectPortSelection::FromRequestPort)) => {
                    Some(RedirectPort::RequestPort)
                }
                (None, Some(api::RedirectPortSelection::FromProtocolDefault)) => {
                    Some(RedirectPort::ProtocolDefault)
                }
                (None, None) => None,
            },
            code: r.redirect_code,
        })
    } else {
        let mut destinations = Vec::new();
        for (i, d) in route.route.iter().enumerate() {
            match resolve(&d.destination) {
                Ok((cluster, hash_key)) => destinations.push(Destination {
                    cluster,
                    weight: d
                        .weight
                        .and_then(|w| u32::try_from(w).ok())
                        .unwrap_or(if route.route.len() == 1 { 100 } else { 0 }),
                    headers: headers(d.headers.as_ref()),
                    hash_key,
                }),
                Err((code, message)) => {
                    push(code, format!("{path}.route[{i}].destination"), message)
                }
            }
        }
        // Envoy rejects weighted clusters whose weights are all zero.
        destinations.retain(|d| d.weight > 0 || route.route.len() == 1);
        if destinations.is_empty() {
            return None;
        }
        Action::Route(destinations)
    };
    // The deprecated integer `mirrorPercent` (or `mirror_percent`, its other
    // spelling) counts when `mirrorPercentage` is unset.
    let deprecated =
        (route.mirror_percent.or(route.mirror_percent_snake_case)).map(|p| api::Percent {
            value: f64::from(p),
        });
    let mirror_percentage = route.mirror_percentage.as_ref().or(deprecated.as_ref());
    let single = (route.mirror.iter()).map(|m| (m, mirror_percentage, "mirror".to_string()));
    let listed = (route.mirrors.iter().enumerate()).map(|(k, m)| {
        (
            &m.destination,
            m.percentage.as_ref(),
            format!("mirrors[{k}].destination"),
        )
    });
    let mut mirrors = Vec::new();
    for (destination, percentage, field) in single.chain(listed) {
        match resolve(destination) {
            Ok((cluster, _)) => mirrors.push(Mirror {
                cluster,
                percentage: percentage.map(|p| p.value),
            }),
            Err((code, message)) => push(code, format!("{path}.{field}"), message),
        }
    }
    Some(HttpRule {
        name: route
            .name
            .clone()
            .unwrap_or_else(|| format!("{}.{}.{index}", object.0, object.1)),
        matches: route
            .match_
            .iter()
            .map(|m| RequestMatch {
                name: m.name.clone().filter(|n| !n.is_empty()),
                uri: m.uri.as_ref().map(string_match),
                scheme: m.scheme.as_ref().map(string_match),
                method: m.method.as_ref().map(string_match),
                authority: m.authority.as_ref().map(string_match),
                headers: m
                    .headers
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect(),
                without_headers: m
                    .without_headers
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect(),
                query_params: m
                    .query_params
                    .iter()
                    .map(|(k, v)| (k.clone(), string_match(v)))
                    .collect(),
                ignore_uri_case: m.ignore_uri_case.unwrap_or(false),
                port: m.port.and_then(|p| u16::try_from(p).ok()),
                stat_prefix: m.stat_prefix.clone().filter(|p| !p.is_empty()),
            })
            .collect(),
        action,
        rewrite: route.rewrite.as_ref().map(|r| Rewrite {
            uri: r.uri.clone(),
            authority: r.authority.clone(),
            uri_regex: (r.uri_regex_rewrite.as_ref())
                .map(|x| (x.match_.clone(), x.rewrite.clone())),
        }),
        timeout,
        retries,
        fault,
        mirrors,
        headers: headers(route.headers.as_ref()),
        cors,
    })
}

pub fn string_match(m: &api::StringMatch) -> StringMatch {
    match m {
        api::StringMatch::Exact(v) => StringMatch::Exact(v.clone()),
        api::StringMatch::Prefix(v) => StringMatch::Prefix(v.clone()),
        api::StringMatch::Regex(v) => StringMatch::Regex(v.clone()),
        api::StringMatch::Any => StringMatch::Any,
    }
}

fn headers(h: Option<&api::Headers>) -> Headers {
    let ops = |o: Option<&api::HeaderOperations>| {
        o.map(|o| HeaderOps {
            set: o.set.clone(),
            add: o.add.clone(),
            remove: o.remove.clone(),
        })
        .unwrap_or_default()
    };
    Headers {
        request: ops(h.and_then(|h| h.request.as_ref())),
        response: ops(h.and_then(|h| h.response.as_ref())),
    }
}

#[cfg(test)]
mod tests {
    use super::in_subnet;

    #[test]
    fn subnets_contain_the_addresses_under_their_prefix() {
        assert!(in_subnet("10.1.2.3", "10.0.0.0/8"));
        assert!(!in_subnet("11.1.2.3", "10.0.0.0/8"));
        assert!(in_subnet("10.1.2.3", "10.1.2.3"));
        assert!(!in_subnet("10.1.2.4", "10.1.2.3/32"));
        assert!(in_subnet("192.0.2.1", "0.0.0.0/0"));
        assert!(in_subnet("2001:db8::1", "2001:db8::/32"));
        assert!(!in_subnet("2001:db9::1", "2001:db8::/32"));
        assert!(in_subnet("::1", "::/0"));
        assert!(!in_subnet("10.1.2.3", "::/0"), "families differ");
        assert!(!in_subnet("10.1.2.3", "10.0.0.0/33"));
        assert!(!in_subnet("cart", "10.0.0.0/8"));
    }
}
