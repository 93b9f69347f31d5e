//! The params and answers of the requests tether sends to clients.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::table::server_requests;

/// `item/tool/call` params: the model called a tool the client declared.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolCallParams {
    /// The thread.
    pub thread_id: String,
    /// The turn.
    pub turn_id: String,
    /// The model's call id.
    pub call_id: String,
    /// The tool's name.
    pub tool: String,
    /// The model's arguments: JSON when they parse, else the raw string.
    pub arguments: Value,
    /// The tool's namespace, if it was declared in one.
    pub namespace: Option<String>,
}

/// One part of a client tool's output.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum DynamicToolCallOutputContentItem {
    /// Text for the model.
    InputText {
        /// The text.
        text: String,
    },
    /// An image for the model.
    InputImage {
        /// A URL or data URL.
        image_url: String,
    },
    /// Audio for the model.
    InputAudio {
        /// A URL or data URL.
        audio_url: String,
    },
}

impl DynamicToolCallOutputContentItem {
    /// A text part.
    pub fn text(text: impl Into<String>) -> DynamicToolCallOutputContentItem {
        DynamicToolCallOutputContentItem::InputText { text: text.into() }
    }
}

/// The client's answer to `item/tool/call`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DynamicToolCallResponse {
    /// The tool's output.
    pub content_items: Vec<DynamicToolCallOutputContentItem>,
    /// Whether the tool succeeded.
    pub success: bool,
}

/// `attestation/generate` params: none.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttestationGenerateParams {}

/// The client's answer to `attestation/generate`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct AttestationGenerateResponse {
    /// Opaque; forwarded upstream as `x-oai-attestation`.
    pub token: String,
}

server_requests! {
    /// The model called a client-provided tool.
    DynamicToolCall => "item/tool/call" (DynamicToolCallParams) -> DynamicToolCallResponse;
    /// An attestation for a first-party upstream request.
    AttestationGenerate => "attestation/generate" (AttestationGenerateParams) -> AttestationGenerateResponse;
    /// May the agent run this command?
    CommandExecutionRequestApproval => "item/commandExecution/requestApproval" (crate::CommandExecutionRequestApprovalParams) -> crate::CommandExecutionRequestApprovalResponse;
}
