//! The mesh certificate authority as a pure library: no I/O, no clock reads.
#![forbid(unsafe_code)]
