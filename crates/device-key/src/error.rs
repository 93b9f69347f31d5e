use crate::ProtectionClass;

/// Everything a device-key operation can fail with. The `Display` text is the exact message the
/// JSON-RPC error carries.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeviceKeyError {
    /// Only a degraded class is available and the policy does not allow it.
    #[error(
        "hardware-backed device keys are not available; set protectionPolicy to allow_os_protected_nonextractable to allow key protection class {available}"
    )]
    DegradedProtectionNotAllowed {
        /// The class that could have been offered.
        available: ProtectionClass,
    },
    /// No provider can create keys on this machine.
    #[error("hardware-backed device keys are not available on this platform")]
    HardwareBackedKeysUnavailable,
    /// No binding (or no key material) for the id.
    #[error("device key not found")]
    KeyNotFound,
    /// The request failed validation; the text says which rule.
    #[error("invalid device key payload: {0}")]
    InvalidPayload(String),
    /// The platform (provider, state database, clock) failed.
    #[error("device key platform error: {0}")]
    Platform(String),
    /// Encoding or decoding key material or signatures failed.
    #[error("device key cryptography error: {0}")]
    Crypto(String),
}

impl DeviceKeyError {
    pub(crate) const INVALID_KEY_ID: &'static str = "keyId must be dk_hse_, dk_tpm_, or dk_osn_ followed by unpadded base64url-encoded 32 bytes";

    /// JSON-RPC "invalid request": the caller can fix it.
    pub const INVALID_REQUEST_CODE: i64 = -32600;
    /// JSON-RPC "internal error": the machine failed.
    pub const INTERNAL_ERROR_CODE: i64 = -32603;

    pub(crate) fn invalid_payload(rule: &str) -> DeviceKeyError {
        DeviceKeyError::InvalidPayload(rule.to_owned())
    }

    /// The JSON-RPC error code this error is reported with.
    pub fn jsonrpc_code(&self) -> i64 {
        match self {
            DeviceKeyError::DegradedProtectionNotAllowed { .. }
            | DeviceKeyError::HardwareBackedKeysUnavailable
            | DeviceKeyError::KeyNotFound
            | DeviceKeyError::InvalidPayload(_) => Self::INVALID_REQUEST_CODE,
            DeviceKeyError::Platform(_) | DeviceKeyError::Crypto(_) => Self::INTERNAL_ERROR_CODE,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_match_the_protocol() {
        let cases = [
            (
                DeviceKeyError::DegradedProtectionNotAllowed {
                    available: ProtectionClass::OsProtectedNonextractable,
                },
                -32600,
                "hardware-backed device keys are not available; set protectionPolicy to allow_os_protected_nonextractable to allow key protection class os_protected_nonextractable",
            ),
            (
                DeviceKeyError::HardwareBackedKeysUnavailable,
                -32600,
                "hardware-backed device keys are not available on this platform",
            ),
            (DeviceKeyError::KeyNotFound, -32600, "device key not found"),
            (
                DeviceKeyError::invalid_payload("clientId must not be empty"),
                -32600,
                "invalid device key payload: clientId must not be empty",
            ),
            (
                DeviceKeyError::Platform("sqlite state db unavailable".into()),
                -32603,
                "device key platform error: sqlite state db unavailable",
            ),
            (
                DeviceKeyError::Crypto("bad point".into()),
                -32603,
                "device key cryptography error: bad point",
            ),
        ];
        for (error, code, message) in cases {
            assert_eq!(error.jsonrpc_code(), code);
            assert_eq!(error.to_string(), message);
        }
    }
}
