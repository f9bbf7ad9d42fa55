//! The API server's semantics through `kube::Api`: metadata the server sets, errors as Status
//! objects, selectors and pagination, watches, the status subresource, deletion with
//! finalizers, propagation policies and owner-reference garbage collection, deletecollection.

use futures::TryStreamExt;
use k8s_openapi::api::apps::v1::Deployment;
use k8s_openapi::api::core::v1::{ConfigMap, Namespace};
use kube::api::{
    Api, DeleteParams, ListParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams,
};
use kube_sim::{Options, TestServer};
use serde_json::{Value, json};
use std::collections::BTreeSet;
use std::time::Duration;

fn cm(name: &str, labels: Value) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name, "labels": labels},
        "data": {"k": "v"},
    }))
    .expect("valid ConfigMap")
}

fn deployment(name: &str, replicas: i32) -> Deployment {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "spec": {
            "replicas": replicas,
            "selector": {"matchLabels": {"app": name}},
            "template": {
                "metadata": {"labels": {"app": name}},
                "spec": {"containers": [{"name": "app", "image": "app:1"}]},
            },
        },
    }))
    .expect("valid Deployment")
}

fn status_of(err: kube::Error) -> kube::core::Status {
    match err {
        kube::Error::Api(status) => *status,
        other => panic!("expected a Status, got {other:?}"),
    }
}

fn rv_of(cm: &ConfigMap) -> u64 {
    cm.metadata
        .resource_version
        .as_deref()
        .expect("resourceVersion")
        .parse()
        .expect("numeric resourceVersion")
}

#[tokio::test]
async fn metadata_is_set_as_the_api_server_sets_it() {
    let server = TestServer::start().expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let mut generated = cm("", json!({}));
    generated.metadata.name = None;
    generated.metadata.generate_name = Some("cfg-".into());
    let a = cms
        .create(&PostParams::default(), &generated)
        .await
        .expect("create with generateName");
    let name = a.metadata.name.clone().expect("a generated name");
    assert!(
        name.starts_with("cfg-") && name.len() == "cfg-".len() + 5,
        "{name}"
    );
    let uid = a.metadata.uid.clone().expect("uid");
    assert_eq!(uid.len(), 36, "{uid}");
    assert_eq!(uid.matches('-').count(), 4, "{uid}");
    assert!(a.metadata.creation_timestamp.is_some());

    // One resourceVersion counter across every kind of the store.
    let ns: Api<Namespace> = Api::all(server.client());
    let n = ns
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "other"}})).expect("namespace"),
        )
        .await
        .expect("create namespace");
    let n_rv: u64 = n
        .metadata
        .resource_version
        .as_deref()
        .expect("rv")
        .parse()
        .expect("numeric");
    assert!(n_rv > rv_of(&a));
    let b = cms
        .create(&PostParams::default(), &cm("b", json!({})))
        .await
        .expect("create");
    assert!(rv_of(&b) > n_rv);
    assert_eq!(server.store().current_rv(), rv_of(&b));

    // generation follows spec changes only.
    let deploys: Api<Deployment> = Api::namespaced(server.client(), "default");
    let d = deploys
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .expect("create deployment");
    assert_eq!(d.metadata.generation, Some(1));
    let labelled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"labels": {"x": "y"}}})),
        )
        .await
        .expect("label");
    assert_eq!(labelled.metadata.generation, Some(1), "metadata only");
    let scaled = deploys
        .patch(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"replicas": 3}})),
        )
        .await
        .expect("scale");
    assert_eq!(scaled.metadata.generation, Some(2), "spec changed");
    assert_eq!(scaled.metadata.uid, d.metadata.uid);
    assert_eq!(
        scaled.metadata.creation_timestamp,
        d.metadata.creation_timestamp
    );
}

