//! A backend that reads the PROXY protocol header (v1 text or v2 binary, as
//! HAProxy's specification defines them) a proxy may send before the
//! connection's data, records it, and answers one HTTP/1.1 request with what
//! it read: `{"server", "proxy": null | {"version", "source", "destination"}}`.
//! A connection without a header is answered too (`"proxy": null`).

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};

use crate::accept_loop::AcceptLoop;
use std::time::Duration;

/// What a connection's PROXY header said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProxyHeader {
    /// 1 or 2.
    pub version: u8,
    /// The original client; `None` for v1 `UNKNOWN` and v2 `LOCAL`/`AF_UNSPEC`.
    pub source: Option<SocketAddr>,
    pub destination: Option<SocketAddr>,
}

/// The v2 signature: `\r\n\r\n\0\r\nQUIT\n`.
const V2_SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// A running backend; stops accepting when dropped.
pub struct ProxyProtocolServer {
    name: String,
    seen: Arc<Mutex<Vec<Option<ProxyHeader>>>>,
    accept: AcceptLoop,
}

impl ProxyProtocolServer {
    /// Binds `ip:0` and serves each connection in a thread of its own.
    pub fn start(name: &str, ip: Ipv4Addr) -> ProxyProtocolServer {
        let seen = Arc::new(Mutex::new(Vec::new()));
        let (log, server) = (seen.clone(), name.to_string());
        let accept = AcceptLoop::start(&format!("backend {name}"), ip, move |stream| {
            serve(stream, &server, &log)
        });
        ProxyProtocolServer {
            name: name.to_string(),
            seen,
            accept,
        }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.accept.addr()
    }

    /// The header of every connection that sent a request, in order (`None`: no header).
    pub fn seen(&self) -> Vec<Option<ProxyHeader>> {
        self.seen.lock().expect("backend log").clone()
    }
}

fn serve(mut stream: TcpStream, name: &str, log: &Mutex<Vec<Option<ProxyHeader>>>) {
    let _ = stream.set_read_timeout(Some(Duration::from_secs(10)));
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    // Enough to tell a header from a request, then up to the end of the request head.
    let header = loop {
        match parse(&buf) {
            Parsed::Header(h, used) => {
                buf.drain(..used);
                break Some(h);
            }
            Parsed::NoHeader => break None,
            Parsed::Invalid => return,
            Parsed::NeedMore => {}
        }
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    };
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") {
        match stream.read(&mut chunk) {
            Ok(n) if n > 0 => buf.extend_from_slice(&chunk[..n]),
            _ => return,
        }
    }
    log.lock().expect("backend log").push(header.clone());
    let proxy = header.map(|h| {
        serde_json::json!({
            "version": h.version,
            "source": h.source.map(|a| a.to_string()),
            "destination": h.destination.map(|a| a.to_string()),
        })
    });
    let body = serde_json::json!({"server": name, "proxy": proxy}).to_string();
    let head = format!(
        "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nx-upstream: {name}\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    );
    let _ = stream.write_all(head.as_bytes());
    let _ = stream.write_all(body.as_bytes());
    let _ = stream.flush();
    let _ = stream.shutdown(Shutdown::Write);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
    while matches!(stream.read(&mut chunk), Ok(n) if n > 0) {}
}

enum Parsed {
    /// A header and the bytes it took.
    Header(ProxyHeader, usize),
    NoHeader,
    NeedMore,
    Invalid,
}

fn parse(buf: &[u8]) -> Parsed {
    let prefix = |sig: &[u8]| {
        let n = buf.len().min(sig.len());
        buf[..n] == sig[..n]
    };
    if prefix(&V2_SIGNATURE) {
        if buf.len() < 16 {
            return Parsed::NeedMore;
        }
        return parse_v2(buf);
    }
    if prefix(b"PROXY ") {
        if buf.len() < 6 {
            return Parsed::NeedMore;
        }
        let Some(end) = buf.windows(2).position(|w| w == b"\r\n") else {
            return if buf.len() > 107 {
                Parsed::Invalid
            } else {
                Parsed::NeedMore
            };
        };
        return parse_v1(&buf[..end]).map_or(Parsed::Invalid, |h| Parsed::Header(h, end + 2));
    }
    Parsed::NoHeader
}

