//! Kubernetes events (`events.k8s.io/v1`), written by the leader only.

use crate::leader::LeaderGate;
use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};

/// Publishes events about objects; a follower drops them (the leader publishes its own).
#[derive(Clone)]
pub struct EventSink {
    recorder: Recorder,
    leader: LeaderGate,
}

impl EventSink {
    /// Events reported by controller `trellis-operator`, instance `identity`.
    pub fn new(client: kube::Client, identity: &str, leader: LeaderGate) -> Self {
        let reporter = Reporter {
            controller: "trellis-operator".into(),
            instance: Some(identity.to_string()),
        };
        Self {
            recorder: Recorder::new(client, reporter),
            leader,
        }
    }

    /// Publishes one event on `regarding`; failures are logged, never fatal.
    pub async fn publish(
        &self,
        regarding: &ObjectReference,
        warning: bool,
        reason: &str,
        action: &str,
        note: String,
    ) {
        let Ok(_permit) = self.leader.permit() else {
            return;
        };
        let event = Event {
            type_: if warning {
                EventType::Warning
            } else {
                EventType::Normal
            },
            reason: reason.to_string(),
            note: Some(note),
            action: action.to_string(),
            secondary: None,
        };
        if let Err(e) = self.recorder.publish(&event, regarding).await {
            tracing::warn!(error = %e, reason, object = ?regarding.name, "could not publish event");
        }
    }
}

/// A reference to a namespaced core/v1 object, for events.
pub fn reference(kind: &str, namespace: &str, name: &str, uid: Option<&str>) -> ObjectReference {
    ObjectReference {
        api_version: Some("v1".into()),
        kind: Some(kind.into()),
        namespace: Some(namespace.into()),
        name: Some(name.into()),
        uid: uid.map(str::to_string),
        ..Default::default()
    }
}
