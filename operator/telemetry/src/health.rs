//! Readiness: named gates, all of which must be open for `/readyz` to answer 200.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

/// A set of named readiness gates.
#[derive(Clone, Default)]
pub struct Readiness {
    gates: Arc<Mutex<BTreeMap<String, bool>>>,
}

/// One gate; closed when created.
#[derive(Clone)]
pub struct ReadyGate {
    name: String,
    gates: Arc<Mutex<BTreeMap<String, bool>>>,
}

impl Readiness {
    /// Adds a closed gate named `name` (e.g. `cache/secrets`, `ca`), or returns the existing one.
    pub fn gate(&self, name: &str) -> ReadyGate {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.entry(name.to_string()).or_insert(false);
        ReadyGate {
            name: name.to_string(),
            gates: self.gates.clone(),
        }
    }

    /// The gates still closed; empty when ready. No gate at all means not ready.
    pub fn not_ready(&self) -> Vec<String> {
        let gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        if gates.is_empty() {
            return vec!["no readiness gate registered yet".into()];
        }
        gates
            .iter()
            .filter(|(_, open)| !**open)
            .map(|(name, _)| name.clone())
            .collect()
    }

    /// Whether every gate is open.
    pub fn is_ready(&self) -> bool {
        self.not_ready().is_empty()
    }
}

impl ReadyGate {
    /// Opens or closes the gate.
    pub fn set(&self, open: bool) {
        let mut gates = self.gates.lock().unwrap_or_else(|p| p.into_inner());
        gates.insert(self.name.clone(), open);
    }

    /// The gate's name.
    pub fn name(&self) -> &str {
        &self.name
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ready_only_when_every_gate_is_open() {
        let readiness = Readiness::default();
        assert!(!readiness.is_ready());
        let ca = readiness.gate("ca");
        let cache = readiness.gate("cache/secrets");
        assert_eq!(readiness.not_ready(), vec!["ca", "cache/secrets"]);
        ca.set(true);
        assert_eq!(readiness.not_ready(), vec!["cache/secrets"]);
        cache.set(true);
        assert!(readiness.is_ready());
        cache.set(false);
        assert!(!readiness.is_ready());
    }
}
