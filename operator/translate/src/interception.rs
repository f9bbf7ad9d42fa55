//! The Kubernetes interception shape, as Istio lays it out: iptables sends
//! outbound connections to 15001 (`virtualOutbound`, handed to the listener of
//! the original destination) and inbound ones to 15006 (`virtualInbound`, one
//! filter chain per destination port); 15021 answers health checks and 15090
//! serves Prometheus stats.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::{
    Cluster, cluster::ClusterDiscoveryType, cluster::DiscoveryType, cluster::LbPolicy,
};
use envoy_types::pb::envoy::config::core::v3::{
    BindConfig, CidrRange, SocketAddress, socket_address,
};
use envoy_types::pb::envoy::config::listener::v3::{
    FilterChain, FilterChainMatch, Listener, ListenerFilter, listener_filter::ConfigType,
};
use envoy_types::pb::envoy::config::route::v3::{
    DirectResponseAction, Route, RouteAction, RouteConfiguration, RouteMatch, VirtualHost, route,
    route_action, route_match,
};
use envoy_types::pb::envoy::extensions::filters::listener::original_dst::v3::OriginalDst;
use envoy_types::pb::google::protobuf::BoolValue;
use envoy_types::util::pack_any;
use trellis_model::{MeshService, OutboundPolicy, Protocol, Resolution, ServicePort};

use crate::cluster::{DEFAULT_CONNECT_TIMEOUT, duration};
use crate::endpoints::load_assignment;
use crate::listener::{Routes, http_connection_manager, listener, sni_inspector, tcp_proxy};
use crate::names;
use crate::outbound::OutboundScope;

pub const OUTBOUND_PORT: u16 = 15001;
pub const INBOUND_PORT: u16 = 15006;
pub const HEALTH_PORT: u16 = 15021;
pub const STATS_PORT: u16 = 15090;
/// Envoy's admin port in the interception shape (what 15090 proxies to).
pub const ADMIN_PORT: u16 = 15000;
pub const PROMETHEUS_STATS_CLUSTER: &str = "prometheus_stats";
/// Source address of inbound passthrough connections, as Istio binds them.
pub const INBOUND_PASSTHROUGH_SOURCE: &str = "127.0.0.6";
const ORIGINAL_DST_FILTER: &str = "envoy.filters.listener.original_dst";

fn original_dst() -> ListenerFilter {
    ListenerFilter {
        name: ORIGINAL_DST_FILTER.into(),
        config_type: Some(ConfigType::TypedConfig(pack_any(OriginalDst::default()))),
        ..Default::default()
    }
}

