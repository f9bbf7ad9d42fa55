//! mTLS for the xDS port: the server certificate and the mesh trust bundle (PEM), swapped
//! atomically when rotated, and the peer's SPIFFE id handed to the gRPC service.
use std::io;
use std::pin::Pin;
use std::sync::{Arc, RwLock};
use std::task::{Context, Poll};
use std::time::Duration;

use rustls::RootCertStore;
use rustls::server::{ServerConfig, WebPkiClientVerifier};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::{TcpListener, TcpStream};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::server::TlsStream;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::server::Connected;

use crate::metrics::Metrics;
use crate::{SpiffeId, XdsError};

const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The TLS configuration new connections use. [`TlsSettings::reload`] replaces it; open
/// connections keep the one they were accepted with.
pub struct TlsSettings {
    current: RwLock<Arc<ServerConfig>>,
}

impl TlsSettings {
    /// `cert_chain_pem`: the server certificate (leaf first); `key_pem`: its private key;
    /// `trust_bundle_pem`: the mesh CA roots that client certificates must chain to.
    pub fn from_pem(
        cert_chain_pem: &str,
        key_pem: &str,
        trust_bundle_pem: &str,
    ) -> Result<Arc<TlsSettings>, XdsError> {
        let config = server_config(cert_chain_pem, key_pem, trust_bundle_pem)?;
        Ok(Arc::new(TlsSettings {
            current: RwLock::new(config),
        }))
    }

    /// Swaps in a rotated certificate or trust bundle; on error the previous one stays.
    pub fn reload(
        &self,
        cert_chain_pem: &str,
        key_pem: &str,
        trust_bundle_pem: &str,
    ) -> Result<(), XdsError> {
        let config = server_config(cert_chain_pem, key_pem, trust_bundle_pem)?;
        *self.current.write().unwrap_or_else(|e| e.into_inner()) = config;
        Ok(())
    }

    fn acceptor(&self) -> TlsAcceptor {
        TlsAcceptor::from(
            self.current
                .read()
                .unwrap_or_else(|e| e.into_inner())
                .clone(),
        )
    }
}

fn tls_err(field: &str, reason: impl ToString) -> XdsError {
    XdsError::Tls {
        field: field.to_string(),
        reason: reason.to_string(),
    }
}

fn certs(field: &str, pem: &str) -> Result<Vec<CertificateDer<'static>>, XdsError> {
    let certs = CertificateDer::pem_slice_iter(pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| tls_err(field, format!("invalid PEM: {e}")))?;
    if certs.is_empty() {
        return Err(tls_err(field, "no CERTIFICATE block"));
    }
    Ok(certs)
}

fn server_config(
    cert_chain_pem: &str,
    key_pem: &str,
    trust_bundle_pem: &str,
) -> Result<Arc<ServerConfig>, XdsError> {
    let chain = certs("cert_chain", cert_chain_pem)?;
    // The key's parse error is not echoed: it could quote key material.
    let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes())
        .map_err(|_| tls_err("private_key", "not a PEM private key"))?;
    let mut roots = RootCertStore::empty();
    for cert in certs("trust_bundle", trust_bundle_pem)? {
        roots
            .add(cert)
            .map_err(|e| tls_err("trust_bundle", format!("unusable root: {e}")))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider.clone())
        .build()
        .map_err(|e| tls_err("trust_bundle", e))?;
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| tls_err("protocol_versions", e))?
        .with_client_cert_verifier(verifier)
        .with_single_cert(chain, key)
        .map_err(|e| tls_err("cert_chain", e))?;
    config.alpn_protocols = vec![b"h2".to_vec()];
    Ok(Arc::new(config))
}

/// What the handshake proved about the peer: its SPIFFE id, or why it has none usable.
#[derive(Clone, Debug)]
pub struct PeerIdentity {
    pub spiffe: Result<SpiffeId, String>,
}

/// The SPIFFE id in the leaf certificate's URI SANs (exactly one is required).
pub fn spiffe_id_of(leaf: &CertificateDer<'_>) -> Result<SpiffeId, String> {
    let (_, cert) = x509_parser::parse_x509_certificate(leaf.as_ref())
        .map_err(|e| format!("client certificate does not parse: {e}"))?;
    let san = cert
        .subject_alternative_name()
        .map_err(|e| format!("client certificate SAN extension: {e}"))?
        .ok_or("client certificate has no subjectAltName")?;
    let uris: Vec<&str> = san
        .value
        .general_names
        .iter()
        .filter_map(|n| match n {
            x509_parser::extensions::GeneralName::URI(u) if u.starts_with("spiffe://") => Some(*u),
            _ => None,
        })
        .collect();
    match uris.as_slice() {
        [one] => SpiffeId::parse(one).map_err(|e| e.to_string()),
        [] => Err("client certificate has no spiffe:// URI SAN".to_string()),
        _ => Err("client certificate has more than one spiffe:// URI SAN".to_string()),
    }
}

/// An accepted, handshaken connection carrying the peer identity into tonic's
/// request extensions (`request.extensions().get::<PeerIdentity>()`).
pub struct AuthenticatedStream {
    inner: TlsStream<TcpStream>,
    peer: PeerIdentity,
}

impl Connected for AuthenticatedStream {
    type ConnectInfo = PeerIdentity;
    fn connect_info(&self) -> PeerIdentity {
        self.peer.clone()
    }
}

impl AsyncRead for AuthenticatedStream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for AuthenticatedStream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
    }
    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }
}

/// Accepts TCP connections and completes TLS handshakes off the accept loop; failed
/// handshakes (no or untrusted client certificate) are counted as refused.
pub(crate) fn incoming(
    listener: TcpListener,
    tls: Arc<TlsSettings>,
    metrics: Arc<Metrics>,
) -> ReceiverStream<Result<AuthenticatedStream, io::Error>> {
    let (tx, rx) = tokio::sync::mpsc::channel(128);
    tokio::spawn(async move {
        loop {
            let tcp = match listener.accept().await {
                Ok((tcp, _)) => tcp,
                Err(e) => {
                    tracing::warn!(error = %e, "xDS accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            };
            if tx.is_closed() {
                return;
            }
            let _ = tcp.set_nodelay(true);
            let acceptor = tls.acceptor();
            let tx = tx.clone();
            let metrics = metrics.clone();
            tokio::spawn(async move {
                match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                    Ok(Ok(stream)) => {
                        let spiffe = match stream.get_ref().1.peer_certificates() {
                            Some([leaf, ..]) => spiffe_id_of(leaf),
                            _ => Err("no client certificate".to_string()),
                        };
                        let conn = AuthenticatedStream {
                            inner: stream,
                            peer: PeerIdentity { spiffe },
                        };
                        let _ = tx.send(Ok(conn)).await;
                    }
                    Ok(Err(e)) => {
                        Metrics::inc(&metrics.refused_total);
                        tracing::debug!(error = %e, "xDS TLS handshake failed");
                    }
                    Err(_) => {
                        Metrics::inc(&metrics.refused_total);
                        tracing::debug!("xDS TLS handshake timed out");
                    }
                }
            });
        }
    });
    ReceiverStream::new(rx)
}
