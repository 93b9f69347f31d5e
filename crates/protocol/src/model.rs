//! Models and modes the client can pick: `model/list`, `collaborationMode/list`,
//! `experimentalFeature/list`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// `model/list` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelListParams {
    /// List this provider's models instead of the default provider's.
    pub model_provider: Option<String>,
    /// A `nextCursor` from an earlier page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// Include models hidden from the default picker.
    pub include_hidden: Option<bool>,
}

/// `model/list` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ModelListResponse {
    /// This page.
    pub data: Vec<Model>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A model the client may offer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct Model {
    pub id: String,
    /// The slug sent upstream.
    pub model: String,
    /// The model this one should be upgraded to.
    pub upgrade: Option<String>,
    pub upgrade_info: Option<ModelUpgradeInfo>,
    pub availability_nux: Option<ModelAvailabilityNux>,
    pub display_name: String,
    pub description: String,
    pub model_specialty: Option<String>,
    /// Not offered in the default picker.
    pub hidden: bool,
    pub supported_reasoning_efforts: Vec<ReasoningEffortOption>,
    pub default_reasoning_effort: String,
    pub input_modalities: Vec<InputModality>,
    /// Deprecated: always false.
    pub supports_personality: bool,
    pub multi_agent_version: Option<MultiAgentVersion>,
    /// Deprecated: the ids of `service_tiers`' speed names.
    pub additional_speed_tiers: Vec<String>,
    pub service_tiers: Vec<ModelServiceTier>,
    pub default_service_tier: Option<String>,
    pub available_access_programs: Option<serde_json::Value>,
    /// The model new threads use when none is configured.
    pub is_default: bool,
}

/// A reasoning effort a model supports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ReasoningEffortOption {
    /// `low`, `medium`, `high`, …
    pub reasoning_effort: String,
    /// For the picker.
    pub description: String,
}

/// Where a model's upgrade leads.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct ModelUpgradeInfo {
    pub model: String,
    pub upgrade_copy: Option<String>,
    pub model_link: Option<String>,
    pub migration_markdown: Option<String>,
    /// Unix seconds.
    pub retirement_at: Option<i64>,
}

/// A notice shown when a model becomes available.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct ModelAvailabilityNux {
    /// The notice.
    pub message: String,
}

/// A speed tier of a model.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[allow(missing_docs)]
pub struct ModelServiceTier {
    pub id: String,
    pub name: String,
    pub description: String,
}

/// A kind of user input a model accepts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum InputModality {
    Text,
    Image,
    Audio,
}

/// The multi-agent runtime a model declares.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum MultiAgentVersion {
    Disabled,
    V1,
    V2,
}

/// `collaborationMode/list` params (none).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CollaborationModeListParams {}

/// `collaborationMode/list` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CollaborationModeListResponse {
    /// The presets.
    pub data: Vec<CollaborationModeMask>,
}

/// A collaboration-mode preset. Its members are snake_case on the wire, as codex sends them.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct CollaborationModeMask {
    /// Display name.
    pub name: String,
    /// The mode.
    pub mode: Option<ModeKind>,
    /// Model override; `null` keeps the thread's.
    pub model: Option<String>,
    /// Reasoning effort override; `null` keeps the thread's.
    pub reasoning_effort: Option<String>,
}

/// A collaboration mode.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
#[allow(missing_docs)]
pub enum ModeKind {
    Plan,
    Default,
}

/// `experimentalFeature/list` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentalFeatureListParams {
    /// A `nextCursor` from an earlier page.
    pub cursor: Option<String>,
    /// Page size.
    pub limit: Option<u32>,
    /// Compute enablement for this loaded thread.
    pub thread_id: Option<String>,
}

/// `experimentalFeature/list` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentalFeatureListResponse {
    /// This page.
    pub data: Vec<ExperimentalFeature>,
    /// Pass as `cursor` for the next page; `null` on the last.
    pub next_cursor: Option<String>,
}

/// A feature flag.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExperimentalFeature {
    /// The key in `[features]` of config.toml.
    pub name: String,
    /// Lifecycle stage.
    pub stage: ExperimentalFeatureStage,
    /// Beta features only.
    pub display_name: Option<String>,
    /// Beta features only.
    pub description: Option<String>,
    /// Beta features only.
    pub announcement: Option<String>,
    /// Enabled in the loaded config.
    pub enabled: bool,
    /// Enabled by default.
    pub default_enabled: bool,
}

/// A feature flag's lifecycle stage.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum ExperimentalFeatureStage {
    Beta,
    UnderDevelopment,
    Stable,
    Deprecated,
    Removed,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_the_tui_sends() {
        let params: ModelListParams = serde_json::from_value(
            json!({"modelProvider": null, "cursor": null, "limit": null, "includeHidden": true}),
        )
        .unwrap();
        assert_eq!(params.include_hidden, Some(true));
        let params: ExperimentalFeatureListParams = serde_json::from_value(
            json!({"cursor": "100", "limit": 100, "threadId": "01a23747-00a8-74e1-9a7e-1a02f7b2b85e"}),
        )
        .unwrap();
        assert_eq!(params.cursor.as_deref(), Some("100"));
        assert_eq!(params.limit, Some(100));
        let _: CollaborationModeListParams = serde_json::from_value(json!({})).unwrap();
    }
}
