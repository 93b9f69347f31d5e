use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `initialize` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeParams {
    /// Who is connecting.
    pub client_info: ClientInfo,
    /// What the client opts into; absent or `null` means all defaults.
    #[serde(default)]
    pub capabilities: Option<InitializeCapabilities>,
}

/// `clientInfo`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ClientInfo {
    /// Must be a valid HTTP header value: it becomes part of the user agent.
    pub name: String,
    /// The client's version.
    pub version: String,
    /// A display name.
    #[serde(default)]
    pub title: Option<String>,
}

/// `capabilities`.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeCapabilities {
    /// Allows experimental methods and fields in requests.
    #[serde(default)]
    pub experimental_api: bool,
    /// This connection may be asked for `attestation/generate`.
    #[serde(default)]
    pub request_attestation: bool,
    /// Exact notification method names never delivered to this connection.
    #[serde(default)]
    pub opt_out_notification_methods: Option<Vec<String>>,
}

/// `initialize` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct InitializeResponse {
    /// `<server>/<version> (<os> <os version>; <arch>) <terminal> (<client name>; <client version>)`.
    pub user_agent: String,
    /// The server's home directory, absolute.
    pub codex_home: String,
    /// `unix` or `windows`.
    pub platform_family: String,
    /// `linux`, `macos`, `windows`, …
    pub platform_os: String,
}
