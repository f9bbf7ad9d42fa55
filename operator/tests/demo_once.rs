//! `trellis demo --once` (what `DEMO_ONCE=1 make demo` runs) on the real
//! binary with real Envoys: it must exit 0 and its report must show the JWT
//! checks, routes per version, mTLS on every hop, retries and ejections.
//! The demo process is killed by PID if anything goes wrong; its Envoys die
//! with it (they are started with PDEATHSIG).
use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Mutex;
use std::time::{Duration, Instant};

fn envoy_bin() -> PathBuf {
    let bin = std::env::var("ENVOY_BIN")
        .expect("ENVOY_BIN is not set: run `make setup` and export ENVOY_BIN=.venv/bin/envoy-real");
    assert!(
        Path::new(&bin).exists(),
        "ENVOY_BIN={bin} does not exist: run `make setup`"
    );
    PathBuf::from(bin)
}

/// Kills the child by PID when dropped (a failed assertion or a timeout).
struct KillOnDrop(Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

/// The demo binds fixed addresses (the example's), so its runs take turns.
static DEMO: Mutex<()> = Mutex::new(());

struct Run {
    child: KillOnDrop,
    state: PathBuf,
    stdout: PathBuf,
    stderr: PathBuf,
    _tmp: tempfile::TempDir,
}

impl Run {
    fn start(extra: &[&str]) -> Run {
        let envoy = envoy_bin();
        let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let tmp = tempfile::tempdir().unwrap();
        let state = tmp.path().join("state");
        let stdout = tmp.path().join("stdout");
        let stderr = tmp.path().join("stderr");
        let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
            .current_dir(&repo)
            .args(["demo", "-f", "examples/boutique", "--state-dir"])
            .arg(&state)
            .args(extra)
            .env("ENVOY_BIN", &envoy)
            .env_remove("DEMO_ONCE")
            .stdin(Stdio::null())
            .stdout(std::fs::File::create(&stdout).unwrap())
            .stderr(std::fs::File::create(&stderr).unwrap())
            .spawn()
            .expect("start trellis demo");
        Run {
            child: KillOnDrop(child),
            state,
            stdout,
            stderr,
            _tmp: tmp,
        }
    }

    fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout).unwrap_or_default()
    }

    fn output(&self, what: &str) -> String {
        format!(
            "{what}\n--- stdout\n{}\n--- stderr\n{}",
            self.stdout(),
            std::fs::read_to_string(&self.stderr).unwrap_or_default()
        )
    }

    /// Waits (bounded) for the process to exit.
    fn wait(&mut self) -> ExitStatus {
        // A bound for a wedged run, not a timing assertion.
        let deadline = Instant::now() + Duration::from_secs(180);
        loop {
            if let Some(status) = self.child.0.try_wait().unwrap() {
                return status;
            }
            assert!(
                Instant::now() < deadline,
                "{}",
                self.output("trellis demo did not finish")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Asserts that every Envoy listed in status.json has exited.
    fn assert_envoys_gone(&self) {
        let status_json = std::fs::read_to_string(self.state.join("status.json")).unwrap();
        let parsed: serde_json::Value = serde_json::from_str(&status_json).unwrap();
        let proxies = parsed["proxies"].as_array().unwrap();
        assert!(!proxies.is_empty(), "{status_json}");
        for p in proxies {
            let pid = u32::try_from(p["pid"].as_u64().expect("a pid")).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while trellis_e2e::process_running(pid) {
                assert!(Instant::now() < deadline, "Envoy {pid} outlived the demo");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}

#[test]
fn demo_once_exits_zero_with_a_full_report() {
    let _turn = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&["--once"]);
    let status = run.wait();
    let stdout = run.stdout();
    assert!(
        status.success(),
        "{}",
        run.output(&format!("exit {status}"))
    );
    for (label, code) in [("valid JWT", 200), ("tampered JWT", 401), ("no JWT", 403)] {
        let expected = format!("-> {code} (expected {code})  ok");
        assert!(
            stdout
                .lines()
                .any(|l| l.contains(label) && l.trim_end().ends_with(&expected)),
            "no {label:?} line ending {expected:?}\n{stdout}"
        );
    }
    for line in [
        "boutique-ingressgateway -> frontend",
        "checkout-v1 -> email",
        "frontend-v1 -> productcatalog",
        "expectations held.",
    ] {
        assert!(stdout.contains(line), "missing {line:?}\n{stdout}");
    }
    let mtls = stdout
        .lines()
        .find(|l| l.starts_with("mTLS: verified on "))
        .unwrap_or_else(|| panic!("no mTLS line\n{stdout}"));
    let words: Vec<&str> = mtls.split_whitespace().collect();
    assert_eq!(words[3], words[5], "not every hop verified: {mtls}");
    assert!(words[3].parse::<u32>().unwrap() >= 6, "{mtls}");
    let resilience = stdout
        .lines()
        .find(|l| l.starts_with("Resilience: "))
        .unwrap_or_else(|| panic!("no resilience line\n{stdout}"));
    assert!(
        !resilience.starts_with("Resilience: 0 retries"),
        "{resilience}"
    );
    assert!(!resilience.contains(" 0 outlier ejections"), "{resilience}");

    // Every Envoy the demo started is gone.
    run.assert_envoys_gone();
}

/// Sends `GET /healthz` to the frontend through the gateway with `token`; the status line.
fn frontend_status(gateway: &str, host: &str, token: &str) -> String {
    let mut stream = TcpStream::connect(gateway).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(20)))
        .unwrap();
    write!(
        stream,
        "GET /healthz HTTP/1.1\r\nHost: {host}\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut answer = String::new();
    let _ = stream.read_to_string(&mut answer);
    answer.lines().next().unwrap_or("").to_string()
}

#[test]
fn without_once_the_mesh_keeps_serving_until_sigint_then_every_envoy_stops() {
    let _turn = DEMO.lock().unwrap_or_else(|e| e.into_inner());
    let mut run = Run::start(&[]);
    let deadline = Instant::now() + Duration::from_secs(180);
    while !run.stdout().contains("Press Ctrl-C") {
        assert!(
            run.child.0.try_wait().unwrap().is_none(),
            "{}",
            run.output("trellis demo exited before Ctrl-C")
        );
        assert!(Instant::now() < deadline, "{}", run.output("no report"));
        std::thread::sleep(Duration::from_millis(200));
    }
    let stdout = run.stdout();
    assert!(stdout.contains("expectations held."), "{stdout}");
    // After the report the mesh still serves, with the token the demo left for curl.
    let gateway = stdout
        .split("through the gateway http://")
        .nth(1)
        .and_then(|rest| rest.split_whitespace().next())
        .unwrap_or_else(|| panic!("no gateway address in\n{stdout}"))
        .to_string();
    let token = std::fs::read_to_string(run.state.join("demo-token.jwt")).unwrap();
    let status_line = frontend_status(&gateway, "onlineboutique.com", token.trim());
    assert!(
        status_line.starts_with("HTTP/1.1 200"),
        "the frontend through the gateway after the report: {status_line:?}"
    );
    let pid = run.child.0.id().to_string();
    let sent = Command::new("kill").args(["-INT", &pid]).status().unwrap();
    assert!(sent.success());
    let status = run.wait();
    assert!(
        status.success(),
        "{}",
        run.output(&format!("exit {status} after SIGINT"))
    );
    run.assert_envoys_gone();
}
