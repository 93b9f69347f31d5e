//! `tether status`: what the server is doing, for its owner. The server answers `tether/status`
//! on stdio and on the unix control socket; the CLI side connects to that socket.

use std::path::Path;
use std::sync::Arc;

use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

use crate::Server;

/// The `tether/status` result.
pub async fn snapshot(server: &Arc<Server>) -> Value {
    let device_keys = match server.device_keys.usable_class().await {
        Ok(class) => json!({"available": true, "protectionClass": class, "error": null}),
        Err(error) => {
            json!({"available": false, "protectionClass": null, "error": error.to_string()})
        }
    };
    json!({
        "version": env!("CARGO_PKG_VERSION"),
        "uptimeSeconds": server.started.elapsed().as_secs(),
        "connections": server.registry.snapshot(),
        "threads": server.threads.snapshot(),
        "pendingServerRequests": server.requests.pending(),
        "deviceKeys": device_keys,
    })
}

/// Why `tether status` could not get an answer.
#[derive(Debug, thiserror::Error)]
#[error("cannot get the status from {socket}: {reason}")]
pub struct StatusError {
    socket: String,
    reason: String,
}

/// Asks the server listening on the unix socket `socket` for its status.
pub async fn query(socket: &Path) -> Result<Value, StatusError> {
    let fail = |reason: String| StatusError {
        socket: socket.display().to_string(),
        reason,
    };
    let stream = tokio::net::UnixStream::connect(socket)
        .await
        .map_err(|err| fail(err.to_string()))?;
    let (mut ws, _) = tokio_tungstenite::client_async("ws://localhost/", stream)
        .await
        .map_err(|err| fail(err.to_string()))?;
    let requests = [
        json!({"id": 0, "method": "initialize", "params": {"clientInfo": {"name": "tether-status", "version": env!("CARGO_PKG_VERSION")}}}),
        json!({"id": 1, "method": "tether/status", "params": {}}),
    ];
    for request in requests {
        ws.send(Message::Text(request.to_string().into()))
            .await
            .map_err(|err| fail(err.to_string()))?;
    }
    while let Some(message) = ws.next().await {
        let Ok(Message::Text(text)) = message else {
            continue;
        };
        let Ok(message) = serde_json::from_str::<Value>(&text) else {
            continue;
        };
        if message["id"] == 1 {
            let _ = ws.close(None).await;
            return match message.get("result") {
                Some(result) => Ok(result.clone()),
                None => Err(fail(
                    message["error"]["message"]
                        .as_str()
                        .unwrap_or("error")
                        .to_owned(),
                )),
            };
        }
    }
    Err(fail("the server closed the connection".into()))
}

/// The status for people.
pub fn render(status: &Value) -> String {
    let mut out = format!(
        "tether {} up {}s, {} pending server request(s)\n",
        status["version"].as_str().unwrap_or("?"),
        status["uptimeSeconds"],
        status["pendingServerRequests"],
    );
    let keys = &status["deviceKeys"];
    match keys["protectionClass"].as_str() {
        Some(class) => out.push_str(&format!("device keys: {class}\n")),
        None => out.push_str(&format!(
            "device keys: unavailable ({})\n",
            keys["error"].as_str().unwrap_or("")
        )),
    }
    let connections = status["connections"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    out.push_str(&format!("connections ({}):\n", connections.len()));
    for c in &connections {
        let mut capabilities = Vec::new();
        if c["experimentalApi"] == true {
            capabilities.push("experimentalApi");
        }
        if c["requestAttestation"] == true {
            capabilities.push("requestAttestation");
        }
        out.push_str(&format!(
            "  #{} {} {} [{}]\n",
            c["id"],
            c["transport"].as_str().unwrap_or("?"),
            c["client"].as_str().unwrap_or("(not initialized)"),
            capabilities.join(", ")
        ));
    }
    let threads = status["threads"].as_array().cloned().unwrap_or_default();
    out.push_str(&format!("loaded threads ({}):\n", threads.len()));
    for t in &threads {
        out.push_str(&format!(
            "  {} {} {} subscriber(s)\n",
            t["id"].as_str().unwrap_or("?"),
            t["status"]["type"].as_str().unwrap_or("?"),
            t["subscribers"]
        ));
    }
    out
}
