//! The one error type of the crate.
//!
//! Every variant names the object it is about (a SPIFFE id, a PEM source such as a
//! file name, a certificate subject) so that a caller can print it as one line.
//! No variant ever carries private key material.

/// Everything that can go wrong in the certificate authority.
#[derive(Debug, thiserror::Error, Clone, PartialEq, Eq)]
pub enum CaError {
    /// A SPIFFE id or trust domain that breaks the SPIFFE spec.
    #[error("invalid SPIFFE id {input:?}: {reason}")]
    InvalidSpiffeId { input: String, reason: String },

    /// PEM text that cannot be read: truncated, wrong block type, empty.
    #[error("{source_name}: {reason}")]
    Pem { source_name: String, reason: String },

    /// A certificate that cannot be parsed or breaks a rule the caller relies on.
    #[error("{source_name}: certificate {subject}: {reason}")]
    Certificate {
        source_name: String,
        subject: String,
        reason: String,
    },

    /// A private key that cannot be used. The reason never contains key bytes.
    #[error("{source_name}: private key: {reason}")]
    Key { source_name: String, reason: String },

    /// A certificate signing request that is malformed or asks for more than allowed.
    #[error("certificate signing request for {identity}: {reason}")]
    Csr { identity: String, reason: String },

    /// A request the CA refuses: a TTL of zero, an issuer that expired, a DNS name that is invalid.
    #[error("cannot issue for {subject}: {reason}")]
    Issue { subject: String, reason: String },

    /// A chain that does not verify against a trust bundle.
    #[error("certificate {subject} does not verify against the trust bundle: {reason}")]
    Untrusted { subject: String, reason: String },

    /// A root rotation step that is not allowed from the current phase.
    #[error("root rotation: cannot {action} while {phase}: {reason}")]
    Rotation {
        action: &'static str,
        phase: &'static str,
        reason: String,
    },

    /// Randomness or signing failed inside the crypto library.
    #[error("crypto failure while {0}")]
    Crypto(String),
}

/// The crate's result type.
pub type Result<T, E = CaError> = std::result::Result<T, E>;
