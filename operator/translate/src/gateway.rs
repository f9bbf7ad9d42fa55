//! Ingress gateway proxies: listeners from the Gateways whose selector matches the
//! gateway workload, routes from the VirtualServices bound to them (`http` routes on
//! plaintext and terminated HTTPS servers, `tls` routes by SNI on PASSTHROUGH servers,
//! `tcp` routes on TCP servers and on TLS servers that terminate TLS); plus the
//! mesh-wide checks of those bindings (missing Gateway, host not served).
mod server_tls;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::config::route::v3::{
    RouteConfiguration, VirtualHost, virtual_host::TlsRequirementType,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use envoy_types::pb::google::protobuf::BoolValue;
use trellis_api::networking::{self as api, Gateway, Server, ServerTLSMode, VirtualService};
use trellis_model::{MeshModel, Stored, Workload, gateway_ref, host_matches};

use crate::delegate::served_routes;
use crate::encode::PackedRouteConfiguration;
use crate::http_rule::HttpRule;
use crate::listener::{
    ClientCertHeader, Routes, connection_manager, forward_client_cert, hcm_filter, listener,
    sni_inspector,
};
use crate::names;
use crate::outbound::{OutboundScope, destination_cluster};
use crate::policy::HashKey;
use crate::route::routes;
use crate::security::sds::SdsSource;
use crate::security::tls::downstream_transport_socket;
use crate::security::workload::InboundSecurity;
use crate::types::{ErrorCode, ListenerShape, SecretRef, TranslateError};
use crate::virtual_service::{Client, http_rule, tcp_route, tls_routes};
use server_tls::{Termination, server_tls, termination};

/// What a gateway proxy gets besides the shared clusters and endpoints.
#[derive(Debug, Default)]
pub struct GatewayOutput {
    pub listeners: Vec<Listener>,
    pub routes: Vec<Arc<PackedRouteConfiguration>>,
    pub secrets: Vec<SecretRef>,
    /// Clusters that fetch the `jwksUri` key sets of its RequestAuthentications.
    pub clusters: Vec<Arc<Cluster>>,
    pub errors: Vec<TranslateError>,
}

/// A server host (`ns/host`, `./host`, `*/host` or `host`): which VirtualService
/// namespaces it admits (`None`: all) and the host pattern.
fn server_host(host: &str, gateway_ns: &str) -> (Option<String>, String) {
    match host.split_once('/') {
        Some(("*", h)) => (None, h.to_ascii_lowercase()),
        Some((".", h)) => (Some(gateway_ns.to_string()), h.to_ascii_lowercase()),
        Some((ns, h)) => (Some(ns.to_string()), h.to_ascii_lowercase()),
        None => (None, host.to_ascii_lowercase()),
    }
}

/// A VirtualService host as a gateway sees it: short names are qualified in the
/// VirtualService's namespace, anything with a dot is taken as written.
fn vs_host(host: &str, vs_ns: &str, model: &MeshModel) -> String {
    let h = host.to_ascii_lowercase();
    if h.contains('.') || h.starts_with('*') {
        h
    } else {
        model.settings().service_fqdn(&h, vs_ns)
    }
}

/// The host both patterns match: the more specific of the two, or none.
fn intersect(server: &str, vs: &str) -> Option<String> {
    if host_matches(server, vs) {
        Some(vs.to_string())
    } else if host_matches(vs, server) {
        Some(server.to_string())
    } else {
        None
    }
}

/// The domains server `server` of gateway `gw` serves for `vs`, per VirtualService host index.
fn served(
    model: &MeshModel,
    gw: &Stored<Gateway>,
    server: &Server,
    vs: &Stored<VirtualService>,
) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    for (j, h) in vs.object.spec.hosts.iter().enumerate() {
        let vh = vs_host(h, &vs.namespace, model);
        for sh in &server.hosts {
            let (ns, pattern) = server_host(sh, &gw.namespace);
            if ns.as_ref().is_some_and(|ns| ns != &vs.namespace) {
                continue;
            }
            if let Some(d) = intersect(&pattern, &vh) {
                out.push((j, d));
            }
        }
    }
    out
}

