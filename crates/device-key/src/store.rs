use std::future::Future;
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::payload::check_binding;
use crate::{
    DeviceKeyError, DeviceKeyProvider, KeyId, ProtectionClass, ProtectionPolicy, ProviderKey,
    SignPayload, signed_payload_bytes,
};

/// The signature algorithm of every device key.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "snake_case")]
pub enum Algorithm {
    /// ECDSA on P-256 over SHA-256, DER signatures.
    EcdsaP256Sha256,
}

/// Result of `device/key/create` and `device/key/public`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKeyInfo {
    /// The key's id.
    pub key_id: String,
    /// Standard base64 of the SubjectPublicKeyInfo DER.
    pub public_key_spki_der_base64: String,
    /// Always `ecdsa_p256_sha256`.
    pub algorithm: Algorithm,
    /// Where the private key lives.
    pub protection_class: ProtectionClass,
}

/// Result of `device/key/sign`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKeySignature {
    /// Standard base64 of the DER signature.
    pub signature_der_base64: String,
    /// Standard base64 of the exact bytes that were signed; verifiers check these, never a
    /// re-serialization of the payload.
    pub signed_payload_base64: String,
    /// Always `ecdsa_p256_sha256`.
    pub algorithm: Algorithm,
}

/// The account and client a key belongs to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyBinding {
    /// The bound key.
    pub key_id: KeyId,
    /// The account it belongs to.
    pub account_user_id: String,
    /// The client it belongs to.
    pub client_id: String,
}

/// Durable `keyId → (accountUserId, clientId)` bindings. Failures are `Platform` errors.
pub trait BindingStore: Send + Sync + 'static {
    /// Records a binding for a key that was just created.
    fn insert(
        &self,
        binding: KeyBinding,
    ) -> impl Future<Output = Result<(), DeviceKeyError>> + Send;
    /// The binding of `key_id`, if there is one.
    fn get(
        &self,
        key_id: &KeyId,
    ) -> impl Future<Output = Result<Option<KeyBinding>, DeviceKeyError>> + Send;
}

/// Creates, describes and uses device keys: validates every input before a provider or the
/// binding store sees it, and keeps keys and bindings in step.
pub struct DeviceKeyStore<B> {
    inner: Arc<Inner<B>>,
}

struct Inner<B> {
    bindings: B,
    provider: Arc<dyn DeviceKeyProvider>,
}

impl<B> Clone for DeviceKeyStore<B> {
    fn clone(&self) -> Self {
        DeviceKeyStore {
            inner: Arc::clone(&self.inner),
        }
    }
}

impl<B: BindingStore> DeviceKeyStore<B> {
    /// A store over `bindings` and `provider`.
    pub fn new(bindings: B, provider: Arc<dyn DeviceKeyProvider>) -> Self {
        DeviceKeyStore {
            inner: Arc::new(Inner { bindings, provider }),
        }
    }

    /// Creates a key bound to `account_user_id` and `client_id`. Runs to completion on its own task
    /// even if the caller stops waiting, so a vanished client never leaves a key without a binding.
    pub async fn create(
        &self,
        account_user_id: &str,
        client_id: &str,
        policy: Option<ProtectionPolicy>,
    ) -> Result<DeviceKeyInfo, DeviceKeyError> {
        check_binding(account_user_id, client_id)?;
        let inner = Arc::clone(&self.inner);
        let (account_user_id, client_id) = (account_user_id.to_owned(), client_id.to_owned());
        let policy = policy.unwrap_or_default();
        tokio::spawn(async move { inner.create(account_user_id, client_id, policy).await })
            .await
            .map_err(|err| DeviceKeyError::Platform(format!("device key task failed: {err}")))?
    }

    /// The public half of a bound key.
    pub async fn get_public(&self, key_id: &str) -> Result<DeviceKeyInfo, DeviceKeyError> {
        let key_id = KeyId::parse(key_id)?;
        self.binding(&key_id).await?;
        let provider = Arc::clone(&self.inner.provider);
        let key = blocking(move || provider.public_key(&key_id)).await?;
        Ok(key_info(&key))
    }

