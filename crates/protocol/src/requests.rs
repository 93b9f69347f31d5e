//! The client request table: every method a client may call, with its params and result types,
//! its route and its serialization.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_device_key::{DeviceKeyInfo, DeviceKeySignature, ProtectionPolicy, SignPayload};

use crate::table::{Route, Transports, client_requests};
// The table names types from every module of the crate.
use crate::*;

client_requests! {
    /// Must come first on every connection.
    Initialize => "initialize" (InitializeParams) -> InitializeResponse, Route::Global, InOrder;
    /// Start a thread.
    ThreadStart => "thread/start" (ThreadStartParams) -> ThreadSessionResponse, Route::Global, InOrder;
    /// Load (if needed) and subscribe to a thread.
    ThreadResume => "thread/resume" (ThreadResumeParams) -> ThreadSessionResponse, Route::Thread, InOrder;
    /// A new thread with another's history up to a turn.
    ThreadFork => "thread/fork" (ThreadForkParams) -> ThreadSessionResponse, Route::Thread, InOrder;
    /// Hide a thread from `thread/list`.
    ThreadArchive => "thread/archive" (ThreadIdParams) -> EmptyResponse, Route::Thread, InOrder;
    /// Remove a thread and its history.
    ThreadDelete => "thread/delete" (ThreadIdParams) -> EmptyResponse, Route::Thread, InOrder;
    /// Stop receiving a thread's events.
    ThreadUnsubscribe => "thread/unsubscribe" (ThreadIdParams) -> ThreadUnsubscribeResponse, Route::Thread, InOrder;
    /// Name a thread.
    ThreadNameSet => "thread/name/set" (ThreadSetNameParams) -> EmptyResponse, Route::Thread, InOrder;
    /// Set or update the thread's goal.
    ThreadGoalSet => "thread/goal/set" (ThreadGoalSetParams) -> ThreadGoalSetResponse, Route::Thread, InOrder;
    /// The thread's goal.
    ThreadGoalGet => "thread/goal/get" (ThreadIdParams) -> ThreadGoalGetResponse, Route::Thread, InOrder;
    /// Remove the thread's goal.
    ThreadGoalClear => "thread/goal/clear" (ThreadIdParams) -> ThreadGoalClearResponse, Route::Thread, InOrder;
    /// Update a thread's metadata.
    ThreadMetadataUpdate => "thread/metadata/update" (ThreadMetadataUpdateParams) -> ThreadResponse, Route::Thread, InOrder;
    /// Show an archived thread in `thread/list` again.
    ThreadUnarchive => "thread/unarchive" (ThreadIdParams) -> ThreadResponse, Route::Thread, InOrder;
    /// Summarize the history into a compacted item.
    ThreadCompactStart => "thread/compact/start" (ThreadIdParams) -> EmptyResponse, Route::Thread, InOrder;
    /// Run the user's `!command` unsandboxed, as an item of the thread.
    ThreadShellCommand => "thread/shellCommand" (ThreadShellCommandParams) -> EmptyResponse, Route::Thread, InOrder;
    /// Kill every command session of a thread.
    ThreadBackgroundTerminalsClean => "thread/backgroundTerminals/clean" (ThreadBackgroundTerminalsCleanParams) -> ThreadBackgroundTerminalsCleanResponse, Route::Thread, InOrder;
    /// A thread's running command sessions.
    ThreadBackgroundTerminalsList => "thread/backgroundTerminals/list" (ThreadBackgroundTerminalsListParams) -> ThreadBackgroundTerminalsListResponse, Route::Thread, InOrder;
    /// Kill one of a thread's command sessions.
    ThreadBackgroundTerminalsTerminate => "thread/backgroundTerminals/terminate" (ThreadBackgroundTerminalsTerminateParams) -> ThreadBackgroundTerminalsTerminateResponse, Route::Thread, InOrder;
    /// Cut the durable history before a turn.
    ThreadRevert => "thread/revert" (ThreadRevertParams) -> ThreadRevertResponse, Route::Thread, InOrder;
    /// List persisted threads.
    ThreadList => "thread/list" (ThreadListParams) -> ThreadListResponse, Route::Global, InOrder;
    /// List loaded thread ids.
    ThreadLoadedList => "thread/loaded/list" (ThreadLoadedListParams) -> ThreadLoadedListResponse, Route::Global, InOrder;
    /// Read a thread without loading it.
    ThreadRead => "thread/read" (ThreadReadParams) -> ThreadReadResponse, Route::Thread, InOrder;
    /// Mark a thread read or unread.
    ThreadReadStateUpdate => "thread/readState/update" (ThreadReadStateUpdateParams) -> ThreadReadStateUpdateResponse, Route::Thread, InOrder;
    /// A page of a thread's turns.
    ThreadTurnsList => "thread/turns/list" (ThreadTurnsListParams) -> ThreadTurnsListResponse, Route::Thread, InOrder;
    /// A page of a thread's items.
    ThreadItemsList => "thread/items/list" (ThreadItemsListParams) -> ThreadItemsListResponse, Route::Thread, InOrder;
    /// Skills for working directories.
    SkillsList => "skills/list" (SkillsListParams) -> SkillsListResponse, Route::Global, InOrder;
    /// Configured hooks.
    HooksList => "hooks/list" (HooksListParams) -> HooksListResponse, Route::Global, InOrder;
    /// Installed plugins.
    PluginInstalled => "plugin/installed" (PluginInstalledParams) -> PluginInstalledResponse, Route::Global, InOrder;
    /// Start a turn (or steer the running one).
    TurnStart => "turn/start" (TurnStartParams) -> TurnStartResponse, Route::Thread, InOrder;
    /// Add input to the running turn.
    TurnSteer => "turn/steer" (TurnSteerParams) -> TurnSteerResponse, Route::Thread, InOrder;
    /// Stop the running turn.
    TurnInterrupt => "turn/interrupt" (TurnInterruptParams) -> EmptyResponse, Route::Thread, InOrder;
    /// The model catalog.
    ModelList => "model/list" (ModelListParams) -> ModelListResponse, Route::Global, Concurrent;
    /// Feature flags.
    ExperimentalFeatureList => "experimentalFeature/list" (ExperimentalFeatureListParams) -> ExperimentalFeatureListResponse, Route::Global, InOrder;
    /// Collaboration modes.
    CollaborationModeList => "collaborationMode/list" (CollaborationModeListParams) -> CollaborationModeListResponse, Route::Global, InOrder;
    /// Log in (API key).
    AccountLoginStart => "account/login/start" (LoginAccountParams) -> LoginAccountResponse, Route::Global, InOrder;
    /// Whether Bedrock GovCloud needs a warning.
    AccountBedrockCheckGovCloudRequirements => "account/bedrock/checkGovCloudRequirements" (BedrockCheckGovCloudRequirementsParams) -> BedrockCheckGovCloudRequirementsResponse, Route::Global, InOrder;
    /// Log out.
    AccountLogout => "account/logout" (EmptyParams) -> LogoutAccountResponse, Route::Global, InOrder;
    /// The rate limits last reported by the upstream.
    AccountRateLimitsRead => "account/rateLimits/read" (Option<GetAccountRateLimitsParams>) -> GetAccountRateLimitsResponse, Route::Global, InOrder;
    /// Run a standalone command in the sandbox. Started in order with the connection's other
    /// requests (so the follow-ups that come after it find the process), answered when the
    /// process exits, on a task of its own: a long command holds up nothing behind it.
    CommandExec => "command/exec" (CommandExecParams) -> CommandExecResponse, Route::Global, InOrder;
    /// Write to (or close) a running command's stdin.
    CommandExecWrite => "command/exec/write" (CommandExecWriteParams) -> EmptyResponse, Route::Global, InOrder;
    /// Kill a running command.
    CommandExecTerminate => "command/exec/terminate" (CommandExecTerminateParams) -> EmptyResponse, Route::Global, InOrder;
    /// Resize a running command's pty.
    CommandExecResize => "command/exec/resize" (CommandExecResizeParams) -> EmptyResponse, Route::Global, InOrder;
    /// The effective configuration and its layers.
    ConfigRead => "config/read" (ConfigReadParams) -> ConfigReadResponse, Route::Global, InOrder;
    /// Write one config value.
    ConfigValueWrite => "config/value/write" (ConfigValueWriteParams) -> ConfigWriteResponse, Route::Global, InOrder;
    /// Write several config values.
    ConfigBatchWrite => "config/batchWrite" (ConfigBatchWriteParams) -> ConfigWriteResponse, Route::Global, InOrder;
    /// Managed requirements on the configuration.
    ConfigRequirementsRead => "configRequirements/read" (EmptyParams) -> ConfigRequirementsReadResponse, Route::Global, InOrder;
    /// The logged-in account.
    AccountRead => "account/read" (GetAccountParams) -> GetAccountResponse, Route::Global, InOrder;
    /// tether's own introspection for the server's owner (`tether status`).
    TetherStatus => "tether/status" (TetherStatusParams) -> TetherStatusResponse, Route::Local(Transports::Owner), InOrder;
    /// Create a device key.
    DeviceKeyCreate => "device/key/create" (DeviceKeyCreateParams) -> DeviceKeyInfo, Route::Local(Transports::Stdio), Concurrent;
    /// A device key's public half.
    DeviceKeyPublic => "device/key/public" (DeviceKeyPublicParams) -> DeviceKeyInfo, Route::Local(Transports::Stdio), Concurrent;
    /// Sign a structured proof with a device key.
    DeviceKeySign => "device/key/sign" (DeviceKeySignParams) -> DeviceKeySignature, Route::Local(Transports::Stdio), Concurrent;
}

