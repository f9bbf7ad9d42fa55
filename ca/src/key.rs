//! Private keys: generation (ECDSA P-256 through ring, RSA through the `rsa` crate),
//! loading from PEM (PKCS#8, SEC1, PKCS#1), signing for rcgen.
//!
//! Key bytes live in `Zeroizing` buffers and are wiped on drop. ring's own key
//! structures do not zeroize; that is the limit of "where the crates allow".
//! `Debug` and `Display` of every key type print `[redacted]`.

use crate::der;
use crate::error::{CaError, Result};
use crate::pem_io;
use ring::rand::SecureRandom;
use ring::signature::{self, EcdsaKeyPair, KeyPair as _, RsaKeyPair};
use std::fmt;
use std::str::FromStr;
use zeroize::Zeroizing;

/// The key types the CA generates and accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum KeyAlgorithm {
    /// ECDSA on NIST P-256 with SHA-256 (the default; all workload keys).
    EcdsaP256,
    /// RSA with the modulus size in bits, signing PKCS#1 v1.5 with SHA-256.
    Rsa { bits: u32 },
}

impl KeyAlgorithm {
    /// RSA-2048.
    pub const RSA_2048: Self = Self::Rsa { bits: 2048 };
    /// RSA-3072.
    pub const RSA_3072: Self = Self::Rsa { bits: 3072 };

    fn rcgen_algorithm(self) -> &'static rcgen::SignatureAlgorithm {
        match self {
            Self::EcdsaP256 => &rcgen::PKCS_ECDSA_P256_SHA256,
            Self::Rsa { .. } => &rcgen::PKCS_RSA_SHA256,
        }
    }
}

impl fmt::Display for KeyAlgorithm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::EcdsaP256 => f.write_str("ecdsa-p256"),
            Self::Rsa { bits } => write!(f, "rsa-{bits}"),
        }
    }
}

impl FromStr for KeyAlgorithm {
    type Err = CaError;
    fn from_str(s: &str) -> Result<Self> {
        match s {
            "ecdsa-p256" => Ok(Self::EcdsaP256),
            "rsa-2048" => Ok(Self::RSA_2048),
            "rsa-3072" => Ok(Self::RSA_3072),
            "rsa-4096" => Ok(Self::Rsa { bits: 4096 }),
            other => Err(CaError::Key {
                source_name: "key algorithm".into(),
                reason: format!(
                    "unsupported key type {other:?} (use ecdsa-p256, rsa-2048, rsa-3072 or rsa-4096)"
                ),
            }),
        }
    }
}

/// A PEM-encoded secret (a private key). Wiped on drop; never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct SecretPem(Zeroizing<String>);

impl SecretPem {
    pub(crate) fn new(pem: String) -> Self {
        Self(Zeroizing::new(pem))
    }

    /// The PEM text, for writing to a file or a Secret. Do not log it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl fmt::Display for SecretPem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

enum Signer {
    Ecdsa(EcdsaKeyPair),
    Rsa(RsaKeyPair),
}

/// A CA signing key. Holds the PKCS#8 encoding (zeroized on drop) and ring's key pair.
pub struct PrivateKey {
    pkcs8: Zeroizing<Vec<u8>>,
    algorithm: KeyAlgorithm,
    signer: Signer,
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey({}, [redacted])", self.algorithm)
    }
}

impl fmt::Display for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

fn key_error(source_name: &str, reason: impl Into<String>) -> CaError {
    CaError::Key {
        source_name: source_name.to_string(),
        reason: reason.into(),
    }
}

/// Adapts ring's RNG to the `rand_core` traits the `rsa` crate wants.
struct RingRng<'a>(&'a dyn SecureRandom);

