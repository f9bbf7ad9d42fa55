//! One AdmissionReview call over HTTPS, the server verified against the webhook's caBundle.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper_util::rt::TokioIo;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName};
use serde_json::Value;

use super::ServiceResolver;

/// Where a webhook is reached: the TCP address, the TLS server name and the request URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub address: SocketAddr,
    pub server_name: String,
    pub path: String,
    pub url: String,
}

/// Resolves `clientConfig.url` or `clientConfig.service` (through `resolver`).
pub fn endpoint(client_config: &Value, resolver: &ServiceResolver) -> Result<Endpoint, String> {
    if let Some(url) = client_config.get("url").and_then(Value::as_str) {
        let rest = url
            .strip_prefix("https://")
            .ok_or_else(|| format!("webhook URL {url:?} must use the https scheme"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], rest[i..].to_string()),
            None => (rest, "/".to_string()),
        };
        let (host, port) = split_host_port(authority)
            .ok_or_else(|| format!("webhook URL {url:?} has an invalid host"))?;
        let address = match host.parse::<std::net::IpAddr>() {
            Ok(ip) => SocketAddr::new(ip, port),
            Err(_) if host == "localhost" => SocketAddr::from(([127, 0, 0, 1], port)),
            Err(_) => {
                return Err(format!(
                    "webhook URL host {host:?} cannot be resolved (no cluster DNS)"
                ));
            }
        };
        return Ok(Endpoint {
            address,
            server_name: host.to_string(),
            path,
            url: url.to_string(),
        });
    }
    let service = client_config
        .get("service")
        .ok_or("clientConfig needs a url or a service")?;
    let text = |k: &str| service.get(k).and_then(Value::as_str).unwrap_or_default();
    let (namespace, name) = (text("namespace"), text("name"));
    let port = service
        .get("port")
        .and_then(Value::as_u64)
        .and_then(|p| u16::try_from(p).ok())
        .unwrap_or(443);
    let path = match text("path") {
        "" => "/".to_string(),
        p => p.to_string(),
    };
    let address = resolver(namespace, name, port)
        .ok_or_else(|| format!("service \"{namespace}/{name}\" port {port} has no address"))?;
    let server_name = format!("{name}.{namespace}.svc");
    Ok(Endpoint {
        address,
        url: format!("https://{server_name}:{port}{path}"),
        server_name,
        path,
    })
}

fn split_host_port(authority: &str) -> Option<(&str, u16)> {
    if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']')?;
        let port = match after.strip_prefix(':') {
            Some(p) => p.parse().ok()?,
            None if after.is_empty() => 443,
            None => return None,
        };
        return Some((host, port));
    }
    match authority.rsplit_once(':') {
        Some((host, port)) => Some((host, port.parse().ok()?)),
        None => Some((authority, 443)),
    }
}

fn tls_config(ca_bundle: Option<&str>) -> Result<rustls::ClientConfig, String> {
    let mut roots = rustls::RootCertStore::empty();
    let pem = match ca_bundle {
        Some(b64) => base64::engine::general_purpose::STANDARD
            .decode(b64.trim())
            .map_err(|e| format!("clientConfig.caBundle is not base64: {e}"))?,
        None => Vec::new(),
    };
    for cert in CertificateDer::pem_slice_iter(&pem) {
        let cert = cert.map_err(|e| format!("clientConfig.caBundle is not PEM: {e}"))?;
        roots
            .add(cert)
            .map_err(|e| format!("clientConfig.caBundle has an unusable certificate: {e}"))?;
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    Ok(rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| e.to_string())?
        .with_root_certificates(roots)
        .with_no_client_auth())
}

/// POSTs `review` and returns the decoded response body; errors are worded for the caller's
/// `failed to call webhook: ...` message.
pub async fn call(
    endpoint: &Endpoint,
    ca_bundle: Option<&str>,
    review: &Value,
    timeout: Duration,
) -> Result<Value, String> {
    let post = format!("Post \"{}\"", endpoint.url);
    match tokio::time::timeout(timeout, exchange(endpoint, ca_bundle, review)).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(e)) => Err(format!("{post}: {e}")),
        Err(_) => Err(format!("{post}: context deadline exceeded")),
    }
}

async fn exchange(
    endpoint: &Endpoint,
    ca_bundle: Option<&str>,
    review: &Value,
) -> Result<Value, String> {
    let config = tls_config(ca_bundle)?;
    let server_name = ServerName::try_from(endpoint.server_name.clone())
        .map_err(|e| format!("invalid server name {:?}: {e}", endpoint.server_name))?;
    let tcp = tokio::net::TcpStream::connect(endpoint.address)
        .await
        .map_err(|e| format!("dial tcp {}: {e}", endpoint.address))?;
    let tls = tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| format!("tls: {e}"))?;
    let (mut sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(|e| e.to_string())?;
    let driver = tokio::spawn(connection);
    let body = serde_json::to_vec(review).map_err(|e| e.to_string())?;
    let request = http::Request::post(endpoint.path.as_str())
        .header(http::header::HOST, endpoint.server_name.as_str())
        .header(http::header::CONTENT_TYPE, "application/json")
        .header(http::header::ACCEPT, "application/json")
        .body(Full::new(Bytes::from(body)))
        .map_err(|e| e.to_string())?;
    let result = async {
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| e.to_string())?;
        let status = response.status();
        let bytes = response
            .into_body()
            .collect()
            .await
            .map_err(|e| e.to_string())?
            .to_bytes();
        if !status.is_success() {
            return Err(format!(
                "expected webhook response of 200, got {}",
                status.as_u16()
            ));
        }
        serde_json::from_slice(&bytes).map_err(|e| format!("invalid AdmissionReview response: {e}"))
    }
    .await;
    driver.abort();
    result
}
