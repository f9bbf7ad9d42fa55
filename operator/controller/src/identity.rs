//! Identity secrets: one Secret per ServiceAccount of every mesh namespace, holding a
//! certificate for `spiffe://<trust-domain>/ns/<ns>/sa/<sa>` (see [`crate::identity_plan`]
//! for every decision). Renewals are requeued for the certificate's renewal time — no
//! polling; a root change reissues everything at `rotation_rate` per second; a Secret
//! edited or deleted by hand is repaired; a restart writes nothing that is still valid.

use crate::backoff;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::events::reference;
use crate::identity_plan::{self, Decision, IssueReason, Wanted, desired_secret, secret_name};
use crate::mesh::needs_mesh;
use crate::runtime::cache_synced;
use crate::selected_pods;
use crate::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Pod, Secret, ServiceAccount};
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime};
use trellis_ca::SpiffeId;

/// Controller name (metrics, logs).
pub const NAME: &str = "identity";

/// Spreads reissues after a root change: at most `rate` per second.
pub struct RateLimiter {
    interval: Duration,
    next: Mutex<Instant>,
}

impl RateLimiter {
    /// `rate` permits per second.
    pub fn new(rate: f64) -> Self {
        Self {
            interval: Duration::from_secs_f64(1.0 / rate.max(0.001)),
            next: Mutex::new(Instant::now()),
        }
    }

    /// Reserves the next slot and returns how long to wait for it.
    pub fn reserve(&self) -> Duration {
        let mut next = self.next.lock().unwrap_or_else(|p| p.into_inner());
        let now = Instant::now();
        let slot = (*next).max(now);
        *next = slot + self.interval;
        slot - now
    }
}

/// `notAfter` of every identity Secret, for the earliest-expiry gauge.
#[derive(Default)]
pub struct ExpiryIndex {
    by_key: HashMap<(String, String), SystemTime>,
    ordered: BTreeSet<(SystemTime, String, String)>,
    /// Service accounts whose last issue failed, with why (for MeshStatus).
    failed: BTreeMap<(String, String), String>,
    /// Root fingerprint each identity Secret chains to (root rotation progress).
    roots: HashMap<(String, String), String>,
}

impl ExpiryIndex {
    fn set(&mut self, ns: &str, name: &str, not_after: Option<SystemTime>) {
        let key = (ns.to_string(), name.to_string());
        if let Some(old) = self.by_key.remove(&key) {
            self.ordered.remove(&(old, key.0.clone(), key.1.clone()));
        }
        if let Some(t) = not_after {
            self.ordered.insert((t, key.0.clone(), key.1.clone()));
            self.by_key.insert(key, t);
        }
    }

    /// The earliest `notAfter`.
    pub fn earliest(&self) -> Option<SystemTime> {
        self.ordered.first().map(|(t, _, _)| *t)
    }

    /// The earliest `notAfter` in namespace `ns` (for MeshStatus).
    pub fn earliest_in(&self, ns: &str) -> Option<SystemTime> {
        self.ordered
            .iter()
            .find(|(_, n, _)| n == ns)
            .map(|(t, _, _)| *t)
    }

    /// How many identity Secrets namespace `ns` has (for MeshStatus).
    pub fn count_in(&self, ns: &str) -> usize {
        self.by_key.keys().filter(|(n, _)| n == ns).count()
    }

    /// Records the root a Secret's certificate chains to (`None`: the Secret is gone).
    pub fn set_root(&mut self, ns: &str, name: &str, root: Option<&str>) {
        let key = (ns.to_string(), name.to_string());
        match root {
            Some(r) => {
                self.roots.insert(key, r.to_string());
            }
            None => {
                self.roots.remove(&key);
            }
        }
    }

    /// How many identity Secrets do not chain to `root` yet (root rotation progress).
    pub fn not_on_root(&self, root: &str) -> usize {
        self.roots.values().filter(|r| *r != root).count()
    }

    /// Records that issuing for service account `ns/sa` failed (`Some(why)`) or worked (`None`).
    pub fn set_failed(&mut self, ns: &str, sa: &str, why: Option<String>) {
        let key = (ns.to_string(), sa.to_string());
        match why {
            Some(why) => {
                self.failed.insert(key, why);
            }
            None => {
                self.failed.remove(&key);
            }
        }
    }

