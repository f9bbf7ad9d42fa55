//! Per-object exponential backoff for failing reconciles, so one broken object
//! never hot-loops and never slows the others.

use crate::context::Context;
use crate::error::Error;
use kube::runtime::controller::Action;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// The first retry waits this long; each further failure doubles it.
pub const INITIAL_BACKOFF: Duration = Duration::from_millis(500);

/// Failure counts per object key (`controller/namespace/name`).
pub struct Backoffs {
    failures: Mutex<HashMap<String, u32>>,
    max: Duration,
}

impl Backoffs {
    /// Backoff capped at `max`.
    pub fn new(max: Duration) -> Self {
        Self {
            failures: Mutex::new(HashMap::new()),
            max,
        }
    }

    /// Records a failure of `key` and returns how long to wait before the next try:
    /// 0.5 s, 1 s, 2 s, ... up to the cap, with up to 10% added (fixed per key) so
    /// objects failing together spread out.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        let exp = (*n - 1).min(20);
        let base = INITIAL_BACKOFF.saturating_mul(1u32 << exp).min(self.max);
        let spread = key
            .bytes()
            .fold(0u32, |h, b| h.wrapping_mul(31).wrapping_add(u32::from(b)))
            % 100;
        (base + base.mul_f64(f64::from(spread) / 1000.0)).min(self.max)
    }

    /// Forgets the failures of `key` after a success.
    pub fn succeeded(&self, key: &str) {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.remove(key);
    }

    /// How many times `key` failed in a row.
    pub fn failures(&self, key: &str) -> u32 {
        let failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        failures.get(key).copied().unwrap_or(0)
    }
}

/// The object key used for backoff.
pub fn key<K: kube::Resource>(controller: &str, obj: &K) -> String {
    format!(
        "{controller}/{}/{}",
        obj.meta().namespace.as_deref().unwrap_or(""),
        obj.meta().name.as_deref().unwrap_or("")
    )
}

/// Error policy for a controller named `controller`: counts the error, logs it, and
/// retries the object after its backoff. [`Error::NotLeader`] waits for a change
/// instead (the controller reconciles all objects when this replica is elected).
pub fn error_policy<K: kube::Resource>(
    controller: &'static str,
) -> impl Fn(Arc<K>, &Error, Arc<Context>) -> Action {
    move |obj, error, ctx| {
        if matches!(error, Error::NotLeader) {
            return Action::await_change();
        }
        ctx.telemetry.metrics.reconcile_failed(controller);
        let key = key(controller, obj.as_ref());
        let wait = ctx.backoffs.failed(&key);
        tracing::warn!(controller, object = %key, error = %error, retry_in = ?wait, "reconcile failed");
        Action::requeue(wait)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_and_resets_on_success() {
        let b = Backoffs::new(Duration::from_secs(10));
        let waits: Vec<Duration> = (0..8).map(|_| b.failed("identity/ns/a")).collect();
        for pair in waits.windows(2) {
            assert!(pair[1] >= pair[0]);
        }
        assert!(waits[0] >= INITIAL_BACKOFF && waits[0] < INITIAL_BACKOFF * 2);
        assert!(waits[1] >= INITIAL_BACKOFF * 2);
        assert_eq!(*waits.last().unwrap(), Duration::from_secs(10));
        // Another object is not slowed by the first one's failures.
        assert!(b.failed("identity/ns/b") < INITIAL_BACKOFF * 2);
        b.succeeded("identity/ns/a");
        assert_eq!(b.failures("identity/ns/a"), 0);
        assert!(b.failed("identity/ns/a") < INITIAL_BACKOFF * 2);
    }
}
