/// Why an object could not be taken into the model.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ModelError {
    #[error("{kind}/{namespace}/{name}: {path}: {message}")]
    Invalid {
        kind: String,
        namespace: String,
        name: String,
        path: String,
        message: String,
    },
}
