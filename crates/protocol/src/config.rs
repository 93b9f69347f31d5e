//! Configuration over the wire: `config/read`, `configRequirements/read`, `config/value/write`,
//! `config/batchWrite`, and the `configWarning` and `warning` notifications.

use std::collections::BTreeMap;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// `config/read` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReadParams {
    /// Also return every layer.
    #[serde(default)]
    pub include_layers: bool,
    /// Resolve project layers as seen from this directory.
    #[serde(default)]
    pub cwd: Option<String>,
}

/// `config/read` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigReadResponse {
    /// The effective configuration, with config.toml's key names.
    pub config: Map<String, Value>,
    /// For each dotted key path of a set value: the layer it came from.
    pub origins: BTreeMap<String, ConfigLayerMetadata>,
    /// Every layer, highest precedence first; `null` unless `includeLayers`.
    pub layers: Option<Vec<ConfigLayer>>,
}

/// One configuration layer.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLayer {
    /// Where it comes from.
    pub name: ConfigLayerSource,
    /// Opaque; `config/value/write` takes it as `expectedVersion`.
    pub version: String,
    /// The layer's own settings.
    pub config: Value,
    /// Why the layer is ignored, if it is.
    pub disabled_reason: Option<String>,
}

/// A layer's identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigLayerMetadata {
    /// Where it comes from.
    pub name: ConfigLayerSource,
    /// Its version.
    pub version: String,
}

/// Where a layer comes from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(
    tag = "type",
    rename_all = "camelCase",
    rename_all_fields = "camelCase"
)]
pub enum ConfigLayerSource {
    /// `/etc/codex/config.toml`.
    System {
        /// The file (need not exist).
        file: String,
    },
    /// `$CODEX_HOME/config.toml`.
    User {
        /// The file (need not exist).
        file: String,
        /// The selected profile, when this layer is one.
        profile: Option<String>,
    },
    /// A project's `.codex/` folder.
    Project {
        /// The folder.
        dot_codex_folder: String,
    },
    /// `-c key=value` on the command line.
    SessionFlags,
}

/// `configRequirements/read` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigRequirementsReadResponse {
    /// Managed requirements; `null` when none are configured.
    pub requirements: Option<Map<String, Value>>,
    /// Fast and Ultra Fast requirements are enforced independently.
    pub supports_independent_speed_modes: Option<bool>,
}

/// How a written value combines with what is there.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum MergeStrategy {
    /// The value replaces the key's value.
    Replace,
    /// Tables merge key by key; other values replace.
    Upsert,
}

/// `config/value/write` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigValueWriteParams {
    /// Dotted key path, e.g. `model_providers.local.base_url`.
    pub key_path: String,
    /// The value; `null` removes the key.
    pub value: Value,
    /// How it combines.
    pub merge_strategy: MergeStrategy,
    /// The file; default the user's config.toml.
    #[serde(default)]
    pub file_path: Option<String>,
    /// Fail unless the file is at this version.
    #[serde(default)]
    pub expected_version: Option<String>,
}

/// `config/batchWrite` params: edits applied together, all or none.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigBatchWriteParams {
    /// In order.
    pub edits: Vec<ConfigEdit>,
    /// The file; default the user's config.toml.
    #[serde(default)]
    pub file_path: Option<String>,
    /// Fail unless the file is at this version.
    #[serde(default)]
    pub expected_version: Option<String>,
    /// Reload runtime settings into loaded threads afterwards.
    #[serde(default)]
    pub reload_user_config: bool,
}

/// One edit of a batch.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigEdit {
    /// Dotted key path.
    pub key_path: String,
    /// The value; `null` removes the key.
    pub value: Value,
    /// How it combines.
    pub merge_strategy: MergeStrategy,
}

/// `config/value/write` and `config/batchWrite` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigWriteResponse {
    /// Whether a higher layer still overrides what was written.
    pub status: WriteStatus,
    /// The file's new version.
    pub version: String,
    /// The file written, canonical.
    pub file_path: String,
    /// The overriding layer and the effective value, when `okOverridden`.
    pub overridden_metadata: Option<OverriddenMetadata>,
}

/// The outcome of a write.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub enum WriteStatus {
    /// Written and effective.
    Ok,
    /// Written, but a higher layer sets the key.
    OkOverridden,
}

/// What overrides a written value.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct OverriddenMetadata {
    /// For the user.
    pub message: String,
    /// The layer that wins.
    pub overriding_layer: ConfigLayerMetadata,
    /// The value in effect.
    pub effective_value: Value,
}

/// Why a config write failed; sent as the error's `data.config_write_error_code`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub enum ConfigWriteErrorCode {
    ConfigLayerReadonly,
    ConfigVersionConflict,
    ConfigValidationError,
    ConfigPathNotFound,
    ConfigSchemaUnknownKey,
    UserLayerNotFound,
}

/// `configWarning` params: a problem with the configuration that did not stop the server.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ConfigWarningNotification {
    /// One line.
    pub summary: String,
    /// More detail or guidance.
    pub details: Option<String>,
    /// The config file concerned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Where in that file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub range: Option<TextRange>,
}

/// A range in a text file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TextRange {
    /// First character.
    pub start: TextPosition,
    /// Last character.
    pub end: TextPosition,
}

/// A position in a text file, 1-based.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct TextPosition {
    /// Line.
    pub line: u32,
    /// Column, in Unicode scalar values.
    pub column: u32,
}

/// `warning` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct WarningNotification {
    /// The thread concerned, if any.
    pub thread_id: Option<String>,
    /// For the user.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_the_tui_sends() {
        let params: ConfigReadParams =
            serde_json::from_value(json!({"includeLayers": true, "cwd": "."})).unwrap();
        assert!(params.include_layers);
        assert_eq!(params.cwd.as_deref(), Some("."));
        let params: ConfigReadParams = serde_json::from_value(json!({"cwd": null})).unwrap();
        assert!(!params.include_layers && params.cwd.is_none());
        let params: ConfigValueWriteParams = serde_json::from_value(json!({
            "keyPath": "tui.theme", "value": "dark", "mergeStrategy": "upsert",
            "filePath": null, "expectedVersion": null
        }))
        .unwrap();
        assert_eq!(params.merge_strategy, MergeStrategy::Upsert);
        let params: ConfigBatchWriteParams = serde_json::from_value(json!({
            "edits": [{"keyPath": "model", "value": null, "mergeStrategy": "replace"}],
            "reloadUserConfig": true
        }))
        .unwrap();
        assert_eq!(params.edits[0].value, Value::Null);
    }
}
