//! The model catalog: the bundled `models.json` (codex's model metadata: display names, reasoning
//! efforts, context windows, which shell and patch tools a model is trained on), merged with the
//! provider's own `GET {base_url}/models` when it serves one, and paged for `model/list`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tether_protocol::{
    InputModality, Model, ModelAvailabilityNux, ModelListParams, ModelListResponse,
    ModelServiceTier, ModelUpgradeInfo, MultiAgentVersion, ReasoningEffortOption,
};

/// The catalog shipped with tether.
const BUNDLED_CATALOG: &str = include_str!("../models.json");
/// The codex version whose catalog the remote `/models` endpoint is asked for.
const CLIENT_VERSION: &str = "0.169.0";
/// Context window of models the catalog does not know.
const FALLBACK_CONTEXT_WINDOW: i64 = 272_000;

/// One model's metadata, in codex's `models.json` spelling (the remote `/models` endpoint uses
/// the same). Only `slug` is required.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct ModelInfo {
    /// The name sent upstream.
    pub slug: String,
    /// For pickers; the slug when absent.
    #[serde(default)]
    pub display_name: Option<String>,
    /// For pickers.
    #[serde(default)]
    pub description: Option<String>,
    /// `list` shows it in pickers; anything else hides it.
    #[serde(default = "visibility_list")]
    pub visibility: String,
    /// Lower sorts first.
    #[serde(default)]
    pub priority: i64,
    /// The effort used when none is chosen.
    #[serde(default = "effort_medium")]
    pub default_reasoning_level: String,
    /// The efforts the model accepts.
    #[serde(default)]
    pub supported_reasoning_levels: Vec<ReasoningLevel>,
    /// What user input it takes.
    #[serde(default = "text_and_image")]
    pub input_modalities: Vec<InputModality>,
    /// Its multi-agent runtime.
    #[serde(default)]
    pub multi_agent_version: Option<MultiAgentVersion>,
    /// Speed tiers.
    #[serde(default)]
    pub service_tiers: Vec<ModelServiceTier>,
    /// The tier used when none is chosen.
    #[serde(default)]
    pub default_service_tier: Option<String>,
    /// E.g. `cyber`.
    #[serde(default)]
    pub model_specialty: Option<String>,
    /// The shell tool the model is trained on.
    #[serde(default)]
    pub shell_type: ShellType,
    /// The patch tool the model is trained on; `None`: none.
    #[serde(default)]
    pub apply_patch_tool_type: Option<ApplyPatchToolType>,
    /// How long tool output may get before it is cut.
    #[serde(default)]
    pub truncation_policy: TruncationPolicy,
    /// Whether the model may call several tools at once.
    #[serde(default)]
    pub supports_parallel_tool_calls: bool,
    /// Tokens of context.
    #[serde(default)]
    pub context_window: Option<i64>,
    /// The model to move to.
    #[serde(default)]
    pub upgrade: Option<ModelUpgrade>,
    /// A notice for the picker.
    #[serde(default)]
    pub availability_nux: Option<ModelAvailabilityNux>,
    /// The model's own system prompt; the catalog's default when absent.
    #[serde(default)]
    pub base_instructions: Option<String>,
}

fn visibility_list() -> String {
    "list".into()
}

fn effort_medium() -> String {
    "medium".into()
}

fn text_and_image() -> Vec<InputModality> {
    vec![InputModality::Text, InputModality::Image]
}

/// A reasoning effort a model supports.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReasoningLevel {
    /// `low`, `medium`, …
    pub effort: String,
    /// For the picker.
    #[serde(default)]
    pub description: String,
}

/// The model this one should be upgraded to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelUpgrade {
    /// Its slug.
    pub model: String,
    /// What to tell the user.
    #[serde(default)]
    pub migration_markdown: Option<String>,
}

/// The shell tool a model is trained on.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ShellType {
    /// `shell_command`: one command line, run by the user's shell.
    ShellCommand,
    /// `exec_command` + `write_stdin`: long-running interactive processes.
    UnifiedExec,
    /// `shell` with an argv array.
    #[default]
    #[serde(other)]
    Default,
}

/// The patch tool a model is trained on.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ApplyPatchToolType {
    /// A custom (freeform grammar) tool.
    Freeform,
    /// A JSON function tool.
    Function,
}

