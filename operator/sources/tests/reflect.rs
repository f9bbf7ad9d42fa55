//! The reflectors against the Kubernetes API simulator: objects created through
//! the API reach the view and the model; deletions and edits follow.
use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::{Namespace, Pod};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, DynamicObject, PostParams};
use kube_sim::TestServer;
use serde_json::json;
use tokio::sync::watch;
use trellis_api::ObjectRef;
use trellis_sources::{ConfigContent, MeshView, ModelSnapshots, SourceKind, Sources, api_resource};
use trellis_translate::TranslateOptions;
use trellis_xds::SnapshotSource;

async fn wait_for(
    view: &mut watch::Receiver<Arc<MeshView>>,
    what: &str,
    ok: impl Fn(&MeshView) -> bool,
) -> Arc<MeshView> {
    let found = tokio::time::timeout(Duration::from_secs(20), async {
        loop {
            let current = view.borrow_and_update().clone();
            if ok(&current) {
                return current;
            }
            if view.changed().await.is_err() {
                panic!("sources stopped while waiting for {what}");
            }
        }
    })
    .await;
    found.unwrap_or_else(|_| panic!("timed out waiting for {what}"))
}

/// The mesh CRDs, namespace `shop` and its pod `cart-1` (service account
/// `cart`, label `app: cart`) with `containers`.
async fn mesh_with_cart_pod(client: &kube::Client, containers: serde_json::Value) {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in trellis_api::crd::crds() {
        crds.create(&PostParams::default(), &crd)
            .await
            .expect("CRD created");
    }
    let namespaces: Api<Namespace> = Api::all(client.clone());
    namespaces
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({"metadata": {"name": "shop"}})).unwrap(),
        )
        .await
        .unwrap();
    let pods: Api<Pod> = Api::namespaced(client.clone(), "shop");
    pods.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "metadata": {"name": "cart-1", "labels": {"app": "cart"}},
            "spec": {"serviceAccountName": "cart", "containers": containers}
        }))
        .unwrap(),
    )
    .await
    .unwrap();
}

