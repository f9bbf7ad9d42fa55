//! RequestAuthentication -> `envoy.filters.http.jwt_authn`.
//!
//! Istio's semantics: a request without a token passes authentication (an
//! AuthorizationPolicy decides whether that is acceptable); a request with an
//! invalid token is rejected with 401. The verified payload goes to dynamic
//! metadata under [`PAYLOAD_METADATA_KEY`], where RBAC matches
//! `requestPrincipals` (`iss/sub`) and claims.
use envoy_types::pb::envoy::config::cluster::v3::{Cluster, cluster};
use envoy_types::pb::envoy::config::core::v3::{
    Address, DataSource, HttpUri, SocketAddress, TransportSocket, data_source::Specifier,
    http_uri::HttpUpstreamType, socket_address, transport_socket,
};
use envoy_types::pb::envoy::config::endpoint::v3::{
    ClusterLoadAssignment, Endpoint, LbEndpoint, LocalityLbEndpoints, lb_endpoint,
};
use envoy_types::pb::envoy::config::route::v3::{RouteMatch, route_match::PathSpecifier};
use envoy_types::pb::envoy::extensions::filters::http::jwt_authn::v3::{
    JwtAuthentication, JwtClaimToHeader, JwtHeader, JwtProvider, JwtRequirement,
    JwtRequirementOrList, RemoteJwks, RequirementRule, jwt_provider::JwksSourceSpecifier,
    jwt_requirement::RequiresType, requirement_rule::RequirementType,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::{
    HttpFilter, http_filter::ConfigType,
};
use envoy_types::pb::google::protobuf::{Duration, Empty};

use super::origination::verified_tls_to;
use super::{ObjectRef, SecurityError, pack};

/// Name of the JWT filter.
pub const JWT_AUTHN: &str = "envoy.filters.http.jwt_authn";
/// Metadata key (under the jwt_authn filter namespace) holding the verified payload.
pub const PAYLOAD_METADATA_KEY: &str = "payload";

/// `jwtRules[].fromHeaders[]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FromHeader {
    pub name: String,
    pub prefix: String,
}

/// One `jwtRules[]` entry.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct JwtRule {
    pub issuer: String,
    pub audiences: Vec<String>,
    /// Inline JWKS (JSON text).
    pub jwks: Option<String>,
    pub jwks_uri: Option<String>,
    /// The URI was spelled `jwks_uri` (Istio's other spelling): errors name that field.
    pub jwks_uri_snake_case: bool,
    pub from_headers: Vec<FromHeader>,
    pub from_params: Vec<String>,
    pub output_payload_to_header: Option<String>,
    pub forward_original_token: bool,
    /// `outputClaimToHeaders`: (header, claim).
    pub output_claim_to_headers: Vec<(String, String)>,
}

/// The fields of a RequestAuthentication that applies to one workload.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RequestAuthnPolicy {
    pub namespace: String,
    pub name: String,
    pub jwt_rules: Vec<JwtRule>,
}

/// A `jwksUri` split into what an Envoy cluster needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksUri {
    pub uri: String,
    pub host: String,
    pub port: u16,
    pub tls: bool,
}

