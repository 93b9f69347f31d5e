//! The store's own logic: validation order, binding checks, and rollback. The provider here is a
//! software P-256 key map and the binding store an in-memory map, so each failure can be placed
//! exactly; the real TPM provider and SQLite store are exercised in tether-server's tests.

use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use p256::ecdsa::SigningKey;
use p256::ecdsa::signature::Signer as _;
use p256::elliptic_curve::rand_core::OsRng;
use p256::pkcs8::EncodePublicKey as _;
use tether_device_key::{
    BindingStore, ConnectionAudience, ConnectionPayload, DeviceKeyError, DeviceKeyProvider,
    DeviceKeyStore, KeyBinding, KeyId, ProtectionClass, ProtectionPolicy, ProviderKey, SignPayload,
    VerifyOptions, verify_signature,
};
use tether_testkit::unix_now;

#[derive(Default)]
struct SoftwareProvider {
    keys: Mutex<HashMap<KeyId, SigningKey>>,
    calls: AtomicUsize,
    fail_delete: bool,
    create_delay: std::time::Duration,
}

impl SoftwareProvider {
    fn key_count(&self) -> usize {
        self.keys.lock().unwrap().len()
    }
}

fn spki(key: &SigningKey) -> Vec<u8> {
    key.verifying_key().to_public_key_der().unwrap().into_vec()
}

impl DeviceKeyProvider for SoftwareProvider {
    fn create(&self, _: ProtectionPolicy) -> Result<ProviderKey, DeviceKeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        std::thread::sleep(self.create_delay);
        let key_id = KeyId::generate(ProtectionClass::HardwareTpm);
        let key = SigningKey::random(&mut OsRng);
        let spki_der = spki(&key);
        self.keys.lock().unwrap().insert(key_id.clone(), key);
        Ok(ProviderKey { key_id, spki_der })
    }

    fn public_key(&self, key_id: &KeyId) -> Result<ProviderKey, DeviceKeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let keys = self.keys.lock().unwrap();
        let key = keys.get(key_id).ok_or(DeviceKeyError::KeyNotFound)?;
        Ok(ProviderKey {
            key_id: key_id.clone(),
            spki_der: spki(key),
        })
    }

    fn sign(&self, key_id: &KeyId, message: &[u8]) -> Result<Vec<u8>, DeviceKeyError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let keys = self.keys.lock().unwrap();
        let key = keys.get(key_id).ok_or(DeviceKeyError::KeyNotFound)?;
        let signature: p256::ecdsa::Signature = key.sign(message);
        Ok(signature.to_der().as_bytes().to_vec())
    }

    fn delete(&self, key_id: &KeyId) -> Result<(), DeviceKeyError> {
        if self.fail_delete {
            return Err(DeviceKeyError::Platform("delete refused".into()));
        }
        self.keys.lock().unwrap().remove(key_id);
        Ok(())
    }

    fn usable_class(&self) -> Result<ProtectionClass, DeviceKeyError> {
        Ok(ProtectionClass::HardwareTpm)
    }
}

#[derive(Default, Clone)]
struct MemoryBindings {
    rows: Arc<Mutex<HashMap<KeyId, KeyBinding>>>,
    fail_insert: bool,
}

impl BindingStore for MemoryBindings {
    async fn insert(&self, binding: KeyBinding) -> Result<(), DeviceKeyError> {
        if self.fail_insert {
            return Err(DeviceKeyError::Platform("disk full".into()));
        }
        self.rows
            .lock()
            .unwrap()
            .insert(binding.key_id.clone(), binding);
        Ok(())
    }

    async fn get(&self, key_id: &KeyId) -> Result<Option<KeyBinding>, DeviceKeyError> {
        Ok(self.rows.lock().unwrap().get(key_id).cloned())
    }
}

fn store(
    bindings: MemoryBindings,
    provider: Arc<SoftwareProvider>,
) -> DeviceKeyStore<MemoryBindings> {
    DeviceKeyStore::new(bindings, provider)
}

fn payload(account: &str, client: &str) -> SignPayload {
    SignPayload::Connection(ConnectionPayload {
        nonce: "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".into(),
        audience: ConnectionAudience::RemoteControlClientWebsocket,
        session_id: "wssess_1".into(),
        target_origin: "https://chatgpt.com".into(),
        target_path: "/api/codex/remote/control/client".into(),
        account_user_id: account.into(),
        client_id: client.into(),
        token_expires_at: unix_now() + 120,
        token_sha256_base64url: "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU".into(),
        scopes: vec!["remote_control_controller_websocket".into()],
    })
}

