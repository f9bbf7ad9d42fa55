//! [`inject`]: a pod in, the injected pod and the JSONPatch between them out.

use crate::InjectError;
use crate::capture::{self, CaptureOptions, Selection};
use crate::containers::{
    self, DEFAULT_PROXY_IMAGE, INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME, identity_volume,
    init_container, proxy_container, shared_volumes,
};
use crate::select::{InjectDecision, should_inject};
use k8s_openapi::api::core::v1::{Container, Pod, Probe, ResourceRequirements};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use std::collections::BTreeMap;
use trellis_api::mesh::MeshConfigSpec;

/// Records what was added (Istio's annotation; its presence makes injection a no-op).
pub const STATUS_ANNOTATION: &str = "sidecar.istio.io/status";
/// Marks the pod's endpoints as mTLS-capable for auto mTLS.
pub const TLS_MODE_LABEL: &str = "security.istio.io/tlsMode";
const DEFAULT_CONTAINER_ANNOTATION: &str = "kubectl.kubernetes.io/default-container";

const ANN_EXCLUDE_OUTBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeOutboundPorts";
const ANN_EXCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/excludeInboundPorts";
const ANN_EXCLUDE_OUTBOUND_RANGES: &str = "traffic.sidecar.istio.io/excludeOutboundIPRanges";
const ANN_INCLUDE_OUTBOUND_RANGES: &str = "traffic.sidecar.istio.io/includeOutboundIPRanges";
const ANN_INCLUDE_INBOUND_PORTS: &str = "traffic.sidecar.istio.io/includeInboundPorts";
/// Istio's per-pod choice of a Kubernetes native sidecar ("true"/"false").
pub const NATIVE_SIDECAR_ANNOTATION: &str = "sidecar.istio.io/nativeSidecar";

/// Mesh-wide inputs of injection.
#[derive(Debug, Clone, PartialEq)]
pub struct InjectionContext {
    /// Envoy image of the sidecar.
    pub proxy_image: String,
    pub proxy_resources: Option<ResourceRequirements>,
    pub proxy_log_level: String,
    /// Image of the `trellis` binary, run as `trellis proxy-init`.
    pub init_image: String,
    /// Namespaces never injected (MeshConfig `injection.excludedNamespaces`).
    pub excluded_namespaces: Vec<String>,
    /// Inject the proxy as a Kubernetes native sidecar (an init container
    /// with `restartPolicy: Always` and a startup probe), so application
    /// containers start only once the proxy is ready and Jobs complete.
    /// MeshConfig `injection.holdApplicationUntilProxyStarts`; a pod's
    /// [`NATIVE_SIDECAR_ANNOTATION`] overrides it. Needs Kubernetes 1.29+.
    pub native_sidecar: bool,
}

impl InjectionContext {
    /// Proxy image, resources and log level from MeshConfig (defaults where unset).
    pub fn from_mesh_config(mesh: &MeshConfigSpec, init_image: &str) -> Self {
        let proxy = mesh.proxy.clone().unwrap_or_default();
        let injection = mesh.injection.clone().unwrap_or_default();
        InjectionContext {
            proxy_image: proxy.image.unwrap_or_else(|| DEFAULT_PROXY_IMAGE.into()),
            proxy_resources: proxy.resources,
            proxy_log_level: proxy.log_level.unwrap_or_else(|| "warning".into()),
            init_image: init_image.into(),
            excluded_namespaces: injection.excluded_namespaces,
            native_sidecar: injection
                .hold_application_until_proxy_starts
                .unwrap_or(false),
        }
    }

    /// [`should_inject`] for a pod of `namespace`, after the namespaces
    /// MeshConfig excludes.
    pub fn decide(
        &self,
        namespace_labels: &BTreeMap<String, String>,
        pod_labels: &BTreeMap<String, String>,
        pod_annotations: &BTreeMap<String, String>,
        namespace: &str,
        operator_namespace: &str,
    ) -> InjectDecision {
        if self.excluded_namespaces.iter().any(|n| n == namespace) {
            return InjectDecision::Skip("namespace excluded by MeshConfig");
        }
        should_inject(
            namespace_labels,
            pod_labels,
            pod_annotations,
            namespace,
            operator_namespace,
        )
    }
}