#[tokio::test]
async fn errors_are_status_objects_with_code_and_reason() {
    let server = TestServer::start().expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");

    let s = status_of(cms.get("absent").await.expect_err("absent"));
    assert_eq!((s.code, s.reason.as_str()), (404, "NotFound"));
    assert_eq!(s.message, r#"configmaps "absent" not found"#);

    let first = cms
        .create(&PostParams::default(), &cm("dup", json!({})))
        .await
        .expect("create");
    let s = status_of(
        cms.create(&PostParams::default(), &cm("dup", json!({})))
            .await
            .expect_err("second create"),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "AlreadyExists"));
    assert_eq!(s.message, r#"configmaps "dup" already exists"#);

    // An update carrying a stale resourceVersion is a 409 Conflict.
    let mut newer = first.clone();
    newer.data = Some([("k".to_string(), "newer".to_string())].into());
    cms.replace("dup", &PostParams::default(), &newer)
        .await
        .expect("update from the current version");
    let s = status_of(
        cms.replace("dup", &PostParams::default(), &first)
            .await
            .expect_err("stale update"),
    );
    assert_eq!((s.code, s.reason.as_str()), (409, "Conflict"));
    assert_eq!(
        s.message,
        r#"Operation cannot be fulfilled on configmaps "dup": the object has been modified; please apply your changes to the latest version and try again"#
    );

    // 422 Invalid with a field cause.
    let s = status_of(
        cms.create(&PostParams::default(), &cm("Not_A_Name", json!({})))
            .await
            .expect_err("invalid name"),
    );
    assert_eq!((s.code, s.reason.as_str()), (422, "Invalid"));
    let causes = s.details.expect("details").causes;
    assert!(
        causes.iter().any(|c| c.field == "metadata.name"),
        "{causes:?}"
    );

    // 400 BadRequest for a malformed selector.
    let s = status_of(
        cms.list(&ListParams::default().labels("a in (b"))
            .await
            .expect_err("bad selector"),
    );
    assert_eq!((s.code, s.reason.as_str()), (400, "BadRequest"));
}

#[tokio::test]
async fn selectors_and_pagination() {
    let server = TestServer::start().expect("server starts");
    let client = server.client();
    let ns: Api<Namespace> = Api::all(client.clone());
    ns.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "b"}})).expect("namespace"),
    )
    .await
    .expect("namespace b");
    let default: Api<ConfigMap> = Api::namespaced(client.clone(), "default");
    let other: Api<ConfigMap> = Api::namespaced(client.clone(), "b");
    for i in 0..7 {
        let tier = if i % 2 == 0 { "even" } else { "odd" };
        default
            .create(
                &PostParams::default(),
                &cm(&format!("c{i}"), json!({"tier": tier})),
            )
            .await
            .expect("create");
    }
    other
        .create(&PostParams::default(), &cm("c0", json!({"tier": "even"})))
        .await
        .expect("create in b");

    let names = |list: kube::core::ObjectList<ConfigMap>| -> Vec<String> {
        list.items
            .into_iter()
            .map(|c| c.metadata.name.unwrap_or_default())
            .collect()
    };
    let even = default
        .list(&ListParams::default().labels("tier=even"))
        .await
        .expect("list");
    assert_eq!(names(even), ["c0", "c2", "c4", "c6"]);
    let not_even = default
        .list(&ListParams::default().labels("tier!=even"))
        .await
        .expect("list");
    assert_eq!(names(not_even), ["c1", "c3", "c5"]);
    let by_name = default
        .list(&ListParams::default().fields("metadata.name=c3"))
        .await
        .expect("list");
    assert_eq!(names(by_name), ["c3"]);
    let all: Api<ConfigMap> = Api::all(client.clone());
    let in_b = all
        .list(&ListParams::default().fields("metadata.namespace=b"))
        .await
        .expect("list");
    assert_eq!(in_b.items.len(), 1);
    assert_eq!(in_b.items[0].metadata.namespace.as_deref(), Some("b"));
    let s = status_of(
        default
            .list(&ListParams::default().fields("data.k=v"))
            .await
            .expect_err("unsupported field"),
    );
    assert_eq!(s.code, 400, "{s:?}");

    // limit/continue walks every object exactly once.
    let mut seen = Vec::new();
    let mut token: Option<String> = None;
    let mut pages = 0;
    loop {
        let mut lp = ListParams::default().limit(3);
        if let Some(t) = &token {
            lp = lp.continue_token(t);
        }
        let page = all.list(&lp).await.expect("page");
        pages += 1;
        assert!(page.items.len() <= 3);
        token = page.metadata.continue_.clone().filter(|t| !t.is_empty());
        seen.extend(page.items.into_iter().map(|c| {
            format!(
                "{}/{}",
                c.metadata.namespace.unwrap_or_default(),
                c.metadata.name.unwrap_or_default()
            )
        }));
        if token.is_none() {
            break;
        }
        assert!(pages < 10, "pagination ends");
    }
    assert_eq!(pages, 3);
    assert_eq!(seen.len(), 8);
    assert_eq!(seen.iter().collect::<BTreeSet<_>>().len(), 8, "{seen:?}");
}

