//! The mutating webhook: sidecar injection of pods on CREATE.

use crate::review::{AdmissionRequest, Verdict};
use k8s_openapi::api::core::v1::Pod;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::ObjectMeta;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::sync::LazyLock;
use trellis_inject::{InjectDecision, InjectionContext, inject_pod};

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

/// Namespace selection is the webhook configuration's job: pods that reach us are selected.
static SELECTED_NAMESPACE: LazyLock<BTreeMap<String, String>> =
    LazyLock::new(|| BTreeMap::from([("istio-injection".into(), "enabled".into())]));

/// Injects the pod of `request`. Namespace selection is the job of the
/// webhook configuration's `namespaceSelector`/`objectSelector` (the API
/// server only sends pods they match), so the namespace counts as selected
/// here — as for offline `trellis inject`; the pod's opt-out, the system
/// namespaces and `operator_namespace` are checked again. Idempotent: an
/// injected pod is allowed unchanged. A pod that cannot be injected (a bad
/// traffic annotation) is denied with the annotation named.
pub fn review_pod(
    request: &AdmissionRequest,
    ctx: &InjectionContext,
    operator_namespace: &str,
) -> Injection {
    if request.kind != "Pod" || !request.group.is_empty() {
        return allow(format!("not a pod: {}", request.kind));
    }
    if request.operation != "CREATE" {
        return allow(format!("operation {}", request.operation));
    }
    let Some(raw) = request.object.as_deref() else {
        return allow("no object");
    };
    let mut pod: Pod = match serde_json::from_str(raw.get()) {
        Ok(pod) => pod,
        Err(e) => return not_a_pod(raw, request, ctx, operator_namespace, e),
    };
    let (namespace, decision) = selection(&pod.metadata, request, ctx, operator_namespace);
    let rule = match decision {
        InjectDecision::Skip(why) => return allow(why),
        InjectDecision::Inject(rule) => rule,
    };
    // What the patch is computed against: the pod as received.
    let received = Received::of(&pod);
    // Pods created by controllers have no name or namespace yet: name them
    // for messages (the patch never includes either).
    if pod.metadata.name.as_deref().unwrap_or("").is_empty() {
        pod.metadata.name = Some(pod_name(&pod.metadata, request));
    }
    pod.metadata.namespace = Some(namespace.clone());
    let injected = match inject_pod(&pod, ctx) {
        Ok((_, true)) => return allow("already injected"),
        Ok((injected, false)) => injected,
        Err(e) => return deny(e.to_string()),
    };
    match received.additions(&injected) {
        Ok(patch) => Injection {
            verdict: Verdict::Allow { patch: Some(patch) },
            reason: rule.to_string(),
        },
        Err(e) => deny(format!(
            "Pod/{namespace}: cannot serialize the injected pod: {e}"
        )),
    }
}

/// The parts of the received pod that injection extends.
struct Received {
    annotations: Option<BTreeMap<String, String>>,
    labels: Option<BTreeMap<String, String>>,
    init_containers: usize,
    containers: usize,
    volumes: usize,
}

impl Received {
    fn of(pod: &Pod) -> Self {
        let spec = pod.spec.as_ref();
        Received {
            annotations: pod.metadata.annotations.clone(),
            labels: pod.metadata.labels.clone(),
            init_containers: spec
                .and_then(|s| s.init_containers.as_ref())
                .map_or(0, Vec::len),
            containers: spec.map_or(0, |s| s.containers.len()),
            volumes: spec.and_then(|s| s.volumes.as_ref()).map_or(0, Vec::len),
        }
    }

    /// The RFC 6902 patch from the pod as received to `injected`. It only
    /// adds what injection adds (list items appended, map members set), so
    /// fields of the received object that our types do not know are kept.
    fn additions(&self, injected: &Pod) -> Result<Vec<u8>, serde_json::Error> {
        let mut patch = PatchWriter::default();
        let meta = &injected.metadata;
        patch.map(
            "/metadata/annotations",
            self.annotations.as_ref(),
            meta.annotations.as_ref(),
        )?;
        patch.map(
            "/metadata/labels",
            self.labels.as_ref(),
            meta.labels.as_ref(),
        )?;
        if let Some(spec) = injected.spec.as_ref() {
            let init = spec.init_containers.as_deref();
            patch.list("/spec/initContainers", self.init_containers, init)?;
            patch.list("/spec/containers", self.containers, Some(&spec.containers))?;
            patch.list("/spec/volumes", self.volumes, spec.volumes.as_deref())?;
        }
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

    /// Appends the items after the `old` first ones, or adds the whole list
    /// where there was none.
    fn list<T: Serialize>(
        &mut self,
        path: &str,
        old: usize,
        new: Option<&[T]>,
    ) -> Result<(), serde_json::Error> {
        let Some(new) = new else { return Ok(()) };
        if old == 0 {
            if !new.is_empty() {
                self.add(path, new)?;
            }
            return Ok(());
        }
        let append = format!("{path}/-");
        for item in new.get(old..).unwrap_or_default() {
            self.add(&append, item)?;
        }
        Ok(())
    }

    /// Sets the members that are new or changed, or adds the whole map.
    fn map(
        &mut self,
        path: &str,
        old: Option<&BTreeMap<String, String>>,
        new: Option<&BTreeMap<String, String>>,
    ) -> Result<(), serde_json::Error> {
        let Some(new) = new else { return Ok(()) };
        match old.filter(|m| !m.is_empty()) {
            None if new.is_empty() => Ok(()),
            None => self.add(path, new),
            Some(old) => {
                for (key, value) in new {
                    if old.get(key) != Some(value) {
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
    metadata: ObjectMeta,
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
    meta: &ObjectMeta,
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

fn pod_name(meta: &ObjectMeta, request: &AdmissionRequest) -> String {
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
