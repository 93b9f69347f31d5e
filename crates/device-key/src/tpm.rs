//! `hardware_tpm` keys through the TPM 2.0 ESAPI (tss-esapi against the system's libtss2).
//!
//! Layout: a deterministic ECC P-256 storage primary is recreated once per process (same template,
//! same owner seed, same key) and kept loaded. Each device key is an ordinary child of it, created
//! with fixedTPM|fixedParent, whose public and wrapped private blobs live in one file under the key
//! directory, named by a hash of the key id. The private blob is useless away from this TPM.
//! Signing loads the blob on a cache miss and signs a digest computed here, with a password
//! session (one round trip).

use std::fs;
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};
use std::str::FromStr as _;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use p256::pkcs8::EncodePublicKey as _;
use rand::RngCore as _;
use sha2::{Digest as _, Sha256};
use tss_esapi::attributes::{ObjectAttributes, ObjectAttributesBuilder};
use tss_esapi::constants::PropertyTag;
use tss_esapi::constants::tss::{TPM2_RH_NULL, TPM2_ST_HASHCHECK};
use tss_esapi::handles::KeyHandle;
use tss_esapi::interface_types::algorithm::{HashingAlgorithm, PublicAlgorithm};
use tss_esapi::interface_types::ecc::EccCurve;
use tss_esapi::interface_types::resource_handles::Hierarchy;
use tss_esapi::interface_types::session_handles::AuthSession;
use tss_esapi::structures::{
    Digest, EccPoint, EccScheme, HashScheme, HashcheckTicket, Private, Public, PublicBuilder,
    PublicEccParameters, PublicEccParametersBuilder, Signature, SignatureScheme,
    SymmetricDefinitionObject,
};
use tss_esapi::tcti_ldr::TctiNameConf;
use tss_esapi::traits::{Marshall as _, UnMarshall as _};
use tss_esapi::tss2_esys::TPMT_TK_HASHCHECK;
use tss_esapi::{Context, utils};

use crate::{
    DeviceKeyError, DeviceKeyProvider, KeyId, ProtectionClass, ProtectionPolicy, ProviderKey,
};

/// The default TCTI: the kernel's resource manager.
pub const DEFAULT_TCTI: &str = "device:/dev/tpmrm0";

const BLOB_MAGIC: &[u8; 8] = b"tthrtpm1";
const BLOB_EXTENSION: &str = "tpmkey";
/// Loaded device keys kept beside the primary. Small on purpose: a TPM without a resource
/// manager in front of it (swtpm, libtpms) has three transient object slots in all.
const LOADED_KEY_CAPACITY: usize = 2;

/// How to reach the TPM and where to keep key blobs.
#[derive(Clone, Debug)]
pub struct TpmSettings {
    /// A libtss2 TCTI string, e.g. `device:/dev/tpmrm0` or `swtpm:host=127.0.0.1,port=2321`.
    pub tcti: String,
    /// Accept a software TPM (swtpm, QEMU vTPM) as if it were hardware. Tests and simulators only.
    pub allow_software_tpm: bool,
    /// Directory of the per-key blob files.
    pub key_dir: PathBuf,
}

/// The `hardware_tpm` provider. The TPM is opened on first use and reopened after a failure, so a
/// TPM that appears later (or a transient error) does not need a restart.
pub struct TpmProvider {
    settings: TpmSettings,
    session: Mutex<Option<Session>>,
    /// When opening last failed: a missing TPM is not asked again (and again logged) on every
    /// request, only after `RETRY_AFTER`.
    failed_at: Mutex<Option<Instant>>,
}

const RETRY_AFTER: Duration = Duration::from_secs(5);

struct Session {
    context: Context,
    primary: KeyHandle,
    /// Most recently used last.
    loaded: Vec<(KeyId, KeyHandle)>,
}

impl TpmProvider {
    /// A provider for `settings`; nothing is opened yet.
    pub fn new(settings: TpmSettings) -> TpmProvider {
        TpmProvider {
            settings,
            session: Mutex::new(None),
            failed_at: Mutex::new(None),
        }
    }