/// How tool output is cut.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct TruncationPolicy {
    /// What `limit` counts.
    pub mode: TruncationMode,
    /// The most kept.
    pub limit: u64,
}

impl Default for TruncationPolicy {
    fn default() -> Self {
        TruncationPolicy {
            mode: TruncationMode::Bytes,
            limit: 10_000,
        }
    }
}

/// What a truncation limit counts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum TruncationMode {
    /// Bytes of output.
    Bytes,
    /// Tokens of output.
    Tokens,
}

#[derive(Deserialize)]
struct CatalogFile {
    #[serde(default)]
    base_instructions: Option<String>,
    models: Vec<ModelInfo>,
}

/// Why `model/list` failed.
#[derive(Debug, thiserror::Error)]
pub enum ModelListError {
    /// The cursor is not one this server handed out.
    #[error("invalid cursor: {0}")]
    InvalidCursor(String),
}

/// The bundled catalog.
#[derive(Debug)]
pub struct ModelCatalog {
    models: Vec<ModelInfo>,
    base_instructions: String,
}

impl ModelCatalog {
    /// The catalog shipped with tether.
    pub fn bundled() -> ModelCatalog {
        let file: CatalogFile =
            serde_json::from_str(BUNDLED_CATALOG).expect("the bundled models.json is valid");
        ModelCatalog {
            models: file.models,
            base_instructions: file
                .base_instructions
                .expect("the bundled models.json has base_instructions"),
        }
    }

    /// The bundled entry of `slug`.
    pub fn get(&self, slug: &str) -> Option<&ModelInfo> {
        self.models.iter().find(|model| model.slug == slug)
    }

    /// Metadata for `slug`: the remote entry, else the bundled one, else a generic one. The
    /// result always carries base instructions.
    pub fn resolve(&self, slug: &str, remote: Option<&[ModelInfo]>) -> ModelInfo {
        let mut info = remote
            .and_then(|models| models.iter().find(|m| m.slug == slug))
            .or_else(|| self.get(slug))
            .cloned()
            .unwrap_or_else(|| synthesized(slug));
        if info.base_instructions.is_none() {
            info.base_instructions = Some(self.base_instructions.clone());
        }
        info
    }

    /// The instructions of models that bring none.
    pub fn default_base_instructions(&self) -> &str {
        &self.base_instructions
    }

    /// `model/list`: bundled models with the remote ones merged over them (by slug), the
    /// configured model added when neither knows it, sorted by priority, hidden ones only with
    /// `includeHidden`, paged by `cursor` (an offset) and `limit`.
    pub fn list(
        &self,
        params: &ModelListParams,
        remote: Option<&[ModelInfo]>,
        configured_model: Option<&str>,
    ) -> Result<ModelListResponse, ModelListError> {
        let mut models = self.models.clone();
        for entry in remote.unwrap_or_default() {
            match models.iter_mut().find(|m| m.slug == entry.slug) {
                Some(existing) => *existing = entry.clone(),
                None => models.push(entry.clone()),
            }
        }
        if let Some(slug) = configured_model.filter(|s| !s.is_empty())
            && !models.iter().any(|m| m.slug == slug)
        {
            models.push(synthesized(slug));
        }
        models.sort_by_key(|m| m.priority);
        let default_slug = models
            .iter()
            .find(|m| m.visibility == "list")
            .map(|m| m.slug.clone());
        let include_hidden = params.include_hidden.unwrap_or(false);
        let visible: Vec<Model> = models
            .iter()
            .filter(|m| {
                include_hidden
                    || m.visibility == "list"
                    || Some(m.slug.as_str()) == configured_model
            })
            .map(|m| to_wire(m, default_slug.as_deref() == Some(m.slug.as_str())))
            .collect();
        let (data, next_cursor) = page(visible, params.cursor.as_deref(), params.limit)
            .map_err(ModelListError::InvalidCursor)?;
        Ok(ModelListResponse { data, next_cursor })
    }
}

