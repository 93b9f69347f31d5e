//! Configuration as clients read and edit it: `config/read` (the effective settings, each layer,
//! and which layer set each key), `configRequirements/read`, and `config/value/write` /
//! `config/batchWrite`, which edit the user's config.toml in place, keeping its comments and
//! layout, and replace it atomically.

use std::path::{Path, PathBuf};

use serde_json::{Map, Value};
use sha2::{Digest as _, Sha256};
use tether_protocol::{
    ConfigBatchWriteParams, ConfigEdit, ConfigLayer, ConfigLayerMetadata, ConfigLayerSource,
    ConfigReadParams, ConfigReadResponse, ConfigRequirementsReadResponse, ConfigValueWriteParams,
    ConfigWriteErrorCode, ConfigWriteResponse, MergeStrategy, OverriddenMetadata, WriteStatus,
};
use toml_edit::{DocumentMut, Item, TableLike};

/// Why `config/read` failed.
#[derive(Debug, thiserror::Error)]
pub enum ConfigReadError {
    /// config.toml cannot be read or parsed.
    #[error("{path}: {message}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Why.
        message: String,
    },
}

/// Why a config write failed. Sent as `-32600` with `data` = [`ConfigWriteError::data`].
#[derive(Debug, thiserror::Error)]
#[error("{message}")]
pub struct ConfigWriteError {
    /// Codex's error code.
    pub code: ConfigWriteErrorCode,
    /// For the user.
    pub message: String,
}

impl ConfigWriteError {
    fn new(code: ConfigWriteErrorCode, message: impl Into<String>) -> ConfigWriteError {
        ConfigWriteError {
            code,
            message: message.into(),
        }
    }

    fn invalid(message: impl Into<String>) -> ConfigWriteError {
        ConfigWriteError::new(ConfigWriteErrorCode::ConfigValidationError, message)
    }

    /// The JSON-RPC error's `data`: `{"config_write_error_code": …}`.
    pub fn data(&self) -> Value {
        #[derive(serde::Serialize)]
        struct Data {
            config_write_error_code: ConfigWriteErrorCode,
        }
        let data = Data {
            config_write_error_code: self.code,
        };
        serde_json::to_value(data).unwrap_or(Value::Null)
    }
}

/// The configuration layers: the user's config.toml and the command line's `-c` overrides.
#[derive(Clone, Debug)]
pub struct ConfigLayers {
    user_file: PathBuf,
    session_flags: toml::Table,
}

impl ConfigLayers {
    /// `user_file` is `<home>/config.toml` (need not exist); `cli_overrides` come from
    /// [`crate::ConfigOverrides::dotted`], later ones winning.
    pub fn new(user_file: PathBuf, cli_overrides: &[(String, toml::Value)]) -> ConfigLayers {
        let mut session_flags = toml::Table::new();
        for (key, value) in cli_overrides {
            let segments: Vec<&str> = key.split('.').map(str::trim).collect();
            insert_path(&mut session_flags, &segments, value.clone());
        }
        ConfigLayers {
            user_file: absolute(&user_file),
            session_flags,
        }
    }

    /// The user's config.toml.
    pub fn user_file(&self) -> &Path {
        &self.user_file
    }

    /// The effective settings: the user file with the overrides on top.
    pub fn effective(&self) -> Result<toml::Table, ConfigReadError> {
        let mut table = self.read_user_table()?;
        merge_tables(&mut table, &self.session_flags);
        Ok(table)
    }

