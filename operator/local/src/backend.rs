//! The [`MeshBackend`] of `trellis up`: the directory's objects feed the mesh
//! model, and every proxy's snapshot is the translator's output for it in the
//! explicit (universal mode) listener shape, packed for the xDS server.
//!
//! The model is rebuilt from all objects on every change (a local mesh is
//! small); the xDS server then pushes only to proxies whose output hash changed.
//! Workload certificates reach Envoy through the file-based SDS files the fleet
//! writes next to each bootstrap, so the translator is given those paths per proxy.
use crate::assignments::{Assignments, free_local_port};
use crate::bootstrap::SdsFiles;
use crate::config_set::ResourceChange;
use crate::mesh::MeshBackend;
use crate::plan::APP_PORT_ANNOTATION;
use crate::state::StateDir;
use crate::status::ConfigError;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, RwLock};
use trellis_api::networking::OutboundTrafficPolicyMode;
use trellis_api::security::MutualTLSMode;
use trellis_api::{ObjectRef, Resource};
use trellis_model::{MeshModel, MeshSettings, MtlsMode, OutboundPolicy, Workload};
use trellis_translate::credential_uses::credential_findings;
use trellis_translate::encode::pack;
use trellis_translate::{
    ExplicitPorts, ListenerShape, Proxy, SdsSource, SecretRef, TranslateError, TranslateOptions,
    Translator,
};
use trellis_xds::{
    ProxyId, ProxyKind, PushScope, ResourceCache, Snapshot, SnapshotSource, XdsError,
};

/// Settings of the universal-mode translation.
#[derive(Debug, Clone)]
pub struct BackendOptions {
    pub state_dir: PathBuf,
    pub trust_domain: String,
    pub dns_domain: String,
    /// The outbound HTTP proxy port of every sidecar (on its own address).
    pub outbound_http_port: u16,
    /// Added to Gateway ports below 1024 (0 when running as root).
    pub privileged_port_offset: u16,
}

/// Model + translator behind `trellis up`.
pub struct ModelBackend {
    shared: Arc<Shared>,
}

struct Shared {
    options: BackendOptions,
    state: StateDir,
    cache: ResourceCache,
    objects: Mutex<BTreeMap<ObjectRef, Resource>>,
    current: RwLock<Current>,
    /// Translation problems per proxy (`namespace/name`), from its last snapshot.
    translate_errors: Mutex<BTreeMap<String, Vec<TranslateError>>>,
}

#[derive(Default)]
struct Current {
    model: Arc<MeshModel>,
    tcp_ports: BTreeMap<(String, u16), u16>,
    model_errors: Vec<ConfigError>,
}

/// The file (in the state directory) keeping each TCP service's outbound port.
pub const OUTBOUND_PORTS_FILE: &str = "outbound-ports.json";

impl ModelBackend {
    pub fn new(options: BackendOptions) -> crate::error::Result<Self> {
        let state = StateDir::open(&options.state_dir)?;
        let shared = Shared {
            options,
            state,
            cache: ResourceCache::new(),
            objects: Mutex::new(BTreeMap::new()),
            current: RwLock::new(Current::default()),
            translate_errors: Mutex::new(BTreeMap::new()),
        };
        Ok(ModelBackend {
            shared: Arc::new(shared),
        })
    }

    /// The outbound TCP ports: `(service FQDN, service port) -> port` on every sidecar address.
    pub fn tcp_outbound_ports(&self) -> BTreeMap<(String, u16), u16> {
        self.shared
            .current
            .read()
            .map(|c| c.tcp_ports.clone())
            .unwrap_or_default()
    }
}

