//! Upstream HTTP/1.1 test servers on 127.0.0.x.
//!
//! Every answer from [`Behavior::Echo`] is JSON describing what arrived:
//! `{"server": <name>, "method", "path", "headers": {lower-case name: value}, "body"}`,
//! so a test sees which upstream answered and with which identity headers
//! (e.g. `x-forwarded-client-cert`). Each response also carries `x-upstream: <name>`.
//! Responses close the connection, so framing stays trivial.
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::net::{Ipv4Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use crate::accept_loop::AcceptLoop;

/// How an upstream answers.
#[derive(Debug, Clone, PartialEq)]
pub enum Behavior {
    /// 200 with the JSON echo.
    Echo,
    /// Only the n-th request (1-based) answers 503; all others echo.
    FailNth(u64),
    /// The first n requests answer 503, later ones echo.
    FailFirst(u64),
    /// Every request answers this status (with the JSON echo as body).
    Status(u16),
    /// Echo after sleeping this long.
    Slow(Duration),
    /// Sleep this long, then answer this status (with the JSON echo as body).
    SlowStatus(Duration, u16),
    /// 200 with a fixed body instead of the echo (e.g. a JWKS document).
    Document { content_type: String, body: String },
    /// An external authorizer (Envoy's HTTP ext_authz protocol): 200 when the
    /// request carries `header: value`, else 403; either answer carries
    /// `x-ext-authz-check-result: allowed|denied` (with the JSON echo as body).
    Authorizer { header: String, value: String },
}

/// What an upstream saw, in the order it happened (across all connections).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UpstreamEvent {
    /// A request with this path was read completely.
    Arrived(String),
    /// The answer to a request with this path is about to be written (logged before
    /// writing, so it precedes anything the client does in reaction to the answer).
    Answering(String),
}

/// A running upstream; stops accepting when dropped.
pub struct Upstream {
    name: String,
    hits: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<UpstreamEvent>>>,
    accept: AcceptLoop,
}

impl Upstream {
    /// Binds `ip:0` (any 127.0.0.x works on Linux) and serves in background threads.
    pub fn start(name: &str, ip: Ipv4Addr, behavior: Behavior) -> Upstream {
        let hits = Arc::new(AtomicU64::new(0));
        let events = Arc::new(Mutex::new(Vec::new()));
        let server = Arc::new(Server {
            name: name.to_string(),
            behavior,
            hits: hits.clone(),
            events: events.clone(),
        });
        let accept = AcceptLoop::start(&format!("upstream {name}"), ip, move |stream| {
            server.serve(stream)
        });
        Upstream {
            name: name.to_string(),
            hits,
            events,
            accept,
        }
    }

    /// An echo upstream.
    pub fn echo(name: &str, ip: Ipv4Addr) -> Upstream {
        Self::start(name, ip, Behavior::Echo)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    pub fn ip(&self) -> String {
        self.accept.addr().ip().to_string()
    }

    pub fn port(&self) -> u16 {
        self.accept.addr().port()
    }

    /// Requests received so far.
    pub fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }

    /// Arrivals and answers so far, in order.
    pub fn events(&self) -> Vec<UpstreamEvent> {
        self.events.lock().expect("upstream event log").clone()
    }

    /// The most requests this upstream was working on at the same time.
    pub fn max_in_flight(&self) -> usize {
        let mut now = 0usize;
        let mut max = 0;
        for e in self.events() {
            match e {
                UpstreamEvent::Arrived(_) => now += 1,
                UpstreamEvent::Answering(_) => now = now.saturating_sub(1),
            }
            max = max.max(now);
        }
        max
    }
}

struct Server {
    name: String,
    behavior: Behavior,
    hits: Arc<AtomicU64>,
    events: Arc<Mutex<Vec<UpstreamEvent>>>,
}

struct Received {
    method: String,
    path: String,
    headers: BTreeMap<String, String>,
    body: Vec<u8>,
}

