//! What the simulator's kubectl tests add to `kube_sim::Kubectl`: expected
//! refusals and kubectl running in the background.
#![allow(dead_code)]

use kube_sim::Kubectl;
use std::process::{Child, Output, Stdio};

/// Runs kubectl expecting failure; returns stderr.
pub fn fails(k: &Kubectl, args: &[&str], stdin: Option<&str>) -> String {
    let out = k.output(args, stdin);
    assert!(
        !out.status.success(),
        "kubectl {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&out.stdout)
    );
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Kills a background kubectl by its PID when the test ends, even on failure.
pub struct Background(Option<Child>);

impl Background {
    pub fn wait(mut self) -> Output {
        let child = self.0.take().expect("child already taken");
        child.wait_with_output().expect("waiting for kubectl")
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        if let Some(child) = self.0.as_mut() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Starts kubectl in the background (killed on drop).
pub fn spawn(k: &Kubectl, args: &[&str]) -> Background {
    let child = k
        .command(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawning kubectl");
    Background(Some(child))
}
