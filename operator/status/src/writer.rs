//! The leader-only loop that writes mesh object status and MeshStatus.
//!
//! It wakes on every new [`MeshView`], on a change of leadership and every
//! [`REFRESH`] (proxy counts move without any object changing), computes the
//! desired status with the pure functions of this crate, and writes only what
//! differs from what the API server holds — server-side apply on the status
//! subresource under field manager `trellis`, never spec, labels or annotations
//! of a user's object.
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use k8s_openapi::api::core::v1::{Namespace, ObjectReference};
use kube::api::{Api, DeleteParams, DynamicObject, ListParams, Patch, PatchParams};
use serde_json::json;
use tokio::sync::watch;
use trellis_api::ObjectRef;
use trellis_api::mesh::{MeshStatus, MeshStatusStatus};
use trellis_api::status::ResourceStatus;
use trellis_controller::{Context, FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL};
use trellis_sources::{MeshView, SourceKind, api_resource};
use trellis_xds::XdsServer;

use crate::StatusError;
use crate::analysis::analyze;
use crate::conditions::{ACCEPTED, is_accepted, rejection, resource_status, summarize};
use crate::mesh_status::{
    CaFacts, ControlPlaneFacts, IdentityFacts, NamespaceFacts, control_plane_status,
    namespace_status, rfc3339,
};

/// Name of every MeshStatus object.
pub const MESH_STATUS_NAME: &str = "mesh";
/// How often MeshStatus is recomputed without any object changing.
pub const REFRESH: Duration = Duration::from_secs(10);
/// Shortest time between two passes (changes arriving meanwhile wait for the next).
pub const MIN_PASS_INTERVAL: Duration = Duration::from_secs(1);
const CONTROLLER: &str = "status";

/// What the status loop reads besides the [`Context`].
pub struct StatusInputs {
    pub view: watch::Receiver<Arc<MeshView>>,
    /// The in-operator xDS server (connected proxies, pushes).
    pub xds: Option<XdsServer>,
}

/// Runs until the context shuts down.
pub async fn run(ctx: Arc<Context>, mut inputs: StatusInputs) {
    let mut writer = Writer::new(ctx.clone());
    let mut leading = ctx.leader.subscribe();
    let mut tick = tokio::time::interval(REFRESH);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let shutdown = ctx.shutdown();
    tokio::pin!(shutdown);
    let mut last_pass: Option<tokio::time::Instant> = None;
    loop {
        tokio::select! {
            () = &mut shutdown => return,
            changed = inputs.view.changed() => if changed.is_err() { return },
            _ = leading.changed() => writer.forget(),
            _ = tick.tick() => {}
        }
        if !ctx.leader.is_leader() {
            writer.forget();
            continue;
        }
        // Bursts of changes make one pass: at most one per MIN_PASS_INTERVAL.
        if let Some(last) = last_pass {
            let due = last + MIN_PASS_INTERVAL;
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep_until(due) => {}
            }
        }
        last_pass = Some(tokio::time::Instant::now());
        let view = inputs.view.borrow_and_update().clone();
        let identities = identity_facts(&ctx, &view);
        let _timer = ctx.telemetry.metrics.reconcile_started(CONTROLLER);
        writer
            .pass(&view, inputs.xds.as_ref(), Some(&identities))
            .await;
    }
}

/// Whether namespace `ns` is in the mesh as the identity and namespace
/// controllers see it: by its labels, or by a pod selected by its own label.
fn needs_mesh(view: &MeshView, ns: &Namespace, operator_namespace: &str) -> bool {
    let name = ns.metadata.name.clone().unwrap_or_default();
    let selected = view
        .pods
        .range((name.clone(), String::new())..)
        .take_while(|((pod_ns, _), _)| *pod_ns == name)
        .any(|(_, pod)| {
            pod.metadata
                .labels
                .as_ref()
                .and_then(|l| l.get(trellis_controller::mesh::POD_INJECT_LABEL))
                .is_some_and(|v| v == "true")
        });
    trellis_controller::mesh::needs_mesh(ns, selected, operator_namespace)
}

