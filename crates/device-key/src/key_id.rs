use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore as _;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

use crate::DeviceKeyError;

const RANDOM_BYTES: usize = 32;
/// 7 characters of prefix plus 43 of unpadded base64url for 32 bytes.
const KEY_ID_LEN: usize = 50;

/// Where a key's private half lives, as far as the provider can honestly tell.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionClass {
    /// Apple Secure Enclave.
    HardwareSecureEnclave,
    /// A hardware TPM 2.0 (never a software emulator).
    HardwareTpm,
    /// A software store outside the server's process and user that refuses to export the key.
    OsProtectedNonextractable,
}

impl ProtectionClass {
    const ALL: [ProtectionClass; 3] = [
        ProtectionClass::HardwareSecureEnclave,
        ProtectionClass::HardwareTpm,
        ProtectionClass::OsProtectedNonextractable,
    ];

    fn key_id_prefix(self) -> &'static str {
        match self {
            ProtectionClass::HardwareSecureEnclave => "dk_hse_",
            ProtectionClass::HardwareTpm => "dk_tpm_",
            ProtectionClass::OsProtectedNonextractable => "dk_osn_",
        }
    }

    /// Degraded classes are usable only when the caller's policy says so.
    pub fn is_degraded(self) -> bool {
        self == ProtectionClass::OsProtectedNonextractable
    }

    /// The wire spelling, as used in error messages.
    pub fn as_str(self) -> &'static str {
        match self {
            ProtectionClass::HardwareSecureEnclave => "hardware_secure_enclave",
            ProtectionClass::HardwareTpm => "hardware_tpm",
            ProtectionClass::OsProtectedNonextractable => "os_protected_nonextractable",
        }
    }
}

impl fmt::Display for ProtectionClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Which protection classes the caller accepts for a new key.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum ProtectionPolicy {
    /// Only non-degraded (hardware) classes.
    #[default]
    HardwareOnly,
    /// Hardware classes, or an OS-protected non-extractable store when no hardware is usable.
    AllowOsProtectedNonextractable,
}

impl ProtectionPolicy {
    /// Whether a key of `class` satisfies this policy.
    pub fn allows(self, class: ProtectionClass) -> bool {
        match self {
            ProtectionPolicy::HardwareOnly => !class.is_degraded(),
            ProtectionPolicy::AllowOsProtectedNonextractable => true,
        }
    }
}

/// A validated device-key id: a class prefix followed by 32 random bytes in unpadded base64url.
///
/// The only ways to get one are [`KeyId::parse`], which applies every shape rule, and
/// [`KeyId::generate`]; so any `KeyId` a provider sees is inside tether's own namespace.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct KeyId {
    text: String,
    class: ProtectionClass,
}

impl KeyId {
    /// A fresh random id for a key of `class`.
    pub fn generate(class: ProtectionClass) -> KeyId {
        let mut random = [0u8; RANDOM_BYTES];
        rand::rngs::OsRng.fill_bytes(&mut random);
        KeyId {
            text: format!(
                "{}{}",
                class.key_id_prefix(),
                URL_SAFE_NO_PAD.encode(random)
            ),
            class,
        }
    }

    /// Validates an externally supplied id.
    pub fn parse(text: &str) -> Result<KeyId, DeviceKeyError> {
        let invalid = || DeviceKeyError::invalid_payload(DeviceKeyError::INVALID_KEY_ID);
        if text.len() != KEY_ID_LEN {
            return Err(invalid());
        }
        let (class, suffix) = ProtectionClass::ALL
            .into_iter()
            .find_map(|class| text.strip_prefix(class.key_id_prefix()).map(|s| (class, s)))
            .ok_or_else(invalid)?;
        // The engine rejects padding, `+`, `/` and non-canonical trailing bits.
        match URL_SAFE_NO_PAD.decode(suffix) {
            Ok(bytes) if bytes.len() == RANDOM_BYTES => Ok(KeyId {
                text: text.to_owned(),
                class,
            }),
            _ => Err(invalid()),
        }
    }

