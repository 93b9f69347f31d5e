//! The small fixed answers clients ask for at startup: `collaborationMode/list` (codex's
//! built-in presets), `experimentalFeature/list` (codex's feature flags with the config's
//! `[features]` applied), `hooks/list` and `plugin/installed` (tether runs no hooks and installs
//! no plugins) and the Bedrock GovCloud check (tether has no Bedrock login).

use std::path::Path;

use serde::Deserialize;
use tether_protocol::{
    BedrockCheckGovCloudRequirementsResponse, CollaborationModeListResponse, CollaborationModeMask,
    ExperimentalFeature, ExperimentalFeatureListParams, ExperimentalFeatureListResponse,
    ExperimentalFeatureStage, HooksListEntry, HooksListParams, HooksListResponse, ModeKind,
    PluginInstalledResponse,
};

/// codex's feature flags, as codex 0.169 lists them.
const BUNDLED_FEATURES: &str = include_str!("../features.json");

/// Why `experimentalFeature/list` failed.
#[derive(Debug, thiserror::Error)]
pub enum FeatureListError {
    /// The cursor is not one this server handed out.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
}

#[derive(Deserialize)]
struct FeatureFile {
    features: Vec<FeatureEntry>,
}

#[derive(Deserialize)]
struct FeatureEntry {
    name: String,
    stage: ExperimentalFeatureStage,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    description: Option<String>,
    #[serde(default)]
    announcement: Option<String>,
    default_enabled: bool,
}

/// `collaborationMode/list`: Plan (medium reasoning) and Default.
pub fn collaboration_modes() -> CollaborationModeListResponse {
    CollaborationModeListResponse {
        data: vec![
            CollaborationModeMask {
                name: "Plan".into(),
                mode: Some(ModeKind::Plan),
                model: None,
                reasoning_effort: Some("medium".into()),
            },
            CollaborationModeMask {
                name: "Default".into(),
                mode: Some(ModeKind::Default),
                model: None,
                reasoning_effort: None,
            },
        ],
    }
}

/// `experimentalFeature/list`: every flag, enabled as `features` (the config's `[features]`
/// table) says or else by default, paged by offset cursors (`"100"`, `"200"`, …).
pub fn experimental_features(
    params: &ExperimentalFeatureListParams,
    features: Option<&toml::Table>,
) -> Result<ExperimentalFeatureListResponse, FeatureListError> {
    let file: FeatureFile =
        serde_json::from_str(BUNDLED_FEATURES).expect("the bundled features.json is valid");
    let all: Vec<ExperimentalFeature> = file
        .features
        .into_iter()
        .map(|entry| ExperimentalFeature {
            enabled: features
                .and_then(|table| table.get(&entry.name))
                .and_then(toml::Value::as_bool)
                .unwrap_or(entry.default_enabled),
            name: entry.name,
            stage: entry.stage,
            display_name: entry.display_name,
            description: entry.description,
            announcement: entry.announcement,
            default_enabled: entry.default_enabled,
        })
        .collect();
    let (data, next_cursor) = crate::models::page(all, params.cursor.as_deref(), params.limit)
        .map_err(FeatureListError::InvalidCursor)?;
    Ok(ExperimentalFeatureListResponse { data, next_cursor })
}

/// `hooks/list`: an empty entry per directory (the session's `default_cwd` when none).
pub fn hooks(params: &HooksListParams, default_cwd: &Path) -> HooksListResponse {
    let cwds: Vec<String> = if params.cwds.is_empty() {
        vec![default_cwd.display().to_string()]
    } else {
        params.cwds.clone()
    };
    HooksListResponse {
        data: cwds
            .into_iter()
            .map(|cwd| HooksListEntry {
                cwd,
                hooks: Vec::new(),
                warnings: Vec::new(),
                errors: Vec::new(),
            })
            .collect(),
    }
}

/// `plugin/installed`: no marketplaces.
pub fn installed_plugins() -> PluginInstalledResponse {
    PluginInstalledResponse::default()
}

/// `account/bedrock/checkGovCloudRequirements`: not GovCloud, nothing to warn about.
pub fn bedrock_gov_cloud_check() -> BedrockCheckGovCloudRequirementsResponse {
    BedrockCheckGovCloudRequirementsResponse {
        is_gov_cloud: false,
        should_warn: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(cursor: Option<&str>) -> ExperimentalFeatureListParams {
        ExperimentalFeatureListParams {
            cursor: cursor.map(str::to_owned),
            limit: Some(100),
            thread_id: None,
        }
    }

    #[test]
    fn features_page_by_hundreds_like_codex() {
        let first = experimental_features(&page(None), None).unwrap();
        assert_eq!(first.data.len(), 100);
        assert_eq!(first.next_cursor.as_deref(), Some("100"));
        assert_eq!(first.data[0].name, "analytics_plan_history");
        assert_eq!(first.data[0].stage, ExperimentalFeatureStage::Beta);
        let second = experimental_features(&page(Some("100")), None).unwrap();
        assert_eq!(second.next_cursor.as_deref(), Some("200"));
        let last = experimental_features(&page(Some("200")), None).unwrap();
        assert_eq!(last.data.len(), 15);
        assert_eq!(last.next_cursor, None);
        let err = experimental_features(&page(Some("abc")), None).unwrap_err();
        assert_eq!(err.to_string(), "invalid cursor: abc");
    }

    #[test]
    fn the_features_table_turns_flags_on_and_off() {
        let table: toml::Table = "shell_tool = false\nmemories = true\nbogus = 3\n"
            .parse()
            .unwrap();
        let all =
            experimental_features(&ExperimentalFeatureListParams::default(), Some(&table)).unwrap();
        let get = |name: &str| all.data.iter().find(|f| f.name == name).unwrap();
        assert!(!get("shell_tool").enabled && get("shell_tool").default_enabled);
        assert!(get("memories").enabled && !get("memories").default_enabled);
        assert!(get("unified_exec").enabled);
        assert_eq!(all.data.len(), 215);
    }

    #[test]
    fn hooks_list_one_empty_entry_per_directory() {
        let response = hooks(
            &HooksListParams {
                cwds: vec!["/w/a".into(), "/w/b".into()],
                thread_id: None,
            },
            Path::new("/x"),
        );
        assert_eq!(response.data.len(), 2);
        assert_eq!(response.data[1].cwd, "/w/b");
        assert!(response.data[0].hooks.is_empty());
        assert_eq!(
            hooks(&HooksListParams::default(), Path::new("/x")).data[0].cwd,
            "/x"
        );
    }

    #[test]
    fn collaboration_modes_are_plan_and_default() {
        let modes = collaboration_modes();
        assert_eq!(modes.data[0].mode, Some(ModeKind::Plan));
        assert_eq!(modes.data[1].name, "Default");
    }
}
