use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Settings from `config.toml` (Codex's keys, so an existing Codex home works), with environment
/// overrides applied.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct Config {
    /// The `[device_keys]` table.
    #[serde(default)]
    pub device_keys: DeviceKeysConfig,
    /// Default model of new threads.
    pub model: Option<String>,
    /// Id of the default provider (a key of `model_providers`, or the built-in `openai`).
    pub model_provider: Option<String>,
    /// `[model_providers.<id>]`.
    #[serde(default)]
    pub model_providers: BTreeMap<String, ProviderConfig>,
    /// Base URL for ChatGPT-authenticated requests to the built-in `openai` provider.
    pub chatgpt_base_url: Option<String>,
    /// Seconds a thread with no subscribers and no activity stays loaded (default 60).
    pub thread_unload_delay_secs: Option<u64>,
    /// `[otel]`: span export.
    #[serde(default)]
    pub otel: OtelConfig,
    /// When new threads' commands ask first, unless the client says (default on-request).
    pub approval_policy: Option<tether_protocol::AskForApproval>,
    /// The sandbox of new threads' commands, unless the client says (default read-only).
    pub sandbox_mode: Option<tether_protocol::SandboxMode>,
    /// `[features]`: switches of codex features tether implements.
    #[serde(default)]
    pub features: FeaturesConfig,
    /// `[tools]`: optional built-in tools.
    #[serde(default)]
    pub tools: ToolsConfig,
}

/// `[features]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct FeaturesConfig {
    /// `shell_tool = false` takes `exec_command` and `write_stdin` away from the model.
    pub shell_tool: Option<bool>,
}

/// `[tools]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ToolsConfig {
    /// `[tools.update_plan]`.
    #[serde(default)]
    pub update_plan: ToolSwitch,
}

/// A table with an `enabled` switch.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ToolSwitch {
    /// Off unless set.
    #[serde(default)]
    pub enabled: bool,
}

/// `[otel]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct OtelConfig {
    /// OTLP/HTTP collector base URL (spans go to `{endpoint}/v1/traces`); off when unset.
    /// `OTEL_EXPORTER_OTLP_ENDPOINT` overrides it.
    pub endpoint: Option<String>,
}

/// `[model_providers.<id>]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct ProviderConfig {
    /// Display name.
    pub name: Option<String>,
    /// Requests go to `{base_url}/responses`.
    pub base_url: Option<String>,
    /// Only `responses` is supported.
    pub wire_api: Option<String>,
    /// Environment variable holding the API key.
    pub env_key: Option<String>,
    /// Authenticate with the user's OpenAI login (`auth.json`).
    #[serde(default)]
    pub requires_openai_auth: bool,
    /// Use the Responses WebSocket transport.
    #[serde(default)]
    pub supports_websockets: bool,
    /// Retries of a request that failed before streaming (default 4).
    pub request_max_retries: Option<u32>,
    /// Retries of a stream that broke off (default 5).
    pub stream_max_retries: Option<u32>,
    /// How long a stream may be silent before it counts as broken (default 300000).
    pub stream_idle_timeout_ms: Option<u64>,
    /// Headers added to every request.
    #[serde(default)]
    pub http_headers: BTreeMap<String, String>,
}

/// `[device_keys]`.
#[derive(Clone, Debug, Default, Deserialize)]
pub struct DeviceKeysConfig {
    /// libtss2 TCTI of the TPM; `TETHER_TPM_TCTI` overrides it. Default `device:/dev/tpmrm0`.
    pub tpm_tcti: Option<String>,
    /// Accept a software TPM as `hardware_tpm` (tests and simulators only);
    /// `TETHER_ALLOW_SOFTWARE_TPM=1` turns it on.
    #[serde(default)]
    pub allow_software_tpm: bool,
    /// PKCS#11 module of the `os_protected_nonextractable` token (`p11-kit-client.so`, with
    /// `P11_KIT_SERVER_ADDRESS` in the environment). Unset: no such class.
    pub pkcs11_module: Option<PathBuf>,
    /// Label of that token (default `tether`).
    pub pkcs11_token_label: Option<String>,
    /// File holding the token's user PIN; default: the systemd credential `tether-pkcs11-pin`.
    pub pkcs11_pin_file: Option<PathBuf>,
    /// Accept a token inside tether's process or user (tests only).
    #[serde(default)]
    pub allow_in_process_token: bool,
}

