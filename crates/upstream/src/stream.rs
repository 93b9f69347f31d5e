use std::collections::VecDeque;
use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::BoxStream;
use futures_util::{SinkExt as _, StreamExt as _};
use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest as _;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use crate::ResponseEvent;
use crate::events::{Decoded, decode};
use crate::sse::SseDecoder;

/// Where and how to reach one model provider.
#[derive(Clone)]
pub struct Endpoint {
    /// Base URL; requests go to `{base_url}/responses`.
    pub base_url: String,
    /// Headers sent with every request (auth, provider headers).
    pub headers: Vec<(String, String)>,
    /// Use the Responses WebSocket transport instead of HTTP + SSE.
    pub websocket: bool,
    /// Retries of a request that failed before streaming (connect errors, 429, 5xx).
    pub request_max_retries: u32,
    /// First retry delay; doubled for each further retry.
    pub retry_base_delay: Duration,
    /// How long a stream may go without an event before it counts as disconnected.
    pub idle_timeout: Duration,
}

/// The headers a [`HeaderHook`] produces, when it is ready.
pub type HeadersFuture<'a> = Pin<Box<dyn Future<Output = Vec<(String, String)>> + Send + 'a>>;

impl std::fmt::Debug for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Header values carry credentials: only their names are printed.
        let headers: Vec<&str> = self.headers.iter().map(|(name, _)| name.as_str()).collect();
        f.debug_struct("Endpoint")
            .field("base_url", &self.base_url)
            .field("headers", &headers)
            .field("websocket", &self.websocket)
            .field("request_max_retries", &self.request_max_retries)
            .field("retry_base_delay", &self.retry_base_delay)
            .field("idle_timeout", &self.idle_timeout)
            .finish()
    }
}

/// Headers computed at the moment a request is sent: called once per HTTP POST and once per
/// WebSocket handshake.
pub trait HeaderHook: Send + Sync {
    /// The extra headers for this request.
    fn headers(&self) -> HeadersFuture<'_>;
}

/// A hook that adds nothing.
pub struct NoExtraHeaders;

impl HeaderHook for NoExtraHeaders {
    fn headers(&self) -> HeadersFuture<'_> {
        Box::pin(async { Vec::new() })
    }
}

/// Why a response did not complete.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum UpstreamError {
    /// The provider could not be reached.
    #[error("error sending request: {0}")]
    Connect(String),
    /// The provider answered with a non-success status.
    #[error("unexpected status {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Response body (truncated).
        body: String,
    },
    /// The stream ended or stalled before `response.completed`.
    #[error("stream disconnected before completion: {0}")]
    Disconnected(String),
    /// The provider reported a failed response.
    #[error("{message}")]
    Failed {
        /// Provider error code, if any.
        code: Option<String>,
        /// Provider message.
        message: String,
    },
    /// The endpoint cannot be used as configured.
    #[error("invalid upstream configuration: {0}")]
    Config(String),
}

impl UpstreamError {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        match self {
            UpstreamError::Connect(_) | UpstreamError::Disconnected(_) => true,
            UpstreamError::Status { status, .. } => *status == 429 || *status >= 500,
            UpstreamError::Failed { .. } | UpstreamError::Config(_) => false,
        }
    }
}

const MAX_ERROR_BODY: usize = 4096;

/// A Responses API client for one endpoint.
pub struct Upstream {
    http: reqwest::Client,
    endpoint: Endpoint,
}

impl Upstream {
    /// A client for `endpoint`.
    pub fn new(endpoint: Endpoint) -> Result<Upstream, UpstreamError> {
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .map_err(|err| UpstreamError::Config(err.to_string()))?;
        Ok(Upstream { http, endpoint })
    }

