use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Settings from `config.toml`, with environment overrides applied.
#[derive(Clone, Debug, Default)]
pub struct Config {
    /// The `[device_keys]` table.
    pub device_keys: DeviceKeysConfig,
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
}

/// The parts of `config.toml` this build reads; other tables belong to other components.
#[derive(Deserialize)]
struct ConfigFile {
    #[serde(default)]
    device_keys: DeviceKeysConfig,
}

const KNOWN_DEVICE_KEY_SETTINGS: &[&str] = &["tpm_tcti", "allow_software_tpm"];

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
    /// An environment override has a value that is not allowed.
    #[error("invalid value {value:?} for {variable}: expected 1, true, 0 or false")]
    Environment {
        /// The variable.
        variable: &'static str,
        /// Its value.
        value: String,
    },
}

impl Config {
    /// Reads `path` (a missing file means defaults), then applies environment overrides read
    /// through `env`. Unknown keys are ignored with a warning.
    pub fn load(path: &Path, env: impl Fn(&str) -> Option<String>) -> Result<Config, ConfigError> {
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
        let table: toml::Table = text
            .parse()
            .map_err(|err: toml::de::Error| invalid(err.to_string()))?;
        let mut config = Config::default();
        if let Some(section) = table.get("device_keys") {
            let toml::Value::Table(section) = section else {
                return Err(invalid("`device_keys` must be a table".into()));
            };
            for key in section.keys() {
                if !KNOWN_DEVICE_KEY_SETTINGS.contains(&key.as_str()) {
                    tracing::warn!(path = %path.display(), "ignoring unknown setting device_keys.{key}");
                }
            }
            // Parsed from the text, not the table, so the error shows the offending line.
            let typed: ConfigFile =
                toml::from_str(&text).map_err(|err| invalid(err.to_string()))?;
            config.device_keys = typed.device_keys;
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
        assert!(err.contains("`device_keys` must be a table"), "{err}");
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
}
