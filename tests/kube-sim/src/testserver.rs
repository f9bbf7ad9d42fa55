//! A simulator running on its own thread and tokio runtime, so that tests of any kind
//! (sync tests that run kubectl, async tests on a single-threaded runtime) can use it.

use crate::error::ApiError;
use crate::server::{Ctx, serve};
use crate::store::Store;
use crate::tls::TlsMaterial;
use std::collections::HashMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tokio::sync::oneshot;

/// How to run a simulator.
#[derive(Debug, Clone)]
pub struct Options {
    /// 0 picks a free port.
    pub port: u16,
    /// HTTPS with client-certificate auth; plain HTTP otherwise.
    pub tls: bool,
    /// How many change events are kept for watches resuming from a resourceVersion.
    pub history_limit: usize,
    pub bookmark_interval: Duration,
    /// Where to write the kubeconfig; a fresh temporary directory when None.
    pub kubeconfig_path: Option<PathBuf>,
}

impl Default for Options {
    fn default() -> Self {
        Options {
            port: 0,
            tls: true,
            history_limit: 20_000,
            bookmark_interval: Duration::from_secs(1),
            kubeconfig_path: None,
        }
    }
}

/// Service addresses registered by the test: (namespace, name, port) -> address.
type Services = Arc<Mutex<HashMap<(String, String, u16), SocketAddr>>>;

/// A running simulator on 127.0.0.1. Dropping it stops the server and every connection.
pub struct TestServer {
    url: String,
    kubeconfig_path: PathBuf,
    store: Arc<Store>,
    services: Services,
    config: kube::Config,
    shutdown: Option<oneshot::Sender<()>>,
    thread: Option<std::thread::JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// HTTPS on a random port with a kubeconfig in a temporary directory.
    pub fn start() -> Result<Self, ApiError> {
        Self::start_with(Options::default())
    }

    pub fn start_with(opts: Options) -> Result<Self, ApiError> {
        let io = |what: &str, e: std::io::Error| ApiError::internal(format!("{what}: {e}"));
        let tls = if opts.tls {
            Some(TlsMaterial::generate()?)
        } else {
            None
        };
        let listener = std::net::TcpListener::bind(("127.0.0.1", opts.port))
            .map_err(|e| io("binding 127.0.0.1", e))?;
        listener
            .set_nonblocking(true)
            .map_err(|e| io("configuring the listener", e))?;
        let port = listener
            .local_addr()
            .map_err(|e| io("reading the listener address", e))?
            .port();
        let scheme = if tls.is_some() { "https" } else { "http" };
        let url = format!("{scheme}://127.0.0.1:{port}");
        let kubeconfig = crate::kubeconfig::render(&url, tls.as_ref(), "default");
        let (dir, kubeconfig_path) = match &opts.kubeconfig_path {
            Some(p) => (None, p.clone()),
            None => {
                let dir = tempfile::tempdir().map_err(|e| io("creating a temp dir", e))?;
                let path = dir.path().join("kubeconfig");
                (Some(dir), path)
            }
        };
        std::fs::write(&kubeconfig_path, &kubeconfig).map_err(|e| {
            io(
                &format!("writing kubeconfig {}", kubeconfig_path.display()),
                e,
            )
        })?;
        let server_config = tls.as_ref().map(|t| t.server_config()).transpose()?;
        let store = Arc::new(Store::new(opts.history_limit));
        let services: Services = Arc::default();
        let mut ctx = Ctx::new(store.clone(), opts.bookmark_interval);
        let known = services.clone();
        ctx.service_resolver = Arc::new(move |namespace: &str, name: &str, port: u16| {
            let known = known.lock().unwrap_or_else(|e| e.into_inner());
            known
                .get(&(namespace.to_string(), name.to_string(), port))
                .copied()
        });
        let ctx = Arc::new(ctx);

        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let (shutdown_tx, shutdown_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name(format!("kube-sim-{port}"))
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(io("starting the runtime", e)));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let listener = match tokio::net::TcpListener::from_std(listener) {
                        Ok(l) => l,
                        Err(e) => {
                            let _ = ready_tx.send(Err(io("registering the listener", e)));
                            return;
                        }
                    };
                    let config = client_config(&kubeconfig).await;
                    let task = serve(listener, ctx, server_config);
                    let _ = ready_tx.send(config);
                    let _ = shutdown_rx.await;
                    task.abort();
                });
                runtime.shutdown_timeout(Duration::from_secs(1));
            })
            .map_err(|e| io("spawning the server thread", e))?;
        let config = ready_rx
            .recv()
            .map_err(|_| ApiError::internal("the server thread ended before it was ready"))??;
        Ok(TestServer {
            url,
            kubeconfig_path,
            store,
            services,
            config,
            shutdown: Some(shutdown_tx),
            thread: Some(thread),
            _dir: dir,
        })
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    pub fn kubeconfig_path(&self) -> &Path {
        &self.kubeconfig_path
    }

    /// A client for this server; call it inside a tokio runtime.
    pub fn client(&self) -> kube::Client {
        // The config was built from our own kubeconfig at start-up; only a missing runtime
        // can make this fail, which is a bug in the calling test.
        kube::Client::try_from(self.config.clone())
            .expect("kube::Client for the simulator (call client() inside a tokio runtime)")
    }

    /// Makes `clientConfig.service` `namespace/name:port` of webhook configurations reach
    /// `address` (there is no cluster DNS); the TLS server name stays `<name>.<namespace>.svc`.
    pub fn register_service(&self, namespace: &str, name: &str, port: u16, address: SocketAddr) {
        self.services
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert((namespace.to_string(), name.to_string(), port), address);
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Ends every open watch with 410 Expired and forgets the watch history.
    pub fn expire_watches(&self) {
        self.store.expire_watches();
    }

    /// Blocks until the server is stopped (for the binary).
    pub fn wait(mut self) {
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

async fn client_config(kubeconfig: &str) -> Result<kube::Config, ApiError> {
    let parsed = kube::config::Kubeconfig::from_yaml(kubeconfig)
        .map_err(|e| ApiError::internal(format!("parsing our kubeconfig: {e}")))?;
    kube::Config::from_custom_kubeconfig(parsed, &kube::config::KubeConfigOptions::default())
        .await
        .map_err(|e| ApiError::internal(format!("client config from our kubeconfig: {e}")))
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
