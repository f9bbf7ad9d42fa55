//! Envoy dies with `trellis up` even when `trellis up` is SIGKILLed.
//!
//! This test binary plays both roles (harness = false): run normally it is
//! the test; run with `TRELLIS_PDEATHSIG_CHILD=<dir>` it is the "trellis-like"
//! parent that supervises one real Envoy and then waits to be killed.
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::{Duration, Instant};
use trellis_local::supervisor::{BackoffPolicy, ProcessSpec, Supervisor, envoy_args};

const CHILD_ENV: &str = "TRELLIS_PDEATHSIG_CHILD";

fn main() {
    match std::env::var(CHILD_ENV) {
        Ok(dir) => child(Path::new(&dir)),
        Err(_) => {
            println!("running 1 test");
            envoy_dies_when_its_parent_is_sigkilled();
            println!("test envoy_dies_when_its_parent_is_sigkilled ... ok");
        }
    }
}

fn envoy_bin() -> PathBuf {
    let bin = std::env::var("ENVOY_BIN")
        .expect("ENVOY_BIN is not set: run `make setup` and export ENVOY_BIN=.venv/bin/envoy-real");
    assert!(
        Path::new(&bin).exists(),
        "ENVOY_BIN={bin} does not exist: run `make setup`"
    );
    PathBuf::from(bin)
}

fn child(dir: &Path) {
    let supervisor = Supervisor::start(BackoffPolicy::default()).expect("supervisor");
    let pid = supervisor
        .spawn(ProcessSpec {
            name: "envoy".into(),
            program: envoy_bin(),
            args: envoy_args(&dir.join("envoy.json"), "warn"),
            log_path: dir.join("envoy.log"),
        })
        .expect("spawn envoy");
    std::fs::write(dir.join("envoy.pid.tmp"), pid.to_string()).unwrap();
    std::fs::rename(dir.join("envoy.pid.tmp"), dir.join("envoy.pid")).unwrap();
    loop {
        std::thread::sleep(Duration::from_secs(60));
    }
}

/// Kills a PID on drop, so nothing leaks when an assertion fails.
struct KillOnDrop(Option<Child>, Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.as_mut() {
            let _ = c.kill();
            let _ = c.wait();
        }
        if let Some(pid) = self.1 {
            let _ = Command::new("kill").arg("-9").arg(pid.to_string()).status();
        }
    }
}

fn admin_ready(port: u16) -> bool {
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
    if s.write_all(b"GET /ready HTTP/1.1\r\nHost: admin\r\nConnection: close\r\n\r\n")
        .is_err()
    {
        return false;
    }
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.contains("LIVE")
}

fn envoy_dies_when_its_parent_is_sigkilled() {
    let tmp = tempfile::tempdir().unwrap();
    let admin_port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let bootstrap = serde_json::json!({
        "admin": { "address": { "socket_address": { "address": "127.0.0.1", "port_value": admin_port } } }
    });
    std::fs::write(tmp.path().join("envoy.json"), bootstrap.to_string()).unwrap();
    envoy_bin();

    let parent = Command::new(std::env::current_exe().unwrap())
        .env(CHILD_ENV, tmp.path())
        .spawn()
        .unwrap();
    let mut guard = KillOnDrop(Some(parent), None);

    let pid_file = tmp.path().join("envoy.pid");
    let deadline = Instant::now() + Duration::from_secs(60);
    let envoy_pid: u32 = loop {
        if let Ok(s) = std::fs::read_to_string(&pid_file) {
            break s.trim().parse().unwrap();
        }
        assert!(Instant::now() < deadline, "child never started Envoy");
        std::thread::sleep(Duration::from_millis(50));
    };
    guard.1 = Some(envoy_pid);
    while !admin_ready(admin_port) {
        let log = std::fs::read_to_string(tmp.path().join("envoy.log")).unwrap_or_default();
        assert!(
            Instant::now() < deadline,
            "Envoy never became ready; log:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let cmdline = std::fs::read(format!("/proc/{envoy_pid}/cmdline")).unwrap();
    assert!(
        String::from_utf8_lossy(&cmdline).contains("envoy"),
        "PID {envoy_pid} is not Envoy (setpriv must exec it)"
    );

    let mut parent = guard.0.take().unwrap();
    Command::new("kill")
        .arg("-KILL")
        .arg(parent.id().to_string())
        .status()
        .unwrap();
    parent.wait().unwrap();

    let deadline = Instant::now() + Duration::from_secs(20);
    while trellis_e2e::process_running(envoy_pid) {
        assert!(
            Instant::now() < deadline,
            "Envoy {envoy_pid} outlived its SIGKILLed parent"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    assert!(!admin_ready(admin_port), "Envoy admin still answers");
}
