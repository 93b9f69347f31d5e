use std::fmt;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// JSON-RPC error codes tether uses.
pub mod error_codes {
    /// Almost every client mistake, including unknown methods.
    pub const INVALID_REQUEST: i64 = -32600;
    /// A known method on a path that is not supported.
    pub const METHOD_NOT_FOUND: i64 = -32601;
    /// Params that decode but do not fit together (some `command/exec` checks).
    pub const INVALID_PARAMS: i64 = -32602;
    /// The server failed.
    pub const INTERNAL_ERROR: i64 = -32603;
    /// The connection's inbound queue is full; retry with backoff.
    pub const OVERLOADED: i64 = -32001;
}

/// A request id: a string or a 64-bit integer, echoed back exactly.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(untagged)]
pub enum RequestId {
    /// An integer id.
    Integer(i64),
    /// A string id.
    String(String),
}

impl fmt::Display for RequestId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            RequestId::Integer(n) => write!(f, "{n}"),
            RequestId::String(s) => write!(f, "{s:?}"),
        }
    }
}

/// The JSON-RPC error object.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize, JsonSchema)]
pub struct ErrorObject {
    /// One of [`error_codes`].
    pub code: i64,
    /// Human-readable, and matched on by clients: the texts are part of the protocol.
    pub message: String,
    /// Optional details; omitted when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
}

impl ErrorObject {
    /// `-32600` with `message`.
    pub fn invalid_request(message: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code: error_codes::INVALID_REQUEST,
            message: message.into(),
            data: None,
        }
    }

    /// `-32603` with `message`.
    pub fn internal(message: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code: error_codes::INTERNAL_ERROR,
            message: message.into(),
            data: None,
        }
    }

    /// `-32602` with `message`.
    pub fn invalid_params(message: impl Into<String>) -> ErrorObject {
        ErrorObject {
            code: error_codes::INVALID_PARAMS,
            message: message.into(),
            data: None,
        }
    }

    /// `-32001`, the inbound queue is full.
    pub fn overloaded() -> ErrorObject {
        ErrorObject {
            code: error_codes::OVERLOADED,
            message: "Server overloaded; retry later.".into(),
            data: None,
        }
    }
}

/// One decoded message from a client.
#[derive(Clone, Debug, PartialEq)]
pub enum Incoming {
    /// Expects exactly one response.
    Request {
        /// Echoed in the response.
        id: RequestId,
        /// The method name.
        method: String,
        /// Absent and `null` are the same.
        params: Option<Value>,
        /// `trace.traceparent`, when the client sent one.
        traceparent: Option<String>,
    },
    /// Expects nothing back.
    Notification {
        /// The method name.
        method: String,
    },
    /// A client's answer to a server request.
    Response {
        /// The server request's id.
        id: RequestId,
        /// Its result.
        result: Value,
    },
    /// A client's error answer to a server request.
    Error {
        /// The server request's id.
        id: RequestId,
        /// What went wrong.
        error: ErrorObject,
    },
}

/// Why a frame is not a message. Such frames get no reply; the reason is only logged.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ParseError(pub String);

impl fmt::Display for ParseError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Decodes one frame, trying the shapes in the protocol's order: request, notification,
/// response, error. A `"jsonrpc"` member is ignored whatever its value. A message with a method
/// and an id that is neither a string nor a 64-bit integer is a notification.
pub fn parse_incoming(frame: &[u8]) -> Result<Incoming, ParseError> {
    let value: Value = serde_json::from_slice(frame)
        .map_err(|err| ParseError(format!("Failed to deserialize JSONRPCMessage: {err}")))?;
    let Value::Object(mut object) = value else {
        return Err(ParseError(
            "Failed to deserialize JSONRPCMessage: not an object".into(),
        ));
    };
    let id = object.get("id").and_then(request_id);
    if let Some(Value::String(method)) = object.remove("method") {
        return Ok(match id {
            Some(id) => Incoming::Request {
                id,
                method,
                params: object.remove("params").filter(|p| !p.is_null()),
                traceparent: object
                    .get("trace")
                    .and_then(|trace| trace.get("traceparent"))
                    .and_then(Value::as_str)
                    .map(str::to_owned),
            },
            None => Incoming::Notification { method },
        });
    }
    let Some(id) = id else {
        return Err(ParseError(
            "Failed to deserialize JSONRPCMessage: no method and no valid id".into(),
        ));
    };
    if let Some(result) = object.remove("result") {
        return Ok(Incoming::Response { id, result });
    }
    match object
        .remove("error")
        .map(serde_json::from_value::<ErrorObject>)
    {
        Some(Ok(error)) => Ok(Incoming::Error { id, error }),
        _ => Err(ParseError(
            "Failed to deserialize JSONRPCMessage: no result or error".into(),
        )),
    }
}

