//! The mutating webhook: sidecar injection of pods on CREATE.
//!
//! Sidecar pods take the fast path: only the fields injection reads are
//! parsed, and the patch, which only appends, is written from parts rendered
//! once. Gateway pods (`inject.istio.io/templates: gateway`, rare) take the
//! generic path: the whole pod read as its type and injected by
//! trellis-inject's [`trellis_inject::inject`], whose patch replaces the
//! `istio-proxy` container whole.

use crate::review::{AdmissionRequest, Verdict};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Pod, Probe};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use trellis_inject::{
    Additions, InjectDecision, InjectError, InjectionContext, Plan, PodFacts, ProxyPlacement,
    identity_volume, plan, shared_volumes,
};

/// What injection decided, for logs and tests.
#[derive(Debug, Clone, PartialEq)]
pub struct Injection {
    pub verdict: Verdict,
    /// The selection rule that decided, or why nothing was done.
    pub reason: String,
}

fn allow(reason: impl Into<String>) -> Injection {
    Injection {
        verdict: Verdict::Allow { patch: None },
        reason: reason.into(),
    }
}

/// The injection settings, with what is the same for every pod rendered
/// once as JSON: the proxy container (most of the patch), the init container
/// but for its arguments, and the volumes after the identity volume.
#[derive(Debug, Clone)]
pub struct Injector {
    ctx: InjectionContext,
    proxy_as_app_container: String,
    proxy_as_native_sidecar: String,
    /// `trellis-init` without `args`: `{"image":…}`. A pod's arguments are
    /// written in front of its first member.
    init_without_args: String,
    /// [`shared_volumes`], each as JSON.
    shared_volumes: Vec<String>,
}

/// Containers and volumes are strings, numbers and string maps: their
/// serialization cannot fail.
fn json<T: Serialize>(value: &T) -> String {
    serde_json::to_string(value).expect("a container or volume serializes to JSON")
}

impl Injector {
    pub fn new(ctx: InjectionContext) -> Self {
        let init = Container {
            args: None,
            ..ctx.init_container(Vec::new())
        };
        Injector {
            proxy_as_app_container: json(&ctx.proxy_container(ProxyPlacement::AppContainer)),
            proxy_as_native_sidecar: json(&ctx.proxy_container(ProxyPlacement::NativeSidecar)),
            init_without_args: json(&init),
            shared_volumes: shared_volumes().iter().map(json).collect(),
            ctx,
        }
    }

    fn proxy(&self, placement: ProxyPlacement) -> &[u8] {
        match placement {
            ProxyPlacement::AppContainer => self.proxy_as_app_container.as_bytes(),
            ProxyPlacement::NativeSidecar => self.proxy_as_native_sidecar.as_bytes(),
        }
    }