/// The injected pod and the RFC 6902 patch from the input to it (empty when
/// the pod was already injected).
#[derive(Debug, Clone, PartialEq)]
pub struct InjectOutcome {
    pub pod: Pod,
    pub patch: json_patch::Patch,
    pub already_injected: bool,
}

fn object_name(pod: &Pod) -> String {
    let ns = pod.metadata.namespace.as_deref().unwrap_or("");
    let name = pod
        .metadata
        .name
        .as_deref()
        .or(pod.metadata.generate_name.as_deref())
        .unwrap_or("");
    format!("Pod/{ns}/{name}")
}

/// Injects the sidecar: the caller has decided with [`crate::should_inject`].
/// A pod carrying [`STATUS_ANNOTATION`] or a container named
/// `trellis-proxy` is returned unchanged.
pub fn inject(pod: &Pod, ctx: &InjectionContext) -> Result<InjectOutcome, InjectError> {
    let (out, already_injected) = inject_pod(pod, ctx)?;
    if already_injected {
        return Ok(InjectOutcome {
            pod: out,
            patch: json_patch::Patch(Vec::new()),
            already_injected,
        });
    }
    let object = object_name(pod);
    let to_json = |p: &Pod| {
        serde_json::to_value(p).map_err(|e| InjectError::Serialize {
            object: object.clone(),
            message: e.to_string(),
        })
    };
    let patch = json_patch::diff(&to_json(pod)?, &to_json(&out)?);
    Ok(InjectOutcome {
        pod: out,
        patch,
        already_injected,
    })
}

/// What injection reads from a pod; the rest of the pod only passes through.
/// The webhook fills it from the few fields it parses, [`inject_pod`] from a
/// whole [`Pod`]: one decision for both.
#[derive(Debug, Clone, Copy)]
pub struct PodFacts<'a> {
    /// `Pod/<namespace>/<name>`, for error messages.
    pub object: &'a str,
    pub annotations: Option<&'a BTreeMap<String, String>>,
    pub service_account: Option<&'a str>,
    /// Names, ports and probes are read.
    pub containers: &'a [Container],
    /// Names are read.
    pub init_containers: &'a [Container],
}

/// Where the proxy goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProxyPlacement {
    /// Appended to the app containers.
    AppContainer,
    /// Appended to the init containers after `trellis-init`, as a Kubernetes
    /// native sidecar (see [`InjectionContext::native_sidecar`]): it starts
    /// once the capture is in place and before every app container, which
    /// waits for its startup probe.
    NativeSidecar,
}

impl ProxyPlacement {
    /// What is appended to the init containers and to the app containers:
    /// `init` always first, `proxy` after it or among the app containers.
    pub fn lists<T>(self, init: T, proxy: T) -> (Vec<T>, Vec<T>) {
        match self {
            ProxyPlacement::AppContainer => (vec![init], vec![proxy]),
            ProxyPlacement::NativeSidecar => (vec![init, proxy], vec![]),
        }
    }
}

/// What injection adds to a pod: items appended to its lists and members set
/// in its maps. Nothing of the pod is changed or removed. Only what differs
/// between pods is here; the rest comes from the [`InjectionContext`]:
/// - the init container [`InjectionContext::init_container`] with `init_args`,
///   appended to the init containers;
/// - the proxy container [`InjectionContext::proxy_container`], placed as
///   `proxy` says;
/// - the volumes [`identity_volume`] of `service_account`, then
///   [`shared_volumes`].
#[derive(Debug, Clone, PartialEq)]
pub struct Additions {
    /// `trellis proxy-init`'s arguments: the pod's traffic capture.
    pub init_args: Vec<String>,
    pub proxy: ProxyPlacement,
    /// Whose identity the pod gets (`default` when the pod names none).
    pub service_account: String,
    /// Set, overwriting a member of the same key.
    pub annotations: Vec<(&'static str, String)>,
    pub labels: Vec<(&'static str, &'static str)>,
}

impl InjectionContext {
    /// `trellis-init` with the pod's capture arguments ([`Additions::init_args`]).
    pub fn init_container(&self, args: Vec<String>) -> Container {
        init_container(&self.init_image, args)
    }

