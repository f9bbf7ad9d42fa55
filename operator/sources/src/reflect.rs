//! The Kubernetes shell: one kube-runtime watcher per kind, turned into
//! [`Change`]s, applied to the [`MeshFeed`] in batches; after each batch the new
//! model goes to the xDS server (with a scoped push) and a new [`MeshView`] to
//! whoever watches (status, MeshStatus, identities).
use std::collections::BTreeSet;
use std::fmt::Debug;
use std::sync::Arc;

use futures_util::StreamExt;
use k8s_openapi::api::core::v1::{Namespace, Node, Pod, Secret, Service, ServiceAccount};
use k8s_openapi::api::discovery::v1::EndpointSlice;
use kube::api::{Api, ApiResource, DynamicObject};
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use serde::de::DeserializeOwned;
use tokio::sync::{mpsc, watch};
use tokio::task::JoinHandle;
use trellis_api::Resource;
use trellis_model::{ChangeScope, MeshSettings};
use trellis_xds::XdsServer;

use crate::SourcesError;
use crate::credentials;
use crate::feed::{MeshFeed, MeshView, push_scope};
use crate::input::{
    Change, Input, SourceKind, input_from_json, node_input, object_ref, secret_input,
};
use crate::snapshot::ModelSnapshots;

/// Most changes applied in one batch before the model is published.
const MAX_BATCH: usize = 2048;

/// The type-erased API resource of a watched kind.
pub fn api_resource(kind: SourceKind) -> ApiResource {
    let (group, version) = kind.group_version();
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: kind.api_version(),
        kind: kind.as_str().into(),
        plural: kind.plural().into(),
    }
}

struct Msg {
    kind: SourceKind,
    change: Change,
    /// The kind has just finished a complete list.
    listed: bool,
}

/// The running reflectors. Dropping it stops them.
pub struct Sources {
    view: watch::Receiver<Arc<MeshView>>,
    tasks: Vec<JoinHandle<()>>,
}

impl Sources {
    /// Starts a watcher per kind and the loop that applies their changes. `xds`, when
    /// given, serves from `snapshots` and is pushed after every change that matters.
    /// Secrets of `control_plane_namespace` (the CA's) are never read.
    pub fn start(
        client: kube::Client,
        base: MeshSettings,
        snapshots: Arc<ModelSnapshots>,
        xds: Option<XdsServer>,
        control_plane_namespace: &str,
    ) -> Sources {
        let (tx, rx) = mpsc::unbounded_channel::<Msg>();
        let feed = MeshFeed::new(base);
        let (view_tx, view) = watch::channel(Arc::new(feed.view(false)));
        let mut tasks = vec![tokio::spawn(run_feed(rx, feed, snapshots, xds, view_tx))];
        for kind in SourceKind::ALL {
            tasks.push(spawn_watch(
                client.clone(),
                kind,
                control_plane_namespace,
                tx.clone(),
            ));
        }
        Sources { view, tasks }
    }

    /// The latest view; `changed()` on it wakes after every batch.
    pub fn view(&self) -> watch::Receiver<Arc<MeshView>> {
        self.view.clone()
    }

    /// Every kind has been listed at least once.
    pub fn synced(&self) -> bool {
        self.view.borrow().synced
    }
}

impl Drop for Sources {
    fn drop(&mut self) {
        for t in &self.tasks {
            t.abort();
        }
    }
}

