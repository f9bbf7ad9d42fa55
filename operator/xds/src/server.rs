//! The gRPC ADS service: authenticates each stream, runs one [`AdsStream`] per stream,
//! delivers debounced, scoped pushes and keeps per-proxy status.
use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Instant, SystemTime};

use envoy_types::pb::envoy::service::discovery::v3::aggregated_discovery_service_server::{
    AggregatedDiscoveryService, AggregatedDiscoveryServiceServer,
};
use envoy_types::pb::envoy::service::discovery::v3::{
    DeltaDiscoveryRequest, DeltaDiscoveryResponse, DiscoveryRequest, DiscoveryResponse,
};
use tokio::sync::{mpsc, watch};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{Request, Response, Status, Streaming};

use crate::debounce::{DebounceConfig, Debouncer, PushScope};
use crate::identity::authorize;
use crate::metrics::Metrics;
use crate::protocol::{AdsStream, RequestKind};
use crate::snapshot::{ContentHash, Snapshot, SnapshotSource};
use crate::status::{ProxyStatus, TypeStatus};
use crate::tls::{PeerIdentity, TlsSettings};
use crate::{MetricsSnapshot, ProxyId, XdsError};

/// Largest message accepted from a proxy; requests are small, this only bounds abuse.
const MAX_REQUEST_BYTES: usize = 4 * 1024 * 1024;

#[derive(Clone, Debug)]
pub struct XdsConfig {
    /// Client certificates must carry a SPIFFE id of this trust domain.
    pub trust_domain: String,
    pub debounce: DebounceConfig,
    /// Sent as `control_plane.identifier` in every response.
    pub control_plane_id: String,
}

impl XdsConfig {
    pub fn new(trust_domain: &str) -> Self {
        XdsConfig {
            trust_domain: trust_domain.to_string(),
            debounce: DebounceConfig::default(),
            control_plane_id: "trellis".to_string(),
        }
    }
}

/// The xDS server. Cheap to clone; all clones share state.
#[derive(Clone)]
pub struct XdsServer {
    inner: Arc<Inner>,
}

struct Inner {
    config: XdsConfig,
    source: Arc<dyn SnapshotSource>,
    metrics: Arc<Metrics>,
    conns: Mutex<HashMap<u64, Conn>>,
    /// Trust domains whose client certificates are accepted (first: the mesh's).
    trust_domains: std::sync::RwLock<Vec<String>>,
    next_conn: AtomicU64,
    /// Incremented as each push round starts; a connecting proxy compares it around its
    /// registration to catch a round that missed it.
    push_rounds_started: AtomicU64,
    push_tx: mpsc::UnboundedSender<PushScope>,
}

struct Conn {
    proxy: ProxyId,
    node_id: String,
    connected_since: SystemTime,
    snapshot_tx: watch::Sender<Arc<Snapshot>>,
    last_hash: ContentHash,
    types: [TypeStatus; 5],
}

impl XdsServer {
    /// Creates the server and its push debouncer. Must be called inside a Tokio runtime.
    pub fn new(config: XdsConfig, source: Arc<dyn SnapshotSource>) -> XdsServer {
        let (push_tx, push_rx) = mpsc::unbounded_channel();
        let inner = Arc::new(Inner {
            trust_domains: std::sync::RwLock::new(vec![config.trust_domain.clone()]),
            config,
            source,
            metrics: Arc::new(Metrics::default()),
            conns: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            push_rounds_started: AtomicU64::new(0),
            push_tx,
        });
        tokio::spawn(run_debouncer(Arc::downgrade(&inner), push_rx));
        XdsServer { inner }
    }

    /// Accepts client certificates of these trust domains from now on (the mesh's first,
    /// then any it is moving away from while identities are reissued); replaces
    /// [`XdsConfig::trust_domain`]. An empty list keeps the current one.
    pub fn set_trust_domains(&self, domains: Vec<String>) {
        if domains.is_empty() {
            return;
        }
        *self
            .inner
            .trust_domains
            .write()
            .unwrap_or_else(|p| p.into_inner()) = domains;
    }

    /// Asks for a push to the proxies in `scope`; debounced, then each proxy's snapshot is
    /// rebuilt and sent only if its hash changed.
    pub fn push(&self, scope: PushScope) {
        let _ = self.inner.push_tx.send(scope);
    }