/// Identities per mesh namespace, from the identity controller's index.
fn identity_facts(ctx: &Context, view: &MeshView) -> BTreeMap<String, IdentityFacts> {
    let now = ctx.clock.now();
    // Due for renewal: past the renewal point of a certificate of the configured lifetime.
    let renew_window = ctx
        .config
        .workload_ttl
        .mul_f64((1.0 - ctx.config.renewal.ratio).clamp(0.0, 1.0));
    let index = ctx.identities.lock().unwrap_or_else(|p| p.into_inner());
    view.namespaces
        .iter()
        .filter(|(_, n)| needs_mesh(view, n, &ctx.config.namespace))
        .map(|(ns, _)| ns)
        .map(|ns| {
            let facts = IdentityFacts {
                issued: index.count_in(ns) as u32,
                earliest_expiry: index.earliest_in(ns),
                expiring: index.expiring_in(ns, now + renew_window) as u32,
                failed: index.failures_in(ns),
            };
            (ns.clone(), facts)
        })
        .collect()
}

/// What the loop remembers between passes.
struct Writer {
    ctx: Arc<Context>,
    /// Status written and not yet seen back through the watch.
    pending: HashMap<ObjectRef, ResourceStatus>,
    /// Generation each rejection event was published for.
    rejected_events: HashMap<ObjectRef, Option<i64>>,
    /// MeshStatus as last written (or read) per namespace.
    mesh_status: HashMap<String, MeshStatusStatus>,
    last_push_rounds: u64,
    last_push: Option<SystemTime>,
    /// Stale MeshStatus objects were looked for since becoming leader.
    swept: bool,
    /// Objects whose last write failed, and when to try again (exponential, per object).
    retry_at: HashMap<String, tokio::time::Instant>,
    /// The last analysis and what it was computed from (model and namespaces).
    analysis: Option<Analysis>,
}

type Findings = BTreeMap<ObjectRef, Vec<trellis_translate::TranslateError>>;

struct Analysis {
    model: Arc<trellis_model::MeshModel>,
    credentials: Arc<trellis_sources::credentials::Credentials>,
    namespaces: BTreeSet<String>,
    findings: Arc<Findings>,
}

impl Writer {
    fn new(ctx: Arc<Context>) -> Self {
        Writer {
            ctx,
            pending: HashMap::new(),
            rejected_events: HashMap::new(),
            mesh_status: HashMap::new(),
            retry_at: HashMap::new(),
            analysis: None,
            last_push_rounds: 0,
            last_push: None,
            swept: false,
        }
    }

    /// The translation's findings, recomputed only when the model or the set of
    /// namespaces with configuration changed (a tick or a status echo reuses them).
    fn findings(&mut self, view: &MeshView, namespaces: BTreeSet<String>) -> Arc<Findings> {
        if let Some(a) = &self.analysis
            && Arc::ptr_eq(&a.model, &view.model)
            && Arc::ptr_eq(&a.credentials, &view.credentials)
            && a.namespaces == namespaces
        {
            return a.findings.clone();
        }
        let findings = Arc::new(analyze(
            &view.model,
            &view.credentials,
            namespaces.iter().cloned(),
        ));
        self.analysis = Some(Analysis {
            model: view.model.clone(),
            credentials: view.credentials.clone(),
            namespaces,
            findings: findings.clone(),
        });
        findings
    }

    /// Whether a write of `key` may be tried now (not backing off after a failure).
    fn due(&self, key: &str) -> bool {
        self.retry_at
            .get(key)
            .is_none_or(|at| tokio::time::Instant::now() >= *at)
    }

    /// Books the outcome of a write: success clears the backoff, failure doubles it
    /// (per object, with the error metric); losing leadership is not a failure.
    fn record(&mut self, key: &str, result: Result<(), StatusError>) -> bool {
        match result {
            Ok(()) => {
                if self.retry_at.remove(key).is_some() {
                    self.ctx.backoffs.succeeded(&format!("{CONTROLLER}/{key}"));
                }
                true
            }
            Err(StatusError::NotLeader(_)) => false,
            Err(e) => {
                let wait = self.ctx.backoffs.failed(&format!("{CONTROLLER}/{key}"));
                self.ctx.telemetry.metrics.reconcile_failed(CONTROLLER);
                tracing::warn!(error = %e, retry_in = ?wait, "status not written");
                self.retry_at
                    .insert(key.to_string(), tokio::time::Instant::now() + wait);
                false
            }
        }
    }

    /// Forgets what was written: after a change of leader the API server is the truth.
    fn forget(&mut self) {
        self.pending.clear();
        self.mesh_status.clear();
        self.swept = false;
    }

