use super::*;
use proptest::prelude::*;
use prost::Message;

fn decode(filter: &HttpFilter) -> JwtAuthentication {
    let Some(ConfigType::TypedConfig(any)) = &filter.config_type else {
        panic!("typed config expected");
    };
    JwtAuthentication::decode(any.value.as_slice()).unwrap()
}

fn policy(rules: Vec<JwtRule>) -> RequestAuthnPolicy {
    RequestAuthnPolicy {
        namespace: "shop".into(),
        name: "jwt".into(),
        jwt_rules: rules,
    }
}

#[test]
fn inline_jwks_provider_with_payload_metadata_and_allow_missing() {
    let rule = JwtRule {
        issuer: "https://issuer.example".into(),
        jwks: Some("{\"keys\":[]}".into()),
        audiences: vec!["shop".into()],
        ..Default::default()
    };
    let (filter, clusters, errors) = jwt_authn_filter(&[policy(vec![rule])]);
    assert!(errors.is_empty() && clusters.is_empty());
    let config = decode(&filter.unwrap());
    let provider = &config.providers["shop.jwt.0"];
    assert_eq!(provider.issuer, "https://issuer.example");
    assert_eq!(provider.payload_in_metadata, PAYLOAD_METADATA_KEY);
    assert!(matches!(
        provider.jwks_source_specifier,
        Some(JwksSourceSpecifier::LocalJwks(_))
    ));
    let Some(RequirementType::Requires(req)) = &config.rules[0].requirement_type else {
        panic!("requires expected");
    };
    let Some(RequiresType::RequiresAny(any)) = &req.requires_type else {
        panic!("requires_any expected");
    };
    assert_eq!(any.requirements.len(), 2);
    assert!(matches!(
        any.requirements[1].requires_type,
        Some(RequiresType::AllowMissing(_))
    ));
}

#[test]
fn jwks_uri_gets_a_cluster() {
    let rule = JwtRule {
        issuer: "iss".into(),
        jwks_uri: Some("https://keys.example.com/.well-known/jwks.json".into()),
        ..Default::default()
    };
    let (filter, clusters, errors) = jwt_authn_filter(&[policy(vec![rule])]);
    assert!(errors.is_empty());
    assert_eq!(clusters.len(), 1);
    assert_eq!(clusters[0].name, "outbound|443||keys.example.com");
    assert!(clusters[0].transport_socket.is_some());
    // a host name resolves IPv4 only (Envoy's AUTO would pick [::1] for localhost)
    assert_eq!(
        clusters[0].dns_lookup_family,
        envoy_types::pb::envoy::config::cluster::v3::cluster::DnsLookupFamily::V4Only as i32
    );
    let config = decode(&filter.unwrap());
    let Some(JwksSourceSpecifier::RemoteJwks(remote)) =
        &config.providers["shop.jwt.0"].jwks_source_specifier
    else {
        panic!("remote jwks expected");
    };
    assert_eq!(
        remote.http_uri.as_ref().unwrap().http_upstream_type,
        Some(HttpUpstreamType::Cluster(
            "outbound|443||keys.example.com".into()
        ))
    );
}

#[test]
fn bad_rules_are_errors_naming_the_field() {
    let no_issuer = JwtRule {
        jwks: Some("{}".into()),
        ..Default::default()
    };
    let bad_uri = JwtRule {
        issuer: "i".into(),
        jwks_uri: Some("ftp://x".into()),
        ..Default::default()
    };
    let (filter, _, errors) = jwt_authn_filter(&[
        policy(vec![no_issuer]),
        RequestAuthnPolicy {
            name: "other".into(),
            ..policy(vec![bad_uri])
        },
    ]);
    assert!(filter.is_none());
    let texts: Vec<String> = errors.iter().map(|e| e.to_string()).collect();
    assert!(
        texts
            .iter()
            .any(|t| t.contains("RequestAuthentication/shop/jwt")
                && t.contains("spec.jwtRules[0].issuer"))
    );
    assert!(texts.iter().any(|t| t.contains("spec.jwtRules[0].jwksUri")));
}

