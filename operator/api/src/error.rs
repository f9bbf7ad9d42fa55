//! The crate's error type.

use std::fmt;

/// Everything that can go wrong in this crate.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Error {
    #[error("empty duration")]
    EmptyDuration,
    #[error("negative durations are not allowed")]
    NegativeDuration,
    #[error(
        "invalid duration {0:?}: expected numbers with units (h, m, s, ms, us, ns), e.g. \"1.5s\" or \"1h30m\""
    )]
    DurationSyntax(String),
    #[error("duration {0:?} is too large")]
    DurationOverflow(String),
    #[error("{0}")]
    Load(LoadErrors),
}

/// A Kubernetes object reference for messages: `kind/namespace/name`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ObjectRef {
    pub kind: String,
    /// `None` for cluster-scoped kinds.
    pub namespace: Option<String>,
    pub name: String,
}

impl fmt::Display for ObjectRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.namespace {
            Some(ns) => write!(f, "{}/{}/{}", self.kind, ns, self.name),
            None => write!(f, "{}/{}", self.kind, self.name),
        }
    }
}

/// A document of a YAML source that could not be turned into a [`crate::Resource`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    /// File name (or other label) of the source.
    pub source_name: String,
    /// 1-based index of the YAML document in the source.
    pub document: usize,
    /// The object, when its kind and name could be read.
    pub object: Option<ObjectRef>,
    /// Field path, e.g. `spec.http[0].route`; empty for the document itself.
    pub path: String,
    pub message: String,
}

impl fmt::Display for LoadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.object {
            Some(object) => write!(f, "{object}: ")?,
            None => write!(f, "{} (document {}): ", self.source_name, self.document)?,
        }
        if !self.path.is_empty() {
            write!(f, "{}: ", self.path)?;
        }
        f.write_str(&self.message)
    }
}

/// Every load error of one or more sources.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LoadErrors(pub Vec<LoadError>);

impl fmt::Display for LoadErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, error) in self.0.iter().enumerate() {
            if i > 0 {
                writeln!(f)?;
            }
            write!(f, "{error}")?;
        }
        Ok(())
    }
}