    /// `trellis-init` with `args`, as JSON.
    fn init_container(&self, args: &[String]) -> Result<Vec<u8>, serde_json::Error> {
        let mut json = Vec::with_capacity(self.init_without_args.len() + 256);
        json.extend_from_slice(br#"{"args":"#);
        serde_json::to_writer(&mut json, args)?;
        json.push(b',');
        // Past its `{`: the rendered container has members (a name at least).
        json.extend_from_slice(&self.init_without_args.as_bytes()[1..]);
        Ok(json)
    }

    /// The volumes after a pod's identity volume.
    fn shared_volumes(&self) -> impl Iterator<Item = &[u8]> {
        self.shared_volumes.iter().map(String::as_bytes)
    }
}

/// Namespace selection is the webhook configuration's job: pods that reach us are selected.
static SELECTED_NAMESPACE: LazyLock<BTreeMap<String, String>> =
    LazyLock::new(|| BTreeMap::from([("istio-injection".into(), "enabled".into())]));

/// The fields of a pod injection reads; every other field is skipped unread
/// (the patch only appends, so the webhook never needs them).
#[derive(Deserialize)]
struct PodIn {
    #[serde(default)]
    metadata: MetaIn,
    spec: Option<SpecIn>,
}

#[derive(Deserialize, Default)]
#[serde(default, rename_all = "camelCase")]
struct MetaIn {
    name: Option<String>,
    generate_name: Option<String>,
    namespace: Option<String>,
    labels: Option<BTreeMap<String, String>>,
    annotations: Option<BTreeMap<String, String>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SpecIn {
    service_account_name: Option<String>,
    containers: Vec<ContainerIn>,
    init_containers: Option<Vec<ContainerIn>>,
    volumes: Option<Vec<IgnoredAny>>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerIn {
    name: String,
    ports: Option<Vec<ContainerPort>>,
    liveness_probe: Option<Probe>,
    readiness_probe: Option<Probe>,
    startup_probe: Option<Probe>,
}

impl ContainerIn {
    /// The container as far as injection reads it.
    fn into_container(self) -> Container {
        Container {
            name: self.name,
            ports: self.ports,
            liveness_probe: self.liveness_probe,
            readiness_probe: self.readiness_probe,
            startup_probe: self.startup_probe,
            ..Default::default()
        }
    }
}

fn containers(list: Vec<ContainerIn>) -> Vec<Container> {
    list.into_iter().map(ContainerIn::into_container).collect()
}

/// Injects the pod of `request`. Namespace selection is the job of the
/// webhook configuration's `namespaceSelector`/`objectSelector` (the API
/// server only sends pods they match), so the namespace counts as selected
/// here — as for offline `trellis inject`; the pod's opt-out, the system
/// namespaces and `operator_namespace` are checked again. Idempotent: an
/// injected pod is allowed unchanged. A pod that cannot be injected (a bad
/// traffic annotation) is denied with the annotation named.
pub fn review_pod(
    request: &AdmissionRequest,
    injector: &Injector,
    operator_namespace: &str,
) -> Injection {
    let ctx = &injector.ctx;
    if request.kind != "Pod" || !request.group.is_empty() {
        return allow(format!("not a pod: {}", request.kind));
    }
    if request.operation != "CREATE" {
        return allow(format!("operation {}", request.operation));
    }
    let Some(raw) = request.object.as_deref() else {
        return allow("no object");
    };
    let pod: PodIn = match serde_json::from_str(raw.get()) {
        Ok(pod) => pod,
        Err(e) => return not_a_pod(raw, request, ctx, operator_namespace, e),
    };
    let meta = &pod.metadata;
    let (namespace, decision) = selection(meta, request, ctx, operator_namespace);
    let rule = match decision {
        InjectDecision::Skip(why) => return allow(why),
        InjectDecision::Inject(rule) => rule,
    };
    // Pods created by controllers have no name yet: name them for messages.
    let object = format!("Pod/{namespace}/{}", pod_name(meta, request));
    let Some(spec) = pod.spec else {
        return deny(InjectError::MissingSpec { object }.to_string());
    };
    let app = containers(spec.containers);
    let init = containers(spec.init_containers.unwrap_or_default());
    let facts = PodFacts {
        object: &object,
        annotations: meta.annotations.as_ref(),
        service_account: spec.service_account_name.as_deref(),
        containers: &app,
        init_containers: &init,
    };
    let additions = match plan(&facts, ctx) {
        Ok(Some(Plan::Sidecar(additions))) => additions,
        Ok(Some(Plan::Gateway(_))) => {
            return gateway(
                raw,
                &object,
                &namespace,
                &pod_name(meta, request),
                ctx,
                rule,
            );
        }
        Ok(None) => return allow("already injected"),
        Err(e) => return deny(e.to_string()),
    };
    let received = Received {
        annotations: meta.annotations.as_ref(),
        labels: meta.labels.as_ref(),
        init_containers: init.len(),
        containers: app.len(),
        volumes: spec.volumes.as_ref().map_or(0, Vec::len),
    };
    match received.patch(&additions, injector) {
        Ok(patch) => Injection {
            verdict: Verdict::Allow { patch: Some(patch) },
            reason: rule.to_string(),
        },
        Err(e) => deny(format!("{object}: cannot serialize the patch: {e}")),
    }
}

/// A gateway pod, injected the generic way: read whole as a [`Pod`] and
/// given the patch of [`trellis_inject::inject`] (a diff of the typed pod
/// before and after, with the `istio-proxy` container replaced whole). The
/// diff touches only what injection changed, so the fields of the received
/// object our types do not know are kept, but in the replaced container.
fn gateway(
    raw: &RawValue,
    object: &str,
    namespace: &str,
    name: &str,
    ctx: &InjectionContext,
    rule: &str,
) -> Injection {
    let mut pod: Pod = match serde_json::from_str(raw.get()) {
        Ok(pod) => pod,
        Err(e) => return deny(format!("{object}: not a pod: {e}")),
    };
    // For messages only: the same before and after, so never in the patch.
    pod.metadata.name = Some(name.to_string());
    pod.metadata.namespace = Some(namespace.to_string());
    let outcome = match trellis_inject::inject(&pod, ctx) {
        Ok(outcome) => outcome,
        Err(e) => return deny(e.to_string()),
    };
    if outcome.already_injected {
        return allow("already injected");
    }
    match serde_json::to_vec(&outcome.patch) {
        Ok(patch) => Injection {
            verdict: Verdict::Allow { patch: Some(patch) },
            reason: format!("{rule} (gateway)"),
        },
        Err(e) => deny(format!("{object}: cannot serialize the patch: {e}")),
    }
}

/// The parts of the received pod that injection extends.
struct Received<'a> {
    annotations: Option<&'a BTreeMap<String, String>>,
    labels: Option<&'a BTreeMap<String, String>>,
    init_containers: usize,
    containers: usize,
    volumes: usize,
}

impl Received<'_> {
    /// The RFC 6902 patch that makes `additions` to the pod as received: list
    /// items appended, map members set, so the fields of the received object
    /// that this webhook does not read are kept.
    fn patch(
        &self,
        additions: &Additions,
        injector: &Injector,
    ) -> Result<Vec<u8>, serde_json::Error> {
        let mut patch = PatchWriter::default();
        patch.map(
            "/metadata/annotations",
            self.annotations,
            additions.annotations.iter().map(|(k, v)| (*k, v.as_str())),
        )?;
        patch.map(
            "/metadata/labels",
            self.labels,
            additions.labels.iter().copied(),
        )?;
        let init = injector.init_container(&additions.init_args)?;
        let proxy = injector.proxy(additions.proxy);
        let (init_containers, containers) = additions.proxy.lists(&*init, proxy);
        patch.list(
            "/spec/initContainers",
            self.init_containers,
            &init_containers,
        );
        patch.list("/spec/containers", self.containers, &containers);
        let identity = serde_json::to_vec(&identity_volume(&additions.service_account))?;
        let volumes: Vec<&[u8]> = std::iter::once(&*identity)
            .chain(injector.shared_volumes())
            .collect();
        patch.list("/spec/volumes", self.volumes, &volumes);
        Ok(patch.finish())
    }
}

/// Writes `add` operations straight to JSON text.
struct PatchWriter {
    json: Vec<u8>,
}

impl Default for PatchWriter {
    fn default() -> Self {
        // A typical sidecar patch is about 3 KiB.
        PatchWriter {
            json: Vec::with_capacity(4096),
        }
    }
}

impl PatchWriter {
    fn add<T: Serialize + ?Sized>(
        &mut self,
        path: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        let mut written = Ok(());
        self.add_raw(path, |json| written = serde_json::to_writer(json, value));
        written
    }

