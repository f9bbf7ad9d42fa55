//! Leader election on a `coordination.k8s.io/v1` Lease, and the gate writers check.
//!
//! The algorithm is client-go's: the holder renews `renewTime` every retry period; a
//! candidate takes the Lease over when it has seen the same `resourceVersion` for a
//! whole `leaseDurationSeconds` (measured on its own clock, so clock skew between
//! replicas does not matter), using the resourceVersion as precondition so only one
//! candidate wins. A leader that cannot renew within the renew deadline stops
//! writing. On shutdown the leader waits for in-flight writes, then clears
//! `holderIdentity` so a successor takes over at once.

use crate::config::LeaseConfig;
use crate::error::{Error, Result};
use futures::Stream;
use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{MicroTime, ObjectMeta};
use kube::api::{Api, PostParams};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::{OwnedRwLockReadGuard, RwLock, watch};
use tokio_stream::StreamExt;
use tokio_stream::wrappers::WatchStream;

/// Whether this replica may write, and the count of writes in flight.
#[derive(Clone)]
pub struct LeaderGate {
    leading: watch::Sender<bool>,
    stopping: Arc<AtomicBool>,
    in_flight: Arc<RwLock<()>>,
}

/// Held while a write is in flight; shutdown waits for every permit to drop.
pub struct WritePermit {
    _guard: OwnedRwLockReadGuard<()>,
}

impl Default for LeaderGate {
    fn default() -> Self {
        Self::new()
    }
}

impl LeaderGate {
    /// A gate that is closed (not leader).
    pub fn new() -> Self {
        Self {
            leading: watch::Sender::new(false),
            stopping: Arc::new(AtomicBool::new(false)),
            in_flight: Arc::new(RwLock::new(())),
        }
    }

    /// Whether this replica is the leader and not stopping.
    pub fn is_leader(&self) -> bool {
        *self.leading.borrow() && !self.stopping.load(Ordering::SeqCst)
    }

    /// A permit for one write, or [`Error::NotLeader`]. Hold it until the request returns.
    pub fn permit(&self) -> Result<WritePermit> {
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        let guard = self
            .in_flight
            .clone()
            .try_read_owned()
            .map_err(|_| Error::NotLeader)?;
        // Re-check: shutdown may have begun between the first check and the lock.
        if !self.is_leader() {
            return Err(Error::NotLeader);
        }
        Ok(WritePermit { _guard: guard })
    }

    /// Fires `()` each time this replica becomes leader (for `reconcile_all_on`).
    pub fn on_elected(&self) -> impl Stream<Item = ()> + Send + 'static {
        WatchStream::from_changes(self.leading.subscribe())
            .filter_map(|leading| leading.then_some(()))
    }

    /// A receiver of the leading flag.
    pub fn subscribe(&self) -> watch::Receiver<bool> {
        self.leading.subscribe()
    }

    pub(crate) fn set_leading(&self, leading: bool) {
        self.leading.send_if_modified(|current| {
            let changed = *current != leading;
            *current = leading;
            changed
        });
    }

    /// Stops new writes and waits until those in flight are done.
    pub async fn drain(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let _all = self.in_flight.write().await;
    }
}

fn now_micro() -> MicroTime {
    MicroTime(k8s_openapi::jiff::Timestamp::now())
}

/// What a candidate knows about the Lease between two tries.
struct Observed {
    resource_version: Option<String>,
    since: Instant,
}

/// Runs the election until `shutdown` turns true, then drains writes and releases the Lease.
pub async fn run(
    api: Api<Lease>,
    config: LeaseConfig,
    gate: LeaderGate,
    metrics: Arc<trellis_telemetry::OperatorMetrics>,
    mut shutdown: watch::Receiver<bool>,
) {
    let mut observed: Option<Observed> = None;
    let mut last_renew = Instant::now();
    loop {
        if *shutdown.borrow() {
            break;
        }
        match try_acquire_or_renew(&api, &config, &mut observed).await {
            Ok(true) => {
                last_renew = Instant::now();
                if !gate.is_leader() {
                    tracing::info!(lease = %config.name, identity = %config.identity, "became leader");
                }
                gate.set_leading(true);
            }
            Ok(false) => {
                if *gate.leading.borrow() {
                    tracing::warn!(lease = %config.name, "lost the lease to another replica");
                }
                gate.set_leading(false);
            }
            Err(e) => {
                if *gate.leading.borrow() && last_renew.elapsed() >= config.renew_deadline {
                    tracing::error!(error = %e, lease = %config.name, "could not renew the lease within the renew deadline; stopping writes");
                    gate.set_leading(false);
                } else {
                    tracing::warn!(error = %e, lease = %config.name, "lease request failed");
                }
            }
        }
        metrics.leader.set(i64::from(gate.is_leader()));
        let wait = if gate.is_leader() {
            config.retry_period
        } else {
            // Followers try at the same period; a little jitter avoids lock-step candidates.
            config.retry_period + Duration::from_millis(u64::from(rand_millis()))
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = shutdown.wait_for(|stop| *stop) => {}
        }
    }
    let was_leader = *gate.leading.borrow();
    gate.drain().await;
    gate.set_leading(false);
    metrics.leader.set(0);
    if was_leader {
        match release(&api, &config).await {
            Ok(()) => tracing::info!(lease = %config.name, "released the lease"),
            Err(e) => {
                tracing::warn!(error = %e, lease = %config.name, "could not release the lease")
            }
        }
    }
}