fn vs_key(name: &str) -> ObjectRef {
    ObjectRef {
        kind: "VirtualService".into(),
        namespace: Some("shop".into()),
        name: name.into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cluster_objects_reach_the_model_and_the_xds_snapshot() {
    let server = TestServer::start().expect("simulator starts");
    let client = server.client();
    mesh_with_cart_pod(
        &client,
        json!([
        {"name": "app", "image": "cart", "ports": [{"name": "http", "containerPort": 8080}]},
        {"name": "trellis-proxy", "image": "envoy"}]),
    )
    .await;
    let vs_api: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &api_resource(SourceKind::VirtualService),
    );
    let vs = |name: &str, a: i32, b: i32| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "networking.istio.io/v1", "kind": "VirtualService",
            "metadata": {"name": name, "namespace": "shop"},
            "spec": {"hosts": ["cart"], "http": [{"route": [
                {"destination": {"host": "cart", "subset": "v1"}, "weight": a},
                {"destination": {"host": "cart", "subset": "v2"}, "weight": b}]}]}
        }))
        .unwrap()
    };
    vs_api
        .create(&PostParams::default(), &vs("good", 90, 10))
        .await
        .unwrap();

    let snapshots = ModelSnapshots::new(TranslateOptions::default());
    let sources = Sources::start(
        client.clone(),
        Default::default(),
        snapshots.clone(),
        None,
        "trellis-system",
    );
    let mut view = sources.view();
    let v = wait_for(&mut view, "the first full list", |v| v.synced).await;
    assert!(v.config.contains_key(&vs_key("good")));
    assert_eq!(v.model.virtual_services().count(), 1);
    assert!(v.namespaces.contains_key("shop"));
    assert!(
        v.pods
            .contains_key(&("shop".to_string(), "cart-1".to_string()))
    );
    // No pod IP and no EndpointSlice yet: not a workload.
    assert!(v.model.workload("shop", "cart-1").is_none());

    // An EndpointSlice gives the pod its address.
    let slices: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &api_resource(SourceKind::EndpointSlice),
    );
    slices
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "cart-x", "namespace": "shop",
                             "labels": {"kubernetes.io/service-name": "cart"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true},
                               "targetRef": {"kind": "Pod", "name": "cart-1", "namespace": "shop"}}],
                "ports": [{"name": "http", "port": 8080}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let v = wait_for(&mut view, "the workload", |v| {
        v.model.workload("shop", "cart-1").is_some()
    })
    .await;
    let w = v.model.workload("shop", "cart-1").unwrap();
    assert_eq!(w.address, "10.1.0.5");
    assert!(w.has_sidecar);

    // The xDS snapshot of that proxy is built from the same model; a proxy
    // authenticated as another service account gets nothing.
    let id = trellis_xds::ProxyId::new(trellis_xds::ProxyKind::Sidecar, "shop", "cart-1", "cart");
    let snapshot = snapshots
        .snapshot(&id)
        .expect("snapshot for the pod's proxy");
    assert!(
        !snapshot.get(trellis_xds::ResourceType::Cluster).is_empty(),
        "clusters are served"
    );
    let other = trellis_xds::ProxyId::new(trellis_xds::ProxyKind::Sidecar, "shop", "cart-1", "web");
    let err = snapshots.snapshot(&other).unwrap_err().to_string();
    assert!(err.contains("service account"), "{err}");

    // An invalid edit stays in the view for status and leaves the model.
    vs_api
        .create(&PostParams::default(), &vs("bad", 60, 30))
        .await
        .unwrap();
    let v = wait_for(&mut view, "the invalid VirtualService", |v| {
        v.config.contains_key(&vs_key("bad"))
    })
    .await;
    assert!(matches!(
        v.config[&vs_key("bad")].content,
        ConfigContent::Loaded(_)
    ));
    assert_eq!(v.model.virtual_services().count(), 1, "only the valid one");

    vs_api
        .delete("good", &DeleteParams::default())
        .await
        .unwrap();
    let v = wait_for(&mut view, "the deletion", |v| {
        !v.config.contains_key(&vs_key("good"))
    })
    .await;
    assert_eq!(v.model.virtual_services().count(), 0);
    drop(sources);
}