impl JwksUri {
    /// Parses `http(s)://host[:port]/path`.
    pub fn parse(uri: &str) -> Option<JwksUri> {
        let (tls, rest) = if let Some(r) = uri.strip_prefix("https://") {
            (true, r)
        } else {
            (false, uri.strip_prefix("http://")?)
        };
        let authority = rest.split(['/', '?']).next().unwrap_or("");
        let (host, port) = match authority.rsplit_once(':') {
            Some((h, p)) => (h, p.parse().ok()?),
            None => (authority, if tls { 443 } else { 80 }),
        };
        let valid_host = !host.is_empty()
            && host
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '.' || c == '-');
        valid_host.then(|| JwksUri {
            uri: uri.to_string(),
            host: host.to_string(),
            port,
            tls,
        })
    }

    /// Stable name of the cluster that fetches this JWKS.
    pub fn cluster_name(&self) -> String {
        format!("outbound|{}||{}", self.port, self.host)
    }

    /// A cluster reaching the JWKS host (DNS-resolved; for https, TLS that
    /// verifies the server: keys from an unverified server would let anyone
    /// on the path mint tokens the proxy accepts).
    pub fn cluster(&self) -> Cluster {
        let address = Address {
            address: Some(
                envoy_types::pb::envoy::config::core::v3::address::Address::SocketAddress(
                    SocketAddress {
                        address: self.host.clone(),
                        port_specifier: Some(socket_address::PortSpecifier::PortValue(u32::from(
                            self.port,
                        ))),
                        ..Default::default()
                    },
                ),
            ),
        };
        let is_address = self.host.parse::<std::net::IpAddr>().is_ok();
        let discovery = if is_address {
            cluster::DiscoveryType::Static
        } else {
            cluster::DiscoveryType::LogicalDns
        };
        // Envoy's default (AUTO) prefers IPv6: `localhost` became [::1] and the fetch
        // failed against a server on 127.0.0.1. IPv4 only, like ServiceEntry DNS clusters.
        let dns_lookup_family = if is_address {
            cluster::DnsLookupFamily::Auto
        } else {
            cluster::DnsLookupFamily::V4Only
        };
        Cluster {
            name: self.cluster_name(),
            connect_timeout: Some(Duration {
                seconds: 5,
                nanos: 0,
            }),
            cluster_discovery_type: Some(cluster::ClusterDiscoveryType::Type(discovery as i32)),
            dns_lookup_family: dns_lookup_family as i32,
            load_assignment: Some(ClusterLoadAssignment {
                cluster_name: self.cluster_name(),
                endpoints: vec![LocalityLbEndpoints {
                    lb_endpoints: vec![LbEndpoint {
                        host_identifier: Some(lb_endpoint::HostIdentifier::Endpoint(Endpoint {
                            address: Some(address),
                            ..Default::default()
                        })),
                        ..Default::default()
                    }],
                    ..Default::default()
                }],
                ..Default::default()
            }),
            transport_socket: self.tls.then(|| TransportSocket {
                name: super::tls::TLS_TRANSPORT_SOCKET.to_string(),
                config_type: Some(transport_socket::ConfigType::TypedConfig(pack(
                    &verified_tls_to(&self.host),
                ))),
            }),
            ..Default::default()
        }
    }
}

/// The jwt_authn filter for the RequestAuthentications that apply to a workload
/// (`None` when there are none), plus the clusters its remote JWKS need.
/// A policy with an invalid rule is left out with an error; the others apply.
pub fn jwt_authn_filter(
    policies: &[RequestAuthnPolicy],
) -> (Option<HttpFilter>, Vec<Cluster>, Vec<SecurityError>) {
    let mut sorted: Vec<&RequestAuthnPolicy> = policies.iter().collect();
    sorted.sort_by(|a, b| (&a.namespace, &a.name).cmp(&(&b.namespace, &b.name)));
    let mut config = JwtAuthentication::default();
    let mut clusters: Vec<Cluster> = Vec::new();
    let mut errors = Vec::new();
    for policy in sorted {
        match policy_providers(policy) {
            Ok(providers) => {
                for (name, provider, cluster) in providers {
                    config.providers.insert(name, provider);
                    if let Some(c) = cluster
                        && !clusters.iter().any(|x| x.name == c.name)
                    {
                        clusters.push(c);
                    }
                }
            }
            Err(e) => errors.push(e),
        }
    }
    if config.providers.is_empty() {
        return (None, clusters, errors);
    }
    let mut names: Vec<&String> = config.providers.keys().collect();
    names.sort();
    let mut requirements: Vec<JwtRequirement> = names
        .into_iter()
        .map(|name| JwtRequirement {
            requires_type: Some(RequiresType::ProviderName(name.clone())),
        })
        .collect();
    // a missing token passes; an invalid one is rejected (401)
    requirements.push(JwtRequirement {
        requires_type: Some(RequiresType::AllowMissing(Empty {})),
    });
    config.rules.push(RequirementRule {
        r#match: Some(RouteMatch {
            path_specifier: Some(PathSpecifier::Prefix("/".into())),
            ..Default::default()
        }),
        requirement_type: Some(RequirementType::Requires(JwtRequirement {
            requires_type: Some(RequiresType::RequiresAny(JwtRequirementOrList {
                requirements,
            })),
        })),
    });
    let filter = HttpFilter {
        name: JWT_AUTHN.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack_jwt_authn(config))),
        ..Default::default()
    };
    (Some(filter), clusters, errors)
}

