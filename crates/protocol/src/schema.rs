//! The JSON Schema of every message tether speaks, generated from the wire types themselves so
//! it cannot drift from them.

use schemars::{JsonSchema, schema_for};
use serde_json::Value;

use crate::{ClientRequest, ErrorObject, RequestId};

pub(crate) fn of<T: JsonSchema>() -> Value {
    serde_json::to_value(schema_for!(T)).expect("schemas serialize")
}

/// The folder codex keeps a method's types in: `initialize` is the one v1 method.
pub(crate) fn version_dir(method: &str) -> &'static str {
    if method == "initialize" { "v1" } else { "v2" }
}

/// `(relative file name, schema)` for every message type, named like codex's generated files:
/// the request union, then each client request's params and response, each notification's
/// params, each server request's params and answer.
pub fn schemas() -> Vec<(String, Value)> {
    let mut schemas = vec![
        ("ClientRequest.json".to_owned(), of::<ClientRequest>()),
        ("RequestId.json".to_owned(), of::<RequestId>()),
        ("JSONRPCErrorError.json".to_owned(), of::<ErrorObject>()),
    ];
    schemas.extend(crate::requests::client_request_schemas());
    schemas.extend(crate::notifications::notification_schemas());
    schemas.extend(crate::client_asks::server_request_schemas());
    schemas
}