impl rand_core::RngCore for RingRng<'_> {
    fn next_u32(&mut self) -> u32 {
        let mut b = [0u8; 4];
        self.fill_bytes(&mut b);
        u32::from_le_bytes(b)
    }
    fn next_u64(&mut self) -> u64 {
        let mut b = [0u8; 8];
        self.fill_bytes(&mut b);
        u64::from_le_bytes(b)
    }
    fn fill_bytes(&mut self, dest: &mut [u8]) {
        // The trait cannot return an error; a failing system RNG is not recoverable.
        self.0
            .fill(dest)
            .expect("system random number generator failed");
    }
    fn try_fill_bytes(&mut self, dest: &mut [u8]) -> std::result::Result<(), rand_core::Error> {
        self.0
            .fill(dest)
            .map_err(|_| rand_core::Error::new("ring SecureRandom failed"))
    }
}

impl rand_core::CryptoRng for RingRng<'_> {}

impl PrivateKey {
    /// Generates a new key of the given type.
    pub fn generate(algorithm: KeyAlgorithm, rng: &dyn SecureRandom) -> Result<Self> {
        let pkcs8 = match algorithm {
            KeyAlgorithm::EcdsaP256 => {
                let doc =
                    EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, rng)
                        .map_err(|_| CaError::Crypto("generating an ECDSA P-256 key".into()))?;
                Zeroizing::new(doc.as_ref().to_vec())
            }
            KeyAlgorithm::Rsa { bits } => {
                if !(2048..=4096).contains(&bits) {
                    return Err(key_error(
                        "key algorithm",
                        format!("RSA size {bits} not supported (2048..=4096)"),
                    ));
                }
                use rsa::pkcs8::EncodePrivateKey;
                let key = rsa::RsaPrivateKey::new(&mut RingRng(rng), bits as usize)
                    .map_err(|e| CaError::Crypto(format!("generating an RSA-{bits} key: {e}")))?;
                let doc = key
                    .to_pkcs8_der()
                    .map_err(|e| CaError::Crypto(format!("encoding an RSA-{bits} key: {e}")))?;
                Zeroizing::new(doc.as_bytes().to_vec())
            }
        };
        Self::from_pkcs8("generated key", pkcs8, rng)
    }

    /// Loads a key from PEM: `PRIVATE KEY` (PKCS#8), `EC PRIVATE KEY` (SEC1) or
    /// `RSA PRIVATE KEY` (PKCS#1). Encrypted keys and other key types are refused
    /// with a reason that names `source_name`.
    pub fn from_pem(source_name: &str, text: &str, rng: &dyn SecureRandom) -> Result<Self> {
        let blocks = pem_io::parse_blocks(source_name, text)?;
        let mut keys = blocks.into_iter().filter(|b| b.tag != "EC PARAMETERS");
        let block = keys
            .next()
            .ok_or_else(|| key_error(source_name, "no private key block found"))?;
        if keys.next().is_some() {
            return Err(key_error(
                source_name,
                "more than one PEM block; expected exactly one private key",
            ));
        }
        let contents = Zeroizing::new(block.contents);
        if block.encrypted {
            return Err(key_error(
                source_name,
                "encrypted private keys are not supported; decrypt it first (openssl pkey -in KEY -out KEY.plain)",
            ));
        }
        let pkcs8 = match block.tag.as_str() {
            "PRIVATE KEY" => Zeroizing::new(contents.to_vec()),
            "EC PRIVATE KEY" => {
                Zeroizing::new(der::pkcs8_wrap(&der::ec_p256_algorithm(), &contents))
            }
            "RSA PRIVATE KEY" => Zeroizing::new(der::pkcs8_wrap(&der::rsa_algorithm(), &contents)),
            "CERTIFICATE" => {
                return Err(key_error(
                    source_name,
                    "found a CERTIFICATE block where a private key was expected",
                ));
            }
            other => {
                return Err(key_error(
                    source_name,
                    format!(
                        "PEM block {other:?} is not a supported private key (PRIVATE KEY, EC PRIVATE KEY, RSA PRIVATE KEY)"
                    ),
                ));
            }
        };
        Self::from_pkcs8(source_name, pkcs8, rng)
    }

    fn from_pkcs8(
        source_name: &str,
        pkcs8: Zeroizing<Vec<u8>>,
        rng: &dyn SecureRandom,
    ) -> Result<Self> {
        let ecdsa =
            EcdsaKeyPair::from_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, &pkcs8, rng);
        let (signer, algorithm) = match ecdsa {
            Ok(k) => (Signer::Ecdsa(k), KeyAlgorithm::EcdsaP256),
            Err(ec_err) => match RsaKeyPair::from_pkcs8(&pkcs8) {
                Ok(k) => {
                    let bits = k.public().modulus_len() as u32 * 8;
                    (Signer::Rsa(k), KeyAlgorithm::Rsa { bits })
                }
                Err(rsa_err) => {
                    return Err(key_error(
                        source_name,
                        format!(
                            "unsupported or malformed key (only ECDSA P-256 and RSA 2048..8192 are supported; as ECDSA: {ec_err}; as RSA: {rsa_err})"
                        ),
                    ));
                }
            },
        };
        Ok(Self {
            pkcs8,
            algorithm,
            signer,
        })
    }

    /// The key type.
    pub fn algorithm(&self) -> KeyAlgorithm {
        self.algorithm
    }

    /// The public key as it appears in a certificate's SubjectPublicKeyInfo bit string.
    pub fn public_key_raw(&self) -> &[u8] {
        match &self.signer {
            Signer::Ecdsa(k) => k.public_key().as_ref(),
            Signer::Rsa(k) => k.public_key().as_ref(),
        }
    }

    /// The key as PKCS#8 PEM, for persisting.
    pub fn to_pem(&self) -> SecretPem {
        SecretPem::new(pem_io::encode("PRIVATE KEY", &self.pkcs8))
    }

    pub(crate) fn sign(&self, rng: &dyn SecureRandom, msg: &[u8]) -> Result<Vec<u8>> {
        match &self.signer {
            Signer::Ecdsa(k) => k
                .sign(rng, msg)
                .map(|s| s.as_ref().to_vec())
                .map_err(|_| CaError::Crypto("signing with the ECDSA CA key".into())),
            Signer::Rsa(k) => {
                let mut sig = vec![0u8; k.public().modulus_len()];
                k.sign(&signature::RSA_PKCS1_SHA256, rng, msg, &mut sig)
                    .map_err(|_| CaError::Crypto("signing with the RSA CA key".into()))?;
                Ok(sig)
            }
        }
    }
}

