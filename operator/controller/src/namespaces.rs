//! Mesh namespaces: keeps ConfigMap `trellis-ca-root-cert` (key `root-cert.pem`, the
//! whole trust bundle) and ConfigMap `trellis-sidecar-bootstrap` (the injected sidecar's
//! Envoy bootstrap, from [`crate::OperatorConfig::sidecar_bootstrap`]) in every namespace
//! of the mesh, and deletes the ones it created when the namespace leaves the mesh.

use crate::backoff;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::mesh::needs_mesh;
use crate::runtime::cache_synced;
use crate::selected_pods;
use crate::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace, Pod};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Controller name (metrics, logs).
pub const NAME: &str = "namespace";
/// The ConfigMap's name (mounted by injected sidecars).
pub const ROOT_CERT_CONFIG_MAP: &str = "trellis-ca-root-cert";
/// Its key.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
/// The sidecar bootstrap ConfigMap's name (mounted by injected sidecars).
pub const BOOTSTRAP_CONFIG_MAP: &str = "trellis-sidecar-bootstrap";
/// Label value of `trellis.dev/component` on the ConfigMap.
pub const COMPONENT_LABEL: &str = "trellis.dev/component";
/// Readiness gate of this controller's cache of label-selected pods.
const SELECTED_PODS_GATE: &str = "cache/namespace-selected-pods";

/// What the root ConfigMap should hold, or `None` when it should not exist
/// (namespace outside the mesh: not `in_mesh`).
pub fn desired_config_map(ns: &Namespace, in_mesh: bool, bundle_pem: &str) -> Option<ConfigMap> {
    desired(
        ns,
        in_mesh,
        ROOT_CERT_CONFIG_MAP,
        "root-cert",
        BTreeMap::from([(ROOT_CERT_KEY.to_string(), bundle_pem.to_string())]),
    )
}

/// What the sidecar bootstrap ConfigMap should hold, or `None` when it should not exist
/// (namespace outside the mesh, or no bootstrap configured).
pub fn desired_bootstrap_config_map(
    ns: &Namespace,
    in_mesh: bool,
    bootstrap: &BTreeMap<String, String>,
) -> Option<ConfigMap> {
    if bootstrap.is_empty() {
        return None;
    }
    desired(
        ns,
        in_mesh,
        BOOTSTRAP_CONFIG_MAP,
        "sidecar-bootstrap",
        bootstrap.clone(),
    )
}

fn desired(
    ns: &Namespace,
    in_mesh: bool,
    name: &str,
    component: &str,
    data: BTreeMap<String, String>,
) -> Option<ConfigMap> {
    if !in_mesh {
        return None;
    }
    let namespace = ns.metadata.name.clone()?;
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(name.into()),
            namespace: Some(namespace),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (COMPONENT_LABEL.to_string(), component.to_string()),
            ])),
            ..Default::default()
        },
        data: Some(data),
        ..Default::default()
    })
}

fn is_ours(cm: &ConfigMap) -> bool {
    cm.metadata
        .labels
        .as_ref()
        .and_then(|l| l.get(MANAGED_BY_LABEL))
        .is_some_and(|v| v == MANAGED_BY)
}

/// The one data key a cached ConfigMap keeps (`:` never occurs in the keys of a
/// ConfigMap the API server returns): the [`data_digest`] of its data.
const CACHED_DIGEST: &str = "trellis:sha256";

/// SHA-256 (hex) over a ConfigMap's data, each key and value length-prefixed.
fn data_digest(data: &BTreeMap<String, String>) -> String {
    let mut h = Sha256::new();
    for (k, v) in data {
        for part in [k, v] {
            h.update((part.len() as u64).to_be_bytes());
            h.update(part.as_bytes());
        }
    }
    hex::encode(h.finalize())
}

/// Shrinks a ConfigMap for the cache: its data becomes its digest (the controller only
/// asks whether the data is what it wants). 1,000 mesh namespaces otherwise keep every
/// trust bundle and sidecar bootstrap in memory a second time (~8 MB, `make bench`).
fn digest_data(cm: &mut ConfigMap) {
    cm.data = cm
        .data
        .as_ref()
        .map(|d| BTreeMap::from([(CACHED_DIGEST.to_string(), data_digest(d))]));
    cm.binary_data = None;
}