/// Cuts `items` at the offset `cursor` to at most `limit` items (all when absent), with the
/// cursor of the next page. The error is the bad cursor.
pub(crate) fn page<T>(
    items: Vec<T>,
    cursor: Option<&str>,
    limit: Option<u32>,
) -> Result<(Vec<T>, Option<String>), String> {
    let start = match cursor {
        None => 0,
        Some(cursor) => cursor
            .parse::<usize>()
            .ok()
            .filter(|start| *start <= items.len())
            .ok_or_else(|| cursor.to_owned())?,
    };
    let limit = limit.map_or(usize::MAX, |l| l.max(1) as usize);
    let end = start.saturating_add(limit).min(items.len());
    let next = (end < items.len()).then(|| end.to_string());
    Ok((
        items.into_iter().skip(start).take(end - start).collect(),
        next,
    ))
}

fn synthesized(slug: &str) -> ModelInfo {
    let level = |effort: &str, description: &str| ReasoningLevel {
        effort: effort.into(),
        description: description.into(),
    };
    ModelInfo {
        slug: slug.to_owned(),
        display_name: None,
        description: Some("Configured model.".into()),
        visibility: visibility_list(),
        priority: i64::MAX,
        default_reasoning_level: effort_medium(),
        supported_reasoning_levels: vec![
            level("low", "Fast responses with lighter reasoning"),
            level(
                "medium",
                "Balances speed and reasoning depth for everyday tasks",
            ),
            level("high", "Greater reasoning depth for complex problems"),
        ],
        input_modalities: text_and_image(),
        multi_agent_version: None,
        service_tiers: Vec::new(),
        default_service_tier: None,
        model_specialty: None,
        shell_type: ShellType::ShellCommand,
        apply_patch_tool_type: Some(ApplyPatchToolType::Freeform),
        truncation_policy: TruncationPolicy::default(),
        supports_parallel_tool_calls: false,
        context_window: Some(FALLBACK_CONTEXT_WINDOW),
        upgrade: None,
        availability_nux: None,
        base_instructions: None,
    }
}

fn to_wire(info: &ModelInfo, is_default: bool) -> Model {
    Model {
        id: info.slug.clone(),
        model: info.slug.clone(),
        upgrade: info.upgrade.as_ref().map(|u| u.model.clone()),
        upgrade_info: info.upgrade.as_ref().map(|u| ModelUpgradeInfo {
            model: u.model.clone(),
            upgrade_copy: None,
            model_link: None,
            migration_markdown: u.migration_markdown.clone(),
            retirement_at: None,
        }),
        availability_nux: info.availability_nux.clone(),
        display_name: info
            .display_name
            .clone()
            .unwrap_or_else(|| info.slug.clone()),
        description: info.description.clone().unwrap_or_default(),
        model_specialty: info.model_specialty.clone(),
        hidden: info.visibility != "list",
        supported_reasoning_efforts: info
            .supported_reasoning_levels
            .iter()
            .map(|level| ReasoningEffortOption {
                reasoning_effort: level.effort.clone(),
                description: level.description.clone(),
            })
            .collect(),
        default_reasoning_effort: info.default_reasoning_level.clone(),
        input_modalities: info.input_modalities.clone(),
        supports_personality: false,
        multi_agent_version: info.multi_agent_version,
        additional_speed_tiers: info
            .service_tiers
            .iter()
            .map(|tier| tier.name.to_ascii_lowercase())
            .collect(),
        service_tiers: info.service_tiers.clone(),
        default_service_tier: info.default_service_tier.clone(),
        available_access_programs: None,
        is_default,
    }
}

/// A fetched model list (`None`: the provider serves none) and when it was fetched.
type CachedListing = (Instant, Option<Arc<Vec<ModelInfo>>>);

/// The provider's `GET {base_url}/models`, fetched with a short timeout and kept for a while.
pub struct RemoteModels {
    client: reqwest::Client,
    ttl: Duration,
    cache: Mutex<HashMap<String, CachedListing>>,
}

