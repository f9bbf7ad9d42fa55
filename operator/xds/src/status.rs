//! What the server knows about each proxy's sync state, for `trellis status`,
//! `trellis proxy-config` and metrics.
use std::sync::Arc;
use std::time::SystemTime;

use crate::{ProxyId, Resource, ResourceType};

/// A response the proxy rejected: kept against the proxy until a later response of the
/// same type is ACKed.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NackRecord {
    pub type_url: String,
    /// The version the proxy rejected (it stays on its last ACKed version).
    pub rejected_version: String,
    pub nonce: String,
    /// Envoy's `error_detail.message`.
    pub message: String,
    /// The resources in the rejected response.
    pub resource_names: Vec<String>,
}

/// The last response of one type sent on a stream.
#[derive(Clone, Debug)]
pub struct SentResponse {
    pub version: String,
    pub nonce: String,
    pub resources: Vec<Arc<Resource>>,
}

impl SentResponse {
    pub fn resource_names(&self) -> Vec<String> {
        self.resources.iter().map(|r| r.name.clone()).collect()
    }
}

/// Sync state of one type on one proxy.
#[derive(Clone, Debug, Default)]
pub struct TypeStatus {
    /// Names the proxy asked for; `None` means every resource (wildcard).
    pub subscribed: Option<Vec<String>>,
    pub last_sent: Option<SentResponse>,
    pub acked_version: Option<String>,
    pub last_nack: Option<NackRecord>,
}

impl TypeStatus {
    /// The last response sent was NACKed (the proxy runs its last ACKed version).
    pub fn rejected(&self) -> bool {
        match (&self.last_nack, &self.last_sent) {
            (Some(nack), Some(sent)) => nack.nonce == sent.nonce,
            _ => false,
        }
    }

    /// The proxy ACKed exactly what was last sent.
    pub fn in_sync(&self) -> bool {
        match (&self.last_sent, &self.acked_version) {
            (Some(sent), Some(acked)) => &sent.version == acked && !self.rejected(),
            _ => false,
        }
    }
}

/// One connected proxy's status (a copy; cheap: resources are shared).
#[derive(Clone, Debug)]
pub struct ProxyStatus {
    pub proxy: ProxyId,
    pub node_id: String,
    pub connected_since: SystemTime,
    /// Indexed by [`ResourceType::index`].
    pub types: [TypeStatus; 5],
}

impl ProxyStatus {
    pub fn get(&self, ty: ResourceType) -> &TypeStatus {
        &self.types[ty.index()]
    }

    /// Every type that was sent is ACKed at its last sent version.
    pub fn in_sync(&self) -> bool {
        self.types
            .iter()
            .all(|t| t.last_sent.is_none() || t.in_sync())
    }

    /// Most recent NACKs still standing, one per type.
    pub fn nacks(&self) -> Vec<&NackRecord> {
        self.types
            .iter()
            .filter(|t| t.rejected())
            .filter_map(|t| t.last_nack.as_ref())
            .collect()
    }
}
