//! Model providers from configuration and credentials: which endpoint a thread's requests go to,
//! with which headers and retry settings. Secrets are read here and never logged.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tether_upstream::{DEFAULT_MAX_RETRY_AFTER, Endpoint, Upstream};

use crate::{Config, ProviderConfig};

const OPENAI_PROVIDER: &str = "openai";
const OPENAI_BASE_URL: &str = "https://api.openai.com/v1";
const CHATGPT_BASE_URL: &str = "https://chatgpt.com/backend-api/codex";
const DEFAULT_MODEL: &str = "gpt-5.1-codex";

/// `auth.json`, as Codex writes it.
#[derive(Clone, Default, Deserialize)]
struct AuthFile {
    auth_mode: Option<String>,
    #[serde(rename = "OPENAI_API_KEY")]
    openai_api_key: Option<String>,
    tokens: Option<AuthTokens>,
}

#[derive(Clone, Default, Deserialize)]
struct AuthTokens {
    access_token: Option<String>,
    account_id: Option<String>,
}

/// One usable provider.
pub struct Provider {
    /// The client for its endpoint.
    pub upstream: Upstream,
    /// Retries of a stream that broke off.
    pub stream_max_retries: u32,
    /// Requests go to OpenAI with the user's ChatGPT login: they carry client attestation.
    pub first_party: bool,
}

/// Every configured provider, resolved once at startup.
pub struct Providers {
    providers: BTreeMap<String, Result<Arc<Provider>, String>>,
    requires_openai_auth: std::collections::BTreeSet<String>,
    /// The provider of threads that name none.
    pub default_provider: String,
    /// The model of threads that name none.
    pub default_model: String,
}

impl Providers {
    /// Resolves `config` with the credentials in `home_auth` (`auth.json`) and the environment.
    pub fn new(
        config: &Config,
        auth_json: &Path,
        env: impl Fn(&str) -> Option<String>,
    ) -> Providers {
        let auth: AuthFile = std::fs::read_to_string(auth_json)
            .ok()
            .and_then(|text| match serde_json::from_str(&text) {
                Ok(auth) => Some(auth),
                Err(err) => {
                    tracing::warn!(path = %auth_json.display(), "ignoring unreadable auth.json: {err}");
                    None
                }
            })
            .unwrap_or_default();
        let mut configured = config.model_providers.clone();
        configured
            .entry(OPENAI_PROVIDER.to_owned())
            .or_insert_with(|| ProviderConfig {
                name: Some("OpenAI".into()),
                requires_openai_auth: true,
                ..ProviderConfig::default()
            });
        let requires_openai_auth = configured
            .iter()
            .filter(|(_, settings)| settings.requires_openai_auth)
            .map(|(id, _)| id.clone())
            .collect();
        let providers = configured
            .into_iter()
            .map(|(id, settings)| {
                let provider = resolve(&id, &settings, config, &auth, &env).map(Arc::new);
                (id, provider)
            })
            .collect();
        Providers {
            providers,
            requires_openai_auth,
            default_provider: config
                .model_provider
                .clone()
                .unwrap_or_else(|| OPENAI_PROVIDER.to_owned()),
            default_model: config
                .model
                .clone()
                .unwrap_or_else(|| DEFAULT_MODEL.to_owned()),
        }
    }

    /// Whether `id` names a configured provider.
    pub fn contains(&self, id: &str) -> bool {
        self.providers.contains_key(id)
    }

    /// Whether provider `id` needs an OpenAI login (API key or ChatGPT).
    pub fn requires_openai_auth(&self, id: &str) -> bool {
        self.requires_openai_auth.contains(id)
    }

    /// The provider `id`, or why it cannot be used.
    pub fn get(&self, id: &str) -> Result<Arc<Provider>, String> {
        match self.providers.get(id) {
            Some(provider) => provider.clone(),
            None => Err(format!("unknown model provider: {id}")),
        }
    }
}

fn resolve(
    id: &str,
    settings: &ProviderConfig,
    config: &Config,
    auth: &AuthFile,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Provider, String> {
    let chatgpt = settings.requires_openai_auth && auth.auth_mode.as_deref() == Some("chatgpt");
    let mut headers: Vec<(String, String)> = settings
        .http_headers
        .iter()
        .map(|(name, value)| (name.clone(), value.clone()))
        .collect();
    if chatgpt {
        let tokens = auth.tokens.clone().unwrap_or_default();
        let token = tokens
            .access_token
            .ok_or("auth.json has no tokens.access_token")?;
        headers.push(("authorization".into(), format!("Bearer {token}")));
        if let Some(account) = tokens.account_id {
            headers.push(("chatgpt-account-id".into(), account));
        }
    } else if let Some(variable) = &settings.env_key {
        let key = env(variable)
            .filter(|k| !k.is_empty())
            .ok_or_else(|| format!("Missing environment variable: `{variable}`."))?;
        headers.push(("authorization".into(), format!("Bearer {key}")));
    } else if settings.requires_openai_auth {
        let key = env("OPENAI_API_KEY")
            .filter(|k| !k.is_empty())
            .or_else(|| auth.openai_api_key.clone())
            .ok_or("no OpenAI credentials: set OPENAI_API_KEY or log in (auth.json)")?;
        headers.push(("authorization".into(), format!("Bearer {key}")));
    }
    let base_url = match (&settings.base_url, id == OPENAI_PROVIDER, chatgpt) {
        (Some(url), _, _) => url.clone(),
        (None, true, true) => config
            .chatgpt_base_url
            .clone()
            .unwrap_or_else(|| CHATGPT_BASE_URL.to_owned()),
        (None, true, false) => OPENAI_BASE_URL.to_owned(),
        (None, false, _) => return Err(format!("model_providers.{id} has no base_url")),
    };
    let endpoint = Endpoint {
        base_url,
        headers,
        websocket: settings.supports_websockets,
        request_max_retries: settings.request_max_retries.unwrap_or(4),
        retry_base_delay: Duration::from_millis(200),
        max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        idle_timeout: Duration::from_millis(settings.stream_idle_timeout_ms.unwrap_or(300_000)),
    };
    Ok(Provider {
        upstream: Upstream::new(endpoint).map_err(|err| err.to_string())?,
        stream_max_retries: settings.stream_max_retries.unwrap_or(5),
        first_party: chatgpt,
    })
}
