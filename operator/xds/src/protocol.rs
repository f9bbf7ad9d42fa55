//! The ADS State-of-the-World protocol for one stream, as a state machine without I/O:
//! requests and snapshots in, responses out. The gRPC service only moves messages.
//!
//! Rules (each has a unit test below):
//! - versions and nonces are per type; a nonce is unique on the stream;
//! - a request whose `response_nonce` is not the last one sent for its type is stale and
//!   ignored (SotW requests carry the full subscription, so the next current one catches up);
//! - a current request without `error_detail` ACKs the sent version; with it, it NACKs:
//!   the error is recorded, the proxy keeps its last ACKed version, and the rejected
//!   version is not sent again (only a new snapshot produces a new response);
//! - listeners and clusters are wildcard; endpoints, routes and secrets are sent by
//!   the names the proxy asks for (names it asks for that the snapshot lacks are left out);
//! - a new snapshot produces responses only for subscribed types whose content changed,
//!   in warming order (clusters, endpoints, listeners, routes, secrets).
use std::collections::BTreeSet;
use std::sync::Arc;

use envoy_types::pb::envoy::service::discovery::v3::{DiscoveryRequest, DiscoveryResponse};

use crate::ResourceType;
use crate::snapshot::{ContentHash, Resource, Snapshot};
use crate::status::{NackRecord, SentResponse, TypeStatus};

/// What a proxy asked for, per type.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Subscription {
    Wildcard,
    Names(BTreeSet<String>),
}

impl Subscription {
    fn from_request(ty: ResourceType, names: &[String]) -> Subscription {
        if names.iter().any(|n| n == "*") || (ty.is_wildcard_type() && names.is_empty()) {
            Subscription::Wildcard
        } else {
            Subscription::Names(names.iter().cloned().collect())
        }
    }
}

#[derive(Default)]
struct TypeState {
    subscription: Option<Subscription>,
    status: TypeStatus,
}

/// What happened to a request, for counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RequestKind {
    Initial,
    Ack,
    Nack(NackRecord),
    Stale,
    UnknownType,
}

/// The protocol state of one ADS stream.
pub struct AdsStream {
    control_plane_id: String,
    next_nonce: u64,
    snapshot: Option<Arc<Snapshot>>,
    types: [TypeState; 5],
}

impl AdsStream {
    pub fn new(control_plane_id: impl Into<String>) -> Self {
        AdsStream {
            control_plane_id: control_plane_id.into(),
            next_nonce: 0,
            snapshot: None,
            types: Default::default(),
        }
    }

    /// Handles one request from the proxy; returns what to send back (zero or one response).
    pub fn handle_request(&mut self, req: DiscoveryRequest) -> Vec<DiscoveryResponse> {
        self.handle_request_classified(req).1
    }

    /// Like [`AdsStream::handle_request`], also telling what kind of request it was.
    pub fn handle_request_classified(
        &mut self,
        req: DiscoveryRequest,
    ) -> (RequestKind, Vec<DiscoveryResponse>) {
        let Some(ty) = ResourceType::from_type_url(&req.type_url) else {
            return (RequestKind::UnknownType, Vec::new());
        };
        let state = &mut self.types[ty.index()];
        let kind = if req.response_nonce.is_empty() {
            RequestKind::Initial
        } else {
            match &state.status.last_sent {
                Some(sent) if sent.nonce == req.response_nonce => match &req.error_detail {
                    None => {
                        // The nonce names the response, so the ACKed version is the one
                        // sent with it, whatever `version_info` the proxy echoes.
                        state.status.acked_version = Some(sent.version.clone());
                        RequestKind::Ack
                    }
                    Some(err) => {
                        let nack = NackRecord {
                            type_url: req.type_url.clone(),
                            rejected_version: sent.version.clone(),
                            nonce: sent.nonce.clone(),
                            message: err.message.clone(),
                            resource_names: sent.resource_names(),
                        };
                        state.status.last_nack = Some(nack.clone());
                        RequestKind::Nack(nack)
                    }
                },
                _ => return (RequestKind::Stale, Vec::new()),
            }
        };
        let subscription = Subscription::from_request(ty, &req.resource_names);
        let changed = state.subscription.as_ref() != Some(&subscription);
        state.subscription = Some(subscription);
        // A first request always gets an answer (Envoy waits for it to finish
        // initializing); a changed subscription too, even when the content is the same.
        let force = kind == RequestKind::Initial || changed;
        let responses = self.respond(ty, force).into_iter().collect();
        (kind, responses)
    }

    /// Takes a new snapshot; returns the responses for subscribed types whose content
    /// changed, in warming order.
    pub fn on_snapshot(&mut self, snapshot: Arc<Snapshot>) -> Vec<DiscoveryResponse> {
        self.snapshot = Some(snapshot);
        ResourceType::ALL
            .into_iter()
            .filter_map(|ty| {
                let never_sent = self.types[ty.index()].status.last_sent.is_none();
                self.respond(ty, never_sent)
            })
            .collect()
    }

    /// Per-type status (what was sent, ACKed, NACKed), indexed by [`ResourceType::index`].
    pub fn status(&self) -> [TypeStatus; 5] {
        std::array::from_fn(|i| {
            let mut status = self.types[i].status.clone();
            status.subscribed = match &self.types[i].subscription {
                Some(Subscription::Names(names)) => Some(names.iter().cloned().collect()),
                _ => None,
            };
            status
        })
    }

    pub fn type_status(&self, ty: ResourceType) -> &TypeStatus {
        &self.types[ty.index()].status
    }

    pub fn snapshot(&self) -> Option<&Arc<Snapshot>> {
        self.snapshot.as_ref()
    }

    fn respond(&mut self, ty: ResourceType, force: bool) -> Option<DiscoveryResponse> {
        let snapshot = self.snapshot.as_ref()?;
        let state = &mut self.types[ty.index()];
        let subscription = state.subscription.as_ref()?;
        let resources = snapshot.get(ty);
        let (selected, version): (Vec<Arc<Resource>>, String) = match subscription {
            // The type's hash is of the same resources, computed once per snapshot.
            Subscription::Wildcard => (
                resources.iter().cloned().collect(),
                resources.hash().version(),
            ),
            Subscription::Names(names) => {
                let selected: Vec<Arc<Resource>> = names
                    .iter()
                    .filter_map(|n| resources.get(n).cloned())
                    .collect();
                let version = ContentHash::of_resources(&selected).version();
                (selected, version)
            }
        };
        let unchanged = state
            .status
            .last_sent
            .as_ref()
            .is_some_and(|s| s.version == version);
        if unchanged && !force {
            return None;
        }
        self.next_nonce += 1;
        let nonce = self.next_nonce.to_string();
        let response = DiscoveryResponse {
            version_info: version.clone(),
            resources: selected.iter().map(|r| r.any.clone()).collect(),
            type_url: ty.type_url().to_string(),
            nonce: nonce.clone(),
            control_plane: Some(envoy_types::pb::envoy::config::core::v3::ControlPlane {
                identifier: self.control_plane_id.clone(),
            }),
            ..Default::default()
        };
        state.status.last_sent = Some(SentResponse {
            version,
            nonce,
            resources: selected,
        });
        Some(response)
    }
}

#[cfg(test)]
#[path = "protocol_tests.rs"]
mod tests;
