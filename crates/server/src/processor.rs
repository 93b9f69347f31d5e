//! What happens to a connection's messages between its transport and the rest of the server:
//! the bounded inbox (overload answers), then one task per connection that decodes and answers
//! requests in arrival order. Slow work (device keys) runs on tracked tasks of its own, so it
//! never holds up the next request.

use std::sync::Arc;

use tether_device_key::DeviceKeyError;
use tether_protocol::{
    ClientRequest, ErrorObject, Incoming, InitializeParams, InitializeResponse, Outgoing,
    RequestId, parse_incoming,
};
use tokio::sync::mpsc;
use tokio::sync::mpsc::error::TrySendError;
use tracing::Instrument as _;

use crate::connection::{Connection, Session};
use crate::server_requests::Answer;
use crate::threads::Command;
use crate::trace::Trace;
use crate::user_agent::user_agent;
use crate::{DeviceKeys, Server};

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
            let handled = request(server, connection, id.clone(), &method, params, trace)
                .instrument(span)
                .await;
            if let Err(error) = handled {
                connection.send(Outgoing::Error { id, error }).await;
            }
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

fn answer(server: &Server, connection: &Connection, id: &RequestId, answer: Answer) {
    if !server.requests.answer(id, answer) {
        tracing::debug!(connection = connection.id(), %id, "ignoring an answer nobody waits for");
    }
}

/// Applies the generic checks in the protocol's order (decode, then initialization, then the
/// method's own rules) and serves the request. An `Err` is sent back as the error response.
async fn request(
    server: &Arc<Server>,
    connection: &Arc<Connection>,
    id: RequestId,
    method: &str,
    params: Option<serde_json::Value>,
    trace: Trace,
) -> Result<(), ErrorObject> {
    let request = ClientRequest::decode(method, params)
        .map_err(|err| ErrorObject::invalid_request(format!("Invalid request: {err}")))?;
    if let ClientRequest::Initialize(params) = request {
        return initialize(server, connection, id, params).await;
    }
    let Some(session) = connection.session() else {
        return Err(ErrorObject::invalid_request("Not initialized"));
    };
    if let Some(member) = request.experimental_use()
        && !session.experimental_api
    {
        return Err(ErrorObject::invalid_request(format!(
            "{member} requires experimentalApi capability"
        )));
    }
    let method = request.method();
    match request {
        ClientRequest::Initialize(_) => unreachable!("served above"),
        ClientRequest::ThreadStart(p) => server.threads.start(server, connection, id, p).await,
        ClientRequest::ThreadResume(p) => server.threads.resume(server, connection, id, p).await,
        ClientRequest::ThreadUnsubscribe(p) => {
            server
                .threads
                .unsubscribe(connection, id, &p.thread_id)
                .await
        }
        ClientRequest::ThreadRead(p) => server.threads.read(connection, id, p).await,
        ClientRequest::ThreadList(p) => server.threads.list(connection, id, p).await,
        ClientRequest::ThreadLoadedList(p) => server.threads.loaded_list(connection, id, p).await,
        ClientRequest::ThreadGoalSet(params) => {
            let thread_id = params.thread_id.clone();
            let connection = Arc::clone(connection);
            server
                .threads
                .goal_or_revert(server, &thread_id, || Command::GoalSet {
                    connection,
                    id,
                    params,
                })
                .await
        }
        ClientRequest::ThreadGoalGet(p) => {
            let connection = Arc::clone(connection);
            server
                .threads
                .goal_or_revert(server, &p.thread_id, || Command::GoalGet { connection, id })
                .await
        }
        ClientRequest::ThreadGoalClear(p) => {
            let connection = Arc::clone(connection);
            server
                .threads
                .goal_or_revert(server, &p.thread_id, || Command::GoalClear {
                    connection,
                    id,
                })
                .await
        }
        ClientRequest::ThreadRevert(p) => {
            let connection = Arc::clone(connection);
            let before_turn_id = p.before_turn_id;
            server
                .threads
                .goal_or_revert(server, &p.thread_id, || Command::Revert {
                    connection,
                    id,
                    before_turn_id,
                })
                .await
        }
        ClientRequest::ThreadCompactStart(p) => {
            server
                .threads
                .compact(connection, id, &p.thread_id, trace)
                .await
        }
        ClientRequest::TurnStart(p) => server.threads.turn_start(connection, id, p, trace).await,
        ClientRequest::TurnInterrupt(p) => server.threads.interrupt(connection, id, p).await,
        ClientRequest::TetherStatus(_) => {
            if !connection.origin().allows_status() {
                return Err(ErrorObject::invalid_request(format!(
                    "{method} is not available over remote transports"
                )));
            }
            let status = crate::status::snapshot(server).await;
            connection.send(Outgoing::response(id, &status)).await;
            Ok(())
        }
        ClientRequest::DeviceKeyCreate(p) => {
            device_key(server, connection, id, method, move |keys| async move {
                keys.create(&p.account_user_id, &p.client_id, p.protection_policy)
                    .await
            })
        }
        ClientRequest::DeviceKeyPublic(p) => {
            device_key(server, connection, id, method, move |keys| async move {
                keys.get_public(&p.key_id).await
            })
        }
        ClientRequest::DeviceKeySign(p) => {
            device_key(server, connection, id, method, move |keys| async move {
                keys.sign(&p.key_id, &p.payload).await
            })
        }
    }
}

