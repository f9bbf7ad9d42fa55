//! The webhook served as the operator serves it (`serve_on_own_runtime`):
//! it answers over TLS with the serving certificate; shutting the handle
//! down answers the review in progress and closes every connection, and
//! dropping the handle stops it.

use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, ServerName};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

mod common;
use common::OPERATOR_NS as NS;

type TlsStream = tokio_rustls::client::TlsStream<tokio::net::TcpStream>;

/// A new TLS connection to the webhook, verified against `roots`.
async fn connect(addr: SocketAddr, roots: rustls::RootCertStore) -> std::io::Result<TlsStream> {
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    let name = ServerName::try_from(format!("trellis-webhook.{NS}.svc")).unwrap();
    tokio_rustls::TlsConnector::from(Arc::new(tls))
        .connect(name, tcp)
        .await
}

/// `GET /healthz` over a new TLS connection: the response's status line.
async fn health(addr: SocketAddr, roots: rustls::RootCertStore) -> std::io::Result<String> {
    let mut conn = connect(addr, roots).await?;
    conn.write_all(b"GET /healthz HTTP/1.1\r\nhost: webhook\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = String::new();
    conn.read_to_string(&mut response).await?;
    Ok(response.lines().next().unwrap_or_default().to_string())
}

#[test]
fn serves_on_its_own_runtime_until_the_handle_is_dropped() {
    let (serving, addr, cert) = common::start_webhook();
    let roots = roots_of(&cert);
    // The caller's own runtime: the webhook needs none of it.
    let client = client_runtime();
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

/// Reads from `conn` until `buf` holds `end`; false if the connection ends first.
async fn read_until(conn: &mut TlsStream, buf: &mut Vec<u8>, end: &[u8]) -> bool {
    while !buf.windows(end.len()).any(|w| w == end) {
        let mut chunk = [0u8; 4096];
        match conn.read(&mut chunk).await {
            Ok(0) | Err(_) => return false,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
    }
    true
}

fn client_runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap()
}

fn roots_of(cert: &trellis_webhook::ServingCert) -> rustls::RootCertStore {
    let mut roots = rustls::RootCertStore::empty();
    for root in CertificateDer::pem_slice_iter(cert.ca_bundle_pem.as_bytes()) {
        roots.add(root.unwrap()).unwrap();
    }
    roots
}

#[test]
fn shutdown_answers_the_review_in_progress_and_closes_every_connection() {
    let (serving, addr, cert) = common::start_webhook();
    let roots = roots_of(&cert);
    client_runtime().block_on(async move {
        // An idle keep-alive connection: one answered request, nothing since.
        let mut idle = connect(addr, roots.clone()).await.unwrap();
        idle.write_all(b"GET /healthz HTTP/1.1\r\nhost: webhook\r\n\r\n")
            .await
            .unwrap();
        let mut answer = Vec::new();
        assert!(
            read_until(&mut idle, &mut answer, b"ok").await,
            "no health answer"
        );

        // A review in progress: the server has read its head and asked for
        // the body (100 Continue), which the client has not sent yet.
        let body = serde_json::to_vec(&serde_json::json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "in-progress", "kind": {"group": "", "version": "v1", "kind": "Pod"},
                "operation": "CREATE", "namespace": "default",
                "object": {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": "p"}}}}))
        .unwrap();
        let mut busy = connect(addr, roots.clone()).await.unwrap();
        let head = format!(
            "POST /validate HTTP/1.1\r\nhost: webhook\r\ncontent-type: application/json\r\n\
             expect: 100-continue\r\ncontent-length: {}\r\n\r\n",
            body.len()
        );
        busy.write_all(head.as_bytes()).await.unwrap();
        let mut answer = Vec::new();
        assert!(
            read_until(&mut busy, &mut answer, b"100 Continue\r\n\r\n").await,
            "the webhook did not ask for the body: {}",
            String::from_utf8_lossy(&answer)
        );

        let shutdown = tokio::spawn(serving.shutdown(Duration::from_secs(30)));
        // New connections are refused once it stops accepting.
        let started = Instant::now();
        while tokio::net::TcpStream::connect(addr).await.is_ok() {
            assert!(
                started.elapsed() < Duration::from_secs(10),
                "still accepting connections 10 s after shutdown began"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }

        // The review in progress is answered, then its connection closes.
        busy.write_all(&body).await.unwrap();
        let mut rest = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), busy.read_to_end(&mut rest));
        assert!(
            closed.await.is_ok(),
            "the connection stayed open 10 s after its answer"
        );
        let response = String::from_utf8_lossy(&rest);
        assert!(
            response.starts_with("HTTP/1.1 200 OK"),
            "the review in progress was not answered: {response}"
        );
        assert!(
            response.contains(r#""uid":"in-progress""#) && response.contains(r#""allowed":true"#),
            "{response}"
        );

        // The idle connection was closed without a request on it.
        let mut after = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(10), idle.read_to_end(&mut after));
        assert!(closed.await.is_ok(), "the idle connection stayed open");
        assert!(after.is_empty(), "the idle connection got {after:?}");

        shutdown.await.unwrap();
    });
}
