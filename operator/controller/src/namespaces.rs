//! Mesh namespaces: keeps ConfigMap `trellis-ca-root-cert` (key `root-cert.pem`, the
//! whole trust bundle) in every namespace of the mesh, and deletes the one it created
//! when the namespace leaves the mesh.

use crate::backoff;
use crate::context::Context;
use crate::error::{Error, Result};
use crate::mesh::namespace_in_mesh;
use crate::runtime::cache_synced;
use crate::{FIELD_MANAGER, MANAGED_BY, MANAGED_BY_LABEL};
use futures::StreamExt;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{Api, DeleteParams, ObjectMeta, Patch, PatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::reflector::{self, ObjectRef, Store};
use kube::runtime::{WatchStreamExt, watcher};
use std::collections::BTreeMap;
use std::sync::Arc;

/// Controller name (metrics, logs).
pub const NAME: &str = "namespace";
/// The ConfigMap's name (mounted by injected sidecars).
pub const ROOT_CERT_CONFIG_MAP: &str = "trellis-ca-root-cert";
/// Its key.
pub const ROOT_CERT_KEY: &str = "root-cert.pem";
/// Label value of `trellis.dev/component` on the ConfigMap.
pub const COMPONENT_LABEL: &str = "trellis.dev/component";

/// What the ConfigMap should hold, or `None` when it should not exist.
pub fn desired_config_map(ns: &Namespace, bundle_pem: &str) -> Option<ConfigMap> {
    if !namespace_in_mesh(ns) {
        return None;
    }
    let namespace = ns.metadata.name.clone()?;
    Some(ConfigMap {
        metadata: ObjectMeta {
            name: Some(ROOT_CERT_CONFIG_MAP.into()),
            namespace: Some(namespace),
            labels: Some(BTreeMap::from([
                (MANAGED_BY_LABEL.to_string(), MANAGED_BY.to_string()),
                (COMPONENT_LABEL.to_string(), "root-cert".to_string()),
            ])),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            ROOT_CERT_KEY.to_string(),
            bundle_pem.to_string(),
        )])),
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

struct State {
    ctx: Arc<Context>,
    config_maps: Store<ConfigMap>,
}

async fn reconcile(ns: Arc<Namespace>, state: Arc<State>) -> Result<Action> {
    let ctx = &state.ctx;
    let _timer = ctx.telemetry.metrics.reconcile_started(NAME);
    let name = ns.metadata.name.clone().unwrap_or_default();
    if !ctx.leader.is_leader() {
        return Ok(Action::await_change());
    }
    let existing = state
        .config_maps
        .get(&ObjectRef::new(ROOT_CERT_CONFIG_MAP).within(&name));
    let Some(ca) = ctx.ca.current() else {
        // The CA loader triggers every namespace once a CA is in.
        return Ok(Action::await_change());
    };
    let api: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &name);
    let object = format!("ConfigMap {name}/{ROOT_CERT_CONFIG_MAP}");
    match desired_config_map(&ns, &ca.trust_bundle_pem) {
        Some(want) => {
            let current = existing
                .as_ref()
                .and_then(|cm| cm.data.as_ref())
                .and_then(|d| d.get(ROOT_CERT_KEY));
            if current == Some(&ca.trust_bundle_pem) && existing.as_deref().is_some_and(is_ours) {
                return Ok(Action::await_change());
            }
            let _permit = ctx.leader.permit()?;
            ctx.telemetry.metrics.api_write(NAME);
            api.patch(
                ROOT_CERT_CONFIG_MAP,
                &PatchParams::apply(FIELD_MANAGER).force(),
                &Patch::Apply(&want),
            )
            .await
            .map_err(Error::kube("applying", object))?;
            tracing::info!(namespace = %name, "root certificate ConfigMap written");
        }
        None => {
            if existing.as_deref().is_some_and(is_ours) {
                let _permit = ctx.leader.permit()?;
                ctx.telemetry.metrics.api_write(NAME);
                match api
                    .delete(ROOT_CERT_CONFIG_MAP, &DeleteParams::default())
                    .await
                {
                    Ok(_) => {
                        tracing::info!(namespace = %name, "namespace left the mesh: root certificate ConfigMap deleted")
                    }
                    Err(kube::Error::Api(s)) if s.code == 404 => {}
                    Err(e) => return Err(Error::kube("deleting", object)(e)),
                }
            }
        }
    }
    ctx.backoffs.succeeded(&backoff::key(NAME, ns.as_ref()));
    Ok(Action::await_change())
}

/// Runs the controller until shutdown.
pub async fn run(ctx: Arc<Context>) {
    let namespaces: Api<Namespace> = Api::all(ctx.client.clone());
    let config_maps: Api<ConfigMap> = Api::all(ctx.client.clone());
    let ns_gate = ctx.telemetry.readiness.gate("cache/namespaces");
    let cm_gate = ctx.telemetry.readiness.gate("cache/root-cert-configmaps");
    let (reader, writer) = reflector::store();
    let cm_config = watcher::Config::default().labels(&format!(
        "{MANAGED_BY_LABEL}={MANAGED_BY},{COMPONENT_LABEL}=root-cert"
    ));
    let cm_stream = cache_synced(
        reflector::reflector(
            writer,
            watcher(config_maps, cm_config).modify(crate::identity::drop_managed_fields),
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
    let state = Arc::new(State {
        ctx: ctx.clone(),
        config_maps: reader,
    });
    let triggers = futures::stream::select(ctx.leader.on_elected(), ctx.ca.on_change());
    Controller::for_stream(ns_stream, ns_reader)
        .watches_stream(cm_stream, |cm: ConfigMap| {
            cm.metadata.namespace.map(|ns| ObjectRef::new(&ns))
        })
        .reconcile_all_on(triggers)
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
