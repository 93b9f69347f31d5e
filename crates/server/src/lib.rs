//! The tether app-server. Today it owns the home directory layout, configuration, and the wiring of
//! device keys (state database + provider) that both the `tether` CLI and the server use; the
//! transports, connections, threads, turns and attestation arrive here next.
//!
//! It must not know how key material is stored (that is `tether-device-key`) or what SQL looks like
//! (that is `tether-state`): it only chooses, from configuration, which of their parts to connect.

mod config;
mod device_keys;
mod home;

pub use config::{Config, ConfigError, DeviceKeysConfig};
pub use device_keys::{DeviceKeys, open_device_keys};
pub use home::Home;
