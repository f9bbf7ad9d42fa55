//! The feed: a synchronous state machine fed by [`Change`]s (apply / delete /
//! reset) that keeps the [`MeshModel`] and everything status needs, and says
//! which proxies each change can affect. No I/O, no clock: unit tested by
//! applying objects and looking at the model and the scopes.
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use k8s_openapi::api::core::v1::{Namespace, Pod, PodStatus};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use trellis_api::mesh::MeshConfigSpec;
use trellis_api::networking::OutboundTrafficPolicyMode;
use trellis_api::security::MutualTLSMode;
use trellis_api::status::ResourceStatus;
use trellis_api::{ObjectRef, Resource};
use trellis_model::{
    ChangeScope, MeshModel, MeshSettings, MtlsMode, OutboundPolicy, ResourceKey, ResourceKind,
    StaticEndpoint,
};
use trellis_xds::{ProxyId, ProxyKind, PushScope};

use trellis_translate::destination_rule::credential_names;

use crate::credentials::{self, Credential, Credentials};
use crate::input::{Change, Input, SourceKind, normalize, strip_meta};

/// A mesh configuration object as status sees it.
#[derive(Debug, Clone, PartialEq)]
pub struct ConfigObject {
    pub object: ObjectRef,
    pub generation: Option<i64>,
    /// The status the API server holds for it (what the operator wrote last).
    pub status: Option<ResourceStatus>,
    pub content: ConfigContent,
    /// The model applies objects like this one to proxies (when valid).
    pub programmed: bool,
}

#[derive(Debug, Clone, PartialEq)]
pub enum ConfigContent {
    /// Read; `status` and volatile metadata removed.
    Loaded(Arc<Resource>),
    /// Could not be read: the field path and the reason.
    Unreadable { path: String, message: String },
}

/// Namespace and name.
pub type NsName = (String, String);

/// An immutable view of the feed after a batch of changes, shared with readers.
#[derive(Debug, Clone, Default)]
pub struct MeshView {
    /// Increases with every change to anything in the view.
    pub revision: u64,
    /// Every source has listed its objects at least once.
    pub synced: bool,
    pub model: Arc<MeshModel>,
    pub config: Arc<BTreeMap<ObjectRef, ConfigObject>>,
    pub namespaces: Arc<BTreeMap<String, Namespace>>,
    pub pods: Arc<BTreeMap<NsName, Pod>>,
    pub service_accounts: Arc<BTreeSet<NsName>>,
    /// Credentials (`credentialName`), by the namespace and name of their Secret.
    pub credentials: Arc<Credentials>,
}

/// Kinds whose valid objects the model programs into proxies. PeerAuthentication
/// is programmed only mesh-wide (see [`is_mesh_wide_peer_authentication`]).
pub fn programmed(kind: &str) -> bool {
    matches!(
        kind,
        "VirtualService"
            | "DestinationRule"
            | "ServiceEntry"
            | "Gateway"
            | "Sidecar"
            | "WorkloadEntry"
            | "RequestAuthentication"
            | "AuthorizationPolicy"
            | "PeerAuthentication"
    )
}

/// A PeerAuthentication in the root namespace without a selector: it sets the
/// mesh-wide mTLS mode (the only PeerAuthentication the model applies so far).
pub fn is_mesh_wide_peer_authentication(resource: &Resource, root_namespace: &str) -> bool {
    matches!(resource, Resource::PeerAuthentication(pa)
        if pa.metadata.namespace.as_deref() == Some(root_namespace) && pa.spec.selector.is_none())
}

#[derive(Debug, Default)]
pub struct MeshFeed {
    base: MeshSettings,
    model: Arc<MeshModel>,
    config: Arc<BTreeMap<ObjectRef, ConfigObject>>,
    namespaces: Arc<BTreeMap<String, Namespace>>,
    pods: Arc<BTreeMap<NsName, Pod>>,
    service_accounts: Arc<BTreeSet<NsName>>,
    credentials: Arc<Credentials>,
    slices: BTreeMap<NsName, EndpointSlice>,
    /// Node name -> the locality its labels give (the locality of its pods).
    nodes: BTreeMap<String, Option<String>>,
    /// Pod address learnt from EndpointSlices, for pods whose status has none yet.
    /// pod -> (slice -> address), so a pod keeps an address while any slice lists it.
    slice_addresses: BTreeMap<NsName, BTreeMap<NsName, String>>,
    /// Service -> the slices that list endpoints for it not derived from its
    /// selector ([`listing_for`]).
    listings: BTreeMap<NsName, BTreeSet<NsName>>,
    present: BTreeMap<SourceKind, BTreeSet<ObjectRef>>,
    /// The valid MeshConfig `default`, if any.
    mesh_config: Option<MeshConfigSpec>,
    /// Mesh-wide PeerAuthentications (root namespace, no selector) and their mode.
    root_peer_authentications: BTreeMap<String, Option<MtlsMode>>,
    revision: u64,
}

