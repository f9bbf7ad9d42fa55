//! DestinationRule TLS origination on outbound clusters (SIMPLE, MUTUAL, port level).
mod fixture;

use envoy_types::pb::envoy::config::core::v3::data_source::Specifier;
use envoy_types::pb::envoy::config::core::v3::transport_socket::ConfigType;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::UpstreamTlsContext;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::common_tls_context::ValidationContextType;
use fixture::*;
use prost::Message;
use trellis_api::networking::ServiceEntry;
use trellis_model::Resource;
use trellis_translate::{Proxy, ProxyResources, SecretRef, Translator};

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

fn credential_rule(tls: &str, selector: &str) -> Resource {
    dr(&format!(
        "apiVersion: networking.istio.io/v1\nkind: DestinationRule\n\
         metadata: {{name: api, namespace: shop}}\n\
         spec:\n  host: api.example.com\n{selector}  trafficPolicy:\n    tls: {tls}\n"
    ))
}

fn credential(name: &str) -> SecretRef {
    SecretRef::Credential {
        namespace: "shop".into(),
        name: name.into(),
    }
}

fn credential_refs(out: &ProxyResources) -> Vec<&SecretRef> {
    (out.secrets.iter())
        .filter(|s| matches!(s, SecretRef::Credential { .. }))
        .collect()
}

/// The CA a context verifies the server with: a file, or an SDS secret name.
fn trust(ctx: &UpstreamTlsContext) -> Option<String> {
    match ctx
        .common_tls_context
        .as_ref()?
        .validation_context_type
        .as_ref()?
    {
        ValidationContextType::ValidationContext(v) => match v.trusted_ca.as_ref()?.specifier {
            Some(Specifier::Filename(ref f)) => Some(format!("file {f}")),
            _ => None,
        },
        ValidationContextType::CombinedValidationContext(c) => {
            let sans = &c
                .default_validation_context
                .as_ref()?
                .match_typed_subject_alt_names;
            assert!(!sans.is_empty(), "the server's name is checked too");
            Some(format!(
                "sds {}",
                c.validation_context_sds_secret_config.as_ref()?.name
            ))
        }
        _ => None,
    }
}

/// MUTUAL with `credentialName` and no `workloadSelector`: as in Istio, the
/// Secret (in the gateway's own namespace) is used at gateways, over SDS; a
/// sidecar the rule reaches cannot read it and verifies the server with the
/// system roots, with no client certificate; neither is an error.
#[test]
fn a_credential_name_applies_at_gateways_and_not_at_sidecars() {
    let mut r = base_resources();
    r.push(entry());
    r.push(workload(
        "shop",
        "egress-1",
        "127.0.0.20",
        &[("istio", "egressgateway")],
    ));
    r.push(credential_rule(
        "{mode: MUTUAL, credentialName: api-client}",
        "",
    ));
    let model = model_of(r);
    let mut translator = Translator::new(&model, explicit_options());
    let gateway = translator.translate(&Proxy::gateway("shop", "egress-1"));
    let sidecar = translator.translate(&Proxy::sidecar("shop", "web-1"));
    for out in [&gateway, &sidecar] {
        assert!(out.errors.is_empty(), "{:?}", out.errors);
    }

    let at_gateway = tls_of(&gateway, "outbound|80||api.example.com").expect("TLS at the gateway");
    assert_eq!(at_gateway.sni, "api.example.com");
    assert_eq!(
        trust(&at_gateway).as_deref(),
        Some("sds kubernetes://shop/api-client-cacert")
    );
    let common = at_gateway.common_tls_context.as_ref().unwrap();
    let names: Vec<&str> = (common.tls_certificate_sds_secret_configs.iter())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["kubernetes://shop/api-client"]);
    assert!(common.tls_certificates.is_empty());
    assert_eq!(
        credential_refs(&gateway),
        [&credential("api-client"), &credential("api-client-cacert")]
    );

    let at_sidecar = tls_of(&sidecar, "outbound|80||api.example.com").expect("TLS at the sidecar");
    assert_eq!(
        trust(&at_sidecar),
        Some(format!(
            "file {}",
            trellis_translate::security::origination::SYSTEM_ROOTS
        ))
    );
    let common = at_sidecar.common_tls_context.as_ref().unwrap();
    assert!(
        common.tls_certificate_sds_secret_configs.is_empty() && common.tls_certificates.is_empty()
    );
    assert!(
        credential_refs(&sidecar).is_empty(),
        "{:?}",
        sidecar.secrets
    );
}

/// With a `workloadSelector`, the sidecars it selects read the Secret from
/// their own namespace (SIMPLE: its CA only); the others are not reached.
#[test]
fn a_credential_name_applies_at_the_sidecars_a_rule_selects() {
    let mut r = base_resources();
    r.push(entry());
    r.push(credential_rule(
        "{mode: SIMPLE, credentialName: api-ca, subjectAltNames: [api.internal]}",
        "  workloadSelector: {matchLabels: {app: web}}\n",
    ));
    let model = model_of(r);
    let mut translator = Translator::new(&model, explicit_options());
    let web = translator.translate(&Proxy::sidecar("shop", "web-1"));
    assert!(web.errors.is_empty(), "{:?}", web.errors);
    let tls = tls_of(&web, "outbound|80||api.example.com").expect("TLS at web");
    assert_eq!(
        trust(&tls).as_deref(),
        Some("sds kubernetes://shop/api-ca-cacert")
    );
    assert!(format!("{tls:?}").contains("api.internal"));
    let common = tls.common_tls_context.as_ref().unwrap();
    assert!(common.tls_certificate_sds_secret_configs.is_empty());
    assert_eq!(credential_refs(&web), [&credential("api-ca-cacert")]);

    let cart = translator.translate(&Proxy::sidecar("shop", "cart-v1"));
    assert!(tls_of(&cart, "outbound|80||api.example.com").is_none());
    assert!(credential_refs(&cart).is_empty());
}

/// `insecureSkipVerify` with a `credentialName`: nothing verifies the server,
/// so no CA is asked for.
#[test]
fn a_credential_name_without_verification_asks_for_no_ca() {
    let mut r = base_resources();
    r.push(entry());
    r.push(credential_rule(
        "{mode: SIMPLE, credentialName: api-ca, insecureSkipVerify: true}",
        "  workloadSelector: {matchLabels: {app: web}}\n",
    ));
    let web = web_sidecar(&model_of(r));
    let tls = tls_of(&web, "outbound|80||api.example.com").expect("TLS at web");
    assert_eq!(trust(&tls), None);
    assert!(credential_refs(&web).is_empty());
}
