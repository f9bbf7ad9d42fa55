//! Push coalescing: changes arriving close together become one push. A push fires when
//! no change came for `quiet`, or at the latest `max` after the first pending change.
use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use crate::ProxyId;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DebounceConfig {
    pub quiet: Duration,
    pub max: Duration,
}

impl Default for DebounceConfig {
    fn default() -> Self {
        DebounceConfig {
            quiet: Duration::from_millis(100),
            max: Duration::from_secs(1),
        }
    }
}

/// Which proxies a push concerns.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PushScope {
    All,
    Proxies(BTreeSet<ProxyId>),
}

impl PushScope {
    pub fn merge(&mut self, other: PushScope) {
        match (&mut *self, other) {
            (PushScope::All, _) => {}
            (_, PushScope::All) => *self = PushScope::All,
            (PushScope::Proxies(a), PushScope::Proxies(b)) => a.extend(b),
        }
    }

    pub fn contains(&self, proxy: &ProxyId) -> bool {
        match self {
            PushScope::All => true,
            PushScope::Proxies(set) => set.contains(proxy),
        }
    }
}

/// The pending push, as pure state over instants the caller passes in.
#[derive(Debug)]
pub struct Debouncer {
    config: DebounceConfig,
    pending: Option<Pending>,
}

#[derive(Debug)]
struct Pending {
    first: Instant,
    last: Instant,
    scope: PushScope,
}

impl Debouncer {
    pub fn new(config: DebounceConfig) -> Self {
        Debouncer {
            config,
            pending: None,
        }
    }

    pub fn add(&mut self, now: Instant, scope: PushScope) {
        match &mut self.pending {
            Some(p) => {
                p.last = now;
                p.scope.merge(scope);
            }
            None => {
                self.pending = Some(Pending {
                    first: now,
                    last: now,
                    scope,
                })
            }
        }
    }

    /// When the pending push is due, if any.
    pub fn deadline(&self) -> Option<Instant> {
        self.pending
            .as_ref()
            .map(|p| (p.last + self.config.quiet).min(p.first + self.config.max))
    }

    /// Takes the pending scope if it is due at `now`.
    pub fn take_due(&mut self, now: Instant) -> Option<PushScope> {
        if self.deadline().is_some_and(|d| d <= now) {
            self.pending.take().map(|p| p.scope)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ProxyKind;

    fn proxy(name: &str) -> ProxyId {
        ProxyId::new(ProxyKind::Sidecar, "ns", name, "sa")
    }

    fn cfg() -> DebounceConfig {
        DebounceConfig {
            quiet: Duration::from_millis(100),
            max: Duration::from_millis(1000),
        }
    }

    #[test]
    fn fires_after_the_quiet_period_with_merged_scopes() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(cfg());
        assert_eq!(d.deadline(), None);
        d.add(t0, PushScope::Proxies([proxy("a")].into()));
        d.add(
            t0 + Duration::from_millis(50),
            PushScope::Proxies([proxy("b")].into()),
        );
        assert_eq!(d.take_due(t0 + Duration::from_millis(149)), None);
        let scope = d.take_due(t0 + Duration::from_millis(150)).unwrap();
        assert_eq!(scope, PushScope::Proxies([proxy("a"), proxy("b")].into()));
        assert_eq!(d.take_due(t0 + Duration::from_secs(5)), None, "fires once");
    }

    #[test]
    fn a_steady_stream_of_changes_fires_at_the_maximum_delay() {
        let t0 = Instant::now();
        let mut d = Debouncer::new(cfg());
        for i in 0..30 {
            d.add(
                t0 + Duration::from_millis(i * 50),
                PushScope::Proxies([proxy("a")].into()),
            );
        }
        assert_eq!(d.deadline(), Some(t0 + Duration::from_millis(1000)));
        assert!(d.take_due(t0 + Duration::from_millis(1000)).is_some());
    }

    #[test]
    fn all_absorbs_any_set() {
        let mut s = PushScope::Proxies([proxy("a")].into());
        s.merge(PushScope::All);
        assert_eq!(s, PushScope::All);
        s.merge(PushScope::Proxies([proxy("b")].into()));
        assert_eq!(s, PushScope::All);
        assert!(s.contains(&proxy("zzz")));
        assert!(!PushScope::Proxies([proxy("a")].into()).contains(&proxy("b")));
    }
}
