//! One proxy's resources: the shared outbound view of its namespace plus its own
//! inbound listeners and clusters.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, Listener,
};
use envoy_types::pb::envoy::extensions::filters::network::http_connection_manager::v3::HttpFilter;
use trellis_model::{MeshModel, MtlsMode, Protocol, Workload};

use crate::cluster::{blackhole_cluster, inbound_cluster};
use crate::listener::{
    ClientCertHeader, Routes, connection_manager, forward_client_cert, hcm_filter, listener,
    tcp_proxy,
};
use crate::locality::{ClientLocality, failover_priority_keys};
use crate::names;
use crate::outbound::{OutboundScope, outbound_scope_shared};
use crate::resource_list::ResourceList;
use crate::security::peer_authn::{
    EffectiveMtls, MtlsMode as PeerMode, PeerAuthnPolicy, WorkloadRef, effective_mode,
    inbound_filter_chains, tls_inspector,
};
use crate::security::tls::downstream_mtls;
use crate::shared::{RouteForms, Shared};
use crate::types::{
    ErrorCode, ListenerShape, Proxy, ProxyKind, ProxyResources, SecretRef, TranslateError,
    TranslateOptions,
};
use crate::virtual_service::Client;

/// Translates many proxies against one model, computing each namespace's outbound
/// view once.
pub struct Translator<'m> {
    model: &'m MeshModel,
    options: TranslateOptions,
    /// By (namespace, the Sidecar resource in force, client selectors matched).
    scopes: BTreeMap<ScopeKey, Arc<OutboundScope>>,
    /// The distinct `sourceLabels` of every VirtualService `http`, `tcp` and
    /// `tls` match, and the DestinationRules' `workloadSelector`s: the proxies of a
    /// namespace that satisfy the same ones see the same routes and rules.
    client_selectors: Vec<BTreeMap<String, String>>,
    /// Clusters and endpoints shared by the scopes of all namespaces.
    shared: Shared<'m>,
    /// The model's PeerAuthentications and mesh default, read once.
    peer_policies: Vec<PeerAuthnPolicy>,
    /// The labels some `failoverPriority` names (a proxy's endpoints depend on them).
    priority_keys: BTreeSet<String>,
}

/// A client namespace, the Sidecar resource (namespace, name) in force, if
/// any, which of [`Translator::client_selectors`] the client's labels satisfy,
/// the kind of proxy (DestinationRules' `credentialName`s apply at gateways),
/// and what locality load balancing reads of the client.
type ScopeKey = (
    String,
    Option<(String, String)>,
    Vec<usize>,
    ProxyKind,
    ClientLocality,
);

impl<'m> Translator<'m> {
    pub fn new(model: &'m MeshModel, options: TranslateOptions) -> Self {
        let mut shared = Shared::new(model);
        let explicit = matches!(options.shape, ListenerShape::Explicit(_));
        shared.routes = RouteForms {
            http_proxy: explicit,
            per_port: !explicit,
        };
        let source_labels = model.virtual_services().flat_map(|vs| {
            let spec = &vs.object.spec;
            let http = spec.http.iter().flat_map(|r| &r.match_);
            let tcp = spec.tcp.iter().flat_map(|r| &r.match_);
            let tls = spec.tls.iter().flat_map(|r| &r.match_);
            http.map(|m| &m.source_labels)
                .chain(tcp.map(|m| &m.source_labels))
                .chain(tls.map(|m| &m.source_labels))
        });
        let workload_selectors = model
            .destination_rules()
            .filter_map(|dr| dr.object.spec.workload_selector.as_ref())
            .map(|s| &s.match_labels);
        let client_selectors: BTreeSet<&BTreeMap<String, String>> = source_labels
            .chain(workload_selectors)
            .filter(|s| !s.is_empty())
            .collect();
        Translator {
            model,
            options,
            scopes: BTreeMap::new(),
            client_selectors: client_selectors.into_iter().cloned().collect(),
            shared,
            peer_policies: peer_policies(model),
            priority_keys: failover_priority_keys(model),
        }
    }

