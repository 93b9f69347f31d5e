use std::sync::Arc;

use crate::{DeviceKeyError, KeyId, ProtectionClass, ProtectionPolicy};

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
    /// The class of the keys this provider would create now, or why it cannot
    /// (`HardwareBackedKeysUnavailable`). Opens the underlying store if needed.
    fn usable_class(&self) -> Result<ProtectionClass, DeviceKeyError>;
}

/// Chooses between the hardware provider and an optional degraded one, by the caller's policy:
/// the hardware one whenever it is usable; otherwise the degraded one only when the policy
/// allows its class, and `DegradedProtectionNotAllowed` when it would have been the only choice.
/// Existing keys go to the provider their id's class names.
pub struct SelectingProvider {
    hardware: Arc<dyn DeviceKeyProvider>,
    degraded: Option<Arc<dyn DeviceKeyProvider>>,
}

impl SelectingProvider {
    /// `hardware` first, `degraded` (an `os_protected_nonextractable` provider) as the fallback.
    pub fn new(
        hardware: Arc<dyn DeviceKeyProvider>,
        degraded: Option<Arc<dyn DeviceKeyProvider>>,
    ) -> Self {
        SelectingProvider { hardware, degraded }
    }

    fn for_key(&self, key_id: &KeyId) -> Result<&dyn DeviceKeyProvider, DeviceKeyError> {
        match key_id.class() {
            ProtectionClass::OsProtectedNonextractable => {
                self.degraded.as_deref().ok_or(DeviceKeyError::KeyNotFound)
            }
            _ => Ok(&*self.hardware),
        }
    }
}

impl DeviceKeyProvider for SelectingProvider {
    fn create(&self, policy: ProtectionPolicy) -> Result<ProviderKey, DeviceKeyError> {
        match self.hardware.usable_class() {
            Ok(_) => return self.hardware.create(policy),
            Err(DeviceKeyError::HardwareBackedKeysUnavailable) => {}
            Err(other) => return Err(other),
        }
        let Some(degraded) = &self.degraded else {
            return Err(DeviceKeyError::HardwareBackedKeysUnavailable);
        };
        degraded.usable_class()?;
        let available = ProtectionClass::OsProtectedNonextractable;
        if !policy.allows(available) {
            return Err(DeviceKeyError::DegradedProtectionNotAllowed { available });
        }
        degraded.create(policy)
    }

    fn public_key(&self, key_id: &KeyId) -> Result<ProviderKey, DeviceKeyError> {
        self.for_key(key_id)?.public_key(key_id)
    }

    fn sign(&self, key_id: &KeyId, message: &[u8]) -> Result<Vec<u8>, DeviceKeyError> {
        self.for_key(key_id)?.sign(key_id, message)
    }

    fn usable_class(&self) -> Result<ProtectionClass, DeviceKeyError> {
        self.hardware
            .usable_class()
            .or_else(|hardware_error| match &self.degraded {
                Some(degraded) => degraded.usable_class(),
                None => Err(hardware_error),
            })
    }

    fn delete(&self, key_id: &KeyId) -> Result<(), DeviceKeyError> {
        match self.for_key(key_id) {
            Ok(provider) => provider.delete(key_id),
            Err(_) => Ok(()),
        }
    }
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

    fn usable_class(&self) -> Result<ProtectionClass, DeviceKeyError> {
        Err(DeviceKeyError::HardwareBackedKeysUnavailable)
    }
}