    fn session(&self) -> Result<MutexGuard<'_, Option<Session>>, DeviceKeyError> {
        let mut guard = self
            .session
            .lock()
            .map_err(|_| DeviceKeyError::Platform("TPM session lock poisoned".into()))?;
        if guard.is_none() {
            let mut failed_at = self.failed_at.lock().unwrap_or_else(|p| p.into_inner());
            if failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
                return Err(DeviceKeyError::HardwareBackedKeysUnavailable);
            }
            match Session::open(&self.settings) {
                Ok(session) => {
                    *failed_at = None;
                    *guard = Some(session);
                }
                Err(err) => {
                    if err == DeviceKeyError::HardwareBackedKeysUnavailable {
                        *failed_at = Some(Instant::now());
                    }
                    return Err(err);
                }
            }
        }
        Ok(guard)
    }

    fn blob_path(&self, key_id: &KeyId) -> PathBuf {
        self.settings
            .key_dir
            .join(format!("{}.{BLOB_EXTENSION}", key_id.storage_name()))
    }

    fn read_blob(&self, key_id: &KeyId) -> Result<KeyBlob, DeviceKeyError> {
        if key_id.class() != ProtectionClass::HardwareTpm {
            return Err(DeviceKeyError::KeyNotFound);
        }
        let path = self.blob_path(key_id);
        match fs::read(&path) {
            Ok(bytes) => KeyBlob::decode(&bytes).ok_or_else(|| {
                DeviceKeyError::Platform(format!("TPM key blob {} is malformed", path.display()))
            }),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Err(DeviceKeyError::KeyNotFound),
            Err(err) => Err(platform(format!("reading {}", path.display()), err)),
        }
    }
}

impl DeviceKeyProvider for TpmProvider {
    fn usable_class(&self) -> Result<ProtectionClass, DeviceKeyError> {
        self.session().map(|_| ProtectionClass::HardwareTpm)
    }

    fn create(&self, _: ProtectionPolicy) -> Result<ProviderKey, DeviceKeyError> {
        // hardware_tpm is not degraded, so every policy accepts it.
        let key_id = KeyId::generate(ProtectionClass::HardwareTpm);
        let created = {
            let mut guard = self.session()?;
            let session = guard.as_mut().expect("session() opened it");
            let primary = session.primary;
            let result = session
                .context
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.create(primary, signing_template()?, None, None, None, None)
                });
            result.map_err(|err| {
                *guard = None;
                platform("TPM2_Create", err)
            })?
        };
        let blob = KeyBlob {
            public: created
                .out_public
                .marshall()
                .map_err(|err| platform("marshalling the key's public area", err))?,
            private: created.out_private.value().to_vec(),
        };
        let spki_der = spki_der(&created.out_public)?;
        write_atomically(
            &self.settings.key_dir,
            &self.blob_path(&key_id),
            &blob.encode(),
        )?;
        Ok(ProviderKey { key_id, spki_der })
    }

    fn public_key(&self, key_id: &KeyId) -> Result<ProviderKey, DeviceKeyError> {
        let blob = self.read_blob(key_id)?;
        let public = blob.public()?;
        Ok(ProviderKey {
            key_id: key_id.clone(),
            spki_der: spki_der(&public)?,
        })
    }

    fn sign(&self, key_id: &KeyId, message: &[u8]) -> Result<Vec<u8>, DeviceKeyError> {
        let blob = self.read_blob(key_id)?;
        let digest = Digest::try_from(Sha256::digest(message).to_vec())
            .map_err(|err| platform("building the digest", err))?;
        let mut guard = self.session()?;
        let session = guard.as_mut().expect("session() opened it");
        let result = session.loaded_key(key_id, &blob).and_then(|handle| {
            session
                .context
                .execute_with_session(Some(AuthSession::Password), |c| {
                    c.sign(handle, digest, SignatureScheme::Null, null_ticket()?)
                })
                .map_err(|err| platform("TPM2_Sign", err))
        });
        match result {
            Ok(signature) => der_signature(&signature),
            Err(err) => {
                // A TPM reset or a lost connection invalidates every handle: start over next time.
                *guard = None;
                Err(err)
            }
        }
    }

    fn delete(&self, key_id: &KeyId) -> Result<(), DeviceKeyError> {
        if let Ok(mut guard) = self.session.lock()
            && let Some(session) = guard.as_mut()
            && let Some(index) = session.loaded.iter().position(|(id, _)| id == key_id)
        {
            let (_, handle) = session.loaded.remove(index);
            // A failed flush only leaks a slot until the session is dropped.
            let _ = session.context.flush_context(handle.into());
        }
        let path = self.blob_path(key_id);
        match fs::remove_file(&path) {
            Ok(()) => sync_dir(&self.settings.key_dir),
            Err(err) if err.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(err) => Err(platform(format!("removing {}", path.display()), err)),
        }
    }
}