    /// The outbound view of `namespace`, for a sidecar without labels (cached).
    pub fn scope(&mut self, namespace: &str) -> Arc<OutboundScope> {
        let locality = ClientLocality::default();
        self.scope_for(
            namespace,
            &BTreeMap::new(),
            ProxyKind::Sidecar,
            None,
            &locality,
        )
    }

    /// The outbound view of `namespace` for a sidecar with `labels`, narrowed
    /// by Sidecar resource `sidecar` (cached).
    fn scope_for(
        &mut self,
        namespace: &str,
        labels: &BTreeMap<String, String>,
        kind: ProxyKind,
        sidecar: Option<&trellis_model::Stored<trellis_api::networking::Sidecar>>,
        locality: &ClientLocality,
    ) -> Arc<OutboundScope> {
        let satisfied = (self.client_selectors.iter().enumerate())
            .filter(|(_, selector)| trellis_model::labels_match(selector, labels))
            .map(|(i, _)| i)
            .collect();
        let key = (
            namespace.to_string(),
            sidecar.map(|s| (s.namespace.clone(), s.name.clone())),
            satisfied,
            kind,
            locality.clone(),
        );
        if let Some(s) = self.scopes.get(&key) {
            return s.clone();
        }
        let client = Client {
            labels,
            namespace,
            gateway: None,
        };
        let s = Arc::new(outbound_scope_shared(
            self.model,
            &client,
            kind,
            &self.options.sds,
            sidecar,
            &mut self.shared,
            locality,
        ));
        self.scopes.insert(key, s.clone());
        s
    }