    /// `config/read`. `default_model` and `default_provider` fill `model` and `model_provider`
    /// when no layer sets them. Project layers are not supported: `cwd` changes nothing.
    pub fn read(
        &self,
        params: &ConfigReadParams,
        default_model: &str,
        default_provider: &str,
    ) -> Result<ConfigReadResponse, ConfigReadError> {
        let user = toml_to_json_table(&self.read_user_table()?);
        let session = toml_to_json_table(&self.session_flags);
        let user_meta = self.user_metadata(&user);
        let session_meta = session_metadata(&session);

        let mut origins = std::collections::BTreeMap::new();
        collect_origins(&user, "", &user_meta, &mut origins);
        collect_origins(&session, "", &session_meta, &mut origins);

        let mut config = user.clone();
        merge_json(&mut config, &session);
        config
            .entry("model")
            .or_insert_with(|| Value::String(default_model.to_owned()));
        config
            .entry("model_provider")
            .or_insert_with(|| Value::String(default_provider.to_owned()));

        let layers = params.include_layers.then(|| {
            let mut layers = Vec::new();
            if !session.is_empty() {
                layers.push(ConfigLayer {
                    name: session_meta.name.clone(),
                    version: session_meta.version.clone(),
                    config: Value::Object(session.clone()),
                    disabled_reason: None,
                });
            }
            layers.push(ConfigLayer {
                name: user_meta.name.clone(),
                version: user_meta.version.clone(),
                config: Value::Object(user.clone()),
                disabled_reason: None,
            });
            layers
        });
        Ok(ConfigReadResponse {
            config,
            origins,
            layers,
        })
    }

    /// `config/value/write`.
    pub fn write_value(
        &self,
        params: &ConfigValueWriteParams,
    ) -> Result<ConfigWriteResponse, ConfigWriteError> {
        self.write(
            params.file_path.as_deref(),
            params.expected_version.as_deref(),
            &[ConfigEdit {
                key_path: params.key_path.clone(),
                value: params.value.clone(),
                merge_strategy: params.merge_strategy,
            }],
        )
    }

    /// `config/batchWrite`: every edit, or none.
    pub fn batch_write(
        &self,
        params: &ConfigBatchWriteParams,
    ) -> Result<ConfigWriteResponse, ConfigWriteError> {
        self.write(
            params.file_path.as_deref(),
            params.expected_version.as_deref(),
            &params.edits,
        )
    }

    fn write(
        &self,
        file_path: Option<&str>,
        expected_version: Option<&str>,
        edits: &[ConfigEdit],
    ) -> Result<ConfigWriteResponse, ConfigWriteError> {
        if let Some(path) = file_path
            && absolute(Path::new(path)) != self.user_file
        {
            return Err(ConfigWriteError::new(
                ConfigWriteErrorCode::ConfigLayerReadonly,
                "Only writes to the user config are allowed",
            ));
        }
        let text = match std::fs::read_to_string(&self.user_file) {
            Ok(text) => text,
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => String::new(),
            Err(err) => {
                return Err(ConfigWriteError::new(
                    ConfigWriteErrorCode::UserLayerNotFound,
                    format!("cannot read {}: {err}", self.user_file.display()),
                ));
            }
        };
        let current: toml::Table = text.parse().map_err(|err: toml::de::Error| {
            ConfigWriteError::invalid(format!(
                "{} is not valid TOML: {}",
                self.user_file.display(),
                err.message()
            ))
        })?;
        let current_version = version_of(&toml_to_json_table(&current));
        if let Some(expected) = expected_version
            && expected != current_version
        {
            return Err(ConfigWriteError::new(
                ConfigWriteErrorCode::ConfigVersionConflict,
                "Configuration was modified since last read. Fetch latest version and retry.",
            ));
        }
        let mut document: DocumentMut = text
            .parse()
            .map_err(|err| ConfigWriteError::invalid(format!("config.toml: {err}")))?;
        let mut written_paths = Vec::new();
        for edit in edits {
            let segments = parse_key_path(&edit.key_path)?;
            apply_edit(
                document.as_table_mut(),
                false,
                &segments,
                &edit.value,
                edit.merge_strategy,
            )?;
            written_paths.push(segments);
        }
        let new_text = document.to_string();
        let new_table: toml::Table = new_text
            .parse()
            .map_err(|err: toml::de::Error| ConfigWriteError::invalid(err.message().to_owned()))?;
        toml::from_str::<crate::Config>(&new_text)
            .map_err(|err| ConfigWriteError::invalid(err.message().to_owned()))?;
        let mode = std::fs::metadata(&self.user_file)
            .map(|m| std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o7777)
            .unwrap_or(0o600);
        crate::account::write_atomically(&self.user_file, new_text.as_bytes(), mode).map_err(
            |err| {
                ConfigWriteError::new(
                    ConfigWriteErrorCode::UserLayerNotFound,
                    format!("cannot write {}: {err}", self.user_file.display()),
                )
            },
        )?;

        let session = toml_to_json_table(&self.session_flags);
        let overridden = written_paths.iter().find_map(|segments| {
            let effective = lookup(&session, segments)?;
            Some(OverriddenMetadata {
                message: format!(
                    "{} is overridden by a -c command-line setting",
                    segments.join(".")
                ),
                overriding_layer: session_metadata(&session),
                effective_value: effective.clone(),
            })
        });
        Ok(ConfigWriteResponse {
            status: if overridden.is_some() {
                WriteStatus::OkOverridden
            } else {
                WriteStatus::Ok
            },
            version: version_of(&toml_to_json_table(&new_table)),
            file_path: self.user_file.display().to_string(),
            overridden_metadata: overridden,
        })
    }