impl RemoteModels {
    /// Requests time out after `timeout`; answers (and failures) are kept for `ttl`.
    pub fn new(timeout: Duration, ttl: Duration) -> RemoteModels {
        RemoteModels {
            client: reqwest::Client::builder()
                .timeout(timeout)
                .build()
                .expect("an HTTP client builds"),
            ttl,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// The models `base_url` serves, or `None` when it serves none (an error status, a timeout,
    /// a body that is not a codex model list): then the bundled catalog is all there is.
    /// `headers` are the provider's (authorization included); they are never logged.
    pub async fn fetch(
        &self,
        base_url: &str,
        headers: &[(String, String)],
    ) -> Option<Arc<Vec<ModelInfo>>> {
        if let Some((at, models)) = self.cache.lock().expect("cache poisoned").get(base_url)
            && at.elapsed() < self.ttl
        {
            return models.clone();
        }
        let models = self.request(base_url, headers).await.map(Arc::new);
        self.cache
            .lock()
            .expect("cache poisoned")
            .insert(base_url.to_owned(), (Instant::now(), models.clone()));
        models
    }

    async fn request(
        &self,
        base_url: &str,
        headers: &[(String, String)],
    ) -> Option<Vec<ModelInfo>> {
        let url = format!(
            "{}/models?client_version={CLIENT_VERSION}",
            base_url.trim_end_matches('/')
        );
        let mut request = self.client.get(&url);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let response = match request.send().await {
            Ok(response) => response,
            Err(err) => {
                tracing::debug!(%url, "model list unavailable: {}", err.without_url());
                return None;
            }
        };
        if !response.status().is_success() {
            tracing::debug!(%url, status = %response.status(), "model list unavailable");
            return None;
        }
        #[derive(Deserialize)]
        struct Listing {
            models: Vec<ModelInfo>,
        }
        let body = match response.bytes().await {
            Ok(body) => body,
            Err(err) => {
                tracing::debug!(%url, "model list unavailable: {}", err.without_url());
                return None;
            }
        };
        match serde_json::from_slice::<Listing>(&body) {
            Ok(listing) => Some(listing.models),
            Err(err) => {
                tracing::debug!(%url, "model list unusable: {err}");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use serde_json::json;

    use super::*;

    fn params(include_hidden: bool, cursor: Option<&str>, limit: Option<u32>) -> ModelListParams {
        ModelListParams {
            model_provider: None,
            cursor: cursor.map(str::to_owned),
            limit,
            include_hidden: Some(include_hidden),
        }
    }

    #[test]
    fn the_bundled_catalog_lists_current_models_with_tool_metadata() {
        let catalog = ModelCatalog::bundled();
        let sol = catalog.get("gpt-6.1-sol").unwrap();
        assert_eq!(sol.shell_type, ShellType::ShellCommand);
        assert_eq!(
            sol.apply_patch_tool_type,
            Some(ApplyPatchToolType::Freeform)
        );
        assert_eq!(
            sol.truncation_policy,
            TruncationPolicy {
                mode: TruncationMode::Tokens,
                limit: 10_000
            }
        );
        assert!(sol.supports_parallel_tool_calls);
        assert!(catalog.get("no-such-model").is_none());
        assert!(!catalog.default_base_instructions().is_empty());
        let resolved = catalog.resolve("gpt-6.1-sol", None);
        assert_eq!(
            resolved.base_instructions.as_deref(),
            Some(catalog.default_base_instructions())
        );

        let all = catalog.list(&params(true, None, None), None, None).unwrap();
        assert_eq!(all.data.len(), 12);
        assert_eq!(all.next_cursor, None);
        assert_eq!(all.data[0].id, "gpt-6.1-sol");
        assert!(all.data[0].is_default);
        assert_eq!(all.data.iter().filter(|m| m.is_default).count(), 1);
        assert_eq!(all.data[0].additional_speed_tiers, ["fast"]);
        let shown = catalog
            .list(&params(false, None, None), None, None)
            .unwrap();
        assert!(shown.data.iter().all(|m| !m.hidden));
        assert!(shown.data.len() < all.data.len());
    }

    #[test]
    fn pages_by_cursor_and_refuses_bad_cursors() {
        let catalog = ModelCatalog::bundled();
        let first = catalog
            .list(&params(true, None, Some(5)), None, None)
            .unwrap();
        assert_eq!(first.data.len(), 5);
        assert_eq!(first.next_cursor.as_deref(), Some("5"));
        let second = catalog
            .list(&params(true, Some("5"), Some(5)), None, None)
            .unwrap();
        assert_eq!(second.data[0].id, "gpt-6.1-terra");
        let third = catalog
            .list(&params(true, Some("10"), Some(5)), None, None)
            .unwrap();
        assert_eq!(third.data.len(), 2);
        assert_eq!(third.next_cursor, None);
        let err = catalog
            .list(&params(true, Some("x"), None), None, None)
            .unwrap_err();
        assert_eq!(err.to_string(), "invalid cursor: x");
        assert!(
            catalog
                .list(&params(true, Some("99"), None), None, None)
                .is_err()
        );
    }

    #[test]
    fn the_configured_model_is_always_listed() {
        let catalog = ModelCatalog::bundled();
        let list = catalog
            .list(&params(false, None, None), None, Some("mock-model"))
            .unwrap();
        let mock = list.data.iter().find(|m| m.id == "mock-model").unwrap();
        assert_eq!(mock.display_name, "mock-model");
        assert!(!mock.is_default);
        assert!(!mock.supported_reasoning_efforts.is_empty());
        let info = catalog.resolve("mock-model", None);
        assert_eq!(info.context_window, Some(FALLBACK_CONTEXT_WINDOW));
        assert!(info.base_instructions.is_some());
    }

    #[test]
    fn remote_models_override_and_extend_the_bundled_ones() {
        let catalog = ModelCatalog::bundled();
        let remote: Vec<ModelInfo> = serde_json::from_value(json!([
            {"slug": "gpt-6.1-sol", "display_name": "Remote Sol", "priority": 1, "context_window": 1000},
            {"slug": "brand-new", "priority": 0, "shell_type": "unified_exec"}
        ]))
        .unwrap();
        let list = catalog
            .list(&params(false, None, None), Some(&remote), None)
            .unwrap();
        assert_eq!(list.data[0].id, "brand-new");
        assert!(list.data[0].is_default);
        let sol = list.data.iter().find(|m| m.id == "gpt-6.1-sol").unwrap();
        assert_eq!(sol.display_name, "Remote Sol");
        let info = catalog.resolve("brand-new", Some(&remote));
        assert_eq!(info.shell_type, ShellType::UnifiedExec);
        assert_eq!(
            catalog.resolve("gpt-6.1-sol", Some(&remote)).context_window,
            Some(1000)
        );
    }

    async fn serve(router: axum::Router) -> String {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, router).await.unwrap() });
        format!("http://{addr}/v1")
    }

    #[tokio::test]
    async fn fetches_the_providers_list_once_per_ttl_with_its_headers() {
        let hits = Arc::new(AtomicUsize::new(0));
        let counter = hits.clone();
        let router = axum::Router::new().route(
            "/v1/models",
            axum::routing::get(
                move |query: axum::extract::RawQuery, headers: http::HeaderMap| async move {
                    counter.fetch_add(1, Ordering::SeqCst);
                    assert_eq!(query.0.as_deref(), Some("client_version=0.169.0"));
                    assert_eq!(headers["authorization"], "Bearer k");
                    axum::Json(json!({"models": [{"slug": "served", "display_name": "Served"}]}))
                },
            ),
        );
        let base = serve(router).await;
        let remote = RemoteModels::new(Duration::from_secs(5), Duration::from_secs(3600));
        let headers = [("authorization".to_owned(), "Bearer k".to_owned())];
        let models = remote.fetch(&base, &headers).await.unwrap();
        assert_eq!(models[0].slug, "served");
        let again = remote.fetch(&base, &headers).await.unwrap();
        assert_eq!(again, models);
        assert_eq!(hits.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn failures_fall_back_to_nothing() {
        let router = axum::Router::new()
            .route(
                "/bad/models",
                axum::routing::get(|| async { (http::StatusCode::NOT_FOUND, "no") }),
            )
            .route(
                "/odd/models",
                axum::routing::get(|| async { axum::Json(json!({"data": [{"id": "x"}]})) }),
            );
        let base = serve(router).await.replace("/v1", "");
        let remote = RemoteModels::new(Duration::from_secs(5), Duration::ZERO);
        assert!(remote.fetch(&format!("{base}/bad"), &[]).await.is_none());
        assert!(remote.fetch(&format!("{base}/odd"), &[]).await.is_none());
        // A port nobody listens on.
        let closed = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", closed.local_addr().unwrap());
        drop(closed);
        assert!(remote.fetch(&url, &[]).await.is_none());
    }
}
