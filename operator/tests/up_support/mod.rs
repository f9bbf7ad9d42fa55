//! The `trellis up` harness shared by the universal-mode tests: the real
//! binary on a directory, its Envoys killed by PID when the guard drops.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub fn envoy_bin() -> PathBuf {
    let bin = std::env::var("ENVOY_BIN").expect(
        "ENVOY_BIN is not set: run `make setup` and export ENVOY_BIN=$PWD/.venv/bin/envoy-real",
    );
    assert!(
        Path::new(&bin).exists(),
        "ENVOY_BIN={bin} does not exist: run `make setup`"
    );
    PathBuf::from(bin)
}

pub fn signal(pid: u32, sig: &str) {
    let _ = Command::new("kill")
        .args([&format!("-{sig}"), &pid.to_string()])
        .stderr(Stdio::null())
        .status();
}

/// A running `trellis up`; killed (with its Envoys) by PID when dropped.
pub struct Up {
    child: Option<Child>,
    pub state: PathBuf,
    log: PathBuf,
}

impl Up {
    pub fn start(config: &Path, state: &Path, extra: &[&str]) -> Up {
        Self::start_via(&[], config, state, extra)
    }

    /// Runs `trellis up` through `wrapper` (e.g. `setpriv` to drop root), which must exec it.
    pub fn start_via(wrapper: &[&str], config: &Path, state: &Path, extra: &[&str]) -> Up {
        let log = state.with_extension(format!("{}.log", std::process::id()));
        let stderr = std::fs::File::create(&log).unwrap();
        let mut command = match wrapper.split_first() {
            Some((program, args)) => {
                let mut c = Command::new(program);
                c.args(args).arg(env!("CARGO_BIN_EXE_trellis"));
                c
            }
            None => Command::new(env!("CARGO_BIN_EXE_trellis")),
        };
        let child = command
            .arg("up")
            .arg("-f")
            .arg(config)
            .arg("--state-dir")
            .arg(state)
            .arg("--envoy-bin")
            .arg(envoy_bin())
            .args(extra)
            .stdout(Stdio::null())
            .stderr(stderr)
            .spawn()
            .expect("start trellis up");
        Up {
            child: Some(child),
            state: state.to_path_buf(),
            log,
        }
    }

    pub fn pid(&self) -> u32 {
        self.child.as_ref().unwrap().id()
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    pub fn status(&self) -> Option<Value> {
        let text = std::fs::read_to_string(self.state.join("status.json")).ok()?;
        serde_json::from_str(&text).ok()
    }

    pub fn envoy_pids(&self) -> Vec<u32> {
        self.status()
            .map(|s| {
                s["proxies"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|p| p["pid"].as_u64())
                    .map(|p| p as u32)
                    .collect()
            })
            .unwrap_or_default()
    }

    /// Waits until `n` proxies run and every one ACKed its listeners.
    pub fn wait_ready(&mut self, n: usize) -> Value {
        let deadline = Instant::now() + Duration::from_secs(90);
        loop {
            if let Some(s) = self.status() {
                let proxies = s["proxies"].as_array().cloned().unwrap_or_default();
                if proxies.len() == n
                    && proxies
                        .iter()
                        .all(|p| p["ackedVersion"].is_string() && p["pid"].is_u64())
                {
                    return s;
                }
            }
            if let Some(code) = self.child.as_mut().unwrap().try_wait().unwrap() {
                panic!("trellis up exited with {code}:\n{}", self.log());
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {n} proxies to ACK; status: {:?}\nlog:\n{}",
                self.status(),
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// SIGTERM; returns whether it exited successfully (bounded wait).
    pub fn terminate(&mut self) -> bool {
        signal(self.pid(), "TERM");
        self.wait_exit()
    }

    pub fn kill(&mut self) {
        signal(self.pid(), "KILL");
        self.wait_exit();
    }

    pub fn wait_exit(&mut self) -> bool {
        let deadline = Instant::now() + Duration::from_secs(20);
        let child = self.child.as_mut().unwrap();
        loop {
            if let Some(status) = child.try_wait().unwrap() {
                self.child = None;
                return status.success();
            }
            assert!(Instant::now() < deadline, "trellis up did not exit");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        let envoys = self.envoy_pids();
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
        // PDEATHSIG already took them; this only covers a broken build.
        for pid in envoys {
            if trellis_e2e::process_running(pid) {
                signal(pid, "KILL");
            }
        }
    }
}

pub fn wait_gone(pids: &[u32]) {
    let deadline = Instant::now() + Duration::from_secs(15);
    for pid in pids {
        while trellis_e2e::process_running(*pid) {
            assert!(Instant::now() < deadline, "Envoy {pid} outlived trellis up");
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

pub fn trellis(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_trellis"))
        .args(args)
        .output()
        .expect("run trellis")
}

pub fn proxy_config(state: &Path, proxy: &str, section: &str, output: &str) -> String {
    let out = trellis(&[
        "proxy-config",
        "--proxy",
        proxy,
        section,
        "-o",
        output,
        "--state-dir",
        state.to_str().unwrap(),
    ]);
    assert!(
        out.status.success(),
        "proxy-config {proxy} {section} -o {output}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}
