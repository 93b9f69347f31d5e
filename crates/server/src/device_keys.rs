use std::sync::Arc;

use tether_device_key::{DeviceKeyError, DeviceKeyProvider, DeviceKeyStore};
use tether_state::StateDb;

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

#[cfg(target_os = "linux")]
fn platform_provider(home: &Home, config: &DeviceKeysConfig) -> Arc<dyn DeviceKeyProvider> {
    use tether_device_key::tpm::{DEFAULT_TCTI, TpmProvider, TpmSettings};
    Arc::new(TpmProvider::new(TpmSettings {
        tcti: config
            .tpm_tcti
            .clone()
            .unwrap_or_else(|| DEFAULT_TCTI.to_owned()),
        allow_software_tpm: config.allow_software_tpm,
        key_dir: home.tpm_key_dir(),
    }))
}

#[cfg(not(target_os = "linux"))]
fn platform_provider(_: &Home, _: &DeviceKeysConfig) -> Arc<dyn DeviceKeyProvider> {
    Arc::new(tether_device_key::UnavailableProvider)
}
