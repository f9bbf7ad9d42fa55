//! The xDS server: aggregated discovery over gRPC for sidecars and gateways.
#![forbid(unsafe_code)]
