//! What every sidecar of one namespace sees outbound: clusters, endpoints and the
//! HTTP and TCP routes per host. Computed once per namespace and shared (`Arc`);
//! where matches name their clients by `sourceLabels`, or DestinationRules select
//! them by `workloadSelector`, once per set of those the sidecar's labels satisfy.
use crate::locality::ClientLocality;
use std::borrow::Cow;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, OnceLock};

use envoy_types::pb::envoy::config::cluster::v3::Cluster;
use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::config::route::v3::{Route, RouteConfiguration, VirtualHost};
use trellis_api::networking as api;
use trellis_api::networking::{OutboundTrafficPolicyMode, Sidecar};
use trellis_model::{
    MeshModel, MeshService, OutboundPolicy, Protocol, Resolution, ServicePort, Stored,
};

use crate::delegate::served_routes;
use crate::destination_rule::credential_names;
use crate::encode::PackedRouteConfiguration;
use crate::http_rule::HttpRule;
use crate::listener::weighted_tcp_proxy;
use crate::names;
use crate::policy::{HashKey, TcpProxyPolicy};
use crate::route::routes;
use crate::security::sds::SdsSource;
use crate::shared::Shared;
use crate::types::{ErrorCode, ProxyKind, SecretRef, TranslateError};
use crate::virtual_service::{Client, SniRoute, TcpDestinations, http_rule, tcp_route, tls_routes};

type Labels = std::collections::BTreeMap<String, String>;

/// The shared outbound view of one namespace.
#[derive(Debug, Clone, Default)]
pub struct OutboundScope {
    /// Sorted by name, as a proxy's [`crate::ResourceList`] shares them.
    pub clusters: Arc<[Arc<Cluster>]>,
    pub endpoints: Arc<[Arc<ClusterLoadAssignment>]>,
    /// Per (service FQDN, port) that is not HTTP: where its VirtualService's
    /// `tcp` route sends connections (absent: to the port's default cluster).
    pub tcp_routes: BTreeMap<(String, u16), TcpDestinations>,
    /// Per (service FQDN, port) with protocol TLS or HTTPS: its
    /// VirtualService's `tls` routes for these sidecars, in order (an SNI
    /// name goes to the first route that names it).
    pub tls_routes: BTreeMap<(String, u16), Vec<SniRoute>>,
    /// The HTTP proxy route configuration (explicit shape).
    pub http_proxy_routes: Arc<PackedRouteConfiguration>,
    /// Services visible from the namespace, by host.
    pub services: Vec<MeshService>,
    pub errors: Vec<TranslateError>,
    /// (host, subset) pairs some DestinationRule defines.
    pub known_subsets: BTreeSet<(String, String)>,
    /// Consistent-hash header per cluster name.
    pub hash_keys: BTreeMap<String, HashKey>,
    /// Per cluster name, what its DestinationRule sets on TCP proxies to it
    /// (absent: nothing).
    pub tcp_proxy_policies: BTreeMap<String, TcpProxyPolicy>,
    /// What happens to hosts outside the registry (MeshConfig, or the Sidecar resource).
    pub outbound_policy: OutboundPolicy,
    /// Under ALLOW_ANY, the cluster traffic to hosts outside the registry goes
    /// to: PassthroughCluster, or the Sidecar's `egressProxy`.
    pub allow_any_cluster: String,
    /// Interception shape: one route configuration per outbound HTTP port (named by port).
    pub port_routes: Vec<Arc<PackedRouteConfiguration>>,
    /// The `credentialName` Secrets the clusters reference (origination).
    pub secrets: Vec<SecretRef>,
    /// Interception shape: the outbound listeners, built for the first sidecar.
    interception_listeners: OnceLock<Arc<[Arc<Listener>]>>,
}

impl OutboundScope {
    /// Interception shape: the outbound listeners of every sidecar that sees this scope,
    /// sorted by name, with MeshConfig's access log `log`. Built once and shared: they
    /// depend on the scope alone, and a mesh's scope can have a listener per service.
    pub(crate) fn interception_listeners(
        &self,
        log: Option<&trellis_model::AccessLog>,
        shared: &mut Shared<'_>,
    ) -> Arc<[Arc<Listener>]> {
        let listeners = self.interception_listeners.get_or_init(|| {
            let mut listeners = crate::interception::outbound_listeners(self);
            if let Some(log) = log {
                crate::access_log::add_access_logs(&mut listeners, log);
            }
            listeners.into_iter().map(|l| shared.listener(l)).collect()
        });
        listeners.clone()
    }

    /// The TCP proxy for connections to `port` of `host` (named in stats by the
    /// port's default cluster), with the policy of its first destination.
    pub fn tcp_proxy(&self, host: &str, port: u16) -> Filter {
        let stat_prefix = names::outbound_cluster(port, None, host);
        self.tcp_proxy_to(
            &stat_prefix,
            &tcp_destinations(&self.tcp_routes, host, port),
        )
    }