    async fn pass(
        &mut self,
        view: &MeshView,
        xds: Option<&XdsServer>,
        identities: Option<&BTreeMap<String, IdentityFacts>>,
    ) {
        let now = self.ctx.clock.now();
        let stamp = rfc3339(now);
        let mut desired: BTreeMap<ObjectRef, ResourceStatus> = BTreeMap::new();
        if view.synced {
            let namespaces = view
                .config
                .keys()
                .filter_map(|k| k.namespace.clone())
                .collect::<BTreeSet<_>>();
            let findings = self.findings(view, namespaces);
            for (key, object) in view.config.iter() {
                let analysis = findings.get(key).map(Vec::as_slice).unwrap_or_default();
                let status = resource_status(object, analysis, object.status.as_ref(), &stamp);
                desired.insert(key.clone(), status);
            }
            self.write_resource_statuses(view, &desired).await;
        }
        self.write_mesh_statuses(view, &desired, xds, identities, now)
            .await;
    }

    async fn write_resource_statuses(
        &mut self,
        view: &MeshView,
        desired: &BTreeMap<ObjectRef, ResourceStatus>,
    ) {
        self.pending.retain(|k, _| view.config.contains_key(k));
        self.rejected_events
            .retain(|k, _| view.config.contains_key(k));
        for (key, status) in desired {
            let object = &view.config[key];
            if object.status.as_ref() == Some(status) {
                self.pending.remove(key);
            } else if self.pending.get(key) != Some(status) && self.due(&key.to_string()) {
                let result = self.patch_resource_status(key, status).await;
                if self.record(&key.to_string(), result) {
                    self.pending.insert(key.clone(), status.clone());
                }
            }
            // Reported once per generation: not again by a new leader when the status
            // the API server holds already says this generation is rejected.
            let reported = object
                .status
                .as_ref()
                .is_some_and(|s| !is_accepted(s) && s.observed_generation == object.generation);
            if !is_accepted(status)
                && !reported
                && self.rejected_events.get(key) != Some(&object.generation)
            {
                self.rejected_events.insert(key.clone(), object.generation);
                let note = summarize(&rejection(object));
                self.ctx
                    .events
                    .publish(&reference(key), true, "ConfigRejected", "Validate", note)
                    .await;
            }
        }
    }

    async fn patch_resource_status(
        &self,
        key: &ObjectRef,
        status: &ResourceStatus,
    ) -> Result<(), StatusError> {
        let Some(kind) = SourceKind::from_kind(&key.kind) else {
            return Ok(());
        };
        let ns = key.namespace.as_deref().unwrap_or_default();
        let api: Api<DynamicObject> =
            Api::namespaced_with(self.ctx.client.clone(), ns, &api_resource(kind));
        let body = json!({
            "apiVersion": kind.api_version(),
            "kind": kind.as_str(),
            "metadata": {"name": key.name, "namespace": ns},
            "status": status,
        });
        let _permit = self.ctx.leader.permit()?;
        api.patch_status(
            &key.name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(body),
        )
        .await
        .map_err(|source| StatusError::Write {
            object: key.to_string(),
            source,
        })?;
        self.ctx.telemetry.metrics.api_write(CONTROLLER);
        tracing::debug!(object = %key, accepted = is_accepted(status), "status written");
        Ok(())
    }

