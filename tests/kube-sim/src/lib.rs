//! Kubernetes API simulator (test infrastructure only).
#![forbid(unsafe_code)]

pub mod admission;
pub mod apply;
pub mod error;
pub mod jsonpath;
pub mod patch;
pub mod schema;
pub mod selectors;
pub mod table;