/// `PROXY TCP4 src dst sport dport` (or `TCP6`, or `UNKNOWN ...`).
fn parse_v1(line: &[u8]) -> Option<ProxyHeader> {
    let line = std::str::from_utf8(line).ok()?;
    let fields: Vec<&str> = line.split(' ').collect();
    match fields.as_slice() {
        ["PROXY", "UNKNOWN", ..] => Some(ProxyHeader {
            version: 1,
            source: None,
            destination: None,
        }),
        ["PROXY", "TCP4" | "TCP6", src, dst, sport, dport] => Some(ProxyHeader {
            version: 1,
            source: Some(SocketAddr::new(src.parse().ok()?, sport.parse().ok()?)),
            destination: Some(SocketAddr::new(dst.parse().ok()?, dport.parse().ok()?)),
        }),
        _ => None,
    }
}

/// Signature, version/command, family/protocol, length, addresses.
fn parse_v2(buf: &[u8]) -> Parsed {
    let (ver_cmd, family) = (buf[12], buf[13]);
    let len = usize::from(u16::from_be_bytes([buf[14], buf[15]]));
    if ver_cmd >> 4 != 2 {
        return Parsed::Invalid;
    }
    if buf.len() < 16 + len {
        return Parsed::NeedMore;
    }
    let a = &buf[16..16 + len];
    let port = |i: usize| u16::from_be_bytes([a[i], a[i + 1]]);
    let (source, destination) = match (ver_cmd & 0x0f, family) {
        // PROXY over TCP/IPv4
        (1, 0x11) if len >= 12 => {
            let ip = |i: usize| IpAddr::V4(Ipv4Addr::new(a[i], a[i + 1], a[i + 2], a[i + 3]));
            (
                Some(SocketAddr::new(ip(0), port(8))),
                Some(SocketAddr::new(ip(4), port(10))),
            )
        }
        // PROXY over TCP/IPv6
        (1, 0x21) if len >= 36 => {
            let ip = |i: usize| {
                let octets: [u8; 16] = a[i..i + 16].try_into().expect("16 bytes");
                IpAddr::V6(Ipv6Addr::from(octets))
            };
            (
                Some(SocketAddr::new(ip(0), port(32))),
                Some(SocketAddr::new(ip(16), port(34))),
            )
        }
        // LOCAL, or an unspecified family
        (0, _) | (1, 0x00) => (None, None),
        _ => return Parsed::Invalid,
    };
    Parsed::Header(
        ProxyHeader {
            version: 2,
            source,
            destination,
        },
        16 + len,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_both_versions() {
        let v1 = b"PROXY TCP4 127.0.0.9 127.0.0.8 4000 80\r\nGET / HTTP/1.1\r\n";
        let Parsed::Header(h, used) = parse(v1) else {
            panic!("v1")
        };
        assert_eq!(used, 40);
        assert_eq!(h.source, Some("127.0.0.9:4000".parse().unwrap()));
        assert_eq!(h.destination, Some("127.0.0.8:80".parse().unwrap()));
        let mut v2 = V2_SIGNATURE.to_vec();
        v2.extend([
            0x21, 0x11, 0, 12, 127, 0, 0, 9, 127, 0, 0, 8, 0x0f, 0xa0, 0, 80,
        ]);
        let Parsed::Header(h, used) = parse(&v2) else {
            panic!("v2")
        };
        assert_eq!((h.version, used), (2, 28));
        assert_eq!(h.source, Some("127.0.0.9:4000".parse().unwrap()));
        assert!(matches!(parse(b"GET / HTTP/1.1\r\n"), Parsed::NoHeader));
        assert!(matches!(parse(b"PROX"), Parsed::NeedMore));
    }
}