fn request_id(value: &Value) -> Option<RequestId> {
    match value {
        Value::String(s) => Some(RequestId::String(s.clone())),
        Value::Number(n) => n.as_i64().map(RequestId::Integer),
        _ => None,
    }
}

/// A message to a client. Serialized compactly with the member order the real server uses.
#[derive(Clone, Debug, PartialEq)]
pub enum Outgoing {
    /// `{"id":…,"result":…}`
    Response {
        /// The request's id.
        id: RequestId,
        /// The result.
        result: Value,
    },
    /// `{"error":{…},"id":…}`
    Error {
        /// The request's id.
        id: RequestId,
        /// What went wrong.
        error: ErrorObject,
    },
    /// `{"method":…,"id":…,"params":…}`: a request from the server.
    Request {
        /// The request's method.
        method: String,
        /// From the server's one process-wide counter.
        id: i64,
        /// Its params.
        params: Value,
    },
    /// `{"method":…,"params":…,"emittedAtMs":…}`
    Notification {
        /// The notification's method.
        method: String,
        /// Its params.
        params: Value,
        /// When the server emitted it, Unix milliseconds.
        emitted_at_ms: i64,
    },
}

impl Outgoing {
    /// A successful response carrying `result`.
    pub fn response(id: RequestId, result: &impl Serialize) -> Outgoing {
        match serde_json::to_value(result) {
            Ok(result) => Outgoing::Response { id, result },
            Err(err) => Outgoing::Error {
                id,
                error: ErrorObject::internal(format!("failed to serialize response: {err}")),
            },
        }
    }

    /// The notification whose params are `params`, stamped with the current time.
    pub fn notify<N: crate::Notification>(params: &N) -> Outgoing {
        Outgoing::notify_at(params, now_ms())
    }

    /// [`Outgoing::notify`] stamped with `emitted_at_ms`.
    pub fn notify_at<N: crate::Notification>(params: &N, emitted_at_ms: i64) -> Outgoing {
        Outgoing::Notification {
            method: N::METHOD.to_owned(),
            params: serde_json::to_value(params).unwrap_or(Value::Null),
            emitted_at_ms,
        }
    }

    /// The server request `R` with id `id`.
    pub fn server_request<R: crate::ServerRequest>(id: i64, params: &R::Params) -> Outgoing {
        Outgoing::Request {
            method: R::METHOD.to_owned(),
            id,
            params: serde_json::to_value(params).unwrap_or(Value::Null),
        }
    }

    /// The method of a notification, for per-connection opt-outs.
    pub fn notification_method(&self) -> Option<&str> {
        match self {
            Outgoing::Notification { method, .. } => Some(method),
            _ => None,
        }
    }

    /// Compact JSON, no trailing newline.
    pub fn to_json(&self) -> String {
        let members = match self {
            Outgoing::Response { id, result } => {
                vec![("id", id_value(id)), ("result", result.clone())]
            }
            Outgoing::Error { id, error } => vec![
                ("error", serde_json::to_value(error).unwrap_or(Value::Null)),
                ("id", id_value(id)),
            ],
            Outgoing::Request { method, id, params } => vec![
                ("method", Value::String(method.clone())),
                ("id", Value::from(*id)),
                ("params", params.clone()),
            ],
            Outgoing::Notification {
                method,
                params,
                emitted_at_ms,
            } => vec![
                ("method", Value::String(method.clone())),
                ("params", params.clone()),
                ("emittedAtMs", Value::from(*emitted_at_ms)),
            ],
        };
        serde_json::to_string(&Members(members)).unwrap_or_default()
    }
}

