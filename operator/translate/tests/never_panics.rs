//! Property: random meshes (services, workloads, VirtualServices, DestinationRules,
//! Gateways, ServiceEntries, Sidecars, CUSTOM AuthorizationPolicies and their
//! extension providers, settings) never make translation panic, the
//! output is deterministic, and every error names its object.
use proptest::prelude::*;
use serde_json::{Value, json};
use trellis_model::{MeshModel, MeshSettings, MtlsMode, OutboundPolicy, Resource, Workload};
use trellis_translate::{
    ExplicitPorts, ListenerShape, Proxy, SdsSource, SecretRef, TranslateOptions, Translator,
};

const NAMESPACES: &[&str] = &["shop", "other", "istio-system"];
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
    "",
];
const SERVER_HOSTS: &[&str] = &[
    "*",
    "shop/*.example.com",
    "./shop.example.com",
    "*/api.example.com",
    "other/*",
    "/",
    "shop.example.com",
];
const GATEWAY_REFS: &[&str] = &["gw", "shop/gw", "other/gw", "mesh", "nope", "", "a/b/c"];
const PORTS: &[i64] = &[0, 1, 80, 443, 8080, 9090, 65535, 70000];
const LABELS: &[&str] = &["cart", "web", "gw"];
const SUBSETS: &[&str] = &["v1", "v2", "nope"];

fn pick<T: Clone + std::fmt::Debug + 'static>(pool: &'static [T]) -> impl Strategy<Value = T> {
    prop::sample::select(pool)
}

fn port() -> impl Strategy<Value = i64> {
    pick(PORTS)
}

fn destination() -> impl Strategy<Value = Value> {
    (
        pick(HOSTS),
        prop::option::of(pick(SUBSETS)),
        prop::option::of(port()),
    )
        .prop_map(|(host, subset, port)| {
            let mut d = json!({ "host": host });
            if let Some(s) = subset {
                d["subset"] = json!(s);
            }
            if let Some(p) = port {
                d["port"] = json!({ "number": p });
            }
            d
        })
}