    pub fn translate(&mut self, proxy: &Proxy) -> ProxyResources {
        let model = self.model;
        let Some(workload) = model.workload(&proxy.namespace, &proxy.name) else {
            return ProxyResources {
                errors: vec![TranslateError {
                    kind: "Workload".into(),
                    namespace: proxy.namespace.clone(),
                    name: proxy.name.clone(),
                    path: String::new(),
                    message: "the proxy's workload is not in the model".into(),
                    code: ErrorCode::UnknownProxy,
                }],
                ..Default::default()
            };
        };
        // Gateways are not scoped by Sidecar resources.
        let sidecar = match proxy.kind {
            ProxyKind::Sidecar => model.sidecar_for(workload),
            ProxyKind::Gateway => None,
        };
        let locality = ClientLocality::of(workload, &self.priority_keys);
        let scope = self.scope_for(
            &proxy.namespace,
            &workload.labels,
            proxy.kind,
            sidecar,
            &locality,
        );
        let mut out = ProxyResources {
            clusters: ResourceList::shared(scope.clusters.clone()),
            endpoints: ResourceList::shared(scope.endpoints.clone()),
            errors: scope.errors.clone(),
            ..Default::default()
        };
        if proxy.kind == ProxyKind::Gateway {
            let gw = crate::gateway::gateway_resources(
                model,
                workload,
                &scope,
                &self.options.shape,
                &self.options.sds,
            );
            let mut gw_listeners = gw.listeners;
            out.routes = gw.routes;
            let mut gw_clusters = gw.clusters;
            // In a pod, the kubelet probes readiness on 15021 and Prometheus
            // scrapes 15090, as for sidecars.
            if self.options.shape == ListenerShape::Interception {
                gw_listeners.extend(crate::interception::agent_listeners());
                gw_listeners.sort_by(|a, b| a.name.cmp(&b.name));
                gw_clusters.push(Arc::new(crate::interception::stats_cluster()));
            }
            // The scope's cluster of a name stays.
            out.clusters.extend(gw_clusters);
            out.errors.extend(gw.errors);
            out.errors.sort();
            out.errors.dedup();
            out.secrets = gw.secrets;
            out.secrets.extend(scope.secrets.iter().cloned());
            if !out.clusters.is_empty() {
                out.secrets
                    .extend([SecretRef::TrustBundle, SecretRef::WorkloadCertificate]);
            }
            out.secrets.sort();
            // ISTIO_MUTUAL servers reference the same two.
            out.secrets.dedup();
            if let Some(log) = &model.settings().access_log {
                crate::access_log::add_access_logs(&mut gw_listeners, log);
            }
            out.listeners = gw_listeners.into_iter().map(Arc::new).collect();
            return out;
        }
        let mut listeners = Vec::new();
        let mut shared_listeners = None;
        let mut extra_clusters = Vec::new();
        let mut inbound_chains = Vec::new();
        let has_cluster = |name: &str| out.clusters.contains(name);
        let security = crate::security::workload::inbound_security(model, workload, &has_cluster);
        out.errors.extend(security.errors);
        extra_clusters.extend(security.clusters.into_iter().map(Arc::new));
        if let Some(sc) = sidecar {
            out.errors.extend(egress_capture_none(sc));
        }
        let mut ports = match sidecar.filter(|s| !s.object.spec.ingress.is_empty()) {
            Some(sc) => ingress_ports(workload, sc, &mut out.errors),
            None => self.service_ports(workload),
        };
        if let Some(sc) = sidecar {
            for port in &mut ports {
                port.pool = inbound_pool(sc, port.target, &mut out.errors);
            }
        }
        let (mtls_used, inspector) = self.inbound(
            workload,
            &ports,
            (&security.http_filters, &security.tcp_filters),
            &mut listeners,
            &mut inbound_chains,
            &mut extra_clusters,
        );
        match &self.options.shape {
            ListenerShape::Explicit(ports) => {
                let mut hcm = connection_manager(
                    "outbound_http_proxy",
                    Routes::Rds(names::OUTBOUND_HTTP_PROXY_ROUTE.into()),
                    vec![crate::forward_proxy::http_filter()],
                );
                crate::forward_proxy::accept_connect(&mut hcm);
                let http = hcm_filter(hcm);
                listeners.push(listener(
                    names::listener_name(&workload.address, ports.outbound_http_port),
                    &workload.address,
                    ports.outbound_http_port,
                    vec![FilterChain {
                        filters: vec![http],
                        ..Default::default()
                    }],
                    Vec::new(),
                ));
                out.routes.push(scope.http_proxy_routes.clone());
                for ((host, port), local) in &ports.tcp_outbound_ports {
                    let Some(service) = scope.services.iter().find(|s| &s.hostname == host) else {
                        continue;
                    };
                    if service.port(*port).is_none() {
                        continue;
                    }
                    let chains = scope.tcp_chains(host, *port, None, &mut BTreeSet::new());
                    let inspector = crate::listener::sni_inspector(&chains);
                    listeners.push(listener(
                        names::listener_name(&workload.address, *local),
                        &workload.address,
                        *local,
                        chains,
                        inspector,
                    ));
                }
            }
            ListenerShape::Interception => {
                shared_listeners = Some(scope.interception_listeners(
                    model.settings().access_log.as_ref(),
                    &mut self.shared,
                ));
                let declared: BTreeSet<u32> = (inbound_chains.iter())
                    .filter_map(|c| c.filter_chain_match.as_ref()?.destination_port)
                    .map(|p| p.value)
                    .collect();
                let (passthrough, passthrough_inspector) =
                    self.passthrough_chains(workload, &declared, &security.tcp_filters);
                listeners.push(crate::interception::virtual_inbound(
                    inbound_chains,
                    passthrough,
                    inspector || passthrough_inspector,
                ));
                listeners.extend(crate::interception::agent_listeners());
                out.routes.extend(scope.port_routes.iter().cloned());
                extra_clusters.extend(crate::interception::clusters());
            }
        }
        if let ListenerShape::Explicit(_) = self.options.shape {
            extra_clusters.push(Arc::new(crate::forward_proxy::passthrough_cluster()));
            extra_clusters.push(Arc::new(blackhole_cluster()));
        }
        // The scope's cluster of a name stays.
        out.clusters.extend(extra_clusters);
        if let Some(log) = &model.settings().access_log {
            crate::access_log::add_access_logs(&mut listeners, log);
        }
        out.listeners = shared_listeners
            .map(ResourceList::shared)
            .unwrap_or_default();
        out.listeners.extend(listeners.into_iter().map(Arc::new));
        out.routes.sort_by(|a, b| a.name().cmp(b.name()));
        if mtls_used || !out.clusters.is_empty() {
            out.secrets = vec![SecretRef::TrustBundle, SecretRef::WorkloadCertificate];
        }
        out.secrets.extend(scope.secrets.iter().cloned());
        out.secrets.sort();
        out
    }

