//! Every answer of the startup methods (accounts, models, config, skills, features, …) built
//! from real files, checked against codex 0.169's JSON Schema of that answer; and the params the
//! real TUI sends decode.

use std::path::{Path, PathBuf};

use serde::Serialize;
use serde_json::{Value, json};
use tether_protocol::{
    AccountRateLimitsUpdatedNotification, AccountUpdatedNotification, AuthMode,
    ConfigBatchWriteParams, ConfigEdit, ConfigReadParams, ConfigValueWriteParams,
    ConfigWarningNotification, ExperimentalFeatureListParams, HooksListParams, LoginAccountParams,
    MergeStrategy, ModelListParams, PlanType, SkillsListParams, TextPosition, TextRange,
    WarningNotification,
};
use tether_server::{
    ConfigLayers, ConfigOverrides, ModelCatalog, RateLimitStore, SkillHomes,
    bedrock_gov_cloud_check, collaboration_modes, experimental_features, hooks, installed_plugins,
    list_skills, login, logout, parse_rate_limit_headers, read_account, read_requirements,
};
use tether_testkit::Schemas;

fn schema(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testkit/fixtures/codex-0.169/v2")
        .join(format!("{name}.json"))
}

/// Panics unless `value` serializes to an instance of the named v2 schema.
fn check(name: &str, value: &impl Serialize) -> Value {
    let instance = serde_json::to_value(value).unwrap();
    Schemas::check_file(&schema(name), &instance);
    instance
}

fn jwt(claims: Value) -> String {
    use base64::Engine as _;
    let encode = |v: Value| base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(v.to_string());
    format!("{}.{}.sig", encode(json!({"alg": "none"})), encode(claims))
}

#[test]
fn account_answers_match_the_schema() {
    let home = tempfile::tempdir().unwrap();
    let auth = home.path().join("auth.json");
    let none = check(
        "GetAccountResponse",
        &read_account(&auth, None, true).unwrap(),
    );
    assert_eq!(none["account"], Value::Null);

    let login_response = login(
        &auth,
        &LoginAccountParams::ApiKey {
            api_key: "sk-test".into(),
        },
    )
    .unwrap();
    check("LoginAccountResponse", &login_response);
    let api = check(
        "GetAccountResponse",
        &read_account(&auth, None, true).unwrap(),
    );
    assert_eq!(api["account"], json!({"type": "apiKey"}));

    std::fs::write(
        &auth,
        json!({"auth_mode": "chatgpt", "tokens": {"id_token": jwt(json!({
            "email": "dev@example.com",
            "https://api.openai.com/auth": {"chatgpt_plan_type": "team", "chatgpt_user_id": "u-1"}
        }))}})
        .to_string(),
    )
    .unwrap();
    let chatgpt = check(
        "GetAccountResponse",
        &read_account(&auth, None, true).unwrap(),
    );
    assert_eq!(
        chatgpt["account"],
        json!({"type": "chatgpt", "email": "dev@example.com", "planType": "team"})
    );
    assert_eq!(chatgpt["userId"], "u-1");

    check("LogoutAccountResponse", &logout(&auth).unwrap());
    check(
        "BedrockCheckGovCloudRequirementsResponse",
        &bedrock_gov_cloud_check(),
    );
    check(
        "AccountUpdatedNotification",
        &AccountUpdatedNotification {
            auth_mode: Some(AuthMode::Chatgpt),
            plan_type: Some(PlanType::Plus),
        },
    );
    check(
        "AccountUpdatedNotification",
        &AccountUpdatedNotification {
            auth_mode: None,
            plan_type: None,
        },
    );
}

#[test]
fn rate_limit_answers_match_the_schema() {
    let store = RateLimitStore::default();
    check("GetAccountRateLimitsResponse", &store.read());
    let mut headers = http::HeaderMap::new();
    for (name, value) in [
        ("x-codex-primary-used-percent", "12.5"),
        ("x-codex-primary-window-minutes", "300"),
        ("x-codex-primary-reset-at", "1796223646"),
        ("x-codex-secondary-used-percent", "40"),
        ("x-codex-credits-has-credits", "false"),
        ("x-codex-credits-unlimited", "false"),
    ] {
        headers.insert(name, value.parse().unwrap());
    }
    let snapshots = parse_rate_limit_headers(&headers);
    store.record(&snapshots);
    let read = check("GetAccountRateLimitsResponse", &store.read());
    assert_eq!(read["rateLimits"]["primary"]["usedPercent"], 13);
    let notification = check(
        "AccountRateLimitsUpdatedNotification",
        &AccountRateLimitsUpdatedNotification {
            rate_limits: snapshots[0].clone(),
        },
    );
    assert_eq!(notification["rateLimits"]["limitId"], "codex");
}