impl MeshBackend for ModelBackend {
    fn apply(&self, changes: &[ResourceChange]) -> PushScope {
        let objects: Vec<Resource> = {
            let Ok(mut objects) = self.shared.objects.lock() else {
                return PushScope::All;
            };
            for change in changes {
                match change {
                    ResourceChange::Apply(r) => {
                        objects.insert(r.object_ref(), (**r).clone());
                    }
                    ResourceChange::Delete(key) => {
                        objects.remove(key);
                    }
                }
            }
            objects.values().cloned().collect()
        };
        let (model, mut model_errors) = build_model(&objects, &self.shared.options);
        let tcp_ports = match assign_tcp_ports(&self.shared.state, &model) {
            Ok(ports) => ports,
            Err(e) => {
                model_errors.push(ConfigError {
                    file: String::new(),
                    kind: None,
                    namespace: None,
                    name: None,
                    field: None,
                    message: format!("outbound TCP ports: {e}"),
                });
                BTreeMap::new()
            }
        };
        if let Ok(mut errors) = self.shared.translate_errors.lock() {
            // Proxies whose workload left no longer report translation errors.
            errors.retain(|key, _| {
                key.split_once('/')
                    .is_some_and(|(ns, name)| model.workload(ns, name).is_some())
            });
        }
        if let Ok(mut current) = self.shared.current.write() {
            *current = Current {
                model: Arc::new(model),
                tcp_ports,
                model_errors,
            };
        }
        // Every proxy is re-translated; the server sends only changed output.
        PushScope::All
    }

    fn snapshot_source(&self) -> Arc<dyn SnapshotSource> {
        Arc::new(Source(self.shared.clone()))
    }

    fn config_errors(&self) -> Vec<ConfigError> {
        let mut out = self
            .shared
            .current
            .read()
            .map(|c| c.model_errors.clone())
            .unwrap_or_default();
        let mut seen = std::collections::BTreeSet::new();
        if let Ok(errors) = self.shared.translate_errors.lock() {
            for e in errors.values().flatten() {
                if seen.insert(e.clone()) {
                    out.push(ConfigError {
                        file: String::new(),
                        kind: Some(e.kind.clone()),
                        namespace: Some(e.namespace.clone()),
                        name: Some(e.name.clone()),
                        field: (!e.path.is_empty()).then(|| e.path.clone()),
                        message: e.message.clone(),
                    });
                }
            }
        }
        out
    }
}

struct Source(Arc<Shared>);

impl SnapshotSource for Source {
    fn snapshot(&self, proxy: &ProxyId) -> Result<Snapshot, XdsError> {
        let shared = &self.0;
        let (model, tcp_ports) = {
            let current = shared.current.read().map_err(|_| XdsError::Snapshot {
                proxy: format!("{}/{}", proxy.namespace, proxy.name),
                reason: "model lock poisoned".into(),
            })?;
            (current.model.clone(), current.tcp_ports.clone())
        };
        let sds = SdsFiles::in_dir(
            &shared
                .state
                .bootstrap_dir()
                .join(&proxy.namespace)
                .join(&proxy.name),
        );
        let options = TranslateOptions {
            shape: ListenerShape::Explicit(ExplicitPorts {
                outbound_http_port: shared.options.outbound_http_port,
                tcp_outbound_ports: tcp_ports,
                privileged_port_offset: shared.options.privileged_port_offset,
            }),
            sds: SdsSource::Files {
                workload_cert_file: sds.workload_cert.to_string_lossy().into_owned(),
                trust_bundle_file: sds.root_ca.to_string_lossy().into_owned(),
                watched_directory: None,
            },
        };
        let target = match proxy.kind {
            ProxyKind::Sidecar => Proxy::sidecar(&proxy.namespace, &proxy.name),
            ProxyKind::Gateway => Proxy::gateway(&proxy.namespace, &proxy.name),
        };
        let out = Translator::new(&model, options).translate(&target);
        let mut found = out.errors.clone();
        found.extend(unservable_credentials(&model, &target, &out.secrets));
        if let Ok(mut errors) = shared.translate_errors.lock() {
            errors.insert(format!("{}/{}", proxy.namespace, proxy.name), found);
        }
        let mut builder = Snapshot::builder();
        for l in &out.listeners {
            builder.add(l.name.clone(), pack(&**l))?;
        }
        for r in &out.routes {
            builder.add(r.name().to_string(), r.any().clone())?;
        }
        for c in &out.clusters {
            builder.add(c.name.clone(), pack(&**c))?;
        }
        for e in &out.endpoints {
            builder.add(e.cluster_name.clone(), pack(&**e))?;
        }
        Ok(builder.build(&shared.cache))
    }
}

