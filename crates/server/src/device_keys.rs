//! The device-key store as the server runs it, and the `device/key/*` handlers.

use std::sync::Arc;

use tether_device_key::{DeviceKeyError, DeviceKeyProvider, DeviceKeyStore};
use tether_protocol::{
    DeviceKeyCreateParams, DeviceKeyInfo, DeviceKeyPublicParams, DeviceKeySignParams,
    DeviceKeySignature,
};
use tether_state::StateDb;
use tracing::Instrument as _;

use crate::dispatch::Ctx;
use crate::error::ServerError;
use crate::{DeviceKeysConfig, Home};

/// The device-key store as tether runs it: bindings in the state database.
pub type DeviceKeys = DeviceKeyStore<StateDb>;

/// Opens the state database under `home` and the platform's provider. Nothing touches the TPM
/// until the first key operation.
pub fn open_device_keys(
    home: &Home,
    config: &DeviceKeysConfig,
) -> Result<DeviceKeys, DeviceKeyError> {
    let state =
        StateDb::open(&home.state_db()).map_err(|err| DeviceKeyError::Platform(err.to_string()))?;
    Ok(device_keys(state, home, config))
}

/// The device-key store over an already open state database.
pub fn device_keys(state: StateDb, home: &Home, config: &DeviceKeysConfig) -> DeviceKeys {
    DeviceKeyStore::new(state, platform_provider(home, config))
}

/// The TPM first; the PKCS#11 token (when configured) for callers whose policy allows it.
#[cfg(target_os = "linux")]
fn platform_provider(home: &Home, config: &DeviceKeysConfig) -> Arc<dyn DeviceKeyProvider> {
    use tether_device_key::SelectingProvider;
    use tether_device_key::pkcs11::{Pkcs11Provider, Pkcs11Settings};
    use tether_device_key::tpm::{DEFAULT_TCTI, TpmProvider, TpmSettings};
    let token = config.pkcs11_module.as_ref().map(|module| {
        let provider = Pkcs11Provider::new(Pkcs11Settings {
            module: module.clone(),
            token_label: config
                .pkcs11_token_label
                .clone()
                .unwrap_or_else(|| "tether".to_owned()),
            pin: read_pin(config),
            allow_in_process: config.allow_in_process_token,
        });
        Arc::new(provider) as Arc<dyn DeviceKeyProvider>
    });
    let tpm = Arc::new(TpmProvider::new(TpmSettings {
        tcti: config
            .tpm_tcti
            .clone()
            .unwrap_or_else(|| DEFAULT_TCTI.to_owned()),
        allow_software_tpm: config.allow_software_tpm,
        key_dir: home.tpm_key_dir(),
    }));
    Arc::new(SelectingProvider::new(tpm, token))
}

/// The token PIN: from `pkcs11_pin_file`, else the systemd credential. Read once; never logged.
#[cfg(target_os = "linux")]
fn read_pin(config: &DeviceKeysConfig) -> String {
    let path = config.pkcs11_pin_file.clone().or_else(|| {
        std::env::var_os("CREDENTIALS_DIRECTORY")
            .map(|dir| std::path::PathBuf::from(dir).join("tether-pkcs11-pin"))
    });
    match path.map(|path| (std::fs::read_to_string(&path), path)) {
        Some((Ok(pin), _)) => pin.trim_end_matches(['\n', '\r']).to_owned(),
        Some((Err(err), path)) => {
            tracing::warn!(path = %path.display(), "cannot read the PKCS#11 PIN: {err}");
            String::new()
        }
        None => String::new(),
    }
}

#[cfg(not(target_os = "linux"))]
fn platform_provider(_: &Home, _: &DeviceKeysConfig) -> Arc<dyn DeviceKeyProvider> {
    Arc::new(tether_device_key::UnavailableProvider)
}

/// `device/key/create`.
pub async fn create(ctx: Ctx, params: DeviceKeyCreateParams) -> Result<DeviceKeyInfo, ServerError> {
    let keys = &ctx.server.device_keys;
    let created = keys.create(
        &params.account_user_id,
        &params.client_id,
        params.protection_policy,
    );
    Ok(created.instrument(span("device/key/create")).await?)
}

/// `device/key/public`.
pub async fn public(ctx: Ctx, params: DeviceKeyPublicParams) -> Result<DeviceKeyInfo, ServerError> {
    let keys = &ctx.server.device_keys;
    Ok(keys
        .get_public(&params.key_id)
        .instrument(span("device/key/public"))
        .await?)
}

/// `device/key/sign`.
pub async fn sign(
    ctx: Ctx,
    params: DeviceKeySignParams,
) -> Result<DeviceKeySignature, ServerError> {
    let keys = &ctx.server.device_keys;
    let signed = keys.sign(&params.key_id, &params.payload);
    Ok(signed.instrument(span("device/key/sign")).await?)
}

fn span(method: &'static str) -> tracing::Span {
    tracing::info_span!("device_key", method)
}
