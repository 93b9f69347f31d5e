//! The Responses client against a real loopback server speaking the Responses event format.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{RecordedRequest, ResponsesServer, Script, Step, message_response};
use tether_upstream::{
    Endpoint, HeaderHook, HeadersFuture, NoExtraHeaders, OutputItem, ResponseEvent, ResponseStream,
    Upstream, UpstreamError, Usage,
};

fn endpoint(server: &ResponsesServer, websocket: bool, retries: u32) -> Endpoint {
    Endpoint {
        base_url: server.base_url(),
        headers: vec![("authorization".into(), "Bearer sk-test".into())],
        websocket,
        request_max_retries: retries,
        retry_base_delay: Duration::from_millis(10),
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
        idle_timeout: Duration::from_secs(1),
    };
    let err = refusal(&Upstream::new(endpoint).unwrap()).await;
    assert!(matches!(err, UpstreamError::Connect(_)), "{err:?}");
    assert!(err.is_retryable());
}