fn error(
    vs: &Stored<VirtualService>,
    path: String,
    code: ErrorCode,
    message: String,
) -> TranslateError {
    TranslateError {
        kind: "VirtualService".into(),
        namespace: vs.namespace.clone(),
        name: vs.name.clone(),
        path,
        message,
        code,
    }
}

/// Mesh-wide checks of VirtualService -> Gateway bindings: a named Gateway that
/// does not exist, and a VirtualService host that no server of its Gateway serves.
pub fn analyze_gateway_bindings(model: &MeshModel) -> Vec<TranslateError> {
    let mut errors = Vec::new();
    for vs in model.virtual_services() {
        for (i, g) in vs.object.spec.gateways.iter().enumerate() {
            let Some((ns, name)) = gateway_ref(g, &vs.namespace) else {
                continue;
            };
            let Some(gw) = model.gateway(&ns, &name) else {
                errors.push(error(
                    vs,
                    format!("spec.gateways[{i}]"),
                    ErrorCode::MissingGateway,
                    format!("Gateway {ns}/{name} does not exist"),
                ));
                continue;
            };
            let mut hit = BTreeSet::new();
            for server in &gw.object.spec.servers {
                hit.extend(served(model, gw, server, vs).into_iter().map(|(j, _)| j));
            }
            for (j, h) in vs.object.spec.hosts.iter().enumerate() {
                if !hit.contains(&j) {
                    errors.push(error(
                        vs,
                        format!("spec.hosts[{j}]"),
                        ErrorCode::HostNotServedByGateway,
                        format!("host {h} is not served by any server of Gateway {ns}/{name}"),
                    ));
                }
            }
        }
    }
    errors
}

fn gw_error(gw: &Stored<Gateway>, path: String, message: String) -> TranslateError {
    TranslateError {
        kind: "Gateway".into(),
        namespace: gw.namespace.clone(),
        name: gw.name.clone(),
        path,
        message,
        code: ErrorCode::InvalidValue,
    }
}

/// How one server is served.
enum Kind {
    Plain {
        https_redirect: bool,
    },
    /// TLS the gateway terminates; then HTTP (`http` routes) when `http`
    /// (HTTPS servers), else opaque TCP (`tcp` routes; TLS servers).
    Terminated {
        termination: Termination,
        http: bool,
    },
    /// TLS the gateway does not terminate: routed by SNI (`tls` routes) to
    /// servers that hold their own certificates.
    Passthrough,
    /// Opaque TCP, routed by the `tcp` routes bound to the server.
    Tcp,
}

impl Kind {
    /// What a listener port serves; one port serves one of them.
    fn traffic(&self) -> &'static str {
        match self {
            Kind::Plain { .. } => "plaintext HTTP",
            Kind::Terminated { .. } | Kind::Passthrough => "TLS",
            Kind::Tcp => "TCP",
        }
    }
}

struct ServerRef<'a> {
    gw: &'a Stored<Gateway>,
    index: usize,
    server: &'a Server,
    kind: Kind,
}

fn classify(gw: &Stored<Gateway>, i: usize, server: &Server) -> Result<Kind, Box<TranslateError>> {
    let protocol = server
        .port
        .protocol
        .as_deref()
        .unwrap_or("HTTP")
        .to_ascii_uppercase();
    let path = format!("spec.servers[{i}]");
    match (protocol.as_str(), &server.tls) {
        ("HTTP" | "HTTP2" | "GRPC", tls) => Ok(Kind::Plain {
            https_redirect: tls.as_ref().and_then(|t| t.https_redirect) == Some(true),
        }),
        ("HTTPS" | "TLS", Some(tls)) if tls.mode == Some(ServerTLSMode::Passthrough) => {
            Ok(Kind::Passthrough)
        }
        ("TCP" | "MONGO", _) => Ok(Kind::Tcp),
        ("HTTPS" | "TLS", Some(tls)) => match termination(tls) {
            Ok(termination) => Ok(Kind::Terminated {
                termination,
                http: protocol == "HTTPS",
            }),
            Err((field, message)) => {
                Err(Box::new(gw_error(gw, format!("{path}.{field}"), message)))
            }
        },
        ("HTTPS" | "TLS", None) => Err(Box::new(gw_error(
            gw,
            format!("{path}.tls"),
            format!("{protocol} servers need tls settings"),
        ))),
        (other, _) => Err(Box::new(gw_error(
            gw,
            format!("{path}.port.protocol"),
            format!("protocol {other} is not supported on gateways yet"),
        ))),
    }
}

