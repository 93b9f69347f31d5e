//! Device-key sign payloads for tests, with expiries relative to the real clock.

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::{Value, json};

/// Seconds since the Unix epoch, as payload expiries count them.
pub fn unix_now() -> i64 {
    let elapsed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970");
    elapsed.as_secs() as i64
}

/// A valid `remoteControlClientConnection` payload (wire JSON) for the pair, expiring in five
/// minutes.
pub fn connection_payload(account_user_id: &str, client_id: &str) -> Value {
    json!({
        "type": "remoteControlClientConnection",
        "nonce": "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "audience": "remote_control_client_websocket",
        "sessionId": "wssess_test",
        "targetOrigin": "https://chatgpt.com",
        "targetPath": "/api/codex/remote/control/client",
        "accountUserId": account_user_id,
        "clientId": client_id,
        "tokenExpiresAt": unix_now() + 300,
        "tokenSha256Base64url": "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU",
        "scopes": ["remote_control_controller_websocket"],
    })
}
