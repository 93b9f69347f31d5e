//! `ws://IP:PORT` and the unix control socket: HTTP/1.1 with a WebSocket upgrade on any path, one
//! JSON-RPC message per text frame. Health routes need no auth, any request with an `Origin`
//! header is refused with 403 (browsers must never reach this server), and the listener's auth
//! check (401) runs on the upgrade request.

use std::sync::Arc;

use axum::Router;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade, close_code};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use futures_util::{SinkExt as _, StreamExt as _};

use super::auth::WsAuth;
use crate::Server;
use crate::connection::{CloseReason, Origin};

const READ_BUFFER_BYTES: usize = 16 * 1024;

/// How long a closing connection may take to send its close frame: a client that stopped reading
/// never takes it, and its socket is dropped after this anyway.
const CLOSE_FRAME_GRACE: std::time::Duration = std::time::Duration::from_secs(2);

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
    let max_frame = server.limits.max_frame_bytes;
    super::run(
        &server,
        origin,
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
                        connection.close(read_failure(err, max_frame));
                        break;
                    }
                }
            }
        },
        async move |outbound| {
            let closing = Arc::clone(outbound.closing());
            let closed = closing.token().clone();
            let mut outbound = Some(outbound);
            while let Some(queue) = outbound.as_mut() {
                let frame = tokio::select! {
                    _ = closed.cancelled() => break,
                    frame = queue.recv() => frame,
                };
                let Some(frame) = frame else { break };
                let sent = tokio::select! {
                    _ = closed.cancelled() => break,
                    sent = sink.send(Message::Text((*frame).into())) => sent,
                };
                if let Err(err) = sent {
                    closing.close(CloseReason::Transport(format!(
                        "writing the socket failed: {err}"
                    )));
                    break;
                }
            }
            // A closed connection's backlog is dropped now, not when its client goes away.
            drop(outbound);
            let frame = closing.reason().and_then(close_frame);
            let _ = tokio::time::timeout(CLOSE_FRAME_GRACE, async {
                let _ = sink.send(Message::Close(frame)).await;
                let _ = sink.close().await;
            })
            .await;
        },
    )
    .await;
}

/// Why reading failed, as a close reason: tungstenite reports a message or frame over the limit
/// as a capacity error, anything else the client sent wrong as a protocol error.
fn read_failure(err: axum::Error, max_frame: usize) -> CloseReason {
    use tungstenite::Error;
    match err.into_inner().downcast::<Error>().map(|err| *err) {
        Ok(Error::Capacity(_)) => CloseReason::FrameTooLarge { limit: max_frame },
        Ok(err @ (Error::Protocol(_) | Error::Utf8(_) | Error::AttackAttempt)) => {
            CloseReason::Protocol(format!("the client broke the websocket protocol: {err}"))
        }
        Ok(err) => CloseReason::Transport(format!("reading the socket failed: {err}")),
        Err(err) => CloseReason::Transport(format!("reading the socket failed: {err}")),
    }
}

/// The close frame that tells the client why (RFC 6455 codes; the reason fits the 123 bytes a
/// close frame allows). A failed transport gets none: there is nobody to tell.
fn close_frame(reason: &CloseReason) -> Option<CloseFrame> {
    let (code, text) = match reason {
        CloseReason::FrameTooLarge { limit } => (
            close_code::SIZE,
            format!("message too big: the limit is {limit} bytes"),
        ),
        CloseReason::TooSlow { limit } => (
            close_code::POLICY,
            format!("client too slow: more than {limit} bytes queued for it"),
        ),
        CloseReason::Protocol(_) => (close_code::PROTOCOL, "protocol error".to_owned()),
        CloseReason::Transport(_) => return None,
    };
    Some(CloseFrame {
        code,
        reason: text.into(),
    })
}