/// The gateway HTTP connection manager: routes over RDS, edge settings.
/// The gateway's connection manager for `route_name`, with `http_filters`
/// (the gateway workload's RequestAuthentications and AuthorizationPolicies)
/// before the router.
fn gateway_hcm(stat_prefix: &str, route_name: &str, http_filters: &[HttpFilter]) -> Filter {
    let mut hcm = connection_manager(
        stat_prefix,
        Routes::Rds(route_name.into()),
        http_filters.to_vec(),
    );
    // Domains are matched without the port, and the gateway is the edge.
    hcm.strip_matching_host_port = false;
    hcm.strip_port_mode = Some(
        envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::http_connection_manager::StripPortMode::StripAnyHostPort(true),
    );
    hcm.use_remote_address = Some(BoolValue { value: true });
    hcm_filter(forward_client_cert(hcm, ClientCertHeader::SetFromClient))
}

/// Listeners and routes of gateway workload `workload`; `sds` is where its
/// own identity comes from (ISTIO_MUTUAL servers present it).
pub fn gateway_resources(
    model: &MeshModel,
    workload: &Workload,
    scope: &OutboundScope,
    shape: &ListenerShape,
    sds: &SdsSource,
) -> GatewayOutput {
    let mut out = GatewayOutput::default();
    // The edge is guarded as a sidecar's inbound side is: the policies whose
    // selector picks the gateway workload apply to every request it serves.
    let has_cluster = |name: &str| scope.clusters.iter().any(|c| c.name == name);
    let security = crate::security::workload::inbound_security(model, workload, &has_cluster);
    out.errors.extend(security.errors.iter().cloned());
    out.clusters = security.clusters.iter().cloned().map(Arc::new).collect();
    let by_port = servers_by_port(model, workload, shape, &mut out.errors);
    for ((bind, port), servers) in by_port {
        let traffic = servers[0].kind.traffic();
        let plain = matches!(servers[0].kind, Kind::Plain { .. });
        let (keep, clash): (Vec<_>, Vec<_>) = servers
            .into_iter()
            .partition(|s| s.kind.traffic() == traffic);
        for s in clash {
            out.errors.push(gw_error(
                s.gw,
                format!("spec.servers[{}].port", s.index),
                format!("port {port} already serves {traffic} traffic"),
            ));
        }
        let (address, listen_port) = match shape {
            ListenerShape::Interception => (bind.clone().unwrap_or_else(|| "0.0.0.0".into()), port),
            ListenerShape::Explicit(p) => {
                let listen = if port < 1024 {
                    port.saturating_add(p.privileged_port_offset)
                } else {
                    port
                };
                (
                    bind.clone().unwrap_or_else(|| workload.address.clone()),
                    listen,
                )
            }
        };
        let name = names::listener_name(&address, listen_port);
        let chains: Vec<FilterChain> = if let Kind::Tcp = keep[0].kind {
            Vec::from_iter(tcp_chain(
                model,
                scope,
                workload,
                &keep,
                port,
                &security.tcp_filters,
                &mut out.errors,
            ))
        } else if plain {
            let route_name = match &bind {
                None => names::gateway_route(port),
                Some(ip) => format!("{}.{ip}", names::gateway_route(port)),
            };
            let rc = route_config(
                model,
                scope,
                workload,
                &route_name,
                port,
                &keep,
                &mut out.errors,
            );
            out.routes
                .push(Arc::new(PackedRouteConfiguration::new(&rc)));
            vec![FilterChain {
                name: route_name.clone(),
                filters: vec![gateway_hcm(
                    &route_name,
                    &route_name,
                    &security.http_filters,
                )],
                ..Default::default()
            }]
        } else {
            tls_chains(
                model, scope, workload, &keep, port, &security, sds, &mut out,
            )
        };
        if chains.is_empty() {
            continue;
        }
        let filters = sni_inspector(&chains);
        out.listeners
            .push(listener(name, &address, listen_port, chains, filters));
    }
    out.listeners.sort_by(|a, b| a.name.cmp(&b.name));
    out.routes.sort_by(|a, b| a.name().cmp(b.name()));
    out.secrets.sort();
    out.secrets.dedup();
    out
}

