//! A small shop mesh shared by the translator tests.
#![allow(dead_code)]
use k8s_openapi::api::core::v1::Service;
use trellis_api::networking::{DestinationRule, VirtualService};
use trellis_model::{MeshModel, MeshSettings, Resource, Workload};
use trellis_translate::{
    ExplicitPorts, ListenerShape, Proxy, ProxyResources, SdsSource, TranslateOptions, Translator,
};

pub fn service(ns: &str, name: &str, app: &str, ports: &[(&str, u16, u16)]) -> Resource {
    let ports: Vec<_> = ports
        .iter()
        .map(|(n, p, t)| serde_json::json!({"name": n, "port": p, "targetPort": t}))
        .collect();
    let svc: Service = serde_json::from_value(serde_json::json!({
        "metadata": {"name": name, "namespace": ns},
        "spec": {"selector": {"app": app}, "ports": ports, "clusterIP": "10.0.0.1"}
    }))
    .unwrap();
    Resource::Service(Box::new(svc))
}

pub fn workload(ns: &str, name: &str, addr: &str, labels: &[(&str, &str)]) -> Resource {
    let mut w = Workload::new(ns, name, addr);
    w.labels = labels
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    w.service_account = labels
        .iter()
        .find(|(k, _)| *k == "app")
        .map(|(_, v)| v.to_string())
        .unwrap_or_else(|| "default".into());
    Resource::Workload(Box::new(w))
}

pub fn vs(yaml: &str) -> Resource {
    let vs: VirtualService = from_yaml(yaml);
    Resource::VirtualService(Box::new(vs))
}

pub fn dr(yaml: &str) -> Resource {
    let dr: DestinationRule = from_yaml(yaml);
    Resource::DestinationRule(Box::new(dr))
}

pub fn base_resources() -> Vec<Resource> {
    vec![
        service("shop", "cart", "cart", &[("http", 8080, 8080)]),
        service("shop", "web", "web", &[("http", 80, 8000)]),
        service("shop", "db", "db", &[("tcp-db", 5432, 5432)]),
        workload(
            "shop",
            "cart-v1",
            "127.0.0.11",
            &[("app", "cart"), ("version", "v1")],
        ),
        workload(
            "shop",
            "cart-v2",
            "127.0.0.12",
            &[("app", "cart"), ("version", "v2")],
        ),
        workload("shop", "web-1", "127.0.0.10", &[("app", "web")]),
        workload("shop", "db-1", "127.0.0.13", &[("app", "db")]),
    ]
}

pub fn model_of(resources: Vec<Resource>) -> MeshModel {
    let mut m = MeshModel::new(MeshSettings::default());
    for r in resources {
        m.apply(r).unwrap();
    }
    m
}

pub fn explicit_options() -> TranslateOptions {
    TranslateOptions {
        shape: ListenerShape::Explicit(ExplicitPorts {
            outbound_http_port: 15001,
            tcp_outbound_ports: [(("db.shop.svc.cluster.local".to_string(), 5432), 25432)]
                .into_iter()
                .collect(),
            privileged_port_offset: 8000,
        }),
        sds: SdsSource::Ads,
    }
}

pub fn web_sidecar(model: &MeshModel) -> ProxyResources {
    Translator::new(model, explicit_options()).translate(&Proxy::sidecar("shop", "web-1"))
}

/// YAML through JSON: the API's enums are externally tagged maps, as in Istio's JSON.
pub fn from_yaml<T: serde::de::DeserializeOwned>(yaml: &str) -> T {
    let value: serde_json::Value = serde_yaml::from_str(yaml).unwrap();
    serde_json::from_value(value).unwrap()
}

/// A filter chain's TCP proxy (its last filter; policies come before it).
pub fn chain_tcp_proxy(
    c: &envoy_types::pb::envoy::config::listener::v3::FilterChain,
) -> envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    let Some(ConfigType::TypedConfig(any)) = &c.filters.last().unwrap().config_type else {
        panic!("no typed config in {}", c.name);
    };
    prost::Message::decode(any.value.as_slice()).unwrap()
}

/// The (cluster, weight) pairs a TCP proxy sends to.
pub fn proxied_to(
    tcp: envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy,
) -> Vec<(String, u32)> {
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::tcp_proxy::ClusterSpecifier as Tcp;
    match tcp.cluster_specifier.unwrap() {
        Tcp::Cluster(c) => vec![(c, 100)],
        Tcp::WeightedClusters(w) => w.clusters.into_iter().map(|c| (c.name, c.weight)).collect(),
    }
}

/// The cluster `name` of `out`; panics naming it when there is none.
pub fn cluster<'a>(
    out: &'a ProxyResources,
    name: &str,
) -> &'a envoy_types::pb::envoy::config::cluster::v3::Cluster {
    out.clusters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no cluster {name}"))
}

/// The listener `name` of `out`; panics naming the ones there are.
pub fn listener<'a>(
    out: &'a ProxyResources,
    name: &str,
) -> &'a envoy_types::pb::envoy::config::listener::v3::Listener {
    out.listeners
        .iter()
        .find(|l| l.name == name)
        .unwrap_or_else(|| {
            panic!(
                "no listener {name} in {:?}",
                out.listeners.iter().map(|l| &l.name).collect::<Vec<_>>()
            )
        })
}
