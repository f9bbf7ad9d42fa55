//! Test and bench helpers: a throwaway mesh CA (rcgen), a running server, and a tonic
//! ADS client over mTLS that behaves like Envoy (sends node first, ACKs).
#![allow(dead_code)]
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use envoy_types::pb::envoy::config::core::v3::Node;
use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_client::AggregatedDiscoveryServiceClient;
use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};
use envoy_types::pb::google::protobuf::{Struct, Value, value::Kind};
use hyper_util::rt::TokioIo;
use rcgen::{
    BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair,
    KeyUsagePurpose, SanType,
};
use rustls::RootCertStore;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Channel, Endpoint};
use tonic::{Status, Streaming};
use trellis_xds::identity::SERVICE_ACCOUNT_METADATA_KEY;
use trellis_xds::{ProxyId, SnapshotSource, TlsSettings, XdsConfig, XdsServer};

pub const TRUST_DOMAIN: &str = "cluster.local";
pub const SERVER_NAME: &str = "xds.trellis-system.svc";

/// A certificate and its key, PEM.
#[derive(Clone)]
pub struct Pem {
    pub cert: String,
    pub key: String,
}

pub struct TestCa {
    issuer: Issuer<'static, KeyPair>,
    pub root_pem: String,
}

impl TestCa {
    pub fn new(name: &str) -> TestCa {
        let mut params = CertificateParams::new(Vec::<String>::new()).unwrap();
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().unwrap();
        let cert = params.self_signed(&key).unwrap();
        TestCa {
            issuer: Issuer::new(params, key),
            root_pem: cert.pem(),
        }
    }

    /// A leaf for `spiffe://<TRUST_DOMAIN>/ns/<ns>/sa/<sa>`, usable as client and server.
    pub fn workload(&self, ns: &str, sa: &str) -> Pem {
        self.leaf(&format!("spiffe://{TRUST_DOMAIN}/ns/{ns}/sa/{sa}"), &[])
    }

    pub fn server(&self) -> Pem {
        self.leaf(
            &format!("spiffe://{TRUST_DOMAIN}/ns/trellis-system/sa/trellis"),
            &[SERVER_NAME],
        )
    }

    pub fn leaf(&self, uri: &str, dns: &[&str]) -> Pem {
        let mut params =
            CertificateParams::new(dns.iter().map(|d| d.to_string()).collect::<Vec<_>>()).unwrap();
        params
            .subject_alt_names
            .push(SanType::URI(uri.try_into().unwrap()));
        params.key_usages = vec![
            KeyUsagePurpose::DigitalSignature,
            KeyUsagePurpose::KeyEncipherment,
        ];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &self.issuer).unwrap();
        Pem {
            cert: cert.pem(),
            key: key.serialize_pem(),
        }
    }
}

/// A server on 127.0.0.1:<free port>, stopped when dropped.
pub struct Running {
    pub addr: SocketAddr,
    pub server: XdsServer,
    pub tls: Arc<TlsSettings>,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Running {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
    }
}

pub async fn start(ca: &TestCa, config: XdsConfig, source: Arc<dyn SnapshotSource>) -> Running {
    let server_pem = ca.server();
    let tls = TlsSettings::from_pem(&server_pem.cert, &server_pem.key, &ca.root_pem).unwrap();
    start_with(tls, config, source).await
}

pub async fn start_with(
    tls: Arc<TlsSettings>,
    config: XdsConfig,
    source: Arc<dyn SnapshotSource>,
) -> Running {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let server = XdsServer::new(config, source);
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let serving = server.clone();
    let tls_for_serve = tls.clone();
    tokio::spawn(async move {
        let _ = serving
            .serve(listener, tls_for_serve, async {
                let _ = stopped.await;
            })
            .await;
    });
    Running {
        addr,
        server,
        tls,
        stop: Some(stop),
    }
}