impl Session {
    fn open(settings: &TpmSettings) -> Result<Session, DeviceKeyError> {
        let unavailable = |why: String| {
            tracing::warn!(tcti = %settings.tcti, "TPM unavailable: {why}");
            DeviceKeyError::HardwareBackedKeysUnavailable
        };
        let tcti = TctiNameConf::from_str(&settings.tcti)
            .map_err(|err| unavailable(format!("bad TCTI: {err}")))?;
        let mut context = Context::new(tcti).map_err(|err| unavailable(err.to_string()))?;
        let manufacturer = context
            .get_tpm_property(PropertyTag::Manufacturer)
            .map_err(|err| unavailable(format!("reading the manufacturer: {err}")))?
            .map(|id| ascii_of(id.to_be_bytes().to_vec()))
            .unwrap_or_default();
        let vendor = utils::get_tpm_vendor(&mut context)
            .map_err(|err| unavailable(format!("reading the vendor string: {err}")))?;
        if is_software_tpm(&manufacturer, &vendor) && !settings.allow_software_tpm {
            return Err(unavailable(format!(
                "a software TPM (manufacturer {manufacturer:?}, vendor {vendor:?}) is not hardware; \
                 set [device_keys] allow_software_tpm = true or TETHER_ALLOW_SOFTWARE_TPM=1 to use it"
            )));
        }
        let primary = context
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.create_primary(
                    Hierarchy::Owner,
                    storage_primary_template()?,
                    None,
                    None,
                    None,
                    None,
                )
            })
            .map_err(|err| platform("TPM2_CreatePrimary", err))?
            .key_handle;
        tracing::debug!(%manufacturer, %vendor, "TPM session open");
        Ok(Session {
            context,
            primary,
            loaded: Vec::with_capacity(LOADED_KEY_CAPACITY),
        })
    }

    fn loaded_key(&mut self, key_id: &KeyId, blob: &KeyBlob) -> Result<KeyHandle, DeviceKeyError> {
        if let Some(index) = self.loaded.iter().position(|(id, _)| id == key_id) {
            let entry = self.loaded.remove(index);
            let handle = entry.1;
            self.loaded.push(entry);
            return Ok(handle);
        }
        if self.loaded.len() == LOADED_KEY_CAPACITY {
            let (_, evicted) = self.loaded.remove(0);
            self.context
                .flush_context(evicted.into())
                .map_err(|err| platform("TPM2_FlushContext", err))?;
        }
        let public = blob.public()?;
        let private = Private::try_from(blob.private.clone())
            .map_err(|err| platform("decoding the key's private blob", err))?;
        let primary = self.primary;
        let handle = self
            .context
            .execute_with_session(Some(AuthSession::Password), |c| {
                c.load(primary, private, public)
            })
            .map_err(|err| platform("TPM2_Load", err))?;
        self.loaded.push((key_id.clone(), handle));
        Ok(handle)
    }
}

