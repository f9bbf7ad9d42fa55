//! DestinationRule TLS origination on outbound clusters (SIMPLE, MUTUAL, port level).
mod fixture;

use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use fixture::*;
use prost::Message;
use trellis_api::networking::ServiceEntry;
use trellis_model::Resource;
use trellis_translate::{ErrorCode, ProxyResources};

fn entry() -> Resource {
    let se: ServiceEntry = from_yaml(
        r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: api, namespace: shop}
spec:
  hosts: [api.example.com]
  resolution: DNS
  ports: [{number: 80, name: http, protocol: HTTP}, {number: 8443, name: http-alt, protocol: HTTP}]
"#,
    );
    Resource::ServiceEntry(Box::new(se))
}

fn tls_of(out: &ProxyResources, name: &str) -> Option<UpstreamTlsContext> {
    let c = cluster(out, name);
    let ts = c.transport_socket.as_ref()?;
    let Some(ConfigType::TypedConfig(any)) = &ts.config_type else {
        panic!("typed config expected");
    };
    Some(UpstreamTlsContext::decode(any.value.as_slice()).unwrap())
}

#[test]
fn simple_verifies_ca_and_san_and_port_level_settings_override() {
    let mut r = base_resources();
    r.push(entry());
    r.push(dr(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, caCertificates: /etc/ca.pem, subjectAltNames: [api.internal]}
    portLevelSettings:
    - port: {number: 8443}
      tls: {mode: MUTUAL, clientCertificate: /etc/c.pem, privateKey: /etc/k.pem, sni: alt.example.com}
"#));
    let model = model_of(r);
    let out = web_sidecar(&model);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let simple = tls_of(&out, "outbound|80||api.example.com").expect("tls on port 80");
    assert_eq!(simple.sni, "api.example.com");
    let text = format!("{:?}", simple.common_tls_context);
    assert!(
        text.contains("/etc/ca.pem") && text.contains("api.internal"),
        "{text}"
    );
    assert!(
        !text.contains("/etc/c.pem"),
        "no client certificate for SIMPLE"
    );
    // a listed name matches a SAN of any type (an IP or URI SAN too), as in Istio
    use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
    let Some(ValidationContextType::ValidationContext(v)) = &simple
        .common_tls_context
        .as_ref()
        .unwrap()
        .validation_context_type
    else {
        panic!("no validation context");
    };
    assert_eq!(v.match_typed_subject_alt_names.len(), 4);
    let mutual = tls_of(&out, "outbound|8443||api.example.com").expect("tls on port 8443");
    assert_eq!(mutual.sni, "alt.example.com");
    let text = format!("{:?}", mutual.common_tls_context);
    assert!(
        text.contains("/etc/c.pem") && text.contains("/etc/k.pem"),
        "{text}"
    );
}

#[test]
fn mutual_without_client_certificate_is_reported() {
    let mut r = base_resources();
    r.push(entry());
    r.push(dr(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: MUTUAL, credentialName: api-client}
"#));
    let model = model_of(r);
    let out = web_sidecar(&model);
    let e = out
        .errors
        .iter()
        .find(|e| e.code == ErrorCode::InvalidValue)
        .expect("error");
    assert_eq!(
        (e.name.as_str(), e.path.as_str()),
        ("api", "spec.trafficPolicy.tls.clientCertificate")
    );
    // still TLS (the server's refusal shows), never silent plaintext
    assert!(tls_of(&out, "outbound|80||api.example.com").is_some());
}

/// SIMPLE with `credentialName`: the sidecar cannot read the Secret, so the
/// rule is reported rather than verifying with other roots in silence.
#[test]
fn simple_with_a_credential_name_is_reported() {
    let mut r = base_resources();
    r.push(entry());
    r.push(dr(r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: api, namespace: shop}
spec:
  host: api.example.com
  trafficPolicy:
    tls: {mode: SIMPLE, credentialName: api-ca}
"#));
    let out = web_sidecar(&model_of(r));
    let paths: Vec<&str> = out.errors.iter().map(|e| e.path.as_str()).collect();
    assert_eq!(paths, ["spec.trafficPolicy.tls.credentialName"]);
    assert!(tls_of(&out, "outbound|80||api.example.com").is_some());
}