impl ClientRequest {
    /// Decodes `method` and `params` (absent and `null` alike). The error is serde's wording,
    /// which the protocol's `Invalid request: …` messages carry verbatim.
    pub fn decode(method: &str, params: Option<Value>) -> Result<ClientRequest, String> {
        let absent = params.is_none();
        let request = |params: Option<Value>| {
            let mut object = Map::new();
            object.insert("method".into(), Value::String(method.to_owned()));
            if let Some(params) = params {
                object.insert("params".into(), params);
            }
            serde_json::from_value::<ClientRequest>(Value::Object(object))
        };
        match request(params) {
            // Methods whose params may be left out take absent params as `null`; for the
            // others the error stays serde's `missing field`.
            Err(err) if absent => request(Some(Value::Null)).map_err(|_| err.to_string()),
            decoded => decoded.map_err(|err| err.to_string()),
        }
    }

    /// The experimental member this request uses, as `<method>.<member>`, if any: such requests
    /// need the `experimentalApi` capability.
    pub fn experimental_use(&self) -> Option<&'static str> {
        match self {
            ClientRequest::ThreadStart(params) if params.dynamic_tools.is_some() => {
                Some("thread/start.dynamicTools")
            }
            _ => None,
        }
    }

    /// The wire method name.
    pub fn method(&self) -> &'static str {
        self.spec().name
    }

    /// The request as a client sends it, with id `id`.
    pub fn to_frame(&self, id: i64) -> String {
        let mut object = match serde_json::to_value(self) {
            Ok(Value::Object(object)) => object,
            _ => Map::new(),
        };
        object.insert("id".into(), Value::from(id));
        Value::Object(object).to_string()
    }
}