impl MeshFeed {
    /// `base`: the settings before any MeshConfig (cluster domain, root namespace...).
    pub fn new(base: MeshSettings) -> Self {
        MeshFeed {
            model: Arc::new(MeshModel::new(base.clone())),
            base,
            ..Default::default()
        }
    }

    pub fn model(&self) -> &MeshModel {
        &self.model
    }

    pub fn revision(&self) -> u64 {
        self.revision
    }

    pub fn view(&self, synced: bool) -> MeshView {
        MeshView {
            revision: self.revision,
            synced,
            model: self.model.clone(),
            config: self.config.clone(),
            namespaces: self.namespaces.clone(),
            pods: self.pods.clone(),
            service_accounts: self.service_accounts.clone(),
            credentials: self.credentials.clone(),
        }
    }

    /// Applies one change; returns which proxies may see a difference.
    pub fn apply(&mut self, change: Change) -> ChangeScope {
        match change {
            Change::Apply(input) => self.apply_input(input),
            Change::Delete(key) => self.delete(&key),
            Change::Reset(kind, inputs) => {
                let listed: BTreeSet<ObjectRef> = inputs.iter().map(Input::key).collect();
                let gone: Vec<ObjectRef> = self
                    .present
                    .get(&kind)
                    .map(|keys| keys.difference(&listed).cloned().collect())
                    .unwrap_or_default();
                let mut scope = ChangeScope::None;
                for key in gone {
                    scope = scope.union(self.delete(&key));
                }
                for input in inputs {
                    scope = scope.union(self.apply_input(input));
                }
                scope
            }
        }
    }

    fn mark(&mut self, kind: SourceKind, key: ObjectRef, present: bool) {
        let keys = self.present.entry(kind).or_default();
        if present {
            keys.insert(key);
        } else {
            keys.remove(&key);
        }
    }

    fn apply_input(&mut self, input: Input) -> ChangeScope {
        let key = input.key();
        let Some(kind) = SourceKind::from_kind(&key.kind) else {
            return ChangeScope::None;
        };
        match input {
            Input::Resource(mut resource) => {
                let status = normalize(&mut resource);
                self.mark(kind, key.clone(), true);
                self.apply_resource(key, *resource, status)
            }
            Input::Unreadable(u) => {
                self.mark(kind, key.clone(), true);
                let object = ConfigObject {
                    object: key.clone(),
                    generation: u.generation,
                    status: u.status,
                    content: ConfigContent::Unreadable {
                        path: u.path,
                        message: u.message,
                    },
                    programmed: programmed(&key.kind),
                };
                let mut scope = ChangeScope::None;
                if programmed(&key.kind) {
                    scope = self.model_delete(&key);
                }
                self.set_config(object);
                scope
            }
            Input::Pod(mut pod) => {
                strip_meta(&mut pod.metadata);
                self.mark(kind, key.clone(), true);
                let id = ns_name(&key);
                if self.pods.get(&id) == Some(&pod) {
                    return ChangeScope::None;
                }
                self.revision += 1;
                Arc::make_mut(&mut self.pods).insert(id.clone(), *pod);
                self.program_pod(&id)
            }
            Input::Secret(key, credential) => {
                self.mark(kind, key.clone(), true);
                self.set_credential(&key, credential)
            }
            Input::Node(name, locality) => {
                self.mark(kind, key.clone(), true);
                self.set_node(name, Some(locality))
            }
            Input::EndpointSlice(mut slice) => {
                strip_meta(&mut slice.metadata);
                self.mark(kind, key.clone(), true);
                let id = ns_name(&key);
                let old = self.slices.insert(id.clone(), *slice.clone());
                self.slice_changed(&id, old.as_ref(), Some(&slice))
            }
        }
    }