#[tokio::test]
async fn watch_resumes_sends_bookmarks_and_times_out() {
    let server = TestServer::start_with(Options {
        bookmark_interval: Duration::from_millis(50),
        ..Options::default()
    })
    .expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let before = cms
        .create(&PostParams::default(), &cm("before", json!({})))
        .await
        .expect("create");
    let from = before.metadata.resource_version.clone().expect("rv");
    cms.create(&PostParams::default(), &cm("after", json!({})))
        .await
        .expect("create");
    cms.delete("before", &DeleteParams::default())
        .await
        .expect("delete");

    // From a resourceVersion: only what happened after it, then bookmarks, then the end.
    let events: Vec<WatchEvent<ConfigMap>> = tokio::time::timeout(
        Duration::from_secs(20),
        cms.watch(&WatchParams::default().timeout(1), &from)
            .await
            .expect("watch")
            .try_collect(),
    )
    .await
    .expect("the watch ends after timeoutSeconds")
    .expect("watch events");
    let mut kinds = Vec::new();
    let mut bookmarks = 0;
    for e in &events {
        match e {
            WatchEvent::Added(o) => kinds.push(format!(
                "ADDED {}",
                o.metadata.name.clone().unwrap_or_default()
            )),
            WatchEvent::Deleted(o) => kinds.push(format!(
                "DELETED {}",
                o.metadata.name.clone().unwrap_or_default()
            )),
            WatchEvent::Modified(o) => kinds.push(format!(
                "MODIFIED {}",
                o.metadata.name.clone().unwrap_or_default()
            )),
            WatchEvent::Bookmark(b) => {
                bookmarks += 1;
                assert!(!b.metadata.resource_version.is_empty());
            }
            WatchEvent::Error(e) => panic!("watch error {e:?}"),
        }
    }
    assert_eq!(kinds, ["ADDED after", "DELETED before"]);
    assert!(bookmarks >= 1, "allowWatchBookmarks brings bookmarks");

    // Without bookmarks asked for, none come.
    let events: Vec<WatchEvent<ConfigMap>> = cms
        .watch(
            &WatchParams::default().timeout(1).disable_bookmarks(),
            &from,
        )
        .await
        .expect("watch")
        .try_collect()
        .await
        .expect("events");
    assert!(
        events.iter().all(|e| !matches!(e, WatchEvent::Bookmark(_))),
        "{events:?}"
    );
    assert_eq!(events.len(), 2);
}

#[tokio::test]
async fn status_subresource_splits_spec_and_status() {
    let server = TestServer::start().expect("server starts");
    let deploys: Api<Deployment> = Api::namespaced(server.client(), "default");
    deploys
        .create(&PostParams::default(), &deployment("web", 1))
        .await
        .expect("create");

    // On the main resource, status is ignored.
    let mut d = deploys.get("web").await.expect("get");
    d.status = Some(serde_json::from_value(json!({"replicas": 7})).expect("status"));
    d.spec.as_mut().expect("spec").replicas = Some(2);
    let d = deploys
        .replace("web", &PostParams::default(), &d)
        .await
        .expect("update");
    assert_eq!(d.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(d.status.as_ref().and_then(|s| s.replicas), None);
    assert_eq!(d.metadata.generation, Some(2));

    // On the status subresource, spec is ignored and generation stays.
    let mut d2 = d.clone();
    d2.status =
        Some(serde_json::from_value(json!({"replicas": 2, "readyReplicas": 2})).expect("status"));
    d2.spec.as_mut().expect("spec").replicas = Some(9);
    let d2 = deploys
        .replace_status("web", &PostParams::default(), &d2)
        .await
        .expect("status update");
    assert_eq!(d2.spec.as_ref().and_then(|s| s.replicas), Some(2));
    assert_eq!(d2.status.as_ref().and_then(|s| s.ready_replicas), Some(2));
    assert_eq!(d2.metadata.generation, Some(2));
    let patched = deploys
        .patch_status(
            "web",
            &PatchParams::default(),
            &Patch::Merge(json!({"status": {"readyReplicas": 1}, "spec": {"replicas": 5}})),
        )
        .await
        .expect("status patch");
    assert_eq!(
        patched.status.as_ref().and_then(|s| s.ready_replicas),
        Some(1)
    );
    assert_eq!(patched.spec.as_ref().and_then(|s| s.replicas), Some(2));
}

fn owned_by(name: &str, owner: &ConfigMap) -> ConfigMap {
    let mut c = cm(name, json!({"group": "owned"}));
    c.metadata.owner_references = Some(vec![
        serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "name": owner.metadata.name, "uid": owner.metadata.uid,
        }))
        .expect("owner reference"),
    ]);
    c
}

