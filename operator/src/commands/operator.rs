//! `trellis operator`: the in-cluster control plane. Parses flags, builds the kube
//! client (a kubeconfig file, `KUBECONFIG`, or the in-cluster service account),
//! installs signal handlers and runs `trellis_controller::run` until SIGTERM/SIGINT.

use anyhow::{Context, Result, anyhow};
use clap::Args;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::time::Duration;
use trellis_ca::{KeyAlgorithm, RenewalPolicy, TrustDomain};
use trellis_controller::{LeaseConfig, OperatorConfig};

fn duration(s: &str) -> Result<Duration, String> {
    trellis_api::parse_duration(s).map_err(|e| e.to_string())
}

#[derive(Args, Debug)]
pub struct OperatorArgs {
    /// The operator's own namespace (CA Secrets, Lease, control-plane MeshStatus).
    #[arg(long, env = "POD_NAMESPACE", default_value = "trellis-system")]
    namespace: String,
    /// Kubeconfig file; without it, KUBECONFIG or the in-cluster service account is used.
    #[arg(long)]
    kubeconfig: Option<PathBuf>,
    /// Kubeconfig context (default: the current context).
    #[arg(long)]
    context: Option<String>,
    /// Address of /metrics, /healthz and /readyz.
    #[arg(long, default_value = "0.0.0.0:15014")]
    metrics_addr: SocketAddr,
    /// Address of the xDS (ADS/SDS) server.
    #[arg(long, default_value = "0.0.0.0:15012")]
    xds_addr: SocketAddr,
    /// Address injected sidecars reach the xDS server at, `host:port` (written into the
    /// bootstrap ConfigMap `trellis-sidecar-bootstrap`); default `trellis-xds.<namespace>.svc:15012`.
    #[arg(long)]
    xds_advertise_addr: Option<String>,
    /// Name of the leader-election Lease in the operator's namespace.
    #[arg(long, default_value = "trellis-operator-leader")]
    lease_name: String,
    /// This replica's identity in the Lease (default: POD_NAME, else hostname, plus the PID).
    #[arg(long, env = "POD_NAME")]
    identity: Option<String>,
    /// How long the Lease is valid without renewal.
    #[arg(long, default_value = "15s", value_parser = duration)]
    lease_duration: Duration,
    /// The leader stops writing when it could not renew for this long.
    #[arg(long, default_value = "10s", value_parser = duration)]
    renew_deadline: Duration,
    /// How often the Lease is renewed or tried.
    #[arg(long, default_value = "2s", value_parser = duration)]
    retry_period: Duration,
    /// SPIFFE trust domain of workload identities, unless MeshConfig `default` sets spec.trustDomain.
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    /// Lifetime of workload certificates, unless MeshConfig `default` sets spec.workloadCertTtl.
    #[arg(long, default_value = "24h", value_parser = duration)]
    workload_cert_ttl: Duration,
    /// Renew after this fraction of a certificate's lifetime (0-1), unless MeshConfig `default` sets spec.workloadCertRenewalRatio.
    #[arg(long, default_value_t = 0.5)]
    renewal_ratio: f64,
    /// Up to this fraction of a lifetime is added to each identity's renewal time (fixed per identity) to spread renewals.
    #[arg(long, default_value_t = 0.1)]
    renewal_jitter: f64,
    /// Key type of a new self-signed root: ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096.
    #[arg(long, default_value = "ecdsa-p256")]
    root_key_type: String,
    /// Lifetime of a new self-signed root.
    #[arg(long, default_value = "87600h", value_parser = duration)]
    root_cert_ttl: Duration,
    /// Identities reissued per second after the root or the trust domain changes.
    #[arg(long, default_value_t = 100.0)]
    rotation_rate: f64,
    /// How long the previous root stays trusted after the last identity moved to the new one.
    #[arg(long, default_value = "1m", value_parser = duration)]
    rotation_grace: Duration,
    /// Longest wait between two tries of a failing object.
    #[arg(long, default_value = "5m", value_parser = duration)]
    max_backoff: Duration,
    /// After SIGTERM, keep serving (webhooks, xDS, controllers) for this long with /readyz
    /// failing, then stop: long enough for the Pod's endpoints to be removed everywhere, so
    /// no webhook call reaches a replica that no longer accepts connections.
    #[arg(long, default_value = "0s", value_parser = duration)]
    shutdown_delay: Duration,
    /// Address of the admission webhooks (HTTPS; the trellis-webhook Service maps 443 here).
    #[arg(long, default_value = "0.0.0.0:15017")]
    webhook_addr: SocketAddr,
    /// Image of the trellis binary that injected init containers run as `trellis proxy-init`.
    #[arg(long, env = "TRELLIS_IMAGE", default_value = trellis_inject::DEFAULT_INIT_IMAGE)]
    init_image: String,
    /// Log format: text or json.
    #[arg(long, default_value = "text")]
    log_format: String,
}

