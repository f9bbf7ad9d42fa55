//! `trellis demo --once` (what `DEMO_ONCE=1 make demo` runs) on the real
//! binary with real Envoys: it must exit 0 and its report must show the JWT
//! checks, routes per version, mTLS on every hop, retries and ejections.
//! The demo process is killed by PID if anything goes wrong; its Envoys die
//! with it (they are started with PDEATHSIG).
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
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

fn running(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        !s.rsplit(')')
            .next()
            .unwrap_or("")
            .trim_start()
            .starts_with('Z')
    })
}

#[test]
fn demo_once_exits_zero_with_a_full_report() {
    let envoy = envoy_bin();
    let repo = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let tmp = tempfile::tempdir().unwrap();
    let state = tmp.path().join("state");
    let stdout_path = tmp.path().join("stdout");
    let stderr_path = tmp.path().join("stderr");
    let child = Command::new(env!("CARGO_BIN_EXE_trellis"))
        .current_dir(&repo)
        .args(["demo", "--once", "-f", "examples/boutique", "--state-dir"])
        .arg(&state)
        .env("ENVOY_BIN", &envoy)
        .env_remove("DEMO_ONCE")
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&stdout_path).unwrap())
        .stderr(std::fs::File::create(&stderr_path).unwrap())
        .spawn()
        .expect("start trellis demo");
    let mut child = KillOnDrop(child);
    let output = |what: &str| {
        format!(
            "{what}\n--- stdout\n{}\n--- stderr\n{}",
            std::fs::read_to_string(&stdout_path).unwrap_or_default(),
            std::fs::read_to_string(&stderr_path).unwrap_or_default()
        )
    };
    // A bound for a wedged run, not a timing assertion.
    let deadline = Instant::now() + Duration::from_secs(180);
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "{}",
            output("trellis demo --once did not finish")
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    let stdout = std::fs::read_to_string(&stdout_path).unwrap();
    assert!(status.success(), "{}", output(&format!("exit {status}")));
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
    let status_json = std::fs::read_to_string(state.join("status.json")).unwrap();
    let parsed: serde_json::Value = serde_json::from_str(&status_json).unwrap();
    for p in parsed["proxies"].as_array().unwrap() {
        if let Some(pid) = p["pid"].as_u64() {
            let pid = u32::try_from(pid).unwrap();
            let deadline = Instant::now() + Duration::from_secs(10);
            while running(pid) {
                assert!(Instant::now() < deadline, "Envoy {pid} outlived the demo");
                std::thread::sleep(Duration::from_millis(50));
            }
        }
    }
}