    async fn write_mesh_statuses(
        &mut self,
        view: &MeshView,
        desired: &BTreeMap<ObjectRef, ResourceStatus>,
        xds: Option<&XdsServer>,
        identities: Option<&BTreeMap<String, IdentityFacts>>,
        now: SystemTime,
    ) {
        let proxies = xds.map(XdsServer::proxy_statuses).unwrap_or_default();
        if let Some(xds) = xds {
            let rounds = xds.metrics().push_rounds_total;
            if rounds != self.last_push_rounds {
                self.last_push_rounds = rounds;
                self.last_push = Some(now);
            }
        }
        let ca = self.ctx.ca.status();
        let root_not_after = ca.current.as_ref().map(|c| c.root_not_after);
        let control_ns = self.ctx.config.namespace.clone();
        let mesh_namespaces: BTreeSet<String> = view
            .namespaces
            .values()
            .filter(|ns| needs_mesh(view, ns, &control_ns))
            .filter_map(|ns| ns.metadata.name.clone())
            .filter(|name| *name != control_ns)
            .collect();

        let mut wanted: BTreeMap<String, MeshStatusStatus> = BTreeMap::new();
        if view.synced {
            for ns in &mesh_namespaces {
                let facts =
                    namespace_facts(ns, view, desired, &proxies, identities, root_not_after);
                let previous = self.mesh_status.get(ns);
                wanted.insert(ns.clone(), namespace_status(&facts, now, previous));
            }
        }
        let identity_failures = identities.map_or(0, |m| {
            m.values().map(|i| i.failed.len() as u32).sum::<u32>()
        });
        let cp = ControlPlaneFacts {
            ca: ca.current.as_ref().map(|c| CaFacts {
                mode: c.mode.as_str().to_string(),
                root_fingerprint: c.root_fingerprint.clone(),
                root_not_after: c.root_not_after,
            }),
            ca_problem: ca.problem.clone(),
            // The trust domain in force: the CA signs for it (MeshConfig over the flag).
            trust_domain: ca.current.as_ref().map_or_else(
                || self.ctx.config.trust_domain.as_str().to_string(),
                |c| c.ca.trust_domain().as_str().to_string(),
            ),
            synced: view.synced,
            proxies: proxies.len() as u32,
            proxies_in_sync: proxies.iter().filter(|p| p.in_sync()).count() as u32,
            last_push: self.last_push,
            operator_version: env!("CARGO_PKG_VERSION").to_string(),
            leader: Some(self.ctx.config.lease.identity.clone()),
            workloads: view.model.workloads().count() as u32,
            identities: identities.map(|m| m.values().map(|i| i.issued).sum()),
            identity_failures,
            config_rejected: desired.values().filter(|s| !is_accepted(s)).count() as u32,
            config_warnings: desired.values().filter(|s| has_warning(s)).count() as u32,
            rotation_remaining: ca.current.as_ref().filter(|c| c.rotating()).map(|c| {
                self.ctx
                    .identities
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .not_on_root(&c.root_fingerprint) as u32
            }),
        };
        let previous = self.mesh_status.get(&control_ns);
        wanted.insert(control_ns.clone(), control_plane_status(&cp, now, previous));

        for (ns, status) in wanted {
            let key = format!("MeshStatus/{ns}/{MESH_STATUS_NAME}");
            if self.due(&key) {
                let result = self.apply_mesh_status(&ns, status, now).await;
                self.record(&key, result);
            }
        }
        if view.synced {
            self.remove_stale(&mesh_namespaces, &control_ns).await;
        }
    }

    /// Creates the `mesh` object if needed and applies its status when it differs.
    async fn apply_mesh_status(
        &mut self,
        ns: &str,
        mut status: MeshStatusStatus,
        now: SystemTime,
    ) -> Result<(), StatusError> {
        let api: Api<MeshStatus> = Api::namespaced(self.ctx.client.clone(), ns);
        let object = format!("MeshStatus/{ns}/{MESH_STATUS_NAME}");
        let err = |source| StatusError::Write {
            object: object.clone(),
            source,
        };
        if !self.mesh_status.contains_key(ns) {
            // First look since becoming leader: what does the API server hold?
            match api.get_opt(MESH_STATUS_NAME).await.map_err(err)? {
                Some(existing) => {
                    let current = existing.status.unwrap_or_default();
                    // Keep its transition times when the conditions did not change.
                    status = recompute_times(status, &current, now);
                    self.mesh_status.insert(ns.to_string(), current);
                }
                None => {
                    let _permit = self.ctx.leader.permit()?;
                    api.patch(
                        MESH_STATUS_NAME,
                        &PatchParams::apply(FIELD_MANAGER).force(),
                        &Patch::Apply(json!({
                            "apiVersion": "mesh.trellis.dev/v1alpha1",
                            "kind": "MeshStatus",
                            "metadata": {
                                "name": MESH_STATUS_NAME,
                                "namespace": ns,
                                "labels": {MANAGED_BY_LABEL: MANAGED_BY},
                            },
                            "spec": {},
                        })),
                    )
                    .await
                    .map_err(err)?;
                    self.ctx.telemetry.metrics.api_write(CONTROLLER);
                }
            }
        }
        if self.mesh_status.get(ns) == Some(&status) {
            return Ok(());
        }
        let _permit = self.ctx.leader.permit()?;
        api.patch_status(
            MESH_STATUS_NAME,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(json!({
                "apiVersion": "mesh.trellis.dev/v1alpha1",
                "kind": "MeshStatus",
                "metadata": {"name": MESH_STATUS_NAME, "namespace": ns},
                "status": status,
            })),
        )
        .await
        .map_err(err)?;
        self.ctx.telemetry.metrics.api_write(CONTROLLER);
        self.mesh_status.insert(ns.to_string(), status);
        Ok(())
    }

