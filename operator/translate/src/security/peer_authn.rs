//! PeerAuthentication: the effective mTLS mode of a workload port, and the
//! inbound filter chains each mode needs.
//!
//! Precedence (Istio): a workload-selector policy in the workload's namespace,
//! then the namespace-wide policy, then the mesh-wide policy in the root
//! namespace; among duplicates at one level the oldest wins. `UNSET` inherits
//! from the level above; with nothing set the mode is PERMISSIVE. Port-level
//! modes exist only on workload-selector policies and inherit the policy's mode.
use std::collections::BTreeMap;

use envoy_types::pb::envoy::config::listener::v3::{
    Filter, FilterChain, FilterChainMatch, ListenerFilter, listener_filter::ConfigType,
};
use envoy_types::pb::envoy::extensions::filters::listener::tls_inspector::v3::TlsInspector;
use envoy_types::pb::envoy::extensions::transport_sockets::tls::v3::DownstreamTlsContext;

use super::pack;
use super::tls::{MESH_ALPN, downstream_transport_socket};

/// A PeerAuthentication `mtls.mode` value.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub enum MtlsMode {
    #[default]
    Unset,
    Disable,
    Permissive,
    Strict,
}

/// The resolved mode of one inbound port (never `Unset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EffectiveMtls {
    Disable,
    Permissive,
    Strict,
}

/// The fields of a PeerAuthentication the resolution needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerAuthnPolicy {
    pub namespace: String,
    pub name: String,
    /// Orders duplicates: smaller is older (e.g. creation time in seconds).
    pub creation_order: i64,
    /// `selector.matchLabels`; `None` for a namespace- or mesh-wide policy.
    pub selector: Option<BTreeMap<String, String>>,
    pub mode: MtlsMode,
    /// `portLevelMtls`: workload port -> mode.
    pub port_level: BTreeMap<u32, MtlsMode>,
}

/// The workload whose inbound port is being resolved.
#[derive(Debug, Clone, Copy)]
pub struct WorkloadRef<'a> {
    pub namespace: &'a str,
    pub labels: &'a BTreeMap<String, String>,
}

fn selects(selector: &BTreeMap<String, String>, labels: &BTreeMap<String, String>) -> bool {
    selector.iter().all(|(k, v)| labels.get(k) == Some(v))
}

fn oldest(mut candidates: Vec<&PeerAuthnPolicy>) -> Option<&PeerAuthnPolicy> {
    candidates.sort_by(|a, b| {
        (a.creation_order, &a.namespace, &a.name).cmp(&(b.creation_order, &b.namespace, &b.name))
    });
    candidates.into_iter().next()
}

/// The effective mode of `port` on `workload`, given every PeerAuthentication
/// in the mesh and the mesh root namespace.
pub fn effective_mode(
    policies: &[PeerAuthnPolicy],
    root_namespace: &str,
    workload: WorkloadRef<'_>,
    port: u32,
) -> EffectiveMtls {
    let mesh = oldest(
        policies
            .iter()
            .filter(|p| p.namespace == root_namespace && p.selector.is_none())
            .collect(),
    );
    let namespace = oldest(
        policies
            .iter()
            .filter(|p| p.namespace == workload.namespace && p.selector.is_none())
            .collect(),
    );
    let workload_policy = oldest(
        policies
            .iter()
            .filter(|p| {
                p.namespace == workload.namespace
                    && p.selector
                        .as_ref()
                        .is_some_and(|s| !s.is_empty() && selects(s, workload.labels))
            })
            .collect(),
    );
    // the root namespace's own namespace-wide policy is the mesh policy; do not count it twice
    let levels = [
        workload_policy.map(|p| p.port_level.get(&port).copied().unwrap_or(MtlsMode::Unset)),
        workload_policy.map(|p| p.mode),
        namespace.map(|p| p.mode),
        mesh.map(|p| p.mode),
    ];
    let mode = levels
        .into_iter()
        .flatten()
        .find(|m| *m != MtlsMode::Unset)
        .unwrap_or(MtlsMode::Permissive);
    match mode {
        MtlsMode::Disable => EffectiveMtls::Disable,
        MtlsMode::Strict => EffectiveMtls::Strict,
        MtlsMode::Permissive | MtlsMode::Unset => EffectiveMtls::Permissive,
    }
}

/// Name of the TLS inspector listener filter.
pub const TLS_INSPECTOR: &str = "envoy.filters.listener.tls_inspector";

/// The TLS inspector listener filter a PERMISSIVE listener needs to tell TLS from plaintext.
pub fn tls_inspector() -> ListenerFilter {
    ListenerFilter {
        name: TLS_INSPECTOR.to_string(),
        config_type: Some(ConfigType::TypedConfig(pack(&TlsInspector::default()))),
        ..Default::default()
    }
}

/// Inbound filter chains serving `filters` under `mode`; `base_match` carries the
/// destination port (or whatever else identifies the chain). Returns the chains and
/// whether the listener needs [`tls_inspector`].
///
/// - STRICT: one chain terminating mTLS (plaintext fails the handshake).
/// - PERMISSIVE, as Istio builds it: the mesh's mTLS (TLS with ALPN
///   [`MESH_ALPN`]) is terminated into `filters`; other TLS, from a client
///   outside the mesh speaking TLS to the app itself, goes untouched to
///   `tls_passthrough`; plaintext goes to `filters`.
/// - DISABLE: one plaintext chain.
pub fn inbound_filter_chains(
    name: &str,
    mode: EffectiveMtls,
    base_match: FilterChainMatch,
    tls: &DownstreamTlsContext,
    filters: Vec<Filter>,
    tls_passthrough: Vec<Filter>,
) -> (Vec<FilterChain>, bool) {
    let chain =
        |suffix: &str, transport_protocol: &str, alpn: &[&str], mtls: bool, filters: &[Filter]| {
            FilterChain {
                name: format!("{name}{suffix}"),
                filter_chain_match: Some(FilterChainMatch {
                    transport_protocol: transport_protocol.to_string(),
                    application_protocols: alpn.iter().map(|a| a.to_string()).collect(),
                    ..base_match.clone()
                }),
                filters: filters.to_vec(),
                transport_socket: mtls.then(|| downstream_transport_socket(tls)),
                ..Default::default()
            }
        };
    match mode {
        EffectiveMtls::Strict => (vec![chain("", "", &[], true, &filters)], false),
        EffectiveMtls::Disable => (vec![chain("", "", &[], false, &filters)], false),
        EffectiveMtls::Permissive => (
            vec![
                chain("-mtls", "tls", &[MESH_ALPN], true, &filters),
                chain("-tls", "tls", &[], false, &tls_passthrough),
                chain("-plaintext", "raw_buffer", &[], false, &filters),
            ],
            true,
        ),
    }
}

#[cfg(test)]
mod tests;
