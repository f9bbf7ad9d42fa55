//! Shared harness for end-to-end tests against the real Envoy binary.
//!
//! - [`envoy`]: locate Envoy (`ENVOY_BIN`), validate bootstraps offline, and run
//!   an Envoy process under a guard that kills it by PID on drop.
//! - [`upstream`]: tiny HTTP/1.1 upstream servers bound on 127.0.0.x (echo,
//!   flaky, slow, fixed documents) that report which server answered and what it
//!   received, and log arrivals and answers in order.
//! - [`client`]: a minimal blocking HTTP/1.1 client for plaintext requests.
//! - [`free_port`]: pick an unused TCP port on 127.0.0.1.
//! - [`run_ok`]: run a program that must succeed, for its output.
//! - [`mesh`]: CA-issued identities as file SDS, and static-bootstrap scaffolding.
//! - [`openssl`]: the openssl binary, an HTTPS file server with an untrusted certificate,
//!   and a TLS client exchange ([`tls_exchange`]).
//! - [`golden`]: golden files of generated Envoy config (`UPDATE_GOLDEN=1` rewrites).
//! - [`jwt`]: ES256 tokens and JWKS for RequestAuthentication tests.
//! - [`static_bootstrap`]: a translator result as a static bootstrap (RDS/EDS inlined, ADS secrets as files).
//! - [`proxy_bootstrap`]: the translator's output for one proxy as a static bootstrap.
//! - [`proxy_protocol`]: a backend that reads the PROXY protocol header a proxy sends.
//! - [`tunnel_proxy`]: an HTTP/1.1 tunnelling proxy (CONNECT and POST) that records the tunnels asked for.
//! - [`sidecar_mesh`]: small meshes translated by the real translator, run in real Envoy.
//!
//! Everything listens on 127.0.0.0/8 only; every process a test starts is
//! stopped by its guard, also when the test panics.
#![forbid(unsafe_code)]

pub mod accept_loop;
pub mod client;
pub mod envoy;
pub mod golden;
pub mod jwt;
pub mod mesh;
pub mod openssl;
pub mod proxy_bootstrap;
pub mod proxy_protocol;
pub mod sidecar_mesh;
pub mod static_bootstrap;
pub mod tunnel_proxy;
pub mod upstream;

pub use client::{HttpRequest, HttpResponse, connect_and_get, json_exchange, open_tunnel};
pub use envoy::{Envoy, envoy_bin, validate_bootstrap, validate_bootstrap_in};
pub use openssl::{
    HttpsFileServer, TlsClient, openssl, openssl_bin, self_signed, self_signed_ca, signed_by,
    tls_exchange,
};
pub use upstream::{Behavior, Upstream, UpstreamEvent};

use std::net::{Ipv4Addr, TcpListener};

/// Runs `cmd` and returns its stdout; a non-zero exit fails the test with
/// both of its outputs.
pub fn run_ok(cmd: &mut std::process::Command) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("running {cmd:?}: {e}"));
    assert!(
        out.status.success(),
        "{cmd:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// Errors of the harness that a test may want to inspect instead of panicking on.
#[derive(Debug, thiserror::Error)]
pub enum HarnessError {
    #[error("io error talking to {target}: {source}")]
    Io {
        target: String,
        #[source]
        source: std::io::Error,
    },
    #[error("malformed HTTP response from {target}: {reason}")]
    MalformedResponse { target: String, reason: String },
}

/// A TCP port that was free on 127.0.0.1 a moment ago (bind to port 0, read it, release it).
pub fn free_port() -> u16 {
    free_port_on(Ipv4Addr::LOCALHOST)
}

/// `n` distinct ports free on `ip` (all bound at once, then released), so ports
/// picked for one bootstrap never collide with each other.
pub fn free_ports_on(ip: Ipv4Addr, n: usize) -> Vec<u16> {
    let listeners: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind((ip, 0)).expect("bind port 0 on loopback"))
        .collect();
    listeners
        .iter()
        .map(|l| l.local_addr().expect("local addr of probe listener").port())
        .collect()
}

/// Like [`free_port`], on a given loopback address (e.g. 127.0.0.11).
pub fn free_port_on(ip: Ipv4Addr) -> u16 {
    let listener = TcpListener::bind((ip, 0)).expect("bind port 0 on loopback");
    listener
        .local_addr()
        .expect("local addr of probe listener")
        .port()
}

/// Whether process `pid` runs: it has a /proc entry and is not a zombie
/// (whose state letter is Z).
pub fn process_running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}