#[test]
fn model_and_mode_answers_match_the_schema() {
    let catalog = ModelCatalog::bundled();
    let params: ModelListParams = serde_json::from_value(
        json!({"modelProvider": null, "cursor": null, "limit": null, "includeHidden": true}),
    )
    .unwrap();
    let list = check(
        "ModelListResponse",
        &catalog.list(&params, None, Some("mock-model")).unwrap(),
    );
    assert_eq!(list["data"].as_array().unwrap().len(), 13);
    check("CollaborationModeListResponse", &collaboration_modes());
    let mut cursor = None;
    let mut pages = 0;
    loop {
        let page = experimental_features(
            &ExperimentalFeatureListParams {
                cursor,
                limit: Some(100),
                thread_id: None,
            },
            None,
        )
        .unwrap();
        check("ExperimentalFeatureListResponse", &page);
        pages += 1;
        match page.next_cursor {
            Some(next) => cursor = Some(next),
            None => break,
        }
    }
    assert_eq!(pages, 3);
}

#[test]
fn config_answers_match_the_schema() {
    let home = tempfile::tempdir().unwrap();
    let file = home.path().join("config.toml");
    std::fs::write(
        &file,
        "model = \"mock-model\"\nmodel_provider = \"mock\"\napproval_policy = \"never\"\nsandbox_mode = \"read-only\"\n\
         [model_providers.mock]\nbase_url = \"http://127.0.0.1:9/v1\"\nrequires_openai_auth = true\n[analytics]\nenabled = false\n",
    )
    .unwrap();
    let layers = ConfigLayers::new(
        file.clone(),
        &ConfigOverrides::parse(&["model_reasoning_effort=high"])
            .unwrap()
            .dotted(),
    );
    let read = check(
        "ConfigReadResponse",
        &layers
            .read(
                &ConfigReadParams {
                    include_layers: true,
                    cwd: Some(".".into()),
                },
                "gpt-6.1-sol",
                "openai",
            )
            .unwrap(),
    );
    assert_eq!(read["config"]["model"], "mock-model");
    assert_eq!(read["layers"].as_array().unwrap().len(), 2);

    let version = read["layers"][1]["version"].as_str().unwrap().to_owned();
    check(
        "ConfigWriteResponse",
        &layers
            .write_value(&ConfigValueWriteParams {
                key_path: "model".into(),
                value: json!("gpt-6.1-sol"),
                merge_strategy: MergeStrategy::Replace,
                file_path: None,
                expected_version: Some(version),
            })
            .unwrap(),
    );
    let overridden = check(
        "ConfigWriteResponse",
        &layers
            .batch_write(&ConfigBatchWriteParams {
                edits: vec![ConfigEdit {
                    key_path: "model_reasoning_effort".into(),
                    value: json!("low"),
                    merge_strategy: MergeStrategy::Upsert,
                }],
                file_path: Some(file.display().to_string()),
                expected_version: None,
                reload_user_config: true,
            })
            .unwrap(),
    );
    assert_eq!(overridden["status"], "okOverridden");

    check(
        "ConfigRequirementsReadResponse",
        &read_requirements(&home.path().join("requirements.toml")).unwrap(),
    );
    check(
        "ConfigWarningNotification",
        &ConfigWarningNotification {
            summary: "Unknown setting foo".into(),
            details: None,
            path: Some(file.display().to_string()),
            range: Some(TextRange {
                start: TextPosition { line: 1, column: 1 },
                end: TextPosition { line: 1, column: 4 },
            }),
        },
    );
    check(
        "WarningNotification",
        &WarningNotification {
            thread_id: Some("01a23745-80d7-7650-9b05-0acf61b5f3ec".into()),
            message: "Model metadata for `mock-model` not found.".into(),
        },
    );
}

#[test]
fn workspace_answers_match_the_schema() {
    let tmp = tempfile::tempdir().unwrap();
    let work = tmp.path().join("work");
    let codex_home = tmp.path().join("home");
    for (dir, text) in [
        (
            "skills/notes",
            "---\nname: notes\ndescription: Keep notes\n---\n",
        ),
        ("skills/broken", "no front matter"),
    ] {
        std::fs::create_dir_all(codex_home.join(dir)).unwrap();
        std::fs::write(codex_home.join(dir).join("SKILL.md"), text).unwrap();
    }
    std::fs::create_dir_all(&work).unwrap();
    let homes = SkillHomes {
        codex_home,
        user_home: None,
        admin_dir: tmp.path().join("admin"),
    };
    let params = SkillsListParams {
        cwds: vec![work.display().to_string()],
        force_reload: true,
    };
    let skills = check("SkillsListResponse", &list_skills(&params, &homes, &work));
    assert_eq!(skills["data"][0]["skills"][0]["name"], "notes");
    assert_eq!(skills["data"][0]["errors"].as_array().unwrap().len(), 1);
    let params = HooksListParams {
        cwds: vec![work.display().to_string()],
        thread_id: None,
    };
    check("HooksListResponse", &hooks(&params, &work));
    check("PluginInstalledResponse", &installed_plugins());
}

