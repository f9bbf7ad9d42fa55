//! The Kubernetes side of `trellis operator`: the runtime every controller runs in,
//! leader election, and the reconcilers that keep the CA, the mesh namespaces and the
//! workload identities in the cluster.
//!
//! # Runtime
//!
//! [`run`] takes an [`OperatorConfig`], a `kube::Client` and a shutdown future. It
//! builds one shared [`Context`] and starts, as tasks:
//!
//! - the telemetry endpoint (`/metrics`, `/healthz`, `/readyz`, crate `trellis-telemetry`);
//! - leader election on a `coordination.k8s.io` Lease ([`leader`]);
//! - the CA loader ([`ca_store`]): `cacerts` or `trellis-ca` in the operator's namespace;
//! - each controller listed in [`runtime::controllers`].
//!
//! Every replica runs every controller's watches (so caches are warm and `/readyz`
//! means something), but **only the leader writes**: each write goes through
//! [`LeaderGate::permit`], which fails with [`Error::NotLeader`] on a follower and
//! registers the write as in flight, so that shutdown waits for it before releasing
//! the Lease. When a replica becomes leader, every controller reconciles all its
//! objects again ([`LeaderGate::on_elected`]).
//!
//! # Adding a controller
//!
//! 1. Write a module with `pub async fn run(ctx: Arc<Context>)` that builds a
//!    `kube::runtime::Controller` (or another loop) and returns when
//!    `ctx.shutdown()` fires; see [`namespaces`] for the smallest example.
//! 2. In `reconcile`, start with `let _timer = ctx.telemetry.metrics.reconcile_started(NAME);`,
//!    decide from the caches (pure functions, unit tested), then write only through
//!    `let _permit = ctx.leader.permit()?;` followed by the API call, and count it with
//!    `ctx.telemetry.metrics.api_write(NAME)`. On a follower return
//!    `Action::await_change()`: the controller reconciles everything again when elected.
//! 3. Use [`backoff::error_policy`] (per-object exponential backoff and the error
//!    metric) as the controller's error policy.
//! 4. Wire it with `.reconcile_all_on(ctx.leader.on_elected())` and, if it depends on
//!    the CA, `ctx.ca.on_change()`; register a readiness gate for each cache
//!    (`ctx.telemetry.readiness.gate("cache/<kind>")`) and open it once the first
//!    list is in (see [`runtime::cache_synced`]).
//! 5. Add it to [`runtime::controllers`] and the API calls it makes to `rbac.yaml`
//!    (the RBAC test fails otherwise).
//!
//! Writes use server-side apply under field manager [`FIELD_MANAGER`] or `create`,
//! so an unchanged object costs no write and a changed one exactly one.
//!
//! # State other subsystems read
//!
//! - `ctx.ca.status()`: the CA in use ([`CaSnapshot`]: mode, source Secret, root
//!   fingerprint and expiry, trust bundle, previous roots while a rotation is under way)
//!   and `problem`, the last reason a CA Secret was rejected (e.g. a broken `cacerts`);
//!   `ctx.ca.on_change()` fires when the CA or its bundle changes.
//! - `ctx.identities`: per identity Secret its `notAfter` and root, and per
//!   ServiceAccount the last issue failure: counts, earliest expiry and failures per
//!   namespace, and rotation progress (`not_on_root`).
//! - `ctx.leader`: whether this replica leads (gate every write with `permit()`).
//! - `ctx.identity_settings`: the trust domain and workload certificate lifetime in
//!   force ([`identity_settings`]: `MeshConfig/default` over the flags). The CA signs for
//!   that trust domain, so `ctx.ca.current().ca.trust_domain()` is the one in force; a
//!   change is a new CA generation and reissues every identity at `rotation_rate`.
//!
//! # Root rotation
//!
//! A new CA (a `cacerts` Secret appears or changes, or disappears in favour of
//! `trellis-ca`) keeps the roots trusted so far in the bundle; every identity whose
//! chain does not lead to the new root is reissued at `rotation_rate` per second; once
//! none is left and `rotation_grace` has passed, the previous roots leave the bundle and
//! every Secret and root ConfigMap is rewritten with the smaller one. The leader keeps
//! that state in Secret `trellis-ca-rotation` ([`ca_rotation`]: public certificates and
//! times only) before it acts on it, so a restart or a new leader resumes the rotation
//! instead of dropping the old roots.
#![forbid(unsafe_code)]

pub mod backoff;
pub mod ca_rotation;
pub mod ca_state;
pub mod ca_store;
pub mod config;
pub mod context;
pub mod error;
pub mod events;
pub mod identity;
pub mod identity_plan;
pub mod identity_settings;

pub mod leader;
pub mod mesh;
pub mod namespaces;
pub mod rbac;

pub mod runtime;
pub mod selected_pods;

pub use ca_state::{CaHandle, CaMode, CaSnapshot, CaStatus};
pub use config::{LeaseConfig, OperatorConfig};
pub use context::Context;
pub use error::Error;
pub use leader::{LeaderGate, WritePermit};
pub use runtime::run;

/// Field manager of every server-side apply.
pub const FIELD_MANAGER: &str = "trellis";
/// Label on every object the operator creates.
pub const MANAGED_BY_LABEL: &str = "app.kubernetes.io/managed-by";
/// Value of [`MANAGED_BY_LABEL`].
pub const MANAGED_BY: &str = "trellis";