    /// The inbound ports the workload's services give it: each target port
    /// once, to the application on loopback.
    fn service_ports(&self, workload: &Workload) -> Vec<InboundPort> {
        let mut seen = BTreeSet::new();
        let mut ports = Vec::new();
        for service in self.shared.services_of(workload) {
            for port in &service.ports {
                let Some(target) = workload.target_port(port) else {
                    continue;
                };
                if seen.insert(target) {
                    ports.push(InboundPort {
                        target,
                        protocol: port.protocol,
                        app_address: "127.0.0.1".into(),
                        app_port: workload.app_port(target),
                        pool: None,
                    });
                }
            }
        }
        ports
    }

    /// Inbound listeners (explicit shape: one per port; interception: filter
    /// chains of `virtualInbound` matching the destination port) and their
    /// `inbound|<port>||` clusters. Returns whether mTLS is served and whether
    /// the TLS inspector is needed.
    fn inbound(
        &self,
        workload: &Workload,
        ports: &[InboundPort],
        (http_filters, tcp_filters): (&[HttpFilter], &[Filter]),
        listeners: &mut Vec<Listener>,
        chains_out: &mut Vec<FilterChain>,
        clusters: &mut Vec<Arc<envoy_types::pb::envoy::config::cluster::v3::Cluster>>,
    ) -> (bool, bool) {
        let mut mtls = false;
        let mut any_inspector = false;
        for port in ports {
            let target = port.target;
            let cluster = names::inbound_cluster(target);
            // What a connection the proxy does not terminate gets: the
            // app's own TLS from outside the mesh (PERMISSIVE), and TCP.
            // The pool's TCP idle timeout and connection lifetime, as on
            // outbound TCP proxies.
            let tcp_policy = crate::policy::TcpProxyPolicy {
                idle_timeout: port.pool.as_ref().and_then(|p| p.tcp_idle_timeout),
                max_connection_duration: (port.pool.as_ref())
                    .and_then(|p| p.max_connection_duration),
                hash_source_ip: false,
                tunnel: None,
            };
            let as_tcp: Vec<Filter> = (tcp_filters.iter().cloned())
                .chain([crate::listener::weighted_tcp_proxy(
                    &cluster,
                    &[(cluster.clone(), 100)],
                    &tcp_policy,
                )])
                .collect();
            let filters = if port.protocol.is_http() {
                let rc = inbound_routes(target, &cluster);
                let hcm = connection_manager(
                    &cluster,
                    Routes::Inline(Box::new(rc)),
                    http_filters.to_vec(),
                );
                vec![hcm_filter(forward_client_cert(
                    hcm,
                    ClientCertHeader::AppendPeer,
                ))]
            } else {
                as_tcp.clone()
            };
            let mode = self.mtls_mode(workload, target);
            mtls |= mode != EffectiveMtls::Disable;
            let name = names::listener_name(&workload.address, target);
            let explicit = matches!(self.options.shape, ListenerShape::Explicit(_));
            let base = if explicit {
                FilterChainMatch::default()
            } else {
                FilterChainMatch {
                    destination_port: Some(envoy_types::pb::google::protobuf::UInt32Value {
                        value: u32::from(target),
                    }),
                    ..Default::default()
                }
            };
            let (chains, inspector) = inbound_filter_chains(
                &name,
                mode,
                base,
                &downstream_mtls(&self.options.sds),
                filters,
                as_tcp,
            );
            any_inspector |= inspector;
            if explicit {
                let filters = if inspector {
                    vec![tls_inspector()]
                } else {
                    Vec::new()
                };
                listeners.push(listener(name, &workload.address, target, chains, filters));
            } else {
                chains_out.extend(chains);
            }
            clusters.push(Arc::new(inbound_cluster(
                target,
                &port.app_address,
                port.app_port,
                port.protocol,
                port.pool.clone(),
            )));
        }
        (mtls, any_inspector)
    }

