//! The tasks `trellis operator` adds to the controller runtime: the sources
//! (reflectors → model), the xDS server that serves sidecars in the cluster from
//! that model, and the status loop.
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use trellis_controller::Context;
use trellis_controller::runtime::ExtraTask;
use trellis_model::MeshSettings;
use trellis_sources::{ModelSnapshots, Sources};
use trellis_translate::{ListenerShape, SdsSource, TranslateOptions};
use trellis_xds::{TlsSettings, XdsConfig, XdsServer};

use crate::writer::{StatusInputs, run as run_status};

/// The Service name sidecars reach the xDS server by (in the operator's namespace).
pub const XDS_SERVICE: &str = "trellis-xds";
/// Lifetime of the xDS server certificate; reissued at half of it.
pub const XDS_CERT_TTL: Duration = Duration::from_secs(24 * 3600);
/// Where the injected sidecar finds its file-based SDS definitions and certificates.
pub const SDS_WORKLOAD_CERT_FILE: &str = "/etc/trellis/bootstrap/sds-workload-cert.json";
pub const SDS_ROOT_CA_FILE: &str = "/etc/trellis/bootstrap/sds-root-ca.json";
pub const CERTS_DIR: &str = "/etc/certs";

type Task = Pin<Box<dyn Future<Output = ()> + Send>>;

/// The tasks to hand to [`trellis_controller::run`].
pub fn extra_tasks() -> Vec<ExtraTask> {
    vec![Box::new(|ctx: Arc<Context>| -> Task { Box::pin(run(ctx)) })]
}

/// DNS names in the xDS server certificate.
pub fn xds_server_names(namespace: &str) -> Vec<String> {
    vec![
        format!("{XDS_SERVICE}.{namespace}.svc"),
        format!("{XDS_SERVICE}.{namespace}.svc.cluster.local"),
    ]
}

/// How proxies in the cluster are translated: iptables interception, secrets from files.
pub fn cluster_translate_options() -> TranslateOptions {
    TranslateOptions {
        shape: ListenerShape::Interception,
        sds: SdsSource::Files {
            workload_cert_file: SDS_WORKLOAD_CERT_FILE.into(),
            trust_bundle_file: SDS_ROOT_CA_FILE.into(),
            watched_directory: Some(CERTS_DIR.into()),
        },
    }
}

async fn run(ctx: Arc<Context>) {
    let trust_domain = ctx.config.trust_domain.as_str().to_string();
    let base = MeshSettings {
        trust_domain: trust_domain.clone(),
        ..MeshSettings::default()
    };
    let snapshots = ModelSnapshots::new(cluster_translate_options());
    let xds = XdsServer::new(XdsConfig::new(&trust_domain), snapshots.clone());
    for (name, help, metric) in crate::xds_metrics::families(&xds) {
        ctx.telemetry.register(name, help, metric);
    }
    let sources = Sources::start(
        ctx.client.clone(),
        base,
        snapshots,
        Some(xds.clone()),
        &ctx.config.namespace,
    );

    let gate = ctx.telemetry.readiness.gate("cache/sources");
    let mut synced = sources.view();
    let stop = ctx.shutdown();
    tokio::spawn(async move {
        tokio::select! {
            r = synced.wait_for(|v| v.synced) => if r.is_ok() { gate.set(true) },
            () = stop => {}
        }
    });
    let server = tokio::spawn(serve_xds(ctx.clone(), xds.clone()));
    run_status(
        ctx.clone(),
        StatusInputs {
            view: sources.view(),
            xds: Some(xds),
        },
    )
    .await;
    let _ = server.await;
    drop(sources);
}

/// Serves ADS over mTLS once a CA is loaded; reissues the server certificate at
/// half its lifetime and whenever the CA changes.
async fn serve_xds(ctx: Arc<Context>, xds: XdsServer) {
    let mut ca_rx = ctx.ca.subscribe();
    let shutdown = ctx.shutdown();
    tokio::pin!(shutdown);
    let mut tls: Option<Arc<TlsSettings>> = None;
    let mut generation = 0;
    let mut renew_at = tokio::time::Instant::now();
    // The trust domain the CA signs for (MeshConfig over the flag); after a change the
    // previous one stays accepted: its certificates are being reissued.
    let mut trust_domain = ctx.config.trust_domain.as_str().to_string();
    loop {
        let current = ctx.ca.current();
        if let Some(ca) = &current {
            let td = ca.ca.trust_domain().as_str().to_string();
            if td != trust_domain {
                tracing::info!(trust_domain = %td, previous = %trust_domain, "xDS accepts the new trust domain");
                xds.set_trust_domains(vec![td.clone(), trust_domain.clone()]);
                trust_domain = td;
            }
        }
        if let Some(ca) = current
            && (ca.generation != generation || tokio::time::Instant::now() >= renew_at)
        {
            let now = ctx.clock.now();
            match ca.ca.issue_server_cert(
                &xds_server_names(&ctx.config.namespace),
                XDS_CERT_TTL,
                now,
            ) {
                Ok(cert) => {
                    let chain = &cert.cert_chain_pem;
                    let key = cert.key_pem.expose();
                    let result = match &tls {
                        Some(t) => t.reload(chain, key, &ca.trust_bundle_pem),
                        None => TlsSettings::from_pem(chain, key, &ca.trust_bundle_pem).map(|t| {
                            tls = Some(t.clone());
                            start_listener(ctx.clone(), xds.clone(), t);
                        }),
                    };
                    match result {
                        Ok(()) => {
                            generation = ca.generation;
                            renew_at = tokio::time::Instant::now() + XDS_CERT_TTL / 2;
                        }
                        Err(e) => {
                            tracing::error!(error = %e, "xDS server TLS settings");
                            renew_at = tokio::time::Instant::now() + Duration::from_secs(30);
                        }
                    }
                }
                Err(e) => {
                    tracing::error!(error = %e, "issuing the xDS server certificate");
                    renew_at = tokio::time::Instant::now() + Duration::from_secs(30);
                }
            }
        }
        let wait = if ctx.ca.current().is_some() {
            tokio::time::sleep_until(renew_at)
        } else {
            tokio::time::sleep(Duration::from_secs(3600))
        };
        tokio::select! {
            () = &mut shutdown => return,
            changed = ca_rx.changed() => if changed.is_err() { return },
            () = wait => {}
        }
    }
}

fn start_listener(ctx: Arc<Context>, xds: XdsServer, tls: Arc<TlsSettings>) {
    let addr = ctx.config.xds_addr;
    tokio::spawn(async move {
        let listener = match tokio::net::TcpListener::bind(addr).await {
            Ok(l) => l,
            Err(e) => {
                tracing::error!(%addr, error = %e, "cannot listen for xDS");
                return;
            }
        };
        tracing::info!(addr = %listener.local_addr().unwrap_or(addr), "xDS server listening");
        if let Err(e) = xds.serve(listener, tls, ctx.shutdown()).await {
            tracing::error!(error = %e, "xDS server stopped");
        }
    });
}