    /// The class encoded in the prefix.
    pub fn class(&self) -> ProtectionClass {
        self.class
    }

    /// The id as it appears on the wire.
    pub fn as_str(&self) -> &str {
        &self.text
    }

    /// A name derived from the id only through a hash, for providers' files, labels and handles.
    pub fn storage_name(&self) -> String {
        Sha256::digest(self.text.as_bytes())
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

impl fmt::Display for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Debug for KeyId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "KeyId({})", self.text)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn generated_ids_parse_back_with_their_class() {
        for class in ProtectionClass::ALL {
            let id = KeyId::generate(class);
            assert_eq!(id.as_str().len(), KEY_ID_LEN);
            let parsed = KeyId::parse(id.as_str()).unwrap();
            assert_eq!(parsed, id);
            assert_eq!(parsed.class(), class);
        }
    }

    #[test]
    fn rejects_each_shape_violation() {
        let good = KeyId::generate(ProtectionClass::HardwareTpm).to_string();
        let suffix = &good[7..];
        let cases = [
            String::new(),
            format!("dk_xyz_{suffix}"),
            format!("DK_TPM_{suffix}"),
            format!("dk_tpm_{}", &suffix[..42]),
            format!("dk_tpm_{suffix}="),
            format!("dk_tpm_{}+", &suffix[..42]),
            format!("dk_tpm_{}/", &suffix[..42]),
            format!("dk_tpm_{}=", &suffix[..42]),
            format!("dk_tpm_{suffix}A"),
            format!(" dk_tpm_{}", &suffix[..42]),
            format!("dk_tpm_{}\n", &suffix[..42]),
            // 43 characters whose last one carries bits beyond the 32 bytes.
            format!("dk_tpm_{}B", &"A".repeat(42)),
            "dk_tpm_../../../../../../../../../etc/passwd_xxxxxx".to_owned(),
        ];
        for case in cases {
            let err = KeyId::parse(&case).unwrap_err();
            assert_eq!(
                err.to_string(),
                "invalid device key payload: keyId must be dk_hse_, dk_tpm_, or dk_osn_ followed by unpadded base64url-encoded 32 bytes",
                "{case:?}"
            );
        }
    }

    #[test]
    fn storage_name_is_a_hex_hash_not_the_id() {
        let id = KeyId::generate(ProtectionClass::HardwareTpm);
        let name = id.storage_name();
        assert_eq!(name.len(), 64);
        assert!(name.bytes().all(|b| b.is_ascii_hexdigit()));
        assert!(!name.contains(&id.as_str()[7..]));
    }

    proptest! {
        #[test]
        fn arbitrary_strings_never_panic_and_accepts_imply_round_trip(text in "\\PC{0,64}") {
            if let Ok(id) = KeyId::parse(&text) {
                prop_assert_eq!(id.as_str(), text.as_str());
                prop_assert_eq!(URL_SAFE_NO_PAD.decode(&text[7..]).unwrap().len(), 32);
            }
        }

        #[test]
        fn any_32_bytes_with_a_known_prefix_parse(bytes in proptest::array::uniform32(any::<u8>()), class_index in 0usize..3) {
            let class = ProtectionClass::ALL[class_index];
            let text = format!("{}{}", class.key_id_prefix(), URL_SAFE_NO_PAD.encode(bytes));
            let id = KeyId::parse(&text).unwrap();
            prop_assert_eq!(id.class(), class);
        }

        #[test]
        fn a_single_character_change_in_the_prefix_is_rejected(bytes in proptest::array::uniform32(any::<u8>()), position in 0usize..7, replacement in "[a-zA-Z0-9_]") {
            let mut text = format!("dk_tpm_{}", URL_SAFE_NO_PAD.encode(bytes));
            let original = &text[position..position + 1];
            prop_assume!(original != replacement && !(position == 3 && (replacement == "h" || replacement == "o")));
            text.replace_range(position..position + 1, &replacement);
            prop_assume!(!(text.starts_with("dk_hse_") || text.starts_with("dk_osn_")));
            prop_assert!(KeyId::parse(&text).is_err());
        }
    }
}