/// The servers of the Gateways `workload` runs, by (`bind` address, port):
/// servers bound to another address get a listener of their own. A server
/// that cannot be served is reported in `errors` and left out.
fn servers_by_port<'m>(
    model: &'m MeshModel,
    workload: &Workload,
    shape: &ListenerShape,
    errors: &mut Vec<TranslateError>,
) -> BTreeMap<(Option<String>, u16), Vec<ServerRef<'m>>> {
    let mut by_port: BTreeMap<(Option<String>, u16), Vec<ServerRef<'m>>> = BTreeMap::new();
    for gw in model.gateways_for(workload) {
        for (i, server) in gw.object.spec.servers.iter().enumerate() {
            if server
                .default_endpoint
                .as_deref()
                .is_some_and(|e| !e.is_empty())
            {
                errors.push(gw_error(
                    gw,
                    format!("spec.servers[{i}].defaultEndpoint"),
                    "has no effect: Istio does not implement it either; the server is served \
                     as without it"
                        .into(),
                ));
            }
            let Some(port) = u16::try_from(server.port.number).ok().filter(|p| *p > 0) else {
                errors.push(gw_error(
                    gw,
                    format!("spec.servers[{i}].port.number"),
                    format!("{} is not a port number", server.port.number),
                ));
                continue;
            };
            // In a pod the proxy's own readiness and metrics listeners hold these.
            let agent_ports = [
                crate::interception::HEALTH_PORT,
                crate::interception::STATS_PORT,
            ];
            if *shape == ListenerShape::Interception && agent_ports.contains(&port) {
                errors.push(gw_error(
                    gw,
                    format!("spec.servers[{i}].port.number"),
                    format!(
                        "port {port} is the proxy's own (readiness 15021, metrics 15090); \
                         serve on another port"
                    ),
                ));
                continue;
            }
            let bind = server.bind.clone().filter(|b| !b.is_empty());
            if bind
                .as_deref()
                .is_some_and(|b| b.parse::<std::net::IpAddr>().is_err())
            {
                errors.push(gw_error(
                    gw,
                    format!("spec.servers[{i}].bind"),
                    "only an IP address is supported (not a Unix domain socket)".into(),
                ));
                continue;
            }
            match classify(gw, i, server) {
                Ok(kind) => by_port.entry((bind, port)).or_default().push(ServerRef {
                    gw,
                    index: i,
                    server,
                    kind,
                }),
                Err(e) => errors.push(*e),
            }
        }
    }
    by_port
}

