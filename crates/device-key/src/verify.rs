use p256::ecdsa::signature::Verifier as _;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey as _;

use crate::{SignPayload, signed_payload_bytes};

/// What a backend additionally demands of a signature.
#[derive(Clone, Copy, Debug, Default)]
pub struct VerifyOptions<'a> {
    /// Refuse signatures whose `s` is in the upper half of the order. Off by default: TPMs and
    /// PKCS#11 tokens do not normalize `s`.
    pub reject_high_s: bool,
    /// The payload the signed bytes must be the canonical form of.
    pub expected_payload: Option<&'a SignPayload>,
}

/// Why a signature was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    /// The public key is not a P-256 SubjectPublicKeyInfo DER.
    #[error("public key is not a P-256 SubjectPublicKeyInfo DER")]
    MalformedPublicKey,
    /// The signature is not an ASN.1 DER ECDSA signature.
    #[error("signature is not an ASN.1 DER ECDSA P-256 signature")]
    MalformedSignature,
    /// The signature does not verify over the signed bytes.
    #[error("signature does not verify")]
    BadSignature,
    /// `s` is high and the caller asked for low-S only.
    #[error("signature is not low-S normalized")]
    HighS,
    /// The signed bytes are not the canonical form of the expected payload.
    #[error("signed bytes are not the canonical form of the expected payload")]
    PayloadMismatch,
}

impl VerifyError {
    /// True when the inputs could not even be decoded, as opposed to decoding and not verifying.
    pub fn is_malformed_input(&self) -> bool {
        matches!(
            self,
            VerifyError::MalformedPublicKey | VerifyError::MalformedSignature
        )
    }
}

/// Verifies a device-key signature exactly as a backend should: over the signed bytes as
/// returned, never a re-serialization.
pub fn verify_signature(
    public_key_spki_der: &[u8],
    signature_der: &[u8],
    signed_bytes: &[u8],
    options: VerifyOptions<'_>,
) -> Result<(), VerifyError> {
    let key = VerifyingKey::from_public_key_der(public_key_spki_der)
        .map_err(|_| VerifyError::MalformedPublicKey)?;
    let signature =
        Signature::from_der(signature_der).map_err(|_| VerifyError::MalformedSignature)?;
    if options.reject_high_s && signature.normalize_s().is_some() {
        return Err(VerifyError::HighS);
    }
    let verified = match signature.normalize_s() {
        // p256 accepts either form; verify the low-S twin so the answer does not depend on that.
        Some(low) => key.verify(signed_bytes, &low),
        None => key.verify(signed_bytes, &signature),
    };
    verified.map_err(|_| VerifyError::BadSignature)?;
    if let Some(expected) = options.expected_payload {
        let canonical = signed_payload_bytes(expected).map_err(|_| VerifyError::PayloadMismatch)?;
        if canonical != signed_bytes {
            return Err(VerifyError::PayloadMismatch);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use p256::ecdsa::SigningKey;
    use p256::ecdsa::signature::Signer as _;
    use p256::elliptic_curve::rand_core::OsRng;
    use p256::pkcs8::EncodePublicKey as _;

    fn key() -> (SigningKey, Vec<u8>) {
        let signing = SigningKey::random(&mut OsRng);
        let spki = signing
            .verifying_key()
            .to_public_key_der()
            .unwrap()
            .into_vec();
        (signing, spki)
    }

    fn high_s(signature: Signature) -> Signature {
        if signature.normalize_s().is_some() {
            return signature;
        }
        let (r, s) = signature.split_scalars();
        Signature::from_scalars(r, -*s).unwrap()
    }

    #[test]
    fn accepts_both_s_forms_unless_asked() {
        let (signing, spki) = key();
        let message = b"bytes";
        let low: Signature = signing.sign(message);
        let low = low.normalize_s().unwrap_or(low);
        let high = high_s(low);
        let options = VerifyOptions::default();
        for sig in [low, high] {
            verify_signature(&spki, sig.to_der().as_bytes(), message, options).unwrap();
        }
        let strict = VerifyOptions {
            reject_high_s: true,
            ..options
        };
        verify_signature(&spki, low.to_der().as_bytes(), message, strict).unwrap();
        assert_eq!(
            verify_signature(&spki, high.to_der().as_bytes(), message, strict),
            Err(VerifyError::HighS)
        );
    }

    #[test]
    fn distinguishes_malformed_from_wrong() {
        let (signing, spki) = key();
        let sig: Signature = signing.sign(b"a");
        let der = sig.to_der();
        let options = VerifyOptions::default();
        assert_eq!(
            verify_signature(&spki, der.as_bytes(), b"b", options),
            Err(VerifyError::BadSignature)
        );
        assert_eq!(
            verify_signature(b"junk", der.as_bytes(), b"a", options),
            Err(VerifyError::MalformedPublicKey)
        );
        assert_eq!(
            verify_signature(&spki, b"junk", b"a", options),
            Err(VerifyError::MalformedSignature)
        );
        let (_, other) = key();
        assert_eq!(
            verify_signature(&other, der.as_bytes(), b"a", options),
            Err(VerifyError::BadSignature)
        );
        assert!(VerifyError::MalformedSignature.is_malformed_input());
        assert!(!VerifyError::BadSignature.is_malformed_input());
    }
}
