//! Whatever the mesh, what the translator produces is configuration Envoy accepts:
//! seeded random meshes (every kind, colliding names, bad values) are translated for
//! a sidecar and a gateway in both listener shapes, and each result must pass
//! `envoy --mode validate`. Bad input becomes errors, never invalid Envoy config.
mod mesh_fixtures;

use std::collections::BTreeSet;

use mesh_fixtures::*;
use serde_json::{Value, json};
use trellis_e2e::mesh::{Identity, test_ca, write_sds_file};
use trellis_e2e::static_bootstrap::{SecretFiles, static_bootstrap};
use trellis_e2e::validate_bootstrap_in;
use trellis_model::{MeshModel, MeshSettings, MtlsMode, OutboundPolicy, Resource, Workload};
use trellis_translate::security::sds::workload_cert_secret;
use trellis_translate::{
    ExplicitPorts, ListenerShape, Proxy, SecretRef, TranslateOptions, Translator,
};

/// xorshift64*: a fixed sequence per seed, so a failure is reproducible by its seed.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    fn pick<'a, T>(&mut self, pool: &'a [T]) -> &'a T {
        &pool[self.below(pool.len())]
    }
    fn chance(&mut self) -> bool {
        self.next() & 1 == 1
    }
}

const NAMESPACES: &[&str] = &["shop", "other", "istio-system"];
const APPS: &[&str] = &["cart", "web", "db"];
const HOSTS: &[&str] = &[
    "cart",
    "web",
    "cart.shop",
    "web.shop.svc.cluster.local",
    "*.example.com",
    "shop.example.com",
    "API.Example.com",
    "*",
    "ghost",
    "localhost",
];
const SERVER_HOSTS: &[&str] = &[
    "*",
    "shop/*.example.com",
    "./shop.example.com",
    "*/api.example.com",
    "other/*",
    "shop.example.com",
    "*.example.com",
];
const GATEWAY_REFS: &[&str] = &["gw", "shop/gw", "other/gw", "mesh", "nope"];
const PORTS: &[u32] = &[80, 443, 8080, 9090, 5432];
const SUBSETS: &[&str] = &["v1", "v2", "nope"];
/// DestinationRule traffic policies, one feature or a mix each.
const TRAFFIC_POLICIES: &[&str] = &[
    r#"{"loadBalancer": {"consistentHash": {"httpCookie": {"name": "s", "path": "/", "ttl": "60s"}, "minimumRingSize": 512}}}"#,
    r#"{"loadBalancer": {"consistentHash": {"useSourceIp": true}}}"#,
    r#"{"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user", "maglev": {"tableSize": 65537}}}}"#,
    r#"{"loadBalancer": {"consistentHash": {"httpHeaderName": "x-user", "ringHash": {"minimumRingSize": 8388608}}}, "outlierDetection": {"consecutiveErrors": 4}}"#,
    r#"{"loadBalancer": {"consistentHash": {"httpQueryParameterName": "u"}}}"#,
    r#"{"outlierDetection": {"consecutive5xxErrors": 0, "consecutiveGatewayErrors": 3, "splitExternalLocalOriginErrors": true, "consecutiveLocalOriginFailures": 2, "minHealthPercent": 30}}"#,
    r#"{"connectionPool": {"tcp": {"tcpKeepalive": {"probes": 2, "time": "10s", "interval": "1s"}, "maxConnectionDuration": "30m", "idleTimeout": "90s"}, "http": {"idleTimeout": "5m", "h2UpgradePolicy": "UPGRADE", "maxConcurrentStreams": 10}}}"#,
    r#"{"connectionPool": {"http": {"useClientProtocol": true}}, "portLevelSettings": [{"port": {"number": 8080}, "outlierDetection": {"consecutive5xxErrors": 2}}]}"#,
    r#"{"tls": {"mode": "ISTIO_MUTUAL", "subjectAltNames": ["spiffe://cluster.local/ns/shop/sa/db"]}}"#,
    r#"{"proxyProtocol": {"version": "V2"}, "tls": {"mode": "ISTIO_MUTUAL"}}"#,
    r#"{"proxyProtocol": {}, "tunnel": {"targetHost": "proxy.example", "targetPort": 3128}}"#,
];