/// The filter chains of one TLS listener on `port`: SNI chains of the
/// PASSTHROUGH servers, then one chain per terminating server (its routes and
/// secrets go to `out`).
#[allow(clippy::too_many_arguments)]
fn tls_chains(
    model: &MeshModel,
    scope: &OutboundScope,
    workload: &Workload,
    keep: &[ServerRef<'_>],
    port: u16,
    security: &InboundSecurity,
    sds: &SdsSource,
    out: &mut GatewayOutput,
) -> Vec<FilterChain> {
    let mut chains = Vec::new();
    let mut taken = TakenNames::default();
    let mut used_names: BTreeSet<String> = BTreeSet::new();
    for s in keep {
        if let Kind::Passthrough = s.kind {
            chains.extend(passthrough_chains(
                model,
                scope,
                workload,
                s,
                port,
                &security.tcp_filters,
                &mut taken,
                &mut out.errors,
            ));
            continue;
        }
        let Kind::Terminated { termination, http } = &s.kind else {
            continue;
        };
        let mut server_names: Vec<String> = s
            .server
            .hosts
            .iter()
            .map(|h| server_host(h, &s.gw.namespace).1)
            .filter(|h| h != "*")
            .collect();
        server_names.sort();
        server_names.dedup();
        if s.server
            .hosts
            .iter()
            .any(|h| server_host(h, &s.gw.namespace).1 == "*")
        {
            server_names.clear();
        }
        // A TLS server carries its connections by the first `tcp` route
        // bound to it; without one it has nothing to serve.
        let tcp = if *http {
            None
        } else {
            let Some(chain) = tcp_chain(
                model,
                scope,
                workload,
                std::slice::from_ref(s),
                port,
                &security.tcp_filters,
                &mut out.errors,
            ) else {
                continue;
            };
            Some(chain)
        };
        // Envoy refuses two chains that could match the same SNI.
        if !taken.take(&server_names) {
            out.errors.push(gw_error(
                s.gw,
                format!("spec.servers[{}].hosts", s.index),
                format!("another TLS server on port {port} already serves these hosts"),
            ));
            continue;
        }
        let port_name = s
            .server
            .port
            .name
            .clone()
            .unwrap_or_else(|| s.index.to_string());
        let scheme = if *http { "https" } else { "tls" };
        let mut chain_name = format!(
            "{scheme}.{port}.{port_name}.{}.{}",
            s.gw.name, s.gw.namespace
        );
        // Port names should be unique in a Gateway; keep chain names unique anyway.
        if !used_names.insert(chain_name.clone()) {
            chain_name = format!("{chain_name}.{}", s.index);
            used_names.insert(chain_name.clone());
        }
        let settings = s.server.tls.clone().unwrap_or_default();
        let (tls, secrets) = server_tls(termination, &settings, &workload.namespace, sds, *http);
        out.secrets.extend(secrets);
        let filters = match tcp {
            Some(chain) => chain.filters,
            None => {
                let rc = route_config(
                    model,
                    scope,
                    workload,
                    &chain_name,
                    port,
                    std::slice::from_ref(s),
                    &mut out.errors,
                );
                out.routes
                    .push(Arc::new(PackedRouteConfiguration::new(&rc)));
                vec![gateway_hcm(
                    &chain_name,
                    &chain_name,
                    &security.http_filters,
                )]
            }
        };
        chains.push(FilterChain {
            name: chain_name,
            filter_chain_match: (!server_names.is_empty()).then(|| FilterChainMatch {
                server_names,
                ..Default::default()
            }),
            filters,
            transport_socket: Some(downstream_transport_socket(&tls)),
            ..Default::default()
        });
    }
    chains
}

/// The SNI names the filter chains of one TLS listener match so far: Envoy
/// refuses two chains that could match the same name.
#[derive(Default)]
struct TakenNames {
    names: BTreeSet<String>,
    /// A chain without names (any SNI, or none) exists.
    any: bool,
}

impl TakenNames {
    /// Takes `names` (empty: any SNI) for one chain; `false`, taking nothing,
    /// when another chain has one of them.
    fn take(&mut self, names: &[String]) -> bool {
        let free = if names.is_empty() {
            !self.any
        } else {
            names.iter().all(|n| !self.names.contains(n))
        };
        if free {
            self.any |= names.is_empty();
            self.names.extend(names.iter().cloned());
        }
        free
    }
}

/// The VirtualServices bound to Gateway `gw` that its proxy `workload` may
/// serve: those exported to the proxy's namespace, as for sidecars.
fn bound_virtual_services<'m>(
    model: &'m MeshModel,
    gw: &Stored<Gateway>,
    workload: &'m Workload,
) -> impl Iterator<Item = &'m Stored<VirtualService>> {
    model
        .virtual_services_for_gateway(&gw.namespace, &gw.name)
        .into_iter()
        .filter(|vs| {
            vs.namespace == workload.namespace || vs.export_to.visible_from(&workload.namespace)
        })
}

