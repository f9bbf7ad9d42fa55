//! RS256 JSON Web Tokens for the demo, signed with the example's demo-only key.
use base64::Engine;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use ring::rand::SystemRandom;
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde_json::{Value, json};

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("JWT signing key {source_name}: {message}")]
pub struct JwtError {
    pub source_name: String,
    pub message: String,
}

/// An RSA key (PKCS#8 PEM) that signs RS256 tokens under a key id.
pub struct Rs256Signer {
    key: RsaKeyPair,
    kid: String,
    rng: SystemRandom,
}

impl std::fmt::Debug for Rs256Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never print key material.
        f.debug_struct("Rs256Signer")
            .field("kid", &self.kid)
            .finish_non_exhaustive()
    }
}

impl Rs256Signer {
    /// Reads a `-----BEGIN PRIVATE KEY-----` (PKCS#8) RSA key.
    pub fn from_pkcs8_pem(source_name: &str, pem: &str, kid: &str) -> Result<Self, JwtError> {
        let err = |message: &str| JwtError {
            source_name: source_name.to_string(),
            message: message.to_string(),
        };
        let body: String = pem
            .lines()
            .skip_while(|l| l.trim() != "-----BEGIN PRIVATE KEY-----")
            .skip(1)
            .take_while(|l| l.trim() != "-----END PRIVATE KEY-----")
            .map(str::trim)
            .collect();
        if body.is_empty() {
            return Err(err("no -----BEGIN PRIVATE KEY----- (PKCS#8) block"));
        }
        let der = STANDARD
            .decode(body)
            .map_err(|_| err("the PEM block is not valid base64"))?;
        let key = RsaKeyPair::from_pkcs8(&der)
            .map_err(|_| err("not an RSA PKCS#8 private key ring accepts"))?;
        Ok(Rs256Signer {
            key,
            kid: kid.to_string(),
            rng: SystemRandom::new(),
        })
    }

    /// A compact JWS over `claims`.
    pub fn sign(&self, claims: &Value) -> Result<String, JwtError> {
        let header = json!({"alg": "RS256", "typ": "JWT", "kid": self.kid});
        let input = format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(header.to_string()),
            URL_SAFE_NO_PAD.encode(claims.to_string())
        );
        let mut signature = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(
                &RSA_PKCS1_SHA256,
                &self.rng,
                input.as_bytes(),
                &mut signature,
            )
            .map_err(|_| JwtError {
                source_name: self.kid.clone(),
                message: "signing failed".into(),
            })?;
        Ok(format!("{input}.{}", URL_SAFE_NO_PAD.encode(signature)))
    }
}

/// The same token with its signature altered: well-formed, but it does not verify.
pub fn tamper(token: &str) -> String {
    let Some((input, signature)) = token.rsplit_once('.') else {
        return format!("{token}x");
    };
    let mut bytes = URL_SAFE_NO_PAD.decode(signature).unwrap_or_default();
    if let Some(b) = bytes.first_mut() {
        *b ^= 0x5a;
    } else {
        bytes.push(0);
    }
    format!("{input}.{}", URL_SAFE_NO_PAD.encode(bytes))
}

/// Claims for `issuer`/`audience`, valid for an hour from `now` (unix seconds).
pub fn claims(issuer: &str, audience: &str, subject: &str, now: u64) -> Value {
    json!({"iss": issuer, "aud": audience, "sub": subject, "iat": now, "exp": now + 3600})
}

#[cfg(test)]
mod tests {
    use super::*;
    use ring::signature::{RSA_PKCS1_2048_8192_SHA256, RsaPublicKeyComponents};

    fn example_key() -> String {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/boutique/demo-jwt-key.pem"
        );
        std::fs::read_to_string(path).unwrap()
    }

    /// The public half from the example's JWKS (`n`, `e`).
    fn example_public() -> RsaPublicKeyComponents<Vec<u8>> {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../../examples/boutique/jwks.json"
        );
        let jwks: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let key = &jwks["keys"][0];
        let decode = |f: &str| URL_SAFE_NO_PAD.decode(key[f].as_str().unwrap()).unwrap();
        RsaPublicKeyComponents {
            n: decode("n"),
            e: decode("e"),
        }
    }

    #[test]
    fn signs_tokens_the_example_jwks_verifies_and_tampered_ones_it_does_not() {
        let signer = Rs256Signer::from_pkcs8_pem("demo", &example_key(), "trellis-demo").unwrap();
        let token = signer
            .sign(&claims(
                "https://demo.trellis.dev",
                "onlineboutique.com",
                "alice",
                1000,
            ))
            .unwrap();
        let verify = |t: &str| {
            let (input, sig) = t.rsplit_once('.').unwrap();
            example_public().verify(
                &RSA_PKCS1_2048_8192_SHA256,
                input.as_bytes(),
                &URL_SAFE_NO_PAD.decode(sig).unwrap(),
            )
        };
        assert!(verify(&token).is_ok());
        assert!(verify(&tamper(&token)).is_err());
        let (header, _) = token.split_once('.').unwrap();
        let header: Value =
            serde_json::from_slice(&URL_SAFE_NO_PAD.decode(header).unwrap()).unwrap();
        assert_eq!(header["kid"], "trellis-demo");
        assert_eq!(header["alg"], "RS256");
    }

    #[test]
    fn bad_keys_are_reported_without_key_material() {
        let e = Rs256Signer::from_pkcs8_pem("k.pem", "nothing here", "x").unwrap_err();
        assert!(e.to_string().contains("k.pem"), "{e}");
        let e = Rs256Signer::from_pkcs8_pem(
            "k.pem",
            "-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n",
            "x",
        )
        .unwrap_err();
        assert!(e.to_string().contains("RSA PKCS#8"), "{e}");
    }
}