/// Universal mode reads no Kubernetes Secrets, so a `credentialName` the
/// proxy references is never served and what needs it waits: a finding on
/// every field that names one.
fn unservable_credentials(
    model: &MeshModel,
    proxy: &Proxy,
    secrets: &[SecretRef],
) -> Vec<TranslateError> {
    let Some(w) = model.workload(&proxy.namespace, &proxy.name) else {
        return Vec::new();
    };
    let gateway = proxy.kind == trellis_translate::ProxyKind::Gateway;
    let why = "universal mode reads no Kubernetes Secrets; use certificate files \
               (serverCertificate and privateKey; clientCertificate, privateKey and caCertificates)";
    let mut found = Vec::new();
    for secret in secrets {
        if let SecretRef::Credential { name, .. } = secret {
            found.extend(credential_findings(model, w, gateway, name, why));
        }
    }
    found
}

fn error_at(kind: &str, r: &Resource, field: &str, message: String) -> ConfigError {
    let o = r.object_ref();
    ConfigError {
        file: String::new(),
        kind: Some(kind.to_string()),
        namespace: o.namespace,
        name: Some(o.name),
        field: (!field.is_empty()).then(|| field.to_string()),
        message,
    }
}

fn mtls(mode: &MutualTLSMode) -> Option<MtlsMode> {
    match mode {
        MutualTLSMode::Unset => None,
        MutualTLSMode::Disable => Some(MtlsMode::Disable),
        MutualTLSMode::Permissive => Some(MtlsMode::Permissive),
        MutualTLSMode::Strict => Some(MtlsMode::Strict),
    }
}

/// The mesh-wide settings: the MeshConfig, then a selector-less PeerAuthentication
/// in the root namespace (Istio's mesh-wide policy) for the default mTLS mode.
fn settings(objects: &[Resource], options: &BackendOptions) -> MeshSettings {
    let mut s = MeshSettings {
        trust_domain: options.trust_domain.clone(),
        cluster_domain: options.dns_domain.clone(),
        ..MeshSettings::default()
    };
    for r in objects {
        if let Resource::MeshConfig(mc) = r {
            s.extension_providers = mc.spec.extension_providers.clone();
            s.access_log = trellis_model::AccessLog::from_spec(&mc.spec);
            s.locality_lb = mc.spec.locality_lb_setting.clone();
            if let Some(mode) = mc.spec.default_mtls_mode.as_ref().and_then(mtls) {
                s.default_mtls = mode;
            }
            if let Some(mode) = mc
                .spec
                .outbound_traffic_policy
                .as_ref()
                .and_then(|p| p.mode)
            {
                s.outbound_policy = match mode {
                    OutboundTrafficPolicyMode::RegistryOnly => OutboundPolicy::RegistryOnly,
                    OutboundTrafficPolicyMode::AllowAny => OutboundPolicy::AllowAny,
                };
            }
        }
    }
    for r in objects {
        if let Resource::PeerAuthentication(pa) = r
            && pa.metadata.namespace.as_deref() == Some(s.root_namespace.as_str())
            && pa.spec.selector.is_none()
            && let Some(mode) = pa
                .spec
                .mtls
                .as_ref()
                .and_then(|m| m.mode.as_ref())
                .and_then(mtls)
        {
            s.default_mtls = mode;
        }
    }
    s
}

