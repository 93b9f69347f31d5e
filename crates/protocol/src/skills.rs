//! What a workspace brings along: `skills/list`, `hooks/list`, `plugin/installed`.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// `skills/list` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillsListParams {
    /// Working directories; empty means the session's.
    #[serde(default)]
    pub cwds: Vec<String>,
    /// Re-scan instead of using a cache.
    #[serde(default)]
    pub force_reload: bool,
}

/// `skills/list` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SkillsListResponse {
    /// One entry per requested directory.
    pub data: Vec<SkillsListEntry>,
}

/// The skills seen from one directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct SkillsListEntry {
    /// The directory.
    pub cwd: String,
    /// Usable skills, highest-priority scope first.
    pub skills: Vec<SkillMetadata>,
    /// `SKILL.md` files that could not be used.
    pub errors: Vec<SkillErrorInfo>,
}

/// One skill.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct SkillMetadata {
    /// From the front matter.
    pub name: String,
    /// From the front matter.
    pub description: String,
    /// The front matter's `metadata.short-description`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub short_description: Option<String>,
    /// Display metadata.
    pub interface: Option<SkillInterface>,
    /// The `SKILL.md` file.
    pub path: String,
    /// Where it was found.
    pub scope: SkillScope,
    /// Offered to the model.
    pub enabled: bool,
    /// The owning plugin.
    pub plugin_id: Option<String>,
}

/// Display metadata of a skill.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
#[allow(missing_docs)]
pub struct SkillInterface {
    pub display_name: Option<String>,
    pub short_description: Option<String>,
    pub icon_small: Option<String>,
    pub icon_large: Option<String>,
    pub icon_small_url: Option<String>,
    pub icon_large_url: Option<String>,
    pub brand_color: Option<String>,
    pub default_prompt: Option<String>,
}

/// Where a skill was found.
#[derive(
    Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, JsonSchema,
)]
#[serde(rename_all = "lowercase")]
pub enum SkillScope {
    /// In the repository (`.codex/skills`, `.agents/skills`).
    Repo,
    /// The user's (`$CODEX_HOME/skills`, `~/.agents/skills`).
    User,
    /// Bundled (`$CODEX_HOME/skills/.system`).
    System,
    /// The machine's (`/etc/codex/skills`).
    Admin,
}

/// A skill file that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct SkillErrorInfo {
    /// The `SKILL.md` file.
    pub path: String,
    /// Why.
    pub message: String,
}

/// `hooks/list` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct HooksListParams {
    /// Working directories; empty means the session's.
    #[serde(default)]
    pub cwds: Vec<String>,
    /// A loaded thread instead of directories.
    #[serde(default)]
    pub thread_id: Option<String>,
}

/// `hooks/list` result.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HooksListResponse {
    /// One entry per directory.
    pub data: Vec<HooksListEntry>,
}

/// The hooks seen from one directory.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct HooksListEntry {
    /// The directory.
    pub cwd: String,
    /// Configured hooks (tether runs none).
    pub hooks: Vec<Value>,
    /// For the user.
    pub warnings: Vec<String>,
    /// Hook files that could not be used.
    pub errors: Vec<HookErrorInfo>,
}

/// A hook file that could not be used.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
pub struct HookErrorInfo {
    /// The file.
    pub path: String,
    /// Why.
    pub message: String,
}

/// `plugin/installed` params.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginInstalledParams {
    /// Directories whose repository marketplaces to include.
    #[serde(default)]
    pub cwds: Option<Vec<String>>,
    /// Uninstalled plugins to return when present locally.
    #[serde(default)]
    pub install_suggestion_plugin_names: Option<Vec<String>>,
}

/// `plugin/installed` result.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct PluginInstalledResponse {
    /// Marketplaces with installed plugins (tether installs none).
    pub marketplaces: Vec<Value>,
    /// Marketplaces that could not be read.
    pub marketplace_load_errors: Vec<MarketplaceLoadErrorInfo>,
}

/// A marketplace that could not be read.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct MarketplaceLoadErrorInfo {
    /// Its file.
    pub marketplace_path: String,
    /// Why.
    pub message: String,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn decodes_what_the_tui_sends() {
        let params: SkillsListParams =
            serde_json::from_value(json!({"cwds": ["<tmp>/work"], "forceReload": true})).unwrap();
        assert_eq!(params.cwds, ["<tmp>/work"]);
        assert!(params.force_reload);
        let params: HooksListParams =
            serde_json::from_value(json!({"cwds": ["<tmp>/work"], "threadId": null})).unwrap();
        assert_eq!(params.cwds.len(), 1);
        let params: PluginInstalledParams = serde_json::from_value(
            json!({"cwds": ["<tmp>/work"], "installSuggestionPluginNames": null}),
        )
        .unwrap();
        assert_eq!(params.cwds.unwrap().len(), 1);
    }
}