fn http_route() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((destination(), prop::option::of(-5i64..150)), 0..3),
        prop::option::of(prop::sample::select(vec!["/a", "^(", "[a-z]+"])),
        any::<bool>(),
        prop::option::of(pick(&["1s", "0s", "250ms"])),
        prop::option::of(prop::sample::select(vec![
            json!({"sourceLabels": {"version": "v1"}}),
            json!({"sourceLabels": {"app": "nobody"}}),
            json!({"sourceNamespace": "b"}),
            json!({"gateways": ["mesh"]}),
            json!({"gateways": ["gw", "a/gw"]}),
        ])),
        prop::option::of(prop::sample::select(vec![
            json!({"directResponse": {"status": 503, "body": {"string": "down"}}}),
            json!({"directResponse": {"status": 200, "body": {"bytes": "not base64"}}}),
            json!({"mirrors": [{"destination": {"host": "a"}}, {"destination": {"host": "nope"}, "percentage": {"value": 5}}]}),
            json!({"rewrite": {"uriRegexRewrite": {"match": "^/(.*)", "rewrite": "/x/\\1"}}}),
            json!({"rewrite": {"uriRegexRewrite": {"match": "^(", "rewrite": ""}}}),
            json!({"mirror": {"host": "a"}, "mirrorPercent": 250, "corsPolicy": {"allowOrigin": ["https://x"]}}),
            json!({"mirror": {"host": "a"}, "mirror_percent": 30, "mirrorPercent": 5}),
            json!({"mirror_percent": 500}),
            json!({"redirect": {"authority": "x", "derivePort": "FROM_REQUEST_PORT"}}),
            json!({"redirect": {"scheme": "https", "derivePort": "FROM_PROTOCOL_DEFAULT"}}),
            json!({"redirect": {"port": 8080, "derivePort": "FROM_REQUEST_PORT"}}),
            json!({"fault": {"delay": {"fixedDelay": "1s", "percent": -3}}}),
            json!({"fault": {"abort": {"grpcStatus": "UNAVAILABLE", "percentage": {"value": 50}}}}),
            json!({"fault": {"abort": {"grpcStatus": "not-a-status"}}}),
            json!({"fault": {"abort": {"grpcStatus": "INTERNAL", "httpStatus": 503}}}),
            json!({"corsPolicy": {"allowOrigins": [{"exact": "https://a"}], "unmatchedPreflights": "IGNORE"}}),
            json!({"corsPolicy": {"unmatchedPreflights": "UNSPECIFIED"}}),
            // Delegation, to VirtualServices that may have hosts, be missing,
            // delegate again, or have matches outside this one.
            json!({"delegate": {"name": "vs1"}}),
            json!({"delegate": {"name": "vs2", "namespace": "other"}}),
            json!({"match": [{"uri": {"prefix": "/a"}, "headers": {"x": {}}}], "delegate": {"name": "vs0"}}),
            json!({"match": [{"uri": {"exact": "/a/b"}, "port": 80}], "delegate": {"name": "vs0", "namespace": "shop"}}),
        ])),
        prop::option::of(pick(&["", "cart_stats", "a.b.c"])),
    )
        .prop_map(|(dests, uri, redirect, timeout, client, extra, stat_prefix)| {
            let route: Vec<Value> = dests
                .into_iter()
                .map(|(d, w)| {
                    let mut r = json!({ "destination": d });
                    if let Some(w) = w {
                        r["weight"] = json!(w);
                    }
                    r
                })
                .collect();
            let mut h = json!({ "route": route });
            if let Some(u) = uri {
                h["match"] = json!([{ "uri": { "regex": u } }]);
            }
            // A match naming its clients, alone or next to the uri match.
            if let Some(client) = client {
                let matches = h["match"].as_array().cloned().unwrap_or_default();
                h["match"] = Value::Array(matches.into_iter().chain([client]).collect());
            }
            if let Some(prefix) = stat_prefix {
                let mut matches = h["match"].as_array().cloned().unwrap_or_default();
                if let Some(Value::Object(first)) = matches.first_mut() {
                    first.insert("statPrefix".into(), json!(prefix));
                } else {
                    matches.push(json!({ "statPrefix": prefix }));
                }
                h["match"] = Value::Array(matches);
            }
            if redirect {
                h = json!({ "redirect": { "uri": "/moved", "redirectCode": 308 } });
            }
            if let Some(t) = timeout {
                h["timeout"] = json!(t);
            }
            // Added without validation: the translator must cope with any mix.
            if let Some(Value::Object(extra)) = extra {
                for (k, v) in extra {
                    h[k] = v;
                }
            }
            h
        })
}

/// Route destinations, each with its weight when it has one.
fn weighted(destinations: Vec<(Value, Option<i64>)>) -> Vec<Value> {
    destinations
        .into_iter()
        .map(|(d, w)| match w {
            Some(w) => json!({ "destination": d, "weight": w }),
            None => json!({ "destination": d }),
        })
        .collect()
}

fn tls_route() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((destination(), prop::option::of(-5i64..150)), 0..3),
        prop::collection::vec(
            pick(&["shop.example.com", "*.example.com", "*", "a.example.com"]),
            0..3,
        ),
        prop::option::of(prop::sample::select(vec![
            json!({"port": 443}),
            json!({"sourceLabels": {"version": "v1"}}),
            json!({"gateways": ["gw"]}),
        ])),
    )
        .prop_map(|(dests, sni, extra)| {
            let route = weighted(dests);
            let mut m = extra.unwrap_or_else(|| json!({}));
            m["sniHosts"] = json!(sni);
            json!({ "match": [m], "route": route })
        })
}

