//! Universal mode runtime for `trellis up`: everything that touches processes,
//! files and sockets on the local machine, kept apart from the pure crates.
//!
//! - [`state`]: the state directory layout and atomic writes (including the
//!   Kubernetes secret-volume `..data` layout for certificate directories).
//! - [`identities`]: the mesh root and per-service-account certificates on disk.
//! - [`assignments`]: ports handed out once and reused across restarts.
//! - [`backend`]: the model and translator behind the loop (objects -> snapshots).
//! - [`mesh`]: the control loop of `trellis up`, given a model/translator backend.
//! - [`mesh_config`]: the certificate lifetime and Envoy log level a MeshConfig sets.
//! - [`plan`]: which Envoys run, on which addresses and ports.
//! - [`fleet`]: keeps the running Envoys equal to the plan; status rows.
//! - [`proxy_config`]: per-proxy dumps of what xDS last sent, for `trellis proxy-config`.
//! - [`supervisor`]: runs Envoy processes that die with their parent.
//! - [`bootstrap`]: ADS bootstraps with file-based SDS for workload certificates.
//! - [`config_set`]: the directory's resources per file, load errors, object changes.
//! - [`watcher`]: turns edits in the config directory into apply/delete events.
//! - [`status`]: the `status.json` document and its table rendering.
//! - [`demo`]: `trellis demo`, the bundled example on a live mesh with its checks.
//! - [`demo_app`]: the HTTP service used by the bundled example.
#![forbid(unsafe_code)]

pub mod assignments;
pub mod backend;
pub mod bootstrap;
pub mod config_set;
pub mod demo;
pub mod demo_app;
pub mod error;
pub mod fleet;
pub mod identities;
pub mod mesh;
pub mod mesh_config;
pub mod plan;
pub mod proxy_config;
pub mod state;
pub mod status;
pub mod supervisor;
pub mod watcher;

pub use error::LocalError;
