//! The CA the operator signs with, shared by every controller and (for the status
//! helper) with what went wrong loading it. Updated only by [`crate::ca_store`].

use crate::ca_rotation::{RotationKey, RotationRecord, whole_seconds};
use futures::Stream;
use std::sync::Arc;
use std::time::SystemTime;
use tokio::sync::watch;
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;
use trellis_ca::{CertificateAuthority, CertificateInfo, TrustBundle};

/// Where the CA comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CaMode {
    /// A root the operator created, stored in Secret `trellis-ca`.
    SelfSigned,
    /// Istio's plugged-in `cacerts` Secret.
    PluggedIn,
}

impl CaMode {
    /// Short name for status (`self-signed`, `plugged-in`).
    pub fn as_str(self) -> &'static str {
        match self {
            CaMode::SelfSigned => "self-signed",
            CaMode::PluggedIn => "plugged-in",
        }
    }
}

/// A loaded CA and what the controllers derive from it.
#[derive(Clone, Debug)]
pub struct CaSnapshot {
    /// The CA (signs identities).
    pub ca: Arc<CertificateAuthority>,
    pub mode: CaMode,
    /// The Secret it was loaded from (`namespace/name`).
    pub source: String,
    /// Increases with every change of CA.
    pub generation: u64,
    /// SHA-256 fingerprint (hex) of the root the CA chains to.
    pub root_fingerprint: String,
    /// `notAfter` of that root.
    pub root_not_after: SystemTime,
    /// `root-cert.pem` for workloads: the CA's roots plus [`CaSnapshot::previous_roots`].
    pub trust_bundle_pem: String,
    /// Roots of the previous CA, still trusted while identities move to the new root
    /// (empty when no rotation is under way).
    pub previous_roots: Vec<CertificateInfo>,
    /// When the rotation under way started (`None` when not rotating).
    pub rotation_started: Option<SystemTime>,
    /// Since when every identity chains to this CA's root (rotation only; the previous
    /// roots leave the bundle `rotation_grace` later).
    pub all_moved_at: Option<SystemTime>,
}

impl CaSnapshot {
    /// A snapshot of `ca`, trusting `previous_roots` besides its own.
    pub fn new(
        ca: Arc<CertificateAuthority>,
        mode: CaMode,
        source: String,
        generation: u64,
        previous_roots: Vec<CertificateInfo>,
    ) -> Self {
        let root = ca.root().clone();
        let bundle = TrustBundle::new(
            ca.own_roots()
                .roots()
                .iter()
                .chain(previous_roots.iter())
                .cloned(),
        );
        Self {
            mode,
            source,
            generation,
            root_fingerprint: root.fingerprint_hex(),
            root_not_after: root.not_after,
            trust_bundle_pem: bundle.to_pem(),
            previous_roots,
            rotation_started: None,
            all_moved_at: None,
            ca,
        }
    }

    /// Whether a root rotation is under way (a previous root is still trusted).
    pub fn rotating(&self) -> bool {
        !self.previous_roots.is_empty()
    }
}

/// The CA state: the CA in use and the last problem seen loading one.
#[derive(Clone, Debug, Default)]
pub struct CaStatus {
    /// The CA in use; `None` until one is loaded.
    pub current: Option<Arc<CaSnapshot>>,
    /// Why the preferred CA source is not in use (e.g. a broken `cacerts`), naming
    /// the Secret and file. `None` when all is well.
    pub problem: Option<String>,
}

/// Shared handle to the CA state.
#[derive(Clone)]
pub struct CaHandle {
    tx: watch::Sender<CaStatus>,
    /// The last rotation this process ended: a persisted record of it still in a
    /// lagging cache must not bring its roots back.
    finished: Arc<std::sync::Mutex<Option<RotationKey>>>,
}

impl Default for CaHandle {
    fn default() -> Self {
        Self::new()
    }
}

impl CaHandle {
    /// No CA loaded.
    pub fn new() -> Self {
        Self {
            tx: watch::Sender::new(CaStatus::default()),
            finished: Arc::default(),
        }
    }

    /// The CA in use, if any.
    pub fn current(&self) -> Option<Arc<CaSnapshot>> {
        self.tx.borrow().current.clone()
    }

    /// The whole state (CA and problem).
    pub fn status(&self) -> CaStatus {
        self.tx.borrow().clone()
    }

    /// A receiver notified on every change (CA or problem).
    pub fn subscribe(&self) -> watch::Receiver<CaStatus> {
        self.tx.subscribe()
    }

