//! Starts everything [`crate::Context`] is shared by, and stops it in order.

use crate::config::OperatorConfig;
use crate::context::Context;
use crate::error::Result;
use futures::{Stream, StreamExt};
use k8s_openapi::api::coordination::v1::Lease;
use kube::Api;
use kube::runtime::watcher;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use tokio::sync::watch;
use trellis_telemetry::{ReadyGate, Telemetry};

/// A controller: a name (for logs) and its run function.
pub type ControllerFn = fn(Arc<Context>) -> futures::future::BoxFuture<'static, ()>;

/// Every controller the operator runs. Add new ones here.
pub fn controllers() -> Vec<(&'static str, ControllerFn)> {
    vec![
        ("mesh-config", |ctx| {
            Box::pin(crate::identity_settings::run(ctx))
        }),
        ("ca", |ctx| Box::pin(crate::ca_store::run(ctx))),
        ("namespace", |ctx| Box::pin(crate::namespaces::run(ctx))),
        ("identity", |ctx| Box::pin(crate::identity::run(ctx))),
    ]
}

/// Extra tasks started with the controllers (e.g. the xDS server, status writers),
/// given by the binary so this crate does not depend on them.
pub type ExtraTask =
    Box<dyn FnOnce(Arc<Context>) -> futures::future::BoxFuture<'static, ()> + Send>;

/// Passes a watcher's events through and opens `gate` at the first `InitDone`
/// (the cache holds a full list). The gate stays open across re-lists.
pub fn cache_synced<K, S>(stream: S, gate: ReadyGate) -> impl Stream<Item = S::Item>
where
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>>,
{
    stream.inspect(move |event| {
        if let Ok(watcher::Event::InitDone) = event {
            gate.set(true);
        }
    })
}

/// What [`run`] started, for tests and the binary.
pub struct Running {
    /// The shared context.
    pub context: Arc<Context>,
    /// Where telemetry listens.
    pub metrics_addr: SocketAddr,
}

/// Runs the operator until `shutdown` resolves and, with `/readyz` failing, for
/// `config.shutdown_delay` more; then stops the controllers, waits for in-flight
/// writes and releases the Lease. `started` is told the bound addresses.
pub async fn run(
    config: OperatorConfig,
    client: kube::Client,
    shutdown: impl Future<Output = ()> + Send + 'static,
    extra: Vec<ExtraTask>,
    started: impl FnOnce(&Running),
) -> Result<()> {
    let telemetry = Telemetry::new();
    let (stop_tx, stop_rx) = watch::channel(false);
    let (metrics_addr, telemetry_task) =
        trellis_telemetry::serve(config.metrics_addr, telemetry.clone(), stop_rx.clone()).await?;
    let ctx = Arc::new(Context::new(
        client.clone(),
        config,
        telemetry,
        stop_rx.clone(),
    ));
    started(&Running {
        context: ctx.clone(),
        metrics_addr,
    });
    tracing::info!(%metrics_addr, namespace = %ctx.config.namespace, identity = %ctx.config.lease.identity, "operator starting");

    let leases: Api<Lease> = Api::namespaced(client, &ctx.config.namespace);
    let election = tokio::spawn(crate::leader::run(
        leases,
        ctx.config.lease.clone(),
        ctx.leader.clone(),
        ctx.telemetry.metrics.clone(),
        stop_rx.clone(),
    ));
    let mut tasks = Vec::new();
    for (name, start) in controllers() {
        let ctx = ctx.clone();
        tasks.push(tokio::spawn(async move {
            start(ctx).await;
            tracing::info!(controller = name, "controller stopped");
        }));
    }
    for task in extra {
        tasks.push(tokio::spawn(task(ctx.clone())));
    }

    shutdown.await;
    let delay = ctx.config.shutdown_delay;
    if !delay.is_zero() {
        // Kubernetes removes a terminating Pod's endpoints while it sends SIGTERM, and
        // the API server and kube-proxy learn of it a moment later: a replica that
        // refused connections at once would fail the webhook calls still routed to it.
        // A gate is created closed: `/readyz` fails from here on, naming it.
        ctx.telemetry.readiness.gate("terminating");
        tracing::info!(
            ?delay,
            "shutdown requested: serving on for the shutdown delay, /readyz failing"
        );
        tokio::time::sleep(delay).await;
    }
    tracing::info!("shutting down: stopping controllers, finishing writes, releasing the lease");
    let _ = stop_tx.send(true);
    // The election task drains in-flight writes before releasing the Lease.
    let _ = election.await;
    for task in tasks {
        let _ = task.await;
    }
    let _ = telemetry_task.await;
    tracing::info!("operator stopped");
    Ok(())
}
