//! The real kubectl, as every end-to-end suite drives a simulator with it.

use serde_json::Value;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

/// The real kubectl that tests drive the simulator with: `KUBECTL_BIN`, else the
/// project's `.venv/bin/kubectl` (installed by `make setup`). A missing one fails
/// the test with that advice rather than skipping it.
pub fn kubectl_bin() -> PathBuf {
    let bin = std::env::var_os("KUBECTL_BIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../../.venv/bin/kubectl"));
    assert!(
        bin.exists(),
        "kubectl not found at {} (KUBECTL_BIN): run `make setup`",
        bin.display()
    );
    bin
}

/// kubectl bound to one kubeconfig. Its discovery cache and `HOME` are a private
/// temporary directory and `KUBECONFIG` is unset, so nothing from the machine running
/// the tests (a real cluster's config, a stale cache) takes part; the request timeout
/// turns a hung server into a failed test instead of a hung one.
pub struct Kubectl {
    bin: PathBuf,
    kubeconfig: PathBuf,
    cache: tempfile::TempDir,
}

impl Kubectl {
    pub fn new(kubeconfig: &Path) -> Self {
        Kubectl {
            bin: kubectl_bin(),
            kubeconfig: kubeconfig.to_path_buf(),
            cache: tempfile::tempdir().expect("kubectl cache dir"),
        }
    }

    /// kubectl with `args` and the isolation above, for a caller that runs it itself
    /// (in the background, say).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.bin);
        cmd.arg("--kubeconfig")
            .arg(&self.kubeconfig)
            .arg("--cache-dir")
            .arg(self.cache.path())
            .arg("--request-timeout=20s")
            .args(args)
            .env("HOME", self.cache.path())
            .env_remove("KUBECONFIG");
        cmd
    }

    /// Runs kubectl with `stdin` as its input; its output whatever the exit code.
    pub fn output(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = self
            .command(args)
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            })
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("running kubectl {args:?}: {e}"));
        if let Some(text) = stdin {
            let written = child
                .stdin
                .take()
                .expect("kubectl stdin")
                .write_all(text.as_bytes());
            if let Err(e) = written {
                let _ = child.kill();
                let _ = child.wait();
                panic!("writing to kubectl {args:?}: {e}");
            }
        }
        child
            .wait_with_output()
            .unwrap_or_else(|e| panic!("waiting for kubectl {args:?}: {e}"))
    }

    /// Runs kubectl and returns stdout; fails the test on a non-zero exit.
    pub fn run(&self, args: &[&str]) -> String {
        self.succeed(args, None)
    }

    /// [`Kubectl::run`] with `stdin` as kubectl's input.
    pub fn run_stdin(&self, args: &[&str], stdin: &str) -> String {
        self.succeed(args, Some(stdin))
    }

    fn succeed(&self, args: &[&str], stdin: Option<&str>) -> String {
        let out = self.output(args, stdin);
        assert!(
            out.status.success(),
            "kubectl {args:?} failed: {}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// `kubectl apply -f -` with `yaml` on stdin; kubectl's report, one line an object.
    pub fn apply(&self, yaml: &str) -> String {
        self.run_stdin(&["apply", "-f", "-"], yaml)
    }

    /// `kubectl get <args> -o json`, or `None` when the object does not exist.
    pub fn get_json(&self, args: &[&str]) -> Option<Value> {
        let mut all = vec!["get"];
        all.extend_from_slice(args);
        all.extend_from_slice(&["-o", "json"]);
        let out = self.output(&all, None);
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(
                err.contains("NotFound") || err.contains("not found"),
                "kubectl {all:?}: {err}"
            );
            return None;
        }
        Some(serde_json::from_slice(&out.stdout).expect("kubectl JSON"))
    }

    /// The items of `kubectl get <args>` (a list).
    pub fn list(&self, args: &[&str]) -> Vec<Value> {
        self.get_json(args)
            .and_then(|v| v["items"].as_array().cloned())
            .unwrap_or_default()
    }
}
