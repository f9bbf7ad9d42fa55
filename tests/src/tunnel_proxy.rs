//! A tunnelling proxy of our own for tests of TCP carried over HTTP/1.1: it
//! accepts `CONNECT host:port` (answers 200, then reads the tunnel), records
//! the method and the target it was asked for, and answers the one HTTP/1.1
//! request the tunnel carries itself, instead of connecting anywhere:
//! `{"server", "method", "target"}`. Any other request is recorded and
//! answered 405.

use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use crate::accept_loop::AcceptLoop;
use std::time::Duration;

/// One request a client sent: its method and target (the CONNECT
/// authority, else the Host).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TunnelRequest {
    pub method: String,
    pub target: String,
}

/// A running tunnelling proxy; stops accepting when dropped.
pub struct TunnelProxy {
    seen: Arc<Mutex<Vec<TunnelRequest>>>,
    accept: AcceptLoop,
}

impl TunnelProxy {
    /// Binds `ip:0` and serves each connection in a thread of its own.
    pub fn start(name: &str, ip: Ipv4Addr) -> TunnelProxy {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, server) = (seen.clone(), name.to_string());
        let accept = AcceptLoop::start(name, ip, move |stream| serve(stream, &server, &log));
        TunnelProxy { seen, accept }
    }

    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    /// Every tunnel asked for, in order.
    pub fn seen(&self) -> Vec<TunnelRequest> {
        self.seen.lock().expect("tunnel log").clone()
    }
}

/// Reads from `stream` into `buf` until `done(buf)` holds; false at EOF.
fn read_until(stream: &mut TcpStream, buf: &mut Vec<u8>, done: impl Fn(&[u8]) -> bool) -> bool {
    let mut chunk = [0u8; 4096];
    while !done(buf) {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return false,
        }
    }
    true
}

fn head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn serve(mut stream: TcpStream, name: &str, log: &Mutex<Vec<TunnelRequest>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    if !read_until(&mut stream, &mut buf, |b| head_end(b).is_some()) {
        return;
    }
    let end = head_end(&buf).expect("a head");
    let head = String::from_utf8_lossy(&buf[..end]).into_owned();
    let mut rest = buf[end..].to_vec();
    let mut request_line = head.lines().next().unwrap_or("").split(' ');
    let method = request_line.next().unwrap_or("").to_string();
    let uri = request_line.next().unwrap_or("").to_string();
    let host = (head.lines())
        .find_map(|l| {
            let (k, v) = l.split_once(':')?;
            k.eq_ignore_ascii_case("host").then(|| v.trim().to_string())
        })
        .unwrap_or_default();
    let target = if method == "CONNECT" { uri } else { host };
    log.lock().expect("tunnel log").push(TunnelRequest {
        method: method.clone(),
        target: target.clone(),
    });
    let body = serde_json::json!({"server": name, "method": method, "target": target}).to_string();
    let answer = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-upstream: {name}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
    match method.as_str() {
        "CONNECT" => {
            let _ = stream.write_all(b"HTTP/1.1 200 OK\r\n\r\n");
            // the request the tunnel carries
            if !read_until(&mut stream, &mut rest, |b| head_end(b).is_some()) {
                return;
            }
            let _ = stream.write_all(answer.as_bytes());
        }
        _ => {
            let _ =
                stream.write_all(b"HTTP/1.1 405 Method Not Allowed\r\ncontent-length: 0\r\n\r\n");
        }
    }
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let mut sink = [0u8; 1024];
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
}