    /// The filter chains for connections to `port` of `host`: one per SNI
    /// name its `tls` routes take that no chain in `taken` has, then
    /// `default` (matched by `default_match`) for the rest, unless its names
    /// are all taken. Each proxies to its destinations; an SNI chain needs
    /// the TLS inspector.
    pub fn tcp_chains(
        &self,
        host: &str,
        port: u16,
        default_match: Option<FilterChainMatch>,
        taken: &mut BTreeSet<String>,
    ) -> Vec<FilterChain> {
        let mut chains = Vec::new();
        let key = (host.to_string(), port);
        for route in self.tls_routes.get(&key).into_iter().flatten() {
            let names: Vec<String> = (route.sni_hosts.iter())
                .filter(|n| n.as_str() != "*" && taken.insert(n.to_string()))
                .cloned()
                .collect();
            if names.is_empty() {
                continue;
            }
            let stat_prefix = &route.destinations[0].0;
            chains.push(FilterChain {
                name: format!(
                    "{}.sni.{}",
                    names::outbound_cluster(port, None, host),
                    chains.len()
                ),
                filter_chain_match: Some(FilterChainMatch {
                    server_names: names,
                    ..Default::default()
                }),
                filters: vec![self.tcp_proxy_to(stat_prefix, &route.destinations)],
                ..Default::default()
            });
        }
        let default_match = match default_match {
            Some(mut m) if !m.server_names.is_empty() => {
                m.server_names.retain(|n| taken.insert(n.clone()));
                if m.server_names.is_empty() {
                    return chains;
                }
                Some(m)
            }
            other => other,
        };
        chains.push(FilterChain {
            name: names::outbound_cluster(port, None, host),
            filter_chain_match: default_match,
            filters: vec![self.tcp_proxy(host, port)],
            ..Default::default()
        });
        chains
    }

    /// A TCP proxy to `destinations` (cluster, weight), with the policy of the first.
    pub fn tcp_proxy_to(&self, stat_prefix: &str, destinations: &[(String, u32)]) -> Filter {
        let policy = first_policy(&self.tcp_proxy_policies, destinations);
        weighted_tcp_proxy(stat_prefix, destinations, &policy)
    }
}

/// What the DestinationRule of the first of `destinations` sets on a TCP proxy.
fn first_policy(
    policies: &BTreeMap<String, TcpProxyPolicy>,
    destinations: &[(String, u32)],
) -> TcpProxyPolicy {
    destinations
        .first()
        .and_then(|(cluster, _)| policies.get(cluster))
        .cloned()
        .unwrap_or_default()
}

/// Where connections to `port` of `host` go: its `tcp` route's destinations,
/// else the port's default cluster.
fn tcp_destinations<'a>(
    tcp_routes: &'a BTreeMap<(String, u16), TcpDestinations>,
    host: &str,
    port: u16,
) -> Cow<'a, [(String, u32)]> {
    match tcp_routes.get(&(host.to_string(), port)) {
        Some(destinations) => Cow::Borrowed(destinations),
        None => Cow::Owned(vec![(names::outbound_cluster(port, None, host), 100)]),
    }
}

/// Istio's catch-all virtual hosts for hosts outside the registry.
pub const ALLOW_ANY_VHOST: &str = "allow_any";
pub const BLOCK_ALL_VHOST: &str = "block_all";

/// The ports of `service` a Sidecar resource's egress listeners admit: every
/// port (`None`) for a listener without a port whose hosts (`namespace/dnsName`,
/// with `*`, `.` and `~` for the namespace, `*` or `*.suffix` for the name)
/// name the service, else the ports of the listeners that name it, which may
/// be none. Without egress listeners every port.
pub fn egress_ports(sidecar: &Stored<Sidecar>, service: &MeshService) -> Option<BTreeSet<u16>> {
    let egress = &sidecar.object.spec.egress;
    if egress.is_empty() {
        return None;
    }
    let names = |h: &String| {
        let (ns, dns) = h.split_once('/').unwrap_or(("*", h.as_str()));
        let ns_ok = match ns {
            "*" => true,
            "~" => false,
            "." => service.namespace == sidecar.namespace,
            other => service.namespace == other,
        };
        ns_ok && trellis_model::host_matches(&dns.to_ascii_lowercase(), &service.hostname)
    };
    let mut ports = BTreeSet::new();
    for listener in egress.iter().filter(|e| e.hosts.iter().any(names)) {
        match &listener.port {
            None => return None,
            Some(p) => ports.extend(u16::try_from(p.number).ok()),
        }
    }
    Some(ports)
}

