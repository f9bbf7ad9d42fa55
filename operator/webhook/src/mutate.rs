//! The mutating webhook: sidecar injection of pods on CREATE.

use crate::review::{AdmissionRequest, Verdict};
use k8s_openapi::api::core::v1::{Container, ContainerPort, Probe};
use serde::de::IgnoredAny;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use trellis_inject::{
    Additions, InjectDecision, InjectError, InjectionContext, PodFacts, ProxyPlacement, plan,
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

/// The injection settings, with the proxy container rendered once as JSON:
/// it is the same for every pod, and it is most of the patch.
#[derive(Debug, Clone)]
pub struct Injector {
    ctx: InjectionContext,
    proxy_as_app_container: Box<RawValue>,
    proxy_as_native_sidecar: Box<RawValue>,
}

impl Injector {
    pub fn new(ctx: InjectionContext) -> Self {
        let render = |placement| {
            // Strings, numbers and string maps: serialization cannot fail.
            serde_json::value::to_raw_value(&ctx.proxy_container(placement))
                .expect("a container serializes to JSON")
        };
        Injector {
            proxy_as_app_container: render(ProxyPlacement::AppContainer),
            proxy_as_native_sidecar: render(ProxyPlacement::NativeSidecar),
            ctx,
        }
    }

    fn proxy(&self, placement: ProxyPlacement) -> &RawValue {
        match placement {
            ProxyPlacement::AppContainer => &self.proxy_as_app_container,
            ProxyPlacement::NativeSidecar => &self.proxy_as_native_sidecar,
        }
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
        Ok(Some(additions)) => additions,
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
        let init = serde_json::value::to_raw_value(&additions.init_container)?;
        let proxy = injector.proxy(additions.proxy);
        let (init_containers, containers) = match additions.proxy {
            ProxyPlacement::AppContainer => (vec![&*init], vec![proxy]),
            ProxyPlacement::NativeSidecar => (vec![&*init, proxy], vec![]),
        };
        patch.list(
            "/spec/initContainers",
            self.init_containers,
            &init_containers,
        )?;
        patch.list("/spec/containers", self.containers, &containers)?;
        patch.list("/spec/volumes", self.volumes, &additions.volumes)?;
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

#[derive(Serialize)]
struct AddOp<'a, T: ?Sized> {
    op: &'static str,
    path: &'a str,
    value: &'a T,
}

impl PatchWriter {
    fn add<T: Serialize + ?Sized>(
        &mut self,
        path: &str,
        value: &T,
    ) -> Result<(), serde_json::Error> {
        self.json
            .push(if self.json.is_empty() { b'[' } else { b',' });
        serde_json::to_writer(
            &mut self.json,
            &AddOp {
                op: "add",
                path,
                value,
            },
        )
    }

    /// Appends `items` to a list of `old` items, or adds the whole list
    /// where there was none.
    fn list<T: Serialize>(
        &mut self,
        path: &str,
        old: usize,
        items: &[T],
    ) -> Result<(), serde_json::Error> {
        if items.is_empty() {
            return Ok(());
        }
        if old == 0 {
            return self.add(path, items);
        }
        let append = format!("{path}/-");
        for item in items {
            self.add(&append, item)?;
        }
        Ok(())
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
