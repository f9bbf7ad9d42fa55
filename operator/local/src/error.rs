//! The one error type of this crate.
use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum LocalError {
    #[error("{op} {path}: {source}")]
    Io {
        op: &'static str,
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{path}: invalid JSON: {source}")]
    Json {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error(
        "identity {namespace}/{service_account}: {field} {value:?} is not a safe path component"
    )]
    UnsafeIdentity {
        namespace: String,
        service_account: String,
        field: &'static str,
        value: String,
    },
    #[error("file name {0:?} in a certificate directory must be a plain file name")]
    UnsafeFileName(String),
    #[error("starting process {name} ({program}): {source}")]
    Spawn {
        name: String,
        program: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("process {0} is already supervised")]
    DuplicateProcess(String),
    #[error("the supervisor thread has stopped")]
    SupervisorGone,
    #[error("demo-app: {field}: {message}")]
    DemoConfig {
        field: &'static str,
        message: String,
    },
    #[error("demo-app: calling {target}: {message}")]
    DemoCall { target: String, message: String },
    #[error("{object}: {source}")]
    Ca {
        object: String,
        #[source]
        source: trellis_ca::CaError,
    },
    #[error("xDS server: {source}")]
    Xds {
        #[source]
        source: trellis_xds::XdsError,
    },
    #[error("{what} name {value:?} is not a safe path component")]
    UnsafeName { what: String, value: String },
    #[error("demo: {what}: {message}")]
    Demo { what: String, message: String },
    #[error("no free local port: {0}")]
    NoFreePort(#[source] std::io::Error),
}

impl LocalError {
    pub(crate) fn io(op: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        LocalError::Io {
            op,
            path: path.into(),
            source,
        }
    }
}

pub type Result<T, E = LocalError> = std::result::Result<T, E>;
