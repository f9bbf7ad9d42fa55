//! The demo's HTTP client: plain HTTP/1.1 GETs to the gateway and to Envoy
//! admin ports, and plaintext probes of sidecars' mesh-facing ports.
use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper::Request;
use hyper_util::rt::TokioIo;
use std::net::SocketAddr;
use std::time::Duration;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// GET `path` from `addr` with `Host: host` and extra headers; the status and body.
pub async fn get(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
    timeout: Duration,
) -> Result<(u16, Bytes), String> {
    tokio::time::timeout(timeout, get_inner(addr, host, path, headers))
        .await
        .map_err(|_| format!("no answer within {timeout:?}"))?
}

async fn get_inner(
    addr: SocketAddr,
    host: &str,
    path: &str,
    headers: &[(&str, String)],
) -> Result<(u16, Bytes), String> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(|e| format!("connect {addr}: {e}"))?;
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .map_err(|e| format!("handshake: {e}"))?;
    tokio::spawn(conn);
    let mut builder = Request::get(path).header(hyper::header::HOST, host);
    for (name, value) in headers {
        builder = builder.header(*name, value);
    }
    let request = builder
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("building request: {e}"))?;
    let response = sender
        .send_request(request)
        .await
        .map_err(|e| format!("request: {e}"))?;
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading body: {e}"))?
        .to_bytes();
    Ok((status, body))
}

/// Sends a plaintext HTTP request to `addr`; `Ok(detail)` when no HTTP answer
/// came back (the port wants TLS), `Err(detail)` when it answered in plaintext.
pub async fn plaintext_refused(addr: SocketAddr, timeout: Duration) -> Result<String, String> {
    let attempt = async {
        let mut stream = match TcpStream::connect(addr).await {
            Ok(s) => s,
            Err(e) => return Err(format!("connect {addr}: {e} (is the sidecar listening?)")),
        };
        let request = format!("GET / HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n");
        if let Err(e) = stream.write_all(request.as_bytes()).await {
            return Ok(format!("closed while sending: {e}"));
        }
        let mut buf = Vec::new();
        match stream.read_to_end(&mut buf).await {
            Ok(_) if buf.starts_with(b"HTTP/") => Err(format!(
                "answered in plaintext: {}",
                String::from_utf8_lossy(&buf[..buf.len().min(40)])
                    .lines()
                    .next()
                    .unwrap_or("")
            )),
            Ok(_) => Ok(format!("closed after {} non-HTTP bytes", buf.len())),
            Err(e) => Ok(format!("reset: {e}")),
        }
    };
    match tokio::time::timeout(timeout, attempt).await {
        Ok(r) => r,
        Err(_) => Ok(format!("no answer within {timeout:?}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    async fn server(answer: &'static [u8]) -> SocketAddr {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut s, _)) = listener.accept().await {
                let mut buf = [0u8; 512];
                let _ = s.read(&mut buf).await;
                let _ = s.write_all(answer).await;
            }
        });
        addr
    }

    #[tokio::test]
    async fn a_plaintext_answer_is_not_a_refusal() {
        let addr = server(b"HTTP/1.1 200 OK\r\ncontent-length: 0\r\n\r\n").await;
        let e = plaintext_refused(addr, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("plaintext"), "{e}");
    }

    #[tokio::test]
    async fn a_tls_alert_or_close_is_a_refusal_and_nothing_listening_is_not() {
        // A TLS server answers plaintext with an alert record and closes.
        let addr = server(&[0x15, 0x03, 0x01, 0x00, 0x02, 0x02, 0x46]).await;
        let ok = plaintext_refused(addr, Duration::from_secs(5))
            .await
            .unwrap();
        assert!(ok.contains("non-HTTP"), "{ok}");
        let closed = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let gone = closed.local_addr().unwrap();
        drop(closed);
        let e = plaintext_refused(gone, Duration::from_secs(5))
            .await
            .unwrap_err();
        assert!(e.contains("connect"), "{e}");
    }

    #[tokio::test]
    async fn get_returns_status_and_body() {
        let addr = server(b"HTTP/1.1 403 Forbidden\r\ncontent-length: 2\r\n\r\nno").await;
        let (status, body) = get(addr, "h", "/", &[("x", "y".into())], Duration::from_secs(5))
            .await
            .unwrap();
        assert_eq!((status, &body[..]), (403, &b"no"[..]));
    }
}