fn spawn_watch(
    client: kube::Client,
    kind: SourceKind,
    control_plane_namespace: &str,
    tx: mpsc::UnboundedSender<Msg>,
) -> JoinHandle<()> {
    let typed = |r: Resource| Input::Resource(Box::new(r));
    let all = watcher::Config::default();
    match kind {
        SourceKind::Secret => tokio::spawn(watch_kind(
            Api::<Secret>::all(client),
            watcher::Config::default()
                .fields(&credentials::watch_field_selector(control_plane_namespace)),
            kind,
            |o| secret_input(&o),
            tx,
        )),
        SourceKind::Namespace => tokio::spawn(watch_kind(
            Api::<Namespace>::all(client),
            all.clone(),
            kind,
            move |o| typed(Resource::Namespace(o)),
            tx,
        )),
        SourceKind::Service => tokio::spawn(watch_kind(
            Api::<Service>::all(client),
            all.clone(),
            kind,
            move |o| typed(Resource::Service(o)),
            tx,
        )),
        SourceKind::ServiceAccount => tokio::spawn(watch_kind(
            Api::<ServiceAccount>::all(client),
            all.clone(),
            kind,
            move |o| typed(Resource::ServiceAccount(o)),
            tx,
        )),
        SourceKind::Pod => tokio::spawn(watch_kind(
            Api::<Pod>::all(client),
            all.clone(),
            kind,
            |o| Input::Pod(Box::new(o)),
            tx,
        )),
        SourceKind::Node => tokio::spawn(watch_kind(
            Api::<Node>::all(client),
            all.clone(),
            kind,
            |o| node_input(&o),
            tx,
        )),
        SourceKind::EndpointSlice => tokio::spawn(watch_kind(
            Api::<EndpointSlice>::all(client),
            all.clone(),
            kind,
            |o| Input::EndpointSlice(Box::new(o)),
            tx,
        )),
        _ => {
            let api = Api::<DynamicObject>::all_with(client, &api_resource(kind));
            tokio::spawn(watch_kind(
                api,
                all,
                kind,
                move |o: DynamicObject| {
                    // Serializing a DynamicObject cannot fail (string keys only).
                    let json = serde_json::to_value(&o).unwrap_or_default();
                    input_from_json(kind, json)
                },
                tx,
            ))
        }
    }
}

async fn watch_kind<K, F>(
    api: Api<K>,
    config: watcher::Config,
    kind: SourceKind,
    convert: F,
    tx: mpsc::UnboundedSender<Msg>,
) where
    K: kube::Resource + Clone + DeserializeOwned + Debug + Send + 'static,
    F: Fn(K) -> Input + Send + 'static,
{
    let mut stream = watcher::watcher(api, config).default_backoff().boxed();
    let mut listing: Vec<Input> = Vec::new();
    while let Some(item) = stream.next().await {
        let msg = match item {
            Ok(Event::Init) => {
                listing.clear();
                continue;
            }
            Ok(Event::InitApply(o)) => {
                listing.push(convert(o));
                continue;
            }
            Ok(Event::InitDone) => Msg {
                kind,
                change: Change::Reset(kind, std::mem::take(&mut listing)),
                listed: true,
            },
            Ok(Event::Apply(o)) => Msg {
                kind,
                change: Change::Apply(convert(o)),
                listed: false,
            },
            Ok(Event::Delete(o)) => Msg {
                kind,
                change: Change::Delete(object_ref(kind.as_str(), o.meta())),
                listed: false,
            },
            Err(source) => {
                // The stream backs off and relists by itself.
                let e = SourcesError::Watch {
                    kind: kind.as_str(),
                    source,
                };
                tracing::warn!(error = %e, "watch failed; retrying");
                continue;
            }
        };
        if tx.send(msg).is_err() {
            return;
        }
    }
}

async fn run_feed(
    mut rx: mpsc::UnboundedReceiver<Msg>,
    mut feed: MeshFeed,
    snapshots: Arc<ModelSnapshots>,
    xds: Option<XdsServer>,
    view_tx: watch::Sender<Arc<MeshView>>,
) {
    let mut listed: BTreeSet<SourceKind> = BTreeSet::new();
    let mut published = (feed.revision(), false);
    while let Some(first) = rx.recv().await {
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match rx.try_recv() {
                Ok(m) => batch.push(m),
                Err(_) => break,
            }
        }
        let mut scope = ChangeScope::None;
        for msg in batch {
            if msg.listed {
                listed.insert(msg.kind);
            }
            scope = scope.union(feed.apply(msg.change));
        }
        let synced = listed.len() == SourceKind::ALL.len();
        if (feed.revision(), synced) == published {
            continue;
        }
        published = (feed.revision(), synced);
        let view = Arc::new(feed.view(synced));
        snapshots.set(view.model.clone(), view.credentials.clone());
        if let (Some(xds), Some(push)) = (&xds, push_scope(&view.model, &scope)) {
            xds.push(push);
        }
        view_tx.send_replace(view);
    }
}