/// The outbound side: `virtualOutbound` on 15001 and one listener per outbound
/// service port that 15001 hands connections to (`bind_to_port: false`). HTTP ports
/// share `0.0.0.0_<port>` with the route configuration named by the port; TCP
/// ports get `<service address>_<port>`.
pub fn outbound_listeners(scope: &OutboundScope) -> Vec<Listener> {
    let fallback = match scope.outbound_policy {
        OutboundPolicy::AllowAny => scope.allow_any_cluster.as_str(),
        OutboundPolicy::RegistryOnly => names::BLACKHOLE_CLUSTER,
    };
    let mut virtual_outbound = listener(
        names::VIRTUAL_OUTBOUND.into(),
        "0.0.0.0",
        OUTBOUND_PORT,
        vec![FilterChain {
            name: fallback.into(),
            filters: vec![tcp_proxy(fallback, fallback)],
            ..Default::default()
        }],
        Vec::new(),
    );
    virtual_outbound.use_original_dst = Some(BoolValue { value: true });
    let mut out = vec![virtual_outbound];
    for rc in &scope.port_routes {
        let Ok(port) = rc.name().parse::<u16>() else {
            continue;
        };
        let name = names::listener_name("0.0.0.0", port);
        let http = http_connection_manager(&name, Routes::Rds(rc.name().to_string()), Vec::new());
        out.push(unbound(listener(
            name,
            "0.0.0.0",
            port,
            vec![FilterChain {
                filters: vec![http],
                ..Default::default()
            }],
            Vec::new(),
        )));
    }
    // Services without an IP: TLS ports share `0.0.0.0_<port>` with a chain per SNI
    // host; an opaque TCP port gets it only when a single service claims the port
    // (several could not be told apart, so their traffic stays on virtualOutbound).
    // Addresses that are CIDR ranges get a chain there matched by destination IP.
    let mut by_port: BTreeMap<u16, Vec<(&MeshService, &ServicePort)>> = BTreeMap::new();
    let mut by_range: BTreeMap<u16, Vec<(&MeshService, &ServicePort, &str, CidrRange)>> =
        BTreeMap::new();
    for service in &scope.services {
        if service.resolution == Resolution::Passthrough {
            continue;
        }
        let ips: Vec<&String> = (service.addresses.iter())
            .filter(|a| a.parse::<std::net::IpAddr>().is_ok())
            .collect();
        let ranges: Vec<(&str, CidrRange)> = (service.addresses.iter())
            .filter_map(|a| Some((a.as_str(), cidr(a)?)))
            .collect();
        for port in service.ports.iter().filter(|p| !p.protocol.is_http()) {
            if ips.is_empty() && ranges.is_empty() {
                // `*` is no SNI name; such traffic stays on virtualOutbound.
                if service.hostname != "*" {
                    by_port.entry(port.port).or_default().push((service, port));
                }
                continue;
            }
            for (text, range) in &ranges {
                let claim = (service, port, *text, range.clone());
                by_range.entry(port.port).or_default().push(claim);
            }
            for address in &ips {
                let chains =
                    scope.tcp_chains(&service.hostname, port.port, None, &mut BTreeSet::new());
                let inspector = sni_inspector(&chains);
                out.push(unbound(listener(
                    names::listener_name(address, port.port),
                    address,
                    port.port,
                    chains,
                    inspector,
                )));
            }
        }
    }
    let http_ports: BTreeSet<String> = out.iter().map(|l| l.name.clone()).collect();
    let ports: BTreeSet<u16> = by_port.keys().chain(by_range.keys()).copied().collect();
    for port in ports {
        let name = names::listener_name("0.0.0.0", port);
        if http_ports.contains(&name) {
            continue;
        }
        let claims = by_port.get(&port).map(Vec::as_slice).unwrap_or_default();
        let tls = claims
            .iter()
            .all(|(_, p)| matches!(p.protocol, Protocol::Tls | Protocol::Https));
        let claims = if !tls && claims.len() > 1 {
            &[]
        } else {
            claims
        };
        let mut taken = BTreeSet::new();
        // A range's chain comes first: Envoy matches the destination IP
        // before the server name.
        // Envoy refuses two chains with one match: a range claimed twice
        // stays with the first service (by host).
        let mut ranges_seen = BTreeSet::new();
        let mut chains: Vec<FilterChain> = (by_range.get(&port).into_iter().flatten())
            .filter(|(_, _, text, _)| ranges_seen.insert(*text))
            .map(|(service, p, text, range)| FilterChain {
                name: format!(
                    "{}.{text}",
                    names::outbound_cluster(p.port, None, &service.hostname)
                ),
                filter_chain_match: Some(FilterChainMatch {
                    prefix_ranges: vec![range.clone()],
                    ..Default::default()
                }),
                filters: vec![scope.tcp_proxy(&service.hostname, p.port)],
                ..Default::default()
            })
            .collect();
        chains.extend(claims.iter().flat_map(|(service, p)| {
            let by_name = tls.then(|| FilterChainMatch {
                server_names: vec![service.hostname.clone()],
                ..Default::default()
            });
            scope.tcp_chains(&service.hostname, p.port, by_name, &mut taken)
        }));
        if chains.is_empty() {
            continue;
        }
        let catch_all = chains.iter().any(|c| c.filter_chain_match.is_none());
        let inspector = sni_inspector(&chains);
        let mut l = unbound(listener(name, "0.0.0.0", port, chains, inspector));
        if !catch_all {
            // Another destination or SNI: what the outbound policy says.
            l.default_filter_chain = Some(FilterChain {
                name: fallback.into(),
                filters: vec![tcp_proxy(fallback, fallback)],
                ..Default::default()
            });
        }
        out.push(l);
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out.dedup_by(|a, b| a.name == b.name);
    out
}

fn unbound(mut l: Listener) -> Listener {
    l.bind_to_port = Some(BoolValue { value: false });
    l
}

/// `virtualInbound` on 15006: the given per-port chains, then the `passthrough`
/// chains, for ports no service declares.
pub fn virtual_inbound(
    mut chains: Vec<FilterChain>,
    passthrough: Vec<FilterChain>,
    tls_inspector: bool,
) -> Listener {
    chains.extend(passthrough);
    let mut filters = vec![original_dst()];
    if tls_inspector {
        filters.push(crate::security::peer_authn::tls_inspector());
    }
    let mut l = listener(
        names::VIRTUAL_INBOUND.into(),
        "0.0.0.0",
        INBOUND_PORT,
        chains,
        filters,
    );
    l.use_original_dst = Some(BoolValue { value: true });
    l
}

fn prefix(p: &str) -> Option<RouteMatch> {
    Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix(p.into())),
        ..Default::default()
    })
}