    /// Where requests go, and the headers they carry.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Sends `body` (a Responses request; `stream` is forced on) and returns the event stream.
    /// Failures before streaming starts are retried per [`Endpoint::request_max_retries`], each
    /// attempt with fresh hook headers. Dropping the stream cancels the request.
    pub async fn stream(
        &self,
        body: &Value,
        hook: &dyn HeaderHook,
    ) -> Result<ResponseStream, UpstreamError> {
        let mut attempt = 0;
        loop {
            let result = if self.endpoint.websocket {
                self.open_websocket(body, hook).await
            } else {
                self.post(body, hook).await
            };
            match result {
                Err(err) if err.is_retryable() && attempt < self.endpoint.request_max_retries => {
                    let delay = self.endpoint.retry_base_delay * 2u32.saturating_pow(attempt);
                    tracing::warn!(attempt, ?delay, "upstream request failed, retrying: {err}");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                other => return other,
            }
        }
    }

    fn url(&self) -> String {
        format!("{}/responses", self.endpoint.base_url.trim_end_matches('/'))
    }

    async fn post(
        &self,
        body: &Value,
        hook: &dyn HeaderHook,
    ) -> Result<ResponseStream, UpstreamError> {
        let body = if body.get("stream") == Some(&Value::Bool(true)) {
            body.to_string()
        } else {
            let mut body = body.clone();
            body["stream"] = Value::Bool(true);
            body.to_string()
        };
        let mut request = self
            .http
            .post(self.url())
            .header("accept", "text/event-stream")
            .header("content-type", "application/json")
            .body(body);
        for (name, value) in self
            .endpoint
            .headers
            .iter()
            .chain(hook.headers().await.iter())
        {
            request = request.header(name.as_str(), value.as_str());
        }
        let response = request
            .send()
            .await
            .map_err(|err| UpstreamError::Connect(err.to_string()))?;
        let status = response.status();
        if !status.is_success() {
            let text = response.text().await.unwrap_or_default();
            let mut body: String = text.chars().take(MAX_ERROR_BODY).collect();
            if body.is_empty() {
                body = status.canonical_reason().unwrap_or_default().to_owned();
            }
            return Err(UpstreamError::Status {
                status: status.as_u16(),
                body,
            });
        }
        Ok(ResponseStream::new(
            Source::Sse {
                body: response.bytes_stream().boxed(),
                decoder: SseDecoder::default(),
                ready: VecDeque::new(),
            },
            self.endpoint.idle_timeout,
        ))
    }

    async fn open_websocket(
        &self,
        body: &Value,
        hook: &dyn HeaderHook,
    ) -> Result<ResponseStream, UpstreamError> {
        let url = self.url().replacen("http", "ws", 1);
        let mut request = url
            .into_client_request()
            .map_err(|err| UpstreamError::Config(err.to_string()))?;
        for (name, value) in self
            .endpoint
            .headers
            .iter()
            .chain(hook.headers().await.iter())
        {
            let name = reqwest::header::HeaderName::from_bytes(name.as_bytes());
            let value = reqwest::header::HeaderValue::from_str(value);
            if let (Ok(name), Ok(value)) = (name, value) {
                request.headers_mut().insert(name, value);
            }
        }
        let (mut socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|err| match err {
                tokio_tungstenite::tungstenite::Error::Http(response) => UpstreamError::Status {
                    status: response.status().as_u16(),
                    body: response
                        .body()
                        .as_deref()
                        .map(|b| {
                            String::from_utf8_lossy(b)
                                .chars()
                                .take(MAX_ERROR_BODY)
                                .collect()
                        })
                        .unwrap_or_default(),
                },
                other => UpstreamError::Connect(other.to_string()),
            })?;
        let mut create = body.clone();
        if let Value::Object(fields) = &mut create {
            fields.remove("stream");
            fields.insert("type".into(), Value::String("response.create".into()));
        }
        socket
            .send(Message::Text(create.to_string().into()))
            .await
            .map_err(|err| UpstreamError::Connect(err.to_string()))?;
        Ok(ResponseStream::new(
            Source::WebSocket(Box::new(socket)),
            self.endpoint.idle_timeout,
        ))
    }
}

enum Source {
    Sse {
        body: BoxStream<'static, reqwest::Result<Bytes>>,
        decoder: SseDecoder,
        ready: VecDeque<String>,
    },
    WebSocket(Box<WebSocketStream<MaybeTlsStream<tokio::net::TcpStream>>>),
}

/// The events of one response, ending after `response.completed` or at the first error.
pub struct ResponseStream {
    source: Source,
    idle_timeout: Duration,
    finished: bool,
}

impl ResponseStream {
    fn new(source: Source, idle_timeout: Duration) -> ResponseStream {
        ResponseStream {
            source,
            idle_timeout,
            finished: false,
        }
    }

    /// The next event; `None` after `response.completed` (or after an error was returned).
    pub async fn next(&mut self) -> Option<Result<ResponseEvent, UpstreamError>> {
        while !self.finished {
            let data = match tokio::time::timeout(self.idle_timeout, self.next_data()).await {
                Ok(Ok(Some(data))) => data,
                Ok(Ok(None)) => {
                    return self.fail(UpstreamError::Disconnected(
                        "stream closed before response.completed".into(),
                    ));
                }
                Ok(Err(err)) => return self.fail(err),
                Err(_) => {
                    return self.fail(UpstreamError::Disconnected(format!(
                        "idle timeout waiting for the stream after {:?}",
                        self.idle_timeout
                    )));
                }
            };
            let Ok(event) = serde_json::from_str::<Value>(&data) else {
                tracing::debug!("skipping an upstream event that is not JSON");
                continue;
            };
            match decode(&event) {
                Decoded::Skip => {}
                Decoded::Failed { code, message } => {
                    return self.fail(UpstreamError::Failed { code, message });
                }
                Decoded::Event(event) => {
                    self.finished = matches!(event, ResponseEvent::Completed { .. });
                    return Some(Ok(event));
                }
            }
        }
        None
    }

    fn fail(&mut self, error: UpstreamError) -> Option<Result<ResponseEvent, UpstreamError>> {
        self.finished = true;
        Some(Err(error))
    }

    /// The next event's JSON text; `None` when the transport ended.
    async fn next_data(&mut self) -> Result<Option<String>, UpstreamError> {
        match &mut self.source {
            Source::Sse {
                body,
                decoder,
                ready,
            } => loop {
                if let Some(data) = ready.pop_front() {
                    return Ok(Some(data));
                }
                match body.next().await {
                    Some(Ok(bytes)) => ready.extend(decoder.feed(&bytes)),
                    Some(Err(err)) => return Err(UpstreamError::Disconnected(err.to_string())),
                    None => return Ok(None),
                }
            },
            Source::WebSocket(socket) => loop {
                match socket.next().await {
                    Some(Ok(Message::Text(text))) => return Ok(Some(text.to_string())),
                    Some(Ok(Message::Close(_))) | None => return Ok(None),
                    Some(Ok(_)) => {}
                    Some(Err(err)) => return Err(UpstreamError::Disconnected(err.to_string())),
                }
            },
        }
    }
}
