//! `tether status`: what the server is doing, for its owner. The server answers `tether/status`
//! on stdio and on the unix control socket; the CLI side connects to that socket.

use std::path::Path;

use futures_util::{SinkExt as _, StreamExt as _};
use tether_protocol::{
    ClientInfo, ClientRequest, DeviceKeyAvailability, Incoming, InitializeParams, RequestId,
    TetherStatusParams, TetherStatusResponse, parse_incoming,
};
use tokio_tungstenite::tungstenite::Message;

use crate::dispatch::Ctx;
use crate::error::ServerError;

/// `tether/status`: what the server is doing.
pub async fn handle(
    ctx: Ctx,
    _params: TetherStatusParams,
) -> Result<TetherStatusResponse, ServerError> {
    let server = &ctx.server;
    let device_keys = match server.device_keys.usable_class().await {
        Ok(class) => DeviceKeyAvailability {
            available: true,
            protection_class: Some(class),
            error: None,
        },
        Err(error) => DeviceKeyAvailability {
            available: false,
            protection_class: None,
            error: Some(error.to_string()),
        },
    };
    Ok(TetherStatusResponse {
        version: env!("CARGO_PKG_VERSION").to_owned(),
        uptime_seconds: server.started.elapsed().as_secs(),
        connections: server.registry.snapshot(),
        threads: server.threads.snapshot(),
        pending_server_requests: server.requests.pending(),
        device_keys,
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
pub async fn query(socket: &Path) -> Result<TetherStatusResponse, StatusError> {
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
    let initialize = ClientRequest::Initialize(InitializeParams {
        client_info: ClientInfo {
            name: "tether-status".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            title: None,
        },
        capabilities: None,
    });
    let status = ClientRequest::TetherStatus(TetherStatusParams {});
    for frame in [initialize.to_frame(0), status.to_frame(1)] {
        ws.send(Message::Text(frame.into()))
            .await
            .map_err(|err| fail(err.to_string()))?;
    }
    while let Some(message) = ws.next().await {
        let Ok(Message::Text(text)) = message else {
            continue;
        };
        match parse_incoming(text.as_bytes()) {
            Ok(Incoming::Response {
                id: RequestId::Integer(1),
                result,
            }) => {
                let _ = ws.close(None).await;
                return serde_json::from_value(result).map_err(|err| fail(err.to_string()));
            }
            Ok(Incoming::Error {
                id: RequestId::Integer(1),
                error,
            }) => {
                let _ = ws.close(None).await;
                return Err(fail(error.message));
            }
            _ => continue,
        }
    }
    Err(fail("the server closed the connection".into()))
}

/// The status for people.
pub fn render(status: &TetherStatusResponse) -> String {
    let mut out = format!(
        "tether {} up {}s, {} pending server request(s)\n",
        status.version, status.uptime_seconds, status.pending_server_requests,
    );
    let keys = &status.device_keys;
    match keys.protection_class {
        Some(class) => out.push_str(&format!("device keys: {}\n", class.as_str())),
        None => out.push_str(&format!(
            "device keys: unavailable ({})\n",
            keys.error.as_deref().unwrap_or("")
        )),
    }
    out.push_str(&format!("connections ({}):\n", status.connections.len()));
    for c in &status.connections {
        let mut capabilities = Vec::new();
        if c.experimental_api {
            capabilities.push("experimentalApi");
        }
        if c.request_attestation {
            capabilities.push("requestAttestation");
        }
        out.push_str(&format!(
            "  #{} {} {} [{}]\n",
            c.id,
            c.transport,
            c.client.as_deref().unwrap_or("(not initialized)"),
            capabilities.join(", ")
        ));
    }
    out.push_str(&format!("loaded threads ({}):\n", status.threads.len()));
    for t in &status.threads {
        out.push_str(&format!(
            "  {} {} {} subscriber(s)\n",
            t.id,
            t.status.type_name(),
            t.subscribers
        ));
    }
    out
}
