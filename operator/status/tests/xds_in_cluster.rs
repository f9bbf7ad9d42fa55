//! The operator runtime (controllers + these tasks) against the Kubernetes API
//! simulator, with an ADS client speaking for a pod: it authenticates with the
//! identity Secret the operator issued for the pod's service account, receives
//! the configuration translated from the cluster's Services and Pods, ACKs it,
//! and the mesh namespace's MeshStatus then counts it as connected and in sync.
//! A client claiming a pod of another service account gets no configuration.
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use hyper_util::rt::TokioIo;
use k8s_openapi::api::core::v1::Secret;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, PostParams};
use kube_sim::TestServer;
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use serde_json::json;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use trellis_api::mesh::MeshStatus;
use trellis_controller::{LeaseConfig, OperatorConfig};
use trellis_sources::{SourceKind, api_resource};
use trellis_xds::ResourceType;

const SERVER_NAME: &str = "trellis-xds.trellis-system.svc";

async fn eventually<T, F, Fut>(what: &str, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

async fn create(client: &kube::Client, kind: SourceKind, ns: &str, object: serde_json::Value) {
    let api: Api<DynamicObject> = if kind.is_cluster_scoped() {
        Api::all_with(client.clone(), &api_resource(kind))
    } else {
        Api::namespaced_with(client.clone(), ns, &api_resource(kind))
    };
    api.create(
        &PostParams::default(),
        &serde_json::from_value(object).unwrap(),
    )
    .await
    .unwrap_or_else(|e| panic!("creating a {}: {e}", kind.as_str()));
}

async fn connect(
    port: u16,
    root_pem: &str,
    chain_pem: &str,
    key_pem: &str,
) -> AggregatedDiscoveryServiceClient<Channel> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let chain = CertificateDer::pem_slice_iter(chain_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .unwrap();
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_client_auth_cert(chain, key)
        .unwrap();
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let channel = Endpoint::from_static("http://trellis-xds.trellis-system.svc")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            async move {
                let tcp = tokio::net::TcpStream::connect(("127.0.0.1", port)).await?;
                let name = ServerName::try_from(SERVER_NAME).unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await
        .expect("mTLS connection to the operator's xDS server");
    AggregatedDiscoveryServiceClient::new(channel)
}

fn node(pod: &str, ip: &str, service_account: &str) -> Node {
    let mut metadata = Struct::default();
    metadata.fields.insert(
        "SERVICE_ACCOUNT".into(),
        Value {
            kind: Some(Kind::StringValue(service_account.into())),
        },
    );
    Node {
        id: format!("sidecar~{ip}~{pod}.shop~shop.svc.cluster.local"),
        metadata: Some(metadata),
        ..Default::default()
    }
}

/// Opens a stream asking for clusters; returns the sender and the first response.
async fn ask_clusters(
    client: &mut AggregatedDiscoveryServiceClient<Channel>,
    node: Node,
) -> (
    mpsc::Sender<DiscoveryRequest>,
    Result<DiscoveryResponse, tonic::Status>,
) {
    let (tx, rx) = mpsc::channel(8);
    tx.send(DiscoveryRequest {
        node: Some(node),
        type_url: ResourceType::Cluster.type_url().into(),
        ..Default::default()
    })
    .await
    .unwrap();
    let first = async {
        let mut stream = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?
            .into_inner();
        match stream.message().await? {
            Some(m) => Ok(m),
            None => Err(tonic::Status::unavailable("stream ended")),
        }
    };
    let first = tokio::time::timeout(Duration::from_secs(20), first)
        .await
        .unwrap_or_else(|_| Err(tonic::Status::deadline_exceeded("no response")));
    (tx, first)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pod_proxy_gets_its_configuration_from_the_operator_and_is_counted_in_sync() {
    let server = TestServer::start().expect("simulator starts");
    let client = server.client();
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for crd in trellis_api::crd::crds() {
        crds.create(&PostParams::default(), &crd).await.unwrap();
    }
    let ns = |name: &str, labels: serde_json::Value| {
        json!({"apiVersion": "v1", "kind": "Namespace",
               "metadata": {"name": name, "labels": labels}})
    };
    create(
        &client,
        SourceKind::Namespace,
        "",
        ns("trellis-system", json!({})),
    )
    .await;
    create(
        &client,
        SourceKind::Namespace,
        "",
        ns("shop", json!({"istio-injection": "enabled"})),
    )
    .await;
    for sa in ["cart", "web"] {
        create(
            &client,
            SourceKind::ServiceAccount,
            "shop",
            json!({"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": sa}}),
        )
        .await;
    }
    create(
        &client,
        SourceKind::Service,
        "shop",
        json!({"apiVersion": "v1", "kind": "Service", "metadata": {"name": "cart"},
               "spec": {"selector": {"app": "cart"}, "ports": [{"name": "http", "port": 8080}]}}),
    )
    .await;
    create(
        &client,
        SourceKind::Pod,
        "shop",
        json!({"apiVersion": "v1", "kind": "Pod",
               "metadata": {"name": "cart-1", "labels": {"app": "cart"}},
               "spec": {"serviceAccountName": "cart", "containers": [
                   {"name": "app", "image": "cart", "ports": [{"name": "http", "containerPort": 8080}]},
                   {"name": "trellis-proxy", "image": "envoy"}]}}),
    )
    .await;
    create(
        &client,
        SourceKind::EndpointSlice,
        "shop",
        json!({"apiVersion": "discovery.k8s.io/v1", "kind": "EndpointSlice",
               "metadata": {"name": "cart-a", "labels": {"kubernetes.io/service-name": "cart"}},
               "addressType": "IPv4",
               "endpoints": [{"addresses": ["10.1.0.5"], "conditions": {"ready": true},
                              "targetRef": {"kind": "Pod", "name": "cart-1", "namespace": "shop"}}],
               "ports": [{"name": "http", "port": 8080}]}),
    )
    .await;

    let port = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let mut lease = LeaseConfig::new("trellis-leader", "test-operator");
    lease.lease_duration = Duration::from_secs(3);
    lease.renew_deadline = Duration::from_secs(2);
    lease.retry_period = Duration::from_millis(500);
    let mut config = OperatorConfig::new("trellis-system", lease);
    config.metrics_addr = ([127, 0, 0, 1], 0).into();
    config.xds_addr = ([127, 0, 0, 1], port).into();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let operator = tokio::spawn(trellis_controller::run(
        config,
        client.clone(),
        async move {
            let _ = stop_rx.await;
        },
        trellis_status::runtime::extra_tasks(),
        |_| {},
    ));

    let secrets: Api<Secret> = Api::namespaced(client.clone(), "shop");
    let name = trellis_controller::identity_plan::secret_name("cart");
    let data = eventually("the identity Secret of shop/cart", || async {
        secrets.get_opt(&name).await.ok().flatten()?.data
    })
    .await;
    let text = |k: &str| String::from_utf8(data[k].0.clone()).unwrap();
    let (chain, key, root) = (
        text("cert-chain.pem"),
        text("key.pem"),
        text("root-cert.pem"),
    );

    // The pod's proxy: clusters translated from the Service it calls.
    let mut ads = eventually("the xDS server listening", || async {
        tokio::time::timeout(Duration::from_secs(2), connect(port, &root, &chain, &key))
            .await
            .ok()
    })
    .await;
    let (tx, first) = ask_clusters(&mut ads, node("cart-1", "10.1.0.5", "cart")).await;
    let response = first.expect("clusters for the pod's proxy");
    let names: Vec<String> = response
        .resources
        .iter()
        .map(|any| {
            <envoy_types::pb::envoy::config::cluster::v3::Cluster as prost::Message>::decode(
                any.value.as_slice(),
            )
            .unwrap()
            .name
        })
        .collect();
    assert!(
        names
            .iter()
            .any(|n| n == "outbound|8080||cart.shop.svc.cluster.local"),
        "{names:?}"
    );
    tx.send(DiscoveryRequest {
        type_url: ResourceType::Cluster.type_url().into(),
        version_info: response.version_info.clone(),
        response_nonce: response.nonce.clone(),
        ..Default::default()
    })
    .await
    .unwrap();

    // MeshStatus of the namespace counts the proxy as connected and in sync.
    let statuses: Api<MeshStatus> = Api::namespaced(client.clone(), "shop");
    let status = eventually("shop's MeshStatus with the proxy in sync", || async {
        let s = statuses.get_opt("mesh").await.ok().flatten()?.status?;
        (s.proxies == Some(1) && s.proxies_in_sync == Some(1)).then_some(s)
    })
    .await;
    assert_eq!(status.workloads, Some(1));
    assert_eq!(status.pods_with_sidecar, Some(1));
    assert_eq!(status.identities, Some(2), "cart and web");
    assert!(status.earliest_cert_expiry.is_some());

    // The same certificate cannot obtain the configuration of a pod it does not run as.
    let mut other = connect(port, &root, &chain, &key).await;
    let (_tx2, refused) = ask_clusters(&mut other, node("web-1", "10.1.0.6", "web")).await;
    assert!(
        refused.is_err(),
        "a claim of another identity must be refused"
    );
    drop(tx);

    let _ = stop_tx.send(());
    tokio::time::timeout(Duration::from_secs(30), operator)
        .await
        .expect("the operator stops")
        .unwrap()
        .expect("the operator ran without error");
}
