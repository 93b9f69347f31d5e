//! The Responses client against a real loopback server speaking the Responses event format.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use tether_testkit::{RecordedRequest, ResponsesServer, Script, Step, completed, message_response};
use tether_upstream::{
    DEFAULT_MAX_RETRY_AFTER, Endpoint, HeaderHook, HeadersFuture, NoExtraHeaders, NoticeFuture,
    OutputItem, ResponseEvent, ResponseStream, Retry, RetryObserver, Upstream, UpstreamError,
    Usage,
};

fn endpoint(server: &ResponsesServer, websocket: bool, retries: u32) -> Endpoint {
    Endpoint {
        base_url: server.base_url(),
        headers: vec![("authorization".into(), "Bearer sk-test".into())],
        websocket,
        request_max_retries: retries,
        retry_base_delay: Duration::from_millis(10),
        max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        idle_timeout: Duration::from_millis(500),
    }
}

/// Counts calls and adds a numbered header, like attestation will.
#[derive(Default)]
struct CountingHook(AtomicUsize);

impl HeaderHook for CountingHook {
    fn headers(&self) -> HeadersFuture<'_> {
        let n = self.0.fetch_add(1, Ordering::SeqCst);
        Box::pin(async move { vec![("x-hook".into(), format!("call-{n}"))] })
    }
}

async fn collect(stream: &mut ResponseStream) -> (Vec<ResponseEvent>, Option<UpstreamError>) {
    let mut events = Vec::new();
    while let Some(next) = stream.next().await {
        match next {
            Ok(event) => events.push(event),
            Err(err) => return (events, Some(err)),
        }
    }
    (events, None)
}

/// The error a request ends with before any stream begins.
async fn refusal(upstream: &Upstream) -> UpstreamError {
    match upstream.stream(&json!({}), &NoExtraHeaders).await {
        Ok(_) => panic!("the request was expected to fail"),
        Err(err) => err,
    }
}

fn expected_events() -> Vec<ResponseEvent> {
    vec![
        ResponseEvent::Created {
            response_id: "r1".into(),
        },
        ResponseEvent::ItemAdded(OutputItem::Message {
            id: "msg_r1".into(),
            text: String::new(),
        }),
        ResponseEvent::TextDelta {
            item_id: "msg_r1".into(),
            delta: "Hello".into(),
        },
        ResponseEvent::TextDelta {
            item_id: "msg_r1".into(),
            delta: " world".into(),
        },
        ResponseEvent::ItemDone(OutputItem::Message {
            id: "msg_r1".into(),
            text: "Hello world".into(),
        }),
        ResponseEvent::Completed {
            response_id: "r1".into(),
            usage: Some(Usage {
                input_tokens: 12,
                cached_input_tokens: 2,
                output_tokens: 5,
                reasoning_output_tokens: 1,
                total_tokens: 17,
            }),
        },
    ]
}

#[tokio::test]
async fn streams_a_response_over_http_sse_with_static_and_hook_headers() {
    let request = stream_hello_world(false, json!({"model": "m", "input": []})).await;
    assert_eq!(request.transport, "http");
    assert_eq!(
        request.body,
        json!({"model": "m", "input": [], "stream": true})
    );
}

#[tokio::test]
async fn streams_the_same_events_over_websocket_with_headers_on_the_handshake() {
    let body = json!({"model": "m", "input": [], "stream": true});
    let request = stream_hello_world(true, body).await;
    assert_eq!(request.transport, "websocket");
    assert_eq!(
        request.body,
        json!({"type": "response.create", "model": "m", "input": []})
    );
}

/// Streams one scripted "Hello world" response with `body`; checks the events and that the one
/// request carried the static and the hook header; returns that request.
async fn stream_hello_world(websocket: bool, body: Value) -> RecordedRequest {
    let server = ResponsesServer::start().await;
    server.push(Script::Stream(message_response("r1", &["Hello", " world"])));
    let upstream = Upstream::new(endpoint(&server, websocket, 0)).unwrap();
    let hook = CountingHook::default();
    let mut stream = upstream.stream(&body, &hook).await.unwrap();
    let (events, error) = collect(&mut stream).await;
    assert_eq!(error, None);
    assert_eq!(events, expected_events());
    let mut requests = server.requests();
    assert_eq!(requests.len(), 1);
    let request = requests.remove(0);
    assert_eq!(request.header("authorization"), Some("Bearer sk-test"));
    assert_eq!(request.header("x-hook"), Some("call-0"));
    request
}