/// The outbound policy in force: the Sidecar resource's, else the mesh's.
pub fn effective_outbound_policy(
    model: &MeshModel,
    sidecar: Option<&Stored<Sidecar>>,
) -> OutboundPolicy {
    match sidecar
        .and_then(|s| s.object.spec.outbound_traffic_policy.as_ref())
        .and_then(|p| p.mode)
    {
        Some(OutboundTrafficPolicyMode::RegistryOnly) => OutboundPolicy::RegistryOnly,
        Some(OutboundTrafficPolicyMode::AllowAny) => OutboundPolicy::AllowAny,
        None => model.settings().outbound_policy,
    }
}

/// Builds the outbound view of `namespace`, for a sidecar without labels.
pub fn outbound_scope(model: &MeshModel, namespace: &str, sds: &SdsSource) -> OutboundScope {
    outbound_scope_for(model, namespace, sds, None)
}

/// The outbound view of `namespace` narrowed by a Sidecar resource (egress hosts,
/// outbound traffic policy), for a sidecar without labels.
pub fn outbound_scope_for(
    model: &MeshModel,
    namespace: &str,
    sds: &SdsSource,
    sidecar: Option<&Stored<Sidecar>>,
) -> OutboundScope {
    let labels = BTreeMap::new();
    let client = Client {
        labels: &labels,
        namespace,
        gateway: None,
    };
    let shared = &mut Shared::new(model);
    let locality = ClientLocality::default();
    outbound_scope_shared(
        model,
        &client,
        ProxyKind::Sidecar,
        sds,
        sidecar,
        shared,
        &locality,
    )
}