    /// Deletes the `mesh` objects this operator made in namespaces that left the mesh.
    async fn remove_stale(&mut self, mesh_namespaces: &BTreeSet<String>, control_ns: &str) {
        let keep = |ns: &str| ns == control_ns || mesh_namespaces.contains(ns);
        let mut stale: BTreeSet<String> = self
            .mesh_status
            .keys()
            .filter(|ns| !keep(ns))
            .cloned()
            .collect();
        if !self.swept {
            let api: Api<MeshStatus> = Api::all(self.ctx.client.clone());
            let selector = format!("{MANAGED_BY_LABEL}={MANAGED_BY}");
            match api.list(&ListParams::default().labels(&selector)).await {
                Ok(list) => {
                    self.swept = true;
                    stale.extend(
                        list.items
                            .into_iter()
                            .filter(|m| m.metadata.name.as_deref() == Some(MESH_STATUS_NAME))
                            .filter_map(|m| m.metadata.namespace)
                            .filter(|ns| !keep(ns)),
                    );
                }
                Err(e) => tracing::warn!(error = %e, "listing MeshStatus objects"),
            }
        }
        for ns in stale {
            let Ok(_permit) = self.ctx.leader.permit() else {
                return;
            };
            let api: Api<MeshStatus> = Api::namespaced(self.ctx.client.clone(), &ns);
            match api.delete(MESH_STATUS_NAME, &DeleteParams::default()).await {
                Ok(_) => {
                    self.ctx.telemetry.metrics.api_write(CONTROLLER);
                    self.mesh_status.remove(&ns);
                }
                Err(kube::Error::Api(status)) if status.code == 404 => {
                    self.mesh_status.remove(&ns);
                }
                Err(e) => tracing::warn!(error = %e, namespace = %ns, "deleting MeshStatus"),
            }
        }
    }
}

fn has_warning(s: &ResourceStatus) -> bool {
    is_accepted(s)
        && s.conditions
            .iter()
            .any(|c| c.type_ == crate::conditions::WARNING && c.status == "True")
}

fn recompute_times(
    mut status: MeshStatusStatus,
    current: &MeshStatusStatus,
    now: SystemTime,
) -> MeshStatusStatus {
    let stamp = rfc3339(now);
    for c in &mut status.conditions {
        if let Some(old) = current
            .conditions
            .iter()
            .find(|o| o.type_ == c.type_ && o.status == c.status)
            && c.last_transition_time.as_deref() == Some(stamp.as_str())
        {
            c.last_transition_time = old.last_transition_time.clone();
        }
    }
    status
}

/// The facts of one mesh namespace, from the view, the desired statuses and the proxies.
fn namespace_facts(
    ns: &str,
    view: &MeshView,
    desired: &BTreeMap<ObjectRef, ResourceStatus>,
    proxies: &[trellis_xds::ProxyStatus],
    identities: Option<&BTreeMap<String, IdentityFacts>>,
    root_not_after: Option<SystemTime>,
) -> NamespaceFacts {
    let workloads: Vec<_> = view
        .model
        .workloads()
        .filter(|w| w.namespace == ns)
        .collect();
    let in_ns = |k: &ObjectRef| k.namespace.as_deref() == Some(ns);
    let mut facts = NamespaceFacts {
        workloads: workloads.len() as u32,
        pods_with_sidecar: workloads.iter().filter(|w| w.has_sidecar).count() as u32,
        identities: identities.map(|m| m.get(ns).cloned().unwrap_or_default()),
        proxies: proxies.iter().filter(|p| p.proxy.namespace == ns).count() as u32,
        proxies_in_sync: proxies
            .iter()
            .filter(|p| p.proxy.namespace == ns && p.in_sync())
            .count() as u32,
        root_not_after,
        ..Default::default()
    };
    for (key, status) in desired.iter().filter(|(k, _)| in_ns(k)) {
        if is_accepted(status) {
            facts.config_accepted += 1;
            if has_warning(status) {
                facts.config_warnings += 1;
            }
        } else {
            facts.config_rejected += 1;
            if facts.first_rejected.is_none() {
                let why = status
                    .conditions
                    .iter()
                    .find(|c| c.type_ == ACCEPTED)
                    .and_then(|c| c.message.clone())
                    .unwrap_or_default();
                facts.first_rejected = Some(format!("{key}: {why}"));
            }
        }
    }
    facts
}

/// The object an event is about.
fn reference(key: &ObjectRef) -> ObjectReference {
    let kind = SourceKind::from_kind(&key.kind);
    ObjectReference {
        api_version: kind.map(SourceKind::api_version),
        kind: Some(key.kind.clone()),
        namespace: key.namespace.clone(),
        name: Some(key.name.clone()),
        ..Default::default()
    }
}