    /// The proxy container, placed as `placement` says.
    pub fn proxy_container(&self, placement: ProxyPlacement) -> Container {
        let proxy = proxy_container(
            &self.proxy_image,
            self.proxy_resources.clone(),
            &self.proxy_log_level,
        );
        match placement {
            ProxyPlacement::AppContainer => proxy,
            ProxyPlacement::NativeSidecar => containers::as_native_sidecar(proxy),
        }
    }
}

/// `sidecar.istio.io/status`: what injection added, by name. The same for
/// every pod with the proxy placed alike, so rendered once.
fn status_annotation(proxy: ProxyPlacement) -> &'static str {
    static RENDERED: std::sync::LazyLock<[String; 2]> = std::sync::LazyLock::new(|| {
        [
            render_status(ProxyPlacement::AppContainer),
            render_status(ProxyPlacement::NativeSidecar),
        ]
    });
    match proxy {
        ProxyPlacement::AppContainer => &RENDERED[0],
        ProxyPlacement::NativeSidecar => &RENDERED[1],
    }
}

fn render_status(proxy: ProxyPlacement) -> String {
    let (init_containers, containers) = proxy.lists(INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME);
    serde_json::json!({
        "initContainers": init_containers,
        "containers": containers,
        "volumes": containers::VOLUME_NAMES,
        "imagePullSecrets": null,
        "revision": "default",
    })
    .to_string()
}

/// The additions for a pod, or `None` when it is already injected (it
/// carries [`STATUS_ANNOTATION`] or a container named `trellis-proxy`).
pub fn plan(pod: &PodFacts, ctx: &InjectionContext) -> Result<Option<Additions>, InjectError> {
    let none = BTreeMap::new();
    let annotations = pod.annotations.unwrap_or(&none);
    let has_proxy = pod
        .containers
        .iter()
        .chain(pod.init_containers)
        .any(|c| c.name == PROXY_CONTAINER_NAME);
    if annotations.contains_key(STATUS_ANNOTATION) || has_proxy {
        return Ok(None);
    }
    let capture = capture_options(pod.object, annotations, pod.containers)?;
    let service_account = pod.service_account.filter(|s| !s.is_empty());
    let proxy = if native_sidecar(pod.object, annotations, ctx)? {
        ProxyPlacement::NativeSidecar
    } else {
        ProxyPlacement::AppContainer
    };
    let mut added_annotations = vec![(STATUS_ANNOTATION, status_annotation(proxy).to_string())];
    if let Some(first) = pod.containers.first()
        && !annotations.contains_key(DEFAULT_CONTAINER_ANNOTATION)
    {
        added_annotations.push((DEFAULT_CONTAINER_ANNOTATION, first.name.clone()));
    }
    Ok(Some(Additions {
        init_args: capture.to_args(),
        proxy,
        service_account: service_account.unwrap_or("default").to_string(),
        annotations: added_annotations,
        labels: vec![(TLS_MODE_LABEL, "istio")],
    }))
}

/// [`inject`] without the patch: the injected pod, and whether the input was
/// already injected (then it is returned as it was). Injection only appends
/// init containers, containers and volumes, and adds annotations and labels.
pub fn inject_pod(pod: &Pod, ctx: &InjectionContext) -> Result<(Pod, bool), InjectError> {
    let object = object_name(pod);
    let Some(spec) = pod.spec.as_ref() else {
        return Err(InjectError::MissingSpec { object });
    };
    let facts = PodFacts {
        object: &object,
        annotations: pod.metadata.annotations.as_ref(),
        service_account: spec.service_account_name.as_deref(),
        containers: &spec.containers,
        init_containers: spec.init_containers.as_deref().unwrap_or_default(),
    };
    let Some(additions) = plan(&facts, ctx)? else {
        return Ok((pod.clone(), true));
    };
    let mut out = pod.clone();
    let spec = out.spec.as_mut().expect("checked above");
    let (init, app) = additions.proxy.lists(
        ctx.init_container(additions.init_args),
        ctx.proxy_container(additions.proxy),
    );
    spec.init_containers
        .get_or_insert_with(Vec::new)
        .extend(init);
    spec.containers.extend(app);
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(identity_volume(&additions.service_account));
    volumes.extend(shared_volumes());
    let annotations = out
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (key, value) in additions.annotations {
        annotations.insert(key.into(), value);
    }
    let labels = out.metadata.labels.get_or_insert_with(Default::default);
    for (key, value) in additions.labels {
        labels.insert(key.into(), value.into());
    }
    Ok((out, false))
}