/// The filter chains of PASSTHROUGH server `s`: one per `tls` route match of
/// the VirtualServices bound to it, selected by SNI (the names both the match
/// and the server admit), that proxies the connection as it came, still
/// encrypted, to the route's destinations after the gateway's TCP policies.
/// A name an earlier chain took stays with it.
#[allow(clippy::too_many_arguments)]
fn passthrough_chains(
    model: &MeshModel,
    scope: &OutboundScope,
    workload: &Workload,
    s: &ServerRef<'_>,
    port: u16,
    tcp_filters: &[Filter],
    taken: &mut TakenNames,
    errors: &mut Vec<TranslateError>,
) -> Vec<FilterChain> {
    let mut chains = Vec::new();
    let client = Client {
        labels: &workload.labels,
        namespace: &workload.namespace,
        gateway: Some((&s.gw.namespace, &s.gw.name)),
    };
    for vs in bound_virtual_services(model, s.gw, workload) {
        let domains = served(model, s.gw, s.server, vs);
        if domains.is_empty() {
            continue;
        }
        let resolve = |d: &api::Destination| gateway_destination(model, scope, &vs.namespace, d);
        for route in tls_routes(vs, &client, port, None, &resolve, errors) {
            let mut names: Vec<String> = route
                .sni_hosts
                .iter()
                .flat_map(|sni| domains.iter().filter_map(|(_, d)| intersect(d, sni)))
                .filter(|n| !taken.names.contains(n))
                .collect();
            names.sort();
            names.dedup();
            if names.is_empty() {
                continue;
            }
            // `*` matches any SNI: the chain without names.
            if names.iter().any(|n| n == "*") {
                names.clear();
            }
            if !taken.take(&names) {
                continue;
            }
            let name = format!(
                "passthrough.{port}.{}.{}.{}",
                vs.name,
                vs.namespace,
                chains.len()
            );
            let stat_prefix = &route.destinations[0].0;
            chains.push(FilterChain {
                name,
                filter_chain_match: (!names.is_empty()).then(|| FilterChainMatch {
                    server_names: names,
                    ..Default::default()
                }),
                filters: tcp_filters
                    .iter()
                    .cloned()
                    .chain([scope.tcp_proxy_to(stat_prefix, &route.destinations)])
                    .collect(),
                ..Default::default()
            });
        }
    }
    chains
}