    fn apply_resource(
        &mut self,
        key: ObjectRef,
        resource: Resource,
        status: Option<ResourceStatus>,
    ) -> ChangeScope {
        match resource {
            Resource::Namespace(ns) => {
                let name = key.name.clone();
                if self.namespaces.get(&name) != Some(&ns) {
                    self.revision += 1;
                    Arc::make_mut(&mut self.namespaces).insert(name, ns);
                }
                ChangeScope::None
            }
            Resource::Service(service) => {
                self.model_apply(trellis_model::Resource::Service(Box::new(service)))
            }
            Resource::ServiceAccount(_) => {
                let id = ns_name(&key);
                if !self.service_accounts.contains(&id) {
                    self.revision += 1;
                    Arc::make_mut(&mut self.service_accounts).insert(id.clone());
                }
                self.model_apply(trellis_model::Resource::ServiceAccount {
                    namespace: id.0,
                    name: id.1,
                })
            }
            Resource::MeshConfig(config) => {
                if key.name != trellis_api::mesh::MESH_CONFIG_NAME {
                    return ChangeScope::None;
                }
                let valid = trellis_api::validate(&Resource::MeshConfig(config.clone())).is_empty();
                self.mesh_config = valid.then_some(config.spec);
                self.apply_settings()
            }
            resource @ (Resource::VirtualService(_)
            | Resource::DestinationRule(_)
            | Resource::Gateway(_)
            | Resource::ServiceEntry(_)
            | Resource::Sidecar(_)
            | Resource::WorkloadEntry(_)
            | Resource::PeerAuthentication(_)
            | Resource::RequestAuthentication(_)
            | Resource::AuthorizationPolicy(_)) => {
                let valid = trellis_api::validate(&resource).is_empty();
                let object = ConfigObject {
                    object: key.clone(),
                    generation: resource.meta().generation,
                    status,
                    programmed: programmed(&key.kind)
                        || is_mesh_wide_peer_authentication(&resource, &self.base.root_namespace),
                    content: ConfigContent::Loaded(Arc::new(resource.clone())),
                };
                self.set_config(object);
                if let Resource::PeerAuthentication(pa) = &resource {
                    let mode = pa
                        .spec
                        .mtls
                        .as_ref()
                        .and_then(|m| m.mode.as_ref())
                        .and_then(mtls_mode);
                    let root = self.base.root_namespace.clone();
                    let mesh_wide = is_mesh_wide_peer_authentication(&resource, &root);
                    if valid && mesh_wide {
                        self.root_peer_authentications
                            .insert(key.name.clone(), mode);
                    } else {
                        self.root_peer_authentications.remove(&key.name);
                    }
                    let settings = self.apply_settings();
                    // namespace, workload and port level policies go to the model as such
                    let model = if valid && !mesh_wide {
                        self.model_apply(trellis_model::Resource::PeerAuthentication(Box::new(
                            pa.clone(),
                        )))
                    } else {
                        self.model_delete(&key)
                    };
                    return settings.union(model);
                }
                if !valid {
                    return self.model_delete(&key);
                }
                use trellis_model::Resource as M;
                let input = match resource {
                    Resource::VirtualService(o) => M::VirtualService(Box::new(o)),
                    Resource::DestinationRule(o) => M::DestinationRule(Box::new(o)),
                    Resource::ServiceEntry(o) => M::ServiceEntry(Box::new(o)),
                    Resource::Gateway(o) => M::Gateway(Box::new(o)),
                    Resource::Sidecar(o) => M::Sidecar(Box::new(o)),
                    Resource::RequestAuthentication(o) => M::RequestAuthentication(Box::new(o)),
                    Resource::AuthorizationPolicy(o) => M::AuthorizationPolicy(Box::new(o)),
                    // A host name address serves no Kubernetes service: not a workload.
                    Resource::WorkloadEntry(o) => {
                        match trellis_model::Workload::from_workload_entry(&o) {
                            Some(mut w) => {
                                w.name = trellis_model::Workload::workload_entry_name(&w.name);
                                M::Workload(Box::new(w))
                            }
                            None => return self.model_delete(&key),
                        }
                    }
                    _ => return ChangeScope::None,
                };
                self.model_apply(input)
            }
            Resource::MeshStatus(_) => ChangeScope::None,
        }
    }

