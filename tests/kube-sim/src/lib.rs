//! Kubernetes API simulator (test infrastructure only).
#![forbid(unsafe_code)]
// ApiError (a full Status) is the one error type, returned by value to the HTTP layer.
#![allow(clippy::result_large_err)]

pub mod admission;
pub mod apply;
pub mod error;
pub mod jsonpath;
pub mod patch;
pub mod schema;
pub mod selectors;
pub mod table;
pub mod applying;
pub mod discovery;
pub mod handlers;
pub mod http;
pub mod kubeconfig;
pub mod meta;
pub mod openapi;
pub mod patching;
pub mod pipeline;
pub mod registry;
pub mod routing;
pub mod server;
pub mod store;
pub mod tls;
pub mod watch;
pub mod webhooks;
pub mod testserver;

pub use testserver::{Options, TestServer};
