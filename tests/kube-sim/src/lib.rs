//! Kubernetes API simulator (test infrastructure only).
#![forbid(unsafe_code)]
// ApiError (a full Status) is the one error type, returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod apply;
pub mod applying;
pub mod discovery;
pub mod error;
pub mod handlers;
pub mod http;
pub mod jsonpath;
pub mod kubeconfig;
pub mod kubectl;
pub mod meta;
pub mod openapi;
pub mod patch;
pub mod patching;
pub mod pipeline;
pub mod protobuf;
pub mod registry;
pub mod routing;
pub mod scale;
pub mod schema;
pub mod selectors;
pub mod server;
pub mod store;
pub mod table;
pub mod testserver;
pub mod tls;
pub mod watch;
pub mod webhooks;

pub use kubectl::{Kubectl, kubectl_bin};
pub use testserver::{Options, TestServer};
