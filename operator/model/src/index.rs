//! The index itself: apply / delete / reset, and the queries over services,
//! workloads and identities.
use std::collections::{BTreeMap, BTreeSet};

use std::sync::Arc;

use k8s_openapi::api::core::v1::{Pod, Service};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use trellis_api::networking::{DestinationRule, Gateway, ServiceEntry, Sidecar, VirtualService};
use trellis_api::security::{AuthorizationPolicy, PeerAuthentication, RequestAuthentication};

use crate::service::ExportTo;
use crate::traffic::{Store, Stored};

use crate::config::MeshSettings;
use crate::error::ModelError;
use crate::registry::{Registry, ServiceSource};
use crate::scope::ChangeScope;
use crate::service::{MeshService, Resolution, ServicePort, StaticEndpoint};
use crate::workload::Workload;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ResourceKind {
    Service,
    Workload,
    ServiceAccount,
    MeshConfig,
    VirtualService,
    DestinationRule,
    ServiceEntry,
    Gateway,
    Sidecar,
    RequestAuthentication,
    AuthorizationPolicy,
    PeerAuthentication,
}

impl ResourceKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ResourceKind::Service => "Service",
            ResourceKind::Workload => "Workload",
            ResourceKind::ServiceAccount => "ServiceAccount",
            ResourceKind::MeshConfig => "MeshConfig",
            ResourceKind::VirtualService => "VirtualService",
            ResourceKind::DestinationRule => "DestinationRule",
            ResourceKind::ServiceEntry => "ServiceEntry",
            ResourceKind::Gateway => "Gateway",
            ResourceKind::Sidecar => "Sidecar",
            ResourceKind::RequestAuthentication => "RequestAuthentication",
            ResourceKind::AuthorizationPolicy => "AuthorizationPolicy",
            ResourceKind::PeerAuthentication => "PeerAuthentication",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ResourceKey {
    pub kind: ResourceKind,
    pub namespace: String,
    pub name: String,
}

