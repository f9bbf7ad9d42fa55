//! Which proxies' output a change can affect, so a push can be scoped.
use std::collections::BTreeSet;

/// A proxy is named by its workload's namespace and name.
pub type ProxyId = (String, String);

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum ChangeScope {
    /// Nothing any proxy sees changed (an identical update).
    #[default]
    None,
    /// Proxies in these namespaces.
    Namespaces(BTreeSet<String>),
    /// These proxies only.
    Proxies(BTreeSet<ProxyId>),
    /// Every proxy.
    All,
}

impl ChangeScope {
    pub fn namespace(ns: &str) -> ChangeScope {
        ChangeScope::Namespaces(BTreeSet::from([ns.to_string()]))
    }

    /// Whether the proxy of workload `namespace/name` may need a new push.
    pub fn affects(&self, namespace: &str, name: &str) -> bool {
        match self {
            ChangeScope::None => false,
            ChangeScope::All => true,
            ChangeScope::Namespaces(set) => set.contains(namespace),
            ChangeScope::Proxies(set) => set.contains(&(namespace.to_string(), name.to_string())),
        }
    }

    /// The smallest scope covering both.
    pub fn union(self, other: ChangeScope) -> ChangeScope {
        use ChangeScope::*;
        match (self, other) {
            (None, x) | (x, None) => x,
            (All, _) | (_, All) => All,
            (Namespaces(mut a), Namespaces(b)) => {
                a.extend(b);
                Namespaces(a)
            }
            (Proxies(mut a), Proxies(b)) => {
                a.extend(b);
                Proxies(a)
            }
            (Namespaces(ns), Proxies(ps)) | (Proxies(ps), Namespaces(ns)) => {
                let mut ns = ns;
                // A mixed scope widens the named proxies to their namespaces.
                ns.extend(ps.into_iter().map(|(n, _)| n));
                Namespaces(ns)
            }
        }
    }
}