    /// `virtualInbound`'s chains for ports no service declares, as Istio builds
    /// them: the workload's mTLS mode and AuthorizationPolicies in front of the
    /// passthrough cluster, so STRICT means no plaintext on any port. Returns the
    /// chains and whether they need the TLS inspector.
    fn passthrough_chains(
        &self,
        workload: &Workload,
        declared: &BTreeSet<u32>,
        tcp_filters: &[Filter],
    ) -> (Vec<FilterChain>, bool) {
        let cluster = names::INBOUND_PASSTHROUGH_CLUSTER;
        let filters: Vec<Filter> = (tcp_filters.iter().cloned())
            .chain([tcp_proxy(cluster, cluster)])
            .collect();
        let mtls = downstream_mtls(&self.options.sds);
        // As in Istio, an undeclared port a PeerAuthentication of this
        // workload names (`portLevelMtls`) gets chains of its own, in its mode.
        let port_level: BTreeSet<u32> = (self.peer_policies.iter())
            .filter(|p| p.namespace == workload.namespace)
            .filter(|p| {
                (p.selector.as_ref())
                    .is_some_and(|s| trellis_model::labels_match(s, &workload.labels))
            })
            .flat_map(|p| p.port_level.keys().copied())
            .filter(|p| !declared.contains(p))
            .collect();
        let mut chains = Vec::new();
        let mut inspector = false;
        for port in port_level {
            let Ok(number) = u16::try_from(port) else {
                continue;
            };
            let (found, tls) = inbound_filter_chains(
                &format!("{cluster}_{port}"),
                self.mtls_mode(workload, number),
                FilterChainMatch {
                    destination_port: Some(envoy_types::pb::google::protobuf::UInt32Value {
                        value: port,
                    }),
                    ..Default::default()
                },
                &mtls,
                filters.clone(),
                filters.clone(),
            );
            chains.extend(found);
            inspector |= tls;
        }
        // Any other port: the workload's mode (port-level settings name ports; no port is 0).
        let (found, tls) = inbound_filter_chains(
            cluster,
            self.mtls_mode(workload, 0),
            FilterChainMatch::default(),
            &mtls,
            filters.clone(),
            filters,
        );
        chains.extend(found);
        (chains, inspector || tls)
    }

    /// The mTLS mode of `port` on `workload`: its PeerAuthentications (workload port,
    /// workload, namespace, mesh root namespace), then the mesh default.
    fn mtls_mode(&self, workload: &Workload, port: u16) -> EffectiveMtls {
        effective_mode(
            &self.peer_policies,
            &self.model.settings().root_namespace,
            WorkloadRef {
                namespace: &workload.namespace,
                labels: &workload.labels,
            },
            u32::from(port),
        )
    }
}

/// The model's PeerAuthentications as policies (oldest first), and the mesh
/// default (MeshConfig, or the root namespace's PeerAuthentication as the
/// sources fold it in) as the oldest mesh-wide one.
fn peer_policies(model: &MeshModel) -> Vec<PeerAuthnPolicy> {
    let settings = model.settings();
    let mut stored: Vec<_> = model.peer_authentications().collect();
    stored.sort_by(|a, b| a.age_key().cmp(&b.age_key()));
    let mut policies: Vec<PeerAuthnPolicy> = stored
        .iter()
        .enumerate()
        .map(|(i, pa)| peer_authn_policy(pa, i as i64))
        .collect();
    policies.push(PeerAuthnPolicy {
        namespace: settings.root_namespace.clone(),
        name: String::new(),
        creation_order: i64::MIN,
        selector: None,
        mode: match settings.default_mtls {
            MtlsMode::Strict => PeerMode::Strict,
            MtlsMode::Permissive => PeerMode::Permissive,
            MtlsMode::Disable => PeerMode::Disable,
        },
        port_level: BTreeMap::new(),
    });
    policies
}

