//! Transports turn byte streams into frames and back. Each one runs its connections through
//! [`run`], which owns the lifecycle every transport shares: register, read until the end, let the
//! processor answer what was received, then let the writer flush and close.

pub mod auth;
pub mod stdio;
pub mod websocket;

use std::sync::Arc;

use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::Server;
use crate::connection::{Connection, Origin, WhenFull};
use crate::processor::{self, Inbox};

/// Runs one connection to its end. `read` delivers frames to the inbox until its client is done,
/// the connection is closed, or the server shuts down; `write` sends queued frames until the
/// queue ends or `closed` is cancelled.
pub async fn run<R, W>(
    server: &Arc<Server>,
    origin: Origin,
    when_full: WhenFull,
    outbound_capacity: usize,
    read: impl FnOnce(Inbox, Arc<Connection>) -> R,
    write: impl FnOnce(mpsc::Receiver<String>, CancellationToken) -> W,
) where
    R: Future<Output = ()>,
    W: Future<Output = ()> + Send + 'static,
{
    let (connection, outbound) = server
        .registry
        .register(origin, when_full, outbound_capacity);
    let id = connection.id();
    tracing::info!(
        connection = id,
        origin = origin.as_str(),
        "connection opened"
    );
    let writer = tokio::spawn(write(outbound, connection.closed().clone()));
    let (inbox, processor) = processor::start(server, &connection);
    read(inbox, Arc::clone(&connection)).await;
    connection.gone().cancel();
    // Everything received before the end is still answered.
    let _ = processor.await;
    server.registry.remove(id);
    server.threads.connection_closed(id).await;
    // The writer ends once the last sender (this one, or an in-flight request's) is gone.
    drop(connection);
    let _ = writer.await;
    tracing::info!(connection = id, "connection closed");
}