    fn set_config(&mut self, object: ConfigObject) {
        if self.config.get(&object.object) != Some(&object) {
            self.revision += 1;
            Arc::make_mut(&mut self.config).insert(object.object.clone(), object);
        }
    }

    fn delete(&mut self, key: &ObjectRef) -> ChangeScope {
        let Some(kind) = SourceKind::from_kind(&key.kind) else {
            return ChangeScope::None;
        };
        self.mark(kind, key.clone(), false);
        let id = ns_name(key);
        match kind {
            SourceKind::Namespace => {
                if Arc::make_mut(&mut self.namespaces)
                    .remove(&key.name)
                    .is_some()
                {
                    self.revision += 1;
                }
                ChangeScope::None
            }
            SourceKind::Service => self.model_delete(key),
            SourceKind::ServiceAccount => {
                if Arc::make_mut(&mut self.service_accounts).remove(&id) {
                    self.revision += 1;
                }
                self.model_delete(key)
            }
            SourceKind::MeshConfig => {
                if key.name != trellis_api::mesh::MESH_CONFIG_NAME {
                    return ChangeScope::None;
                }
                self.mesh_config = None;
                self.apply_settings()
            }
            SourceKind::PeerAuthentication => {
                if Arc::make_mut(&mut self.config).remove(key).is_some() {
                    self.revision += 1;
                }
                let root = key.namespace.as_deref() == Some(self.base.root_namespace.as_str());
                if root && self.root_peer_authentications.remove(&key.name).is_some() {
                    return self.apply_settings();
                }
                self.model_delete(key)
            }
            SourceKind::Pod => {
                if Arc::make_mut(&mut self.pods).remove(&id).is_none() {
                    return ChangeScope::None;
                }
                self.revision += 1;
                self.model_delete(key)
            }
            SourceKind::EndpointSlice => {
                let old = self.slices.remove(&id);
                self.slice_changed(&id, old.as_ref(), None)
            }
            SourceKind::Node => self.set_node(key.name.clone(), None),
            SourceKind::Secret => self.set_credential(key, None),
            _ => {
                if Arc::make_mut(&mut self.config).remove(key).is_some() {
                    self.revision += 1;
                }
                if programmed(&key.kind) {
                    self.model_delete(key)
                } else {
                    ChangeScope::None
                }
            }
        }
    }

    /// Keeps (or forgets) the credential of Secret `key`. The proxies of its
    /// namespace need a push only when some Gateway or DestinationRule names it.
    fn set_credential(
        &mut self,
        key: &ObjectRef,
        credential: Option<Arc<Credential>>,
    ) -> ChangeScope {
        let id = ns_name(key);
        if self.credentials.get(&id) == credential.as_ref() {
            return ChangeScope::None;
        }
        self.revision += 1;
        let credentials = Arc::make_mut(&mut self.credentials);
        match credential {
            Some(c) => credentials.insert(id.clone(), c),
            None => credentials.remove(&id),
        };
        let by_gateway = self.model.gateways().any(|g| {
            g.object.spec.servers.iter().any(|s| {
                s.tls
                    .as_ref()
                    .and_then(|t| t.credential_name.as_deref())
                    .is_some_and(|c| credentials::serves(c, &id.1))
            })
        });
        let named = by_gateway
            || self.model.destination_rules().any(|dr| {
                credential_names(&dr.object)
                    .iter()
                    .any(|(_, c)| credentials::serves(c, &id.1))
            });
        if named {
            ChangeScope::namespace(&id.0)
        } else {
            ChangeScope::None
        }
    }

    /// MeshConfig over the base settings, then the mesh-wide PeerAuthentication's mode
    /// (the first by name when several exist), as universal mode does.
    fn apply_settings(&mut self) -> ChangeScope {
        let mut settings = match &self.mesh_config {
            Some(spec) => settings_from(spec, &self.base),
            None => self.base.clone(),
        };
        if let Some(mode) = self.root_peer_authentications.values().flatten().next() {
            settings.default_mtls = *mode;
        }
        self.model_apply(trellis_model::Resource::MeshSettings(settings))
    }

    fn model_apply(&mut self, resource: trellis_model::Resource) -> ChangeScope {
        // A malformed object (no name) is skipped; the API server never sends one.
        let scope = Arc::make_mut(&mut self.model)
            .apply(resource)
            .unwrap_or(ChangeScope::None);
        if scope != ChangeScope::None {
            self.revision += 1;
        }
        scope
    }