/// Whether the proxy is a native sidecar: the pod's annotation, else MeshConfig.
fn native_sidecar(
    object: &str,
    annotations: &BTreeMap<String, String>,
    ctx: &InjectionContext,
) -> Result<bool, InjectError> {
    match annotations
        .get(NATIVE_SIDECAR_ANNOTATION)
        .map(String::as_str)
    {
        None => Ok(ctx.native_sidecar),
        Some("true") => Ok(true),
        Some("false") => Ok(false),
        Some(other) => Err(InjectError::InvalidAnnotation {
            object: object.into(),
            annotation: NATIVE_SIDECAR_ANNOTATION.into(),
            value: other.into(),
            reason: "expected \"true\" or \"false\"".into(),
        }),
    }
}

/// The capture options from Istio's traffic annotations, plus the ports of
/// app probes excluded from inbound capture (see the crate docs).
fn capture_options(
    object: &str,
    annotations: &BTreeMap<String, String>,
    containers: &[Container],
) -> Result<CaptureOptions, InjectError> {
    let read = |key: &'static str| annotations.get(key).map(|v| (key, v.as_str()));
    let invalid = |key: &str, value: &str, reason: String| InjectError::InvalidAnnotation {
        object: object.into(),
        annotation: key.into(),
        value: value.into(),
        reason,
    };
    let mut o = CaptureOptions::default();
    if let Some((k, v)) = read(ANN_INCLUDE_INBOUND_PORTS) {
        o.include_inbound_ports = capture::parse_port_selection(v).map_err(|e| invalid(k, v, e))?;
    }
    if let Some((k, v)) = read(ANN_EXCLUDE_INBOUND_PORTS) {
        o.exclude_inbound_ports
            .extend(capture::parse_port_list(v).map_err(|e| invalid(k, v, e))?);
    }
    if let Some((k, v)) = read(ANN_EXCLUDE_OUTBOUND_PORTS) {
        o.exclude_outbound_ports = capture::parse_port_list(v).map_err(|e| invalid(k, v, e))?;
    }
    if let Some((k, v)) = read(ANN_INCLUDE_OUTBOUND_RANGES) {
        o.include_outbound_ip_ranges =
            capture::parse_cidr_selection(v).map_err(|e| invalid(k, v, e))?;
    }
    if let Some((k, v)) = read(ANN_EXCLUDE_OUTBOUND_RANGES) {
        o.exclude_outbound_ip_ranges = capture::parse_cidr_list(v).map_err(|e| invalid(k, v, e))?;
    }
    o.exclude_inbound_ports
        .extend(containers.iter().flat_map(probe_ports));
    o.exclude_inbound_ports.sort_unstable();
    o.exclude_inbound_ports.dedup();
    if let Selection::Only(ports) = &mut o.include_inbound_ports {
        ports.retain(|p| !o.exclude_inbound_ports.contains(p));
    }
    Ok(o)
}

/// The ports a container's probes reach (named ports resolved; unresolvable ones ignored).
fn probe_ports(c: &Container) -> Vec<u16> {
    let resolve = |port: &IntOrString| -> Option<u16> {
        match port {
            IntOrString::Int(n) => u16::try_from(*n).ok().filter(|p| *p != 0),
            IntOrString::String(name) => c
                .ports
                .iter()
                .flatten()
                .find(|p| p.name.as_deref() == Some(name.as_str()))
                .and_then(|p| u16::try_from(p.container_port).ok())
                .filter(|p| *p != 0),
        }
    };
    let of = |p: &Probe| -> Option<u16> {
        if let Some(h) = &p.http_get {
            return resolve(&h.port);
        }
        if let Some(t) = &p.tcp_socket {
            return resolve(&t.port);
        }
        p.grpc
            .as_ref()
            .and_then(|g| u16::try_from(g.port).ok())
            .filter(|p| *p != 0)
    };
    [&c.liveness_probe, &c.readiness_probe, &c.startup_probe]
        .into_iter()
        .flatten()
        .filter_map(of)
        .collect()
}