    /// Fires `()` whenever the CA in use changes (not on problem-only changes).
    pub fn on_change(&self) -> impl Stream<Item = ()> + Send + 'static {
        let mut last = self.current().map(|c| c.generation);
        WatchStream::from_changes(self.tx.subscribe()).filter_map(move |status| {
            let generation = status.current.as_ref().map(|c| c.generation);
            if generation != last {
                last = generation;
                Some(())
            } else {
                None
            }
        })
    }

    /// Installs a new CA (clearing any problem).
    pub(crate) fn install(&self, snapshot: CaSnapshot) {
        self.tx.send_modify(|status| {
            status.current = Some(Arc::new(snapshot));
            status.problem = None;
        });
    }

    /// Ends a rotation: the previous roots leave the bundle (a new generation, so every
    /// controller hands out the smaller bundle). The problem, if any, stays.
    pub(crate) fn finish_rotation(&self) {
        self.tx.send_if_modified(|status| {
            let Some(cur) = status.current.as_ref().filter(|c| c.rotating()) else {
                return false;
            };
            if let Some(record) = RotationRecord::of(cur) {
                *self.finished.lock().unwrap_or_else(|p| p.into_inner()) = Some(record.key());
            }
            let next = CaSnapshot::new(
                cur.ca.clone(),
                cur.mode,
                cur.source.clone(),
                cur.generation + 1,
                Vec::new(),
            );
            status.current = Some(Arc::new(next));
            true
        });
    }

    /// Whether this process ended the rotation `key` (see [`RotationRecord::key`]).
    pub(crate) fn finished(&self, key: RotationKey) -> bool {
        *self.finished.lock().unwrap_or_else(|p| p.into_inner()) == Some(key)
    }

    /// Records since when every identity chains to the root of CA `generation` (`None`:
    /// one does not any more). Same generation: controllers are not asked to reconcile.
    pub(crate) fn set_all_moved(&self, generation: u64, at: Option<SystemTime>) {
        let at = at.map(whole_seconds);
        self.tx.send_if_modified(|status| {
            let Some(cur) = status
                .current
                .as_ref()
                .filter(|c| c.generation == generation && c.rotating() && c.all_moved_at != at)
            else {
                return false;
            };
            let mut next = CaSnapshot::clone(cur);
            next.all_moved_at = at;
            status.current = Some(Arc::new(next));
            true
        });
    }

    /// Records a problem, keeping the CA in use.
    pub(crate) fn report_problem(&self, problem: Option<String>) {
        self.tx.send_if_modified(|status| {
            if status.problem == problem {
                return false;
            }
            status.problem = problem;
            true
        });
    }

    /// The next generation number.
    pub(crate) fn next_generation(&self) -> u64 {
        self.tx
            .borrow()
            .current
            .as_ref()
            .map_or(1, |c| c.generation + 1)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::{Duration, UNIX_EPOCH};
    use trellis_ca::{RootOptions, SystemRandom, TrustDomain};

    fn ca() -> Arc<CertificateAuthority> {
        let td = TrustDomain::new("cluster.local").unwrap();
        let now = UNIX_EPOCH + Duration::from_secs(1_900_000_000);
        Arc::new(
            CertificateAuthority::new_self_signed(
                &RootOptions::new(td),
                now,
                Arc::new(SystemRandom::new()),
            )
            .unwrap(),
        )
    }

    #[tokio::test]
    async fn finishing_a_rotation_drops_previous_roots_and_notifies() {
        let old = ca();
        let new = ca();
        let handle = CaHandle::new();
        let mut changes = Box::pin(handle.on_change());
        let previous = old.own_roots().roots().to_vec();
        handle.install(CaSnapshot::new(
            new.clone(),
            CaMode::SelfSigned,
            "ns/trellis-ca".into(),
            1,
            previous,
        ));
        changes.next().await.expect("install notifies");
        let during = handle.current().unwrap();
        assert!(during.rotating());
        assert!(during.trust_bundle_pem.contains(old.root().to_pem().trim()));
        assert!(during.trust_bundle_pem.contains(new.root().to_pem().trim()));

        handle.report_problem(Some("cacerts: broken".into()));
        handle.finish_rotation();
        changes.next().await.expect("finishing notifies");
        let after = handle.current().unwrap();
        assert!(!after.rotating());
        assert_eq!(after.generation, 2);
        assert_eq!(after.trust_bundle_pem, new.own_roots().to_pem());
        assert_eq!(
            handle.status().problem.as_deref(),
            Some("cacerts: broken"),
            "the problem stays"
        );
        // Nothing to finish any more: no new generation.
        handle.finish_rotation();
        assert_eq!(handle.current().unwrap().generation, 2);
    }

    #[test]
    fn all_moved_is_recorded_per_generation_and_a_finished_rotation_is_remembered() {
        let (old, new) = (ca(), ca());
        let handle = CaHandle::new();
        let mut snapshot = CaSnapshot::new(
            new.clone(),
            CaMode::SelfSigned,
            "ns/trellis-ca".into(),
            3,
            old.own_roots().roots().to_vec(),
        );
        snapshot.rotation_started = Some(UNIX_EPOCH + Duration::from_secs(1_900_000_000));
        handle.install(snapshot);
        let key = RotationRecord::of(&handle.current().unwrap())
            .unwrap()
            .key();
        let t = UNIX_EPOCH + Duration::from_millis(1_900_000_100_700);
        // Another generation: ignored.
        handle.set_all_moved(2, Some(t));
        assert_eq!(handle.current().unwrap().all_moved_at, None);
        handle.set_all_moved(3, Some(t));
        let cur = handle.current().unwrap();
        assert_eq!(
            cur.all_moved_at,
            Some(UNIX_EPOCH + Duration::from_secs(1_900_000_100)),
            "whole seconds, as stored"
        );
        assert_eq!(cur.generation, 3, "no new generation");
        handle.set_all_moved(3, None);
        assert_eq!(handle.current().unwrap().all_moved_at, None);
        assert!(!handle.finished(key));
        handle.finish_rotation();
        assert!(handle.finished(key));
        assert!(!handle.current().unwrap().rotating());
    }
}