#[tokio::test]
async fn server_errors_are_retried_with_fresh_hook_headers_and_client_errors_are_not() {
    let server = ResponsesServer::start().await;
    server.push(Script::Status(500, "boom".into()));
    server.push(Script::Status(503, "busy".into()));
    server.push(Script::Stream(message_response("r1", &["Hello", " world"])));
    let upstream = Upstream::new(endpoint(&server, false, 2)).unwrap();
    let hook = CountingHook::default();
    let mut stream = upstream.stream(&json!({}), &hook).await.unwrap();
    assert_eq!(collect(&mut stream).await.0, expected_events());
    let hooks: Vec<_> = server
        .requests()
        .iter()
        .map(|r| r.header("x-hook").unwrap().to_owned())
        .collect();
    assert_eq!(hooks, ["call-0", "call-1", "call-2"]);

    server.push(Script::Status(
        400,
        "{\"error\":{\"message\":\"bad model\"}}".into(),
    ));
    let err = refusal(&upstream).await;
    assert_eq!(
        err,
        UpstreamError::Status {
            status: 400,
            body: "{\"error\":{\"message\":\"bad model\"}}".into()
        }
    );
    assert_eq!(server.requests().len(), 4, "a 400 is not retried");

    for _ in 0..3 {
        server.push(Script::Status(500, "boom".into()));
    }
    let err = refusal(&upstream).await;
    assert_eq!(
        err,
        UpstreamError::Status {
            status: 500,
            body: "boom".into()
        }
    );
    assert_eq!(server.requests().len(), 7, "one try plus two retries");
}

#[tokio::test]
async fn a_cut_stream_a_stall_and_a_failed_response_end_with_their_errors() {
    let server = ResponsesServer::start().await;
    let mut cut = message_response("r1", &["partial"]);
    cut.truncate(3);
    cut.push(Step::Cut);
    server.push(Script::Stream(cut));
    let mut stall = message_response("r2", &["partial"]);
    stall.truncate(2);
    stall.push(Step::Hang);
    server.push(Script::Stream(stall));
    server.push(Script::Stream(vec![Step::Event(json!({"type": "response.failed", "response": {"id": "r3", "error": {"code": "server_error", "message": "the model broke"}}}))]));
    let upstream = Upstream::new(endpoint(&server, false, 0)).unwrap();

    let mut stream = upstream.stream(&json!({}), &NoExtraHeaders).await.unwrap();
    let (events, error) = collect(&mut stream).await;
    assert_eq!(events.len(), 3);
    assert_eq!(
        error.unwrap().to_string(),
        "stream disconnected before completion: stream closed before response.completed"
    );

    let mut stream = upstream.stream(&json!({}), &NoExtraHeaders).await.unwrap();
    let started = std::time::Instant::now();
    let (_, error) = collect(&mut stream).await;
    assert!(
        matches!(error, Some(UpstreamError::Disconnected(ref why)) if why.contains("idle timeout")),
        "{error:?}"
    );
    assert!(started.elapsed() >= Duration::from_millis(500));

    let mut stream = upstream.stream(&json!({}), &NoExtraHeaders).await.unwrap();
    let (_, error) = collect(&mut stream).await;
    assert_eq!(
        error,
        Some(UpstreamError::Failed {
            code: Some("server_error".into()),
            message: "the model broke".into()
        })
    );
    assert!(stream.next().await.is_none(), "nothing after the error");
}

#[tokio::test]
async fn an_unreachable_provider_is_a_connect_error() {
    let endpoint = Endpoint {
        base_url: "http://127.0.0.1:1/v1".into(),
        headers: vec![],
        websocket: false,
        request_max_retries: 1,
        retry_base_delay: Duration::from_millis(1),
        max_retry_after: DEFAULT_MAX_RETRY_AFTER,
        idle_timeout: Duration::from_secs(1),
    };
    let err = refusal(&Upstream::new(endpoint).unwrap()).await;
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
}

/// Keeps every retry notice it is told.
#[derive(Default)]
struct RecordingObserver(Mutex<Vec<Retry>>);

impl RetryObserver for RecordingObserver {
    fn retrying(&self, retry: &Retry) -> NoticeFuture<'_> {
        self.0.lock().unwrap().push(retry.clone());
        Box::pin(async {})
    }
}

fn rate_limited(status: u16, retry_after: &str) -> Script {
    Script::StatusWithHeaders(
        status,
        vec![("retry-after".into(), retry_after.into())],
        "slow down".into(),
    )
}