/// Randomness handed to the CA by its caller (the system RNG at the program's edge).
pub type Rng = std::sync::Arc<dyn SecureRandom + Send + Sync>;

/// A CA key together with the randomness it signs with, in the shape rcgen wants.
pub(crate) struct CaSigner {
    pub key: PrivateKey,
    pub rng: Rng,
}

impl rcgen::PublicKeyData for CaSigner {
    fn der_bytes(&self) -> &[u8] {
        self.key.public_key_raw()
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        self.key.algorithm.rcgen_algorithm()
    }
}

impl rcgen::SigningKey for CaSigner {
    fn sign(&self, msg: &[u8]) -> std::result::Result<Vec<u8>, rcgen::Error> {
        self.key
            .sign(&*self.rng, msg)
            .map_err(|_| rcgen::Error::RingUnspecified)
    }
}

/// A freshly generated workload key: PKCS#8 PEM plus the public point, without
/// building a ring signing key (which would cost a second scalar multiplication).
pub(crate) struct LeafKey {
    pub pem: SecretPem,
    public: [u8; P256_POINT_LEN],
}

const P256_POINT_LEN: usize = 65;

impl LeafKey {
    pub fn generate(rng: &dyn SecureRandom) -> Result<Self> {
        let doc = EcdsaKeyPair::generate_pkcs8(&signature::ECDSA_P256_SHA256_ASN1_SIGNING, rng)
            .map_err(|_| CaError::Crypto("generating a workload key".into()))?;
        let bytes = Zeroizing::new(doc.as_ref().to_vec());
        // ring's PKCS#8 v1 for P-256 ends with the `[1] publicKey` bit string holding
        // the uncompressed point 04||X||Y; the unit test below pins that layout.
        let start = bytes
            .len()
            .checked_sub(P256_POINT_LEN)
            .filter(|s| bytes[*s] == 0x04)
            .ok_or_else(|| CaError::Crypto("reading the generated workload public key".into()))?;
        let mut public = [0u8; P256_POINT_LEN];
        public.copy_from_slice(&bytes[start..]);
        Ok(Self {
            pem: SecretPem::new(pem_io::encode("PRIVATE KEY", &bytes)),
            public,
        })
    }
}