/// Builds the model from every object of the directory.
pub fn build_model(
    objects: &[Resource],
    options: &BackendOptions,
) -> (MeshModel, Vec<ConfigError>) {
    use trellis_model::Resource as M;
    let mut model = MeshModel::new(settings(objects, options));
    let mut errors = Vec::new();
    for r in objects {
        if let Resource::MeshConfig(mc) = r
            && let Some(td) = &mc.spec.trust_domain
            && td != &options.trust_domain
        {
            errors.push(error_at(
                "MeshConfig",
                r,
                "spec.trustDomain",
                format!(
                    "{td:?} differs from the trust domain this `trellis up` runs with ({:?}), \
                     which identities and policies use; restart with --trust-domain {td}",
                    options.trust_domain
                ),
            ));
        }
    }
    let mut apply = |model: &mut MeshModel, r: &Resource, m: M| {
        if let Err(e) = model.apply(m) {
            errors.push(error_at(r.kind(), r, "", e.to_string()));
        }
    };
    for r in objects {
        match r {
            Resource::Service(s) => apply(&mut model, r, M::Service(Box::new(s.clone()))),
            Resource::ServiceEntry(se) => {
                apply(&mut model, r, M::ServiceEntry(Box::new(se.clone())))
            }
            Resource::ServiceAccount(sa) => {
                let namespace = sa
                    .metadata
                    .namespace
                    .clone()
                    .unwrap_or_else(|| "default".into());
                let name = sa.metadata.name.clone().unwrap_or_default();
                apply(&mut model, r, M::ServiceAccount { namespace, name });
            }
            _ => {}
        }
    }
    for r in objects {
        let Resource::WorkloadEntry(we) = r else {
            continue;
        };
        let Some(mut w) = Workload::from_workload_entry(we) else {
            continue; // a missing or bad address is reported by the plan
        };
        // Universal mode runs a sidecar for every WorkloadEntry.
        w.has_sidecar = true;
        let app_port = we
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(APP_PORT_ANNOTATION))
            .and_then(|v| v.parse::<u16>().ok());
        if let Some(app) = app_port {
            // The sidecar serves every target port on the workload address and
            // forwards to the one port the app listens on (127.0.0.1).
            let targets: Vec<u16> = model
                .services_of(&w)
                .iter()
                .flat_map(|s| s.ports.iter())
                .filter_map(|p| w.target_port(p))
                .collect();
            for t in targets {
                w.app_ports.insert(t, app);
            }
        }
        apply(&mut model, r, M::Workload(Box::new(w)));
    }
    for r in objects {
        match r {
            Resource::VirtualService(vs) => {
                apply(&mut model, r, M::VirtualService(Box::new(vs.clone())))
            }
            Resource::DestinationRule(dr) => {
                apply(&mut model, r, M::DestinationRule(Box::new(dr.clone())))
            }
            Resource::Gateway(g) => apply(&mut model, r, M::Gateway(Box::new(g.clone()))),
            Resource::Sidecar(sc) => apply(&mut model, r, M::Sidecar(Box::new(sc.clone()))),
            Resource::RequestAuthentication(ra) => apply(
                &mut model,
                r,
                M::RequestAuthentication(Box::new(ra.clone())),
            ),
            Resource::AuthorizationPolicy(ap) => {
                apply(&mut model, r, M::AuthorizationPolicy(Box::new(ap.clone())))
            }
            // The mesh-wide one is in the settings; the rest apply per workload port.
            Resource::PeerAuthentication(pa)
                if pa.metadata.namespace.as_deref()
                    != Some(model.settings().root_namespace.as_str())
                    || pa.spec.selector.is_some() =>
            {
                apply(&mut model, r, M::PeerAuthentication(Box::new(pa.clone())))
            }
            _ => {}
        }
    }
    (model, errors)
}

/// Gives every TCP service port an outbound port, kept across restarts.
fn assign_tcp_ports(
    state: &StateDir,
    model: &MeshModel,
) -> crate::error::Result<BTreeMap<(String, u16), u16>> {
    let path = state.root().join(OUTBOUND_PORTS_FILE);
    let mut assignments = Assignments::load(&path)?;
    let mut out = BTreeMap::new();
    let mut in_use = std::collections::BTreeSet::new();
    for service in model.registry().services() {
        for port in &service.ports {
            if port.protocol.is_http() {
                continue;
            }
            let key = format!("tcp/{}:{}", service.hostname, port.port);
            let local = assignments.port_for(&key, free_local_port)?;
            in_use.insert(key);
            out.insert((service.hostname.clone(), port.port), local);
        }
    }
    assignments.retain_prefixed("tcp/", &in_use);
    assignments.save(&path)?;
    Ok(out)
}