#[tokio::test]
async fn deletion_finalizers_propagation_and_garbage_collection() {
    let server = TestServer::start().expect("server starts");
    let cms: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let pp = PostParams::default();

    // A finalizer holds the object, marked with deletionTimestamp, until it is removed.
    let mut held = cm("held", json!({}));
    held.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&pp, &held).await.expect("create");
    let deleted = cms
        .delete("held", &DeleteParams::default())
        .await
        .expect("delete");
    let marked = deleted
        .left()
        .expect("the object comes back while finalized");
    assert!(marked.metadata.deletion_timestamp.is_some());
    assert!(cms.get("held").await.is_ok(), "still there");
    cms.patch(
        "held",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("remove finalizer");
    assert_eq!(
        status_of(cms.get("held").await.expect_err("gone")).code,
        404
    );

    // Background (the default): dependants are collected with their owner.
    let owner = cms
        .create(&pp, &cm("owner-bg", json!({})))
        .await
        .expect("owner");
    cms.create(&pp, &owned_by("dep-bg", &owner))
        .await
        .expect("dependant");
    cms.delete("owner-bg", &DeleteParams::background())
        .await
        .expect("delete");
    assert_eq!(
        status_of(cms.get("dep-bg").await.expect_err("collected")).code,
        404
    );

    // A dependant written after its owner is gone (from a controller's stale cache, say)
    // is garbage: the collector deletes it, as the API server's does.
    let gone = cms
        .create(&pp, &cm("owner-gone", json!({})))
        .await
        .expect("owner");
    cms.delete("owner-gone", &DeleteParams::background())
        .await
        .expect("delete");
    cms.create(&pp, &owned_by("dep-late", &gone))
        .await
        .expect("the create itself succeeds");
    assert_eq!(
        status_of(cms.get("dep-late").await.expect_err("collected")).code,
        404
    );
    // One of its owners alive keeps it.
    let alive = cms
        .create(&pp, &cm("owner-alive", json!({})))
        .await
        .expect("owner");
    let mut two = owned_by("dep-two", &gone);
    two.metadata
        .owner_references
        .as_mut()
        .unwrap()
        .extend(owned_by("x", &alive).metadata.owner_references.unwrap());
    cms.create(&pp, &two).await.expect("dependant");
    assert!(cms.get("dep-two").await.is_ok(), "an owner is alive");
    cms.delete("owner-alive", &DeleteParams::background())
        .await
        .expect("delete");
    assert_eq!(
        status_of(cms.get("dep-two").await.expect_err("collected")).code,
        404
    );

    // Orphan: dependants stay, without the owner reference.
    let owner = cms
        .create(&pp, &cm("owner-or", json!({})))
        .await
        .expect("owner");
    cms.create(&pp, &owned_by("dep-or", &owner))
        .await
        .expect("dependant");
    cms.delete("owner-or", &DeleteParams::orphan())
        .await
        .expect("delete");
    let orphan = cms.get("dep-or").await.expect("orphan stays");
    assert!(
        orphan
            .metadata
            .owner_references
            .unwrap_or_default()
            .is_empty()
    );
    assert_eq!(
        status_of(cms.get("owner-or").await.expect_err("owner gone")).code,
        404
    );

    // Foreground: a dependant with a finalizer keeps its owner (marked foregroundDeletion).
    let owner = cms
        .create(&pp, &cm("owner-fg", json!({})))
        .await
        .expect("owner");
    let mut dep = owned_by("dep-fg", &owner);
    dep.metadata.finalizers = Some(vec!["example.com/hold".into()]);
    cms.create(&pp, &dep).await.expect("dependant");
    cms.delete("owner-fg", &DeleteParams::foreground())
        .await
        .expect("delete");
    let waiting = cms
        .get("owner-fg")
        .await
        .expect("owner waits for dependants");
    assert!(waiting.metadata.deletion_timestamp.is_some());
    assert!(
        waiting
            .metadata
            .finalizers
            .unwrap_or_default()
            .contains(&"foregroundDeletion".to_string())
    );
    let dep = cms.get("dep-fg").await.expect("dependant being deleted");
    assert!(dep.metadata.deletion_timestamp.is_some());
    cms.patch(
        "dep-fg",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .expect("release dependant");
    assert_eq!(
        status_of(cms.get("dep-fg").await.expect_err("dependant gone")).code,
        404
    );
    assert_eq!(
        status_of(cms.get("owner-fg").await.expect_err("owner gone")).code,
        404
    );

    // deletecollection honours the label selector.
    for name in ["x1", "x2"] {
        cms.create(&pp, &cm(name, json!({"batch": "x"})))
            .await
            .expect("create");
    }
    cms.delete_collection(
        &DeleteParams::default(),
        &ListParams::default().labels("batch=x"),
    )
    .await
    .expect("deletecollection");
    let left: Vec<String> = cms
        .list(&ListParams::default())
        .await
        .expect("list")
        .items
        .into_iter()
        .map(|c| c.metadata.name.unwrap_or_default())
        .collect();
    assert_eq!(left, ["dep-or"]);

    let s = status_of(
        cms.delete("absent", &DeleteParams::default())
            .await
            .expect_err("absent"),
    );
    assert_eq!(s.code, 404);
}
