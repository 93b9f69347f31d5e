//! `tether/status`: tether's own introspection method for the server's owner.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use tether_device_key::ProtectionClass;

use crate::ThreadStatus;

/// `tether/status` params: none (members are ignored).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct TetherStatusParams {}

/// What the server is doing.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct TetherStatusResponse {
    /// tether's version.
    pub version: String,
    /// Since the server started.
    pub uptime_seconds: u64,
    /// Every open connection.
    pub connections: Vec<ConnectionStatus>,
    /// Every loaded thread, by id.
    pub threads: Vec<LoadedThreadStatus>,
    /// Server requests waiting for an answer.
    pub pending_server_requests: usize,
    /// Whether device keys can be created.
    pub device_keys: DeviceKeyAvailability,
}

/// One open connection.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ConnectionStatus {
    pub id: u64,
    /// `stdio`, `unix` or `websocket`.
    pub transport: String,
    pub initialized: bool,
    /// `clientInfo.name`, once initialized.
    pub client: Option<String>,
    pub experimental_api: bool,
    pub request_attestation: bool,
}

/// One loaded thread.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub struct LoadedThreadStatus {
    pub id: String,
    pub status: ThreadStatus,
    /// How many connections are subscribed.
    pub subscribers: usize,
}

/// Whether device keys can be created, and of which class.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct DeviceKeyAvailability {
    pub available: bool,
    pub protection_class: Option<ProtectionClass>,
    /// Why not, when unavailable.
    pub error: Option<String>,
}