impl rcgen::PublicKeyData for LeafKey {
    fn der_bytes(&self) -> &[u8] {
        &self.public
    }
    fn algorithm(&self) -> &'static rcgen::SignatureAlgorithm {
        &rcgen::PKCS_ECDSA_P256_SHA256
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::rand::SystemRandom;

    #[test]
    fn leaf_public_key_matches_ring() {
        let rng = SystemRandom::new();
        let leaf = LeafKey::generate(&rng).unwrap();
        let loaded = PrivateKey::from_pem("leaf", leaf.pem.expose(), &rng).unwrap();
        assert_eq!(loaded.public_key_raw(), &leaf.public[..]);
    }

    #[test]
    fn debug_and_display_hide_key_material() {
        let rng = SystemRandom::new();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, &rng).unwrap();
        let pem = key.to_pem();
        let body: String = pem.expose().lines().nth(1).unwrap().to_string();
        for shown in [
            format!("{key:?}"),
            format!("{key}"),
            format!("{pem:?}"),
            format!("{pem}"),
        ] {
            assert!(shown.contains("[redacted]"), "{shown}");
            assert!(!shown.contains(&body[..20]), "{shown}");
        }
    }

    #[test]
    fn pem_round_trip_keeps_public_key() {
        let rng = SystemRandom::new();
        let key = PrivateKey::generate(KeyAlgorithm::EcdsaP256, &rng).unwrap();
        let again = PrivateKey::from_pem("k", key.to_pem().expose(), &rng).unwrap();
        assert_eq!(again.public_key_raw(), key.public_key_raw());
        assert_eq!(again.algorithm(), KeyAlgorithm::EcdsaP256);
    }

    #[test]
    fn refuses_encrypted_and_wrong_blocks() {
        let enc =
            "-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAEC\n-----END ENCRYPTED PRIVATE KEY-----\n";
        let err = PrivateKey::from_pem("ca-key.pem", enc, &SystemRandom::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.starts_with("ca-key.pem: private key: encrypted"),
            "{err}"
        );
        let cert = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";
        let err = PrivateKey::from_pem("ca-key.pem", cert, &SystemRandom::new())
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("CERTIFICATE block where a private key"),
            "{err}"
        );
        let garbage = "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n";
        let err = PrivateKey::from_pem("ca-key.pem", garbage, &SystemRandom::new())
            .unwrap_err()
            .to_string();
        assert!(err.contains("unsupported or malformed key"), "{err}");
    }

    proptest::proptest! {
        #[test]
        fn key_loader_never_panics(
            tag in proptest::sample::select(vec!["PRIVATE KEY", "EC PRIVATE KEY", "RSA PRIVATE KEY", "CERTIFICATE", "X"]),
            body in proptest::collection::vec(proptest::prelude::any::<u8>(), 0..200),
        ) {
            let text = pem_io::encode(tag, &body);
            let rng = SystemRandom::new();
            proptest::prop_assert!(PrivateKey::from_pem("fuzz", &text, &rng).is_err());
            let cut = &text[..text.len() / 2];
            proptest::prop_assert!(PrivateKey::from_pem("fuzz", cut, &rng).is_err());
        }
    }

    #[test]
    fn key_algorithm_names_round_trip() {
        for a in [
            KeyAlgorithm::EcdsaP256,
            KeyAlgorithm::RSA_2048,
            KeyAlgorithm::RSA_3072,
        ] {
            assert_eq!(a.to_string().parse::<KeyAlgorithm>().unwrap(), a);
        }
        assert!("dsa-1024".parse::<KeyAlgorithm>().is_err());
    }
}
