//! Span export over OTLP/HTTP to a real receiver, and an unreachable collector that is reported
//! once while the server keeps working.

use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};
use tether_testkit::{OtlpReceiver, ResponsesServer, Script, TetherProcess, message_response};

const TETHER: &str = env!("CARGO_BIN_EXE_tether");
const TRACE_ID: &str = "4bf92f3577b34da6a3ce929d0e0e4736";

fn unhex(text: &str) -> Vec<u8> {
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&text[i..i + 2], 16).unwrap())
        .collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack
        .windows(needle.len())
        .any(|window| window == needle)
}

async fn run_a_traced_turn(endpoint: &str) -> (TetherProcess, ResponsesServer, tempfile::TempDir) {
    let upstream = ResponsesServer::start().await;
    upstream.push(Script::Stream(message_response("r1", &["exported"])));
    let home = tempfile::tempdir().unwrap();
    let config = format!(
        "model_provider = \"mock\"\n[otel]\nendpoint = \"{endpoint}\"\n[model_providers.mock]\nname = \"Mock\"\n\
         base_url = \"{}\"\nwire_api = \"responses\"\nrequest_max_retries = 0\nstream_max_retries = 0\n",
        upstream.base_url()
    );
    std::fs::write(home.path().join("config.toml"), config).unwrap();
    let mut process = TetherProcess::start(Path::new(TETHER), home.path(), &[], &[]).await;
    let mut client = process.stdio();
    client.initialize("otel", Value::Null).await;
    let thread_id = client.start_thread(json!({"ephemeral": true})).await;
    client.send(json!({
        "id": 2, "method": "turn/start",
        "params": {"threadId": thread_id, "input": [{"type": "text", "text": "hi", "text_elements": []}]},
        "trace": {"traceparent": format!("00-{TRACE_ID}-00f067aa0ba902b7-01")}
    }));
    while client.recv().await["method"] != "turn/completed" {}
    drop(client);
    assert_eq!(process.wait(Duration::from_secs(10)).await.code(), Some(0));
    (process, upstream, home)
}

#[tokio::test]
async fn spans_are_exported_and_the_upstream_gets_the_exported_spans_context() {
    let receiver = OtlpReceiver::start().await;
    let (_process, upstream, _home) = run_a_traced_turn(&receiver.endpoint()).await;
    let exports = receiver.received();
    assert!(!exports.is_empty(), "the spans were flushed at shutdown");
    assert!(
        exports
            .iter()
            .all(|(content_type, _)| content_type == "application/x-protobuf")
    );
    let body: Vec<u8> = exports.into_iter().flat_map(|(_, body)| body).collect();
    for name in ["request", "turn", "upstream_request"] {
        assert!(contains(&body, name.as_bytes()), "span {name} exported");
    }
    assert!(contains(&body, &unhex(TRACE_ID)), "the client's trace id");
    let traceparent = upstream.requests()[0]
        .header("traceparent")
        .unwrap()
        .to_owned();
    let parts: Vec<&str> = traceparent.split('-').collect();
    assert_eq!(parts[1], TRACE_ID);
    assert!(
        contains(&body, &unhex(parts[2])),
        "the upstream request names an exported span: {traceparent}"
    );
}

#[tokio::test]
async fn an_unreachable_collector_is_reported_once_and_nothing_else_changes() {
    let (process, upstream, _home) = run_a_traced_turn("http://127.0.0.1:1").await;
    assert_eq!(upstream.requests().len(), 1, "the turn ran");
    let stderr = process.stderr();
    assert_eq!(
        stderr
            .matches("cannot export spans to http://127.0.0.1:1")
            .count(),
        1,
        "{stderr}"
    );
}
