//! A real Responses API server on 127.0.0.1 for tests: scripted SSE streams over HTTP and the same
//! events over WebSocket, error statuses, cuts and stalls; it records every request it receives.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Body;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt as _;
use serde_json::{Value, json};
use tokio::sync::Notify;

/// One step of a scripted response.
#[derive(Clone, Debug)]
pub enum Step {
    /// Send this event.
    Event(Value),
    /// Send these bytes as they are, framing and all (over WebSocket: as one text message).
    Raw(String),
    /// Wait before the next step.
    Pause(Duration),
    /// End the stream here (without `response.completed` unless it was sent).
    Cut,
    /// Never send anything more.
    Hang,
}

/// How the server answers one request.
#[derive(Clone, Debug)]
pub enum Script {
    /// 200 and a stream of steps.
    Stream(Vec<Step>),
    /// This status and body.
    Status(u16, String),
    /// This status with these extra headers, and this body.
    StatusWithHeaders(u16, Vec<(String, String)>, String),
    /// 200 with these extra headers (over HTTP), and a stream of steps.
    StreamWithHeaders(Vec<(String, String)>, Vec<Step>),
}

/// A request the server received.
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// `http` or `websocket`.
    pub transport: &'static str,
    /// Header names (lowercase) and values.
    pub headers: Vec<(String, String)>,
    /// The JSON body (or the `response.create` message).
    pub body: Value,
    /// When the request (its body, or the `response.create` message) had arrived.
    pub received_at: Instant,
}

impl RecordedRequest {
    /// The value of header `name`, if sent.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }
}

/// Chooses the answer to a request from its body.
type Responder = Arc<dyn Fn(&Value) -> Script + Send + Sync>;

#[derive(Default)]
struct Scripts {
    queue: Mutex<VecDeque<Script>>,
    responder: Mutex<Option<Responder>>,
    requests: Mutex<Vec<RecordedRequest>>,
    arrived: Notify,
}

impl Scripts {
    fn next(&self, body: &Value) -> Script {
        if let Some(script) = self.queue.lock().unwrap().pop_front() {
            return script;
        }
        let responder = self.responder.lock().unwrap().clone();
        match responder {
            Some(responder) => responder(body),
            None => Script::Status(500, "no scripted response left".into()),
        }
    }

    fn record(&self, transport: &'static str, headers: &HeaderMap, body: Value) {
        let headers = headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    v.to_str().unwrap_or_default().to_owned(),
                )
            })
            .collect();
        self.requests.lock().unwrap().push(RecordedRequest {
            transport,
            headers,
            body,
            received_at: Instant::now(),
        });
        self.arrived.notify_waiters();
    }
}

/// The server; stops when dropped.
pub struct ResponsesServer {
    address: SocketAddr,
    scripts: Arc<Scripts>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for ResponsesServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl ResponsesServer {
    /// Starts on a free loopback port.
    pub async fn start() -> ResponsesServer {
        let scripts = Arc::new(Scripts::default());
        let app = Router::new()
            .fallback(respond)
            .with_state(Arc::clone(&scripts));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let address = listener.local_addr().unwrap();
        let task = tokio::spawn(async move {
            let _ = axum::serve(listener, app).await;
        });
        ResponsesServer {
            address,
            scripts,
            task,
        }
    }

    /// `http://127.0.0.1:PORT/v1`: requests go to `{base}/responses`.
    pub fn base_url(&self) -> String {
        format!("http://{}/v1", self.address)
    }

    /// Queues the answer to the next request.
    pub fn push(&self, script: Script) {
        self.scripts.queue.lock().unwrap().push_back(script);
    }

    /// Answers every request that finds no queued script with `responder(body)`: for clients
    /// that send requests of their own (a title for each thread) in an order the test does not
    /// fix.
    pub fn respond_with(&self, responder: impl Fn(&Value) -> Script + Send + Sync + 'static) {
        *self.scripts.responder.lock().unwrap() = Some(Arc::new(responder));
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<RecordedRequest> {
        self.scripts.requests.lock().unwrap().clone()
    }

    /// Waits until at least `count` requests arrived (15 s at most).
    pub async fn wait_for_requests(&self, count: usize) -> Vec<RecordedRequest> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            let arrived = self.scripts.arrived.notified();
            let requests = self.requests();
            if requests.len() >= count {
                return requests;
            }
            if tokio::time::timeout_at(deadline, arrived).await.is_err() {
                panic!(
                    "only {} of {count} upstream requests arrived",
                    requests.len()
                );
            }
        }
    }
}