/// swtpm (and therefore QEMU/libvirt vTPMs) reports manufacturer "IBM" and vendor "SW   TPM".
fn is_software_tpm(manufacturer: &str, vendor: &str) -> bool {
    let vendor: String = vendor.split_whitespace().collect();
    manufacturer.trim() == "IBM" || vendor.eq_ignore_ascii_case("SWTPM")
}

fn ascii_of(bytes: Vec<u8>) -> String {
    bytes
        .into_iter()
        .filter(|b| *b != 0)
        .map(char::from)
        .collect()
}

/// The TCG "SRK" shape: restricted decryption ECC P-256 key with AES-128-CFB; deterministic.
fn storage_primary_template() -> tss_esapi::Result<Public> {
    let attributes = fixed_key_attributes()
        .with_restricted(true)
        .with_decrypt(true)
        .build()?;
    let parameters = PublicEccParametersBuilder::new_restricted_decryption_key(
        SymmetricDefinitionObject::AES_128_CFB,
        EccCurve::NistP256,
    )
    .build()?;
    p256_template(attributes, parameters)
}

/// An unrestricted ECDSA-P256-SHA256 signing key that can never leave this TPM.
fn signing_template() -> tss_esapi::Result<Public> {
    let attributes = fixed_key_attributes().with_sign_encrypt(true).build()?;
    let parameters = PublicEccParametersBuilder::new_unrestricted_signing_key(
        EccScheme::EcDsa(HashScheme::new(HashingAlgorithm::Sha256)),
        EccCurve::NistP256,
    )
    .build()?;
    p256_template(attributes, parameters)
}

/// Generated inside this TPM, bound to it and to its parent, usable with an empty password and
/// exempt from dictionary-attack lockout.
fn fixed_key_attributes() -> ObjectAttributesBuilder {
    ObjectAttributesBuilder::new()
        .with_fixed_tpm(true)
        .with_fixed_parent(true)
        .with_sensitive_data_origin(true)
        .with_user_with_auth(true)
        .with_no_da(true)
}

fn p256_template(
    attributes: ObjectAttributes,
    parameters: PublicEccParameters,
) -> tss_esapi::Result<Public> {
    PublicBuilder::new()
        .with_public_algorithm(PublicAlgorithm::Ecc)
        .with_name_hashing_algorithm(HashingAlgorithm::Sha256)
        .with_object_attributes(attributes)
        .with_ecc_parameters(parameters)
        .with_ecc_unique_identifier(EccPoint::default())
        .build()
}

fn null_ticket() -> tss_esapi::Result<HashcheckTicket> {
    TPMT_TK_HASHCHECK {
        tag: TPM2_ST_HASHCHECK,
        hierarchy: TPM2_RH_NULL,
        digest: Default::default(),
    }
    .try_into()
}

fn left_pad_32(bytes: &[u8]) -> Result<[u8; 32], DeviceKeyError> {
    let mut out = [0u8; 32];
    let start = 32usize.checked_sub(bytes.len()).ok_or_else(|| {
        DeviceKeyError::Crypto("TPM returned a coordinate longer than 32 bytes".into())
    })?;
    out[start..].copy_from_slice(bytes);
    Ok(out)
}

fn spki_der(public: &Public) -> Result<Vec<u8>, DeviceKeyError> {
    let Public::Ecc { unique, .. } = public else {
        return Err(DeviceKeyError::Crypto("TPM key is not an ECC key".into()));
    };
    let mut sec1 = vec![0x04];
    sec1.extend_from_slice(&left_pad_32(unique.x().value())?);
    sec1.extend_from_slice(&left_pad_32(unique.y().value())?);
    let key = p256::PublicKey::from_sec1_bytes(&sec1)
        .map_err(|err| DeviceKeyError::Crypto(format!("TPM public point: {err}")))?;
    key.to_public_key_der()
        .map(|der| der.into_vec())
        .map_err(|err| DeviceKeyError::Crypto(format!("encoding the SPKI: {err}")))
}

