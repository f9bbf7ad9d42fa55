//! Kubernetes events (`events.k8s.io/v1`), written by the leader only.
//!
//! A repeat of an event (same object, type, reason, action and note within six minutes)
//! patches the first one's `series` (count, last observed time) instead of creating
//! another object, as kube-runtime's `Recorder` does. Unlike the `Recorder`, which keeps
//! a full copy of every event it published for those six minutes (~2.7 KB each: 27 MB
//! of the operator's peak while it issued 10,000 identities in `make bench`), this
//! sink remembers only a hash of the key, the event's name and its count.

use crate::leader::LeaderGate;
use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::api::events::v1::{Event, EventSeries};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use k8s_openapi::jiff::{SignedDuration, Timestamp};
use kube::api::{Api, Patch, PatchParams, PostParams};
use std::collections::HashMap;
use std::hash::{BuildHasher, Hash, Hasher, RandomState};
use std::sync::{Arc, Mutex};

/// `reportingController` of every event.
pub const REPORTING_CONTROLLER: &str = "trellis-operator";
/// A repeat within this long becomes part of the first event's series.
const SERIES_WINDOW: SignedDuration = SignedDuration::from_mins(6);
/// Most events remembered for series; beyond, the oldest are forgotten (a later
/// repeat of one of them creates a new event instead of counting).
const MAX_REMEMBERED: usize = 16_384;

/// What is remembered of a published event.
struct Sent {
    namespace: String,
    name: String,
    count: i32,
    last: Timestamp,
}

#[derive(Default)]
struct Memory {
    sent: HashMap<u64, Sent>,
    pruned: Option<Timestamp>,
}

impl Memory {
    /// Forgets events whose series window has passed (at most every 30 s, or when full),
    /// then the oldest quarter when [`MAX_REMEMBERED`] are kept.
    fn prune(&mut self, now: Timestamp) {
        let due = self
            .pruned
            .is_none_or(|t| t + SignedDuration::from_secs(30) <= now);
        if !due && self.sent.len() < MAX_REMEMBERED {
            return;
        }
        self.pruned = Some(now);
        self.sent.retain(|_, s| s.last + SERIES_WINDOW > now);
        if self.sent.len() >= MAX_REMEMBERED {
            // Forget the oldest quarter at once (not one per publish).
            let mut lasts: Vec<Timestamp> = self.sent.values().map(|s| s.last).collect();
            let (_, cutoff, _) = lasts.select_nth_unstable(MAX_REMEMBERED / 4);
            let cutoff = *cutoff;
            self.sent.retain(|_, s| s.last > cutoff);
        }
    }
}

/// Publishes events about objects; a follower drops them (the leader publishes its own).
#[derive(Clone)]
pub struct EventSink {
    client: kube::Client,
    instance: String,
    leader: LeaderGate,
    hasher: RandomState,
    memory: Arc<Mutex<Memory>>,
}

