//! [`inject`]: a pod in, the injected pod and the JSONPatch between them out.

use crate::InjectError;
use crate::capture::{self, CaptureOptions, Selection};
use crate::containers::{
    self, DEFAULT_PROXY_IMAGE, GATEWAY_CONTAINER_NAME, INIT_CONTAINER_NAME, PROXY_CONTAINER_NAME,
    gateway_container, identity_volume, init_container, proxy_container, shared_volumes,
};
use crate::select::{InjectDecision, should_inject};
use k8s_openapi::api::core::v1::{Container, Pod, Probe, ResourceRequirements, Sysctl};
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
/// Istio's choice of injection template: `sidecar` (the default) or `gateway`.
pub const TEMPLATES_ANNOTATION: &str = "inject.istio.io/templates";
/// The sysctl a gateway pod gets so that its non-root proxy can bind ports
/// below 1024 (80, 443), as Istio's gateway chart sets it.
pub const UNPRIVILEGED_PORT_SYSCTL: &str = "net.ipv4.ip_unprivileged_port_start";

/// What injection makes of a pod, from its [`TEMPLATES_ANNOTATION`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Template {
    /// The application's sidecar: traffic capture and the proxy beside the app.
    Sidecar,
    /// A gateway: the pod's `istio-proxy` container becomes Envoy running as
    /// a router (node id `router~…`); no capture, no init container.
    Gateway,
}

/// The pod's template: [`Template::Sidecar`] when the annotation is absent; a
/// value other than `sidecar` or `gateway` (Istio's lists of templates and
/// custom templates included) is an error naming the pod and the annotation.
pub fn template(
    object: &str,
    annotations: Option<&BTreeMap<String, String>>,
) -> Result<Template, InjectError> {
    match annotations
        .and_then(|a| a.get(TEMPLATES_ANNOTATION))
        .map(String::as_str)
    {
        None | Some("sidecar") => Ok(Template::Sidecar),
        Some("gateway") => Ok(Template::Gateway),
        Some(other) => Err(InjectError::InvalidAnnotation {
            object: object.into(),
            annotation: TEMPLATES_ANNOTATION.into(),
            value: other.into(),
            reason: "Trellis injects only the templates \"sidecar\" and \"gateway\"".into(),
        }),
    }
}

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
    let (out, plan) = apply(pod, ctx)?;
    let already_injected = plan.is_none();
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
    let mut patch = json_patch::diff(&to_json(pod)?, &to_json(&out)?);
    if let Some(Plan::Gateway(GatewayAdditions {
        replaces: Some(index),
        ..
    })) = plan
    {
        replace_whole_container(&mut patch, &out, index, &object)?;
    }
    Ok(InjectOutcome {
        pod: out,
        patch,
        already_injected,
    })
}

