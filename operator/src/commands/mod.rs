//! The subcommands of `trellis`, one module each.
pub mod ca;
pub mod crds;
pub mod demo;
pub mod demo_app;
pub mod inject;
pub mod operator;
pub mod operator_webhook;
pub mod proxy_config;
pub mod proxy_init;
pub mod status;
pub mod up;
pub mod validate;
