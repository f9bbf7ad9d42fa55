//! One proxy's resources: the shared outbound view of its namespace plus its own
//! inbound listeners and clusters.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use envoy_types::pb::envoy::config::listener::v3::{FilterChain, FilterChainMatch, Listener};
use trellis_model::{MeshModel, MtlsMode, Workload};

use crate::cluster::{blackhole_cluster, inbound_cluster, passthrough_cluster};
use crate::listener::{Routes, http_connection_manager, listener, tcp_proxy};
use crate::names;
use crate::outbound::{OutboundScope, outbound_scope};
use crate::security::peer_authn::{EffectiveMtls, inbound_filter_chains, tls_inspector};
use crate::security::tls::downstream_mtls;
use crate::types::{
    ErrorCode, ListenerShape, Proxy, ProxyKind, ProxyResources, SecretRef, TranslateError,
    TranslateOptions,
};

/// Translates many proxies against one model, computing each namespace's outbound
/// view once.
pub struct Translator<'m> {
    model: &'m MeshModel,
    options: TranslateOptions,
    scopes: BTreeMap<String, Arc<OutboundScope>>,
}

impl<'m> Translator<'m> {
    pub fn new(model: &'m MeshModel, options: TranslateOptions) -> Self {
        Translator {
            model,
            options,
            scopes: BTreeMap::new(),
        }
    }

    /// The outbound view of `namespace` (cached).
    pub fn scope(&mut self, namespace: &str) -> Arc<OutboundScope> {
        if let Some(s) = self.scopes.get(namespace) {
            return s.clone();
        }
        let s = Arc::new(outbound_scope(self.model, namespace, &self.options.sds));
        self.scopes.insert(namespace.to_string(), s.clone());
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
        let scope = self.scope(&proxy.namespace);
        let mut out = ProxyResources {
            clusters: scope.clusters.clone(),
            endpoints: scope.endpoints.clone(),
            errors: scope.errors.clone(),
            ..Default::default()
        };
        if proxy.kind == ProxyKind::Gateway {
            // Gateways are built by the gateway module; a sidecar view is still valid output.
            out.errors.push(TranslateError {
                kind: "Workload".into(),
                namespace: proxy.namespace.clone(),
                name: proxy.name.clone(),
                path: String::new(),
                message: "gateway proxies are not translated yet; serving the sidecar view".into(),
                code: ErrorCode::InvalidValue,
            });
        }
        let mut listeners = Vec::new();
        let mut extra_clusters = Vec::new();
        let mtls_used = self.inbound(workload, &mut listeners, &mut extra_clusters);
        match &self.options.shape {
            ListenerShape::Explicit(ports) => {
                let http = http_connection_manager(
                    "outbound_http_proxy",
                    Routes::Rds(names::OUTBOUND_HTTP_PROXY_ROUTE.into()),
                    Vec::new(),
                );
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
                    let cluster = names::outbound_cluster(*port, None, host);
                    listeners.push(listener(
                        names::listener_name(&workload.address, *local),
                        &workload.address,
                        *local,
                        vec![FilterChain {
                            filters: vec![tcp_proxy(&cluster, &cluster)],
                            ..Default::default()
                        }],
                        Vec::new(),
                    ));
                }
            }
            ListenerShape::Interception => {
                extra_clusters.push(Arc::new(passthrough_cluster()));
                extra_clusters.push(Arc::new(blackhole_cluster()));
            }
        }
        out.clusters.extend(extra_clusters);
        out.clusters.sort_by(|a, b| a.name.cmp(&b.name));
        out.clusters.dedup_by(|a, b| a.name == b.name);
        listeners.sort_by(|a, b| a.name.cmp(&b.name));
        out.listeners = listeners;
        out.routes.sort_by(|a, b| a.name.cmp(&b.name));
        if mtls_used || !out.clusters.is_empty() {
            out.secrets = vec![SecretRef::TrustBundle, SecretRef::WorkloadCertificate];
        }
        out.secrets.sort();
        out
    }

    /// Inbound listeners (one per target port of the services the workload is behind)
    /// and their `inbound|<port>||` clusters. Returns whether mTLS is served.
    fn inbound(
        &self,
        workload: &Workload,
        listeners: &mut Vec<Listener>,
        clusters: &mut Vec<Arc<envoy_types::pb::envoy::config::cluster::v3::Cluster>>,
    ) -> bool {
        let mut seen = BTreeSet::new();
        let mut mtls = false;
        for service in self.model.services_of(workload) {
            for port in &service.ports {
                let Some(target) = workload.target_port(port) else {
                    continue;
                };
                if !seen.insert(target) {
                    continue;
                }
                let cluster = names::inbound_cluster(target);
                let filter = if port.protocol.is_http() {
                    let rc = inbound_routes(target, &cluster);
                    http_connection_manager(&cluster, Routes::Inline(Box::new(rc)), Vec::new())
                } else {
                    tcp_proxy(&cluster, &cluster)
                };
                let mode = self.mtls_mode(workload);
                mtls |= mode != EffectiveMtls::Disable;
                let name = names::listener_name(&workload.address, target);
                let (chains, inspector) = inbound_filter_chains(
                    &name,
                    mode,
                    FilterChainMatch::default(),
                    &downstream_mtls(&self.options.sds),
                    vec![filter],
                );
                let filters = if inspector {
                    vec![tls_inspector()]
                } else {
                    Vec::new()
                };
                if let ListenerShape::Explicit(_) = self.options.shape {
                    listeners.push(listener(name, &workload.address, target, chains, filters));
                } else {
                    listeners.push(listener(name, "0.0.0.0", target, chains, filters));
                }
                clusters.push(Arc::new(inbound_cluster(
                    target,
                    "127.0.0.1",
                    workload.app_port(target),
                    port.protocol,
                )));
            }
        }
        mtls
    }

    fn mtls_mode(&self, _workload: &Workload) -> EffectiveMtls {
        match self.model.settings().default_mtls {
            MtlsMode::Strict => EffectiveMtls::Strict,
            MtlsMode::Permissive => EffectiveMtls::Permissive,
            MtlsMode::Disable => EffectiveMtls::Disable,
        }
    }
}

fn inbound_routes(
    port: u16,
    cluster: &str,
) -> envoy_types::pb::envoy::config::route::v3::RouteConfiguration {
    use envoy_types::pb::envoy::config::route::v3::{RouteConfiguration, VirtualHost};
    let rule = crate::http_rule::HttpRule::default_to(cluster.to_string(), None);
    let mut routes = crate::route::routes(&rule, None);
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