    /// Service accounts of `ns` whose identity could not be issued or renewed, with why.
    pub fn failures_in(&self, ns: &str) -> Vec<(String, String)> {
        self.failed
            .iter()
            .filter(|((n, _), _)| n == ns)
            .map(|((_, sa), why)| (sa.clone(), why.clone()))
            .collect()
    }

    /// How many identity certificates of `ns` expire at or before `by`.
    pub fn expiring_in(&self, ns: &str, by: SystemTime) -> usize {
        self.ordered
            .iter()
            .take_while(|(t, _, _)| *t <= by)
            .filter(|(_, n, _)| n == ns)
            .count()
    }

    /// How many identity Secrets exist.
    pub fn len(&self) -> usize {
        self.by_key.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.by_key.is_empty()
    }
}

struct State {
    ctx: Arc<Context>,
    namespaces: Store<Namespace>,
    /// Pods selected by their own label ([`crate::selected_pods`]).
    selected_pods: Store<Pod>,
    secrets: Store<Secret>,
    /// What this process wrote last per Secret, until the watch catches up.
    written: Mutex<HashMap<(String, String), Arc<Secret>>>,
    limiter: RateLimiter,
}

fn rv_number(s: &Secret) -> Option<u64> {
    s.metadata.resource_version.as_deref()?.parse().ok()
}

impl State {
    /// The freshest known version of a Secret: the cache, or our own last write when
    /// the cache has not seen it yet (avoids writing twice for one change).
    fn current_secret(&self, ns: &str, name: &str) -> Option<Arc<Secret>> {
        let cached = self.secrets.get(&ObjectRef::new(name).within(ns));
        let key = (ns.to_string(), name.to_string());
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        let Some(mine) = written.get(&key).cloned() else {
            return cached;
        };
        match (&cached, rv_number(&mine)) {
            (Some(c), Some(w)) if rv_number(c).is_some_and(|r| r >= w) => {
                written.remove(&key);
                cached
            }
            (Some(c), None) if c.metadata.resource_version == mine.metadata.resource_version => {
                written.remove(&key);
                cached
            }
            _ => Some(mine),
        }
    }

    fn forget_written(&self, ns: &str, name: &str) {
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written.remove(&(ns.to_string(), name.to_string()));
    }

    fn remember_written(&self, mut secret: Secret) {
        identity_plan::strip_data(&mut secret);
        let key = (
            secret.metadata.namespace.clone().unwrap_or_default(),
            secret.metadata.name.clone().unwrap_or_default(),
        );
        let mut written = self.written.lock().unwrap_or_else(|p| p.into_inner());
        written.insert(key, Arc::new(secret));
    }
}