    /// Pushes now, without debouncing (blocking: it calls the snapshot source).
    pub fn push_now(&self, scope: &PushScope) {
        self.inner.flush(scope);
    }

    /// The gRPC service (for callers that run their own tonic server).
    pub fn service(&self) -> AggregatedDiscoveryServiceServer<AdsService> {
        AggregatedDiscoveryServiceServer::new(AdsService {
            inner: self.inner.clone(),
        })
        .max_decoding_message_size(MAX_REQUEST_BYTES)
        .max_encoding_message_size(usize::MAX)
    }

    /// Serves ADS over mTLS on `listener` until `shutdown` completes.
    pub async fn serve(
        &self,
        listener: tokio::net::TcpListener,
        tls: Arc<TlsSettings>,
        shutdown: impl Future<Output = ()> + Send,
    ) -> Result<(), XdsError> {
        let incoming = crate::tls::incoming(listener, tls, self.inner.metrics.clone());
        tonic::transport::Server::builder()
            .http2_keepalive_interval(Some(std::time::Duration::from_secs(30)))
            .add_service(self.service())
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await?;
        Ok(())
    }

    /// The status of a proxy's newest stream, if it is connected.
    pub fn proxy_status(&self, proxy: &ProxyId) -> Option<ProxyStatus> {
        let conns = self.inner.lock_conns();
        conns
            .iter()
            .filter(|(_, c)| &c.proxy == proxy)
            .max_by_key(|(id, _)| **id)
            .map(|(_, c)| c.status())
    }

    /// Every connected stream's status, ordered by proxy.
    pub fn proxy_statuses(&self) -> Vec<ProxyStatus> {
        let conns = self.inner.lock_conns();
        let mut all: Vec<ProxyStatus> = conns.values().map(Conn::status).collect();
        all.sort_by(|a, b| a.proxy.cmp(&b.proxy));
        all
    }

    pub fn metrics(&self) -> MetricsSnapshot {
        self.inner.metrics.snapshot()
    }
}

impl Conn {
    fn status(&self) -> ProxyStatus {
        ProxyStatus {
            proxy: self.proxy.clone(),
            node_id: self.node_id.clone(),
            connected_since: self.connected_since,
            types: self.types.clone(),
        }
    }
}

impl Inner {
    fn lock_conns(&self) -> std::sync::MutexGuard<'_, HashMap<u64, Conn>> {
        self.conns.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn flush(&self, scope: &PushScope) {
        let start = Instant::now();
        self.push_rounds_started.fetch_add(1, Ordering::SeqCst);
        let mut targets: BTreeMap<ProxyId, Vec<u64>> = BTreeMap::new();
        for (id, conn) in self.lock_conns().iter() {
            if scope.contains(&conn.proxy) {
                targets.entry(conn.proxy.clone()).or_default().push(*id);
            }
        }
        for (proxy, ids) in targets {
            let snapshot = match self.source.snapshot(&proxy) {
                Ok(s) => Arc::new(s),
                Err(e) => {
                    Metrics::inc(&self.metrics.snapshot_errors_total);
                    tracing::warn!(proxy = %proxy, error = %e, "no snapshot for push");
                    continue;
                }
            };
            let mut conns = self.lock_conns();
            for id in ids {
                let Some(conn) = conns.get_mut(&id) else {
                    continue;
                };
                if conn.last_hash == snapshot.hash() {
                    Metrics::inc(&self.metrics.pushes_skipped_total);
                    continue;
                }
                conn.last_hash = snapshot.hash();
                conn.snapshot_tx.send_replace(snapshot.clone());
                Metrics::inc(&self.metrics.pushes_total);
            }
        }
        let micros = u64::try_from(start.elapsed().as_micros()).unwrap_or(u64::MAX);
        Metrics::inc(&self.metrics.push_rounds_total);
        self.metrics
            .push_duration_micros_total
            .fetch_add(micros, Ordering::Relaxed);
        self.metrics
            .last_push_duration_micros
            .store(micros, Ordering::Relaxed);
    }

