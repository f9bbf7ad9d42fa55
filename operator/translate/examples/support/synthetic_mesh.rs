//! The synthetic mesh of the translate and snapshot benchmarks (issue 4):
//! 1,000 services x 3 ports in 20 namespaces, 10,000 endpoints (workloads, 10 per
//! service, each running as its service's ServiceAccount), 500 VirtualServices,
//! 500 DestinationRules, 200 AuthorizationPolicies, and 2 sidecars per service.
//! Included by path (`#[path]`) from the benchmarks that use it.
use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::Service;
use trellis_model::{Resource, Workload};
use trellis_translate::Proxy;

pub const NAMESPACES: usize = 20;
pub const SERVICES: usize = 1_000;
pub const ENDPOINTS_PER_SERVICE: usize = 10;
pub const VIRTUAL_SERVICES: usize = 500;
pub const DESTINATION_RULES: usize = 500;
pub const AUTHORIZATION_POLICIES: usize = 200;
pub const PROXIES_PER_SERVICE: usize = 2;

pub fn ns(service: usize) -> String {
    format!("ns-{}", service % NAMESPACES)
}

pub fn svc(service: usize) -> String {
    format!("svc-{service}")
}

pub fn json<T: serde::de::DeserializeOwned>(value: serde_json::Value) -> T {
    serde_json::from_value(value).expect("synthetic object")
}

pub fn resources() -> Vec<Resource> {
    let mut out = Vec::new();
    for s in 0..SERVICES {
        let (ns, name) = (ns(s), svc(s));
        let service: Service = json(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "selector": {"app": name},
                "clusterIP": format!("10.{}.{}.{}", s / 65536, (s / 256) % 256, s % 256),
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "grpc", "port": 9090, "targetPort": 9090},
                    {"name": "tcp-db", "port": 5432, "targetPort": 5432},
                ]
            }
        }));
        out.push(Resource::Service(Box::new(service)));
        for e in 0..ENDPOINTS_PER_SERVICE {
            let n = s * ENDPOINTS_PER_SERVICE + e;
            let mut w = Workload::new(
                ns.clone(),
                format!("{name}-{e}"),
                format!("10.{}.{}.{}", 100 + n / 65536, (n / 256) % 256, n % 256),
            );
            w.labels = BTreeMap::from([
                ("app".to_string(), name.clone()),
                ("version".to_string(), format!("v{}", 1 + e % 2)),
            ]);
            w.service_account = name.clone();
            out.push(Resource::Workload(Box::new(w)));
        }
    }
    for s in 0..VIRTUAL_SERVICES {
        let (ns, name) = (ns(2 * s), svc(2 * s));
        let other = svc((2 * s + 1) % SERVICES);
        out.push(Resource::VirtualService(Box::new(json(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "hosts": [name],
                "http": [
                    {
                        "name": "canary",
                        "match": [{"headers": {"x-canary": {"exact": "1"}}, "uri": {"prefix": "/api"}}],
                        "route": [{"destination": {"host": name, "subset": "v2", "port": {"number": 80}}}],
                        "timeout": "2s"
                    },
                    {
                        "name": "other",
                        "match": [{"uri": {"prefix": "/other"}}],
                        "rewrite": {"uri": "/"},
                        "route": [{"destination": {"host": format!("{other}.{}.svc.cluster.local", ns_of(&other)), "port": {"number": 80}}}]
                    },
                    {
                        "name": "split",
                        "route": [
                            {"destination": {"host": name, "subset": "v1"}, "weight": 90},
                            {"destination": {"host": name, "subset": "v2"}, "weight": 10}
                        ],
                        "retries": {"attempts": 3, "perTryTimeout": "1s", "retryOn": "5xx,connect-failure"}
                    }
                ]
            }
        })))));
    }
    for s in 0..DESTINATION_RULES {
        let (ns, name) = (ns(2 * s), svc(2 * s));
        out.push(Resource::DestinationRule(Box::new(json(serde_json::json!({
            "metadata": {"name": name, "namespace": ns},
            "spec": {
                "host": name,
                "trafficPolicy": {
                    "loadBalancer": {"simple": "LEAST_REQUEST"},
                    "connectionPool": {"tcp": {"maxConnections": 100}, "http": {"http1MaxPendingRequests": 50}},
                    "outlierDetection": {"consecutive5xxErrors": 5, "interval": "10s", "baseEjectionTime": "30s"}
                },
                "subsets": [
                    {"name": "v1", "labels": {"version": "v1"}},
                    {"name": "v2", "labels": {"version": "v2"}}
                ]
            }
        })))));
    }
    for p in 0..AUTHORIZATION_POLICIES {
        let s = (p * 5) % SERVICES;
        let (ns, name) = (ns(s), svc(s));
        out.push(Resource::AuthorizationPolicy(Box::new(json(serde_json::json!({
            "metadata": {"name": format!("allow-{name}"), "namespace": ns},
            "spec": {
                "selector": {"matchLabels": {"app": name}},
                "action": "ALLOW",
                "rules": [{
                    "from": [{"source": {"namespaces": [ns, "ns-0"], "principals": [format!("cluster.local/ns/ns-1/sa/{}", svc(1))]}}],
                    "to": [{"operation": {"methods": ["GET", "POST"], "paths": ["/api/*"]}}],
                    "when": [{"key": "request.headers[x-tenant]", "values": ["acme"]}]
                }]
            }
        })))));
    }
    out
}

pub fn ns_of(service_name: &str) -> String {
    let n: usize = service_name
        .trim_start_matches("svc-")
        .parse()
        .expect("svc-N");
    ns(n)
}

pub fn proxies() -> Vec<Proxy> {
    (0..SERVICES)
        .flat_map(|s| {
            (0..PROXIES_PER_SERVICE).map(move |e| Proxy::sidecar(ns(s), format!("{}-{e}", svc(s))))
        })
        .collect()
}