impl ResourceKey {
    pub fn new(kind: ResourceKind, namespace: impl Into<String>, name: impl Into<String>) -> Self {
        ResourceKey {
            kind,
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

/// One object fed into the model.
#[derive(Debug, Clone)]
pub enum Resource {
    Service(Box<Service>),
    /// A Pod: becomes a [`Workload`] once it has an IP.
    Pod(Box<Pod>),
    Workload(Box<Workload>),
    ServiceAccount {
        namespace: String,
        name: String,
    },
    /// The mesh-wide settings (the MeshConfig singleton).
    MeshSettings(MeshSettings),
    VirtualService(Box<VirtualService>),
    DestinationRule(Box<DestinationRule>),
    /// Adds its hosts to the registry.
    ServiceEntry(Box<ServiceEntry>),
    Gateway(Box<Gateway>),
    Sidecar(Box<Sidecar>),
    /// JWT validation for the workloads it selects.
    RequestAuthentication(Box<RequestAuthentication>),
    /// Access control for the workloads it selects.
    AuthorizationPolicy(Box<AuthorizationPolicy>),
    /// The inbound mTLS mode of the workloads it covers (mesh, namespace, workload, port).
    PeerAuthentication(Box<PeerAuthentication>),
    /// The endpoints of a Service that Kubernetes does not derive from a selector:
    /// its EndpointSlices written by hand or by another controller (a Service
    /// without a selector in front of a database outside the cluster). They are
    /// the Service's endpoints while it has no selector; empty clears them.
    ServiceEndpoints {
        namespace: String,
        service: String,
        endpoints: Vec<StaticEndpoint>,
    },
}

/// The mesh index. Cloning is cheap enough for a per-push snapshot of a
/// mid-sized mesh; the translator only needs `&MeshModel`.
#[derive(Debug, Clone, Default)]
pub struct MeshModel {
    pub(crate) settings: MeshSettings,
    pub(crate) registry: Registry,
    /// Workloads by namespace, then name.
    pub(crate) workloads: BTreeMap<String, BTreeMap<String, Workload>>,
    pub(crate) service_accounts: BTreeSet<(String, String)>,
    pub(crate) virtual_services: Store<VirtualService>,
    pub(crate) destination_rules: Store<DestinationRule>,
    pub(crate) gateways: Store<Gateway>,
    pub(crate) sidecars: Store<Sidecar>,
    pub(crate) request_authentications: Store<RequestAuthentication>,
    pub(crate) authorization_policies: Store<AuthorizationPolicy>,
    pub(crate) peer_authentications: Store<PeerAuthentication>,
    /// [`Resource::ServiceEndpoints`] by (namespace, Service), kept also before
    /// or without their Service.
    pub(crate) service_endpoints: BTreeMap<(String, String), Vec<StaticEndpoint>>,
    pub(crate) seq: u64,
}

impl MeshModel {
    pub fn new(settings: MeshSettings) -> Self {
        MeshModel {
            settings,
            ..Default::default()
        }
    }

    pub fn settings(&self) -> &MeshSettings {
        &self.settings
    }

    pub fn registry(&self) -> &Registry {
        &self.registry
    }

    /// Adds or replaces an object; reports which proxies may see a difference.
    pub fn apply(&mut self, resource: Resource) -> Result<ChangeScope, ModelError> {
        match resource {
            Resource::Service(service) => {
                let key = service_key(&service)?;
                let Some(mut mesh) = MeshService::from_kubernetes(&service, &self.settings) else {
                    return Ok(ChangeScope::None);
                };
                self.attach_endpoints(&mut mesh);
                let changed = self.registry.set(key, vec![mesh]);
                Ok(if changed {
                    ChangeScope::All
                } else {
                    ChangeScope::None
                })
            }
            Resource::Pod(pod) => match Workload::from_pod(&pod) {
                Some(w) => Ok(self.set_workload(w)),
                None => {
                    // A pod without an IP serves nothing yet (or any more).
                    let ns = pod
                        .metadata
                        .namespace
                        .clone()
                        .unwrap_or_else(|| "default".into());
                    let name = pod.metadata.name.clone().unwrap_or_default();
                    Ok(self.remove_workload(&ns, &name))
                }
            },
            Resource::Workload(w) => Ok(self.set_workload(*w)),
            Resource::ServiceEndpoints {
                namespace,
                service,
                endpoints,
            } => {
                let key = (namespace.clone(), service.clone());
                if endpoints.is_empty() {
                    self.service_endpoints.remove(&key);
                } else {
                    self.service_endpoints.insert(key, endpoints);
                }
                let source = ServiceSource::Kubernetes {
                    namespace,
                    name: service,
                };
                let mut services = self.registry.defined_by(&source).to_vec();
                for mesh in &mut services {
                    self.attach_endpoints(mesh);
                }
                Ok(
                    if !services.is_empty() && self.registry.set(source, services) {
                        ChangeScope::All
                    } else {
                        ChangeScope::None
                    },
                )
            }
            Resource::ServiceAccount { namespace, name } => {
                let added = self.service_accounts.insert((namespace.clone(), name));
                Ok(if added {
                    ChangeScope::namespace(&namespace)
                } else {
                    ChangeScope::None
                })
            }
            Resource::MeshSettings(settings) => {
                if settings == self.settings {
                    return Ok(ChangeScope::None);
                }
                let domain_changed = settings.cluster_domain != self.settings.cluster_domain;
                self.settings = settings;
                if domain_changed {
                    self.reindex_kubernetes_hosts();
                }
                Ok(ChangeScope::All)
            }
            Resource::VirtualService(vs) => {
                let (ns, name) = object_key("VirtualService", &vs.metadata)?;
                let (meta, export_to) = (vs.metadata.clone(), vs.spec.export_to.clone());
                let stored = self.stored(&meta, &export_to, ns, name, *vs);
                Ok(store_set(&mut self.virtual_services, stored))
            }
            Resource::DestinationRule(dr) => {
                let (ns, name) = object_key("DestinationRule", &dr.metadata)?;
                let (meta, export_to) = (dr.metadata.clone(), dr.spec.export_to.clone());
                let stored = self.stored(&meta, &export_to, ns, name, *dr);
                Ok(store_set(&mut self.destination_rules, stored))
            }
            Resource::ServiceEntry(se) => {
                let (ns, name) = object_key("ServiceEntry", &se.metadata)?;
                let services = crate::service_entry::services_of_entry(&se, &ns, &name)?;
                let source = ServiceSource::ServiceEntry {
                    namespace: ns,
                    name,
                };
                Ok(if self.registry.set(source, services) {
                    ChangeScope::All
                } else {
                    ChangeScope::None
                })
            }
            Resource::Gateway(gw) => {
                let (ns, name) = object_key("Gateway", &gw.metadata)?;
                let meta = gw.metadata.clone();
                let stored = self.stored(&meta, &[], ns, name, *gw);
                Ok(store_set(&mut self.gateways, stored))
            }
            Resource::Sidecar(sc) => {
                let (ns, name) = object_key("Sidecar", &sc.metadata)?;
                let meta = sc.metadata.clone();
                let scope = self.sidecar_scope(&ns);
                let stored = self.stored(&meta, &[], ns, name, *sc);
                Ok(narrow(store_set(&mut self.sidecars, stored), scope))
            }
            Resource::RequestAuthentication(ra) => {
                let (ns, name) = object_key("RequestAuthentication", &ra.metadata)?;
                let meta = ra.metadata.clone();
                let stored = self.stored(&meta, &[], ns, name, *ra);
                Ok(store_set(&mut self.request_authentications, stored))
            }
            Resource::AuthorizationPolicy(ap) => {
                let (ns, name) = object_key("AuthorizationPolicy", &ap.metadata)?;
                let meta = ap.metadata.clone();
                let stored = self.stored(&meta, &[], ns, name, *ap);
                Ok(store_set(&mut self.authorization_policies, stored))
            }
            Resource::PeerAuthentication(pa) => {
                let (ns, name) = object_key("PeerAuthentication", &pa.metadata)?;
                let meta = pa.metadata.clone();
                let stored = self.stored(&meta, &[], ns, name, *pa);
                Ok(store_set(&mut self.peer_authentications, stored))
            }
        }
    }

    fn stored<T>(
        &mut self,
        meta: &ObjectMeta,
        export_to: &[String],
        namespace: String,
        name: String,
        object: T,
    ) -> Stored<T> {
        self.seq += 1;
        Stored {
            export_to: ExportTo::from_list(export_to, &namespace),
            created: meta.creation_timestamp.as_ref().map(|t| t.0.to_string()),
            namespace,
            name,
            seq: self.seq,
            object: Arc::new(object),
        }
    }

    /// Removes an object; reports which proxies may see a difference.
    pub fn delete(&mut self, key: &ResourceKey) -> ChangeScope {
        match key.kind {
            ResourceKind::Service => {
                let source = ServiceSource::Kubernetes {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                };
                if self.registry.remove(&source) {
                    ChangeScope::All
                } else {
                    ChangeScope::None
                }
            }
            ResourceKind::Workload => self.remove_workload(&key.namespace, &key.name),
            ResourceKind::ServiceAccount => {
                let removed = self
                    .service_accounts
                    .remove(&(key.namespace.clone(), key.name.clone()));
                if removed {
                    ChangeScope::namespace(&key.namespace)
                } else {
                    ChangeScope::None
                }
            }
            ResourceKind::MeshConfig => self
                .apply(Resource::MeshSettings(MeshSettings::default()))
                .unwrap_or(ChangeScope::All),
            ResourceKind::VirtualService => {
                store_remove(&mut self.virtual_services, &key.namespace, &key.name)
            }
            ResourceKind::DestinationRule => {
                store_remove(&mut self.destination_rules, &key.namespace, &key.name)
            }
            ResourceKind::ServiceEntry => {
                let source = ServiceSource::ServiceEntry {
                    namespace: key.namespace.clone(),
                    name: key.name.clone(),
                };
                if self.registry.remove(&source) {
                    ChangeScope::All
                } else {
                    ChangeScope::None
                }
            }
            ResourceKind::Gateway => store_remove(&mut self.gateways, &key.namespace, &key.name),
            ResourceKind::Sidecar => {
                let scope = self.sidecar_scope(&key.namespace);
                narrow(
                    store_remove(&mut self.sidecars, &key.namespace, &key.name),
                    scope,
                )
            }
            ResourceKind::RequestAuthentication => {
                store_remove(&mut self.request_authentications, &key.namespace, &key.name)
            }
            ResourceKind::AuthorizationPolicy => {
                store_remove(&mut self.authorization_policies, &key.namespace, &key.name)
            }
            ResourceKind::PeerAuthentication => {
                store_remove(&mut self.peer_authentications, &key.namespace, &key.name)
            }
        }
    }

    /// Replaces every object of `kind` (a relist after a watch restart).
    pub fn reset(&mut self, kind: ResourceKind, resources: Vec<Resource>) -> ChangeScope {
        match kind {
            ResourceKind::Service => {
                let entries: Vec<ServiceSource> = self
                    .registry
                    .sources()
                    .filter(|s| matches!(s, ServiceSource::Kubernetes { .. }))
                    .cloned()
                    .collect();
                for s in entries {
                    self.registry.remove(&s);
                }
            }
            ResourceKind::ServiceEntry => {
                let entries: Vec<ServiceSource> = self
                    .registry
                    .sources()
                    .filter(|s| matches!(s, ServiceSource::ServiceEntry { .. }))
                    .cloned()
                    .collect();
                for s in entries {
                    self.registry.remove(&s);
                }
            }
            ResourceKind::Gateway => self.gateways.clear(),
            ResourceKind::Sidecar => self.sidecars.clear(),
            ResourceKind::RequestAuthentication => self.request_authentications.clear(),
            ResourceKind::AuthorizationPolicy => self.authorization_policies.clear(),
            ResourceKind::PeerAuthentication => self.peer_authentications.clear(),
            ResourceKind::Workload => self.workloads.clear(),
            ResourceKind::ServiceAccount => self.service_accounts.clear(),
            ResourceKind::MeshConfig => self.settings = MeshSettings::default(),
            ResourceKind::VirtualService => self.virtual_services.clear(),
            ResourceKind::DestinationRule => self.destination_rules.clear(),
        }
        for r in resources {
            // A malformed object in a relist is skipped like it would be on apply.
            let _ = self.apply(r);
        }
        ChangeScope::All
    }

    /// A Sidecar resource only scopes proxies of its own namespace, except in the
    /// root namespace where it is the mesh-wide default.
    fn sidecar_scope(&self, namespace: &str) -> ChangeScope {
        if namespace == self.settings.root_namespace {
            ChangeScope::All
        } else {
            ChangeScope::namespace(namespace)
        }
    }

    fn set_workload(&mut self, w: Workload) -> ChangeScope {
        let ns = self.workloads.entry(w.namespace.clone()).or_default();
        if ns.get(&w.name) == Some(&w) {
            return ChangeScope::None;
        }
        ns.insert(w.name.clone(), w);
        // Endpoints of services other proxies call: everyone may see it.
        ChangeScope::All
    }

    fn remove_workload(&mut self, namespace: &str, name: &str) -> ChangeScope {
        let removed = self
            .workloads
            .get_mut(namespace)
            .and_then(|ns| ns.remove(name))
            .is_some();
        if removed {
            ChangeScope::All
        } else {
            ChangeScope::None
        }
    }

    /// A Kubernetes Service without a selector gets the endpoints its
    /// EndpointSlices list; one with a selector gets none this way.
    fn attach_endpoints(&self, mesh: &mut MeshService) {
        if mesh.origin != crate::service::ServiceOrigin::Kubernetes {
            return;
        }
        mesh.static_endpoints = match &mesh.selector {
            Some(_) => Vec::new(),
            None => self
                .service_endpoints
                .get(&(mesh.namespace.clone(), mesh.name.clone()))
                .cloned()
                .unwrap_or_default(),
        };
    }

    fn reindex_kubernetes_hosts(&mut self) {
        let settings = self.settings.clone();
        let old = std::mem::take(&mut self.registry);
        for source in old.sources() {
            let mut services = old.defined_by(source).to_vec();
            for s in &mut services {
                if s.origin == crate::service::ServiceOrigin::Kubernetes {
                    s.hostname = settings.service_fqdn(&s.name, &s.namespace);
                }
            }
            // ServiceEntries keep their hosts; only Kubernetes names follow the domain.
            self.registry.set(source.clone(), services);
        }
    }

    // ---- queries ----

    /// Every VirtualService, by namespace and name.
    pub fn virtual_services(&self) -> impl Iterator<Item = &Stored<VirtualService>> {
        self.virtual_services.values()
    }

    pub fn virtual_service(&self, namespace: &str, name: &str) -> Option<&Stored<VirtualService>> {
        self.virtual_services
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// Every DestinationRule, by namespace and name.
    pub fn destination_rules(&self) -> impl Iterator<Item = &Stored<DestinationRule>> {
        self.destination_rules.values()
    }

    /// Sidecar VirtualServices for `host` (FQDN) seen from `namespace`, in precedence order.
    pub fn virtual_services_for(
        &self,
        host: &str,
        namespace: &str,
    ) -> Vec<&Stored<VirtualService>> {
        crate::traffic::virtual_services_for(
            &self.virtual_services,
            host,
            namespace,
            &self.settings,
        )
    }

    /// VirtualServices and DestinationRules indexed by host, for many queries in a row.
    pub fn traffic_index(&self) -> crate::TrafficIndex<'_> {
        crate::TrafficIndex::new(
            &self.virtual_services,
            &self.destination_rules,
            &self.settings,
        )
    }

    /// The DestinationRule for `host` (FQDN) seen by a client in `namespace` with
    /// `client_labels`.
    pub fn destination_rule_for(
        &self,
        host: &str,
        namespace: &str,
        client_labels: &BTreeMap<String, String>,
    ) -> Option<&Stored<DestinationRule>> {
        crate::traffic::destination_rule_for(
            &self.destination_rules,
            host,
            namespace,
            client_labels,
            &self.settings,
        )
    }

    /// Every Gateway, by namespace and name.
    pub fn gateways(&self) -> impl Iterator<Item = &Stored<Gateway>> {
        self.gateways.values()
    }

    pub fn gateway(&self, namespace: &str, name: &str) -> Option<&Stored<Gateway>> {
        self.gateways
            .get(&(namespace.to_string(), name.to_string()))
    }

    /// The RequestAuthentications that apply to `workload` (its namespace and the
    /// mesh root namespace, selector matching its labels), oldest first.
    pub fn request_authentications_for(
        &self,
        workload: &Workload,
    ) -> Vec<&Stored<RequestAuthentication>> {
        crate::security::request_authentications_for(
            &self.request_authentications,
            workload,
            &self.settings.root_namespace,
        )
    }

    /// The AuthorizationPolicies that apply to `workload`, oldest first.
    pub fn authorization_policies_for(
        &self,
        workload: &Workload,
    ) -> Vec<&Stored<AuthorizationPolicy>> {
        crate::security::authorization_policies_for(
            &self.authorization_policies,
            workload,
            &self.settings.root_namespace,
        )
    }

    /// Every PeerAuthentication (the translator resolves mesh > namespace > workload >
    /// port itself; the mesh-wide default is also in [`MeshSettings::default_mtls`]).
    pub fn peer_authentications(&self) -> impl Iterator<Item = &Stored<PeerAuthentication>> {
        self.peer_authentications.values()
    }

    /// The Gateways a gateway workload runs: their selector matches its labels, or
    /// they have none.
    pub fn gateways_for(&self, workload: &Workload) -> Vec<&Stored<Gateway>> {
        crate::service_entry::gateways_for(&self.gateways, workload)
    }

    /// VirtualServices bound to Gateway `namespace/name` (by `ns/name` or a short name
    /// in the VirtualService's namespace), oldest first.
    pub fn virtual_services_for_gateway(
        &self,
        namespace: &str,
        name: &str,
    ) -> Vec<&Stored<VirtualService>> {
        let mut found: Vec<&Stored<VirtualService>> = self
            .virtual_services
            .values()
            .filter(|vs| {
                vs.object.spec.gateways.iter().any(|g| {
                    crate::service_entry::gateway_ref(g, &vs.namespace)
                        .is_some_and(|(ns, n)| ns == namespace && n == name)
                })
            })
            .collect();
        found.sort_by_key(|vs| vs.age_key());
        found
    }

    /// The Sidecar resource that scopes `workload`'s proxy, if any.
    pub fn sidecar_for(&self, workload: &Workload) -> Option<&Stored<Sidecar>> {
        crate::service_entry::sidecar_for(&self.sidecars, workload, &self.settings.root_namespace)
    }

    pub fn workload(&self, namespace: &str, name: &str) -> Option<&Workload> {
        self.workloads.get(namespace)?.get(name)
    }

    /// Every workload, sorted by namespace then name.
    pub fn workloads(&self) -> impl Iterator<Item = &Workload> {
        self.workloads.values().flat_map(|ns| ns.values())
    }

    pub fn service_account_exists(&self, namespace: &str, name: &str) -> bool {
        self.service_accounts
            .contains(&(namespace.to_string(), name.to_string()))
    }

    /// Resolves a host relative to `namespace` (see [`Registry::resolve`]).
    pub fn resolve_host(&self, host: &str, namespace: &str) -> Option<&MeshService> {
        self.registry.resolve(host, namespace, &self.settings)
    }

    /// The workloads behind a service (selector match in its namespace), sorted.
    pub fn workloads_of(&self, service: &MeshService) -> Vec<&Workload> {
        if service.resolution != Resolution::Endpoints {
            return Vec::new();
        }
        let Some(selector) = &service.selector else {
            return Vec::new();
        };
        self.workloads
            .get(&service.namespace)
            .map(|ns| ns.values().filter(|w| w.matches(selector)).collect())
            .unwrap_or_default()
    }

    /// The endpoints of one service port, optionally narrowed to a subset's labels.
    pub fn endpoints(
        &self,
        service: &MeshService,
        port: &ServicePort,
        subset: Option<&BTreeMap<String, String>>,
    ) -> Vec<Endpoint> {
        let keep = |labels: &BTreeMap<String, String>| {
            subset.is_none_or(|s| crate::workload::labels_match(s, labels))
        };
        // As in Istio: a listed endpoint of a service inside the mesh takes its
        // mTLS when labelled so (a VM with a sidecar); outside the mesh, never.
        let mesh_internal = !matches!(
            service.origin,
            crate::ServiceOrigin::ServiceEntry { external: true, .. }
        );
        let labelled_mtls = |labels: &BTreeMap<String, String>| {
            mesh_internal && labels.get(crate::TLS_MODE_LABEL).map(String::as_str) == Some("istio")
        };
        let listed = || {
            service
                .static_endpoints
                .iter()
                .filter(|e| keep(&e.labels))
                .map(|e| Endpoint {
                    address: e.address.clone(),
                    port: e
                        .ports
                        .get(&port.name)
                        .copied()
                        .unwrap_or(match &port.target_port {
                            crate::service::TargetPort::Number(n) => *n,
                            crate::service::TargetPort::Name(_) => port.port,
                        }),
                    labels: e.labels.clone(),
                    has_sidecar: labelled_mtls(&e.labels),
                    namespace: service.namespace.clone(),
                    service_account: e.service_account.clone(),
                    weight: e.weight.max(1),
                    locality: e.locality.clone(),
                })
                .collect()
        };
        match service.resolution {
            // A Service without a selector: what its EndpointSlices list.
            Resolution::Endpoints if service.selector.is_none() => listed(),
            Resolution::Endpoints => self
                .workloads_of(service)
                .into_iter()
                .filter(|w| keep(&w.labels))
                .filter_map(|w| {
                    Some(Endpoint {
                        address: w.address.clone(),
                        port: w.target_port(port)?,
                        labels: w.labels.clone(),
                        has_sidecar: w.has_sidecar,
                        namespace: w.namespace.clone(),
                        service_account: Some(w.service_account.clone()),
                        weight: w.weight,
                        locality: w.locality.clone(),
                    })
                })
                .collect(),
            Resolution::Dns | Resolution::DnsRoundRobin | Resolution::Static => listed(),
            Resolution::Passthrough => Vec::new(),
        }
    }

    /// The SPIFFE ids of the workloads behind a service, and the identities its
    /// ServiceEntry names (`subjectAltNames`, its endpoints' `serviceAccount`), sorted.
    pub fn service_identities(&self, service: &MeshService) -> Vec<String> {
        let set: BTreeSet<String> = self
            .workloads_of(service)
            .into_iter()
            .map(|w| self.settings.spiffe_id(&w.namespace, &w.service_account))
            .chain(service.subject_alt_names.iter().cloned())
            .chain(
                (service.static_endpoints.iter())
                    .filter_map(|e| e.service_account.as_deref())
                    .map(|sa| self.settings.spiffe_id(&service.namespace, sa)),
            )
            .collect();
        set.into_iter().collect()
    }

    /// The SPIFFE id of a workload.
    pub fn workload_identity(&self, workload: &Workload) -> String {
        self.settings
            .spiffe_id(&workload.namespace, &workload.service_account)
    }

    /// The services a workload is behind (its inbound side), sorted by host.
    pub fn services_of(&self, workload: &Workload) -> Vec<&MeshService> {
        self.registry
            .services()
            .filter(|s| s.resolution == Resolution::Endpoints && workload.is_behind(s))
            .collect()
    }
}

/// One concrete endpoint of a service port.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Endpoint {
    pub address: String,
    pub port: u16,
    pub labels: BTreeMap<String, String>,
    pub has_sidecar: bool,
    pub namespace: String,
    pub service_account: Option<String>,
    pub weight: u32,
    /// `region/zone/subzone` (WorkloadEntry or ServiceEntry `locality`, a pod's
    /// node or `istio-locality` label); `None` when unknown.
    pub locality: Option<String>,
}

fn object_key(kind: &str, meta: &ObjectMeta) -> Result<(String, String), ModelError> {
    let namespace = meta.namespace.clone().unwrap_or_else(|| "default".into());
    let name = meta.name.clone().ok_or_else(|| ModelError::Invalid {
        kind: kind.into(),
        namespace: namespace.clone(),
        name: String::new(),
        path: "metadata.name".into(),
        message: format!("a {kind} needs a name"),
    })?;
    Ok((namespace, name))
}

/// Mesh objects change what any proxy may see: scope All unless nothing changed.
fn store_set<T: PartialEq>(store: &mut Store<T>, mut stored: Stored<T>) -> ChangeScope {
    let key = (stored.namespace.clone(), stored.name.clone());
    if let Some(old) = store.get(&key) {
        if old.object == stored.object {
            return ChangeScope::None;
        }
        // An update keeps the object's age.
        stored.seq = old.seq;
        if stored.created.is_none() {
            stored.created = old.created.clone();
        }
    }
    store.insert(key, stored);
    ChangeScope::All
}

/// `changed` (None or All from the store) narrowed to `scope` when something changed.
fn narrow(changed: ChangeScope, scope: ChangeScope) -> ChangeScope {
    match changed {
        ChangeScope::None => ChangeScope::None,
        _ => scope,
    }
}

fn store_remove<T>(store: &mut Store<T>, namespace: &str, name: &str) -> ChangeScope {
    match store.remove(&(namespace.to_string(), name.to_string())) {
        Some(_) => ChangeScope::All,
        None => ChangeScope::None,
    }
}

fn service_key(service: &Service) -> Result<ServiceSource, ModelError> {
    let namespace = service
        .metadata
        .namespace
        .clone()
        .unwrap_or_else(|| "default".into());
    let name = service
        .metadata
        .name
        .clone()
        .ok_or_else(|| ModelError::Invalid {
            kind: "Service".into(),
            namespace: namespace.clone(),
            name: String::new(),
            path: "metadata.name".into(),
            message: "a Service needs a name".into(),
        })?;
    Ok(ServiceSource::Kubernetes { namespace, name })
}
