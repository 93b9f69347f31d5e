//! Transports turn byte streams into frames and back. Each one runs its connections through
//! [`run`], which owns the lifecycle every transport shares: register, read until the end, let the
//! processor answer what was received, then let the writer flush and close.

pub mod auth;
pub mod stdio;
pub mod websocket;

use std::sync::Arc;

use crate::Server;
use crate::connection::{CloseReason, Connection, Origin, OutboundQueue};
use crate::processor::{self, Inbox};

/// Runs one connection to its end. `read` delivers frames to the inbox until its client is done,
/// the connection is closed, or the server shuts down; `write` sends queued frames until the
/// queue ends or the connection is closed. Returns why the server closed it, if it did.
pub async fn run<R, W>(
    server: &Arc<Server>,
    origin: Origin,
    read: impl FnOnce(Inbox, Arc<Connection>) -> R,
    write: impl FnOnce(OutboundQueue) -> W,
) -> Option<CloseReason>
where
    R: Future<Output = ()>,
    W: Future<Output = ()> + Send + 'static,
{
    let (connection, outbound) = server
        .registry
        .register(origin, server.limits.outbound_queue_bytes);
    let id = connection.id();
    let closing = Arc::clone(connection.closing());
    tracing::info!(
        connection = id,
        origin = origin.as_str(),
        "connection opened"
    );
    let writer = tokio::spawn(write(outbound));
    let (inbox, processor) = processor::start(server, &connection);
    read(inbox, Arc::clone(&connection)).await;
    connection.gone().cancel();
    // Everything received before the end is still answered.
    let _ = processor.await;
    server.registry.remove(id);
    server.threads.connection_closed(id).await;
    // The writer ends once the last sender (this one, or an in-flight request's) is gone, or at
    // once if the connection was closed.
    drop(connection);
    let _ = writer.await;
    let reason = closing.reason().cloned();
    match &reason {
        Some(reason) => tracing::info!(connection = id, %reason, "connection closed"),
        None => tracing::info!(connection = id, "connection closed"),
    }
    reason
}