fn inbound_routes(
    port: u16,
    cluster: &str,
) -> envoy_types::pb::envoy::config::route::v3::RouteConfiguration {
    use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
    let rule = crate::http_rule::HttpRule::default_to(cluster.to_string(), None);
    let mut routes = crate::route::routes(&rule, None, false);
    // Inbound: no retries (the client side retries), no timeout.
    for r in &mut routes {
        if let Some(envoy_types::pb::envoy::config::route::v3::route::Action::Route(a)) =
            &mut r.action
        {
            a.retry_policy = None;
        }
    }
    RouteConfiguration {
        name: names::inbound_route(port),
        virtual_hosts: vec![VirtualHost {
            name: names::inbound_route(port),
            domains: vec!["*".into()],
            routes,
            ..Default::default()
        }],
        ..Default::default()
    }
}

/// Translates one proxy (a fresh [`Translator`]; use one `Translator` for many proxies).
pub fn translate(model: &MeshModel, proxy: &Proxy, options: &TranslateOptions) -> ProxyResources {
    Translator::new(model, options.clone()).translate(proxy)
}

/// A stored PeerAuthentication in the form the mode resolution reads.
fn peer_authn_policy(
    pa: &trellis_model::Stored<trellis_api::security::PeerAuthentication>,
    creation_order: i64,
) -> PeerAuthnPolicy {
    use trellis_api::security::{MutualTLS, MutualTLSMode};
    let mode = |m: Option<&MutualTLS>| match m.and_then(|m| m.mode) {
        Some(MutualTLSMode::Strict) => PeerMode::Strict,
        Some(MutualTLSMode::Permissive) => PeerMode::Permissive,
        Some(MutualTLSMode::Disable) => PeerMode::Disable,
        Some(MutualTLSMode::Unset) | None => PeerMode::Unset,
    };
    let spec = &pa.object.spec;
    PeerAuthnPolicy {
        namespace: pa.namespace.clone(),
        name: pa.name.clone(),
        creation_order,
        selector: spec
            .selector
            .as_ref()
            .map(|s| s.match_labels.clone())
            .filter(|l| !l.is_empty()),
        mode: mode(spec.mtls.as_ref()),
        port_level: spec
            .port_level_mtls
            .iter()
            .map(|(port, m)| (*port, mode(Some(m))))
            .collect(),
    }
}

/// One inbound port of a proxy: where it accepts traffic and where the
/// application behind it listens.
struct InboundPort {
    target: u16,
    protocol: Protocol,
    app_address: String,
    app_port: u16,
    /// The Sidecar's connection pool for the port (`ingress[].connectionPool`,
    /// else `inboundConnectionPool`).
    pool: Option<crate::policy::ConnectionPool>,
}

/// The connection pool a Sidecar gives the inbound cluster of `target`, as
/// Istio picks it: the ingress listener of that port's own, else
/// `inboundConnectionPool`. HTTP/2 upgrade is an outbound setting: ignored.
fn inbound_pool(
    sc: &trellis_model::Stored<trellis_api::networking::Sidecar>,
    target: u16,
    errors: &mut Vec<TranslateError>,
) -> Option<crate::policy::ConnectionPool> {
    let spec = &sc.object.spec;
    let own = (spec.ingress.iter().enumerate())
        .find(|(_, l)| l.port.number == u32::from(target) && l.connection_pool.is_some())
        .and_then(|(i, l)| {
            Some((
                format!("spec.ingress[{i}].connectionPool"),
                l.connection_pool.as_ref()?,
            ))
        });
    let (path, settings) = own.or_else(|| {
        (spec.inbound_connection_pool.as_ref())
            .map(|p| ("spec.inboundConnectionPool".to_string(), p))
    })?;
    let mut err = |path: String, message: String| {
        errors.push(TranslateError {
            kind: "Sidecar".into(),
            namespace: sc.namespace.clone(),
            name: sc.name.clone(),
            path,
            message,
            code: ErrorCode::InvalidValue,
        })
    };
    let mut pool = crate::destination_rule::connection_pool(settings, &path, &mut err);
    pool.h2_upgrade = false;
    Some(pool)
}

