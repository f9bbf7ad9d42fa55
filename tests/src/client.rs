//! A minimal blocking HTTP/1.1 client: one request per connection (`connection: close`).
//!
//! Enough for tests: it sends any method, headers and body, and reads a response
//! framed by content-length, chunked encoding, or connection close.
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::time::Duration;

use crate::HarnessError;

/// A request under construction. Without a `host` header the target address is used.
#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub path: String,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
    pub timeout: Duration,
}

/// A parsed response; header names are lower-cased.
#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    pub headers: Vec<(String, String)>,
    pub body: Vec<u8>,
}

impl HttpRequest {
    pub fn new(method: &str, path: &str) -> Self {
        HttpRequest {
            method: method.to_string(),
            path: path.to_string(),
            headers: Vec::new(),
            body: Vec::new(),
            timeout: Duration::from_secs(15),
        }
    }

    pub fn get(path: &str) -> Self {
        Self::new("GET", path)
    }

    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_string(), value.to_string()));
        self
    }

    pub fn host(self, host: &str) -> Self {
        self.header("host", host)
    }

    pub fn body(mut self, body: impl Into<Vec<u8>>) -> Self {
        self.body = body.into();
        self
    }

    pub fn timeout(mut self, timeout: Duration) -> Self {
        self.timeout = timeout;
        self
    }

    /// Sends the request to `addr` and reads the whole response.
    pub fn send(&self, addr: SocketAddr) -> Result<HttpResponse, HarnessError> {
        let target = addr.to_string();
        let io = |source| HarnessError::Io {
            target: target.clone(),
            source,
        };
        let mut stream = TcpStream::connect_timeout(&addr, self.timeout).map_err(io)?;
        stream.set_read_timeout(Some(self.timeout)).map_err(io)?;
        stream.set_write_timeout(Some(self.timeout)).map_err(io)?;
        stream.write_all(&self.encode(addr)).map_err(io)?;
        let mut raw = Vec::new();
        read_response(&mut stream, &mut raw).map_err(io)?;
        parse_response(&raw).map_err(|reason| HarnessError::MalformedResponse {
            target: target.clone(),
            reason,
        })
    }

    fn encode(&self, addr: SocketAddr) -> Vec<u8> {
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.path);
        let has = |n: &str| self.headers.iter().any(|(k, _)| k.eq_ignore_ascii_case(n));
        if !has("host") {
            head.push_str(&format!("host: {addr}\r\n"));
        }
        for (k, v) in &self.headers {
            head.push_str(&format!("{k}: {v}\r\n"));
        }
        if !self.body.is_empty() || matches!(self.method.as_str(), "POST" | "PUT" | "PATCH") {
            head.push_str(&format!("content-length: {}\r\n", self.body.len()));
        }
        head.push_str("connection: close\r\n\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }
}

