//! The few DER encodings the crate writes by hand: wrapping legacy key formats
//! (SEC1, PKCS#1) into PKCS#8 so one loader handles every key file.

pub(crate) const TAG_INTEGER: u8 = 0x02;
pub(crate) const TAG_OCTET_STRING: u8 = 0x04;
pub(crate) const TAG_NULL: u8 = 0x05;
pub(crate) const TAG_OID: u8 = 0x06;
pub(crate) const TAG_SEQUENCE: u8 = 0x30;

/// OID 1.2.840.10045.2.1 (id-ecPublicKey), body only.
pub(crate) const OID_EC_PUBLIC_KEY: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x02, 0x01];
/// OID 1.2.840.10045.3.1.7 (prime256v1), body only.
pub(crate) const OID_P256: &[u8] = &[0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
/// OID 1.2.840.113549.1.1.1 (rsaEncryption), body only.
pub(crate) const OID_RSA_ENCRYPTION: &[u8] =
    &[0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01, 0x01];

/// Encodes one tag-length-value.
pub(crate) fn tlv(tag: u8, content: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(content.len() + 6);
    out.push(tag);
    let len = content.len();
    if len < 0x80 {
        out.push(len as u8);
    } else {
        let bytes = len.to_be_bytes();
        let skip = bytes.iter().take_while(|b| **b == 0).count();
        out.push(0x80 | (bytes.len() - skip) as u8);
        out.extend_from_slice(&bytes[skip..]);
    }
    out.extend_from_slice(content);
    out
}

/// PKCS#8 v1 `PrivateKeyInfo` around an inner private key encoding.
pub(crate) fn pkcs8_wrap(algorithm_identifier: &[u8], inner_key: &[u8]) -> Vec<u8> {
    let mut body = tlv(TAG_INTEGER, &[0]);
    body.extend_from_slice(algorithm_identifier);
    body.extend_from_slice(&tlv(TAG_OCTET_STRING, inner_key));
    tlv(TAG_SEQUENCE, &body)
}

/// AlgorithmIdentifier for an EC key on P-256.
pub(crate) fn ec_p256_algorithm() -> Vec<u8> {
    let mut body = tlv(TAG_OID, OID_EC_PUBLIC_KEY);
    body.extend_from_slice(&tlv(TAG_OID, OID_P256));
    tlv(TAG_SEQUENCE, &body)
}

/// AlgorithmIdentifier for an RSA key.
pub(crate) fn rsa_algorithm() -> Vec<u8> {
    let mut body = tlv(TAG_OID, OID_RSA_ENCRYPTION);
    body.extend_from_slice(&tlv(TAG_NULL, &[]));
    tlv(TAG_SEQUENCE, &body)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn long_form_lengths() {
        assert_eq!(tlv(0x04, &[1, 2]), vec![0x04, 2, 1, 2]);
        let long = tlv(0x04, &[0u8; 200]);
        assert_eq!(&long[..3], &[0x04, 0x81, 200]);
        let longer = tlv(0x04, &vec![0u8; 300]);
        assert_eq!(&longer[..4], &[0x04, 0x82, 0x01, 0x2c]);
    }
}