fn der_signature(signature: &Signature) -> Result<Vec<u8>, DeviceKeyError> {
    let Signature::EcDsa(ecdsa) = signature else {
        return Err(DeviceKeyError::Crypto(
            "TPM returned a non-ECDSA signature".into(),
        ));
    };
    let r = left_pad_32(ecdsa.signature_r().value())?;
    let s = left_pad_32(ecdsa.signature_s().value())?;
    p256::ecdsa::Signature::from_scalars(r, s)
        .map(|sig| sig.to_der().as_bytes().to_vec())
        .map_err(|err| DeviceKeyError::Crypto(format!("TPM signature: {err}")))
}

/// The on-disk form of one key: magic, then the marshalled TPM2B_PUBLIC and the TPM2B_PRIVATE
/// buffer, each preceded by its length as a big-endian u32.
struct KeyBlob {
    public: Vec<u8>,
    private: Vec<u8>,
}

impl KeyBlob {
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(16 + self.public.len() + self.private.len());
        out.extend_from_slice(BLOB_MAGIC);
        for part in [&self.public, &self.private] {
            out.extend_from_slice(&(part.len() as u32).to_be_bytes());
            out.extend_from_slice(part);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<KeyBlob> {
        let mut rest = bytes.strip_prefix(BLOB_MAGIC)?;
        let mut next = || {
            let (len, tail) = rest.split_first_chunk::<4>()?;
            let len = u32::from_be_bytes(*len) as usize;
            let (part, tail) = (tail.get(..len)?, &tail[len..]);
            rest = tail;
            Some(part.to_vec())
        };
        let public = next()?;
        let private = next()?;
        rest.is_empty().then_some(KeyBlob { public, private })
    }

    fn public(&self) -> Result<Public, DeviceKeyError> {
        Public::unmarshall(&self.public)
            .map_err(|err| platform("decoding the key's public area", err))
    }
}

fn platform(what: impl std::fmt::Display, err: impl std::fmt::Display) -> DeviceKeyError {
    DeviceKeyError::Platform(format!("{what}: {err}"))
}

/// Writes `bytes` to `path` so that a crash leaves either the old state or the whole new file:
/// a private temporary file in the same directory, fsynced, renamed, then the directory fsynced.
fn write_atomically(dir: &Path, path: &Path, bytes: &[u8]) -> Result<(), DeviceKeyError> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
        .map_err(|err| platform(format!("creating {}", dir.display()), err))?;
    let mut suffix = [0u8; 8];
    rand::rngs::OsRng.fill_bytes(&mut suffix);
    let temporary = dir.join(format!(
        ".tmp-{}",
        suffix
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>()
    ));
    let written = (|| {
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&temporary)?;
        file.write_all(bytes)?;
        file.sync_all()?;
        fs::rename(&temporary, path)
    })();
    if let Err(err) = written {
        let _ = fs::remove_file(&temporary);
        return Err(platform(format!("writing {}", path.display()), err));
    }
    sync_dir(dir)
}

fn sync_dir(dir: &Path) -> Result<(), DeviceKeyError> {
    fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(|err| platform(format!("syncing {}", dir.display()), err))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_round_trips_and_rejects_damage() {
        let blob = KeyBlob {
            public: vec![1, 2, 3],
            private: vec![9; 126],
        };
        let bytes = blob.encode();
        let back = KeyBlob::decode(&bytes).unwrap();
        assert_eq!((back.public, back.private), (blob.public, blob.private));
        assert!(KeyBlob::decode(&bytes[..bytes.len() - 1]).is_none());
        assert!(KeyBlob::decode(&[bytes.as_slice(), &[0]].concat()).is_none());
        assert!(KeyBlob::decode(b"tthrtpm0").is_none());
        assert!(KeyBlob::decode(&[]).is_none());
    }

    #[test]
    fn software_tpm_detection() {
        assert!(is_software_tpm("IBM", "SW   TPM"));
        assert!(is_software_tpm("XYZ", "SW  TPM"));
        assert!(!is_software_tpm("IFX", "SLB9670"));
        assert!(!is_software_tpm("INTC", ""));
    }
}