/// A gRPC channel over mTLS (`client: None` connects without a client certificate).
pub async fn connect(
    addr: SocketAddr,
    trust_root_pem: &str,
    client: Option<&Pem>,
) -> Result<AggregatedDiscoveryServiceClient<Channel>, tonic::transport::Error> {
    let mut roots = RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(trust_root_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots);
    let mut config = match client {
        Some(pem) => {
            let chain = CertificateDer::pem_slice_iter(pem.cert.as_bytes())
                .collect::<Result<Vec<_>, _>>()
                .unwrap();
            let key = PrivateKeyDer::from_pem_slice(pem.key.as_bytes()).unwrap();
            builder.with_client_auth_cert(chain, key).unwrap()
        }
        None => builder.with_no_client_auth(),
    };
    config.alpn_protocols = vec![b"h2".to_vec()];
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let channel = Endpoint::from_static("http://xds.trellis-system.svc")
        .connect_timeout(Duration::from_secs(10))
        .connect_with_connector(tower::service_fn(move |_uri| {
            let connector = connector.clone();
            async move {
                let tcp = TcpStream::connect(addr).await?;
                tcp.set_nodelay(true)?;
                let name = ServerName::try_from(SERVER_NAME).unwrap();
                let tls = connector.connect(name, tcp).await?;
                Ok::<_, std::io::Error>(TokioIo::new(tls))
            }
        }))
        .await?;
    Ok(AggregatedDiscoveryServiceClient::new(channel).max_decoding_message_size(usize::MAX))
}

pub fn node_for(proxy: &ProxyId) -> Node {
    let mut metadata = Struct::default();
    metadata.fields.insert(
        SERVICE_ACCOUNT_METADATA_KEY.to_string(),
        Value {
            kind: Some(Kind::StringValue(proxy.service_account.clone())),
        },
    );
    Node {
        id: proxy.node_id("127.0.0.1", "cluster.local"),
        cluster: format!("{}.{}", proxy.name, proxy.namespace),
        metadata: Some(metadata),
        ..Default::default()
    }
}

pub fn request(type_url: &str, names: &[&str]) -> DiscoveryRequest {
    DiscoveryRequest {
        type_url: type_url.to_string(),
        resource_names: names.iter().map(|n| n.to_string()).collect(),
        ..Default::default()
    }
}

/// One open ADS stream.
pub struct AdsClient {
    pub tx: mpsc::Sender<DiscoveryRequest>,
    pub rx: Streaming<DiscoveryResponse>,
}

impl AdsClient {
    /// Opens the stream with `first` (which should carry the node) already queued.
    pub async fn open(
        client: &mut AggregatedDiscoveryServiceClient<Channel>,
        first: DiscoveryRequest,
    ) -> Result<AdsClient, Status> {
        let (tx, rx) = mpsc::channel(64);
        tx.send(first).await.unwrap();
        let response = client
            .stream_aggregated_resources(ReceiverStream::new(rx))
            .await?;
        Ok(AdsClient {
            tx,
            rx: response.into_inner(),
        })
    }

    pub async fn send(&self, req: DiscoveryRequest) {
        self.tx.send(req).await.unwrap();
    }

    /// The next response; Err when the server ended the stream with a status.
    pub async fn recv(&mut self) -> Result<DiscoveryResponse, Status> {
        match tokio::time::timeout(Duration::from_secs(20), self.rx.message()).await {
            Ok(Ok(Some(r))) => Ok(r),
            Ok(Ok(None)) => Err(Status::aborted("stream ended")),
            Ok(Err(status)) => Err(status),
            Err(_) => panic!("no xDS response within 20 s"),
        }
    }

    /// ACKs a response like Envoy does (same names, its version and nonce).
    pub async fn ack(&self, r: &DiscoveryResponse, names: &[&str]) {
        let mut req = request(&r.type_url, names);
        req.version_info = r.version_info.clone();
        req.response_nonce = r.nonce.clone();
        self.send(req).await;
    }
}
