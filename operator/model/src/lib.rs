//! The mesh index: a pure, synchronous model fed by apply/delete events.
#![forbid(unsafe_code)]
