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
    /// First retry delay; doubled for each further retry. A 429 or 503 with `Retry-After` waits
    /// as long as that says instead.
    pub retry_base_delay: Duration,
    /// The longest `Retry-After` honoured: a longer one waits this long.
    pub max_retry_after: Duration,
    /// How long a stream may go without receiving a byte before it counts as disconnected.
    pub idle_timeout: Duration,
}

/// A sane default for [`Endpoint::max_retry_after`].
pub const DEFAULT_MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

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
            .field("max_retry_after", &self.max_retry_after)
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

/// A retry about to happen, told to the caller before its delay starts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Retry {
    /// Which retry this is, from 1.
    pub attempt: u32,
    /// How many retries are allowed in all.
    pub max_retries: u32,
    /// Why the previous attempt failed.
    pub error: UpstreamError,
    /// How long until the next attempt is sent.
    pub delay: Duration,
}

/// What a [`RetryObserver`] does with a notice, when it is done.
pub type NoticeFuture<'a> = Pin<Box<dyn Future<Output = ()> + Send + 'a>>;

/// Told before each retry of a request that failed before streaming.
pub trait RetryObserver: Send + Sync {
    /// Called once per retry, before its delay; the retry waits for the returned future.
    fn retrying(&self, retry: &Retry) -> NoticeFuture<'_>;
}

/// An observer that ignores retries.
pub struct IgnoreRetries;

impl RetryObserver for IgnoreRetries {
    fn retrying(&self, _retry: &Retry) -> NoticeFuture<'_> {
        Box::pin(async {})
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
        self.stream_observed(body, hook, &IgnoreRetries).await
    }

    /// [`Upstream::stream`], telling `observer` before each retry of the request.
    pub async fn stream_observed(
        &self,
        body: &Value,
        hook: &dyn HeaderHook,
        observer: &dyn RetryObserver,
    ) -> Result<ResponseStream, UpstreamError> {
        let max_retries = self.endpoint.request_max_retries;
        let mut attempt = 0;
        loop {
            let result = if self.endpoint.websocket {
                self.open_websocket(body, hook).await
            } else {
                self.post(body, hook).await
            };
            let refusal = match result {
                Ok(stream) => return Ok(stream),
                Err(refusal) => refusal,
            };
            if !refusal.error.is_retryable() || attempt >= max_retries {
                return Err(refusal.error);
            }
            attempt += 1;
            let delay = match refusal.retry_after {
                Some(wait) => wait.min(self.endpoint.max_retry_after),
                None => self.endpoint.retry_base_delay * 2u32.saturating_pow(attempt - 1),
            };
            tracing::warn!(
                attempt,
                ?delay,
                "upstream request failed, retrying: {}",
                refusal.error
            );
            let retry = Retry {
                attempt,
                max_retries,
                error: refusal.error,
                delay,
            };
            observer.retrying(&retry).await;
            tokio::time::sleep(delay).await;
        }
    }

    fn url(&self) -> String {
        format!("{}/responses", self.endpoint.base_url.trim_end_matches('/'))
    }

    async fn post(&self, body: &Value, hook: &dyn HeaderHook) -> Result<ResponseStream, Refusal> {
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
            let retry_after = retry_after(status.as_u16(), response.headers());
            let text = response.text().await.unwrap_or_default();
            let mut body: String = text.chars().take(MAX_ERROR_BODY).collect();
            if body.is_empty() {
                body = status.canonical_reason().unwrap_or_default().to_owned();
            }
            return Err(Refusal {
                error: UpstreamError::Status {
                    status: status.as_u16(),
                    body,
                },
                retry_after,
            });
        }
        let headers = response.headers().clone();
        Ok(ResponseStream::new(
            Source::Sse {
                body: response.bytes_stream().boxed(),
                decoder: SseDecoder::default(),
                ready: VecDeque::new(),
            },
            self.endpoint.idle_timeout,
            headers,
        ))
    }

    async fn open_websocket(
        &self,
        body: &Value,
        hook: &dyn HeaderHook,
    ) -> Result<ResponseStream, Refusal> {
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
        let (mut socket, handshake) =
            tokio_tungstenite::connect_async(request)
                .await
                .map_err(|err| match err {
                    tokio_tungstenite::tungstenite::Error::Http(response) => Refusal {
                        error: UpstreamError::Status {
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
                        retry_after: retry_after(response.status().as_u16(), response.headers()),
                    },
                    other => UpstreamError::Connect(other.to_string()).into(),
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
            handshake.headers().clone(),
        ))
    }
}

