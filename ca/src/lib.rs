//! The mesh certificate authority as a pure library: no file, network or clock
//! access. Time (`now: SystemTime`) is a parameter of every call that needs it;
//! randomness is given once, to the [`CertificateAuthority`] (a [`Rng`], normally
//! `Arc::new(SystemRandom::new())` created at the program's edge).
//!
//! What callers do with it:
//! - create a root ([`CertificateAuthority::new_self_signed`]) or load Istio's
//!   plugged-in `cacerts` ([`CertificateAuthority::from_cacerts`]), persist it with
//!   [`CertificateAuthority::to_material`];
//! - issue workload identities ([`CertificateAuthority::issue_workload`],
//!   [`CertificateAuthority::issue_for_service_account`]), serving certificates
//!   ([`CertificateAuthority::issue_server_cert`]), sign CSRs
//!   ([`CertificateAuthority::sign_csr`]);
//! - decide renewals ([`renewal_due`], [`renewal_time`]);
//! - rotate roots through [`RootRotation`]'s states;
//! - inspect and verify certificates ([`CertificateInfo`], [`TrustBundle`]).
//!
//! Private keys only leave as [`SecretPem`], whose `Debug`/`Display` print `[redacted]`.
#![forbid(unsafe_code)]

mod authority;
mod bundle;
mod cert;
mod csr;
mod der;
mod error;
mod issue;
mod key;
mod pem_io;
mod renewal;
mod rotation;
mod spiffe;

pub use authority::{
    CLOCK_SKEW_BACKDATE, CaFiles, CaMaterial, CertificateAuthority, DEFAULT_ROOT_TTL,
    IssuedCertificate, IssuedIdentity, RootOptions,
};
pub use bundle::TrustBundle;
pub use cert::{CertificateInfo, format_time};
pub use error::{CaError, Result};
pub use issue::DEFAULT_WORKLOAD_TTL;
pub use key::{KeyAlgorithm, PrivateKey, Rng, SecretPem};
pub use renewal::{RenewalPolicy, RenewalReason, WantedIdentity, renewal_due, renewal_time};
pub use ring::rand::{SecureRandom, SystemRandom};
pub use rotation::RootRotation;
pub use spiffe::{SpiffeId, TrustDomain};
