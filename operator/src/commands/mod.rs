//! The subcommands of `trellis`, one module each.
pub mod demo;
pub mod demo_app;
pub mod status;
pub mod ca;
pub mod crds;
pub mod validate;
pub mod operator;