/// A failed attempt, with how long the provider asked to wait before the next one.
struct Refusal {
    error: UpstreamError,
    retry_after: Option<Duration>,
}

impl From<UpstreamError> for Refusal {
    fn from(error: UpstreamError) -> Refusal {
        Refusal {
            error,
            retry_after: None,
        }
    }
}

/// The wait a 429 or 503 asks for in `Retry-After`: delta-seconds or an HTTP-date (a date in
/// the past asks for none). Anything unreadable is ignored.
fn retry_after(status: u16, headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    if status != 429 && status != 503 {
        return None;
    }
    let value = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim();
    parse_retry_after(value, std::time::SystemTime::now())
}

fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    if value.bytes().all(|b| b.is_ascii_digit()) {
        return value.parse().ok().map(Duration::from_secs);
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
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
    headers: http::HeaderMap,
}

impl ResponseStream {
    fn new(source: Source, idle_timeout: Duration, headers: http::HeaderMap) -> ResponseStream {
        ResponseStream {
            source,
            idle_timeout,
            finished: false,
            headers,
        }
    }

    /// The headers the upstream answered with (rate limits, request ids).
    pub fn headers(&self) -> &http::HeaderMap {
        &self.headers
    }

    /// The next event; `None` after `response.completed` (or after an error was returned).
    pub async fn next(&mut self) -> Option<Result<ResponseEvent, UpstreamError>> {
        while !self.finished {
            let data = match self.next_data().await {
                Ok(Some(data)) => data,
                Ok(None) => {
                    return self.fail(UpstreamError::Disconnected(
                        "stream closed before response.completed".into(),
                    ));
                }
                Err(err) => return self.fail(err),
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

    /// The next event's JSON text; `None` when the transport ended. Fails when nothing at all
    /// arrives for the idle timeout: bytes of an event still being received count as progress,
    /// empty chunks do not.
    async fn next_data(&mut self) -> Result<Option<String>, UpstreamError> {
        let idle_timeout = self.idle_timeout;
        let stalled = || {
            UpstreamError::Disconnected(format!(
                "idle timeout waiting for the stream after {idle_timeout:?}"
            ))
        };
        let mut deadline = tokio::time::Instant::now() + idle_timeout;
        match &mut self.source {
            Source::Sse {
                body,
                decoder,
                ready,
            } => loop {
                if let Some(data) = ready.pop_front() {
                    return Ok(Some(data));
                }
                match tokio::time::timeout_at(deadline, body.next()).await {
                    Err(_) => return Err(stalled()),
                    Ok(Some(Ok(bytes))) => {
                        if !bytes.is_empty() {
                            deadline = tokio::time::Instant::now() + idle_timeout;
                            ready.extend(decoder.feed(&bytes));
                        }
                    }
                    Ok(Some(Err(err))) => return Err(UpstreamError::Disconnected(err.to_string())),
                    Ok(None) => return Ok(None),
                }
            },
            Source::WebSocket(socket) => loop {
                match tokio::time::timeout_at(deadline, socket.next()).await {
                    Err(_) => return Err(stalled()),
                    Ok(Some(Ok(Message::Text(text)))) => return Ok(Some(text.to_string())),
                    Ok(Some(Ok(Message::Close(_))) | None) => return Ok(None),
                    Ok(Some(Ok(_))) => deadline = tokio::time::Instant::now() + idle_timeout,
                    Ok(Some(Err(err))) => {
                        return Err(UpstreamError::Disconnected(err.to_string()));
                    }
                }
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::SystemTime;

    use super::*;

    #[test]
    fn retry_after_is_delta_seconds_or_an_http_date() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_445_412_480);
        assert_eq!(parse_retry_after("5", now), Some(Duration::from_secs(5)));
        assert_eq!(parse_retry_after("0", now), Some(Duration::ZERO));
        // 2015-10-21 07:28:00 GMT, 120 s after `now`.
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:30:00 GMT", now),
            Some(Duration::from_secs(120))
        );
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past asks for no wait"
        );
        for unreadable in ["", "-1", "1.5", "soon", "99999999999999999999999"] {
            assert_eq!(parse_retry_after(unreadable, now), None, "{unreadable:?}");
        }
    }
}