#[test]
fn parses_jwks_uris() {
    let u = JwksUri::parse("http://127.0.0.1:8081/jwks").unwrap();
    assert_eq!((u.host.as_str(), u.port, u.tls), ("127.0.0.1", 8081, false));
    assert!(JwksUri::parse("http://:80/").is_none());
    assert!(JwksUri::parse("https://a b/").is_none());
}

proptest! {
    #[test]
    fn jwks_uri_parser_never_panics(s in ".{0,40}") {
        let _ = JwksUri::parse(&s);
    }
}

/// How the cluster that fetches `uri` verifies the server: (SNI, trusted CA
/// file, SAN type and exact value).
fn jwks_server_check(uri: &str) -> (String, String, i32, String) {
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::{
        UpstreamTlsContext, common_tls_context::ValidationContextType,
    };
    use envoy_types::pb::envoy::r#type::matcher::v3::string_matcher::MatchPattern;
    let cluster = JwksUri::parse(uri).unwrap().cluster();
    let Some(transport_socket::ConfigType::TypedConfig(any)) =
        cluster.transport_socket.unwrap().config_type
    else {
        panic!("typed TLS config expected");
    };
    let tls = UpstreamTlsContext::decode(any.value.as_slice()).unwrap();
    let Some(ValidationContextType::ValidationContext(v)) = tls
        .common_tls_context
        .and_then(|c| c.validation_context_type)
    else {
        panic!("{uri}: a validation context expected");
    };
    let Some(Specifier::Filename(trusted)) = v.trusted_ca.and_then(|d| d.specifier) else {
        panic!("{uri}: trusted_ca from a file expected");
    };
    let [san] = v.match_typed_subject_alt_names.as_slice() else {
        panic!("{uri}: one SAN matcher expected");
    };
    let Some(MatchPattern::Exact(value)) =
        san.matcher.as_ref().and_then(|m| m.match_pattern.clone())
    else {
        panic!("{uri}: an exact SAN expected");
    };
    (tls.sni, trusted, san.san_type, value)
}

#[test]
fn https_jwks_servers_are_verified_with_the_system_roots_and_the_host() {
    use crate::security::origination::SYSTEM_ROOTS;
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::subject_alt_name_matcher::SanType;
    let roots = SYSTEM_ROOTS.to_string();
    assert_eq!(
        jwks_server_check("https://keys.example.com/jwks.json"),
        (
            "keys.example.com".into(),
            roots.clone(),
            SanType::Dns as i32,
            "keys.example.com".into()
        )
    );
    // An address is matched as an IP SAN and sent no SNI.
    assert_eq!(
        jwks_server_check("https://127.0.0.9:8443/jwks.json"),
        (
            String::new(),
            roots,
            SanType::IpAddress as i32,
            "127.0.0.9".into()
        )
    );
    let plain = JwksUri::parse("http://keys.example.com/jwks.json").unwrap();
    assert!(plain.cluster().transport_socket.is_none());
}

/// Many providers: the same policies give the same bytes (the providers map and
/// the requirement list in name order), and the bytes decode to every provider.
#[test]
fn many_providers_pack_to_the_same_bytes_every_time() {
    let rules: Vec<JwtRule> = (0..12)
        .map(|i| JwtRule {
            issuer: format!("https://issuer-{i}.example"),
            jwks: Some("{\"keys\":[]}".into()),
            ..Default::default()
        })
        .collect();
    let (a, _, _) = jwt_authn_filter(&[policy(rules.clone())]);
    let (b, _, _) = jwt_authn_filter(&[policy(rules)]);
    let (a, b) = (a.unwrap(), b.unwrap());
    assert_eq!(a, b);
    let config = decode(&a);
    assert_eq!(config.providers.len(), 12);
    let Some(RequirementType::Requires(req)) = &config.rules[0].requirement_type else {
        panic!("requires expected");
    };
    let Some(RequiresType::RequiresAny(any)) = &req.requires_type else {
        panic!("requires_any expected");
    };
    let names: Vec<&str> = (any.requirements.iter())
        .filter_map(|r| match &r.requires_type {
            Some(RequiresType::ProviderName(n)) => Some(n.as_str()),
            _ => None,
        })
        .collect();
    let mut sorted = names.clone();
    sorted.sort_unstable();
    assert_eq!(names, sorted);
}