/// The inbound ports a Sidecar resource's `ingress` listeners give workload
/// `w` (instead of those of its services), as Istio reads them. What Trellis
/// does not implement on them (`bind`, capture mode `NONE`, `tls`, Unix
/// sockets) is reported on the field.
fn ingress_ports(
    w: &Workload,
    sc: &trellis_model::Stored<trellis_api::networking::Sidecar>,
    errors: &mut Vec<TranslateError>,
) -> Vec<InboundPort> {
    use trellis_api::networking::CaptureMode;
    let mut unsupported = |path: String, message: &str| {
        errors.push(TranslateError {
            kind: "Sidecar".into(),
            namespace: sc.namespace.clone(),
            name: sc.name.clone(),
            path,
            message: message.into(),
            code: ErrorCode::InvalidValue,
        })
    };
    let mut ports = Vec::new();
    for (i, l) in sc.object.spec.ingress.iter().enumerate() {
        let path = format!("spec.ingress[{i}]");
        let Ok(target) = u16::try_from(l.port.number) else {
            continue;
        };
        if l.bind.is_some() {
            unsupported(
                format!("{path}.bind"),
                "not supported: the listener takes the workload's own address",
            );
        }
        if l.capture_mode == Some(CaptureMode::None) {
            unsupported(
                format!("{path}.captureMode"),
                "NONE is not supported: inbound traffic is captured",
            );
        }
        if l.tls.is_some() {
            unsupported(
                format!("{path}.tls"),
                "not supported: the port serves the mesh's mTLS (as its PeerAuthentication says), not TLS of its own",
            );
        }
        let (app_address, app_port) = match l.default_endpoint.as_deref() {
            None => ("127.0.0.1".to_string(), w.app_port(target)),
            Some(endpoint) => match endpoint.parse::<std::net::SocketAddr>() {
                Ok(a) if a.ip().is_unspecified() => (w.address.clone(), a.port()),
                Ok(a) if a.ip().is_loopback() => (a.ip().to_string(), a.port()),
                _ => {
                    unsupported(
                        format!("{path}.defaultEndpoint"),
                        "only 127.0.0.1:PORT, [::1]:PORT, 0.0.0.0:PORT and [::]:PORT are supported; the listener is left out",
                    );
                    continue;
                }
            },
        };
        ports.push(InboundPort {
            target,
            protocol: Protocol::detect(l.port.protocol.as_deref(), l.port.name.as_deref()),
            app_address,
            app_port,
            pool: None,
        });
    }
    ports
}

/// Egress listeners with capture mode `NONE` (the application sends to the
/// listener's `bind` itself): not supported; every egress port is captured.
fn egress_capture_none(
    sc: &trellis_model::Stored<trellis_api::networking::Sidecar>,
) -> Vec<TranslateError> {
    use trellis_api::networking::CaptureMode;
    (sc.object.spec.egress.iter().enumerate())
        .filter(|(_, l)| l.capture_mode == Some(CaptureMode::None))
        .map(|(i, _)| TranslateError {
            kind: "Sidecar".into(),
            namespace: sc.namespace.clone(),
            name: sc.name.clone(),
            path: format!("spec.egress[{i}].captureMode"),
            message: "NONE is not supported: outbound traffic is captured".into(),
            code: ErrorCode::InvalidValue,
        })
        .collect()
}
