use crate::{DeviceKeyError, KeyId, ProtectionPolicy};

/// A new or existing key as a provider reports it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ProviderKey {
    /// The id, whose prefix names the class the provider can honestly claim.
    pub key_id: KeyId,
    /// SubjectPublicKeyInfo DER of the P-256 public key.
    pub spki_der: Vec<u8>,
}

/// Where private keys live. Every call may block (hardware round trips, user prompts): the store
/// runs them on the blocking pool, never on the async executor.
pub trait DeviceKeyProvider: Send + Sync + 'static {
    /// Creates a key of the best class this provider has that `policy` allows. A provider that can
    /// only offer a degraded class under `hardware_only` fails with `DegradedProtectionNotAllowed`.
    fn create(&self, policy: ProtectionPolicy) -> Result<ProviderKey, DeviceKeyError>;
    /// The public half of an existing key; `KeyNotFound` if the provider has no such key.
    fn public_key(&self, key_id: &KeyId) -> Result<ProviderKey, DeviceKeyError>;
    /// ECDSA P-256 over SHA-256 of `message`, ASN.1 DER.
    fn sign(&self, key_id: &KeyId, message: &[u8]) -> Result<Vec<u8>, DeviceKeyError>;
    /// Forgets a key (rollback of a failed create). Deleting a missing key succeeds.
    fn delete(&self, key_id: &KeyId) -> Result<(), DeviceKeyError>;
}

/// The provider of a platform with no usable key store: it fails closed and never falls back to a
/// software key.
#[derive(Debug, Default)]
pub struct UnavailableProvider;

impl DeviceKeyProvider for UnavailableProvider {
    fn create(&self, _: ProtectionPolicy) -> Result<ProviderKey, DeviceKeyError> {
        Err(DeviceKeyError::HardwareBackedKeysUnavailable)
    }

    fn public_key(&self, _: &KeyId) -> Result<ProviderKey, DeviceKeyError> {
        Err(DeviceKeyError::HardwareBackedKeysUnavailable)
    }

    fn sign(&self, _: &KeyId, _: &[u8]) -> Result<Vec<u8>, DeviceKeyError> {
        Err(DeviceKeyError::HardwareBackedKeysUnavailable)
    }

    fn delete(&self, _: &KeyId) -> Result<(), DeviceKeyError> {
        Ok(())
    }
}
