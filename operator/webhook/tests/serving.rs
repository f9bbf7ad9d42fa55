//! The webhook served as the operator serves it (`serve_on_own_runtime`):
//! it answers over TLS with the serving certificate, and dropping the handle
//! stops it.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::OPERATOR_NS as NS;

/// `GET /healthz` over a new TLS connection: the response's status line.
async fn health(addr: SocketAddr, roots: rustls::RootCertStore) -> std::io::Result<String> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(format!("trellis-webhook.{NS}.svc")).unwrap();
    let mut conn = tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: webhook\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    Ok(response.lines().next().unwrap_or_default().to_string())
}

#[test]
fn serves_on_its_own_runtime_until_the_handle_is_dropped() {
    let (serving, addr, cert) = common::start_webhook();
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(cert.ca_bundle_pem.as_bytes()) {
        roots.add(root.unwrap()).unwrap();
    }
    // The caller's own runtime: the webhook needs none of it.
    let client = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let status = client.block_on(health(addr, roots.clone())).unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");

    drop(serving);
    // The runtime shuts down in the background: the port closes soon after.
    let started = Instant::now();
    loop {
        match client.block_on(health(addr, roots.clone())) {
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => break,
            other => assert!(
                started.elapsed() < Duration::from_secs(10),
                "still served 10 s after the handle was dropped: {other:?}"
            ),
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