    fn refuse(&self, status: Status) -> Status {
        Metrics::inc(&self.metrics.refused_total);
        tracing::info!(code = ?status.code(), message = status.message(), "xDS stream refused");
        status
    }
}

async fn run_debouncer(inner: std::sync::Weak<Inner>, mut rx: mpsc::UnboundedReceiver<PushScope>) {
    let Some(config) = inner.upgrade().map(|i| i.config.debounce) else {
        return;
    };
    let mut debouncer = Debouncer::new(config);
    loop {
        let deadline = debouncer.deadline();
        tokio::select! {
            scope = rx.recv() => match scope {
                Some(scope) => debouncer.add(Instant::now(), scope),
                None => return,
            },
            _ = sleep_until(deadline) => {
                if let Some(scope) = debouncer.take_due(Instant::now()) {
                    let Some(inner) = inner.upgrade() else { return };
                    let _ = tokio::task::spawn_blocking(move || inner.flush(&scope)).await;
                }
            }
        }
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d.into()).await,
        None => std::future::pending().await,
    }
}

/// The tonic service; see [`XdsServer::service`].
pub struct AdsService {
    inner: Arc<Inner>,
}

type ResponseStream = ReceiverStream<Result<DiscoveryResponse, Status>>;

#[tonic::async_trait]
impl AggregatedDiscoveryService for AdsService {
    type StreamAggregatedResourcesStream = ResponseStream;
    type DeltaAggregatedResourcesStream = ReceiverStream<Result<DeltaDiscoveryResponse, Status>>;

    async fn stream_aggregated_resources(
        &self,
        request: Request<Streaming<DiscoveryRequest>>,
    ) -> Result<Response<ResponseStream>, Status> {
        let inner = &self.inner;
        let peer = match request.extensions().get::<PeerIdentity>() {
            Some(PeerIdentity { spiffe: Ok(id) }) => id.clone(),
            Some(PeerIdentity {
                spiffe: Err(reason),
            }) => {
                return Err(inner.refuse(Status::unauthenticated(reason.clone())));
            }
            None => {
                return Err(inner.refuse(Status::unauthenticated(
                    "xDS requires mTLS with a mesh workload certificate",
                )));
            }
        };
        let mut requests = request.into_inner();
        let first = requests
            .message()
            .await?
            .ok_or_else(|| Status::invalid_argument("stream ended before the first request"))?;
        let node = first
            .node
            .as_ref()
            .ok_or_else(|| inner.refuse(Status::invalid_argument("first request has no node")))?;
        let node_id = node.id.clone();
        let proxy = ProxyId::from_node(node)
            .map_err(|e| inner.refuse(Status::invalid_argument(e.to_string())))?;
        let trust_domain = {
            let domains = inner
                .trust_domains
                .read()
                .unwrap_or_else(|p| p.into_inner());
            domains
                .iter()
                .find(|td| **td == peer.trust_domain)
                .unwrap_or(&domains[0])
                .clone()
        };
        authorize(&proxy, &peer, &trust_domain)
            .map_err(|e| inner.refuse(Status::permission_denied(e.to_string())))?;
        let rounds_before = inner.push_rounds_started.load(Ordering::SeqCst);
        // Translation is CPU work (a cold namespace can take long at scale): off the
        // runtime's workers, as push rounds are.
        let snapshot = {
            let (inner, proxy) = (inner.clone(), proxy.clone());
            tokio::task::spawn_blocking(move || inner.source.snapshot(&proxy))
                .await
                .map_err(|e| Status::internal(format!("snapshot task failed: {e}")))?
        }
        .map_err(|e| {
            Metrics::inc(&inner.metrics.snapshot_errors_total);
            Status::unavailable(e.to_string())
        })?;
        let snapshot = Arc::new(snapshot);
        let (snapshot_tx, snapshot_rx) = watch::channel(snapshot.clone());
        let conn_id = inner.next_conn.fetch_add(1, Ordering::Relaxed);
        inner.lock_conns().insert(
            conn_id,
            Conn {
                proxy: proxy.clone(),
                node_id,
                connected_since: SystemTime::now(),
                snapshot_tx,
                last_hash: snapshot.hash(),
                types: Default::default(),
            },
        );
        inner
            .metrics
            .connected_proxies
            .fetch_add(1, Ordering::Relaxed);
        Metrics::inc(&inner.metrics.connections_total);
        if inner.push_rounds_started.load(Ordering::SeqCst) != rounds_before {
            // A push round ran while this snapshot was built and may have missed this
            // stream: refresh once, through the normal push path (skipped if unchanged).
            inner.flush(&PushScope::Proxies([proxy.clone()].into()));
        }
        tracing::info!(proxy = %proxy, conn = conn_id, "proxy connected");
        let (tx, rx) = mpsc::channel(16);
        let stream = StreamTask {
            inner: inner.clone(),
            conn_id,
            proxy,
            ads: AdsStream::new(inner.config.control_plane_id.clone()),
            tx,
        };
        tokio::spawn(stream.run(first, requests, snapshot_rx));
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn delta_aggregated_resources(
        &self,
        _request: Request<Streaming<DeltaDiscoveryRequest>>,
    ) -> Result<Response<Self::DeltaAggregatedResourcesStream>, Status> {
        Err(Status::unimplemented(
            "delta xDS is not served; configure the ADS cluster with api_type GRPC (State of the World)",
        ))
    }
}

struct StreamTask {
    inner: Arc<Inner>,
    conn_id: u64,
    proxy: ProxyId,
    ads: AdsStream,
    tx: mpsc::Sender<Result<DiscoveryResponse, Status>>,
}

impl StreamTask {
    async fn run(
        mut self,
        first: DiscoveryRequest,
        mut requests: Streaming<DiscoveryRequest>,
        mut snapshots: watch::Receiver<Arc<Snapshot>>,
    ) {
        let initial = snapshots.borrow_and_update().clone();
        self.ads.on_snapshot(initial);
        let mut open = self.on_request(first).await;
        while open {
            open = tokio::select! {
                msg = requests.message() => match msg {
                    Ok(Some(req)) => self.on_request(req).await,
                    Ok(None) => false,
                    Err(status) => {
                        tracing::debug!(proxy = %self.proxy, error = %status, "xDS stream error");
                        false
                    }
                },
                changed = snapshots.changed() => match changed {
                    Ok(()) => {
                        let snapshot = snapshots.borrow_and_update().clone();
                        let out = self.ads.on_snapshot(snapshot);
                        self.send(out).await
                    }
                    Err(_) => false,
                },
            };
        }
        self.inner.lock_conns().remove(&self.conn_id);
        self.inner
            .metrics
            .connected_proxies
            .fetch_sub(1, Ordering::Relaxed);
        tracing::info!(proxy = %self.proxy, conn = self.conn_id, "proxy disconnected");
    }