#[tokio::test]
async fn retry_after_sets_the_delay_of_a_429_or_503_up_to_the_cap_and_each_retry_is_told() {
    let server = ResponsesServer::start().await;
    server.push(rate_limited(429, "1"));
    server.push(Script::Stream(message_response("r1", &["Hello", " world"])));
    let upstream = Upstream::new(endpoint(&server, false, 1)).unwrap();
    let observer = RecordingObserver::default();
    let mut stream = upstream
        .stream_observed(&json!({}), &NoExtraHeaders, &observer)
        .await
        .unwrap();
    assert_eq!(collect(&mut stream).await.0, expected_events());
    let requests = server.requests();
    let gap = requests[1].received_at - requests[0].received_at;
    assert!(gap >= Duration::from_secs(1), "retried after {gap:?}");
    assert_eq!(
        *observer.0.lock().unwrap(),
        [Retry {
            attempt: 1,
            max_retries: 1,
            error: UpstreamError::Status {
                status: 429,
                body: "slow down".into()
            },
            delay: Duration::from_secs(1),
        }]
    );

    // A 503's far-off date waits only the cap; a 500's Retry-After is not the provider asking
    // for a pause, so the backoff applies.
    let mut capped = endpoint(&server, false, 2);
    capped.max_retry_after = Duration::from_millis(300);
    let upstream = Upstream::new(capped).unwrap();
    server.push(rate_limited(503, "Fri, 01 Jan 2100 00:00:00 GMT"));
    server.push(rate_limited(500, "30"));
    server.push(Script::Stream(message_response("r1", &["Hello", " world"])));
    let observer = RecordingObserver::default();
    let started = Instant::now();
    let mut stream = upstream
        .stream_observed(&json!({}), &NoExtraHeaders, &observer)
        .await
        .unwrap();
    assert_eq!(collect(&mut stream).await.0, expected_events());
    assert!(started.elapsed() < Duration::from_secs(5));
    let told: Vec<(u32, u32, Duration)> = observer
        .0
        .lock()
        .unwrap()
        .iter()
        .map(|retry| (retry.attempt, retry.max_retries, retry.delay))
        .collect();
    assert_eq!(
        told,
        [
            (1, 2, Duration::from_millis(300)),
            (2, 2, Duration::from_millis(20))
        ]
    );
}

#[tokio::test]
async fn a_data_line_without_its_newline_then_silence_ends_at_the_idle_timeout() {
    let server = ResponsesServer::start().await;
    server.push(Script::Stream(vec![
        Step::Raw("data: {\"type\": \"response.created\"".into()),
        Step::Hang,
    ]));
    let upstream = Upstream::new(endpoint(&server, false, 0)).unwrap();
    let mut stream = upstream.stream(&json!({}), &NoExtraHeaders).await.unwrap();
    let started = Instant::now();
    let (events, error) = collect(&mut stream).await;
    assert_eq!(events, []);
    assert_eq!(
        error,
        Some(UpstreamError::Disconnected(
            "idle timeout waiting for the stream after 500ms".into()
        ))
    );
    let elapsed = started.elapsed();
    assert!(
        elapsed >= Duration::from_millis(500) && elapsed < Duration::from_secs(3),
        "{elapsed:?}"
    );
}

#[tokio::test]
async fn a_50_mib_event_arriving_slower_than_the_idle_timeout_is_received_whole() {
    const SIZE: usize = 50 << 20;
    const CHUNKS: usize = 12;
    let delta = "x".repeat(SIZE);
    let event = json!({"type": "response.output_text.delta", "item_id": "m", "delta": delta});
    let framed = format!("event: response.output_text.delta\ndata: {event}\n\n");
    let mut steps = Vec::new();
    for piece in framed.as_bytes().chunks(framed.len().div_ceil(CHUNKS)) {
        steps.push(Step::Raw(String::from_utf8(piece.to_vec()).unwrap()));
        steps.push(Step::Pause(Duration::from_millis(100)));
    }
    steps.push(completed("r1"));
    let server = ResponsesServer::start().await;
    server.push(Script::Stream(steps));
    // Idle 500 ms; the event takes 12 x 100 ms to arrive.
    let upstream = Upstream::new(endpoint(&server, false, 0)).unwrap();
    let started = Instant::now();
    let mut stream = upstream.stream(&json!({}), &NoExtraHeaders).await.unwrap();
    let (events, error) = collect(&mut stream).await;
    assert_eq!(error, None);
    assert!(started.elapsed() > Duration::from_secs(1));
    assert_eq!(events.len(), 2);
    let ResponseEvent::TextDelta { item_id, delta } = &events[0] else {
        panic!("a text delta first, got {:?}", events[0]);
    };
    assert_eq!(item_id, "m");
    assert!(delta.len() == SIZE && delta.bytes().all(|b| b == b'x'));
}
