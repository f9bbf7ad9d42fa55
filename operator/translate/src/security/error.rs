//! Errors of the security builders.
use std::fmt;

/// The object an error is attached to: `kind/namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ObjectRef {
    pub kind: String,
    pub namespace: String,
    pub name: String,
}

impl ObjectRef {
    pub fn new(kind: &str, namespace: &str, name: &str) -> Self {
        ObjectRef {
            kind: kind.to_string(),
            namespace: namespace.to_string(),
            name: name.to_string(),
        }
    }
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}/{}", self.kind, self.namespace, self.name)
    }
}

/// A security resource that cannot be translated. The resource is left out;
/// everything else still applies.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecurityError {
    #[error("{object}: {field}: {reason}")]
    Unsupported {
        object: ObjectRef,
        field: String,
        reason: String,
    },
    /// `reason` quotes the offending value.
    #[error("{object}: {field}: {reason}")]
    Invalid {
        object: ObjectRef,
        field: String,
        reason: String,
    },
}

impl From<SecurityError> for crate::TranslateError {
    fn from(err: SecurityError) -> Self {
        let message = err.to_string();
        let (object, path) = match err {
            SecurityError::Unsupported { object, field, .. }
            | SecurityError::Invalid { object, field, .. } => (object, field),
        };
        crate::TranslateError {
            kind: object.kind,
            namespace: object.namespace,
            name: object.name,
            path,
            message,
            code: crate::ErrorCode::InvalidValue,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_to_translate_error_with_object_and_path() {
        let err = SecurityError::Unsupported {
            object: ObjectRef::new("AuthorizationPolicy", "shop", "ext"),
            field: "spec.action".into(),
            reason: "CUSTOM is not supported".into(),
        };
        let t: crate::TranslateError = err.into();
        assert_eq!(
            (
                t.kind.as_str(),
                t.namespace.as_str(),
                t.name.as_str(),
                t.path.as_str()
            ),
            ("AuthorizationPolicy", "shop", "ext", "spec.action")
        );
        assert!(t.to_string().contains("CUSTOM"));
    }
}
