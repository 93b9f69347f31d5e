use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use tether_device_key::{ProtectionPolicy, SignPayload};

use crate::{
    InitializeParams, ThreadGoalSetParams, ThreadIdParams, ThreadListParams,
    ThreadLoadedListParams, ThreadReadParams, ThreadResumeParams, ThreadRevertParams,
    ThreadStartParams, TurnInterruptParams, TurnStartParams,
};

/// Every request a client may send, tagged by method with its params.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
#[serde(tag = "method", content = "params")]
pub enum ClientRequest {
    /// Must come first on every connection.
    #[serde(rename = "initialize")]
    Initialize(InitializeParams),
    /// Start a thread.
    #[serde(rename = "thread/start")]
    ThreadStart(ThreadStartParams),
    /// Load (if needed) and subscribe to a thread.
    #[serde(rename = "thread/resume")]
    ThreadResume(ThreadResumeParams),
    /// Stop receiving a thread's events.
    #[serde(rename = "thread/unsubscribe")]
    ThreadUnsubscribe(ThreadIdParams),
    /// Read a thread without loading it.
    #[serde(rename = "thread/read")]
    ThreadRead(ThreadReadParams),
    /// List persisted threads.
    #[serde(rename = "thread/list")]
    ThreadList(ThreadListParams),
    /// List loaded thread ids.
    #[serde(rename = "thread/loaded/list")]
    ThreadLoadedList(ThreadLoadedListParams),
    /// Set or update the thread's goal.
    #[serde(rename = "thread/goal/set")]
    ThreadGoalSet(ThreadGoalSetParams),
    /// The thread's goal.
    #[serde(rename = "thread/goal/get")]
    ThreadGoalGet(ThreadIdParams),
    /// Remove the thread's goal.
    #[serde(rename = "thread/goal/clear")]
    ThreadGoalClear(ThreadIdParams),
    /// Cut the durable history before a turn.
    #[serde(rename = "thread/revert")]
    ThreadRevert(ThreadRevertParams),
    /// Summarize the history into a compacted item.
    #[serde(rename = "thread/compact/start")]
    ThreadCompactStart(ThreadIdParams),
    /// Start a turn (or steer the running one).
    #[serde(rename = "turn/start")]
    TurnStart(TurnStartParams),
    /// Stop the running turn.
    #[serde(rename = "turn/interrupt")]
    TurnInterrupt(TurnInterruptParams),
    /// tether's own introspection for the server's owner (`tether status`).
    #[serde(rename = "tether/status")]
    TetherStatus(serde_json::Map<String, Value>),
    /// Create a device key.
    #[serde(rename = "device/key/create")]
    DeviceKeyCreate(DeviceKeyCreateParams),
    /// A device key's public half.
    #[serde(rename = "device/key/public")]
    DeviceKeyPublic(DeviceKeyPublicParams),
    /// Sign a structured proof with a device key.
    #[serde(rename = "device/key/sign")]
    DeviceKeySign(DeviceKeySignParams),
}

impl ClientRequest {
    /// Decodes `method` and `params` (absent and `null` alike). The error is serde's wording,
    /// which the protocol's `Invalid request: …` messages carry verbatim.
    pub fn decode(method: &str, params: Option<Value>) -> Result<ClientRequest, String> {
        let mut object = Map::new();
        object.insert("method".into(), Value::String(method.to_owned()));
        if let Some(params) = params {
            object.insert("params".into(), params);
        }
        serde_json::from_value(Value::Object(object)).map_err(|err| err.to_string())
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
        match self {
            ClientRequest::Initialize(_) => "initialize",
            ClientRequest::ThreadStart(_) => "thread/start",
            ClientRequest::ThreadResume(_) => "thread/resume",
            ClientRequest::ThreadUnsubscribe(_) => "thread/unsubscribe",
            ClientRequest::ThreadRead(_) => "thread/read",
            ClientRequest::ThreadList(_) => "thread/list",
            ClientRequest::ThreadLoadedList(_) => "thread/loaded/list",
            ClientRequest::ThreadGoalSet(_) => "thread/goal/set",
            ClientRequest::ThreadGoalGet(_) => "thread/goal/get",
            ClientRequest::ThreadGoalClear(_) => "thread/goal/clear",
            ClientRequest::ThreadRevert(_) => "thread/revert",
            ClientRequest::ThreadCompactStart(_) => "thread/compact/start",
            ClientRequest::TurnStart(_) => "turn/start",
            ClientRequest::TurnInterrupt(_) => "turn/interrupt",
            ClientRequest::TetherStatus(_) => "tether/status",
            ClientRequest::DeviceKeyCreate(_) => "device/key/create",
            ClientRequest::DeviceKeyPublic(_) => "device/key/public",
            ClientRequest::DeviceKeySign(_) => "device/key/sign",
        }
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
            "unknown variant `bogus/method`, expected one of `initialize`, `thread/start`, `thread/resume`, `thread/unsubscribe`, `thread/read`, `thread/list`, `thread/loaded/list`, `thread/goal/set`, `thread/goal/get`, `thread/goal/clear`, `thread/revert`, `thread/compact/start`, `turn/start`, `turn/interrupt`, `tether/status`, `device/key/create`, `device/key/public`, `device/key/sign`"
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
