//! Ports handed out on the first run of `trellis up` and reused on every
//! restart, so a restarted mesh keeps its admin ports and outbound ports.
use crate::error::{LocalError, Result};
use crate::state::write_atomic;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet};
use std::net::{Ipv4Addr, TcpListener};
use std::path::Path;

#[derive(Debug, Default, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assignments {
    /// Keyed by purpose, e.g. `admin/shop/cart-v1` or `tcp/db.shop:5432`.
    #[serde(default)]
    pub ports: BTreeMap<String, u16>,
}

impl Assignments {
    /// Loads the saved assignments; a missing file is a first run.
    pub fn load(path: &Path) -> Result<Self> {
        match std::fs::read(path) {
            Ok(bytes) => serde_json::from_slice(&bytes).map_err(|source| LocalError::Json {
                path: path.to_path_buf(),
                source,
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Self::default()),
            Err(e) => Err(LocalError::io("reading", path, e)),
        }
    }

    pub fn save(&self, path: &Path) -> Result<()> {
        let json = serde_json::to_vec_pretty(self).map_err(|source| LocalError::Json {
            path: path.to_path_buf(),
            source,
        })?;
        write_atomic(path, &json, 0o644)
    }

    /// The port for `key`: the saved one, or a fresh one from `allocate` that
    /// is not already handed out to another key.
    pub fn port_for(
        &mut self,
        key: &str,
        mut allocate: impl FnMut() -> Result<u16>,
    ) -> Result<u16> {
        if let Some(port) = self.ports.get(key) {
            return Ok(*port);
        }
        let taken: BTreeSet<u16> = self.ports.values().copied().collect();
        let port = loop {
            let candidate = allocate()?;
            if !taken.contains(&candidate) {
                break candidate;
            }
        };
        self.ports.insert(key.to_string(), port);
        Ok(port)
    }

    /// Forgets the ports of keys starting with `prefix` that are no longer in
    /// use (a removed workload); keys with other prefixes are kept.
    pub fn retain_prefixed(&mut self, prefix: &str, in_use: &BTreeSet<String>) {
        self.ports
            .retain(|key, _| !key.starts_with(prefix) || in_use.contains(key));
    }
}

/// A port the kernel reports free on 127.0.0.1 right now.
pub fn free_local_port() -> Result<u16> {
    TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .map_err(LocalError::NoFreePort)
}

/// The port a gateway listens on: privileged ports (< 1024) are moved up by
/// `offset` when the process cannot bind them (not root).
pub fn gateway_port(declared: u16, running_as_root: bool, offset: u16) -> u16 {
    if declared < 1024 && !running_as_root {
        declared.saturating_add(offset)
    } else {
        declared
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ports_survive_save_and_load() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("assignments.json");
        let mut first = Assignments::load(&path).unwrap();
        let admin = first.port_for("admin/shop/cart", free_local_port).unwrap();
        first.save(&path).unwrap();
        let mut second = Assignments::load(&path).unwrap();
        let again = second
            .port_for("admin/shop/cart", || panic!("must reuse the saved port"))
            .unwrap();
        assert_eq!(admin, again);
    }

    #[test]
    fn never_hands_out_a_taken_port() {
        let mut a = Assignments::default();
        a.port_for("x", || Ok(20000)).unwrap();
        let mut offers = vec![20001, 20000].into_iter().rev();
        let y = a.port_for("y", || Ok(offers.next().unwrap())).unwrap();
        assert_eq!(y, 20001);
    }

    #[test]
    fn retain_forgets_only_unused_keys_of_the_prefix() {
        let mut a = Assignments::default();
        a.port_for("xds", || Ok(1)).unwrap();
        a.port_for("admin/shop/a", || Ok(2)).unwrap();
        a.port_for("admin/shop/b", || Ok(3)).unwrap();
        a.retain_prefixed("admin/", &["admin/shop/a".to_string()].into());
        assert_eq!(
            a.ports.keys().collect::<Vec<_>>(),
            vec!["admin/shop/a", "xds"]
        );
    }

    #[test]
    fn corrupt_file_names_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("assignments.json");
        std::fs::write(&path, "{not json").unwrap();
        let err = Assignments::load(&path).unwrap_err().to_string();
        assert!(err.contains("assignments.json"), "{err}");
    }

    #[test]
    fn gateway_ports_below_1024_are_offset_without_root() {
        assert_eq!(gateway_port(80, false, 8000), 8080);
        assert_eq!(gateway_port(80, true, 8000), 80);
        assert_eq!(gateway_port(8443, false, 8000), 8443);
    }
}