    fn model_delete(&mut self, key: &ObjectRef) -> ChangeScope {
        let kind = match key.kind.as_str() {
            "Service" => ResourceKind::Service,
            "Pod" | "WorkloadEntry" => ResourceKind::Workload,
            "ServiceAccount" => ResourceKind::ServiceAccount,
            "VirtualService" => ResourceKind::VirtualService,
            "DestinationRule" => ResourceKind::DestinationRule,
            "ServiceEntry" => ResourceKind::ServiceEntry,
            "Gateway" => ResourceKind::Gateway,
            "Sidecar" => ResourceKind::Sidecar,
            "RequestAuthentication" => ResourceKind::RequestAuthentication,
            "AuthorizationPolicy" => ResourceKind::AuthorizationPolicy,
            "PeerAuthentication" => ResourceKind::PeerAuthentication,
            _ => return ChangeScope::None,
        };
        let (namespace, mut name) = ns_name(key);
        if key.kind == "WorkloadEntry" {
            name = trellis_model::Workload::workload_entry_name(&name);
        }
        let scope = Arc::make_mut(&mut self.model).delete(&ResourceKey::new(kind, namespace, name));
        if scope != ChangeScope::None {
            self.revision += 1;
        }
        scope
    }

    /// Node `name` appeared with (or changed to) `locality`, or is gone
    /// (`None`): its pods are programmed again when their locality changes.
    fn set_node(&mut self, name: String, locality: Option<Option<String>>) -> ChangeScope {
        let changed = match locality {
            Some(l) => self.nodes.insert(name.clone(), l.clone()) != Some(l),
            None => self.nodes.remove(&name).is_some(),
        };
        if !changed {
            return ChangeScope::None;
        }
        self.revision += 1;
        let on_node: Vec<NsName> = (self.pods.iter())
            .filter(|(_, p)| p.spec.as_ref().and_then(|s| s.node_name.as_deref()) == Some(&name))
            .map(|(id, _)| id.clone())
            .collect();
        let on_node_listed: Vec<NsName> = (self.listings.iter())
            .filter(|(_, slices)| {
                (slices.iter().filter_map(|id| self.slices.get(id)))
                    .flat_map(|slice| &slice.endpoints)
                    .any(|e| e.node_name.as_deref() == Some(&name))
            })
            .map(|(service, _)| service.clone())
            .collect();
        let mut scope = ChangeScope::None;
        for id in on_node {
            scope = scope.union(self.program_pod(&id));
        }
        for service in on_node_listed {
            scope = scope.union(self.program_listing(service));
        }
        scope
    }

    /// Feeds a pod to the model, with the address its EndpointSlices give when its
    /// status has none. A pod that is terminating or finished serves nothing. Its
    /// locality is its label's, else its node's (as Istio reads them).
    fn program_pod(&mut self, id: &NsName) -> ChangeScope {
        let Some(pod) = self.pods.get(id) else {
            return ChangeScope::None;
        };
        let mut pod = pod.clone();
        let finished = pod.metadata.deletion_timestamp.is_some()
            || matches!(
                pod.status.as_ref().and_then(|s| s.phase.as_deref()),
                Some("Succeeded" | "Failed")
            );
        let status = pod.status.get_or_insert_with(PodStatus::default);
        if finished {
            status.pod_ip = None;
        } else if status.pod_ip.as_deref().is_none_or(str::is_empty) {
            status.pod_ip = self
                .slice_addresses
                .get(id)
                .and_then(|by_slice| by_slice.values().next().cloned());
        }
        let node_locality = (pod.spec.as_ref())
            .and_then(|s| s.node_name.as_ref())
            .and_then(|n| self.nodes.get(n).cloned().flatten());
        match trellis_model::Workload::from_pod(&pod) {
            Some(mut workload) => {
                if workload.locality.is_none() {
                    workload.locality = node_locality;
                }
                self.model_apply(trellis_model::Resource::Workload(Box::new(workload)))
            }
            // No address: the model forgets the pod.
            None => self.model_apply(trellis_model::Resource::Pod(Box::new(pod))),
        }
    }

