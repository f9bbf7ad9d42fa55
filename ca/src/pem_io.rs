//! Reading PEM text with errors a person can act on: which source, which block,
//! what was expected. Never panics, whatever the bytes.

use crate::error::{CaError, Result};

pub(crate) const CERTIFICATE: &str = "CERTIFICATE";

/// One decoded PEM block.
pub(crate) struct Block {
    pub tag: String,
    pub contents: Vec<u8>,
    pub encrypted: bool,
}

fn pem_error(source_name: &str, reason: impl Into<String>) -> CaError {
    CaError::Pem {
        source_name: source_name.to_string(),
        reason: reason.into(),
    }
}

/// Splits PEM text into blocks; a block that starts but never ends is an error, not
/// silently dropped.
pub(crate) fn parse_blocks(source_name: &str, text: &str) -> Result<Vec<Block>> {
    let begins = text.matches("-----BEGIN ").count();
    if begins == 0 {
        return Err(pem_error(
            source_name,
            "no PEM block found (expected a line like -----BEGIN CERTIFICATE-----)",
        ));
    }
    let ends = text.matches("-----END ").count();
    let parsed =
        pem::parse_many(text).map_err(|e| pem_error(source_name, format!("malformed PEM: {e}")))?;
    if parsed.len() != begins || ends != begins {
        return Err(pem_error(
            source_name,
            format!(
                "truncated or malformed PEM: {begins} BEGIN line(s), {ends} END line(s), {} complete block(s)",
                parsed.len()
            ),
        ));
    }
    Ok(parsed
        .into_iter()
        .map(|p| {
            let encrypted = p.tag().contains("ENCRYPTED")
                || p.headers()
                    .get("Proc-Type")
                    .is_some_and(|v| v.contains("ENCRYPTED"));
            Block {
                tag: p.tag().to_string(),
                encrypted,
                contents: p.into_contents(),
            }
        })
        .collect())
}

/// Every `CERTIFICATE` block of the text, as DER. Any other block type is an error
/// that says what was found instead.
pub(crate) fn certificate_ders(source_name: &str, text: &str) -> Result<Vec<Vec<u8>>> {
    let blocks = parse_blocks(source_name, text)?;
    let mut out = Vec::with_capacity(blocks.len());
    for (i, b) in blocks.into_iter().enumerate() {
        if b.tag != CERTIFICATE {
            let hint = if b.tag.contains("PRIVATE KEY") {
                " (a private key where a certificate was expected)"
            } else {
                ""
            };
            return Err(pem_error(
                source_name,
                format!(
                    "block {} is {:?}, expected \"CERTIFICATE\"{hint}",
                    i + 1,
                    b.tag
                ),
            ));
        }
        out.push(b.contents);
    }
    Ok(out)
}

/// Encodes DER as one PEM block with the given tag.
pub(crate) fn encode(tag: &str, der: &[u8]) -> String {
    pem::encode_config(
        &pem::Pem::new(tag, der),
        pem::EncodeConfig::new().set_line_ending(pem::LineEnding::LF),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const SAMPLE: &str = "-----BEGIN CERTIFICATE-----\nAAEC\n-----END CERTIFICATE-----\n";

    #[test]
    fn reports_truncation() {
        let cut = &SAMPLE[..SAMPLE.len() - 12];
        let err = parse_blocks("root-cert.pem", cut)
            .err()
            .unwrap()
            .to_string();
        assert!(err.starts_with("root-cert.pem: "), "{err}");
        assert!(
            err.contains("truncated") || err.contains("malformed"),
            "{err}"
        );
    }

    #[test]
    fn reports_wrong_block_type() {
        let key = "-----BEGIN PRIVATE KEY-----\nAAEC\n-----END PRIVATE KEY-----\n";
        let err = certificate_ders("x.pem", key).unwrap_err().to_string();
        assert!(
            err.contains("a private key where a certificate was expected"),
            "{err}"
        );
        let err = certificate_ders("x.pem", "hello").unwrap_err().to_string();
        assert!(err.contains("no PEM block"), "{err}");
    }

    #[test]
    fn encode_round_trips() {
        let text = encode(CERTIFICATE, &[1, 2, 3]);
        assert_eq!(certificate_ders("t", &text).unwrap(), vec![vec![1, 2, 3]]);
    }

    proptest! {
        #[test]
        fn never_panics_on_random_text(s in "\\PC{0,200}") {
            let _ = certificate_ders("fuzz", &s);
        }

        #[test]
        fn never_panics_on_mangled_pem(cut in 0usize..60, junk in "[ -~\n]{0,40}") {
            let mut text = SAMPLE[..cut.min(SAMPLE.len())].to_string();
            text.push_str(&junk);
            let _ = certificate_ders("fuzz", &text);
        }
    }
}