/// Makes the operations of `patch` on container `index` one `replace` of the
/// whole container with the one of `out`: the diff changes only the fields
/// our types know, so a field of the received `istio-proxy` container they do
/// not know would otherwise survive into the gateway proxy.
fn replace_whole_container(
    patch: &mut json_patch::Patch,
    out: &Pod,
    index: usize,
    object: &str,
) -> Result<(), InjectError> {
    use json_patch::jsonptr::PointerBuf;
    let path =
        PointerBuf::from_tokens(["spec".to_string(), "containers".into(), index.to_string()]);
    let under = format!("{}/", path.as_str());
    let container = out
        .spec
        .as_ref()
        .and_then(|s| s.containers.get(index))
        .map(serde_json::to_value)
        .transpose()
        .map_err(|e| InjectError::Serialize {
            object: object.into(),
            message: e.to_string(),
        })?
        .ok_or_else(|| InjectError::Serialize {
            object: object.into(),
            message: format!("no container {index} in the injected pod"),
        })?;
    patch.0.retain(|op| {
        let p = op.path().as_str();
        p != path.as_str() && !p.starts_with(&under)
    });
    patch.0.insert(
        0,
        json_patch::PatchOperation::Replace(json_patch::ReplaceOperation {
            path,
            value: container,
        }),
    );
    Ok(())
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

/// What injection adds to a gateway pod (see [`Template::Gateway`]): the
/// gateway proxy [`InjectionContext::gateway_container`] in place of the
/// container named `istio-proxy` (or appended when there is none), the same
/// volumes as a sidecar's, these annotations, and, on the pod's security
/// context, [`UNPRIVILEGED_PORT_SYSCTL`] `=0` unless the pod sets it already
/// or uses the host's network (where Kubernetes refuses `net.*` sysctls).
#[derive(Debug, Clone, PartialEq)]
pub struct GatewayAdditions {
    /// Index among the containers of the `istio-proxy` container replaced;
    /// `None`: the proxy is appended.
    pub replaces: Option<usize>,
    /// Whose identity the pod gets (`default` when the pod names none).
    pub service_account: String,
    /// Set, overwriting a member of the same key.
    pub annotations: Vec<(&'static str, String)>,
}

/// What injection adds to a pod, by its [`Template`].
#[derive(Debug, Clone, PartialEq)]
pub enum Plan {
    Sidecar(Additions),
    Gateway(GatewayAdditions),
}

impl InjectionContext {
    /// The gateway proxy, keeping the ports and resources of `user`, the
    /// `istio-proxy` container it replaces (see [`GatewayAdditions`]).
    pub fn gateway_container(&self, user: Option<&Container>) -> Container {
        gateway_container(
            &self.proxy_image,
            self.proxy_resources.clone(),
            &self.proxy_log_level,
            user,
        )
    }

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

/// `sidecar.istio.io/status` of a gateway pod.
fn gateway_status_annotation() -> &'static str {
    static RENDERED: std::sync::LazyLock<String> = std::sync::LazyLock::new(|| {
        serde_json::json!({
            "initContainers": [],
            "containers": [GATEWAY_CONTAINER_NAME],
            "volumes": containers::VOLUME_NAMES,
            "imagePullSecrets": null,
            "revision": "default",
        })
        .to_string()
    });
    &RENDERED
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

/// The additions for a pod, by its [`Template`], or `None` when it is already
/// injected (it carries [`STATUS_ANNOTATION`] or a container named
/// `trellis-proxy`).
pub fn plan(pod: &PodFacts, ctx: &InjectionContext) -> Result<Option<Plan>, InjectError> {
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
    let service_account = pod
        .service_account
        .filter(|s| !s.is_empty())
        .unwrap_or("default")
        .to_string();
    if template(pod.object, Some(annotations))? == Template::Gateway {
        // The gateway is the pod's main container: no capture, so the traffic
        // annotations and the native-sidecar choice do not apply.
        let replaces = pod
            .containers
            .iter()
            .position(|c| c.name == GATEWAY_CONTAINER_NAME);
        let mut added = vec![(STATUS_ANNOTATION, gateway_status_annotation().to_string())];
        // As Istio's gateway template: the first other container, if any, is
        // the default of `kubectl logs`/`exec`.
        if let Some(app) = pod
            .containers
            .iter()
            .find(|c| c.name != GATEWAY_CONTAINER_NAME)
            && !annotations.contains_key(DEFAULT_CONTAINER_ANNOTATION)
        {
            added.push((DEFAULT_CONTAINER_ANNOTATION, app.name.clone()));
        }
        return Ok(Some(Plan::Gateway(GatewayAdditions {
            replaces,
            service_account,
            annotations: added,
        })));
    }
    let capture = capture_options(pod.object, annotations, pod.containers)?;
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
    Ok(Some(Plan::Sidecar(Additions {
        init_args: capture.to_args(),
        proxy,
        service_account,
        annotations: added_annotations,
        labels: vec![(TLS_MODE_LABEL, "istio")],
    })))
}

/// [`inject`] without the patch: the injected pod, and whether the input was
/// already injected (then it is returned as it was). Sidecar injection only
/// appends init containers, containers and volumes, and adds annotations and
/// labels; gateway injection replaces the `istio-proxy` container and sets a
/// sysctl too (see [`GatewayAdditions`]).
pub fn inject_pod(pod: &Pod, ctx: &InjectionContext) -> Result<(Pod, bool), InjectError> {
    let (out, plan) = apply(pod, ctx)?;
    Ok((out, plan.is_none()))
}

/// The injected pod and the plan it followed (`None`: already injected).
fn apply(pod: &Pod, ctx: &InjectionContext) -> Result<(Pod, Option<Plan>), InjectError> {
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
    let additions = match plan(&facts, ctx)? {
        None => return Ok((pod.clone(), None)),
        Some(Plan::Gateway(gateway)) => {
            let out = apply_gateway(pod, &gateway, ctx);
            return Ok((out, Some(Plan::Gateway(gateway))));
        }
        Some(Plan::Sidecar(additions)) => additions,
    };
    let planned = Plan::Sidecar(additions.clone());
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
    Ok((out, Some(planned)))
}

/// `pod` with `additions` made (its spec checked by the caller).
fn apply_gateway(pod: &Pod, additions: &GatewayAdditions, ctx: &InjectionContext) -> Pod {
    let mut out = pod.clone();
    let Some(spec) = out.spec.as_mut() else {
        return out;
    };
    match additions.replaces.and_then(|i| spec.containers.get_mut(i)) {
        Some(user) => {
            let proxy = ctx.gateway_container(Some(user));
            *user = proxy;
        }
        None => spec.containers.push(ctx.gateway_container(None)),
    }
    let volumes = spec.volumes.get_or_insert_with(Vec::new);
    volumes.push(identity_volume(&additions.service_account));
    volumes.extend(shared_volumes());
    if spec.host_network != Some(true) {
        let sysctls = spec
            .security_context
            .get_or_insert_with(Default::default)
            .sysctls
            .get_or_insert_with(Vec::new);
        if !sysctls.iter().any(|s| s.name == UNPRIVILEGED_PORT_SYSCTL) {
            sysctls.push(Sysctl {
                name: UNPRIVILEGED_PORT_SYSCTL.into(),
                value: "0".into(),
            });
        }
    }
    let annotations = out
        .metadata
        .annotations
        .get_or_insert_with(Default::default);
    for (key, value) in &additions.annotations {
        annotations.insert((*key).into(), value.clone());
    }
    out
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