fn rand_millis() -> u16 {
    // Sub-second jitter from the clock's nanoseconds; no need for a CSPRNG here.
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    (nanos % 200) as u16
}

fn lease_seconds(d: Duration) -> i32 {
    i32::try_from(d.as_secs().max(1)).unwrap_or(i32::MAX)
}

/// One round: returns whether this replica holds the Lease afterwards.
async fn try_acquire_or_renew(
    api: &Api<Lease>,
    config: &LeaseConfig,
    observed: &mut Option<Observed>,
) -> Result<bool> {
    let object = format!("Lease/{}", config.name);
    let current = api
        .get_opt(&config.name)
        .await
        .map_err(Error::kube("reading", object.clone()))?;
    let Some(mut lease) = current else {
        let lease = Lease {
            metadata: ObjectMeta {
                name: Some(config.name.clone()),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: Some(config.identity.clone()),
                lease_duration_seconds: Some(lease_seconds(config.lease_duration)),
                acquire_time: Some(now_micro()),
                renew_time: Some(now_micro()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        };
        return match api.create(&PostParams::default(), &lease).await {
            Ok(_) => Ok(true),
            Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
            Err(e) => Err(Error::kube("creating", object)(e)),
        };
    };
    let spec = lease.spec.clone().unwrap_or_default();
    let holder = spec.holder_identity.clone().unwrap_or_default();
    let rv = lease.metadata.resource_version.clone();
    let duration = spec
        .lease_duration_seconds
        .map(|s| Duration::from_secs(u64::try_from(s.max(1)).unwrap_or(1)))
        .unwrap_or(config.lease_duration);
    // Track how long this exact version has been unchanged, on our own clock.
    let unchanged_for = match observed {
        Some(o) if o.resource_version == rv => o.since.elapsed(),
        _ => {
            *observed = Some(Observed {
                resource_version: rv.clone(),
                since: Instant::now(),
            });
            Duration::ZERO
        }
    };
    let mine = holder == config.identity;
    let free = holder.is_empty();
    if !mine && !free && unchanged_for < duration {
        return Ok(false);
    }
    let mut new_spec = spec.clone();
    if !mine {
        new_spec.acquire_time = Some(now_micro());
        new_spec.lease_transitions = Some(spec.lease_transitions.unwrap_or(0) + 1);
        new_spec.holder_identity = Some(config.identity.clone());
    }
    new_spec.lease_duration_seconds = Some(lease_seconds(config.lease_duration));
    new_spec.renew_time = Some(now_micro());
    lease.spec = Some(new_spec);
    // replace carries the resourceVersion: a concurrent writer makes this fail with 409.
    match api
        .replace(&config.name, &PostParams::default(), &lease)
        .await
    {
        Ok(updated) => {
            *observed = Some(Observed {
                resource_version: updated.metadata.resource_version.clone(),
                since: Instant::now(),
            });
            Ok(true)
        }
        Err(kube::Error::Api(s)) if s.code == 409 => Ok(false),
        Err(e) => Err(Error::kube("updating", object)(e)),
    }
}

/// Clears the holder so the next candidate takes over without waiting out the lease.
async fn release(api: &Api<Lease>, config: &LeaseConfig) -> Result<()> {
    let object = format!("Lease/{}", config.name);
    let Some(mut lease) = api
        .get_opt(&config.name)
        .await
        .map_err(Error::kube("reading", object.clone()))?
    else {
        return Ok(());
    };
    let mut spec = lease.spec.clone().unwrap_or_default();
    if spec.holder_identity.as_deref() != Some(config.identity.as_str()) {
        return Ok(());
    }
    spec.holder_identity = None;
    spec.lease_duration_seconds = Some(1);
    spec.renew_time = Some(now_micro());
    lease.spec = Some(spec);
    api.replace(&config.name, &PostParams::default(), &lease)
        .await
        .map_err(Error::kube("releasing", object))?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn permits_only_while_leading_and_drain_waits_for_writes() {
        let gate = LeaderGate::new();
        assert!(matches!(gate.permit(), Err(Error::NotLeader)));
        gate.set_leading(true);
        let permit = gate.permit().expect("leader may write");
        let drained = Arc::new(AtomicBool::new(false));
        let task = {
            let gate = gate.clone();
            let drained = drained.clone();
            tokio::spawn(async move {
                gate.drain().await;
                drained.store(true, Ordering::SeqCst);
            })
        };
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(
            !drained.load(Ordering::SeqCst),
            "drain must wait for the permit"
        );
        assert!(
            matches!(gate.permit(), Err(Error::NotLeader)),
            "no new writes while stopping"
        );
        drop(permit);
        task.await.unwrap();
        assert!(drained.load(Ordering::SeqCst));
    }
}