    /// An EndpointSlice was added, changed (`old` and `new`) or removed: the
    /// addresses it gives pods, and the endpoints it lists for its Service.
    fn slice_changed(
        &mut self,
        slice: &NsName,
        old: Option<&EndpointSlice>,
        new: Option<&EndpointSlice>,
    ) -> ChangeScope {
        let scope = self.reindex_slice(slice, old, new);
        scope.union(self.program_listed_endpoints(slice, old, new))
    }

    /// Feeds the endpoints that hand-written (or other controllers') slices list
    /// for a Service, recomputed from all its slices when one of them changed.
    fn program_listed_endpoints(
        &mut self,
        slice: &NsName,
        old: Option<&EndpointSlice>,
        new: Option<&EndpointSlice>,
    ) -> ChangeScope {
        let (before, after) = (old.and_then(listing_for), new.and_then(listing_for));
        if let Some(service) = &before
            && let Some(slices) = self.listings.get_mut(service)
        {
            slices.remove(slice);
            if slices.is_empty() {
                self.listings.remove(service);
            }
        }
        if let Some(service) = &after {
            self.listings
                .entry(service.clone())
                .or_default()
                .insert(slice.clone());
        }
        let services: BTreeSet<NsName> = before.into_iter().chain(after).collect();
        let mut scope = ChangeScope::None;
        for service in services {
            scope = scope.union(self.program_listing(service));
        }
        scope
    }

    /// Feeds the endpoints all of `service`'s listing slices give it, each with
    /// the locality of its node.
    fn program_listing(&mut self, service: NsName) -> ChangeScope {
        let mut endpoints: Vec<StaticEndpoint> = self
            .listings
            .get(&service)
            .into_iter()
            .flatten()
            .filter_map(|id| self.slices.get(id))
            .flat_map(|slice| listed_endpoints(slice, &self.nodes))
            .collect();
        endpoints.sort();
        endpoints.dedup();
        let (namespace, service) = service;
        self.model_apply(trellis_model::Resource::ServiceEndpoints {
            namespace,
            service,
            endpoints,
        })
    }

    fn reindex_slice(
        &mut self,
        slice: &NsName,
        old: Option<&EndpointSlice>,
        new: Option<&EndpointSlice>,
    ) -> ChangeScope {
        let mut touched: BTreeSet<NsName> = BTreeSet::new();
        if let Some(old) = old {
            for (pod, _) in slice_pod_addresses(old) {
                if let Some(by_slice) = self.slice_addresses.get_mut(&pod) {
                    by_slice.remove(slice);
                    if by_slice.is_empty() {
                        self.slice_addresses.remove(&pod);
                    }
                }
                touched.insert(pod);
            }
        }
        if let Some(new) = new {
            for (pod, address) in slice_pod_addresses(new) {
                self.slice_addresses
                    .entry(pod.clone())
                    .or_default()
                    .insert(slice.clone(), address);
                touched.insert(pod);
            }
        }
        let mut scope = ChangeScope::None;
        for pod in touched {
            scope = scope.union(self.program_pod(&pod));
        }
        scope
    }
}

/// Who manages the slices Kubernetes derives from a Service's selector (their
/// endpoints are pods, which the model already has).
const SELECTOR_SLICE_MANAGER: &str = "endpointslice-controller.k8s.io";

/// The Service an EndpointSlice lists endpoints for, unless Kubernetes derived
/// the slice from the Service's selector. FQDN slices are left out: their
/// addresses are names, which an EDS endpoint cannot carry.
fn listing_for(slice: &EndpointSlice) -> Option<NsName> {
    if slice.address_type == "FQDN" {
        return None;
    }
    let labels = slice.metadata.labels.as_ref()?;
    if labels
        .get("endpointslice.kubernetes.io/managed-by")
        .map(String::as_str)
        == Some(SELECTOR_SLICE_MANAGER)
    {
        return None;
    }
    let service = labels.get("kubernetes.io/service-name")?.clone();
    Some((
        slice.metadata.namespace.clone().unwrap_or_default(),
        service,
    ))
}