    async fn on_request(&mut self, req: DiscoveryRequest) -> bool {
        if let Some(node) = &req.node
            && !node.id.is_empty()
            && ProxyId::from_node(node).ok().as_ref() != Some(&self.proxy)
        {
            let status = self
                .inner
                .refuse(Status::permission_denied("node changed during the stream"));
            let _ = self.tx.send(Err(status)).await;
            return false;
        }
        let (kind, out) = self.ads.handle_request_classified(req);
        // Status first, so whoever reads a counter also finds the status it counted.
        self.record_status();
        match &kind {
            RequestKind::Ack => Metrics::inc(&self.inner.metrics.acks_total),
            RequestKind::Nack(nack) => {
                Metrics::inc(&self.inner.metrics.nacks_total);
                tracing::warn!(
                    proxy = %self.proxy,
                    type_url = %nack.type_url,
                    version = %nack.rejected_version,
                    resources = ?nack.resource_names,
                    message = %nack.message,
                    "proxy rejected configuration"
                );
            }
            _ => {}
        }
        self.send(out).await
    }

    fn record_status(&self) {
        if let Some(conn) = self.inner.lock_conns().get_mut(&self.conn_id) {
            conn.types = self.ads.status();
        }
    }

    /// Records the new status, then sends; false when the proxy is gone.
    async fn send(&mut self, out: Vec<DiscoveryResponse>) -> bool {
        if !out.is_empty() {
            self.record_status();
        }
        for response in out {
            Metrics::inc(&self.inner.metrics.responses_total);
            if self.tx.send(Ok(response)).await.is_err() {
                return false;
            }
        }
        true
    }
}
