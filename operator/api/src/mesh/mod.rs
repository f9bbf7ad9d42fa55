//! `mesh.trellis.dev`: Trellis' own kinds.

mod config;
mod status;

pub use config::*;
pub use status::*;

/// The API group of Trellis' own kinds.
pub const GROUP: &str = "mesh.trellis.dev";
/// The served and stored version.
pub const VERSION: &str = "v1alpha1";