fn key_type(s: &str) -> Result<KeyAlgorithm> {
    match s {
        "ecdsa-p256" => Ok(KeyAlgorithm::EcdsaP256),
        "rsa-2048" => Ok(KeyAlgorithm::Rsa { bits: 2048 }),
        "rsa-3072" => Ok(KeyAlgorithm::Rsa { bits: 3072 }),
        "rsa-4096" => Ok(KeyAlgorithm::Rsa { bits: 4096 }),
        other => Err(anyhow!(
            "--root-key-type: {other:?} is not one of ecdsa-p256, rsa-2048, rsa-3072, rsa-4096"
        )),
    }
}

fn default_identity() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "trellis".into());
    format!("{host}-{}", std::process::id())
}

fn config(args: &OperatorArgs) -> Result<OperatorConfig> {
    let trust_domain =
        TrustDomain::new(&args.trust_domain).map_err(|e| anyhow!("--trust-domain: {e}"))?;
    if !(args.renewal_ratio > 0.0 && args.renewal_ratio < 1.0) {
        return Err(anyhow!(
            "--renewal-ratio: {} must be between 0 and 1 (exclusive)",
            args.renewal_ratio
        ));
    }
    if !(0.0..1.0).contains(&args.renewal_jitter) {
        return Err(anyhow!(
            "--renewal-jitter: {} must be at least 0 and below 1",
            args.renewal_jitter
        ));
    }
    let policy = RenewalPolicy {
        ratio: args.renewal_ratio,
        jitter_ratio: args.renewal_jitter,
    };
    if !policy.renews_after_issuance(args.workload_cert_ttl) {
        return Err(anyhow!(
            "--workload-cert-ttl {:?} with --renewal-ratio {}: certificates would be due for renewal as soon as issued \
             (their notBefore is set {}s back); use a longer TTL or a higher ratio",
            args.workload_cert_ttl,
            args.renewal_ratio,
            trellis_ca::CLOCK_SKEW_BACKDATE.as_secs()
        ));
    }
    if args.rotation_rate.is_nan() || args.rotation_rate <= 0.0 {
        return Err(anyhow!("--rotation-rate: must be greater than 0"));
    }
    if args.renew_deadline >= args.lease_duration || args.retry_period >= args.renew_deadline {
        return Err(anyhow!(
            "--lease-duration ({:?}) must exceed --renew-deadline ({:?}), which must exceed --retry-period ({:?})",
            args.lease_duration,
            args.renew_deadline,
            args.retry_period
        ));
    }
    let mut lease = LeaseConfig::new(
        &args.lease_name,
        args.identity.clone().unwrap_or_else(default_identity),
    );
    lease.lease_duration = args.lease_duration;
    lease.renew_deadline = args.renew_deadline;
    lease.retry_period = args.retry_period;
    let mut config = OperatorConfig::new(&args.namespace, lease);
    config.trust_domain = trust_domain;
    config.workload_ttl = args.workload_cert_ttl;
    config.renewal = policy;
    config.root_key = key_type(&args.root_key_type)?;
    config.root_ttl = args.root_cert_ttl;
    config.rotation_rate = args.rotation_rate;
    config.rotation_grace = args.rotation_grace;
    config.metrics_addr = args.metrics_addr;
    config.xds_addr = args.xds_addr;
    config.max_backoff = args.max_backoff;
    config.shutdown_delay = args.shutdown_delay;
    let advertise = args.xds_advertise_addr.clone().unwrap_or_else(|| {
        format!(
            "{}.{}.svc:15012",
            trellis_status::runtime::XDS_SERVICE,
            args.namespace
        )
    });
    config.sidecar_bootstrap = sidecar_bootstrap(&args.namespace, &advertise)?;
    Ok(config)
}