/// 15021 (`/healthz/ready` answers 200 while Envoy serves) and 15090
/// (`/stats/prometheus` from the admin endpoint).
pub fn agent_listeners() -> Vec<Listener> {
    let health = RouteConfiguration {
        name: "health".into(),
        virtual_hosts: vec![VirtualHost {
            name: "health".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                name: "ready".into(),
                r#match: prefix("/healthz/ready"),
                action: Some(route::Action::DirectResponse(DirectResponseAction {
                    status: 200,
                    body: None,
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let stats = RouteConfiguration {
        name: "stats".into(),
        virtual_hosts: vec![VirtualHost {
            name: "stats".into(),
            domains: vec!["*".into()],
            routes: vec![Route {
                name: "prometheus".into(),
                r#match: prefix("/stats/prometheus"),
                action: Some(route::Action::Route(RouteAction {
                    cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                        PROMETHEUS_STATS_CLUSTER.into(),
                    )),
                    ..Default::default()
                })),
                ..Default::default()
            }],
            ..Default::default()
        }],
        ..Default::default()
    };
    let hcm = |name: &str, rc: RouteConfiguration| {
        http_connection_manager(name, Routes::Inline(Box::new(rc)), Vec::new())
    };
    let one = |port: u16, rc: RouteConfiguration| {
        let name = names::listener_name("0.0.0.0", port);
        listener(
            name.clone(),
            "0.0.0.0",
            port,
            vec![FilterChain {
                filters: vec![hcm(&name, rc)],
                ..Default::default()
            }],
            Vec::new(),
        )
    };
    vec![one(HEALTH_PORT, health), one(STATS_PORT, stats)]
}

/// Clusters the interception shape needs besides the services': passthrough in
/// both directions, the black hole and the admin endpoint for stats.
pub fn clusters() -> Vec<Arc<Cluster>> {
    let inbound_passthrough = Cluster {
        name: names::INBOUND_PASSTHROUGH_CLUSTER.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(
            DiscoveryType::OriginalDst as i32,
        )),
        lb_policy: LbPolicy::ClusterProvided as i32,
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        upstream_bind_config: Some(BindConfig {
            source_address: Some(SocketAddress {
                address: INBOUND_PASSTHROUGH_SOURCE.into(),
                port_specifier: Some(socket_address::PortSpecifier::PortValue(0)),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    };
    vec![
        Arc::new(crate::cluster::passthrough_cluster()),
        Arc::new(crate::cluster::blackhole_cluster()),
        Arc::new(inbound_passthrough),
        Arc::new(stats_cluster()),
    ]
}

/// The admin endpoint, which the 15090 listener of [`agent_listeners`] serves
/// `/stats/prometheus` from.
pub fn stats_cluster() -> Cluster {
    let admin = trellis_model::Endpoint {
        address: "127.0.0.1".into(),
        port: ADMIN_PORT,
        labels: Default::default(),
        has_sidecar: false,
        namespace: String::new(),
        service_account: None,
        weight: 1,
        locality: None,
    };
    Cluster {
        name: PROMETHEUS_STATS_CLUSTER.into(),
        cluster_discovery_type: Some(ClusterDiscoveryType::Type(DiscoveryType::Static as i32)),
        connect_timeout: Some(duration(DEFAULT_CONNECT_TIMEOUT)),
        load_assignment: Some(load_assignment(PROMETHEUS_STATS_CLUSTER, &[admin])),
        ..Default::default()
    }
}

/// A CIDR range (`ip/bits`) as a filter chain's destination match; `None`
/// for anything else.
fn cidr(address: &str) -> Option<CidrRange> {
    let (ip, bits) = address.split_once('/')?;
    let ip: std::net::IpAddr = ip.parse().ok()?;
    let bits: u32 = bits.parse().ok()?;
    (bits <= if ip.is_ipv4() { 32 } else { 128 }).then(|| CidrRange {
        address_prefix: ip.to_string(),
        prefix_len: Some(envoy_types::pb::google::protobuf::UInt32Value { value: bits }),
    })
}
