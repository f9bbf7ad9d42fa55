//! The Kubernetes interception shape (Istio's layout), asserted on the Envoy structs.
mod fixture;

use envoy_types::pb::envoy::config::listener::v3::Listener;
use fixture::*;
use trellis_model::{MeshModel, MeshSettings, OutboundPolicy};
use trellis_translate::{Proxy, ProxyResources, SdsSource, TranslateOptions, Translator};

/// The interception shape with secrets over ADS.
fn ads_options() -> TranslateOptions {
    TranslateOptions {
        sds: SdsSource::Ads,
        ..Default::default()
    }
}

fn intercepted(model: &MeshModel) -> ProxyResources {
    Translator::new(model, ads_options()).translate(&Proxy::sidecar("shop", "web-1"))
}

/// The base resources with MeshConfig's access log on (text).
fn with_access_log() -> Vec<trellis_model::Resource> {
    let mut resources = base_resources();
    resources.push(trellis_model::Resource::MeshSettings(MeshSettings {
        access_log: Some(trellis_model::AccessLog {
            path: "/dev/stdout".into(),
            encoding: trellis_api::mesh::AccessLogEncoding::Text,
            format: None,
        }),
        ..MeshSettings::default()
    }));
    resources
}

fn port(l: &Listener) -> u32 {
    let text = format!("{:?}", l.address);
    let n = text.split("PortValue(").nth(1).unwrap();
    n[..n.find(')').unwrap()].parse().unwrap()
}

#[test]
fn istio_ports_and_listener_names() {
    let model = model_of(base_resources());
    let out = intercepted(&model);
    let names: Vec<&str> = out.listeners.iter().map(|l| l.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "0.0.0.0_15021",
            "0.0.0.0_15090",
            "0.0.0.0_80",
            "0.0.0.0_8080",
            "10.0.0.1_5432",
            "virtualInbound",
            "virtualOutbound"
        ]
    );
    let outbound = listener(&out, "virtualOutbound");
    assert_eq!(port(outbound), 15001);
    assert_eq!(outbound.use_original_dst.map(|b| b.value), Some(true));
    assert_eq!(outbound.filter_chains[0].name, "PassthroughCluster");
    // per-service listeners only receive connections handed over by 15001
    for name in ["0.0.0.0_80", "0.0.0.0_8080", "10.0.0.1_5432"] {
        assert_eq!(
            listener(&out, name).bind_to_port.map(|b| b.value),
            Some(false),
            "{name}"
        );
    }
    let inbound = listener(&out, "virtualInbound");
    assert_eq!(port(inbound), 15006);
    assert_eq!(
        inbound.listener_filters[0].name,
        "envoy.filters.listener.original_dst"
    );
    // PERMISSIVE by default, for target port 8000 and then for undeclared ports:
    // the mesh's mTLS (ALPN istio) terminated, other TLS passed through, plaintext
    let chains: Vec<(String, Option<u32>)> = inbound
        .filter_chains
        .iter()
        .map(|c| {
            (
                c.name.clone(),
                c.filter_chain_match
                    .as_ref()
                    .and_then(|m| m.destination_port.map(|p| p.value)),
            )
        })
        .collect();
    assert_eq!(
        chains,
        [
            ("127.0.0.10_8000-mtls".to_string(), Some(8000)),
            ("127.0.0.10_8000-tls".to_string(), Some(8000)),
            ("127.0.0.10_8000-plaintext".to_string(), Some(8000)),
            ("InboundPassthroughClusterIpv4-mtls".to_string(), None),
            ("InboundPassthroughClusterIpv4-tls".to_string(), None),
            ("InboundPassthroughClusterIpv4-plaintext".to_string(), None)
        ]
    );
    let passthrough_mtls = inbound.filter_chains[3]
        .filter_chain_match
        .as_ref()
        .unwrap();
    assert_eq!(
        (
            passthrough_mtls.transport_protocol.as_str(),
            passthrough_mtls.application_protocols.as_slice()
        ),
        ("tls", ["istio".to_string()].as_slice())
    );
    assert!(inbound.filter_chains[3].transport_socket.is_some());
    assert!(inbound.filter_chains[4].transport_socket.is_none());
    assert!(inbound.filter_chains[5].transport_socket.is_none());
    assert_eq!(port(listener(&out, "0.0.0.0_15021")), 15021);
    assert_eq!(port(listener(&out, "0.0.0.0_15090")), 15090);
    // route configurations named by port, each ending with the catch-all
    let routes: Vec<&str> = out.routes.iter().map(|r| r.name()).collect();
    assert_eq!(routes, ["80", "8080"]);
    let rc8080 = out.routes[1].decode();
    assert_eq!(rc8080.virtual_hosts.last().unwrap().name, "allow_any");
    assert!(
        rc8080.virtual_hosts[0]
            .domains
            .contains(&"cart.shop.svc.cluster.local:8080".to_string())
    );
    let clusters: Vec<&str> = out.clusters.iter().map(|c| c.name.as_str()).collect();
    for c in [
        "BlackHoleCluster",
        "InboundPassthroughClusterIpv4",
        "PassthroughCluster",
        "prometheus_stats",
        "inbound|8000||",
    ] {
        assert!(clusters.contains(&c), "{c} in {clusters:?}");
    }
}