const KNOWN_SETTINGS: &[&str] = &[
    "device_keys",
    "model",
    "model_provider",
    "model_providers",
    "chatgpt_base_url",
    "thread_unload_delay_secs",
    "otel",
];
const KNOWN_DEVICE_KEY_SETTINGS: &[&str] = &[
    "tpm_tcti",
    "allow_software_tpm",
    "pkcs11_module",
    "pkcs11_token_label",
    "pkcs11_pin_file",
    "allow_in_process_token",
];
const KNOWN_PROVIDER_SETTINGS: &[&str] = &[
    "name",
    "base_url",
    "wire_api",
    "env_key",
    "requires_openai_auth",
    "supports_websockets",
    "request_max_retries",
    "stream_max_retries",
    "stream_idle_timeout_ms",
    "http_headers",
];

/// A configuration file that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file exists but cannot be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not valid TOML, or a known key has a value of the wrong kind.
    #[error("invalid configuration in {path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The parser's message, which names the key.
        message: String,
    },
    /// A `-c key=value` override cannot be parsed.
    #[error("{0}")]
    Override(String),
    /// An environment override has a value that is not allowed.
    #[error("invalid value {value:?} for {variable}: expected 1, true, 0 or false")]
    Environment {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
}

/// `-c key=value` overrides, as codex parses them: split at the first `=`, both halves trimmed,
/// the key a dotted path into the table, the value TOML (`42`, `true`, `"x"`, `[1, 2]`,
/// `{ a = 1 }`) or, when it does not parse as TOML, the text itself as a string (`-c model=gpt-5`).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ConfigOverrides(Vec<(Vec<String>, toml::Value)>);

impl ConfigOverrides {
    /// Parses each `key=value` of `raw`, in order (a later one wins).
    pub fn parse<S: AsRef<str>>(raw: &[S]) -> Result<ConfigOverrides, ConfigError> {
        raw.iter()
            .map(|raw| parse_override(raw.as_ref()))
            .collect::<Result<_, _>>()
            .map(ConfigOverrides)
    }

    /// Each override as a dotted key and its value.
    pub fn dotted(&self) -> Vec<(String, toml::Value)> {
        self.0
            .iter()
            .map(|(path, value)| (path.join("."), value.clone()))
            .collect()
    }

    /// Sets every override in `table`, creating the tables on its path; a value that is in the
    /// way of the path is replaced by a table.
    fn apply(&self, table: &mut toml::Table) {
        for (path, value) in &self.0 {
            let (last, parents) = path.split_last().expect("parse refuses empty keys");
            let mut current = &mut *table;
            for part in parents {
                let slot = current
                    .entry(part.clone())
                    .or_insert_with(|| toml::Value::Table(toml::Table::new()));
                if !slot.is_table() {
                    *slot = toml::Value::Table(toml::Table::new());
                }
                current = slot.as_table_mut().expect("made a table above");
            }
            current.insert(last.clone(), value.clone());
        }
    }
}

fn parse_override(raw: &str) -> Result<(Vec<String>, toml::Value), ConfigError> {
    let (key, value) = raw
        .split_once('=')
        .ok_or_else(|| ConfigError::Override(format!("Invalid override (missing '='): {raw}")))?;
    let key = key.trim();
    if key.is_empty() {
        return Err(ConfigError::Override(format!(
            "Empty key in override: {raw}"
        )));
    }
    let path: Vec<String> = key.split('.').map(str::to_owned).collect();
    if path.iter().any(String::is_empty) {
        return Err(ConfigError::Override(format!(
            "Empty part in the key of override: {raw}"
        )));
    }
    let value = value.trim();
    let value = format!("value = {value}")
        .parse::<toml::Table>()
        .ok()
        .and_then(|mut table| table.remove("value"))
        .unwrap_or_else(|| toml::Value::String(value.to_owned()));
    Ok((path, value))
}

