//! The one error type of the controllers.

/// What can go wrong in a reconcile. Messages name the object; never a key.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// This replica is not the leader (or is shutting down): it must not write.
    #[error("not the leader: writes are left to the replica holding the Lease")]
    NotLeader,
    /// An API request failed.
    #[error("{action} {object}: {source}")]
    Kube {
        action: &'static str,
        object: String,
        #[source]
        source: kube::Error,
    },
    /// The CA refused or failed.
    #[error("{object}: {source}")]
    Ca {
        object: String,
        #[source]
        source: trellis_ca::CaError,
    },
    /// No CA is loaded yet.
    #[error("no CA loaded yet")]
    NoCa,
    /// An object is malformed.
    #[error("{object}: field {field}: {reason}")]
    Invalid {
        object: String,
        field: String,
        reason: String,
    },
    /// Telemetry could not start.
    #[error(transparent)]
    Telemetry(#[from] trellis_telemetry::TelemetryError),
}

impl Error {
    /// Wraps a kube error with what was being done to which object.
    pub fn kube(
        action: &'static str,
        object: impl Into<String>,
    ) -> impl FnOnce(kube::Error) -> Self {
        let object = object.into();
        move |source| Error::Kube {
            action,
            object,
            source,
        }
    }
}

/// Result of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;