    /// Signs `payload` with `key_id` after checking, in order: the key id, every payload rule
    /// against the current clock, that the key is bound, and that the payload names the same
    /// account and client as the binding.
    pub async fn sign(
        &self,
        key_id: &str,
        payload: &SignPayload,
    ) -> Result<DeviceKeySignature, DeviceKeyError> {
        let key_id = KeyId::parse(key_id)?;
        payload.validate(unix_now()?)?;
        let binding = self.binding(&key_id).await?;
        if payload.account_user_id() != binding.account_user_id
            || payload.client_id() != binding.client_id
        {
            return Err(DeviceKeyError::invalid_payload(
                "payload accountUserId/clientId does not match device key binding",
            ));
        }
        let signed = signed_payload_bytes(payload)?;
        let provider = Arc::clone(&self.inner.provider);
        let (signature, signed) = blocking(move || {
            let signature = provider.sign(&key_id, &signed)?;
            Ok((signature, signed))
        })
        .await?;
        Ok(DeviceKeySignature {
            signature_der_base64: STANDARD.encode(signature),
            signed_payload_base64: STANDARD.encode(signed),
            algorithm: Algorithm::EcdsaP256Sha256,
        })
    }

    /// The class a new key would get now (at best), or why there is none.
    pub async fn usable_class(&self) -> Result<ProtectionClass, DeviceKeyError> {
        let provider = Arc::clone(&self.inner.provider);
        blocking(move || provider.usable_class()).await
    }

    async fn binding(&self, key_id: &KeyId) -> Result<KeyBinding, DeviceKeyError> {
        self.inner
            .bindings
            .get(key_id)
            .await?
            .ok_or(DeviceKeyError::KeyNotFound)
    }
}

impl<B: BindingStore> Inner<B> {
    async fn create(
        &self,
        account_user_id: String,
        client_id: String,
        policy: ProtectionPolicy,
    ) -> Result<DeviceKeyInfo, DeviceKeyError> {
        let provider = Arc::clone(&self.provider);
        let key = blocking(move || provider.create(policy)).await?;
        let binding = KeyBinding {
            key_id: key.key_id.clone(),
            account_user_id,
            client_id,
        };
        if let Err(store_error) = self.bindings.insert(binding).await {
            let provider = Arc::clone(&self.provider);
            let key_id = key.key_id.clone();
            return Err(match blocking(move || provider.delete(&key_id)).await {
                Ok(()) => store_error,
                Err(delete_error) => DeviceKeyError::Platform(format!(
                    "storing the key binding failed ({store_error}) and deleting the new key also failed ({delete_error})"
                )),
            });
        }
        Ok(key_info(&key))
    }
}

fn key_info(key: &ProviderKey) -> DeviceKeyInfo {
    DeviceKeyInfo {
        key_id: key.key_id.to_string(),
        public_key_spki_der_base64: STANDARD.encode(&key.spki_der),
        algorithm: Algorithm::EcdsaP256Sha256,
        protection_class: key.key_id.class(),
    }
}

async fn blocking<T: Send + 'static>(
    call: impl FnOnce() -> Result<T, DeviceKeyError> + Send + 'static,
) -> Result<T, DeviceKeyError> {
    // The provider's work is a child of the caller's span, on the blocking pool too.
    let span = tracing::info_span!("provider_call");
    tokio::task::spawn_blocking(move || {
        let _entered = span.enter();
        tracing::debug!("calling the provider");
        call()
    })
    .await
    .map_err(|err| DeviceKeyError::Platform(format!("device key provider task failed: {err}")))?
}

fn unix_now() -> Result<i64, DeviceKeyError> {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|elapsed| i64::try_from(elapsed.as_secs()).ok())
        .ok_or_else(|| DeviceKeyError::Platform("the system clock is before 1970".into()))
}