impl Config {
    /// Reads `path` (a missing file means defaults), then applies environment overrides read
    /// through `env`. Unknown keys are ignored with a warning.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
        Config::load_with_overrides(path, &ConfigOverrides::default(), env)
    }

    /// [`Config::load`], with `overrides` (from `-c key=value`) set on top of the file before it
    /// is read into settings.
    pub fn load_with_overrides(
        path: &Path,
        overrides: &ConfigOverrides,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Config, ConfigError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ConfigError::Read {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        let invalid = |message: String| ConfigError::Invalid {
            path: path.to_owned(),
            message,
        };
        let mut table: toml::Table = text
            .parse()
            .map_err(|err: toml::de::Error| invalid(err.to_string()))?;
        let text = if overrides.0.is_empty() {
            text
        } else {
            overrides.apply(&mut table);
            // Written out again so that an error in an overridden value names its key and line.
            toml::to_string(&table).map_err(|err| invalid(err.to_string()))?
        };
        warn_unknown(path, "", &table, KNOWN_SETTINGS);
        if let Some(toml::Value::Table(section)) = table.get("device_keys") {
            warn_unknown(path, "device_keys.", section, KNOWN_DEVICE_KEY_SETTINGS);
        }
        if let Some(toml::Value::Table(providers)) = table.get("model_providers") {
            for (id, provider) in providers {
                if let toml::Value::Table(provider) = provider {
                    warn_unknown(
                        path,
                        &format!("model_providers.{id}."),
                        provider,
                        KNOWN_PROVIDER_SETTINGS,
                    );
                }
            }
        }
        // Parsed from the text, not the table, so an error shows the offending line and key.
        let mut config: Config = toml::from_str(&text).map_err(|err| invalid(err.to_string()))?;
        for (id, provider) in &config.model_providers {
            if let Some(wire_api) = provider.wire_api.as_deref().filter(|w| *w != "responses") {
                return Err(invalid(format!(
                    "model_providers.{id}.wire_api = {wire_api:?}: only \"responses\" is supported"
                )));
            }
        }
        if let Some(endpoint) = env("OTEL_EXPORTER_OTLP_ENDPOINT").filter(|v| !v.is_empty()) {
            config.otel.endpoint = Some(endpoint);
        }
        if let Some(tcti) = env("TETHER_TPM_TCTI").filter(|v| !v.is_empty()) {
            config.device_keys.tpm_tcti = Some(tcti);
        }
        if let Some(value) = env("TETHER_ALLOW_SOFTWARE_TPM").filter(|v| !v.is_empty()) {
            config.device_keys.allow_software_tpm = match value.to_ascii_lowercase().as_str() {
                "1" | "true" => true,
                "0" | "false" => false,
                _ => {
                    return Err(ConfigError::Environment {
                        variable: "TETHER_ALLOW_SOFTWARE_TPM",
                        value,
                    });
                }
            };
        }
        Ok(config)
    }
}