/// Whether a cached (digested) ConfigMap holds `want`.
fn holds(cached: &ConfigMap, want: Option<&BTreeMap<String, String>>) -> bool {
    let digest = cached.data.as_ref().and_then(|d| d.get(CACHED_DIGEST));
    digest.map(String::as_str) == want.map(data_digest).as_deref()
}

struct State {
    ctx: Arc<Context>,
    config_maps: Store<ConfigMap>,
    /// Pods selected by their own label ([`crate::selected_pods`]).
    selected_pods: Store<Pod>,
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action> {
    let ctx = &state.ctx;
    let _timer = ctx.telemetry.metrics.reconcile_started(NAME);
    let name = ns.metadata.name.clone().unwrap_or_default();
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    // Until the ConfigMap cache has listed, a missing ConfigMap only means "not seen
    // yet": writing then would rewrite what a previous operator already wrote.
    if crate::identity::caches_listing(ctx, &["cache/root-cert-configmaps", SELECTED_PODS_GATE]) {
        return Ok(Action::requeue(std::time::Duration::from_millis(500)));
    }
    let has_selected_pod = selected_pods::any_in(&state.selected_pods, &name);
    let in_mesh = needs_mesh(&ns, has_selected_pod, &ctx.config.namespace);
    let bootstrap = desired_bootstrap_config_map(&ns, in_mesh, &ctx.config.sidecar_bootstrap);
    sync(&state, &name, BOOTSTRAP_CONFIG_MAP, bootstrap).await?;
    let Some(ca) = ctx.ca.current() else {
        // The CA loader triggers every namespace once a CA is in; the requeue covers a
        // trigger sent before this controller subscribed.
        return Ok(Action::requeue(std::time::Duration::from_secs(1)));
    };
    let root = desired_config_map(&ns, in_mesh, &ca.trust_bundle_pem);
    sync(&state, &name, ROOT_CERT_CONFIG_MAP, root).await?;
    ctx.backoffs.succeeded(&backoff::key(NAME, ns.as_ref()));
    Ok(Action::await_change())
}

/// Makes ConfigMap `cm_name` in namespace `name` what `want` says: applied when its data
/// differs, deleted (only if ours) when `want` is `None`.
async fn sync(state: &State, name: &str, cm_name: &str, want: Option<ConfigMap>) -> Result<()> {
    let ctx = &state.ctx;
    let existing = state.config_maps.get(&ObjectRef::new(cm_name).within(name));
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), name);
    let object = format!("ConfigMap {name}/{cm_name}");
    match want {
        Some(want) => {
            if existing
                .as_deref()
                .is_some_and(|cm| is_ours(cm) && holds(cm, want.data.as_ref()))
            {
                return Ok(());
            }
            let _permit = ctx.leader.permit()?;
            ctx.telemetry.metrics.api_write(NAME);
            api.patch(
                cm_name,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&want),
            )
            .await
            .map_err(Error::kube("applying", object))?;
            tracing::info!(namespace = %name, configmap = cm_name, "mesh namespace ConfigMap written");
        }
        None => {
            if existing.as_deref().is_some_and(is_ours) {
                let _permit = ctx.leader.permit()?;
                ctx.telemetry.metrics.api_write(NAME);
                match api.delete(cm_name, &DeleteParams::default()).await {
                    Ok(_) => {
                        tracing::info!(namespace = %name, configmap = cm_name, "namespace left the mesh: ConfigMap deleted")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(Error::kube("deleting", object)(e)),
                }
            }
        }
    }
    Ok(())
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let config_maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    let ns_gate = ctx.telemetry.readiness.gate("cache/namespaces");
    let cm_gate = ctx.telemetry.readiness.gate("cache/root-cert-configmaps");
    let (reader, writer) = reflector::store();
    // Both ConfigMaps this controller writes carry these labels (the component label
    // tells them apart; the store is looked up by name).
    let cm_config = watcher::Config::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL} in (root-cert,sidecar-bootstrap)"
    ));
    let cm_stream = cache_synced(
        reflector::reflector(
            writer,
            watcher(config_maps, cm_config).modify(|cm| {
                crate::identity::drop_managed_fields(cm);
                digest_data(cm);
            }),
        )
        .default_backoff(),
        cm_gate,
    )
    .touched_objects();
    let (ns_reader, ns_writer) = reflector::store();
    let ns_stream = cache_synced(
        reflector::reflector(
            ns_writer,
            watcher(namespaces, watcher::Config::default())
                .modify(crate::identity::drop_managed_fields),
        )
        .default_backoff(),
        ns_gate,
    )
    .touched_objects();
    let (selected_pods, pod_stream) = selected_pods::watch(&ctx, SELECTED_PODS_GATE);
    let state = Arc::new(State {
        ctx: ctx.clone(),
        config_maps: reader,
        selected_pods,
    });
    let triggers = futures::stream::select(ctx.leader.on_elected(), ctx.ca.on_change());
    Controller::for_stream(ns_stream, ns_reader)
        .watches_stream(cm_stream, |cm: ConfigMap| {
            cm.metadata.namespace.map(|ns| ObjectRef::new(&ns))
        })
        .watches_stream(pod_stream, |pod: Pod| {
            pod.metadata.namespace.map(|ns| ObjectRef::new(&ns))
        })
        .reconcile_all_on(triggers)
        // Bounded like the identity controller: unbounded, 1,000 mesh namespaces were
        // 1,000 requests at once, each an HTTP/1 connection (buffers, TLS state) that
        // the client pool then kept for its idle timeout — ~55 MB of the operator's
        // peak at 1,000 namespaces (`make bench`, heaptrack).
        .with_config(kube::runtime::controller::Config::default().concurrency(16))
        .graceful_shutdown_on(ctx.shutdown())
        .run(
            reconcile,
            |ns, error, state: Arc<State>| {
                backoff::error_policy(NAME)(ns, error, state.ctx.clone())
            },
            state,
        )
        .for_each(|_| async {})
        .await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ns(labels: &[(&str, &str)]) -> Namespace {
        Namespace {
            metadata: ObjectMeta {
                name: Some("shop".into()),
                labels: Some(
                    labels
                        .iter()
                        .map(|(k, v)| (k.to_string(), v.to_string()))
                        .collect(),
                ),
                ..Default::default()
            },
            ..Default::default()
        }
    }

    #[test]
    fn bootstrap_config_map_only_in_mesh_namespaces_and_only_when_configured() {
        let files = BTreeMap::from([("envoy.json".to_string(), "{}".to_string())]);
        let mesh = ns(&[("istio-injection", "enabled")]);
        let cm = desired_bootstrap_config_map(&mesh, true, &files).expect("mesh namespace");
        let mut cached = cm.clone();
        assert_eq!(cm.metadata.name.as_deref(), Some(BOOTSTRAP_CONFIG_MAP));
        assert_eq!(cm.metadata.namespace.as_deref(), Some("shop"));
        assert_eq!(cm.data.as_ref(), Some(&files));
        let labels = cm.metadata.labels.unwrap();
        assert_eq!(labels[COMPONENT_LABEL], "sidecar-bootstrap");
        assert_eq!(labels[MANAGED_BY_LABEL], MANAGED_BY);
        assert!(desired_bootstrap_config_map(&ns(&[]), false, &files).is_none());
        assert!(desired_bootstrap_config_map(&mesh, true, &BTreeMap::new()).is_none());
        digest_data(&mut cached);
        assert!(holds(&cached, Some(&files)));
        assert!(!format!("{cached:?}").contains("envoy.json"));
        let other = BTreeMap::from([("envoy.json".to_string(), "{ }".to_string())]);
        assert!(!holds(&cached, Some(&other)));
        assert!(!holds(&cached, None));
        let root = desired_config_map(&mesh, true, "PEM").unwrap();
        assert_eq!(root.data.unwrap()[ROOT_CERT_KEY], "PEM");
        assert_eq!(root.metadata.labels.unwrap()[COMPONENT_LABEL], "root-cert");
    }
}
