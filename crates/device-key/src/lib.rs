//! Device keys: non-exportable ECDSA P-256 keys bound to one account and one client, which sign only
//! validated remote-control proofs.
//!
//! This crate owns key ids, protection classes and policy, the signing payloads with their wire
//! shapes and validation rules, the canonical signed bytes, the provider trait with the Linux TPM 2.0
//! provider, the store that ties a provider to a binding store (with rollback), and a verifier for
//! backends. It knows nothing of JSON-RPC framing, connections or SQLite: the binding store is a
//! trait that the state crate implements, and errors only say which JSON-RPC code they map to.

mod canonical;
mod error;
mod key_id;
mod payload;
#[cfg(all(target_os = "linux", feature = "pkcs11"))]
pub mod pkcs11;
mod provider;
mod store;
#[cfg(all(target_os = "linux", feature = "tpm"))]
pub mod tpm;
mod verify;

pub use canonical::signed_payload_bytes;
pub use error::DeviceKeyError;
pub use key_id::{KeyId, ProtectionClass, ProtectionPolicy};
pub use payload::{
    ConnectionAudience, ConnectionPayload, EnrollmentAudience, EnrollmentPayload,
    MAX_PROOF_TTL_SECONDS, SignPayload,
};
pub use provider::{DeviceKeyProvider, ProviderKey, SelectingProvider, UnavailableProvider};
pub use store::{
    Algorithm, BindingStore, DeviceKeyInfo, DeviceKeySignature, DeviceKeyStore, KeyBinding,
};
pub use verify::{VerifyError, VerifyOptions, verify_signature};
