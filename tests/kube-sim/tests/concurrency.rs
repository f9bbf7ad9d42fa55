//! 50 concurrent writers and 20 watchers over 10,000 operations: every watcher sees every
//! resourceVersion, in order, with no event lost.

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube_sim::{Options, TestServer};
use serde_json::json;
use std::collections::BTreeMap;

const WRITERS: usize = 50;
const OPS_PER_WRITER: usize = 200;
const WATCHERS: usize = 20;

fn configmap(name: &str, value: usize) -> ConfigMap {
    serde_json::from_value(json!({
        "metadata": {"name": name},
        "data": {"value": value.to_string()},
    }))
    .expect("valid ConfigMap")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_event_lost_under_concurrent_writes() {
    let server = TestServer::start_with(Options {
        tls: false,
        ..Options::default()
    })
    .expect("server starts");
    let api: Api<ConfigMap> = Api::namespaced(server.client(), "default");
    let start_rv = server.store().current_rv();
    let total = (WRITERS * OPS_PER_WRITER) as u64;
    let end_rv = start_rv + total;

    let mut watchers = Vec::new();
    for _ in 0..WATCHERS {
        let api = api.clone();
        let stream = api
            .watch(&WatchParams::default().timeout(290), &start_rv.to_string())
            .await
            .expect("watch starts")
            .boxed();
        watchers.push(tokio::spawn(async move {
            let mut seen = Vec::new();
            let mut stream = stream;
            while let Some(event) = stream.try_next().await.expect("watch event") {
                let rv = match event {
                    WatchEvent::Added(o) | WatchEvent::Modified(o) | WatchEvent::Deleted(o) => {
                        o.metadata.resource_version.expect("rv")
                    }
                    WatchEvent::Bookmark(_) => continue,
                    WatchEvent::Error(e) => panic!("watch error {e:?}"),
                };
                let rv: u64 = rv.parse().expect("numeric rv");
                seen.push(rv);
                if rv >= end_rv {
                    break;
                }
            }
            seen
        }));
    }

    let mut writers = Vec::new();
    for w in 0..WRITERS {
        let api = api.clone();
        writers.push(tokio::spawn(async move {
            let mut kinds = BTreeMap::new();
            for j in 0..OPS_PER_WRITER {
                let name = format!("w{w}-{}", j / 4);
                let op = j % 4;
                match op {
                    0 => {
                        api.create(&PostParams::default(), &configmap(&name, j))
                            .await
                            .expect("create");
                    }
                    1 => {
                        let mut cm = api.get(&name).await.expect("get");
                        cm.data = configmap(&name, j).data;
                        api.replace(&name, &PostParams::default(), &cm)
                            .await
                            .expect("replace");
                    }
                    2 => {
                        let patch = json!({"data": {"value": j.to_string()}});
                        api.patch(&name, &PatchParams::default(), &Patch::Merge(&patch))
                            .await
                            .expect("merge patch");
                    }
                    _ => {
                        api.delete(&name, &DeleteParams::default())
                            .await
                            .expect("delete");
                    }
                }
                *kinds.entry(op).or_insert(0) += 1;
            }
            kinds
        }));
    }
    for writer in writers {
        writer.await.expect("writer finished");
    }
    assert_eq!(
        server.store().current_rv(),
        end_rv,
        "one resourceVersion per write"
    );

    let expected: Vec<u64> = (start_rv + 1..=end_rv).collect();
    for watcher in watchers {
        let seen = watcher.await.expect("watcher finished");
        assert_eq!(seen.len(), expected.len(), "watcher saw every event");
        assert!(seen == expected, "watcher saw resourceVersions in order");
    }
}
