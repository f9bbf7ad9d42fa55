//! Calls one downstream, through the sidecar's outbound HTTP proxy when set.
use super::config::Downstream;
use crate::error::{LocalError, Result};
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper::header::HOST;
use hyper_util::rt::TokioIo;
use serde_json::Value;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::net::TcpStream;

const CALL_TIMEOUT: Duration = Duration::from_secs(15);

/// The status and body (JSON when it parses, text otherwise) of one call.
pub async fn call(
    target: &Downstream,
    proxy: Option<SocketAddr>,
    request_id: Option<&str>,
) -> Result<(u16, Value)> {
    tokio::time::timeout(CALL_TIMEOUT, call_inner(target, proxy, request_id))
        .await
        .map_err(|_| fail(target, format!("no answer within {CALL_TIMEOUT:?}")))?
}

fn fail(target: &Downstream, message: impl Into<String>) -> LocalError {
    LocalError::DemoCall {
        target: target.url(),
        message: message.into(),
    }
}

async fn call_inner(
    target: &Downstream,
    proxy: Option<SocketAddr>,
    request_id: Option<&str>,
) -> Result<(u16, Value)> {
    let stream = match proxy {
        Some(addr) => TcpStream::connect(addr).await,
        None => TcpStream::connect((target.host.as_str(), target.port)).await,
    }
    .map_err(|e| fail(target, format!("connect: {e}")))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| fail(target, format!("handshake: {e}")))?;
    tokio::spawn(conn);
    // Through a proxy the request line carries the absolute URL (RFC 9112 §3.2.2).
    let uri = match proxy {
        Some(_) => target.url(),
        None => target.path.clone(),
    };
    let mut builder = Request::get(uri).header(HOST, &target.authority);
    if let Some(id) = request_id {
        builder = builder.header("x-request-id", id);
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| fail(target, format!("building request: {e}")))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| fail(target, format!("request: {e}")))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| fail(target, format!("reading body: {e}")))?
        .to_bytes();
    let value = serde_json::from_slice(&body)
        .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&body).into_owned()));
    Ok((status, value))
}
