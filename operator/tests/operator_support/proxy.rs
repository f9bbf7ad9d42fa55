//! A recording HTTP/1.1 proxy in front of a plain-HTTP simulator: forwards bytes both
//! ways (watch streams included) and records the method, path and query of every
//! request, so the RBAC test can check each API call the operator makes.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

/// One recorded request.
#[derive(Clone, Debug)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub query: String,
}

/// The proxy; stops accepting when dropped.
pub struct RecordingProxy {
    pub addr: SocketAddr,
    pub requests: Arc<Mutex<Vec<Recorded>>>,
    kubeconfig: PathBuf,
    stop: Arc<AtomicBool>,
    down: Arc<AtomicBool>,
    open: Arc<Mutex<Vec<TcpStream>>>,
    _dir: tempfile::TempDir,
}

impl RecordingProxy {
    /// Proxies to `upstream` (host:port of a plain-HTTP simulator).
    pub fn start(upstream: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding the proxy");
        let addr = listener.local_addr().expect("proxy address");
        let requests = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let down = Arc::new(AtomicBool::new(false));
        let open = Arc::new(Mutex::new(Vec::new()));
        {
            let requests = requests.clone();
            let stop = stop.clone();
            let down = down.clone();
            let open = open.clone();
            std::thread::spawn(move || {
                for conn in listener.incoming() {
                    if stop.load(Ordering::SeqCst) {
                        break;
                    }
                    let Ok(client) = conn else { continue };
                    if down.load(Ordering::SeqCst) {
                        // The API server is "away": close at once.
                        let _ = client.shutdown(Shutdown::Both);
                        continue;
                    }
                    if let Ok(c) = client.try_clone() {
                        open.lock().unwrap().push(c);
                    }
                    let requests = requests.clone();
                    std::thread::spawn(move || relay(client, upstream, requests));
                }
            });
        }
        let dir = tempfile::tempdir().expect("temp dir");
        let kubeconfig = dir.path().join("kubeconfig");
        let text = kube_sim::kubeconfig::render(&format!("http://{addr}"), None, "default");
        std::fs::write(&kubeconfig, text).expect("writing the proxy kubeconfig");
        Self {
            addr,
            requests,
            kubeconfig,
            stop,
            down,
            open,
            _dir: dir,
        }
    }

    /// Makes the API server unreachable through the proxy (every open connection is
    /// cut, new ones are closed at once), or reachable again.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, Ordering::SeqCst);
        if down {
            for c in self.open.lock().unwrap().drain(..) {
                let _ = c.shutdown(Shutdown::Both);
            }
        }
    }

    pub fn kubeconfig(&self) -> &Path {
        &self.kubeconfig
    }

    pub fn recorded(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // Wake the accept loop so it sees the flag.
        let _ = TcpStream::connect(self.addr);
    }
}

fn relay(client: TcpStream, upstream: SocketAddr, requests: Arc<Mutex<Vec<Recorded>>>) {
    let Ok(server) = TcpStream::connect(upstream) else {
        return;
    };
    let (Ok(mut server_w), Ok(mut client_w)) = (server.try_clone(), client.try_clone()) else {
        return;
    };
    let mut server_r = server;
    // Responses: raw bytes back to the client.
    let back = std::thread::spawn(move || {
        let _ = std::io::copy(&mut server_r, &mut client_w);
        let _ = client_w.shutdown(Shutdown::Write);
    });
    // Requests: parse each head for the record, forward head and body (Content-Length).
    let mut reader = BufReader::new(client);
    loop {
        let mut head = Vec::new();
        let mut line = String::new();
        loop {
            line.clear();
            match reader.read_line(&mut line) {
                Ok(0) | Err(_) => {
                    let _ = server_w.shutdown(Shutdown::Write);
                    let _ = back.join();
                    return;
                }
                Ok(_) => {}
            }
            head.push(line.clone());
            if line == "\r\n" {
                break;
            }
        }
        let mut parts = head[0].split_whitespace();
        let method = parts.next().unwrap_or("").to_string();
        let target = parts.next().unwrap_or("");
        let (path, query) = target.split_once('?').unwrap_or((target, ""));
        requests.lock().unwrap().push(Recorded {
            method,
            path: path.to_string(),
            query: query.to_string(),
        });
        let mut length = 0usize;
        for h in &head[1..] {
            if let Some((k, v)) = h.split_once(':') {
                let k = k.trim().to_ascii_lowercase();
                if k == "content-length" {
                    length = v.trim().parse().unwrap_or(0);
                }
                assert!(
                    !(k == "transfer-encoding" && v.to_ascii_lowercase().contains("chunked")),
                    "the recording proxy does not support chunked request bodies"
                );
            }
        }
        if server_w.write_all(head.concat().as_bytes()).is_err() {
            return;
        }
        let mut body = vec![0u8; length];
        if reader.read_exact(&mut body).is_err() || server_w.write_all(&body).is_err() {
            return;
        }
    }
}
