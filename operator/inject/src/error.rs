//! The one error type of this crate.

/// Why a pod could not be injected. Every variant names the pod
/// (`Pod/<namespace>/<name>`) and the field path at fault.
#[derive(Debug, thiserror::Error)]
pub enum InjectError {
    #[error("{object}: spec: the pod has no spec to inject into")]
    MissingSpec { object: String },
    #[error("{object}: metadata.annotations[\"{annotation}\"]: invalid value {value:?}: {reason}")]
    InvalidAnnotation {
        object: String,
        annotation: String,
        value: String,
        reason: String,
    },
    #[error("{object}: {path}: {message}")]
    InvalidTemplate {
        object: String,
        path: String,
        message: String,
    },
    #[error("{object}: the pod could not be converted to JSON to compute the patch: {message}")]
    Serialize { object: String, message: String },
}