/// [`outbound_scope_for`] for the sidecars that are `client`, with clusters and
/// endpoints taken from (and added to) `shared`, so namespaces that see the same
/// DestinationRule for a host share the same `Arc`s.
pub(crate) fn outbound_scope_shared(
    model: &MeshModel,
    client: &Client<'_>,
    proxy: ProxyKind,
    sds: &SdsSource,
    sidecar: Option<&Stored<Sidecar>>,
    shared: &mut Shared<'_>,
    locality: &ClientLocality,
) -> OutboundScope {
    let namespace = client.namespace;
    let mut scope = OutboundScope {
        outbound_policy: effective_outbound_policy(model, sidecar),
        allow_any_cluster: names::PASSTHROUGH_CLUSTER.into(),
        ..Default::default()
    };
    // HTTP rules per (service FQDN, port), in order: what the route
    // configurations are built from (not kept: a scope's take megabytes).
    let mut http_rules: BTreeMap<(String, u16), Vec<HttpRule>> = BTreeMap::new();
    let visible = (model.registry().services())
        .filter(|s| s.export_to.visible_from(namespace) || s.namespace == namespace);
    // A Sidecar resource's egress listeners with a port admit a service on
    // that port only: such services are seen with just those ports.
    let mut narrowed: Vec<MeshService> = Vec::new();
    let mut whole: Vec<&MeshService> = Vec::new();
    for s in visible {
        match sidecar.and_then(|sc| egress_ports(sc, s)) {
            None => whole.push(s),
            Some(ports) if !ports.is_empty() => {
                let mut s = s.clone();
                s.ports.retain(|p| ports.contains(&p.port));
                if !s.ports.is_empty() {
                    narrowed.push(s);
                }
            }
            Some(_) => {}
        }
    }
    let mut services: Vec<&MeshService> = whole.into_iter().chain(&narrowed).collect();
    if !narrowed.is_empty() {
        // The registry's order, by host.
        services.sort_by(|a, b| a.hostname.cmp(&b.hostname));
    }
    let mut clusters: BTreeMap<String, Arc<Cluster>> = BTreeMap::new();
    let mut endpoints: BTreeMap<String, Arc<ClusterLoadAssignment>> = BTreeMap::new();
    let mut known_subsets: BTreeSet<(String, String)> = BTreeSet::new();
    let mut hash_keys: BTreeMap<String, HashKey> = BTreeMap::new();
    let mut tcp_proxy_policies: BTreeMap<String, TcpProxyPolicy> = BTreeMap::new();
    let mut secrets: BTreeSet<SecretRef> = BTreeSet::new();
    for service in &services {
        let dr = shared
            .index
            .destination_rule_for(&service.hostname, namespace, client.labels);
        // As in Istio, a rule's credentialName applies at gateways, and at
        // sidecars only through a workloadSelector (the Secret is then in the
        // client's namespace too).
        let credentials_in = dr
            .filter(|dr| proxy == ProxyKind::Gateway || dr.object.spec.workload_selector.is_some())
            .filter(|dr| !credential_names(&dr.object).is_empty())
            .map(|_| namespace);
        for port in &service.ports {
            let mut variants: Vec<(Option<&str>, Option<&Labels>)> = vec![(None, None)];
            if let Some(dr) = dr {
                for s in &dr.object.spec.subsets {
                    variants.push((Some(s.name.as_str()), Some(&s.labels)));
                    known_subsets.insert((service.hostname.clone(), s.name.clone()));
                }
            }
            for (subset, labels) in variants {
                let built = shared.cluster(
                    model,
                    sds,
                    service,
                    port,
                    subset,
                    labels,
                    dr,
                    credentials_in,
                    locality,
                );
                secrets.extend(built.secrets.iter().cloned());
                // Report each DestinationRule problem once, from its default cluster.
                if subset.is_none() && port == &service.ports[0] {
                    scope.errors.extend(built.policy_errors.iter().cloned());
                }
                if let (Some(dr), Some(name)) = (dr, subset)
                    && service.resolution != Resolution::Passthrough
                    && built.empty
                    && port == &service.ports[0]
                {
                    scope.errors.push(TranslateError {
                        kind: "DestinationRule".into(),
                        namespace: dr.namespace.clone(),
                        name: dr.name.clone(),
                        path: format!("spec.subsets[{name}]"),
                        message: format!(
                            "subset {name} of {} selects no endpoints",
                            service.hostname
                        ),
                        code: ErrorCode::EmptySubset,
                    });
                }
                let cluster_name = &built.cluster.name;
                if let Some(h) = &built.hash_key {
                    hash_keys.insert(cluster_name.clone(), h.clone());
                }
                if built.tcp_proxy != TcpProxyPolicy::default() {
                    tcp_proxy_policies.insert(cluster_name.clone(), built.tcp_proxy.clone());
                }
                clusters.insert(cluster_name.clone(), built.cluster.clone());
                if let Some(e) = &built.endpoints {
                    endpoints.insert(cluster_name.clone(), e.clone());
                }
            }
        }
    }
    let global = shared.global_errors.get_or_insert_with(|| {
        let mut errors = unknown_dr_hosts(model);
        errors.extend(crate::delegate::unused_delegates(model));
        errors.extend(unused_tunnels(model));
        errors.extend(crate::gateway::analyze_gateway_bindings(model));
        errors
    });
    scope.errors.extend(global.iter().cloned());
    // HTTP rules and TCP routes: the first VirtualService claiming a host wins;
    // later ones are conflicts.
    for service in &services {
        let vss = shared
            .index
            .virtual_services_for(&service.hostname, namespace);
        for extra in vss.iter().skip(1) {
            scope.errors.push(TranslateError {
                kind: "VirtualService".into(),
                namespace: extra.namespace.clone(),
                name: extra.name.clone(),
                path: "spec.hosts".into(),
                message: format!(
                    "host {} is already claimed by VirtualService {}/{}; this one is ignored for it",
                    service.hostname, vss[0].namespace, vss[0].name
                ),
                code: ErrorCode::ConflictingHost,
            });
        }
        let vs = vss.first().copied();
        // The same VirtualService is seen by every HTTP port: its errors are
        // reported from the first, and its delegations merged once.
        let first_http_port = service.ports.iter().find(|p| p.protocol.is_http());
        let served = match vs {
            Some(vs) if first_http_port.is_some() => served_routes(model, vs, &mut scope.errors),
            _ => Vec::new(),
        };
        for port in &service.ports {
            let key = (service.hostname.clone(), port.port);
            let default_cluster = names::outbound_cluster(port.port, None, &service.hostname);
            let default_rules = || {
                vec![HttpRule::default_to(
                    default_cluster.clone(),
                    hash_keys.get(&default_cluster).cloned(),
                )]
            };
            let Some(vs) = vs else {
                if port.protocol.is_http() {
                    http_rules.insert(key, default_rules());
                }
                continue;
            };
            // Short names resolve in the namespace of the VirtualService
            // that wrote the rule (a delegate's own, for its rules).
            let resolve_in = |namespace: &str, d: &api::Destination| {
                resolve_destination(
                    model,
                    namespace,
                    service,
                    port,
                    d,
                    &known_subsets,
                    &hash_keys,
                )
            };
            let resolve = |d: &api::Destination| resolve_in(&vs.namespace, d);
            if !port.protocol.is_http() {
                let address = service.address();
                let route = tcp_route(vs, client, port.port, address, &resolve, &mut scope.errors);
                if let Some(route) = route {
                    scope.tcp_routes.insert(key.clone(), route);
                }
                if matches!(port.protocol, Protocol::Tls | Protocol::Https) {
                    let routes =
                        tls_routes(vs, client, port.port, address, &resolve, &mut scope.errors);
                    if !routes.is_empty() {
                        scope.tls_routes.insert(key, routes);
                    }
                }
                continue;
            }
            // As Istio does: a VirtualService none of whose http routes applies
            // to these sidecars leaves its hosts to their default.
            let mut applies = vs.object.spec.http.is_empty();
            let mut rules = Vec::new();
            let mut errs = Vec::new();
            for served in &served {
                let (r, owner) = (served.route.as_ref(), served.owner);
                applies |= client.admits_route(r, &vs.namespace);
                let resolve = |d: &api::Destination| resolve_in(&owner.namespace, d);
                let object = (owner.namespace.as_str(), owner.name.as_str());
                if let Some(rule) = http_rule(r, served.index, object, &resolve, &mut errs)
                    && let Some(rule) = client.narrow(r, rule, &vs.namespace)
                {
                    rules.push(rule);
                }
            }
            if Some(port) == first_http_port {
                scope.errors.extend(errs);
            }
            let rules = if applies { rules } else { default_rules() };
            http_rules.insert(key, rules);
        }
    }
    // Each listener shape reads one of the two route forms; build only what is read.
    if let Some(sc) = sidecar
        && scope.outbound_policy == OutboundPolicy::AllowAny
    {
        let visible = |host: &str| (services.iter()).find(|s| s.hostname == host).copied();
        let (cluster, error) =
            egress_proxy_cluster(model, sc, &visible, &clusters, &known_subsets, &hash_keys);
        scope.allow_any_cluster = cluster;
        scope.errors.extend(error);
    }
    if shared.routes.http_proxy {
        scope.http_proxy_routes = Arc::new(PackedRouteConfiguration::new(&http_proxy_routes(
            model,
            namespace,
            &services,
            &http_rules,
            &scope.tcp_routes,
            &tcp_proxy_policies,
            (scope.outbound_policy, &scope.allow_any_cluster),
        )));
    }
    if shared.routes.per_port {
        scope.port_routes = port_routes(
            model,
            namespace,
            &services,
            &http_rules,
            scope.outbound_policy,
            &scope.allow_any_cluster,
        );
    }
    scope.known_subsets = known_subsets;
    scope.hash_keys = hash_keys;
    scope.tcp_proxy_policies = tcp_proxy_policies;
    scope.secrets = secrets.into_iter().collect();
    scope.clusters = clusters.into_values().collect();
    scope.endpoints = endpoints.into_values().collect();
    scope.services = services.into_iter().cloned().collect();
    scope.errors.sort();
    scope.errors.dedup();
    scope
}

