//! Running the real Envoy binary: offline validation and a process guard.
use std::io::Read;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::client::HttpRequest;

const SETUP_HINT: &str = "ENVOY_BIN not set / not executable: run `make setup` (and export ENVOY_BIN=.venv/bin/envoy-real)";

/// The Envoy binary named by `ENVOY_BIN`. Panics (never skips) when it is missing.
pub fn envoy_bin() -> PathBuf {
    let path = std::env::var_os("ENVOY_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| panic!("{SETUP_HINT}"));
    if !is_executable(&path) {
        panic!("{SETUP_HINT} (ENVOY_BIN={})", path.display());
    }
    path
}

fn is_executable(path: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(path)
        .map(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        .unwrap_or(false)
}

/// Runs `envoy --mode validate` on a bootstrap given as YAML or JSON text
/// (JSON is YAML, so both are written to a `.yaml` file). `Err` carries Envoy's output.
pub fn validate_bootstrap(bootstrap: &str) -> Result<(), String> {
    let dir = tempfile::tempdir().map_err(|e| format!("tempdir: {e}"))?;
    validate_bootstrap_in(dir.path(), bootstrap)
}

/// Like [`validate_bootstrap`], with Envoy's working directory set to `dir`, so a
/// bootstrap with relative file paths (e.g. a golden file's SDS files) resolves them there.
pub fn validate_bootstrap_in(dir: &Path, bootstrap: &str) -> Result<(), String> {
    let file = dir.join("trellis-validate-bootstrap.yaml");
    std::fs::write(&file, bootstrap).map_err(|e| format!("write bootstrap: {e}"))?;
    let output = Command::new(envoy_bin())
        .arg("--mode")
        .arg("validate")
        .arg("-c")
        .arg(&file)
        .arg("--disable-hot-restart")
        .arg("-l")
        .arg("error")
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .map_err(|e| format!("running envoy: {e}"))?;
    if output.status.success() {
        Ok(())
    } else {
        Err(format!(
            "envoy --mode validate failed ({}):\n{}{}",
            output.status,
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        ))
    }
}

/// A running Envoy. Dropping it kills the process by PID and reaps it.
pub struct Envoy {
    child: Child,
    admin: SocketAddr,
    dir: tempfile::TempDir,
}

impl Envoy {
    /// Starts Envoy on a bootstrap (YAML or JSON text) and waits until `/ready` says LIVE.
    ///
    /// The harness sets the admin listener itself (a free port on 127.0.0.1) through
    /// `--config-yaml`, so bootstraps need no admin section; hot restart is disabled so
    /// any number of Envoys can run side by side. Panics with Envoy's log when it
    /// does not become ready.
    pub fn start(bootstrap: &str) -> Envoy {
        Self::start_with_args(bootstrap, &[])
    }

    /// Like [`Envoy::start`], with extra command-line arguments for Envoy.
    pub fn start_with_args(bootstrap: &str, extra_args: &[&str]) -> Envoy {
        let dir = tempfile::tempdir().expect("tempdir for envoy");
        let config = dir.path().join("bootstrap.yaml");
        std::fs::write(&config, bootstrap).expect("write bootstrap");
        // Envoy binds the admin port itself (port 0) and reports it in a file: no race
        // with other processes picking ports.
        let admin_path = dir.path().join("admin-address");
        let admin_yaml =
            "admin: {address: {socket_address: {address: 127.0.0.1, port_value: 0}}}".to_string();
        let log = dir.path().join("envoy.log");
        let child = Command::new(envoy_bin())
            .arg("-c")
            .arg(&config)
            .arg("--config-yaml")
            .arg(admin_yaml)
            .arg("--disable-hot-restart")
            .arg("--admin-address-path")
            .arg(&admin_path)
            .arg("--log-path")
            .arg(&log)
            .arg("-l")
            .arg("info")
            .arg("--concurrency")
            .arg("1")
            .args(extra_args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn envoy");
        let mut envoy = Envoy {
            child,
            admin: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            dir,
        };
        envoy.wait_live(&admin_path, Duration::from_secs(30));
        envoy
    }

    fn wait_live(&mut self, admin_path: &Path, limit: Duration) {
        let start = Instant::now();
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("envoy exited early ({status}); log:\n{}", self.log());
            }
            if self.admin.port() == 0
                && let Some(addr) = std::fs::read_to_string(admin_path)
                    .ok()
                    .and_then(|text| text.trim().parse::<SocketAddr>().ok())
            {
                self.admin = addr;
            }
            if self.admin.port() != 0
                && let Ok(resp) = HttpRequest::get("/ready").send(self.admin)
                && resp.status == 200
                && resp.body_text().trim() == "LIVE"
            {
                return;
            }
            if start.elapsed() > limit {
                panic!("envoy not LIVE after {limit:?}; log:\n{}", self.log());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// The process id (for tests that check it is gone after drop).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The admin listener address.
    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// Envoy's log so far (for assertion messages).
    pub fn log(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join("envoy.log")) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// GET an admin path (e.g. `/stats?filter=...`, `/config_dump`, `/server_info`, `/certs`)
    /// and return the body; panics on a non-200 answer.
    pub fn admin_get(&self, path_and_query: &str) -> String {
        let resp = HttpRequest::get(path_and_query)
            .send(self.admin)
            .unwrap_or_else(|e| panic!("admin GET {path_and_query}: {e}"));
        assert_eq!(
            resp.status,
            200,
            "admin GET {path_and_query}: {}",
            resp.body_text()
        );
        resp.body_text()
    }

    /// POST an admin path (e.g. `/reset_counters`).
    pub fn admin_post(&self, path: &str) -> String {
        let resp = HttpRequest::new("POST", path)
            .send(self.admin)
            .unwrap_or_else(|e| panic!("admin POST {path}: {e}"));
        assert_eq!(resp.status, 200, "admin POST {path}: {}", resp.body_text());
        resp.body_text()
    }

    /// All counters and gauges from `/stats` as `name -> value`.
    pub fn stats(&self) -> std::collections::BTreeMap<String, u64> {
        parse_stats(&self.admin_get("/stats"))
    }

    /// One counter or gauge; 0 when Envoy has not created it (yet).
    pub fn stat(&self, name: &str) -> u64 {
        let query = format!(
            "/stats?filter={}",
            percent_encode(&format!("^{}$", regex_escape(name)))
        );
        parse_stats(&self.admin_get(&query))
            .get(name)
            .copied()
            .unwrap_or(0)
    }

    /// [`Envoy::stat`] once it has reached `at_least`, waiting (bounded, 10 s)
    /// for it: the side of a connection that fails it may count the failure
    /// a moment after the other side has seen it.
    pub fn wait_stat(&self, name: &str, at_least: u64) -> u64 {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        loop {
            let value = self.stat(name);
            if value >= at_least || std::time::Instant::now() > deadline {
                return value;
            }
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// `/config_dump` parsed as JSON.
    pub fn config_dump(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/config_dump")).expect("config_dump is JSON")
    }

    /// `/server_info` parsed as JSON (state, uptime_current_epoch, ...).
    pub fn server_info(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/server_info")).expect("server_info is JSON")
    }

    /// `/certs` parsed as JSON.
    pub fn certs(&self) -> serde_json::Value {
        serde_json::from_str(&self.admin_get("/certs")).expect("certs is JSON")
    }
}

impl Drop for Envoy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn regex_escape(name: &str) -> String {
    let mut out = String::with_capacity(name.len() * 2);
    for c in name.chars() {
        if ".^$|?*+()[]{}\\".contains(c) {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// Percent-encodes everything but unreserved characters (for admin query values).
fn percent_encode(value: &str) -> String {
    value
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                (b as char).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// Parses Envoy's text `/stats` output (`name: value` lines; histograms are skipped).
pub fn parse_stats(text: &str) -> std::collections::BTreeMap<String, u64> {
    text.lines()
        .filter_map(|line| {
            let (name, value) = line.rsplit_once(": ")?;
            Some((name.to_string(), value.trim().parse().ok()?))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_counters_and_skips_histograms() {
        let stats = parse_stats(
            "cluster.a.upstream_rq_200: 7\ncluster.a.upstream_rq_time: P0(nan,1) P25(1,2)\nserver.live: 1\n",
        );
        assert_eq!(stats.get("cluster.a.upstream_rq_200"), Some(&7));
        assert_eq!(stats.get("server.live"), Some(&1));
        assert!(!stats.contains_key("cluster.a.upstream_rq_time"));
    }

    #[test]
    fn escapes_regex_metacharacters() {
        assert_eq!(
            regex_escape("cluster.outbound|80||a"),
            "cluster\\.outbound\\|80\\|\\|a"
        );
    }
}
