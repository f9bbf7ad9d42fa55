//! gRPC status codes by the names Istio takes for them (`fault.abort.grpcStatus`).

/// The names of the gRPC status codes, indexed by code
/// (<https://github.com/grpc/grpc/blob/master/doc/statuscodes.md>).
pub const STATUS_NAMES: [&str; 17] = [
    "OK",
    "CANCELLED",
    "UNKNOWN",
    "INVALID_ARGUMENT",
    "DEADLINE_EXCEEDED",
    "NOT_FOUND",
    "ALREADY_EXISTS",
    "PERMISSION_DENIED",
    "RESOURCE_EXHAUSTED",
    "FAILED_PRECONDITION",
    "ABORTED",
    "OUT_OF_RANGE",
    "UNIMPLEMENTED",
    "INTERNAL",
    "UNAVAILABLE",
    "DATA_LOSS",
    "UNAUTHENTICATED",
];

/// The code of gRPC status `name` (exact spelling, as Istio), if it is one.
pub fn status_code(name: &str) -> Option<u32> {
    STATUS_NAMES
        .iter()
        .position(|n| *n == name)
        .and_then(|i| u32::try_from(i).ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_map_to_their_codes() {
        assert_eq!(status_code("OK"), Some(0));
        assert_eq!(status_code("UNAVAILABLE"), Some(14));
        assert_eq!(status_code("UNAUTHENTICATED"), Some(16));
        assert_eq!(status_code("unavailable"), None);
        assert_eq!(status_code("14"), None);
    }
}