/// The cluster of a Sidecar's `outboundTrafficPolicy.egressProxy`, as Istio
/// names it (`outbound|port|subset|host`, the host resolved in the Sidecar's
/// namespace as a VirtualService's would be), when it is one of this proxy's
/// clusters. Else BlackHoleCluster with the error: traffic meant for the
/// egress proxy is refused rather than sent to its original destination.
fn egress_proxy_cluster<'m>(
    model: &'m MeshModel,
    sc: &Stored<Sidecar>,
    visible: &dyn Fn(&str) -> Option<&'m MeshService>,
    clusters: &BTreeMap<String, Arc<Cluster>>,
    known_subsets: &BTreeSet<(String, String)>,
    hash_keys: &BTreeMap<String, HashKey>,
) -> (String, Option<TranslateError>) {
    let Some(proxy) =
        (sc.object.spec.outbound_traffic_policy.as_ref()).and_then(|p| p.egress_proxy.as_ref())
    else {
        return (names::PASSTHROUGH_CLUSTER.into(), None);
    };
    let path = "spec.outboundTrafficPolicy.egressProxy";
    let found = match model.resolve_host(&proxy.host, &sc.namespace) {
        None => Err((
            format!("{path}.host"),
            format!("host {} matches no service", proxy.host),
        )),
        Some(target) => match visible(&target.hostname) {
            None => Err((
                format!("{path}.host"),
                format!(
                    "service {} is not in this Sidecar's egress hosts",
                    target.hostname
                ),
            )),
            Some(target) => destination_cluster(target, proxy, None, known_subsets, hash_keys)
                .map(|(cluster, _)| cluster)
                .map_err(|(_, message)| (path.to_string(), message)),
        },
    };
    let (path, message) = match found {
        Ok(cluster) if clusters.contains_key(&cluster) => return (cluster, None),
        Ok(cluster) => (
            path.to_string(),
            format!("this proxy has no cluster {cluster}"),
        ),
        Err(e) => e,
    };
    let error = TranslateError {
        kind: "Sidecar".into(),
        namespace: sc.namespace.clone(),
        name: sc.name.clone(),
        path,
        message: format!("{message}; traffic to hosts outside the registry is refused"),
        code: ErrorCode::UnknownDestination,
    };
    (names::BLACKHOLE_CLUSTER.into(), Some(error))
}