fn is_ours(secret: &Secret) -> bool {
    secret
        .metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

fn requeue_at(at: SystemTime, now: SystemTime) -> Action {
    // At least one second, so a certificate due now is not retried in a tight loop.
    let wait = at.duration_since(now).unwrap_or(Duration::ZERO);
    Action::requeue(wait.max(Duration::from_secs(1)))
}

async fn apply(state: &State, api: &Api<Secret>, secret: &Secret, object: &str) -> Result<()> {
    let ctx = &state.ctx;
    let name = secret.metadata.name.clone().unwrap_or_default();
    let _permit = ctx.leader.permit()?;
    ctx.telemetry.metrics.api_write(NAME);
    let written = api
        .patch(
            &name,
            &PatchParams::apply(FIELD_MANAGER).force(),
            &Patch::Apply(secret),
        )
        .await
        .map_err(Error::kube("applying", object.to_string()))?;
    state.remember_written(written);
    Ok(())
}

/// Reads one Secret with its data, with the `list` permission the controller already
/// has (a field selector on the name) rather than a `get` on every Secret.
async fn read_secret(api: &Api<Secret>, name: &str, object: &str) -> Result<Option<Secret>> {
    let by_name = ListParams::default().fields(&format!("metadata.name={name}"));
    let list = api
        .list(&by_name)
        .await
        .map_err(Error::kube("reading", object.to_string()))?;
    Ok(list
        .items
        .into_iter()
        .find(|s| s.metadata.name.as_deref() == Some(name)))
}

async fn reconcile(sa: Arc<ServiceAccount>, state: Arc<State>) -> Result<Action> {
    let ctx = state.ctx.clone();
    let _timer = ctx.telemetry.metrics.reconcile_started(NAME);
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    // Until both caches have listed, "no Secret" or "namespace not in the mesh" only
    // means "not seen yet": acting on it would reissue or delete valid identities.
    if caches_listing(
        &ctx,
        &[
            "cache/identity-namespaces",
            "cache/identity-secrets",
            SELECTED_PODS_GATE,
        ],
    ) {
        return Ok(Action::requeue(std::time::Duration::from_millis(500)));
    }
    let ns = sa.metadata.namespace.clone().unwrap_or_default();
    let sa_name = sa.metadata.name.clone().unwrap_or_default();
    let name = secret_name(&sa_name);
    let object = format!("Secret {ns}/{name}");
    let api: Api<Secret> = Api::namespaced(ctx.client.clone(), &ns);
    let existing = state.current_secret(&ns, &name);
    let has_selected_pod = selected_pods::any_in(&state.selected_pods, &ns);
    let in_mesh = state
        .namespaces
        .get(&ObjectRef::new(&ns))
        .is_some_and(|n| needs_mesh(&n, has_selected_pod, &ctx.config.namespace));
    if !in_mesh || sa.metadata.deletion_timestamp.is_some() {
        if existing.as_deref().is_some_and(is_ours) {
            let _permit = ctx.leader.permit()?;
            ctx.telemetry.metrics.api_write(NAME);
            match api.delete(&name, &DeleteParams::default()).await {
                Ok(_) => {}
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(Error::kube("deleting", object)(e)),
            }
            state.forget_written(&ns, &name);
            tracing::info!(namespace = %ns, service_account = %sa_name, "namespace left the mesh: identity Secret deleted");
        }
        return Ok(Action::await_change());
    }
    let Some(ca) = ctx.ca.current() else {
        // The CA loader triggers a pass once a CA is in; the requeue covers a trigger
        // sent before this controller subscribed.
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    };
    let owner_uid = sa.metadata.uid.clone().ok_or_else(|| Error::Invalid {
        object: format!("ServiceAccount {ns}/{sa_name}"),
        field: "metadata.uid".into(),
        reason: "missing".into(),
    })?;
    let spiffe_id =
        SpiffeId::for_service_account(ca.ca.trust_domain(), &ns, &sa_name).map_err(|source| {
            Error::Ca {
                object: format!("ServiceAccount {ns}/{sa_name}"),
                source,
            }
        })?;
    let now = ctx.clock.now();
    // One reading for the whole reconcile: renewal and lifetime agree.
    let settings = ctx.identity_settings_in_force();
    let wanted = Wanted {
        namespace: &ns,
        service_account: &sa_name,
        owner_uid: &owner_uid,
        spiffe_id: &spiffe_id,
        own_roots: ca.ca.own_roots(),
        bundle_pem: &ca.trust_bundle_pem,
        root_fingerprint: &ca.root_fingerprint,
        policy: &settings.renewal,
        now,
    };
    let key = backoff::key(NAME, sa.as_ref());
    let mut decision = identity_plan::decide(existing.as_deref(), &wanted);
    // A rewrite keeps the certificate and key, which the cache does not hold
    // (identity_plan::strip_data): read the Secret, and decide on what it holds now.
    let mut full = None;
    if matches!(decision, Decision::Rewrite { .. }) {
        full = read_secret(&api, &name, &object).await?;
        decision = identity_plan::decide(full.as_ref(), &wanted);
    }
    let action = match decision {
        Decision::Keep { renew_at } => requeue_at(renew_at, now),
        Decision::Rewrite {
            renew_at,
            not_after,
            why,
            old_root,
        } => {
            let old = full.as_ref().and_then(|s| s.data.as_ref());
            let field = |k: &str| {
                old.and_then(|d| d.get(k))
                    .map(|b| b.0.clone())
                    .unwrap_or_default()
            };
            // The annotation keeps naming the root the kept certificate chains to
            // (rotation progress counts it as not moved yet).
            let kept = Wanted {
                root_fingerprint: old_root.as_deref().unwrap_or(wanted.root_fingerprint),
                ..wanted
            };
            let secret = desired_secret(
                &kept,
                &field(identity_plan::CERT_CHAIN),
                &field(identity_plan::KEY),
                not_after,
            );
            apply(&state, &api, &secret, &object).await?;
            tracing::info!(namespace = %ns, service_account = %sa_name, why, "identity Secret rewritten (certificate kept)");
            requeue_at(renew_at, now)
        }
        Decision::Issue(reason) => {
            // A new root or trust domain reissues everything: spread it out.
            if matches!(reason, IssueReason::Root | IssueReason::Identity) {
                let wait = state.limiter.reserve();
                if !wait.is_zero() {
                    let mut stop = std::pin::pin!(ctx.shutdown());
                    tokio::select! {
                        _ = tokio::time::sleep(wait) => {}
                        _ = &mut stop => return Ok(Action::await_change()),
                    }
                }
            }
            let ttl = settings.workload_ttl;
            let issued = match ca.ca.issue_workload(&spiffe_id, ttl, ctx.clock.now()) {
                Ok(issued) => issued,
                Err(source) => {
                    ctx.telemetry
                        .metrics
                        .identity(&ctx.telemetry.metrics.identities_failed, reason.label());
                    ctx.identities
                        .lock()
                        .unwrap_or_else(|p| p.into_inner())
                        .set_failed(&ns, &sa_name, Some(source.to_string()));
                    let r = reference("ServiceAccount", &ns, &sa_name, Some(&owner_uid));
                    ctx.events
                        .publish(
                            &r,
                            true,
                            "IdentityFailed",
                            "IssueCertificate",
                            format!("could not issue {spiffe_id}: {source}"),
                        )
                        .await;
                    return Err(Error::Ca { object, source });
                }
            };
            let secret = desired_secret(
                &wanted,
                issued.cert_chain_pem.as_bytes(),
                issued.key_pem.expose().as_bytes(),
                issued.not_after,
            );
            if let Err(e) = apply(&state, &api, &secret, &object).await {
                if !matches!(e, Error::NotLeader) {
                    ctx.telemetry
                        .metrics
                        .identity(&ctx.telemetry.metrics.identities_failed, reason.label());
                }
                return Err(e);
            }
            ctx.identities
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .set_failed(&ns, &sa_name, None);
            let metrics = &ctx.telemetry.metrics;
            match &reason {
                IssueReason::New => metrics.identity(&metrics.identities_issued, reason.label()),
                _ => metrics.identity(&metrics.identities_renewed, reason.label()),
            }
            tracing::info!(namespace = %ns, service_account = %sa_name, spiffe_id = %spiffe_id, reason = reason.label(), not_after = %trellis_ca::format_time(issued.not_after), "identity issued");
            if matches!(reason, IssueReason::New | IssueReason::Repair(_)) {
                let note = match &reason {
                    IssueReason::Repair(why) => format!("{spiffe_id} reissued into {name}: {why}"),
                    _ => format!("{spiffe_id} issued into {name}"),
                };
                let r = reference("ServiceAccount", &ns, &sa_name, Some(&owner_uid));
                ctx.events
                    .publish(&r, false, "IdentityIssued", "IssueCertificate", note)
                    .await;
            }
            // Renewal time of the new certificate: recomputed from the Secret on the
            // next reconcile (the watch event of this write triggers it).
            Action::await_change()
        }
    };
    ctx.backoffs.succeeded(&key);
    Ok(action)
}

/// The caches never need `managedFields`; dropping them saves memory per object.
pub fn drop_managed_fields<K: kube::Resource>(obj: &mut K) {
    obj.meta_mut().managed_fields = None;
}

/// Whether any of the named cache gates has not seen its initial list yet.
pub(crate) fn caches_listing(ctx: &Context, gates: &[&str]) -> bool {
    ctx.telemetry
        .readiness
        .not_ready()
        .iter()
        .any(|g| gates.contains(&g.as_str()))
}

/// Runs the controller until shutdown.
/// The ServiceAccounts of `namespace`, each reconciled when its namespace's
/// membership may have changed.
fn service_accounts_in(
    service_accounts: &Store<ServiceAccount>,
    namespace: Option<&str>,
) -> Vec<ObjectRef<ServiceAccount>> {
    service_accounts
        .state()
        .into_iter()
        .filter(|sa| sa.metadata.namespace.as_deref() == namespace)
        .map(|sa| ObjectRef::from_obj(sa.as_ref()))
        .collect()
}

/// Readiness gate of this controller's cache of label-selected pods.
const SELECTED_PODS_GATE: &str = "cache/identity-selected-pods";

pub async fn run(ctx: Arc<Context>) {
    let readiness = &ctx.telemetry.readiness;
    let (sa_reader, sa_writer) = reflector::store();
    let sa_stream = cache_synced(
        reflector::reflector(
            sa_writer,
            watcher(
                Api::<ServiceAccount>::all(ctx.client.clone()),
                watcher::Config::default(),
            )
            .modify(drop_managed_fields),
        )
        .default_backoff(),
        readiness.gate("cache/serviceaccounts"),
    )
    .touched_objects();
    let (ns_reader, ns_writer) = reflector::store();
    let ns_stream = cache_synced(
        reflector::reflector(
            ns_writer,
            watcher(
                Api::<Namespace>::all(ctx.client.clone()),
                watcher::Config::default(),
            )
            .modify(drop_managed_fields),
        )
        .default_backoff(),
        readiness.gate("cache/identity-namespaces"),
    )
    .touched_objects();
    let expiry = ctx.identities.clone();
    let (secret_reader, secret_writer) = reflector::store();
    let secret_config =
        watcher::Config::default().labels(&format!("{}=true", identity_plan::IDENTITY_LABEL));
    let index = expiry.clone();
    let secret_stream = cache_synced(
        reflector::reflector(
            secret_writer,
            watcher(Api::<Secret>::all(ctx.client.clone()), secret_config).modify(|s| {
                drop_managed_fields(s);
                // No private keys in the cache, and a fraction of the memory.
                identity_plan::strip_data(s);
            }),
        )
        .default_backoff(),
        readiness.gate("cache/identity-secrets"),
    )
    .inspect(move |event| {
        let mut index = index.lock().unwrap_or_else(|p| p.into_inner());
        let mut record = |s: &Secret, keep: bool| {
            let ns = s.metadata.namespace.as_deref().unwrap_or("");
            let name = s.metadata.name.as_deref().unwrap_or("");
            index.set(
                ns,
                name,
                keep.then(|| identity_plan::recorded_not_after(s)).flatten(),
            );
            index.set_root(
                ns,
                name,
                if keep {
                    Some(identity_plan::recorded_root(s).unwrap_or(""))
                } else {
                    None
                },
            );
        };
        match event {
            Ok(watcher::Event::Apply(s) | watcher::Event::InitApply(s)) => record(s, true),
            Ok(watcher::Event::Delete(s)) => record(s, false),
            _ => {}
        }
    });
    let (selected_pods, pod_stream) = selected_pods::watch(&ctx, SELECTED_PODS_GATE);
    let state = Arc::new(State {
        ctx: ctx.clone(),
        namespaces: ns_reader,
        selected_pods,
        secrets: secret_reader,
        written: Mutex::new(HashMap::new()),
        limiter: RateLimiter::new(ctx.config.rotation_rate),
    });
    // A deleted Secret must be repaired even if our last write is newer than the cache.
    let forget = state.clone();
    let secret_stream = secret_stream
        .inspect(move |event| {
            if let Ok(watcher::Event::Delete(s)) = event {
                forget.forget_written(
                    s.metadata.namespace.as_deref().unwrap_or(""),
                    s.metadata.name.as_deref().unwrap_or(""),
                );
            }
        })
        .touched_objects();
    let gauge_task = tokio::spawn(expiry_gauge(ctx.clone(), expiry));
    let by_namespace = sa_reader.clone();
    let by_pod_namespace = sa_reader.clone();
    // A new renewal ratio moves every renewal time.
    let settings =
        tokio_stream::wrappers::WatchStream::from_changes(ctx.identity_settings.subscribe())
            .map(|_| ());
    let triggers = futures::stream::select(
        futures::stream::select(ctx.leader.on_elected(), ctx.ca.on_change()),
        settings,
    );
    Controller::for_stream(sa_stream, sa_reader)
        .owns_stream(secret_stream)
        .watches_stream(ns_stream, move |ns: Namespace| {
            service_accounts_in(&by_namespace, ns.metadata.name.as_deref())
        })
        // A selected pod may bring its namespace in or, gone, take it out.
        .watches_stream(pod_stream, move |pod: Pod| {
            service_accounts_in(&by_pod_namespace, pod.metadata.namespace.as_deref())
        })
        .reconcile_all_on(triggers)
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .graceful_shutdown_on(ctx.shutdown())
        .run(
            reconcile,
            |sa, error, state: Arc<State>| {
                backoff::error_policy(NAME)(sa, error, state.ctx.clone())
            },
            state,
        )
        .for_each(|_| async {})
        .await;
    gauge_task.abort();
}

/// Keeps `trellis_identity_earliest_expiry_seconds`, `trellis_ca_root_expiry_seconds`
/// and `trellis_ca_rotation_remaining` current (seconds-until gauges move with the
/// clock), and ends a root rotation once every identity Secret chains to the new root
/// and `rotation_grace` has passed since (proxies have picked the new files up).
async fn expiry_gauge(ctx: Arc<Context>, expiry: Arc<Mutex<ExpiryIndex>>) {
    let mut ca_changes = ctx.ca.subscribe();
    loop {
        ca_changes.mark_unchanged();
        let now = ctx.clock.now();
        let secs = |t: SystemTime| {
            t.duration_since(now)
                .map(|d| d.as_secs_f64())
                .unwrap_or(0.0)
        };
        let (earliest, remaining) = {
            let index = expiry.lock().unwrap_or_else(|p| p.into_inner());
            let remaining = ctx
                .ca
                .current()
                .map(|ca| index.not_on_root(&ca.root_fingerprint));
            (index.earliest(), remaining)
        };
        if let Some(t) = earliest {
            ctx.telemetry.metrics.earliest_workload_expiry.set(secs(t));
        }
        let ca = ctx.ca.current();
        if let Some(ca) = &ca {
            ctx.telemetry
                .metrics
                .root_expiry
                .set(secs(ca.root_not_after));
            let remaining = remaining.unwrap_or(0);
            ctx.telemetry
                .metrics
                .rotation_remaining
                .set(i64::try_from(remaining).unwrap_or(i64::MAX));
            // Until the identity Secrets have listed, "none left on the old root" only
            // means "none seen yet" (a restarted operator resumes a rotation).
            let listed = !caches_listing(&ctx, &["cache/identity-secrets"]);
            if ca.rotating() && listed {
                match (remaining, ca.all_moved_at) {
                    (0, None) => {
                        tracing::info!(root = %ca.root_fingerprint, grace = ?ctx.config.rotation_grace, "every identity chains to the new root; previous roots stay for the grace period");
                        ctx.ca.set_all_moved(ca.generation, Some(now));
                    }
                    (0, Some(since)) if now >= since + ctx.config.rotation_grace => {
                        tracing::info!(root = %ca.root_fingerprint, "every identity moved to the new root; previous roots leave the trust bundle");
                        ctx.ca.finish_rotation();
                    }
                    (1.., Some(_)) => ctx.ca.set_all_moved(ca.generation, None),
                    _ => {}
                }
            }
        }
        let tick = if ca.as_ref().is_some_and(|c| c.rotating()) {
            Duration::from_millis(500)
        } else {
            Duration::from_secs(5)
        };
        let mut stop = std::pin::pin!(ctx.shutdown());
        tokio::select! {
            _ = tokio::time::sleep(tick) => {}
            // A new CA starts a rotation: report it at once.
            _ = ca_changes.changed() => {}
            _ = &mut stop => return,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rate_limiter_spaces_reservations() {
        let limiter = RateLimiter::new(10.0);
        let waits: Vec<Duration> = (0..5).map(|_| limiter.reserve()).collect();
        assert!(waits[0] < Duration::from_millis(50));
        assert!(waits[4] >= Duration::from_millis(350), "{waits:?}");
    }

    #[test]
    fn expiry_index_tracks_the_earliest() {
        let mut index = ExpiryIndex::default();
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        index.set("a", "x", Some(t(30)));
        index.set("a", "y", Some(t(10)));
        assert_eq!(index.earliest(), Some(t(10)));
        index.set("a", "y", Some(t(50)));
        assert_eq!(index.earliest(), Some(t(30)));
        index.set("a", "x", None);
        assert_eq!(index.earliest(), Some(t(50)));
    }

    #[test]
    fn expiry_index_counts_expiring_and_failed_per_namespace() {
        let mut index = ExpiryIndex::default();
        let t = |s| SystemTime::UNIX_EPOCH + Duration::from_secs(s);
        index.set("a", "x", Some(t(10)));
        index.set("a", "y", Some(t(50)));
        index.set("b", "z", Some(t(5)));
        assert_eq!(index.expiring_in("a", t(20)), 1);
        assert_eq!(index.expiring_in("a", t(50)), 2);
        assert_eq!(index.expiring_in("c", t(50)), 0);
        index.set_failed("a", "cart", Some("no CA loaded yet".into()));
        assert_eq!(
            index.failures_in("a"),
            vec![("cart".to_string(), "no CA loaded yet".to_string())]
        );
        assert!(index.failures_in("b").is_empty());
        index.set_failed("a", "cart", None);
        assert!(index.failures_in("a").is_empty());
    }
}
