//! Host resolution over the service registry.
use std::collections::{BTreeMap, BTreeSet};

use crate::config::MeshSettings;
use crate::service::MeshService;

/// Identifies the object a [`MeshService`] came from.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ServiceSource {
    /// Sorts first: a Kubernetes Service wins over a ServiceEntry for the same host.
    Kubernetes {
        namespace: String,
        name: String,
    },
    ServiceEntry {
        namespace: String,
        name: String,
    },
}

/// All services, indexed by host.
#[derive(Debug, Clone, Default)]
pub struct Registry {
    by_source: BTreeMap<ServiceSource, Vec<MeshService>>,
    by_host: BTreeMap<String, BTreeSet<ServiceSource>>,
}

impl Registry {
    /// Replaces what `source` defines; returns whether anything changed.
    pub fn set(&mut self, source: ServiceSource, services: Vec<MeshService>) -> bool {
        if self.by_source.get(&source) == Some(&services) {
            return false;
        }
        self.remove(&source);
        if services.is_empty() {
            return true;
        }
        for s in &services {
            self.by_host
                .entry(s.hostname.clone())
                .or_default()
                .insert(source.clone());
        }
        self.by_source.insert(source, services);
        true
    }

    pub fn remove(&mut self, source: &ServiceSource) -> bool {
        let Some(old) = self.by_source.remove(source) else {
            return false;
        };
        for s in old {
            if let Some(set) = self.by_host.get_mut(&s.hostname) {
                set.remove(source);
                if set.is_empty() {
                    self.by_host.remove(&s.hostname);
                }
            }
        }
        true
    }

    /// Every object that defines services.
    pub fn sources(&self) -> impl Iterator<Item = &ServiceSource> {
        self.by_source.keys()
    }

    /// The services `source` defines (empty when unknown).
    pub fn defined_by(&self, source: &ServiceSource) -> &[MeshService] {
        self.by_source.get(source).map(Vec::as_slice).unwrap_or(&[])
    }

    pub fn clear(&mut self) {
        self.by_source.clear();
        self.by_host.clear();
    }

    /// The service defining exactly `hostname` (Kubernetes first, then the oldest
    /// ServiceEntry by namespace/name order).
    pub fn exact(&self, hostname: &str) -> Option<&MeshService> {
        let source = self.by_host.get(hostname)?.iter().next()?;
        self.by_source
            .get(source)?
            .iter()
            .find(|s| s.hostname == hostname)
    }

    /// The service defining exactly `hostname` in `namespace` (Istio's
    /// `<namespace>/<host>` reference), and every namespace defining it.
    pub fn in_namespace(&self, hostname: &str, namespace: &str) -> Option<&MeshService> {
        self.by_host
            .get(hostname)?
            .iter()
            .filter_map(|source| self.by_source.get(source))
            .flatten()
            .find(|s| s.hostname == hostname && s.namespace == namespace)
    }

    /// The namespaces whose objects define exactly `hostname`, sorted.
    pub fn namespaces_of(&self, hostname: &str) -> Vec<&str> {
        let mut out: Vec<&str> = (self.by_host.get(hostname).into_iter().flatten())
            .filter_map(|source| self.by_source.get(source))
            .flatten()
            .filter(|s| s.hostname == hostname)
            .map(|s| s.namespace.as_str())
            .collect();
        out.sort_unstable();
        out.dedup();
        out
    }

    /// Every distinct host, sorted, with the service that wins it.
    pub fn services(&self) -> impl Iterator<Item = &MeshService> {
        self.by_host.keys().filter_map(|h| self.exact(h))
    }

    pub fn len(&self) -> usize {
        self.by_host.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_host.is_empty()
    }

    /// Resolves a host as written in a VirtualService, DestinationRule or a request's
    /// Host header, relative to `namespace`: `cart`, `cart.shop`, `cart.shop.svc`,
    /// `cart.shop.svc.cluster.local`, a ServiceEntry host, or a host matched by a
    /// ServiceEntry wildcard (`*.example.com`). A `:port` suffix is ignored.
    pub fn resolve(
        &self,
        host: &str,
        namespace: &str,
        settings: &MeshSettings,
    ) -> Option<&MeshService> {
        let host = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
        for candidate in fqdn_candidates(&host, namespace, settings) {
            if let Some(s) = self.exact(&candidate) {
                return Some(s);
            }
        }
        self.wildcard_match(&host)
    }

    /// The most specific wildcard host (`*.example.com`) that matches `host`.
    fn wildcard_match(&self, host: &str) -> Option<&MeshService> {
        let mut best: Option<&MeshService> = None;
        for (pattern, _) in self.by_host.iter().filter(|(h, _)| h.starts_with('*')) {
            if host_matches(pattern, host) {
                let better = best.is_none_or(|b| pattern.len() > b.hostname.len());
                if better {
                    best = self.exact(pattern);
                }
            }
        }
        best
    }

    /// Every service whose host matches `pattern` (which may be a wildcard such as
    /// `*.shop.svc.cluster.local` or `*`).
    pub fn matching(&self, pattern: &str) -> Vec<&MeshService> {
        self.services()
            .filter(|s| host_matches(pattern, &s.hostname) || host_matches(&s.hostname, pattern))
            .collect()
    }
}

/// The FQDNs a host may stand for, most specific reading first.
pub fn fqdn_candidates(host: &str, namespace: &str, settings: &MeshSettings) -> Vec<String> {
    let domain = &settings.cluster_domain;
    let dots = host.matches('.').count();
    let mut out = Vec::with_capacity(2);
    if dots == 0 {
        out.push(settings.service_fqdn(host, namespace));
    } else if dots == 1 {
        out.push(format!("{host}.svc.{domain}"));
    } else if host.ends_with(".svc") {
        out.push(format!("{host}.{domain}"));
    }
    out.push(host.to_string());
    out
}

/// Istio host matching: `*` matches everything, `*.x.y` matches any host ending in `.x.y`.
pub fn host_matches(pattern: &str, host: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.strip_prefix('*') {
        Some(suffix) => host.ends_with(suffix) && host.len() > suffix.len(),
        None => pattern.eq_ignore_ascii_case(host),
    }
}

pub fn strip_port(host: &str) -> &str {
    match host.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') && p.chars().all(|c| c.is_ascii_digit()) => h,
        _ => host,
    }
}