/// Resolves a route destination (as written in a VirtualService of `vs_namespace`)
/// to its cluster name and consistent-hash header.
pub fn resolve_destination(
    model: &MeshModel,
    vs_namespace: &str,
    from: &MeshService,
    from_port: &ServicePort,
    d: &api::Destination,
    known_subsets: &BTreeSet<(String, String)>,
    hash_keys: &BTreeMap<String, HashKey>,
) -> Result<(String, Option<HashKey>), (ErrorCode, String)> {
    let Some(target) = model.resolve_host(&d.host, vs_namespace) else {
        return Err((
            ErrorCode::UnknownDestination,
            format!("host {} matches no service", d.host),
        ));
    };
    // Without a port: the port the request came to when the destination is
    // the host itself, else the service's only port, else the same number.
    let default_port = if target.hostname == from.hostname {
        Some(from_port.port)
    } else {
        match target.ports.as_slice() {
            [only] => Some(only.port),
            _ => target.port(from_port.port).map(|p| p.port),
        }
    };
    destination_cluster(target, d, default_port, known_subsets, hash_keys)
}

/// The cluster of destination `d` on `target` at `d.port`, else
/// `default_port`, and its consistent-hash key; or why there is none (an
/// unknown port, a subset no DestinationRule defines).
pub(crate) fn destination_cluster(
    target: &MeshService,
    d: &api::Destination,
    default_port: Option<u16>,
    known_subsets: &BTreeSet<(String, String)>,
    hash_keys: &BTreeMap<String, HashKey>,
) -> Result<(String, Option<HashKey>), (ErrorCode, String)> {
    let port = match d.port.as_ref().and_then(|p| p.number) {
        Some(n) => u16::try_from(n)
            .ok()
            .filter(|n| target.port(*n).is_some())
            .ok_or_else(|| {
                (
                    ErrorCode::UnknownDestination,
                    format!("service {} has no port {n}", target.hostname),
                )
            })?,
        None => default_port.ok_or_else(|| {
            (
                ErrorCode::UnknownDestination,
                format!(
                    "service {} has several ports: set destination.port",
                    target.hostname
                ),
            )
        })?,
    };
    if let Some(subset) = &d.subset
        && !known_subsets.contains(&(target.hostname.clone(), subset.clone()))
    {
        return Err((
            ErrorCode::UnknownSubset,
            format!(
                "subset {subset} of {} is not defined by any DestinationRule",
                target.hostname
            ),
        ));
    }
    let cluster = names::outbound_cluster(port, d.subset.as_deref(), &target.hostname);
    let hash = hash_keys.get(&cluster).cloned();
    Ok((cluster, hash))
}

fn unknown_dr_hosts(model: &MeshModel) -> Vec<TranslateError> {
    model
        .destination_rules()
        .filter(|dr| {
            let h = &dr.object.spec.host;
            !h.starts_with('*') && model.resolve_host(h, &dr.namespace).is_none()
        })
        .map(|dr| TranslateError {
            kind: "DestinationRule".into(),
            namespace: dr.namespace.clone(),
            name: dr.name.clone(),
            path: "spec.host".into(),
            message: format!("host {} matches no service", dr.object.spec.host),
            code: ErrorCode::UnknownHost,
        })
        .collect()
}

/// DestinationRules whose `tunnel` no connection can take: as in Istio, a tunnel
/// carries TCP connections (`tcp` and `tls` routes), and every port of the host
/// is served as HTTP, a port without a declared protocol included (Istio would
/// sniff it; Trellis serves it as HTTP).
fn unused_tunnels(model: &MeshModel) -> Vec<TranslateError> {
    let mut errors = Vec::new();
    for dr in model.destination_rules() {
        let spec = &dr.object.spec;
        if spec.host.starts_with('*') {
            continue;
        }
        let Some(service) = model.resolve_host(&spec.host, &dr.namespace) else {
            continue;
        };
        if service.ports.is_empty() || !service.ports.iter().all(|p| p.protocol.is_http()) {
            continue;
        }
        let has_tunnel = |tp: &Option<trellis_api::networking::TrafficPolicy>| {
            tp.as_ref().is_some_and(|tp| tp.tunnel.is_some())
        };
        let paths = (has_tunnel(&spec.traffic_policy)
            .then(|| "spec.trafficPolicy.tunnel".to_string()))
        .into_iter()
        .chain(
            (spec.subsets.iter().enumerate())
                .filter(|(_, s)| has_tunnel(&s.traffic_policy))
                .map(|(i, _)| format!("spec.subsets[{i}].trafficPolicy.tunnel")),
        );
        let ports: Vec<String> = (service.ports.iter())
            .map(|p| format!("{} ({:?})", p.port, p.protocol))
            .collect();
        for path in paths {
            errors.push(TranslateError {
                kind: "DestinationRule".into(),
                namespace: dr.namespace.clone(),
                name: dr.name.clone(),
                path,
                message: format!(
                    "never used: every port of {} is served as HTTP ({}), and a tunnel \
                     carries TCP connections only (tcp and tls routes); declare a port's \
                     protocol as TCP or TLS (its name's prefix or appProtocol) to tunnel it",
                    service.hostname,
                    ports.join(", ")
                ),
                code: ErrorCode::UnusedTunnel,
            });
        }
    }
    errors
}

