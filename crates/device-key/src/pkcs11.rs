//! `os_protected_nonextractable` keys in a PKCS#11 token that lives outside tether's process and
//! user: `p11-kit-client.so` talking to a `p11-kit server` that runs as another user (SoftHSM2
//! behind it, say). tether can ask for signatures; it can neither read the key nor the token's
//! files. Keys are generated sensitive and non-extractable, and that is checked after generation.
//!
//! A module loaded into tether's own process, or a server running as tether's own user, protects
//! nothing: it is refused unless `allow_in_process` says otherwise (tests only).

use std::os::unix::fs::MetadataExt as _;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Pkcs11};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::types::AuthPin;
use p256::pkcs8::EncodePublicKey as _;
use sha2::{Digest as _, Sha256};

use crate::{
    DeviceKeyError, DeviceKeyProvider, KeyId, ProtectionClass, ProtectionPolicy, ProviderKey,
};

/// DER of the OID of P-256 (secp256r1), the `CKA_EC_PARAMS` of every key.
const P256_PARAMS: [u8; 10] = [0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];
const OBJECT_LABEL: &[u8] = b"tether device key";

/// Which token to use and how to log in.
#[derive(Clone)]
pub struct Pkcs11Settings {
    /// The PKCS#11 module (for the honest class, `p11-kit-client.so`).
    pub module: PathBuf,
    /// Label of the token to use.
    pub token_label: String,
    /// The user PIN (read from a file or a credential; never from argv, never logged).
    pub pin: String,
    /// Accept a token that is not isolated from tether (in-process module, same-user server).
    pub allow_in_process: bool,
}

impl std::fmt::Debug for Pkcs11Settings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pkcs11Settings")
            .field("module", &self.module)
            .field("token_label", &self.token_label)
            .field("pin", &"<redacted>")
            .field("allow_in_process", &self.allow_in_process)
            .finish()
    }
}

/// The `os_protected_nonextractable` provider. The token is opened on first use.
pub struct Pkcs11Provider {
    settings: Pkcs11Settings,
    session: Mutex<Option<TokenSession>>,
}

struct TokenSession {
    // Kept for the session's lifetime: dropping it finalizes the module.
    _context: Pkcs11,
    session: Session,
}

fn platform(what: &str, err: impl std::fmt::Display) -> DeviceKeyError {
    DeviceKeyError::Platform(format!("{what}: {err}"))
}

impl Pkcs11Provider {
    /// A provider for `settings`; nothing is opened yet.
    pub fn new(settings: Pkcs11Settings) -> Pkcs11Provider {
        Pkcs11Provider {
            settings,
            session: Mutex::new(None),
        }
    }

    fn session(&self) -> Result<MutexGuard<'_, Option<TokenSession>>, DeviceKeyError> {
        let mut guard = self
            .session
            .lock()
            .map_err(|_| DeviceKeyError::Platform("PKCS#11 session lock poisoned".into()))?;
        if guard.is_none() {
            *guard = Some(open(&self.settings)?);
        }
        Ok(guard)
    }

    fn with_session<T>(
        &self,
        operation: impl FnOnce(&Session) -> Result<T, DeviceKeyError>,
    ) -> Result<T, DeviceKeyError> {
        let mut guard = self.session()?;
        let result = operation(&guard.as_ref().expect("session() opened it").session);
        if matches!(result, Err(DeviceKeyError::Platform(_))) {
            // A lost server or a logged-out token: start over next time.
            *guard = None;
        }
        result
    }
}

/// Opens the token named in `settings`, refusing one that is not isolated from tether.
fn open(settings: &Pkcs11Settings) -> Result<TokenSession, DeviceKeyError> {
    let unavailable = |why: String| {
        tracing::warn!(module = %settings.module.display(), "PKCS#11 token unavailable: {why}");
        DeviceKeyError::HardwareBackedKeysUnavailable
    };
    if !settings.allow_in_process {
        isolation(&settings.module).map_err(unavailable)?;
    }
    let context = Pkcs11::new(&settings.module)
        .map_err(|err| unavailable(format!("loading the module: {err}")))?;
    context
        .initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK))
        .map_err(|err| unavailable(format!("C_Initialize: {err}")))?;
    let slot = context
        .get_slots_with_token()
        .map_err(|err| unavailable(format!("listing slots: {err}")))?
        .into_iter()
        .find(|slot| {
            context
                .get_token_info(*slot)
                .is_ok_and(|info| info.label().trim_end() == settings.token_label)
        })
        .ok_or_else(|| unavailable(format!("no token labelled {:?}", settings.token_label)))?;
    let session = context
        .open_rw_session(slot)
        .map_err(|err| unavailable(format!("C_OpenSession: {err}")))?;
    session
        .login(
            UserType::User,
            Some(&AuthPin::new(settings.pin.clone().into())),
        )
        .map_err(|err| unavailable(format!("C_Login: {err}")))?;
    Ok(TokenSession {
        _context: context,
        session,
    })
}