impl EventSink {
    /// Events reported by controller `trellis-operator`, instance `identity`.
    pub fn new(client: kube::Client, identity: &str, leader: LeaderGate) -> Self {
        Self {
            client,
            instance: identity.to_string(),
            leader,
            hasher: RandomState::new(),
            memory: Arc::default(),
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
        let type_ = if warning { "Warning" } else { "Normal" };
        if let Err(e) = self.write(regarding, type_, reason, action, note).await {
            tracing::warn!(error = %e, reason, object = ?regarding.name, "could not publish event");
        }
    }

    async fn write(
        &self,
        regarding: &ObjectReference,
        type_: &str,
        reason: &str,
        action: &str,
        note: String,
    ) -> Result<(), kube::Error> {
        let now = Timestamp::now();
        let key = series_key(&self.hasher, regarding, [type_, reason, action, &note]);
        let repeat = {
            let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
            memory.prune(now);
            memory
                .sent
                .get(&key)
                .filter(|s| s.last + SERIES_WINDOW > now)
                .map(|s| (s.namespace.clone(), s.name.clone(), s.count + 1))
        };
        if let Some((namespace, name, count)) = repeat {
            let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
            let series = serde_json::json!({
                "series": EventSeries { count, last_observed_time: MicroTime(now) }
            });
            match events
                .patch(&name, &PatchParams::default(), &Patch::Merge(&series))
                .await
            {
                Ok(_) => {
                    self.remember(key, namespace, name, count, now);
                    return Ok(());
                }
                // Deleted meanwhile (expired): start a new one.
                Err(kube::Error::Api(s)) if s.code == 404 => {}
                Err(e) => return Err(e),
            }
        }
        let namespace = regarding
            .namespace
            .clone()
            .unwrap_or_else(|| "default".to_string());
        let name = format!(
            "{}.{:x}",
            regarding.name.as_deref().unwrap_or(REPORTING_CONTROLLER),
            now.as_nanosecond()
        );
        let event = Event {
            metadata: ObjectMeta {
                name: Some(name.clone()),
                namespace: Some(namespace.clone()),
                ..Default::default()
            },
            action: Some(action.to_string()),
            reason: Some(reason.to_string()),
            note: Some(note),
            type_: Some(type_.to_string()),
            event_time: Some(MicroTime(now)),
            regarding: Some(regarding.clone()),
            reporting_controller: Some(REPORTING_CONTROLLER.to_string()),
            reporting_instance: Some(self.instance.clone()),
            ..Default::default()
        };
        let events: Api<Event> = Api::namespaced(self.client.clone(), &namespace);
        events.create(&PostParams::default(), &event).await?;
        self.remember(key, namespace, name, 1, now);
        Ok(())
    }

    fn remember(&self, key: u64, namespace: String, name: String, count: i32, now: Timestamp) {
        let mut memory = self.memory.lock().unwrap_or_else(|p| p.into_inner());
        memory.sent.insert(
            key,
            Sent {
                namespace,
                name,
                count,
                last: now,
            },
        );
    }
}

/// What makes two events the same, as a hash: the object and the type,
/// reason, action and note. A new note (another problem with the same object)
/// is a new event, not a repeat of the first one's message.
fn series_key(hasher: &RandomState, regarding: &ObjectReference, what: [&str; 4]) -> u64 {
    let mut h = hasher.build_hasher();
    what.hash(&mut h);
    (
        &regarding.api_version,
        &regarding.kind,
        &regarding.namespace,
        &regarding.name,
        &regarding.uid,
        &regarding.field_path,
    )
        .hash(&mut h);
    h.finish()
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

#[cfg(test)]
mod tests {
    use super::*;

    fn sent(last: Timestamp) -> Sent {
        Sent {
            namespace: "shop".into(),
            name: "web.1".into(),
            count: 1,
            last,
        }
    }

    #[test]
    fn another_note_is_another_event() {
        let hasher = RandomState::new();
        let mesh = reference("MeshConfig", "", "default", None);
        let key = |note| {
            series_key(
                &hasher,
                &mesh,
                ["Warning", "MeshConfigRejected", "ReadSettings", note],
            )
        };
        assert_eq!(key("spec.trustDomain: bad"), key("spec.trustDomain: bad"));
        assert_ne!(
            key("spec.trustDomain: bad"),
            key("spec.workloadCertTtl: bad")
        );
        let other = reference("MeshConfig", "", "other", None);
        assert_ne!(
            key("x"),
            series_key(
                &hasher,
                &other,
                ["Warning", "MeshConfigRejected", "ReadSettings", "x"]
            )
        );
    }

    #[test]
    fn memory_forgets_expired_events_and_stays_bounded() {
        let t0 = Timestamp::from_second(1_000_000).unwrap();
        let mut memory = Memory::default();
        memory.sent.insert(1, sent(t0));
        memory.prune(t0);
        assert_eq!(memory.sent.len(), 1, "still within the series window");
        let later = t0 + SERIES_WINDOW + SignedDuration::from_secs(1);
        memory.sent.insert(2, sent(later));
        memory.prune(later);
        assert!(!memory.sent.contains_key(&1), "expired event forgotten");
        assert!(memory.sent.contains_key(&2));

        let mut full = Memory::default();
        for i in 0..MAX_REMEMBERED as u64 {
            full.sent
                .insert(i, sent(t0 + SignedDuration::from_secs(i as i64 % 60)));
        }
        full.prune(t0 + SignedDuration::from_secs(61));
        assert!(
            full.sent.len() <= MAX_REMEMBERED * 3 / 4,
            "{}",
            full.sent.len()
        );
        assert!(!full.sent.is_empty());
        let kept_oldest = full.sent.values().map(|s| s.last).min().unwrap();
        assert!(
            kept_oldest > t0 + SignedDuration::from_secs(10),
            "the oldest were forgotten first"
        );
    }
}
