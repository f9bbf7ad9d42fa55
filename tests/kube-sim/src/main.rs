//! `kube-sim`: run the Kubernetes API simulator by hand.
#![forbid(unsafe_code)]

use anyhow::Context;
use clap::Parser;
use kube_sim::{Options, TestServer};
use std::path::PathBuf;

#[derive(Parser)]
#[command(about = "A Kubernetes API server test double on 127.0.0.1")]
struct Args {
    /// Port to listen on (0 picks a free one).
    #[arg(long, default_value_t = 6443)]
    port: u16,
    /// Where to write the kubeconfig for kubectl.
    #[arg(long, default_value = "kube-sim.kubeconfig")]
    kubeconfig: PathBuf,
    /// Serve plain HTTP instead of HTTPS with client certificates.
    #[arg(long)]
    insecure_http: bool,
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let server = TestServer::start_with(Options {
        port: args.port,
        tls: !args.insecure_http,
        kubeconfig_path: Some(args.kubeconfig.clone()),
        ..Options::default()
    })
    .context("starting kube-sim")?;
    println!(
        "kube-sim serving {} ; export KUBECONFIG={}",
        server.url(),
        args.kubeconfig.display()
    );
    server.wait();
    Ok(())
}
