//! What happens to a connection's messages between its transport and the rest of the server:
//! the bounded inbox (overload answers), then one task per connection that decodes and answers
//! requests in arrival order through the dispatcher. Slow work (device keys) runs on tracked
//! tasks of its own, so it never holds up the next request.

use std::sync::Arc;

use tether_protocol::{ErrorObject, Incoming, Outgoing, RequestId, parse_incoming};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::Instrument as _;

use crate::Server;
use crate::connection::Connection;
use crate::server_requests::Answer;
use crate::trace::Trace;

/// The transport's side of a connection's inbound queue.
pub struct Inbox {
    queue: mpsc::Sender<Incoming>,
    connection: Arc<Connection>,
}

impl Inbox {
    /// Decodes one frame and queues it. A request that finds the queue full is answered at once
    /// with `-32001`; responses and notifications wait for room. Undecodable frames are dropped
    /// with a log line and no reply.
    pub async fn deliver(&self, frame: &[u8]) {
        match parse_incoming(frame) {
            Err(err) => tracing::warn!(connection = self.connection.id(), "{err}"),
            Ok(request @ Incoming::Request { .. }) => match self.queue.try_send(request) {
                Ok(()) | Err(TrySendError::Closed(_)) => {}
                Err(TrySendError::Full(Incoming::Request { id, .. })) => {
                    let error = ErrorObject::overloaded();
                    self.connection.send(Outgoing::Error { id, error }).await;
                }
                Err(TrySendError::Full(_)) => unreachable!("only requests are tried"),
            },
            Ok(other) => {
                let _ = self.queue.send(other).await;
            }
        }
    }
}

/// Starts the task that serves `connection`'s messages. It ends after the inbox is dropped and
/// everything queued before that has been answered.
pub fn start(
    server: &Arc<Server>,
    connection: &Arc<Connection>,
) -> (Inbox, tokio::task::JoinHandle<()>) {
    let (queue, mut received) = mpsc::channel(server.limits.inbound_queue);
    let processor = {
        let server = Arc::clone(server);
        let connection = Arc::clone(connection);
        tokio::spawn(async move {
            while let Some(message) = received.recv().await {
                handle(&server, &connection, message).await;
            }
        })
    };
    let inbox = Inbox {
        queue,
        connection: Arc::clone(connection),
    };
    (inbox, processor)
}

async fn handle(server: &Arc<Server>, connection: &Arc<Connection>, message: Incoming) {
    match message {
        Incoming::Request {
            id,
            method,
            params,
            traceparent,
        } => {
            let trace = Trace::for_request(&method, connection.id(), &id, traceparent.as_deref());
            let span = trace.span.clone();
            crate::dispatch::request(server, connection, id, &method, params, trace)
                .instrument(span)
                .await;
        }
        Incoming::Notification { method } => {
            tracing::debug!(connection = connection.id(), %method, "client notification");
        }
        Incoming::Response { id, result } => {
            answer(server, connection, &id, Answer::Result(result))
        }
        Incoming::Error { id, error } => answer(server, connection, &id, Answer::Error(error)),
    }
}

/// Only a request's recipients may answer it: anyone else's answer is ignored (and never logged
/// with its contents), and does not consume the request.
fn answer(server: &Server, connection: &Connection, id: &RequestId, answer: Answer) {
    if !server.requests.answer(connection.id(), id, answer) {
        tracing::debug!(connection = connection.id(), %id, "ignoring an answer this connection may not give");
    }
}