/// `device/key/create` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKeyCreateParams {
    /// The account the key belongs to.
    pub account_user_id: String,
    /// The client the key belongs to.
    pub client_id: String,
    /// Absent or `null`: `hardware_only`.
    #[serde(default)]
    pub protection_policy: Option<ProtectionPolicy>,
}

/// `device/key/public` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKeyPublicParams {
    /// The key.
    pub key_id: String,
}

/// `device/key/sign` params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct DeviceKeySignParams {
    /// The key.
    pub key_id: String,
    /// The proof to sign.
    pub payload: SignPayload,
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn error(method: &str, params: Option<Value>) -> String {
        ClientRequest::decode(method, params).unwrap_err()
    }

    #[test]
    fn decode_errors_use_serde_wording() {
        assert_eq!(
            error("bogus/method", None),
            format!(
                "unknown variant `bogus/method`, expected one of {}",
                CLIENT_METHODS
                    .iter()
                    .map(|spec| format!("`{}`", spec.name))
                    .collect::<Vec<_>>()
                    .join(", ")
            )
        );
        assert_eq!(error("initialize", None), "missing field `params`");
        assert_eq!(
            error("initialize", Some(json!({"clientInfo": {"name": "x"}}))),
            "missing field `version`"
        );
        assert_eq!(
            error("device/key/public", Some(json!({"keyId": 123}))),
            "invalid type: integer `123`, expected a string"
        );
        assert_eq!(
            error(
                "device/key/create",
                Some(json!({"accountUserId": "a", "clientId": "c", "protectionPolicy": "bogus"}))
            ),
            "unknown variant `bogus`, expected `hardware_only` or `allow_os_protected_nonextractable`"
        );
    }

    /// The methods codex also has come in codex's order, so the `unknown variant` list reads as
    /// codex's does; tether's own methods come last.
    #[test]
    fn the_table_follows_codex_order() {
        let path = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../testkit/fixtures/codex-0.169/ClientRequest.json"
        );
        let union: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        let codex: Vec<&str> = union["oneOf"]
            .as_array()
            .unwrap()
            .iter()
            .filter_map(|branch| branch["properties"]["method"]["enum"][0].as_str())
            .collect();
        let position = |name: &str| codex.iter().position(|m| *m == name);
        let ours: Vec<Option<usize>> = CLIENT_METHODS
            .iter()
            .map(|spec| position(spec.name))
            .collect();
        let shared: Vec<usize> = ours.iter().flatten().copied().collect();
        assert!(
            shared.is_sorted(),
            "{:?}",
            CLIENT_METHODS.iter().map(|s| s.name).collect::<Vec<_>>()
        );
        let first_own = ours.iter().position(Option::is_none).unwrap_or(ours.len());
        assert!(
            ours[first_own..].iter().all(Option::is_none),
            "tether's own methods come last"
        );
    }

    #[test]
    fn methods_without_params_accept_them_absent_null_or_empty() {
        for params in [None, Some(Value::Null), Some(json!({}))] {
            let request = ClientRequest::decode("configRequirements/read", params).unwrap();
            assert_eq!(request.method(), "configRequirements/read");
        }
        assert!(ClientRequest::decode("account/rateLimits/read", None).is_ok());
    }

    #[test]
    fn decodes_and_names_each_method() {
        let request = ClientRequest::decode(
            "initialize",
            Some(json!({"clientInfo": {"name": "n", "version": "1"}, "capabilities": null})),
        )
        .unwrap();
        assert_eq!(request.method(), "initialize");
        let request =
            ClientRequest::decode("device/key/public", Some(json!({"keyId": "k", "extra": 1})))
                .unwrap();
        assert_eq!(
            request,
            ClientRequest::DeviceKeyPublic(DeviceKeyPublicParams { key_id: "k".into() })
        );
        assert_eq!(request.method(), "device/key/public");
    }
}