    /// An `add` of `path` whose value `write_value` writes as JSON text.
    fn add_raw(&mut self, path: &str, write_value: impl FnOnce(&mut Vec<u8>)) {
        self.json
            .push(if self.json.is_empty() { b'[' } else { b',' });
        self.json.extend_from_slice(br#"{"op":"add","path":"#);
        // A string into a Vec: cannot fail.
        let _ = serde_json::to_writer(&mut self.json, path);
        self.json.extend_from_slice(br#","value":"#);
        write_value(&mut self.json);
        self.json.push(b'}');
    }

    /// Appends `items` (each JSON text) to a list of `old` items, or adds
    /// the whole list where there was none.
    fn list(&mut self, path: &str, old: usize, items: &[&[u8]]) {
        if items.is_empty() {
            return;
        }
        if old == 0 {
            self.add_raw(path, |json| {
                for (i, item) in items.iter().enumerate() {
                    json.push(if i == 0 { b'[' } else { b',' });
                    json.extend_from_slice(item);
                }
                json.push(b']');
            });
            return;
        }
        let append = format!("{path}/-");
        for item in items {
            self.add_raw(&append, |json| json.extend_from_slice(item));
        }
    }

    /// Sets the `members` that are new or changed, or adds them as the
    /// whole map where there was none.
    fn map<'a>(
        &mut self,
        path: &str,
        old: Option<&BTreeMap<String, String>>,
        members: impl Iterator<Item = (&'a str, &'a str)> + Clone,
    ) -> Result<(), serde_json::Error> {
        match old.filter(|m| !m.is_empty()) {
            None => {
                if members.clone().next().is_none() {
                    return Ok(());
                }
                let map: BTreeMap<&str, &str> = members.collect();
                self.add(path, &map)
            }
            Some(old) => {
                for (key, value) in members {
                    if old.get(key).map(String::as_str) != Some(value) {
                        self.add(&format!("{path}/{}", escape(key)), value)?;
                    }
                }
                Ok(())
            }
        }
    }

    fn finish(mut self) -> Vec<u8> {
        if self.json.is_empty() {
            return b"[]".to_vec();
        }
        self.json.push(b']');
        self.json
    }
}

/// JSON Pointer escaping of one key.
fn escape(key: &str) -> String {
    key.replace('~', "~0").replace('/', "~1")
}

/// The parts of an object that still tell who it is when it is not a pod.
#[derive(Deserialize, Default)]
#[serde(default)]
struct Unparsed {
    metadata: MetaIn,
}

/// A review whose object does not read as a Pod: allowed if the pod opted
/// out (nothing to do), otherwise denied with the parse error.
fn not_a_pod(
    raw: &RawValue,
    request: &AdmissionRequest,
    ctx: &InjectionContext,
    operator_namespace: &str,
    error: serde_json::Error,
) -> Injection {
    let meta = serde_json::from_str::<Unparsed>(raw.get())
        .unwrap_or_default()
        .metadata;
    let (namespace, decision) = selection(&meta, request, ctx, operator_namespace);
    if let InjectDecision::Skip(why) = decision {
        return allow(why);
    }
    deny(format!(
        "Pod/{namespace}/{}: not a pod: {error}",
        pod_name(&meta, request)
    ))
}

/// The pod's namespace (the request's when the object names none), and
/// whether the pod gets a sidecar.
fn selection(
    meta: &MetaIn,
    request: &AdmissionRequest,
    ctx: &InjectionContext,
    operator_namespace: &str,
) -> (String, InjectDecision) {
    let namespace = meta
        .namespace
        .clone()
        .filter(|n| !n.is_empty())
        .unwrap_or_else(|| request.namespace.clone());
    let none = BTreeMap::new();
    let decision = ctx.decide(
        &SELECTED_NAMESPACE,
        meta.labels.as_ref().unwrap_or(&none),
        meta.annotations.as_ref().unwrap_or(&none),
        &namespace,
        operator_namespace,
    );
    (namespace, decision)
}

fn pod_name(meta: &MetaIn, request: &AdmissionRequest) -> String {
    [&meta.name, &meta.generate_name]
        .into_iter()
        .flatten()
        .find(|s| !s.is_empty())
        .cloned()
        .unwrap_or_else(|| request.name.clone())
}

fn deny(message: String) -> Injection {
    Injection {
        verdict: Verdict::Deny {
            code: 400,
            reason: "BadRequest",
            message: message.clone(),
            causes: Vec::new(),
        },
        reason: message,
    }
}