fn random_mesh(seed: u64) -> (MeshSettings, Vec<Resource>) {
    let mut r = Rng(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1);
    let settings = MeshSettings {
        default_mtls: if r.chance() {
            MtlsMode::Strict
        } else {
            MtlsMode::Permissive
        },
        outbound_policy: if r.chance() {
            OutboundPolicy::RegistryOnly
        } else {
            OutboundPolicy::AllowAny
        },
        ..Default::default()
    };
    let mut out = Vec::new();
    for (i, app) in APPS.iter().enumerate() {
        let ns = *r.pick(NAMESPACES);
        let proto = *r.pick(&["http", "tcp", "grpc", "https"]);
        let ports = [
            json!({"name": format!("{proto}-a"), "port": r.pick(PORTS), "targetPort": 8000 + i}),
            json!({"name": "http-b", "port": r.pick(PORTS), "targetPort": 9000 + i}),
        ];
        out.push(object(
            &json!({
                "apiVersion": "v1", "kind": "Service",
                "metadata": {"name": app, "namespace": ns},
                "spec": {"clusterIP": format!("10.96.0.{i}"), "selector": {"app": app}, "ports": ports}
            })
            .to_string(),
        ));
        for v in 0..2 {
            let mut w = Workload::new(ns, format!("{app}-{v}"), format!("10.244.{i}.{v}"));
            w.labels.insert("app".into(), app.to_string());
            w.labels.insert("version".into(), format!("v{v}"));
            w.service_account = app.to_string();
            w.has_sidecar = r.chance();
            out.push(Resource::Workload(Box::new(w)));
        }
    }
    let mut gw = Workload::new("shop", "ingress-1", "10.244.9.9");
    gw.labels.insert("istio".into(), "ingressgateway".into());
    out.push(Resource::Workload(Box::new(gw)));
    let mut objects: Vec<Value> = Vec::new();
    for i in 0..r.below(4) {
        let hosts: Vec<&str> = (0..1 + r.below(2)).map(|_| *r.pick(HOSTS)).collect();
        let gateways: Vec<&str> = (0..r.below(3)).map(|_| *r.pick(GATEWAY_REFS)).collect();
        let mut http = Vec::new();
        for _ in 0..1 + r.below(2) {
            let mut dest = json!({"host": r.pick(HOSTS)});
            if r.chance() {
                dest["subset"] = json!(r.pick(SUBSETS));
            }
            if r.chance() {
                dest["port"] = json!({"number": r.pick(PORTS)});
            }
            let mut rule = json!({"route": [{"destination": dest, "weight": r.below(120)}]});
            if r.chance() {
                rule["match"] = json!([{"uri": {"prefix": "/p"}, "scheme": {"exact": "http"}},
                    {"headers": {"x": {"exact": "1"}}, "sourceLabels": {"version": "v1"}},
                    {"gateways": [r.pick(GATEWAY_REFS)], "sourceNamespace": r.pick(NAMESPACES)}]);
            }
            http.push(rule);
        }
        let mut tcp = Vec::new();
        if r.chance() {
            let (a, b) = (
                json!({"host": r.pick(HOSTS)}),
                json!({"host": r.pick(HOSTS), "subset": r.pick(SUBSETS)}),
            );
            tcp.push(
                json!({"match": [{"port": r.pick(PORTS), "sourceLabels": {"version": "v0"}},
                {"destinationSubnets": ["10.96.0.0/16"]}],
                "route": [{"destination": a, "weight": 70}, {"destination": b, "weight": 30}]}),
            );
        }
        let mut tls = Vec::new();
        if r.chance() {
            const SNI: &[&str] = &["shop.example.com", "api.example.com", "*.example.com", "*"];
            let (a, b) = (
                json!({"host": r.pick(HOSTS)}),
                json!({"host": r.pick(HOSTS)}),
            );
            tls.push(json!({"match": [{"sniHosts": [r.pick(SNI), r.pick(SNI)]},
                {"sniHosts": [r.pick(SNI)], "port": r.pick(&[443u32, 8443])}],
                "route": [{"destination": a, "weight": 60}, {"destination": b, "weight": 40}]}));
        }
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": format!("vs{i}"), "namespace": r.pick(NAMESPACES)},
            "spec": {"hosts": hosts, "gateways": gateways, "http": http, "tcp": tcp, "tls": tls}
        }));
    }
    for i in 0..r.below(3) {
        let subsets: Vec<Value> = SUBSETS[..r.below(3)]
            .iter()
            .map(|s| json!({"name": s, "labels": {"version": s}}))
            .collect();
        let mut spec = json!({"host": r.pick(HOSTS), "subsets": subsets});
        if r.chance() {
            let policy: &&str = r.pick(TRAFFIC_POLICIES);
            spec["trafficPolicy"] = serde_json::from_str(policy).unwrap();
        }
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "DestinationRule",
            "metadata": {"name": format!("dr{i}"), "namespace": r.pick(NAMESPACES)},
            "spec": spec
        }));
    }
    for i in 0..r.below(3) {
        let servers: Vec<Value> = (0..1 + r.below(3))
            .map(|_| {
                let https = r.chance();
                let passthrough = https && r.chance();
                let hosts: Vec<&str> = (0..1 + r.below(2)).map(|_| *r.pick(SERVER_HOSTS)).collect();
                let protocol = match (https, passthrough) {
                    (true, true) => *r.pick(&["TLS", "HTTPS"]),
                    (true, false) => "HTTPS",
                    _ => *r.pick(&["HTTP", "HTTP", "TCP"]),
                };
                let mut s = json!({
                    "port": {"number": r.pick(&[80u32, 443, 8443]), "name": format!("p{}", r.below(3)),
                             "protocol": protocol},
                    "hosts": hosts
                });
                if passthrough {
                    s["tls"] = json!({"mode": "PASSTHROUGH"});
                } else if https {
                    let mode = *r.pick(&["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"]);
                    s["tls"] = json!({"mode": mode});
                    if mode != "ISTIO_MUTUAL" {
                        s["tls"]["credentialName"] = json!(r.pick(&["a-cert", "b-cert"]));
                    }
                    if r.chance() {
                        s["tls"]["subjectAltNames"] = json!(["spiffe://cluster.local/ns/shop/sa/client"]);
                        s["tls"]["minProtocolVersion"] = json!("TLSV1_2");
                        s["tls"]["cipherSuites"] = json!(["ECDHE-RSA-AES128-GCM-SHA256", "[AES128-SHA|AES256-SHA]"]);
                    }
                } else if r.chance() {
                    s["tls"] = json!({"httpsRedirect": true});
                }
                s
            })
            .collect();
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": if i == 0 { "gw".to_string() } else { format!("gw{i}") }, "namespace": r.pick(NAMESPACES)},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}
        }));
    }
    for i in 0..r.below(3) {
        let resolution = *r.pick(&["DNS", "DNS_ROUND_ROBIN", "STATIC", "NONE"]);
        let host = *r.pick(&["localhost", "api.example.com", "*.example.com", "cart"]);
        let mut spec = json!({
            "hosts": [host], "resolution": resolution,
            "ports": [{"number": r.pick(PORTS), "name": "http", "protocol": r.pick(&["HTTP", "TCP", "TLS"])}]
        });
        if resolution == "STATIC" || host.starts_with('*') {
            let address = if resolution == "STATIC" && r.chance() {
                "unix:///tmp/trellis-random.sock"
            } else {
                "127.0.3.1"
            };
            spec["endpoints"] = json!([{"address": address}]);
        }
        if r.chance() {
            spec["addresses"] = json!([r.pick(&["240.240.0.1", "10.50.0.0/16"]), "240.240.0.9"]);
        }
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "ServiceEntry",
            "metadata": {"name": format!("se{i}"), "namespace": r.pick(NAMESPACES)}, "spec": spec
        }));
    }
    // In half the meshes, a PASSTHROUGH server, a TCP server and a TLS server
    // that terminates TLS, with `tls` and `tcp` routes bound to them: drawn
    // apart, as the draws above seldom line up all of them.
    if r.chance() {
        const SNI: &[&str] = &["shop.example.com", "api.example.com", "*.example.com", "*"];
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Gateway",
            "metadata": {"name": "tls-gw", "namespace": "shop"},
            "spec": {"selector": {"istio": "ingressgateway"}, "servers": [{
                "port": {"number": r.pick(&[443u32, 8443]), "name": "tls", "protocol": "TLS"},
                "hosts": [r.pick(SERVER_HOSTS)], "tls": {"mode": "PASSTHROUGH"}},
                {"port": {"number": 9000, "name": "tcp", "protocol": "TCP"}, "hosts": ["*"]}]}
        }));
        let mode = *r.pick(&["SIMPLE", "MUTUAL", "OPTIONAL_MUTUAL", "ISTIO_MUTUAL"]);
        let mut tls = json!({"mode": mode});
        if mode != "ISTIO_MUTUAL" {
            tls["credentialName"] = json!(r.pick(&["a-cert", "b-cert"]));
        }
        objects.last_mut().expect("tls-gw")["spec"]["servers"]
            .as_array_mut()
            .expect("servers")
            .push(json!({
                "port": {"number": r.pick(&[443u32, 9443]), "name": "tls-term", "protocol": "TLS"},
                "hosts": [r.pick(&["shop.example.com", "*.example.com", "*"])], "tls": tls
            }));
        let destination = |r: &mut Rng| {
            let mut d = json!({"host": r.pick(&["cart", "web", "web.shop.svc.cluster.local"])});
            if r.chance() {
                d["port"] = json!({"number": r.pick(PORTS)});
            }
            d
        };
        let (a, b, c, d) = (
            destination(&mut r),
            destination(&mut r),
            destination(&mut r),
            destination(&mut r),
        );
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": "tls-vs", "namespace": "shop"},
            "spec": {"hosts": ["*.example.com", "shop.example.com"], "gateways": ["tls-gw"], "tls": [
                {"match": [{"sniHosts": [r.pick(SNI)]}], "route": [{"destination": a}]},
                {"match": [{"sniHosts": [r.pick(SNI), r.pick(SNI)]}],
                 "route": [{"destination": b, "weight": 50}, {"destination": c, "weight": 50}]}],
                "tcp": [{"route": [{"destination": d}]}]}
        }));
    }
    if r.chance() {
        let mut egress =
            vec![json!({"hosts": [r.pick(&["./*", "*/*", "shop/*", "*/*.example.com"])]})];
        if r.chance() {
            egress.push(
                json!({"port": {"number": r.pick(PORTS), "protocol": "HTTP", "name": "p"},
                "hosts": [r.pick(&["*/*", "shop/*"])]}),
            );
        }
        let mut spec = json!({"egress": egress});
        if r.chance() {
            // hosts outside the registry through an egress proxy, which may be
            // out of reach (then refused)
            spec["outboundTrafficPolicy"] = json!({"mode": "ALLOW_ANY",
                "egressProxy": {"host": r.pick(&["web", "db.shop.svc.cluster.local", "nope.example.com"]),
                    "port": {"number": r.pick(PORTS)}}});
        }
        if r.chance() {
            spec["inboundConnectionPool"] = json!({"tcp": {"maxConnections": 5, "idleTimeout": "1m"}, "http": {"http1MaxPendingRequests": 3}});
        }
        objects.push(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "Sidecar",
            "metadata": {"name": "default", "namespace": r.pick(NAMESPACES)},
            "spec": spec
        }));
    }
    out.extend(objects.iter().map(|o| object(&o.to_string())));
    (settings, out)
}