fn tcp_route() -> impl Strategy<Value = Value> {
    (
        prop::collection::vec((destination(), prop::option::of(-5i64..150)), 0..3),
        prop::option::of(prop::sample::select(vec![
            json!({"port": 80}),
            json!({"sourceLabels": {"version": "v1"}}),
            json!({"destinationSubnets": ["10.0.0.0/8", "::/0"]}),
            json!({"destinationSubnets": ["not a subnet"]}),
            json!({"gateways": ["mesh"], "sourceNamespace": "b"}),
        ])),
    )
        .prop_map(|(dests, matched)| {
            let route = weighted(dests);
            match matched {
                Some(m) => json!({ "match": [m], "route": route }),
                None => json!({ "route": route }),
            }
        })
}

fn meta(ns: &str, name: String) -> Value {
    json!({ "name": name, "namespace": ns })
}

fn resource() -> impl Strategy<Value = Option<Resource>> {
    let service = (
        pick(NAMESPACES),
        pick(LABELS),
        prop::collection::vec((port(), port()), 0..3),
    )
        .prop_map(|(ns, app, ports)| {
            let ports: Vec<Value> = ports
                .iter()
                .enumerate()
                // Odd ports are TCP, so `tcp` routes have ports to apply to.
                .map(|(i, (p, t))| {
                    let protocol = if i % 2 == 0 { "http" } else { "tcp" };
                    json!({"name": format!("{protocol}-{i}"), "port": p, "targetPort": t})
                })
                .collect();
            serde_json::from_value(json!({
                "metadata": meta(ns, app.to_string()),
                "spec": {"selector": {"app": app}, "ports": ports}
            }))
            .ok()
            .map(|s| Resource::Service(Box::new(s)))
        });
    let workload = (
        pick(NAMESPACES),
        pick(LABELS),
        0u8..4,
        pick(SUBSETS),
        any::<bool>(),
        // Localities, some partial or odd (the model takes any string).
        prop::option::of(pick(&[
            "us-east/a/1",
            "us-east/a",
            "us-east/b",
            "eu",
            "",
            "//",
            "a/b/c/d",
        ])),
    )
        .prop_map(|(ns, app, i, version, sidecar, locality)| {
            let mut w = Workload::new(ns, format!("{app}-{i}"), format!("127.0.1.{i}"));
            w.labels.insert("app".into(), app.into());
            w.labels.insert("version".into(), version.into());
            w.labels.insert("istio".into(), "ingressgateway".into());
            w.has_sidecar = sidecar;
            w.locality = locality.map(str::to_string);
            Some(Resource::Workload(Box::new(w)))
        });
    let vs = (
        pick(NAMESPACES),
        0u8..3,
        prop::collection::vec(pick(HOSTS), 0..3),
        prop::collection::vec(pick(GATEWAY_REFS), 0..3),
        prop::collection::vec(http_route(), 0..3),
        prop::collection::vec(tcp_route(), 0..3),
        prop::collection::vec(tls_route(), 0..3),
    )
        .prop_map(|(ns, i, hosts, gateways, http, tcp, tls)| {
            serde_json::from_value(json!({
                "metadata": meta(ns, format!("vs{i}")),
                "spec": {"hosts": hosts, "gateways": gateways, "http": http, "tcp": tcp, "tls": tls}
            }))
            .ok()
            .map(|v| Resource::VirtualService(Box::new(v)))
        });
    let dr = (
        pick(NAMESPACES),
        0u8..3,
        pick(HOSTS),
        prop::collection::vec(pick(SUBSETS), 0..3),
        prop::option::of(pick(&[
            r#"{"mode": "SIMPLE"}"#,
            r#"{"mode": "SIMPLE", "credentialName": "api-ca"}"#,
            r#"{"mode": "SIMPLE", "credentialName": "api-ca", "insecureSkipVerify": true}"#,
            r#"{"mode": "MUTUAL", "credentialName": "api-client"}"#,
            r#"{"mode": "MUTUAL", "clientCertificate": "/c.pem", "privateKey": "/k.pem"}"#,
            r#"{"mode": "SIMPLE", "caCertificates": "/ca.pem", "caCrl": "/ca.crl"}"#,
            r#"{"mode": "MUTUAL", "credentialName": "api-client", "caCrl": "/ca.crl"}"#,
        ])),
        prop::option::of(pick(LABELS)),
        // Hash algorithms and the deprecated outlier field, some out of range.
        prop::option::of(pick(&[
            r#"{"loadBalancer": {"consistentHash": {"httpHeaderName": "x", "maglev": {"tableSize": 65537}}}}"#,
            r#"{"loadBalancer": {"consistentHash": {"useSourceIp": true, "maglev": {"tableSize": 0}, "ringHash": {}}}}"#,
            r#"{"loadBalancer": {"consistentHash": {"httpQueryParameterName": "q", "ringHash": {"minimumRingSize": 18446744073709551615}, "minimumRingSize": 3}}}"#,
            r#"{"outlierDetection": {"consecutiveErrors": -4}}"#,
            r#"{"outlierDetection": {"consecutiveErrors": 2, "consecutive5xxErrors": 0}}"#,
            r#"{"loadBalancer": {"warmupDurationSecs": "45s"}}"#,
            r#"{"loadBalancer": {"simple": "ROUND_ROBIN", "warmupDurationSecs": "1h"}}"#,
            r#"{"loadBalancer": {"simple": "RANDOM", "warmupDurationSecs": "never"}}"#,
            r#"{"proxyProtocol": {}}"#,
            r#"{"tunnel": {"targetHost": "proxy.example", "targetPort": 3128}}"#,
            r#"{"tunnel": {"protocol": "POST", "targetHost": "::1", "targetPort": 70000}}"#,
            r#"{"proxyProtocol": {"version": "V2"}, "tls": {"mode": "ISTIO_MUTUAL"}}"#,
            // Locality load balancing, some of it invalid (weights off, both kinds).
            r#"{"outlierDetection": {"consecutive5xxErrors": 1}, "loadBalancer": {"localityLbSetting": {}}}"#,
            r#"{"outlierDetection": {"consecutive5xxErrors": 1}, "loadBalancer": {"localityLbSetting": {"failover": [{"from": "us-east", "to": "eu"}], "failoverPriority": ["version", "app=web", "topology.kubernetes.io/zone"]}}}"#,
            r#"{"loadBalancer": {"simple": "ROUND_ROBIN", "localityLbSetting": {"distribute": [{"from": "us-east/*", "to": {"us-east/a/*": 70, "eu": 30}}, {"from": "*", "to": {"*": 0, "x": 4294967295}}]}}}"#,
            r#"{"outlierDetection": {}, "loadBalancer": {"localityLbSetting": {"enabled": false, "distribute": [{"from": "", "to": {}}], "failover": [{"from": "", "to": ""}]}}}"#,
            r#"{"outlierDetection": {"consecutive5xxErrors": 1}, "loadBalancer": {"localityLbSetting": {"failoverPriority": ["=", "version="]}}}"#,
        ])),
    )
        .prop_map(|(ns, i, host, subsets, tls, selected_app, policy)| {
            let subsets: Vec<Value> = subsets
                .iter()
                .map(|s| json!({"name": s, "labels": {"version": s}}))
                .collect();
            let mut spec = json!({"host": host, "subsets": subsets});
            if let Some(tls) = tls {
                let tls: Value = serde_json::from_str(tls).unwrap();
                spec["trafficPolicy"] = json!({"tls": tls});
            }
            if let Some(policy) = policy {
                let policy: Value = serde_json::from_str(policy).unwrap();
                for (k, v) in policy.as_object().unwrap() {
                    spec["trafficPolicy"][k] = v.clone();
                }
            }
            if let Some(app) = selected_app {
                spec["workloadSelector"] = json!({"matchLabels": {"app": app}});
            }
            serde_json::from_value(json!({"metadata": meta(ns, format!("dr{i}")), "spec": spec}))
                .ok()
                .map(|d| Resource::DestinationRule(Box::new(d)))
        });
    let gateway = (
        pick(NAMESPACES),
        prop::collection::vec(
            (
                port(),
                pick(&["HTTP", "HTTPS", "TLS", "TCP", "GRPC", "weird"]),
                prop::collection::vec(pick(SERVER_HOSTS), 0..3),
                prop::option::of(pick(&[
                    "SIMPLE",
                    "MUTUAL",
                    "PASSTHROUGH",
                    "ISTIO_MUTUAL",
                    "OPTIONAL_MUTUAL",
                    "AUTO_PASSTHROUGH",
                ])),
                any::<bool>(),
                any::<bool>(),
                // Client pins and a CRL, some of them malformed.
                prop::option::of(pick(&[
                    r#"{"verifyCertificateHash": ["df6ff72fe9116521268f6590dd4ab9755e1dbb2c9c3f2bd5fa9ca2f8a82bcccb"]}"#,
                    r#"{"verifyCertificateHash": ["zz:zz"], "verifyCertificateSpki": ["AAAA"]}"#,
                    r#"{"verifyCertificateSpki": ["2Xy+aHR1gD0mRUmcvQbbvcUx0XUcsjsV6kLPK5I4Ogo="]}"#,
                    r#"{"caCrl": "/ca.crl", "caCertificates": "/ca.pem"}"#,
                    r#"{"caCrl": "", "serverCertificate": "/s.pem", "privateKey": "/k.pem"}"#,
                ])),
            ),
            0..4,
        ),
    )
        .prop_map(|(ns, servers)| {
            let servers: Vec<Value> = servers
                .into_iter()
                .map(|(p, proto, hosts, mode, cred, redirect, extra)| {
                    let mut tls = json!({});
                    if let Some(m) = mode {
                        tls["mode"] = json!(m);
                    }
                    if cred {
                        tls["credentialName"] = json!("cert");
                    }
                    if redirect {
                        tls["httpsRedirect"] = json!(true);
                    }
                    if let Some(extra) = extra {
                        let extra: Value = serde_json::from_str(extra).unwrap();
                        for (k, v) in extra.as_object().unwrap() {
                            tls[k] = v.clone();
                        }
                    }
                    json!({"port": {"number": p, "protocol": proto, "name": "p"}, "hosts": hosts, "tls": tls})
                })
                .collect();
            serde_json::from_value(json!({
                "metadata": meta(ns, "gw".into()),
                "spec": {"selector": {"istio": "ingressgateway"}, "servers": servers}
            }))
            .ok()
            .map(|g| Resource::Gateway(Box::new(g)))
        });
    let se = (
        pick(NAMESPACES),
        prop::collection::vec(pick(HOSTS), 0..3),
        pick(&["DNS", "DNS_ROUND_ROBIN", "STATIC", "NONE"]),
        prop::collection::vec(port(), 0..2),
        any::<bool>(),
        prop::collection::vec(
            pick(&["10.1.0.0/16", "240.0.0.1", "fd00::/8", "nonsense"]),
            0..3,
        ),
    )
        .prop_map(|(ns, hosts, resolution, ports, endpoints, addresses)| {
            let ports: Vec<Value> = ports
                .iter()
                .map(|p| {
                    let protocol = ["HTTP", "TCP", "TLS"][*p as usize % 3];
                    json!({"number": p, "name": "p", "protocol": protocol})
                })
                .collect();
            let eps = if endpoints {
                json!([{"address": "127.0.2.1", "ports": {"http": 70000}}])
            } else {
                json!([])
            };
            serde_json::from_value(json!({
                "metadata": meta(ns, "se".into()),
                "spec": {"hosts": hosts, "resolution": resolution, "ports": ports, "endpoints": eps,
                         "addresses": addresses}
            }))
            .ok()
            .map(|s| Resource::ServiceEntry(Box::new(s)))
        });
    let sidecar = (
        pick(NAMESPACES),
        prop::collection::vec(
            pick(&[
                "./*",
                "*/*",
                "~/*",
                "shop/cart.shop.svc.cluster.local",
                "bad",
                "*/*.example.com",
            ]),
            0..3,
        ),
        any::<bool>(),
        prop::option::of(port()),
        prop::option::of((
            port(),
            pick(&["HTTP", "TCP", "GRPC", "weird"]),
            prop::option::of(pick(&[
                "127.0.0.1:9000",
                "0.0.0.0:9000",
                "[::1]:9000",
                "unix:///var/run/app.sock",
                "10.0.0.1:80",
            ])),
            any::<bool>(),
        )),
        // inbound connection pools: the Sidecar's, and the listener's own
        prop::option::of((
            pick(&[
                r#"{"tcp": {"maxConnections": 1, "idleTimeout": "1s"}, "http": {"h2UpgradePolicy": "UPGRADE"}}"#,
                r#"{"tcp": {"maxConnections": -1, "connectTimeout": "soon"}}"#,
                r#"{"http": {"useClientProtocol": true, "http1MaxPendingRequests": 0}}"#,
            ]),
            any::<bool>(),
        )),
    )
        .prop_map(|(ns, hosts, registry_only, egress_port, ingress, pool)| {
            let mut spec = json!({"egress": [{"hosts": hosts}]});
            if let Some((pool, own)) = pool {
                let pool: Value = serde_json::from_str(pool).unwrap();
                spec["inboundConnectionPool"] = pool.clone();
                if own {
                    spec["ingress"] = json!([{"port": {"number": 9080, "protocol": "HTTP", "name": "in"}, "connectionPool": pool}]);
                }
            }
            if let Some((number, protocol, endpoint, tls)) = ingress {
                let mut listener =
                    json!({"port": {"number": number, "protocol": protocol, "name": "in"}});
                if let Some(e) = endpoint {
                    listener["defaultEndpoint"] = json!(e);
                }
                if tls {
                    listener["tls"] = json!({"mode": "SIMPLE"});
                    listener["captureMode"] = json!("NONE");
                }
                spec["ingress"] = json!([listener]);
            }
            if let Some(p) = egress_port {
                spec["egress"][0]["port"] = json!({"number": p, "protocol": "HTTP", "name": "p"});
            }
            if registry_only {
                spec["outboundTrafficPolicy"] = json!({"mode": "REGISTRY_ONLY"});
            } else if egress_port.is_some() {
                // an egress proxy, on a port the host may not have
                spec["outboundTrafficPolicy"] = json!({"mode": "ALLOW_ANY",
                    "egressProxy": {"host": hosts.first().map_or("cart", |h| h.rsplit('/').next().unwrap_or("cart")), "port": {"number": egress_port}}});
            }
            serde_json::from_value(json!({"metadata": meta(ns, "default".into()), "spec": spec}))
                .ok()
                .map(|s| Resource::Sidecar(Box::new(s)))
        });
    let authz = (
        pick(NAMESPACES),
        pick(LABELS),
        pick(&["authz-http", "authz-grpc", "missing", ""]),
        pick(&["CUSTOM", "CUSTOM", "DENY", "ALLOW"]),
        prop::collection::vec(pick(&["/admin", "/a*", "*", "bad", ""]), 0..3),
    )
        .prop_map(|(ns, app, provider, action, paths)| {
            serde_json::from_value(json!({
                "metadata": meta(ns, format!("{app}-{provider}")),
                "spec": {"selector": {"matchLabels": {"app": app}}, "action": action,
                         "provider": {"name": provider},
                         "rules": [{"to": [{"operation": {"paths": paths}}]}]}
            }))
            .ok()
            .map(|a| Resource::AuthorizationPolicy(Box::new(a)))
        });
    prop_oneof![service, workload, vs, dr, gateway, se, sidecar, authz]
}

