//! Pods labelled `sidecar.istio.io/inject=true`. In a namespace whose labels
//! leave injection to its pods, such a pod brings the namespace into the mesh
//! ([`crate::mesh::needs_mesh`]): the injector gives it a proxy, which needs its
//! identity Secret and the namespace's ConfigMaps. Watched by that label and
//! kept as metadata only.

use crate::context::Context;
use crate::mesh::POD_INJECT_LABEL;
use crate::runtime::cache_synced;
use futures::Stream;
use k8s_openapi::api::core::v1::Pod;
use kube::api::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};

/// The selected pods' cache (its readiness gate is `gate`) and its stream of
/// changed pods.
pub fn watch(
    ctx: &Context,
    gate: &'static str,
) -> (
    Store<Pod>,
    impl Stream<Item = Result<Pod, watcher::Error>> + use<>,
) {
    let (reader, writer) = reflector::store();
    let config = watcher::Config::default().labels(&format!("{POD_INJECT_LABEL}=true"));
    let stream = cache_synced(
        reflector::reflector(
            writer,
            watcher(Api::<Pod>::all(ctx.client.clone()), config).modify(|pod| {
                crate::identity::drop_managed_fields(pod);
                pod.spec = None;
                pod.status = None;
            }),
        )
        .default_backoff(),
        ctx.telemetry.readiness.gate(gate),
    )
    .touched_objects();
    (reader, stream)
}

/// Whether `namespace` holds a selected pod.
pub fn any_in(pods: &Store<Pod>, namespace: &str) -> bool {
    pods.state()
        .iter()
        .any(|p| p.metadata.namespace.as_deref() == Some(namespace))
}