#[test]
fn registry_only_blackholes_unknown_destinations() {
    let mut model = model_of(base_resources());
    model
        .apply(trellis_model::Resource::MeshSettings(MeshSettings {
            outbound_policy: OutboundPolicy::RegistryOnly,
            ..Default::default()
        }))
        .unwrap();
    let out = intercepted(&model);
    let outbound = listener(&out, "virtualOutbound");
    assert_eq!(outbound.filter_chains[0].name, "BlackHoleCluster");
    assert!(
        out.routes
            .iter()
            .all(|r| r.decode().virtual_hosts.last().unwrap().name == "block_all")
    );
}

/// A ServiceEntry's every address is reachable: each IP gets its listener,
/// and each CIDR range a chain on `0.0.0.0_<port>` matched by destination
/// IP, with the outbound policy for any other destination on that port.
#[test]
fn every_service_entry_address_gets_a_listener_or_a_range_chain() {
    let mut resources = base_resources();
    resources.push(trellis_model::Resource::ServiceEntry(Box::new(from_yaml(
        r#"
metadata: {name: ledger, namespace: shop}
spec:
  hosts: [ledger.internal]
  addresses: [10.20.0.0/16, 192.168.1.7, 192.168.1.8]
  location: MESH_EXTERNAL
  resolution: STATIC
  ports: [{number: 7000, name: tcp, protocol: TCP}]
  endpoints: [{address: 10.20.0.5}]
"#,
    ))));
    let mut model = model_of(resources);
    model
        .apply(trellis_model::Resource::MeshSettings(MeshSettings {
            outbound_policy: OutboundPolicy::RegistryOnly,
            ..Default::default()
        }))
        .unwrap();
    let out = intercepted(&model);
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let cluster = "outbound|7000||ledger.internal";
    for ip in ["192.168.1.7", "192.168.1.8"] {
        let l = listener(&out, &format!("{ip}_7000"));
        assert_eq!(l.filter_chains.len(), 1);
        assert_eq!(l.filter_chains[0].name, cluster);
    }
    let ranges = listener(&out, "0.0.0.0_7000");
    let chain = &ranges.filter_chains[0];
    let range = &chain.filter_chain_match.as_ref().unwrap().prefix_ranges[0];
    assert_eq!(
        (
            range.address_prefix.as_str(),
            range.prefix_len.unwrap().value
        ),
        ("10.20.0.0", 16)
    );
    assert_eq!(chain.name, format!("{cluster}.10.20.0.0/16"));
    let other = ranges.default_filter_chain.as_ref().unwrap();
    assert_eq!(other.name, "BlackHoleCluster");
}

/// Two entries claiming one range on one port: Envoy would refuse two chains
/// with the same match, so the range stays with the first (by host).
#[test]
fn a_range_claimed_twice_stays_with_the_first_entry() {
    let entry = |host: &str| {
        trellis_model::Resource::ServiceEntry(Box::new(from_yaml(&format!(
            r#"
metadata: {{name: {host}, namespace: shop}}
spec:
  hosts: [{host}.internal]
  addresses: [10.20.0.0/16]
  resolution: STATIC
  ports: [{{number: 7000, name: tcp, protocol: TCP}}]
  endpoints: [{{address: 10.20.0.5}}]
"#
        ))))
    };
    let mut resources = base_resources();
    resources.extend([entry("b"), entry("a")]);
    let out = intercepted(&model_of(resources));
    let names: Vec<&str> = (listener(&out, "0.0.0.0_7000").filter_chains.iter())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["outbound|7000||a.internal.10.20.0.0/16"]);
}

