//! Network-namespace helpers shared by the tests that run `trellis proxy-init`.
#![allow(dead_code)]

use std::process::Command;

pub fn trellis() -> &'static str {
    env!("CARGO_BIN_EXE_trellis")
}

pub fn require(program: &str) {
    let found = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
        .any(|d| d.join(program).is_file());
    assert!(
        found,
        "{program} is not installed: run `make setup` (it installs iptables and iproute2)"
    );
}

pub use trellis_e2e::run_ok as run;

/// A network namespace, deleted on drop (with its end of the veth pair).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn create(name: String) -> Netns {
        run(Command::new("ip").args(["netns", "add", &name]));
        let ns = Netns { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    pub fn ip(&self, args: &[&str]) -> String {
        run(Command::new("ip").arg("-n").arg(&self.name).args(args))
    }

    /// `ip netns exec <ns> <program> <args>`.
    pub fn exec(&self, program: &str, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.name, program]).args(args);
        c
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}
