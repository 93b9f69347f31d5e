//! `ws://IP:PORT` and the unix control socket: HTTP/1.1 with a WebSocket upgrade on any path, one
//! JSON-RPC message per text frame. Health routes need no auth, any request with an `Origin`
//! header is refused with 403 (browsers must never reach this server), and the listener's auth
//! check (401) runs on the upgrade request.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};

use super::auth::WsAuth;
use crate::Server;
use crate::connection::{Origin, WhenFull};

const READ_BUFFER_BYTES: usize = 16 * 1024;

#[derive(Clone)]
struct Listener {
    server: Arc<Server>,
    auth: Arc<WsAuth>,
    origin: Origin,
}

/// The HTTP service of one WebSocket listener (`origin`: the unix socket or `ws://`).
pub fn router(server: Arc<Server>, auth: Arc<WsAuth>, origin: Origin) -> Router {
    Router::new()
        .route("/readyz", get(ready))
        .route("/healthz", get(healthy))
        .fallback(upgrade)
        .layer(middleware::from_fn(refuse_browsers))
        .with_state(Listener {
            server,
            auth,
            origin,
        })
}

async fn healthy() -> StatusCode {
    StatusCode::OK
}

/// Ready until shutdown begins.
async fn ready(State(listener): State<Listener>) -> StatusCode {
    if listener.server.shutdown.is_cancelled() {
        StatusCode::SERVICE_UNAVAILABLE
    } else {
        StatusCode::OK
    }
}

async fn refuse_browsers(request: Request, next: Next) -> Response {
    if request.headers().contains_key(header::ORIGIN) {
        return StatusCode::FORBIDDEN.into_response();
    }
    next.run(request).await
}

async fn upgrade(
    State(listener): State<Listener>,
    headers: HeaderMap,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Response {
    let upgrade = match upgrade {
        Ok(upgrade) => upgrade,
        Err(rejection) => return rejection.into_response(),
    };
    if let Err(reason) = listener.auth.authorize(&headers) {
        tracing::warn!("websocket handshake refused: {reason}");
        return (StatusCode::UNAUTHORIZED, reason).into_response();
    }
    let limit = listener.server.limits.max_frame_bytes;
    let (server, origin) = (listener.server, listener.origin);
    upgrade
        .max_message_size(limit)
        .max_frame_size(limit)
        // The default 128 KiB per socket dominates the memory of many idle connections;
        // messages larger than this still arrive, in more reads.
        .read_buffer_size(READ_BUFFER_BYTES)
        .on_upgrade(move |socket| {
            let tasks = server.tasks.clone();
            tasks.track_future(serve_socket(server, socket, origin))
        })
}

async fn serve_socket(server: Arc<Server>, socket: WebSocket, origin: Origin) {
    let (mut sink, mut stream) = socket.split();
    let shutdown = server.shutdown.clone();
    super::run(
        &server,
        origin,
        WhenFull::Disconnect,
        server.limits.ws_outbound_queue,
        async move |inbox, connection| {
            loop {
                let message = tokio::select! {
                    _ = shutdown.cancelled() => break,
                    _ = connection.closed().cancelled() => break,
                    message = stream.next() => message,
                };
                match message {
                    Some(Ok(Message::Text(text))) => inbox.deliver(text.as_bytes()).await,
                    Some(Ok(Message::Binary(_))) => {
                        tracing::warn!(connection = connection.id(), "dropping a binary frame");
                    }
                    // Pings are answered by the WebSocket layer itself.
                    Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                    Some(Ok(Message::Close(_))) | None => break,
                    Some(Err(err)) => {
                        tracing::warn!(connection = connection.id(), "closing connection: {err}");
                        connection.closed().cancel();
                        break;
                    }
                }
            }
        },
        async move |mut outbound, closed| {
            loop {
                let frame = tokio::select! {
                    _ = closed.cancelled() => break,
                    frame = outbound.recv() => frame,
                };
                let Some(frame) = frame else { break };
                let sent = tokio::select! {
                    _ = closed.cancelled() => break,
                    sent = sink.send(Message::Text(frame.into())) => sent,
                };
                if sent.is_err() {
                    closed.cancel();
                    break;
                }
            }
            let _ = sink.send(Message::Close(None)).await;
            let _ = sink.close().await;
        },
    )
    .await;
}