/// The names a client in `namespace` may use for `service` (without port).
pub fn host_aliases(model: &MeshModel, service: &MeshService, namespace: &str) -> Vec<String> {
    let mut out = vec![service.hostname.clone()];
    if service.origin == trellis_model::ServiceOrigin::Kubernetes {
        let short = &service.name;
        let ns = &service.namespace;
        out.push(format!("{short}.{ns}.svc"));
        out.push(format!("{short}.{ns}"));
        if ns == namespace {
            out.push(short.clone());
        }
        out.extend(service.address().map(str::to_string));
    }
    let _ = model;
    out
}

/// One route configuration for the explicit HTTP proxy: a virtual host per service
/// port with every alias `:port`; bare aliases go to port 80 or the lowest HTTP port.
/// `CONNECT alias:port` tunnels to the port's cluster (or its `tcp` route), as
/// a local TCP port would: the only route of a port that is not HTTP (TCP, TLS,
/// HTTPS), and the first of an HTTP port, for clients that tunnel whatever they
/// send through a proxy (gRPC does); requests inside a tunnel are not routed by
/// the port's rules.
fn http_proxy_routes(
    model: &MeshModel,
    namespace: &str,
    services: &[&MeshService],
    rules: &BTreeMap<(String, u16), Vec<HttpRule>>,
    tcp_routes: &BTreeMap<(String, u16), TcpDestinations>,
    tcp_proxy_policies: &BTreeMap<String, TcpProxyPolicy>,
    (policy, allow_any_cluster): (OutboundPolicy, &str),
) -> RouteConfiguration {
    let mut virtual_hosts = Vec::new();
    for service in services {
        let aliases = host_aliases(model, service, namespace);
        let http_ports: Vec<&ServicePort> = service
            .ports
            .iter()
            .filter(|p| p.protocol.is_http())
            .collect();
        let bare_port = http_ports
            .iter()
            .find(|p| p.port == 80)
            .or(http_ports.first())
            .map(|p| p.port);
        for port in &http_ports {
            let Some(port_rules) = rules.get(&(service.hostname.clone(), port.port)) else {
                continue;
            };
            let mut domains: Vec<String> = aliases
                .iter()
                .map(|a| format!("{a}:{}", port.port))
                .collect();
            if bare_port == Some(port.port) {
                domains.extend(aliases.iter().cloned());
            }
            let name = format!("{}:{}", service.hostname, port.port);
            // No rules (its VirtualService has no usable http route): closed to
            // tunnels as to requests.
            let tunnel = (!port_rules.is_empty())
                .then(|| connect_to_port(&name, &service.hostname, port.port));
            virtual_hosts.push(VirtualHost {
                domains,
                routes: tunnel
                    .into_iter()
                    .chain(
                        port_rules
                            .iter()
                            .flat_map(|r| routes(r, Some(port.port), false)),
                    )
                    .collect(),
                name,
                ..Default::default()
            });
        }
        for port in service.ports.iter().filter(|p| !p.protocol.is_http()) {
            let name = format!("{}:{}", service.hostname, port.port);
            let destinations = tcp_destinations(tcp_routes, &service.hostname, port.port);
            let policy = first_policy(tcp_proxy_policies, &destinations);
            virtual_hosts.push(VirtualHost {
                domains: aliases
                    .iter()
                    .map(|a| format!("{a}:{}", port.port))
                    .collect(),
                routes: vec![crate::forward_proxy::weighted_connect_route(
                    &name,
                    &destinations,
                    &policy,
                )],
                name,
                ..Default::default()
            });
        }
    }
    let mut catch_all = catch_all_vhost(policy, allow_any_cluster);
    if policy == OutboundPolicy::AllowAny {
        catch_all.routes.insert(
            0,
            crate::forward_proxy::connect_route("allow_any_connect", allow_any_cluster),
        );
    }
    virtual_hosts.push(catch_all);
    RouteConfiguration {
        name: names::OUTBOUND_HTTP_PROXY_ROUTE.into(),
        virtual_hosts: unique_domains(virtual_hosts),
        validate_clusters: Some(envoy_types::pb::google::protobuf::BoolValue { value: false }),
        ..Default::default()
    }
}