    fn read_user_table(&self) -> Result<toml::Table, ConfigReadError> {
        let invalid = |message: String| ConfigReadError::Invalid {
            path: self.user_file.clone(),
            message,
        };
        match std::fs::read_to_string(&self.user_file) {
            Ok(text) => text
                .parse()
                .map_err(|err: toml::de::Error| invalid(err.to_string())),
            Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(toml::Table::new()),
            Err(err) => Err(invalid(err.to_string())),
        }
    }

    fn user_metadata(&self, user: &Map<String, Value>) -> ConfigLayerMetadata {
        ConfigLayerMetadata {
            name: ConfigLayerSource::User {
                file: self.user_file.display().to_string(),
                profile: None,
            },
            version: version_of(user),
        }
    }
}

/// `configRequirements/read`: `requirements` from `requirements_file` (codex's
/// `/etc/codex/requirements.toml`) when it exists, else `null`. Its top-level keys are sent in
/// the wire's camelCase.
pub fn read_requirements(
    requirements_file: &Path,
) -> Result<ConfigRequirementsReadResponse, ConfigReadError> {
    let requirements = match std::fs::read_to_string(requirements_file) {
        Ok(text) => {
            let table: toml::Table =
                text.parse()
                    .map_err(|err: toml::de::Error| ConfigReadError::Invalid {
                        path: requirements_file.to_owned(),
                        message: err.to_string(),
                    })?;
            Some(
                toml_to_json_table(&table)
                    .into_iter()
                    .map(|(key, value)| (camel_case(&key), value))
                    .collect(),
            )
        }
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => None,
        Err(err) => {
            return Err(ConfigReadError::Invalid {
                path: requirements_file.to_owned(),
                message: err.to_string(),
            });
        }
    };
    Ok(ConfigRequirementsReadResponse {
        requirements,
        supports_independent_speed_modes: Some(true),
    })
}

fn camel_case(snake: &str) -> String {
    let mut out = String::with_capacity(snake.len());
    let mut upper = false;
    for c in snake.chars() {
        if c == '_' {
            upper = true;
        } else if upper {
            out.extend(c.to_uppercase());
            upper = false;
        } else {
            out.push(c);
        }
    }
    out
}

fn session_metadata(session: &Map<String, Value>) -> ConfigLayerMetadata {
    ConfigLayerMetadata {
        name: ConfigLayerSource::SessionFlags,
        version: version_of(session),
    }
}