fn warn_unknown(path: &Path, prefix: &str, table: &toml::Table, known: &[&str]) {
    for key in table.keys().filter(|key| !known.contains(&key.as_str())) {
        tracing::warn!(path = %path.display(), "ignoring unknown setting {prefix}{key}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::load(&path, |name| {
            env.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.to_string())
        })
    }

    #[test]
    fn missing_file_means_defaults() {
        let config = Config::load(Path::new("/nonexistent/tether/config.toml"), |_| None).unwrap();
        assert_eq!(config.device_keys.tpm_tcti, None);
        assert!(!config.device_keys.allow_software_tpm);
    }

    #[test]
    fn reads_the_table_and_ignores_unknown_keys() {
        let config = load(
            "model = \"x\"\n[device_keys]\ntpm_tcti = \"swtpm:port=1\"\nallow_software_tpm = true\nfuture = 1\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.device_keys.tpm_tcti.as_deref(), Some("swtpm:port=1"));
        assert!(config.device_keys.allow_software_tpm);
    }

    #[test]
    fn reads_codex_provider_settings() {
        let config = load(
            "model = \"gpt-test\"\nmodel_provider = \"mock\"\nthread_unload_delay_secs = 3\napproval_policy = \"never\"\n\
             [model_providers.mock]\nname = \"Mock\"\nbase_url = \"http://127.0.0.1:9/v1\"\nwire_api = \"responses\"\n\
             env_key = \"MOCK_KEY\"\nsupports_websockets = true\nrequest_max_retries = 0\nhttp_headers = { \"x-a\" = \"b\" }\n",
            &[],
        )
        .unwrap();
        assert_eq!(config.model.as_deref(), Some("gpt-test"));
        assert_eq!(config.thread_unload_delay_secs, Some(3));
        let mock = &config.model_providers["mock"];
        assert_eq!(mock.base_url.as_deref(), Some("http://127.0.0.1:9/v1"));
        assert!(mock.supports_websockets && !mock.requires_openai_auth);
        assert_eq!(mock.request_max_retries, Some(0));
        assert_eq!(mock.http_headers["x-a"], "b");
    }

    #[test]
    fn environment_overrides_the_file() {
        let config = load(
            "[device_keys]\ntpm_tcti = \"device:/dev/tpm0\"\n",
            &[
                ("TETHER_TPM_TCTI", "swtpm:host=127.0.0.1,port=5"),
                ("TETHER_ALLOW_SOFTWARE_TPM", "1"),
            ],
        )
        .unwrap();
        assert_eq!(
            config.device_keys.tpm_tcti.as_deref(),
            Some("swtpm:host=127.0.0.1,port=5")
        );
        assert!(config.device_keys.allow_software_tpm);
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = load("[device_keys]\nallow_software_tpm = \"yes\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("allow_software_tpm"), "{err}");
        let err = load("device_keys = 3\n", &[]).unwrap_err().to_string();
        assert!(err.contains("device_keys"), "{err}");
        let err = load("[model_providers.x]\nwire_api = \"chat\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("model_providers.x.wire_api"), "{err}");
        let err = load("thread_unload_delay_secs = \"soon\"\n", &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("thread_unload_delay_secs"), "{err}");
        let err = load("[device_keys\n", &[]).unwrap_err().to_string();
        assert!(err.starts_with("invalid configuration in "), "{err}");
        let err = load("", &[("TETHER_ALLOW_SOFTWARE_TPM", "maybe")])
            .unwrap_err()
            .to_string();
        assert_eq!(
            err,
            "invalid value \"maybe\" for TETHER_ALLOW_SOFTWARE_TPM: expected 1, true, 0 or false"
        );
    }

    fn load_overridden(text: &str, overrides: &[&str]) -> Result<Config, ConfigError> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Config::load_with_overrides(&path, &ConfigOverrides::parse(overrides)?, |_| None)
    }

    #[test]
    fn overrides_set_dotted_keys_on_top_of_the_file() {
        let config = load_overridden(
            "model = \"file\"\nthread_unload_delay_secs = 9\n[model_providers.mock]\nbase_url = \"http://a\"\n",
            &[
                "model=gpt-plain",
                " thread_unload_delay_secs = 3 ",
                "model_providers.mock.base_url=\"http://b/v1\"",
                "model_providers.mock.http_headers={ x-a = \"1\" }",
                "model_providers.new.request_max_retries=0",
                "device_keys.allow_software_tpm=true",
            ],
        )
        .unwrap();
        assert_eq!(config.model.as_deref(), Some("gpt-plain"));
        assert_eq!(config.thread_unload_delay_secs, Some(3));
        let mock = &config.model_providers["mock"];
        assert_eq!(mock.base_url.as_deref(), Some("http://b/v1"));
        assert_eq!(mock.http_headers["x-a"], "1");
        assert_eq!(config.model_providers["new"].request_max_retries, Some(0));
        assert!(config.device_keys.allow_software_tpm);
    }

    #[test]
    fn an_override_value_is_toml_else_the_text() {
        let parsed =
            ConfigOverrides::parse(&["a=1", "b=[1, 2]", "c=x=y", "d=\"q\"", "e="]).unwrap();
        let values: Vec<_> = parsed.0.iter().map(|(_, v)| v.clone()).collect();
        assert_eq!(
            values,
            [
                toml::Value::Integer(1),
                toml::Value::Array(vec![1.into(), 2.into()]),
                toml::Value::String("x=y".into()),
                toml::Value::String("q".into()),
                toml::Value::String(String::new()),
            ]
        );
    }

    #[test]
    fn malformed_overrides_are_refused_with_the_override_named() {
        let message = |raw: &str| ConfigOverrides::parse(&[raw]).unwrap_err().to_string();
        assert_eq!(message("model"), "Invalid override (missing '='): model");
        assert_eq!(message(" =1"), "Empty key in override:  =1");
        assert_eq!(
            message("a..b=1"),
            "Empty part in the key of override: a..b=1"
        );
        let err = load_overridden("", &["thread_unload_delay_secs=soon"])
            .unwrap_err()
            .to_string();
        assert!(err.contains("thread_unload_delay_secs"), "{err}");
    }
}
