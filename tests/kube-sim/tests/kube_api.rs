//! kube::Api and kube-runtime against a simulator: watch 410s, reflectors relisting,
//! merge patches, a controller reaching a steady state.

use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchParams};
use kube::runtime::controller::{Action, Controller};
use kube::runtime::{WatchStreamExt, reflector, watcher};
use kube_sim::{Options, TestServer};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

fn configmap(name: &str) -> ConfigMap {
    serde_json::from_value(json!({"metadata": {"name": name}, "data": {"k": "v"}}))
        .expect("valid ConfigMap")
}

/// Waits (bounded) for a condition that the system must reach.
async fn eventually<F: FnMut() -> bool>(what: &str, mut cond: F) {
    for _ in 0..500 {
        if cond() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("never happened: {what}");
}

#[tokio::test]
async fn watch_from_a_compacted_version_is_410_gone() {
    let server = TestServer::start_with(Options {
        history_limit: 3,
        ..Options::default()
    })
    .expect("server starts");
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for i in 0..6 {
        api.create(&PostParams::default(), &configmap(&format!("c{i}")))
            .await
            .expect("create");
    }
    let err = match api.watch(&WatchParams::default(), "1").await {
        Ok(_) => panic!("a watch from resourceVersion 1 must fail once history moved on"),
        Err(e) => e,
    };
    match err {
        kube::Error::Api(status) => {
            assert_eq!(status.code, 410);
            assert_eq!(status.reason, "Expired");
        }
        other => panic!("expected a 410 Status, got {other:?}"),
    }
}

#[tokio::test]
async fn reflector_survives_410_by_relisting() {
    let server = TestServer::start().expect("server starts");
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    api.create(&PostParams::default(), &configmap("before"))
        .await
        .expect("create");

    let (reader, writer) = reflector::store();
    let inits = Arc::new(AtomicUsize::new(0));
    let counted = inits.clone();
    let stream = reflector(writer, watcher(api.clone(), watcher::Config::default()))
        .inspect(move |ev| {
            if matches!(ev, Ok(watcher::Event::Init)) {
                counted.fetch_add(1, Ordering::SeqCst);
            }
        })
        .applied_objects()
        .for_each(|_| async {});
    let task = tokio::spawn(stream);

    let r = reader.clone();
    eventually("reflector lists the first object", || r.state().len() == 1).await;
    assert_eq!(inits.load(Ordering::SeqCst), 1);

    server.expire_watches();
    api.create(&PostParams::default(), &configmap("after"))
        .await
        .expect("create");
    let r = reader.clone();
    eventually("reflector sees the object created after the 410", || {
        r.state().len() == 2
    })
    .await;
    assert!(
        inits.load(Ordering::SeqCst) >= 2,
        "the watcher relisted after 410"
    );
    task.abort();
}

#[tokio::test]
async fn merge_patch_behaves_as_on_a_cluster() {
    let server = TestServer::start().expect("server starts");
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let created = api
        .create(&PostParams::default(), &configmap("m"))
        .await
        .expect("create");
    let patch = json!({"metadata": {"labels": {"a": "b"}}, "data": {"k": null, "n": "1"}});
    let patched = api
        .patch("m", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("merge patch");
    let data = patched.data.expect("data");
    assert!(!data.contains_key("k"), "null deletes a key");
    assert_eq!(data["n"], "1");
    assert_eq!(patched.metadata.labels.expect("labels")["a"], "b");
    assert_eq!(patched.metadata.uid, created.metadata.uid);
    assert_ne!(
        patched.metadata.resource_version,
        created.metadata.resource_version
    );
    let again = api
        .patch("m", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("same patch again");
    assert_eq!(
        again.metadata.resource_version, patched.metadata.resource_version,
        "a no-op patch writes nothing"
    );
    let stale = json!({"metadata": {"resourceVersion": created.metadata.resource_version}, "data": {"x": "y"}});
    let err = api
        .patch("m", &PatchParams::default(), &Patch::Merge(&stale))
        .await
        .expect_err("a patch pinned to an old resourceVersion conflicts");
    assert!(
        matches!(err, kube::Error::Api(ref s) if s.code == 409),
        "{err:?}"
    );
}

#[derive(Debug, thiserror::Error)]
#[error("reconcile failed: {0}")]
struct ReconcileError(#[from] kube::Error);

#[tokio::test]
async fn controller_reaches_a_steady_state() {
    let server = TestServer::start().expect("server starts");
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    for name in ["one", "two", "three"] {
        api.create(&PostParams::default(), &configmap(name))
            .await
            .expect("create");
    }
    let reconciles = Arc::new(AtomicUsize::new(0));
    let ctx = Arc::new((api.clone(), reconciles.clone()));
    let controller = Controller::new(api.clone(), watcher::Config::default())
        .run(
            |cm: Arc<ConfigMap>, ctx: Arc<(Api<ConfigMap>, Arc<AtomicUsize>)>| async move {
                ctx.1.fetch_add(1, Ordering::SeqCst);
                let name = cm.metadata.name.clone().unwrap_or_default();
                let patch = json!({"metadata": {"annotations": {"reconciled": "true"}}});
                ctx.0
                    .patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                    .await?;
                Ok::<_, ReconcileError>(Action::await_change())
            },
            |_, _, _| Action::requeue(Duration::from_secs(1)),
            ctx,
        )
        .for_each(|_| async {});
    let task = tokio::spawn(controller);

    let lister = api.clone();
    let mut done = false;
    for _ in 0..500 {
        let list = lister.list(&Default::default()).await.expect("list");
        if list.items.iter().all(|cm| {
            cm.metadata
                .annotations
                .as_ref()
                .is_some_and(|a| a.get("reconciled").map(String::as_str) == Some("true"))
        }) {
            done = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(done, "every ConfigMap reconciled");
    // Steady state: reconciling again changes nothing, so no new events feed the controller.
    let before = server.store().current_rv();
    let patch = json!({"metadata": {"annotations": {"reconciled": "true"}}});
    api.patch("one", &PatchParams::default(), &Patch::Merge(&patch))
        .await
        .expect("patch");
    assert_eq!(server.store().current_rv(), before);
    assert!(reconciles.load(Ordering::SeqCst) >= 3);
    task.abort();
}
