//! `trellis demo-app`: the HTTP service the bundled example runs per workload.
use clap::Args;
use std::net::SocketAddr;
use std::process::ExitCode;
use std::time::Duration;
use trellis_local::demo_app::{self, DemoAppConfig, Downstream};

#[derive(Debug, Args)]
pub struct DemoAppArgs {
    /// Service name the app answers with.
    #[arg(long)]
    name: String,
    /// Version the app answers with (e.g. v1).
    #[arg(long, default_value = "v1")]
    version: String,
    /// Address to listen on (the workload's address and its app port).
    #[arg(long, default_value = "127.0.0.1:18080")]
    listen: SocketAddr,
    /// A downstream called on every request, e.g. http://cart:8080/cart (repeatable).
    #[arg(long = "call")]
    calls: Vec<String>,
    /// Fraction (0..=1) of requests answered with --failure-status.
    #[arg(long, default_value_t = 0.0)]
    failure_rate: f64,
    #[arg(long, default_value_t = 503)]
    failure_status: u16,
    /// Delay added to every answer, in milliseconds.
    #[arg(long, default_value_t = 0)]
    latency_ms: u64,
    /// Seed of the failure decisions: the same seed fails the same requests.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// The sidecar's outbound HTTP proxy (defaults to $HTTP_PROXY); downstreams
    /// are called directly when neither is set.
    #[arg(long, env = "HTTP_PROXY")]
    http_proxy: Option<String>,
}

pub fn run(args: DemoAppArgs) -> ExitCode {
    match config(args).and_then(|c| demo_app::run_blocking(c).map_err(Into::into)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("trellis demo-app: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn config(args: DemoAppArgs) -> anyhow::Result<DemoAppConfig> {
    let downstreams = args
        .calls
        .iter()
        .map(|c| Downstream::parse(c))
        .collect::<Result<Vec<_>, _>>()?;
    let http_proxy = args
        .http_proxy
        .as_deref()
        .filter(|p| !p.is_empty())
        .map(demo_app::parse_http_proxy)
        .transpose()?;
    Ok(DemoAppConfig {
        name: args.name,
        version: args.version,
        listen: args.listen,
        downstreams,
        failure_rate: args.failure_rate,
        failure_status: args.failure_status,
        latency: Duration::from_millis(args.latency_ms),
        seed: args.seed,
        http_proxy,
    })
}
