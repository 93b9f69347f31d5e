//! The handlers of the client-facing catalog methods: the account, the model catalog, the config
//! layers and their edits, skills, hooks, plugins, collaboration modes and feature flags. They
//! read the home and the configuration the server was started with; the logic is in the modules
//! they call.

use std::path::PathBuf;
use std::time::Duration;

use tether_protocol::{
    BedrockCheckGovCloudRequirementsParams, BedrockCheckGovCloudRequirementsResponse,
    CollaborationModeListParams, CollaborationModeListResponse, ConfigBatchWriteParams,
    ConfigReadParams, ConfigReadResponse, ConfigRequirementsReadResponse, ConfigValueWriteParams,
    ConfigWriteResponse, EmptyParams, ErrorObject, ExperimentalFeatureListParams,
    ExperimentalFeatureListResponse, GetAccountParams, GetAccountRateLimitsParams,
    GetAccountRateLimitsResponse, GetAccountResponse, HooksListParams, HooksListResponse,
    LoginAccountParams, LoginAccountResponse, LogoutAccountResponse, ModelListParams,
    ModelListResponse, PluginInstalledParams, PluginInstalledResponse, SkillsListParams,
    SkillsListResponse,
};

use crate::config_rpc::{ConfigLayers, ConfigWriteError};
use crate::dispatch::Ctx;
use crate::error::ServerError;
use crate::models::{ModelCatalog, RemoteModels};
use crate::rate_limits::RateLimitStore;
use crate::skills::SkillHomes;
use crate::{ConfigOverrides, Home};

/// What the catalog methods read, built once at startup.
pub struct Catalog {
    home: Home,
    layers: ConfigLayers,
    models: ModelCatalog,
    remote: RemoteModels,
    /// Rate limits the upstream last reported.
    pub rate_limits: RateLimitStore,
}

impl Catalog {
    /// The catalog of a server whose home is `home`, started with `overrides`.
    pub fn new(home: &Home, overrides: &ConfigOverrides) -> Catalog {
        Catalog {
            home: home.clone(),
            layers: ConfigLayers::new(home.config_file(), &overrides.dotted()),
            models: ModelCatalog::bundled(),
            remote: RemoteModels::new(Duration::from_secs(5), Duration::from_secs(300)),
            rate_limits: RateLimitStore::default(),
        }
    }
}

fn invalid(error: impl std::fmt::Display) -> ServerError {
    ServerError::invalid(error.to_string())
}

fn default_cwd() -> PathBuf {
    std::env::current_dir().unwrap_or_else(|_| PathBuf::from("/"))
}

/// `account/read`.
pub async fn account_read(
    ctx: Ctx,
    _params: GetAccountParams,
) -> Result<GetAccountResponse, ServerError> {
    let providers = &ctx.server.threads.providers;
    let requires_openai_auth = providers.requires_openai_auth(&providers.default_provider);
    let env_key = std::env::var("OPENAI_API_KEY").ok();
    crate::account::read_account(
        &ctx.server.catalog.home.auth_json(),
        env_key.as_deref(),
        requires_openai_auth,
    )
    .map_err(invalid)
}

/// `account/login/start`: an API key is written to `auth.json`; a browser login is refused.
pub async fn login(
    ctx: Ctx,
    params: LoginAccountParams,
) -> Result<LoginAccountResponse, ServerError> {
    crate::account::login(&ctx.server.catalog.home.auth_json(), &params).map_err(invalid)
}

/// `account/logout`.
pub async fn logout(ctx: Ctx, _params: EmptyParams) -> Result<LogoutAccountResponse, ServerError> {
    crate::account::logout(&ctx.server.catalog.home.auth_json()).map_err(invalid)
}

/// `account/rateLimits/read`.
pub async fn rate_limits(
    ctx: Ctx,
    _params: Option<GetAccountRateLimitsParams>,
) -> Result<GetAccountRateLimitsResponse, ServerError> {
    Ok(ctx.server.catalog.rate_limits.read())
}

/// `account/bedrock/checkGovCloudRequirements`.
pub async fn bedrock_check(
    _ctx: Ctx,
    _params: BedrockCheckGovCloudRequirementsParams,
) -> Result<BedrockCheckGovCloudRequirementsResponse, ServerError> {
    Ok(crate::client_catalog::bedrock_gov_cloud_check())
}

