//! Mesh API types: Istio's networking and security kinds, and Trellis' own.
#![forbid(unsafe_code)]