/// Ok when `module` is the p11-kit client and the server it reaches runs as another user.
fn isolation(module: &Path) -> Result<(), String> {
    let is_client = module
        .file_name()
        .and_then(|name| name.to_str())
        .is_some_and(|name| name.starts_with("p11-kit-client"));
    if !is_client {
        return Err(format!(
            "{} runs inside tether's process; set [device_keys] allow_in_process_token = true to use it anyway (tests only)",
            module.display()
        ));
    }
    let address = std::env::var("P11_KIT_SERVER_ADDRESS")
        .map_err(|_| "P11_KIT_SERVER_ADDRESS is not set".to_owned())?;
    let socket = address
        .strip_prefix("unix:path=")
        .ok_or_else(|| format!("P11_KIT_SERVER_ADDRESS {address:?} is not a unix socket"))?;
    let server = server_uid(Path::new(socket))?;
    let own = std::fs::metadata("/proc/self")
        .map_err(|err| err.to_string())?
        .uid();
    if server == own {
        return Err(format!(
            "the p11-kit server at {socket} runs as tether's own user ({own})"
        ));
    }
    Ok(())
}

/// The uid of the process listening on `socket`, from the kernel's peer credentials.
fn server_uid(socket: &Path) -> Result<u32, String> {
    let peer = async {
        let stream = tokio::net::UnixStream::connect(socket).await?;
        stream.peer_cred().map(|credentials| credentials.uid())
    };
    let result = match tokio::runtime::Handle::try_current() {
        Ok(handle) => handle.block_on(peer),
        Err(_) => tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(|err| err.to_string())?
            .block_on(peer),
    };
    result.map_err(|err| {
        format!(
            "cannot reach the p11-kit server at {}: {err}",
            socket.display()
        )
    })
}

/// The `CKA_ID` of a key: derived from the id only through a hash.
fn object_id(key_id: &KeyId) -> Vec<u8> {
    Sha256::digest(key_id.as_str().as_bytes()).to_vec()
}

fn find(
    session: &Session,
    key_id: &KeyId,
    class: ObjectClass,
) -> Result<ObjectHandle, DeviceKeyError> {
    if key_id.class() != ProtectionClass::OsProtectedNonextractable {
        return Err(DeviceKeyError::KeyNotFound);
    }
    let template = [Attribute::Class(class), Attribute::Id(object_id(key_id))];
    session
        .find_objects(&template)
        .map_err(|err| platform("C_FindObjects", err))?
        .into_iter()
        .next()
        .ok_or(DeviceKeyError::KeyNotFound)
}

fn spki(session: &Session, public: ObjectHandle) -> Result<Vec<u8>, DeviceKeyError> {
    let attributes = session
        .get_attributes(public, &[AttributeType::EcPoint])
        .map_err(|err| platform("reading CKA_EC_POINT", err))?;
    let Some(Attribute::EcPoint(point)) = attributes.into_iter().next() else {
        return Err(DeviceKeyError::Crypto(
            "the token returned no EC point".into(),
        ));
    };
    // Tokens wrap the point in a DER OCTET STRING (04 41 04‖x‖y); accept a bare point too.
    let point = match point.as_slice() {
        [0x04, 0x41, rest @ ..] if rest.len() == 65 => rest.to_vec(),
        bare => bare.to_vec(),
    };
    p256::PublicKey::from_sec1_bytes(&point)
        .map_err(|err| DeviceKeyError::Crypto(format!("token public point: {err}")))?
        .to_public_key_der()
        .map(|der| der.into_vec())
        .map_err(|err| DeviceKeyError::Crypto(format!("encoding the SPKI: {err}")))
}

