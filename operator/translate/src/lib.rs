//! Translation of the mesh model into the Envoy resources of one proxy.
#![forbid(unsafe_code)]

pub mod security;