/// `model/list`: the bundled catalog, merged with what the provider's `/models` serves.
pub async fn model_list(
    ctx: Ctx,
    params: ModelListParams,
) -> Result<ModelListResponse, ServerError> {
    let providers = &ctx.server.threads.providers;
    let provider_id = params
        .model_provider
        .clone()
        .unwrap_or_else(|| providers.default_provider.clone());
    let catalog = &ctx.server.catalog;
    let remote = match providers.get(&provider_id) {
        Ok(provider) => {
            let endpoint = provider.upstream.endpoint();
            catalog
                .remote
                .fetch(&endpoint.base_url, &endpoint.headers)
                .await
        }
        Err(_) => None,
    };
    let configured = Some(providers.default_model.as_str());
    catalog
        .models
        .list(&params, remote.as_deref().map(Vec::as_slice), configured)
        .map_err(invalid)
}

/// `config/read`.
pub async fn config_read(
    ctx: Ctx,
    params: ConfigReadParams,
) -> Result<ConfigReadResponse, ServerError> {
    let providers = &ctx.server.threads.providers;
    ctx.server
        .catalog
        .layers
        .read(
            &params,
            &providers.default_model,
            &providers.default_provider,
        )
        .map_err(invalid)
}

/// `configRequirements/read`.
pub async fn requirements(
    _ctx: Ctx,
    _params: EmptyParams,
) -> Result<ConfigRequirementsReadResponse, ServerError> {
    crate::config_rpc::read_requirements(std::path::Path::new("/etc/codex/requirements.toml"))
        .map_err(invalid)
}

fn write_error(error: ConfigWriteError) -> ServerError {
    ServerError::Wire(ErrorObject {
        data: Some(error.data()),
        ..ErrorObject::invalid_request(error.to_string())
    })
}

/// `config/value/write`.
pub async fn config_write(
    ctx: Ctx,
    params: ConfigValueWriteParams,
) -> Result<ConfigWriteResponse, ServerError> {
    ctx.server
        .catalog
        .layers
        .write_value(&params)
        .map_err(write_error)
}

/// `config/batchWrite`.
pub async fn config_batch_write(
    ctx: Ctx,
    params: ConfigBatchWriteParams,
) -> Result<ConfigWriteResponse, ServerError> {
    ctx.server
        .catalog
        .layers
        .batch_write(&params)
        .map_err(write_error)
}

/// `skills/list`.
pub async fn skills(ctx: Ctx, params: SkillsListParams) -> Result<SkillsListResponse, ServerError> {
    let homes = SkillHomes {
        codex_home: ctx.server.catalog.home.dir().to_owned(),
        user_home: std::env::home_dir(),
        admin_dir: PathBuf::from("/etc/codex/skills"),
    };
    Ok(crate::skills::list_skills(&params, &homes, &default_cwd()))
}

/// `hooks/list`.
pub async fn hooks(_ctx: Ctx, params: HooksListParams) -> Result<HooksListResponse, ServerError> {
    Ok(crate::client_catalog::hooks(&params, &default_cwd()))
}

/// `plugin/installed`.
pub async fn plugins(
    _ctx: Ctx,
    _params: PluginInstalledParams,
) -> Result<PluginInstalledResponse, ServerError> {
    Ok(crate::client_catalog::installed_plugins())
}

/// `collaborationMode/list`.
pub async fn collaboration_modes(
    _ctx: Ctx,
    _params: CollaborationModeListParams,
) -> Result<CollaborationModeListResponse, ServerError> {
    Ok(crate::client_catalog::collaboration_modes())
}

/// `experimentalFeature/list`.
pub async fn features(
    ctx: Ctx,
    params: ExperimentalFeatureListParams,
) -> Result<ExperimentalFeatureListResponse, ServerError> {
    let effective = ctx.server.catalog.layers.effective().map_err(invalid)?;
    let features = effective.get("features").and_then(toml::Value::as_table);
    crate::client_catalog::experimental_features(&params, features).map_err(invalid)
}