/// Reads until the peer closes or the response is complete by its framing.
fn read_response(stream: &mut TcpStream, raw: &mut Vec<u8>) -> std::io::Result<()> {
    let mut buf = [0u8; 16 * 1024];
    loop {
        if response_complete(raw) {
            return Ok(());
        }
        match stream.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => raw.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

fn response_complete(raw: &[u8]) -> bool {
    let Some(head_end) = find(raw, b"\r\n\r\n") else {
        return false;
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).to_ascii_lowercase();
    let body = &raw[head_end + 4..];
    if let Some(len) = header_in(&head, "content-length").and_then(|v| v.parse::<usize>().ok()) {
        return body.len() >= len;
    }
    if header_in(&head, "transfer-encoding").is_some_and(|v| v.contains("chunked")) {
        return find(body, b"0\r\n\r\n").is_some_and(|_| decode_chunked(body).is_ok());
    }
    // 1xx/204/304 have no body
    head.starts_with("http/1.1 204") || head.starts_with("http/1.1 304")
}

fn header_in<'a>(head: &'a str, name: &str) -> Option<&'a str> {
    head.lines().skip(1).find_map(|line| {
        let (k, v) = line.split_once(':')?;
        (k.trim() == name).then(|| v.trim())
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn decode_chunked(mut body: &[u8]) -> Result<Vec<u8>, String> {
    let mut out = Vec::new();
    loop {
        let line_end = find(body, b"\r\n").ok_or("chunk size line not terminated")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or("").trim();
        let size = usize::from_str_radix(size_text, 16)
            .map_err(|_| format!("bad chunk size {size_text:?}"))?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        if body.len() < size + 2 {
            return Err("truncated chunk".into());
        }
        out.extend_from_slice(&body[..size]);
        body = &body[size + 2..];
    }
}

/// Parses a complete HTTP/1.x response.
pub fn parse_response(raw: &[u8]) -> Result<HttpResponse, String> {
    let head_end = find(raw, b"\r\n\r\n").ok_or("no end of headers")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let mut lines = head.split("\r\n");
    let status_line = lines.next().ok_or("empty response")?;
    let status = status_line
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or_else(|| format!("bad status line {status_line:?}"))?;
    let headers: Vec<(String, String)> = lines
        .filter_map(|l| l.split_once(':'))
        .map(|(k, v)| (k.trim().to_ascii_lowercase(), v.trim().to_string()))
        .collect();
    let rest = &raw[head_end + 4..];
    let chunked = headers
        .iter()
        .any(|(k, v)| k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked"));
    let body = if chunked {
        decode_chunked(rest)?
    } else {
        rest.to_vec()
    };
    Ok(HttpResponse {
        status,
        headers,
        body,
    })
}

impl HttpResponse {
    /// The first value of a header (name case-insensitive).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(k, _)| *k == name)
            .map(|(_, v)| v.as_str())
    }

    pub fn body_text(&self) -> String {
        String::from_utf8_lossy(&self.body).into_owned()
    }

    /// The body as JSON (e.g. the echo upstream's report); panics with the body if it is not.
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body)
            .unwrap_or_else(|e| panic!("response body is not JSON ({e}): {}", self.body_text()))
    }
}

/// `CONNECT target` through `proxy` (as clients send HTTPS or gRPC through
/// `HTTPS_PROXY`), then `GET /orders` inside the tunnel: the CONNECT answer's
/// status, and the tunnelled response (its raw text) when the tunnel opened.
pub fn connect_and_get(proxy: SocketAddr, target: &str) -> (u16, Option<String>) {
    let (status, mut conn) = open_tunnel(proxy, target);
    if status != 200 {
        return (status, None);
    }
    write!(
        conn,
        "GET /orders HTTP/1.1\r\nhost: {target}\r\nconnection: close\r\n\r\n"
    )
    .unwrap();
    // Framed as `send` frames it: the tunnel may outlive the response by a
    // while. A tunnel closed or reset early gives what came.
    let mut raw = Vec::new();
    let _ = read_response(&mut conn, &mut raw);
    let response = String::from_utf8_lossy(&raw).into_owned();
    (status, Some(response))
}

/// Sends `CONNECT target` through `proxy` and reads the answer's head: its
/// status, and the connection, which is the tunnel when the status is 200.
pub fn open_tunnel(proxy: SocketAddr, target: &str) -> (u16, TcpStream) {
    let mut conn = TcpStream::connect(proxy).unwrap();
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(conn, "CONNECT {target} HTTP/1.1\r\nhost: {target}\r\n\r\n").unwrap();
    // Byte by byte, so nothing the tunnel carries after the head is taken.
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") && conn.read(&mut byte).unwrap() == 1 {
        head.push(byte[0]);
    }
    let head = String::from_utf8_lossy(&head);
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or_else(|| panic!("CONNECT {target}: no status in {head:?}"));
    (status, conn)
}

/// One `GET /` over a new HTTP/1.1 connection to `to`, for servers reached
/// through a raw TCP port: the client's own address and the JSON body.
pub fn json_exchange(to: SocketAddr) -> (SocketAddr, serde_json::Value) {
    let mut stream = TcpStream::connect(to).unwrap_or_else(|e| panic!("connect {to}: {e}"));
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let me = stream.local_addr().unwrap();
    stream
        .write_all(b"GET / HTTP/1.1\r\nhost: backend\r\nconnection: close\r\n\r\n")
        .unwrap();
    let mut response = String::new();
    let _ = stream.read_to_string(&mut response);
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, b)| b)
        .unwrap_or_else(|| panic!("no response from {to}: {response:?}"));
    let json = serde_json::from_str(body).unwrap_or_else(|e| panic!("{e}: {response}"));
    (me, json)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_content_length_response() {
        let r = parse_response(
            b"HTTP/1.1 503 Service Unavailable\r\nX-A: b\r\ncontent-length: 2\r\n\r\nhi",
        )
        .unwrap();
        assert_eq!(r.status, 503);
        assert_eq!(r.header("x-a"), Some("b"));
        assert_eq!(r.body, b"hi");
    }

    #[test]
    fn decodes_chunked_body() {
        let raw = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n3\r\nabc\r\n2\r\nde\r\n0\r\n\r\n";
        assert!(response_complete(raw));
        assert_eq!(parse_response(raw).unwrap().body, b"abcde");
    }

    #[test]
    fn rejects_garbage() {
        assert!(parse_response(b"nonsense").is_err());
        assert!(parse_response(b"HTTP/1.1 abc\r\n\r\n").is_err());
    }
}