impl Server {
    fn serve(&self, mut stream: TcpStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(30)));
        let Some(request) = read_request(&mut stream) else {
            return;
        };
        let n = self.hits.fetch_add(1, Ordering::SeqCst) + 1;
        self.log(UpstreamEvent::Arrived(request.path.clone()));
        let status = match &self.behavior {
            Behavior::Echo => 200,
            Behavior::FailNth(k) => {
                if n == *k {
                    503
                } else {
                    200
                }
            }
            Behavior::FailFirst(k) => {
                if n <= *k {
                    503
                } else {
                    200
                }
            }
            Behavior::Status(code) => *code,
            Behavior::Slow(delay) => {
                std::thread::sleep(*delay);
                200
            }
            Behavior::SlowStatus(delay, code) => {
                std::thread::sleep(*delay);
                *code
            }
            Behavior::Document { .. } => 200,
            Behavior::Authorizer { header, value } => {
                if request.headers.get(header) == Some(value) {
                    200
                } else {
                    403
                }
            }
        };
        let extra = match &self.behavior {
            Behavior::Authorizer { .. } => format!(
                "x-ext-authz-check-result: {}\r\n",
                if status == 200 { "allowed" } else { "denied" }
            ),
            _ => String::new(),
        };
        let (content_type, body) = match &self.behavior {
            Behavior::Document { content_type, body } => (content_type.as_str(), body.clone()),
            _ => ("application/json", self.echo(&request, n)),
        };
        self.log(UpstreamEvent::Answering(request.path.clone()));
        let head = format!(
            "HTTP/1.1 {status} {}\r\ncontent-type: {content_type}\r\nx-upstream: {}\r\n{extra}content-length: {}\r\nconnection: close\r\n\r\n",
            reason(status),
            self.name,
            body.len()
        );
        let _ = stream.write_all(head.as_bytes());
        let _ = stream.write_all(body.as_bytes());
        let _ = stream.flush();
        let _ = stream.shutdown(Shutdown::Write);
        // drain until the peer closes so the close is clean (no RST)
        let mut sink = [0u8; 1024];
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        while matches!(stream.read(&mut sink), Ok(n) if n > 0) {}
    }

    fn log(&self, event: UpstreamEvent) {
        self.events.lock().expect("upstream event log").push(event);
    }

    fn echo(&self, request: &Received, n: u64) -> String {
        serde_json::json!({
            "server": self.name,
            "method": request.method,
            "path": request.path,
            "headers": request.headers,
            "body": String::from_utf8_lossy(&request.body),
            "request_number": n,
        })
        .to_string()
    }
}

fn reason(status: u16) -> &'static str {
    match status {
        200 => "OK",
        403 => "Forbidden",
        503 => "Service Unavailable",
        500 => "Internal Server Error",
        _ => "Status",
    }
}

fn read_request(stream: &mut TcpStream) -> Option<Received> {
    let mut raw = Vec::new();
    let mut buf = [0u8; 8192];
    let head_end = loop {
        if let Some(pos) = raw.windows(4).position(|w| w == b"\r\n\r\n") {
            break pos;
        }
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            return None;
        }
        raw.extend_from_slice(&buf[..n]);
    };
    let head = String::from_utf8_lossy(&raw[..head_end]).into_owned();
    let mut lines = head.split("\r\n");
    let mut first = lines.next()?.split_whitespace();
    let method = first.next()?.to_string();
    let path = first.next()?.to_string();
    let mut headers: BTreeMap<String, String> = BTreeMap::new();
    for line in lines {
        let Some((k, v)) = line.split_once(':') else {
            continue;
        };
        let k = k.trim().to_ascii_lowercase();
        let v = v.trim().to_string();
        headers
            .entry(k)
            .and_modify(|existing| {
                existing.push(',');
                existing.push_str(&v);
            })
            .or_insert(v);
    }
    let len: usize = headers
        .get("content-length")
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    let mut body = raw[head_end + 4..].to_vec();
    while body.len() < len {
        let n = stream.read(&mut buf).ok()?;
        if n == 0 {
            break;
        }
        body.extend_from_slice(&buf[..n]);
    }
    body.truncate(len);
    Some(Received {
        method,
        path,
        headers,
        body,
    })
}
