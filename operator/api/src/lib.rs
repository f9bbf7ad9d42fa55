//! Mesh API types: Istio's networking and security kinds, and Trellis' own.
//!
//! - [`networking`], [`security`], [`mesh`]: the kinds, with serde, schemars
//!   and kube `CustomResource` derives; JSON shapes identical to Istio's.
//! - [`load`](load()): multi-document YAML → [`Resource`]s, unknown fields rejected.
#![forbid(unsafe_code)]

pub mod crd;
pub mod duration;
mod error;
pub mod grpc;
pub mod load;
pub mod mesh;
pub mod networking;
mod resource;
pub mod security;
pub mod status;
pub mod validate;

pub use duration::{Duration, parse_duration};
pub use error::{Error, LoadError, LoadErrors, ObjectRef};
pub use load::{load, load_all};
pub use resource::{Resource, is_cluster_scoped_kind};
pub use validate::{FieldError, validate};
