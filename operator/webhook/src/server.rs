//! The HTTPS server: TLS from the current serving certificate, routes to the
//! handlers, AdmissionReview in and out.

use crate::mutate::Injector;
use crate::review::{self, Verdict};
use crate::tls::{ServingCert, server_config};
use crate::{WebhookError, configs, mutate, validate};
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use std::sync::{Arc, RwLock};
use tokio::net::TcpListener;
use trellis_inject::InjectionContext;

/// Largest AdmissionReview accepted (the API server's object limit is 3 MiB).
const MAX_BODY: usize = 8 * 1024 * 1024;

/// What the webhook needs to start.
#[derive(Debug, Clone)]
pub struct WebhookConfig {
    pub cert: ServingCert,
    /// Sidecar image, resources, init image (from MeshConfig).
    pub injection: InjectionContext,
    /// The operator's namespace: never injected.
    pub operator_namespace: String,
}

struct State {
    tls: RwLock<Arc<rustls::ServerConfig>>,
    injection: RwLock<Arc<Injector>>,
    operator_namespace: String,
}

/// A webhook server; clones share the certificate and injection settings.
#[derive(Clone)]
pub struct Webhook {
    state: Arc<State>,
}

/// A webhook serving on a runtime of its own ([`Webhook::serve_on_own_runtime`]);
/// [`ServingRuntime::shutdown`] stops it gracefully, dropping it stops it at once.
pub struct ServingRuntime {
    runtime: Option<tokio::runtime::Runtime>,
    stop: tokio::sync::watch::Sender<bool>,
    serving: Option<tokio::task::JoinHandle<()>>,
}

impl ServingRuntime {
    /// Stops accepting connections, answers the reviews already being
    /// read, closes every connection after its answer, and stops the
    /// runtime once they are all closed or `grace` has passed.
    ///
    /// The API server keeps its connections to a webhook open and sends
    /// the next review on any idle one: closed connections are what move it
    /// to another replica, and a review in progress gets its answer rather
    /// than a reset (a failed pod creation under `failurePolicy: Fail`).
    pub async fn shutdown(mut self, grace: std::time::Duration) {
        let _ = self.stop.send(true);
        if let Some(serving) = self.serving.take() {
            let _ = tokio::time::timeout(grace, serving).await;
        }
    }
}

impl Drop for ServingRuntime {
    fn drop(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            // Without waiting: the handle is dropped inside the operator's runtime.
            runtime.shutdown_background();
        }
    }
}

impl Webhook {
    pub fn new(config: &WebhookConfig) -> Result<Self, WebhookError> {
        Ok(Webhook {
            state: Arc::new(State {
                tls: RwLock::new(server_config(&config.cert)?),
                injection: RwLock::new(Arc::new(Injector::new(config.injection.clone()))),
                operator_namespace: config.operator_namespace.clone(),
            }),
        })
    }

    /// Serves new connections with `cert` from now on (rotation, no restart).
    pub fn set_certificate(&self, cert: &ServingCert) -> Result<(), WebhookError> {
        let config = server_config(cert)?;
        *self.state.tls.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    /// Injects with these settings from now on (MeshConfig changed).
    pub fn set_injection(&self, injection: InjectionContext) {
        *self
            .state
            .injection
            .write()
            .unwrap_or_else(|e| e.into_inner()) = Arc::new(Injector::new(injection));
    }

    /// Serves `listener` on a runtime of its own (one worker thread per CPU)
    /// until the returned handle is shut down or dropped.
    ///
    /// Every pod created in a mesh namespace waits for this answer, so the
    /// webhook does not share the operator's runtime: a review never queues
    /// behind translation or xDS pushes there (the way injection times out
    /// when istiod is busy), only for the CPU.
    pub fn serve_on_own_runtime(
        self,
        listener: std::net::TcpListener,
    ) -> Result<ServingRuntime, WebhookError> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .thread_name("trellis-webhook")
            .enable_all()
            .build()
            .map_err(WebhookError::Runtime)?;
        listener
            .set_nonblocking(true)
            .map_err(WebhookError::Runtime)?;
        let listener = {
            let _in_runtime = runtime.enter();
            TcpListener::from_std(listener).map_err(WebhookError::Runtime)?
        };
        let (stop, stopping) = tokio::sync::watch::channel(false);
        let serving = runtime.spawn(self.serve(listener, stopping));
        Ok(ServingRuntime {
            runtime: Some(runtime),
            stop,
            serving: Some(serving),
        })
    }