/// `address:port` of every endpoint the cart proxy's snapshot has for the db Service.
fn db_endpoints(snapshots: &ModelSnapshots) -> Vec<String> {
    use envoy_types::pb::envoy::config::core::v3::address::Address;
    use envoy_types::pb::envoy::config::core::v3::socket_address::PortSpecifier;
    use envoy_types::pb::envoy::config::endpoint::v3::ClusterLoadAssignment;
    use envoy_types::pb::envoy::config::endpoint::v3::lb_endpoint::HostIdentifier;
    use prost::Message;
    let id = trellis_xds::ProxyId::new(trellis_xds::ProxyKind::Sidecar, "shop", "cart-1", "cart");
    let snapshot = snapshots
        .snapshot(&id)
        .expect("snapshot for the cart proxy");
    let endpoints = snapshot.get(trellis_xds::ResourceType::Endpoint);
    let Some(db) = endpoints.iter().find(|r| r.name.contains("db.shop.svc")) else {
        return Vec::new();
    };
    let cla = ClusterLoadAssignment::decode(db.any.value.as_slice()).unwrap();
    cla.endpoints
        .iter()
        .flat_map(|l| &l.lb_endpoints)
        .filter_map(|e| match &e.host_identifier {
            Some(HostIdentifier::Endpoint(e)) => match e.address.as_ref()?.address.as_ref()? {
                Address::SocketAddress(s) => match s.port_specifier {
                    Some(PortSpecifier::PortValue(p)) => Some(format!("{}:{p}", s.address)),
                    _ => None,
                },
                _ => None,
            },
            _ => None,
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_service_without_a_selector_serves_the_endpoints_its_slices_list() {
    let server = TestServer::start().expect("simulator starts");
    let client = server.client();
    mesh_with_cart_pod(
        &client,
        json!([
        {"name": "app", "image": "cart"}, {"name": "trellis-proxy", "image": "envoy"}]),
    )
    .await;
    // A database outside the cluster behind a Service without a selector.
    let services: Api<k8s_openapi::api::core::v1::Service> =
        Api::namespaced(client.clone(), "shop");
    services
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "metadata": {"name": "db", "namespace": "shop"},
                "spec": {"ports": [{"name": "tcp-pg", "port": 5432}]}
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    let slices: Api<DynamicObject> = Api::namespaced_with(
        client.clone(),
        "shop",
        &api_resource(SourceKind::EndpointSlice),
    );
    let slice = |name: &str, manager: &str, address: &str| -> DynamicObject {
        serde_json::from_value(json!({
            "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
            "metadata": {"name": name, "namespace": "shop", "labels": {
                "kubernetes.io/service-name": "db",
                "endpointslice.kubernetes.io/managed-by": manager}},
            "addressType": "IPv4",
            "endpoints": [{"addresses": [address]},
                          {"addresses": ["10.20.0.99"], "conditions": {"ready": false}}],
            "ports": [{"name": "tcp-pg", "port": 6432}]
        }))
        .unwrap()
    };
    slices
        .create(
            &PostParams::default(),
            &slice("db-manual", "staff", "10.20.0.7"),
        )
        .await
        .unwrap();
    // A slice Kubernetes derived from a selector names pods the model already has.
    slices
        .create(
            &PostParams::default(),
            &slice("db-derived", "endpointslice-controller.k8s.io", "10.20.0.8"),
        )
        .await
        .unwrap();

    // The cart pod's address, from the slice Kubernetes derives for its Service.
    slices
        .create(
            &PostParams::default(),
            &serde_json::from_value(json!({
                "apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
                "metadata": {"name": "cart-x", "namespace": "shop", "labels": {
                    "kubernetes.io/service-name": "cart",
                    "endpointslice.kubernetes.io/managed-by": "endpointslice-controller.k8s.io"}},
                "addressType": "IPv4",
                "endpoints": [{"addresses": ["10.1.0.5"],
                               "targetRef": {"kind": "Pod", "name": "cart-1", "namespace": "shop"}}],
                "ports": [{"name": "http", "port": 8080}]
            }))
            .unwrap(),
        )
        .await
        .unwrap();

    let snapshots = ModelSnapshots::new(TranslateOptions::default());
    let sources = Sources::start(
        client.clone(),
        Default::default(),
        snapshots.clone(),
        None,
        "trellis-system",
    );
    let mut view = sources.view();
    wait_for(&mut view, "the cart workload", |v| {
        v.synced && v.model.workload("shop", "cart-1").is_some()
    })
    .await;
    assert_eq!(
        db_endpoints(&snapshots),
        ["10.20.0.7:6432"],
        "the ready endpoint of the hand-written slice, on the slice's port"
    );

    // Another hand-written slice adds to the list; deleting them empties it.
    slices
        .create(
            &PostParams::default(),
            &slice("db-manual-2", "staff", "10.20.0.6"),
        )
        .await
        .unwrap();
    let endpoints = |v: &MeshView| {
        v.model
            .registry()
            .defined_by(&trellis_model::ServiceSource::Kubernetes {
                namespace: "shop".into(),
                name: "db".into(),
            })
            .first()
            .map_or(0, |s| s.static_endpoints.len())
    };
    wait_for(&mut view, "the second slice", |v| endpoints(v) == 2).await;
    assert_eq!(
        db_endpoints(&snapshots),
        ["10.20.0.6:6432", "10.20.0.7:6432"]
    );
    for name in ["db-manual", "db-manual-2"] {
        slices.delete(name, &DeleteParams::default()).await.unwrap();
    }
    wait_for(&mut view, "the slices' deletion", |v| endpoints(v) == 0).await;
    assert!(db_endpoints(&snapshots).is_empty());
    drop(sources);
}