#[tokio::test]
async fn create_public_sign_round_trip() {
    let provider = Arc::new(SoftwareProvider::default());
    let keys = store(MemoryBindings::default(), provider);
    let created = keys.create("acct", "cli", None).await.unwrap();
    assert_eq!(created.protection_class, ProtectionClass::HardwareTpm);
    assert_eq!(keys.get_public(&created.key_id).await.unwrap(), created);
    let to_sign = payload("acct", "cli");
    let signature = keys.sign(&created.key_id, &to_sign).await.unwrap();
    let wire = serde_json::to_value(&signature).unwrap();
    assert_eq!(wire["algorithm"], "ecdsa_p256_sha256");
    let options = VerifyOptions {
        reject_high_s: false,
        expected_payload: Some(&to_sign),
    };
    verify_signature(
        &STANDARD
            .decode(&created.public_key_spki_der_base64)
            .unwrap(),
        &STANDARD.decode(&signature.signature_der_base64).unwrap(),
        &STANDARD.decode(&signature.signed_payload_base64).unwrap(),
        options,
    )
    .unwrap();
}

#[tokio::test]
async fn empty_binding_is_refused_before_the_provider() {
    let provider = Arc::new(SoftwareProvider::default());
    let keys = store(MemoryBindings::default(), provider.clone());
    let err = keys.create("", "cli", None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid device key payload: accountUserId must not be empty"
    );
    let err = keys.create("acct", "", None).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid device key payload: clientId must not be empty"
    );
    assert_eq!(provider.calls.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn sign_checks_key_id_then_payload_then_binding_then_owner() {
    let provider = Arc::new(SoftwareProvider::default());
    let keys = store(MemoryBindings::default(), provider.clone());
    let created = keys.create("acct", "cli", None).await.unwrap();
    let calls_after_create = provider.calls.load(Ordering::SeqCst);

    let mut expired = payload("acct", "cli");
    if let SignPayload::Connection(p) = &mut expired {
        p.token_expires_at = unix_now() - 1;
    }
    let unbound = KeyId::generate(ProtectionClass::HardwareTpm).to_string();

    // A bad key id wins over a bad payload.
    let err = keys.sign("dk_tpm_short", &expired).await.unwrap_err();
    assert!(err.to_string().contains("keyId must be"), "{err}");
    // A bad payload wins over a missing binding.
    let err = keys.sign(&unbound, &expired).await.unwrap_err();
    assert_eq!(
        err.to_string(),
        "invalid device key payload: remote-control token is expired"
    );
    // A valid payload for an unbound key.
    let err = keys
        .sign(&unbound, &payload("acct", "cli"))
        .await
        .unwrap_err();
    assert_eq!(err, DeviceKeyError::KeyNotFound);
    // The payload must name the key's own account and client.
    for (account, client) in [("other", "cli"), ("acct", "other")] {
        let err = keys
            .sign(&created.key_id, &payload(account, client))
            .await
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid device key payload: payload accountUserId/clientId does not match device key binding"
        );
    }
    assert_eq!(
        provider.calls.load(Ordering::SeqCst),
        calls_after_create,
        "no failed request reached the provider"
    );
    let err = keys.get_public(&unbound).await.unwrap_err();
    assert_eq!(err, DeviceKeyError::KeyNotFound);
}

#[tokio::test]
async fn failed_binding_write_deletes_the_new_key() {
    let provider = Arc::new(SoftwareProvider::default());
    let bindings = MemoryBindings {
        fail_insert: true,
        ..Default::default()
    };
    let keys = store(bindings.clone(), provider.clone());
    let err = keys.create("acct", "cli", None).await.unwrap_err();
    assert_eq!(err.to_string(), "device key platform error: disk full");
    assert_eq!(err.jsonrpc_code(), -32603);
    assert_eq!(provider.key_count(), 0, "no key without a binding");
    assert!(bindings.rows.lock().unwrap().is_empty());
}

#[tokio::test]
async fn failed_rollback_reports_both_failures() {
    let provider = Arc::new(SoftwareProvider {
        fail_delete: true,
        ..Default::default()
    });
    let bindings = MemoryBindings {
        fail_insert: true,
        ..Default::default()
    };
    let keys = store(bindings, provider);
    let err = keys.create("acct", "cli", None).await.unwrap_err();
    let message = err.to_string();
    assert!(matches!(err, DeviceKeyError::Platform(_)));
    assert!(
        message.contains("disk full") && message.contains("delete refused"),
        "{message}"
    );
}

#[tokio::test]
async fn create_completes_even_when_the_caller_stops_waiting() {
    let delay = std::time::Duration::from_millis(100);
    let provider = Arc::new(SoftwareProvider {
        create_delay: delay,
        ..Default::default()
    });
    let bindings = MemoryBindings::default();
    let keys = store(bindings.clone(), provider.clone());
    let request = tokio::spawn({
        let keys = keys.clone();
        async move { keys.create("acct", "cli", None).await }
    });
    // Abort while the provider is still creating the key.
    tokio::time::sleep(delay / 4).await;
    assert_eq!(
        provider.calls.load(Ordering::SeqCst),
        1,
        "the provider is creating"
    );
    request.abort();
    tokio::time::sleep(delay * 3).await;
    assert_eq!(provider.key_count(), 1);
    assert_eq!(
        bindings.rows.lock().unwrap().len(),
        1,
        "the binding was written anyway"
    );
}
