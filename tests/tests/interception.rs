//! The Kubernetes interception shape (outbound 15001 with original destination,
//! inbound 15006, health 15021, stats 15090) as produced by the translator: golden
//! bootstraps that real Envoy accepts with `--mode validate`. Real traffic through
//! it needs iptables and comes with the webhooks issue.
mod mesh_fixtures;

use mesh_fixtures::*;
use trellis_e2e::golden::check_golden;
use trellis_e2e::mesh::{Identity, relative_file_sds, test_ca};
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::validate_bootstrap_in;
use trellis_model::{MeshSettings, MtlsMode, OutboundPolicy, Resource};
use trellis_translate::{ListenerShape, Proxy, TranslateOptions, Translator};

fn service_with_ip(ns: &str, name: &str, ip: &str, ports: &str) -> Resource {
    object(&format!(
        r#"
apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  clusterIP: {ip}
  selector: {{app: {name}}}
  ports: {ports}
"#
    ))
}

fn resources() -> Vec<Resource> {
    vec![
        service_with_ip(
            "shop",
            "web",
            "10.96.0.10",
            "[{name: http, port: 80, targetPort: 8000}]",
        ),
        service_with_ip(
            "shop",
            "cart",
            "10.96.0.11",
            "[{name: http, port: 8080, targetPort: 8080}, {name: grpc-admin, port: 9090, targetPort: 9090}]",
        ),
        service_with_ip(
            "shop",
            "db",
            "10.96.0.12",
            "[{name: tcp-pg, port: 5432, targetPort: 5432}]",
        ),
        workload("shop", "web-1", "10.244.0.10", &[("app", "web")], true),
        workload(
            "shop",
            "cart-1",
            "10.244.0.11",
            &[("app", "cart"), ("version", "v1")],
            true,
        ),
        workload("shop", "db-1", "10.244.0.12", &[("app", "db")], false),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {name: cart, namespace: shop}
spec:
  hosts: [cart]
  http:
  - match: [{uri: {prefix: /v1}}]
    route: [{destination: {host: cart, subset: v1}}]
  - route: [{destination: {host: cart}}]
"#,
        ),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {name: cart, namespace: shop}
spec:
  host: cart
  subsets: [{name: v1, labels: {version: v1}}]
"#,
        ),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: payments, namespace: shop}
spec:
  hosts: [pay.example.com]
  addresses: [240.240.0.1]
  resolution: DNS
  ports: [{number: 443, name: tls, protocol: TLS}]
"#,
        ),
        // no address: TLS told apart by SNI on 0.0.0.0_8443, a lone TCP port on 0.0.0.0_3306
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: apis, namespace: shop}
spec:
  hosts: [api.example.com, "*.cdn.example.com"]
  resolution: STATIC
  endpoints: [{address: 127.0.0.99}]
  ports: [{number: 8443, name: tls, protocol: TLS}]
"#,
        ),
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: stores, namespace: shop}
spec:
  hosts: [store.example.com]
  resolution: DNS
  ports: [{number: 8443, name: https, protocol: HTTPS}, {number: 3306, name: tcp-mysql, protocol: TCP}]
"#,
        ),
        // every address: an IP listener each, and a chain matched by destination
        // IP for each range (on 0.0.0.0_8443 next to the SNI chains)
        object(
            r#"
apiVersion: networking.istio.io/v1
kind: ServiceEntry
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [ledger.internal]
  addresses: [10.20.0.0/16, 240.240.0.2, 240.240.0.3]
  resolution: STATIC
  endpoints: [{address: 127.0.0.98}]
  ports: [{number: 7000, name: tcp, protocol: TCP}, {number: 8443, name: tls, protocol: TLS}]
"#,
        ),
    ]
}

#[test]
fn golden_interception_bootstraps_validate() {
    let dir = tempfile::tempdir().unwrap();
    Identity::issue_with_relative_sds(&test_ca(), dir.path(), "etc/certs", "shop", "web");
    let sds = relative_file_sds("etc/certs");
    let cases = [
        ("interception-web-sidecar", MeshSettings::default()),
        (
            "interception-web-sidecar-strict-registry-only",
            MeshSettings {
                default_mtls: MtlsMode::Strict,
                outbound_policy: OutboundPolicy::RegistryOnly,
                ..Default::default()
            },
        ),
    ];
    for (name, settings) in cases {
        let model = model_of(settings, resources());
        let options = TranslateOptions {
            shape: ListenerShape::Interception,
            sds: sds.clone(),
        };
        let out = Translator::new(&model, options).translate(&Proxy::sidecar("shop", "web-1"));
        assert!(out.errors.is_empty(), "{name}: {:?}", out.errors);
        let listeners: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
        assert_eq!(
            listeners,
            [
                "0.0.0.0_15021",
                "0.0.0.0_15090",
                "0.0.0.0_3306",
                "0.0.0.0_7000",
                "0.0.0.0_80",
                "0.0.0.0_8080",
                "0.0.0.0_8443",
                "0.0.0.0_9090",
                "10.96.0.12_5432",
                "240.240.0.1_443",
                "240.240.0.2_7000",
                "240.240.0.2_8443",
                "240.240.0.3_7000",
                "240.240.0.3_8443",
                "virtualInbound",
                "virtualOutbound"
            ],
            "{name}"
        );
        // TLS services without an address share 8443, chosen by SNI; ledger's
        // range is chosen by destination IP first
        let tls = out
            .listeners
            .iter()
            .find(|l| l.name == "0.0.0.0_8443")
            .unwrap();
        let matches: Vec<(Vec<String>, Vec<String>)> = tls
            .filter_chains
            .iter()
            .map(|c| {
                let m = c.filter_chain_match.clone().unwrap_or_default();
                let ranges = (m.prefix_ranges.iter())
                    .map(|r| format!("{}/{}", r.address_prefix, r.prefix_len.unwrap().value))
                    .collect();
                (ranges, m.server_names)
            })
            .collect();
        let sni = |n: &str| (vec![], vec![n.to_string()]);
        assert_eq!(
            matches,
            [
                (vec!["10.20.0.0/16".to_string()], vec![]),
                sni("*.cdn.example.com"),
                sni("api.example.com"),
                sni("store.example.com")
            ],
            "{name}"
        );
        assert!(tls.default_filter_chain.is_some(), "{name}");
        let yaml = static_bootstrap("web-1", &out, &SecretFiles::new());
        check_golden(name, &yaml);
        validate_bootstrap_in(dir.path(), &yaml).unwrap_or_else(|e| panic!("{name}: {e}"));
    }
}