fn id_value(id: &RequestId) -> Value {
    match id {
        RequestId::Integer(n) => Value::from(*n),
        RequestId::String(s) => Value::String(s.clone()),
    }
}

/// An envelope written member by member, in the given order.
struct Members(Vec<(&'static str, Value)>);

impl Serialize for Members {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap as _;
        let mut map = serializer.serialize_map(Some(self.0.len()))?;
        for (key, value) in &self.0 {
            map.serialize_entry(key, value)?;
        }
        map.end()
    }
}

/// The current time in Unix milliseconds, for `emittedAtMs`.
pub fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|elapsed| elapsed.as_millis() as i64)
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn parse(text: &str) -> Result<Incoming, ParseError> {
        parse_incoming(text.as_bytes())
    }

    #[test]
    fn classifies_each_shape() {
        assert_eq!(
            parse(r#"{"jsonrpc":"1.0","id":7,"method":"initialize","params":{"a":1}}"#).unwrap(),
            Incoming::Request {
                id: RequestId::Integer(7),
                method: "initialize".into(),
                params: Some(json!({"a":1})),
                traceparent: None
            }
        );
        assert_eq!(
            parse(r#"{"id":"x","method":"m","params":null,"trace":{"traceparent":"00-ab-cd-01"}}"#)
                .unwrap(),
            Incoming::Request {
                id: RequestId::String("x".into()),
                method: "m".into(),
                params: None,
                traceparent: Some("00-ab-cd-01".into())
            }
        );
        assert_eq!(
            parse(r#"{"method":"initialized"}"#).unwrap(),
            Incoming::Notification {
                method: "initialized".into()
            }
        );
        for odd_id in ["8.5", "null", "{}", "[]", "true", "18446744073709551615"] {
            let text = format!(r#"{{"id":{odd_id},"method":"initialize"}}"#);
            assert_eq!(
                parse(&text).unwrap(),
                Incoming::Notification {
                    method: "initialize".into()
                },
                "{odd_id}"
            );
        }
        assert_eq!(
            parse(r#"{"id":0,"result":{"token":"t"}}"#).unwrap(),
            Incoming::Response {
                id: RequestId::Integer(0),
                result: json!({"token":"t"})
            }
        );
        assert_eq!(
            parse(r#"{"id":0,"error":{"code":-32000,"message":"nope"}}"#).unwrap(),
            Incoming::Error {
                id: RequestId::Integer(0),
                error: ErrorObject {
                    code: -32000,
                    message: "nope".into(),
                    data: None
                }
            }
        );
    }

    #[test]
    fn rejects_non_messages() {
        for text in [
            "",
            "not json",
            "[1,2]",
            "42",
            r#"{"id":1}"#,
            r#"{"result":1}"#,
            r#"{"id":1,"error":"x"}"#,
            "{\"a\":1}{\"b\":2}",
        ] {
            assert!(parse(text).is_err(), "{text}");
        }
    }

    #[test]
    fn writes_members_in_the_real_servers_order() {
        let response = Outgoing::response(RequestId::String("abc".into()), &json!({"z":1,"a":2}));
        assert_eq!(response.to_json(), r#"{"id":"abc","result":{"a":2,"z":1}}"#);
        let error = Outgoing::Error {
            id: RequestId::Integer(3),
            error: ErrorObject::overloaded(),
        };
        assert_eq!(
            error.to_json(),
            r#"{"error":{"code":-32001,"message":"Server overloaded; retry later."},"id":3}"#
        );
        let notification = Outgoing::Notification {
            method: "thread/closed".into(),
            params: json!({"threadId":"t"}),
            emitted_at_ms: 5,
        };
        assert_eq!(
            notification.to_json(),
            r#"{"method":"thread/closed","params":{"threadId":"t"},"emittedAtMs":5}"#
        );
        assert_eq!(notification.notification_method(), Some("thread/closed"));
        let request = Outgoing::Request {
            method: "item/tool/call".into(),
            id: 0,
            params: json!({"a": 1}),
        };
        assert_eq!(
            request.to_json(),
            r#"{"method":"item/tool/call","id":0,"params":{"a":1}}"#
        );
    }
}