/// The filter config with its `providers` map (field 1) in name order, so the
/// same policies always give the same bytes.
fn pack_jwt_authn(mut config: JwtAuthentication) -> envoy_types::pb::google::protobuf::Any {
    let providers = std::mem::take(&mut config.providers);
    let mut value = prost::Message::encode_to_vec(&config);
    crate::encode::encode_sorted_map(1, providers, &mut value);
    envoy_types::pb::google::protobuf::Any {
        type_url: <JwtAuthentication as prost::Name>::type_url(),
        value,
    }
}

type Provider = (String, JwtProvider, Option<Cluster>);

fn policy_providers(policy: &RequestAuthnPolicy) -> Result<Vec<Provider>, SecurityError> {
    let object = ObjectRef::new("RequestAuthentication", &policy.namespace, &policy.name);
    policy
        .jwt_rules
        .iter()
        .enumerate()
        .map(|(i, rule)| {
            let field = format!("spec.jwtRules[{i}]");
            if rule.issuer.is_empty() {
                return Err(SecurityError::Invalid {
                    object: object.clone(),
                    field: format!("{field}.issuer"),
                    reason: "issuer is required".into(),
                });
            }
            let (source, cluster) = match (&rule.jwks, &rule.jwks_uri) {
                (Some(jwks), _) => (
                    JwksSourceSpecifier::LocalJwks(DataSource {
                        specifier: Some(Specifier::InlineString(jwks.clone())),
                        ..Default::default()
                    }),
                    None,
                ),
                (None, Some(uri)) => {
                    let parsed = JwksUri::parse(uri).ok_or_else(|| SecurityError::Invalid {
                        object: object.clone(),
                        field: if rule.jwks_uri_snake_case {
                            format!("{field}.jwks_uri")
                        } else {
                            format!("{field}.jwksUri")
                        },
                        reason: format!(
                            "invalid value {uri:?}: expected http(s)://host[:port]/path"
                        ),
                    })?;
                    (
                        JwksSourceSpecifier::RemoteJwks(RemoteJwks {
                            http_uri: Some(HttpUri {
                                uri: parsed.uri.clone(),
                                timeout: Some(Duration {
                                    seconds: 5,
                                    nanos: 0,
                                }),
                                http_upstream_type: Some(HttpUpstreamType::Cluster(
                                    parsed.cluster_name(),
                                )),
                            }),
                            cache_duration: Some(Duration {
                                seconds: 300,
                                nanos: 0,
                            }),
                            ..Default::default()
                        }),
                        Some(parsed.cluster()),
                    )
                }
                (None, None) => {
                    return Err(SecurityError::Unsupported {
                        object: object.clone(),
                        field: format!("{field}.jwks"),
                        reason:
                            "one of jwks or jwksUri is required (OIDC discovery is not supported)"
                                .into(),
                    });
                }
            };
            let provider = JwtProvider {
                issuer: rule.issuer.clone(),
                audiences: rule.audiences.clone(),
                forward: rule.forward_original_token,
                from_headers: rule
                    .from_headers
                    .iter()
                    .map(|h| JwtHeader {
                        name: h.name.clone(),
                        value_prefix: h.prefix.clone(),
                    })
                    .collect(),
                from_params: rule.from_params.clone(),
                forward_payload_header: rule.output_payload_to_header.clone().unwrap_or_default(),
                claim_to_headers: (rule.output_claim_to_headers.iter())
                    .map(|(header, claim)| JwtClaimToHeader {
                        header_name: header.clone(),
                        claim_name: claim.clone(),
                        ..Default::default()
                    })
                    .collect(),
                payload_in_metadata: PAYLOAD_METADATA_KEY.to_string(),
                jwks_source_specifier: Some(source),
                ..Default::default()
            };
            let name = format!("{}.{}.{i}", policy.namespace, policy.name);
            Ok((name, provider, cluster))
        })
        .collect()
}

#[cfg(test)]
mod tests;