async fn respond(State(scripts): State<Arc<Scripts>>, request: Request) -> Response {
    let (mut parts, body) = request.into_parts();
    if let Ok(upgrade) = WebSocketUpgrade::from_request_parts(&mut parts, &()).await {
        let headers = parts.headers.clone();
        return upgrade.on_upgrade(move |socket| serve_websocket(scripts, headers, socket));
    }
    let bytes = axum::body::to_bytes(body, 64 * 1024 * 1024)
        .await
        .unwrap_or_default();
    let body: Value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
    let script = scripts.next(&body);
    scripts.record("http", &parts.headers, body);
    match script {
        Script::Status(status, text) => {
            (StatusCode::from_u16(status).unwrap(), text).into_response()
        }
        Script::StatusWithHeaders(status, headers, text) => {
            let mut response = Response::builder().status(status);
            for (name, value) in headers {
                response = response.header(name, value);
            }
            response.body(Body::from(text)).unwrap()
        }
        Script::Stream(steps) => event_stream(steps, Vec::new()),
        Script::StreamWithHeaders(headers, steps) => event_stream(steps, headers),
    }
}

/// A 200 SSE response of `steps`, with `headers` added.
fn event_stream(steps: Vec<Step>, headers: Vec<(String, String)>) -> Response {
    let stream = futures_util::stream::unfold(steps.into_iter(), |mut steps| async move {
        loop {
            match steps.next()? {
                Step::Event(event) => {
                    let kind = event["type"].as_str().unwrap_or("message").to_owned();
                    let chunk = format!("event: {kind}\ndata: {event}\n\n");
                    return Some((Ok::<_, std::io::Error>(chunk), steps));
                }
                Step::Raw(bytes) => return Some((Ok(bytes), steps)),
                Step::Pause(duration) => tokio::time::sleep(duration).await,
                Step::Cut => return None,
                Step::Hang => std::future::pending::<()>().await,
            }
        }
    });
    let mut response = Response::builder().header("content-type", "text/event-stream");
    for (name, value) in headers {
        response = response.header(name, value);
    }
    response.body(Body::from_stream(stream)).unwrap()
}

async fn serve_websocket(scripts: Arc<Scripts>, headers: HeaderMap, mut socket: WebSocket) {
    // One response.create per socket is all tether sends.
    let Some(Ok(Message::Text(create))) = socket.next().await else {
        return;
    };
    let body = serde_json::from_str(&create).unwrap_or(Value::Null);
    let script = scripts.next(&body);
    scripts.record("websocket", &headers, body);
    let (Script::Stream(steps) | Script::StreamWithHeaders(_, steps)) = script else {
        let _ = socket
            .send(Message::Text(
                json!({"type": "error", "error": {"message": "scripted failure"}})
                    .to_string()
                    .into(),
            ))
            .await;
        return;
    };
    for step in steps {
        match step {
            Step::Event(event) => {
                if socket
                    .send(Message::Text(event.to_string().into()))
                    .await
                    .is_err()
                {
                    return;
                }
            }
            Step::Raw(text) => {
                if socket.send(Message::Text(text.into())).await.is_err() {
                    return;
                }
            }
            Step::Pause(duration) => tokio::time::sleep(duration).await,
            Step::Cut => return,
            Step::Hang => std::future::pending::<()>().await,
        }
    }
    // Keep the socket open until the client closes it, like a real server between responses.
    while let Some(Ok(_)) = socket.next().await {}
}

/// The events of a successful response with one assistant message made of `chunks`.
pub fn message_response(response_id: &str, chunks: &[&str]) -> Vec<Step> {
    let item_id = format!("msg_{response_id}");
    let text: String = chunks.concat();
    let mut steps = vec![
        Step::Event(json!({"type": "response.created", "response": {"id": response_id}})),
        Step::Event(
            json!({"type": "response.output_item.added", "output_index": 0, "item": {"type": "message", "id": item_id, "role": "assistant", "content": []}}),
        ),
    ];
    steps.extend(chunks.iter().map(|delta| {
        Step::Event(json!({"type": "response.output_text.delta", "item_id": item_id, "output_index": 0, "content_index": 0, "delta": delta}))
    }));
    steps.push(Step::Event(json!({"type": "response.output_item.done", "output_index": 0, "item": {"type": "message", "id": item_id, "role": "assistant", "content": [{"type": "output_text", "text": text}]}})));
    steps.push(completed(response_id));
    steps
}

/// `response.completed` with small usage numbers.
pub fn completed(response_id: &str) -> Step {
    Step::Event(
        json!({"type": "response.completed", "response": {"id": response_id, "usage": {"input_tokens": 12, "input_tokens_details": {"cached_tokens": 2}, "output_tokens": 5, "output_tokens_details": {"reasoning_tokens": 1}, "total_tokens": 17}}}),
    )
}

/// The text of the last user message in a Responses request body (`input` items of role `user`
/// with `input_text` parts), if there is one.
pub fn last_user_text(body: &Value) -> Option<String> {
    body["input"]
        .as_array()?
        .iter()
        .rev()
        .filter(|item| item["role"] == "user")
        .find_map(|item| {
            let text: String = item["content"]
                .as_array()?
                .iter()
                .filter(|part| part["type"] == "input_text")
                .filter_map(|part| part["text"].as_str())
                .collect();
            (!text.is_empty()).then_some(text)
        })
}