/// The ready (or not known unready) endpoints of a slice, with the slice's ports
/// by name: what a Service without a selector serves. An endpoint's locality is
/// its node's (`nodeName`), as a pod's is; its `zone` alone is not used, since a
/// locality without its region would rank it as another region's.
fn listed_endpoints(
    slice: &EndpointSlice,
    nodes: &BTreeMap<String, Option<String>>,
) -> Vec<StaticEndpoint> {
    let ports: BTreeMap<String, u16> = slice
        .ports
        .iter()
        .flatten()
        .filter_map(|p| {
            let port = u16::try_from(p.port?).ok().filter(|p| *p > 0)?;
            Some((p.name.clone().unwrap_or_default(), port))
        })
        .collect();
    slice
        .endpoints
        .iter()
        .filter(|e| ready(e))
        .filter_map(|e| {
            Some(StaticEndpoint {
                address: e.addresses.first()?.clone(),
                ports: ports.clone(),
                locality: (e.node_name.as_ref()).and_then(|n| nodes.get(n).cloned().flatten()),
                ..Default::default()
            })
        })
        .collect()
}

/// Ready, or not known to be unready.
fn ready(endpoint: &k8s_openapi::api::discovery::v1::Endpoint) -> bool {
    endpoint.conditions.as_ref().and_then(|c| c.ready) != Some(false)
}

fn ns_name(key: &ObjectRef) -> NsName {
    (key.namespace.clone().unwrap_or_default(), key.name.clone())
}

/// (pod, address) for every ready-or-unknown endpoint of a slice that names its pod.
fn slice_pod_addresses(slice: &EndpointSlice) -> Vec<(NsName, String)> {
    let slice_ns = slice.metadata.namespace.clone().unwrap_or_default();
    slice
        .endpoints
        .iter()
        .filter(|e| ready(e))
        .filter_map(|e| {
            let target = e.target_ref.as_ref()?;
            if target.kind.as_deref() != Some("Pod") {
                return None;
            }
            let name = target.name.clone()?;
            let ns = target.namespace.clone().unwrap_or_else(|| slice_ns.clone());
            let address = e.addresses.first()?.clone();
            Some(((ns, name), address))
        })
        .collect()
}

/// The model's settings from a MeshConfig over the operator's base settings.
pub fn settings_from(spec: &MeshConfigSpec, base: &MeshSettings) -> MeshSettings {
    let mut s = base.clone();
    // Unset: the operator's own trust domain (its flag), not the built-in default.
    if let Some(td) = &spec.trust_domain {
        s.trust_domain = td.clone();
    }
    s.default_mtls = spec
        .default_mtls_mode
        .as_ref()
        .and_then(mtls_mode)
        .unwrap_or(MtlsMode::Permissive);
    s.outbound_policy = match spec.outbound_traffic_policy.as_ref().and_then(|p| p.mode) {
        Some(OutboundTrafficPolicyMode::RegistryOnly) => OutboundPolicy::RegistryOnly,
        Some(OutboundTrafficPolicyMode::AllowAny) | None => OutboundPolicy::AllowAny,
    };
    s.extension_providers = spec.extension_providers.clone();
    s.access_log = trellis_model::AccessLog::from_spec(spec);
    s.locality_lb = spec.locality_lb_setting.clone();
    s
}

/// The model's mode for an API mode; `UNSET` inherits (None).
fn mtls_mode(mode: &MutualTLSMode) -> Option<MtlsMode> {
    match mode {
        MutualTLSMode::Strict => Some(MtlsMode::Strict),
        MutualTLSMode::Permissive => Some(MtlsMode::Permissive),
        MutualTLSMode::Disable => Some(MtlsMode::Disable),
        MutualTLSMode::Unset => None,
    }
}

/// The xDS push for a model change: every proxy the scope names (sidecar and
/// gateway identities of its workloads), or `None` when nothing changed.
pub fn push_scope(model: &MeshModel, scope: &ChangeScope) -> Option<PushScope> {
    match scope {
        ChangeScope::None => None,
        ChangeScope::All => Some(PushScope::All),
        ChangeScope::Namespaces(_) | ChangeScope::Proxies(_) => {
            let mut proxies = BTreeSet::new();
            for w in model.workloads() {
                if scope.affects(&w.namespace, &w.name) {
                    for kind in [ProxyKind::Sidecar, ProxyKind::Gateway] {
                        proxies.insert(ProxyId::new(
                            kind,
                            &w.namespace,
                            &w.name,
                            &w.service_account,
                        ));
                    }
                }
            }
            Some(PushScope::Proxies(proxies))
        }
    }
}

#[cfg(test)]
mod tests;