fn absolute(path: &Path) -> PathBuf {
    let joined = if path.is_absolute() {
        path.to_owned()
    } else {
        std::env::current_dir()
            .unwrap_or_else(|_| PathBuf::from("/"))
            .join(path)
    };
    // Lexical normalization: the file need not exist yet.
    let mut out = PathBuf::new();
    for part in joined.components() {
        match part {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// `sha256:<hex>` of the layer's settings as JSON (keys sorted): the same settings give the same
/// version however the file is formatted.
fn version_of(settings: &Map<String, Value>) -> String {
    let digest = Sha256::digest(Value::Object(settings.clone()).to_string().as_bytes());
    let hex: String = digest.iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256:{hex}")
}

fn toml_to_json(value: &toml::Value) -> Value {
    match value {
        toml::Value::String(s) => Value::String(s.clone()),
        toml::Value::Integer(i) => Value::from(*i),
        toml::Value::Float(f) => Value::from(*f),
        toml::Value::Boolean(b) => Value::Bool(*b),
        toml::Value::Datetime(d) => Value::String(d.to_string()),
        toml::Value::Array(items) => Value::Array(items.iter().map(toml_to_json).collect()),
        toml::Value::Table(table) => Value::Object(toml_to_json_table(table)),
    }
}

fn toml_to_json_table(table: &toml::Table) -> Map<String, Value> {
    table
        .iter()
        .map(|(k, v)| (k.clone(), toml_to_json(v)))
        .collect()
}

fn insert_path(table: &mut toml::Table, segments: &[&str], value: toml::Value) {
    let (last, parents) = segments.split_last().expect("non-empty key");
    let mut current = table;
    for segment in parents {
        let entry = current
            .entry(segment.to_string())
            .or_insert_with(|| toml::Value::Table(toml::Table::new()));
        if !entry.is_table() {
            *entry = toml::Value::Table(toml::Table::new());
        }
        current = entry.as_table_mut().expect("just made a table");
    }
    current.insert(last.to_string(), value);
}

fn merge_tables(base: &mut toml::Table, over: &toml::Table) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(toml::Value::Table(existing)), toml::Value::Table(incoming)) => {
                merge_tables(existing, incoming);
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn merge_json(base: &mut Map<String, Value>, over: &Map<String, Value>) {
    for (key, value) in over {
        match (base.get_mut(key), value) {
            (Some(Value::Object(existing)), Value::Object(incoming)) => {
                merge_json(existing, incoming)
            }
            _ => {
                base.insert(key.clone(), value.clone());
            }
        }
    }
}

fn collect_origins(
    table: &Map<String, Value>,
    prefix: &str,
    meta: &ConfigLayerMetadata,
    origins: &mut std::collections::BTreeMap<String, ConfigLayerMetadata>,
) {
    for (key, value) in table {
        let path = if prefix.is_empty() {
            key.clone()
        } else {
            format!("{prefix}.{key}")
        };
        match value {
            Value::Object(child) => collect_origins(child, &path, meta, origins),
            _ => {
                origins.insert(path, meta.clone());
            }
        }
    }
}

fn lookup<'a>(table: &'a Map<String, Value>, segments: &[String]) -> Option<&'a Value> {
    let (first, rest) = segments.split_first()?;
    let value = table.get(first)?;
    if rest.is_empty() {
        return Some(value);
    }
    lookup(value.as_object()?, rest)
}

/// Splits `a.b."c.d"` into `a`, `b`, `c.d`.
fn parse_key_path(key_path: &str) -> Result<Vec<String>, ConfigWriteError> {
    let mut segments = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in key_path.chars() {
        match c {
            '"' => quoted = !quoted,
            '.' if !quoted => segments.push(std::mem::take(&mut current)),
            _ => current.push(c),
        }
    }
    segments.push(current);
    if quoted {
        return Err(ConfigWriteError::invalid(format!(
            "invalid key path {key_path:?}: unterminated quote"
        )));
    }
    if segments.iter().any(|s| s.trim().is_empty()) {
        return Err(ConfigWriteError::invalid(format!(
            "invalid key path {key_path:?}: empty segment"
        )));
    }
    Ok(segments.into_iter().map(|s| s.trim().to_owned()).collect())
}

/// Applies one edit below `root`; `root_inline` says whether it is an inline table (whose members
/// must be values, not `[section]` tables).
fn apply_edit(
    root: &mut dyn TableLike,
    root_inline: bool,
    segments: &[String],
    value: &Value,
    strategy: MergeStrategy,
) -> Result<(), ConfigWriteError> {
    let (last, parents) = segments.split_last().expect("non-empty key path");
    let mut current: &mut dyn TableLike = root;
    let mut inline = root_inline;
    for (depth, segment) in parents.iter().enumerate() {
        if value.is_null() && current.get(segment).is_none() {
            return Ok(());
        }
        let entry = current.entry(segment).or_insert(if inline {
            Item::Value(toml_edit::Value::InlineTable(toml_edit::InlineTable::new()))
        } else {
            Item::Table(implicit_table())
        });
        inline = entry.is_inline_table();
        current = entry.as_table_like_mut().ok_or_else(|| {
            ConfigWriteError::invalid(format!(
                "cannot write {}: {} is not a table",
                segments.join("."),
                parents[..=depth].join(".")
            ))
        })?;
    }
    if value.is_null() {
        current.remove(last);
        return Ok(());
    }
    match (strategy, value, current.get_mut(last)) {
        (MergeStrategy::Upsert, Value::Object(incoming), Some(existing))
            if existing.is_table_like() =>
        {
            let existing_inline = existing.is_inline_table();
            let existing = existing.as_table_like_mut().expect("checked table-like");
            for (key, child) in incoming {
                apply_edit(
                    existing,
                    existing_inline,
                    std::slice::from_ref(key),
                    child,
                    strategy,
                )?;
            }
            Ok(())
        }
        _ => {
            let mut item = json_to_item(value, inline)?;
            match current.get_mut(last) {
                // In place, so the key's comments stay; a value keeps its trailing comment.
                Some(existing) => {
                    if let (Some(old), Some(new)) = (existing.as_value(), item.as_value_mut()) {
                        *new.decor_mut() = old.decor().clone();
                    }
                    *existing = item;
                }
                None => {
                    current.insert(last, item);
                }
            }
            Ok(())
        }
    }
}

fn implicit_table() -> toml_edit::Table {
    let mut table = toml_edit::Table::new();
    table.set_implicit(true);
    table
}

fn json_to_item(value: &Value, inline: bool) -> Result<Item, ConfigWriteError> {
    match value {
        Value::Object(map) if !inline => {
            let mut table = toml_edit::Table::new();
            for (key, child) in map {
                if !child.is_null() {
                    table.insert(key, json_to_item(child, false)?);
                }
            }
            Ok(Item::Table(table))
        }
        other => Ok(Item::Value(json_to_value(other)?)),
    }
}

fn json_to_value(value: &Value) -> Result<toml_edit::Value, ConfigWriteError> {
    Ok(match value {
        Value::Null => {
            return Err(ConfigWriteError::invalid(
                "null is only allowed as a whole value (it removes the key)",
            ));
        }
        Value::Bool(b) => (*b).into(),
        Value::Number(n) => match n.as_i64() {
            Some(i) => i.into(),
            None => n
                .as_f64()
                .ok_or_else(|| ConfigWriteError::invalid(format!("unsupported number {n}")))?
                .into(),
        },
        Value::String(s) => s.as_str().into(),
        Value::Array(items) => {
            let mut array = toml_edit::Array::new();
            for item in items {
                array.push(json_to_value(item)?);
            }
            toml_edit::Value::Array(array)
        }
        Value::Object(map) => {
            let mut table = toml_edit::InlineTable::new();
            for (key, child) in map {
                if !child.is_null() {
                    table.insert(key, json_to_value(child)?);
                }
            }
            toml_edit::Value::InlineTable(table)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    struct Fixture {
        _dir: tempfile::TempDir,
        path: PathBuf,
    }

    fn fixture(text: &str) -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, text).unwrap();
        Fixture { _dir: dir, path }
    }

    fn read_params() -> ConfigReadParams {
        ConfigReadParams {
            include_layers: true,
            cwd: Some(".".into()),
        }
    }

    fn edit(key_path: &str, value: Value, merge_strategy: MergeStrategy) -> ConfigEdit {
        ConfigEdit {
            key_path: key_path.into(),
            value,
            merge_strategy,
        }
    }

    fn batch(edits: Vec<ConfigEdit>, expected_version: Option<String>) -> ConfigBatchWriteParams {
        ConfigBatchWriteParams {
            edits,
            file_path: None,
            expected_version,
            reload_user_config: false,
        }
    }

    /// One `-c` override, parsed as the command line parses it.
    fn override_of(argument: &str) -> (String, toml::Value) {
        crate::ConfigOverrides::parse(&[argument])
            .unwrap()
            .dotted()
            .remove(0)
    }

    const SAMPLE: &str = "# my settings\nmodel = \"mock-model\" # chosen\napproval_policy = \"never\"\n\n[model_providers.mock]\nname = \"Mock\" # keep\nbase_url = \"http://127.0.0.1:9/v1\"\n";

    #[test]
    fn read_reports_the_effective_config_layers_and_origins() {
        let f = fixture(SAMPLE);
        let layers =
            ConfigLayers::new(f.path.clone(), &[override_of("approval_policy=on-request")]);
        let response = layers
            .read(&read_params(), "default-model", "openai")
            .unwrap();
        assert_eq!(response.config["model"], "mock-model");
        assert_eq!(response.config["approval_policy"], "on-request");
        assert_eq!(response.config["model_provider"], "openai");
        assert_eq!(
            response.config["model_providers"]["mock"]["base_url"],
            "http://127.0.0.1:9/v1"
        );
        let layers_out = response.layers.unwrap();
        assert_eq!(layers_out.len(), 2);
        assert_eq!(layers_out[0].name, ConfigLayerSource::SessionFlags);
        assert_eq!(
            layers_out[1].name,
            ConfigLayerSource::User {
                file: f.path.display().to_string(),
                profile: None
            }
        );
        assert!(layers_out[1].version.starts_with("sha256:"));
        assert_eq!(
            response.origins["approval_policy"].name,
            ConfigLayerSource::SessionFlags
        );
        assert_eq!(
            response.origins["model_providers.mock.name"].version,
            layers_out[1].version
        );
        assert!(!response.origins.contains_key("model_provider"));

        let without = layers
            .read(&ConfigReadParams::default(), "d", "openai")
            .unwrap();
        assert!(without.layers.is_none());
    }

    #[test]
    fn a_missing_file_reads_as_empty_and_a_broken_one_is_an_error() {
        let dir = tempfile::tempdir().unwrap();
        let layers = ConfigLayers::new(dir.path().join("config.toml"), &[]);
        let response = layers.read(&read_params(), "gpt-x", "openai").unwrap();
        assert_eq!(response.config["model"], "gpt-x");
        assert_eq!(response.layers.unwrap().len(), 1);
        let f = fixture("model = ");
        let err = ConfigLayers::new(f.path.clone(), &[])
            .read(&read_params(), "m", "p")
            .unwrap_err()
            .to_string();
        assert!(err.starts_with(&f.path.display().to_string()), "{err}");
    }

    #[test]
    fn writes_keep_comments_and_layout_and_bump_the_version() {
        let f = fixture(SAMPLE);
        let layers = ConfigLayers::new(f.path.clone(), &[]);
        let before = layers
            .read(&read_params(), "m", "p")
            .unwrap()
            .layers
            .unwrap()[0]
            .version
            .clone();
        let response = layers
            .write_value(&ConfigValueWriteParams {
                key_path: "model".into(),
                value: json!("gpt-6.1-sol"),
                merge_strategy: MergeStrategy::Replace,
                file_path: Some(f.path.display().to_string()),
                expected_version: Some(before.clone()),
            })
            .unwrap();
        assert_eq!(response.status, WriteStatus::Ok);
        assert_ne!(response.version, before);
        assert_eq!(response.file_path, f.path.display().to_string());
        let text = std::fs::read_to_string(&f.path).unwrap();
        assert!(
            text.starts_with("# my settings\nmodel = \"gpt-6.1-sol\""),
            "{text}"
        );
        assert!(text.contains("name = \"Mock\" # keep"), "{text}");
        let after = layers.read(&read_params(), "m", "p").unwrap();
        assert_eq!(after.layers.unwrap()[0].version, response.version);
    }

    #[test]
    fn batch_edits_nested_paths_upsert_tables_and_remove_keys() {
        let f = fixture(SAMPLE);
        let layers = ConfigLayers::new(f.path.clone(), &[]);
        layers
            .batch_write(&batch(
                vec![
                    edit(
                        "model_providers.mock",
                        json!({"wire_api": "responses", "http_headers": {"x-a": "b"}}),
                        MergeStrategy::Upsert,
                    ),
                    edit("approval_policy", Value::Null, MergeStrategy::Replace),
                    edit(
                        "tui.notifications",
                        json!(["a", "b"]),
                        MergeStrategy::Replace,
                    ),
                    edit(
                        "profiles.\"my.profile\".model",
                        json!("m"),
                        MergeStrategy::Replace,
                    ),
                    edit("absent.key", Value::Null, MergeStrategy::Replace),
                ],
                None,
            ))
            .unwrap();
        let table: toml::Table = std::fs::read_to_string(&f.path).unwrap().parse().unwrap();
        let mock = table["model_providers"]["mock"].as_table().unwrap();
        assert_eq!(mock["name"].as_str(), Some("Mock"));
        assert_eq!(mock["wire_api"].as_str(), Some("responses"));
        assert_eq!(mock["http_headers"]["x-a"].as_str(), Some("b"));
        assert!(!table.contains_key("approval_policy"));
        assert!(!table.contains_key("absent"));
        assert_eq!(table["tui"]["notifications"].as_array().unwrap().len(), 2);
        assert_eq!(table["profiles"]["my.profile"]["model"].as_str(), Some("m"));

        // Replace swaps the whole table.
        layers
            .batch_write(&batch(
                vec![edit(
                    "model_providers.mock",
                    json!({"base_url": "http://x/v1"}),
                    MergeStrategy::Replace,
                )],
                None,
            ))
            .unwrap();
        let table: toml::Table = std::fs::read_to_string(&f.path).unwrap().parse().unwrap();
        let mock = table["model_providers"]["mock"].as_table().unwrap();
        assert_eq!(mock.len(), 1);
    }

    #[test]
    fn errors_carry_codex_codes_and_write_nothing() {
        let f = fixture(SAMPLE);
        let layers = ConfigLayers::new(f.path.clone(), &[]);
        let code = |result: Result<ConfigWriteResponse, ConfigWriteError>| result.unwrap_err().code;

        let err = layers
            .batch_write(&batch(
                vec![edit("model", json!("x"), MergeStrategy::Replace)],
                Some("sha256:stale".into()),
            ))
            .unwrap_err();
        assert_eq!(err.code, ConfigWriteErrorCode::ConfigVersionConflict);
        assert_eq!(
            err.data(),
            json!({"config_write_error_code": "configVersionConflict"})
        );
        assert_eq!(
            code(layers.write_value(&ConfigValueWriteParams {
                key_path: "model".into(),
                value: json!("x"),
                merge_strategy: MergeStrategy::Replace,
                file_path: Some("/etc/codex/config.toml".into()),
                expected_version: None,
            })),
            ConfigWriteErrorCode::ConfigLayerReadonly
        );
        // A known key with the wrong type, a path through a non-table, a bad key path; the
        // first edit of the batch is not written either.
        for edits in [
            vec![
                edit("model", json!("changed"), MergeStrategy::Replace),
                edit(
                    "thread_unload_delay_secs",
                    json!("soon"),
                    MergeStrategy::Replace,
                ),
            ],
            vec![edit("model.sub", json!(1), MergeStrategy::Replace)],
            vec![edit("a..b", json!(1), MergeStrategy::Replace)],
            vec![edit("list", json!([1, null]), MergeStrategy::Replace)],
        ] {
            assert_eq!(
                code(layers.batch_write(&batch(edits, None))),
                ConfigWriteErrorCode::ConfigValidationError
            );
        }
        assert_eq!(std::fs::read_to_string(&f.path).unwrap(), SAMPLE);
    }

    #[test]
    fn a_write_under_a_cli_override_reports_it() {
        let f = fixture(SAMPLE);
        let layers = ConfigLayers::new(f.path.clone(), &[override_of("model=\"cli\"")]);
        let response = layers
            .batch_write(&batch(
                vec![edit("model", json!("file"), MergeStrategy::Replace)],
                None,
            ))
            .unwrap();
        assert_eq!(response.status, WriteStatus::OkOverridden);
        let overridden = response.overridden_metadata.unwrap();
        assert_eq!(overridden.effective_value, json!("cli"));
        assert_eq!(
            overridden.overriding_layer.name,
            ConfigLayerSource::SessionFlags
        );
    }

    #[test]
    fn requirements_are_null_without_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("requirements.toml");
        assert_eq!(read_requirements(&path).unwrap().requirements, None);
        std::fs::write(&path, "allowed_sandbox_modes = [\"read-only\"]\n").unwrap();
        let requirements = read_requirements(&path).unwrap().requirements.unwrap();
        assert_eq!(requirements["allowedSandboxModes"], json!(["read-only"]));
    }
}