/// `CONNECT` to `host:port`: a tunnel to the port's default cluster.
fn connect_to_port(name: &str, host: &str, port: u16) -> Route {
    crate::forward_proxy::connect_route(name, &names::outbound_cluster(port, None, host))
}

/// The virtual host for hosts outside the registry: ALLOW_ANY forwards to
/// `allow_any_cluster` (the original destination, PassthroughCluster, or a
/// Sidecar's egress proxy), REGISTRY_ONLY answers 502 as Istio does.
pub fn catch_all_vhost(policy: OutboundPolicy, allow_any_cluster: &str) -> VirtualHost {
    use envoy_types::pb::envoy::config::route::v3::{
        DirectResponseAction, RouteAction, RouteMatch, route, route_action, route_match,
    };
    let r#match = Some(RouteMatch {
        path_specifier: Some(route_match::PathSpecifier::Prefix("/".into())),
        ..Default::default()
    });
    let (name, action) = match policy {
        OutboundPolicy::AllowAny => (
            ALLOW_ANY_VHOST,
            route::Action::Route(RouteAction {
                cluster_specifier: Some(route_action::ClusterSpecifier::Cluster(
                    allow_any_cluster.into(),
                )),
                // Passthrough keeps whatever the app expects: no timeout.
                timeout: Some(crate::cluster::duration(std::time::Duration::ZERO)),
                ..Default::default()
            }),
        ),
        OutboundPolicy::RegistryOnly => (
            BLOCK_ALL_VHOST,
            route::Action::DirectResponse(DirectResponseAction {
                status: 502,
                body: None,
                ..Default::default()
            }),
        ),
    };
    VirtualHost {
        name: name.into(),
        domains: vec!["*".into()],
        routes: vec![Route {
            name: name.into(),
            r#match,
            action: Some(action),
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Interception shape: a route configuration per outbound HTTP port, named by the
/// port as Istio does, with a virtual host per service on that port and the catch-all.
fn port_routes(
    model: &MeshModel,
    namespace: &str,
    services: &[&MeshService],
    rules: &BTreeMap<(String, u16), Vec<HttpRule>>,
    policy: OutboundPolicy,
    allow_any_cluster: &str,
) -> Vec<Arc<PackedRouteConfiguration>> {
    let mut by_port: BTreeMap<u16, Vec<VirtualHost>> = BTreeMap::new();
    for service in services {
        let aliases = host_aliases(model, service, namespace);
        for port in service.ports.iter().filter(|p| p.protocol.is_http()) {
            let Some(port_rules) = rules.get(&(service.hostname.clone(), port.port)) else {
                continue;
            };
            let mut domains: Vec<String> = aliases.clone();
            domains.extend(aliases.iter().map(|a| format!("{a}:{}", port.port)));
            by_port.entry(port.port).or_default().push(VirtualHost {
                name: format!("{}:{}", service.hostname, port.port),
                domains,
                routes: port_rules
                    .iter()
                    .flat_map(|r| routes(r, Some(port.port), false))
                    .collect(),
                ..Default::default()
            });
        }
    }
    by_port
        .into_iter()
        .map(|(port, mut virtual_hosts)| {
            virtual_hosts.push(catch_all_vhost(policy, allow_any_cluster));
            Arc::new(PackedRouteConfiguration::new(&RouteConfiguration {
                name: names::outbound_route(port),
                virtual_hosts: unique_domains(virtual_hosts),
                validate_clusters: Some(envoy_types::pb::google::protobuf::BoolValue {
                    value: false,
                }),
                ..Default::default()
            }))
        })
        .collect()
}

/// Envoy rejects a route configuration naming a domain twice. A domain that is some
/// virtual host's own host name (`<host>` or `<host>:<port>`, the vhost name) stays
/// with that host; any other collision (a short-name alias, a shared address) goes to
/// the first virtual host. Virtual hosts left without domains are dropped.
pub fn unique_domains(virtual_hosts: Vec<VirtualHost>) -> Vec<VirtualHost> {
    let own = |v: &VirtualHost, d: &str| {
        v.name == d || v.name.rsplit_once(':').is_some_and(|(h, _)| h == d)
    };
    let exact: BTreeSet<String> = virtual_hosts
        .iter()
        .flat_map(|v| v.domains.iter().filter(|d| own(v, d)).cloned())
        .collect();
    let mut seen = BTreeSet::new();
    virtual_hosts
        .into_iter()
        .filter_map(|mut v| {
            let mut domains = std::mem::take(&mut v.domains);
            domains.retain(|d| (own(&v, d) || !exact.contains(d)) && seen.insert(d.clone()));
            v.domains = domains;
            (!v.domains.is_empty()).then_some(v)
        })
        .collect()
}