/// Both attributes must be true for a key that never existed outside the token.
fn check_never_exposed(session: &Session, private: ObjectHandle) -> Result<(), DeviceKeyError> {
    let attributes = session
        .get_attributes(
            private,
            &[
                AttributeType::NeverExtractable,
                AttributeType::AlwaysSensitive,
            ],
        )
        .map_err(|err| platform("reading the key's protection attributes", err))?;
    let held = attributes.iter().all(|attribute| {
        matches!(
            attribute,
            Attribute::NeverExtractable(true) | Attribute::AlwaysSensitive(true)
        )
    });
    if attributes.len() == 2 && held {
        Ok(())
    } else {
        Err(DeviceKeyError::Platform(
            "the token did not keep the new key non-extractable".into(),
        ))
    }
}

impl DeviceKeyProvider for Pkcs11Provider {
    fn usable_class(&self) -> Result<ProtectionClass, DeviceKeyError> {
        self.session()
            .map(|_| ProtectionClass::OsProtectedNonextractable)
    }

    fn create(&self, policy: ProtectionPolicy) -> Result<ProviderKey, DeviceKeyError> {
        let class = ProtectionClass::OsProtectedNonextractable;
        if !policy.allows(class) {
            return Err(DeviceKeyError::DegradedProtectionNotAllowed { available: class });
        }
        let key_id = KeyId::generate(class);
        let id = object_id(&key_id);
        self.with_session(|session| {
            let public_template = [
                Attribute::Token(true),
                Attribute::Private(false),
                Attribute::Verify(true),
                Attribute::EcParams(P256_PARAMS.to_vec()),
                Attribute::Id(id.clone()),
                Attribute::Label(OBJECT_LABEL.to_vec()),
            ];
            let private_template = [
                Attribute::Token(true),
                Attribute::Private(true),
                Attribute::Sensitive(true),
                Attribute::Extractable(false),
                Attribute::Sign(true),
                Attribute::Id(id.clone()),
                Attribute::Label(OBJECT_LABEL.to_vec()),
            ];
            let (public, private) = session
                .generate_key_pair(
                    &Mechanism::EccKeyPairGen,
                    &public_template,
                    &private_template,
                )
                .map_err(|err| platform("C_GenerateKeyPair", err))?;
            let checked =
                check_never_exposed(session, private).and_then(|()| spki(session, public));
            match checked {
                Ok(spki_der) => Ok(ProviderKey {
                    key_id: key_id.clone(),
                    spki_der,
                }),
                Err(err) => {
                    let _ = session.destroy_object(private);
                    let _ = session.destroy_object(public);
                    Err(err)
                }
            }
        })
    }

    fn public_key(&self, key_id: &KeyId) -> Result<ProviderKey, DeviceKeyError> {
        self.with_session(|session| {
            let public = find(session, key_id, ObjectClass::PUBLIC_KEY)?;
            Ok(ProviderKey {
                key_id: key_id.clone(),
                spki_der: spki(session, public)?,
            })
        })
    }

    fn sign(&self, key_id: &KeyId, message: &[u8]) -> Result<Vec<u8>, DeviceKeyError> {
        let digest = Sha256::digest(message);
        self.with_session(|session| {
            let private = find(session, key_id, ObjectClass::PRIVATE_KEY)?;
            let raw = session
                .sign(&Mechanism::Ecdsa, private, &digest)
                .map_err(|err| platform("C_Sign", err))?;
            p256::ecdsa::Signature::from_slice(&raw)
                .map(|signature| signature.to_der().as_bytes().to_vec())
                .map_err(|err| DeviceKeyError::Crypto(format!("token signature: {err}")))
        })
    }

    fn delete(&self, key_id: &KeyId) -> Result<(), DeviceKeyError> {
        if key_id.class() != ProtectionClass::OsProtectedNonextractable {
            return Ok(());
        }
        self.with_session(|session| {
            let objects = session
                .find_objects(&[Attribute::Id(object_id(key_id))])
                .map_err(|err| platform("C_FindObjects", err))?;
            for object in objects {
                session
                    .destroy_object(object)
                    .map_err(|err| platform("C_DestroyObject", err))?;
            }
            Ok(())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_in_process_module_is_not_isolated() {
        let why = isolation(Path::new("/usr/lib/softhsm/libsofthsm2.so")).unwrap_err();
        assert!(why.contains("runs inside tether's process"), "{why}");
    }

    #[test]
    fn the_pin_is_never_printed() {
        let settings = Pkcs11Settings {
            module: "/m.so".into(),
            token_label: "t".into(),
            pin: "secret-pin".into(),
            allow_in_process: false,
        };
        assert!(!format!("{settings:?}").contains("secret-pin"));
    }
}