/// Admin port of injected sidecars (trellis_translate::interception::ADMIN_PORT).
const SIDECAR_ADMIN_PORT: u16 = 15000;

/// The files of ConfigMap `trellis-sidecar-bootstrap` (file name → content): an ADS
/// bootstrap over mTLS to `xds_advertise` (checking the xDS server's DNS name
/// `trellis-xds.<namespace>.svc`), admin on 127.0.0.1:15000, and the file-based SDS
/// definitions that read the workload certificate, key and trust bundle from the
/// mounted identity Secret. The node id and cluster come from the flags the injector
/// gives Envoy (`--service-node`, `--service-cluster`), so one bootstrap serves every pod.
fn sidecar_bootstrap(
    namespace: &str,
    xds_advertise: &str,
) -> Result<std::collections::BTreeMap<String, String>> {
    use std::path::Path;
    use trellis_local::bootstrap::{
        SdsFiles, ServerSan, XdsTarget, ads_bootstrap, root_ca_sds, workload_cert_sds,
    };
    use trellis_status::runtime::{CERTS_DIR, SDS_ROOT_CA_FILE, SDS_WORKLOAD_CERT_FILE};
    let bad = |why: &str| anyhow!("--xds-advertise-addr {xds_advertise:?}: {why}");
    let target = match xds_advertise.parse::<SocketAddr>() {
        Ok(addr) => XdsTarget::Addr(addr),
        Err(_) => {
            let (host, port) = xds_advertise
                .rsplit_once(':')
                .ok_or_else(|| bad("expected host:port"))?;
            let port: u16 = port
                .parse()
                .map_err(|_| bad("port is not a number 1-65535"))?;
            if host.is_empty() || port == 0 || host.contains([':', '/', ' ']) {
                return Err(bad("expected host:port"));
            }
            XdsTarget::Dns {
                host: host.to_string(),
                port,
            }
        }
    };
    let server_name = trellis_status::runtime::xds_server_names(namespace)
        .into_iter()
        .next()
        .ok_or_else(|| anyhow!("no xDS server name"))?;
    let sds = SdsFiles {
        workload_cert: SDS_WORKLOAD_CERT_FILE.into(),
        root_ca: SDS_ROOT_CA_FILE.into(),
    };
    let bootstrap = ads_bootstrap(
        "sidecar~0.0.0.0~unset.unset~unset.svc.cluster.local",
        "unset",
        &Default::default(),
        // Envoy's admin port in the interception shape (what the translated 15090 listener proxies to).
        SocketAddr::from(([127, 0, 0, 1], SIDECAR_ADMIN_PORT)),
        &target,
        &ServerSan::Dns(server_name),
        &sds,
    );
    let certs = Path::new(CERTS_DIR);
    let mut files = std::collections::BTreeMap::new();
    for (path, value) in [
        (
            format!(
                "{}/{}",
                trellis_inject::BOOTSTRAP_DIR,
                trellis_inject::BOOTSTRAP_FILE
            ),
            bootstrap,
        ),
        (SDS_WORKLOAD_CERT_FILE.to_string(), workload_cert_sds(certs)),
        (SDS_ROOT_CA_FILE.to_string(), root_ca_sds(certs)),
    ] {
        // Every file lives where the injector mounts the ConfigMap.
        let name = Path::new(&path)
            .strip_prefix(trellis_inject::BOOTSTRAP_DIR)
            .map_err(|_| anyhow!("{path} is not under {}", trellis_inject::BOOTSTRAP_DIR))?
            .to_string_lossy()
            .into_owned();
        files.insert(name, serde_json::to_string_pretty(&value)?);
    }
    Ok(files)
}