/// A port no Service declares that the workload's PeerAuthentication names
/// (`portLevelMtls`) gets passthrough chains of its own, in its mode, ahead
/// of the workload's mode for every other port, as in Istio.
#[test]
fn port_level_mtls_holds_on_undeclared_ports() {
    let mut resources = base_resources();
    resources.push(trellis_model::Resource::PeerAuthentication(Box::new(
        from_yaml(
            r#"
metadata: {name: web, namespace: shop}
spec:
  selector: {matchLabels: {app: web}}
  mtls: {mode: PERMISSIVE}
  portLevelMtls: {9999: {mode: STRICT}, 8000: {mode: DISABLE}}
"#,
        ),
    )));
    let out = intercepted(&model_of(resources));
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let chains: Vec<(&str, Option<u32>, bool)> = (listener(&out, "virtualInbound").filter_chains)
        .iter()
        .map(|c| {
            let port = c
                .filter_chain_match
                .as_ref()
                .and_then(|m| m.destination_port);
            (
                c.name.as_str(),
                port.map(|p| p.value),
                c.transport_socket.is_some(),
            )
        })
        .collect();
    assert_eq!(
        chains,
        [
            // declared (target port 8000): its own chain, in its port's mode
            ("127.0.0.10_8000", Some(8000), false),
            // undeclared 9999: STRICT
            ("InboundPassthroughClusterIpv4_9999", Some(9999), true),
            // every other port: the workload's PERMISSIVE
            ("InboundPassthroughClusterIpv4-mtls", None, true),
            ("InboundPassthroughClusterIpv4-tls", None, false),
            ("InboundPassthroughClusterIpv4-plaintext", None, false),
        ]
    );
}

/// (listener, filter, access logs) of every HTTP connection manager and TCP proxy.
fn access_logs(out: &ProxyResources) -> Vec<(String, String, usize)> {
    use envoy_types::pb::envoy::config::listener::v3::filter::ConfigType;
    use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpConnectionManager;
    use envoy_types::pb::envoy::extensions::filters::network::tcp_proxy::v3::TcpProxy;
    use prost::Message;
    let mut logged = Vec::new();
    for l in &out.listeners {
        let chains = l.filter_chains.iter().chain(&l.default_filter_chain);
        for f in chains.flat_map(|c| &c.filters) {
            let Some(ConfigType::TypedConfig(any)) = &f.config_type else {
                continue;
            };
            let logs = match f.name.as_str() {
                "envoy.filters.network.http_connection_manager" => {
                    HttpConnectionManager::decode(any.value.as_slice())
                        .unwrap()
                        .access_log
                }
                "envoy.filters.network.tcp_proxy" => {
                    TcpProxy::decode(any.value.as_slice()).unwrap().access_log
                }
                _ => continue,
            };
            logged.push((l.name.clone(), f.name.clone(), logs.len()));
        }
    }
    logged
}

/// MeshConfig's access log reaches every HTTP connection manager and TCP
/// proxy of the sidecar (inbound, outbound, passthrough), but not the
/// agent's health and stats listeners.
#[test]
fn the_access_log_is_on_every_listener_but_the_agents() {
    let logged = access_logs(&intercepted(&model_of(with_access_log())));
    let agent = |name: &str| name == "0.0.0.0_15021" || name == "0.0.0.0_15090";
    for (listener, filter, logs) in &logged {
        let expected = usize::from(!agent(listener));
        assert_eq!(*logs, expected, "{listener} {filter}");
    }
    for name in [
        "virtualInbound",
        "virtualOutbound",
        "0.0.0.0_8080",
        "0.0.0.0_15021",
    ] {
        assert!(
            logged.iter().any(|(l, _, _)| l == name),
            "{name}: {logged:?}"
        );
    }
    // Without the setting, no access log anywhere.
    let logged = access_logs(&intercepted(&model_of(base_resources())));
    assert!(logged.iter().all(|(_, _, logs)| *logs == 0), "{logged:?}");
}