/// One recorded exchange of the real TUI with the real codex 0.169 server.
fn recorded(method: &str) -> (Value, Value) {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../testkit/fixtures/tui-codex-0.169/client_methods.json");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let all: Value = serde_json::from_str(&text).unwrap();
    let entry = &all[method];
    assert!(entry.is_object(), "no recording of {method}");
    (entry["params"].clone(), entry["result"].clone())
}

/// Decodes the recorded params as `P`, and the recorded result (or notification params) as `R`,
/// which must serialize back to an instance of codex's schema `schema_name`.
fn replay<P: serde::de::DeserializeOwned, R: serde::de::DeserializeOwned + Serialize>(
    method: &str,
    schema_name: &str,
) -> R {
    let (params, result) = recorded(method);
    let notification = result.is_null();
    if !notification && !params.is_null() {
        serde_json::from_value::<P>(params.clone())
            .unwrap_or_else(|e| panic!("{method} params {params}: {e}"));
    }
    let answer = if notification { params } else { result };
    let decoded: R =
        serde_json::from_value(answer.clone()).unwrap_or_else(|e| panic!("{method} answer: {e}"));
    check(schema_name, &decoded);
    decoded
}

/// What the real TUI sends decodes, and what the real server answers is what these types model.
#[test]
fn the_recorded_exchanges_decode() {
    use tether_protocol::*;
    let account: GetAccountResponse =
        replay::<GetAccountParams, _>("account/read", "GetAccountResponse");
    assert_eq!(account.account, Some(Account::ApiKey));
    let models: ModelListResponse = replay::<ModelListParams, _>("model/list", "ModelListResponse");
    assert_eq!(models.data.len(), 12);
    replay::<HooksListParams, HooksListResponse>("hooks/list", "HooksListResponse");
    replay::<BedrockCheckGovCloudRequirementsParams, BedrockCheckGovCloudRequirementsResponse>(
        "account/bedrock/checkGovCloudRequirements",
        "BedrockCheckGovCloudRequirementsResponse",
    );
    let config: ConfigReadResponse =
        replay::<ConfigReadParams, _>("config/read", "ConfigReadResponse");
    assert_eq!(config.config["model"], "mock-model");
    assert_eq!(config.layers.unwrap().len(), 2);
    replay::<Value, ConfigRequirementsReadResponse>(
        "configRequirements/read",
        "ConfigRequirementsReadResponse",
    );
    let modes: CollaborationModeListResponse = replay::<CollaborationModeListParams, _>(
        "collaborationMode/list",
        "CollaborationModeListResponse",
    );
    assert_eq!(modes, collaboration_modes());
    let skills: SkillsListResponse =
        replay::<SkillsListParams, _>("skills/list", "SkillsListResponse");
    assert_eq!(skills.data[0].skills.len(), 5);
    replay::<PluginInstalledParams, PluginInstalledResponse>(
        "plugin/installed",
        "PluginInstalledResponse",
    );
    let features: ExperimentalFeatureListResponse = replay::<ExperimentalFeatureListParams, _>(
        "experimentalFeature/list",
        "ExperimentalFeatureListResponse",
    );
    let ours = experimental_features(
        &ExperimentalFeatureListParams {
            cursor: None,
            limit: Some(100),
            thread_id: None,
        },
        None,
    )
    .unwrap();
    assert_eq!(features, ours);
    replay::<Value, ConfigWarningNotification>("configWarning", "ConfigWarningNotification");
    replay::<Value, WarningNotification>("warning", "WarningNotification");
    replay::<Value, AccountRateLimitsUpdatedNotification>(
        "account/rateLimits/updated",
        "AccountRateLimitsUpdatedNotification",
    );
}

/// The check above rejects what codex's schema rejects.
#[test]
#[should_panic(expected = "schema violation")]
fn the_schema_check_rejects_a_wrong_answer() {
    check(
        "GetAccountResponse",
        &json!({"account": {"type": "password"}, "requiresOpenaiAuth": true}),
    );
}