async fn initialize(
    server: &Arc<Server>,
    connection: &Arc<Connection>,
    id: RequestId,
    params: InitializeParams,
) -> Result<(), ErrorObject> {
    if connection.session().is_some() {
        return Err(ErrorObject::invalid_request("Already initialized"));
    }
    let name = &params.client_info.name;
    if http::HeaderValue::from_str(name).is_err() {
        return Err(ErrorObject::invalid_request(format!(
            "Invalid clientInfo.name: '{name}'. Must be a valid HTTP header value."
        )));
    }
    let response = InitializeResponse {
        user_agent: user_agent(&params.client_info),
        codex_home: server.home_dir.clone(),
        platform_family: std::env::consts::FAMILY.to_owned(),
        platform_os: std::env::consts::OS.to_owned(),
    };
    // The response is queued before the connection counts as initialized, so no broadcast can
    // overtake it. Requests of this connection wait for this one: nothing sees the gap.
    connection.send(Outgoing::response(id, &response)).await;
    connection.initialize(Session::new(name, params.capabilities));
    tracing::info!(connection = connection.id(), client = %name, "initialized");
    Ok(())
}

/// Device-key work may wait on hardware: after the origin check it runs on its own tracked task
/// and answers whenever it is done, so later requests on the connection are not held up (their
/// responses may overtake it).
fn device_key<T, F, Fut>(
    server: &Arc<Server>,
    connection: &Arc<Connection>,
    id: RequestId,
    method: &str,
    operation: F,
) -> Result<(), ErrorObject>
where
    T: serde::Serialize,
    F: FnOnce(DeviceKeys) -> Fut + Send + 'static,
    Fut: Future<Output = Result<T, DeviceKeyError>> + Send + 'static,
{
    if !connection.origin().allows_device_keys() {
        return Err(ErrorObject::invalid_request(format!(
            "{method} is not available over remote transports"
        )));
    }
    let keys = server.device_keys.clone();
    let connection = Arc::clone(connection);
    let span = tracing::info_span!("device_key", method);
    server.tasks.spawn(
        async move {
            let reply = match operation(keys).await {
                Ok(result) => Outgoing::response(id, &result),
                Err(error) => Outgoing::Error {
                    id,
                    error: ErrorObject {
                        code: error.jsonrpc_code(),
                        message: error.to_string(),
                        data: None,
                    },
                },
            };
            connection.send(reply).await;
        }
        .instrument(span),
    );
    Ok(())
}
