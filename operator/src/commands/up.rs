//! `trellis up -f DIR`: universal mode. Runs the CA, the xDS server and one
//! Envoy per workload and gateway from a directory of YAML, follows edits of
//! the directory, and stops every Envoy on Ctrl-C or SIGTERM (and, through
//! PDEATHSIG, when it is killed outright).
use anyhow::{Context, Result, bail};
use clap::Args;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;
use trellis_local::backend::{BackendOptions, ModelBackend};
use trellis_local::mesh::{MeshOptions, run as run_mesh};
use trellis_local::plan::PlanOptions;

#[derive(Debug, Args)]
pub struct UpArgs {
    /// The directory of YAML to run (Services, ServiceAccounts, WorkloadEntries, mesh kinds).
    #[arg(short = 'f', long = "filename")]
    dir: PathBuf,
    /// Where certificates, bootstraps, logs, status.json and proxy dumps are kept.
    #[arg(long, default_value = ".trellis")]
    state_dir: PathBuf,
    /// The Envoy binary (default: .venv/bin/envoy-real, then `envoy` on PATH).
    #[arg(long, env = "ENVOY_BIN")]
    envoy_bin: Option<PathBuf>,
    #[arg(long, default_value = "cluster.local")]
    trust_domain: String,
    #[arg(long, default_value = "cluster.local")]
    dns_domain: String,
    /// The xDS server address; port 0 picks one on the first run and keeps it.
    #[arg(long, default_value = "127.0.0.1:0")]
    xds_listen: SocketAddr,
    /// Lifetime of workload certificates (renewed before expiry), e.g. 24h, 60s.
    #[arg(long, default_value = "24h", value_parser = parse_duration)]
    cert_ttl: Duration,
    /// The outbound HTTP proxy port every sidecar offers on its workload address.
    #[arg(long, default_value_t = 15001)]
    outbound_http_port: u16,
    /// Added to Gateway ports below 1024 when not running as root.
    #[arg(long, default_value_t = 8000)]
    gateway_port_offset: u16,
    /// Envoy's log level (trace, debug, info, warning, error, critical, off).
    #[arg(long, default_value = "warning")]
    envoy_log_level: String,
    /// How often the directory is scanned for edits, in milliseconds.
    #[arg(long, default_value_t = 100)]
    watch_interval_ms: u64,
}

fn parse_duration(s: &str) -> Result<Duration, String> {
    trellis_api::parse_duration(s).map_err(|e| e.to_string())
}

fn envoy_bin(flag: Option<PathBuf>) -> Result<PathBuf> {
    if let Some(bin) = flag {
        if !bin.exists() {
            bail!(
                "Envoy binary {} does not exist (run `make setup`)",
                bin.display()
            );
        }
        return Ok(bin);
    }
    let venv = Path::new(".venv/bin/envoy-real");
    if venv.exists() {
        return Ok(std::fs::canonicalize(venv)?);
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        let candidate = dir.join("envoy");
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!("no Envoy found: pass --envoy-bin or set ENVOY_BIN (run `make setup`)")
}

/// The effective user owns `/proc/self`.
fn running_as_root() -> bool {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata("/proc/self").is_ok_and(|m| m.uid() == 0)
}

fn absolute(p: &Path) -> Result<PathBuf> {
    Ok(if p.is_absolute() {
        p.to_path_buf()
    } else {
        std::env::current_dir()?.join(p)
    })
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGTERM");
            let _ = tokio::signal::ctrl_c().await;
            return;
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("Ctrl-C: stopping every Envoy"),
        _ = term.recv() => tracing::info!("SIGTERM: stopping every Envoy"),
    }
}

fn options(args: UpArgs) -> Result<(MeshOptions, BackendOptions)> {
    if !args.dir.is_dir() {
        bail!("-f {}: not a directory", args.dir.display());
    }
    let config_dir = absolute(&args.dir)?;
    let state_dir = absolute(&args.state_dir)?;
    let root = running_as_root();
    let plan = PlanOptions {
        outbound_http_port: args.outbound_http_port,
        gateway_port_offset: args.gateway_port_offset,
        running_as_root: root,
    };
    let backend = BackendOptions {
        state_dir: state_dir.clone(),
        trust_domain: args.trust_domain.clone(),
        dns_domain: args.dns_domain.clone(),
        outbound_http_port: args.outbound_http_port,
        privileged_port_offset: if root { 0 } else { args.gateway_port_offset },
    };
    let mesh = MeshOptions {
        config_dir,
        state_dir,
        envoy_bin: envoy_bin(args.envoy_bin)?,
        trust_domain: args.trust_domain,
        dns_domain: args.dns_domain,
        xds_listen: args.xds_listen,
        cert_ttl: args.cert_ttl,
        plan,
        envoy_log_level: args.envoy_log_level,
        watch_interval: Duration::from_millis(args.watch_interval_ms.max(10)),
    };
    Ok((mesh, backend))
}

pub fn run(args: UpArgs) -> ExitCode {
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .try_init();
    match up(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trellis up: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn up(args: UpArgs) -> Result<()> {
    let (mesh, backend) = options(args)?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    runtime.block_on(async move {
        let backend = Arc::new(ModelBackend::new(backend)?);
        tracing::info!(
            config = %mesh.config_dir.display(),
            state = %mesh.state_dir.display(),
            "trellis up: running the mesh (Ctrl-C stops it)"
        );
        run_mesh(mesh, backend, shutdown_signal()).await?;
        tracing::info!("every Envoy stopped");
        Ok(())
    })
}