fn sidecar(yaml: &str) -> trellis_model::Resource {
    trellis_model::Resource::Sidecar(Box::new(from_yaml(yaml)))
}

/// A Sidecar's `egressProxy` (under ALLOW_ANY) takes what PassthroughCluster
/// would: connections of virtualOutbound to unknown destinations and the
/// catch-all route of every port; an egress proxy the proxy cannot reach is
/// reported, and unknown destinations are then refused, not passed through.
#[test]
fn an_egress_proxy_takes_the_traffic_to_unknown_destinations() {
    let fallback = |out: &ProxyResources| {
        let outbound = listener(out, "virtualOutbound");
        let routes: Vec<String> = (out.routes.iter())
            .map(|r| {
                format!(
                    "{:?}",
                    r.decode().virtual_hosts.last().unwrap().routes[0].action
                )
            })
            .collect();
        (outbound.filter_chains[0].name.clone(), routes)
    };
    let with = |proxy: &str| {
        let mut resources = base_resources();
        resources.push(sidecar(&format!(
            "metadata: {{name: default, namespace: shop}}\n\
             spec: {{outboundTrafficPolicy: {{mode: ALLOW_ANY, egressProxy: {proxy}}}}}\n"
        )));
        intercepted(&model_of(resources))
    };
    let out = with("{host: cart, port: {number: 8080}}");
    assert!(out.errors.is_empty(), "{:?}", out.errors);
    let (chain, routes) = fallback(&out);
    let cart = "outbound|8080||cart.shop.svc.cluster.local";
    assert_eq!(chain, cart);
    assert_eq!(routes.len(), 2);
    assert!(routes.iter().all(|r| r.contains(cart)), "{routes:?}");
    // cart has no port 9090; ghost is no service
    for (proxy, path, message) in [
        (
            "{host: cart, port: {number: 9090}}",
            "spec.outboundTrafficPolicy.egressProxy",
            "has no port 9090",
        ),
        (
            "{host: ghost.example.com, port: {number: 80}}",
            "spec.outboundTrafficPolicy.egressProxy.host",
            "matches no service",
        ),
    ] {
        let out = with(proxy);
        assert!(
            (out.errors.iter())
                .any(|e| e.kind == "Sidecar" && e.path == path && e.message.contains(message)),
            "{:?}",
            out.errors
        );
        let (chain, routes) = fallback(&out);
        assert_eq!(chain, "BlackHoleCluster");
        assert!(
            routes.iter().all(|r| r.contains("BlackHoleCluster")),
            "{routes:?}"
        );
    }
}

/// Sidecars that see the same outbound scope share its outbound listeners (one
/// `Arc` each, built once, with the access log), and each still gets its own
/// `virtualInbound`.
#[test]
fn sidecars_of_a_scope_share_their_outbound_listeners() {
    let model = model_of(with_access_log());
    let options = ads_options();
    let mut translator = Translator::new(&model, options.clone());
    let web = translator.translate(&Proxy::sidecar("shop", "web-1"));
    let db = translator.translate(&Proxy::sidecar("shop", "db-1"));
    let find = |out: &ProxyResources, name: &str| {
        (out.listeners.iter())
            .find(|l| l.name == name)
            .unwrap_or_else(|| panic!("{name}"))
            .clone()
    };
    for shared in ["virtualOutbound", "0.0.0.0_80", "10.0.0.1_5432"] {
        assert!(
            std::sync::Arc::ptr_eq(&find(&web, shared), &find(&db, shared)),
            "{shared}"
        );
    }
    // As one list, not a copy per sidecar.
    assert!(std::sync::Arc::ptr_eq(
        web.listeners.shared_part(),
        db.listeners.shared_part()
    ));
    assert_ne!(
        find(&web, "virtualInbound"),
        find(&db, "virtualInbound"),
        "each sidecar's inbound is its own"
    );
    // The second sidecar gets what a translator of its own gives, access log included.
    let alone = Translator::new(&model, options).translate(&Proxy::sidecar("shop", "db-1"));
    assert_eq!(db, alone);
    assert!(
        access_logs(&db)
            .iter()
            .any(|(l, _, logs)| l == "virtualOutbound" && *logs == 1)
    );
}