/// The filter chain of a TCP port: the first `tcp` route that applies to it
/// among the VirtualServices bound to its servers (in their order), after the
/// gateway's TCP policies; none without one. Connections carry no host name,
/// so one route serves the whole port.
fn tcp_chain(
    model: &MeshModel,
    scope: &OutboundScope,
    workload: &Workload,
    servers: &[ServerRef<'_>],
    port: u16,
    tcp_filters: &[Filter],
    errors: &mut Vec<TranslateError>,
) -> Option<FilterChain> {
    for s in servers {
        let client = Client {
            labels: &workload.labels,
            namespace: &workload.namespace,
            gateway: Some((&s.gw.namespace, &s.gw.name)),
        };
        for vs in bound_virtual_services(model, s.gw, workload) {
            if served(model, s.gw, s.server, vs).is_empty() {
                continue;
            }
            let resolve =
                |d: &api::Destination| gateway_destination(model, scope, &vs.namespace, d);
            if let Some(destinations) = tcp_route(vs, &client, port, None, &resolve, errors) {
                let stat_prefix = &destinations[0].0;
                return Some(FilterChain {
                    name: format!("tcp.{port}.{}.{}", vs.name, vs.namespace),
                    filters: (tcp_filters.iter().cloned())
                        .chain([scope.tcp_proxy_to(stat_prefix, &destinations)])
                        .collect(),
                    ..Default::default()
                });
            }
        }
    }
    None
}

/// A served domain: the owning VirtualService (namespace, name), its rules, and
/// whether the server redirects to https.
type DomainRoutes = ((String, String), Vec<HttpRule>, bool);

/// One route configuration for `servers` (all on `port`): a virtual host per
/// served domain, the oldest VirtualService winning a domain.
fn route_config(
    model: &MeshModel,
    scope: &OutboundScope,
    workload: &Workload,
    name: &str,
    port: u16,
    servers: &[ServerRef<'_>],
    errors: &mut Vec<TranslateError>,
) -> RouteConfiguration {
    // Requests reach the routes over TLS the gateway terminates (HTTPS servers).
    let tls = (servers.iter()).any(|s| matches!(s.kind, Kind::Terminated { .. }));
    // domain -> (owner VS key, rules, https redirect)
    let mut hosts: BTreeMap<String, DomainRoutes> = BTreeMap::new();
    for s in servers {
        let redirect = matches!(
            s.kind,
            Kind::Plain {
                https_redirect: true
            }
        );
        let mut bound = false;
        for vs in bound_virtual_services(model, s.gw, workload) {
            let domains = served(model, s.gw, s.server, vs);
            if domains.is_empty() {
                continue;
            }
            bound = true;
            let key = (vs.namespace.clone(), vs.name.clone());
            let client = Client {
                labels: &workload.labels,
                namespace: &workload.namespace,
                gateway: Some((&s.gw.namespace, &s.gw.name)),
            };
            let rules = gateway_rules(model, scope, vs, &client, errors);
            for (j, d) in domains {
                match hosts.get(&d) {
                    Some((owner, _, _)) if owner != &key => errors.push(error(
                        vs,
                        format!("spec.hosts[{j}]"),
                        ErrorCode::ConflictingHost,
                        format!(
                            "host {d} on Gateway {}/{} is already claimed by VirtualService {}/{}",
                            s.gw.namespace, s.gw.name, owner.0, owner.1
                        ),
                    )),
                    Some(_) => {}
                    None => {
                        hosts.insert(d, (key.clone(), rules.clone(), redirect));
                    }
                }
            }
        }
        // An https redirect needs no VirtualService: every served host is redirected.
        if redirect && !bound {
            for h in &s.server.hosts {
                let d = server_host(h, &s.gw.namespace).1;
                hosts
                    .entry(d)
                    .or_insert_with(|| ((String::new(), String::new()), Vec::new(), true));
            }
        }
    }
    let virtual_hosts = hosts
        .into_iter()
        .map(|(domain, (_, rules, redirect))| VirtualHost {
            name: format!("{domain}:{port}"),
            domains: vec![domain],
            routes: rules
                .iter()
                .flat_map(|r| routes(r, Some(port), tls))
                .collect(),
            require_tls: if redirect {
                TlsRequirementType::All as i32
            } else {
                TlsRequirementType::None as i32
            },
            ..Default::default()
        })
        .collect();
    RouteConfiguration {
        name: name.to_string(),
        virtual_hosts,
        validate_clusters: Some(BoolValue { value: false }),
        ..Default::default()
    }
}

/// The `http[]` rules of gateway-bound VirtualService `vs` served to `client`,
/// destinations resolved in its namespace against the gateway's outbound view;
/// a route none of whose matches applies to the client is left out.
fn gateway_rules(
    model: &MeshModel,
    scope: &OutboundScope,
    vs: &Stored<VirtualService>,
    client: &Client<'_>,
    errors: &mut Vec<TranslateError>,
) -> Vec<HttpRule> {
    let mut out = Vec::new();
    for served in served_routes(model, vs, errors) {
        let (r, owner) = (served.route.as_ref(), served.owner);
        // Short names resolve in the namespace of the VirtualService that
        // wrote the rule (a delegate's own, for its rules).
        let resolve = |d: &api::Destination| gateway_destination(model, scope, &owner.namespace, d);
        let object = (owner.namespace.as_str(), owner.name.as_str());
        if let Some(rule) = http_rule(r, served.index, object, &resolve, errors)
            && let Some(rule) = client.narrow(r, rule, &vs.namespace)
        {
            out.push(rule);
        }
    }
    out
}

/// Resolves a destination written in a VirtualService of `vs_namespace`
/// against the gateway's outbound view: (cluster, consistent-hash key).
fn gateway_destination(
    model: &MeshModel,
    scope: &OutboundScope,
    vs_namespace: &str,
    d: &api::Destination,
) -> Result<(String, Option<HashKey>), (ErrorCode, String)> {
    let target = model
        .resolve_host(&d.host, vs_namespace)
        .filter(|t| scope.services.iter().any(|s| s.hostname == t.hostname))
        .ok_or_else(|| {
            (
                ErrorCode::UnknownDestination,
                format!("host {} matches no service visible to the gateway", d.host),
            )
        })?;
    let only_port = match target.ports.as_slice() {
        [only] => Some(only.port),
        _ => None,
    };
    destination_cluster(target, d, only_port, &scope.known_subsets, &scope.hash_keys)
}