async fn client(args: &OperatorArgs) -> Result<kube::Client> {
    let options = kube::config::KubeConfigOptions {
        context: args.context.clone(),
        ..Default::default()
    };
    let config = match &args.kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)
                .with_context(|| format!("--kubeconfig {}", path.display()))?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &options)
                .await
                .with_context(|| format!("--kubeconfig {}", path.display()))?
        }
        None => kube::Config::infer()
            .await
            .context("no --kubeconfig, and neither KUBECONFIG/~/.kube/config nor the in-cluster service account works")?,
    };
    kube::Client::try_from(config).context("building the Kubernetes client")
}

async fn terminated() {
    use tokio::signal::unix::{SignalKind, signal};
    let mut term = match signal(SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM; stopping only on Ctrl-C");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = term.recv() => tracing::info!("SIGTERM received"),
        _ = tokio::signal::ctrl_c() => tracing::info!("SIGINT received"),
    }
}

async fn run_async(args: OperatorArgs) -> Result<()> {
    let config = config(&args)?;
    let client = client(&args).await?;
    // Sources -> model -> xDS server for the cluster's sidecars, and the status writers.
    let mut extra = trellis_status::runtime::extra_tasks();
    // The admission webhooks, served by every replica with a certificate from the mesh CA.
    extra.push(super::operator_webhook::task(
        args.webhook_addr,
        args.init_image.clone(),
    ));
    trellis_controller::run(config, client, terminated(), extra, |running| {
        tracing::info!(metrics = %running.metrics_addr, "telemetry listening");
    })
    .await?;
    Ok(())
}

pub fn run(args: OperatorArgs) -> ExitCode {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    if args.log_format == "json" {
        builder.json().init();
    } else {
        builder.init();
    }
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: starting the runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run_async(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e:#}");
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sidecar_bootstrap_files_match_the_injected_mounts_and_target() {
        assert_eq!(
            SIDECAR_ADMIN_PORT,
            trellis_translate::interception::ADMIN_PORT
        );
        let files =
            sidecar_bootstrap("trellis-system", "trellis-xds.trellis-system.svc:15012").unwrap();
        let names: Vec<&str> = files.keys().map(String::as_str).collect();
        assert_eq!(
            names,
            ["envoy.json", "sds-root-ca.json", "sds-workload-cert.json"]
        );
        let b: serde_json::Value = serde_json::from_str(&files["envoy.json"]).unwrap();
        let xds = &b["static_resources"]["clusters"][0];
        assert_eq!(xds["type"], "STRICT_DNS");
        let addr = &xds["load_assignment"]["endpoints"][0]["lb_endpoints"][0]["endpoint"]["address"]
            ["socket_address"];
        assert_eq!(addr["address"], "trellis-xds.trellis-system.svc");
        assert_eq!(addr["port_value"], 15012);
        assert_eq!(b["admin"]["address"]["socket_address"]["port_value"], 15000);
        assert!(files["envoy.json"].contains("/etc/trellis/bootstrap/sds-workload-cert.json"));
        assert!(files["sds-workload-cert.json"].contains("/etc/certs/key.pem"));
        assert!(files["sds-root-ca.json"].contains("/etc/certs/root-cert.pem"));

        let local = sidecar_bootstrap("mesh", "127.0.0.1:9").unwrap();
        let b: serde_json::Value = serde_json::from_str(&local["envoy.json"]).unwrap();
        assert_eq!(b["static_resources"]["clusters"][0]["type"], "STATIC");
        assert!(local["envoy.json"].contains("trellis-xds.mesh.svc"));
        for bad in ["nohost", "host:", ":15012", "host:99999", "a b:1"] {
            let err = sidecar_bootstrap("mesh", bad).unwrap_err().to_string();
            assert!(err.contains("--xds-advertise-addr"), "{bad}: {err}");
        }
    }
}