fn extension_providers() -> impl Strategy<Value = Vec<trellis_api::mesh::ExtensionProviderConfig>> {
    let one = (
        pick(&["authz-http", "authz-grpc", "missing"]),
        any::<bool>(),
        pick(HOSTS),
        pick(&["", "shop/", "other/", "bad ns/"]),
        pick(PORTS),
        pick(&["403", "299", "x", ""]),
        pick(&["1s", "0s", "-1s", "x", ""]),
    )
        .prop_map(|(name, grpc, host, ns, port, status, timeout)| {
            let kind = if grpc {
                "envoyExtAuthzGrpc"
            } else {
                "envoyExtAuthzHttp"
            };
            let mut provider = json!({"service": format!("{ns}{host}"), "port": port.max(0)});
            if !status.is_empty() {
                provider["statusOnError"] = json!(status);
            }
            if !timeout.is_empty() {
                provider["timeout"] = json!(timeout);
            }
            serde_json::from_value(json!({"name": name, kind: provider})).ok()
        });
    prop::collection::vec(one, 0..3).prop_map(|v| v.into_iter().flatten().collect())
}

fn settings() -> impl Strategy<Value = MeshSettings> {
    // Access logs, formats included that validation would refuse.
    let access_log = prop::option::of((
        any::<bool>(),
        prop::option::of(pick(&[
            "%RESPONSE_CODE%",
            r#"{"code": "%RESPONSE_CODE%", "n": 1, "deep": {"a": [null, true]}}"#,
            "[not json",
            "",
        ])),
    ))
    .prop_map(|log| {
        log.map(|(json, format)| trellis_model::AccessLog {
            path: "/dev/stdout".into(),
            encoding: if json {
                trellis_api::mesh::AccessLogEncoding::Json
            } else {
                trellis_api::mesh::AccessLogEncoding::Text
            },
            format: format.map(str::to_string),
        })
    });
    let locality_lb = prop::option::of(pick(&[
        r#"{"enabled": false}"#,
        r#"{"failover": [{"from": "us-east", "to": "eu"}]}"#,
        r#"{"distribute": [{"from": "*", "to": {"us-east": 50, "eu/x/*": 50}}]}"#,
        r#"{"failoverPriority": ["app", "topology.istio.io/subzone"]}"#,
    ]))
    .prop_map(|s| s.and_then(|s| serde_json::from_str(s).ok()));
    (
        any::<bool>(),
        any::<bool>(),
        extension_providers(),
        access_log,
        locality_lb,
    )
        .prop_map(
            |(strict, registry_only, extension_providers, access_log, locality_lb)| MeshSettings {
                extension_providers,
                access_log,
                locality_lb,
                default_mtls: if strict {
                    MtlsMode::Strict
                } else {
                    MtlsMode::Permissive
                },
                outbound_policy: if registry_only {
                    OutboundPolicy::RegistryOnly
                } else {
                    OutboundPolicy::AllowAny
                },
                ..Default::default()
            },
        )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn random_meshes_translate_without_panicking(
        settings in settings(),
        resources in prop::collection::vec(resource(), 0..24),
    ) {
        let mut model = MeshModel::new(settings);
        for r in resources.into_iter().flatten() {
            // A malformed object is refused with an error; it must not panic either.
            let _ = model.apply(r);
        }
        let explicit = TranslateOptions {
            shape: ListenerShape::Explicit(ExplicitPorts {
                outbound_http_port: 15001,
                privileged_port_offset: 8000,
                ..Default::default()
            }),
            sds: SdsSource::Ads,
        };
        let workloads: Vec<(String, String)> = model
            .workloads()
            .map(|w| (w.namespace.clone(), w.name.clone()))
            .collect();
        for options in [TranslateOptions::default(), explicit] {
            let mut t = Translator::new(&model, options.clone());
            for (ns, name) in &workloads {
                for proxy in [Proxy::sidecar(ns, name), Proxy::gateway(ns, name)] {
                    let out = t.translate(&proxy);
                    // deterministic: a fresh translator gives the same output
                    let again = Translator::new(&model, options.clone()).translate(&proxy);
                    prop_assert_eq!(&out, &again);
                    for e in &out.errors {
                        prop_assert!(!e.kind.is_empty() && !e.message.is_empty(), "{:?}", e);
                    }
                    // A proxy is only ever pointed at Secrets of its own namespace.
                    for secret in &out.secrets {
                        if let SecretRef::Credential { namespace, .. } = secret {
                            prop_assert_eq!(namespace, ns, "{:?}", secret);
                        }
                    }
                }
            }
        }
    }
}
