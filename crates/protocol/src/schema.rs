//! The JSON Schema of every message tether speaks, generated from the wire types themselves so
//! it cannot drift from them.

use schemars::{JsonSchema, schema_for};
use serde_json::Value;
use tether_device_key::{DeviceKeyInfo, DeviceKeySignature};

use crate::{
    ClientRequest, DeviceKeyCreateParams, DeviceKeyPublicParams, DeviceKeySignParams, ErrorObject,
    InitializeParams, InitializeResponse, RequestId,
};

fn schema<T: JsonSchema>() -> Value {
    serde_json::to_value(schema_for!(T)).expect("schemas serialize")
}

/// `(relative file name, schema)` for every message type, named like codex's generated files.
pub fn schemas() -> Vec<(&'static str, Value)> {
    vec![
        ("ClientRequest.json", schema::<ClientRequest>()),
        ("RequestId.json", schema::<RequestId>()),
        ("JSONRPCErrorError.json", schema::<ErrorObject>()),
        ("v1/InitializeParams.json", schema::<InitializeParams>()),
        ("v1/InitializeResponse.json", schema::<InitializeResponse>()),
        (
            "v2/DeviceKeyCreateParams.json",
            schema::<DeviceKeyCreateParams>(),
        ),
        ("v2/DeviceKeyCreateResponse.json", schema::<DeviceKeyInfo>()),
        (
            "v2/DeviceKeyPublicParams.json",
            schema::<DeviceKeyPublicParams>(),
        ),
        ("v2/DeviceKeyPublicResponse.json", schema::<DeviceKeyInfo>()),
        (
            "v2/DeviceKeySignParams.json",
            schema::<DeviceKeySignParams>(),
        ),
        (
            "v2/DeviceKeySignResponse.json",
            schema::<DeviceKeySignature>(),
        ),
    ]
}