fn model(settings: MeshSettings, resources: Vec<Resource>) -> MeshModel {
    let mut m = MeshModel::new(settings);
    for r in resources {
        // objects the model refuses are the model's business; translation must cope with the rest
        let _ = m.apply(r);
    }
    m
}

#[test]
fn random_meshes_give_configuration_envoy_accepts() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let ca = test_ca();
    let identity = Identity::issue(&ca, &d.join("id"), "shop", "proxy");
    // any gateway credential the translator asks for, as a file-SDS secret
    let mut files = SecretFiles::new();
    for ns in NAMESPACES {
        for cred in ["a-cert", "a-cert-cacert", "b-cert", "b-cert-cacert"] {
            let name = SecretRef::Credential {
                namespace: ns.to_string(),
                name: cred.to_string(),
            }
            .sds_name();
            let path = d.join(format!("{ns}-{cred}.yaml"));
            let mut secret = if cred.ends_with("cacert") {
                trellis_translate::security::sds::trust_bundle_secret(
                    &d.join("id/root-cert.pem").to_string_lossy(),
                    None,
                )
            } else {
                workload_cert_secret(
                    &d.join("id/cert-chain.pem").to_string_lossy(),
                    &d.join("id/key.pem").to_string_lossy(),
                    None,
                )
            };
            secret.name = name.clone();
            write_sds_file(&path.to_string_lossy(), &secret);
            files.insert(name, path);
        }
    }
    let mut seen = BTreeSet::new();
    // Filter chains of TLS servers that terminate TLS, over all seeds.
    let mut terminated_tls = 0;
    for seed in 0..24u64 {
        let (settings, resources) = random_mesh(seed);
        let m = model(settings, resources);
        let shapes = [
            ListenerShape::Interception,
            ListenerShape::Explicit(ExplicitPorts {
                outbound_http_port: 15001,
                privileged_port_offset: 10000,
                ..Default::default()
            }),
        ];
        for shape in shapes {
            let options = TranslateOptions {
                shape,
                sds: identity.sds(),
            };
            let mut t = Translator::new(&m, options);
            let sidecar_ns = m
                .workload("shop", "cart-0")
                .or_else(|| m.workloads().find(|w| w.name == "cart-0"))
                .map(|w| w.namespace.clone())
                .expect("cart-0 exists");
            for proxy in [
                Proxy::sidecar(sidecar_ns.clone(), "cart-0"),
                Proxy::gateway("shop", "ingress-1"),
            ] {
                let out = t.translate(&proxy);
                terminated_tls += (out.listeners.iter())
                    .flat_map(|l| &l.filter_chains)
                    .filter(|c| c.name.starts_with("tls.") && c.transport_socket.is_some())
                    .count();
                let yaml = static_bootstrap("random", &out, &files);
                if !seen.insert(yaml.clone()) {
                    continue;
                }
                validate_bootstrap_in(d, &yaml).unwrap_or_else(|e| {
                    std::fs::write(d.join("failed.yaml"), &yaml).ok();
                    panic!(
                        "seed {seed} {proxy:?}: translator output rejected by Envoy: {e}\nerrors: {:?}",
                        out.errors
                    )
                });
            }
        }
    }
    assert!(seen.len() > 16, "the seeds produced varied configurations");
    assert!(
        terminated_tls > 0,
        "the seeds drew TLS servers that terminate TLS"
    );
}
