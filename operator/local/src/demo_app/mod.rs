//! `trellis demo-app`: the HTTP service the bundled example runs for every
//! workload. It answers with its name and version, calls its downstreams
//! (through the sidecar when `HTTP_PROXY` is set) and aggregates their
//! answers; failure rate and latency flags make retries and outlier
//! detection visible, and a seed makes the failures reproducible.
mod client;
pub mod config;
pub mod rng;

pub use config::{DemoAppConfig, Downstream, parse_http_proxy};

use crate::error::{LocalError, Result};
use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use tokio::net::TcpListener;

/// The header the sidecar sets with the caller's and its own identity.
const XFCC: &str = "x-forwarded-client-cert";

struct App {
    config: DemoAppConfig,
    requests: AtomicU64,
}

impl App {
    async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        let path = req.uri().path().to_string();
        if path == "/healthz" {
            return self.reply(
                StatusCode::OK,
                json!({ "service": self.config.name, "healthy": true }),
            );
        }
        let index = self.requests.fetch_add(1, Ordering::Relaxed);
        if !self.config.latency.is_zero() {
            tokio::time::sleep(self.config.latency).await;
        }
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
        };
        let peer = header(XFCC);
        let request_id = header("x-request-id");
        if rng::roll(self.config.seed, index) < self.config.failure_rate {
            let status = StatusCode::from_u16(self.config.failure_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE);
            return self.reply(
                status,
                json!({ "service": self.config.name, "version": self.config.version,
                        "error": "injected failure", "request": index }),
            );
        }
        let mut calls = Vec::new();
        let mut all_ok = true;
        for target in &self.config.downstreams {
            let entry =
                match client::call(target, self.config.http_proxy, request_id.as_deref()).await {
                    Ok((status, body)) => {
                        all_ok &= (200..300).contains(&status);
                        json!({ "target": target.url(), "status": status, "body": body })
                    }
                    Err(e) => {
                        all_ok = false;
                        json!({ "target": target.url(), "error": e.to_string() })
                    }
                };
            calls.push(entry);
        }
        let status = if all_ok {
            StatusCode::OK
        } else {
            StatusCode::BAD_GATEWAY
        };
        self.reply(
            status,
            json!({ "service": self.config.name, "version": self.config.version,
                    "path": path, "peer": peer, "calls": calls }),
        )
    }

    fn reply(&self, status: StatusCode, body: Value) -> Response<Full<Bytes>> {
        let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
        *response.status_mut() = status;
        let headers = response.headers_mut();
        headers.insert(
            hyper::header::CONTENT_TYPE,
            "application/json".parse().expect("static header"),
        );
        if let Ok(v) = self.config.name.parse() {
            headers.insert("x-demo-service", v);
        }
        if let Ok(v) = self.config.version.parse() {
            headers.insert("x-demo-version", v);
        }
        response
    }
}

/// Serves on `listener` until `shutdown` completes.
pub async fn serve(
    config: DemoAppConfig,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> Result<()> {
    config.validate()?;
    let app = Arc::new(App {
        config,
        requests: AtomicU64::new(0),
    });
    tokio::pin!(shutdown);
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
            () = &mut shutdown => return Ok(()),
        };
        let app = Arc::clone(&app);
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let app = Arc::clone(&app);
                async move { Ok::<_, Infallible>(app.handle(req).await) }
            });
            let _ = http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// Runs the app on its own single-threaded runtime until Ctrl-C or SIGTERM.
pub fn run_blocking(config: DemoAppConfig) -> Result<()> {
    config.validate()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| LocalError::io("starting runtime", "demo-app", e))?;
    runtime.block_on(async move {
        let listener = TcpListener::bind(config.listen)
            .await
            .map_err(|e| LocalError::io("listening on", config.listen.to_string(), e))?;
        eprintln!(
            "demo-app {} {} listening on {} (proxy: {})",
            config.name,
            config.version,
            config.listen,
            config
                .http_proxy
                .map_or_else(|| "none".into(), |p| p.to_string())
        );
        serve(config, listener, shutdown_signal()).await
    })
}

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = term.recv() => {}
            }
        }
        Err(_) => {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}

#[cfg(test)]
mod tests;
