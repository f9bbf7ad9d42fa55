//! The accept loop of the test servers (upstreams, the PROXY protocol
//! backend, the tunnelling proxy): each connection served in a thread of its
//! own, the loop stopped and joined when dropped.
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

pub struct AcceptLoop {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl AcceptLoop {
    /// Binds `ip:0` (any 127.0.0.x works on Linux) for server `name` and
    /// serves every connection with `serve`.
    pub fn start(
        name: &str,
        ip: Ipv4Addr,
        serve: impl Fn(TcpStream) + Send + Sync + 'static,
    ) -> AcceptLoop {
        let listener =
            TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("{name}: bind {ip}:0: {e}"));
        let addr = listener.local_addr().expect("local addr");
        let stop = Arc::new(AtomicBool::new(false));
        let (stop_flag, serve) = (stop.clone(), Arc::new(serve));
        let thread = std::thread::spawn(move || {
            for stream in listener.incoming() {
                if stop_flag.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(stream) = stream else { continue };
                let serve = serve.clone();
                std::thread::spawn(move || serve(stream));
            }
        });
        AcceptLoop {
            addr,
            stop,
            thread: Some(thread),
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }
}

impl Drop for AcceptLoop {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        // wake the blocking accept so the thread sees the flag
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}