    /// Accepts connections on `listener` until `stop` turns true (or its
    /// sender is gone), then closes the listener and waits for every
    /// connection to finish the review it is reading and close. Each
    /// connection runs in its own task, aborted if the future is dropped.
    async fn serve(self, listener: TcpListener, mut stop: tokio::sync::watch::Receiver<bool>) {
        let mut connections = tokio::task::JoinSet::new();
        loop {
            // Reap finished connections so the set does not grow.
            while connections.try_join_next().is_some() {}
            let accepted = tokio::select! {
                accepted = listener.accept() => accepted,
                _ = stop.wait_for(|stop| *stop) => break,
            };
            let (stream, peer) = match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!(error = %e, "webhook accept failed");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                    continue;
                }
            };
            let _ = stream.set_nodelay(true);
            let acceptor = tokio_rustls::TlsAcceptor::from(
                self.state
                    .tls
                    .read()
                    .unwrap_or_else(|e| e.into_inner())
                    .clone(),
            );
            let state = self.state.clone();
            let mut stopping = stop.clone();
            connections.spawn(async move {
                let tls = match acceptor.accept(stream).await {
                    Ok(tls) => tls,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "webhook TLS handshake failed");
                        return;
                    }
                };
                let service = hyper::service::service_fn(move |req| {
                    let state = state.clone();
                    async move { Ok::<_, std::convert::Infallible>(handle(&state, req).await) }
                });
                let connection = hyper::server::conn::http1::Builder::new()
                    .keep_alive(true)
                    .serve_connection(TokioIo::new(tls), service);
                tokio::pin!(connection);
                tokio::select! {
                    _ = connection.as_mut() => return,
                    _ = stopping.wait_for(|stop| *stop) => {}
                }
                // Idle: closed now; reading or answering a review: closed
                // after the answer is written.
                connection.as_mut().graceful_shutdown();
                let _ = connection.await;
            });
        }
        // New connections are refused from here on.
        drop(listener);
        while connections.join_next().await.is_some() {}
    }
}

fn text(status: StatusCode, body: String) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

async fn handle(state: &State, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path();
    match (req.method(), path) {
        (&Method::GET, "/healthz") => return text(StatusCode::OK, "ok".into()),
        (&Method::POST, configs::INJECT_PATH | configs::VALIDATE_PATH) => {}
        (_, configs::INJECT_PATH | configs::VALIDATE_PATH | "/healthz") => {
            return text(
                StatusCode::METHOD_NOT_ALLOWED,
                format!("{} is not allowed on {path}", req.method()),
            );
        }
        _ => return text(StatusCode::NOT_FOUND, format!("no handler for {path}")),
    }
    let inject = path == configs::INJECT_PATH;
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => return text(StatusCode::BAD_REQUEST, format!("reading the body: {e}")),
    };
    let request = match review::parse(&body) {
        Ok(request) => request,
        Err(e) => {
            return text(
                StatusCode::BAD_REQUEST,
                format!("not an AdmissionReview: {e}"),
            );
        }
    };
    let verdict = if inject {
        let injection = state
            .injection
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let outcome = mutate::review_pod(&request, &injection, &state.operator_namespace);
        tracing::debug!(
            uid = %request.uid, namespace = %request.namespace, reason = %outcome.reason,
            injected = matches!(&outcome.verdict, Verdict::Allow { patch: Some(_) }),
            "injection review"
        );
        outcome.verdict
    } else {
        let verdict = validate::review_object(&request);
        if let Verdict::Deny { message, .. } = &verdict {
            tracing::info!(uid = %request.uid, %message, "validation denied");
        }
        verdict
    };
    let reply = review::response(&request.uid, &verdict);
    let mut response = Response::new(Full::new(Bytes::from(reply)));
    response.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    response
}
